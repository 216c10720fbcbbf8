# Hostile input that needs several sessions or roles (sql/hostile.sql has
# the rest): a keyspace dropped while other sessions write into it, a
# flood of keyspaces up to kvext.max_keyspaces and beyond, from several
# sessions at once, and every data function called by a LOGIN role
# without rights.  Each ends in clear errors, and a dump of the whole
# store (every keyspace, owner, rights, keys and values) shows nothing
# else changed; a restart at the end shows the same dump, so nothing
# refused got into kvext's log either.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use KvextDurability;

my $max_keyspaces = 40;
my $node = kv_node('hostile', "kvext.max_keyspaces = $max_keyspaces\n");
my $psql = $node->installed_command('psql');

# the whole store as one md5 (the superuser sees every keyspace)
sub store_dump
{
	return kv_scalar($node, q{
SELECT md5(string_agg(format('%s|%s|%s|%s|%s', keyspace, entries, owner, rights, kv_digest(keyspace)),
                      E'\n' ORDER BY keyspace COLLATE "C"))
  FROM kv_keyspaces()});
}

# run_scripts(user, script, ...): run each script in its own psql at the
# same time, errors not stopping it; returns a list of [stdout, stderr]
sub run_scripts
{
	my ($user, @scripts) = @_;
	my (@h, @res);
	for my $i (0 .. $#scripts)
	{
		my $file = $node->basedir . "/hostile_script_$i.sql";
		open(my $fh, '>', $file) or die "open $file: $!";
		print $fh $scripts[$i];
		close $fh;
		$res[$i] = [ '', '' ];
		push @h, IPC::Run::start(
			[ $psql, '-XAtq', '-v', 'ON_ERROR_STOP=0', '-v', 'VERBOSITY=verbose',
			  '-d', $node->connstr('postgres') . " user=$user", '-f', $file ],
			'<', \undef, '>', \$res[$i][0], '2>', \$res[$i][1],
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	}
	return (\@h, \@res);
}

# the SQLSTATEs of the errors in psql's verbose stderr, counted
sub sqlstates
{
	my ($stderr) = @_;
	my %n;
	$n{$1}++ while $stderr =~ /ERROR:\s+([0-9A-Z]{5}):/g;
	return \%n;
}

# the store to protect: text and binary values (zero bytes too) in
# default and in a keyspace with a grant, a LOGIN role with no right and
# one with read
$node->safe_psql('postgres', q{
CREATE ROLE hostile_nobody LOGIN;
CREATE ROLE hostile_reader LOGIN;
SELECT kv_create_keyspace('hk_data');
SELECT kv_put('d' || i, 'value ' || i, 'hk_data'), kv_put('d' || i, 'default ' || i)
  FROM generate_series(1, 50) i;
SELECT kv_put('zeros', '\x00000100'::bytea, 'hk_data'), kv_incr('n', 41, 'hk_data');
SELECT kv_grant('hk_data', 'hostile_reader', 'read');
CREATE SERVER hk_local FOREIGN DATA WRAPPER kvext_fdw;
CREATE FOREIGN TABLE hk_ft (key text, value bytea) SERVER hk_local OPTIONS (keyspace 'hk_data');
GRANT ALL ON hk_ft TO hostile_nobody, hostile_reader;
});
my $initial = store_dump();

#
# every data function, called by a LOGIN role without rights, and by one
# that may only read: 42501 for each, and the store unchanged
#
my @calls = (
	q{SELECT kv_get('d1', 'hk_data')},
	q{SELECT kv_get_bytea('d1', 'hk_data')},
	q{SELECT kv_exists('d1', 'hk_data')},
	q{SELECT kv_mget(ARRAY['d1', 'd2'], 'hk_data')},
	q{SELECT count(*) FROM kv_scan('d', 'hk_data')},
	q{SELECT count(*) FROM kv_scan_bytea('', 'hk_data')},
	q{SELECT kv_count('hk_data')},
	q{SELECT kv_digest('hk_data')},
	q{SELECT kv_put('d1', 'x', 'hk_data')},
	q{SELECT kv_put('d1', '\x00'::bytea, 'hk_data')},
	q{SELECT kv_put('d1', '{}'::jsonb, 'hk_data')},
	q{SELECT kv_delete('d1', 'hk_data')},
	q{SELECT kv_incr('n', 1, 'hk_data')},
	q{SELECT kv_cas('d1', 'value 1', 'x', 'hk_data')},
	q{SELECT kv_mput(ARRAY['d1'], ARRAY['x'], 'hk_data')},
	q{SELECT kv_grant('hk_data', 'hostile_nobody', 'all')},
	q{SELECT kv_revoke('hk_data', 'hostile_reader', 'all')},
	q{SELECT kv_drop_keyspace('hk_data')},
	q{SELECT kv_drop_keyspace('default')},
	q{SELECT kv_create_keyspace('hk_new')},
	q{SELECT kv_get('d1')},
	q{SELECT kv_put('d1', 'x')},
	q{SELECT kv_delete('d1')},
	q{SELECT count(*) FROM kvext_fdw_remote_read('hk_data', false, false, NULL, NULL)},
	q{SELECT kvext_fdw_remote_count('hk_data', false)},
	q{SELECT kvext_fdw_remote_insert('hk_data', ARRAY['\x6431'::bytea], ARRAY['\x78'::bytea], true, true)},
	q{SELECT kvext_fdw_remote_cas('hk_data', '\x6431'::bytea, '\x'::bytea, NULL, true)},
	q{SELECT count(*) FROM hk_ft},
	q{INSERT INTO hk_ft VALUES ('new', '\x00')},
	q{UPDATE hk_ft SET value = '\x00' WHERE key = 'd1'},
	q{DELETE FROM hk_ft},
	q{SELECT kv_checkpoint()},
	q{SELECT kv_backup_start()},
	q{SELECT kv_promote()},
	q{SELECT * FROM kv_repl_append(0, 'x', 1, '0/0', 0, '0/0', '\x')},
	q{SELECT * FROM kv_repl_snapshot(0, 'x', 1, '0/0', 0, 0, '\x')},
	q{SELECT * FROM kv_replication_status()});
# what the reader may do
my %reads = map { $_ => 1 } (0 .. 7, 23, 24, 27);
for my $user ('hostile_nobody', 'hostile_reader')
{
	my $script = join('', map { "$_;\n" } @calls);
	my ($h, $res) = run_scripts($user, $script);
	$h->[0]->finish;
	my @errors = ($res->[0][1] =~ /ERROR:\s+([0-9A-Z]{5}):/g);
	my $want = $user eq 'hostile_nobody' ? scalar(@calls) : scalar(@calls) - scalar(keys %reads);
	is(scalar(@errors), $want, "$user: every call it has no right for fails");
	is(join(',', sort { $a cmp $b } keys %{ sqlstates($res->[0][1]) }), '42501',
		"$user: with 42501 only");
	if ($user eq 'hostile_nobody')
	{
		like($res->[0][1], qr/permission denied for keyspace "hk_data".*\n.*needs the read right/,
			'the error names the keyspace and the right');
	}
	is(store_dump(), $initial, "$user: the store is unchanged");
}

#
# a flood of keyspaces: four sessions create keyspaces at once until the
# limit; every refusal is 53400, the limit is never passed, nothing else
# changes, and the slots are usable again once the flood is dropped
#
my @flood = map {
	my $s = $_;
	join('', map { "SELECT kv_create_keyspace('hk_flood_${s}_$_');\n" } 1 .. $max_keyspaces)
} 1 .. 4;
my ($fh, $fres) = run_scripts('postgres', @flood);
$_->finish for @$fh;
my %codes;
for my $r (@$fres)
{
	my $n = sqlstates($r->[1]);
	$codes{$_} += $n->{$_} for keys %$n;
}
my $flooded = kv_scalar($node, q{SELECT count(*) FROM kv_keyspaces() WHERE keyspace LIKE 'hk_flood%'});
my $total = kv_scalar($node, q{SELECT count(*) FROM kv_keyspaces()});
is(join(',', keys %codes), '53400', 'the flood is refused with 53400 only');
is($codes{53400}, 4 * $max_keyspaces - $flooded, 'every create that did not succeed was refused');
# kv_keyspaces() does not list kvext's own keyspace of rights
is($total, $max_keyspaces - 1, 'the store holds exactly kvext.max_keyspaces keyspaces');
my $full = store_dump();
my $r = kv_call($node, q{SELECT kv_create_keyspace('hk_one_more')});
is($r->{sqlstate}, '53400', 'one more keyspace: 53400');
like($r->{stderr}, qr/kvext\.max_keyspaces/, 'the error names the setting');
$r = kv_call($node, q{
BEGIN;
SELECT kv_drop_keyspace('hk_flood_1_1', true), kv_drop_keyspace('hk_flood_2_1', true),
       kv_drop_keyspace('hk_flood_3_1', true), kv_drop_keyspace('hk_flood_4_1', true);
SELECT kv_create_keyspace('hk_swap_' || i) FROM generate_series(1, 10) i;
COMMIT;});
is($r->{sqlstate}, '53400', 'a transaction that frees some slots and takes more: 53400');
is(store_dump(), $full, 'nothing of it stays, the drops included');
$r = kv_call($node, q{SELECT kv_put('k', 'v', 'hk_one_more')});
is($r->{sqlstate}, '42704', 'the refused keyspace does not exist');
$node->safe_psql('postgres',
	q{SELECT count(kv_drop_keyspace(keyspace)) FROM kv_keyspaces() WHERE keyspace LIKE 'hk_flood%'});
is(store_dump(), $initial, 'after dropping the flood the store is as before');
$node->safe_psql('postgres', q{SELECT kv_create_keyspace('hk_after'); SELECT kv_put('k', 'v', 'hk_after');});
is(kv_scalar($node, q{SELECT kv_get('k', 'hk_after')}), 'v', 'a freed slot works');
$node->safe_psql('postgres', q{SELECT kv_drop_keyspace('hk_after')});

#
# a keyspace dropped while three sessions write into it, in statements of
# ten keys (kv_mput) and in transactions that write five keys into
# hk_drop and five into hk_keep, interleaved.  A drop waits for the
# writers that have uncommitted writes in the keyspace (or one of them
# deadlocks with it, 40P01, when it writes into it again); one that is
# rolled back changes nothing; once a drop commits the writers get 42704,
# their transactions abort whole (no half of one stays in hk_keep), and
# nothing of hk_drop comes back when it is created again.
#
$node->safe_psql('postgres', q{SELECT kv_create_keyspace('hk_drop'), kv_create_keyspace('hk_keep')});
my @writers = map {
	my $w = $_;
	join('', map {
		my $i = $_;
		my $sql;
		if ($i % 5)
		{
			my @k = map { "'w$w:$i:$_'" } 1 .. 10;
			$sql = "SELECT kv_mput(ARRAY[" . join(',', @k)
			  . "], array_fill('v$i'::text, ARRAY[10]), 'hk_drop');\n";
		}
		else
		{
			$sql = "BEGIN;\n"
			  . join('', map { "SELECT kv_put('w$w:$i:$_', 'v', 'hk_keep'); SELECT kv_put('w$w:$i:$_', 'v', 'hk_drop');\n" } 1 .. 5)
			  . "COMMIT;\n";
		}
		$sql .= "SELECT pg_sleep(0.02);\n" unless $i % 10;
		$sql
	} 1 .. 1000)
} 1 .. 3;
my ($wh, $wres) = run_scripts('postgres', @writers);
$node->poll_query_until('postgres', q{SELECT kv_count('hk_drop') >= 300})
  or die 'the writers wrote nothing';
my %drop_codes;
for my $try (1 .. 5)
{
	$r = kv_call($node, q{BEGIN; SELECT kv_drop_keyspace('hk_drop'); SELECT pg_sleep(0.1); ROLLBACK;});
	$drop_codes{ $r->{ok} ? 'ok' : $r->{sqlstate} }++;
}
note 'rolled back drops: ' . join(', ', map { "$_ x$drop_codes{$_}" } sort keys %drop_codes);
ok(!grep({ $_ ne 'ok' && $_ ne '40P01' } keys %drop_codes),
	'a drop during writes waits for the writers and works (or ends a deadlock with one, 40P01)');
my $dropped = 0;
my %refused;
for my $try (1 .. 500)
{
	$r = kv_call($node, q{SELECT kv_drop_keyspace('hk_drop')});
	if ($r->{ok}) { $dropped = 1; last; }
	$refused{ $r->{sqlstate} }++;
	usleep(5_000);
}
ok($dropped, 'the keyspace was dropped while the writers ran');
ok(!grep({ $_ ne '40P01' } keys %refused), 'drops refused meanwhile were deadlocks (40P01)');
$_->finish for @$wh;
my %wcodes;
for my $w (@$wres)
{
	my $n = sqlstates($w->[1]);
	$wcodes{$_} += $n->{$_} for keys %$n;
}
note 'writer errors: ' . join(', ', map { "$_ x$wcodes{$_}" } sort keys %wcodes);
ok($wcodes{42704}, 'the writers were still writing when the drop committed');
ok(!grep({ $_ ne '42704' && $_ ne '25P02' && $_ ne '40P01' } keys %wcodes),
	'writers fail with 42704 (keyspace gone) or 40P01 (a deadlock with the drop), or skip the rest of their failed transaction');
like($wres->[0][1] . $wres->[1][1] . $wres->[2][1], qr/keyspace "hk_drop" does not exist/,
	'the error names the keyspace');
is(kv_scalar($node, q{
SELECT count(*) FILTER (WHERE n <> 5) || ':' || (count(*) > 0)
  FROM (SELECT count(*) AS n FROM kv_scan('', 'hk_keep')
         GROUP BY split_part(key, ':', 1), split_part(key, ':', 2)) g}),
	'0:true', 'every transaction that wrote into hk_keep is there whole or not at all');
ok(!kv_call($node, q{SELECT kv_count('hk_drop')})->{ok}, 'the keyspace is gone');
$node->safe_psql('postgres', q{SELECT kv_create_keyspace('hk_drop')});
is(kv_scalar($node, q{SELECT kv_count('hk_drop') || ':' || count(*) FROM kv_scan('', 'hk_drop')}),
	'0:0', 'created again, it is empty');
$node->safe_psql('postgres', q{SELECT kv_drop_keyspace('hk_drop'), kv_drop_keyspace('hk_keep')});
is(store_dump(), $initial, 'the rest of the store is unchanged');

#
# a restart shows the same store: nothing refused above got into kvext's
# log, and no backend crashed
#
$node->restart;
kv_wait_ready($node);
is(store_dump(), $initial, 'after a restart the store is the same');
my $log = slurp_file($node->logfile);
unlike($log, qr/PANIC|TRAP|terminated by signal|server process .* exited with exit code [^0]/,
	'no crash and no PANIC in the server log');

done_testing();
