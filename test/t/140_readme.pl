# The README's examples run as written: start a fresh `make run` (on a
# private port and directory, without rebuilding: make test's build is the
# one installed), run every ```sql block of README.md in order with psql in
# the leader's database make run prints, as a user would (ON_ERROR_STOP),
# check the results the README shows in a "-- result" comment, check that a
# follower has the README's writes and refuses its own (25006), then
# `make stop`.
#
# Conventions the README follows, checked here:
#	- a statement ends with ';' at the end of a line; a line starting with
#	  a backslash is a psql meta-command;
#	- "-- ERROR 22021: ..." after a statement: it fails with that SQLSTATE
#	  (psql carries on there only);
#	- any other comment after a statement that returns one value (one row,
#	  one column): the comment's first word is that value (quotes and a
#	  trailing ':' or ';' aside; booleans written true and false).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = $ENV{KVEXT_SOURCE_DIR};
plan skip_all => 'KVEXT_SOURCE_DIR (the source tree) is not set; scripts/test.sh sets it'
  unless defined $root && -f "$root/README.md";

# ---------------------------------------------------------------------------
# The README's statements, in order.
my @stmts;
{
	open(my $fh, '<', "$root/README.md") or die "open README.md: $!";
	my ($in, $block, $cur, $curline) = (0, 0, '', 0);
	while (my $line = <$fh>)
	{
		chomp $line;
		if (!$in)
		{
			if ($line =~ /^```sql\s*$/) { $in = 1; $block++; }
			next;
		}
		if ($line =~ /^```\s*$/)
		{
			die "README.md line $.: unterminated statement in sql block $block: $cur"
			  if $cur ne '';
			$in = 0;
			next;
		}
		next if $line =~ /^\s*$/ || ($cur eq '' && $line =~ /^\s*--/);
		$curline = $. if $cur eq '';
		if ($cur eq '' && $line =~ /^\s*\\/)
		{
			push @stmts, { sql => $line, comment => '', line => $. };
			next;
		}
		# split off a trailing comment (no README statement has "--" in a string)
		my ($code, $comment) = ($line, '');
		if ($line =~ /^(.*?)\s*--\s*(.*)$/)
		{
			($code, $comment) = ($1, $2);
		}
		$cur .= ($cur eq '' ? '' : "\n") . $code;
		if ($code =~ /;\s*$/)
		{
			push @stmts, { sql => $cur, comment => $comment, line => $curline };
			$cur = '';
		}
	}
	close $fh;
}
cmp_ok(scalar(@stmts), '>', 20, 'README.md has sql examples (' . scalar(@stmts) . ' statements)');

# ---------------------------------------------------------------------------
# make run, on a private port and directory
my $rundir = PostgreSQL::Test::Utils::tempdir_short();
my $port   = PostgreSQL::Test::Cluster::get_free_port();
my %env    = (NOBUILD => 1, PORT => $port, KVEXT_RUN_DIR => $rundir);
my ($out, $err);
{
	local @ENV{ keys %env } = values %env;
	local $ENV{MAKEFLAGS};
	($out, $err) = run_command([ 'make', '-s', '--no-print-directory', '-C', $root, 'run' ]);
}
like($out, qr/psql -h 127\.0\.0\.1 -p $port -U \S+ kvext\b/,
	'make run prints how to connect') or diag("stdout:\n$out\nstderr:\n$err");
like($out, qr/kv_incr\s*\n-+\s*\n\s*1\s*\n/, 'the demo counts its own visits from 1');
my ($user) = $out =~ /psql -h 127\.0\.0\.1 -p $port -U (\S+) kvext\b/;
$user //= 'postgres';

# ---------------------------------------------------------------------------
# One psql session runs every statement; markers on stdout tell the
# results apart, and :SQLSTATE says how each statement ended.
my $script = "$rundir/readme.sql";
open(my $sfh, '>', $script) or die "open $script: $!";
print $sfh "\\set ON_ERROR_STOP 1\n";
for my $i (0 .. $#stmts)
{
	my $s = $stmts[$i];
	my ($want_err) = $s->{comment} =~ /^ERROR\s+([0-9A-Z]{5})\b/;
	$s->{want_err} = $want_err;
	print $sfh "\\set ON_ERROR_STOP 0\n" if $want_err;
	print $sfh "\\echo '\@\@begin $i'\n$s->{sql}\n\\echo '\@\@end $i' :SQLSTATE\n";
	print $sfh "\\set ON_ERROR_STOP 1\n" if $want_err;
}
close $sfh;

my @psql = (
	'psql', '-X', '-q', '-A', '-t', '-h', '127.0.0.1', '-p', $port, '-U', $user,
	'-d', 'kvext', '-f', $script);
my ($rout, $rerr) = run_command([ 'sh', '-c', 'cd "$1" && shift && exec "$@"', 'sh', $rundir, @psql ]);

my %res;
{
	my $cur;
	for my $l (split /\n/, $rout)
	{
		if ($l =~ /^\@\@begin (\d+)$/) { $cur = $1; $res{$cur} = { out => [] }; next; }
		if ($l =~ /^\@\@end (\d+) (\S+)$/) { $res{$1}{state} = $2; undef $cur; next; }
		push @{ $res{$cur}{out} }, $l if defined $cur;
	}
}

for my $i (0 .. $#stmts)
{
	my $s    = $stmts[$i];
	my $r    = $res{$i};
	my $what = "README.md line $s->{line}: $s->{sql}";
	if (!defined $r || !defined $r->{state})
	{
		fail("$what: ran") or diag("psql stderr:\n$rerr");
		last;
	}
	if ($s->{want_err})
	{
		is($r->{state}, $s->{want_err}, "$what: fails with $s->{want_err}");
		next;
	}
	is($r->{state}, '00000', "$what: succeeds") or diag("psql stderr:\n$rerr");
	my @out = @{ $r->{out} };
	if ($s->{comment} ne '' && @out == 1 && $out[0] ne '' && $out[0] !~ /\|/)
	{
		my ($want) = $s->{comment} =~ /^(\S+)/;
		$want =~ s/[:;,]$//;
		$want =~ s/^'(.*)'$/$1/;
		# psql shows booleans as t and f; the README writes true and false
		my $got = $out[0] eq 't' ? 'true' : $out[0] eq 'f' ? 'false' : $out[0];
		is($got, $want, "$what: returns $want");
	}
}

# ---------------------------------------------------------------------------
# make run's group, as the README describes it: a follower, in kvext_demo,
# gets the leader's writes (the README's among them) and refuses its own.
like($out, qr/^==> read on the follower/m, 'the demo reads on a follower');
my ($fport) = $out =~ /psql -h 127\.0\.0\.1 -p (\d+) -U \S+ kvext_demo\b/;
ok(defined $fport && $fport != $port, 'make run prints how to connect to a follower');
SKIP:
{
	skip 'no follower port printed', 3 unless defined $fport;
	my @conn = ('psql', '-X', '-q', '-A', '-t', '-h', '127.0.0.1', '-U', $user);
	my ($fout, $ferr) = run_command(
		[
			@conn, '-p', $fport, '-d', 'kvext_demo',
			'-c', '\set VERBOSITY verbose',
			'-c', "SELECT kv_put('readme', 'on a follower')"
		]);
	like($ferr, qr/ERROR:\s+25006:/, 'a write on a follower fails with 25006')
	  or diag("stdout:\n$fout\nstderr:\n$ferr");

	# what the README's examples left in the store, per keyspace
	my $sql = q{SELECT string_agg(keyspace || '=' || entries, ',' ORDER BY keyspace)
				FROM kv_stats() WHERE keyspace IS NOT NULL};
	my ($want) = run_command([ @conn, '-p', $port, '-d', 'kvext', '-c', $sql ]);
	like($want, qr/^default=\d+/, 'the leader lists its keyspaces');
	my $got = '';
	for (1 .. 300)
	{
		($got) = run_command([ @conn, '-p', $fport, '-d', 'kvext_demo', '-c', $sql ]);
		last if $got eq $want;
		select(undef, undef, undef, 0.1);
	}
	is($got, $want, 'the follower has what the README wrote on the leader');
}

# ---------------------------------------------------------------------------
{
	local @ENV{ keys %env } = values %env;
	local $ENV{MAKEFLAGS};
	($out, $err) = run_command([ 'make', '-s', '--no-print-directory', '-C', $root, 'stop' ]);
}
like($out, qr/stopped/, 'make stop stops it') or diag("stdout:\n$out\nstderr:\n$err");
unlike($out, qr/not running|did not stop/, 'make stop stops all three')
  or diag("stdout:\n$out\nstderr:\n$err");

done_testing();
