/*-------------------------------------------------------------------------
 *
 * scan.c
 *	  Scans of the whole hash store in bounded batches: kv_scan and
 *	  kv_scan_bytea (KvStoreScan) and snapshots (KvStoreScanCommitted).
 *
 * Design.  A scan walks the bucket array partition by partition.  Under the
 * partition's lock, in shared mode, it copies the entries it keeps from a
 * run of consecutive buckets into a batch buffer; it releases the lock and
 * only then hands each copy to its callback, which may do anything (write
 * a file, fill a tuplestore, raise an error); then it goes on at the next
 * bucket.  A batch ends at the end of the partition, after
 * SCAN_BATCH_BUCKETS buckets (so that sparse or filtered-out buckets do
 * not hold the lock long either), or before a bucket whose entries would
 * not fit in what is left of the buffer (SCAN_BATCH_BYTES).  A bucket is
 * never split across batches.  A bucket whose entries alone exceed the
 * buffer is copied alone, into an allocation of its own (MCXT_ALLOC_HUGE:
 * a value may be close to 1GB and a bucket may hold several), which is
 * freed as soon as it has been emitted.  So a scan needs the batch buffer
 * plus, at worst, one bucket's worth of memory, however large the store
 * and its partitions are, and a partition lock is held for one batch at a
 * time: a writer of that partition waits for at most one batch's copy
 * (about SCAN_BATCH_BYTES of memcpy), or one large bucket's.
 *
 * The size of a bucket is taken before copying it, as an upper bound that
 * cannot change while the shared lock is held: the entries a filter may
 * keep (ScanFilter.candidate: keyspace and prefix, or "committed", which
 * only change under the exclusive lock).  Which of them are kept
 * (ScanFilter.keep: visibility, which depends on owners that may start
 * committing at any moment) is decided once per entry, while copying.
 *
 * Consistency.  Every version of a key is in the chain of the key's bucket
 * (the bucket array never resizes, so keys never move), and a bucket is
 * copied under one lock hold.  So each key is seen as it was at one
 * instant, and different batches at different instants: kv_scan is read
 * committed per key, never a snapshot of the whole store.  A snapshot
 * needs no more than that (snapshot.c explains why).
 *
 * Locking.  At most one partition lock, shared, while copying one batch;
 * no callback runs while it is held.  The batch buffer is allocated before
 * the scan; only a bucket larger than the buffer allocates under the lock,
 * with MCXT_ALLOC_NO_OOM, and a failure is reported after the release.
 *
 * Memory.  Everything lives in a "kvext scan" context under the caller's
 * current context, deleted at the end (or with the caller's context after
 * an error).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/memutils.h"

#include "kvext.h"
#include "store/store.h"
#include "store/store_internal.h"

/* bytes copied per lock hold (a larger bucket is copied alone) */
#define SCAN_BATCH_BYTES		(1024 * 1024)
/* buckets visited per lock hold */
#define SCAN_BATCH_BUCKETS		1024

/* bytes an entry takes in a batch: header, key, value, aligned */
#define SCAN_COPY_SIZE(e) \
	MAXALIGN(KvEntryHeaderSize + (Size) (e)->keylen + (Size) (e)->vallen)

typedef struct ScanFilter
{
	/* may e be kept?  Must not change while the shared lock is held */
	bool		(*candidate) (void *arg, const KvEntry *e);
	/* is e (at p, in the chain starting at head) kept?  Decided once */
	bool		(*keep) (void *arg, KvPtr head, KvPtr p, const KvEntry *e);
	void	   *arg;
} ScanFilter;

/*
 * bucket_bound
 *		Upper bound of the bytes the entries of one bucket kept by filter
 *		take in a batch.  Caller holds the partition lock.
 */
static Size
bucket_bound(KvPtr head, const ScanFilter *filter)
{
	Size		bytes = 0;

	for (KvPtr p = head; p != InvalidKvPtr; p = KvEntryGet(p)->next)
	{
		KvEntry    *e = KvEntryGet(p);

		if (filter->candidate(filter->arg, e))
			bytes += SCAN_COPY_SIZE(e);
	}
	return bytes;
}

/*
 * copy_bucket
 *		Copy the entries of one bucket that filter keeps to dst, which has
 *		room for bucket_bound() bytes; returns the bytes used.  Caller holds
 *		the partition lock.
 */
static Size
copy_bucket(KvPtr head, const ScanFilter *filter, char *dst)
{
	Size		used = 0;

	for (KvPtr p = head; p != InvalidKvPtr; p = KvEntryGet(p)->next)
	{
		KvEntry    *e = KvEntryGet(p);
		Size		len = KvEntryHeaderSize + (Size) e->keylen + e->vallen;

		if (!filter->candidate(filter->arg, e) ||
			!filter->keep(filter->arg, head, p, e))
			continue;
		memcpy(dst + used, e, len);
		/* a copy's next is the original's address (store.h) */
		((KvEntry *) (dst + used))->next = p;
		/* zero the alignment padding: copies may end up in files */
		memset(dst + used + len, 0, SCAN_COPY_SIZE(e) - len);
		used += SCAN_COPY_SIZE(e);
	}
	return used;
}

/* emit every copy in buf[0 .. len) */
static void
emit_copies(const char *buf, Size len, KvSnapshotCallback emit, void *emit_arg)
{
	for (Size off = 0; off < len;)
	{
		const KvEntry *e = (const KvEntry *) (buf + off);

		emit(emit_arg, e);
		off += SCAN_COPY_SIZE(e);
	}
}

/*
 * scan_batches
 *		The walk shared by KvStoreScan and KvStoreScanCommitted (see the
 *		file header): the entries filter keeps are copied in batches under
 *		the partition's shared lock, then emit() runs on each copy with no
 *		lock held; emit(NULL) marks the end of each partition.  With ks
 *		given, the keyspace is validated at every lock acquisition.
 */
static void
scan_batches(const KvKeyspaceRef *ks, const ScanFilter *filter,
			 KvSnapshotCallback emit, void *emit_arg)
{
	MemoryContext scancxt;
	uint32		per_part = KvStoreNumBuckets() >> KVEXT_NUM_PARTITIONS_LOG2;
	char	   *buf;

	uint32		rebuild = KvStoreRebuildCount();

	scancxt = AllocSetContextCreate(CurrentMemoryContext, "kvext scan",
									ALLOCSET_DEFAULT_SIZES);
	buf = MemoryContextAlloc(scancxt, SCAN_BATCH_BYTES);

	for (uint32 part = 0; part < KVEXT_NUM_PARTITIONS; part++)
	{
		LWLock	   *lock = KvStorePartitionLock(part);
		uint32		b = part * per_part;
		uint32		end = (part + 1) * per_part;

		while (b < end)
		{
			Size		used = 0;
			char	   *big = NULL;
			Size		bigsize = 0;
			Size		biglen = 0;
			uint32		limit = Min(end, b + SCAN_BATCH_BUCKETS);

			CHECK_FOR_INTERRUPTS();
			LWLockAcquire(lock, LW_SHARED);
			/* a rebuild began, or ended, since the scan began */
			if (unlikely(KvStoreRebuildCount() != rebuild || (rebuild & 1) != 0))
			{
				LWLockRelease(lock);
				KvStoreReportRebuilding();
			}
			if (ks != NULL && unlikely(!KvKeyspaceIsValid(*ks)))
			{
				LWLockRelease(lock);
				KvStoreReportKeyspaceGone();
			}
			for (; b < limit; b++)
			{
				KvPtr		head = KvStoreBuckets[b];
				Size		bound;

				if (head == InvalidKvPtr)
					continue;
				bound = bucket_bound(head, filter);
				if (bound == 0)
					continue;
				if (used + bound <= SCAN_BATCH_BYTES)
				{
					used += copy_bucket(head, filter, buf + used);
					continue;
				}
				if (used > 0)
					break;		/* the next batch starts with this bucket */

				/* this bucket alone is larger than the buffer */
				big = MemoryContextAllocExtended(scancxt, bound,
												 MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
				if (big == NULL)
				{
					bigsize = bound;
					break;
				}
				biglen = copy_bucket(head, filter, big);
				b++;
				break;
			}
			LWLockRelease(lock);

			if (bigsize > 0)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("out of memory"),
						 errdetail("Failed on request of size %zu to copy the entries of one hash bucket.",
								   bigsize)));
			emit_copies(buf, used, emit, emit_arg);
			if (big != NULL)
			{
				emit_copies(big, biglen, emit, emit_arg);
				pfree(big);
			}
		}
		emit(emit_arg, NULL);
	}
	MemoryContextDelete(scancxt);
}

/*
 * entry_visible_in_chain
 *		Is entry e (at ep) the version of its key this transaction sees, and
 *		not a delete?  Used by scans; chain_pending says whether the chain
 *		has pending entries at all (if not, every committed entry is the
 *		only version of its key).  Caller holds the partition lock.
 */
static bool
entry_visible_in_chain(KvPtr head, KvPtr ep, const KvEntry *e, bool chain_pending)
{
	if (!chain_pending)
		return true;
	if ((e->flags & KVE_TOMBSTONE) || !KvStoreEntryIsVersion(e))
		return false;

	/* a newer version of the same key earlier in the chain hides e */
	for (KvPtr q = head; q != ep; q = KvEntryGet(q)->next)
	{
		KvEntry    *qe = KvEntryGet(q);

		if (KvStoreSameKey(qe, e) && KvStoreEntryIsVersion(qe))
			return false;
	}
	return true;
}

/* KvStoreScan's filter and emitter */
typedef struct ScanArgs
{
	uint16		ks;
	const char *prefix;
	uint32		prefixlen;
	KvScanCallback callback;
	void	   *arg;
} ScanArgs;

/* a key of the keyspace starting with the prefix, in any version */
static bool
scan_candidate_key(void *arg, const KvEntry *e)
{
	ScanArgs   *sa = (ScanArgs *) arg;

	return e->keyspace == sa->ks && e->keylen >= sa->prefixlen &&
		memcmp(KvEntryKey(e), sa->prefix, sa->prefixlen) == 0;
}

/* ... and the version of it this transaction sees */
static bool
scan_keep_visible(void *arg, KvPtr head, KvPtr p, const KvEntry *e)
{
	bool		chain_pending = false;

	for (KvPtr q = head; q != InvalidKvPtr && !chain_pending; q = KvEntryGet(q)->next)
		chain_pending = (KvEntryGet(q)->flags & KVE_PENDING) != 0;
	return entry_visible_in_chain(head, p, e, chain_pending);
}

static void
scan_emit_visible(void *arg, const KvEntry *e)
{
	ScanArgs   *sa = (ScanArgs *) arg;

	if (e != NULL)
		sa->callback(sa->arg, KvEntryKey(e), e->keylen, KvEntryValue(e),
					 e->vallen, (e->flags & KVE_BINARY) != 0);
}

/*
 * KvStoreScan
 *		Call callback for every key of keyspace ks that starts with prefix,
 *		as this transaction sees it, in batches (see the file header): each
 *		key as of one instant, read committed per key.  Order is
 *		unspecified.  The callback runs with no lock held and may raise an
 *		error.
 */
void
KvStoreScan(KvKeyspaceRef ks, const char *prefix, uint32 prefixlen,
			KvScanCallback callback, void *arg)
{
	ScanArgs	sa;
	ScanFilter	filter;

	sa.ks = ks.id;
	sa.prefix = prefix;
	sa.prefixlen = prefixlen;
	sa.callback = callback;
	sa.arg = arg;
	filter.candidate = scan_candidate_key;
	filter.keep = scan_keep_visible;
	filter.arg = &sa;
	scan_batches(&ks, &filter, scan_emit_visible, &sa);
}

/* committed entries: the flag only changes under the exclusive lock */
static bool
scan_candidate_committed(void *arg, const KvEntry *e)
{
	return !(e->flags & KVE_PENDING);
}

static bool
scan_keep_all(void *arg, KvPtr head, KvPtr p, const KvEntry *e)
{
	return true;
}

/*
 * KvStoreScanCommitted
 *		Call callback for every committed entry of every keyspace, in
 *		batches (see the file header); callback(NULL) ends each partition.
 *		For snapshots.  The callback runs with no lock held and gets a
 *		copy, valid until it returns.
 */
void
KvStoreScanCommitted(KvSnapshotCallback callback, void *arg)
{
	ScanFilter	filter;

	filter.candidate = scan_candidate_committed;
	filter.keep = scan_keep_all;
	filter.arg = NULL;
	scan_batches(NULL, &filter, callback, arg);
}
