# Copyright (c) 2026, kvext authors
#
# Compaction's budget (issue 8, item 3): no chunk of values that may not
# move uses up the work the chunks that can make room need.
#
# A compaction tries the chunk with the most free bytes first.  When that
# chunk's free space sits only between values over 2MB (which never move at
# run time), the step that looks for an entry to move went round the chunk
# up to 1024 times per call and counted the bytes it passed again on every
# lap: one call used up the whole budget (2 x the heap), and the chunk that
# could make room was never tried.  A 1200MB store (a 1GB chunk and a 160MB
# one) with 1MB values in the small chunk and 3MB values in the big one,
# every other one deleted, said 53200 for a value of about 50MB (more than
# any free block of the big chunk) at under 50% used.  It must be accepted
# by moving 1MB values out of the small chunk, and replayed after a crash.
# Every value is checked, byte for byte (md5), against what was written.
#
# kvext.heap_chunk_size (a developer option) makes a chunk 128MB here, and
# the test is production's case at an eighth of its size: a unit is 128kB
# here, 1MB with 1GB chunks, so the store is 1200 units (150MB: a 128MB
# chunk and a 20MB one), the small chunk's values are 1 unit, and the
# value written is 10 units larger than the largest free block; about
# 150MB of log, not 1.2GB.  The big chunk's values stay 3MB: they must be
# over the 2MB above which compaction never moves an entry at run time, a
# bound that does not scale (1-unit values are under it in both).  So the
# big chunk holds 41 of them, not about 330, and after the deletes the
# store is 49.6% used (49.3% in production).
# The budget is not in absolute bytes: it was 2 x the heap and is now 2 x
# the chunk tried, and a step's work is the bytes it passes, so a lap of
# the big chunk costs its size here as in production.  What does not scale
# is the 1024 blocks a step looks at per call: over the big chunk's 43
# blocks (21 values, 20 holes, its free end and its fence) the old step
# went round it more than 20 times per call, counting several GB against
# a 296MB budget, where production's ~330 blocks made about 3 laps of 1GB
# against 2.4GB.  Either way the first call used up the budget: this test
# fails on the build before the fix (53200, with a failed compaction).
# No snapshot is taken, so the snapshot's 1MB bound for large entries
# plays no part.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

# a unit, in kB: 1MB at production's 1GB chunks
my $U = 128;

# A value is val(key, kb): md5(key) repeated to kb kilobytes.  %written
# maps each key written and not deleted to its size in kB.
my %written;

sub setup
{
	my ($node) = @_;
	$node->safe_psql(
		'postgres', q{
CREATE FUNCTION val(k text, kb int) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT repeat(md5(k), kb * 32) $$;
-- put values of kb kB at keys <prefix><i>, first..last, committing every 20
CREATE PROCEDURE put_range(prefix text, first int, last int, kb int)
LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN first..last LOOP
		PERFORM kv_put(prefix || i, val(prefix || i, kb));
		IF i % 20 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END $$;
CREATE PROCEDURE delete_range(prefix text, first int, last int, step int)
LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN first..last BY step LOOP
		PERFORM kv_delete(prefix || i);
	END LOOP;
END $$;
});
	return;
}

sub put_range
{
	my ($node, $prefix, $first, $last, $kb) = @_;
	$node->safe_psql('postgres', "CALL put_range('$prefix', $first, $last, $kb)");
	$written{"$prefix$_"} = $kb for $first .. $last;
	return;
}
sub delete_range
{
	my ($node, $prefix, $first, $last, $step) = @_;
	$node->safe_psql('postgres', "CALL delete_range('$prefix', $first, $last, $step)");
	for (my $i = $first; $i <= $last; $i += $step) { delete $written{"$prefix$i"}; }
	return;
}

# every key written and not deleted, with its bytes; nothing else
sub check_contents
{
	my ($node, $what) = @_;
	my $n = scalar(keys %written);
	ok(kb_values_intact($node, \%written), "$what: every value intact, byte for byte");
	is($node->safe_psql('postgres', 'SELECT kv_count()'),
		$n, "$what: $n keys, nothing else");
	return;
}

# crash, restart, and wait until recovery has ended one way or the other
sub crash_and_recover
{
	my ($node) = @_;
	$node->stop('immediate');
	$node->start;
	$node->poll_query_until('postgres',
		q{SELECT state IN ('ready', 'failed') FROM kv_wal_status()});
	return $node->safe_psql('postgres', 'SELECT state FROM kv_wal_status()');
}

my $conf = q{
kvext.heap_chunk_size = '128MB'
kvext.max_value_size = '128MB'
kvext.max_wal_size = '100GB'
kvext.checkpoint_timeout = '1d'
kvext.synchronous_commit = off
};

my $node = kv_node('budget_runtime',
	"kvext.memory_limit = '" . 1200 * $U . "kB'\n$conf");
setup($node);

# 150 1-unit values fill the 160-unit chunk (an allocation takes the
# tightest free block that holds it), then 3MB values the 128MB one until
# the store is full (puts stop short of the reserve kept for deletes)
put_range($node, 'a', 1, 150, $U);
my $nb = $node->safe_psql('postgres', q{
DO $$
BEGIN
	FOR i IN 1..100 LOOP
		BEGIN
			PERFORM kv_put('b' || i, val('b' || i, 3072));
		EXCEPTION WHEN SQLSTATE '53200' THEN
			EXIT;
		END;
		IF i % 20 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END $$;
SELECT count(*) FROM kv_scan('b')});
cmp_ok($nb, '>', 36, "3MB values until the store was full: $nb");
$written{"b$_"} = 3072 for 1 .. $nb;

# every other one deleted (the last 3MB value stays, so the big chunk's
# free end does not grow)
delete_range($node, 'a', 2, 150, 2);
delete_range($node, 'b', 2, $nb - 1, 2);
my ($used, $largest) = split /\|/, $node->safe_psql('postgres',
	'SELECT round(100.0 * memory_used / memory_limit, 1), largest_free_block / 1024 FROM kv_memory()');
my $size = $largest + 10 * $U;
note "after the deletes: ${used}% of memory_limit used, largest free block ${largest}kB";
cmp_ok($used, '<', 50, 'the store is less than half full');
cmp_ok($size, '<=', 70 * $U, "a ${size}kB value fits in the small chunk's free bytes");

my $r = kv_call($node, "SELECT kv_put('big', val('big', $size))");
ok($r->{ok}, "run time: a ${size}kB value is accepted at ${used}% used")
  or diag($r->{stderr});
$written{big} = $size if $r->{ok};
my ($compactions, $failed, $evacuated) = split /\|/, $node->safe_psql('postgres',
	'SELECT compactions, failed_compactions, evacuated_entries FROM kv_memory()');
note "kv_memory(): $compactions compactions, $failed failed, $evacuated entries evacuated";
cmp_ok($compactions, '>', 0, 'the write needed a compaction');
is($failed, 0, 'no compaction failed');
check_contents($node, 'run time');

is(crash_and_recover($node), 'ready', 'after a crash, recovery replays it');
check_contents($node, 'after the crash');
$node->stop('immediate');
done_testing();
