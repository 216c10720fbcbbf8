# Copyright (c) 2026, kvext authors
#
# kvext's log buffers (kvext.wal_buffers): records are copied into a ring in
# shared memory and written to the log file by the next flush, when the
# ring fills, or at once when they are larger than a quarter of it.
#
# - an `off` commit leaves its records in the ring, not in the file, until
#   the wal writer flushes (it wrote its TXN record to the file before);
# - a small ring (64kB) under concurrent writers of values from 1 byte to
#   40kB (so records wrap around the ring's end, fill it, and skip it when
#   large): every acknowledged `local` commit survives an immediate stop,
#   every `off` commit a clean stop, byte for byte;
# - the wal writer is woken to write the ring when it is half full
#   (failpoint wal-writer-no-timer: its timer does nothing), and
#   kv_wal_stats() counts records, bytes, writes and the inserts that
#   found the ring full (the writer stopped);
# - a record that cannot have its blocks (the wal-enospc failpoint) fails
#   with nothing inserted, and the ring goes on.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $node = kv_node(
	'log_buffers', q{
kvext.wal_buffers = '64kB'
kvext.wal_segment_size = '1MB'
kvext.checkpoint_timeout = '1d'
kvext.memory_limit = '256MB'
});

is(kv_scalar($node, 'SHOW kvext.wal_buffers'), '64kB', 'kvext.wal_buffers is set');

# ---------------------------------------------------------------------------
# an off commit stays in the ring until a flush
my $walwriter = server_process($node, qr/kvext wal writer/, 60);
ok($walwriter, 'found the kvext wal writer') or die 'no kvext wal writer to stop';
# stop it idle, between flushes: stopped inside one it would hold the log's
# write lock, and the backends that need it would wait for it
ok( $node->poll_query_until(
		'postgres', qq{SELECT wait_event = 'WalWriterMain'
			AND (SELECT flush_lsn = insert_lsn FROM kv_wal_status())
			FROM pg_stat_activity WHERE pid = $walwriter}),
	'the kvext wal writer is idle');
kill 'STOP', $walwriter;

# one session: a backend flushes what it wrote when it exits
my $r = $node->safe_psql(
	'postgres', q{
SET kvext.synchronous_commit = off;
SELECT kv_put('ring_1', 'in the ring');
SELECT kv_put('ring_2', repeat('r', 500));
SELECT (insert_lsn - '0/0')::bigint AS ins, (flush_lsn - '0/0')::bigint AS fl FROM kv_wal_status() \gset
SELECT f AS seg FROM pg_ls_dir('kvext/wal') f WHERE f ~ '^[0-9A-F]{16}$' ORDER BY f DESC LIMIT 1 \gset
SELECT :ins > :fl,
       pg_read_binary_file('kvext/wal/' || :'seg', :fl - ('x' || :'seg')::bit(64)::bigint, :ins - :fl)
         = decode(repeat('00', (:ins - :fl)::int), 'hex'),
       :ins - :fl;
});
my ($unflushed, $zeros, $bytes) = split /\|/, (split /\n/, $r)[-1];
is($unflushed, 't', 'off: the commits are not flushed while the wal writer is stopped');
is($zeros, 't', "off: none of their $bytes bytes is in the log file yet (they are in the log buffers)");
kill 'CONT', $walwriter;
ok( $node->poll_query_until(
		'postgres', q{SELECT flush_lsn = insert_lsn FROM kv_wal_status()}),
	'the wal writer flushes them');
$r = $node->safe_psql(
	'postgres', q{
SELECT (insert_lsn - '0/0')::bigint AS ins FROM kv_wal_status() \gset
SELECT f AS seg FROM pg_ls_dir('kvext/wal') f WHERE f ~ '^[0-9A-F]{16}$' ORDER BY f DESC LIMIT 1 \gset
-- the last record, the COMMIT of ring_2: 40 bytes, its length first
SELECT get_byte(pg_read_binary_file('kvext/wal/' || :'seg', :ins - ('x' || :'seg')::bit(64)::bigint - 40, 40), 4);
});
is($r, '40', 'after the flush the log file holds the COMMIT record');
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is(kv_scalar($node, q{SELECT kv_get('ring_1') || length(kv_get('ring_2'))}),
	'in the ring500', 'the flushed off commits survive an immediate stop');

# ---------------------------------------------------------------------------
# concurrent writers through a small ring: wrap-around, full ring, records
# written at once (over 16kB)
my $script = q{
\set k random(1, 400)
\set n random(1, 40000)
SELECT kv_put('w' || :k, repeat(md5(:k::text), :n / 32 + 1)::text || :n);
};
my $before_stop;
for my $mode ('local', 'off')
{
	local $ENV{PGOPTIONS} = "-c kvext.synchronous_commit=$mode";
	$node->pgbench(
		'-n -c 4 -j 2 -t 250', 0,
		[qr{processed: 1000/1000}],
		[qr{^$}],
		"$mode: 4 clients write values of 1 byte to 40kB through a 64kB ring",
		{ "144_$mode" => $script });
	$before_stop = kv_digest($node, 'default', 'w');
	my $big = kv_scalar($node,
		q{SELECT count(*) FILTER (WHERE length(value) > 16384) || ' ' || count(*) FROM kv_scan('w')});
	my ($nbig, $n) = split / /, $big;
	cmp_ok($nbig, '>', 10, "$mode: some values are over a quarter of the ring ($nbig of $n)");
	if ($mode eq 'local')
	{
		$node->stop('immediate');
	}
	else
	{
		$node->stop('fast');
	}
	$node->start;
	kv_wait_ready($node);
	is(kv_digest($node, 'default', 'w'), $before_stop,
		$mode eq 'local'
		? 'local: every acknowledged commit survives an immediate stop'
		: 'off: every commit survives a clean stop');
}

# ---------------------------------------------------------------------------
# the wal writer is woken to write the ring when it is half full, so that
# inserts seldom find it full (kv_wal_stats().buffers_full) and write it
# under the insert lock themselves.  Failpoint wal-writer-no-timer: the
# writer works only when woken, never on its kvext.wal_writer_delay timer.
# (larger segments: a segment switch would flush, and wake the writer)
$node->append_conf('postgresql.conf',
	"kvext.failpoint = 'wal-writer-no-timer'\nkvext.wal_segment_size = '16MB'");
$node->restart;
kv_wait_ready($node);
# the writer has started (it announces itself to inserts before it shows)
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
			WHERE backend_type = 'kvext wal writer' AND wait_event = 'WalWriterMain'}),
	'the kvext wal writer runs');
my $stats = q{SELECT records || ' ' || bytes || ' ' || buffers_full || ' ' || writes FROM kv_wal_stats()};
my ($rec0, $bytes0, $full0, $writes0) = split / /, kv_scalar($node, $stats);
# five off commits of about 7kB, one session (a backend that exits flushes
# what it wrote, so the same session then waits for the writer).  The fifth
# TXN record takes the ring past half full and wakes the writer, whose flush
# may come before that commit's COMMIT record is inserted: the flush is
# waited for past the log's end before the fifth commit, not to its end.
$r = $node->safe_psql(
	'postgres', q{
SET kvext.synchronous_commit = off;
SELECT kv_put('half_1', repeat('h', 7000));
SELECT kv_put('half_2', repeat('h', 7000));
SELECT kv_put('half_3', repeat('h', 7000));
SELECT kv_put('half_4', repeat('h', 7000));
SELECT set_config('kvtest.mark', insert_lsn::text, false) FROM kv_wal_status();
SELECT 'unflushed ' || (insert_lsn - flush_lsn) FROM kv_wal_status();
SELECT kv_put('half_5', repeat('h', 7000));
DO $$
BEGIN
	FOR i IN 1 .. 1800 LOOP
		EXIT WHEN (SELECT flush_lsn > current_setting('kvtest.mark')::pg_lsn FROM kv_wal_status());
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;
SELECT 'flushed ' || (flush_lsn > current_setting('kvtest.mark')::pg_lsn) FROM kv_wal_status();
});
my ($unflushed4) = $r =~ /^unflushed (\d+)$/m;
my ($flushed5) = $r =~ /^flushed (\w+)$/m;
# (28000 bytes of values, with their keys and record headers)
ok($unflushed4 > 28000 && $unflushed4 <= 32768,
	"four commits are in the ring, unflushed, and fill at most half of it ($unflushed4 bytes)");
is($flushed5, 'true',
	'a ring more than half full wakes the wal writer, which writes and flushes it');
my ($rec1, $bytes1, $full1, $writes1) = split / /, kv_scalar($node, $stats);
is($full1, $full0, 'kv_wal_stats: no insert found the ring full');
is(kv_scalar($node, 'SELECT segment_switches FROM kv_wal_stats()'), '0',
	'kv_wal_stats: no segment switch (which would have flushed)');
cmp_ok($rec1 - $rec0, '>=', 10, 'kv_wal_stats: the TXN and COMMIT records are counted');
cmp_ok($bytes1 - $bytes0, '>=', 35000, 'kv_wal_stats: and their bytes');
cmp_ok($writes1, '>', $writes0, 'kv_wal_stats: and the writes of the ring');

# with the writer stopped, inserts fill the ring and write it themselves
ok( $node->poll_query_until(
		'postgres', qq{SELECT wait_event = 'WalWriterMain'
			AND (SELECT flush_lsn = insert_lsn FROM kv_wal_status())
			FROM pg_stat_activity WHERE backend_type = 'kvext wal writer'}),
	'the kvext wal writer is idle');
$walwriter = server_process($node, qr/kvext wal writer/, 60);
ok($walwriter, 'found the kvext wal writer again') or die 'no kvext wal writer to stop';
kill 'STOP', $walwriter;
$node->safe_psql('postgres',
	"SET kvext.synchronous_commit = off;\n"
	  . join('', map { "SELECT kv_put('full_$_', repeat('f', 7000));\n" } 1 .. 12));
kill 'CONT', $walwriter;
my ($rec2, $bytes2, $full2) = split / /, kv_scalar($node, $stats);
cmp_ok($full2, '>', $full1, "kv_wal_stats: inserts found the ring full with the writer stopped ($full2)");
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is(kv_scalar($node, q{SELECT count(*) FROM kv_scan('half_') UNION ALL SELECT count(*) FROM kv_scan('full_')}),
	"5\n12", 'the commits survive an immediate stop (their writes and the exit flush)');
$node->adjust_conf('postgresql.conf', 'kvext.failpoint', "''");
$node->adjust_conf('postgresql.conf', 'kvext.wal_segment_size', "'1MB'");
$node->restart;
kv_wait_ready($node);

# ---------------------------------------------------------------------------
# a record whose blocks cannot be had is not inserted; the log goes on
$r = kv_call($node,
	q{SET kvext.failpoint = 'wal-enospc'; SELECT kv_put('enospc', 'x');});
is($r->{sqlstate}, '53100', 'wal-enospc: disk_full');
like($r->{stderr}, qr/could not reserve space in kvext log file/, 'wal-enospc: reported at the reservation');
$node->safe_psql('postgres', q{SELECT kv_put('after_enospc', 'y')});
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is(kv_scalar($node, q{SELECT coalesce(kv_get('enospc'), 'none') || ' ' || kv_get('after_enospc')}),
	'none y', 'wal-enospc: the failed write left nothing; the next commit is in the log');
is(kv_digest($node, 'default', 'w'), $before_stop, 'the earlier commits are intact');

$node->stop;
done_testing();
