/*-------------------------------------------------------------------------
 *
 * monitor.c
 *	  Activity counters and kv_stats().
 *
 * Counters (hits, misses, writes) are kept per backend and per keyspace in
 * a shared array indexed by PGPROC number: each backend writes only its own
 * row, with plain stores, so counting costs no locked instruction and no
 * shared cache line on the read path.  kv_stats() sums all rows.  Rows are
 * not cleared when a backend exits: the totals are cumulative since server
 * start (or since the keyspace was created), like pg_stat_database.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"

#include "checkpoint.h"
#include "kvext.h"
#include "monitor.h"
#include "recovery.h"
#include "store.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"
#include "wal.h"

KvCounters *KvMyCounters = NULL;
static KvCounters *all_counters = NULL;
static int	counter_rows = 0;

static int
total_procs(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

/*
 * KvStatsShmemSize
 *		One row of counters per PGPROC, one counter set per keyspace.
 */
Size
KvStatsShmemSize(void)
{
	return mul_size(mul_size(total_procs(), kvext_max_keyspaces),
					sizeof(KvCounters));
}

/*
 * KvStatsShmemInit
 *		Create or attach the counters; caller holds AddinShmemInitLock.
 */
void
KvStatsShmemInit(void)
{
	bool		found;

	counter_rows = total_procs();
	all_counters = ShmemInitStruct("kvext counters", KvStatsShmemSize(), &found);
	if (!found)
	{
		Size		n = (Size) counter_rows * kvext_max_keyspaces;

		for (Size i = 0; i < n; i++)
		{
			pg_atomic_init_u64(&all_counters[i].hits, 0);
			pg_atomic_init_u64(&all_counters[i].misses, 0);
			pg_atomic_init_u64(&all_counters[i].writes, 0);
		}
	}
}

/*
 * KvStatsAttachBackend
 *		Point KvMyCounters at this backend's row.
 */
void
KvStatsAttachBackend(void)
{
	if (MyProc == NULL || MyProc->pgprocno >= counter_rows)
		elog(ERROR, "kvext: backend has no PGPROC slot for counters");
	KvMyCounters = &all_counters[(Size) MyProc->pgprocno * kvext_max_keyspaces];
}

/*
 * KvStatsResetKeyspace
 *		Zero every backend's counters of a (new) keyspace.  A racing
 *		increment from a backend still using the old keyspace may survive;
 *		counters are statistics, not accounting.
 */
void
KvStatsResetKeyspace(uint16 ks)
{
	for (int r = 0; r < counter_rows; r++)
	{
		KvCounters *c = &all_counters[(Size) r * kvext_max_keyspaces + ks];

		pg_atomic_write_u64(&c->hits, 0);
		pg_atomic_write_u64(&c->misses, 0);
		pg_atomic_write_u64(&c->writes, 0);
	}
}

PG_FUNCTION_INFO_V1(kv_stats);

/*
 * kv_stats() returns table (keyspace text, entries bigint,
 *		memory_used bigint, memory_limit bigint, hits bigint,
 *		misses bigint, writes bigint)
 *
 * One row per keyspace, then a total row whose keyspace is NULL; its
 * memory_used also counts the hash index and allocator fences that belong
 * to no keyspace, and only it carries memory_limit.
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

		for (int r = 0; r < counter_rows; r++)
		{
			KvCounters *c = &all_counters[(Size) r * kvext_max_keyspaces + ks];

			hits += pg_atomic_read_u64(&c->hits);
			misses += pg_atomic_read_u64(&c->misses);
			writes += pg_atomic_read_u64(&c->writes);
		}
		tot_entries += entries;
		tot_hits += hits;
		tot_misses += misses;
		tot_writes += writes;

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(names[i]);
		values[1] = Int64GetDatum((int64) entries);
		values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&KvKeyspaces[ks].mem_bytes));
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

PG_FUNCTION_INFO_V1(kv_wal_status);

/*
 * kv_wal_status() returns record (state text, insert_lsn pg_lsn,
 *		flush_lsn pg_lsn, apply_lsn pg_lsn, term bigint, segments integer,
 *		snapshot_lsn pg_lsn, snapshot_time timestamptz)
 *
 * Answers while recovery runs or after it failed (it does not wait), so it
 * is the way to see why the store is unavailable.
 */
Datum
kv_wal_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8];
	const char *state;

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
	}
	else
	{
		for (int i = 1; i < 8; i++)
			nulls[i] = true;
	}
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
