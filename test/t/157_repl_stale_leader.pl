# Copyright (c) 2026, kvext authors
#
# Stale leaders and frozen followers (issue 9 item 12), three real nodes on
# loopback:
#  1. a follower frozen with SIGSTOP (its postmaster and every process
#     under it) while the leader goes on committing with the other one:
#     commits return, the leader does not count the frozen follower as
#     having flushed anything new; after SIGCONT it catches up and the
#     three stores are equal;
#  2. with n1 stopped, kv_repl_append called directly on the followers (as
#     the non-superuser replication role) by a "new leader" of term 2, then
#     by stale or foreign ones (docs/architecture.md, "Messages"):
#     - a term below the follower's: success = false with the current term,
#       nothing appended, nothing cut (also when its records would cut the
#       term-2 tail);
#     - a foreign cluster id: 42501, nothing changed, not even the term
#       when the foreign append claims a higher one;
#     - a prev (position, term) that does not match: success = false with
#       the hint = the applied position, nothing appended; resending from
#       the hint is accepted;
#     - a second node claiming the term the follower already follows: 08P01;
#  3. n1, the old leader of term 1, restarts: its senders meet term 2, it
#     steps down, persists term 2 (kept across another restart) and refuses
#     writes; the followers' logs do not change.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use KvextDurability;
use KvextGroup;
use KvextRepl;

my ($n1, $n2, $n3) = kv_repl_group('stale', 3, "kvext.wal_segment_size = '1MB'\n");
my @nodes = ($n1, $n2, $n3);

# every node shows the same contents; waits up to 180 s
sub all_equal
{
	my ($what) = @_;
	ok( $n1->poll_query_until(
			'postgres', q{SELECT c.commit_lsn = w.flush_lsn FROM kv_cluster_status() c, kv_wal_status() w}),
		"$what: the commit position reaches the leader's flush position");
	my $want = kv_digest($n1);
	for my $f ($n2, $n3)
	{
		is(kv_wait_digest($f, $want), $want, "$what: " . $f->name . " has the leader's contents");
	}
	return $want;
}

$n1->safe_psql('postgres', q{SELECT kv_put('k' || i, 'v' || i) FROM generate_series(1, 100) i});
$n1->safe_psql('postgres', q{SELECT kv_put('cnt', '0')});
all_equal('start');

# ---------------------------------------------------------------------------
# 1. n3 frozen with SIGSTOP

my @frozen = sigstop_server($n3);
cmp_ok(scalar(@frozen), '>', 3, 'n3: the postmaster and its children are stopped (' . scalar(@frozen) . ' processes)');

# commits go on with n2: small ones, increments, and 4MB of values, more
# than the socket buffers towards n3 hold
my $r = kv_call($n1, q{SET statement_timeout = '120s';
SELECT kv_put('frozen' || i, 'n3 is stopped ' || i) FROM generate_series(1, 300) i;
SELECT kv_put('big' || i, repeat(chr(65 + i % 26), 100000)) FROM generate_series(1, 40) i;});
ok($r->{ok}, 'the leader commits while n3 is frozen') or diag($r->{stderr});
# 50 increments, each its own transaction, in one session
$r = kv_call($n1, "SET statement_timeout = '120s';\n" . ("SELECT kv_incr('cnt');\n" x 50));
is(join(',', split /\n/, $r->{stdout}), join(',', 1 .. 50),
	'every increment while n3 is frozen is acknowledged, in order') or diag($r->{stderr});
is($n1->safe_psql('postgres', q{SELECT kv_get('cnt')}), '50', 'the leader shows them');
ok(kv_poll($n2, q{SELECT kv_get('cnt')}, '50', 120), 'n2 has them');
is( $n1->safe_psql(
		'postgres', q{SELECT coalesce(r.flushed_lsn < w.flush_lsn, true)
  FROM kv_replication r, kv_wal_status() w WHERE r.peer = 'n3'}),
	't', 'the leader does not count the frozen n3 as having flushed the new records');
is(join(',', grep { proc_state($_) !~ /^(|T|t|Z)$/ } @frozen), '', 'n3 stayed frozen meanwhile');

sigcont_server(@frozen);
all_equal('n3 woken up');
is($n3->safe_psql('postgres', q{SELECT kv_get('cnt')}), '50', 'n3 has every increment, once');
my $commit = $n1->safe_psql('postgres', 'SELECT commit_lsn FROM kv_cluster');
for my $f ($n2, $n3)
{
	ok( $f->poll_query_until(
			'postgres', qq{SELECT applied_lsn = '$commit' AND commit_lsn = '$commit' FROM kv_cluster}),
		$f->name . ' knows the commit position and has applied everything');
}
ok( $n1->poll_query_until(
		'postgres', q{SELECT string_agg(peer || ':' || state, ',' ORDER BY peer) FROM kv_replication},
		'n2:streaming,n3:streaming'),
	'both peers stream again');

# ---------------------------------------------------------------------------
# 2. n1 gone; a new leader of term 2 and stale or foreign ones, directly

my $digest_term1 = kv_digest($n1);
$n1->stop('fast');

my $cluster = control($n2)->{cluster};
is(control($n3)->{cluster}, $cluster, 'n2 and n3 are of one group');
repl_default_cluster($cluster);
my $e = kv_status($n2)->{insert};
is(kv_status($n3)->{insert}, $e, 'n2 and n3 logs end at the same position');
is(control($n2)->{term}, 1, 'n2 is in term 1');

# the new leader's first records: TERM 2, then a transaction
my $t2   = record(REC_TERM, $e, 2, 0);
my $t2a  = record(REC_TXN, $e + length($t2), 2, 0, txn_payload('newleader', 't2'));
my $t2c  = record(REC_COMMIT, $e + length($t2) + length($t2a), 2, $e + length($t2));
my $tail = $t2 . $t2a . $t2c;
my $end  = $e + length($tail);

# n2 follows "n3" in term 2, n3 follows "n2" (only the term matters below)
for my $pair ([ $n2, 'n3' ], [ $n3, 'n2' ])
{
	my ($f, $leader) = @$pair;
	$r = append($f, as => 'kvext_repl', leader => "'$leader'", term => 2, prev_end => $e,
		prev_term => 1, records => $tail, commit => $end);
	is($r->{success}, 't', $f->name . ": the term-2 leader's append is accepted") or diag($r->{stderr});
	is($r->{term}, 2, $f->name . ': ... answering term 2');
	is($r->{flushed}, $end, $f->name . ': ... flushed up to its end');
	is($r->{applied}, $end, $f->name . ': ... applied up to the commit position');
	is(control($f)->{term}, 2, $f->name . ': term 2 is persisted');
	is(kv_get_on($f, 'newleader'), 't2', $f->name . ": the term-2 transaction is visible");
}

# what must not change from here on
# (one query: the log's end, the applied position, the contents, and the
# control file's cluster id and term, read as KvextRepl::control does)
sub state_of
{
	my ($f) = @_;
	my ($insert, $applied, $digest, $ctl) = split /\|/, $f->safe_psql(
		'postgres', q{SELECT w.insert_lsn, c.applied_lsn,
       (SELECT count(*) || ':' || coalesce(md5(string_agg(key || '=' || value, ',' ORDER BY key)), '')
          FROM kv_scan('', 'default')),
       encode(pg_read_binary_file('kvext/control'), 'hex')
  FROM kv_wal_status() w, kv_cluster c});
	my ($cluster, $term) = unpack('q<Q<', substr(pack('H*', $ctl), 16, 16));
	return "log end $insert, applied $applied, term $term, cluster $cluster, contents $digest";
}
my $state = state_of($n2);

# a stale leader (term 1): a heartbeat, an append after the log, and one
# whose records would cut the term-2 tail (prev = the end of term 1)
my $s1a = record(REC_TXN, $end, 1, 0, txn_payload('stale', 'x'));
my $s1c = record(REC_COMMIT, $end + length($s1a), 1, $end);
my $c1a = record(REC_TXN, $e, 1, 0, txn_payload('stale', 'cut'));
my $c1c = record(REC_COMMIT, $e + length($c1a), 1, $e);
for my $case (
	[ 'heartbeat',               $end, 2, '',          $end ],
	[ 'records after the log',   $end, 2, $s1a . $s1c, $end + length($s1a . $s1c) ],
	[ 'records cutting term 2',  $e,   1, $c1a . $c1c, $e + length($c1a . $c1c) ])
{
	my ($what, $prev, $prev_term, $recs, $commit_lsn) = @$case;
	$r = append($n2, as => 'kvext_repl', leader => "'n1'", term => 1, prev_end => $prev,
		prev_term => $prev_term, records => $recs, commit => $commit_lsn);
	ok($r->{ok}, "stale leader, $what: answered, no error") or diag($r->{stderr});
	is($r->{success}, 'f', "stale leader, $what: success = false");
	is($r->{term}, 2, "stale leader, $what: the answer carries the current term 2");
	is($r->{hint}, '', "stale leader, $what: no hint");
	is(state_of($n2), $state, "stale leader, $what: nothing appended, cut or applied");
}
is(kv_get_on($n2, 'stale'), '<null>', 'nothing of the stale leader is visible');
is(kv_get_on($n2, 'newleader'), 't2', 'the term-2 transaction is still there');

# a foreign group: same term, and a higher one (which must not be taken)
my $f2a = record(REC_TXN, $end, 2, 0, txn_payload('foreign', 'x'));
my $f2c = record(REC_COMMIT, $end + length($f2a), 2, $end);
for my $term (2, 5)
{
	$r = append($n2, as => 'kvext_repl', cluster => $cluster + 1, leader => "'n3'", term => $term,
		prev_end => $end, prev_term => 2, records => $f2a . $f2c, commit => $end + length($f2a . $f2c));
	is($r->{sqlstate}, '42501', "a foreign cluster id (term $term): 42501");
	like($r->{stderr}, qr/another group/, "... saying so (term $term)");
	is(state_of($n2), $state, "... nothing changed, the term neither (term $term)");
}
is(kv_get_on($n2, 'foreign'), '<null>', 'nothing of the foreign group is visible');

# prev (position, term) that does not match
my $applied = $n2->safe_psql('postgres', q{SELECT applied_lsn - '0/0' FROM kv_cluster});
is($applied, $end, 'n2 has applied up to the end of its log');
my $g = record(REC_TXN, $end + 64, 2, 0, txn_payload('gap', 'x'));
for my $case (
	[ 'prev_end past the log',            $end + 64, 2, $g ],
	[ 'prev_term differs at the log end', $end,      1, $f2a . $f2c ],
	[ 'prev_end inside a record',         $end - 8,  2, '' ],
	[ 'prev at an older record, wrong term', $e,     2, '' ])
{
	my ($what, $prev, $prev_term, $recs) = @$case;
	$r = append($n2, as => 'kvext_repl', leader => "'n3'", term => 2, prev_end => $prev,
		prev_term => $prev_term, records => $recs, commit => $end);
	ok($r->{ok}, "$what: answered, no error") or diag($r->{stderr});
	is($r->{success}, 'f', "$what: success = false");
	is($r->{hint}, $applied, "$what: hint = the applied position, a boundary both logs share");
	is(state_of($n2), $state, "$what: nothing appended");
}
# the leader resends from the hint: accepted
$r = append($n2, as => 'kvext_repl', leader => "'n3'", term => 2, prev_end => $applied,
	prev_term => 2, records => '', commit => $end);
is($r->{success}, 't', 'a heartbeat from the hint is accepted');
is(state_of($n2), $state, '... and changes nothing');

# a second leader claiming term 2
for my $recs ('', $f2a . $f2c)
{
	$r = append($n2, as => 'kvext_repl', leader => "'n1'", term => 2, prev_end => $end,
		prev_term => 2, records => $recs, commit => $end);
	is($r->{sqlstate}, '08P01', 'another leader of term 2' . ($recs ? ' with records' : '') . ': 08P01');
	like($r->{stderr}, qr/which "n3" leads/, '... naming the leader it follows');
	is(state_of($n2), $state, '... nothing changed');
}

# ... also after a restart of the follower.  n3 led term 2 here, so n1
# claiming term 2 first after the restart is a second leader of the term.
$n2->restart;
$r = append($n2, as => 'kvext_repl', leader => "'n1'", term => 2, prev_end => $end,
	prev_term => 2, records => '', commit => $end);
is($r->{sqlstate}, '08P01', 'after a restart: another node claiming term 2 first is refused');
is(state_of($n2), $state, '... nothing changed');
$n2->restart;
$r = append($n2, as => 'kvext_repl', leader => "'n3'", term => 2, prev_end => $end,
	prev_term => 2, records => '', commit => $end);
is($r->{success}, 't', 'after a restart: the term-2 leader\'s heartbeat is accepted') or diag($r->{stderr});
$r = append($n2, as => 'kvext_repl', leader => "'n1'", term => 2, prev_end => $end,
	prev_term => 2, records => '', commit => $end);
is($r->{sqlstate}, '08P01', 'after a restart: another leader of term 2 is still refused');
is(state_of($n2), $state, '... nothing changed');

# ---------------------------------------------------------------------------
# 3. the old leader comes back in term 1 and must step down

my $state2 = state_of($n2);
my $state3 = state_of($n3);
$n1->start;
ok( $n1->poll_query_until(
		'postgres', q{SELECT role || ':' || term FROM kv_cluster}, 'follower:2'),
	'the stale leader n1 steps down into term 2');
is(control($n1)->{term}, 2, 'n1 persisted term 2');
$r = kv_call($n1, q{SET statement_timeout = '30s'; SELECT kv_put('stale_write', 'x')});
is($r->{sqlstate}, '25006', 'n1 refuses writes once it stepped down');
is(kv_digest($n1), $digest_term1, 'n1 still shows its committed state');
$n1->restart;
# kvext recovers after the server has started; its role is known after that
kv_wait_ready($n1);
is($n1->safe_psql('postgres', q{SELECT role || ':' || term FROM kv_cluster}),
	'follower:2', 'after a restart n1 is still a follower in term 2');
is(state_of($n2), $state2, 'n2 took nothing from the stale leader');
is(state_of($n3), $state3, 'n3 took nothing from the stale leader');

for my $n (@nodes)
{
	unlike(slurp_file($n->logfile), qr/TRAP:|PANIC:|terminated by signal/,
		$n->name . ': no crash in the server log');
}

$_->stop for @nodes;
done_testing();

