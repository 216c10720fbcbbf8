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
	char	   *buf;			/* the current record */
	Size		bufsize;
	KvWalRecord *rec;			/* = buf after KV_READ_RECORD */
	const char *why;			/* after KV_READ_BAD: what is wrong */
	bool		bad_in_last;	/* after KV_READ_BAD: in the last segment */
	uint32		bad_extent;		/* after KV_READ_BAD: the damaged record's
								 * length, if its header holds together */
	KvLsn		stray_last;		/* after KV_READ_END: start of an all-zero
								 * last file the log never reached, or 0 */
} KvLogReader;

extern KvLogReader *KvLogReaderBegin(KvLsn from);
extern KvLogReadResult KvLogReadNext(KvLogReader *r);
extern KvLsn KvLogReaderValidAfter(KvLogReader *r);
extern void KvLogReaderEnd(KvLogReader *r);
extern KvLsn KvLogReaderSegStart(KvLogReader *r);

#endif							/* KVEXT_READER_H */
