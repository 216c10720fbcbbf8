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
 * Create and drop are transactional, as CREATE TABLE and DROP TABLE are.
 * A slot being created is KS_CREATING and a slot being dropped KS_DROPPING,
 * with the transaction's top-level xid and backend: the creating
 * transaction sees its keyspace and others do not; the dropping
 * transaction no longer sees it and others still read it.  A writer, a
 * creator of the same name or another dropper waits for that transaction
 * (XactLockTableWait: deadlocks and lock_timeout apply).  The change is an
 * item of the write set (writeset.c), so a rollback, of the transaction or
 * of a savepoint, undoes it (KvKeyspaceEndXact), and it is logged as an op
 * of the transaction's TXN record, in its place among the writes.  At
 * commit a created keyspace becomes KS_ACTIVE; a dropped one becomes
 * KS_DROPPED (seen by nobody), loses its entries and is freed.
 *
 * A drop sets the slot's drop_xact (not its generation: readers go on
 * reading), so that a writer that resolved the keyspace before waits for it
 * under the partition lock, then waits until no other transaction has a
 * pending entry in it, as DROP TABLE waits for the table's lock (a writer
 * that then writes into it again waits for the drop: the deadlock detector
 * ends one of the two).  If this transaction has one, the drop fails
 * (55006) and the abort undoes the mark, because a write set must never
 * point at a freed entry.  The generation changes when the drop commits.
 * Snapshots keep ACTIVE and DROPPING keyspaces (see
 * KvKeyspaceListForSnapshot).
 * Lock order: keyspace lock is never held while taking a partition lock.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "parser/scansup.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"

#include "kvext.h"
#include "store/keyspace.h"
#include "store/stats.h"
#include "store/store.h"
#include "store/text.h"
#include "store/waits.h"
#include "store/writeset.h"

static LWLock *keyspace_lock = NULL;

static bool create_keyspace(const char *name, bool if_not_exists, bool internal);

/* this backend's last resolution */
static struct
{
	uint32		dir_gen;
	int			len;
	char		name[NAMEDATALEN];
	KvKeyspaceRef ref;
	bool		writable;		/* not being dropped by another transaction */
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
	/* a name too long to exist is shown cut short, as in KvKeyspaceCheckName */
	if (len >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("keyspace \"%s...\" does not exist",
						KvNameExcerpt(name, (uint32) len)),
				 errdetail("Keyspace names are at most %d bytes; this one has %d.",
						   NAMEDATALEN - 1, len)));
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("keyspace \"%s\" does not exist", KvNameExcerpt(name, (uint32) len)),
			 errhint("Create it with kv_create_keyspace(), or list keyspaces with kv_keyspaces().")));
}

/*
 * is_mine
 *		Is slot ks's uncommitted create or drop this transaction's?  A
 *		parallel worker acts for its leader.
 */
static inline bool
is_mine(const KvKeyspace *ks)
{
	return ks->xact_proc == KvMyOwnerSlot ||
		(MyProc->lockGroupLeader != NULL && MyProc->lockGroupLeader != MyProc &&
		 ks->xact_proc == KvStoreProcSlot(MyProc->lockGroupLeader->pgprocno));
}

/*
 * How a slot with a given name looks to this transaction:
 *	VIS_NONE	it does not exist (free, dropped, abandoned, another
 *				transaction's uncommitted create, this transaction's
 *				uncommitted drop)
 *	VIS_MINE	this transaction created it (not committed yet)
 *	VIS_ACTIVE	committed and not being dropped
 *	VIS_DROPPING another transaction is dropping it: readable, but a writer
 *				(or another creator or dropper) waits for that transaction
 * Another transaction's create or drop takes effect for everyone the moment
 * it publishes its commit (KvStoreOwnerCommitting), together with its
 * writes, as entries do (store.c).
 */
typedef enum SlotVisibility
{
	VIS_NONE,
	VIS_MINE,
	VIS_ACTIVE,
	VIS_DROPPING
} SlotVisibility;

static SlotVisibility
visibility(const KvKeyspace *ks)
{
	switch (ks->state)
	{
		case KS_ACTIVE:
			return VIS_ACTIVE;
		case KS_CREATING:
			if (is_mine(ks))
				return VIS_MINE;
			return KvStoreOwnerCommitting(ks->xact_proc) ? VIS_ACTIVE : VIS_NONE;
		case KS_DROPPING:
			if (is_mine(ks) || KvStoreOwnerCommitting(ks->xact_proc))
				return VIS_NONE;
			return VIS_DROPPING;
		default:
			return VIS_NONE;
	}
}

static inline bool
name_is(const KvKeyspace *ks, const char *name, int len)
{
	return strncmp(ks->name, name, len) == 0 && ks->name[len] == '\0';
}

/*
 * find_slot
 *		The slot named name that this transaction sees, or -1; *vis gets how
 *		it sees it.  With waitxid, also reports (as *waitxid) another
 *		transaction's uncommitted create of the same name, which a creator
 *		must wait for.  Caller holds the keyspace lock.
 */
static int
find_slot(const char *name, int len, SlotVisibility *vis, TransactionId *waitxid)
{
	int			found = -1;

	if (waitxid)
		*waitxid = InvalidTransactionId;
	*vis = VIS_NONE;
	if (len >= NAMEDATALEN)
		return -1;
	for (int i = 0; i < kvext_max_keyspaces; i++)
	{
		KvKeyspace *ks = &KvKeyspaces[i];
		SlotVisibility v;

		if (ks->state == KS_FREE || !name_is(ks, name, len))
			continue;
		v = visibility(ks);
		if (v != VIS_NONE)
		{
			found = i;
			*vis = v;
		}
		else if (waitxid && ks->state == KS_CREATING && !is_mine(ks) &&
				 !KvStoreOwnerCommitting(ks->xact_proc))
			*waitxid = ks->xact;
	}
	return found;
}

/*
 * wait_for_keyspace_xact
 *		Wait for transaction xid, which creates or drops keyspace name (len
 *		bytes, not terminated), published for kv_locks() and named in the
 *		error context of the wait (waits.c).  Caller holds no LWLock.
 */
static void
wait_for_keyspace_xact(const char *name, int len, TransactionId xid)
{
	char		ksname[NAMEDATALEN];
	KvWaitTarget target;

	len = Min(len, NAMEDATALEN - 1);
	memcpy(ksname, name, len);
	ksname[len] = '\0';
	target = (KvWaitTarget) {ksname, NULL, 0, -1, {KV_LOCK_XID, xid, 0}};
	KvWaitOnLock(&target);
}

/*
 * KvKeyspaceTryResolve
 *		Name -> reference in *ref; false for an unknown name.  The name need
 *		not be NUL-terminated.  For a write, a keyspace that another
 *		transaction is dropping is waited for (its drop may commit or roll
 *		back); a read goes on reading it.  Costs one atomic read when the
 *		name is the one this backend resolved last and no keyspace changed
 *		since.
 */
bool
KvKeyspaceTryResolve(const char *name, int len, bool write, KvKeyspaceRef *ref)
{
	for (;;)
	{
		uint32		gen = pg_atomic_read_u32(KvKeyspaceDirGen);
		int			slot;
		SlotVisibility vis;
		TransactionId xact;

		if (likely(cache.valid && cache.dir_gen == gen && cache.len == len &&
				   memcmp(cache.name, name, len) == 0 &&
				   (!write || cache.writable)))
		{
			*ref = cache.ref;
			return true;
		}

		LWLockAcquire(keyspace_lock, LW_SHARED);
		gen = pg_atomic_read_u32(KvKeyspaceDirGen);
		slot = find_slot(name, len, &vis, NULL);
		if (slot < 0)
		{
			LWLockRelease(keyspace_lock);
			return false;
		}
		if (write && vis == VIS_DROPPING)
		{
			xact = KvKeyspaces[slot].xact;
			LWLockRelease(keyspace_lock);
			wait_for_keyspace_xact(name, len, xact);
			continue;
		}
		cache.ref.id = (uint16) slot;
		cache.ref.gen = pg_atomic_read_u32(&KvKeyspaces[slot].gen);
		cache.writable = (vis != VIS_DROPPING);
		LWLockRelease(keyspace_lock);

		cache.dir_gen = gen;
		cache.len = len;
		memcpy(cache.name, name, len);
		cache.valid = true;
		*ref = cache.ref;
		return true;
	}
}

/*
 * KvKeyspaceResolve
 *		KvKeyspaceTryResolve, raising 42704 for an unknown name.
 */
KvKeyspaceRef
KvKeyspaceResolve(const char *name, int len, bool write)
{
	KvKeyspaceRef ref;

	if (!KvKeyspaceTryResolve(name, len, write, &ref))
		KvReportNoKeyspace(name, len);
	return ref;
}

/* mark a slot's state change; caller holds the keyspace lock exclusively */
static void
bump(KvKeyspace *ks)
{
	pg_atomic_fetch_add_u32(&ks->gen, 1);
	pg_atomic_fetch_add_u32(KvKeyspaceDirGen, 1);
}

/*
 * KvKeyspaceCheckName
 *		Refuse a keyspace name that is empty or too long, and, for a name
 *		being created (new_name), one with leading or trailing whitespace or
 *		a control character: names are compared byte for byte (case
 *		matters), so "default", "default " and a tab would otherwise live
 *		side by side, looking alike.  Names created before these rules
 *		still load and can still be used and dropped.
 */
void
KvKeyspaceCheckName(const char *name, bool new_name)
{
	size_t		len = strlen(name);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("keyspace name must not be empty")));
	/*
	 * The name is shown cut to the longest valid one: a client can send a
	 * 1GB name, and the message goes to the server log as well.
	 */
	if (len >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("keyspace name \"%s...\" is too long",
						KvNameExcerpt(name, (uint32) len)),
				 errdetail("Keyspace names are at most %d bytes; this one has %zu.",
						   NAMEDATALEN - 1, len)));
	if (!new_name)
		return;
	if (scanner_isspace(name[0]) || scanner_isspace(name[len - 1]))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("keyspace name \"%s\" begins or ends with whitespace",
						KvNameExcerpt(name, strlen(name)))));
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) name[i] < 0x20 || (unsigned char) name[i] == 0x7F)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("keyspace name contains a control character (byte 0x%02x at byte %zu)",
							(unsigned char) name[i], i + 1)));
}

/*
 * KvKeyspaceCreate
 *		Create a keyspace in the current transaction: this transaction sees
 *		it at once, others when it commits, and a rollback (of the
 *		transaction or of the savepoint) removes it.  It is logged with the
 *		transaction's writes (txn.c).  Another transaction's uncommitted
 *		create of the same name is waited for, as a unique index waits.
 *		Returns false if it existed and if_not_exists.
 */
bool
KvKeyspaceCreate(const char *name, bool if_not_exists)
{
	KvKeyspaceCheckName(name, true);

	/*
	 * The name as stored must be UTF-8: kv_keyspaces() in every database
	 * reads it as text.  Only a SQL_ASCII database, which stores bytes as
	 * given, can hand in anything else.
	 */
	if (!pg_verify_mbstr(PG_UTF8, name, (int) strlen(name), true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("keyspace name \"%s\" is not valid UTF-8",
						KvNameExcerpt(name, (uint32) strlen(name))),
				 errdetail("Keyspace names are shared by every database of the server, and kvext stores them as UTF-8.")));
	return create_keyspace(name, if_not_exists, false);
}

/*
 * KvKeyspaceCreateInternal
 *		Create kvext's own keyspace name (acl.c) in the current transaction,
 *		unless it exists, silently.
 */
void
KvKeyspaceCreateInternal(const char *name)
{
	(void) create_keyspace(name, true, true);
}

/* KvKeyspaceCreate's work; internal: no NOTICE when it exists */
static bool
create_keyspace(const char *name, bool if_not_exists, bool internal)
{
	TransactionId myxid;
	int			len = strlen(name);
	int			slot;

	/* things that may fail come first: the write-set item, the xid */
	KvWsReserve();
	/* before any lock: may wait for a free owner slot, or refuse */
	(void) KvStoreMySlot();
	KvWsCheckKeyspaceRoom();
	myxid = GetTopTransactionId();

	for (;;)
	{
		SlotVisibility vis;
		TransactionId waitxid;
		KvKeyspace *ks;

		LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
		slot = find_slot(name, len, &vis, &waitxid);
		if (vis == VIS_DROPPING)
			waitxid = KvKeyspaces[slot].xact;
		if (TransactionIdIsValid(waitxid))
		{
			LWLockRelease(keyspace_lock);
			wait_for_keyspace_xact(name, len, waitxid);
			continue;
		}
		if (slot >= 0)
		{
			LWLockRelease(keyspace_lock);
			if (if_not_exists)
			{
				if (internal)
					return false;
				ereport(NOTICE,
						(errcode(ERRCODE_DUPLICATE_OBJECT),
						 errmsg("keyspace \"%s\" already exists, skipping",
								KvNameExcerpt(name, strlen(name)))));
				return false;
			}
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("keyspace \"%s\" already exists",
							KvNameExcerpt(name, strlen(name)))));
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
		KvStatsResetKeyspace((uint16) slot);
		pg_atomic_write_u64(&ks->nentries, 0);
		pg_atomic_write_u64(&ks->mem_bytes, 0);
		strlcpy(ks->name, name, NAMEDATALEN);
		ks->xact = myxid;
		ks->xact_proc = KvMyOwnerSlot;
		ks->state = KS_CREATING;
		bump(ks);
		LWLockRelease(keyspace_lock);

		/* cannot fail (reserved above); a rollback undoes the create */
		KvWsPushKeyspace((uint16) slot, KV_WS_KS_CREATE, KS_FREE);
		return true;
	}
}

/*
 * KvKeyspaceDrop
 *		Drop a keyspace and all its keys in the current transaction: it is
 *		gone for this transaction at once; others keep reading it until the
 *		drop commits, and their writes wait for this transaction to end.  A
 *		rollback brings it back.  It waits for the transactions that have
 *		uncommitted writes in it, and fails (55006) if this one has: a
 *		write set must never point at a freed entry.  Returns false if it
 *		did not exist and if_exists.
 */
bool
KvKeyspaceDrop(const char *name, bool if_exists)
{
	TransactionId myxid;
	int			len = strlen(name);
	int			slot;
	KvKeyspace *ks;
	uint8		prev_state;

	KvKeyspaceCheckName(name, false);
	if (strcmp(name, KVEXT_DEFAULT_KEYSPACE) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop keyspace \"%s\"", KvNameExcerpt(name, strlen(name))),
				 errdetail("The default keyspace always exists.")));
	if (KvKeyspaceIsAcl(name))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot drop kvext's own keyspace")));
	KvWsReserve();
	/* before any lock: may wait for a free owner slot, or refuse */
	(void) KvStoreMySlot();
	KvWsCheckKeyspaceRoom();
	myxid = GetTopTransactionId();

	for (;;)
	{
		SlotVisibility vis;

		LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
		slot = find_slot(name, len, &vis, NULL);
		if (vis == VIS_DROPPING)
		{
			TransactionId xact = KvKeyspaces[slot].xact;

			LWLockRelease(keyspace_lock);
			wait_for_keyspace_xact(name, len, xact);
			continue;
		}
		break;
	}
	if (slot < 0)
	{
		LWLockRelease(keyspace_lock);
		if (if_exists)
		{
			ereport(NOTICE,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("keyspace \"%s\" does not exist, skipping",
							KvNameExcerpt(name, strlen(name)))));
			return false;
		}
		KvReportNoKeyspace(name, len);
	}

	/*
	 * Mark it.  A keyspace this transaction created is simply abandoned:
	 * nobody else sees it.  A committed one becomes DROPPING, its
	 * generation unchanged, so that readers go on reading it; drop_xact
	 * makes a writer that resolved it before wait for us under its
	 * partition lock (store.c, lock_key), and one resolving it from now on
	 * waits in KvKeyspaceResolve.  So the check below sees every pending
	 * entry, and none can be added until we end.
	 */
	ks = &KvKeyspaces[slot];
	prev_state = (uint8) ks->state;
	if (ks->state == KS_CREATING)
		ks->state = KS_ABANDONED;
	else
	{
		ks->state = KS_DROPPING;
		ks->xact = myxid;
		ks->xact_proc = KvMyOwnerSlot;
		pg_atomic_write_u32(&ks->drop_xact, myxid);
	}
	pg_atomic_fetch_add_u32(KvKeyspaceDirGen, 1);
	LWLockRelease(keyspace_lock);
	/* the writers' check must see drop_xact before we scan */
	pg_memory_barrier();

	/* from here on an error (or a rollback) undoes the mark */
	KvWsPushKeyspace((uint16) slot, KV_WS_KS_DROP, prev_state);

	if (!KvStoreWaitKeyspaceWriters((uint16) slot, name))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("keyspace \"%s\" has uncommitted writes of this transaction",
						KvNameExcerpt(name, strlen(name))),
				 errdetail("A transaction cannot drop a keyspace it has written to."),
				 errhint("Drop it in another transaction.")));
	return true;
}

/*
 * remove_and_free
 *		Remove every entry of keyspace id, which nobody can see any more,
 *		then free its slot.  Takes the keyspace lock itself.
 */
static void
remove_and_free(uint16 id)
{
	KvKeyspace *ks = &KvKeyspaces[id];

	KvStoreRemoveKeyspace(id);
	LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
	ks->state = KS_FREE;
	ks->name[0] = '\0';
	bump(ks);
	pg_atomic_write_u32(&ks->drop_xact, InvalidTransactionId);
	LWLockRelease(keyspace_lock);
}

/*
 * KvKeyspaceEndXact
 *		End of the transaction (or subtransaction) that created or dropped
 *		keyspace id (txn.c): at commit, a created keyspace becomes active
 *		and a dropped one loses its entries and its slot; at abort, a
 *		created one is freed and a dropped one gets its previous state back
 *		(a drop changes the generation only when it commits).
 *		Called in write-set order at commit, in reverse order at abort.
 *		Never fails.
 */
void
KvKeyspaceEndXact(uint16 id, uint8 kind, uint8 prev_state, bool commit)
{
	KvKeyspace *ks = &KvKeyspaces[id];

	LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
	if (kind == KV_WS_KS_CREATE)
	{
		/* a keyspace created and dropped in one transaction is ABANDONED */
		if (!commit)
		{
			ks->state = KS_FREE;
			ks->name[0] = '\0';
		}
		else if (ks->state == KS_CREATING)
			ks->state = KS_ACTIVE;
		bump(ks);
		LWLockRelease(keyspace_lock);
		return;
	}

	if (!commit)
	{
		/*
		 * Back to the state it had; its generation never changed, so every
		 * reference taken before or during the drop stays valid.
		 */
		ks->state = prev_state;
		pg_atomic_write_u32(&ks->drop_xact, InvalidTransactionId);
		pg_atomic_fetch_add_u32(KvKeyspaceDirGen, 1);
		LWLockRelease(keyspace_lock);
		return;
	}

	/*
	 * A committed drop: nobody sees it from now on.  The generation is
	 * bumped before drop_xact is cleared (in remove_and_free): a writer
	 * reads them the other way round (store.c, lock_key).
	 */
	ks->state = KS_DROPPED;
	bump(ks);
	LWLockRelease(keyspace_lock);
	remove_and_free(id);
}

/*
 * KvKeyspaceCommitStarting
 *		This backend published its commit, and its transaction created or
 *		dropped keyspaces: their visibility changed (see visibility()), so
 *		every backend's cached resolution must be looked at again.
 */
void
KvKeyspaceCommitStarting(void)
{
	pg_atomic_fetch_add_u32(KvKeyspaceDirGen, 1);
}

/*
 * KvKeyspaceName
 *		Copy keyspace id's name (for the log record of a create).
 */
void
KvKeyspaceName(uint16 id, char *name)
{
	LWLockAcquire(keyspace_lock, LW_SHARED);
	strlcpy(name, KvKeyspaces[id].name, NAMEDATALEN);
	LWLockRelease(keyspace_lock);
}

/* copy the keyspaces visible as asked; see the two wrappers below */
static int
list_keyspaces(KvKeyspaceRef *refs, char (*names)[NAMEDATALEN],
			   bool for_snapshot)
{
	int			n = 0;

	LWLockAcquire(keyspace_lock, LW_SHARED);
	for (int i = 0; i < kvext_max_keyspaces; i++)
	{
		KvKeyspace *ks = &KvKeyspaces[i];

		if (for_snapshot ? (ks->state != KS_ACTIVE && ks->state != KS_DROPPING)
			: (visibility(ks) == VIS_NONE || KvKeyspaceIsAcl(ks->name)))
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
 *		Copy the keyspaces this transaction sees (references and names)
 *		into the caller's arrays of kvext_max_keyspaces elements; returns
 *		how many.
 */
int
KvKeyspaceList(KvKeyspaceRef *refs, char (*names)[NAMEDATALEN])
{
	return list_keyspaces(refs, names, false);
}

/*
 * KvKeyspaceListForSnapshot
 *		The committed keyspaces: active ones and those whose drop has not
 *		committed (it may still roll back, and if it commits, its TXN record
 *		comes after the snapshot's redo point, which it holds in flight).
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
	if (id == 0 || id >= kvext_max_keyspaces)
		return;
	remove_and_free(id);
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

/*
 * KvKeyspaceResetAll
 *		A follower's store is rebuilt from a snapshot (KvStoreClear, which
 *		has freed every entry): free every keyspace slot but "default"; the
 *		snapshot's keyspaces are created again as it loads.
 */
void
KvKeyspaceResetAll(void)
{
	LWLockAcquire(keyspace_lock, LW_EXCLUSIVE);
	for (int id = 1; id < kvext_max_keyspaces; id++)
	{
		KvKeyspace *ks = &KvKeyspaces[id];

		if (ks->state == KS_FREE)
			continue;
		ks->state = KS_FREE;
		ks->name[0] = '\0';
		bump(ks);
		pg_atomic_write_u32(&ks->drop_xact, InvalidTransactionId);
	}
	LWLockRelease(keyspace_lock);
}
