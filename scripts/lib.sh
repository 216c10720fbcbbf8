# Shared by scripts/test.sh and scripts/run.sh (sourced; needs ROOT,
# PKGLIBDIR and SHAREDIR set).

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
