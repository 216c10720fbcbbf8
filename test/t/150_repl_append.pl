# Replication, the follower's side: configuration checks, writes refused on
# a follower, and kv_repl_append() called directly (no sender yet) with
# records taken from another node's log or built here: commit position,
# prev check, terms, a divergent tail, a bad batch, the replication right,
# restarts.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;
use KvextRepl;

# ---------------------------------------------------------------------------
# 1. misconfiguration: the server starts, every kv function fails (F0000)
# with the reason, the server log says it

my $bad = kv_node('bad');
my @cases = (
	[ "kvext.node_name = 'n1'\nkvext.peers = 'n1: host=127.0.0.1 port=1; n2: host=127.0.0.1 port=2'\nkvext.leader = 'n1'\n",
	  qr/own name "n1"/, 'own name among the peers' ],
	[ "kvext.node_name = 'n1'\nkvext.peers = 'n2: host=127.0.0.1 port=1; n2: host=127.0.0.1 port=2'\nkvext.leader = 'n1'\n",
	  qr/names node "n2" twice/, 'a duplicate peer' ],
	[ "kvext.node_name = 'n1'\nkvext.peers = 'n2: host=127.0.0.1 port=1; n3: host=127.0.0.1 nosuchoption=1'\nkvext.leader = 'n1'\n",
	  qr/node "n3" a connection string that does not parse/, 'an unparsable conninfo' ],
	[ "kvext.node_name = 'n1'\nkvext.peers = 'n2: host=127.0.0.1 port=1'\nkvext.leader = 'n9'\n",
	  qr/kvext.leader "n9" is neither this node nor one of its peers/, 'an unknown leader' ],
	[ "kvext.node_name = ''\nkvext.peers = 'n2: host=127.0.0.1 port=1'\nkvext.leader = 'n2'\n",
	  qr/kvext.node_name is empty/, 'no node name' ],
	[ "kvext.node_name = 'n1'\nkvext.peers = 'n2 host=127.0.0.1 port=1'\nkvext.leader = 'n1'\n",
	  qr/has no "name:"/, 'an entry without a name' ],
);
for my $c (@cases)
{
	my ($conf, $re, $what) = @$c;
	$bad->append_conf('postgresql.conf', $conf);
	my $logstart = -s $bad->logfile;
	$bad->restart;
	for my $sql ("SELECT kv_get('x')", "SELECT kv_put('x', 'y')", "SELECT kv_count()")
	{
		my $r = kv_call($bad, $sql);
		is($r->{sqlstate}, 'F0000', "$what: $sql fails with F0000");
		like($r->{stderr}, $re, "$what: the error gives the reason");
	}
	my $log = slurp_file($bad->logfile, $logstart);
	like($log, qr/WARNING:.*invalid kvext replication configuration: .*/, "$what: logged at startup");
	is($bad->safe_psql('postgres', 'SELECT 1'), '1', "$what: the server runs");
	# kv functions refuse (F0000) before recovery has run, so wait for it
	ok(kv_wait_ready($bad), "$what: kv_wal_status() still shows the store's state");
}
# a valid group configuration serves again; a password is accepted
$bad->append_conf('postgresql.conf',
	"kvext.node_name = 'n1'\nkvext.peers = 'n2: host=127.0.0.1 port=1 password=secret; n3:host=127.0.0.1 port=2;'\nkvext.leader = 'n1'\n");
$bad->restart;
is(kv_call($bad, "SELECT kv_get('x')")->{ok}, 1, 'valid configuration: kv functions work again');
unlike(slurp_file($bad->logfile), qr/secret/, 'the password never reaches the server log');
$bad->stop;

# ---------------------------------------------------------------------------
# 2. a follower refuses writes, naming its leader

my $src = kv_node('src');    # a group of one: its records are the "leader's"
my $f1 = kv_node('f1',
	"kvext.node_name = 'f1'\nkvext.peers = 'n1: host=127.0.0.1 port=1 dbname=postgres; n3: host=127.0.0.1 port=2'\nkvext.leader = 'n1'\n");

for my $sql ("SELECT kv_put('k', 'v')", "SELECT kv_delete('k')", "SELECT kv_incr('c')",
	"SELECT kv_create_keyspace('ks')")
{
	my $r = kv_call($f1, $sql);
	is($r->{sqlstate}, '25006', "follower refuses: $sql");
	like($r->{stderr}, qr/HINT:\s+Write on the leader, node "n1"/, "the hint names the leader: $sql");
}
is(kv_get_on($f1, 'k'), '<null>', 'reads work on a follower');

# ---------------------------------------------------------------------------
# 3. records from another node's log, applied up to the commit position

$src->safe_psql('postgres', "SELECT kv_put('a', 'one')");
$src->safe_psql('postgres', "SELECT kv_put('b', 'two')");
$src->safe_psql('postgres', "SELECT kv_put('a', 'three')");
my @recs = parse_records(first_segment($src));
# TERM, then TXN+COMMIT three times
is(scalar(@recs), 7, 'the source log holds 7 records');
is($recs[0][2], REC_TERM, 'it starts with the TERM record');
my $src_cluster = control($src)->{cluster};
repl_default_cluster($src_cluster);
my $end = sub { my ($i) = @_; return $recs[$i][0] + $recs[$i][1]; };
my $bytes = sub { my ($from, $to) = @_; return join('', map { $_->[5] } @recs[ $from .. $to ]); };

# a new follower (its log holds only the first TERM record) joins the
# group of its first append
my $r = append($f1, records => '', commit => 0);
is($r->{success}, 't', 'heartbeat from the start of the log succeeds');
is(control($f1)->{cluster}, $src_cluster, 'a new follower adopts the cluster id');

# batch 1: TERM, TXN a=one, COMMIT, TXN b=two (its COMMIT not in this batch);
# committed up to the first COMMIT only
$r = append($f1, prev_end => 0, prev_term => 0, records => $bytes->(0, 3), commit => $end->(2));
is($r->{success}, 't', 'batch 1 appended');
is($r->{flushed}, $end->(3), 'flushed = end of the batch');
is($r->{applied}, $end->(2), 'applied = the commit position');
is(kv_get_on($f1, 'a'), 'one', 'committed write visible on the follower');
is(kv_get_on($f1, 'b'), '<null>', 'a TXN whose COMMIT has not come is invisible');

# now that it holds records of its group, another group is refused
$r = append($f1, cluster => $src_cluster + 1, prev_end => $end->(3), prev_term => 1, records => '');
is($r->{sqlstate}, '42501', 'an append from another group: 42501');
like($r->{stderr}, qr/another group/, '... saying so');
is(control($f1)->{cluster}, $src_cluster, '... and the cluster id stays');

# commit position past TXN b but before its COMMIT record: still invisible
$r = append($f1, prev_end => $end->(3), prev_term => 1, records => '', commit => $end->(3));
is($r->{success}, 't', 'heartbeat');
is(kv_get_on($f1, 'b'), '<null>', 'TXN committed-past, its COMMIT not: invisible');

# batch 2: COMMIT b, TXN a=three, COMMIT; committed only up to COMMIT b
$r = append($f1, prev_end => $end->(3), prev_term => 1, records => $bytes->(4, 6), commit => $end->(4));
is($r->{success}, 't', 'batch 2 appended');
is(kv_get_on($f1, 'b'), 'two', 'the COMMIT from a later batch applies the earlier TXN record');
is(kv_get_on($f1, 'a'), 'one', 'the next transaction, not committed yet, is invisible');
my $st = kv_status($f1);
is($st->{visible}, $end->(4), 'visible position = commit position');

# the same batch again (a resend): records held are skipped, then commit all
$r = append($f1, prev_end => $end->(3), prev_term => 1, records => $bytes->(4, 6), commit => $end->(6));
is($r->{success}, 't', 'a resent batch is accepted');
is(kv_get_on($f1, 'a'), 'three', 'then committed and applied');
is(kv_status($f1)->{insert}, $end->(6), 'resent records were not appended twice');

# ---------------------------------------------------------------------------
# 4. prev check, terms

$r = append($f1, prev_end => $end->(6) + 64, prev_term => 1, records => '', commit => $end->(6));
is($r->{success}, 'f', 'prev_end beyond the log: refused');
is($r->{hint}, $end->(6), 'hint = end of the applied prefix');
$r = append($f1, prev_end => $end->(2), prev_term => 7, records => '', commit => 0);
is($r->{success}, 'f', 'prev_term mismatch: refused');
$r = append($f1, prev_end => $end->(2) + 8, prev_term => 1, records => '', commit => 0);
is($r->{success}, 'f', 'prev_end not a record boundary: refused');
$r = append($f1, prev_end => $end->(2), prev_term => 1, records => '', commit => 0);
is($r->{success}, 't', 'an older record boundary with its term matches (slow path)');

# ---------------------------------------------------------------------------
# 5. a divergent tail: the follower got records (term 1) that its leader
# never committed; a new leader (term 2) sends others at those positions

my $p = $end->(6);
my $t1a = record(REC_TXN, $p, 1, 0, txn_payload('y', 'lost'));
my $t1c = record(REC_COMMIT, $p + length($t1a), 1, $p);
my $tail1 = $t1a . $t1c;
$r = append($f1, prev_end => $p, prev_term => 1, records => $tail1, commit => $p);
is($r->{success}, 't', 'term 1: an uncommitted tail appended');
is(kv_get_on($f1, 'y'), '<null>', 'the uncommitted tail is invisible');

# a restart keeps the committed state and shows nothing past the commit
# position, although the log holds the whole TXN+COMMIT
$f1->restart;
is(kv_get_on($f1, 'a'), 'three', 'after a restart: committed state kept');
is(kv_get_on($f1, 'b'), 'two', 'after a restart: the other key too');
is(kv_get_on($f1, 'y'), '<null>', 'after a restart: a record past the commit position stays invisible');
is(kv_status($f1)->{insert}, $p + length($tail1), 'after a restart: the log holds the tail');
$r = kv_call($f1, "SELECT kv_put('k', 'v')");
is($r->{sqlstate}, '25006', 'after a restart: still a follower');

# term 2: n1 leads again, with a TERM record and another transaction at p
my $t2 = record(REC_TERM, $p, 2, 0);
my $t2a = record(REC_TXN, $p + length($t2), 2, 0, txn_payload('z', 'new'));
my $t2c = record(REC_COMMIT, $p + length($t2) + length($t2a), 2, $p + length($t2));
my $tail2 = $t2 . $t2a . $t2c;
$r = append($f1, term => 2, prev_end => $p, prev_term => 1, records => $tail2, commit => $p + length($tail2));
is($r->{success}, 't', 'term 2 append accepted');
is($r->{term}, 2, 'the follower is in term 2');
is(control($f1)->{term}, 2, 'term 2 persisted in the control file');
is(kv_get_on($f1, 'z'), 'new', "the new leader's transaction applies");
is(kv_get_on($f1, 'y'), '<null>', 'the divergent tail was dropped');
is(kv_status($f1)->{insert}, $p + length($tail2), 'log ends after the new records');
my $seg = first_segment($f1);
my @f1recs = parse_records($seg);
is($f1recs[-1][3], 2, "the follower's last record has term 2");
is(substr($seg, $p - 16, length($tail2)), $tail2, 'the new records are byte for byte the leader\'s');
ok(!grep({ $_->[5] eq $t1a } @f1recs), 'the old TXN record is gone');

# another node claiming the same term is refused
$r = append($f1, leader => "'n3'", term => 2, prev_end => $p + length($tail2), prev_term => 2, records => '');
is($r->{sqlstate}, '08P01', 'a second leader of term 2: refused');
like($r->{stderr}, qr/which "n1" leads/, '... naming the leader it follows');

# a stale leader (term 1) is refused with the current term
$r = append($f1, term => 1, prev_end => $p + length($tail2), prev_term => 2, records => '', commit => 0);
is($r->{success}, 'f', 'stale term: refused');
is($r->{term}, 2, '... answering the current term');

# cutting below the commit position is a protocol violation
my $evil = record(REC_TERM, $end->(2), 3, 0);
$r = append($f1, term => 3, prev_end => $end->(2), prev_term => 1, records => $evil, commit => 0);
is($r->{sqlstate}, '08P01', 'truncating committed records: ERROR');
is(kv_get_on($f1, 'a'), 'three', '... and nothing changed');

# ---------------------------------------------------------------------------
# 6. a bad record in a batch changes nothing

my $q = $p + length($tail2);
my $g1 = record(REC_TXN, $q, 3, 0, txn_payload('g', 'good'));
my $g2 = record(REC_COMMIT, $q + length($g1), 3, $q);
my $broken = $g1 . $g2;
substr($broken, length($g1) + 30, 1) = 'X';    # inside the COMMIT's header
my $before = kv_status($f1);
my $ctl_before = control($f1);
$r = append($f1, term => 3, prev_end => $q, prev_term => 2, records => $broken, commit => $q + length($broken));
is($r->{sqlstate}, '08P01', 'a batch with a damaged record: ERROR');
like($r->{stderr}, qr/checksum mismatch|position/, '... naming the problem');
is(kv_status($f1)->{insert}, $before->{insert}, '... the log is unchanged');
is(control($f1)->{term}, $ctl_before->{term}, '... the term is unchanged');
is(kv_get_on($f1, 'g'), '<null>', '... nothing applied');
# misplaced positions, too
$r = append($f1, term => 3, prev_end => $q, prev_term => 2, records => record(REC_TERM, $q + 8, 3, 0), commit => 0);
is($r->{sqlstate}, '08P01', 'a record at the wrong position: ERROR');

# the good batch then works
$r = append($f1, term => 3, prev_end => $q, prev_term => 2, records => $g1 . $g2, commit => $q + length($g1 . $g2));
is($r->{success}, 't', 'the intact batch is accepted');
is(kv_get_on($f1, 'g'), 'good', '... and applied');

# ---------------------------------------------------------------------------
# 7. the replication right: EXECUTE on kv_repl_append

$f1->safe_psql('postgres', 'CREATE ROLE nobody LOGIN; CREATE ROLE kvext_repl LOGIN;');
$f1->safe_psql('postgres',
	'GRANT EXECUTE ON FUNCTION kv_repl_append(bigint, text, bigint, pg_lsn, bigint, pg_lsn, bytea) TO kvext_repl');
my $tip = $q + length($g1 . $g2);
$r = append($f1, as => 'nobody', term => 3, prev_end => $tip, prev_term => 3, records => '', commit => $tip);
is($r->{sqlstate}, '42501', 'a role without the replication right: 42501');
$r = append($f1, as => 'kvext_repl', term => 3, prev_end => $tip, prev_term => 3, records => '', commit => $tip);
is($r->{success}, 't', 'a non-superuser role with EXECUTE appends');
$r = append($f1, leader => "'stranger'", term => 3, prev_end => $tip, prev_term => 3, records => '');
is($r->{sqlstate}, '42501', 'an append from a node that is no peer: 42501');

# ---------------------------------------------------------------------------
# 8. crash restart: state kept up to the commit watermark, then caught up

my $h1 = record(REC_TXN, $tip, 3, 0, txn_payload('h', 'held'));
my $h2 = record(REC_COMMIT, $tip + length($h1), 3, $tip);
$r = append($f1, term => 3, prev_end => $tip, prev_term => 3, records => $h1 . $h2, commit => $tip);
is($r->{success}, 't', 'TXN+COMMIT appended, not committed');
$f1->stop('immediate');
$f1->start;
kv_wait_ready($f1);
is(kv_get_on($f1, 'h'), '<null>', 'after a crash: the uncommitted transaction is invisible');
is(kv_get_on($f1, 'a'), 'three', 'after a crash: committed data is there (snapshot or commit watermark)')
  or diag explain control($f1);
$r = append($f1, term => 3, prev_end => $tip + length($h1 . $h2), prev_term => 3, records => '',
	commit => $tip + length($h1 . $h2));
is($r->{success}, 't', 'after a crash: the leader commits it');
is(kv_get_on($f1, 'h'), 'held', '... and it applies');
is(kv_get_on($f1, 'g'), 'good', 'every committed write is there');
is(kv_get_on($f1, 'z'), 'new', 'every committed write is there (term 2)');

$f1->stop;
$src->stop;
done_testing();
