# Copyright (c) 2026, kvext authors
#
# Durability corner cases found in review:
#  1. the checkpointer worker exiting (SIGTERM) while a session holds
#     uncommitted writes: the postmaster restarts it, and it must not replay
#     the log into the live store;
#  2. a transaction that writes a table and keys with PostgreSQL's
#     synchronous_commit = off and kvext.synchronous_commit = off, then a
#     snapshot, then a crash: both the row and the key survive, or neither
#     (the keys only become visible once PostgreSQL's commit is durable);
#  3. a drop of a keyspace that fails does not lose the keyspace across a
#     snapshot and a restart.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use KvextDurability;

my $node = kv_node('review', "wal_writer_delay = '10s'\n");

# ---------------------------------------------------------------------------
# 1. checkpointer restart with a live store
$node->safe_psql('postgres',
	q{SELECT count(kv_put('r' || i, 'v' || i)) FROM generate_series(1, 1000) i});
my $held = $node->background_psql('postgres', on_error_stop => 0);
$held->query_safe(q{BEGIN; SELECT kv_put('r1', 'pending'), kv_put('held-new', 'x')});

# find the worker among the postmaster's children by its process title (it
# is also in pg_stat_activity, see 130_visible_waits.pl)
sub checkpointer_pid
{
	return server_process($node, qr/kvext checkpointer/);
}
my $ckpt_pid = checkpointer_pid();
like($ckpt_pid, qr/^\d+$/, 'found the kvext checkpointer') or die 'no checkpointer to signal';
my $log_offset = -s $node->logfile;
ok(kill('TERM', $ckpt_pid), 'sent SIGTERM to the checkpointer');
my $new_pid = '';
for (1 .. 100)
{
	$new_pid = checkpointer_pid();
	last if $new_pid ne '' && $new_pid != $ckpt_pid;
	select(undef, undef, undef, 0.1);
}
ok($new_pid ne '' && $new_pid != $ckpt_pid, 'the postmaster restarted the checkpointer');
ok(!$node->log_contains(qr/TRAP|terminated by signal|reinitializing/, $log_offset),
	'no crash, no crash-restart');
ok(!$node->log_contains(qr/kvext recovery complete/, $log_offset),
	'the restarted checkpointer did not replay the log into the live store');
is($node->safe_psql('postgres', q{SELECT kv_get('r1') || ',' || coalesce(kv_get('held-new'), 'absent')}),
	'v1,absent', 'other sessions still see committed data only');
$held->query_safe('COMMIT');
$held->quit;
is($node->safe_psql('postgres', q{SELECT kv_get('r1') || ',' || kv_get('held-new')}),
	'pending,x', 'the held transaction commits normally');
is($node->safe_psql('postgres', q{SELECT kv_checkpoint(); SELECT state FROM kv_wal_status()}),
	"\nready", 'the new checkpointer serves kv_checkpoint()');
$node->restart;
is($node->safe_psql('postgres', q{SELECT kv_get('r1') || ',' || kv_get('held-new') || ',' || kv_count()}),
	'pending,x,1001', 'all of it survives a restart');

# ---------------------------------------------------------------------------
# 2. mixed transaction, everything asynchronous, snapshot, crash
$node->safe_psql('postgres', 'CREATE TABLE mixed (i int)');
$node->safe_psql(
	'postgres', q{
SET synchronous_commit = off;
SET kvext.synchronous_commit = off;
BEGIN;
INSERT INTO mixed VALUES (1);
SELECT kv_put('mixed', '1');
COMMIT;
SELECT kv_checkpoint();
});
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
my $row = $node->safe_psql('postgres', 'SELECT count(*) FROM mixed');
my $key = $node->safe_psql('postgres', q{SELECT coalesce(kv_get('mixed'), 'absent')});
ok(($row eq '1' && $key eq '1') || ($row eq '0' && $key eq 'absent'),
	"table row and key survive together (row count $row, key $key)");
is("$row/$key", '1/1',
	'a mixed commit whose keys were visible is durable in both logs');

# ---------------------------------------------------------------------------
# 3. failed drops and snapshots
$node->safe_psql('postgres', q{SELECT kv_create_keyspace('fd'); SELECT kv_put('x', 'y', 'fd')});
my $fd = $node->background_psql('postgres', on_error_stop => 0);
$fd->query_safe(q{BEGIN; SELECT kv_put('pend', 'p', 'fd')});
for (1 .. 5)
{
	my ($ret, $out, $err) = $node->psql('postgres',
		q{SET lock_timeout = '100ms'; SELECT kv_drop_keyspace('fd')});
	like($err, qr/lock timeout/, "drop $_ waits for a pending write, and fails at lock_timeout");
	$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
}
$fd->query_safe('COMMIT');
$fd->quit;
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is($node->safe_psql('postgres', q{SELECT kv_get('x', 'fd') || kv_get('pend', 'fd')}),
	'yp', 'the keyspace and its keys survive failed drops, snapshots and a crash');

$node->stop;
done_testing();
