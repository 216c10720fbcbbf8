/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  kvext's background workers: registration, and the wal writer.
 *
 *	"kvext checkpointer"	recovery at startup, then snapshots
 *							(checkpoint.c)
 *	"kvext wal writer"		flushes the log every kvext.wal_writer_delay, so
 *							commits made with kvext.synchronous_commit = off
 *							are durable within that delay, and prepares the
 *							next log segment ahead of the switch that needs
 *							it (a switch wakes it), so that no commit waits
 *							for a segment to be zero-filled (wal.c)
 *
 * Both start once PostgreSQL has finished its own recovery
 * (BgWorkerStart_RecoveryFinished), so pg_xact is consistent, and are
 * restarted by the postmaster if they exit, including after a
 * crash-restart, which is when recovery must run again.  They follow the
 * worker_spi skeleton: SIGTERM ends them at CHECK_FOR_INTERRUPTS, SIGHUP
 * rereads the configuration, every wait is WaitLatch with
 * WL_EXIT_ON_PM_DEATH.
 *
 * Visible in pg_stat_activity.  A PG15 background worker gets a row there
 * (backend_type = its bgw_type) only once it has run InitPostgres, so each
 * worker calls KvWorkerAttach first: BackgroundWorkerInitializeConnection
 * without a database, as the logical replication launcher does.  That
 * runs (and commits) one empty transaction, puts the worker in the proc
 * array without a snapshot or xmin, and needs
 * BGWORKER_BACKEND_DATABASE_CONNECTION, which changes nothing else for
 * these workers: they start at the same time, get SIGTERM at the same
 * shutdown step (the checkpointer still writes its shutdown snapshot
 * before PostgreSQL's checkpointer ends), and are restarted the same way.
 * They never open a catalog.  Their sleeps report the closest wait events
 * PostgreSQL 15 has (it has no custom ones): WalWriterMain and
 * CheckpointerMain, the Activity events of core's workers of the same
 * role, so tools that treat Activity waits as idle do so for them too.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "log/apply.h"
#include "log/visible.h"
#include "log/checkpoint.h"
#include "log/control.h"
#include "failpoint.h"
#include "kvext.h"
#include "shmem.h"
#include "log/recovery.h"
#include "log/wal.h"
#include "replication/campaign.h"
#include "replication/receiver.h"
#include "store/park.h"
#include "worker.h"

PGDLLEXPORT void KvWalWriterMain(Datum arg);

static void
register_worker(const char *name, const char *function)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "kvext");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", name);
	RegisterBackgroundWorker(&worker);
}

/*
 * KvWorkerAttach
 *		First step of every kvext worker, after unblocking signals: become
 *		visible in pg_stat_activity (see the file header).
 */
void
KvWorkerAttach(void)
{
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
}

/*
 * KvRegisterWorkers
 *		Register the workers (from _PG_init, in the postmaster).
 */
void
KvRegisterWorkers(void)
{
	register_worker("kvext checkpointer", "KvCheckpointerMain");
	register_worker("kvext wal writer", "KvWalWriterMain");
}

/*
 * commit_watermark
 *		Up to where this node knows its log committed and may be replayed
 *		by its recovery (0: not in a group).
 */
static KvLsn
commit_watermark(void)
{
	if (!KvVisibleInGroup())
		return InvalidKvLsn;
	if (KvApplyFollowerPos() != InvalidKvLsn)
		return KvApplyFollowerPos();
	if (KvVisibleIsLeader())
		return KvVisibleCommitPos();
	return InvalidKvLsn;
}

/*
 * KvWalWriterMain
 *		Entry point of the "kvext wal writer" worker: flushes commits made
 *		with kvext.synchronous_commit = off every kvext.wal_writer_delay,
 *		advances the control file's flush watermark about once a second,
 *		keeps the next log segment prepared (KvWalPrepareNext), and
 *		flushes everything when the server shuts down.
 */
void
KvWalWriterMain(Datum arg)
{
	TimestampTz last_mark = 0;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	/* announced first: once it shows in pg_stat_activity, it is woken */
	KvWalWriterAttach();
	KvWorkerAttach();

	for (;;)
	{
		TimestampTz now;
		int			rc;

		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   kvext_wal_writer_delay, WAIT_EVENT_WAL_WRITER_MAIN);
		ResetLatch(MyLatch);
		KvWalWriterWoken();
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* a test: only what wakes the writer makes it work, not its timer */
		if ((rc & WL_LATCH_SET) == 0 && !ShutdownRequestPending &&
			KvFailpointSet("wal-writer-no-timer"))
			continue;
		if (pg_atomic_read_u32(KvStateFlag) != KV_STATE_READY)
		{
			if (ShutdownRequestPending)
				proc_exit(1);
			continue;
		}
		if (KvWalFlushPos() < KvWalInsertPos())
			KvWalFlushAll();
		/* parked transactions the commit position has passed (park.c) */
		KvParkResolve();
		/* a restarted leader applies what its group has since confirmed */
		KvReplLeaderCatchUp();
		/* a leader whose machine restarted must win a new term first */
		KvCampaignEnsure();
		now = GetCurrentTimestamp();
		if (ShutdownRequestPending ||
			(TimestampDifferenceExceeds(last_mark, now, 1000) &&
			 !KvFailpointSet("watermark-hold")))
		{
			/*
			 * The commit watermark too (control.c): a follower's (or
			 * catching-up leader's) applied position; a leader's commit
			 * position, all of which its recovery may replay.
			 */
			KvControlAdvance(KvWalFlushPos(), commit_watermark());
			last_mark = now;
		}
		/* status 1: restarted unless the server is shutting down */
		if (ShutdownRequestPending)
			proc_exit(1);
		/* after the flush: a full disk here must not delay off commits */
		KvWalPrepareNext();
	}
}
