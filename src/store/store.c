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
 * carry a 32-byte header plus the key and value bytes; with the allocator's
 * 8-byte block header and 8-byte rounding an entry costs 40-47 bytes over
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
 *	  entry of its own transaction (its backend, or its leader's in a
 *	  parallel worker), or a pending entry of a backend that is committing:
 *	  its COMMIT record is as durable as its setting asks, and it converts
 *	  its entries one by one (KvStoreBeginCommit, owner slots below), so the
 *	  whole commit appears at once.  It skips other transactions'
 *	  uncommitted entries: read committed plus read-your-own-writes,
 *	  without waiting, and never by asking pg_xact;
 *	- a writer that finds another transaction's pending entry releases the
 *	  partition lock, waits on the lock-manager lock the entry stands for
 *	  (keylock.c: the writer's virtual xid or its subtransaction's lock;
 *	  deadlock detection, lock_timeout and pg_locks come with it), then,
 *	  if the entry is still pending, on the owner's condition variable
 *	  until it has committed or removed its entries (lock_key); then it
 *	  starts over and works on the newly committed value.  So kv_incr and
 *	  kv_cas are atomic, and no lock-manager entry is used per key.
 *
 * A pending entry is written in full (key and new value) at write time, so
 * the memory limit is enforced when the statement runs, and commit never
 * allocates: at commit (txn.c) each pending entry replaces the committed
 * one, at abort it is unlinked and freed.  Neither can fail.
 *
 * Whole-store scans (kv_scan, snapshots) are in scan.c, which reaches the
 * bucket array and the visibility tests through store_internal.h.
 *
 * Entries move.  When a write finds no free block big enough although
 * enough bytes are free, it releases its partition lock and compacts the
 * heap (compact.c), then starts over; only when the free bytes do not add
 * up is the store full (53200).  Compaction moves committed entries (slid
 * down within their 1GB chunk of the heap, or evacuated into another
 * chunk), one at a time under the entry's partition lock (exclusive) and
 * then the allocator lock, and repoints the one link to it.  Hence the rule for
 * all code: a KvPtr or pointer to a committed entry is valid only while
 * its partition lock is held; whatever must outlive the lock hold is
 * copied (scans) or is a pending entry (write sets, the apply path,
 * commit and abort), which never moves.  Recovery compacts the same way.
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
#include "storage/condition_variable.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "kvext.h"
#include "log/visible.h"
#include "log/wal.h"
#include "store/compact.h"
#include "store/keylock.h"
#include "store/stats.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "store/text.h"
#include "store/waits.h"
#include "store/writeset.h"

typedef struct KvStoreControl
{
	uint32		nbuckets;
	uint32		part_shift;		/* partition = bucket >> part_shift */
	Size		region_bytes;	/* = kvext.memory_limit */
	Size		bucket_bytes;	/* bucket array, rounded to KV_UNIT */
	pg_atomic_uint32 rebuild;	/* odd while a follower's store is being
								 * replaced by a snapshot (KvStoreClear) */
} KvStoreControl;

/*
 * Owner slots: a pending entry names the slot of the transaction that
 * wrote it.  A backend takes a free slot from the shared pool at its first
 * write and keeps it (KvMyOwnerSlot) until its transaction ends, or until
 * it parks the transaction in it.  A slot says whether its transaction is committing,
 * and has a condition variable on which writers wait for it to finish its
 * end of transaction.  In a replicated group a transaction whose commit is
 * not yet majority-durable when its backend moves on is parked in its slot
 * (park.c): its entries stay pending until the commit position passes its
 * COMMIT record, the slot stays taken until then, and the backend takes
 * another at its next write.  The pool has KVEXT_SLOTS_PER_PROC slots per
 * PGPROC, so that many transactions per backend may wait for an absent
 * majority before new writers wait for a slot.
 */
typedef struct KvOwnerSlot
{
	pg_atomic_uint64 committing;	/* end of its COMMIT record while it
									 * converts its pending entries, with
									 * KV_SLOT_PARKED while parked; else 0 */
	pg_atomic_uint32 user;		/* pgprocno + 1 of the backend using it, 0
								 * if none (free unless parked) */
	pg_atomic_uint32 tokens;	/* last subtransaction lock token taken as
								 * this slot (keylock.c) */
	ConditionVariable done;		/* broadcast when its pending entries are
								 * all committed or removed */
} KvOwnerSlot;

static KvStoreControl *sctl = NULL;
static KvOwnerSlot *owners = NULL;
static int	nowners = 0;
static pg_atomic_uint32 *proc_slot = NULL;	/* per pgprocno: its current slot */
static ConditionVariable *slot_freed = NULL;	/* broadcast when a slot frees */
static pg_atomic_uint32 *slot_waiters = NULL;	/* backends waiting on it */
int			KvMyOwnerSlot = -1;
KvKeyspace *KvKeyspaces = NULL;
pg_atomic_uint32 *KvKeyspaceDirGen = NULL;
pg_atomic_uint64 *KvAclLastCommit = NULL;
KvPtr	   *KvStoreBuckets = NULL;
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
 * init_keyspace_slots
 *		The keyspace directory at shared memory creation: every slot free
 *		but slot 0, "default", which always exists.
 */
static void
init_keyspace_slots(void)
{
	pg_atomic_init_u32(KvKeyspaceDirGen, 1);
	pg_atomic_init_u64(KvAclLastCommit, 0);
	for (int i = 0; i < kvext_max_keyspaces; i++)
	{
		KvKeyspace *ks = &KvKeyspaces[i];

		pg_atomic_init_u32(&ks->gen, 1);
		ks->state = KS_FREE;
		ks->name[0] = '\0';
		pg_atomic_init_u64(&ks->nentries, 0);
		pg_atomic_init_u64(&ks->mem_bytes, 0);
		pg_atomic_init_u32(&ks->drop_xact, InvalidTransactionId);
		ks->xact = InvalidTransactionId;
		ks->xact_proc = -1;
	}
	KvKeyspaces[0].state = KS_ACTIVE;
	strlcpy(KvKeyspaces[0].name, KVEXT_DEFAULT_KEYSPACE, NAMEDATALEN);
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
	size = add_size(size, MAXALIGN(sizeof(pg_atomic_uint32)));
	size = add_size(size, MAXALIGN(sizeof(pg_atomic_uint64)));
	size = add_size(size, mul_size(sizeof(KvKeyspace), kvext_max_keyspaces));
	size = add_size(size, MAXALIGN(mul_size(sizeof(KvOwnerSlot), KvOwnerSlotCount())));
	size = add_size(size, MAXALIGN(mul_size(sizeof(pg_atomic_uint32), KvProcSlots())));
	size = add_size(size, MAXALIGN(sizeof(ConditionVariable)));
	size = add_size(size, MAXALIGN(sizeof(pg_atomic_uint32)));
	return size;
}

/*
 * KvStoreShmemInit
 *		Create or attach the store; the caller holds AddinShmemInitLock.
 *		part_locks are the KVEXT_NUM_PARTITIONS partition locks, alloc_lock
 *		the allocator lock (each in its own LWLock tranche, see shmem.c).
 */
void
KvStoreShmemInit(LWLockPadded *part_locks, LWLock *alloc_lock)
{
	bool		found;
	char	   *p;
	Size		region = region_bytes();

	p = ShmemInitStruct("kvext store", KvStoreShmemSize(), &found);
	sctl = (KvStoreControl *) p;
	p += MAXALIGN(sizeof(KvStoreControl));
	kv_locks = part_locks;

	KvKeyspaceDirGen = (pg_atomic_uint32 *) p;
	p += MAXALIGN(sizeof(pg_atomic_uint32));
	KvAclLastCommit = (pg_atomic_uint64 *) p;
	p += MAXALIGN(sizeof(pg_atomic_uint64));
	KvKeyspaces = (KvKeyspace *) p;
	p += sizeof(KvKeyspace) * kvext_max_keyspaces;
	p = (char *) MAXALIGN(p);
	owners = (KvOwnerSlot *) p;
	nowners = KvOwnerSlotCount();
	p += MAXALIGN(sizeof(KvOwnerSlot) * nowners);
	proc_slot = (pg_atomic_uint32 *) p;
	p += MAXALIGN(sizeof(pg_atomic_uint32) * KvProcSlots());
	slot_freed = (ConditionVariable *) p;
	p += MAXALIGN(sizeof(ConditionVariable));
	slot_waiters = (pg_atomic_uint32 *) p;
	p += MAXALIGN(sizeof(pg_atomic_uint32));
	KvBase = (char *) TYPEALIGN(KV_UNIT, p + KvAllocControlSize());
	KvStoreBuckets = (KvPtr *) KvBase;

	if (!found)
	{
		uint32		nb = bucket_count(region);

		sctl->nbuckets = nb;
		sctl->part_shift = pg_leftmost_one_pos32(nb) - KVEXT_NUM_PARTITIONS_LOG2;
		sctl->region_bytes = region;
		sctl->bucket_bytes = TYPEALIGN(KV_UNIT, (Size) nb * sizeof(KvPtr));
		memset(KvStoreBuckets, 0, sctl->bucket_bytes);
		pg_atomic_init_u32(&sctl->rebuild, 0);
		init_keyspace_slots();
		for (int i = 0; i < nowners; i++)
		{
			pg_atomic_init_u64(&owners[i].committing, 0);
			pg_atomic_init_u32(&owners[i].user, 0);
			pg_atomic_init_u32(&owners[i].tokens, 0);
			ConditionVariableInit(&owners[i].done);
		}
		for (int i = 0; i < KvProcSlots(); i++)
			pg_atomic_init_u32(&proc_slot[i], PG_UINT32_MAX);
		ConditionVariableInit(slot_freed);
		pg_atomic_init_u32(slot_waiters, 0);
	}
	KvAllocInit(p, alloc_lock,
				(KvPtr) (sctl->bucket_bytes / KV_UNIT),
				sctl->region_bytes - sctl->bucket_bytes,
				(Size) kvext_heap_chunk_size * 1024 * 1024, found);
}

/*
 * owner_committing
 *		Do the pending entries of owner slot s count as committed?  Yes while
 *		its backend converts them (KvStoreBeginCommit), and for a parked
 *		transaction once the visible position has passed its COMMIT record.
 */
static inline bool
owner_committing(int s)
{
	uint64		c = pg_atomic_read_u64(&owners[s].committing);

	if (c == 0)
		return false;
	if (!(c & KV_SLOT_PARKED))
		return true;
	c &= ~KV_SLOT_PARKED;
	return c <= KvWalVisiblePos() && c <= KvVisibleParkCeiling();
}

/*
 * owner_ending
 *		Has owner slot s's transaction left PostgreSQL's transaction (it is
 *		converting, or parked)?  A writer then waits on the slot's condition
 *		variable, not on the xid.
 */
static inline bool
owner_ending(int s)
{
	return pg_atomic_read_u64(&owners[s].committing) != 0;
}

/*
 * try_take
 *		Take owner slot s if it is free.
 */
static bool
try_take(int s)
{
	uint32		expected = 0;

	if (pg_atomic_read_u64(&owners[s].committing) != 0 ||
		pg_atomic_read_u32(&owners[s].user) != 0)
		return false;
	if (!pg_atomic_compare_exchange_u32(&owners[s].user, &expected,
										(uint32) MyProc->pgprocno + 1))
		return false;
	/* a parker clears user only after setting committing: look again */
	if (pg_atomic_read_u64(&owners[s].committing) != 0)
	{
		pg_atomic_write_u32(&owners[s].user, 0);
		return false;
	}
	return true;
}

/*
 * KvStoreMySlot
 *		This backend's current owner slot, taken from the pool at first use
 *		(starting with the slots nearest its pgprocno); a backend gives it
 *		back at the end of each transaction (txn.c), parked or not.  If every slot is
 *		taken (transactions parked while the group has no majority), wait,
 *		interruptibly, for one to free.  Call with no LWLock held.
 *
 * Only a backend that found no free slot registers as a waiter
 * (slot_waiters), so that the release at every transaction's end
 * broadcasts only when someone waits: it clears the slot, then reads the
 * count; a waiter counts itself, then scans the slots.
 */
static bool
take_any_slot(int start)
{
	for (int i = 0; i < nowners; i++)
	{
		int			s = (start + i) % nowners;

		if (try_take(s))
		{
			KvMyOwnerSlot = s;
			pg_atomic_write_u32(&proc_slot[MyProc->pgprocno], (uint32) s);
			return true;
		}
	}
	return false;
}

int
KvStoreMySlot(void)
{
	int			start;

	if (likely(KvMyOwnerSlot >= 0))
		return KvMyOwnerSlot;
	start = MyProc->pgprocno * KVEXT_SLOTS_PER_PROC;
	if (likely(take_any_slot(start)))
		return KvMyOwnerSlot;

	pg_atomic_fetch_add_u32(slot_waiters, 1);
	PG_TRY();
	{
		for (;;)
		{
			ConditionVariablePrepareToSleep(slot_freed);
			if (take_any_slot(start))
				break;
			ConditionVariableTimedSleep(slot_freed, 1000L, WAIT_EVENT_SYNC_REP);
		}
	}
	PG_FINALLY();
	{
		pg_atomic_fetch_sub_u32(slot_waiters, 1);
	}
	PG_END_TRY();
	ConditionVariableCancelSleep();
	return KvMyOwnerSlot;
}

/* a slot became free: wake the backends waiting for one, if any */
static void
wake_slot_waiters(void)
{
	pg_memory_barrier();		/* the freed slot before the count */
	if (pg_atomic_read_u32(slot_waiters) > 0)
		ConditionVariableBroadcast(slot_freed);
}

/*
 * KvStoreReleaseSlot
 *		This backend is done with its slot: its transaction ended (its
 *		entries are all committed or removed, and KvStoreEndXact woke their
 *		waiters), or it parked the transaction there (the slot then stays
 *		taken until that resolves).
 */
void
KvStoreReleaseSlot(void)
{
	if (KvMyOwnerSlot < 0)
		return;
	pg_atomic_write_u32(&proc_slot[MyProc->pgprocno], PG_UINT32_MAX);
	pg_atomic_write_u32(&owners[KvMyOwnerSlot].user, 0);
	KvMyOwnerSlot = -1;
	wake_slot_waiters();
}

/*
 * KvStoreSlotProc
 *		The pgprocno of the backend using owner slot s, or -1 (a parked
 *		transaction has none).
 */
int
KvStoreSlotProc(int s)
{
	if (s < 0 || s >= nowners)
		return -1;
	return (int) pg_atomic_read_u32(&owners[s].user) - 1;
}

/* the current owner slot of backend procno (for its parallel workers) */
int
KvStoreProcSlot(int procno)
{
	return (int) pg_atomic_read_u32(&proc_slot[procno]);
}

/* the owner slot array, for park.c (store_internal.h) */
pg_atomic_uint64 *
KvStoreSlotCommitting(int s)
{
	Assert(s >= 0 && s < nowners);
	return &owners[s].committing;
}

/* wake the writers waiting on owner slot s, which has become free */
void
KvStoreSlotWake(int s)
{
	ConditionVariableBroadcast(&owners[s].done);
	wake_slot_waiters();
}

/*
 * move_entry
 *		Compaction's move step (compact.c, KvMoveEntryFn): if the allocation
 *		at p is a committed entry linked in its chain, move it with
 *		KvAllocRelocate (into another chunk if evacuate, else or if no other
 *		chunk has room by sliding it down) and repoint the link to it.
 *		Takes and releases its partition lock (then the allocator lock
 *		inside KvAllocRelocate); no lock held on entry.
 */
static KvMoveResult
move_entry(KvPtr p, Size max_move, bool evacuate, bool before,
		   Size *free_after)
{
	KvEntry    *e = KvEntryGet(p);
	uint32		bucket = BUCKET_OF(e->hash);
	LWLock	   *lock = PART_LOCK(PART_OF(bucket));
	KvPtr	   *link = &KvStoreBuckets[bucket];
	KvPtr		np;
	KvRelocation how;

	/*
	 * The hash was read before the lock and may be garbage (the block may
	 * be free again, or not initialized yet): it only picks the chain to
	 * look in, and p counts only if that chain links it.
	 */
	LWLockAcquire(lock, LW_EXCLUSIVE);
	while (*link != InvalidKvPtr && *link != p)
		link = &KvEntryGet(*link)->next;
	if (*link == InvalidKvPtr || (e->flags & KVE_PENDING))
	{
		/*
		 * Not linked (being initialized, or freed meanwhile), or pending:
		 * its owner's write set points at it.  Step over it.
		 */
		LWLockRelease(lock);
		return KV_MOVE_NEVER;
	}
	np = KvAllocRelocate(p, max_move, evacuate, before, free_after, &how);
	if (np != InvalidKvPtr)
		*link = np;
	LWLockRelease(lock);
	switch (how)
	{
		case KV_RELOC_SLID:
			return KV_MOVE_SLID;
		case KV_RELOC_EVACUATED:
			return KV_MOVE_EVACUATED;
		case KV_RELOC_NO_ROOM:
			return KV_MOVE_NO_ROOM;
		case KV_RELOC_CHANGED:
			break;
	}
	return KV_MOVE_AGAIN;
}

/*
 * KvStoreCompactUnbounded
 *		Recovery (the only user of the store meanwhile) lets compaction
 *		move entries of any size (compact.c, KvCompactUnbounded).
 */
void
KvStoreCompactUnbounded(bool on)
{
	KvCompactUnbounded(on);
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

	/* in this backend's row (no shared cache line), if it has one */
	if (likely(KvMyCounters != NULL))
		KvCountMem(ks, add ? (int64) bytes : -(int64) bytes);
	else if (add)
		pg_atomic_fetch_add_u64(&KvKeyspaces[ks].mem_bytes, bytes);
	else
		pg_atomic_fetch_sub_u64(&KvKeyspaces[ks].mem_bytes, bytes);
}

/*
 * init_entry
 *		Fill in the entry just allocated at np: header, key and, unless it
 *		is a tombstone, value.  The caller links it (and sets wsidx).
 */
static KvEntry *
init_entry(KvPtr np, uint32 hash, uint16 ks, const char *key, uint32 keylen,
		   const char *value, uint32 vallen, uint16 flags,
		   uint32 lockid, int owner)
{
	KvEntry    *n = KvEntryGet(np);

	n->hash = hash;
	n->lockid = lockid;
	n->wsidx = 0;
	n->owner = owner;
	n->keylen = keylen;
	n->vallen = (flags & KVE_TOMBSTONE) ? 0 : vallen;
	n->keyspace = ks;
	n->flags = flags;
	memcpy(KvEntryKey(n), key, keylen);
	if (n->vallen > 0)
		memcpy(KvEntryValue(n), value, n->vallen);
	return n;
}

/*
 * is_own
 *		Is pending entry e this transaction's?  Every pending entry of a
 *		backend belongs to its current transaction (entries are committed
 *		or removed before it starts another), so the owner's pgprocno says
 *		it; a parallel worker reads for its leader.
 */
static inline bool
is_own(const KvEntry *e)
{
	return e->owner == KvMyOwnerSlot ||
		(MyProc->lockGroupLeader != NULL && MyProc->lockGroupLeader != MyProc &&
		 e->owner == KvStoreProcSlot(MyProc->lockGroupLeader->pgprocno));
}

/*
 * entry_is_version
 *		Would this backend take entry e as the current version of its key?
 *		Committed entries, its own pending entries, and pending entries of a
 *		backend that is committing: it has logged its COMMIT record, made it
 *		as durable as its setting requires ("visible"), and is converting its
 *		entries one by one.  Taking those as committed from the moment it
 *		announces the commit makes the whole commit appear at once.  Never
 *		pg_xact: PostgreSQL may report a transaction committed before
 *		kvext's COMMIT record exists or is durable.
 */
static inline bool
entry_is_version(const KvEntry *e)
{
	if (!(e->flags & KVE_PENDING))
		return true;
	return is_own(e) || owner_committing(e->owner);
}

/* ---- for scan.c (store_internal.h); callers hold the partition lock ---- */

/* number of buckets; a multiple of KVEXT_NUM_PARTITIONS */
uint32
KvStoreNumBuckets(void)
{
	return sctl->nbuckets;
}

/* the lock of partition part (buckets part * nbuckets / partitions ...) */
LWLock *
KvStorePartitionLock(uint32 part)
{
	return PART_LOCK(part);
}

/* entry_is_version, for scans */
bool
KvStoreEntryIsVersion(const KvEntry *e)
{
	return entry_is_version(e);
}

/* same_key, for scans */
bool
KvStoreSameKey(const KvEntry *a, const KvEntry *b)
{
	return same_key(a, b);
}

/* report_keyspace_gone, for scans; the caller has released its lock */
void
KvStoreReportKeyspaceGone(void)
{
	report_keyspace_gone();
	pg_unreachable();
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
	KvPtr		p = KvStoreBuckets[bucket];

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
 *		shared mode only.  KV_READ_TEXT: the value is converted from the
 *		store's UTF-8 to the database encoding; bytes that are not UTF-8
 *		(22021) or a character the encoding lacks (22P05) are an error
 *		(text.c).  KV_READ_STORED_TEXT: the stored bytes, with a value
 *		written as bytea that is not UTF-8 refused (22021): a remote read
 *		of another node, which converts and checks the rest itself.
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
	bool		binary;

	LWLockAcquire(lock, LW_SHARED);
	if (unlikely(KvStoreRebuilding()))
	{
		LWLockRelease(lock);
		KvStoreReportRebuilding();
	}
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

	v = (struct varlena *) palloc(VARHDRSZ + e->vallen);
	SET_VARSIZE(v, VARHDRSZ + e->vallen);
	memcpy(VARDATA(v), KvEntryValue(e), e->vallen);
	binary = (e->flags & KVE_BINARY) != 0;
	LWLockRelease(lock);

	/* converted from the copy, with no lock held (text.c) */
	if (mode == KV_READ_TEXT)
	{
		const char *out;
		uint32		outlen;

		if (unlikely(!KvTextFromStore(VARDATA(v), VARSIZE(v) - VARHDRSZ, &out, &outlen)))
		{
			char		name[NAMEDATALEN];

			/*
			 * The name for the message, read without the keyspace lock
			 * (store sits below keyspace.c): a drop at this instant may
			 * garble it.
			 */
			memcpy(name, KvKeyspaces[ks.id].name, NAMEDATALEN);
			name[NAMEDATALEN - 1] = '\0';
			KvReportValueNotText(name, key, keylen, VARDATA(v),
								 VARSIZE(v) - VARHDRSZ, binary);
		}
		if (out != VARDATA(v))
		{
			struct varlena *conv = (struct varlena *) cstring_to_text_with_len(out, (int) outlen);

			pfree(v);
			pfree((char *) out);
			v = conv;
		}
	}
	else if (mode == KV_READ_STORED_TEXT && binary &&
			 pg_encoding_verifymbstr(PG_UTF8, VARDATA(v), VARSIZE(v) - VARHDRSZ) !=
			 (int) (VARSIZE(v) - VARHDRSZ))
	{
		char		name[NAMEDATALEN];

		memcpy(name, KvKeyspaces[ks.id].name, NAMEDATALEN);
		name[NAMEDATALEN - 1] = '\0';
		KvReportValueNotText(name, key, keylen, VARDATA(v),
							 VARSIZE(v) - VARHDRSZ, binary);
	}

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

/* a cache prefetch hint where the compiler has one */
#if defined(__GNUC__) || defined(__clang__)
#define kv_prefetch(addr)	__builtin_prefetch(addr)
#else
#define kv_prefetch(addr)	((void) (addr))
#endif

/*
 * KvStorePrefetch
 *		A hint for a batch of keys (kv_mget, kv_mput): start loading what a
 *		read or write of (ks, key) will touch first into the CPU cache, so
 *		that the cache misses of a batch overlap instead of following one
 *		another.  chain = false: the key's bucket; chain = true: the first
 *		entry of its chain (the bucket should have been prefetched a few
 *		keys earlier).  Takes no lock: the bucket head it reads may be
 *		stale, and a prefetch of any address is harmless (it never faults
 *		and changes nothing).
 */
void
KvStorePrefetch(KvKeyspaceRef ks, const char *key, uint32 keylen, bool chain)
{
	uint32		bucket = BUCKET_OF(kv_hash(ks.id, key, keylen));

	if (!chain)
		kv_prefetch(&KvStoreBuckets[bucket]);
	else
	{
		KvPtr		head = ((volatile KvPtr *) KvStoreBuckets)[bucket];

		if (head != InvalidKvPtr)
			kv_prefetch(KvEntryGet(head));
	}
}

/*
 * KvStorePrefetchCommit
 *		A hint for a commit of many keys (txn.c): start loading pending
 *		entry p of this transaction (next = false), or the entry after it in
 *		its chain, which is usually the version it replaces (next = true; p
 *		should have been prefetched a few keys earlier).  Takes no lock: the
 *		link it reads may be stale, which only makes the hint useless.
 */
void
KvStorePrefetchCommit(KvPtr p, bool next)
{
	if (!next)
		kv_prefetch(KvEntryGet(p));
	else
	{
		KvPtr		n = ((volatile KvEntry *) KvEntryGet(p))->next;

		if (n != InvalidKvPtr)
			kv_prefetch(KvEntryGet(n));
	}
}

/*
 * The versions of one key found under its partition lock: the newest
 * pending entry (and the link that points to it) and the committed entry.
 */
typedef struct KeyVersions
{
	uint32		hash;
	uint32		bucket;
	LWLock	   *lock;
	KvPtr	   *plink;			/* link to pend */
	KvEntry    *pend;			/* newest pending entry, or NULL */
	KvEntry    *comm;			/* committed entry, or NULL */
} KeyVersions;

/* find the versions of (ks, key); caller holds kv->lock */
static void
find_versions(KeyVersions *kv, uint16 ks, const char *key, uint32 keylen)
{
	KvPtr	   *link = &KvStoreBuckets[kv->bucket];

	kv->plink = NULL;
	kv->pend = kv->comm = NULL;
	while (*link != InvalidKvPtr)
	{
		KvEntry    *e = KvEntryGet(*link);

		if (entry_matches(e, kv->hash, ks, key, keylen))
		{
			if (!(e->flags & KVE_PENDING))
			{
				kv->comm = e;
				return;
			}
			if (kv->pend == NULL)
			{
				kv->pend = e;
				kv->plink = link;
			}
		}
		link = &e->next;
	}
}

/*
 * report_lock_timeout
 *		lock_timeout ran out while waiting on a key's owner slot.
 */
static void report_lock_timeout(const KvWaitTarget *t) pg_attribute_noreturn();

static void
report_lock_timeout(const KvWaitTarget *t)
{
	ereport(ERROR,
			(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
			 errmsg("canceling statement due to lock timeout"),
			 errdetail("Waiting for key \"%s\" in keyspace \"%s\", written by a transaction that is still committing.",
					   KvKeyExcerpt(t->key, t->keylen),
					   KvNameExcerpt(t->keyspace, strlen(t->keyspace)))));
}

/*
 * lock_key
 *		Step 1 of a write: return holding the key's partition lock
 *		exclusively, with no other transaction's pending entry on the key
 *		(kv->pend, if any, is this transaction's).  Waits, with no LWLock
 *		held, for a transaction that holds the key:
 *		- on the lock its entry stands for (keylock.c: the writer's
 *		  virtual xid, or its subtransaction's lock; deadlock detection,
 *		  lock_timeout, pg_locks), as heap updates wait on a row's xmax;
 *		- then, if its entry is still pending, on its owner slot's
 *		  condition variable until it has committed or removed its
 *		  entries: the owner is converting its entries at commit, or is
 *		  parked (park.c).  The waiter decides from what the owner really
 *		  did, never from a subtransaction's transient state, and never
 *		  removes the entry.
 *		Each wait is published for kv_locks() and names the key, keyspace
 *		and holder in the context of any error raised during it (waits.c).
 */
static void wait_for_holder(const KvEntry *held, KvWaitTarget *target,
							LWLock *lock, KvLockRef *waited,
							TimestampTz *owner_wait_start);

static void
lock_key(KeyVersions *kv, KvKeyspaceRef ks, const char *key, uint32 keylen)
{
	KvLockRef	waited = {KV_LOCK_NONE, 0, 0};
	KvWaitTarget target;
	TimestampTz owner_wait_start = 0;

	for (;;)
	{
		TransactionId dropper;

		LWLockAcquire(kv->lock, LW_EXCLUSIVE);

		/*
		 * A transaction is dropping the keyspace: wait for its outcome.
		 * drop_xact is read before the generation: a committing drop bumps
		 * the generation before it clears drop_xact, so a writer that sees
		 * no dropper then sees the new generation.
		 */
		dropper = pg_atomic_read_u32(&KvKeyspaces[ks.id].drop_xact);
		pg_read_barrier();
		if (unlikely(!KvKeyspaceIsValid(ks)))
		{
			LWLockRelease(kv->lock);
			report_keyspace_gone();
		}
		if (unlikely(TransactionIdIsValid(dropper)))
		{
			LWLockRelease(kv->lock);
			if (TransactionIdIsCurrentTransactionId(dropper))
				report_keyspace_gone();
			target = (KvWaitTarget) {KvKeyspaces[ks.id].name, NULL, 0,
				KvStoreSlotProc(KvKeyspaces[ks.id].xact_proc),
			{KV_LOCK_XID, dropper, 0}};
			KvWaitOnLock(&target);
			continue;
		}
		find_versions(kv, ks.id, key, keylen);
		if (kv->pend == NULL || is_own(kv->pend))
			return;				/* the key is ours */

		/* another transaction holds the key */
		target = (KvWaitTarget) {KvKeyspaces[ks.id].name, key, keylen};
		wait_for_holder(kv->pend, &target, kv->lock, &waited, &owner_wait_start);
	}
}

/*
 * wait_for_holder
 *		held is another transaction's pending entry, seen under lock (a
 *		partition lock, held exclusively; released here): wait for that
 *		transaction as lock_key describes, first on the lock its entry
 *		stands for, then, once *waited is that lock (it was free, yet the
 *		entry is still pending) or the owner is converting or parked, on
 *		its owner slot.  Fills in target's holder (the keyspace and key
 *		are the caller's).  *waited and *owner_wait_start carry that state
 *		from one call to the next (start them at KV_LOCK_NONE and 0).
 */
static void
wait_for_holder(const KvEntry *held, KvWaitTarget *target, LWLock *lock,
				KvLockRef *waited, TimestampTz *owner_wait_start)
{
	int			owner = held->owner;

	/* read under lock, with the entry: the slot's backend is its writer */
	target->holder_procno = KvStoreSlotProc(owner);
	target->lock = KvKeyLockRef(held->lockid, (held->flags & KVE_SUBLOCK) != 0,
								owner, target->holder_procno);
	if (owner_ending(owner) || target->lock.kind == KV_LOCK_NONE ||
		KvLockRefEquals(target->lock, *waited))
	{
		long		timeout = -1;

		/*
		 * A parked transaction (park.c) may hold its keys until the group's
		 * majority returns: lock_timeout bounds this wait as it bounds the
		 * xid wait.
		 */
		if (LockTimeout > 0)
		{
			TimestampTz now = GetCurrentTimestamp();

			if (*owner_wait_start == 0)
				*owner_wait_start = now;
			timeout = LockTimeout -
				TimestampDifferenceMilliseconds(*owner_wait_start, now);
			if (timeout <= 0)
			{
				LWLockRelease(lock);
				report_lock_timeout(target);
			}
		}
		/* published for kv_locks(); releases lock (waits.c) */
		(void) KvWaitOnOwner(target, &owners[owner].done, lock, timeout);
		return;
	}
	*waited = target->lock;
	LWLockRelease(lock);
	KvWaitOnLock(target);
}

/* what a write puts in its pending entry; see new_version */
typedef struct NewVersion
{
	const char *value;
	uint32		len;
	bool		tombstone;
	char		numbuf[MAXINT8LEN + 1];
} NewVersion;

/* errors new_version reports once the caller has released its lock */
typedef enum WriteError
{
	WRITE_OK,
	WRITE_NOTHING,				/* nothing to write: not an error */
	WRITE_NOT_INTEGER,
	WRITE_OUT_OF_RANGE,
	WRITE_OVERFLOW
} WriteError;

/*
 * new_version
 *		Step 2 of a write: from the version this transaction sees (visible,
 *		or NULL), compute what the write stores, and fill in w's results.
 *		Runs under the partition lock, so it raises nothing; it returns
 *		what to report instead.
 */
static WriteError
new_version(KvWrite *w, const KvEntry *visible, NewVersion *nv, int64 *cur)
{
	nv->value = NULL;
	nv->len = 0;
	nv->tombstone = false;

	switch (w->op)
	{
		case KV_OP_PUT:
			nv->value = w->value;
			nv->len = w->vallen;
			break;

		case KV_OP_DELETE:
			w->existed = (visible != NULL);
			if (!w->existed)
				return WRITE_NOTHING;
			nv->tombstone = true;
			break;

		case KV_OP_INCR:
			{
				int			rc = 0;

				*cur = 0;
				if (visible)
					rc = parse_int64(KvEntryValue(visible), visible->vallen, cur);
				if (rc != 0)
					return rc == 1 ? WRITE_NOT_INTEGER : WRITE_OUT_OF_RANGE;
				if (pg_add_s64_overflow(*cur, w->delta, &w->result))
					return WRITE_OVERFLOW;
				nv->len = (uint32) pg_lltoa(w->result, nv->numbuf);
				nv->value = nv->numbuf;
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
				return WRITE_NOTHING;
			if (w->value == NULL)
			{
				/*
				 * kv_cas(key, old, NULL) deletes.  kv_cas(key, NULL, NULL)
				 * on a missing key deletes nothing, but still takes the
				 * key's lock with a tombstone, so that "does not exist"
				 * holds until this transaction ends.
				 */
				nv->tombstone = true;
			}
			else
			{
				nv->value = w->value;
				nv->len = w->vallen;
			}
			break;
	}
	return WRITE_OK;
}

/* report a WriteError of new_version; no lock held */
static void
report_write_error(WriteError err, const KvWrite *w, int64 cur,
				   const char *key, uint32 keylen)
{
	switch (err)
	{
		case WRITE_NOT_INTEGER:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("value of key \"%s\" is not an integer",
							KvKeyExcerpt(key, keylen)),
					 errhint("kv_incr() works on values that are base-10 integers, such as those it writes.")));
			break;
		case WRITE_OUT_OF_RANGE:
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("value of key \"%s\" is out of range for type bigint",
							KvKeyExcerpt(key, keylen))));
			break;
		case WRITE_OVERFLOW:
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("kv_incr() result is out of range for type bigint"),
					 errdetail("Key \"%s\" holds " INT64_FORMAT "; adding " INT64_FORMAT " overflows.",
							   KvKeyExcerpt(key, keylen), cur, w->delta)));
			break;
		default:
			break;
	}
}

/*
 * link_pending
 *		Step 3 of a write: link the new pending entry np.  A rewrite at the
 *		same subtransaction level (possibly of a version a released
 *		subtransaction wrote) replaces this transaction's pending entry in
 *		place; a first write at this level stacks a new version on top, so
 *		ROLLBACK TO reveals the older one.  Caller holds the partition lock
 *		exclusively; cannot fail.
 */
static void
link_pending(KeyVersions *kv, uint16 ks, KvPtr np, bool was_visible)
{
	KvEntry    *n = KvEntryGet(np);
	bool		is_visible = !(n->flags & KVE_TOMBSTONE);

	if (kv->pend != NULL &&
		KvWsItemLevel(kv->pend->wsidx) == GetCurrentTransactionNestLevel())
	{
		KvPtr		old = *kv->plink;

		n->next = kv->pend->next;
		n->wsidx = kv->pend->wsidx;
		*kv->plink = np;
		KvWsReplace(n->wsidx, np, is_visible, n->keylen + n->vallen);
		account_mem(ks, old, false);
		KvFree(old);
	}
	else
	{
		n->next = KvStoreBuckets[kv->bucket];
		KvStoreBuckets[kv->bucket] = np;
		n->wsidx = KvWsPush(np, ks, was_visible, is_visible, n->keylen + n->vallen);
	}
}

/*
 * check_transaction_size
 *		kvext.max_transaction_size: would a write of bytes (key and value)
 *		make the transaction hold more?  A rewrite at the same level
 *		replaces its pending entry, so only the difference counts; a
 *		version kept for a savepoint counts until the savepoint ends (the
 *		store holds it).  A write that does not grow the total is always
 *		allowed.  Caller holds the partition lock; released before the
 *		error.
 */
static void
check_transaction_size(KeyVersions *kv, Size bytes, const char *key, uint32 keylen)
{
	uint64		limit = (uint64) kvext_max_transaction_size * 1024;
	uint64		now = KvWsBytes();
	uint64		after = now + bytes;

	if (kv->pend != NULL &&
		KvWsItemLevel(kv->pend->wsidx) == GetCurrentTransactionNestLevel())
		after -= Min(after, (uint64) kv->pend->keylen + kv->pend->vallen);
	if (after <= limit || after <= now)
		return;
	LWLockRelease(kv->lock);
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("transaction would write more than kvext.max_transaction_size (%d kB) of keys and values",
					kvext_max_transaction_size),
			 errdetail("It has written %llu bytes; this write of key \"%s\" would make it %llu.",
					   (unsigned long long) now, KvKeyExcerpt(key, keylen),
					   (unsigned long long) after),
			 errhint("Commit in smaller transactions, or have a superuser raise kvext.max_transaction_size.")));
}

/*
 * KvStoreWrite
 *		The one write path: put, delete, increment or compare-and-set one
 *		key in the current (sub)transaction.
 *
 * Takes the (sub)transaction's key lock (keylock.c; no xid), locks the
 * key (lock_key: waiting for another transaction that holds it), computes
 * the new value from the one visible to this transaction (new_version),
 * and links a pending entry
 * that records it (link_pending).  If no free block fits although enough
 * bytes are free, it releases the lock, compacts the heap and starts over
 * (the key may have changed meanwhile).  Errors (store full, non-integer
 * value, overflow) are raised before anything in shared memory changes.
 * Results go to the fields of *w.
 */
void
KvStoreWrite(KvKeyspaceRef ks, const char *key, uint32 keylen, KvWrite *w)
{
	uint32		lockid;
	bool		sublock;
	int			slot;
	KeyVersions kv;
	KvEntry    *visible;
	NewVersion	nv;
	WriteError	err;
	int64		cur = 0;
	Size		size;
	KvPtr		np;
	uint16		flags;
	int			tries = 0;

	/* things that may fail or wait come before any lock */
	KvWsReserve();
	slot = KvStoreMySlot();
	lockid = KvKeyLockTake(slot, &owners[slot].tokens, &sublock);

	kv.hash = kv_hash(ks.id, key, keylen);
	kv.bucket = BUCKET_OF(kv.hash);
	kv.lock = PART_LOCK(PART_OF(kv.bucket));
	for (;;)
	{
		lock_key(&kv, ks, key, keylen);

		visible = kv.pend ? ((kv.pend->flags & KVE_TOMBSTONE) ? NULL : kv.pend) : kv.comm;
		err = new_version(w, visible, &nv, &cur);
		if (err != WRITE_OK)
		{
			LWLockRelease(kv.lock);
			report_write_error(err, w, cur, key, keylen);
			return;				/* WRITE_NOTHING */
		}

		size = KvEntryHeaderSize + keylen + (nv.tombstone ? 0 : nv.len);
		check_transaction_size(&kv, size - KvEntryHeaderSize, key, keylen);
		/* deletes may dip into the reserve, so a full store can be emptied */
		np = KvAlloc(size, nv.tombstone);
		if (np != InvalidKvPtr)
			break;
		LWLockRelease(kv.lock);
		if (++tries > KVEXT_COMPACT_TRIES || !KvCompact(size, nv.tombstone, move_entry))
			report_store_full(size);
	}

	flags = KVE_PENDING;
	if (sublock)
		flags |= KVE_SUBLOCK;
	if (nv.tombstone)
		flags |= KVE_TOMBSTONE;
	else if (w->binary && w->op != KV_OP_INCR)
		flags |= KVE_BINARY;
	(void) init_entry(np, kv.hash, ks.id, key, keylen, nv.value, nv.len,
					  flags, lockid, KvMyOwnerSlot);
	account_mem(ks.id, np, true);

	link_pending(&kv, ks.id, np, visible != NULL);
	LWLockRelease(kv.lock);

	KvCountWrite(ks.id);
}

/*
 * KvStoreRestampEntry
 *		Pending entry p of this transaction now stands for another of its
 *		locks (keylock.c: a committing subtransaction's entries take their
 *		parent's).  A writer waiting for the old lock finds the new one
 *		under the partition lock.
 */
void
KvStoreRestampEntry(KvPtr p, uint32 lockid, bool sub)
{
	KvEntry    *e = KvEntryGet(p);
	LWLock	   *lock = PART_LOCK(PART_OF(BUCKET_OF(e->hash)));

	LWLockAcquire(lock, LW_EXCLUSIVE);
	Assert((e->flags & KVE_PENDING) && is_own(e));
	e->lockid = lockid;
	if (sub)
		e->flags |= KVE_SUBLOCK;
	else
		e->flags &= ~KVE_SUBLOCK;
	LWLockRelease(lock);
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
		if ((qe->flags & KVE_PENDING) && qe->owner == KvMyOwnerSlot)
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
	KvPtr	   *link = &KvStoreBuckets[bucket];

	while (*link != p)
	{
		Assert(*link != InvalidKvPtr);
		link = &KvEntryGet(*link)->next;
	}
	*link = KvEntryGet(p)->next;
}

/*
 * KvStoreBeginCommit
 *		This backend's transaction is committed in the log: its COMMIT
 *		record ends at commit_end, which is as durable as the commit's
 *		setting requires.  From now on every reader takes its pending
 *		entries as committed versions, while KvStoreCommitEntry converts
 *		them one by one; KvStoreEndXact ends that state.
 */
void
KvStoreBeginCommit(KvLsn commit_end)
{
	Assert(commit_end != 0);
	/* a transaction of keyspace operations alone may have none yet */
	pg_atomic_write_u64(&owners[KvStoreMySlot()].committing, commit_end);
	/* readers must see the flag before any entry is converted */
	pg_memory_barrier();
}

/*
 * KvStoreEndXact
 *		This backend's pending entries are all committed or removed: leave
 *		the committing state and wake the writers waiting for that.
 */
void
KvStoreEndXact(void)
{
	KvOwnerSlot *slot;

	if (KvMyOwnerSlot < 0)
		return;					/* never wrote, or parked (park.c) */
	slot = &owners[KvMyOwnerSlot];

	if (pg_atomic_read_u64(&slot->committing) != 0)
		pg_atomic_write_u64(&slot->committing, 0);
	ConditionVariableBroadcast(&slot->done);
}

/*
 * KvStoreWakeWaiters
 *		Some of this backend's pending entries were removed (a rolled back
 *		subtransaction): wake the writers waiting for them.
 */
void
KvStoreWakeWaiters(void)
{
	if (KvMyOwnerSlot >= 0)
		ConditionVariableBroadcast(&owners[KvMyOwnerSlot].done);
}

/*
 * KvStoreOwnerCommitting
 *		Does owner slot s's transaction count as committed (it is converting
 *		its entries, or is parked and visible)?  Keyspace
 *		visibility follows its entries' (keyspace.c).
 */
bool
KvStoreOwnerCommitting(int slot)
{
	return slot >= 0 && slot < nowners && owner_committing(slot);
}

/*
 * remove_committed
 *		Unlink and free the committed version of (ks, key), if any.  Only
 *		while no session can read the store (recovery, and a follower's
 *		rebuild), where a key's old value need not stay visible while its
 *		new one is made: replay then never needs room for both.
 */
static void
remove_committed(uint32 hash, uint16 ks, const char *key, uint32 keylen)
{
	uint32		bucket = BUCKET_OF(hash);
	LWLock	   *lock = PART_LOCK(PART_OF(bucket));
	KvPtr	   *link;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	for (link = &KvStoreBuckets[bucket]; *link != InvalidKvPtr;
		 link = &KvEntryGet(*link)->next)
	{
		KvEntry    *c = KvEntryGet(*link);

		if (!(c->flags & KVE_PENDING) && entry_matches(c, hash, ks, key, keylen))
		{
			KvPtr		cp = *link;

			*link = c->next;
			account_mem(ks, cp, false);
			pg_atomic_fetch_sub_u64(&KvKeyspaces[ks].nentries, 1);
			KvFree(cp);
			break;
		}
	}
	LWLockRelease(lock);
}

/*
 * alloc_compacting
 *		KvAlloc for the apply path and recovery (reserve included),
 *		compacting the heap when no block fits.  No LWLock held.
 */
static KvPtr
alloc_compacting(Size size)
{
	for (int tries = 0;; tries++)
	{
		KvPtr		np = KvAlloc(size, true);

		if (np != InvalidKvPtr || tries >= KVEXT_COMPACT_TRIES ||
			!KvCompact(size, true, move_entry))
			return np;
	}
}

/*
 * KvStoreApplyWrite
 *		Apply path (recovery, and followers later): link a pending entry of
 *		this backend for (ks, key) with the given value, or a tombstone,
 *		without taking the key's lock (nobody else writes: the log is the
 *		only writer).  The caller collects the entries of one transaction
 *		and makes them visible together with KvStoreBeginCommit,
 *		KvStoreCommitEntry on each, and KvStoreEndXact.  With alone (no
 *		session reads the store: recovery), the key's committed version is
 *		freed first, so that replaying a write of a large value the
 *		snapshot already holds never needs room for two copies; the
 *		transaction is known to commit, and if applying it fails, recovery
 *		fails as a whole.  Returns InvalidKvPtr if the store is full.
 */
KvPtr
KvStoreApplyWrite(uint16 ks, const char *key, uint32 keylen,
				  const char *value, uint32 vallen, bool binary, bool tombstone,
				  bool alone)
{
	uint32		hash = kv_hash(ks, key, keylen);
	uint32		bucket = BUCKET_OF(hash);
	LWLock	   *lock = PART_LOCK(PART_OF(bucket));
	KvPtr		np;
	KvEntry    *n;

	if (tombstone)
		vallen = 0;
	if (alone)
		remove_committed(hash, ks, key, keylen);
	np = alloc_compacting(KvEntryHeaderSize + keylen + vallen);
	if (np == InvalidKvPtr)
		return InvalidKvPtr;
	n = init_entry(np, hash, ks, key, keylen, value, vallen,
				   KVE_PENDING | (tombstone ? KVE_TOMBSTONE : 0) |
				   (binary && !tombstone ? KVE_BINARY : 0),
				   0, KvStoreMySlot());

	LWLockAcquire(lock, LW_EXCLUSIVE);
	n->next = KvStoreBuckets[bucket];
	KvStoreBuckets[bucket] = np;
	account_mem(ks, np, true);
	LWLockRelease(lock);
	return np;
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
	int			delta = 0;

	Assert(e->flags & KVE_PENDING);

	LWLockAcquire(lock, LW_EXCLUSIVE);

	/*
	 * Remove the committed version, if any.  Every pending entry of a key
	 * precedes its committed one (see the file header), so the search
	 * starts after p, not at the head of the chain: it does not touch the
	 * bucket array at all, which in a large commit costs a cache miss per
	 * key.
	 */
#ifdef USE_ASSERT_CHECKING
	for (link = &KvStoreBuckets[bucket]; *link != p; link = &KvEntryGet(*link)->next)
	{
		Assert(*link != InvalidKvPtr);
		Assert((KvEntryGet(*link)->flags & KVE_PENDING) ||
			   !same_key(KvEntryGet(*link), e));
	}
#endif
	for (link = &e->next; *link != InvalidKvPtr;
		 link = &KvEntryGet(*link)->next)
	{
		KvEntry    *c = KvEntryGet(*link);

		if (!(c->flags & KVE_PENDING) && same_key(c, e))
		{
			KvPtr		cp = *link;

			*link = c->next;
			account_mem(ks, cp, false);
			delta--;
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
		e->flags &= ~(KVE_PENDING | KVE_SUBLOCK);
		e->lockid = 0;
		e->wsidx = 0;
		e->owner = 0;
		delta++;
	}

	/*
	 * One update of the count per key: an overwrite never shows kv_count()
	 * one key short.  (A transaction's keys still commit one by one.)
	 */
	if (delta > 0)
		pg_atomic_fetch_add_u64(&KvKeyspaces[ks].nentries, 1);
	else if (delta < 0)
		pg_atomic_fetch_sub_u64(&KvKeyspaces[ks].nentries, 1);

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
 * KvStoreWaitKeyspaceWriters
 *		Part of keyspace drop (keyspace.c), once the keyspace is marked so
 *		that no new pending entry can appear in it: wait until no other
 *		transaction has a pending entry in keyspace ks, as DROP TABLE waits
 *		for the table's lock (deadlock detection and lock_timeout apply;
 *		see lock_key).  Returns false at once, waiting for nobody, if this
 *		transaction has one: its write set must never point at a freed
 *		entry.  name is the keyspace's, for kv_locks() and error contexts.
 */
bool
KvStoreWaitKeyspaceWriters(uint16 ks, const char *name)
{
	uint32		per_part = sctl->nbuckets >> KVEXT_NUM_PARTITIONS_LOG2;
	KvLockRef	waited = {KV_LOCK_NONE, 0, 0};
	TimestampTz owner_wait_start = 0;
	uint32		part = 0;

	/* this transaction's own first: no wait before that answer */
	for (uint32 p = 0; p < KVEXT_NUM_PARTITIONS; p++)
	{
		LWLock	   *lock = PART_LOCK(p);

		LWLockAcquire(lock, LW_SHARED);
		for (uint32 b = p * per_part; b < (p + 1) * per_part; b++)
			for (KvPtr q = KvStoreBuckets[b]; q != InvalidKvPtr; q = KvEntryGet(q)->next)
			{
				KvEntry    *e = KvEntryGet(q);

				if (e->keyspace == ks && (e->flags & KVE_PENDING) && is_own(e))
				{
					LWLockRelease(lock);
					return false;
				}
			}
		LWLockRelease(lock);
	}

	/*
	 * Then wait for the others, partition by partition: one that has no
	 * pending entry of ks stays without (no writer adds one now), so a
	 * wait only sends the scan back to the start of its partition.
	 */
	while (part < KVEXT_NUM_PARTITIONS)
	{
		LWLock	   *lock = PART_LOCK(part);
		KvEntry    *held = NULL;
		char		key[KVEXT_WAIT_KEY_BYTES];
		KvWaitTarget target;

		LWLockAcquire(lock, LW_EXCLUSIVE);
		for (uint32 b = part * per_part; b < (part + 1) * per_part && held == NULL; b++)
			for (KvPtr q = KvStoreBuckets[b]; q != InvalidKvPtr; q = KvEntryGet(q)->next)
			{
				KvEntry    *e = KvEntryGet(q);

				if (e->keyspace == ks && (e->flags & KVE_PENDING))
				{
					held = e;
					break;
				}
			}
		if (held == NULL)
		{
			LWLockRelease(lock);
			part++;
			continue;
		}
		/* the entry may be freed once the lock is released: copy its key */
		target.keylen = Min(held->keylen, KVEXT_WAIT_KEY_BYTES);
		memcpy(key, KvEntryKey(held), target.keylen);
		target.keyspace = name;
		target.key = key;
		wait_for_holder(held, &target, lock, &waited, &owner_wait_start);
	}
	return true;
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
			KvPtr	   *link = &KvStoreBuckets[b];

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
	KvStatsResetMem(ks);
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
 *		given value, or remove it (value == NULL).  Runs while no session
 *		reads the store, so there are no pending entries, and the old value
 *		is freed before the new one is allocated: a key the snapshot holds
 *		and the log writes again never needs room twice.  The entry goes in
 *		chunk (of the heap, store/alloc.c) if that is not -1 and the chunk
 *		has room, else wherever there is room.  Returns false if the store
 *		is full.
 */
bool
KvStoreRecoverWrite(uint16 ks, const char *key, uint32 keylen,
					const char *value, uint32 vallen, bool binary, int chunk)
{
	uint32		hash = kv_hash(ks, key, keylen);
	uint32		bucket = BUCKET_OF(hash);
	LWLock	   *lock = PART_LOCK(PART_OF(bucket));
	Size		size = KvEntryHeaderSize + keylen + vallen;
	KvPtr		np = InvalidKvPtr;
	KvEntry    *n;

	remove_committed(hash, ks, key, keylen);
	if (value == NULL)
		return true;
	if (chunk >= 0)
		np = KvAllocInChunk(size, chunk);
	if (np == InvalidKvPtr)
		np = alloc_compacting(size);
	if (np == InvalidKvPtr)
		return false;

	n = init_entry(np, hash, ks, key, keylen, value, vallen,
				   binary ? KVE_BINARY : 0, InvalidTransactionId, 0);
	LWLockAcquire(lock, LW_EXCLUSIVE);
	n->next = KvStoreBuckets[bucket];
	KvStoreBuckets[bucket] = np;
	account_mem(ks, np, true);
	pg_atomic_fetch_add_u64(&KvKeyspaces[ks].nentries, 1);
	LWLockRelease(lock);
	return true;
}

/* ----------------------------------------------------------------
 * Rebuilding a follower's store from a snapshot (log/install.c)
 *
 * The store's contents are replaced while sessions may be reading:
 * KvStoreClear makes the rebuild counter odd, then frees every entry,
 * partition by partition, under each partition's exclusive lock;
 * KvStoreEndRebuild makes it even again once the snapshot is loaded.
 * Readers look at the counter under a partition lock (KvStoreGet, and
 * every batch of a scan, which also compares it with its value at the
 * scan's start), so a read sees the old contents or the new ones, never
 * part of each: otherwise it fails with KvStoreReportRebuilding.  New kv
 * calls wait for the rebuild as for recovery (the store's state).
 * ---------------------------------------------------------------- */

/*
 * KvStoreRebuildCount
 *		The rebuild counter: odd while a rebuild is in progress.
 */
uint32
KvStoreRebuildCount(void)
{
	return pg_atomic_read_u32(&sctl->rebuild);
}

/*
 * KvStoreReportRebuilding
 *		The error of a read that met a rebuild.
 */
void
KvStoreReportRebuilding(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("the kvext store was rebuilt from a snapshot during this read"),
			 errdetail("This follower replaced its contents with its leader's snapshot."),
			 errhint("Retry the read.")));
}

/*
 * KvStoreClear
 *		Start a rebuild: make the counter odd, then free every entry.  The
 *		caller (install.c) has made new kv calls wait, then frees the
 *		keyspaces (KvKeyspaceResetAll) and loads the snapshot,
 *		then calls KvStoreEndRebuild.  Only a follower, which has no
 *		transaction of its own writing, is rebuilt.
 */
void
KvStoreClear(void)
{
	uint32		per_part = sctl->nbuckets >> KVEXT_NUM_PARTITIONS_LOG2;

	if ((pg_atomic_fetch_add_u32(&sctl->rebuild, 1) & 1) != 0)
		elog(ERROR, "kvext store rebuild already in progress");
	for (uint32 part = 0; part < KVEXT_NUM_PARTITIONS; part++)
	{
		LWLock	   *lock = PART_LOCK(part);

		LWLockAcquire(lock, LW_EXCLUSIVE);
		for (uint32 b = part * per_part; b < (part + 1) * per_part; b++)
		{
			KvPtr		p = KvStoreBuckets[b];

			KvStoreBuckets[b] = InvalidKvPtr;
			while (p != InvalidKvPtr)
			{
				KvPtr		next = KvEntryGet(p)->next;

				KvFree(p);
				p = next;
			}
		}
		LWLockRelease(lock);
	}
	for (int ks = 0; ks < kvext_max_keyspaces; ks++)
	{
		pg_atomic_write_u64(&KvKeyspaces[ks].nentries, 0);
		pg_atomic_write_u64(&KvKeyspaces[ks].mem_bytes, 0);
		KvStatsResetMem((uint16) ks);
	}
}

/*
 * KvStoreEndRebuild
 *		The snapshot is loaded (or the rebuild failed and the store will not
 *		serve): make the counter even.
 */
void
KvStoreEndRebuild(void)
{
	if ((pg_atomic_read_u32(&sctl->rebuild) & 1) != 0)
		pg_atomic_fetch_add_u32(&sctl->rebuild, 1);
}
