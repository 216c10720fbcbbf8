# Copyright (c) 2026, kvext authors
#
# No false "full" in stores over 1GB (issue 8, item 3).  The heap is cut
# into 1GB chunks and sliding compaction never crosses a chunk's end, so
# free space in two chunks never merged: a write needed its room in one
# chunk.  Compaction now evacuates entries out of the chunk with the most
# free bytes into the other chunks' free blocks until the write fits.
#
# Sizes are in units: a chunk is 1024 units (1GB in production).
#  1. A 1200-unit store (a 1024-unit chunk and a 160-unit one) filled with
#     1-unit values, every other one deleted: a 560-unit value fits in the
#     free bytes, but in no chunk's.  It is accepted at run time, and
#     replayed after a crash.
#  2. Replay places entries in commit order.  In a 2100-unit store (two
#     1024-unit chunks and a small one), a 550-unit value is written by a
#     transaction that stays open while 520 1-unit values commit: the small
#     values fill the rest of the big value's chunk, and a second 550-unit
#     value gets the other chunk.  Replay places the small values first
#     (together in one chunk), then the first big value in the other chunk:
#     no chunk has 550 units left for the second, although the log fit at
#     run time.  Recovery must succeed, with identical contents.
# Every value is checked, byte for byte (md5), against what was written;
# and the memory accounting is checked exact: a move keeps sizes.
#
# kvext.heap_chunk_size (a developer option) makes a chunk 16MB here, so a
# unit is 16kB (1MB with production's 1GB chunks) and the test writes
# about 55MB of log, not 4GB.  The bounds that do not scale keep their
# side: the 1-unit values (16kB) are under the 2MB above which compaction
# never moves an entry while the server runs, as 1MB values are, so they
# may be evacuated; the 550- and 560-unit values (8.6 and 8.75MB) are over
# it, as in production, so only recovery may move them.  No snapshot is
# taken, so the snapshot's 1MB bound for large entries plays no part.  An
# entry's overhead (header and key, about 56 bytes) is a larger share of
# 16kB than of 1MB; the counts still give the geometry above (in 1, the
# big chunk has about 530 units free after the deletes, as in production).
# Both parts fail when compaction does not evacuate across chunks: 1 with
# 53200 at run time, 2 with recovery state 'failed'.
#
# The machine's first touch of memory is slow (each new backend faults in
# the shared memory it reads), so the data is kept to what the chunk
# geometry needs and each check reads every value once.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

# a unit, in kB (a chunk is 1024 units)
my $U = 16;

# A value is val(key, kb): md5(key) repeated to kb kilobytes.  %written
# maps each key written and not deleted to its size in kB.
my %written;

sub setup
{
	my ($node) = @_;
	$node->safe_psql(
		'postgres', qq{
CREATE FUNCTION val(k text, kb int) RETURNS text LANGUAGE sql IMMUTABLE
AS \$\$ SELECT repeat(md5(k), kb * 32) \$\$;
-- put 1-unit values at keys <prefix><i>, first..last, committing every 20
CREATE PROCEDURE put_range(prefix text, first int, last int, step int)
LANGUAGE plpgsql AS \$\$
BEGIN
	FOR i IN first..last BY step LOOP
		PERFORM kv_put(prefix || i, val(prefix || i, $U));
		IF i % 20 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END \$\$;
CREATE PROCEDURE delete_range(prefix text, first int, last int, step int)
LANGUAGE plpgsql AS \$\$
BEGIN
	FOR i IN first..last BY step LOOP
		PERFORM kv_delete(prefix || i);
		IF i % 200 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END \$\$;
});
	return;
}

sub put_range
{
	my ($node, $prefix, $first, $last, $step) = @_;
	$node->safe_psql('postgres', "CALL put_range('$prefix', $first, $last, $step)");
	for (my $i = $first; $i <= $last; $i += $step) { $written{"$prefix$i"} = $U; }
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
	is( $node->safe_psql('postgres',
			q{SELECT kv_count() || ' ' || string_agg(coalesce(keyspace, '*') || ':' || entries, ' ' ORDER BY keyspace) FROM kv_stats()}
		),
		"$n default:$n *:$n",
		"$what: $n keys, as kv_count() and kv_stats() count them");
	return;
}

# Bytes of memory_used that belong to no keyspace: the bucket array and
# the chunks' fences.  Constant while the accounting is exact: a move
# keeps an entry's size, so it changes neither a keyspace's bytes nor the
# total.
sub overhead
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		q{SELECT sum(memory_used) FILTER (WHERE keyspace IS NULL)
		         - coalesce(sum(memory_used) FILTER (WHERE keyspace IS NOT NULL), 0)
		  FROM kv_stats()});
}

# crash, restart, and wait until recovery has ended one way or the other.
# The commits here are off (kvext.synchronous_commit below), and this test
# is not about losing them: wait until the log is flushed (the sessions that
# wrote have exited, and a backend flushes what it wrote when it exits, but
# psql returns before its backend has done that).
sub crash_and_recover
{
	my ($node) = @_;
	$node->poll_query_until('postgres',
		q{SELECT flush_lsn = insert_lsn FROM kv_wal_status()})
	  or die 'the log was not flushed';
	$node->stop('immediate');
	$node->start;
	$node->poll_query_until('postgres',
		q{SELECT state IN ('ready', 'failed') FROM kv_wal_status()});
	return $node->safe_psql('postgres', 'SELECT state FROM kv_wal_status()');
}

my $conf = q{
kvext.heap_chunk_size = '16MB'
kvext.max_value_size = '16MB'
kvext.max_wal_size = '100GB'
kvext.checkpoint_timeout = '1d'
kvext.synchronous_commit = off
};

# ---------------------------------------------------------------------------
# 1. free space spread over two chunks takes one large value at run time
my $node = kv_node('chunks_runtime',
	"kvext.memory_limit = '" . 1200 * $U . "kB'\n$conf");
setup($node);
my $empty_overhead = overhead($node);

# 1-unit values until the store is nearly full, then every other one
# deleted: both chunks are left about half free, in 1-unit holes (the
# 1024-unit chunk with about 530 units)
put_range($node, 'f', 1, 1140, 1);
delete_range($node, 'f', 2, 1140, 2);
my $free = $node->safe_psql('postgres',
	q{SELECT (memory_limit - memory_used - (memory_limit - memory_limit / 64) / 32) / 1024 FROM kv_memory()});
note "after the deletes: about ${free}kB free for puts";
cmp_ok($free, '>=', 570 * $U, 'the free bytes add up to more than the large value');

my $r = kv_call($node, "SELECT kv_put('large', val('large', 560 * $U))");
ok($r->{ok}, 'run time: a 560-unit value that fits no single chunk is accepted')
  or diag($r->{stderr});
$written{large} = 560 * $U if $r->{ok};
check_contents($node, 'run time');
is(overhead($node), $empty_overhead,
	'run time: memory_used is the keyspaces\' bytes plus the fixed overhead');
my $mem = $node->safe_psql('postgres',
	'SELECT compactions, moved_entries, moved_bytes, evacuated_entries, evacuated_bytes FROM kv_memory()');
note "kv_memory(): compactions, moved entries and bytes, evacuated entries and bytes: $mem";
cmp_ok((split /\|/, $mem)[3], '>', 0, 'kv_memory() counts the entries evacuated to another chunk');

is(crash_and_recover($node), 'ready', 'after a crash, recovery replays it');
check_contents($node, 'after the crash');
is(overhead($node), $empty_overhead,
	'after the crash: memory_used is the keyspaces\' bytes plus the fixed overhead');
$node->stop('immediate');

# ---------------------------------------------------------------------------
# 2. a log that fit at run time replays
%written = ();
$node = kv_node('chunks_replay',
	"kvext.memory_limit = '" . 2100 * $U . "kB'\n$conf");
setup($node);
$empty_overhead = overhead($node);

my $open = $node->background_psql('postgres');
$open->query_safe("BEGIN; SELECT kv_put('big1', val('big1', 550 * $U))");
put_range($node, 's', 1, 520, 1);
$open->query_safe('COMMIT');
$open->quit;
$written{big1} = 550 * $U;
$r = kv_call($node, "SELECT kv_put('big2', val('big2', 550 * $U))");
ok($r->{ok}, 'run time: the second 550-unit value fits') or diag($r->{stderr});
$written{big2} = 550 * $U if $r->{ok};

is(crash_and_recover($node), 'ready',
	'after a crash, recovery replays a log that fit at run time');
check_contents($node, 'after the crash');
is(overhead($node), $empty_overhead,
	'after the crash: memory_used is the keyspaces\' bytes plus the fixed overhead');

$node->stop('immediate');
done_testing();
