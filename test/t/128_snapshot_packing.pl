# Copyright (c) 2026, kvext authors
#
# A snapshot of large values that fit at run time loads again (issue 8,
# item 2).
#
# The snapshot holds entries in bucket order, not in the order the server
# placed them, and each value must fit in one chunk of the heap (1GB at
# most): with values of hundreds of MB that is bin packing.  In a 1320MB
# store (chunks of 1024MB and 275MB), values of 250, 560, 220 and 220MB
# written in that order fit: {250} in the small chunk, {560, 220, 220} in
# the big one.  Loaded in bucket order with a 220MB value first, it takes
# the small chunk, the 250MB value then goes to the big one with the
# 560MB, and neither chunk has room left for the last 220MB, nor does any
# single move make it: recovery used to stop with "the kvext snapshot does
# not fit in kvext.memory_limit".  The loader now places large values
# largest first, each in the tightest free block (best fit decreasing).
# Every value is checked, byte for byte (md5), against what was written.
#
# The data is kept to what the chunk geometry needs (chunks are 1GB):
# 1.25GB of log and a snapshot of the same size.
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
plan skip_all => "needs 4GB of free disk, "
  . (defined $free_kb ? int($free_kb / 1024) . "MB free" : "free space unknown")
  if !defined $free_kb || $free_kb < 4 * 1024 * 1024;

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

my $node = kv_node('snapshot_packing', "kvext.memory_limit = '1320MB'\n$conf");
setup($node);

# The snapshot (like kv_scan) holds keys in bucket order: of 40 candidate
# keys, the first in that order gets a 220MB value, the second the 250MB
# one, the third the 560MB one, the last the other 220MB.
$node->safe_psql('postgres',
	q{SELECT kv_put('k' || i, '') FROM generate_series(1, 40) i});
my @order = split /\n/,
  $node->safe_psql('postgres', q{SELECT key FROM kv_scan('k')});
is(scalar(@order), 40, 'kv_scan returns the 40 candidate keys');
$node->safe_psql('postgres',
	q{SELECT kv_delete('k' || i) FROM generate_series(1, 40) i});
my ($p, $m, $l, $q) = @order[ 0, 1, 2, 39 ];
note "snapshot order: $p (220MB), $m (250MB), $l (560MB), ..., $q (220MB)";

# at run time, 250 takes the small chunk (the tighter), the others the
# big one
for ([ $m, 250 ], [ $l, 560 ], [ $p, 220 ], [ $q, 220 ])
{
	my ($k, $mb) = @$_;
	my $r = kv_call($node, "SELECT kv_put('$k', val('$k', $mb))");
	ok($r->{ok}, "run time: the ${mb}MB value $k fits") or diag($r->{stderr});
	$written{$k} = $mb if $r->{ok};
}
is($node->safe_psql('postgres', 'SELECT compactions FROM kv_memory()'),
	0, 'run time: the values fit without moving anything');
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');

is(crash_and_recover($node), 'ready',
	'after a crash, the snapshot that fit at run time loads');
check_contents($node, 'after the crash');
like(slurp_file($node->logfile), qr/kvext loaded snapshot: 4 entries/,
	'recovery loaded the four values from the snapshot');

$node->stop('immediate');
done_testing();
