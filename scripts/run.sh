#!/usr/bin/env bash
# make run: build and install kvext, start (or reuse) a local PostgreSQL 15
# server with kvext preloaded, listening on 127.0.0.1, and run a short demo.
#
#   PORT=5499      first port to try (the first free one from there up is used)
#   PG_CONFIG=...  pg_config to use (default: PostgreSQL 15's)
#
# The data directory is .run/data in the source tree when the postgres user can
# use it there, else /tmp/kvext-run/data.  Its location and port are recorded
# in .run/state for scripts/stop.sh (make stop).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STATE_DIR="$ROOT/.run"
STATE="$STATE_DIR/state"
DBNAME=kvext

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

header "build: make"
# always from clean: make test leaves an assert-enabled build behind, and
# make does not notice a change of flags
make -C "$ROOT" --no-print-directory PG_CONFIG="$PG_CONFIG" clean >/dev/null
make -C "$ROOT" --no-print-directory PG_CONFIG="$PG_CONFIG"

header "install: make install"
# Can make install write the system PostgreSQL directories?
install_writable() {
	[ -w "$PKGLIBDIR" ] && [ -w "$SHAREDIR/extension" ]
}
# Is exactly this build installed already (by root)?
installed_matches() {
	local f
	cmp -s "$ROOT/kvext.so" "$PKGLIBDIR/kvext.so" || return 1
	for f in "$ROOT"/kvext.control "$ROOT"/kvext--*.sql; do
		cmp -s "$f" "$SHAREDIR/extension/$(basename "$f")" || return 1
	done
}

if install_writable; then
	make -C "$ROOT" --no-print-directory PG_CONFIG="$PG_CONFIG" install >/dev/null
	echo "installed into $PKGLIBDIR and $SHAREDIR/extension"
elif installed_matches; then
	echo "$PKGLIBDIR is not writable by $(id -un), but this build is already installed"
else
	die "$PKGLIBDIR or $SHAREDIR/extension is not writable by $(id -un):" \
		"run make run as root (or make install as root first)"
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
if [ "$("${PSQL[@]}" -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$DBNAME'")" = 0 ]; then
	"$BINDIR/createdb" -h 127.0.0.1 -p "$PORT_USED" -U "$PGUSER_NAME" "$DBNAME"
fi

header "demo"
"${PSQL[@]}" -d "$DBNAME" -v ON_ERROR_STOP=1 -a <<'EOF'
CREATE EXTENSION IF NOT EXISTS kvext;
SELECT kv_put('greeting', 'hello');
SELECT kv_get('greeting');
SELECT kv_incr('visits');
SELECT kv_incr('visits', 10);
SELECT kv_create_keyspace('sessions', if_not_exists => true);
SELECT kv_put('user:1', '{"name":"ada"}', keyspace => 'sessions');
SELECT * FROM kv_scan('user:', keyspace => 'sessions');
SELECT * FROM kv_stats();
EOF

echo
echo "kvext server running (data: $DATADIR, log: $SOCKDIR/logfile). Connect with:"
echo "  psql -h 127.0.0.1 -p $PORT_USED -U $PGUSER_NAME $DBNAME"
echo "make stop to stop it"
