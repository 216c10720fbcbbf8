/*-------------------------------------------------------------------------
 *
 * kvext.c
 *	  Helpers every module may need (declared in kvext.h).  The library's
 *	  entry point is module.c.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "kvext.h"

/*
 * libpq/libpq.h declares it, but its libpq-be.h needs the GSSAPI headers
 * that PostgreSQL's server development package does not require
 */
extern bool pq_check_connection(void);

/*
 * KvClientConnectionLost
 *		For the waits that check the interrupt flags themselves instead of
 *		CHECK_FOR_INTERRUPTS (a commit wait must not raise a plain cancel):
 *		run the client_connection_check_interval probe that
 *		ProcessInterrupts would run, and say whether the client is gone.
 *		ClientConnectionLost stays set, so the backend exits at its next
 *		CHECK_FOR_INTERRUPTS, after the wait reports its outcome.
 */
bool
KvClientConnectionLost(void)
{
	if (CheckClientConnectionPending)
	{
		CheckClientConnectionPending = false;
		if (MyProcPort != NULL && client_connection_check_interval > 0)
		{
			if (!pq_check_connection())
			{
				ClientConnectionLost = true;
				InterruptPending = true;
			}
			else
				enable_timeout_after(CLIENT_CONNECTION_CHECK_TIMEOUT,
									 client_connection_check_interval);
		}
	}
	return ClientConnectionLost;
}

/*
 * The deadline of the statement running, noted as it starts executing
 * (KvNoteStatementStart, from the executor and utility hooks): the
 * statement timer PostgreSQL armed for it, if any, and which statement it
 * was (its start timestamp).
 */
static TimestampTz stmt_deadline = 0;
static TimestampTz stmt_deadline_of = 0;

/*
 * KvNoteStatementStart
 *		A statement starts executing: note its statement timer.  Inside a
 *		procedure the CALL's timer stays armed as it was when the CALL
 *		began, which is what every statement of it notes again.
 */
void
KvNoteStatementStart(void)
{
	stmt_deadline = get_timeout_active(STATEMENT_TIMEOUT) ?
		get_timeout_finish_time(STATEMENT_TIMEOUT) : 0;
	stmt_deadline_of = GetCurrentStatementStartTimestamp();
}

/*
 * KvCommitDeadline
 *		When a commit's wait (kvext's majority wait, kvext_fdw's remote
 *		COMMIT) must end as statement_timeout would end it; 0 for never.
 *		That is the statement timer PostgreSQL armed for the statement that
 *		commits (noted when it started executing: PostgreSQL disarms it
 *		before a top-level commit), so a COMMIT inside a procedure and the
 *		commit at the end of a CALL use the CALL's, and each statement of a
 *		multi-statement query string or of the extended protocol its own.
 *		A commit no statement start was noted for (a fast-path call) counts
 *		statement_timeout from the statement's start.
 */
TimestampTz
KvCommitDeadline(void)
{
	if (get_timeout_active(STATEMENT_TIMEOUT))
		return get_timeout_finish_time(STATEMENT_TIMEOUT);
	if (stmt_deadline_of != 0 && stmt_deadline_of == GetCurrentStatementStartTimestamp())
		return stmt_deadline;
	if (StatementTimeout > 0)
		return TimestampTzPlusMilliseconds(GetCurrentStatementStartTimestamp(),
										   StatementTimeout);
	return 0;
}
