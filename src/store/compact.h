/*-------------------------------------------------------------------------
 *
 * compact.h
 *	  Compaction of the store's heap: moving committed entries so that the
 *	  free space between them merges.  Internal to the store (src/store/).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_COMPACT_H
#define KVEXT_COMPACT_H

#include "storage/lwlock.h"

#include "store/alloc.h"

/* entries whose heap block is larger than this are never moved */
#define KVEXT_COMPACT_MAX_MOVE		((Size) 2 * 1024 * 1024)

/*
 * How many times a write that found no block compacts and retries before
 * it reports the store full (each try compacts until a big enough block
 * exists; only concurrent writers taking it first make a second try needed).
 */
#define KVEXT_COMPACT_TRIES			8

/* compact.c */
extern bool KvStoreCompact(Size size, bool use_reserve);

/* store.c: the link to the first entry of hash's bucket, and its lock */
extern KvPtr *KvStoreChainHead(uint32 hash, LWLock **lock);

#endif							/* KVEXT_COMPACT_H */
