/*-------------------------------------------------------------------------
 *
 * snapshot.h
 *	  Snapshots of the whole store: writing and loading.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_SNAPSHOT_H
#define KVEXT_SNAPSHOT_H

#include "datatype/timestamp.h"

#include "log/wal.h"

#define KVEXT_SNAPSHOT_FILE		"kvext/snapshot"
#define KVEXT_SNAPSHOT_TMP		"kvext/snapshot.tmp"

extern Size KvSnapshotShmemSize(void);
extern void KvSnapshotShmemInit(void);
extern void KvSnapshotWrite(void);
extern void KvSnapshotAbandon(void);
extern bool KvSnapshotLoad(KvLsn *redo, uint64 *term);
extern void KvLastSnapshot(KvLsn *redo, TimestampTz *time);

#endif							/* KVEXT_SNAPSHOT_H */
