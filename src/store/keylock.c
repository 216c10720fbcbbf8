/*-------------------------------------------------------------------------
 *
 * keylock.c
 *	  Key locks without an xid: the lock-manager lock a pending entry
 *	  stands for.
 *
 * A pending entry locks its key, as a heap tuple's xmax locks its row
 * (store.c, lock_key), and a second writer of the key waits on a lock of
 * the lock manager that the writer holds until its entry is committed or
 * removed, so deadlock detection (40P01), lock_timeout and pg_locks come
 * with the wait.  That lock used to be the writer's xid, which made every
 * kv transaction take one: XidGenLock, the proc array, a commit record in
 * PostgreSQL's WAL and pg_xact, for transactions that change no table and
 * whose outcome kvext's own log decides.  Now no xid is needed:
 *	- a write at the top level of a transaction stands for the
 *	  transaction's virtual xid lock, which every transaction holds from
 *	  its start (in the fast path, for free) until PostgreSQL releases its
 *	  locks, after kvext's commit and abort callbacks have committed or
 *	  removed its entries.  The entry keeps the local xid; the backend id
 *	  comes from the owner slot's backend, read under the partition lock
 *	  with the entry (VirtualXactLock: CREATE INDEX CONCURRENTLY's wait);
 *	- a write in a subtransaction stands for a lock of its own, so that
 *	  ROLLBACK TO frees the key at once, as a subtransaction's xid lock
 *	  does: an advisory-type lock tag (0, owner slot, token,
 *	  KVEXT_LOCKTAG_CLASS) taken in ExclusiveLock at the subtransaction's
 *	  first write, before its first entry is linked.  Its resource owner
 *	  releases it when the subtransaction aborts (after the abort callback
 *	  removed its entries) and hands it to the parent when it commits, so a
 *	  waiter's wait ends exactly when the entry's writer is rolled back or
 *	  the top-level transaction ends: never on a subtransaction's transient
 *	  state.  Tokens come from a counter in the owner slot, so a tag is not
 *	  reused while a waiter may still hold a copy of it (an entry's owner
 *	  slot passes to another transaction only after the entry is gone).
 * A waiter that finds the lock free while the entry is still pending (the
 * holder is converting its entries, or is parked: park.c) waits on the
 * owner slot's condition variable instead (store.c, wait_for_holder).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"

#include "kvext.h"
#include "store/keylock.h"
#include "store/store.h"

/* the subtransaction lock this backend holds last: (lxid, subxid) -> token */
static LocalTransactionId sub_lxid = InvalidLocalTransactionId;
static SubTransactionId sub_id = InvalidSubTransactionId;
static uint32 sub_token = 0;

static void
set_token_tag(LOCKTAG *tag, uint32 slot, uint32 token)
{
	SET_LOCKTAG_ADVISORY(*tag, InvalidOid, slot, token, KVEXT_LOCKTAG_CLASS);
}

/*
 * KvKeyLockTake
 *		The lock id for an entry this (sub)transaction writes now, as owner
 *		slot slot: at the top level, the local xid (*sub false); in a
 *		subtransaction, the token of its own lock, taken at its first write
 *		(*sub true).  May raise an error (out of shared memory for locks),
 *		so call it before changing anything.
 */
uint32
KvKeyLockTake(int slot, bool *sub)
{
	LOCKTAG		tag;

	Assert(MyProc->lxid != InvalidLocalTransactionId);
	if (GetCurrentTransactionNestLevel() <= 1)
	{
		*sub = false;
		return MyProc->lxid;
	}
	*sub = true;
	if (sub_lxid == MyProc->lxid && sub_id == GetCurrentSubTransactionId())
		return sub_token;

	sub_token = KvStoreSlotNewToken(slot);
	set_token_tag(&tag, (uint32) slot, sub_token);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	sub_lxid = MyProc->lxid;
	sub_id = GetCurrentSubTransactionId();
	return sub_token;
}

/*
 * KvKeyLockRef
 *		What a waiter waits on for a pending entry with lock id lockid (sub:
 *		a subtransaction's token) of owner slot slot, used by backend procno
 *		(-1: none, the transaction is parked).  Call under the partition
 *		lock under which the entry was seen, so that procno is its writer.
 */
KvLockRef
KvKeyLockRef(uint32 lockid, bool sub, int slot, int procno)
{
	KvLockRef	ref = {KV_LOCK_NONE, 0, 0};

	if (lockid == 0 || procno < 0)
		return ref;				/* applied entries, parked transactions */
	if (sub)
	{
		ref.kind = KV_LOCK_TOKEN;
		ref.a = (uint32) slot;
	}
	else
	{
		ref.kind = KV_LOCK_VXID;
		ref.a = (uint32) ProcGlobal->allProcs[procno].backendId;
	}
	ref.b = lockid;
	return ref;
}

/*
 * KvKeyLockWait
 *		Wait until the lock ref stands for is free (returns at once if it
 *		already is).  Interruptible; deadlock detection and lock_timeout
 *		apply.  The caller holds no LWLock.
 */
void
KvKeyLockWait(const KvLockRef *ref)
{
	switch (ref->kind)
	{
		case KV_LOCK_XID:
			XactLockTableWait((TransactionId) ref->a, NULL, NULL, XLTW_None);
			break;
		case KV_LOCK_VXID:
			{
				VirtualTransactionId vxid;

				vxid.backendId = (BackendId) ref->a;
				vxid.localTransactionId = ref->b;
				(void) VirtualXactLock(vxid, true);
			}
			break;
		case KV_LOCK_TOKEN:
			{
				LOCKTAG		tag;

				set_token_tag(&tag, ref->a, ref->b);
				(void) LockAcquire(&tag, ShareLock, false, false);
				LockRelease(&tag, ShareLock, false);
			}
			break;
		case KV_LOCK_NONE:
			break;
	}
}

/*
 * KvKeyLockHolderXid
 *		The holder's top-level xid, for display (kv_locks, error contexts):
 *		the xid waited for, or the one backend procno has (a transaction
 *		that also changed tables), or InvalidTransactionId.
 */
TransactionId
KvKeyLockHolderXid(const KvLockRef *ref, int procno)
{
	if (ref->kind == KV_LOCK_XID)
		return (TransactionId) ref->a;
	if (procno < 0)
		return InvalidTransactionId;
	/* an unlocked read of one aligned word, as pg_stat_activity's */
	return *((volatile TransactionId *) &ProcGlobal->allProcs[procno].xid);
}
