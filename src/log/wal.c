/*-------------------------------------------------------------------------
 *
 * wal.c
 *	  kvext's write-ahead log: appending records, group commit, segments.
 *
 * The log is a sequence of records (wal.h) in segment files under
 * $PGDATA/kvext/wal/.  A position (KvLsn) is a byte offset in the logical
 * stream; a segment file is named after the position of its first byte
 * (16 hex digits) and holds whole records only.  A segment is created at
 * kvext.wal_segment_size, zero-filled (see zero_fill_segment), and closed
 * once its records reach that size; one huge record makes its segment
 * longer than that, never split.
 *
 * Inserting.  Under the insert lock a committing backend takes the next
 * position, finishes the record's CRC (the payload was summed before the
 * lock; the header, which holds the position, is summed last), and
 * pwrite()s it to the current segment.  Insertion order is therefore log
 * order.  If the write fails (ENOSPC, EIO) the bytes written of it are
 * overwritten with zeros and the error is raised: nothing partial counts
 * as written, and a later write may succeed.  After a TXN record,
 * fallocate(FALLOC_FL_KEEP_SIZE) reserves the blocks for the COMMIT or
 * ABORT records ("markers") that in-flight transactions still need: a
 * marker is written in a critical section (after PostgreSQL's commit, an
 * error is no longer possible), so it must not meet a full disk.  Markers
 * never start a new segment.
 *
 * Group commit.  KvWalFlush(upto) is PostgreSQL's XLogFlush pattern: the
 * first backend to get the flush lock (LWLockAcquireOrWait) fdatasync()s
 * the segment up to everything written so far; backends that queued behind
 * it wake when it is done and usually find their position already flushed,
 * so concurrent commits share one fsync.  An fdatasync failure PANICs:
 * after a failed fsync the kernel may have dropped the dirty pages, so
 * retrying could report success for data that is gone.
 * Switching segments fsyncs the old one (under the insert lock) and the
 * directory, so only the current segment is ever unflushed.
 *
 * kvext.synchronous_commit = off commits do not flush; the "kvext wal
 * writer" worker flushes every kvext.wal_writer_delay.
 *
 * In-flight records.  A transaction's TXN record is written at pre-commit
 * and applied to memory at commit; in between, a snapshot could miss it
 * while starting replay after it.  So each backend publishes the position
 * of its logged-but-unapplied record (inflight[pgprocno], set under the
 * insert lock), and the snapshot's redo point is the oldest of those, or
 * the insert position.
 *
 * Locks: insert lock, then (never the reverse) nothing else but the
 * mutex; flush lock alone.  The keyspace lock may be held when inserting
 * (keyspace records), so neither WAL lock may be held while taking it.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlogdefs.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/fd.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/wait_event.h"

#include "failpoint.h"
#include "kvext.h"
#include "log/wal.h"

/*
 * Bytes reserved after each TXN record for the COMMIT or ABORT records of
 * every transaction that may be in flight (see KvWalInsert).
 */
#define MARKER_RESERVE	((off_t) TYPEALIGN(4096, (Size) KvProcSlots() * sizeof(KvWalRecord)))

#define IS_MARKER(type)	((type) == KV_REC_COMMIT || (type) == KV_REC_ABORT)

typedef struct KvWalShared
{
	slock_t		mutex;			/* protects the positions and term */
	KvLsn		insert_lsn;		/* end of the written log */
	KvLsn		flush_lsn;		/* durable up to here */
	KvLsn		seg_start;		/* first position of the current segment */
	uint64		seg_alloc;		/* bytes of it allocated (zero-filled) */
	uint64		term;
	int			nprocs;
	pg_atomic_uint64 inflight[FLEXIBLE_ARRAY_MEMBER];
} KvWalShared;

static KvWalShared *wal = NULL;
static LWLock *insert_lock = NULL;
static LWLock *flush_lock = NULL;

/* this backend's open segment */
static int	seg_fd = -1;
static KvLsn seg_fd_start = InvalidKvLsn;


/*
 * KvWalShmemSize
 *		Shared memory for the log's positions and in-flight table.
 */
Size
KvWalShmemSize(void)
{
	return add_size(offsetof(KvWalShared, inflight),
					mul_size(sizeof(pg_atomic_uint64), KvProcSlots()));
}

/*
 * KvWalShmemInit
 *		Create or attach; caller holds AddinShmemInitLock.  Positions stay
 *		invalid until recovery calls KvWalStartAt.
 */
void
KvWalShmemInit(LWLock *ilock, LWLock *flock)
{
	bool		found;

	wal = ShmemInitStruct("kvext wal", KvWalShmemSize(), &found);
	insert_lock = ilock;
	flush_lock = flock;
	seg_fd = -1;
	seg_fd_start = InvalidKvLsn;
	if (!found)
	{
		SpinLockInit(&wal->mutex);
		wal->insert_lsn = wal->flush_lsn = wal->seg_start = InvalidKvLsn;
		wal->seg_alloc = 0;
		wal->term = 1;
		wal->nprocs = KvProcSlots();
		for (int i = 0; i < wal->nprocs; i++)
			pg_atomic_init_u64(&wal->inflight[i], InvalidKvLsn);
	}
}

/*
 * KvWalSegmentPath
 *		Path (relative to the data directory) of the segment starting at
 *		start; path must have MAXPGPATH bytes.
 */
void
KvWalSegmentPath(char *path, KvLsn start)
{
	snprintf(path, MAXPGPATH, KVEXT_WAL_DIR "/%016llX",
			 (unsigned long long) start);
}

/* open (and cache) the segment starting at start, for writing */
static int
open_segment(KvLsn start, bool create)
{
	char		path[MAXPGPATH];

	if (seg_fd >= 0 && seg_fd_start == start)
		return seg_fd;
	if (seg_fd >= 0)
	{
		close(seg_fd);
		seg_fd = -1;
	}
	KvWalSegmentPath(path, start);
	seg_fd = BasicOpenFile(path, O_RDWR | PG_BINARY | (create ? O_CREAT : 0));
	if (seg_fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open kvext log file \"%s\": %m", path)));
	seg_fd_start = start;
	return seg_fd;
}

/* fsync the log directory, PANIC on failure */
static void
fsync_wal_dir(void)
{
	fsync_fname(KVEXT_WAL_DIR, true);
}

/*
 * KvWalWriteZeros
 *		Write zeros over [from, to) of fd.  Returns false with errno set
 *		(ENOSPC for a short write) on failure; the caller reports it.
 */
bool
KvWalWriteZeros(int fd, off_t from, off_t to)
{
	static const char zeros[64 * 1024];

	for (off_t off = from; off < to; off += sizeof(zeros))
	{
		size_t		n = Min(sizeof(zeros), (size_t) (to - off));

		errno = 0;
		if (pg_pwrite(fd, zeros, n, off) != (ssize_t) n)
		{
			if (errno == 0)
				errno = ENOSPC;
			return false;
		}
	}
	return true;
}

/*
 * zero_fill_segment
 *		Give a new segment its full size, written with zeros and synced, as
 *		PostgreSQL does with its WAL segments: later commits then overwrite
 *		allocated blocks, and their fdatasync writes data only, without a
 *		file-size change to journal.  Recovery reads an all-zero tail as the
 *		clean end of the log.  Raises an error (disk full) with nothing
 *		changed but a partial file, which the next attempt rewrites.
 */
static void
zero_fill_segment(int fd, const char *path)
{
	off_t		size = kvext_wal_segment_size;

	if (ftruncate(fd, 0) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not truncate kvext log file \"%s\": %m", path)));
	if (!KvWalWriteZeros(fd, 0, size))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create kvext log file \"%s\": %m", path)));
	if (pg_fdatasync(fd) != 0)
		ereport(PANIC,
				(errcode_for_file_access(),
				 errmsg("could not fdatasync kvext log file \"%s\": %m", path)));
	fsync_wal_dir();
}

/*
 * switch_segment
 *		Close the current segment (fsync it) and start a new one at the
 *		insert position.  Caller holds the insert lock.
 */
static void
switch_segment(void)
{
	int			fd = open_segment(wal->seg_start, false);
	KvLsn		newstart = wal->insert_lsn;
	char		path[MAXPGPATH];

	if (pg_fdatasync(fd) != 0)
		ereport(PANIC,
				(errcode_for_file_access(),
				 errmsg("could not fdatasync kvext log segment %016llX: %m",
						(unsigned long long) wal->seg_start)));
	SpinLockAcquire(&wal->mutex);
	if (wal->flush_lsn < newstart)
		wal->flush_lsn = newstart;
	SpinLockRelease(&wal->mutex);

	KvWalSegmentPath(path, newstart);
	fd = open_segment(newstart, true);
	PG_TRY();
	{
		zero_fill_segment(fd, path);
	}
	PG_CATCH();
	{
		/*
		 * Disk full: remove the partial file.  The log may go on in this
		 * segment (COMMIT and ABORT records never switch), and a later
		 * switch creates the next one under another name.
		 */
		close(seg_fd);
		seg_fd = -1;
		seg_fd_start = InvalidKvLsn;
		(void) unlink(path);
		PG_RE_THROW();
	}
	PG_END_TRY();

	SpinLockAcquire(&wal->mutex);
	wal->seg_start = newstart;
	wal->seg_alloc = kvext_wal_segment_size;
	SpinLockRelease(&wal->mutex);
}

/*
 * fail_insert
 *		A record could not be written (or the space for markers reserved):
 *		overwrite the written bytes of it with zeros, so nothing of it
 *		counts (recovery reads zeros as the end of the log), release the
 *		insert lock and raise the error.  Zeroing in place, not truncating,
 *		keeps the blocks that earlier transactions reserved for their COMMIT
 *		or ABORT records: on a full disk, truncating would free them, and
 *		those records are written in a critical section.  Caller holds the
 *		insert lock.
 */
static void
fail_insert(int fd, off_t offset, ssize_t written, int save_errno, const char *what)
{
	char		path[MAXPGPATH];

	if (written > 0 && !KvWalWriteZeros(fd, offset, offset + written))
		ereport(PANIC,
				(errcode_for_file_access(),
				 errmsg("could not clear a failed write in kvext log segment %016llX: %m",
						(unsigned long long) wal->seg_start)));
	LWLockRelease(insert_lock);
	KvWalSegmentPath(path, seg_fd_start);
	errno = save_errno;
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("could not %s kvext log file \"%s\" at offset %lld: %m",
					what, path, (long long) offset),
			 errdetail("The transaction was not committed.")));
}

/*
 * KvWalInsert
 *		Append a record.  rec holds len bytes: room for the header, then the
 *		payload (already filled in); len is a multiple of 8.  Fills in the
 *		header, writes the record and returns the position after it.  For
 *		TXN records, also publishes this backend's in-flight position (see
 *		file header); the caller clears it once the record is applied.
 *		Raises an error, with nothing written, if the write fails.
 */
KvLsn
KvWalInsert(char *rec, uint8 type, uint8 flags, TransactionId xid, KvLsn ref,
			uint32 len, KvLsn *startp)
{
	KvWalRecord *hdr = (KvWalRecord *) rec;
	pg_crc32c	crc;
	KvLsn		start;
	KvLsn		end;
	off_t		offset;
	int			fd;
	ssize_t		done = 0;

	Assert(len % 8 == 0 && len >= sizeof(KvWalRecord));
	if (unlikely(wal->insert_lsn == InvalidKvLsn))
		elog(ERROR, "kvext log is not open");

	hdr->len = len;
	hdr->ref = ref;
	hdr->xid = xid;
	hdr->type = type;
	hdr->flags = flags;
	hdr->version = KVEXT_WAL_VERSION;

	/* the payload's CRC, outside the lock */
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, rec + sizeof(KvWalRecord), len - sizeof(KvWalRecord));

	if (!IS_MARKER(type))
		KvFailpoint("wal-before-write");

	LWLockAcquire(insert_lock, LW_EXCLUSIVE);

	/* a marker goes into the space reserved for it (see below) */
	if (!IS_MARKER(type) &&
		wal->insert_lsn - wal->seg_start >= (KvLsn) kvext_wal_segment_size &&
		wal->insert_lsn > wal->seg_start)
		switch_segment();

	start = wal->insert_lsn;
	end = start + len;
	hdr->lsn = start;
	SpinLockAcquire(&wal->mutex);
	hdr->term = wal->term;
	SpinLockRelease(&wal->mutex);
	COMP_CRC32C(crc, rec + offsetof(KvWalRecord, len),
				sizeof(KvWalRecord) - offsetof(KvWalRecord, len));
	FIN_CRC32C(crc);
	hdr->crc = crc;

	fd = open_segment(wal->seg_start, false);
	offset = (off_t) (start - wal->seg_start);
	while (done < (ssize_t) len)
	{
		ssize_t		n;

		if (!IS_MARKER(type) && KvFailpointEnospc("wal-enospc"))
		{
			n = -1;
			errno = ENOSPC;
		}
		else
		{
			pgstat_report_wait_start(WAIT_EVENT_WAL_WRITE);
			n = pg_pwrite(fd, rec + done, len - done, offset + done);
			pgstat_report_wait_end();
		}
		if (n <= 0)
			fail_insert(fd, offset, done, (n == 0) ? ENOSPC : errno, "write to");
		done += n;
	}

	/*
	 * This transaction's COMMIT or ABORT record, and those of every other
	 * transaction in flight, are written in a critical section and must
	 * find their blocks even on a full disk: make sure they exist.  Inside
	 * the zero-filled part of the segment they do; past it, reserve them
	 * now (fallocate dirties the inode, which would make every commit's
	 * fdatasync journal it, so only there).  No reservation, no commit.
	 */
	if (type == KV_REC_TXN &&
		(KvFailpointEnospc("wal-enospc-reserve") ||
		 ((uint64) offset + len + MARKER_RESERVE > wal->seg_alloc &&
		  fallocate(fd, FALLOC_FL_KEEP_SIZE, offset + len, MARKER_RESERVE) != 0)))
	{
		int			save_errno = KvFailpointEnospc("wal-enospc-reserve") ? ENOSPC : errno;

		if (save_errno != EOPNOTSUPP)
			fail_insert(fd, offset, len, save_errno, "reserve space in");
	}

	if (type == KV_REC_TXN)
		pg_atomic_write_u64(&wal->inflight[MyProc->pgprocno], start);

	SpinLockAcquire(&wal->mutex);
	wal->insert_lsn = end;
	SpinLockRelease(&wal->mutex);

	LWLockRelease(insert_lock);

	if (startp)
		*startp = start;
	return end;
}

/*
 * KvWalInsertMarker
 *		Append a COMMIT or ABORT record deciding the TXN record at txn;
 *		returns the position after it.  Callers are in a critical section:
 *		the space was reserved when the TXN record was written.
 */
KvLsn
KvWalInsertMarker(uint8 type, uint8 flags, KvLsn txn)
{
	char		rec[sizeof(KvWalRecord)];

	Assert(IS_MARKER(type));
	memset(rec, 0, sizeof(rec));
	return KvWalInsert(rec, type, flags, InvalidTransactionId, txn,
					   sizeof(rec), NULL);
}

/*
 * KvWalClearInflight
 *		This backend's logged transaction has been applied (or abandoned).
 */
void
KvWalClearInflight(void)
{
	if (wal && MyProc)
		pg_atomic_write_u64(&wal->inflight[MyProc->pgprocno], InvalidKvLsn);
}

/*
 * KvWalFlush
 *		Make the log durable up to upto, sharing the fsync with concurrent
 *		callers (group commit).  PANICs if fdatasync fails.
 */
void
KvWalFlush(KvLsn upto)
{
	for (;;)
	{
		KvLsn		flushed;
		KvLsn		target;
		KvLsn		segstart;

		SpinLockAcquire(&wal->mutex);
		flushed = wal->flush_lsn;
		SpinLockRelease(&wal->mutex);
		if (flushed >= upto)
			return;

		/* someone else flushing?  wait for them, then look again */
		if (!LWLockAcquireOrWait(flush_lock, LW_EXCLUSIVE))
			continue;

		SpinLockAcquire(&wal->mutex);
		flushed = wal->flush_lsn;
		target = wal->insert_lsn;
		segstart = wal->seg_start;
		SpinLockRelease(&wal->mutex);

		if (flushed < upto)
		{
			int			fd = open_segment(segstart, false);
			int			rc;

			pgstat_report_wait_start(WAIT_EVENT_WAL_SYNC);
			rc = pg_fdatasync(fd);
			pgstat_report_wait_end();
			if (rc != 0)
				ereport(PANIC,
						(errcode_for_file_access(),
						 errmsg("could not fdatasync kvext log segment %016llX: %m",
								(unsigned long long) segstart)));
			SpinLockAcquire(&wal->mutex);
			if (wal->flush_lsn < target)
				wal->flush_lsn = target;
			SpinLockRelease(&wal->mutex);
		}
		LWLockRelease(flush_lock);
	}
}

/*
 * KvWalFlushAll
 *		Flush everything written so far.
 */
void
KvWalFlushAll(void)
{
	KvWalFlush(KvWalInsertPos());
}

/*
 * KvWalInsertPos / KvWalFlushPos
 *		Current end of the written / durable log.
 */
KvLsn
KvWalInsertPos(void)
{
	KvLsn		lsn;

	SpinLockAcquire(&wal->mutex);
	lsn = wal->insert_lsn;
	SpinLockRelease(&wal->mutex);
	return lsn;
}

KvLsn
KvWalFlushPos(void)
{
	KvLsn		lsn;

	SpinLockAcquire(&wal->mutex);
	lsn = wal->flush_lsn;
	SpinLockRelease(&wal->mutex);
	return lsn;
}

/*
 * KvWalVisiblePos
 *		The "visible up to" position: a commit whose COMMIT record ends at
 *		or before it may be seen by every session.  In a group of one it is
 *		the local flush position; replication makes it the majority's.
 */
KvLsn
KvWalVisiblePos(void)
{
	return KvWalFlushPos();
}

uint64
KvWalCurrentTerm(void)
{
	uint64		term;

	SpinLockAcquire(&wal->mutex);
	term = wal->term;
	SpinLockRelease(&wal->mutex);
	return term;
}

/*
 * KvWalRedoPoint
 *		Where replay must start for a snapshot whose scan begins now: the
 *		oldest logged-but-unapplied record, or the insert position.
 */
KvLsn
KvWalRedoPoint(void)
{
	KvLsn		redo;

	LWLockAcquire(insert_lock, LW_EXCLUSIVE);
	redo = wal->insert_lsn;
	for (int i = 0; i < wal->nprocs; i++)
	{
		KvLsn		v = pg_atomic_read_u64(&wal->inflight[i]);

		if (v != InvalidKvLsn && v < redo)
			redo = v;
	}
	LWLockRelease(insert_lock);
	return redo;
}

static int
cmp_lsn(const void *a, const void *b)
{
	KvLsn		x = *(const KvLsn *) a;
	KvLsn		y = *(const KvLsn *) b;

	return (x > y) - (x < y);
}

/*
 * KvWalListSegments
 *		Start positions of all segment files, ascending, in a palloc'd
 *		array; returns how many.  Other files in the directory are ignored.
 */
int
KvWalListSegments(KvLsn **starts)
{
	DIR		   *dir;
	struct dirent *de;
	int			n = 0;
	int			cap = 16;
	KvLsn	   *arr = palloc(sizeof(KvLsn) * cap);

	dir = AllocateDir(KVEXT_WAL_DIR);
	while ((de = ReadDir(dir, KVEXT_WAL_DIR)) != NULL)
	{
		char	   *end;
		unsigned long long v;

		if (strlen(de->d_name) != 16 ||
			strspn(de->d_name, "0123456789ABCDEF") != 16)
			continue;
		v = strtoull(de->d_name, &end, 16);
		if (n == cap)
		{
			cap *= 2;
			arr = repalloc(arr, sizeof(KvLsn) * cap);
		}
		arr[n++] = (KvLsn) v;
	}
	FreeDir(dir);
	qsort(arr, n, sizeof(KvLsn), cmp_lsn);
	*starts = arr;
	return n;
}

/*
 * KvWalStartAt
 *		Called once by recovery: the log continues in the segment starting
 *		at seg_start, at insert_lsn, which is durable.  With no segment
 *		(seg_start invalid), creates the first one.
 */
void
KvWalStartAt(KvLsn seg_start, KvLsn insert_lsn, uint64 term)
{
	struct stat st;

	if (seg_start == InvalidKvLsn)
	{
		char		path[MAXPGPATH];

		seg_start = insert_lsn = KVEXT_WAL_START_LSN;
		KvWalSegmentPath(path, seg_start);
		zero_fill_segment(open_segment(seg_start, true), path);
	}
	if (fstat(open_segment(seg_start, false), &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat kvext log segment %016llX: %m",
						(unsigned long long) seg_start)));
	LWLockAcquire(insert_lock, LW_EXCLUSIVE);
	SpinLockAcquire(&wal->mutex);
	wal->seg_start = seg_start;
	wal->seg_alloc = (uint64) st.st_size;
	wal->insert_lsn = insert_lsn;
	wal->flush_lsn = insert_lsn;
	wal->term = Max(term, 1);
	SpinLockRelease(&wal->mutex);
	LWLockRelease(insert_lock);
}

/*
 * KvWalTruncate
 *		Cut the log at position at, which must be a record boundary: zero
 *		the rest of the segment holding it (keeping the file's size, so its
 *		preallocated blocks stay), remove every later segment, and make both
 *		durable.  Recovery uses it to clear a torn tail; a follower will use
 *		it to drop a divergent tail.  If the log is open, the caller must
 *		make sure nothing is being inserted and that no committed record is
 *		cut; the positions move back to at.
 */
void
KvWalTruncate(KvLsn at)
{
	KvLsn	   *starts;
	int			n = KvWalListSegments(&starts);
	int			seg = -1;
	char		path[MAXPGPATH];
	int			fd;
	struct stat st;

	for (int i = 0; i < n; i++)
		if (starts[i] <= at)
			seg = i;
	if (seg < 0)
		elog(ERROR, "kvext log has no segment holding %X/%X", LSN_FORMAT_ARGS(at));

	/* later segments first: a crash part-way leaves a log that still ends */
	for (int i = n - 1; i > seg; i--)
	{
		KvWalSegmentPath(path, starts[i]);
		if (unlink(path) != 0 && errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not remove kvext log file \"%s\": %m", path)));
	}
	if (seg + 1 < n)
		fsync_wal_dir();

	KvWalSegmentPath(path, starts[seg]);
	fd = OpenTransientFile(path, O_RDWR | PG_BINARY);
	if (fd < 0 || fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open kvext log file \"%s\": %m", path)));
	if (!KvWalWriteZeros(fd, (off_t) (at - starts[seg]), Max(st.st_size, (off_t) (at - starts[seg]))))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not clear kvext log file \"%s\" after %X/%X: %m",
						path, LSN_FORMAT_ARGS(at))));
	if (pg_fsync(fd) != 0)
		ereport(data_sync_elevel(ERROR),
				(errcode_for_file_access(),
				 errmsg("could not fsync kvext log file \"%s\": %m", path)));
	CloseTransientFile(fd);

	if (wal->insert_lsn != InvalidKvLsn)
	{
		LWLockAcquire(insert_lock, LW_EXCLUSIVE);
		SpinLockAcquire(&wal->mutex);
		wal->seg_start = starts[seg];
		wal->insert_lsn = Min(wal->insert_lsn, at);
		wal->flush_lsn = Min(wal->flush_lsn, at);
		SpinLockRelease(&wal->mutex);
		LWLockRelease(insert_lock);
	}
	pfree(starts);
}

/*
 * KvWalRemoveBefore
 *		Remove the segments that end at or before redo; returns how many.
 *		The current segment is never removed.
 */
int
KvWalRemoveBefore(KvLsn redo)
{
	KvLsn	   *starts;
	int			n = KvWalListSegments(&starts);
	int			removed = 0;

	for (int i = 0; i + 1 < n; i++)
	{
		char		path[MAXPGPATH];

		if (starts[i + 1] > redo)
			break;
		KvWalSegmentPath(path, starts[i]);
		if (unlink(path) != 0 && errno != ENOENT)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not remove kvext log file \"%s\": %m", path)));
		removed++;
		if (removed == 1 && i + 2 < n)
			KvFailpoint("segment-removal-mid");
	}
	if (removed > 0)
		fsync_wal_dir();
	pfree(starts);
	return removed;
}

/*
 * KvWalStatus
 *		Positions for kv_wal_status(): insert, flush, applied (everything
 *		before the oldest in-flight record) and the segment count.
 */
void
KvWalStatus(KvLsn *insert, KvLsn *flush, KvLsn *apply, int *segments)
{
	KvLsn	   *starts;

	*insert = KvWalInsertPos();
	*flush = KvWalFlushPos();
	*apply = KvWalRedoPoint();
	*segments = KvWalListSegments(&starts);
	pfree(starts);
}
