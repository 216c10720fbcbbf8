/*-------------------------------------------------------------------------
 *
 * txn.c
 *	  What happens to a transaction's kvext writes at commit, abort,
 *	  savepoints and PREPARE: the commit protocol.
 *
 * The write set (writeset.c) lists the transaction's pending entries.  The
 * rules (docs/architecture.md, "Commit outcome") are:
 *
 *	The log decides every outcome, once, by position.  A transaction's
 *	writes form one TXN record, written at XACT_EVENT_PRE_COMMIT; it
 *	counts only if a COMMIT record naming its position follows.  The
 *	COMMIT record is written in XACT_EVENT_COMMIT, after PostgreSQL's own
 *	commit record, when no error can happen any more, and made as durable
 *	as kvext.synchronous_commit asks before the client is told.  A TXN
 *	record without a COMMIT record is aborted, so nothing is judged by an
 *	xid that PostgreSQL may hand out again after a crash.
 *
 *	A kv-only transaction (it has no xid, or wrote no PostgreSQL WAL: key
 *	writes take no xid, keylock.c) is decided by its COMMIT record alone,
 *	and PostgreSQL writes no commit record for it.  Errors after our
 *	pre-commit (a serialization failure, NOTIFY, another extension's
 *	callback) abort it with no COMMIT record: the client that got the
 *	ERROR never finds the write.
 *
 *	A mixed transaction (it also wrote tables: an xid and WAL) is decided
 *	by PostgreSQL's commit record.  Before its TXN record is written, a WAL
 *	record carrying its xid is made durable, so after a crash PostgreSQL
 *	never hands that xid out again and pg_xact's answer for it cannot
 *	change.  Its TXN
 *	record is flushed before PostgreSQL's commit record can be; at commit,
 *	PostgreSQL's commit record is flushed (whatever synchronous_commit
 *	says) before the COMMIT record is written.  If a crash comes between
 *	the two, recovery asks pg_xact once and logs the answer as a COMMIT or
 *	ABORT record (recovery.c).
 *
 *	Visibility follows the log: the pending entries become visible only
 *	after the COMMIT record is as durable as the setting asks (the
 *	"visible up to" position of wal.c), all at once for readers
 *	(KvStoreBeginCommit), then are converted one by one.
 *
 * Abort.  In XACT_EVENT_ABORT (also run for FATAL exits) a transaction
 * whose TXN record was written logs an ABORT record (not flushed: a TXN
 * record without a decision is aborted anyway; the record only saves
 * recovery the question), then its entries are unlinked newest first.
 * PREPARE TRANSACTION with kvext writes is refused in
 * XACT_EVENT_PRE_PREPARE: a prepared transaction outlives its backend,
 * and kvext's write locks and pending entries are tied to it.
 *
 * Memory: the TXN record is built in the write set's context, reset at
 * transaction end.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "storage/predicate.h"
#include "storage/ipc.h"
#include "utils/memutils.h"

#include "deadline.h"
#include "failpoint.h"
#include "kvext.h"
#include "log/wal.h"
#include "log/visible.h"
#include "store/acl.h"
#include "store/keyspace.h"
#include "store/keylock.h"
#include "store/park.h"
#include "store/store.h"
#include "store/txn.h"
#include "store/writeset.h"

/* prefix of the logical message that makes a mixed transaction's xid durable */
#define KVEXT_XID_MESSAGE_PREFIX	"kvext"

static bool ws_logged = false;	/* TXN record written at pre-commit */
static bool ws_mixed = false;	/* ... and the transaction wrote PG WAL */
static KvLsn ws_txn_lsn = InvalidKvLsn;	/* ... at this position */
static bool ws_decided = false; /* kv-only, in a group: its COMMIT record
								 * was written at pre-commit ... */
static KvLsn ws_commit_end = InvalidKvLsn;	/* ... and ends here */

/* end of the last record this backend wrote (flushed at backend exit) */
static KvLsn my_last_record_end = InvalidKvLsn;
static bool exit_hook_registered = false;

static void kv_xact_callback(XactEvent event, void *arg);
static void kv_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								SubTransactionId parentSubid, void *arg);

/*
 * KvTxnInit
 *		Register the transaction callbacks (from _PG_init).
 */
void
KvTxnInit(void)
{
	RegisterXactCallback(kv_xact_callback, NULL);
	RegisterSubXactCallback(kv_subxact_callback, NULL);
}

/*
 * flush_at_exit
 *		before_shmem_exit callback: a backend that exits (a clean shutdown
 *		terminates every session) flushes what it wrote, so that commits
 *		acknowledged with kvext.synchronous_commit = off survive a clean
 *		shutdown followed by a power loss.
 */
static void
flush_at_exit(int code, Datum arg)
{
	if (my_last_record_end != InvalidKvLsn &&
		KvWalFlushPos() < my_last_record_end)
		KvWalFlush(my_last_record_end);
}

/* remember the end of a record this backend wrote */
static void
note_record(KvLsn end)
{
	my_last_record_end = end;
	if (!exit_hook_registered)
	{
		before_shmem_exit(flush_at_exit, (Datum) 0);
		exit_hook_registered = true;
	}
}

/*
 * build_txn_record
 *		The write set as one TXN record (header space, then the ops), in the
 *		write set's context; *lenp gets its padded length.
 */
static char *
build_txn_record(uint32 *lenp)
{
	Size		len = sizeof(KvWalRecord);
	uint32		n = KvWsCount();
	char	   *rec;
	char	   *p;

	for (uint32 i = 0; i < n; i++)
	{
		KvWsItem   *item = KvWsItemAt(i);
		KvEntry    *e;

		if (item->kind != KV_WS_ENTRY)
		{
			len += sizeof(KvWalOp) + NAMEDATALEN;
			continue;
		}
		if (item->entry == InvalidKvPtr)
			continue;			/* merged away at a subcommit */
		e = KvEntryGet(item->entry);
		len += sizeof(KvWalOp) + e->keylen + e->vallen;
	}
	len = KvWalRecordPadLen(len);
	if (len > PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("transaction writes too much kvext data to commit"),
				 errdetail("Its log record would be %zu bytes; the limit is 4GB.", len)));

	rec = MemoryContextAllocExtended(KvWsContext(), len, MCXT_ALLOC_HUGE);
	memset(rec, 0, sizeof(KvWalRecord));
	p = rec + sizeof(KvWalRecord);
	for (uint32 i = 0; i < n; i++)
	{
		/* our own pending entries: nobody else changes them, no lock needed */
		KvWsItem   *item = KvWsItemAt(i);
		KvEntry    *e;
		KvWalOp		op;

		if (item->kind != KV_WS_ENTRY)
		{
			char		name[NAMEDATALEN];

			memset(&op, 0, sizeof(op));
			op.keyspace = item->keyspace;
			if (item->kind == KV_WS_KS_CREATE)
			{
				op.op = KV_WOP_KS_CREATE;
				KvKeyspaceName(item->keyspace, name);
				op.keylen = strlen(name);
			}
			else
				op.op = KV_WOP_KS_DROP;
			memcpy(p, &op, sizeof(op));
			p += sizeof(op);
			memcpy(p, name, op.keylen);
			p += op.keylen;
			continue;
		}
		if (item->entry == InvalidKvPtr)
			continue;
		e = KvEntryGet(item->entry);
		op.op = (e->flags & KVE_TOMBSTONE) ? KV_WOP_DELETE : KV_WOP_PUT;
		op.binary = (e->flags & KVE_BINARY) ? 1 : 0;
		op.keyspace = e->keyspace;
		op.keylen = e->keylen;
		op.vallen = e->vallen;
		memcpy(p, &op, sizeof(op));
		p += sizeof(op);
		memcpy(p, e->data, e->keylen + e->vallen);
		p += e->keylen + e->vallen;
	}
	memset(p, 0, rec + len - p);
	*lenp = (uint32) len;
	return rec;
}

/*
 * make_xid_durable
 *		A mixed transaction: write a WAL record carrying its top-level xid
 *		and flush PostgreSQL's WAL up to it, so that a crash can never make
 *		PostgreSQL hand the xid out again.  (The transaction's own records
 *		carry it too, unless all it wrote was, say, a pruning record.)
 */
static void
make_xid_durable(KvLsn txn_pos)
{
	char		msg[32];

	snprintf(msg, sizeof(msg), "%X/%X", LSN_FORMAT_ARGS(txn_pos));
	(void) LogLogicalMessage(KVEXT_XID_MESSAGE_PREFIX, msg, strlen(msg) + 1, true);
	XLogFlush(XactLastRecEnd);
}

/* remove the pending entries of items [from, KvWsCount()), newest first */
static void
abort_items(uint32 from)
{
	while (KvWsCount() > from)
	{
		KvWsItem	item = *KvWsItemAt(KvWsCount() - 1);

		KvWsPop();
		if (item.kind != KV_WS_ENTRY)
			KvKeyspaceEndXact(item.keyspace, item.kind, item.prev_state, false);
		else if (item.entry != InvalidKvPtr)
			KvStoreAbortEntry(item.entry);
	}
}

/*
 * merge_superseded
 *		After a subcommit relabelled items [from, KvWsCount()) to the parent
 *		level, an older version of the same key written at the parent level
 *		can never be seen again (a rollback to the parent level would remove
 *		both): free it, so a loop of savepoints or exception blocks rewriting
 *		one key keeps one version, not one per iteration.
 */
static void
merge_superseded(uint32 from)
{
	for (uint32 i = from; i < KvWsCount(); i++)
	{
		KvWsItem   *item = KvWsItemAt(i);
		KvWsItem   *oitem;
		KvPtr		older;

		if (item->kind != KV_WS_ENTRY || item->entry == InvalidKvPtr)
			continue;
		older = KvStoreOlderOwnVersion(item->entry);
		if (older == InvalidKvPtr)
			continue;
		oitem = KvWsItemAt(KvEntryGet(older)->wsidx);
		if (oitem->nestlevel != item->nestlevel)
			continue;
		/*
		 * The newer item now spans both writes.  ws_delta keeps both
		 * items' contributions, whose sum is exactly the newer item's new
		 * (is - was), so it needs no change; a later abort of the newer
		 * item subtracts that sum.
		 */
		item->was_visible = oitem->was_visible;
		KvWsForgetEntry(KvEntryGet(older)->wsidx);
		KvStoreAbortEntry(older);
	}
}

/*
 * report_in_doubt
 *		The wait for the majority ended before the commit was durable there.
 *		elevel ERROR at pre-commit (a kv-only transaction), WARNING after
 *		PostgreSQL's commit (a mixed one).  The transaction is parked either
 *		way (abort_txn, commit_txn): its keys stay locked and invisible
 *		until its record commits or a new leader drops it.
 */
static void
report_in_doubt(int elevel, KvVisibleWaitResult r)
{
	ereport(elevel,
			(errcode(ERRCODE_T_R_STATEMENT_COMPLETION_UNKNOWN),
			 errmsg("the transaction's kvext writes may or may not be committed"),
			 r == KV_VISIBLE_NOT_LEADER ?
			 errdetail("This node stopped leading its group before the commit was durable on a majority.") :
			 errdetail("The wait for a majority of the group was cancelled; the commit record stays in the log."),
			 errhint("The keys stay locked and invisible until the group commits the record, or a new leader drops it; kv_cluster_status() shows the group.")));
}

/*
 * wait_for_majority
 *		For synchronous_commit on or remote_apply, wait until the group's
 *		commit (remote_apply: applied-majority) position passes end; a wait
 *		that ends otherwise is reported in doubt at elevel.
 */
static void
wait_for_majority(KvLsn end, int elevel)
{
	KvVisibleWaitResult r;

	if (kvext_synchronous_commit != KV_SYNC_ON &&
		kvext_synchronous_commit != KV_SYNC_REMOTE_APPLY)
		return;
	r = KvVisibleWait(end, kvext_synchronous_commit == KV_SYNC_REMOTE_APPLY,
					  KvCommitDeadline());
	if (r != KV_VISIBLE_REACHED)
		report_in_doubt(elevel, r);
}

/*
 * stepped_down
 *		This node stopped leading between the transaction's TXN record and
 *		its COMMIT record, which the log then refused (KvWalInsert): the
 *		record stays undecided, and the group's next leader aborts it.  So
 *		the transaction did not commit its keys.  ERROR at pre-commit (a
 *		kv-only transaction: it rolls back), WARNING after PostgreSQL's
 *		commit (a mixed one: the tables are committed, the keys are not).
 */
static void
stepped_down(int elevel)
{
	char		leader[NAMEDATALEN];

	KvVisibleLeaderName(leader);
	ereport(elevel,
			(errcode(ERRCODE_TRANSACTION_ROLLBACK),
			 errmsg("the transaction's kvext writes were not committed: node \"%s\" stopped leading its group",
					kvext_node_name),
			 elevel == WARNING ?
			 errdetail("PostgreSQL committed the transaction's tables; its keys were rolled back.") :
			 errdetail("The transaction was rolled back before its commit record was logged."),
			 leader[0] != '\0' ?
			 errhint("Retry on the leader, node \"%s\".", leader) :
			 errhint("Retry on the group's leader; kv_cluster_status() shows the roles.")));
}

/*
 * decide_in_group
 *		Pre-commit of a kv-only transaction in a replicated group: write its
 *		COMMIT record now and, for synchronous_commit on or remote_apply,
 *		wait until the group's commit position passes it.  A cancelled wait
 *		raises 40003; the records stay in the log and the transaction is
 *		parked by abort_txn (no ABORT record: it may have left the leader).
 *		off and local return at once (after the local flush for local) and
 *		are parked by commit_txn.
 */
static void
decide_in_group(void)
{
	KvLsn		end;

	START_CRIT_SECTION();
	end = KvWalInsertMarker(KV_REC_COMMIT, 0, ws_txn_lsn);
	END_CRIT_SECTION();
	if (end == InvalidKvLsn)
		stepped_down(ERROR);
	note_record(end);
	ws_decided = true;
	ws_commit_end = end;
	if (KvAclWriteSetTouches())
		KvAclNoteCommit(end);

	if (kvext_synchronous_commit != KV_SYNC_OFF)
		KvWalFlush(end);
	wait_for_majority(end, ERROR);
}

/*
 * log_txn
 *		Pre-commit: write the write set as one TXN record.  A mixed
 *		transaction's record is flushed at once (PostgreSQL's commit record
 *		may be durable an instant later); a kv-only one is flushed with its
 *		COMMIT record.  May raise an error (disk full), which aborts the
 *		transaction with nothing committed.
 */
static void
log_txn(void)
{
	uint32		len;
	char	   *rec = build_txn_record(&len);
	TransactionId xid = InvalidTransactionId;
	KvLsn		end;

	/*
	 * WAL alone (a page pruned by a read) leaves nothing for pg_xact to
	 * decide; an xid alone (temporary or unlogged tables) leaves nothing
	 * that survives a crash.
	 */
	ws_mixed = (XactLastRecEnd != 0 &&
				TransactionIdIsValid(GetTopTransactionIdIfAny()));

	/*
	 * In a group, a kv-only transaction is decided and waited for here,
	 * where an error is still possible: run PostgreSQL's serialization
	 * check first, so that the wait is the last step that can fail.
	 */
	if (KvVisibleInGroup())
	{
		KvVisibleCheckWritable();
		if (!ws_mixed && IsolationIsSerializable())
			PreCommit_CheckForSerializationFailure();
	}

	if (ws_mixed)
	{
		xid = GetTopTransactionId();
		make_xid_durable(KvWalInsertPos());
	}
	end = KvWalInsert(rec, KV_REC_TXN, ws_mixed ? KV_RECF_HEAP : 0, xid,
					  InvalidKvLsn, len, KvStoreMySlot(), &ws_txn_lsn);
	ws_logged = true;
	note_record(end);
	pfree(rec);

	/* after ws_logged, so that an error here aborts with an ABORT record */
	KvFailpoint("wal-after-write");
	if (ws_mixed)
		KvWalFlush(end);
	KvFailpoint("wal-after-fsync");

	if (KvVisibleInGroup() && !ws_mixed)
		decide_in_group();
}

/* how far ahead publish_commit prefetches */
#define COMMIT_PREFETCH 4

static inline void
prefetch_item(KvWsItem *item, bool next)
{
	if (item->kind == KV_WS_ENTRY && item->entry != InvalidKvPtr)
		KvStorePrefetchCommit(item->entry, next);
}

/*
 * publish_commit
 *		The COMMIT record ending at end is as durable as required: make the
 *		writes visible as a whole, then convert them entry by entry.
 */
static void
publish_commit(KvLsn end)
{
	uint32		n = KvWsCount();

	KvStoreBeginCommit(end);
	if (KvWsHasKeyspaceOps())
		KvKeyspaceCommitStarting();
	for (uint32 i = 0; i < n; i++)
	{
		KvWsItem   *item = KvWsItemAt(i);

		/* overlap the cache misses of a large commit (KvStorePrefetchCommit) */
		if (i + 2 * COMMIT_PREFETCH < n)
			prefetch_item(KvWsItemAt(i + 2 * COMMIT_PREFETCH), false);
		if (i + COMMIT_PREFETCH < n)
			prefetch_item(KvWsItemAt(i + COMMIT_PREFETCH), true);

		if (item->kind != KV_WS_ENTRY)
			KvKeyspaceEndXact(item->keyspace, item->kind, item->prev_state, true);
		else if (item->entry != InvalidKvPtr)
			KvStoreCommitEntry(item->entry);
	}
	KvWalClearInflight(KvMyOwnerSlot);
	KvStoreEndXact();
}

/*
 * commit_in_group
 *		XACT_EVENT_COMMIT in a replicated group.  A kv-only transaction
 *		wrote its COMMIT record at pre-commit (decide_in_group); a mixed one
 *		writes it now and flushes it (the senders ship flushed records only),
 *		then waits for the majority as the setting asks.  No error is
 *		possible here: a cancelled wait is a WARNING with 40003.  Whatever
 *		is not yet visible is parked.
 */
static void
commit_in_group(void)
{
	KvLsn		end = ws_commit_end;

	if (!ws_decided)
	{
		Assert(ws_mixed);
		XLogFlush(XactLastCommitEnd);
		START_CRIT_SECTION();
		end = KvWalInsertMarker(KV_REC_COMMIT, 0, ws_txn_lsn);
		if (end != InvalidKvLsn)
		{
			note_record(end);
			KvWalFlush(end);
		}
		END_CRIT_SECTION();
		if (end != InvalidKvLsn && KvAclWriteSetTouches())
			KvAclNoteCommit(end);
		if (end == InvalidKvLsn)
		{
			/* no longer ours to decide: drop the keys (see stepped_down) */
			stepped_down(WARNING);
			KvWalClearInflight(KvMyOwnerSlot);
			abort_items(0);
			KvStoreEndXact();
			return;
		}
		wait_for_majority(end, WARNING);
	}

	if (KvWalVisiblePos() >= end)
		publish_commit(end);
	else
		KvParkCurrent(end);
}

/*
 * commit_txn
 *		XACT_EVENT_COMMIT: PostgreSQL has committed; decide the TXN record
 *		with a COMMIT record, make it as durable as the setting asks, then
 *		make the writes visible.  No error is possible here (it would be a
 *		PANIC after PostgreSQL's commit): the COMMIT record's space was
 *		reserved with the TXN record, and fsync failures PANIC anyway.
 */
static void
commit_txn(void)
{
	KvLsn		end;

	if (KvVisibleInGroup())
	{
		commit_in_group();
		return;
	}

	/*
	 * A mixed transaction's fate is its PostgreSQL commit record: durable
	 * before its keys can be seen, whatever synchronous_commit says (a
	 * no-op when PostgreSQL committed synchronously).
	 */
	if (ws_mixed)
		XLogFlush(XactLastCommitEnd);

	KvFailpoint("commit-before-marker");

	/*
	 * A kv-only commit is decided by its COMMIT record: flush it as the
	 * setting asks.  A mixed one is already decided and durable (its TXN
	 * record and PostgreSQL's commit record are flushed, and recovery would
	 * log the same answer), so its COMMIT record needs no fsync of its own.
	 */
	START_CRIT_SECTION();
	end = KvWalInsertMarker(KV_REC_COMMIT, 0, ws_txn_lsn);
	note_record(end);
	if (kvext_synchronous_commit != KV_SYNC_OFF && !ws_mixed)
		KvWalFlush(end);
	END_CRIT_SECTION();

	KvFailpoint("commit-after-marker");

	if (KvAclWriteSetTouches())
		KvAclNoteCommit(end);
	publish_commit(end);
}

/*
 * abort_txn
 *		XACT_EVENT_ABORT: remove the transaction's entries; if its TXN
 *		record was written, log an ABORT record for it first.
 */
static void
abort_txn(void)
{
	if (ws_decided)
	{
		/*
		 * Its COMMIT record is in the log (kv-only, in a group) and may have
		 * left the leader: never take it back.  Park it; it commits when the
		 * group's commit position passes it.
		 */
		KvParkCurrent(ws_commit_end);
		return;
	}
	if (ws_logged)
	{
		/* a crash here: the TXN record has no decision, so it is aborted */
		KvFailpoint("abort-after-error");
		START_CRIT_SECTION();
		{
			KvLsn		end = KvWalInsertMarker(KV_REC_ABORT, 0, ws_txn_lsn);

			/* InvalidKvLsn: stepped down, the next leader aborts it */
			if (end != InvalidKvLsn)
				note_record(end);
		}
		END_CRIT_SECTION();
		KvWalClearInflight(KvMyOwnerSlot);
	}
	if (KvWsCount() > 0)
	{
		abort_items(0);
		KvStoreEndXact();
	}
}

/* drop the write set at the end of the top-level transaction */
static void
reset_write_set(void)
{
	ws_logged = ws_mixed = ws_decided = false;
	ws_txn_lsn = ws_commit_end = InvalidKvLsn;
	KvAclEndXact();
	/* every entry is committed, removed or parked: give the slot back */
	KvStoreReleaseSlot();
	KvWsReset();
}

/*
 * KvTxnPreCommit
 *		Log this transaction's writes now, as its pre-commit would (and may
 *		fail as it would): kvext_fdw calls it at its own pre-commit after
 *		its checks and before its remote COMMITs, which cannot be taken
 *		back, so that every step that may fail runs before them.  The
 *		pre-commit callback then finds it done.
 */
void
KvTxnPreCommit(void)
{
	if (KvWsCount() > 0 && !ws_logged)
		log_txn();
}

/*
 * KvTxnDecided
 *		Is this transaction's COMMIT record written (a kv-only transaction
 *		in a group, decided at pre-commit)?  Then its keys commit even if
 *		the transaction fails after this point.
 */
bool
KvTxnDecided(void)
{
	return ws_decided;
}

static void
kv_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (KvWsCount() > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has written kvext keys"),
						 errdetail("kvext does not support two-phase commit yet.")));
			break;

		case XACT_EVENT_PRE_COMMIT:
			/* kvext_fdw may have logged it already (KvTxnPreCommit) */
			if (KvWsCount() > 0 && !ws_logged)
				log_txn();
			break;

		case XACT_EVENT_COMMIT:
			if (ws_logged)
				commit_txn();
			reset_write_set();
			break;

		case XACT_EVENT_ABORT:
			abort_txn();
			reset_write_set();
			break;

		case XACT_EVENT_PREPARE:
			/* refused in PRE_PREPARE if there were writes */
			Assert(KvWsCount() == 0);
			reset_write_set();
			break;

		default:
			break;
	}
}

static void
kv_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	uint32		i;
	uint32		lockid;
	bool		sub;
	bool		restamp = false;

	/* the keys' lock passes to the parent (keylock.c) */
	if (event == SUBXACT_EVENT_COMMIT_SUB)
		restamp = KvKeyLockSubCommit(level, mySubid, parentSubid, &lockid, &sub);

	/* (a lock to pass on with no item left: the switch only releases it) */
	if (KvWsCount() == 0 && !restamp)
		return;

	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			for (i = KvWsCount(); i > 0 && KvWsItemAt(i - 1)->nestlevel >= level; i--)
				;
			abort_items(i);
			/* writers that saw those entries may be waiting (store.c) */
			KvStoreWakeWaiters();
			break;

		case SUBXACT_EVENT_COMMIT_SUB:
			for (i = KvWsCount(); i > 0 && KvWsItemAt(i - 1)->nestlevel >= level; i--)
				KvWsItemAt(i - 1)->nestlevel = level - 1;
			merge_superseded(i);
			if (restamp)
			{
				for (uint32 j = i; j < KvWsCount(); j++)
				{
					KvWsItem   *item = KvWsItemAt(j);

					if (item->kind == KV_WS_ENTRY && item->entry != InvalidKvPtr)
						KvStoreRestampEntry(item->entry, lockid, sub);
				}
				KvKeyLockSubCommitDone(level);
			}
			break;

		default:
			break;
	}
}
