#!/usr/bin/env bash
# make stop: stop the servers started by scripts/run.sh (make run): the
# three nodes of its replication group, the leader first.
# KVEXT_RUN_DIR: the same setting as make run's (default: .run here).
# Harmless when nothing is running.  The data directories are kept, so the
# next make run starts the same group again.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="${KVEXT_RUN_DIR:-$ROOT/.run}/state"

if [ ! -f "$STATE" ]; then
	echo "stop: no kvext servers recorded (make run was not used here); nothing to stop"
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

# name=datadir lines: nX.datadir for the group, datadir for the single
# server of an earlier make run; the leader first, so that its senders do
# not see the followers go.
leader=$(sed -n 's/^leader=//p' "$STATE")
servers=$(
	sed -n 's/^datadir=\(.*\)$/server=\1/p' "$STATE"
	sed -n "s/^\(${leader:-n1}\)\.datadir=\(.*\)$/\1=\2/p" "$STATE"
	sed -n 's/^\([^.=]*\)\.datadir=\(.*\)$/\1=\2/p' "$STATE" | grep -v "^${leader:-n1}=" || true
)
if [ -z "$servers" ]; then
	echo "stop: $STATE records no data directory; nothing to stop"
	exit 0
fi

rc=0
while IFS= read -r line; do
	name=${line%%=*}
	datadir=${line#*=}
	if [ -z "$datadir" ] || [ ! -f "$datadir/PG_VERSION" ]; then
		echo "stop: $name: recorded data directory '$datadir' does not exist; nothing to stop"
		continue
	fi
	if ! as_pg "$PG_CTL" -D "$datadir" status >/dev/null 2>&1; then
		echo "stop: $name ($datadir) is not running"
		continue
	fi
	if as_pg "$PG_CTL" -D "$datadir" stop -m fast -w -t 60 >/dev/null; then
		echo "stop: $name ($datadir) stopped"
	else
		echo "stop: $name ($datadir) did not stop" >&2
		rc=1
	fi
done <<<"$servers"
exit $rc
