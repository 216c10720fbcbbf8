/*-------------------------------------------------------------------------
 *
 * receiver.c
 *	  The follower's side of log shipping: kv_repl_append(), the SQL
 *	  function a leader's sender calls to append records to this node's
 *	  log, advance its commit position and apply what is committed.
 *
 * The protocol is docs/architecture.md, "Replication" / "Messages"; the
 * steps below carry its numbers.  In short, holding the append lock (one
 * appender at a time, whatever the number of connections):
 *	1. refuse another group's cluster id (a new node, whose log holds only
 *	   the first TERM record, adopts the group's id instead); the
 *	   replication right is EXECUTE on this function (revoked from PUBLIC
 *	   by the install script);
 *	2. a term below ours: success = false with our term;
 *	3. a higher term: persist it (control file), then follow `leader`;
 *	4. our log must hold a record ending at prev_end of term prev_term
 *	   (fast path: the last record's (end, term), kept by wal.c; else the
 *	   log is read); if not: success = false, hint = our applied position,
 *	   a record boundary both logs share;
 *	5. every record of the batch is checked (KvLogCheckRecord, as the
 *	   reader does, plus version, type, terms, contiguous positions)
 *	   before anything is written: a bad batch is an ERROR and changes
 *	   nothing;
 *	6. records we hold with the same term are skipped; at the first one we
 *	   hold with another term our log is cut (KvWalTruncate; never below
 *	   the commit position: ERROR), then the rest is appended byte for byte
 *	   (KvWalAppendRaw) and flushed once;
 *	7. the commit position moves to min(commit_lsn, end of what matched
 *	   the leader's log), and apply.c applies everything committed;
 *	8. answer success with flushed and applied positions.
 *
 * "End of what matched" in step 7 and the flushed position in step 8 are
 * prev_end plus this batch, not the end of our log: a log that still holds
 * a divergent tail past the batch (not cut yet, because no record of the
 * batch reached it) must neither be committed nor reported as flushed
 * (Raft's min(leaderCommit, index of last new entry)).
 *
 * Locking: the append lock is taken first and held for the whole call;
 * under it the control lock, the log's insert and flush locks, and the
 * store's partition and keyspace locks are taken (never the reverse).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlogdefs.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"

#include "kvext.h"
#include "log/apply.h"
#include "log/control.h"
#include "log/reader.h"
#include "log/snapshot.h"
#include "log/visible.h"
#include "log/wal.h"
#include "replication/config.h"
#include "replication/receiver.h"
#include "replication/role.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(kv_repl_append);

/* what step 8 (or an early refusal) answers */
typedef struct AppendResult
{
	uint64		term;
	bool		success;
	KvLsn		flushed;
	KvLsn		applied;
	KvLsn		hint;			/* InvalidKvLsn: NULL */
} AppendResult;

/* raise 22004 for a NULL argument */
static void
check_not_null(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
}

/*
 * check_cluster
 *		Step 1: the append's cluster id must be ours.  A new node (its log
 *		holds only the first TERM record, which is the same on every node,
 *		so its store is empty) takes the group's id, durably, first.
 */
static void
check_cluster(uint64 cluster_id, const char *leader)
{
	KvControl	control;

	KvControlGet(&control);
	if (control.cluster_id == cluster_id)
		return;
	if (KvWalInsertPos() == KVEXT_WAL_START_LSN + sizeof(KvWalRecord))
	{
		KvControlSetClusterId(cluster_id);
		ereport(LOG,
				(errmsg("kvext node \"%s\" joins the group of leader \"%s\": cluster id " UINT64_FORMAT,
						kvext_node_name, leader, cluster_id)));
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("kvext append from another group refused"),
			 errdetail("The append carries cluster id " UINT64_FORMAT "; this node belongs to cluster id " UINT64_FORMAT ".",
					   cluster_id, control.cluster_id),
			 errhint("A node joins a group only while its kvext log is new.")));
}

/*
 * check_term
 *		Steps 2 and 3.  Returns false if the append's term is stale (the
 *		caller answers with our term).  A higher term is persisted before
 *		this node acts on it, then this node follows leader.
 */
static bool
check_term(uint64 term, const char *leader, uint64 *current)
{
	KvControl	control;
	char		known[NAMEDATALEN];

	KvControlGet(&control);
	*current = control.term;
	if (term < control.term)
		return false;
	if (term > control.term)
	{
		KvRoleFollow(term, leader);
		*current = term;
		ereport(LOG,
				(errmsg("kvext node \"%s\" follows leader \"%s\" in term " UINT64_FORMAT,
						kvext_node_name, leader, term)));
		return true;
	}
	else if (KvVisibleIsLeader())
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("kvext append from \"%s\" in term " UINT64_FORMAT ", which this node leads",
						leader, term),
				 errdetail("Two nodes claim to lead the same term.")));

	KvVisibleLeaderName(known);
	if (term == control.term && known[0] != '\0' && strcmp(known, leader) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("kvext append from \"%s\" in term " UINT64_FORMAT ", which \"%s\" leads",
						leader, term, known),
				 errdetail("Two nodes claim to lead the same term.")));
	if (strcmp(known, leader) != 0)
	{
		/* a candidate, or a follower that restarted: its leader is known now */
		KvRoleFollow(term, leader);
		ereport(LOG,
				(errmsg("kvext node \"%s\" follows leader \"%s\" in term " UINT64_FORMAT,
						kvext_node_name, leader, term)));
	}
	return true;
}

/*
 * log_has_record_ending
 *		Step 4: does our log hold a record that ends at end, of term?  The
 *		last record is known in shared memory (the usual case: the leader
 *		sends what follows our log); otherwise read the segment that holds
 *		the position just before end, from its start (a record boundary).
 */
static bool
log_has_record_ending(KvLsn end, uint64 term)
{
	KvLsn		last_start;
	KvLsn		last_end;
	uint64		last_term;
	KvLsn	   *segs;
	int			nsegs;
	KvLsn		from = InvalidKvLsn;
	KvLogReader *r;
	bool		found = false;

	if (end == InvalidKvLsn)
		return term == 0;		/* the start of the log */
	if (KvWalLastRecord(&last_start, &last_end, &last_term) && last_end == end)
		return last_term == term;
	if (end > last_end || end <= KVEXT_WAL_START_LSN)
		return false;

	nsegs = KvWalListSegments(&segs);
	for (int i = 0; i < nsegs; i++)
		if (segs[i] < end)
			from = segs[i];
	pfree(segs);
	if (from == InvalidKvLsn)
	{
		KvLsn		redo;
		uint64		redo_term;

		/* a log rebuilt from a snapshot starts at its redo point */
		return KvSnapshotRedoTerm(&redo, &redo_term) && redo == end &&
			redo_term == term;
	}
	r = KvLogReaderBegin(from);
	while (r->pos < end && KvLogReadNext(r) == KV_READ_RECORD)
	{
		if (r->pos == end)
		{
			found = (r->rec->term == term);
			break;
		}
	}
	KvLogReaderEnd(r);
	return found;
}

/* a bad batch: nothing of it is written */
static void bad_batch(KvLsn lsn, const char *why) pg_attribute_noreturn();

static void
bad_batch(KvLsn lsn, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("invalid record in kvext append at LSN %X/%X: %s",
					LSN_FORMAT_ARGS(lsn), why),
			 errdetail("Nothing of the batch was written.")));
}

/*
 * append_batch
 *		Step 6: skip what we hold, cut a divergent tail, append the rest,
 *		flush once.
 */
static void
append_batch(const char *records, Size len, KvLsn start)
{
	KvLsn		pos = start;
	Size		off = 0;
	KvLsn		logend = KvWalInsertPos();

	if (len > 0 && pos < logend)
	{
		KvLogReader *r = KvLogReaderBegin(pos);

		while (off < len && pos < logend)
		{
			KvWalRecord hdr;

			memcpy(&hdr, records + off, sizeof(hdr));
			if (KvLogReadNext(r) != KV_READ_RECORD || r->rec->term != hdr.term)
				break;
			if (r->rec->len != hdr.len)
				KvLogReportCorrupt(r, pos, "a record differs from the leader's of the same position and term",
								   "Two logs that hold a record of the same position and term must hold the same record.",
								   NULL);
			pos += hdr.len;
			off += hdr.len;
		}
		KvLogReaderEnd(r);

		if (off < len && pos < logend)
		{
			KvLsn		committed = Max(KvApplyFollowerPos(), KvVisibleCommitPos());

			if (pos < committed)
				ereport(ERROR,
						(errcode(ERRCODE_PROTOCOL_VIOLATION),
						 errmsg("kvext append would cut committed records: the log diverges at %X/%X, committed up to %X/%X",
								LSN_FORMAT_ARGS(pos), LSN_FORMAT_ARGS(committed))));
			ereport(LOG,
					(errmsg("kvext follower cuts its log at %X/%X (it ended at %X/%X): the records there differ from its leader's",
							LSN_FORMAT_ARGS(pos), LSN_FORMAT_ARGS(logend))));
			KvWalTruncate(pos);
		}
	}
	if (off < len)
		KvWalAppendRaw(records + off, len - off, pos);
	KvWalFlush(KvWalInsertPos());
}

/*
 * do_append
 *		Steps 1 to 8; caller holds the append lock.
 */
static void
do_append(uint64 cluster_id, const char *leader, uint64 term, KvLsn prev_end,
		  uint64 prev_term, KvLsn commit_lsn, const char *records, Size len,
		  AppendResult *res)
{
	KvLsn		start = (prev_end == InvalidKvLsn) ? KVEXT_WAL_START_LSN : prev_end;
	KvLsn		matched;
	const char *why;

	check_cluster(cluster_id, leader);
	res->success = false;
	res->hint = InvalidKvLsn;
	if (!check_term(term, leader, &res->term))
		goto answer;
	if (!log_has_record_ending(prev_end, prev_term))
	{
		res->hint = KvApplyFollowerPos();
		goto answer;
	}
	/* step 5 */
	if ((why = KvLogCheckBatch(records, len, start, prev_term, term, &matched)) != NULL)
		bad_batch(matched, why);
	append_batch(records, len, start);
	if (len == 0)
		matched = prev_end;

	/* step 7 */
	matched = Min(matched, KvWalFlushPos());
	if (Min(commit_lsn, matched) > KvVisibleCommitPos())
		KvVisibleAdvance(Min(commit_lsn, matched), InvalidKvLsn);
	(void) KvApplyFollowerAdvance(KvVisibleCommitPos());
	res->success = true;
	res->flushed = matched;
	res->applied = KvApplyFollowerPos();
	return;

answer:
	res->flushed = KvWalFlushPos();
	res->applied = KvApplyFollowerPos();
}

/*
 * kv_repl_append(cluster_id bigint, leader text, term bigint,
 *				  prev_end pg_lsn, prev_term bigint, commit_lsn pg_lsn,
 *				  records bytea)
 *	 -> (term bigint, success boolean, flushed pg_lsn, applied pg_lsn,
 *		 hint pg_lsn)
 */
Datum
kv_repl_append(PG_FUNCTION_ARGS)
{
	uint64		cluster_id;
	char	   *leader;
	uint64		term;
	KvLsn		prev_end;
	uint64		prev_term;
	KvLsn		commit_lsn;
	bytea	   *records;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {0};
	AppendResult res;
	MemoryContext cxt;
	MemoryContext old;

	check_not_null(fcinfo, 0, "cluster_id");
	check_not_null(fcinfo, 1, "leader");
	check_not_null(fcinfo, 2, "term");
	check_not_null(fcinfo, 3, "prev_end");
	check_not_null(fcinfo, 4, "prev_term");
	check_not_null(fcinfo, 5, "commit_lsn");
	check_not_null(fcinfo, 6, "records");
	cluster_id = (uint64) PG_GETARG_INT64(0);
	leader = text_to_cstring(PG_GETARG_TEXT_PP(1));
	term = (uint64) PG_GETARG_INT64(2);
	prev_end = (KvLsn) PG_GETARG_LSN(3);
	prev_term = (uint64) PG_GETARG_INT64(4);
	commit_lsn = (KvLsn) PG_GETARG_LSN(5);
	records = PG_GETARG_BYTEA_PP(6);

	KvReplCheckGroup();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!KvReplIsPeer(leader))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("kvext append from \"%s\" refused: not a peer of this node", leader),
				 errhint("kvext.peers lists the nodes of this node's group.")));
	if ((int64) term <= 0 || (int64) prev_term < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kvext append with an invalid term")));

	cxt = AllocSetContextCreate(CurrentMemoryContext, "kvext append",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	LWLockAcquire(KvRoleLock(), LW_EXCLUSIVE);
	do_append(cluster_id, leader, term, prev_end, prev_term, commit_lsn,
			  VARDATA_ANY(records), VARSIZE_ANY_EXHDR(records), &res);
	LWLockRelease(KvRoleLock());
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);

	values[0] = Int64GetDatum((int64) res.term);
	values[1] = BoolGetDatum(res.success);
	values[2] = LSNGetDatum(res.flushed);
	values[3] = LSNGetDatum(res.applied);
	if (res.hint != InvalidKvLsn)
		values[4] = LSNGetDatum(res.hint);
	else
		nulls[4] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * KvReplLeaderCatchUp
 *		A leader restarted in a group: its recovery applied its log only up
 *		to its commit watermark (what the group had committed), so it does
 *		not show a write that a new majority could still drop.  Apply the
 *		rest, as a follower would, as the commit position passes it; once
 *		the whole log is applied, let the node take writes.  Run by the wal
 *		writer each round; takes the append lock.
 */
void
KvReplLeaderCatchUp(void)
{
	MemoryContext cxt;
	MemoryContext old;

	if (!KvVisibleInGroup() || !KvVisibleIsLeader() || !KvVisibleCatchingUp())
		return;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "kvext leader catch-up",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	LWLockAcquire(KvRoleLock(), LW_EXCLUSIVE);
	if (KvApplyFollowerPos() != InvalidKvLsn &&
		KvApplyFollowerAdvance(Min(KvVisibleCommitPos(), KvWalInsertPos())) >= KvWalInsertPos())
	{
		KvApplyFollowerStop();
		KvVisibleSetCatchingUp(false);
		ereport(LOG,
				(errmsg("kvext leader \"%s\" has applied its log up to %X/%X and takes writes",
						kvext_node_name, LSN_FORMAT_ARGS(KvWalInsertPos()))));
	}
	LWLockRelease(KvRoleLock());
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/*
 * KvReceiverCheckLeader
 *		Steps 1 to 3 of an append, for another message of the leader (a
 *		snapshot chunk, snaprecv.c): the cluster id (a new node adopts it),
 *		then the term.  Returns false if the message's term is stale;
 *		*current is this node's term.  Caller holds the append lock.
 */
bool
KvReceiverCheckLeader(uint64 cluster_id, const char *leader, uint64 term,
					  uint64 *current)
{
	check_cluster(cluster_id, leader);
	return check_term(term, leader, current);
}
