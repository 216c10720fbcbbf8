/*-------------------------------------------------------------------------
 *
 * snaprecv.c
 *	  The follower's side of catch-up from a snapshot: kv_repl_snapshot(),
 *	  the SQL function a leader's sender calls, chunk by chunk, to stream
 *	  its snapshot file to a follower that needs log the leader no longer
 *	  has (docs/architecture.md, "Catch-up from a snapshot").
 *
 * Each call holds the append lock, like kv_repl_append, and makes the same
 * checks first: the replication right, the leader is a peer, the cluster id
 * (a new node adopts the group's), the term (a stale one is answered with
 * success = false and our term; a higher one is persisted and followed).
 *
 * A transfer lives in the backend that receives it (the sender's one
 * connection): chunk_offset 0 starts it, or starts it over, in
 * kvext/snapshot.recv.<pid>; each later chunk must start where the last one
 * ended, for the same redo point, size and leader term, else it is an
 * ERROR (the sender starts over).  The chunk that completes the file
 * installs it (log/install.c: checked like a snapshot at recovery,
 * fsynced, then installed crash-safely).  The file of a transfer that
 * does not complete is removed when its backend exits, or by the next
 * recovery.
 *
 * The replication right is EXECUTE on kv_repl_append(); this function,
 * executable by every role, checks that right itself, so a group's grant
 * covers it.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/pg_lsn.h"

#include "kvext.h"
#include "log/apply.h"
#include "log/install.h"
#include "log/visible.h"
#include "log/wal.h"
#include "replication/config.h"
#include "replication/receiver.h"
#include "replication/role.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(kv_repl_snapshot);

/* the transfer this backend receives */
static struct
{
	bool		active;
	bool		cleanup_registered;
	uint64		term;
	KvLsn		redo;
	int64		total;
	int64		received;
	char		path[MAXPGPATH];
}			xfer;

/* on exit: remove the file of a transfer that did not complete */
static void
remove_partial(int code, Datum arg)
{
	if (xfer.active)
		(void) unlink(xfer.path);
	xfer.active = false;
}

/* a chunk that does not continue the transfer */
static void out_of_order(int64 offset) pg_attribute_noreturn();

static void
out_of_order(int64 offset)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("kvext snapshot chunk at offset " INT64_FORMAT " is out of order", offset),
			 errdetail("The transfer in progress has received " INT64_FORMAT " bytes.",
					   xfer.active ? xfer.received : (int64) 0),
			 errhint("A transfer starts at offset 0.")));
}

/*
 * write_chunk
 *		Write len bytes at offset of the transfer's file (created and
 *		truncated at offset 0).
 */
static void
write_chunk(int64 offset, const char *data, Size len)
{
	int			fd;
	Size		done = 0;

	fd = OpenTransientFile(xfer.path,
						   O_WRONLY | PG_BINARY | (offset == 0 ? O_CREAT | O_TRUNC : 0));
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\": %m", xfer.path)));
	while (done < len)
	{
		ssize_t		n;

		errno = 0;
		pgstat_report_wait_start(WAIT_EVENT_DATA_FILE_WRITE);
		n = pg_pwrite(fd, data + done, len - done, offset + done);
		pgstat_report_wait_end();
		if (n <= 0)
		{
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write \"%s\": %m", xfer.path)));
		}
		done += n;
	}
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close \"%s\": %m", xfer.path)));
}

/*
 * receive_chunk
 *		Take one chunk (caller holds the append lock and has checked the
 *		leader); at the last one, install the snapshot.  Returns the bytes
 *		received so far.
 */
static int64
receive_chunk(uint64 term, KvLsn redo, int64 total, int64 offset,
			  const char *data, Size len)
{
	if (offset == 0)
	{
		if (xfer.active)
			(void) unlink(xfer.path);
		if (!xfer.cleanup_registered)
		{
			before_shmem_exit(remove_partial, (Datum) 0);
			xfer.cleanup_registered = true;
		}
		xfer.active = true;
		xfer.term = term;
		xfer.redo = redo;
		xfer.total = total;
		xfer.received = 0;
		snprintf(xfer.path, sizeof(xfer.path), KVEXT_DIR "/" KVEXT_SNAPSHOT_RECV_PREFIX "%d",
				 MyProcPid);
		ereport(LOG,
				(errmsg("kvext follower \"%s\" receives a snapshot from its leader: redo at %X/%X, " INT64_FORMAT " bytes",
						kvext_node_name, LSN_FORMAT_ARGS(redo), total)));
	}
	else if (!xfer.active || offset != xfer.received || term != xfer.term ||
			 redo != xfer.redo || total != xfer.total)
		out_of_order(offset);
	if (offset + (int64) len > total)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("kvext snapshot chunk ends past the snapshot's size " INT64_FORMAT, total)));

	write_chunk(offset, data, len);
	xfer.received = offset + len;
	if (xfer.received < total)
		return xfer.received;

	/*
	 * The last chunk.  A follower that has applied more than the snapshot
	 * holds would go back in time: the leader never sends one then.
	 */
	if (KvApplyFollowerPos() > redo)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("kvext snapshot at %X/%X is older than what this follower has applied (%X/%X)",
						LSN_FORMAT_ARGS(redo), LSN_FORMAT_ARGS(KvApplyFollowerPos()))));
	KvSnapshotInstall(xfer.path, term);
	xfer.active = false;
	return total;
}

/*
 * kv_repl_snapshot(cluster_id bigint, leader text, leader_term bigint,
 *					redo pg_lsn, total_size bigint, chunk_offset bigint,
 *					chunk bytea)
 *	 -> (term bigint, success boolean, received bigint)
 */
Datum
kv_repl_snapshot(PG_FUNCTION_ARGS)
{
	uint64		cluster_id;
	char	   *leader;
	uint64		term;
	KvLsn		redo;
	int64		total;
	int64		offset;
	bytea	   *chunk;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {0};
	uint64		current = 0;
	bool		success = false;
	int64		received = 0;
	LWLock	   *lock = KvRoleLock();

	for (int i = 0; i < 7; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("arguments of kv_repl_snapshot must not be null")));
	KvReplCheckRight(fcinfo);
	cluster_id = (uint64) PG_GETARG_INT64(0);
	leader = text_to_cstring(PG_GETARG_TEXT_PP(1));
	term = (uint64) PG_GETARG_INT64(2);
	redo = (KvLsn) PG_GETARG_LSN(3);
	total = PG_GETARG_INT64(4);
	offset = PG_GETARG_INT64(5);
	chunk = PG_GETARG_BYTEA_PP(6);

	KvReplCheckGroup();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!KvReplIsPeer(leader))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("kvext snapshot from \"%s\" refused: not a peer of this node", leader),
				 errhint("kvext.peers lists the nodes of this node's group.")));
	if ((int64) term <= 0 || total <= 0 || offset < 0 || redo < KVEXT_WAL_START_LSN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kvext snapshot chunk with an invalid term, size, offset or redo point")));

	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (KvReceiverCheckLeader(cluster_id, leader, term, &current))
	{
		received = receive_chunk(term, redo, total, offset,
								 VARDATA_ANY(chunk), VARSIZE_ANY_EXHDR(chunk));
		success = true;
	}
	LWLockRelease(lock);

	values[0] = Int64GetDatum((int64) current);
	values[1] = BoolGetDatum(success);
	values[2] = Int64GetDatum(received);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
