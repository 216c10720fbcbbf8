/*-------------------------------------------------------------------------
 *
 * common.c
 *	  What the fuzzing harnesses share: a private working directory laid
 *	  out like a data directory's kvext/, the log's segment list, CRC
 *	  fix-ups, and reading a log through the real reader as recovery and a
 *	  follower do (FuzzReadLog).
 *
 * Each harness runs in a directory of its own under $TMPDIR (or /tmp),
 * kvext-fuzz.XXXXXX, made at start and removed at exit; src/ opens its
 * files by paths relative to the data directory (kvext/wal/..., kvext/
 * snapshot), so the harness works from there.  A harness killed by a
 * sanitizer leaves its directory behind: scripts/fuzz.sh points TMPDIR
 * into test/fuzz/build/tmp, which make clean removes.
 *
 * CRC fix-ups.  An input whose first byte asks for it gets its CRC32C
 * fields recomputed before it is written, so that the fuzzer reaches what
 * lies behind the checksum (the contents of a record, the end of a
 * snapshot) as well as the checksum check itself.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/reader.h"
#include "log/wal.h"

#include "backend.h"

static char workdir[MAXPGPATH];

/* remove the files of directory dir (no subdirectories), then dir */
static void
remove_dir(const char *dir)
{
	DIR		   *d = opendir(dir);
	struct dirent *de;
	char		path[MAXPGPATH];

	while (d && (de = readdir(d)) != NULL)
	{
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		(void) unlink(path);
	}
	if (d)
		closedir(d);
	(void) rmdir(dir);
}

/* at exit: remove the working directory (kvext/wal/, kvext/, itself) */
static void
leave_work_dir(void)
{
	if (workdir[0] == '\0' || chdir(workdir) != 0)
		return;
	remove_dir(KVEXT_WAL_DIR);
	remove_dir(KVEXT_DIR);
	if (chdir("/") == 0)
		(void) rmdir(workdir);
}

/* path made absolute against the current directory (malloc'd), or NULL */
static char *
absolute(const char *path)
{
	char		cwd[MAXPGPATH];
	char	   *out;

	if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return NULL;
	out = malloc(strlen(cwd) + strlen(path) + 2);
	sprintf(out, "%s/%s", cwd, path);
	return out;
}

/*
 * FuzzEnterWorkDir
 *		Make the private working directory, with kvext/wal in it, and enter
 *		it; it is removed at exit.  libFuzzer opens the paths of its command
 *		line (argc, argv: corpus directories, input files, -artifact_prefix,
 *		-exact_artifact_path, -dict) after this: they are made absolute first.
 */
void
FuzzEnterWorkDir(int *argc, char ***argv)
{
	static const char *const path_flags[] = {
		"-artifact_prefix=", "-exact_artifact_path=", "-dict="
	};
	const char *tmp = getenv("TMPDIR");

	for (int i = 1; i < *argc; i++)
	{
		char	   *arg = (*argv)[i];
		char	   *abs = NULL;

		if (arg[0] != '-')
			abs = absolute(arg);
		for (int f = 0; f < lengthof(path_flags); f++)
		{
			size_t		n = strlen(path_flags[f]);
			char	   *val;

			if (strncmp(arg, path_flags[f], n) != 0 || (val = absolute(arg + n)) == NULL)
				continue;
			abs = malloc(n + strlen(val) + 1);
			sprintf(abs, "%s%s", path_flags[f], val);
			free(val);
		}
		if (abs)
			(*argv)[i] = abs;
	}

	snprintf(workdir, sizeof(workdir), "%s/kvext-fuzz.XXXXXX",
			 tmp && tmp[0] ? tmp : "/tmp");
	if (mkdtemp(workdir) == NULL || chdir(workdir) != 0 ||
		mkdir(KVEXT_DIR, 0700) != 0 || mkdir(KVEXT_WAL_DIR, 0700) != 0)
	{
		perror("kvext fuzz: could not make a working directory");
		exit(1);
	}
	atexit(leave_work_dir);
}

/* write len bytes of data as the file path, replacing it */
void
FuzzWriteFile(const char *path, const uint8_t *data, size_t len)
{
	int			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || (len > 0 && write(fd, data, len) != (ssize_t) len) || close(fd) != 0)
	{
		perror(path);
		abort();
	}
}

/*
 * FuzzFixRecordCrcs
 *		Recompute the CRC32C of each record of the log bytes at buf (len
 *		bytes, the first record at position pos) whose length field fits,
 *		as the writer computes it; stop at the first that does not.
 */
void
FuzzFixRecordCrcs(uint8_t *buf, size_t len, uint64_t pos)
{
	size_t		off = 0;

	while (len - off >= sizeof(KvWalRecord))
	{
		KvWalRecord hdr;
		pg_crc32c	crc;

		memcpy(&hdr, buf + off, sizeof(hdr));
		if (hdr.len < sizeof(KvWalRecord) || hdr.len % 8 != 0 || hdr.len > len - off)
			break;
		INIT_CRC32C(crc);
		COMP_CRC32C(crc, buf + off + sizeof(KvWalRecord), hdr.len - sizeof(KvWalRecord));
		COMP_CRC32C(crc, buf + off + offsetof(KvWalRecord, len),
					sizeof(KvWalRecord) - offsetof(KvWalRecord, len));
		FIN_CRC32C(crc);
		memcpy(buf + off + offsetof(KvWalRecord, crc), &crc, sizeof(crc));
		off += hdr.len;
	}
}

/* ---- the log's segments, as wal.c lists them ---- */

#define FUZZ_MAX_SEGS	4

static KvLsn seg_starts[FUZZ_MAX_SEGS];
static int	nsegs = 0;

void
KvWalSegmentPath(char *path, KvLsn start)
{
	snprintf(path, MAXPGPATH, KVEXT_WAL_DIR "/%016llX",
			 (unsigned long long) start);
}

/* nothing is ever pending: the harness writes whole logs */
void
KvWalWritePending(void)
{
}

/* no log is open: readers list the segments */
KvLsn
KvWalCurrentSegment(void)
{
	return InvalidKvLsn;
}

/* the segments FuzzReadLog wrote, ascending, palloc'd */
int
KvWalListSegments(KvLsn **starts)
{
	*starts = palloc(sizeof(KvLsn) * FUZZ_MAX_SEGS);
	memcpy(*starts, seg_starts, sizeof(KvLsn) * nsegs);
	return nsegs;
}

/* ---- reading a log ---- */

/*
 * One write of a TXN record, checked by KvLogForEachOp: decoded as apply.c
 * decodes it (a keyspace name checked, key and value read).
 */
static void
fuzz_op(KvLogReader *r, void *arg, const KvWalOp *op, const char *key)
{
	char		name[NAMEDATALEN];

	if (op->op == KV_WOP_KS_CREATE)
		KvLogKeyspaceName(r, key, op->keylen, name);
	for (uint32 i = 0; i < op->keylen + op->vallen; i++)
		FuzzStoreSum += (uint8) key[i];
}

/*
 * FuzzReadLog
 *		Write the log bytes at data as segment files (one segment starting
 *		at KVEXT_WAL_START_LSN, or split at split bytes into two, the second
 *		starting at the first's end plus gap), then read the log as
 *		recovery does: every record, the writes of every TXN record (as
 *		apply.c decodes them), and after a bad record the search for a
 *		valid one behind it.  Errors propagate to the caller's PG_TRY.
 */
void
FuzzReadLog(const uint8_t *data, size_t len, size_t split, int64_t gap)
{
	char		path[MAXPGPATH];
	KvLogReader *r;
	KvLogReadResult res;
	int			nrec = 0;

	for (int i = 0; i < nsegs; i++)
	{
		KvWalSegmentPath(path, seg_starts[i]);
		(void) unlink(path);
	}
	nsegs = 0;
	seg_starts[nsegs++] = KVEXT_WAL_START_LSN;
	if (split > 0 && split < len)
	{
		seg_starts[nsegs] = KVEXT_WAL_START_LSN + split + gap;
		if (seg_starts[nsegs] <= seg_starts[0])
			seg_starts[nsegs] = KVEXT_WAL_START_LSN + split;
		nsegs++;
	}
	else
		split = len;
	KvWalSegmentPath(path, seg_starts[0]);
	FuzzWriteFile(path, data, split);
	if (nsegs > 1)
	{
		KvWalSegmentPath(path, seg_starts[1]);
		FuzzWriteFile(path, data + split, len - split);
	}

	r = KvLogReaderBegin(KVEXT_WAL_START_LSN);
	while ((res = KvLogReadNext(r)) == KV_READ_RECORD && nrec++ < 10000)
	{
		if (r->rec->type == KV_REC_TXN)
			KvLogForEachOp(r, fuzz_op, NULL);
	}
	if (res == KV_READ_BAD)
		(void) KvLogReaderValidAfter(r);
	KvLogReaderEnd(r);
}
