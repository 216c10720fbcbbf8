/*-------------------------------------------------------------------------
 *
 * compact.c
 *	  Compaction of the store's heap: when a write finds no free block big
 *	  enough although enough bytes are free in total, committed entries are
 *	  slid down over the free blocks before them until a block that fits
 *	  has formed.
 *
 * Why.  alloc.c coalesces free neighbours, but a free block between two
 * live entries stays as small as the entry it held.  Filled with small
 * values, every other key deleted, then refilled with larger values, a
 * store used to report "full" (53200) with half its heap free.  Memory
 * used is now bounded by kvext.memory_limit, not by fragmentation.
 *
 * How.  The allocator keeps a cursor (a block start) and offers a sliding
 * step (KvAllocNextMovable, KvAllocSlideDown): the used block after the
 * free block at the cursor moves down into it, so the free space moves up
 * past it and merges with the next free block.  Step after step, the free
 * block at the cursor absorbs every hole it passes, until it is as big as
 * the write needs; the next compaction goes on from there, wrapping around
 * at the end of the heap.  Only entries move: a used block is moved only
 * once it is found, under its partition lock, linked in the bucket chain
 * its hash names, and only if it is committed: store.c's move step
 * (KvMoveEntryFn) does that part, so this file knows the allocator and
 * not the chains.
 *
 * What may move.  A committed entry is referenced only by its bucket chain
 * (the bucket head or the previous entry's next): every reader and writer
 * keeps a pointer to it only while holding its partition lock, scans copy
 * what they need under the lock, and everything that keeps a KvPtr beyond
 * a lock hold (a backend's write set, the apply path's list, commit and
 * abort) keeps it to a pending entry (KVE_PENDING), which never moves.  A
 * pending entry, an entry being initialized (not linked yet), a block over
 * KVEXT_COMPACT_MAX_MOVE (unless recovery runs, KvCompactUnbounded)
 * and the fences at chunk ends are stepped over:
 * the free block before them stays where it is, and sliding goes on after
 * them.
 *
 * Locking.  One move holds the entry's partition lock exclusively (no
 * reader is inside the chain meanwhile) and then the allocator lock for
 * one memmove of at most KVEXT_COMPACT_MAX_MOVE bytes: the order of
 * store.c, partition lock -> allocator lock, and only one partition lock
 * at a time.  Between moves no lock is held and interrupts are checked, so
 * a long compaction delays only the write that needs it; others see
 * pauses of one entry's move.  Several backends may compact at once: they
 * share the cursor and every step is validated under the locks.
 *
 * Cost.  A compaction stops as soon as a free block of the needed size
 * exists, so it moves about size * used / free bytes (the live data among
 * the holes it merges), and never more than two passes over the heap: the
 * bound for a large heap is two sweeps, done one entry at a time, and only
 * when the heap is fragmented enough that a write could not be placed.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/memutils.h"

#include "store/compact.h"

/*
 * The largest block a compaction moves: KVEXT_COMPACT_MAX_MOVE, or no bound
 * while this process recovers the store (KvCompactUnbounded).
 */
static Size max_move = KVEXT_COMPACT_MAX_MOVE;

/*
 * KvCompactUnbounded
 *		While recovery replays the log, no other process uses the store, so
 *		compaction may move entries of any size.  It must: replay places
 *		entries in commit order, not where the running server placed them,
 *		so it can leave holes next to large entries that the server never
 *		had, and a log that fit at run time must fit at recovery.
 */
void
KvCompactUnbounded(bool on)
{
	max_move = on ? MaxAllocHugeSize : KVEXT_COMPACT_MAX_MOVE;
}

/*
 * KvCompact
 *		Make a free block for KvAlloc(size, use_reserve) by sliding
 *		committed entries down (see the file header); move (store.c) moves
 *		one entry if it may.  Returns true once
 *		such a block has formed (the caller then retries; a concurrent
 *		writer may take it first), false if the free bytes do not add up to
 *		size or two passes over the heap did not make the block.  Call with
 *		no LWLock held; interruptible.
 */
bool
KvCompact(Size size, bool use_reserve, KvMoveEntryFn move)
{
	Size		need = KvAllocBlockNeed(size);
	uint64		used;
	uint64		total;
	uint64		swept = 0;
	uint64		moved = 0;
	bool		result = false;
	instr_time	start;
	instr_time	duration;

	if (!KvAllocFreeFor(size, use_reserve))
		return false;			/* really full: nothing to compact for */
	KvAllocUsage(&used, &total);
	INSTR_TIME_SET_CURRENT(start);

	/*
	 * Up to two passes: a pass that starts at a cursor in the middle of the
	 * heap gathers the free space after the cursor into a block at the end,
	 * and after wrapping the free space before the cursor into a block that
	 * stops short of it; going on slides the entries between the two, so
	 * they merge.
	 */
	while (swept < 2 * total)
	{
		Size		bsize = 0;
		Size		advanced;
		Size		free_after = 0;
		KvPtr		p;

		CHECK_FOR_INTERRUPTS();
		if (!KvAllocFreeFor(size, use_reserve))
			break;				/* really full (or filled meanwhile) */

		p = KvAllocNextMovable(max_move, &bsize, &advanced);
		swept += advanced;
		if (p == InvalidKvPtr)
			continue;

		/* every outcome counts as passing p, so one pass ends */
		swept += bsize;
		switch (move(p, max_move, &free_after))
		{
			case KV_MOVE_DONE:
				moved += bsize;
				if (free_after >= need)
					result = true;
				break;
			case KV_MOVE_NEVER:
				KvAllocSkip(p);
				break;
			case KV_MOVE_AGAIN:
				break;
		}
		if (result)
			break;
	}

	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	KvAllocNoteCompaction(result, INSTR_TIME_GET_MICROSEC(duration));
	elog(DEBUG1, "kvext compaction for %zu bytes: %s after moving " UINT64_FORMAT " bytes and passing " UINT64_FORMAT " in %.3f ms",
		 need, result ? "succeeded" : "failed", moved, swept,
		 INSTR_TIME_GET_MILLISEC(duration));
	return result;
}
