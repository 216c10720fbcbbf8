/*-------------------------------------------------------------------------
 *
 * keyspace.c
 *	  Named keyspaces: the directory in shared memory, name resolution with
 *	  a per-backend cache, create and drop.
 *
 * The directory is a fixed array of kvext.max_keyspaces slots; a slot's
 * index is the keyspace id stored in every entry.  Slot 0 is "default" and
 * always exists.
 *
 * Locking.  The keyspace lock (one LWLock) protects slot names and states.
 * Each slot's generation is an atomic counter bumped at every state change;
 * the store validates a KvKeyspaceRef by comparing generations while it
 * holds a partition lock, so it needs no keyspace lock on the hot path.
 * A global generation, also bumped at every change, lets each backend keep
 * its last name -> reference resolution without locking as long as nothing
 * changed.
 *
 * Create and drop take effect at once and are not transactional (like
 * sequences): a ROLLBACK does not undo them.  Drop proceeds in three steps:
 *   1. under the keyspace lock, mark the slot DROPPING and bump its
 *      generation: from now on no new read or write validates;
 *   2. look for uncommitted (pending) writes of any transaction in the
 *      keyspace, partition by partition; a writer that validated before
 *      step 1 holds its partition lock while adding its pending entry, so
 *      step 2 sees it.  If one is found, the slot goes back to ACTIVE and
 *      the drop fails (55006): a transaction's write set must never point
 *      at a freed entry;
 *   3. under the keyspace lock, log KS_DROP and mark the slot DROPPED;
 *      then remove every (committed) entry, and free the slot.
 * Snapshots keep ACTIVE and DROPPING keyspaces, not DROPPED ones (see
 * KvKeyspaceListForSnapshot).
 * Lock order: keyspace lock is never held while taking a partition lock.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "utils/builtins.h"

#include "kvext.h"
#include "store/stats.h"
#include "store/keyspace.h"
#include "store/store.h"
#include "log/wal.h"

static LWLock *keyspace_lock = NULL;

/* this backend's last resolution */
static struct
{
	uint32		dir_gen;
	int			len;
	char		name[NAMEDATALEN];
	KvKeyspaceRef ref;
	bool		valid;
}			cache;

/*
 * KvKeyspaceInit
 *		Remember the keyspace lock (shared memory startup).  The slots
 *		themselves are created with the store (store.c).
 */
void
KvKeyspaceInit(LWLock *lock)
{
	keyspace_lock = lock;
	cache.valid = false;
}

/*
 * KvReportNoKeyspace
 *		The error for an unknown keyspace name.
 */
void
KvReportNoKeyspace(const char *name, int len)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("keyspace \"%s\" does not exist", pnstrdup(name, len)),
			 errhint("Create it with kv_create_keyspace(), or list keyspaces with kv_keyspaces().")));
}

/* find an active slot by name; caller holds the keyspace lock */
static int
find_slot(const char *name, int len, bool include_dropping)
{
	if (len >= NAMEDATALEN)
		return -1;
	for (int i = 0; i < kvext_max_keyspaces; i++)
	{
		KvKeyspace *ks = &KvKeyspaces[i];

		if (ks->state == KS_ACTIVE ||
			(include_dropping &&
			 (ks->state == KS_DROPPING || ks->state == KS_DROPPED)))
		{
			if (strncmp(ks->name, name, len) == 0 && ks->name[len] == '\0')
				return i;
		}
	}
	return -1;
}

/*
 * KvKeyspaceResolve
 *		Name -> reference, raising 42704 for an unknown name.  The name need
 *		not be NUL-terminated.  Costs one atomic read when the name is the
 *		one this backend resolved last and no keyspace changed since.
 */
KvKeyspaceRef
KvKeyspaceResolve(const char *name, int len)
{
	uint32		gen = pg_atomic_read_u32(KvKeyspaceDirGen);
	int			slot;

	if (likely(cache.valid && cache.dir_gen == gen && cache.len == len &&
			   memcmp(cache.name, name, len) == 0))
		return cache.ref;

	LWLockAcquire(keyspace_lock, LW_SHARED);
	gen = pg_atomic_read_u32(KvKeyspaceDirGen);
	slot = find_slot(name, len, false);
	if (slot < 0)
	{
		LWLockRelease(keyspace_lock);
		KvReportNoKeyspace(name, len);
	}
	cache.ref.id = (uint16) slot;
	cache.ref.gen = pg_atomic_read_u32(&KvKeyspaces[slot].gen);
	LWLockRelease(keyspace_lock);

	cache.dir_gen = gen;
	cache.len = len;
	memcpy(cache.name, name, len);
	cache.valid = true;
	return cache.ref;
}

/*
 * log_keyspace
 *		Write and flush a KS_CREATE or KS_DROP record.  Creating and
 *		dropping keyspaces is rare and takes effect at once, so it is always
 *		durable before it is visible, whatever kvext.synchronous_commit says.
 */
static void
log_keyspace(uint8 type, uint16 id, const char *name)
{
	uint32		len = KvWalRecordPadLen(sizeof(KvWalRecord) + sizeof(KvWalKeyspace));
	char	   *rec = palloc0(len);
	KvWalKeyspace *ks = (KvWalKeyspace *) (rec + sizeof(KvWalRecord));

	ks->id = id;
	strlcpy(ks->name, name, NAMEDATALEN);
	KvWalFlush(KvWalInsert(rec, type, 0, InvalidTransactionId, InvalidKvLsn,
						   len, NULL));
	pfree(rec);
}

/* mark a slot's state change; caller holds the keyspace lock exclusively */
static void
bump(KvKeyspace *ks)
{
	pg_atomic_fetch_add_u32(&ks->gen, 1);
	pg_atomic_fetch_add_u32(KvKeyspaceDirGen, 1);
}

static void
check_name(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("keyspace name must not be empty")));
	if (len >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("keyspace name \"%s\" is too long", name),
				 errdetail("Keyspace names are at most %d bytes.", NAMEDATALEN - 1)));
}

/*
 * KvKeyspaceCreate
 *		Create a keyspace; returns false if it existed and if_not_exists.
 */
bool
KvKeyspaceCreate(const char *name, bool if_not_exists)
{
	int			slot = -1;
	KvKeyspace *ks;

	check_name(name);

	LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
	if (find_slot(name, strlen(name), true) >= 0)
	{
		LWLockRelease(keyspace_lock);
		if (if_not_exists)
		{
			ereport(NOTICE,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("keyspace \"%s\" already exists, skipping", name)));
			return false;
		}
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("keyspace \"%s\" already exists", name)));
	}
	for (int i = 1; i < kvext_max_keyspaces; i++)
	{
		if (KvKeyspaces[i].state == KS_FREE)
		{
			slot = i;
			break;
		}
	}
	if (slot < 0)
	{
		LWLockRelease(keyspace_lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many keyspaces"),
				 errdetail("kvext.max_keyspaces is %d.", kvext_max_keyspaces),
				 errhint("Drop a keyspace, or raise kvext.max_keyspaces and restart the server.")));
	}

	ks = &KvKeyspaces[slot];
	/* durable before visible; an error here leaves everything unchanged */
	log_keyspace(KV_REC_KS_CREATE, (uint16) slot, name);
	KvStatsResetKeyspace((uint16) slot);
	pg_atomic_write_u64(&ks->nentries, 0);
	pg_atomic_write_u64(&ks->mem_bytes, 0);
	strlcpy(ks->name, name, NAMEDATALEN);
	ks->state = KS_ACTIVE;
	bump(ks);
	LWLockRelease(keyspace_lock);
	return true;
}

/*
 * undo_dropping
 *		A drop failed: the keyspace is active again under its old
 *		generation, so references sessions took before the drop began stay
 *		valid (none can have been taken while it was DROPPING).
 */
static void
undo_dropping(KvKeyspace *ks, uint32 oldgen)
{
	LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
	ks->state = KS_ACTIVE;
	pg_atomic_write_u32(&ks->gen, oldgen);
	pg_atomic_fetch_add_u32(KvKeyspaceDirGen, 1);
	LWLockRelease(keyspace_lock);
}

/*
 * KvKeyspaceDrop
 *		Drop a keyspace and all its keys; returns false if it did not exist
 *		and if_exists.  See the file header for the protocol.
 */
bool
KvKeyspaceDrop(const char *name, bool if_exists)
{
	int			slot;
	KvKeyspace *ks;
	uint32		oldgen;

	check_name(name);
	if (strcmp(name, KVEXT_DEFAULT_KEYSPACE) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop keyspace \"%s\"", name),
				 errdetail("The default keyspace always exists.")));

	/* step 1: stop new reads and writes */
	LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
	slot = find_slot(name, strlen(name), false);
	if (slot < 0)
	{
		bool		dropping = find_slot(name, strlen(name), true) >= 0;

		LWLockRelease(keyspace_lock);
		if (dropping)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("keyspace \"%s\" is being dropped by another session", name)));
		if (if_exists)
		{
			ereport(NOTICE,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("keyspace \"%s\" does not exist, skipping", name)));
			return false;
		}
		KvReportNoKeyspace(name, strlen(name));
	}
	ks = &KvKeyspaces[slot];
	oldgen = pg_atomic_read_u32(&ks->gen);
	ks->state = KS_DROPPING;
	bump(ks);
	LWLockRelease(keyspace_lock);

	/*
	 * Steps 2 and 3 raise no error and must not be cancelled half-way, or
	 * the slot would stay DROPPING: hold interrupts.  They are sweeps over
	 * the bucket array, without I/O.
	 */
	HOLD_INTERRUPTS();

	/* step 2: refuse while any transaction has uncommitted writes in it */
	if (KvStoreKeyspaceHasPending((uint16) slot))
	{
		undo_dropping(ks, oldgen);
		RESUME_INTERRUPTS();
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("keyspace \"%s\" has uncommitted writes", name),
				 errdetail("A transaction, possibly this one, has written to the keyspace and not yet ended."),
				 errhint("Retry once the writing transactions have committed or rolled back.")));
	}

	/*
	 * Log the drop; if that fails, the keyspace stays.  Logging and the
	 * move to DROPPED happen under the keyspace lock, where the
	 * checkpointer reads the directory after taking its redo point: a
	 * snapshot then either keeps the keyspace (its KS_DROP follows the
	 * redo point and is replayed) or leaves it out (the drop is logged).
	 */
	PG_TRY();
	{
		LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
		log_keyspace(KV_REC_KS_DROP, (uint16) slot, name);
		ks->state = KS_DROPPED;
		LWLockRelease(keyspace_lock);
	}
	PG_CATCH();
	{
		if (LWLockHeldByMe(keyspace_lock))
			LWLockRelease(keyspace_lock);
		undo_dropping(ks, oldgen);
		RESUME_INTERRUPTS();
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* step 3: remove its entries and free the slot */
	KvStoreRemoveKeyspace((uint16) slot);

	LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
	ks->state = KS_FREE;
	ks->name[0] = '\0';
	bump(ks);
	LWLockRelease(keyspace_lock);
	RESUME_INTERRUPTS();
	return true;
}

/* copy the keyspaces in the given states; see the two wrappers below */
static int
list_keyspaces(KvKeyspaceRef *refs, char (*names)[NAMEDATALEN],
			   bool include_dropping)
{
	int			n = 0;

	LWLockAcquire(keyspace_lock, LW_SHARED);
	for (int i = 0; i < kvext_max_keyspaces; i++)
	{
		KvKeyspace *ks = &KvKeyspaces[i];

		if (ks->state != KS_ACTIVE &&
			!(include_dropping && ks->state == KS_DROPPING))
			continue;
		refs[n].id = (uint16) i;
		refs[n].gen = pg_atomic_read_u32(&ks->gen);
		strlcpy(names[n], ks->name, NAMEDATALEN);
		n++;
	}
	LWLockRelease(keyspace_lock);
	return n;
}

/*
 * KvKeyspaceList
 *		Copy the active keyspaces (references and names) into the caller's
 *		arrays of kvext_max_keyspaces elements; returns how many.
 */
int
KvKeyspaceList(KvKeyspaceRef *refs, char (*names)[NAMEDATALEN])
{
	return list_keyspaces(refs, names, false);
}

/*
 * KvKeyspaceListForSnapshot
 *		Like KvKeyspaceList, but also the keyspaces whose drop has not been
 *		logged yet (DROPPING): the drop may still fail, and if it succeeds
 *		its KS_DROP record comes after the snapshot's redo point.
 */
int
KvKeyspaceListForSnapshot(KvKeyspaceRef *refs, char (*names)[NAMEDATALEN])
{
	return list_keyspaces(refs, names, true);
}

/*
 * KvKeyspaceRecoverCreate
 *		Replay of KS_CREATE (and snapshot loading): slot id is keyspace
 *		name.  Idempotent.
 */
void
KvKeyspaceRecoverCreate(uint16 id, const char *name)
{
	KvKeyspace *ks;

	if (id >= kvext_max_keyspaces)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("keyspace \"%s\" in the kvext log has id %u, beyond kvext.max_keyspaces (%d)",
						name, id, kvext_max_keyspaces),
				 errhint("Restore kvext.max_keyspaces to at least %u and restart.", id + 1)));
	ks = &KvKeyspaces[id];

	LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
	if (ks->state == KS_ACTIVE && strcmp(ks->name, name) == 0)
	{
		LWLockRelease(keyspace_lock);
		return;
	}
	LWLockRelease(keyspace_lock);

	/* the slot held another keyspace: its drop was not logged yet */
	KvStoreRemoveKeyspace(id);

	LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
	strlcpy(ks->name, name, NAMEDATALEN);
	ks->state = KS_ACTIVE;
	bump(ks);
	LWLockRelease(keyspace_lock);
}

/*
 * KvKeyspaceRecoverDrop
 *		Replay of KS_DROP.  Idempotent.
 */
void
KvKeyspaceRecoverDrop(uint16 id)
{
	KvKeyspace *ks;

	if (id == 0 || id >= kvext_max_keyspaces)
		return;
	ks = &KvKeyspaces[id];
	KvStoreRemoveKeyspace(id);
	LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
	ks->state = KS_FREE;
	ks->name[0] = '\0';
	bump(ks);
	LWLockRelease(keyspace_lock);
}

/*
 * KvKeyspaceIdIsActive
 *		Is slot id an active keyspace?  For replay sanity checks.
 */
bool
KvKeyspaceIdIsActive(uint16 id)
{
	bool		active;

	if (id >= kvext_max_keyspaces)
		return false;
	LWLockAcquire(keyspace_lock, LW_SHARED);
	active = (KvKeyspaces[id].state == KS_ACTIVE);
	LWLockRelease(keyspace_lock);
	return active;
}
