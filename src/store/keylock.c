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
 *	  first write, before its first entry is linked, by the
 *	  subtransaction's own resource owner (as AssignTransactionId takes a
 *	  subxid's lock: a write inside a cursor's FETCH must not give it to
 *	  the portal).  It is released when the subtransaction aborts, after
 *	  the abort callback removed its entries.  When it commits, its
 *	  entries become the parent's: if the parent has a lock (the top
 *	  level's virtual xid, or a subtransaction's token), they are
 *	  restamped with it under their partition locks (txn.c) and the child's
 *	  lock is released, so a waiter on it wakes, finds the new stamp and
 *	  waits on the parent's lock; otherwise the parent adopts the child's
 *	  lock, which PostgreSQL hands to the parent's resource owner.  A
 *	  transaction thus holds at most one such lock per open nesting level,
 *	  however many savepoints it releases, and a waiter's wait ends
 *	  exactly when the entry's writer is rolled back or the top-level
 *	  transaction ends: never on a subtransaction's transient state.
 *	  Tokens come from a counter in the owner slot, so a tag is not
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
#include "port/atomics.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "kvext.h"
#include "store/keylock.h"

/*
 * The subtransaction locks of this backend's transaction (lxid), by
 * nesting level: levels[L] is valid if its subid is that of the open
 * subtransaction at level L (subtransaction ids are never reused within a
 * transaction).
 */
typedef struct LevelLock
{
	SubTransactionId subid;
	uint32		token;
} LevelLock;

static LocalTransactionId levels_lxid = InvalidLocalTransactionId;
static LevelLock *levels = NULL;
static int	nlevels = 0;
static int	owner_slot = -1;	/* the slot the tokens were taken as */

static void
set_token_tag(LOCKTAG *tag, uint32 slot, uint32 token)
{
	SET_LOCKTAG_ADVISORY(*tag, InvalidOid, slot, token, KVEXT_LOCKTAG_CLASS);
}

/* levels[level], or NULL if it holds no lock for subtransaction subid */
static LevelLock *
level_lock(int level, SubTransactionId subid)
{
	if (levels_lxid != MyProc->lxid || level >= nlevels ||
		levels[level].subid != subid)
		return NULL;
	return &levels[level];
}

/* record token as the lock of subtransaction subid at level */
static void
set_level_lock(int level, SubTransactionId subid, uint32 token)
{
	if (levels_lxid != MyProc->lxid)
	{
		for (int i = 0; i < nlevels; i++)
			levels[i].subid = InvalidSubTransactionId;
		levels_lxid = MyProc->lxid;
	}
	if (level >= nlevels)
	{
		int			n = Max(8, level * 2);

		if (levels == NULL)
			levels = MemoryContextAlloc(TopMemoryContext, n * sizeof(LevelLock));
		else
			levels = repalloc(levels, n * sizeof(LevelLock));
		for (int i = nlevels; i < n; i++)
			levels[i].subid = InvalidSubTransactionId;
		nlevels = n;
	}
	levels[level].subid = subid;
	levels[level].token = token;
}

/*
 * KvKeyLockTake
 *		The lock id for an entry this (sub)transaction writes now, as owner
 *		slot slot: at the top level, the local xid (*sub false); in a
 *		subtransaction, the token of its own lock, taken at its first write
 *		(*sub true) from the slot's counter tokens (store.c; only the slot's
 *		user advances it; never 0).  May raise an error (out of shared
 *		memory for locks), so call it before changing anything.
 */
uint32
KvKeyLockTake(int slot, pg_atomic_uint32 *tokens, bool *sub)
{
	LOCKTAG		tag;
	int			level;
	LevelLock  *mine;
	uint32		token;
	ResourceOwner save;

	Assert(MyProc->lxid != InvalidLocalTransactionId);
	level = GetCurrentTransactionNestLevel();
	if (level <= 1)
	{
		*sub = false;
		return MyProc->lxid;
	}
	*sub = true;
	mine = level_lock(level, GetCurrentSubTransactionId());
	if (mine != NULL)
		return mine->token;

	/* room first: nothing may fail once the lock is held */
	set_level_lock(level, InvalidSubTransactionId, 0);
	token = pg_atomic_add_fetch_u32(tokens, 1);
	if (unlikely(token == 0))
		token = pg_atomic_add_fetch_u32(tokens, 1);
	set_token_tag(&tag, (uint32) slot, token);
	/* the subtransaction's lock, not a portal's (see file header) */
	save = CurrentResourceOwner;
	CurrentResourceOwner = CurTransactionResourceOwner;
	PG_TRY();
	{
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
	set_level_lock(level, GetCurrentSubTransactionId(), token);
	owner_slot = slot;
	return token;
}

/*
 * KvKeyLockSubCommit
 *		Subtransaction subid, at nesting level level, commits into its
 *		parent parent_subid.  If it holds a lock whose entries must take
 *		the parent's, returns true with the parent's lock id in *lockid and
 *		*sub: the caller restamps the entries (every pending entry of the
 *		levels >= level), then calls KvKeyLockSubCommitDone.  Otherwise the
 *		parent adopts the child's lock, if any, and returns false.  Called
 *		from the subtransaction commit callback; cannot fail.
 */
bool
KvKeyLockSubCommit(int level, SubTransactionId subid,
				   SubTransactionId parent_subid, uint32 *lockid, bool *sub)
{
	LevelLock  *child = level_lock(level, subid);
	LevelLock  *parent;

	if (child == NULL)
		return false;			/* it wrote no key */
	if (level - 1 <= 1)
	{
		/* the top level: its virtual xid lock */
		*lockid = MyProc->lxid;
		*sub = false;
		return true;
	}
	parent = level_lock(level - 1, parent_subid);
	if (parent == NULL)
	{
		/* the lock passes to the parent's resource owner with the commit */
		levels[level - 1].subid = parent_subid;
		levels[level - 1].token = child->token;
		child->subid = InvalidSubTransactionId;
		return false;
	}
	*lockid = parent->token;
	*sub = true;
	return true;
}

/*
 * KvKeyLockSubCommitDone
 *		The entries of the committing subtransaction at level now stand for
 *		the parent's lock: release the child's, waking its waiters, who find
 *		the new stamp.
 */
void
KvKeyLockSubCommitDone(int level)
{
	LOCKTAG		tag;
	ResourceOwner save = CurrentResourceOwner;

	Assert(level < nlevels && levels[level].subid != InvalidSubTransactionId);
	set_token_tag(&tag, (uint32) owner_slot, levels[level].token);
	levels[level].subid = InvalidSubTransactionId;
	CurrentResourceOwner = CurTransactionResourceOwner;
	LockRelease(&tag, ExclusiveLock, false);
	CurrentResourceOwner = save;
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
