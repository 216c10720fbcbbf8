/*-------------------------------------------------------------------------
 *
 * compact.c
 *	  Compaction of the store's heap: when a write finds no free block big
 *	  enough although enough bytes are free in total, committed entries are
 *	  moved until a block that fits has formed: slid down over the free
 *	  blocks before them, or evacuated into another chunk of the heap.
 *
 * Why.  alloc.c coalesces free neighbours, but a free block between two
 * live entries stays as small as the entry it held.  Filled with small
 * values, every other key deleted, then refilled with larger values, a
 * store used to report "full" (53200) with half its heap free.  And the
 * heap is cut into chunks of at most 1GB whose free space never merges
 * across the fence at a chunk's end, so in a store over 1GB a large value
 * could find its bytes free, but spread over several chunks.  Memory used
 * is now bounded by kvext.memory_limit, not by fragmentation.
 *
 * How.  A compaction works in one chunk at a time, the one with the most
 * free bytes (KvAllocPickChunk), and grows a free block there.  Each chunk
 * has a cursor (a block start); a step (KvAllocNextMovable) looks at the
 * free block at the cursor and a used block next to it:
 *	- evacuation: the used block after the free block (or, if a fence or a
 *	  block too big to slide follows, the one before it) is copied into a
 *	  free block of exactly its size in another chunk and freed, so the
 *	  free block grows by its size and merges with the free block beyond;
 *	- sliding, when the heap has one chunk or no other chunk has a free
 *	  block that fits the entry: the used block after the free block moves
 *	  down into it, so the free block moves up past it and merges with the
 *	  next free block.
 * Step after step, the free block at the cursor absorbs every hole it
 * passes, and grows by what is evacuated, until it is as big as the write
 * needs; the next compaction goes on from there, wrapping around at the
 * chunk's end (up to two passes: one that starts mid-chunk gathers the
 * free space after the cursor, then, after wrapping, the free space before
 * it).  Evacuation comes first because it costs one copy, as a slide does,
 * but makes the block grow instead of only moving it: a compaction moves
 * about what the write needs less the holes it merges.  Evacuated entries
 * take a good fit among the other chunks' free blocks, exact-size holes
 * first.  When an entry finds no such block, another chunk is compacted by
 * sliding until it has one (make_outside_room); if none can, entries of
 * that size are slid from then on.
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
 * the free block before them stays where it is, and compaction goes on
 * after them.  store.c's move step (KvMoveEntryFn) validates the entry, so
 * this file knows the allocator and not the chains.
 *
 * Locking.  One move holds the entry's partition lock exclusively (no
 * reader is inside the chain meanwhile) and then the allocator lock for
 * one copy of at most KVEXT_COMPACT_MAX_MOVE bytes: the order of store.c,
 * partition lock -> allocator lock, and only one partition lock at a
 * time.  An evacuation takes its new block and frees the old one within
 * that one allocator lock hold.  Between moves no lock is held and
 * interrupts are checked, so a long compaction delays only the write that
 * needs it; others see pauses of one entry's move.  Several backends may
 * compact at once: they share the chunks' cursors and every step is
 * validated under the locks.
 *
 * The reserve.  Puts stop short of the allocator's reserve (kept for
 * deletes).  A move never changes how many bytes are used: a slide keeps
 * the block, an evacuation takes a block of exactly the same size (never
 * one that would leave an unsplittable remainder) and frees the old one.
 * So evacuation targets cannot eat into the reserve, and the per-keyspace
 * byte counts stay exact.
 *
 * Cost.  A compaction stops as soon as a free block of the needed size
 * exists.  Work is counted in bytes: those moved, and those the cursor
 * passes, each block once per lap (KvAllocNextMovable never counts a lap
 * twice).  Each chunk tried gets two passes' worth of work, the
 * compactions of other chunks that make room for its evacuated entries
 * included, and is given up after one lap in which nothing moved: its
 * free blocks all sit next to blocks that may not move, and another lap
 * would find the same.  So a chunk that cannot make the block costs at
 * most its own two passes and never the budget of the chunks tried after
 * it; in all a compaction does at most two passes over the heap: the
 * bound for a large heap, done one entry at a time, and only when the heap
 * is fragmented enough that a write could not be placed.
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
 * one compaction (KvCompact): the budget of the chunk it is trying, and the
 * work done so far
 */
typedef struct CompactRun
{
	KvMoveEntryFn move;			/* store.c's move step */
	uint64		budget;			/* work allowed up to the end of this try */
	uint64		work;			/* bytes of steps taken (passed or moved) */
	uint64		moved;			/* bytes moved, ... */
	uint64		evacuated;		/* ... of which into other chunks */
} CompactRun;

static bool compact_chunk(CompactRun *run, int chunk, Size size,
						  bool use_reserve, bool evacuate);

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
 * make_outside_room
 *		An entry of bsize bytes (block size) in chunk found no free block in
 *		the other chunks: compact the other chunk with the most free bytes,
 *		if they add up to the block, by sliding only, until one has formed
 *		there; if it cannot, the next one.  Chunks in *skip are not tried,
 *		and chunks that could not make one are added to it.  Returns
 *		whether a block has formed.
 */
static bool
make_outside_room(CompactRun *run, int chunk, Size bsize, uint32 *skip)
{
	for (;;)
	{
		Size		need = bsize + KV_ALLOC_MIN_BLOCK;
		int			other = KvAllocPickChunk(need, need,
											 *skip | KV_CHUNK_BIT(chunk));

		if (other < 0)
			return false;
		/*
		 * A block of bsize + MIN_BLOCK always takes an evacuation (alloc.c,
		 * find_free).  A move keeps the bytes used: the reserve does not
		 * count.
		 */
		if (compact_chunk(run, other, need - KV_ALLOC_OVERHEAD, true, false))
			return true;
		*skip |= KV_CHUNK_BIT(other);
	}
}

/*
 * compact_chunk
 *		Grow the free block at chunk's cursor until KvAlloc(size,
 *		use_reserve) finds a block, moving the entries next to it: into
 *		other chunks first if evacuate, else (or when they have no room)
 *		by sliding.  Returns true once such a block exists; false after two
 *		passes' worth of work on the chunk, after a whole lap of it in which
 *		nothing moved (all its free blocks sit between blocks that may not
 *		move: more laps would find the same), when the run's budget is
 *		spent, or when the free bytes no longer add up to size.  No LWLock
 *		held; interruptible.
 */
static bool
compact_chunk(CompactRun *run, int chunk, Size size, bool use_reserve,
			  bool evacuate)
{
	Size		need = KvAllocBlockNeed(size);
	uint64		lap = KvAllocChunkBytes(chunk);
	uint64		limit = Min(run->work + 2 * lap, run->budget);
	uint64		still = 0;		/* bytes passed since something last moved */
	Size		evacuate_max = evacuate ? max_move : 0;
	uint32		outside_skip = 0;	/* chunks that could not make room */
	bool		room_made = false;	/* make_outside_room just succeeded */

	while (run->work < limit)
	{
		KvAllocStep step;
		Size		advanced;
		Size		free_after = 0;
		bool		evacuate_it;
		KvMoveResult res;

		CHECK_FOR_INTERRUPTS();
		if (!KvAllocFreeFor(size, use_reserve))
			return false;		/* really full (or filled meanwhile) */

		switch (KvAllocNextMovable(chunk, need, max_move, evacuate_max,
								   &step, &advanced))
		{
			case KV_STEP_FITS:
				return true;
			case KV_STEP_NONE:
				run->work += advanced;
				still += advanced;
				if (still >= lap)
					return false;	/* a whole lap found nothing to move */
				continue;
			case KV_STEP_MOVE:
				break;
		}
		/* every outcome counts as passing the block, so the loop ends */
		run->work += advanced + step.size;
		still += advanced + step.size;

		evacuate_it = step.size <= evacuate_max;
		res = run->move(step.entry, max_move, evacuate_it, step.before,
						&free_after);
		if (evacuate_it && (res == KV_MOVE_SLID || res == KV_MOVE_NO_ROOM))
		{
			/*
			 * No other chunk has a block for it.  Make one there, once per
			 * chunk; if that cannot be done (or did not help), slide
			 * entries of this size from now on.
			 */
			if (!room_made &&
				make_outside_room(run, chunk, step.size, &outside_skip))
				room_made = true;
			else
			{
				evacuate_max = step.size - 1;
				room_made = false;
			}
		}
		switch (res)
		{
			case KV_MOVE_EVACUATED:
				run->evacuated += step.size;
				room_made = false;
				/* FALLTHROUGH */
			case KV_MOVE_SLID:
				run->moved += step.size;
				if (free_after >= need)
					return true;
				still = 0;
				break;
			case KV_MOVE_NEVER:
				KvAllocSkip(chunk, &step);
				break;
			case KV_MOVE_NO_ROOM:
			case KV_MOVE_AGAIN:
				break;
		}
		if (still >= lap)
			return false;		/* a whole lap moved nothing */
	}
	return false;
}

/*
 * KvCompact
 *		Make a free block for KvAlloc(size, use_reserve) by moving committed
 *		entries (see the file header); move (store.c) moves one entry if it
 *		may.  Chunks are tried from the one with the most free bytes.
 *		Returns true once such a block has formed (the caller then retries;
 *		a concurrent writer may take it first), false if the free bytes do
 *		not add up to size or no chunk could make the block.  Call with no
 *		LWLock held; interruptible.
 */
bool
KvCompact(Size size, bool use_reserve, KvMoveEntryFn move)
{
	Size		need = KvAllocBlockNeed(size);
	bool		evacuate = KvAllocChunkCount() > 1;
	uint32		tried = 0;
	bool		result = false;
	CompactRun	run;
	instr_time	start;
	instr_time	duration;

	if (!KvAllocFreeFor(size, use_reserve))
		return false;			/* really full: nothing to compact for */
	INSTR_TIME_SET_CURRENT(start);

	memset(&run, 0, sizeof(run));
	run.move = move;

	/*
	 * Each chunk tried gets two passes' worth of work, the compactions of
	 * other chunks that make room for its evacuated entries included: one
	 * chunk that cannot make the block (say, one whose free space sits
	 * between values too big to move) never uses up the budget of the
	 * chunks after it.  In all, at most two passes over the heap.
	 */
	while (!result)
	{
		int			chunk = KvAllocPickChunk(need, 0, tried);

		if (chunk < 0)
			break;
		tried |= KV_CHUNK_BIT(chunk);
		run.budget = run.work + 2 * (uint64) KvAllocChunkBytes(chunk);
		result = compact_chunk(&run, chunk, size, use_reserve, evacuate);
		if (!result && !KvAllocFreeFor(size, use_reserve))
			break;
	}

	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	KvAllocNoteCompaction(result, INSTR_TIME_GET_MICROSEC(duration));
	elog(DEBUG1, "kvext compaction for %zu bytes: %s after moving " UINT64_FORMAT " bytes (" UINT64_FORMAT " into other chunks) and passing " UINT64_FORMAT " in %.3f ms",
		 need, result ? "succeeded" : "failed", run.moved, run.evacuated,
		 run.work, INSTR_TIME_GET_MILLISEC(duration));
	return result;
}
