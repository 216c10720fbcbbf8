--
-- stats: kv_stats().  Counters are cumulative and shared by all sessions,
-- so the test compares them with a snapshot and shows differences only.
-- Keys of this file start with "st:"; its keyspace is st_ks.
--
\set SHOW_CONTEXT never

-- the columns
SELECT * FROM kv_stats() LIMIT 0;
SELECT pg_get_function_result('kv_stats()'::regprocedure);

-- one row per keyspace plus the total row (keyspace IS NULL), which alone
-- carries memory_limit: the test configuration's kvext.memory_limit
SELECT kv_create_keyspace('st_ks');
SELECT keyspace, memory_limit FROM kv_stats() ORDER BY keyspace NULLS LAST;
SELECT memory_limit = 64 * 1024 * 1024 AS limit_is_64mb,
       memory_limit = pg_size_bytes(current_setting('kvext.memory_limit')) AS limit_matches_setting
  FROM kv_stats() WHERE keyspace IS NULL;
SELECT count(*) AS total_rows FROM kv_stats() WHERE keyspace IS NULL;

-- a new keyspace starts with zero counters
SELECT entries, memory_used, hits, misses, writes FROM kv_stats() WHERE keyspace = 'st_ks';

-- snapshot and differences
CREATE TABLE st_snap AS SELECT * FROM kv_stats();
CREATE VIEW st_delta AS
SELECT coalesce(n.keyspace, '(total)') AS keyspace,
       n.entries - o.entries AS entries,
       n.hits - o.hits AS hits,
       n.misses - o.misses AS misses,
       n.writes - o.writes AS writes
  FROM kv_stats() AS n
  JOIN st_snap AS o ON n.keyspace IS NOT DISTINCT FROM o.keyspace
 WHERE n.keyspace IS NULL OR n.keyspace IN ('default', 'st_ks')
 ORDER BY n.keyspace NULLS LAST;
CREATE FUNCTION st_snapshot() RETURNS void LANGUAGE sql AS $$
    DELETE FROM st_snap;
    INSERT INTO st_snap SELECT * FROM kv_stats();
$$;
SELECT * FROM st_delta;

-- writes: kv_put, kv_mput (one per key), kv_incr, kv_cas that swaps,
-- kv_delete of an existing key
SELECT kv_put('st:a', 'a');
SELECT kv_put('st:b', 'b', 'st_ks');
SELECT * FROM st_delta;
SELECT st_snapshot();
SELECT kv_mput(ARRAY['st:c', 'st:d', 'st:e'], ARRAY['c', 'd', 'e']);
SELECT kv_incr('st:n', 5, 'st_ks');
SELECT kv_cas('st:n', '5', '6', 'st_ks');
SELECT kv_delete('st:e');
SELECT kv_put('st:a', 'overwrite');
SELECT * FROM st_delta;

-- what writes nothing counts no write: a kv_cas that does not match,
-- kv_delete of a missing key, a refused write
SELECT st_snapshot();
SELECT kv_cas('st:a', 'mismatch', 'x');
SELECT kv_delete('st:missing');
SELECT kv_put(NULL, 'x');
SELECT kv_incr('st:a');
SELECT * FROM st_delta;

-- reads: hits and misses; kv_mget counts each key
SELECT st_snapshot();
SELECT kv_get('st:a'), kv_get('st:missing');
SELECT kv_exists('st:c'), kv_exists('st:missing');
SELECT kv_get_bytea('st:d');
SELECT kv_mget(ARRAY['st:a', 'st:missing', 'st:c', 'st:e']);
SELECT kv_get('st:b', 'st_ks'), kv_get('st:a', 'st_ks');
SELECT * FROM st_delta;

-- entries count committed keys: a transaction's writes change entries at
-- commit, not before, and never when rolled back (its writes were made,
-- so they count as writes either way, like pg_stat_user_tables.n_tup_ins)
SELECT st_snapshot();
BEGIN;
SELECT kv_put('st:t1', 't'), kv_put('st:t2', 't'), kv_delete('st:a');
SELECT keyspace, entries FROM st_delta;
COMMIT;
SELECT * FROM st_delta;
SELECT st_snapshot();
BEGIN;
SELECT kv_put('st:t3', 't'), kv_delete('st:t1');
ROLLBACK;
SELECT * FROM st_delta;
-- entries agree with kv_count() and kv_keyspaces()
SELECT s.keyspace, s.entries = kv_count(s.keyspace) AS matches_count,
       s.entries = k.entries AS matches_keyspaces
  FROM kv_stats() AS s JOIN kv_keyspaces() AS k USING (keyspace)
 ORDER BY s.keyspace;
-- the total row sums the keyspaces
SELECT t.entries = sum(s.entries) AS entries_sum, t.hits = sum(s.hits) AS hits_sum,
       t.misses = sum(s.misses) AS misses_sum, t.writes = sum(s.writes) AS writes_sum,
       t.memory_used >= sum(s.memory_used) AS memory_covers_keyspaces
  FROM kv_stats() AS s, kv_stats() AS t
 WHERE s.keyspace IS NOT NULL AND t.keyspace IS NULL
 GROUP BY t.entries, t.hits, t.misses, t.writes, t.memory_used;

-- counters are cumulative over sessions: a new connection adds to them
SELECT st_snapshot();
\c
SELECT kv_get('st:b', 'st_ks'), kv_put('st:c', 'from another session', 'st_ks');
\c
SELECT * FROM st_delta;

-- memory_used: grows with a put (by at least the key and value), shrinks
-- with a delete, back to where it was
SELECT memory_used AS ks_mem0 FROM kv_stats() WHERE keyspace = 'st_ks' \gset
SELECT memory_used AS tot_mem0 FROM kv_stats() WHERE keyspace IS NULL \gset
SELECT kv_put('st:big', repeat('x', 100000), 'st_ks');
SELECT memory_used - :ks_mem0 >= 100000 + length('st:big') AS ks_grew,
       memory_used - :ks_mem0 < 100000 + 1000 AS ks_grew_by_little_more
  FROM kv_stats() WHERE keyspace = 'st_ks';
SELECT memory_used - :tot_mem0 >= 100000 AS total_grew FROM kv_stats() WHERE keyspace IS NULL;
-- an uncommitted write takes memory at once (the limit is enforced when the
-- statement runs); overwriting keeps both versions until commit
BEGIN;
SELECT kv_put('st:big', repeat('y', 100000), 'st_ks');
SELECT memory_used - :ks_mem0 >= 200000 AS both_versions_held
  FROM kv_stats() WHERE keyspace = 'st_ks';
COMMIT;
SELECT memory_used - :ks_mem0 BETWEEN 100000 AND 101000 AS one_version_left
  FROM kv_stats() WHERE keyspace = 'st_ks';
SELECT kv_delete('st:big', 'st_ks');
SELECT memory_used = :ks_mem0 AS ks_back_to_start FROM kv_stats() WHERE keyspace = 'st_ks';
SELECT memory_used = :tot_mem0 AS total_back_to_start FROM kv_stats() WHERE keyspace IS NULL;
-- a rolled back write gives its memory back too
BEGIN;
SELECT kv_put('st:big', repeat('z', 100000), 'st_ks');
ROLLBACK;
SELECT memory_used = :ks_mem0 AS ks_back_to_start FROM kv_stats() WHERE keyspace = 'st_ks';
SELECT memory_used = :tot_mem0 AS total_back_to_start FROM kv_stats() WHERE keyspace IS NULL;
-- memory is never more than the limit
SELECT memory_used > 0 AND memory_used <= memory_limit AS within_limit
  FROM kv_stats() WHERE keyspace IS NULL;

-- dropping a keyspace removes its row and its memory; a re-created
-- keyspace starts from zero
SELECT kv_put('st:x', repeat('x', 1000), 'st_ks');
SELECT kv_drop_keyspace('st_ks');
SELECT count(*) FROM kv_stats() WHERE keyspace = 'st_ks';
SELECT kv_create_keyspace('st_ks');
SELECT entries, memory_used, hits, misses, writes FROM kv_stats() WHERE keyspace = 'st_ks';
SELECT kv_drop_keyspace('st_ks');

-- kv_memory(): the same memory as kv_stats()'s total row, the largest free
-- block, and compaction's counters (none yet: nothing was fragmented)
SELECT m.memory_limit = s.memory_limit AS same_limit,
       m.memory_used <= m.memory_limit AS within_limit,
       m.largest_free_block BETWEEN 1 AND m.memory_limit - m.memory_used AS largest_free_ok,
       m.compactions >= m.failed_compactions AS counters_ok,
       m.moved_entries >= 0 AND m.moved_bytes >= 0 AND
       m.evacuated_entries >= 0 AND m.evacuated_bytes >= 0 AND m.longest_compaction_ms >= 0 AS moves_ok
  FROM kv_memory() m, kv_stats() s WHERE s.keyspace IS NULL;

-- clean up
SELECT count(*) FROM kv_scan('st:') WHERE kv_delete(key);
DROP VIEW st_delta;
DROP TABLE st_snap;
DROP FUNCTION st_snapshot();
