# kvext's files damaged on disk: a torn last record is cut off (and the
# server log says where); a bad record followed by valid ones, a damaged
# snapshot, or data that no longer fits in kvext.memory_limit make the store
# refuse to serve with a clear error, PostgreSQL stays up, and no kvext file
# is changed.

use strict;
use warnings;

use File::Basename;
use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

# the torn-tail cases cut records that were flushed, as a power loss cuts
# records that were not: hold the flush watermark back (the wal writer
# advances it about once a second), so that recovery may take them for torn
my $node  = kv_node('damaged', "kvext.failpoint = 'watermark-hold'\n");
my $kvdir = $node->data_dir . '/kvext';

sub lsn_text
{
	my ($lsn) = @_;
	return sprintf('%X/%X', $lsn >> 32, $lsn & 0xffffffff);
}

# keys that must exist (key => value)
my %expect;


# ---------------------------------------------------------------------------
# torn tail
my $round = 0;

# torn_case(label, damage): write 10 keys (the last one a transaction of its
# own: a TXN record, then its 40-byte COMMIT record), crash, damage the end
# of the last segment with damage->(file, offset of the last TXN record, end
# offset, offset of its COMMIT record), which returns the offset from which
# the log is no longer valid (the end offset if the last records are
# intact), restart.  A TXN record whose COMMIT record is lost did not
# commit.
sub torn_case
{
	my ($label, $damage) = @_;
	$round++;
	$node->safe_psql('postgres',
		join("\n", map { "SELECT kv_put('torn${round}_$_', 'v$_');" } 1 .. 9));
	my $last_start = kv_status($node)->{insert};
	$node->safe_psql('postgres', qq{SELECT kv_put('torn${round}_10', repeat('z', 100))});
	my $end = kv_status($node)->{insert};
	$node->stop('immediate');

	my $seg      = last_segment($node);
	my $segstart = hex(basename($seg));
	my ($last_off, $end_off) = ($last_start - $segstart, $end - $segstart);
	my $commit_off = $end_off - 40;
	ok(-s $seg >= $end_off && zero_from($seg, $end_off),
		"$label: the segment holds only zeros after insert_lsn (preallocated)");
	my $valid_to = $damage->($seg, $last_off, $end_off, $commit_off);
	my $damaged_size = -s $seg;
	# an all-zero tail is the clean end of the log, not a torn record
	my $tail_zero = zero_from($seg, $valid_to);

	my $logpos = -s $node->logfile;
	$node->start;
	$expect{"torn${round}_$_"} = "v$_" for 1 .. 9;
	kv_check_expected($node, \%expect, $label, 'earlier');
	if ($valid_to >= $end_off)
	{
		is(kv_scalar($node, "SELECT kv_get('torn${round}_10') = repeat('z', 100)"), 't',
			"$label: the intact last record is kept");
		$expect{"torn${round}_10"} = 'z' x 100;
	}
	else
	{
		is(kv_scalar($node, "SELECT kv_exists('torn${round}_10')"), 'f',
			"$label: the damaged last record is gone");
	}
	is(kv_status($node)->{state}, 'ready', "$label: the store serves");
	my $log = slurp_file($node->logfile, $logpos);
	if (!$tail_zero)
	{
		my $l = lsn_text($segstart + $valid_to);
		like($log, qr/torn record at LSN \Q$l\E/, "$label: the server log names the torn record's LSN ($l)");
		like($log, qr/clearing \Q@{[$damaged_size - $valid_to]}\E bytes/,
			"$label: and how much was cleared");
		# a TXN record that lost its COMMIT record is decided at recovery:
		# an ABORT record (40 bytes) follows it where the torn bytes were
		my $resolved = ($valid_to == $commit_off) ? 40 : 0;
		ok(zero_from($seg, $valid_to + $resolved), "$label: the torn bytes were cleared");
	}
	else
	{
		unlike($log, qr/torn record/, "$label: a log ending at a record boundary is not torn");
	}
	# the log continues after the cut: write, crash again, everything there
	$node->safe_psql('postgres', qq{SELECT kv_put('torn${round}_after', 'after')});
	$expect{"torn${round}_after"} = 'after';
	$node->stop('immediate');
	$logpos = -s $node->logfile;
	$node->start;
	kv_check_expected($node, \%expect, "$label, after writing on and another crash", 'earlier');
	unlike(slurp_file($node->logfile, $logpos), qr/torn record|recovery failed/,
		"$label: the continued log is clean");
}

# are all bytes of the file from offset off on zero?
sub zero_from
{
	my ($file, $off) = @_;
	open(my $fh, '<:raw', $file) or die "open $file: $!";
	seek($fh, $off, 0) or die "seek: $!";
	local $/;
	my $rest = <$fh> // '';
	close $fh;
	return $rest !~ /[^\0]/;
}

# cut the file to size, return where the valid log ends
sub cut_to
{
	my ($file, $size, $valid_to) = @_;
	truncate($file, $size) or die "truncate: $!";
	return $valid_to;
}

torn_case('torn tail, 1 byte cut', sub { cut_to($_[0], $_[2] - 1, $_[3]) });
torn_case('torn tail, 7 bytes cut', sub { cut_to($_[0], $_[2] - 7, $_[3]) });
torn_case('torn tail, 20 bytes cut', sub { cut_to($_[0], $_[2] - 20, $_[3]) });
torn_case('torn tail, COMMIT record gone, TXN record cut', sub { cut_to($_[0], $_[3] - 20, $_[1]) });
torn_case('torn tail, only 8 bytes of the last header left', sub { cut_to($_[0], $_[1] + 8, $_[1]) });
torn_case('torn tail, 1 byte of the last record left', sub { cut_to($_[0], $_[1] + 1, $_[1]) });
torn_case('log cut exactly at a record boundary', sub { cut_to($_[0], $_[1], $_[1]) });
# a crash can leave a file extended with zeros (size written, data not)
torn_case('zeros after the last record', sub { cut_to($_[0], $_[2] + 4096, $_[2]) });
torn_case(
	'last record overwritten with zeros',
	sub {
		my ($file, $last_off, $end_off) = @_;
		open(my $fh, '+<:raw', $file) or die "open: $!";
		sysseek($fh, $last_off, 0);
		syswrite($fh, "\0" x ($end_off - $last_off));
		close $fh;
		return $last_off;
	});

# ---------------------------------------------------------------------------
# a damaged record beyond the flush watermark, but followed by valid records:
# a crash leaves no damaged record before valid ones, so this is corruption
# too, never a torn tail to cut silently
{
	$node->safe_psql('postgres', q{SELECT kv_put('ahead_1', 'x')});
	my $bad = kv_status($node)->{insert};
	$node->safe_psql('postgres', "SELECT kv_put('ahead_$_', 'x')") for 2 .. 3;
	my $st = kv_status($node);
	ok($st->{watermark} <= $bad, 'the records lie beyond the flush watermark');
	$node->stop('immediate');
	my $seg     = last_segment($node);
	my $segname = basename($seg);
	my $off     = $bad - hex($segname);
	flip_byte($seg, $off + 50);
	my $before = kvext_file_digests($node);
	$node->start;
	my $r = kv_call($node, q{SELECT kv_get('ahead_3')});
	is($r->{sqlstate}, 'XX001', 'damaged record followed by valid ones: XX001');
	like($r->{stderr}, qr/corrupt at offset $off .*\n.*DETAIL:  A valid record follows/,
		'damaged record followed by valid ones: the error says valid records follow');
	like($r->{stderr}, qr/HINT:  If the machine lost power/,
		'damaged record followed by valid ones: the client gets the way out too');
	like(slurp_file($node->logfile), qr/HINT:  If the machine lost power/,
		'damaged record followed by valid ones: the server log gives the way out');
	$node->stop;
	is_deeply(kvext_file_digests($node), $before, 'damaged record followed by valid ones: no kvext file changed');
	flip_byte($seg, $off + 50);
	$node->start;
	is(kv_scalar($node, q{SELECT string_agg(kv_get('ahead_' || i), ',') FROM generate_series(1, 3) i}),
		'x,x,x', 'repaired: the three writes are back');
	$expect{"ahead_$_"} = 'x' for 1 .. 3;
}

# the same with a record of 65520 bytes, so that the valid record after it
# starts right across the reader's 64kB look-ahead chunks
{
	my $bad = kv_status($node)->{insert};
	$node->safe_psql('postgres', q{SELECT kv_put('long_ahead', repeat('v', 65458))});
	my $end = kv_status($node)->{insert};
	is($end - $bad, 65520 + 40, 'a TXN record of 65520 bytes, then its COMMIT record');
	$node->stop('immediate');
	my $seg = last_segment($node);
	my $off = $bad - hex(basename($seg));
	flip_byte($seg, $off + 1000);
	$node->start;
	my $r = kv_call($node, q{SELECT kv_get('ahead_1')});
	is($r->{sqlstate}, 'XX001', 'damaged long record followed by a valid one: XX001');
	$node->stop;
	flip_byte($seg, $off + 1000);
	$node->start;
	is(kv_scalar($node, q{SELECT length(kv_get('long_ahead'))}), '65458', 'repaired: the long record is back');
}

# a log that ends before the control file's flush watermark lost records
# that were durable: refuse, whether the tail was cut at a record boundary
# or a whole segment file is gone
{
	$node->safe_psql('postgres', q{ALTER SYSTEM SET kvext.failpoint = ''; SELECT pg_reload_conf();});
	my $cut = kv_status($node)->{insert};
	$node->safe_psql('postgres', "SELECT kv_put('lost_$_', 'x')") for 1 .. 3;
	my $end = kv_status($node)->{insert};
	ok($node->poll_query_until('postgres',
			"SELECT flush_watermark >= '@{[lsn_text($end)]}' FROM kv_wal_status()"),
		'the flush watermark reaches the end of the log');
	$node->stop('immediate');
	my $seg = last_segment($node);
	my $copy = "$PostgreSQL::Test::Utils::tmp_check/seg.before_cut";
	copy($seg, $copy) or die "copy: $!";
	my $off = $cut - hex(basename($seg));
	open(my $fh, '+<:raw', $seg) or die "open: $!";
	sysseek($fh, $off, 0);
	syswrite($fh, "\0" x ($end - $cut));
	close $fh;
	my $before = kvext_file_digests($node);
	$node->start;
	my $r = kv_call($node, q{SELECT kv_get('ahead_1')});
	is($r->{sqlstate}, 'XX001', 'a log cut below its flush watermark: XX001');
	like($r->{stderr}, qr/ends at \Q@{[lsn_text($cut)]}\E, before its flush watermark/,
		'a log cut below its flush watermark: the error says where');
	$node->stop;
	is_deeply(kvext_file_digests($node), $before, 'a log cut below its flush watermark: no kvext file changed');
	copy($copy, $seg) or die "copy: $!";
	$node->start;
	is(kv_scalar($node, q{SELECT string_agg(kv_get('lost_' || i), ',') FROM generate_series(1, 3) i}),
		'x,x,x', 'restored: the three writes are back');
	$expect{"lost_$_"} = 'x' for 1 .. 3;
	$node->safe_psql('postgres', q{ALTER SYSTEM SET kvext.failpoint = 'watermark-hold'; SELECT pg_reload_conf();});
}

# a segment switch that did not complete can leave the next file created,
# all zeros, under a name the log never reached: it is removed, not taken
# for a gap
{
	$node->stop('immediate');
	my $seg = last_segment($node);
	my $name = sprintf('%016X', hex(basename($seg)) + 123 * 4096);
	my $stray = wal_dir($node) . "/$name";
	open(my $fh, '>:raw', $stray) or die "open: $!";
	print $fh "\0" x 65536;
	close $fh;
	my $logpos = -s $node->logfile;
	$node->start;
	kv_wait_ready($node);
	like(slurp_file($node->logfile, $logpos), qr/removing kvext log file "kvext\/wal\/$name": it holds no record/,
		'an all-zero last segment is removed, with a LOG line');
	ok(!-e $stray, 'and is gone');
	kv_check_expected($node, \%expect, 'after removing the stray segment', 'earlier');
}

# ---------------------------------------------------------------------------
# flipped byte in the middle of the log, after the snapshot's redo point,
# in a part the control file records as durable: corruption, not a torn
# tail.  (An immediate stop: a clean shutdown would write a snapshot past it.)
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET kvext.failpoint = ''; SELECT pg_reload_conf();});
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
$node->safe_psql('postgres',
	join("\n", map { "SELECT kv_put('flip_$_', 'v$_');" } 1 .. 49));
my $bad_lsn = kv_status($node)->{insert};
$node->safe_psql('postgres',
	join("\n", map { "SELECT kv_put('flip_$_', 'v$_');" } 50 .. 120));
$expect{"flip_$_"} = "v$_" for 1 .. 120;
ok(kv_status($node)->{snapshot} < $bad_lsn, 'the damaged record lies after the redo point');
my $end_lsn = kv_status($node)->{insert};
ok($node->poll_query_until('postgres',
		"SELECT flush_watermark >= '@{[lsn_text($end_lsn)]}' FROM kv_wal_status()"),
	'the flush watermark reaches the end of the log');
$node->stop('immediate');

my $seg      = last_segment($node);
my $segname  = basename($seg);
my $bad_off  = $bad_lsn - hex($segname);
my $digests  = kvext_file_digests($node);
my $old_byte = flip_byte($seg, $bad_off + 53);    # a byte of the key
my $damaged  = kvext_file_digests($node);

sub check_refusal
{
	my ($what, $sqlstate, $msg_re) = @_;
	my $r = kv_call($node, q{SELECT kv_get('flip_1')});
	ok(!$r->{ok}, "$what: kv_get fails");
	is($r->{sqlstate}, $sqlstate, "$what: with SQLSTATE $sqlstate");
	like($r->{stderr}, $msg_re, "$what: the error says what is wrong and where");
	$r = kv_call($node, q{SELECT kv_put('new_key', 'x')});
	is($r->{sqlstate}, $sqlstate, "$what: kv_put fails the same way");
	is(kv_status($node)->{state}, 'failed', "$what: kv_wal_status().state is failed");
	is(kv_scalar($node, 'SELECT 1'), '1', "$what: PostgreSQL itself still answers");
	is($node->safe_psql('postgres', 'CREATE TABLE IF NOT EXISTS still_up(i int); SELECT 2'),
		'2', "$what: and writes tables");
	return $r;
}

my $logpos = -s $node->logfile;
$node->start;
check_refusal('flipped byte mid-log', 'XX001',
	qr/kvext log file "kvext\/wal\/$segname" is corrupt at offset $bad_off \(LSN \Q@{[lsn_text($bad_lsn)]}\E\)/);
like(slurp_file($node->logfile, $logpos), qr/kvext recovery failed.*\n?.*offset $bad_off/,
	'flipped byte mid-log: the server log names the file and offset');
is_deeply(kvext_file_digests($node), $damaged, 'flipped byte mid-log: no kvext file changed (server up)');
$node->stop;
is_deeply(kvext_file_digests($node), $damaged, 'flipped byte mid-log: no kvext file changed (server stopped)');

# repaired, everything is back
flip_byte($seg, $bad_off + 53);
is_deeply(kvext_file_digests($node), $digests, 'byte restored');
$node->start;
kv_check_expected($node, \%expect, 'after repairing the log', 'earlier');
is(kv_status($node)->{state}, 'ready', 'after repairing the log: ready');

# ---------------------------------------------------------------------------
# several segments: a bad record in a segment that is not the last one, and
# a missing segment in the middle of the log
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET kvext.wal_segment_size = '64kB'; SELECT pg_reload_conf();});
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
$node->safe_psql('postgres',
	join("\n", map { "SELECT kv_put('seg_$_', repeat('s', 1000));" } 1 .. 300));
$expect{"seg_$_"} = 's' x 1000 for 1 .. 300;
my @segs = wal_segments($node);
ok(@segs >= 4, scalar(@segs) . ' segments');
# an immediate stop: a clean shutdown would write a snapshot and remove them
$node->stop('immediate');
$digests = kvext_file_digests($node);

# a record in the middle of the second segment of the log
my $mid  = $segs[1];
my $midf = wal_dir($node) . "/$mid";
# find a TXN record near the middle: walk the records from the segment
# start by their lengths (a TXN record, then its 40-byte COMMIT record)
open(my $fh, '<:raw', $midf) or die "open: $!";
my $rec_off = 0;
while (1)
{
	my $hdr;
	sysseek($fh, $rec_off, 0);
	sysread($fh, $hdr, 40) == 40 or die "short read at $rec_off";
	my $len  = unpack('V', substr($hdr, 4, 4));
	my $type = unpack('C', substr($hdr, 36, 1));
	die "no record at $rec_off" if $len == 0;
	last if $type == 1 && $rec_off >= (-s $midf) / 2 - 2048;
	$rec_off += $len;
}
close $fh;
flip_byte($midf, $rec_off + 45);
$damaged = kvext_file_digests($node);
$node->start;
check_refusal('bad record in an earlier segment', 'XX001',
	qr/kvext log file "kvext\/wal\/$mid" is corrupt at offset $rec_off/);
$node->stop;
is_deeply(kvext_file_digests($node), $damaged, 'bad record in an earlier segment: no kvext file changed');
flip_byte($midf, $rec_off + 45);

# a segment missing from the middle of the log
my $gap = wal_dir($node) . "/$segs[2]";
my $moved = "$PostgreSQL::Test::Utils::tmp_check/$segs[2]";
move($gap, $moved) or die "move: $!";
$damaged = kvext_file_digests($node);
$node->start;
check_refusal('missing segment', 'XX001', qr/kvext log file "kvext\/wal\/$segs[1]" is corrupt at offset \d+/);
$node->stop;
is_deeply(kvext_file_digests($node), $damaged, 'missing segment: no kvext file changed');
move($moved, $gap) or die "move: $!";

is_deeply(kvext_file_digests($node), $digests, 'segments repaired');
$node->start;
kv_check_expected($node, \%expect, 'after repairing the segments', 'earlier');
$node->safe_psql('postgres',
	q{ALTER SYSTEM RESET kvext.wal_segment_size; SELECT pg_reload_conf();});

# ---------------------------------------------------------------------------
# damaged snapshot
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
$node->safe_psql('postgres', q{SELECT kv_put('after_snap', 'x')});
$expect{after_snap} = 'x';
$node->stop;
my $snap = "$kvdir/snapshot";
my $orig = "$PostgreSQL::Test::Utils::tmp_check/snapshot.orig";
copy($snap, $orig) or die "copy: $!";
$digests = kvext_file_digests($node);
my $snapsize = -s $snap;
ok($snapsize > 1000, "snapshot has $snapsize bytes");

for my $case (
	[ 'snapshot: byte flipped in the middle', sub { flip_byte($snap, int($snapsize / 2)) } ],
	[ 'snapshot: magic number damaged',       sub { flip_byte($snap, 0) } ],
	[ 'snapshot: checksum damaged',           sub { flip_byte($snap, $snapsize - 2) } ],
	[ 'snapshot: truncated',                  sub { truncate_by($snap, 10) } ])
{
	my ($what, $damage) = @$case;
	$damage->();
	my $before = kvext_file_digests($node);
	$logpos = -s $node->logfile;
	$node->start;
	check_refusal($what, 'XX001', qr/kvext snapshot "kvext\/snapshot" is damaged(?: at offset \d+)?: \S/);
	like(slurp_file($node->logfile, $logpos), qr/kvext recovery failed.*snapshot/,
		"$what: the server log names the snapshot");
	$node->stop;
	is_deeply(kvext_file_digests($node), $before, "$what: no kvext file changed");
	copy($orig, $snap) or die "copy: $!";
}
is_deeply(kvext_file_digests($node), $digests, 'snapshot restored');
$node->start;
kv_check_expected($node, \%expect, 'after restoring the snapshot', 'earlier');

# ---------------------------------------------------------------------------
# the data no longer fits in kvext.memory_limit
$node->safe_psql('postgres',
	join("\n", map { "SELECT kv_put('big_' || i, repeat(md5(i::text), 320)) FROM generate_series($_ * 100 + 1, $_ * 100 + 100) i;" } 0 .. 3));
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
# 4 MB in the snapshot, 16 MB more in the log
$node->safe_psql('postgres',
	join("\n", map { "SELECT kv_put('big_' || i, repeat(md5(i::text), 320)) FROM generate_series($_ * 100 + 1, $_ * 100 + 100) i;" } 4 .. 19));
my $big = kv_digest($node, 'default', 'big_');
like($big, qr/^2000:/, '2000 values of 10 kB written');
$node->stop;

for my $case ([ 'replaying the log', 0 ], [ 'loading the snapshot', 1 ])
{
	my ($what, $checkpoint) = @$case;
	if ($checkpoint)
	{
		# everything in the snapshot
		$node->start;
		$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
		$node->stop;
	}
	my $before = kvext_file_digests($node);
	$node->append_conf('postgresql.conf', "kvext.memory_limit = '8MB'\n");
	$logpos = -s $node->logfile;
	$node->start;
	my $r = check_refusal("8MB limit, $what", '53200', qr/does not fit in kvext.memory_limit/);
	like($r->{stderr}, qr/HINT:.*(Raise kvext.memory_limit|restart)/, "8MB limit, $what: with a hint");
	like(slurp_file($node->logfile, $logpos), qr/kvext recovery failed.*does not fit/,
		"8MB limit, $what: the server log says why");
	$node->stop;
	is_deeply(kvext_file_digests($node), $before, "8MB limit, $what: no kvext file changed");

	$node->append_conf('postgresql.conf', "kvext.memory_limit = '64MB'\n");
	$node->start;
	is(kv_digest($node, 'default', 'big_'), $big, "limit restored after $what: all data back");
	kv_check_expected($node, \%expect, "limit restored after $what", 'earlier');
	$node->stop;
}

done_testing();
