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

extern Size KvRecoveryShmemSize(void);
extern void KvRecoveryShmemInit(void);
extern bool KvRecover(void);
extern void KvWaitReady(void);
extern const char *KvStateName(void);

#endif							/* KVEXT_RECOVERY_H */
