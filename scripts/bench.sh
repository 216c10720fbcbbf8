#!/usr/bin/env bash
# make bench: kvext side by side with PostgreSQL tables and Redis, as ratios
# (docs/benchmarks.md).
#
#   make bench            full run (about 25 minutes), writes docs/benchmarks.md
#   make bench QUICK=1    fewer, shorter rounds (under 3 minutes); prints the
#                         report only (set OUT=path to write it somewhere)
#   ROUNDS=n DURATION=s   override rounds per measurement / seconds per run
#   make bench ONLY=fragmentation
#                         only the fill / delete / refill experiment (about a
#                         minute); prints its part of the report
#   make bench ONLY=replication
#                         only kv_put on a 3-node kvext group against PostgreSQL
#                         synchronous replication (about 5 minutes); writes its
#                         section of docs/benchmarks.md (QUICK=1: prints it)
#   PG_CONFIG=path        the PostgreSQL to build against and to run: every
#                         server, pgbench and psql come from its bindir
#   PORT=n                servers take the free TCP ports from n up (default:
#                         ports the kernel picks)
#   HUGE_PAGES=n          2MB huge pages to reserve for the run (vm.nr_hugepages,
#                         as root; default 4096, the old value is restored at
#                         the end; 0: leave the setting alone).  Every server's
#                         default huge_pages = try then maps its shared memory
#                         on them, kvext and the PostgreSQL baselines alike
#
# Installs what it needs (PostgreSQL 15, redis-server, redis-tools), builds and
# installs kvext, then runs test/bench/bench.py, which starts its own servers
# on loopback and unix sockets in temporary directories and stops them at the
# end, also on failure or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

"$ROOT/scripts/deps.sh" redis-server redis-tools python3

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$PG_CONFIG" ] || PG_CONFIG=pg_config
# bench.py runs the servers from this pg_config's bindir: the installation
# that gets this build
export PG_CONFIG
echo "bench: make clean && make && make install" >&2
# from clean: make test leaves an assert-enabled build behind, and make does
# not notice a change of flags; benchmarks must measure the production build
make -s -C "$ROOT" PG_CONFIG="$PG_CONFIG" clean >/dev/null
make -s -C "$ROOT" PG_CONFIG="$PG_CONFIG"
if [ "$(id -u)" -eq 0 ]; then
	make -s -C "$ROOT" PG_CONFIG="$PG_CONFIG" install >/dev/null
elif ! cmp -s "$ROOT/kvext.so" "$("$PG_CONFIG" --pkglibdir)/kvext.so"; then
	echo "bench: this build is not installed; run make bench as root (or make install first)" >&2
	exit 1
fi

# Huge pages, as PostgreSQL's documentation advises for large shared memory:
# kvext's store is 1GB of it, read at random, and with 4kB pages most of a
# lookup's time went to TLB misses (docs/benchmarks.md, issue 12 profiles).
HUGE_PAGES=${HUGE_PAGES:-4096}
if [ "$HUGE_PAGES" != 0 ] && [ "$(id -u)" -eq 0 ] && [ -w /proc/sys/vm/nr_hugepages ]; then
	old_huge=$(cat /proc/sys/vm/nr_hugepages)
	trap 'echo "$old_huge" >/proc/sys/vm/nr_hugepages' EXIT
	echo "$HUGE_PAGES" >/proc/sys/vm/nr_hugepages ||
		echo "bench: could not reserve $HUGE_PAGES huge pages" >&2
fi

python3 "$ROOT/test/bench/bench.py"
