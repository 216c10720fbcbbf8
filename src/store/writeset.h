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

/* what a write-set item is */
#define KV_WS_ENTRY			0	/* a pending entry */
#define KV_WS_KS_CREATE		1	/* a keyspace created (entry = its id) */
#define KV_WS_KS_DROP		2	/* a keyspace dropped (entry = its id) */

typedef struct KvWsItem
{
	KvPtr		entry;			/* the pending entry; Invalid once merged;
								 * for keyspace items, the keyspace id */
	uint8		kind;			/* KV_WS_* */
	uint8		prev_state;		/* KV_WS_KS_DROP: the slot's state before */
	uint16		keyspace;
	bool		was_visible;	/* key existed for us before this write */
	bool		is_visible;		/* key exists for us after it */
	int			nestlevel;		/* subtransaction level that owns it */
	uint32		bytes;			/* key and value bytes of its entry (0 once
								 * merged, and for keyspace items) */
} KvWsItem;

extern void KvWsReserve(void);
extern uint32 KvWsPush(KvPtr entry, uint16 ks, bool was_visible, bool is_visible,
					   uint32 bytes);
extern void KvWsPushKeyspace(uint16 ks, uint8 kind, uint8 prev_state);
extern void KvWsReplace(uint32 idx, KvPtr entry, bool is_visible, uint32 bytes);
extern void KvWsForgetEntry(uint32 idx);
extern uint64 KvWsBytes(void);
extern int	KvWsItemLevel(uint32 idx);
extern int64 KvWsCountDelta(uint16 ks);
extern uint32 KvWsCount(void);
extern KvWsItem *KvWsItemAt(uint32 idx);
extern void KvWsPop(void);
extern bool KvWsHasKeyspaceOps(void);

/* keyspace creates and drops one transaction may make in a replicated group */
#define KVEXT_WS_MAX_GROUP_KS_OPS	16
extern void KvWsCheckKeyspaceRoom(void);
extern void KvWsReset(void);
extern MemoryContext KvWsContext(void);

#endif							/* KVEXT_WRITESET_H */
