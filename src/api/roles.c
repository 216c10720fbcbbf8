/*-------------------------------------------------------------------------
 *
 * roles.c
 *	  Keep keyspace rights attached to the roles they name.
 *
 * Keyspace owners and grants name roles (src/store/acl.c explains why
 * names, not OIDs).  A name must not pass to another role, so this
 * ProcessUtility hook refuses DROP ROLE and ALTER ROLE ... RENAME of a role
 * that owns a keyspace or holds rights on one (2BP01), as PostgreSQL
 * refuses to drop a role that owns objects, and a rename to a name that
 * rights still name.  It first locks the role, as DROP ROLE does, so a
 * grant in progress (which share-locks the role it names) is waited for
 * and seen.  The store is the server's, so
 * the hook runs in every database, with or without the extension created.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/parsenodes.h"
#include "tcop/utility.h"

#include "api/api.h"
#include "shmem.h"
#include "store/acl.h"

static ProcessUtility_hook_type prev_utility = NULL;

/* the role a RoleSpec names, or NULL (CURRENT_USER and the like exist) */
static const char *
spec_name(RoleSpec *spec)
{
	return spec->roletype == ROLESPEC_CSTRING ? spec->rolename : NULL;
}

/* the hook: check, then run the statement as it would have run */
static void
kv_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (KvShmemAttached && IsA(parsetree, DropRoleStmt))
	{
		ListCell   *lc;

		foreach(lc, ((DropRoleStmt *) parsetree)->roles)
		{
			const char *name = spec_name(lfirst_node(RoleSpec, lc));

			if (name)
			{
				KvAclLockRole(name);
				KvAclCheckRole(name, "drop");
			}
		}
	}
	else if (KvShmemAttached && IsA(parsetree, RenameStmt) &&
			 ((RenameStmt *) parsetree)->renameType == OBJECT_ROLE)
	{
		RenameStmt *stmt = (RenameStmt *) parsetree;

		KvAclLockRole(stmt->subname);
		KvAclCheckRole(stmt->subname, "rename");
		/* nor may a role take a name that rights left behind name */
		KvAclCheckRole(stmt->newname, NULL);
	}

	if (prev_utility)
		prev_utility(pstmt, queryString, readOnlyTree, context, params,
					 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * KvRolesInit
 *		Install the utility hook (_PG_init).
 */
void
KvRolesInit(void)
{
	prev_utility = ProcessUtility_hook;
	ProcessUtility_hook = kv_process_utility;
}
