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
#include "log/snapshot.h"
#include "log/wal.h"
#include "store/alloc.h"
#include "store/keyspace.h"
#include "store/store.h"

#define KVEXT_SNAP_MAGIC		0x4E534B4B	/* "KKSN" */
#define KVEXT_SNAP_VERSION		3
#define KVEXT_SNAP_VERSION_2	2	/* no index of large entries; still loaded */
#define KVEXT_SNAP_VERSION_1	1	/* no redo_term either; still loaded */
#define KVEXT_SNAP_END			0xFFFF

typedef struct KvSnapHeader
{
	uint32		magic;
	uint32		version;
	uint32		pg_major;
	uint32		nkeyspaces;
	KvLsn		redo;
	uint64		term;
	TimestampTz created;
	/* version 2 */
	uint64		redo_term;		/* term of the record ending at redo */
} KvSnapHeader;

/* a version-1 header ends before redo_term */
#define KVEXT_SNAP_HEADER_V1	offsetof(KvSnapHeader, redo_term)

typedef struct KvSnapKeyspace
{
	uint16		id;
	char		name[NAMEDATALEN];
} KvSnapKeyspace;

typedef struct KvSnapEntry
{
	uint16		keyspace;
	uint16		flags;			/* KVE_BINARY */
	uint32		keylen;
	uint32		vallen;
} KvSnapEntry;

/* entries with more bytes of key and value are large (file header) */
#define SNAP_LARGE_ENTRY	(1024 * 1024)

/*
 * Version 3: one large entry in the index after the end marker.  The
 * loader also uses it, with chunk -1, for the large entries of older
 * files.
 */
typedef struct KvSnapLargeRef
{
	uint64		offset;			/* file offset of its key */
	uint32		keylen;
	uint32		vallen;
	uint16		keyspace;
	uint16		flags;			/* KVE_BINARY */
	int32		chunk;			/* heap chunk it was in; -1: none */
	pg_crc32c	crc;			/* CRC32C of key and value */
	uint32		pad;			/* zero */
} KvSnapLargeRef;

/* version 3: after the index, before the trailer */
typedef struct KvSnapIndexTail
{
	uint64		index_offset;	/* file offset of the first KvSnapLargeRef */
	uint32		nlarge;			/* how many there are */
	uint32		nchunks;		/* heap chunks of the server that wrote it */
} KvSnapIndexTail;

/* bytes from the index tail to the end of the file */
#define SNAP_TAIL_BYTES		(sizeof(KvSnapIndexTail) + sizeof(uint64) + sizeof(pg_crc32c))

/* a growing array of large entries (the writer's index, the reader's) */
typedef struct SnapLargeList
{
	KvSnapLargeRef *refs;
	uint32		n;
	uint32		max;
} SnapLargeList;

/* a new zeroed element at the end of list */
static KvSnapLargeRef *
large_add(SnapLargeList *list)
{
	if (list->n == list->max)
	{
		list->max = Max(64, list->max * 2);
		list->refs = list->refs ?
			repalloc_huge(list->refs, sizeof(KvSnapLargeRef) * list->max) :
			palloc(sizeof(KvSnapLargeRef) * list->max);
	}
	memset(&list->refs[list->n], 0, sizeof(KvSnapLargeRef));
	return &list->refs[list->n++];
}

/* note the large entry at offset (its key), key and value at data */
static void
large_note(SnapLargeList *list, uint64 offset, uint16 keyspace, uint16 flags,
		   uint32 keylen, uint32 vallen, const char *data, int chunk)
{
	KvSnapLargeRef *l = large_add(list);

	l->offset = offset;
	l->keylen = keylen;
	l->vallen = vallen;
	l->keyspace = keyspace;
	l->flags = flags & KVE_BINARY;
	l->chunk = chunk;
	INIT_CRC32C(l->crc);
	COMP_CRC32C(l->crc, data, (Size) keylen + vallen);
	FIN_CRC32C(l->crc);
}

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

/* publish what the last snapshot written, loaded or installed says */
static void
set_last(const KvSnapHeader *hdr)
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
/* largest single write() */
#define SNAP_WRITE_MAX		(64 * 1024 * 1024)

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
		large_note(&w->large, w->pos, se.keyspace, se.flags, e->keylen,
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
		set_last(&hdr);

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

/* ---- reading ---- */

typedef struct SnapReader
{
	int			fd;
	KvSnapshotSkipFn skip;		/* loading: keys to leave out, or NULL */
	void	   *skip_arg;
	uint64		skipped;		/* entries left out */
	char	   *buf;
	Size		cap;			/* allocated size of buf */
	Size		len;
	Size		pos;
	pg_crc32c	crc;
	off_t		offset;			/* file offset of buf[0] */
	off_t		filesize;		/* no length read may reach past it */
	const char *path;
} SnapReader;

#define SNAP_READ_CHUNK		(4 * 1024 * 1024)

/* the damage starts at file offset off; -1: the file as a whole */
static void
snap_damaged(SnapReader *r, off_t off, const char *why)
{
	if (off < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext snapshot \"%s\" is damaged: %s",
						r->path, why)));
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("kvext snapshot \"%s\" is damaged at offset %lld: %s",
					r->path, (long long) off, why)));
}

#define SNAP_POS(r)		((off_t) ((r)->offset + (r)->pos))

/*
 * snap_fill
 *		Make at least n bytes available at r->buf + r->pos; false at EOF.
 *		The buffer is SNAP_READ_CHUNK bytes, grown to hold one entry larger
 *		than that, and shrunk back after it: loading never needs more than
 *		the largest entry in memory.
 */
static bool
snap_fill(SnapReader *r, Size n)
{
	Size		want;

	if (r->len - r->pos >= n)
		return true;
	/* keep the unread tail, read more after it */
	memmove(r->buf, r->buf + r->pos, r->len - r->pos);
	r->offset += r->pos;
	r->len -= r->pos;
	r->pos = 0;
	want = Max(n, SNAP_READ_CHUNK);
	if (r->cap != want)
	{
		r->buf = repalloc_huge(r->buf, want);
		r->cap = want;
	}
	while (r->len < n)
	{
		ssize_t		got;

		pgstat_report_wait_start(WAIT_EVENT_DATA_FILE_READ);
		got = read(r->fd, r->buf + r->len,
				   Min(r->cap - r->len, (Size) SNAP_WRITE_MAX));
		pgstat_report_wait_end();

		if (got < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read kvext snapshot \"%s\": %m", r->path)));
		if (got == 0)
			return false;
		r->len += got;
	}
	return true;
}

static void *
snap_take(SnapReader *r, Size n, bool crc)
{
	void	   *p;

	/* a length from the file is checked before anything is allocated */
	if ((off_t) n > r->filesize - SNAP_POS(r) || !snap_fill(r, n))
		snap_damaged(r, SNAP_POS(r), "unexpected end of file");
	p = r->buf + r->pos;
	if (crc)
		COMP_CRC32C(r->crc, p, n);
	r->pos += n;
	return p;
}

/*
 * sort for loading: entries with a chunk first, chunk by chunk; then
 * largest first; then in file order
 */
static int
snap_large_cmp(const void *a, const void *b)
{
	const KvSnapLargeRef *x = (const KvSnapLargeRef *) a;
	const KvSnapLargeRef *y = (const KvSnapLargeRef *) b;
	uint64		xs = (uint64) x->keylen + x->vallen;
	uint64		ys = (uint64) y->keylen + y->vallen;

	if ((x->chunk >= 0) != (y->chunk >= 0))
		return x->chunk >= 0 ? -1 : 1;
	if (x->chunk != y->chunk)
		return x->chunk < y->chunk ? -1 : 1;
	if (xs != ys)
		return xs > ys ? -1 : 1;
	return x->offset < y->offset ? -1 : (x->offset > y->offset ? 1 : 0);
}

/* the snapshot does not fit: raise the error */
static void
snap_full(uint64 loaded)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("the kvext snapshot does not fit in kvext.memory_limit"),
			 errdetail("%llu entries were loaded before the store was full.",
					   (unsigned long long) loaded),
			 errhint("Raise kvext.memory_limit to at least its value when the snapshot was written, and restart the server.")));
}

/* read len bytes at offset off of the snapshot into buf */
static void
snap_pread(SnapReader *r, char *buf, Size len, off_t off)
{
	Size		done = 0;

	while (done < len)
	{
		ssize_t		got;

		pgstat_report_wait_start(WAIT_EVENT_DATA_FILE_READ);
		got = pg_pread(r->fd, buf + done, Min(len - done, (Size) SNAP_WRITE_MAX),
					   off + done);
		pgstat_report_wait_end();
		if (got < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read kvext snapshot \"%s\": %m", r->path)));
		if (got == 0)
			snap_damaged(r, off + done, "unexpected end of file");
		done += got;
	}
}

/*
 * snap_load_large
 *		Load the large entries of list (the index of a version 3 file,
 *		before the stream; or the ones the stream pass of an older file
 *		noted, after it): each into its own chunk if it has one (see the
 *		file header), reading each from the file into a buffer of its
 *		size, freed after it, and checking it against its CRC.  Entries of
 *		keyspaces not in the file's directory (known) are left out, as in
 *		the stream.  *loaded counts the entries loaded.
 */
static void
snap_load_large(SnapReader *r, const SnapLargeList *list, const bool *known,
				uint64 *loaded)
{
	int			nchunks = KvAllocChunkCount();
	KvSnapLargeRef *order;

	if (list->n == 0)
		return;
	order = palloc_extended(sizeof(KvSnapLargeRef) * list->n, MCXT_ALLOC_HUGE);
	memcpy(order, list->refs, sizeof(KvSnapLargeRef) * list->n);
	for (uint32 i = 0; i < list->n; i++)
		if (order[i].chunk >= nchunks)
			order[i].chunk = -1;
	qsort(order, list->n, sizeof(KvSnapLargeRef), snap_large_cmp);
	for (uint32 i = 0; i < list->n; i++)
	{
		KvSnapLargeRef *l = &order[i];
		Size		len = (Size) l->keylen + l->vallen;
		char	   *data;
		pg_crc32c	crc;

		if (!known[l->keyspace])
			continue;
		KvCheckForInterruptsLong();
		data = palloc_extended(len, MCXT_ALLOC_HUGE);
		snap_pread(r, data, len, l->offset);
		INIT_CRC32C(crc);
		COMP_CRC32C(crc, data, len);
		FIN_CRC32C(crc);
		if (!EQ_CRC32C(crc, l->crc))
			snap_damaged(r, l->offset, "checksum mismatch in a large entry");
		if (r->skip && r->skip(r->skip_arg, l->keyspace, data, l->keylen))
		{
			r->skipped++;
			pfree(data);
			continue;
		}
		if (!KvStoreRecoverWrite(l->keyspace, data, l->keylen,
								 data + l->keylen, l->vallen,
								 (l->flags & KVE_BINARY) != 0, l->chunk))
			snap_full(*loaded);
		(*loaded)++;
		pfree(data);
	}
	pfree(order);
}

/*
 * snap_read_index
 *		Version 3: read the index of large entries with pread(), before the
 *		stream reaches it, into *index and *tail.  entries is the offset of
 *		the first entry.  Everything is checked against the file's size
 *		and the keyspaces read (known) before it is used; the stream pass
 *		later checks that the file holds this very index (CRC included).
 */
static void
snap_read_index(SnapReader *r, off_t entries, const bool *known,
				SnapLargeList *index, KvSnapIndexTail *tail)
{
	off_t		tail_at = r->filesize - (off_t) SNAP_TAIL_BYTES;
	off_t		index_end;
	uint64		prev_end = entries;

	if (tail_at < entries + (off_t) sizeof(KvSnapEntry))
		snap_damaged(r, -1, "file too short");
	snap_pread(r, (char *) tail, sizeof(*tail), tail_at);
	index_end = (off_t) tail->index_offset + (off_t) tail->nlarge * sizeof(KvSnapLargeRef);
	if (tail->nlarge > r->filesize / SNAP_LARGE_ENTRY ||
		tail->index_offset < (uint64) entries + sizeof(KvSnapEntry) ||
		index_end != tail_at)
		snap_damaged(r, tail_at, "bad index of large entries");
	index->n = index->max = tail->nlarge;
	index->refs = palloc_extended(Max(sizeof(KvSnapLargeRef) * tail->nlarge, 1),
								  MCXT_ALLOC_HUGE);
	snap_pread(r, (char *) index->refs, sizeof(KvSnapLargeRef) * tail->nlarge,
			   tail->index_offset);
	for (uint32 i = 0; i < index->n; i++)
	{
		KvSnapLargeRef *l = &index->refs[i];
		uint64		len = (uint64) l->keylen + l->vallen;

		/* in file order, each after its entry header, before the end marker */
		if (l->offset < prev_end + sizeof(KvSnapEntry) ||
			len <= SNAP_LARGE_ENTRY || l->keylen > MaxAllocSize ||
			l->vallen > MaxAllocSize ||
			l->offset + len > tail->index_offset - sizeof(KvSnapEntry) ||
			l->keyspace >= kvext_max_keyspaces || !known[l->keyspace] ||
			l->chunk < -1 || l->chunk >= KV_ALLOC_MAX_CHUNKS)
			snap_damaged(r, tail->index_offset + i * sizeof(KvSnapLargeRef),
						 "bad index of large entries");
		prev_end = l->offset + len;
	}
}

/*
 * snap_read
 *		Read and check the snapshot at path: header, keyspaces, entries,
 *		index, count and CRC.  With load, its contents go into the (empty)
 *		store.  Returns false if the file does not exist; raises
 *		ERRCODE_DATA_CORRUPTED if it is damaged, ERRCODE_OUT_OF_MEMORY if
 *		it does not fit in kvext.memory_limit.  The file is never modified.
 */
static bool
snap_read(const char *path, bool load, KvSnapshotInfo *info,
		  KvSnapshotSkipFn skip, void *skip_arg)
{
	SnapReader	r;
	KvSnapHeader hdr;
	uint64		count = 0;		/* entries read */
	uint64		loaded = 0;		/* entries loaded */
	SnapLargeList found = {0};	/* the large entries the stream finds */
	SnapLargeList index = {0};	/* version 3: the index, read first */
	KvSnapIndexTail tail;
	uint64		stored_count;
	pg_crc32c	stored_crc;
	bool	   *known = palloc0(sizeof(bool) * kvext_max_keyspaces);

	memset(&r, 0, sizeof(r));
	r.path = path;
	r.skip = skip;
	r.skip_arg = skip_arg;
	r.fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (r.fd < 0)
	{
		if (errno == ENOENT)
			return false;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open kvext snapshot \"%s\": %m", path)));
	}
	{
		struct stat st;

		if (fstat(r.fd, &st) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not stat kvext snapshot \"%s\": %m", path)));
		r.filesize = st.st_size;
	}
	r.buf = palloc(SNAP_READ_CHUNK);
	r.cap = SNAP_READ_CHUNK;
	INIT_CRC32C(r.crc);

	memset(&hdr, 0, sizeof(hdr));
	memcpy(&hdr, snap_take(&r, KVEXT_SNAP_HEADER_V1, true), KVEXT_SNAP_HEADER_V1);
	if (hdr.magic != KVEXT_SNAP_MAGIC)
		snap_damaged(&r, 0, "bad magic number");
	if (hdr.version < KVEXT_SNAP_VERSION_1 || hdr.version > KVEXT_SNAP_VERSION)
		snap_damaged(&r, 0, psprintf("format version %u, expected %u", hdr.version, KVEXT_SNAP_VERSION));
	if (hdr.pg_major != PG_VERSION_NUM / 100)
		snap_damaged(&r, 0, psprintf("written by PostgreSQL %u", hdr.pg_major));
	if (hdr.nkeyspaces > 65535)
		snap_damaged(&r, 0, "bad keyspace count");
	if (hdr.version >= KVEXT_SNAP_VERSION_2)
		memcpy((char *) &hdr + KVEXT_SNAP_HEADER_V1,
			   snap_take(&r, sizeof(hdr) - KVEXT_SNAP_HEADER_V1, true),
			   sizeof(hdr) - KVEXT_SNAP_HEADER_V1);

	for (uint32 i = 0; i < hdr.nkeyspaces; i++)
	{
		KvSnapKeyspace sk;
		off_t		at = SNAP_POS(&r);

		memcpy(&sk, snap_take(&r, sizeof(sk), true), sizeof(sk));
		if (memchr(sk.name, '\0', NAMEDATALEN) == NULL || sk.name[0] == '\0')
			snap_damaged(&r, at, "bad keyspace name");
		if (load)
			KvKeyspaceRecoverCreate(sk.id, sk.name);	/* checks the id */
		else if (sk.id >= kvext_max_keyspaces)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("keyspace \"%s\" in kvext snapshot \"%s\" has id %u, beyond kvext.max_keyspaces (%d)",
							sk.name, path, sk.id, kvext_max_keyspaces)));
		known[sk.id] = true;
	}

	/* version 3: the large entries go first, each in its chunk */
	if (hdr.version >= KVEXT_SNAP_VERSION)
	{
		snap_read_index(&r, SNAP_POS(&r), known, &index, &tail);
		if (load)
			snap_load_large(&r, &index, known, &loaded);
	}

	for (;;)
	{
		KvSnapEntry se;
		char	   *data;
		off_t		at = SNAP_POS(&r);

		memcpy(&se, snap_take(&r, sizeof(se), true), sizeof(se));
		if (se.keyspace == KVEXT_SNAP_END)
			break;
		if (se.keyspace >= kvext_max_keyspaces || se.keylen > MaxAllocSize ||
			se.vallen > MaxAllocSize)
			snap_damaged(&r, at, "bad entry header");
		at = SNAP_POS(&r);
		data = snap_take(&r, (Size) se.keylen + se.vallen, true);
		count++;
		if ((count & 0xFFFF) == 0)
			KvCheckForInterruptsLong();
		if ((Size) se.keylen + se.vallen > SNAP_LARGE_ENTRY)
		{
			/* loaded before the stream (version 3) or after it */
			large_note(&found, at, se.keyspace, se.flags, se.keylen,
					   se.vallen, data, -1);
			continue;
		}
		if (!known[se.keyspace] || !load)
			continue;			/* not written by current versions; be safe */
		if (r.skip && r.skip(r.skip_arg, se.keyspace, data, se.keylen))
		{
			r.skipped++;
			continue;
		}
		if (!KvStoreRecoverWrite(se.keyspace, data, se.keylen,
								 data + se.keylen, se.vallen,
								 (se.flags & KVE_BINARY) != 0, -1))
			snap_full(loaded);
		loaded++;
	}
	if (hdr.version >= KVEXT_SNAP_VERSION)
	{
		off_t		at = SNAP_POS(&r);
		KvSnapLargeRef *refs;

		/* the index read first is the one the file holds, and right */
		if ((uint64) at != tail.index_offset || found.n != index.n)
			snap_damaged(&r, at, "the index of large entries does not match them");
		if (index.n > 0)
		{
			refs = snap_take(&r, sizeof(KvSnapLargeRef) * index.n, true);
			if (memcmp(refs, index.refs, sizeof(KvSnapLargeRef) * index.n) != 0)
				snap_damaged(&r, at, "the index of large entries changed");
			for (uint32 i = 0; i < index.n; i++)
			{
				KvSnapLargeRef *f = &found.refs[i];

				if (refs[i].offset != f->offset || refs[i].keylen != f->keylen ||
					refs[i].vallen != f->vallen || refs[i].keyspace != f->keyspace ||
					refs[i].flags != f->flags || !EQ_CRC32C(refs[i].crc, f->crc))
					snap_damaged(&r, at + i * sizeof(KvSnapLargeRef),
								 "the index of large entries does not match them");
			}
		}
		if (memcmp(snap_take(&r, sizeof(tail), true), &tail, sizeof(tail)) != 0)
			snap_damaged(&r, SNAP_POS(&r) - sizeof(tail), "the index of large entries changed");
	}
	memcpy(&stored_count, snap_take(&r, sizeof(stored_count), true), sizeof(stored_count));
	FIN_CRC32C(r.crc);
	memcpy(&stored_crc, snap_take(&r, sizeof(stored_crc), false), sizeof(stored_crc));
	if (!EQ_CRC32C(r.crc, stored_crc))
		snap_damaged(&r, -1, "checksum mismatch");
	if (stored_count != count)
		snap_damaged(&r, -1, "entry count mismatch");
	if (snap_fill(&r, 1))
		snap_damaged(&r, SNAP_POS(&r), "trailing data");

	pfree(r.buf);
	r.buf = NULL;
	if (load && hdr.version < KVEXT_SNAP_VERSION)
		snap_load_large(&r, &found, known, &loaded);
	if (found.refs)
		pfree(found.refs);
	if (index.refs)
		pfree(index.refs);
	CloseTransientFile(r.fd);
	pfree(known);

	info->redo = hdr.redo;
	info->term = hdr.term;
	info->redo_term_known = (hdr.version >= KVEXT_SNAP_VERSION_2);
	info->redo_term = info->redo_term_known ? hdr.redo_term : 0;
	info->entries = count;
	info->skipped = r.skipped;
	if (load)
		set_last(&hdr);
	return true;
}

/*
 * KvSnapshotLoad
 *		Load kvext/snapshot into the (empty) store.  Returns false if there
 *		is no snapshot; raises ERRCODE_DATA_CORRUPTED if it is damaged,
 *		ERRCODE_OUT_OF_MEMORY if it does not fit in kvext.memory_limit.
 *		The file is never modified.
 */
bool
KvSnapshotLoad(KvLsn *redo, uint64 *term, KvSnapshotSkipFn skip, void *skip_arg)
{
	KvSnapshotInfo info;

	if (!snap_read(KVEXT_SNAPSHOT_FILE, true, &info, skip, skip_arg))
		return false;
	*redo = info.redo;
	*term = info.term;
	if (info.skipped > 0)
		ereport(LOG,
				(errmsg("kvext loaded snapshot: %llu of its %llu entries, redo at %X/%X; the log rebuilds the other %llu",
						(unsigned long long) (info.entries - info.skipped),
						(unsigned long long) info.entries, LSN_FORMAT_ARGS(info.redo),
						(unsigned long long) info.skipped)));
	else
		ereport(LOG,
				(errmsg("kvext loaded snapshot: %llu entries, redo at %X/%X",
						(unsigned long long) info.entries, LSN_FORMAT_ARGS(info.redo))));
	return true;
}

/*
 * KvSnapshotPeek
 *		The redo point and term of kvext/snapshot, from its header, without
 *		loading it; false if there is none.  A header this version cannot
 *		read is reported as KvSnapshotLoad would report it.
 */
bool
KvSnapshotPeek(KvLsn *redo, uint64 *term)
{
	KvSnapshotInfo info;
	int			fd = OpenTransientFile(KVEXT_SNAPSHOT_FILE, O_RDONLY | PG_BINARY);
	bool		ok;

	if (fd < 0)
	{
		if (errno == ENOENT)
			return false;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open kvext snapshot \"%s\": %m", KVEXT_SNAPSHOT_FILE)));
	}
	ok = KvSnapshotReadHeader(fd, &info);
	CloseTransientFile(fd);
	if (!ok)
		(void) snap_read(KVEXT_SNAPSHOT_FILE, false, &info, NULL, NULL);	/* raises */
	*redo = info.redo;
	*term = info.term;
	return true;
}

/*
 * KvSnapshotCheck
 *		Check the snapshot file at path as KvSnapshotLoad would (every
 *		entry, the count, the CRC) without loading it, and fill *info.
 *		Raises ERRCODE_DATA_CORRUPTED if it is missing or damaged.
 */
void
KvSnapshotCheck(const char *path, KvSnapshotInfo *info)
{
	if (!snap_read(path, false, info, NULL, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext snapshot \"%s\" is missing", path)));
}

/*
 * KvSnapshotReadHeader
 *		The header of the snapshot open as fd (read from offset 0, without
 *		moving the file position): redo point, terms.  false if it is not a
 *		snapshot this version reads.  For a leader streaming its snapshot.
 */
bool
KvSnapshotReadHeader(int fd, KvSnapshotInfo *info)
{
	KvSnapHeader hdr;
	ssize_t		got;

	memset(&hdr, 0, sizeof(hdr));
	pgstat_report_wait_start(WAIT_EVENT_DATA_FILE_READ);
	got = pg_pread(fd, &hdr, sizeof(hdr), 0);
	pgstat_report_wait_end();
	if (got < (ssize_t) KVEXT_SNAP_HEADER_V1 || hdr.magic != KVEXT_SNAP_MAGIC ||
		hdr.version < KVEXT_SNAP_VERSION_1 || hdr.version > KVEXT_SNAP_VERSION ||
		(hdr.version >= KVEXT_SNAP_VERSION_2 && got < (ssize_t) sizeof(hdr)))
		return false;
	info->redo = hdr.redo;
	info->term = hdr.term;
	info->redo_term_known = (hdr.version >= KVEXT_SNAP_VERSION_2);
	info->redo_term = info->redo_term_known ? hdr.redo_term : 0;
	info->entries = 0;
	return true;
}
