# Copyright (c) 2026, kvext authors
#
# Snapshots and kv_scan stream: more than 1GB in one partition of the hash
# table (two 560MB values whose keys land in the same partition, plus a
# 3MB one and small keys) is snapshotted, scanned, restarted and recovered
# after a kill -9.  Before scans copied in bounded batches, a partition was
# copied whole into one buffer, which cannot pass 1GB: every snapshot
# failed (so old log segments were never removed) and a full kv_scan
# failed too.
#
# The keys are chosen by computing kvext's hash in Perl (PostgreSQL's
# hash_bytes combined with the keyspace id); the test first checks that the
# Perl hash agrees with the server's, through kv_scan's order, which
# follows the bucket array.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

# The test writes about 4GB (a 2GB store's snapshots and log).  A machine
# with less free disk than that skips it, and says so.
my $df = `df -Pk '$PostgreSQL::Test::Utils::tmp_check' 2>/dev/null`;
my ($free_kb) = $df =~ /\n\S+\s+\d+\s+\d+\s+(\d+)/;
plan skip_all => "needs 6GB of free disk, "
  . (defined $free_kb ? int($free_kb / 1024) . "MB free" : "free space unknown")
  if !defined $free_kb || $free_kb < 6 * 1024 * 1024;

# 2GB: the allocator cuts the heap into chunks of at most 1GB, each of
# which must take one 560MB value
my $MEMORY_MB = 2048;
my $BIG       = 560 * 1024 * 1024;    # bytes per big value
my $PATTERN   = 32;                   # md5() text length

# ---------------------------------------------------------------------------
# kvext's hash: hash_combine(keyspace id, hash_bytes(key)), and the bucket
# and partition of store.c

sub u32 { return $_[0] & 0xFFFFFFFF; }
sub rot { my ($x, $k) = @_; return u32(($x << $k) | ($x >> (32 - $k))); }

sub jenkins_mix
{
	my ($a, $b, $c) = @_;
	$a = u32($a - $c); $a ^= rot($c, 4);  $c = u32($c + $b);
	$b = u32($b - $a); $b ^= rot($a, 6);  $a = u32($a + $c);
	$c = u32($c - $b); $c ^= rot($b, 8);  $b = u32($b + $a);
	$a = u32($a - $c); $a ^= rot($c, 16); $c = u32($c + $b);
	$b = u32($b - $a); $b ^= rot($a, 19); $a = u32($a + $c);
	$c = u32($c - $b); $c ^= rot($b, 4);  $b = u32($b + $a);
	return ($a, $b, $c);
}

sub jenkins_final
{
	my ($a, $b, $c) = @_;
	$c ^= $b; $c = u32($c - rot($b, 14));
	$a ^= $c; $a = u32($a - rot($c, 11));
	$b ^= $a; $b = u32($b - rot($a, 25));
	$c ^= $b; $c = u32($c - rot($b, 16));
	$a ^= $c; $a = u32($a - rot($c, 4));
	$b ^= $a; $b = u32($b - rot($a, 14));
	$c ^= $b; $c = u32($c - rot($b, 24));
	return $c;
}

# PostgreSQL's hash_bytes() on a little-endian machine
sub hash_bytes
{
	my @k   = unpack('C*', $_[0]);
	my $len = scalar @k;
	my $a   = u32(0x9e3779b9 + $len + 3923095);
	my ($b, $c) = ($a, $a);
	my $i = 0;
	while ($len - $i >= 12)
	{
		$a = u32($a + $k[$i] + ($k[$i + 1] << 8) + ($k[$i + 2] << 16) + ($k[$i + 3] << 24));
		$b = u32($b + $k[$i + 4] + ($k[$i + 5] << 8) + ($k[$i + 6] << 16) + ($k[$i + 7] << 24));
		$c = u32($c + $k[$i + 8] + ($k[$i + 9] << 8) + ($k[$i + 10] << 16) + ($k[$i + 11] << 24));
		($a, $b, $c) = jenkins_mix($a, $b, $c);
		$i += 12;
	}
	my @t = @k[ $i .. $#k ];
	my $n = scalar @t;
	# the lowest byte of c is reserved for the length
	$c = u32($c + ($t[10] << 24)) if $n >= 11;
	$c = u32($c + ($t[9] << 16))  if $n >= 10;
	$c = u32($c + ($t[8] << 8))   if $n >= 9;
	$b = u32($b + ($t[7] << 24))  if $n >= 8;
	$b = u32($b + ($t[6] << 16))  if $n >= 7;
	$b = u32($b + ($t[5] << 8))   if $n >= 6;
	$b = u32($b + $t[4])          if $n >= 5;
	$a = u32($a + ($t[3] << 24))  if $n >= 4;
	$a = u32($a + ($t[2] << 16))  if $n >= 3;
	$a = u32($a + ($t[1] << 8))   if $n >= 2;
	$a = u32($a + $t[0])          if $n >= 1;
	return jenkins_final($a, $b, $c);
}

sub kv_hash
{
	my ($ks, $key) = @_;
	my $a = $ks;
	return u32($a ^ u32(hash_bytes($key) + 0x9e3779b9 + u32($a << 6) + ($a >> 2)));
}

# store.c: the largest power of two not above memory_limit / 256, 128
# partitions of adjacent buckets
my $nbuckets = 1;
$nbuckets *= 2 while $nbuckets * 2 <= $MEMORY_MB * 1024 * 1024 / 256;
my $part_shift = int(log($nbuckets) / log(2) + 0.5) - 7;
sub bucket_of    { return kv_hash(0, $_[0]) & ($nbuckets - 1); }
sub partition_of { return bucket_of($_[0]) >> $part_shift; }

# ---------------------------------------------------------------------------
my $node = kv_node(
	'big_partition', qq{
kvext.memory_limit = '${MEMORY_MB}MB'
kvext.max_wal_size = '100GB'
kvext.checkpoint_timeout = '1d'
});
my $kvdir = $node->data_dir . '/kvext';

# the Perl hash is the server's: a scan walks the buckets in order
$node->safe_psql('postgres',
	q{SELECT kv_mput(array_agg('h' || i), array_agg('small value ' || i)) FROM generate_series(1, 3000) i});
my @order = split /\n/, $node->safe_psql('postgres', q{SELECT key FROM kv_scan('h')});
is(scalar(@order), 3000, 'kv_scan returns the 3000 small keys');
my $sorted = 1;
for my $i (1 .. $#order)
{
	$sorted = 0 if bucket_of($order[$i]) < bucket_of($order[ $i - 1 ]);
}
ok($sorted, 'the Perl hash agrees with the server (scan order follows the buckets)');

# two big keys and a medium one in one partition
my @big = ('big_0');
my $part = partition_of('big_0');
for (my $i = 1; @big < 3; $i++)
{
	push @big, "big_$i" if partition_of("big_$i") == $part;
}
my $small_in_part = grep { partition_of("h$_") == $part } 1 .. 3000;
note("keys @big and $small_in_part small keys are in partition $part of 128 ($nbuckets buckets)");

# values: repeated md5 text, different per key; md5 of each computed by
# the server, so no value crosses the connection
my %len = ($big[0] => $BIG, $big[1] => $BIG, $big[2] => 3 * 1024 * 1024);
my %md5;
for my $k (@big)
{
	my $reps = $len{$k} / $PATTERN;
	$node->safe_psql('postgres', qq{
SET kvext.max_value_size = '1000MB';
SELECT kv_put('$k', repeat(md5('$k'), $reps));});
	$md5{$k} = $node->safe_psql('postgres', qq{SELECT md5(repeat(md5('$k'), $reps))});
}
my $small_digest = kv_digest($node, 'default', 'h');

# what a user relies on: the big values are all there, with their bytes.
# Through kv_scan once (its result passes through a tuplestore on disk,
# which takes a while), then through kv_get.
sub check_content
{
	my ($what, $scan) = @_;
	my $want = join(',', map { "$_:$len{$_}:$md5{$_}" } sort @big);
	if ($scan)
	{
		is( $node->safe_psql('postgres',
				q{SELECT string_agg(key || ':' || length(value) || ':' || md5(value), ',' ORDER BY key)
				  FROM kv_scan('big_')}),
			$want, "$what: kv_scan returns the big values, every byte");
	}
	else
	{
		is( $node->safe_psql('postgres',
				'SELECT string_agg(k || \':\' || length(v) || \':\' || md5(v), \',\' ORDER BY k) FROM ('
				  . join(' UNION ALL ', map { "SELECT '$_' AS k, kv_get('$_') AS v" } @big)
				  . ') t'),
			$want, "$what: kv_get returns the big values, every byte");
	}
	is(kv_digest($node, 'default', 'h'), $small_digest, "$what: the small keys are intact");
	is($node->safe_psql('postgres', 'SELECT kv_count()'), 3000 + 3, "$what: no key more or less");
}

check_content('before any snapshot', 1);

# (kv_scan('big_') above already copies more than 1GB out of one partition;
# a full kv_scan('') would only repeat it, at the cost of another 1GB
# through a tuplestore on disk.)

# ---------------------------------------------------------------------------
# the snapshot
my $segs_before = scalar(wal_segments($node));
my $snap_before = kv_status($node)->{snapshot};
ok($segs_before >= 3, "the log has $segs_before segments");
my $r = kv_call($node, 'SELECT kv_checkpoint()');
ok($r->{ok}, 'kv_checkpoint() succeeds with more than 1GB in one partition')
  or diag($r->{stderr});
my $st = kv_status($node);
cmp_ok($st->{snapshot}, '>', $snap_before, 'kv_wal_status() shows the new snapshot');
my $segs_after = scalar(wal_segments($node));
ok($segs_after < $segs_before && $segs_after <= 2,
	"old log segments were removed ($segs_before -> $segs_after)");
ok(!-e "$kvdir/snapshot.tmp", 'no temporary snapshot left');
cmp_ok(-s "$kvdir/snapshot", '>', 2 * $BIG, 'the snapshot file holds the big values');
is($node->safe_psql('postgres', 'SELECT snapshot_failures FROM kv_wal_status()'),
	'0', 'no snapshot failure reported');

# ---------------------------------------------------------------------------
# writes after the snapshot, then kill -9: loading that snapshot plus log
# replay.  (A clean restart would write and load one more 1GB snapshot,
# through the same code: left out to keep the test's time down.)
$node->safe_psql('postgres', q{SELECT kv_put('h2', 'changed after the last snapshot')});
$small_digest = kv_digest($node, 'default', 'h');
kill9_postmaster($node);
$node->start;
kv_wait_ready($node);
check_content('after kill -9', 0);
is($node->safe_psql('postgres', q{SELECT kv_get('h2')}),
	'changed after the last snapshot', 'a write logged after the snapshot was replayed');

# an immediate stop: a clean one would write another 1GB snapshot
$node->stop('immediate');
done_testing();
