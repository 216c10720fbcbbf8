# Copyright (c) 2026, kvext authors
#
# A leader ships what it has written before its own fsync, so its followers
# may hold records that the leader then loses: an OS crash loses what was
# written and not yet fsynced.  The commit position never passes the
# leader's own flush position, so no acknowledged write is among them; the
# leader restarts as the leader of the same term and writes other records
# at the same positions.  The followers must drop theirs and take the
# leader's (src/replication/receiver.c, "Records a leader may have lost"):
#  1. a write blocked between the leader's write and its fsync reaches both
#     followers, and is not committed;
#  2. the leader stops (immediate) and its log loses everything past its
#     flush position, as in an OS crash;
#  3. it restarts, in the same term, and writes a record of the same size
#     at the same position: the followers cut their copies of the lost
#     records and hold the leader's; contents equal everywhere, every
#     acknowledged write there, the lost one nowhere.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use KvextDurability;
use KvextGroup;
use PostgreSQL::Test::Utils;
use Test::More;

my @nodes = kv_group(3);
my ($n1, $n2, $n3) = @nodes;

my $contents =
  "SELECT coalesce(string_agg(key || '=' || value, ',' ORDER BY key), '') FROM kv_scan('')";

# acknowledged writes, one transaction each
$n1->safe_psql('postgres', "SELECT kv_put('acked$_', 'v$_')") for 1 .. 10;
ok(defined kv_group_wait_equal($contents, @nodes), 'acknowledged writes on every node');
my $term = $n1->safe_psql('postgres', 'SELECT term FROM kv_cluster_status()');

# ---------------------------------------------------------------------------
# 1. a write held between the leader's write and its fsync

my $hold = $n1->data_dir . '/kvext/hold';
open(my $fh, '>', $hold) or die "cannot create $hold: $!";
close($fh);
my $bg = $n1->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/held/, q{
SET kvext.failpoint = 'wal-before-fsync:hold';
\echo held
SELECT kv_put('lost', 'value one');
});
my $n1_insert;
ok( kv_poll(
		$n1, q{SELECT count(*) FROM pg_stat_activity
  WHERE wait_event = 'Extension' AND query LIKE '%kv_put(''lost''%'}, '1'),
	'the writer holds between its write and its fsync');
$n1_insert = kv_status($n1)->{insert};
my $n1_flush = kv_status($n1)->{flush};
cmp_ok($n1_flush, '<', $n1_insert, 'the leader has not flushed its last records');
for my $f ($n2, $n3)
{
	ok( kv_poll(
			$f, qq{SELECT insert_lsn - '0/0' >= $n1_insert FROM kv_wal_status()}, 't'),
		$f->name . ' holds them: the senders shipped them before the leader\'s fsync');
}
cmp_ok($n1->safe_psql('postgres', q{SELECT commit_lsn - '0/0' FROM kv_cluster_status()}),
	'<=', $n1_flush, 'the commit position stays at the leader\'s own flush position');
is($n2->safe_psql('postgres', "SELECT coalesce(kv_get('lost'), '<null>')"),
	'<null>', 'not committed: invisible on a follower');

# ---------------------------------------------------------------------------
# 2. an OS crash on the leader: what it had not fsynced is gone

$n1->stop('immediate');
eval { $bg->quit };
unlink $hold;
{
	# zero the current segment from the flush position on
	my $dir = $n1->data_dir . '/kvext/wal';
	opendir(my $dh, $dir) or die "cannot open $dir: $!";
	my @segs = sort { $a <=> $b } map { hex } grep { /^[0-9A-F]{16}$/ } readdir($dh);
	closedir($dh);
	my ($seg) = grep { $_ <= $n1_flush } reverse @segs;
	my $path = sprintf('%s/%016X', $dir, $seg);
	open(my $f, '+<', $path) or die "cannot open $path: $!";
	binmode($f);
	my $size = -s $path;
	seek($f, $n1_flush - $seg, 0);
	print $f "\0" x ($size - ($n1_flush - $seg));
	close($f);
}

# ---------------------------------------------------------------------------
# 3. the leader restarts, in the same term, and writes at those positions

$n1->start;
kv_wait_ready($n1);
is(kv_status($n1)->{insert}, $n1_flush, 'the restarted leader\'s log ends at its old flush position');
ok( kv_poll(
		$n1, q{SELECT role || '/' || term FROM kv_cluster_status()}, "leader/$term"),
	'it leads the same term');
ok( kv_poll(
		$n1, q{SELECT count(*) FROM (SELECT kv_put('lost', 'value two')) s}, '1', 120),
	'it takes writes again: a record of the same size at the same position');
my $want = $n1->safe_psql('postgres', $contents);
like($want, qr/lost=value two/, 'the leader holds its new write');
for my $f ($n2, $n3)
{
	ok(kv_poll($f, $contents, $want, 120), $f->name . ' holds what the leader holds');
	like(slurp_file($f->logfile), qr/kvext follower cuts its log at/,
		$f->name . ' cut the records its leader had lost');
}
unlike($want, qr/value one/, 'the write that was never acknowledged is nowhere');
is(scalar(() = $want =~ /acked\d+=/g), 10, 'every acknowledged write is there');

# and the group goes on
$n1->safe_psql('postgres', "SELECT kv_put('after', 'yes')");
ok(defined kv_group_wait_equal($contents, @nodes), 'later writes reach every node');

$_->stop for @nodes;
done_testing();
