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
# could make room was never tried.  A 1200MB store (a 1GB chunk and a 157MB
# one) with 1MB values in the small chunk and 3MB values in the big one,
# every other one deleted, said 53200 for a value of about 50MB (more than
# any free block of the big chunk) at under 50% used.  It must be accepted
# by moving 1MB values out of the small chunk, and replayed after a crash.
# Every value is checked, byte for byte (md5), against what was written.
#
# The data is kept to what the chunk geometry needs (chunks are 1GB): about
# 1.2GB of log.
use strict;
use warnings;

use Digest::MD5;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

# A machine with less free disk than the test needs skips it, and says so.
my $df = `df -Pk '$PostgreSQL::Test::Utils::tmp_check' 2>/dev/null`;
my ($free_kb) = $df =~ /\n\S+\s+\d+\s+\d+\s+(\d+)/;
plan skip_all => "needs 3GB of free disk, "
  . (defined $free_kb ? int($free_kb / 1024) . "MB free" : "free space unknown")
  if !defined $free_kb || $free_kb < 3 * 1024 * 1024;

my $MB = 1024 * 1024;

# A value is val(key, n): md5(key) repeated to n MB.  %written maps each
# key written and not deleted to its size in MB.
my %written;

sub setup
{
	my ($node) = @_;
	$node->safe_psql(
		'postgres', qq{
CREATE FUNCTION val(k text, mb int) RETURNS text LANGUAGE sql IMMUTABLE
AS \$\$ SELECT repeat(repeat(md5(k), $MB / 32), mb) \$\$;
-- put values of mb MB at keys <prefix><i>, first..last, committing every 20
CREATE PROCEDURE put_range(prefix text, first int, last int, mb int)
LANGUAGE plpgsql AS \$\$
BEGIN
	FOR i IN first..last LOOP
		PERFORM kv_put(prefix || i, val(prefix || i, mb));
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
	END LOOP;
END \$\$;
});
	return;
}

sub put_range
{
	my ($node, $prefix, $first, $last, $mb) = @_;
	$node->safe_psql('postgres', "CALL put_range('$prefix', $first, $last, $mb)");
	$written{"$prefix$_"} = $mb for $first .. $last;
	return;
}

sub delete_range
{
	my ($node, $prefix, $first, $last, $step) = @_;
	$node->safe_psql('postgres', "CALL delete_range('$prefix', $first, $last, $step)");
	for (my $i = $first; $i <= $last; $i += $step) { delete $written{"$prefix$i"}; }
	return;
}

# "key:bytes:md5" of every value in %written, in key order, computed here
sub expected
{
	my @out;
	for my $k (sort keys %written)
	{
		my $unit = Digest::MD5::md5_hex($k) x ($MB / 32);
		my $ctx  = Digest::MD5->new;
		$ctx->add($unit) for 1 .. $written{$k};
		push @out, "$k:" . ($written{$k} * $MB) . ':' . $ctx->hexdigest;
	}
	return join(',', @out);
}

# the same, read from the store with kv_get
sub stored
{
	my ($node) = @_;
	my $keys = join(',', map { "'$_'" } sort keys %written);
	return $node->safe_psql('postgres',
		"SELECT string_agg(k || ':' || coalesce(octet_length(v)::text, 'missing') || ':' || coalesce(md5(v), ''), ',' ORDER BY k COLLATE \"C\")"
		  . " FROM (SELECT k, kv_get(k) AS v FROM unnest(ARRAY[$keys]) k) t");
}

# every key written and not deleted, with its bytes; nothing else
sub check_contents
{
	my ($node, $what) = @_;
	my $n = scalar(keys %written);
	ok(stored($node) eq expected(), "$what: every value intact, byte for byte");
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
kvext.max_value_size = '1000MB'
kvext.max_wal_size = '100GB'
kvext.checkpoint_timeout = '1d'
kvext.synchronous_commit = off
};

my $node = kv_node('budget_runtime', "kvext.memory_limit = '1200MB'\n$conf");
setup($node);

# 150 1MB values fill the 157MB chunk (an allocation takes the tightest free
# block that holds it), then 3MB values the 1GB one until the store is full
# (puts stop short of the reserve kept for deletes)
put_range($node, 'a', 1, 150, 1);
my $nb = $node->safe_psql('postgres', q{
DO $$
BEGIN
	FOR i IN 1..400 LOOP
		BEGIN
			PERFORM kv_put('b' || i, val('b' || i, 3));
		EXCEPTION WHEN SQLSTATE '53200' THEN
			EXIT;
		END;
		IF i % 20 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END $$;
SELECT count(*) FROM kv_scan('b')});
cmp_ok($nb, '>', 300, "3MB values until the store was full: $nb");
$written{"b$_"} = 3 for 1 .. $nb;

# every other one deleted (the last 3MB value stays, so the big chunk's
# free end does not grow)
delete_range($node, 'a', 2, 150, 2);
delete_range($node, 'b', 2, $nb - 1, 2);
my ($used, $largest) = split /\|/, $node->safe_psql('postgres',
	'SELECT round(100.0 * memory_used / memory_limit), largest_free_block / 1048576 FROM kv_memory()');
my $size = $largest + 10;
note "after the deletes: ${used}% of memory_limit used, largest free block ${largest}MB";
cmp_ok($used, '<', 50, 'the store is less than half full');
cmp_ok($size, '<=', 70, "a ${size}MB value fits in the small chunk's free bytes");

my $r = kv_call($node, "SELECT kv_put('big', val('big', $size))");
ok($r->{ok}, "run time: a ${size}MB value is accepted at ${used}% used")
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
