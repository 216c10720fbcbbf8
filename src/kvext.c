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

#include "miscadmin.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/timeout.h"

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
