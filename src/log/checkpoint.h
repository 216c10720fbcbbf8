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

#include "datatype/timestamp.h"
#include "fmgr.h"

/* longest snapshot error message kept for kv_wal_status(), with its NUL */
#define KVEXT_SNAPSHOT_ERROR_LEN	256

extern Size KvCheckpointShmemSize(void);
extern void KvCheckpointShmemInit(void);
extern PGDLLEXPORT void KvCheckpointerMain(Datum arg);
extern void KvRequestCheckpoint(void);
extern int	KvCheckpointStatus(char *error, TimestampTz *failed_at,
							   TimestampTz *retry_at);

#endif							/* KVEXT_CHECKPOINT_H */
