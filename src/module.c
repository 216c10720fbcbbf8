/*-------------------------------------------------------------------------
 *
 * module.c
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
 * functions, in dependency order.  (It is not kvext.c, which goes with
 * kvext.h, the header every module includes: the entry point calls every
 * module, so no module may call into it.)
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "api/api.h"
#include "deadline.h"
#include "guc.h"
#include "remote.h"
#include "replication/sender.h"
#include "shmem.h"
#include "store/txn.h"
#include "worker.h"

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
	KvDeadlineInit();		/* before the other callbacks: see there */
	KvTxnInit();
	KvRemoteInit();				/* after KvTxnInit: see there */
	KvRolesInit();
	KvRegisterWorkers();
	KvSenderRegisterWorkers();
}
