/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Requesting and attaching kvext's shared memory (the PG15 idiom of
 *	  contrib/pg_stat_statements: shmem_request_hook, shmem_startup_hook).
 *
 * kvext's shared state is a few structs in the main shared memory segment:
 *	"kvext store"		control, allocator control, and the region of
 *						kvext.memory_limit bytes (bucket array + heap)
 *	"kvext keyspaces"	the keyspace directory
 *	"kvext counters"	per-backend activity counters
 *	"kvext wal"			log positions and in-flight records
 *	"kvext recovery"	the store's state (recovering, ready, failed)
 *	"kvext checkpointer" snapshot requests
 * plus the named LWLock tranche "kvext" (see store.h).
 *
 * The startup hook runs in the postmaster, at start and after every
 * crash-restart (which re-creates shared memory, so the store starts
 * empty and the checkpointer worker recovers it); children inherit the
 * attached pointers through fork.
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

#include "log/checkpoint.h"
#include "log/control.h"
#include "kvext.h"
#include "store/stats.h"
#include "log/recovery.h"
#include "store/keyspace.h"
#include "store/store.h"
#include "log/backup.h"
#include "log/snapshot.h"
#include "log/wal.h"
#include "shmem.h"

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
	RequestAddinShmemSpace(KvStatsShmemSize());
	RequestAddinShmemSpace(KvWalShmemSize());
	RequestAddinShmemSpace(KvControlShmemSize());
	RequestAddinShmemSpace(KvRecoveryShmemSize());
	RequestAddinShmemSpace(KvCheckpointShmemSize());
	RequestAddinShmemSpace(KvSnapshotShmemSize());
	RequestAddinShmemSpace(KvBackupShmemSize());
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
	KvKeyspaceInit(&locks[KVEXT_KEYSPACE_LOCK_INDEX].lock);
	KvStatsShmemInit();
	KvWalShmemInit(&locks[KVEXT_WAL_INSERT_LOCK_INDEX].lock,
				   &locks[KVEXT_WAL_FLUSH_LOCK_INDEX].lock);
	KvControlShmemInit(&locks[KVEXT_CONTROL_LOCK_INDEX].lock);
	KvRecoveryShmemInit();
	KvCheckpointShmemInit();
	KvSnapshotShmemInit();
	KvBackupShmemInit();
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
 *		attached, set up this backend's counters, and wait for recovery.
 */
void
KvBackendSetup(void)
{
	if (!KvShmemAttached)
		KvReportNotPreloaded();
	if (!KvBackendReady)
	{
		KvStatsAttachBackend();
		KvBackendReady = true;
	}
	if (pg_atomic_read_u32(KvStateFlag) != KV_STATE_READY)
		KvWaitReady();
}

/*
 * KvReportNotPreloaded
 *		The one error for "kvext is not in shared_preload_libraries".
 */
void
KvReportNotPreloaded(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("kvext must be loaded via shared_preload_libraries"),
			 errhint("Add kvext to shared_preload_libraries in postgresql.conf and restart the server.")));
}
