/*-------------------------------------------------------------------------
 *
 * recovery.h
 *	  Rebuilding the store at startup, and the store's readiness.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_RECOVERY_H
#define KVEXT_RECOVERY_H

#include "port/atomics.h"

/* the store's state: KV_STATE_READY once recovery has rebuilt it */
extern PGDLLIMPORT pg_atomic_uint32 *KvStateFlag;
#define KV_STATE_STARTING		0
#define KV_STATE_RECOVERING		1
#define KV_STATE_READY			2
#define KV_STATE_FAILED			3
#define KV_STATE_REBUILDING		4	/* a follower loads its leader's snapshot */

extern Size KvRecoveryShmemSize(void);
extern void KvRecoveryShmemInit(void);
extern bool KvRecover(void);
extern void KvWaitReady(void);
extern const char *KvStateName(void);

/* a follower rebuilt from its leader's snapshot (install.c) */
extern void KvRecoveryBeginRebuild(void);
extern void KvRecoveryEndRebuild(void);
extern void KvRecoveryFail(int sqlstate, const char *message, const char *detail,
						   const char *hint);

#endif							/* KVEXT_RECOVERY_H */
