/*-------------------------------------------------------------------------
 *
 * monitor.c
 *	  Status functions: kv_stats(), kv_memory(), kv_wal_status(),
 *	  kv_checkpoint(), kv_backup_start(), kv_backup_stop(), kv_locks().
 *
 * kv_stats() sums the per-backend counters of store/stats.c; kv_memory()
 * reads the allocator's counters; kv_locks() copies the published waits of
 * store/waits.c; the others read the log's positions and the
 * checkpointer's state.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "catalog/pg_authid_d.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "kvext.h"
#include "shmem.h"
#include "log/backup.h"
#include "log/checkpoint.h"
#include "log/control.h"
#include "log/recovery.h"
#include "log/snapshot.h"
#include "log/wal.h"
#include "store/acl.h"
#include "store/keyspace.h"
#include "store/stats.h"
#include "store/store.h"
#include "store/text.h"
#include "store/waits.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(kv_stats);

/*
 * kv_stats() returns table (keyspace text, entries bigint,
 *		memory_used bigint, memory_limit bigint, hits bigint,
 *		misses bigint, writes bigint)
 *
 * One row per keyspace, then a total row whose keyspace is NULL; its
 * memory_used also counts the hash index and allocator fences that belong
 * to no keyspace, and only it carries memory_limit.  Keyspace names are
 * converted from the store's UTF-8 to the database encoding, with \xNN
 * escapes for what does not convert (store/text.c): a status view never
 * fails for it.
 */
Datum
kv_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	KvKeyspaceRef *refs;
	char		(*names)[NAMEDATALEN];
	int			n;
	uint64		tot_entries = 0,
				tot_hits = 0,
				tot_misses = 0,
				tot_writes = 0;
	Datum		values[7];
	bool		nulls[7];

	KvCheckAvailable();
	InitMaterializedSRF(fcinfo, 0);

	refs = palloc(sizeof(KvKeyspaceRef) * kvext_max_keyspaces);
	names = palloc(NAMEDATALEN * kvext_max_keyspaces);
	n = KvKeyspaceList(refs, names);

	for (int i = 0; i < n; i++)
	{
		uint16		ks = refs[i].id;
		uint64		hits = 0,
					misses = 0,
					writes = 0;
		uint64		entries = pg_atomic_read_u64(&KvKeyspaces[ks].nentries);

		KvStatsSum(ks, &hits, &misses, &writes);
		tot_entries += entries;
		tot_hits += hits;
		tot_misses += misses;
		tot_writes += writes;
		/* the total counts every keyspace; a row, only one the role may see */
		if (!KvAclCanList(names[i]))
			continue;

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(KvTextForDisplay(names[i], strlen(names[i])));
		values[1] = Int64GetDatum((int64) entries);
		values[2] = Int64GetDatum(Max(0, (int64) pg_atomic_read_u64(&KvKeyspaces[ks].mem_bytes) +
									  KvStatsMem(ks)));
		nulls[3] = true;
		values[4] = Int64GetDatum((int64) hits);
		values[5] = Int64GetDatum((int64) misses);
		values[6] = Int64GetDatum((int64) writes);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	memset(nulls, 0, sizeof(nulls));
	nulls[0] = true;
	values[1] = Int64GetDatum((int64) tot_entries);
	values[2] = Int64GetDatum((int64) KvStoreMemoryUsed());
	values[3] = Int64GetDatum((int64) KvStoreMemoryLimit());
	values[4] = Int64GetDatum((int64) tot_hits);
	values[5] = Int64GetDatum((int64) tot_misses);
	values[6] = Int64GetDatum((int64) tot_writes);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);

	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(kv_memory);

/*
 * kv_memory() returns record (memory_used bigint, memory_limit bigint,
 *		largest_free_block bigint, compactions bigint,
 *		failed_compactions bigint, moved_entries bigint, moved_bytes bigint,
 *		evacuated_entries bigint, evacuated_bytes bigint,
 *		longest_compaction_ms float8)
 *
 * The heap's state and the work compaction did since the server started
 * (store/compact.c).  memory_used is kv_stats()'s total.
 */
Datum
kv_memory(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[10];
	bool		nulls[10];
	KvAllocStats st;

	KvCheckAvailable();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	KvAllocGetStats(&st);
	memset(nulls, 0, sizeof(nulls));
	values[0] = Int64GetDatum((int64) KvStoreMemoryUsed());
	values[1] = Int64GetDatum((int64) KvStoreMemoryLimit());
	values[2] = Int64GetDatum((int64) st.largest_free);
	values[3] = Int64GetDatum((int64) st.compactions);
	values[4] = Int64GetDatum((int64) st.failed_compactions);
	values[5] = Int64GetDatum((int64) st.moved_blocks);
	values[6] = Int64GetDatum((int64) st.moved_bytes);
	values[7] = Int64GetDatum((int64) st.evacuated_blocks);
	values[8] = Int64GetDatum((int64) st.evacuated_bytes);
	values[9] = Float8GetDatum((double) st.longest_compaction_us / 1000.0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(kv_wal_status);

/*
 * kv_wal_status() returns record (state text, insert_lsn pg_lsn,
 *		flush_lsn pg_lsn, apply_lsn pg_lsn, term bigint, segments integer,
 *		snapshot_lsn pg_lsn, snapshot_time timestamptz, visible_lsn pg_lsn,
 *		flush_watermark pg_lsn, snapshot_failures integer,
 *		snapshot_error text, snapshot_error_time timestamptz,
 *		snapshot_retry_time timestamptz)
 *
 * Answers while recovery runs or after it failed (it does not wait), so it
 * is the way to see why the store is unavailable.  The snapshot failure
 * columns come from the checkpointer (KvCheckpointStatus): consecutive
 * failed snapshots since the last success, and while there are any, the
 * last one's message and time and when the checkpointer tries again on
 * its own; they are shown in every state.
 */
#define KV_WAL_STATUS_COLS	14

Datum
kv_wal_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[KV_WAL_STATUS_COLS];
	bool		nulls[KV_WAL_STATUS_COLS];
	const char *state;
	char		error[KVEXT_SNAPSHOT_ERROR_LEN];
	TimestampTz failed_at;
	TimestampTz retry_at;
	int			failures;

	if (!KvShmemAttached)
		KvReportNotPreloaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	memset(nulls, 0, sizeof(nulls));
	state = KvStateName();
	values[0] = CStringGetTextDatum(state);
	if (strcmp(state, "ready") == 0)
	{
		KvLsn		insert,
					flush,
					apply,
					redo;
		int			segments;
		TimestampTz time;
		KvControl	control;

		KvWalStatus(&insert, &flush, &apply, &segments);
		KvLastSnapshot(&redo, &time);
		values[1] = LSNGetDatum(insert);
		values[2] = LSNGetDatum(flush);
		values[3] = LSNGetDatum(apply);
		values[4] = Int64GetDatum((int64) KvWalCurrentTerm());
		values[5] = Int32GetDatum(segments);
		values[6] = LSNGetDatum(redo);
		nulls[6] = (redo == InvalidKvLsn);
		values[7] = TimestampTzGetDatum(time);
		nulls[7] = (time == 0);
		values[8] = LSNGetDatum(KvWalVisiblePos());
		KvControlGet(&control);
		values[9] = LSNGetDatum(control.flush_watermark);
	}
	else
	{
		for (int i = 1; i < 10; i++)
			nulls[i] = true;
	}

	failures = KvCheckpointStatus(error, &failed_at, &retry_at);
	values[10] = Int32GetDatum(failures);
	if (failures > 0)
	{
		values[11] = CStringGetTextDatum(error);
		values[12] = TimestampTzGetDatum(failed_at);
		values[13] = TimestampTzGetDatum(retry_at);
	}
	else
		nulls[11] = nulls[12] = nulls[13] = true;

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(kv_wal_stats);

/*
 * kv_wal_stats() returns record (records bigint, bytes bigint,
 *		buffers_full bigint, writes bigint, syncs bigint,
 *		segment_switches bigint, switches_inline bigint)
 *
 * kvext's log activity since the server started, as pg_stat_wal shows
 * PostgreSQL's.  buffers_full counts inserts that found the log buffers
 * (kvext.wal_buffers) full and wrote them themselves; the wal writer is
 * woken when they are half full, so this stays near zero unless
 * kvext.wal_buffers is too small for the write rate.  Answers in every
 * state, as kv_wal_status() does.
 */
#define KV_WAL_STATS_COLS	7

Datum
kv_wal_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[KV_WAL_STATS_COLS];
	bool		nulls[KV_WAL_STATS_COLS];
	KvWalStats	st;

	if (!KvShmemAttached)
		KvReportNotPreloaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	KvWalGetStats(&st);
	memset(nulls, 0, sizeof(nulls));
	values[0] = Int64GetDatum((int64) st.records);
	values[1] = Int64GetDatum((int64) st.bytes);
	values[2] = Int64GetDatum((int64) st.buffers_full);
	values[3] = Int64GetDatum((int64) st.writes);
	values[4] = Int64GetDatum((int64) st.syncs);
	values[5] = Int64GetDatum((int64) st.switches);
	values[6] = Int64GetDatum((int64) st.switches_inline);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(kv_checkpoint);

/*
 * kv_checkpoint() returns void: write a snapshot now and wait for it.
 */
Datum
kv_checkpoint(PG_FUNCTION_ARGS)
{
	KvCheckAvailable();
	KvRequestCheckpoint();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(kv_backup_start);

/*
 * kv_backup_start() returns void: hold snapshots and log removal while a
 * low-level file copy (between pg_backup_start and pg_backup_stop) copies
 * $PGDATA/kvext; held until kv_backup_stop() or the end of the session.
 * Flushes kvext's log first, so that the copy holds every commit
 * acknowledged before it returned, kvext.synchronous_commit = off included.
 */
Datum
kv_backup_start(PG_FUNCTION_ARGS)
{
	KvCheckAvailable();
	KvBackupStart();
	/* "off" commits acknowledged before now go into the copy too */
	KvWalFlushAll();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(kv_backup_stop);

/*
 * kv_backup_stop() returns void: give back this session's
 * kv_backup_start() hold.
 */
Datum
kv_backup_stop(PG_FUNCTION_ARGS)
{
	KvCheckAvailable();
	KvBackupStop();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(kv_locks);

/*
 * kv_locks() returns table (pid integer, keyspace text, key text,
 *		holder_pid integer, holder_xid xid, wait_start timestamptz)
 *
 * One row per writer waiting for the transaction that holds its key
 * (key NULL: waiting for a transaction that creates or drops the
 * keyspace).  Like pg_locks, callable by every role and showing every
 * wait; like a query in pg_stat_activity, the key itself is data, so it
 * is shown only to roles that have the privileges of the waiting
 * session's role or of pg_read_all_stats (superusers included), and is
 * NULL for others; so is the keyspace's name.  Keyspace names and keys
 * are converted from the store's UTF-8 to the database encoding, with \xNN
 * escapes for what does not convert (store/text.c), so that the view
 * never fails.
 * Never waits for recovery, and never blocks a writer (waits.c).
 */
Datum
kv_locks(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	KvWaitInfo *waits;
	int			n;
	bool		read_all;

	if (!KvShmemAttached)
		KvReportNotPreloaded();
	InitMaterializedSRF(fcinfo, 0);

	waits = palloc(sizeof(KvWaitInfo) * KvWaitsMax());
	n = KvWaitsList(waits, KvWaitsMax());
	read_all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);

	for (int i = 0; i < n; i++)
	{
		KvWaitInfo *w = &waits[i];
		Datum		values[6];
		bool		nulls[6];

		bool		visible = read_all || has_privs_of_role(GetUserId(), w->roleid);

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(w->pid);
		/* keyspace names are private too (README "Security") */
		if (visible)
			values[1] = CStringGetTextDatum(KvTextForDisplay(w->keyspace, strlen(w->keyspace)));
		else
			nulls[1] = true;
		if (w->has_key && visible)
			values[2] = CStringGetTextDatum(KvTextForDisplay(w->key, strlen(w->key)));
		else
			nulls[2] = true;
		values[3] = Int32GetDatum(w->holder_pid);
		nulls[3] = (w->holder_pid == 0);
		values[4] = TransactionIdGetDatum(w->holder_xid);
		nulls[4] = !TransactionIdIsValid(w->holder_xid);
		values[5] = TimestampTzGetDatum(w->since);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
