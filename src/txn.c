/*-------------------------------------------------------------------------
 *
 * txn.c
 *	  A transaction's kvext writes: the write set, and what happens to it at
 *	  commit, abort, savepoints and PREPARE.
 *
 * Every write links a pending entry into the shared store (store.c) and
 * records it here, in write order, with the subtransaction nesting level
 * that made it.  The write set is an array, not a hash table: entries are
 * found through the shared chains; the array only has to say, at the end
 * of a (sub)transaction, which pending entries to commit or remove.
 *
 * Invariant: the nesting levels along the array never decrease, and none
 * exceeds the current level.  A write at level L appends an item of level
 * L; all items of deeper levels were removed or relabelled when those
 * levels ended.  Therefore the writes of the subtransaction now ending, and
 * of its children, are exactly the items at the tail with level >= L:
 *	- ROLLBACK TO / subtransaction abort pops them, freeing their entries;
 *	- RELEASE / subtransaction commit relabels them to level L - 1.
 *
 * Logging.  In XACT_EVENT_PRE_COMMIT, before PostgreSQL writes its own
 * commit record, the write set becomes one TXN log record (wal.h) and, per
 * kvext.synchronous_commit, is flushed.  The record carries the top-level
 * xid and says whether the transaction also wrote PostgreSQL WAL
 * (XactLastRecEnd != 0, i.e. it changed tables): recovery then applies it
 * only if pg_xact says the transaction committed, so tables and keys
 * commit together or not at all.  Such a "mixed" transaction is always
 * flushed here, even with kvext.synchronous_commit = off, because its
 * PostgreSQL commit may be durable an instant later, and its PostgreSQL
 * commit record is flushed before its keys become visible.  For a kv-only
 * transaction the kvext record is the commit (PostgreSQL does not flush
 * the commit record of a transaction that wrote no WAL); if the
 * transaction still aborts after pre-commit, an ABORT record is logged and
 * flushed before the abort completes.
 *
 * Commit.  In XACT_EVENT_COMMIT, which runs after the transaction is
 * recorded committed in pg_xact but before its locks (and so its xid lock,
 * on which other writers wait) are released, each pending entry replaces
 * the committed version of its key, in write order.  Nothing here can fail:
 * all memory was allocated at write time.  A concurrent reader may see the
 * old value between pg_xact commit and this callback, as it would see old
 * heap data until the commit is visible to its snapshot.
 *
 * Abort.  In XACT_EVENT_ABORT (also run for FATAL exits), entries are
 * unlinked newest first.  PREPARE TRANSACTION with kvext writes is refused
 * in XACT_EVENT_PRE_PREPARE: a prepared transaction outlives its backend,
 * and kvext's write locks and pending entries are tied to it.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "failpoint.h"
#include "kvext.h"
#include "store.h"
#include "txn.h"
#include "wal.h"

typedef struct KvWsItem
{
	KvPtr		entry;			/* the pending entry */
	uint16		keyspace;
	bool		was_visible;	/* key existed for us before this write */
	bool		is_visible;		/* key exists for us after it */
	int			nestlevel;		/* subtransaction level that owns it */
} KvWsItem;

static MemoryContext WriteSetContext = NULL;
static KvWsItem *ws_items = NULL;
static uint32 ws_count = 0;
static uint32 ws_cap = 0;
static int64 *ws_delta = NULL;	/* per keyspace: change of visible count */
static bool ws_logged = false;	/* TXN record written at pre-commit */
static bool ws_mixed = false;	/* ... and the transaction wrote PG WAL */
static TransactionId ws_xid = InvalidTransactionId;	/* ... for this xid */

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
 * KvTxnReserve
 *		Make room for one more item, so that KvTxnPush cannot fail.  Called
 *		before the store takes any lock.
 */
void
KvTxnReserve(void)
{
	if (WriteSetContext == NULL)
		WriteSetContext = AllocSetContextCreate(TopMemoryContext,
												"kvext write set",
												ALLOCSET_DEFAULT_SIZES);
	if (ws_delta == NULL)
		ws_delta = MemoryContextAllocZero(WriteSetContext,
										  sizeof(int64) * kvext_max_keyspaces);
	if (ws_count < ws_cap)
		return;
	if (ws_items == NULL)
	{
		ws_cap = 1024;
		ws_items = MemoryContextAlloc(WriteSetContext,
									  sizeof(KvWsItem) * ws_cap);
	}
	else
	{
		ws_cap *= 2;
		ws_items = repalloc_huge(ws_items, sizeof(KvWsItem) * (Size) ws_cap);
	}
}

/*
 * KvTxnPush
 *		Record a new pending entry at the current nesting level; returns its
 *		index.  The caller holds a partition lock: must not fail, hence
 *		KvTxnReserve first.
 */
uint32
KvTxnPush(KvPtr entry, uint16 ks, bool was_visible, bool is_visible)
{
	KvWsItem   *item;

	Assert(ws_count < ws_cap);
	item = &ws_items[ws_count];
	item->entry = entry;
	item->keyspace = ks;
	item->was_visible = was_visible;
	item->is_visible = is_visible;
	item->nestlevel = GetCurrentTransactionNestLevel();
	ws_delta[ks] += (int) is_visible - (int) was_visible;
	return ws_count++;
}

/*
 * KvTxnReplace
 *		A rewrite at the same level replaced item idx's entry.
 */
void
KvTxnReplace(uint32 idx, KvPtr entry, bool is_visible)
{
	KvWsItem   *item = &ws_items[idx];

	Assert(idx < ws_count);
	ws_delta[item->keyspace] += (int) is_visible - (int) item->is_visible;
	item->entry = entry;
	item->is_visible = is_visible;
}

/*
 * KvTxnItemLevel
 *		Subtransaction nesting level that owns write-set item idx.
 */
int
KvTxnItemLevel(uint32 idx)
{
	Assert(idx < ws_count);
	return ws_items[idx].nestlevel;
}

/*
 * KvTxnCountDelta
 *		How many more keys keyspace ks has for this transaction than
 *		committed (negative after deletes).
 */
int64
KvTxnCountDelta(uint16 ks)
{
	return ws_delta ? ws_delta[ks] : 0;
}

/*
 * log_commit
 *		Pre-commit: write the write set as one TXN record and flush it as
 *		kvext.synchronous_commit asks.  May raise an error (disk full), which
 *		aborts the transaction with nothing committed.
 */
static void
log_commit(void)
{
	Size		len = sizeof(KvWalRecord);
	char	   *rec;
	char	   *p;
	KvLsn		end;
	int			mode = kvext_synchronous_commit;

	for (uint32 i = 0; i < ws_count; i++)
	{
		KvEntry    *e;

		if (ws_items[i].entry == InvalidKvPtr)
			continue;			/* merged away at a subcommit */
		e = KvEntryGet(ws_items[i].entry);
		len += sizeof(KvWalOp) + e->keylen + e->vallen;
	}
	len = KvWalRecordPadLen(len);
	if (len > PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("transaction writes too much kvext data to commit"),
				 errdetail("Its log record would be %zu bytes; the limit is 4GB.", len)));

	rec = MemoryContextAllocExtended(WriteSetContext, len, MCXT_ALLOC_HUGE);
	memset(rec, 0, sizeof(KvWalRecord));
	p = rec + sizeof(KvWalRecord);
	for (uint32 i = 0; i < ws_count; i++)
	{
		/* our own pending entries: nobody else changes them, no lock needed */
		KvEntry    *e;
		KvWalOp		op;

		if (ws_items[i].entry == InvalidKvPtr)
			continue;
		e = KvEntryGet(ws_items[i].entry);
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

	ws_mixed = (XactLastRecEnd != 0);
	ws_xid = GetTopTransactionId();
	end = KvWalInsert(rec, KV_REC_TXN, ws_mixed ? KV_RECF_HEAP : 0,
					  ws_xid, (uint32) len);
	ws_logged = true;
	pfree(rec);

	/* after ws_logged, so an error here still gets its ABORT record */
	KvFailpoint("wal-after-write");

	if (mode == KV_SYNC_OFF && ws_mixed)
		mode = KV_SYNC_LOCAL;
	if (mode != KV_SYNC_OFF)
		KvWalFlush(end);

	KvFailpoint("wal-after-fsync");
}

/*
 * log_abort
 *		The transaction aborted after its TXN record was written: log that,
 *		durably, before the abort completes.  A failure here would let
 *		recovery resurrect the transaction, hence the critical section.
 */
static void
log_abort(void)
{
	char		rec[sizeof(KvWalRecord)];

	memset(rec, 0, sizeof(rec));
	START_CRIT_SECTION();
	KvWalFlush(KvWalInsert(rec, KV_REC_ABORT, 0, ws_xid, sizeof(rec)));
	END_CRIT_SECTION();
}

/* drop the write set at the end of the top-level transaction */
static void
reset_write_set(void)
{
	ws_logged = ws_mixed = false;
	ws_items = NULL;
	ws_delta = NULL;
	ws_count = ws_cap = 0;
	if (WriteSetContext)
		MemoryContextReset(WriteSetContext);
}

/* remove the pending entries of items [from, ws_count), newest first */
static void
abort_items(uint32 from)
{
	while (ws_count > from)
	{
		KvWsItem   *item = &ws_items[--ws_count];

		if (item->entry == InvalidKvPtr)
			continue;			/* merged away at a subcommit */
		ws_delta[item->keyspace] -= (int) item->is_visible - (int) item->was_visible;
		KvStoreAbortEntry(item->entry);
	}
}

/*
 * merge_superseded
 *		After a subcommit relabelled items [from, ws_count) to the parent
 *		level, an older version of the same key written at the parent level
 *		can never be seen again (a rollback to the parent level would remove
 *		both): free it, so a loop of savepoints or exception blocks rewriting
 *		one key keeps one version, not one per iteration.
 */
static void
merge_superseded(uint32 from)
{
	for (uint32 i = from; i < ws_count; i++)
	{
		KvWsItem   *item = &ws_items[i];
		KvPtr		older;
		uint32		oidx;

		if (item->entry == InvalidKvPtr)
			continue;
		older = KvStoreOlderOwnVersion(item->entry);
		if (older == InvalidKvPtr)
			continue;
		oidx = KvEntryGet(older)->wsidx;
		if (ws_items[oidx].nestlevel != item->nestlevel)
			continue;
		/*
		 * The newer item now spans both writes.  ws_delta keeps both
		 * items' contributions, whose sum is exactly the newer item's new
		 * (is - was), so it needs no change; a later abort of the newer
		 * item subtracts that sum.
		 */
		item->was_visible = ws_items[oidx].was_visible;
		ws_items[oidx].entry = InvalidKvPtr;
		KvStoreAbortEntry(older);
	}
}

static void
kv_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (ws_count > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has written kvext keys"),
						 errdetail("kvext does not support two-phase commit yet.")));
			break;

		case XACT_EVENT_PRE_COMMIT:
			if (ws_count > 0)
				log_commit();
			break;

		case XACT_EVENT_COMMIT:

			/*
			 * A mixed transaction's fate is its PostgreSQL commit record.
			 * Make it durable before the keys become visible, whatever the
			 * settings (a no-op when PostgreSQL committed synchronously):
			 * otherwise a snapshot, or a later kv-only commit that read
			 * these keys, could outlive a commit that a crash then loses.
			 */
			if (ws_logged && ws_mixed)
				XLogFlush(XactLastCommitEnd);
			for (uint32 i = 0; i < ws_count; i++)
				if (ws_items[i].entry != InvalidKvPtr)
					KvStoreCommitEntry(ws_items[i].entry);
			if (ws_logged)
				KvWalClearInflight();
			reset_write_set();
			break;

		case XACT_EVENT_ABORT:
			if (ws_logged)
			{
				log_abort();
				KvWalClearInflight();
			}
			if (ws_count > 0)
				abort_items(0);
			reset_write_set();
			break;

		case XACT_EVENT_PREPARE:
			/* refused in PRE_PREPARE if there were writes */
			Assert(ws_count == 0);
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

	if (ws_count == 0)
		return;

	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			for (i = ws_count; i > 0 && ws_items[i - 1].nestlevel >= level; i--)
				;
			abort_items(i);
			break;

		case SUBXACT_EVENT_COMMIT_SUB:
			for (i = ws_count; i > 0 && ws_items[i - 1].nestlevel >= level; i--)
				ws_items[i - 1].nestlevel = level - 1;
			merge_superseded(i);
			break;

		default:
			break;
	}
}
