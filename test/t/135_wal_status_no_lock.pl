# kv_wal_status() is callable by every role, so it must never wait for the
# log insert lock that every commit needs: while a committing session holds
# that lock (failpoint wal-insert-hold), kv_wal_status() still answers, and
# the commit completes once the lock is let go.  Nothing here is timed: the
# test checks that the status call finished while the other session was
# still inside the lock.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes qw(usleep);

use KvextDurability;

my $node = kv_node('status_lock');
my $tmp  = $PostgreSQL::Test::Utils::tmp_check;
my $hold = $node->data_dir . '/kvext/hold';

$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
$node->safe_psql('postgres', q{SELECT kv_put('before', 'b')});

# a commit that stops inside the insert lock
open(my $fh, '>', $hold) or die "open $hold: $!";
close $fh;
open($fh, '>', "$tmp/holder.sql") or die;
print $fh "SET kvext.failpoint = 'wal-insert-hold';\nSELECT kv_put('held', 'x');\n";
close $fh;
my $holder = spawn_psql($node, "$tmp/holder.sql", "$tmp/holder.out", "$tmp/holder.err", 'holder');
ok($node->poll_query_until('postgres',
		q{SELECT wait_event_type || ':' || wait_event FROM pg_stat_activity WHERE application_name = 'holder'},
		'Extension:Extension'),
	'the committing session is inside the insert lock');

# kv_wal_status() from an ordinary role, in the background (if it waited
# for the lock, the test would otherwise hang here)
open($fh, '>', "$tmp/status.sql") or die;
print $fh "SET ROLE plain;\nSELECT state, insert_lsn IS NOT NULL, apply_lsn <= insert_lsn FROM kv_wal_status();\n";
close $fh;
my $status = spawn_psql($node, "$tmp/status.sql", "$tmp/status.out", "$tmp/status.err", 'status');
my $outcome = '';
for (1 .. 6000)
{
	if (waitpid($status, POSIX::WNOHANG()) == $status)
	{
		$outcome = 'done';
		last;
	}
	if (kv_session_wait($node, 'status') =~ /^LWLock:/)
	{
		$outcome = 'waits for ' . kv_session_wait($node, 'status');
		last;
	}
	usleep(20_000);
}
is($outcome, 'done', 'kv_wal_status() returns while a commit holds the insert lock');
is(slurp_file("$tmp/status.out"), "ready|t|t\n", 'and answers');
is(kv_session_wait($node, 'holder'), 'Extension:Extension', 'the commit was still inside the insert lock meanwhile');

# let the commit go
unlink $hold or die "unlink: $!";
is(wait_or_kill($holder, time + 120) >> 8, 0, 'the held commit completes');
wait_or_kill($status, time + 120) if $outcome ne 'done';
is(kv_scalar($node, q{SELECT kv_get('held') || kv_get('before')}), 'xb', 'its write is there');

# many status calls beside commits: all commits complete
$node->safe_psql('postgres', q{SELECT kv_put('k' || i, 'v') FROM generate_series(1, 200) i});
is(kv_scalar($node, q{SELECT count(*) FROM generate_series(1, 200) i, kv_wal_status() s WHERE s.apply_lsn <= s.insert_lsn}),
	'200', 'apply_lsn never passes insert_lsn');

done_testing();
