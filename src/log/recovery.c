/*-------------------------------------------------------------------------
 *
 * recovery.c
 *	  Rebuilding the store from the snapshot and the log, at server start
 *	  and after every crash-restart (which wipes shared memory).
 *
 * The "kvext checkpointer" worker runs KvRecover() before anything else.
 * It starts once PostgreSQL's own recovery has finished, so pg_xact is
 * consistent. Until recovery ends, every kv function waits (on a
 * condition variable, at most kvext.recovery_wait_timeout) instead of
 * answering from an empty or half-loaded store.
 *
 * Order:
 *	1. read the control file (created for a new store) and the header of
 *	   kvext/snapshot, if any (its redo point says where replay starts);
 *	2. pass 1 over the log from the redo point, through the log reader
 *	   (reader.c): check every record, find the end, and collect the
 *	   decisions: COMMIT and ABORT records name the TXN record they decide
 *	   by its position;
 *	3. decide, in log order, what each TXN record becomes (scan_decide):
 *	   applied now, pending (in a group), or nothing.  A TXN record with no
 *	   decision is decided now, once: a kv-only one is aborted (its client
 *	   never got success: the COMMIT record comes first); a mixed one (flag
 *	   HEAP) committed if pg_xact says so, which is final because its xid
 *	   was made durable in PostgreSQL's WAL before the TXN record was
 *	   written.  Note the keys the applied ones write;
 *	4. load the snapshot without those keys (below);
 *	5. pass 2: apply, in log order, every TXN record step 3 applies;
 *	6. cut a torn tail, open the log after the last valid record, and log
 *	   the decisions of step 3 (flushed), so they are never taken again.
 *	   A log that held version-1 records (xid-based rules) is settled by a
 *	   snapshot right away.
 *
 * Torn tail vs. corruption.  A record that fails its checks is a torn
 * write, cleared with a LOG message giving its position, only if it is in
 * the last segment and at or beyond the control file's flush watermark (a
 * position up to which the log was known durable, see control.c).
 * Anything else is corruption: a bad record in an earlier segment or
 * below the watermark, a gap between segments, a damaged snapshot or
 * control file.  The store then refuses to serve (state FAILED) with an
 * error naming the file and position; PostgreSQL stays up and no file is
 * changed.  The same applies when the data no longer fits in
 * kvext.memory_limit.
 *
 * A follower (kvext.peers set, not leading after KvVisibleRecoveredTerm)
 * applies only the records that end by its commit watermark (control.c:
 * a position its group had committed), or its snapshot's redo point if
 * that is later, decides nothing itself (a TXN record without a decision
 * waits for its leader's) and logs nothing: its log must stay a prefix of
 * its leader's.  What follows the limit is applied by apply.c once the
 * leader sends a commit position past it.
 *
 * Replay is idempotent (absolute values, log order), so a crash during
 * recovery only means doing it again.
 *
 * Room.  A snapshot is fuzzy: it copies partitions at different moments
 * while sessions write, so it can hold a value deleted during the copy
 * together with one put after that delete, more than the store ever held
 * at once; and replaying the log over it can rebuild an old value of one
 * key while the snapshot already holds a later value of another.  A store
 * that was nearly full would then not fit again.  So step 4 leaves out of
 * the snapshot every key that a record applied in step 5 writes: replay
 * rebuilds each of them from its writes after the redo point, and every
 * other key keeps the value it had at the redo point throughout.  At each
 * record, recovery then holds, key by key, a subset of what the server
 * held after that record (a key not written yet since the redo point is
 * missing, not older), so what fit at run time fits again.  The keys are
 * kept in this process's memory, at most KVEXT_RECOVERY_KEYS_BUDGET bytes;
 * past that, the whole snapshot is loaded, as before.  Only keys of TXN
 * records applied now are left out: one that stays pending (a group) may
 * still be aborted, and the snapshot's value is then the right one.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/transam.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/fd.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/elog.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "log/apply.h"
#include "log/backup.h"
#include "log/control.h"
#include "log/install.h"
#include "log/reader.h"
#include "log/snapshot.h"
#include "log/visible.h"
#include "failpoint.h"
#include "kvext.h"
#include "log/recovery.h"
#include "store/keyspace.h"
#include "store/store.h"
#include "log/wal.h"

typedef struct KvRecoveryShared
{
	pg_atomic_uint32 state;		/* KV_STATE_* */
	ConditionVariable cv;		/* broadcast when state leaves RECOVERING */
	slock_t		mutex;
	int			sqlstate;		/* FAILED: the error to report */
	char		message[512];
	char		detail[512];
	char		hint[512];
} KvRecoveryShared;

static KvRecoveryShared *rec = NULL;
pg_atomic_uint32 *KvStateFlag = NULL;

Size
KvRecoveryShmemSize(void)
{
	return sizeof(KvRecoveryShared);
}

void
KvRecoveryShmemInit(void)
{
	bool		found;

	rec = ShmemInitStruct("kvext recovery", sizeof(KvRecoveryShared), &found);
	if (!found)
	{
		pg_atomic_init_u32(&rec->state, KV_STATE_STARTING);
		ConditionVariableInit(&rec->cv);
		SpinLockInit(&rec->mutex);
		rec->sqlstate = 0;
		rec->message[0] = rec->detail[0] = rec->hint[0] = '\0';
	}
	KvStateFlag = &rec->state;
}

/*
 * KvStateName
 *		The store's state, for kv_wal_status().
 */
const char *
KvStateName(void)
{
	switch (pg_atomic_read_u32(&rec->state))
	{
		case KV_STATE_STARTING:
			return "starting";
		case KV_STATE_RECOVERING:
			return "recovering";
		case KV_STATE_READY:
			return "ready";
		case KV_STATE_REBUILDING:
			return "rebuilding";
		default:
			return "failed";
	}
}

static void
set_state(uint32 state)
{
	pg_atomic_write_u32(&rec->state, state);
	ConditionVariableBroadcast(&rec->cv);
}

/*
 * KvWaitReady
 *		Wait until the store is ready, or raise an error: the recovery
 *		failure, or 57P03 after kvext.recovery_wait_timeout.
 */
void
KvWaitReady(void)
{
	TimestampTz start = GetCurrentTimestamp();
	uint32		state;

	ConditionVariablePrepareToSleep(&rec->cv);
	for (;;)
	{
		long		waited;

		state = pg_atomic_read_u32(&rec->state);
		if (state == KV_STATE_READY || state == KV_STATE_FAILED)
			break;
		waited = (long) ((GetCurrentTimestamp() - start) / 1000);
		if (waited >= kvext_recovery_wait_timeout && state == KV_STATE_REBUILDING)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_CANNOT_CONNECT_NOW),
					 errmsg("the kvext store is not ready: it is being rebuilt from its leader's snapshot"),
					 errdetail("Waited %ld ms (kvext.recovery_wait_timeout).", waited),
					 errhint("Retry later; the server log shows the rebuild.")));
		}
		if (waited >= kvext_recovery_wait_timeout)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_CANNOT_CONNECT_NOW),
					 errmsg("the kvext store is not ready: recovery is still running"),
					 errdetail("Waited %ld ms (kvext.recovery_wait_timeout).", waited),
					 errhint("Retry later; the server log shows recovery progress.")));
		}
		(void) ConditionVariableTimedSleep(&rec->cv,
										   Min(1000L, kvext_recovery_wait_timeout - waited),
										   PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();

	if (state == KV_STATE_FAILED)
	{
		int			sqlstate;
		char		message[512];
		char		detail[512];
		char		hint[512];

		SpinLockAcquire(&rec->mutex);
		sqlstate = rec->sqlstate;
		memcpy(message, rec->message, sizeof(message));
		memcpy(detail, rec->detail, sizeof(detail));
		memcpy(hint, rec->hint, sizeof(hint));
		SpinLockRelease(&rec->mutex);
		if (hint[0] == '\0')
			strlcpy(hint, "Fix the cause and restart the server; no kvext file was changed.",
					sizeof(hint));
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("the kvext store is unavailable: %s", message),
				 detail[0] ? errdetail_internal("%s", detail) : 0,
				 errhint("%s", hint)));
	}
}

/*
 * KvRecoveryBeginRebuild / KvRecoveryEndRebuild
 *		A follower replaces its store with its leader's snapshot
 *		(install.c): meanwhile new kv calls wait, as during recovery.
 */
void
KvRecoveryBeginRebuild(void)
{
	set_state(KV_STATE_REBUILDING);
}

void
KvRecoveryEndRebuild(void)
{
	set_state(KV_STATE_READY);
}

/*
 * KvRecoveryFail
 *		The store cannot serve any more (a rebuild failed half-way): every
 *		kv function reports this error until the server restarts.
 */
void
KvRecoveryFail(int sqlstate, const char *message, const char *detail,
			   const char *hint)
{
	SpinLockAcquire(&rec->mutex);
	rec->sqlstate = sqlstate;
	strlcpy(rec->message, message ? message : "", sizeof(rec->message));
	strlcpy(rec->detail, detail ? detail : "", sizeof(rec->detail));
	strlcpy(rec->hint, hint ? hint : "", sizeof(rec->hint));
	SpinLockRelease(&rec->mutex);
	set_state(KV_STATE_FAILED);
}

/* ---- replaying the log ---- */

/* what pass 1 learns about a TXN record */
typedef struct TxnFate
{
	KvLsn		lsn;			/* hash key: position of the TXN record */
	char		apply;			/* scan_decide: 'y' applied by pass 2, 'p'
								 * pending (a group), 'n' not applied */
	char		decision;		/* 'c', 'a', or 0: none logged */
	char		late;			/* in a group: 'c' or 'a' logged past the
								 * commit watermark (not known committed) */
	uint8		flags;			/* the TXN record's flags and xid */
	TransactionId xid;
} TxnFate;

typedef struct LogScan
{
	KvLsn		redo;			/* replay starts here */
	KvLsn		end;			/* end of the valid log */
	KvLsn		watermark;		/* the control file's flush watermark */
	bool		torn;			/* a torn tail follows end */
	bool		restored;		/* a restored backup: cut at the first bad record */
	uint64		term;
	uint64		nrecords;
	bool		has_v1;			/* version-1 records were replayed */
	KvLsn		stray;			/* an all-zero last segment to remove */
	HTAB	   *fates;			/* TxnFate by TXN position (version 2) */
	HTAB	   *v1_aborted;		/* xids of version-1 ABORT records */
	/* decisions recovery takes and logs: TXN positions */
	List	   *resolved_commit;
	List	   *resolved_abort;
	/* the last valid record */
	KvLsn		last_start;
	uint64		last_term;
	/* in a group, only what the group had committed is applied (below) */
	bool		limited;
	bool		follower;		/* ... and a follower decides nothing */
	KvLsn		limit;			/* follower: apply records ending by here */
	KvLsn	   *pending;		/* follower: undecided TXN records before
								 * limit, ascending */
	int			npending;
	int			maxpending;
	/* keys pass 2 rewrites, left out of the snapshot (file header) */
	HTAB	   *rewritten;		/* ReplayKey; NULL: none, or too many */
	MemoryContext rewritten_cxt;
	Size		rewritten_bytes;
} LogScan;

/* the memory the keys the log rewrites may take (file header, "Room") */
#define KVEXT_RECOVERY_KEYS_BUDGET	((Size) 256 * 1024 * 1024)

/* a key pass 2 rewrites: the hash key is the whole struct */
typedef struct ReplayKey
{
	uint16		keyspace;
	uint32		keylen;
	const char *key;			/* in rewritten_cxt */
} ReplayKey;

static uint32
replay_key_hash(const void *k, Size keysize)
{
	const ReplayKey *rk = (const ReplayKey *) k;

	return hash_bytes((const unsigned char *) rk->key, rk->keylen) ^
		((uint32) rk->keyspace * 0x9E3779B1);
}

static int
replay_key_match(const void *a, const void *b, Size keysize)
{
	const ReplayKey *x = (const ReplayKey *) a;
	const ReplayKey *y = (const ReplayKey *) b;

	return (x->keyspace == y->keyspace && x->keylen == y->keylen &&
			memcmp(x->key, y->key, x->keylen) == 0) ? 0 : 1;
}

/* a record at the reader's position that failed its checks (reader.c) */
static void
fail_corrupt(KvLogReader *r, const char *why, const char *detail, const char *hint)
{
	KvLogReportCorrupt(r, r->pos, why, detail, hint);
}


static TxnFate *
fate_of(LogScan *ls, KvLsn lsn, bool create)
{
	bool		found;
	TxnFate    *f = hash_search(ls->fates, &lsn, create ? HASH_ENTER : HASH_FIND, &found);

	if (create && !found)
		f->decision = f->late = 0;
	return f;
}

/*
 * restored_copy_ends
 *		In a copy restored from a file-level backup, the first record that
 *		fails its checks ends the log (backup.c says why that is sound):
 *		log it, and let recovery cut the log there.
 */
static void
restored_copy_ends(LogScan *ls, KvLogReader *r)
{
	char		path[MAXPGPATH];

	KvWalSegmentPath(path, KvLogReaderSegStart(r));
	ereport(LOG,
			(errmsg("kvext log of this restored backup ends at LSN %X/%X in \"%s\" (%s); the rest was copied while it was being written and is cleared",
					LSN_FORMAT_ARGS(r->pos), path, r->why)));
	ls->torn = true;
}

/*
 * damaged_length
 *		The record at r->pos was written whole, but its length field was
 *		damaged later (reader.c, length_fix): no crash does that, so it is
 *		corruption wherever it is, and the records after it may have been
 *		durable.  Refuse, saying whether valid records follow.
 */
static void
damaged_length(KvLogReader *r)
{
	KvLsn		next = KvLogReaderValidAfter(r);
	char	   *detail;

	if (next != InvalidKvLsn)
		detail = psprintf("The record's header says %u bytes; with %u bytes, one bit different, its checksum holds, and a valid record follows at LSN %X/%X: it was written whole and damaged later, which no crash does.",
						  r->bad_len_claimed, r->bad_extent, LSN_FORMAT_ARGS(next));
	else
		detail = psprintf("The record's header says %u bytes; with %u bytes, one bit different, its checksum holds: it was written whole and damaged later, which no crash does.",
						  r->bad_len_claimed, r->bad_extent);
	fail_corrupt(r, r->why, detail,
				 psprintf("Restore the kvext log from a backup; zeroing the file from offset %llu lets the store start without this record and the ones after it.",
						  (unsigned long long) (r->pos - KvLogReaderSegStart(r))));
}

/*
 * scan_pass1
 *		Check the log from the redo point, find its end, and collect the
 *		decisions: COMMIT and ABORT records name their TXN record by
 *		position (version 2); version-1 ABORT records name an xid.
 *		A record that fails its checks ends the log as a torn tail only if
 *		it lies in the last segment beyond the control file's flush
 *		watermark (it was never known durable); anything else is corruption.
 */
static void
scan_pass1(LogScan *ls)
{
	KvLogReader *r = KvLogReaderBegin(ls->redo);

	for (;;)
	{
		KvLogReadResult res = KvLogReadNext(r);
		KvWalRecord *hdr = r->rec;

		if (res == KV_READ_END)
			break;
		if (res == KV_READ_BAD)
		{
			char		path[MAXPGPATH];

			KvLsn		next;

			if (r->bad_len_claimed != 0)
				damaged_length(r);
			if (ls->restored)
			{
				restored_copy_ends(ls, r);
				break;
			}
			if (!r->bad_in_last)
				fail_corrupt(r, r->why, "A later log file follows the damaged record.", NULL);
			if (r->pos < ls->watermark)
				fail_corrupt(r, r->why,
							 psprintf("The log was durable up to %X/%X (the control file's flush watermark), so this is not a torn write.",
									  LSN_FORMAT_ARGS(ls->watermark)), NULL);
			next = KvLogReaderValidAfter(r);
			if (next != InvalidKvLsn)
				fail_corrupt(r, r->why,
							 psprintf("A valid record follows at LSN %X/%X: a crash leaves no damaged record before valid ones.",
									  LSN_FORMAT_ARGS(next)),
							 psprintf("If the machine lost power, the records after the damaged one may never have been flushed; zeroing the file from offset %llu lets the store start without them.",
									  (unsigned long long) (r->pos - KvLogReaderSegStart(r))));
			KvWalSegmentPath(path, KvLogReaderSegStart(r));
			ereport(LOG,
					(errmsg("kvext log ends with a torn record at LSN %X/%X in \"%s\" (%s); clearing %lld bytes",
							LSN_FORMAT_ARGS(r->pos), path, r->why,
							(long long) (r->segsize - (off_t) (r->pos - KvLogReaderSegStart(r))))));
			ls->torn = true;
			break;
		}

		ls->term = Max(ls->term, hdr->term);
		ls->nrecords++;
		ls->last_start = hdr->lsn;
		ls->last_term = hdr->term;
		if (hdr->version == KVEXT_WAL_VERSION_1)
		{
			ls->has_v1 = true;
			if (hdr->type == KV_REC_ABORT)
				(void) hash_search(ls->v1_aborted, &hdr->xid, HASH_ENTER, NULL);
			continue;
		}
		switch (hdr->type)
		{
			case KV_REC_TXN:
				{
					TxnFate    *f = fate_of(ls, hdr->lsn, true);

					f->flags = hdr->flags;
					f->xid = hdr->xid;
				}
				break;
			case KV_REC_COMMIT:
			case KV_REC_ABORT:
				{
					TxnFate    *f;

					if (hdr->ref == InvalidKvLsn || hdr->ref >= hdr->lsn)
						KvLogInvalidRecord(r, "a decision record names no earlier position");
					f = fate_of(ls, hdr->ref, false);

					/*
					 * A decision for a TXN record before the redo point is
					 * in the snapshot; on a follower, one past the limit
					 * is not known committed by the group yet.
					 */
					if (f == NULL)
						break;
					if (!ls->limited || hdr->lsn + hdr->len <= ls->limit)
						f->decision = (hdr->type == KV_REC_COMMIT) ? 'c' : 'a';
					else
						f->late = (hdr->type == KV_REC_COMMIT) ? 'c' : 'a';
				}
				break;
			case KV_REC_KS_CREATE:
			case KV_REC_KS_DROP:
			case KV_REC_TERM:
				break;
			default:
				KvLogInvalidRecord(r, "unknown record type");
		}
		KvCheckForInterruptsLong();
	}
	ls->end = r->pos;
	ls->stray = r->stray_last;
	KvLogReaderEnd(r);
}

/*
 * mixed_committed
 *		A mixed transaction's TXN record has no decision: its backend died
 *		between PostgreSQL's commit and kvext's COMMIT record, or before
 *		PostgreSQL's commit.  Its xid was made durable in PostgreSQL's WAL
 *		before the TXN record was written, so PostgreSQL has not handed it
 *		out again and pg_xact's answer is final.  An xid pg_xact no longer
 *		knows cannot be decided: refuse rather than guess.
 */
static bool
mixed_committed(KvLsn lsn, TransactionId xid)
{
	if (!TransactionIdIsNormal(xid))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext log record at LSN %X/%X names invalid transaction %u",
						LSN_FORMAT_ARGS(lsn), xid)));
	if (TransactionIdFollowsOrEquals(xid, ReadNextTransactionId()))
		return false;			/* PostgreSQL never saw it commit */
	if (TransactionIdPrecedes(xid, ShmemVariableCache->oldestClogXid))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot decide the kvext transaction logged at LSN %X/%X: the status of transaction %u is no longer in pg_xact",
						LSN_FORMAT_ARGS(lsn), xid),
				 errdetail("Its tables and keys were written together, and only PostgreSQL knew whether it committed.")));
	return TransactionIdDidCommit(xid);
}

/* did the transaction of a version-1 TXN record commit?  (version-1 rules) */
static bool
v1_committed(LogScan *ls, KvWalRecord *hdr)
{
	if (!(hdr->flags & KV_RECF_HEAP))
		return hash_search(ls->v1_aborted, &hdr->xid, HASH_FIND, NULL) == NULL;
	return mixed_committed(hdr->lsn, hdr->xid);
}

/*
 * decide_once
 *		A TXN record with no COMMIT or ABORT record: decide it now, once (a
 *		kv-only one aborted, a mixed one as pg_xact says), and remember the
 *		decision for log_resolutions.  Returns whether it committed.
 */
static bool
decide_once(LogScan *ls, TxnFate *f)
{
	bool		commit = (f->flags & KV_RECF_HEAP) && mixed_committed(f->lsn, f->xid);

	if (commit)
		ls->resolved_commit = lappend(ls->resolved_commit, f);
	else
		ls->resolved_abort = lappend(ls->resolved_abort, f);
	return commit;
}

/* note a key a TXN record applied by pass 2 writes (KvApplyTxnKeys) */
static void
note_rewritten(void *arg, uint16 keyspace, const char *key, uint32 keylen)
{
	LogScan    *ls = (LogScan *) arg;
	ReplayKey	rk;
	ReplayKey  *e;
	bool		found;

	if (ls->rewritten == NULL)
		return;
	rk.keyspace = keyspace;
	rk.keylen = keylen;
	rk.key = key;
	e = hash_search(ls->rewritten, &rk, HASH_ENTER, &found);
	if (found)
		return;
	e->key = MemoryContextAlloc(ls->rewritten_cxt, Max(keylen, 1));
	memcpy((char *) e->key, key, keylen);
	ls->rewritten_bytes += keylen + sizeof(ReplayKey) + 32;
	if (ls->rewritten_bytes > KVEXT_RECOVERY_KEYS_BUDGET)
	{
		ereport(LOG,
				(errmsg("kvext recovery loads the whole snapshot: the keys the log rewrites after it take more than %zu MB",
						KVEXT_RECOVERY_KEYS_BUDGET / (1024 * 1024))));
		MemoryContextDelete(ls->rewritten_cxt);
		ls->rewritten = NULL;
		ls->rewritten_cxt = NULL;
	}
}

/* KvSnapshotLoad's skip: keys pass 2 rebuilds */
static bool
skip_rewritten(void *arg, uint16 keyspace, const char *key, uint32 keylen)
{
	LogScan    *ls = (LogScan *) arg;
	ReplayKey	rk;

	if (ls->rewritten == NULL)
		return false;
	rk.keyspace = keyspace;
	rk.keylen = keylen;
	rk.key = key;
	return hash_search(ls->rewritten, &rk, HASH_FIND, NULL) != NULL;
}

/*
 * scan_decide
 *		Step 3 (file header): in log order, what each version-2 TXN record
 *		that pass 2 reaches becomes (TxnFate.apply), deciding the undecided
 *		once; with collect, note the keys of those applied now.  Pass 2
 *		reads the same records and follows these decisions.
 */
static void
scan_decide(LogScan *ls, bool collect)
{
	KvLogReader *r = KvLogReaderBegin(ls->redo);

	if (collect)
	{
		HASHCTL		ctl;

		ls->rewritten_cxt = AllocSetContextCreate(CurrentMemoryContext,
												  "kvext keys replay rewrites",
												  ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(ReplayKey);
		ctl.entrysize = sizeof(ReplayKey);
		ctl.hash = replay_key_hash;
		ctl.match = replay_key_match;
		ctl.hcxt = ls->rewritten_cxt;
		ls->rewritten = hash_create("kvext keys replay rewrites", 1024, &ctl,
									HASH_ELEM | HASH_FUNCTION | HASH_COMPARE |
									HASH_CONTEXT);
	}
	while (r->pos < ls->end && KvLogReadNext(r) == KV_READ_RECORD)
	{
		KvWalRecord *hdr = r->rec;
		TxnFate    *f;

		/* in a group: nothing past the limit (as pass 2) */
		if (ls->limited && hdr->lsn + hdr->len > ls->limit)
			break;
		if (hdr->version == KVEXT_WAL_VERSION_1 || hdr->type != KV_REC_TXN)
			continue;
		f = fate_of(ls, hdr->lsn, false);
		Assert(f != NULL);
		if (f->decision != 0)
			f->apply = (f->decision == 'c') ? 'y' : 'n';
		else if (ls->follower || f->late != 0)
		{
			/*
			 * Its decision is in a record the group has not committed yet
			 * (or, on a follower, comes from the leader): it waits
			 * (apply.c).  A follower never decides anything itself.
			 */
			f->apply = 'p';
		}
		else
		{
			bool		commit = decide_once(ls, f);

			/*
			 * A leader in a group logs its decision at the end of its log,
			 * past the commit watermark: it is applied (apply.c) once the
			 * group has it.
			 */
			f->apply = ls->limited ? 'p' : (commit ? 'y' : 'n');
		}
		if (f->apply == 'y' && collect && ls->rewritten != NULL)
			KvApplyTxnKeys(r, note_rewritten, ls);
		KvCheckForInterruptsLong();
	}
	KvLogReaderEnd(r);
}

/*
 * scan_pass2
 *		Apply the (checked) log from the redo point to its end, in log
 *		order.  A TXN record is applied where it stands, if it committed:
 *		a later transaction that wrote the same key waited for this one's
 *		COMMIT record, so its own TXN record follows that.  A version-2 TXN
 *		record without a decision is decided here: kv-only, it is aborted;
 *		mixed, pg_xact decides.  Those decisions are logged after replay.
 */
/* remember an undecided TXN record before the limit (a group's recovery) */
static void
add_pending(LogScan *ls, KvLsn lsn)
{
	if (ls->npending == ls->maxpending)
	{
		ls->maxpending *= 2;
		ls->pending = repalloc(ls->pending, sizeof(KvLsn) * ls->maxpending);
	}
	ls->pending[ls->npending++] = lsn;
}

static void
scan_pass2(LogScan *ls)
{
	KvLogReader *r = KvLogReaderBegin(ls->redo);

	while (r->pos < ls->end && KvLogReadNext(r) == KV_READ_RECORD)
	{
		KvWalRecord *hdr = r->rec;

		/* in a group: nothing past the limit (apply.c goes on from it) */
		if (ls->limited && hdr->lsn + hdr->len > ls->limit)
			break;

		if (hdr->version == KVEXT_WAL_VERSION_1)
		{
			if (hdr->type == KV_REC_TXN && v1_committed(ls, hdr))
				KvApplyTxn(r, r->rec->lsn + r->rec->len, true);
			else if (hdr->type == KV_REC_KS_CREATE || hdr->type == KV_REC_KS_DROP)
				KvApplyKeyspace(r);
			continue;
		}
		switch (hdr->type)
		{
			case KV_REC_TXN:
				{
					/* as scan_decide decided */
					TxnFate    *f = fate_of(ls, hdr->lsn, false);

					Assert(f != NULL && f->apply != 0);
					if (f->apply == 'p')
						add_pending(ls, hdr->lsn);
					else if (f->apply == 'y')
						KvApplyTxn(r, r->rec->lsn + r->rec->len, true);
				}
				break;
			case KV_REC_KS_CREATE:
			case KV_REC_KS_DROP:
				KvApplyKeyspace(r);
				break;
			default:
				break;
		}
		KvCheckForInterruptsLong();
	}
	KvLogReaderEnd(r);
}

/*
 * decide_past_limit
 *		A leader in a group replays its log only up to its commit watermark
 *		(scan_pass2 stops there), but it must still decide, once, every TXN
 *		record past it that has no COMMIT or ABORT record at all, as a
 *		single server does: a kv-only one is aborted, a mixed one decided by
 *		pg_xact.  The decisions are logged (log_resolutions) and applied with
 *		the rest of the log once the group confirms it (apply.c).
 */
static void
decide_past_limit(LogScan *ls)
{
	HASH_SEQ_STATUS seq;
	TxnFate    *f;

	hash_seq_init(&seq, ls->fates);
	while ((f = hash_seq_search(&seq)) != NULL)
	{
		if (f->lsn < ls->limit || f->decision != 0 || f->late != 0)
			continue;
		(void) decide_once(ls, f);
	}
}

/*
 * log_resolutions
 *		The log is open again: write what recovery decided, so that the
 *		question is never asked again (xid reuse and wraparound cannot
 *		change an answer that is logged), and flush it.
 */
static void
log_resolutions(LogScan *ls)
{
	ListCell   *lc;

	foreach(lc, ls->resolved_commit)
		(void) KvWalInsertMarker(KV_REC_COMMIT, KV_RECF_RESOLVED, ((TxnFate *) lfirst(lc))->lsn);
	foreach(lc, ls->resolved_abort)
		(void) KvWalInsertMarker(KV_REC_ABORT, KV_RECF_RESOLVED, ((TxnFate *) lfirst(lc))->lsn);
	KvWalFlushAll();
	if (ls->resolved_commit != NIL || ls->resolved_abort != NIL)
		ereport(LOG,
				(errmsg("kvext recovery decided %d unfinished transactions: %d committed (pg_xact), %d aborted",
						list_length(ls->resolved_commit) + list_length(ls->resolved_abort),
						list_length(ls->resolved_commit), list_length(ls->resolved_abort))));
}

/*
 * start_new_log
 *		No log at all: a new store.  Create the first segment and log the
 *		first term's start.
 */
static void
start_new_log(uint64 term)
{
	char		rec[sizeof(KvWalRecord)];

	KvWalStartAt(InvalidKvLsn, InvalidKvLsn, term);
	memset(rec, 0, sizeof(rec));
	KvWalFlush(KvWalInsert(rec, KV_REC_TERM, 0, InvalidTransactionId,
						   InvalidKvLsn, sizeof(rec), -1, NULL));
}

/*
 * make_dir
 *		Create a directory unless it exists, and make it and its entry in
 *		parent durable (fsync both, PANIC on failure).  The fsyncs run even
 *		when it exists: a crash between an earlier mkdir and its fsync
 *		leaves a directory whose entry may still be lost on power failure.
 */
static void
make_dir(const char *path, const char *parent)
{
	if (MakePGDirectory(path) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", path)));
	fsync_fname(path, true);
	fsync_fname(parent, true);
}

/*
 * recovered_role
 *		A node that would lead its term again (KvVisibleRecoveredTerm) does
 *		so only in the boot of its machine it led in: its senders ship
 *		records before its own fsync, so after a machine restart its log may
 *		lack records its followers hold, and (term, position) would no
 *		longer name one record if it wrote others there.  It then follows,
 *		with no leader, until it wins a new term (the campaign flag,
 *		replication/campaign.c).  A node whose campaign a crash interrupted
 *		campaigns again.  Failpoint recovery-new-boot takes any restart for a
 *		machine restart.
 */
static void
recovered_role(const KvControl *control)
{
	char		boot[KVEXT_BOOT_ID_LEN];

	if (!KvVisibleInGroup())
		return;
	KvBootId(boot);
	if (KvVisibleIsLeader())
	{
		bool		rebooted = (control->led_boot[0] != '\0' &&
								strcmp(control->led_boot, boot) != 0) ||
			KvFailpointMatches("recovery-new-boot");

		if (!rebooted && !control->campaign)
		{
			KvControlSetLedBoot();
			return;
		}
		KvControlSetCampaign(true);
		KvVisibleSetRole(false, control->term, NULL);
		ereport(LOG,
				(errmsg("kvext node \"%s\" led term " UINT64_FORMAT " before its machine restarted: it must win a new term before it leads again",
						kvext_node_name, control->term),
				 errdetail("Its log may lack records it had shipped and not fsynced.")));
	}
	else if (control->campaign)
	{
		/*
		 * A campaign a crash cut short goes on only if its current term has
		 * no known leader and this node voted in it for nobody or itself;
		 * otherwise it had followed a leader or voted for another
		 * candidate, and a campaign now would only depose them.
		 */
		if (KvControlMayStand(control))
			ereport(LOG,
					(errmsg("kvext node \"%s\" campaigns again to lead its group after a restart",
							kvext_node_name)));
		else
			KvControlSetCampaign(false);
	}
}

/*
 * recover
 *		The work of KvRecover; raises errors.
 */
static void
recover(void)
{
	LogScan		ls;
	KvLsn		redo = InvalidKvLsn;
	uint64		term = 1;
	bool		have_snapshot;
	TimestampTz start = GetCurrentTimestamp();
	KvLsn	   *segs;
	int			nsegs;
	KvControl	control;
	HASHCTL		ctl;
	bool		restored;
	bool		follower;

	make_dir(KVEXT_DIR, ".");
	make_dir(KVEXT_WAL_DIR, KVEXT_DIR);
	/* nobody else uses the store until we are done: move anything */
	KvStoreCompactUnbounded(true);
	/* a snapshot that was being written when we crashed is garbage */
	(void) unlink(KVEXT_SNAPSHOT_TMP);
	restored = KvBackupRestoredCopy();

	(void) KvControlLoad(true);
	/* a snapshot streamed from the leader whose install a crash cut */
	KvSnapshotFinishInstall();
	KvControlGet(&control);
	KvVisibleRecoveredTerm(control.term, control.led_term, control.term_leader);
	recovered_role(&control);
	follower = KvVisibleInGroup() && !KvVisibleIsLeader();
	/* loaded after pass 1, without the keys the log rewrites (file header) */
	have_snapshot = KvSnapshotPeek(&redo, &term);
	term = Max(term, control.term);

	nsegs = KvWalListSegments(&segs);
	if (nsegs == 0)
	{
		if (have_snapshot)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("kvext log directory \"%s\" is empty, but the snapshot needs the log from LSN %X/%X",
							KVEXT_WAL_DIR, LSN_FORMAT_ARGS(redo))));
		if (control.flush_watermark > KVEXT_WAL_START_LSN)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("kvext log directory \"%s\" is empty, but the control file says the log was durable up to %X/%X",
							KVEXT_WAL_DIR, LSN_FORMAT_ARGS(control.flush_watermark)),
					 errhint("Restore the kvext log files, or remove \"%s\" to start an empty store.",
							 KVEXT_CONTROL_FILE)));
		start_new_log(term);
		if (follower)
		{
			/* the first TERM record is the same on every node */
			KvApplyFollowerStart(KvWalInsertPos(), KVEXT_WAL_START_LSN, NULL, 0);
			KvVisibleAdvance(KvWalInsertPos(), InvalidKvLsn);
		}
		if (restored)
			KvBackupRestoredDone();
		ereport(LOG, (errmsg("kvext store initialized (empty)")));
		return;
	}
	if (!have_snapshot)
	{
		if (segs[0] != KVEXT_WAL_START_LSN)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("kvext snapshot \"%s\" is missing, and the log does not start at the beginning",
							KVEXT_SNAPSHOT_FILE),
					 errdetail("The first log file starts at LSN %X/%X.", LSN_FORMAT_ARGS(segs[0]))));
		redo = segs[0];
	}

	memset(&ls, 0, sizeof(ls));
	ls.redo = redo;
	ls.term = term;
	ls.watermark = control.flush_watermark;
	ls.restored = restored;
	ls.limited = KvVisibleInGroup();
	ls.follower = follower;
	ls.limit = Max(control.commit_watermark, redo);
	ls.maxpending = 64;
	ls.pending = palloc(sizeof(KvLsn) * ls.maxpending);
	if (restored)
	{
		/* the control file may have been copied after the log */
		ereport(LOG,
				(errmsg("kvext recovery of a restored backup: the log is read up to its first incomplete record")));
		ls.watermark = InvalidKvLsn;
	}
	ctl.keysize = sizeof(KvLsn);
	ctl.entrysize = sizeof(TxnFate);
	ctl.hcxt = CurrentMemoryContext;
	ls.fates = hash_create("kvext transaction fates", 1024, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.keysize = ctl.entrysize = sizeof(TransactionId);
	ls.v1_aborted = hash_create("kvext version-1 aborted xids", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	scan_pass1(&ls);
	ls.limit = Min(ls.limit, ls.end);
	if (ls.end < ls.watermark)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the kvext log ends at %X/%X, before its flush watermark %X/%X",
						LSN_FORMAT_ARGS(ls.end), LSN_FORMAT_ARGS(ls.watermark)),
				 errdetail("The control file says the log was durable up to %X/%X: records that were flushed are missing.",
						   LSN_FORMAT_ARGS(ls.watermark)),
				 errhint("Restore the missing kvext log files.")));
	scan_decide(&ls, have_snapshot);
	if (have_snapshot)
	{
		KvLsn		loaded_redo;
		uint64		loaded_term;

		if (!KvSnapshotLoad(&loaded_redo, &loaded_term, skip_rewritten, &ls))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("kvext snapshot \"%s\" vanished during recovery",
							KVEXT_SNAPSHOT_FILE)));
		if (loaded_redo != redo)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("kvext snapshot \"%s\" changed during recovery",
							KVEXT_SNAPSHOT_FILE)));
		if (ls.rewritten_cxt != NULL)
		{
			MemoryContextDelete(ls.rewritten_cxt);
			ls.rewritten = NULL;
			ls.rewritten_cxt = NULL;
		}
	}
	scan_pass2(&ls);
	if (ls.limited && !follower)
		decide_past_limit(&ls);

	/* only now change files: a failed recovery leaves them as they were */
	if (ls.stray != InvalidKvLsn)
	{
		char		path[MAXPGPATH];

		KvWalSegmentPath(path, ls.stray);
		ereport(LOG,
				(errmsg("removing kvext log file \"%s\": it holds no record (left by a segment switch that did not complete)",
						path)));
		if (unlink(path) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not remove kvext log file \"%s\": %m", path)));
		fsync_fname(KVEXT_WAL_DIR, true);
	}
	if (ls.torn)
		KvWalTruncate(ls.end);
	{
		KvLsn		segstart = segs[0];

		pfree(segs);
		nsegs = KvWalListSegments(&segs);
		for (int i = 0; i < nsegs; i++)
			if (segs[i] <= ls.end)
				segstart = segs[i];
		KvWalStartAt(segstart, ls.end, ls.term);
		if (ls.nrecords > 0)
			KvWalSetLastRecord(ls.last_start, ls.last_term);
	}
	if (ls.limited)
	{
		KvApplyFollowerStart(ls.limit, redo, ls.pending, ls.npending);
		KvVisibleAdvance(ls.limit, InvalidKvLsn);
		if (follower)
			ereport(LOG,
					(errmsg("kvext follower recovery applied the log up to %X/%X (its commit watermark); the log goes on to %X/%X, %d transactions wait for their leader's decision",
							LSN_FORMAT_ARGS(ls.limit), LSN_FORMAT_ARGS(ls.end), ls.npending)));
		else
		{
			/*
			 * A leader too shows only what its group had committed: it
			 * applies the rest as the commit position passes it, and takes
			 * no writes until then (KvReplLeaderCatchUp).
			 */
			KvVisibleSetCatchingUp(true);
			ereport(LOG,
					(errmsg("kvext leader recovery applied the log up to %X/%X (its commit watermark); it applies the rest, to %X/%X, once its group confirms it, and takes writes after that",
							LSN_FORMAT_ARGS(ls.limit), LSN_FORMAT_ARGS(ls.end))));
		}
	}
	log_resolutions(&ls);
	if (restored)
	{
		KvControlResetWatermark(KvWalFlushPos());
		KvBackupRestoredDone();
	}
	else
		KvControlAdvanceWatermark(KvWalFlushPos());

	/*
	 * Version-1 records were judged by the old rules (xids, pg_xact);
	 * decide them once and for all: a snapshot makes them unnecessary.
	 */
	if (ls.has_v1)
	{
		KvSnapshotWrite();
		ereport(LOG,
				(errmsg("kvext converted a version-1 log: a snapshot now holds its data")));
	}

	KvStoreCompactUnbounded(false);
	ereport(LOG,
			(errmsg("kvext recovery complete: %s, %llu log records replayed from %X/%X to %X/%X in %ld ms",
					have_snapshot ? "from snapshot" : "no snapshot",
					(unsigned long long) ls.nrecords,
					LSN_FORMAT_ARGS(redo), LSN_FORMAT_ARGS(ls.end),
					(long) ((GetCurrentTimestamp() - start) / 1000))));
}

/*
 * KvRecover
 *		Rebuild the store; returns true and opens it, or records why not
 *		(state FAILED, reported by every kv function) and returns false.
 *		Called by the checkpointer worker outside any transaction.
 */
bool
KvRecover(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext rcxt;
	bool		ok = true;
	uint32		expected = KV_STATE_STARTING;

	/*
	 * Recover once per shared memory lifetime.  A checkpointer restarted by
	 * the postmaster without a crash-restart (it exited on SIGTERM or an
	 * error) finds the store READY and must not replay into a live store;
	 * if its predecessor died during recovery, the store is half-loaded and
	 * only a restart of the server can recover it.
	 */
	if (!pg_atomic_compare_exchange_u32(&rec->state, &expected,
										KV_STATE_RECOVERING))
	{
		if (expected == KV_STATE_READY)
			return true;
		if (expected == KV_STATE_RECOVERING)
		{
			SpinLockAcquire(&rec->mutex);
			rec->sqlstate = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
			strlcpy(rec->message, "kvext recovery was interrupted", sizeof(rec->message));
			strlcpy(rec->detail, "The checkpointer exited while rebuilding the store.",
					sizeof(rec->detail));
			SpinLockRelease(&rec->mutex);
			ereport(LOG,
					(errmsg("kvext recovery was interrupted; restart the server to recover the store")));
			set_state(KV_STATE_FAILED);
		}
		return false;
	}
	ConditionVariableBroadcast(&rec->cv);

	rcxt = AllocSetContextCreate(cxt, "kvext recovery", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(rcxt);
	PG_TRY();
	{
		recover();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		/* as in the checkpointer's loop: locks are still held here */
		LWLockReleaseAll();
		pgstat_report_wait_end();
		AtEOXact_Files(false);

		SpinLockAcquire(&rec->mutex);
		rec->sqlstate = edata->sqlerrcode;
		strlcpy(rec->message, edata->message ? edata->message : "recovery failed",
				sizeof(rec->message));
		strlcpy(rec->detail, edata->detail ? edata->detail : "", sizeof(rec->detail));
		strlcpy(rec->hint, edata->hint ? edata->hint : "", sizeof(rec->hint));
		SpinLockRelease(&rec->mutex);

		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("kvext recovery failed, the store will not serve: %s", edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 edata->hint ? errhint("%s", edata->hint) : 0));
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	MemoryContextDelete(rcxt);

	set_state(ok ? KV_STATE_READY : KV_STATE_FAILED);
	return ok;
}
