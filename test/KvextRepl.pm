# Helpers for kvext's replication TAP tests (test/t/15x_*.pl): kvext log
# records built here (the format of docs/architecture.md, "Record format",
# with their CRC-32C), records parsed out of a node's log file, the control
# file's fields, and kv_repl_append() called as a leader's sender would.

package KvextRepl;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

our @EXPORT = qw(
  crc32c record txn_payload txn_ops parse_records lsn hex_bytea first_segment
  control append repl_default_cluster kv_get_on
  REC_TXN REC_ABORT REC_COMMIT REC_TERM HDR
);


# crc32c comes from KvextDurability; exported again from here

use constant {
	REC_TXN    => 1,
	REC_ABORT  => 2,
	REC_COMMIT => 5,
	REC_TERM   => 6,
	HDR        => 40,
};

# build a record: type, lsn, term, ref, payload
sub record
{
	my ($type, $lsn, $term, $ref, $payload) = @_;
	$payload //= '';
	my $len = HDR + length($payload);
	my $pad = (8 - $len % 8) % 8;
	$payload .= "\0" x $pad;
	$len += $pad;
	my $rest = pack('L<Q<Q<Q<L<CCS<', $len, $lsn, $term, $ref, 0, $type, 0, 2);
	my $crc = crc32c($payload . $rest);
	return pack('L<', $crc) . $rest . $payload;
}

# payload of a TXN record putting key => value pairs in keyspace 0
sub txn_payload
{
	my (@kv) = @_;
	my $p = '';
	while (my ($k, $v) = splice(@kv, 0, 2))
	{
		$p .= pack('CCS<L<L<', 1, 0, 0, length($k), length($v)) . $k . $v;
	}
	return $p;
}

# payload of a TXN record from ops: [op, keyspace, key, value] (op 1 put,
# 2 delete, 3 keyspace create: key is its name, 4 keyspace drop)
sub txn_ops
{
	my $p = '';
	for my $o (@_)
	{
		my ($op, $ks, $k, $v) = @$o;
		$v //= '';
		$p .= pack('CCS<L<L<', $op, 0, $ks, length($k), length($v)) . $k . $v;
	}
	return $p;
}

# split a byte string of records into [lsn, len, type, term, ref, bytes]
sub parse_records
{
	my ($bytes) = @_;
	my @recs;
	my $off = 0;
	while ($off + HDR <= length($bytes))
	{
		my ($crc, $len, $lsn, $term, $ref, $xid, $type) =
		  unpack('L<L<Q<Q<Q<L<C', substr($bytes, $off, HDR));
		last if $len == 0;
		push @recs, [ $lsn, $len, $type, $term, $ref, substr($bytes, $off, $len) ];
		$off += $len;
	}
	return @recs;
}

sub lsn { my ($v) = @_; return sprintf('%X/%X', $v >> 32, $v & 0xFFFFFFFF); }
sub hex_bytea { my ($b) = @_; return "'\\x" . unpack('H*', $b) . "'::bytea"; }

# the first 256kB of a node's first log segment
sub first_segment
{
	my ($node) = @_;
	my $hex = $node->safe_psql('postgres',
		"SELECT encode(pg_read_binary_file('kvext/wal/0000000000000010', 0, 262144), 'hex')");
	return pack('H*', $hex);
}

# the control file: cluster id, term, commit watermark
sub control
{
	my ($node) = @_;
	my $b = pack('H*', $node->safe_psql('postgres',
		"SELECT encode(pg_read_binary_file('kvext/control'), 'hex')"));
	# the cluster id as SQL's bigint sees it (signed)
	my ($cluster, $term) = unpack('q<Q<', substr($b, 16, 16));
	my ($flush, $commit, $led) = unpack("Q<Q<Q<", substr($b, 16 + 16 + 64, 24));
	return { cluster => $cluster, term => $term, commit => $commit, led => $led };
}

# the cluster id append() sends unless told otherwise
our $cluster = 0;
sub repl_default_cluster { ($cluster) = @_; }

# kv_repl_append on node (named arguments: cluster, leader (SQL literal),
# term, prev_end, prev_term, commit, records (bytes), as (role)); returns
# kv_call's hash plus the answer's fields term, success (t/f), flushed,
# applied and hint (integers, hint '' if NULL)
sub append
{
	my ($node, %a) = @_;
	my $sql = sprintf(
		"SELECT term, success, flushed - '0/0', applied - '0/0', coalesce((hint - '0/0')::text, '') "
		  . "FROM kv_repl_append(%s, %s, %d, '%s', %d, '%s', %s)",
		$a{cluster} // $cluster, $a{leader} // "'n1'", $a{term} // 1,
		lsn($a{prev_end} // 0), $a{prev_term} // 0, lsn($a{commit} // 0),
		hex_bytea($a{records} // ''));
	my $r = kv_call($node, $sql, $a{as} ? (extra_params => [ '-U', $a{as}, '-v', 'VERBOSITY=verbose' ]) : ());
	if ($r->{ok})
	{
		@$r{qw(term success flushed applied hint)} = split /\|/, $r->{stdout}, -1;
	}
	return $r;
}

sub kv_get_on { my ($node, $k) = @_; return $node->safe_psql('postgres', "SELECT coalesce(kv_get('$k'), '<null>')"); }


1;
