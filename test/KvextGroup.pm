# Helpers for kvext's replication TAP tests (test/t/15x_*.pl): a group of
# real nodes on this machine, each configured with the others as peers.

package KvextGroup;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(kv_group kv_group_wait_equal kv_poll);

# kv_group(n, extra postgresql.conf text): n started nodes named n1..nn,
# n1 the initial leader, the extension created everywhere.  Every node
# reaches the others over their Unix sockets as the bootstrap superuser.
sub kv_group
{
	my ($n, $conf) = @_;
	my @nodes = map { PostgreSQL::Test::Cluster->new("n$_") } 1 .. $n;
	for my $i (0 .. $n - 1)
	{
		my $node = $nodes[$i];
		my @peers;
		for my $j (0 .. $n - 1)
		{
			next if $j == $i;
			my $p = $nodes[$j];
			push @peers,
			  sprintf('%s:host=%s port=%d dbname=postgres',
				$p->name, $p->host, $p->port);
		}
		$node->init;
		$node->append_conf(
			'postgresql.conf', qq(
shared_preload_libraries = 'kvext'
kvext.memory_limit = '64MB'
restart_after_crash = on
log_statement = none
kvext.node_name = '@{[ $node->name ]}'
kvext.peers = '@{[ join('; ', @peers) ]}'
kvext.leader = 'n1'
) . ($conf // ''));
	}
	$_->start for @nodes;
	$_->safe_psql('postgres', 'CREATE EXTENSION kvext') for @nodes;
	return @nodes;
}

# kv_poll(node, sql, expected, [seconds]): poll until sql returns expected
sub kv_poll
{
	my ($node, $sql, $expected, $secs) = @_;
	$secs //= 60;
	for (1 .. $secs * 10)
	{
		# (a server that is restarting can close the connection before
		# psql has read its query: IPC::Run then dies of the broken pipe)
		my ($ret, $out) = eval { $node->psql('postgres', $sql) };
		return 1 if defined $ret && $ret == 0 && $out eq $expected;
		select(undef, undef, undef, 0.1);
	}
	my ($ret, $out, $err) = eval { $node->psql('postgres', $sql) };
	($out, $err) = ('', $@) unless defined $ret;
	diag("kv_poll on " . $node->name . ": '$sql' gave '$out' ($err), wanted '$expected'");
	return 0;
}

# kv_group_wait_equal(sql, nodes...): poll until sql gives the same answer
# on every node as on the first; returns that answer, or undef
sub kv_group_wait_equal
{
	my ($sql, @nodes) = @_;
	my $want = $nodes[0]->safe_psql('postgres', $sql);
	for my $n (@nodes[ 1 .. $#nodes ])
	{
		return undef unless kv_poll($n, $sql, $want);
	}
	return $want;
}

1;
