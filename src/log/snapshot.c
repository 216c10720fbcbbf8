/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *	  Snapshots ("checkpoints") of the whole store: writing and loading.
 *	  The "kvext checkpointer" worker that decides when to write one is in
 *	  checkpoint.c.
 *
 * A snapshot is fuzzy: the checkpointer takes the redo point (the oldest
 * log record that may not be reflected in memory yet, see wal.c), flushes
 * the log up to it, then copies the committed entries in batches of
 * buckets (store/scan.c) while sessions keep writing, and streams each
 * batch to the file before copying the next.  Replaying the log from the
 * redo point over the snapshot yields the exact state, because every
 * logged write sets an absolute value (kv_incr logs its result) and replay
 * applies them in log order; replaying a write the snapshot already holds
 * is harmless.  So recovery time is bounded by the snapshot size plus the
 * log written since the last snapshot, not by the whole history.
 *
 * Why batches are as good as whole partitions: the argument is per key.
 * All versions of a key are in one bucket's chain, and a bucket is copied
 * under one lock hold, so the image holds each key as it was at one
 * instant t(key) after the redo point was taken (committed entries only;
 * a commit being converted shows its old value).  Every record before the
 * redo point had been applied to memory when the redo point was taken (a
 * TXN record stays in flight until all its entries are converted), so the
 * key's state at t(key) is its state after the records before the redo
 * point plus some of the ones after it.  Replay applies every committed
 * record from the redo point on, in log order, with absolute values: the
 * key ends with its last logged write, or, if it had none since the redo
 * point, with the image's value, which is then the value before the redo
 * point.  Nothing here depends on how many keys share one instant, so the
 * size of a batch does not matter.  Keyspaces are read once, right after
 * the redo point, and entries of keyspaces created later are left out:
 * their creation is logged after the redo point and replayed.  The log is
 * flushed to its end before the rename, since the image may hold commits
 * logged during the scan.
 *
 * File format (kvext/snapshot), all integers in host byte order:
 *	header		KvSnapHeader: magic, format version, PostgreSQL major version,
 *				redo LSN, term, creation time, number of keyspaces, and
 *				(version 2) the term of the log record that ends at the
 *				redo point (a follower rebuilt from the snapshot checks its
 *				leader's next append against it; install.c)
 *	keyspaces	KvSnapKeyspace x nkeyspaces (id, name)
 *	entries		KvSnapEntry + key + value, repeated
 *	end			a KvSnapEntry with keyspace = KVEXT_SNAP_END
 *	index		(version 3) KvSnapLargeRef for each large entry, in file
 *				order: where it is, its CRC, and the heap chunk it was in;
 *				then KvSnapIndexTail (the index's offset and length)
 *	trailer		uint64 entry count, then CRC32C of every preceding byte
 * It is written to kvext/snapshot.tmp, fsynced, and renamed over the old
 * snapshot with durable_rename(); only then are log segments that end
 * before the redo point removed.  A crash at any point leaves either the
 * old snapshot with all the log it needs, or the new one.
 *
 * The snapshot lock (an LWLock of its own) is held while a snapshot is
 * written and while a follower installs one streamed from its leader
 * (install.c), so the two never replace the file under each other, and a
 * snapshot never copies a store that is being rebuilt.
 *
 * Memory: the scan's batch (about 1MB, or one bucket's entries if larger),
 * a 1MB write buffer (values larger than 256kB are written directly from
 * the batch); loading needs a 4MB read buffer, or one entry if larger, and
 * 24 bytes per large entry (below).
 *
 * Loading order.  The file holds entries in bucket order, not in the order
 * the running server placed them, and the heap is cut into chunks of at
 * most 1GB (store/alloc.c) that each entry must fit in whole.  Small
 * entries go anywhere and compaction moves them, but values of hundreds of
 * MB are a bin-packing problem, and no packing rule the loader could
 * choose packs every set the running server packed: loaded in bucket
 * order, six values of 340 to 600MB that fit a 3GB store at run time left
 * no chunk with room for the last one; loaded largest first into the
 * tightest block (best fit decreasing), 500, 500, 450, 260, 260, 450, 260
 * and 260MB, committed in that order into three 1GB chunks, leave the last
 * 260MB without a chunk.  So the writer records, in the index at the end
 * of the file, each large entry's (over SNAP_LARGE_ENTRY bytes) offset,
 * CRC and heap chunk, and the loader puts the large entries back first,
 * each in its own chunk, before any small entry: what fit in a chunk at
 * run time fits in it again, in any order, in an empty chunk.  (Entries
 * over 2MB never move at run time, so the chunk a snapshot sees is the one
 * the server placed them in.)  The small entries then stream in around
 * them.  A large entry whose chunk no longer exists (kvext.memory_limit was
 * lowered) or has no room goes wherever there is room, largest first;
 * recovery's compaction makes room by moving what was loaded before.
 * The loader reads the index with pread() before the stream, and the
 * stream pass then checks the whole file (CRC) and that the index it read
 * is the one the file holds.  Format 1 and 2 files have no index: their
 * large entries are loaded after the stream, largest first.
 *
 * The checkpointer (checkpoint.c) runs recovery first (recovery.c), then
 * loops: a snapshot every kvext.checkpoint_timeout, when
 * kvext.max_wal_size of log has accumulated, or when kv_checkpoint() asks.
 * A failed snapshot is logged, reported to the session that asked and in
 * kv_wal_status(), and retried with a growing delay.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "failpoint.h"
#include "kvext.h"
#include "log/backup.h"
#include "log/reader.h"
#include "log/snapformat.h"
#include "log/snapshot.h"
#include "log/wal.h"
#include "store/alloc.h"
#include "store/keyspace.h"
#include "store/store.h"

typedef struct KvSnapshotShared
{
	slock_t		mutex;
	KvLsn		last_redo;		/* of the last snapshot written or loaded */
	TimestampTz last_time;
	bool		redo_term_known;	/* false for a version-1 snapshot */
	uint64		last_redo_term; /* term of the record ending at last_redo */
} KvSnapshotShared;

static KvSnapshotShared *snap = NULL;
static LWLock *snapshot_lock = NULL;

/*
 * KvSnapshotShmemSize / KvSnapshotShmemInit
 */
Size
KvSnapshotShmemSize(void)
{
	return sizeof(KvSnapshotShared);
}

void
KvSnapshotShmemInit(LWLock *lock)
{
	bool		found;

	snap = ShmemInitStruct("kvext snapshot", sizeof(KvSnapshotShared), &found);
	snapshot_lock = lock;
	if (!found)
	{
		SpinLockInit(&snap->mutex);
		snap->last_redo = InvalidKvLsn;
		snap->last_time = 0;
		snap->redo_term_known = false;
		snap->last_redo_term = 0;
	}
}

/*
 * KvSnapshotLock
 *		The snapshot lock (see the file header), for install.c.
 */
LWLock *
KvSnapshotLock(void)
{
	return snapshot_lock;
}

/*
 * KvSnapshotRedoTerm
 *		The redo point of the last snapshot written or loaded, and the term
 *		of the log record that ends there (0 at the start of the log).
 *		false if there is none, or it is a version-1 snapshot that does not
 *		say.
 */
bool
KvSnapshotRedoTerm(KvLsn *redo, uint64 *term)
{
	bool		known;

	SpinLockAcquire(&snap->mutex);
	*redo = snap->last_redo;
	*term = snap->last_redo_term;
	known = snap->redo_term_known && snap->last_redo != InvalidKvLsn;
	SpinLockRelease(&snap->mutex);
	return known;
}

/*
 * KvSnapshotSetLast
 *		Publish what the last snapshot written, loaded or installed says.
 */
void
KvSnapshotSetLast(const KvSnapHeader *hdr)
{
	SpinLockAcquire(&snap->mutex);
	snap->last_redo = hdr->redo;
	snap->last_time = hdr->created;
	snap->redo_term_known = (hdr->version >= KVEXT_SNAP_VERSION_2);
	snap->last_redo_term = hdr->redo_term;
	SpinLockRelease(&snap->mutex);
}

/*
 * term_ending_at
 *		The term of this node's log record that ends at pos (0 at the start
 *		of the log): known if it is the last record, or the last snapshot's
 *		redo point; else read from the segment before pos.  Raises
 *		ERRCODE_DATA_CORRUPTED if the log does not hold it.
 */
static uint64
term_ending_at(KvLsn pos)
{
	KvLsn		start,
				end,
				redo;
	uint64		term;
	KvLsn	   *segs;
	int			nsegs;
	KvLsn		from = InvalidKvLsn;
	KvLogReader *r;
	bool		found = false;

	if (pos <= KVEXT_WAL_START_LSN)
		return 0;
	if (KvWalLastRecord(&start, &end, &term) && end == pos)
		return term;
	if (KvSnapshotRedoTerm(&redo, &term) && redo == pos)
		return term;
	nsegs = KvWalListSegments(&segs);
	for (int i = 0; i < nsegs; i++)
		if (segs[i] < pos)
			from = segs[i];
	pfree(segs);
	if (from != InvalidKvLsn)
	{
		r = KvLogReaderBegin(from);
		while (r->pos < pos && KvLogReadNext(r) == KV_READ_RECORD)
		{
			term = r->rec->term;
			if (r->pos == pos)
				found = true;
		}
		KvLogReaderEnd(r);
	}
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot find the kvext log record that ends at %X/%X",
						LSN_FORMAT_ARGS(pos))));
	return term;
}

/*
 * KvLastSnapshot
 *		Redo point and time of the last snapshot written or loaded.
 */
void
KvLastSnapshot(KvLsn *redo, TimestampTz *time)
{
	SpinLockAcquire(&snap->mutex);
	*redo = snap->last_redo;
	*time = snap->last_time;
	SpinLockRelease(&snap->mutex);
}

/* ---- writing ---- */

typedef struct SnapWriter
{
	bool	   *known;			/* keyspace ids in the snapshot's directory */
	int			fd;
	pg_crc32c	crc;
	uint64		count;
	uint64		pos;			/* bytes appended so far */
	SnapLargeList large;		/* the index: large entries written */
	StringInfoData buf;
	int			partitions;		/* partitions done, for the failpoint */
} SnapWriter;

/* snap_append's buffer size; larger pieces are written directly */
#define SNAP_WRITE_BUF		(1024 * 1024)

/*
 * snap_write
 *		Write len bytes to the snapshot being written, however large (a
 *		single write() moves at most about 2GB, and may move less).
 */
static void
snap_write(SnapWriter *w, const char *data, Size len)
{
	while (len > 0)
	{
		ssize_t		n;

		errno = 0;
		pgstat_report_wait_start(WAIT_EVENT_DATA_FILE_WRITE);
		n = write(w->fd, data, Min(len, (Size) SNAP_WRITE_MAX));
		pgstat_report_wait_end();
		if (n <= 0)
		{
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write kvext snapshot \"%s\": %m", KVEXT_SNAPSHOT_TMP)));
		}
		data += n;
		len -= n;
	}
}

/* write out what snap_append has buffered */
static void
snap_flush_buf(SnapWriter *w)
{
	if (w->buf.len == 0)
		return;
	snap_write(w, w->buf.data, w->buf.len);
	resetStringInfo(&w->buf);
}

/*
 * snap_append
 *		Add bytes to the snapshot and its CRC.  Small pieces are gathered in
 *		a buffer of about SNAP_WRITE_BUF bytes; a large one (a value) goes
 *		to the file directly, so no buffer ever holds more than that.
 */
static void
snap_append(SnapWriter *w, const void *data, Size len)
{
	COMP_CRC32C(w->crc, data, len);
	w->pos += len;
	if (len >= SNAP_WRITE_BUF / 4)
	{
		snap_flush_buf(w);
		snap_write(w, data, len);
		return;
	}
	appendBinaryStringInfo(&w->buf, data, len);
	if (w->buf.len >= SNAP_WRITE_BUF)
		snap_flush_buf(w);
}

static void
snap_entry_cb(void *arg, const KvEntry *e)
{
	SnapWriter *w = (SnapWriter *) arg;
	KvSnapEntry se;

	if (e == NULL)
	{
		/*
		 * A partition is done.  If the postmaster died, stop: a restart
		 * cannot begin while this process keeps shared memory, and the
		 * half-written snapshot.tmp is removed by the next recovery.
		 */
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (++w->partitions == KVEXT_NUM_PARTITIONS / 2)
		{
			snap_flush_buf(w);
			KvFailpoint("snapshot-mid");
		}
		return;
	}
	/* entries of a keyspace being dropped: its KS_DROP precedes redo */
	if (!w->known[e->keyspace])
		return;
	se.keyspace = e->keyspace;
	se.flags = e->flags & KVE_BINARY;
	se.keylen = e->keylen;
	se.vallen = e->vallen;
	snap_append(w, &se, sizeof(se));
	if ((Size) e->keylen + e->vallen > SNAP_LARGE_ENTRY)
		KvSnapLargeNote(&w->large, w->pos, se.keyspace, se.flags, e->keylen,
				   e->vallen, e->data, KvAllocChunkOf(e->next));
	snap_append(w, e->data, e->keylen + e->vallen);
	w->count++;
}

/*
 * KvSnapshotWrite
 *		Write a snapshot and remove the log it makes unnecessary.  Errors
 *		are raised; the previous snapshot stays valid until the rename, and
 *		the caller removes the partial file (KvSnapshotAbandon).  Entries
 *		reach the file in batches as the scan copies them (scan.c), so
 *		memory use does not grow with the store.
 */
void
KvSnapshotWrite(void)
{
	SnapWriter	w;
	KvSnapHeader hdr;
	KvKeyspaceRef *refs;
	char		(*names)[NAMEDATALEN];
	int			nks;
	KvSnapEntry end;
	KvSnapIndexTail tail;
	KvLsn		redo;
	int			removed = 0;
	TimestampTz start = GetCurrentTimestamp();
	int			rc;

	KvBackupCheckSnapshotAllowed(false);
	/* released by error recovery (LWLockReleaseAll) if this fails */
	LWLockAcquire(snapshot_lock, LW_EXCLUSIVE);
	redo = KvWalRedoPoint();
	/* everything before redo must be durable before the snapshot claims it */
	KvWalFlush(redo);

	refs = palloc(sizeof(KvKeyspaceRef) * kvext_max_keyspaces);
	names = palloc(NAMEDATALEN * kvext_max_keyspaces);
	/* a keyspace being dropped stays in until its KS_DROP is logged */
	nks = KvKeyspaceListForSnapshot(refs, names);

	memset(&w, 0, sizeof(w));
	w.known = palloc0(sizeof(bool) * kvext_max_keyspaces);
	for (int i = 0; i < nks; i++)
		w.known[refs[i].id] = true;
	initStringInfo(&w.buf);
	INIT_CRC32C(w.crc);
	w.fd = OpenTransientFile(KVEXT_SNAPSHOT_TMP, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (w.fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create kvext snapshot \"%s\": %m", KVEXT_SNAPSHOT_TMP)));

	memset(&hdr, 0, sizeof(hdr));
	hdr.magic = KVEXT_SNAP_MAGIC;
	hdr.version = KVEXT_SNAP_VERSION;
	hdr.pg_major = PG_VERSION_NUM / 100;
	hdr.nkeyspaces = nks;
	hdr.redo = redo;
	hdr.term = KvWalCurrentTerm();
	hdr.created = start;
	hdr.redo_term = term_ending_at(redo);
	snap_append(&w, &hdr, sizeof(hdr));
	for (int i = 0; i < nks; i++)
	{
		KvSnapKeyspace sk;

		memset(&sk, 0, sizeof(sk));
		sk.id = refs[i].id;
		strlcpy(sk.name, names[i], NAMEDATALEN);
		snap_append(&w, &sk, sizeof(sk));
	}

	KvStoreScanCommitted(snap_entry_cb, &w);

	memset(&end, 0, sizeof(end));
	end.keyspace = KVEXT_SNAP_END;
	snap_append(&w, &end, sizeof(end));
	memset(&tail, 0, sizeof(tail));
	tail.index_offset = w.pos;
	tail.nlarge = w.large.n;
	tail.nchunks = KvAllocChunkCount();
	if (w.large.n > 0)
		snap_append(&w, w.large.refs, sizeof(KvSnapLargeRef) * w.large.n);
	snap_append(&w, &tail, sizeof(tail));
	snap_append(&w, &w.count, sizeof(w.count));
	FIN_CRC32C(w.crc);
	appendBinaryStringInfo(&w.buf, (char *) &w.crc, sizeof(w.crc));
	snap_flush_buf(&w);

	pgstat_report_wait_start(WAIT_EVENT_DATA_FILE_SYNC);
	rc = pg_fsync(w.fd);
	pgstat_report_wait_end();
	if (rc != 0)
		ereport(data_sync_elevel(ERROR),
				(errcode_for_file_access(),
				 errmsg("could not fsync kvext snapshot \"%s\": %m", KVEXT_SNAPSHOT_TMP)));
	if (CloseTransientFile(w.fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close kvext snapshot \"%s\": %m", KVEXT_SNAPSHOT_TMP)));

	/*
	 * The image may hold the effects of records written after the redo
	 * point, during the scan; they must be durable before the image is,
	 * or a crash could keep a later commit and lose an earlier one.
	 */
	KvWalFlushAll();

	KvFailpoint("snapshot-before-rename");
	/* a backup that began during the scan: leave its copy consistent */
	KvBackupCheckSnapshotAllowed(true);
	PG_TRY();
	{
		(void) durable_rename(KVEXT_SNAPSHOT_TMP, KVEXT_SNAPSHOT_FILE, ERROR);
		KvSnapshotSetLast(&hdr);

		/*
		 * Look again: a pg_basebackup that began since the check above
		 * (it does not wait on the replacing flag) may have copied the old
		 * snapshot, and needs the segments after its redo point.  They go
		 * with the next snapshot.  A backup that is not visible yet is
		 * still in its own checkpoint and copies nothing before the
		 * removal below is done.
		 */
		if (KvBackupInProgress())
			ereport(LOG,
					(errmsg("kvext snapshot keeps the old log files: a base backup began while it was written")));
		else
			removed = KvWalRemoveBefore(redo);
	}
	PG_FINALLY();
	{
		KvBackupReplaceDone();
	}
	PG_END_TRY();
	LWLockRelease(snapshot_lock);
	ereport(LOG,
			(errmsg("kvext snapshot complete: %llu entries, redo at %X/%X, %d log segment(s) removed, %ld ms",
					(unsigned long long) w.count,
					LSN_FORMAT_ARGS(redo), removed,
					(long) ((GetCurrentTimestamp() - start) / 1000))));
}

/*
 * KvSnapshotAbandon
 *		After a failed KvSnapshotWrite (and once its file is closed, by
 *		AtEOXact_Files): remove the partial snapshot.tmp, so that a failing
 *		snapshot does not keep up to a store's size of disk in use, which,
 *		when the disk is full, is what makes it fail.
 */
void
KvSnapshotAbandon(void)
{
	if (unlink(KVEXT_SNAPSHOT_TMP) != 0 && errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not remove kvext snapshot \"%s\": %m", KVEXT_SNAPSHOT_TMP)));
}
