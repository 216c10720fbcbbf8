/*-------------------------------------------------------------------------
 *
 * visible.c
 *	  The positions replication decides, as the rest of kvext sees them:
 *	  the commit position (what readers may see), the applied-majority
 *	  position (for remote_apply), this node's role (whether its log takes
 *	  local writes), and the wait of a committing backend for its record to
 *	  become visible.
 *
 * In a group of one nothing here is used: KvWalVisiblePos() is the local
 * flush position and every node may write.  In a group (kvext.peers set),
 * the leader's senders (src/replication) advance the commit position as
 * followers report what they flushed, and KvWalVisiblePos() returns it;
 * on a follower the append path advances it to what the leader said is
 * committed.  See docs/architecture.md, "Replication".
 *
 * Waiting.  A committing backend publishes the position it waits for in
 * its slot (by pgprocno), then checks the position, then sleeps on its
 * latch; KvVisibleAdvance stores the new position, then wakes every
 * backend whose target it passed.  (Store, then read the other's word, on
 * both sides, with a full barrier between: one of them always sees the
 * other.)  As in PostgreSQL's synchronous replication, the wait handles
 * cancel and die requests itself instead of letting
 * CHECK_FOR_INTERRUPTS throw: the caller must turn them into "in doubt"
 * (SQLSTATE 40003), never into a plain error or a plain success.
 * PostgreSQL disarms statement_timeout before it commits a statement's
 * transaction, so the wait ends at a deadline its caller gives: a commit's
 * is the committing statement's timer (KvCommitDeadline, deadline.c), so a
 * COMMIT (or an autocommitted call) is bounded by statement_timeout as its
 * users expect.
 *
 * Senders.  The leader's log senders wait on their latch and a socket at
 * once; KvWalFlush wakes them (KvVisibleWakeSenders) whenever the local
 * flush position moves, and a role change does too.
 *
 * Locking: positions and role are read and written under a spinlock (or
 * as atomics); no LWLock is taken here.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "kvext.h"
#include "log/visible.h"

typedef struct KvVisibleShared
{
	bool		group;			/* kvext.peers is set */
	slock_t		mutex;			/* protects the role fields */
	bool		leader;			/* this node leads (or is a group of one) */
	bool		catching_up;	/* ... but still applies what its recovery
								 * left past its commit watermark */
	uint64		term;			/* the term it leads or follows in */
	char		leader_name[NAMEDATALEN];	/* "" if unknown */
	pg_atomic_uint64 commit;	/* commit position */
	pg_atomic_uint64 applied;	/* applied-majority position */
	pg_atomic_uint32 role_gen;	/* bumped at every role change */
	pg_atomic_uint64 park_ceiling;	/* parked commits past it are dropped
									 * (KvVisibleSetParkCeiling) */
	pg_atomic_uint32 writer;	/* pgprocno + 1 of the kvext wal writer, or 0 */
	pg_atomic_uint32 senders[KVEXT_VISIBLE_MAX_SENDERS];	/* pgprocno + 1 of
															 * each sender, or 0 */
	pg_atomic_uint64 waiting[FLEXIBLE_ARRAY_MEMBER];	/* per pgprocno: the
														 * position it waits
														 * for, or 0 */
} KvVisibleShared;

static KvVisibleShared *vis = NULL;

/* wait for the applied-majority position, not the commit position */
#define WAIT_APPLIED_BIT	(UINT64CONST(1) << 63)

Size
KvVisibleShmemSize(void)
{
	return add_size(offsetof(KvVisibleShared, waiting),
					mul_size(KvProcSlots(), sizeof(pg_atomic_uint64)));
}

/*
 * KvVisibleShmemInit
 *		Create or attach the shared state (caller holds AddinShmemInitLock).
 */
void
KvVisibleShmemInit(void)
{
	bool		found;

	vis = ShmemInitStruct("kvext visible", KvVisibleShmemSize(), &found);
	if (!found)
	{
		vis->group = false;
		SpinLockInit(&vis->mutex);
		vis->leader = true;
		vis->catching_up = false;
		vis->term = 0;
		vis->leader_name[0] = '\0';
		pg_atomic_init_u64(&vis->commit, 0);
		pg_atomic_init_u64(&vis->applied, 0);
		pg_atomic_init_u32(&vis->role_gen, 0);
		pg_atomic_init_u64(&vis->park_ceiling, PG_UINT64_MAX);
		pg_atomic_init_u32(&vis->writer, 0);
		for (int i = 0; i < KVEXT_VISIBLE_MAX_SENDERS; i++)
			pg_atomic_init_u32(&vis->senders[i], 0);
		for (int i = 0; i < KvProcSlots(); i++)
			pg_atomic_init_u64(&vis->waiting[i], 0);
	}
}

/*
 * KvVisibleSetGroup
 *		Startup (recovery, before the store is ready): is this node part of
 *		a group with peers?
 */
void
KvVisibleSetGroup(bool group)
{
	vis->group = group;
}

/* is this node part of a group with peers? */
bool
KvVisibleInGroup(void)
{
	return vis != NULL && vis->group;
}

/*
 * KvVisibleSetRole
 *		Record this node's role: leader (its log takes local writes) or
 *		follower of leader_name (may be NULL: unknown), in term.  Waiting
 *		committers of an old leadership are woken: their wait is in doubt.
 */
void
KvVisibleSetRole(bool leader, uint64 term, const char *leader_name)
{
	SpinLockAcquire(&vis->mutex);
	vis->leader = leader;
	vis->term = term;
	strlcpy(vis->leader_name, leader_name ? leader_name : "", NAMEDATALEN);
	SpinLockRelease(&vis->mutex);
	pg_atomic_fetch_add_u32(&vis->role_gen, 1);
	KvVisibleWakeSenders();

	/* wake everyone: a wait that started under another role is in doubt */
	for (int i = 0; i < KvProcSlots(); i++)
	{
		if (pg_atomic_read_u64(&vis->waiting[i]) != 0)
			SetLatch(&ProcGlobal->allProcs[i].procLatch);
	}
}

/*
 * KvVisibleRecoveredTerm
 *		Recovery read the current term, and the last term this node led,
 *		from the control file.  Record the role: in a group, the node
 *		configured as the initial leader leads the group's first term, and
 *		a node leads a later term only if it won it (led_term, persisted
 *		before it led); any other node follows the leader it had accepted
 *		for the term (term_leader), or, if none, waits for one to contact
 *		it.
 */
void
KvVisibleRecoveredTerm(uint64 term, uint64 led_term, const char *term_leader)
{
	bool		leader;
	char		name[NAMEDATALEN];

	SpinLockAcquire(&vis->mutex);
	leader = vis->leader;
	strlcpy(name, vis->leader_name, NAMEDATALEN);
	SpinLockRelease(&vis->mutex);
	if (vis->group && term > 1)
	{
		leader = (led_term == term);
		strlcpy(name, leader ? kvext_node_name : term_leader, NAMEDATALEN);
	}
	KvVisibleSetRole(leader, term, name);
}

/*
 * KvVisibleSetCatchingUp
 *		A leader restarted in a group has applied only what its group had
 *		committed (recovery); until it has applied the rest of its log
 *		(KvReplLeaderCatchUp) it takes no writes.
 */
void
KvVisibleSetCatchingUp(bool on)
{
	SpinLockAcquire(&vis->mutex);
	vis->catching_up = on;
	SpinLockRelease(&vis->mutex);
}

/* is this node a leader still catching up (see KvVisibleSetCatchingUp)? */
bool
KvVisibleCatchingUp(void)
{
	bool		on;

	SpinLockAcquire(&vis->mutex);
	on = vis->catching_up;
	SpinLockRelease(&vis->mutex);
	return on;
}

/* may this node's log take local writes? */
bool
KvVisibleIsLeader(void)
{
	bool		leader;

	SpinLockAcquire(&vis->mutex);
	leader = vis->leader;
	SpinLockRelease(&vis->mutex);
	return leader;
}

/* copy the leader's name (NAMEDATALEN bytes; "" if unknown) to out */
void
KvVisibleLeaderName(char *out)
{
	SpinLockAcquire(&vis->mutex);
	strlcpy(out, vis->leader_name, NAMEDATALEN);
	SpinLockRelease(&vis->mutex);
}

/*
 * KvVisibleCheckWritable
 *		Raise 25006 unless this node may write (it leads, or is a group of
 *		one).  Called before any local write reaches the log.
 */
void
KvVisibleCheckWritable(void)
{
	char		leader[NAMEDATALEN];

	if (vis == NULL || !vis->group)
		return;
	if (KvVisibleIsLeader())
	{
		if (KvVisibleCatchingUp())
			ereport(ERROR,
					(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
					 errmsg("cannot write kvext keys yet: this leader is still applying its log"),
					 errdetail("Node \"%s\" restarted or was just promoted: it shows only what its group had committed, and applies the rest of its log once a majority confirms it.",
							   kvext_node_name),
					 errhint("Retry once a majority of the group is reachable; kv_cluster_status() shows the commit position.")));
		return;
	}
	KvVisibleLeaderName(leader);
	if (leader[0] != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot write kvext keys on a follower"),
				 errdetail("This node (\"%s\") follows the group's leader.",
						   kvext_node_name),
				 errhint("Write on the leader, node \"%s\".", leader)));
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("cannot write kvext keys on a follower"),
			 errdetail("This node (\"%s\") does not lead its group and has not heard from a leader yet.",
					   kvext_node_name),
			 errhint("Write on the group's leader; kv_cluster_status() shows the roles.")));
}

/*
 * KvVisibleSetParkCeiling
 *		A leader steps down at commit position ceiling: the transactions it
 *		parked past it are no longer its to commit (the next leader decides
 *		them; this node applies them from its log if they commit), so they
 *		never become visible through their parked slot and are dropped.
 *		PG_UINT64_MAX when it leads again.
 */
void
KvVisibleSetParkCeiling(KvLsn ceiling)
{
	pg_atomic_write_u64(&vis->park_ceiling, ceiling);
	pg_memory_barrier();
}

/* up to where parked commits may become visible (KvVisibleSetParkCeiling) */
KvLsn
KvVisibleParkCeiling(void)
{
	return vis ? pg_atomic_read_u64(&vis->park_ceiling) : PG_UINT64_MAX;
}

/* advance an atomic position to at least pos */
static bool
advance(pg_atomic_uint64 *p, KvLsn pos)
{
	uint64		cur = pg_atomic_read_u64(p);

	while (cur < pos)
	{
		if (pg_atomic_compare_exchange_u64(p, &cur, pos))
			return true;
	}
	return false;
}

/*
 * KvVisibleAdvance
 *		Move the commit and applied-majority positions forward (never back;
 *		0 leaves one alone) and wake the backends waiting for them.
 */
void
KvVisibleAdvance(KvLsn commit, KvLsn applied)
{
	bool		moved = false;
	KvLsn		c,
				a;

	moved |= advance(&vis->commit, commit);
	moved |= advance(&vis->applied, applied);
	if (!moved)
		return;
	pg_memory_barrier();
	c = pg_atomic_read_u64(&vis->commit);
	a = pg_atomic_read_u64(&vis->applied);
	/* the committers first: they are what a client waits for */
	for (int i = 0; i < KvProcSlots(); i++)
	{
		uint64		w = pg_atomic_read_u64(&vis->waiting[i]);

		if (w == 0)
			continue;
		if ((w & WAIT_APPLIED_BIT) ? (w & ~WAIT_APPLIED_BIT) <= a : w <= c)
			SetLatch(&ProcGlobal->allProcs[i].procLatch);
	}
	/* then the wal writer: it converts the parked transactions passed */
	{
		uint32		writer = pg_atomic_read_u32(&vis->writer);

		if (writer != 0)
			SetLatch(&ProcGlobal->allProcs[writer - 1].procLatch);
	}
}

/* the commit position */
KvLsn
KvVisibleCommitPos(void)
{
	return pg_atomic_read_u64(&vis->commit);
}

/* the applied-majority position */
KvLsn
KvVisibleAppliedPos(void)
{
	return pg_atomic_read_u64(&vis->applied);
}

/* how long to sleep before looking again: 1 s at most, or until deadline */
static long
sleep_ms(TimestampTz deadline)
{
	long		ms;

	if (deadline == 0)
		return 1000L;
	ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
	return Max(1L, Min(1000L, ms));
}

/*
 * KvVisibleWait
 *		Wait until the commit position (applied: the applied-majority
 *		position) reaches upto.  Returns KV_VISIBLE_CANCELLED on a query
 *		cancel (whose flag it clears: the caller reports 40003 instead) or a
 *		die request (left pending, so the backend still exits), and
 *		KV_VISIBLE_NOT_LEADER if this node stops leading meanwhile; a
 *		deadline (not 0) that passes counts as a cancel.  May be called
 *		with interrupts held (after PostgreSQL's commit record).
 */
KvVisibleWaitResult
KvVisibleWait(KvLsn upto, bool applied, TimestampTz deadline)
{
	pg_atomic_uint64 *mine = &vis->waiting[MyProc->pgprocno];
	uint32		gen = pg_atomic_read_u32(&vis->role_gen);
	KvVisibleWaitResult result;

	pg_atomic_write_u64(mine, upto | (applied ? WAIT_APPLIED_BIT : 0));
	pg_memory_barrier();
	for (;;)
	{
		KvLsn		pos = applied ? KvVisibleAppliedPos() : KvVisibleCommitPos();

		if (pos >= upto)
		{
			result = KV_VISIBLE_REACHED;
			break;
		}
		if (pg_atomic_read_u32(&vis->role_gen) != gen || !KvVisibleIsLeader())
		{
			result = KV_VISIBLE_NOT_LEADER;
			break;
		}
		if (ProcDiePending || KvClientConnectionLost())
		{
			result = KV_VISIBLE_CANCELLED;
			break;
		}
		if (QueryCancelPending)
		{
			QueryCancelPending = false;
			result = KV_VISIBLE_CANCELLED;
			break;
		}
		if (deadline != 0 && GetCurrentTimestamp() >= deadline)
		{
			result = KV_VISIBLE_CANCELLED;
			break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms(deadline), WAIT_EVENT_SYNC_REP);
		ResetLatch(MyLatch);
	}
	pg_atomic_write_u64(mine, 0);
	return result;
}

/* a sender's process has exited: forget its latch */
static void
sender_detach(int code, Datum arg)
{
	pg_atomic_write_u32(&vis->senders[DatumGetInt32(arg)], 0);
}

/*
 * KvVisibleRegisterSender
 *		Called by the log sender of peer slot (0 .. KVEXT_VISIBLE_MAX_SENDERS
 *		- 1) when it starts: its latch is set at every local flush and role
 *		change, until the process exits.
 */
void
KvVisibleRegisterSender(int slot)
{
	Assert(slot >= 0 && slot < KVEXT_VISIBLE_MAX_SENDERS);
	pg_atomic_write_u32(&vis->senders[slot], MyProc->pgprocno + 1);
	on_shmem_exit(sender_detach, Int32GetDatum(slot));
}

/*
 * KvVisibleSetWriter
 *		The kvext wal writer starts (procno) or stops (-1): KvVisibleAdvance
 *		wakes it, to convert the parked transactions the commit position
 *		passed (park.c).
 */
void
KvVisibleSetWriter(int procno)
{
	pg_atomic_write_u32(&vis->writer, (uint32) (procno + 1));
}

/*
 * KvVisibleWakeSenders
 *		Set the latch of every registered sender: there may be more log to
 *		ship, or the role changed.  Cheap (no lock); a no-op outside a
 *		group.
 */
void
KvVisibleWakeSenders(void)
{
	if (vis == NULL || !vis->group)
		return;
	for (int i = 0; i < KVEXT_VISIBLE_MAX_SENDERS; i++)
	{
		uint32		procno = pg_atomic_read_u32(&vis->senders[i]);

		if (procno != 0)
			SetLatch(&ProcGlobal->allProcs[procno - 1].procLatch);
	}
}
