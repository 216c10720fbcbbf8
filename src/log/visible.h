/*-------------------------------------------------------------------------
 *
 * visible.h
 *	  The positions replication decides: what readers may see (the commit
 *	  position), whether this node's log takes local writes, and waiting
 *	  for a commit to become visible.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_VISIBLE_H
#define KVEXT_VISIBLE_H

#include "log/wal.h"

/* what KvVisibleWait ended with */
typedef enum KvVisibleWaitResult
{
	KV_VISIBLE_REACHED,			/* the position passed the target */
	KV_VISIBLE_CANCELLED,		/* query cancel or die request: in doubt */
	KV_VISIBLE_NOT_LEADER		/* this node stopped leading: in doubt */
} KvVisibleWaitResult;

extern Size KvVisibleShmemSize(void);
extern void KvVisibleShmemInit(void);

/* configuration, set once at startup by replication */
extern void KvVisibleSetGroup(bool group);
extern bool KvVisibleInGroup(void);

/* who may write */
extern void KvVisibleSetRole(bool leader, uint64 term, const char *leader_name);
extern void KvVisibleRecoveredTerm(uint64 term, uint64 led_term,
								   const char *term_leader);
extern bool KvVisibleIsLeader(void);
extern void KvVisibleSetCatchingUp(bool on);
extern bool KvVisibleCatchingUp(void);
extern void KvVisibleCheckWritable(void);
extern void KvVisibleLeaderName(char *out);

/* the commit and applied-majority positions */
extern void KvVisibleAdvance(KvLsn commit, KvLsn applied);
extern void KvVisibleSetWriter(int procno);
extern KvLsn KvVisibleCommitPos(void);
extern KvLsn KvVisibleAppliedPos(void);
extern KvVisibleWaitResult KvVisibleWait(KvLsn upto, bool applied,
										  TimestampTz deadline);
extern void KvVisibleSetParkCeiling(KvLsn ceiling);
extern KvLsn KvVisibleParkCeiling(void);

/*
 * The log senders' latches, woken when the local flush position moves or
 * the role changes (a sender waits on its latch and a socket at once, so it
 * cannot sleep on a condition variable).
 */
#define KVEXT_VISIBLE_MAX_SENDERS	8
extern void KvVisibleRegisterSender(int slot);
extern void KvVisibleWakeSenders(void);

#endif							/* KVEXT_VISIBLE_H */
