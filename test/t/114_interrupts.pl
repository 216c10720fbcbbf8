# After a kv statement or commit fails, the backend stays interruptible:
# statement_timeout, pg_cancel_backend, pg_terminate_backend and a fast
# shutdown still work.  (The failure once left a backend whose error path
# resumed interrupts a second time: it ran on with interrupts held off for
# good.)  Every failure is also checked to have lost or changed nothing.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $node = kv_node('interrupts');

$node->safe_psql('postgres', q{
CREATE TABLE t (i int);
SELECT kv_create_keyspace('victim');
SELECT kv_put('k' || i, 'v' || i, 'victim') FROM generate_series(1, 10) i;
SELECT kv_put('keep', 'old');});

my $before = kv_digest($node, 'victim') . '/' . kv_digest($node, 'default');

# Each case: a statement that fails on the given failpoint.
my @cases = (
	[ 'drop keyspace, log full', 'wal-enospc',
		q{SELECT kv_drop_keyspace('victim')} ],
	[ 'drop keyspace in a transaction, log full at commit', 'wal-enospc',
		q{BEGIN; SELECT kv_drop_keyspace('victim'); COMMIT} ],
	[ 'drop keyspace, no room for the COMMIT record', 'wal-enospc-reserve',
		q{SELECT kv_drop_keyspace('victim')} ],
	[ 'create keyspace, log full', 'wal-enospc',
		q{SELECT kv_create_keyspace('newks')} ],
	[ 'put, log full', 'wal-enospc',
		q{SELECT kv_put('keep', 'new')} ],
	[ 'put with a savepoint, log full at commit', 'wal-enospc',
		q{BEGIN; SAVEPOINT s; SELECT kv_put('keep', 'new'); RELEASE s; COMMIT} ],
	[ 'mixed table and key transaction, log full', 'wal-enospc',
		q{BEGIN; INSERT INTO t VALUES (1); SELECT kv_put('keep', 'new'); COMMIT} ],
	[ 'error raised by the log write', 'wal-before-write:error',
		q{SELECT kv_drop_keyspace('victim')} ],);

my @idle;
foreach my $c (@cases)
{
	my ($what, $fp, $sql) = @$c;
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');

	$bg->query("SET kvext.failpoint = '$fp'");
	my ($out, $failed) = $bg->query($sql);
	ok($failed, "$what: the statement fails");
	$bg->query('ROLLBACK; RESET kvext.failpoint');
	$bg->{stderr} = '';

	# statement_timeout still cancels
	$bg->query(q{SET statement_timeout = '200ms'});
	($out, $failed) = $bg->query('SELECT pg_sleep(20)');
	like($bg->{stderr}, qr/canceling statement due to statement timeout/,
		"$what: statement_timeout still cancels");
	$bg->{stderr} = '';
	$bg->query('RESET statement_timeout');

	# the session still works and sees what it should
	is($bg->query_safe(q{SELECT kv_get('keep')}), 'old',
		"$what: the session still works");

	# half of the sessions are terminated, the others are left idle for
	# the fast shutdown at the end
	if (@idle < @cases / 2)
	{
		push @idle, $bg;
		next;
	}
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
		"$what: pg_terminate_backend ends the backend");
	eval { $bg->quit };
}

is(kv_digest($node, 'victim') . '/' . kv_digest($node, 'default'),
	$before, 'the failed statements lost or changed nothing');

# a fast shutdown with the idle sessions still connected
my $ret = PostgreSQL::Test::Utils::system_log('pg_ctl', '-D', $node->data_dir,
	'-m', 'fast', '-t', '120', 'stop');
is($ret, 0, 'a fast shutdown completes with the failed sessions connected');
$node->_update_pid(0) if $ret == 0;
eval { $_->quit } foreach @idle;

$node->start;
kv_wait_ready($node);
is(kv_digest($node, 'victim') . '/' . kv_digest($node, 'default'),
	$before, 'after restart: nothing lost or changed');

$node->stop;
done_testing();
