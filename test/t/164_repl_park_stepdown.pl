# Copyright (c) 2026, kvext authors
#
# A leader that loses its place with transactions in flight: ten sessions
# on n1 are held after their TXN records (failpoint wal-after-fsync:hold),
# n1 is frozen (SIGSTOP), n2 is promoted with n3's vote, then the holds are
# let go and n1 is thawed.  Each session writes its COMMIT record, learns
# that n1 no longer leads (40003: in doubt) and parks its transaction, while
# n1 steps down and drops every parked transaction past its park ceiling,
# from several processes at once (the sessions, the step-down, the wal
# writer; how many park, rather than roll back, is timing, most of them on
# a quiet machine).  Each parked transaction must be dropped by exactly one:
# a second one unlinked and freed its entries again (an assertion failure,
# or a backend looping in the hash chain with a partition lock held).
# Afterwards n1 follows n2, its sessions' backends exit (their exit flush
# once waited forever for records n1 had cut from its log), nothing of the
# in-doubt transactions is committed anywhere (no majority ever had them),
# and the three digests agree.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use KvextDurability;

my ($n1, $n2, $n3) = kv_repl_group('park', 3);
my @nodes = ($n1, $n2, $n3);
my $tmp  = $PostgreSQL::Test::Utils::tmp_check;
my $hold = $n1->data_dir . '/kvext/hold';
my %logpos = map { $_->name => -s $_->logfile } @nodes;

$n1->safe_psql('postgres', q{SELECT kv_put('before_' || i, 'b') FROM generate_series(1, 100) i});
is(kv_wait_digest($_, kv_digest($n1)), kv_digest($n1), $_->name . ' has the first writes') for ($n2, $n3);

# ten sessions held after their TXN records
my @held = map {
	kv_spawn_held($n1, "held_$_", 'wal-after-fsync',
		"SELECT kv_mput(array(SELECT 'q${_}_' || i FROM generate_series(1, 5000) i),\n"
		  . "               array(SELECT 'v' FROM generate_series(1, 5000)));")
} 1 .. 10;
ok($n1->poll_query_until('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'held_%' AND wait_event = 'Extension'},
		'10'),
	'ten transactions are logged on n1 and held');

# n1 frozen; n2 promoted with n3's vote
my @frozen = sigstop_server($n1);
my $r = kv_call($n2, 'SELECT kv_promote()');
ok($r->{ok}, 'n2 is promoted while n1 is frozen') or diag($r->{stderr});

# the holds let go, n1 thawed: its sessions commit into a lost leadership
unlink $hold or die "unlink: $!";
sigcont_server(@frozen);
my @status = map { wait_or_kill($_, time + 180) >> 8 } @held;
is(scalar(grep { $_ != 0 } @status), 10, 'no held session got a plain success');
# each is in doubt (40003: it wrote its COMMIT record, then learned that n1
# no longer leads, and parked) or rolled back (it learned first); which,
# is timing: on a quiet machine most park
my ($in_doubt, $rolled_back) = (0, 0);
for my $s (1 .. 10)
{
	my $err = slurp_file("$tmp/held_$s.err");
	$in_doubt++ if $err =~ /may or may not be committed/;
	$rolled_back++ if $err =~ /were not committed: node "n1" stopped leading/;
}
note("in doubt: $in_doubt, rolled back: $rolled_back");
is($in_doubt + $rolled_back, 10, "each is in doubt ($in_doubt) or rolled back ($rolled_back)");

ok($n1->poll_query_until('postgres',
		q{SELECT role || ' ' || coalesce(leader, '') FROM kv_cluster_status()}, 'follower n2'),
	'n1 follows n2');
# a backend flushes what it wrote when it exits: records the log no longer
# has (n1 cut its tail to follow n2) must not hold it
ok($n1->poll_query_until('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'held_%'}, '0'),
	"the held sessions' backends exit, although n1 cut their records from its log");
$n2->safe_psql('postgres', q{SELECT kv_put('after', 'a')});
my $want = kv_digest($n2);
is(kv_wait_digest($_, $want), $want, $_->name . " has the new leader's contents") for ($n1, $n3);
is(kv_scalar($n1, q{SELECT count(*) FROM kv_scan('q')}), '0',
	'none of the in-doubt writes is there (no majority had them)');
like(kv_scalar($n1, q{SELECT kv_get('after') || count(*) FROM kv_scan('before_')}), qr/^a100$/,
	'n1 serves the group\'s contents');
for my $node (@nodes)
{
	unlike(slurp_file($node->logfile, $logpos{ $node->name }),
		qr/TRAP:|terminated by signal|reinitializing|PANIC/,
		$node->name . ': no crash');
}

$_->stop for @nodes;
done_testing();
