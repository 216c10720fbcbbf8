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
 * KvCommitDeadline
 *		When a commit's wait (kvext's majority wait, kvext_fdw's remote
 *		COMMIT) must end as statement_timeout would end it; 0 for never.
 *		That is the statement timer PostgreSQL armed for the statement that
 *		commits, with the setting it had then: still armed inside a
 *		procedure (the CALL's), disarmed just before a top-level commit but
 *		with its times kept.  A timer armed before this statement began is
 *		not its own (the statement ran without one).  Each statement of a
 *		multi-statement query string has its own timer, as in PostgreSQL.
 */
TimestampTz
KvCommitDeadline(void)
{
	if (get_timeout_active(STATEMENT_TIMEOUT) ||
		get_timeout_start_time(STATEMENT_TIMEOUT) >= GetCurrentStatementStartTimestamp())
		return get_timeout_finish_time(STATEMENT_TIMEOUT);
	return 0;
}
