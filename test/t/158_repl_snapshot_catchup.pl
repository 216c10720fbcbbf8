# Catch-up from a streamed snapshot (issue 9 item 7): a follower that
# needs log its leader has removed after a snapshot is rebuilt from the
# leader's snapshot, streamed in chunks, then follows the log again.
#
#  a. a follower stopped (pg_ctl stop) while the leader writes, creates and
#     drops keyspaces, and removes its old log after a snapshot
#     (kvext.wal_keep_size = 0, 64kB segments); then the same with the
#     follower frozen by SIGSTOP and resumed with SIGCONT: it stays
#     connected, so the leader keeps the log it reads, but only up to
#     kvext.max_wal_size (1MB here) behind the end, and it writes more;
#  b. a follower whose kvext/ directory was wiped;
#  c. a crash during the install (failpoints, PANIC) before and after the
#     point that decides it: the node recovers its old state or the new
#     one, and then catches up;
#  d. keyspace creates and drops made while the follower was away are
#     there after catch-up (checked in every case).
#
# Contents are compared with kv_scan and kv_keyspaces on every node; the
# snapshot path is checked by its LOG lines.  No timing is asserted.
use strict;
use warnings;

use File::Path qw(rmtree);
use FindBin;
use lib "$FindBin::RealBin/..";
use PostgreSQL::Test::Utils;
use Test::More;
use KvextGroup;

my @nodes = kv_group(3, qq(
kvext.wal_segment_size = '64kB'
kvext.wal_keep_size = 0
kvext.max_wal_size = '1MB'
kvext.checkpoint_timeout = 3600
));
my ($n1, $n2, $n3) = @nodes;

ok(kv_poll($n1, "SELECT count(*) FROM kv_replication WHERE state = 'streaming'", '2'),
	'both followers stream');

# every keyspace with its keys and values, in order
my $contents = q{
SELECT string_agg(k.keyspace || ':' || coalesce(
         (SELECT string_agg(key || '=' || value, ',' ORDER BY key)
            FROM kv_scan('', k.keyspace)), ''), ';' ORDER BY k.keyspace)
  FROM kv_keyspaces() k};

my $round = 0;

# write on the leader past what it keeps: keyspace changes, about 600kB of
# log over ten 64kB segments, then a snapshot that removes the old log
sub write_past_retained_log
{
	my ($tag, $rounds) = @_;
	$round++;
	$n1->safe_psql('postgres', qq{
SELECT kv_create_keyspace('ks_$tag');
SELECT kv_drop_keyspace('old_$tag');
SELECT kv_put('k' || g, repeat('$tag', 50) || g, 'ks_$tag') FROM generate_series(1, 300) g;
SELECT kv_put('d' || g, '$tag' || g) FROM generate_series(1, 300) g;
SELECT kv_delete('d' || g) FROM generate_series(1, 50) g;
});
	for (1 .. ($rounds // 6))
	{
		$n1->safe_psql('postgres',
			"SELECT kv_put('bulk$round.' || g, repeat('x', 500)) FROM generate_series(1, 200) g");
	}
	$n1->safe_psql('postgres', 'SELECT kv_checkpoint()');
	$n1->safe_psql('postgres', "SELECT kv_put('after_snapshot_$tag', 'yes')");
}

# the keyspace that each round drops must exist on every node first
sub prepare_round
{
	my ($tag) = @_;
	$n1->safe_psql('postgres', qq{
SELECT kv_create_keyspace('old_$tag');
SELECT kv_put('gone', 'soon', 'old_$tag');
});
	ok(kv_group_wait_equal($contents, @nodes), "$tag: keyspace old_$tag everywhere");
}

# the follower caught up by snapshot, holds what the leader holds, and
# follows new writes
sub check_caught_up
{
	my ($tag, $node, $logpos_leader, $logpos_node) = @_;
	ok(kv_poll($node, "SELECT kv_get('after_snapshot_$tag')", 'yes', 180),
		"$tag: the follower has the write made after the snapshot");
	my $want = $n1->safe_psql('postgres', $contents);
	ok(kv_poll($node, $contents, $want, 120), "$tag: contents equal to the leader's");
	like($want, qr/ks_$tag:k1=/, "$tag: the keyspace created meanwhile has its keys");
	unlike($node->safe_psql('postgres', "SELECT string_agg(keyspace, ',') FROM kv_keyspaces()"),
		qr/old_$tag/, "$tag: the keyspace dropped meanwhile is gone");
	like(slurp_file($n1->logfile, $logpos_leader),
		qr/peer "@{[ $node->name ]}" needs the kvext log from .* sending it the snapshot/,
		"$tag: the leader sent its snapshot");
	like(slurp_file($node->logfile, $logpos_node),
		qr/kvext follower rebuilt from its leader's snapshot/,
		"$tag: the follower was rebuilt from it");
	$n1->safe_psql('postgres', "SELECT kv_put('later_$tag', 'x')");
	ok(kv_poll($node, "SELECT kv_get('later_$tag')", 'x', 60),
		"$tag: appends go on after the snapshot");
}

sub wal_segment_start
{
	my ($node) = @_;
	my @segs = sort grep { /^[0-9A-F]{16}$/ }
	  map { s{.*/}{}r } glob($node->data_dir . '/kvext/wal/*');
	return $segs[0];
}

# ---- a. a stopped follower ----
prepare_round('a');
$n2->stop('fast');
my $applied_n2 = $n1->safe_psql('postgres',
	"SELECT applied_lsn FROM kv_replication WHERE peer = 'n2'");
my $lp1 = -s $n1->logfile;
my $lp2 = -s $n2->logfile;
write_past_retained_log('a');
my $oldest = $n1->safe_psql('postgres',
	"SELECT ('0/0'::pg_lsn + x'" . wal_segment_start($n1) . "'::bit(64)::bigint)");
ok($n1->safe_psql('postgres', "SELECT '$oldest'::pg_lsn > '$applied_n2'::pg_lsn") eq 't',
	"a: the leader's log now starts at $oldest, after n2's $applied_n2");
$n2->start;
check_caught_up('a', $n2, $lp1, $lp2);

# ---- a2. a frozen follower (SIGSTOP), resumed with SIGCONT ----
prepare_round('s');
my $pm = $n2->{_pid};
my @pids = ($pm, split /\s+/, `ps -o pid= --ppid $pm`);
@pids = grep { /^\d+$/ } @pids;
$lp1 = -s $n1->logfile;
$lp2 = -s $n2->logfile;
kill 'STOP', @pids;
# more than the sender can have in flight (4 batches of 1MB, which libpq
# buffers even while the peer is stopped), so the frozen follower needs
# log the leader has removed
write_past_retained_log('s', 64);
kill 'CONT', @pids;
check_caught_up('s', $n2, $lp1, $lp2);

# ---- b. a follower whose kvext/ was wiped ----
prepare_round('b');
$n3->stop('fast');
$lp1 = -s $n1->logfile;
my $lp3 = -s $n3->logfile;
write_past_retained_log('b');
rmtree($n3->data_dir . '/kvext');
$n3->start;
check_caught_up('b', $n3, $lp1, $lp3);
like(slurp_file($n3->logfile, $lp3), qr/joins the group of leader "n1"/,
	'b: the wiped node took the group\'s cluster id');

# ---- c. a crash during the install ----
for my $case (['install-before-marker', 'old'], ['install-mid', 'new'],
	['install-before-load', 'new'])
{
	my ($fp, $state) = @$case;
	my $tag = 'c' . ($fp =~ s/-/_/gr);
	prepare_round($tag);
	$n2->safe_psql('postgres', "ALTER SYSTEM SET kvext.failpoint = '$fp:panic'");
	$n2->stop('fast');
	$lp1 = -s $n1->logfile;
	$lp2 = -s $n2->logfile;
	write_past_retained_log($tag);
	$n2->start;

	# the backend installing the snapshot PANICs; the node restarts
	my $crashed = 0;
	for (1 .. 1800)
	{
		if (slurp_file($n2->logfile, $lp2) =~ /PANIC:  kvext failpoint "$fp" reached/)
		{
			$crashed = 1;
			last;
		}
		select(undef, undef, undef, 0.1);
	}
	ok($crashed, "$tag: the install crashed at $fp");
	# (a query before the postmaster has noticed could reach the dying server)
	$n2->wait_for_log(qr/all server processes terminated; reinitializing/, $lp2);
	ok(kv_poll($n2, 'SELECT 1', '1', 120), "$tag: the node is back after the crash");
	$n2->safe_psql('postgres', 'ALTER SYSTEM RESET kvext.failpoint');
	$n2->safe_psql('postgres', 'SELECT pg_reload_conf()');
	my $log = slurp_file($n2->logfile, $lp2);
	if ($fp eq 'install-mid')
	{
		like($log, qr/kvext finishes installing the snapshot streamed from its leader/,
			"$tag: recovery finished the install");
	}
	else
	{
		unlike($log, qr/kvext finishes installing/, "$tag: recovery had no install to finish");
	}
	unlike($log, qr/kvext recovery failed/, "$tag: recovery did not fail");
	ok(kv_poll($n2, "SELECT kv_get('after_snapshot_$tag')", 'yes', 240),
		"$tag: the follower catches up after the crash");
	my $want = $n1->safe_psql('postgres', $contents);
	ok(kv_poll($n2, $contents, $want, 120), "$tag: contents equal to the leader's");

	# the old state needs the snapshot again; the new one does not
	my $sent = () = slurp_file($n1->logfile, $lp1) =~ /peer "n2" needs the kvext log/g;
	if ($state eq 'old')
	{
		ok($sent >= 2, "$tag: the old state was recovered: the snapshot was sent again ($sent)");
	}
	else
	{
		is($sent, 1, "$tag: the new state was recovered: the snapshot was sent once");
	}
}

# ---- in the end: every node the same ----
$n1->safe_psql('postgres', "SELECT kv_put('final', 'yes')");
ok(kv_poll($_, "SELECT kv_get('final')", 'yes', 60), $_->name . ': has the last write')
  for ($n2, $n3);
ok(defined kv_group_wait_equal($contents, @nodes), 'all three nodes hold the same keys');

$_->stop for @nodes;
done_testing();
