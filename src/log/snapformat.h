/*-------------------------------------------------------------------------
 *
 * snapformat.h
 *	  The snapshot file format, shared by its writer (snapshot.c) and its
 *	  reader (snapread.c); private to the two.  The layout is described in
 *	  snapshot.c's file header.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_SNAPFORMAT_H
#define KVEXT_SNAPFORMAT_H

#include "datatype/timestamp.h"
#include "port/pg_crc32c.h"

#include "log/wal.h"


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
#ifndef SNAP_LARGE_ENTRY			/* test/fuzz reads with a small one */
#define SNAP_LARGE_ENTRY	(1024 * 1024)
#endif

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

/* largest single read() or write() of a snapshot */
#define SNAP_WRITE_MAX		(64 * 1024 * 1024)

/* snapread.c */
extern void KvSnapLargeNote(SnapLargeList *list, uint64 offset, uint16 keyspace,
							uint16 flags, uint32 keylen, uint32 vallen,
							const char *data, int chunk);

/* snapshot.c */
extern void KvSnapshotSetLast(const KvSnapHeader *hdr);

#endif							/* KVEXT_SNAPFORMAT_H */
