--
-- errors: every error path, with its SQLSTATE, and proof that a failed
-- write changes nothing.  Keys of this file start with "err:".
--
\set SHOW_CONTEXT never
\set VERBOSITY default

-- kv_try(stmt) (load.sql): 'ok' or the error as "SQLSTATE: message" plus
-- detail and hint.  The statement runs in a subtransaction (the exception
-- block), like any failed statement its writes are rolled back.

-- the state that every failed write below must leave unchanged
SELECT kv_put('err:k', 'old'), kv_put('err:n', '10');
CREATE TEMP VIEW err_state AS
SELECT kv_count() AS count,
       (SELECT string_agg(key || '=' || value, ', ' ORDER BY key)
          FROM kv_scan('err:')) AS keys;
SELECT * FROM err_state;

--
-- NULL arguments: 22004, for every function and every argument that
-- must not be NULL (the functions are not STRICT on purpose)
--
-- as a user sees it
SELECT kv_get(NULL);
SELECT kv_put('err:k', NULL);
-- and every case
SELECT stmt, kv_try(stmt) FROM (VALUES
    ($$SELECT kv_get(NULL)$$),
    ($$SELECT kv_get('err:k', NULL)$$),
    ($$SELECT kv_get_bytea(NULL)$$),
    ($$SELECT kv_get_bytea('err:k', NULL)$$),
    ($$SELECT kv_exists(NULL)$$),
    ($$SELECT kv_exists('err:k', NULL)$$),
    ($$SELECT kv_mget(NULL)$$),
    ($$SELECT kv_mget(ARRAY['err:k', NULL])$$),
    ($$SELECT kv_mget(ARRAY['err:k'], NULL)$$),
    ($$SELECT * FROM kv_scan(NULL)$$),
    ($$SELECT * FROM kv_scan('err:', NULL)$$),
    ($$SELECT kv_count(NULL)$$),
    ($$SELECT kv_put(NULL, 'new')$$),
    ($$SELECT kv_put('err:k', NULL)$$),
    ($$SELECT kv_put('err:k', NULL::text)$$),
    ($$SELECT kv_put('err:k', 'new', NULL)$$),
    ($$SELECT kv_put(NULL, '\x00'::bytea)$$),
    ($$SELECT kv_put('err:k', NULL::bytea)$$),
    ($$SELECT kv_put('err:k', '\x00'::bytea, NULL)$$),
    ($$SELECT kv_put(NULL, '{}'::jsonb)$$),
    ($$SELECT kv_put('err:k', NULL::jsonb)$$),
    ($$SELECT kv_put('err:k', '{}'::jsonb, NULL)$$),
    ($$SELECT kv_delete(NULL)$$),
    ($$SELECT kv_delete('err:k', NULL)$$),
    ($$SELECT kv_incr(NULL)$$),
    ($$SELECT kv_incr('err:n', NULL)$$),
    ($$SELECT kv_incr('err:n', 1, NULL)$$),
    ($$SELECT kv_cas(NULL, 'old', 'new')$$),
    ($$SELECT kv_cas('err:k', 'old', 'new', NULL)$$),
    ($$SELECT kv_mput(NULL, ARRAY['v'])$$),
    ($$SELECT kv_mput(ARRAY['err:k'], NULL)$$),
    ($$SELECT kv_mput(ARRAY['err:k'], ARRAY['v'], NULL)$$),
    ($$SELECT kv_mput(ARRAY['err:a', NULL], ARRAY['v', 'w'])$$),
    ($$SELECT kv_mput(ARRAY['err:a', 'err:b'], ARRAY['v', NULL])$$),
    ($$SELECT kv_create_keyspace(NULL)$$),
    ($$SELECT kv_drop_keyspace(NULL)$$)
) AS t(stmt);
SELECT * FROM err_state;

--
-- unknown keyspace: 42704, for every function
--
SELECT kv_get('err:k', 'no_such_keyspace');
SELECT stmt, kv_try(stmt) FROM (VALUES
    ($$SELECT kv_get('err:k', 'nope')$$),
    ($$SELECT kv_get_bytea('err:k', 'nope')$$),
    ($$SELECT kv_exists('err:k', 'nope')$$),
    ($$SELECT kv_mget(ARRAY['err:k'], 'nope')$$),
    ($$SELECT kv_mget('{}', 'nope')$$),
    ($$SELECT * FROM kv_scan('', 'nope')$$),
    ($$SELECT kv_count('nope')$$),
    ($$SELECT kv_put('err:k', 'new', 'nope')$$),
    ($$SELECT kv_put('err:k', '\x00'::bytea, 'nope')$$),
    ($$SELECT kv_put('err:k', '{}'::jsonb, 'nope')$$),
    ($$SELECT kv_delete('err:k', 'nope')$$),
    ($$SELECT kv_incr('err:n', 1, 'nope')$$),
    ($$SELECT kv_cas('err:k', 'old', 'new', 'nope')$$),
    ($$SELECT kv_mput(ARRAY['err:k'], ARRAY['new'], 'nope')$$),
    -- names are case sensitive and not trimmed
    ($$SELECT kv_get('err:k', 'DEFAULT')$$),
    ($$SELECT kv_get('err:k', 'default ')$$),
    ($$SELECT kv_get('err:k', '')$$),
    ($$SELECT kv_get('err:k', repeat('d', 100))$$)
) AS t(stmt);
SELECT * FROM err_state;

--
-- key over kvext.max_key_size / value over kvext.max_value_size: 54000.
-- Both settings are superuser-only (PGC_SUSET).
--
SET kvext.max_key_size = 16;
SET kvext.max_value_size = 10;
SHOW kvext.max_key_size;
SHOW kvext.max_value_size;
-- as a user sees it
SELECT kv_put('err:0123456789abc', 'new');
SELECT kv_put('err:k', '01234567890');
-- at the limits: accepted
SELECT kv_put('err:0123456789ab', '0123456789');
SELECT kv_get('err:0123456789ab');
SELECT kv_delete('err:0123456789ab');
-- over them: refused, for every writing function
SELECT stmt, kv_try(stmt) FROM (VALUES
    ($$SELECT kv_put('err:0123456789abc', 'new')$$),
    ($$SELECT kv_put('err:k', '01234567890')$$),
    ($$SELECT kv_put('err:k', '\x0102030405060708090a0b'::bytea)$$),
    ($$SELECT kv_put('err:k', '{"a": 1234567}'::jsonb)$$),
    ($$SELECT kv_put('err:0123456789abc', '\x00'::bytea)$$),
    ($$SELECT kv_incr('err:0123456789abc')$$),
    ($$SELECT kv_cas('err:0123456789abc', NULL, 'new')$$),
    ($$SELECT kv_cas('err:k', 'old', '01234567890')$$),
    ($$SELECT kv_mput(ARRAY['err:0123456789abc'], ARRAY['new'])$$),
    ($$SELECT kv_mput(ARRAY['err:k'], ARRAY['01234567890'])$$),
    -- multibyte: the limits are in bytes, not characters
    ($$SELECT kv_put('err:ключ-ключ', 'new')$$),
    ($$SELECT kv_put('err:k', 'значение')$$)
) AS t(stmt);
SELECT * FROM err_state;
-- kv_mput with one element too long writes nothing, not even the
-- elements before it
SELECT kv_mput(ARRAY['err:m1', 'err:m2', 'err:k'], ARRAY['short', '01234567890', 'new']);
SELECT kv_mput(ARRAY['err:m1', 'err:0123456789abc'], ARRAY['short', 'short']);
SELECT kv_exists('err:m1') AS m1_exists, kv_exists('err:m2') AS m2_exists;
SELECT * FROM err_state;
-- reads of a key over the limit are not errors: such a key cannot exist
SELECT kv_get('err:0123456789abc') IS NULL AS get_null,
       kv_get_bytea('err:0123456789abc') IS NULL AS get_bytea_null,
       kv_exists('err:0123456789abc') AS exists,
       kv_mget(ARRAY['err:0123456789abc', 'err:k']) AS mget,
       kv_delete('err:0123456789abc') AS deleted;
SELECT count(*) FROM kv_scan('err:0123456789abcdef');
-- a key written under a larger limit stays readable and deletable
RESET kvext.max_key_size;
SELECT kv_put('err:long-key-written-before', 'v');
SET kvext.max_key_size = 16;
SELECT kv_get('err:long-key-written-before');
SELECT kv_delete('err:long-key-written-before');
RESET kvext.max_key_size;
RESET kvext.max_value_size;
SHOW kvext.max_key_size;
SHOW kvext.max_value_size;
-- the defaults: an 8kB key and a 1MB value are accepted, one byte more is not
SELECT kv_try($$SELECT kv_put(repeat('k', 8192), 'v')$$);
SELECT kv_try($$SELECT kv_put(repeat('k', 8193), 'v')$$);
SELECT kv_try($$SELECT kv_put('err:big', repeat('v', 1048576))$$);
SELECT kv_try($$SELECT kv_put('err:big', repeat('v', 1048577))$$);
SELECT kv_delete(repeat('k', 8192)), kv_delete('err:big');
SELECT * FROM err_state;
-- ordinary users may not raise the limits
CREATE ROLE regress_kv_user;
SET ROLE regress_kv_user;
SET kvext.max_value_size = 100000000;
SET kvext.max_key_size = 1;
RESET ROLE;
DROP ROLE regress_kv_user;

--
-- kv_incr on a value that is not a base-10 integer: 22P02
--
SELECT kv_put('err:s', 'abc');
SELECT kv_incr('err:s');
SELECT kv_get('err:s');
SELECT v AS stored, kv_try(format('SELECT kv_put(%L, %L); SELECT kv_incr(%L)', 'err:s', v, 'err:s')) AS incr
  FROM unnest(ARRAY['', ' ', '1.5', ' 1', '1 ', '0x10', '1e3', '--1', '+', '-', '1_000', '١٢', 'NaN']) AS v;
-- (each kv_try above rolled back its own kv_put too)
SELECT kv_get('err:s');
SELECT kv_delete('err:s');
SELECT * FROM err_state;

--
-- kv_incr overflow, and stored values out of the bigint range: 22003
--
SELECT kv_put('err:max', '9223372036854775807');
SELECT kv_incr('err:max');
SELECT kv_get('err:max');
SELECT kv_incr('err:max', 0);
SELECT kv_incr('err:max', -9223372036854775807);
SELECT kv_put('err:min', '-9223372036854775808');
SELECT kv_incr('err:min', -1);
SELECT kv_get('err:min');
SELECT kv_incr('err:max', 9223372036854775807);
SELECT kv_get('err:max');
SELECT v AS stored, kv_try(format('SELECT kv_put(%L, %L); SELECT kv_incr(%L, 0)', 'err:s', v, 'err:s')) AS incr
  FROM unnest(ARRAY['9223372036854775808', '-9223372036854775809',
                    '99999999999999999999999', '18446744073709551616',
                    '00000000000000000000000000009223372036854775807',
                    '-0000000000000000000000000009223372036854775808']) AS v;
-- (leading zeros are fine: the last two kv_try calls succeeded and kept
-- their kv_put)
SELECT kv_get('err:s');
SELECT kv_delete('err:s'), kv_delete('err:max'), kv_delete('err:min');
SELECT * FROM err_state;

--
-- arrays: different lengths and more than one dimension: 2202E
--
SELECT kv_mput(ARRAY['err:a', 'err:b'], ARRAY['v']);
SELECT stmt, kv_try(stmt) FROM (VALUES
    ($$SELECT kv_mput(ARRAY['err:a', 'err:b'], ARRAY['v'])$$),
    ($$SELECT kv_mput(ARRAY['err:a'], ARRAY['v', 'w'])$$),
    ($$SELECT kv_mput('{}', ARRAY['v'])$$),
    ($$SELECT kv_mput(ARRAY['err:a', 'err:b'], '{{v,w}}')$$),
    ($$SELECT kv_mput('{{err:a,err:b},{err:c,err:d}}', '{v,w,x,y}')$$),
    ($$SELECT kv_mput('{{err:a,err:b},{err:c,err:d}}', '{{v,w},{x,y}}')$$),
    ($$SELECT kv_mget('{{err:k,err:n}}')$$),
    ($$SELECT kv_mget('{{err:k},{err:n}}')$$)
) AS t(stmt);
SELECT kv_exists('err:a') OR kv_exists('err:b') OR kv_exists('err:c') AS any_written;
SELECT * FROM err_state;

--
-- writes in a read-only transaction: 25006; reads still work
--
BEGIN TRANSACTION READ ONLY;
SELECT kv_put('err:k', 'new');
ROLLBACK;
BEGIN TRANSACTION READ ONLY;
SELECT kv_get('err:k'), kv_exists('err:k'), kv_get_bytea('err:k'),
       kv_mget(ARRAY['err:k', 'err:n']), kv_count() >= 2 AS counted;
SELECT * FROM kv_scan('err:') ORDER BY key;
SELECT stmt, kv_try(stmt) FROM (VALUES
    ($$SELECT kv_put('err:k', 'new')$$),
    ($$SELECT kv_put('err:k', '\x00'::bytea)$$),
    ($$SELECT kv_put('err:k', '{}'::jsonb)$$),
    ($$SELECT kv_delete('err:k')$$),
    ($$SELECT kv_delete('err:no-such-key')$$),
    ($$SELECT kv_incr('err:n')$$),
    ($$SELECT kv_cas('err:k', 'old', 'new')$$),
    ($$SELECT kv_cas('err:k', 'mismatch', 'new')$$),
    ($$SELECT kv_mput(ARRAY['err:k'], ARRAY['new'])$$),
    ($$SELECT kv_mput('{}', '{}')$$),
    ($$SELECT kv_create_keyspace('err_ks')$$),
    ($$SELECT kv_drop_keyspace('err_ks', true)$$)
) AS t(stmt);
COMMIT;
-- the same with default_transaction_read_only
SET default_transaction_read_only = on;
SELECT kv_incr('err:n');
RESET default_transaction_read_only;
SELECT * FROM err_state;
SELECT * FROM kv_keyspaces() ORDER BY keyspace;

--
-- a value written as bytea that is not valid text: kv_get, kv_mget and
-- kv_scan refuse it (22021) with a hint; kv_get_bytea reads it
--
SELECT kv_put('err:bin', '\xff00fe'::bytea);
SELECT kv_get('err:bin');
SELECT kv_mget(ARRAY['err:k', 'err:bin']);
SELECT * FROM kv_scan('err:bin');
SELECT kv_get_bytea('err:bin'), kv_exists('err:bin');
-- a NUL byte is not valid text either
SELECT kv_put('err:bin', '\x610062'::bytea);
SELECT kv_get('err:bin');
-- bytea that happens to be valid UTF-8 reads as text
SELECT kv_put('err:bin', convert_to('héllo', 'UTF8'));
SELECT kv_get('err:bin'), kv_mget(ARRAY['err:bin']);
SELECT * FROM kv_scan('err:bin');
SELECT kv_delete('err:bin');
SELECT * FROM err_state;

--
-- a failed write inside a transaction aborts it: none of its writes stay
--
BEGIN;
SELECT kv_put('err:k', 'changed');
SELECT kv_put('err:t', 'new');
SELECT kv_incr('err:k');
SELECT kv_get('err:k');
ROLLBACK;
SELECT * FROM err_state;

-- clean up
SELECT kv_delete('err:k'), kv_delete('err:n');
SELECT * FROM err_state;
DROP VIEW err_state;
