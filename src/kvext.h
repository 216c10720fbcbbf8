/*-------------------------------------------------------------------------
 *
 * kvext.h
 *	  Declarations shared by every kvext module: configuration variables,
 *	  module entry points called from _PG_init, and the availability check
 *	  that every SQL-callable function performs first.
 *
 * Subsystems keep their own headers (alloc.h, store.h, txn.h); this one
 * holds only what is truly global.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_H
#define KVEXT_H

#include "port/atomics.h"

/* GUC variables, defined in guc.c */
extern PGDLLIMPORT int kvext_memory_limit;	/* kB, PGC_POSTMASTER */
extern PGDLLIMPORT int kvext_max_key_size;	/* bytes, PGC_SUSET */
extern PGDLLIMPORT int kvext_max_value_size;	/* bytes, PGC_SUSET */
extern PGDLLIMPORT int kvext_max_keyspaces;	/* PGC_POSTMASTER */
extern PGDLLIMPORT int kvext_synchronous_commit;	/* KvSyncCommit, USERSET */
extern PGDLLIMPORT int kvext_wal_writer_delay;	/* ms, SIGHUP */
extern PGDLLIMPORT int kvext_wal_segment_size;	/* bytes, SIGHUP */
extern PGDLLIMPORT int kvext_checkpoint_timeout;	/* s, SIGHUP */
extern PGDLLIMPORT int kvext_max_wal_size;	/* MB, SIGHUP */
extern PGDLLIMPORT int kvext_recovery_wait_timeout;	/* ms, USERSET */

/* guc.c */
extern void KvGucInit(void);

/* shmem.c */
extern void KvShmemInit(void);
extern bool KvShmemAttached;
extern bool KvBackendReady;
extern void KvBackendSetup(void);

/* recovery.c: KV_STATE_READY once recovery has rebuilt the store */
extern PGDLLIMPORT pg_atomic_uint32 *KvStateFlag;
#define KV_STATE_STARTING		0
#define KV_STATE_RECOVERING		1
#define KV_STATE_READY			2
#define KV_STATE_FAILED			3

/* worker.c */
extern void KvRegisterWorkers(void);

/* txn.c */
extern void KvTxnInit(void);

/*
 * KvCheckAvailable
 *		First thing every SQL-callable function does: raise SQLSTATE 55000
 *		unless kvext's shared memory is attached (the library was loaded by
 *		shared_preload_libraries), and set up this backend's state on first
 *		use.
 */
#define KvCheckAvailable() \
	do { \
		if (unlikely(!KvBackendReady) || \
			unlikely(pg_atomic_read_u32(KvStateFlag) != KV_STATE_READY)) \
			KvBackendSetup(); \
	} while (0)

extern void KvReportNotPreloaded(void) pg_attribute_noreturn();

#endif							/* KVEXT_H */
