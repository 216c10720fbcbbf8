/*-------------------------------------------------------------------------
 *
 * fuzz_log.c
 *	  libFuzzer harness: kvext's log reader (src/log/reader.c) on log
 *	  segments made of the input, as recovery reads them.
 *
 * Input: byte 0 holds flags (bit 0: recompute the records' CRCs first;
 * bit 1: split the log into two segment files; bits 2-5: with bit 1, move
 * the second file's start by -8..7 records' worth of 8 bytes, so that it
 * does not start where the first ends); bytes 1-2 the split point (little
 * endian, modulo the length); the rest is the log, its first record at
 * position KVEXT_WAL_START_LSN.  Every record is read and checked, the
 * writes of each TXN record decoded as apply.c decodes them, and after a
 * bad record the reader searches for a valid one behind it.  A damaged
 * input must end in an ERROR or a KV_READ_BAD verdict, never in a crash or
 * a sanitizer report.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "log/wal.h"

#include "backend.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	FuzzEnterWorkDir(argc, argv);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *log;
	size_t		len;
	size_t		split = 0;
	int64_t		gap = 0;

	if (size < 3)
		return 0;
	len = size - 3;
	log = malloc(Max(len, 1));
	memcpy(log, data + 3, len);
	if (data[0] & 1)
		FuzzFixRecordCrcs(log, len, KVEXT_WAL_START_LSN);
	if ((data[0] & 2) && len > 0)
	{
		split = (data[1] | (data[2] << 8)) % len;
		gap = (int64_t) (((data[0] >> 2) & 15) - 8) * 8;
	}
	PG_TRY();
	{
		FuzzReadLog(log, len, split, gap);
	}
	PG_CATCH();
	{
		/* a damaged log is an ERROR: what the server reports */
	}
	PG_END_TRY();
	FuzzResetFiles();
	FuzzResetMemory();
	free(log);
	return 0;
}
