/*-------------------------------------------------------------------------
 *
 * install.c
 *	  A follower rebuilt from a snapshot streamed by its leader: the
 *	  received file becomes this node's snapshot, its log is replaced by
 *	  an empty one that starts at the snapshot's redo point, and the
 *	  store's contents are replaced by the snapshot's.
 *
 * The leader streams its snapshot when the follower needs log the leader
 * no longer has (docs/architecture.md, "Catch-up from a snapshot");
 * replication/snaprecv.c receives it into kvext/snapshot.recv.<pid> and,
 * at the last chunk, calls KvSnapshotInstall.
 *
 * Crash safety.  One file decides whether the install happened:
 * kvext/snapshot.install.
 *	1. The received file is fsynced and checked as recovery checks a
 *	   snapshot (every entry, count, CRC32C; KvSnapshotCheck).  A crash
 *	   until here leaves the old state; the partial file is removed by the
 *	   next recovery.
 *	2. It is renamed to snapshot.install (durable_rename).  From here on the
 *	   install is decided: whatever happens, recovery finishes it
 *	   (KvSnapshotFinishInstall, before it reads the snapshot or the log).
 *	3. The files are finished, each step harmless to do again: the log is
 *	   replaced by one empty segment at the redo point (KvWalResetTo), the
 *	   control file's flush and commit watermarks are set to the redo point
 *	   (so recovery takes neither the missing old log for lost records nor
 *	   anything before the redo point for committed log), and
 *	   snapshot.install is renamed over kvext/snapshot.
 *	4. In memory: new kv calls wait as during recovery (state
 *	   "rebuilding"), the store is cleared (KvStoreClear: a read already
 *	   under way fails with 40001 rather than see part of each state) and
 *	   the snapshot loaded; the follower's apply state starts at the redo
 *	   point.  An error here leaves the store unavailable (every kv call
 *	   says so) until a restart, whose recovery loads the new state.
 *
 * The snapshot records the term of the log record that ends at its redo
 * point (snapshot.c), which the follower's log no longer holds: the
 * leader's next append, with prev_end = the redo point, is checked against
 * it (receiver.c, through KvSnapshotRedoTerm).
 *
 * Locks: the caller holds the append lock (no append or apply meanwhile);
 * then the snapshot lock (no snapshot is written meanwhile), then the log's
 * flush and insert locks (KvWalResetTo) and the control lock, one at a time.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "access/xlogdefs.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/lwlock.h"

#include "failpoint.h"
#include "kvext.h"
#include "log/apply.h"
#include "log/control.h"
#include "log/install.h"
#include "log/recovery.h"
#include "log/snapshot.h"
#include "log/visible.h"
#include "log/wal.h"
#include "store/keyspace.h"
#include "store/store.h"

/*
 * finish_files
 *		Step 3: log, control file, snapshot name.  Redone by recovery after
 *		a crash (live false: no failpoint then), so every step may find
 *		itself already done.
 */
static void
finish_files(const KvSnapshotInfo *info, uint64 term, bool live)
{
	KvWalResetTo(info->redo, Max(term, info->term));
	if (live)
		KvFailpoint("install-mid");
	KvControlResetToSnapshot(info->redo);
	(void) durable_rename(KVEXT_SNAPSHOT_INSTALL, KVEXT_SNAPSHOT_FILE, ERROR);
}

/*
 * remove_received
 *		Remove snapshots left half-received by a crash (recovery only:
 *		nobody receives one then).
 */
static void
remove_received(void)
{
	DIR		   *dir = AllocateDir(KVEXT_DIR);
	struct dirent *de;
	char		path[MAXPGPATH];

	while ((de = ReadDir(dir, KVEXT_DIR)) != NULL)
	{
		if (strncmp(de->d_name, KVEXT_SNAPSHOT_RECV_PREFIX,
					strlen(KVEXT_SNAPSHOT_RECV_PREFIX)) != 0)
			continue;
		snprintf(path, sizeof(path), KVEXT_DIR "/%s", de->d_name);
		if (unlink(path) != 0 && errno != ENOENT)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not remove \"%s\": %m", path)));
	}
	FreeDir(dir);
}

/*
 * KvSnapshotFinishInstall
 *		Recovery, before it reads the snapshot and the log: finish an
 *		install that a crash cut after step 2, and remove half-received
 *		snapshots.  Raises an error (the store does not serve) if the file
 *		to install is damaged: it was checked before it got its name.
 */
void
KvSnapshotFinishInstall(void)
{
	KvSnapshotInfo info;
	KvControl	control;
	struct stat st;

	remove_received();
	if (stat(KVEXT_SNAPSHOT_INSTALL, &st) != 0)
	{
		if (errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not stat \"%s\": %m", KVEXT_SNAPSHOT_INSTALL)));
		return;
	}
	KvSnapshotCheck(KVEXT_SNAPSHOT_INSTALL, &info);
	KvControlGet(&control);
	ereport(LOG,
			(errmsg("kvext finishes installing the snapshot streamed from its leader: redo at %X/%X, %llu entries",
					LSN_FORMAT_ARGS(info.redo), (unsigned long long) info.entries)));
	finish_files(&info, control.term, false);
}

/*
 * KvSnapshotInstall
 *		Install the snapshot received at path (complete and fsynced) as this
 *		follower's state; term is the leader's term.  Caller holds the
 *		append lock.  See the file header for the steps.
 */
void
KvSnapshotInstall(const char *path, uint64 term)
{
	KvSnapshotInfo info;
	KvLsn		redo;
	uint64		loaded_term;
	LWLock	   *lock = KvSnapshotLock();

	/* step 1 */
	KvSnapshotCheck(path, &info);
	if (!info.redo_term_known)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("kvext snapshot from the leader has format 1, which does not say the term at its redo point")));
	if (info.redo < KVEXT_WAL_START_LSN)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("kvext snapshot from the leader has an invalid redo point %X/%X",
						LSN_FORMAT_ARGS(info.redo))));
	KvFailpoint("install-before-marker");

	/* step 2: from here on the install is decided */
	LWLockAcquire(lock, LW_EXCLUSIVE);
	(void) durable_rename(path, KVEXT_SNAPSHOT_INSTALL, ERROR);
	KvRecoveryBeginRebuild();

	PG_TRY();
	{
		KvFailpoint("install-after-marker");
		finish_files(&info, term, true);	/* step 3 */
		KvFailpoint("install-before-load");

		/* step 4 */
		KvStoreClear();
		KvKeyspaceResetAll();
		KvStoreCompactUnbounded(true);
		if (!KvSnapshotLoad(&redo, &loaded_term, NULL, NULL))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("kvext snapshot \"%s\" vanished while it was installed",
							KVEXT_SNAPSHOT_FILE)));
		KvStoreCompactUnbounded(false);
		KvApplyFollowerStart(info.redo, info.redo, NULL, 0);
		KvVisibleAdvance(info.redo, InvalidKvLsn);
		KvStoreEndRebuild();
		KvRecoveryEndRebuild();
	}
	PG_CATCH();
	{
		/* error recovery releases the locks */
		KvStoreCompactUnbounded(false);
		KvStoreEndRebuild();
		KvRecoveryFail(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
					   "installing the snapshot streamed from the leader failed",
					   "The store holds neither its old contents nor the new ones.",
					   "Restart the server: its recovery completes the install.");
		PG_RE_THROW();
	}
	PG_END_TRY();
	LWLockRelease(lock);

	ereport(LOG,
			(errmsg("kvext follower rebuilt from its leader's snapshot: %llu entries, its log starts at %X/%X",
					(unsigned long long) info.entries, LSN_FORMAT_ARGS(info.redo))));
}
