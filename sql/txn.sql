--
-- txn: kv writes follow the transaction.  Keys of this file start with
-- "txn:"; none is left at the end.
--
\set SHOW_CONTEXT never

SELECT kv_count() AS base \gset
SELECT kv_put('txn:a', 'a0'), kv_put('txn:b', 'b0');

-- own writes are visible to own reads before commit
BEGIN;
SELECT kv_put('txn:a', 'a1');
SELECT kv_put('txn:c', 'c1');
SELECT kv_delete('txn:b');
SELECT kv_get('txn:a'), kv_get('txn:b'), kv_get('txn:c');
SELECT kv_exists('txn:a'), kv_exists('txn:b'), kv_exists('txn:c');
SELECT kv_mget(ARRAY['txn:a', 'txn:b', 'txn:c']);
SELECT kv_get_bytea('txn:c');
SELECT * FROM kv_scan('txn:') ORDER BY key;
-- kv_count: committed count plus own inserts minus own deletes
SELECT kv_count() - :base AS count;
-- rollback discards every write
ROLLBACK;
SELECT kv_get('txn:a'), kv_get('txn:b'), kv_get('txn:c');
SELECT * FROM kv_scan('txn:') ORDER BY key;
SELECT kv_count() - :base AS count;

-- commit applies them all
BEGIN;
SELECT kv_put('txn:a', 'a1');
SELECT kv_put('txn:c', 'c1');
SELECT kv_delete('txn:b');
SELECT kv_mput(ARRAY['txn:d', 'txn:e'], ARRAY['d1', 'e1']);
SELECT kv_incr('txn:n', 5);
SELECT kv_cas('txn:c', 'c1', 'c2');
COMMIT;
SELECT * FROM kv_scan('txn:') ORDER BY key;
SELECT kv_count() - :base AS count;

-- kv_count and kv_scan follow own inserts and deletes step by step
BEGIN;
SELECT kv_count() - :base AS count;                     -- 5
SELECT kv_put('txn:f', 'f1');                            -- insert
SELECT kv_count() - :base AS count;                     -- 6
SELECT kv_put('txn:f', 'f2');                            -- rewrite own insert
SELECT kv_count() - :base AS count;                     -- 6
SELECT kv_put('txn:a', 'a2');                            -- overwrite committed
SELECT kv_count() - :base AS count;                     -- 6
SELECT kv_delete('txn:d');                               -- delete committed
SELECT kv_count() - :base AS count;                     -- 5
SELECT kv_delete('txn:d');                               -- already gone
SELECT kv_count() - :base AS count;                     -- 5
SELECT kv_delete('txn:f');                               -- delete own insert
SELECT kv_count() - :base AS count;                     -- 4
SELECT kv_put('txn:d', 'd2');                            -- re-insert deleted
SELECT kv_count() - :base AS count;                     -- 5
SELECT kv_cas('txn:g', NULL, 'g1');                      -- insert by cas
SELECT kv_cas('txn:e', 'e1', NULL);                      -- delete by cas
SELECT kv_count() - :base AS count;                     -- 5
SELECT kv_incr('txn:h');                                 -- insert by incr
SELECT kv_count() - :base AS count;                     -- 6
SELECT * FROM kv_scan('txn:') ORDER BY key;
SELECT count(*) = kv_count() AS scan_agrees_with_count FROM kv_scan();
ROLLBACK;
SELECT * FROM kv_scan('txn:') ORDER BY key;
SELECT kv_count() - :base AS count;

-- put, delete, put again of one key in one transaction
BEGIN;
SELECT kv_put('txn:p', 'one');
SELECT kv_delete('txn:p');
SELECT kv_get('txn:p') IS NULL AS deleted, kv_exists('txn:p') AS exists;
SELECT count(*) FROM kv_scan('txn:p');
SELECT kv_put('txn:p', 'two');
SELECT kv_get('txn:p');
SELECT * FROM kv_scan('txn:p');
COMMIT;
SELECT kv_get('txn:p');
-- the same on a committed key: delete then put then delete
BEGIN;
SELECT kv_delete('txn:p');
SELECT kv_put('txn:p', 'three');
SELECT kv_delete('txn:p');
SELECT kv_delete('txn:p') AS deleted_twice;
SELECT kv_count() - :base AS count;
COMMIT;
SELECT kv_exists('txn:p');
SELECT kv_count() - :base AS count;

-- kv_incr repeatedly in one transaction works on its own last value
BEGIN;
SELECT kv_incr('txn:n');
SELECT kv_incr('txn:n');
SELECT kv_incr('txn:n', 10);
SELECT sum(kv_incr('txn:n')) FROM generate_series(1, 100);
SELECT kv_get('txn:n');
ROLLBACK;
SELECT kv_get('txn:n');
BEGIN;
SELECT count(kv_incr('txn:n', -1)) FROM generate_series(1, 1000);
COMMIT;
SELECT kv_get('txn:n');

-- kv writes and table writes commit and roll back together
CREATE TABLE txn_t (k text PRIMARY KEY, v text);
BEGIN;
INSERT INTO txn_t VALUES ('x', '1');
SELECT kv_put('txn:x', '1');
ROLLBACK;
SELECT (SELECT count(*) FROM txn_t) AS table_rows, kv_exists('txn:x') AS kv_exists;
BEGIN;
INSERT INTO txn_t VALUES ('x', '1');
SELECT kv_put('txn:x', '1');
COMMIT;
SELECT (SELECT count(*) FROM txn_t) AS table_rows, kv_get('txn:x') AS kv_value;
-- a constraint violation at commit time (deferred) aborts the kv writes too
CREATE TABLE txn_u (k text UNIQUE DEFERRABLE INITIALLY DEFERRED);
INSERT INTO txn_u VALUES ('dup');
BEGIN;
SELECT kv_put('txn:x', 'deferred');
INSERT INTO txn_u VALUES ('dup');
SELECT kv_get('txn:x');
COMMIT;
SELECT kv_get('txn:x');
DROP TABLE txn_t, txn_u;

-- a statement that fails inside a transaction aborts it: nothing is kept,
-- neither the writes before it nor the failing statement's own writes
BEGIN;
SELECT kv_put('txn:a', 'lost');
SELECT kv_put('txn:new', 'lost');
SELECT kv_put('txn:r' || i, CASE WHEN i < 3 THEN 'v' ELSE NULL END) FROM generate_series(1, 5) AS i;
SELECT kv_get('txn:a');
ROLLBACK;
SELECT kv_get('txn:a'), kv_exists('txn:new'), kv_exists('txn:r1');
-- ... also when the client sends COMMIT after the error
BEGIN;
SELECT kv_put('txn:a', 'lost');
SELECT 1 / 0;
COMMIT;
SELECT kv_get('txn:a');
-- ... and for a failing statement outside a transaction block
SELECT kv_put('txn:r' || i, CASE WHEN i < 3 THEN 'v' ELSE NULL END) FROM generate_series(1, 5) AS i;
SELECT kv_exists('txn:r1'), kv_exists('txn:r2');

-- PREPARE TRANSACTION is refused when the transaction wrote kv keys
-- (0A000), and the transaction's writes are discarded
BEGIN;
SELECT kv_put('txn:a', 'prepared');
SELECT kv_put('txn:prep', 'prepared');
PREPARE TRANSACTION 'kv_txn_1';
SELECT kv_get('txn:a'), kv_exists('txn:prep');
SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'kv_txn_1';
-- the same for a write made by a PL/pgSQL block
BEGIN;
DO $$ BEGIN PERFORM kv_incr('txn:n'); END $$;
PREPARE TRANSACTION 'kv_txn_2';
SELECT kv_get('txn:n');
SELECT count(*) FROM pg_prepared_xacts;
-- a transaction without kv writes (reads only) can still be prepared
BEGIN;
SELECT kv_get('txn:a'), kv_count() - :base AS count;
CREATE TABLE txn_prep (i int);
PREPARE TRANSACTION 'kv_txn_3';
SELECT gid FROM pg_prepared_xacts ORDER BY gid;
ROLLBACK PREPARED 'kv_txn_3';
SELECT count(*) FROM pg_prepared_xacts;
SELECT to_regclass('txn_prep') IS NULL AS rolled_back;
-- and committed
BEGIN;
SELECT kv_exists('txn:a');
CREATE TABLE txn_prep (i int);
PREPARE TRANSACTION 'kv_txn_4';
COMMIT PREPARED 'kv_txn_4';
SELECT to_regclass('txn_prep') IS NOT NULL AS committed;
DROP TABLE txn_prep;
-- writes are possible again right after a refused PREPARE
SELECT kv_put('txn:after-prepare', 'ok');
SELECT kv_get('txn:after-prepare');

-- transaction control in procedures: each COMMIT / ROLLBACK ends the
-- kv writes of that transaction
CREATE PROCEDURE txn_proc() LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kv_put('txn:proc1', 'committed');
    COMMIT;
    PERFORM kv_put('txn:proc2', 'rolled back');
    PERFORM kv_put('txn:proc1', 'rolled back');
    ROLLBACK;
    PERFORM kv_put('txn:proc3', 'committed');
END $$;
CALL txn_proc();
SELECT * FROM kv_scan('txn:proc') ORDER BY key;
DROP PROCEDURE txn_proc();

-- COMMIT AND CHAIN / ROLLBACK AND CHAIN end the writes of the first
-- transaction only
BEGIN;
SELECT kv_put('txn:chain1', 'kept');
COMMIT AND CHAIN;
SELECT kv_put('txn:chain2', 'lost');
ROLLBACK AND CHAIN;
SELECT kv_exists('txn:chain1'), kv_exists('txn:chain2');
COMMIT;

-- own uncommitted writes are visible the same way when the reading
-- function runs in a parallel worker (the kv read functions are PARALLEL
-- SAFE)
BEGIN;
SELECT kv_put('txn:par1', 'own'), kv_put('txn:par2', 'own'), kv_delete('txn:a');
SELECT kv_count() - :base AS count, kv_get('txn:par1'), kv_exists('txn:a');
SELECT * FROM kv_scan('txn:par') ORDER BY key;
SET LOCAL force_parallel_mode = on;
SET LOCAL parallel_leader_participation = off;
SELECT kv_count() - :base AS count, kv_get('txn:par1'), kv_exists('txn:a');
SELECT * FROM kv_scan('txn:par') ORDER BY key;
SELECT count(*) = kv_count() AS scan_agrees_with_count FROM kv_scan();
ROLLBACK;

-- one transaction writing many keys: no lock-manager lock per key (the
-- lock table would hold only a few thousand)
BEGIN;
SELECT count(kv_put('txn:many:' || i, i::text)) FROM generate_series(1, 100000) AS i;
SELECT count(*) < 20 AS few_locks FROM pg_locks WHERE pid = pg_backend_pid();
SELECT kv_count() - :base AS count;
COMMIT;
SELECT kv_get('txn:many:1'), kv_get('txn:many:100000');
BEGIN;
SELECT count(*) FROM kv_scan('txn:many:') WHERE kv_delete(key);
SELECT count(*) FROM kv_scan('txn:many:');
COMMIT;
SELECT count(*) FROM kv_scan('txn:many:');

-- clean up
SELECT count(*) > 0 AS deleted_some FROM kv_scan('txn:') WHERE kv_delete(key);
SELECT count(*) AS left_over FROM kv_scan('txn:');
SELECT kv_count() - :base AS count;

-- kvext.max_transaction_size: the bytes of keys and values a transaction's
-- log record would hold; a rewrite of a key at the same level counts once,
-- a rolled-back savepoint gives its bytes back, a delete of its own write
-- leaves only the key; the error is 54000, and nothing of the failed
-- transaction is stored
SET kvext.max_transaction_size = '1MB';
BEGIN;
SELECT 'ok' AS put FROM kv_put('mts:a', repeat('a', 600000));
SELECT 'ok' AS rewrite_counts_once FROM kv_put('mts:a', repeat('b', 600000));
SAVEPOINT s;
SELECT 'ok' AS put FROM kv_put('mts:b', repeat('c', 300000));
ROLLBACK TO s;
SELECT 'ok' AS savepoint_gave_bytes_back FROM kv_put('mts:c', repeat('d', 400000));
SELECT kv_put('mts:d', repeat('e', 100000));
ROLLBACK;
SELECT kv_get('mts:a') IS NULL AS a_not_stored, kv_get('mts:c') IS NULL AS c_not_stored;
BEGIN;
SELECT 'ok' AS put FROM kv_put('mts:a', repeat('a', 600000));
SAVEPOINT s;
SELECT kv_put('mts:d', repeat('e', 500000));
ROLLBACK TO s;
RELEASE s;
SELECT kv_delete('mts:a') AS deleted_own_write;
SELECT 'ok' AS delete_left_only_the_key FROM kv_put('mts:e', repeat('f', 1000000));
COMMIT;
SELECT kv_get('mts:a') IS NULL AS a_gone, length(kv_get('mts:e')) AS e_len,
       kv_get('mts:d') IS NULL AS d_never;
SELECT kv_delete('mts:e');
-- only a superuser sets it
CREATE ROLE kv_mts_user;
SET ROLE kv_mts_user;
SET kvext.max_transaction_size = '4GB';
RESET ROLE;
DROP ROLE kv_mts_user;
RESET kvext.max_transaction_size;
