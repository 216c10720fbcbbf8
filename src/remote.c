/*-------------------------------------------------------------------------
 *
 * remote.c
 *	  libpq connections from a backend to other kvext nodes: the cache that
 *	  kvext_fdw uses for remote servers, and the remote transactions that
 *	  follow the local one.  (Replication's senders are workers with
 *	  connections of their own.)
 *
 * Connections.  One connection per user mapping (server and user), kept in
 * a backend-local hash table and reused by later statements and
 * transactions, as contrib/postgres_fdw's connection.c does.  A change of
 * the server or the user mapping (a syscache invalidation) marks the
 * connection, which is closed at its next use outside a remote
 * transaction; a connection found broken when a remote transaction starts
 * on it is replaced by a new one at once (the remote backend was
 * terminated, the node restarted).  Connection options are the server's
 * and the mapping's libpq options; connect_timeout is 10 seconds unless
 * set.  A non-superuser must give a password in the mapping, and the
 * server must ask for it (postgres_fdw's password_required rule), unless a
 * superuser set password_required 'false' on the mapping.  Messages name
 * the server, never a password.
 *
 * Waits.  Connecting and every query wait on the socket with
 * WaitLatchOrSocket, so a cancel or termination of this backend
 * interrupts them; the connection attempt ends at connect_timeout.  A
 * query interrupted while the remote node runs it is cancelled there
 * (PQcancel) when the local (sub)transaction aborts, and the connection
 * is then closed: its state is unknown.
 *
 * Remote transactions.  The first use of a connection in a local
 * transaction starts a remote one (BEGIN), and each subtransaction level
 * the local transaction has entered since is mapped to a remote SAVEPOINT
 * s<level>.  At local PRE_COMMIT each remote transaction is committed, so
 * an error there aborts the local transaction; at abort each is rolled
 * back (a bounded wait: a connection that does not answer in 30 seconds is
 * closed, which rolls it back too).  Subtransaction commit and abort
 * release or roll back to the savepoint.  There is no two-phase commit: a
 * crash after one node committed and before another did leaves the first
 * committed.  PREPARE TRANSACTION is refused (0A000).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "mb/pg_wchar.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "remote.h"

/* connect_timeout when the server and mapping do not set one */
#define KVEXT_REMOTE_CONNECT_TIMEOUT "10"
/* how long an abort waits for a remote ROLLBACK, in milliseconds */
#define KVEXT_REMOTE_CLEANUP_MS		30000

struct KvRemoteConn
{
	Oid			umid;			/* hash key: the user mapping's OID */
	PGconn	   *conn;			/* NULL: not connected */
	int			xact_depth;		/* 0: no remote transaction; 1: BEGIN
								 * done; n: savepoints s2..sn too */
	bool		busy;			/* a query was sent, its result not read */
	bool		lost;			/* closed inside a remote transaction */
	bool		invalidated;	/* server or mapping changed */
	Oid			serverid;
	uint32		server_hash;
	uint32		mapping_hash;
	char		servername[NAMEDATALEN];
};

static HTAB *conn_cache = NULL;
static bool xact_got_connection = false;

static void remote_xact_callback(XactEvent event, void *arg);
static void remote_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									SubTransactionId parentSubid, void *arg);
static void remote_inval_callback(Datum arg, int cacheid, uint32 hashvalue);

/* close an entry's connection */
static void
disconnect(KvRemoteConn *entry)
{
	if (entry->conn)
		PQfinish(entry->conn);
	entry->conn = NULL;
	entry->busy = false;
}

/*
 * check_password
 *		postgres_fdw's password_required rule: a non-superuser's mapping
 *		must carry a password (before connecting) that the server used
 *		(after), unless a superuser set password_required 'false'.
 *		conn NULL: the check before connecting.
 */
static void
check_password(PGconn *conn, UserMapping *user, const char *servername,
			   bool has_password)
{
	ListCell   *lc;

	if (superuser_arg(user->userid))
		return;
	foreach(lc, user->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "password_required") == 0 && !defGetBoolean(def))
			return;
	}
	if (conn == NULL && !has_password)
		ereport(ERROR,
				(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
				 errmsg("password is required"),
				 errdetail("Non-superuser must provide a password in the user mapping for server \"%s\".",
						   servername)));
	if (conn != NULL && !PQconnectionUsedPassword(conn))
		ereport(ERROR,
				(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
				 errmsg("password is required"),
				 errdetail("Non-superuser cannot connect to server \"%s\" if the server does not request a password.",
						   servername),
				 errhint("Target server's authentication method must be changed or password_required=false set in the user mapping attributes.")));
}

/* append the libpq options of list to keywords/values */
static int
add_options(List *options, PQconninfoOption *known, const char **keywords,
			const char **values, int n, bool *has_password, bool *has_timeout)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		for (PQconninfoOption *o = known; o->keyword; o++)
		{
			if (strcmp(o->keyword, def->defname) != 0)
				continue;
			keywords[n] = def->defname;
			values[n] = defGetString(def);
			if (strcmp(def->defname, "password") == 0 && values[n][0] != '\0')
				*has_password = true;
			if (strcmp(def->defname, "connect_timeout") == 0)
				*has_timeout = true;
			n++;
			break;
		}
	}
	return n;
}

/*
 * connect_wait
 *		Finish the connection attempt conn, waiting on its socket until
 *		deadline.  Returns false on failure or timeout (*timed_out);
 *		interrupts raise, and the caller closes conn.
 */
static bool
connect_wait(PGconn *conn, TimestampTz deadline, bool *timed_out)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	*timed_out = false;
	for (;;)
	{
		int			events;
		long		timeout;
		int			rc;

		if (st == PGRES_POLLING_OK)
			return true;
		if (st == PGRES_POLLING_FAILED)
			return false;
		events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH |
			(st == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE);
		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (timeout <= 0)
		{
			*timed_out = true;
			return false;
		}
		rc = WaitLatchOrSocket(MyLatch, events, PQsocket(conn), timeout,
							   PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (rc & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			st = PQconnectPoll(conn);
	}
}

/*
 * connect_server
 *		Open entry's connection for user mapping user of server.  08001
 *		naming the server when the node cannot be reached within
 *		connect_timeout.
 */
static void
connect_server(KvRemoteConn *entry, ForeignServer *server, UserMapping *user)
{
	PQconninfoOption *known = PQconndefaults();
	int			max = list_length(server->options) + list_length(user->options) + 3;
	const char **keywords = palloc(sizeof(char *) * max);
	const char **values = palloc(sizeof(char *) * max);
	bool		has_password = false;
	bool		has_timeout = false;
	const char *timeout_s = KVEXT_REMOTE_CONNECT_TIMEOUT;
	PGconn	   *volatile conn = NULL;
	int			n = 0;

	if (known == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	n = add_options(server->options, known, keywords, values, n,
					&has_password, &has_timeout);
	n = add_options(user->options, known, keywords, values, n,
					&has_password, &has_timeout);
	PQconninfoFree(known);
	for (int i = 0; i < n; i++)
		if (strcmp(keywords[i], "connect_timeout") == 0)
			timeout_s = values[i];
	if (!has_timeout)
	{
		keywords[n] = "connect_timeout";
		values[n++] = KVEXT_REMOTE_CONNECT_TIMEOUT;
	}
	keywords[n] = "fallback_application_name";
	values[n++] = "kvext_fdw";
	keywords[n] = NULL;
	values[n] = NULL;

	check_password(NULL, user, server->servername, has_password);

	PG_TRY();
	{
		TimestampTz deadline;
		bool		timed_out;
		int			secs = atoi(timeout_s);

		if (secs <= 0)
			secs = atoi(KVEXT_REMOTE_CONNECT_TIMEOUT);
		/* libpq's own minimum is 2 seconds */
		secs = Max(secs, 2);
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), secs * 1000);
		conn = PQconnectStartParams(keywords, values, false);
		if (conn == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not connect to server \"%s\"", server->servername),
					 errdetail("Out of memory.")));
		if (PQstatus(conn) == CONNECTION_BAD ||
			!connect_wait(conn, deadline, &timed_out))
		{
			char	   *msg = pchomp(PQerrorMessage(conn));

			if (PQstatus(conn) != CONNECTION_BAD && timed_out)
				msg = psprintf("No answer within connect_timeout (%d seconds).", secs);
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not connect to server \"%s\"", server->servername),
					 errdetail_internal("%s", msg)));
		}
		check_password(conn, user, server->servername, true);
		if (PQsetClientEncoding(conn, GetDatabaseEncodingName()) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not set the client encoding of the connection to server \"%s\"",
							server->servername)));
	}
	PG_CATCH();
	{
		if (conn)
			PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	entry->conn = conn;
	entry->invalidated = false;
	entry->lost = false;
	entry->busy = false;
	entry->xact_depth = 0;
	entry->serverid = server->serverid;
	strlcpy(entry->servername, server->servername, NAMEDATALEN);
	entry->server_hash = GetSysCacheHashValue1(FOREIGNSERVEROID,
											   ObjectIdGetDatum(server->serverid));
	entry->mapping_hash = GetSysCacheHashValue1(USERMAPPINGOID,
												ObjectIdGetDatum(user->umid));
	pfree(keywords);
	pfree(values);
}

/*
 * wait_result
 *		Read the results of the query sent on entry's connection, waiting
 *		on its socket (interruptible), and return the last one (the caller
 *		PQclears it).  A lost connection is 08006 naming the server.
 */
static PGresult *
wait_result(KvRemoteConn *entry)
{
	PGconn	   *conn = entry->conn;
	PGresult   *last = NULL;

	for (;;)
	{
		PGresult   *res;

		while (PQisBusy(conn))
		{
			int			rc = WaitLatchOrSocket(MyLatch,
											   WL_LATCH_SET | WL_SOCKET_READABLE |
											   WL_EXIT_ON_PM_DEATH,
											   PQsocket(conn), -1L,
											   PG_WAIT_EXTENSION);

			if (rc & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
			if ((rc & WL_SOCKET_READABLE) && !PQconsumeInput(conn))
			{
				/* the connection is lost: report_result says so */
				PQclear(last);
				entry->busy = false;
				return NULL;
			}
		}
		res = PQgetResult(conn);
		if (res == NULL)
			break;
		PQclear(last);
		last = res;
		if (PQstatus(conn) == CONNECTION_BAD)
			break;
	}
	entry->busy = false;
	return last;
}

/*
 * report_result
 *		Raise the error of res (NULL: the connection was lost) as the
 *		remote node gave it, with a context naming the server and the
 *		command.  Frees res.
 */
static void
report_result(KvRemoteConn *entry, PGresult *res, const char *sql)
{
	const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char	   *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char	   *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	char	   *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
	char	   *context = res ? PQresultErrorField(res, PG_DIAG_CONTEXT) : NULL;
	int			code = ERRCODE_CONNECTION_FAILURE;

	primary = primary ? pstrdup(primary) : NULL;
	detail = detail ? pstrdup(detail) : NULL;
	hint = hint ? pstrdup(hint) : NULL;
	context = context ? pstrdup(context) : NULL;
	if (sqlstate && strlen(sqlstate) == 5)
		code = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
							 sqlstate[3], sqlstate[4]);
	if (primary == NULL)
		primary = pchomp(PQerrorMessage(entry->conn));
	PQclear(res);
	if (PQstatus(entry->conn) == CONNECTION_BAD)
	{
		disconnect(entry);
		if (entry->xact_depth > 0)
			entry->lost = true;
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("lost connection to server \"%s\"", entry->servername),
				 errdetail_internal("%s", primary)));
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg_internal("%s", primary),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0,
			 context ? errcontext("%s", context) : 0,
			 errcontext("remote call on server \"%s\": %s", entry->servername, sql)));
}

/*
 * exec_simple
 *		Run a command that returns no rows (BEGIN, SAVEPOINT, COMMIT...);
 *		raise its error.
 */
static void
exec_simple(KvRemoteConn *entry, const char *sql)
{
	PGresult   *res;

	if (entry->conn == NULL)
		report_result(entry, NULL, sql);
	entry->busy = true;
	if (!PQsendQuery(entry->conn, sql))
		report_result(entry, NULL, sql);
	res = wait_result(entry);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		report_result(entry, res, sql);
	PQclear(res);
}

/*
 * KvRemoteExec
 *		Run sql with nparams parameters on conn; returns its result, rows or
 *		command, which the caller PQclears.  Errors are raised as the
 *		remote node gave them, with a context naming the server.
 */
PGresult *
KvRemoteExec(KvRemoteConn *conn, const char *sql, int nparams,
			 const char *const *values, const int *lengths,
			 const int *formats, int result_format)
{
	PGresult   *res;
	ExecStatusType st;

	if (conn->conn == NULL)
		report_result(conn, NULL, sql);
	conn->busy = true;
	if (!PQsendQueryParams(conn->conn, sql, nparams, NULL, values, lengths,
						   formats, result_format))
		report_result(conn, NULL, sql);
	res = wait_result(conn);
	st = PQresultStatus(res);
	if (res == NULL || (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK))
		report_result(conn, res, sql);
	return res;
}

/* the server name of a connection, for messages and EXPLAIN */
const char *
KvRemoteServerName(const KvRemoteConn *conn)
{
	return conn->servername;
}

/*
 * begin_remote_xact
 *		Start a remote transaction on entry if it has none, and savepoints
 *		up to the current local nesting level.
 */
static void
begin_remote_xact(KvRemoteConn *entry)
{
	int			level = GetCurrentTransactionNestLevel();

	if (entry->lost)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("lost connection to server \"%s\" during the transaction",
						entry->servername),
				 errdetail("The remote transaction was rolled back.")));
	if (entry->xact_depth <= 0)
	{
		exec_simple(entry, "START TRANSACTION");
		entry->xact_depth = 1;
	}
	while (entry->xact_depth < level)
	{
		char		sql[64];

		snprintf(sql, sizeof(sql), "SAVEPOINT s%d", entry->xact_depth + 1);
		exec_simple(entry, sql);
		entry->xact_depth++;
	}
}

/*
 * KvRemoteConnect
 *		The connection for user userid to server serverid, in a remote
 *		transaction at the local nesting level: cached, or opened now.  A
 *		cached connection found broken when its remote transaction starts
 *		is replaced.  Valid until the local transaction ends.
 */
KvRemoteConn *
KvRemoteConnect(Oid serverid, Oid userid)
{
	ForeignServer *server = GetForeignServer(serverid);
	UserMapping *user = GetUserMapping(userid, serverid);
	KvRemoteConn *entry;
	bool		found;

	if (conn_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(KvRemoteConn);
		conn_cache = hash_create("kvext remote connections", 8, &ctl,
								 HASH_ELEM | HASH_BLOBS);
		RegisterXactCallback(remote_xact_callback, NULL);
		RegisterSubXactCallback(remote_subxact_callback, NULL);
		CacheRegisterSyscacheCallback(FOREIGNSERVEROID, remote_inval_callback, 0);
		CacheRegisterSyscacheCallback(USERMAPPINGOID, remote_inval_callback, 0);
	}
	xact_got_connection = true;
	entry = hash_search(conn_cache, &user->umid, HASH_ENTER, &found);
	if (!found)
	{
		entry->conn = NULL;
		entry->xact_depth = 0;
		entry->lost = false;
		entry->busy = false;
	}
	if (entry->conn && entry->invalidated && entry->xact_depth == 0)
		disconnect(entry);
	if (entry->conn && entry->xact_depth == 0 &&
		PQstatus(entry->conn) == CONNECTION_BAD)
		disconnect(entry);
	if (entry->conn == NULL && !entry->lost)
		connect_server(entry, server, user);

	if (entry->xact_depth == 0)
	{
		MemoryContext cxt = CurrentMemoryContext;

		/* a broken cached connection shows at BEGIN: replace it once */
		PG_TRY();
		{
			begin_remote_xact(entry);
		}
		PG_CATCH();
		{
			if (entry->conn != NULL && PQstatus(entry->conn) != CONNECTION_BAD)
				PG_RE_THROW();
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			entry->lost = false;
			entry->xact_depth = 0;
			disconnect(entry);
			connect_server(entry, server, user);
			begin_remote_xact(entry);
		}
		PG_END_TRY();
	}
	else
		begin_remote_xact(entry);
	return entry;
}

/*
 * cleanup_exec
 *		Run sql during an abort, where nothing may raise: a bounded wait,
 *		no interrupts.  Returns whether it succeeded.
 */
static bool
cleanup_exec(KvRemoteConn *entry, const char *sql)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   KVEXT_REMOTE_CLEANUP_MS);
	bool		ok = true;
	PGresult   *res;

	if (entry->conn == NULL || PQstatus(entry->conn) == CONNECTION_BAD)
		return false;
	if (!PQsendQuery(entry->conn, sql))
		return false;
	for (;;)
	{
		while (PQisBusy(entry->conn))
		{
			long		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
																  deadline);
			int			rc;

			if (timeout <= 0)
				return false;
			rc = WaitLatchOrSocket(MyLatch,
								   WL_LATCH_SET | WL_SOCKET_READABLE |
								   WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								   PQsocket(entry->conn), timeout,
								   PG_WAIT_EXTENSION);
			if (rc & WL_LATCH_SET)
				ResetLatch(MyLatch);
			if ((rc & WL_SOCKET_READABLE) && !PQconsumeInput(entry->conn))
				return false;
		}
		res = PQgetResult(entry->conn);
		if (res == NULL)
			break;
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			ok = false;
		PQclear(res);
	}
	return ok;
}

/*
 * cancel_busy
 *		An abort interrupted a query on entry: cancel it on the node and
 *		close the connection (its state is unknown).
 */
static void
cancel_busy(KvRemoteConn *entry)
{
	PGcancel   *cancel;
	char		errbuf[256];

	if (entry->conn && (cancel = PQgetCancel(entry->conn)) != NULL)
	{
		(void) PQcancel(cancel, errbuf, sizeof(errbuf));
		PQfreeCancel(cancel);
	}
	disconnect(entry);
}

/*
 * remote_xact_callback
 *		Commit the remote transactions at local pre-commit, roll them back
 *		at abort (file header).
 */
static void
remote_xact_callback(XactEvent event, void *arg)
{
	HASH_SEQ_STATUS scan;
	KvRemoteConn *entry;

	if (!xact_got_connection)
		return;
	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		/* busy with no depth: START TRANSACTION itself was interrupted */
		if (entry->xact_depth <= 0 && !entry->lost && !entry->busy)
			continue;
		switch (event)
		{
			case XACT_EVENT_PARALLEL_PRE_COMMIT:
			case XACT_EVENT_PRE_COMMIT:
				if (entry->lost)
				{
					entry->lost = false;
					entry->xact_depth = 0;
					hash_seq_term(&scan);
					ereport(ERROR,
							(errcode(ERRCODE_CONNECTION_FAILURE),
							 errmsg("lost connection to server \"%s\" during the transaction",
									entry->servername),
							 errdetail("The remote transaction was rolled back.")));
				}
				PG_TRY();
				{
					exec_simple(entry, "COMMIT TRANSACTION");
				}
				PG_CATCH();
				{
					entry->xact_depth = 0;
					disconnect(entry);
					hash_seq_term(&scan);
					PG_RE_THROW();
				}
				PG_END_TRY();
				entry->xact_depth = 0;
				break;
			case XACT_EVENT_PRE_PREPARE:
				hash_seq_term(&scan);
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has used remote kvext servers")));
				break;
			case XACT_EVENT_PARALLEL_ABORT:
			case XACT_EVENT_ABORT:
				if (entry->busy)
					cancel_busy(entry);
				else if (entry->conn && !cleanup_exec(entry, "ABORT TRANSACTION"))
					disconnect(entry);
				entry->xact_depth = 0;
				entry->lost = false;
				break;
			default:
				/* COMMIT, PREPARE: done at PRE_COMMIT, refused at PRE_PREPARE */
				entry->xact_depth = 0;
				entry->lost = false;
				break;
		}
	}
	if (event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PARALLEL_PRE_COMMIT &&
		event != XACT_EVENT_PRE_PREPARE)
		xact_got_connection = false;
}

/*
 * remote_subxact_callback
 *		Release or roll back to the remote savepoint of a subtransaction
 *		that ends.
 */
static void
remote_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	HASH_SEQ_STATUS scan;
	KvRemoteConn *entry;
	int			level;

	if (!xact_got_connection ||
		(event != SUBXACT_EVENT_PRE_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB))
		return;
	level = GetCurrentTransactionNestLevel();
	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		char		sql[100];

		if (entry->xact_depth < level)
		{
			/* interrupted while starting this level's savepoint */
			if (event == SUBXACT_EVENT_ABORT_SUB && entry->busy)
			{
				cancel_busy(entry);
				entry->lost = entry->xact_depth > 0;
			}
			continue;
		}
		if (event == SUBXACT_EVENT_PRE_COMMIT_SUB)
		{
			snprintf(sql, sizeof(sql), "RELEASE SAVEPOINT s%d", level);
			PG_TRY();
			{
				exec_simple(entry, sql);
			}
			PG_CATCH();
			{
				hash_seq_term(&scan);
				PG_RE_THROW();
			}
			PG_END_TRY();
		}
		else
		{
			snprintf(sql, sizeof(sql),
					 "ROLLBACK TO SAVEPOINT s%d; RELEASE SAVEPOINT s%d",
					 level, level);
			if (entry->busy)
				cancel_busy(entry);
			if (entry->conn == NULL || !cleanup_exec(entry, sql))
			{
				/* the outer remote transaction is gone: its commit fails */
				disconnect(entry);
				entry->lost = true;
			}
		}
		entry->xact_depth = level - 1;
	}
}

/*
 * remote_inval_callback
 *		A server or user mapping changed: mark the connections that use it
 *		(hashvalue 0: all), to be closed at their next use outside a
 *		remote transaction.
 */
static void
remote_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS scan;
	KvRemoteConn *entry;

	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->conn == NULL)
			continue;
		if (hashvalue == 0 ||
			(cacheid == FOREIGNSERVEROID && entry->server_hash == hashvalue) ||
			(cacheid == USERMAPPINGOID && entry->mapping_hash == hashvalue))
			entry->invalidated = true;
	}
}
