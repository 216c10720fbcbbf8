/*-------------------------------------------------------------------------
 *
 * role.c
 *	  A node's role in its group, and the changes of it: a leader stepping
 *	  down to follow (KvRoleFollow), a vote (kv_repl_vote), and a follower
 *	  made leader by an operator (kv_promote).
 *
 * The protocol is docs/architecture.md, "Replication" / "Failover".  In
 * short, as Raft says:
 *
 *	- kv_promote() on a follower: the node moves to the next term, votes
 *	  for itself (both persisted before anything else), and asks every peer
 *	  for its vote with kv_repl_vote() over libpq.  With a majority (itself
 *	  included) it leads: its log gets a TERM record of the new term, then
 *	  an ABORT record (flag RESOLVED) for every transaction record it holds
 *	  undecided (a decision that a majority had acknowledged is in its log:
 *	  see below), the led term is persisted, and it starts as a leader that
 *	  is catching up (KvReplLeaderCatchUp applies its log as its group
 *	  commits it; writes are refused until then, 25006).  Without a
 *	  majority it stays a follower in the new term and the call fails.
 *
 *	- kv_repl_vote() on a peer: a term below ours is refused; a higher one
 *	  is persisted first and makes this node follow (a leader steps down);
 *	  the vote is granted once per term, and only to a candidate whose log
 *	  is at least as up to date as ours (last record's term, then end):
 *	  Raft's election restriction, which is why a node elected by a
 *	  majority holds every record a majority has acknowledged.  The vote is
 *	  persisted before it is answered.
 *
 *	- KvRoleFollow: a node that sees a higher term, or a leader of its own
 *	  term, follows.  A leader that steps down closes its log to local
 *	  writes and decisions (wal.c refuses them once the role has changed),
 *	  wakes its committers (their wait ends in doubt), waits until every
 *	  transaction it logged is parked or finished, and keeps its commit
 *	  position as the park ceiling: what it parked past it is dropped from
 *	  memory (park.c), and applied again from the log as a follower if the
 *	  group commits it.  Its follower apply starts at that position, with
 *	  the transaction records undecided there as pending.
 *
 * Locking: the replication lock (an LWLock, also the follower's append
 * lock) is held for every role change, vote and append; never while
 * talking to peers.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "access/xlogdefs.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "kvext.h"
#include "log/apply.h"
#include "log/control.h"
#include "log/snapshot.h"
#include "log/visible.h"
#include "log/wal.h"
#include "replication/config.h"
#include "replication/role.h"
#include "shmem.h"
#include "store/park.h"
#include "store/store.h"

PG_FUNCTION_INFO_V1(kv_repl_vote);
PG_FUNCTION_INFO_V1(kv_promote);

/* how long kv_promote waits for votes, and a stepping-down leader for its committers */
#define KVEXT_PROMOTE_TIMEOUT_MS	10000
#define KVEXT_STEP_DOWN_WAIT_MS		30000

static LWLock *role_lock = NULL;

/*
 * KvRoleInit
 *		Remember the replication lock (shared memory startup).
 */
void
KvRoleInit(LWLock *lock)
{
	role_lock = lock;
}

LWLock *
KvRoleLock(void)
{
	return role_lock;
}

/*
 * wait_for_committers
 *		A leader stepping down: wait until no transaction it logged is
 *		still on its way (its backend commits it, parks it, or drops it once
 *		the log refuses its decision).  Its committers were woken by the
 *		role change; they take no lock we hold.
 */
static void
wait_for_committers(void)
{
	TimestampTz start = GetCurrentTimestamp();

	for (;;)
	{
		int			busy = 0;

		for (int s = 0; s < KvOwnerSlotCount(); s++)
			if (KvParkBusy(s))
				busy++;
		if (busy == 0)
			return;
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
									   KVEXT_STEP_DOWN_WAIT_MS))
		{
			ereport(WARNING,
					(errmsg("kvext node \"%s\" steps down while %d transactions are still committing",
							kvext_node_name, busy),
					 errdetail("Their backends did not finish within %d seconds.",
							   KVEXT_STEP_DOWN_WAIT_MS / 1000)));
			return;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1, WAIT_EVENT_PG_SLEEP);
		ResetLatch(MyLatch);
	}
}

/*
 * step_down
 *		This node led with its own commits applying themselves; it follows
 *		from now on (see the file header).  Caller holds the lock.
 */
static void
step_down(uint64 term, const char *leader)
{
	KvLsn		ceiling;
	KvLsn		floor;
	KvLsn	   *pending;
	int			npending;

	KvVisibleSetRole(false, term, leader);

	/*
	 * The log's first record (the first term's start) is the same on every
	 * node: committed even where no majority ever confirmed it (a new
	 * store that led term 1 without any follower).
	 */
	ceiling = Max(KvVisibleCommitPos(), KVEXT_WAL_START_LSN + sizeof(KvWalRecord));

	/*
	 * The oldest TXN record not yet applied, before the ceiling lets any
	 * process drop a parked transaction (which clears its in-flight mark):
	 * every TXN record a drop leaves undecided here must be pending for
	 * the follower apply, or the COMMIT record the group may still log for
	 * it would be taken for one decided before replay began.  No TXN
	 * record is logged any more (the role is follower).
	 */
	floor = Min(KvWalRedoPoint(), ceiling);
	KvVisibleSetParkCeiling(ceiling);
	wait_for_committers();
	KvParkResolve();
	npending = KvApplyUndecided(NULL, 0, floor, ceiling, &pending);
	KvApplyFollowerStart(ceiling, floor, pending, npending);
	KvVisibleSetCatchingUp(false);
	ereport(LOG,
			(errmsg("kvext node \"%s\" steps down in term " UINT64_FORMAT ": it follows from its commit position %X/%X; its log goes on to %X/%X",
					kvext_node_name, term, LSN_FORMAT_ARGS(ceiling),
					LSN_FORMAT_ARGS(KvWalInsertPos()))));
}

/*
 * KvRoleFollow
 *		Follow leader (NULL or "": not known yet) in term, persisting term
 *		first if it is new (with no vote).  Caller holds the lock.
 */
void
KvRoleFollow(uint64 term, const char *leader)
{
	KvControl	control;

	KvControlGet(&control);
	if (term > control.term)
		KvControlSetTerm(term, "");
	/* a leader of our term or a later one: no campaign of ours goes on */
	if (leader && leader[0] != '\0')
		KvControlSetTermLeader(leader);
	if (KvVisibleIsLeader() && KvApplyFollowerPos() == InvalidKvLsn)
	{
		step_down(term, leader);
		return;
	}
	/* a follower, or a leader still catching up: it applies as a follower */
	KvVisibleSetRole(false, term, leader);
	KvVisibleSetCatchingUp(false);
	if (KvApplyFollowerPos() == InvalidKvLsn)
		KvApplyFollowerStart(KvWalInsertPos(), KvWalInsertPos(), NULL, 0);
}

/*
 * KvReplCheckGroup
 *		Make the store available, and raise 55000 unless this node is part
 *		of a replication group: every replication entry point starts here.
 */
void
KvReplCheckGroup(void)
{
	KvCheckAvailable();
	if (!KvVisibleInGroup())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this kvext node is not part of a replication group"),
				 errhint("Set kvext.node_name, kvext.peers and kvext.leader and restart the server.")));
}

/*
 * KvReplCheckRight
 *		The replication right is EXECUTE on kv_repl_append(), in the schema
 *		of the function being called: one right for every replication call
 *		(votes, snapshot chunks).
 */
void
KvReplCheckRight(FunctionCallInfo fcinfo)
{
	Oid			argtypes[7] = {INT8OID, TEXTOID, INT8OID, PG_LSNOID, INT8OID,
	PG_LSNOID, BYTEAOID};
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	char	   *nspname = get_namespace_name(nsp);
	Oid			append;

	append = nspname ?
		LookupFuncName(list_make2(makeString(nspname), makeString("kv_repl_append")),
					   7, argtypes, true) : InvalidOid;
	if (!OidIsValid(append) ||
		pg_proc_aclcheck(append, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for kvext replication"),
				 errdetail("Role \"%s\" lacks the replication right.",
						   GetUserNameFromId(GetUserId(), false)),
				 errhint("The replication right is EXECUTE on kv_repl_append(); grant it to the role the nodes connect as.")));
}

/*
 * last_record
 *		The end and term of this node's last record.  A log that holds no
 *		record past a snapshot's redo point (a restart that recovered from
 *		the snapshot alone, a follower rebuilt from its leader's) ends
 *		there, with the term the snapshot records for it: it must not look
 *		empty, or a vote would go to a candidate lacking what the snapshot
 *		holds.  If even that is unknown (an old snapshot that does not
 *		record it), a voter takes its current term and a candidate term 0:
 *		both err towards a refusal.
 */
static void
last_record(KvLsn *end, uint64 *term, bool candidate)
{
	KvLsn		start;
	KvLsn		redo;
	uint64		redo_term;
	KvControl	control;

	if (KvWalLastRecord(&start, end, term))
		return;
	*end = KvWalInsertPos();
	if (*end <= KVEXT_WAL_START_LSN)
		*term = 0;
	else if (KvSnapshotRedoTerm(&redo, &redo_term) && redo == *end)
		*term = redo_term;
	else if (candidate)
		*term = 0;				/* a candidate errs towards being refused */
	else
	{
		KvControlGet(&control);
		*term = control.term;
	}
}

/* ----------------------------------------------------------------
 * Voting
 * ---------------------------------------------------------------- */

/*
 * vote
 *		kv_repl_vote's decision; caller holds the lock.  Returns whether
 *		the vote is granted, our term in *our_term, and why not in reason.
 */
static bool
vote(uint64 cluster_id, const char *candidate, uint64 term, KvLsn cand_end,
	 uint64 cand_term, uint64 cand_led_term, uint64 *our_term, char *reason,
	 Size reasonlen)
{
	KvControl	control;
	KvLsn		my_end;
	uint64		my_term;

	KvControlGet(&control);
	*our_term = control.term;
	if (control.cluster_id != cluster_id)
	{
		snprintf(reason, reasonlen, "node \"%s\" belongs to another group", kvext_node_name);
		return false;
	}
	if (term < control.term)
	{
		snprintf(reason, reasonlen, "node \"%s\" is in term " UINT64_FORMAT,
				 kvext_node_name, control.term);
		return false;
	}
	if (term > control.term)
	{
		KvRoleFollow(term, NULL);
		KvControlGet(&control);
		*our_term = control.term;
	}
	/*
	 * A refusal says first whether the term has a leader: a campaign stops
	 * on that, and asks again in the next term only when peers merely
	 * voted for another candidate (campaign.c).
	 */
	if (KvVisibleIsLeader())
	{
		/* we lead this very term: never vote for another leader of it */
		snprintf(reason, reasonlen, "node \"%s\" leads term " UINT64_FORMAT,
				 kvext_node_name, term);
		return false;
	}
	if (strcmp(control.term_leader, kvext_node_name) == 0)
	{
		/* we led this term, and no longer do (a campaign, a step-down) */
		snprintf(reason, reasonlen, "node \"%s\" led term " UINT64_FORMAT,
				 kvext_node_name, term);
		return false;
	}
	if (control.term_leader[0] != '\0' && strcmp(control.term_leader, candidate) != 0)
	{
		snprintf(reason, reasonlen, "node \"%s\" follows leader \"%s\" in term " UINT64_FORMAT,
				 kvext_node_name, control.term_leader, term);
		return false;
	}
	if (control.voted_for[0] != '\0' && strcmp(control.voted_for, candidate) != 0)
	{
		snprintf(reason, reasonlen, "node \"%s\" voted for \"%s\" in term " UINT64_FORMAT,
				 kvext_node_name, control.voted_for, term);
		return false;
	}
	last_record(&my_end, &my_term, false);

	/*
	 * Raft's election restriction, with one more case: the candidate led
	 * the term of our last record (a leader whose machine restarted, which
	 * may have lost records it shipped before its fsync).  Every record we
	 * hold of that term came from it, so its log and ours agree up to the
	 * shorter one, and nothing past its end was committed: the commit
	 * position never passes the leader's own flush position, which a
	 * machine restart keeps.  Still refused if we know of a commit past
	 * its end.
	 */
	if ((cand_term < my_term || (cand_term == my_term && cand_end < my_end)) &&
		!(cand_led_term > 0 && cand_led_term == my_term &&
		  Max(Max(KvVisibleCommitPos(), KvApplyFollowerPos()),
			  control.commit_watermark) <= cand_end))
	{
		snprintf(reason, reasonlen,
				 "node \"%s\" holds a more recent log (last record of term " UINT64_FORMAT " ending at %X/%X; the candidate's: term " UINT64_FORMAT ", %X/%X)",
				 kvext_node_name, my_term, LSN_FORMAT_ARGS(my_end),
				 cand_term, LSN_FORMAT_ARGS(cand_end));
		return false;
	}
	KvControlSetTerm(term, candidate);
	ereport(LOG,
			(errmsg("kvext node \"%s\" votes for \"%s\" in term " UINT64_FORMAT,
					kvext_node_name, candidate, term)));
	reason[0] = '\0';
	return true;
}

/*
 * kv_repl_vote(cluster_id bigint, candidate text, term bigint,
 *				last_end pg_lsn, last_term bigint, led_term bigint DEFAULT 0)
 *	 -> (term bigint, granted boolean, reason text)
 *
 * Called by a candidate's kv_promote() or campaign (campaign.c); led_term
 * is the last term the candidate led (0: none).  EXECUTE on it is part of the
 * replication right (revoked from PUBLIC by the install script).
 */
Datum
kv_repl_vote(PG_FUNCTION_ARGS)
{
	uint64		cluster_id;
	char	   *candidate;
	uint64		term;
	KvLsn		cand_end;
	uint64		cand_term;
	uint64		cand_led_term = 0;
	uint64		our_term;
	bool		granted;
	char		reason[512];
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {0};

	for (int i = 0; i < PG_NARGS(); i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("kv_repl_vote arguments must not be null")));
	cluster_id = (uint64) PG_GETARG_INT64(0);
	candidate = text_to_cstring(PG_GETARG_TEXT_PP(1));
	term = (uint64) PG_GETARG_INT64(2);
	cand_end = (KvLsn) PG_GETARG_LSN(3);
	cand_term = (uint64) PG_GETARG_INT64(4);
	if (PG_NARGS() > 5)
		cand_led_term = (uint64) PG_GETARG_INT64(5);

	KvReplCheckGroup();
	KvReplCheckRight(fcinfo);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!KvReplIsPeer(candidate))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("kvext vote request from \"%s\" refused: not a peer of this node", candidate),
				 errhint("kvext.peers lists the nodes of this node's group.")));
	if ((int64) term <= 0 || (int64) cand_term < 0 || (int64) cand_led_term < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kvext vote request with an invalid term")));

	LWLockAcquire(role_lock, LW_EXCLUSIVE);
	granted = vote(cluster_id, candidate, term, cand_end, cand_term,
				   cand_led_term, &our_term, reason, sizeof(reason));
	LWLockRelease(role_lock);

	values[0] = Int64GetDatum((int64) our_term);
	values[1] = BoolGetDatum(granted);
	if (granted)
		nulls[2] = true;
	else
		values[2] = CStringGetTextDatum(reason);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ----------------------------------------------------------------
 * Promotion
 * ---------------------------------------------------------------- */

typedef enum CallState
{
	CALL_CONNECTING,
	CALL_QUERYING,
	CALL_DONE
} CallState;

/* one kv_repl_vote call to a peer */
typedef struct VoteCall
{
	const KvPeer *peer;
	PGconn	   *conn;
	bool		have_fd;
	CallState	state;
	bool		granted;
	uint64		term;			/* the peer's term, 0 if unknown */
	char		reason[512];
} VoteCall;

static void
call_failed(VoteCall *c, const char *why)
{
	char	   *s = pstrdup(why ? why : "");

	/* libpq messages end with a newline */
	for (char *p = s; *p; p++)
		if (*p == '\n')
			*p = ' ';
	snprintf(c->reason, sizeof(c->reason), "could not ask node \"%s\": %s",
			 c->peer->name, s);
	pfree(s);
	c->state = CALL_DONE;
}

/* read the answer of a finished kv_repl_vote call */
static void
call_result(VoteCall *c)
{
	PGresult   *res = PQgetResult(c->conn);

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 3)
		call_failed(c, PQresultErrorMessage(res));
	else
	{
		c->term = strtou64(PQgetvalue(res, 0, 0), NULL, 10);
		c->granted = (strcmp(PQgetvalue(res, 0, 1), "t") == 0);
		if (!c->granted)
			strlcpy(c->reason, PQgetvalue(res, 0, 2), sizeof(c->reason));
		c->state = CALL_DONE;
	}
	PQclear(res);
	while ((res = PQgetResult(c->conn)) != NULL)
		PQclear(res);
}

/* one step of a call: never blocks */
static void
call_step(VoteCall *c, const char *const *params)
{
	if (c->state == CALL_CONNECTING)
	{
		PostgresPollingStatusType st = PQconnectPoll(c->conn);

		if (st == PGRES_POLLING_FAILED)
			call_failed(c, PQerrorMessage(c->conn));
		else if (st == PGRES_POLLING_OK)
		{
			if (PQsetnonblocking(c->conn, 1) != 0 ||
				!PQsendQueryParams(c->conn,
								   "SELECT term, granted, reason FROM kv_repl_vote($1::bigint, $2, $3::bigint, $4::pg_lsn, $5::bigint, $6::bigint)",
								   6, NULL, params, NULL, NULL, 0))
				call_failed(c, PQerrorMessage(c->conn));
			else
				c->state = CALL_QUERYING;
		}
	}
	if (c->state == CALL_QUERYING)
	{
		if (PQflush(c->conn) < 0 || !PQconsumeInput(c->conn))
			call_failed(c, PQerrorMessage(c->conn));
		else if (!PQisBusy(c->conn))
			call_result(c);
	}
}

/*
 * ask_votes
 *		Ask every peer for its vote in term, all at once, without blocking
 *		(a cancel or statement_timeout ends the wait); stop once a majority
 *		has granted it, every peer has answered, or the timeout passes.
 *		Returns the votes granted, this node's own not counted.
 */
static int
ask_votes(VoteCall *calls, int n, uint64 cluster_id, uint64 term,
		  KvLsn last_end, uint64 last_term, uint64 led_term)
{
	char		cluster[32],
				termbuf[32],
				endbuf[32],
				lastterm[32],
				ledterm[32];
	const char *params[6];
	char		app[NAMEDATALEN + 32];
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   KVEXT_PROMOTE_TIMEOUT_MS);
	int			granted = 0;

	snprintf(cluster, sizeof(cluster), INT64_FORMAT, (int64) cluster_id);
	snprintf(termbuf, sizeof(termbuf), UINT64_FORMAT, term);
	snprintf(endbuf, sizeof(endbuf), "%X/%X", LSN_FORMAT_ARGS(last_end));
	snprintf(lastterm, sizeof(lastterm), UINT64_FORMAT, last_term);
	snprintf(ledterm, sizeof(ledterm), UINT64_FORMAT, led_term);
	params[0] = cluster;
	params[1] = kvext_node_name;
	params[2] = termbuf;
	params[3] = endbuf;
	params[4] = lastterm;
	params[5] = ledterm;
	snprintf(app, sizeof(app), "kvext candidate %s", kvext_node_name);

	for (int i = 0; i < n; i++)
	{
		const char *keys[] = {"dbname", "fallback_application_name", NULL};
		const char *vals[] = {calls[i].peer->conninfo, app, NULL};

		if (!AcquireExternalFD())
		{
			call_failed(&calls[i], "there are too many open files on the local server");
			continue;
		}
		calls[i].have_fd = true;
		calls[i].conn = PQconnectStartParams(keys, vals, 1);
		if (calls[i].conn == NULL)
			call_failed(&calls[i], "out of memory");
		else if (PQstatus(calls[i].conn) == CONNECTION_BAD)
			call_failed(&calls[i], PQerrorMessage(calls[i].conn));
	}

	for (;;)
	{
		int			pending = 0;

		granted = 0;
		for (int i = 0; i < n; i++)
		{
			if (calls[i].state != CALL_DONE)
				call_step(&calls[i], params);
			if (calls[i].state != CALL_DONE)
				pending++;
			else if (calls[i].granted)
				granted++;
		}
		if (pending == 0 || granted + 1 >= KvReplQuorum())
			break;
		if (GetCurrentTimestamp() >= deadline)
		{
			for (int i = 0; i < n; i++)
				if (calls[i].state != CALL_DONE)
					call_failed(&calls[i], "no answer in time");
			break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, WAIT_EVENT_PG_SLEEP);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return granted;
}

static void
close_calls(VoteCall *calls, int n)
{
	for (int i = 0; i < n; i++)
	{
		if (calls[i].conn)
			PQfinish(calls[i].conn);
		calls[i].conn = NULL;
		if (calls[i].have_fd)
			ReleaseExternalFD();
		calls[i].have_fd = false;
	}
}

/*
 * lead
 *		This node won term: log the term's start and its decisions, persist
 *		the led term, and lead (catching up).  Caller holds the lock.
 */
static void
lead(uint64 term)
{
	KvLsn	   *pending;
	int			npending;
	KvLsn	   *undecided;
	int			nundecided;
	char		rec[sizeof(KvWalRecord)];

	/* every TXN record without a decision: the old leader's, never acked */
	npending = KvApplyFollowerPending(&pending);
	nundecided = KvApplyUndecided(pending, npending, KvApplyFollowerPos(),
								  KvWalInsertPos(), &undecided);

	KvWalSetTerm(term);
	memset(rec, 0, sizeof(rec));
	/*
	 * An error here (a full disk) leaves this node a follower in term,
	 * with a tail the next leader cuts.
	 */
	(void) KvWalInsert(rec, KV_REC_TERM, 0, InvalidTransactionId,
					   InvalidKvLsn, sizeof(rec), -1, NULL);
	for (int i = 0; i < nundecided; i++)
		(void) KvWalInsertMarker(KV_REC_ABORT, KV_RECF_RESOLVED, undecided[i]);
	KvWalFlushAll();

	/* from here on a restart in this term leads again */
	KvControlSetLedTerm(term);
	KvVisibleSetParkCeiling(PG_UINT64_MAX);
	KvVisibleSetCatchingUp(true);
	KvVisibleSetRole(true, term, kvext_node_name);
	ereport(LOG,
			(errmsg("kvext node \"%s\" leads its group in term " UINT64_FORMAT,
					kvext_node_name, term),
			 errdetail("It aborted %d undecided transactions of earlier terms and takes writes once its group has committed its log up to %X/%X.",
					   nundecided, LSN_FORMAT_ARGS(KvWalInsertPos()))));
}

/*
 * KvRoleElect
 *		Ask the group to elect this node leader (see the file header).
 *		KV_ELECT_PROMOTE (kv_promote()) asks in the next term.  A campaign
 *		(campaign.c) asks with its led term, so that peers whose logs run
 *		further in the term it led vote for it (vote()): only a campaign,
 *		whose node led its current term until its machine restarted and
 *		has followed nobody since, may claim it.  KV_ELECT_CAMPAIGN asks in
 *		the current term if it has no known leader and this node voted in
 *		it for nobody or itself (a peer that voted for us votes so again),
 *		else in the next; KV_ELECT_CAMPAIGN_NEXT in the next.  Returns what
 *		came of it, the term in *term, and the refusals in refusals (the
 *		votes got, its own included, in *votes).
 */
KvElection
KvRoleElect(KvElectMode mode, uint64 *term_out, int *votes, StringInfo refusals)
{
	const KvGroupConfig *cfg = KvReplConfig();
	KvControl	control;
	uint64		term;
	uint64		led_term;
	KvLsn		last_end;
	uint64		last_term;
	VoteCall   *calls;
	int			granted;
	uint64		seen = 0;
	bool		answered_no = false;
	bool		split_only = true;
	KvElection	result;

	LWLockAcquire(role_lock, LW_EXCLUSIVE);
	KvControlGet(&control);
	if (KvVisibleIsLeader())
	{
		LWLockRelease(role_lock);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("kvext node \"%s\" already leads its group, in term " UINT64_FORMAT,
						kvext_node_name, control.term)));
	}
	/*
	 * Never a term this node led: after a machine restart it may have lost
	 * records of it that its followers hold (campaign.c).
	 */
	if (mode == KV_ELECT_CAMPAIGN && KvControlMayStand(&control))
	{
		/*
		 * A term without a leader, in which we voted for nobody else: ask in
		 * it (another candidate's term, whose candidate we refused, say).
		 * If that candidate won, its voters say so and the campaign ends;
		 * nobody is deposed.
		 */
		term = control.term;
		if (control.voted_for[0] == '\0')
			KvControlSetTerm(term, kvext_node_name);
	}
	else
	{
		term = control.term + 1;
		KvControlSetTerm(term, kvext_node_name);
	}
	KvVisibleSetRole(false, term, NULL);
	last_record(&last_end, &last_term, true);
	led_term = (mode == KV_ELECT_PROMOTE) ? 0 : KvControlLedTerm(&control);
	Assert(term > KvControlLedTerm(&control));
	LWLockRelease(role_lock);

	ereport(LOG,
			(errmsg("kvext node \"%s\" asks its group to elect it in term " UINT64_FORMAT,
					kvext_node_name, term)));

	calls = palloc0(sizeof(VoteCall) * cfg->npeers);
	for (int i = 0; i < cfg->npeers; i++)
		calls[i].peer = &cfg->peers[i];
	PG_TRY();
	{
		granted = ask_votes(calls, cfg->npeers, control.cluster_id, term,
							last_end, last_term, led_term);
	}
	PG_FINALLY();
	{
		close_calls(calls, cfg->npeers);
	}
	PG_END_TRY();

	for (int i = 0; i < cfg->npeers; i++)
	{
		if (calls[i].term > seen)
			seen = calls[i].term;
		if (calls[i].state == CALL_DONE && !calls[i].granted && calls[i].term > 0)
		{
			answered_no = true;
			/* vote(): 'node "x" voted for "y" in term N' (names have no '"') */
			if (strstr(calls[i].reason, "\" voted for \"") == NULL)
				split_only = false;
		}
		if (calls[i].state == CALL_DONE && !calls[i].granted && calls[i].reason[0])
			appendStringInfo(refusals, "%s%s", refusals->len ? "; " : "", calls[i].reason);
	}
	pfree(calls);
	*term_out = term;
	*votes = granted + 1;

	LWLockAcquire(role_lock, LW_EXCLUSIVE);
	KvControlGet(&control);
	if (seen > control.term)
	{
		KvRoleFollow(seen, NULL);
		result = KV_ELECTION_HIGHER_TERM;
	}
	else if (granted + 1 >= KvReplQuorum() && control.term == term &&
			 strcmp(control.voted_for, kvext_node_name) == 0 &&
			 !KvVisibleIsLeader())
	{
		lead(term);
		result = KV_ELECTED;
	}
	else if (control.term != term)
		result = KV_ELECTION_REFUSED;
	else if (answered_no)
		result = split_only ? KV_ELECTION_SPLIT : KV_ELECTION_REFUSED;
	else
		result = KV_ELECTION_UNANSWERED;
	LWLockRelease(role_lock);
	return result;
}

/*
 * kv_promote() -> bigint
 *		Make this follower the group's leader in a new term (see the file
 *		header); returns the term.  Superuser only by default (the install
 *		script revokes EXECUTE from PUBLIC).
 */
Datum
kv_promote(PG_FUNCTION_ARGS)
{
	uint64		term;
	int			votes;
	StringInfoData refusals;

	KvReplCheckGroup();
	initStringInfo(&refusals);
	if (KvRoleElect(KV_ELECT_PROMOTE, &term, &votes, &refusals) == KV_ELECTED)
		PG_RETURN_INT64((int64) term);

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("kvext node \"%s\" was not elected leader in term " UINT64_FORMAT,
					kvext_node_name, term),
			 errdetail("It got %d of the %d votes it needs (its own included)%s%s.",
					   votes, KvReplQuorum(),
					   refusals.len ? ": " : "", refusals.data),
			 errhint("A node is elected only if its log holds every record a majority has acknowledged, by a majority of the group; it stays a follower.  If a peer holds a more recent log, promote that peer.")));
	PG_RETURN_NULL();			/* not reached */
}
