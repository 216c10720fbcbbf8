# Copyright (c) 2026, kvext authors
#
# Text is checked on the way out.  The store is shared by every database of
# the server; a key, value or keyspace name written as text from a LATIN1
# database holds LATIN1 bytes (here 0xE9, 'é'), which are not valid UTF-8.
# Read from a UTF8 database, every function and foreign table that returns
# them as text fails with 22021 naming the key and keyspace (kvext does not
# convert between encodings yet), the bytes stay readable as bytea, nothing
# in the store changes, status views show the names escaped, ASCII and
# valid UTF-8 keep working, and a table filled from kv_scan can always be
# dumped and restored.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use KvextDurability;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# a UTF8 cluster, whatever the test environment's locale
my $node = PostgreSQL::Test::Cluster->new('enc');
$node->init(extra => [ '--encoding=UTF8', '--no-locale' ]);
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'kvext'
kvext.memory_limit = '64MB'
log_statement = none
});
$node->start;
is($node->safe_psql('postgres',
		'SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()'),
	'UTF8', 'the reading database is UTF8');
$node->safe_psql('postgres', q{
CREATE EXTENSION kvext;
CREATE DATABASE latin1db ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;});
$node->safe_psql('latin1db', 'CREATE EXTENSION kvext');

# run sql in db; ok, stdout, stderr and the first SQLSTATE (as kv_call)
sub run
{
	my ($db, $sql) = @_;
	my ($stdout, $stderr);
	my $ret = $node->psql($db, $sql,
		stdout        => \$stdout,
		stderr        => \$stderr,
		on_error_stop => 1,
		extra_params  => [ '-v', 'VERBOSITY=verbose' ]);
	my $sqlstate = ($stderr // '') =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '';
	return { ok => $ret == 0, stdout => $stdout // '', stderr => $stderr // '',
		sqlstate => $sqlstate };
}

# sql in the UTF8 database fails with 22021 and a message matching $msg
sub fails_22021
{
	my ($sql, $msg, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $r = run('postgres', $sql);
	is($r->{sqlstate}, '22021', "$what: 22021");
	like($r->{stderr}, $msg, "$what: the message names the key and keyspace");
	return $r;
}

# Written from the LATIN1 database; chr(233) there is the one byte 0xE9.
# encv: a value that is LATIN1 text, next to ASCII ones; enck: a key that
# is; encf: one key for the foreign tables, its value JSON and LATIN1.
$node->safe_psql('latin1db', q{
SELECT kv_create_keyspace('encv');
SELECT kv_put('ascii', 'plain', 'encv');
SELECT kv_put('bad', 'caf' || chr(233), 'encv');
SELECT kv_create_keyspace('enck');
SELECT kv_put('k' || chr(233), 'x', 'enck');
SELECT kv_create_keyspace('encf');
SELECT kv_put('j', '"caf' || chr(233) || '"', 'encf');});
# ASCII and valid UTF-8, written from the UTF8 database
$node->safe_psql('postgres', q{
SELECT kv_create_keyspace('encok');
SELECT kv_put('a', 'b', 'encok');
SELECT kv_put('k' || chr(233), 'h' || chr(233) || 'llo', 'encok');});

# the store as the LATIN1 database reads it (where every byte is text)
sub digests
{
	return $node->safe_psql('latin1db', q{
SELECT string_agg(kv_digest(ks), ',' ORDER BY ks)
  FROM unnest(ARRAY['encv', 'enck', 'encf', 'encok']) ks});
}
my $before = digests();

# ---------------------------------------------------------------------------
# values
fails_22021(q{SELECT kv_get('bad', 'encv')},
	qr/value of key "bad" in keyspace "encv" is not valid text in encoding "UTF8"/, 'kv_get');
my $r = run('postgres', q{SELECT kv_get('bad', 'encv')});
like($r->{stderr}, qr/DETAIL:  The value was written as text from a database with another encoding/,
	'kv_get: the detail says the value was written from another encoding');
like($r->{stderr}, qr/HINT:  Read it as bytes with kv_get_bytea\(\) or kv_scan_bytea\(\)/,
	'kv_get: the hint names kv_get_bytea and kv_scan_bytea');
is($node->safe_psql('postgres', q{SELECT kv_get_bytea('bad', 'encv')}), '\x636166e9',
	'kv_get_bytea returns the bytes');
is($node->safe_psql('postgres', q{SELECT kv_get('ascii', 'encv')}), 'plain',
	'an ASCII value of the same keyspace reads');
fails_22021(q{SELECT kv_mget(ARRAY['ascii', 'bad'], 'encv')},
	qr/value of key "bad" in keyspace "encv"/, 'kv_mget');
fails_22021(q{SELECT * FROM kv_scan('', 'encv')},
	qr/value of key "bad" in keyspace "encv"/, 'kv_scan');
is($node->safe_psql('postgres',
		q{SELECT string_agg(key || '=' || value::text, ',' ORDER BY key) FROM kv_scan_bytea('', 'encv')}),
	'ascii=\x706c61696e,bad=\x636166e9', 'kv_scan_bytea returns the bytes');

# keys: text in every function, kv_scan_bytea's too
fails_22021(q{SELECT * FROM kv_scan('', 'enck')},
	qr/key "k\\xe9" in keyspace "enck" is not valid text in encoding "UTF8"/, 'kv_scan of a LATIN1 key');
fails_22021(q{SELECT * FROM kv_scan_bytea('', 'enck')},
	qr/key "k\\xe9" in keyspace "enck"/, 'kv_scan_bytea of a LATIN1 key');

# ---------------------------------------------------------------------------
# foreign tables: text, jsonb and integer value columns, full and point
# reads, a text key column, and a remote read through the LATIN1 database
$node->safe_psql('postgres', sprintf(q{
CREATE SERVER kvlocal FOREIGN DATA WRAPPER kvext_fdw;
CREATE FOREIGN TABLE ft_text (key text, value text) SERVER kvlocal OPTIONS (keyspace 'encf');
CREATE FOREIGN TABLE ft_jsonb (key text, value jsonb) SERVER kvlocal OPTIONS (keyspace 'encf');
CREATE FOREIGN TABLE ft_int (key text, value integer) SERVER kvlocal OPTIONS (keyspace 'encf');
CREATE FOREIGN TABLE ft_bytea (key text, value bytea) SERVER kvlocal OPTIONS (keyspace 'encf');
CREATE FOREIGN TABLE ft_key (key text, value text) SERVER kvlocal OPTIONS (keyspace 'enck');
CREATE FOREIGN TABLE ft_ok (key text, value text) SERVER kvlocal OPTIONS (keyspace 'encok');
CREATE SERVER kvlatin1 FOREIGN DATA WRAPPER kvext_fdw
  OPTIONS (host '%s', port '%d', dbname 'latin1db');
CREATE USER MAPPING FOR CURRENT_USER SERVER kvlatin1;
CREATE FOREIGN TABLE ft_remote (key text, value text) SERVER kvlatin1 OPTIONS (keyspace 'encf');},
	$node->host, $node->port));

foreach my $t (qw(ft_text ft_jsonb ft_int))
{
	fails_22021("SELECT * FROM $t", qr/value of key "j" in keyspace "encf"/, "$t: scan");
	fails_22021("SELECT * FROM $t WHERE key = 'j'", qr/value of key "j" in keyspace "encf"/,
		"$t: point read");
}
is($node->safe_psql('postgres', q{SELECT value FROM ft_bytea}), '\x22636166e922',
	'a bytea column reads the bytes');
fails_22021(q{SELECT * FROM ft_key}, qr/key "k\\xe9" in keyspace "enck"/, 'a text key column');
fails_22021(q{SELECT * FROM ft_remote}, qr/value of key "j" in keyspace "encf"/,
	'a remote read (rows checked where they are decoded)');
my $copyfile = $node->basedir . '/ft_text.copy';
fails_22021("COPY (SELECT * FROM ft_text) TO '$copyfile'",
	qr/value of key "j" in keyspace "encf"/, 'COPY of a foreign table to a file');

# ---------------------------------------------------------------------------
# keyspace names: kv_keyspaces fails, kv_stats shows the name escaped
$node->safe_psql('latin1db', q{
SELECT kv_create_keyspace('ks' || chr(233));
SELECT kv_put('a', 'b', 'ks' || chr(233));});
fails_22021(q{SELECT * FROM kv_keyspaces()},
	qr/keyspace name "ks\\xe9" is not valid text in encoding "UTF8"/, 'kv_keyspaces');
is($node->safe_psql('postgres', q{SELECT keyspace, entries FROM kv_stats() WHERE keyspace LIKE 'ks%'}),
	'ks\xe9|1', 'kv_stats shows the name escaped');

# kv_locks shows a LATIN1 keyspace and key escaped: a writer of the
# LATIN1 database waits for another one
my $holder = $node->background_psql('latin1db');
$holder->query_safe(q{BEGIN; SELECT kv_put('w' || chr(233), '1', 'ks' || chr(233))});
my $waiter = $node->background_psql('latin1db');
$waiter->query_until(qr/started/, q{
\echo started
SELECT kv_put('w' || chr(233), '2', 'ks' || chr(233));
});
$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM kv_locks})
  or die 'the writer does not wait';
is($node->safe_psql('postgres', q{SELECT keyspace, key FROM kv_locks}), 'ks\xe9|w\xe9',
	'kv_locks shows the keyspace and key escaped');
$holder->query_safe('ROLLBACK');
$holder->quit;
$waiter->quit;

$node->safe_psql('latin1db', q{SELECT kv_drop_keyspace('ks' || chr(233))});
like($node->safe_psql('postgres', q{SELECT string_agg(keyspace, ',' ORDER BY keyspace) FROM kv_keyspaces()}),
	qr/^default,encf,enck,encok,encv$/, 'kv_keyspaces works again once the name is gone');

is(digests(), $before, 'the store is unchanged by every failed read');

# ---------------------------------------------------------------------------
# ASCII and valid UTF-8 keep working, from every path
is($node->safe_psql('postgres', q{SELECT kv_get('k' || chr(233), 'encok') = 'h' || chr(233) || 'llo'}),
	't', 'kv_get of a UTF-8 key and value');
is($node->safe_psql('postgres',
		q{SELECT kv_mget(ARRAY['a', 'k' || chr(233)], 'encok') = ARRAY['b', 'h' || chr(233) || 'llo']}),
	't', 'kv_mget');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM kv_scan('', 'encok') WHERE key IN ('a', 'k' || chr(233)) AND value IN ('b', 'h' || chr(233) || 'llo')}),
	'2', 'kv_scan');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM ft_ok WHERE value IN ('b', 'h' || chr(233) || 'llo')}),
	'2', 'a foreign table scan');
is($node->safe_psql('postgres',
		q{SELECT value = 'h' || chr(233) || 'llo' FROM ft_ok WHERE key = 'k' || chr(233)}),
	't', 'a foreign table point read');

# ---------------------------------------------------------------------------
# a table filled from kv_scan can be dumped and restored: the LATIN1 row
# never gets in
$node->safe_psql('postgres', 'CREATE TABLE dumped (key text, value text)');
$r = run('postgres', q{INSERT INTO dumped SELECT * FROM kv_scan('', 'encv')});
is($r->{sqlstate}, '22021', 'filling a table from kv_scan of the LATIN1 value fails');
$node->safe_psql('postgres', q{INSERT INTO dumped SELECT * FROM kv_scan('', 'encok')});
my $dump = $node->basedir . '/dumped.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-t', 'dumped', '-f', $dump, 'postgres' ],
	'pg_dump of the table');
$node->safe_psql('postgres', 'CREATE DATABASE restored TEMPLATE template0');
$node->command_ok([ 'pg_restore', '-d', 'restored', $dump ], 'pg_restore of the dump succeeds');
is($node->safe_psql('restored', 'SELECT count(*) FROM dumped'), '2',
	'the restored table has the valid rows');

$node->stop;
done_testing();
