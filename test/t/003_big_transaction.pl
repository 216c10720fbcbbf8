# Copyright (c) 2026, kvext authors
#
# One transaction that writes a million keys:
#  - commits, and all million keys are there with their values;
#  - deleting them all in one transaction and rolling back leaves them all;
#  - a million-key transaction that rolls back gives all of its memory back;
#  - none of this exhausts the lock table: max_locks_per_transaction stays at
#    its default of 64 (times max_connections), so a lock-manager lock per
#    key would fail with "out of shared memory" long before a million keys.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $N = 1_000_000;

my $node = PostgreSQL::Test::Cluster->new('big_txn');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'kvext'
kvext.memory_limit = '512MB'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION kvext');

is($node->safe_psql('postgres', 'SHOW max_locks_per_transaction'),
	'64', 'lock table has its default size');

sub mem_used
{
	return $node->safe_psql('postgres',
		'SELECT memory_used FROM kv_stats() WHERE keyspace IS NULL');
}

my $mem_empty = mem_used();

# ---------------------------------------------------------------------------
# 1. A million puts in one explicit transaction, committed.
is( $node->safe_psql(
		'postgres', qq{
BEGIN;
SELECT count(kv_put('k' || i, 'v' || i)) FROM generate_series(1, $N) i;
SELECT kv_count();
COMMIT;
}),
	"$N\n$N",
	'one transaction writes a million keys and sees them all before commit');

is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$N, 'kv_count() = 1000000 after commit');
is( $node->safe_psql(
		'postgres', q{SELECT entries FROM kv_stats() WHERE keyspace IS NULL}),
	$N,
	'kv_stats total entries = 1000000');

is( $node->safe_psql(
		'postgres', qq{
SELECT string_agg(coalesce(kv_get('k' || i), 'NULL'), ',' ORDER BY i)
FROM unnest(ARRAY[1, 2, 999, 123456, 500000, 777777, 999999, $N]) i}),
	'v1,v2,v999,v123456,v500000,v777777,v999999,v1000000',
	'spot-checked values are right');
is( $node->safe_psql(
		'postgres', qq{SELECT kv_get('k0') IS NULL AND kv_get('k' || ($N + 1)) IS NULL}),
	't', 'keys outside the range do not exist');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM kv_scan('k') WHERE value <> 'v' || substr(key, 2)}),
	'0',
	'kv_scan: every value matches its key');
is($node->safe_psql('postgres', q{SELECT count(*) FROM kv_scan('k')}),
	$N, 'kv_scan returns all million keys');

my $mem_full = mem_used();
cmp_ok($mem_full, '>', $mem_empty, "memory_used grew ($mem_empty -> $mem_full)");

# ---------------------------------------------------------------------------
# 2. Delete everything in one transaction, then roll back.  While the
#    transaction is open, its lock-manager footprint is checked from another
#    session.
my $bg = $node->background_psql('postgres');
my $bg_pid = $bg->query_safe('SELECT pg_backend_pid()');
$bg->query_safe('BEGIN');
is( $bg->query_safe(
		qq{SELECT count(*) FILTER (WHERE kv_delete('k' || i)) FROM generate_series(1, $N) i}
	),
	$N,
	'one transaction deletes a million keys');
is($bg->query_safe('SELECT kv_count()'),
	'0', 'the deleting transaction sees an empty keyspace');
is($bg->query_safe(q{SELECT count(*) FROM kv_scan('k')}),
	'0', 'the deleting transaction scans nothing');

is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$N, 'other sessions still see a million keys');
is($node->safe_psql('postgres', q{SELECT kv_get('k424242')}),
	'v424242', 'other sessions read values of keys being deleted');
is( $node->safe_psql(
		'postgres',
		qq{SELECT count(*) FROM pg_locks WHERE pid = $bg_pid AND locktype NOT IN ('virtualxid', 'transactionid')}
	),
	'0',
	'the deleting transaction holds no lock-manager lock per key');

$bg->query_safe('ROLLBACK');
is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$N, 'after ROLLBACK the count is still 1000000');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM kv_scan('k') WHERE value <> 'v' || substr(key, 2)}),
	'0',
	'after ROLLBACK every value is intact');
is($node->safe_psql('postgres', q{SELECT count(*) FROM kv_scan('k')}),
	$N, 'after ROLLBACK kv_scan returns all million keys');
is(mem_used(), $mem_full, 'after ROLLBACK memory_used is back where it was');

# ---------------------------------------------------------------------------
# 3. A million new keys written and rolled back: memory fully returned.
$bg->query_safe('BEGIN');
$bg->query_safe(
	qq{SELECT count(kv_put('tmp' || i, repeat('x', 20))) FROM generate_series(1, $N) i}
);
is($bg->query_safe('SELECT kv_count()'),
	2 * $N, 'the open transaction sees two million keys');
my $mem_during = mem_used();
cmp_ok($mem_during, '>', $mem_full,
	"uncommitted writes are charged to memory_used ($mem_during)");
$bg->query_safe('ROLLBACK');
is(mem_used(), $mem_full,
	'after rolling back a million-key transaction memory_used is back to its previous value');
is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$N, 'and the count is unchanged');

# The same with an error in the middle of the statement (implicit rollback).
my ($ret, $out, $err) = $node->psql('postgres',
	qq{SELECT count(kv_put('tmp' || i, CASE WHEN i = $N THEN NULL ELSE 'x' END)) FROM generate_series(1, $N) i}
);
like($err, qr/value must not be null/,
	'a million-key statement failing at its last key');
is(mem_used(), $mem_full, 'its memory is returned too');
is($node->safe_psql('postgres', 'SELECT kv_count()'), $N, 'count unchanged');

# ---------------------------------------------------------------------------
# 4. Overwrite every key in one transaction and commit: the count stays, the
#    values change, and old versions are freed.
is( $bg->query_safe(
		qq{SELECT count(kv_put('k' || i, 'w' || i)) FROM generate_series(1, $N) i}),
	$N,
	'one autocommit statement overwrites a million keys');
is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$N, 'count unchanged after overwriting');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM kv_scan('k') WHERE value <> 'w' || substr(key, 2)}),
	'0',
	'every value was overwritten');
is(mem_used(), $mem_full,
	'overwriting with same-size values frees the old versions');

# Finally delete them all for real.
$bg->query_safe(
	qq{SELECT count(kv_delete('k' || i)) FROM generate_series(1, $N) i});
is($node->safe_psql('postgres', 'SELECT kv_count()'), '0', 'all deleted');
is(mem_used(), $mem_empty, 'memory_used back to the empty store');

$bg->quit;
$node->stop;

done_testing();
