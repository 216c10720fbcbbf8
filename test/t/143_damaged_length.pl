# Copyright (c) 2026, kvext authors
#
# A record whose length field is damaged, in the last second of the log
# (past the control file's flush watermark, where a damaged record may be
# a torn write).  The reader does not search a damaged record's payload for
# valid records (a client's value may look like one), so a length damaged
# to a larger value hid the valid records after it: recovery took the
# record for a torn tail, cleared it and everything after it, and served
# without commits that had been acknowledged.  A damaged length on the
# last record cleared that record, an acknowledged commit, too.
#
# A torn write never leaves a complete record behind a wrong length: when a
# length one bit different makes the record's checksum hold, recovery now
# refuses to serve (XX001), says so, and changes no file.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $node = kv_node(
	'damaged_length', q{
kvext.wal_segment_size = '1MB'
kvext.checkpoint_timeout = '1d'
});

$node->safe_psql('postgres', q{SELECT kv_put('before', 'acked')});
# keep the flush watermark where it is, so that every record below is in
# the window where a damaged record could be a torn write
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET kvext.failpoint = 'watermark-hold'; SELECT pg_reload_conf();});
sleep(2);

# put each key in its own transaction; returns the positions where their
# TXN records start
sub put_keys
{
	my %pos;
	for my $k (@_)
	{
		$pos{$k} = kv_status($node)->{insert};
		$node->safe_psql('postgres', "SELECT kv_put('$k', 'value of $k')");
	}
	return %pos;
}

# the segment file and offset of log position $pos
sub locate
{
	my ($pos) = @_;
	my ($seg) = grep { hex($_) <= $pos } reverse wal_segments($node);
	return (wal_dir($node) . "/$seg", $pos - hex($seg));
}

# xor one byte of a file with mask
sub xor_byte
{
	my ($file, $offset, $mask) = @_;
	open(my $fh, '+<:raw', $file) or die "open $file: $!";
	sysseek($fh, $offset, 0) or die "seek: $!";
	sysread($fh, my $b, 1) == 1 or die "read: $!";
	sysseek($fh, $offset, 0) or die "seek: $!";
	syswrite($fh, chr(ord($b) ^ $mask)) == 1 or die "write: $!";
	close($fh) or die "close: $!";
	return;
}

# the length field of the record at $pos (after its 4-byte CRC)
sub record_len
{
	my ($file, $off) = locate($_[0]);
	open(my $fh, '<:raw', $file) or die "open $file: $!";
	sysseek($fh, $off + 4, 0) or die "seek: $!";
	sysread($fh, my $b, 4) == 4 or die "read: $!";
	close($fh);
	return unpack('V', $b);
}

# start after a crash; the state recovery ends in
sub restart
{
	$node->start;
	$node->poll_query_until('postgres',
		q{SELECT state IN ('ready', 'failed') FROM kv_wal_status()});
	return $node->safe_psql('postgres', 'SELECT state FROM kv_wal_status()');
}

sub values_of
{
	return $node->safe_psql('postgres',
		'SELECT string_agg(coalesce(kv_get(k), \'-\'), \',\' ORDER BY k) FROM unnest(ARRAY['
		  . join(',', map { "'$_'" } @_) . ']) k');
}

# ---------------------------------------------------------------------------
# 1. valid records follow the damaged one
my %pos = put_keys(map { "k$_" } 1 .. 5);
my $want = join(',', map { "value of k$_" } 1 .. 5);
$node->stop('immediate');

# bit 12 of k2's TXN record length: 4096 bytes more, over k3 to k5
my ($file, $off) = locate($pos{k2});
my $len = record_len($pos{k2});
cmp_ok($len, '<', 4096, "k2's record is $len bytes long");
xor_byte($file, $off + 4 + 1, 0x10);
my $digests = kvext_file_digests($node);
is(restart(), 'failed', 'a damaged length with valid records after it: the store refuses');
my $r = kv_call($node, q{SELECT kv_get('k1')});
is($r->{sqlstate}, 'XX001', 'kv functions raise XX001');
like($r->{stderr}, qr/damaged record length/, 'the error names the damage');
like($r->{stderr}, qr/valid record follows/, 'and says that valid records follow');
$node->stop('immediate');
is_deeply(kvext_file_digests($node), $digests, 'recovery changed no kvext file');

xor_byte($file, $off + 4 + 1, 0x10);
is(restart(), 'ready', 'repaired, the log recovers');
is(values_of('before', map { "k$_" } 1 .. 5), "acked,$want", 'every acknowledged write is there');

# ---------------------------------------------------------------------------
# 2. the last record: k7's COMMIT record, after its TXN record
%pos = put_keys('k6', 'k7');
$node->stop('immediate');
my $commit = $pos{k7} + record_len($pos{k7});
($file, $off) = locate($commit);
xor_byte($file, $off + 4 + 1, 0x10);
is(restart(), 'failed',
	'a damaged length on the last record, an acknowledged commit: the store refuses');
$r = kv_call($node, q{SELECT kv_get('k7')});
like($r->{stderr}, qr/damaged record length/, 'the error names the damage');
$node->stop('immediate');
xor_byte($file, $off + 4 + 1, 0x10);
is(restart(), 'ready', 'repaired, the log recovers');
is(values_of('k6', 'k7'), 'value of k6,value of k7', 'both commits are there');

$node->safe_psql('postgres',
	q{ALTER SYSTEM RESET kvext.failpoint; SELECT pg_reload_conf();});
$node->stop;
done_testing();
