/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  Applying the log to the store: recovery and a follower share it.
 *
 * A committed TXN record is applied atomically for readers: its writes
 * become pending entries of this process, then are committed together
 * through the store's commit path (KvStoreApplyWrite, KvStoreBeginCommit,
 * KvStoreCommitEntry), as sessions commit.  Every length inside a record
 * is checked before it is used; a record whose CRC holds but whose
 * contents do not is corruption (XX001, naming file, offset and LSN).
 *
 * Recovery (recovery.c) applies a committed TXN record where it stands in
 * the log; a follower applies it when it reaches its COMMIT record, which
 * it may receive in a later batch than the TXN record.  Both give the same
 * state: a writer of a key waits until the holder's COMMIT record is
 * written, so two transactions that wrote the same key have their TXN and
 * COMMIT records in the same order.
 *
 * A follower's apply state (shared memory, KvApplyFollower*):
 *	- applied: every record before it has been processed: its COMMIT
 *	  records applied the TXN records they name, its keyspace records
 *	  applied.  It never passes the commit position the leader sent: a
 *	  follower never shows a write that could still be lost.
 *	- pending: the positions of TXN records before `applied` that have no
 *	  COMMIT or ABORT record before it yet (ascending, at most
 *	  KVEXT_APPLY_MAX_PENDING).  When their COMMIT record comes, they are
 *	  read back from the local log and applied.
 *	- from: where this follower's recovery began replaying (its snapshot's
 *	  redo point): a COMMIT or ABORT record naming a TXN record before it
 *	  decides a transaction that the snapshot already holds.
 * The apply floor (the oldest pending TXN record, else `applied`) is
 * published to wal.c, so that a snapshot's redo point never passes a
 * record that is not applied yet.
 *
 * Locking: the follower state is written only by the one appender (it
 * holds the append lock, receiver.c) and by recovery before the store is
 * ready; `applied` is an atomic that anyone may read.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlogdefs.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "kvext.h"
#include "log/apply.h"
#include "log/reader.h"
#include "log/wal.h"
#include "store/acl.h"
#include "store/keyspace.h"
#include "store/store.h"

typedef struct KvApplyShared
{
	pg_atomic_uint64 applied;	/* 0: not a follower (or not started) */
	KvLsn		from;
	int			npending;
	KvLsn		pending[KVEXT_APPLY_MAX_PENDING];
} KvApplyShared;

static KvApplyShared *ap = NULL;

Size
KvApplyShmemSize(void)
{
	return sizeof(KvApplyShared);
}

/*
 * KvApplyShmemInit
 *		Create or attach; caller holds AddinShmemInitLock.
 */
void
KvApplyShmemInit(void)
{
	bool		found;

	ap = ShmemInitStruct("kvext apply", sizeof(KvApplyShared), &found);
	if (!found)
	{
		pg_atomic_init_u64(&ap->applied, InvalidKvLsn);
		ap->from = InvalidKvLsn;
		ap->npending = 0;
	}
}

/* the store is full while applying the log */
static void
store_full_during_apply(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("the kvext data does not fit in kvext.memory_limit"),
			 errdetail("Either kvext.memory_limit was lowered, or, in a store nearly full of values that each take a large share of one part of the heap (1GB at most), recovery could not pack them into the parts as the running server had."),
			 errhint("Raise kvext.memory_limit and restart the server; nothing was lost.")));
}

/* the pending entries made so far for one TXN record */
typedef struct ApplyEntries
{
	KvPtr	   *entries;
	Size		n;
	Size		cap;
	bool		alone;			/* KvApplyTxn's alone */
	bool		acl;			/* it changes rights (acl.c) */
} ApplyEntries;

/* apply one write (KvLogForEachOp's fn for KvApplyTxn) */
static void
apply_op(KvLogReader *r, void *arg, const KvWalOp *op, const char *key)
{
	ApplyEntries *ae = (ApplyEntries *) arg;
	KvPtr		e;

	if (op->op == KV_WOP_KS_CREATE || op->op == KV_WOP_KS_DROP)
	{
		/* keyspace changes take effect in their place in the record */
		if (op->op == KV_WOP_KS_CREATE)
		{
			char		name[NAMEDATALEN];

			KvLogKeyspaceName(r, key, op->keylen, name);
			KvKeyspaceRecoverCreate(op->keyspace, name);
		}
		else
			KvKeyspaceRecoverDrop(op->keyspace);
		return;
	}
	if (!KvKeyspaceIdIsActive(op->keyspace))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext log record at LSN %X/%X writes to keyspace id %u, which does not exist at that point",
						LSN_FORMAT_ARGS(r->rec->lsn), op->keyspace)));
	if (KvKeyspaceIsAcl(KvKeyspaces[op->keyspace].name))
		ae->acl = true;
	e = KvStoreApplyWrite(op->keyspace, key, op->keylen, key + op->keylen,
						  op->vallen, op->binary != 0, op->op == KV_WOP_DELETE,
						  ae->alone);
	if (e == InvalidKvPtr)
		store_full_during_apply();
	if (ae->n == ae->cap)
	{
		ae->cap *= 2;
		ae->entries = repalloc_huge(ae->entries, sizeof(KvPtr) * ae->cap);
	}
	ae->entries[ae->n++] = e;
	if ((ae->n & 0xFFFF) == 0)
		KvCheckForInterruptsLong();
}

/*
 * KvApplyTxn
 *		Apply the committed TXN record the reader holds, atomically for
 *		readers: every write becomes a pending entry of this process, then
 *		all are committed at once (the store's commit path), as committed
 *		at commit_end (the end of its COMMIT record, or for recovery the
 *		end of the TXN record).  On an error (a damaged record, a full
 *		store) the entries made so far are removed: nothing of it applies.  Every length
 *		inside the record is checked against what is left of the record
 *		before it is used, and a record is read one write at a time
 *		(KvLogRecordBytes), so a transaction of any size needs memory for
 *		one key and value plus one pointer per write.  alone: no session
 *		reads the store (recovery): each key's old value is freed before
 *		its new one is made (KvStoreApplyWrite).
 */
void
KvApplyTxn(KvLogReader *r, KvLsn commit_end, bool alone)
{
	ApplyEntries *ae = palloc(sizeof(ApplyEntries));

	ae->n = 0;
	ae->cap = 64;
	ae->entries = palloc(sizeof(KvPtr) * ae->cap);
	ae->alone = alone;
	ae->acl = false;
	PG_TRY();
	{
		KvLogForEachOp(r, apply_op, ae);
	}
	PG_CATCH();
	{
		/*
		 * Remove what was applied of it.  The error may have come with a
		 * partition lock held (compaction); the caller is aborting anyway,
		 * so release every LWLock first, as abort would.
		 */
		LWLockReleaseAll();
		for (Size i = ae->n; i > 0; i--)
			KvStoreAbortEntry(ae->entries[i - 1]);
		KvStoreEndXact();
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (ae->acl)
		KvAclNoteCommit(commit_end);
	KvStoreBeginCommit(commit_end);
	for (Size i = 0; i < ae->n; i++)
		KvStoreCommitEntry(ae->entries[i]);
	KvStoreEndXact();
	pfree(ae->entries);
	pfree(ae);
}

/* KvApplyTxnKeys's fn and its argument, through KvLogForEachOp */
typedef struct KeysArg
{
	KvTxnKeyFn	fn;
	void	   *arg;
} KeysArg;

static void
key_op(KvLogReader *r, void *arg, const KvWalOp *op, const char *key)
{
	KeysArg    *ka = (KeysArg *) arg;

	if (op->op == KV_WOP_PUT || op->op == KV_WOP_DELETE)
		ka->fn(ka->arg, op->keyspace, key, op->keylen);
}

/*
 * KvApplyTxnKeys
 *		Call fn for the keyspace and key of each write (put or delete) of
 *		the TXN record the reader holds, checked as KvApplyTxn checks them;
 *		nothing is applied.  For recovery (recovery.c).
 */
void
KvApplyTxnKeys(KvLogReader *r, KvTxnKeyFn fn, void *arg)
{
	KeysArg		ka;

	ka.fn = fn;
	ka.arg = arg;
	KvLogForEachOp(r, key_op, &ka);
}

/*
 * KvApplyKeyspace
 *		Apply the keyspace record (KS_CREATE, KS_DROP: older logs) the
 *		reader holds.
 */
void
KvApplyKeyspace(KvLogReader *r)
{
	KvWalRecord *hdr = r->rec;
	KvWalKeyspace ks;
	char		name[NAMEDATALEN];

	if (hdr->len < sizeof(KvWalRecord) + sizeof(KvWalKeyspace))
		KvLogInvalidRecord(r, "keyspace record too short");
	memcpy(&ks, KvLogRecordBytes(r, sizeof(KvWalRecord), sizeof(ks)), sizeof(ks));
	KvLogKeyspaceName(r, ks.name, strnlen(ks.name, NAMEDATALEN), name);
	if (hdr->type == KV_REC_KS_CREATE)
		KvKeyspaceRecoverCreate(ks.id, name);
	else
		KvKeyspaceRecoverDrop(ks.id);
}


/* publish the apply floor: the oldest pending TXN record, or applied */
static void
publish_floor(void)
{
	KvLsn		applied = pg_atomic_read_u64(&ap->applied);

	KvWalSetApplyFloor(ap->npending > 0 ? Min(ap->pending[0], applied) : applied);
}

/* add a TXN record's position (ascending order: log order) */
static void
pending_add(KvLogReader *r, KvLsn lsn)
{
	if (ap->npending >= KVEXT_APPLY_MAX_PENDING)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("kvext follower has too many undecided transactions to apply the record at LSN %X/%X",
						LSN_FORMAT_ARGS(lsn)),
				 errdetail("%d transaction records are waiting for their COMMIT or ABORT record.",
						   ap->npending)));
	Assert(ap->npending == 0 || ap->pending[ap->npending - 1] < lsn);
	ap->pending[ap->npending++] = lsn;
}

/* index of lsn in pending, or -1 */
static int
pending_find(KvLsn lsn)
{
	int			lo = 0,
				hi = ap->npending - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (ap->pending[mid] == lsn)
			return mid;
		if (ap->pending[mid] < lsn)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

static void
pending_remove(int i)
{
	memmove(&ap->pending[i], &ap->pending[i + 1],
			sizeof(KvLsn) * (ap->npending - i - 1));
	ap->npending--;
}

/*
 * KvApplyFollowerStart
 *		Recovery on a follower: the store holds everything before applied
 *		(a record boundary); the TXN records at pending[0..npending)
 *		(ascending) are before it and undecided; replay began at from.
 */
void
KvApplyFollowerStart(KvLsn applied, KvLsn from, const KvLsn *pending, int npending)
{
	if (npending > KVEXT_APPLY_MAX_PENDING)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("kvext follower log holds %d undecided transactions, more than %d",
						npending, KVEXT_APPLY_MAX_PENDING)));
	ap->from = from;
	ap->npending = npending;
	if (npending > 0)
		memcpy(ap->pending, pending, sizeof(KvLsn) * npending);
	pg_atomic_write_u64(&ap->applied, applied);
	publish_floor();
}

/*
 * KvApplyFollowerStop
 *		A leader that caught up (KvReplLeaderCatchUp) has applied its whole
 *		log: from now on its own commits apply themselves.  Caller holds the
 *		append lock.
 */
void
KvApplyFollowerStop(void)
{
	Assert(ap->npending == 0);
	ap->npending = 0;
	pg_atomic_write_u64(&ap->applied, InvalidKvLsn);
	KvWalSetApplyFloor(InvalidKvLsn);
}

/*
 * KvApplyFollowerPos
 *		The follower's applied position, or 0 if this node is not applying
 *		as a follower.
 */
KvLsn
KvApplyFollowerPos(void)
{
	return ap ? pg_atomic_read_u64(&ap->applied) : InvalidKvLsn;
}

/*
 * apply_commit
 *		The COMMIT record hdr names a TXN record: apply it, read back from
 *		the log with txn (a second reader, created on first use in the
 *		caller's memory context).
 */
static void
apply_commit(KvLogReader *r, KvLogReader **txn)
{
	KvWalRecord *hdr = r->rec;
	KvLsn		ref = hdr->ref;
	KvLsn		commit_end = hdr->lsn + hdr->len;
	int			i = pending_find(ref);

	if (i < 0)
	{
		/* decided before replay began: the snapshot holds it */
		if (ref < ap->from)
			return;
		KvLogInvalidRecord(r, "a COMMIT record names no undecided transaction record");
	}
	if (*txn == NULL)
	{
		*txn = KvLogReaderBegin(ref);
		/* as far as the reader of the COMMIT records may */
		KvLogReaderReadAhead(*txn, r->ahead_limit);
	}
	else
		KvLogReaderSeek(*txn, ref);
	if (KvLogReadNext(*txn) != KV_READ_RECORD || (*txn)->rec->type != KV_REC_TXN)
		KvLogReportCorrupt(*txn, ref,
						   (*txn)->rec ? "not a transaction record" :
						   (*txn)->why ? (*txn)->why : "no record there",
						   "A COMMIT record names this position.", NULL);
	KvApplyTxn(*txn, commit_end, false);
	pending_remove(i);
}

/*
 * KvApplyFollowerAdvance
 *		A follower applies its log from its applied position up to upto (a
 *		record boundary of its log, at most the commit position the leader
 *		sent): COMMIT records apply the TXN records they name, ABORT records
 *		drop them from the pending list, keyspace records apply, TXN
 *		records wait for their decision.  The applied position moves after
 *		every record, so an error leaves everything before it applied and
 *		the next call goes on from there.  Returns the applied position.
 *		Caller holds the append lock; allocates in the current context.
 */
KvLsn
KvApplyFollowerAdvance(KvLsn upto)
{
	KvLsn		applied = pg_atomic_read_u64(&ap->applied);
	KvLogReader *r;
	KvLogReader *txn = NULL;

	if (applied == InvalidKvLsn || upto <= applied)
		return applied;
	r = KvLogReaderBegin(applied);
	/* the committed log does not change under the append lock */
	KvLogReaderReadAhead(r, upto);
	while (r->pos < upto)
	{
		KvWalRecord *hdr;

		if (KvLogReadNext(r) != KV_READ_RECORD)
			KvLogReportCorrupt(r, r->pos, r->why ? r->why : "the log ends",
							   psprintf("The group committed the log up to %X/%X.",
										LSN_FORMAT_ARGS(upto)), NULL);
		hdr = r->rec;
		if (hdr->lsn + hdr->len > upto)
			break;				/* not a boundary: stop before it */
		switch (hdr->type)
		{
			case KV_REC_TXN:
				pending_add(r, hdr->lsn);
				break;
			case KV_REC_COMMIT:
				apply_commit(r, &txn);
				break;
			case KV_REC_ABORT:
				{
					int			i = pending_find(hdr->ref);

					if (i >= 0)
						pending_remove(i);
				}
				break;
			case KV_REC_KS_CREATE:
			case KV_REC_KS_DROP:
				KvApplyKeyspace(r);
				break;
			default:
				break;			/* TERM */
		}
		pg_atomic_write_u64(&ap->applied, hdr->lsn + hdr->len);
		publish_floor();
		KvCheckForInterruptsLong();
	}
	if (txn)
		KvLogReaderEnd(txn);
	KvLogReaderEnd(r);
	return pg_atomic_read_u64(&ap->applied);
}

/*
 * KvApplyFollowerPending
 *		A copy (palloc'd) of the follower's undecided TXN positions, in log
 *		order; returns how many.  Caller holds the append lock.
 */
int
KvApplyFollowerPending(KvLsn **out)
{
	*out = palloc(sizeof(KvLsn) * Max(ap->npending, 1));
	memcpy(*out, ap->pending, sizeof(KvLsn) * ap->npending);
	return ap->npending;
}

/*
 * KvApplyUndecided
 *		The TXN records still undecided at position to: those of initial
 *		(ascending, all before from), plus every TXN record read from from
 *		up to to, less those a COMMIT or ABORT record before to decides.
 *		Returns how many, in log order, in *out (palloc'd).
 */
int
KvApplyUndecided(const KvLsn *initial, int ninitial, KvLsn from, KvLsn to,
				 KvLsn **out)
{
	int			cap = Max(ninitial, 16);
	int			n = ninitial;
	KvLsn	   *list = palloc(sizeof(KvLsn) * cap);
	KvLogReader *r;

	memcpy(list, initial, sizeof(KvLsn) * ninitial);
	r = KvLogReaderBegin(from);
	while (r->pos < to && KvLogReadNext(r) == KV_READ_RECORD)
	{
		KvWalRecord *hdr = r->rec;

		if (hdr->lsn + hdr->len > to)
			break;
		if (hdr->type == KV_REC_TXN)
		{
			if (n >= KVEXT_APPLY_MAX_PENDING)
				ereport(ERROR,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("kvext log holds more than %d undecided transactions before LSN %X/%X",
								KVEXT_APPLY_MAX_PENDING, LSN_FORMAT_ARGS(to))));
			if (n == cap)
			{
				cap *= 2;
				list = repalloc(list, sizeof(KvLsn) * cap);
			}
			list[n++] = hdr->lsn;
		}
		else if (hdr->type == KV_REC_COMMIT || hdr->type == KV_REC_ABORT)
		{
			for (int i = 0; i < n; i++)
			{
				if (list[i] == hdr->ref)
				{
					memmove(&list[i], &list[i + 1], sizeof(KvLsn) * (n - i - 1));
					n--;
					break;
				}
			}
		}
		KvCheckForInterruptsLong();
	}
	KvLogReaderEnd(r);
	*out = list;
	return n;
}
