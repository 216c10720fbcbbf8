#!/usr/bin/env bash
# make run: build and install kvext, start (or reuse) a local PostgreSQL 15
# server with kvext preloaded, listening on 127.0.0.1, and run a short demo.
#
#   PORT=5499      first port to try (the first free one from there up is used)
#   PG_CONFIG=...  pg_config to use (default: PostgreSQL 15's)
#   NOBUILD=1      do not build or install: use the kvext installed already
#                  (the README test runs make run against make test's
#                  assert-enabled build)
#   KVEXT_RUN_DIR=dir
#                  directory for the state file and, if short enough, the
#                  data directory (default: .run in the source tree); make
#                  stop takes the same setting
#
# The data directory is $KVEXT_RUN_DIR/data when the postgres user can use it
# there, else /tmp/kvext-run/data.  Its location and port are recorded in
# $KVEXT_RUN_DIR/state for scripts/stop.sh (make stop).
#
# The demo runs in its own database (kvext_demo) and writes only its own
# keyspace (demo), recreated at each run; the database printed at the end
# (kvext) is left without the extension, so that the README's examples,
# from CREATE EXTENSION on, run there as written.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STATE_DIR="${KVEXT_RUN_DIR:-$ROOT/.run}"
STATE="$STATE_DIR/state"
DBNAME=kvext
DEMO_DBNAME=kvext_demo

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

port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
pick_port() {
	local p=${PORT:-5499}
	local last=$((p + 100))
	while [ "$p" -le "$last" ]; do
		if ! port_in_use "$p" && [ ! -e "$SOCKDIR/.s.PGSQL.$p" ]; then
			echo "$p"
			return 0
		fi
		p=$((p + 1))
	done
	die "no free port in ${PORT:-5499}..$last"
}

# Checksum of the installed library, to tell whether a running server has
# loaded the current build.
lib_sum() {
	md5sum <"$PKGLIBDIR/kvext.so" 2>/dev/null | cut -d' ' -f1
}

server_running() {
	as_pg "$BINDIR/pg_ctl" -D "$DATADIR" status >/dev/null 2>&1
}

# ---------------------------------------------------------------------------
# Data directory: reuse the recorded one, else choose.
DATADIR=""
PORT_USED=""
mkdir -p "$STATE_DIR"
if [ -f "$STATE" ]; then
	DATADIR=$(sed -n 's/^datadir=//p' "$STATE")
	PORT_USED=$(sed -n 's/^port=//p' "$STATE")
	if [ -n "$DATADIR" ] && [ ! -f "$DATADIR/PG_VERSION" ]; then
		DATADIR=""
		PORT_USED=""
	fi
fi

if [ -z "$DATADIR" ]; then
	# Prefer .run/data in the source tree; the postgres user must be able to
	# reach it, and the socket path must fit in a sun_path (107 bytes).
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
		die "KVEXT_RUN_DIR=$KVEXT_RUN_DIR cannot hold the data directory" \
			"(the postgres user must be able to write it, and its path must be under 80 bytes)"
	fi
	if [ -z "$candidate" ]; then
		candidate=/tmp/kvext-run
		mkdir -p "$candidate"
		[ "$IS_ROOT" -eq 1 ] && chown postgres: "$candidate"
		chmod 755 "$candidate"
	fi
	DATADIR="$candidate/data"
fi
SOCKDIR=$(dirname "$DATADIR")

header "server: $DATADIR"
if server_running; then
	echo "server already running (reusing it)"
	PORT_USED=$(sed -n 's/^port *= *//p' "$DATADIR/kvext_run.conf" 2>/dev/null | tail -n 1)
	[ -n "$PORT_USED" ] || die "cannot find the port of the running server in $DATADIR/kvext_run.conf"
	if [ "$(sed -n 's/^library=//p' "$STATE" 2>/dev/null)" != "$(lib_sum)" ]; then
		echo "note: the installed kvext library changed since this server started;" \
			"make stop && make run to load the new build"
	fi
	LIB_SUM=$(sed -n 's/^library=//p' "$STATE" 2>/dev/null)
else
	if [ ! -f "$DATADIR/PG_VERSION" ]; then
		echo "initdb"
		as_pg mkdir -p "$DATADIR"
		as_pg "$BINDIR/initdb" -D "$DATADIR" -U "$PGUSER_NAME" --auth=trust \
			--encoding=UTF8 --locale=C.UTF-8 >"$SOCKDIR/initdb.log" 2>&1 ||
			{ cat "$SOCKDIR/initdb.log" >&2; die "initdb failed"; }
		echo "include_if_exists = 'kvext_run.conf'" | as_pg tee -a "$DATADIR/postgresql.conf" >/dev/null
	fi
	PORT_USED=$(pick_port)
	as_pg tee "$DATADIR/kvext_run.conf" >/dev/null <<EOF
# written by scripts/run.sh (make run); rewritten at each start
shared_preload_libraries = 'kvext'
listen_addresses = '127.0.0.1'
port = $PORT_USED
unix_socket_directories = '$SOCKDIR'
EOF
	LIB_SUM=$(lib_sum)
	echo "starting on port $PORT_USED (log: $SOCKDIR/logfile)"
	if ! as_pg "$BINDIR/pg_ctl" -D "$DATADIR" -l "$SOCKDIR/logfile" -w -t 60 start >/dev/null; then
		echo "---- tail of $SOCKDIR/logfile ----" >&2
		tail -n 30 "$SOCKDIR/logfile" >&2 || true
		die "server failed to start"
	fi
fi
printf 'datadir=%s\nport=%s\nuser=%s\nlibrary=%s\n' "$DATADIR" "$PORT_USED" "$PGUSER_NAME" "$LIB_SUM" >"$STATE"

PSQL=("$BINDIR/psql" -X -h 127.0.0.1 -p "$PORT_USED" -U "$PGUSER_NAME")
for db in "$DBNAME" "$DEMO_DBNAME"; do
	if [ "$("${PSQL[@]}" -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 0 ]; then
		"$BINDIR/createdb" -h 127.0.0.1 -p "$PORT_USED" -U "$PGUSER_NAME" "$db"
	fi
done

# The store belongs to the server: the demo keeps to its own keyspace, so
# the README's examples (default keyspace, keyspace "sessions") start fresh.
header "demo (database $DEMO_DBNAME, keyspace demo)"
"${PSQL[@]}" -d "$DEMO_DBNAME" -v ON_ERROR_STOP=1 -a <<'EOF'
CREATE EXTENSION IF NOT EXISTS kvext;
SELECT kv_drop_keyspace('demo', if_exists => true);
SELECT kv_create_keyspace('demo');
SELECT kv_put('greeting', 'hello', keyspace => 'demo');
SELECT kv_get('greeting', keyspace => 'demo');
SELECT kv_incr('visits', keyspace => 'demo');
SELECT kv_incr('visits', 10, keyspace => 'demo');
SELECT kv_put('user:1', '{"name":"ada"}', keyspace => 'demo');
SELECT * FROM kv_scan('user:', keyspace => 'demo');
SELECT * FROM kv_stats();
EOF

echo
echo "kvext server running (data: $DATADIR, log: $SOCKDIR/logfile). Connect with:"
echo "  psql -h 127.0.0.1 -p $PORT_USED -U $PGUSER_NAME $DBNAME"
echo "and try the README's examples there, from CREATE EXTENSION kvext on"
echo "make stop to stop it"
