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
 *	1. load kvext/snapshot, if any (its redo point says where replay
 *	   starts);
 *	2. pass 1 over the log from the redo point: check every record (length,
 *	   position, CRC32C, version), find the end, and collect the xids of
 *	   ABORT records;
 *	3. pass 2: apply the records in log order.  A TXN record flagged HEAP
 *	   (its transaction also wrote PostgreSQL WAL) is applied only if
 *	   pg_xact says the transaction committed, so a transaction that wrote
 *	   tables and keys is all-or-nothing.  A kv-only TXN record is applied
 *	   unless an ABORT record follows: its log record is the commit;
 *	4. open the log for writing after the last valid record.
 *
 * End of log.  Segments are zero-filled when created, so the log ends at
 * the first all-zero header followed only by zeros: a clean end, no
 * message.
 *
 * Torn tail vs. corruption.  A record that fails its checks is a torn
 * write, cleared with a LOG message giving its position, only if it is
 * in the last segment and nothing after it shows it was ever durable.
 * Every record stores the flush position at the moment it was written. If
 * any valid record after the bad one says the log had been flushed beyond
 * the bad record's start, the bad record had been fsynced, so the damage is
 * corruption. A bad record in an earlier segment, or a gap between
 * segments, is also corruption. On corruption, or a damaged snapshot, the
 * store refuses to serve (state FAILED) with an error naming the file and
 * position. PostgreSQL stays up and no file is changed. The same applies
 * when the data no longer fits in kvext.memory_limit.
 *
 * Replay is idempotent (absolute values, log order), so a crash during
 * recovery only means doing it again.
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
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/fd.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/elog.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "checkpoint.h"
#include "kvext.h"
#include "recovery.h"
#include "store.h"
#include "wal.h"

typedef struct KvRecoveryShared
{
	pg_atomic_uint32 state;		/* KV_STATE_* */
	ConditionVariable cv;		/* broadcast when state leaves RECOVERING */
	slock_t		mutex;
	int			sqlstate;		/* FAILED: the error to report */
	char		message[512];
	char		detail[512];
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
		rec->message[0] = rec->detail[0] = '\0';
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

		SpinLockAcquire(&rec->mutex);
		sqlstate = rec->sqlstate;
		memcpy(message, rec->message, sizeof(message));
		memcpy(detail, rec->detail, sizeof(detail));
		SpinLockRelease(&rec->mutex);
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("the kvext store is unavailable: %s", message),
				 detail[0] ? errdetail_internal("%s", detail) : 0,
				 errhint("Fix the cause and restart the server; no kvext file was changed.")));
	}
}

/* ---- reading the log ---- */

typedef struct LogPos
{
	int			seg;			/* index into segs */
	Size		off;			/* offset in the segment */
} LogPos;

typedef struct LogScan
{
	KvLsn	   *segs;			/* segment start positions, ascending */
	int			nsegs;
	int			first;			/* segment holding the redo point */
	KvLsn		redo;
	/* filled by pass 1 */
	KvLsn		end;			/* end of the valid log */
	int			endseg;
	uint64		term;
	HTAB	   *aborted;		/* xids with an ABORT record */
	uint64		nrecords;
	bool		torn;			/* the last segment must be cleared after end */
	Size	   *segvalid;		/* valid bytes of each segment */
} LogScan;

/* read a whole segment file into palloc'd memory */
static char *
read_segment(KvLsn start, Size *len)
{
	char		path[MAXPGPATH];
	int			fd;
	struct stat st;
	char	   *buf;
	Size		done = 0;

	KvWalSegmentPath(path, start);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0 || fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open kvext log file \"%s\": %m", path)));
	buf = palloc_extended(Max(st.st_size, 1), MCXT_ALLOC_HUGE);
	while (done < (Size) st.st_size)
	{
		ssize_t		n = read(fd, buf + done, st.st_size - done);

		if (n <= 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read kvext log file \"%s\": %m", path)));
		done += n;
	}
	CloseTransientFile(fd);
	*len = done;
	return buf;
}

/* is buf[0..len) all zero bytes? */
static bool
all_zero(const char *buf, Size len)
{
	for (Size i = 0; i < len; i++)
		if (buf[i] != 0)
			return false;
	return true;
}

/*
 * check_record
 *		Is there a valid record at buf[off]?  If not, *why says what is
 *		wrong.
 */
static bool
check_record(char *buf, Size len, Size off, KvLsn segstart, const char **why)
{
	KvWalRecord *hdr = (KvWalRecord *) (buf + off);
	pg_crc32c	crc;

	if (len - off < sizeof(KvWalRecord))
	{
		*why = "incomplete record header";
		return false;
	}
	if (hdr->len < sizeof(KvWalRecord) || hdr->len % 8 != 0)
	{
		*why = "invalid record length";
		return false;
	}
	if (hdr->len > len - off)
	{
		*why = "record extends past the end of the file";
		return false;
	}
	if (hdr->lsn != segstart + off)
	{
		*why = "record position does not match its place in the file";
		return false;
	}
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, buf + off + sizeof(KvWalRecord), hdr->len - sizeof(KvWalRecord));
	COMP_CRC32C(crc, buf + off + offsetof(KvWalRecord, len),
				sizeof(KvWalRecord) - offsetof(KvWalRecord, len));
	FIN_CRC32C(crc);
	if (!EQ_CRC32C(crc, hdr->crc))
	{
		*why = "checksum mismatch";
		return false;
	}
	if (hdr->version != KVEXT_WAL_VERSION)
	{
		*why = "unknown record format version";
		return false;
	}
	return true;
}

/*
 * durable_after
 *		Does a valid record after position bad (in the same buffer) show
 *		that the log had been flushed beyond bad?  Then the damage at bad
 *		is not a torn write.
 */
static bool
durable_after(char *buf, Size len, Size bad, KvLsn segstart)
{
	const char *why;

	for (Size off = TYPEALIGN(8, bad + 8); off + sizeof(KvWalRecord) <= len; off += 8)
	{
		KvWalRecord *hdr = (KvWalRecord *) (buf + off);

		if (hdr->lsn != segstart + off)
			continue;
		if (check_record(buf, len, off, segstart, &why) &&
			hdr->flushed > segstart + bad)
			return true;
	}
	return false;
}

static void
fail_corrupt(KvLsn segstart, Size off, KvLsn lsn, const char *why,
			 const char *detail)
{
	char		path[MAXPGPATH];

	KvWalSegmentPath(path, segstart);
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("kvext log file \"%s\" is corrupt at offset %zu (LSN %X/%X): %s",
					path, off, LSN_FORMAT_ARGS(lsn), why),
			 errdetail_internal("%s", detail)));
}

/*
 * scan_pass1
 *		Validate the log from the redo point, find its end, cut a torn
 *		tail, collect aborted xids.
 */
static void
scan_pass1(LogScan *ls)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(TransactionId);
	ctl.entrysize = sizeof(TransactionId);
	ctl.hcxt = CurrentMemoryContext;
	ls->aborted = hash_create("kvext aborted xids", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ls->end = ls->redo;
	ls->endseg = ls->first;
	ls->segvalid = palloc0(sizeof(Size) * ls->nsegs);

	for (int i = ls->first; i < ls->nsegs; i++)
	{
		KvLsn		segstart = ls->segs[i];
		Size		len;
		char	   *buf = read_segment(segstart, &len);
		Size		off = (i == ls->first) ? (Size) (ls->redo - segstart) : 0;
		bool		last = (i == ls->nsegs - 1);

		if (i > ls->first && segstart != ls->end)
			fail_corrupt(ls->segs[i - 1], ls->end - ls->segs[i - 1], ls->end,
						 "the next log file does not start where this one ends",
						 psprintf("The next file starts at LSN %X/%X.", LSN_FORMAT_ARGS(segstart)));
		if (off > len)
			fail_corrupt(segstart, len, segstart + len, "the log ends before the snapshot's redo point",
						 psprintf("The snapshot needs the log from LSN %X/%X.", LSN_FORMAT_ARGS(ls->redo)));

		while (off < len)
		{
			const char *why;
			KvWalRecord *hdr = (KvWalRecord *) (buf + off);

			if (!check_record(buf, len, off, segstart, &why))
			{
				char		path[MAXPGPATH];

				/* the zero-filled rest of a segment: its clean end */
				if (all_zero(buf + off, len - off))
				{
					len = off;
					break;
				}
				if (!last)
					fail_corrupt(segstart, off, segstart + off, why,
								 "A later log file follows the damaged record.");
				if (durable_after(buf, len, off, segstart))
					fail_corrupt(segstart, off, segstart + off, why,
								 "Valid records follow the damaged one and show it had been flushed, so this is not a torn write.");

				/*
				 * A torn tail: replay stops here, and the rest of the file
				 * is cleared once replay has succeeded (so a failed
				 * recovery changes no file).
				 */
				KvWalSegmentPath(path, segstart);
				ereport(LOG,
						(errmsg("kvext log ends with a torn record at LSN %X/%X in \"%s\" (%s); clearing %zu bytes",
								LSN_FORMAT_ARGS(segstart + off), path, why, len - off)));
				ls->torn = true;
				len = off;
				break;
			}
			if (hdr->type == KV_REC_ABORT)
				(void) hash_search(ls->aborted, &hdr->xid, HASH_ENTER, NULL);
			ls->term = Max(ls->term, hdr->term);
			ls->nrecords++;
			off += hdr->len;
		}
		ls->end = segstart + len;
		ls->endseg = i;
		ls->segvalid[i] = len;
		pfree(buf);
	}
}

/* did the transaction of a TXN record commit? */
static bool
txn_committed(LogScan *ls, KvWalRecord *hdr)
{
	TransactionId xid = hdr->xid;

	if (!(hdr->flags & KV_RECF_HEAP))
		return hash_search(ls->aborted, &xid, HASH_FIND, NULL) == NULL;

	/* the transaction also wrote tables: PostgreSQL decided */
	if (!TransactionIdIsNormal(xid) ||
		TransactionIdFollowsOrEquals(xid, ReadNextTransactionId()))
		return false;
	if (TransactionIdPrecedes(xid, ShmemVariableCache->oldestClogXid))
	{
		ereport(WARNING,
				(errmsg("kvext log record at LSN %X/%X: status of transaction %u is no longer in pg_xact; assuming it committed",
						LSN_FORMAT_ARGS(hdr->lsn), xid)));
		return true;
	}
	return TransactionIdDidCommit(xid);
}

static void
store_full_during_recovery(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("the kvext data does not fit in kvext.memory_limit"),
			 errhint("Raise kvext.memory_limit to at least its previous value and restart the server.")));
}

/* apply one TXN record's writes */
static void
apply_txn(KvWalRecord *hdr)
{
	char	   *p = (char *) hdr + sizeof(KvWalRecord);
	char	   *end = (char *) hdr + hdr->len;

	while (p + sizeof(KvWalOp) <= end)
	{
		KvWalOp		op;
		char	   *key;

		memcpy(&op, p, sizeof(op));
		if (op.op == 0)
			break;				/* padding */
		key = p + sizeof(KvWalOp);
		if (!KvKeyspaceIdIsActive(op.keyspace))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("kvext log record at LSN %X/%X writes to keyspace id %u, which does not exist at that point",
							LSN_FORMAT_ARGS(hdr->lsn), op.keyspace)));
		if (!KvStoreRecoverWrite(op.keyspace, key, op.keylen,
								 op.op == KV_WOP_PUT ? key + op.keylen : NULL,
								 op.vallen, op.binary != 0))
			store_full_during_recovery();
		p = key + op.keylen + op.vallen;
	}
}

/*
 * scan_pass2
 *		Apply the (validated) log from the redo point to its end.
 */
static void
scan_pass2(LogScan *ls)
{
	for (int i = ls->first; i <= ls->endseg && i < ls->nsegs; i++)
	{
		KvLsn		segstart = ls->segs[i];
		Size		len;
		char	   *buf = read_segment(segstart, &len);
		Size		off = (i == ls->first) ? (Size) (ls->redo - segstart) : 0;

		len = Min(len, ls->segvalid[i]);
		while (off < len)
		{
			KvWalRecord *hdr = (KvWalRecord *) (buf + off);

			switch (hdr->type)
			{
				case KV_REC_TXN:
					if (txn_committed(ls, hdr))
						apply_txn(hdr);
					break;
				case KV_REC_KS_CREATE:
					{
						KvWalKeyspace *ks = (KvWalKeyspace *) (hdr + 1);

						KvKeyspaceRecoverCreate(ks->id, ks->name);
					}
					break;
				case KV_REC_KS_DROP:
					KvKeyspaceRecoverDrop(((KvWalKeyspace *) (hdr + 1))->id);
					break;
				default:
					break;
			}
			off += hdr->len;
			CHECK_FOR_INTERRUPTS();
		}
		pfree(buf);
	}
}

/*
 * clear_after
 *		Zero a torn tail from off to the end of the file, keeping the file's
 *		size (and so its preallocated blocks).
 */
static void
clear_after(int fd, const char *path, off_t off)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat kvext log file \"%s\": %m", path)));
	if (!KvWalWriteZeros(fd, off, st.st_size))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not clear the torn end of kvext log file \"%s\": %m", path)));
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
	int			fd;
	char		path[MAXPGPATH];

	if (MakePGDirectory(KVEXT_DIR) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", KVEXT_DIR)));
	if (MakePGDirectory(KVEXT_WAL_DIR) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", KVEXT_WAL_DIR)));
	/* a snapshot that was being written when we crashed is garbage */
	(void) unlink(KVEXT_SNAPSHOT_TMP);

	have_snapshot = KvSnapshotLoad(&redo, &term);

	memset(&ls, 0, sizeof(ls));
	ls.nsegs = KvWalListSegments(&ls.segs);
	ls.term = term;
	if (ls.nsegs == 0)
	{
		if (have_snapshot)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("kvext log directory \"%s\" is empty, but the snapshot needs the log from LSN %X/%X",
							KVEXT_WAL_DIR, LSN_FORMAT_ARGS(redo))));
		KvWalStartAt(InvalidKvLsn, InvalidKvLsn, term);
		ereport(LOG, (errmsg("kvext store initialized (empty)")));
		return;
	}

	if (!have_snapshot)
		redo = ls.segs[0];
	ls.redo = redo;
	ls.first = -1;
	for (int i = 0; i < ls.nsegs; i++)
		if (ls.segs[i] <= redo)
			ls.first = i;
	if (ls.first < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the kvext log file containing the snapshot's redo point %X/%X is missing",
						LSN_FORMAT_ARGS(redo))));
	if (!have_snapshot && ls.segs[0] != KVEXT_WAL_START_LSN)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext snapshot \"%s\" is missing, and the log does not start at the beginning",
						KVEXT_SNAPSHOT_FILE),
				 errdetail("The first log file starts at LSN %X/%X.", LSN_FORMAT_ARGS(ls.segs[0]))));

	scan_pass1(&ls);
	scan_pass2(&ls);

	/* cut a torn tail, make what we replayed durable, then build on it */
	KvWalSegmentPath(path, ls.segs[ls.endseg]);
	fd = OpenTransientFile(path, O_RDWR | PG_BINARY);
	if (fd >= 0 && ls.torn)
		clear_after(fd, path, (off_t) (ls.end - ls.segs[ls.endseg]));
	if (fd < 0 || pg_fsync(fd) != 0)
		ereport(data_sync_elevel(ERROR),
				(errcode_for_file_access(),
				 errmsg("could not fsync kvext log file \"%s\": %m", path)));
	CloseTransientFile(fd);

	KvWalStartAt(ls.segs[ls.endseg], ls.end, ls.term);
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
		LWLockReleaseAll();
		AtEOXact_Files(false);

		SpinLockAcquire(&rec->mutex);
		rec->sqlstate = edata->sqlerrcode;
		strlcpy(rec->message, edata->message ? edata->message : "recovery failed",
				sizeof(rec->message));
		strlcpy(rec->detail, edata->detail ? edata->detail : "", sizeof(rec->detail));
		SpinLockRelease(&rec->mutex);

		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("kvext recovery failed, the store will not serve: %s", edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	MemoryContextDelete(rcxt);

	set_state(ok ? KV_STATE_READY : KV_STATE_FAILED);
	return ok;
}
