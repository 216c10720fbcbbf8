# Copyright (c) 2026, kvext authors
#
# kvext is visible to PostgreSQL's tools:
#  1. its background workers appear in pg_stat_activity with their
#     backend_type and wait events, and keep working there: a snapshot on
#     request, a restart after pg_terminate_backend, the shutdown snapshot,
#     a crash-restart;
#  2. a writer waiting for a key held by another transaction is listed by
#     kv_locks (waiter, keyspace, key, holder pid, and holder xid if the
#     holder has one: key writes take none), waits in pg_stat_activity on
#     the holder's virtualxid, and disappears from
#     kv_locks once the wait ends; the key is hidden from roles without the
#     privileges of the waiter or of pg_read_all_stats;
#  3. errors raised during the wait (lock_timeout, a real deadlock, a
#     cancel) carry a CONTEXT line naming the key, the keyspace and the
#     holder's pid, and leave kv_locks empty, as does a terminated waiter;
#  4. LWLock waits carry kvext's tranche names: a reader blocked on a
#     partition lock that a writer holds (held in place by gdb, so the wait
#     is certain) waits on "kvext partition";
#  5. the same for the second kind of key wait, on a holder that is
#     converting its entries at commit (wait event Extension).
#  4 and 5 hold a backend still with gdb; they are skipped without it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use KvextDurability;

my $node = kv_node('visible', "deadlock_timeout = '100ms'\n");
$node->safe_psql('postgres', q{SELECT kv_create_keyspace('orders')});

# ---------------------------------------------------------------------------
# 1. the workers in pg_stat_activity

my $workers_q = q{SELECT string_agg(backend_type, ',' ORDER BY backend_type)
  FROM pg_stat_activity WHERE backend_type LIKE 'kvext%'};
ok($node->poll_query_until('postgres', $workers_q, 'kvext checkpointer,kvext wal writer'),
	'both kvext workers appear in pg_stat_activity with their backend_type');
ok( $node->poll_query_until(
		'postgres', q{SELECT string_agg(backend_type || '=' || wait_event_type || '/' || wait_event,
                         ',' ORDER BY backend_type)
  FROM pg_stat_activity WHERE backend_type LIKE 'kvext%'},
		'kvext checkpointer=Activity/CheckpointerMain,kvext wal writer=Activity/WalWriterMain'),
	'idle workers report their main-loop wait events');

# still working: a snapshot on request, a restart after pg_terminate_backend
$node->safe_psql('postgres', q{SELECT kv_put('w1', 'one')});
$node->safe_psql('postgres', q{SELECT kv_checkpoint()});
my $ckpt_q = q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'kvext checkpointer'};
my $ckpt_pid = $node->safe_psql('postgres', $ckpt_q);
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($ckpt_pid)"),
	't', 'pg_terminate_backend reaches the checkpointer');
ok( $node->poll_query_until(
		'postgres', qq{SELECT count(*) FROM pg_stat_activity
  WHERE backend_type = 'kvext checkpointer' AND pid <> $ckpt_pid}, '1'),
	'the postmaster restarts it, and it shows again');
$node->safe_psql('postgres', q{SELECT kv_put('w2', 'two'); SELECT kv_checkpoint()});

# connected workers take part in procsignal barriers: DROP DATABASE waits
# for every such process to absorb one, so it would hang if they did not
$node->safe_psql('postgres', 'CREATE DATABASE scratch');
$node->safe_psql('postgres', 'DROP DATABASE scratch', timeout => 60);
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_database WHERE datname = 'scratch'}),
	'0', 'DROP DATABASE completes with the workers connected');

# the shutdown snapshot is still written, and the store comes back
my $log_offset = -s $node->logfile;
$node->restart;
ok($node->log_contains(qr/kvext checkpointer: shutdown snapshot written/, $log_offset),
	'a clean shutdown still ends with a snapshot');
kv_wait_ready($node) or die 'store not ready after restart';
is($node->safe_psql('postgres', q{SELECT kv_get('w1') || kv_get('w2')}), 'onetwo',
	'writes survive the restart');
ok($node->poll_query_until('postgres', $workers_q, 'kvext checkpointer,kvext wal writer'),
	'the workers are back after a restart');

# a crash-restart (kill -9 of a backend): recovery runs in the checkpointer
my $victim = $node->background_psql('postgres', on_error_stop => 0);
my $victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
$log_offset = -s $node->logfile;
kill 'KILL', $victim_pid;
eval { $victim->quit; 1 };
ok(kv_ready_after_crash($node, $log_offset), 'the server restarted and the store recovered');
is($node->safe_psql('postgres', q{SELECT kv_get('w1') || kv_get('w2')}), 'onetwo',
	'recovery after a crash-restart still works');
ok($node->poll_query_until('postgres', $workers_q, 'kvext checkpointer,kvext wal writer'),
	'the workers are back after a crash-restart');
ok(!$node->log_contains(qr/TRAP:/, $log_offset), 'no assertion failure');

# ---------------------------------------------------------------------------
# 2. a waiting writer in kv_locks and pg_stat_activity

$log_offset = -s $node->logfile;

$node->safe_psql('postgres', q{
CREATE ROLE outsider LOGIN;
CREATE ROLE watcher LOGIN IN ROLE pg_read_all_stats;
});

my $holder = $node->background_psql('postgres', on_error_stop => 0);
my $waiter = $node->background_psql('postgres', on_error_stop => 0);
my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
my $waiter_pid = $waiter->query_safe('SELECT pg_backend_pid()');
$waiter->query_safe('\set VERBOSITY verbose');
$holder->query_safe('\set VERBOSITY verbose');

# pump a session until its stdout and stderr both carry marker (written
# with \echo and \warn after the statement)
sub wait_marker
{
	my ($s, $marker) = @_;
	$s->{run}->pump
	  until ($s->{stdout} =~ /\Q$marker\E/ && $s->{stderr} =~ /\Q$marker\E/)
	  || $s->{timeout}->is_expired;
	die "timed out waiting for $marker" if $s->{timeout}->is_expired;
	my $err = $s->{stderr};
	$s->{stdout} = $s->{stderr} = '';
	return $err;
}

# run sql in session s without waiting for it; returns once psql has it
sub start_sql
{
	my ($s, $sql, $marker) = @_;
	$s->query_until(qr/start-$marker/,
		"\\echo start-$marker\n$sql\n\\echo $marker\n\\warn $marker\n");
}

my $locks_q = q{SELECT string_agg(concat_ws('|', pid, keyspace, key, holder_pid, holder_xid,
                                   wait_start <= now()), ',' ORDER BY pid)
  FROM kv_locks};

is($node->safe_psql('postgres', $locks_q), '', 'kv_locks is empty with nobody waiting');

$holder->query_safe(q{BEGIN; SELECT kv_put('order:42', 'held', 'orders')});
is($holder->query_safe('SELECT pg_current_xact_id_if_assigned() IS NULL'), 't',
	'the holder has no xid');
start_sql($waiter, q{SELECT kv_put('order:42', 'mine', 'orders');}, 'done1');

# concat_ws skips the NULL holder_xid
ok( $node->poll_query_until(
		'postgres', $locks_q, "$waiter_pid|orders|order:42|$holder_pid|t"),
	'kv_locks shows the waiter, keyspace, key and holder pid, and no xid');
is( $node->safe_psql(
		'postgres', qq{SELECT wait_event_type || '/' || wait_event FROM pg_stat_activity
  WHERE pid = $waiter_pid}),
	'Lock/virtualxid',
	'the waiter waits on the holder\'s virtualxid in pg_stat_activity');
is( $node->safe_psql(
		'postgres', qq{SELECT w.virtualxid = h.virtualtransaction
  FROM pg_locks w JOIN pg_locks h ON h.pid = $holder_pid AND h.locktype = 'virtualxid' AND h.granted
  WHERE w.pid = $waiter_pid AND w.locktype = 'virtualxid' AND NOT w.granted}),
	't', '... which pg_locks shows as a wait on the holder\'s virtual xid');
is($node->safe_psql('postgres', q{SELECT count(*) FROM kv_locks()}),
	'1', 'the kv_locks view and kv_locks() agree');
is( $node->safe_psql(
		'postgres', q{SELECT pid::text || ',' || (keyspace IS NULL)::text || ',' || (key IS NULL)::text
  FROM kv_locks}, extra_params => [ '-U', 'outsider' ]),
	"$waiter_pid,true,true",
	'another role sees the wait but neither the keyspace nor the key');
is( $node->safe_psql(
		'postgres', q{SELECT key FROM kv_locks}, extra_params => [ '-U', 'watcher' ]),
	'order:42', 'a member of pg_read_all_stats sees the key');

$holder->query_safe('COMMIT');
is(wait_marker($waiter, 'done1') =~ /ERROR/ ? 'error' : 'ok', 'ok',
	'the waiter goes on once the holder commits');
is($node->safe_psql('postgres', $locks_q), '', 'kv_locks is empty after the wait');
is($node->safe_psql('postgres', q{SELECT kv_get('order:42', 'orders')}), 'mine',
	'the waiter wrote after the holder');

# ---------------------------------------------------------------------------
# 3. errors during the wait name the key, the keyspace and the holder

# a holder without an xid is named by its pid
$holder->query_safe(q{BEGIN; SELECT kv_put('order:42', 'noxid', 'orders')});
start_sql($waiter,
	q{SET lock_timeout = '200ms'; SELECT kv_put('order:42', 'late', 'orders'); RESET lock_timeout;},
	'done2a');
like(wait_marker($waiter, 'done2a'),
	qr/ERROR:  55P03: canceling statement due to lock timeout\nCONTEXT:  while waiting for key "order:42" of keyspace "orders", held by a transaction of process $holder_pid\n/,
	'the lock_timeout error names the key, keyspace and the pid of a holder without an xid');
$holder->query_safe('ROLLBACK');

# lock_timeout
# (a holder with an xid, which then appears in the context)
$holder->query_safe(q{BEGIN; SELECT kv_put('order:42', 'again', 'orders')});
my $holder_xid = $holder->query_safe('SELECT pg_current_xact_id()');
start_sql($waiter,
	q{SET lock_timeout = '1s'; SELECT kv_put('order:42', 'late', 'orders'); RESET lock_timeout;},
	'done2');
my $err = wait_marker($waiter, 'done2');
like($err, qr/ERROR:  55P03: canceling statement due to lock timeout\n/,
	'lock_timeout ends the wait');
like(
	$err,
	qr/CONTEXT:  while waiting for key "order:42" of keyspace "orders", held by transaction $holder_xid of process $holder_pid\n/,
	'the lock_timeout error names the key, keyspace and holder');
is($node->safe_psql('postgres', $locks_q), '', 'kv_locks is empty after a lock_timeout');

# a cancel
start_sql($waiter, q{SELECT kv_put('order:42', 'late', 'orders');}, 'done3');
ok($node->poll_query_until('postgres', q{SELECT count(*) FROM kv_locks}, '1'), 'waiting again');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($waiter_pid)");
$err = wait_marker($waiter, 'done3');
like($err, qr/ERROR:  57014: canceling statement due to user request\nCONTEXT:  while waiting for key "order:42" of keyspace "orders", held by transaction $holder_xid of process $holder_pid\n/,
	'a cancelled wait names the key, keyspace and holder');
is($node->safe_psql('postgres', $locks_q), '', 'kv_locks is empty after a cancel');
$holder->query_safe('ROLLBACK');

# a real deadlock: each session holds the key the other one wants
$holder->query_safe(q{BEGIN; SELECT kv_put('d1', 'h', 'orders')});
$waiter->query_safe(q{BEGIN; SELECT kv_put('d2', 'w', 'orders')});
my $hxid = $holder->query_safe('SELECT pg_current_xact_id()');
my $wxid = $waiter->query_safe('SELECT pg_current_xact_id()');
start_sql($holder, q{SELECT kv_put('d2', 'h', 'orders');}, 'done4');
ok( $node->poll_query_until(
		'postgres', $locks_q, "$holder_pid|orders|d2|$waiter_pid|$wxid|t"),
	'first half of the deadlock is in kv_locks');
start_sql($waiter, q{SELECT kv_put('d1', 'w', 'orders');}, 'done5');
my $herr = wait_marker($holder, 'done4');
my $werr = wait_marker($waiter, 'done5');
my $victims = ($herr =~ /40P01/ ? 1 : 0) + ($werr =~ /40P01/ ? 1 : 0);
is($victims, 1, 'exactly one session gets 40P01');
if ($herr =~ /40P01/)
{
	like($herr,
		qr/ERROR:  40P01: deadlock detected\n(?:.*\n)*?CONTEXT:  while waiting for key "d2" of keyspace "orders", held by transaction $wxid of process $waiter_pid\n/,
		'the deadlock report names the key, keyspace and holder');
}
else
{
	like($werr,
		qr/ERROR:  40P01: deadlock detected\n(?:.*\n)*?CONTEXT:  while waiting for key "d1" of keyspace "orders", held by transaction $hxid of process $holder_pid\n/,
		'the deadlock report names the key, keyspace and holder');
}
$holder->query('ROLLBACK');
$waiter->query('ROLLBACK');
$holder->{stderr} = $waiter->{stderr} = '';
is($node->safe_psql('postgres', $locks_q), '', 'kv_locks is empty after a deadlock');

# a writer waiting for a transaction that drops the keyspace: a row with
# a NULL key, and an error context naming the keyspace and the dropper
$node->safe_psql('postgres', q{SELECT kv_create_keyspace('doomed')});
$holder->query_safe(q{BEGIN; SELECT kv_drop_keyspace('doomed')});
my $dxid = $holder->query_safe('SELECT pg_current_xact_id()');
start_sql($waiter, q{SELECT kv_put('x', '1', 'doomed');}, 'done8');
ok( $node->poll_query_until(
		'postgres', q{SELECT concat_ws('|', pid, keyspace, key IS NULL, holder_pid, holder_xid) FROM kv_locks},
		"$waiter_pid|doomed|t|$holder_pid|$dxid"),
	'a wait for a keyspace drop is in kv_locks, with a NULL key');
$node->safe_psql('postgres', "SELECT pg_cancel_backend($waiter_pid)");
like(wait_marker($waiter, 'done8'),
	qr/ERROR:  57014: canceling statement due to user request\nCONTEXT:  while waiting for transaction $dxid of process $holder_pid, which creates or drops keyspace "doomed"\n/,
	'a cancel of that wait names the keyspace and the dropper');
is($node->safe_psql('postgres', $locks_q), '', 'kv_locks is empty after it');
$holder->query_safe('ROLLBACK');

# a waiter that is terminated leaves no trace
$holder->query_safe(q{BEGIN; SELECT kv_put('order:42', 'x', 'orders')});
start_sql($waiter, q{SELECT kv_put('order:42', 'y', 'orders');}, 'done6');
ok($node->poll_query_until('postgres', q{SELECT count(*) FROM kv_locks}, '1'), 'waiting once more');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($waiter_pid)");
ok($node->poll_query_until('postgres', q{SELECT count(*) FROM kv_locks}, '0'),
	'kv_locks is empty after the waiter was terminated');
eval { $waiter->quit; 1 };
$holder->query_safe('ROLLBACK');
ok(!$node->log_contains(qr/TRAP:|terminated by signal/, $log_offset),
	'no backend crashed');

# ---------------------------------------------------------------------------
# 4. LWLock tranche names in wait events

SKIP:
{
	my $a = $node->background_psql('postgres');
	my $apid = $a->query_safe('SELECT pg_backend_pid()');

	# hold A at KvAlloc: its write has the key's partition lock exclusively
	my $g = gdb_hold($apid, 'KvAlloc', kvext => 1);
	if (!$g)
	{
		$a->quit;
		skip 'gdb is missing or cannot hold a backend here', 2;
	}
	$a->{stdin} .= "SELECT kv_put('lw', 'held');\n";
	$a->{run}->pump_nb;
	my $held = gdb_wait_hit($g);
	if (!$held)
	{
		gdb_release($g);
		$a->quit;
		skip 'the writer never reached KvAlloc', 2;
	}

	# B reads the same key: it needs the partition lock in shared mode
	my $b = $node->background_psql('postgres');
	my $bpid = $b->query_safe('SELECT pg_backend_pid()');
	$b->query_until(qr/start-lw/, "\\echo start-lw\nSELECT kv_get('lw');\n\\echo done-lw\n");
	ok( $node->poll_query_until(
			'postgres', qq{SELECT wait_event_type || '/' || wait_event
  FROM pg_stat_activity WHERE pid = $bpid}, 'LWLock/kvext partition'),
		'a reader blocked on a partition lock waits on "kvext partition"');

	gdb_release($g, detach => 1);
	like($b->query_until(qr/done-lw/, ''), qr/done-lw/, 'the reader goes on once the writer does');
	like($a->query_safe(q{SELECT kv_get('lw')}), qr/held$/, 'and so does the writer');
	$a->quit;
	$b->quit;
}

# ---------------------------------------------------------------------------
# 5. the second kind of key wait: for a holder that is converting its
#    entries at commit (held by gdb at its first KvStoreCommitEntry, after
#    its COMMIT record, with every entry still pending)

SKIP:
{
	my $h = $node->background_psql('postgres');
	my $hpid = $h->query_safe('SELECT pg_backend_pid()');
	$h->query_safe(q{BEGIN; SELECT kv_put('c1', 'h', 'orders'), kv_put('c2', 'h', 'orders')});
	my $hxid = $h->query_safe('SELECT pg_current_xact_id()');

	my $g = gdb_hold($hpid, 'KvStoreCommitEntry', kvext => 1);
	if (!$g)
	{
		$h->quit;
		skip 'gdb is missing or cannot hold a backend here', 6;
	}
	$h->{stdin} .= "COMMIT;\n";
	$h->{run}->pump_nb;
	my $held = gdb_wait_hit($g);
	if (!$held)
	{
		gdb_release($g);
		$h->quit;
		skip 'the committing session never reached KvStoreCommitEntry', 6;
	}

	my $w = $node->background_psql('postgres', on_error_stop => 0);
	my $wpid = $w->query_safe('SELECT pg_backend_pid()');
	$w->query_safe('\set VERBOSITY verbose');
	start_sql($w, q{SELECT kv_put('c2', 'w', 'orders');}, 'done7');
	# PostgreSQL's commit has cleared the holder's xid: none is shown
	ok($node->poll_query_until('postgres', $locks_q, "$wpid|orders|c2|$hpid|t"),
		'a wait for a committing holder is in kv_locks');
	is( $node->safe_psql(
			'postgres', qq{SELECT wait_event_type || '/' || wait_event FROM pg_stat_activity
  WHERE pid = $wpid}),
		'Extension/Extension',
		'... and waits on wait event Extension');
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($wpid)");
	like(wait_marker($w, 'done7'),
		qr/ERROR:  57014: canceling statement due to user request\nCONTEXT:  while waiting for key "c2" of keyspace "orders", held by a transaction of process $hpid\n/,
		'a cancel of that wait names the key, keyspace and holder');
	is($node->safe_psql('postgres', $locks_q), '', 'kv_locks is empty after that cancel');

	start_sql($w, q{SELECT kv_put('c2', 'w', 'orders');}, 'done8');
	ok($node->poll_query_until('postgres', q{SELECT count(*) FROM kv_locks}, '1'),
		'waiting for the committing holder again');
	gdb_release($g, detach => 1);
	wait_marker($w, 'done8');
	is( $node->safe_psql('postgres',
			q{SELECT (SELECT count(*) FROM kv_locks) || ',' || kv_get('c1', 'orders') || kv_get('c2', 'orders')}),
		'0,hw', 'once the holder finishes, the waiter writes and kv_locks is empty');
	$h->quit;
	$w->quit;
}

$holder->quit;
$node->stop;

done_testing();
