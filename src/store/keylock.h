/*-------------------------------------------------------------------------
 *
 * keylock.h
 *	  The lock-manager lock a pending entry stands for: what its writer
 *	  holds, and what another writer of the key waits on (keylock.c).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_KEYLOCK_H
#define KVEXT_KEYLOCK_H

#include "port/atomics.h"

/*
 * field4 of the advisory-type lock tags kvext takes for subtransactions
 * (pg_locks.objsubid); advisory locks taken from SQL use 1 and 2
 */
#define KVEXT_LOCKTAG_CLASS		27510

/* which lock a waiter waits on */
typedef enum KvLockKind
{
	KV_LOCK_NONE = 0,			/* none: the holder is ending (owner slot) */
	KV_LOCK_XID,				/* a = xid (keyspace create and drop) */
	KV_LOCK_VXID,				/* a = backend id, b = local xid */
	KV_LOCK_TOKEN				/* a = owner slot, b = token (subtransaction) */
} KvLockKind;

typedef struct KvLockRef
{
	KvLockKind	kind;
	uint32		a;
	uint32		b;
} KvLockRef;

#define KvLockRefEquals(x, y) \
	((x).kind == (y).kind && (x).a == (y).a && (x).b == (y).b)

extern uint32 KvKeyLockTake(int slot, pg_atomic_uint32 *tokens, bool *sub);
extern bool KvKeyLockSubCommit(int level, SubTransactionId subid,
							   SubTransactionId parent_subid, uint32 *lockid,
							   bool *sub);
extern void KvKeyLockSubCommitDone(int level);
extern KvLockRef KvKeyLockRef(uint32 lockid, bool sub, int slot, int procno);
extern void KvKeyLockWait(const KvLockRef *ref);
extern TransactionId KvKeyLockHolderXid(const KvLockRef *ref, int procno);

#endif							/* KVEXT_KEYLOCK_H */
