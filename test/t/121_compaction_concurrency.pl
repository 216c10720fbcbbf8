# Copyright (c) 2026, kvext authors
#
# Compaction under concurrency (issue 8, item 3).  A 16MB store is filled
# with 32-byte values and every other key deleted, so the free space is in
# small holes between live entries; then, while writers with larger values
# keep it at the edge of full (each write that finds no block compacts),
# readers and scanners check every value they see, and three open
# transactions hold pending entries (new keys, deletes and overwrites of
# keys whose committed versions may move).  Afterwards:
#  - no reader ever saw a wrong value or a missing stable key;
#  - the open transactions saw their own writes throughout; two commit,
#    one rolls back, and the store holds exactly what they left;
#  - every key holds the value derived from its name; kv_count() agrees;
#  - compaction did move entries;
#  - after a crash, recovery gives exactly the same data.
use strict;
use warnings;

use KvextDurability;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = kv_node(
	'compaction_conc', q{
kvext.memory_limit = '16MB'
kvext.synchronous_commit = off
max_connections = 30
});
my $tmp = $PostgreSQL::Test::Utils::tmp_check;

# 1. fill with 32-byte values (b<i> = md5('b<i>')), delete every other key
$node->safe_psql(
	'postgres', q{
CREATE TABLE gate (go bool);
CREATE PROCEDURE fill(prefix text)
LANGUAGE plpgsql AS $$
DECLARE
	i int := 1;
BEGIN
	LOOP
		PERFORM kv_put(prefix || i, md5(prefix || i));
		COMMIT;
		i := i + 1;
	END LOOP;
END $$;
});
my $r = kv_call($node, q{CALL fill('b')});
is($r->{sqlstate}, '53200', 'the fill ends with 53200');
my $nb = kv_scalar($node, q{SELECT count(*) FROM kv_scan('b')});
kv_delete_every_other($node, 'b', $nb);
my $kept = int(($nb + 1) / 2);
is(kv_scalar($node, 'SELECT kv_count()'), $kept, "$kept odd keys kept");

# 2. three transactions that stay open: their pending entries must not move
#    and stay visible to them
my %sessions = (
	s1 => q{
BEGIN;
SELECT count(kv_put('p1_' || i, md5('p1_' || i))) FROM generate_series(1, 300) i;
SELECT count(kv_delete('b' || i)) FROM generate_series(1, 1199, 2) i;
},
	s2 => q{
BEGIN;
SELECT count(kv_put('p2_' || i, repeat(md5('p2_' || i), 2))) FROM generate_series(1, 300) i;
SELECT count(kv_put('b' || i, repeat(md5('b' || i), 3))) FROM generate_series(1201, 2399, 2) i;
SAVEPOINT s;
SELECT count(kv_put('p2_' || i, repeat(md5('p2_' || i), 2))) FROM generate_series(1, 300, 3) i;
RELEASE SAVEPOINT s;
},
	s3 => q{
BEGIN;
SELECT count(kv_put('p3_' || i, md5('p3_' || i))) FROM generate_series(1, 300) i;
SELECT count(kv_put('b' || i, repeat(md5('b' || i), 3))) FROM generate_series(2401, 3599, 2) i;
SELECT count(kv_delete('b' || i)) FROM generate_series(3601, 3999, 2) i;
});
# after the load: how each sees its own writes (mismatches, must be 0)
my %checks = (
	s1 => q{
SELECT 'check ' || ((SELECT count(*) FROM generate_series(1, 300) i
                     WHERE kv_get('p1_' || i) IS DISTINCT FROM md5('p1_' || i))
                  + (SELECT count(*) FROM generate_series(1, 1199, 2) i
                     WHERE kv_exists('b' || i))
                  + (SELECT count(*) FROM generate_series(4001, 5999, 2) i
                     WHERE kv_get('b' || i) IS DISTINCT FROM md5('b' || i)));
COMMIT;
},
	s2 => q{
SELECT 'check ' || ((SELECT count(*) FROM generate_series(1, 300) i
                     WHERE kv_get('p2_' || i) IS DISTINCT FROM repeat(md5('p2_' || i), 2))
                  + (SELECT count(*) FROM generate_series(1201, 2399, 2) i
                     WHERE kv_get('b' || i) IS DISTINCT FROM repeat(md5('b' || i), 3)));
COMMIT;
},
	s3 => q{
SELECT 'check ' || ((SELECT count(*) FROM generate_series(1, 300) i
                     WHERE kv_get('p3_' || i) IS DISTINCT FROM md5('p3_' || i))
                  + (SELECT count(*) FROM generate_series(2401, 3599, 2) i
                     WHERE kv_get('b' || i) IS DISTINCT FROM repeat(md5('b' || i), 3))
                  + (SELECT count(*) FROM generate_series(3601, 3999, 2) i
                     WHERE kv_exists('b' || i)));
ROLLBACK;
});
my %pids;
for my $s (sort keys %sessions)
{
	my $script = "$tmp/121_$s.sql";
	open(my $fh, '>', $script) or die "open $script: $!";
	print $fh $sessions{$s};
	print $fh "SELECT 'ready';\n";
	print $fh q{
DO $$
BEGIN
	WHILE NOT EXISTS (SELECT 1 FROM gate) LOOP
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
};
	print $fh $checks{$s};
	print $fh "SELECT 'done';\n";
	close $fh;
	$pids{$s} = spawn_psql($node, $script, "$tmp/121_$s.out", "$tmp/121_$s.err", $s);
}
for my $s (sort keys %sessions)
{
	my $deadline = time + 120;
	usleep(50_000)
	  until slurp_file("$tmp/121_$s.out") =~ /^ready$/m || time > $deadline;
	like(slurp_file("$tmp/121_$s.out"), qr/^ready$/m, "$s holds its pending entries");
}

# 3. fill three quarters of the holes with more 32-byte values (c<i>): the
#    store gets close to full with its free space in small holes
my $nc = int(($nb - $kept) * 3 / 4);
$node->safe_psql(
	'postgres', qq{
DO \$\$
BEGIN
	FOR i IN 1..$nc LOOP
		PERFORM kv_put('c' || i, md5('c' || i));
		IF i % 2000 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END \$\$;
});
note 'before the load: '
  . kv_scalar($node,
	'SELECT round(memory_used::numeric / memory_limit, 3), largest_free_block, moved_entries FROM kv_memory()');
my $moved_before = kv_scalar($node, 'SELECT moved_entries FROM kv_memory()');

# 4. writers, readers and scanners.  w<i> holds md5('w<i>') repeated 1 to
#    8 times; a writer that finds the store full deletes another key.  A
#    reader or scanner fails (division by zero, or an exception) on any
#    wrong value, or on a stable b key (odd, above 3999) that is missing.
$node->safe_psql(
	'postgres', qq{
CREATE FUNCTION kvt_write(i int) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE
	k text := 'w' || i;
BEGIN
	IF i % 5 = 0 THEN
		PERFORM kv_delete(k);
		RETURN;
	END IF;
	BEGIN
		PERFORM kv_put(k, repeat(md5(k), 1 + (random() * 7)::int));
	EXCEPTION WHEN SQLSTATE '53200' THEN
		PERFORM kv_delete('w' || (i * 7919 % 40000 + 1));
	END;
END \$\$;
CREATE FUNCTION kvt_ok(k text, v text) RETURNS bool LANGUAGE sql AS \$\$
	SELECT v IS NULL OR (length(v) % 32 = 0 AND v = repeat(md5(k), length(v) / 32))
\$\$;
CREATE FUNCTION kvt_read(i int, j int) RETURNS int LANGUAGE sql AS \$\$
	SELECT 1 / (kvt_ok('w' || i, kv_get('w' || i))
	            AND kv_get('b' || (3999 + 2 * j)) = md5('b' || (3999 + 2 * j))
	            AND kvt_ok('c' || i, kv_get('c' || i)))::int
\$\$;
CREATE FUNCTION kvt_scan() RETURNS int LANGUAGE sql AS \$\$
	SELECT 1 / (count(*) = $kept AND bool_and(value = md5(key)))::int FROM kv_scan('b')
\$\$;
});
my $maxj = int(($nb - 3999) / 2) - 1;
$node->pgbench(
	'--no-vacuum --client=4 --jobs=2 --transactions=3000',
	0,
	[ qr{processed: 12000/12000}, qr{number of failed transactions: 0} ],
	[qr{^$}],
	'writers, readers and scanners while compacting',
	{
		'121_load' => qq{
\\set r random(1, 1000)
\\set i random(1, 40000)
\\set j random(1, $maxj)
\\if :r <= 450
SELECT kvt_write(:i);
\\elif :r <= 997
SELECT kvt_read(:i, :j);
\\else
SELECT kvt_scan();
\\endif
}
	});
my $mem = kv_scalar($node,
	'SELECT round(memory_used::numeric / memory_limit, 3), largest_free_block, compactions, moved_entries, longest_compaction_ms FROM kv_memory()');
note "after the load: used, largest free, compactions, moved, longest ms: $mem";
cmp_ok(kv_scalar($node, 'SELECT moved_entries FROM kv_memory()'),
	'>', $moved_before, 'compaction moved entries during the load');

# 5. the open transactions check their own writes and end
$node->safe_psql('postgres', 'INSERT INTO gate VALUES (true)');
for my $s (sort keys %sessions)
{
	my $status = wait_or_kill($pids{$s}, time + 120) >> 8;
	is($status, 0, "$s ended cleanly")
	  or diag(slurp_file("$tmp/121_$s.err"));
	my $out = slurp_file("$tmp/121_$s.out");
	like($out, qr/^check 0$/m, "$s saw all its own writes, unchanged");
	like($out, qr/^done$/m, "$s committed or rolled back");
}

# 6. exactly the expected contents
sub check_contents
{
	my ($what) = @_;
	is( kv_scalar(
			$node, qq{
SELECT count(*),
       count(*) FILTER (WHERE substr(key, 2)::int % 2 = 0 OR substr(key, 2)::int < 1201),
       count(*) FILTER (WHERE value IS DISTINCT FROM
           CASE WHEN substr(key, 2)::int BETWEEN 1201 AND 2399 THEN repeat(md5(key), 3)
                ELSE md5(key) END)
FROM kv_scan('b')}),
		($kept - 600) . '|0|0',
		"$what: the stable keys, less s1's deletes, with s2's overwrites");
	is( kv_scalar(
			$node, q{
SELECT count(*) FILTER (WHERE key LIKE 'p1\_%' AND value = md5(key)),
       count(*) FILTER (WHERE key LIKE 'p2\_%' AND value = repeat(md5(key), 2)),
       count(*) FILTER (WHERE key LIKE 'p3\_%')
FROM kv_scan('p')}),
		'300|300|0',
		"$what: the committed transactions' keys, not the rolled back one's");
	is( kv_scalar(
			$node, q{
SELECT count(*), count(*) FILTER (WHERE value <> md5(key)),
       min(substr(key, 2)::int), max(substr(key, 2)::int)
FROM kv_scan('c')}),
		"$nc|0|1|$nc",
		"$what: every c key with its value");
	is( kv_scalar(
			$node,
			q{SELECT count(*) FILTER (WHERE NOT kvt_ok(key, value)) FROM kv_scan('w')}),
		'0',
		"$what: every w key holds a value derived from its name");
	is(kv_scalar($node, q{SELECT kv_count() - (SELECT count(*) FROM kv_scan(''))}),
		'0', "$what: kv_count() agrees with a scan");
}
check_contents('after the load');
my $digest = kv_digest($node);

# 7. crash and recover
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is(kv_digest($node), $digest, 'after a crash: exactly the same data');
check_contents('after the crash');

ok(!$node->log_contains(qr/TRAP:|PANIC:|terminated by signal/),
	'no assertion failure or crash in the server log');
$node->stop;

done_testing();
