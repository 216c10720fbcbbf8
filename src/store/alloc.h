/*-------------------------------------------------------------------------
 *
 * alloc.h
 *	  The shared-memory heap that holds every kvext entry.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_ALLOC_H
#define KVEXT_ALLOC_H

#include "storage/lwlock.h"

/*
 * A KvPtr addresses shared memory in 8-byte units from the start of the
 * store region; 0 is the null pointer.  32 bits of 8-byte units cover 32GB,
 * the ceiling of kvext.memory_limit.  Offsets, not pointers, so the layout
 * does not depend on where the segment is mapped.
 */
typedef uint32 KvPtr;

#define KV_UNIT				8
#define InvalidKvPtr		((KvPtr) 0)

extern PGDLLIMPORT char *KvBase;	/* start of the store region */

#define KvPtrGetAddr(p)		((void *) (KvBase + (Size) (p) * KV_UNIT))
#define KvAddrGetPtr(a)		((KvPtr) (((char *) (a) - KvBase) / KV_UNIT))

/* per-allocation overhead: the block header */
#define KV_ALLOC_OVERHEAD	8
/* the smallest block (a free block holds its free-list links) */
#define KV_ALLOC_MIN_BLOCK	16

extern Size KvAllocControlSize(void);
extern void KvAllocInit(void *control, LWLock *lock, KvPtr start, Size nbytes,
						Size chunk_bytes, bool found);
extern Size KvAllocBlockNeed(Size size);
extern KvPtr KvAlloc(Size size, bool use_reserve);
extern void KvFree(KvPtr p);
extern Size KvAllocBlockSize(KvPtr p);
extern void KvAllocUsage(uint64 *used, uint64 *total);

/*
 * The heap is cut into chunks of at most 1GB; kvext.memory_limit (at most
 * 32GB) makes at most this many.  Sets of chunks are uint32 bitmasks.
 */
#define KV_ALLOC_MAX_CHUNKS	32
#define KV_CHUNK_BIT(c)		((uint32) 1 << (c))

/* moving blocks to make room, for compaction (compact.c) */
typedef enum KvStepKind
{
	KV_STEP_NONE,				/* nothing among the blocks looked at */
	KV_STEP_FITS,				/* the free block at the cursor is big enough */
	KV_STEP_MOVE				/* the step names a block to move */
} KvStepKind;

typedef struct KvAllocStep
{
	KvPtr		entry;			/* the allocation, as KvAlloc returned it */
	Size		size;			/* its block size */
	bool		before;			/* it precedes the free block at the cursor
								 * (else it follows it) */
} KvAllocStep;

typedef enum KvRelocation
{
	KV_RELOC_SLID,				/* slid down within its chunk */
	KV_RELOC_EVACUATED,			/* copied into another chunk */
	KV_RELOC_NO_ROOM,			/* not moved: no other chunk has room */
	KV_RELOC_CHANGED			/* not moved: no longer next to a free block */
} KvRelocation;

extern bool KvAllocFreeFor(Size size, bool use_reserve);
extern int	KvAllocChunkCount(void);
extern int	KvAllocChunkOf(KvPtr ptr);
extern KvPtr KvAllocInChunk(Size size, int chunk);
extern Size KvAllocChunkBytes(int chunk);
extern int	KvAllocPickChunk(Size need, Size min_free, uint32 skip);
extern KvStepKind KvAllocNextMovable(int chunk, Size need, Size max_size,
									 Size evacuate_max, KvAllocStep *step,
									 Size *advanced);
extern void KvAllocSkip(int chunk, const KvAllocStep *step);
extern KvPtr KvAllocRelocate(KvPtr ptr, Size max_size, bool evacuate_it,
							 bool before, Size *free_after, KvRelocation *how);

typedef struct KvAllocStats
{
	uint64		largest_free;	/* bytes of the largest free block */
	uint64		compactions;	/* compactions run, ... */
	uint64		failed_compactions; /* ... of which did not make a block */
	uint64		moved_blocks;	/* blocks moved, and their bytes */
	uint64		moved_bytes;
	uint64		evacuated_blocks;	/* of those, moved to another chunk */
	uint64		evacuated_bytes;
	uint64		longest_compaction_us;
} KvAllocStats;

extern void KvAllocNoteCompaction(bool succeeded, uint64 usecs);
extern void KvAllocGetStats(KvAllocStats *stats);

#endif							/* KVEXT_ALLOC_H */
