--
-- encoding: text is stored as UTF-8 and checked on the way out.  In this
-- UTF8 database nothing converts; every kvext function and foreign table
-- that returns stored bytes as text (keys, values, keyspace names) fails
-- with 22021, naming the key and keyspace, for bytes that are not UTF-8;
-- the bytes stay readable as bytea.  One database can write such bytes
-- only as bytea (values through kv_put(key, bytea), keys through a foreign
-- table with a bytea key column); conversion between databases of other
-- encodings (LATIN1, SQL_ASCII) is tested in TAP
-- (test/t/117_text_encoding.pl).
--
SELECT pg_encoding_to_char(encoding) AS db_encoding
  FROM pg_database WHERE datname = current_database();
SELECT kv_create_keyspace('enc');
CREATE SERVER enc_local FOREIGN DATA WRAPPER kvext_fdw;
CREATE FOREIGN TABLE enc_raw (key bytea, value bytea) SERVER enc_local
  OPTIONS (keyspace 'enc');
CREATE FOREIGN TABLE enc_text (key text, value text) SERVER enc_local
  OPTIONS (keyspace 'enc');
CREATE FOREIGN TABLE enc_jsonb (key text, value jsonb) SERVER enc_local
  OPTIONS (keyspace 'enc');
CREATE FOREIGN TABLE enc_int (key text, value integer) SERVER enc_local
  OPTIONS (keyspace 'enc');
CREATE FOREIGN TABLE enc_keys (key bytea, value text) SERVER enc_local
  OPTIONS (keyspace 'enc');
-- the whole keyspace as bytes: compared before and after the errors
CREATE VIEW enc_digest AS
  SELECT count(*) AS n, md5(string_agg(key || '='::bytea || value, ','::bytea ORDER BY key)) AS md5
    FROM enc_raw;

-- a value that is not UTF-8 (0xE9 is LATIN1 'é'), as jsonb text would be
SELECT kv_put('bad', '\x22636166e922'::bytea, 'enc');
SELECT * FROM enc_digest \gset before_
SELECT kv_try($$SELECT kv_get('bad', 'enc')$$);
SELECT kv_try($$SELECT kv_mget(ARRAY['bad'], 'enc')$$);
SELECT kv_try($$SELECT * FROM kv_scan('', 'enc')$$);
SELECT kv_try($$SELECT * FROM enc_text$$);
SELECT kv_try($$SELECT * FROM enc_text WHERE key = 'bad'$$);
SELECT kv_try($$SELECT * FROM enc_jsonb$$);
SELECT kv_try($$SELECT * FROM enc_jsonb WHERE key = 'bad'$$);
SELECT kv_try($$SELECT * FROM enc_int$$);
SELECT kv_try($$SELECT * FROM enc_int WHERE key = 'bad'$$);
SELECT kv_get_bytea('bad', 'enc');
SELECT * FROM kv_scan_bytea('', 'enc');
SELECT n = :before_n AND md5 = :'before_md5' AS unchanged FROM enc_digest;
SELECT kv_delete('bad', 'enc');

-- a key that is not UTF-8: every function returns keys as text, also
-- kv_scan_bytea; a bytea key column reads it
INSERT INTO enc_keys VALUES ('\x6be9', 'v');
SELECT * FROM enc_digest \gset before_
SELECT kv_try($$SELECT * FROM kv_scan('', 'enc')$$);
SELECT kv_try($$SELECT * FROM kv_scan_bytea('', 'enc')$$);
SELECT kv_try($$SELECT * FROM enc_text$$);
SELECT * FROM enc_keys;
SELECT * FROM enc_raw;
SELECT n = :before_n AND md5 = :'before_md5' AS unchanged FROM enc_digest;
-- an error naming such a key shows it escaped, never the raw bytes
SELECT kv_try($$INSERT INTO enc_keys VALUES ('\x6be9', 'again')$$);
DELETE FROM enc_keys;

-- ASCII and valid UTF-8 read as text everywhere
SELECT kv_put('a', 'b', 'enc');
SELECT kv_put('k' || chr(233), 'h' || chr(233) || 'llo', 'enc');
SELECT kv_put('j', convert_to('"caf' || chr(233) || '"', 'UTF8'), 'enc');
SELECT kv_get('k' || chr(233), 'enc') = 'h' || chr(233) || 'llo' AS utf8_get;
SELECT kv_mget(ARRAY['a', 'j'], 'enc') = ARRAY['b', '"caf' || chr(233) || '"'] AS utf8_mget;
SELECT count(*) FROM kv_scan('', 'enc');
SELECT count(*) FROM kv_scan_bytea('', 'enc');
SELECT count(*) FROM enc_text;
SELECT value = to_jsonb('caf' || chr(233)) AS utf8_jsonb FROM enc_jsonb WHERE key = 'j';

DROP VIEW enc_digest;
DROP SERVER enc_local CASCADE;
SELECT kv_drop_keyspace('enc');
