#!/usr/bin/env bash
# make stop: stop the server started by scripts/run.sh (make run).
# KVEXT_RUN_DIR: the same setting as make run's (default: .run here).
# Harmless when nothing is running.  The data directory is kept, so the next
# make run starts the same server again.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="${KVEXT_RUN_DIR:-$ROOT/.run}/state"

if [ ! -f "$STATE" ]; then
	echo "stop: no kvext server recorded (make run was not used here); nothing to stop"
	exit 0
fi
DATADIR=$(sed -n 's/^datadir=//p' "$STATE")
if [ -z "$DATADIR" ] || [ ! -f "$DATADIR/PG_VERSION" ]; then
	echo "stop: recorded data directory '$DATADIR' does not exist; nothing to stop"
	exit 0
fi

if [ -z "${PG_CONFIG:-}" ]; then
	if [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
		PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
	else
		PG_CONFIG=pg_config
	fi
fi
PG_CTL="$("$PG_CONFIG" --bindir)/pg_ctl"

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

if ! as_pg "$PG_CTL" -D "$DATADIR" status >/dev/null 2>&1; then
	echo "stop: kvext server ($DATADIR) is not running"
	exit 0
fi
as_pg "$PG_CTL" -D "$DATADIR" stop -m fast -w -t 60 >/dev/null
echo "stop: kvext server ($DATADIR) stopped"
