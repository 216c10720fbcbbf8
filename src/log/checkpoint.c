/*-------------------------------------------------------------------------
 *
 * checkpoint.c
 *	  The "kvext checkpointer" background worker: it rebuilds the store at
 *	  startup (recovery.c), then writes snapshots (snapshot.c) every
 *	  kvext.checkpoint_timeout if something was logged or the redo point
 *	  would move (redo_would_move), when kvext.max_wal_size of log has
 *	  accumulated, when kv_checkpoint() asks, and at shutdown.
 *
 * A failed snapshot is logged, reported to the session that asked, and
 * recorded in shared memory for kv_wal_status() (KvCheckpointStatus): the
 * number of consecutive failures, the last error message, its time and the
 * time of the next automatic attempt.  A failed snapshot stays due and is
 * retried after a delay that doubles with each consecutive failure, from
 * KVEXT_SNAPSHOT_RETRY_MIN_MS to KVEXT_SNAPSHOT_RETRY_MAX_MS, instead of at
 * every wakeup: a snapshot that cannot succeed (a full disk, a store that
 * cannot be copied) would otherwise rescan the whole store every second
 * or so.  kv_checkpoint() and a shutdown do not wait for the delay.  A
 * success clears the failure state.
 *
 * Locking: KvCheckpointShared's fields are protected by its spinlock; only
 * the checkpointer writes the failure state, and the error message is
 * copied in and out under the spinlock (a bounded memcpy, nothing that
 * can fail).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlogdefs.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "failpoint.h"
#include "kvext.h"
#include "log/apply.h"
#include "log/backup.h"
#include "log/checkpoint.h"
#include "log/control.h"
#include "log/recovery.h"
#include "log/snapshot.h"
#include "log/wal.h"
#include "worker.h"

/* retry delays after consecutive failed snapshots: 2 s, 4 s, ... 5 min */
#define KVEXT_SNAPSHOT_RETRY_MIN_MS		2000
#define KVEXT_SNAPSHOT_RETRY_MAX_MS		(5 * 60 * 1000)

typedef struct KvCheckpointShared
{
	slock_t		mutex;
	uint64		requested;		/* kv_checkpoint() requests so far */
	uint64		done;			/* requests served */
	uint64		failed;			/* highest request served by a failure */
	int			procno;			/* checkpointer's pgprocno, -1 if none */
	ConditionVariable cv;		/* broadcast when done advances */
	/* failed snapshots since the last success (all 0 after one) */
	int			failures;		/* consecutive failures */
	TimestampTz failed_at;		/* when the last one failed */
	TimestampTz retry_at;		/* next automatic attempt */
	char		error[KVEXT_SNAPSHOT_ERROR_LEN];	/* its message */
} KvCheckpointShared;

static KvCheckpointShared *ckpt = NULL;

/*
 * KvCheckpointShmemSize / KvCheckpointShmemInit
 */
Size
KvCheckpointShmemSize(void)
{
	return sizeof(KvCheckpointShared);
}

void
KvCheckpointShmemInit(void)
{
	bool		found;

	ckpt = ShmemInitStruct("kvext checkpointer", sizeof(KvCheckpointShared), &found);
	if (!found)
	{
		SpinLockInit(&ckpt->mutex);
		ckpt->requested = ckpt->done = ckpt->failed = 0;
		ckpt->procno = -1;
		ConditionVariableInit(&ckpt->cv);
		ckpt->failures = 0;
		ckpt->failed_at = ckpt->retry_at = 0;
		ckpt->error[0] = '\0';
	}
}

/* ---- the worker and its requests ---- */

/*
 * redo_would_move
 *		Would a snapshot now start replay later than the last one, although
 *		nothing was logged since it began?  The last one's redo point may
 *		have been held back by a transaction in flight (logged, not yet
 *		applied); once that is applied, a snapshot frees the segments
 *		before it.  Without this an idle store (one a full disk refuses
 *		every write) would keep them until a write came, as PostgreSQL
 *		would not: it skips a checkpoint only when no WAL was written since
 *		the last checkpoint's redo point.
 */
static bool
redo_would_move(void)
{
	KvLsn		redo;
	uint64		term;

	return KvSnapshotRedoTerm(&redo, &term) && KvWalApplyPos() > redo;
}

/*
 * KvRequestCheckpoint
 *		kv_checkpoint(): ask the checkpointer for a snapshot and wait for it.
 */
void
KvRequestCheckpoint(void)
{
	uint64		mine;
	int			procno;

	SpinLockAcquire(&ckpt->mutex);
	mine = ++ckpt->requested;
	procno = ckpt->procno;
	SpinLockRelease(&ckpt->mutex);

	if (procno < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the kvext checkpointer is not running")));
	SetLatch(&ProcGlobal->allProcs[procno].procLatch);

	ConditionVariablePrepareToSleep(&ckpt->cv);
	for (;;)
	{
		uint64		done;

		SpinLockAcquire(&ckpt->mutex);
		done = ckpt->done;
		SpinLockRelease(&ckpt->mutex);
		if (done >= mine)
			break;
		ConditionVariableSleep(&ckpt->cv, WAIT_EVENT_CHECKPOINT_DONE);
	}
	ConditionVariableCancelSleep();

	SpinLockAcquire(&ckpt->mutex);
	if (ckpt->failed >= mine)
	{
		char		error[KVEXT_SNAPSHOT_ERROR_LEN];

		memcpy(error, ckpt->error, sizeof(error));
		SpinLockRelease(&ckpt->mutex);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("kvext snapshot failed"),
				 errdetail("The checkpointer reported: %s", error),
				 errhint("kv_wal_status() shows the failures; the server log has the details.")));
	}
	SpinLockRelease(&ckpt->mutex);
}

/*
 * KvCheckpointStatus
 *		The snapshot failure state for kv_wal_status(): consecutive
 *		failures since the last success, and, if there were any, the last
 *		error message (copied to error, of KVEXT_SNAPSHOT_ERROR_LEN bytes),
 *		when it happened and when the next automatic attempt is due.
 */
int
KvCheckpointStatus(char *error, TimestampTz *failed_at, TimestampTz *retry_at)
{
	int			failures;

	SpinLockAcquire(&ckpt->mutex);
	failures = ckpt->failures;
	memcpy(error, ckpt->error, KVEXT_SNAPSHOT_ERROR_LEN);
	*failed_at = ckpt->failed_at;
	*retry_at = ckpt->retry_at;
	SpinLockRelease(&ckpt->mutex);
	return failures;
}

/*
 * retry_delay_ms
 *		How long to wait before the next automatic attempt after the given
 *		number of consecutive failures (at least 1).
 */
static long
retry_delay_ms(int failures)
{
	long		delay = KVEXT_SNAPSHOT_RETRY_MIN_MS;

	for (int i = 1; i < failures && delay < KVEXT_SNAPSHOT_RETRY_MAX_MS; i++)
		delay *= 2;
	return Min(delay, KVEXT_SNAPSHOT_RETRY_MAX_MS);
}

/*
 * record_outcome
 *		Publish the outcome of a snapshot attempt: a success (edata NULL)
 *		clears the failure state; a failure counts, keeps its message and
 *		sets the next attempt.  Returns the consecutive failures.
 */
static int
record_outcome(ErrorData *edata, TimestampTz now)
{
	int			failures;
	const char *message = "";
	int			len = 0;

	if (edata != NULL)
	{
		/* clip outside the spinlock, at a character boundary */
		message = edata->message ? edata->message : "unknown error";
		len = pg_mbcliplen(message, strlen(message), KVEXT_SNAPSHOT_ERROR_LEN - 1);
	}

	SpinLockAcquire(&ckpt->mutex);
	if (edata == NULL)
	{
		ckpt->failures = 0;
		ckpt->failed_at = ckpt->retry_at = 0;
		ckpt->error[0] = '\0';
	}
	else
	{
		ckpt->failures++;
		ckpt->failed_at = now;
		ckpt->retry_at = TimestampTzPlusMilliseconds(now,
													 retry_delay_ms(ckpt->failures));
		memcpy(ckpt->error, message, len);
		ckpt->error[len] = '\0';
	}
	failures = ckpt->failures;
	SpinLockRelease(&ckpt->mutex);
	return failures;
}

static void
checkpointer_detach(int code, Datum arg)
{
	SpinLockAcquire(&ckpt->mutex);
	ckpt->procno = -1;
	SpinLockRelease(&ckpt->mutex);
}

/*
 * KvCheckpointerMain
 *		Entry point of the "kvext checkpointer" background worker.
 */
void
KvCheckpointerMain(Datum arg)
{
	MemoryContext cxt;
	TimestampTz last = GetCurrentTimestamp();
	KvLsn		last_insert;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	KvWorkerAttach();			/* visible in pg_stat_activity */

	cxt = AllocSetContextCreate(TopMemoryContext, "kvext checkpointer",
								ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);

	SpinLockAcquire(&ckpt->mutex);
	ckpt->procno = MyProc->pgprocno;
	SpinLockRelease(&ckpt->mutex);
	on_shmem_exit(checkpointer_detach, (Datum) 0);

	/* rebuild the store; on failure, stay up doing nothing */
	if (!KvRecover())
	{
		for (;;)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
							 WAIT_EVENT_CHECKPOINTER_MAIN);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (ShutdownRequestPending)
				proc_exit(1);
		}
	}

	last_insert = KvWalInsertPos();

	for (;;)
	{
		uint64		requested;
		bool		due;
		long		elapsed_ms;
		KvLsn		insert;
		bool		snapshot_ok = false;
		int			failures;
		TimestampTz retry_at;
		TimestampTz now;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, WAIT_EVENT_CHECKPOINTER_MAIN);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		SpinLockAcquire(&ckpt->mutex);
		requested = ckpt->requested;
		failures = ckpt->failures;
		retry_at = ckpt->retry_at;
		SpinLockRelease(&ckpt->mutex);

		insert = KvWalInsertPos();
		now = GetCurrentTimestamp();
		elapsed_ms = (long) ((now - last) / 1000);
		due = ((insert != last_insert || redo_would_move()) &&
			   elapsed_ms >= (long) kvext_checkpoint_timeout * 1000) ||
			(insert - last_insert >= (uint64) kvext_max_wal_size * 1024 * 1024);

		/* a failed snapshot stays due, but waits for its retry time */
		if (failures > 0)
			due = (now >= retry_at);

		/* no timed snapshot under a running backup (backup.c) */
		if (due && KvBackupInProgress())
			due = false;

		if (ShutdownRequestPending)
			due = true;			/* a clean shutdown ends with a snapshot */

		if (requested > ckpt->done || due)
		{
			ErrorData  *edata = NULL;

			PG_TRY();
			{
				KvSnapshotWrite();
				KvControlAdvance(KvWalFlushPos(), KvApplyFollowerPos());
			}
			PG_CATCH();
			{
				MemoryContextSwitchTo(cxt);
				edata = CopyErrorData();
				EmitErrorReport();
				FlushErrorState();

				/*
				 * No transaction to clean up after us: do it here, as
				 * PostgreSQL's own auxiliary processes do.  The error reset
				 * the interrupt hold-off count but left any LWLock held, so
				 * LWLockReleaseAll (which holds interrupts around each
				 * release), never LWLockRelease or RESUME_INTERRUPTS.
				 */
				LWLockReleaseAll();
				ConditionVariableCancelSleep();
				pgstat_report_wait_end();
				AtEOXact_Files(false);
				KvSnapshotAbandon();
			}
			PG_END_TRY();

			last = GetCurrentTimestamp();
			failures = record_outcome(edata, last);
			snapshot_ok = (edata == NULL);
			if (snapshot_ok)
				last_insert = insert;
			else
				ereport(LOG,
						(errmsg("kvext snapshot failed %d time(s) in a row; next automatic attempt in %ld ms",
								failures, retry_delay_ms(failures))));
			MemoryContextReset(cxt);

			SpinLockAcquire(&ckpt->mutex);
			ckpt->done = requested;
			if (!snapshot_ok)
				ckpt->failed = requested;
			SpinLockRelease(&ckpt->mutex);
			ConditionVariableBroadcast(&ckpt->cv);
		}
		if (ShutdownRequestPending)
		{
			if (snapshot_ok)
				ereport(LOG,
						(errmsg("kvext checkpointer: shutdown snapshot written at %X/%X",
								LSN_FORMAT_ARGS(KvWalFlushPos()))));

			/*
			 * Status 1, not 0: if this SIGTERM was not a server shutdown
			 * (pg_terminate_backend), the postmaster restarts the worker.
			 */
			proc_exit(1);
		}
	}
}
