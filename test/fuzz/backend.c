/*-------------------------------------------------------------------------
 *
 * backend.c
 *	  Just enough of a PostgreSQL backend to run kvext's decoders outside a
 *	  server, under libFuzzer: memory, errors, transient files, interrupts,
 *	  and the few store functions the snapshot loader calls.
 *
 * The harnesses (fuzz_*.c) link the real decoding files of src/ (reader.c,
 * snapread.c) against this file, libpgport (CRC32C, qsort) and libpgcommon.
 *
 * Errors.  ereport(ERROR) is what the decoders answer a damaged input
 * with, so it must work as in a backend: errfinish() at ERROR or above
 * longjmps to the innermost PG_TRY (PG_exception_stack), which each
 * harness sets around one input.  The message is formatted (so that a
 * format string that does not match its arguments shows up under the
 * sanitizers) and kept for the harness, which may print it
 * (KVEXT_FUZZ_VERBOSE=1).  An error below ERROR is formatted and dropped.
 *
 * Memory.  palloc and friends are malloc'd chunks on one list, with a
 * memory context pointer just before the chunk as PostgreSQL's
 * GetMemoryChunkContext() expects; FuzzResetMemory() frees whatever an
 * input left (an ERROR leaves its allocations to the context reset in a
 * server).  Request sizes are checked as mcxt.c checks them, so a length
 * from the input that would ask for more than MaxAllocSize fails as it
 * would in a server.
 *
 * Files.  OpenTransientFile/CloseTransientFile are open/close, with the
 * descriptors remembered so that FuzzResetFiles() closes those an ERROR
 * left open (AtEOXact_Files in a server).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "miscadmin.h"
#include "nodes/memnodes.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "kvext.h"
#include "log/snapformat.h"
#include "store/alloc.h"
#include "store/keyspace.h"
#include "store/store.h"

#include "backend.h"

/* ---- errors ---- */

sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;

static int	cur_elevel;
char		FuzzLastError[1024];

bool
errstart(int elevel, const char *domain)
{
	cur_elevel = elevel;
	FuzzLastError[0] = '\0';
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	if (cur_elevel >= ERROR)
	{
		if (getenv("KVEXT_FUZZ_VERBOSE"))
			fprintf(stderr, "ERROR: %s\n", FuzzLastError);
		if (PG_exception_stack == NULL)
			abort();			/* an error outside the harness's PG_TRY */
		siglongjmp(*PG_exception_stack, 1);
	}
}

void
pg_re_throw(void)
{
	if (PG_exception_stack == NULL)
		abort();
	siglongjmp(*PG_exception_stack, 1);
}

/* a failed Assert() */
void
ExceptionalCondition(const char *conditionName, const char *errorType,
					 const char *fileName, int lineNumber)
{
	fprintf(stderr, "TRAP: %s(\"%s\", File: \"%s\", Line: %d)\n",
			errorType, conditionName, fileName, lineNumber);
	abort();
}

/* format a message part into buf (the message itself into FuzzLastError) */
static void
format_part(char *buf, size_t size, const char *fmt, va_list ap)
{
	vsnprintf(buf, size, fmt, ap);
}

int
errmsg(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	format_part(FuzzLastError, sizeof(FuzzLastError), fmt, ap);
	va_end(ap);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	format_part(FuzzLastError, sizeof(FuzzLastError), fmt, ap);
	va_end(ap);
	return 0;
}

#define FORMAT_AND_DROP(fmt) \
	do { \
		char		buf_[1024]; \
		va_list		ap_; \
		va_start(ap_, fmt); \
		format_part(buf_, sizeof(buf_), fmt, ap_); \
		va_end(ap_); \
	} while (0)

int
errdetail(const char *fmt,...)
{
	FORMAT_AND_DROP(fmt);
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	FORMAT_AND_DROP(fmt);
	return 0;
}

int
errhint(const char *fmt,...)
{
	FORMAT_AND_DROP(fmt);
	return 0;
}

int
errcode(int sqlerrcode)
{
	return 0;
}

/*
 * A file error.  The harness's files are regular files it just wrote, so
 * the only way to fail on them is an offset or a length from the input
 * that reached the file system unchecked (EINVAL: a negative offset): a
 * finding, reported as one.
 */
int
errcode_for_file_access(void)
{
	if (errno == EINVAL || errno == EFBIG || errno == EOVERFLOW)
	{
		fprintf(stderr, "kvext fuzz: a file call failed with \"%s\": an unchecked offset or length from the input\n",
				strerror(errno));
		abort();
	}
	return 0;
}

/* ---- memory ---- */

typedef struct FuzzChunk
{
	struct FuzzChunk *prev;
	struct FuzzChunk *next;
	Size		size;
	MemoryContext context;		/* just before the chunk, as in PostgreSQL */
} FuzzChunk;

StaticAssertDecl(sizeof(FuzzChunk) % MAXIMUM_ALIGNOF == 0, "chunk header alignment");

static FuzzChunk chunks = {&chunks, &chunks, 0, NULL};

/* one context stands for all; only its address and type are ever used */
static MemoryContextData fuzz_context = {.type = T_AllocSetContext};
MemoryContext CurrentMemoryContext = &fuzz_context;

static void *
chunk_alloc(Size size, bool huge, bool zero, bool no_oom)
{
	FuzzChunk  *c;

	if (huge ? !AllocHugeSizeIsValid(size) : !AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	c = zero ? calloc(1, sizeof(FuzzChunk) + size) : malloc(sizeof(FuzzChunk) + size);
	if (c == NULL)
	{
		if (no_oom)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	c->size = size;
	c->context = CurrentMemoryContext;
	c->next = chunks.next;
	c->prev = &chunks;
	chunks.next->prev = c;
	chunks.next = c;
	return c + 1;
}

static FuzzChunk *
chunk_of(void *p)
{
	return ((FuzzChunk *) p) - 1;
}

static void *
chunk_realloc(void *p, Size size, bool huge)
{
	FuzzChunk  *c = chunk_of(p);
	FuzzChunk  *n;

	if (huge ? !AllocHugeSizeIsValid(size) : !AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	n = realloc(c, sizeof(FuzzChunk) + size);
	if (n == NULL)
		n = c;					/* still valid: relink it, then fail */
	n->next = chunks.next;
	n->prev = &chunks;
	chunks.next->prev = n;
	chunks.next = n;
	if (n == c && size > c->size)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	n->size = size;
	return n + 1;
}

void *
palloc(Size size)
{
	return chunk_alloc(size, false, false, false);
}

void *
palloc0(Size size)
{
	return chunk_alloc(size, false, true, false);
}

void *
palloc_extended(Size size, int flags)
{
	return chunk_alloc(size, (flags & MCXT_ALLOC_HUGE) != 0,
					   (flags & MCXT_ALLOC_ZERO) != 0,
					   (flags & MCXT_ALLOC_NO_OOM) != 0);
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return chunk_alloc(size, false, false, false);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return chunk_alloc(size, false, true, false);
}

void *
MemoryContextAllocHuge(MemoryContext context, Size size)
{
	return chunk_alloc(size, true, false, false);
}

void *
repalloc(void *pointer, Size size)
{
	return chunk_realloc(pointer, size, false);
}

void *
repalloc_huge(void *pointer, Size size)
{
	return chunk_realloc(pointer, size, true);
}

void
pfree(void *pointer)
{
	FuzzChunk  *c = chunk_of(pointer);

	c->prev->next = c->next;
	c->next->prev = c->prev;
	free(c);
}

char *
pstrdup(const char *in)
{
	Size		len = strlen(in) + 1;
	char	   *out = palloc(len);

	memcpy(out, in, len);
	return out;
}

char *
psprintf(const char *fmt,...)
{
	va_list		ap;
	int			len;
	char	   *out;

	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	out = palloc(len + 1);
	va_start(ap, fmt);
	vsnprintf(out, len + 1, fmt, ap);
	va_end(ap);
	return out;
}

void
FuzzResetMemory(void)
{
	while (chunks.next != &chunks)
		pfree(chunks.next + 1);
}

/* ---- files ---- */

#define FUZZ_MAX_FILES 16
static int	open_files[FUZZ_MAX_FILES];
static int	nopen_files = 0;

int
OpenTransientFile(const char *fileName, int fileFlags)
{
	int			fd;

	if (nopen_files >= FUZZ_MAX_FILES)
		elog(ERROR, "too many transient files open");
	fd = open(fileName, fileFlags, 0600);
	if (fd >= 0)
		open_files[nopen_files++] = fd;
	return fd;
}

int
CloseTransientFile(int fd)
{
	for (int i = 0; i < nopen_files; i++)
		if (open_files[i] == fd)
		{
			open_files[i] = open_files[--nopen_files];
			return close(fd);
		}
	elog(ERROR, "fd %d was not obtained with OpenTransientFile", fd);
	return -1;
}

void
FuzzResetFiles(void)
{
	while (nopen_files > 0)
		close(open_files[--nopen_files]);
}

/* ---- interrupts, wait events, postmaster ---- */

volatile sig_atomic_t InterruptPending = false;
static uint32 wait_event_info;
uint32	   *my_wait_event_info = &wait_event_info;
volatile sig_atomic_t postmaster_possibly_dead = false;

void
ProcessInterrupts(void)
{
}

bool
PostmasterIsAliveInternal(void)
{
	return true;
}

void
proc_exit(int code)
{
	abort();
}

/* ---- the store, as the snapshot loader sees it ---- */

int			kvext_max_keyspaces = 64;

/* heap chunks of the pretend store */
int
KvAllocChunkCount(void)
{
	return 4;
}

/* as keyspace.c checks it; the name must be a terminated string */
void
KvKeyspaceRecoverCreate(uint16 id, const char *name)
{
	if (id >= kvext_max_keyspaces)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("keyspace \"%s\" in the kvext log has id %u, beyond kvext.max_keyspaces (%d)",
						name, id, kvext_max_keyspaces)));
	(void) strlen(name);
}

/*
 * Every byte of key and value is read (the sanitizers see a read past what
 * the loader owns); a store that is full says so, as the real one does,
 * for a write that would take more than FUZZ_STORE_LIMIT bytes.
 */
#define FUZZ_STORE_LIMIT	(64 * 1024 * 1024)

uint32		FuzzStoreSum;

bool
KvStoreRecoverWrite(uint16 ks, const char *key, uint32 keylen,
					const char *val, uint32 vallen, bool binary, int chunk)
{
	if (ks >= kvext_max_keyspaces)
		elog(ERROR, "keyspace id %u out of range", ks);
	if (chunk < -1 || chunk >= KV_ALLOC_MAX_CHUNKS)
		elog(ERROR, "chunk %d out of range", chunk);
	if ((uint64) keylen + vallen > FUZZ_STORE_LIMIT)
		return false;
	for (uint32 i = 0; i < keylen; i++)
		FuzzStoreSum += (uint8) key[i];
	for (uint32 i = 0; i < vallen; i++)
		FuzzStoreSum += (uint8) val[i];
	return true;
}

/* snapread.c publishes the last snapshot loaded (shared memory) */
void
KvSnapshotSetLast(const KvSnapHeader *hdr)
{
}
