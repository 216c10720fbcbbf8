# kv_count() never shows a key missing while it is overwritten: the commit
# of an overwrite once took the old version off the count before adding
# the new one, so a concurrent kv_count() could read one key short.  A
# committing overwrite is held (gdb) between freeing the old version and
# the end of its commit, and kv_count() is read meanwhile.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $node = kv_node('count_overwrite');
$node->safe_psql('postgres',
	q{SELECT kv_put('k' || i, 'v' || i) FROM generate_series(1, 20) i});
is(kv_scalar($node, 'SELECT kv_count()'), 20, '20 keys');

SKIP:
{
	my $w = $node->background_psql('postgres');
	my $wpid = $w->query_safe('SELECT pg_backend_pid()');
	$w->query_safe(q{BEGIN; SELECT kv_put('k7', 'overwritten')});

	# the commit frees the old version of k7 (KvFree) in the middle of
	# converting its entry
	my $g = gdb_hold($wpid, 'KvFree', kvext => 1);
	if (!$g)
	{
		$w->quit;
		skip 'gdb is missing or cannot hold a backend here', 2;
	}
	$w->{stdin} .= "COMMIT;\n";
	$w->{run}->pump_nb;
	if (!gdb_wait_hit($g))
	{
		gdb_release($g);
		$w->quit;
		skip 'the commit never reached KvFree', 2;
	}
	is(kv_scalar($node, 'SELECT kv_count()'), 20,
		'kv_count() during the commit of an overwrite: no key missing');
	gdb_release($g, detach => 1);
	is($w->query_safe(q{SELECT kv_get('k7')}), 'overwritten', 'the overwrite committed');
	$w->quit;
}

is(kv_scalar($node, 'SELECT kv_count()'), 20, 'still 20 keys');
$node->stop;
done_testing();
