# kvext.synchronous_commit: with off, the "kvext wal writer" makes commits
# durable within kvext.wal_writer_delay; with local (and on / remote_apply,
# which mean local without peers) a commit returns only once its log record
# is flushed; a transaction that also wrote tables is always flushed, and
# its PostgreSQL commit record too before the keys are acknowledged.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use KvextDurability;

my $node = kv_node('async', qq(
fsync = on
kvext.synchronous_commit = off
kvext.wal_writer_delay = '100ms'
));

$node->safe_psql('postgres', q{
CREATE TABLE t (i int);
-- wait until the kvext log is durable up to its current end; returns the
-- milliseconds it took (or -1 after 5 s)
CREATE FUNCTION wait_flushed() RETURNS int LANGUAGE plpgsql AS $$
DECLARE
	target pg_lsn := (SELECT insert_lsn FROM kv_wal_status());
	t0 timestamptz := clock_timestamp();
BEGIN
	LOOP
		IF (SELECT flush_lsn FROM kv_wal_status()) >= target THEN
			RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
		END IF;
		IF clock_timestamp() - t0 > interval '5 s' THEN
			RETURN -1;
		END IF;
		PERFORM pg_sleep(0.005);
	END LOOP;
END $$;
});

sub set_delay
{
	my ($delay) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET kvext.wal_writer_delay = '$delay'; SELECT pg_reload_conf();");
	# let the wal writer take the new value (it flushes what is pending then)
	usleep(300_000);
}

# lag after one commit in the given mode: is flush_lsn behind insert_lsn
# right after the commit returned?
sub lag_after_commit
{
	my ($mode, $sql) = @_;
	my $out = kv_scalar($node, qq{
SET kvext.synchronous_commit = '$mode';
$sql;
SELECT flush_lsn < insert_lsn FROM kv_wal_status();});
	return (split /\n/, $out)[-1];
}

# ---------------------------------------------------------------------------
# off: acknowledged at once, flushed by the wal writer within the delay
my $N = 300;
$node->safe_psql('postgres', join("\n", map { "SELECT kv_put('off_$_', 'v$_');" } 1 .. $N));
my $written = kv_status($node)->{insert};
sleep 1;    # ten times kvext.wal_writer_delay
my $st = kv_status($node);
ok($st->{flush} >= $written,
	"off: within 1 s the wal writer flushed everything acknowledged (flush $st->{flush} >= $written)");
kill9_postmaster($node);
$node->start;
is(kv_scalar($node, q{SELECT count(*) FROM generate_series(1, 300) i WHERE kv_get('off_' || i) = 'v' || i}),
	$N, "off: all $N acknowledged keys present after kill -9 of the postmaster");

# the loss window is bounded by the delay: measure how long a commit made
# with off stays unflushed
my @waits;
for my $i (1 .. 5)
{
	push @waits, (split /\n/, kv_scalar($node, qq{
SET kvext.synchronous_commit = off;
SELECT kv_put('window_$i', 'x');
SELECT wait_flushed();}))[-1];
}
note('off: commit to flush took ' . join(', ', @waits) . ' ms (wal_writer_delay 100ms)');
ok(!grep({ $_ < 0 || $_ > 1000 } @waits), 'off: every commit was flushed within 10 x wal_writer_delay');

# with a long delay the lag is visible: off really does not flush
set_delay('10s');
is(lag_after_commit('off', q{SELECT kv_put('lag_off', 'x')}), 't',
	'off: right after the commit the record is not flushed yet (delay 10s)');
# ... until the delay is shortened (the wal writer wakes on reload)
set_delay('100ms');
ok(kv_scalar($node, 'SELECT wait_flushed()') >= 0, 'off: flushed once the delay is short again');

# ---------------------------------------------------------------------------
# local, on, remote_apply: flushed before the commit returns
set_delay('10s');
for my $mode (qw(local on remote_apply))
{
	is(lag_after_commit($mode, "SELECT kv_put('sync_$mode', 'x')"), 'f',
		"$mode: the log is flushed when the commit returns");
}
# a transaction that also writes a table has its TXN record flushed even
# with off (PostgreSQL's commit record decides it, and may be durable at
# once); only its 40-byte COMMIT record may still be unflushed
is( kv_scalar(
		$node, q{
SET kvext.synchronous_commit = off;
BEGIN; INSERT INTO t VALUES (0); SELECT kv_put('mixed_off', 'x'); COMMIT;
SELECT flush_lsn >= insert_lsn - 40 FROM kv_wal_status();}) =~ /t$/ ? 't' : 'f',
	't', 'off: a transaction that also wrote a table is flushed at commit, but its COMMIT record');
set_delay('100ms');

# local: every acknowledged key present after an immediate stop, and after
# kill -9 of the postmaster, under a concurrent load
$node->safe_psql('postgres', q{ALTER SYSTEM SET kvext.synchronous_commit = local; SELECT pg_reload_conf();});
for my $crash (qw(immediate kill9))
{
	my $load = start_load($node, 'put', "loc$crash", 3, 100_000);
	my $deadline = time + 60;
	while (time < $deadline)
	{
		my $acks = load_acks($load);
		last unless grep { @{ $acks->{$_} } < 50 } keys %$acks;
		usleep(50_000);
	}
	if ($crash eq 'immediate')
	{
		$node->stop('immediate');
	}
	else
	{
		kill9_postmaster($node);
	}
	stop_load($load);
	$node->start;
	my $acks = load_acks($load);
	for my $c (sort keys %$acks)
	{
		my $n = scalar @{ $acks->{$c} };
		ok($n >= 50, "local, $crash: client $c was acknowledged $n times");
		is(kv_scalar($node,
				"SELECT count(*) FROM generate_series(1, $n) i WHERE kv_get('loc${crash}a${c}_' || i) = 'v' || i AND kv_get('loc${crash}b${c}_' || i) = 'v' || i"),
			$n, "local, $crash: client $c: all $n acknowledged transactions present");
		my $found = kv_scalar($node, "SELECT count(*) FROM kv_scan('loc${crash}a${c}_')");
		ok($found == $n || $found == $n + 1, "local, $crash: client $c: none invented ($found found)");
	}
}
$node->safe_psql('postgres', q{ALTER SYSTEM RESET kvext.synchronous_commit; SELECT pg_reload_conf();});

# ---------------------------------------------------------------------------
# PostgreSQL's own synchronous_commit = off: its commit record sits in WAL
# buffers (lost by kill -9) unless kvext flushes it before acknowledging
$node->safe_psql('postgres', q{ALTER SYSTEM SET wal_writer_delay = '10s'; SELECT pg_reload_conf();});
usleep(300_000);
$node->safe_psql('postgres', q{
SET synchronous_commit = off;
SET kvext.synchronous_commit = local;
BEGIN;
INSERT INTO t VALUES (1);
SELECT kv_put('pg_async_mixed', 'x');
COMMIT;});
kill9_postmaster($node);
$node->start;
is(kv_scalar($node, q{SELECT count(*) FROM t WHERE i = 1}), '1',
	'PostgreSQL async commit + kvext local: the acknowledged row survived kill -9');
is(kv_scalar($node, q{SELECT kv_get('pg_async_mixed')}), 'x',
	'PostgreSQL async commit + kvext local: the acknowledged key survived kill -9');

# both asynchronous: may be lost, but only as a whole
$node->safe_psql('postgres', q{
SET synchronous_commit = off;
SET kvext.synchronous_commit = off;
BEGIN;
INSERT INTO t VALUES (2);
SELECT kv_put('all_async_mixed', 'x');
COMMIT;});
kill9_postmaster($node);
$node->start;
my $row = kv_scalar($node, q{SELECT count(*) FROM t WHERE i = 2});
my $key = kv_scalar($node, q{SELECT kv_exists('all_async_mixed')::int});
is($key, $row, "both asynchronous: row and key survive or vanish together (row $row, key $key)");

$node->stop;
done_testing();
