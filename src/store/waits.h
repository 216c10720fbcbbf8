/*-------------------------------------------------------------------------
 *
 * waits.h
 *	  Waits of writers for the transaction that holds a key: published for
 *	  kv_locks() and named in the error context of the waiter.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_WAITS_H
#define KVEXT_WAITS_H

#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "store/keylock.h"

/* bytes of a key kept for kv_locks() and error contexts (KvKeyExcerpt) */
#define KVEXT_WAIT_KEY_BYTES	64

/*
 * what a writer waits for; key == NULL: a transaction creating or dropping
 * the keyspace (lock KV_LOCK_XID), whose backend (holder_procno -1) is then
 * looked up by xid
 */
typedef struct KvWaitTarget
{
	const char *keyspace;		/* its name (KvKeyspace.name) */
	const char *key;
	uint32		keylen;
	int			holder_procno;	/* pgprocno of the holding backend, or -1
								 * (none: a parked transaction, store.c) */
	KvLockRef	lock;			/* the lock waited for (keylock.h) */
} KvWaitTarget;

/* one wait, as kv_locks() reports it */
typedef struct KvWaitInfo
{
	int			pid;			/* the waiting backend */
	Oid			roleid;			/* its current user when the wait began */
	int			holder_pid;		/* 0 if unknown */
	TransactionId holder_xid;	/* its top-level xid, if it has one */
	TimestampTz since;
	bool		has_key;		/* false: waits for a keyspace drop */
	char		keyspace[NAMEDATALEN];
	char		key[KVEXT_WAIT_KEY_BYTES + 1];
} KvWaitInfo;

extern Size KvWaitsShmemSize(void);
extern void KvWaitsShmemInit(void);

extern void KvWaitOnLock(const KvWaitTarget *t);
extern bool KvWaitOnOwner(const KvWaitTarget *t, ConditionVariable *cv,
						  LWLock *lock, long timeout_ms);
extern int	KvWaitsList(KvWaitInfo *out, int max);
extern int	KvWaitsMax(void);

#endif							/* KVEXT_WAITS_H */
