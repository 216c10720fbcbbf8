# Helpers for kvext's durability TAP tests (test/t/1xx_*.pl): nodes with
# kvext preloaded, waiting for the store after a crash, SQLSTATEs of failing
# calls, killing the postmaster for real, concurrent write load whose
# acknowledgements are recorded, and checksums of kvext's files.

package KvextDurability;

use strict;
use warnings;

use Digest::MD5;
use Digest::SHA;
use Exporter 'import';
use File::Find;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(
  kv_node kv_wait_ready kv_ready_after_crash kv_call kv_scalar kv_status kv_digest kv_wait_digest
  kv_session_wait kv_spawn kv_spawn_held
  kill9_postmaster child_pids proc_title server_process wal_dir wal_segments last_segment
  kvext_file_digests flip_byte truncate_by
  start_load stop_load load_acks kv_check_expected
  spawn_psql wait_or_kill gdb_hold gdb_wait_hit gdb_release
  kv_delete_every_other kv_repl_group sigstop_server sigcont_server proc_state
  crc32c write_with_crc kb_values_intact
);

# crc32c(bytes): CRC-32C (Castagnoli), as PostgreSQL's COMP_CRC32C, for
# files a test damages and then makes look valid again
my @crc_table;
for my $i (0 .. 255)
{
	my $c = $i;
	$c = ($c & 1) ? (($c >> 1) ^ 0x82F63B78) : ($c >> 1) for 1 .. 8;
	$crc_table[$i] = $c;
}

sub crc32c
{
	my ($data) = @_;
	my $crc = 0xFFFFFFFF;
	$crc = $crc_table[ ($crc ^ $_) & 0xFF ] ^ ($crc >> 8) for unpack('C*', $data);
	return $crc ^ 0xFFFFFFFF;
}

# kb_values_intact(node, \%written, \%seed): does the store hold each key of
# %written with the value val(key, kb) of tests 123, 124 and 128 writes,
# md5(seed) repeated to kb kB (kb = $written{key}; seed = $seed{key}, or the
# key itself)?  Compared as "key:bytes:md5" lists, read with kv_get (so
# that no value passes through a tuplestore) and computed here.
sub kb_values_intact
{
	my ($node, $written, $seed) = @_;
	my @keys = sort keys %$written;
	my @want;
	for my $k (@keys)
	{
		my $v = Digest::MD5::md5_hex($seed ? $seed->{$k} : $k) x ($written->{$k} * 32);
		push @want, "$k:" . length($v) . ':' . Digest::MD5::md5_hex($v);
	}
	my $list = join(',', map { "'$_'" } @keys);
	my $got = $node->safe_psql('postgres',
		"SELECT string_agg(k || ':' || coalesce(octet_length(v)::text, 'missing') || ':' || coalesce(md5(v), ''), ',' ORDER BY k COLLATE \"C\")"
		  . " FROM (SELECT k, kv_get(k) AS v FROM unnest(ARRAY[$list]) k) t");
	return $got eq join(',', @want);
}

# write_with_crc(path, bytes): write bytes to path with their last 4 bytes
# replaced by the CRC-32C of the rest, as a kvext snapshot ends: a file
# damaged inside that only kvext's own checks can catch
sub write_with_crc
{
	my ($path, $bytes) = @_;
	my $body = substr($bytes, 0, length($bytes) - 4);
	open(my $fh, '>:raw', $path) or die "could not write $path: $!";
	print $fh $body . pack('V', crc32c($body));
	close $fh;
	return;
}

# kv_node(name, extra postgresql.conf text): a started node with kvext
# preloaded and the extension created in database "postgres".
# PostgreSQL::Test::Cluster turns restart_after_crash off; kvext must come
# back after a backend crash, so it is turned on again here.
sub kv_node
{
	my ($name, $conf, %params) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf(
		'postgresql.conf', qq(
shared_preload_libraries = 'kvext'
kvext.memory_limit = '64MB'
restart_after_crash = on
log_statement = none
) . ($conf // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION kvext');
	return $node;
}

# kv_repl_group(prefix, n, extra postgresql.conf text): a new replication group
# of n started nodes on 127.0.0.1, node names n1 .. nN, n1 the initial
# leader.  Each node's kvext.peers names the others by port, as user
# kvext_repl (a login role with EXECUTE on kv_repl_append, created on every
# node) with password 's3cret' (never checked: loopback is trusted in test
# clusters; it is there so tests can check it is never shown).  Returns the
# nodes, extension created.  port_of, if given, maps node names to a
# function that gets the node and returns the port the other nodes use to
# reach it (a proxy in front of it, see test/KvextProxy.pm); it is called
# once, before any node starts.
sub kv_repl_group
{
	my ($prefix, $n, $conf, $port_of) = @_;
	my @nodes = map { PostgreSQL::Test::Cluster->new("${prefix}_n$_") } 1 .. $n;
	my @port = map {
		my $f = $port_of->{ 'n' . ($_ + 1) };
		$f ? $f->($nodes[$_]) : $nodes[$_]->port
	} 0 .. $n - 1;
	for my $i (0 .. $n - 1)
	{
		my @peers = map {
			'n' . ($_ + 1) . ':host=127.0.0.1 port=' . $port[$_]
			  . ' dbname=postgres user=kvext_repl password=s3cret connect_timeout=5'
		} grep { $_ != $i } 0 .. $n - 1;
		$nodes[$i]->init;
		$nodes[$i]->append_conf(
			'postgresql.conf', qq(
shared_preload_libraries = 'kvext'
kvext.memory_limit = '64MB'
restart_after_crash = on
log_statement = none
listen_addresses = '127.0.0.1'
kvext.node_name = 'n@{[$i + 1]}'
kvext.peers = '@{[join('; ', @peers)]}'
kvext.leader = 'n1'
) . ($conf // ''));
	}
	for my $node (@nodes)
	{
		$node->start;
		$node->safe_psql('postgres', q{
CREATE EXTENSION kvext;
CREATE ROLE kvext_repl LOGIN;
GRANT EXECUTE ON FUNCTION kv_repl_append TO kvext_repl;});
	}
	return @nodes;
}

# Wait until the store has finished recovery (after a crash-restart the
# server refuses connections for a while, then kv functions wait).
sub kv_wait_ready
{
	my ($node, $state) = @_;
	$state //= 'ready';
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;

	# While the postmaster reinitializes after a crash, psql can exit before
	# it reads its query, and IPC::Run then dies of the broken pipe: ask again.
	while (time < $deadline)
	{
		my $ok = eval {
			$node->poll_query_until('postgres',
				'SELECT state FROM kv_wal_status()', $state);
		};
		return $ok if defined $ok;
		note "kv_wait_ready: asking again after: $@";
		sleep 1;
	}
	return 0;
}

# kv_call(node, sql): run sql; returns a hash with ok, stdout, stderr and
# the SQLSTATE of the first error (psql VERBOSITY=verbose).
sub kv_call
{
	my ($node, $sql, %params) = @_;
	my ($stdout, $stderr);
	my $ret = $node->psql(
		'postgres', $sql,
		stdout        => \$stdout,
		stderr        => \$stderr,
		on_error_stop => 1,
		extra_params  => [ '-v', 'VERBOSITY=verbose' ],
		%params);
	my $sqlstate;
	$sqlstate = $1 if defined $stderr && $stderr =~ /(?:ERROR|FATAL|PANIC):\s+([0-9A-Z]{5}):/;
	return {
		ret      => $ret,
		ok       => ($ret == 0 ? 1 : 0),
		stdout   => $stdout // '',
		stderr   => $stderr // '',
		sqlstate => $sqlstate // '',
	};
}

# one value (safe_psql)
sub kv_scalar
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# kv_wal_status() as a hash; LSNs also as integers (insert, flush, ...)
sub kv_status
{
	my ($node) = @_;
	my $row = $node->safe_psql('postgres',
		q{SELECT state, coalesce(insert_lsn - '0/0', -1), coalesce(flush_lsn - '0/0', -1),
		         coalesce(apply_lsn - '0/0', -1), coalesce(term, -1), coalesce(segments, -1),
		         coalesce(snapshot_lsn - '0/0', -1), coalesce(snapshot_time::text, ''),
		         coalesce(visible_lsn - '0/0', -1), coalesce(flush_watermark - '0/0', -1)
		  FROM kv_wal_status()});
	my @f = split /\|/, $row, -1;
	return {
		state         => $f[0],
		insert        => $f[1],
		flush         => $f[2],
		apply         => $f[3],
		term          => $f[4],
		segments      => $f[5],
		snapshot      => $f[6],
		snapshot_time => $f[7],
		visible       => $f[8],
		watermark     => $f[9],
	};
}

# count and md5 of every key=value of a keyspace (text values)
sub kv_digest
{
	my ($node, $keyspace, $prefix) = @_;
	$keyspace //= 'default';
	$prefix   //= '';
	return $node->safe_psql('postgres',
		qq{SELECT count(*) || ':' || coalesce(md5(string_agg(key || '=' || value, ',' ORDER BY key)), '')
		   FROM kv_scan('$prefix', '$keyspace')});
}

# kv_ready_after_crash(node, logpos): the store is ready again after the
# crash-restart that a PANIC since the log offset logpos starts.
# kv_wait_ready alone could see the store before the postmaster has noticed
# the PANIC, and the next query would then be cut off.
sub kv_ready_after_crash
{
	my ($node, $logpos) = @_;
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $logpos);
	return kv_wait_ready($node);
}

# kv_spawn(node, app, sql): run sql in the background as application_name
# app (the script in $tmp_check/app.sql, its output in app.out and
# app.err); returns the psql pid
sub kv_spawn
{
	my ($node, $app, $sql) = @_;
	my $tmp = $PostgreSQL::Test::Utils::tmp_check;
	open(my $fh, '>', "$tmp/$app.sql") or die "open $tmp/$app.sql: $!";
	print $fh $sql;
	close $fh;
	return spawn_psql($node, "$tmp/$app.sql", "$tmp/$app.out", "$tmp/$app.err", $app);
}

# kv_spawn_held(node, app, point, sql): kv_spawn with failpoint point:hold,
# creating $PGDATA/kvext/hold first; returns the psql pid once the session
# waits at the point.  Remove the hold file to let it go.
sub kv_spawn_held
{
	my ($node, $app, $point, $sql) = @_;
	my $hold = $node->data_dir . '/kvext/hold';
	open(my $fh, '>', $hold) or die "open $hold: $!";
	close $fh;
	my $pid = kv_spawn($node, $app, "SET kvext.failpoint = '$point:hold';\n$sql\n");
	$node->poll_query_until('postgres',
		qq{SELECT wait_event_type || ':' || wait_event FROM pg_stat_activity WHERE application_name = '$app'},
		'Extension:Extension')
	  or die "$app never reached failpoint $point";
	return $pid;
}

# kv_wait_digest(node, want, keyspace, prefix): the node's kv_digest, once
# it equals want or after 180 s (a follower catching up with its leader)
sub kv_wait_digest
{
	my ($node, $want, $keyspace, $prefix) = @_;
	my $got;
	my $deadline = time + 180;
	while (1)
	{
		$got = kv_digest($node, $keyspace, $prefix);
		last if $got eq $want || time >= $deadline;
		sleep 1;
	}
	return $got;
}

# kv_session_wait(node, app): 'type:event' of the wait the session with
# application_name app is in ('' for each part it lacks), or 'gone' if no
# such session is connected
sub kv_session_wait
{
	my ($node, $app) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT coalesce((SELECT coalesce(wait_event_type, '') || ':' || coalesce(wait_event, '')
		                    FROM pg_stat_activity WHERE application_name = '$app'), 'gone')});
}

# pids of the direct children of pid
sub child_pids
{
	my ($ppid) = @_;
	my @pids;
	opendir(my $d, '/proc') or die "opendir /proc: $!";
	for my $p (grep { /^\d+$/ } readdir $d)
	{
		open(my $fh, '<', "/proc/$p/stat") or next;
		my $stat = <$fh>;
		close $fh;
		next unless defined $stat && $stat =~ /\)\s+\S+\s+(\d+)/;
		push @pids, $p if $1 == $ppid;
	}
	closedir $d;
	return @pids;
}

# the process title of pid ('' once it has gone: a child listed by
# child_pids may exit before its title is read, so never die here)
sub proc_title
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/cmdline") or return '';
	local $/;
	my $title = <$fh> // '';
	close $fh;
	return $title;
}

# the pid of the node's server process whose title matches title_re
# ('kvext wal writer'), waiting up to wait seconds (default 0) for it to
# start (a background worker starts after the server accepts
# connections); '' if there is none
sub server_process
{
	my ($node, $title_re, $wait) = @_;
	my $deadline = time + ($wait // 0);
	while (1)
	{
		for my $pid (child_pids($node->{_pid} // 0))
		{
			return $pid if proc_title($pid) =~ $title_re;
		}
		return '' if time >= $deadline;
		usleep(50_000);
	}
}

# every process under pid (children, their children, ...)
sub descendant_pids
{
	my ($pid) = @_;
	my @all;
	my @todo = ($pid);
	while (defined(my $p = shift @todo))
	{
		my @c = child_pids($p);
		push @all, @c;
		push @todo, @c;
	}
	return @all;
}

# the state letter of /proc/<pid>/stat ('T' stopped), '' once it is gone
sub proc_state
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or return '';
	my $stat = <$fh>;
	close $fh;
	return (defined $stat && $stat =~ /\)\s+(\S)/) ? $1 : '';
}

# sigstop_server(node): freeze a whole server with SIGSTOP, as a hung
# machine would be.  kill -STOP on the postmaster's process group is not
# enough: every child of the postmaster makes itself a process group leader
# (InitPostmasterChild calls setsid()), so the postmaster is stopped first
# (it forks nothing while stopped), then every process under it, pass after
# pass until a pass finds no new one.  Returns the list of pids (postmaster
# first), once /proc shows each of them stopped; dies otherwise.
sub sigstop_server
{
	my ($node) = @_;
	my $pm = $node->{_pid};
	die "node is not running" unless defined $pm;
	kill('STOP', $pm) or die "kill -STOP $pm: $!";
	my @pids = ($pm);
	my %seen = ($pm => 1);
	while (1)
	{
		my @new = grep { !$seen{$_}++ } descendant_pids($pm);
		last unless @new;
		kill 'STOP', @new;
		push @pids, @new;
	}
	my $deadline = time + 60;
	while (time < $deadline)
	{
		my @running = grep { proc_state($_) !~ /^(|T|t|Z|X)$/ } @pids;
		return @pids unless @running;
		usleep(20_000);
	}
	die "processes @pids of " . $node->name . " not all stopped after SIGSTOP";
}

# sigcont_server(pids...): wake what sigstop_server froze, the postmaster
# last (it may then act on its children's state at once)
sub sigcont_server
{
	my ($pm, @children) = @_;
	kill 'CONT', @children if @children;
	kill 'CONT', $pm;
	return;
}

# kill -9 the postmaster, then wait until every server process it left
# behind has gone (orphaned backends notice the postmaster's death and
# exit; a new postmaster refuses to start while they are attached to the
# old shared memory).
sub kill9_postmaster
{
	my ($node) = @_;
	my $pid = $node->{_pid};
	die "node is not running" unless defined $pid;
	my @children = child_pids($pid);
	$node->kill9;
	my $deadline = time + 60;
	while (time < $deadline)
	{
		my @alive = grep { kill(0, $_) } ($pid, @children);
		return 1 unless @alive;
		usleep(50_000);
	}
	die "server processes still alive 60 s after kill -9 of the postmaster";
}

sub wal_dir
{
	my ($node) = @_;
	return $node->data_dir . '/kvext/wal';
}

# segment file names (16 hex digits), ascending
sub wal_segments
{
	my ($node) = @_;
	opendir(my $d, wal_dir($node)) or die "opendir: $!";
	my @segs = sort grep { /^[0-9A-F]{16}$/ } readdir $d;
	closedir $d;
	return @segs;
}

sub last_segment
{
	my ($node) = @_;
	my @segs = wal_segments($node);
	return wal_dir($node) . '/' . $segs[-1];
}

# relative path => sha256 of every file under $PGDATA/kvext (following the
# wal directory if it is a symlink)
sub kvext_file_digests
{
	my ($node) = @_;
	my $base = $node->data_dir . '/kvext';
	my %d;
	find(
		{
			wanted => sub {
				return unless -f $_;
				my $rel = substr($File::Find::name, length($base) + 1);
				$d{$rel} = Digest::SHA->new(256)->addfile($_)->hexdigest;
			},
			follow   => 1,
			no_chdir => 1
		},
		$base);
	return \%d;
}

# xor one byte of a file with 0xFF; returns the old byte
sub flip_byte
{
	my ($file, $offset) = @_;
	open(my $fh, '+<:raw', $file) or die "open $file: $!";
	sysseek($fh, $offset, 0) or die "seek: $!";
	my $b;
	sysread($fh, $b, 1) == 1 or die "read $file at $offset failed";
	sysseek($fh, $offset, 0) or die "seek: $!";
	syswrite($fh, chr(ord($b) ^ 0xFF)) == 1 or die "write: $!";
	close $fh or die "close: $!";
	return $b;
}

sub truncate_by
{
	my ($file, $bytes) = @_;
	my $size = -s $file;
	truncate($file, $size - $bytes) or die "truncate $file: $!";
	return $size - $bytes;
}

# start_load(node, kind, prefix, clients, statements): one psql per client
# running a script of statements, each its own transaction; psql prints a
# line as soon as a statement's result (so its commit) arrived, which is
# the acknowledgement.  kind:
#	incr	SELECT kv_incr('<prefix>_<c>')         prints the counter
#	put		SELECT i FROM kv_mput(ARRAY['<prefix>a<c>_<i>', '<prefix>b<c>_<i>'], ...)
#			two keys in one transaction; prints i
sub start_load
{
	my ($node, $kind, $prefix, $clients, $statements) = @_;
	my $dir = $PostgreSQL::Test::Utils::tmp_check;
	my @h;
	for my $c (1 .. $clients)
	{
		my $script = "$dir/load_${prefix}_$c.sql";
		my $out    = "$dir/load_${prefix}_$c.out";
		my $err    = "$dir/load_${prefix}_$c.err";
		open(my $fh, '>', $script) or die "open $script: $!";
		for my $i (1 .. $statements)
		{
			if ($kind eq 'incr')
			{
				print $fh "SELECT kv_incr('${prefix}_$c');\n";
			}
			else
			{
				print $fh
				  "SELECT $i FROM kv_mput(ARRAY['${prefix}a${c}_$i', '${prefix}b${c}_$i'], ARRAY['v$i', 'v$i']);\n";
			}
		}
		close $fh;
		my $pid = spawn_psql($node, $script, $out, $err, "${prefix}_$c");
		push @h, { pid => $pid, out => $out, err => $err, client => $c };
	}
	return { kind => $kind, prefix => $prefix, clients => \@h };
}

# wait for the load's psql processes to end (they do once their
# connection is gone, or after the whole script)
sub stop_load
{
	my ($load) = @_;
	my $deadline = time + 60;
	for my $c (@{ $load->{clients} })
	{
		$c->{status} = wait_or_kill($c->{pid}, $deadline) >> 8;
	}
}

# spawn_psql(node, script, out, err, application_name): run psql -f script
# in the background, its output appended to out (created first, so that it
# exists before psql starts) and its errors to err; returns the pid
sub spawn_psql
{
	my ($node, $script, $out, $err, $appname) = @_;
	my @cmd = (
		$node->installed_command('psql'), '-XAtq',
		'-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr('postgres') . (defined $appname ? " application_name=$appname" : ''),
		'-f', $script);
	open(my $ofh, '>', $out) or die "open $out: $!";
	close $ofh;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN,  '<', '/dev/null') or POSIX::_exit(127);
		open(STDOUT, '>>', $out)       or POSIX::_exit(127);
		open(STDERR, '>', $err)        or POSIX::_exit(127);
		exec(@cmd) or POSIX::_exit(127);
	}
	return $pid;
}

# wait_or_kill(pid, deadline): wait for a child to exit, killing it once
# time() passes deadline; returns its wait status
sub wait_or_kill
{
	my ($pid, $deadline) = @_;
	while (waitpid($pid, WNOHANG) == 0)
	{
		if (time > $deadline)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			last;
		}
		usleep(20_000);
	}
	return $?;
}

# per client: the acknowledged values, in order (lines printed by psql)
sub load_acks
{
	my ($load) = @_;
	my %acks;
	for my $c (@{ $load->{clients} })
	{
		my @lines = grep { /^\d+$/ } split /\n/, slurp_file($c->{out});
		$acks{ $c->{client} } = \@lines;
	}
	return \%acks;
}


# kv_check_expected(node, \%expect, what, kind): every key of %expect
# (key => value) holds its value; one assertion naming the missing ones.
sub kv_check_expected
{
	my ($node, $expect, $what, $kind) = @_;
	my @keys = sort keys %$expect;
	my $bad = kv_scalar($node,
		'SELECT coalesce(string_agg(k, \',\'), \'\') FROM unnest(ARRAY['
		  . join(',', map { "'$_'" } @keys)
		  . '], ARRAY['
		  . join(',', map { "'$expect->{$_}'" } @keys)
		  . ']) AS t(k, v) WHERE kv_get(k) IS DISTINCT FROM v');
	is($bad, '', "$what: all " . scalar(@keys) . " $kind keys present");
	return;
}

# kv_delete_every_other(node, prefix, n): delete keys prefix2, prefix4, ...
# up to prefix<n>, committing every 2000 deletes (each uncommitted delete
# holds a tombstone from the allocator's reserve).
sub kv_delete_every_other
{
	my ($node, $prefix, $n) = @_;
	$node->safe_psql(
		'postgres', qq{
DO \$\$
BEGIN
	FOR i IN 2..$n BY 2 LOOP
		PERFORM kv_delete('$prefix' || i);
		IF i % 2000 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END \$\$;
});
	return;
}

# gdb_hold(pid, breakpoint, kvext => 1): attach gdb to a backend, set one
# breakpoint (after loading kvext's symbols if kvext is set) and let the
# backend run on.  Returns a handle, or undef (after a diag with gdb's
# output) when gdb is missing or cannot attach here.  The caller makes the
# backend reach the breakpoint, then calls gdb_wait_hit, and gdb_release
# to let it go on.
sub gdb_hold
{
	my ($pid, $break, %params) = @_;
	my $gdb = `command -v gdb 2>/dev/null`;
	chomp $gdb;
	return undef unless $gdb;

	my $h = { in => '', out => '' };
	$h->{run} = IPC::Run::start(
		[ $gdb, '-q', '-nx', '-iex', 'set auto-solib-add off', '-p', $pid ],
		'<', \$h->{in}, '>&', \$h->{out}, IPC::Run::timeout(120));
	$h->{in} .= join("\n",
		'set pagination off',
		'set confirm off',
		'handle SIGUSR1 SIGUSR2 SIGURG SIGALRM SIGPIPE SIGCHLD SIGINT SIGTERM SIGQUIT nostop noprint pass',
		($params{kvext} ? ('sharedlibrary kvext') : ()),
		"break $break",
		'echo GDB-READY\n',
		'continue',
		'');
	my $ready = eval {
		$h->{run}->pump until $h->{out} =~ /GDB-READY/ && $h->{out} =~ /Continuing/;
		1;
	};
	if (!$ready || $h->{out} =~ /ptrace: Operation not permitted|No symbol|not defined/)
	{
		Test::More::diag("gdb output:\n$h->{out}");
		$h->{run}->kill_kill;
		return undef;
	}
	return $h;
}

# gdb_wait_hit(handle): wait until the backend stops at the breakpoint;
# false (after a diag with gdb's output) if it never does.
sub gdb_wait_hit
{
	my ($h) = @_;
	my $hit = eval {
		$h->{run}->pump until $h->{out} =~ /Breakpoint 1, /;
		1;
	};
	Test::More::diag("gdb output:\n$h->{out}") unless $hit;
	return $hit;
}

# gdb_release(handle, detach => 0): end gdb (detaching first if asked), so
# the held backend goes on.
sub gdb_release
{
	my ($h, %params) = @_;
	$h->{in} .= ($params{detach} ? "detach\n" : '') . "quit\n";
	eval { $h->{run}->finish; 1 } or $h->{run}->kill_kill;
	return;
}

1;
