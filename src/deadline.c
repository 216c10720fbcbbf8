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
 * simple query's statements, a fast-path call) unless it is already on,
 * and disarms it after each Execute and before each commit; a simple query
 * commits at the end of its last statement, the extended protocol at Sync,
 * a procedure inside its CALL (the timer still armed), and deferred
 * triggers run SQL during the commit itself, after the timer is gone.  So
 * the timer that applies is the one of the last statement the client ran
 * in the transaction, as it was when that statement started running:
 *
 *	- the client's statements note it: a top-level utility statement
 *	  (ProcessUtility_hook, PROCESS_UTILITY_TOPLEVEL) as it starts, a
 *	  top-level query as it runs (ExecutorRun_hook at nesting 0 with a
 *	  client destination: under the extended protocol a SELECT's executor
 *	  starts at Bind, but the timer that applies is its Execute's);
 *	- anything else (SQL of functions, triggers, procedure bodies, and the
 *	  SQL a commit runs) notes only if nothing was noted in the
 *	  transaction, and so do kvext's own writes (KvDeadlineNoteIfNone):
 *	  that covers fast-path calls, which no hook sees;
 *	- the note ends with the top-level transaction (the callback is
 *	  registered first, so it runs after every other kvext callback and
 *	  their waits).
 *
 * A note is the timer's finish time if it is on, else "no deadline": at
 * those points PostgreSQL has just armed the timer if statement_timeout
 * was set, and a statement that changes statement_timeout as it runs
 * keeps the timer it started with, as it does in PostgreSQL.
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

/* note the statement timer as it is now */
static void
note_timer(void)
{
	noted = true;
	noted_deadline = get_timeout_active(STATEMENT_TIMEOUT) ?
		get_timeout_finish_time(STATEMENT_TIMEOUT) : 0;
}

/*
 * KvDeadlineNoteIfNone
 *		Note the statement timer unless something was noted in this
 *		transaction: for kvext's writes and kvext_fdw's remote transactions,
 *		which a fast-path call may run without any hook seeing a statement.
 */
void
KvDeadlineNoteIfNone(void)
{
	if (!noted)
		note_timer();
}

/* does the query send its rows to the client (a statement it ran)? */
static bool
to_client(QueryDesc *queryDesc)
{
	CommandDest dest = queryDesc->dest ? queryDesc->dest->mydest : DestNone;

	return dest == DestRemote || dest == DestRemoteExecute ||
		dest == DestRemoteSimple;
}

static void
kv_executor_start(QueryDesc *queryDesc, int eflags)
{
	KvDeadlineNoteIfNone();
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
kv_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				bool execute_once)
{
	if (nesting == 0 && to_client(queryDesc))
		note_timer();
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
	if (context == PROCESS_UTILITY_TOPLEVEL)
		note_timer();
	else
		KvDeadlineNoteIfNone();
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
