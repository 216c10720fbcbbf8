# Copyright (c) 2026, kvext authors
#
# No false "full" (issue 8, item 3).  A 16MB store is filled with 32-byte
# values until a write fails with 53200, every other key is deleted, and it
# is refilled with 96-byte values until a write fails again.  The holes the
# deletes leave are too small for the new entries and sit between live
# ones, so only moving entries (compaction) lets the refill use them:
#  - the refill goes on until at least 85% of kvext.memory_limit is used
#    (without compaction: about 52%);
#  - every key written and not deleted is there with its value;
#  - kv_memory() shows the compaction work;
#  - after a crash, recovery replays the same cycle (compacting too) and
#    the store holds exactly the same data; after a snapshot and another
#    crash, too.
use strict;
use warnings;

use KvextDurability;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kv_node(
	'compaction', q{
kvext.memory_limit = '16MB'
kvext.synchronous_commit = off
});

my $limit = kv_scalar($node,
	'SELECT memory_limit FROM kv_stats() WHERE keyspace IS NULL');
is($limit, 16 * 1024 * 1024, 'memory_limit is 16MB');

# One committed transaction per key, until a write fails.  Key <p><i>
# holds md5(<p><i>) repeated reps times (32 * reps bytes).
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION val(k text, reps int) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT repeat(md5(k), reps) $$;
CREATE PROCEDURE fill(prefix text, reps int)
LANGUAGE plpgsql AS $$
DECLARE
	i int := 1;
BEGIN
	LOOP
		PERFORM kv_put(prefix || i, val(prefix || i, reps));
		COMMIT;
		i := i + 1;
	END LOOP;
END $$;
});

sub used_fraction
{
	return kv_scalar($node,
		'SELECT round(memory_used::numeric / memory_limit, 4) FROM kv_stats() WHERE keyspace IS NULL');
}

# 1. fill with 32-byte values
my $r = kv_call($node, q{CALL fill('k', 1)});
is($r->{sqlstate}, '53200', 'the fill with 32-byte values ends with 53200');
my $nk = kv_scalar($node, q{SELECT count(*) FROM kv_scan('k')});
note "32-byte values: $nk keys, " . used_fraction() . " of memory_limit used";
cmp_ok($nk, '>', 150000, 'the fill took many keys');

# 2. delete every other key, in batches (each delete needs a tombstone
#    from the reserve until it commits)
kv_delete_every_other($node, 'k', $nk);
my $kept = int(($nk + 1) / 2);
is(kv_scalar($node, 'SELECT kv_count()'), $kept, 'every other key deleted');
note 'after the deletes: ' . used_fraction() . ' of memory_limit used';

# 3. refill with 96-byte values
$r = kv_call($node, q{CALL fill('r', 3)});
is($r->{sqlstate}, '53200', 'the refill with 96-byte values ends with 53200');
my $nr = kv_scalar($node, q{SELECT count(*) FROM kv_scan('r')});
my $used = used_fraction();
note "96-byte values: $nr keys; $used of memory_limit used at the first 53200";
cmp_ok($used, '>=', 0.85,
	'the refill goes on until at least 85% of memory_limit is used');

my $mem = kv_scalar($node,
	'SELECT compactions, moved_entries, largest_free_block FROM kv_memory()');
note "kv_memory(): compactions, moved entries, largest free block: $mem";
my ($compactions, $moved) = split /\|/, $mem;
cmp_ok($moved, '>', 0, 'kv_memory() counts the entries compaction moved');

# 4. every key written and not deleted holds its value; nothing else exists
sub check_contents
{
	my ($what) = @_;
	is( kv_scalar(
			$node, qq{
SELECT count(*),
       count(*) FILTER (WHERE value <> val(key, 1)),
       count(*) FILTER (WHERE substr(key, 2)::int % 2 = 0),
       min(substr(key, 2)::int), max(substr(key, 2)::int)
FROM kv_scan('k')}),
		"$kept|0|0|1|" . ($nk % 2 ? $nk : $nk - 1),
		"$what: the odd 32-byte keys, each with its value");
	is( kv_scalar(
			$node, q{
SELECT count(*), count(*) FILTER (WHERE value <> val(key, 3)),
       min(substr(key, 2)::int), max(substr(key, 2)::int)
FROM kv_scan('r')}),
		"$nr|0|1|$nr",
		"$what: every 96-byte key, each with its value");
	is( kv_scalar(
			$node,
			qq{SELECT count(*) FROM generate_series(1, $nk, 2) i WHERE kv_get('k' || i) IS DISTINCT FROM val('k' || i, 1)}
		),
		'0',
		"$what: kv_get finds every kept 32-byte key");
	is( kv_scalar(
			$node,
			qq{SELECT count(*) FROM generate_series(1, $nr) i WHERE kv_get('r' || i) IS DISTINCT FROM val('r' || i, 3)}
		),
		'0',
		"$what: kv_get finds every 96-byte key");
	is(kv_scalar($node, 'SELECT kv_count()'),
		$kept + $nr, "$what: kv_count() is exact");
}
check_contents('after the refill');
my $digest = kv_digest($node);

# Still full: the next write fails the same way, and deleting makes room.
$r = kv_call($node, qq{SELECT kv_put('r' || ($nr + 1), val('r' || ($nr + 1), 3))});
is($r->{sqlstate}, '53200', 'the store is really full now');

# 5. crash: recovery replays the cycle from the log (no snapshot yet), so
#    it must compact as well
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is(kv_scalar($node, 'SELECT state FROM kv_wal_status()'),
	'ready', 'recovery after the crash succeeds');
is(kv_digest($node), $digest, 'after crash recovery: exactly the same data');
check_contents('after crash recovery');
note 'after recovery: ' . used_fraction() . ' of memory_limit used; kv_memory(): '
  . kv_scalar($node, 'SELECT compactions, moved_entries FROM kv_memory()');

# 6. a snapshot, another crash: the snapshot loads into a compact heap
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is(kv_digest($node), $digest, 'after a snapshot and a crash: the same data');

# 7. the store works on: delete some keys, write larger values in their
#    place, read them back
$node->safe_psql(
	'postgres', q{
SELECT count(kv_delete('r' || i)) FROM generate_series(1, 3000) i;
});
$node->safe_psql(
	'postgres', q{
SELECT count(kv_put('n' || i, val('n' || i, 5))) FROM generate_series(1, 1000) i;
});
is( kv_scalar(
		$node,
		q{SELECT count(*) FILTER (WHERE value = val(key, 5)) FROM kv_scan('n')}),
	'1000',
	'after deleting 96-byte keys, 160-byte values fit in their place');

# 8. entries over 2MB never move: compaction steps over them.  Free the
#    96-byte keys (holes between the 32-byte ones), write two 3MB values
#    (each needs 3MB gathered from small holes), then refill with 96-byte
#    values again: the store still fills up past 85%, around the big ones.
$node->safe_psql(
	'postgres', q{
DO $$
BEGIN
	FOR i IN 1..60000 LOOP
		PERFORM kv_delete('r' || i);
		PERFORM kv_delete('n' || i);
		IF i % 2000 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END $$;
});
$r = kv_call($node, q{
SET kvext.max_value_size = '4MB';
SELECT kv_put('big1', repeat('B', 3 * 1024 * 1024));
SELECT kv_put('big2', repeat('C', 3 * 1024 * 1024));
});
is($r->{stderr}, '', 'two 3MB values fit in a heap of small holes');
$r = kv_call($node, q{CALL fill('r', 3)});
is($r->{sqlstate}, '53200', 'a refill around them ends with 53200');
$used = used_fraction();
note "with two 3MB entries: $used of memory_limit used at the first 53200";
cmp_ok($used, '>=', 0.85, 'and still uses at least 85% of memory_limit');
is( kv_scalar(
		$node, q{
SELECT (SELECT count(*) FILTER (WHERE value <> val(key, 1)) FROM kv_scan('k'))
     + (SELECT count(*) FILTER (WHERE value <> val(key, 3)) FROM kv_scan('r'))
     + (SELECT count(*) FROM kv_scan('n'))
     + (SELECT count(*) FILTER (WHERE value <> repeat(CASE key WHEN 'big1' THEN 'B' ELSE 'C' END, 3 * 1024 * 1024)) FROM kv_scan('big'))
     || ',' || (SELECT count(*) FROM kv_scan('big'))
     || ',' || (SELECT count(*) FROM kv_scan('k'))}),
	"0,2,$kept",
	'every value intact, the big ones too');

ok(!$node->log_contains(qr/TRAP:|PANIC:|terminated by signal/),
	'no assertion failure or crash in the server log');
$node->stop;

done_testing();
