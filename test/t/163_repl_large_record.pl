# Copyright (c) 2026, kvext authors
#
# A leader writes a record too large for its log buffers outside the log's
# insert lock (src/log/wal.c, write_direct): its position is given out
# first, records after it may follow into the ring, and the file holds it
# only once its write is done.  The log senders must ship only what the
# file holds: while the large record's write is held half done (failpoint
# wal-direct-write:hold: a torn record in the file) and a commit after it
# is in the ring, the
# followers get nothing from the record's start on, and no node logs a
# damaged or refused record; once it is let go, both followers get the
# record and what followed it, and the three digests agree.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use KvextDurability;

# a 64kB ring: records over 16kB are written at once
my ($n1, $n2, $n3) = kv_repl_group('lrec', 3, "kvext.wal_buffers = '64kB'\n");
my @nodes = ($n1, $n2, $n3);
my $hold = $n1->data_dir . '/kvext/hold';
my %logpos = map { $_->name => -s $_->logfile } @nodes;

# all of the leader's log on both followers, digests equal
sub converged
{
	my ($what) = @_;
	my $want = kv_digest($n1);
	for my $f ($n2, $n3)
	{
		is(kv_wait_digest($f, $want), $want, "$what: " . $f->name . " has the leader's contents");
	}
}

$n1->safe_psql('postgres', q{SELECT kv_put('before_' || i, repeat('b', 30000)) FROM generate_series(1, 5) i});
$n1->safe_psql('postgres', q{SELECT kv_put('small_' || i, 's') FROM generate_series(1, 50) i});
converged('large and small records before');

# hold a large record's write on the leader
my $start = kv_status($n1)->{insert};
my $big = kv_spawn_held($n1, 'big', 'wal-direct-write', q{SELECT kv_put('big', repeat('B', 100000));});
pass('the leader is writing the large record');
# a commit after it, in the ring (off: it does not wait for the followers)
$n1->safe_psql('postgres', "SET kvext.synchronous_commit = off;\nSELECT kv_put('after_big', 'a');");
cmp_ok(kv_status($n1)->{insert}, '>', $start + 100000, "the leader's log ends after the record and the commit");

# the senders send a heartbeat at least every second and ship what is
# written each time they look: give them a few rounds.  They must not
# read into the record either: a reader that found it torn would open
# again, and wait for the log's write lock, held by the record's writer.
my $sender_waits = 0;
for (1 .. 30)
{
	$sender_waits += $n1->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity
		  WHERE backend_type LIKE 'kvext sender %' AND wait_event = 'kvext log write'});
	usleep(100_000);
}
is($sender_waits, 0, 'no sender reads into the record, or waits for it to be written');
for my $f ($n2, $n3)
{
	cmp_ok(kv_status($f)->{insert}, '<=', $start,
		$f->name . ' got nothing from the record on while it is being written');
}
is($n1->safe_psql('postgres',
		q{SELECT count(*) FROM kv_replication_status() WHERE state IN ('streaming', 'catchup')}),
	'2', 'both senders still stream (no failure)');

unlink $hold or die "unlink: $!";
is(wait_or_kill($big, time + 180) >> 8, 0, 'the large commit completes (a majority has it)');
converged('after the large record');
is(kv_scalar($n2, q{SELECT length(kv_get('big')) || ' ' || kv_get('after_big')}), '100000 a',
	'n2 has the record and the commit after it');
for my $node (@nodes)
{
	unlike(slurp_file($node->logfile, $logpos{ $node->name }),
		qr/corrupt|checksum mismatch|refused an append|torn record|invalid record/,
		$node->name . ' logged no damaged or refused record');
}

# ---------------------------------------------------------------------------
# A follower applies a COMMIT record by reading the TXN record it names.
# Here one pass of a follower's apply meets a COMMIT whose TXN record is in
# the log's last segment, then one whose TXN record is in an earlier
# segment (its transaction logged before a segment switch, decided after).
# n3 is frozen while both are decided, so that it applies them together.
# (64kB segments, on every node: a follower cuts its log into segments by
# its own setting)
for my $node (@nodes)
{
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET kvext.wal_segment_size = '64kB'; SELECT pg_reload_conf();");
	ok($node->poll_query_until('postgres', 'SHOW kvext.wal_segment_size', '64kB'),
		$node->name . ': 64kB log segments');
}
sleep 1;
my $segstart = sub { hex((wal_segments($n1))[-1]) };
my $t1 = kv_spawn_held($n1, 't1', 'wal-after-fsync', q{SELECT kv_put('t1', 'one');});
pass('t1 is logged, not decided');
# fill the segment t1 is in, so that the next transaction record switches
my $t1seg = $segstart->();
my $i = 0;
while (kv_status($n1)->{insert} - $segstart->() < 64 * 1024)
{
	$i++;
	$n1->safe_psql('postgres', "SELECT kv_put('fill_$i', repeat('f', 8000))");
	die 'the log switched segments while filling one' if $segstart->() != $t1seg;
}
my $end = kv_status($n1)->{insert};
ok($n3->poll_query_until('postgres',
		qq{SELECT applied_lsn >= '} . sprintf('%X/%X', $end >> 32, $end & 0xffffffff) . qq{' FROM kv_cluster}),
	"n3 has applied the leader's log up to here ($i values)");
my @frozen = sigstop_server($n3);
$n1->safe_psql('postgres', q{SELECT kv_put('t3', 'three')});
cmp_ok($segstart->(), '>', $t1seg, "t3's transaction record starts a new segment");
unlink $hold or die "unlink: $!";
is(wait_or_kill($t1, time + 180) >> 8, 0, 't1 is decided after t3');
my $n3pos = -s $n3->logfile;
sigcont_server(@frozen);
is(kv_wait_digest($n3, kv_digest($n1)), kv_digest($n1), 'n3 applies both and has the leader\'s contents');
is(kv_scalar($n3, q{SELECT kv_get('t1') || kv_get('t3')}), 'onethree', 'with t1 and t3');
unlike(slurp_file($n3->logfile, $n3pos), qr/log file containing position \S+ is missing|ERROR/,
	'n3 read the earlier segment without an error');

$_->stop for @nodes;
done_testing();
