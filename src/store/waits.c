/*-------------------------------------------------------------------------
 *
 * waits.c
 *	  Waits of a writer for the transaction that holds its key, made
 *	  visible: to kv_locks() through a per-backend slot in shared memory,
 *	  and to the waiter's own errors through an error context callback.
 *
 * A writer that finds another transaction's pending entry on its key
 * (store.c, lock_key) waits on the lock the entry stands for (keylock.c:
 * the holder's virtual xid, or its subtransaction's lock; for a keyspace
 * being created or dropped, that transaction's xid), or on the owner
 * slot's condition variable while the owner finishes its end of
 * transaction.  PostgreSQL's lock manager shows only "virtualxid",
 * "advisory" or "transactionid" for the first and nothing for the second;
 * none says which key.  So, for
 * the duration of the wait, the waiter:
 *	- publishes (keyspace, key excerpt, holder pid and xid, start time) in
 *	  its slot of the "kvext waits" array, indexed by pgprocno, which
 *	  kv_locks() reads;
 *	- pushes an error context callback, so that an error raised during the
 *	  wait (lock_timeout, deadlock 40P01, statement_timeout, cancel) carries
 *	  a CONTEXT line naming the key, the keyspace and the holder's pid.
 * The slot is cleared when the wait ends, on an ERROR raised during it
 * (PG_FINALLY), and at backend exit (a FATAL such as pg_terminate_backend
 * does not return through PG_FINALLY; a before_shmem_exit callback does it).
 *
 * Locking.  Each slot has a spinlock.  Only its backend writes the slot;
 * kv_locks() takes each slot's spinlock for the time of one struct copy,
 * so readers never wait for writers' LWLocks and writers never wait for
 * readers beyond that copy.  Nothing else is done under a slot spinlock.
 * The keyspace name is copied without the keyspace lock (which may not be
 * taken under a partition lock, see store.c): a name changes only when a
 * free slot is reused, so a name read while the key's wait is published is
 * at worst that of a keyspace dropped meanwhile; it is always terminated.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/wait_event.h"

#include "kvext.h"
#include "store/text.h"
#include "store/waits.h"

typedef struct KvWaitSlot
{
	slock_t		mutex;
	KvWaitInfo	info;			/* info.pid == 0: not waiting */
} KvWaitSlot;

static KvWaitSlot *slots = NULL;
static int	nslots = 0;
static bool exit_hook_registered = false;

/*
 * KvWaitsShmemSize / KvWaitsShmemInit
 *		One slot per PGPROC slot; the caller of Init holds
 *		AddinShmemInitLock.
 */
Size
KvWaitsShmemSize(void)
{
	return mul_size(sizeof(KvWaitSlot), KvProcSlots());
}

void
KvWaitsShmemInit(void)
{
	bool		found;

	nslots = KvProcSlots();
	slots = ShmemInitStruct("kvext waits", KvWaitsShmemSize(), &found);
	if (!found)
	{
		for (int i = 0; i < nslots; i++)
		{
			SpinLockInit(&slots[i].mutex);
			slots[i].info.pid = 0;
		}
	}
}

/* publish info in this backend's slot (info->pid == 0 clears it) */
static void
set_my_slot(const KvWaitInfo *info)
{
	KvWaitSlot *slot = &slots[MyProc->pgprocno];

	SpinLockAcquire(&slot->mutex);
	slot->info = *info;
	SpinLockRelease(&slot->mutex);
}

/* clear this backend's slot (end of a wait, error, exit) */
static void
clear_my_slot(void)
{
	KvWaitSlot *slot = &slots[MyProc->pgprocno];

	SpinLockAcquire(&slot->mutex);
	slot->info.pid = 0;
	SpinLockRelease(&slot->mutex);
}

/* before_shmem_exit callback: a backend that dies waiting leaves no slot */
static void
clear_at_exit(int code, Datum arg)
{
	if (MyProc != NULL)
		clear_my_slot();
}

/*
 * wait_context
 *		Error context callback during a wait: names the key, the keyspace
 *		and the holder.  arg is the wait's KvWaitInfo.
 */
static void
wait_context(void *arg)
{
	KvWaitInfo *w = (KvWaitInfo *) arg;

	/* stored text, shown in the database encoding (store/text.c) */
	char	   *ks = KvNameExcerpt(w->keyspace, strlen(w->keyspace));
	char	   *key = w->has_key ? KvTextForDisplay(w->key, strlen(w->key)) : NULL;

	if (w->has_key && w->holder_pid == 0)
		errcontext("while waiting for key \"%s\" of keyspace \"%s\", held by a transaction whose commit waits for its replication group",
				   key, ks);
	else if (w->has_key && TransactionIdIsValid(w->holder_xid))
		errcontext("while waiting for key \"%s\" of keyspace \"%s\", held by transaction %u of process %d",
				   key, ks, w->holder_xid, w->holder_pid);
	else if (w->has_key)
		errcontext("while waiting for key \"%s\" of keyspace \"%s\", held by a transaction of process %d",
				   key, ks, w->holder_pid);
	else
		errcontext("while waiting for transaction %u of process %d, which creates or drops keyspace \"%s\"",
				   w->holder_xid, w->holder_pid, ks);
}

/*
 * begin_wait
 *		Fill *info from t, publish it and push the error context callback
 *		*cb.  May be called under a partition lock: takes no LWLock.
 */
static void
begin_wait(KvWaitInfo *info, ErrorContextCallback *cb, const KvWaitTarget *t)
{
	memset(info, 0, sizeof(*info));
	info->pid = MyProcPid;
	info->roleid = GetUserId();
	if (t->holder_procno >= 0 && t->holder_procno < nslots)
		info->holder_pid = ProcGlobal->allProcs[t->holder_procno].pid;
	else if (t->lock.kind == KV_LOCK_XID)
		info->holder_pid = BackendXidGetPid((TransactionId) t->lock.a);	/* no LWLock held */
	info->holder_xid = KvKeyLockHolderXid(&t->lock, t->holder_procno);
	info->since = GetCurrentTimestamp();
	memcpy(info->keyspace, t->keyspace, NAMEDATALEN);
	info->keyspace[NAMEDATALEN - 1] = '\0';
	info->has_key = (t->key != NULL);
	if (t->key != NULL)
	{
		/*
		 * as KvKeyExcerpt, without a palloc: cut at a character boundary
		 * of the stored UTF-8 (shown converted: KvTextForDisplay)
		 */
		int			len = pg_encoding_mbcliplen(PG_UTF8, t->key, (int) t->keylen,
												KVEXT_WAIT_KEY_BYTES);

		memcpy(info->key, t->key, len);
		info->key[len] = '\0';
	}

	if (!exit_hook_registered)
	{
		before_shmem_exit(clear_at_exit, (Datum) 0);
		exit_hook_registered = true;
	}
	set_my_slot(info);

	cb->callback = wait_context;
	cb->arg = info;
	cb->previous = error_context_stack;
	error_context_stack = cb;
}

/*
 * KvWaitOnLock
 *		Wait, published, for the lock t->lock to be free (a lock-manager
 *		lock: deadlock detection, lock_timeout and pg_locks come with it).
 *		The caller holds no LWLock.
 */
void
KvWaitOnLock(const KvWaitTarget *t)
{
	KvWaitInfo	info;
	ErrorContextCallback cb;

	begin_wait(&info, &cb, t);
	PG_TRY();
	{
		KvKeyLockWait(&t->lock);
	}
	PG_FINALLY();
	{
		clear_my_slot();
	}
	PG_END_TRY();
	error_context_stack = cb.previous;
}

/*
 * KvWaitOnOwner
 *		Wait, published, for one broadcast of cv, the holder's "done"
 *		condition variable.  Called holding lock, the partition lock under
 *		which the holder's pending entry was seen; it is released here,
 *		after preparing to sleep, so the broadcast cannot be missed.
 *		Interruptible.  timeout_ms >= 0 bounds the sleep; returns true if
 *		it ran out.
 */
bool
KvWaitOnOwner(const KvWaitTarget *t, ConditionVariable *cv, LWLock *lock,
			  long timeout_ms)
{
	KvWaitInfo	info;
	ErrorContextCallback cb;
	bool		timed_out = false;

	begin_wait(&info, &cb, t);
	ConditionVariablePrepareToSleep(cv);
	LWLockRelease(lock);
	PG_TRY();
	{
		if (timeout_ms >= 0)
			timed_out = ConditionVariableTimedSleep(cv, timeout_ms, PG_WAIT_EXTENSION);
		else
			ConditionVariableSleep(cv, PG_WAIT_EXTENSION);
	}
	PG_FINALLY();
	{
		clear_my_slot();
	}
	PG_END_TRY();
	ConditionVariableCancelSleep();
	error_context_stack = cb.previous;
	return timed_out;
}

/*
 * KvWaitsMax
 *		How many waits there can be at once (the size KvWaitsList needs).
 */
int
KvWaitsMax(void)
{
	return nslots;
}

/*
 * KvWaitsList
 *		Copy the current waits into out (room for max); returns how many.
 *		Takes each slot's spinlock in turn, never an LWLock.
 */
int
KvWaitsList(KvWaitInfo *out, int max)
{
	int			n = 0;

	for (int i = 0; i < nslots && n < max; i++)
	{
		KvWaitSlot *slot = &slots[i];

		SpinLockAcquire(&slot->mutex);
		if (slot->info.pid != 0)
			out[n++] = slot->info;
		SpinLockRelease(&slot->mutex);
	}
	return n;
}
