# Failover with kv_promote(): the leader is killed (kill -9) under a write
# load; a follower is elected in a higher term and holds every write that
# was acknowledged; the old leader restarts, rejoins as a follower and drops
# the tail of its log that no majority had; a candidate whose log lacks
# acknowledged records is refused; only superusers promote.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use File::Path ();
use IPC::Run;
use KvextDurability;
use KvextGroup;
use PostgreSQL::Test::Utils;
use Test::More;

my @nodes = kv_group(3);
my ($n1, $n2, $n3) = @nodes;
my %by_name = map { $_->name => $_ } @nodes;

my $contents =
  "SELECT coalesce(string_agg(key || '=' || value, ',' ORDER BY key), '') FROM kv_scan('')";

sub role_of
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT role || ' ' || term || ' ' || coalesce(leader, '') FROM kv_cluster_status()");
}

# promote the first of @candidates that wins; returns (node, term, how many
# were refused before it).  A refused candidacy uses up a term, as in Raft:
# which follower is behind after a crash is a matter of timing.
sub promote_one
{
	my @candidates = @_;
	my $refused = 0;
	for my $c (@candidates)
	{
		my $r = kv_call($c, 'SELECT kv_promote()');
		return ($c, $r->{stdout}, $refused) if $r->{ok};
		note('kv_promote on ' . $c->name . ' refused: ' . $r->{stderr});
		$refused++;
	}
	return (undef, undef, $refused);
}

# wait until node takes writes (a promoted leader first applies its log)
sub wait_writable
{
	my ($node) = @_;
	for (1 .. 600)
	{
		my $r = kv_call($node, "SELECT kv_put('probe', 'ok')");
		return 1 if $r->{ok};
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

# --- promotion is refused where it makes no sense ---------------------------

my $r = kv_call($n1, 'SELECT kv_promote()');
is($r->{sqlstate}, '55000', 'kv_promote on the leader is refused (55000)');

$n2->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
$r = kv_call($n2, 'SET ROLE plain; SELECT kv_promote()');
is($r->{sqlstate}, '42501', 'a role without the right cannot promote (42501)');
$r = kv_call($n2, "SET ROLE plain; SELECT * FROM kv_repl_vote(1, 'n1', 9, '0/0', 1)");
is($r->{sqlstate}, '42501', 'nor vote: the replication right is needed');
is(role_of($n2), 'follower 1 n1', 'n2 still follows n1 in term 1');

# --- kill -9 the leader under a write load ----------------------------------

$n1->safe_psql('postgres', "SELECT kv_put('base', '0')");
ok(kv_poll($n3, "SELECT kv_get('base')", '0'), 'the group works');

my $acked_dir = PostgreSQL::Test::Utils::tempdir;
my @writers;
for my $w (1 .. 3)
{
	my $script = sprintf(
		q{for i in $(seq 1 400); do
			psql -X -q -At -d '%s' -c "SELECT kv_put('w%d_'||$i, 'v$i')" >/dev/null 2>&1 || exit 0
			echo $i >> %s/w%d
		done},
		$n1->connstr('postgres'), $w, $acked_dir, $w);
	push @writers, IPC::Run::start([ 'bash', '-c', $script ]);
}

# let some writes land, then kill the leader mid-load
ok(kv_poll($n2, "SELECT count(*) >= 60 FROM kv_scan('w')", 't', 120),
	'the writers are under way');
kill9_postmaster($n1);
$_->finish for @writers;

my %acked;
for my $w (1 .. 3)
{
	next unless -f "$acked_dir/w$w";
	open my $fh, '<', "$acked_dir/w$w" or die;
	while (my $i = <$fh>)
	{
		chomp $i;
		$acked{"w${w}_$i"} = "v$i";
	}
	close $fh;
}
cmp_ok(scalar(keys %acked), '>=', 60, 'writes were acknowledged before the crash');

my ($leader, $term, $refused) = promote_one($n2, $n3);
ok(defined $leader, 'a follower is promoted') or BAIL_OUT('no leader');
is($term, 2 + $refused, "in term 2, or 3 if the first candidate was refused (refused: $refused)");
my ($other) = grep { $_ != $leader && $_ != $n1 } @nodes;
is(role_of($leader), "leader $term " . $leader->name, 'kv_cluster_status shows the new leader');
ok(kv_poll($other, "SELECT role || ' ' || term || ' ' || leader FROM kv_cluster_status()",
		"follower $term " . $leader->name),
	'the other follower follows it');
ok(wait_writable($leader), 'the new leader takes writes once it has applied its log');

my @missing = grep {
	($leader->safe_psql('postgres', "SELECT kv_get('$_')") // '') ne $acked{$_}
} sort keys %acked;
is_deeply(\@missing, [], 'every acknowledged write is on the new leader')
  or diag('missing: ' . join(' ', @missing[ 0 .. ($#missing < 9 ? $#missing : 9) ]));

$leader->safe_psql('postgres', "SELECT kv_put('after', 'failover')");
ok(kv_poll($other, "SELECT kv_get('after')", 'failover'), 'new writes reach the follower');

# --- the old leader rejoins as a follower -----------------------------------

$n1->start;
ok(kv_poll($n1, "SELECT role || ' ' || term || ' ' || leader FROM kv_cluster_status()",
		"follower $term " . $leader->name),
	"the old leader restarts, sees term $term and follows the new leader");
ok(kv_poll($n1, "SELECT kv_get('after')", 'failover'), 'it gets the new writes');
ok(defined kv_group_wait_equal($contents, $leader, $n1, $other), 'contents converge on all three');
$r = kv_call($n1, "SELECT kv_put('x', '1')");
is($r->{sqlstate}, '25006', 'the old leader refuses writes now');
like($r->{stderr}, qr/node "@{[ $leader->name ]}"/, '... naming the new leader');

# --- a leader's unacknowledged tail is dropped when it rejoins ---------------

my @followers = grep { $_ != $leader } @nodes;
$_->stop('fast') for @followers;
$r = kv_call($leader, "SET kvext.synchronous_commit = off; SELECT kv_put('tail', 'never acked')");
ok($r->{ok}, 'with no follower, an off commit returns (not acknowledged by a majority)');
is(kv_scalar($leader, "SELECT kv_get('tail') IS NULL"), 't', '... and is invisible');
kill9_postmaster($leader);
$_->start for @followers;

my ($leader3, $term3, $refused3) = promote_one(@followers);
ok(defined $leader3, 'one of the two survivors is promoted') or BAIL_OUT('no leader');
is($term3, $term + 1 + $refused3, 'in the next term (one more per refused candidate)');
ok(wait_writable($leader3), 'and takes writes');
$leader3->safe_psql('postgres', "SELECT kv_put('tail2', 'term 3')");

my $old = $leader;
$old->start;
ok(kv_poll($old, "SELECT kv_get('tail2')", 'term 3'), 'the old leader follows term 3');
is(kv_scalar($old, "SELECT kv_get('tail') IS NULL"), 't',
	'... and its unacknowledged write is gone');
ok($old->log_contains(qr/cuts its log at/), '... its log was cut where it diverged');
ok(defined kv_group_wait_equal($contents, @nodes), 'contents equal on all three');

# --- a live leader steps down when a follower is promoted --------------------

# the leader parks a write its followers do not have, then a follower is
# elected: the write is either shipped before the election (then everyone
# has it) or dropped with the old leader's tail (then nobody has it)
my @f3 = grep { $_ != $leader3 } @nodes;
$_->stop('fast') for @f3;
$r = kv_call($leader3, "SET kvext.synchronous_commit = off; SELECT kv_put('limbo', 'x')");
ok($r->{ok}, 'the leader parks an unacknowledged write');
$_->start for @f3;
my ($leader3b) = promote_one(@f3);
ok(defined $leader3b, 'a follower is elected while the leader is alive');
ok(kv_poll($leader3, "SELECT role || ' ' || leader FROM kv_cluster_status()",
		'follower ' . $leader3b->name),
	'the live leader steps down and follows it');
ok(wait_writable($leader3b), 'the new leader takes writes');
$leader3b->safe_psql('postgres', "SELECT kv_put('live', 'stepdown')");
ok(kv_poll($leader3, "SELECT kv_get('live')", 'stepdown'), 'the old leader applies the new writes');
my $limbo = kv_group_wait_equal("SELECT coalesce(kv_get('limbo'), 'absent')", @nodes);
ok(defined $limbo, "the parked write has one outcome on every node (" . ($limbo // 'none') . ")");
ok($leader3->log_contains(qr/steps down in term/), '... the old leader stepped down from its commit position');
ok(defined kv_group_wait_equal($contents, @nodes), 'contents equal on all three');
$leader3 = $leader3b;

# --- the election restriction: a candidate missing acked records loses -------

my ($lagging) = grep { $_ != $leader3 } @nodes;
my ($uptodate) = grep { $_ != $leader3 && $_ != $lagging } @nodes;
$lagging->stop('fast');
$leader3->safe_psql('postgres', "SELECT kv_put('acked', 'by two')");
is(kv_scalar($uptodate, "SELECT kv_get('acked')"), 'by two', 'acknowledged by two of three');
kill9_postmaster($leader3);
$lagging->start;
$r = kv_call($lagging, 'SELECT kv_promote()');
is($r->{sqlstate}, '55000', 'a candidate that lacks an acknowledged record is not elected');
like($r->{stderr}, qr/more recent log/, '... its peer says its log is more recent');
my ($leader4) = promote_one($uptodate);
ok(defined $leader4, 'the up-to-date node is elected');
ok(wait_writable($leader4), 'and takes writes');
ok(kv_poll($lagging, "SELECT kv_get('acked')", 'by two'), 'the acknowledged write survives everywhere');

$leader3->start;
ok(defined kv_group_wait_equal($contents, @nodes), 'all three converge once more');
my $digest = kv_group_wait_equal('SELECT kv_digest()', @nodes);
ok(defined $digest && $digest =~ /^[0-9a-f]{32}$/, 'kv_digest() is equal on all three');
$leader4->safe_psql('postgres', "SELECT kv_put('one more', 'key')");
ok(kv_poll($lagging, "SELECT kv_digest() <> '$digest'", 't'), '... and changes with the contents');

# --- a configured leader whose store was lost never leads ----------------

# n1 is kvext.leader: with a new store it would lead term 1 again.  Make
# sure another node leads, then wipe n1's store.
my ($cur) = grep { role_of($_) =~ /^leader / } @nodes;
if ($cur == $n1)
{
	($cur) = promote_one($n2, $n3);
	ok(kv_poll($n1, "SELECT role FROM kv_cluster_status()", 'follower'), 'n1 steps down for the test');
}
ok(wait_writable($cur), 'the current leader takes writes');
$n1->stop('fast');
File::Path::rmtree($n1->data_dir . '/kvext');
my $lp = -s $n1->logfile;
$n1->start;
$cur->safe_psql('postgres', "SELECT kv_put('after wipe', 'x')");
ok(kv_poll($n1, "SELECT kv_get('after wipe')", 'x', 120),
	'the wiped configured leader joins the group as a follower and gets its data');
# either its own senders are refused first (it steps down), or the current
# leader reaches it first (it joins at once): never does it lead anybody
like(slurp_file($n1->logfile, $lp), qr/does not lead: its store is new|joins the group of leader/,
	'... having stepped down or joined, not led, with an empty store');
is(role_of($n1), 'follower ' . role_of($cur) =~ s/^leader //r, '... and follows the current leader');
ok(defined kv_group_wait_equal('SELECT kv_digest()', @nodes), 'digests equal on all three');

done_testing();
