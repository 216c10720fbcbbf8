#!/usr/bin/env bash
# make fuzz: build kvext's libFuzzer harnesses (test/fuzz/) and run each for
# a bounded time, starting from its kept corpus (test/fuzz/corpus/<harness>/).
#
#   make fuzz                     each harness for FUZZ_TIME seconds
#   make fuzz FUZZ_TIME=600       (default 60)
#   make fuzz FUZZ_HARNESSES=fuzz_snapshot
#                                 only the named harnesses
#   scripts/fuzz.sh --replay      run each input of the kept corpus once
#                                 (what make test does); no fuzzing
#   FUZZ_JOBS=n                   harnesses run n at a time (default 3)
#
# What the fuzzer finds while it runs goes to a scratch corpus
# (test/fuzz/build/corpus/<harness>/, not tracked), so that the kept corpus
# stays small.  A crash or a sanitizer report stops that harness: the input
# is saved as test/fuzz/build/<harness>-crash-... (or -timeout-, -leak-,
# -oom-), the report is printed, and the script exits 1.  Fix the decoder,
# then keep the input as a regression case: copy it into
# test/fuzz/corpus/<harness>/ (the replay in make test runs it from then on).
#
# Prints one line per harness, "fuzz: <harness> ok" or "... FAILED"; the exit
# status is non-zero when any failed.  Needs clang and its libFuzzer runtime
# (scripts/deps.sh installs them) and PostgreSQL's server headers and
# libpgport/libpgcommon (postgresql-server-dev-15).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZDIR="$ROOT/test/fuzz"
BUILD="$FUZZDIR/build"
HARNESSES=(fuzz_log fuzz_snapshot fuzz_repl_append)
. "$ROOT/scripts/lib.sh"

"$ROOT/scripts/deps.sh" || exit 1

REPLAY=0
[ "${1:-}" = --replay ] && REPLAY=1
FUZZ_TIME=${FUZZ_TIME:-60}
FUZZ_JOBS=${FUZZ_JOBS:-3}

if [ -z "${PG_CONFIG:-}" ]; then
	if [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
		PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
	else
		PG_CONFIG=pg_config
	fi
fi

if [ -n "${FUZZ_HARNESSES:-}" ]; then
	read -r -a HARNESSES <<<"$FUZZ_HARNESSES"
fi
for h in "${HARNESSES[@]}"; do
	if [ ! -f "$FUZZDIR/$h.c" ]; then
		echo "fuzz: no harness $h (test/fuzz/$h.c)" >&2
		exit 1
	fi
done

# build (quietly; the compiler's output only on failure)
if ! out=$(make -C "$FUZZDIR" --no-print-directory PG_CONFIG="$PG_CONFIG" \
	"${HARNESSES[@]/#/build/}" 2>&1); then
	echo "$out"
	echo "fuzz: building the harnesses failed" >&2
	exit 1
fi

# the options every run shares: a slow input is a finding too, and leaks
# are checked (an error path that loses memory in a loop would grow a
# server's context)
COMMON=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=0)

# run_one HARNESS LOG: replay or fuzz one harness, its output into LOG
run_one() {
	local h=$1 log=$2
	local kept="$FUZZDIR/corpus/$h" scratch="$BUILD/corpus/$h"

	mkdir -p "$kept" "$BUILD/tmp"
	# each harness works in a directory of its own under TMPDIR; one that a
	# sanitizer killed stays there, and make clean removes it
	export TMPDIR="$BUILD/tmp"
	if [ "$REPLAY" -eq 1 ]; then
		timeout -k 10 300 "$BUILD/$h" "${COMMON[@]}" -runs=0 \
			-artifact_prefix="$BUILD/$h-" "$kept" >"$log" 2>&1
	else
		mkdir -p "$scratch"
		timeout -k 10 $((FUZZ_TIME + 120)) "$BUILD/$h" "${COMMON[@]}" \
			-max_total_time="$FUZZ_TIME" -artifact_prefix="$BUILD/$h-" \
			"$scratch" "$kept" >"$log" 2>&1
	fi
}

mkdir -p "$BUILD/logs"
declare -A running=()
failed=0

# report HARNESS: print its verdict (and its report, when it failed)
report() {
	local h=$1
	local rc runs log="$BUILD/logs/$h.log"
	rc=$(cat "$log.rc" 2>/dev/null || echo 1)
	if [ "$REPLAY" -eq 1 ]; then
		runs="$(sed -nE 's/^INFO: +([0-9]+) files found in .*/\1/p' "$log" | tail -n 1) kept inputs"
	else
		runs="$(sed -nE 's/^Done ([0-9]+) runs in .*/\1/p' "$log" | tail -n 1) runs"
	fi
	if [ "$rc" -eq 0 ]; then
		echo "fuzz: $h ok ($runs)"
	else
		failed=$((failed + 1))
		echo "fuzz: $h FAILED (status $rc); its report:"
		grep -vE '^(INFO|#[0-9]+)' "$log" | head -n 80
		grep -oE "Test unit written to .*" "$log"
		echo "fuzz: reproduce with: $BUILD/$h <that input>"
	fi
}

for h in "${HARNESSES[@]}"; do
	jobs_wait_below "$FUZZ_JOBS" report
	[ "$REPLAY" -eq 1 ] || echo "fuzz: $h for ${FUZZ_TIME}s"
	(
		run_one "$h" "$BUILD/logs/$h.log"
		echo $? >"$BUILD/logs/$h.log.rc"
	) &
	running[$!]=$h
done
jobs_wait_all report

[ "$failed" -eq 0 ]
