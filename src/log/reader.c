/*-------------------------------------------------------------------------
 *
 * reader.c
 *	  Reading kvext's log, record by record, with every check: recovery
 *	  reads the log through it, and so will a log sender and a follower.
 *
 * A reader starts at a position (a snapshot's redo point, or the start of
 * the log) and returns one record at a time.  Records are checked for: a
 * length that is a multiple of 8 and fits in the file, a position that
 * matches the record's place, a known format version (1 or 2), and the
 * CRC32C.
 *
 * Memory is bounded by KVEXT_READ_BUFFER, whatever the records' sizes: a
 * record up to that size is read whole into the reader's buffer (r->rec
 * is the whole record); a larger one (a transaction may log up to 4GB) is
 * checked by streaming it through the buffer to compute its CRC, and only
 * its header is kept: r->rec_whole is false, and the caller reads the
 * payload piece by piece with KvLogRecordBytes, which reads from the file.
 * Neither a segment nor a large record is ever read into memory whole.
 *
 * End of log.  Segments are zero-filled when created, so a segment's
 * records end at the first all-zero header that is followed only by
 * zeros (or at the end of the file).  The next segment must then start
 * exactly there; if there is none, that is the clean end of the log.
 * Anything else is KV_READ_BAD, with reader->why saying what is wrong and
 * reader->bad_in_last whether it is in the last segment; the caller
 * decides whether that is a torn tail or corruption (recovery.c).  A
 * damaged record's payload is not searched for valid records (a client's
 * value may look like one), but a record whose CRC holds with a length
 * one bit different from its header's is reported as such
 * (reader->bad_len_claimed, length_fix): a damaged length, not a torn
 * write.
 *
 * Record contents.  What a valid record holds is checked here too: the
 * writes of a TXN record (KvLogForEachOp: every length against what is
 * left of the record, the kinds, keyspace names), and a batch a leader
 * ships (KvLogCheckBatch).  These, like the reader, need no shared
 * memory: test/fuzz/ runs them outside a server, under libFuzzer.
 *
 * Memory: the reader and its buffer are palloc'd in the caller's context.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlogdefs.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "log/reader.h"

#define ZERO_CHUNK		(64 * 1024)

/* close the current segment and open segs[seg] */
static void
open_seg(KvLogReader *r, int seg)
{
	char		path[MAXPGPATH];
	struct stat st;

	if (r->fd >= 0)
		CloseTransientFile(r->fd);
	r->fd = -1;
	r->seg = seg;
	r->win_len = 0;				/* the window is of the old file */
	KvWalSegmentPath(path, r->segs[seg]);
	r->fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (r->fd < 0 || fstat(r->fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open kvext log file \"%s\": %m", path)));
	r->segsize = st.st_size;
}

/*
 * read_upto
 *		Read up to n bytes at file offset off of the current segment;
 *		returns how many, fewer only at the end of the file.  ERROR if the
 *		read fails.
 */
static Size
read_upto(KvLogReader *r, char *dst, Size n, off_t off)
{
	Size		done = 0;

	while (done < n)
	{
		ssize_t		got;

		pgstat_report_wait_start(WAIT_EVENT_WAL_READ);
		got = pg_pread(r->fd, dst + done, n - done, off + done);
		pgstat_report_wait_end();

		if (got < 0)
		{
			char		path[MAXPGPATH];

			KvWalSegmentPath(path, r->segs[r->seg]);
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read kvext log file \"%s\": %m", path)));
		}
		if (got == 0)
			break;
		done += got;
	}
	return done;
}

/*
 * fill_window
 *		Read ahead: fill the reader's window with the current segment's
 *		bytes from off, up to KVEXT_READ_AHEAD bytes but never past the
 *		caller's limit (KvLogReaderReadAhead).  false if the window would
 *		not hold n bytes from off.
 */
static bool
fill_window(KvLogReader *r, Size n, off_t off)
{
	KvLsn		segstart = r->segs[r->seg];
	off_t		limit;
	Size		want;
	Size		got;

	if (r->ahead_limit <= segstart + (KvLsn) off)
		return false;
	limit = Min((off_t) (r->ahead_limit - segstart), r->segsize);
	if (n >= KVEXT_READ_AHEAD || off + (off_t) n > limit)
		return false;
	want = Min((Size) KVEXT_READ_AHEAD, (Size) (limit - off));
	r->win_len = 0;
	got = read_upto(r, r->win, want, off);
	r->win_off = off;
	r->win_len = got;
	return got >= n;
}

/* read exactly n bytes at file offset off; false at a short read */
static bool
read_at(KvLogReader *r, char *dst, Size n, off_t off)
{
	/* from the read-ahead window, if it holds them or can be made to */
	if (r->ahead_limit != InvalidKvLsn &&
		((off >= r->win_off && off + (off_t) n <= r->win_off + (off_t) r->win_len) ||
		 fill_window(r, n, off)))
	{
		memcpy(dst, r->win + (off - r->win_off), n);
		return true;
	}
	return read_upto(r, dst, n, off) == n;
}

/* are the bytes of the current segment from off to its end all zero? */
static bool
zeros_to_end(KvLogReader *r, off_t off)
{
	char	   *chunk = palloc(ZERO_CHUNK);
	bool		result = true;

	while (off < r->segsize && result)
	{
		Size		n = Min((off_t) ZERO_CHUNK, r->segsize - off);

		if (!read_at(r, chunk, n, off))
			break;
		for (Size i = 0; i < n; i++)
			if (chunk[i] != 0)
			{
				result = false;
				break;
			}
		off += n;
	}
	pfree(chunk);
	return result;
}

/* one string, compared by address (header_problem's caller) */
static const char record_past_end[] = "record extends past the end of the file";
static const char length_damaged[] = "damaged record length";

static KvLogReadResult bad(KvLogReader *r, const char *why);

/*
 * header_problem
 *		What is wrong with the record header hdr found at position pos with
 *		room bytes left in its file, or NULL if it holds together.
 */
static const char *
header_problem(const KvWalRecord *hdr, KvLsn pos, off_t room)
{
	if (hdr->len < sizeof(KvWalRecord) || hdr->len % 8 != 0)
		return "invalid record length";
	if (hdr->lsn != pos)
		return "record position does not match its place in the file";
	if (hdr->version != KVEXT_WAL_VERSION && hdr->version != KVEXT_WAL_VERSION_1)
		return "unknown record format version";
	/* last: the header holds together, the file cuts the record short */
	if ((off_t) hdr->len > room)
		return record_past_end;
	return NULL;
}

/*
 * KvLogCheckRecord
 *		Check a record held in memory, as the reader checks one in a file:
 *		the record at rec claims to start at position pos, and room bytes
 *		are available from rec on.  Returns what is wrong, or NULL if its
 *		header holds together, it fits in room and its CRC32C matches.
 *		(A follower checks a shipped batch with it before writing any of
 *		it.)
 */
const char *
KvLogCheckRecord(const char *rec, Size room, KvLsn pos)
{
	KvWalRecord hdr;
	const char *why;
	pg_crc32c	crc;

	if (room < sizeof(KvWalRecord))
		return "incomplete record header";
	memcpy(&hdr, rec, sizeof(hdr));
	if ((why = header_problem(&hdr, pos, (off_t) Min(room, (Size) PG_INT64_MAX))) != NULL)
		return why;
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, rec + sizeof(KvWalRecord), hdr.len - sizeof(KvWalRecord));
	COMP_CRC32C(crc, rec + offsetof(KvWalRecord, len),
				sizeof(KvWalRecord) - offsetof(KvWalRecord, len));
	FIN_CRC32C(crc);
	if (!EQ_CRC32C(crc, hdr.crc))
		return "checksum mismatch";
	return NULL;
}

/*
 * KvLogCheckBatch
 *		Check a batch a leader shipped (receiver.c, step 5): len bytes at
 *		records hold whole records back to back from position start, each
 *		valid as the log reader checks them (KvLogCheckRecord), of version
 *		2, a known type, a decision record naming an earlier position,
 *		terms never decreasing from prev_term and never above the leader's
 *		term.  Returns NULL with *pos the end of the batch, or what is
 *		wrong with *pos the position of the first bad record.
 */
const char *
KvLogCheckBatch(const char *records, Size len, KvLsn start, uint64 prev_term,
				uint64 term, KvLsn *pos)
{
	Size		off = 0;
	uint64		last_term = prev_term;

	*pos = start;
	while (off < len)
	{
		KvWalRecord hdr;
		const char *why = KvLogCheckRecord(records + off, len - off, *pos);

		if (why)
			return why;
		memcpy(&hdr, records + off, sizeof(hdr));
		if (hdr.version != KVEXT_WAL_VERSION)
			return "only version 2 records are shipped";
		if (hdr.type < KV_REC_TXN || hdr.type > KV_REC_TERM)
			return "unknown record type";
		if ((hdr.type == KV_REC_COMMIT || hdr.type == KV_REC_ABORT) &&
			(hdr.ref == InvalidKvLsn || hdr.ref >= hdr.lsn))
			return "a decision record names no earlier position";
		if (hdr.term < last_term)
			return "record term lower than the term of the record before it";
		if (hdr.term > term)
			return "record term higher than the leader's term";
		last_term = hdr.term;
		*pos += hdr.len;
		off += hdr.len;
	}
	return NULL;
}

/* make the reader's buffer hold at least n bytes (n <= KVEXT_READ_BUFFER) */
static void
grow_buffer(KvLogReader *r, Size n)
{
	Assert(n <= KVEXT_READ_BUFFER);
	if (n > r->bufsize)
	{
		r->bufsize = Max(n, Min(r->bufsize * 2, (Size) KVEXT_READ_BUFFER));
		r->buf = repalloc(r->buf, r->bufsize);
	}
}

/*
 * load_record
 *		Read and check the record whose header hdr (already checked) is at
 *		file offset off: false if the file ends first or its CRC32C does
 *		not match (*crc_bad set).  A record that fits KVEXT_READ_BUFFER is
 *		left whole in the buffer; a larger one is streamed through it to
 *		compute its CRC, and only its header is left there.
 */
static bool
load_record(KvLogReader *r, off_t off, const KvWalRecord *hdr, bool *crc_bad)
{
	pg_crc32c	crc;

	*crc_bad = false;
	r->rec_whole = (hdr->len <= KVEXT_READ_BUFFER);
	r->rec_off = off;
	INIT_CRC32C(crc);
	if (r->rec_whole)
	{
		grow_buffer(r, hdr->len);
		if (!read_at(r, r->buf, hdr->len, off))
			return false;
		COMP_CRC32C(crc, r->buf + sizeof(KvWalRecord), hdr->len - sizeof(KvWalRecord));
	}
	else
	{
		grow_buffer(r, KVEXT_READ_BUFFER);
		for (Size done = sizeof(KvWalRecord); done < hdr->len;)
		{
			Size		n = Min((Size) KVEXT_READ_BUFFER, hdr->len - done);

			if (!read_at(r, r->buf, n, off + done))
				return false;
			COMP_CRC32C(crc, r->buf, n);
			done += n;
			CHECK_FOR_INTERRUPTS();
		}
		memcpy(r->buf, hdr, sizeof(KvWalRecord));
	}
	COMP_CRC32C(crc, r->buf + offsetof(KvWalRecord, len),
				sizeof(KvWalRecord) - offsetof(KvWalRecord, len));
	FIN_CRC32C(crc);
	*crc_bad = !EQ_CRC32C(crc, hdr->crc);
	return !*crc_bad;
}

/*
 * length_fix
 *		The record whose header hdr is at file offset off held together but
 *		failed its CRC or ran past the end of the file.  If a length that
 *		differs from hdr->len in one bit (a multiple of 8 that fits in the
 *		file) makes its CRC hold, return that length: the record was written
 *		whole and its length field damaged since.  Else 0.  Reads the bytes
 *		of the longest candidate once, through the reader's buffer.
 *
 * Why: the reader does not search a damaged record's payload for valid
 * records (a client's value may look like one), so a length damaged to a
 * larger value would hide the valid records that follow, and a damaged
 * last record would be taken for a torn write and cleared.  A torn write
 * never leaves a complete record behind a wrong length: with the real
 * length found, both are reported as the corruption they are.  A random
 * match needs 2^32 tries per candidate: 29 candidates make a false alarm
 * about one in 150 million damaged records.
 */
static uint32
length_fix(KvLogReader *r, off_t off, const KvWalRecord *hdr)
{
	uint32		cand[32];
	int			ncand = 0;
	pg_crc32c	crc;
	Size		done = sizeof(KvWalRecord);
	KvWalRecord fixed;

	/* the candidates, ascending */
	for (int b = 3; b < 32; b++)
	{
		uint32		len = hdr->len ^ ((uint32) 1 << b);

		if (len < hdr->len && len >= sizeof(KvWalRecord) &&
			(off_t) len <= r->segsize - off)
			cand[ncand++] = len;
	}
	for (int i = 0, j = ncand - 1; i < j; i++, j--)
	{
		uint32		t = cand[i];

		cand[i] = cand[j];
		cand[j] = t;
	}
	for (int b = 3; b < 32; b++)
	{
		uint32		len = hdr->len ^ ((uint32) 1 << b);

		if (len > hdr->len && (off_t) len <= r->segsize - off)
			cand[ncand++] = len;
	}

	grow_buffer(r, KVEXT_READ_BUFFER);
	fixed = *hdr;
	INIT_CRC32C(crc);
	for (int i = 0; i < ncand; i++)
	{
		pg_crc32c	c;

		/* the payload up to this candidate's end */
		while (done < cand[i])
		{
			Size		n = Min((Size) KVEXT_READ_BUFFER, cand[i] - done);

			if (!read_at(r, r->buf, n, off + done))
				return 0;
			COMP_CRC32C(crc, r->buf, n);
			done += n;
			CHECK_FOR_INTERRUPTS();
		}
		c = crc;
		fixed.len = cand[i];
		COMP_CRC32C(c, (char *) &fixed + offsetof(KvWalRecord, len),
					sizeof(KvWalRecord) - offsetof(KvWalRecord, len));
		FIN_CRC32C(c);
		if (EQ_CRC32C(c, hdr->crc))
			return cand[i];
	}
	return 0;
}

/*
 * bad_record
 *		KvLogReadNext's verdict on a record whose header holds together but
 *		that failed its CRC (crc_bad) or ran past the end of the file: the
 *		reader is not to search its payload for valid records
 *		(r->bad_extent), unless only its length field is damaged
 *		(length_fix): then the record ends where its CRC holds.
 */
static KvLogReadResult
bad_record(KvLogReader *r, off_t off, const KvWalRecord *hdr, bool crc_bad)
{
	uint32		real = length_fix(r, off, hdr);

	if (real != 0)
	{
		r->bad_extent = real;
		r->bad_len_claimed = hdr->len;
		return bad(r, length_damaged);
	}
	r->bad_extent = hdr->len;
	return bad(r, crc_bad ? "checksum mismatch" : record_past_end);
}

/*
 * KvLogRecordBytes
 *		n bytes of the current record (after KV_READ_RECORD), from byte at
 *		of the record on; the caller has checked that they lie inside it.
 *		The result is valid until the next call or KvLogReadNext.  For a
 *		record held whole it points into the buffer; for a streamed one the
 *		bytes are read from the file into a second buffer, as large as the
 *		largest piece asked for (the caller bounds n: one key and value),
 *		in the reader's own memory context: a caller may read records in a
 *		shorter-lived context than the reader lives in (the senders do).
 */
const char *
KvLogRecordBytes(KvLogReader *r, uint32 at, Size n)
{
	Assert(r->rec != NULL && (Size) at + n <= r->rec->len);
	if (r->rec_whole)
		return r->buf + at;
	if (n > r->piecesize)
	{
		r->piecesize = Max(n, 8192);
		r->piece = r->piece ? repalloc_huge(r->piece, r->piecesize)
			: MemoryContextAllocHuge(GetMemoryChunkContext(r), r->piecesize);
	}
	if (!read_at(r, r->piece, n, r->rec_off + at))
	{
		char		path[MAXPGPATH];

		KvWalSegmentPath(path, r->segs[r->seg]);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext log file \"%s\" became shorter while it was read", path)));
	}
	return r->piece;
}

/* does segment file seg hold only zeros? */
static bool
segment_is_empty(KvLogReader *r, int seg)
{
	int			cur = r->seg;
	int			fd = r->fd;
	off_t		size = r->segsize;
	bool		empty;

	r->fd = -1;
	open_seg(r, seg);
	empty = zeros_to_end(r, 0);
	CloseTransientFile(r->fd);
	r->fd = fd;
	r->seg = cur;
	r->segsize = size;
	return empty;
}

/* no valid record at r->pos, because of why */
static KvLogReadResult
bad(KvLogReader *r, const char *why)
{
	r->why = why;
	r->bad_in_last = (r->seg == r->nsegs - 1);
	return KV_READ_BAD;
}

/* index of the listed segment that holds pos, or -1 */
static int
find_seg(KvLogReader *r, KvLsn pos)
{
	int			seg = -1;

	for (int i = 0; i < r->nsegs; i++)
		if (r->segs[i] <= pos)
			seg = i;
	return seg;
}

/*
 * KvLogReaderBegin
 *		A reader positioned at from, which must be a record boundary inside
 *		an existing segment (else ERRCODE_DATA_CORRUPTED).
 */
KvLogReader *
KvLogReaderBegin(KvLsn from)
{
	KvLogReader *r = palloc0(sizeof(KvLogReader));
	int			seg;
	KvLsn		cur;

	/* COMMIT and ABORT records may still be in memory (wal.c) */
	KvWalWritePending();
	r->fd = -1;
	cur = KvWalCurrentSegment();
	if (cur != InvalidKvLsn && from >= cur)
	{
		/*
		 * In the open log's last segment (a sender or a follower reading
		 * what was just written): no need to list the directory.
		 */
		r->nsegs = 1;
		r->segs = palloc(sizeof(KvLsn));
		r->segs[0] = cur;
	}
	else
		r->nsegs = KvWalListSegments(&r->segs);
	seg = find_seg(r, from);
	if (seg < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the kvext log file containing position %X/%X is missing",
						LSN_FORMAT_ARGS(from))));
	open_seg(r, seg);
	if ((off_t) (from - r->segs[seg]) > r->segsize)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the kvext log ends before position %X/%X", LSN_FORMAT_ARGS(from))));
	r->pos = from;
	r->bufsize = 8192;
	r->buf = palloc(r->bufsize);
	return r;
}

/*
 * KvLogReaderReadAhead
 *		The log below limit is written and does not change while this
 *		reader reads it (a sender: its flush position; a follower applying:
 *		what the group committed, under the append lock).  The reader may
 *		then read up to KVEXT_READ_AHEAD bytes at a time below limit, and
 *		serve the records there from memory: one read system call for many
 *		small records instead of two for each.  Without it (the default), or
 *		at limit and beyond, every read goes to the file, as a reader of a
 *		log that is still being written must.  A lower limit than before
 *		drops what was read ahead.
 */
void
KvLogReaderReadAhead(KvLogReader *r, KvLsn limit)
{
	if (limit < r->ahead_limit)
		r->win_len = 0;
	r->ahead_limit = limit;
	/* in the reader's context: a caller may read in a shorter-lived one */
	if (r->win == NULL && limit != InvalidKvLsn)
		r->win = MemoryContextAlloc(GetMemoryChunkContext(r), KVEXT_READ_AHEAD);
}

/*
 * KvLogReaderSeek
 *		Move the reader to position pos, which must be a record boundary
 *		inside an existing segment (else ERRCODE_DATA_CORRUPTED).  Lets one
 *		reader fetch records out of order (a follower reads the TXN record a
 *		COMMIT record names) without listing the directory each time: only
 *		when pos lies outside the segments the reader listed, which happens
 *		when it began in the log's last segment (listing only that one) and
 *		a COMMIT record there names a TXN record in an earlier segment (its
 *		transaction logged before a segment switch, decided after), or when
 *		the log has moved into a newer segment since.
 */
void
KvLogReaderSeek(KvLogReader *r, KvLsn pos)
{
	int			seg = find_seg(r, pos);
	KvLsn		cur = KvWalCurrentSegment();

	if (seg < 0 || (seg == r->nsegs - 1 && cur > r->segs[seg] && pos >= cur))
	{
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(r));

		if (r->fd >= 0)
			CloseTransientFile(r->fd);
		r->fd = -1;
		r->seg = -1;
		r->win_len = 0;
		pfree(r->segs);
		r->nsegs = KvWalListSegments(&r->segs);
		MemoryContextSwitchTo(old);
		seg = find_seg(r, pos);
	}
	if (seg < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the kvext log file containing position %X/%X is missing",
						LSN_FORMAT_ARGS(pos))));
	if (seg != r->seg || r->fd < 0)
		open_seg(r, seg);
	r->pos = pos;
	r->rec = NULL;
}

/*
 * KvLogReaderSegStart
 *		Start position of the segment the reader is in.
 */
KvLsn
KvLogReaderSegStart(KvLogReader *r)
{
	return r->segs[r->seg];
}

/*
 * KvLogReadNext
 *		Read the record at r->pos; see the file header.  On KV_READ_RECORD,
 *		r->rec is valid until the next call and r->pos is past it.
 */
KvLogReadResult
KvLogReadNext(KvLogReader *r)
{
	for (;;)
	{
		KvLsn		segstart = r->segs[r->seg];
		off_t		off = (off_t) (r->pos - segstart);
		KvWalRecord hdr;
		const char *why;

		r->rec = NULL;
		r->bad_extent = 0;
		r->bad_len_claimed = 0;
		if (off + (off_t) sizeof(KvWalRecord) > r->segsize)
		{
			/* fewer bytes left than a header: only zeros may remain */
			if (off < r->segsize && !zeros_to_end(r, off))
				return bad(r, "incomplete record header");
		}
		else
		{
			if (!read_at(r, (char *) &hdr, sizeof(hdr), off))
				return bad(r, "incomplete record header");
			if (hdr.len != 0 || hdr.crc != 0 || hdr.lsn != 0 || !zeros_to_end(r, off))
			{
				bool		crc_bad;

				if ((why = header_problem(&hdr, r->pos, r->segsize - off)) != NULL)
				{
					/* a torn record: its payload is not searched (below) */
					if (why == record_past_end)
						return bad_record(r, off, &hdr, false);
					return bad(r, why);
				}
				if (!load_record(r, off, &hdr, &crc_bad))
				{
					/*
					 * The header holds together, so the record's payload,
					 * which may hold anything (a client's value that looks
					 * like a record), is not searched for valid records.
					 */
					return bad_record(r, off, &hdr, crc_bad);
				}
				r->rec = (KvWalRecord *) r->buf;
				r->pos += hdr.len;
				return KV_READ_RECORD;
			}
		}

		/* the clean end of this segment's records */
		if (r->seg == r->nsegs - 1)
			return KV_READ_END;
		if (r->segs[r->seg + 1] != r->pos)
		{
			/*
			 * A last file that holds only zeros, under a name the log never
			 * reached, is what a segment switch that failed (a full disk)
			 * or was cut by a crash leaves: the log went on here.  Report
			 * it; the caller may remove it.
			 */
			if (r->seg + 1 == r->nsegs - 1 && segment_is_empty(r, r->seg + 1))
			{
				r->stray_last = r->segs[r->seg + 1];
				return KV_READ_END;
			}
			return bad(r, "the next log file does not start where this one ends");
		}
		open_seg(r, r->seg + 1);
	}
}

/*
 * valid_record_at
 *		Is there a valid record at file offset off of the current segment?
 *		Uses (and may grow) the reader's buffer.
 */
static bool
valid_record_at(KvLogReader *r, off_t off)
{
	KvWalRecord hdr;
	bool		crc_bad;

	return read_at(r, (char *) &hdr, sizeof(hdr), off) &&
		header_problem(&hdr, r->segs[r->seg] + off, r->segsize - off) == NULL &&
		load_record(r, off, &hdr, &crc_bad);
}

/*
 * KvLogReaderValidAfter
 *		After KV_READ_BAD: the position of the first valid record that
 *		follows the damaged one in the same segment (a record whose CRC
 *		holds and whose position matches its place), or InvalidKvLsn.  A
 *		crash of the server alone leaves the log a prefix of what was
 *		written, so a bad record followed by valid ones is not a torn tail.
 */
KvLsn
KvLogReaderValidAfter(KvLogReader *r)
{
	KvLsn		segstart = r->segs[r->seg];

	/*
	 * Look past the damaged record itself when its header holds together
	 * (its CRC failed, or it runs past the end of the file): its payload
	 * may hold anything, even bytes that look like a record.
	 */
	off_t		start = (off_t) (r->pos - segstart) + Max(8, (off_t) r->bad_extent);
	char	   *chunk = palloc(ZERO_CHUNK);
	KvLsn		found = InvalidKvLsn;

	off_t		base = start;

	/*
	 * Chunks overlap by a header's length, so that a header that straddles
	 * the end of one chunk is seen at the start of the next.
	 */
	while (base + (off_t) sizeof(KvWalRecord) <= r->segsize && found == InvalidKvLsn)
	{
		Size		n = Min((off_t) ZERO_CHUNK, r->segsize - base);
		Size		i;

		if (!read_at(r, chunk, n, base))
			break;
		for (i = 0; i + sizeof(KvWalRecord) <= n; i += 8)
		{
			KvLsn		lsn;

			memcpy(&lsn, chunk + i + offsetof(KvWalRecord, lsn), sizeof(lsn));
			if (lsn == segstart + base + i && valid_record_at(r, base + i))
			{
				found = lsn;
				break;
			}
		}
		base += i;
		CHECK_FOR_INTERRUPTS();
	}
	pfree(chunk);
	return found;
}

/* ---- record contents ---- */

/*
 * KvLogReportCorrupt
 *		Refuse the log: the record at lsn is damaged for the reason why;
 *		detail says why that is not a torn write, hint (or NULL) what the
 *		operator can do.  Names the file, the offset and the LSN.
 */
void
KvLogReportCorrupt(KvLogReader *r, KvLsn lsn, const char *why, const char *detail,
			   const char *hint)
{
	char		path[MAXPGPATH];
	KvLsn		segstart = KvLogReaderSegStart(r);

	KvWalSegmentPath(path, segstart);
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("kvext log file \"%s\" is corrupt at offset %llu (LSN %X/%X): %s",
					path, (unsigned long long) (lsn - segstart),
					LSN_FORMAT_ARGS(lsn), why),
			 errdetail_internal("%s", detail),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * KvLogInvalidRecord
 *		Refuse a record whose CRC holds but whose contents do not (a length
 *		that does not fit, a keyspace name that is not one): the record was
 *		damaged before its CRC was computed, or by a bug.  Reported like a
 *		damaged record: the store refuses to serve, naming file and LSN.
 */
void
KvLogInvalidRecord(KvLogReader *r, const char *why)
{
	KvLogReportCorrupt(r, r->rec->lsn, why,
				   _("The record's checksum holds, but what it holds is not a valid record."),
				   NULL);
}

/*
 * KvLogKeyspaceName
 *		A keyspace name from the log: len bytes at name, not terminated.
 *		It must be 1 to NAMEDATALEN - 1 bytes without a NUL byte; copies it,
 *		terminated, into out (NAMEDATALEN bytes).  Else the record the
 *		reader holds is invalid (KvLogInvalidRecord).
 */
void
KvLogKeyspaceName(KvLogReader *r, const char *name, Size len, char *out)
{
	if (len == 0 || len >= NAMEDATALEN || memchr(name, '\0', len) != NULL)
		KvLogInvalidRecord(r, "invalid keyspace name");
	memcpy(out, name, len);
	out[len] = '\0';
}

/*
 * check_padding
 *		The bytes of the record from at to its end must be zeros: what the
 *		writer leaves after the last write.
 */
static void
check_padding(KvLogReader *r, uint32 at)
{
	uint32		len = r->rec->len;

	while (at < len)
	{
		uint32		n = Min(len - at, (uint32) 65536);
		const char *p = KvLogRecordBytes(r, at, n);

		for (uint32 i = 0; i < n; i++)
			if (p[i] != 0)
				KvLogInvalidRecord(r, "invalid write in a transaction record");
		at += n;
	}
}

/* the largest key and value a writer can log: the settings' maximums */
#define MAX_LOGGED_KEY		(1024 * 1024)
#define MAX_LOGGED_VALUE	((uint32) MaxAllocSize)

/*
 * KvLogForEachOp
 *		The writes of the TXN record the reader holds, in order, each
 *		checked (lengths, kinds, keyspace changes' shape) before fn sees
 *		it; then the zeros after the last.  A write that does not fit
 *		is KvLogInvalidRecord.  apply.c applies a record with it, recovery
 *		lists its keys.
 */
void
KvLogForEachOp(KvLogReader *r, KvLogOpFn fn, void *arg)
{
	KvWalRecord *hdr = r->rec;
	uint32		len = hdr->len;
	uint32		at = sizeof(KvWalRecord);

	while (len - at >= sizeof(KvWalOp))
	{
		KvWalOp		op;
		const char *key;

		memcpy(&op, KvLogRecordBytes(r, at, sizeof(op)), sizeof(op));
		if (op.op == 0)
			break;				/* the zeros after the last write */
		at += sizeof(KvWalOp);
		if (op.op < KV_WOP_PUT || op.op > KV_WOP_KS_DROP ||
			op.keylen > len - at || op.vallen > len - at - op.keylen ||
			op.keylen > MAX_LOGGED_KEY || op.vallen > MAX_LOGGED_VALUE)
			KvLogInvalidRecord(r, "invalid write in a transaction record");
		key = KvLogRecordBytes(r, at, (Size) op.keylen + op.vallen);
		at += op.keylen + op.vallen;
		if ((op.op == KV_WOP_KS_CREATE || op.op == KV_WOP_KS_DROP) &&
			(op.vallen != 0 || (op.op == KV_WOP_KS_DROP && op.keylen != 0)))
			KvLogInvalidRecord(r, "invalid keyspace change in a transaction record");
		fn(r, arg, &op, key);
	}
	check_padding(r, at);
}

/*
 * KvLogReaderEnd
 *		Close the reader's file and free it.
 */
void
KvLogReaderEnd(KvLogReader *r)
{
	if (r->fd >= 0)
		CloseTransientFile(r->fd);
	pfree(r->buf);
	if (r->piece)
		pfree(r->piece);
	if (r->win)
		pfree(r->win);
	pfree(r->segs);
	pfree(r);
}
