/*-------------------------------------------------------------------------
 *
 * writeset.c
 *	  This backend's write set: the pending entries its transaction has
 *	  linked into the store, in write order, with the subtransaction
 *	  nesting level that wrote each one.
 *
 * The write set is an array, not a hash table: entries are found through
 * the shared chains; the array only has to say, at the end of a
 * (sub)transaction, which pending entries to commit, log or remove.  It is
 * plain backend-local data: txn.c decides what happens to it at
 * transaction boundaries; store.c appends to it while it holds a partition
 * lock, which is why KvWsReserve (which may fail) comes before the lock and
 * KvWsPush (which may not) under it.
 *
 * Invariant: the nesting levels along the array never decrease, and none
 * exceeds the current level.  A write at level L appends an item of level
 * L; all items of deeper levels were removed or relabelled when those
 * levels ended.  So the writes of the subtransaction now ending, and of its
 * children, are exactly the items at the tail with level >= L.
 *
 * Memory: the first items live in a static array and the per-keyspace
 * counts in one allocation kept for the backend's life, so that a
 * transaction of a few writes allocates nothing (an array of 1024 items,
 * 20kB, was malloc'd and freed by every one, and glibc gave the memory
 * back to the kernel each time).  A larger write set grows in one context
 * under TopMemoryContext, reset at the end of every top-level transaction.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"

#include "deadline.h"
#include "kvext.h"
#include "log/visible.h"
#include "store/writeset.h"

/* items held without allocating: most transactions write a few keys */
#define WS_FIRST_ITEMS	64

static MemoryContext WriteSetContext = NULL;
static KvWsItem ws_first[WS_FIRST_ITEMS];
static KvWsItem *ws_items = NULL;
static uint32 ws_count = 0;
static uint32 ws_cap = 0;
static int64 *ws_delta = NULL;	/* per keyspace: change of visible count */
static bool ws_keyspace_ops = false;	/* a keyspace item was pushed */
static uint64 ws_bytes = 0;		/* sum of the items' bytes */

/*
 * KvWsContext
 *		The write set's memory context (reset at transaction end), for
 *		other per-transaction data of txn.c.
 */
MemoryContext
KvWsContext(void)
{
	if (WriteSetContext == NULL)
		WriteSetContext = AllocSetContextCreate(TopMemoryContext,
												"kvext write set",
												ALLOCSET_DEFAULT_SIZES);
	return WriteSetContext;
}

/*
 * KvWsReserve
 *		Make room for one more item, so that KvWsPush cannot fail.  Called
 *		before the store takes any lock.
 */
void
KvWsReserve(void)
{
	/* a transaction that writes may have a commit wait (deadline.c) */
	KvDeadlineObserve();
	if (ws_delta == NULL)
		ws_delta = MemoryContextAllocZero(TopMemoryContext,
										  sizeof(int64) * kvext_max_keyspaces);
	if (ws_count < ws_cap)
		return;
	if (ws_items == NULL)
	{
		ws_items = ws_first;
		ws_cap = WS_FIRST_ITEMS;
	}
	else if (ws_items == ws_first)
	{
		ws_items = MemoryContextAlloc(KvWsContext(),
									  sizeof(KvWsItem) * WS_FIRST_ITEMS * 16);
		memcpy(ws_items, ws_first, sizeof(KvWsItem) * ws_count);
		ws_cap = WS_FIRST_ITEMS * 16;
	}
	else
	{
		ws_cap *= 2;
		ws_items = repalloc_huge(ws_items, sizeof(KvWsItem) * (Size) ws_cap);
	}
}

/*
 * KvWsPush
 *		Record a new pending entry at the current nesting level; returns its
 *		index.  The caller holds a partition lock: must not fail, hence
 *		KvWsReserve first.
 */
uint32
KvWsPush(KvPtr entry, uint16 ks, bool was_visible, bool is_visible,
		 uint32 bytes)
{
	KvWsItem   *item;

	Assert(ws_count < ws_cap);
	item = &ws_items[ws_count];
	item->entry = entry;
	item->kind = KV_WS_ENTRY;
	item->prev_state = 0;
	item->keyspace = ks;
	item->was_visible = was_visible;
	item->is_visible = is_visible;
	item->nestlevel = GetCurrentTransactionNestLevel();
	item->bytes = bytes;
	ws_bytes += bytes;
	ws_delta[ks] += (int) is_visible - (int) was_visible;
	return ws_count++;
}

/*
 * KvWsPushKeyspace
 *		Record a keyspace created or dropped at the current nesting level.
 *		Must not fail: the caller made room with KvWsReserve first.
 */
void
KvWsPushKeyspace(uint16 ks, uint8 kind, uint8 prev_state)
{
	KvWsItem   *item;

	Assert(ws_count < ws_cap);
	Assert(kind == KV_WS_KS_CREATE || kind == KV_WS_KS_DROP);
	ws_keyspace_ops = true;
	item = &ws_items[ws_count++];
	item->entry = (KvPtr) ks;
	item->kind = kind;
	item->prev_state = prev_state;
	item->keyspace = ks;
	item->was_visible = item->is_visible = false;
	item->nestlevel = GetCurrentTransactionNestLevel();
	item->bytes = 0;
}

/*
 * KvWsReplace
 *		A rewrite at the same level replaced item idx's entry.
 */
void
KvWsReplace(uint32 idx, KvPtr entry, bool is_visible, uint32 bytes)
{
	KvWsItem   *item = &ws_items[idx];

	Assert(idx < ws_count);
	ws_delta[item->keyspace] += (int) is_visible - (int) item->is_visible;
	item->entry = entry;
	item->is_visible = is_visible;
	ws_bytes = ws_bytes - item->bytes + bytes;
	item->bytes = bytes;
}

/*
 * KvWsForgetEntry
 *		Item idx's entry was merged into a newer item of the same key
 *		(txn.c, merge_superseded): it no longer counts.
 */
void
KvWsForgetEntry(uint32 idx)
{
	KvWsItem   *item = &ws_items[idx];

	Assert(idx < ws_count && item->kind == KV_WS_ENTRY);
	item->entry = InvalidKvPtr;
	ws_bytes -= item->bytes;
	item->bytes = 0;
}

/*
 * KvWsBytes
 *		Bytes of keys and values the transaction's log record would hold
 *		now (kvext.max_transaction_size).
 */
uint64
KvWsBytes(void)
{
	return ws_bytes;
}

/*
 * KvWsItemLevel
 *		Subtransaction nesting level that owns item idx.
 */
int
KvWsItemLevel(uint32 idx)
{
	Assert(idx < ws_count);
	return ws_items[idx].nestlevel;
}

/*
 * KvWsCountDelta
 *		How many more keys keyspace ks has for this transaction than
 *		committed (negative after deletes).
 */
int64
KvWsCountDelta(uint16 ks)
{
	return ws_delta ? ws_delta[ks] : 0;
}

/* number of items, and the item at idx (valid until the next push) */
uint32
KvWsCount(void)
{
	return ws_count;
}

KvWsItem *
KvWsItemAt(uint32 idx)
{
	Assert(idx < ws_count);
	return &ws_items[idx];
}

/*
 * KvWsHasKeyspaceOps
 *		Did this transaction create or drop a keyspace (perhaps undone by a
 *		rollback to a savepoint since)?
 */
bool
KvWsHasKeyspaceOps(void)
{
	return ws_keyspace_ops;
}

/*
 * KvWsPop
 *		Forget the last item (its entry was removed from the store).
 */
void
KvWsPop(void)
{
	KvWsItem   *item;

	Assert(ws_count > 0);
	item = &ws_items[--ws_count];
	ws_bytes -= item->bytes;
	if (item->kind == KV_WS_ENTRY && item->entry != InvalidKvPtr)
		ws_delta[item->keyspace] -= (int) item->is_visible - (int) item->was_visible;
}

/*
 * KvWsReset
 *		Drop the write set at the end of the top-level transaction.
 */
void
KvWsReset(void)
{
	/*
	 * Zero the counts: only keyspaces of items still in the set can be
	 * non-zero (a popped item took its change back).
	 */
	if (ws_count > (uint32) kvext_max_keyspaces)
		memset(ws_delta, 0, sizeof(int64) * kvext_max_keyspaces);
	else
		for (uint32 i = 0; i < ws_count; i++)
			ws_delta[ws_items[i].keyspace] = 0;
	ws_items = NULL;
	ws_count = ws_cap = 0;
	ws_keyspace_ops = false;
	ws_bytes = 0;
	if (WriteSetContext)
		MemoryContextReset(WriteSetContext);
}

/*
 * KvWsCheckKeyspaceRoom
 *		Before a keyspace create or drop: in a replicated group a
 *		transaction may be parked (park.c), which keeps its keyspace
 *		operations in a fixed array; refuse the one too many.
 */
void
KvWsCheckKeyspaceRoom(void)
{
	uint32		nks = 0;

	if (!KvVisibleInGroup())
		return;
	for (uint32 i = 0; i < KvWsCount(); i++)
		if (KvWsItemAt(i)->kind != KV_WS_ENTRY)
			nks++;
	if (nks >= KVEXT_WS_MAX_GROUP_KS_OPS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many keyspace creates and drops in one transaction"),
				 errdetail("In a replicated group a transaction may create or drop at most %d keyspaces.",
						   KVEXT_WS_MAX_GROUP_KS_OPS)));
}
