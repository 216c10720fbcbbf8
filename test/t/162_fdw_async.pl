# kvext_fdw's asynchronous scans: a coordinator and three plain kvext nodes,
# a hash partitioned table whose four partitions are remote tables with
# async_capable 'true' (two of them on the same server, so on one shared
# connection).  EXPLAIN shows Async Foreign Scan under the Append; results
# are complete and correct (count, sum, ORDER BY, LIMIT, in a transaction
# that wrote to a partition); an UPDATE's scans stay synchronous.
# Concurrency is proven without timing: each node's remote read first waits
# while the file kvext/hold exists there (failpoint fdw-remote-read:hold,
# set in those servers' connection options), and the test sees the scans
# waiting on all three nodes at once; synchronous scans would leave the
# second and third node idle until the first was released.  A stopped
# node is a clear error, and the session works again once it is back.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $coord = kv_node('coord');
my @nodes = map { kv_node("data$_") } (1 .. 3);

my $NROWS = 1000;
# partition r lives on server s<server_of(r)>: t_0 and t_3 share s1
sub server_of { my ($r) = @_; return ($r % 3) + 1; }

foreach my $i (1 .. 3)
{
	my $n = $nodes[ $i - 1 ];
	$coord->safe_psql('postgres', sprintf(q{
CREATE SERVER s%d FOREIGN DATA WRAPPER kvext_fdw
  OPTIONS (host '%s', port '%d', dbname 'postgres', connect_timeout '5',
           batch_size '100', async_capable 'true');
CREATE USER MAPPING FOR CURRENT_USER SERVER s%d;
CREATE SERVER h%d FOREIGN DATA WRAPPER kvext_fdw
  OPTIONS (host '%s', port '%d', dbname 'postgres', connect_timeout '5',
           batch_size '100', async_capable 'true',
           options '-c kvext.failpoint=fdw-remote-read:hold');
CREATE USER MAPPING FOR CURRENT_USER SERVER h%d;},
		$i, $n->host, $n->port, $i, $i, $n->host, $n->port, $i));
}
$coord->safe_psql('postgres', q{
CREATE TABLE t (key text, value int) PARTITION BY HASH (key);
CREATE TABLE held (key text, value int) PARTITION BY HASH (key);});
foreach my $r (0 .. 3)
{
	my $s = server_of($r);
	$coord->safe_psql('postgres', qq{
CREATE FOREIGN TABLE t_$r PARTITION OF t FOR VALUES WITH (MODULUS 4, REMAINDER $r)
  SERVER s$s OPTIONS (keyspace 't_$r', create_keyspace 'true');});
}
foreach my $r (0 .. 2)
{
	my $s = $r + 1;
	$coord->safe_psql('postgres', qq{
CREATE FOREIGN TABLE held_$r PARTITION OF held FOR VALUES WITH (MODULUS 3, REMAINDER $r)
  SERVER h$s OPTIONS (keyspace 'held_$r', create_keyspace 'true');});
}
$coord->safe_psql('postgres', qq{
INSERT INTO t SELECT 'k' || i, i FROM generate_series(1, $NROWS) i;
INSERT INTO held SELECT 'h' || i, i FROM generate_series(1, 300) i;});
my $sum = $NROWS * ($NROWS + 1) / 2;

# ---------------------------------------------------------------------------
# options
my ($ret, $out, $err) = $coord->psql('postgres',
	q{ALTER SERVER s1 OPTIONS (ADD async_capabel 'true')});
like($err, qr/Perhaps you meant the option "async_capable"/,
	'a misspelt async_capable gets the closest match');
($ret, $out, $err) = $coord->psql('postgres',
	q{ALTER FOREIGN TABLE t_1 OPTIONS (ADD async_capable 'maybe')});
like($err, qr/invalid value for boolean option "async_capable"/,
	'async_capable is a boolean');

# ---------------------------------------------------------------------------
# EXPLAIN: Async Foreign Scan under the Append
my $plan = $coord->safe_psql('postgres', 'EXPLAIN (COSTS OFF) SELECT * FROM t');
like($plan, qr/Append/, 'the scan of t is an Append');
is(scalar(() = $plan =~ /Async Foreign Scan on t_\d/g), 4,
	'all four partitions are Async Foreign Scans') or diag $plan;

# the table's option wins over the server's
$coord->safe_psql('postgres',
	q{ALTER FOREIGN TABLE t_1 OPTIONS (ADD async_capable 'false')});
$plan = $coord->safe_psql('postgres', 'EXPLAIN (COSTS OFF) SELECT * FROM t');
like($plan, qr/(?<!Async )Foreign Scan on t_1/,
	'async_capable false on the table: t_1 is scanned synchronously');
is(scalar(() = $plan =~ /Async Foreign Scan on t_\d/g), 3,
	'and the other three stay asynchronous');
is($coord->safe_psql('postgres', 'SELECT count(*), sum(value) FROM t'),
	"$NROWS|$sum", 'a mix of synchronous and asynchronous partitions');
$coord->safe_psql('postgres',
	q{ALTER FOREIGN TABLE t_1 OPTIONS (DROP async_capable)});

# an UPDATE's scans are synchronous
$plan = $coord->safe_psql('postgres',
	q{EXPLAIN (COSTS OFF) UPDATE t SET value = value WHERE value < 0});
unlike($plan, qr/Async/, 'the scans of an UPDATE are not asynchronous');

# ---------------------------------------------------------------------------
# results
is($coord->safe_psql('postgres', 'SELECT count(*), sum(value) FROM t'),
	"$NROWS|$sum", 'count and sum over four asynchronous partitions');
my @sorted = sort map { "k$_" } (1 .. $NROWS);
is( $coord->safe_psql('postgres',
		q{SELECT string_agg(key, ',' ORDER BY key) FROM t}),
	join(',', @sorted), 'every key, ORDER BY');
is( $coord->safe_psql('postgres',
		q{SELECT string_agg(key, ',') FROM (SELECT key FROM t ORDER BY key LIMIT 7) s}),
	join(',', @sorted[ 0 .. 6 ]), 'ORDER BY ... LIMIT');
is( $coord->safe_psql('postgres',
		q{SELECT value FROM t WHERE key IN ('k1', 'k500', 'k1000') ORDER BY value}),
	"1\n500\n1000", 'a multi-key read over the partitions');
is( $coord->safe_psql('postgres',
		q{SELECT count(*) FROM t a JOIN t b USING (key) WHERE a.value <> b.value}),
	'0', 'a self-join: two Appends over the same connections');

# LIMIT stops early, with queries in flight; the session goes on working
my $s = $coord->background_psql('postgres', on_error_stop => 0);
is($s->query_safe('SELECT count(*) FROM (SELECT * FROM t LIMIT 3) s'),
	'3', 'LIMIT 3 over the asynchronous partitions');
is($s->query_safe('SELECT count(*), sum(value) FROM t'),
	"$NROWS|$sum", 'the next statement of the session sees every row');
$s->query_safe('BEGIN');
$s->query_safe('SELECT key FROM t LIMIT 1');
is($s->query_safe('SELECT count(*) FROM t'), $NROWS,
	'in a transaction: a full scan after a LIMIT scan');
$s->query_safe('COMMIT');

# a transaction that wrote to partitions reads its writes
$s->query_safe('BEGIN');
$s->query_safe(
	q{INSERT INTO t SELECT 'new' || i, 1 FROM generate_series(1, 20) i});
is($s->query_safe('SELECT count(*), sum(value) FROM t'),
	($NROWS + 20) . '|' . ($sum + 20),
	'read-your-writes: the scans see the transaction\'s own inserts');
$s->query_safe(q{UPDATE t SET value = value + 1 WHERE key = 'k1'});
is($s->query_safe(q{SELECT sum(value) FROM t}), $sum + 21,
	'and its update');
$s->query_safe('ROLLBACK');
is($s->query_safe('SELECT count(*), sum(value) FROM t'), "$NROWS|$sum",
	'after ROLLBACK the writes are gone on every node');

# t_0 and t_3 share one connection to data1
ok( $nodes[0]->poll_query_until('postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'kvext_fdw'}),
	'the session holds one connection to data1 for its two partitions there');

# ---------------------------------------------------------------------------
# concurrency: the remote reads of held wait on each node while the test
# holds them there, all at the same time
like( $coord->safe_psql('postgres', 'EXPLAIN (COSTS OFF) SELECT * FROM held'),
	qr/Async Foreign Scan on held_0.*Async Foreign Scan on held_1.*Async Foreign Scan on held_2/s,
	'held: three asynchronous partitions');
my @holds = map { $_->data_dir . '/kvext/hold' } @nodes;
foreach my $f (@holds)
{
	open(my $fh, '>', $f) or die "could not create $f: $!";
	close $fh;
}
my $q = $coord->background_psql('postgres');
$q->query_until(qr/start/, q{\echo start
SELECT 'held:' || count(*) || ':' || sum(value) FROM held;
});
foreach my $i (0 .. 2)
{
	ok( $nodes[$i]->poll_query_until('postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE application_name = 'kvext_fdw' AND wait_event_type = 'Extension'
   AND query LIKE '%kvext_fdw_remote_read%'}),
		"the remote read waits on data" . ($i + 1));
}
# all three are still waiting: they ran at the same time
my $waiting = 0;
foreach my $n (@nodes)
{
	$waiting += $n->safe_psql('postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE application_name = 'kvext_fdw' AND wait_event_type = 'Extension'
   AND query LIKE '%kvext_fdw_remote_read%'});
}
is($waiting, 3, 'the three remote reads are in flight at the same moment');
unlink($_) or die "could not remove $_: $!" foreach @holds;
like($q->query_safe('SELECT 1'), qr/held:300:45150/,
	'the held scan returns every row once the holds are released');
$q->quit;

# ---------------------------------------------------------------------------
# a stopped node: a clear error, then the connection recovers
$nodes[2]->stop('fast');
$s->query('SELECT count(*) FROM t');
like($s->{stderr}, qr/server "s3"/, 'a scan with a partition on a stopped node names its server');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM t_0'),
	$nodes[0]->safe_psql('postgres', q{SELECT kv_count('t_0')}),
	'partitions on the other nodes still work');
$nodes[2]->start;
$s->{stderr} = '';
is($s->query_safe('SELECT count(*), sum(value) FROM t'), "$NROWS|$sum",
	'the session reads every partition again once the node is back');
$s->quit;

$coord->stop;
$_->stop foreach @nodes;
done_testing();
