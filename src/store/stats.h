/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Per-backend activity counters behind kv_stats().
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_STATS_H
#define KVEXT_STATS_H

#include "port/atomics.h"

typedef struct KvCounters
{
	pg_atomic_uint64 hits;
	pg_atomic_uint64 misses;
	pg_atomic_uint64 writes;
	pg_atomic_uint64 mem;		/* heap bytes of entries this backend
								 * allocated minus those it freed (an int64
								 * in two's complement): kv_stats() sums
								 * them (KvStatsMem) */
} KvCounters;

/* this backend's row of counters, one KvCounters per keyspace */
extern PGDLLIMPORT KvCounters *KvMyCounters;

extern Size KvStatsShmemSize(void);
extern void KvStatsShmemInit(void);
extern void KvStatsAttachBackend(void);
extern void KvStatsResetKeyspace(uint16 ks);
extern void KvStatsSum(uint16 ks, uint64 *hits, uint64 *misses, uint64 *writes);
extern int64 KvStatsMem(uint16 ks);
extern void KvStatsResetMem(uint16 ks);

/*
 * Counters are written only by their own backend, so a plain read and
 * write (no locked instruction) is enough; readers sum all backends.
 */
static inline void
KvCount(pg_atomic_uint64 *c)
{
	pg_atomic_write_u64(c, pg_atomic_read_u64(c) + 1);
}

#define KvCountHit(ks)		KvCount(&KvMyCounters[(ks)].hits)
#define KvCountMiss(ks)		KvCount(&KvMyCounters[(ks)].misses)
#define KvCountWrite(ks)	KvCount(&KvMyCounters[(ks)].writes)

/* this backend allocated (delta > 0) or freed heap bytes of keyspace ks */
static inline void
KvCountMem(uint16 ks, int64 delta)
{
	pg_atomic_uint64 *c = &KvMyCounters[ks].mem;

	pg_atomic_write_u64(c, pg_atomic_read_u64(c) + (uint64) delta);
}

#endif							/* KVEXT_STATS_H */
