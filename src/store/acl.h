/*-------------------------------------------------------------------------
 *
 * acl.h
 *	  Keyspace owners and rights: checks, grants, and their bookkeeping.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_ACL_H
#define KVEXT_ACL_H

#include "store/store.h"

/* rights on a keyspace */
#define KV_RIGHT_READ		0x01
#define KV_RIGHT_WRITE		0x02
#define KV_RIGHT_ALL		(KV_RIGHT_READ | KV_RIGHT_WRITE)

/* one grant of a keyspace's rights, as kv_keyspaces() shows them */
typedef struct KvAclItem
{
	char		role[NAMEDATALEN];	/* a role name, or "public" */
	int			rights;			/* KV_RIGHT_* */
} KvAclItem;

extern void KvAclCheck(KvKeyspaceRef ref, const char *name, int len, int rights);
extern void KvAclCheckOwner(const char *name, const char *action);
extern bool KvAclCreateKeyspace(const char *name, bool if_not_exists);
extern bool KvAclDropKeyspace(const char *name, bool if_exists);
extern void KvAclChange(const char *ksname, const char *role, int rights, bool grant);
extern bool KvAclDescribe(const char *ksname, char *owner, KvAclItem **items, int *nitems);
extern bool KvAclCanList(const char *ksname);
extern void KvAclLockRole(const char *role);
extern void KvAclCheckRole(const char *role, const char *action);
extern bool KvAclWriteSetTouches(void);
extern void KvAclNoteCommit(KvLsn end);
extern void KvAclEndXact(void);

#endif							/* KVEXT_ACL_H */
