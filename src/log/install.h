/*-------------------------------------------------------------------------
 *
 * install.h
 *	  A follower rebuilt from a snapshot streamed by its leader.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_INSTALL_H
#define KVEXT_INSTALL_H

#include "log/wal.h"

/* a received snapshot whose install has begun (see install.c) */
#define KVEXT_SNAPSHOT_INSTALL	"kvext/snapshot.install"
/* snapshots being received: KVEXT_SNAPSHOT_RECV_PREFIX<pid> */
#define KVEXT_SNAPSHOT_RECV_PREFIX	"snapshot.recv."

extern void KvSnapshotInstall(const char *path, uint64 term);
extern void KvSnapshotFinishInstall(void);

#endif							/* KVEXT_INSTALL_H */
