/*-------------------------------------------------------------------------
 *
 * kvext.h
 *	  Declarations shared by every kvext module: configuration variables,
 *	  module entry points called from _PG_init, and the availability check
 *	  that every SQL-callable function performs first.
 *
 * Every module has its own header in its folder (store/, log/); this one
 * holds only what every module needs, and declares nothing that would
 * make a lower layer depend on a higher one.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_H
#define KVEXT_H

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"

#include "guc.h"

/* a position in kvext's log (log/wal.h) */
typedef uint64 KvLsn;

/* GUC variables, defined in guc.c */
extern PGDLLIMPORT int kvext_memory_limit;	/* kB, PGC_POSTMASTER */
extern PGDLLIMPORT int kvext_heap_chunk_size;	/* MB, PGC_POSTMASTER */
extern PGDLLIMPORT int kvext_max_key_size;	/* bytes, PGC_SUSET */
extern PGDLLIMPORT int kvext_max_value_size;	/* bytes, PGC_SUSET */
extern PGDLLIMPORT int kvext_max_transaction_size;	/* kB, PGC_SUSET */
extern PGDLLIMPORT int kvext_max_keyspaces;	/* PGC_POSTMASTER */
extern PGDLLIMPORT int kvext_synchronous_commit;	/* KvSyncCommit, USERSET */
extern PGDLLIMPORT int kvext_wal_writer_delay;	/* ms, SIGHUP */
extern PGDLLIMPORT int kvext_wal_segment_size;	/* bytes, SIGHUP */
extern PGDLLIMPORT int kvext_wal_buffers;	/* bytes, postmaster */
extern PGDLLIMPORT int kvext_checkpoint_timeout;	/* s, SIGHUP */
extern PGDLLIMPORT int kvext_max_wal_size;	/* MB, SIGHUP */
extern PGDLLIMPORT int kvext_wal_keep_size;	/* MB, SIGHUP */
extern PGDLLIMPORT int kvext_recovery_wait_timeout;	/* ms, USERSET */
extern PGDLLIMPORT char *kvext_node_name;	/* PGC_POSTMASTER */
extern PGDLLIMPORT char *kvext_peers;	/* PGC_POSTMASTER, superuser only */
extern PGDLLIMPORT char *kvext_leader;	/* PGC_POSTMASTER */

/*
 * KvCheckForInterruptsLong
 *		CHECK_FOR_INTERRUPTS for the long loops of recovery, snapshot
 *		loading and replay, which may run in the kvext checkpointer: a
 *		worker gets no signal when the postmaster dies, and one that goes on
 *		for minutes keeps shared memory and blocks the restart.
 */
static inline void
KvCheckForInterruptsLong(void)
{
	CHECK_FOR_INTERRUPTS();
	if (!PostmasterIsAlive())
		proc_exit(1);
}

extern bool KvClientConnectionLost(void);

#endif							/* KVEXT_H */
