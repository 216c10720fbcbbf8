/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Activity counters: hits, misses and writes per backend and keyspace.
 *
 * Counters are kept per backend and per keyspace in a shared array indexed
 * by PGPROC number: each backend writes only its own row, with plain
 * stores, so counting costs no locked instruction and no shared cache line
 * on the read path.  kv_stats() (api/monitor.c) sums all rows with
 * KvStatsSum.  Rows are not cleared when a backend exits: the totals are
 * cumulative since server start (or since the keyspace was created), like
 * pg_stat_database.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "kvext.h"
#include "store/stats.h"

KvCounters *KvMyCounters = NULL;
static KvCounters *all_counters = NULL;
static int	counter_rows = 0;


/*
 * KvStatsShmemSize
 *		One row of counters per PGPROC, one counter set per keyspace.
 */
Size
KvStatsShmemSize(void)
{
	return mul_size(mul_size(KvProcSlots(), kvext_max_keyspaces),
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

	counter_rows = KvProcSlots();
	all_counters = ShmemInitStruct("kvext counters", KvStatsShmemSize(), &found);
	if (!found)
	{
		Size		n = (Size) counter_rows * kvext_max_keyspaces;

		for (Size i = 0; i < n; i++)
		{
			pg_atomic_init_u64(&all_counters[i].hits, 0);
			pg_atomic_init_u64(&all_counters[i].misses, 0);
			pg_atomic_init_u64(&all_counters[i].writes, 0);
			pg_atomic_init_u64(&all_counters[i].mem, 0);
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
		pg_atomic_write_u64(&c->mem, 0);
	}
}

/*
 * KvStatsMem
 *		Heap bytes of keyspace ks's entries counted in the backends' rows
 *		(store.c adds what processes without a row counted).  A free is
 *		often counted by another backend than its allocation, so one row
 *		may be negative; the sum is exact once no write is under way.
 */
int64
KvStatsMem(uint16 ks)
{
	int64		mem = 0;

	for (int r = 0; r < counter_rows; r++)
		mem += (int64) pg_atomic_read_u64(&all_counters[(Size) r * kvext_max_keyspaces + ks].mem);
	return mem;
}

/*
 * KvStatsResetMem
 *		Zero every backend's memory count of keyspace ks, whose entries are
 *		all gone (dropped, or the store is being rebuilt).
 */
void
KvStatsResetMem(uint16 ks)
{
	for (int r = 0; r < counter_rows; r++)
		pg_atomic_write_u64(&all_counters[(Size) r * kvext_max_keyspaces + ks].mem, 0);
}

/*
 * KvStatsSum
 *		Totals of keyspace ks over every backend.
 */
void
KvStatsSum(uint16 ks, uint64 *hits, uint64 *misses, uint64 *writes)
{
	*hits = *misses = *writes = 0;
	for (int r = 0; r < counter_rows; r++)
	{
		KvCounters *c = &all_counters[(Size) r * kvext_max_keyspaces + ks];

		*hits += pg_atomic_read_u64(&c->hits);
		*misses += pg_atomic_read_u64(&c->misses);
		*writes += pg_atomic_read_u64(&c->writes);
	}
}
