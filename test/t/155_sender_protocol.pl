# Copyright (c) 2026, kvext authors
#
# The leader's senders against scripted followers: the peers are plain
# PostgreSQL servers whose kv_repl_append is a PL/pgSQL function that keeps
# every batch it accepts in a table (docs/architecture.md, "Messages" and
# "The leader's senders"), so the test sees exactly what was shipped:
#  1. the bytes the followers accepted, in order, are the leader's log from
#     its first record to its flush position, byte for byte (small records,
#     batches of about 1MB, a record larger than a batch and a segment, log
#     segment switches); the commit position reaches the flush position;
#     every append runs the statement the sender prepared once on its
#     connection (the follower does not parse and plan each batch);
#  2. a follower that lost the end of its log answers "mismatch" with its
#     end as hint: the sender resends from there and the bytes agree again;
#  3. a follower in a higher term makes the leader step down: the new term
#     is persisted (kept across a restart), writes fail with 25006 and the
#     senders go inactive.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use KvextDurability;

my @nodes = map { PostgreSQL::Test::Cluster->new("proto_n$_") } 1 .. 3;
$_->init for @nodes;
my ($n1, $n2, $n3) = @nodes;
my @peers = map {
	'n' . ($_ + 1) . ':host=127.0.0.1 port=' . $nodes[$_]->port
	  . ' dbname=postgres user=kvext_repl connect_timeout=5'
} (1, 2);
$n1->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'kvext'
kvext.memory_limit = '64MB'
log_statement = none
listen_addresses = '127.0.0.1'
kvext.node_name = 'n1'
kvext.peers = '@{[join('; ', @peers)]}'
kvext.leader = 'n1'
kvext.wal_segment_size = '1MB'
kvext.synchronous_commit = local
));
$_->append_conf('postgresql.conf', "listen_addresses = '127.0.0.1'\nlog_statement = none\n")
  for ($n2, $n3);
$_->start for @nodes;
$n1->safe_psql('postgres', 'CREATE EXTENSION kvext');

# the scripted follower: accepts a batch that starts at the end of what it
# holds, else answers "mismatch" with that end as hint; its term is the
# leader's unless mock_term says higher
for my $f ($n2, $n3)
{
	$f->safe_psql(
		'postgres', q{
CREATE ROLE kvext_repl LOGIN;
CREATE TABLE got (start pg_lsn, prev_term bigint, commit_lsn pg_lsn, records bytea,
  prepared boolean);
CREATE TABLE mock_term (term bigint);
GRANT ALL ON got, mock_term TO kvext_repl;
CREATE FUNCTION kv_repl_append(p_cluster bigint, p_leader text, p_term bigint,
    p_prev_end pg_lsn, p_prev_term bigint, p_commit pg_lsn, p_records bytea,
    OUT term bigint, OUT success boolean, OUT flushed pg_lsn,
    OUT applied pg_lsn, OUT hint pg_lsn)
LANGUAGE plpgsql AS $$
DECLARE
  cur pg_lsn;
  first pg_lsn := CASE WHEN p_prev_end = '0/0' THEN '0/10'::pg_lsn ELSE p_prev_end END;
BEGIN
  SELECT max(g.start + length(g.records)) INTO cur FROM got g;
  term := greatest(p_term, (SELECT max(m.term) FROM mock_term m));
  IF term > p_term THEN
    success := false;
  ELSIF first = coalesce(cur, '0/10'::pg_lsn) THEN
    INSERT INTO got VALUES (first, p_prev_term, p_commit, p_records,
      EXISTS (SELECT FROM pg_prepared_statements
              WHERE name = 'kvext_append' AND from_sql = false));
    success := true;
    flushed := first + length(p_records);
    applied := p_commit;
  ELSE
    success := false;
    hint := coalesce(cur, '0/0');
  END IF;
END $$;
GRANT EXECUTE ON FUNCTION kv_repl_append TO kvext_repl;});
}

# the leader's log, from its first record to its flush position, as hex
sub leader_log
{
	my $flush = $n1->safe_psql('postgres', q{SELECT flush_lsn - '0/0' FROM kv_wal_status()});
	my @segs = sort { $a <=> $b } map { hex } grep { /^[0-9A-F]{16}$/ } split /\n/,
	  $n1->safe_psql('postgres', q{SELECT pg_ls_dir('kvext/wal')});
	my $log = '';
	for my $i (0 .. $#segs)
	{
		my $len = ($i < $#segs ? $segs[ $i + 1 ] : $flush) - $segs[$i];
		$log .= $n1->safe_psql('postgres',
			sprintf(q{SELECT encode(substring(pg_read_binary_file('kvext/wal/%016X') from 1 for %d), 'hex')},
				$segs[$i], $len));
	}
	return $log;
}

sub shipped
{
	my ($f) = @_;
	return $f->safe_psql('postgres',
		q{SELECT encode(string_agg(records, ''::bytea ORDER BY start), 'hex') FROM got});
}

# poll until what f accepted is the leader's log
sub same_bytes
{
	my ($f, $what) = @_;
	my $want = leader_log();
	my $got  = '';
	my $deadline = time + 180;
	while (time < $deadline)
	{
		$got = shipped($f);
		last if $got eq $want;
		sleep 1;
	}
	ok($got eq $want,
		"$what: " . $f->name . ' accepted the leader\'s log byte for byte ('
		  . length($want) / 2 . ' bytes)');
}

# ---------------------------------------------------------------------------
# 1. byte for byte

$n1->safe_psql('postgres', q{SELECT kv_put('k' || i, 'v' || i) FROM generate_series(1, 200) i});
$n1->safe_psql('postgres',
	q{SELECT kv_put('big' || i, repeat(chr(65 + i % 26), 100000)) FROM generate_series(1, 40) i});
$n1->safe_psql('postgres',
	q{SELECT kv_mput(ARRAY['huge1', 'huge2', 'huge3'],
                     ARRAY[repeat('x', 900000), repeat('y', 900000), repeat('z', 900000)])});
# two records larger than the log reader's buffer (4MB), read in pieces by
# the same reader: its piece buffer must outlive each batch
for my $s (1, 2)
{
	$n1->safe_psql('postgres',
		qq{SELECT kv_mput(array_agg('stream${s}_' || g), array_agg(repeat('s', 300)))
		     FROM generate_series(1, 20000) g});
}
ok( $n1->poll_query_until(
		'postgres', q{SELECT c.commit_lsn = w.flush_lsn FROM kv_cluster c, kv_wal_status() w}),
	'the commit position reaches the flush position');
same_bytes($_, 'shipping') for ($n2, $n3);
unlike(slurp_file($n1->logfile), qr/terminated by signal/,
	'no sender crashed shipping records streamed in pieces');
cmp_ok($n2->safe_psql('postgres', q{SELECT max(length(records)) FROM got}),
	'>', 2_000_000, 'a record larger than a batch went whole');
cmp_ok($n2->safe_psql('postgres', q{SELECT count(*) FROM got WHERE length(records) > 0}),
	'>', 1, 'in several batches');
is( $n2->safe_psql(
		'postgres', q{SELECT count(*) FROM got g
  WHERE g.commit_lsn > g.start + length(g.records)}),
	'0', 'no batch told a commit position past its own end');
is($n2->safe_psql('postgres', q{SELECT count(*) FROM got WHERE NOT prepared}),
	'0', 'every append ran the statement the sender prepared on its connection');

# ---------------------------------------------------------------------------
# 2. a follower that lost its tail gets it again from its hint

$n2->safe_psql('postgres',
	q{DELETE FROM got WHERE start > (SELECT min(start) FROM got WHERE length(records) > 100000)});
$n1->safe_psql('postgres', q{SELECT kv_put('after_loss' || i, 'x') FROM generate_series(1, 20) i});
same_bytes($n2, 'after a mismatch');

# ---------------------------------------------------------------------------
# 3. a higher term: step down

my $offset = -s $n1->logfile;
$n3->safe_psql('postgres', q{INSERT INTO mock_term VALUES (7)});
ok($n1->poll_query_until('postgres', q{SELECT role || '/' || term FROM kv_cluster}, 'follower/7'),
	'a follower in term 7 makes the leader step down into term 7');
ok( $n1->poll_query_until(
		'postgres', q{SELECT string_agg(state, ',') FROM kv_replication}, 'inactive,inactive'),
	'both senders go inactive');
my $r = kv_call($n1, q{SELECT kv_put('x', 'y')});
is($r->{sqlstate}, '25006', 'writes fail on the former leader');
is(() = slurp_file($n1->logfile, $offset) =~ /stepping down: peer "n3" is in term 7/g,
	1, 'the step-down is logged once');
$n1->restart;
# (the store recovers at the first kv call: poll, not one query)
ok($n1->poll_query_until('postgres', q{SELECT role || '/' || term FROM kv_cluster}, 'follower/7'),
	'the new term was persisted');

$_->stop for @nodes;
done_testing();
