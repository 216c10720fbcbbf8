# A record too large for the log buffers (over a quarter of
# kvext.wal_buffers) is written at once, and its write must not hold the
# log's insert lock: while it is being written (failpoint
# wal-direct-write:hold), an "off" commit still completes, and a "local"
# commit waits for it, since nothing after the record may become durable
# before the record itself.  A crash or a PANIC in the middle of that write
# (the failpoint stops it half done) leaves a torn record at the tail,
# which recovery reads as the end of the log: the record and everything
# inserted after it are gone, nothing acknowledged is lost, and the log
# goes on from there.  Nothing here is timed: the test checks where each
# session is while the large record's writer is held.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(usleep);

use KvextDurability;

# a 64kB ring: records over 16kB are written at once
my $node = kv_node('direct_write', "kvext.wal_buffers = '64kB'\n");
my $tmp  = $PostgreSQL::Test::Utils::tmp_check;
my $hold = $node->data_dir . '/kvext/hold';

$node->safe_psql('postgres', q{SELECT kv_put('before_' || i, 'b' || i) FROM generate_series(1, 20) i});
my $before = kv_digest($node, 'default', 'before_');

# wait until the session has committed (its output says so: 'done') or
# waits on an LWLock before that ('waits for LWLock:...'), whichever comes
# first.  A session that commits then sleeps: a backend that exits flushes
# what it wrote, and that flush too waits for the large record.
sub done_or_lwlock
{
	my ($app) = @_;
	for (1 .. 6000)
	{
		return 'done' if (slurp_file("$tmp/$app.out") =~ /^committed$/m);
		my $w = kv_session_wait($node, $app);
		if ($w =~ /^LWLock:/)
		{
			return 'done' if (slurp_file("$tmp/$app.out") =~ /^committed$/m);
			return "waits for $w";
		}
		usleep(20_000);
	}
	return 'neither';
}

# a session that commits a key with kvext.synchronous_commit = mode, says
# so, then stays until killed
sub commit_and_stay
{
	my ($app, $mode) = @_;
	return kv_spawn($node, $app, qq{SET kvext.synchronous_commit = $mode;
SELECT kv_put('$app', '$mode');
SELECT 'committed';
SELECT pg_sleep(600);
});
}

# hold a large record's write (its session: application_name big_<tag>);
# returns its pid and the log's end before it
sub hold_large_write
{
	my ($tag) = @_;
	my $start = kv_status($node)->{insert};
	my $pid = kv_spawn_held($node, "big_$tag", 'wal-direct-write',
		"SET kvext.synchronous_commit = local;\nSELECT kv_put('big_$tag', repeat('B', 100000));");
	return ($pid, $start);
}

# ---------------------------------------------------------------------------
# held, then let go
my ($big, $start) = hold_large_write('1');
is(kv_session_wait($node, 'big_1'), 'Extension:Extension', 'the large record is being written');
cmp_ok(kv_status($node)->{insert}, '>', $start + 100000, 'its position is given out: the log ends after it');

my $off = commit_and_stay('off_1', 'off');
is(done_or_lwlock('off_1'), 'done', 'an off commit completes meanwhile: the insert lock is free');
my $local = commit_and_stay('local_1', 'local');
like(done_or_lwlock('local_1'), qr/^waits for LWLock:kvext log (?:write|flush)$/,
	'a local commit waits for the write: its flush may not pass the record');
cmp_ok(kv_status($node)->{flush}, '<=', $start, 'nothing after the record start is flushed');
is(kv_session_wait($node, 'big_1'), 'Extension:Extension', 'the large record was still held meanwhile');

unlink $hold or die "unlink: $!";
is(wait_or_kill($big, time + 120) >> 8, 0, 'the large commit completes');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM pg_stat_activity
		WHERE application_name IN ('off_1', 'local_1') AND wait_event = 'PgSleep'}),
	'and the local commit after it');
like(slurp_file("$tmp/local_1.out"), qr/^committed$/m, 'which is acknowledged');
kill 'TERM', $off, $local;
wait_or_kill($_, time + 60) for ($off, $local);
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is(kv_scalar($node, q{SELECT length(kv_get('big_1')) || ' ' || kv_get('off_1') || ' ' || kv_get('local_1')}),
	'100000 off local', 'all three survive an immediate stop');

# ---------------------------------------------------------------------------
# an immediate stop while it is held: nothing after its start reached the
# file, so the record and what was inserted after it are gone together
($big, $start) = hold_large_write('2');
is(kv_session_wait($node, 'big_2'), 'Extension:Extension', 'a second large record is being written');
$off = commit_and_stay('off_2', 'off');
is(done_or_lwlock('off_2'), 'done', 'an off commit completes meanwhile');
$local = commit_and_stay('local_2', 'local');
like(done_or_lwlock('local_2'), qr/^waits for LWLock:kvext log (?:write|flush)$/, 'a local commit waits');
# (the wal writer cannot write the ring past the record either)
usleep(500_000);
cmp_ok(kv_status($node)->{flush}, '<=', $start, 'still nothing flushed past the record');
$node->stop('immediate');
unlink $hold;
wait_or_kill($_, time + 60) for ($big, $off, $local);
unlike(slurp_file("$tmp/local_2.out"), qr/^committed$/m, 'the local commit was not acknowledged');
my $logpos = -s $node->logfile;
$node->start;
kv_wait_ready($node);
like(slurp_file($node->logfile, $logpos), qr/kvext recovery complete/, 'recovery completes');
is(kv_scalar($node, q{SELECT count(*) FROM kv_scan('') WHERE key IN ('big_2', 'off_2', 'local_2')}),
	'0', 'the held record, the off commit and the unacknowledged local commit after it are gone');
is(kv_digest($node, 'default', 'before_'), $before, 'the earlier commits are intact');
cmp_ok(kv_status($node)->{insert}, '==', $start, 'the log goes on where the record was to start');
$node->safe_psql('postgres', q{SELECT kv_put('after_2', repeat('A', 100000)), kv_put('after_2s', 's')});

# ---------------------------------------------------------------------------
# a PANIC in the middle of the write (as a failed write would give)
$logpos = -s $node->logfile;
my $r = kv_call($node, q{SET kvext.failpoint = 'wal-direct-write:panic'; SELECT kv_put('big_3', repeat('C', 100000));});
ok(!$r->{ok}, 'a PANIC during the write fails the commit');
like(slurp_file($node->logfile, $logpos), qr/PANIC:  kvext failpoint "wal-direct-write" reached/,
	'the server PANICked there');
kv_ready_after_crash($node, $logpos);
is(kv_scalar($node, q{SELECT coalesce(kv_get('big_3'), 'none') || ' ' || length(kv_get('after_2')) || kv_get('after_2s')}),
	'none 100000s', 'after the restart: the record is gone, the earlier ones are there');
is(kv_digest($node, 'default', 'before_'), $before, 'and the first commits');
$node->safe_psql('postgres', q{SELECT kv_put('after_3', repeat('D', 100000))});
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is(kv_scalar($node, q{SELECT length(kv_get('after_3'))}), '100000', 'the log goes on after it');

# ---------------------------------------------------------------------------
# large and small records from several clients at once, then a crash: every
# acknowledged commit survives
my $script = q{
\set k random(1, 200)
\set n random(1, 15000)
SELECT kv_put('mix_' || :k, repeat(md5(:k::text), :n / 16 + 1) || :n);
};
$node->pgbench(
	'-n -c 4 -j 2 -t 200', 0,
	[qr{processed: 800/800}],
	[qr{^$}],
	'4 clients write values of 32 bytes to 30kB (about half of them written at once)',
	{ '145_mix' => $script });
my $mix = kv_digest($node, 'default', 'mix_');
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is(kv_digest($node, 'default', 'mix_'), $mix, 'every commit survives an immediate stop');

$node->stop;
done_testing();
