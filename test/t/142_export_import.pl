# Logical export and import of a keyspace, as the README's "Backup and
# restore" section shows it: psql's \copy of kv_scan_bytea() to a file, and
# back through a table and kv_put(text, bytea).  Every byte must come back:
# NUL bytes, bytes that are not valid UTF-8, empty values, large values,
# keys with tabs, newlines, backslashes, quotes, COPY's own markers and
# non-ASCII letters; text and binary values alike; and the import survives
# a restart.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use KvextDurability;

my $node = kv_node('export');
$node->safe_psql('postgres', <<'SQL');
SELECT kv_create_keyspace('src');
-- binary values
SELECT kv_put('nul', '\x00'::bytea, 'src');
SELECT kv_put('nuls', '\x0000410000'::bytea, 'src');
SELECT kv_put('not utf8', '\xfffe80c0c1f5'::bytea, 'src');
SELECT kv_put('empty bytea', ''::bytea, 'src');
SELECT kv_put('all bytes', decode(string_agg(lpad(to_hex(i), 2, '0'), '' ORDER BY i), 'hex'), 'src')
  FROM generate_series(0, 255) i;
SELECT kv_put('large', decode(string_agg(md5(i::text), '' ORDER BY i), 'hex'), 'src')
  FROM generate_series(1, 60000) i;
-- text values
SELECT kv_put('empty text', '', 'src');
SELECT kv_put('text', 'plain text', 'src');
SELECT kv_put('copy markers', E'\\N\t\\.\n\r', 'src');
SELECT kv_put('json', '{"a": [1, "b\\u00e9c"]}'::jsonb, 'src');
-- odd keys
SELECT kv_put(E'tab\there', 'v1', 'src');
SELECT kv_put(E'new\nline', 'v2', 'src');
SELECT kv_put(E'back\\slash', 'v3', 'src');
SELECT kv_put('quote''s "double"', 'v4', 'src');
SELECT kv_put('\N', 'v5', 'src');
SELECT kv_put('\.', 'v6', 'src');
SELECT kv_put(' leading and trailing ', 'v7', 'src');
SELECT kv_put('grüße 日本語 🎉', 'v8', 'src');
SELECT kv_put(repeat('k', 4000), 'v9', 'src');
SQL

# every key, with the md5 and length of its value's bytes
my $digest_sql = q{
SELECT count(*) || ':' || md5(string_agg(md5(key) || md5(value) || length(value), ',' ORDER BY key))
  FROM kv_scan_bytea('', '%s')};
my $before = $node->safe_psql('postgres', sprintf($digest_sql, 'src'));
like($before, qr/^19:/, 'the source keyspace holds 19 keys');

my $dir  = PostgreSQL::Test::Utils::tempdir();
my $file = "$dir/src.copy";

# export, as the README does
$node->safe_psql('postgres',
	qq{\\copy (SELECT key, value FROM kv_scan_bytea('', 'src')) TO '$file'});
ok(-s $file > 60000 * 16, 'the export file holds the large value');

# import into a new keyspace, as the README does
$node->safe_psql('postgres', qq{
SELECT kv_create_keyspace('dst');
CREATE TEMP TABLE kv_import (key text, value bytea);
\\copy kv_import FROM '$file'
SELECT count(*) FROM kv_import, kv_put(key, value, keyspace => 'dst');
});
is($node->safe_psql('postgres', sprintf($digest_sql, 'dst')),
	$before, 'the imported keyspace has every key and every byte');

# text values still read as text, binary ones as bytea
is( $node->safe_psql('postgres', <<'SQL'),
SELECT kv_get('text', 'dst') || '|' || kv_get('empty text', 'dst') || '|'
       || (kv_get('copy markers', 'dst') = E'\\N\t\\.\n\r')::text || '|'
       || (kv_get('json', 'dst')::jsonb = '{"a": [1, "b\\u00e9c"]}'::jsonb)::text
SQL
	'plain text||true|true',
	'text values read back with kv_get');
is($node->safe_psql('postgres',
		q{SELECT kv_get_bytea('nuls', 'dst') || kv_get_bytea('not utf8', 'dst')}),
	'\x0000410000fffe80c0c1f5', 'binary values read back with kv_get_bytea');
my $r = kv_call($node, q{SELECT kv_get('not utf8', 'dst')});
is($r->{sqlstate}, '22021', 'a value that is not text is refused by kv_get, as in the source');

# an import over existing keys replaces their values
$node->safe_psql('postgres', q{SELECT kv_put('text', 'changed', 'dst'), kv_put('extra', 'x', 'dst')});
$node->safe_psql('postgres', qq{
CREATE TEMP TABLE kv_import (key text, value bytea);
\\copy kv_import FROM '$file'
SELECT count(*) FROM kv_import, kv_put(key, value, keyspace => 'dst');
SELECT kv_delete('extra', 'dst');
});
is($node->safe_psql('postgres', sprintf($digest_sql, 'dst')),
	$before, 'importing again restores the exported values');

# durable like any write
$node->restart;
kv_wait_ready($node);
is($node->safe_psql('postgres', sprintf($digest_sql, 'dst')),
	$before, 'the imported keyspace survives a restart');

$node->stop;
done_testing();
