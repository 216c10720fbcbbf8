/*-------------------------------------------------------------------------
 *
 * role.h
 *	  A node's role in its group: stepping down to follow, voting, and
 *	  kv_promote() (role.c).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_REPL_ROLE_H
#define KVEXT_REPL_ROLE_H

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/lwlock.h"

/*
 * The replication lock ("kvext log append"): one appender, voter or role
 * change at a time.  Taken before the control lock, the log's locks and
 * the store's locks, never after them.
 */
extern void KvRoleInit(LWLock *lock);
extern LWLock *KvRoleLock(void);

/* the store is ready and this node is in a group: 55000 if not */
extern void KvReplCheckGroup(void);

/* the replication right (EXECUTE on kv_repl_append): 42501 if missing */
extern void KvReplCheckRight(FunctionCallInfo fcinfo);

/* caller holds KvRoleLock(): follow leader (NULL: not known yet) in term */
extern void KvRoleFollow(uint64 term, const char *leader);

/* what an election came to (KvRoleElect) */
typedef enum KvElection
{
	KV_ELECTED,					/* this node leads the term */
	KV_ELECTION_REFUSED,		/* a peer said no (another candidate or
								 * leader of the term, a more recent log) */
	KV_ELECTION_SPLIT,			/* refused only by peers that voted for
								 * another candidate in the term */
	KV_ELECTION_HIGHER_TERM,	/* a peer is in a later term: we follow it */
	KV_ELECTION_UNANSWERED		/* too few peers answered */
} KvElection;

/* how KvRoleElect asks */
typedef enum KvElectMode
{
	KV_ELECT_PROMOTE,			/* kv_promote(): the next term */
	KV_ELECT_CAMPAIGN,			/* a campaign: the same term again if we
								 * are its candidate, else the next */
	KV_ELECT_CAMPAIGN_NEXT		/* a campaign: the next term */
} KvElectMode;

extern KvElection KvRoleElect(KvElectMode mode, uint64 *term, int *votes,
							  StringInfo refusals);

#endif							/* KVEXT_REPL_ROLE_H */
