# Keyspace create and drop are transactional, and logged in the
# transaction's record: after any crash a keyspace exists exactly if its
# create committed (and its drop did not), with exactly the committed keys,
# also when a snapshot was taken while the create or drop was in progress.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $node = kv_node('ks_txn');

sub keyspaces
{
	return kv_scalar($node,
		q{SELECT string_agg(keyspace || '=' || entries, ',' ORDER BY keyspace) FROM kv_keyspaces()});
}

sub crash
{
	$node->stop('immediate');
	$node->start;
	kv_wait_ready($node);
}

# a committed create with keys; a rolled back one; a failed statement
$node->safe_psql('postgres', q{
BEGIN;
SELECT kv_create_keyspace('ks_a');
SELECT kv_put('k' || i, 'v' || i, 'ks_a') FROM generate_series(1, 5) i;
COMMIT;
BEGIN;
SELECT kv_create_keyspace('ks_rb');
SELECT kv_put('k', 'v', 'ks_rb');
ROLLBACK;});
my $r = kv_call($node, q{SELECT kv_create_keyspace(n) FROM (VALUES ('ks_m1'), ('ks_a')) v(n)});
is($r->{sqlstate}, '42710', 'a statement creating an existing keyspace fails');
is(keyspaces(), 'default=0,ks_a=5', 'only the committed create exists');
crash();
is(keyspaces(), 'default=0,ks_a=5', 'after a crash: only the committed create exists');

# a create whose transaction crashes after PostgreSQL's commit and before
# kvext's COMMIT record: its client never got success, it does not exist
my $logpos = -s $node->logfile;
$r = kv_call($node, q{
SET kvext.failpoint = 'commit-before-marker';
BEGIN;
SELECT kv_create_keyspace('ks_crash');
SELECT kv_put('k', 'v', 'ks_crash');
COMMIT;});
ok(!$r->{ok}, 'the crashing create got no success');
kv_ready_after_crash($node, $logpos);
is(keyspaces(), 'default=0,ks_a=5', 'a create without its COMMIT record is gone after the crash');

# ... and after its COMMIT record: it exists, with its key
$logpos = -s $node->logfile;
$r = kv_call($node, q{
SET kvext.synchronous_commit = local;
SET kvext.failpoint = 'commit-after-marker';
BEGIN;
SELECT kv_create_keyspace('ks_marked');
SELECT kv_put('k', 'v', 'ks_marked');
COMMIT;});
kv_ready_after_crash($node, $logpos);
is(keyspaces(), 'default=0,ks_a=5,ks_marked=1', 'a create with its COMMIT record exists after the crash');

# a drop in progress while a snapshot is taken, then rolled back or committed
$node->safe_psql('postgres', q{SELECT kv_create_keyspace('ks_b'); SELECT kv_put('b', '1', 'ks_b');});
my $bg = $node->background_psql('postgres');
$bg->query_safe('BEGIN');
$bg->query_safe(q{SELECT kv_drop_keyspace('ks_b')});
$bg->query_safe(q{SELECT kv_create_keyspace('ks_c')});
$bg->query_safe(q{SELECT kv_put('c', '1', 'ks_c')});
is(keyspaces(), 'default=0,ks_a=5,ks_b=1,ks_marked=1',
	'others still see the keyspace being dropped, not the one being created');
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
$bg->query_safe('COMMIT');
$bg->quit;
is(keyspaces(), 'default=0,ks_a=5,ks_c=1,ks_marked=1', 'the drop and the create committed together');
crash();
is(keyspaces(), 'default=0,ks_a=5,ks_c=1,ks_marked=1',
	'after a crash: the snapshot taken in between plus the log give the committed state');
is(kv_scalar($node, q{SELECT kv_get('c', 'ks_c')}), '1', 'the key written in the new keyspace');

# a keyspace created and dropped by a transaction that has not ended is
# seen by nobody else and is not in a snapshot; nor is a committed one
# hidden by it
$node->safe_psql('postgres', q{SELECT kv_create_keyspace('ks_g'); SELECT kv_put('x', 'old', 'ks_g');});
$bg = $node->background_psql('postgres');
$bg->query_safe('BEGIN');
$bg->query_safe(q{SELECT kv_create_keyspace('ghost')});
$bg->query_safe(q{SELECT kv_drop_keyspace('ghost')});
$bg->query_safe(q{SELECT kv_drop_keyspace('ks_g')});
$bg->query_safe(q{SELECT kv_create_keyspace('ks_g')});
$bg->query_safe(q{SELECT kv_drop_keyspace('ks_g')});
is(kv_scalar($node, q{SELECT string_agg(keyspace, ',' ORDER BY keyspace) FROM kv_keyspaces() WHERE keyspace IN ('ghost', 'ks_g')}),
	'ks_g', 'others see neither the abandoned keyspace nor a second ks_g');
is(kv_call($node, q{SELECT kv_get('x', 'ghost')})->{sqlstate}, '42704', 'the abandoned keyspace does not exist for others');
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
$bg->query_safe('ROLLBACK');
$bg->quit;
crash();
is(kv_scalar($node, q{SELECT string_agg(keyspace || '=' || entries, ',' ORDER BY keyspace) FROM kv_keyspaces() WHERE keyspace IN ('ghost', 'ks_g')}),
	'ks_g=1', 'after a crash: no ghost, one ks_g');
is(kv_scalar($node, q{SELECT kv_get('x', 'ks_g')}), 'old', 'and its committed key');

# a writer into a keyspace being dropped waits, then fails once it is gone
$bg = $node->background_psql('postgres');
$bg->query_safe('BEGIN');
$bg->query_safe(q{SELECT kv_drop_keyspace('ks_c')});
$r = kv_call($node, q{SET lock_timeout = '200ms'; SELECT kv_put('c', '2', 'ks_c')});
is($r->{sqlstate}, '55P03', 'a writer waits for the dropping transaction (lock_timeout applies)');
$bg->query_safe('ROLLBACK');
$bg->quit;
$node->safe_psql('postgres', q{SELECT kv_put('c', '2', 'ks_c')});
is(kv_scalar($node, q{SELECT kv_get('c', 'ks_c')}), '2', 'after the drop rolled back, writes go on');

$node->stop;
done_testing();
