# Recovery reads the log with a bounded buffer (4MB, reader.c): a TXN
# record larger than that is checked by streaming it and applied one write
# at a time, never read into memory whole.  A 60MB transaction of 1MB
# values and a single 24MB value survive a crash; a damaged byte in the
# middle of a record that large is still found (checksum) and refused.

use strict;
use warnings;

use File::Basename;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $node = kv_node('large_record', "kvext.memory_limit = '320MB'\nkvext.max_value_size = '32MB'\n");

my $digest_sql = q{SELECT count(*) || ':' || md5(string_agg(md5(kv_get(k)), ',' ORDER BY k))
                   FROM (SELECT 'big_' || i AS k FROM generate_series(1, 60) i
                         UNION ALL SELECT 'huge') s};

$node->safe_psql('postgres', q{SELECT kv_put('small', 'before')});
my $start = kv_status($node)->{insert};
$node->safe_psql('postgres', q{
BEGIN;
SELECT count(kv_put('big_' || i, repeat(md5(i::text), 32768))) FROM generate_series(1, 60) i;
COMMIT;});
my $mid = kv_status($node)->{insert};
$node->safe_psql('postgres', q{SELECT kv_put('huge', repeat('h', 24 * 1024 * 1024))});
my $end = kv_status($node)->{insert};
$node->safe_psql('postgres', q{SELECT kv_put('small_after', 'after')});
ok($mid - $start > 60 * 1024 * 1024, 'the transaction logged one record of more than 60MB');
ok($end - $mid > 24 * 1024 * 1024, 'the single value logged a record of more than 24MB');
my $digest = kv_scalar($node, $digest_sql);
like($digest, qr/^61:/, '61 large values written');

# crash: replay reads both records
$node->stop('immediate');
my $logpos = -s $node->logfile;
$node->start;
is(kv_scalar($node, $digest_sql), $digest, 'after a crash: the large records are replayed exactly');
is(kv_scalar($node, q{SELECT kv_get('small') || kv_get('small_after')}), 'beforeafter',
	'after a crash: the records around them too');
like(slurp_file($node->logfile, $logpos), qr/kvext recovery complete: no snapshot|kvext recovery complete: from snapshot/,
	'recovery completed');

# a byte flipped in the middle of the 60MB record (the log is durable past
# it, and valid records follow): corruption, found by the streamed checksum
ok($node->poll_query_until('postgres',
		"SELECT flush_watermark >= insert_lsn FROM kv_wal_status()"),
	'the flush watermark reaches the end of the log');
$node->stop('immediate');
my ($seg) = grep { hex($_) <= $start } reverse wal_segments($node);
my $file = wal_dir($node) . "/$seg";
my $off = $start - hex($seg);
flip_byte($file, $off + 30 * 1024 * 1024);
$node->start;
my $r = kv_call($node, q{SELECT kv_get('small')});
is($r->{sqlstate}, 'XX001', 'a damaged large record: XX001');
like($r->{stderr}, qr/corrupt at offset $off \(LSN [^)]+\): checksum mismatch/,
	'a damaged large record: the error names it');
$node->stop;
flip_byte($file, $off + 30 * 1024 * 1024);
$node->start;
is(kv_scalar($node, $digest_sql), $digest, 'repaired: the large records are back');

done_testing();
