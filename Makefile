# kvext — PGXS build.
#
#   make            build (warnings are errors)
#   make install    install into the PostgreSQL found by $(PG_CONFIG)
#   make test       the one test command: deps, build, install, pg_regress,
#                   isolation and TAP tests; ends with "N passed, N failed"
#   make run        start a local server with kvext preloaded and run a demo
#   make stop       stop it
#   make bench      benchmarks (docs/benchmarks.md)
#   make fuzz       the decoders' libFuzzer harnesses (test/fuzz), each for
#                   FUZZ_TIME seconds (default 60)

MODULE_big = kvext
OBJS = \
	src/module.o \
	src/kvext.o \
	src/deadline.o \
	src/guc.o \
	src/shmem.o \
	src/worker.o \
	src/failpoint.o \
	src/remote.o \
	src/store/alloc.o \
	src/store/compact.o \
	src/store/store.o \
	src/store/scan.o \
	src/store/keyspace.o \
	src/store/writeset.o \
	src/store/txn.o \
	src/store/stats.o \
	src/store/waits.o \
	src/store/keylock.o \
	src/store/park.o \
	src/store/acl.o \
	src/store/text.o \
	src/log/wal.o \
	src/log/reader.o \
	src/log/control.o \
	src/log/snapshot.o \
	src/log/snapread.o \
	src/log/checkpoint.o \
	src/log/recovery.o \
	src/log/backup.o \
	src/log/visible.o \
	src/log/apply.o \
	src/log/install.o \
	src/replication/campaign.o \
	src/replication/config.o \
	src/replication/receiver.o \
	src/replication/snaprecv.o \
	src/replication/sender.o \
	src/replication/role.o \
	src/api/functions.o \
	src/api/monitor.o \
	src/api/cluster.o \
	src/api/roles.o \
	src/fdw/fdw.o \
	src/fdw/options.o \
	src/fdw/pushdown.o \
	src/fdw/codec.o \
	src/fdw/modify.o \
	src/fdw/serve.o

EXTENSION = kvext
DATA = kvext--0.1.sql
PGFILEDESC = "kvext - distributed key-value store"
# the fuzzing harnesses' build (scripts/fuzz.sh)
EXTRA_CLEAN = test/fuzz/build

# pg_regress tests (sql/, expected/); run by scripts/test.sh on a temporary
# instance with kvext preloaded (test/kvext.conf).
REGRESS = load api errors txn savepoint keyspace privileges hostile bytea stats full wal fdw fdw_partition fdw_remote encoding
REGRESS_OPTS = --temp-config=test/kvext.conf
# isolation specs (test/isolation/specs, test/isolation/expected)
ISOLATION = visibility locking drop_race fdw_locking
ISOLATION_OPTS = --temp-config=test/kvext.conf

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

# The script targets install PostgreSQL's development files themselves, so
# they must work before pg_config exists (a fresh machine).
SCRIPT_TARGETS := test run stop bench deps fuzz
ifeq ($(PGXS),)
ifneq ($(filter-out $(SCRIPT_TARGETS),$(or $(MAKECMDGOALS),all)),)
$(error pg_config --pgxs failed: install postgresql-server-dev-15 (make deps does it))
endif
endif

# libpq, as contrib/postgres_fdw links it: replication parses the peers'
# conninfos and connects to them; kvext_fdw's validator knows libpq's
# connection options (PQconndefaults).
PG_CPPFLAGS += -I$(srcdir)/src -I$(libpq_srcdir)
SHLIB_LINK_INTERNAL = $(libpq)

# Warnings are errors.  -Wextra minus what PostgreSQL's own headers trip over.
PG_CFLAGS += -Werror -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers -Wno-clobbered -Wno-cast-function-type
ifdef ASSERTS
PG_CFLAGS += -DUSE_ASSERT_CHECKING
endif

# Header dependencies: PGXS tracks them only for a PostgreSQL configured
# with --enable-depend, so without this a changed header left stale objects
# behind (a struct read with its old layout).
PG_CFLAGS += -MMD -MP
EXTRA_CLEAN += $(OBJS:.o=.d)

ifneq ($(PGXS),)
include $(PGXS)
endif
-include $(OBJS:.o=.d)

.PHONY: test run stop bench deps fuzz
deps:
	scripts/deps.sh
test:
	scripts/test.sh
run:
	scripts/run.sh
stop:
	scripts/stop.sh
bench:
	scripts/bench.sh
fuzz:
	scripts/fuzz.sh
