# Replication, the follower's apply path with records built here: a
# transaction whose COMMIT arrives many batches later survives a snapshot
# and a crash of the follower (the snapshot's redo point stops at it), log
# segments switch on the follower, an ABORT drops a transaction, keyspace
# operations inside transactions, and a record larger than the reader's
# 4MB buffer.

use strict;
use warnings;

use Digest::MD5 qw(md5_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;
use KvextRepl;

my $f = kv_node('f2', qq(
kvext.node_name = 'f2'
kvext.peers = 'n1: host=127.0.0.1 port=1'
kvext.leader = 'n1'
kvext.wal_segment_size = '64kB'
kvext.checkpoint_timeout = '1h'
));
repl_default_cluster(4242);

# the leader's log, built here; $pos is its end
my $pos = 16;
my $prev_term = 0;
my $sent = 0;    # end of what the follower got
my $log = '';

sub add
{
	my ($type, $ref, $payload) = @_;
	my $at = $pos;
	my $rec = record($type, $pos, 1, $ref, $payload);
	$pos += length($rec);
	$log .= $rec;
	return $at;
}

# send everything not sent yet, committing up to $commit (default: all)
sub send_all
{
	my ($commit) = @_;
	my $bytes = substr($log, $sent - 16 < 0 ? 0 : $sent - 16);
	my $r = append($f, prev_end => $sent, prev_term => $sent ? 1 : 0,
		records => $bytes, commit => $commit // $pos);
	$sent = $pos if $r->{ok} && $r->{success} eq 't';
	return $r;
}

add(REC_TERM, 0);
my $r = send_all();
is($r->{success}, 't', 'the first TERM record: held already, accepted');
is(control($f)->{cluster}, 4242, 'cluster id adopted');

# a transaction whose COMMIT comes much later
my $a = add(REC_TXN, 0, txn_payload('a', 'decided late'));
$r = send_all();
is($r->{success}, 't', 'TXN a sent and committed past');
is(kv_get_on($f, 'a'), '<null>', 'a: no COMMIT yet, invisible');

# a keyspace and many transactions, in batches, over several segments
my $ks = add(REC_TXN, 0, txn_ops([ 3, 1, 'ks1' ], [ 1, 1, 'in_ks1', 'yes' ]));
add(REC_COMMIT, $ks);
$r = send_all();
is(kv_call($f, "SELECT kv_get('in_ks1', 'ks1')")->{stdout}, 'yes', 'keyspace created inside a transaction');
for my $batch (1 .. 6)
{
	for my $i (1 .. 20)
	{
		my $t = add(REC_TXN, 0, txn_payload("k$batch.$i", ('v' x 1000) . "$batch.$i"));
		add(REC_COMMIT, $t);
	}
	$r = send_all();
	is($r->{success}, 't', "batch $batch");
}
is(kv_call($f, "SELECT count(*) FROM kv_scan('k')")->{stdout}, 120, 'all 120 committed transactions applied');
my $st = kv_status($f);
cmp_ok($st->{segments}, '>', 1, 'the follower switched segments');
is($st->{insert}, $pos, 'its log ends where the leader\'s does');
is(kv_get_on($f, 'a'), '<null>', 'a still invisible');
cmp_ok($st->{apply}, '<=', $a, 'apply_lsn stops at the undecided TXN record');

# an aborted transaction
my $b = add(REC_TXN, 0, txn_payload('b', 'aborted'));
add(REC_ABORT, $b);
$r = send_all();
is(kv_get_on($f, 'b'), '<null>', 'an aborted transaction never shows');

# a snapshot now must keep TXN a in its replay range
$f->safe_psql('postgres', 'SELECT kv_checkpoint()');
$st = kv_status($f);
cmp_ok($st->{snapshot}, '<=', $a, 'the snapshot redo point does not pass the undecided TXN record');
$f->stop('immediate');
$f->start;
kv_wait_ready($f);
is(kv_get_on($f, 'k3.7'), ('v' x 1000) . '3.7', 'after a crash: committed data kept');
is(kv_get_on($f, 'a'), '<null>', 'after a crash: a still invisible');

# its COMMIT arrives
add(REC_COMMIT, $a);
$r = send_all();
is($r->{success}, 't', 'COMMIT a sent');
is(kv_get_on($f, 'a'), 'decided late', 'a applies, read back from the log before the snapshot');
is(kv_get_on($f, 'b'), '<null>', 'b stays aborted');
is(kv_call($f, "SELECT count(*) FROM kv_scan('k')")->{stdout}, 120, 'every transaction exactly once');

# a transaction larger than the reader's buffer (4MB): streamed
my $bigval = join('', map { md5_hex($_) } 1 .. 180000);    # 5.76MB
my $big = add(REC_TXN, 0, txn_payload('big', $bigval));
add(REC_COMMIT, $big);
$r = send_all();
is($r->{success}, 't', 'a 5.8MB record appended');
is($f->safe_psql('postgres', "SELECT md5(kv_get('big'))"), md5_hex($bigval), 'and applied whole');

# a clean restart keeps everything
$f->restart;
is(kv_get_on($f, 'a'), 'decided late', 'after a restart: a');
is($f->safe_psql('postgres', "SELECT md5(kv_get('big'))"), md5_hex($bigval), 'after a restart: big');
is(kv_status($f)->{visible}, $pos, 'after a clean restart: committed up to the end');

# a control file of format version 3 (before the led boot and the campaign
# flag) is read: its data is the first 168 bytes of version 4's
$f->stop;
my $path = $f->data_dir . '/kvext/control';
my $c4 = slurp_file($path);
is(length($c4), 240, 'the control file is in format version 4');
my (undef, $cversion, $major4) = unpack('L<L<L<', $c4);
is($cversion, 4, 'version 4 in its header');
my $v3 = pack('L<L<L<L<', 0x4C434B4B, 3, $major4, 0) . substr($c4, 16, 168);
$v3 .= pack('L<', crc32c($v3)) . ("\0" x 4);
open(my $fh3, '>:raw', $path) or die "could not write $path: $!";
print $fh3 $v3;
close($fh3);
$f->start;
kv_wait_ready($f);
is(control($f)->{cluster}, 4242, 'a version-3 control file is read: cluster id');
is(kv_get_on($f, 'a'), 'decided late', 'a version-3 control file is read: data');

# a control file of format version 1 (before the commit watermark) is read
$f->stop;
my $c2 = slurp_file($path);
my (undef, undef, $pgmajor) = unpack('L<L<L<', $c2);
my $v1 = pack('L<L<L<L<', 0x4C434B4B, 1, $pgmajor, 0) . substr($c2, 16, 88);
$v1 .= pack('L<', crc32c($v1)) . ("\0" x 4);
open(my $fh, '>:raw', $path) or die "could not write $path: $!";
print $fh $v1;
close($fh);
$f->start;
kv_wait_ready($f);
is(control($f)->{cluster}, 4242, 'a version-1 control file is read: cluster id');
is(kv_get_on($f, 'a'), 'decided late', 'a version-1 control file is read: data');

$f->stop;
done_testing();
