--
-- fdw_remote: kvext_fdw foreign tables of a remote server.  The "remote"
-- node is this instance, reached over its socket (as postgres_fdw's
-- regress test loops back); the TAP test 160_fdw_remote uses three real
-- nodes.  Objects of this file start with "rem_".
--
\set SHOW_CONTEXT never

CREATE SERVER rem_local FOREIGN DATA WRAPPER kvext_fdw;
DO $$
BEGIN
    EXECUTE format('CREATE SERVER rem_loop FOREIGN DATA WRAPPER kvext_fdw
                    OPTIONS (host %L, port %L, dbname %L)',
                   split_part(current_setting('unix_socket_directories'), ',', 1),
                   current_setting('port'), current_database());
END $$;
CREATE USER MAPPING FOR CURRENT_USER SERVER rem_loop;

SELECT kv_create_keyspace('rem_a');
CREATE FOREIGN TABLE rem_a (key text, value text) SERVER rem_loop;
CREATE FOREIGN TABLE rem_a_here (key text, value text) SERVER rem_local
  OPTIONS (keyspace 'rem_a');

-- writes go to the node, in a remote transaction committed with ours
INSERT INTO rem_a VALUES ('k1', 'v1'), ('k2', 'v2'), ('p:1', 'x'), ('p:2', 'y');
SELECT * FROM rem_a_here ORDER BY key;
SELECT kv_get('k1', 'rem_a');

-- reads: full, point, multi-key, prefix, count
SELECT * FROM rem_a ORDER BY key;
SELECT * FROM rem_a WHERE key = 'k2';
SELECT * FROM rem_a WHERE key IN ('k1', 'nope', 'k1', 'p:2') ORDER BY key;
SELECT * FROM rem_a WHERE key LIKE 'p:%' ORDER BY key;
SELECT count(*) FROM rem_a;

-- EXPLAIN names the node and the remote call
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM rem_a WHERE key = 'k2';
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM rem_a;
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO rem_a VALUES ('z', 'z');

-- INSERT of an existing key: 23505, checked on the node; DO NOTHING skips
SELECT kv_try($$INSERT INTO rem_a VALUES ('k1', 'again')$$);
INSERT INTO rem_a VALUES ('k1', 'again'), ('k3', 'v3') ON CONFLICT DO NOTHING;
SELECT kv_get('k1', 'rem_a'), kv_get('k3', 'rem_a');

-- UPDATE, DELETE, RETURNING
UPDATE rem_a SET value = value || '!' WHERE key = 'k1' RETURNING *;
UPDATE rem_a SET key = 'k9' WHERE key = 'k2' RETURNING *;
DELETE FROM rem_a WHERE key LIKE 'p:%' RETURNING *;
SELECT * FROM rem_a_here ORDER BY key;

-- COPY and batch_size
ALTER FOREIGN TABLE rem_a OPTIONS (ADD batch_size '3');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO rem_a SELECT 'b' || i, 'v' || i FROM generate_series(1, 10) i;
INSERT INTO rem_a SELECT 'b' || i, 'v' || i FROM generate_series(1, 10) i;
SELECT count(*) FROM rem_a WHERE key LIKE 'b%';
SELECT kv_try($$INSERT INTO rem_a SELECT 'c' || i, 'v' FROM generate_series(1, 5) i UNION ALL SELECT 'b7', 'dup'$$);
SELECT count(*) FROM rem_a WHERE key LIKE 'c%';
COPY rem_a FROM stdin;
copy1	one
copy2	two
\.
SELECT kv_get('copy2', 'rem_a');
SELECT kv_try($$ALTER FOREIGN TABLE rem_a OPTIONS (SET batch_size '0')$$);

-- remote transactions: ROLLBACK, savepoints
BEGIN;
INSERT INTO rem_a VALUES ('tx1', 'a');
SAVEPOINT s;
INSERT INTO rem_a VALUES ('tx2', 'b');
ROLLBACK TO SAVEPOINT s;
INSERT INTO rem_a VALUES ('tx3', 'c');
SELECT * FROM rem_a WHERE key LIKE 'tx%' ORDER BY key;
COMMIT;
SELECT kv_get('tx1', 'rem_a'), kv_get('tx2', 'rem_a'), kv_get('tx3', 'rem_a');
BEGIN;
INSERT INTO rem_a VALUES ('tx4', 'd');
ROLLBACK;
SELECT kv_get('tx4', 'rem_a');
-- an error inside a subtransaction rolls back to its remote savepoint
BEGIN;
INSERT INTO rem_a VALUES ('tx5', 'e');
SAVEPOINT s;
INSERT INTO rem_a VALUES ('tx1', 'dup');
ROLLBACK TO SAVEPOINT s;
INSERT INTO rem_a VALUES ('tx6', 'f');
COMMIT;
SELECT kv_get('tx5', 'rem_a'), kv_get('tx6', 'rem_a');
BEGIN;
SELECT count(*) FROM rem_a;
PREPARE TRANSACTION 'rem_p';

-- errors of the node come back with their SQLSTATE and name the server
CREATE FOREIGN TABLE rem_missing (key text, value text) SERVER rem_loop;
SELECT kv_try($$SELECT * FROM rem_missing$$);
CREATE FOREIGN TABLE rem_made (key text, value text) SERVER rem_loop
  OPTIONS (create_keyspace 'true');
SELECT count(*) FROM rem_made;
INSERT INTO rem_made VALUES ('a', 'b');
SELECT kv_get('a', 'rem_made');
\set SHOW_CONTEXT errors
SELECT * FROM rem_missing;
\set SHOW_CONTEXT never

-- a node that cannot be reached: 08001 naming the server
CREATE SERVER rem_down FOREIGN DATA WRAPPER kvext_fdw
  OPTIONS (host '127.0.0.1', port '1', connect_timeout '2');
CREATE USER MAPPING FOR CURRENT_USER SERVER rem_down;
CREATE FOREIGN TABLE rem_d (key text, value text) SERVER rem_down;
SELECT kv_try($$SELECT * FROM rem_d$$) ~ '^08001: could not connect to server "rem_down"';

-- changing the server closes its cached connection
ALTER SERVER rem_loop OPTIONS (ADD application_name 'rem_loop_app');
SELECT count(*) FROM rem_a;
SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rem_loop_app';

-- a broken cached connection is replaced at next use
SELECT count(pg_terminate_backend(pid, 60000)) FROM pg_stat_activity
  WHERE application_name = 'rem_loop_app';
SELECT count(*) FROM rem_a;
SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rem_loop_app';

-- password_required: a non-superuser needs a password in the mapping
CREATE ROLE regress_rem_user;
GRANT USAGE ON FOREIGN SERVER rem_loop TO regress_rem_user;
CREATE USER MAPPING FOR regress_rem_user SERVER rem_loop;
GRANT SELECT ON rem_a TO regress_rem_user;
SET ROLE regress_rem_user;
SELECT kv_try($$SELECT count(*) FROM rem_a$$);
RESET ROLE;

-- kv_create_distributed_table: a hash partitioned table over servers
SELECT kv_create_distributed_table('rem_dist', ARRAY['rem_loop', 'rem_local'], partitions => 4);
SELECT c.relname, s.srvname, pg_get_expr(c.relpartbound, c.oid)
  FROM pg_class c JOIN pg_foreign_table f ON f.ftrelid = c.oid
  JOIN pg_foreign_server s ON s.oid = f.ftserver
  WHERE c.relname LIKE 'rem_dist_%' ORDER BY 1;
INSERT INTO rem_dist SELECT 'key' || i, 'v' || i FROM generate_series(1, 100) i;
SELECT count(*) FROM rem_dist;
SELECT * FROM rem_dist WHERE key = 'key42';
SELECT sum(kv_count('rem_dist_' || i)) FROM generate_series(0, 3) i;
UPDATE rem_dist SET key = 'moved' WHERE key = 'key42';
SELECT tableoid::regclass IS NOT NULL AS found, value FROM rem_dist WHERE key = 'moved';
SELECT count(*) FROM rem_dist;
SELECT kv_try($$SELECT kv_create_distributed_table('rem_x', ARRAY[]::text[])$$);

-- a COMMIT inside a procedure runs under the CALL's statement timer as it
-- was armed when the CALL began (here: not at all): a statement_timeout
-- the procedure sets meanwhile does not cut the remote COMMIT short
CREATE PROCEDURE rem_proc() LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rem_a VALUES ('proc:1', 'x');
    PERFORM pg_sleep(0.3);
    PERFORM set_config('statement_timeout', '100ms', false);
    COMMIT;
    PERFORM set_config('statement_timeout', '0', false);
END $$;
CALL rem_proc();
SELECT kv_get('proc:1', 'rem_a');
DROP PROCEDURE rem_proc();
-- ... nor one it sets before its final transaction commits with the CALL
CREATE PROCEDURE rem_proc2() LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rem_a VALUES ('proc:2', 'x');
    PERFORM pg_sleep(0.3);
    PERFORM set_config('statement_timeout', '100ms', false);
END $$;
CALL rem_proc2();
RESET statement_timeout;
SELECT kv_get('proc:2', 'rem_a');
DROP PROCEDURE rem_proc2();
-- in a query string of several statements each has its own timer: the
-- COMMIT's starts with the COMMIT
BEGIN \; INSERT INTO rem_a VALUES ('multi:1', 'x') \; SELECT pg_sleep(0.3) \; SET statement_timeout = '200ms' \; COMMIT;
RESET statement_timeout;
SELECT kv_get('multi:1', 'rem_a');

-- clean up
DROP TABLE rem_dist;
DROP FOREIGN TABLE rem_a, rem_a_here, rem_missing, rem_made, rem_d;
DROP USER MAPPING FOR regress_rem_user SERVER rem_loop;
DROP OWNED BY regress_rem_user;
DROP ROLE regress_rem_user;
DROP SERVER rem_loop, rem_local, rem_down CASCADE;
SELECT kv_drop_keyspace(k) FROM unnest(ARRAY['rem_a', 'rem_made', 'rem_dist_0',
  'rem_dist_1', 'rem_dist_2', 'rem_dist_3']) AS k;
