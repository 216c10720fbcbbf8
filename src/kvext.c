/*-------------------------------------------------------------------------
 *
 * kvext.c
 *	  Entry point of the kvext shared library.
 *
 * kvext keeps its store in shared memory and needs its transaction
 * callbacks in every backend, so it only works when loaded through
 * shared_preload_libraries.  _PG_init refuses any other way of loading it
 * (CREATE EXTENSION, LOAD, a function call in a backend of a server that
 * did not preload it) with SQLSTATE 55000 and a hint; if a backend somehow
 * keeps the library loaded after that error, every SQL function checks
 * KvShmemAttached and raises the same error.
 *
 * Everything else lives in the modules; this file only calls their init
 * functions, in dependency order.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/timeout.h"

#include "api/api.h"
#include "guc.h"
#include "kvext.h"
#include "remote.h"
#include "replication/sender.h"
#include "shmem.h"
#include "store/txn.h"
#include "worker.h"

/*
 * libpq/libpq.h declares it, but its libpq-be.h needs the GSSAPI headers
 * that PostgreSQL's server development package does not require
 */
extern bool pq_check_connection(void);

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * _PG_init
 *		Module load callback: define settings, request shared memory and
 *		register transaction callbacks.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		KvReportNotPreloaded();

	KvGucInit();
	KvShmemInit();
	KvRemoteInit();				/* before KvTxnInit: see there */
	KvTxnInit();
	KvRolesInit();
	KvRegisterWorkers();
	KvSenderRegisterWorkers();
}

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
