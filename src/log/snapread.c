/*-------------------------------------------------------------------------
 *
 * snapread.c
 *	  Reading and checking kvext snapshots (the format is in snapshot.c's
 *	  file header and snapformat.h): loading one into the store at
 *	  recovery, checking one (a follower checks a streamed snapshot before
 *	  installing it, install.c), reading a header.
 *
 * Every length, count and offset read from the file is checked against
 * the file's size and the limits before it is used: a damaged or hostile
 * file is ERRCODE_DATA_CORRUPTED naming the offset, never a crash and
 * never an allocation of what a length field claims.  The reader is kept
 * apart from the writer so that test/fuzz/ can run it outside a server.
 *
 * Memory: a 4MB read buffer, or one entry if larger, and 24 bytes per large
 * entry, in the caller's context.
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
#include "storage/fd.h"
#include "utils/memutils.h"

#include "kvext.h"
#include "log/snapformat.h"
#include "log/snapshot.h"
#include "store/alloc.h"
#include "store/keyspace.h"
#include "store/store.h"

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

/*
 * KvSnapLargeNote
 *		Note the large entry at offset (its key), key and value at data, at
 *		the end of list (the writer's index, the reader's).
 */
void
KvSnapLargeNote(SnapLargeList *list, uint64 offset, uint16 keyspace, uint16 flags,
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

/*
 * The read buffer's size.  The fuzzing harness (test/fuzz) builds with a
 * small one, so that short inputs cross buffer boundaries as large files do.
 */
#ifndef SNAP_READ_CHUNK
#define SNAP_READ_CHUNK		(4 * 1024 * 1024)
#endif

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
 * snap_read_at
 *		Read into buf from file offset off, in pieces of at most
 *		SNAP_WRITE_MAX, until at least need bytes (and at most max) are in,
 *		or the file ends.  Returns how many bytes were read.
 */
static Size
snap_read_at(SnapReader *r, char *buf, Size need, Size max, off_t off)
{
	Size		done = 0;

	while (done < need)
	{
		ssize_t		got;

		pgstat_report_wait_start(WAIT_EVENT_DATA_FILE_READ);
		got = pg_pread(r->fd, buf + done, Min(max - done, (Size) SNAP_WRITE_MAX),
					   off + done);
		pgstat_report_wait_end();
		if (got < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read kvext snapshot \"%s\": %m", r->path)));
		if (got == 0)
			break;
		done += got;
	}
	return done;
}

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
	r->len += snap_read_at(r, r->buf + r->len, n - r->len, r->cap - r->len,
						   r->offset + (off_t) r->len);
	return r->len >= n;
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
	Size		done = snap_read_at(r, buf, len, len, off);

	if (done < len)
		snap_damaged(r, off + done, "unexpected end of file");
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

		/*
		 * In file order, each after its entry header, before the end marker
		 * (end - offset, never offset + len: an offset near 2^64 would wrap
		 * around and pass, then reach pread() as a negative offset).
		 * index_offset >= entries + sizeof(KvSnapEntry), checked above.
		 */
		if (l->offset < prev_end + sizeof(KvSnapEntry) ||
			len <= SNAP_LARGE_ENTRY || l->keylen > MaxAllocSize ||
			l->vallen > MaxAllocSize ||
			l->offset > tail->index_offset - sizeof(KvSnapEntry) ||
			len > tail->index_offset - sizeof(KvSnapEntry) - l->offset ||
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
			KvSnapLargeNote(&found, at, se.keyspace, se.flags, se.keylen,
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
		KvSnapshotSetLast(&hdr);
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
