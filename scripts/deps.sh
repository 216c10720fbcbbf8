#!/usr/bin/env bash
# Install the Debian packages kvext needs to build and test (idempotent).
#
#   scripts/deps.sh                       base build/test packages
#   scripts/deps.sh redis-server ...      base packages plus the named extras
#
# As root, missing packages are installed with apt-get; as any other user the
# exact apt-get command is printed and the script exits 1.  Prints nothing when
# everything is already installed.
set -euo pipefail

PACKAGES=(
	postgresql-15            # server binaries: initdb, postgres, pg_ctl, psql
	postgresql-server-dev-15 # PGXS, pg_config, pg_regress, isolation, TAP modules
	libpq-dev
	libipc-run-perl          # needed by PostgreSQL::Test::Cluster (TAP tests)
	perl                     # prove
	make
	gcc
	python3                  # test/pqwire.py: protocol messages one by one (TAP 152)
	python3-fusepy           # test/lazyfs: FUSE layer that drops unsynced writes (power loss)
	fuse3                    # fusermount for non-root mounts of test/lazyfs
	gdb                      # test 111 holds a backend at a breakpoint
	clang                    # test/fuzz: the libFuzzer harnesses (make fuzz, make test)
	libclang-rt-14-dev       # libFuzzer and the sanitizers' runtimes for Debian 12's clang
)
PACKAGES+=("$@")

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	if [ "$status" != "installed" ]; then
		missing+=("$pkg")
	fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages: ${missing[*]}" >&2
	echo "deps: install them as root with:" >&2
	echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
	exit 1
fi

echo "deps: installing missing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
# Verify, so a partial install is reported here and not as a confusing build error.
for pkg in "${missing[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	if [ "$status" != "installed" ]; then
		echo "deps: failed to install $pkg" >&2
		exit 1
	fi
done
echo "deps: installed ${missing[*]}"
