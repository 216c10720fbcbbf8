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
 *	"kvext waits"		per backend: the key it waits for (store/waits.c)
 *	"kvext senders"		per peer: what its log sender published
 *						(replication/sender.c)
 *	"kvext apply"		a follower's applied position and undecided
 *						transactions (log/apply.c)
 *	"kvext replication config" the group's parsed configuration
 *						(replication/config.c), loaded here, in the
 *						postmaster, before any process is forked
 * plus one named LWLock tranche per group of locks, so that
 * pg_stat_activity.wait_event tells them apart (wait_event_type LWLock):
 *	"kvext partition"	KVEXT_NUM_PARTITIONS locks of the hash table
 *	"kvext allocator"	the allocator of the store's heap
 *	"kvext keyspace"	the keyspace directory
 *	"kvext log insert"	appending records to the log
 *	"kvext log write"	writing the log's buffered records to its file
 *	"kvext log flush"	fsyncing the log (group commit)
 *	"kvext control"		the control file
 *	"kvext log append"	a follower's appends from its leader (one at a
 *						time; replication/receiver.c)
 * Named tranches (RequestNamedLWLockTranche) are registered by the
 * postmaster when it creates shared memory, so every process, including
 * those started after a crash-restart, knows their names.
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
#include "store/park.h"
#include "store/store.h"
#include "log/backup.h"
#include "store/waits.h"
#include "log/snapshot.h"
#include "log/visible.h"
#include "log/wal.h"
#include "replication/sender.h"
#include "log/apply.h"
#include "replication/config.h"
#include "replication/role.h"
#include "shmem.h"

bool		KvShmemAttached = false;
bool		KvBackendReady = false;

/* the LWLock tranches: name and number of locks */
typedef enum KvTranche
{
	KV_TRANCHE_PARTITION,
	KV_TRANCHE_ALLOCATOR,
	KV_TRANCHE_KEYSPACE,
	KV_TRANCHE_LOG_INSERT,
	KV_TRANCHE_LOG_WRITE,
	KV_TRANCHE_LOG_FLUSH,
	KV_TRANCHE_CONTROL,
	KV_TRANCHE_APPEND,
	KV_TRANCHE_SNAPSHOT,
	KV_NUM_TRANCHES
} KvTranche;

static const struct
{
	const char *name;
	int			nlocks;
}			kv_tranches[KV_NUM_TRANCHES] =
{
	[KV_TRANCHE_PARTITION] = {"kvext partition", KVEXT_NUM_PARTITIONS},
	[KV_TRANCHE_ALLOCATOR] = {"kvext allocator", 1},
	[KV_TRANCHE_KEYSPACE] = {"kvext keyspace", 1},
	[KV_TRANCHE_LOG_INSERT] = {"kvext log insert", 1},
	[KV_TRANCHE_LOG_WRITE] = {"kvext log write", 1},
	[KV_TRANCHE_LOG_FLUSH] = {"kvext log flush", 1},
	[KV_TRANCHE_CONTROL] = {"kvext control", 1},
	[KV_TRANCHE_APPEND] = {"kvext log append", 1},
	[KV_TRANCHE_SNAPSHOT] = {"kvext snapshot", 1},
};

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
	RequestAddinShmemSpace(KvWaitsShmemSize());
	RequestAddinShmemSpace(KvVisibleShmemSize());
	RequestAddinShmemSpace(KvParkShmemSize());
	RequestAddinShmemSpace(KvSenderShmemSize());
	RequestAddinShmemSpace(KvReplConfigShmemSize());
	RequestAddinShmemSpace(KvApplyShmemSize());
	for (int i = 0; i < KV_NUM_TRANCHES; i++)
		RequestNamedLWLockTranche(kv_tranches[i].name, kv_tranches[i].nlocks);
}

/* the first (or only) lock of a tranche; caller holds AddinShmemInitLock */
static LWLock *
tranche_lock(KvTranche t)
{
	return &GetNamedLWLockTranche(kv_tranches[t].name)[0].lock;
}

static void
kv_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	KvStoreShmemInit(GetNamedLWLockTranche(kv_tranches[KV_TRANCHE_PARTITION].name),
					 tranche_lock(KV_TRANCHE_ALLOCATOR));
	KvKeyspaceInit(tranche_lock(KV_TRANCHE_KEYSPACE));
	KvStatsShmemInit();
	KvWalShmemInit(tranche_lock(KV_TRANCHE_LOG_INSERT),
				   tranche_lock(KV_TRANCHE_LOG_WRITE),
				   tranche_lock(KV_TRANCHE_LOG_FLUSH));
	KvControlShmemInit(tranche_lock(KV_TRANCHE_CONTROL));
	KvWaitsShmemInit();
	KvVisibleShmemInit();
	KvParkShmemInit();
	KvSenderShmemInit();
	KvRecoveryShmemInit();
	KvCheckpointShmemInit();
	KvSnapshotShmemInit(tranche_lock(KV_TRANCHE_SNAPSHOT));
	KvBackupShmemInit();
	KvReplConfigShmemInit();
	KvApplyShmemInit();
	KvRoleInit(tranche_lock(KV_TRANCHE_APPEND));
	LWLockRelease(AddinShmemInitLock);

	/* in the postmaster only: backends inherit the result */
	if (!IsUnderPostmaster)
		KvReplConfigLoad();

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
 *		attached or the replication configuration is bad (KvBackendReady
 *		stays false then, so every call comes back here and fails), set up
 *		this backend's counters, and wait for recovery.
 */
void
KvBackendSetup(void)
{
	if (!KvShmemAttached)
		KvReportNotPreloaded();
	KvReplCheckConfig();
	if (!KvBackendReady)
	{
		KvStatsAttachBackend();
		KvBackendReady = true;
	}
	if (pg_atomic_read_u32(KvStateFlag) != KV_STATE_READY)
		KvWaitReady();
	KvParkWaitOwn();
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
