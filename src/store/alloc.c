/*-------------------------------------------------------------------------
 *
 * alloc.c
 *	  A TLSF (two-level segregated fit) allocator over kvext's fixed shared
 *	  memory region.
 *
 * Why not DSA: kvext.memory_limit is fixed at server start, so the whole
 * heap is one region of the main shared memory segment, sized once; TLSF
 * gives O(1) allocation and free with immediate coalescing of neighbours,
 * so a workload whose value sizes shift over time does not strand memory in
 * size classes and report "store full" while half the heap is free (the
 * failure mode of a slab allocator without coalescing).
 *
 * Layout.  Every block starts with an 8-byte header:
 *
 *		uint32 prev_phys	KvPtr of the physically preceding block
 *							(InvalidKvPtr for a chunk's first block)
 *		uint32 size			block size in bytes including the header, a
 *							multiple of 8; bit 0 = this block is free,
 *							bit 1 = the preceding block is free
 *
 * Classic TLSF keeps prev_phys only while the preceding block is free;
 * here every split, merge and slide also sets it when that block is used,
 * so compaction can step from a free block to the entry before it.
 *
 * A free block additionally stores next/prev links of its free list in its
 * first 8 payload bytes, so the smallest block is 16 bytes.  Free lists are
 * indexed by (fl, sl): fl is the power of two of the size, sl splits each
 * power of two into 16 linear steps; a bitmap per level finds a non-empty
 * list in two find-first-set operations.
 *
 * Chunks.  The heap is cut into chunks of at most 1GB, each ending with an
 * 8-byte used "fence" block.  Fences stop coalescing at chunk ends, which
 * keeps every block size within 32 bits and gives the last block a
 * successor.  Each chunk has its own free lists, bitmaps, free byte count
 * and compaction cursor (at most 32 chunks: kvext.memory_limit is at most
 * 32GB); for each fl, a bitmask says which chunks have a block of that
 * class, and their union is the top-level bitmap, so an allocation still
 * takes a few find-first-set operations, plus one per chunk that has a
 * block of the requested class.  The lists being per chunk, compaction can
 * ask for a block in any chunk but one: evacuation (below).
 *
 * Reserve.  A delete needs memory too (its pending tombstone lives until
 * commit), so a store filled to the last byte by puts could never be
 * emptied.  Allocations for puts therefore stop short of a reserve of
 * 1/32 of the heap (at least 64kB); only deletes, and recovery, may use it.
 *
 * Sliding (compaction support).  Coalescing cannot merge free blocks that
 * sit between live ones, so a heap emptied in a checkerboard pattern can
 * hold half its bytes free and still refuse a larger block.  The allocator
 * therefore offers a sliding step: a used block whose predecessor is free
 * is moved down into it (memmove), so the free space ends up after it and
 * merges with the next free block.  Repeated from a shared cursor, the
 * free block the cursor sits on absorbs every hole it passes: a sliding
 * compaction done one block at a time.  The allocator does not know what a
 * block holds; compact.c decides which blocks may move (an entry that
 * nothing outside its bucket chain points to) and fixes the one link to it.
 * Each chunk has its cursor, always the start of a block: KvFree and a
 * slide move it back when the block it points at is merged into a
 * neighbour.
 *
 * Evacuation (compaction support).  Sliding never crosses a fence, so in
 * a heap of several chunks the free space of two chunks never merges.
 * KvAllocRelocate can instead move a used block next to a chunk's free
 * block into a free block of another chunk (memcpy) and free it there, so
 * the free block grows by the block's size.  The new block has exactly
 * the old one's size (a free block that would leave a remainder too small
 * to split is passed over), so no accounting changes: used bytes stay the
 * same, and an evacuation never eats into the reserve.
 *
 * Locking.  One LWLock (the allocator lock) protects all of the above.
 * Callers may hold a store partition lock when calling KvAlloc/KvFree (and
 * must hold the moved entry's partition lock exclusively for a slide); the
 * allocator never takes another lock, so the order is always
 * partition lock -> allocator lock.  Nothing here raises an error: a full
 * heap is reported by returning InvalidKvPtr, and the caller reports it
 * after releasing its own locks.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/pg_bitutils.h"

#include "store/alloc.h"

#define SL_LOG2			4
#define SL_COUNT		(1 << SL_LOG2)
#define FL_SHIFT		(SL_LOG2 + 3)	/* sizes below 128 are "small" */
#define SMALL_BLOCK		(1 << FL_SHIFT)
#define FL_COUNT		25			/* enough for sizes below 2^31 */

#define BLOCK_FREE		((uint32) 1)
#define BLOCK_PREV_FREE	((uint32) 2)
#define BLOCK_FLAGS		((uint32) 7)

#define MIN_BLOCK		KV_ALLOC_MIN_BLOCK
/* bytes in a chunk (the last may have fewer): at most 1GB (store.c) */
#define CHUNK_MAX		((Size) ctl->chunk_bytes)
#define CHUNK_UNITS		((KvPtr) (CHUNK_MAX / KV_UNIT))
#define ALL_CHUNKS		(~(uint32) 0)

/* a compaction step looks at this many blocks per allocator lock hold */
#define KV_STEP_MAX_LOOKS	1024

/* an evacuation looks at this many blocks of exact-size lists, in all */
#define EXACT_FIT_LOOKS	64

typedef struct KvBlock
{
	KvPtr		prev_phys;
	uint32		size;
	/* free blocks only: */
	KvPtr		next_free;
	KvPtr		prev_free;
} KvBlock;

/* one chunk of the heap: its blocks, free lists and compaction cursor */
typedef struct KvChunk
{
	KvPtr		start;			/* first block */
	KvPtr		end;			/* just past its fence */
	KvPtr		cursor;			/* sliding: a block start (see header) */
	uint32		fl_bitmap;
	uint64		free_bytes;		/* bytes in its free blocks */
	uint32		sl_bitmap[FL_COUNT];
	KvPtr		heads[FL_COUNT][SL_COUNT];
} KvChunk;

typedef struct KvAllocControl
{
	uint32		fl_bitmap;		/* classes that some chunk has a block of */
	uint32		fl_chunks[FL_COUNT];	/* per class: the chunks that do */
	int			nchunks;
	uint64		chunk_bytes;	/* size of a chunk (the last may be smaller) */
	uint64		total_bytes;	/* bytes under management, fences included */
	uint64		used_bytes;		/* bytes in allocated blocks, headers
								 * included */
	uint64		reserve_bytes;	/* kept for KvAlloc(.., use_reserve) */
	KvPtr		heap_start;		/* first block of the first chunk */
	KvPtr		heap_end;		/* just past the last chunk's fence */
	KvAllocStats stats;			/* compaction counters (largest_free unused) */
	KvChunk		chunks[KV_ALLOC_MAX_CHUNKS];
} KvAllocControl;

char	   *KvBase = NULL;
static KvAllocControl *ctl = NULL;
static LWLock *alloc_lock = NULL;

#define BLK(p)				((KvBlock *) KvPtrGetAddr(p))
#define BLK_SIZE(b)			((b)->size & ~BLOCK_FLAGS)
#define BLK_NEXT(p, b)		((KvPtr) ((p) + BLK_SIZE(b) / KV_UNIT))

/* the chunk that holds block p */
static inline int
chunk_of(KvPtr p)
{
	return (int) ((p - ctl->heap_start) / CHUNK_UNITS);
}

/*
 * mapping: size -> (fl, sl) of the list that holds blocks of that size.
 */
static inline void
mapping_insert(Size size, int *fl, int *sl)
{
	if (size < SMALL_BLOCK)
	{
		*fl = 0;
		*sl = (int) (size / (SMALL_BLOCK / SL_COUNT));
	}
	else
	{
		int			msb = pg_leftmost_one_pos32((uint32) size);

		*fl = msb - FL_SHIFT + 1;
		*sl = (int) ((size >> (msb - SL_LOG2)) ^ (1 << SL_LOG2));
	}
}

/*
 * mapping_search: like mapping_insert, but rounds the size up to the next
 * list boundary so that any block of the list found is big enough.
 */
static inline void
mapping_search(Size size, int *fl, int *sl)
{
	if (size >= SMALL_BLOCK)
	{
		int			msb = pg_leftmost_one_pos32((uint32) size);

		size += ((Size) 1 << (msb - SL_LOG2)) - 1;
	}
	mapping_insert(size, fl, sl);
}

/* take free block p off its chunk's list; allocator lock held */
static void
free_list_remove(KvPtr p, KvBlock *b)
{
	int			c = chunk_of(p);
	KvChunk    *ch = &ctl->chunks[c];
	int			fl,
				sl;

	mapping_insert(BLK_SIZE(b), &fl, &sl);
	if (b->prev_free != InvalidKvPtr)
		BLK(b->prev_free)->next_free = b->next_free;
	else
	{
		ch->heads[fl][sl] = b->next_free;
		if (b->next_free == InvalidKvPtr)
		{
			ch->sl_bitmap[fl] &= ~((uint32) 1 << sl);
			if (ch->sl_bitmap[fl] == 0)
			{
				ch->fl_bitmap &= ~((uint32) 1 << fl);
				ctl->fl_chunks[fl] &= ~KV_CHUNK_BIT(c);
				if (ctl->fl_chunks[fl] == 0)
					ctl->fl_bitmap &= ~((uint32) 1 << fl);
			}
		}
	}
	if (b->next_free != InvalidKvPtr)
		BLK(b->next_free)->prev_free = b->prev_free;
	ch->free_bytes -= BLK_SIZE(b);
}

/* put free block p on its chunk's list; allocator lock held */
static void
free_list_insert(KvPtr p, KvBlock *b)
{
	int			c = chunk_of(p);
	KvChunk    *ch = &ctl->chunks[c];
	int			fl,
				sl;
	KvPtr		head;

	mapping_insert(BLK_SIZE(b), &fl, &sl);
	head = ch->heads[fl][sl];
	b->next_free = head;
	b->prev_free = InvalidKvPtr;
	if (head != InvalidKvPtr)
		BLK(head)->prev_free = p;
	ch->heads[fl][sl] = p;
	ch->sl_bitmap[fl] |= (uint32) 1 << sl;
	ch->fl_bitmap |= (uint32) 1 << fl;
	ctl->fl_chunks[fl] |= KV_CHUNK_BIT(c);
	ctl->fl_bitmap |= (uint32) 1 << fl;
	ch->free_bytes += BLK_SIZE(b);
}

/*
 * smallest_list
 *		Among the chunks in cmask (each with a block of class fl), the one
 *		whose smallest non-empty list of class fl at or above sl is
 *		smallest; its head, or InvalidKvPtr.  Allocator lock held.
 */
static KvPtr
smallest_list(uint32 cmask, int fl, int sl)
{
	int			best_c = -1;
	int			best_sl = SL_COUNT;

	while (cmask != 0)
	{
		int			c = pg_rightmost_one_pos32(cmask);
		uint32		map = ctl->chunks[c].sl_bitmap[fl] & (~(uint32) 0 << sl);

		cmask &= cmask - 1;
		if (map != 0 && pg_rightmost_one_pos32(map) < best_sl)
		{
			best_sl = pg_rightmost_one_pos32(map);
			best_c = c;
		}
	}
	return best_c < 0 ? InvalidKvPtr : ctl->chunks[best_c].heads[fl][best_sl];
}

/*
 * good_fit
 *		A free block of at least need bytes in a chunk of cmask, from the
 *		smallest non-empty list whose every block is big enough (TLSF's
 *		good fit), or InvalidKvPtr.  Allocator lock held.
 */
static KvPtr
good_fit(Size need, uint32 cmask)
{
	int			fl,
				sl;
	KvPtr		p;
	uint32		flmap;

	mapping_search(need, &fl, &sl);
	if (fl >= FL_COUNT)
		return InvalidKvPtr;
	p = smallest_list(ctl->fl_chunks[fl] & cmask, fl, sl);
	if (p != InvalidKvPtr)
		return p;
	flmap = (fl + 1 < FL_COUNT) ? ctl->fl_bitmap & (~(uint32) 0 << (fl + 1)) : 0;
	while (flmap != 0)
	{
		int			f = pg_rightmost_one_pos32(flmap);
		uint32		chunks = ctl->fl_chunks[f] & cmask;

		flmap &= flmap - 1;
		if (chunks != 0)
			return smallest_list(chunks, f, 0);
	}
	return InvalidKvPtr;
}

/*
 * first_fit
 *		The list a size maps to may hold blocks big enough for it (good_fit
 *		skips that list: an exact-size block freed by a delete is the common
 *		case).  First fit for need bytes through the list list_size maps
 *		to, in each chunk of cmask, looking at up to max_looks blocks in
 *		all (0: no limit).  If exact, a block is taken only if it is exactly
 *		need bytes or leaves a remainder that can be split off.  Allocator
 *		lock held.
 */
static KvPtr
first_fit(Size list_size, Size need, uint32 cmask, bool exact, int max_looks)
{
	int			fl,
				sl;
	uint32		chunks;
	int			looks = 0;

	mapping_insert(list_size, &fl, &sl);
	if (fl >= FL_COUNT)
		return InvalidKvPtr;
	chunks = ctl->fl_chunks[fl] & cmask;
	while (chunks != 0)
	{
		int			c = pg_rightmost_one_pos32(chunks);

		chunks &= chunks - 1;
		for (KvPtr p = ctl->chunks[c].heads[fl][sl];
			 p != InvalidKvPtr && (max_looks == 0 || looks < max_looks);
			 p = BLK(p)->next_free, looks++)
		{
			Size		bsize = BLK_SIZE(BLK(p));

			if (bsize == need || (bsize > need &&
								  (!exact || bsize >= need + MIN_BLOCK)))
				return p;
		}
	}
	return InvalidKvPtr;
}

/*
 * find_free
 *		A free block for need bytes in a chunk of cmask, or InvalidKvPtr.
 *		An allocation takes a good fit, else a first fit; an evacuation
 *		(exact) first fills a block of exactly its size, and never takes a
 *		block whose remainder would be too small to split off (the block
 *		would then grow by it): a block of need + MIN_BLOCK bytes or more
 *		is always taken.  Allocator lock held.
 */
static KvPtr
find_free(Size need, uint32 cmask, bool exact)
{
	KvPtr		p;

	if (exact)
	{
		int			fl1,
					sl1,
					fl2,
					sl2;

		p = first_fit(need, need, cmask, true, EXACT_FIT_LOOKS);
		if (p == InvalidKvPtr)
			p = good_fit(need + MIN_BLOCK, cmask);
		mapping_insert(need, &fl1, &sl1);
		mapping_insert(need + MIN_BLOCK, &fl2, &sl2);
		if (p == InvalidKvPtr && (fl1 != fl2 || sl1 != sl2))
			p = first_fit(need + MIN_BLOCK, need, cmask, true, EXACT_FIT_LOOKS);
		return p;
	}
	p = good_fit(need, cmask);
	if (p == InvalidKvPtr)
		p = first_fit(need, need, cmask, false, 0);
	return p;
}

/*
 * take_block
 *		Allocate need bytes from the start of free block p, splitting off
 *		the rest if it can stand as a block; returns the block size taken.
 *		Allocator lock held.
 */
static Size
take_block(KvPtr p, Size need)
{
	KvBlock    *b = BLK(p);
	Size		bsize;
	KvPtr		next;

	Assert(b->size & BLOCK_FREE);
	free_list_remove(p, b);

	bsize = BLK_SIZE(b);
	Assert(bsize >= need);
	if (bsize - need >= MIN_BLOCK)
	{
		/* split: the remainder stays free */
		KvPtr		rp = p + need / KV_UNIT;
		KvBlock    *r = BLK(rp);

		r->prev_phys = p;
		r->size = (uint32) (bsize - need) | BLOCK_FREE;
		free_list_insert(rp, r);
		next = BLK_NEXT(rp, r);
		BLK(next)->prev_phys = rp;
		/* next still has a free predecessor: flag unchanged */
		b->size = (uint32) need | (b->size & BLOCK_PREV_FREE);
		bsize = need;
	}
	else
	{
		next = BLK_NEXT(p, b);
		BLK(next)->size &= ~BLOCK_PREV_FREE;
		b->size &= ~BLOCK_FREE;
	}
	ctl->used_bytes += bsize;
	return bsize;
}

/*
 * free_block
 *		Free the used block p, merging it with free neighbours; returns the
 *		start of the free block it ends up in.  Keeps the chunk's cursor on
 *		a block start.  Allocator lock held.
 */
static KvPtr
free_block(KvPtr p)
{
	KvChunk    *ch = &ctl->chunks[chunk_of(p)];
	KvBlock    *b = BLK(p);
	KvPtr		next;
	KvBlock    *nb;

	Assert(!(b->size & BLOCK_FREE));
	ctl->used_bytes -= BLK_SIZE(b);

	if (b->size & BLOCK_PREV_FREE)
	{
		KvPtr		pp = b->prev_phys;
		KvBlock    *pb = BLK(pp);

		Assert(pb->size & BLOCK_FREE);
		free_list_remove(pp, pb);
		pb->size += BLK_SIZE(b);
		if (ch->cursor == p)
			ch->cursor = pp;
		p = pp;
		b = pb;
	}
	else
		b->size |= BLOCK_FREE;

	next = BLK_NEXT(p, b);
	nb = BLK(next);
	if (nb->size & BLOCK_FREE)
	{
		free_list_remove(next, nb);
		b->size += BLK_SIZE(nb);
		if (ch->cursor == next)
			ch->cursor = p;
		next = BLK_NEXT(p, b);
		nb = BLK(next);
	}

	free_list_insert(p, b);
	nb->prev_phys = p;
	nb->size |= BLOCK_PREV_FREE;
	return p;
}

/*
 * KvAllocControlSize
 *		Shared memory needed for the allocator's control block.
 */
Size
KvAllocControlSize(void)
{
	return MAXALIGN(sizeof(KvAllocControl));
}

/*
 * KvAllocInit
 *		Attach to (found) or format (!found) the heap [start, start+nbytes)
 *		of the store region, cut into chunks of chunk_bytes (at most 1GB:
 *		block sizes are 31 bits), or of more if that would make more than
 *		KV_ALLOC_MAX_CHUNKS.  KvBase must already be set.  Called in the
 *		postmaster at shared memory initialization; backends inherit it.
 */
void
KvAllocInit(void *control, LWLock *lock, KvPtr start, Size nbytes,
			Size chunk_bytes, bool found)
{
	KvPtr		p = start;

	ctl = (KvAllocControl *) control;
	alloc_lock = lock;
	if (found)
		return;

	memset(ctl, 0, sizeof(KvAllocControl));
	nbytes &= ~((Size) KV_UNIT - 1);
	ctl->total_bytes = nbytes;
	ctl->reserve_bytes = Min(Max(nbytes / 32, 64 * 1024), nbytes / 4);
	ctl->heap_start = start;
	chunk_bytes = Max(chunk_bytes, (nbytes + KV_ALLOC_MAX_CHUNKS - 1) / KV_ALLOC_MAX_CHUNKS);
	ctl->chunk_bytes = TYPEALIGN(KV_UNIT, chunk_bytes);
	Assert(ctl->chunk_bytes <= (Size) 1024 * 1024 * 1024);

	while (nbytes >= MIN_BLOCK + KV_UNIT)
	{
		Size		chunk = Min(nbytes, CHUNK_MAX);
		KvChunk    *ch;
		KvBlock    *b = BLK(p);
		KvBlock    *fence;

		/* kvext.memory_limit is at most 32GB (guc.c) */
		if (ctl->nchunks >= KV_ALLOC_MAX_CHUNKS)
			elog(FATAL, "kvext heap of %zu bytes has more than %d chunks",
				 (Size) ctl->total_bytes, KV_ALLOC_MAX_CHUNKS);
		ch = &ctl->chunks[ctl->nchunks++];
		ch->start = p;
		ch->end = p + chunk / KV_UNIT;
		ch->cursor = p;

		b->prev_phys = InvalidKvPtr;
		b->size = (uint32) (chunk - KV_UNIT) | BLOCK_FREE;
		free_list_insert(p, b);

		fence = BLK(BLK_NEXT(p, b));
		fence->prev_phys = p;
		fence->size = KV_UNIT | BLOCK_PREV_FREE;
		ctl->used_bytes += KV_UNIT;

		p += chunk / KV_UNIT;
		nbytes -= chunk;
	}
	ctl->heap_end = p;
}

/*
 * KvAllocBlockNeed
 *		Size of the block KvAlloc(size) takes, header and rounding included.
 */
Size
KvAllocBlockNeed(Size size)
{
	Size		need = TYPEALIGN(KV_UNIT, size + KV_ALLOC_OVERHEAD);

	return Max(need, MIN_BLOCK);
}

/*
 * KvAlloc
 *		Allocate size bytes of shared memory, 8-byte aligned.  Returns
 *		InvalidKvPtr when no free block is large enough, or when the
 *		allocation would eat into the reserve and use_reserve is false;
 *		never errors.  The caller may hold a store partition lock.
 */
KvPtr
KvAlloc(Size size, bool use_reserve)
{
	Size		need;
	KvPtr		p;

	need = KvAllocBlockNeed(size);
	if (need > CHUNK_MAX - KV_UNIT)
		return InvalidKvPtr;

	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);

	if (!use_reserve &&
		ctl->used_bytes + need + ctl->reserve_bytes > ctl->total_bytes)
	{
		LWLockRelease(alloc_lock);
		return InvalidKvPtr;
	}

	p = find_free(need, ALL_CHUNKS, false);
	if (p != InvalidKvPtr)
		(void) take_block(p, need);

	LWLockRelease(alloc_lock);

	return p == InvalidKvPtr ? InvalidKvPtr : p + KV_ALLOC_OVERHEAD / KV_UNIT;
}

/*
 * KvAllocInChunk
 *		KvAlloc within chunk c only (using the reserve): loading a snapshot
 *		puts each large entry back in the chunk it was in (log/snapshot.c).
 *		InvalidKvPtr if c is not a chunk or has no block big enough.
 */
KvPtr
KvAllocInChunk(Size size, int c)
{
	Size		need = KvAllocBlockNeed(size);
	KvPtr		p;

	if (c < 0 || c >= ctl->nchunks || need > CHUNK_MAX - KV_UNIT)
		return InvalidKvPtr;
	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);
	p = find_free(need, KV_CHUNK_BIT(c), false);
	if (p != InvalidKvPtr)
		(void) take_block(p, need);
	LWLockRelease(alloc_lock);
	return p == InvalidKvPtr ? InvalidKvPtr : p + KV_ALLOC_OVERHEAD / KV_UNIT;
}

/*
 * KvAllocChunkOf
 *		The chunk that holds the allocation KvAlloc returned as ptr.
 */
int
KvAllocChunkOf(KvPtr ptr)
{
	return chunk_of(ptr - KV_ALLOC_OVERHEAD / KV_UNIT);
}

/*
 * KvFree
 *		Return memory obtained from KvAlloc, merging it with free
 *		neighbours.  The caller may hold a store partition lock.
 */
void
KvFree(KvPtr ptr)
{
	Assert(ptr != InvalidKvPtr);

	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);
	(void) free_block(ptr - KV_ALLOC_OVERHEAD / KV_UNIT);
	LWLockRelease(alloc_lock);
}

/*
 * KvAllocBlockSize
 *		Bytes charged for the allocation at ptr, header included.  Stable
 *		while the caller owns the allocation; takes no lock.
 */
Size
KvAllocBlockSize(KvPtr ptr)
{
	return BLK_SIZE(BLK(ptr - KV_ALLOC_OVERHEAD / KV_UNIT));
}

/*
 * KvAllocUsage
 *		Bytes in use (allocated blocks and fences) and bytes under
 *		management.
 */
void
KvAllocUsage(uint64 *used, uint64 *total)
{
	LWLockAcquire(alloc_lock, LW_SHARED);
	*used = ctl->used_bytes;
	*total = ctl->total_bytes;
	LWLockRelease(alloc_lock);
}

/*
 * KvAllocFreeFor
 *		Are there, in total, enough free bytes for KvAlloc(size, use_reserve)
 *		to succeed if the free space were in one block?  If not, the heap is
 *		really full and no compaction can help.
 */
bool
KvAllocFreeFor(Size size, bool use_reserve)
{
	Size		need = KvAllocBlockNeed(size);
	bool		result;

	if (need > CHUNK_MAX - KV_UNIT)
		return false;
	LWLockAcquire(alloc_lock, LW_SHARED);
	result = ctl->used_bytes + need +
		(use_reserve ? 0 : ctl->reserve_bytes) <= ctl->total_bytes;
	LWLockRelease(alloc_lock);
	return result;
}

/*
 * KvAllocChunkCount
 *		How many chunks the heap is cut into (fixed at startup).
 */
int
KvAllocChunkCount(void)
{
	return ctl->nchunks;
}

/*
 * KvAllocChunkBytes
 *		Bytes in chunk c, its fence included (fixed at startup).
 */
Size
KvAllocChunkBytes(int c)
{
	return (Size) (ctl->chunks[c].end - ctl->chunks[c].start) * KV_UNIT;
}

/*
 * KvAllocPickChunk
 *		The chunk not in skip (a bitmask of chunk numbers) that could hold
 *		a block of need bytes, has at least min_free bytes free, and has the
 *		most free bytes: where compaction makes room with the fewest moves.
 *		-1 if there is none.
 */
int
KvAllocPickChunk(Size need, Size min_free, uint32 skip)
{
	int			best = -1;
	uint64		best_free = 0;

	LWLockAcquire(alloc_lock, LW_SHARED);
	for (int c = 0; c < ctl->nchunks; c++)
	{
		KvChunk    *ch = &ctl->chunks[c];

		if ((skip & KV_CHUNK_BIT(c)) ||
			KvAllocChunkBytes(c) - KV_UNIT < need ||
			ch->free_bytes < min_free)
			continue;
		if (best < 0 || ch->free_bytes > best_free)
		{
			best = c;
			best_free = ch->free_bytes;
		}
	}
	LWLockRelease(alloc_lock);
	return best;
}

/*
 * cursor_step
 *		Move chunk ch's cursor from block c (header b) to the block after
 *		it; past the chunk's fence that is the chunk's first block.
 *		Returns the bytes passed over.  Allocator lock held.
 */
static Size
cursor_step(KvChunk *ch, KvPtr c, KvBlock *b)
{
	KvPtr		next = BLK_NEXT(c, b);

	ch->cursor = (next >= ch->end) ? ch->start : next;
	return BLK_SIZE(b);
}

/*
 * KvAllocNextMovable
 *		One step of compaction in chunk c: from the chunk's cursor, find a
 *		free block and a used block next to it that could be moved to make
 *		it grow.  Returns KV_STEP_FITS when the free block at the cursor
 *		already has need bytes; KV_STEP_MOVE with *step set to:
 *		- the used block right after it, if at most max_size bytes (it can
 *		  slide down into the free block, or be evacuated);
 *		- else (a fence or a block too big to slide follows), the used block
 *		  right before it, if at most evacuate_max bytes (only evacuation
 *		  can move it; step->before is set);
 *		and the cursor stays on the free block.  Used blocks on the way and
 *		free blocks that cannot grow are stepped over, wrapping at the
 *		chunk's end.  Looks at no more than KV_STEP_MAX_LOOKS blocks and at
 *		most one lap of the chunk per call, and returns KV_STEP_NONE when it
 *		found nothing among them; *advanced gets the bytes the cursor passed
 *		over, each block counted once (never more than the chunk's size:
 *		a chunk of a few blocks that cannot move is passed once, not once
 *		per look, so the caller sees that a whole lap found nothing).
 *
 * The block returned may be freed, or be only half initialized by its
 * owner, as soon as the allocator lock is released here: the caller must
 * validate it (compact.c finds it in its bucket chain under the partition
 * lock) before KvAllocRelocate or KvAllocSkip.
 */
KvStepKind
KvAllocNextMovable(int chunk, Size need, Size max_size, Size evacuate_max,
				   KvAllocStep *step, Size *advanced)
{
	KvChunk    *ch = &ctl->chunks[chunk];
	Size		lap = KvAllocChunkBytes(chunk);
	KvStepKind	result = KV_STEP_NONE;

	*advanced = 0;
	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);
	for (int i = 0; i < KV_STEP_MAX_LOOKS && *advanced < lap; i++)
	{
		KvPtr		c = ch->cursor;
		KvBlock    *b = BLK(c);
		KvPtr		n;
		KvBlock    *nb;

		if (!(b->size & BLOCK_FREE))
		{
			*advanced += cursor_step(ch, c, b);
			continue;
		}
		if (BLK_SIZE(b) >= need)
		{
			result = KV_STEP_FITS;
			break;
		}
		/* free blocks are coalesced, so the next one is used */
		n = BLK_NEXT(c, b);
		nb = BLK(n);
		Assert(!(nb->size & BLOCK_FREE));
		if (BLK_SIZE(nb) != KV_UNIT && BLK_SIZE(nb) <= max_size)
		{
			step->entry = n + KV_ALLOC_OVERHEAD / KV_UNIT;
			step->size = BLK_SIZE(nb);
			step->before = false;
			result = KV_STEP_MOVE;
			break;
		}
		/* ... and so is the one before it, if any */
		if (b->prev_phys != InvalidKvPtr &&
			BLK_SIZE(BLK(b->prev_phys)) <= evacuate_max)
		{
			Assert(!(BLK(b->prev_phys)->size & BLOCK_FREE));
			step->entry = b->prev_phys + KV_ALLOC_OVERHEAD / KV_UNIT;
			step->size = BLK_SIZE(BLK(b->prev_phys));
			step->before = true;
			result = KV_STEP_MOVE;
			break;
		}
		/* a fence, or too big to move: carry on after it */
		*advanced += BLK_SIZE(b);
		*advanced += cursor_step(ch, n, nb);
	}
	LWLockRelease(alloc_lock);
	/* the last look may step over a pair of blocks past the lap's end */
	*advanced = Min(*advanced, lap);
	return result;
}

/*
 * KvAllocSkip
 *		Compaction in chunk c: the block of *step (from KvAllocNextMovable)
 *		may not move.  If the cursor is still on the free block next to it,
 *		step over that free block and the block after it, leaving the free
 *		block where it is.  Never reads the step's block header unless it
 *		is still next to the cursor's block.
 */
void
KvAllocSkip(int chunk, const KvAllocStep *step)
{
	KvChunk    *ch = &ctl->chunks[chunk];
	KvPtr		blk = step->entry - KV_ALLOC_OVERHEAD / KV_UNIT;
	KvPtr		c;
	KvBlock    *b;

	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);
	c = ch->cursor;
	b = BLK(c);
	if (b->size & BLOCK_FREE)
	{
		KvPtr		n = BLK_NEXT(c, b);

		if (step->before ? b->prev_phys == blk : n == blk)
			(void) cursor_step(ch, n, BLK(n));
	}
	LWLockRelease(alloc_lock);
}

/*
 * evacuate
 *		KvAllocRelocate's evacuation: copy used block e (esize bytes) into a
 *		block of exactly its size in another chunk, and free e, which merges
 *		with the free block next to it.  Returns the new block, or
 *		InvalidKvPtr if no other chunk has a free block that fits; sets
 *		*free_after to the size of the free block e merged into.  Allocator
 *		lock held.
 */
static KvPtr
evacuate(KvPtr e, Size esize, Size *free_after)
{
	KvPtr		t = find_free(esize, ALL_CHUNKS & ~KV_CHUNK_BIT(chunk_of(e)), true);
	Size		got PG_USED_FOR_ASSERTS_ONLY;
	KvPtr		merged;

	if (t == InvalidKvPtr)
		return InvalidKvPtr;
	got = take_block(t, esize);
	Assert(got == esize);
	memcpy((char *) BLK(t) + KV_ALLOC_OVERHEAD,
		   (char *) BLK(e) + KV_ALLOC_OVERHEAD, esize - KV_ALLOC_OVERHEAD);
	merged = free_block(e);
	*free_after = BLK_SIZE(BLK(merged));
	ctl->stats.evacuated_blocks++;
	ctl->stats.evacuated_bytes += esize;
	return t;
}

/*
 * slide_down
 *		KvAllocRelocate's slide: move used block e (esize bytes) down into
 *		the free block just before it, header included; the free space then
 *		follows it and merges with the next free block, and the chunk's
 *		cursor goes to that free block.  Returns e's new start; sets
 *		*free_after to the size of the free block after it.  Allocator lock
 *		held.
 */
static KvPtr
slide_down(KvPtr e, Size esize, Size *free_after)
{
	KvBlock    *eb = BLK(e);
	KvPtr		f;
	KvBlock    *fb;
	Size		fsize;
	KvPtr		f_prev;
	uint32		f_flags;
	KvPtr		nf;
	KvBlock    *nfb;
	KvPtr		n;
	KvBlock    *nb;

	/* the free block f before e: take it off its list before overwriting */
	f = eb->prev_phys;
	fb = BLK(f);
	Assert((fb->size & BLOCK_FREE) && BLK_NEXT(f, fb) == e);
	fsize = BLK_SIZE(fb);
	f_prev = fb->prev_phys;
	f_flags = fb->size & BLOCK_PREV_FREE;
	free_list_remove(f, fb);

	/* e moves down to f, header included; then its header is redone */
	memmove(BLK(f), BLK(e), esize);
	eb = BLK(f);
	eb->prev_phys = f_prev;
	eb->size = (uint32) esize | f_flags;

	/* the free block now follows it, merged with a free successor */
	nf = f + esize / KV_UNIT;
	nfb = BLK(nf);
	nfb->prev_phys = f;
	nfb->size = (uint32) fsize | BLOCK_FREE;
	n = BLK_NEXT(nf, nfb);
	nb = BLK(n);
	if (nb->size & BLOCK_FREE)
	{
		free_list_remove(n, nb);
		nfb->size += BLK_SIZE(nb);
		n = BLK_NEXT(nf, nfb);
		nb = BLK(n);
	}
	free_list_insert(nf, nfb);
	nb->prev_phys = nf;
	nb->size |= BLOCK_PREV_FREE;

	/* e's old start and its old successor are no block starts any more */
	ctl->chunks[chunk_of(f)].cursor = nf;
	*free_after = BLK_SIZE(nfb);
	return f;
}

/*
 * KvAllocRelocate
 *		Compaction, step 2: move the allocation at ptr (a step of
 *		KvAllocNextMovable) so that the free block next to it grows or moves
 *		up.  If evacuate, it is copied into a free block of its size in
 *		another chunk and its block is freed (KV_RELOC_EVACUATED); else, or
 *		when no other chunk has room for it, a block after the free one
 *		(!before) slides down into it (KV_RELOC_SLID), and a block before it
 *		stays (KV_RELOC_NO_ROOM).  Returns the allocation's new address and,
 *		in *free_after, the size of the free block it left; InvalidKvPtr and
 *		KV_RELOC_CHANGED if the block is no longer next to a free block or
 *		is over max_size.
 *
 * The caller guarantees that ptr is a live allocation that nobody else
 * reads or writes meanwhile (for an entry: its partition lock, exclusive),
 * and repoints the one reference to it afterwards.  The block keeps its
 * size, so no accounting changes.  Holds the allocator lock for one copy of
 * at most max_size bytes.
 */
KvPtr
KvAllocRelocate(KvPtr ptr, Size max_size, bool evacuate_it, bool before,
				Size *free_after, KvRelocation *how)
{
	KvPtr		e = ptr - KV_ALLOC_OVERHEAD / KV_UNIT;
	KvBlock    *eb = BLK(e);
	Size		esize;
	bool		next_to_free;
	KvPtr		moved = InvalidKvPtr;

	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);
	Assert(!(eb->size & BLOCK_FREE));
	esize = BLK_SIZE(eb);
	if (before)
		next_to_free = (BLK(BLK_NEXT(e, eb))->size & BLOCK_FREE) != 0;
	else
		next_to_free = (eb->size & BLOCK_PREV_FREE) != 0;
	if (!next_to_free || esize > max_size)
		*how = KV_RELOC_CHANGED;
	else
	{
		if (evacuate_it)
			moved = evacuate(e, esize, free_after);
		if (moved != InvalidKvPtr)
			*how = KV_RELOC_EVACUATED;
		else if (!before)
		{
			moved = slide_down(e, esize, free_after);
			*how = KV_RELOC_SLID;
		}
		else
			*how = KV_RELOC_NO_ROOM;
		if (moved != InvalidKvPtr)
		{
			ctl->stats.moved_blocks++;
			ctl->stats.moved_bytes += esize;
		}
	}
	LWLockRelease(alloc_lock);
	return moved == InvalidKvPtr ? InvalidKvPtr :
		moved + KV_ALLOC_OVERHEAD / KV_UNIT;
}

/*
 * KvAllocNoteCompaction
 *		Count one compaction (compact.c): whether it made the block it was
 *		for, and how long it took.
 */
void
KvAllocNoteCompaction(bool succeeded, uint64 usecs)
{
	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);
	ctl->stats.compactions++;
	if (!succeeded)
		ctl->stats.failed_compactions++;
	ctl->stats.longest_compaction_us =
		Max(ctl->stats.longest_compaction_us, usecs);
	LWLockRelease(alloc_lock);
}

/*
 * KvAllocGetStats
 *		Compaction counters and the size of the largest free block (what
 *		the next allocation could get without compacting; reserve
 *		included), for kv_memory().  The largest blocks are all in the
 *		highest non-empty class; at most 256 blocks of its highest list are
 *		looked at per chunk, so on a heap with many free blocks of one size
 *		class the answer may be low by up to 1/16.
 */
void
KvAllocGetStats(KvAllocStats *stats)
{
	uint64		largest = 0;

	LWLockAcquire(alloc_lock, LW_SHARED);
	*stats = ctl->stats;
	if (ctl->fl_bitmap != 0)
	{
		int			fl = pg_leftmost_one_pos32(ctl->fl_bitmap);
		uint32		chunks = ctl->fl_chunks[fl];

		while (chunks != 0)
		{
			KvChunk    *ch = &ctl->chunks[pg_rightmost_one_pos32(chunks)];
			int			sl = pg_leftmost_one_pos32(ch->sl_bitmap[fl]);
			int			n = 0;

			chunks &= chunks - 1;
			for (KvPtr p = ch->heads[fl][sl]; p != InvalidKvPtr && n < 256;
				 p = BLK(p)->next_free, n++)
				largest = Max(largest, BLK_SIZE(BLK(p)));
		}
	}
	LWLockRelease(alloc_lock);
	stats->largest_free = largest;
}
