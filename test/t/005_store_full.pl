# Copyright (c) 2026, kvext authors
#
# A full store (kvext.memory_limit at its 8MB minimum):
#  - the write that does not fit fails with SQLSTATE 53200 "kvext store is
#    full"; the server stays up;
#  - every key written before is intact;
#  - deleting keys makes room again, also when the store is full to the
#    last byte (the error's hint tells users to delete keys);
#  - a huge transaction failing half-way leaves kv_count and memory exactly
#    as before; with a savepoint, the rest of the transaction goes on.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('full');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'kvext'
kvext.memory_limit = '8MB'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION kvext');
# the keyspace of part 2, created before the store fills: its owner is a
# key too (kvext's own keyspace of rights)
$node->safe_psql('postgres', q{SELECT kv_create_keyspace('tiny')});

is( $node->safe_psql(
		'postgres', 'SELECT memory_limit FROM kv_stats() WHERE keyspace IS NULL'),
	8 * 1024 * 1024,
	'memory_limit is 8MB');

sub mem_used
{
	return $node->safe_psql('postgres',
		'SELECT memory_used FROM kv_stats() WHERE keyspace IS NULL');
}

my @verbose = (extra_params => [ '-v', 'VERBOSITY=verbose' ]);
my $full_re = qr/ERROR:\s+53200: kvext store is full/;

# Every value is derived from its key, so any damage is visible.
# Key f<i> holds 'val-<i>-' followed by 100 x's.
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION fval(i int) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT 'val-' || i || '-' || repeat('x', 100) $$;

-- one committed transaction per key, until the store is full
CREATE PROCEDURE fill(prefix text, start int, vlen int)
LANGUAGE plpgsql AS $$
DECLARE
	i int := start;
BEGIN
	LOOP
		IF vlen IS NULL THEN
			PERFORM kv_put(prefix || i, fval(i));
		ELSE
			PERFORM kv_put(prefix || i, repeat('s', vlen));
		END IF;
		COMMIT;
		i := i + 1;
	END LOOP;
END $$;
});

# ---------------------------------------------------------------------------
# 1. Fill the store with committed keys until a write fails.
my ($ret, $out, $err) =
  $node->psql('postgres', q{CALL fill('f', 1, NULL)}, @verbose);
isnt($ret, 0, 'filling the store ends with an error');
like($err, $full_re, 'the error is 53200 "kvext store is full"');
like($err, qr/DETAIL:\s+A write of \d+ bytes does not fit in kvext.memory_limit/,
	'with a detail');
like($err, qr/HINT:\s+Delete keys/, 'with a hint');
unlike($err, qr/server closed the connection|terminated abnormally/,
	'no crash');

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server is still up');

my $n = $node->safe_psql('postgres', 'SELECT kv_count()');
cmp_ok($n, '>', 10000, "the store took $n keys before filling up");

# Every key written before is intact: exactly f1 .. f<n>, each with its value.
is( $node->safe_psql(
		'postgres', q{
SELECT count(*), min(substr(key, 2)::int), max(substr(key, 2)::int),
       count(*) FILTER (WHERE value <> fval(substr(key, 2)::int))
FROM kv_scan('f')}),
	"$n|1|$n|0",
	'kv_scan: keys f1..fN, every value intact');
is( $node->safe_psql(
		'postgres',
		qq{SELECT count(*) FROM generate_series(1, $n) i WHERE kv_get('f' || i) IS DISTINCT FROM fval(i)}
	),
	'0',
	'kv_get: every value intact');
is($node->safe_psql('postgres', qq{SELECT kv_get('f' || ($n + 1))}),
	'', 'the key whose write failed does not exist');

# Still full: another write of the same size fails the same way, and so
# does a write in an explicit transaction; the transaction is then aborted
# but its earlier writes are never visible.
($ret, $out, $err) = $node->psql('postgres',
	qq{SELECT kv_put('f' || ($n + 1), fval($n + 1))}, @verbose);
like($err, $full_re, 'a second attempt fails with 53200 too');

my $mem_full = mem_used();
note "memory_used when full: $mem_full";
cmp_ok($mem_full, '<=', 8 * 1024 * 1024, 'memory_used is within the limit');

# ---------------------------------------------------------------------------
# 2. Fill the remaining bytes with the smallest possible entries, so the
#    store is full to the last block.  They go to their own keyspace, so
#    that dropping it frees them (dropping needs no memory).
$node->safe_psql(
	'postgres', q{
CREATE PROCEDURE fill_tiny()
LANGUAGE plpgsql AS $$
DECLARE
	i int := 1;
BEGIN
	LOOP
		PERFORM kv_put('s' || i, '', 'tiny');
		COMMIT;
		i := i + 1;
	END LOOP;
END $$;
});
($ret, $out, $err) = $node->psql('postgres', q{CALL fill_tiny()}, @verbose);
like($err, $full_re, 'filling the last bytes with tiny entries ends with 53200');
my $ns = $node->safe_psql('postgres', q{SELECT kv_count('tiny')});
note "tiny entries added: $ns; memory_used: " . mem_used();
is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$n, 'default keyspace unchanged by filling another one');

# Deleting keys from a completely full store must work: the error's hint
# says "Delete keys", and the default keyspace cannot be dropped, so if
# deletes needed memory a store full of small keys could only be emptied
# by a restart.
($ret, $out, $err) = $node->psql(
	'postgres',
	q{SELECT count(*) FILTER (WHERE kv_delete('f' || i)) FROM generate_series(1, 100) i},
	@verbose);
is($err, '', 'kv_delete on a completely full store works');
is($out, '100', 'deleted 100 keys');
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT kv_delete('s1', 'tiny'), kv_cas('f101', fval(101), NULL)}, @verbose);
is($err, '', 'kv_delete of a tiny key and kv_cas(..., NULL) on a full store work');
is($out, 't|t', 'both deleted their key');

# Whatever happened above, dropping the keyspace frees room.
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT kv_drop_keyspace('tiny')}, @verbose);
is($err, '', 'dropping a keyspace on a completely full store works');

# Then delete keys one per transaction: each delete needs a small
# tombstone until it commits, and its commit frees far more.
$node->safe_psql(
	'postgres', q{
DO $$
BEGIN
	FOR i IN 1..200 LOOP
		PERFORM kv_delete('f' || i);
		COMMIT;
	END LOOP;
END $$;
});
my $left = $node->safe_psql('postgres', 'SELECT kv_count()');
is($left, $n - 200, 'count after deleting 200 keys');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*), count(*) FILTER (WHERE value <> fval(substr(key, 2)::int)),
       min(substr(key, 2)::int), max(substr(key, 2)::int)
FROM kv_scan('f')}),
	"$left|0|201|$n",
	'remaining keys and values intact after deletes');

# Writes succeed again.
$node->safe_psql('postgres',
	q{SELECT count(kv_put('f' || i, fval(i))) FROM generate_series(1, 50) i});
is($node->safe_psql('postgres', q{SELECT kv_get('f7')}),
	$node->safe_psql('postgres', q{SELECT fval(7)}),
	'after deleting keys, writes succeed again');
is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$left + 50, 'count after rewriting 50 keys');

# ---------------------------------------------------------------------------
# 3. A huge transaction that fails in the middle changes nothing.
my $count_before = $node->safe_psql('postgres', 'SELECT kv_count()');
my $mem_before = mem_used();

($ret, $out, $err) = $node->psql(
	'postgres',
	q{SELECT count(kv_put('h' || i, repeat('y', 1000))) FROM generate_series(1, 100000) i},
	@verbose);
like($err, $full_re, 'a huge statement fails with 53200');
is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$count_before, 'kv_count exactly as before');
is($node->safe_psql('postgres', q{SELECT count(*) FROM kv_scan('h')}),
	'0', 'none of its keys exists');
is(mem_used(), $mem_before, 'memory_used exactly as before');

# Same in an explicit transaction that first deletes and overwrites
# existing keys, then fails on the huge write.
($ret, $out, $err) = $node->psql(
	'postgres', q{
BEGIN;
SELECT count(kv_delete('f' || i)) FROM generate_series(300, 1300) i;
SELECT count(kv_put('f' || i, 'changed')) FROM generate_series(2000, 2100) i;
SELECT count(kv_put('h' || i, repeat('y', 1000))) FROM generate_series(1, 100000) i;
COMMIT;
},
	@verbose);
like($err, $full_re, 'a huge transaction with deletes and overwrites fails with 53200');
is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$count_before, 'kv_count exactly as before');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FILTER (WHERE value <> fval(substr(key, 2)::int)) FROM kv_scan('f')}),
	'0',
	'no value changed');
is($node->safe_psql('postgres', q{SELECT kv_get('f300')}),
	$node->safe_psql('postgres', q{SELECT fval(300)}),
	'keys it deleted still exist');
is(mem_used(), $mem_before, 'memory_used exactly as before');

# With a savepoint, the failed part is undone and the rest commits.
($ret, $out, $err) = $node->psql(
	'postgres', q{
\set ON_ERROR_STOP 0
BEGIN;
SELECT kv_put('before-sp', 'b');
SAVEPOINT sp;
SELECT count(kv_put('h' || i, repeat('y', 1000))) FROM generate_series(1, 100000) i;
ROLLBACK TO SAVEPOINT sp;
SELECT kv_delete('f1000');
COMMIT;
},
	on_error_stop => 0,
	@verbose);
like($err, $full_re, 'huge write inside a savepoint fails with 53200');
is( $node->safe_psql(
		'postgres', q{
SELECT kv_get('before-sp') || ',' || coalesce(kv_get('f1000'), 'null') || ','
       || (SELECT count(*) FROM kv_scan('h'))}),
	'b,null,0',
	'writes outside the failed savepoint committed; inside it, none');
is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$count_before, 'kv_count: +1 key -1 key');

# A single value larger than the whole store fails cleanly too.
($ret, $out, $err) = $node->psql(
	'postgres',
	q{SET kvext.max_value_size = '100MB'; SELECT kv_put('big', repeat('z', 9 * 1024 * 1024))},
	@verbose);
like($err, $full_re, 'a value larger than the store fails with 53200');

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server is still up');
ok(!$node->log_contains(qr/TRAP:|PANIC:|terminated by signal|reinitializing/),
	'no crash or assertion failure in the server log');

$node->stop;

done_testing();
