# Issue 7, cases 1-3: the outcome of a kv transaction is decided by kvext's
# log, by position, never by an xid that PostgreSQL hands out again after a
# crash (the xid of a transaction whose WAL never reached disk is reused).
#
#  1. an acknowledged kv-only commit survives the reuse of its xid by a
#     SERIALIZABLE transaction that writes a key and then fails at COMMIT
#     with a real serialization failure (40001, after kvext's pre-commit);
#  2. a transaction that never committed (mixed: crash before PostgreSQL's
#     commit record; kv-only: crash after PostgreSQL's unflushed commit
#     record, before kvext's COMMIT marker) stays absent when its xid is
#     handed out again to a transaction that commits; a mixed transaction
#     whose PostgreSQL commit is durable is resolved once and stays;
#  3. a client that got an ERROR never finds its write after a crash, even
#     when the server crashes right after sending that ERROR; a commit whose
#     marker is durable counts although its client never got the success.
#
# PostgreSQL commits a transaction that wrote no WAL of its own (kv-only)
# asynchronously: its commit record waits for the WAL writer, here every
# 10 s, so an immediate stop or a PANIC right after it makes PostgreSQL hand
# the same xid out again.  txid_current() shows the xid before and after.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $node = kv_node('xid_reuse', qq(
fsync = on
autovacuum = off
wal_writer_delay = '10s'
));

$node->safe_psql('postgres', q{
CREATE TABLE skew (id int PRIMARY KEY, v int NOT NULL);
CREATE UNLOGGED TABLE skew_u (id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE t (tag text NOT NULL);
});

# ---------------------------------------------------------------------------
# helpers

sub restart_immediate
{
	$node->stop('immediate');
	$node->start;
	kv_wait_ready($node);
}

# After a statement that may have PANICked the server: if it did, wait until
# the postmaster has noticed and reinitialized (so that the next connection
# cannot reach the dying server), then until the store has recovered.
sub wait_after_crash
{
	my ($logpos) = @_;
	if (slurp_file($node->logfile, $logpos) =~ /PANIC:/)
	{
		my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
		while (slurp_file($node->logfile, $logpos) !~ /all server processes terminated; reinitializing/)
		{
			die 'no crash-restart after the PANIC' if time > $deadline;
			select(undef, undef, undef, 0.05);
		}
	}
	return kv_wait_ready($node);
}

# the first line of a result (txid_current() comes first in the scripts)
sub first_line
{
	my ($out) = @_;
	return (split /\n/, $out // '')[0] // '';
}

sub key_value
{
	my ($key) = @_;
	return kv_scalar($node, "SELECT coalesce(kv_get('$key'), '<absent>')");
}

sub rows
{
	my ($tag) = @_;
	return kv_scalar($node, "SELECT count(*) FROM t WHERE tag = '$tag'");
}

# a psql session fed statement by statement (psql -f - on a pipe); it keeps
# going after errors and reports the server closing the connection
sub session_open
{
	my $s = { in => '', out => '', err => '', n => 0 };
	$s->{timer} = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
	$s->{run} = IPC::Run::start(
		[
			$node->installed_command('psql'), '-XAtq',
			'-v', 'VERBOSITY=verbose',
			'-d', $node->connstr('postgres'),
			'-f', '-'
		],
		'<', \$s->{in}, '>', \$s->{out}, '2>', \$s->{err}, $s->{timer});
	return $s;
}

# run sql in the session; returns out, err, sqlstate, and done (psql came
# back for more input: false once the connection is gone)
sub session_run
{
	my ($s, $sql) = @_;
	my $n = ++$s->{n};
	$s->{out} = '';
	$s->{err} = '';
	$s->{in} .= "$sql\n\\echo __done_$n\n";
	$s->{timer}->start($PostgreSQL::Test::Utils::timeout_default);
	while ($s->{out} !~ /__done_$n\n/)
	{
		last if $s->{timer}->is_expired;
		last unless $s->{run}->pumpable;
		eval { $s->{run}->pump; 1 } or last;
	}
	my $done = ($s->{out} =~ s/__done_$n\n//) ? 1 : 0;
	die "psql session: no answer to \"$sql\" within the timeout"
	  if !$done && $s->{timer}->is_expired;
	my $out = $s->{out};
	chomp $out;
	my ($sqlstate) = $s->{err} =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return { done => $done, out => $out, err => $s->{err}, sqlstate => $sqlstate // '' };
}

sub session_close
{
	my ($s) = @_;
	$s->{in} .= "\\q\n" if $s->{run}->pumpable;
	eval { $s->{run}->finish; 1 };
	return;
}

# Write skew between two SERIALIZABLE transactions over the rows 1 and 2 of
# $table.  $s1 is already in its SERIALIZABLE transaction; it reads row 2,
# writes $key, and updates row 1; the other one ($s2, new) reads row 1,
# updates row 2, writes $key2 and commits first.  That commit finds the
# dangerous structure s1 -rw-> s2 -rw-> s1 and dooms s1 (the pivot), so s1
# fails at COMMIT (PreCommit_CheckForSerializationFailure, which runs after
# the pre-commit callbacks, so after kvext's) with 40001 "Canceled on
# identification as a pivot, during commit attempt".  Returns the result of
# s1's COMMIT and of s2's.
sub write_skew
{
	my ($s1, $table, $key, $key2) = @_;
	my $s2 = session_open();
	my @steps = (
		[ $s1, "SELECT v FROM $table WHERE id = 2;" ],
		[ $s1, "SELECT kv_put('$key', 'from the doomed transaction');" ],
		[ $s2, 'BEGIN ISOLATION LEVEL SERIALIZABLE;' ],
		[ $s2, "SELECT v FROM $table WHERE id = 1;" ],
		[ $s1, "UPDATE $table SET v = v + 1 WHERE id = 1;" ],
		[ $s2, "UPDATE $table SET v = v + 1 WHERE id = 2;" ],
		[ $s2, "SELECT kv_put('$key2', 'committed');" ]);
	for my $st (@steps)
	{
		my $r = session_run(@$st);
		die "write skew step \"$st->[1]\" failed: $r->{err}" if $r->{err} =~ /ERROR|FATAL|PANIC/;
	}
	my $c2 = session_run($s2, 'COMMIT;');
	session_close($s2);
	my $c1 = session_run($s1, 'COMMIT;');
	return ($c1, $c2);
}

sub skew_rows
{
	my ($table) = @_;
	# unlogged tables are emptied by crash recovery
	$node->safe_psql('postgres',
		"INSERT INTO $table VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING");
}

# ---------------------------------------------------------------------------
# 1. an acknowledged kv-only commit survives the reuse of its xid by a
# transaction that writes a key and fails at COMMIT with 40001.  With a
# logged table the failing transaction is mixed; with an unlogged one it
# writes no PostgreSQL WAL, like a kv-only transaction.
for my $table (qw(skew skew_u))
{
	my $acked = "c1_${table}_acked";
	my $doomed = "c1_${table}_doomed";
	my $other = "c1_${table}_other";
	skew_rows($table);

	# The WAL writer may flush the async commit record between the commit
	# and the stop (once every 10 s); then the xid is not reused: try again.
	my ($x, $y, $value, $s1);
	for my $try (1 .. 3)
	{
		$value = "acknowledged $try";
		# a commit that writes a table flushes PostgreSQL's WAL: every xid
		# so far is durable, the next one is the first to be handed out again
		$node->safe_psql('postgres', "INSERT INTO t VALUES ('flush')");
		# Crash recovery empties an unlogged table, and refilling it takes
		# an xid: leave one unflushed xid before the acknowledged one for it.
		my $x0 = $table eq 'skew_u' ? first_line(kv_scalar($node, 'SELECT txid_current()')) : '';
		$x = first_line(kv_scalar($node,
				"BEGIN; SELECT txid_current(); SELECT kv_put('$acked', '$value'); COMMIT;"));
		restart_immediate();
		if ($table eq 'skew_u')
		{
			my $xr = first_line(kv_scalar($node,
					'BEGIN; SELECT txid_current(); INSERT INTO skew_u VALUES (1, 0), (2, 0); COMMIT;'));
			note("case 1 (skew_u): rows refilled by xid $xr (placeholder xid was $x0)");
		}
		$s1 = session_open();
		session_run($s1, 'BEGIN ISOLATION LEVEL SERIALIZABLE;');
		$y = session_run($s1, 'SELECT txid_current();')->{out};
		last if $y eq $x;
		note("case 1 ($table): try $try: the acknowledged commit had xid $x, the next transaction got $y; again");
		session_run($s1, 'ROLLBACK;');
		session_close($s1);
	}
	is($y, $x,
		"case 1 ($table): after an immediate stop PostgreSQL hands out xid $x of the acknowledged kv-only commit again"
	);
	is(key_value($acked), $value, "case 1 ($table): the acknowledged key is there after the stop");

	my ($c1, $c2) = write_skew($s1, $table, $doomed, $other);
	session_close($s1);
	is($c2->{err}, '', "case 1 ($table): the other serializable transaction commits");
	is($c1->{sqlstate}, '40001',
		"case 1 ($table): the transaction holding xid $x fails at COMMIT with 40001");
	like($c1->{err}, qr/could not serialize access.*during commit attempt/s,
		"case 1 ($table): ... as a serialization failure during the commit attempt");
	is(key_value($doomed), '<absent>', "case 1 ($table): the failed transaction's key is not visible");
	is(key_value($acked), $value, "case 1 ($table): the acknowledged key is still visible");

	restart_immediate();
	is(key_value($acked), $value,
		"case 1 ($table): the acknowledged key survives a restart after xid $x was reused and aborted");
	is(key_value($doomed), '<absent>', "case 1 ($table): the failed transaction's key stays absent");
	is(key_value($other), 'committed', "case 1 ($table): the other transaction's key is there");
	is(kv_scalar($node, 'SELECT v FROM skew WHERE id = 2'), '1',
		"case 1 ($table): ... and its row")
	  if $table eq 'skew';
}

# ---------------------------------------------------------------------------
# 2. transactions that never committed stay absent when their xid is reused

# 2a. mixed, crash after kvext's TXN record (flushed), before PostgreSQL's
# commit record: the xid was made durable in PostgreSQL's WAL before the TXN
# record, so it is never handed out again, and the record is resolved once.
{
	my $logpos = -s $node->logfile;
	my $r = kv_call($node, q{
SET kvext.failpoint = 'wal-after-fsync';
BEGIN;
SELECT txid_current();
INSERT INTO t VALUES ('c2_mixed');
SELECT kv_put('c2_mixed', 'never committed');
COMMIT;});
	my $x = first_line($r->{stdout});
	ok(!$r->{ok} && $x =~ /^\d+$/, "case 2 (mixed, wal-after-fsync): xid $x, the commit did not return success");
	ok(wait_after_crash($logpos), 'case 2 (mixed, wal-after-fsync): store ready after the crash-restart');
	like(slurp_file($node->logfile, $logpos), qr/PANIC:  kvext failpoint "wal-after-fsync" reached/,
		'case 2 (mixed, wal-after-fsync): the server PANICked at the failpoint');
	is(rows('c2_mixed'), '0', 'case 2 (mixed, wal-after-fsync): no row');
	is(key_value('c2_mixed'), '<absent>', 'case 2 (mixed, wal-after-fsync): no key');

	# unrelated transactions that commit: mixed, kv-only, table-only
	my @xids;
	push @xids, first_line(kv_scalar($node, q{
BEGIN; SELECT txid_current(); INSERT INTO t VALUES ('c2_mixed_next'); SELECT kv_put('c2_mixed_next', 'm'); COMMIT;}));
	push @xids, first_line(kv_scalar($node, q{
BEGIN; SELECT txid_current(); SELECT kv_put('c2_mixed_next_kv', 'k'); COMMIT;}));
	push @xids, first_line(kv_scalar($node, q{
BEGIN; SELECT txid_current(); INSERT INTO t VALUES ('c2_mixed_next_tab'); COMMIT;}));
	note("case 2 (mixed, wal-after-fsync): crashed xid $x, next xids @xids");
	ok(!grep({ $_ eq $x } @xids),
		"case 2 (mixed, wal-after-fsync): xid $x was durable before the TXN record: not handed out again (next: @xids)"
	);

	restart_immediate();
	is(rows('c2_mixed'), '0', 'case 2 (mixed, wal-after-fsync): still no row after another restart');
	is(key_value('c2_mixed'), '<absent>',
		'case 2 (mixed, wal-after-fsync): still no key after later commits and another restart');
	is(rows('c2_mixed_next') . rows('c2_mixed_next_tab') . key_value('c2_mixed_next') . key_value('c2_mixed_next_kv'),
		'11mk', 'case 2 (mixed, wal-after-fsync): the later transactions are all there');
}

# 2b. kv-only, crash after PostgreSQL's commit record (not flushed: it wrote
# no WAL of its own), before kvext's COMMIT marker: aborted; its xid goes to
# an unrelated mixed transaction that commits.
{
	my $logpos = -s $node->logfile;
	my $r = kv_call($node, q{
SET kvext.failpoint = 'commit-before-marker';
BEGIN;
SELECT txid_current();
SELECT kv_put('c2_kvonly', 'never committed');
COMMIT;});
	my $x = first_line($r->{stdout});
	ok(!$r->{ok} && $x =~ /^\d+$/, "case 2 (kv-only, commit-before-marker): xid $x, the commit did not return success");
	ok(wait_after_crash($logpos), 'case 2 (kv-only, commit-before-marker): store ready after the crash-restart');
	like(slurp_file($node->logfile, $logpos), qr/PANIC:  kvext failpoint "commit-before-marker" reached/,
		'case 2 (kv-only, commit-before-marker): the server PANICked at the failpoint');
	is(key_value('c2_kvonly'), '<absent>',
		'case 2 (kv-only, commit-before-marker): no key (TXN record without COMMIT marker)');

	my $y = first_line(kv_scalar($node, q{
BEGIN; SELECT txid_current(); INSERT INTO t VALUES ('c2_kvonly_reuser'); SELECT kv_put('c2_kvonly_reuser', 'r'); COMMIT;}));
	is($y, $x, "case 2 (kv-only, commit-before-marker): PostgreSQL hands out xid $x again, to a mixed transaction that commits");

	restart_immediate();
	is(key_value('c2_kvonly'), '<absent>',
		"case 2 (kv-only, commit-before-marker): the crashed key stays absent after xid $x committed elsewhere and a restart");
	is(rows('c2_kvonly_reuser') . key_value('c2_kvonly_reuser'), '1r',
		'case 2 (kv-only, commit-before-marker): the transaction that reused the xid has its row and key');
}

# 2c. mixed, crash after PostgreSQL's commit record (durable: it wrote WAL)
# before kvext's COMMIT marker: committed, resolved once, and it stays.
{
	my $logpos = -s $node->logfile;
	my $r = kv_call($node, q{
SET kvext.failpoint = 'commit-before-marker';
BEGIN;
SELECT txid_current();
INSERT INTO t VALUES ('c2_mixed_committed');
SELECT kv_put('c2_mixed_committed', 'committed');
COMMIT;});
	my $x = first_line($r->{stdout});
	ok(!$r->{ok} && $x =~ /^\d+$/, "case 2 (mixed, commit-before-marker): xid $x, the commit did not return success");
	ok(wait_after_crash($logpos), 'case 2 (mixed, commit-before-marker): store ready after the crash-restart');
	like(slurp_file($node->logfile, $logpos), qr/PANIC:  kvext failpoint "commit-before-marker" reached/,
		'case 2 (mixed, commit-before-marker): the server PANICked at the failpoint');
	is(rows('c2_mixed_committed') . key_value('c2_mixed_committed'), '1committed',
		'case 2 (mixed, commit-before-marker): PostgreSQL committed it: row and key both present');

	my @xids;
	push @xids, first_line(kv_scalar($node, qq{
BEGIN; SELECT txid_current(); INSERT INTO t VALUES ('c2_mc_next_$_'); SELECT kv_put('c2_mc_next_$_', 'n'); COMMIT;}))
	  for 1 .. 2;
	push @xids, first_line(kv_scalar($node, q{
BEGIN; SELECT txid_current(); SELECT kv_put('c2_mc_next_kv', 'k'); COMMIT;}));
	note("case 2 (mixed, commit-before-marker): xid $x, next xids @xids");
	ok(!grep({ $_ eq $x } @xids), "case 2 (mixed, commit-before-marker): xid $x is not handed out again");

	restart_immediate();
	is(rows('c2_mixed_committed') . key_value('c2_mixed_committed'), '1committed',
		'case 2 (mixed, commit-before-marker): row and key still present after later commits and another restart');
	restart_immediate();
	is(key_value('c2_mixed_committed'), 'committed',
		'case 2 (mixed, commit-before-marker): and after one more');
}

# ---------------------------------------------------------------------------
# 3. a client that got an ERROR never finds its write after a crash

# 3a. a real serialization failure after kvext's pre-commit, the ERROR sent
# to the client, then a PANIC in kvext's abort callback (abort-after-error):
# PostgreSQL sends the ERROR before the abort callbacks run.
for my $table (qw(skew skew_u))
{
	my $key = "c3_${table}_error";
	my $other = "c3_${table}_other";
	skew_rows($table);
	my $logpos = -s $node->logfile;
	my $s1 = session_open();
	session_run($s1, q{SET kvext.failpoint = 'abort-after-error';});
	session_run($s1, 'BEGIN ISOLATION LEVEL SERIALIZABLE;');
	my ($c1, $c2) = write_skew($s1, $table, $key, $other);
	session_close($s1);
	is($c2->{err}, '', "case 3 ($table, abort-after-error): the other serializable transaction commits");
	is($c1->{sqlstate}, '40001', "case 3 ($table, abort-after-error): the client got ERROR 40001 at COMMIT");
	like($c1->{err}, qr/during commit attempt/, "case 3 ($table, abort-after-error): ... raised during the commit attempt");
	ok(wait_after_crash($logpos), "case 3 ($table, abort-after-error): store ready after the crash-restart");
	like(slurp_file($node->logfile, $logpos), qr/PANIC:  kvext failpoint "abort-after-error" reached/,
		"case 3 ($table, abort-after-error): the server PANICked in the abort callback");
	is(key_value($key), '<absent>', "case 3 ($table, abort-after-error): the failed transaction's key is absent");
	is(key_value($other), 'committed', "case 3 ($table, abort-after-error): the committed one's key is there");
	restart_immediate();
	is(key_value($key), '<absent>', "case 3 ($table, abort-after-error): still absent after another restart");
}

# 3b. an ERROR after the TXN record was written and flushed, then an
# immediate stop: mixed and kv-only.  The kv-only one's xid is the first
# not durable in PostgreSQL's WAL: 3c's transaction gets it again.
my $x_failed;
{
	my $r = kv_call($node, q{
SET kvext.failpoint = 'wal-after-fsync:error';
BEGIN;
INSERT INTO t VALUES ('c3_fsync_error_mixed');
SELECT kv_put('c3_fsync_error_mixed', 'x');
COMMIT;});
	is($r->{sqlstate}, 'XX000', 'case 3 (mixed, wal-after-fsync:error): the client got the ERROR');
	$node->safe_psql('postgres', "INSERT INTO t VALUES ('flush')");
	$r = kv_call($node, q{
SET kvext.failpoint = 'wal-after-fsync:error';
BEGIN;
SELECT txid_current();
SELECT kv_put('c3_fsync_error_kv', 'x');
COMMIT;});
	$x_failed = first_line($r->{stdout});
	is($r->{sqlstate}, 'XX000', "case 3 (kv-only, wal-after-fsync:error): xid $x_failed, the client got the ERROR");
	restart_immediate();
	is(key_value('c3_fsync_error_kv'), '<absent>', 'case 3 (kv-only, wal-after-fsync:error): absent after an immediate stop');
	is(rows('c3_fsync_error_mixed') . key_value('c3_fsync_error_mixed'), '0<absent>',
		'case 3 (mixed, wal-after-fsync:error): no row, no key after an immediate stop');
}

# 3c. positive control: the COMMIT marker is durable, then a PANIC before
# the keys are applied: the client got no success, the log decided commit.
# Its xid is that of 3b's failed kv-only transaction (whose records come
# earlier in the log), and after the PANIC it is handed out once more, to a
# kv transaction that fails after its TXN record: neither failure may take
# the commit back.
{
	my $logpos = -s $node->logfile;
	my $r = kv_call($node, q{
SET kvext.synchronous_commit = local;
SET kvext.failpoint = 'commit-after-marker';
BEGIN;
SELECT txid_current();
SELECT kv_put('c3_marker', 'decided by the log');
COMMIT;});
	my $x = first_line($r->{stdout});
	# (unless the WAL writer flushed that xid's abort record between the
	# ERROR and the stop, once every 10 s)
	if ($x eq $x_failed)
	{
		pass("case 3 (commit-after-marker): it got xid $x_failed again, that of the kv-only transaction that failed in 3b");
	}
	else
	{
		note("case 3 (commit-after-marker): xid $x, not $x_failed again: PostgreSQL flushed that one before the stop");
	}
	ok(!$r->{ok} && $x =~ /^\d+$/, "case 3 (commit-after-marker): xid $x, the client got no success");
	ok(wait_after_crash($logpos), 'case 3 (commit-after-marker): store ready after the crash-restart');
	like(slurp_file($node->logfile, $logpos), qr/PANIC:  kvext failpoint "commit-after-marker" reached/,
		'case 3 (commit-after-marker): the server PANICked at the failpoint');
	is(key_value('c3_marker'), 'decided by the log', 'case 3 (commit-after-marker): the key is present');

	$r = kv_call($node, q{
SET kvext.failpoint = 'wal-after-fsync:error';
BEGIN;
SELECT txid_current();
SELECT kv_put('c3_marker_reuser', 'x');
COMMIT;});
	# (its commit record was not flushed, unless the WAL writer did it
	# while the marker was being flushed)
	my $y = first_line($r->{stdout});
	if ($y eq $x)
	{
		pass("case 3 (commit-after-marker): xid $x is handed out again ...");
	}
	else
	{
		note("case 3 (commit-after-marker): xid $x was flushed before the PANIC, the next one got $y");
	}
	is($r->{sqlstate}, 'XX000', 'case 3 (commit-after-marker): ... to a kv transaction that fails after its TXN record');
	restart_immediate();
	is(key_value('c3_marker'), 'decided by the log',
		'case 3 (commit-after-marker): the key is still present after a restart');
	is(key_value('c3_marker_reuser'), '<absent>', 'case 3 (commit-after-marker): the failed one is absent');
}

$node->stop;
done_testing();
