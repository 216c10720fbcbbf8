--
-- fdw: kvext_fdw foreign tables over local keyspaces: options, columns,
-- scans and their pushdown, writes, transactions, rights.  Keyspaces and
-- tables of this file start with "fdw_"; all are dropped at the end.
--
\set SHOW_CONTEXT never

-- kv_try(stmt) (load.sql): 'ok' or the error as "SQLSTATE: message" plus
-- detail and hint

-- fdw_rows(query): the planner's row estimate of a query
CREATE FUNCTION fdw_rows(query text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) ' || query INTO plan;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::bigint;
END $$;

--
-- The wrapper comes with the extension
--
SELECT fdwname, fdwhandler::regproc, fdwvalidator::regproc
  FROM pg_foreign_data_wrapper WHERE fdwname = 'kvext_fdw';
CREATE SERVER fdw_local FOREIGN DATA WRAPPER kvext_fdw;

--
-- Options, per kind of object; a misspelt option gets a hint
--
SELECT stmt, kv_try(stmt) FROM (VALUES
    -- the wrapper itself takes none
    ($$ALTER FOREIGN DATA WRAPPER kvext_fdw OPTIONS (keyspace 'x')$$),
    ($$ALTER FOREIGN DATA WRAPPER kvext_fdw OPTIONS (nothing 'x')$$),
    -- servers: postgres_fdw's libpq options
    ($$CREATE SERVER fdw_s1 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (host 'h', port '5432', dbname 'd', connect_timeout '5', sslmode 'prefer', application_name 'a')$$),
    ($$CREATE SERVER fdw_s2 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (hots 'h')$$),
    ($$CREATE SERVER fdw_s2 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (dbnmae 'd')$$),
    ($$CREATE SERVER fdw_s2 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (keyspace 'd')$$),
    ($$CREATE SERVER fdw_s2 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (user 'u')$$),
    ($$CREATE SERVER fdw_s2 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (connect_timeout 'x')$$),
    ($$CREATE SERVER fdw_s2 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (connect_timeout '0')$$),
    -- user mappings
    ($$CREATE USER MAPPING FOR CURRENT_USER SERVER fdw_s1 OPTIONS (user 'u', password 'p', password_required 'true')$$),
    ($$CREATE USER MAPPING FOR PUBLIC SERVER fdw_s1 OPTIONS (pasword 'p')$$),
    ($$CREATE USER MAPPING FOR PUBLIC SERVER fdw_s1 OPTIONS (password_required 'maybe')$$),
    ($$CREATE USER MAPPING FOR PUBLIC SERVER fdw_s1 OPTIONS (host 'h')$$),
    ($$CREATE USER MAPPING FOR PUBLIC SERVER fdw_s1 OPTIONS (zzzzzzzzzzzz 'h')$$),
    -- foreign tables
    ($$CREATE FOREIGN TABLE fdw_t1 (key text, value text) SERVER fdw_local OPTIONS (keyspace 'fdw_x', create_keyspace 'false', upsert 'off', key_column 'key', value_column 'value')$$),
    ($$CREATE FOREIGN TABLE fdw_t2 (key text, value text) SERVER fdw_local OPTIONS (keyspce 'x')$$),
    ($$CREATE FOREIGN TABLE fdw_t2 (key text, value text) SERVER fdw_local OPTIONS (upsrt 'true')$$),
    ($$CREATE FOREIGN TABLE fdw_t2 (key text, value text) SERVER fdw_local OPTIONS (zzzzzzzzzzzz 'x')$$),
    ($$CREATE FOREIGN TABLE fdw_t2 (key text, value text) SERVER fdw_local OPTIONS (host 'x')$$),
    ($$CREATE FOREIGN TABLE fdw_t2 (key text, value text) SERVER fdw_local OPTIONS (column_name 'key')$$),
    ($$CREATE FOREIGN TABLE fdw_t2 (key text, value text) SERVER fdw_local OPTIONS (upsert 'maybe')$$),
    ($$CREATE FOREIGN TABLE fdw_t2 (key text, value text) SERVER fdw_local OPTIONS (create_keyspace '')$$),
    ($$CREATE FOREIGN TABLE fdw_t2 (key text, value text) SERVER fdw_local OPTIONS (keyspace '')$$),
    ($$CREATE FOREIGN TABLE fdw_t2 (key text, value text) SERVER fdw_local OPTIONS (keyspace '$$ || repeat('k', 64) || $$')$$),
    ($$CREATE FOREIGN TABLE fdw_t2 (key text, value text) SERVER fdw_local OPTIONS (keyspace 'fdw_x ')$$),
    ($$CREATE FOREIGN TABLE fdw_t2 (key text, value text) SERVER fdw_local OPTIONS (keyspace E'fdw\tx')$$),
    -- columns
    ($$CREATE FOREIGN TABLE fdw_t2 (k text OPTIONS (column_name 'key'), v text OPTIONS (column_name 'value')) SERVER fdw_local$$),
    ($$CREATE FOREIGN TABLE fdw_t3 (k text OPTIONS (column_name 'kye'), value text) SERVER fdw_local$$),
    ($$CREATE FOREIGN TABLE fdw_t3 (k text OPTIONS (colum_name 'key'), value text) SERVER fdw_local$$),
    ($$CREATE FOREIGN TABLE fdw_t3 (k text OPTIONS (keyspace 'key'), value text) SERVER fdw_local$$)
) AS t(stmt);
SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname LIKE 'fdw\_%' ORDER BY 1;
SELECT relname, ftoptions FROM pg_foreign_table JOIN pg_class ON oid = ftrelid
 WHERE relname LIKE 'fdw\_%' ORDER BY 1;

-- A server naming several nodes of one replicated group: libpq's multi-host
-- form, its lists checked as libpq checks them; read_from 'leader' | 'any'
SELECT stmt, kv_try(stmt) FROM (VALUES
    ($$CREATE SERVER fdw_g1 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (host 'h1,h2,h3', port '5432,5433,5434', dbname 'd', read_from 'any')$$),
    ($$CREATE SERVER fdw_g2 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (host 'h1,h2,h3', port '5432,5433')$$),
    ($$CREATE SERVER fdw_g2 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (host 'h1,h2', hostaddr '127.0.0.1')$$),
    ($$CREATE SERVER fdw_g2 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (host 'h1,h2', port '5432')$$),
    ($$ALTER SERVER fdw_g1 OPTIONS (SET port '1,2')$$),
    ($$ALTER SERVER fdw_g1 OPTIONS (SET read_from 'leeder')$$),
    ($$CREATE SERVER fdw_g3 FOREIGN DATA WRAPPER kvext_fdw OPTIONS (host 'h1,h2', read_from 'followers')$$),
    ($$CREATE FOREIGN TABLE fdw_g_t (key text, value text) SERVER fdw_g1 OPTIONS (read_from 'ANY')$$),
    ($$CREATE FOREIGN TABLE fdw_g_t (key text, value text) SERVER fdw_g1 OPTIONS (read_from 'leader')$$),
    ($$CREATE USER MAPPING FOR PUBLIC SERVER fdw_g1 OPTIONS (read_from 'any')$$)
) AS t(stmt);
SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname LIKE 'fdw\_g%' ORDER BY 1;
-- EXPLAIN connects to no node: the node is chosen at first use
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_g_t WHERE key = 'a';
EXPLAIN (VERBOSE, COSTS OFF) UPDATE fdw_g_t SET value = 'b' WHERE key = 'a';
ALTER FOREIGN TABLE fdw_g_t OPTIONS (SET read_from 'any');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_g_t WHERE key = 'a';
-- an UPDATE's scan reads the leader, whose values it compares
EXPLAIN (VERBOSE, COSTS OFF) UPDATE fdw_g_t SET value = 'b' WHERE key = 'a';
DROP FOREIGN TABLE fdw_g_t;
DROP SERVER fdw_g1, fdw_g2;

-- password_required 'false' is for superusers only (postgres_fdw's rule)
CREATE ROLE regress_kvext_fdw_user;
GRANT USAGE ON FOREIGN SERVER fdw_s1 TO regress_kvext_fdw_user;
SET ROLE regress_kvext_fdw_user;
SELECT kv_try($$CREATE USER MAPPING FOR CURRENT_USER SERVER fdw_s1 OPTIONS (password_required 'false')$$);
RESET ROLE;
SELECT kv_try($$CREATE USER MAPPING FOR regress_kvext_fdw_user SERVER fdw_s1 OPTIONS (password_required 'false')$$);

-- A server with connection options is a remote node (fdw_remote.sql)
CREATE FOREIGN TABLE fdw_remote (key text, value text) SERVER fdw_s1;

--
-- Columns: key and value, by name, by column_name, by key_column and
-- value_column; anything else fails CREATE / ALTER FOREIGN TABLE
--
SELECT stmt, kv_try(stmt) FROM (VALUES
    ($$CREATE FOREIGN TABLE fdw_c (k text, value text) SERVER fdw_local$$),
    ($$CREATE FOREIGN TABLE fdw_c (key text) SERVER fdw_local$$),
    ($$CREATE FOREIGN TABLE fdw_c (value text) SERVER fdw_local$$),
    ($$CREATE FOREIGN TABLE fdw_c () SERVER fdw_local$$),
    ($$CREATE FOREIGN TABLE fdw_c (key text, value text, extra int) SERVER fdw_local$$),
    ($$CREATE FOREIGN TABLE fdw_c (key text, k2 text OPTIONS (column_name 'key'), value text) SERVER fdw_local$$),
    ($$CREATE FOREIGN TABLE fdw_c (id int, body jsonb) SERVER fdw_local OPTIONS (key_column 'id')$$),
    ($$CREATE FOREIGN TABLE fdw_c (id int, body jsonb) SERVER fdw_local OPTIONS (key_column 'idd', value_column 'body')$$),
    ($$ALTER FOREIGN TABLE fdw_t1 ADD COLUMN extra int$$),
    ($$ALTER FOREIGN TABLE fdw_t1 RENAME COLUMN value TO val$$),
    ($$ALTER FOREIGN TABLE fdw_t2 ALTER COLUMN k OPTIONS (SET column_name 'value')$$)
) AS t(stmt);
CREATE FOREIGN TABLE fdw_docs (id int, body jsonb) SERVER fdw_local
  OPTIONS (keyspace 'fdw_docs', create_keyspace 'true', key_column 'id', value_column 'body');
-- a column a table did not check at creation (the event trigger was off)
ALTER EVENT TRIGGER kvext_fdw_check_ddl DISABLE;
ALTER FOREIGN TABLE fdw_t1 ADD COLUMN extra int;
ALTER EVENT TRIGGER kvext_fdw_check_ddl ENABLE;
SELECT * FROM fdw_t1;
ALTER EVENT TRIGGER kvext_fdw_check_ddl DISABLE;
ALTER FOREIGN TABLE fdw_t1 DROP COLUMN extra;
ALTER EVENT TRIGGER kvext_fdw_check_ddl ENABLE;

--
-- Keyspaces: the table's name by default; a missing one is 42704 unless
-- create_keyspace 'true', which creates it at the first write
--
SELECT * FROM fdw_t1;
INSERT INTO fdw_t1 VALUES ('a', 'b');
SELECT kv_try($$SELECT * FROM fdw_t2$$), kv_try($$INSERT INTO fdw_t2 VALUES ('a', 'b')$$);
SELECT kv_create_keyspace('fdw_t2');
INSERT INTO fdw_t2 VALUES ('a', 'in fdw_t2');
SELECT kv_get('a', 'fdw_t2');
-- create_keyspace: reads of a missing keyspace are empty, writes create it
-- in their transaction
SELECT * FROM fdw_docs;
SELECT count(*) FROM fdw_docs;
BEGIN;
INSERT INTO fdw_docs VALUES (1, '{"a": 1}');
SELECT keyspace FROM kv_keyspaces() WHERE keyspace = 'fdw_docs';
ROLLBACK;
SELECT keyspace FROM kv_keyspaces() WHERE keyspace = 'fdw_docs';
INSERT INTO fdw_docs VALUES (1, '{"a": 1}'), (2, '{"b": [1, 2]}');
SELECT keyspace, entries FROM kv_keyspaces() WHERE keyspace = 'fdw_docs';

--
-- Keys and values agree with the kv functions
--
CREATE FOREIGN TABLE fdw_text (key text, value text) SERVER fdw_local
  OPTIONS (keyspace 'fdw_one', create_keyspace 'true');
INSERT INTO fdw_text VALUES ('user:1', 'ada'), ('user:2', 'bob');
SELECT kv_put('user:3', 'cy', 'fdw_one'), kv_put('other', 'x', 'fdw_one');
SELECT kv_get('user:1', 'fdw_one'), kv_get('user:2', 'fdw_one');
SELECT * FROM fdw_text ORDER BY key;
-- integer keys and jsonb values are their text forms
SELECT * FROM fdw_docs ORDER BY id;
SELECT kv_get('2', 'fdw_docs'), kv_get('2', 'fdw_docs')::jsonb -> 'b';
SELECT kv_put('3', '{"c":   true}'::jsonb, 'fdw_docs');
SELECT * FROM fdw_docs WHERE id = 3;
-- a key that is not the text form of its type is an error, not a hidden row
SELECT kv_put('007', '{}', 'fdw_docs');
SELECT kv_try($$SELECT * FROM fdw_docs$$);
SELECT kv_delete('007', 'fdw_docs');
SELECT kv_put('x', '{}', 'fdw_docs');
SELECT kv_try($$SELECT * FROM fdw_docs$$);
SELECT kv_delete('x', 'fdw_docs');
SELECT kv_put('4', 'not json', 'fdw_docs');
SELECT kv_try($$SELECT * FROM fdw_docs ORDER BY id$$);
SELECT kv_delete('4', 'fdw_docs');
-- bytea values are binary, as kv_put(key, bytea) writes them
CREATE FOREIGN TABLE fdw_blob (key text, value bytea) SERVER fdw_local
  OPTIONS (keyspace 'fdw_one');
INSERT INTO fdw_blob VALUES ('blob', '\x00ff10');
SELECT kv_get_bytea('blob', 'fdw_one');
SELECT kv_try($$SELECT kv_get('blob', 'fdw_one')$$);
SELECT * FROM fdw_blob WHERE key = 'blob';
SELECT kv_try($$SELECT * FROM fdw_text WHERE key = 'blob'$$);
SELECT kv_try($$SELECT * FROM fdw_text$$);
DELETE FROM fdw_blob WHERE key = 'blob';
-- bytea keys are the bytes themselves
CREATE FOREIGN TABLE fdw_bkeys (key bytea, value text) SERVER fdw_local
  OPTIONS (keyspace 'fdw_one');
SELECT * FROM fdw_bkeys WHERE key = 'user:1'::bytea;
-- a timestamptz key is one key whatever the session's time zone
CREATE FOREIGN TABLE fdw_times (key timestamptz, value float8) SERVER fdw_local
  OPTIONS (keyspace 'fdw_times', create_keyspace 'true');
SET TimeZone = 'America/New_York';
SET DateStyle = 'SQL, DMY';
SET extra_float_digits = 0;
INSERT INTO fdw_times VALUES ('2026-01-02 03:04:05+00', 0.1);
SELECT * FROM kv_scan('', 'fdw_times');
SET TimeZone = 'Asia/Tokyo';
SELECT * FROM fdw_times WHERE key = '2026-01-02 03:04:05+00';
RESET TimeZone;
RESET DateStyle;
RESET extra_float_digits;

--
-- Scans: the lookup kind in EXPLAIN; other quals run locally
--
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE key = 'user:1';
SELECT * FROM fdw_text WHERE key = 'user:1';
SELECT * FROM fdw_text WHERE 'user:2' = key;
SELECT * FROM fdw_text WHERE key = 'nope';
SELECT * FROM fdw_text WHERE key = NULL;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE key = 'user:1' AND value <> 'x';
SELECT * FROM fdw_text WHERE key = 'user:1' AND value <> 'ada';
-- parameters
PREPARE fdw_get(text) AS SELECT value FROM fdw_text WHERE key = $1;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE fdw_get('user:2');
SET plan_cache_mode = force_generic_plan;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE fdw_get('user:2');
EXECUTE fdw_get('user:2');
EXECUTE fdw_get('user:3');
EXECUTE fdw_get(NULL);
RESET plan_cache_mode;
-- an expression evaluated when the scan starts, and an initplan
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE key = lower('USER:1');
SELECT * FROM fdw_text WHERE key = lower('USER:1');
EXPLAIN (VERBOSE, COSTS OFF)
SELECT * FROM fdw_text WHERE key = (SELECT 'user:' || 2);
SELECT * FROM fdw_text WHERE key = (SELECT 'user:' || 2);
-- multi-key: IN, = ANY(array), = ANY($1); repeated keys and NULLs
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE key IN ('user:1', 'user:3');
SELECT * FROM fdw_text WHERE key IN ('user:3', 'user:1', 'nope', 'user:3', NULL);
SELECT * FROM fdw_text WHERE key = ANY(ARRAY['user:2', 'user:2']);
SELECT * FROM fdw_text WHERE key = ANY('{}'::text[]);
SELECT * FROM fdw_text WHERE key = ANY(NULL::text[]);
PREPARE fdw_mget(text[]) AS SELECT * FROM fdw_text WHERE key = ANY($1);
SET plan_cache_mode = force_generic_plan;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE fdw_mget('{user:1,other}');
EXECUTE fdw_mget('{user:1,other}');
RESET plan_cache_mode;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_docs WHERE id IN (1, 2);
SELECT * FROM fdw_docs WHERE id IN (2, 1);
-- prefix: LIKE 'abc%', ^@, starts_with(); the qual is also checked locally
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE key LIKE 'user:%';
SELECT * FROM fdw_text WHERE key LIKE 'user:%' ORDER BY key;
SELECT * FROM fdw_text WHERE key LIKE 'user:_' AND key LIKE '%2' ORDER BY key;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE key ^@ 'user';
SELECT * FROM fdw_text WHERE key ^@ 'user' ORDER BY key;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE starts_with(key, 'oth');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE key LIKE 'us\_er%';
-- not pushed: no fixed prefix, ILIKE, another operator, another column,
-- an equality that is not image equality (numeric 1.0 = 1.00)
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE key LIKE '%1';
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE key ILIKE 'user%';
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE key > 'user:2';
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_text WHERE value = 'ada';
CREATE FOREIGN TABLE fdw_nums (key numeric, value text) SERVER fdw_local
  OPTIONS (keyspace 'fdw_nums', create_keyspace 'true');
INSERT INTO fdw_nums VALUES (1.0, 'one point zero'), (1.00, 'one point zero zero');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM fdw_nums WHERE key = 1;
SELECT * FROM fdw_nums WHERE key = 1 ORDER BY value;
-- count(*) is the keyspace's count when nothing else is asked
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM fdw_text;
SELECT count(*), count(*) + 1 AS plus_one FROM fdw_text;
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM fdw_text WHERE key LIKE 'user%';
SELECT count(*) FROM fdw_text WHERE key LIKE 'user%';
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(key) FROM fdw_text;
-- estimates come from the keyspace's count
SELECT kv_count('fdw_one'), fdw_rows('SELECT * FROM fdw_text'),
       fdw_rows($$SELECT * FROM fdw_text WHERE key = 'x'$$),
       fdw_rows($$SELECT * FROM fdw_text WHERE key IN ('x', 'y')$$);

--
-- Writes
--
-- INSERT of an existing key: 23505, ON CONFLICT DO NOTHING, or upsert
SELECT kv_try($$INSERT INTO fdw_text VALUES ('user:1', 'again')$$);
INSERT INTO fdw_text VALUES ('user:1', 'again'), ('user:4', 'dee') ON CONFLICT DO NOTHING;
SELECT kv_try($$INSERT INTO fdw_text VALUES ('user:1', 'again') ON CONFLICT (key) DO NOTHING$$);
SELECT kv_get('user:1', 'fdw_one'), kv_get('user:4', 'fdw_one');
CREATE FOREIGN TABLE fdw_upsert (key text, value text) SERVER fdw_local
  OPTIONS (keyspace 'fdw_one', upsert 'true');
INSERT INTO fdw_upsert VALUES ('user:1', 'ada2') RETURNING *;
SELECT kv_get('user:1', 'fdw_one');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO fdw_upsert VALUES ('k', 'v');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO fdw_text VALUES ('k', 'v');
-- an UPDATE never loses a row to its own writes: a new key never
-- overwrites another row (upsert is for INSERT), and a row the statement
-- already wrote is skipped, as a heap row its own command updated is
CREATE FOREIGN TABLE fdw_shift (key int, value text) SERVER fdw_local
  OPTIONS (keyspace 'fdw_shift', create_keyspace 'true', upsert 'true');
INSERT INTO fdw_shift SELECT g, 'same' FROM generate_series(1, 5) g;
-- either order of the scan: all five shifted, or 23505 and nothing changed
SELECT kv_try($$UPDATE fdw_shift SET key = key + 1$$) ~ '^(ok|23505)' AS ok_or_23505;
SELECT count(*), string_agg(key::text, ',' ORDER BY key) IN ('1,2,3,4,5', '2,3,4,5,6') AS all_rows
  FROM fdw_shift;
DELETE FROM fdw_shift;
INSERT INTO fdw_shift VALUES (1, 'a'), (2, 'b');
SELECT kv_try($$UPDATE fdw_shift SET key = 3 - key$$);
SELECT * FROM fdw_shift ORDER BY key;
-- a join that matches a row twice updates (deletes) it once
UPDATE fdw_shift SET value = s.v FROM (VALUES (1, 'x'), (1, 'y')) s(k, v) WHERE fdw_shift.key = s.k;
SELECT value IN ('x', 'y') FROM fdw_shift WHERE key = 1;
DELETE FROM fdw_shift USING (VALUES (2), (2)) s(k) WHERE fdw_shift.key = s.k;
SELECT * FROM fdw_shift ORDER BY key;
DROP FOREIGN TABLE fdw_shift;
SELECT kv_drop_keyspace('fdw_shift');
-- NULL key or value: 22004; over the limits: 54000; nothing written
SELECT kv_try($$INSERT INTO fdw_text VALUES (NULL, 'v')$$);
SELECT kv_try($$INSERT INTO fdw_text VALUES ('k', NULL)$$);
SELECT kv_try($$INSERT INTO fdw_text (key) VALUES ('k')$$);
SET kvext.max_key_size = 8;
SET kvext.max_value_size = 8;
SELECT kv_try($$INSERT INTO fdw_text VALUES ('123456789', 'v')$$);
SELECT kv_try($$INSERT INTO fdw_text VALUES ('k', '123456789')$$);
SELECT kv_try($$UPDATE fdw_text SET value = '123456789' WHERE key = 'user:2'$$);
RESET kvext.max_key_size;
RESET kvext.max_value_size;
SELECT kv_try($$UPDATE fdw_text SET value = NULL WHERE key = 'user:2'$$);
SELECT kv_try($$UPDATE fdw_text SET key = NULL WHERE key = 'user:2'$$);
SELECT * FROM fdw_text ORDER BY key;
-- UPDATE of the value; of the key (delete + insert); RETURNING
EXPLAIN (VERBOSE, COSTS OFF) UPDATE fdw_text SET value = value || '!' WHERE key = 'user:2';
UPDATE fdw_text SET value = value || '!' WHERE key = 'user:2' RETURNING *;
UPDATE fdw_text SET key = 'user:5' WHERE key = 'user:4' RETURNING *;
SELECT kv_exists('user:4', 'fdw_one'), kv_get('user:5', 'fdw_one');
SELECT kv_try($$UPDATE fdw_text SET key = 'user:1' WHERE key = 'user:5'$$);
UPDATE fdw_text SET value = upper(value) WHERE key LIKE 'user:%';
-- an UPDATE that renames every key visits each key once
UPDATE fdw_text SET key = key || '.x' WHERE key LIKE 'user:%' RETURNING *;
UPDATE fdw_text SET key = replace(key, '.x', '') WHERE key LIKE 'user:%';
SELECT * FROM fdw_text ORDER BY key;
-- DELETE, RETURNING
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM fdw_text WHERE key IN ('user:5', 'other');
DELETE FROM fdw_text WHERE key IN ('user:5', 'other') RETURNING *;
DELETE FROM fdw_text WHERE key = 'user:5';
SELECT * FROM fdw_text ORDER BY key;
-- COPY FROM
COPY fdw_text FROM stdin;
copy:1	one
copy:2	two
\.
SELECT kv_get('copy:1', 'fdw_one'), kv_get('copy:2', 'fdw_one');
SELECT kv_try($$COPY fdw_text FROM PROGRAM 'printf "copy:1\tagain\n"'$$);
-- INSERT ... SELECT from the table itself reads it once
INSERT INTO fdw_text SELECT key || '.copy', value FROM fdw_text WHERE key LIKE 'copy:%';
SELECT * FROM fdw_text WHERE key LIKE 'copy:%' ORDER BY key;

--
-- Transactions: writes join the transaction, as kv_put's do
--
BEGIN;
INSERT INTO fdw_text VALUES ('tx:1', 'one');
SELECT kv_get('tx:1', 'fdw_one');
SELECT * FROM fdw_text WHERE key = 'tx:1';
SELECT count(*) FROM fdw_text;
ROLLBACK;
SELECT kv_exists('tx:1', 'fdw_one'), count(*) FROM fdw_text;
BEGIN;
INSERT INTO fdw_text VALUES ('tx:1', 'one');
SAVEPOINT s1;
UPDATE fdw_text SET value = 'changed' WHERE key = 'tx:1';
DELETE FROM fdw_text WHERE key = 'user:1';
INSERT INTO fdw_text VALUES ('tx:2', 'two');
SELECT * FROM fdw_text WHERE key IN ('tx:1', 'tx:2', 'user:1');
ROLLBACK TO s1;
SELECT * FROM fdw_text WHERE key IN ('tx:1', 'tx:2', 'user:1');
COMMIT;
SELECT kv_get('tx:1', 'fdw_one'), kv_get('tx:2', 'fdw_one'), kv_get('user:1', 'fdw_one');
-- a failed statement writes nothing
SELECT kv_try($$INSERT INTO fdw_text VALUES ('tx:3', 'three'), ('tx:1', 'dup')$$);
SELECT kv_exists('tx:3', 'fdw_one');
-- read-only transactions refuse writes (25006)
BEGIN READ ONLY;
SELECT kv_try($$INSERT INTO fdw_text VALUES ('tx:4', 'four')$$);
COMMIT;

--
-- Two keyspaces: the same key, independent values
--
CREATE FOREIGN TABLE fdw_two (key text, value text) SERVER fdw_local
  OPTIONS (keyspace 'fdw_two', create_keyspace 'true');
INSERT INTO fdw_two VALUES ('user:1', 'in two');
SELECT (SELECT value FROM fdw_text WHERE key = 'user:1') AS one,
       (SELECT value FROM fdw_two WHERE key = 'user:1') AS two;
SELECT t.key, t.value AS one, w.value AS two
  FROM fdw_text t JOIN fdw_two w USING (key);

--
-- Rights: USAGE on the server, table privileges, and creating a keyspace
-- needs EXECUTE on kv_create_keyspace()
--
CREATE SCHEMA fdw_role_schema AUTHORIZATION regress_kvext_fdw_user;
SET ROLE regress_kvext_fdw_user;
SET search_path = fdw_role_schema, public;
SELECT kv_try($$CREATE FOREIGN TABLE fdw_mine (key text, value text) SERVER fdw_local$$);
SELECT kv_try($$SELECT * FROM fdw_text$$);
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER fdw_local TO regress_kvext_fdw_user;
GRANT SELECT, INSERT ON fdw_text TO regress_kvext_fdw_user;
SET ROLE regress_kvext_fdw_user;
-- the table's privileges are not enough: the keyspace's rights are asked too
SELECT kv_try($$SELECT count(*) FROM fdw_text WHERE key = 'user:1'$$);
RESET ROLE;
SELECT kv_grant('fdw_one', 'regress_kvext_fdw_user', 'all');
SET ROLE regress_kvext_fdw_user;
SELECT count(*) FROM fdw_text WHERE key = 'user:1';
INSERT INTO fdw_text VALUES ('role:1', 'by role');
SELECT kv_try($$DELETE FROM fdw_text WHERE key = 'role:1'$$);
CREATE FOREIGN TABLE fdw_mine (key text, value text) SERVER fdw_local
  OPTIONS (keyspace 'fdw_role', create_keyspace 'true');
SELECT * FROM fdw_mine;
SELECT kv_try($$INSERT INTO fdw_mine VALUES ('k', 'v')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION kv_create_keyspace(text, boolean) TO regress_kvext_fdw_user;
SET ROLE regress_kvext_fdw_user;
INSERT INTO fdw_mine VALUES ('k', 'v');
DROP FOREIGN TABLE fdw_mine;
RESET ROLE;
RESET search_path;
SELECT kv_get('k', 'fdw_role');
DROP SCHEMA fdw_role_schema;

--
-- Clean up
--
DROP FOREIGN TABLE fdw_t1, fdw_t2, fdw_remote, fdw_docs, fdw_text, fdw_blob,
  fdw_bkeys, fdw_times, fdw_nums, fdw_upsert, fdw_two;
DROP USER MAPPING FOR CURRENT_USER SERVER fdw_s1;
DROP USER MAPPING FOR regress_kvext_fdw_user SERVER fdw_s1;
DROP SERVER fdw_s1, fdw_local;
REVOKE EXECUTE ON FUNCTION kv_create_keyspace(text, boolean) FROM regress_kvext_fdw_user;
SELECT kv_drop_keyspace(k) FROM unnest(ARRAY['fdw_t2', 'fdw_docs', 'fdw_one',
  'fdw_times', 'fdw_nums', 'fdw_two', 'fdw_role']) AS k;
DROP ROLE regress_kvext_fdw_user;
SELECT keyspace FROM kv_keyspaces() WHERE keyspace LIKE 'fdw\_%';
DROP FUNCTION fdw_rows(text);
