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

extern void KvTxnInit(void);
extern void KvTxnPreCommit(void);
extern bool KvTxnDecided(void);

#endif							/* KVEXT_TXN_H */
