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
 * position and finishes the record's CRC (the payload was summed before
 * the lock; the header, which holds the position, is summed last).
 * Insertion order is therefore log order.  Where the record goes then is
 * "Log buffers" below.  A follower's append (KvWalAppendRaw) writes under
 * the insert lock; if that write fails (ENOSPC, EIO) the bytes written of
 * it are overwritten with zeros and the error is raised: nothing partial
 * counts as written, and a later write may succeed.
 *
 * Log buffers.  A record is not written where it is inserted: under the
 * insert lock it gets its position and is copied into a shared ring of
 * kvext.wal_buffers bytes (the ring holds the log from write_lsn to
 * insert_lsn, a byte at position p at p modulo the ring's size), as
 * PostgreSQL's WAL insertion copies into its WAL buffers.  The ring
 * reaches the file in one pwritev(), under the write lock and not the
 * insert lock, when the log is flushed (KvWalFlush, also the wal writer's
 * flush of "off" commits), when an insert finds the ring full, and before
 * a segment switch, a cut, a follower's append or a log reader opens.  So
 * a kv transaction with kvext.synchronous_commit = off makes no system
 * call, and no lock is held across a write but the write lock.  A record
 * larger than a quarter of the ring is written at once, after the ring,
 * under the write lock: the insert lock gives out its position, reserves
 * its blocks and takes the write lock, then is released before the record
 * is written (write_direct), so that other inserts go on into the ring
 * while flushes wait for it.  The buffered bytes always lie in the
 * current segment, in blocks that exist (below), and nothing reads the
 * file beyond the flush position without writing the ring first.  A record
 * lost with the ring (a crash of PostgreSQL before any of those) belongs
 * to a commit that was not yet durable: kvext.synchronous_commit = off, or
 * a commit that had not returned.  A failure to write the ring is a PANIC,
 * as an fsync failure is: it holds records that decide commits already
 * visible.
 *
 * Reserved blocks.  So that a write of the ring can meet no full disk, a
 * record's blocks must exist when it is inserted: inside the zero-filled
 * part of the segment they do; past it, fallocate(FALLOC_FL_KEEP_SIZE)
 * reserves them at the insert, which fails with a disk-full error and
 * nothing inserted.  A TXN record also reserves, after itself, the blocks
 * for the COMMIT or ABORT records ("markers") that in-flight transactions
 * still need: a marker is inserted in a critical section (after
 * PostgreSQL's commit, an error is no longer possible).  Markers never
 * start a new segment.
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
 * Prepared segments.  Zero-filling a segment takes a 16MB write and an
 * fsync; done at the switch, under the insert lock, it stalled every
 * commit.  So the "kvext wal writer" prepares the next segment ahead of
 * time, outside any lock (KvWalPrepareNext: next.tmp, zero-filled,
 * fsynced, renamed to next, directory fsynced, then next_ready), and a
 * switch renames it into place and fsyncs the directory.  A switch that finds none ready
 * creates the segment itself and counts that (switches_inline).
 *
 * Status.  kv_wal_status() may be called by every role, as often as it
 * likes: it reads the positions through the mutex and the in-flight marks
 * (KvWalApplyPos) and never takes the insert lock.
 *
 * kvext.synchronous_commit = off commits do not flush; the "kvext wal
 * writer" worker flushes every kvext.wal_writer_delay.
 *
 * In-flight records.  A transaction's TXN record is written at pre-commit
 * and applied to memory at commit; in between, a snapshot could miss it
 * while starting replay after it.  So each backend publishes the position
 * of its logged-but-unapplied record (inflight[owner slot], set under the
 * insert lock), and the snapshot's redo point is the oldest of those, or
 * the insert position.
 *
 * A follower (replication/receiver.c) does not insert: it appends its
 * leader's records byte for byte (KvWalAppendRaw, under the insert lock,
 * switching segments the same way), may cut a divergent tail
 * (KvWalTruncate on the live log), and keeps an apply floor that bounds
 * the redo point like the in-flight marks (log/apply.c).  The last
 * record's (start, end, term) is kept here, so that the check of an
 * append's previous record rarely reads the log.  TXN records are refused
 * under the insert lock while this node follows (25006).
 *
 * Locks, always in this order: flush lock, insert lock, write lock, then
 * the mutex.  KvWalFlush takes the flush lock, then the write lock to write
 * the ring (never the insert lock); an insert takes the write lock only
 * when it must write (a full ring, a segment switch, a large record,
 * whose write keeps it after the insert lock is released);
 * KvWalTruncate and KvWalResetTo on a live log take all three (then the
 * control lock).  The write lock alone makes the ring's bytes from
 * write_lsn to insert_lsn stable: inserts copy only past insert_lsn, and
 * only into the part of the ring that write_lsn has freed; seg_start
 * changes only under the write lock.  The mutex (a spinlock) protects the
 * positions,
 * the term and the prepared-segment state; nothing that can fail or sleep
 * runs under it.  The keyspace lock may be held when inserting
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
#include "pgstat.h"
#include "port/atomics.h"
#include "port/pg_iovec.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/wait_event.h"

#include "failpoint.h"
#include "kvext.h"
#include "log/control.h"
#include "log/visible.h"
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
	bool		next_ready;		/* KVEXT_WAL_NEXT is a prepared segment */
	uint64		dir_renamed;	/* segment switches that renamed a file in */
	uint64		dir_synced;		/* of those, made durable by a directory
								 * fsync (KvWalFlush) */
	uint64		next_size;		/* its size */
	uint64		switches;		/* segment switches since startup */
	uint64		switches_inline;	/* of those, with no prepared segment */
	int			writer_procno;	/* the wal writer's pgprocno, or -1 */
	/* the last record of the log, for a follower's check of prev_end */
	KvLsn		last_start;		/* its position, or 0 if not known */
	uint64		last_term;		/* its term */
	/* a follower: records from here on may still have to be applied */
	KvLsn		apply_floor;	/* 0 if none (log/apply.c) */
	pg_atomic_uint64 seg_gen;	/* bumped when KvWalTruncate removes
								 * segments: cached descriptors go stale */
	/* log senders: where their connected peer still reads (0: nothing) */
	pg_atomic_uint64 holds[KVEXT_VISIBLE_MAX_SENDERS];
	/* records inserted but not yet written, from here to insert_lsn */
	KvLsn		write_lsn;
	/*
	 * A large record being written outside the insert lock (write_direct),
	 * by the holder of the write lock: the files end before it (the ring,
	 * empty then, starts at write_lsn, after it).  InvalidKvLsn if none.
	 */
	KvLsn		direct_start;
	Size		ring_size;		/* bytes of the ring (kvext.wal_buffers) */
	bool		ring_wake;		/* an insert set the wal writer's latch for
								 * a ring half full, and the writer has not
								 * woken since (it clears this when it does) */
	/*
	 * Bumped each time this node starts to lead (KvWalSetTerm): a COMMIT
	 * or ABORT record is refused for a TXN record logged in an earlier
	 * leadership (see KvWalInsert)
	 */
	uint64		lead_epoch;
	/* activity since startup (kv_wal_stats()) */
	uint64		records;		/* records inserted */
	uint64		bytes;			/* their bytes */
	uint64		buffers_full;	/* inserts that found the ring full */
	uint64		writes;			/* write calls of the log (ring, records) */
	uint64		syncs;			/* fdatasyncs of log segments */
	int			nprocs;
	pg_atomic_uint64 inflight[FLEXIBLE_ARRAY_MEMBER];
	/* then the ring, ring_size bytes */
} KvWalShared;

/* the ring's size, fixed at server start */
#define RING_SIZE		((Size) MAXALIGN(kvext_wal_buffers))
/* larger records are written at once, not copied into the ring */
#define RING_MAX_RECORD	(wal->ring_size / 4)

static KvWalShared *wal = NULL;
static char *ring = NULL;
static LWLock *insert_lock = NULL;
static LWLock *write_lock = NULL;
static LWLock *flush_lock = NULL;

/* the leadership (lead_epoch) in which this backend logged its last TXN */
static uint64 my_txn_epoch = 0;

/* this backend's open segment */
static int	seg_fd = -1;
static KvLsn seg_fd_start = InvalidKvLsn;
static uint64 seg_fd_gen = 0;

static KvLsn floor_or(KvLsn pos);


/*
 * KvWalShmemSize
 *		Shared memory for the log's positions, in-flight table and ring.
 */
Size
KvWalShmemSize(void)
{
	return add_size(add_size(MAXALIGN(offsetof(KvWalShared, inflight) +
									  sizeof(pg_atomic_uint64) * KvOwnerSlotCount()),
							 RING_SIZE),
					PG_CACHE_LINE_SIZE);
}

/*
 * KvWalShmemInit
 *		Create or attach; caller holds AddinShmemInitLock.  Positions stay
 *		invalid until recovery calls KvWalStartAt.
 */
void
KvWalShmemInit(LWLock *ilock, LWLock *wlock, LWLock *flock)
{
	bool		found;

	wal = ShmemInitStruct("kvext wal", KvWalShmemSize(), &found);
	ring = (char *) CACHELINEALIGN((char *) wal +
								   offsetof(KvWalShared, inflight) +
								   sizeof(pg_atomic_uint64) * KvOwnerSlotCount());
	insert_lock = ilock;
	write_lock = wlock;
	flush_lock = flock;
	seg_fd = -1;
	seg_fd_start = InvalidKvLsn;
	if (!found)
	{
		SpinLockInit(&wal->mutex);
		wal->insert_lsn = wal->flush_lsn = wal->seg_start = InvalidKvLsn;
		wal->seg_alloc = 0;
		wal->term = 1;
		wal->next_ready = false;
		wal->next_size = 0;
		wal->switches = wal->switches_inline = 0;
		wal->dir_renamed = wal->dir_synced = 0;
		wal->writer_procno = -1;
		wal->last_start = InvalidKvLsn;
		wal->last_term = 0;
		wal->apply_floor = InvalidKvLsn;
		pg_atomic_init_u64(&wal->seg_gen, 0);
		for (int i = 0; i < KVEXT_VISIBLE_MAX_SENDERS; i++)
			pg_atomic_init_u64(&wal->holds[i], InvalidKvLsn);
		wal->write_lsn = InvalidKvLsn;
		wal->direct_start = InvalidKvLsn;
		wal->ring_size = RING_SIZE;
		wal->ring_wake = false;
		wal->lead_epoch = 0;
		wal->records = wal->bytes = wal->buffers_full = 0;
		wal->writes = wal->syncs = 0;
		wal->nprocs = KvOwnerSlotCount();
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

/*
 * open_segment
 *		Open (and cache) the segment starting at start, for writing.  The
 *		cache is dropped when KvWalTruncate has removed segments since it
 *		was opened: a follower may create a new file under the name of one
 *		it removed, and an fsync of the old descriptor would sync nothing.
 */
static int
open_segment(KvLsn start, bool create)
{
	char		path[MAXPGPATH];
	uint64		gen = pg_atomic_read_u64(&wal->seg_gen);

	if (seg_fd >= 0 && seg_fd_start == start && seg_fd_gen == gen)
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
	seg_fd_gen = gen;
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
 * create_segment_inline
 *		No prepared segment: create and zero-fill the segment at newstart
 *		here, under the insert lock (what every switch did before segments
 *		were prepared ahead).  On disk full, removes the partial file and
 *		raises the error.  Caller holds the insert lock.
 */
static void
create_segment_inline(KvLsn newstart, const char *path)
{
	int			fd = open_segment(newstart, true);

	PG_TRY();
	{
		zero_fill_segment(fd, path);
	}
	PG_CATCH();
	{
		/*
		 * Disk full: remove the partial file.  The log may go on in this
		 * segment (COMMIT and ABORT records never switch), and a later
		 * switch creates the next one under another name.  (Only file
		 * cleanup here: the insert lock is released by error recovery.)
		 */
		close(seg_fd);
		seg_fd = -1;
		seg_fd_start = InvalidKvLsn;
		(void) unlink(path);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * ring_copy
 *		Copy len bytes of the record at position start into the ring.
 *		Caller holds the insert lock and has made room (see file header).
 */
static void
ring_copy(KvLsn start, const char *rec, Size len)
{
	Size		at = (Size) (start % wal->ring_size);
	Size		first = Min(len, wal->ring_size - at);

	memcpy(ring + at, rec, first);
	if (first < len)
		memcpy(ring, rec + first, len - first);
}

/*
 * write_failed
 *		A write of the log that cannot be undone failed (n is what the
 *		write returned: 0 for a short write, which a full disk gives):
 *		PANIC, as for a failed fsync.
 */
static pg_attribute_noreturn() void
write_failed(ssize_t n, KvLsn segstart, off_t offset)
{
	if (n == 0)
		errno = ENOSPC;
	ereport(PANIC,
			(errcode_for_file_access(),
			 errmsg("could not write to kvext log segment %016llX at offset %lld: %m",
					(unsigned long long) segstart, (long long) offset)));
	pg_unreachable();
}

/*
 * write_ring
 *		Write the ring's records (from write_lsn to insert_lsn) to the
 *		current segment, in one pwritev() unless the ring wraps in between.
 *		Caller holds the write lock, and need not hold the insert lock.
 *		PANICs if the write fails: the records may decide commits that are
 *		already visible, and their blocks exist (see file header), so only
 *		an I/O error can get here.
 */
static void
write_ring(void)
{
	KvLsn		from;
	KvLsn		to;
	KvLsn		segstart;
	int			fd;
	Size		done = 0;

	Assert(LWLockHeldByMeInMode(write_lock, LW_EXCLUSIVE));
	SpinLockAcquire(&wal->mutex);
	from = wal->write_lsn;
	to = wal->insert_lsn;
	segstart = wal->seg_start;
	SpinLockRelease(&wal->mutex);
	if (from == to)
		return;
	Assert(from >= segstart && to - from <= wal->ring_size);

	fd = open_segment(segstart, false);
	while (done < to - from)
	{
		struct iovec iov[2];
		int			cnt = 0;
		Size		at = (Size) ((from + done) % wal->ring_size);
		Size		left = (Size) (to - from) - done;
		ssize_t		n;

		iov[cnt].iov_base = ring + at;
		iov[cnt].iov_len = Min(left, wal->ring_size - at);
		left -= iov[cnt++].iov_len;
		if (left > 0)
		{
			iov[cnt].iov_base = ring;
			iov[cnt++].iov_len = left;
		}
		pgstat_report_wait_start(WAIT_EVENT_WAL_WRITE);
		n = pg_pwritev(fd, iov, cnt, (off_t) (from - segstart + done));
		pgstat_report_wait_end();
		if (n <= 0)
			write_failed(n, segstart, (off_t) (from - segstart + done));
		done += n;
	}
	SpinLockAcquire(&wal->mutex);
	wal->write_lsn = to;
	wal->writes++;
	SpinLockRelease(&wal->mutex);
}

/* write_ring, taking the write lock */
static void
write_ring_locked(void)
{
	LWLockAcquire(write_lock, LW_EXCLUSIVE);
	write_ring();
	LWLockRelease(write_lock);
}

/*
 * switch_segment
 *		Close the current segment (fdatasync it) and start a new one at the
 *		insert position.  Normally the wal writer has prepared it already
 *		(KvWalPrepareNext): the switch renames that file into place and
 *		fsyncs the directory.  Otherwise it is created here, zero-filled
 *		and synced, and the switch is counted as inline; so it is when the
 *		prepared file has another size than kvext.wal_segment_size now asks
 *		(the setting changed), which is then removed.  Either way the wal
 *		writer is woken to prepare the one after.  Caller holds the insert
 *		and write locks and has written the ring.
 */
static void
switch_segment(void)
{
	int			fd = open_segment(wal->seg_start, false);
	KvLsn		newstart = wal->insert_lsn;
	char		path[MAXPGPATH];
	bool		ready;
	uint64		next_size;
	bool		renamed = false;
	bool		flushed;
	int			writer;
	struct stat st;

	Assert(LWLockHeldByMe(insert_lock) && LWLockHeldByMe(write_lock) &&
		   wal->write_lsn == wal->insert_lsn);
	/* usually flushed already: the inserter flushed it before the lock */
	SpinLockAcquire(&wal->mutex);
	flushed = wal->flush_lsn >= newstart;
	SpinLockRelease(&wal->mutex);
	if (!flushed && pg_fdatasync(fd) != 0)
		ereport(PANIC,
				(errcode_for_file_access(),
				 errmsg("could not fdatasync kvext log segment %016llX: %m",
						(unsigned long long) wal->seg_start)));
	SpinLockAcquire(&wal->mutex);
	if (!flushed)
		wal->syncs++;
	if (wal->flush_lsn < newstart)
		wal->flush_lsn = newstart;
	ready = wal->next_ready;
	next_size = wal->next_size;
	writer = wal->writer_procno;
	SpinLockRelease(&wal->mutex);

	KvWalSegmentPath(path, newstart);
	if (ready)
	{
		/*
		 * The file is ours while next_ready is set: the writer creates a
		 * new one only after we clear it, so clear it only once the name
		 * is free.  One prepared before kvext.wal_segment_size changed is
		 * dropped; the writer prepares another at the new size.
		 */
		if (next_size != (uint64) kvext_wal_segment_size)
			(void) unlink(KVEXT_WAL_NEXT);
		/* zero-filled and fsynced before it got the name "next" */
		else if (rename(KVEXT_WAL_NEXT, path) == 0)
			renamed = true;
		else
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not rename prepared kvext log file \"%s\" to \"%s\": %m",
							KVEXT_WAL_NEXT, path)));
		SpinLockAcquire(&wal->mutex);
		wal->next_ready = false;
		SpinLockRelease(&wal->mutex);
	}
	if (renamed)
	{
		/*
		 * The new name is made durable by the next flush (KvWalFlush),
		 * before it counts anything in this segment as durable, not here
		 * under the insert lock.
		 */
		SpinLockAcquire(&wal->mutex);
		wal->dir_renamed++;
		SpinLockRelease(&wal->mutex);
		fd = open_segment(newstart, false);
	}
	else
	{
		create_segment_inline(newstart, path);
		fd = seg_fd;
	}
	/* the new segment has its name; the log has not moved into it */
	KvFailpoint("wal-switch-mid");
	if (writer >= 0)
		SetLatch(&ProcGlobal->allProcs[writer].procLatch);
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat kvext log file \"%s\": %m", path)));

	SpinLockAcquire(&wal->mutex);
	wal->seg_start = newstart;
	wal->seg_alloc = (uint64) st.st_size;
	wal->switches++;
	if (!renamed)
		wal->switches_inline++;
	SpinLockRelease(&wal->mutex);
}

/*
 * file_is_zeros
 *		Is every byte of the file at path zero?  False if it cannot be read.
 */
static bool
file_is_zeros(const char *path)
{
	const Size	bufsize = 64 * 1024;
	char	   *buf = palloc(bufsize);
	int			fd = BasicOpenFile(path, O_RDONLY | PG_BINARY);
	ssize_t		n;
	bool		zeros = (fd >= 0);

	while (zeros && (n = read(fd, buf, bufsize)) != 0)
	{
		if (n < 0)
		{
			zeros = false;
			break;
		}
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != 0)
			{
				zeros = false;
				break;
			}
	}
	if (fd >= 0)
		close(fd);
	pfree(buf);
	return zeros;
}

/*
 * KvWalPrepareNext
 *		Wal writer: make sure a prepared segment is waiting for the next
 *		switch.  It is written as KVEXT_WAL_NEXT_TMP at
 *		kvext.wal_segment_size, zero-filled, fsynced, and renamed to
 *		KVEXT_WAL_NEXT (then the directory is fsynced, as durable_rename()
 *		does), then published (next_ready);
 *		no lock is held meanwhile, so commits go on.  A switch takes the
 *		file under the insert lock and then clears next_ready; only this
 *		function creates it, and only while next_ready is false, so the two
 *		never race on the name.  A prepared file left by an earlier run (a
 *		crash or restart) is reused by the worker's first call if it is
 *		still all zeros: it got its name only once it was durable, but a
 *		switch's rename of it into a segment is made durable only by the
 *		next flush (KvWalFlush), so after a crash of the machine the file
 *		may be back under its old name with records in it, none of them
 *		flushed.  Such a file is removed.  Segment file listings ignore
 *		both names, so recovery never sees them.
 *
 *		Never raises an error for a full disk or a failed write: that is
 *		reported as a WARNING (once, until a preparation succeeds), the
 *		partial file is removed, and the next switch creates its segment
 *		inline; commits that need no new segment are not affected.  An
 *		fsync failure PANICs, as everywhere in the log.
 */
void
KvWalPrepareNext(void)
{
	static bool warned = false;
	static bool leftover_checked = false;
	off_t		size = kvext_wal_segment_size;
	struct stat st;
	int			fd;
	bool		ok;
	int			save_errno;

	SpinLockAcquire(&wal->mutex);
	ok = wal->next_ready;
	SpinLockRelease(&wal->mutex);
	if (ok)
		return;

	if (!leftover_checked)
	{
		leftover_checked = true;
		if (stat(KVEXT_WAL_NEXT, &st) == 0 && st.st_size > 0)
		{
			if (file_is_zeros(KVEXT_WAL_NEXT))
			{
				size = st.st_size;
				goto publish;
			}
			/* see the function header: records whose new name was lost */
			ereport(LOG,
					(errmsg("removing prepared kvext log file \"%s\": it is not all zeros",
							KVEXT_WAL_NEXT),
					 errdetail("A segment switch renamed it and was lost in a crash before the directory was synced; none of its records had been flushed.")));
			(void) unlink(KVEXT_WAL_NEXT);
		}
	}

	fd = BasicOpenFile(KVEXT_WAL_NEXT_TMP, O_RDWR | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ok = false;
	else if (KvFailpointSet("wal-prepare-enospc"))
	{
		ok = false;
		errno = ENOSPC;
	}
	else
		ok = KvWalWriteZeros(fd, 0, size);
	if (!ok)
	{
		save_errno = errno;
		if (fd >= 0)
			close(fd);
		(void) unlink(KVEXT_WAL_NEXT_TMP);
		errno = save_errno;
		ereport(warned ? DEBUG1 : WARNING,
				(errcode_for_file_access(),
				 errmsg("could not prepare the next kvext log segment \"%s\": %m",
						KVEXT_WAL_NEXT_TMP),
				 errdetail("The next segment switch will create its file while commits wait.")));
		warned = true;
		return;
	}
	if (pg_fsync(fd) != 0)
		ereport(PANIC,
				(errcode_for_file_access(),
				 errmsg("could not fsync kvext log file \"%s\": %m", KVEXT_WAL_NEXT_TMP)));
	close(fd);
	/* durable_rename's steps, with a failed directory fsync a PANIC */
	if (rename(KVEXT_WAL_NEXT_TMP, KVEXT_WAL_NEXT) != 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not rename file \"%s\" to \"%s\": %m",
						KVEXT_WAL_NEXT_TMP, KVEXT_WAL_NEXT)));
		(void) unlink(KVEXT_WAL_NEXT_TMP);
		return;
	}
	fsync_wal_dir();

publish:
	warned = false;
	SpinLockAcquire(&wal->mutex);
	wal->next_ready = true;
	wal->next_size = size;
	SpinLockRelease(&wal->mutex);
}

/* on_shmem_exit callback of the wal writer: it is gone */
static void
wal_writer_detach(int code, Datum arg)
{
	SpinLockAcquire(&wal->mutex);
	wal->writer_procno = -1;
	SpinLockRelease(&wal->mutex);
	KvVisibleSetWriter(-1);
}

/*
 * KvWalWriterAttach
 *		The wal writer announces itself, so that a segment switch can wake
 *		it to prepare the next segment, and an insert to write the ring.
 *		A wake that came before (when no writer was known) is not lost: the
 *		writer's first round runs at once.
 */
void
KvWalWriterAttach(void)
{
	SpinLockAcquire(&wal->mutex);
	wal->writer_procno = MyProc->pgprocno;
	SpinLockRelease(&wal->mutex);
	KvVisibleSetWriter(MyProc->pgprocno);
	on_shmem_exit(wal_writer_detach, (Datum) 0);
	SetLatch(MyLatch);
}

/*
 * KvWalWriterWoken
 *		The wal writer woke up: an insert that fills the ring past half may
 *		wake it again.  Its flush, which follows, writes what the inserts
 *		that woke it had copied (they wake it after their copy).
 */
void
KvWalWriterWoken(void)
{
	SpinLockAcquire(&wal->mutex);
	wal->ring_wake = false;
	SpinLockRelease(&wal->mutex);
}

/*
 * KvWalGetStats
 *		The log's activity since startup, for kv_wal_stats().
 */
void
KvWalGetStats(KvWalStats *st)
{
	SpinLockAcquire(&wal->mutex);
	st->records = wal->records;
	st->bytes = wal->bytes;
	st->buffers_full = wal->buffers_full;
	st->writes = wal->writes;
	st->syncs = wal->syncs;
	st->switches = wal->switches;
	st->switches_inline = wal->switches_inline;
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
	if (LWLockHeldByMe(write_lock))
		LWLockRelease(write_lock);
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
 * write_at
 *		Write len bytes of buf at offset of fd, the current segment, as one
 *		or more pwrite() calls.  On failure, zeroes what was written and
 *		raises the error (fail_insert).  Caller holds the insert and write
 *		locks.
 */
static void
write_at(int fd, const char *buf, Size len, off_t offset)
{
	ssize_t		done = 0;

	while (done < (ssize_t) len)
	{
		ssize_t		n;

		pgstat_report_wait_start(WAIT_EVENT_WAL_WRITE);
		n = pg_pwrite(fd, buf + done, len - done, offset + done);
		pgstat_report_wait_end();
		if (n <= 0)
			fail_insert(fd, offset, done, (n == 0) ? ENOSPC : errno, "write to");
		done += n;
	}
}

/*
 * write_direct
 *		Write a large record (len bytes at offset of fd, the current
 *		segment), whose position the insert lock has given out and released
 *		(nothing may fail between the two but the write itself): records
 *		after it may be in the ring already.  The write lock, held since,
 *		keeps every flush, ring write and segment switch behind it, and
 *		direct_start keeps the log senders (KvWalWrittenPos) from reading
 *		it before it is written.  A failure cannot be undone now, so it is
 *		a PANIC, as a failed write of the ring is: the record's blocks
 *		exist, so only an I/O error gets here, and the log ends before the
 *		record (nothing after it was flushed).
 */
static void
write_direct(int fd, const char *rec, Size len, off_t offset)
{
	Size		done = 0;

	Assert(LWLockHeldByMeInMode(write_lock, LW_EXCLUSIVE) &&
		   !LWLockHeldByMe(insert_lock));
	START_CRIT_SECTION();
	while (done < len)
	{
		/*
		 * In two halves, so that a test can stop it between them, with a
		 * torn record in the file (one more write, for records of over
		 * 256kB by default)
		 */
		Size		upto = (done < len / 2) ? len / 2 : len;
		ssize_t		n;

		if (done == len / 2)
			KvFailpoint("wal-direct-write");
		pgstat_report_wait_start(WAIT_EVENT_WAL_WRITE);
		n = pg_pwrite(fd, rec + done, upto - done, offset + (off_t) done);
		pgstat_report_wait_end();
		if (n <= 0)
			write_failed(n, wal->seg_start, offset + (off_t) done);
		done += n;
	}
	SpinLockAcquire(&wal->mutex);
	wal->direct_start = InvalidKvLsn;
	wal->writes++;
	SpinLockRelease(&wal->mutex);
	END_CRIT_SECTION();
}

/*
 * segment_full_unflushed
 *		Will the next record switch segments, with the full one not yet
 *		durable?  Read without the insert lock: a hint only.
 */
static bool
segment_full_unflushed(void)
{
	bool		result;

	SpinLockAcquire(&wal->mutex);
	result = wal->insert_lsn != InvalidKvLsn &&
		wal->insert_lsn - wal->seg_start >= (KvLsn) kvext_wal_segment_size &&
		wal->flush_lsn < wal->insert_lsn;
	SpinLockRelease(&wal->mutex);
	return result;
}

/*
 * wake_writer_for_ring
 *		The ring is more than half full: wake the wal writer to write it
 *		(its flush), once until it wakes (KvWalWriterWoken), so that inserts
 *		seldom find the ring full and write it under the insert lock
 *		themselves.
 */
static void
wake_writer_for_ring(void)
{
	int			writer = -1;

	SpinLockAcquire(&wal->mutex);
	if (!wal->ring_wake && wal->writer_procno >= 0)
	{
		wal->ring_wake = true;
		writer = wal->writer_procno;
	}
	SpinLockRelease(&wal->mutex);
	if (writer >= 0)
		SetLatch(&ProcGlobal->allProcs[writer].procLatch);
}

/*
 * KvWalInsert
 *		Append a record.  rec holds len bytes: room for the header, then the
 *		payload (already filled in); len is a multiple of 8.  Fills in the
 *		header, copies the record into the ring (or writes it, if it is
 *		large) and returns the position after it.  For
 *		TXN records, also publishes the record's in-flight position in
 *		owner_slot, the transaction's owner slot (see file header); the
 *		caller clears it once the record is applied.  owner_slot is -1 for
 *		other records.
 *		Raises an error, with nothing inserted, if the record's blocks
 *		cannot be reserved or a large record's write fails (disk full).
 */
KvLsn
KvWalInsert(char *rec, uint8 type, uint8 flags, TransactionId xid, KvLsn ref,
			uint32 len, int owner_slot, KvLsn *startp)
{
	KvWalRecord *hdr = (KvWalRecord *) rec;
	pg_crc32c	crc;
	KvLsn		start;
	KvLsn		end;
	off_t		offset;
	bool		direct;
	bool		wake_writer = false;
	int			direct_fd = -1;

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
	{
		KvFailpoint("wal-before-write");

		/*
		 * A record that will switch segments: make the full segment
		 * durable first, under the flush lock, so that the switch's
		 * fdatasync under the insert lock finds nothing left to write and
		 * other inserts do not wait for the disk.
		 */
		if (segment_full_unflushed())
			KvWalFlushAll();

		/*
		 * A large record: write the ring now, so that what the insert lock
		 * has to write before the record is only what others insert from
		 * here on.
		 */
		else if (len > RING_MAX_RECORD)
			write_ring_locked();
	}

	LWLockAcquire(insert_lock, LW_EXCLUSIVE);

	/*
	 * A follower's log takes only what its leader ships (KvWalAppendRaw,
	 * under this lock): a transaction that began while this node led and
	 * commits after it stepped down fails here, with nothing written.
	 */
	if (type == KV_REC_TXN && KvVisibleInGroup() && !KvVisibleIsLeader())
	{
		LWLockRelease(insert_lock);
		KvVisibleCheckWritable();
		elog(ERROR, "kvext log refused a write while this node changed role");
	}

	/*
	 * The same for a transaction's decision: once this node has stepped
	 * down, a TXN record it logged as leader is decided by the group's
	 * next leader (which aborts what it finds undecided), never here.  The
	 * caller, possibly in a critical section, gets InvalidKvLsn.  Recovery
	 * and promotion log their decisions (KV_RECF_RESOLVED) as leader.
	 */
	if (IS_MARKER(type) && !(flags & KV_RECF_RESOLVED) &&
		KvVisibleInGroup() &&
		(!KvVisibleIsLeader() || my_txn_epoch != wal->lead_epoch))
	{
		/*
		 * (A node that stepped down and was elected again leads anew: the
		 * record, logged in its earlier leadership, was decided by the
		 * leader in between, or cut.  A backend's marker always names its
		 * own last TXN record.)
		 */
		LWLockRelease(insert_lock);
		return InvalidKvLsn;
	}
	/* lets a test check that something does not need the insert lock */
	if (!IS_MARKER(type) && KvFailpointSet("wal-insert-hold"))
		KvFailpointHold();

	/* a marker goes into the space reserved for it (see below) */
	if (!IS_MARKER(type) &&
		wal->insert_lsn - wal->seg_start >= (KvLsn) kvext_wal_segment_size &&
		wal->insert_lsn > wal->seg_start)
	{
		LWLockAcquire(write_lock, LW_EXCLUSIVE);
		write_ring();
		switch_segment();
		LWLockRelease(write_lock);
	}

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

	offset = (off_t) (start - wal->seg_start);
	direct = (len > RING_MAX_RECORD);
	Assert(!direct || !IS_MARKER(type));

	/*
	 * The record's blocks, and for a TXN record those of the COMMIT or
	 * ABORT records of every transaction that may be in flight, must exist
	 * before it counts (see file header): inside the zero-filled part of
	 * the segment they do; past it, reserve them now (fallocate dirties
	 * the inode, which would make every commit's fdatasync journal it, so
	 * only there).  No reservation, no record.
	 */
	if (!IS_MARKER(type))
	{
		off_t		need = offset + len +
			(type == KV_REC_TXN ? MARKER_RESERVE : 0);
		int			save_errno = 0;

		/* (open_segment returns the cached descriptor: no system call) */
		if (KvFailpointEnospc("wal-enospc"))
			save_errno = ENOSPC;
		else if (type == KV_REC_TXN && KvFailpointEnospc("wal-enospc-reserve"))
			save_errno = ENOSPC;
		else if ((uint64) need > wal->seg_alloc &&
				 fallocate(open_segment(wal->seg_start, false), FALLOC_FL_KEEP_SIZE,
						   offset, need - offset) != 0 &&
				 errno != EOPNOTSUPP)
			save_errno = errno;
		if (save_errno != 0)
			fail_insert(open_segment(wal->seg_start, false), offset,
						0, save_errno, "reserve space in");
	}

	if (direct)
	{
		/*
		 * A large record is written at once, after the ring (what others
		 * inserted before it), under the write lock but not the insert
		 * lock (below).  Its blocks exist (reserved above), so the write
		 * meets no full disk; its descriptor is had now, while an error
		 * still leaves nothing inserted.
		 */
		direct_fd = open_segment(wal->seg_start, false);
		LWLockAcquire(write_lock, LW_EXCLUSIVE);
		write_ring();
	}
	else
	{
		bool		full;

		/* room in the ring: write out what is there if it is full */
		SpinLockAcquire(&wal->mutex);
		full = (end - wal->write_lsn > wal->ring_size);
		if (full)
			wal->buffers_full++;
		else
			wake_writer = (end - wal->write_lsn > wal->ring_size / 2);
		SpinLockRelease(&wal->mutex);
		if (full)
			write_ring_locked();
		ring_copy(start, rec, len);
	}

	if (type == KV_REC_TXN)
	{
		pg_atomic_write_u64(&wal->inflight[owner_slot], start);
		my_txn_epoch = wal->lead_epoch;
	}

	SpinLockAcquire(&wal->mutex);
	wal->insert_lsn = end;
	wal->records++;
	wal->bytes += len;
	if (direct)
	{
		/* the ring starts after it; what is written still ends before it */
		wal->write_lsn = end;
		wal->direct_start = start;
	}
	wal->last_start = start;
	wal->last_term = hdr->term;
	SpinLockRelease(&wal->mutex);
	LWLockRelease(insert_lock);

	if (direct)
	{
		write_direct(direct_fd, rec, len, offset);
		LWLockRelease(write_lock);
	}

	if (wake_writer)
		wake_writer_for_ring();
	if (startp)
		*startp = start;
	return end;
}

/*
 * KvWalInsertMarker
 *		Append a COMMIT or ABORT record deciding the TXN record at txn;
 *		returns the position after it, or InvalidKvLsn if this node no
 *		longer leads its group (see KvWalInsert).  Callers are in a critical
 *		section: the space was reserved when the TXN record was written.
 */
KvLsn
KvWalInsertMarker(uint8 type, uint8 flags, KvLsn txn)
{
	char		rec[sizeof(KvWalRecord)];

	Assert(IS_MARKER(type));
	memset(rec, 0, sizeof(rec));
	return KvWalInsert(rec, type, flags, InvalidTransactionId, txn,
					   sizeof(rec), -1, NULL);
}

/*
 * KvWalClearInflight
 *		The logged transaction of owner_slot has been applied (or
 *		abandoned); -1 does nothing.
 */
void
KvWalClearInflight(int owner_slot)
{
	if (wal && owner_slot >= 0)
		pg_atomic_write_u64(&wal->inflight[owner_slot], InvalidKvLsn);
}

/*
 * KvWalClearInflightSlot
 *		The parked transaction of owner slot s has been applied or dropped
 *		(park.c): its TXN record no longer holds back the redo point.
 */
void
KvWalClearInflightSlot(int s)
{
	pg_atomic_write_u64(&wal->inflight[s], InvalidKvLsn);
}

/*
 * KvWalFlush
 *		Make the log durable up to upto, sharing the fsync with concurrent
 *		callers (group commit).  PANICs if fdatasync fails.  The log may have
 *		been cut below upto since the caller inserted (a leader that stepped
 *		down, KvWalTruncate): then what is left of it is flushed, and the
 *		caller learns what became of its records elsewhere (visible.c).
 */
void
KvWalFlush(KvLsn upto)
{
	for (;;)
	{
		KvLsn		flushed;
		KvLsn		target;
		KvLsn		segstart;
		uint64		renamed;
		bool		dir_pending;

		SpinLockAcquire(&wal->mutex);
		flushed = wal->flush_lsn;
		upto = Min(upto, wal->insert_lsn);
		SpinLockRelease(&wal->mutex);
		if (flushed >= upto)
			return;

		/* someone else flushing?  wait for them, then look again */
		if (!LWLockAcquireOrWait(flush_lock, LW_EXCLUSIVE))
			continue;

		SpinLockAcquire(&wal->mutex);
		flushed = wal->flush_lsn;
		upto = Min(upto, wal->insert_lsn);
		SpinLockRelease(&wal->mutex);

		if (flushed < upto)
		{
			int			fd;
			int			rc;

			/*
			 * The ring first (not under the insert lock: inserts go on);
			 * then everything up to write_lsn is in the current segment.
			 */
			LWLockAcquire(write_lock, LW_EXCLUSIVE);
			write_ring();
			SpinLockAcquire(&wal->mutex);
			target = wal->write_lsn;
			segstart = wal->seg_start;
			renamed = wal->dir_renamed;
			dir_pending = renamed > wal->dir_synced;
			SpinLockRelease(&wal->mutex);
			LWLockRelease(write_lock);

			/*
			 * A leader's senders ship what is written while we fsync it, so
			 * that a follower's fsync overlaps ours.  The commit position
			 * still waits for ours (sender.c), and a leader whose machine
			 * restarts, losing what it had not fsynced, must win a new term
			 * before it leads again (replication/campaign.c).
			 */
			if (KvVisibleIsLeader())
				KvVisibleWakeSenders();
			KvFailpoint("wal-before-fsync");

			fd = open_segment(segstart, false);
			pgstat_report_wait_start(WAIT_EVENT_WAL_SYNC);
			rc = pg_fdatasync(fd);
			pgstat_report_wait_end();
			if (rc != 0)
				ereport(PANIC,
						(errcode_for_file_access(),
						 errmsg("could not fdatasync kvext log segment %016llX: %m",
								(unsigned long long) segstart)));
			/* the current segment's name, if a switch gave it one */
			if (dir_pending)
				fsync_wal_dir();
			SpinLockAcquire(&wal->mutex);
			if (wal->flush_lsn < target)
				wal->flush_lsn = target;
			if (wal->dir_synced < renamed)
				wal->dir_synced = renamed;
			wal->syncs++;
			SpinLockRelease(&wal->mutex);
			/*
			 * More to ship: wake the log senders (no-op without peers).  A
			 * follower's senders are idle; a role change wakes them.
			 */
			if (KvVisibleIsLeader())
				KvVisibleWakeSenders();
		}
		LWLockRelease(flush_lock);
	}
}

/*
 * KvWalWritePending
 *		Write the ring, so that the files hold every record inserted so far
 *		(for readers of the log: a node that led checking its own tail, a
 *		reader opening).  A no-op before the log is open.
 */
void
KvWalWritePending(void)
{
	if (wal->insert_lsn == InvalidKvLsn)
		return;
	write_ring_locked();
}

/*
 * KvWalWrittenPos
 *		End of what is in the files (the log less what is still in the
 *		ring): what a leader's senders may ship, before it is durable here.
 */
KvLsn
KvWalWrittenPos(void)
{
	KvLsn		lsn;

	SpinLockAcquire(&wal->mutex);
	lsn = (wal->direct_start != InvalidKvLsn) ? wal->direct_start : wal->write_lsn;
	SpinLockRelease(&wal->mutex);
	return lsn;
}

/*
 * KvWalCurrentSegment
 *		Start of the segment the log writes into, or InvalidKvLsn before the
 *		log is open.  Every segment after it is unused (none, or a stray
 *		empty file recovery removes).
 */
KvLsn
KvWalCurrentSegment(void)
{
	KvLsn		start;

	if (wal == NULL)
		return InvalidKvLsn;
	SpinLockAcquire(&wal->mutex);
	start = (wal->insert_lsn == InvalidKvLsn) ? InvalidKvLsn : wal->seg_start;
	SpinLockRelease(&wal->mutex);
	return start;
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
 *		the local flush position; in a group, the commit position (the
 *		majority's, see visible.c).
 */
KvLsn
KvWalVisiblePos(void)
{
	if (KvVisibleInGroup())
		return KvVisibleCommitPos();
	return KvWalFlushPos();
}

/*
 * KvWalSetTerm
 *		This node starts leading term: its next records carry it, and a
 *		new leadership begins (lead_epoch), so that no COMMIT or ABORT
 *		record of its own is logged any more for a TXN record of an earlier
 *		one (KvWalInsert).
 */
void
KvWalSetTerm(uint64 term)
{
	LWLockAcquire(insert_lock, LW_EXCLUSIVE);
	SpinLockAcquire(&wal->mutex);
	wal->term = term;
	wal->lead_epoch++;
	SpinLockRelease(&wal->mutex);
	LWLockRelease(insert_lock);
}

/* the in-flight TXN position of owner slot s, or InvalidKvLsn */
KvLsn
KvWalInflight(int s)
{
	return pg_atomic_read_u64(&wal->inflight[s]);
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
	redo = floor_or(wal->insert_lsn);
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
 *		at seg_start, at insert_lsn.  With no segment (seg_start invalid),
 *		creates the first one.
 *
 *		Everything up to insert_lsn counts as flushed from here on, so it is
 *		made durable first.  After a crash of PostgreSQL alone, recovery may
 *		have replayed records that were only in the kernel's page cache (an
 *		off commit's, or one whose flush the crash cut short), and a segment
 *		switch may have renamed a file in without the directory fsync that
 *		the next flush would have done.  A segment switch skips its
 *		fdatasync when the segment counts as flushed, so without this a
 *		power loss after the restart could cut the log before records that
 *		had been replayed and shown, and before later, acknowledged ones.
 *		Only the current segment can hold unflushed records: each earlier
 *		one was flushed before the switch that followed it.
 */
void
KvWalStartAt(KvLsn seg_start, KvLsn insert_lsn, uint64 term)
{
	struct stat st;
	int			fd;

	if (seg_start == InvalidKvLsn)
	{
		char		path[MAXPGPATH];

		seg_start = insert_lsn = KVEXT_WAL_START_LSN;
		KvWalSegmentPath(path, seg_start);
		zero_fill_segment(open_segment(seg_start, true), path);
	}
	fd = open_segment(seg_start, false);
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat kvext log segment %016llX: %m",
						(unsigned long long) seg_start)));
	if (pg_fdatasync(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fdatasync kvext log segment %016llX: %m",
						(unsigned long long) seg_start)));
	fsync_wal_dir();
	LWLockAcquire(insert_lock, LW_EXCLUSIVE);
	SpinLockAcquire(&wal->mutex);
	wal->seg_start = seg_start;
	wal->seg_alloc = (uint64) st.st_size;
	wal->insert_lsn = insert_lsn;
	wal->write_lsn = insert_lsn;
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
	int			n;
	int			seg = -1;
	char		path[MAXPGPATH];
	int			fd;
	struct stat st;
	bool		live = (wal->insert_lsn != InvalidKvLsn);

	/*
	 * On a live log (a follower dropping a divergent tail), hold the flush
	 * lock, then the insert and write locks, for the whole cut: no flush
	 * may sync the old files and then claim the new positions.  The positions
	 * move back first, then the control file's flush watermark, so that a
	 * crash part-way never leaves a watermark beyond the end of the log.
	 */
	if (live)
	{
		LWLockAcquire(flush_lock, LW_EXCLUSIVE);
		LWLockAcquire(insert_lock, LW_EXCLUSIVE);
		LWLockAcquire(write_lock, LW_EXCLUSIVE);
		/* records before the cut stay; the file is cut after them */
		write_ring();
		SpinLockAcquire(&wal->mutex);
		wal->insert_lsn = Min(wal->insert_lsn, at);
		wal->write_lsn = wal->insert_lsn;
		wal->flush_lsn = Min(wal->flush_lsn, at);
		wal->last_start = InvalidKvLsn;
		wal->last_term = 0;
		SpinLockRelease(&wal->mutex);
		KvControlLowerWatermark(at);
	}

	n = KvWalListSegments(&starts);
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

	if (live)
	{
		/* every process drops its cached descriptor (open_segment) */
		pg_atomic_fetch_add_u64(&wal->seg_gen, 1);
		SpinLockAcquire(&wal->mutex);
		wal->seg_start = starts[seg];
		wal->seg_alloc = (uint64) st.st_size;
		SpinLockRelease(&wal->mutex);
		LWLockRelease(write_lock);
		LWLockRelease(insert_lock);
		LWLockRelease(flush_lock);
	}
	pfree(starts);
}

/*
 * KvWalResetTo
 *		Replace the whole log by an empty one that starts at at: a follower
 *		rebuilt from its leader's snapshot (log/install.c), whose redo point
 *		is at.  The new segment is created (zero-filled, synced; an old
 *		segment of that name is overwritten), then every other segment is
 *		removed and the directory synced.  Not atomic by itself: the caller
 *		makes a crash part-way harmless (install.c's marker file).  On a
 *		live log, holds the flush lock, then the insert lock, as
 *		KvWalTruncate does, and moves the positions to at; the log's term
 *		becomes at least term.
 */
void
KvWalResetTo(KvLsn at, uint64 term)
{
	bool		live = (wal->insert_lsn != InvalidKvLsn);
	char		path[MAXPGPATH];
	KvLsn	   *starts;
	int			n;
	int			fd;
	struct stat st;

	if (live)
	{
		LWLockAcquire(flush_lock, LW_EXCLUSIVE);
		LWLockAcquire(insert_lock, LW_EXCLUSIVE);
		/* the old log is replaced: its buffered records go with it */
		LWLockAcquire(write_lock, LW_EXCLUSIVE);
	}
	KvWalSegmentPath(path, at);
	fd = OpenTransientFile(path, O_RDWR | O_CREAT | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create kvext log file \"%s\": %m", path)));
	zero_fill_segment(fd, path);
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat kvext log file \"%s\": %m", path)));
	CloseTransientFile(fd);

	n = KvWalListSegments(&starts);
	for (int i = n - 1; i >= 0; i--)
	{
		if (starts[i] == at)
			continue;
		KvWalSegmentPath(path, starts[i]);
		if (unlink(path) != 0 && errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not remove kvext log file \"%s\": %m", path)));
	}
	fsync_wal_dir();
	pfree(starts);

	if (live)
	{
		/* every process drops its cached descriptor (open_segment) */
		pg_atomic_fetch_add_u64(&wal->seg_gen, 1);
		SpinLockAcquire(&wal->mutex);
		wal->insert_lsn = wal->flush_lsn = wal->write_lsn = at;
		wal->seg_start = at;
		wal->seg_alloc = (uint64) st.st_size;
		wal->last_start = InvalidKvLsn;
		wal->last_term = 0;
		wal->apply_floor = InvalidKvLsn;
		wal->term = Max(wal->term, term);
		SpinLockRelease(&wal->mutex);
		LWLockRelease(write_lock);
		LWLockRelease(insert_lock);
		LWLockRelease(flush_lock);
	}
}

/*
 * KvWalAppendRaw
 *		A follower appends records shipped by its leader, byte for byte:
 *		len bytes of whole records at recs, which must start at the end of
 *		the log (start).  The caller has checked every record
 *		(KvLogCheckRecord) and serializes appends (the append lock); the
 *		records are written under the insert lock, switching segments as
 *		KvWalInsert does (a record never starts past a full segment), and
 *		the write lock (after the ring, which a node that led may hold).  The
 *		log's term follows the records'.  Nothing is flushed (the caller
 *		flushes once per batch).  A failed write raises an error; the
 *		records of the batch written before it stay (whole records; the
 *		leader sends the rest again), the failed part is cleared.
 */
void
KvWalAppendRaw(const char *recs, Size len, KvLsn start)
{
	Size		off = 0;

	LWLockAcquire(insert_lock, LW_EXCLUSIVE);
	/* written at once, after the ring (a node that led until now) */
	LWLockAcquire(write_lock, LW_EXCLUSIVE);
	write_ring();
	if (wal->insert_lsn != start)
	{
		KvLsn		end = wal->insert_lsn;

		LWLockRelease(write_lock);
		LWLockRelease(insert_lock);
		elog(ERROR, "kvext log append at %X/%X, but the log ends at %X/%X",
			 LSN_FORMAT_ARGS(start), LSN_FORMAT_ARGS(end));
	}
	while (off < len)
	{
		KvLsn		run_start;
		Size		run = 0;
		KvLsn		last = InvalidKvLsn;
		uint64		term = 0;

		if (wal->insert_lsn - wal->seg_start >= (KvLsn) kvext_wal_segment_size &&
			wal->insert_lsn > wal->seg_start)
			switch_segment();
		run_start = wal->insert_lsn;

		/* the records that start inside this segment */
		while (off + run < len)
		{
			KvWalRecord hdr;

			if (run > 0 &&
				run_start + run - wal->seg_start >= (KvLsn) kvext_wal_segment_size)
				break;
			memcpy(&hdr, recs + off + run, sizeof(hdr));
			Assert(hdr.lsn == run_start + run && hdr.len % 8 == 0);
			last = hdr.lsn;
			term = hdr.term;
			run += hdr.len;
		}

		write_at(open_segment(wal->seg_start, false), recs + off, run,
				 (off_t) (run_start - wal->seg_start));

		SpinLockAcquire(&wal->mutex);
		wal->insert_lsn = wal->write_lsn = run_start + run;
		wal->bytes += run;
		wal->writes++;
		wal->last_start = last;
		wal->last_term = term;
		if (wal->term < term)
			wal->term = term;
		SpinLockRelease(&wal->mutex);
		off += run;
	}
	LWLockRelease(write_lock);
	LWLockRelease(insert_lock);
}

/*
 * KvWalLastRecord
 *		The last record of the log: its position, its end (the end of the
 *		log) and its term.  Returns false if it is not known (after a
 *		truncation, before anything was appended): read the log then.
 */
bool
KvWalLastRecord(KvLsn *start, KvLsn *end, uint64 *term)
{
	SpinLockAcquire(&wal->mutex);
	*start = wal->last_start;
	*end = wal->insert_lsn;
	*term = wal->last_term;
	SpinLockRelease(&wal->mutex);
	return *start != InvalidKvLsn;
}

/*
 * KvWalSetLastRecord
 *		Recovery found the log's last record at start, of term.
 */
void
KvWalSetLastRecord(KvLsn start, uint64 term)
{
	SpinLockAcquire(&wal->mutex);
	wal->last_start = start;
	wal->last_term = term;
	SpinLockRelease(&wal->mutex);
}

/*
 * KvWalSetApplyFloor
 *		A follower: records from floor on may still have to be applied to
 *		memory (a TXN record whose COMMIT has not been applied, and all
 *		records past the applied position), so a snapshot's redo point
 *		must not pass it.  InvalidKvLsn: no such record.
 */
void
KvWalSetApplyFloor(KvLsn floor)
{
	SpinLockAcquire(&wal->mutex);
	wal->apply_floor = floor;
	SpinLockRelease(&wal->mutex);
}

/* the apply floor, or the insert position if there is none */
static KvLsn
floor_or(KvLsn pos)
{
	KvLsn		floor;

	SpinLockAcquire(&wal->mutex);
	floor = wal->apply_floor;
	SpinLockRelease(&wal->mutex);
	return (floor != InvalidKvLsn && floor < pos) ? floor : pos;
}

/*
 * KvWalSetHold
 *		A log sender (slot 0 .. KVEXT_VISIBLE_MAX_SENDERS - 1) says that its
 *		connected peer still reads the log from pos (InvalidKvLsn: nothing,
 *		the peer is away).  Segment removal keeps that much, within a bound
 *		(KvWalRetainFrom).
 */
void
KvWalSetHold(int slot, KvLsn pos)
{
	Assert(slot >= 0 && slot < KVEXT_VISIBLE_MAX_SENDERS);
	pg_atomic_write_u64(&wal->holds[slot], pos);
}

/*
 * KvWalRetainFrom
 *		Where segment removal after a snapshot with redo point redo may cut:
 *		not past redo, and, on a node with peers, not past what
 *		kvext.wal_keep_size keeps behind the end of the log, nor past the
 *		position a connected follower still reads, unless that is more than
 *		kvext.max_wal_size behind the end (a follower that slow is rebuilt
 *		from a snapshot instead: the log does not grow without bound).
 */
KvLsn
KvWalRetainFrom(KvLsn redo)
{
	KvLsn		end = KvWalInsertPos();
	KvLsn		keep = (KvLsn) kvext_wal_keep_size * 1024 * 1024;
	KvLsn		bound = (KvLsn) kvext_max_wal_size * 1024 * 1024;
	KvLsn		cut = redo;

	if (!KvVisibleInGroup())
		return cut;
	cut = Min(cut, end > keep ? end - keep : InvalidKvLsn);
	for (int i = 0; i < KVEXT_VISIBLE_MAX_SENDERS; i++)
	{
		KvLsn		hold = pg_atomic_read_u64(&wal->holds[i]);

		if (hold != InvalidKvLsn && hold + bound >= end)
			cut = Min(cut, hold);
	}
	return cut;
}

/*
 * KvWalRemoveBefore
 *		Remove the segments that end at or before redo, as far as
 *		KvWalRetainFrom allows; returns how many.  The current segment is
 *		never removed.
 */
int
KvWalRemoveBefore(KvLsn redo)
{
	KvLsn	   *starts;
	int			n;
	int			removed = 0;
	KvLsn		current;

	redo = KvWalRetainFrom(redo);

	/*
	 * The listing is not taken under the insert lock: it may show a file
	 * that a failing segment switch is creating and about to unlink again,
	 * named after the insert position (create_segment_inline).  So the
	 * current segment, read first, bounds the removal, not only the next
	 * file's name.
	 */
	SpinLockAcquire(&wal->mutex);
	current = wal->seg_start;
	SpinLockRelease(&wal->mutex);
	n = KvWalListSegments(&starts);

	for (int i = 0; i + 1 < n; i++)
	{
		char		path[MAXPGPATH];

		if (starts[i + 1] > redo || starts[i] >= current)
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
 * KvWalApplyPos
 *		Everything before this position has been applied to memory: the
 *		oldest in-flight record, or the insert position.  Takes no LWLock,
 *		so any number of callers never delay a commit: the insert position
 *		is read first (under the mutex, a full barrier), then the in-flight
 *		marks.  A record that starts before that insert position published
 *		its mark before the insert position moved past it (both under the
 *		insert lock, the mark first), so it is seen unless it was already
 *		applied and cleared; a record inserted meanwhile starts at or after
 *		the position read.  The answer is exact as of the moment the insert
 *		position was read, except that it may be later when a record was
 *		applied since, which only makes it fresher.
 */
KvLsn
KvWalApplyPos(void)
{
	KvLsn		apply = floor_or(KvWalInsertPos());

	for (int i = 0; i < wal->nprocs; i++)
	{
		KvLsn		v = pg_atomic_read_u64(&wal->inflight[i]);

		if (v != InvalidKvLsn && v < apply)
			apply = v;
	}
	return apply;
}

/*
 * KvWalStatus
 *		Positions for kv_wal_status(): insert, flush, applied (everything
 *		before the oldest in-flight record) and the segment count.  Every
 *		role may call kv_wal_status(), so this takes no LWLock at all: the
 *		positions come from the mutex and atomics (KvWalApplyPos), never
 *		from the insert lock that every commit needs.
 */
void
KvWalStatus(KvLsn *insert, KvLsn *flush, KvLsn *apply, int *segments)
{
	KvLsn	   *starts;

	*apply = KvWalApplyPos();
	*insert = KvWalInsertPos();
	*flush = KvWalFlushPos();
	*segments = KvWalListSegments(&starts);
	pfree(starts);
}
