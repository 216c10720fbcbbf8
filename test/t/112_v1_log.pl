# A log written by the last version-1 build (test/data/v1log: no snapshot,
# no control file) is still recovered: committed transactions, a keyspace,
# a delete, increments, a bytea value; a rolled-back transaction, one that
# aborted after its record was written (version-1 ABORT record) and a
# dropped keyspace stay away.  Recovery settles the old log with a snapshot
# at once, creates the control file, and goes on in format version 2.

use strict;
use warnings;

use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $fixture = 'data/v1log/0000000000000010';
$fixture = "test/$fixture" unless -f $fixture;
plan skip_all => "fixture $fixture not found" unless -f $fixture;

my $node = PostgreSQL::Test::Cluster->new('v1log');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'kvext'
kvext.memory_limit = '64MB'
));
my $wal = $node->data_dir . '/kvext/wal';
mkdir $node->data_dir . '/kvext' or die "mkdir: $!";
mkdir $wal or die "mkdir: $!";
copy($fixture, "$wal/0000000000000010") or die "copy: $!";
chmod 0600, "$wal/0000000000000010";

$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION kvext');
kv_wait_ready($node);

my $log = slurp_file($node->logfile);
like($log, qr/kvext converted a version-1 log/, 'recovery says it converted a version-1 log');
like($log, qr/kvext recovery complete: no snapshot/, 'and replayed it from the start');

# what the version-1 build showed before it stopped
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) || ':' || md5(string_agg(key || '=' || encode(value, 'hex'), ',' ORDER BY key))
		    FROM kv_scan_bytea()}),
	'101:dd972dcbd06efb090e2a7b06cfedeb61',
	'every key of the default keyspace, byte for byte');
is($node->safe_psql('postgres', q{SELECT kv_get('counter'), kv_exists('k7'), kv_get('k100')}),
	'7|f|v100', 'increments, a delete and the last put');
is( $node->safe_psql(
		'postgres', q{SELECT kv_exists('rolledback'), kv_exists('aborted-after-log')}),
	'f|f', 'the rolled back and the aborted transactions stay away');
is($node->safe_psql('postgres', q{SELECT kv_get('ks-key', 'v1ks')}),
	'in v1ks', 'a key of a created keyspace');
is( $node->safe_psql(
		'postgres', q{SELECT string_agg(keyspace, ',' ORDER BY keyspace) FROM kv_keyspaces()}),
	'default,v1ks', 'the dropped keyspace stays dropped');

my $st = kv_status($node);
ok($st->{snapshot} > 0, 'a snapshot was written at once');
ok(-f $node->data_dir . '/kvext/control', 'the control file exists');

# new writes are version 2; the old records are never read again
$node->safe_psql('postgres', q{SELECT kv_put('after', 'v2')});
$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is($node->safe_psql('postgres', q{SELECT kv_get('after'), kv_get('counter'), count(*) FROM kv_scan_bytea()}),
	'v2|7|102', 'after a crash: the converted data and the new write');
unlike(slurp_file($node->logfile), qr/converted a version-1 log.*converted a version-1 log/s,
	'the conversion happened once');

$node->stop;
done_testing();
