/*-------------------------------------------------------------------------
 *
 * deadline.c
 *	  When a commit's waits end: the statement timer PostgreSQL armed for
 *	  the statement that commits.
 *
 * PostgreSQL disarms statement_timeout before a top-level commit
 * (finish_xact_command), so kvext's majority wait and kvext_fdw's remote
 * COMMITs apply it themselves.  Which timer is "the committing statement's"
 * depends on the protocol: a simple query commits at the end of its last
 * statement, the extended protocol at Sync (after Execute disarmed the
 * timer Parse or Bind armed), a procedure inside its CALL (the timer still
 * armed), and deferred triggers run SQL during the commit itself, after the
 * timer is gone.  So the executor and utility hooks note the timer of each
 * top-level statement as it starts, and keep that note for the transaction:
 *
 *	- nested statements (functions, triggers, a procedure's body) never
 *	  note: the top-level statement's timer is the one that applies;
 *	- a top-level statement that starts with the timer armed notes its
 *	  finish time; one that starts with no timer while statement_timeout is
 *	  0 notes "no deadline";
 *	- one that starts with no timer while statement_timeout is set is SQL
 *	  run by the commit (PostgreSQL arms the timer for every statement it
 *	  starts): the committing statement's note stands;
 *	- the note ends with the top-level transaction (the callback is
 *	  registered first, so it runs after every other kvext callback and
 *	  their waits).
 *
 * A commit with no note (a fast-path function call) counts statement_timeout
 * from the statement's start.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "deadline.h"

static ExecutorStart_hook_type prev_executor_start = NULL;
static ExecutorRun_hook_type prev_executor_run = NULL;
static ExecutorFinish_hook_type prev_executor_finish = NULL;
static ProcessUtility_hook_type prev_utility = NULL;

/* how deep in executor runs and utility statements this backend is */
static int	nesting = 0;

/* the committing statement's deadline (0: none), if one was noted */
static bool noted = false;
static TimestampTz noted_deadline = 0;

/* a statement starts: note its timer if it is a top-level one */
static void
note_statement_start(void)
{
	if (nesting > 0)
		return;
	if (get_timeout_active(STATEMENT_TIMEOUT))
	{
		noted = true;
		noted_deadline = get_timeout_finish_time(STATEMENT_TIMEOUT);
	}
	else if (StatementTimeout <= 0)
	{
		noted = true;
		noted_deadline = 0;
	}
	/* else: SQL the commit runs, after PostgreSQL disarmed the timer */
}

static void
kv_executor_start(QueryDesc *queryDesc, int eflags)
{
	note_statement_start();
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
kv_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				bool execute_once)
{
	nesting++;
	PG_TRY();
	{
		if (prev_executor_run)
			prev_executor_run(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		nesting--;
	}
	PG_END_TRY();
}

static void
kv_executor_finish(QueryDesc *queryDesc)
{
	nesting++;
	PG_TRY();
	{
		if (prev_executor_finish)
			prev_executor_finish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		nesting--;
	}
	PG_END_TRY();
}

static void
kv_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	note_statement_start();
	nesting++;
	PG_TRY();
	{
		if (prev_utility)
			prev_utility(pstmt, queryString, readOnlyTree, context, params,
						 queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		nesting--;
	}
	PG_END_TRY();
}

/* the top-level transaction ended: its note goes with it */
static void
deadline_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a COMMIT inside a procedure keeps the CALL's note */
			if (nesting == 0)
				noted = false;
			break;
		default:
			break;
	}
}

/*
 * KvCommitDeadline
 *		When a commit's wait (kvext's majority wait, kvext_fdw's remote
 *		COMMIT) must end as statement_timeout would end it; 0 for never.
 *		The timer still armed (a COMMIT inside a procedure), else the
 *		committing statement's note (see the file's header), else
 *		statement_timeout from the statement's start.
 */
TimestampTz
KvCommitDeadline(void)
{
	if (get_timeout_active(STATEMENT_TIMEOUT))
		return get_timeout_finish_time(STATEMENT_TIMEOUT);
	if (noted)
		return noted_deadline;
	if (StatementTimeout > 0)
		return TimestampTzPlusMilliseconds(GetCurrentStatementStartTimestamp(),
										   StatementTimeout);
	return 0;
}

/*
 * KvDeadlineInit
 *		Install the hooks and the transaction callback (_PG_init: first of
 *		the callbacks, so that it runs last).
 */
void
KvDeadlineInit(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = kv_executor_start;
	prev_executor_run = ExecutorRun_hook;
	ExecutorRun_hook = kv_executor_run;
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = kv_executor_finish;
	prev_utility = ProcessUtility_hook;
	ProcessUtility_hook = kv_process_utility;
	RegisterXactCallback(deadline_xact_callback, NULL);
}
