/*-------------------------------------------------------------------------
 *
 * cluster.c
 *	  Status of the replication group: kv_cluster_status() (this node's
 *	  role, term, leader and commit position) and kv_replication_status()
 *	  (per peer, what this node's log sender knows of it).
 *
 * Both read shared memory only (visible.c's positions and role, the
 * control file's copy, the senders' published status under their
 * spinlock); neither takes a lock a commit needs, and neither waits for
 * recovery, so they answer while the store is unavailable.  Passwords are
 * never shown: the conninfo printed is config.c's conninfo_shown.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "kvext.h"
#include "shmem.h"
#include "log/control.h"
#include "log/recovery.h"
#include "log/visible.h"
#include "log/wal.h"
#include "replication/config.h"
#include "replication/sender.h"

static bool
store_ready(void)
{
	return pg_atomic_read_u32(KvStateFlag) == KV_STATE_READY;
}

PG_FUNCTION_INFO_V1(kv_cluster_status);

/*
 * kv_cluster_status() returns record (node text, role text, term bigint,
 *		leader text, commit_lsn pg_lsn, applied_lsn pg_lsn,
 *		cluster_id bigint, group_size integer, config_error text)
 *
 * role is 'single' for a node without peers (commit_lsn is then its flush
 * position and applied_lsn what it applied), else 'leader' or 'follower'
 * (applied_lsn: the applied-majority position on the leader); NULL with
 * config_error set when the group is misconfigured.  term, commit_lsn,
 * applied_lsn and cluster_id are NULL until recovery has finished.
 */
#define KV_CLUSTER_STATUS_COLS 9

Datum
kv_cluster_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[KV_CLUSTER_STATUS_COLS];
	bool		nulls[KV_CLUSTER_STATUS_COLS];
	const KvGroupConfig *cfg;
	bool		group;
	char		leader[NAMEDATALEN];

	if (!KvShmemAttached)
		KvReportNotPreloaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	cfg = KvReplConfig();
	group = cfg->npeers > 0;
	memset(nulls, 0, sizeof(nulls));

	values[0] = CStringGetTextDatum(kvext_node_name ? kvext_node_name : "");
	nulls[0] = (kvext_node_name == NULL || kvext_node_name[0] == '\0');

	leader[0] = '\0';
	if (cfg->checked && !cfg->valid)
		nulls[1] = true;
	else if (!group)
		values[1] = CStringGetTextDatum("single");
	else if (KvVisibleIsLeader())
	{
		values[1] = CStringGetTextDatum("leader");
		strlcpy(leader, cfg->node_name, NAMEDATALEN);
	}
	else
	{
		values[1] = CStringGetTextDatum("follower");
		KvVisibleLeaderName(leader);
	}
	values[3] = CStringGetTextDatum(leader);
	nulls[3] = (leader[0] == '\0');

	if (store_ready())
	{
		KvControl	control;

		KvControlGet(&control);
		values[2] = Int64GetDatum((int64) control.term);
		values[4] = LSNGetDatum(KvWalVisiblePos());
		values[5] = LSNGetDatum(group ? KvVisibleAppliedPos() : KvWalApplyPos());
		values[6] = Int64GetDatum((int64) control.cluster_id);
	}
	else
		nulls[2] = nulls[4] = nulls[5] = nulls[6] = true;

	values[7] = Int32GetDatum(cfg->npeers + 1);
	if (cfg->checked && !cfg->valid)
		values[8] = CStringGetTextDatum(cfg->error);
	else
		nulls[8] = true;

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(kv_replication_status);

/*
 * kv_replication_status() returns table (peer text, conninfo text,
 *		state text, sent_lsn pg_lsn, flushed_lsn pg_lsn, applied_lsn pg_lsn,
 *		lag_bytes bigint, lag_time interval, last_reply_time timestamptz,
 *		connected_since timestamptz, last_error text,
 *		last_error_time timestamptz)
 *
 * One row per peer in kvext.peers, as this node's sender for it sees it.
 * The positions are those of the current leadership (NULL on a follower,
 * or before the peer first answered).  lag_bytes is this node's flush
 * position minus the peer's flushed position; lag_time is how long the
 * oldest record the peer lacks has been flushed here (0 when it lacks
 * none).  last_error stays after a recovery, with its time, for
 * diagnosis.  Granted to pg_monitor (kvext--0.1.sql): the conninfo,
 * without its password, names hosts and users.
 */
#define KV_REPL_STATUS_COLS 12

Datum
kv_replication_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const KvGroupConfig *cfg;
	TimestampTz now = GetCurrentTimestamp();
	uint64		term = 0;
	KvLsn		flush = InvalidKvLsn;

	if (!KvShmemAttached)
		KvReportNotPreloaded();
	InitMaterializedSRF(fcinfo, 0);

	cfg = KvReplConfig();
	if (store_ready())
	{
		KvControl	control;

		KvControlGet(&control);
		term = control.term;
		flush = KvWalFlushPos();
	}

	for (int i = 0; i < cfg->npeers; i++)
	{
		KvPeerStatus st;
		Datum		values[KV_REPL_STATUS_COLS];
		bool		nulls[KV_REPL_STATUS_COLS];
		bool		current;

		KvSenderGetStatus(i, &st);
		current = (term != 0 && st.term == term && strcmp(st.state, "inactive") != 0);
		memset(nulls, 0, sizeof(nulls));

		values[0] = CStringGetTextDatum(cfg->peers[i].name);
		values[1] = CStringGetTextDatum(cfg->peers[i].conninfo_shown);
		values[2] = CStringGetTextDatum(st.state);
		if (current && st.sent != InvalidKvLsn)
			values[3] = LSNGetDatum(st.sent);
		else
			nulls[3] = true;
		if (current && st.last_reply != 0)
		{
			values[4] = LSNGetDatum(st.flushed);
			values[5] = LSNGetDatum(st.applied);
			values[6] = Int64GetDatum(flush > st.flushed ? (int64) (flush - st.flushed) : 0);
			values[7] = DirectFunctionCall2(timestamp_mi,
											TimestampTzGetDatum(now),
											TimestampTzGetDatum(st.behind_since != 0 ?
																st.behind_since : now));
		}
		else
			nulls[4] = nulls[5] = nulls[6] = nulls[7] = true;
		values[8] = TimestampTzGetDatum(st.last_reply);
		nulls[8] = (st.last_reply == 0);
		values[9] = TimestampTzGetDatum(st.connected_since);
		nulls[9] = (st.connected_since == 0);
		values[10] = CStringGetTextDatum(st.last_error);
		nulls[10] = (st.last_error[0] == '\0');
		values[11] = TimestampTzGetDatum(st.last_error_time);
		nulls[11] = (st.last_error_time == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
