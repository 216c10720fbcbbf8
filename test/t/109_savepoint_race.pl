# Issue 7, case 5: acknowledged increments must not be lost when the keys
# are written in subtransactions (PL/pgSQL exception blocks, SAVEPOINT /
# RELEASE / ROLLBACK TO), under 8 concurrent clients on a few hot keys.
#
# The bug this guards against: a writer that finds a pending entry written
# by a subtransaction that was released (RELEASE, or a PL/pgSQL block that
# ended normally) waits on that subtransaction's xid.  PostgreSQL releases a
# subtransaction's xid lock at RELEASE, so the wait returns as soon as the
# xid is no longer reported in progress -- which is already the case while
# the owner is committing, before its commit callback turned the pending
# entry into the committed one.  The waiter then took the entry for an
# orphan and deleted it ("kvext removed an orphaned uncommitted write"): the
# owner's acknowledged increment was lost, and with savepoints the owner's
# callback then met a freed entry (an assertion failure, or a backend
# spinning while holding a partition lock).
#
# Every client runs the same deterministic sequence of transactions (the
# branch is chosen from a per-client counter), so the exact final value of
# every counter is known: each must equal the increments of the
# acknowledged transactions, none lost, none invented.  The server log must
# show no orphan removal, no assertion failure and no crash, and every
# client must finish (a hang fails the test after a timeout instead of
# blocking it).

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

# KVEXT_TEST_VERBOSE=1 shows the notes without prove -v
my $say = $ENV{KVEXT_TEST_VERBOSE} ? \&diag : \&note;

my $CLIENTS = 8;
my $ROUNDS  = $ENV{KVEXT_109_ROUNDS} // 3;     # pgbench runs
my $TXNS    = $ENV{KVEXT_109_TXNS} // 500;     # transactions per client per run: 3 x 8 x 500 = 12,000
my $TIMEOUT = 180;     # seconds for one pgbench run; a hang fails the test

my $node = kv_node('savepoint_race', qq(
max_connections = 30
deadlock_timeout = '100ms'
));

# ---------------------------------------------------------------------------
# The workload.  Branch b = (n + client_id) % 9, n = 1, 2, ... counting the
# client's transactions, so at any moment clients run different branches.
# Keys are always first written in the order c1, c2, c3 (no deadlocks).
# Effects on (c1, c2, c3) of a committed transaction of each branch:
my @EFFECT = (
	[ 1, 0, 0 ],    # 0 exception block, released
	[ 1, 0, 0 ],    # 1 released block for c1, c2 in a block that raises (caught)
	[ 1, 1, 0 ],    # 2 two released blocks
	[ 1, 0, 1 ],    # 3 nested blocks: inner (c2, c3) raises, outer writes c3 again
	[ 1, 1, 1 ],    # 4 SAVEPOINT levels, RELEASE, ROLLBACK TO of a rewrite of c1
	[ 1, 1, 0 ],    # 5 key first written in a savepoint, released; c3 rolled back
	[ 1, 0, 0 ],    # 6 plain kv_incr, no subtransaction
	[ 0, 0, 1 ],    # 7 ROLLBACK TO removes c1 and c2; c3 in a released savepoint
	[ 3, 0, 0 ],    # 8 three exception blocks in a loop, each rewrites c1
);
my $BRANCHES = scalar @EFFECT;

my $script = <<'EOS';
\set n :n + 1
\set b (:n + :client_id) % 9
\if :b = 0
DO $$
BEGIN
	BEGIN
		PERFORM kv_incr('c1');
	EXCEPTION WHEN others THEN RAISE;
	END;
END $$;
\elif :b = 1
DO $$
BEGIN
	BEGIN
		PERFORM kv_incr('c1');
	EXCEPTION WHEN others THEN RAISE;
	END;
	BEGIN
		PERFORM kv_incr('c2');
		RAISE EXCEPTION 'roll back on purpose';
	EXCEPTION WHEN raise_exception THEN NULL;
	END;
END $$;
\elif :b = 2
DO $$
BEGIN
	BEGIN
		PERFORM kv_incr('c1');
	EXCEPTION WHEN others THEN RAISE;
	END;
	BEGIN
		PERFORM kv_incr('c2');
	EXCEPTION WHEN others THEN RAISE;
	END;
END $$;
\elif :b = 3
DO $$
BEGIN
	BEGIN
		PERFORM kv_incr('c1');
		BEGIN
			PERFORM kv_incr('c2');
			PERFORM kv_incr('c3');
			RAISE EXCEPTION 'roll back on purpose';
		EXCEPTION WHEN raise_exception THEN NULL;
		END;
		PERFORM kv_incr('c3');
	EXCEPTION WHEN others THEN RAISE;
	END;
END $$;
\elif :b = 4
BEGIN;
SELECT kv_incr('c1');
SAVEPOINT a;
SELECT kv_incr('c2');
SAVEPOINT b;
SELECT kv_incr('c3');
RELEASE b;
SAVEPOINT c;
SELECT kv_incr('c1');
ROLLBACK TO c;
RELEASE a;
COMMIT;
\elif :b = 5
BEGIN;
SAVEPOINT s1;
SELECT kv_incr('c1');
RELEASE s1;
SAVEPOINT s2;
SELECT kv_incr('c2');
SAVEPOINT s3;
SELECT kv_incr('c3');
ROLLBACK TO s3;
RELEASE s2;
COMMIT;
\elif :b = 6
SELECT kv_incr('c1');
\elif :b = 7
BEGIN;
SAVEPOINT s;
SELECT kv_incr('c1');
SELECT kv_incr('c2');
ROLLBACK TO s;
SAVEPOINT t;
SELECT kv_incr('c3');
RELEASE t;
COMMIT;
\else
DO $$
BEGIN
	FOR i IN 1..3 LOOP
		BEGIN
			PERFORM kv_incr('c1');
		EXCEPTION WHEN others THEN RAISE;
		END;
	END LOOP;
END $$;
\endif
EOS

my $script_file = "$PostgreSQL::Test::Utils::tmp_check/109_savepoint_race.sql";
open(my $fh, '>', $script_file) or die "open $script_file: $!";
print $fh $script;
close $fh;

# expected (c1, c2, c3) after $done transactions of client $cid (0-based
# pgbench client_id), whose counter n started at $start
sub expected_effect
{
	my ($cid, $start, $done, $sum) = @_;
	for my $n ($start + 1 .. $start + $done)
	{
		my $e = $EFFECT[ ($n + $cid) % $BRANCHES ];
		$sum->[$_] += $e->[$_] for 0 .. 2;
	}
	return;
}

my @expect = (0, 0, 0);
my $log_offset = 0;
my $total_lost = 0;
my $hung = 0;       # a client or the server did not answer
my $checked = 0;    # the counters were read, and are still known

for my $round (1 .. $ROUNDS)
{
	# round r starts each client at a different point of the branch cycle
	my $start = ($round - 1) * $TXNS;
	my @cmd = (
		'pgbench', '--no-vacuum',
		'--client' => $CLIENTS,
		'--jobs' => 2,
		'--transactions' => $TXNS,
		'--define' => "n=$start",
		'--host' => $node->host,
		'--port' => $node->port,
		'--file' => $script_file,
		'postgres');
	my ($out, $err) = ('', '');
	my $t0 = time;
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout($TIMEOUT));
	my $finished = eval { $h->finish; 1 };
	my $rc = $?;
	if (!$finished)
	{
		$h->kill_kill;
		diag("round $round: pgbench did not finish within $TIMEOUT s: $@");
		my ($sessions, $serr) = ('', '');
		$node->psql('postgres',
			q{SELECT pid, state, wait_event_type, wait_event, left(query, 40)
			  FROM pg_stat_activity WHERE backend_type = 'client backend'},
			stdout => \$sessions, stderr => \$serr, timeout => 10);
		diag("sessions:\n$sessions$serr");
		$hung = 1;
	}
	ok($finished, "round $round: all $CLIENTS clients finished within $TIMEOUT s");
	$say->("round $round: pgbench took " . (time - $t0) . " s");

	my $log = slurp_file($node->logfile);
	my $new = substr($log, $log_offset);
	$log_offset = length $log;
	my @orphans = $new =~ /(kvext removed an orphaned uncommitted write[^\n]*)/g;
	is(scalar @orphans, 0,
		"round $round: no orphaned write removed (" . scalar(@orphans) . ' warnings)')
	  or diag(join("\n", @orphans[ 0 .. ($#orphans < 4 ? $#orphans : 4) ]));
	my @crashes = $new =~ /^.*(?:TRAP:|PANIC:|terminated by signal).*$/mg;
	ok(!@crashes, "round $round: no assertion failure or backend crash in the server log")
	  or diag(join("\n", @crashes));

	my ($processed) = $out =~ /number of transactions actually processed: (\d+)/;
	my ($failed)    = $out =~ /number of failed transactions: (\d+)/;
	$processed //= -1;
	my $all = $processed == $CLIENTS * $TXNS;
	ok($all, "round $round: every transaction was acknowledged ($processed of " . ($CLIENTS * $TXNS) . ')')
	  or diag("pgbench exit status $rc\nstdout:\n$out\nstderr:\n$err");
	is($failed // 0, 0, "round $round: no failed transactions");
	unlike($err, qr/aborted|ERROR|FATAL|server closed/, "round $round: no client error")
	  or diag($err);

	# Which transactions were acknowledged is known only if all were: with
	# fewer the counters cannot be checked exactly, so stop here.
	if (!($finished && $all && !@crashes))
	{
		$checked = 0;
		last;
	}

	# all clients did the same deterministic work
	for my $cid (0 .. $CLIENTS - 1)
	{
		expected_effect($cid, $start, $TXNS, \@expect);
	}
	my ($got, $gerr) = ('', '');
	$node->psql('postgres',
		q{SELECT coalesce(kv_get('c1'), '0') || ',' || coalesce(kv_get('c2'), '0') || ',' || coalesce(kv_get('c3'), '0')},
		stdout => \$got, stderr => \$gerr, timeout => 30);
	my @got = split /,/, $got;
	if (@got != 3)
	{
		fail("round $round: read the counters ($gerr)");
		$hung = 1;
		last;
	}
	for my $k (0 .. 2)
	{
		my $key = 'c' . ($k + 1);
		is($got[$k], $expect[$k],
			"round $round: $key holds exactly the acknowledged increments ($expect[$k])");
	}

	# A lost increment leaves the counters known (they were read): go on
	# from there, so that every round reports its own losses.
	my $lost = 0;
	$lost += $expect[$_] - $got[$_] for 0 .. 2;
	$total_lost += $lost;
	@expect = @got;
	$checked = 1;
}
$say->("$total_lost increments lost in all") if $total_lost;

# the counters agree with their own log after a clean restart
if ($checked && !$hung)
{
	$node->restart;
	kv_wait_ready($node);
	is($node->safe_psql('postgres',
			q{SELECT kv_get('c1') || ',' || kv_get('c2') || ',' || kv_get('c3')}),
		join(',', @expect), 'after a restart the counters are unchanged');
	$node->stop;
}
else
{
	$node->stop('immediate');
}

done_testing();
