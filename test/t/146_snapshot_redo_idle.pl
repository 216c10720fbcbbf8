# A snapshot's redo point is the oldest logged-but-unapplied record, so a
# transaction in flight when a snapshot begins holds it back, and the log
# segments after it stay.  Once that transaction is applied, a snapshot
# would start later and free them; the checkpointer must then take one
# after kvext.checkpoint_timeout even if nothing was logged since, as an
# idle store (one a full disk refuses every write) would otherwise keep
# those segments until a write came.  Failpoint commit-after-marker:hold
# keeps a transaction between its COMMIT record and its apply while
# kv_checkpoint() writes a snapshot.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use KvextDurability;

my $node = kv_node('snapshot_redo_idle', "kvext.checkpoint_timeout = 1\n");
my $hold = $node->data_dir . '/kvext/hold';

$node->safe_psql('postgres', q{SELECT kv_put('k' || i, 'v') FROM generate_series(1, 100) i});

# a transaction held after its COMMIT record, before it is applied
my $txn = kv_status($node)->{insert};
my $held = kv_spawn_held($node, 'held', 'commit-after-marker', q{SELECT kv_put('held', 'h');});
pass('a transaction is logged and decided, not applied');
my $end = kv_status($node)->{insert};
cmp_ok($end, '>', $txn, 'its records are in the log');

# a snapshot now starts replay at its TXN record
$node->safe_psql('postgres', 'SELECT kv_checkpoint()');
is(kv_status($node)->{snapshot}, $txn, 'a snapshot taken meanwhile has its redo point at the held record');

# applied, then nothing more is logged
unlink $hold or die "unlink: $!";
is(wait_or_kill($held, time + 120) >> 8, 0, 'the held transaction completes');
is(kv_status($node)->{insert}, $end, 'nothing was logged since');

# within a few checkpoint_timeouts, a snapshot starts later
my $redo;
for (1 .. 300)
{
	$redo = kv_status($node)->{snapshot};
	last if $redo > $txn;
	usleep(100_000);
}
is($redo, $end, 'an idle store takes a snapshot whose redo point is past the applied transaction');
is(kv_status($node)->{insert}, $end, 'still without logging anything');
is(kv_scalar($node, q{SELECT kv_get('held') || count(*) FROM kv_scan('k')}), 'h100', 'and the keys are there');

# and no snapshot after that while the store stays idle
my $time = kv_status($node)->{snapshot_time};
sleep 3;
is(kv_status($node)->{snapshot_time}, $time, 'an idle store with nothing in flight takes no more');

$node->stop('immediate');
$node->start;
kv_wait_ready($node);
is(kv_scalar($node, q{SELECT kv_get('held') || count(*) FROM kv_scan('k')}), 'h100', 'recovery from that snapshot');

done_testing();
