# Records whose CRC32C holds but whose contents do not: a length inside a
# TXN record that does not fit, a keyspace name with an embedded NUL or
# too long, bytes after the last write, a decision record naming no
# earlier position, an unknown record type.  Recovery must check every
# length and name before using it and refuse to serve (XX001, naming the
# file, offset and LSN) instead of reading out of bounds or replaying a
# wrong name; PostgreSQL stays up and nothing crashes (assert build).
# The same for a snapshot whose lengths do not fit the file.

use strict;
use warnings;

use File::Basename;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $node = kv_node('replay_validation');

# a log record's CRC: the payload, then the header after the crc field
sub record_with_crc
{
	my ($rec) = @_;
	my $crc = crc32c(substr($rec, 40) . substr($rec, 4, 36));
	return pack('V', $crc) . substr($rec, 4);
}

sub read_bytes
{
	my ($file, $off, $len) = @_;
	open(my $fh, '<:raw', $file) or die "open $file: $!";
	sysseek($fh, $off, 0) or die "seek: $!";
	my $buf;
	sysread($fh, $buf, $len) == $len or die "short read of $file at $off";
	close $fh;
	return $buf;
}

sub write_bytes
{
	my ($file, $off, $buf) = @_;
	open(my $fh, '+<:raw', $file) or die "open $file: $!";
	sysseek($fh, $off, 0) or die "seek: $!";
	syswrite($fh, $buf) == length($buf) or die "write: $!";
	close $fh or die "close: $!";
	return;
}

sub lsn_text
{
	my ($lsn) = @_;
	return sprintf('%X/%X', $lsn >> 32, $lsn & 0xffffffff);
}

# craft_case(label, sql, which, mutate, reason): run sql, crash, take the
# record it wrote (which: 'txn', its TXN record, or 'commit', the COMMIT
# record after it), change it with mutate (bytes in, bytes of the same
# length out), give it a valid CRC, restart: the store must refuse with
# reason; then repair and check the store serves again.
sub craft_case
{
	my ($label, $sql, $which, $mutate, $reason) = @_;
	my $start = kv_status($node)->{insert};
	$node->safe_psql('postgres', $sql);
	my $end = kv_status($node)->{insert};
	$node->stop('immediate');

	my $seg      = last_segment($node);
	my $segstart = hex(basename($seg));
	my $at       = ($which eq 'txn') ? $start : $end - 40;
	my $off      = $at - $segstart;
	my $len      = unpack('V', read_bytes($seg, $off + 4, 4));
	my $orig     = read_bytes($seg, $off, $len);
	my $crafted  = record_with_crc($mutate->($orig));
	is(length($crafted), $len, "$label: the crafted record keeps its length");
	write_bytes($seg, $off, $crafted);

	my $logpos = -s $node->logfile;
	$node->start;
	my $r = kv_call($node, q{SELECT kv_get('x')});
	is($r->{sqlstate}, 'XX001', "$label: the store refuses with XX001");
	my $name = basename($seg);
	like($r->{stderr},
		qr/kvext log file "kvext\/wal\/$name" is corrupt at offset $off \(LSN \Q@{[lsn_text($at)]}\E\): \Q$reason\E/,
		"$label: the error names the file, offset, LSN and reason");
	is(kv_status($node)->{state}, 'failed', "$label: kv_wal_status() says failed");
	is(kv_scalar($node, 'SELECT 1'), '1', "$label: PostgreSQL is up");
	unlike(slurp_file($node->logfile, $logpos), qr/TRAP|terminated by signal|PANIC/,
		"$label: nothing crashed");
	$node->stop;

	write_bytes($seg, $off, $orig);
	$node->start;
	# recovery runs after the server starts: wait for it (not just look)
	ok(kv_wait_ready($node), "$label: repaired, the store serves");
	return;
}

# a TXN record of one put: header (40), op (12), key, value, zeros to 8
my $put = q{SELECT kv_put('ab', 'cd')};

craft_case('key length past the record', $put, 'txn',
	sub { my $r = shift; substr($r, 44, 4) = pack('V', 1000); $r },
	'invalid write in a transaction record');
craft_case('value length past the record', $put, 'txn',
	sub { my $r = shift; substr($r, 48, 4) = pack('V', 0xFFFFFFF0); $r },
	'invalid write in a transaction record');
craft_case('unknown write type', $put, 'txn',
	sub { my $r = shift; substr($r, 40, 1) = chr(9); $r },
	'invalid write in a transaction record');
# 40 + 12 + 3 + 2 = 57 bytes, padded with zeros to 64
craft_case('bytes after the last write', q{SELECT kv_put('abc', 'cd')}, 'txn',
	sub { my $r = shift; substr($r, 60, 1) = chr(7); $r },
	'invalid write in a transaction record');

# a keyspace created in a transaction: its name is the op's key, not
# terminated; keylen 3 ("ksa") followed by zeros in the record, which the
# writer sizes for a name of NAMEDATALEN bytes (40 + 12 + 64 = 116, padded
# to 120)
craft_case('keyspace name with an embedded NUL', q{SELECT kv_create_keyspace('ksa')}, 'txn',
	sub { my $r = shift; substr($r, 44, 4) = pack('V', 5); $r },
	'invalid keyspace name');
craft_case('keyspace name of NAMEDATALEN bytes', q{SELECT kv_create_keyspace('ksb')}, 'txn',
	sub {
		my $r = shift;
		substr($r, 44, 4) = pack('V', 64);
		substr($r, 52, 64) = 'k' x 64;
		$r
	},
	'invalid keyspace name');
craft_case('empty keyspace name', q{SELECT kv_create_keyspace('ksc')}, 'txn',
	sub { my $r = shift; substr($r, 44, 4) = pack('V', 0); $r },
	'invalid keyspace name');

# decision and other records
craft_case('COMMIT naming a later position', $put, 'commit',
	sub { my $r = shift; substr($r, 24, 8) = pack('Q<', unpack('Q<', substr($r, 8, 8)) + 8); $r },
	'a decision record names no earlier position');
craft_case('unknown record type', $put, 'commit',
	sub { my $r = shift; substr($r, 36, 1) = chr(77); $r },
	'unknown record type');

# ---------------------------------------------------------------------------
# snapshot: an entry whose lengths reach past the end of the file, with a
# valid checksum over the whole file, is refused before anything that size
# is allocated
{
	$node->safe_psql('postgres', q{SELECT kv_put('snap_' || i, 'v') FROM generate_series(1, 10) i});
	$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
	$node->stop;
	my $snap = $node->data_dir . '/kvext/snapshot';
	my $orig = slurp_file($snap);
	# header (40 bytes in format 1, 48 since format 2 added the redo
	# term), then keyspaces (66 bytes each), then entries
	my $hdr   = unpack('V', substr($orig, 4, 4)) >= 2 ? 48 : 40;
	my $nks   = unpack('V', substr($orig, 12, 4));
	my $entry = $hdr + 66 * $nks;
	my $bad   = $orig;
	substr($bad, $entry + 4, 4) = pack('V', 0x3FFF0000);    # keylen
	write_with_crc($snap, $bad);
	my $logpos = -s $node->logfile;
	$node->start;
	my $r = kv_call($node, q{SELECT kv_get('snap_1')});
	is($r->{sqlstate}, 'XX001', 'snapshot entry longer than the file: XX001');
	my $data = $entry + 12;
	like($r->{stderr}, qr/kvext snapshot "kvext\/snapshot" is damaged at offset $data: unexpected end of file/,
		'snapshot entry longer than the file: the error names the entry');
	unlike(slurp_file($node->logfile, $logpos), qr/TRAP|terminated by signal|PANIC|invalid memory alloc/,
		'snapshot entry longer than the file: nothing crashed, nothing that size allocated');
	$node->stop;
	open(my $fh, '>:raw', $snap) or die;
	print $fh $orig;
	close $fh;
	$node->start;
	is(kv_scalar($node, q{SELECT kv_get('snap_10')}), 'v', 'snapshot repaired: the store serves');
}

done_testing();
