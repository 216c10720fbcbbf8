/*-------------------------------------------------------------------------
 *
 * writeset.h
 *	  This backend's write set: its pending entries, in write order.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_WRITESET_H
#define KVEXT_WRITESET_H

#include "utils/palloc.h"

#include "store/alloc.h"

typedef struct KvWsItem
{
	KvPtr		entry;			/* the pending entry; Invalid once merged */
	uint16		keyspace;
	bool		was_visible;	/* key existed for us before this write */
	bool		is_visible;		/* key exists for us after it */
	int			nestlevel;		/* subtransaction level that owns it */
} KvWsItem;

extern void KvWsReserve(void);
extern uint32 KvWsPush(KvPtr entry, uint16 ks, bool was_visible, bool is_visible);
extern void KvWsReplace(uint32 idx, KvPtr entry, bool is_visible);
extern int	KvWsItemLevel(uint32 idx);
extern int64 KvWsCountDelta(uint16 ks);
extern uint32 KvWsCount(void);
extern KvWsItem *KvWsItemAt(uint32 idx);
extern void KvWsPop(void);
extern void KvWsReset(void);
extern MemoryContext KvWsContext(void);

#endif							/* KVEXT_WRITESET_H */
