--
-- savepoint: subtransactions.  ROLLBACK TO undoes the kv writes made
-- after the savepoint and keeps the ones before; RELEASE merges them into
-- the enclosing level.  Keys of this file start with "sp:".
--
\set SHOW_CONTEXT never

SELECT kv_count() AS base \gset
SELECT kv_put('sp:a', 'a0'), kv_put('sp:b', 'b0');
CREATE TEMP VIEW sp_state AS
SELECT kv_count() - :base AS count,
       (SELECT string_agg(key || '=' || value, ', ' ORDER BY key)
          FROM kv_scan('sp:')) AS keys;
SELECT * FROM sp_state;

-- ROLLBACK TO undoes what came after the savepoint only
BEGIN;
SELECT kv_put('sp:a', 'a1');
SELECT kv_put('sp:c', 'c1');
SAVEPOINT s1;
SELECT kv_put('sp:a', 'a2');
SELECT kv_put('sp:d', 'd2');
SELECT kv_delete('sp:b');
SELECT * FROM sp_state;
ROLLBACK TO s1;
SELECT * FROM sp_state;
-- the savepoint still exists after ROLLBACK TO: use it again
SELECT kv_put('sp:a', 'a3');
SELECT kv_delete('sp:c');
SELECT * FROM sp_state;
ROLLBACK TO SAVEPOINT s1;
SELECT * FROM sp_state;
COMMIT;
SELECT * FROM sp_state;

-- nested savepoints, rolled back one level at a time
BEGIN;
SELECT kv_put('sp:n', 'L1');
SAVEPOINT s2;
SELECT kv_put('sp:n', 'L2');
SELECT kv_put('sp:n2', 'L2');
SAVEPOINT s3;
SELECT kv_put('sp:n', 'L3');
SELECT kv_put('sp:n3', 'L3');
SAVEPOINT s4;
SELECT kv_put('sp:n', 'L4');
SELECT kv_delete('sp:n2');
SELECT kv_get('sp:n'), kv_exists('sp:n2'), kv_exists('sp:n3');
ROLLBACK TO s4;
SELECT kv_get('sp:n'), kv_exists('sp:n2'), kv_exists('sp:n3');
ROLLBACK TO s3;
SELECT kv_get('sp:n'), kv_exists('sp:n2'), kv_exists('sp:n3');
ROLLBACK TO s2;
SELECT kv_get('sp:n'), kv_exists('sp:n2'), kv_exists('sp:n3');
SELECT * FROM kv_scan('sp:n') ORDER BY key;
COMMIT;
SELECT * FROM sp_state;

-- skipping levels: ROLLBACK TO an outer savepoint undoes the inner ones too
BEGIN;
SAVEPOINT s1;
SELECT kv_put('sp:n', 'x1');
SAVEPOINT s2;
SELECT kv_put('sp:n', 'x2');
SAVEPOINT s3;
SELECT kv_put('sp:n', 'x3');
SELECT kv_put('sp:x', 'x3');
ROLLBACK TO s1;
SELECT kv_get('sp:n'), kv_exists('sp:x');
COMMIT;
SELECT * FROM sp_state;

-- RELEASE keeps the writes in the enclosing level, and a later ROLLBACK TO
-- an outer savepoint undoes them
BEGIN;
SELECT kv_put('sp:r', 'r1');
SAVEPOINT outer_sp;
SELECT kv_put('sp:r', 'r2');
SAVEPOINT inner_sp;
SELECT kv_put('sp:r', 'r3');
SELECT kv_put('sp:r3', 'only in inner');
RELEASE inner_sp;
SELECT kv_get('sp:r'), kv_get('sp:r3');
-- writing the same key again after the release, at the outer level
SELECT kv_put('sp:r', 'r4');
SELECT kv_get('sp:r');
SELECT * FROM kv_scan('sp:r') ORDER BY key;
ROLLBACK TO outer_sp;
SELECT kv_get('sp:r'), kv_exists('sp:r3');
SELECT * FROM kv_scan('sp:r') ORDER BY key;
COMMIT;
SELECT kv_get('sp:r'), kv_exists('sp:r3');

-- RELEASE, then COMMIT: the released writes are committed, the newest
-- version of each key wins
BEGIN;
SELECT kv_put('sp:r', 'v1');
SAVEPOINT s1;
SELECT kv_put('sp:r', 'v2');
SAVEPOINT s2;
SELECT kv_put('sp:r', 'v3');
SELECT kv_put('sp:r5', 'v3');
RELEASE s2;
RELEASE s1;
SELECT kv_put('sp:r', 'v4');
SAVEPOINT s3;
SELECT kv_put('sp:r', 'v5');
RELEASE s3;
SELECT kv_get('sp:r');
COMMIT;
SELECT kv_get('sp:r'), kv_get('sp:r5');
SELECT * FROM sp_state;

-- the same key rewritten at several levels, then a partial rollback
-- restores the value of the level rolled back to
BEGIN;
SELECT kv_put('sp:m', 'level1');
SAVEPOINT s2;
SELECT kv_put('sp:m', 'level2-first');
SELECT kv_put('sp:m', 'level2-second');
SAVEPOINT s3;
SELECT kv_delete('sp:m');
SELECT kv_put('sp:m', 'level3');
SAVEPOINT s4;
SELECT kv_delete('sp:m');
SELECT kv_get('sp:m') IS NULL AS deleted_at_level4;
ROLLBACK TO s4;
SELECT kv_get('sp:m');
ROLLBACK TO s3;
SELECT kv_get('sp:m');
SAVEPOINT s3b;
SELECT kv_put('sp:m', 'level3b');
RELEASE s3b;
SELECT kv_get('sp:m');
ROLLBACK TO s2;
SELECT kv_get('sp:m');
COMMIT;
SELECT kv_get('sp:m');

-- kv_incr across levels
BEGIN;
SELECT kv_incr('sp:i');
SAVEPOINT s1;
SELECT kv_incr('sp:i', 10);
SAVEPOINT s2;
SELECT kv_incr('sp:i', 100);
ROLLBACK TO s2;
SELECT kv_incr('sp:i', 1000);
RELEASE s2;
ROLLBACK TO s1;
SELECT kv_incr('sp:i', 10000);
COMMIT;
SELECT kv_get('sp:i');

-- kv_delete inside a rolled back savepoint: the key is back
BEGIN;
SAVEPOINT s1;
SELECT kv_delete('sp:a') AS existed;
SELECT kv_delete('sp:b') AS existed;
SELECT kv_exists('sp:a'), kv_exists('sp:b');
SELECT kv_count() - :base AS count;
ROLLBACK TO s1;
SELECT kv_get('sp:a'), kv_get('sp:b');
SELECT kv_count() - :base AS count;
-- and deleting it again works and reports that it existed
SELECT kv_delete('sp:a') AS existed;
ROLLBACK;
SELECT * FROM sp_state;

-- a key created in a savepoint and deleted in a nested one
BEGIN;
SAVEPOINT s1;
SELECT kv_put('sp:t', 'temp');
SAVEPOINT s2;
SELECT kv_delete('sp:t');
SELECT kv_count() - :base AS count;
ROLLBACK TO s2;
SELECT kv_get('sp:t');
SELECT kv_count() - :base AS count;
ROLLBACK TO s1;
SELECT kv_exists('sp:t');
SELECT kv_count() - :base AS count;
COMMIT;
SELECT * FROM sp_state;

-- kv_count after ROLLBACK TO, with inserts, overwrites and deletes
BEGIN;
SELECT kv_count() - :base AS count;
SAVEPOINT s1;
SELECT kv_mput(ARRAY['sp:c1', 'sp:c2', 'sp:c3'], ARRAY['1', '2', '3']);
SELECT kv_put('sp:a', 'overwritten');
SELECT kv_delete('sp:b');
SELECT kv_count() - :base AS count;
SAVEPOINT s2;
SELECT kv_delete('sp:c1');
SELECT kv_put('sp:c4', '4');
SELECT kv_count() - :base AS count;
ROLLBACK TO s2;
SELECT kv_count() - :base AS count;
SELECT count(*) = kv_count() AS scan_agrees_with_count FROM kv_scan();
ROLLBACK TO s1;
SELECT kv_count() - :base AS count;
SELECT count(*) = kv_count() AS scan_agrees_with_count FROM kv_scan();
COMMIT;
SELECT * FROM sp_state;

-- a failed statement inside a savepoint: ROLLBACK TO recovers the
-- transaction, and keeps the writes before the savepoint
BEGIN;
SELECT kv_put('sp:e', 'before');
SAVEPOINT s1;
SELECT kv_put('sp:e', 'inside');
SELECT kv_incr('sp:e');
ROLLBACK TO s1;
SELECT kv_get('sp:e');
SELECT kv_incr('sp:i');
COMMIT;
SELECT kv_get('sp:e'), kv_get('sp:i');

-- PL/pgSQL exception blocks are subtransactions: the block's kv writes
-- are rolled back when it raises, the ones before it stay
DO $$
BEGIN
    PERFORM kv_put('sp:plpgsql', 'before block');
    BEGIN
        PERFORM kv_put('sp:plpgsql', 'in block');
        PERFORM kv_put('sp:plpgsql2', 'in block');
        PERFORM kv_delete('sp:a');
        RAISE EXCEPTION 'undo the block';
    EXCEPTION WHEN raise_exception THEN
        RAISE NOTICE 'caught: %; sp:plpgsql = %, sp:plpgsql2 exists: %, sp:a = %',
            SQLERRM, kv_get('sp:plpgsql'), kv_exists('sp:plpgsql2'), kv_get('sp:a');
    END;
END $$;
SELECT kv_get('sp:plpgsql'), kv_exists('sp:plpgsql2'), kv_get('sp:a');
-- an error raised by kvext itself, caught by the block
DO $$
BEGIN
    PERFORM kv_put('sp:plpgsql', 'not a number');
    BEGIN
        PERFORM kv_put('sp:plpgsql2', 'in block');
        PERFORM kv_incr('sp:plpgsql');
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE NOTICE 'caught % (%)', SQLSTATE, SQLERRM;
    END;
END $$;
SELECT kv_get('sp:plpgsql'), kv_exists('sp:plpgsql2');
-- nested blocks: the inner one succeeds, the outer one fails: both undone
DO $$
BEGIN
    BEGIN
        PERFORM kv_put('sp:outer', 'x');
        BEGIN
            PERFORM kv_put('sp:inner', 'x');
        EXCEPTION WHEN others THEN
            RAISE NOTICE 'not reached';
        END;
        RAISE EXCEPTION 'fail outer';
    EXCEPTION WHEN others THEN
        RAISE NOTICE 'outer rolled back: sp:outer exists %, sp:inner exists %',
            kv_exists('sp:outer'), kv_exists('sp:inner');
    END;
END $$;
SELECT kv_exists('sp:outer'), kv_exists('sp:inner');
-- a loop where every other iteration fails: only the others count
DO $$
BEGIN
    FOR i IN 1..10 LOOP
        BEGIN
            PERFORM kv_incr('sp:loop');
            PERFORM kv_put('sp:loop:' || i, 'iteration');
            IF i % 2 = 0 THEN
                RAISE EXCEPTION 'even';
            END IF;
        EXCEPTION WHEN raise_exception THEN
            NULL;
        END;
    END LOOP;
END $$;
SELECT kv_get('sp:loop');
SELECT key FROM kv_scan('sp:loop:') ORDER BY key;
-- a function with an exception block called once per row
CREATE FUNCTION sp_try_put(k text, v text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kv_put(k, v);
    IF v IS DISTINCT FROM 'ok' THEN
        RAISE EXCEPTION 'rejected';
    END IF;
    RETURN true;
EXCEPTION WHEN raise_exception THEN
    RETURN false;
END $$;
SELECT i, sp_try_put('sp:f' || i, CASE WHEN i % 3 = 0 THEN 'ok' ELSE 'bad' END)
  FROM generate_series(1, 6) AS i ORDER BY i;
SELECT * FROM kv_scan('sp:f') ORDER BY key;
DROP FUNCTION sp_try_put(text, text);

-- many savepoints, one write each, then unwinding half of them
BEGIN;
SELECT kv_put('sp:deep', '0');
SAVEPOINT d1; SELECT kv_put('sp:deep', '1');
SAVEPOINT d2; SELECT kv_put('sp:deep', '2');
SAVEPOINT d3; SELECT kv_put('sp:deep', '3');
SAVEPOINT d4; SELECT kv_put('sp:deep', '4');
SAVEPOINT d5; SELECT kv_put('sp:deep', '5');
SAVEPOINT d6; SELECT kv_put('sp:deep', '6');
ROLLBACK TO d4;
SELECT kv_get('sp:deep');
RELEASE d2;
SELECT kv_get('sp:deep');
ROLLBACK TO d1;
SELECT kv_get('sp:deep');
COMMIT;
SELECT kv_get('sp:deep');

-- a key rewritten in many subtransactions that all committed into the same
-- parent level: once released, an older version of that level can never be
-- seen again, so the store needs to keep only the newest.  8000 writes of
-- 10kB (80MB, more than the test's kvext.memory_limit of 64MB) in
-- exception blocks must fit, as they do without the exception blocks.
SELECT memory_used AS mem0 FROM kv_stats() WHERE keyspace IS NULL \gset
DO $$
DECLARE
    v text := repeat('v', 10000);
BEGIN
    FOR i IN 1..8000 LOOP
        BEGIN
            PERFORM kv_put('sp:sub', v || i);
        EXCEPTION WHEN division_by_zero THEN
            NULL;
        END;
    END LOOP;
END $$;
SELECT kv_get('sp:sub') = repeat('v', 10000) || '8000' AS last_value;
SELECT kv_delete('sp:sub');
-- the same with SAVEPOINT and RELEASE: five 15MB versions do not fit in
-- 64MB, but no more than two are needed at any time
SET kvext.max_value_size = 15000000;
BEGIN;
SELECT kv_put('sp:sub', 'level 1');
SAVEPOINT a;
SELECT kv_put('sp:sub', repeat('a', 15000000));
RELEASE a;
SAVEPOINT b;
SELECT kv_put('sp:sub', repeat('b', 15000000));
RELEASE b;
SAVEPOINT c;
SELECT kv_put('sp:sub', repeat('c', 15000000));
RELEASE c;
SAVEPOINT d;
SELECT kv_put('sp:sub', repeat('d', 15000000));
RELEASE d;
SAVEPOINT e;
SELECT kv_put('sp:sub', repeat('e', 15000000));
RELEASE e;
SELECT length(kv_get('sp:sub')), kv_get('sp:sub') = repeat('e', 15000000) AS last_value;
COMMIT;
SELECT length(kv_get('sp:sub')), kv_get('sp:sub') = repeat('e', 15000000) AS last_value;
SELECT kv_delete('sp:sub');
RESET kvext.max_value_size;
SELECT memory_used = :mem0 AS memory_back_to_start FROM kv_stats() WHERE keyspace IS NULL;

-- kv_count() follows released and rolled-back subtransactions exactly
SELECT kv_count() AS count0 \gset
BEGIN;
SELECT kv_put('sp:cnt', '1');
SAVEPOINT a;
SELECT kv_put('sp:cnt', '2');
RELEASE a;
SELECT kv_count() - :count0 AS one_more;
DO $$ BEGIN FOR i IN 1..100 LOOP
  BEGIN PERFORM kv_put('sp:cnt_loop', i::text);
  EXCEPTION WHEN others THEN NULL; END;
END LOOP; END $$;
SELECT kv_count() - :count0 AS two_more, (SELECT count(*) FROM kv_scan('sp:cnt')) AS scanned;
SAVEPOINT b;
SELECT kv_delete('sp:cnt');
SELECT kv_count() - :count0 AS one_more_after_delete;
ROLLBACK TO b;
SELECT kv_count() - :count0 AS two_more_again;
COMMIT;
SELECT kv_count() - :count0 AS two_more_committed, kv_get('sp:cnt'), kv_get('sp:cnt_loop');

-- clean up
SELECT count(*) > 0 AS deleted_some FROM kv_scan('sp:') WHERE kv_delete(key);
SELECT * FROM sp_state;
DROP VIEW sp_state;
