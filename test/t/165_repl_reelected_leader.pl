# Copyright (c) 2026, kvext authors
#
# A leader that stepped down and was elected again leads anew: a
# transaction it logged in its earlier leadership was decided by the
# leader in between (aborted, or cut from the log), and must never be
# committed by it now.  Three sessions on n1 are held after their TXN
# records (failpoint wal-after-fsync:hold); n1 is frozen, n2 promoted,
# n1 thawed: it steps down (after waiting for the held sessions, at most
# 30 s) and follows n2; then n1 is promoted again and the sessions are let
# go.  They must fail (their COMMIT records would name TXN records that
# are no longer theirs to decide), their keys must be nowhere, no follower
# may meet a COMMIT record naming no undecided transaction, and the
# digests must agree.  (Once, the sessions' COMMIT records were logged
# and acknowledged: the keys were only on n1, and a follower refused every
# later append.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use KvextDurability;

my ($n1, $n2, $n3) = kv_repl_group('relead', 3);
my @nodes = ($n1, $n2, $n3);
my $hold = $n1->data_dir . '/kvext/hold';
my %logpos = map { $_->name => -s $_->logfile } @nodes;

sub role_of
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		q{SELECT role || ' ' || coalesce(leader, '') FROM kv_cluster_status()});
}

$n1->safe_psql('postgres', q{SELECT kv_put('before_' || i, 'b') FROM generate_series(1, 50) i});
is(kv_wait_digest($_, kv_digest($n1)), kv_digest($n1), $_->name . ' has the first writes') for ($n2, $n3);

# three sessions held after their TXN records
my @held = map { kv_spawn_held($n1, "stale_$_", 'wal-after-fsync', "SELECT kv_put('stale_$_', 'x');") } 1 .. 3;
ok($n1->poll_query_until('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'stale_%' AND wait_event = 'Extension'},
		'3'),
	'three transactions are logged on n1 and held');

# n1 frozen, n2 promoted, n1 thawed: it steps down and follows n2
my @frozen = sigstop_server($n1);
my $r = kv_call($n2, 'SELECT kv_promote()');
ok($r->{ok}, 'n2 is promoted while n1 is frozen') or diag($r->{stderr});
sigcont_server(@frozen);
ok($n1->poll_query_until('postgres', q{SELECT role || ' ' || coalesce(leader, '') FROM kv_cluster_status()},
		'follower n2'),
	'n1 follows n2 (after waiting for its held sessions)');
$n2->safe_psql('postgres', q{SELECT kv_put('term2', 't')});
my $want = kv_digest($n2);
is(kv_wait_digest($n1, $want), $want, "n1 has n2's log");

# n1 elected again, then the held sessions go on
$r = kv_call($n1, 'SELECT kv_promote()');
ok($r->{ok}, 'n1 is promoted again') or diag($r->{stderr});
ok($n1->poll_query_until('postgres', q{SELECT role FROM kv_cluster_status()}, 'leader'), 'n1 leads');
unlink $hold or die "unlink: $!";
my @status = map { wait_or_kill($_, time + 180) >> 8 } @held;
is(scalar(grep { $_ != 0 } @status), 3, 'none of the stale transactions reports success');
$n1->safe_psql('postgres', q{SELECT kv_put('term3', 't')});
$want = kv_digest($n1);
is(kv_wait_digest($_, $want), $want, $_->name . ' has the leader\'s contents') for ($n2, $n3);
is(kv_scalar($_, q{SELECT count(*) FROM kv_scan('stale_')}), '0', $_->name . ': no stale key') for @nodes;
is(kv_scalar($n3, q{SELECT kv_get('term2') || kv_get('term3')}), 'tt', 'both later terms\' writes are there');
for my $node (@nodes)
{
	unlike(slurp_file($node->logfile, $logpos{ $node->name }),
		qr/names no undecided transaction|TRAP:|terminated by signal|PANIC/,
		$node->name . ': no COMMIT record naming no undecided transaction, no crash');
}

$_->stop for @nodes;
done_testing();
