/*-------------------------------------------------------------------------
 *
 * store_internal.h
 *	  What store.c shares with the other files of the hash store itself
 *	  (scan.c): the bucket array, the partition locks, and the visibility
 *	  tests.  Not for use outside src/store/.
 *
 * Locking: the bucket array and every entry reachable from a bucket are
 * protected by the bucket's partition lock (store.c's file header); the
 * callers of these functions hold it.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_STORE_INTERNAL_H
#define KVEXT_STORE_INTERNAL_H

#include "store/store.h"

/* the bucket array: the head of each bucket's chain */
extern PGDLLIMPORT KvPtr *KvStoreBuckets;

extern uint32 KvStoreNumBuckets(void);
extern LWLock *KvStorePartitionLock(uint32 part);
extern bool KvStoreEntryIsVersion(const KvEntry *e);
extern bool KvStoreSameKey(const KvEntry *a, const KvEntry *b);
extern void KvStoreReportKeyspaceGone(void) pg_attribute_noreturn();

/* owner slots, for park.c: committing word and its waiters */
#define KV_SLOT_PARKED		(UINT64CONST(1) << 63)
extern pg_atomic_uint64 *KvStoreSlotCommitting(int s);
extern void KvStoreSlotWake(int s);

#endif							/* KVEXT_STORE_INTERNAL_H */
