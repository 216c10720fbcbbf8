--
-- fdw_partition: kvext foreign tables as partitions of HASH, LIST and
-- RANGE partitioned tables, mixed with heap partitions: routing, pruning,
-- rows moved by UPDATE, the partition-bound check (23514).  Keyspaces and
-- tables of this file start with "part_"; all are dropped at the end.
--
\set SHOW_CONTEXT never

-- kv_try(stmt) (load.sql): 'ok' or the error as "SQLSTATE: message" plus
-- detail and hint

CREATE SERVER part_local FOREIGN DATA WRAPPER kvext_fdw;

--
-- LIST on a text key: two kvext partitions, a heap one, a kvext default
--
CREATE TABLE part_list (key text, value text) PARTITION BY LIST (key);
CREATE FOREIGN TABLE part_list_a PARTITION OF part_list FOR VALUES IN ('a1', 'a2', 'a3', 'a4')
  SERVER part_local OPTIONS (keyspace 'part_a', create_keyspace 'true');
CREATE FOREIGN TABLE part_list_b PARTITION OF part_list FOR VALUES IN ('b1', 'b2', 'b9')
  SERVER part_local OPTIONS (keyspace 'part_b', create_keyspace 'true');
CREATE TABLE part_list_h PARTITION OF part_list FOR VALUES IN ('h1', 'h2');
CREATE FOREIGN TABLE part_list_d PARTITION OF part_list DEFAULT
  SERVER part_local OPTIONS (keyspace 'part_d', create_keyspace 'true');

-- routing: each row lands in its partition's keyspace
INSERT INTO part_list VALUES ('a1', 'x'), ('a2', 'x'), ('b1', 'x'), ('h1', 'x'), ('zz', 'x');
SELECT tableoid::regclass AS part, * FROM part_list ORDER BY key;
SELECT k, kv_count(k) FROM unnest(ARRAY['part_a', 'part_b', 'part_d']) AS k;
SELECT kv_get('a1', 'part_a'), kv_get('b1', 'part_b'), kv_get('zz', 'part_d');
-- COPY through the parent routes too
COPY part_list FROM stdin;
a3	copied
b2	copied
h2	copied
yy	copied
\.
SELECT tableoid::regclass AS part, * FROM part_list WHERE value = 'copied' ORDER BY key;
-- INSERT through the parent: an existing key is 23505, or skipped
SELECT kv_try($$INSERT INTO part_list VALUES ('a1', 'again')$$);
INSERT INTO part_list VALUES ('a1', 'again'), ('a2', 'again') ON CONFLICT DO NOTHING;
SELECT kv_get('a1', 'part_a');

-- pruning on key = const: only one partition is scanned, with a lookup
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM part_list WHERE key = 'b1';
SELECT * FROM part_list WHERE key = 'b1';
EXPLAIN (COSTS OFF) SELECT * FROM part_list WHERE key IN ('a1', 'b2');
SELECT * FROM part_list WHERE key IN ('a1', 'b2') ORDER BY key;
EXPLAIN (COSTS OFF) SELECT * FROM part_list WHERE key = 'h1';
-- run-time pruning with a parameter
PREPARE part_get(text) AS SELECT * FROM part_list WHERE key = $1;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE part_get('b2');
EXECUTE part_get('b2');
RESET plan_cache_mode;
-- counts: a partition's count(*) is its keyspace's count
EXPLAIN (COSTS OFF) SELECT count(*) FROM part_list_a;
SELECT count(*) FROM part_list_a;
SELECT count(*) FROM part_list;

-- a direct INSERT into a partition is checked against its bound: 23514
SELECT kv_try($$INSERT INTO part_list_a VALUES ('b9', 'misplaced')$$);
SELECT kv_try($$INSERT INTO part_list_d VALUES ('a4', 'misplaced')$$);
INSERT INTO part_list_a VALUES ('a3', 'ok') ON CONFLICT DO NOTHING;
INSERT INTO part_list_d VALUES ('d1', 'direct');
SELECT kv_exists('b9', 'part_a'), kv_exists('a4', 'part_d'), kv_get('d1', 'part_d');
-- so is a direct UPDATE that takes a row out of its partition
SELECT kv_try($$UPDATE part_list_a SET key = 'b9' WHERE key = 'a1'$$);
UPDATE part_list_a SET value = 'updated in place' WHERE key = 'a1' RETURNING *;
-- the check runs in COPY into the partition too
SELECT kv_try($$COPY part_list_b FROM PROGRAM 'printf "a7\tmisplaced\n"'$$);
-- and after a BEFORE trigger of a partition changed a routed row
CREATE FUNCTION part_rename() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.key := NEW.key || '-renamed'; RETURN NEW; END $$;
CREATE TRIGGER part_rename BEFORE INSERT ON part_list_b
  FOR EACH ROW EXECUTE FUNCTION part_rename();
SELECT kv_try($$INSERT INTO part_list VALUES ('b1', 'renamed')$$);
DROP TRIGGER part_rename ON part_list_b;

-- UPDATE through the parent moves rows: kvext -> kvext, heap -> kvext;
-- kvext -> heap is refused (0A000)
-- (RETURNING's tableoid of a moved row names the partition it left)
UPDATE part_list SET key = 'b9' WHERE key = 'a1' RETURNING *;
SELECT kv_exists('a1', 'part_a'), kv_get('b9', 'part_b');
UPDATE part_list SET key = 'a1' WHERE key = 'h1' RETURNING *;
SELECT * FROM part_list_h ORDER BY key;
SELECT tableoid::regclass AS part, * FROM part_list WHERE key IN ('a1', 'b9', 'h1');
SELECT kv_try($$UPDATE part_list SET key = 'h1' WHERE key = 'a1'$$);
-- a moved key that exists in its new partition: 23505, and nothing moved
SELECT kv_try($$UPDATE part_list SET key = 'b2' WHERE key = 'b9'$$);
SELECT kv_try($$UPDATE part_list SET key = 'a1' WHERE key = 'b9'$$);
SELECT kv_get('b9', 'part_b'), kv_get('a1', 'part_a');
-- moving into a partition this UPDATE has yet to scan is refused
SELECT kv_try($$UPDATE part_list SET key = 'zz2' WHERE key IN ('a1', 'zz')$$);
-- into one it has scanned already, it is not
UPDATE part_list SET key = CASE key WHEN 'zz' THEN 'a4' ELSE key END
 WHERE key IN ('a2', 'zz') RETURNING *;
SELECT tableoid::regclass AS part, * FROM part_list WHERE key IN ('a2', 'a4', 'zz');
-- rolled back, a move is undone in both keyspaces
BEGIN;
UPDATE part_list SET key = 'b1x' WHERE key = 'a1';
SELECT tableoid::regclass AS part, * FROM part_list WHERE key IN ('a1', 'b1x');
ROLLBACK;
SELECT tableoid::regclass AS part, * FROM part_list WHERE key IN ('a1', 'b1x');
SELECT tableoid::regclass AS part, * FROM part_list ORDER BY key;
-- DELETE through the parent
DELETE FROM part_list WHERE key IN ('a1', 'h2', 'yy') RETURNING tableoid::regclass AS part, *;
SELECT k, kv_count(k) FROM unnest(ARRAY['part_a', 'part_b', 'part_d']) AS k;

--
-- RANGE on an integer key, named id (key_column / value_column)
--
CREATE TABLE part_range (id int, doc jsonb) PARTITION BY RANGE (id);
CREATE FOREIGN TABLE part_range_lo PARTITION OF part_range FOR VALUES FROM (0) TO (100)
  SERVER part_local OPTIONS (keyspace 'part_lo', create_keyspace 'true',
                             key_column 'id', value_column 'doc');
CREATE TABLE part_range_mid PARTITION OF part_range FOR VALUES FROM (100) TO (200);
CREATE FOREIGN TABLE part_range_hi PARTITION OF part_range FOR VALUES FROM (200) TO (300)
  SERVER part_local OPTIONS (keyspace 'part_hi', create_keyspace 'true',
                             key_column 'id', value_column 'doc');
INSERT INTO part_range SELECT g, jsonb_build_object('g', g) FROM generate_series(0, 299, 50) g;
SELECT tableoid::regclass AS part, * FROM part_range ORDER BY id;
SELECT kv_get('250', 'part_hi');
EXPLAIN (COSTS OFF) SELECT * FROM part_range WHERE id = 250;
EXPLAIN (COSTS OFF) SELECT * FROM part_range WHERE id < 100;
SELECT kv_try($$INSERT INTO part_range VALUES (300, '{}')$$);
SELECT kv_try($$INSERT INTO part_range_hi VALUES (5, '{}')$$);
UPDATE part_range SET id = id + 210 WHERE id < 100 RETURNING *;
SELECT tableoid::regclass AS part, * FROM part_range ORDER BY id;
SELECT k, kv_count(k) FROM unnest(ARRAY['part_lo', 'part_hi']) AS k;

--
-- HASH on a text key: two kvext partitions and a heap one
--
CREATE TABLE part_hash (key text, value text) PARTITION BY HASH (key);
CREATE FOREIGN TABLE part_hash_0 PARTITION OF part_hash FOR VALUES WITH (MODULUS 3, REMAINDER 0)
  SERVER part_local OPTIONS (keyspace 'part_h0', create_keyspace 'true');
CREATE FOREIGN TABLE part_hash_1 PARTITION OF part_hash FOR VALUES WITH (MODULUS 3, REMAINDER 1)
  SERVER part_local OPTIONS (keyspace 'part_h1', create_keyspace 'true');
CREATE TABLE part_hash_2 PARTITION OF part_hash FOR VALUES WITH (MODULUS 3, REMAINDER 2);
INSERT INTO part_hash SELECT 'k' || g, 'v' || g FROM generate_series(1, 300) g;
-- every row is where the hash puts it, in its keyspace
SELECT tableoid::regclass AS part, count(*) FROM part_hash GROUP BY 1 ORDER BY 1;
SELECT kv_count('part_h0') = (SELECT count(*) FROM part_hash_0) AS h0,
       kv_count('part_h1') = (SELECT count(*) FROM part_hash_1) AS h1;
SELECT count(*) AS misplaced FROM part_hash_0
 WHERE NOT satisfies_hash_partition('part_hash'::regclass, 3, 0, key);
SELECT count(*) AS misplaced FROM part_hash_1
 WHERE NOT satisfies_hash_partition('part_hash'::regclass, 3, 1, key);
SELECT count(*) FROM part_hash;
-- pruning and point lookups through the parent
EXPLAIN (COSTS OFF) SELECT * FROM part_hash WHERE key = 'k1';
SELECT * FROM part_hash WHERE key = 'k1';
SELECT count(*) FROM part_hash WHERE key IN ('k1', 'k2', 'k3', 'k4', 'nope');
-- a direct insert of a key of another partition: 23514
SELECT key FROM part_hash_1 ORDER BY key LIMIT 1 \gset
SELECT kv_try(format($$INSERT INTO part_hash_0 VALUES (%L, 'misplaced')$$, :'key'));

--
-- A row an UPDATE moves into a partition whose scan runs again (the
-- rescanned inner side of a nested loop) is skipped there, not updated a
-- second time: UPDATE 1, as with heap partitions
--
CREATE TABLE part_mv (key text, value text) PARTITION BY LIST (key);
CREATE FOREIGN TABLE part_mv_ef PARTITION OF part_mv FOR VALUES IN ('e', 'f')
  SERVER part_local OPTIONS (keyspace 'part_mv_ef', create_keyspace 'true');
CREATE FOREIGN TABLE part_mv_u PARTITION OF part_mv FOR VALUES IN ('u')
  SERVER part_local OPTIONS (keyspace 'part_mv_u', create_keyspace 'true');
INSERT INTO part_mv VALUES ('u', 'vu');
CREATE TABLE part_mv_map (k text, nk text);
INSERT INTO part_mv_map VALUES ('u', 'e'), ('e', 'f');
ANALYZE part_mv_map;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off;
EXPLAIN (COSTS OFF)
UPDATE part_mv SET key = m.nk, value = part_mv.value || '+'
  FROM part_mv_map m WHERE part_mv.key = m.k;
UPDATE part_mv SET key = m.nk, value = part_mv.value || '+'
  FROM part_mv_map m WHERE part_mv.key = m.k RETURNING part_mv.*;
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET enable_material;
SELECT * FROM part_mv ORDER BY key;
DROP TABLE part_mv, part_mv_map;
SELECT kv_drop_keyspace('part_mv_ef'), kv_drop_keyspace('part_mv_u');

--
-- Clean up
--
DROP TABLE part_list, part_range, part_hash;
DROP FUNCTION part_rename();
DROP SERVER part_local;
SELECT kv_drop_keyspace(k) FROM unnest(ARRAY['part_a', 'part_b', 'part_d',
  'part_lo', 'part_hi', 'part_h0', 'part_h1']) AS k;
SELECT keyspace FROM kv_keyspaces() WHERE keyspace LIKE 'part\_%';
