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

extern Size KvAllocControlSize(void);
extern void KvAllocInit(void *control, LWLock *lock, KvPtr start, Size nbytes,
						bool found);
extern Size KvAllocBlockNeed(Size size);
extern KvPtr KvAlloc(Size size, bool use_reserve);
extern void KvFree(KvPtr p);
extern Size KvAllocBlockSize(KvPtr p);
extern void KvAllocUsage(uint64 *used, uint64 *total);

/* sliding blocks down, for compaction (compact.c) */
extern bool KvAllocFreeFor(Size size, bool use_reserve);
extern KvPtr KvAllocNextMovable(Size max_size, Size *size, Size *advanced);
extern void KvAllocSkip(KvPtr ptr);
extern KvPtr KvAllocSlideDown(KvPtr ptr, Size max_size, Size *free_after);

typedef struct KvAllocStats
{
	uint64		largest_free;	/* bytes of the largest free block */
	uint64		compactions;	/* compactions run, ... */
	uint64		failed_compactions; /* ... of which did not make a block */
	uint64		moved_blocks;	/* blocks moved, and their bytes */
	uint64		moved_bytes;
	uint64		longest_compaction_us;
} KvAllocStats;

extern void KvAllocNoteCompaction(bool succeeded, uint64 usecs);
extern void KvAllocGetStats(KvAllocStats *stats);

#endif							/* KVEXT_ALLOC_H */
