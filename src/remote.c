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
 * the server, never a password.  Each new connection sets its search_path
 * to pg_catalog and the schema kvext is installed in there (found in
 * pg_extension, schema-qualified), as postgres_fdw sets pg_catalog: the
 * calls kvext sends name kvext's functions unqualified, and neither the
 * remote role's settings nor the server's options can put other functions
 * of those names in front of them.  A node without kvext is an error at
 * connection time.
 *
 * Multi-host servers.  A server whose host (or hostaddr) lists several
 * hosts, as libpq's multi-host form does ('h1,h2,h3', port one for all or
 * one per host), names the nodes of one replicated group.  Its main
 * connection per user mapping reaches the group's leader: connect_group
 * tries the hosts one by one (each attempt non-blocking, with its own
 * connect_timeout), starting with the one that led last, asks each node
 * kv_cluster_status() and keeps the first that leads ('single' counts: a
 * group of one) in a term no older than any other node answered; 08001
 * lists every host's answer when none does.  Every remote transaction on
 * it starts with "START TRANSACTION; SELECT role FROM kv_cluster_status()"
 * in one round trip, so a node that stopped leading since is noticed
 * before anything runs there.
 *
 * Following a promotion.  The entry records whether its remote
 * transaction has written (KvRemoteExec's write flag).  Until it has, the
 * remote transaction holds nothing that matters: kvext's reads see each
 * key as of when it is read, so there is no snapshot to keep, and there
 * are no writes to lose.  So when a call or the BEGIN finds the node gone
 * (the connection lost) or no longer leading (25006, or the role check),
 * the connection and its remote transaction are dropped, the nodes are
 * asked again, and the call is sent once more on the new leader, in a new
 * remote transaction with the same savepoint levels.  After a write the
 * call fails instead (25006 or 08006: the writes were not committed and
 * cannot move, so the local transaction must roll back), and the next
 * transaction finds the new leader.  A read-only remote transaction whose
 * connection is lost is also no reason to fail the local commit.
 *
 * read_from 'any'.  Reads of a table with read_from 'any' use a second
 * cached connection per user mapping, to the first node that answers
 * (leader or follower; a follower shows what the group committed, perhaps
 * behind the leader), and move to another node the same way when it is
 * lost.  A transaction that already uses the main connection reads there,
 * to see its own writes.
 *
 * Waits.  Connecting and every query wait on the socket with
 * WaitLatchOrSocket, so a cancel or termination of this backend
 * interrupts them; the connection attempt ends at connect_timeout.  A
 * query interrupted while the remote node runs it is ended there when the
 * local (sub)transaction aborts by closing the connection (its state is
 * unknown): the session sets client_connection_check_interval to 1 s, so
 * the node's backend notices within a second, even in a wait, and rolls
 * back.  (PQcancel would block, without a timeout, on a node that stopped
 * answering.)
 *
 * Asynchronous reads (fdw.c; docs/architecture.md): KvRemoteSend, then
 * KvRemoteConsume, then KvRemoteFinish (errors and failover as
 * KvRemoteExec).  One query in flight per connection: every other use of
 * it first calls its sender (pending_fn) to take the result.
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
#include "mb/pg_wchar.h"
#include "storage/latch.h"
#include "storage/predicate.h"
#include "storage/proc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "deadline.h"
#include "kvext.h"
#include "remote.h"
#include "store/txn.h"

/* connect_timeout when the server and mapping do not set one */
#define KVEXT_REMOTE_CONNECT_TIMEOUT "10"
/*
 * how long an abort waits for a remote ROLLBACK, in milliseconds, before it
 * closes the connection (which rolls back too, once the node notices)
 */
#define KVEXT_REMOTE_CLEANUP_MS		5000

/* how the probe of a multi-host server asks a node for its role */
#define KVEXT_REMOTE_STATUS_SQL \
	"SELECT node, role, leader, term FROM kv_cluster_status()"
/*
 * a new connection's search_path: pg_catalog, then kvext's schema there;
 * no row if kvext is not installed in that database
 */
#define KVEXT_REMOTE_SETUP_SQL \
	"SELECT pg_catalog.set_config('search_path', 'pg_catalog, ' OPERATOR(pg_catalog.||) " \
	"pg_catalog.quote_ident(n.nspname), false), " \
	"pg_catalog.set_config('client_connection_check_interval', '1000', false) " \
	"FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n " \
	"ON n.oid OPERATOR(pg_catalog.=) e.extnamespace " \
	"WHERE e.extname OPERATOR(pg_catalog.=) 'kvext'"
/* a remote transaction's start on a group's leader, checking it still leads */
#define KVEXT_REMOTE_BEGIN_LEADER_SQL \
	"START TRANSACTION;%s SELECT role FROM kv_cluster_status()"

/* the hash key: a user mapping, and which of its connections */
typedef struct KvRemoteKey
{
	Oid			umid;			/* the user mapping's OID */
	int32		any;			/* 1: the read_from 'any' connection of a
								 * multi-host server; 0: the main one */
} KvRemoteKey;

struct KvRemoteConn
{
	KvRemoteKey key;			/* hash key */
	PGconn	   *conn;			/* NULL: not connected */
	int			xact_depth;		/* 0: no remote transaction; 1: BEGIN
								 * done; n: savepoints s2..sn too */
	bool		busy;			/* a query was sent, its result not read */
	bool		lost;			/* closed inside a remote transaction */
	bool		invalidated;	/* server or mapping changed */
	bool		multihost;		/* the server lists several hosts */
	bool		wrote;			/* the remote transaction sent a write */
	int			lock_timeout_sent;	/* lock_timeout it was given; -1: not
									 * known (a savepoint rolled back) */
	KvRemoteDrainFn pending_fn; /* who sent the query in flight (Send) */
	void	   *pending_arg;
	Oid			serverid;
	Oid			userid;			/* the local user it connects for */
	uint32		server_hash;
	uint32		mapping_hash;
	char		servername[NAMEDATALEN];
	/* multihost: the node connected (or last connected) to */
	int			host;			/* its position in the host list; -1 */
	char		node[NAMEDATALEN];	/* its kvext.node_name */
	char		addr[128];		/* its host:port, for messages */
};

/* the libpq options of a connection, with the positions of the lists */
typedef struct ConnParams
{
	const char **keywords;
	const char **values;
	int			host_i;			/* index of host in keywords, or -1 */
	int			addr_i;			/* of hostaddr */
	int			port_i;			/* of port */
	int			secs;			/* connect_timeout, in seconds */
} ConnParams;

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
	entry->pending_fn = NULL;
	entry->pending_arg = NULL;
}

/* before another use of entry: its sender takes the query in flight */
static void
drain_pending(KvRemoteConn *entry)
{
	if (entry->pending_fn != NULL)
		entry->pending_fn(entry->pending_arg);
	Assert(entry->pending_fn == NULL);
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
 * build_params
 *		The libpq options of a connection for user mapping user of server
 *		into *p (palloc'd in the current context): the server's and the
 *		mapping's libpq options, connect_timeout unless set,
 *		fallback_application_name and client_encoding.  Raises the
 *		password check's errors.
 */
static void
build_params(ForeignServer *server, UserMapping *user, ConnParams *p)
{
	PQconninfoOption *known = PQconndefaults();
	int			max = list_length(server->options) + list_length(user->options) + 4;
	bool		has_password = false;
	bool		has_timeout = false;
	const char *timeout_s = KVEXT_REMOTE_CONNECT_TIMEOUT;
	int			n = 0;

	if (known == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	p->keywords = palloc(sizeof(char *) * max);
	p->values = palloc(sizeof(char *) * max);
	n = add_options(server->options, known, p->keywords, p->values, n,
					&has_password, &has_timeout);
	n = add_options(user->options, known, p->keywords, p->values, n,
					&has_password, &has_timeout);
	PQconninfoFree(known);
	p->host_i = p->addr_i = p->port_i = -1;
	for (int i = 0; i < n; i++)
	{
		if (strcmp(p->keywords[i], "connect_timeout") == 0)
			timeout_s = p->values[i];
		else if (strcmp(p->keywords[i], "host") == 0)
			p->host_i = i;
		else if (strcmp(p->keywords[i], "hostaddr") == 0)
			p->addr_i = i;
		else if (strcmp(p->keywords[i], "port") == 0)
			p->port_i = i;
	}
	if (!has_timeout)
	{
		p->keywords[n] = "connect_timeout";
		p->values[n++] = KVEXT_REMOTE_CONNECT_TIMEOUT;
	}
	p->keywords[n] = "fallback_application_name";
	p->values[n++] = "kvext_fdw";
	/*
	 * As postgres_fdw: the node converts text (keyspace names, messages)
	 * between its database encoding and ours; keys and values travel as
	 * bytea, already UTF-8 (store/text.c).
	 */
	p->keywords[n] = "client_encoding";
	p->values[n++] = GetDatabaseEncodingName();
	p->keywords[n] = NULL;
	p->values[n] = NULL;

	p->secs = atoi(timeout_s);
	if (p->secs <= 0)
		p->secs = atoi(KVEXT_REMOTE_CONNECT_TIMEOUT);
	/* libpq's own minimum is 2 seconds */
	p->secs = Max(p->secs, 2);

	check_password(NULL, user, server->servername, has_password);
}

/*
 * open_conn
 *		One connection attempt with p's options, waited for until
 *		connect_timeout.  Returns the connection, or NULL with *why (a
 *		sentence, palloc'd).  Interrupts raise, the attempt closed.
 */
static PGconn *
open_conn(const ConnParams *p, char **why)
{
	PGconn	   *volatile conn = NULL;

	PG_TRY();
	{
		TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   p->secs * 1000);
		bool		timed_out = false;

		conn = PQconnectStartParams(p->keywords, p->values, false);
		if (conn == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		if (PQstatus(conn) == CONNECTION_BAD ||
			!connect_wait(conn, deadline, &timed_out))
		{
			if (PQstatus(conn) != CONNECTION_BAD && timed_out)
				*why = psprintf("No answer within connect_timeout (%d seconds).",
								p->secs);
			else
				*why = pchomp(PQerrorMessage(conn));
			PQfinish(conn);
			conn = NULL;
		}
	}
	PG_CATCH();
	{
		if (conn)
			PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return conn;
}

static PGresult *probe_exec(PGconn *conn, const char *sql, TimestampTz deadline);

/*
 * setup_conn
 *		After connecting: the password check (raises), the client encoding
 *		and the search_path (file header), within secs seconds.  Returns
 *		false with *why set if the node did not answer or has no kvext;
 *		the caller closes conn then.
 */
static bool
setup_conn(PGconn *conn, UserMapping *user, const char *servername, int secs,
		   char **why)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   secs * 1000);
	PGresult   *res;
	bool		ok;

	check_password(conn, user, servername, true);
	if (PQsetClientEncoding(conn, GetDatabaseEncodingName()) != 0)
	{
		*why = psprintf("could not set the client encoding to %s",
						GetDatabaseEncodingName());
		return false;
	}
	res = probe_exec(conn, KVEXT_REMOTE_SETUP_SQL, deadline);
	ok = res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
	if (res == NULL)
		*why = pstrdup("no answer to the session setup");
	else if (PQresultStatus(res) != PGRES_TUPLES_OK)
		*why = pstrdup(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
					   PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) :
					   "the session setup failed");
	else if (!ok)
		*why = psprintf("extension kvext is not installed in database \"%s\"",
						PQdb(conn));
	PQclear(res);
	return ok;
}

/*
 * probe_exec
 *		Run sql on conn during a connection attempt, waiting (interruptibly)
 *		until deadline.  Returns the last result, which the caller
 *		PQclears, or NULL if conn broke or the deadline passed (the caller
 *		closes conn).
 */
static PGresult *
probe_exec(PGconn *conn, const char *sql, TimestampTz deadline)
{
	PGresult   *last = NULL;

	if (!PQsendQuery(conn, sql))
		return NULL;
	for (;;)
	{
		PGresult   *res;

		while (PQisBusy(conn))
		{
			long		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
																  deadline);
			int			rc;

			if (timeout <= 0)
			{
				PQclear(last);
				return NULL;
			}
			rc = WaitLatchOrSocket(MyLatch,
								   WL_LATCH_SET | WL_SOCKET_READABLE |
								   WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								   PQsocket(conn), timeout, PG_WAIT_EXTENSION);
			if (rc & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
			if ((rc & WL_SOCKET_READABLE) && !PQconsumeInput(conn))
			{
				PQclear(last);
				return NULL;
			}
		}
		res = PQgetResult(conn);
		if (res == NULL)
			break;
		PQclear(last);
		last = res;
	}
	return last;
}

/* the items of a libpq multi-host list ("h1,h2,h3"), palloc'd */
static List *
split_list(const char *v)
{
	List	   *items = NIL;
	const char *start = v;

	for (;; v++)
	{
		if (*v == ',' || *v == '\0')
		{
			items = lappend(items, pnstrdup(start, v - start));
			if (*v == '\0')
				break;
			start = v + 1;
		}
	}
	return items;
}

/* the i-th item of a multi-host list: the only one if it has one */
static const char *
list_item(List *items, int i)
{
	if (items == NIL)
		return NULL;
	return list_length(items) == 1 ? linitial(items) : list_nth(items, i);
}

/*
 * probe_node
 *		Ask the node at the other end of conn for its name and role.
 *		Returns whether entry may use it: any node for the read_from 'any'
 *		connection; for the main one, a node that leads (or is a group of
 *		one) in a term no older than *max_term, the highest term seen so
 *		far.  Otherwise appends why not to why.  Raises only on interrupts.
 */
static bool
probe_node(KvRemoteConn *entry, PGconn *conn, const char *label, int secs,
		   int64 *max_term, StringInfo why)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   secs * 1000);
	PGresult   *res = probe_exec(conn, KVEXT_REMOTE_STATUS_SQL, deadline);
	const char *node;
	const char *role;
	const char *leader;
	int64		term;
	bool		ok;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

		appendStringInfo(why, "\n%s: %s", label,
						 msg ? msg : res ? "unexpected answer to kv_cluster_status()" :
						 "no answer to kv_cluster_status()");
		PQclear(res);
		return false;
	}
	node = PQgetvalue(res, 0, 0);
	role = PQgetvalue(res, 0, 1);
	leader = PQgetisnull(res, 0, 2) ? "" : PQgetvalue(res, 0, 2);
	term = PQgetisnull(res, 0, 3) ? -1 : strtoi64(PQgetvalue(res, 0, 3), NULL, 10);
	strlcpy(entry->node, node, NAMEDATALEN);
	strlcpy(entry->addr, label, sizeof(entry->addr));
	if (entry->key.any)
		ok = true;
	else if (strcmp(role, "leader") == 0 || strcmp(role, "single") == 0)
	{
		ok = term >= *max_term;
		if (!ok)
			appendStringInfo(why, "\n%s: node \"%s\" leads in term " INT64_FORMAT ", but another node is in term " INT64_FORMAT ".",
							 label, node, term, *max_term);
	}
	else
	{
		ok = false;
		if (leader[0] != '\0')
			appendStringInfo(why, "\n%s: node \"%s\" follows node \"%s\" in term " INT64_FORMAT ".",
							 label, node, leader, term);
		else
			appendStringInfo(why, "\n%s: node \"%s\" is a follower without a leader (role %s).",
							 label, node, role[0] ? role : "unknown");
	}
	*max_term = Max(*max_term, term);
	PQclear(res);
	return ok;
}

/*
 * connect_group
 *		Connect entry to a node of a multi-host server: for the main
 *		connection the group's leader, for the read_from 'any' one the
 *		first node that answers.  Each host is tried in turn, with its own
 *		connect_timeout, starting with entry->host: the host used last
 *		time, or the one after it when that node failed (reconnect); the
 *		first host for a new entry.  08001 listing each host's answer when
 *		none fits.
 */
static PGconn *
connect_group(KvRemoteConn *entry, ConnParams *p, ForeignServer *server,
			  UserMapping *user)
{
	List	   *hosts = p->host_i >= 0 ? split_list(p->values[p->host_i]) : NIL;
	List	   *addrs = p->addr_i >= 0 ? split_list(p->values[p->addr_i]) : NIL;
	List	   *ports = p->port_i >= 0 ? split_list(p->values[p->port_i]) : NIL;
	int			nhosts = Max(list_length(hosts), list_length(addrs));
	int			start = (entry->host >= 0 && entry->host < nhosts) ? entry->host : 0;
	int64		max_term = -1;
	StringInfoData why;

	initStringInfo(&why);
	for (int k = 0; k < nhosts; k++)
	{
		int			i = (start + k) % nhosts;
		const char *host = list_item(hosts, i);
		const char *addr = list_item(addrs, i);
		const char *port = list_item(ports, i);
		char	   *label;
		char	   *fail = NULL;
		PGconn	   *volatile conn;
		bool		ok = false;

		if (p->host_i >= 0)
			p->values[p->host_i] = host;
		if (p->addr_i >= 0)
			p->values[p->addr_i] = addr;
		if (p->port_i >= 0)
			p->values[p->port_i] = port;
		label = psprintf("%s%s%s", host ? host : addr,
						 port ? ":" : "", port ? port : "");
		conn = open_conn(p, &fail);
		if (conn == NULL)
		{
			appendStringInfo(&why, "\n%s: %s", label, fail);
			continue;
		}
		PG_TRY();
		{
			if (setup_conn(conn, user, server->servername, p->secs, &fail))
				ok = probe_node(entry, conn, label, p->secs, &max_term, &why);
			else
				appendStringInfo(&why, "\n%s: %s", label, fail);
		}
		PG_CATCH();
		{
			PQfinish(conn);
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (ok)
		{
			entry->host = i;
			return conn;
		}
		PQfinish(conn);
	}
	if (entry->key.any)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to any node of server \"%s\"",
						server->servername),
				 errdetail_internal("Tried:%s", why.data)));
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not find the leader of server \"%s\"", server->servername),
			 errdetail_internal("Tried:%s", why.data),
			 errhint("If the group lost its leader, promote a follower with kv_promote(); kv_cluster_status() on each node shows its role.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * connect_server
 *		Open entry's connection for user mapping user of server: to its one
 *		node, or to a node of its group (connect_group).  08001 naming the
 *		server when no node fits within connect_timeout.
 */
static void
connect_server(KvRemoteConn *entry, ForeignServer *server, UserMapping *user)
{
	ConnParams	p;
	PGconn	   *volatile conn = NULL;
	char	   *why = NULL;
	const char *hostlist;

	build_params(server, user, &p);
	hostlist = p.host_i >= 0 ? p.values[p.host_i] :
		p.addr_i >= 0 ? p.values[p.addr_i] : "";
	entry->multihost = strchr(hostlist, ',') != NULL;
	if (entry->multihost)
		conn = connect_group(entry, &p, server, user);
	else
	{
		conn = open_conn(&p, &why);
		if (conn == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not connect to server \"%s\"", server->servername),
					 errdetail_internal("%s", why)));
		PG_TRY();
		{
			if (!setup_conn(conn, user, server->servername, p.secs, &why))
				ereport(ERROR,
						(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
						 errmsg("could not connect to server \"%s\"", server->servername),
						 errdetail_internal("%s", why)));
		}
		PG_CATCH();
		{
			PQfinish(conn);
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	entry->conn = conn;
	entry->invalidated = false;
	entry->lost = false;
	entry->busy = false;
	entry->wrote = false;
	entry->xact_depth = 0;
	entry->serverid = server->serverid;
	entry->userid = user->userid;
	strlcpy(entry->servername, server->servername, NAMEDATALEN);
	entry->server_hash = GetSysCacheHashValue1(FOREIGNSERVEROID,
											   ObjectIdGetDatum(server->serverid));
	entry->mapping_hash = GetSysCacheHashValue1(USERMAPPINGOID,
												ObjectIdGetDatum(user->umid));
	pfree(p.keywords);
	pfree(p.values);
}

/*
 * commit_in_doubt
 *		The remote COMMIT on entry was sent and its wait ended without an
 *		answer (cancel, termination, statement_timeout, a lost connection):
 *		the node may commit it or may not, so neither an error that reads
 *		as a rollback nor a success is true.  40003, as for kvext's own
 *		majority wait (DESIGN.md, Errors); the local transaction rolls
 *		back.  why is the detail.
 */
static void
commit_in_doubt(KvRemoteConn *entry, const char *why)
{
	char		server[NAMEDATALEN * 2 + 16];

	if (entry->multihost && entry->node[0] != '\0')
		snprintf(server, sizeof(server), "node \"%s\" of server \"%s\"",
				 entry->node, entry->servername);
	else
		snprintf(server, sizeof(server), "server \"%s\"", entry->servername);
	ereport(ERROR,
			(errcode(ERRCODE_T_R_STATEMENT_COMPLETION_UNKNOWN),
			 errmsg("the transaction's writes on %s may or may not be committed",
					server),
			 errdetail_internal("%s", why),
			 errhint("Read the keys the transaction wrote on that server to learn the outcome there.")));
}

/*
 * wait_result
 *		Read the results of the query sent on entry's connection, waiting
 *		on its socket (interruptible), and return the last one (the caller
 *		PQclears it).  NULL: the connection is lost (report_result says
 *		so).  cut_short (not NULL): the query is the remote COMMIT, whose
 *		wait may be cut short but never by a plain error: a cancel, a
 *		termination or the statement_timeout (counted from the statement's
 *		start, as KvVisibleWait does) returns NULL with *cut_short set to
 *		why (commit_remote decides).  A termination stays pending, so the
 *		backend still exits afterwards.
 */
static PGresult *
wait_result(KvRemoteConn *entry, const char **cut_short)
{
	bool		commit = (cut_short != NULL);
	PGconn	   *conn = entry->conn;
	PGresult   *last = NULL;
	TimestampTz deadline = 0;

	if (commit)
		deadline = KvCommitDeadline();
	for (;;)
	{
		PGresult   *res;

		while (PQisBusy(conn))
		{
			long		timeout = -1L;
			int			rc;

			if (commit)
			{
				TimestampTz now = GetCurrentTimestamp();

				if (QueryCancelPending || ProcDiePending || KvClientConnectionLost() ||
					(deadline != 0 && now >= deadline))
				{
					PQclear(last);
					QueryCancelPending = false;
					*cut_short = ProcDiePending || ClientConnectionLost ?
						"The session ended while it waited for the remote COMMIT." :
						"The wait for the remote COMMIT was cancelled.";
					return NULL;
				}
				if (deadline != 0)
					timeout = Max(1L, TimestampDifferenceMilliseconds(now, deadline));
			}
			rc = WaitLatchOrSocket(MyLatch,
								   WL_LATCH_SET | WL_SOCKET_READABLE |
								   WL_EXIT_ON_PM_DEATH |
								   (timeout >= 0 ? WL_TIMEOUT : 0),
								   PQsocket(conn), timeout,
								   PG_WAIT_EXTENSION);
			if (rc & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				if (!commit)
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
	res = wait_result(entry, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		report_result(entry, res, sql);
	PQclear(res);
}

/*
 * commit_remote
 *		The remote COMMIT at local pre-commit.  A COMMIT that was sent and
 *		got no answer, or whose connection broke, is in doubt (40003); an
 *		error the node answered is its own, as it gave it (a remote 40001
 *		rolled back, a remote 40003 is in doubt there too).
 */
static void
commit_remote(KvRemoteConn *entry)
{
	const char *sql = "COMMIT TRANSACTION";
	const char *cut_short = NULL;
	PGresult   *res;

	drain_pending(entry);
	if (entry->conn == NULL)
		report_result(entry, NULL, sql);
	entry->busy = true;
	/* not sent: the node rolls back when the connection closes */
	if (!PQsendQuery(entry->conn, sql))
		report_result(entry, NULL, sql);
	res = wait_result(entry, &cut_short);
	if (res == NULL || PQstatus(entry->conn) == CONNECTION_BAD)
	{
		char	   *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

		/* a transaction that only read there has nothing in doubt */
		if (!entry->wrote)
		{
			PQclear(res);
			disconnect(entry);
			return;
		}
		if (cut_short == NULL)
			cut_short = psprintf("The connection was lost after COMMIT was sent: %s",
								 msg ? msg : pchomp(PQerrorMessage(entry->conn)));
		PQclear(res);
		commit_in_doubt(entry, cut_short);
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		report_result(entry, res, sql);
	PQclear(res);
}

/*
 * remote_lock_timeout
 *		The SET LOCAL that gives a new remote transaction this session's
 *		lock_timeout (or "" for none): a key wait on a node, and so a
 *		deadlock across two nodes, which neither node can see, ends as the
 *		session's own waits do (55P03).  A later change is sent before the
 *		next statement that uses the connection (begin_remote_xact).
 */
static const char *
remote_lock_timeout(void)
{
	if (LockTimeout <= 0)
		return "";
	return psprintf(" SET LOCAL lock_timeout = %d;", LockTimeout);
}

/*
 * begin_on_leader
 *		START TRANSACTION on the main connection of a multi-host server,
 *		checking in the same round trip that its node still leads.  Returns
 *		false if it does not (a promotion elsewhere made it a follower):
 *		the caller closes the connection, which ends that transaction.
 */
static bool
begin_on_leader(KvRemoteConn *entry)
{
	PGresult   *res;
	bool		leads;
	char	   *sql = psprintf(KVEXT_REMOTE_BEGIN_LEADER_SQL, remote_lock_timeout());

	if (entry->conn == NULL)
		report_result(entry, NULL, sql);
	entry->busy = true;
	if (!PQsendQuery(entry->conn, sql))
		report_result(entry, NULL, sql);
	res = wait_result(entry, NULL);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		report_result(entry, res, sql);
	leads = strcmp(PQgetvalue(res, 0, 0), "leader") == 0 ||
		strcmp(PQgetvalue(res, 0, 0), "single") == 0;
	PQclear(res);
	return leads;
}

/*
 * begin_remote_xact
 *		Start a remote transaction on entry if it has none, and savepoints
 *		up to the current local nesting level.  Returns false only when
 *		the main connection of a multi-host server no longer reaches the
 *		leader (begin_on_leader).
 */
static bool
begin_remote_xact(KvRemoteConn *entry)
{
	int			level = GetCurrentTransactionNestLevel();

	/* its remote COMMIT will wait (deadline.c) */
	KvDeadlineObserve();

	if (entry->lost)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("lost connection to server \"%s\" during the transaction",
						entry->servername),
				 errdetail("The remote transaction was rolled back.")));
	if (entry->xact_depth <= 0)
	{
		if (entry->multihost && !entry->key.any)
		{
			if (!begin_on_leader(entry))
				return false;
		}
		else
			exec_simple(entry, psprintf("START TRANSACTION;%s", remote_lock_timeout()));
		entry->xact_depth = 1;
		entry->lock_timeout_sent = Max(LockTimeout, 0);
	}
	while (entry->xact_depth < level)
	{
		char		sql[64];

		snprintf(sql, sizeof(sql), "SAVEPOINT s%d", entry->xact_depth + 1);
		exec_simple(entry, sql);
		entry->xact_depth++;
	}
	/* the session's lock_timeout changed since: every statement sees it */
	if (entry->lock_timeout_sent != Max(LockTimeout, 0))
	{
		exec_simple(entry, psprintf("SET LOCAL lock_timeout = %d", Max(LockTimeout, 0)));
		entry->lock_timeout_sent = Max(LockTimeout, 0);
	}
	return true;
}

/*
 * reconnect
 *		Replace entry's connection, and the remote transaction on it, by a
 *		new one in a remote transaction at the local nesting level: for a
 *		multi-host server, the nodes are asked again which one leads.
 *		Only for a remote transaction that wrote nothing (nothing is lost
 *		with it).  25006 if the node found stops leading at once.
 */
static void
reconnect(KvRemoteConn *entry)
{
	ForeignServer *server = GetForeignServer(entry->serverid);
	UserMapping *user = GetUserMapping(entry->userid, entry->serverid);

	Assert(!entry->wrote);
	disconnect(entry);
	entry->xact_depth = 0;
	entry->lost = false;
	/* the node failed us: ask the next hosts first (connect_group wraps) */
	if (entry->multihost && entry->host >= 0)
		entry->host++;
	connect_server(entry, server, user);
	if (!begin_remote_xact(entry))
	{
		disconnect(entry);
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("node \"%s\" of server \"%s\" stopped leading its group",
						entry->node, entry->servername),
				 errhint("Retry once the group has a leader; kv_cluster_status() on each node shows its role.")));
	}
}

/*
 * is_failover
 *		Does the failed call res on entry (NULL: no result) show that its
 *		node is gone or no longer leads: a lost connection, or 25006?
 */
static bool
is_failover(KvRemoteConn *entry, PGresult *res)
{
	const char *sqlstate;

	if (entry->conn == NULL || res == NULL || PQstatus(entry->conn) == CONNECTION_BAD)
		return true;
	sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	return sqlstate != NULL && strcmp(sqlstate, "25006") == 0;
}

/*
 * report_failover
 *		The node of a multi-host server was lost or stopped leading after
 *		this transaction wrote there: those writes cannot move to another
 *		node, so the local transaction must end.  Frees res.
 */
static void
report_failover(KvRemoteConn *entry, PGresult *res)
{
	bool		lost = entry->conn == NULL || res == NULL ||
		PQstatus(entry->conn) == CONNECTION_BAD;

	PQclear(res);
	if (lost)
	{
		disconnect(entry);
		if (entry->xact_depth > 0)
			entry->lost = true;
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("lost connection to node \"%s\" of server \"%s\" during the transaction",
						entry->node, entry->servername),
				 errdetail("This transaction had written on node \"%s\": its writes there were not committed and cannot move to another node, so the local transaction must be rolled back.",
						   entry->node),
				 errhint("Roll back and retry the transaction; its first remote call finds the group's leader.")));
	}
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("node \"%s\" of server \"%s\" stopped leading its group during the transaction",
					entry->node, entry->servername),
			 errdetail("This transaction had written on node \"%s\": its writes there were not committed and cannot move to another node, so the local transaction must be rolled back.",
					   entry->node),
			 errhint("Roll back and retry the transaction; its first remote call finds the group's leader.")));
}

/*
 * exec_call
 *		Send sql (unless sent: KvRemoteSend did) and return its result.  On
 *		a multi-host server, a call that finds its node gone or no longer
 *		leading (is_failover) while the remote transaction has written
 *		nothing is sent again, once, in a new remote transaction on the
 *		node that leads now (reconnect); after a write it is
 *		report_failover's error.
 */
static PGresult *
exec_call(KvRemoteConn *conn, bool write, bool sent, const char *sql,
		  int nparams, const char *const *values, const int *lengths,
		  const int *formats, int result_format)
{
	for (int attempt = 0;; attempt++)
	{
		PGresult   *res = NULL;
		ExecStatusType st;

		if (conn->conn != NULL)
		{
			if (sent)
				res = wait_result(conn, NULL);
			else
			{
				conn->busy = true;
				if (PQsendQueryParams(conn->conn, sql, nparams, NULL, values,
									  lengths, formats, result_format))
					res = wait_result(conn, NULL);
			}
			st = PQresultStatus(res);
			if (res != NULL && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK))
			{
				if (write)
					conn->wrote = true;
				return res;
			}
		}
		sent = false;
		if (conn->multihost && is_failover(conn, res))
		{
			if (conn->wrote)
				report_failover(conn, res);
			if (attempt == 0)
			{
				PQclear(res);
				reconnect(conn);
				continue;
			}
		}
		report_result(conn, res, sql);
	}
}

/*
 * KvRemoteExec
 *		Run sql with nparams parameters on conn; returns its result, rows or
 *		command, which the caller PQclears.  write: sql writes keys (the
 *		remote transaction can then no longer move to another node).
 *		Errors are raised as the remote node gave them, with a context
 *		naming the server; failover as exec_call.  A query in flight on
 *		conn is finished first (drain_pending).
 */
PGresult *
KvRemoteExec(KvRemoteConn *conn, bool write, const char *sql, int nparams,
			 const char *const *values, const int *lengths,
			 const int *formats, int result_format)
{
	drain_pending(conn);
	return exec_call(conn, write, false, sql, nparams, values, lengths,
					 formats, result_format);
}

/*
 * KvRemoteSend
 *		Send the read sql on conn, which has nothing in flight, without
 *		waiting; until KvRemoteFinish, another use of conn first calls
 *		drain(arg), which must call it.  false: not sent (the connection
 *		broke); the caller runs it with KvRemoteExec, which reports or
 *		recovers.
 */
bool
KvRemoteSend(KvRemoteConn *conn, const char *sql, int nparams,
			 const char *const *values, const int *lengths,
			 const int *formats, int result_format,
			 KvRemoteDrainFn drain, void *arg)
{
	Assert(conn->pending_fn == NULL);
	if (conn->conn == NULL || PQstatus(conn->conn) == CONNECTION_BAD)
		return false;
	if (!PQsendQueryParams(conn->conn, sql, nparams, NULL, values, lengths,
						   formats, result_format))
		return false;
	conn->busy = true;
	conn->pending_fn = drain;
	conn->pending_arg = arg;
	return true;
}

/* the arg of the asynchronous query in flight on conn (KvRemoteSend), or NULL */
void *
KvRemotePending(const KvRemoteConn *conn)
{
	return conn->pending_arg;
}

/* the socket to wait on for conn's asynchronous query */
pgsocket
KvRemoteSocket(const KvRemoteConn *conn)
{
	return PQsocket(conn->conn);
}

/* read what arrived on conn; true: the result is complete (or lost) */
bool
KvRemoteConsume(KvRemoteConn *conn)
{
	return conn->conn == NULL || !PQconsumeInput(conn->conn) ||
		!PQisBusy(conn->conn);
}

/*
 * KvRemoteFinish
 *		The result of arg's KvRemoteSend (same sql and parameters, for a
 *		resend at failover), waited for if incomplete; as KvRemoteExec.
 *		08006 if a subtransaction abort cancelled it meanwhile.
 */
PGresult *
KvRemoteFinish(KvRemoteConn *conn, void *arg, const char *sql, int nparams,
			   const char *const *values, const int *lengths,
			   const int *formats, int result_format)
{
	if (conn->pending_arg != arg)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("lost connection to server \"%s\"", conn->servername),
				 errdetail("The remote read was cancelled when a subtransaction rolled back.")));
	conn->pending_fn = NULL;
	conn->pending_arg = NULL;
	return exec_call(conn, false, true, sql, nparams, values, lengths,
					 formats, result_format);
}

/* the server name of a connection, for messages and EXPLAIN */
const char *
KvRemoteServerName(const KvRemoteConn *conn)
{
	return conn->servername;
}

/*
 * KvRemoteNodeName
 *		The node of a multi-host server's connection, as "name at
 *		host:port" (palloc'd), or NULL for a single-host server.
 */
char *
KvRemoteNodeName(const KvRemoteConn *conn)
{
	if (!conn->multihost || conn->node[0] == '\0')
		return NULL;
	return psprintf("%s at %s", conn->node, conn->addr);
}

/*
 * KvRemoteCachedNodeName
 *		For EXPLAIN without connecting: the node that the cached connection
 *		of user userid to multi-host server serverid reaches (any: the
 *		read_from 'any' one), as KvRemoteNodeName; NULL if none is open.
 */
char *
KvRemoteCachedNodeName(Oid serverid, Oid userid, bool any)
{
	HASH_SEQ_STATUS scan;
	KvRemoteConn *entry;
	char	   *result = NULL;

	if (conn_cache == NULL)
		return NULL;
	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->conn == NULL || entry->serverid != serverid ||
			entry->userid != userid || entry->key.any != (any ? 1 : 0))
			continue;
		result = KvRemoteNodeName(entry);
		hash_seq_term(&scan);
		break;
	}
	return result;
}

/*
 * KvRemoteInit
 *		Register the transaction callbacks (_PG_init), after kvext's own
 *		(KvTxnInit): PostgreSQL calls the callback registered last first,
 *		so this pre-commit runs before kvext's and orders the whole commit
 *		(remote_xact_callback): every check that can still fail, then the
 *		local keys (KvTxnPreCommit), then the remote COMMITs, which cannot
 *		be taken back.
 */
void
KvRemoteInit(void)
{
	RegisterXactCallback(remote_xact_callback, NULL);
	RegisterSubXactCallback(remote_subxact_callback, NULL);
}

/*
 * KvRemoteConnect
 *		The connection for user userid to server serverid, in a remote
 *		transaction at the local nesting level: cached, or opened now.  A
 *		cached connection found broken when its remote transaction starts
 *		is replaced.  Valid until the local transaction ends.
 *
 *		any (read_from 'any' reads of a multi-host server): a connection of
 *		its own to any node of the group, unless this transaction already
 *		uses the main one: it reads there then, and sees its own writes.
 *		The main connection of a multi-host server reaches the leader, and
 *		moves to a new leader when its node stopped leading or was lost
 *		and its remote transaction wrote nothing.
 */
KvRemoteConn *
KvRemoteConnect(Oid serverid, Oid userid, bool any)
{
	ForeignServer *server = GetForeignServer(serverid);
	UserMapping *user = GetUserMapping(userid, serverid);
	KvRemoteConn *entry;
	KvRemoteKey key;
	bool		found;
	bool		begun;

	if (conn_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(KvRemoteKey);
		ctl.entrysize = sizeof(KvRemoteConn);
		conn_cache = hash_create("kvext remote connections", 8, &ctl,
								 HASH_ELEM | HASH_BLOBS);
		CacheRegisterSyscacheCallback(FOREIGNSERVEROID, remote_inval_callback, 0);
		CacheRegisterSyscacheCallback(USERMAPPINGOID, remote_inval_callback, 0);
	}
	xact_got_connection = true;
	memset(&key, 0, sizeof(key));
	key.umid = user->umid;
	if (any)
	{
		KvRemoteConn *mainconn = hash_search(conn_cache, &key, HASH_FIND, NULL);

		/* read your own writes: stay on the main connection if in use */
		if (mainconn == NULL || (mainconn->xact_depth <= 0 && !mainconn->lost))
			key.any = 1;
	}
	entry = hash_search(conn_cache, &key, HASH_ENTER, &found);
	if (!found)
	{
		entry->conn = NULL;
		entry->xact_depth = 0;
		entry->lost = false;
		entry->busy = false;
		entry->wrote = false;
		entry->pending_fn = NULL;
		entry->pending_arg = NULL;
		entry->multihost = false;
		entry->host = -1;
		entry->node[0] = '\0';
		entry->addr[0] = '\0';
	}
	/* a scan's asynchronous query in flight takes its result first */
	drain_pending(entry);
	if (entry->conn && entry->invalidated && entry->xact_depth == 0)
		disconnect(entry);
	if (entry->conn && entry->xact_depth == 0 &&
		PQstatus(entry->conn) == CONNECTION_BAD)
		disconnect(entry);
	/* a lost remote transaction that wrote nothing is just replaced */
	if (entry->lost && entry->multihost && !entry->wrote)
	{
		entry->lost = false;
		entry->xact_depth = 0;
	}
	if (entry->conn == NULL && !entry->lost)
		connect_server(entry, server, user);

	if (entry->xact_depth == 0 || (entry->multihost && !entry->wrote))
	{
		MemoryContext cxt = CurrentMemoryContext;

		/*
		 * A broken cached connection shows at BEGIN (or SAVEPOINT): replace
		 * it once, as a node that no longer leads.
		 */
		PG_TRY();
		{
			begun = begin_remote_xact(entry);
		}
		PG_CATCH();
		{
			if (entry->conn != NULL && PQstatus(entry->conn) != CONNECTION_BAD)
				PG_RE_THROW();
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			begun = false;
		}
		PG_END_TRY();
		if (!begun)
		{
			entry->wrote = false;
			reconnect(entry);
		}
	}
	else
		(void) begin_remote_xact(entry);
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

			/* a cancel or termination during the abort: stop waiting */
			if (timeout <= 0 || QueryCancelPending || ProcDiePending ||
				KvClientConnectionLost())
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
 *		An abort interrupted a query on entry: close the connection (its
 *		state is unknown).  No PQcancel: it blocks, with no timeout, in a
 *		callback where interrupts are held, so a node that accepts a
 *		connection and never answers (stopped, cut off) would hang the
 *		session for good.  The node's backend notices the closed
 *		connection within a second even while it runs or waits
 *		(client_connection_check_interval, set at connection) and ends,
 *		rolling its transaction back.
 */
static void
cancel_busy(KvRemoteConn *entry)
{
	disconnect(entry);
}

/*
 * conn_broken
 *		Has idle connection conn been closed by its node?  Reads what is
 *		there without waiting: a node that ended the session sent its
 *		FATAL and then closed, which the second read sees.
 */
static bool
conn_broken(PGconn *conn)
{
	for (int i = 0; i < 2; i++)
		if (!PQconsumeInput(conn))
			return true;
	return PQstatus(conn) == CONNECTION_BAD;
}

/*
 * check_lost_connections
 *		Pre-commit, before any remote COMMIT: a connection lost inside the
 *		transaction (its remote transaction rolled back) fails the commit
 *		while no node has committed yet; one where the transaction only
 *		read is forgotten.
 */
static void
check_lost_connections(void)
{
	HASH_SEQ_STATUS scan;
	KvRemoteConn *entry;

	hash_seq_init(&scan, conn_cache);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		/*
		 * A connection that broke since its last use (its remote backend
		 * was terminated, its node restarted) is found now, with what is
		 * already buffered, not at its COMMIT, after others committed.
		 */
		if (!entry->lost && entry->xact_depth > 0 && entry->conn != NULL &&
			!entry->busy && conn_broken(entry->conn))
		{
			disconnect(entry);
			entry->lost = true;
		}
		if (!entry->lost)
			continue;
		entry->lost = false;
		entry->xact_depth = 0;
		if (!entry->wrote)
			continue;			/* a read-only remote transaction: nothing lost */
		hash_seq_term(&scan);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("lost connection to server \"%s\" during the transaction",
						entry->servername),
				 errdetail("The remote transaction was rolled back.")));
	}
}

/* the servers whose remote transactions committed at this pre-commit */
static StringInfoData committed_on;

static StringInfo
committed_on_init(void)
{
	if (committed_on.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&committed_on);
		MemoryContextSwitchTo(old);
	}
	return &committed_on;
}

/* the error context of a commit, pushed at pre-commit (remote_xact_callback) */
static ErrorContextCallback commit_errcb;

/* take commit_errcb off the error context stack, if it is there */
static void
pop_commit_context(void)
{
	ErrorContextCallback **link = &error_context_stack;

	for (; *link != NULL; link = &(*link)->previous)
	{
		if (*link == &commit_errcb)
		{
			*link = commit_errcb.previous;
			break;
		}
	}
}

/* error context of a failed pre-commit: which servers committed before */
static void
committed_on_context(void *arg)
{
	if (committed_on.len > 0)
		errcontext("the remote transactions on server(s) %s committed before this error; kvext_fdw has no two-phase commit",
				   committed_on.data);
	if (KvTxnDecided())
		errcontext("this node's own kvext writes were decided before this error and commit nonetheless (its group logged their COMMIT record)");
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
	bool		pre_commit = (event == XACT_EVENT_PRE_COMMIT ||
							  event == XACT_EVENT_PARALLEL_PRE_COMMIT);

	if (!xact_got_connection)
		return;
	if (!pre_commit)
		pop_commit_context();
	if (pre_commit)
	{
		/*
		 * Every step that may fail, before the first remote COMMIT: lost
		 * connections, PostgreSQL's serializable check (which it runs
		 * again, harmlessly, after the callbacks), then this node's own
		 * keys (KvTxnPreCommit: in a group that decides them).
		 */
		resetStringInfo(committed_on_init());
		commit_errcb.callback = committed_on_context;
		commit_errcb.arg = NULL;
		commit_errcb.previous = error_context_stack;
		error_context_stack = &commit_errcb;
		check_lost_connections();
		if (IsolationIsSerializable())
			PreCommit_CheckForSerializationFailure();
		KvTxnPreCommit();

		/*
		 * The statement's time ran out before the commit came here (a long
		 * deferred trigger): end it now, while no remote COMMIT is sent.
		 */
		{
			TimestampTz deadline = KvCommitDeadline();

			if (deadline != 0 && GetCurrentTimestamp() >= deadline && !KvTxnDecided())
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("canceling statement due to statement timeout"),
						 errdetail("The time ran out before any remote COMMIT was sent.")));
		}
	}
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
				/* lost connections: check_lost_connections */
				if (entry->xact_depth <= 0 && !entry->busy)
					break;
				PG_TRY();
				{
					commit_remote(entry);
					appendStringInfo(&committed_on, "%s\"%s\"",
									 committed_on.len > 0 ? ", " : "",
									 entry->servername);
				}
				PG_CATCH();
				{
					entry->xact_depth = 0;
					entry->wrote = false;
					disconnect(entry);
					hash_seq_term(&scan);
					PG_RE_THROW();
				}
				PG_END_TRY();
				entry->xact_depth = 0;
				entry->wrote = false;
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
				entry->wrote = false;
				break;
			default:
				/* COMMIT, PREPARE: done at PRE_COMMIT, refused at PRE_PREPARE */
				entry->xact_depth = 0;
				entry->lost = false;
				entry->wrote = false;
				break;
		}
	}
	/*
	 * Once something is committed, the context stays for what PostgreSQL
	 * runs after the pre-commit callbacks and may still fail (ON COMMIT
	 * actions, NOTIFY): such an error must not read as a clean rollback.
	 * Removed at COMMIT (an error unwinds the stack itself).
	 */
	if (pre_commit && committed_on.len == 0 && !KvTxnDecided())
		pop_commit_context();
	if (!pre_commit && event != XACT_EVENT_PRE_PREPARE)
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
		/* a SET LOCAL inside the savepoint may be undone with it */
		if (event == SUBXACT_EVENT_ABORT_SUB)
			entry->lock_timeout_sent = -1;
		if (event == SUBXACT_EVENT_PRE_COMMIT_SUB)
		{
			snprintf(sql, sizeof(sql), "RELEASE SAVEPOINT s%d", level);
			PG_TRY();
			{
				drain_pending(entry);
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
