# kvext durability under a concurrent write load: kill -9 of the
# postmaster, pg_ctl stop -m immediate, and kill -9 of one backend (which
# makes PostgreSQL reinitialize shared memory).  Every client records what
# it was told; afterwards no acknowledged write may be lost and none may be
# invented, and no transaction may be half applied.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use KvextDurability;

my $CLIENTS    = 4;
my $STATEMENTS = 100_000;    # more than a client runs before the crash

# fsync on: the commit path really waits for the disk, as in production;
# small segments: the load switches segments often
my $node = kv_node('crash_load', "fsync = on\nkvext.wal_segment_size = '64kB'\n");

# wait until every client of the load has at least $n acknowledgements
sub wait_acks
{
	my ($load, $n) = @_;
	my $deadline = time + 60;
	while (time < $deadline)
	{
		my $acks = load_acks($load);
		return 1 unless grep { @{ $acks->{$_} } < $n } keys %$acks;
		usleep(50_000);
	}
	die "the load made no progress";
}

# what the store must hold for ever after (key => value), filled in by the
# checks of each scenario and verified again after every later crash
my %settled;

sub check_incr
{
	my ($load, $what) = @_;
	my $acks = load_acks($load);
	my ($total_acked, $total_found) = (0, 0);
	for my $c (sort keys %$acks)
	{
		my @a   = @{ $acks->{$c} };
		my $n   = scalar @a;
		my $key = "$load->{prefix}_$c";
		# the client saw 1, 2, ..., n
		my @bad = grep { $a[$_] != $_ + 1 } 0 .. $#a;
		ok(!@bad, "$what: client $c saw consecutive values 1..$n");
		my $v = kv_scalar($node, "SELECT coalesce(kv_get('$key'), '0')");
		ok($v >= $n, "$what: client $c: no acknowledged increment lost (acknowledged $n, found $v)");
		ok($v <= $n + 1, "$what: client $c: none invented (acknowledged $n, found $v)");
		$settled{$key} = $v;
		$total_acked += $n;
		$total_found += $v;
	}
	note("$what: $total_acked increments acknowledged, $total_found found");
	return $total_acked;
}

sub check_put
{
	my ($load, $what) = @_;
	my $acks = load_acks($load);
	my $p    = $load->{prefix};
	my $total_acked = 0;
	for my $c (sort keys %$acks)
	{
		my @a = @{ $acks->{$c} };
		my $n = scalar @a;
		my @bad = grep { $a[$_] != $_ + 1 } 0 .. $#a;
		ok(!@bad, "$what: client $c was acknowledged 1..$n in order");
		my ($present, $na, $nb, $maxa, $unpaired) = split /\|/, kv_scalar(
			$node, qq{
			SELECT (SELECT count(*) FROM generate_series(1, $n) i
			         WHERE kv_get('${p}a${c}_' || i) = 'v' || i AND kv_get('${p}b${c}_' || i) = 'v' || i),
			       (SELECT count(*) FROM kv_scan('${p}a${c}_')),
			       (SELECT count(*) FROM kv_scan('${p}b${c}_')),
			       (SELECT coalesce(max(substr(key, length('${p}a${c}_') + 1)::int), 0) FROM kv_scan('${p}a${c}_')),
			       (SELECT count(*) FROM kv_scan('${p}a${c}_') a
			          FULL JOIN kv_scan('${p}b${c}_') b
			            ON substr(a.key, length('${p}a${c}_') + 1) = substr(b.key, length('${p}b${c}_') + 1)
			         WHERE a.key IS NULL OR b.key IS NULL OR a.value <> b.value)});
		is($present, $n, "$what: client $c: all $n acknowledged transactions present");
		ok($na == $n || ($na == $n + 1 && $maxa == $n + 1),
			"$what: client $c: nothing invented (acknowledged $n, found $na, highest $maxa)");
		is($unpaired, 0, "$what: client $c: no transaction half applied ($na a-keys, $nb b-keys)");
		$settled{"${p}a${c}_$_"} = "v$_" for ($n, 1);
		$total_acked += $n;
	}
	note("$what: $total_acked transactions acknowledged");
	return $total_acked;
}

sub check_settled
{
	my ($what) = @_;
	return unless %settled;
	my @keys = sort keys %settled;
	my $got = kv_scalar($node,
		'SELECT string_agg(coalesce(kv_get(k), \'<null>\'), \',\' ORDER BY ord) FROM unnest(ARRAY['
		  . join(',', map { "'$_'" } @keys)
		  . ']) WITH ORDINALITY AS t(k, ord)');
	is($got, join(',', map { $settled{$_} } @keys),
		"$what: data recovered after earlier crashes is still there");
}

# ---------------------------------------------------------------------------
# 1. kv_incr load, kill -9 of the postmaster
my $load = start_load($node, 'incr', 'k9', $CLIENTS, $STATEMENTS);
wait_acks($load, 50);
usleep(500_000);
kill9_postmaster($node);
stop_load($load);
$node->start;
my $acked = check_incr($load, 'incr load, kill -9 postmaster');
ok($acked > 4 * 50, 'the load was acknowledged before the crash');
is(kv_status($node)->{state}, 'ready', 'store is ready after kill -9');

# 2. kv_incr load, pg_ctl stop -m immediate
$load = start_load($node, 'incr', 'imm', $CLIENTS, $STATEMENTS);
wait_acks($load, 50);
usleep(500_000);
$node->stop('immediate');
stop_load($load);
$node->start;
check_incr($load, 'incr load, stop -m immediate');
check_settled('after stop -m immediate');

# 3. two-key transactions on unique keys, kill -9 of the postmaster
$load = start_load($node, 'put', 'u9', $CLIENTS, $STATEMENTS);
wait_acks($load, 50);
usleep(500_000);
kill9_postmaster($node);
stop_load($load);
$node->start;
check_put($load, 'unique keys, kill -9 postmaster');
check_settled('after the second kill -9');

# 4. two-key transactions, stop -m immediate
$load = start_load($node, 'put', 'ui', $CLIENTS, $STATEMENTS);
wait_acks($load, 50);
usleep(300_000);
$node->stop('immediate');
stop_load($load);
$node->start;
check_put($load, 'unique keys, stop -m immediate');
check_settled('after the second stop -m immediate');

# 5. kill -9 of one backend during a mixed load: the postmaster kills every
#    session and reinitializes shared memory; the store must come back
my $incr = start_load($node, 'incr', 'bk', 2, $STATEMENTS);
my $put  = start_load($node, 'put',  'bp', 2, $STATEMENTS);
wait_acks($incr, 50);
wait_acks($put,  50);
usleep(300_000);
my $victim = kv_scalar($node, q{SELECT pid FROM pg_stat_activity WHERE application_name = 'bp_1'});
like($victim, qr/^\d+$/, "found the backend to kill ($victim)")
  or die 'no backend to kill (kill of an empty pid signals this process group)';
my $logpos = -s $node->logfile;
kill 'KILL', $victim;
stop_load($incr);
stop_load($put);
ok(kv_ready_after_crash($node, $logpos), 'the store is ready again after the crash-restart');
my $log = slurp_file($node->logfile, $logpos);
like($log, qr/terminated by signal 9/, 'the postmaster saw the backend die');
like($log, qr/all server processes terminated; reinitializing/, 'and reinitialized shared memory');
like($log, qr/kvext recovery complete/, 'kvext recovered after the reinitialization');
check_incr($incr, 'backend killed (incr clients)');
check_put($put, 'backend killed (put clients)');
check_settled('after the backend crash');

# 6. snapshots taken during the load (fuzzy snapshot, segments removed while
#    sessions write), then kill -9 of the postmaster: the snapshot plus the
#    log after its redo point must hold every acknowledged write
$incr = start_load($node, 'incr', 'ck', 2, $STATEMENTS);
$put  = start_load($node, 'put',  'cp', 2, $STATEMENTS);
wait_acks($incr, 20);
wait_acks($put,  20);
for my $i (1 .. 3)
{
	$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
	usleep(200_000);
}
my $segs = kv_status($node)->{segments};
wait_acks($put, 100);
kill9_postmaster($node);
stop_load($incr);
stop_load($put);
$logpos = -s $node->logfile;
$node->start;
check_incr($incr, 'checkpoints during the load (incr clients)');
# (the kv calls above waited for recovery, so its message is in the log)
like(slurp_file($node->logfile, $logpos), qr/kvext recovery complete: from snapshot/,
	"recovered from a snapshot taken during the load ($segs segments after it)");
check_put($put, 'checkpoints during the load (put clients)');
check_settled('after checkpoints during the load');

# the store keeps working, and a clean restart keeps everything
$node->safe_psql('postgres', q{SELECT kv_put('after_all', 'yes')});
$node->restart;
check_settled('after a final clean restart');
is(kv_scalar($node, q{SELECT kv_get('after_all')}), 'yes', 'write after the crashes survived');

$node->stop;
done_testing();
