/*-------------------------------------------------------------------------
 *
 * deadline.c
 *	  When a commit's waits end: the statement timer PostgreSQL armed for
 *	  the statement that commits.
 *
 * PostgreSQL disarms statement_timeout before a top-level commit
 * (finish_xact_command), so kvext's majority wait and kvext_fdw's remote
 * COMMITs apply it themselves.  PostgreSQL arms the timer as each protocol
 * message starts a statement (start_xact_command: Parse, Bind, Execute, a
 * fast-path call, each statement of a simple query) unless it is already
 * on, and disarms it after each Execute, between the statements of a
 * simple query and before each commit.  A simple query commits after its
 * last statement, the extended protocol at Sync, a procedure inside its
 * CALL (the timer still armed); deferred triggers and holdable cursors run
 * SQL during the commit itself, after the timer is gone.  The timer that
 * applies is the one PostgreSQL armed for the last statement the client
 * ran in the transaction, so kvext watches the timer wherever it can
 * (observe_timer): as statements start (the executor and utility hooks, at
 * any depth) and at its own writes and remote transactions, which a
 * fast-path call reaches without any hook:
 *
 *	- a timer that is on is always the running client statement's (it is
 *	  only ever armed for one): it is noted;
 *	- a timer that is off means "no deadline" only for a statement that
 *	  started with statement_timeout at 0, not for SQL that runs after the
 *	  timer was disarmed: so it is noted only by a client statement's start
 *	  (a top-level utility statement, or the executor at depth 0 running
 *	  the unnamed portal that simple queries and most drivers use), or in
 *	  a new protocol message (the statement start timestamp changed, as
 *	  PostgreSQL sets it for each) while statement_timeout is 0: with it
 *	  set, PostgreSQL would have armed the timer for that message, so off
 *	  means disarmed since (a Describe before Sync, say, which arms a timer
 *	  and runs no hook, then the commit's own SQL);
 *	- the note ends with the top-level transaction (the callback is
 *	  registered first, so it runs after every other kvext callback and
 *	  their waits).
 *
 * SQL the commit runs comes after the last client statement, in the same
 * protocol message, and never starts a client statement, so it never
 * changes the note.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
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
static TimestampTz noted_in = 0;	/* statement start of the noting message */

/*
 * observe_timer
 *		Look at the statement timer (see the file's header); starts_statement:
 *		a client statement is starting.
 */
static void
observe_timer(bool starts_statement)
{
	TimestampTz stmt = GetCurrentStatementStartTimestamp();

	if (get_timeout_active(STATEMENT_TIMEOUT))
	{
		noted = true;
		noted_deadline = get_timeout_finish_time(STATEMENT_TIMEOUT);
		noted_in = stmt;
	}
	else if (!noted || starts_statement ||
			 (stmt != noted_in && StatementTimeout <= 0))
	{
		noted = true;
		noted_deadline = 0;
		noted_in = stmt;
	}
}

/*
 * KvDeadlineObserve
 *		For kvext's writes and kvext_fdw's remote transactions: look at the
 *		statement timer, which a fast-path call may have armed without any
 *		hook seeing a statement.
 */
void
KvDeadlineObserve(void)
{
	observe_timer(false);
}

/*
 * runs_client_statement
 *		Is the executor, at depth 0, running a statement the client sent
 *		in a simple query or through the unnamed portal?  (Not SQL that a
 *		commit runs: deferred triggers have no active portal or one of
 *		SPI's, holdable cursors their own named one.)
 */
static bool
runs_client_statement(void)
{
	return nesting == 0 && ActivePortal != NULL && ActivePortal->name[0] == '\0';
}

static void
kv_executor_start(QueryDesc *queryDesc, int eflags)
{
	observe_timer(runs_client_statement());
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
kv_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				bool execute_once)
{
	observe_timer(runs_client_statement());
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
	observe_timer(context == PROCESS_UTILITY_TOPLEVEL);
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
 *		The timer still armed (a COMMIT inside a procedure), else the note
 *		(see the file's header), else (a transaction nothing noted for)
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
