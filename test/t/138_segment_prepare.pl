# The next log segment is prepared ahead by the "kvext wal writer"
# (kvext/wal/next: zero-filled, fsynced, renamed into place), so that a
# segment switch under the insert lock is a rename: the new segment IS the
# prepared file.  A crash with a prepared, unused segment recovers (the file
# is no segment, and it is reused), and a full disk while preparing fails no
# commit: the switch then creates its segment itself.  A prepared file that
# is not all zeros (a switch's rename of it lost in a power loss, with
# records written into it) is removed, not reused.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use KvextDurability;

my $node = kv_node('segment_prepare', "kvext.wal_segment_size = '64kB'\n");
my $next = wal_dir($node) . '/next';
my %expect;
my $n = 0;

# wait (bounded) until the prepared segment (or $path) exists (or, with
# $gone, not)
sub wait_next
{
	my ($gone, $path) = @_;
	$path //= $next;
	for (1 .. 3000)
	{
		return 1 if ($gone ? !-e $path : -e $path);
		usleep(20_000);
	}
	return 0;
}

# write 1kB values until the log switches to a new segment; returns its name
sub write_until_switch
{
	my @before = wal_segments($node);
	for (1 .. 200)
	{
		$n++;
		$node->safe_psql('postgres', "SELECT kv_put('k$n', repeat('x', 1000))");
		$expect{"k$n"} = 'x' x 1000;
		my @now = wal_segments($node);
		return $now[-1] if $now[-1] ne $before[-1];
	}
	die "no segment switch after 200 writes";
}

sub inode { my @st = stat($_[0]); return $st[1] // -1; }

ok(wait_next(0), 'the wal writer prepares the next segment');
is(-s $next, 64 * 1024, 'at kvext.wal_segment_size');
is(slurp_file($next), "\0" x (64 * 1024), 'zero-filled');
ok(!-e "$next.tmp", 'no temporary file is left');

my $ino = inode($next);
my $seg = write_until_switch();
is(inode(wal_dir($node) . "/$seg"), $ino, 'the switch renamed the prepared file into the new segment');
ok(wait_next(0), 'and the wal writer prepares the one after');
isnt(inode($next), $ino, 'a new file');

# a crash with a prepared, unused segment: recovery ignores it and the
# worker reuses it
$ino = inode($next);
$node->stop('immediate');
my $logpos = -s $node->logfile;
$node->start;
kv_check_expected($node, \%expect, 'after a crash with a prepared segment', 'acknowledged');
unlike(slurp_file($node->logfile, $logpos), qr/torn record|recovery failed|removing kvext log file/,
	'after a crash with a prepared segment: recovery is clean');
$seg = write_until_switch();
is(inode(wal_dir($node) . "/$seg"), $ino, 'the prepared segment left by the crash is used by the next switch');
ok(wait_next(0), 'and another is prepared');

# disk full while preparing: no commit fails; switches create their
# segment themselves
$node->safe_psql('postgres', q{ALTER SYSTEM SET kvext.failpoint = 'wal-prepare-enospc'; SELECT pg_reload_conf()});
$logpos = -s $node->logfile;
write_until_switch();    # takes the prepared one
ok(wait_next(1), 'the prepared segment was used');
my @segs_before = wal_segments($node);
write_until_switch() for 1 .. 3;
ok(scalar(wal_segments($node)) >= scalar(@segs_before) + 3, 'three more switches, each creating its segment');
ok(!-e $next, 'no segment could be prepared');
# (the writer tries again whenever it wakes: a try may be under way)
ok(wait_next(1, "$next.tmp"), 'and no partial file is left');
like(slurp_file($node->logfile, $logpos),
	qr/WARNING:  could not prepare the next kvext log segment "kvext\/wal\/next.tmp": No space left on device/,
	'the server log says why');
kv_check_expected($node, \%expect, 'while no segment can be prepared', 'acknowledged');
unlike(slurp_file($node->logfile, $logpos), qr/PANIC|terminated by signal|ERROR/, 'and nothing failed');

$node->safe_psql('postgres', q{ALTER SYSTEM RESET kvext.failpoint; SELECT pg_reload_conf()});
ok(wait_next(0), 'space back: the next segment is prepared again');

# kvext.wal_segment_size changes: a segment prepared at the old size is not
# used; the next one is prepared at the new size
$node->safe_psql('postgres', q{ALTER SYSTEM SET kvext.wal_segment_size = '128kB'; SELECT pg_reload_conf()});
is(-s $next, 64 * 1024, 'a 64kB segment is prepared');
$node->poll_query_until('postgres', q{SELECT current_setting('kvext.wal_segment_size') = '128kB'});
$seg = write_until_switch();
# (an inode number may be reused once the old file is removed: sizes tell)
is(-s wal_dir($node) . "/$seg", 128 * 1024,
	'after the size changed, the 64kB prepared segment is not used: the new one has the new size');
ok(wait_next(0), 'a segment is prepared again');
is(-s $next, 128 * 1024, 'at the new size');

$node->stop('immediate');
$node->start;
kv_check_expected($node, \%expect, 'after a crash', 'acknowledged');

# A switch's rename of the prepared file into the new segment is made
# durable by the next flush, not under the insert lock.  So after a power
# loss the file may be back under the name "next" with records written
# into it, none of them flushed.  Such a file is not reused: it would
# become a segment that is not zero-filled.
ok(wait_next(0), 'a segment is prepared');
$node->stop('immediate');
my $junk = "\x5a" x 4096 . "\0" x (128 * 1024 - 4096);
open(my $fh, '>', $next) or die "could not write $next: $!";
binmode $fh;
print $fh $junk;
close $fh;
$logpos = -s $node->logfile;
$node->start;
kv_check_expected($node, \%expect, 'with a prepared file holding data', 'acknowledged');
ok($node->poll_query_until('postgres', q{SELECT true}), 'the server answers');
$ino = inode($next);
my $log_ok = 0;
for (1 .. 3000)
{
	$log_ok = 1, last
	  if slurp_file($node->logfile, $logpos) =~
	  /LOG:  removing prepared kvext log file "kvext\/wal\/next": it is not all zeros/;
	usleep(20_000);
}
ok($log_ok, 'a prepared file that is not all zeros is removed, and the server log says so');
ok(wait_next(0), 'and a new one is prepared');
is(slurp_file($next), "\0" x (128 * 1024), 'zero-filled');
$seg = write_until_switch();
is(slurp_file(wal_dir($node) . "/$seg") =~ /\x5a{4096}/ ? 'junk' : 'clean', 'clean',
	'the next switch does not use the file that held data');
$node->stop('immediate');
$node->start;
kv_check_expected($node, \%expect, 'after a crash', 'acknowledged');

# a PANIC in the middle of a switch (failpoint wal-switch-mid: the prepared
# file renamed into place, the log not moved into it): the write that
# switched is lost, nothing acknowledged is, and the log goes on
ok(wait_next(0), 'a segment is prepared');
$logpos = -s $node->logfile;
my $r = kv_call($node,
	"SET kvext.failpoint = 'wal-switch-mid';\n"
	  . join('', map { "SELECT 'ack $_' FROM kv_put('sw_$_', repeat('s', 1000));\n" } 1 .. 200));
my @acked = $r->{stdout} =~ /^ack (\d+)$/mg;
ok(!$r->{ok} && @acked < 200, 'a write that switches segments fails there (' . scalar(@acked) . ' before it)');
kv_ready_after_crash($node, $logpos);
like(slurp_file($node->logfile, $logpos), qr/PANIC:  kvext failpoint "wal-switch-mid" reached/,
	'the server PANICked in the switch');
$expect{"sw_$_"} = 's' x 1000 for @acked;
kv_check_expected($node, \%expect, 'after a PANIC in a switch', 'acknowledged');
is(kv_scalar($node, q{SELECT count(*) FROM kv_scan('sw_')}), scalar(@acked),
	'the write that was switching is not there');
$seg = write_until_switch();
$node->stop('immediate');
$node->start;
kv_check_expected($node, \%expect, 'the log goes on after it, across a switch and a crash', 'acknowledged');

done_testing();
