# Majority commit in a group of three: a commit returns once a majority
# has the record; with no majority the wait is in doubt (40003), never a
# plain error or a plain success, and the write stays invisible and locked
# until the majority returns; off and local commits return early but stay
# invisible; a mixed transaction's cancelled wait is a WARNING.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use KvextDurability;
use KvextGroup;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

# run a command in the background; a wait that never ends is cut by the
# harness after a generous bound (bg_finish)
sub bg_start
{
	my (@cmd) = @_;
	my $call = { out => '', err => '' };
	$call->{h} = IPC::Run::start(\@cmd, '>', \$call->{out}, '2>', \$call->{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return $call;
}

sub bg_finish
{
	my ($call) = @_;
	if (!eval { $call->{h}->finish; 1 })
	{
		$call->{h}->kill_kill;
		return { ok => 0, hung => 1, stdout => $call->{out}, stderr => $call->{err} };
	}
	return { ok => $call->{h}->result(0) == 0, hung => 0,
		stdout => $call->{out}, stderr => $call->{err} };
}

# one statement through pgbench -M extended (the extended protocol, as
# drivers use it) with the given PGOPTIONS
sub extended_start
{
	my ($node, $sql, $options) = @_;
	my $file = "${PostgreSQL::Test::Utils::tmp_check}/extended_call.sql";
	open(my $fh, '>', $file) or die "could not write $file: $!";
	print $fh "$sql\n";
	close $fh;
	local $ENV{PGOPTIONS} = $options;
	return bg_start('pgbench', '-n', '-M', 'extended', '-t', '1', '-f', $file,
		'-h', $node->host, '-p', $node->port, 'postgres');
}

sub extended_call { return bg_finish(extended_start(@_)); }

# protocol messages one by one (test/pqwire.py: portals bound before other
# statements run, fast-path calls); stdout lists every error and notice
sub wire_start
{
	my ($node, $options, @steps) = @_;
	return bg_start('python3', "$FindBin::RealBin/../pqwire.py",
		$node->host, $node->port, 'postgres', '-o', $options, @steps);
}

sub wire_call { return bg_finish(wire_start(@_)); }

my ($n1, $n2, $n3) = kv_group(3);

# --- the group commits with one follower, and ships to both ---------------

my $r = kv_call($n1, "SELECT kv_put('a', '1')");
ok($r->{ok}, 'a commit on the leader returns') or diag($r->{stderr});
ok(kv_poll($n2, "SELECT kv_get('a')", '1'), 'the write reaches follower n2');
ok(kv_poll($n3, "SELECT kv_get('a')", '1'), 'the write reaches follower n3');

$r = kv_call($n2, "SELECT kv_put('b', '1')");
is($r->{sqlstate}, '25006', 'a write on a follower is refused with 25006');
like($r->{stderr}, qr/n1/, '... and the error names the leader');

# functions that change statement_timeout as they run, called through the
# fast path (no statement for the executor or utility hooks to see)
$n1->safe_psql('postgres', q{
CREATE FUNCTION fp_put(k text, timeout text, pause float8) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE x text;
BEGIN
  x := set_config('statement_timeout', timeout, false);
  x := pg_sleep(pause);
  x := kv_put(k, 'fast path');
  RETURN 1;
END $$;
CREATE TABLE rt (i int);
CREATE FUNCTION rt_check() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM 1 FROM pg_class LIMIT 1; RETURN NULL; END $$;
CREATE TABLE dt (i int);
CREATE CONSTRAINT TRIGGER dt_check AFTER INSERT ON dt DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION rt_check();
CREATE FUNCTION kv_check() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM kv_get('any'); RETURN NULL; END $$;
CREATE TABLE dk (i int);
CREATE CONSTRAINT TRIGGER dk_check AFTER INSERT ON dk DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION kv_check();});
my $fp_put = $n1->safe_psql('postgres', q{SELECT 'fp_put(text,text,float8)'::regprocedure::oid});
my $kv_put = $n1->safe_psql('postgres', q{SELECT 'kv_put(text,text,text)'::regprocedure::oid});

# the extended protocol: a portal bound, another statement executed, a
# pause, then the portal executed: its Execute's timer applies, not the
# one armed at Bind, which had run out (a false 40003 on a healthy group)
$r = wire_call($n1, '-c statement_timeout=1s',
	"P|p1|SELECT kv_put('bound', '1')", 'B|p1|p1',
	'P|s1|SELECT 1', 'B|s1|s1', 'E|s1', 'W|1.5', 'E|p1', 'S');
is($r->{stdout}, "DONE\n", 'the extended protocol: a portal executed after a pause commits')
  or diag($r->{stderr});
is(kv_scalar($n1, "SELECT kv_get('bound')"), '1', '... and its write is visible');
# a fast-path call that arms statement_timeout as it runs has no timer:
# no false 40003 on a healthy group
$r = wire_call($n1, '-c statement_timeout=0', "F|$fp_put|fp_late|1s|1.5");
is($r->{stdout}, "DONE\n", 'a fast-path call that sets statement_timeout as it runs commits')
  or diag($r->{stderr});
is(kv_scalar($n1, "SELECT kv_get('fp_late')"), 'fast path', '... and its write is visible');

$n3->stop('fast');
$r = kv_call($n1, "SET statement_timeout = '60s'; SELECT kv_put('c', '1')");
ok($r->{ok}, 'with one follower down, commits go on (majority 2 of 3)')
  or diag($r->{stderr});

# --- no majority: the wait is in doubt -------------------------------------

$n2->stop('fast');

$r = kv_call($n1, "SET statement_timeout = '1s'; SELECT kv_put('d', 'doubt')");
is($r->{sqlstate}, '40003', 'with no majority, a cancelled commit wait is 40003');
like($r->{stderr}, qr/may or may not be committed/, '... saying the outcome is unknown');

is(kv_scalar($n1, "SELECT kv_get('d') IS NULL"), 't',
	'the in-doubt write is invisible to other sessions on the leader');

# the extended protocol (drivers; pgbench -M extended) ends the wait at
# the statement_timeout its statement started with, as the simple one does
{
	local $ENV{PGOPTIONS} = '-c statement_timeout=1s';
	$n1->pgbench('-n -M extended -t 1', 2, [qr{}],
		[qr/may or may not be committed/],
		'the extended protocol: a commit wait with no majority ends in doubt at statement_timeout',
		{ 'ext.sql' => "SELECT kv_put('x', 'extended');\n" });
}

# ... including a statement that turns statement_timeout off as it runs:
# the timer PostgreSQL armed for it still ends its commit wait
$r = extended_call($n1,
	"SELECT kv_put('y', 'zero'), set_config('statement_timeout', '0', false);",
	'-c statement_timeout=1s');
ok(!$r->{hung}, 'the extended protocol: a statement that turns statement_timeout off does not wait forever');
like($r->{stderr}, qr/may or may not be committed/, '... its commit wait ends in doubt (40003)');

# a portal bound with no timer, then SET statement_timeout executed, then
# the portal: PostgreSQL arms the timer for that Execute, and it applies
$r = wire_call($n1, '-c statement_timeout=0',
	"P|p1|SELECT kv_put('armed', '1')", 'B|p1|p1',
	"P|s1|SET statement_timeout = '1s'", 'B|s1|s1', 'E|s1', 'E|p1', 'S');
ok(!$r->{hung}, 'the extended protocol: a portal executed after SET statement_timeout does not wait forever');
like($r->{stdout}, qr/^ERROR 40003 /m, '... its commit wait ends in doubt (40003)');
# a fast-path call that turns statement_timeout off keeps the timer
# PostgreSQL armed for it
$r = wire_call($n1, '-c statement_timeout=1s', "F|$fp_put|fp_zero|0|0");
ok(!$r->{hung}, 'a fast-path call that turns statement_timeout off does not wait forever');
like($r->{stdout}, qr/^ERROR 40003 /m, '... its commit wait ends in doubt (40003)');
# a statement with RETURNING runs into a tuplestore, not to the client:
# the timer PostgreSQL armed for it still applies
$r = wire_call($n1, '-c statement_timeout=0',
	"Q|SET statement_timeout = '1s'; INSERT INTO rt VALUES (1) RETURNING kv_put('ret1', 'v')");
ok(!$r->{hung}, 'INSERT ... RETURNING after SET statement_timeout does not wait forever');
like($r->{stdout}, qr/^(?:ERROR|WARNING) 40003 /m, '... its commit wait ends in doubt (40003)');
# a fast-path call after a statement of the same implicit transaction:
# the timer PostgreSQL armed for the call applies
$r = wire_call($n1, '-c statement_timeout=0',
	"P|s1|SET statement_timeout = '1s'", 'B|s1|s1', 'E|s1', "F|$kv_put|fp_after|v|default");
ok(!$r->{hung}, 'a fast-path call after SET statement_timeout in its transaction does not wait forever');
like($r->{stdout}, qr/^ERROR 40003 /m, '... its commit wait ends in doubt (40003)');
# a Describe between the last Execute and Sync arms a timer but runs no
# statement; the deferred trigger's SQL at commit then keeps the
# Execute's deadline
$r = wire_call($n1, '-c statement_timeout=1s',
	"P||INSERT INTO dt SELECT 1 FROM (SELECT kv_put('described', 'v')) s", 'B||', 'E|', 'D|S|', 'S');
ok(!$r->{hung}, 'a Describe before Sync does not make the commit wait forever');
like($r->{stdout}, qr/^(?:ERROR|WARNING) 40003 /m, '... its commit wait ends in doubt (40003)');
# a change of rights commits as synchronous_commit = on whatever the
# session asks: with no majority it is in doubt, never an early success
$r = kv_call($n1,
	"SET statement_timeout = '1s'; SET kvext.synchronous_commit = off; SELECT kv_grant('default', 'public', 'read')");
is($r->{sqlstate}, '40003', 'a rights change with no majority is in doubt (40003), even with synchronous_commit off');

# the session's next kv call waits for its own commit in doubt (it reads
# its own writes), and its statement_timeout ends that wait, saying so
$r = wire_call($n1, '-c statement_timeout=1s',
	"Q|SELECT kv_put('own', 'v')", "Q|SELECT kv_get('own')", 'Q|INSERT INTO dk VALUES (1)');
like($r->{stdout}, qr/^ERROR 40003 .*\nERROR 57014 canceling statement due to statement timeout\n/m,
	"the session's next kv call waits for its commit in doubt, until statement_timeout");
ok(!$r->{hung}, '... as does one in a deferred trigger at commit, until the statement_timeout of the statement that commits');
like($r->{stdout}, qr/^ERROR 57014 canceling statement due to statement timeout\nERROR 57014 /m,
	'... which says so');

$r = kv_call($n1, "SET lock_timeout = '500ms'; SELECT kv_put('d', 'other')");
is($r->{sqlstate}, '55P03', 'a writer of the in-doubt key waits and lock_timeout ends the wait');
like($r->{stderr}, qr/Waiting for key "d" in keyspace "default", written by a transaction that is still committing/,
	'... and says what holds the key');
$r = kv_call($n1, "SET statement_timeout = '500ms'; SELECT kv_put('d', 'other')");
is($r->{sqlstate}, '57014', 'statement_timeout ends such a wait too');
like($r->{stderr}, qr/CONTEXT:  while waiting for key "d" of keyspace "default", held by a transaction whose commit waits for its replication group/,
	'... and the error context names no process (the transaction has none)');

$r = kv_call($n1, "SET kvext.synchronous_commit = off; SELECT kv_put('e', 'async')");
ok($r->{ok}, 'an off commit returns without a majority') or diag($r->{stderr});
is(kv_scalar($n1, "SELECT kv_get('e') IS NULL"), 't',
	'... but stays invisible to others until the majority has it');

$r = kv_call($n1, "SET kvext.synchronous_commit = local; SELECT kv_put('f', 'local')");
ok($r->{ok}, 'a local commit returns without a majority') or diag($r->{stderr});
is(kv_scalar($n1, "SELECT kv_get('f') IS NULL"), 't', '... and is invisible too');

$n1->safe_psql('postgres', 'CREATE TABLE t (i int)');
# CREATE TABLE's own commit does not involve kvext, so it returned
$r = kv_call($n1,
	"SET statement_timeout = '1s'; BEGIN; INSERT INTO t VALUES (1); SELECT kv_put('g', 'mixed'); COMMIT;");
ok($r->{ok}, 'a mixed transaction commits (PostgreSQL decides it)') or diag($r->{stderr});
like($r->{stderr}, qr/WARNING:\s+40003/, '... with a 40003 WARNING for its keys');
is(kv_scalar($n1, 'SELECT count(*) FROM t'), '1', '... its row is committed');
is(kv_scalar($n1, "SELECT kv_get('g') IS NULL"), 't', '... its key is not yet visible');

# --- the majority returns: everything in doubt commits ----------------------

# a statement that arms statement_timeout as it runs had no timer when it
# started, so its commit wait has no deadline: under the extended protocol
# it waits for the majority however long it ran (it used to end at once
# in doubt, the statement's start plus the new setting being past)
my $late = extended_start($n1,
	"SELECT kv_put('late', '1'), pg_sleep(1.5), set_config('statement_timeout', '1s', false);",
	'-c statement_timeout=0');
# the same for a portal executed after SET statement_timeout = 0 (that
# Execute has no timer), and for a fast-path call that arms it as it runs
my $unarmed = wire_start($n1, '-c statement_timeout=1s',
	"P|p1|SELECT kv_put('unarmed', '1')", 'B|p1|p1',
	'P|s1|SET statement_timeout = 0', 'B|s1|s1', 'E|s1', 'E|p1', 'S');
my $fp_one = wire_start($n1, '-c statement_timeout=0', "F|$fp_put|fp_one|1s|0");
my $ret = wire_start($n1, '-c statement_timeout=1s',
	"Q|SET statement_timeout = 0; INSERT INTO rt VALUES (2) RETURNING kv_put('ret2', 'v')");
# the four are sure to be in their commit waits once n2 starts
ok(kv_poll($n1, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'", '4'),
	'with no timer armed for them, four commits wait for the majority (extended protocol, portal, fast path, RETURNING)');
$n2->start;
$r = bg_finish($late);
ok($r->{ok}, '... the extended-protocol one commits once the majority returns') or diag($r->{stderr});
is(kv_scalar($n1, "SELECT kv_get('late')"), '1', '... its write is visible');
$r = bg_finish($unarmed);
is($r->{stdout}, "DONE\n", '... the portal executed after SET statement_timeout = 0 commits')
  or diag($r->{stderr});
is(kv_scalar($n1, "SELECT kv_get('unarmed')"), '1', '... its write is visible');
$r = bg_finish($fp_one);
is($r->{stdout}, "DONE\n", '... the fast-path call commits') or diag($r->{stderr});
is(kv_scalar($n1, "SELECT kv_get('fp_one')"), 'fast path', '... its write is visible');
$r = bg_finish($ret);
is($r->{stdout}, "DONE\n", '... INSERT ... RETURNING after SET statement_timeout = 0 commits') or diag($r->{stderr});
is(kv_scalar($n1, "SELECT kv_get('ret2')"), 'v', '... its write is visible');
ok(kv_poll($n1, "SELECT kv_get('d')", 'doubt'), 'the in-doubt write commits once a follower is back');
ok(kv_poll($n1, "SELECT kv_get('e')", 'async'), 'the off commit becomes visible');
ok(kv_poll($n1, "SELECT kv_get('f')", 'local'), 'the local commit becomes visible');
ok(kv_poll($n1, "SELECT kv_get('g')", 'mixed'), "the mixed transaction's key becomes visible");
ok(kv_poll($n1, "SELECT kv_get('x')", 'extended'), 'and the extended-protocol one');
ok(kv_poll($n1, "SELECT kv_get('y')", 'zero'), 'and the one that turned statement_timeout off');
ok(kv_poll($n1, "SELECT rights::text LIKE '%public%' FROM kv_keyspaces() WHERE keyspace = 'default'", 't'),
	'and the rights change');
$r = kv_call($n1, "SET lock_timeout = '10s'; SELECT kv_put('d', 'after')");
ok($r->{ok}, 'the key is writable again') or diag($r->{stderr});
ok(kv_poll($n2, "SELECT kv_get('d')", 'after'), 'and the follower has the newer value');

$n3->start;
my $sql = "SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM kv_scan('')";
ok(defined kv_group_wait_equal($sql, $n1, $n2, $n3), 'all three nodes converge');

# --- a leader restarted without a majority shows only committed writes -----

$n2->stop('fast');
$n3->stop('fast');
$r = kv_call($n1, "SET kvext.synchronous_commit = local; SELECT kv_put('h', 'unconfirmed')");
ok($r->{ok}, 'a local commit with no majority returns') or diag($r->{stderr});
$n1->stop('immediate');
$n1->start;
kv_wait_ready($n1);
is(kv_scalar($n1, "SELECT kv_get('h') IS NULL"), 't',
	'after a crash-restart the leader does not show a write its majority never had');
is(kv_scalar($n1, "SELECT kv_get('d')"), 'after', '... but shows what the group had committed');
$r = kv_call($n1, "SELECT kv_put('i', '1')");
is($r->{sqlstate}, '25006', 'it takes no writes before it has applied its whole log');
like($r->{stderr}, qr/still applying its log/, '... and says why');

$n2->start;
ok(kv_poll($n1, "SELECT kv_get('h')", 'unconfirmed'),
	'once a follower has the record, the restarted leader applies it');
ok(kv_poll($n1, "SELECT 't' FROM (SELECT kv_put('i', '1')) s", 't'),
	'and takes writes again');
$n3->start;
ok(defined kv_group_wait_equal($sql, $n1, $n2, $n3), 'all three nodes converge again');

$_->stop for ($n1, $n2, $n3);
done_testing();
