/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared memory hooks and the availability check of SQL functions.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_SHMEM_H
#define KVEXT_SHMEM_H

#include "log/recovery.h"
#include "store/park.h"

extern void KvShmemInit(void);
extern bool KvShmemAttached;
extern bool KvBackendReady;
extern void KvBackendSetup(void);
extern void KvReportNotPreloaded(void) pg_attribute_noreturn();

/*
 * KvCheckAvailable
 *		First thing every SQL-callable function does: raise SQLSTATE 55000
 *		unless kvext's shared memory is attached (the library was loaded by
 *		shared_preload_libraries), set up this backend's state on first use,
 *		wait (bounded) until recovery has rebuilt the store, and wait for
 *		this backend's last commit if it is parked
 *		(KvParkOwnPending), so a session reads its own writes.
 */
#define KvCheckAvailable() \
	do { \
		if (unlikely(!KvBackendReady) || unlikely(KvParkOwnPending) || \
			unlikely(pg_atomic_read_u32(KvStateFlag) != KV_STATE_READY)) \
			KvBackendSetup(); \
	} while (0)

#endif							/* KVEXT_SHMEM_H */
