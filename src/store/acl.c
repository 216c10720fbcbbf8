/*-------------------------------------------------------------------------
 *
 * acl.c
 *	  Keyspace owners and rights.
 *
 * Every keyspace has an owner (the role that created it) and read and
 * write rights granted to roles or to public.  A superuser, and a member
 * of the owning role, has every right and alone drops the keyspace or
 * changes its rights; others need the right a call asks for, held
 * directly or through role membership, as has_privs_of_role() decides for
 * GRANT.  "default" and the keyspaces created before rights existed have
 * no owner: only superusers use them until one grants rights.
 *
 * Storage.  A keyspace's owner and grants are one value in the internal
 * keyspace KVEXT_ACL_KEYSPACE, under the keyspace's name.  So they are
 * written in the transaction that creates the keyspace or changes them,
 * take its key lock (two sessions granting on one keyspace wait for each
 * other, with deadlock detection and lock_timeout), and are logged,
 * replicated, snapshotted and recovered with the data, by the code that
 * does it for every key.  The internal keyspace is created by the first
 * transaction that needs it; sessions cannot name it (KvAclCheck).
 *
 * Roles are named, not identified by OID: a group's nodes are separate
 * servers, whose roles have different OIDs, and a name is what the
 * administrator creates on each.  A grant to a role that does not exist on
 * a node gives nothing there.  So that a name cannot pass to another role,
 * DROP ROLE and ALTER ROLE ... RENAME of a role that owns a keyspace or
 * holds rights fail (KvAclCheckRole, from the utility hook); revoke the
 * rights, or drop the keyspace, first.
 *
 * The value: a format byte (1), the owner's name and a NUL (an empty name:
 * no owner), then per grant a rights byte (KV_RIGHT_*) and the role's name
 * and a NUL.
 *
 * Caching.  A check costs a few atomic reads when this backend checked the
 * same keyspace for the same user before and nothing changed since:
 * KvKeyspaceDirGen, which every committed change of rights also bumps
 * (KvAclNoteCommit, before the change can be seen), and KvAclLastCommit,
 * the end of the COMMIT record of the last change, which must have been
 * visible (KvWalVisiblePos) when the cached answer was computed.  A change
 * of role membership or of a role clears the cache (syscache callbacks),
 * and a transaction that changed rights itself does not use it.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/syscache.h"

#include "log/wal.h"
#include "store/acl.h"
#include "store/keyspace.h"
#include "store/text.h"
#include "store/writeset.h"

#define ACL_FORMAT			1
/* grants one keyspace may hold */
#define KVEXT_ACL_MAX_ITEMS	100
#define ACL_PUBLIC			"public"

/* a keyspace's owner and grants, parsed */
typedef struct KsAcl
{
	char		owner[NAMEDATALEN]; /* "" if none */
	int			nitems;
	KvAclItem	items[KVEXT_ACL_MAX_ITEMS];
} KsAcl;

/* this backend's answers: rights of a user on a keyspace */
#define ACL_CACHE_SIZE		16
typedef struct AclCacheEntry
{
	bool		valid;
	uint16		id;
	uint32		gen;			/* the keyspace slot's generation */
	Oid			user;
	int			rights;			/* KV_RIGHT_*, or -1 for owner */
} AclCacheEntry;

static AclCacheEntry acl_cache[ACL_CACHE_SIZE];
static uint32 acl_cache_dir_gen = 0;	/* KvKeyspaceDirGen when filled */
static KvLsn acl_cache_visible = 0; /* KvWalVisiblePos when filled */
static bool acl_dirty = false;	/* this transaction changed rights */
static bool acl_callbacks = false;

#define RIGHTS_OWNER		(-1)

static void
acl_cache_reset(Datum arg, int cacheid, uint32 hashvalue)
{
	for (int i = 0; i < ACL_CACHE_SIZE; i++)
		acl_cache[i].valid = false;
}

/*
 * acl_ref
 *		The internal keyspace, for a read (false if it does not exist yet)
 *		or a write (created in this transaction if need be).
 */
static bool
acl_ref(bool write, KvKeyspaceRef *ref)
{
	int			len = strlen(KVEXT_ACL_KEYSPACE);

	if (KvKeyspaceTryResolve(KVEXT_ACL_KEYSPACE, len, write, ref))
		return true;
	if (!write)
		return false;
	KvKeyspaceCreateInternal(KVEXT_ACL_KEYSPACE);
	*ref = KvKeyspaceResolve(KVEXT_ACL_KEYSPACE, len, true);
	return true;
}

/*
 * parse_acl
 *		Keyspace ksname's owner and grants from their stored value (len
 *		bytes at p); a damaged value is an error (XX001).
 */
static void
parse_acl(const char *ksname, const char *p, Size len, KsAcl *acl)
{
	const char *end = p + len;
	const char *nul;

	acl->owner[0] = '\0';
	acl->nitems = 0;
	if (p >= end || *p != ACL_FORMAT)
		goto bad;
	p++;
	nul = memchr(p, '\0', end - p);
	if (nul == NULL || nul - p >= NAMEDATALEN)
		goto bad;
	memcpy(acl->owner, p, nul - p + 1);
	p = nul + 1;
	while (p < end)
	{
		KvAclItem  *item;

		if (acl->nitems >= KVEXT_ACL_MAX_ITEMS || end - p < 2)
			goto bad;
		item = &acl->items[acl->nitems];
		item->rights = (unsigned char) *p++;
		nul = memchr(p, '\0', end - p);
		if (nul == NULL || nul - p >= NAMEDATALEN ||
			(item->rights & ~KV_RIGHT_ALL) != 0)
			goto bad;
		memcpy(item->role, p, nul - p + 1);
		p = nul + 1;
		acl->nitems++;
	}
	return;

bad:
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("the rights recorded for keyspace \"%s\" are damaged",
						KvNameExcerpt(ksname, strlen(ksname)))));
}

/*
 * read_acl
 *		Keyspace ksname's owner and grants as this transaction sees them;
 *		false (and an empty acl) if none are recorded.
 */
static bool
read_acl(const char *ksname, KsAcl *acl)
{
	KvKeyspaceRef ref;
	struct varlena *v;

	acl->owner[0] = '\0';
	acl->nitems = 0;
	if (!acl_ref(false, &ref) ||
		!KvStoreGet(ref, ksname, strlen(ksname), KV_READ_BYTEA, &v))
		return false;
	parse_acl(ksname, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v), acl);
	pfree(v);
	return true;
}

/* store acl as keyspace ksname's owner and grants, in this transaction */
static void
write_acl(const char *ksname, const KsAcl *acl)
{
	KvKeyspaceRef ref;
	StringInfoData buf;
	KvWrite		w = {0};

	initStringInfo(&buf);
	appendStringInfoChar(&buf, ACL_FORMAT);
	appendBinaryStringInfo(&buf, acl->owner, strlen(acl->owner) + 1);
	for (int i = 0; i < acl->nitems; i++)
	{
		appendStringInfoChar(&buf, (char) acl->items[i].rights);
		appendBinaryStringInfo(&buf, acl->items[i].role,
							   strlen(acl->items[i].role) + 1);
	}
	(void) acl_ref(true, &ref);
	w.op = KV_OP_PUT;
	w.value = buf.data;
	w.vallen = buf.len;
	w.binary = true;
	KvStoreWrite(ref, ksname, strlen(ksname), &w);
	acl_dirty = true;
	pfree(buf.data);
}

/*
 * lock_role
 *		Keep role (not "public") from being dropped or renamed until this
 *		transaction ends, as a GRANT recording a dependency does
 *		(shdepLockAndCheckObject): a share lock on the role, which DROP
 *		ROLE and the utility hook's check before ALTER ROLE ... RENAME
 *		(KvAclLockRole) take exclusively, then a check that it still exists
 *		under that name (42704 otherwise).
 */
static void
lock_role(const char *role)
{
	Oid			roleid = get_role_oid(role, false);

	LockSharedObject(AuthIdRelationId, roleid, 0, AccessShareLock);
	if (get_role_oid(role, true) != roleid)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" was dropped or renamed meanwhile", role)));
}

/*
 * KvAclLockRole
 *		The utility hook, before DROP ROLE or ALTER ROLE ... RENAME of role
 *		(if it exists): wait for the transactions naming it in rights
 *		(lock_role) to end, and keep others from naming it until this one
 *		ends, so that KvAclCheckRole sees every right that names it.
 */
void
KvAclLockRole(const char *role)
{
	Oid			roleid = get_role_oid(role, true);

	if (OidIsValid(roleid))
		LockSharedObject(AuthIdRelationId, roleid, 0, AccessExclusiveLock);
	/* a grant may have committed meanwhile: read the rights afresh */
	AcceptInvalidationMessages();
}

/* does role name (or "public") give its rights to user? */
static bool
role_applies(Oid user, const char *role)
{
	Oid			roleid;

	if (strcmp(role, ACL_PUBLIC) == 0)
		return true;
	roleid = get_role_oid(role, true);
	return OidIsValid(roleid) && has_privs_of_role(user, roleid);
}

/*
 * rights_of
 *		The rights user has on keyspace ksname: RIGHTS_OWNER for a superuser
 *		or a member of the owning role, else the union of the grants that
 *		apply to it.
 */
static int
rights_of(Oid user, const char *ksname)
{
	KsAcl	   *acl;
	int			rights = 0;

	if (superuser_arg(user))
		return RIGHTS_OWNER;
	acl = palloc(sizeof(KsAcl));
	read_acl(ksname, acl);
	if (acl->owner[0] != '\0' && role_applies(user, acl->owner))
		rights = RIGHTS_OWNER;
	else
	{
		for (int i = 0; i < acl->nitems; i++)
			if (role_applies(user, acl->items[i].role))
				rights |= acl->items[i].rights;
	}
	pfree(acl);
	return rights;
}

/*
 * cache_lookup
 *		This backend's cached answer for user on keyspace ref, if it is
 *		still valid (file header); NULL otherwise.  dir_gen: the directory
 *		generation the caller read.
 */
static inline const AclCacheEntry *
cache_lookup(KvKeyspaceRef ref, Oid user, uint32 dir_gen)
{
	const AclCacheEntry *c = &acl_cache[ref.id % ACL_CACHE_SIZE];

	if (dir_gen == acl_cache_dir_gen &&
		pg_atomic_read_u64(KvAclLastCommit) <= acl_cache_visible &&
		!acl_dirty &&
		c->valid && c->id == ref.id && c->gen == ref.gen && c->user == user)
		return c;
	return NULL;
}

/* rights_of through this backend's cache (file header) */
static int
cached_rights_of(Oid user, KvKeyspaceRef ref, const char *ksname)
{
	uint32		dir_gen = pg_atomic_read_u32(KvKeyspaceDirGen);
	AclCacheEntry *c = &acl_cache[ref.id % ACL_CACHE_SIZE];
	KvLsn		visible;
	int			rights;

	if (!acl_callbacks)
	{
		CacheRegisterSyscacheCallback(AUTHOID, acl_cache_reset, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, acl_cache_reset, (Datum) 0);
		acl_callbacks = true;
	}
	if (cache_lookup(ref, user, dir_gen) != NULL)
		return c->rights;

	if (dir_gen != acl_cache_dir_gen)
		acl_cache_reset((Datum) 0, 0, 0);
	/* the generation first, then what was visible, then the rights */
	pg_read_barrier();
	visible = KvWalVisiblePos();
	rights = rights_of(user, ksname);
	/* this transaction's own changes may still roll back: not cached */
	if (acl_dirty)
		return rights;
	acl_cache_dir_gen = dir_gen;
	acl_cache_visible = visible;
	c->valid = true;
	c->id = ref.id;
	c->gen = ref.gen;
	c->user = user;
	c->rights = rights;
	return rights;
}

static const char *
right_name(int rights)
{
	switch (rights)
	{
		case KV_RIGHT_READ:
			return "read";
		case KV_RIGHT_WRITE:
			return "write";
		default:
			return "read and write";
	}
}

/* the keyspace name of len bytes, terminated (for messages and lookups) */
static char *
ks_name(const char *name, int len)
{
	return pnstrdup(name, Min(len, NAMEDATALEN - 1));
}

/*
 * KvAclCheck
 *		Raise 42501 unless the current user has rights (KV_RIGHT_*) on the
 *		keyspace ref, named name (len bytes, not terminated).  The internal
 *		keyspace is nobody's to use.
 */
void
KvAclCheck(KvKeyspaceRef ref, const char *name, int len, int rights)
{
	Oid			user;
	int			have;
	char	   *ksname;

	/*
	 * Role membership committed by others since this transaction's last
	 * catalog access applies now, as it would to a table's privileges
	 * (whose lock processes these messages): cheap when there are none.
	 */
	AcceptInvalidationMessages();
	user = GetUserId();
	if (unlikely(len > 0 && name[0] == '\001'))
	{
		ksname = ks_name(name, len);
		if (KvKeyspaceIsAcl(ksname))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("keyspace \"%s\" is kvext's own", "\\001acl"),
					 errdetail("It holds the owners and rights of the keyspaces; kv_keyspaces() shows them.")));
	}
	else
		ksname = NULL;

	/* fast path: the cached answer, without copying the name */
	{
		const AclCacheEntry *c = cache_lookup(ref, user,
											  pg_atomic_read_u32(KvKeyspaceDirGen));

		if (likely(c != NULL &&
				   (c->rights == RIGHTS_OWNER || (c->rights & rights) == rights)))
			return;
	}

	if (ksname == NULL)
		ksname = ks_name(name, len);
	have = cached_rights_of(user, ref, ksname);
	if (have == RIGHTS_OWNER || (have & rights) == rights)
	{
		pfree(ksname);
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for keyspace \"%s\"",
						KvNameExcerpt(ksname, strlen(ksname))),
			 errdetail("Role \"%s\" needs the %s right on it.",
					   GetUserNameFromId(user, false), right_name(rights)),
			 errhint("The keyspace's owner or a superuser grants rights with kv_grant().")));
}

/*
 * KvAclCheckOwner
 *		Raise 42501 unless the current user is a superuser or a member of
 *		keyspace name's owning role; action names what needs it.
 */
void
KvAclCheckOwner(const char *name, const char *action)
{
	Oid			user = GetUserId();

	if (superuser_arg(user) || rights_of(user, name) == RIGHTS_OWNER)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("must be owner of keyspace \"%s\"",
						KvNameExcerpt(name, strlen(name))),
			 errdetail("Only its owner or a superuser may %s.", action)));
}

/*
 * acl_created
 *		Keyspace name was created in this transaction: the current user owns
 *		it, and nobody else has rights.
 */
static void
acl_created(const char *name)
{
	KsAcl	   *acl = palloc0(sizeof(KsAcl));

	strlcpy(acl->owner, GetUserNameFromId(GetUserId(), false), NAMEDATALEN);
	lock_role(acl->owner);
	write_acl(name, acl);
	pfree(acl);
}

/*
 * acl_dropped
 *		Keyspace name was dropped in this transaction: forget its rights.
 */
static void
acl_dropped(const char *name)
{
	KvKeyspaceRef ref;
	KvWrite		w = {0};

	if (!acl_ref(false, &ref))
		return;
	w.op = KV_OP_DELETE;
	KvStoreWrite(ref, name, strlen(name), &w);
	acl_dirty = true;
}

/*
 * KvAclChange
 *		kv_grant (grant) or kv_revoke: add or take away rights on keyspace
 *		ksname for role (a role name or "public").  The caller has checked
 *		that the keyspace exists.
 */
void
KvAclChange(const char *ksname, const char *role, int rights, bool grant)
{
	KsAcl	   *acl = palloc(sizeof(KsAcl));
	int			i;

	/*
	 * A grant names an existing role, locked until this transaction ends;
	 * a revoke takes any name, so that rights left for a role that no
	 * longer exists on this node can be taken back.
	 */
	if (grant && strcmp(role, ACL_PUBLIC) != 0)
		lock_role(role);
	KvAclCheckOwner(ksname, "grant or revoke its rights");

	/*
	 * A change of rights takes effect when others can see it: in a group,
	 * once a majority has it.  So this transaction commits as with
	 * kvext.synchronous_commit = on, whatever the session asks: a revoke
	 * that returned is in force.
	 */
	(void) set_config_option("kvext.synchronous_commit", "on",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
							 true, 0, false);
	read_acl(ksname, acl);
	for (i = 0; i < acl->nitems; i++)
		if (strcmp(acl->items[i].role, role) == 0)
			break;
	if (grant)
	{
		if (i == acl->nitems)
		{
			if (acl->nitems >= KVEXT_ACL_MAX_ITEMS)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("keyspace \"%s\" has rights for %d roles already",
								KvNameExcerpt(ksname, strlen(ksname)), KVEXT_ACL_MAX_ITEMS),
						 errhint("Grant the rights to a role whose members need them.")));
			strlcpy(acl->items[i].role, role, NAMEDATALEN);
			acl->items[i].rights = 0;
			acl->nitems++;
		}
		acl->items[i].rights |= rights;
	}
	else if (i < acl->nitems)
	{
		acl->items[i].rights &= ~rights;
		if (acl->items[i].rights == 0)
		{
			acl->nitems--;
			memmove(&acl->items[i], &acl->items[i + 1],
					sizeof(KvAclItem) * (acl->nitems - i));
		}
	}
	write_acl(ksname, acl);
	pfree(acl);
}

/*
 * KvAclCreateKeyspace
 *		KvKeyspaceCreate, and the current user owns the new keyspace, with
 *		no rights for anyone else, in the same transaction.
 */
bool
KvAclCreateKeyspace(const char *name, bool if_not_exists)
{
	if (!KvKeyspaceCreate(name, if_not_exists))
		return false;
	acl_created(name);
	return true;
}

/*
 * KvAclDropKeyspace
 *		KvKeyspaceDrop by its owner or a superuser (42501 otherwise), and
 *		its rights with it, so that a keyspace created later under the name
 *		starts private.
 */
bool
KvAclDropKeyspace(const char *name, bool if_exists)
{
	KvKeyspaceRef ref;

	if (!KvKeyspaceIsAcl(name) &&
		KvKeyspaceTryResolve(name, strnlen(name, NAMEDATALEN), false, &ref))
		KvAclCheckOwner(name, "drop it");
	if (!KvKeyspaceDrop(name, if_exists))
		return false;
	acl_dropped(name);
	return true;
}

/*
 * KvAclDescribe
 *		Keyspace ksname's owner (into owner, NAMEDATALEN bytes; "" for none)
 *		and grants (a palloc'd array); false if nothing is recorded.
 */
bool
KvAclDescribe(const char *ksname, char *owner, KvAclItem **items, int *nitems)
{
	KsAcl	   *acl = palloc(sizeof(KsAcl));
	bool		found = read_acl(ksname, acl);

	strlcpy(owner, acl->owner, NAMEDATALEN);
	*nitems = acl->nitems;
	*items = palloc(sizeof(KvAclItem) * Max(acl->nitems, 1));
	memcpy(*items, acl->items, sizeof(KvAclItem) * acl->nitems);
	pfree(acl);
	return found;
}

/*
 * KvAclCanList
 *		May the current user see keyspace ksname in listings and status
 *		(kv_keyspaces, kv_stats, kv_locks)?  With any right on it, or as a
 *		member of pg_read_all_stats (pg_monitor), as pg_stat_activity
 *		decides whose queries to show.
 */
bool
KvAclCanList(const char *ksname)
{
	Oid			user = GetUserId();

	if (KvKeyspaceIsAcl(ksname))
		return false;
	if (has_privs_of_role(user, ROLE_PG_READ_ALL_STATS))
		return true;
	return rights_of(user, ksname) != 0;
}

/* the context of KvAclCheckRole's scan */
typedef struct RoleScan
{
	const char *role;
	char	   *found;			/* the first keyspace naming it */
	bool		owner;
} RoleScan;

static void
role_scan_cb(void *arg, const char *key, uint32 keylen,
			 const char *value, uint32 vallen, bool binary)
{
	RoleScan   *rs = (RoleScan *) arg;
	char	   *ksname;
	KsAcl	   *acl;

	if (rs->found)
		return;
	ksname = pnstrdup(key, keylen);
	acl = palloc(sizeof(KsAcl));
	parse_acl(ksname, value, vallen, acl);
	if (strcmp(acl->owner, rs->role) == 0)
	{
		rs->found = ksname;
		rs->owner = true;
	}
	for (int i = 0; i < acl->nitems && rs->found == NULL; i++)
		if (strcmp(acl->items[i].role, rs->role) == 0)
			rs->found = ksname;
	pfree(acl);
}

/*
 * KvAclCheckRole
 *		DROP ROLE or ALTER ROLE ... RENAME (action) of role: refuse it
 *		(2BP01) while the role owns a keyspace or holds rights on one, since
 *		rights follow the name (file header).  action NULL: role is the new
 *		name of a rename, refused (42710) while rights name it.
 */
void
KvAclCheckRole(const char *role, const char *action)
{
	KvKeyspaceRef ref;
	RoleScan	rs = {role, NULL, false};

	if (!acl_ref(false, &ref))
		return;
	KvStoreScan(ref, "", 0, role_scan_cb, &rs);
	if (rs.found == NULL)
		return;
	if (action == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("cannot rename a role to \"%s\"", role),
				 errdetail("Rights on keyspace \"%s\" still name \"%s\", a role that was dropped or renamed on this node; a role of that name would get them.",
						   KvNameExcerpt(rs.found, strlen(rs.found)), role),
				 errhint("Take them back with kv_revoke(), which accepts the name of a role that does not exist.")));
	ereport(ERROR,
			(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
			 errmsg("cannot %s role \"%s\"", action, role),
			 rs.owner ?
			 errdetail("The role owns keyspace \"%s\"; kvext names roles in keyspace rights.",
					   KvNameExcerpt(rs.found, strlen(rs.found))) :
			 errdetail("The role has rights on keyspace \"%s\"; kvext names roles in keyspace rights.",
					   KvNameExcerpt(rs.found, strlen(rs.found))),
			 errhint("Revoke its rights with kv_revoke(), or drop the keyspaces it owns, first.")));
}

/*
 * KvAclWriteSetTouches
 *		Does this transaction's write set change rights?  (txn.c, before it
 *		logs its COMMIT record.)
 */
bool
KvAclWriteSetTouches(void)
{
	return acl_dirty;
}

/*
 * KvAclEndXact
 *		The transaction ended (txn.c): its changes of rights are committed
 *		(and noted) or gone.
 */
void
KvAclEndXact(void)
{
	acl_dirty = false;
}

/*
 * KvAclNoteCommit
 *		A transaction that changed rights commits with a COMMIT record
 *		ending at end: every backend's cached answers are stale once it can
 *		be seen.  Called before its writes can be seen (file header).
 */
void
KvAclNoteCommit(KvLsn end)
{
	uint64		cur = pg_atomic_read_u64(KvAclLastCommit);

	while (cur < end &&
		   !pg_atomic_compare_exchange_u64(KvAclLastCommit, &cur, end))
		;
	pg_atomic_fetch_add_u32(KvKeyspaceDirGen, 1);
}
