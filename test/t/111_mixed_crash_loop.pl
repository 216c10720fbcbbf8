# Issue 7, cases 2 and 4: a transaction that writes a table row and a key
# is all-or-nothing across any crash, for ever after.
#
# 1. A kill -9 loop: one client runs, per transaction,
#        BEGIN; INSERT INTO t VALUES (r, i); SELECT kv_put('k<r>_<i>', ..); COMMIT;
#    and records which i it began (with the transaction's xid) and which
#    were acknowledged.  Each round ends with kill -9 of the client's backend
#    (the postmaster then reinitializes shared memory, losing WAL that was
#    not yet written) or of the postmaster itself.  After recovery, for
#    every i of every round: row present <=> key present; every
#    acknowledged i present; nothing present that was not begun, and at
#    most the one transaction in flight present unacknowledged.  What a
#    round settled must never change afterwards, although later rounds
#    reuse the xids of transactions lost in a crash (PostgreSQL hands out
#    again the xids whose WAL never reached the disk).  Rounds alternate
#    PostgreSQL's synchronous_commit on and off (off: PostgreSQL commits
#    asynchronously; kvext must still keep row and key together).
#    kvext.synchronous_commit stays at its default.
#
# 2. Case 4, visibility before durability: with PostgreSQL's
#    synchronous_commit = off, a mixed transaction A (row + key 'src') is
#    held by gdb at its first XLogFlush after its commit record was
#    inserted (pg_xact already says committed, the commit record is still
#    only in WAL buffers; PostgreSQL's WAL writer is stopped meanwhile).
#    Another session copies kv_get('src') into a durable kv-only commit
#    kv_put('copy', ..).  A's backend is then killed with kill -9, which
#    loses A's commit record.  'copy' must never hold
#    A's value unless A's row and 'src' survived.  Skipped without gdb.

use strict;
use warnings;

use IPC::Run;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use KvextDurability;

# KVEXT_TEST_VERBOSE=1 shows the notes without prove -v
my $say = $ENV{KVEXT_TEST_VERBOSE} ? \&diag : \&note;

my $dir = $PostgreSQL::Test::Utils::tmp_check;
my $T0 = Time::HiRes::time();
sub elapsed { return sprintf('[%.1f s] ', Time::HiRes::time() - $T0); }

# ===========================================================================
# 1. kill -9 loop
# ===========================================================================

# fsync on: a kill lands during kvext's or PostgreSQL's fsync most of the
# time, i.e. between kvext's log record and PostgreSQL's commit record
my $node = kv_node('mixed_loop', "fsync = on\n");
$node->safe_psql('postgres', 'CREATE TABLE t (r int, i int, PRIMARY KEY (r, i))');

my $ROUNDS = 8;
my @CRASH  = qw(backend backend postmaster backend backend postmaster backend backend);
my @SYNC   = qw(on off on off off on off on);

# start the client of round $r; returns its pid and files
sub start_client
{
	my ($r, $sync) = @_;
	my $script = "$dir/loop_$r.sql";
	my $out    = "$dir/loop_$r.out";
	my $err    = "$dir/loop_$r.err";
	open(my $fh, '>', $script) or die "open $script: $!";
	print $fh "SET synchronous_commit = $sync;\n";
	for my $i (1 .. 50_000)
	{
		# one round trip per transaction (\; joins the statements into
		# one query), so that the backend spends most of its time
		# committing: a kill lands there more often
		print $fh "BEGIN \\; SELECT 'begin $i ' || txid_current() \\; "
		  . "INSERT INTO t VALUES ($r, $i) \\; "
		  . "SELECT kv_put('k${r}_$i', 'v$i') \\; COMMIT;\n\\echo ack $i\n";
	}
	close $fh;
	my $pid = spawn_psql($node, $script, $out, $err, "loop_$r");
	return { pid => $pid, out => $out, err => $err, round => $r };
}

sub wait_client
{
	my ($c) = @_;
	wait_or_kill($c->{pid}, time + 60);
	return;
}

# what the client printed: begun i => xid, acknowledged i, the last
# acknowledged i (0 if none) and its xid
sub client_log
{
	my ($c) = @_;
	my (%begun, %acked);
	for my $line (split /\n/, slurp_file($c->{out}))
	{
		$begun{$1} = $2 if $line =~ /^begin (\d+) (\d+)$/;
		$acked{$1} = 1  if $line =~ /^ack (\d+)$/;
	}
	my ($last) = sort { $b <=> $a } keys %acked;
	$last //= 0;
	return (\%begun, \%acked, $last, $begun{$last} // 0);
}

# present rows and keys of round $r: (\@rows, \@keys), sorted
sub present
{
	my ($r) = @_;
	my $out = $node->safe_psql('postgres', qq{
		SELECT (SELECT coalesce(string_agg(i::text, ',' ORDER BY i), '') FROM t WHERE r = $r)
		       || '|' ||
		       (SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '')
		        FROM (SELECT substr(key, length('k${r}_') + 1)::int AS n FROM kv_scan('k${r}_')) s)});
	my ($rows, $keys) = split /\|/, $out, -1;
	return ([ split /,/, $rows ], [ split /,/, $keys ]);
}

# sorted i of @$a not in @$b
sub minus
{
	my ($a, $b) = @_;
	my %b = map { $_ => 1 } @$b;
	return grep { !$b{$_} } @$a;
}

sub show
{
	my @l = @_;
	return @l <= 10 ? join(',', @l) : join(',', @l[ 0 .. 9 ]) . ',... (' . scalar(@l) . ')';
}

my %settled;    # round => "rows|keys" as settled after its crash

# every settled round still reads the same
sub check_settled
{
	my ($when) = @_;
	for my $r (sort { $a <=> $b } keys %settled)
	{
		my ($rows, $keys) = present($r);
		my $now = join(',', @$rows) . '|' . join(',', @$keys);
		next if $now eq $settled{$r};
		my ($srows, $skeys) = map { [ split /,/ ] } split /\|/, $settled{$r}, -1;
		fail("$when: round $r changed since it was settled");
		diag("round $r: keys now present that were not: " . show(minus($keys, $skeys))
			  . "; keys gone: " . show(minus($skeys, $keys))
			  . "; rows appeared: " . show(minus($rows, $srows))
			  . "; rows gone: " . show(minus($srows, $rows)));
		$settled{$r} = $now;    # report each change once
		return 0;
	}
	pass("$when: every earlier round reads as it was settled");
	return 1;
}

my $reused = 0;
my $log_offset = 0;
my $decided_aborted = 0;
for my $r (1 .. $ROUNDS)
{
	my $crash = $CRASH[ $r - 1 ];
	my $sync  = $SYNC[ $r - 1 ];
	my $what  = "round $r (kill -9 $crash, synchronous_commit $sync)";
	my $t0    = Time::HiRes::time();
	my $c     = start_client($r, $sync);

	# let it commit a few dozen transactions, then kill at a random moment
	$node->poll_query_until('postgres', "SELECT count(*) >= 20 FROM t WHERE r = $r")
	  or die "round $r: the client made no progress";
	usleep(int(rand(300_000)));
	if ($crash eq 'backend')
	{
		my $pid = $node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE application_name = 'loop_$r'");
		die "round $r: no backend for the client" unless $pid =~ /^\d+$/;
		kill 'KILL', $pid;
		wait_client($c);
	}
	else
	{
		kill9_postmaster($node);
		wait_client($c);
		$node->start;
	}
	kv_wait_ready($node) or die "round $r: the store did not become ready";

	my ($begun, $acked, $last, $lastxid) = client_log($c);
	my ($rows, $keys) = present($r);
	my @acked = sort { $a <=> $b } keys %$acked;
	$say->("$what: " . sprintf('%.1f s: ', Time::HiRes::time() - $t0) . scalar(@acked) . ' acknowledged, '
		  . scalar(@$rows) . ' rows, ' . scalar(@$keys) . ' keys');

	is(show(minus($keys, $rows)), '', "$what: no key without its row");
	is(show(minus($rows, $keys)), '', "$what: no row without its key");
	is(show(minus(\@acked, $keys)), '', "$what: every acknowledged transaction present");
	# one client: only i = last acknowledged + 1 can have been in flight
	my @extra = minus($rows, \@acked);
	ok(!grep({ $_ != $last + 1 } @extra),
		"$what: only the transaction in flight may be present unacknowledged (" . show(@extra) . ')');

	# PostgreSQL hands out again the xid of the transaction in flight when
	# its WAL was lost (not when it never got one)
	my $next = $node->safe_psql('postgres', 'SELECT txid_current()');
	if (!grep({ $_ == $last + 1 } @$rows) && $next <= $lastxid + 1)
	{
		$reused++;
		$say->("$what: last acknowledged xid $lastxid, next xid after the crash $next");
	}

	# the new log format decides an unfinished mixed transaction at
	# recovery: that is the window in which the old format resurrected keys
	my $log = slurp_file($node->logfile);
	my @decided = substr($log, $log_offset) =~ /(kvext recovery decided [^\n]*)/g;
	$log_offset = length $log;
	$say->("$what: $_") for @decided;
	$decided_aborted++ if grep { /[1-9]\d* aborted/ } @decided;

	check_settled("$what") if %settled;
	$settled{$r} = join(',', @$rows) . '|' . join(',', @$keys);
}
$say->(elapsed() . "$decided_aborted of $ROUNDS crashes left a logged, uncommitted mixed transaction to decide");
$say->("after $reused of $ROUNDS crashes the next xid was the lost one of the transaction in flight (or it got none)");

# more transactions (they reuse xids), then a clean restart and an
# immediate stop: nothing settled changes
$node->safe_psql('postgres', join("\n",
	map { "BEGIN; INSERT INTO t VALUES (0, $_); SELECT kv_put('k0_$_', 'v'); COMMIT;" } 1 .. 50));
$node->restart;
kv_wait_ready($node);
check_settled('after more transactions and a restart');
$say->(elapsed() . 'restarted');
$node->safe_psql('postgres', join("\n",
	map { "BEGIN; INSERT INTO t VALUES (0, $_); SELECT kv_put('k0_$_', 'v'); COMMIT;" } 51 .. 100));
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
check_settled('after more transactions and an immediate stop');
is($node->safe_psql('postgres', q{SELECT count(*) FROM t WHERE r = 0}) . ' '
	  . $node->safe_psql('postgres', q{SELECT count(*) FROM kv_scan('k0_')}),
	'100 100', 'the later transactions are all there, rows and keys');
$node->stop;

# ===========================================================================
# 2. case 4: a key of a mixed transaction read before its commit is durable
# ===========================================================================
SKIP:
{
	my $node4 = kv_node('mixed_visibility', qq(
fsync = on
autovacuum = off
wal_writer_delay = '10s'
));
	$node4->safe_psql('postgres', 'CREATE TABLE t4 (i int); CHECKPOINT;');

	my $a = $node4->background_psql('postgres');
	my $apid = $a->query_safe('SELECT pg_backend_pid()');
	chomp $apid;

	# hold A at its first XLogFlush after its commit record was inserted:
	# RecordTransactionCommit sets XactLastCommitEnd and clears
	# XactLastRecEnd (no debug symbols needed)
	my $g = gdb_hold($apid, 'XLogFlush if *(long *) &XactLastRecEnd == 0 && *(long *) &XactLastCommitEnd != 0');
	if (!$g)
	{
		$a->quit;
		$node4->stop('immediate');
		skip 'gdb is missing or cannot hold a backend here', 4;
	}

	# PostgreSQL's WAL writer would write A's commit record within
	# wal_writer_delay: stop it until the crash
	my $walwriter = $node4->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'});
	kill 'STOP', $walwriter if $walwriter =~ /^\d+$/;

	# A: row + key, PostgreSQL commit asynchronous.  Its COMMIT blocks
	# while gdb holds it.
	$a->{stdin} .= "SET synchronous_commit = off;\nBEGIN;\nINSERT INTO t4 VALUES (1);\n"
	  . "SELECT kv_put('src', 'v1');\nCOMMIT;\n";
	$a->{run}->pump_nb;
	my $held = gdb_wait_hit($g);
	if (!$held)
	{
		kill 'CONT', $walwriter if $walwriter =~ /^\d+$/;
		gdb_release($g);
		$a->quit;
		$node4->stop('immediate');
		skip 'A never reached XLogFlush after its commit record', 4;
	}

	# B: what does a reader see now, and copy it into a durable kv-only commit
	my $seen = $node4->safe_psql('postgres',
		q{SELECT coalesce(kv_get('src'), 'none') || ' ' || (SELECT count(*) FROM t4)}, timeout => 30);
	$say->(elapsed() . "while A is held after its commit record: src and row count read as '$seen'");
	$node4->safe_psql('postgres', q{SELECT kv_put('copy', coalesce(kv_get('src'), 'none'))},
		timeout => 30);

	# crash: A's commit record is still only in WAL buffers
	my $pos4 = -s $node4->logfile;
	kill 'KILL', $apid, ($walwriter =~ /^\d+$/ ? $walwriter : ());
	gdb_release($g);
	eval { $a->quit; 1 };
	kv_ready_after_crash($node4, $pos4) or die 'the store did not become ready';

	my $state = sub {
		return $node4->safe_psql('postgres',
			q{SELECT (SELECT count(*) FROM t4 WHERE i = 1) || ' ' || coalesce(kv_get('src'), 'none')
			         || ' ' || coalesce(kv_get('copy'), 'absent')});
	};
	my $after = $state->();
	$say->(elapsed() . "after the crash: row, src, copy = $after");
	my ($row, $src, $copy) = split / /, $after;
	isnt($copy, 'absent', 'case 4: the acknowledged copy survived');
	ok(($row eq '1') == ($src eq 'v1'), "case 4: A's row and key survive or vanish together ($after)");
	ok($copy ne 'v1' || ($row eq '1' && $src eq 'v1'),
		"case 4: the copy of A's key does not outlive A ($after)");

	# the outcome does not change after more transactions (which, before
	# the fix, were handed out A's xid again) and another crash
	$node4->safe_psql('postgres', join("\n",
		map { "BEGIN; INSERT INTO t4 VALUES (100 + $_); SELECT kv_put('o$_', 'x'); COMMIT;" } 1 .. 20));
	$node4->stop('immediate');
	$node4->start;
	kv_wait_ready($node4);
	is($state->(), $after, 'case 4: the outcome is unchanged after more transactions and a crash');
	$say->(elapsed() . 'case 4 done');
	$node4->stop;
}

done_testing();
