/*-------------------------------------------------------------------------
 *
 * checkpoint.h
 *	  Snapshots of the whole store, and the checkpointer's requests.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_CHECKPOINT_H
#define KVEXT_CHECKPOINT_H

#include "fmgr.h"

extern Size KvCheckpointShmemSize(void);
extern void KvCheckpointShmemInit(void);
extern PGDLLEXPORT void KvCheckpointerMain(Datum arg);
extern void KvRequestCheckpoint(void);

#endif							/* KVEXT_CHECKPOINT_H */
