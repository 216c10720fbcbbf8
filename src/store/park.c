/*-------------------------------------------------------------------------
 *
 * park.c
 *	  Parked transactions: in a replicated group, a transaction whose
 *	  COMMIT record is in the log but not yet majority-durable when its
 *	  backend must move on.
 *
 * That happens when the commit returns early (kvext.synchronous_commit
 * off or local), when the wait for the majority is cancelled (the commit
 * is then in doubt: 40003), and for a mixed transaction whose wait comes
 * after PostgreSQL's commit.  Its pending entries must stay locked to
 * writers and invisible to readers until the commit position passes its
 * COMMIT record (then they are committed), or until the log is cut before
 * it (a new leader never got it: then they are removed).  No ABORT record
 * is written: a record that may have left the leader is never taken back.
 *
 * How.  The backend's owner slot (store.c: two per backend) becomes the
 * parked transaction's: its committing word gets the COMMIT record's end
 * with KV_SLOT_PARKED, and readers take its entries as committed once the
 * visible position has passed that end (owner_committing in store.c).
 * The entries are chained through their wsidx field (a pending entry's
 * index in its write set, no longer needed once the transaction has
 * logged), the keyspace operations are copied here, and the backend gives
 * the slot up: it takes another from the pool at its next write.  The TXN record's in-flight
 * mark (wal.c) stays with the parked slot, so no snapshot takes a redo
 * point past a transaction that is not yet in memory.
 *
 * Resolving.  KvParkResolve, run by the kvext wal writer each round and
 * woken when the commit position advances, and by a backend before its
 * next kv call, claims each parked slot the visible position has passed
 * (compare-and-swap of the committing word from "parked" to "converting",
 * so exactly one process converts it), converts its entries in write
 * order, and frees the slot.  A leader that steps down sets a park ceiling
 * (its commit position then): parked transactions past it are dropped
 * here, never committed through their slot; if the group commits them,
 * this node applies them from its log as a follower (role.c).
 *
 * Pending entries never move (compaction moves committed entries only),
 * so the chain stays valid while parked.  Locks: none of its own; each
 * conversion takes the entry's partition lock, as a commit does.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "deadline.h"
#include "kvext.h"
#include "log/visible.h"
#include "log/wal.h"
#include "store/keyspace.h"
#include "store/park.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "store/writeset.h"

/* one keyspace create or drop of a parked transaction */
typedef struct KvParkedKsOp
{
	uint16		keyspace;
	uint8		kind;			/* KV_WS_KS_CREATE or KV_WS_KS_DROP */
	uint8		prev_state;
	uint32		after;			/* entries that precede it in write order */
} KvParkedKsOp;

/* what a parked slot holds besides its committing word (store.c) */
typedef struct KvParked
{
	KvLsn		commit_end;		/* end of its COMMIT record */
	KvPtr		head;			/* first pending entry; chained by wsidx */
	int			nks;
	KvParkedKsOp ks[KVEXT_PARK_MAX_KS_OPS];
} KvParked;

static KvParked *parked = NULL;

/* this backend's last parked commit, which its next kv call waits for */
static KvLsn my_parked_end = InvalidKvLsn;

/* my_parked_end is set: the next kv call waits for it (KvCheckAvailable) */
bool		KvParkOwnPending = false;

Size
KvParkShmemSize(void)
{
	return mul_size(sizeof(KvParked), KvOwnerSlotCount());
}

/* create or attach (caller holds AddinShmemInitLock) */
void
KvParkShmemInit(void)
{
	bool		found;

	parked = ShmemInitStruct("kvext parked", KvParkShmemSize(), &found);
	if (!found)
		memset(parked, 0, KvParkShmemSize());
}

/*
 * KvParkCurrent
 *		Park this backend's transaction, whose COMMIT record ends at
 *		commit_end: chain its pending entries, copy its keyspace
 *		operations, publish the slot as parked, and take the backend's
 *		other slot (waiting if that one is still parked).  Never fails
 *		before the slot is published; the caller then resets its write set
 *		without removing anything.  Called with interrupts possibly held.
 */
void
KvParkCurrent(KvLsn commit_end)
{
	int			s = KvStoreMySlot();
	KvParked   *pk = &parked[s];
	KvPtr		prev = InvalidKvPtr;
	uint32		nentries = 0;

	pk->commit_end = commit_end;
	pk->head = InvalidKvPtr;
	pk->nks = 0;
	for (uint32 i = 0; i < KvWsCount(); i++)
	{
		KvWsItem   *item = KvWsItemAt(i);

		if (item->kind != KV_WS_ENTRY)
		{
			/* KvWsCheckKeyspaceRoom kept the count in bounds */
			Assert(pk->nks < KVEXT_PARK_MAX_KS_OPS);
			pk->ks[pk->nks].keyspace = item->keyspace;
			pk->ks[pk->nks].kind = item->kind;
			pk->ks[pk->nks].prev_state = item->prev_state;
			pk->ks[pk->nks].after = nentries;
			pk->nks++;
			continue;
		}
		if (item->entry == InvalidKvPtr)
			continue;			/* merged away at a subcommit */
		/* our own pending entries: nobody else reads wsidx */
		KvEntryGet(item->entry)->wsidx = InvalidKvPtr;
		if (prev == InvalidKvPtr)
			pk->head = item->entry;
		else
			KvEntryGet(prev)->wsidx = item->entry;
		prev = item->entry;
		nentries++;
	}

	/* publish: from here on readers and resolvers see the parked slot */
	pg_write_barrier();
	pg_atomic_write_u64(KvStoreSlotCommitting(s), commit_end | KV_SLOT_PARKED);
	my_parked_end = commit_end;
	KvParkOwnPending = true;

	/* it may already be visible (the wait was cancelled just too late) */
	KvParkResolve();

	/*
	 * The next transaction takes a free slot at its first write
	 * (KvStoreMySlot), where it may wait; not here, where interrupts may be
	 * held.
	 */
	KvStoreReleaseSlot();
}

/*
 * end_parked
 *		Commit (or remove) the entries and keyspace operations of parked
 *		slot s, which the caller has claimed, then free the slot.
 */
static void
end_parked(int s, bool commit)
{
	KvParked   *pk = &parked[s];
	KvPtr		p = pk->head;
	uint32		done = 0;
	int			k = 0;

	if (commit && pk->nks > 0)
		KvKeyspaceCommitStarting();
	while (p != InvalidKvPtr || k < pk->nks)
	{
		KvPtr		next;

		/* keyspace operations in their place in write order */
		if (k < pk->nks && pk->ks[k].after == done)
		{
			KvKeyspaceEndXact(pk->ks[k].keyspace, pk->ks[k].kind,
							  pk->ks[k].prev_state, commit);
			k++;
			continue;
		}
		if (p == InvalidKvPtr)
			break;
		next = KvEntryGet(p)->wsidx;
		if (commit)
			KvStoreCommitEntry(p);
		else
			KvStoreAbortEntry(p);
		p = next;
		done++;
	}
	pk->head = InvalidKvPtr;
	pk->nks = 0;
	KvWalClearInflightSlot(s);
	pg_write_barrier();
	pg_atomic_write_u64(KvStoreSlotCommitting(s), 0);
	KvStoreSlotWake(s);
}

/*
 * The committing word of a parked slot being dropped (past the park
 * ceiling): parked, with an end no visible position reaches, so readers
 * take its entries as not committed; and distinct from every parked
 * transaction's word, so that no second process claims it.
 */
#define KV_SLOT_DROPPING	(KV_SLOT_PARKED | (PG_UINT64_MAX >> 1))

/*
 * KvParkResolve
 *		Commit every parked transaction that the visible position has
 *		passed, and drop those past the park ceiling (a leader that stepped
 *		down: KvVisibleSetParkCeiling).  Any process attached to shared
 *		memory may call it; each slot is converted by exactly one.
 */
void
KvParkResolve(void)
{
	KvLsn		ceiling = KvVisibleParkCeiling();
	KvLsn		visible = Min(KvWalVisiblePos(), ceiling);
	int			n = KvOwnerSlotCount();

	for (int s = 0; s < n; s++)
	{
		pg_atomic_uint64 *c = KvStoreSlotCommitting(s);
		uint64		v = pg_atomic_read_u64(c);
		KvLsn		end = v & ~KV_SLOT_PARKED;

		/* not parked, or being dropped by another process */
		if (!(v & KV_SLOT_PARKED) || v == KV_SLOT_DROPPING)
			continue;
		if (end > ceiling)
		{
			/*
			 * Claim it invisibly (a plain end position would read as
			 * visible), with a value no other process claims again
			 */
			if (!pg_atomic_compare_exchange_u64(c, &v, KV_SLOT_DROPPING))
				continue;
			end_parked(s, false);
			continue;
		}
		if (end > visible)
			continue;
		/* claim it: "parked" becomes "converting", still visible */
		if (!pg_atomic_compare_exchange_u64(c, &v, end))
			continue;
		pg_read_barrier();
		end_parked(s, true);
	}
}

/*
 * KvParkBusy
 *		Is a transaction logged in owner slot s still on its way to being
 *		committed, parked or abandoned by its backend?  (A leader stepping
 *		down waits until none is: KvRoleFollow.)
 */
bool
KvParkBusy(int s)
{
	return KvWalInflight(s) != InvalidKvLsn &&
		!(pg_atomic_read_u64(KvStoreSlotCommitting(s)) & KV_SLOT_PARKED);
}

/*
 * KvParkWaitOwn
 *		Before a kv call: if this backend's last commit is parked and not
 *		yet visible, wait for it, so that a session always reads its own
 *		writes.  A cancel ends the wait with 57014.
 */
void
KvParkWaitOwn(void)
{
	if (likely(my_parked_end == InvalidKvLsn))
		return;
	if (KvWalVisiblePos() < my_parked_end)
	{
		/*
		 * The running statement's timer, or, in SQL that a commit runs
		 * (a deferred trigger: PostgreSQL has disarmed the timer), the
		 * committing statement's (deadline.c)
		 */
		TimestampTz deadline = KvCommitDeadline();
		KvVisibleWaitResult r = KvVisibleWait(my_parked_end, false, deadline);

		if (r == KV_VISIBLE_CANCELLED)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 deadline != 0 && GetCurrentTimestamp() >= deadline ?
					 errmsg("canceling statement due to statement timeout") :
					 errmsg("canceling statement due to user request"),
					 errdetail("The statement was waiting for the session's previous commit to become durable on a majority of the group.")));
		if (r == KV_VISIBLE_NOT_LEADER)
		{
			/* reported once: this node will not decide it any more */
			my_parked_end = InvalidKvLsn;
			KvParkOwnPending = false;
			ereport(ERROR,
					(errcode(ERRCODE_T_R_STATEMENT_COMPLETION_UNKNOWN),
					 errmsg("the session's previous commit may or may not be committed"),
					 errdetail("This node stopped leading its group before the commit was durable on a majority.")));
		}
	}
	my_parked_end = InvalidKvLsn;
	KvParkOwnPending = false;
	KvParkResolve();
}
