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
 *	- the led term and led boot: the last term this node led, and the boot
 *	  id of its machine when it last led.  A leader's senders ship records
 *	  before its own fsync, so a machine restart (a power loss, an OS crash)
 *	  can take records from its log that followers hold.  A restarted node
 *	  leads its term again only in the same boot; after a machine restart
 *	  it must win a new term (the campaign flag, replication/campaign.c);
 *	- the commit watermark: on a follower, a position up to which the log
 *	  was known committed by the group (and applied here).  A follower's
 *	  recovery applies only up to it, so that a restarted follower never
 *	  shows a record its leader had not committed; it lags like the flush
 *	  watermark (the wal writer advances it about once a second, a clean
 *	  shutdown fully), and the follower catches up from its leader.
 *
 * File format (all integers in host byte order): magic, format version,
 * PostgreSQL major version, then the KvControl fields, then a CRC32C of
 * everything before it.  It is written to kvext/control.tmp, fsynced, and
 * renamed with durable_rename(), as STYLE asks of every kvext file.
 * Version 1 had no commit watermark, version 2 no led term and term
 * leader, version 3 no led boot and campaign flag; what is missing is read
 * as 0 (a node that led with version 3 leads again after any restart, as
 * it did) and the file is rewritten in version 4 at the next change.
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
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "kvext.h"
#include "log/control.h"

#define KVEXT_CONTROL_MAGIC		0x4C434B4B	/* "KKCL" */
#define KVEXT_CONTROL_VERSION	4

typedef struct KvControlFile
{
	uint32		magic;
	uint32		version;
	uint32		pg_major;
	uint32		pad;
	KvControl	data;
	pg_crc32c	crc;			/* of every byte before it */
} KvControlFile;

/* version 1: the same without the commit watermark */
typedef struct KvControlDataV1
{
	uint64		cluster_id;
	uint64		term;
	char		voted_for[NAMEDATALEN];
	KvLsn		flush_watermark;
} KvControlDataV1;

typedef struct KvControlFileV1
{
	uint32		magic;
	uint32		version;
	uint32		pg_major;
	uint32		pad;
	KvControlDataV1 data;
	pg_crc32c	crc;
} KvControlFileV1;

/* version 2: the same without the led term */
typedef struct KvControlDataV2
{
	uint64		cluster_id;
	uint64		term;
	char		voted_for[NAMEDATALEN];
	KvLsn		flush_watermark;
	KvLsn		commit_watermark;
} KvControlDataV2;

typedef struct KvControlFileV2
{
	uint32		magic;
	uint32		version;
	uint32		pg_major;
	uint32		pad;
	KvControlDataV2 data;
	pg_crc32c	crc;
} KvControlFileV2;

/* version 3: the same without the led boot and the campaign flag */
typedef struct KvControlDataV3
{
	uint64		cluster_id;
	uint64		term;
	char		voted_for[NAMEDATALEN];
	KvLsn		flush_watermark;
	KvLsn		commit_watermark;
	uint64		led_term;
	char		term_leader[NAMEDATALEN];
} KvControlDataV3;

typedef struct KvControlFileV3
{
	uint32		magic;
	uint32		version;
	uint32		pg_major;
	uint32		pad;
	KvControlDataV3 data;
	pg_crc32c	crc;
} KvControlFileV3;

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
 * read_prefix_version
 *		f holds a file of an older version whose data is the first
 *		data_size bytes of KvControl, its CRC at crc_offset (versions 2 and
 *		3).  If it is sound, turn it into the current version, the fields
 *		it lacks zero, and return the current file's size; if not, return
 *		n (the caller reports the damage).
 */
static ssize_t
read_prefix_version(KvControlFile *f, ssize_t n, Size crc_offset, Size data_size)
{
	KvControlFile old = *f;
	pg_crc32c	crc;
	pg_crc32c	stored;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, &old, crc_offset);
	FIN_CRC32C(crc);
	memcpy(&stored, (char *) &old + crc_offset, sizeof(stored));
	if (old.magic != KVEXT_CONTROL_MAGIC || !EQ_CRC32C(crc, stored))
		return n;
	memset(f, 0, sizeof(*f));
	f->magic = old.magic;
	f->version = KVEXT_CONTROL_VERSION;
	f->pg_major = old.pg_major;
	memcpy(&f->data, &old.data, data_size);
	f->crc = control_crc(f);
	return sizeof(*f);
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
	if (n == sizeof(KvControlFileV1) && f.version == 1)
	{
		/* version 1: no commit watermark, no led term */
		KvControlFileV1 v1;
		pg_crc32c	crc;

		memcpy(&v1, &f, sizeof(v1));
		INIT_CRC32C(crc);
		COMP_CRC32C(crc, &v1, offsetof(KvControlFileV1, crc));
		FIN_CRC32C(crc);
		if (v1.magic == KVEXT_CONTROL_MAGIC && EQ_CRC32C(crc, v1.crc))
		{
			memset(&f, 0, sizeof(f));
			f.magic = v1.magic;
			f.version = KVEXT_CONTROL_VERSION;
			f.pg_major = v1.pg_major;
			f.data.cluster_id = v1.data.cluster_id;
			f.data.term = v1.data.term;
			memcpy(f.data.voted_for, v1.data.voted_for, NAMEDATALEN);
			f.data.flush_watermark = v1.data.flush_watermark;
			f.crc = control_crc(&f);
			n = sizeof(f);
		}
	}
	else if (n == sizeof(KvControlFileV2) && f.version == 2)
		/* version 2: no led term */
		n = read_prefix_version(&f, n, offsetof(KvControlFileV2, crc),
								sizeof(KvControlDataV2));
	else if (n == sizeof(KvControlFileV3) && f.version == 3)
		/* version 3: no led boot, no campaign flag */
		n = read_prefix_version(&f, n, offsetof(KvControlFileV3, crc),
								sizeof(KvControlDataV3));
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
	if (memchr(f.data.voted_for, '\0', NAMEDATALEN) == NULL ||
		memchr(f.data.term_leader, '\0', NAMEDATALEN) == NULL ||
		memchr(f.data.led_boot, '\0', KVEXT_BOOT_ID_LEN) == NULL)
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
 *		on it.  Terms never go back.  A vote for another node ends this
 *		node's campaign in the same write.
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
	if (term > data.term)
		data.term_leader[0] = '\0';
	data.term = term;
	strlcpy(data.voted_for, voted_for ? voted_for : "", NAMEDATALEN);
	/* a vote for another node ends this node's campaign (campaign.c) */
	if (data.voted_for[0] != '\0' && strcmp(data.voted_for, kvext_node_name) != 0)
		data.campaign = 0;
	(void) write_control(&data, ERROR);
	ctl->data = data;
	LWLockRelease(control_lock);
}

/*
 * KvControlSetClusterId
 *		A new follower joins its group: take the group's cluster id,
 *		durably, before acting on it.
 */
void
KvControlSetClusterId(uint64 cluster_id)
{
	KvControl	data;

	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	Assert(ctl->loaded);
	data = ctl->data;
	data.cluster_id = cluster_id;
	(void) write_control(&data, ERROR);
	ctl->data = data;
	LWLockRelease(control_lock);
}

/*
 * KvControlSetLedTerm
 *		This node leads the current term: persisted before it acts as
 *		leader, so that a restart in the same term and the same boot of its
 *		machine leads again (no other node can lead a term this node won),
 *		with the boot id; a campaign is over.
 */
void
KvControlSetLedTerm(uint64 term)
{
	KvControl	data;

	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	Assert(ctl->loaded);
	if (term != ctl->data.term)
		elog(ERROR, "kvext cannot lead term " UINT64_FORMAT ": the current term is " UINT64_FORMAT,
			 term, ctl->data.term);
	data = ctl->data;
	data.led_term = term;
	strlcpy(data.term_leader, kvext_node_name, NAMEDATALEN);
	KvBootId(data.led_boot);
	data.campaign = 0;
	(void) write_control(&data, ERROR);
	ctl->data = data;
	LWLockRelease(control_lock);
}

/*
 * KvControlSetTermLeader
 *		A follower accepted leader for the current term: persisted, so that
 *		after a restart it still refuses another node claiming that term.
 *		A campaign of this node ends with it, in the same write.
 */
void
KvControlSetTermLeader(const char *leader)
{
	KvControl	data;

	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	Assert(ctl->loaded);
	if (strcmp(ctl->data.term_leader, leader) != 0 || ctl->data.campaign)
	{
		data = ctl->data;
		strlcpy(data.term_leader, leader, NAMEDATALEN);
		data.campaign = 0;
		(void) write_control(&data, ERROR);
		ctl->data = data;
	}
	LWLockRelease(control_lock);
}

/*
 * KvControlLedTerm
 *		The last term this node led: the led term, or the group's first
 *		term for its configured leader, which led it without a vote (and
 *		without persisting it).  0 for none.
 */
uint64
KvControlLedTerm(const KvControl *control)
{
	if (control->led_term == 0 && kvext_node_name && kvext_leader &&
		kvext_node_name[0] != '\0' && strcmp(kvext_node_name, kvext_leader) == 0)
		return 1;
	return control->led_term;
}

/*
 * KvControlMayStand
 *		May this node stand in its current term (a campaign asks in it)?
 *		Only if the term has no known leader, this node voted in it for
 *		nobody or itself, and did not lead it: a term it led may have lost
 *		records its followers hold (replication/campaign.c).
 */
bool
KvControlMayStand(const KvControl *control)
{
	return (control->voted_for[0] == '\0' ||
			strcmp(control->voted_for, kvext_node_name) == 0) &&
		control->term_leader[0] == '\0' &&
		KvControlLedTerm(control) < control->term;
}

/*
 * KvControlSetLedBoot
 *		This node leads its term again after a restart in the same boot (or
 *		for the first time under a control file without a led boot): record
 *		the boot, durably, before its senders ship anything unflushed.
 */
void
KvControlSetLedBoot(void)
{
	KvControl	data;
	char		boot[KVEXT_BOOT_ID_LEN];

	KvBootId(boot);
	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	Assert(ctl->loaded);
	if (strcmp(ctl->data.led_boot, boot) != 0)
	{
		data = ctl->data;
		strlcpy(data.led_boot, boot, KVEXT_BOOT_ID_LEN);
		(void) write_control(&data, ERROR);
		ctl->data = data;
	}
	LWLockRelease(control_lock);
}

/*
 * KvControlSetCampaign
 *		Set or clear the campaign flag (replication/campaign.c), durably: a
 *		node that must win a new term before it leads still must after a
 *		crash.
 */
void
KvControlSetCampaign(bool on)
{
	KvControl	data;

	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	Assert(ctl->loaded);
	if ((ctl->data.campaign != 0) != on)
	{
		data = ctl->data;
		data.campaign = on ? 1 : 0;
		(void) write_control(&data, ERROR);
		ctl->data = data;
	}
	LWLockRelease(control_lock);
}

/*
 * KvBootId
 *		The id of this boot of the machine, KVEXT_BOOT_ID_LEN bytes with the
 *		terminating zero: Linux's boot id, which a machine restart changes
 *		and a restart of PostgreSQL does not (the kernel keeps what was
 *		written and not yet fsynced).  Where it cannot be read, the
 *		postmaster's start time stands for it, so that every restart of the
 *		server counts as a machine restart (the safe side).
 */
void
KvBootId(char *out)
{
	static char boot[KVEXT_BOOT_ID_LEN];

	if (boot[0] == '\0')
	{
		FILE	   *f = AllocateFile("/proc/sys/kernel/random/boot_id", "r");

		if (f == NULL || fgets(boot, sizeof(boot), f) == NULL)
			snprintf(boot, sizeof(boot), "postmaster-" INT64_FORMAT, (int64) PgStartTime);
		if (f)
			FreeFile(f);
		boot[strcspn(boot, "\n")] = '\0';
		if (boot[0] == '\0')
			snprintf(boot, sizeof(boot), "postmaster-" INT64_FORMAT, (int64) PgStartTime);
	}
	strlcpy(out, boot, KVEXT_BOOT_ID_LEN);
}

/*
 * KvControlAdvanceWatermark
 *		KvControlAdvance for the flush watermark alone.
 */
void
KvControlAdvanceWatermark(KvLsn flushed)
{
	KvControlAdvance(flushed, InvalidKvLsn);
}

/*
 * KvControlAdvance
 *		Record that the log is durable up to flushed and (a follower)
 *		committed and applied up to committed, where that is further than
 *		recorded (0: leave it).  The caller must know it (KvWalFlushPos,
 *		the follower's applied position); flushed is also capped at the
 *		current flush position, which a follower's truncation may have
 *		moved back meanwhile (KvWalTruncate lowers the watermark after the
 *		position).  A failure to write the file (a full disk) is a
 *		WARNING, reported once until a write succeeds again: the
 *		watermarks only stay behind.
 */
void
KvControlAdvance(KvLsn flushed, KvLsn committed)
{
	static bool warned = false;
	KvControl	data;

	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	flushed = Min(flushed, KvWalFlushPos());
	if (!ctl->loaded ||
		(flushed <= ctl->data.flush_watermark &&
		 committed <= ctl->data.commit_watermark))
	{
		LWLockRelease(control_lock);
		return;
	}
	data = ctl->data;
	data.flush_watermark = Max(flushed, data.flush_watermark);
	data.commit_watermark = Max(committed, data.commit_watermark);
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
 * KvControlLowerWatermark
 *		A follower cuts its log at at (KvWalTruncate): a flush watermark
 *		beyond it would make recovery take the cut for lost records.
 *		Lowers it to at (durably) if it is beyond; the commit watermark is
 *		never beyond at (nothing committed is cut).
 */
void
KvControlLowerWatermark(KvLsn at)
{
	KvControl	data;

	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	if (!ctl->loaded || ctl->data.flush_watermark <= at)
	{
		LWLockRelease(control_lock);
		return;
	}
	data = ctl->data;
	data.flush_watermark = at;
	(void) write_control(&data, ERROR);
	ctl->data = data;
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

/*
 * KvControlResetToSnapshot
 *		A follower's log was replaced by an empty one starting at at, the
 *		redo point of a snapshot streamed from its leader (log/install.c):
 *		both watermarks become at, durably, even if they were further (the
 *		old log is gone; everything before at is in the snapshot).
 */
void
KvControlResetToSnapshot(KvLsn at)
{
	KvControl	data;

	LWLockAcquire(control_lock, LW_EXCLUSIVE);
	data = ctl->data;
	data.flush_watermark = at;
	data.commit_watermark = at;
	(void) write_control(&data, ERROR);
	ctl->data = data;
	LWLockRelease(control_lock);
}
