# Copyright (c) 2026, kvext authors
#
# Concurrency on one node:
#  - kv_incr is atomic: 8 sessions x 1000 increments of one key give 8000;
#  - a mixed kv_put / kv_get load from 4 sessions leaves kv_count, kv_scan
#    and a regular table recording the same writes in agreement;
#  - readers are never blocked by an open writing transaction and see the
#    committed value until it commits, then the new one;
#  - a second writer of the same key waits for the first (on its
#    transaction id, visible in pg_locks) and then works on its result.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('concurrency');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'kvext'
kvext.memory_limit = '128MB'
max_connections = 40
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION kvext');

# No statement may hang: a blocked reader fails the test instead.
local $ENV{PGOPTIONS} = '-c statement_timeout=60s';

# ---------------------------------------------------------------------------
# 1. Atomic increments.
$node->pgbench(
	'--no-vacuum --client=8 --jobs=8 --transactions=1000',
	0,
	[ qr{processed: 8000/8000}, qr{number of failed transactions: 0} ],
	[qr{^$}],
	'8 clients x 1000 kv_incr',
	{ '002_incr' => q{SELECT kv_incr('ctr');} });

is($node->safe_psql('postgres', q{SELECT kv_get('ctr')}),
	'8000', 'kv_incr: no lost update, counter is exactly 8000');

# Increments with explicit transactions, deltas and another keyspace.
$node->safe_psql('postgres', q{SELECT kv_create_keyspace('counters')});
$node->pgbench(
	'--no-vacuum --client=8 --jobs=8 --transactions=250',
	0,
	[ qr{processed: 2000/2000}, qr{number of failed transactions: 0} ],
	[qr{^$}],
	'8 clients x 250 transactions of two kv_incr',
	{
		'002_incr_txn' => q{
BEGIN;
SELECT kv_incr('up', 3, 'counters');
SELECT kv_incr('down', -2, 'counters');
COMMIT;
}
	});
is( $node->safe_psql(
		'postgres',
		q{SELECT kv_get('up', 'counters') || ' ' || kv_get('down', 'counters')}),
	'6000 -4000',
	'multi-key increments in transactions are exact');

# Each backend counts the memory it allocates and frees (a version is
# often freed by another backend than the one that wrote it): once the
# keys are deleted, the keyspace's memory_used is back to zero exactly.
cmp_ok($node->safe_psql('postgres', q{SELECT memory_used FROM kv_stats() WHERE keyspace = 'counters'}),
	'>', 0, 'memory_used counts the two keys rewritten by 8 backends');
$node->safe_psql('postgres', q{SELECT kv_delete('up', 'counters'), kv_delete('down', 'counters')});
is($node->safe_psql('postgres', q{SELECT memory_used FROM kv_stats() WHERE keyspace = 'counters'}),
	'0', '... and is zero once they are deleted');

# ---------------------------------------------------------------------------
# 2. Mixed writes and reads of random keys; every transaction also records
#    the key in a table, so both must agree at the end.
$node->safe_psql('postgres', 'CREATE TABLE written (k int NOT NULL)');
$node->pgbench(
	'--no-vacuum --client=4 --jobs=4 --transactions=1500',
	0,
	[ qr{processed: 6000/6000}, qr{number of failed transactions: 0} ],
	[qr{^$}],
	'4 clients mixing kv_put and kv_get',
	{
		'002_mixed' => q{
\set k random(1, 4000)
\set r random(1, 4000)
BEGIN;
SELECT kv_put('r:' || :k, 'v' || :k);
INSERT INTO written VALUES (:k);
SELECT 1 / (kv_get('r:' || :k) = 'v' || :k)::int AS own_write_visible;
COMMIT;
SELECT kv_get('r:' || :r);
}
	});

my $distinct =
  $node->safe_psql('postgres', 'SELECT count(DISTINCT k) FROM written');
cmp_ok($distinct, '>', 1000, "mixed load wrote $distinct distinct keys");
is($node->safe_psql('postgres', q{SELECT count(*) FROM kv_scan('r:')}),
	$distinct, 'kv_scan finds exactly the distinct keys written');
is($node->safe_psql('postgres', q{SELECT kv_count()}),
	$distinct + 1, 'kv_count = distinct keys written + the counter key');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM kv_scan('r:') s
WHERE s.value <> 'v' || substr(s.key, 3)
   OR NOT EXISTS (SELECT 1 FROM written w WHERE 'r:' || w.k = s.key)}),
	'0',
	'every scanned key was written and holds its value');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM (SELECT DISTINCT k FROM written) w
WHERE kv_get('r:' || w.k) IS DISTINCT FROM 'v' || w.k}),
	'0',
	'every written key is readable with kv_get');
is( $node->safe_psql(
		'postgres',
		q{SELECT entries FROM kv_stats() WHERE keyspace = 'default'}),
	$distinct + 1,
	'kv_stats entries agrees with kv_count');

# ---------------------------------------------------------------------------
# 3. Readers while a writer holds uncommitted writes.
$node->safe_psql('postgres',
	q{SELECT kv_put('x', 'old'), kv_put('gone', 'here')});

my $writer = $node->background_psql('postgres');
$writer->query_safe(
	q{BEGIN; SELECT kv_put('x', 'new'), kv_put('fresh', 'f'), kv_delete('gone')});
is( $writer->query_safe(
		q{SELECT kv_get('x') || ',' || kv_get('fresh') || ',' || coalesce(kv_get('gone'), 'null')}
	),
	'new,f,null',
	'writer sees its own uncommitted writes');

# A reader in another session: not blocked (statement_timeout would fire),
# sees only committed data.
my ($ret, $out, $err) = $node->psql(
	'postgres',
	q{SET statement_timeout = '5s';
	  SELECT kv_get('x') || ',' || coalesce(kv_get('fresh'), 'null') || ',' || kv_get('gone')
	  || ',' || kv_exists('fresh') || ',' || (SELECT count(*) FROM kv_scan('fresh'))
	  || ',' || (SELECT value FROM kv_scan('x'))});
is($ret, 0, 'reader is not blocked by an uncommitted write');
is($out, 'old,null,here,false,0,old',
	'reader sees committed values only (get, exists, scan)');

# Many concurrent readers (pgbench) while the writer stays open: each one
# fails with a division by zero if it sees anything but the old value.
$node->pgbench(
	'--no-vacuum --client=4 --jobs=4 --transactions=300',
	0,
	[ qr{processed: 1200/1200}, qr{number of failed transactions: 0} ],
	[qr{^$}],
	'4 concurrent readers during an open writing transaction',
	{
		'002_readers' => q{
SELECT 1 / (kv_get('x') = 'old' AND kv_get('fresh') IS NULL AND kv_get('gone') = 'here')::int;
}
	});

# A reader inside a writing transaction of its own (on other keys) also
# sees the committed value.
is( $node->safe_psql(
		'postgres',
		q{BEGIN; SELECT kv_put('other', 'o'); SELECT kv_get('x'); COMMIT;}),
	"\nold",
	'reader with own writes on other keys sees the committed value');

is($node->safe_psql('postgres', q{SELECT kv_count()}),
	$distinct + 1 + 3, 'count before commit excludes uncommitted writes');

$writer->query_safe('COMMIT');
is( $node->safe_psql(
		'postgres',
		q{SELECT kv_get('x') || ',' || kv_get('fresh') || ',' || coalesce(kv_get('gone'), 'null')}
	),
	'new,f,null',
	'after commit, readers see all of the new values at once');
is($node->safe_psql('postgres', q{SELECT kv_count()}),
	$distinct + 1 + 3, 'count after commit: +fresh -gone');

# ---------------------------------------------------------------------------
# 4. A second writer of the same key waits for the first, then works on the
#    committed result (atomic read-modify-write across sessions).
$node->safe_psql('postgres', q{SELECT kv_put('n', '10')});
$writer->query_safe(q{BEGIN; SELECT kv_incr('n', 5)});
my $writer_pid = $writer->query_safe('SELECT pg_backend_pid()');
# key writes take no xid (keylock.c): the key lock is the writer's
# virtual transaction id
is($writer->query_safe('SELECT pg_current_xact_id_if_assigned() IS NULL'),
	't', 'a transaction that writes only keys has no xid');
my $writer_vxid = $writer->query_safe(
	'SELECT virtualtransaction FROM pg_locks WHERE pid = pg_backend_pid() LIMIT 1');

my $waiter = $node->background_psql('postgres');
my $waiter_pid = $waiter->query_safe('SELECT pg_backend_pid()');
$waiter->query_until(qr/started/, q{
\echo started
SELECT 'incr=' || kv_incr('n', 100);
});

ok( $node->poll_query_until(
		'postgres', qq{
SELECT EXISTS (SELECT 1 FROM pg_locks
               WHERE pid = $waiter_pid AND locktype = 'virtualxid'
                 AND virtualxid = '$writer_vxid' AND NOT granted)}),
	'second writer waits on the first writer\'s virtual transaction id');

# Readers are still not blocked, and still see the committed value.
is($node->safe_psql('postgres', q{SELECT kv_get('n')}),
	'10', 'reader not blocked while two writers contend');

# The first writer holds no per-key lock-manager lock: only its own
# virtual transaction id lock (plus the relation locks of pg_locks).
is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM pg_locks
WHERE pid = $writer_pid AND locktype NOT IN ('virtualxid', 'transactionid', 'relation')}
	),
	'0',
	'writer holds no lock-manager lock per key');

$writer->query_safe('COMMIT');
# The waiter resumes on the committed value 15.
like($waiter->query_until(qr/incr=\d+\n/, ''), qr/incr=115/,
	'second writer resumed and incremented the committed value');
is($node->safe_psql('postgres', q{SELECT kv_get('n')}),
	'115', 'both increments are applied');

# The same with a rollback: the waiter then works on the old value.
$writer->query_safe(q{BEGIN; SELECT kv_put('n', 'junk')});
$waiter->query_until(qr/started2/, q{
\echo started2
SELECT 'incr=' || kv_incr('n', 1);
});
ok( $node->poll_query_until(
		'postgres', qq{
SELECT EXISTS (SELECT 1 FROM pg_locks
               WHERE pid = $waiter_pid AND locktype = 'virtualxid' AND NOT granted)}),
	'second writer waits again');
$writer->query_safe('ROLLBACK');
like($waiter->query_until(qr/incr=\d+\n/, ''), qr/incr=116/,
	'after the first writer rolled back, the waiter works on the old value');

# ---------------------------------------------------------------------------
# 5. A transaction's writes become visible together: once a reader has seen
#    one of them, every later read sees the others.  A big transaction
#    rewrites 200000 keys; its commit is watched by a reader that reads the
#    first-written key and then the last-written one, again and again.
my $M = 200_000;
$node->safe_psql(
	'postgres', qq{
SELECT count(kv_put('a' || i, 'old')) FROM generate_series(1, $M) i;
CREATE FUNCTION watch_commit(first text, last text) RETURNS text
LANGUAGE plpgsql AS \$\$
DECLARE
	a text;
	b text;
	start timestamptz := clock_timestamp();
BEGIN
	LOOP
		a := kv_get(first);
		b := kv_get(last);
		IF a = 'new' AND b = 'old' THEN
			RETURN 'torn: saw ' || first || ' committed, then ' || last || ' not';
		END IF;
		IF b = 'new' THEN
			RETURN 'consistent';
		END IF;
		IF clock_timestamp() - start > interval '60 s' THEN
			RETURN 'timeout';
		END IF;
	END LOOP;
END \$\$;
});
$writer->query_safe(
	qq{BEGIN; SELECT count(kv_put('a' || i, 'new')) FROM generate_series(1, $M) i});
$waiter->query_until(qr/watching/, qq{
\\echo watching
SELECT 'watch=' || watch_commit('a1', 'a$M');
});
$writer->query_safe('COMMIT');
like($waiter->query_until(qr/watch=\w+/, ''), qr/watch=consistent/,
	'a reader never sees part of a committed transaction');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FILTER (WHERE value = 'new') FROM kv_scan('a')}),
	$M,
	'all of its writes are visible after commit');

$writer->quit;
$waiter->quit;

$node->stop;

done_testing();
