#!/usr/bin/env bash
# make run: build and install kvext, start (or reuse) a replication group of
# three local PostgreSQL 15 servers with kvext preloaded, listening on
# 127.0.0.1 -- n1 the leader, n2 and n3 its followers -- and run a short demo
# that writes on the leader and reads on a follower.
#
#   PORT=5499      first port to try: n1 takes the first free one from there
#                  up, n2 and n3 the next free ones after it
#   PG_CONFIG=...  pg_config to use (default: PostgreSQL 15's)
#   NOBUILD=1      do not build or install: use the kvext installed already
#                  (the README test runs make run against make test's
#                  assert-enabled build)
#   KVEXT_RUN_DIR=dir
#                  directory for the state file and, if short enough, the
#                  data directories (default: .run in the source tree); make
#                  stop takes the same setting
#
# Node nX keeps its data directory in $KVEXT_RUN_DIR/nX/data when the
# postgres user can use it there, else in /tmp/kvext-run/nX/data; its server
# log and Unix socket are in nX/ next to it.  The nodes, their data
# directories and ports are recorded in $KVEXT_RUN_DIR/state for
# scripts/stop.sh (make stop).
#
# Every node has the same replication settings (kvext.node_name of its own,
# kvext.peers naming the other two, kvext.leader = 'n1'; see README,
# "Replication").  The leader's log senders connect to the followers as the
# bootstrap user, to the database kvext_demo, where kvext exists on every
# node.
#
# The demo runs in that database and writes only its own keyspaces (demo,
# and demo_orders_0..3 under the distributed table demo_orders), recreated
# at each run; the leader's database printed at the end (kvext) is
# left without the extension, so that the README's examples, from CREATE
# EXTENSION on, run there as written.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STATE_DIR="${KVEXT_RUN_DIR:-$ROOT/.run}"
STATE="$STATE_DIR/state"
DBNAME=kvext
DEMO_DBNAME=kvext_demo
NODES=(n1 n2 n3)
LEADER=n1
FOLLOWERS=(n2 n3)
# how long the demo waits for a follower to apply the leader's writes
FOLLOWER_WAIT=30

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
if [ "$IS_ROOT" -eq 1 ]; then
	PGUSER_NAME=postgres
else
	PGUSER_NAME=$(id -un)
fi

header() { printf '\n==> %s\n' "$*"; }
die() {
	echo "run: $*" >&2
	exit 1
}
as_pg() {
	if [ "$IS_ROOT" -eq 1 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

header "deps"
"$ROOT/scripts/deps.sh"

if [ -z "${PG_CONFIG:-}" ]; then
	if [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
		PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
	else
		PG_CONFIG=pg_config
	fi
fi
BINDIR=$("$PG_CONFIG" --bindir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
SHAREDIR=$("$PG_CONFIG" --sharedir)

if [ "${NOBUILD:-0}" = 1 ]; then
	header "build and install: skipped (NOBUILD=1), using the installed kvext"
	[ -f "$PKGLIBDIR/kvext.so" ] || die "NOBUILD=1, but kvext is not installed in $PKGLIBDIR"
else
	header "build: make"
	# always from clean: make test leaves an assert-enabled build behind, and
	# make does not notice a change of flags
	make -C "$ROOT" --no-print-directory PG_CONFIG="$PG_CONFIG" clean >/dev/null
	make -C "$ROOT" --no-print-directory PG_CONFIG="$PG_CONFIG"

	header "install: make install"
	# install_writable, installed_matches
	. "$ROOT/scripts/lib.sh"

	if install_writable; then
		make -C "$ROOT" --no-print-directory PG_CONFIG="$PG_CONFIG" install >/dev/null
		echo "installed into $PKGLIBDIR and $SHAREDIR/extension"
	elif installed_matches; then
		echo "$PKGLIBDIR is not writable by $(id -un), but this build is already installed"
	else
		die "$PKGLIBDIR or $SHAREDIR/extension is not writable by $(id -un):" \
			"run make run as root (or make install as root first)"
	fi
fi

# Libpq settings of the caller must not redirect us to another server.
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE PGOPTIONS PGDATA

# Per node: data directory, directory holding it (log, socket), port.
declare -A DATADIR NODEDIR NPORT

port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
# port_taken p: in use, a socket file of another server, or given to a node
port_taken() {
	local p=$1 n
	port_in_use "$p" && return 0
	for n in "${NODES[@]}"; do
		[ -e "${NODEDIR[$n]}/.s.PGSQL.$p" ] && return 0
		[ "${NPORT[$n]:-}" = "$p" ] && return 0
	done
	return 1
}
# pick_port from: the first free port from there up
pick_port() {
	local p=$1
	local last=$((${PORT:-5499} + 100))
	while [ "$p" -le "$last" ]; do
		if ! port_taken "$p"; then
			echo "$p"
			return 0
		fi
		p=$((p + 1))
	done
	die "no three free ports in ${PORT:-5499}..$last"
}

# Checksum of the installed library, to tell whether running servers have
# loaded the current build.
lib_sum() {
	md5sum <"$PKGLIBDIR/kvext.so" 2>/dev/null | cut -d' ' -f1
}

server_running() {
	as_pg "$BINDIR/pg_ctl" -D "${DATADIR[$1]}" status >/dev/null 2>&1
}
# the port a node's kvext_run.conf gives it
conf_port() {
	[ -f "${DATADIR[$1]}/kvext_run.conf" ] || return 0
	sed -n 's/^port *= *//p' "${DATADIR[$1]}/kvext_run.conf" | tail -n 1
}
state_get() {
	[ -f "$STATE" ] || return 0
	sed -n "s/^$1=//p" "$STATE" | tail -n 1
}

start_node() {
	local n=$1 dir=${NODEDIR[$1]}
	echo "$n: starting on port ${NPORT[$n]} (log: $dir/logfile)"
	if ! as_pg "$BINDIR/pg_ctl" -D "${DATADIR[$n]}" -l "$dir/logfile" -w -t 60 start >/dev/null; then
		echo "---- tail of $dir/logfile ----" >&2
		tail -n 30 "$dir/logfile" >&2 || true
		die "server $n failed to start"
	fi
}
stop_node() {
	as_pg "$BINDIR/pg_ctl" -D "${DATADIR[$1]}" stop -m fast -w -t 60 >/dev/null
}

# kvext_run.conf of node n: its port and the group's settings, the same
# on every node but for its name
write_conf() {
	local n=$1 m peers=""
	for m in "${NODES[@]}"; do
		[ "$m" = "$n" ] && continue
		peers+="${peers:+; }$m:host=127.0.0.1 port=${NPORT[$m]} dbname=$DEMO_DBNAME user=$PGUSER_NAME"
	done
	as_pg tee "${DATADIR[$n]}/kvext_run.conf" >/dev/null <<EOF
# written by scripts/run.sh (make run); rewritten when the group starts
shared_preload_libraries = 'kvext'
listen_addresses = '127.0.0.1'
port = ${NPORT[$n]}
unix_socket_directories = '${NODEDIR[$n]}'
cluster_name = 'kvext-$n'
kvext.node_name = '$n'
kvext.peers = '$peers'
kvext.leader = '$LEADER'
EOF
}

# ---------------------------------------------------------------------------
# A state file of the single-server make run (before the group): stop that
# server, whose port is in the way; its data directory is left alone.
mkdir -p "$STATE_DIR"
OLD_DATADIR=$(state_get datadir)
if [ -n "$OLD_DATADIR" ] && [ -f "$OLD_DATADIR/PG_VERSION" ]; then
	if as_pg "$BINDIR/pg_ctl" -D "$OLD_DATADIR" status >/dev/null 2>&1; then
		header "stopping the single server of an earlier make run ($OLD_DATADIR)"
		as_pg "$BINDIR/pg_ctl" -D "$OLD_DATADIR" stop -m fast -w -t 60 >/dev/null
	fi
	echo "note: $OLD_DATADIR, the single server's data directory, is no longer used;" \
		"remove it when it is no longer wanted"
	rm -f "$STATE"
fi

# Data directories: reuse the recorded ones, else choose where they go.
BASE=""
for n in "${NODES[@]}"; do
	d=$(state_get "$n.datadir")
	if [ -n "$d" ] && [ -f "$d/PG_VERSION" ]; then
		BASE=$(dirname "$(dirname "$d")")
		break
	fi
done
if [ -z "$BASE" ]; then
	# Prefer .run/ in the source tree; the postgres user must be able to
	# reach it, and the socket path (nX/.s.PGSQL.port) must fit in a
	# sun_path (107 bytes).
	candidate="$STATE_DIR"
	if [ "$IS_ROOT" -eq 1 ]; then
		chown postgres: "$STATE_DIR"
		if ! runuser -u postgres -- test -w "$STATE_DIR" -a -x "$STATE_DIR" 2>/dev/null; then
			candidate=""
		fi
	fi
	if [ -n "$candidate" ] && [ ${#candidate} -gt 80 ]; then
		candidate=""
	fi
	if [ -z "$candidate" ] && [ -n "${KVEXT_RUN_DIR:-}" ]; then
		die "KVEXT_RUN_DIR=$KVEXT_RUN_DIR cannot hold the data directories" \
			"(the postgres user must be able to write it, and its path must be under 80 bytes)"
	fi
	if [ -z "$candidate" ]; then
		candidate=/tmp/kvext-run
		mkdir -p "$candidate"
		[ "$IS_ROOT" -eq 1 ] && chown postgres: "$candidate"
		chmod 755 "$candidate"
	fi
	BASE="$candidate"
fi
for n in "${NODES[@]}"; do
	NODEDIR[$n]="$BASE/$n"
	DATADIR[$n]="$BASE/$n/data"
done

header "servers: $BASE/{$(IFS=,; echo "${NODES[*]}")}/data"
running=()
stopped=()
for n in "${NODES[@]}"; do
	if server_running "$n"; then running+=("$n"); else stopped+=("$n"); fi
done

LIB_SUM=$(state_get library)
if [ ${#stopped[@]} -eq 0 ]; then
	echo "all three servers already running (reusing them)"
	for n in "${NODES[@]}"; do
		NPORT[$n]=$(conf_port "$n")
		[ -n "${NPORT[$n]}" ] || die "cannot find the port of the running server $n in ${DATADIR[$n]}/kvext_run.conf"
	done
else
	# Some running, some not: the stopped ones restart on the ports the
	# running ones have as their peers' ports, if those are free; otherwise
	# the whole group restarts on new ports.
	if [ ${#running[@]} -gt 0 ]; then
		restart_all=0
		for n in "${running[@]}"; do
			NPORT[$n]=$(conf_port "$n")
			[ -n "${NPORT[$n]}" ] || restart_all=1
		done
		for n in "${stopped[@]}"; do
			p=$(conf_port "$n")
			if [ -z "$p" ] || port_in_use "$p" || [ -e "${NODEDIR[$n]}/.s.PGSQL.$p" ]; then
				restart_all=1
			fi
			NPORT[$n]=$p
		done
		if [ "$restart_all" -eq 1 ]; then
			echo "${running[*]} running, ${stopped[*]} not, and not startable on the same ports: restarting all three"
			for n in "${running[@]}"; do stop_node "$n"; done
			stopped=("${NODES[@]}")
			running=()
			NPORT=()
		else
			echo "${running[*]} already running (reusing); starting ${stopped[*]} on the ports the group has"
		fi
	fi

	for n in "${stopped[@]}"; do
		if [ ! -f "${DATADIR[$n]}/PG_VERSION" ]; then
			echo "$n: initdb"
			as_pg mkdir -p "${DATADIR[$n]}"
			as_pg "$BINDIR/initdb" -D "${DATADIR[$n]}" -U "$PGUSER_NAME" --auth=trust \
				--encoding=UTF8 --locale=C.UTF-8 >"${NODEDIR[$n]}/initdb.log" 2>&1 ||
				{ cat "${NODEDIR[$n]}/initdb.log" >&2; die "initdb of $n failed"; }
			echo "include_if_exists = 'kvext_run.conf'" |
				as_pg tee -a "${DATADIR[$n]}/postgresql.conf" >/dev/null
		fi
	done

	if [ ${#running[@]} -eq 0 ]; then
		p=${PORT:-5499}
		for n in "${NODES[@]}"; do
			NPORT[$n]=$(pick_port "$p")
			p=$((NPORT[$n] + 1))
		done
		for n in "${NODES[@]}"; do write_conf "$n"; done
		LIB_SUM=$(lib_sum)
	fi
	# Followers first: the leader's senders then find them ready.
	for n in "${FOLLOWERS[@]}" "$LEADER"; do
		case " ${stopped[*]} " in *" $n "*) start_node "$n" ;; esac
	done
	[ -n "$LIB_SUM" ] || LIB_SUM=$(lib_sum)
fi
if [ -n "$LIB_SUM" ] && [ "$LIB_SUM" != "$(lib_sum)" ]; then
	echo "note: the installed kvext library changed since these servers started;" \
		"make stop && make run to load the new build"
fi

{
	printf 'user=%s\nlibrary=%s\nleader=%s\n' "$PGUSER_NAME" "$LIB_SUM" "$LEADER"
	for n in "${NODES[@]}"; do
		printf '%s.datadir=%s\n%s.port=%s\n' "$n" "${DATADIR[$n]}" "$n" "${NPORT[$n]}"
	done
} >"$STATE"

psql_on() {
	local n=$1
	shift
	"$BINDIR/psql" -X -h 127.0.0.1 -p "${NPORT[$n]}" -U "$PGUSER_NAME" "$@"
}

# The demo database, with the extension, on every node (the senders connect
# to it); kvext on the leader only, without it.
for n in "${FOLLOWERS[@]}" "$LEADER"; do
	dbs=("$DEMO_DBNAME")
	[ "$n" = "$LEADER" ] && dbs+=("$DBNAME")
	for db in "${dbs[@]}"; do
		if [ "$(psql_on "$n" -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
			"$BINDIR/createdb" -h 127.0.0.1 -p "${NPORT[$n]}" -U "$PGUSER_NAME" "$db"
		fi
	done
	psql_on "$n" -d "$DEMO_DBNAME" -q -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' \
		-c 'CREATE EXTENSION IF NOT EXISTS kvext' >/dev/null
done

# Where to look when replication does not work.
replication_hint() {
	echo "see SELECT * FROM kv_replication_status(); on the leader" \
		"(psql -h 127.0.0.1 -p ${NPORT[$LEADER]} -U $PGUSER_NAME $DEMO_DBNAME)" \
		"and the servers' logs: $BASE/{$(IFS=,; echo "${NODES[*]}")}/logfile"
}

# The store belongs to the server: the demo keeps to its own keyspace, so
# the README's examples (default keyspace, keyspace "sessions") start fresh.
# A commit waits for a majority of the group: bound the wait, so that a
# group that does not replicate fails the demo instead of hanging it.
header "demo on the leader $LEADER (port ${NPORT[$LEADER]}, database $DEMO_DBNAME, keyspace demo)"
if ! PGOPTIONS="-c statement_timeout=60s" psql_on "$LEADER" -d "$DEMO_DBNAME" -v ON_ERROR_STOP=1 -a <<'EOF'; then
CREATE EXTENSION IF NOT EXISTS kvext;
SELECT kv_drop_keyspace('demo', if_exists => true);
SELECT kv_create_keyspace('demo');
SELECT kv_put('greeting', 'hello', keyspace => 'demo');
SELECT kv_get('greeting', keyspace => 'demo');
SELECT kv_incr('visits', keyspace => 'demo');
SELECT kv_incr('visits', 10, keyspace => 'demo');
SELECT kv_put('user:1', '{"name":"ada"}', keyspace => 'demo');
SELECT * FROM kv_scan('user:', keyspace => 'demo');
SELECT kv_put('written_at', clock_timestamp()::text, keyspace => 'demo');
SELECT * FROM kv_stats();
EOF
	echo >&2
	echo "run: the demo failed on the leader $LEADER (a commit waits until a majority of the group has it);" >&2
	echo "run: $(replication_hint)" >&2
	exit 1
fi

# A distributed table: kvext_fdw spreads a partitioned table over servers.
# Here both of its servers reach this one group -- demo_local, the leader's
# own store, and demo_group, a multi-host server naming all three nodes,
# whose writes go to whichever node leads -- so the demo shows routing,
# pruning and the remote calls on one machine; in production each server
# would be a group of its own.  Dropped and recreated at each run.
PORTS="${NPORT[n1]},${NPORT[n2]},${NPORT[n3]}"
header "a distributed table on the leader $LEADER: demo_orders over servers demo_local and demo_group"
if ! PGOPTIONS="-c statement_timeout=60s" psql_on "$LEADER" -d "$DEMO_DBNAME" -v ON_ERROR_STOP=1 \
	-v ports="$PORTS" -v user="$PGUSER_NAME" -a <<'EOF'; then
SET client_min_messages = warning;
DROP TABLE IF EXISTS demo_orders;
DROP SERVER IF EXISTS demo_local, demo_group CASCADE;
SELECT count(kv_drop_keyspace(k, if_exists => true))
  FROM unnest(ARRAY['demo_orders_0', 'demo_orders_1', 'demo_orders_2', 'demo_orders_3']) k;
RESET client_min_messages;
CREATE SERVER demo_local FOREIGN DATA WRAPPER kvext_fdw;
CREATE SERVER demo_group FOREIGN DATA WRAPPER kvext_fdw
  OPTIONS (host '127.0.0.1,127.0.0.1,127.0.0.1', port :'ports', dbname 'kvext_demo',
           batch_size '100');
CREATE USER MAPPING FOR CURRENT_USER SERVER demo_local;
CREATE USER MAPPING FOR CURRENT_USER SERVER demo_group OPTIONS (user :'user');
SELECT kv_create_distributed_table('demo_orders', ARRAY['demo_local', 'demo_group'], partitions => 4);
INSERT INTO demo_orders SELECT 'order:' || g, 'item ' || g FROM generate_series(1, 1000) g;
SELECT tableoid::regclass AS partition, count(*) FROM demo_orders GROUP BY 1 ORDER BY 1;
EXPLAIN (VERBOSE, COSTS OFF) SELECT value FROM demo_orders WHERE key = 'order:42';
SELECT value FROM demo_orders WHERE key = 'order:42';
UPDATE demo_orders SET key = 'order:42b' WHERE key = 'order:42';
SELECT tableoid::regclass AS partition, key, value FROM demo_orders
 WHERE key IN ('order:42', 'order:42b');
EXPLAIN (VERBOSE, COSTS OFF) SELECT value FROM demo_orders WHERE key = 'order:42b';
EOF
	echo >&2
	echo "run: the distributed table demo failed on the leader $LEADER" >&2
	echo "run: $(replication_hint)" >&2
	exit 1
fi
psql_on "$LEADER" -d "$DEMO_DBNAME" -q -c "SELECT kv_put('written_at', clock_timestamp()::text, keyspace => 'demo')" >/dev/null

# The follower applies the leader's writes in log order, once they are
# committed: when it has the demo's last write, it has them all.
F=${FOLLOWERS[0]}
header "read on the follower $F (port ${NPORT[$F]}, database $DEMO_DBNAME)"
want=$(psql_on "$LEADER" -d "$DEMO_DBNAME" -Atc "SELECT kv_get('written_at', keyspace => 'demo')")
echo "waiting until $F has applied the demo's writes (written_at = $want)..."
got=""
deadline=$((SECONDS + FOLLOWER_WAIT))
while :; do
	got=$(psql_on "$F" -d "$DEMO_DBNAME" -Atc "SELECT kv_get('written_at', keyspace => 'demo')" 2>/dev/null || true)
	[ "$got" = "$want" ] && break
	[ "$SECONDS" -ge "$deadline" ] && break
	sleep 0.2
done
if [ "$got" = "$want" ]; then
	psql_on "$F" -d "$DEMO_DBNAME" -v ON_ERROR_STOP=1 -a <<'EOF'
SELECT kv_get('greeting', keyspace => 'demo');
SELECT * FROM kv_scan('', keyspace => 'demo');
SELECT keyspace, entries FROM kv_keyspaces() WHERE keyspace LIKE 'demo_orders_%' ORDER BY 1;
EOF
else
	msg="the follower $F has not applied the leader's writes after ${FOLLOWER_WAIT}s"
	msg+=" (it has written_at = '${got:-nothing}')"
	echo "run: $msg" >&2
	echo "run: $(replication_hint)" >&2
	exit 1
fi

# The status functions, where this build has them.
header "the group, as the leader sees it"
psql_on "$LEADER" -d "$DEMO_DBNAME" -v ON_ERROR_STOP=1 <<'EOF'
SELECT to_regproc('kv_cluster_status') IS NOT NULL AS has_cluster,
       to_regproc('kv_replication_status') IS NOT NULL AS has_replication \gset
\if :has_cluster
\echo SELECT * FROM kv_cluster_status();
SELECT * FROM kv_cluster_status();
\else
\echo (kv_cluster_status() is not in this build)
\endif
\if :has_replication
\echo SELECT * FROM kv_replication_status();
\x on
SELECT * FROM kv_replication_status();
\else
\echo (kv_replication_status() is not in this build)
\endif
EOF

echo
echo "kvext replication group running on 127.0.0.1 (user $PGUSER_NAME):"
for n in "${NODES[@]}"; do
	role=follower
	[ "$n" = "$LEADER" ] && role=leader
	printf '  %s  %-8s  port %s  data %s  log %s\n' "$n" "$role" "${NPORT[$n]}" \
		"${DATADIR[$n]}" "${NODEDIR[$n]}/logfile"
done
echo "Connect to the leader with:"
echo "  psql -h 127.0.0.1 -p ${NPORT[$LEADER]} -U $PGUSER_NAME $DBNAME"
echo "and try the README's examples there, from CREATE EXTENSION kvext on."
echo "A follower serves reads of what the leader committed (writes there fail"
echo "with SQLSTATE 25006); kvext is in its database $DEMO_DBNAME:"
echo "  psql -h 127.0.0.1 -p ${NPORT[$F]} -U $PGUSER_NAME $DEMO_DBNAME"
echo "make stop to stop all three"
