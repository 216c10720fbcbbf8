# Power loss: kill -9 keeps the kernel's page cache, so a write that was
# never fsynced survives it.  Here $PGDATA/kvext lives on test/lazyfs, a FUSE
# file system that drops every write not made durable by fsync (and every
# create/rename/unlink not made durable by an fsync of its directory) when
# told to "crash".  A power loss is: stop every server process at once
# (SIGSTOP, then SIGKILL), crash lazyfs, unmount, mount again, start.
#
#	a. synchronous_commit = local: every acknowledged commit survives.
#	b. synchronous_commit = off, then a clean stop (pg_ctl stop -m fast)
#	   and the power fails afterwards: every acknowledged commit survives
#	   (a clean shutdown must flush kvext's log).
#	c. synchronous_commit = off and a 10 s wal_writer_delay, power loss right
#	   after the commits: some ARE lost (the harness really drops unsynced
#	   writes), and what survives is a prefix of the acknowledged commits.
#	e. (run last) a crash of PostgreSQL alone, a restart, one acknowledged
#	   commit, then a power loss: what recovery replayed from the page
#	   cache must have been made durable before the log reopened.
#	d. (run first) a new node: the log directory kvext/wal that kvext
#	   creates survives the power loss, with the commits in it; the
#	   directory entry of a mkdir is durable only once its parent directory
#	   is fsynced, as for a new file.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use KvextDurability;

my $lazyfs  = abs_path(dirname(__FILE__) . '/../lazyfs/lazyfs.py');
my $python  = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my $tmp     = PostgreSQL::Test::Utils::tempdir('power_loss');
my $backing = "$tmp/backing";
my $mnt     = "$tmp/mnt";
my $lazylog = "$tmp/lazyfs.log";
my ($lazy_pid, $node);

# ---------------------------------------------------------------------------
# lazyfs helpers

sub fusermount
{
	for my $p (qw(fusermount fusermount3))
	{
		for my $dir ((split /:/, $ENV{PATH} // ''), '/bin', '/usr/bin')
		{
			return "$dir/$p" if -x "$dir/$p";
		}
	}
	return undef;
}

sub is_mounted
{
	my ($dir) = @_;
	open(my $fh, '<', '/proc/self/mountinfo') or return 0;
	my $found = grep { (split / /)[4] eq $dir } <$fh>;
	close $fh;
	return $found;
}

# start lazyfs over $backing at $mnt; returns '' or why it failed
sub lazyfs_mount
{
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN,  '<',  '/dev/null') or POSIX::_exit(127);
		open(STDOUT, '>>', $lazylog)    or POSIX::_exit(127);
		open(STDERR, '>>', $lazylog)    or POSIX::_exit(127);
		exec($python, $lazyfs, $backing, $mnt) or POSIX::_exit(127);
	}
	$lazy_pid = $pid;
	for (1 .. 200)
	{
		return '' if is_mounted($mnt);
		if (waitpid($pid, WNOHANG) == $pid)
		{
			$lazy_pid = undef;
			my @log = split /\n/, slurp_file($lazylog);
			return "lazyfs exited with status " . ($? >> 8) . ": " . join(' / ', @log[-3 .. -1]);
		}
		usleep(50_000);
	}
	return 'lazyfs did not mount within 10 s';
}

sub lazyfs_umount
{
	return unless defined $lazy_pid;
	my $fm = fusermount();
	for (1 .. 100)
	{
		last unless is_mounted($mnt);
		system($fm, '-u', '-q', $mnt);
		usleep(100_000) if is_mounted($mnt);
	}
	system($fm, '-u', '-z', '-q', $mnt) if is_mounted($mnt);
	for (1 .. 100)
	{
		last if waitpid($lazy_pid, WNOHANG) == $lazy_pid;
		kill 'KILL', $lazy_pid if $_ == 50;
		usleep(100_000);
	}
	$lazy_pid = undef;
}

# lazyfs's crash report ("dropped N unsynced pages of M files, undid K name
# operations") of the last crash
sub lazyfs_last_crash
{
	my @lines = grep { /lazyfs: crash: dropped/ } split /\n/, slurp_file($lazylog);
	return $lines[-1] // '';
}

# drop every unsynced change, then unmount and mount again
sub lazyfs_crash
{
	open(my $fh, '>', "$mnt/.lazyfs-crash") or die "lazyfs crash request failed: $!";
	close $fh;
	my $report = lazyfs_last_crash();
	my @log = split /\n/, slurp_file($lazylog);
	my ($last) = grep { $log[$_] =~ /lazyfs: serving/ } reverse 0 .. $#log;
	note($_) for @log[ ($last // -1) + 1 .. $#log ];
	lazyfs_umount();
	my $err = lazyfs_mount();
	die "lazyfs mount after the crash: $err" if $err;
	return $report;
}

# every server process stops at the same instant: SIGSTOP the postmaster
# and its children, then SIGKILL them, then wait until they are gone
sub hard_stop
{
	my ($n) = @_;
	my $pid = $n->{_pid};
	die "node is not running" unless defined $pid;
	my @all = ($pid, child_pids($pid));
	kill 'STOP', @all;
	kill 'KILL', @all;
	$n->{_pid} = undef;
	my $deadline = time + 60;
	while (grep { kill(0, $_) } @all)
	{
		die "server processes still alive 60 s after SIGKILL" if time > $deadline;
		usleep(20_000);
	}
}

# a hard stop of the server, then the power fails
sub power_loss
{
	my ($n) = @_;
	hard_stop($n);
	return lazyfs_crash();
}

END
{
	local $?;    # keep the script's exit status (system() sets $?)
	# the servers first: lazyfs cannot be unmounted while they use it
	eval { $node->stop('immediate') if defined $node && defined $node->{_pid}; };
	lazyfs_umount();
}

# ---------------------------------------------------------------------------
# can we mount lazyfs at all?

my $fm = fusermount();
plan skip_all => 'fusermount not found (Debian package fuse3)' unless $fm;
plan skip_all => "/dev/fuse is not readable and writable by " . getpwuid($<)
  . ' (Debian sets it to 0666; in a container: chmod 0666 /dev/fuse)'
  unless -r '/dev/fuse' && -w '/dev/fuse';
system($python, '-c', 'import fusepy') == 0
  or system($python, '-c', 'import fuse') == 0
  or plan skip_all => "python module fusepy not found for $python (Debian package python3-fusepy)";
# the kvext directory exists (durably) before the mount; kvext creates
# kvext/wal in it
make_path("$backing/kvext", $mnt);
if (my $err = lazyfs_mount())
{
	plan skip_all => "cannot mount lazyfs: $err";
}

# ---------------------------------------------------------------------------
# a node whose $PGDATA/kvext is on lazyfs from its first start

$node = PostgreSQL::Test::Cluster->new('power_loss');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'kvext'
fsync = on
kvext.memory_limit = '64MB'
kvext.wal_segment_size = '64kB'
kvext.wal_writer_delay = '10s'
log_statement = none
));
symlink("$mnt/kvext", $node->data_dir . '/kvext') or die "symlink: $!";
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION kvext');
kv_wait_ready($node) or die 'kvext not ready';

# start_writer(prefix, mode, n, hold): one psql committing kv_put('<prefix>_<i>',
# 'v<i>') for i = 1 .. n, each its own transaction, with
# kvext.synchronous_commit = mode; prints i once the commit is acknowledged.
# With hold, the session then stays connected (pg_sleep) until the server
# goes away, so that no backend exit (which flushes what the backend wrote)
# happens before the power loss or the shutdown.
sub start_writer
{
	my ($prefix, $mode, $n, $hold) = @_;
	my $script = "$tmp/writer_$prefix.sql";
	my $out    = "$tmp/writer_$prefix.out";
	open(my $fh, '>', $script) or die "open $script: $!";
	print $fh "SET kvext.synchronous_commit = $mode;\n";
	print $fh "SELECT $_ FROM kv_put('${prefix}_$_', 'v$_');\n" for 1 .. $n;
	print $fh "SELECT pg_sleep(120);\n" if $hold;
	close $fh;
	my $pid = spawn_psql($node, $script, $out, "$tmp/writer_$prefix.err");
	return { pid => $pid, out => $out };
}

# the acknowledged i of a writer, in order
sub writer_acks
{
	my ($w) = @_;
	return [ grep { /^\d+$/ } split /\n/, slurp_file($w->{out}) ];
}

# wait until a writer was acknowledged n times
sub wait_acks
{
	my ($w, $n) = @_;
	my $deadline = time + 60;
	while (@{ writer_acks($w) } < $n)
	{
		die "writer $w->{out}: only " . scalar(@{ writer_acks($w) }) . " of $n acknowledged"
		  if time > $deadline || waitpid($w->{pid}, WNOHANG) == $w->{pid};
		usleep(20_000);
	}
}

sub wait_writer
{
	my ($w) = @_;
	wait_or_kill($w->{pid}, time + 60);
}

# the i in 1 .. n whose key is present with its value after the restart
sub present
{
	my ($prefix, $n) = @_;
	my $s = kv_scalar($node,
		"SELECT coalesce(string_agg(i::text, ',' ORDER BY i), '') FROM generate_series(1, $n) i
		  WHERE kv_get('${prefix}_' || i) = 'v' || i");
	return [ split /,/, $s ];
}

# "1..k" when the list is exactly 1, 2, .., k
sub is_prefix
{
	my ($list) = @_;
	for my $j (0 .. $#$list)
	{
		return 0 unless $list->[$j] == $j + 1;
	}
	return 1;
}

# insert, flush and snapshot positions of kv_wal_status(), as integers
sub wal_pos
{
	my ($i, $f, $s) = split /\|/, kv_scalar($node,
		q{SELECT insert_lsn - '0/0', flush_lsn - '0/0', coalesce(snapshot_lsn - '0/0', -1)
		  FROM kv_wal_status()});
	return { insert => $i, flush => $f, snapshot => $s };
}

# fsync a directory (through the mount)
sub fsync_dir
{
	my ($dir) = @_;
	system($python, '-c', 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)', $dir) == 0
	  or die "fsync $dir failed";
}

# ---------------------------------------------------------------------------
# d. a new node: kvext created kvext/wal at its first start; acknowledged
# synchronous commits survive a power loss only if that mkdir was made
# durable (fsync of kvext/) as well as the segment file in it
{
	my $w = start_writer('d', 'local', 20);
	wait_writer($w);
	my $n = scalar @{ writer_acks($w) };
	my $report = power_loss($node);
	$node->start;
	kv_wait_ready($node);
	is(scalar @{ present('d', $n) }, $n,
		"new log directory: all $n acknowledged commits survived the power loss ($report)");
	# whatever kvext does, make kvext/wal durable now, so that the other
	# scenarios test the commit path alone
	fsync_dir("$mnt/kvext");
}

# ---------------------------------------------------------------------------
# a. local: every acknowledged commit survives a power loss in mid-load.
# A snapshot is written first (snapshot.tmp, fsync, durable_rename), so
# recovery starts from it and replays the log after it.
{
	kv_scalar($node, q{SELECT kv_put('snap_' || i, 'v' || i) FROM generate_series(1, 50) i;
		SELECT kv_checkpoint();});
	my $w = start_writer('a', 'local', 100_000);
	my $deadline = time + 30;
	usleep(20_000) while @{ writer_acks($w) } < 300 && time < $deadline;
	my $report = power_loss($node);
	wait_writer($w);
	my $acked = writer_acks($w);
	my $n     = scalar @$acked;
	ok($n >= 300, "local: $n commits acknowledged before the power loss");
	$node->start;
	kv_wait_ready($node);
	my $found = present('a', $n + 1);
	ok(wal_pos()->{snapshot} > 0, 'local: recovery found the snapshot');
	is(scalar @{ present('snap', 50) }, 50, 'local: the keys of the snapshot are present');
	my %found = map { $_ => 1 } @$found;
	my @missing = grep { !$found{$_} } @$acked;
	is(scalar(@missing), 0,
		"local: all $n acknowledged commits survived the power loss"
		  . (@missing ? " (missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)])" : ''));
	ok(is_prefix($found), 'local: the keys present are a prefix of the commits ('
		  . scalar(@$found) . ' found)');
}

# ---------------------------------------------------------------------------
# c. off with a 10 s writer delay, power loss right after the commits: the
# unflushed commits are lost.  The writing session stays connected (a
# backend flushes what it wrote when it exits), and the kvext wal writer is
# frozen (SIGSTOP) before flush_lsn is read, so nothing can flush the
# commits after that; if the wal writer had flushed them already, it is
# thawed and the test tries again.
{
	my $n = 200;
	my ($st, $try, @writers);
	my $walwriter = server_process($node, qr/kvext wal writer/, 60);
	die 'kvext wal writer process not found' unless $walwriter;
	for my $t (1 .. 3)
	{
		$try = $t;
		my $w = start_writer("c$t", 'off', $n, 1);
		push @writers, $w;
		wait_acks($w, $n);
		kill 'STOP', $walwriter;
		$st = wal_pos();
		last if $st->{flush} < $st->{insert};
		kill 'CONT', $walwriter;
		note('off: the wal writer flushed before the power loss, try again');
	}
	my $report = power_loss($node);
	wait_writer($_) for @writers;
	$node->start;
	kv_wait_ready($node);
	my $found = present("c$try", $n);
	ok($st->{flush} < $st->{insert},
		"off: before the power loss the log was flushed to $st->{flush} of $st->{insert}");
	# the lost records may never have left kvext's log buffers (shared
	# memory), so lazyfs need not have dropped anything of them
	like($report, qr/lazyfs: crash: dropped \d+ unsynced pages/, 'off: the power loss went through lazyfs');
	ok(@$found < $n, "off: acknowledged but unflushed commits were lost ("
		  . scalar(@$found) . " of $n survived)");
	ok(is_prefix($found), 'off: the commits that survived are a prefix of the acknowledged ones');
}

# ---------------------------------------------------------------------------
# b. off, then a clean stop, then the power fails: a clean shutdown must
# leave every acknowledged commit durable.  The wal writer is frozen while
# the commits are made, so that they are still unflushed when the shutdown
# starts; the writing session is still connected then.
{
	my $n = 300;
	my $walwriter = server_process($node, qr/kvext wal writer/, 60);
	die 'kvext wal writer process not found' unless $walwriter;
	kill 'STOP', $walwriter;
	my $w = start_writer('b', 'off', $n, 1);
	wait_acks($w, $n);
	my $st = wal_pos();
	ok($st->{flush} < $st->{insert},
		"off: $n commits acknowledged, the log flushed to $st->{flush} of $st->{insert} before the clean stop");
	kill 'CONT', $walwriter;
	$node->stop('fast');
	wait_writer($w);
	my $report = lazyfs_crash();
	$node->start;
	kv_wait_ready($node);
	my $found = present('b', $n);
	is(scalar(@$found), $n,
		"off + clean stop: all $n acknowledged commits survived the power loss after it ($report)");
}

# ---------------------------------------------------------------------------
# e. a crash of PostgreSQL alone, then a restart, then the power fails.
# Recovery replays what the kernel's page cache held, written and never
# fsynced: here the tail of a full segment (an off commit of 70kB, written
# by a local commit's flush that the crash cuts between its write and its
# fsync).  Once the log reopens, all of it counts as flushed; a segment
# switch skips its fdatasync when the segment counts as flushed, so unless
# recovery makes the tail durable, the next commit (in the new segment) is
# acknowledged while the old segment's tail is not on disk, and after the
# power loss the log has a hole: recovery fails ("the next log file does
# not start where this one ends").  Found by an attack on stop 24's build.
{
	my $hold = $node->data_dir . '/kvext/hold';
	my $script = "$tmp/writer_e.sql";
	open(my $fh, '>', $script) or die "open $script: $!";
	print $fh "SET kvext.synchronous_commit = off;\n",
	  "SELECT 'ack' FROM kv_put('e_big', repeat('x', 70000));\n",
	  "SELECT pg_sleep(120);\n";
	close $fh;
	my $off = spawn_psql($node, $script, "$tmp/writer_e.out", "$tmp/writer_e.err");
	my $deadline = time + 60;
	usleep(20_000) until slurp_file("$tmp/writer_e.out") =~ /^ack$/m || time > $deadline;
	like(slurp_file("$tmp/writer_e.out"), qr/^ack$/m, 'crash, restart, power loss: an off commit of 70kB');
	open($fh, '>', $hold) or die "open $hold: $!";
	close $fh;
	open($fh, '>', "$tmp/held_e.sql") or die "open: $!";
	print $fh "SET kvext.failpoint = 'wal-before-fsync:hold';\n",
	  "SET kvext.synchronous_commit = local;\n",
	  "SELECT kv_put('e_held', 'h');\n";
	close $fh;
	my $held = spawn_psql($node, "$tmp/held_e.sql", "$tmp/held_e.out", "$tmp/held_e.err");
	ok( $node->poll_query_until(
			'postgres', q{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'Extension'}),
		'crash, restart, power loss: a local commit holds between its write and its fsync');
	$node->stop('immediate');
	unlink $hold;
	wait_or_kill($_, time + 60) for ($off, $held);
	$node->start;
	kv_wait_ready($node);
	is(kv_scalar($node, q{SELECT length(kv_get('e_big'))}), '70000',
		'crash, restart, power loss: recovery replayed the unsynced off commit');
	kv_scalar($node, q{SET kvext.synchronous_commit = local; SELECT kv_put('e_acked', 'yes');});
	my $report = power_loss($node);
	$node->start;
	is(kv_wait_ready($node, 'ready') ? 'ready' : kv_scalar($node, 'SELECT state FROM kv_wal_status()'),
		'ready', "crash, restart, power loss: recovery succeeds ($report)");
	is(kv_scalar($node, q{SELECT kv_get('e_acked') || ' ' || length(kv_get('e_big'))}), 'yes 70000',
		'crash, restart, power loss: the acknowledged commit and the replayed one survive');
}

$node->stop;
done_testing();
