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
 *		uint32 prev_phys	KvPtr of the physically preceding block; only
 *							meaningful while that block is free
 *		uint32 size			block size in bytes including the header, a
 *							multiple of 8; bit 0 = this block is free,
 *							bit 1 = the preceding block is free
 *
 * A free block additionally stores next/prev links of its free list in its
 * first 8 payload bytes, so the smallest block is 16 bytes.  Free lists are
 * indexed by (fl, sl): fl is the power of two of the size, sl splits each
 * power of two into 16 linear steps; a bitmap per level finds a non-empty
 * list in two find-first-set operations.
 *
 * The heap is cut into chunks of at most 1GB, each ending with an 8-byte
 * used "fence" block.  Fences stop coalescing at chunk ends, which keeps
 * every block size within 32 bits and gives the last block a successor.
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
 * The cursor is always the start of a block: KvFree and a slide move it
 * back when the block it points at is merged into a neighbour.
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

#define MIN_BLOCK		16
#define CHUNK_MAX		((Size) 1024 * 1024 * 1024)

typedef struct KvBlock
{
	KvPtr		prev_phys;
	uint32		size;
	/* free blocks only: */
	KvPtr		next_free;
	KvPtr		prev_free;
} KvBlock;

typedef struct KvAllocControl
{
	uint32		fl_bitmap;
	uint32		sl_bitmap[FL_COUNT];
	KvPtr		heads[FL_COUNT][SL_COUNT];
	uint64		total_bytes;	/* bytes under management, fences included */
	uint64		used_bytes;		/* bytes in allocated blocks, headers
								 * included */
	uint64		reserve_bytes;	/* kept for KvAlloc(.., use_reserve) */
	KvPtr		heap_start;		/* first block of the first chunk */
	KvPtr		heap_end;		/* just past the last chunk's fence */
	KvPtr		cursor;			/* sliding: a block start (see header) */
	KvAllocStats stats;			/* compaction counters (largest_free unused) */
} KvAllocControl;

char	   *KvBase = NULL;
static KvAllocControl *ctl = NULL;
static LWLock *alloc_lock = NULL;

#define BLK(p)				((KvBlock *) KvPtrGetAddr(p))
#define BLK_SIZE(b)			((b)->size & ~BLOCK_FLAGS)
#define BLK_NEXT(p, b)		((KvPtr) ((p) + BLK_SIZE(b) / KV_UNIT))

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

static void
free_list_remove(KvPtr p, KvBlock *b, int fl, int sl)
{
	if (b->prev_free != InvalidKvPtr)
		BLK(b->prev_free)->next_free = b->next_free;
	else
	{
		ctl->heads[fl][sl] = b->next_free;
		if (b->next_free == InvalidKvPtr)
		{
			ctl->sl_bitmap[fl] &= ~((uint32) 1 << sl);
			if (ctl->sl_bitmap[fl] == 0)
				ctl->fl_bitmap &= ~((uint32) 1 << fl);
		}
	}
	if (b->next_free != InvalidKvPtr)
		BLK(b->next_free)->prev_free = b->prev_free;
}

static void
free_list_insert(KvPtr p, KvBlock *b)
{
	int			fl,
				sl;
	KvPtr		head;

	mapping_insert(BLK_SIZE(b), &fl, &sl);
	head = ctl->heads[fl][sl];
	b->next_free = head;
	b->prev_free = InvalidKvPtr;
	if (head != InvalidKvPtr)
		BLK(head)->prev_free = p;
	ctl->heads[fl][sl] = p;
	ctl->fl_bitmap |= (uint32) 1 << fl;
	ctl->sl_bitmap[fl] |= (uint32) 1 << sl;
}

static void
block_remove(KvPtr p, KvBlock *b)
{
	int			fl,
				sl;

	mapping_insert(BLK_SIZE(b), &fl, &sl);
	free_list_remove(p, b, fl, sl);
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
 *		of the store region.  KvBase must already be set.  Called in the
 *		postmaster at shared memory initialization; backends inherit it.
 */
void
KvAllocInit(void *control, LWLock *lock, KvPtr start, Size nbytes, bool found)
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
	ctl->cursor = start;

	while (nbytes >= MIN_BLOCK + KV_UNIT)
	{
		Size		chunk = Min(nbytes, CHUNK_MAX);
		KvBlock    *b = BLK(p);
		KvBlock    *fence;

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
	int			fl,
				sl;
	uint32		map;
	KvPtr		p;
	KvBlock    *b;
	Size		bsize;
	KvPtr		next;

	need = KvAllocBlockNeed(size);
	if (need > CHUNK_MAX - KV_UNIT)
		return InvalidKvPtr;

	mapping_search(need, &fl, &sl);

	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);

	if (!use_reserve &&
		ctl->used_bytes + need + ctl->reserve_bytes > ctl->total_bytes)
	{
		LWLockRelease(alloc_lock);
		return InvalidKvPtr;
	}

	map = (fl < FL_COUNT) ? ctl->sl_bitmap[fl] & (~(uint32) 0 << sl) : 0;
	if (map == 0)
	{
		uint32		flmap = (fl + 1 < FL_COUNT) ?
			ctl->fl_bitmap & (~(uint32) 0 << (fl + 1)) : 0;

		if (flmap != 0)
		{
			fl = pg_rightmost_one_pos32(flmap);
			map = ctl->sl_bitmap[fl];
		}
	}
	if (map != 0)
	{
		sl = pg_rightmost_one_pos32(map);
		p = ctl->heads[fl][sl];
	}
	else
	{
		/*
		 * Nothing in the lists whose every block is big enough.  The list
		 * the request itself maps to may still hold a block that is: the
		 * round-up above skips it (an exact-size block freed by a delete
		 * is the common case).  First fit through that one list.
		 */
		mapping_insert(need, &fl, &sl);
		for (p = ctl->heads[fl][sl]; p != InvalidKvPtr; p = BLK(p)->next_free)
		{
			if (BLK_SIZE(BLK(p)) >= need)
				break;
		}
		if (p == InvalidKvPtr)
		{
			LWLockRelease(alloc_lock);
			return InvalidKvPtr;
		}
	}

	b = BLK(p);
	Assert(b->size & BLOCK_FREE);
	free_list_remove(p, b, fl, sl);

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

	LWLockRelease(alloc_lock);

	return p + KV_ALLOC_OVERHEAD / KV_UNIT;
}

/*
 * KvFree
 *		Return memory obtained from KvAlloc, merging it with free
 *		neighbours.  The caller may hold a store partition lock.
 */
void
KvFree(KvPtr ptr)
{
	KvPtr		p = ptr - KV_ALLOC_OVERHEAD / KV_UNIT;
	KvBlock    *b = BLK(p);
	KvPtr		next;
	KvBlock    *nb;

	Assert(ptr != InvalidKvPtr);
	Assert(!(b->size & BLOCK_FREE));

	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);

	ctl->used_bytes -= BLK_SIZE(b);

	if (b->size & BLOCK_PREV_FREE)
	{
		KvPtr		pp = b->prev_phys;
		KvBlock    *pb = BLK(pp);

		Assert(pb->size & BLOCK_FREE);
		block_remove(pp, pb);
		pb->size += BLK_SIZE(b);
		if (ctl->cursor == p)
			ctl->cursor = pp;
		p = pp;
		b = pb;
	}
	else
		b->size |= BLOCK_FREE;

	next = BLK_NEXT(p, b);
	nb = BLK(next);
	if (nb->size & BLOCK_FREE)
	{
		block_remove(next, nb);
		b->size += BLK_SIZE(nb);
		if (ctl->cursor == next)
			ctl->cursor = p;
		next = BLK_NEXT(p, b);
		nb = BLK(next);
	}

	free_list_insert(p, b);
	nb->prev_phys = p;
	nb->size |= BLOCK_PREV_FREE;

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
 * cursor_step
 *		Move the cursor from block c (header b) to the block after it; past
 *		a chunk's fence that is the next chunk, past the last one the heap's
 *		start.  Returns the bytes passed over.  Allocator lock held.
 */
static Size
cursor_step(KvPtr c, KvBlock *b)
{
	KvPtr		next = BLK_NEXT(c, b);

	ctl->cursor = (next >= ctl->heap_end) ? ctl->heap_start : next;
	return BLK_SIZE(b);
}

/*
 * KvAllocNextMovable
 *		Sliding, step 1: from the cursor, find a used block that follows a
 *		free block and is at most max_size bytes, and return its allocation
 *		(the KvPtr KvAlloc returned for it) and its block size; the cursor
 *		stays on the free block.  Used blocks on the way, fences and blocks
 *		over max_size are stepped over.  Looks at a bounded number of blocks
 *		per call and returns InvalidKvPtr when it found none among them;
 *		*advanced gets the bytes the cursor passed over.
 *
 * The block returned may be freed, or be only half initialized by its
 * owner, as soon as the allocator lock is released here: the caller must
 * validate it (compact.c finds it in its bucket chain under the partition
 * lock) before KvAllocSlideDown or KvAllocSkip.
 */
KvPtr
KvAllocNextMovable(Size max_size, Size *size, Size *advanced)
{
	KvPtr		result = InvalidKvPtr;

	*advanced = 0;
	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);
	for (int i = 0; i < 1024; i++)
	{
		KvPtr		c = ctl->cursor;
		KvBlock    *b = BLK(c);
		KvPtr		n;
		KvBlock    *nb;

		if (!(b->size & BLOCK_FREE))
		{
			*advanced += cursor_step(c, b);
			continue;
		}
		/* free blocks are coalesced, so the next one is used */
		n = BLK_NEXT(c, b);
		nb = BLK(n);
		Assert(!(nb->size & BLOCK_FREE));
		if (BLK_SIZE(nb) == KV_UNIT || BLK_SIZE(nb) > max_size)
		{
			/* a fence, or too big to move: carry on after it */
			*advanced += BLK_SIZE(b);
			*advanced += cursor_step(n, nb);
			continue;
		}
		*size = BLK_SIZE(nb);
		result = n + KV_ALLOC_OVERHEAD / KV_UNIT;
		break;
	}
	LWLockRelease(alloc_lock);
	return result;
}

/*
 * KvAllocSkip
 *		Sliding: the allocation at ptr (from KvAllocNextMovable) may not
 *		move.  If the cursor is still on the free block before it, step over
 *		both, leaving that free block where it is.  Never reads ptr's header
 *		unless it is still the block after the cursor's.
 */
void
KvAllocSkip(KvPtr ptr)
{
	KvPtr		blk = ptr - KV_ALLOC_OVERHEAD / KV_UNIT;
	KvBlock    *b;

	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);
	b = BLK(ctl->cursor);
	if ((b->size & BLOCK_FREE) && BLK_NEXT(ctl->cursor, b) == blk)
		(void) cursor_step(blk, BLK(blk));
	LWLockRelease(alloc_lock);
}

/*
 * KvAllocSlideDown
 *		Sliding, step 2: move the allocation at ptr down into the free block
 *		just before it; the free space then follows it and merges with the
 *		next free block, and the cursor goes to that free block.  Returns
 *		the allocation's new address and, in *free_after, the size of the
 *		free block now after it; InvalidKvPtr (nothing moved) if the block
 *		no longer follows a free block or is over max_size.
 *
 * The caller guarantees that ptr is a live allocation that nobody else
 * reads or writes meanwhile (for an entry: its partition lock, exclusive),
 * and repoints the one reference to it afterwards.  The block keeps its
 * size, so no accounting changes.  Holds the allocator lock for one
 * memmove of at most max_size bytes.
 */
KvPtr
KvAllocSlideDown(KvPtr ptr, Size max_size, Size *free_after)
{
	KvPtr		e = ptr - KV_ALLOC_OVERHEAD / KV_UNIT;
	KvBlock    *eb = BLK(e);
	Size		esize;
	KvPtr		f;
	KvBlock    *fb;
	Size		fsize;
	KvPtr		f_prev;
	uint32		f_flags;
	KvPtr		nf;
	KvBlock    *nfb;
	KvPtr		n;
	KvBlock    *nb;

	LWLockAcquire(alloc_lock, LW_EXCLUSIVE);
	Assert(!(eb->size & BLOCK_FREE));
	esize = BLK_SIZE(eb);
	if (!(eb->size & BLOCK_PREV_FREE) || esize > max_size)
	{
		LWLockRelease(alloc_lock);
		return InvalidKvPtr;
	}

	/* the free block f before e: take it off its list before overwriting */
	f = eb->prev_phys;
	fb = BLK(f);
	Assert((fb->size & BLOCK_FREE) && BLK_NEXT(f, fb) == e);
	fsize = BLK_SIZE(fb);
	f_prev = fb->prev_phys;
	f_flags = fb->size & BLOCK_PREV_FREE;
	block_remove(f, fb);

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
		block_remove(n, nb);
		nfb->size += BLK_SIZE(nb);
		n = BLK_NEXT(nf, nfb);
		nb = BLK(n);
	}
	free_list_insert(nf, nfb);
	nb->prev_phys = nf;
	nb->size |= BLOCK_PREV_FREE;

	/* e's old start and its old successor are no block starts any more */
	ctl->cursor = nf;
	ctl->stats.moved_blocks++;
	ctl->stats.moved_bytes += esize;
	*free_after = BLK_SIZE(nfb);

	LWLockRelease(alloc_lock);
	return f + KV_ALLOC_OVERHEAD / KV_UNIT;
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
 *		highest non-empty free list; at most 256 of its blocks are looked
 *		at, so on a heap with many free blocks of one size class the answer
 *		may be low by up to 1/16.
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
		int			sl = pg_leftmost_one_pos32(ctl->sl_bitmap[fl]);
		int			n = 0;

		for (KvPtr p = ctl->heads[fl][sl]; p != InvalidKvPtr && n < 256;
			 p = BLK(p)->next_free, n++)
			largest = Max(largest, BLK_SIZE(BLK(p)));
	}
	LWLockRelease(alloc_lock);
	stats->largest_free = largest;
}
