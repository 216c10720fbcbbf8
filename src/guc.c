/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Every kvext configuration setting, defined in one place.
 *
 * Settings that size shared memory are PGC_POSTMASTER.  The key and value
 * size limits protect the shared store from one session filling it with a
 * single huge write, so only superusers may change them (PGC_SUSET).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/twophase.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "failpoint.h"
#include "guc.h"
#include "kvext.h"

int			kvext_memory_limit = 256 * 1024;	/* kB */
int			kvext_heap_chunk_size = 1024;	/* MB */
int			kvext_max_key_size = 8 * 1024;
int			kvext_max_value_size = 1024 * 1024;
int			kvext_max_transaction_size = 1024 * 1024;	/* kB */
int			kvext_max_keyspaces = 64;
int			kvext_synchronous_commit = KV_SYNC_ON;
int			kvext_wal_writer_delay = 200;
int			kvext_wal_segment_size = 16 * 1024 * 1024;
int			kvext_wal_buffers = 1024 * 1024;
int			kvext_checkpoint_timeout = 300;
int			kvext_max_wal_size = 1024;
int			kvext_wal_keep_size = 128;
int			kvext_recovery_wait_timeout = 60000;
char	   *kvext_node_name = NULL;
char	   *kvext_peers = NULL;
char	   *kvext_leader = NULL;

static const struct config_enum_entry sync_commit_options[] = {
	{"off", KV_SYNC_OFF, false},
	{"local", KV_SYNC_LOCAL, false},
	{"on", KV_SYNC_ON, false},
	{"remote_apply", KV_SYNC_REMOTE_APPLY, false},
	{"true", KV_SYNC_ON, true},
	{"false", KV_SYNC_OFF, true},
	{"yes", KV_SYNC_ON, true},
	{"no", KV_SYNC_OFF, true},
	{"1", KV_SYNC_ON, true},
	{"0", KV_SYNC_OFF, true},
	{NULL, 0, false}
};

/*
 * A value, its key (1MB at most) and the entry header must fit in one
 * allocator chunk (1GB): keep 2MB of room.
 */
#define KVEXT_MAX_VALUE_SIZE_LIMIT	(1024 * 1024 * 1024 - 2 * 1024 * 1024)

/* the allocator addresses 8-byte units with 32-bit offsets: 32GB at most */
#define KVEXT_MAX_MEMORY_LIMIT_KB	(32 * 1024 * 1024)

/*
 * KvProcSlots
 *		How many PGPROC slots there are (backends, auxiliary processes,
 *		prepared transactions): the size of every per-backend array kvext
 *		keeps in shared memory, indexed by pgprocno.  Derived from
 *		PostgreSQL's settings, so it is known before shared memory exists.
 */
int
KvProcSlots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

/*
 * KvOwnerSlotCount
 *		How many owner slots the store keeps (store.c, "Owner slots"); the
 *		log's in-flight marks (wal.c) and parked transactions (park.c) are
 *		indexed by them too.
 */
int
KvOwnerSlotCount(void)
{
	return KVEXT_SLOTS_PER_PROC * KvProcSlots();
}

/*
 * KvGucInit
 *		Define all kvext.* settings and reserve the prefix.
 */
void
KvGucInit(void)
{
	DefineCustomIntVariable("kvext.memory_limit",
							"Shared memory reserved for the key-value store.",
							"Keys, values, per-entry overhead and the hash index all count "
							"against this limit; a write that would exceed it fails.",
							&kvext_memory_limit,
							256 * 1024,
							8 * 1024,
							KVEXT_MAX_MEMORY_LIMIT_KB,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	/*
	 * A developer option: tests of how large values are packed use small
	 * chunks, so that they need MBs where the default needs GBs.
	 */
	DefineCustomIntVariable("kvext.heap_chunk_size",
							"Size of the parts of kvext's heap that an entry must fit in whole.",
							"A developer option.  Raised to kvext.memory_limit / 32 if smaller; "
							"a value larger than a chunk does not fit.",
							&kvext_heap_chunk_size,
							1024,
							1,
							1024,
							PGC_POSTMASTER,
							GUC_UNIT_MB | GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.max_key_size",
							"Largest key accepted by a write.",
							NULL,
							&kvext_max_key_size,
							8 * 1024,
							1,
							1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.max_transaction_size",
							"Most bytes of keys and values one transaction may write.",
							"Counts the keys and values of the versions the transaction "
							"holds: a key rewritten at the same subtransaction level counts "
							"once, a version kept for a savepoint until the savepoint ends.  "
							"Keeps one session from filling the store every session shares.",
							&kvext_max_transaction_size,
							1024 * 1024,
							1024,
							4 * 1024 * 1024 - 1,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.max_value_size",
							"Largest value accepted by a write.",
							NULL,
							&kvext_max_value_size,
							1024 * 1024,
							0,
							KVEXT_MAX_VALUE_SIZE_LIMIT,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.max_keyspaces",
							"Maximum number of keyspaces, including \"default\".",
							NULL,
							&kvext_max_keyspaces,
							64,
							1,
							1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("kvext.synchronous_commit",
							 "When a kvext commit returns: after the log is flushed locally "
							 "(local), on a majority of the cluster (on, remote_apply), or "
							 "at once (off).",
							 "Without peers, on and remote_apply mean local.  With off, a "
							 "crash can lose commits of the last kvext.wal_writer_delay; a "
							 "transaction that also wrote tables is always flushed.",
							 &kvext_synchronous_commit,
							 KV_SYNC_ON,
							 sync_commit_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.wal_writer_delay",
							"How often the kvext wal writer flushes commits made with "
							"kvext.synchronous_commit = off.",
							NULL,
							&kvext_wal_writer_delay,
							200,
							1,
							10000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.wal_segment_size",
							"Size at which kvext starts a new log segment file.",
							NULL,
							&kvext_wal_segment_size,
							16 * 1024 * 1024,
							64 * 1024,
							1024 * 1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.wal_buffers",
							"Shared memory for kvext log records not yet written to the log file.",
							"Records up to a quarter of this size are copied here and written "
							"by the next flush, or when it fills; larger ones are written at once.",
							&kvext_wal_buffers,
							1024 * 1024,
							64 * 1024,
							256 * 1024 * 1024,
							PGC_POSTMASTER,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.checkpoint_timeout",
							"Time between automatic kvext snapshots.",
							NULL,
							&kvext_checkpoint_timeout,
							300,
							1,
							86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.max_wal_size",
							"Log written since the last snapshot that triggers a new one.",
							NULL,
							&kvext_max_wal_size,
							1024,
							1,
							INT_MAX / 2,
							PGC_SIGHUP,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.wal_keep_size",
							"Log kept behind its end after a snapshot, for followers that "
							"fall behind.",
							"Only on a node with peers.  A follower that needs log older "
							"than what is kept is rebuilt from a streamed snapshot.",
							&kvext_wal_keep_size,
							128,
							0,
							INT_MAX / 2,
							PGC_SIGHUP,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.recovery_wait_timeout",
							"How long a kv function waits for the store to finish recovery "
							"before it fails.",
							NULL,
							&kvext_recovery_wait_timeout,
							60000,
							0,
							INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	/*
	 * Replication (src/replication/config.c checks them at startup; a bad
	 * value makes the group "misconfigured" rather than stopping the
	 * server, so every kv function can say why).
	 */
	DefineCustomStringVariable("kvext.node_name",
							   "This node's name in its replication group.",
							   "Empty for a server without peers.",
							   &kvext_node_name,
							   "",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("kvext.peers",
							   "The other nodes of the replication group, as "
							   "'name:conninfo; name:conninfo'.",
							   "Empty: a group of one (no replication).",
							   &kvext_peers,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("kvext.leader",
							   "The initial leader of a new replication group.",
							   NULL,
							   &kvext_leader,
							   "",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("kvext.failpoint",
							   "Testing aid: crash or fail at the named point.",
							   "Empty disables.  See src/failpoint.c for the points.",
							   &kvext_failpoint,
							   "",
							   PGC_SUSET,
							   GUC_NOT_IN_SAMPLE,
							   KvFailpointCheck, NULL, NULL);

	MarkGUCPrefixReserved("kvext");
}
