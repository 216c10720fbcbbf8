/*-------------------------------------------------------------------------
 *
 * fuzz_repl_append.c
 *	  libFuzzer harness: the follower's decoding of a leader's append
 *	  (kv_repl_append, src/replication/receiver.c): the batch check
 *	  (KvLogCheckBatch, src/log/reader.c), then, for a batch it accepts,
 *	  the follower's log read back and applied as apply.c decodes it.
 *
 * Input: byte 0 holds flags (bit 0: recompute the records' CRCs first);
 * byte 1 is the term of the record before the batch (prev_term), byte 2
 * the leader's term; the rest is the batch's records, the first at
 * position KVEXT_WAL_START_LSN (a follower's new log).  The other steps of
 * kv_repl_append (cluster id, terms, the log's shared state) act on
 * shared memory and are tested by the TAP tests (150_repl_append).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "log/reader.h"
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
	uint8_t    *batch;
	size_t		len;

	if (size < 3)
		return 0;
	len = size - 3;
	batch = malloc(Max(len, 1));
	memcpy(batch, data + 3, len);
	if (data[0] & 1)
		FuzzFixRecordCrcs(batch, len, KVEXT_WAL_START_LSN);
	PG_TRY();
	{
		KvLsn		end;

		/* a bad batch is refused whole, as kv_repl_append refuses it */
		if (KvLogCheckBatch((const char *) batch, len, KVEXT_WAL_START_LSN,
							data[1], data[2], &end) == NULL)
		{
			if (end != KVEXT_WAL_START_LSN + len)
				abort();		/* an accepted batch ends where its bytes do */
			FuzzReadLog(batch, len, 0, 0);
		}
	}
	PG_CATCH();
	{
		/* an accepted batch the apply refuses is an ERROR, as in a server */
	}
	PG_END_TRY();
	FuzzResetFiles();
	FuzzResetMemory();
	free(batch);
	return 0;
}
