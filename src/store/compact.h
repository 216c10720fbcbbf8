/*-------------------------------------------------------------------------
 *
 * compact.h
 *	  Compaction of the store's heap: moving committed entries so that the
 *	  free space between them merges, within a chunk of the heap or by
 *	  evacuating entries into other chunks.  Internal to the store
 *	  (src/store/).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_COMPACT_H
#define KVEXT_COMPACT_H

#include "store/alloc.h"

/* entries whose heap block is larger than this are never moved */
#define KVEXT_COMPACT_MAX_MOVE		((Size) 2 * 1024 * 1024)

/*
 * How many times a write that found no block compacts and retries before
 * it reports the store full (each try compacts until a big enough block
 * exists; only concurrent writers taking it first make a second try needed).
 */
#define KVEXT_COMPACT_TRIES			8

/* what a move callback did with one allocation */
typedef enum KvMoveResult
{
	KV_MOVE_SLID,				/* slid down within its chunk */
	KV_MOVE_EVACUATED,			/* moved into another chunk */
	KV_MOVE_NO_ROOM,			/* not moved: no other chunk has room for it */
	KV_MOVE_NEVER,				/* may not move: step over it */
	KV_MOVE_AGAIN				/* the heap changed meanwhile: look again */
} KvMoveResult;

/*
 * Move the allocation at p (a step of KvAllocNextMovable) with
 * KvAllocRelocate(p, max_move, evacuate, before, free_after, ...) if it is a
 * committed entry, and repoint the one link to it (store.c, which owns the
 * chains).  Called with no LWLock held.
 */
typedef KvMoveResult (*KvMoveEntryFn) (KvPtr p, Size max_move, bool evacuate,
									   bool before, Size *free_after);

/* compact.c */
extern bool KvCompact(Size size, bool use_reserve, KvMoveEntryFn move);
extern void KvCompactUnbounded(bool on);

#endif							/* KVEXT_COMPACT_H */
