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

#include "executor/spi.h"
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
 *		PostgreSQL disarms the statement's timer before a top-level commit,
 *		so that one is counted from the statement's start with the current
 *		setting.  A COMMIT inside a procedure runs under the CALL's timer,
 *		still armed (or not) as it was when the CALL began, whatever the
 *		procedure set since: its end is the deadline.
 */
TimestampTz
KvCommitDeadline(void)
{
	if (SPI_inside_nonatomic_context())
		return get_timeout_active(STATEMENT_TIMEOUT) ?
			get_timeout_finish_time(STATEMENT_TIMEOUT) : 0;
	if (StatementTimeout > 0)
		return TimestampTzPlusMilliseconds(GetCurrentStatementStartTimestamp(),
										   StatementTimeout);
	return 0;
}
