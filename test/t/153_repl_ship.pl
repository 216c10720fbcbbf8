# Copyright (c) 2026, kvext authors
#
# The leader ships its log to its followers (docs/architecture.md,
# "Replication"; src/replication/sender.c), three real nodes on loopback:
#  1. one "kvext sender <peer>" worker per peer shows in the leader's
#     pg_stat_activity; kv_cluster_status() gives each node's role;
#  2. writes on the leader (small ones, records larger than a batch and
#     than a segment) reach both followers: digests equal; the commit
#     position reaches the leader's flush position; kv_replication_status()
#     shows both peers caught up, and never the conninfo's password;
#  3. pg_terminate_backend of a follower's replication backend: the sender
#     reconnects, with one LOG line for the outage;
#  4. a follower stopped: the leader goes on committing with the other
#     (commit position = flush position), the stopped one is retried with
#     one LOG line however many attempts, and catches up when it returns;
#  5. both followers stopped: the commit position stops below the leader's
#     flush position (no majority), and moves on once one returns.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use KvextDurability;

my ($n1, $n2, $n3) = kv_repl_group('ship', 3, "kvext.wal_segment_size = '1MB'\n");

# the follower's replication session, as the sender names it
my $repl_backend = q{SELECT pid FROM pg_stat_activity WHERE application_name = 'kvext sender n1'};

# all of the leader's log committed and on both followers, digests equal
sub converged
{
	my ($what, @followers) = @_;
	ok( $n1->poll_query_until(
			'postgres', q{SELECT c.commit_lsn = w.flush_lsn
  FROM kv_cluster_status() c, kv_wal_status() w}),
		"$what: the commit position reaches the leader's flush position");
	my $want = kv_digest($n1);
	for my $f (@followers)
	{
		is(kv_wait_digest($f, $want), $want, "$what: " . $f->name . ' has the leader\'s contents');
		my $commit = $n1->safe_psql('postgres', 'SELECT commit_lsn FROM kv_cluster');
		ok( $f->poll_query_until(
				'postgres', qq{SELECT applied_lsn >= '$commit' AND commit_lsn >= '$commit'
  FROM kv_cluster}),
			"$what: " . $f->name . ' shows the commit position and has applied up to it');
	}
}

# lines of a node's log written since offset that match re
sub log_count
{
	my ($node, $offset, $re) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my @m = ($log =~ /$re/g);
	return scalar @m;
}

sub wait_log
{
	my ($node, $offset, $re) = @_;
	my $deadline = time + 180;
	while (time < $deadline)
	{
		return 1 if log_count($node, $offset, $re) > 0;
		sleep 1;
	}
	return 0;
}

# ---------------------------------------------------------------------------
# 1. workers and roles

ok( $n1->poll_query_until(
		'postgres', q{SELECT string_agg(backend_type, ',' ORDER BY backend_type)
  FROM pg_stat_activity WHERE backend_type LIKE 'kvext sender%'},
		'kvext sender n2,kvext sender n3'),
	'the leader runs one sender per peer, shown in pg_stat_activity');
is( $n1->safe_psql(
		'postgres', q{SELECT node, role, leader, group_size, config_error IS NULL
  FROM kv_cluster}),
	'n1|leader|n1|3|t',
	'kv_cluster on the leader');
is($n2->safe_psql('postgres', q{SELECT node, role, group_size FROM kv_cluster_status()}),
	'n2|follower|3', 'kv_cluster_status() on a follower');

# ---------------------------------------------------------------------------
# 2. shipping

$n1->safe_psql('postgres', q{SELECT kv_put('k' || i, 'v' || i) FROM generate_series(1, 200) i});
# 40 transactions of 100kB: batches of about 1MB, several in flight
$n1->safe_psql('postgres',
	q{SELECT kv_put('big' || i, repeat(chr(65 + i % 26), 100000)) FROM generate_series(1, 40) i});
# one record of 2.7MB: larger than a batch and than a segment
$n1->safe_psql('postgres',
	q{SELECT kv_mput(ARRAY['huge1', 'huge2', 'huge3'],
                     ARRAY[repeat('x', 900000), repeat('y', 900000), repeat('z', 900000)])});
$n1->safe_psql('postgres', q{SELECT kv_delete('k7')});
cmp_ok($n1->safe_psql('postgres', q{SELECT segments FROM kv_wal_status()}),
	'>', 2, 'the leader\'s log spans several segments');
converged('writes', $n2, $n3);
is( join(',', map { $_->safe_psql('postgres', 'SELECT cluster_id FROM kv_cluster') } ($n2, $n3)),
	join(',', ($n1->safe_psql('postgres', 'SELECT cluster_id FROM kv_cluster')) x 2),
	'the followers took the leader\'s cluster id');

ok( $n1->poll_query_until(
		'postgres', q{SELECT string_agg(r.peer || ':' || r.state || ':' || (r.flushed_lsn = w.flush_lsn)
                               || ':' || (r.sent_lsn = w.flush_lsn) || ':' || r.lag_bytes,
                               ',' ORDER BY r.peer)
  FROM kv_replication r, kv_wal_status() w},
		'n2:streaming:true:true:0,n3:streaming:true:true:0'),
	'kv_replication: both peers streaming, everything sent and flushed');
is( $n1->safe_psql(
		'postgres', q{SELECT count(*) FROM kv_replication
  WHERE conninfo LIKE '%user=kvext_repl%' AND conninfo NOT LIKE '%s3cret%'
    AND applied_lsn IS NOT NULL AND lag_time IS NOT NULL}),
	'2', 'kv_replication shows the conninfo without its password');
is(log_count($n1, 0, qr/s3cret/), 0, 'the password never appears in the server log');

# pg_monitor may read it, PUBLIC may not
$n1->safe_psql('postgres', q{CREATE ROLE watcher; CREATE ROLE nobody;
  GRANT pg_monitor TO watcher;});
is($n1->safe_psql('postgres', q{SET ROLE watcher; SELECT count(*) FROM kv_replication}),
	'2', 'a pg_monitor member reads kv_replication');
my $r = kv_call($n1, q{SET ROLE nobody; SELECT count(*) FROM kv_replication_status()});
is($r->{sqlstate}, '42501', 'other roles may not call kv_replication_status()');
is($n1->safe_psql('postgres', q{SET ROLE nobody; SELECT role FROM kv_cluster}),
	'leader', 'every role reads kv_cluster');

# ---------------------------------------------------------------------------
# 3. the follower's backend terminated: one LOG line, then reconnected

my $offset = -s $n1->logfile;
my $pid    = $n2->safe_psql('postgres', $repl_backend);
isnt($pid, '', 'n2 has a replication backend from n1');
$n2->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$n1->safe_psql('postgres', q{SELECT kv_put('after_kill', 'yes')});
ok(wait_log($n1, $offset, qr/reconnected to peer "n2" after \d+ attempts/),
	'the sender reconnects to n2 and says so');
is(log_count($n1, $offset, qr/(?:lost connection to peer "n2"|peer "n2" refused)/),
	1, 'one LOG line for the lost connection');
converged('after pg_terminate_backend', $n2);
ok($n2->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($repl_backend AND pid <> $pid) b"),
	'n2 has a new replication backend');

# ---------------------------------------------------------------------------
# 4. one follower down: commits go on; one LOG line per outage

$offset = -s $n1->logfile;
$n3->stop('fast');
$n1->safe_psql('postgres', q{SELECT kv_put('down' || i, 'n3 is down') FROM generate_series(1, 50) i});
converged('n3 stopped', $n2);

# several failed attempts, still one line
my $err_q = q{SELECT last_error_time FROM kv_replication WHERE peer = 'n3'};
for (1 .. 3)
{
	my $t = $n1->safe_psql('postgres', $err_q);
	ok( $n1->poll_query_until(
			'postgres', qq{SELECT coalesce(last_error_time > '$t'::timestamptz, false)
  FROM kv_replication WHERE peer = 'n3'}),
		"n3 is retried ($_)") if $t ne '';
	ok($n1->poll_query_until('postgres', $err_q . ' IS NOT NULL'), 'n3 has a last error')
	  if $t eq '';
}
is($n1->safe_psql('postgres', q{SELECT state FROM kv_replication WHERE peer = 'n3'})
	  =~ /^(backoff|connecting)$/ ? 1 : 0,
	1, 'n3 is shown disconnected');
is( log_count(
		$n1, $offset,
		qr/(?:lost connection to peer "n3"|could not connect to peer "n3"|peer "n3" refused)/),
	1,
	'one LOG line for the whole outage');

$n3->start;
ok(wait_log($n1, $offset, qr/reconnected to peer "n3" after \d+ attempts/),
	'the sender reconnects to n3 after its restart');
converged('n3 back', $n2, $n3);

# ---------------------------------------------------------------------------
# 5. no majority: the commit position stops

$n2->stop('fast');
$n3->stop('fast');
$n1->safe_psql('postgres',
	q{SET kvext.synchronous_commit = local; SELECT kv_put('alone', 'no majority')});
is( $n1->safe_psql(
		'postgres', q{SELECT c.commit_lsn < w.flush_lsn FROM kv_cluster_status() c, kv_wal_status() w}),
	't', 'without a majority the commit position stays below the flush position');
$n2->start;
converged('n2 back', $n2);
$n3->start;
converged('all back', $n2, $n3);

$n1->stop;
$n2->stop;
$n3->stop;
done_testing();
