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

#include "wal.h"

#define KVEXT_SNAPSHOT_FILE		"kvext/snapshot"
#define KVEXT_SNAPSHOT_TMP		"kvext/snapshot.tmp"

extern Size KvCheckpointShmemSize(void);
extern void KvCheckpointShmemInit(void);

extern PGDLLEXPORT void KvCheckpointerMain(Datum arg);
extern void KvRequestCheckpoint(void);
extern void KvLastSnapshot(KvLsn *redo, TimestampTz *time);

/* snapshot reading, for recovery; errors are reported with ereport */
extern bool KvSnapshotLoad(KvLsn *redo, uint64 *term);

#endif							/* KVEXT_CHECKPOINT_H */
