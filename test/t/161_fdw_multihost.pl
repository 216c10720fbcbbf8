# kvext_fdw over a replicated group: a coordinator (a plain kvext server)
# with one foreign server naming the three nodes of a group, the leader
# last.  Writes land on the leader (seen there and, once replicated, on the
# followers); reads with read_from 'any' use the first node that answers,
# and keep working while the leader is down, while reads without it never
# go to a follower.  After kill -9 of the leader and kv_promote() of a
# follower, the same foreign table (nothing recreated) writes to the new
# leader, in a session whose cached connection went to the old one; a
# transaction that had written on the old leader fails with an error
# saying it must roll back; a transaction that had only read moves to the
# new leader when a planned promotion demotes its node.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use KvextDurability;
use KvextGroup;
use PostgreSQL::Test::Utils;
use Test::More;

my @nodes = kv_group(3);
my ($n1, $n2, $n3) = @nodes;
my %by_name = map { $_->name => $_ } @nodes;
my $coord = kv_node('coord');

# the group's keyspace, created on the leader and replicated
$n1->safe_psql('postgres', "SELECT kv_create_keyspace('mh')");
ok(kv_poll($_, "SELECT count(*) FROM kv_keyspaces() WHERE keyspace = 'mh'", '1'),
	'keyspace mh reaches ' . $_->name)
  for ($n2, $n3);

# the server lists n3, n2, n1: the leader is not first
$coord->safe_psql('postgres', sprintf(q{
CREATE SERVER grp FOREIGN DATA WRAPPER kvext_fdw
  OPTIONS (host '%s', port '%s', dbname 'postgres', connect_timeout '5');
CREATE USER MAPPING FOR CURRENT_USER SERVER grp;
CREATE FOREIGN TABLE t (key text, value text) SERVER grp OPTIONS (keyspace 'mh');
CREATE FOREIGN TABLE t_any (key text, value text) SERVER grp
  OPTIONS (keyspace 'mh', read_from 'any');},
	join(',', map { $_->host } ($n3, $n2, $n1)),
	join(',', map { $_->port } ($n3, $n2, $n1))));

# the node named on EXPLAIN (ANALYZE, VERBOSE)'s "Group Node:" line
sub served_by
{
	my ($session_or_node, $query) = @_;
	my $sql = "EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF) $query";
	my $out = ref($session_or_node) =~ /BackgroundPsql/
	  ? $session_or_node->query_safe($sql)
	  : $session_or_node->safe_psql('postgres', $sql);
	return $out =~ /Group Node: (\S+) at / ? $1 : "none in:\n$out";
}

# promote the first of @candidates that wins
sub promote_one
{
	for my $c (@_)
	{
		my $r = kv_call($c, 'SELECT kv_promote()');
		return $c if $r->{ok};
		note('kv_promote on ' . $c->name . ' refused: ' . $r->{stderr});
	}
	return undef;
}

# wait until node takes writes (a promoted leader first applies its log)
sub wait_writable
{
	my ($node) = @_;
	for (1 .. 600)
	{
		return 1 if kv_call($node, "SELECT kv_put('probe', 'ok')")->{ok};
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

# kv_get of key k in keyspace mh, '<none>' when absent
sub kget { my ($k) = @_; return "coalesce(kv_get('$k', 'mh'), '<none>')"; }
my $get = sub { my ($k) = @_; return 'SELECT ' . kget($k); };

# ---------------------------------------------------------------------------
# writes land on the leader, found by asking the nodes
$coord->safe_psql('postgres',
	"INSERT INTO t SELECT 'k' || i, 'v' || i FROM generate_series(1, 100) i");
is($n1->safe_psql('postgres', "SELECT kv_count('mh')"), '100',
	'the 100 rows are on the leader n1');
is($n1->safe_psql('postgres', $get->('k42')), 'v42', 'k42 on the leader');
ok(kv_poll($_, $get->('k42'), 'v42'), 'and replicated to ' . $_->name) for ($n2, $n3);
ok(kv_poll($_, "SELECT kv_count('mh')", '100'), $_->name . ' has all 100') for ($n2, $n3);
is($coord->safe_psql('postgres', 'SELECT count(*) FROM t'), '100', 'read through the table');
is(served_by($coord, "SELECT * FROM t WHERE key = 'k1'"), 'n1',
	'EXPLAIN VERBOSE: the leader served the read');
is(served_by($coord, "SELECT * FROM t_any WHERE key = 'k1'"), 'n3',
	"read_from 'any': the first node that answers served it");
like($coord->safe_psql('postgres', "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM t_any WHERE key = 'k1'"),
	qr/Lookup: point.*Keyspace: mh.*Node: grp.*Read From: any/s,
	'EXPLAIN VERBOSE shows the lookup, keyspace, server and read_from');

# ---------------------------------------------------------------------------
# the leader is down: read_from 'any' reads go on, leader reads and writes
# say there is no leader
$n1->stop('fast');
is($coord->safe_psql('postgres', "SELECT value FROM t_any WHERE key = 'k7'"), 'v7',
	"read_from 'any': a point read works while the leader is down");
is($coord->safe_psql('postgres', 'SELECT count(*) FROM t_any'), '100',
	"read_from 'any': a full scan too");
my $r = kv_call($coord, 'SELECT count(*) FROM t');
is($r->{sqlstate}, '08001', 'a read without read_from any never goes to a follower (08001)');
like($r->{stderr}, qr/could not find the leader of server "grp"/, 'no leader, says the error');
like($r->{stderr}, qr/node "n2" follows node "n1"/, "and what each node answered");
$r = kv_call($coord, "INSERT INTO t VALUES ('nope', 'x')");
is($r->{sqlstate}, '08001', 'a write without a leader fails (08001)');
$n1->start;
ok(wait_writable($n1), 'n1 leads again after its restart');

# ---------------------------------------------------------------------------
# kill -9 of the leader, kv_promote() of a follower: the same table writes
# to the new leader
my $s1 = $coord->background_psql('postgres', on_error_stop => 0);
my $s2 = $coord->background_psql('postgres', on_error_stop => 0);
$s1->query_safe("INSERT INTO t VALUES ('k101', 'v101')");
is($n1->safe_psql('postgres', $get->('k101')), 'v101', 'a session writes on n1');
$s2->query_safe("BEGIN; INSERT INTO t VALUES ('w1', 'x')");

kill9_postmaster($n1);
my $leader = promote_one($n2, $n3);
ok(defined $leader, 'a follower is promoted') or BAIL_OUT('no leader');
my ($other) = grep { $_ != $leader && $_ != $n1 } @nodes;
ok(wait_writable($leader), 'the new leader takes writes');

$s1->query_safe("INSERT INTO t VALUES ('k102', 'v102')");
is($leader->safe_psql('postgres', $get->('k102')), 'v102',
	'the session whose cached connection went to n1 writes on the new leader');
ok(kv_poll($other, $get->('k102'), 'v102'), 'and the write replicates to the other follower');
is(served_by($s1, "SELECT * FROM t WHERE key = 'k102'"), $leader->name,
	'EXPLAIN VERBOSE names the new leader');

$s2->{stderr} = '';
$s2->query("INSERT INTO t VALUES ('w2', 'x')");
like($s2->{stderr}, qr/lost connection to node "n1" of server "grp" during the transaction/,
	'a transaction that wrote on the old leader fails');
like($s2->{stderr}, qr/local transaction must be rolled back/, 'and says it must roll back');
$s2->query('ROLLBACK');
$s2->{stderr} = '';
is($s2->query_safe("INSERT INTO t VALUES ('k103', 'v103') RETURNING key"), 'k103',
	'the next transaction of that session writes');
is($leader->safe_psql('postgres', 'SELECT ' . kget('w1') . ', ' . kget('k103')), '<none>|v103',
	'on the new leader, without the failed transaction\'s write');

# ---------------------------------------------------------------------------
# a planned promotion demotes the leader under open transactions
$s1->query_safe("BEGIN; INSERT INTO t VALUES ('w3', 'x')");
$s2->query_safe('BEGIN');
is($s2->query_safe("SELECT value FROM t WHERE key = 'k7'"), 'v7',
	'another transaction has only read on the leader');
ok(kv_call($other, 'SELECT kv_promote()')->{ok}, $other->name . ' is promoted, the leader steps down');
ok(wait_writable($other), 'and takes writes');

$s1->{stderr} = '';
$s1->query("INSERT INTO t VALUES ('w4', 'x')");
like($s1->{stderr}, qr/node "@{[ $leader->name ]}" of server "grp" stopped leading its group during the transaction/,
	'the transaction that wrote on the demoted leader fails');
like($s1->{stderr}, qr/local transaction must be rolled back/, 'and says it must roll back');
$s1->query('ROLLBACK');

$s2->{stderr} = '';
$s2->query("INSERT INTO t VALUES ('k104', 'v104')");
is($s2->{stderr}, '', 'the transaction that had only read writes after the promotion');
$s2->query_safe('COMMIT');
is($other->safe_psql('postgres', $get->('k104')), 'v104', 'on the new leader');
is($other->safe_psql('postgres', $get->('w3')), '<none>', 'the failed write is nowhere');

# $s1's cached connection still reaches the demoted node: a read (no
# write to fail there) must notice at BEGIN and go to the new leader
$s1->{stderr} = '';
is(served_by($s1, "SELECT * FROM t WHERE key = 'k104'"), $other->name,
	'a read of a session whose connection reached the demoted node goes to the new leader');
is($s1->query_safe("SELECT value FROM t WHERE key = 'k104'"), 'v104', 'and sees its keys');
$s1->query_safe("INSERT INTO t VALUES ('k105', 'v105')");
is($other->safe_psql('postgres', $get->('k105')), 'v105', 'and writes there');
ok(kv_poll($coord, "SELECT count(*) FROM t_any WHERE key IN ('k101', 'k102', 'k103', 'k104', 'k105')", '5'),
	"read_from 'any' sees the new leader's keys once replicated");

# ---------------------------------------------------------------------------
# a remote COMMIT waits for the group's majority, which is gone: a cancel
# or a termination of the local session ends the wait in doubt (40003),
# never in a plain error, for the leader commits it once its majority is
# back; a remote backend terminated in that wait is in doubt too
$leader->stop('fast');
my $pid1 = $s1->query_safe('SELECT pg_backend_pid()');
my $waiting_commits = q{SELECT count(*) FROM pg_stat_activity
 WHERE query = 'COMMIT TRANSACTION' AND state = 'active'};
foreach my $how ('cancel', 'terminate', 'remote')
{
	my $s = $how eq 'terminate' ? $coord->background_psql('postgres', on_error_stop => 0) : $s1;
	my $pid = $how eq 'terminate' ? $s->query_safe('SELECT pg_backend_pid()') : $pid1;
	$s->{stderr} = '';
	$s->query_safe('\\set VERBOSITY verbose');
	ok($other->poll_query_until('postgres', $waiting_commits, '0'),
		"$how: no remote COMMIT waits before");
	$s->{stderr} = '';
	$s->{stdin} .= "INSERT INTO t VALUES ('dq_$how', 'in doubt');\n\\echo done-$how\n";
	$s->{run}->pump_nb;
	ok($other->poll_query_until('postgres', $waiting_commits, '1'),
		"$how: the remote COMMIT waits for a majority");
	if ($how eq 'remote')
	{
		$other->safe_psql('postgres', q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE query = 'COMMIT TRANSACTION' AND state = 'active'});
	}
	else
	{
		$coord->safe_psql('postgres', "SELECT pg_${how}_backend($pid)");
	}
	# a terminated psql exits: pump dies then, with its output kept
	eval {
		$s->{run}->pump
		  until $s->{stderr} =~ /ERROR/ && ($how eq 'terminate' || $s->{stdout} =~ /done-$how/)
		  || $s->{timeout}->is_expired;
	};
	# the remote backend's own 40003 comes through as it gave it
	like($s->{stderr},
		$how eq 'remote'
		? qr/ERROR:  40003: the transaction's kvext writes may or may not be committed.*CONTEXT:  remote call on server "grp"/s
		: qr/ERROR:  40003: the transaction's writes on node "@{[ $other->name ]}" of server "grp" may or may not be committed/,
		"$how: the wait ends in doubt (40003), naming the server");
	unlike($s->{stderr}, qr/canceling statement|57014/, "$how: not a plain cancel");
	eval { $s->quit } if $how eq 'terminate';
}
is($other->safe_psql('postgres', "SELECT kv_get('dq_cancel', 'mh') IS NULL"), 't',
	'the in-doubt writes are not visible while the majority is gone');
$leader->start;
ok(kv_poll($other, "SELECT count(kv_get(k, 'mh')) FROM unnest(ARRAY['dq_cancel', 'dq_terminate', 'dq_remote']) k", '3'),
	'with the majority back, the leader commits the three writes in doubt');

$s1->quit;
$s2->quit;
$coord->stop;
$_->stop for ($n2, $n3);
done_testing();
