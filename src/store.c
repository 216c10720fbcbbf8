/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The shared hash store: a chained hash table of variable-length
 *	  entries in kvext's shared memory region, with partitioned locking and
 *	  per-key write locks that are transaction ids, as on heap rows.
 *
 * Memory layout.  One region of kvext.memory_limit bytes holds, in order,
 * the bucket array (one 4-byte KvPtr per bucket) and the heap managed by
 * alloc.c.  The bucket count is fixed at startup: the largest power of two
 * not above memory_limit / 256, so the array costs 1/64 of the limit and
 * the load factor stays small even when the heap is full of tiny entries
 * (it never needs a stop-the-world resize).  Entries (KvEntry, store.h)
 * carry a 28-byte header plus the key and value bytes; with the allocator's
 * 8-byte block header and 8-byte rounding an entry costs 36-43 bytes over
 * key + value, plus its share of the bucket array.
 *
 * Locking.  Buckets are split into KVEXT_NUM_PARTITIONS contiguous ranges,
 * each protected by one LWLock (the bucket's partition is its index's high
 * bits, so a partition's buckets are adjacent for scans).  Readers take
 * their partition's lock in shared mode, so readers never block readers;
 * writers take it exclusively for the short time needed to link or unlink
 * one entry.  The allocator lock nests inside a partition lock.  At most
 * one partition lock is held at a time.  Full lock order:
 *		partition lock -> allocator lock
 *		keyspace lock (alone; never held while taking another)
 *		a transaction's xid lock (heavyweight) is only waited for with no
 *		LWLock held.
 *
 * Versions and visibility.  A key has at most one committed entry and, on
 * top of it, pending entries (KVE_PENDING) of at most one transaction: the
 * versions written by its subtransaction levels, newest first.  New pending
 * entries are linked at the head of the chain and committed entries are
 * made from pending ones in place, so for any key every pending entry
 * precedes the committed one in its chain.  Hence:
 *	- a reader takes the first matching entry that is committed, a pending
 *	  entry of its own transaction (TransactionIdIsCurrentTransactionId), or
 *	  a pending entry of a transaction pg_xact already says committed
 *	  (its commit callback is converting entries one by one; treating them
 *	  as committed from the moment PostgreSQL marks the transaction
 *	  committed makes the whole commit appear at once).  It skips other
 *	  transactions' uncommitted entries: read committed plus
 *	  read-your-own-writes, without waiting;
 *	- a writer that finds another transaction's pending entry releases the
 *	  partition lock, waits on that transaction with XactLockTableWait()
 *	  (deadlock detection, lock_timeout and pg_locks come with it), then
 *	  starts over and works on the newly committed value.  So kv_incr and
 *	  kv_cas are atomic, and no lock-manager entry is used per key.
 *
 * A pending entry is written in full (key and new value) at write time, so
 * the memory limit is enforced when the statement runs, and commit never
 * allocates: at commit (txn.c) each pending entry replaces the committed
 * one, at abort it is unlinked and freed.  Neither can fail.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/pg_bitutils.h"
#include "storage/lmgr.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "kvext.h"
#include "monitor.h"
#include "store.h"
#include "txn.h"

typedef struct KvStoreControl
{
	uint32		nbuckets;
	uint32		part_shift;		/* partition = bucket >> part_shift */
	Size		region_bytes;	/* = kvext.memory_limit */
	Size		bucket_bytes;	/* bucket array, rounded to KV_UNIT */
} KvStoreControl;

static KvStoreControl *sctl = NULL;
static KvPtr *buckets = NULL;
static LWLockPadded *kv_locks = NULL;

#define BUCKET_OF(hash)		((hash) & (sctl->nbuckets - 1))
#define PART_OF(bucket)		((bucket) >> sctl->part_shift)
#define PART_LOCK(part)		(&kv_locks[(part)].lock)

static Size
region_bytes(void)
{
	return (Size) kvext_memory_limit * 1024;
}

static uint32
bucket_count(Size region)
{
	uint64		n = pg_prevpower2_64(Max(region / 256, 1));

	return (uint32) Max(n, 1024);
}

/*
 * KvStoreShmemSize
 *		Shared memory for the store: control blocks plus the region.
 */
Size
KvStoreShmemSize(void)
{
	Size		size = MAXALIGN(sizeof(KvStoreControl));

	size = add_size(size, KvAllocControlSize());
	size = add_size(size, KV_UNIT);
	size = add_size(size, region_bytes());
	return size;
}

/*
 * KvStoreShmemInit
 *		Create or attach the store; the caller holds AddinShmemInitLock.
 */
void
KvStoreShmemInit(LWLockPadded *locks)
{
	bool		found;
	char	   *p;
	Size		region = region_bytes();

	p = ShmemInitStruct("kvext store", KvStoreShmemSize(), &found);
	sctl = (KvStoreControl *) p;
	p += MAXALIGN(sizeof(KvStoreControl));
	kv_locks = locks;

	KvBase = (char *) TYPEALIGN(KV_UNIT, p + KvAllocControlSize());
	buckets = (KvPtr *) KvBase;

	if (!found)
	{
		uint32		nb = bucket_count(region);

		sctl->nbuckets = nb;
		sctl->part_shift = pg_leftmost_one_pos32(nb) - KVEXT_NUM_PARTITIONS_LOG2;
		sctl->region_bytes = region;
		sctl->bucket_bytes = TYPEALIGN(KV_UNIT, (Size) nb * sizeof(KvPtr));
		memset(buckets, 0, sctl->bucket_bytes);
	}
	KvAllocInit(p, &locks[KVEXT_ALLOC_LOCK_INDEX].lock,
				(KvPtr) (sctl->bucket_bytes / KV_UNIT),
				sctl->region_bytes - sctl->bucket_bytes, found);
}

static inline uint32
kv_hash(uint16 ks, const char *key, uint32 keylen)
{
	return hash_combine((uint32) ks,
						hash_bytes((const unsigned char *) key, (int) keylen));
}

static inline bool
entry_matches(const KvEntry *e, uint32 hash, uint16 ks,
			  const char *key, uint32 keylen)
{
	return e->hash == hash && e->keyspace == ks && e->keylen == keylen &&
		memcmp(KvEntryKey(e), key, keylen) == 0;
}

static inline bool
same_key(const KvEntry *a, const KvEntry *b)
{
	return entry_matches(a, b->hash, b->keyspace, KvEntryKey(b), b->keylen);
}

/*
 * KvKeyExcerpt
 *		A key for an error message: at most 64 bytes, cut at a character
 *		boundary so the message converts to the client's encoding.  Keys
 *		are text, valid in the database encoding.  palloc'd.
 */
char *
KvKeyExcerpt(const char *key, uint32 keylen)
{
	return pnstrdup(key, pg_mbcliplen(key, (int) keylen, 64));
}

static void
report_keyspace_gone(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("keyspace was dropped by a concurrent session")));
}

static void
report_store_full(Size request)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("kvext store is full"),
			 errdetail("A write of %zu bytes does not fit in kvext.memory_limit (%llu of %llu bytes in use).",
					   request,
					   (unsigned long long) KvStoreMemoryUsed(),
					   (unsigned long long) KvStoreMemoryLimit()),
			 errhint("Delete keys, drop keyspaces, or raise kvext.memory_limit and restart the server.")));
}

/* charge or credit a keyspace for an entry's heap block */
static inline void
account_mem(uint16 ks, KvPtr p, bool add)
{
	uint64		bytes = KvAllocBlockSize(p);

	if (add)
		pg_atomic_fetch_add_u64(&KvKeyspaces[ks].mem_bytes, bytes);
	else
		pg_atomic_fetch_sub_u64(&KvKeyspaces[ks].mem_bytes, bytes);
}

/*
 * entry_is_version
 *		Would this transaction take entry e as the current version of its
 *		key?  Committed entries, its own pending entries, and pending entries
 *		of a transaction that has committed (pg_xact says so) but whose
 *		commit callback has not yet made them committed entries.  The last
 *		case is what makes a commit visible all at once: PostgreSQL marks the
 *		whole transaction tree committed in one step, while the callback
 *		converts entries one by one.  The pg_xact lookup only happens for
 *		other transactions' pending entries.
 */
static inline bool
entry_is_version(const KvEntry *e)
{
	if (!(e->flags & KVE_PENDING))
		return true;
	return TransactionIdIsCurrentTransactionId(e->xid) ||
		TransactionIdDidCommit(e->xid);
}

/*
 * find_visible
 *		The entry of (ks, key) this transaction sees, or NULL.  The caller
 *		holds the partition lock in any mode.  The versions of a key are in
 *		chain order newest first, so the first one that counts wins.
 */
static KvEntry *
find_visible(uint32 bucket, uint32 hash, uint16 ks,
			 const char *key, uint32 keylen)
{
	KvPtr		p = buckets[bucket];

	while (p != InvalidKvPtr)
	{
		KvEntry    *e = KvEntryGet(p);

		if (entry_matches(e, hash, ks, key, keylen) && entry_is_version(e))
			return (e->flags & KVE_TOMBSTONE) ? NULL : e;
		p = e->next;
	}
	return NULL;
}

/*
 * KvStoreGet
 *		Look up a key.  Returns whether it exists for this transaction and,
 *		unless mode is KV_READ_EXISTS, a palloc'd copy of its value as a
 *		text or bytea varlena in *result.  Takes the partition lock in
 *		shared mode only.
 */
bool
KvStoreGet(KvKeyspaceRef ks, const char *key, uint32 keylen,
		   KvReadMode mode, struct varlena **result)
{
	uint32		hash = kv_hash(ks.id, key, keylen);
	uint32		bucket = BUCKET_OF(hash);
	LWLock	   *lock = PART_LOCK(PART_OF(bucket));
	KvEntry    *e;
	struct varlena *v;

	LWLockAcquire(lock, LW_SHARED);
	if (unlikely(!KvKeyspaceIsValid(ks)))
	{
		LWLockRelease(lock);
		report_keyspace_gone();
	}

	e = find_visible(bucket, hash, ks.id, key, keylen);
	if (e == NULL)
	{
		LWLockRelease(lock);
		KvCountMiss(ks.id);
		return false;
	}
	if (mode == KV_READ_EXISTS)
	{
		LWLockRelease(lock);
		KvCountHit(ks.id);
		return true;
	}
	if (mode == KV_READ_TEXT && (e->flags & KVE_BINARY) &&
		!pg_verifymbstr(KvEntryValue(e), (int) e->vallen, true))
	{
		LWLockRelease(lock);
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("value of key \"%s\" is not valid text in encoding \"%s\"",
						KvKeyExcerpt(key, keylen), GetDatabaseEncodingName()),
				 errhint("The value was written as bytea; read it with kv_get_bytea().")));
	}

	v = (struct varlena *) palloc(VARHDRSZ + e->vallen);
	SET_VARSIZE(v, VARHDRSZ + e->vallen);
	memcpy(VARDATA(v), KvEntryValue(e), e->vallen);
	LWLockRelease(lock);

	KvCountHit(ks.id);
	*result = v;
	return true;
}

/*
 * parse_int64
 *		Strict base-10 parse of a stored value: optional sign, digits, nothing
 *		else.  Returns 0 on success, 1 if not an integer, 2 if out of range.
 */
static int
parse_int64(const char *s, uint32 len, int64 *out)
{
	uint32		i = 0;
	bool		neg = false;
	bool		overflow = false;
	uint64		acc = 0;

	if (len > 0 && (s[0] == '-' || s[0] == '+'))
	{
		neg = (s[0] == '-');
		i = 1;
	}
	if (i == len)
		return 1;
	for (; i < len; i++)
	{
		unsigned	d = (unsigned char) s[i] - '0';

		if (d > 9)
			return 1;
		if (acc > (PG_UINT64_MAX - d) / 10)
			overflow = true;
		else
			acc = acc * 10 + d;
	}
	if (overflow)
		return 2;
	if (neg)
	{
		if (acc > (uint64) PG_INT64_MAX + 1)
			return 2;
		*out = (acc == (uint64) PG_INT64_MAX + 1) ? PG_INT64_MIN : -(int64) acc;
	}
	else
	{
		if (acc > (uint64) PG_INT64_MAX)
			return 2;
		*out = (int64) acc;
	}
	return 0;
}

/*
 * KvStoreWrite
 *		The one write path: put, delete, increment or compare-and-set one
 *		key in the current (sub)transaction.
 *
 * Assigns the transaction an xid, locks the key (waiting for another
 * transaction that holds it), computes the new value from the one visible
 * to this transaction, and links a pending entry that records it.  Errors
 * (store full, non-integer value, overflow) are raised before anything in
 * shared memory changes.  Results go to the fields of *w.
 */
void
KvStoreWrite(KvKeyspaceRef ks, const char *key, uint32 keylen, KvWrite *w)
{
	TransactionId myxid;
	TransactionId waited = InvalidTransactionId;
	uint32		hash = kv_hash(ks.id, key, keylen);
	uint32		bucket = BUCKET_OF(hash);
	LWLock	   *lock = PART_LOCK(PART_OF(bucket));
	KvPtr	   *plink;
	KvEntry    *pend;
	KvEntry    *comm;
	KvEntry    *visible;
	const char *newval = NULL;
	uint32		newlen = 0;
	bool		tombstone = false;
	char		numbuf[MAXINT8LEN + 1];
	Size		size;
	KvPtr		np;
	KvEntry    *n;

	/* things that may fail come before any lock */
	myxid = GetCurrentTransactionId();
	KvTxnReserve();

	for (;;)
	{
		KvPtr	   *link = &buckets[bucket];

		plink = NULL;
		pend = comm = NULL;

		LWLockAcquire(lock, LW_EXCLUSIVE);
		if (unlikely(!KvKeyspaceIsValid(ks)))
		{
			LWLockRelease(lock);
			report_keyspace_gone();
		}

		while (*link != InvalidKvPtr)
		{
			KvEntry    *e = KvEntryGet(*link);

			if (entry_matches(e, hash, ks.id, key, keylen))
			{
				if (!(e->flags & KVE_PENDING))
				{
					comm = e;
					break;
				}
				if (pend == NULL)
				{
					pend = e;
					plink = link;
				}
			}
			link = &e->next;
		}

		if (pend == NULL || TransactionIdIsCurrentTransactionId(pend->xid))
			break;				/* the key is ours */

		/* another transaction holds the key */
		if (TransactionIdEquals(pend->xid, waited))
		{
			/*
			 * We already waited for this transaction to end, yet its entry
			 * is still here: its backend exited without cleaning up.  The
			 * entry can never commit; remove it.
			 */
			KvPtr		stale = *plink;

			*plink = pend->next;
			account_mem(ks.id, stale, false);
			KvFree(stale);
			LWLockRelease(lock);
			elog(WARNING, "kvext removed an orphaned uncommitted write of transaction %u",
				 waited);
			continue;
		}
		waited = pend->xid;
		LWLockRelease(lock);
		XactLockTableWait(waited, NULL, NULL, XLTW_None);
	}

	visible = pend ? ((pend->flags & KVE_TOMBSTONE) ? NULL : pend) : comm;

	switch (w->op)
	{
		case KV_OP_PUT:
			newval = w->value;
			newlen = w->vallen;
			break;

		case KV_OP_DELETE:
			w->existed = (visible != NULL);
			if (!w->existed)
			{
				LWLockRelease(lock);
				return;
			}
			tombstone = true;
			break;

		case KV_OP_INCR:
			{
				int64		cur = 0;
				int			rc = 0;

				if (visible)
					rc = parse_int64(KvEntryValue(visible), visible->vallen, &cur);
				if (rc != 0)
				{
					LWLockRelease(lock);
					if (rc == 1)
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
								 errmsg("value of key \"%s\" is not an integer",
										KvKeyExcerpt(key, keylen)),
								 errhint("kv_incr() works on values that are base-10 integers, such as those it writes.")));
					ereport(ERROR,
							(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
							 errmsg("value of key \"%s\" is out of range for type bigint",
									KvKeyExcerpt(key, keylen))));
				}
				if (pg_add_s64_overflow(cur, w->delta, &w->result))
				{
					LWLockRelease(lock);
					ereport(ERROR,
							(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
							 errmsg("kv_incr() result is out of range for type bigint"),
							 errdetail("Key \"%s\" holds " INT64_FORMAT "; adding " INT64_FORMAT " overflows.",
									   KvKeyExcerpt(key, keylen), cur, w->delta)));
				}
				newlen = (uint32) pg_lltoa(w->result, numbuf);
				newval = numbuf;
			}
			break;

		case KV_OP_CAS:
			if (w->expected == NULL)
				w->swapped = (visible == NULL);
			else
				w->swapped = (visible != NULL &&
							  visible->vallen == w->expectedlen &&
							  memcmp(KvEntryValue(visible), w->expected,
									 w->expectedlen) == 0);
			if (!w->swapped)
			{
				LWLockRelease(lock);
				return;
			}
			if (w->value == NULL)
			{
				/*
				 * kv_cas(key, old, NULL) deletes.  kv_cas(key, NULL, NULL)
				 * on a missing key deletes nothing, but still takes the
				 * key's lock with a tombstone, so that "does not exist"
				 * holds until this transaction ends.
				 */
				tombstone = true;
			}
			else
			{
				newval = w->value;
				newlen = w->vallen;
			}
			break;
	}

	size = KvEntryHeaderSize + keylen + (tombstone ? 0 : newlen);
	/* deletes may dip into the reserve, so a full store can be emptied */
	np = KvAlloc(size, tombstone);
	if (np == InvalidKvPtr)
	{
		LWLockRelease(lock);
		report_store_full(size);
	}

	n = KvEntryGet(np);
	n->hash = hash;
	n->xid = myxid;
	n->keylen = keylen;
	n->vallen = tombstone ? 0 : newlen;
	n->keyspace = ks.id;
	n->flags = KVE_PENDING;
	if (tombstone)
		n->flags |= KVE_TOMBSTONE;
	else if (w->binary && w->op != KV_OP_INCR)
		n->flags |= KVE_BINARY;
	memcpy(KvEntryKey(n), key, keylen);
	if (newlen > 0 && !tombstone)
		memcpy(KvEntryValue(n), newval, newlen);
	account_mem(ks.id, np, true);

	if (pend != NULL &&
		KvTxnItemLevel(pend->wsidx) == GetCurrentTransactionNestLevel())
	{
		/*
		 * Rewrite at the same subtransaction level (possibly of a version
		 * a released subtransaction wrote): replace in place.
		 */
		KvPtr		old = *plink;

		n->next = pend->next;
		n->wsidx = pend->wsidx;
		*plink = np;
		KvTxnReplace(n->wsidx, np, !tombstone);
		account_mem(ks.id, old, false);
		KvFree(old);
	}
	else
	{
		/* first write at this level: stack a new version on top */
		n->next = buckets[bucket];
		buckets[bucket] = np;
		n->wsidx = KvTxnPush(np, ks.id, visible != NULL, !tombstone);
	}
	LWLockRelease(lock);

	KvCountWrite(ks.id);
}

/*
 * KvStoreOlderOwnVersion
 *		The next older pending entry of this transaction for the same key as
 *		its pending entry p, or InvalidKvPtr.
 */
KvPtr
KvStoreOlderOwnVersion(KvPtr p)
{
	KvEntry    *e = KvEntryGet(p);
	uint32		bucket = BUCKET_OF(e->hash);
	LWLock	   *lock = PART_LOCK(PART_OF(bucket));
	KvPtr		result = InvalidKvPtr;

	LWLockAcquire(lock, LW_SHARED);
	for (KvPtr q = e->next; q != InvalidKvPtr; q = KvEntryGet(q)->next)
	{
		KvEntry    *qe = KvEntryGet(q);

		if (!same_key(qe, e))
			continue;
		if ((qe->flags & KVE_PENDING) &&
			TransactionIdIsCurrentTransactionId(qe->xid))
			result = q;
		break;
	}
	LWLockRelease(lock);
	return result;
}

/* unlink p from its chain; caller holds the partition lock exclusively */
static void
unlink_entry(uint32 bucket, KvPtr p)
{
	KvPtr	   *link = &buckets[bucket];

	while (*link != p)
	{
		Assert(*link != InvalidKvPtr);
		link = &KvEntryGet(*link)->next;
	}
	*link = KvEntryGet(p)->next;
}

/*
 * KvStoreCommitEntry
 *		Make one pending entry of the committing transaction the committed
 *		version of its key (or, for a delete, remove the key).  Called from
 *		the commit callback, in write order; never fails.
 */
void
KvStoreCommitEntry(KvPtr p)
{
	KvEntry    *e = KvEntryGet(p);
	uint32		bucket = BUCKET_OF(e->hash);
	LWLock	   *lock = PART_LOCK(PART_OF(bucket));
	KvPtr	   *link;
	uint16		ks = e->keyspace;

	Assert(e->flags & KVE_PENDING);

	LWLockAcquire(lock, LW_EXCLUSIVE);

	/* remove the committed version, if any */
	for (link = &buckets[bucket]; *link != InvalidKvPtr;
		 link = &KvEntryGet(*link)->next)
	{
		KvEntry    *c = KvEntryGet(*link);

		if (*link != p && !(c->flags & KVE_PENDING) && same_key(c, e))
		{
			KvPtr		cp = *link;

			*link = c->next;
			account_mem(ks, cp, false);
			pg_atomic_fetch_sub_u64(&KvKeyspaces[ks].nentries, 1);
			KvFree(cp);
			break;
		}
	}

	if (e->flags & KVE_TOMBSTONE)
	{
		unlink_entry(bucket, p);
		account_mem(ks, p, false);
		KvFree(p);
	}
	else
	{
		e->flags &= ~KVE_PENDING;
		e->xid = InvalidTransactionId;
		e->wsidx = 0;
		pg_atomic_fetch_add_u64(&KvKeyspaces[ks].nentries, 1);
	}

	LWLockRelease(lock);
}

/*
 * KvStoreAbortEntry
 *		Unlink and free one pending entry of an aborting (sub)transaction.
 *		Never fails.
 */
void
KvStoreAbortEntry(KvPtr p)
{
	KvEntry    *e = KvEntryGet(p);
	uint32		bucket = BUCKET_OF(e->hash);
	LWLock	   *lock = PART_LOCK(PART_OF(bucket));

	Assert(e->flags & KVE_PENDING);

	LWLockAcquire(lock, LW_EXCLUSIVE);
	unlink_entry(bucket, p);
	account_mem(e->keyspace, p, false);
	KvFree(p);
	LWLockRelease(lock);
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
	if ((e->flags & KVE_TOMBSTONE) || !entry_is_version(e))
		return false;

	/* a newer version of the same key earlier in the chain hides e */
	for (KvPtr q = head; q != ep; q = KvEntryGet(q)->next)
	{
		KvEntry    *qe = KvEntryGet(q);

		if (same_key(qe, e) && entry_is_version(qe))
			return false;
	}
	return true;
}

/*
 * scan_partitions
 *		The walk shared by KvStoreScan and KvStoreScanCommitted.  Partition
 *		by partition, the entries keep() accepts are copied out (header,
 *		key and value) under the partition's shared lock; then, with the
 *		lock released, emit() runs on each copy, and emit(NULL) marks the
 *		end of the partition.  So a scan never blocks writers for long and
 *		emit() may do anything, including raise an error.  With ks given,
 *		the keyspace is validated under each partition lock.
 */
typedef bool (*KvScanFilter) (void *arg, KvPtr head, KvPtr p, const KvEntry *e);

static void
scan_partitions(const KvKeyspaceRef *ks, KvScanFilter keep, void *keep_arg,
				KvSnapshotCallback emit, void *emit_arg)
{
	MemoryContext scancxt;
	MemoryContext oldcxt;
	uint32		per_part = sctl->nbuckets >> KVEXT_NUM_PARTITIONS_LOG2;

	scancxt = AllocSetContextCreate(CurrentMemoryContext, "kvext scan",
									ALLOCSET_DEFAULT_SIZES);
	for (uint32 part = 0; part < KVEXT_NUM_PARTITIONS; part++)
	{
		StringInfoData buf;
		LWLock	   *lock = PART_LOCK(part);
		Size		off;

		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(scancxt);
		initStringInfo(&buf);

		LWLockAcquire(lock, LW_SHARED);
		if (ks != NULL && unlikely(!KvKeyspaceIsValid(*ks)))
		{
			LWLockRelease(lock);
			report_keyspace_gone();
		}
		for (uint32 b = part * per_part; b < (part + 1) * per_part; b++)
		{
			KvPtr		head = buckets[b];

			for (KvPtr p = head; p != InvalidKvPtr; p = KvEntryGet(p)->next)
			{
				KvEntry    *e = KvEntryGet(p);

				if (!keep(keep_arg, head, p, e))
					continue;
				appendBinaryStringInfo(&buf, (char *) e,
									   KvEntryHeaderSize + e->keylen + e->vallen);
				/* keep copies aligned */
				while (buf.len % MAXIMUM_ALIGNOF != 0)
					appendStringInfoChar(&buf, '\0');
			}
		}
		LWLockRelease(lock);
		MemoryContextSwitchTo(oldcxt);

		for (off = 0; off < (Size) buf.len;)
		{
			KvEntry    *e = (KvEntry *) (buf.data + off);

			emit(emit_arg, e);
			off += MAXALIGN(KvEntryHeaderSize + e->keylen + e->vallen);
		}
		emit(emit_arg, NULL);
		MemoryContextReset(scancxt);
	}
	MemoryContextDelete(scancxt);
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

static bool
scan_keep_visible(void *arg, KvPtr head, KvPtr p, const KvEntry *e)
{
	ScanArgs   *sa = (ScanArgs *) arg;
	bool		chain_pending = false;

	if (e->keyspace != sa->ks || e->keylen < sa->prefixlen ||
		memcmp(KvEntryKey(e), sa->prefix, sa->prefixlen) != 0)
		return false;
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
 *		as this transaction sees it, one partition at a time (see
 *		scan_partitions).  Order is unspecified.
 */
void
KvStoreScan(KvKeyspaceRef ks, const char *prefix, uint32 prefixlen,
			KvScanCallback callback, void *arg)
{
	ScanArgs	sa;

	sa.ks = ks.id;
	sa.prefix = prefix;
	sa.prefixlen = prefixlen;
	sa.callback = callback;
	sa.arg = arg;
	scan_partitions(&ks, scan_keep_visible, &sa, scan_emit_visible, &sa);
}

/*
 * KvStoreKeyspaceHasPending
 *		Does any transaction have an uncommitted write in keyspace ks?
 *		Part of keyspace drop (keyspace.c).
 */
bool
KvStoreKeyspaceHasPending(uint16 ks)
{
	uint32		per_part = sctl->nbuckets >> KVEXT_NUM_PARTITIONS_LOG2;

	for (uint32 part = 0; part < KVEXT_NUM_PARTITIONS; part++)
	{
		LWLock	   *lock = PART_LOCK(part);

		LWLockAcquire(lock, LW_SHARED);
		for (uint32 b = part * per_part; b < (part + 1) * per_part; b++)
		{
			for (KvPtr p = buckets[b]; p != InvalidKvPtr; p = KvEntryGet(p)->next)
			{
				KvEntry    *e = KvEntryGet(p);

				if (e->keyspace == ks && (e->flags & KVE_PENDING))
				{
					LWLockRelease(lock);
					return true;
				}
			}
		}
		LWLockRelease(lock);
	}
	return false;
}

/*
 * KvStoreRemoveKeyspace
 *		Free every entry of keyspace ks; it must have no pending entries and
 *		must no longer validate.  Part of keyspace drop.
 */
void
KvStoreRemoveKeyspace(uint16 ks)
{
	uint32		per_part = sctl->nbuckets >> KVEXT_NUM_PARTITIONS_LOG2;

	for (uint32 part = 0; part < KVEXT_NUM_PARTITIONS; part++)
	{
		LWLock	   *lock = PART_LOCK(part);

		LWLockAcquire(lock, LW_EXCLUSIVE);
		for (uint32 b = part * per_part; b < (part + 1) * per_part; b++)
		{
			KvPtr	   *link = &buckets[b];

			while (*link != InvalidKvPtr)
			{
				KvPtr		p = *link;
				KvEntry    *e = KvEntryGet(p);

				if (e->keyspace != ks)
				{
					link = &e->next;
					continue;
				}
				Assert(!(e->flags & KVE_PENDING));
				*link = e->next;
				KvFree(p);
			}
		}
		LWLockRelease(lock);
	}
	pg_atomic_write_u64(&KvKeyspaces[ks].nentries, 0);
	pg_atomic_write_u64(&KvKeyspaces[ks].mem_bytes, 0);
}

/*
 * KvStoreMemoryUsed
 *		Bytes of kvext.memory_limit in use: the bucket array plus allocated
 *		heap blocks (headers and rounding included).
 */
uint64
KvStoreMemoryUsed(void)
{
	uint64		used,
				total;

	KvAllocUsage(&used, &total);
	return used + sctl->bucket_bytes;
}

/*
 * KvStoreMemoryLimit
 *		kvext.memory_limit in bytes, as sized at startup.
 */
uint64
KvStoreMemoryLimit(void)
{
	return sctl->region_bytes;
}

/*
 * KvStoreRecoverWrite
 *		Recovery and snapshot loading: make (ks, key) committed with the
 *		given value, or remove it (value == NULL).  Runs before the store
 *		is open to sessions, so there are no pending entries.  Returns false
 *		if the store is full.
 */
bool
KvStoreRecoverWrite(uint16 ks, const char *key, uint32 keylen,
					const char *value, uint32 vallen, bool binary)
{
	uint32		hash = kv_hash(ks, key, keylen);
	uint32		bucket = BUCKET_OF(hash);
	LWLock	   *lock = PART_LOCK(PART_OF(bucket));
	KvPtr	   *link;
	KvPtr		np = InvalidKvPtr;

	if (value != NULL)
	{
		np = KvAlloc(KvEntryHeaderSize + keylen + vallen, true);
		if (np == InvalidKvPtr)
			return false;
	}

	LWLockAcquire(lock, LW_EXCLUSIVE);
	for (link = &buckets[bucket]; *link != InvalidKvPtr;
		 link = &KvEntryGet(*link)->next)
	{
		KvEntry    *c = KvEntryGet(*link);

		if (entry_matches(c, hash, ks, key, keylen))
		{
			KvPtr		cp = *link;

			Assert(!(c->flags & KVE_PENDING));
			*link = c->next;
			account_mem(ks, cp, false);
			pg_atomic_fetch_sub_u64(&KvKeyspaces[ks].nentries, 1);
			KvFree(cp);
			break;
		}
	}
	if (np != InvalidKvPtr)
	{
		KvEntry    *n = KvEntryGet(np);

		n->hash = hash;
		n->xid = InvalidTransactionId;
		n->wsidx = 0;
		n->keylen = keylen;
		n->vallen = vallen;
		n->keyspace = ks;
		n->flags = binary ? KVE_BINARY : 0;
		memcpy(KvEntryKey(n), key, keylen);
		memcpy(KvEntryValue(n), value, vallen);
		n->next = buckets[bucket];
		buckets[bucket] = np;
		account_mem(ks, np, true);
		pg_atomic_fetch_add_u64(&KvKeyspaces[ks].nentries, 1);
	}
	LWLockRelease(lock);
	return true;
}

static bool
scan_keep_committed(void *arg, KvPtr head, KvPtr p, const KvEntry *e)
{
	return !(e->flags & KVE_PENDING);
}

/*
 * KvStoreScanCommitted
 *		Call callback for every committed entry of every keyspace, one
 *		partition at a time (see scan_partitions; callback(NULL) ends each
 *		partition).  For snapshots.
 */
void
KvStoreScanCommitted(KvSnapshotCallback callback, void *arg)
{
	scan_partitions(NULL, scan_keep_committed, NULL, callback, arg);
}
