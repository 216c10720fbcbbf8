# Compaction edge cases found by attacking it:
#  1. Replay places entries in commit order, not where the running server
#     placed them.  Big values (over the 2MB a running compaction moves)
#     written by transactions that stay open while small values commit end
#     up next to each other at run time but interleaved with holes at
#     replay; a log that fit must still fit after kill -9 (recovery moves
#     entries of any size).
#  2. A compaction that starts at a cursor in the middle of the heap must
#     not end with the free space split in two blocks, neither big enough,
#     and report a false "store full" (53200) that the same statement run
#     again would not.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

# ---------------------------------------------------------------------------
# 1. replay layout
my $node = kv_node(
	'compaction_replay', q{
kvext.memory_limit = '16MB'
kvext.max_value_size = '4MB'
kvext.checkpoint_timeout = '1d'
});

my ($big, $small) = (2_400_000, 1_200_000);
my @open;
for my $i (1 .. 4)
{
	my $s = $node->background_psql('postgres');
	$s->query_safe("BEGIN; SELECT kv_put('big$i', repeat('$i', $big))");
	push @open, $s;
}
# small values commit in between the big ones' commits
for my $i (1 .. 4)
{
	$node->safe_psql('postgres', "SELECT kv_put('small$i', repeat('s', $small))");
	$open[ $i - 1 ]->query_safe('COMMIT');
	$open[ $i - 1 ]->quit;
}
$node->safe_psql('postgres',
	q{BEGIN; SELECT kv_delete('small' || i) FROM generate_series(1, 4) i; COMMIT;});
my $r = kv_call($node, "SELECT kv_put('big5', repeat('5', $big))");
ok($r->{ok}, 'a fifth big value fits at run time') or diag($r->{stderr});

my $want = '1:2400000,2:2400000,3:2400000,4:2400000,5:2400000';
my $content = q{SELECT string_agg(substr(key, 4) || ':' || length(value), ',' ORDER BY key)
  FROM kv_scan('big') WHERE value = repeat(substr(key, 4), length(value))};
is(kv_scalar($node, $content), $want, 'five big values, every byte');

kill9_postmaster($node);
$node->start;
ok(kv_wait_ready($node), 'after kill -9 the store recovers (the log fits the same limit)');
is(kv_scalar($node, $content), $want, 'after kill -9: the five big values, every byte');
is(kv_scalar($node, 'SELECT kv_count()'), 5, 'after kill -9: no key more or less');
ok(!$node->log_contains(qr/does not fit in kvext.memory_limit/),
	'recovery never reported the store too small');
$node->stop;

# ---------------------------------------------------------------------------
# 2. a compaction starting mid-heap
$node = kv_node(
	'compaction_cursor', q{
kvext.memory_limit = '16MB'
kvext.max_value_size = '8MB'
});
$node->safe_psql('postgres', q{
DO $$
DECLARE j int := 0;
BEGIN
	LOOP
		j := j + 1;
		BEGIN
			PERFORM kv_put('a' || j, repeat('v', 1000));
		EXCEPTION WHEN sqlstate '53200' THEN
			EXIT;
		END;
	END LOOP;
END $$;});
my $n = kv_scalar($node, 'SELECT kv_count()');
my $h = int($n / 2);
# holes in the first half; two values whose compactions leave the cursor
# in the middle of the heap; then holes everywhere
$node->safe_psql('postgres', "SELECT count(kv_delete('a' || i)) FROM generate_series(1, $h, 2) i");
$node->safe_psql('postgres', q{SELECT kv_put('m1', repeat('1', 1900000))});
$node->safe_psql('postgres', q{SELECT kv_put('m2', repeat('2', 1900000))});
$node->safe_psql('postgres',
	"SELECT count(kv_delete('a' || i)) FROM generate_series($h + 1, $n, 2) i");
$node->safe_psql('postgres',
	"SELECT count(kv_delete('a' || i)) FROM generate_series(2, $n / 4, 2) i");
my $keys_before = kv_scalar($node, 'SELECT kv_count()');
my $used = kv_scalar($node, 'SELECT memory_used FROM kv_memory()');
cmp_ok($used + 5_000_100, '<', 15 * 1024 * 1024,
	"a 5MB value fits in the free bytes ($used of 16MB used)");

$r = kv_call($node, q{SELECT kv_put('X', repeat('x', 5000000))});
ok($r->{ok}, 'a 5MB value is stored at the first try: no false 53200')
  or diag($r->{stderr});
is(kv_scalar($node, q{SELECT length(kv_get('X')) || ',' || kv_count()}),
	'5000000,' . ($keys_before + 1), 'and it is there, with every other key');
is( kv_scalar(
		$node,
		q{SELECT count(*) FROM kv_scan('a') WHERE value <> repeat('v', 1000)}),
	'0', 'the moved values are intact');
ok(!$node->log_contains(qr/TRAP:|PANIC:|terminated by signal/),
	'no assertion failure or crash in the server log');
$node->stop;

done_testing();
