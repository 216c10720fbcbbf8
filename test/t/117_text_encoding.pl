# Copyright (c) 2026, kvext authors
#
# Text is stored as UTF-8 and converted on the way in and out.  The store
# is shared by every database of the server: a key, value or keyspace name
# written as text from a LATIN1 database is the one a UTF8 database reads,
# finds, scans, prefix-scans and deletes, and the other way round, through
# the kv functions and kvext_fdw (local and remote foreign tables), also
# after a crash-restart.  A character that LATIN1 lacks ('€', U+20AC) read
# from the LATIN1 database fails with 22P05 naming the key and keyspace,
# and nothing in the store changes.  Bytes that are not UTF-8 (a bytea
# value, raw bytes from a SQL_ASCII database) fail with 22021 when read as
# text from a database that converts or checks; a SQL_ASCII database reads
# and writes bytes as they are.  A table filled from kv_scan can always be
# dumped and restored.
#
# Perl sees every result as UTF-8 bytes: each session sets client_encoding
# UTF8 (not PGCLIENTENCODING, which the server's own libpq connections,
# kvext_fdw's, would inherit).  Non-ASCII text is written in SQL with chr(),
# which in the LATIN1 database gives its LATIN1 byte.
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use KvextDurability;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('enc');
$node->init(extra => [ '--encoding=UTF8', '--no-locale' ]);
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'kvext'
kvext.memory_limit = '64MB'
log_statement = none
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION kvext;
CREATE DATABASE latin1db ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE asciidb ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;});
$node->safe_psql($_, 'CREATE EXTENSION kvext') for qw(latin1db asciidb);

my %encoding = (postgres => 'UTF8', latin1db => 'LATIN1', asciidb => 'SQL_ASCII');
foreach my $db (sort keys %encoding)
{
	is($node->safe_psql($db, 'SELECT getdatabaseencoding()'), $encoding{$db},
		"$db is $encoding{$db}");
}

# run sql in db with client_encoding UTF8: ok, stdout, stderr, SQLSTATE
sub run
{
	my ($db, $sql) = @_;
	my ($stdout, $stderr);
	my $ret = $node->psql($db, "SET client_encoding TO 'UTF8';\n$sql",
		stdout        => \$stdout,
		stderr        => \$stderr,
		on_error_stop => 1,
		extra_params  => [ '-v', 'VERBOSITY=verbose' ]);
	my $sqlstate = ($stderr // '') =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : '';
	return { ok => $ret == 0, stdout => $stdout // '', stderr => $stderr // '',
		sqlstate => $sqlstate };
}

# stdout of sql in db, which must succeed
sub sql
{
	my ($db, $sql) = @_;
	my $r = run($db, $sql);
	die "query failed in $db: $sql\n$r->{stderr}" unless $r->{ok};
	return $r->{stdout};
}

# sql in db fails with sqlstate and a message matching $msg
sub fails
{
	my ($db, $sql, $sqlstate, $msg, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $r = run($db, $sql);
	is($r->{sqlstate}, $sqlstate, "$what: $sqlstate");
	like($r->{stderr}, $msg, "$what: the message names the key and keyspace");
	return $r;
}

# 'é' and '€' as UTF-8, the bytes Perl reads back
my $e_acute = "\xc3\xa9";
my $euro    = "\xe2\x82\xac";

# ---------------------------------------------------------------------------
# keys and values written from the LATIN1 database, read from the UTF8 one
sql('latin1db', q{
SELECT kv_create_keyspace('enc');
SELECT kv_put('k' || chr(233), 'caf' || chr(233), 'enc');
SELECT kv_put(chr(233) || 'a', '1', 'enc');
SELECT kv_put(chr(233) || 'b', '2', 'enc');
SELECT kv_put('plain', 'v', 'enc');});
is(sql('postgres', q{SELECT kv_get('k' || chr(233), 'enc') = 'caf' || chr(233)}), 't',
	'a LATIN1 key and value read from the UTF8 database');
is(sql('postgres', q{SELECT kv_get_bytea('k' || chr(233), 'enc')}), '\x636166c3a9',
	'the value is stored as UTF-8');
is(sql('postgres', q{SELECT kv_get('k' || chr(233), 'enc')}), "caf$e_acute",
	'kv_get returns it');
is(sql('postgres', q{SELECT kv_mget(ARRAY['plain', 'k' || chr(233), 'none'], 'enc')}),
	"{v,caf$e_acute,NULL}", 'kv_mget');
is(sql('postgres', q{SELECT string_agg(key || '=' || value, ',' ORDER BY key COLLATE "C") FROM kv_scan('', 'enc')}),
	"k$e_acute=caf$e_acute,plain=v,${e_acute}a=1,${e_acute}b=2", 'kv_scan');
is(sql('postgres', q{SELECT string_agg(key, ',' ORDER BY key) FROM kv_scan(chr(233), 'enc')}),
	"${e_acute}a,${e_acute}b", 'a prefix scan with a non-ASCII prefix');
is(sql('postgres', q{SELECT kv_exists(chr(233) || 'a', 'enc')}), 't', 'kv_exists');

# written from the UTF8 database, read from the LATIN1 one
sql('postgres', q{
SELECT kv_put('u' || chr(233), 'h' || chr(233) || 'llo', 'enc');
SELECT kv_put(chr(233) || 'c', '3', 'enc');});
is(sql('latin1db', q{SELECT kv_get('u' || chr(233), 'enc') = 'h' || chr(233) || 'llo'}), 't',
	'a UTF8 key and value read from the LATIN1 database');
is(sql('latin1db', q{SELECT kv_get('u' || chr(233), 'enc')}), "h${e_acute}llo",
	'kv_get returns it (shown to a UTF8 client)');
is(sql('latin1db', q{SELECT kv_mget(ARRAY['u' || chr(233), 'k' || chr(233)], 'enc') = ARRAY['h' || chr(233) || 'llo', 'caf' || chr(233)]}),
	't', 'kv_mget from the LATIN1 database');
is(sql('latin1db', q{SELECT string_agg(key || '=' || value, ',' ORDER BY convert_to(key, 'UTF8')) FROM kv_scan('', 'enc')}),
	"k$e_acute=caf$e_acute,plain=v,u$e_acute=h${e_acute}llo,${e_acute}a=1,${e_acute}b=2,${e_acute}c=3",
	'kv_scan from the LATIN1 database');
is(sql('latin1db', q{SELECT string_agg(key, ',' ORDER BY key) FROM kv_scan(chr(233), 'enc')}),
	"${e_acute}a,${e_acute}b,${e_acute}c", 'a prefix scan from the LATIN1 database');
is(sql('latin1db', q{SELECT kv_get_bytea('u' || chr(233), 'enc')}), '\x68c3a96c6c6f',
	'kv_get_bytea reads the stored UTF-8, unconverted');

# writes of each database on keys of the other
is(sql('latin1db', q{SELECT kv_cas('u' || chr(233), 'h' || chr(233) || 'llo', 'n' || chr(233), 'enc')}),
	't', 'kv_cas from the LATIN1 database compares with a UTF8 value');
is(sql('postgres', q{SELECT kv_get('u' || chr(233), 'enc') = 'n' || chr(233)}), 't',
	'and the UTF8 database reads what it wrote');
is(sql('latin1db', q{SELECT kv_incr('c' || chr(233), 1, 'enc')}), '1', 'kv_incr from LATIN1');
is(sql('postgres', q{SELECT kv_incr('c' || chr(233), 1, 'enc')}), '2', 'kv_incr of the same key from UTF8');
is(sql('postgres', q{SELECT kv_delete(chr(233) || 'a', 'enc')}), 't',
	'the UTF8 database deletes a key written from LATIN1');
is(sql('latin1db', q{SELECT kv_delete(chr(233) || 'c', 'enc')}), 't',
	'the LATIN1 database deletes a key written from UTF8');
is(sql('latin1db', q{SELECT kv_exists(chr(233) || 'a', 'enc')::text || kv_exists(chr(233) || 'c', 'enc')::text}),
	'falsefalse', 'both are gone for both');
sql('postgres', q{SELECT kv_mput(ARRAY['m' || chr(233)], ARRAY['x' || chr(233)], 'enc')});
is(sql('latin1db', q{SELECT kv_get('m' || chr(233), 'enc') = 'x' || chr(233)}), 't', 'kv_mput');
is(sql('latin1db', q{SELECT kv_digest('enc')}), sql('postgres', q{SELECT kv_digest('enc')}),
	'kv_digest is the same from both databases');

# ---------------------------------------------------------------------------
# keyspace names
sql('latin1db', q{
SELECT kv_create_keyspace('ks' || chr(233));
SELECT kv_put('a', 'b', 'ks' || chr(233));});
is(sql('postgres', q{SELECT kv_get('a', 'ks' || chr(233))}), 'b',
	'a keyspace created from LATIN1 is found from UTF8');
is(sql('postgres', q{SELECT keyspace FROM kv_keyspaces() WHERE keyspace LIKE 'ks%'}), "ks$e_acute",
	'kv_keyspaces lists it in UTF8');
is(sql('latin1db', q{SELECT keyspace FROM kv_keyspaces() WHERE keyspace LIKE 'ks%'}), "ks$e_acute",
	'kv_keyspaces lists it in LATIN1');
is(sql('latin1db', q{SELECT keyspace || ':' || entries FROM kv_stats() WHERE keyspace LIKE 'ks%'}), "ks$e_acute:1",
	'kv_stats shows it in LATIN1');
is(sql('postgres', q{SELECT keyspace || ':' || entries FROM kv_stats() WHERE keyspace LIKE 'ks%'}), "ks$e_acute:1",
	'kv_stats shows it in UTF8');
fails('latin1db', q{SELECT kv_create_keyspace('ks' || chr(233))}, '42710',
	qr/keyspace "ks$e_acute" already exists/, 'creating it again from LATIN1');

# kv_locks: a writer of the LATIN1 database waits for another one; both
# databases show the key and keyspace
my $holder = $node->background_psql('latin1db');
$holder->query_safe(q{BEGIN; SELECT kv_put('w' || chr(233), '1', 'ks' || chr(233))});
my $waiter = $node->background_psql('latin1db');
$waiter->query_until(qr/started/, q{
\echo started
SELECT kv_put('w' || chr(233), '2', 'ks' || chr(233));
});
$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM kv_locks})
  or die 'the writer does not wait';
is(sql('postgres', q{SELECT keyspace || '|' || key FROM kv_locks}), "ks$e_acute|w$e_acute",
	'kv_locks in UTF8');
is(sql('latin1db', q{SELECT keyspace || '|' || key FROM kv_locks}), "ks$e_acute|w$e_acute",
	'kv_locks in LATIN1');
$holder->query_safe('ROLLBACK');
$holder->quit;
$waiter->quit;

is(sql('postgres', q{SELECT kv_drop_keyspace('ks' || chr(233))}), '',
	'the UTF8 database drops it');
is(sql('latin1db', q{SELECT count(*) FROM kv_keyspaces() WHERE keyspace LIKE 'ks%'}), '0',
	'and it is gone for LATIN1');

# ---------------------------------------------------------------------------
# a character LATIN1 lacks: 22P05 naming the key and keyspace, nothing changes
sql('postgres', q{
SELECT kv_create_keyspace('eur');
SELECT kv_put('price', '5' || chr(8364), 'eur');
SELECT kv_put('k' || chr(8364), 'v', 'eur');
SELECT kv_create_keyspace('ks' || chr(8364));
SELECT kv_create_keyspace('fine');
SELECT kv_put('ok', 'fine', 'fine');});
my $before = sql('postgres', q{SELECT kv_digest('eur') || kv_digest('enc')});

my $r = fails('latin1db', q{SELECT kv_get('price', 'eur')}, '22P05',
	qr/value of key "price" in keyspace "eur" has a character with no equivalent in encoding "LATIN1"/,
	'kv_get of a euro sign from LATIN1');
like($r->{stderr}, qr/DETAIL:  The value holds U\+20AC/, 'the detail names the character');
fails('latin1db', q{SELECT kv_mget(ARRAY['price'], 'eur')}, '22P05',
	qr/value of key "price" in keyspace "eur"/, 'kv_mget');
fails('latin1db', q{SELECT * FROM kv_scan('k', 'eur')}, '22P05',
	qr/key "k\\xe2\\x82\\xac" in keyspace "eur" has a character with no equivalent in encoding "LATIN1"/,
	'kv_scan of a key with a euro sign');
fails('latin1db', q{SELECT * FROM kv_scan_bytea('', 'eur')}, '22P05',
	qr/key "k\\xe2\\x82\\xac" in keyspace "eur"/, 'kv_scan_bytea (keys are text)');
fails('latin1db', q{SELECT * FROM kv_keyspaces()}, '22P05',
	qr/keyspace name "ks\\xe2\\x82\\xac" has a character with no equivalent in encoding "LATIN1"/,
	'kv_keyspaces');
is(sql('latin1db', q{SELECT keyspace FROM kv_stats() WHERE keyspace LIKE 'ks%'}), 'ks\xe2\x82\xac',
	'kv_stats shows the name escaped');
is(sql('latin1db', q{SELECT kv_get_bytea('price', 'eur')}), '\x35e282ac',
	'kv_get_bytea reads the bytes');
is(sql('latin1db', q{SELECT kv_get('ok', 'fine')}), 'fine', 'other keys read');
is(sql('postgres', q{SELECT kv_digest('eur') || kv_digest('enc')}), $before,
	'the store is unchanged by the failed reads');
is(sql('latin1db', q{SELECT kv_digest('eur') || kv_digest('enc')}), $before,
	'kv_digest from LATIN1 digests the stored bytes, euro signs included');
is(sql('postgres', q{SELECT kv_get('price', 'eur')}), "5$euro", 'the UTF8 database reads it');
sql('postgres', q{SELECT kv_drop_keyspace('ks' || chr(8364))});

# bytes that are not UTF-8 are still 22021 (here a value written as bytea)
sql('postgres', q{SELECT kv_put('raw', '\xe9'::bytea, 'fine')});
fails('latin1db', q{SELECT kv_get('raw', 'fine')}, '22021',
	qr/value of key "raw" in keyspace "fine" is not valid text in encoding "LATIN1"/,
	'a bytea value that is not UTF-8 read as text from LATIN1');
fails('postgres', q{SELECT kv_get('raw', 'fine')}, '22021',
	qr/value of key "raw" in keyspace "fine" is not valid text in encoding "UTF8"/,
	'and from UTF8');

# ---------------------------------------------------------------------------
# foreign tables in both databases over one keyspace
my $fdw_setup = q{
CREATE SERVER kvlocal FOREIGN DATA WRAPPER kvext_fdw;
CREATE FOREIGN TABLE ft (key text, value text) SERVER kvlocal
  OPTIONS (keyspace 'encf', create_keyspace 'true');
CREATE FOREIGN TABLE ft_jsonb (key text, value jsonb) SERVER kvlocal OPTIONS (keyspace 'encf');
CREATE FOREIGN TABLE ft_bytes (key bytea, value bytea) SERVER kvlocal OPTIONS (keyspace 'encf');
CREATE FOREIGN TABLE ft_eur (key text, value text) SERVER kvlocal OPTIONS (keyspace 'eur');};
sql($_, $fdw_setup) for qw(postgres latin1db);

sql('latin1db', q{INSERT INTO ft VALUES ('f' || chr(233), '"caf' || chr(233) || '"'), ('plain', '"x"')});
sql('postgres', q{INSERT INTO ft VALUES ('g' || chr(233), 'y' || chr(233))});
is(sql('postgres', q{SELECT value FROM ft WHERE key = 'f' || chr(233)}), "\"caf$e_acute\"",
	'UTF8: a point read of a row inserted from LATIN1');
is(sql('postgres', q{SELECT value #>> '{}' = 'caf' || chr(233) FROM ft_jsonb WHERE key = 'f' || chr(233)}), 't',
	'UTF8: through a jsonb column');
is(sql('postgres', q{SELECT string_agg(key, ',' ORDER BY key) FROM ft}), "f$e_acute,g$e_acute,plain",
	'UTF8: a full scan');
is(sql('postgres', q{SELECT string_agg(key, ',' ORDER BY key) FROM ft WHERE key LIKE 'f' || chr(233) || '%'}),
	"f$e_acute", 'UTF8: a prefix scan');
like(sql('postgres', q{EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ft WHERE key LIKE 'f' || chr(233) || '%'}),
	qr/Lookup: prefix/, 'UTF8: the prefix is pushed down');
is(sql('latin1db', q{SELECT value = 'y' || chr(233) FROM ft WHERE key = 'g' || chr(233)}), 't',
	'LATIN1: a point read of a row inserted from UTF8');
is(sql('latin1db', q{SELECT string_agg(key, ',' ORDER BY key) FROM ft WHERE key LIKE 'g%'}), "g$e_acute",
	'LATIN1: a prefix scan');
is(sql('latin1db', q{SELECT count(*) FROM ft WHERE key = ANY (ARRAY['f' || chr(233), 'g' || chr(233)])}), '2',
	'LATIN1: a multi-key read');
is(sql('latin1db', q{SELECT key FROM ft_bytes WHERE key = convert_to('g' || chr(233), 'UTF8')}), '\x67c3a9',
	'LATIN1: a bytea key column reads the stored UTF-8');
sql('latin1db', q{UPDATE ft SET value = 'z' || chr(233) WHERE key = 'g' || chr(233)});
is(sql('postgres', q{SELECT kv_get('g' || chr(233), 'encf') = 'z' || chr(233)}), 't',
	'an UPDATE from LATIN1 is read by kv_get from UTF8');
is(sql('postgres', q{WITH d AS (DELETE FROM ft WHERE key = 'f' || chr(233) RETURNING key) SELECT count(*) FROM d}),
	'1', 'UTF8 deletes a row inserted from LATIN1');
fails('latin1db', q{SELECT * FROM ft_eur WHERE key = 'price'}, '22P05',
	qr/value of key "price" in keyspace "eur" has a character with no equivalent/,
	'LATIN1: a foreign table point read of a euro sign');
fails('latin1db', q{SELECT * FROM ft_eur}, '22P05',
	qr/key "k\\xe2\\x82\\xac" in keyspace "eur"|value of key "price" in keyspace "eur"/,
	'LATIN1: a foreign table scan of the euro keyspace');

# remote tables: each database reads the other through libpq; keys and
# values travel as UTF-8 bytes, keyspace names as text in client_encoding
foreach my $pair ([ 'postgres', 'latin1db' ], [ 'latin1db', 'postgres' ])
{
	my ($here, $there) = @$pair;
	sql($here, sprintf(q{
CREATE SERVER kvremote FOREIGN DATA WRAPPER kvext_fdw
  OPTIONS (host '%s', port '%d', dbname '%s');
CREATE USER MAPPING FOR CURRENT_USER SERVER kvremote;
CREATE FOREIGN TABLE ft_remote (key text, value text) SERVER kvremote OPTIONS (keyspace 'encf');
DO $$ BEGIN
  EXECUTE format('CREATE FOREIGN TABLE ft_remote_ks (key text, value text) SERVER kvremote OPTIONS (keyspace %%L, create_keyspace ''true'')',
                 'r' || chr(233));
END $$;},
		$node->host, $node->port, $there));
}
is(sql('postgres', q{SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM ft_remote}),
	"g$e_acute=z$e_acute,plain=\"x\"", 'UTF8 reads the keyspace through the LATIN1 database');
is(sql('latin1db', q{SELECT value FROM ft_remote WHERE key = 'g' || chr(233)}), "z$e_acute",
	'LATIN1 point-reads it through the UTF8 database');
sql('postgres', q{INSERT INTO ft_remote_ks VALUES ('h' || chr(233), 'i' || chr(233))});
is(sql('latin1db', q{SELECT kv_get('h' || chr(233), 'r' || chr(233)) = 'i' || chr(233)}), 't',
	'a remote INSERT into a non-ASCII keyspace name, through LATIN1');
sql('latin1db', q{INSERT INTO ft_remote_ks VALUES ('j' || chr(233), 'k')});
is(sql('postgres', q{SELECT kv_get('j' || chr(233), 'r' || chr(233))}), 'k',
	'and through UTF8');
is(sql('postgres', q{SELECT count(*) FROM ft_remote_ks WHERE key LIKE 'h%'}), '1',
	'a remote prefix scan');
is(sql('latin1db', q{WITH d AS (DELETE FROM ft_remote_ks WHERE key = 'h' || chr(233) RETURNING 1) SELECT count(*) FROM d}),
	'1', 'a remote DELETE from LATIN1');

# ---------------------------------------------------------------------------
# SQL_ASCII: bytes go in and out as they are.  UTF-8 bytes written from it
# read as text everywhere; other bytes only from SQL_ASCII databases.
sql('asciidb', q{
SELECT kv_create_keyspace('asc');
SELECT kv_put('s' || convert_from('\xc3a9', 'SQL_ASCII'), 'utf8 bytes', 'asc');
SELECT kv_put('raw', chr(233), 'asc');});
is(sql('postgres', q{SELECT kv_get('s' || chr(233), 'asc')}), 'utf8 bytes',
	'UTF-8 bytes from SQL_ASCII are the UTF8 key');
is(sql('latin1db', q{SELECT kv_get('s' || chr(233), 'asc')}), 'utf8 bytes',
	'and the LATIN1 key');
is(sql('asciidb', q{SELECT kv_get_bytea('raw', 'asc')}), '\xe9', 'SQL_ASCII stores other bytes raw');
is(sql('asciidb', q{SELECT kv_get('raw', 'asc') = chr(233)}), 't', 'and reads them back raw');
fails('postgres', q{SELECT kv_get('raw', 'asc')}, '22021',
	qr/value of key "raw" in keyspace "asc" is not valid text in encoding "UTF8"/,
	'a UTF8 database refuses them');
fails('latin1db', q{SELECT kv_get('raw', 'asc')}, '22021',
	qr/value of key "raw" in keyspace "asc" is not valid text in encoding "LATIN1"/,
	'so does a LATIN1 one');
is(sql('asciidb', q{SELECT kv_get('k' || convert_from('\xc3a9', 'SQL_ASCII'), 'enc')}), "caf$e_acute",
	'SQL_ASCII reads text written from LATIN1 as its UTF-8 bytes');
is(sql('asciidb', q{SELECT kv_get('price', 'eur')}), "5$euro", 'and a euro sign');

# ---------------------------------------------------------------------------
# a crash-restart: recovery replays the stored UTF-8, both databases agree
my $digest_enc = sql('postgres', q{SELECT kv_digest('enc') || kv_digest('encf')});
my $victim = $node->background_psql('latin1db', on_error_stop => 0);
my $victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
$victim->query_safe(q{BEGIN; SELECT kv_put('uncommitted' || chr(233), 'x', 'enc')});
my $log_offset = -s $node->logfile;
ok(kill('KILL', $victim_pid), 'killed a LATIN1 backend');
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
ok(kv_wait_ready($node), 'the store recovered after the crash-restart');
eval { $victim->quit };
is(sql('postgres', q{SELECT kv_digest('enc') || kv_digest('encf')}), $digest_enc,
	'the keyspaces are as before the crash');
is(sql('latin1db', q{SELECT kv_get('k' || chr(233), 'enc') = 'caf' || chr(233)}), 't',
	'LATIN1 reads its key after recovery');
is(sql('postgres', q{SELECT kv_get('k' || chr(233), 'enc')}), "caf$e_acute",
	'UTF8 reads it after recovery');
is(sql('latin1db', q{SELECT kv_exists('uncommitted' || chr(233), 'enc')}), 'f',
	'the uncommitted write is gone');
is(sql('latin1db', q{SELECT kv_get('j' || chr(233), 'r' || chr(233))}), 'k',
	'the non-ASCII keyspace name survives recovery');

# ---------------------------------------------------------------------------
# a table filled from kv_scan can be dumped and restored
sql('postgres', 'CREATE TABLE dumped (key text, value text)');
sql('postgres', q{INSERT INTO dumped SELECT * FROM kv_scan('', 'enc')});
$r = run('postgres', q{INSERT INTO dumped SELECT * FROM kv_scan('', 'asc')});
is($r->{sqlstate}, '22021', 'raw SQL_ASCII bytes never get into a UTF8 table');
sql('latin1db', 'CREATE TABLE dumped (key text, value text)');
sql('latin1db', q{INSERT INTO dumped SELECT * FROM kv_scan('', 'enc')});
foreach my $db (qw(postgres latin1db))
{
	my $dump = $node->basedir . "/$db.dump";
	$node->command_ok([ 'pg_dump', '-Fc', '-t', 'dumped', '-f', $dump, $db ], "$db: pg_dump");
	$node->safe_psql('postgres',
		"CREATE DATABASE restored_$db ENCODING '$encoding{$db}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
	$node->command_ok([ 'pg_restore', '-d', "restored_$db", $dump ], "$db: pg_restore succeeds");
	is(sql("restored_$db", q{SELECT value FROM dumped WHERE key = 'k' || chr(233)}), "caf$e_acute",
		"$db: the restored table has the converted row");
}

# ---------------------------------------------------------------------------
# role names come from pg_authid in the encoding of the database that made
# them: kv_keyspaces shows one that is not valid here with \xNN escapes,
# never as invalid text
sql('latin1db', q{
DO $$ BEGIN
  EXECUTE format('CREATE ROLE %I', 'jos' || chr(233));
  EXECUTE format('GRANT EXECUTE ON FUNCTION kv_create_keyspace(text, boolean) TO %I', 'jos' || chr(233));
  EXECUTE format('SET ROLE %I', 'jos' || chr(233));
END $$;
SELECT kv_create_keyspace('role_ks');
RESET ROLE;});
is(sql('postgres', q{SELECT owner FROM kv_keyspaces() WHERE keyspace = 'role_ks'}), 'jos\xe9',
	'a role name invalid in the reading database is shown escaped in kv_keyspaces');
is(sql('latin1db', q{SELECT owner = 'jos' || chr(233) FROM kv_keyspaces() WHERE keyspace = 'role_ks'}), 't',
	'... and as it is where it is valid');
sql('postgres', q{SELECT kv_drop_keyspace('role_ks')});
sql('latin1db', q{DO $$ BEGIN
  EXECUTE format('REVOKE ALL ON FUNCTION kv_create_keyspace(text, boolean) FROM %I', 'jos' || chr(233));
  EXECUTE format('DROP ROLE %I', 'jos' || chr(233));
END $$;});

# a keyspace name that is not UTF-8 (raw bytes from the SQL_ASCII
# database) is refused: kv_keyspaces() reads every name as text, in every
# database
$r = run('asciidb', q{SELECT kv_create_keyspace(convert_from('\x626164e9'::bytea, 'SQL_ASCII'))});
is($r->{sqlstate}, '22021', 'a keyspace name that is not UTF-8 is refused (22021)');
ok(run('postgres', 'SELECT count(*) FROM kv_keyspaces()')->{ok},
	'... and kv_keyspaces() works in the UTF8 database');

# a database whose encoding has no conversion to UTF-8 (MULE_INTERNAL):
# the status views still work
$node->safe_psql('postgres',
	q{CREATE DATABASE muledb ENCODING 'MULE_INTERNAL' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
$node->safe_psql('muledb', 'CREATE EXTENSION kvext');
is($node->safe_psql('muledb', q{SELECT count(*) > 0 FROM kv_stats()}), 't',
	'kv_stats works in a MULE_INTERNAL database');

# EUC_JP maps some pairs of characters to one UTF-8 character: the second
# of such a pair is refused (22P05) rather than overwrite the first
$node->safe_psql('postgres',
	q{CREATE DATABASE eucjpdb ENCODING 'EUC_JP' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
$node->safe_psql('eucjpdb', 'CREATE EXTENSION kvext');
sql('eucjpdb', q{SELECT kv_put(convert_from('\xa2e8'::bytea, 'EUC_JP'), 'first')});
$r = run('eucjpdb', q{SELECT kv_put(convert_from('\xadfa'::bytea, 'EUC_JP'), 'second')});
is($r->{sqlstate}, '22P05', 'a key that does not convert to UTF-8 and back unchanged is refused');
is(sql('eucjpdb', q{SELECT kv_get(convert_from('\xa2e8'::bytea, 'EUC_JP'))}), 'first',
	'... and the key it would have overwritten keeps its value');
$r = run('eucjpdb', q{SELECT kv_put('jp', convert_from('\xadfa'::bytea, 'EUC_JP'))});
is($r->{sqlstate}, '22P05', '... as is such a value, which would read back changed');
sql('eucjpdb', q{SELECT kv_delete(convert_from('\xa2e8'::bytea, 'EUC_JP'))});

$node->stop;
done_testing();
