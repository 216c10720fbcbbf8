/*-------------------------------------------------------------------------
 *
 * park.h
 *	  Parked transactions: committed in the log, waiting for the majority
 *	  (replicated groups only; see park.c).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_PARK_H
#define KVEXT_PARK_H

#include "store/store.h"
#include "store/writeset.h"

/* keyspace creates and drops a parked transaction may hold (writeset.h) */
#define KVEXT_PARK_MAX_KS_OPS	KVEXT_WS_MAX_GROUP_KS_OPS

extern Size KvParkShmemSize(void);
extern void KvParkShmemInit(void);
extern void KvParkCurrent(KvLsn commit_end);
extern void KvParkResolve(void);
extern bool KvParkBusy(int s);
extern void KvParkWaitOwn(void);
extern PGDLLIMPORT bool KvParkOwnPending;

#endif							/* KVEXT_PARK_H */
