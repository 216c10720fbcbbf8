# A torn last record whose payload holds bytes that look like a valid
# record (any client's value can) is still a torn tail: recovery cuts it
# and serves.  The reader once searched such a record's own payload for
# "valid records after the damage" when the record ran past the end of the
# file, found the look-alike and refused to serve after an ordinary crash.
#
# The torn write is made by hand: a large transaction's record is written,
# a CRC-valid record header is planted inside its payload at its own
# position, and the file is cut in the middle of the record.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $node = kv_node(
	'torn_payload', q{
kvext.wal_segment_size = '1MB'
kvext.checkpoint_timeout = '1d'
kvext.memory_limit = '256MB'
});

$node->safe_psql('postgres', q{SELECT kv_put('before', 'acked')});
# keep the flush watermark where it is: the record below is to be torn,
# as if the server had died while writing it
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET kvext.failpoint = 'watermark-hold'; SELECT pg_reload_conf();});
sleep(2);
my $st = kv_status($node);
my $start = $st->{insert};
my $term = kv_scalar($node, 'SELECT term FROM kv_wal_status()');

# about 3MB in one record
$node->safe_psql('postgres', q{
BEGIN;
SELECT count(kv_put('z' || g, repeat('q', 2000))) FROM generate_series(1, 1500) g;
COMMIT;});
$node->stop('immediate');

# the segment holding the record's start
my @segs = wal_segments($node);
my ($seg) = grep { hex($_) <= $start } reverse sort @segs;
my $segpath = wal_dir($node) . "/$seg";
my $off = $start - hex($seg);
cmp_ok(-s $segpath, '>=', $off + 3_000_000, 'the big record is in one segment file');

# a look-alike record header, CRC-valid, at its own position inside the
# record's payload
my $fake_off = ($off + 4096 + 7) & ~7;
my $body = pack('VQ<Q<Q<VCCv', 40, hex($seg) + $fake_off, $term, 0, 0, 6, 0, 2);
my $fake = pack('V', crc32c($body)) . $body;
open(my $fh, '+<', $segpath) or die "open $segpath: $!";
binmode $fh;
sysseek($fh, $fake_off, 0) or die;
syswrite($fh, $fake) == 40 or die;
close($fh);
# ... and the file cut in the middle of the record
truncate($segpath, $off + 1_000_000) or die "truncate: $!";

$node->start;
ok(kv_wait_ready($node), 'the store recovers from the torn record');
is(kv_scalar($node, q{SELECT kv_get('before')}), 'acked', 'the write before it is served');
is(kv_scalar($node, q{SELECT count(*) FROM kv_scan('z')}), '0',
	'nothing of the torn transaction is served');
ok($node->log_contains(qr/torn/), 'the cut is logged as a torn tail');
$node->safe_psql('postgres',
	q{ALTER SYSTEM RESET kvext.failpoint; SELECT pg_reload_conf();});
$node->stop;
done_testing();
