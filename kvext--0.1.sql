/* kvext--0.1.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION kvext" to load this file. \quit

-- Refuse to install on a server that did not preload the library: the
-- call fails with SQLSTATE 55000 and a hint.
CREATE FUNCTION kvext_check_preloaded()
RETURNS void
AS 'MODULE_PATHNAME', 'kvext_check_preloaded'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION kvext_check_preloaded() IS
'internal: raise an error unless kvext is in shared_preload_libraries';
SELECT kvext_check_preloaded();

-- Reads.  VOLATILE: the result changes with concurrent commits and with
-- this transaction's own writes, even within one statement.

CREATE FUNCTION kv_get(key text, keyspace text DEFAULT 'default')
RETURNS text
AS 'MODULE_PATHNAME', 'kv_get'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION kv_get(text, text) IS
'value of key as text, or NULL if the key does not exist';

CREATE FUNCTION kv_get_bytea(key text, keyspace text DEFAULT 'default')
RETURNS bytea
AS 'MODULE_PATHNAME', 'kv_get_bytea'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION kv_get_bytea(text, text) IS
'value of key as bytea, byte for byte, or NULL if the key does not exist';

CREATE FUNCTION kv_exists(key text, keyspace text DEFAULT 'default')
RETURNS boolean
AS 'MODULE_PATHNAME', 'kv_exists'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION kv_exists(text, text) IS
'whether key exists';

CREATE FUNCTION kv_mget(keys text[], keyspace text DEFAULT 'default')
RETURNS text[]
AS 'MODULE_PATHNAME', 'kv_mget'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION kv_mget(text[], text) IS
'values of keys, in order, NULL for each key that does not exist';

CREATE FUNCTION kv_scan(prefix text DEFAULT '', keyspace text DEFAULT 'default',
                        OUT key text, OUT value text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kv_scan'
LANGUAGE C VOLATILE PARALLEL SAFE ROWS 1000;
COMMENT ON FUNCTION kv_scan(text, text) IS
'every key starting with prefix and its value, in no particular order';

CREATE FUNCTION kv_scan_bytea(prefix text DEFAULT '', keyspace text DEFAULT 'default',
                              OUT key text, OUT value bytea)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kv_scan_bytea'
LANGUAGE C VOLATILE PARALLEL SAFE ROWS 1000;
COMMENT ON FUNCTION kv_scan_bytea(text, text) IS
'like kv_scan, with values as bytea: lists binary values too';

-- PARALLEL RESTRICTED: it adds this transaction's own uncommitted inserts
-- and deletes, which only the leader knows.
CREATE FUNCTION kv_count(keyspace text DEFAULT 'default')
RETURNS bigint
AS 'MODULE_PATHNAME', 'kv_count'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION kv_count(text) IS
'number of keys in the keyspace';

-- Writes: transactional, they lock their key until the transaction ends.

CREATE FUNCTION kv_put(key text, value text, keyspace text DEFAULT 'default')
RETURNS void
AS 'MODULE_PATHNAME', 'kv_put'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_put(text, text, text) IS
'set key to value';

CREATE FUNCTION kv_put(key text, value bytea, keyspace text DEFAULT 'default')
RETURNS void
AS 'MODULE_PATHNAME', 'kv_put_bytea'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_put(text, bytea, text) IS
'set key to a binary value; read it back with kv_get_bytea';

CREATE FUNCTION kv_put(key text, value jsonb, keyspace text DEFAULT 'default')
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT @extschema@.kv_put(key, value::text, keyspace) $$;
COMMENT ON FUNCTION kv_put(text, jsonb, text) IS
'set key to the text form of a jsonb value; read it back with kv_get(key)::jsonb';

CREATE FUNCTION kv_delete(key text, keyspace text DEFAULT 'default')
RETURNS boolean
AS 'MODULE_PATHNAME', 'kv_delete'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_delete(text, text) IS
'delete key; returns whether it existed';

CREATE FUNCTION kv_incr(key text, delta bigint DEFAULT 1, keyspace text DEFAULT 'default')
RETURNS bigint
AS 'MODULE_PATHNAME', 'kv_incr'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_incr(text, bigint, text) IS
'add delta to the integer value of key (a missing key counts as 0) and return the result';

CREATE FUNCTION kv_cas(key text, expected text, new text, keyspace text DEFAULT 'default')
RETURNS boolean
AS 'MODULE_PATHNAME', 'kv_cas'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_cas(text, text, text, text) IS
'compare and set: write new (NULL deletes) if the value equals expected (NULL: key must not exist); returns whether it did';

CREATE FUNCTION kv_mput(keys text[], "values" text[], keyspace text DEFAULT 'default')
RETURNS void
AS 'MODULE_PATHNAME', 'kv_mput'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_mput(text[], text[], text) IS
'set keys[i] to values[i] for every i';

-- Keyspaces.  Creating and dropping take effect at once (not rolled back).

CREATE FUNCTION kv_create_keyspace(keyspace text, if_not_exists boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'kv_create_keyspace'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_create_keyspace(text, boolean) IS
'create a keyspace; a rollback undoes it';

CREATE FUNCTION kv_drop_keyspace(keyspace text, if_exists boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'kv_drop_keyspace'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_drop_keyspace(text, boolean) IS
'drop a keyspace and every key in it; a rollback undoes it';

-- Creating keyspaces is a right granted as EXECUTE on kv_create_keyspace
-- (README, "Security").  Dropping one is its owner's or a superuser's, as
-- the function checks.
REVOKE ALL ON FUNCTION kv_create_keyspace(text, boolean) FROM PUBLIC;

CREATE FUNCTION kv_keyspaces(OUT keyspace text, OUT entries bigint,
                             OUT owner text, OUT rights text[])
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kv_keyspaces'
LANGUAGE C VOLATILE PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION kv_keyspaces() IS
'the keyspaces the current role has a right on (all for pg_read_all_stats): keys, owner and grants';

-- Rights on a keyspace: its owner's or a superuser's to change, as the
-- functions check.
CREATE FUNCTION kv_grant(keyspace text, role text, "right" text)
RETURNS void
AS 'MODULE_PATHNAME', 'kv_grant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_grant(text, text, text) IS
'grant role (or public) the read, write or all rights on a keyspace; a rollback undoes it';

CREATE FUNCTION kv_revoke(keyspace text, role text, "right" text)
RETURNS void
AS 'MODULE_PATHNAME', 'kv_revoke'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_revoke(text, text, text) IS
'take back the read, write or all rights of role (or public) on a keyspace';

-- Monitoring

CREATE FUNCTION kv_stats(OUT keyspace text, OUT entries bigint,
                         OUT memory_used bigint, OUT memory_limit bigint,
                         OUT hits bigint, OUT misses bigint, OUT writes bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kv_stats'
LANGUAGE C VOLATILE PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION kv_stats() IS
'per keyspace: keys, memory used, hits, misses and writes; the row with a NULL keyspace is the total';

-- Every role may call kv_locks(), as every role may read pg_locks; the key
-- is shown only to roles with the privileges of the waiting session's role
-- or of pg_read_all_stats, as pg_stat_activity shows queries (README,
-- "Monitoring").
CREATE FUNCTION kv_locks(OUT pid integer, OUT keyspace text, OUT key text,
                         OUT holder_pid integer, OUT holder_xid xid,
                         OUT wait_start timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kv_locks'
LANGUAGE C VOLATILE PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION kv_locks() IS
'writers waiting for a key held by another transaction: waiter, keyspace, key, holder and since when';

CREATE VIEW kv_locks AS SELECT * FROM kv_locks();
COMMENT ON VIEW kv_locks IS
'writers waiting for a key held by another transaction (see kv_locks())';
GRANT SELECT ON kv_locks TO PUBLIC;

CREATE FUNCTION kv_memory(OUT memory_used bigint, OUT memory_limit bigint,
                          OUT largest_free_block bigint,
                          OUT compactions bigint, OUT failed_compactions bigint,
                          OUT moved_entries bigint, OUT moved_bytes bigint,
                          OUT evacuated_entries bigint, OUT evacuated_bytes bigint,
                          OUT longest_compaction_ms float8)
RETURNS record
AS 'MODULE_PATHNAME', 'kv_memory'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION kv_memory() IS
'the store''s memory: used, limit, largest free block, and the work compaction did since the server started';

-- Durability

CREATE FUNCTION kv_checkpoint()
RETURNS void
AS 'MODULE_PATHNAME', 'kv_checkpoint'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_checkpoint() IS
'write a snapshot of the store now, and remove the log it makes unnecessary';
REVOKE ALL ON FUNCTION kv_checkpoint() FROM PUBLIC;

CREATE FUNCTION kv_backup_start()
RETURNS void
AS 'MODULE_PATHNAME', 'kv_backup_start'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_backup_start() IS
'hold snapshots and log removal while a file-level backup copies PGDATA/kvext, until kv_backup_stop() or the session ends';
REVOKE ALL ON FUNCTION kv_backup_start() FROM PUBLIC;

CREATE FUNCTION kv_backup_stop()
RETURNS void
AS 'MODULE_PATHNAME', 'kv_backup_stop'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_backup_stop() IS
'end the hold taken by kv_backup_start() in this session';
REVOKE ALL ON FUNCTION kv_backup_stop() FROM PUBLIC;

CREATE FUNCTION kv_wal_status(OUT state text, OUT insert_lsn pg_lsn,
                              OUT flush_lsn pg_lsn, OUT apply_lsn pg_lsn,
                              OUT term bigint, OUT segments integer,
                              OUT snapshot_lsn pg_lsn,
                              OUT snapshot_time timestamptz,
                              OUT visible_lsn pg_lsn,
                              OUT flush_watermark pg_lsn,
                              OUT snapshot_failures integer,
                              OUT snapshot_error text,
                              OUT snapshot_error_time timestamptz,
                              OUT snapshot_retry_time timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'kv_wal_status'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION kv_wal_status() IS
'state of the store and of its log: positions, segments, last snapshot';

CREATE FUNCTION kv_wal_stats(OUT records bigint, OUT bytes bigint,
                             OUT buffers_full bigint, OUT writes bigint,
                             OUT syncs bigint, OUT segment_switches bigint,
                             OUT switches_inline bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'kv_wal_stats'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION kv_wal_stats() IS
'kvext log activity since the server started: records, bytes, inserts that found the log buffers full, writes, fsyncs, segment switches';

-- Replication: a leader's senders call this on each follower (see
-- docs/architecture.md, "Replication").  The replication right is EXECUTE
-- on it: revoked from PUBLIC here, granted to the role the leader connects
-- as (GRANT EXECUTE ON FUNCTION kv_repl_append(bigint, text, bigint,
-- pg_lsn, bigint, pg_lsn, bytea) TO kvext_repl).  Superuser is not needed.
CREATE FUNCTION kv_repl_append(cluster_id bigint, leader text, leader_term bigint,
                               prev_end pg_lsn, prev_term bigint,
                               commit_lsn pg_lsn, records bytea,
                               OUT term bigint, OUT success boolean,
                               OUT flushed pg_lsn, OUT applied pg_lsn,
                               OUT hint pg_lsn)
RETURNS record
AS 'MODULE_PATHNAME', 'kv_repl_append'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_repl_append(bigint, text, bigint, pg_lsn, bigint, pg_lsn, bytea) IS
'replication: append a leader''s log records to this follower, commit and apply them';
REVOKE ALL ON FUNCTION kv_repl_append(bigint, text, bigint, pg_lsn, bigint, pg_lsn, bytea) FROM PUBLIC;

-- A candidate's kv_promote() calls this on each peer.  It needs the same
-- replication right (EXECUTE on kv_repl_append), which it checks itself.
CREATE FUNCTION kv_repl_vote(cluster_id bigint, candidate text, candidate_term bigint,
                             last_end pg_lsn, last_term bigint, led_term bigint DEFAULT 0,
                             OUT term bigint, OUT granted boolean, OUT reason text)
RETURNS record
AS 'MODULE_PATHNAME', 'kv_repl_vote'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_repl_vote(bigint, text, bigint, pg_lsn, bigint, bigint) IS
'replication: vote for a candidate leader whose log is at least as up to date as this node''s';

-- Failover: make this follower the group's leader in a new term, if a
-- majority votes for it.  Superuser only unless granted, as pg_promote().
CREATE FUNCTION kv_promote()
RETURNS bigint
AS 'MODULE_PATHNAME', 'kv_promote'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_promote() IS
'make this follower the leader of its group in a new term; returns the term';
REVOKE ALL ON FUNCTION kv_promote() FROM PUBLIC;

-- Catch-up from a snapshot: a leader's sender streams its snapshot to a
-- follower that needs log the leader no longer has, chunk by chunk.  It is
-- executable by every role and checks the replication right itself
-- (EXECUTE on kv_repl_append), so the one grant covers both.
CREATE FUNCTION kv_repl_snapshot(cluster_id bigint, leader text, leader_term bigint,
                                 redo pg_lsn, total_size bigint,
                                 chunk_offset bigint, chunk bytea,
                                 OUT term bigint, OUT success boolean,
                                 OUT received bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'kv_repl_snapshot'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION kv_repl_snapshot(bigint, text, bigint, pg_lsn, bigint, bigint, bytea) IS
'replication: receive a chunk of the leader''s snapshot; the last one rebuilds this follower from it';

-- Replication status (README, "Monitoring"; docs/architecture.md, "The leader's senders")

-- Every role may call kv_cluster_status(), as kv_wal_status(): it shows no
-- connection details.
CREATE FUNCTION kv_cluster_status(OUT node text, OUT role text, OUT term bigint,
                                  OUT leader text, OUT commit_lsn pg_lsn,
                                  OUT applied_lsn pg_lsn, OUT cluster_id bigint,
                                  OUT group_size integer, OUT config_error text)
RETURNS record
AS 'MODULE_PATHNAME', 'kv_cluster_status'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION kv_cluster_status() IS
'this node in its replication group: name, role, term, leader, commit and applied positions, cluster id, size, configuration error';

CREATE VIEW kv_cluster AS SELECT * FROM kv_cluster_status();
COMMENT ON VIEW kv_cluster IS
'this node in its replication group (see kv_cluster_status())';
GRANT SELECT ON kv_cluster TO PUBLIC;

-- kv_replication_status() shows each peer's conninfo (never its password):
-- like pg_stat_replication's details, only for pg_monitor (and superusers).
CREATE FUNCTION kv_replication_status(OUT peer text, OUT conninfo text,
                                      OUT state text, OUT sent_lsn pg_lsn,
                                      OUT flushed_lsn pg_lsn, OUT applied_lsn pg_lsn,
                                      OUT lag_bytes bigint, OUT lag_time interval,
                                      OUT last_reply_time timestamptz,
                                      OUT connected_since timestamptz,
                                      OUT last_error text,
                                      OUT last_error_time timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kv_replication_status'
LANGUAGE C VOLATILE PARALLEL SAFE ROWS 4;
COMMENT ON FUNCTION kv_replication_status() IS
'per peer, as this node''s log sender sees it: state, sent, flushed and applied positions, lag in bytes and time, last error';
REVOKE ALL ON FUNCTION kv_replication_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kv_replication_status() TO pg_monitor;

CREATE VIEW kv_replication AS SELECT * FROM kv_replication_status();
COMMENT ON VIEW kv_replication IS
'per peer replication state on this node (see kv_replication_status())';
REVOKE ALL ON kv_replication FROM PUBLIC;
GRANT SELECT ON kv_replication TO pg_monitor;
-- kvext_fdw: foreign tables over keyspaces (README "Partitioned tables").

CREATE FUNCTION kvext_fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME', 'kvext_fdw_handler'
LANGUAGE C STRICT;
COMMENT ON FUNCTION kvext_fdw_handler() IS
'handler of the kvext_fdw foreign data wrapper';

CREATE FUNCTION kvext_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'kvext_fdw_validator'
LANGUAGE C STRICT;
COMMENT ON FUNCTION kvext_fdw_validator(text[], oid) IS
'validator of the options of kvext_fdw servers, user mappings, foreign tables and columns';

CREATE FOREIGN DATA WRAPPER kvext_fdw
  HANDLER kvext_fdw_handler
  VALIDATOR kvext_fdw_validator;
COMMENT ON FOREIGN DATA WRAPPER kvext_fdw IS
'foreign tables over kvext keyspaces';

-- A wrong column set fails CREATE or ALTER FOREIGN TABLE, not the first
-- query that uses the table (the validator sees options, not columns).
CREATE FUNCTION kvext_fdw_check_table(regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'kvext_fdw_check_table'
LANGUAGE C STRICT;
COMMENT ON FUNCTION kvext_fdw_check_table(regclass) IS
'internal: raise an error if a kvext foreign table has a wrong column set';

CREATE FUNCTION kvext_fdw_check_ddl()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT objid FROM pg_event_trigger_ddl_commands()
             WHERE classid = 'pg_class'::regclass
    LOOP
        PERFORM @extschema@.kvext_fdw_check_table(r.objid);
    END LOOP;
END
$$;
COMMENT ON FUNCTION kvext_fdw_check_ddl() IS
'internal: event trigger checking the columns of kvext foreign tables';

CREATE EVENT TRIGGER kvext_fdw_check_ddl ON ddl_command_end
  WHEN TAG IN ('CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE')
  EXECUTE FUNCTION kvext_fdw_check_ddl();

-- What a kvext foreign table of a remote server runs on that node
-- (src/fdw/serve.c): keys and values as their exact bytes.

CREATE FUNCTION kvext_fdw_remote_read(keyspace text, missing_ok boolean,
    text_values boolean, prefix bytea, keys bytea[],
    OUT key bytea, OUT value bytea, OUT "binary" boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'kvext_fdw_remote_read'
LANGUAGE C VOLATILE PARALLEL SAFE;	-- a read, as kv_scan_bytea (kv_digest calls it)
COMMENT ON FUNCTION kvext_fdw_remote_read(text, boolean, boolean, bytea, bytea[]) IS
'internal: kvext_fdw point, multi-key, prefix and full reads for another node';

-- Compare nodes of a group (README, "Replication"): equal digests, equal
-- committed contents.  It reads the whole keyspace, as kv_scan does, but
-- as the stored bytes (kvext_fdw_remote_read, without text_values): text
-- is UTF-8 in the store, so databases and nodes of any encoding agree,
-- and nothing fails for a key the database encoding cannot show.  In a
-- UTF8 database this is md5(key) || md5(value) in COLLATE "C" order.
CREATE FUNCTION kv_digest(keyspace text DEFAULT 'default')
RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT md5(coalesce(string_agg(md5(r.key) || md5(r.value), '' ORDER BY r.key), ''))
  FROM @extschema@.kvext_fdw_remote_read($1, false, false, NULL, NULL) AS r
$$;
COMMENT ON FUNCTION kv_digest(text) IS
'a digest of the keyspace''s committed keys and values, independent of their order';

CREATE FUNCTION kvext_fdw_remote_count(keyspace text, missing_ok boolean)
RETURNS bigint
AS 'MODULE_PATHNAME', 'kvext_fdw_remote_count'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION kvext_fdw_remote_count(text, boolean) IS
'internal: kvext_fdw count(*) pushdown for another node';

CREATE FUNCTION kvext_fdw_remote_insert(keyspace text, keys bytea[],
    "values" bytea[], "binary" boolean, upsert boolean)
RETURNS boolean[]
AS 'MODULE_PATHNAME', 'kvext_fdw_remote_insert'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION kvext_fdw_remote_insert(text, bytea[], bytea[], boolean, boolean) IS
'internal: kvext_fdw INSERT (insert-if-absent per key) for another node';

CREATE FUNCTION kvext_fdw_remote_cas(keyspace text, key bytea, expected bytea,
    value bytea, "binary" boolean)
RETURNS boolean
AS 'MODULE_PATHNAME', 'kvext_fdw_remote_cas'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION kvext_fdw_remote_cas(text, bytea, bytea, bytea, boolean) IS
'internal: kvext_fdw UPDATE and DELETE (compare-and-set) for another node';

-- A hash partitioned table spread over servers (README "Partitioned
-- tables"): partition i is foreign table <name>_<i> on servers[i % n + 1],
-- over keyspace <name>_<i>, which its first write creates.
CREATE FUNCTION kv_create_distributed_table(name text, servers text[],
    partitions integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    nservers integer := coalesce(array_length(servers, 1), 0);
    nparts integer := coalesce(partitions, nservers);
    part text;
BEGIN
    IF name IS NULL OR nservers = 0 THEN
        RAISE EXCEPTION 'kv_create_distributed_table needs a name and at least one server'
            USING ERRCODE = '22023';
    END IF;
    IF nparts < 1 THEN
        RAISE EXCEPTION 'number of partitions must be at least 1, not %', nparts
            USING ERRCODE = '22023';
    END IF;
    EXECUTE format('CREATE TABLE %I (key text, value text) PARTITION BY HASH (key)', name);
    FOR i IN 0 .. nparts - 1 LOOP
        part := name || '_' || i;
        EXECUTE format('CREATE FOREIGN TABLE %I PARTITION OF %I '
                       'FOR VALUES WITH (MODULUS %s, REMAINDER %s) SERVER %I '
                       'OPTIONS (keyspace %L, create_keyspace ''true'')',
                       part, name, nparts, i, servers[i % nservers + 1], part);
    END LOOP;
END
$$;
COMMENT ON FUNCTION kv_create_distributed_table(text, text[], integer) IS
'create a hash partitioned table (key text, value text) of kvext foreign tables spread over servers';
