/*-------------------------------------------------------------------------
 *
 * wal.h
 *	  kvext's write-ahead log: record format, insert, flush, reading.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_WAL_H
#define KVEXT_WAL_H

#include "port/pg_crc32c.h"
#include "storage/lwlock.h"

typedef uint64 KvLsn;

#define InvalidKvLsn			((KvLsn) 0)
/* the first record of a new log starts here (0 means "none") */
#define KVEXT_WAL_START_LSN		((KvLsn) 16)

#define KVEXT_DIR				"kvext"
#define KVEXT_WAL_DIR			"kvext/wal"

/*
 * Record header: 40 bytes, followed by the payload; records are padded to
 * a multiple of 8 bytes (len includes the padding).  The CRC32C covers
 * every byte of the record after the crc field.
 */
typedef struct KvWalRecord
{
	pg_crc32c	crc;
	uint32		len;			/* whole record, header and padding */
	KvLsn		lsn;			/* where this record starts */
	uint64		term;			/* leader term that wrote it */
	KvLsn		flushed;		/* log known durable when it was written */
	TransactionId xid;			/* KV_REC_TXN, KV_REC_ABORT: top-level xid */
	uint8		type;			/* KV_REC_* */
	uint8		flags;			/* KV_RECF_* */
	uint16		version;		/* KVEXT_WAL_VERSION */
} KvWalRecord;

#define KVEXT_WAL_VERSION		1

/* record types */
#define KV_REC_TXN				1	/* a committed transaction's writes */
#define KV_REC_ABORT			2	/* the TXN record of xid did not commit */
#define KV_REC_KS_CREATE		3	/* keyspace created */
#define KV_REC_KS_DROP			4	/* keyspace dropped */

/* record flags */
#define KV_RECF_HEAP			0x01	/* TXN also wrote PostgreSQL WAL: its
										 * fate is PostgreSQL's commit status */

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

/* KV_REC_KS_CREATE / KV_REC_KS_DROP payload */
typedef struct KvWalKeyspace
{
	uint16		id;
	char		name[NAMEDATALEN];
} KvWalKeyspace;

#define KvWalRecordPadLen(n)	TYPEALIGN(8, (n))

/* kvext.synchronous_commit */
typedef enum KvSyncCommit
{
	KV_SYNC_OFF,
	KV_SYNC_LOCAL,
	KV_SYNC_ON,
	KV_SYNC_REMOTE_APPLY
} KvSyncCommit;

/* setup */
extern Size KvWalShmemSize(void);
extern void KvWalShmemInit(LWLock *insert_lock, LWLock *flush_lock);

/* writing */
extern KvLsn KvWalInsert(char *rec, uint8 type, uint8 flags, TransactionId xid,
						 uint32 len);
extern void KvWalFlush(KvLsn upto);
extern void KvWalFlushAll(void);
extern void KvWalClearInflight(void);
extern KvLsn KvWalInsertPos(void);
extern KvLsn KvWalFlushPos(void);
extern KvLsn KvWalRedoPoint(void);
extern uint64 KvWalCurrentTerm(void);

/* segments */
extern int	KvWalListSegments(KvLsn **starts);
extern void KvWalSegmentPath(char *path, KvLsn start);
extern void KvWalStartAt(KvLsn seg_start, KvLsn insert_lsn, uint64 term);
extern int	KvWalRemoveBefore(KvLsn redo);
extern bool KvWalWriteZeros(int fd, off_t from, off_t to);

/* status */
extern void KvWalStatus(KvLsn *insert, KvLsn *flush, KvLsn *apply,
						int *segments);

#endif							/* KVEXT_WAL_H */
