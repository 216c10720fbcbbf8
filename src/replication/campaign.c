/*-------------------------------------------------------------------------
 *
 * campaign.c
 *	  A leader whose machine restarted wins a new term before it leads
 *	  again: the "kvext campaign" worker.
 *
 * A leader's senders ship what it has written before its own fsync
 * (sender.c), so that a follower's fsync overlaps the leader's.  The commit
 * position never passes the leader's own flush position, so nothing a
 * machine restart can take from the leader's log was ever acknowledged.
 * But if the leader then led the same term again, it would write other
 * records at positions its followers hold with the same term, and (term,
 * position) would no longer name one record: Raft's log matching, which
 * votes and appends rely on, would be gone.  So (log/recovery.c) a node
 * that would lead its term again after a restart does so only in the boot
 * of its machine it led in (the led boot in the control file); otherwise
 * it sets the campaign flag, follows with no leader, and this worker asks
 * the group to elect it in the next term (KvRoleElect).  Its peers grant
 * the vote even where their logs run further in the term it led
 * (role.c, vote): those records came from it and were never committed.
 *
 * The wal writer starts the worker (KvCampaignEnsure) while the flag is
 * set and none runs.  The worker ends when the node leads; when a peer
 * refuses it because it leads or led the term, follows its leader, or
 * holds a more recent log (the flag is cleared; the leader will contact
 * this node, and an operator can still run kv_promote()); when a leader
 * contacts this node (KvRoleFollow clears the flag); or when it votes for
 * another candidate (KvControlSetTerm clears it).  A later term it only
 * hears of (from a candidate it refused, or a peer's answer) does not end
 * it: it asks in that term, whose voters say so if that candidate won.
 * While too few peers answer it asks again in the same term, waiting 1 s,
 * then twice as long each time up to 30 s, with one log line per outage.
 * If the only refusals come from peers that voted for another candidate
 * in the term (a kv_promote() that failed, or is still under way), it
 * waits the same way and asks the same term again: a candidate that won
 * is known to its voters by then, and their refusals say so.  Only a
 * second such split in a row makes it ask in the next term.  Until the
 * node leads, writes on it fail with 25006, as on a follower.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "kvext.h"
#include "log/control.h"
#include "log/visible.h"
#include "replication/campaign.h"
#include "replication/config.h"
#include "replication/role.h"
#include "worker.h"

PGDLLEXPORT void KvCampaignMain(Datum arg);

#define KVEXT_CAMPAIGN_FIRST_WAIT_MS	1000
#define KVEXT_CAMPAIGN_MAX_WAIT_MS		30000

/* the wal writer's handle of the worker it started, if any, and when */
static BackgroundWorkerHandle *campaign_worker = NULL;
static TimestampTz campaign_started = 0;

/*
 * KvCampaignEnsure
 *		The wal writer, every round: start the campaign worker if the
 *		control file says this node must campaign and none runs.
 */
void
KvCampaignEnsure(void)
{
	KvControl	control;
	BackgroundWorker worker;
	pid_t		pid;

	if (!KvVisibleInGroup())
		return;
	KvControlGet(&control);
	if (!control.campaign)
		return;
	if (campaign_worker != NULL)
	{
		if (GetBackgroundWorkerPid(campaign_worker, &pid) != BGWH_STOPPED)
			return;
		pfree(campaign_worker);
		campaign_worker = NULL;
	}
	/* one that ended in an error (a full disk) is not started again at once */
	if (!TimestampDifferenceExceeds(campaign_started, GetCurrentTimestamp(),
									KVEXT_CAMPAIGN_FIRST_WAIT_MS))
		return;
	campaign_started = GetCurrentTimestamp();

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "kvext");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "KvCampaignMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "kvext campaign");
	snprintf(worker.bgw_type, BGW_MAXLEN, "kvext campaign");
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &campaign_worker))
	{
		campaign_worker = NULL;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the kvext campaign worker"),
				 errhint("You might need to increase max_worker_processes.")));
	}
}

/*
 * KvCampaignMain
 *		Entry point of the "kvext campaign" worker (see the file header).
 *		SIGTERM ends it at once (die): a campaign has nothing to finish.
 */
void
KvCampaignMain(Datum arg)
{
	int			wait_ms = KVEXT_CAMPAIGN_FIRST_WAIT_MS;
	bool		reported = false;
	uint64		asked = 0;		/* the term we asked in last, 0 if none */
	int			splits = 0;		/* split votes in a row in the term asked */
	MemoryContext attempt_cxt;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	KvWorkerAttach();
	/* what one attempt allocates (its calls, refusals, the logged aborts) */
	attempt_cxt = AllocSetContextCreate(TopMemoryContext, "kvext campaign",
										ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		KvControl	control;
		KvElection	result;
		uint64		term;
		int			votes;
		StringInfoData refusals;

		CHECK_FOR_INTERRUPTS();
		KvControlGet(&control);
		if (!control.campaign || KvVisibleIsLeader())
		{
			if (!KvVisibleIsLeader())
				ereport(LOG,
						(errmsg("kvext node \"%s\" stops campaigning: it voted for another candidate or follows a leader in term " UINT64_FORMAT,
								kvext_node_name, control.term)));
			break;
		}

		MemoryContextReset(attempt_cxt);
		MemoryContextSwitchTo(attempt_cxt);
		initStringInfo(&refusals);
		result = KvRoleElect(splits >= 2 ? KV_ELECT_CAMPAIGN_NEXT : KV_ELECT_CAMPAIGN,
							 &term, &votes, &refusals);
		if (term != asked)
			splits = 0;
		asked = term;
		if (result == KV_ELECTED)
		{
			ereport(LOG,
					(errmsg("kvext node \"%s\" won term " UINT64_FORMAT " after its restart",
							kvext_node_name, term)));
			break;
		}
		if (result == KV_ELECTION_SPLIT)
		{
			/*
			 * Peers voted for another candidate in this term, which has
			 * not contacted them as leader (a failed kv_promote(), or one
			 * still under way).  Ask the same term again after the wait: a
			 * candidate that won is known by then, and its followers say so
			 * (the campaign ends).  Only a second split in a row, with
			 * still no leader, makes it ask in the next term.
			 */
			splits++;
			ereport(LOG,
					(errmsg("kvext node \"%s\" was not elected in term " UINT64_FORMAT ": peers voted for another candidate; unless a leader appears, it asks again in %s",
							kvext_node_name, term,
							splits >= 2 ? "the next term" : "this term"),
					 errdetail("%s", refusals.data)));
		}
		else if (result == KV_ELECTION_HIGHER_TERM)
		{
			/*
			 * A peer is in a later term: another candidate's.  Ask in it
			 * after the wait (we voted in it for nobody); if that candidate
			 * won, its voters say so and the campaign ends.
			 */
			ereport(LOG,
					(errmsg("kvext node \"%s\" was not elected in term " UINT64_FORMAT ": a peer is in a later term; unless a leader appears, it asks in that term",
							kvext_node_name, term),
					 errdetail("%s", refusals.len ? refusals.data : "No refusal.")));
		}
		else if (result != KV_ELECTION_UNANSWERED)
		{
			KvControlSetCampaign(false);
			ereport(LOG,
					(errmsg("kvext node \"%s\" stops campaigning: it was not elected in term " UINT64_FORMAT,
							kvext_node_name, term),
					 errdetail("%s", refusals.data),
					 errhint("It follows the leader that contacts it.  If no node leads, run kv_promote() on the node with the most recent log.")));
			break;
		}
		else if (!reported)
			ereport(LOG,
					(errmsg("kvext node \"%s\" could not reach a majority of its group to lead term " UINT64_FORMAT "; it keeps asking",
							kvext_node_name, term),
					 errdetail("It got %d of the %d votes it needs (its own included)%s%s.",
							   votes, KvReplQuorum(),
							   refusals.len ? ": " : "", refusals.data)));
		if (result == KV_ELECTION_UNANSWERED)
			reported = true;
		MemoryContextSwitchTo(TopMemoryContext);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, WAIT_EVENT_PG_SLEEP);
		ResetLatch(MyLatch);
		wait_ms = Min(wait_ms * 2, KVEXT_CAMPAIGN_MAX_WAIT_MS);
	}
	proc_exit(0);
}
