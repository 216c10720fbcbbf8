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
#include "storage/lwlock.h"

#include "log/wal.h"

#define KVEXT_SNAPSHOT_FILE		"kvext/snapshot"
#define KVEXT_SNAPSHOT_TMP		"kvext/snapshot.tmp"

/* what a snapshot's header (and, once checked, its body) says */
typedef struct KvSnapshotInfo
{
	KvLsn		redo;			/* replay starts here */
	uint64		term;			/* the writer's term when it was written */
	bool		redo_term_known;	/* false for a version-1 snapshot */
	uint64		redo_term;		/* term of the log record ending at redo */
	uint64		entries;		/* KvSnapshotCheck only */
	uint64		skipped;		/* loading: entries left out */
} KvSnapshotInfo;

extern Size KvSnapshotShmemSize(void);
extern void KvSnapshotShmemInit(LWLock *lock);
extern LWLock *KvSnapshotLock(void);
extern void KvSnapshotWrite(void);
extern void KvSnapshotAbandon(void);
/* loading leaves out the keys for which this returns true (recovery.c) */
typedef bool (*KvSnapshotSkipFn) (void *arg, uint16 keyspace, const char *key,
								  uint32 keylen);
extern bool KvSnapshotPeek(KvLsn *redo, uint64 *term);
extern bool KvSnapshotLoad(KvLsn *redo, uint64 *term, KvSnapshotSkipFn skip,
						   void *skip_arg);
extern void KvSnapshotCheck(const char *path, KvSnapshotInfo *info);
extern bool KvSnapshotReadHeader(int fd, KvSnapshotInfo *info);
extern void KvLastSnapshot(KvLsn *redo, TimestampTz *time);
extern bool KvSnapshotRedoTerm(KvLsn *redo, uint64 *term);

#endif							/* KVEXT_SNAPSHOT_H */
