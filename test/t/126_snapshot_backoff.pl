# Copyright (c) 2026, kvext authors
#
# A snapshot that keeps failing: kv_wal_status() says why (the last error,
# how many failures in a row, when, and when the next attempt is due), the
# checkpointer waits longer after each failure instead of retrying every
# second, kv_checkpoint() does not wait for the delay and names the cause,
# no partial snapshot file is left behind, and a later success clears it
# all.  The failure is the failpoint snapshot-mid in its error form.
#
# The backoff is checked through the times the server reports, never
# through the test's own clock: each automatic attempt starts no earlier
# than the retry time announced after the previous failure, and the delay
# doubles (2 s, 4 s, 8 s, ...).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use KvextDurability;

my $node  = kv_node('snapshot_backoff');
my $kvdir = $node->data_dir . '/kvext';

# the failure state: failures, error, the error and retry times (as text,
# compared by the server), and the delay between them in seconds; empty
# strings for NULLs
sub failure_state
{
	my $row = $node->safe_psql('postgres',
		q{SELECT snapshot_failures, coalesce(snapshot_error, ''),
		         coalesce(snapshot_error_time::text, ''),
		         coalesce(snapshot_retry_time::text, ''),
		         coalesce(extract(epoch FROM snapshot_retry_time - snapshot_error_time)::float8::text, '')
		  FROM kv_wal_status()});
	my @f = split /\|/, $row, -1;
	return { failures => $f[0], error => $f[1], error_time => $f[2], retry_time => $f[3], delay => $f[4] };
}

# the delay announced after n failures in a row
sub expected_delay
{
	my ($n) = @_;
	my $d = 2;
	$d *= 2 for 2 .. $n;
	return $d > 300 ? 300 : $d;
}

$node->safe_psql('postgres',
	q{SELECT kv_put('k' || i, 'v' || i) FROM generate_series(1, 1000) i});
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
my $digest = kv_digest($node, 'default', 'k');
my $snap0  = kv_status($node)->{snapshot};

my $s = failure_state();
is($s->{failures}, '0', 'no failures after a good snapshot');
is($s->{error} . $s->{error_time} . $s->{retry_time}, '', 'error, error time and retry time are NULL');

# ---------------------------------------------------------------------------
# make every snapshot fail; the first failure comes from kv_checkpoint()
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET kvext.failpoint = 'snapshot-mid:error'; SELECT pg_reload_conf();});
my $r;
for my $try (1 .. 20)
{
	# the checkpointer reads the setting at its next wakeup
	usleep(300_000);
	$r = kv_call($node, 'SELECT kv_checkpoint()');
	last if !$r->{ok};
}
ok(!$r->{ok}, 'kv_checkpoint() fails while snapshots fail');
is($r->{sqlstate}, 'XX000', '... with SQLSTATE XX000');
like($r->{stderr}, qr/kvext snapshot failed/, '... saying the snapshot failed');
like($r->{stderr}, qr/DETAIL:.*kvext failpoint "snapshot-mid" reached/,
	'... and why, in its detail');

$s = failure_state();
cmp_ok($s->{failures}, '>=', 1, 'kv_wal_status() counts the failure');
is($s->{error}, 'kvext failpoint "snapshot-mid" reached', 'kv_wal_status() shows the error');
ok($s->{error_time} ne '' && $s->{retry_time} ne '', 'and when it failed and will retry');
ok(!-e "$kvdir/snapshot.tmp", 'the partial snapshot file was removed');
is(kv_status($node)->{snapshot}, $snap0, 'the previous snapshot is still the one in use');

# ---------------------------------------------------------------------------
# automatic retries: the checkpointer tries again on its own (a failed
# snapshot stays due), after a delay that doubles
my $prev = $s;
my $seen = 0;
while ($seen < 3)
{
	my $n = $prev->{failures};
	cmp_ok($prev->{delay}, '==', expected_delay($n),
		"after $n failure(s) in a row the next attempt is announced " . expected_delay($n) . ' s later');
	# wait for the next failure
	$node->poll_query_until('postgres',
		"SELECT snapshot_failures > $n FROM kv_wal_status()")
	  or die "no automatic retry after failure $n";
	my $cur = failure_state();
	is($cur->{failures}, $n + 1, "failure @{[$n + 1]} is the next one (one attempt, not several)");
	is( $node->safe_psql('postgres',
			"SELECT '$cur->{error_time}'::timestamptz >= '$prev->{retry_time}'::timestamptz"),
		't', "attempt @{[$n + 1]} did not start before the announced retry time");
	$prev = $cur;
	$seen++;
}

# the server log says it too
like(slurp_file($node->logfile),
	qr/kvext snapshot failed 3 time\(s\) in a row; next automatic attempt in 8000 ms/,
	'the server log reports each failure and the delay');

# kv_checkpoint() does not wait for the delay, and counts as an attempt
my $n = failure_state()->{failures};
$r = kv_call($node, 'SELECT kv_checkpoint()');
ok(!$r->{ok}, 'kv_checkpoint() attempts at once during the backoff, and fails');
$s = failure_state();
cmp_ok($s->{failures}, '>', $n, 'that attempt is counted');
cmp_ok($s->{delay}, '==', expected_delay($s->{failures}), 'and the delay keeps growing');

# ---------------------------------------------------------------------------
# a success clears the failure state
$node->safe_psql('postgres', q{SELECT kv_put('after', 'the failures')});
$node->safe_psql('postgres',
	q{ALTER SYSTEM RESET kvext.failpoint; SELECT pg_reload_conf();});
for my $try (1 .. 20)
{
	usleep(300_000);
	$r = kv_call($node, 'SELECT kv_checkpoint()');
	last if $r->{ok};
}
ok($r->{ok}, 'kv_checkpoint() succeeds once the cause is gone');
$s = failure_state();
is($s->{failures}, '0', 'the failure count is back to 0');
is($s->{error} . $s->{error_time} . $s->{retry_time}, '', 'error, error time and retry time are NULL again');
cmp_ok(kv_status($node)->{snapshot}, '>', $snap0, 'the new snapshot is in use');

$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is(kv_digest($node, 'default', 'k'), $digest, 'data intact after a crash');
is($node->safe_psql('postgres', q{SELECT kv_get('after')}), 'the failures', 'including the last write');

$node->stop;
done_testing();
