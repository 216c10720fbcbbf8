/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Requesting and attaching kvext's shared memory (the PG15 idiom of
 *	  contrib/pg_stat_statements: shmem_request_hook, shmem_startup_hook).
 *
 * kvext's shared state is three structs in the main shared memory segment:
 *	"kvext store"		control, allocator control, and the region of
 *						kvext.memory_limit bytes (bucket array + heap)
 *	"kvext keyspaces"	the keyspace directory
 *	"kvext counters"	per-backend activity counters
 * plus the named LWLock tranche "kvext" (partition locks, allocator lock,
 * keyspace lock; see store.h).
 *
 * The startup hook runs in the postmaster, at start and after every
 * crash-restart (which re-creates shared memory, so the store starts
 * empty); children inherit the attached pointers through fork.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "kvext.h"
#include "monitor.h"
#include "store.h"

bool		KvShmemAttached = false;
bool		KvBackendReady = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
kv_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(KvStoreShmemSize());
	RequestAddinShmemSpace(KvKeyspaceShmemSize());
	RequestAddinShmemSpace(KvStatsShmemSize());
	RequestNamedLWLockTranche(KVEXT_TRANCHE_NAME, KVEXT_NUM_LWLOCKS);
}

static void
kv_shmem_startup(void)
{
	LWLockPadded *locks;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	locks = GetNamedLWLockTranche(KVEXT_TRANCHE_NAME);
	KvStoreShmemInit(locks);
	KvKeyspaceShmemInit(&locks[KVEXT_KEYSPACE_LOCK_INDEX].lock);
	KvStatsShmemInit();
	LWLockRelease(AddinShmemInitLock);

	KvShmemAttached = true;
}

/*
 * KvShmemInit
 *		Install the shared memory hooks (from _PG_init).
 */
void
KvShmemInit(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = kv_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = kv_shmem_startup;
}

/*
 * KvBackendSetup
 *		Slow path of KvCheckAvailable: error out if shared memory is not
 *		attached, else set up this backend's counters.
 */
void
KvBackendSetup(void)
{
	if (!KvShmemAttached)
		KvReportNotPreloaded();
	KvStatsAttachBackend();
	KvBackendReady = true;
}
