# Shared by scripts/test.sh, scripts/run.sh and scripts/fuzz.sh (sourced;
# the install checks need ROOT, PKGLIBDIR and SHAREDIR set).

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

# Background jobs: the caller keeps them in its associative array
# "running" (pid -> name) and reports each finished one with its function
# REPORT, given the name.

# jobs_wait_below MAX REPORT: wait until fewer than MAX jobs run,
# reporting each as it finishes
jobs_wait_below() {
	local max=$1 report=$2 pid
	while [ ${#running[@]} -ge "$max" ]; do
		wait -n
		for pid in "${!running[@]}"; do
			if ! kill -0 "$pid" 2>/dev/null; then
				wait "$pid" 2>/dev/null
				"$report" "${running[$pid]}"
				unset "running[$pid]"
			fi
		done
	done
}

# jobs_wait_all REPORT: wait for the rest and report them
jobs_wait_all() {
	local report=$1 pid
	for pid in "${!running[@]}"; do
		wait "$pid" 2>/dev/null
		"$report" "${running[$pid]}"
	done
}
