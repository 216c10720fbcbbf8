# Disk full on kvext's log directory: the committing transaction fails with
# an error (no crash, no acknowledgement, nothing of it visible), earlier
# data stays, and writing works again once space is freed.
#
# With KVEXT_TEST_TMPFS naming a small tmpfs owned by the test user
# (scripts/test.sh mounts one when run as root), the log directory is moved
# there and the disk really fills up.  The wal-enospc failpoint, which
# fakes ENOSPC, is tested in every case.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Digest::MD5;

use KvextDurability;

# small segments: the log moves onto a 16MB file system below, and a segment
# is zero-filled to its full size when created (so the disk fills up when a
# new segment is created, or when a record grows a segment past its size)
my $node = kv_node('disk_full', "kvext.wal_segment_size = '64kB'\n");

# keys that must exist (key => value)
my %expect;


sub no_crash
{
	my ($what, $logpos) = @_;
	is(kv_scalar($node, 'SELECT 1'), '1', "$what: the server is up");
	is(kv_status($node)->{state}, 'ready', "$what: the store is ready");
	unlike(slurp_file($node->logfile, $logpos), qr/PANIC|terminated by signal|reinitializing/,
		"$what: nothing crashed");
}

$node->safe_psql('postgres', join("\n", map { "SELECT kv_put('pre_$_', 'v$_');" } 1 .. 20));
$expect{"pre_$_"} = "v$_" for 1 .. 20;
$node->safe_psql('postgres', 'CREATE TABLE t (i int)');

# ---------------------------------------------------------------------------
# the wal-enospc failpoint
my $logpos = -s $node->logfile;
my $r = kv_call($node, q{SET kvext.failpoint = 'wal-enospc'; SELECT kv_put('fp_single', 'x');});
ok(!$r->{ok}, 'wal-enospc: kv_put fails');
# (a record that goes through the log buffers fails when its blocks are
# reserved; a large one when it is written)
like($r->{stderr}, qr/could not (?:write to|reserve space in) kvext log file "[^"]+" at offset \d+: No space left on device/,
	'wal-enospc: error names the log file and ENOSPC');
is($r->{sqlstate}, '53100', 'wal-enospc: SQLSTATE 53100 (disk_full)');
like($r->{stderr}, qr/The transaction was not committed/, 'wal-enospc: says the transaction was not committed');

$r = kv_call($node, q{
SET kvext.failpoint = 'wal-enospc';
BEGIN;
SELECT kv_put('fp_multi_' || i, 'x') FROM generate_series(1, 10) i;
SELECT kv_put('pre_1', 'overwritten');
COMMIT;});
ok(!$r->{ok}, 'wal-enospc: multi-key COMMIT fails');
$r = kv_call($node, q{
SET kvext.failpoint = 'wal-enospc';
BEGIN;
INSERT INTO t VALUES (1);
SELECT kv_put('fp_mixed', 'x');
COMMIT;});
ok(!$r->{ok}, 'wal-enospc: mixed COMMIT fails');
is(kv_scalar($node, 'SELECT count(*) FROM t'), '0', 'wal-enospc: the mixed transaction left no row');
is(kv_scalar($node, q{SELECT count(*) FROM kv_scan('fp_')}), '0', 'wal-enospc: no key of a failed transaction is visible');
kv_check_expected($node, \%expect, 'wal-enospc', 'acknowledged');
no_crash('wal-enospc', $logpos);

# the same session writes again once the failure is gone
$r = kv_call($node, q{
SET kvext.failpoint = 'wal-enospc';
SELECT kv_put('fp_again', 'no');
SET kvext.failpoint = '';
SELECT kv_put('fp_again', 'yes');
SELECT kv_get('fp_again');}, on_error_stop => 0);
like($r->{stdout}, qr/^yes$/m, 'wal-enospc: writes work again in the same session');
$expect{fp_again} = 'yes';

$node->stop('immediate');
$logpos = -s $node->logfile;
$node->start;
kv_check_expected($node, \%expect, 'wal-enospc, after a crash', 'acknowledged');
is(kv_scalar($node, q{SELECT string_agg(key, ',') FROM kv_scan('fp_')}), 'fp_again',
	'wal-enospc, after a crash: no failed write came back');
unlike(slurp_file($node->logfile, $logpos), qr/torn record|recovery failed/,
	'wal-enospc: the log has no partial record');

# ---------------------------------------------------------------------------
# a real full disk
SKIP:
{
	my $tmpfs = $ENV{KVEXT_TEST_TMPFS};
	skip 'KVEXT_TEST_TMPFS is not set: no small file system to fill', 1
	  unless defined $tmpfs && $tmpfs ne '';
	skip "KVEXT_TEST_TMPFS=$tmpfs is not a writable directory", 1
	  unless -d $tmpfs && -w $tmpfs;

	# move the log directory onto the small file system
	my $waldir = wal_dir($node);
	my $target = "$tmpfs/kvext_wal_$$";
	$node->stop;
	system('mv', $waldir, $target) == 0 or die "mv $waldir $target failed";
	symlink($target, $waldir) or die "symlink: $!";
	$node->start;
	kv_check_expected($node, \%expect, 'log on the small file system', 'acknowledged');
	$node->safe_psql('postgres', join("\n", map { "SELECT kv_put('tmpfs_pre_$_', 'v$_');" } 1 .. 10));
	$expect{"tmpfs_pre_$_"} = "v$_" for 1 .. 10;

	# fill it: write until ENOSPC, then give back a little
	my $filler = "$tmpfs/filler_$$";
	open(my $fh, '>:raw', $filler) or die "open $filler: $!";
	my $chunk = "\0" x 65536;
	my $filled = 0;
	while (1)
	{
		my $n = syswrite($fh, $chunk);
		last unless defined $n && $n > 0;
		$filled += $n;
		last if $filled > 1024 * 1024 * 1024;    # not a small file system after all
	}
	close $fh;
	truncate($filler, $filled - 128 * 1024) or die "truncate: $!";
	note("filler: " . ($filled - 128 * 1024) . " bytes, about 128 kB left");

	# 16 kB values until the disk is full; psql goes on after errors
	my $script = join("\n",
		map { "SELECT $_ FROM kv_put('df_$_', repeat(md5('$_'), 512));" } 1 .. 40);
	$logpos = -s $node->logfile;
	$r = kv_call($node, $script, on_error_stop => 0);
	my @acked = grep { /^\d+$/ } split /\n/, $r->{stdout};
	my @errors = ($r->{stderr} =~ /^.*ERROR:.*$/mg);
	note(scalar(@acked) . ' writes acknowledged, ' . scalar(@errors) . ' failed');
	ok(@acked >= 1, 'disk full: writes succeed while there is room');
	ok(@errors >= 1, 'disk full: a write fails once the disk is full');
	like($r->{stderr}, qr/ERROR:  53100: could not (?:(?:write to|reserve space in) kvext log file "[^"]+" at offset \d+|create kvext log file "[^"]+"): No space left on device/,
		'disk full: the error is disk_full and names the log file');
	unlike($r->{stderr}, qr/server closed the connection|PANIC/, 'disk full: the session was not lost');
	no_crash('disk full', $logpos);
	$expect{"df_$_"} = md5_value($_) for @acked;
	kv_check_expected($node, \%expect, 'disk full', 'acknowledged');
	my %acked = map { $_ => 1 } @acked;
	my @failed = grep { !$acked{$_} } 1 .. 40;
	is(kv_scalar($node, 'SELECT count(*) FROM unnest(ARRAY[' . join(',', map { "'df_$_'" } @failed) . ']) k WHERE kv_exists(k)'),
		'0', 'disk full: no key of a failed write is visible');

	# records too large for the log buffers (written at once, outside the
	# log's insert lock, where a failed write could not be undone): refused
	# when their blocks are reserved, never a failed write (a PANIC)
	$logpos = -s $node->logfile;
	$r = kv_call($node,
		join("\n", map { "SELECT $_ FROM kv_put('dfbig_$_', repeat(md5('$_'), 10000));" } 1 .. 5),
		on_error_stop => 0);
	my @bigacked = grep { /^\d+$/ } split /\n/, $r->{stdout};
	note(scalar(@bigacked) . ' large writes acknowledged');
	like($r->{stderr}, qr/ERROR:  53100: could not (?:reserve space in kvext log file "[^"]+" at offset \d+|create kvext log file "[^"]+"): No space left on device/,
		'disk full: a large record is refused with disk_full');
	unlike($r->{stderr}, qr/server closed the connection|PANIC/, 'disk full: the large writes lost no session');
	no_crash('disk full, large records', $logpos);
	$expect{"dfbig_$_"} = Digest::MD5::md5_hex($_) x 10000 for @bigacked;
	kv_check_expected($node, \%expect, 'disk full, large records', 'acknowledged');
	is(kv_scalar($node, q{SELECT count(*) FROM kv_scan('dfbig_')}), scalar(@bigacked),
		'disk full: no large write that failed is visible');

	# space comes back
	unlink($filler) or die "unlink: $!";
	$node->safe_psql('postgres', join("\n",
		map { "SELECT kv_put('df_after_$_', repeat(md5('$_'), 512));" } 1 .. 40));
	$expect{"df_after_$_"} = md5_value($_) for 1 .. 40;
	kv_check_expected($node, \%expect, 'space freed: writes work again', 'acknowledged');

	$node->stop('immediate');
	$logpos = -s $node->logfile;
	$node->start;
	kv_check_expected($node, \%expect, 'disk full, after a crash', 'acknowledged');
	is(kv_scalar($node, 'SELECT count(*) FROM unnest(ARRAY[' . join(',', map { "'df_$_'" } @failed) . ']) k WHERE kv_exists(k)'),
		'0', 'disk full, after a crash: no failed write came back');
	unlike(slurp_file($node->logfile, $logpos), qr/torn record|recovery failed/,
		'disk full: the log has no partial record');

	$node->stop;
	system('rm', '-rf', $target);
}

sub md5_value
{
	my ($i) = @_;
	require Digest::MD5;
	return Digest::MD5::md5_hex($i) x 512;
}

done_testing();
