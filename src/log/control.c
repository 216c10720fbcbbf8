/*-------------------------------------------------------------------------
 *
 * control.c
 *	  kvext's control file, $PGDATA/kvext/control.
 *
 * A small file, read at recovery and rewritten whenever what it holds
 * changes:
 *	- the cluster id: random, fixed when the store is first created, so a
 *	  node can refuse log traffic from another group (replication);
 *	- the current term and the vote cast in it: Raft persists them before
 *	  acting on them (replication);
 *	- the flush watermark: a position up to which the log was known to be
 *	  durable.  Recovery uses it to tell a torn last record (a write that
 *	  never reached the disk, cut off with a LOG line) from a damaged one (a
 *	  record that was durable once: the store refuses to serve).  Records
 *	  carry nothing node-local, so the watermark is kept here; the "kvext
 *	  wal writer" advances it about once a second, and clean shutdowns and
 *	  snapshots advance it too.  A record damaged past the watermark is
 *	  treated as torn: that is the window in which a damaged record cannot
 *	  be told from a torn one.
 *
 * File format (all integers in host byte order): magic, format version,
 * PostgreSQL major version, then the KvControl fields, then a CRC32C of
 * everything before it.  It is written to kvext/control.tmp, fsynced, and
 * renamed with durable_rename(), as STYLE asks of every kvext file.
 *
 * Locking: the control lock (an LWLock) serializes writers and protects
 * the shared copy; readers take it shared.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/xlogdefs.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "storage/shmem.h"
#include "utils/wait_event.h"

#include "log/control.h"

#define KVEXT_CONTROL_MAGIC		0x4C434B4B	/* "KKCL" */
#define KVEXT_CONTROL_VERSION	1

typedef struct KvControlFile
{
	uint32		magic;
	uint32		version;
	uint32		pg_major;
	uint32		pad;
	KvControl	data;
	pg_crc32c	crc;			/* of every byte before it */
} KvControlFile;

typedef struct KvControlShared
{
	bool		loaded;
	KvControl	data;
} KvControlShared;

static KvControlShared *ctl = NULL;
static LWLock *control_lock = NULL;

Size
KvControlShmemSize(void)
{
	return sizeof(KvControlShared);
}

/*
 * KvControlShmemInit
 *		Create or attach the shared copy; caller holds AddinShmemInitLock.
 */
void
KvControlShmemInit(LWLock *lock)
{
	bool		found;

	ctl = ShmemInitStruct("kvext control", sizeof(KvControlShared), &found);
	control_lock = lock;
	if (!found)
		memset(ctl, 0, sizeof(KvControlShared));
}

/* the CRC32C of every byte of f before its crc field */
static pg_crc32c
control_crc(const KvControlFile *f)
{
	pg_crc32c	crc;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, f, offsetof(KvControlFile, crc));
	FIN_CRC32C(crc);
	return crc;
}

/*
 * write_control
 *		Write the file from data; caller holds the control lock exclusively.
 *		Returns false after reporting at elevel (WARNING: the caller goes on
 *		without the change), or raises the error (ERROR).
 */
static bool
write_control(const KvControl *data, int elevel)
{
	KvControlFile f;
	int			fd;
	ssize_t		n;

	memset(&f, 0, sizeof(f));
	f.magic = KVEXT_CONTROL_MAGIC;
	f.version = KVEXT_CONTROL_VERSION;
	f.pg_major = PG_VERSION_NUM / 100;
	f.data = *data;
	f.crc = control_crc(&f);

	fd = OpenTransientFile(KVEXT_CONTROL_TMP, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
	{
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not create kvext control file \"%s\": %m", KVEXT_CONTROL_TMP)));
		return false;
	}
	errno = 0;
	pgstat_report_wait_start(WAIT_EVENT_CONTROL_FILE_WRITE);
	n = write(fd, &f, sizeof(f));
	pgstat_report_wait_end();
	if (n != sizeof(f))
	{
		int			save_errno = errno ? errno : ENOSPC;

		CloseTransientFile(fd);
		(void) unlink(KVEXT_CONTROL_TMP);
		errno = save_errno;
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not write kvext control file \"%s\": %m", KVEXT_CONTROL_TMP)));
		return false;
	}
	pgstat_report_wait_start(WAIT_EVENT_CONTROL_FILE_SYNC);
	n = pg_fsync(fd);
	pgstat_report_wait_end();
	if (n != 0)
		ereport(data_sync_elevel(ERROR),
				(errcode_for_file_access(),
				 errmsg("could not fsync kvext control file \"%s\": %m", KVEXT_CONTROL_TMP)));
	CloseTransientFile(fd);
	return durable_rename(KVEXT_CONTROL_TMP, KVEXT_CONTROL_FILE, elevel) == 0;
}

/*
 * KvControlLoad
 *		Read the control file into shared memory (recovery).  If there is
 *		none: with create, make one for a new store (new cluster id, term 1)
 *		and return true; without, return false.  A damaged file is an error
 *		(XX001): the store refuses to serve rather than forget a vote.
 */
bool
KvControlLoad(bool create)
{
	KvControlFile f;
	int			fd;
	ssize_t		n;

	fd = OpenTransientFile(KVEXT_CONTROL_FILE, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		KvControl	fresh;

		if (errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not open kvext control file \"%s\": %m", KVEXT_CONTROL_FILE)));
		if (!create)
			return false;
		memset(&fresh, 0, sizeof(fresh));
		fresh.cluster_id = pg_prng_uint64(&pg_global_prng_state);
		if (fresh.cluster_id == 0)
			fresh.cluster_id = 1;
		fresh.term = 1;
		LWLockAcquire(control_lock, LW_EXCLUSIVE);
		(void) write_control(&fresh, ERROR);
		ctl->data = fresh;
		ctl->loaded = true;
		LWLockRelease(control_lock);
		return true;
	}
	pgstat_report_wait_start(WAIT_EVENT_CONTROL_FILE_READ);
	n = read(fd, &f, sizeof(f));
	pgstat_report_wait_end();
	if (n < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read kvext control file \"%s\": %m", KVEXT_CONTROL_FILE)));
	CloseTransientFile(fd);
	if (n != sizeof(f))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext control file \"%s\" is damaged: %zd bytes, expected %zu",
						KVEXT_CONTROL_FILE, n, sizeof(f))));
	if (f.magic != KVEXT_CONTROL_MAGIC || !EQ_CRC32C(control_crc(&f), f.crc))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext control file \"%s\" is damaged: %s", KVEXT_CONTROL_FILE,
						f.magic != KVEXT_CONTROL_MAGIC ? "bad magic number" : "checksum mismatch")));
	if (f.version != KVEXT_CONTROL_VERSION || f.pg_major != PG_VERSION_NUM / 100)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext control file \"%s\" has format version %u for PostgreSQL %u",
						KVEXT_CONTROL_FILE, f.version, f.pg_major),
				 errdetail("This build expects version %u for PostgreSQL %u.",
						   KVEXT_CONTROL_VERSION, PG_VERSION_NUM / 100)));
	if (memchr(f.data.voted_for, '\0', NAMEDATALEN) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext control file \"%s\" is damaged: bad vote", KVEXT_CONTROL_FILE)));

	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	ctl->data = f.data;
	ctl->loaded = true;
	LWLockRelease(control_lock);
	return true;
}

/*
 * KvControlGet
 *		A copy of the control data.
 */
void
KvControlGet(KvControl *out)
{
	LWLockAcquire(control_lock, LW_SHARED);
	*out = ctl->data;
	LWLockRelease(control_lock);
}

/*
 * KvControlSetTerm
 *		Persist a new term (and the vote cast in it) before the caller acts
 *		on it.  Terms never go back.
 */
void
KvControlSetTerm(uint64 term, const char *voted_for)
{
	KvControl	data;

	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	Assert(ctl->loaded);
	if (term < ctl->data.term)
		elog(ERROR, "kvext term cannot go back from " UINT64_FORMAT " to " UINT64_FORMAT,
			 ctl->data.term, term);
	data = ctl->data;
	data.term = term;
	strlcpy(data.voted_for, voted_for ? voted_for : "", NAMEDATALEN);
	(void) write_control(&data, ERROR);
	ctl->data = data;
	LWLockRelease(control_lock);
}

/*
 * KvControlAdvanceWatermark
 *		Record that the log is durable up to flushed, if that is further
 *		than recorded.  The caller must know it is durable (KvWalFlushPos).
 *		A failure to write the file (a full disk) is a WARNING, reported
 *		once until a write succeeds again: the watermark only stays behind.
 */
void
KvControlAdvanceWatermark(KvLsn flushed)
{
	static bool warned = false;
	KvControl	data;

	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	if (!ctl->loaded || flushed <= ctl->data.flush_watermark)
	{
		LWLockRelease(control_lock);
		return;
	}
	data = ctl->data;
	data.flush_watermark = flushed;
	if (write_control(&data, warned ? DEBUG1 : WARNING))
	{
		ctl->data = data;
		warned = false;
	}
	else
		warned = true;
	LWLockRelease(control_lock);
}

/*
 * KvControlResetWatermark
 *		Set the flush watermark to flushed even if that is lower than
 *		recorded: a restored backup's control file may have been copied
 *		after its log, and recovery has cut the log below its watermark.
 *		Called by recovery only, with the log durable up to flushed.
 */
void
KvControlResetWatermark(KvLsn flushed)
{
	KvControl	data;

	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	data = ctl->data;
	data.flush_watermark = flushed;
	(void) write_control(&data, ERROR);
	ctl->data = data;
	LWLockRelease(control_lock);
}
