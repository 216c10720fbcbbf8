/*-------------------------------------------------------------------------
 *
 * wal.h
 *	  kvext's write-ahead log: record format, insert, flush, segments.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_WAL_H
#define KVEXT_WAL_H

#include "port/pg_crc32c.h"
#include "storage/lwlock.h"

#include "kvext.h"

#define InvalidKvLsn			((KvLsn) 0)
/* the first record of a new log starts here (0 means "none") */
#define KVEXT_WAL_START_LSN		((KvLsn) 16)

#define KVEXT_DIR				"kvext"
#define KVEXT_WAL_DIR			"kvext/wal"
/* the next segment, prepared ahead by the wal writer (KvWalPrepareNext) */
#define KVEXT_WAL_NEXT			KVEXT_WAL_DIR "/next"
#define KVEXT_WAL_NEXT_TMP		KVEXT_WAL_DIR "/next.tmp"

/*
 * Record header: 40 bytes, followed by the payload; records are padded to
 * a multiple of 8 bytes (len includes the padding).  The CRC32C covers
 * every byte of the record after the crc field.  Nothing in a record
 * depends on the node that holds it: a record shipped to another node is
 * valid there byte for byte.
 *
 * Version 1 (read by recovery only) had the same layout, but `ref` was
 * `flushed`, the writer's flush position (node-local), and xid named the
 * transaction of TXN and ABORT records.  See docs/architecture.md.
 */
typedef struct KvWalRecord
{
	pg_crc32c	crc;
	uint32		len;			/* whole record, header and padding */
	KvLsn		lsn;			/* where this record starts */
	uint64		term;			/* leader term that wrote it */
	KvLsn		ref;			/* COMMIT, ABORT: position of the TXN record
								 * they decide; otherwise 0 */
	TransactionId xid;			/* TXN with KV_RECF_HEAP: the origin's
								 * top-level xid; otherwise 0 */
	uint8		type;			/* KV_REC_* */
	uint8		flags;			/* KV_RECF_* */
	uint16		version;		/* KVEXT_WAL_VERSION */
} KvWalRecord;

#define KVEXT_WAL_VERSION		2
#define KVEXT_WAL_VERSION_1		1

/* record types */
#define KV_REC_TXN				1	/* a transaction's writes; counts only
									 * once a COMMIT record names it */
#define KV_REC_ABORT			2	/* the TXN record at ref did not commit */
#define KV_REC_KS_CREATE		3	/* keyspace created (older logs; now an
									 * op of a TXN record) */
#define KV_REC_KS_DROP			4	/* keyspace dropped (likewise) */
#define KV_REC_COMMIT			5	/* the TXN record at ref committed */
#define KV_REC_TERM				6	/* a leader's term starts */

/* record flags */
#define KV_RECF_HEAP			0x01	/* TXN also wrote PostgreSQL WAL
										 * (a "mixed" transaction) */
#define KV_RECF_RESOLVED		0x02	/* COMMIT/ABORT written by recovery,
										 * from pg_xact */

/* one write inside a KV_REC_TXN payload, followed by key and value bytes */
typedef struct KvWalOp
{
	uint8		op;				/* KV_WOP_PUT or KV_WOP_DELETE */
	uint8		binary;			/* value written as bytea */
	uint16		keyspace;
	uint32		keylen;
	uint32		vallen;			/* 0 for deletes */
} KvWalOp;

#define KV_WOP_PUT				1
#define KV_WOP_DELETE			2
#define KV_WOP_KS_CREATE		3	/* keyspace id created; "key" is its name */
#define KV_WOP_KS_DROP			4	/* keyspace id dropped */

/* KV_REC_KS_CREATE / KV_REC_KS_DROP payload */
typedef struct KvWalKeyspace
{
	uint16		id;
	char		name[NAMEDATALEN];
} KvWalKeyspace;

#define KvWalRecordPadLen(n)	TYPEALIGN(8, (n))

/* setup */
extern Size KvWalShmemSize(void);
extern void KvWalShmemInit(LWLock *insert_lock, LWLock *write_lock,
						   LWLock *flush_lock);

/* writing */
extern KvLsn KvWalInsert(char *rec, uint8 type, uint8 flags, TransactionId xid,
						 KvLsn ref, uint32 len, int owner_slot, KvLsn *start);
extern KvLsn KvWalInsertMarker(uint8 type, uint8 flags, KvLsn txn);
extern void KvWalFlush(KvLsn upto);
extern void KvWalFlushAll(void);
extern void KvWalWritePending(void);
extern void KvWalClearInflight(int owner_slot);
extern void KvWalClearInflightSlot(int s);
extern KvLsn KvWalInsertPos(void);
extern KvLsn KvWalFlushPos(void);
extern KvLsn KvWalWrittenPos(void);
extern KvLsn KvWalVisiblePos(void);
extern void KvWalSetTerm(uint64 term);
extern KvLsn KvWalInflight(int s);
extern KvLsn KvWalRedoPoint(void);
extern KvLsn KvWalApplyPos(void);
extern uint64 KvWalCurrentTerm(void);

/* segments */
extern int	KvWalListSegments(KvLsn **starts);
extern void KvWalSegmentPath(char *path, KvLsn start);
extern KvLsn KvWalCurrentSegment(void);
extern void KvWalStartAt(KvLsn seg_start, KvLsn insert_lsn, uint64 term);
extern void KvWalTruncate(KvLsn at);
extern void KvWalResetTo(KvLsn at, uint64 term);
extern void KvWalAppendRaw(const char *recs, Size len, KvLsn start);
extern bool KvWalLastRecord(KvLsn *start, KvLsn *end, uint64 *term);
extern void KvWalSetLastRecord(KvLsn start, uint64 term);
extern void KvWalSetApplyFloor(KvLsn floor);
extern int	KvWalRemoveBefore(KvLsn redo);
extern void KvWalSetHold(int slot, KvLsn pos);
extern KvLsn KvWalRetainFrom(KvLsn redo);
extern bool KvWalWriteZeros(int fd, off_t from, off_t to);
extern void KvWalPrepareNext(void);
extern void KvWalWriterAttach(void);
extern void KvWalWriterWoken(void);

/* the log's activity since startup (kv_wal_stats()) */
typedef struct KvWalStats
{
	uint64		records;		/* records this node inserted */
	uint64		bytes;			/* bytes added to its log (a follower's
								 * appends included) */
	uint64		buffers_full;	/* inserts that found the log buffers full
								 * and wrote them, under the insert lock */
	uint64		writes;			/* write calls of the log */
	uint64		syncs;			/* fdatasyncs of log segments */
	uint64		switches;		/* segment switches */
	uint64		switches_inline;	/* of those, creating the segment */
} KvWalStats;

extern void KvWalGetStats(KvWalStats *st);

/* status */
extern void KvWalStatus(KvLsn *insert, KvLsn *flush, KvLsn *apply,
						int *segments);

#endif							/* KVEXT_WAL_H */
