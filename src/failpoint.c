/*-------------------------------------------------------------------------
 *
 * failpoint.c
 *	  Named failure points, a testing aid.
 *
 * kvext.failpoint (superuser only) names one point, optionally with an
 * action: 'wal-after-fsync' or 'wal-after-fsync:panic' PANICs there (the
 * postmaster then reinitializes shared memory, as after kill -9 of a
 * backend), 'wal-after-fsync:error' raises an ERROR, and
 * 'snapshot-mid:hold' waits there while the file $PGDATA/kvext/hold exists
 * (at most two minutes, showing wait event "Extension"), so that a test can
 * act while a process is at that point, without timing anything.  Points:
 *
 *	wal-before-write		committing backend, before its log record is written
 *	wal-after-write			after the commit record is written, before fsync
 *	wal-before-fsync		KvWalFlush: the log is written (and a leader's
 *							senders woken to ship it), not yet fsynced
 *	wal-after-fsync			pre-commit, after the TXN record is written (and,
 *							for a transaction that also wrote tables,
 *							flushed), before PostgreSQL's own commit record
 *	commit-before-marker	commit callback, after PostgreSQL's commit record,
 *							before kvext's COMMIT record (PANIC only)
 *	commit-after-marker		after the COMMIT record is written and flushed,
 *							before the writes are applied (PANIC only)
 *	abort-after-error		abort callback of a transaction whose TXN record
 *							was written, before anything is logged: the
 *							client already has its ERROR (PANIC only)
 *	watermark-hold			the wal writer stops advancing the control file's
 *							flush watermark (no crash; for torn-tail tests)
 *	wal-writer-no-timer		the wal writer works only when woken (a full
 *							log buffer, a segment switch), not every
 *							kvext.wal_writer_delay (no crash)
 *	wal-enospc				the log write fails with ENOSPC (no crash)
 *	wal-enospc-reserve		reserving space for COMMIT/ABORT records fails
 *	wal-insert-hold			a TXN record's insert waits, holding the log insert
 *							lock, while $PGDATA/kvext/hold exists (no crash)
 *	wal-direct-write		a record too large for the log buffers, its
 *							position given out and the insert lock released,
 *							half of it written (the write lock held; use
 *							:hold or :panic, in a critical section)
 *	wal-switch-mid			a segment switch: the new segment renamed into place
 *							(or created), the log not yet moved into it
 *	wal-prepare-enospc		the wal writer's preparation of the next log
 *							segment fails with ENOSPC (no crash)
 *	snapshot-mid			checkpointer, half-way through writing a snapshot
 *	snapshot-before-rename	snapshot written and synced, not yet renamed
 *	segment-removal-mid		after removing the first of several old segments
 *	install-before-marker	follower installing its leader's snapshot
 *							(log/install.c): received and checked, the install
 *							not decided yet
 *	install-after-marker	decided (snapshot.install), nothing else done
 *	install-mid				its log replaced, control file and snapshot not yet
 *	install-before-load		files done, the store not reloaded yet
 *	recovery-new-boot		recovery takes the restart for a restart of the
 *							machine (a leader must win a new term first)
 *	fdw-remote-read			a remote kvext_fdw read (kvext_fdw_remote_read),
 *							before it reads
 *
 * Points in the checkpointer see the setting from the configuration file
 * (ALTER SYSTEM + pg_reload_conf()); points in a backend see its session's.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "pgstat.h"
#include "utils/guc.h"

#include "failpoint.h"

char	   *kvext_failpoint = NULL;

/* every point kvext.failpoint may name (the list above) */
static const char *const failpoint_names[] = {
	"wal-before-write", "wal-after-write", "wal-before-fsync",
	"wal-after-fsync", "commit-before-marker", "commit-after-marker",
	"abort-after-error", "watermark-hold", "wal-writer-no-timer",
	"wal-enospc", "wal-enospc-reserve", "wal-insert-hold", "wal-direct-write",
	"wal-switch-mid", "wal-prepare-enospc", "snapshot-mid",
	"snapshot-before-rename", "segment-removal-mid", "install-before-marker",
	"install-after-marker", "install-mid", "install-before-load",
	"recovery-new-boot", "fdw-remote-read",
};

/*
 * KvFailpointCheck
 *		Check hook of kvext.failpoint: empty, or a point of the list above
 *		with no action or with :panic, :error or :hold.  A misspelt point
 *		would otherwise make a crash test pass without crashing anything.
 */
bool
KvFailpointCheck(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	const char *colon;
	size_t		len;

	if (v == NULL || v[0] == '\0')
		return true;
	colon = strchr(v, ':');
	len = colon ? (size_t) (colon - v) : strlen(v);
	if (colon && strcmp(colon, ":panic") != 0 && strcmp(colon, ":error") != 0 &&
		strcmp(colon, ":hold") != 0)
	{
		GUC_check_errdetail("Unknown failpoint action \"%s\"; the actions are :panic (the default), :error and :hold.",
							colon + 1);
		return false;
	}
	for (int i = 0; i < lengthof(failpoint_names); i++)
		if (strlen(failpoint_names[i]) == len &&
			strncmp(failpoint_names[i], v, len) == 0)
			return true;
	GUC_check_errdetail("Unknown failpoint \"%.*s\".", (int) len, v);
	GUC_check_errhint("The points are listed in src/failpoint.c.");
	return false;
}

/*
 * KvFailpointMatches
 *		Does kvext.failpoint name this point (with or without an action)?
 */
bool
KvFailpointMatches(const char *name)
{
	size_t		len = strlen(name);

	return strncmp(kvext_failpoint, name, len) == 0 &&
		(kvext_failpoint[len] == '\0' || kvext_failpoint[len] == ':');
}

/*
 * KvFailpointHit
 *		Act on a failpoint if kvext.failpoint names it.
 */
void
KvFailpointHit(const char *name)
{
	const char *action;

	if (!KvFailpointMatches(name))
		return;
	action = kvext_failpoint + strlen(name);
	if (strcmp(action, ":hold") == 0)
	{
		KvFailpointHold();
		return;
	}
	if (strcmp(action, ":error") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("kvext failpoint \"%s\" reached", name)));
	ereport(PANIC,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("kvext failpoint \"%s\" reached", name)));
}

/*
 * KvFailpointHold
 *		Wait while $PGDATA/kvext/hold exists, for at most two minutes,
 *		showing wait event "Extension".  Interrupts are not checked: the
 *		caller may hold an LWLock (wal-insert-hold holds the insert lock).
 */
void
KvFailpointHold(void)
{
	struct stat st;

	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	for (int i = 0; i < 12000 && stat("kvext/hold", &st) == 0; i++)
		pg_usleep(10000L);
	pgstat_report_wait_end();
}
