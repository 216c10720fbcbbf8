# Copyright (c) 2026, kvext authors
#
# kvext only works when loaded through shared_preload_libraries.  Without it:
#  - CREATE EXTENSION kvext fails with SQLSTATE 55000 and a hint that names
#    shared_preload_libraries, and fails the same way when retried in the
#    same session (where the library may already be mapped into the backend);
#  - on a server where the extension exists but the library is no longer
#    preloaded (setting removed, server restarted), every kv function fails
#    with 55000 instead of crashing or touching unattached shared memory.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# psql prints "ERROR:  <sqlstate>: <message>" with VERBOSITY=verbose
my @verbose = (extra_params => [ '-v', 'VERBOSITY=verbose' ]);

# Check that stderr carries the "not preloaded" error with its code and hint.
sub check_not_preloaded
{
	my ($ret, $stderr, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;

	isnt($ret, 0, "$what: fails");
	like($stderr, qr/ERROR:\s+55000: kvext must be loaded via shared_preload_libraries/,
		"$what: SQLSTATE 55000 and the message");
	like($stderr, qr/HINT:\s+.*shared_preload_libraries/,
		"$what: hint mentions shared_preload_libraries");
	unlike($stderr, qr/server closed the connection|terminated abnormally/,
		"$what: backend did not crash");
}

# ---------------------------------------------------------------------------
# 1. A server that never preloaded kvext.
my $plain = PostgreSQL::Test::Cluster->new('not_preloaded');
$plain->init;
$plain->start;

my ($ret, $stdout, $stderr) =
  $plain->psql('postgres', 'CREATE EXTENSION kvext', @verbose);
check_not_preloaded($ret, $stderr, 'CREATE EXTENSION without preload');

# Twice in the same session: the first attempt may have left the library
# loaded in this backend; the second must fail just the same.
($ret, $stdout, $stderr) = $plain->psql(
	'postgres', q{
\set ON_ERROR_STOP 0
CREATE EXTENSION kvext;
\echo first-done
CREATE EXTENSION kvext;
\echo second-done
SELECT pg_backend_pid() > 0 AS alive;
},
	on_error_stop => 0,
	@verbose);
my @errs = ($stderr =~ /ERROR:\s+55000: kvext must be loaded via shared_preload_libraries/g);
is(scalar(@errs), 2, 'both attempts in one session fail with 55000');
my @hints = ($stderr =~ /HINT:\s+[^\n]*shared_preload_libraries/g);
is(scalar(@hints), 2, 'both attempts carry the hint');
like($stdout, qr/first-done\nsecond-done\nt$/,
	'session survives both failures');

# LOAD and a direct call in a fresh session fail the same way.
($ret, $stdout, $stderr) = $plain->psql('postgres', q{LOAD 'kvext'}, @verbose);
check_not_preloaded($ret, $stderr, 'LOAD without preload');

is($plain->safe_psql('postgres',
		q{SELECT count(*) FROM pg_extension WHERE extname = 'kvext'}),
	'0', 'extension was not created');
is($plain->safe_psql('postgres',
		q{SELECT count(*) FROM pg_proc WHERE proname LIKE 'kv\_%'}),
	'0', 'no kv functions were left behind');

$plain->stop;

# ---------------------------------------------------------------------------
# 2. Extension created while preloaded, then the library is no longer
#    preloaded.
my $node = PostgreSQL::Test::Cluster->new('was_preloaded');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'kvext'\n");
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION kvext');
$node->safe_psql('postgres', q{SELECT kv_put('a', '1')});
is($node->safe_psql('postgres', q{SELECT kv_get('a')}),
	'1', 'preloaded: kv_put/kv_get work');

# Later settings in postgresql.conf override earlier ones.
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$node->restart;
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'restarted without kvext preloaded');

($ret, $stdout, $stderr) =
  $node->psql('postgres', q{SELECT kv_get('a')}, @verbose);
check_not_preloaded($ret, $stderr, 'kv_get without preload');

# Retry in the same session, and other functions (read and write).
($ret, $stdout, $stderr) = $node->psql(
	'postgres', q{
\set ON_ERROR_STOP 0
SELECT kv_get('a');
SELECT kv_get('a');
SELECT kv_put('b', '2');
SELECT kv_count();
SELECT * FROM kv_stats();
SELECT pg_backend_pid() > 0 AS alive;
},
	on_error_stop => 0,
	@verbose);
@errs = ($stderr =~ /ERROR:\s+55000: kvext must be loaded via shared_preload_libraries/g);
is(scalar(@errs), 5, 'every kv function call fails with 55000, also when repeated');
is($stdout, 't', 'session survives');

# The server is fine for everything else.
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server still serves');

# Preloading again brings the extension back.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'kvext'\n");
$node->restart;
$node->safe_psql('postgres', q{SELECT kv_put('c', '3')});
is($node->safe_psql('postgres', q{SELECT kv_get('c')}),
	'3', 'preloaded again: kv functions work');

$node->stop;

done_testing();
