-- kvext's write-ahead log, as seen from SQL (crash behaviour is in test/t/1xx)

-- kvext.synchronous_commit takes PostgreSQL's values
SHOW kvext.synchronous_commit;
SET kvext.synchronous_commit = off;
SHOW kvext.synchronous_commit;
SET kvext.synchronous_commit = local;
SET kvext.synchronous_commit = remote_apply;
SET kvext.synchronous_commit = bogus;
RESET kvext.synchronous_commit;

-- the log is open and consistent
SELECT state, insert_lsn >= '0/10' AS started, flush_lsn <= insert_lsn AS flush_ok,
       apply_lsn <= insert_lsn AS apply_ok, term, segments >= 1 AS has_segments
  FROM kv_wal_status();

-- a commit is logged and, with the default setting, flushed before it returns
SELECT insert_lsn AS before FROM kv_wal_status() \gset
SELECT kv_put('wal:a', 'x');
SELECT insert_lsn > :'before' AS logged, flush_lsn = insert_lsn AS flushed
  FROM kv_wal_status();

-- a rolled-back transaction, a read, a delete of nothing: nothing logged
SELECT insert_lsn AS before FROM kv_wal_status() \gset
BEGIN;
SELECT kv_put('wal:b', 'y');
ROLLBACK;
SELECT kv_get('wal:a'), kv_delete('wal:nothing');
SELECT insert_lsn = :'before' AS nothing_logged FROM kv_wal_status();

-- with off, the commit returns at once; the wal writer flushes soon after
SET kvext.synchronous_commit = off;
SELECT kv_put('wal:async', '1');
RESET kvext.synchronous_commit;
SELECT kv_get('wal:async');

-- kv_checkpoint writes a snapshot
SELECT kv_checkpoint();
SELECT snapshot_lsn IS NOT NULL AS has_snapshot, snapshot_lsn <= insert_lsn AS redo_ok,
       snapshot_time <= now() AS time_ok
  FROM kv_wal_status();
-- and no snapshot is failing
SELECT snapshot_failures, snapshot_error, snapshot_error_time, snapshot_retry_time
  FROM kv_wal_status();

-- a failure after the record is flushed, before the commit: an error, and
-- the write is not visible (an ABORT record cancels the TXN record)
SET kvext.failpoint = 'wal-after-fsync:error';
SELECT kv_put('wal:c', 'z');
RESET kvext.failpoint;
SELECT kv_get('wal:c') IS NULL AS not_committed;

-- a full disk fails the commit with 53100 (the log is written at commit),
-- keeps nothing, and writing works again once space is back
SET kvext.failpoint = 'wal-enospc';
\set VERBOSITY sqlstate
SELECT kv_put('wal:d', 'w');
BEGIN;
SELECT kv_put('wal:d', 'w');
SELECT kv_put('wal:e', 'w');
COMMIT;
-- no room to reserve the blocks of a possible ABORT record: no commit either
SET kvext.failpoint = 'wal-enospc-reserve';
SELECT kv_put('wal:e', 'w');
\set VERBOSITY default
RESET kvext.failpoint;
SELECT kv_get('wal:d') IS NULL AND kv_get('wal:e') IS NULL AS not_committed;
SELECT kv_put('wal:d', 'w2');
SELECT kv_get('wal:d');

-- only superusers may set failpoints or force a snapshot
CREATE ROLE kv_wal_user;
SET ROLE kv_wal_user;
SET kvext.failpoint = 'wal-before-write';
SELECT kv_checkpoint();
RESET ROLE;
DROP ROLE kv_wal_user;

-- a failpoint kvext does not have, or an action it does not know, is
-- refused: a misspelt one would make a crash test pass without crashing
SET kvext.failpoint = 'wal-after-fsinc';
SET kvext.failpoint = 'wal-after-fsync:explode';
SET kvext.failpoint = 'snapshot-mid:hold';
SHOW kvext.failpoint;
RESET kvext.failpoint;

-- a server without peers is a group of one: its commit position is its
-- flush position, and it has no peer to report on
SELECT node, role, c.term, leader, commit_lsn = w.flush_lsn AS commit_is_flush,
       applied_lsn = w.apply_lsn AS applied, cluster_id IS NOT NULL AS has_id,
       group_size, config_error
  FROM kv_cluster c, kv_wal_status() w;
SELECT count(*) FROM kv_replication;

-- kv_wal_stats(): a durable commit adds its TXN and COMMIT records, their
-- bytes, and a flush (its fsync); a read adds nothing; every role may call it
SELECT * FROM kv_wal_stats() \gset s_
SELECT kv_put('wal:stats', 'x');
SELECT kv_get('wal:stats');
SELECT records - :s_records AS records, bytes - :s_bytes > 0 AS bytes,
       writes > :s_writes AS written, syncs > :s_syncs AS synced,
       buffers_full = :s_buffers_full AS never_full
  FROM kv_wal_stats();
CREATE ROLE kv_wal_stats_user;
SET ROLE kv_wal_stats_user;
SELECT records > 0 FROM kv_wal_stats();
RESET ROLE;
DROP ROLE kv_wal_stats_user;

-- clean up
SELECT count(*) FROM kv_scan('wal:') WHERE kv_delete(key);
