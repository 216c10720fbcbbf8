# Copyright (c) 2026, kvext authors
#
# Crash-restart and clean restart.
#
# kill -9 of one backend makes the postmaster kill every other backend and
# re-create shared memory (restart_after_crash = on, the default); kvext's
# startup hook runs again and the checkpointer worker rebuilds the store
# from its log.  Afterwards every committed key is back, no uncommitted one
# appears, and every kv function works.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'kvext'
kvext.memory_limit = '16MB'
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION kvext');

sub mem_used
{
	return $node->safe_psql('postgres',
		'SELECT memory_used FROM kv_stats() WHERE keyspace IS NULL');
}
my $mem_empty = mem_used();

# Some committed data, in two keyspaces.
$node->safe_psql(
	'postgres', q{
SELECT kv_create_keyspace('ks2');
SELECT count(kv_put('c' || i, 'val' || i)) FROM generate_series(1, 1000) i;
SELECT kv_put('in-ks2', 'x', 'ks2');
SELECT kv_incr('ctr', 41);
});
is($node->safe_psql('postgres', 'SELECT kv_count()'), '1001',
	'committed keys before the crash');

# ---------------------------------------------------------------------------
# 1. kill -9 of one backend, while another backend has uncommitted writes
#    (holding key write locks) and a third is idle.
my $victim = $node->background_psql('postgres', on_error_stop => 0);
my $victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
$victim->query_safe(
	q{BEGIN; SELECT count(kv_put('c' || i, 'uncommitted')) FROM generate_series(1, 500) i});

my $other = $node->background_psql('postgres', on_error_stop => 0);
$other->query_safe(q{BEGIN; SELECT kv_put('pending-other', 'p')});

my $log_offset = -s $node->logfile;
ok(kill('KILL', $victim_pid), "sent SIGKILL to backend $victim_pid");

# The postmaster notices, terminates everything and reinitializes.
$node->wait_for_log(
	qr/server process \(PID $victim_pid\) was terminated by signal 9/,
	$log_offset);
$node->wait_for_log(qr/all server processes terminated; reinitializing/,
	$log_offset);
ok($node->poll_query_until('postgres', 'SELECT 1', '1'),
	'server accepts connections after the crash-restart');
$node->wait_for_log(qr/database system is ready to accept connections/,
	$log_offset);

# The sessions connected during the crash are gone; their psql processes
# report a lost connection.  Close them without caring about the status.
for my $s ($victim, $other)
{
	eval { $s->quit; };
}

# kv functions work after the crash-restart.
is($node->safe_psql('postgres', q{SELECT kv_put('after-crash', 'ok')}),
	'', 'kv_put works after the crash-restart');
is($node->safe_psql('postgres', q{SELECT kv_get('after-crash')}),
	'ok', 'kv_get works after the crash-restart');
is($node->safe_psql('postgres', q{SELECT kv_incr('ctr2', 2)}),
	'2', 'kv_incr works after the crash-restart');
is($node->safe_psql('postgres', q{SELECT kv_cas('after-crash', 'ok', 'ok2')}),
	't', 'kv_cas works after the crash-restart');

# Recovery rebuilt the store from kvext's log: every committed key is back
# (1001 before the crash, plus 2 written since), none of the killed
# transactions' uncommitted writes.
is($node->safe_psql('postgres', q{SELECT kv_get('c1') || kv_get('c1000')}),
	'val1val1000', 'committed keys survive the crash-restart');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM generate_series(1, 1000) i WHERE kv_get('c' || i) = 'val' || i}),
	'1000', 'every committed value survives');
is($node->safe_psql('postgres', q{SELECT kv_get('ctr')}), '41',
	'committed counter survives');
is($node->safe_psql('postgres', q{SELECT kv_get('in-ks2', 'ks2')}), 'x',
	'keyspace and its key survive');
is($node->safe_psql('postgres', 'SELECT kv_count()'),
	'1003', 'committed keys plus the 2 written after the crash');
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM kv_scan('') WHERE value = 'uncommitted'}),
	'0',
	'no uncommitted write of the killed backend is visible');
is($node->safe_psql('postgres', q{SELECT kv_get('pending-other')}),
	'', 'no uncommitted write of the other killed backend is visible');

# The key write locks held by the killed transactions are gone: writing
# those keys does not wait (lock_timeout would fire).
is( $node->safe_psql(
		'postgres', q{
SET lock_timeout = '5s';
SELECT count(kv_put('c' || i, 'new')) FROM generate_series(1, 500) i;
SELECT kv_put('pending-other', 'q');
SELECT kv_get('c1') || kv_get('pending-other');}),
	"500\n\nnewq",
	'keys locked by killed transactions are writable');

# The store's accounting is consistent after re-creation.
is( $node->safe_psql(
		'postgres',
		q{SELECT kv_count() = (SELECT count(*) FROM kv_scan(''))}),
	't',
	'kv_count agrees with kv_scan');
is( $node->safe_psql(
		'postgres', q{SELECT string_agg(keyspace, ',' ORDER BY keyspace) FROM kv_keyspaces()}),
	'default,ks2',
	'keyspaces survive the crash-restart');
$node->safe_psql('postgres',
	q{SELECT count(kv_delete(key)) FROM kv_scan(''); SELECT kv_drop_keyspace('ks2')});
is(mem_used(), $mem_empty,
	'memory_used of the empty store is what it was at first start');

# A keyspace can be created again and used.
$node->safe_psql('postgres',
	q{SELECT kv_create_keyspace('ks2'); SELECT kv_put('k', 'v', 'ks2')});
is($node->safe_psql('postgres', q{SELECT kv_get('k', 'ks2')}),
	'v', 'keyspaces work after the crash-restart');

# A second crash in a row works the same.
$victim = $node->background_psql('postgres', on_error_stop => 0);
$victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
$log_offset = -s $node->logfile;
kill('KILL', $victim_pid);
$node->wait_for_log(qr/all server processes terminated; reinitializing/,
	$log_offset);
ok($node->poll_query_until('postgres', 'SELECT 1', '1'),
	'server accepts connections after a second crash-restart');
eval { $victim->quit; };
$node->safe_psql('postgres', q{SELECT kv_put('second', '2')});
is($node->safe_psql('postgres', q{SELECT kv_get('second')}),
	'2', 'kv functions work after a second crash-restart');

# ---------------------------------------------------------------------------
# 2. A backend that exits normally (pg_terminate_backend: FATAL, not a
#    crash) with uncommitted writes cleans them up: no orphaned write lock,
#    no leaked memory, no server restart.
my $mem_before = mem_used();
my $count_before = $node->safe_psql('postgres', 'SELECT kv_count()');
my $term = $node->background_psql('postgres', on_error_stop => 0);
my $term_pid = $term->query_safe('SELECT pg_backend_pid()');
$term->query_safe(
	q{BEGIN; SELECT count(kv_put('t' || i, 'x')) FROM generate_series(1, 100) i; SELECT kv_put('second', 'uncommitted')});
$log_offset = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($term_pid, 10000)"),
	't', 'terminated a backend with uncommitted writes');
eval { $term->quit; };
is( $node->safe_psql(
		'postgres',
		q{SET lock_timeout = '5s'; SELECT kv_incr('t1'); SELECT kv_get('second');}),
	"1\n2",
	'its keys are free and its writes never became visible');
$node->safe_psql('postgres', q{SELECT kv_delete('t1')});
is(mem_used(), $mem_before, 'its pending entries were freed');
is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$count_before, 'count unchanged');
ok(!$node->log_contains(qr/reinitializing|terminated by signal/, $log_offset),
	'no crash-restart for a terminated backend');

# ---------------------------------------------------------------------------
# 3. Clean restart: the server comes back and the extension works.
$node->restart;
is($node->safe_psql('postgres', q{SELECT kv_put('after-restart', 'yes')}),
	'', 'kv_put works after a clean restart');
is($node->safe_psql('postgres', q{SELECT kv_get('after-restart')}),
	'yes', 'kv_get works after a clean restart');
is($node->safe_psql('postgres', q{SELECT kv_get('second')}),
	'2', 'keys survive a clean restart');
is($node->safe_psql('postgres', 'SELECT kv_count()'),
	$count_before + 1, 'count preserved across the restart (plus one new key)');
is( $node->safe_psql(
		'postgres', 'SELECT memory_limit FROM kv_stats() WHERE keyspace IS NULL'),
	16 * 1024 * 1024,
	'memory_limit as configured');

$node->stop;

done_testing();
