--
-- full: fill the store (kvext.memory_limit = 64MB in the test
-- configuration) until a write fails with 53200, in a keyspace of its
-- own.  Only booleans and SQLSTATEs are printed: how many values fit
-- depends on overheads that may change.
--
\set SHOW_CONTEXT never
\set VERBOSITY terse

-- (before the keyspace exists: its owner is a key of kvext's keyspace of rights)
SELECT memory_used AS mem0 FROM kv_stats() WHERE keyspace IS NULL \gset
SELECT kv_create_keyspace('full_ks');
CREATE TABLE full_result (n int, sqlstate text, deleted int);

-- 1MB values, one transaction per value (procedure-style COMMIT in a DO
-- block), until one does not fit
DO $$
DECLARE
    v text := repeat('x', 1048576);
    n int := 0;
    st text;
BEGIN
    LOOP
        BEGIN
            PERFORM kv_put('full:' || n, v, 'full_ks');
        EXCEPTION WHEN others THEN
            st := SQLSTATE;
        END;
        EXIT WHEN st IS NOT NULL OR n > 1000;
        n := n + 1;
    END LOOP;
    INSERT INTO full_result VALUES (n, st);
    RAISE NOTICE 'the store filled up: %, SQLSTATE %', n BETWEEN 10 AND 64, st;
END $$;

-- every value written before the failure is intact, and the failed one
-- was not written
SELECT kv_count('full_ks') = n AS all_earlier_writes_kept,
       kv_exists('full:' || n, 'full_ks') AS failed_key_exists
  FROM full_result;
SELECT count(*) = (SELECT n FROM full_result) AS count_ok,
       bool_and(value = repeat('x', 1048576)) AS values_intact
  FROM kv_scan('full:', 'full_ks');
SELECT memory_used <= memory_limit AS within_limit,
       memory_used > memory_limit * 0.9 AS nearly_full
  FROM kv_stats() WHERE keyspace IS NULL;

-- another 1MB write fails the same way, as a plain statement: SQLSTATE
-- 53200, and nothing changes
SELECT kv_put('full:more', repeat('y', 1048576), 'full_ks');
\echo :SQLSTATE
SELECT kv_incr('full:0', 1, 'full_ks');  -- 22P02 first: the value is not a number
-- overwriting a 1MB value with another needs room for both versions until
-- commit, so it fails too, and the old value stays
SELECT kv_put('full:0', repeat('z', 1048576), 'full_ks');
\echo :SQLSTATE
SELECT kv_get('full:0', 'full_ks') = repeat('x', 1048576) AS old_value_intact;
-- in a transaction: the failed write aborts it, earlier writes included
BEGIN;
SELECT kv_delete('full:1', 'full_ks');
SELECT kv_put('full:more', repeat('y', 1048576), 'full_ks');
COMMIT;
SELECT kv_exists('full:1', 'full_ks') AS delete_undone;
-- kv_mput: all or nothing
SELECT kv_mput(ARRAY['full:m1', 'full:m2'], ARRAY['small', repeat('y', 1048576)], 'full_ks');
SELECT kv_exists('full:m1', 'full_ks') AS m1_written;
SELECT kv_count('full_ks') = n AS count_unchanged FROM full_result;

-- deleting works on a full store (a delete needs a small tombstone until
-- commit): every key at once, in one transaction, here rolled back
BEGIN;
SELECT count(*) = (SELECT n FROM full_result) AS all_deleted
  FROM kv_scan('full:', 'full_ks') WHERE kv_delete(key, 'full_ks');
SELECT kv_count('full_ks');
ROLLBACK;
SELECT kv_count('full_ks') = n AS count_unchanged FROM full_result;

-- the other keyspaces still work for writes that fit
SELECT kv_put('full:small', 'fits');
SELECT kv_get('full:small');
SELECT kv_delete('full:small');

-- after a delete is committed, its memory can be used again: the same key
-- with a value of the same size fits again
SELECT kv_delete('full:0', 'full_ks');
SELECT kv_put('full:0', repeat('a', 1048576), 'full_ks');
\echo :SQLSTATE
SELECT kv_get('full:0', 'full_ks') = repeat('a', 1048576) AS rewritten;
-- ... but a second 1MB value does not fit
SELECT kv_put('full:again', repeat('a', 1048576), 'full_ks');

-- a delete inside the writing transaction frees nothing before commit
-- (the old version must survive a rollback), so this does not fit either
BEGIN;
SELECT kv_delete('full:1', 'full_ks');
SELECT kv_put('full:again', repeat('a', 1048576), 'full_ks');
ROLLBACK;
SELECT kv_exists('full:1', 'full_ks');

-- free every other value (about half of the store, in 1MB holes that
-- cannot merge): as many new values of the same size fit again (keys of
-- at most 8 bytes, like the deleted ones, so the entries are the same size)
UPDATE full_result SET deleted =
    (SELECT count(*) FROM generate_series(1, n - 1, 2) AS i
      WHERE kv_delete('full:' || i, 'full_ks'));
DO $$
DECLARE
    v text := repeat('c', 1048576);
    ndeleted int := (SELECT deleted FROM full_result);
    fitted int := 0;
BEGIN
    FOR i IN 1..1000 LOOP
        BEGIN
            PERFORM kv_put('full:n' || i, v, 'full_ks');
            fitted := fitted + 1;
        EXCEPTION WHEN others THEN
            RAISE NOTICE 'new 1MB values: % fitted, then SQLSTATE %',
                CASE WHEN fitted = ndeleted THEN 'as many as were deleted'
                     WHEN fitted = 0 THEN 'none'
                     ELSE fitted || ' (of ' || ndeleted || ' deleted)' END,
                SQLSTATE;
            EXIT;
        END;
    END LOOP;
END $$;

-- dropping the keyspace gives all its memory back
SELECT kv_drop_keyspace('full_ks');
SELECT memory_used = :mem0 AS memory_back_to_start
  FROM kv_stats() WHERE keyspace IS NULL;
-- and big writes work again
SELECT kv_create_keyspace('full_ks');
SELECT count(kv_put('full:' || i, repeat('b', 1048576), 'full_ks')) FROM generate_series(1, 10) AS i;
SELECT kv_count('full_ks');
SELECT kv_drop_keyspace('full_ks');
SELECT memory_used = :mem0 AS memory_back_to_start
  FROM kv_stats() WHERE keyspace IS NULL;

DROP TABLE full_result;
