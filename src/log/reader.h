/*-------------------------------------------------------------------------
 *
 * reader.h
 *	  Reading kvext's log record by record, checked.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_READER_H
#define KVEXT_READER_H

#include "log/wal.h"

/*
 * A record up to this size is read into memory whole; a larger one is
 * checked by streaming it, and read piece by piece (reader.c).  The
 * fuzzing harness (test/fuzz) builds with a small one, so that short
 * inputs take the path of large records.
 */
#ifndef KVEXT_READ_BUFFER
#define KVEXT_READ_BUFFER		(4 * 1024 * 1024)
#endif

/* the most a reader reads ahead, when its caller allows it */
#define KVEXT_READ_AHEAD		(16 * 1024)

typedef enum KvLogReadResult
{
	KV_READ_RECORD,				/* reader->rec is a valid record */
	KV_READ_END,				/* clean end of the log */
	KV_READ_BAD					/* no valid record at reader->pos; see why */
} KvLogReadResult;

typedef struct KvLogReader
{
	KvLsn	   *segs;			/* segment start positions, ascending */
	int			nsegs;
	int			seg;			/* index of the segment being read */
	int			fd;				/* its file, or -1 */
	off_t		segsize;		/* its size */
	KvLsn		pos;			/* position of the next record */
	char	   *buf;			/* the current record, or its header */
	Size		bufsize;		/* at most KVEXT_READ_BUFFER */
	KvWalRecord *rec;			/* = buf after KV_READ_RECORD */
	bool		rec_whole;		/* buf holds all of rec (else only its
								 * header: use KvLogRecordBytes) */
	off_t		rec_off;		/* rec's offset in its file */
	char	   *piece;			/* KvLogRecordBytes of a streamed record */
	Size		piecesize;
	const char *why;			/* after KV_READ_BAD: what is wrong */
	bool		bad_in_last;	/* after KV_READ_BAD: in the last segment */
	uint32		bad_extent;		/* after KV_READ_BAD: the damaged record's
								 * length, if its header holds together */
	uint32		bad_len_claimed;	/* after KV_READ_BAD: if only the record's
									 * length field is damaged, what it says
									 * (bad_extent is then the real length);
									 * else 0 */
	KvLsn		stray_last;		/* after KV_READ_END: start of an all-zero
								 * last file the log never reached, or 0 */
	KvLsn		ahead_limit;	/* may read ahead below this (0: never) */
	char	   *win;			/* read-ahead window, KVEXT_READ_AHEAD bytes */
	off_t		win_off;		/* its offset in the current file */
	Size		win_len;		/* bytes it holds */
} KvLogReader;

extern KvLogReader *KvLogReaderBegin(KvLsn from);
extern void KvLogReaderSeek(KvLogReader *r, KvLsn pos);
extern void KvLogReaderReadAhead(KvLogReader *r, KvLsn limit);
extern const char *KvLogCheckRecord(const char *rec, Size room, KvLsn pos);
extern KvLogReadResult KvLogReadNext(KvLogReader *r);
extern KvLsn KvLogReaderValidAfter(KvLogReader *r);
extern void KvLogReaderEnd(KvLogReader *r);
extern KvLsn KvLogReaderSegStart(KvLogReader *r);
extern const char *KvLogRecordBytes(KvLogReader *r, uint32 at, Size n);

/* checking what records hold (no shared memory: test/fuzz links these) */
extern const char *KvLogCheckBatch(const char *records, Size len, KvLsn start,
								   uint64 prev_term, uint64 term, KvLsn *pos);
extern void KvLogReportCorrupt(KvLogReader *r, KvLsn lsn, const char *why,
							   const char *detail, const char *hint) pg_attribute_noreturn();
extern void KvLogInvalidRecord(KvLogReader *r, const char *why) pg_attribute_noreturn();
extern void KvLogKeyspaceName(KvLogReader *r, const char *name, Size len, char *out);

/* called for each checked write of a TXN record, key and value at key */
typedef void (*KvLogOpFn) (KvLogReader *r, void *arg, const KvWalOp *op,
						   const char *key);
extern void KvLogForEachOp(KvLogReader *r, KvLogOpFn fn, void *arg);

#endif							/* KVEXT_READER_H */
