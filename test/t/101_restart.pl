# kvext durability: a clean restart keeps everything; restart from a
# snapshot plus the log written after it; kv_wal_status(); a checkpoint
# removes old log segments.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $node = kv_node('restart', "kvext.wal_segment_size = '64kB'\n");

# ---------------------------------------------------------------------------
# data of every kind
$node->safe_psql('postgres', q{
SELECT kv_create_keyspace('ks_a');
SELECT kv_create_keyspace('ks_b');
SELECT kv_create_keyspace('ks_dropped');
SELECT kv_create_keyspace('ks_bin');
SELECT kv_put('key_' || i, 'value_' || i) FROM generate_series(1, 200) i;
SELECT kv_put('a_' || i, repeat('a', i), 'ks_a') FROM generate_series(1, 50) i;
SELECT kv_put('b_' || i, 'b' || i, 'ks_b') FROM generate_series(1, 30) i;
SELECT kv_put('gone_' || i, 'x', 'ks_dropped') FROM generate_series(1, 10) i;
SELECT kv_incr('counter', 41);
SELECT kv_incr('counter');
SELECT kv_put('json', '{"a": [1, 2, {"b": null}]}'::jsonb);
SELECT kv_put('empty', '');
SELECT kv_put('unicode', 'grüße, 日本語, emoji 🎉');
});
# every byte value, and a larger pseudo-random value, in a binary keyspace
$node->safe_psql('postgres', q{
SELECT kv_put('all_bytes', decode(string_agg(lpad(to_hex(i), 2, '0'), '' ORDER BY i), 'hex'), 'ks_bin')
  FROM generate_series(0, 255) i;
SELECT kv_put('nul_only', '\x00000000'::bytea, 'ks_bin');
SELECT kv_put('big', decode(string_agg(md5(i::text), '' ORDER BY i), 'hex'), 'ks_bin')
  FROM generate_series(1, 20000) i;
});
# deletes, a dropped keyspace, rolled-back writes
$node->safe_psql('postgres', q{
SELECT kv_delete('key_' || i) FROM generate_series(1, 200, 10) i;
SELECT kv_drop_keyspace('ks_dropped');
BEGIN;
SELECT kv_put('rolled_back_' || i, 'x') FROM generate_series(1, 5) i;
SELECT kv_put('key_2', 'overwritten, rolled back');
SELECT kv_delete('key_3');
ROLLBACK;
BEGIN;
SELECT kv_put('sp_kept', 'yes');
SAVEPOINT s;
SELECT kv_put('sp_gone', 'no');
SELECT kv_put('sp_kept', 'overwritten in the rolled-back savepoint');
ROLLBACK TO s;
COMMIT;
});
# several writes of one key in one transaction: the last one counts
$node->safe_psql('postgres', q{
BEGIN;
SELECT kv_put('multi', '1');
SELECT kv_put('multi', '2');
SELECT kv_delete('multi');
SELECT kv_put('multi', '3');
SELECT kv_put('put_then_deleted', 'x');
SELECT kv_delete('put_then_deleted');
SELECT kv_incr('multi_ctr') FROM generate_series(1, 5);
COMMIT;
});
# a transaction that fails after writing
my $r = kv_call($node, q{BEGIN; SELECT kv_put('failed_txn', 'x'); SELECT 1/0; COMMIT;});
ok(!$r->{ok}, 'transaction with an error fails');

# a keyspace created, dropped and created again under the same name
$node->safe_psql('postgres', q{
SELECT kv_create_keyspace('ks_re');
SELECT kv_put('old', 'old', 'ks_re');
SELECT kv_drop_keyspace('ks_re');
SELECT kv_create_keyspace('ks_re');
SELECT kv_put('new', 'new', 'ks_re');
});

my %digest;
my $bin_sql =
  q{SELECT string_agg(key || ':' || length(kv_get_bytea(key, 'ks_bin')) || ':' || md5(kv_get_bytea(key, 'ks_bin')), ',' ORDER BY key)
    FROM unnest(ARRAY['all_bytes', 'big', 'nul_only']) key};
my $checks_sql = q{
SELECT kv_get('counter'), kv_get('json')::jsonb = '{"a": [1, 2, {"b": null}]}'::jsonb,
       kv_get('empty') = '', kv_get('unicode'), kv_exists('key_1'), kv_exists('key_2'),
       kv_get('key_2'), kv_get('key_3'), kv_exists('rolled_back_1'), kv_get('sp_kept'),
       kv_exists('sp_gone'), kv_exists('failed_txn'), kv_count(), kv_count('ks_a'),
       kv_count('ks_b'), kv_get('new', 'ks_re'), kv_exists('old', 'ks_re'),
       kv_get('multi'), kv_exists('put_then_deleted'), kv_get('multi_ctr'),
       kv_get_bytea('all_bytes', 'ks_bin') = decode(string_agg(lpad(to_hex(i), 2, '0'), '' ORDER BY i), 'hex')
FROM generate_series(0, 255) i};
my $keyspaces_sql = q{SELECT string_agg(keyspace || '=' || entries, ',' ORDER BY keyspace) FROM kv_keyspaces()};

sub snapshot_state
{
	my %s;
	$s{$_} = kv_digest($node, $_) for qw(default ks_a ks_b ks_re);
	$s{bin}       = kv_scalar($node, $bin_sql);
	$s{checks}    = kv_scalar($node, $checks_sql);
	$s{keyspaces} = kv_scalar($node, $keyspaces_sql);
	return \%s;
}

my $before = snapshot_state();
is($before->{checks},
	'42|t|t|grüße, 日本語, emoji 🎉|f|t|value_2|value_3|f|yes|f|f|187|50|30|new|f|3|f|5|t',
	'values before the restart are as written');
is($before->{keyspaces}, 'default=187,ks_a=50,ks_b=30,ks_bin=3,ks_re=1',
	'keyspaces before the restart');
like($before->{bin}, qr/^all_bytes:256:e2c865db4162bed963bfaa9ef6ac18f0,big:320000:/,
	'binary values before the restart');

my $st = kv_status($node);
is($st->{state}, 'ready', 'state is ready');
ok($st->{insert} > 16, "insert_lsn advanced ($st->{insert})");
ok($st->{flush} >= $st->{insert}, 'flush_lsn >= insert_lsn with synchronous_commit on');
is($st->{snapshot}, -1, 'no snapshot yet: snapshot_lsn is NULL');
is($st->{snapshot_time}, '', 'no snapshot yet: snapshot_time is NULL');
ok($st->{term} >= 1, 'term >= 1');

# ---------------------------------------------------------------------------
# restart after an immediate stop: everything from the log alone (a clean
# shutdown writes a snapshot, see below)
my $logpos = -s $node->logfile;
$node->stop('immediate');
$node->start;
my $after = snapshot_state();
is_deeply($after, $before, 'restart from the log alone keeps keys, values, keyspaces, bytea bytes, deletes and rollbacks');
is(kv_scalar($node, q{SELECT count(*) FROM kv_keyspaces() WHERE keyspace = 'ks_dropped'}),
	'0', 'dropped keyspace stays dropped');
$r = kv_call($node, q{SELECT kv_get('gone_1', 'ks_dropped')});
is($r->{sqlstate}, '42704', 'the dropped keyspace does not exist after restart');
my $log = slurp_file($node->logfile, $logpos);
like($log, qr/kvext recovery complete: no snapshot/, 'recovery replayed the log');
unlike($log, qr/torn record/, 'no torn record after an immediate stop');

my $st2 = kv_status($node);
is($st2->{state}, 'ready', 'state is ready after restart');
ok($st2->{flush} >= $st->{insert},
	"flush_lsn after restart ($st2->{flush}) >= insert_lsn before ($st->{insert})");
ok($st2->{insert} >= $st->{insert}, 'insert_lsn did not go back');

# writes continue after the restart
$node->safe_psql('postgres', q{SELECT kv_put('after_restart', 'yes')});
is(kv_scalar($node, q{SELECT kv_get('after_restart')}), 'yes', 'writes work after restart');

# ---------------------------------------------------------------------------
# snapshot, then more writes: restart from snapshot + log
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
my $st3 = kv_status($node);
ok($st3->{snapshot} > 0, "snapshot_lsn is set after kv_checkpoint() ($st3->{snapshot})");
ok($st3->{snapshot} <= $st3->{insert}, 'snapshot_lsn <= insert_lsn');
isnt($st3->{snapshot_time}, '', 'snapshot_time is set');
ok(-f $node->data_dir . '/kvext/snapshot', 'snapshot file exists');
ok(!-e $node->data_dir . '/kvext/snapshot.tmp', 'no temporary snapshot left');

$node->safe_psql('postgres', q{
SELECT kv_put('key_' || i, 'changed_' || i) FROM generate_series(1, 200, 3) i;
SELECT kv_delete('key_' || i) FROM generate_series(2, 200, 7) i;
SELECT kv_put('post_snap_' || i, 'p' || i) FROM generate_series(1, 100) i;
SELECT kv_incr('counter', 1000);
SELECT kv_put('big', decode(string_agg(md5((i * 7)::text), '' ORDER BY i), 'hex'), 'ks_bin')
  FROM generate_series(1, 5000) i;
SELECT kv_delete('nul_only', 'ks_bin');
SELECT kv_drop_keyspace('ks_b');
SELECT kv_create_keyspace('ks_c');
SELECT kv_put('c_' || i, 'c' || i, 'ks_c') FROM generate_series(1, 20) i;
BEGIN;
SELECT kv_put('post_snap_rb', 'x');
ROLLBACK;
});

sub state2
{
	my %s;
	$s{$_} = kv_digest($node, $_) for qw(default ks_a ks_c ks_re);
	$s{bin}       = kv_scalar($node, $bin_sql);
	$s{keyspaces} = kv_scalar($node, $keyspaces_sql);
	$s{misc}      = kv_scalar($node,
		q{SELECT kv_get('counter'), kv_exists('post_snap_rb'), kv_get('key_4'), kv_exists('key_2')});
	return \%s;
}
my $before2 = state2();
is($before2->{misc}, '1042|f|changed_4|f', 'post-snapshot writes visible');
$logpos = -s $node->logfile;
$node->stop('immediate');
$node->start;
is_deeply(state2(), $before2, 'restart from snapshot + log keeps everything');
$log = slurp_file($node->logfile, $logpos);
like($log, qr/kvext loaded snapshot/, 'the snapshot was loaded');
like($log, qr/kvext recovery complete: from snapshot/, 'and the log after it replayed');
my $st4 = kv_status($node);
is($st4->{snapshot}, $st3->{snapshot}, 'snapshot_lsn survives the restart');
is($st4->{snapshot_time}, $st3->{snapshot_time}, 'snapshot_time survives the restart');

# a clean shutdown flushes the log and writes a snapshot of everything:
# the next start replays nothing
$logpos = -s $node->logfile;
my $insert_before = kv_status($node)->{insert};
$node->restart;
# the store recovers at the first kv call (or when its workers start): wait
# for that before reading the log
$node->safe_psql('postgres', 'SELECT kv_count()');
$log = slurp_file($node->logfile, $logpos);
like($log, qr/kvext checkpointer: shutdown snapshot written/, 'a clean shutdown writes a snapshot');
like($log, qr/kvext recovery complete: from snapshot, 0 log records replayed/,
	'and the next start replays no log');
is_deeply(state2(), $before2, 'restart from the shutdown snapshot keeps everything');
my $st4b = kv_status($node);
ok($st4b->{snapshot} >= $insert_before, 'the shutdown snapshot covers the whole log');
ok($st4b->{watermark} >= $insert_before, 'the control file\'s flush watermark covers the whole log');

# a keyspace dropped after the snapshot must not come back from it
is(kv_call($node, q{SELECT kv_get('b_1', 'ks_b')})->{sqlstate},
	'42704', 'keyspace dropped after the snapshot stays dropped');

# ---------------------------------------------------------------------------
# segment removal: 64kB segments, about 1.5 MB of log, then a checkpoint
for my $batch (1 .. 6)
{
	$node->safe_psql('postgres',
		qq{SELECT kv_put('seg_${batch}_' || i, repeat(md5(i::text), 8)) FROM generate_series(1, 10) i;
		   SELECT kv_put('seg_${batch}_' || i, repeat(md5(i::text), 8)) FROM generate_series(11, 1000) i});
}
# many small transactions too (each is its own record)
$node->safe_psql('postgres', join("\n",
	map { "SELECT kv_put('small_$_', repeat('s', 200));" } 1 .. 300));

my $st5 = kv_status($node);
my @segs = wal_segments($node);
ok($st5->{segments} >= 5, "many segments before the checkpoint ($st5->{segments})");
is(scalar(@segs), $st5->{segments}, 'kv_wal_status().segments matches the files');
for my $i (0 .. $#segs - 1)
{
	my $size = -s wal_dir($node) . "/$segs[$i]";
	is(hex($segs[$i]) + $size, hex($segs[ $i + 1 ]),
		"segment $segs[$i] ends where the next one starts")
	  if $i < 3;
}
my $seg_digest = kv_digest($node, 'default', 'seg_') . kv_digest($node, 'default', 'small_');

$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
my $st6 = kv_status($node);
my @segs2 = wal_segments($node);
ok($st6->{segments} <= 2,
	"second checkpoint removed old segments ($st5->{segments} -> $st6->{segments})");
is(scalar(@segs2), $st6->{segments}, 'segment files match kv_wal_status() after removal');
ok(hex($segs2[0]) <= $st6->{snapshot}, 'the remaining log covers the snapshot redo point');
ok($st6->{snapshot} > $st3->{snapshot}, 'snapshot_lsn advanced');

# more writes after it, then restart from the new snapshot + remaining log
$node->safe_psql('postgres', q{SELECT kv_put('final_' || i, 'f') FROM generate_series(1, 50) i});
my $state4 = state2();
$node->restart;
is_deeply(state2(), $state4, 'everything intact after segment removal and restart');
is(kv_digest($node, 'default', 'seg_') . kv_digest($node, 'default', 'small_'),
	$seg_digest, 'bulk data intact after segment removal and restart');
is(kv_scalar($node, q{SELECT count(*) FROM kv_scan('final_')}), '50', 'writes after the last snapshot intact');
is(kv_scalar($node, q{SELECT kv_get('counter')}), '1042', 'counter intact');

$node->stop;
done_testing();
