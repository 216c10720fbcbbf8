# Keyspace owners and rights outlive the session, the server and the node
# that set them: a revoke reaches a session that had read the keyspace
# before (its cached answer is dropped), a restart after a crash replays
# grants and revokes from the log, a snapshot keeps them, and a group's
# followers apply them with the data, so a follower refuses what its
# leader refuses.  A rolled back grant gives nothing anywhere.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use KvextDurability;
use KvextGroup;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = kv_node('priv');

my $roles = q{
CREATE ROLE alice;
CREATE ROLE bob;
CREATE ROLE carol;
GRANT EXECUTE ON FUNCTION kv_create_keyspace(text, boolean) TO alice;};

# sql run as role; the first error's SQLSTATE, or '' and the output
sub as_role
{
	my ($n, $role, $sql) = @_;
	my $r = kv_call($n, "SET ROLE $role; $sql");
	return $r->{ok} ? $r->{stdout} : "ERROR $r->{sqlstate}";
}

$node->safe_psql('postgres', $roles);
$node->safe_psql('postgres', q{
SET ROLE alice;
SELECT kv_create_keyspace('p');
SELECT kv_put('k', 'v', 'p');
SELECT kv_grant('p', 'bob', 'read');});

# ---------------------------------------------------------------------------
# one session reads, another revokes: the next read of the first is refused
my $bob = $node->background_psql('postgres', on_error_stop => 0);
$bob->query_safe('SET ROLE bob');
is($bob->query_safe("SELECT kv_get('k', 'p')"), 'v', 'bob reads p (and caches the answer)');
$node->safe_psql('postgres', "SET ROLE alice; SELECT kv_revoke('p', 'bob', 'read')");
$bob->{stderr} = '';
$bob->query("SELECT kv_get('k', 'p')");
like($bob->{stderr}, qr/permission denied for keyspace "p"/,
	'the revoke reaches the session that had read before');
$node->safe_psql('postgres', "SET ROLE alice; SELECT kv_grant('p', 'bob', 'read')");
$bob->{stderr} = '';
is($bob->query_safe("SELECT kv_get('k', 'p')"), 'v', 'and a new grant too');

# a grant through a role bob joins later reaches him too (membership change)
$node->safe_psql('postgres', q{
CREATE ROLE writers;
SET ROLE alice;
SELECT kv_grant('p', 'writers', 'write');});
$bob->{stderr} = '';
$bob->query("SELECT kv_put('k2', 'by bob', 'p')");
like($bob->{stderr}, qr/needs the write right/, 'bob cannot write yet');
$node->safe_psql('postgres', 'GRANT writers TO bob');
$bob->{stderr} = '';
$bob->query_safe("SELECT kv_put('k2', 'by bob', 'p')");
is($bob->{stderr}, '', 'once a member of writers, the same session writes');
$bob->quit;

# a membership revoked by another session applies inside a transaction
# that began before it, as it would to a table
$node->safe_psql('postgres', q{
CREATE ROLE readers;
GRANT readers TO carol;
SET ROLE alice;
SELECT kv_grant('p', 'readers', 'read');});
my $carol = $node->background_psql('postgres', on_error_stop => 0);
$carol->query_safe('SET ROLE carol');
$carol->query_safe('BEGIN');
is($carol->query_safe("SELECT kv_get('k', 'p')"), 'v', 'carol reads through readers');
$node->safe_psql('postgres', 'REVOKE readers FROM carol');
$carol->{stderr} = '';
$carol->query("SELECT kv_get('k', 'p')");
like($carol->{stderr}, qr/permission denied for keyspace "p"/,
	'the membership revoked meanwhile applies in the same transaction');
$carol->query('ROLLBACK');
$carol->quit;
$node->safe_psql('postgres', "SET ROLE alice; SELECT kv_revoke('p', 'readers', 'all')");

# a grant and a DROP ROLE of the role it names, at the same time: the one
# that comes second waits for the first, then fails; no right is left
# naming a role that no longer exists
$node->safe_psql('postgres', 'CREATE ROLE dan; CREATE ROLE eve');
my $g = $node->background_psql('postgres', on_error_stop => 0);
my $d = $node->background_psql('postgres', on_error_stop => 0);
$g->query_safe("BEGIN; SET LOCAL ROLE alice; SELECT kv_grant('p', 'dan', 'read')");
$d->{stdin} .= "DROP ROLE dan;\n\\echo dropped\n";
$d->{run}->pump_nb;
ok($node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'object' AND NOT granted}),
	'DROP ROLE waits for the grant that names the role');
$g->query_safe('COMMIT');
$d->{run}->pump until $d->{stdout} =~ /dropped/ || $d->{timeout}->is_expired;
like($d->{stderr}, qr/cannot drop role "dan"/, 'then fails: the role holds a right now');

$d->{stderr} = $d->{stdout} = '';
$d->query_safe('BEGIN; DROP ROLE eve');
$g->{stdin} .= "SET ROLE alice; SELECT kv_grant('p', 'eve', 'read');\n\\echo granted\n";
$g->{run}->pump_nb;
ok($node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'object' AND NOT granted}),
	'a grant naming a role being dropped waits');
$d->query_safe('COMMIT');
$g->{run}->pump until $g->{stdout} =~ /granted/ || $g->{timeout}->is_expired;
like($g->{stderr}, qr/role "eve" was dropped or renamed meanwhile/, 'then fails: the role is gone');
$g->quit;
$d->quit;
is($node->safe_psql('postgres', "SELECT rights::text FROM kv_keyspaces() WHERE keyspace = 'p'"),
	'{bob=r,writers=w,dan=r}', 'rights name only roles that exist');
$node->safe_psql('postgres', "SET ROLE alice; SELECT kv_revoke('p', 'dan', 'all')");

# a rolled back grant gives nothing
$node->safe_psql('postgres', "BEGIN; SET LOCAL ROLE alice; SELECT kv_grant('p', 'carol', 'all'); ROLLBACK;");
is(as_role($node, 'carol', "SELECT kv_get('k', 'p')"), 'ERROR 42501', 'a rolled back grant gives nothing');

my $acl_q = "SELECT owner || ' ' || rights::text FROM kv_keyspaces() WHERE keyspace = 'p'";
my $acl = $node->safe_psql('postgres', $acl_q);
is($acl, 'alice {bob=r,writers=w}', 'owner and rights as granted');

# ---------------------------------------------------------------------------
# a crash: the log replays the grants and revokes
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', $acl_q), $acl, 'after a crash, the same owner and rights (log replay)');
is(as_role($node, 'bob', "SELECT kv_get('k2', 'p')"), 'by bob', 'bob still reads');
is(as_role($node, 'carol', "SELECT kv_get('k', 'p')"), 'ERROR 42501', 'carol still cannot');

# a snapshot keeps them, and a revoke after it replays over it
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
$node->safe_psql('postgres', "SET ROLE alice; SELECT kv_revoke('p', 'writers', 'all')");
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', $acl_q), 'alice {bob=r}',
	'after a snapshot, a revoke and a crash: the snapshot\'s rights with the revoke replayed');
is(as_role($node, 'bob', "SELECT kv_put('k3', 'x', 'p')"), 'ERROR 42501', 'the revoke holds');
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
$node->restart;
is($node->safe_psql('postgres', $acl_q), 'alice {bob=r}', 'and from the new snapshot alone');
$node->stop;

# ---------------------------------------------------------------------------
# a group: rights are replicated with the data (roles are each server's:
# the administrator creates them on every node)
my @nodes = kv_group(3);
my ($n1, $n2, $n3) = @nodes;
$_->safe_psql('postgres', $roles) for @nodes;
$n1->safe_psql('postgres', q{
SET ROLE alice;
SELECT kv_create_keyspace('g');
SELECT kv_put('k', 'v', 'g');
SELECT kv_grant('g', 'bob', 'read');});
for my $f ($n2, $n3)
{
	ok(kv_poll($f, "SELECT owner || ' ' || rights::text FROM kv_keyspaces() WHERE keyspace = 'g'",
			'alice {bob=r}'),
		$f->name . ' has the owner and rights');
	is(as_role($f, 'bob', "SELECT kv_get('k', 'g')"), 'v', 'bob reads on ' . $f->name);
	is(as_role($f, 'carol', "SELECT kv_get('k', 'g')"), 'ERROR 42501', 'carol cannot on ' . $f->name);
}
$n1->safe_psql('postgres', "SET ROLE alice; SELECT kv_revoke('g', 'bob', 'read')");
ok(kv_poll($n2, "SELECT rights::text FROM kv_keyspaces() WHERE keyspace = 'g'", '{}'),
	'the revoke reaches a follower');
is(as_role($n2, 'bob', "SELECT kv_get('k', 'g')"), 'ERROR 42501', 'where bob is refused too');
my $dr = kv_call($n2, 'DROP ROLE alice');
is($dr->{sqlstate}, '2BP01',
	'a follower refuses to drop the role that owns a replicated keyspace');
is(kv_call($n2, "SET ROLE alice; SELECT kv_grant('g', 'bob', 'read')")->{sqlstate}, '25006',
	'rights change on the leader only (25006 on a follower)');

# a role that exists on the leader only: its right reaches the followers
# by name; a follower refuses to rename another role to that name, and the
# leader takes the right back by name
$n1->safe_psql('postgres', "CREATE ROLE ghost; SET ROLE alice; SELECT kv_grant('g', 'ghost', 'read')");
ok(kv_poll($n2, "SELECT rights::text FROM kv_keyspaces() WHERE keyspace = 'g'", '{ghost=r}'),
	'a right for a role the follower lacks reaches it');
$n2->safe_psql('postgres', 'CREATE ROLE tmp');
is(kv_call($n2, 'ALTER ROLE tmp RENAME TO ghost')->{sqlstate}, '42710',
	'a follower refuses to give a role the name its rights name');
$n1->safe_psql('postgres', 'SET ROLE alice; SELECT kv_revoke(\'g\', \'ghost\', \'all\'); RESET ROLE; DROP ROLE ghost');
ok(kv_poll($n2, "SELECT rights::text FROM kv_keyspaces() WHERE keyspace = 'g'", '{}'),
	'the revoke by name reaches the follower');
ok(kv_call($n2, 'ALTER ROLE tmp RENAME TO ghost')->{ok}, 'and the name is free again');

$_->stop for @nodes;
done_testing();
