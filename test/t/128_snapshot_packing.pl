# Copyright (c) 2026, kvext authors
#
# Large values that fit at run time fit again after a crash (issue 8,
# item 2).
#
# Each entry must fit in one chunk of the heap (store/alloc.c), so with
# large values, loading a snapshot is bin packing, and the snapshot holds
# entries in bucket order, not in the order the server placed them.  Two
# packings the loader used to choose failed where the running server had
# succeeded:
#  - bucket order: values of 250, 560, 220 and 220 units, committed in
#    that order into a 1024-unit and a 275-unit chunk, fit; loaded with a
#    220 first, no chunk has room for the last 220;
#  - best fit decreasing (largest first, each into the tightest block):
#    500, 500, 450, 260, 260, 450, 260 and 260 into three 1024-unit chunks
#    leave the last 260 without a chunk.
# The snapshot now records each large entry's chunk, and the loader puts
# large entries back in their own chunks first.
#
# Replay, too, used to need room twice: a snapshot is fuzzy, so it may
# hold a value that the log after its redo point writes again, and replay
# made the new copy before freeing the old one.  The test holds a snapshot
# half-way (failpoint snapshot-mid:hold), rewrites a large value in a
# partition the snapshot has not copied yet, and crashes.
#
# A chunk is 1GB in production; kvext.heap_chunk_size (a developer option)
# makes it 16MB here, so a unit above is 16kB and the test moves tens of
# MB, not GBs.  Every value is checked, byte for byte (md5), against what
# was written.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

# A value is val(key, kb): md5(key) repeated to kb kilobytes.  %written
# maps each key written and not deleted to its size in kB, %seed to the
# string its value repeats (the key, unless rewritten).
my (%written, %seed);

sub setup
{
	my ($node) = @_;
	$node->safe_psql('postgres',
		q{CREATE FUNCTION val(k text, kb int) RETURNS text LANGUAGE sql IMMUTABLE
		  AS $$ SELECT repeat(md5(k), kb * 32) $$;
		  -- values of kb kB at <prefix>1, 2, ..., each committed, until the
		  -- store is full; n is how many were written
		  CREATE PROCEDURE fill(prefix text, kb int, INOUT n int) LANGUAGE plpgsql AS $$
		  BEGIN
		    FOR i IN 1 .. 1000 LOOP
		      BEGIN
		        PERFORM kv_put(prefix || i, val(prefix || i, kb));
		      EXCEPTION WHEN out_of_memory THEN
		        n := i - 1;
		        RETURN;
		      END;
		      COMMIT;
		    END LOOP;
		    n := 1000;
		  END $$});
	return;
}

# the first n of 40 candidate keys <prefix>1..40, in snapshot (bucket) order
sub keys_in_snapshot_order
{
	my ($node, $prefix) = @_;
	$node->safe_psql('postgres',
		"SELECT kv_put('$prefix' || i, '') FROM generate_series(1, 40) i");
	my @order = split /\n/,
	  $node->safe_psql('postgres', "SELECT key FROM kv_scan('$prefix')");
	is(scalar(@order), 40, "kv_scan returns the 40 candidate keys $prefix*");
	$node->safe_psql('postgres',
		"SELECT kv_delete('$prefix' || i) FROM generate_series(1, 40) i");
	return @order;
}

sub put
{
	my ($node, $k, $kb, $seed) = @_;
	$seed //= $k;
	my $r = kv_call($node, "SELECT kv_put('$k', val('$seed', $kb))");
	ok($r->{ok}, "run time: the ${kb}kB value $k fits") or diag($r->{stderr});
	if ($r->{ok})
	{
		$written{$k} = $kb;
		$seed{$k}    = $seed;
	}
	return;
}

# every key written and not deleted, with its bytes; nothing else
sub check_contents
{
	my ($node, $what) = @_;
	my $n = scalar(keys %written);
	ok(kb_values_intact($node, \%written, \%seed), "$what: every value intact, byte for byte");
	is($node->safe_psql('postgres', 'SELECT kv_count()'),
		$n, "$what: $n keys, nothing else");
	return;
}

# crash (or, with how 'start', just start a stopped node), and wait until
# recovery has ended one way or the other
sub recover
{
	my ($node, $how) = @_;
	$node->stop('immediate') unless ($how // '') eq 'start';
	$node->start;
	$node->poll_query_until('postgres',
		q{SELECT state IN ('ready', 'failed') FROM kv_wal_status()});
	return $node->safe_psql('postgres', 'SELECT state FROM kv_wal_status()');
}

# start a snapshot (kv_checkpoint() in the background) and hold it half-way,
# after the first half of the hash partitions is written (failpoint
# snapshot-mid:hold): writes made now are after its redo point, and those
# to keys late in kv_scan order are in it
sub hold_snapshot
{
	my ($node) = @_;
	$node->safe_psql('postgres',
		q{ALTER SYSTEM SET kvext.failpoint = 'snapshot-mid:hold'; SELECT pg_reload_conf()});
	my $hold = $node->data_dir . '/kvext/hold';
	open(my $fh, '>', $hold) or die "could not create $hold: $!";
	close $fh;
	my $script = "$PostgreSQL::Test::Utils::tmp_check/checkpoint.sql";
	open($fh, '>', $script) or die "could not create $script: $!";
	print $fh "SELECT kv_checkpoint();\n";
	close $fh;
	my $pid = spawn_psql($node, $script, "$script.out", "$script.err");
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'kvext checkpointer' AND wait_event = 'Extension'})
	  or die 'the snapshot did not reach its half-way point';
	return $pid;
}

sub release_snapshot
{
	my ($node, $pid) = @_;
	my $hold = $node->data_dir . '/kvext/hold';
	unlink $hold or die "could not remove $hold: $!";
	is(wait_or_kill($pid, time + 180), 0, 'the held snapshot completes');
	$node->safe_psql('postgres',
		q{ALTER SYSTEM RESET kvext.failpoint; SELECT pg_reload_conf()});
	return;
}

# 256kB values at <prefix>1, 2, ... until the store is full (53200), each
# committed, in one call
sub fill
{
	my ($node, $prefix) = @_;
	my $n = $node->safe_psql('postgres', qq{CALL fill('$prefix', 256, NULL)});
	ok($n > 0 && $n < 1000, "filled with $n values $prefix* until the store was full");
	for my $i (1 .. $n)
	{
		$written{"$prefix$i"} = 256;
		$seed{"$prefix$i"}    = "$prefix$i";
	}
	return;
}

my $conf = q{
kvext.heap_chunk_size = '16MB'
kvext.max_value_size = '16MB'
kvext.max_wal_size = '100GB'
kvext.checkpoint_timeout = '1d'
kvext.synchronous_commit = off
};

# ---------------------------------------------------------------------------
# bucket order: a 16MB chunk and a 4.7MB one
{
	my $node = kv_node('bucket_order', "kvext.memory_limit = '21MB'\n$conf");
	setup($node);
	%written = ();
	my @order = keys_in_snapshot_order($node, 'k');
	my ($p, $m, $l, $q) = @order[ 0, 1, 2, 39 ];
	note "snapshot order: $p (220), $m (250), $l (560), ..., $q (220)";

	# at run time, 250 takes the small chunk (the tighter), the others the
	# big one
	put($node, $m, 4000);
	put($node, $l, 8960);
	put($node, $p, 3520);
	put($node, $q, 3520);
	is($node->safe_psql('postgres', 'SELECT compactions FROM kv_memory()'),
		0, 'bucket order: the values fit without moving anything');
	$node->safe_psql('postgres', 'SELECT kv_checkpoint()');

	is(recover($node), 'ready',
		'bucket order: after a crash, the snapshot that fit at run time loads');
	check_contents($node, 'bucket order: after the crash');
	like(slurp_file($node->logfile), qr/kvext loaded snapshot: 4 entries/,
		'bucket order: recovery loaded the four values from the snapshot');
	$node->stop('immediate');
}

# ---------------------------------------------------------------------------
# best fit decreasing: three 16MB chunks (and a 1.5MB one that holds none
# of the values)
my $node = kv_node('best_fit', "kvext.memory_limit = '50MB'\n$conf");
setup($node);
%written = ();
my @keys = (keys_in_snapshot_order($node, 'c'))[ 32 .. 39 ];
# the value rewritten during a snapshot (below) is last in bucket order: its
# partition is copied after the snapshot's half-way point
my ($c1, $c2, $c3, $c4, $c5, $c6, $c7, $c8) = @keys[ 0, 1, 7, 2, 3, 4, 5, 6 ];

# in commit order: {500, 500} in chunk 0, {450, 260, 260} in chunks 1 and 2
put($node, $c1, 8000);
put($node, $c2, 8000);
put($node, $c3, 7200);
put($node, $c4, 4160);
put($node, $c5, 4160);
put($node, $c6, 7200);
put($node, $c7, 4160);
put($node, $c8, 4160);
is($node->safe_psql('postgres', 'SELECT compactions FROM kv_memory()'),
	0, 'best fit: the values fit without moving anything');
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');

is(recover($node), 'ready',
	'best fit: after a crash, the snapshot that fit at run time loads');
check_contents($node, 'best fit: after the crash');

# A server with other chunks loads the same snapshot: a chunk it does not
# have is no place for an entry, and the loader places it anywhere.
$node->append_conf('postgresql.conf', "kvext.heap_chunk_size = '32MB'");
is(recover($node), 'ready', 'with 32MB chunks, the same snapshot loads');
check_contents($node, 'with 32MB chunks');
$node->append_conf('postgresql.conf', "kvext.heap_chunk_size = '16MB'");
is(recover($node), 'ready', 'back to 16MB chunks');
check_contents($node, 'back to 16MB chunks');

# ---------------------------------------------------------------------------
# replay of a value the snapshot already holds
$node->safe_psql('postgres', "SELECT kv_delete('$c3')");
delete $written{$c3};
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
my $logpos = -s $node->logfile;
my $ckpt = hold_snapshot($node);
put($node, $c3, 7200, "$c3 again");
release_snapshot($node, $ckpt);
like(slurp_file($node->logfile, $logpos), qr/kvext snapshot complete: 8 entries/,
	'the snapshot holds the value written after its redo point');
is(recover($node), 'ready',
	'after a crash, replaying a value the snapshot holds fits');
like(slurp_file($node->logfile, $logpos), qr/kvext recovery complete: from snapshot, [1-9]\d* log records replayed/,
	'recovery replayed the rewrite');
check_contents($node, 'after replaying the rewrite');

# ---------------------------------------------------------------------------
# a damaged index of large entries is refused, with a valid checksum over
# the whole file; the repaired file loads again.  A small snapshot of its
# own (three entries just over 1MB, five small ones): the test recomputes
# the file's CRC32C in Perl, a byte at a time.
$node->stop('immediate');
$node = kv_node('damaged_index', "kvext.memory_limit = '32MB'\n$conf");
setup($node);
%written = ();
%seed    = ();
put($node, "big$_", 1100) for (1 .. 3);
put($node, "small$_", 1) for (1 .. 5);
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
$node->stop;
my $snap = $node->data_dir . '/kvext/snapshot';
my $orig = slurp_file($snap);
# the end: index offset, count of large entries, chunks, entry count, CRC
my ($index_at, $nlarge) = unpack('Q<V', substr($orig, -28, 12));
is($nlarge, 3, 'the snapshot indexes its three large entries');
for my $case (
	[ 'a chunk that cannot be',  20, pack('l<', 40), qr/bad index of large entries/ ],
	[ 'a length 8 bytes short', 12, pack('V', unpack('V', substr($orig, $index_at + 12, 4)) - 8),
	  qr/checksum mismatch in a large entry/ ])
{
	my ($what, $field, $bytes, $why) = @$case;
	my $bad = $orig;
	substr($bad, $index_at + $field, length($bytes)) = $bytes;
	write_with_crc($snap, $bad);
	my $logpos = -s $node->logfile;
	$node->start;
	my $r = kv_call($node, "SELECT kv_get('big1')");
	is($r->{sqlstate}, 'XX001', "index with $what: the store refuses to serve (XX001)");
	like($r->{stderr}, qr/kvext snapshot "kvext\/snapshot" is damaged.*: (?:$why)/,
		"index with $what: the error says why");
	unlike(slurp_file($node->logfile, $logpos), qr/TRAP|terminated by signal|PANIC/,
		"index with $what: nothing crashed");
	$node->stop;
}
open(my $fh, '>:raw', $snap) or die;
print $fh $orig;
close $fh;
is(recover($node, 'start'), 'ready', 'the repaired snapshot loads');
check_contents($node, 'after the repair');
$node->stop('immediate');

# ---------------------------------------------------------------------------
# A fuzzy snapshot of a full store: it copies partitions at different
# moments, so it can hold more than the store ever held at once, and replay
# over it can mix states of different moments.  Recovery leaves out of the
# snapshot the keys the log rewrites, so neither needs more room.
for my $case ('deleted during the snapshot', 'rebuilt by replay')
{
	my $f = kv_node($case eq 'deleted during the snapshot' ? 'fuzzy_delete' : 'fuzzy_replay',
		"kvext.memory_limit = '64MB'\n$conf");
	setup($f);
	%written = ();
	%seed    = ();
	my @order = keys_in_snapshot_order($f, 'f');
	my ($e1, $e2, $e3, $e4) = @order[ 0 .. 3 ];    # copied before the hold
	my $late = $order[39];                           # copied after it
	$logpos = -s $f->logfile;
	if ($case eq 'deleted during the snapshot')
	{
		# the snapshot holds e1 (deleted during it) and late (put after that)
		put($f, $_, 10240) for ($e1, $e2, $e3);
		fill($f, 's');
		my $pid = hold_snapshot($f);
		$f->safe_psql('postgres', "SELECT kv_delete('$e1')");
		delete $written{$e1};
		put($f, $late, 10240);
		release_snapshot($f, $pid);
	}
	else
	{
		# replay rebuilds e4, put and deleted during the snapshot, while
		# the snapshot already holds late, put after that delete
		put($f, $_, 10240) for ($e1, $e2, $e3);
		fill($f, 's');
		$f->safe_psql('postgres', "SELECT kv_delete('$e2')");
		delete $written{$e2};
		my $pid = hold_snapshot($f);
		put($f, $e4, 10240);
		$f->safe_psql('postgres', "SELECT kv_delete('$e4')");
		delete $written{$e4};
		put($f, $late, 10240);
		release_snapshot($f, $pid);
	}
	is(recover($f), 'ready', "$case: after a crash, the store that fit at run time fits again");
	like(slurp_file($f->logfile, $logpos), qr/kvext loaded snapshot: \d+ of its \d+ entries, redo at \S+; the log rebuilds the other [1-9]\d*/,
		"$case: the keys the log rewrites were left out of the snapshot");
	check_contents($f, "$case: after the crash");
	$f->stop('immediate');
}

done_testing();
