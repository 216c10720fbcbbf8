/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  Defining the kvext.* settings (their variables are in kvext.h).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_GUC_H
#define KVEXT_GUC_H

/* kvext.synchronous_commit */
typedef enum KvSyncCommit
{
	KV_SYNC_OFF,
	KV_SYNC_LOCAL,
	KV_SYNC_ON,
	KV_SYNC_REMOTE_APPLY
} KvSyncCommit;

extern void KvGucInit(void);
extern int	KvProcSlots(void);

/* owner slots of the store (store.c): a pool of this many per PGPROC */
#define KVEXT_SLOTS_PER_PROC	4
extern int	KvOwnerSlotCount(void);

#endif							/* KVEXT_GUC_H */
