/*-------------------------------------------------------------------------
 *
 * store.h
 *	  The shared hash store: keyspaces, entries, reads, writes, commit.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_STORE_H
#define KVEXT_STORE_H

#include "port/atomics.h"
#include "storage/lwlock.h"

#include "kvext.h"
#include "store/alloc.h"


/* number of partition locks of the hash table; a power of two */
#define KVEXT_NUM_PARTITIONS		128
#define KVEXT_NUM_PARTITIONS_LOG2	7


/*
 * One version of one key.  Keys and values are stored inline after the
 * header (key first).  Committed entries have KVE_PENDING clear; a
 * transaction's uncommitted write is a KVE_PENDING entry carrying the id of
 * a lock its writer holds (keylock.c), which doubles as the key's write
 * lock.
 * See store.c for the chain-order invariant.  Committed entries may be
 * moved by compaction (compact.c) whenever their partition lock is free:
 * keep a pointer to one only while holding that lock.
 */
typedef struct KvEntry
{
	KvPtr		next;			/* next entry in the bucket chain */
	uint32		hash;			/* hash of (keyspace, key) */
	uint32		lockid;			/* pending: the writer's lock (keylock.c): its
								 * local xid, or with KVE_SUBLOCK its
								 * subtransaction's token; 0 if none */
	uint32		wsidx;			/* pending: index in the owner's write set */
	int32		owner;			/* pending: owner slot of the writing
								 * transaction (store.c) */
	uint32		keylen;
	uint32		vallen;
	uint16		keyspace;
	uint16		flags;
	char		data[FLEXIBLE_ARRAY_MEMBER];	/* key, then value */
} KvEntry;

#define KVE_PENDING		0x0001	/* uncommitted write of owner */
#define KVE_TOMBSTONE	0x0002	/* pending delete: no value */
#define KVE_BINARY		0x0004	/* written as bytea: may not be valid text */
#define KVE_SUBLOCK		0x0008	/* pending: lockid is a subtransaction's token */

#define KvEntryKey(e)		((e)->data)
#define KvEntryValue(e)		((e)->data + (e)->keylen)
#define KvEntryHeaderSize	offsetof(KvEntry, data)

#define KvEntryGet(p)		((KvEntry *) KvPtrGetAddr(p))

/*
 * Keyspaces.  A reference is (slot, generation); every change of a slot's
 * state bumps its generation, so a reference taken before a drop (or a
 * drop and re-create under another name) no longer validates.
 */
typedef struct KvKeyspaceRef
{
	uint16		id;
	uint32		gen;
} KvKeyspaceRef;

typedef enum KvKeyspaceState
{
	KS_FREE = 0,
	KS_ACTIVE,
	KS_CREATING,				/* created by transaction xact, not committed */
	KS_DROPPING,				/* dropped by transaction xact, not committed */
	KS_ABANDONED,				/* created and dropped by transaction xact,
								 * not committed: nobody sees it */
	KS_DROPPED					/* drop committed, entries being removed */
} KvKeyspaceState;

typedef struct KvKeyspace
{
	pg_atomic_uint32 gen;		/* bumped at every state change */
	uint32		state;			/* KvKeyspaceState; keyspace lock */
	char		name[NAMEDATALEN];	/* keyspace lock */
	TransactionId xact;			/* CREATING, DROPPING, ABANDONED: the
								 * top-level xid of the transaction */
	int			xact_proc;		/* ... and the owner slot of its transaction */
	pg_atomic_uint32 drop_xact; /* DROPPING: xact, read by writers under a
								 * partition lock; else 0 */
	pg_atomic_uint64 nentries;	/* committed entries */
	pg_atomic_uint64 mem_bytes; /* heap bytes of its entries, pending too,
								 * counted by processes without a row of
								 * counters (stats.c has the rest) */
} KvKeyspace;

/*
 * The keyspace directory's slots live in the store's shared memory
 * (store.c), so that the store can validate references and account memory
 * without calling up into keyspace.c, which manages names.
 * KvKeyspaceDirGen is bumped at every change of any slot.
 */
extern PGDLLIMPORT KvKeyspace *KvKeyspaces;
extern PGDLLIMPORT pg_atomic_uint32 *KvKeyspaceDirGen;
/* the end of the last COMMIT record that changed rights (acl.c) */
extern PGDLLIMPORT pg_atomic_uint64 *KvAclLastCommit;

#define KVEXT_DEFAULT_KEYSPACE	"default"
/*
 * The keyspace that holds every keyspace's owner and rights (acl.c).  Its
 * name begins with a control character, which a created name may not
 * (KvKeyspaceCheckName), so no user keyspace can take it.
 */
#define KVEXT_ACL_KEYSPACE		"\001acl"
#define KvKeyspaceIsAcl(name)	((name)[0] == '\001' && strcmp((name), KVEXT_ACL_KEYSPACE) == 0)

/*
 * KvKeyspaceIsValid
 *		Is the keyspace the reference was resolved to still the same, and
 *		active?  Store code calls it while holding a partition lock, which
 *		keeps a concurrent drop from sweeping that partition meanwhile.
 */
static inline bool
KvKeyspaceIsValid(KvKeyspaceRef ref)
{
	return pg_atomic_read_u32(&KvKeyspaces[ref.id].gen) == ref.gen;
}

/* store.c: setup */
extern Size KvStoreShmemSize(void);
extern void KvStoreShmemInit(LWLockPadded *part_locks, LWLock *alloc_lock);

/* store.c: reads */
typedef enum KvReadMode
{
	KV_READ_TEXT,				/* value as text of the database encoding */
	KV_READ_STORED_TEXT,		/* value as stored, a bytea one checked to be
								 * UTF-8 (another node's read: it converts) */
	KV_READ_BYTEA,				/* value as bytea */
	KV_READ_EXISTS				/* only whether it exists */
} KvReadMode;

extern void KvStorePrefetch(KvKeyspaceRef ks, const char *key, uint32 keylen,
							bool chain);
extern void KvStorePrefetchCommit(KvPtr p, bool next);
extern bool KvStoreGet(KvKeyspaceRef ks, const char *key, uint32 keylen,
					   KvReadMode mode, struct varlena **result);

/* scan.c: whole-keyspace reads, in bounded batches */
typedef void (*KvScanCallback) (void *arg, const char *key, uint32 keylen,
								const char *value, uint32 vallen, bool binary);
extern void KvStoreScan(KvKeyspaceRef ks, const char *prefix, uint32 prefixlen,
						KvScanCallback callback, void *arg);

/* store.c: writes */
typedef enum KvWriteOp
{
	KV_OP_PUT,
	KV_OP_DELETE,
	KV_OP_INCR,
	KV_OP_CAS
} KvWriteOp;

typedef struct KvWrite
{
	KvWriteOp	op;
	/* PUT and CAS: the new value */
	const char *value;
	uint32		vallen;
	bool		binary;
	/* CAS: the expected value; expected == NULL means "must not exist" */
	const char *expected;
	uint32		expectedlen;
	/* INCR */
	int64		delta;
	/* results */
	bool		existed;		/* DELETE: key was visible */
	bool		swapped;		/* CAS: comparison matched, write done */
	int64		result;			/* INCR: the new value */
} KvWrite;

extern void KvStoreWrite(KvKeyspaceRef ks, const char *key, uint32 keylen,
						 KvWrite *w);

/* store.c: end of transaction, called from txn.c (and the apply path) */
extern void KvStoreBeginCommit(KvLsn commit_end);
extern void KvStoreCommitEntry(KvPtr p);
extern void KvStoreAbortEntry(KvPtr p);
extern void KvStoreEndXact(void);
extern void KvStoreWakeWaiters(void);
extern bool KvStoreOwnerCommitting(int slot);

/* owner slots (store.c): a shared pool */
extern PGDLLIMPORT int KvMyOwnerSlot;	/* -1 until the first write */
extern int	KvStoreMySlot(void);
extern void KvStoreReleaseSlot(void);
extern int	KvStoreProcSlot(int procno);
extern int	KvStoreSlotProc(int s);
extern void KvStoreRestampEntry(KvPtr p, uint32 lockid, bool sub);
extern KvPtr KvStoreOlderOwnVersion(KvPtr p);

/* store.c: applying a logged transaction (recovery, followers) */
extern KvPtr KvStoreApplyWrite(uint16 ks, const char *key, uint32 keylen,
							   const char *value, uint32 vallen, bool binary,
							   bool tombstone, bool alone);

/* store.c: keyspace drop support */
extern bool KvStoreWaitKeyspaceWriters(uint16 ks, const char *name);
extern void KvStoreRemoveKeyspace(uint16 ks);

/* store.c: recovery */
extern bool KvStoreRecoverWrite(uint16 ks, const char *key, uint32 keylen,
								const char *value, uint32 vallen, bool binary,
								int chunk);

/*
 * scan.c: snapshots.  The callback gets a copy whose next field holds the
 * original's address (for its heap chunk, KvAllocChunkOf); NULL ends a
 * partition.
 */
typedef void (*KvSnapshotCallback) (void *arg, const KvEntry *e);
extern void KvStoreScanCommitted(KvSnapshotCallback callback, void *arg);

/* store.c: while recovery runs, compaction moves entries of any size */
extern void KvStoreCompactUnbounded(bool on);

/* a follower's store replaced by a snapshot (store.c, "Rebuilding") */
extern uint32 KvStoreRebuildCount(void);
extern void KvStoreReportRebuilding(void) pg_attribute_noreturn();
extern void KvStoreClear(void);
extern void KvStoreEndRebuild(void);

#define KvStoreRebuilding()	((KvStoreRebuildCount() & 1) != 0)

/* text.c: messages (more in text.h) */
extern char *KvKeyExcerpt(const char *key, uint32 keylen);

/* store.c: monitoring */
extern uint64 KvStoreMemoryUsed(void);
extern uint64 KvStoreMemoryLimit(void);

#endif							/* KVEXT_STORE_H */
