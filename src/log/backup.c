/*-------------------------------------------------------------------------
 *
 * backup.c
 *	  kvext and PostgreSQL's file-level backups (pg_basebackup, and copies
 *	  taken between pg_backup_start() and pg_backup_stop()).
 *
 * A file-level backup copies $PGDATA/kvext file by file while the server
 * runs.  Two things make such a copy unusable unless kvext helps:
 *
 *	1. The checkpointer replaces kvext/snapshot and removes the log
 *	   segments it made unnecessary.  A copy that took the old snapshot
 *	   and then listed kvext/wal after the removal lacks the segments the
 *	   old snapshot needs; one that listed kvext/wal before the new
 *	   snapshot's redo segment existed and then took the new snapshot
 *	   lacks that one.  So while a backup runs, no snapshot is renamed
 *	   into place and no segment is removed: the checkpointer skips its
 *	   timed snapshots, and KvSnapshotWrite() refuses (at its start and
 *	   again just before its rename) while KvBackupInProgress().  A
 *	   running pg_basebackup is seen in the backend status array (its
 *	   walsender reports PROGRESS_COMMAND_BASEBACKUP from before
 *	   pg_backup_start until after the last file is sent); the low-level
 *	   API has no hook, so kv_backup_start() / kv_backup_stop() bracket
 *	   such a copy (a shared counter; a session that ends without
 *	   kv_backup_stop() gives its hold back).
 *
 *	2. The files are copied while they are written: the last segment may
 *	   hold a record whose bytes were read half before and half after it
 *	   was written, followed by records written later, and the control
 *	   file's flush watermark may be newer than the copied log.  Neither
 *	   is damage: every record acknowledged before the backup began was
 *	   written (in order, under the insert lock) before any byte of the
 *	   copy was read, so the copy holds a whole prefix of the log up to at
 *	   least there, and whatever follows the first bad record was written
 *	   after the copy passed it.  A restored copy is recognised by the
 *	   backup_label file that PostgreSQL's rules put in every copy: the
 *	   postmaster sees it before PostgreSQL's startup process renames it,
 *	   and kvext's recovery then writes KVEXT_RESTORED_MARKER (so a crash
 *	   during that first recovery does not forget it), reads the log up to
 *	   the first record that fails its checks, cuts it there and ignores
 *	   the watermark, then removes the marker.
 *
 * Locking: the shared counter is an atomic; the restored flag is written
 * once by the postmaster before any other process exists.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/backend_progress.h"
#include "utils/backend_status.h"

#include "log/backup.h"

typedef struct KvBackupShared
{
	pg_atomic_uint32 holds;		/* kv_backup_start() calls not yet stopped */
	pg_atomic_uint32 replacing;	/* the checkpointer is between its last
								 * check and the end of segment removal */
	bool		restored;		/* backup_label was there at postmaster start */
} KvBackupShared;

static KvBackupShared *bk = NULL;

/* this session's kv_backup_start() holds, given back at exit */
static int	my_holds = 0;
static bool exit_callback_set = false;

/*
 * write_marker
 *		Create KVEXT_RESTORED_MARKER durably; a failure is reported at
 *		elevel (WARNING in the postmaster, which must not raise errors).
 */
static void
write_marker(int elevel)
{
	int			fd;

	fd = OpenTransientFile(KVEXT_RESTORED_MARKER, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0 || pg_fsync(fd) != 0)
	{
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", KVEXT_RESTORED_MARKER)));
		if (fd >= 0)
			CloseTransientFile(fd);
		return;
	}
	CloseTransientFile(fd);
	fsync_fname_ext("kvext", true, false, elevel);
}

/*
 * KvBackupShmemSize / KvBackupShmemInit
 *		Shared state; the postmaster, at startup and after a crash-restart,
 *		looks for backup_label (the startup process has not run yet).
 */
Size
KvBackupShmemSize(void)
{
	return sizeof(KvBackupShared);
}

void
KvBackupShmemInit(void)
{
	bool		found;

	bk = ShmemInitStruct("kvext backup", sizeof(KvBackupShared), &found);
	if (!found)
	{
		struct stat st;

		pg_atomic_init_u32(&bk->holds, 0);
		pg_atomic_init_u32(&bk->replacing, 0);
		bk->restored = (stat(BACKUP_LABEL_FILE, &st) == 0);
		if (bk->restored && stat("kvext", &st) == 0)
			write_marker(WARNING);
	}
}

/*
 * pg_basebackup_running
 *		Does some walsender report a running BASE_BACKUP?  Reads a local
 *		copy of the backend status array and frees it again.
 */
static bool
pg_basebackup_running(void)
{
	bool		running = false;
	int			n;

	n = pgstat_fetch_stat_numbackends();
	for (int i = 1; i <= n && !running; i++)
	{
		LocalPgBackendStatus *l = pgstat_fetch_stat_local_beentry(i);

		if (l != NULL &&
			l->backendStatus.st_progress_command == PROGRESS_COMMAND_BASEBACKUP)
			running = true;
	}
	pgstat_clear_backend_activity_snapshot();
	return running;
}

/*
 * KvBackupInProgress
 *		Is a file-level backup copying $PGDATA/kvext now (a pg_basebackup,
 *		or a copy between kv_backup_start() and kv_backup_stop())?
 */
bool
KvBackupInProgress(void)
{
	if (pg_atomic_read_u32(&bk->holds) > 0)
		return true;
	return pg_basebackup_running();
}

/*
 * KvBackupCheckSnapshotAllowed
 *		Raise an error if a backup is running: a snapshot must not replace
 *		kvext/snapshot or remove segments under a copy.  With replacing,
 *		the caller is about to do that: the check and the flag that
 *		kv_backup_start() waits on are set together (Dekker: flag, barrier,
 *		check here; hold, barrier, check in KvBackupStart), until
 *		KvBackupReplaceDone().
 */
void
KvBackupCheckSnapshotAllowed(bool replacing)
{
	if (replacing)
	{
		pg_atomic_write_u32(&bk->replacing, 1);
		pg_memory_barrier();
	}
	if (KvBackupInProgress())
	{
		pg_atomic_write_u32(&bk->replacing, 0);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("kvext snapshot deferred: a base backup is in progress"),
				 errdetail("A snapshot would replace the snapshot file and remove log files while the backup copies them."),
				 errhint("The next snapshot is written once the backup has finished.")));
	}
}

/*
 * KvBackupReplaceDone
 *		The snapshot is in place and old segments are gone (or the attempt
 *		failed): kv_backup_start() may return.
 */
void
KvBackupReplaceDone(void)
{
	pg_atomic_write_u32(&bk->replacing, 0);
}

/* give back this session's holds when it ends */
static void
backup_exit_callback(int code, Datum arg)
{
	if (my_holds > 0)
		pg_atomic_sub_fetch_u32(&bk->holds, my_holds);
	my_holds = 0;
}

/*
 * KvBackupStart / KvBackupStop
 *		kv_backup_start() and kv_backup_stop(): hold snapshots and segment
 *		removal while a low-level backup copies the files.
 */
void
KvBackupStart(void)
{
	if (!exit_callback_set)
	{
		before_shmem_exit(backup_exit_callback, (Datum) 0);
		exit_callback_set = true;
	}
	pg_atomic_add_fetch_u32(&bk->holds, 1);
	my_holds++;
	pg_memory_barrier();
	/* a snapshot past its last check finishes before the copy begins */
	while (pg_atomic_read_u32(&bk->replacing) != 0)
	{
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
}

void
KvBackupStop(void)
{
	if (my_holds == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("kvext backup is not in progress in this session"),
				 errhint("Call kv_backup_stop() in the session that called kv_backup_start().")));
	my_holds--;
	pg_atomic_sub_fetch_u32(&bk->holds, 1);
}

/*
 * KvBackupRestoredCopy
 *		Is this the first kvext recovery of a copy restored from a
 *		file-level backup?  If so, make sure the marker file says so until
 *		KvBackupRestoredDone(), so that a crash in between does not forget
 *		it.  Called by recovery, after kvext/ exists.
 */
bool
KvBackupRestoredCopy(void)
{
	struct stat st;

	if (stat(KVEXT_RESTORED_MARKER, &st) == 0)
		return true;
	if (!bk->restored)
		return false;
	write_marker(ERROR);
	return true;
}

/*
 * KvBackupRestoredDone
 *		The restored copy's log has been cut where the copy became
 *		inconsistent and is durable again: from now on recovery applies its
 *		usual rules.
 */
void
KvBackupRestoredDone(void)
{
	if (unlink(KVEXT_RESTORED_MARKER) != 0 && errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", KVEXT_RESTORED_MARKER)));
	fsync_fname("kvext", true);
	bk->restored = false;
}
