# kvext_fdw over remote kvext nodes: a coordinator and three plain kvext
# nodes.  A distributed table (kv_create_distributed_table) spreads rows
# over the nodes: rows inserted, updated, deleted and copied through the
# partitioned parent land on the node that owns their partition (checked
# there with the kv functions), and reads through the parent see them.
# Failures: a node that is down is a clear error naming its server (no
# hang), a cancel interrupts a remote call that waits on the node, and a
# cached connection whose remote backend was terminated is replaced; a
# node that stops answering does not hang the session's abort, and a
# remote COMMIT it never answers is in doubt (40003).
# Remote calls reach kvext's own functions whatever search_path the
# connection would otherwise have, and a node without kvext is a clear
# error.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $coord = kv_node('coord');
my @nodes = map { kv_node("data$_") } (1 .. 3);

my $NROWS = 10_000;
my $NPARTS = 6;

foreach my $i (1 .. 3)
{
	my $n = $nodes[ $i - 1 ];
	$coord->safe_psql('postgres', sprintf(q{
CREATE SERVER s%d FOREIGN DATA WRAPPER kvext_fdw
  OPTIONS (host '%s', port '%d', dbname 'postgres', batch_size '100', connect_timeout '5',
           application_name 'kvext_fdw');
CREATE USER MAPPING FOR CURRENT_USER SERVER s%d;},
		$i, $n->host, $n->port, $i));
}
$coord->safe_psql('postgres', qq{
SELECT kv_create_distributed_table('dist', ARRAY['s1', 's2', 's3'], partitions => $NPARTS);});

# the node that owns partition r (kv_create_distributed_table's rule)
sub owner { my ($r) = @_; return $nodes[ $r % 3 ]; }

# how many of the keys the coordinator's hash puts in partition r
sub expected_in
{
	my ($r, $keys_sql) = @_;
	return $coord->safe_psql('postgres', qq{
SELECT count(*) FROM ($keys_sql) k(key)
 WHERE satisfies_hash_partition('dist'::regclass, $NPARTS, $r, key)});
}

# a key starting with prefix that the coordinator's hash puts in partition r
sub key_in
{
	my ($prefix, $r) = @_;
	return $coord->safe_psql('postgres', qq{
SELECT k FROM (SELECT '$prefix' || i AS k FROM generate_series(1, 1000) i) s
 WHERE satisfies_hash_partition('dist'::regclass, $NPARTS, $r, k) LIMIT 1});
}

# ---------------------------------------------------------------------------
# 10,000 rows through the parent land on the right nodes
$coord->safe_psql('postgres', qq{
INSERT INTO dist SELECT 'k' || i, 'v' || i FROM generate_series(1, $NROWS) i;});
my $keys = "SELECT 'k' || i FROM generate_series(1, $NROWS) i";
my $total = 0;
foreach my $r (0 .. $NPARTS - 1)
{
	my $want = expected_in($r, $keys);
	my $got = owner($r)->safe_psql('postgres', "SELECT kv_count('dist_$r')");
	is($got, $want, "partition $r: its node holds the $want keys routed to it");
	$total += $got;
	foreach my $other (grep { $_ != owner($r) } @nodes)
	{
		is( $other->safe_psql('postgres',
				"SELECT count(*) FROM kv_keyspaces() WHERE keyspace = 'dist_$r'"),
			'0', "partition $r: no keyspace on another node");
	}
}
is($total, $NROWS, 'every row is on some node');

# sample keys: the value is on the owning node
foreach my $i (1, 77, 4242, $NROWS)
{
	my $r = $coord->safe_psql('postgres', qq{
SELECT r FROM generate_series(0, $NPARTS - 1) r
 WHERE satisfies_hash_partition('dist'::regclass, $NPARTS, r, 'k$i'::text)});
	is(owner($r)->safe_psql('postgres', "SELECT kv_get('k$i', 'dist_$r')"),
		"v$i", "key k$i is on its partition's node");
}

# reads through the parent
is($coord->safe_psql('postgres', 'SELECT count(*) FROM dist'), $NROWS,
	'count(*) through the parent');
is($coord->safe_psql('postgres', q{SELECT value FROM dist WHERE key = 'k4242'}),
	'v4242', 'point read through the parent');
is( $coord->safe_psql('postgres',
		q{SELECT string_agg(value, ',' ORDER BY key) FROM dist WHERE key IN ('k1', 'k2', 'nope')}),
	'v1,v2', 'multi-key read through the parent');
like(
	$coord->safe_psql('postgres',
		q{EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM dist WHERE key = 'k1'}),
	qr/Node: s[123]/, 'EXPLAIN VERBOSE names the node');

# ---------------------------------------------------------------------------
# UPDATE moves keys across nodes
my $moved = 0;
foreach my $i (1 .. 20)
{
	my ($from, $to) = split /\|/, $coord->safe_psql('postgres', qq{
SELECT (SELECT r FROM generate_series(0, $NPARTS - 1) r
         WHERE satisfies_hash_partition('dist'::regclass, $NPARTS, r, 'k$i'::text)),
       (SELECT r FROM generate_series(0, $NPARTS - 1) r
         WHERE satisfies_hash_partition('dist'::regclass, $NPARTS, r, 'm$i'::text))});
	next if owner($from) == owner($to);
	$coord->safe_psql('postgres', qq{UPDATE dist SET key = 'm$i' WHERE key = 'k$i'});
	is(owner($from)->safe_psql('postgres', "SELECT kv_exists('k$i', 'dist_$from')"),
		'f', "k$i: gone from its old node");
	is(owner($to)->safe_psql('postgres', "SELECT kv_get('m$i', 'dist_$to')"),
		"v$i", "m$i: on its new node");
	$moved++;
	last if $moved >= 3;
}
ok($moved > 0, 'some UPDATEs moved keys across nodes');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM dist'), $NROWS,
	'count unchanged by the moves');

# DELETE
$coord->safe_psql('postgres', q{DELETE FROM dist WHERE key LIKE 'k99%'});
my $deleted = $coord->safe_psql('postgres',
	"SELECT count(*) FROM generate_series(1, $NROWS) i WHERE ('k' || i) LIKE 'k99%'");
is($coord->safe_psql('postgres', 'SELECT count(*) FROM dist'), $NROWS - $deleted,
	'DELETE through the parent');
is( $nodes[0]->safe_psql('postgres',
		"SELECT count(*) FROM generate_series(0, $NPARTS - 1) r, kv_scan('k99', 'dist_' || r)
		  WHERE r % 3 = 0"),
	'0', 'deleted keys are gone on the node');

# COPY through the parent
my $copy = join('', map { "c$_\tcv$_\n" } (1 .. 500));
$coord->safe_psql('postgres', "COPY dist FROM stdin;\n$copy\\.\n");
my $csum = 0;
foreach my $r (0 .. $NPARTS - 1)
{
	$csum += owner($r)->safe_psql('postgres',
		"SELECT count(*) FROM kv_scan('c', 'dist_$r')");
}
is($csum, 500, 'COPY through the parent: 500 keys on the nodes');

# batch_size: an INSERT whose batch holds an existing key fails whole
my ($ret, $out, $err) = $coord->psql('postgres',
	q{INSERT INTO dist SELECT 'new' || i, 'x' FROM generate_series(1, 300) i UNION ALL SELECT 'k5000', 'dup'});
like($err, qr/already exists/, 'an existing key in a batched INSERT is 23505');
is( $coord->safe_psql('postgres', q{SELECT count(*) FROM dist WHERE key LIKE 'new%'}),
	'0', 'and nothing of the statement stays on any node');

# ---------------------------------------------------------------------------
# a node that is down: a clear error naming its server, no hang
$nodes[2]->stop('fast');
($ret, $out, $err) = $coord->psql('postgres', 'SELECT count(*) FROM dist',
	timeout => 120);
isnt($ret, 0, 'a read of a table with a partition on a stopped node fails');
like($err, qr/server "s3"/, 'the error names the server of the stopped node');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM dist_0'),
	$nodes[0]->safe_psql('postgres', q{SELECT kv_count('dist_0')}),
	'partitions on the other nodes still work');
$nodes[2]->start;
is($coord->safe_psql('postgres', 'SELECT count(*) > 0 FROM dist_2'), 't',
	'the restarted node is used again');

# ---------------------------------------------------------------------------
# a cancel interrupts a remote call waiting on the node: a session on
# data1 holds key k5001's lock, the coordinator's UPDATE waits for it there
my $rc = $coord->safe_psql('postgres', qq{
SELECT r FROM generate_series(0, $NPARTS - 1) r
 WHERE satisfies_hash_partition('dist'::regclass, $NPARTS, r, 'k5001'::text)});
my $holder = owner($rc)->background_psql('postgres');
$holder->query_safe(qq{BEGIN; SELECT kv_put('k5001', 'held', 'dist_$rc')});
my $waiter = $coord->background_psql('postgres', on_error_stop => 0);
my $wpid = $waiter->query_safe('SELECT pg_backend_pid()');
$waiter->query_until(qr/start/, qq{\\echo start
UPDATE dist SET value = 'w' WHERE key = 'k5001';
});
ok( owner($rc)->poll_query_until('postgres', q{
SELECT count(*) > 0 FROM pg_stat_activity
 WHERE application_name = 'kvext_fdw' AND query LIKE '%kvext_fdw_remote_cas%'
   AND state = 'active'}),
	'the UPDATE waits on the node');
$coord->safe_psql('postgres', "SELECT pg_cancel_backend($wpid)");
$waiter->query('SELECT 1');
like($waiter->{stderr}, qr/canceling statement due to user request/,
	'the cancel interrupts the waiting remote call');
ok( owner($rc)->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM pg_stat_activity
 WHERE application_name = 'kvext_fdw' AND query LIKE '%kvext_fdw_remote_cas%'
   AND state = 'active'}),
	'and the remote call no longer runs on the node');
$holder->query_safe('ROLLBACK');
$holder->quit;
$waiter->{stderr} = '';
is($waiter->query_safe(q{SELECT value FROM dist WHERE key = 'k5001'}), 'v5001',
	'the session works after the cancel');

# ---------------------------------------------------------------------------
# a cached connection whose remote backend was terminated is replaced
is($waiter->query_safe('SELECT count(*) > 0 FROM dist_1'), 't',
	'a session with cached connections');
my $killed = $nodes[1]->safe_psql('postgres', q{
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE application_name = 'kvext_fdw'});
ok($killed > 0, 'its remote backend on data2 is terminated');
is($waiter->query_safe('SELECT count(*) > 0 FROM dist_1'), 't',
	'the next use replaces the broken connection');
$waiter->quit;

# ---------------------------------------------------------------------------
# a node that stops answering (SIGSTOP: it keeps its connections open) while
# a query waits on it: statement_timeout ends the query, and the session
# answers again at once, while the node is still stopped; the abort closes
# the connection instead of a cancel request that would wait on the node
my $hs = $coord->background_psql('postgres', on_error_stop => 0);
is($hs->query_safe('SELECT count(*) > 0 FROM dist_1'), 't',
	'a session with a cached connection to data2');
my @stopped = sigstop_server($nodes[1]);
$hs->query(q{SET statement_timeout = '2s'; SELECT count(*) FROM dist_1});
like($hs->{stderr}, qr/canceling statement due to statement timeout/,
	'a query on a stopped node ends at statement_timeout');
$hs->{stderr} = '';
is($hs->query_safe('RESET statement_timeout; SELECT 1'), '1',
	'the session answers while the node is still stopped');
sigcont_server(@stopped);
is($hs->query_safe('SELECT count(*) > 0 FROM dist_1'), 't',
	'and reaches the node again once it runs');

# run the statements that open a transaction, stop data2 (SIGSTOP: it
# keeps its connections open), then COMMIT; returns what the COMMIT wrote
# to stderr, with data2 still stopped (sigcont_server(@stopped))
sub commit_on_stopped_node
{
	my ($begin_sql) = @_;
	$hs->query_safe($begin_sql);
	@stopped = sigstop_server($nodes[1]);
	$hs->{stderr} = '';
	$hs->query('COMMIT');
	my $stderr = $hs->{stderr};
	$hs->{stderr} = '';
	return $stderr;
}

# a COMMIT sent to a node that then stops answering: the wait ends at
# statement_timeout in doubt (40003), not in an error that reads as a
# rollback, for the node commits it once it runs again
my $ck = key_in('doubt', 1);
$hs->query_safe('\\set VERBOSITY verbose');
$err = commit_on_stopped_node(
	"BEGIN; INSERT INTO dist VALUES ('$ck', 'in doubt'); SET LOCAL statement_timeout = '2s'");
like($err, qr/ERROR:  40003: the transaction's writes on server "s2" may or may not be committed/,
	'a COMMIT the node does not answer is in doubt (40003), naming the server');
like($err, qr/DETAIL:  The wait for the remote COMMIT was cancelled/,
	'... and says the wait was cut short');
is($hs->query_safe('SELECT 1'), '1', 'the session answers while the node is still stopped');
sigcont_server(@stopped);
ok($nodes[1]->poll_query_until('postgres', "SELECT kv_get('$ck', 'dist_1')", 'in doubt'),
	'the node committed the write it had been sent: the outcome was unknown, not a rollback');

# SQL that PostgreSQL runs during the commit (a deferred trigger, here
# with statement_timeout turned off), after it disarmed the statement
# timer, does not take the COMMIT's deadline away: the remote COMMIT wait
# still ends in doubt, it does not wait forever
$coord->safe_psql('postgres', q{
CREATE TABLE commit_sql (i int);
CREATE FUNCTION commit_sql_trig() RETURNS trigger LANGUAGE plpgsql
  SET statement_timeout = 0 AS
  $$ BEGIN PERFORM count(*) FROM pg_class; RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER commit_sql_t AFTER INSERT ON commit_sql
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION commit_sql_trig();});
my $dk = key_in('deferred', 1);
$err = commit_on_stopped_node(
	"BEGIN; INSERT INTO dist VALUES ('$dk', 'deferred'); INSERT INTO commit_sql VALUES (1); SET LOCAL statement_timeout = '2s'");
like($err, qr/ERROR:  40003: the transaction's writes on server "s2" may or may not be committed/,
	'a COMMIT that runs a deferred trigger still ends its remote COMMIT wait at statement_timeout');
sigcont_server(@stopped);
ok($nodes[1]->poll_query_until('postgres', "SELECT kv_get('$dk', 'dist_1')", 'deferred'),
	'... and the node committed the write once it ran again');

# a transaction that only read on that node has nothing in doubt there
is(commit_on_stopped_node("BEGIN; SELECT count(*) FROM dist_1; SET LOCAL statement_timeout = '2s'"),
	'', 'a COMMIT cut short where the transaction only read is no error');
sigcont_server(@stopped);

# written on two servers, the second stops answering: whatever the order
# of the commits, the error's context names exactly the servers whose
# remote transactions committed before it
my ($k0, $k1) = map { key_in('two', $_) } (0, 1);
$err = commit_on_stopped_node(
	"BEGIN; INSERT INTO dist VALUES ('$k0', 'x'), ('$k1', 'x'); SET LOCAL statement_timeout = '2s'");
like($err, qr/ERROR:  40003: the transaction's writes on server "s2" may or may not be committed/,
	'two servers, the second stopped: in doubt on it');
sigcont_server(@stopped);
my $s1_committed = $nodes[0]->safe_psql('postgres', "SELECT kv_get('$k0', 'dist_0') IS NOT NULL");
if ($s1_committed eq 't')
{
	like($err, qr/CONTEXT:  the remote transactions on server\(s\) "s1" committed before this error/,
		's1 committed first, and the context says so');
}
else
{
	unlike($err, qr/committed before this error/, 's2 came first: s1 rolled back, and no context claims it');
}

# terminate the coordinator's remote backends on node n, and wait until
# they are gone
sub terminate_fdw_backends
{
	my ($n) = @_;
	$n->safe_psql('postgres', q{
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'kvext_fdw'});
	$n->poll_query_until('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kvext_fdw'}, '0')
	  or die 'remote backends still there';
}

# a remote backend terminated during the transaction is found before any
# remote COMMIT is sent: 08006, and no server committed
my ($t0, $t1) = map { key_in('term', $_) } (0, 1);
$hs->{stderr} = '';
$hs->query_safe("BEGIN; INSERT INTO dist VALUES ('$t0', 'x'), ('$t1', 'x')");
terminate_fdw_backends($nodes[1]);
$hs->{stderr} = '';
$hs->query('COMMIT');
like($hs->{stderr}, qr/ERROR:  08006: lost connection to server "s2" during the transaction/,
	'a remote backend terminated in the transaction: 08006 at COMMIT');
unlike($hs->{stderr}, qr/committed before this error/, '... before any server committed');
is($nodes[0]->safe_psql('postgres', "SELECT kv_get('$t0', 'dist_0') IS NULL"), 't',
	'and the other server rolled back');

# ... but where the transaction only read, it commits (its local keys too)
$hs->{stderr} = '';
$hs->query_safe("BEGIN; SELECT count(*) FROM dist_1; SELECT kv_put('ro-local', 'kept')");
terminate_fdw_backends($nodes[1]);
$hs->query('COMMIT');
is($hs->{stderr}, '', 'a lost connection that had only read does not fail the commit');
is($coord->safe_psql('postgres', "SELECT kv_get('ro-local')"), 'kept', 'the local key is committed');

# PostgreSQL's serializable check runs before any remote COMMIT: a write
# skew through a table fails the commit with 40001 and the node keeps
# nothing of it
$coord->safe_psql('postgres', q{
CREATE TABLE skew (id int PRIMARY KEY, on_call bool);
INSERT INTO skew VALUES (1, true), (2, true);});
my $ss = $coord->background_psql('postgres', on_error_stop => 0);
$hs->{stderr} = '';
$hs->query_safe(qq{BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) FROM skew WHERE on_call;
INSERT INTO dist VALUES ('$t0', 'skew');
UPDATE skew SET on_call = false WHERE id = 1;});
$ss->query_safe(q{BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) FROM skew WHERE on_call;
UPDATE skew SET on_call = false WHERE id = 2;
COMMIT;});
$hs->{stderr} = '';
$hs->query('COMMIT');
like($hs->{stderr}, qr/ERROR:  40001:/, 'a serialization failure at COMMIT: 40001');
is($nodes[0]->safe_psql('postgres', "SELECT kv_get('$t0', 'dist_0') IS NULL"), 't',
	'... raised before the remote COMMIT: the node did not commit the write');
$ss->quit;
$hs->quit;

# what PostgreSQL runs after the pre-commit callbacks may still fail (here
# an ON COMMIT DELETE ROWS table referenced by another): the error says
# which servers committed before it, instead of reading as a rollback
my $oc = key_in('oc', 0);
my $r = kv_call($coord, qq{
CREATE TEMP TABLE oc_parent (id int PRIMARY KEY) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE oc_child (pid int);
BEGIN;
ALTER TABLE oc_child ADD FOREIGN KEY (pid) REFERENCES oc_parent;
INSERT INTO dist VALUES ('$oc', 'x');
COMMIT;});
like($r->{stderr}, qr/ERROR:  0A000: unsupported ON COMMIT and foreign key combination/,
	'an error PostgreSQL raises after the remote COMMITs');
like($r->{stderr}, qr/CONTEXT:  the remote transactions on server\(s\) "s1" committed before this error/,
	'... names the server that committed');
is($nodes[0]->safe_psql('postgres', "SELECT kv_get('$oc', 'dist_0')"), 'x', 'which it did');

# a deadlock across two nodes, which neither node sees, ends with the
# sessions' lock_timeout (55P03), which remote transactions take on
my ($dl0, $dl1) = map { key_in('dl', $_) } (0, 1);
my $da = $coord->background_psql('postgres', on_error_stop => 0);
my $db = $coord->background_psql('postgres', on_error_stop => 0);
# (set after each remote transaction began: it reaches them all the same)
$_->query_safe("\\set VERBOSITY verbose") for ($da, $db);
$da->query_safe("BEGIN; SELECT count(*) FROM dist; SET lock_timeout = '2s'; INSERT INTO dist VALUES ('$dl0', 'a')");
$db->query_safe("BEGIN; SELECT count(*) FROM dist; SET lock_timeout = '2s'; INSERT INTO dist VALUES ('$dl1', 'b')");
$da->{stdin} .= "INSERT INTO dist VALUES ('$dl1', 'a');\n\\echo da-done\n";
$da->{run}->pump_nb;
$db->{stdin} .= "INSERT INTO dist VALUES ('$dl0', 'b');\n\\echo db-done\n";
$db->{run}->pump_nb;
for my $s ($da, $db)
{
	$s->{run}->pump until $s->{stdout} =~ /-done/ || $s->{timeout}->is_expired;
}
like($da->{stderr} . $db->{stderr}, qr/ERROR:  55P03:/,
	'a deadlock across two nodes ends at lock_timeout');
$da->quit;
$db->quit;

# ---------------------------------------------------------------------------
# search_path: a connection whose options (or whose role's settings) put
# another schema first still calls kvext's functions
$nodes[0]->safe_psql('postgres', q{
CREATE SCHEMA evil;
CREATE FUNCTION evil.kvext_fdw_remote_read(keyspace text, missing_ok boolean,
    text_values boolean, prefix bytea, keys bytea[],
    OUT key bytea, OUT value bytea, OUT "binary" boolean)
RETURNS SETOF record LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'evil.kvext_fdw_remote_read was called';
END $$;
CREATE FUNCTION evil.kvext_fdw_remote_count(keyspace text, missing_ok boolean)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'evil.kvext_fdw_remote_count was called';
END $$;});
$coord->safe_psql('postgres', sprintf(q{
CREATE SERVER e1 FOREIGN DATA WRAPPER kvext_fdw
  OPTIONS (host '%s', port '%d', dbname 'postgres', options '-c search_path=evil,public');
CREATE USER MAPPING FOR CURRENT_USER SERVER e1;
CREATE FOREIGN TABLE e_dist_0 (key text, value text) SERVER e1 OPTIONS (keyspace 'dist_0');},
	$nodes[0]->host, $nodes[0]->port));
is( $coord->safe_psql('postgres',
		q{SELECT (SELECT count(*) FROM e_dist_0) = (SELECT count(*) FROM dist_0),
		         (SELECT count(*) FROM (SELECT * FROM e_dist_0) s) = (SELECT count(*) FROM dist_0)}),
	't|t', 'search_path=evil,public on the connection: kvext\'s own functions are called');

# a node whose database has no kvext
$nodes[0]->safe_psql('postgres', 'CREATE DATABASE nokv');
$coord->safe_psql('postgres', sprintf(q{
CREATE SERVER nokv FOREIGN DATA WRAPPER kvext_fdw
  OPTIONS (host '%s', port '%d', dbname 'nokv', connect_timeout '5');
CREATE USER MAPPING FOR CURRENT_USER SERVER nokv;
CREATE FOREIGN TABLE nokv_t (key text, value text) SERVER nokv OPTIONS (keyspace 'dist_0');},
	$nodes[0]->host, $nodes[0]->port));
($ret, $out, $err) = $coord->psql('postgres', 'SELECT count(*) FROM nokv_t');
like($err, qr/could not connect to server "nokv".*\n.*DETAIL:  extension kvext is not installed in database "nokv"/,
	'a database without kvext: the error names the server and says why');
$nodes[0]->safe_psql('nokv', 'CREATE EXTENSION kvext');
is($coord->safe_psql('postgres', 'SELECT (SELECT count(*) FROM nokv_t) = (SELECT count(*) FROM dist_0)'), 't',
	'once kvext is installed there, the same server works (the store is the server\'s)');

$coord->stop;
$_->stop foreach @nodes;
done_testing();
