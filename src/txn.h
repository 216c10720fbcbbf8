/*-------------------------------------------------------------------------
 *
 * txn.h
 *	  A transaction's kvext write set.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_TXN_H
#define KVEXT_TXN_H

#include "alloc.h"

extern void KvTxnReserve(void);
extern uint32 KvTxnPush(KvPtr entry, uint16 ks, bool was_visible, bool is_visible);
extern void KvTxnReplace(uint32 idx, KvPtr entry, bool is_visible);
extern int64 KvTxnCountDelta(uint16 ks);
extern int	KvTxnItemLevel(uint32 idx);

#endif							/* KVEXT_TXN_H */
