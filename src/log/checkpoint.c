/*-------------------------------------------------------------------------
 *
 * checkpoint.c
 *	  The "kvext checkpointer" background worker: it rebuilds the store at
 *	  startup (recovery.c), then writes snapshots (snapshot.c) every
 *	  kvext.checkpoint_timeout, when kvext.max_wal_size of log has
 *	  accumulated, when kv_checkpoint() asks, and at shutdown.
 *
 * A failed snapshot is logged and reported to the session that asked; the
 * worker carries on.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlogdefs.h"
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
#include "log/checkpoint.h"
#include "log/control.h"
#include "log/recovery.h"
#include "log/snapshot.h"
#include "log/wal.h"
#include "worker.h"

typedef struct KvCheckpointShared
{
	slock_t		mutex;
	uint64		requested;		/* kv_checkpoint() requests so far */
	uint64		done;			/* requests served */
	uint64		failed;			/* highest request served by a failure */
	int			procno;			/* checkpointer's pgprocno, -1 if none */
	ConditionVariable cv;		/* broadcast when done advances */
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
	}
}

/* ---- the worker and its requests ---- */

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
		SpinLockRelease(&ckpt->mutex);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("kvext snapshot failed"),
				 errhint("See the server log for the reason.")));
	}
	SpinLockRelease(&ckpt->mutex);
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
		SpinLockRelease(&ckpt->mutex);

		insert = KvWalInsertPos();
		elapsed_ms = (long) ((GetCurrentTimestamp() - last) / 1000);
		due = (insert != last_insert &&
			   elapsed_ms >= (long) kvext_checkpoint_timeout * 1000) ||
			(insert - last_insert >= (uint64) kvext_max_wal_size * 1024 * 1024);

		if (ShutdownRequestPending)
			due = true;			/* a clean shutdown ends with a snapshot */

		if (requested > ckpt->done || due)
		{
			bool		ok = true;

			PG_TRY();
			{
				KvSnapshotWrite();
				KvControlAdvanceWatermark(KvWalFlushPos());
			}
			PG_CATCH();
			{
				EmitErrorReport();
				FlushErrorState();
				/* no transaction to clean up after us: do it here */
				LWLockReleaseAll();
				ConditionVariableCancelSleep();
				AtEOXact_Files(false);
				ok = false;
			}
			PG_END_TRY();
			MemoryContextReset(cxt);

			last = GetCurrentTimestamp();
			snapshot_ok = ok;
			if (ok)
				last_insert = insert;
			SpinLockAcquire(&ckpt->mutex);
			ckpt->done = requested;
			if (!ok)
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
