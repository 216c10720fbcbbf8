# Copyright (c) 2026, kvext authors
#
# Replication links cut again and again under load (issue 9 item 12): three
# real nodes on loopback, 8 clients running kv_incr on 4 shared counters on
# the leader, while
#  - a loop on each follower runs pg_terminate_backend on the backends that
#    serve the leader's kv_repl_append calls;
#  - the traffic to n3 goes through a TCP proxy (test/KvextProxy.pm) that
#    cuts every connection (RST), delays traffic by 200 ms or stops moving
#    bytes for a while;
#  - once, no majority at all: n3's traffic paused and n2 refusing the
#    replication role's logins (ALTER ROLE ... NOLOGIN) while its
#    replication backends are killed, so commits cannot reach a majority and
#    the clients' statement_timeout leaves some of them in doubt (40003).
# Checked (docs/architecture.md, "Replication"; README, "When a commit
# returns"): every acknowledged increment is counted exactly once on EVERY
# node, an increment that failed with a plain error never is, one in doubt
# (40003) may be (acked <= value <= acked + in_doubt; and since the leader
# never changes, its record must commit: value = acked + in_doubt); the
# values kv_incr returned for one counter are all different; only 40003 and
# 57014 are ever returned; in the end the three stores are equal.
# No timing is asserted: the sleeps only give the faults time to act.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use KvextDurability;
use KvextGroup;
use KvextProxy;

my $clients  = 8;
my @counters = map { "c$_" } 1 .. 4;

my $proxy;
my ($n1, $n2, $n3) = kv_repl_group(
	'cut', 3,
	"kvext.wal_segment_size = '1MB'\n",
	{
		n3 => sub {
			$proxy = KvextProxy->new(target_port => $_[0]->port);
			return $proxy->port;
		}
	});
my @nodes = ($n1, $n2, $n3);

# the counters exist everywhere before the load starts
$n1->safe_psql('postgres', join(';', map { "SELECT kv_put('$_', '0')" } @counters));
for my $n ($n2, $n3)
{
	ok(kv_poll($n, q{SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM kv_scan('c')},
			join(',', map { "$_=0" } @counters), 120),
		$n->name . ' has the counters before the load');
}
ok( $n1->poll_query_until(
		'postgres', q{SELECT string_agg(peer || ':' || state, ',' ORDER BY peer) FROM kv_replication},
		'n2:streaming,n3:streaming'),
	'both peers stream before the faults (n3 through the proxy)');
cmp_ok($proxy->stats->{accepted}, '>=', 1, 'the leader reaches n3 through the proxy');

# ---------------------------------------------------------------------------
# the killers: a loop on each follower, in its own session, that terminates
# the backends running kv_repl_append every 0.15 to 0.45 s and logs how
# many it hit; it ends when killer_conf.pause goes negative

my $dir = $PostgreSQL::Test::Utils::tmp_check;
my @killers;
for my $f ($n2, $n3)
{
	$f->safe_psql('postgres', q{
CREATE TABLE kills (at timestamptz DEFAULT clock_timestamp(), n int);
CREATE TABLE killer_conf (pause float8);
INSERT INTO killer_conf VALUES (0.3);});
	my $script = "$dir/killer_" . $f->name . '.sql';
	open(my $fh, '>', $script) or die "open $script: $!";
	print $fh q{
DO $$
DECLARE
	n int;
	p float8;
BEGIN
	LOOP
		SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) INTO n
		  FROM pg_stat_activity
		 WHERE pid <> pg_backend_pid()
		   AND (application_name = 'kvext sender n1' OR query LIKE '%FROM kv_repl_append(%');
		INSERT INTO kills(n) VALUES (n);
		COMMIT;
		SELECT pause INTO p FROM killer_conf;
		EXIT WHEN p < 0;
		PERFORM pg_sleep(p * (0.5 + random()));
	END LOOP;
END $$;
};
	close $fh;
	push @killers,
	  {
		node => $f,
		pid  => spawn_psql($f, $script, "$script.out", "$script.err", 'kvext_killer')
	  };
}

# ---------------------------------------------------------------------------
# the load: per client a psql script of kv_incr calls on random counters,
# each its own transaction, statement_timeout 2 s (so a commit wait without
# a majority ends in doubt); psql's ERROR and SQLSTATE variables tell each
# call's outcome, printed in order on stdout.  Every 5 calls the script
# looks for the stop file.

my $stopfile = "$dir/cut_load.stop";
unlink $stopfile;
my @load;
srand(156);
for my $c (1 .. $clients)
{
	my $script = "$dir/cut_load_$c.sql";
	open(my $fh, '>', $script) or die "open $script: $!";
	print $fh "\\set ON_ERROR_STOP 0\nSET statement_timeout = '2s';\n";
	for my $i (1 .. 20000)
	{
		my $k = $counters[ int(rand(@counters)) ];
		print $fh qq{SELECT kv_incr('$k') AS v \\gset
\\if :ERROR
\\echo ERR $k :SQLSTATE
\\else
\\echo OK $k :v
\\endif
};
		print $fh qq{\\set stop `test -e '$stopfile' && echo 1 || echo 0`
\\if :stop
\\q
\\endif
} if $i % 5 == 0;
	}
	close $fh;
	push @load,
	  {
		client => $c,
		out    => "$script.out",
		err    => "$script.err",
		pid    => spawn_psql($n1, $script, "$script.out", "$script.err", "kvext_load_$c")
	  };
}

# ---------------------------------------------------------------------------
# the faults, one after the other, while the load and the killers run

# n2 unreachable for replication: logins of the replication role refused;
# the killer ends the sessions it has
sub n2_login
{
	my ($on) = @_;
	$n2->safe_psql('postgres', 'ALTER ROLE kvext_repl ' . ($on ? 'LOGIN' : 'NOLOGIN'));
}

my $no_majority_at;
for my $phase (qw(cut delay pause cut no_majority delay cut pause cut))
{
	note "fault: $phase";
	if ($phase eq 'cut')
	{
		$proxy->cut;
		usleep(1_500_000);
	}
	elsif ($phase eq 'delay')
	{
		$proxy->delay(200);
		usleep(2_500_000);
		$proxy->delay(0);
	}
	elsif ($phase eq 'pause')
	{
		$proxy->pause;
		usleep(2_000_000);
		$proxy->resume;
	}
	elsif ($phase eq 'no_majority')
	{
		n2_login(0);
		$proxy->pause;
		# until n2 has no replication session left (the killer ends them)
		$n2->poll_query_until('postgres',
			q{SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'kvext sender n1'});
		# answers the leader got before are read by now
		usleep(500_000);
		$no_majority_at = $n1->safe_psql('postgres', 'SELECT commit_lsn FROM kv_cluster');
		usleep(4_000_000);
		# no majority, so no commit: the commit position has not moved
		is($n1->safe_psql('postgres', 'SELECT commit_lsn FROM kv_cluster'),
			$no_majority_at, 'without a majority the commit position stays where it was');
		n2_login(1);
		$proxy->resume;
	}
}

# stop the load, then the killers
open(my $sfh, '>', $stopfile) or die "open $stopfile: $!";
close $sfh;
for my $l (@load)
{
	$l->{status} = wait_or_kill($l->{pid}, time + 120) >> 8;
}
$n2->safe_psql('postgres', 'UPDATE killer_conf SET pause = -1');
$n3->safe_psql('postgres', 'UPDATE killer_conf SET pause = -1');
for my $k (@killers)
{
	is(wait_or_kill($k->{pid}, time + 60), 0, 'the killer loop on ' . $k->{node}->name . ' ended cleanly');
	cmp_ok($k->{node}->safe_psql('postgres', 'SELECT sum(n) FROM kills'),
		'>', 0, 'the killer terminated replication backends on ' . $k->{node}->name);
}
my $st = $proxy->stats;
note 'proxy: ' . join(' ', map { "$_=$st->{$_}" } sort keys %$st);
cmp_ok($st->{cuts}, '>', 0, 'the proxy cut connections to n3');
cmp_ok($st->{accepted}, '>', 1, 'the leader reconnected to n3 through the proxy');

# ---------------------------------------------------------------------------
# the clients' outcomes

my (%acked, %doubt, %failed, %values, %codes);
my $calls = 0;
for my $l (@load)
{
	is($l->{status}, 0, "client $l->{client} ran to the stop file");
	for my $line (split /\n/, slurp_file($l->{out}))
	{
		if ($line =~ /^OK (c\d) (\d+)$/)
		{
			$acked{$1}++;
			push @{ $values{$1} }, $2;
		}
		elsif ($line =~ /^ERR (c\d) (\w+)$/)
		{
			$codes{$2}++;
			if ($2 eq '40003') { $doubt{$1}++; }
			else { $failed{$1}++; }
		}
		else
		{
			fail("client $l->{client}: unexpected output line '$line'");
			next;
		}
		$calls++;
	}
}
note "$calls calls: "
  . join(', ', map { "$_ acked " . ($acked{$_} // 0) . ' in doubt ' . ($doubt{$_} // 0)
	  . ' failed ' . ($failed{$_} // 0) } @counters)
  . '; errors: ' . join(' ', map { "$_ x$codes{$_}" } sort keys %codes);
cmp_ok(scalar(map { @$_ } values %values), '>', 100, 'the clients got increments acknowledged');
is(join(',', grep { $_ ne '40003' && $_ ne '57014' } sort keys %codes),
	'', 'the only errors are 40003 (in doubt) and 57014 (cancelled by statement_timeout)');
cmp_ok(scalar(grep { defined } map { $doubt{$_} } @counters), '>', 0,
	'the no-majority phase left commits in doubt (none returned success without a majority)');

# every returned value is unique per counter: no two increments saw the
# same committed value
for my $k (@counters)
{
	my %seen;
	my @dups = grep { $seen{$_}++ } @{ $values{$k} // [] };
	is(join(',', @dups), '', "$k: kv_incr never returned the same value twice");
}

# ---------------------------------------------------------------------------
# the leader catches everyone up; counters exact on every node

ok( $n1->poll_query_until(
		'postgres', q{SELECT c.commit_lsn = w.flush_lsn FROM kv_cluster_status() c, kv_wal_status() w}),
	'the commit position reaches the leader\'s flush position after the faults');
my $counters_sql =
  q{SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM kv_scan('c')};
my $final = kv_group_wait_equal($counters_sql, @nodes);
ok(defined $final, 'the three nodes agree on the counters') or $final = $n1->safe_psql('postgres', $counters_sql);
my %final = map { split /=/ } split /,/, $final;
for my $k (@counters)
{
	my ($ack, $d) = ($acked{$k} // 0, $doubt{$k} // 0);
	for my $n (@nodes)
	{
		my $v = $n->safe_psql('postgres', "SELECT kv_get('$k')");
		ok($v >= $ack && $v <= $ack + $d,
			"$k on " . $n->name . ": acked $ack <= $v <= acked + in doubt " . ($ack + $d));
	}
	# the leader never changed, so no record in doubt was dropped
	is($final{$k}, $ack + $d, "$k = acked + in doubt: every in-doubt increment committed (one leader)");
	my $max = (sort { $b <=> $a } @{ $values{$k} // [0] })[0];
	cmp_ok($final{$k}, '>=', $max, "$k is at least the largest value kv_incr returned");
}

my $digest = kv_group_wait_equal(
	q{SELECT count(*) || ':' || coalesce(md5(string_agg(key || '=' || value, ',' ORDER BY key)), '')
	    FROM kv_scan('', 'default')}, @nodes);
ok(defined $digest, 'kv_scan digests equal on the three nodes');
is($digest, kv_digest($n1), '... and equal to the leader\'s');
for my $f ($n2, $n3)
{
	my $commit = $n1->safe_psql('postgres', 'SELECT commit_lsn FROM kv_cluster');
	ok( $f->poll_query_until(
			'postgres', qq{SELECT applied_lsn >= '$commit' AND commit_lsn >= '$commit' FROM kv_cluster}),
		$f->name . ' has applied up to the leader\'s commit position');
}
ok( $n1->poll_query_until(
		'postgres', q{SELECT string_agg(peer || ':' || state, ',' ORDER BY peer) FROM kv_replication},
		'n2:streaming,n3:streaming'),
	'both peers stream again');

# nothing crashed
for my $n (@nodes)
{
	my $log = slurp_file($n->logfile);
	unlike($log, qr/TRAP:|PANIC:|terminated by signal/, $n->name . ': no crash in the server log');
}

$proxy->stop;
$_->stop for @nodes;
done_testing();
