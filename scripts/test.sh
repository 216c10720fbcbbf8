#!/usr/bin/env bash
# The one test command (make test): deps, build with assertions, install,
# pg_regress, isolation and TAP tests.  The last line printed is always
# "N passed, M failed"; the exit status is non-zero when anything failed.
#
# Options (environment or make variables):
#   TESTS="api txn"   run only these regress/isolation tests and TAP files
#                     (TAP by file name, with or without its NNN_ prefix);
#                     "load" is always run first when a regress test is chosen
#   TAP=0             skip the TAP tests
#   FUZZ=0            skip the replay of the fuzzers' kept corpus
#   KVEXT_TEST_TIMEOUT=SECONDS
#                     limit for each suite and each TAP file (default 600);
#                     a TAP file still running a minute before it has the
#                     stacks of its servers' processes printed
#   PG_CONFIG=path    pg_config to use (default: PostgreSQL 15's)
#   NOBUILD=1         skip the build and install steps: test the kvext that
#                     is installed already (while the tree is being edited)
#   TAP_JOBS=n        TAP files run n at a time (default 2); the files that
#                     load the machine most (TAP_SOLO below) run alone
#
# Servers run as the postgres user (initdb/postgres refuse root), on copies of
# the tests in a fresh directory under /tmp that is kept on failure.
#
# TAP tests get KVEXT_SOURCE_DIR, the source tree (test/t/140_readme.pl runs
# make run and make stop there, with NOBUILD=1, on a private port and
# directory).
#
# As root, a 16MB tmpfs is mounted at $TESTROOT/tmpfs for the TAP tests that
# fill a disk (KVEXT_TEST_TMPFS, see test/t/105_disk_full.pl) and unmounted at
# the end; if it cannot be mounted, those tests fall back to a failpoint.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# install_writable, installed_matches, jobs_wait_below, jobs_wait_all
. "$ROOT/scripts/lib.sh"
cd "$ROOT" || exit 1

PASSED=0
FAILED=0
# what failed, named again at the very end: CI may keep only the tail
FAILED_NAMES=()
FAILED_DETAIL=""
TESTROOT=""
TIMEOUT=${KVEXT_TEST_TIMEOUT:-600}
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
# small file system for the disk-full tests (mounted below when root)
TMPFS_DIR=${KVEXT_TEST_TMPFS:-}
TMPFS_MOUNTED=""

header() { printf '\n==> %s\n' "$*"; }
note() { printf '%s\n' "$*"; }

# Run a command as the user that owns the test servers.
as_pg() {
	if [ "$IS_ROOT" -eq 1 ]; then
		(cd "${TESTROOT:-/}" && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# Stop any server left running under $TESTROOT (after a timeout or a crash
# of pg_regress / a TAP script).
stop_leftover_servers() {
	local under=${1:-$TESTROOT}
	[ -n "$TESTROOT" ] && [ -d "$TESTROOT" ] && [ -d "$under" ] || return 0
	local pidfile datadir
	while IFS= read -r pidfile; do
		datadir=$(dirname "$pidfile")
		note "stopping leftover server in $datadir"
		as_pg "$BINDIR/pg_ctl" -D "$datadir" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
	done < <(find "$under" -name postmaster.pid 2>/dev/null)
}

finish() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
		note "test: aborted (status $rc)"
		FAILED=1
	fi
	[ -n "${BINDIR:-}" ] && stop_leftover_servers
	if [ -n "$TMPFS_MOUNTED" ]; then
		umount "$TMPFS_MOUNTED" 2>/dev/null || umount -l "$TMPFS_MOUNTED" 2>/dev/null ||
			note "could not unmount $TMPFS_MOUNTED"
		TMPFS_MOUNTED=""
	fi
	if [ -n "$TESTROOT" ] && [ -d "$TESTROOT" ]; then
		if [ "$FAILED" -eq 0 ]; then
			rm -rf "$TESTROOT"
		else
			note ""
			note "test files, results and logs kept in $TESTROOT"
		fi
	fi
	if [ ${#FAILED_NAMES[@]} -gt 0 ]; then
		note ""
		note "failed: ${FAILED_NAMES[*]}"
		[ -n "$FAILED_DETAIL" ] && printf '%s' "$FAILED_DETAIL"
	fi
	echo "$PASSED passed, $FAILED failed"
	if [ "$FAILED" -ne 0 ]; then exit 1; fi
	exit 0
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Abort the whole run when a test command died of Ctrl-C / SIGTERM (bash
# itself does not act on a SIGINT that its child handled).
interrupted() {
	case "$1" in
		130 | 143)
			echo
			note "test: interrupted"
			FAILED=$((FAILED + 1))
			exit "$1"
			;;
	esac
}

# Stop here: count one failure for a step that prevents testing.
fail_step() {
	note "test: $*" >&2
	FAILED=$((FAILED + 1))
	exit 1
}

# ---------------------------------------------------------------------------
header "deps: scripts/deps.sh"
"$ROOT/scripts/deps.sh" || fail_step "installing dependencies failed"

if [ -z "${PG_CONFIG:-}" ]; then
	if [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
		PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
	else
		PG_CONFIG=pg_config
	fi
fi
BINDIR=$("$PG_CONFIG" --bindir) || fail_step "$PG_CONFIG --bindir failed"
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir) || fail_step "$PG_CONFIG --pkglibdir failed"
SHAREDIR=$("$PG_CONFIG" --sharedir) || fail_step "$PG_CONFIG --sharedir failed"
PGXSDIR="$PKGLIBDIR/pgxs"
PG_REGRESS="$PGXSDIR/src/test/regress/pg_regress"
PG_ISOLATION_REGRESS="$PGXSDIR/src/test/isolation/pg_isolation_regress"
PERL_TESTLIB="$PGXSDIR/src/test/perl"

# Deterministic locale for initdb and the test output; libpq settings of the
# caller must not redirect the tests to another server.
for v in $(compgen -e); do
	case "$v" in
		LC_*|LANGUAGE) unset "$v" ;;
		PG[A-Z]*) unset "$v" ;;
	esac
done
if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then
	export LANG=C.UTF-8
else
	export LANG=C
fi

# The test lists live in the Makefile (REGRESS, ISOLATION): ask make.
make_var() {
	local out
	if out=$(make -s --no-print-directory -C "$ROOT" -f Makefile -f - \
		kvext-print-var KVEXT_PRINT_VAR="$1" PG_CONFIG="$PG_CONFIG" 2>/dev/null <<'EOF'
kvext-print-var:
	@echo '$($(KVEXT_PRINT_VAR))'
EOF
	); then
		echo "$out"
	else
		# Fallback: read "NAME = ..." (with continuation lines) directly.
		awk -v name="$1" '
			cont { val = val " " $0; if ($0 !~ /\\$/) { print val; exit } next }
			$0 ~ "^[ \t]*" name "[ \t]*[:?+]?=" {
				val = $0; sub(/^[^=]*=/, "", val)
				if (val ~ /\\$/) { cont = 1; next }
				print val; exit
			}' "$ROOT/Makefile" | tr -d '\\'
	fi
}

# ---------------------------------------------------------------------------
if [ "${NOBUILD:-0}" = 1 ]; then
header "build and install: skipped (NOBUILD=1), testing the installed kvext"
else
header "build: make clean && make ASSERTS=1 (warnings are errors)"
make -C "$ROOT" --no-print-directory PG_CONFIG="$PG_CONFIG" clean >/dev/null ||
	fail_step "make clean failed"
make -C "$ROOT" --no-print-directory PG_CONFIG="$PG_CONFIG" ASSERTS=1 ||
	fail_step "build failed"

header "install: make install"

if install_writable; then
	make -C "$ROOT" --no-print-directory PG_CONFIG="$PG_CONFIG" ASSERTS=1 install >/dev/null ||
		fail_step "make install failed"
	note "installed into $PKGLIBDIR and $SHAREDIR/extension"
elif installed_matches; then
	note "$PKGLIBDIR is not writable by $(id -un), but this build is already installed"
else
	fail_step "$PKGLIBDIR or $SHAREDIR/extension is not writable by $(id -un):" \
		"run make test as root (or make ASSERTS=1 install as root, then rerun)"
fi
fi

# ---------------------------------------------------------------------------
# Test selection
read -r -a REGRESS_ALL <<<"$(make_var REGRESS)"
read -r -a ISOLATION_ALL <<<"$(make_var ISOLATION)"
read -r -a FILTER <<<"${TESTS:-}"

selected() { # name [alias...]: is it chosen by TESTS?
	[ ${#FILTER[@]} -eq 0 ] && return 0
	local f n
	for f in "${FILTER[@]}"; do
		for n in "$@"; do
			[ "$f" = "$n" ] && return 0
		done
	done
	return 1
}

REGRESS_RUN=()
for t in "${REGRESS_ALL[@]}"; do
	selected "$t" && REGRESS_RUN+=("$t")
done
# "load" creates the extension: keep it first when anything is filtered.
if [ ${#FILTER[@]} -gt 0 ] && [ ${#REGRESS_RUN[@]} -gt 0 ] && [ "${REGRESS_RUN[0]}" != load ]; then
	for t in "${REGRESS_ALL[@]}"; do
		[ "$t" = load ] && REGRESS_RUN=(load "${REGRESS_RUN[@]}")
	done
fi
ISOLATION_RUN=()
for t in "${ISOLATION_ALL[@]}"; do
	selected "$t" && ISOLATION_RUN+=("$t")
done

# ---------------------------------------------------------------------------
header "setup: test directory"
TESTROOT=$(mktemp -d /tmp/kvext-test.XXXXXX) || fail_step "mktemp failed"
for d in sql expected input output data test; do
	[ -d "$ROOT/$d" ] && cp -r "$ROOT/$d" "$TESTROOT/"
done
# tmp/: TMPDIR of the test commands (socket directories of the servers)
mkdir -p "$TESTROOT/regress" "$TESTROOT/isolation" "$TESTROOT/tap" "$TESTROOT/tmp"
[ -f "$TESTROOT/test/kvext.conf" ] || fail_step "test/kvext.conf is missing"
if [ "$IS_ROOT" -eq 1 ]; then
	chown -R postgres: "$TESTROOT" || fail_step "chown postgres $TESTROOT failed"
fi
chmod 755 "$TESTROOT"
note "$TESTROOT"
cd "$TESTROOT" || fail_step "cannot enter $TESTROOT"

# Print "name status" for each test result line of pg_regress output, PG15
# style ("test load ... ok 12 ms", "     load ... FAILED") and PG16+ TAP style
# ("ok 1 - load 12 ms", "not ok 2 - api").
parse_results() {
	sed -nE \
		-e 's/^(test +| +)?([^ ]+) +\.\.\. +(ok|FAILED|failed \(ignored\)).*/\2 \3/p' \
		-e 's/^(not ok|ok) +[0-9]+ +[-+] +([^ ]+).*/\2 \1/p' "$1"
}

# run_suite LABEL RUNNER INPUTDIR WORKDIR TEST...
run_suite() {
	local label=$1 runner=$2 inputdir=$3 workdir=$4
	shift 4
	local tests=("$@") log="$workdir/output.log" rc t st
	local pass=0 fail=0 missing=()

	header "$label: ${tests[*]}"
	as_pg env TMPDIR="$TESTROOT/tmp" timeout --foreground -k 30 "$TIMEOUT" "$runner" \
		--temp-instance="$workdir/tmp_instance" \
		--temp-config="$TESTROOT/test/kvext.conf" \
		--inputdir="$inputdir" \
		--outputdir="$workdir" \
		--bindir="$BINDIR" \
		--dbname=contrib_regression \
		"${tests[@]}" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	interrupted "$rc"
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		echo
		note "$label: timed out after ${TIMEOUT}s"
	fi
	stop_leftover_servers

	for t in "${tests[@]}"; do
		st=$(parse_results "$log" | awk -v t="$t" '$1 == t { $1 = ""; s = $0 } END { print s }')
		case "$st" in
			" ok"|" failed (ignored)") pass=$((pass + 1)) ;;
			"") fail=$((fail + 1)); missing+=("$t"); FAILED_NAMES+=("$label/$t") ;;
			*) fail=$((fail + 1)); FAILED_NAMES+=("$label/$t") ;;
		esac
	done
	if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
		note "$label: $(basename "$runner") exited with status $rc"
		fail=1
		FAILED_NAMES+=("$label")
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		note "$label: no result for: ${missing[*]}"
	fi
	if [ "$fail" -gt 0 ]; then
		if [ -s "$workdir/regression.diffs" ]; then
			note "---- $workdir/regression.diffs (first 400 lines) ----"
			head -n 400 "$workdir/regression.diffs"
			note "---- end of regression.diffs ----"
		fi
		local f plog="$workdir/log/postmaster.log"
		if [ ${#missing[@]} -gt 0 ]; then
			for f in "$workdir/log/initdb.log" "$plog"; do
				if [ -s "$f" ]; then
					note "---- tail of $f ----"
					tail -n 40 "$f"
				fi
			done
		elif [ -s "$plog" ] && grep -qE 'TRAP:|PANIC:|terminated by signal' "$plog"; then
			# assertion failures and crashes of a backend
			note "---- crashes in $plog ----"
			grep -E -B3 -A3 'TRAP:|PANIC:|terminated by signal' "$plog" | head -n 80
		fi
	fi
	note "$label: $pass passed, $fail failed"
	PASSED=$((PASSED + pass))
	FAILED=$((FAILED + fail))
}

# ---------------------------------------------------------------------------
# The decoders' fuzzing harnesses (test/fuzz), each run once over its kept
# corpus: seeds and every input that once crashed (scripts/fuzz.sh --replay).
# One result per harness; no server needed.
FUZZ_ALL=(fuzz_log fuzz_snapshot fuzz_repl_append)
FUZZ_RUN=()
if [ "${FUZZ:-1}" != 0 ]; then
	for t in "${FUZZ_ALL[@]}"; do
		selected "$t" fuzz && FUZZ_RUN+=("$t")
	done
fi
if [ ${#FUZZ_RUN[@]} -gt 0 ]; then
	header "fuzz: replay of the kept corpus: ${FUZZ_RUN[*]}"
	FUZZ_HARNESSES="${FUZZ_RUN[*]}" PG_CONFIG="$PG_CONFIG" "$ROOT/scripts/fuzz.sh" --replay 2>&1 |
		tee "$TESTROOT/fuzz.log"
	interrupted "${PIPESTATUS[0]}"
	fuzz_pass=0
	fuzz_fail=0
	for t in "${FUZZ_RUN[@]}"; do
		if grep -q "^fuzz: $t ok" "$TESTROOT/fuzz.log"; then
			fuzz_pass=$((fuzz_pass + 1))
		else
			fuzz_fail=$((fuzz_fail + 1))
			FAILED_NAMES+=("$t")
		fi
	done
	note "fuzz: $fuzz_pass passed, $fuzz_fail failed"
	PASSED=$((PASSED + fuzz_pass))
	FAILED=$((FAILED + fuzz_fail))
fi

if [ ${#REGRESS_RUN[@]} -gt 0 ]; then
	run_suite regress "$PG_REGRESS" "$TESTROOT" "$TESTROOT/regress" "${REGRESS_RUN[@]}"
fi
if [ ${#ISOLATION_RUN[@]} -gt 0 ]; then
	run_suite isolation "$PG_ISOLATION_REGRESS" "$TESTROOT/test/isolation" \
		"$TESTROOT/isolation" "${ISOLATION_RUN[@]}"
fi

# ---------------------------------------------------------------------------
TAP_FILES=()
if [ "${TAP:-1}" != 0 ]; then
	shopt -s nullglob
	for f in test/t/*.pl; do
		b=$(basename "$f" .pl)
		selected "$b" "${b#[0-9][0-9][0-9]_}" "$(basename "$f")" && TAP_FILES+=("$f")
	done
	shopt -u nullglob
fi

# A small tmpfs to fill up: only root can mount one.
mount_test_tmpfs() {
	local dir="$TESTROOT/tmpfs"
	[ "$IS_ROOT" -eq 1 ] || return 0
	mkdir -p "$dir" || return 0
	if mount -t tmpfs -o size=16m,mode=0700 kvext-test-tmpfs "$dir" 2>/dev/null; then
		TMPFS_MOUNTED=$dir
		if chown postgres: "$dir"; then
			TMPFS_DIR=$dir
			note "16MB tmpfs mounted at $dir (KVEXT_TEST_TMPFS)"
		fi
	else
		rmdir "$dir" 2>/dev/null
		note "could not mount a tmpfs: the disk-full tests use a failpoint instead"
	fi
}

# The power-loss test mounts a FUSE file system as the postgres user:
# fusermount opens /dev/fuse as the caller, so it must be usable by all
# (Debian's udev rule makes it 0666; a bare VM may leave it 0600).
open_dev_fuse() {
	[ "$IS_ROOT" -eq 1 ] && [ -c /dev/fuse ] || return 0
	[ "$(stat -c %a /dev/fuse)" = 666 ] || chmod 0666 /dev/fuse ||
		note "could not make /dev/fuse usable: the power-loss test will skip"
}

# The TAP files that load the machine most run alone, after the others.
TAP_SOLO=" 110_power_loss 125_big_partition 137_large_record "
TAP_JOBS=${TAP_JOBS:-2}

# run_tap FILE: one TAP file, its output into $TESTROOT/tap/out/NAME, its
# exit status into $TESTROOT/tap/out/NAME.rc.  Each file's servers live in
# its own directories under tmp_check (PostgreSQL::Test::Cluster names them
# after the file), so a leftover server is stopped without touching the
# files running beside it.
run_tap() {
	local f=$1 b rc dog
	b=$(basename "$f" .pl)
	# a minute before the limit, record what a hung file's servers are doing
	(
		sleep $((TIMEOUT > 120 ? TIMEOUT - 60 : TIMEOUT / 2)) &
		trap 'kill $! 2>/dev/null; exit 0' TERM
		wait $! && hang_dump "$b" >"$TESTROOT/tap/out/$b.hang" 2>&1
	) &
	dog=$!
	as_pg env PATH="$BINDIR:$PATH" TESTDIR="$TESTROOT/tap" PG_REGRESS="$PG_REGRESS" \
		TMPDIR="$TESTROOT/tmp" KVEXT_TEST_TMPFS="$TMPFS_DIR" KVEXT_SOURCE_DIR="$ROOT" \
		timeout --foreground -k 30 "$TIMEOUT" \
		prove -I "$PERL_TESTLIB" -I "$TESTROOT/test" "$f" >"$TESTROOT/tap/out/$b" 2>&1
	rc=$?
	kill "$dog" 2>/dev/null
	wait "$dog" 2>/dev/null
	while IFS= read -r d; do
		stop_leftover_servers "$d" >>"$TESTROOT/tap/out/$b"
	done < <(find "$TESTROOT/tap/tmp_check" -maxdepth 1 -name "t_${b}_*" 2>/dev/null)
	echo "$rc" >"$TESTROOT/tap/out/$b.rc"
}

# hang_dump NAME: what the servers of TAP file NAME, and the programs the
# test runs against them, are doing: each process's state and kernel wait,
# its stack (gdb), and pg_stat_activity.  For a file about to time out.
hang_dump() {
	local b=$1 pidfile pm dir port p
	note "==== $b: still running $((TIMEOUT > 120 ? TIMEOUT - 60 : TIMEOUT / 2))s after its start; what it is doing ===="
	ps -o pid=,stat=,wchan:24=,args= -u postgres | grep -E "pgbench|psql|perl" | grep -v grep | head -n 20
	while IFS= read -r pidfile; do
		pm=$(sed -n 1p "$pidfile")
		port=$(sed -n 4p "$pidfile")
		dir=$(sed -n 5p "$pidfile")
		note "-- server $(dirname "$pidfile") (pid $pm, port $port)"
		timeout 20 runuser -u postgres -- "$BINDIR/psql" -X -A -F ' | ' -h "$dir" -p "$port" -d postgres -c \
			"SELECT pid, backend_type, state, wait_event_type, wait_event, left(query, 60) AS query FROM pg_stat_activity" 2>&1
		# one line a process: its state, kernel wait and innermost frames
		for p in $(pgrep -P "$pm"); do
			printf '%s <- %s\n' "$(ps -o pid=,stat=,wchan:20=,args= -p "$p" | sed 's/  */ /g')" \
				"$(command -v gdb >/dev/null &&
					timeout 20 gdb -p "$p" -batch -ex 'bt 8' 2>/dev/null |
					sed -n -E 's/^#[0-9]+ +(0x[0-9a-f]+ in )?([A-Za-z_][A-Za-z0-9_]*|\?\?) .*/\2/p' |
					paste -sd '<' -)"
		done
	done < <(find "$TESTROOT/tap/tmp_check" -path "*t_${b}_*" -name postmaster.pid 2>/dev/null)
}

# report_tap FILE: print a finished file's output and count it
report_tap() {
	local f=$1 b rc logdir l
	b=$(basename "$f" .pl)
	cat "$TESTROOT/tap/out/$b"
	rc=$(cat "$TESTROOT/tap/out/$b.rc" 2>/dev/null || echo 1)
	interrupted "$rc"
	if [ "$rc" -eq 0 ]; then
		tap_pass=$((tap_pass + 1))
	else
		tap_fail=$((tap_fail + 1))
		FAILED_NAMES+=("$b")
		# the failing assertions, for the summary
		FAILED_DETAIL+="$(grep -E -A6 '^(not ok|# +Failed test)|Dubious|died|Bail out' "$TESTROOT/tap/out/$b" | head -n 40 | sed "s/^/$b: /")"$'\n'
		# a die outside an assertion (exit status 255, or errno: 2 for a
		# missing file) says why only in its message, "... at FILE line N.",
		# which PostgreSQL's test modules send to the file's regress_log
		FAILED_DETAIL+="$(cat "$TESTROOT/tap/out/$b" "$TESTROOT/tap/tmp_check/log/regress_log_$b" 2>/dev/null |
			grep -E -B2 ' at \S+ line [0-9]+\.?$' | grep -v -E '^(#|\[[0-9:.]+\]|--$)' | tail -n 6 | sed "s/^/$b: died: /")"$'\n'
		if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
			note "tap: $b timed out after ${TIMEOUT}s"
			FAILED_DETAIL+="$b: timed out after ${TIMEOUT}s; its last lines:"$'\n'
			FAILED_DETAIL+="$(grep -v -e '^\s*$' -e '^stopping leftover' "$TESTROOT/tap/out/$b" | tail -n 5 | sed "s/^/$b:   /")"$'\n'
		fi
		if [ -s "$TESTROOT/tap/out/$b.hang" ]; then
			cat "$TESTROOT/tap/out/$b.hang"
			FAILED_DETAIL+="$(head -n 80 "$TESTROOT/tap/out/$b.hang" | sed "s/^/$b: /")"$'\n'
		fi
		logdir="$TESTROOT/tap/tmp_check/log"
		for l in "$logdir/regress_log_$b" "$logdir/${b}"_*.log; do
			[ -f "$l" ] || continue
			note "---- tail of $l ----"
			tail -n 60 "$l"
		done
	fi
}

if [ ${#TAP_FILES[@]} -gt 0 ]; then
	header "tap: ${#TAP_FILES[@]} file(s), $TAP_JOBS at a time"
	mount_test_tmpfs
	open_dev_fuse
	mkdir -p "$TESTROOT/tap/out" "$TESTROOT/tap/tmp_check" && chown -R postgres: "$TESTROOT/tap" 2>/dev/null
	tap_pass=0
	tap_fail=0
	shared=()
	solo=()
	for f in "${TAP_FILES[@]}"; do
		case "$TAP_SOLO" in
			*" $(basename "$f" .pl) "*) solo+=("$f") ;;
			*) shared+=("$f") ;;
		esac
	done
	# up to TAP_JOBS files at a time, reported in the order they finish
	declare -A running=()
	for f in "${shared[@]}"; do
		jobs_wait_below "$TAP_JOBS" report_tap
		run_tap "$f" &
		running[$!]=$f
	done
	jobs_wait_all report_tap
	unset running
	for f in "${solo[@]}"; do
		run_tap "$f"
		report_tap "$f"
	done
	note "tap: $tap_pass passed, $tap_fail failed"
	PASSED=$((PASSED + tap_pass))
	FAILED=$((FAILED + tap_fail))
elif [ "${TAP:-1}" = 0 ]; then
	note ""
	note "tap: skipped (TAP=0)"
fi

if [ ${#FILTER[@]} -gt 0 ]; then
	for f in "${FILTER[@]}"; do
		found=0
		for t in "${REGRESS_RUN[@]}" "${ISOLATION_RUN[@]}" "${FUZZ_RUN[@]}"; do
			[ "$t" = "$f" ] && found=1
		done
		[ "$f" = fuzz ] && [ ${#FUZZ_RUN[@]} -gt 0 ] && found=1
		for t in "${TAP_FILES[@]}"; do
			b=$(basename "$t" .pl)
			case "$f" in "$b" | "${b#[0-9][0-9][0-9]_}" | "$b.pl") found=1 ;; esac
		done
		[ "$found" -eq 1 ] || note "test: warning: TESTS names unknown test '$f'"
	done
fi

header "summary"
exit 0
