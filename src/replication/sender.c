/*-------------------------------------------------------------------------
 *
 * sender.c
 *	  The leader's log senders: one background worker per peer, "kvext
 *	  sender <peer>", that ships kvext's log to that peer over libpq and,
 *	  after every answer, advances the group's commit position.
 *
 * The protocol is docs/architecture.md, "Replication"; this file is the
 * leader's half of "Messages".  In short, a sender:
 *
 *	- is active only while this node leads (KvVisibleIsLeader) and the
 *	  store is ready; otherwise it closes its connection and sleeps on its
 *	  latch (KvVisibleSetRole and every local flush set it);
 *	- connects with PQconnectStartParams/PQconnectPoll and WaitLatchOrSocket
 *	  (never a blocking libpq call), honouring connect_timeout (default
 *	  KVEXT_SENDER_CONNECT_TIMEOUT), then puts the connection in
 *	  non-blocking pipeline mode;
 *	- keeps up to KVEXT_SENDER_PIPELINE batches in flight, each about
 *	  KVEXT_SENDER_BATCH bytes of whole records read with the log reader
 *	  from the peer's next position, and only below the local written
 *	  position: records go out while the leader's own fsync runs, so the
 *	  followers' fsyncs overlap it (kv_repl_append($1..$7), prepared once
 *	  per connection, records as a binary bytea, each batch followed by a
 *	  sync so it is its own transaction);
 *	  a smaller batch goes only when nothing is in flight, so that the
 *	  commits arriving meanwhile share the follower's next fsync;
 *	- sends an empty batch (a heartbeat) when it has nothing else to send
 *	  for a second, or at once when the commit position has moved past
 *	  what the peer was told;
 *	- reads the answers in order: success moves the peer's positions;
 *	  a higher term makes the node step down; a mismatch drains the
 *	  pipeline and resends from the peer's hint; an ERROR (or a lost
 *	  connection, or no answer for KVEXT_SENDER_REPLY_TIMEOUT) closes the
 *	  connection and retries after a backoff that doubles from 100 ms to
 *	  10 s.  One LOG line per outage: when it starts, and "reconnected ...
 *	  after N attempts" at the first successful answer.
 *
 * Where a batch starts.  On (re)connection the sender starts at the
 * peer's last matched position in this term, or else at the end of the
 * local log (Raft's nextIndex), as a heartbeat: a peer that lacks it
 * answers with a hint, the end of its committed prefix, a record boundary
 * both logs share, and the sender resends from there.  The term of the
 * record ending at a position (prev_term) is found by reading its segment
 * from the start (term_at).  A log that starts at the first record
 * (KVEXT_WAL_START_LSN) is sent with prev (0/0, term 0).
 *
 * What counts as flushed.  The peer's flushed position is taken as the
 * smaller of what it reports and the end of the batch it just accepted:
 * only that much of its log is known to match ours (its log may go on
 * with a stale tail of another term).  For the same reason the commit
 * position sent with a batch is capped at the batch's end, so a follower
 * never takes records the append did not check for committed.
 *
 * Catch-up from a snapshot.  A peer that needs log this node has removed
 * gets the snapshot file instead (section "Catch-up from a snapshot"), then
 * appends from its redo point.  While connected, a sender holds back
 * segment removal from where its peer reads (KvWalSetHold).
 *
 * Majority.  After every successful answer, and when this node's own
 * flush position moves (advance_commit): the commit position is the
 * largest position flushed by a majority (KvReplQuorum nodes), counting
 * this node's own KvWalFlushPos() and each peer's flushed position from
 * this term, and never past this node's own flush position: a committed
 * record must survive this node's crash, and its peers' votes rely on that
 * (role.c: a leader whose machine restarted wins a new term with a log
 * shorter than theirs, campaign.c).  It counts only once it reaches the
 * end of this node's first record of its current term (Raft: earlier
 * terms' records commit indirectly).  The applied-majority position is the
 * same over applied positions, counting the leader's own flush position (the
 * leader applies a record when it commits), and never above the commit
 * position.  Both go to KvVisibleAdvance, which only moves forward, so
 * senders computing concurrently cannot move it back.
 *
 * Shared memory: KvSenderShared, one KvPeerStatus per peer under one
 * spinlock (copies in and out, never an error or a call while held).  Each
 * slot is written by its own sender and read by the others (majority) and
 * by kv_replication_status().
 *
 * Errors inside the loop (reading the log, out of memory) are caught by
 * the worker's own sigsetjmp block, as PostgreSQL's wal writer does: they
 * count as a failure of the connection (logged once per outage), never
 * end the worker.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <setjmp.h>
#include <sys/stat.h>
#include <fcntl.h>

#include "access/xlogdefs.h"
#include "catalog/pg_type_d.h"
#include "libpq-fe.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "kvext.h"
#include "log/control.h"
#include "log/reader.h"
#include "log/recovery.h"
#include "log/snapshot.h"
#include "log/visible.h"
#include "log/wal.h"
#include "replication/config.h"
#include "replication/role.h"
#include "replication/sender.h"
#include "worker.h"

#define KVEXT_SENDER_PIPELINE		4	/* batches in flight */
#define KVEXT_SENDER_BATCH			(1024 * 1024)	/* bytes of records */
#define KVEXT_SENDER_HEARTBEAT_MS	1000
#define KVEXT_SENDER_BACKOFF_MIN_MS 100
#define KVEXT_SENDER_BACKOFF_MAX_MS 10000
#define KVEXT_SENDER_CONNECT_TIMEOUT 10 /* s, if the conninfo sets none */
#define KVEXT_SENDER_REPLY_TIMEOUT	60000	/* ms without an answer */
#define KVEXT_SENDER_SAMPLES		64	/* flush samples, for lag_time */
#define KVEXT_SENDER_MAX_RECORD		(MaxAllocSize - 1024)	/* fits a bytea */
#define KVEXT_SENDER_SNAP_CHUNK		(1024 * 1024)	/* bytes of snapshot per call */

static const char append_sql[] =
"SELECT term, success, flushed, applied, hint FROM kv_repl_append($1, $2, $3, $4, $5, $6, $7)";
/* append_sql is prepared once per connection under this name */
#define KVEXT_SENDER_APPEND_STMT	"kvext_append"
static const Oid append_types[7] = {INT8OID, TEXTOID, INT8OID, PG_LSNOID, INT8OID, PG_LSNOID, BYTEAOID};
static const char snapshot_sql[] =
"SELECT term, success, received FROM kv_repl_snapshot($1, $2, $3, $4, $5, $6, $7)";

PGDLLEXPORT void KvSenderMain(Datum arg);

/* ----------------------------------------------------------------
 * Shared state
 * ---------------------------------------------------------------- */

typedef struct KvSenderShared
{
	slock_t		mutex;
	KvPeerStatus peers[KVEXT_MAX_PEERS];
} KvSenderShared;

static KvSenderShared *snd = NULL;

Size
KvSenderShmemSize(void)
{
	return sizeof(KvSenderShared);
}

/*
 * KvSenderShmemInit
 *		Create or attach the shared state (caller holds AddinShmemInitLock).
 */
void
KvSenderShmemInit(void)
{
	bool		found;

	snd = ShmemInitStruct("kvext senders", sizeof(KvSenderShared), &found);
	if (!found)
	{
		memset(snd, 0, sizeof(KvSenderShared));
		SpinLockInit(&snd->mutex);
		for (int i = 0; i < KVEXT_MAX_PEERS; i++)
			strlcpy(snd->peers[i].state, "inactive", KVEXT_PEER_STATE_LEN);
	}
}

/*
 * KvSenderGetStatus
 *		Copy peer slot's published status into *out.
 */
void
KvSenderGetStatus(int slot, KvPeerStatus *out)
{
	Assert(slot >= 0 && slot < KVEXT_MAX_PEERS);
	SpinLockAcquire(&snd->mutex);
	*out = snd->peers[slot];
	SpinLockRelease(&snd->mutex);
}

/* ----------------------------------------------------------------
 * Registration (postmaster)
 * ---------------------------------------------------------------- */

/*
 * KvSenderRegisterWorkers
 *		Register one worker per peer named in kvext.peers, in order, so that
 *		worker i serves config.c's peers[i].  Runs in the postmaster, before
 *		shared memory exists, so it splits the setting itself: only the
 *		names, as "name:conninfo; ...".  config.c checks the setting; a
 *		sender whose name does not match its slot there (a malformed
 *		setting) stays idle, and every kv function reports the error.
 */
void
KvSenderRegisterWorkers(void)
{
	char	   *copy;
	char	   *item;
	char	   *saveptr = NULL;
	int			slot = 0;

	if (kvext_peers == NULL || kvext_peers[0] == '\0')
		return;
	copy = pstrdup(kvext_peers);
	for (item = strtok_r(copy, ";", &saveptr); item != NULL && slot < KVEXT_MAX_PEERS;
		 item = strtok_r(NULL, ";", &saveptr))
	{
		char	   *colon = strchr(item, ':');
		char	   *name = item;
		char	   *end;
		BackgroundWorker worker;

		while (*name == ' ' || *name == '\t' || *name == '\n')
			name++;
		if (*name == '\0')
			continue;			/* an empty item (a trailing ';') */
		end = colon ? colon : name + strlen(name);
		while (end > name && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		*end = '\0';

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 1;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "kvext");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "KvSenderMain");
		snprintf(worker.bgw_name, BGW_MAXLEN, "kvext sender %s", name);
		snprintf(worker.bgw_type, BGW_MAXLEN, "kvext sender %s", name);
		worker.bgw_main_arg = Int32GetDatum(slot);
		RegisterBackgroundWorker(&worker);
		slot++;
	}
	pfree(copy);
}

/* ----------------------------------------------------------------
 * The worker's own state
 * ---------------------------------------------------------------- */

typedef enum SenderPhase
{
	PHASE_INACTIVE,				/* not leading: no connection */
	PHASE_BACKOFF,				/* waiting to (re)connect */
	PHASE_CONNECTING,			/* PQconnectPoll in progress */
	PHASE_STREAMING				/* pipeline mode */
} SenderPhase;

/* one batch in flight, in the order sent */
typedef struct Batch
{
	KvLsn		start;			/* prev_end of the append */
	KvLsn		end;			/* start + bytes of records */
	TimestampTz sent_at;
	bool		snap;			/* a snapshot chunk: end is its end offset */
	bool		prep;			/* the connection's PREPARE of append_sql */
} Batch;

typedef struct FlushSample
{
	KvLsn		lsn;
	TimestampTz time;
} FlushSample;

typedef struct Sender
{
	int			slot;
	const KvPeer *peer;
	char		app_name[NAMEDATALEN + 16];
	int			connect_timeout_ms;

	SenderPhase phase;
	PGconn	   *conn;
	bool		have_fd;		/* AcquireExternalFD done for conn */
	PostgresPollingStatusType poll;
	TimestampTz connect_deadline;
	bool		want_write;		/* PQflush left data to send */

	/* outages: one LOG line each */
	TimestampTz retry_at;
	int			backoff_ms;
	int			attempts;		/* connection attempts in this outage */
	bool		in_outage;		/* its LOG line was written */

	/* the leadership being served */
	uint64		term;			/* 0: not active */
	uint64		cluster_id;
	KvLsn		term_start_end; /* end of our first record of term */

	/* shipping */
	bool		next_known;
	KvLsn		next;			/* where the next batch starts */
	uint64		next_prev_term; /* term of the record ending at next */
	KvLsn		matched;		/* peer's log matches ours up to here */
	KvLsn		applied;
	KvLsn		commit_sent;	/* largest commit position sent */
	KvLsn		flush_counted;	/* our flush position advance_commit last
								 * counted */
	TimestampTz last_send;
	KvLogReader *reader;
	MemoryContext reader_cxt;
	MemoryContext batch_cxt;
	Batch		flight[KVEXT_SENDER_PIPELINE];
	int			nflight;
	bool		resync;			/* a mismatch: drain, then resend */
	KvLsn		resync_from;

	/* streaming the snapshot (snap_fd >= 0): see "Catch-up" below */
	int			snap_fd;
	KvLsn		snap_redo;
	uint64		snap_redo_term;
	int64		snap_size;
	int64		snap_sent;		/* bytes sent (in chunks) */

	/* (flush position, time) samples not yet acknowledged, oldest first */
	FlushSample samples[KVEXT_SENDER_SAMPLES];
	int			nsamples;
} Sender;

static Sender *S = NULL;

/* catch-up from a snapshot (below) */
static bool log_lacks(KvLsn pos);
static void start_snapshot(KvLsn needed);
static void snapshot_close(void);
static bool send_snapshot_chunk(void);
static bool handle_snapshot_reply(PGresult *res, Batch *b);
static void publish_hold(void);

/* publish part of this sender's status */
static void
publish_state(const char *state)
{
	SpinLockAcquire(&snd->mutex);
	strlcpy(snd->peers[S->slot].state, state, KVEXT_PEER_STATE_LEN);
	SpinLockRelease(&snd->mutex);
}

static void
publish_error(const char *msg)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&snd->mutex);
	strlcpy(snd->peers[S->slot].last_error, msg, KVEXT_PEER_ERROR_LEN);
	snd->peers[S->slot].last_error_time = now;
	SpinLockRelease(&snd->mutex);
}

/* behind_since: the time of the oldest flush sample the peer lacks */
static TimestampTz
behind_since(void)
{
	return S->nsamples > 0 ? S->samples[0].time : 0;
}

static void
publish_positions(void)
{
	TimestampTz since = behind_since();

	SpinLockAcquire(&snd->mutex);
	snd->peers[S->slot].term = S->term;
	snd->peers[S->slot].flushed = S->matched;
	snd->peers[S->slot].applied = S->applied;
	snd->peers[S->slot].behind_since = since;
	SpinLockRelease(&snd->mutex);
}

/*
 * sample_flush
 *		Note when the local flush position moved (for lag_time), and drop
 *		the samples the peer has acknowledged.  With the ring full, the
 *		newest sample takes the new position and keeps its time, so the
 *		oldest time stays exact.
 */
static void
sample_flush(void)
{
	KvLsn		flush = KvWalFlushPos();
	int			drop = 0;

	if (flush > S->matched &&
		(S->nsamples == 0 || S->samples[S->nsamples - 1].lsn < flush))
	{
		if (S->nsamples == KVEXT_SENDER_SAMPLES)
			S->samples[S->nsamples - 1].lsn = flush;
		else
		{
			S->samples[S->nsamples].lsn = flush;
			S->samples[S->nsamples].time = GetCurrentTimestamp();
			S->nsamples++;
		}
	}
	while (drop < S->nsamples && S->samples[drop].lsn <= S->matched)
		drop++;
	if (drop > 0)
	{
		memmove(S->samples, S->samples + drop, (S->nsamples - drop) * sizeof(FlushSample));
		S->nsamples -= drop;
	}
	/* published at once: a peer that stopped answering falls behind too */
	if (S->term != 0)
	{
		TimestampTz since = behind_since();

		SpinLockAcquire(&snd->mutex);
		snd->peers[S->slot].behind_since = since;
		SpinLockRelease(&snd->mutex);
	}
}

/* ----------------------------------------------------------------
 * Reading the log
 * ---------------------------------------------------------------- */

static void
reader_close(void)
{
	if (S->reader)
		KvLogReaderEnd(S->reader);
	S->reader = NULL;
	MemoryContextReset(S->reader_cxt);
}

/* a reader at pos (a record boundary), in the reader context */
static void
reader_open(KvLsn pos)
{
	MemoryContext old;

	reader_close();
	old = MemoryContextSwitchTo(S->reader_cxt);
	S->reader = KvLogReaderBegin(pos);
	MemoryContextSwitchTo(old);
}

/*
 * read_record
 *		The next record of the sender's reader.  The caller knows there is a
 *		flushed record at S->reader->pos.  A reader lists the segments and
 *		takes a segment's size when it opens it, and the log moves on: at
 *		the end of the listed segments, or at a record that seems to run
 *		past the end of its file (a record larger than what is left of its
 *		segment makes the file longer), the reader is opened again at the
 *		same position, once.  Anything else is an ERROR.
 */
static KvWalRecord *
read_record(void)
{
	KvLsn		pos = S->reader->pos;

	for (int tries = 0; tries < 2; tries++)
	{
		KvLogReadResult res = KvLogReadNext(S->reader);

		if (res == KV_READ_RECORD)
			return S->reader->rec;
		if (res == KV_READ_BAD && tries > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("cannot read the kvext log at %X/%X to ship it: %s",
							LSN_FORMAT_ARGS(pos), S->reader->why)));
		reader_open(pos);
	}
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("the kvext log ends at %X/%X, before its flush position %X/%X",
					LSN_FORMAT_ARGS(pos), LSN_FORMAT_ARGS(KvWalFlushPos()))));
	return NULL;				/* keep compiler quiet */
}

/*
 * term_at
 *		The term of this node's record that ends at pos (0 for the start of
 *		the log), read from the start of its segment.  ERROR if pos is not a
 *		record boundary of the local log, or its segment was removed.
 */
static uint64
term_at(KvLsn pos)
{
	KvLsn	   *segs;
	int			nsegs;
	KvLsn		from = InvalidKvLsn;
	uint64		term = 0;
	KvLsn		snap_redo;

	if (pos <= KVEXT_WAL_START_LSN)
		return 0;
	nsegs = KvWalListSegments(&segs);
	for (int i = 0; i < nsegs; i++)
		if (segs[i] < pos)
			from = segs[i];
	pfree(segs);
	/* the record ending at our snapshot's redo point may be gone */
	if (from == InvalidKvLsn && KvSnapshotRedoTerm(&snap_redo, &term) && snap_redo == pos)
		return term;
	if (from == InvalidKvLsn)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the kvext log file containing position %X/%X is missing",
						LSN_FORMAT_ARGS(pos))));
	reader_open(from);
	while (S->reader->pos < pos)
		term = read_record()->term;
	if (S->reader->pos != pos)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("position %X/%X is not a record boundary of this node's kvext log",
						LSN_FORMAT_ARGS(pos))));
	return term;
}

/*
 * term_start_end
 *		The end of this node's first record of term: the commit position
 *		counts only from there.  Looks at the first record of each segment,
 *		newest first, then reads the segment where term begins.  If every
 *		kept record is of term, returns the end of the oldest one (the
 *		term's first record, or one after it if that was removed with its
 *		segment: either way nothing older is counted).
 */
static KvLsn
term_start_end(uint64 term)
{
	KvLsn	   *segs;
	int			nsegs;
	KvLsn		flush = KvWalFlushPos();
	KvLsn		result = InvalidKvLsn;
	int			i;

	nsegs = KvWalListSegments(&segs);
	for (i = nsegs - 1; i >= 0; i--)
	{
		if (segs[i] >= flush)
			continue;
		reader_open(segs[i]);
		if (read_record()->term < term)
			break;
	}
	if (i < 0)
	{
		/* the oldest kept record is of term: the term starts there or before */
		if (nsegs > 0 && segs[0] < flush)
		{
			reader_open(segs[0]);
			(void) read_record();
			result = S->reader->pos;
		}
	}
	else
	{
		reader_open(segs[i]);
		while (S->reader->pos < flush)
		{
			if (read_record()->term >= term)
			{
				result = S->reader->pos;
				break;
			}
		}
	}
	pfree(segs);
	reader_close();
	/* no record of term yet: nothing commits until there is */
	return (result == InvalidKvLsn) ? PG_UINT64_MAX : result;
}

/* ----------------------------------------------------------------
 * Majority
 * ---------------------------------------------------------------- */

static bool may_lead(void);
static void empty_leader_check(void);

static int
cmp_lsn_desc(const void *a, const void *b)
{
	KvLsn		x = *(const KvLsn *) a;
	KvLsn		y = *(const KvLsn *) b;

	return (x < y) ? 1 : (x > y) ? -1 : 0;
}

/*
 * advance_commit
 *		Compute the commit and applied-majority positions from every peer's
 *		published positions of this term and this node's flush position,
 *		and hand them to KvVisibleAdvance (see the file header).
 */
static void
advance_commit(void)
{
	const KvGroupConfig *cfg = KvReplConfig();
	KvLsn		flushed[KVEXT_MAX_PEERS + 1];
	KvLsn		applied[KVEXT_MAX_PEERS + 1];
	int			n = cfg->npeers + 1;
	int			quorum = KvReplQuorum();
	KvLsn		commit;
	KvLsn		app;
	KvLsn		own_flush;

	own_flush = KvWalFlushPos();
	flushed[0] = applied[0] = own_flush;
	SpinLockAcquire(&snd->mutex);
	for (int i = 0; i < cfg->npeers; i++)
	{
		bool		current = (snd->peers[i].term == S->term);

		flushed[i + 1] = current ? snd->peers[i].flushed : InvalidKvLsn;
		applied[i + 1] = current ? snd->peers[i].applied : InvalidKvLsn;
	}
	SpinLockRelease(&snd->mutex);

	if (quorum < 1 || quorum > n)
		return;
	qsort(flushed, n, sizeof(KvLsn), cmp_lsn_desc);
	qsort(applied, n, sizeof(KvLsn), cmp_lsn_desc);
	/*
	 * Never past our own flush position, even when enough followers have
	 * flushed more (senders ship what is written here, before it is
	 * durable): a committed record must survive our machine's crash, which
	 * the vote for a leader restarted with a shorter log relies on (role.c).
	 */
	commit = Min(flushed[quorum - 1], own_flush);
	app = Min(applied[quorum - 1], commit);
	S->flush_counted = own_flush;
	if (commit < S->term_start_end || !may_lead())
		return;
	KvVisibleAdvance(commit, app < S->term_start_end ? InvalidKvLsn : app);
}

/* ----------------------------------------------------------------
 * Connection and outages
 * ---------------------------------------------------------------- */

/* PQerrorMessage and friends on one line: runs of white space become one */
static char *
one_line(const char *msg)
{
	char	   *s = pstrdup(msg ? msg : "");
	char	   *out = s;
	bool		space = true;	/* drops leading white space */

	for (const char *p = s; *p; p++)
	{
		if (*p == '\n' || *p == '\t' || *p == ' ' || *p == '\r')
		{
			if (!space)
				*out++ = ' ';
			space = true;
		}
		else
		{
			*out++ = *p;
			space = false;
		}
	}
	if (out > s && out[-1] == ' ')
		out--;
	*out = '\0';
	return s;
}

/*
 * push_batch
 *		Record a call just queued in the pipeline (a batch of records or a
 *		heartbeat, a snapshot chunk, or the connection's PREPARE), sent now.
 */
static Batch *
push_batch(KvLsn start, KvLsn end, bool snap, bool prep)
{
	Batch	   *b;

	Assert(S->nflight < KVEXT_SENDER_PIPELINE);
	b = &S->flight[S->nflight++];
	b->start = start;
	b->end = end;
	b->snap = snap;
	b->prep = prep;
	b->sent_at = GetCurrentTimestamp();
	return b;
}

/*
 * While streaming, the worker waits on one WaitEventSet (latch, postmaster
 * death, the connection's socket), made when streaming starts and freed
 * with the connection: WaitLatchOrSocket would build and tear down an
 * epoll set at every wait, five system calls per round trip.
 */
static WaitEventSet *stream_wait = NULL;
static pgsocket stream_sock = PGINVALID_SOCKET;
static uint32 stream_events = 0;

#define STREAM_WAIT_SOCKET_POS	2	/* after the latch and postmaster death */

static void
stream_wait_free(void)
{
	if (stream_wait)
		FreeWaitEventSet(stream_wait);
	stream_wait = NULL;
	stream_sock = PGINVALID_SOCKET;
}

/*
 * stream_wait_on
 *		Wait as WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT |
 *		WL_EXIT_ON_PM_DEATH | events, sock, ...) would, on the streaming
 *		connection's set; returns the events that woke us (WL_TIMEOUT if
 *		none).
 */
static int
stream_wait_on(int events, pgsocket sock, long timeout, uint32 wait_event)
{
	WaitEvent	ev;

	if (stream_wait == NULL || stream_sock != sock)
	{
		stream_wait_free();
		stream_wait = CreateWaitEventSet(TopMemoryContext, 3);
		AddWaitEventToSet(stream_wait, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(stream_wait, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		(void) AddWaitEventToSet(stream_wait, events, sock, NULL, NULL);
		stream_sock = sock;
		stream_events = events;
	}
	else if (stream_events != (uint32) events)
	{
		ModifyWaitEvent(stream_wait, STREAM_WAIT_SOCKET_POS, events, NULL);
		stream_events = events;
	}
	if (WaitEventSetWait(stream_wait, timeout, &ev, 1, wait_event) == 0)
		return WL_TIMEOUT;
	return ev.events;
}

static void
disconnect(void)
{
	stream_wait_free();
	if (S->conn)
		PQfinish(S->conn);
	S->conn = NULL;
	if (S->have_fd)
		ReleaseExternalFD();
	S->have_fd = false;
	S->nflight = 0;
	S->resync = false;
	S->want_write = false;
	S->next_known = false;
	reader_close();
	snapshot_close();
	SpinLockAcquire(&snd->mutex);
	snd->peers[S->slot].connected_since = 0;
	SpinLockRelease(&snd->mutex);
}

/* why a connection ended, for its one LOG line */
typedef enum FailKind
{
	FAIL_CONNECT,				/* could not connect */
	FAIL_LOST,					/* the connection broke */
	FAIL_REFUSED,				/* the peer answered an append with an ERROR */
	FAIL_ANSWER,				/* the peer's answer made no sense */
	FAIL_SHIP					/* a local error while shipping */
} FailKind;

/*
 * fail
 *		The connection failed or the peer refused an append: close it,
 *		publish the error, log it if this starts an outage (one LOG line per
 *		outage), and schedule the next attempt.
 */
static void
fail(FailKind kind, const char *detail)
{
	char	   *msg = one_line(detail);
	bool		was_connected = (S->phase == PHASE_STREAMING);
	const char *name = S->peer->name;

	disconnect();
	publish_error(msg);
	if (!S->in_outage)
	{
		switch (kind)
		{
			case FAIL_CONNECT:
				ereport(LOG,
						(errmsg("could not connect to peer \"%s\": %s", name, msg),
						 errdetail("The peer's conninfo is \"%s\".", S->peer->conninfo_shown)));
				break;
			case FAIL_LOST:
				ereport(LOG,
						(errmsg("lost connection to peer \"%s\": %s", name, msg)));
				break;
			case FAIL_REFUSED:
				ereport(LOG,
						(errmsg("peer \"%s\" refused an append: %s", name, msg)));
				break;
			case FAIL_ANSWER:
				ereport(LOG,
						(errmsg("peer \"%s\" answered an append unexpectedly: %s", name, msg)));
				break;
			case FAIL_SHIP:
				ereport(LOG,
						(errmsg("could not ship the kvext log to peer \"%s\": %s", name, msg)));
				break;
		}
		S->in_outage = true;
		if (was_connected)
			S->attempts = 0;
	}
	S->phase = PHASE_BACKOFF;
	S->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), S->backoff_ms);
	S->backoff_ms = Min(S->backoff_ms * 2, KVEXT_SENDER_BACKOFF_MAX_MS);
	publish_state("backoff");
	pfree(msg);
}

/* start connecting (PHASE_BACKOFF, retry time reached) */
static void
start_connect(void)
{
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *vals[] = {S->peer->conninfo, S->app_name, NULL};

	S->attempts++;
	if (!AcquireExternalFD())
	{
		fail(FAIL_CONNECT,
			 "There are too many open files on the local server.");
		return;
	}
	S->have_fd = true;
	S->conn = PQconnectStartParams(keys, vals, 1);
	if (S->conn == NULL)
	{
		fail(FAIL_CONNECT, "out of memory");
		return;
	}
	if (PQstatus(S->conn) == CONNECTION_BAD)
	{
		fail(FAIL_CONNECT, PQerrorMessage(S->conn));
		return;
	}
	S->phase = PHASE_CONNECTING;
	S->poll = PGRES_POLLING_WRITING;
	S->connect_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  S->connect_timeout_ms);
	publish_state("connecting");
}

/* one PQconnectPoll step; the socket was ready (or the deadline passed) */
static void
continue_connect(bool ready)
{
	if (ready)
		S->poll = PQconnectPoll(S->conn);
	if (S->poll == PGRES_POLLING_FAILED)
	{
		fail(FAIL_CONNECT, PQerrorMessage(S->conn));
		return;
	}
	if (S->poll == PGRES_POLLING_OK)
	{
		if (PQsetnonblocking(S->conn, 1) != 0 || PQenterPipelineMode(S->conn) != 1)
		{
			fail(FAIL_CONNECT, PQerrorMessage(S->conn));
			return;
		}
		S->phase = PHASE_STREAMING;
		S->nflight = 0;
		S->resync = false;
		S->next_known = false;
		S->last_send = 0;
		S->commit_sent = InvalidKvLsn;

		/*
		 * Every append runs the same statement: prepare it once, so that
		 * the peer parses and plans it once per connection, not once per
		 * batch (that was most of a follower's CPU per append).  The
		 * PREPARE is a batch of its own in the pipeline.
		 */
		if (!PQsendPrepare(S->conn, KVEXT_SENDER_APPEND_STMT, append_sql, 7,
						   append_types) ||
			!PQpipelineSync(S->conn))
		{
			fail(FAIL_CONNECT, PQerrorMessage(S->conn));
			return;
		}
		(void) push_batch(InvalidKvLsn, InvalidKvLsn, false, true);
		SpinLockAcquire(&snd->mutex);
		snd->peers[S->slot].connected_since = GetCurrentTimestamp();
		SpinLockRelease(&snd->mutex);
		publish_state("catchup");
		return;
	}
	if (GetCurrentTimestamp() >= S->connect_deadline)
		fail(FAIL_CONNECT, "timeout expired");
}

/* ----------------------------------------------------------------
 * Appends
 * ---------------------------------------------------------------- */

/*
 * send_append
 *		Queue one kv_repl_append call for the records in buf (may be empty:
 *		a heartbeat) starting at S->next and ending at end, whose last
 *		record has term end_term; then a sync.  false if libpq failed
 *		(the caller fails the connection).
 */
static bool
send_append(StringInfo buf, KvLsn end, uint64 end_term)
{
	char		cluster[32],
				term[32],
				prev_end[32],
				prev_term[32],
				commit[32];
	const char *values[7];
	int			lengths[7] = {0};
	int			formats[7] = {0};
	KvLsn		prev = (S->next <= KVEXT_WAL_START_LSN) ? InvalidKvLsn : S->next;
	KvLsn		commit_pos = Min(KvVisibleCommitPos(), end);
	Batch	   *b;

	snprintf(cluster, sizeof(cluster), INT64_FORMAT, (int64) S->cluster_id);
	snprintf(term, sizeof(term), UINT64_FORMAT, S->term);
	snprintf(prev_end, sizeof(prev_end), "%X/%X", LSN_FORMAT_ARGS(prev));
	snprintf(prev_term, sizeof(prev_term), UINT64_FORMAT,
			 prev == InvalidKvLsn ? 0 : S->next_prev_term);
	snprintf(commit, sizeof(commit), "%X/%X", LSN_FORMAT_ARGS(commit_pos));
	values[0] = cluster;
	values[1] = kvext_node_name;
	values[2] = term;
	values[3] = prev_end;
	values[4] = prev_term;
	values[5] = commit;
	values[6] = buf->data;
	lengths[6] = buf->len;
	formats[6] = 1;

	if (!PQsendQueryPrepared(S->conn, KVEXT_SENDER_APPEND_STMT, 7, values,
							 lengths, formats, 0) ||
		!PQpipelineSync(S->conn))
		return false;

	b = push_batch(S->next, end, false, false);
	S->last_send = b->sent_at;
	S->commit_sent = Max(S->commit_sent, commit_pos);
	S->next = end;
	S->next_prev_term = end_term;
	SpinLockAcquire(&snd->mutex);
	snd->peers[S->slot].sent = end;
	SpinLockRelease(&snd->mutex);
	return true;
}

/*
 * append_record
 *		Add the reader's current record to buf, byte for byte (a record too
 *		large to be held whole is copied piece by piece).
 */
static void
append_record(StringInfo buf, KvLogReader *r)
{
	uint32		len = r->rec->len;

	if (len > KVEXT_SENDER_MAX_RECORD - (Size) buf->len)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("kvext log record at %X/%X is too large to ship (%u bytes)",
						LSN_FORMAT_ARGS(r->rec->lsn), len)));
	if (r->rec_whole)
	{
		appendBinaryStringInfo(buf, (const char *) r->rec, len);
		return;
	}
	for (uint32 at = 0; at < len;)
	{
		uint32		n = Min(len - at, (uint32) KVEXT_READ_BUFFER);

		appendBinaryStringInfo(buf, KvLogRecordBytes(r, at, n), n);
		at += n;
	}
}

/*
 * records_in_flight
 *		Is a batch of records (one that costs the peer an fsync) in
 *		flight?  A heartbeat, a snapshot chunk or the PREPARE does not
 *		count: a small batch need not wait for its answer.
 */
static bool
records_in_flight(void)
{
	for (int i = 0; i < S->nflight; i++)
		if (!S->flight[i].prep && !S->flight[i].snap &&
			S->flight[i].end > S->flight[i].start)
			return true;
	return false;
}

/*
 * fill_pipeline
 *		Send batches of written records while there is room in the pipeline,
 *		or a heartbeat when nothing was sent for a second or the commit
 *		position moved past what the peer was told.
 */
static void
fill_pipeline(void)
{
	while (S->phase == PHASE_STREAMING && !S->resync &&
		   S->nflight < KVEXT_SENDER_PIPELINE)
	{
		/* what is written, flushed here or not yet (advance_commit) */
		KvLsn		written = KvWalWrittenPos();
		MemoryContext old;
		StringInfoData buf;
		uint64		end_term = S->next_prev_term;
		bool		ok;

		if (S->snap_fd >= 0)
		{
			/* streaming the snapshot: nothing else until it is installed */
			if (S->snap_sent >= S->snap_size)
				return;
			if (!send_snapshot_chunk())
			{
				fail(FAIL_LOST, PQerrorMessage(S->conn));
				return;
			}
			continue;
		}
		if (!S->next_known)
		{
			/*
			 * Raft's nextIndex: our last matched position, or our end.  If
			 * our log no longer goes back that far, ask from our end: the
			 * peer's hint says what it has now (it may have been rebuilt
			 * from a snapshot meanwhile), and a snapshot is sent only if
			 * that is gone too.
			 */
			S->next = (S->matched > InvalidKvLsn && !log_lacks(S->matched)) ?
				S->matched : written;
			S->next_prev_term = term_at(S->next);
			end_term = S->next_prev_term;
			S->next_known = true;
		}

		/*
		 * Group commit across the network: while a batch of records is in
		 * flight, a small one waits for its answer and grows meanwhile, so
		 * that the follower's single fsync covers every commit of that
		 * time (a full batch, when catching up, goes at once).  A heartbeat
		 * in flight costs the peer no fsync: it does not hold a batch back.
		 */
		if (S->next < written && records_in_flight() &&
			written - S->next < KVEXT_SENDER_BATCH)
			return;
		if (S->next < written)
		{
			if (S->reader == NULL || S->reader->pos != S->next)
				reader_open(S->next);
			/* what is written stays as it is while we lead */
			KvLogReaderReadAhead(S->reader, written);
			old = MemoryContextSwitchTo(S->batch_cxt);
			initStringInfo(&buf);
			while (buf.len < KVEXT_SENDER_BATCH && S->reader->pos < written)
			{
				end_term = read_record()->term;
				append_record(&buf, S->reader);
			}
			MemoryContextSwitchTo(old);
		}
		else
		{
			TimestampTz now = GetCurrentTimestamp();
			bool		due = TimestampDifferenceExceeds(S->last_send, now,
														 KVEXT_SENDER_HEARTBEAT_MS);
			bool		news = (S->nflight == 0 &&
								Min(KvVisibleCommitPos(), S->next) > S->commit_sent);

			if (!due && !news)
				return;
			old = MemoryContextSwitchTo(S->batch_cxt);
			initStringInfo(&buf);
			MemoryContextSwitchTo(old);
		}
		ok = send_append(&buf, S->next + buf.len, end_term);
		MemoryContextReset(S->batch_cxt);
		if (!ok)
		{
			fail(FAIL_LOST, PQerrorMessage(S->conn));
			return;
		}
	}
}

/*
 * empty_leader_check
 *		A peer refused us as another group's leader.  If this node's store
 *		is new (its log holds only the first TERM record), it is not the
 *		leader of an existing group that lost its data; it must never lead
 *		(nor overwrite) the group: follow, with no leader, until a promoted
 *		node's appends make it join.
 */
static void
empty_leader_check(void)
{
	MemoryContext old;
	KvControl	control;

	if (KvWalInsertPos() != KVEXT_WAL_START_LSN + sizeof(KvWalRecord))
		return;
	old = MemoryContextSwitchTo(S->batch_cxt);
	LWLockAcquire(KvRoleLock(), LW_EXCLUSIVE);
	KvControlGet(&control);
	if (KvVisibleIsLeader())
	{
		KvRoleFollow(control.term, NULL);
		ereport(LOG,
				(errmsg("kvext node \"%s\" does not lead: its store is new, and peer \"%s\" belongs to an existing group",
						kvext_node_name, S->peer->name),
				 errhint("Promote a node of that group with kv_promote(); this node then joins it.")));
	}
	LWLockRelease(KvRoleLock());
	MemoryContextSwitchTo(old);
	MemoryContextReset(S->batch_cxt);
}

/* a higher term was seen: persist it, then stop leading (role.c) */
static void
step_down(uint64 term)
{
	MemoryContext old = MemoryContextSwitchTo(S->batch_cxt);
	KvControl	control;

	ereport(LOG,
			(errmsg("stepping down: peer \"%s\" is in term " UINT64_FORMAT ", above this node's term " UINT64_FORMAT,
					S->peer->name, term, S->term)));
	disconnect();
	LWLockAcquire(KvRoleLock(), LW_EXCLUSIVE);
	KvControlGet(&control);
	if (term > control.term)
		KvRoleFollow(term, NULL);	/* else another sender did it already */
	LWLockRelease(KvRoleLock());
	MemoryContextSwitchTo(old);
	MemoryContextReset(S->batch_cxt);
	S->phase = PHASE_INACTIVE;
	S->term = 0;
	publish_state("inactive");
}

static bool
parse_lsn(const char *s, KvLsn *out)
{
	uint32		hi,
				lo;

	if (s == NULL || sscanf(s, "%X/%X", &hi, &lo) != 2)
		return false;
	*out = ((uint64) hi << 32) | lo;
	return true;
}

/*
 * handle_reply
 *		The row kv_repl_append answered for batch b.  See the file header.
 *		false if the reply could not be understood (the caller has failed
 *		the connection) or the node stepped down.
 */
static bool
handle_reply(PGresult *res, Batch *b)
{
	uint64		term;
	bool		success;
	KvLsn		flushed = InvalidKvLsn,
				applied = InvalidKvLsn,
				hint = InvalidKvLsn;

	if (PQntuples(res) != 1 || PQnfields(res) != 5 ||
		PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 1) ||
		sscanf(PQgetvalue(res, 0, 0), UINT64_FORMAT, &term) != 1)
	{
		fail(FAIL_ANSWER,
			 "the answer is not one row (term, success, flushed, applied, hint)");
		return false;
	}
	success = (PQgetvalue(res, 0, 1)[0] == 't');
	if (!PQgetisnull(res, 0, 2))
		(void) parse_lsn(PQgetvalue(res, 0, 2), &flushed);
	if (!PQgetisnull(res, 0, 3))
		(void) parse_lsn(PQgetvalue(res, 0, 3), &applied);
	if (!PQgetisnull(res, 0, 4))
		(void) parse_lsn(PQgetvalue(res, 0, 4), &hint);

	if (term > S->term)
	{
		step_down(term);
		return false;
	}

	SpinLockAcquire(&snd->mutex);
	snd->peers[S->slot].last_reply = GetCurrentTimestamp();
	SpinLockRelease(&snd->mutex);

	if (!success)
	{
		/* prev mismatch: every later batch in flight fails the same way */
		if (!S->resync)
		{
			S->resync = true;
			S->resync_from = hint;
			if (hint >= b->start)
			{
				char	   *msg = psprintf("its hint %X/%X is not before the mismatch at %X/%X",
										   LSN_FORMAT_ARGS(hint), LSN_FORMAT_ARGS(b->start));

				fail(FAIL_ANSWER, msg);
				return false;
			}
		}
		return true;
	}
	if (S->resync)
		return true;

	S->matched = Max(S->matched, Min(flushed, b->end));
	S->applied = Max(S->applied, Min(applied, S->matched));
	sample_flush();
	publish_positions();
	publish_state(S->matched >= KvWalFlushPos() ? "streaming" : "catchup");
	advance_commit();

	/* the first answer after an outage ends it */
	S->backoff_ms = KVEXT_SENDER_BACKOFF_MIN_MS;
	if (S->in_outage)
	{
		ereport(LOG,
				(errmsg("reconnected to peer \"%s\" after %d attempts",
						S->peer->name, S->attempts)));
		S->in_outage = false;
	}
	S->attempts = 0;
	return true;
}

/*
 * read_results
 *		Consume what the peer sent and handle every complete result, in
 *		order.  Each batch gives its row (or an error), the end of its
 *		results (NULL), then PGRES_PIPELINE_SYNC, which retires it.
 */
static void
read_results(void)
{
	int			nulls = 0;

	if (!PQconsumeInput(S->conn))
	{
		fail(FAIL_LOST, PQerrorMessage(S->conn));
		return;
	}
	while (S->phase == PHASE_STREAMING && S->nflight > 0 && !PQisBusy(S->conn))
	{
		PGresult   *res = PQgetResult(S->conn);
		Batch	   *b = &S->flight[0];

		if (res == NULL)
		{
			/* end of one call's results; twice in a row: nothing more */
			if (++nulls > 1)
				break;
			continue;
		}
		nulls = 0;
		switch (PQresultStatus(res))
		{
			case PGRES_COMMAND_OK:
			case PGRES_TUPLES_OK:
				/* the PREPARE answers COMMAND_OK, a call one row */
				if ((PQresultStatus(res) == PGRES_COMMAND_OK) != b->prep)
				{
					fail(FAIL_ANSWER, PQresStatus(PQresultStatus(res)));
					PQclear(res);
					return;
				}
				if (b->prep)
					break;
				if (!(b->snap ? handle_snapshot_reply(res, b) : handle_reply(res, b)))
				{
					PQclear(res);
					return;
				}
				break;
			case PGRES_PIPELINE_SYNC:
				memmove(S->flight, S->flight + 1, (S->nflight - 1) * sizeof(Batch));
				S->nflight--;
				break;
			case PGRES_PIPELINE_ABORTED:
				break;
			case PGRES_FATAL_ERROR:
				{
					char	   *msg = one_line(PQresultErrorMessage(res));
					const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
					bool		lost = (PQstatus(S->conn) == CONNECTION_BAD ||
										(sev && strcmp(sev, "ERROR") != 0));

					const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
					bool		foreign = (primary &&
										   strncmp(primary, "kvext append from another group",
												   strlen("kvext append from another group")) == 0);

					/* a FATAL (the backend was terminated) ends the session */
					PQclear(res);
					fail(lost ? FAIL_LOST : FAIL_REFUSED, msg);
					pfree(msg);
					if (foreign)
						empty_leader_check();
					return;
				}
			default:
				fail(FAIL_ANSWER,
					 PQresStatus(PQresultStatus(res)));
				PQclear(res);
				return;
		}
		PQclear(res);
	}

	/* a mismatch, and the pipeline is drained: resend from the hint */
	if (S->phase == PHASE_STREAMING && S->resync && S->nflight == 0)
	{
		S->next = Max(S->resync_from, KVEXT_WAL_START_LSN);
		S->resync = false;
		reader_close();
		if (log_lacks(S->next))
			start_snapshot(S->next);
		else
		{
			S->next_prev_term = term_at(S->next);
			S->next_known = true;
		}
	}
}

/* ----------------------------------------------------------------
 * Catch-up from a snapshot
 *
 * A peer that needs log this node no longer has (removed after a
 * snapshot: its position is before the oldest segment, or the record
 * ending there is gone) gets this node's snapshot file instead, in chunks
 * of KVEXT_SENDER_SNAP_CHUNK bytes through kv_repl_snapshot(), pipelined
 * like appends.  The file stays open for the whole transfer, so a new
 * snapshot renamed over it (and the old file unlinked) does not disturb
 * it.  The chunk that completes the file makes the peer install it
 * (replication/snaprecv.c, log/install.c); the peer's log then starts at
 * the snapshot's redo point, and appends go on from there, with prev =
 * (redo point, the term the snapshot records for it).  State "snapshot"
 * in kv_replication_status(); other peers' senders go on as usual, and
 * this node keeps taking writes.
 * ---------------------------------------------------------------- */

/*
 * log_lacks
 *		Can this node not ship its log from pos: no segment holds pos, or
 *		the term of the record ending at pos is lost with its segment (and
 *		is not the one our snapshot records)?
 */
static bool
log_lacks(KvLsn pos)
{
	KvLsn	   *segs;
	int			nsegs = KvWalListSegments(&segs);
	bool		holds = false;
	bool		before = false;
	KvLsn		redo;
	uint64		term;

	for (int i = 0; i < nsegs; i++)
	{
		if (segs[i] <= pos)
			holds = true;
		if (segs[i] < pos)
			before = true;
	}
	pfree(segs);
	if (!holds)
		return true;
	if (pos <= KVEXT_WAL_START_LSN || before)
		return false;
	return !(KvSnapshotRedoTerm(&redo, &term) && redo == pos);
}

/* close the snapshot being streamed, if any */
static void
snapshot_close(void)
{
	if (S->snap_fd >= 0)
		CloseTransientFile(S->snap_fd);
	S->snap_fd = -1;
}

/*
 * start_snapshot
 *		The peer needs the log from needed, which this node no longer has:
 *		open our snapshot and start streaming it (nothing in flight).
 */
static void
start_snapshot(KvLsn needed)
{
	KvSnapshotInfo info;
	struct stat st;

	Assert(S->nflight == 0);
	reader_close();
	snapshot_close();
	S->snap_fd = OpenTransientFile(KVEXT_SNAPSHOT_FILE, O_RDONLY | PG_BINARY);
	if (S->snap_fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open kvext snapshot \"%s\" to send it: %m",
						KVEXT_SNAPSHOT_FILE)));
	if (fstat(S->snap_fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat kvext snapshot \"%s\": %m", KVEXT_SNAPSHOT_FILE)));
	if (!KvSnapshotReadHeader(S->snap_fd, &info))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext snapshot \"%s\" has no valid header", KVEXT_SNAPSHOT_FILE)));
	if (!info.redo_term_known)
		info.redo_term = term_at(info.redo);	/* format 1: may throw */
	if (info.redo < needed)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("kvext log from %X/%X is missing, and the snapshot's redo point %X/%X is after it",
						LSN_FORMAT_ARGS(needed), LSN_FORMAT_ARGS(info.redo))));
	S->snap_redo = info.redo;
	S->snap_redo_term = info.redo_term;
	S->snap_size = (int64) st.st_size;
	S->snap_sent = 0;
	S->next_known = false;
	publish_state("snapshot");
	ereport(LOG,
			(errmsg("peer \"%s\" needs the kvext log from %X/%X, which this node no longer has: sending it the snapshot at %X/%X (%lld bytes)",
					S->peer->name, LSN_FORMAT_ARGS(needed),
					LSN_FORMAT_ARGS(info.redo), (long long) st.st_size)));
}

/*
 * send_snapshot_chunk
 *		Queue the next chunk of the snapshot, then a sync.  false if libpq
 *		failed (the caller fails the connection).
 */
static bool
send_snapshot_chunk(void)
{
	char		cluster[32],
				term[32],
				redo[32],
				total[32],
				offset[32];
	const char *values[7];
	int			lengths[7] = {0};
	int			formats[7] = {0};
	const Oid	types[7] = {INT8OID, TEXTOID, INT8OID, PG_LSNOID, INT8OID, INT8OID, BYTEAOID};
	Size		len = (Size) Min((int64) KVEXT_SENDER_SNAP_CHUNK, S->snap_size - S->snap_sent);
	char	   *buf = MemoryContextAlloc(S->batch_cxt, Max(len, 1));
	Size		done = 0;
	Batch	   *b;
	bool		ok;

	while (done < len)
	{
		ssize_t		n;

		pgstat_report_wait_start(WAIT_EVENT_DATA_FILE_READ);
		n = pg_pread(S->snap_fd, buf + done, len - done, S->snap_sent + done);
		pgstat_report_wait_end();
		if (n < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read kvext snapshot \"%s\": %m", KVEXT_SNAPSHOT_FILE)));
		if (n == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("kvext snapshot \"%s\" ended early while it was sent", KVEXT_SNAPSHOT_FILE)));
		done += n;
	}

	snprintf(cluster, sizeof(cluster), INT64_FORMAT, (int64) S->cluster_id);
	snprintf(term, sizeof(term), UINT64_FORMAT, S->term);
	snprintf(redo, sizeof(redo), "%X/%X", LSN_FORMAT_ARGS(S->snap_redo));
	snprintf(total, sizeof(total), INT64_FORMAT, S->snap_size);
	snprintf(offset, sizeof(offset), INT64_FORMAT, S->snap_sent);
	values[0] = cluster;
	values[1] = kvext_node_name;
	values[2] = term;
	values[3] = redo;
	values[4] = total;
	values[5] = offset;
	values[6] = buf;
	lengths[6] = (int) len;
	formats[6] = 1;
	ok = PQsendQueryParams(S->conn, snapshot_sql, 7, types, values, lengths, formats, 0) &&
		PQpipelineSync(S->conn);
	MemoryContextReset(S->batch_cxt);
	if (!ok)
		return false;

	b = push_batch((KvLsn) S->snap_sent, (KvLsn) (S->snap_sent + len), true, false);
	S->last_send = b->sent_at;
	S->snap_sent += len;
	return true;
}

/*
 * handle_snapshot_reply
 *		The row kv_repl_snapshot answered for chunk b.  After the last one
 *		the peer holds the snapshot: appends go on from its redo point.
 *		false if the reply could not be understood (the connection was
 *		failed) or the node stepped down.
 */
static bool
handle_snapshot_reply(PGresult *res, Batch *b)
{
	uint64		term;
	long long	received;

	if (PQntuples(res) != 1 || PQnfields(res) != 3 ||
		PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 1) || PQgetisnull(res, 0, 2) ||
		sscanf(PQgetvalue(res, 0, 0), UINT64_FORMAT, &term) != 1 ||
		sscanf(PQgetvalue(res, 0, 2), "%lld", &received) != 1)
	{
		fail(FAIL_ANSWER, "the answer is not one row (term, success, received)");
		return false;
	}
	if (term > S->term)
	{
		step_down(term);
		return false;
	}
	if (PQgetvalue(res, 0, 1)[0] != 't' || (KvLsn) received != b->end)
	{
		fail(FAIL_ANSWER, "the peer did not take a snapshot chunk");
		return false;
	}
	SpinLockAcquire(&snd->mutex);
	snd->peers[S->slot].last_reply = GetCurrentTimestamp();
	SpinLockRelease(&snd->mutex);
	if ((int64) b->end < S->snap_size)
		return true;

	/* installed: the peer's log starts at the redo point */
	ereport(LOG,
			(errmsg("peer \"%s\" was rebuilt from this node's snapshot at %X/%X (%lld bytes)",
					S->peer->name, LSN_FORMAT_ARGS(S->snap_redo), (long long) S->snap_size)));
	snapshot_close();
	S->matched = Max(S->matched, S->snap_redo);
	S->applied = Max(S->applied, S->snap_redo);
	S->next = S->snap_redo;
	S->next_prev_term = S->snap_redo_term;
	S->next_known = true;
	sample_flush();
	publish_positions();
	publish_state(S->matched >= KvWalFlushPos() ? "streaming" : "catchup");
	advance_commit();
	S->backoff_ms = KVEXT_SENDER_BACKOFF_MIN_MS;
	if (S->in_outage)
	{
		ereport(LOG,
				(errmsg("reconnected to peer \"%s\" after %d attempts",
						S->peer->name, S->attempts)));
		S->in_outage = false;
	}
	S->attempts = 0;
	return true;
}

/*
 * publish_hold
 *		Tell segment removal (wal.c, KvWalRetainFrom) where the peer, if
 *		connected, still reads: the next batch's start, or the redo point of
 *		the snapshot being sent.  Nothing while it is away.
 */
static void
publish_hold(void)
{
	KvLsn		hold = InvalidKvLsn;

	if (S->slot >= KVEXT_VISIBLE_MAX_SENDERS)
		return;
	if (S->phase == PHASE_STREAMING)
	{
		if (S->snap_fd >= 0)
			hold = S->snap_redo;
		else if (S->next_known)
			hold = Max(S->next, KVEXT_WAL_START_LSN);
		else if (S->matched != InvalidKvLsn)
			hold = S->matched;
	}
	KvWalSetHold(S->slot, hold);
}

/* ----------------------------------------------------------------
 * The loop
 * ---------------------------------------------------------------- */

/*
 * activate
 *		This node leads in term: start serving that leadership (positions
 *		of an earlier leadership do not count).
 */
static void
activate(uint64 term, uint64 cluster_id)
{
	KvLsn		start_end = term_start_end(term);	/* may throw: first */

	S->term = term;
	S->cluster_id = cluster_id;
	S->term_start_end = start_end;
	S->matched = InvalidKvLsn;
	S->applied = InvalidKvLsn;
	S->nsamples = 0;
	S->next_known = false;
	S->phase = PHASE_BACKOFF;
	S->retry_at = 0;
	S->backoff_ms = KVEXT_SENDER_BACKOFF_MIN_MS;
	S->attempts = 0;
	S->in_outage = false;
	SpinLockAcquire(&snd->mutex);
	snd->peers[S->slot].term = term;
	snd->peers[S->slot].sent = InvalidKvLsn;
	snd->peers[S->slot].flushed = InvalidKvLsn;
	snd->peers[S->slot].applied = InvalidKvLsn;
	snd->peers[S->slot].behind_since = 0;
	SpinLockRelease(&snd->mutex);
}

/* may this sender ship now?  (the group is configured, we lead) */
static bool
may_lead(void)
{
	const KvGroupConfig *cfg = KvReplConfig();

	return pg_atomic_read_u32(KvStateFlag) == KV_STATE_READY &&
		cfg->checked && cfg->valid && S->slot < cfg->npeers &&
		KvVisibleInGroup() && KvVisibleIsLeader();
}

/*
 * sender_step
 *		One turn of the loop, after a wait that returned rc: do what the
 *		phase calls for, then set *events, *sock and *timeout for the next
 *		wait.
 */
static void
sender_step(int rc, int *events, pgsocket *sock, long *timeout, uint32 *wait_event)
{
	TimestampTz now;

	*events = 0;
	*sock = PGINVALID_SOCKET;
	*timeout = KVEXT_SENDER_HEARTBEAT_MS;
	*wait_event = WAIT_EVENT_WAL_SENDER_MAIN;

	if (!may_lead())
	{
		if (S->phase != PHASE_INACTIVE)
		{
			disconnect();
			S->phase = PHASE_INACTIVE;
			S->term = 0;
			publish_state("inactive");
		}
		publish_hold();
		return;
	}
	if (S->phase == PHASE_INACTIVE)
	{
		KvControl	control;

		/* an activation that failed is retried after a backoff */
		if (GetCurrentTimestamp() < S->retry_at)
		{
			*timeout = Max(1, TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
															  S->retry_at));
			return;
		}
		KvControlGet(&control);
		activate(control.term, control.cluster_id);
	}

	sample_flush();
	if (S->phase == PHASE_BACKOFF && GetCurrentTimestamp() >= S->retry_at)
	{
		start_connect();
		rc = 0;
	}
	if (S->phase == PHASE_CONNECTING)
		continue_connect((rc & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE)) != 0);
	if (S->phase == PHASE_STREAMING)
	{
		read_results();
		/* our own fsync may be what the commit position waited for */
		if (S->phase == PHASE_STREAMING && KvWalFlushPos() > S->flush_counted)
			advance_commit();
		fill_pipeline();
		if (S->phase == PHASE_STREAMING)
		{
			int			f = PQflush(S->conn);

			if (f < 0)
				fail(FAIL_LOST, PQerrorMessage(S->conn));
			S->want_write = (f == 1);
		}
		if (S->phase == PHASE_STREAMING && S->nflight > 0 &&
			TimestampDifferenceExceeds(S->flight[0].sent_at, GetCurrentTimestamp(),
									   KVEXT_SENDER_REPLY_TIMEOUT))
			fail(FAIL_LOST,
				 "no answer to an append for 60 s");
	}

	publish_hold();

	now = GetCurrentTimestamp();
	switch (S->phase)
	{
		case PHASE_INACTIVE:
			break;
		case PHASE_BACKOFF:
			*timeout = Max(1, TimestampDifferenceMilliseconds(now, S->retry_at));
			*wait_event = WAIT_EVENT_RECOVERY_RETRIEVE_RETRY_INTERVAL;
			break;
		case PHASE_CONNECTING:
			*sock = PQsocket(S->conn);
			*events = (S->poll == PGRES_POLLING_READING) ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
			*timeout = Max(1, TimestampDifferenceMilliseconds(now, S->connect_deadline));
			*wait_event = WAIT_EVENT_LIBPQWALRECEIVER_CONNECT;
			break;
		case PHASE_STREAMING:
			*sock = PQsocket(S->conn);
			*events = WL_SOCKET_READABLE | (S->want_write ? WL_SOCKET_WRITEABLE : 0);
			/* the next heartbeat; a full pipeline waits for answers */
			if (S->nflight < KVEXT_SENDER_PIPELINE)
				*timeout = Max(1, KVEXT_SENDER_HEARTBEAT_MS -
							   TimestampDifferenceMilliseconds(S->last_send, now));
			*wait_event = S->want_write ? WAIT_EVENT_WAL_SENDER_WRITE_DATA
				: WAIT_EVENT_LIBPQWALRECEIVER_RECEIVE;
			break;
	}
}

/* connect_timeout of the peer's conninfo, in ms, or the default */
static int
peer_connect_timeout(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	int			secs = KVEXT_SENDER_CONNECT_TIMEOUT;

	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (strcmp(o->keyword, "connect_timeout") == 0 && o->val && atoi(o->val) > 0)
			secs = Max(2, atoi(o->val));	/* libpq's minimum */
	if (opts)
		PQconninfoFree(opts);
	return secs * 1000;
}

/*
 * sender_init
 *		Set up the worker's state for peer slot; false (after logging why,
 *		once) if the configuration gives this worker nothing to do.
 */
static bool
sender_init(int slot)
{
	const KvGroupConfig *cfg = KvReplConfig();
	const char *mytype = MyBgworkerEntry->bgw_type + strlen("kvext sender ");

	S = MemoryContextAllocZero(TopMemoryContext, sizeof(Sender));
	S->slot = slot;
	S->phase = PHASE_INACTIVE;
	S->backoff_ms = KVEXT_SENDER_BACKOFF_MIN_MS;
	S->snap_fd = -1;
	S->reader_cxt = AllocSetContextCreate(TopMemoryContext, "kvext sender reader",
										  ALLOCSET_DEFAULT_SIZES);
	S->batch_cxt = AllocSetContextCreate(TopMemoryContext, "kvext sender batch",
										 ALLOCSET_DEFAULT_SIZES);
	if (!cfg->checked || !cfg->valid || slot >= cfg->npeers ||
		strcmp(cfg->peers[slot].name, mytype) != 0)
		return false;
	S->peer = &cfg->peers[slot];
	snprintf(S->app_name, sizeof(S->app_name), "kvext sender %s", kvext_node_name);
	S->connect_timeout_ms = peer_connect_timeout(S->peer->conninfo);
	return true;
}

/*
 * recover_from_error
 *		After an ERROR thrown inside the loop (caught by KvSenderMain's
 *		sigsetjmp): clean up as PostgreSQL's wal writer does, then treat it
 *		as a failure of the connection.
 */
static void
recover_from_error(void)
{
	ErrorData  *edata;

	HOLD_INTERRUPTS();
	error_context_stack = NULL;
	LWLockReleaseAll();
	pgstat_report_wait_end();
	AtEOXact_Files(false);
	MemoryContextSwitchTo(TopMemoryContext);
	edata = CopyErrorData();
	FlushErrorState();
	S->reader = NULL;			/* its file was closed above */
	S->snap_fd = -1;			/* likewise */
	MemoryContextReset(S->reader_cxt);
	MemoryContextReset(S->batch_cxt);
	RESUME_INTERRUPTS();

	if (S->phase == PHASE_INACTIVE)
	{
		/* activation failed (reading the log): retry it after a backoff */
		publish_error(edata->message);
		if (!S->in_outage)
			ereport(LOG,
					(errmsg("could not start shipping the kvext log to peer \"%s\": %s",
							S->peer->name, edata->message)));
		S->in_outage = true;
		S->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), S->backoff_ms);
		S->backoff_ms = Min(S->backoff_ms * 2, KVEXT_SENDER_BACKOFF_MAX_MS);
	}
	else
		fail(FAIL_SHIP, edata->message);
	FreeErrorData(edata);
}

/*
 * KvSenderMain
 *		Entry point of a "kvext sender <peer>" worker (arg: the peer's slot
 *		in config.c's list).
 */
void
KvSenderMain(Datum arg)
{
	sigjmp_buf	local_sigjmp_buf;
	int			rc = 0;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	KvWorkerAttach();

	if (!sender_init(DatumGetInt32(arg)))
	{
		const KvGroupConfig *cfg = KvReplConfig();

		if (cfg->checked && cfg->valid)
			ereport(LOG,
					(errmsg("%s has no matching peer in kvext.peers and stays idle",
							MyBgworkerEntry->bgw_type)));
		/* nothing to do until the server restarts with a new setting */
		for (;;)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
							 WAIT_EVENT_WAL_SENDER_MAIN);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (ShutdownRequestPending)
				proc_exit(1);
		}
	}
	KvVisibleRegisterSender(S->slot);
	publish_state("inactive");

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		recover_from_error();
		rc = 0;
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		int			events;
		pgsocket	sock;
		long		timeout;
		uint32		wait_event;

		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
		{
			disconnect();
			proc_exit(1);		/* restarted unless the server stops */
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		sender_step(rc, &events, &sock, &timeout, &wait_event);

		if (sock == PGINVALID_SOCKET)
			events = 0;
		if (S->phase == PHASE_STREAMING && sock != PGINVALID_SOCKET)
			rc = stream_wait_on(events, sock, timeout, wait_event);
		else
		{
			/* connecting may change the socket: a set per wait */
			stream_wait_free();
			rc = WaitLatchOrSocket(MyLatch,
								   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | events,
								   sock, timeout, wait_event);
		}
		ResetLatch(MyLatch);
	}
}
