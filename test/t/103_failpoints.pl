# kvext failpoints: crash (PANIC) or fail (ERROR) at each named point of
# the commit path and of the checkpointer, then check that acknowledged
# writes are present, that nothing is half applied, and that a transaction
# writing both a table and kvext keys is all-or-nothing.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use KvextDurability;

my $node = kv_node('failpoints', "kvext.wal_segment_size = '64kB'\nfsync = on\n");

# every acknowledged write so far: key => value
my %acked;

sub ack_writes
{
	my ($prefix, $n) = @_;
	# one transaction per key
	$node->safe_psql('postgres',
		join("\n", map { "SELECT kv_put('${prefix}_$_', 'v$_');" } 1 .. $n));
	$acked{"${prefix}_$_"} = "v$_" for 1 .. $n;
}

sub check_acked
{
	my ($what) = @_;
	my @keys = sort keys %acked;
	my $bad = kv_scalar($node,
		'SELECT string_agg(k, \',\') FROM unnest(ARRAY['
		  . join(',', map { "'$_'" } @keys)
		  . '], ARRAY['
		  . join(',', map { "'$acked{$_}'" } @keys)
		  . ']) AS t(k, v) WHERE kv_get(k) IS DISTINCT FROM v');
	is($bad, '', "$what: all " . scalar(@keys) . ' acknowledged writes present');
}

sub count_prefix
{
	my ($prefix) = @_;
	return kv_scalar($node, "SELECT count(*) FROM kv_scan('$prefix')");
}

# ---------------------------------------------------------------------------
# commit path, PANIC
for my $fp (qw(wal-before-write wal-after-write wal-after-fsync))
{
	(my $tag = $fp) =~ s/-/_/g;
	ack_writes("ack_$tag", 20);
	$node->safe_psql('postgres', "CREATE TABLE t_$tag (i int)");

	# a kv-only transaction writing 10 keys
	my $logpos = -s $node->logfile;
	my $r = kv_call($node, qq{
SET kvext.failpoint = '$fp';
BEGIN;
SELECT kv_put('crash_${tag}_' || i, 'x' || i) FROM generate_series(1, 10) i;
SELECT kv_incr('ack_${tag}_1_counter');
COMMIT;});
	ok(!$r->{ok}, "$fp: the commit did not return success");
	ok(kv_ready_after_crash($node, $logpos), "$fp: store ready after the crash-restart");
	like(slurp_file($node->logfile, $logpos), qr/PANIC:  kvext failpoint "$fp" reached/,
		"$fp: the server PANICked at the failpoint");
	check_acked("$fp (kv only)");
	my $n = count_prefix("crash_${tag}_");
	ok($n == 0 || $n == 10, "$fp: the crashed transaction is all or nothing ($n of 10 keys)");
	my $ctr = kv_scalar($node, "SELECT coalesce(kv_get('ack_${tag}_1_counter'), '0')");
	is($ctr, ($n == 10 ? '1' : '0'), "$fp: ... including its kv_incr");
	is($n, 0, "$fp: nothing of a transaction whose log record was never written")
	  if $fp eq 'wal-before-write';
	if ($n == 10)
	{
		is(kv_scalar($node, "SELECT kv_get('crash_${tag}_7')"), 'x7', "$fp: values intact");
	}

	# a mixed transaction: a table row and a key
	$logpos = -s $node->logfile;
	$r = kv_call($node, qq{
SET kvext.failpoint = '$fp';
BEGIN;
INSERT INTO t_$tag VALUES (1);
SELECT kv_put('mixed_$tag', '1');
SELECT kv_put('mixed_${tag}_2', '2');
COMMIT;});
	ok(!$r->{ok}, "$fp: the mixed commit did not return success");
	ok(kv_ready_after_crash($node, $logpos), "$fp: store ready after the second crash-restart");
	like(slurp_file($node->logfile, $logpos), qr/PANIC:  kvext failpoint "$fp" reached/,
		"$fp: PANIC in the mixed transaction");
	my $row = kv_scalar($node, "SELECT count(*) FROM t_$tag");
	my $key = kv_scalar($node,
		"SELECT kv_exists('mixed_$tag')::int + kv_exists('mixed_${tag}_2')::int");
	is($key, $row * 2, "$fp: mixed transaction is all or nothing (row $row, keys $key)");
	# the crash came before PostgreSQL wrote its commit record
	is($row, 0, "$fp: mixed transaction: no row (PostgreSQL never committed it)");
	is($key, 0, "$fp: mixed transaction: no key either");
	check_acked("$fp (mixed)");

	# without the failpoint the same works and survives a crash
	$node->safe_psql('postgres', qq{
BEGIN;
INSERT INTO t_$tag VALUES (2);
SELECT kv_put('mixed_ok_$tag', 'v1');
COMMIT;});
	$acked{"mixed_ok_$tag"} = 'v1';
	$node->stop('immediate');
	$node->start;
	is(kv_scalar($node, "SELECT count(*) FROM t_$tag WHERE i = 2"), '1', "$fp: a normal mixed commit keeps its row");
	check_acked("$fp: after an immediate stop");
}

# ---------------------------------------------------------------------------
# commit path, ERROR: the transaction fails, nothing of it is visible
for my $fp (qw(wal-before-write wal-after-write wal-after-fsync))
{
	(my $tag = $fp) =~ s/-/_/g;
	$node->safe_psql('postgres', "CREATE TABLE e_$tag (i int)");
	my $r = kv_call($node, qq{
SET kvext.failpoint = '$fp:error';
BEGIN;
SELECT kv_put('err_${tag}_' || i, 'x') FROM generate_series(1, 10) i;
SELECT kv_put('ack_wal_before_write_1', 'overwritten');
COMMIT;});
	ok(!$r->{ok}, "$fp:error: COMMIT fails");
	like($r->{stderr}, qr/kvext failpoint "$fp" reached/, "$fp:error: with the failpoint's error");
	is($r->{sqlstate}, 'XX000', "$fp:error: SQLSTATE XX000");
	is(count_prefix("err_${tag}_"), 0, "$fp:error: none of the transaction's keys is visible");
	# its session is gone: no transaction is in flight any more
	my $st = kv_status($node);
	is($st->{apply}, $st->{insert}, "$fp:error: apply_lsn caught up with insert_lsn (nothing left in flight)");
	is(kv_scalar($node, "SELECT kv_get('ack_wal_before_write_1')"), 'v1',
		"$fp:error: the key it overwrote keeps its old value");

	$r = kv_call($node, qq{
SET kvext.failpoint = '$fp:error';
BEGIN;
INSERT INTO e_$tag VALUES (1);
SELECT kv_put('err_mixed_$tag', '1');
COMMIT;});
	ok(!$r->{ok}, "$fp:error: mixed COMMIT fails");
	is(kv_scalar($node, "SELECT count(*) FROM e_$tag"), '0', "$fp:error: mixed: no row");
	is(kv_scalar($node, "SELECT kv_exists('err_mixed_$tag')"), 'f', "$fp:error: mixed: no key");

	# the same session works again once the failpoint is cleared
	$r = kv_call($node, qq{
SET kvext.failpoint = '$fp:error';
SELECT kv_put('err_first_$tag', 'x');
SET kvext.failpoint = '';
SELECT kv_put('err_after_$tag', 'ok');}, on_error_stop => 0);
	$acked{"err_after_$tag"} = 'ok';
	is(kv_scalar($node, "SELECT kv_exists('err_first_$tag')::text || kv_get('err_after_$tag')"),
		'falseok', "$fp:error: the session writes again after the failpoint is cleared");
}
# a crash now must not resurrect the failed transactions: those that failed
# after their log record was written are cancelled by an ABORT record
$node->stop('immediate');
$node->start;
is(kv_scalar($node, q{SELECT string_agg(key, ',' ORDER BY key) FROM kv_scan('err_')}),
	'err_after_wal_after_fsync,err_after_wal_after_write,err_after_wal_before_write',
	'after a crash, no write of a failed transaction came back');
is(kv_scalar($node, q{SELECT kv_get('ack_wal_before_write_1')}), 'v1', 'overwritten value not resurrected');
check_acked('after the :error failpoints and a crash');
# re-establish the overwritten key, so that a failure above does not make
# every later check fail too
$node->safe_psql('postgres', q{SELECT kv_put('ack_wal_before_write_1', 'v1')});

# ---------------------------------------------------------------------------
# checkpointer failpoints: the setting comes from the configuration file
ack_writes('bulk', 20);
$node->safe_psql('postgres',
	q{SELECT kv_put('bulk_' || i, 'v' || i) FROM generate_series(21, 2000) i});
$acked{"bulk_$_"} = "v$_" for 21 .. 2000;
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');

my $kvdir = $node->data_dir . '/kvext';
for my $fp (qw(snapshot-mid snapshot-before-rename segment-removal-mid))
{
	(my $tag = $fp) =~ s/-/_/g;
	# log after the previous snapshot, over several 64kB segments
	for my $b (1 .. 4)
	{
		$node->safe_psql('postgres',
			qq{SELECT kv_put('${tag}_${b}_' || i, 'v' || i || repeat('.', 100)) FROM generate_series(1, 500) i});
	}
	ack_writes("${tag}_small", 100);
	my $digest = kv_digest($node, 'default');
	my $segs_before = scalar(wal_segments($node));
	ok($segs_before >= 3, "$fp: $segs_before log segments before the checkpoint");
	my $snap_before = kv_status($node)->{snapshot};

	$node->safe_psql('postgres', qq{ALTER SYSTEM SET kvext.failpoint = '$fp'; SELECT pg_reload_conf();});
	my $logpos = -s $node->logfile;
	my $crashed = 0;
	for my $try (1 .. 5)
	{
		# give the checkpointer time to read the new setting
		usleep(300_000);
		my $r = kv_call($node, 'SELECT kv_checkpoint()');
		if (!$r->{ok})
		{
			$crashed = 1;
			last;
		}
		diag("$fp: kv_checkpoint() returned before the failpoint was seen, retrying");
	}
	ok($crashed, "$fp: kv_checkpoint() failed with the server");
	ok(kv_ready_after_crash($node, $logpos), "$fp: store ready after the crash-restart");
	like(slurp_file($node->logfile, $logpos), qr/PANIC:  kvext failpoint "$fp" reached/,
		"$fp: the checkpointer PANICked at the failpoint");
	$node->safe_psql('postgres', q{ALTER SYSTEM RESET kvext.failpoint; SELECT pg_reload_conf();});

	is(kv_digest($node, 'default'), $digest, "$fp: every key and value present after the crash");
	check_acked($fp);
	ok(!-e "$kvdir/snapshot.tmp", "$fp: no temporary snapshot left after recovery");
	my $st = kv_status($node);
	if ($fp eq 'segment-removal-mid')
	{
		my $segs = scalar(wal_segments($node));
		ok($segs < $segs_before, "$fp: some segments were removed ($segs_before -> $segs)");
		ok($st->{snapshot} > $snap_before, "$fp: the new snapshot is in use");
	}
	else
	{
		is($st->{snapshot}, $snap_before, "$fp: the previous snapshot is still the one in use");
	}

	# a checkpoint now works and the data survives a restart from it
	usleep(300_000);
	$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
	ok(scalar(wal_segments($node)) <= 2, "$fp: the next checkpoint removes the old segments");
	$node->stop('immediate');
	$node->start;
	is(kv_digest($node, 'default'), $digest, "$fp: data intact after a checkpoint and a crash");
}

$node->stop;
done_testing();
