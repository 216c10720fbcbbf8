/*-------------------------------------------------------------------------
 *
 * fuzz_snapshot.c
 *	  libFuzzer harness: kvext's snapshot reader (src/log/snapread.c) on a
 *	  snapshot file made of the input, checked as a follower checks a
 *	  streamed one (KvSnapshotCheck) or loaded as recovery loads one
 *	  (KvSnapshotLoad, into the pretend store of backend.c).
 *
 * Input: byte 0 holds flags (bit 0: recompute the trailer's CRC32C over
 * the file first; bit 1: load rather than check; bit 2: with bit 1, leave
 * out the keys that start with 's', as recovery leaves out keys the log
 * rewrites); the rest is the file.  A damaged file must end in an ERROR,
 * never in a crash, a sanitizer report or an allocation of what a length
 * field claims.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "log/snapshot.h"

#include "backend.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	FuzzEnterWorkDir(argc, argv);
	return 0;
}

/* recovery's skip function, for keys starting with 's' */
static bool
skip_s(void *arg, uint16 keyspace, const char *key, uint32 keylen)
{
	return keylen > 0 && key[0] == 's';
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *file;
	size_t		len;
	uint8_t		flags;

	if (size < 1)
		return 0;
	flags = data[0];
	len = size - 1;
	file = malloc(Max(len, 1));
	memcpy(file, data + 1, len);
	if ((flags & 1) && len >= sizeof(pg_crc32c))
	{
		pg_crc32c	crc;

		INIT_CRC32C(crc);
		COMP_CRC32C(crc, file, len - sizeof(crc));
		FIN_CRC32C(crc);
		memcpy(file + len - sizeof(crc), &crc, sizeof(crc));
	}
	FuzzWriteFile(KVEXT_SNAPSHOT_FILE, file, len);
	free(file);

	PG_TRY();
	{
		KvSnapshotInfo info;
		KvLsn		redo;
		uint64		term;

		if (flags & 2)
			(void) KvSnapshotLoad(&redo, &term, (flags & 4) ? skip_s : NULL, NULL);
		else
		{
			(void) KvSnapshotPeek(&redo, &term);
			KvSnapshotCheck(KVEXT_SNAPSHOT_FILE, &info);
		}
	}
	PG_CATCH();
	{
		/* a damaged snapshot is an ERROR: what the server reports */
	}
	PG_END_TRY();
	FuzzResetFiles();
	FuzzResetMemory();
	return 0;
}
