# Copyright (c) 2026, kvext authors
#
# A leader ships what it has written before its own fsync, so its followers
# may hold records that the leader then loses: a machine restart (an OS
# crash, a power loss) loses what was written and not yet fsynced.  The
# commit position never passes the leader's own flush position, so no
# acknowledged write is among them.  The leader must not lead its old term
# again after such a restart: it would write other records at positions its
# followers hold with the same term.  It wins a new term first
# (src/replication/campaign.c), with the votes of followers whose logs run
# further in the term it led (role.c, vote):
#  1. a write blocked between the leader's write and its fsync reaches both
#     followers, and is not committed;
#  2. the leader stops (immediate) and its log loses everything past its
#     flush position, as in a machine restart (failpoint recovery-new-boot);
#  3. it restarts, campaigns and leads the next term; the followers cut the
#     lost records; every acknowledged write is everywhere, the lost one
#     nowhere;
#  4. the attack that made stop 21 revert shipping before the fsync: a
#     follower that was down keeps lost records, the leader restarts and
#     commits others, then is lost too: the follower with the lost records
#     cannot be elected, the one with the acknowledged writes can;
#  5. a restarted leader that finds no majority does not lead: writes fail
#     with 25006 until a follower is back, then it leads;
#  6. a restarted old leader that finds a newer leader follows it, and the
#     newer leader keeps its term;
#  7. a split vote (a kv_promote() that found no majority voted for itself)
#     does not stop a campaign: it asks again in the next term.
#  A restart of PostgreSQL alone (the same boot) leads the same term again.

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

my $contents =
  "SELECT coalesce(string_agg(key || '=' || value, ',' ORDER BY key), '') FROM kv_scan('')";
my $role_term = q{SELECT role || '/' || term FROM kv_cluster_status()};

# acknowledged writes, one transaction each
$n1->safe_psql('postgres', "SELECT kv_put('acked$_', 'v$_')") for 1 .. 10;
ok(defined kv_group_wait_equal($contents, @nodes), 'acknowledged writes on every node');
my $term = $n1->safe_psql('postgres', 'SELECT term FROM kv_cluster_status()');

# A restart of PostgreSQL alone keeps what was written: the leader leads
# the same term again, with no election.
$n1->stop('immediate');
$n1->start;
kv_wait_ready($n1);
ok(kv_poll($n1, $role_term, "leader/$term"), 'a restart in the same boot leads the same term');

# hold a write of $value to $key on $leader between its write and its fsync;
# returns (background psql, the leader's flush position, its insert position)
sub hold_write
{
	my ($leader, $key, $value, @followers) = @_;
	ok( kv_poll(
			$leader, q{SELECT count(*) FROM (SELECT kv_put('writable', 'yes')) s}, '1', 120),
		'the leader takes writes');
	my $hold = $leader->data_dir . '/kvext/hold';
	open(my $fh, '>', $hold) or die "cannot create $hold: $!";
	close($fh);
	my $bg = $leader->background_psql('postgres', on_error_stop => 0);
	$bg->query_until(qr/held/, qq{
SET kvext.failpoint = 'wal-before-fsync:hold';
\\echo held
SELECT kv_put('$key', '$value');
});
	ok( kv_poll(
			$leader, qq{SELECT count(*) FROM pg_stat_activity
  WHERE wait_event = 'Extension' AND query LIKE '%kv_put(''$key''%'}, '1'),
		"the write of $key holds between its write and its fsync");
	my $insert = kv_status($leader)->{insert};
	my $flush = kv_status($leader)->{flush};
	cmp_ok($flush, '<', $insert, 'the leader has not flushed its last records');
	for my $f (@followers)
	{
		ok( kv_poll(
				$f, qq{SELECT insert_lsn - '0/0' >= $insert FROM kv_wal_status()}, 't'),
			$f->name . " holds $key: the senders shipped it before the leader's fsync");
	}
	cmp_ok(
		$leader->safe_psql('postgres', q{SELECT commit_lsn - '0/0' FROM kv_cluster_status()}),
		'<=', $flush, 'the commit position stays at the leader\'s own flush position');
	return ($bg, $flush, $insert);
}

# stop $node at once and lose its log past $flush, as a machine restart
# does; it starts again taking the restart for one (failpoint)
sub machine_crash
{
	my ($node, $bg, $flush) = @_;
	$node->stop('immediate');
	eval { $bg->quit } if $bg;
	unlink $node->data_dir . '/kvext/hold';
	my $dir = $node->data_dir . '/kvext/wal';
	opendir(my $dh, $dir) or die "cannot open $dir: $!";
	my @segs = sort { $a <=> $b } map { hex } grep { /^[0-9A-F]{16}$/ } readdir($dh);
	closedir($dh);
	my ($seg) = grep { $_ <= $flush } reverse @segs;
	my $path = sprintf('%s/%016X', $dir, $seg);
	open(my $f, '+<', $path) or die "cannot open $path: $!";
	binmode($f);
	my $size = -s $path;
	seek($f, $flush - $seg, 0);
	print $f "\0" x ($size - ($flush - $seg));
	close($f);
	unlink sprintf('%s/%016X', $dir, $_) for grep { $_ > $seg } @segs;
	$node->append_conf('postgresql.conf', "kvext.failpoint = 'recovery-new-boot'");
}

# the failpoint off again (it only acts in recovery)
sub clear_failpoint
{
	my ($node) = @_;
	$node->append_conf('postgresql.conf', "kvext.failpoint = ''");
	$node->reload;
}

# ---------------------------------------------------------------------------
# 1-3. a lost tail, then a new term

my ($bg, $n1_flush) = hold_write($n1, 'lost', 'value one', $n2, $n3);
is($n2->safe_psql('postgres', "SELECT coalesce(kv_get('lost'), '<null>')"),
	'<null>', 'not committed: invisible on a follower');
machine_crash($n1, $bg, $n1_flush);
$n1->start;
kv_wait_ready($n1);
clear_failpoint($n1);
is(kv_status($n1)->{insert} >= $n1_flush, 1, 'the restarted leader\'s log holds what it had flushed');
my $t2 = $term + 1;
ok(kv_poll($n1, $role_term, "leader/$t2", 120), 'it campaigned and leads the next term');
like(slurp_file($n1->logfile), qr/must win a new term before it leads again/,
	'its server log says why');
ok( kv_poll(
		$n1, q{SELECT count(*) FROM (SELECT kv_put('lost', 'value two')) s}, '1', 120),
	'it takes writes again');
my $want = $n1->safe_psql('postgres', $contents);
like($want, qr/lost=value two/, 'the leader holds its new write');
for my $f ($n2, $n3)
{
	ok(kv_poll($f, $contents, $want, 120), $f->name . ' holds what the leader holds');
	like(slurp_file($f->logfile), qr/kvext follower cuts its log at/,
		$f->name . ' cut the records its leader had lost');
}
unlike($want, qr/value one/, 'the write that was never acknowledged is nowhere');
is(scalar(() = $want =~ /acked\d+=/g), 10, 'every acknowledged write is there');

# ---------------------------------------------------------------------------
# 4. a follower that was down keeps lost records of the leader's term

($bg, $n1_flush) = hold_write($n1, 'lost2', 'never acked', $n2, $n3);
$n3->stop('immediate');
machine_crash($n1, $bg, $n1_flush);
$n1->start;
kv_wait_ready($n1);
clear_failpoint($n1);
my $t3 = $t2 + 1;
ok(kv_poll($n1, $role_term, "leader/$t3", 120), 'the leader wins the next term with n2 alone');
ok( kv_poll(
		$n1, q{SELECT count(*) FROM (SELECT kv_put('acked-after', 'yes')) s}, '1', 120),
	'a write acknowledged by the leader and n2');
ok(kv_poll($n2, q{SELECT kv_get('acked-after')}, 'yes'), 'n2 has it');
$n1->stop('immediate');
$n3->start;
kv_wait_ready($n3);
# the first request may meet n2's vote for n1 in the same term; the second
# is in a term n2 has not voted in, and meets its log
my $r;
for (1 .. 2)
{
	$r = kv_call($n3, 'SELECT kv_promote()');
	is($r->{sqlstate}, '55000', 'n3, which holds the lost records, is not elected');
}
like($r->{stderr}, qr/node "n2" holds a more recent log/, 'n2 refuses it: its log is more recent');
my $t4 = $n2->safe_psql('postgres', 'SELECT term FROM kv_cluster_status()') + 1;
$r = kv_call($n2, 'SELECT kv_promote()');
ok($r->{ok}, 'n2 is elected') or diag($r->{stderr});
$t4 = $n2->safe_psql('postgres', 'SELECT term FROM kv_cluster_status()');
ok( kv_poll(
		$n2, q{SELECT count(*) FROM (SELECT kv_put('on-n2', 'yes')) s}, '1', 120),
	'the new leader takes writes');
$want = $n2->safe_psql('postgres', $contents);
like($want, qr/acked-after=yes/, 'the acknowledged write is on the new leader');
unlike($want, qr/never acked/, 'the lost record is not');
ok(kv_poll($n3, $contents, $want, 120), 'n3 holds what the new leader holds');

# ---------------------------------------------------------------------------
# 6. the old leader restarts after a machine restart: n2 leads a later term

# n1 stays down long enough that n2's sender, retrying with backoff, does
# not reach it before its campaign asks n2 and n3 for their votes: they
# must answer that n2 leads the term, and the campaign must stop there
# rather than ask in the next term and depose n2 (an attack found that)
sleep 15;
$n1->append_conf('postgresql.conf', "kvext.failpoint = 'recovery-new-boot'");
$n1->start;
kv_wait_ready($n1);
clear_failpoint($n1);
ok(kv_poll($n1, $contents, $want, 120), 'the old leader follows the new one');
like(slurp_file($n1->logfile),
	qr/stops campaigning.*\n.*DETAIL:.*(leads term|follows leader "n2"|is in term)/,
	'its campaign stopped: the term has a leader, or a later one is under way');
unlike(slurp_file($n1->logfile), qr/asks again in the next term/,
	'it did not ask in a later term');
ok(kv_poll($n1, q{SELECT role FROM kv_cluster_status()}, 'follower'), 'as a follower');
is($n2->safe_psql('postgres', $role_term), "leader/$t4", 'the new leader keeps its term');
$r = kv_call($n1, "SELECT kv_put('x', '1')");
is($r->{sqlstate}, '25006', 'the old leader refuses writes');

# a vote request in the very term n2 leads: the refusals say the term has a
# leader, which ends a campaign, not "voted for", which makes it ask in the
# next term (and would depose n2)
my ($cid, $tn) = split /\|/,
  $n2->safe_psql('postgres', 'SELECT cluster_id, term FROM kv_cluster_status()');
is( $n2->safe_psql('postgres',
		"SELECT reason FROM kv_repl_vote($cid, 'n1', $tn, '0/0', 0, 1)"),
	qq{node "n2" leads term $tn}, 'the leader answers that it leads the term');
is( $n3->safe_psql('postgres',
		"SELECT reason FROM kv_repl_vote($cid, 'n1', $tn, '0/0', 0, 1)"),
	qq{node "n3" follows leader "n2" in term $tn},
	'a follower answers that it follows the term\'s leader');
is($n2->safe_psql('postgres', $role_term), "leader/$t4", 'and n2 still leads that term');

# ---------------------------------------------------------------------------
# 5. a leader restarted after a machine restart, with no majority

$n1->stop;
$n3->stop;
$n2->append_conf('postgresql.conf', "kvext.failpoint = 'recovery-new-boot'");
$n2->restart;
kv_wait_ready($n2);
clear_failpoint($n2);
ok(kv_poll($n2, q{SELECT role FROM kv_cluster_status()}, 'follower'),
	'no majority: it does not lead');
$r = kv_call($n2, "SELECT kv_put('x', '1')");
is($r->{sqlstate}, '25006', 'writes fail with 25006');
ok( kv_poll(
		$n2, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'kvext campaign'},
		'1'),
	'the kvext campaign worker keeps asking');
# another candidate with an older log asks n2 for a later term (an
# operator's kv_promote() on a lagging node): n2 refuses it and moves to
# that term without a vote, and its campaign goes on there
ok(kv_poll($n2, q{SELECT term FROM kv_cluster_status()}, $t4 + 1), 'n2 asks in the next term');
($cid) = split /\|/, $n2->safe_psql('postgres', 'SELECT cluster_id FROM kv_cluster_status()');
my $late = $t4 + 2;
like( $n2->safe_psql('postgres',
		"SELECT reason FROM kv_repl_vote($cid, 'n3', $late, '0/0', 0, 0)"),
	qr/holds a more recent log/, 'n2 refuses a candidate with an older log in a later term');
ok( kv_poll(
		$n2, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'kvext campaign'},
		'1'),
	'and its campaign goes on');
$n3->start;
my $t5 = $late;
ok(kv_poll($n2, $role_term, "leader/$t5", 120),
	'once n3 is back, n2 leads that later term: the term it heard of, in which it had voted for nobody');
ok( kv_poll(
		$n2, q{SELECT count(*) FROM (SELECT kv_put('last', 'yes')) s}, '1', 120),
	'and takes writes');
is($n2->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'kvext campaign'}),
	'0', 'the campaign worker is gone');
$n1->start;
$want = $n2->safe_psql('postgres', $contents);
ok(defined kv_group_wait_equal($contents, $n2, $n1, $n3), 'contents equal on every node');

# ---------------------------------------------------------------------------
# 7. a split vote: the leader's machine restarts while a kv_promote() that
#    found no majority left the only other live node voting for itself

($bg, my $n2_flush) = hold_write($n2, 'lost3', 'never acked', $n1, $n3);
$n3->stop('immediate');
machine_crash($n2, $bg, $n2_flush);
$r = kv_call($n1, 'SELECT kv_promote()');
is($r->{sqlstate}, '55000', 'kv_promote() on n1 finds no majority');
my $t6 = $n1->safe_psql('postgres', 'SELECT term FROM kv_cluster_status()');
is($t6, $t5 + 1, 'n1 voted for itself in the next term');
$n2->start;
kv_wait_ready($n2);
clear_failpoint($n2);
my $t7 = $t6 + 1;
ok(kv_poll($n2, $role_term, "leader/$t7", 120),
	'n2 is refused in that term by n1\'s own vote, asks in the next, and leads it');
like(slurp_file($n2->logfile), qr/peers voted for another candidate/,
	'its server log says why it asked again');
ok( kv_poll(
		$n2, q{SELECT count(*) FROM (SELECT kv_put('after-split', 'yes')) s}, '1', 120),
	'and takes writes');
$n3->start;
ok(defined kv_group_wait_equal($contents, $n2, $n1, $n3), 'contents equal on every node');
unlike($n1->safe_psql('postgres', $contents), qr/lost3/, 'the lost write is nowhere');

$_->stop for @nodes;
done_testing();
