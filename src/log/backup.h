/*-------------------------------------------------------------------------
 *
 * backup.h
 *	  kvext and PostgreSQL's file-level backups: holding snapshots while a
 *	  backup copies $PGDATA/kvext, and recognising a restored copy.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_BACKUP_H
#define KVEXT_BACKUP_H

/* present while a restored copy's first kvext recovery has not finished */
#define KVEXT_RESTORED_MARKER	"kvext/restored_from_backup"

extern Size KvBackupShmemSize(void);
extern void KvBackupShmemInit(void);
extern bool KvBackupInProgress(void);
extern void KvBackupCheckSnapshotAllowed(bool replacing);
extern void KvBackupReplaceDone(void);
extern void KvBackupStart(void);
extern void KvBackupStop(void);
extern bool KvBackupRestoredCopy(void);
extern void KvBackupRestoredDone(void);

#endif							/* KVEXT_BACKUP_H */
