--
-- keyspace: named keyspaces.  Keyspaces of this file start with "ks_";
-- all are dropped at the end.
--
\set SHOW_CONTEXT never

SELECT * FROM kv_keyspaces() ORDER BY keyspace;

-- create, use, list
SELECT kv_create_keyspace('ks_one');
SELECT kv_create_keyspace('ks_two', false);
SELECT keyspace FROM kv_keyspaces() ORDER BY keyspace;
SELECT kv_count('ks_one'), kv_count('ks_two');

-- duplicate: 42710; if_not_exists: a NOTICE and no change
SELECT kv_create_keyspace('ks_one');
SELECT kv_put('ks:k', 'kept', 'ks_one');
SELECT kv_create_keyspace('ks_one', true);
SELECT kv_create_keyspace('ks_one', if_not_exists => true);
SELECT kv_get('ks:k', 'ks_one');
-- 'default' always exists
SELECT kv_create_keyspace('default');
SELECT kv_create_keyspace('default', true);

-- the same key in different keyspaces: independent values
SELECT kv_put('ks:k', 'in default'), kv_put('ks:k', 'in two', 'ks_two');
SELECT kv_get('ks:k') AS "default", kv_get('ks:k', 'ks_one') AS one,
       kv_get('ks:k', keyspace => 'ks_two') AS two;
SELECT kv_delete('ks:k', 'ks_two');
SELECT kv_get('ks:k') AS "default", kv_get('ks:k', 'ks_one') AS one,
       kv_get('ks:k', 'ks_two') AS two;
SELECT kv_incr('ks:n', 1, 'ks_one'), kv_incr('ks:n', 10, 'ks_two'), kv_incr('ks:n', 100);
SELECT kv_mput(ARRAY['ks:m1', 'ks:m2'], ARRAY['one1', 'one2'], 'ks_one');
SELECT kv_mget(ARRAY['ks:m1', 'ks:m2', 'ks:n'], 'ks_one'), kv_mget(ARRAY['ks:m1', 'ks:n'], 'ks_two');
SELECT kv_cas('ks:n', '10', 'ten', 'ks_two'), kv_cas('ks:n', '10', 'ten', 'ks_one');
SELECT * FROM kv_scan('ks:', 'ks_one') ORDER BY key;
SELECT * FROM kv_scan('ks:', 'ks_two') ORDER BY key;
SELECT * FROM kv_scan('ks:') ORDER BY key;
SELECT kv_count('ks_one'), kv_count('ks_two');
SELECT * FROM kv_keyspaces() WHERE keyspace LIKE 'ks\_%' ORDER BY keyspace;

-- drop removes the keyspace and its keys; re-created, it is empty
SELECT kv_drop_keyspace('ks_one');
SELECT keyspace FROM kv_keyspaces() ORDER BY keyspace;
SELECT kv_get('ks:k', 'ks_one');
SELECT kv_count('ks_one');
SELECT kv_put('ks:k', 'v', 'ks_one');
SELECT kv_create_keyspace('ks_one');
SELECT kv_count('ks_one'), kv_get('ks:k', 'ks_one') IS NULL AS k_gone,
       kv_get('ks:n', 'ks_one') IS NULL AS n_gone;
SELECT count(*) FROM kv_scan('', 'ks_one');
-- the other keyspaces were not touched
SELECT kv_get('ks:k') AS "default", kv_get('ks:n', 'ks_two') AS two;

-- drop unknown: 42704; if_exists: a NOTICE
SELECT kv_drop_keyspace('ks_nope');
SELECT kv_drop_keyspace('ks_nope', true);
SELECT kv_drop_keyspace(keyspace => 'ks_nope', if_exists => true);
-- a dropped keyspace is unknown
SELECT kv_drop_keyspace('ks_one');
SELECT kv_drop_keyspace('ks_one');
SELECT kv_drop_keyspace('ks_one', true);

-- 'default' cannot be dropped: 2BP01, even with if_exists
SELECT kv_drop_keyspace('default');
SELECT kv_drop_keyspace('default', true);
SELECT kv_get('ks:k');

-- names: not empty (42602), at most 63 bytes (42622), case sensitive,
-- any characters but control characters, no whitespace at either end
-- (42602): names that look alike must not live side by side
SELECT kv_create_keyspace('');
SELECT kv_create_keyspace('', true);
SELECT kv_drop_keyspace('');
SELECT kv_drop_keyspace('', true);
SELECT kv_create_keyspace('ks_' || repeat('x', 61));
SELECT kv_drop_keyspace('ks_' || repeat('x', 61), true);
SELECT kv_create_keyspace('ks_' || repeat('x', 60));
SELECT kv_put('k', '63 bytes', 'ks_' || repeat('x', 60));
SELECT kv_get('k', 'ks_' || repeat('x', 60));
-- a 64-byte name on a read or write: the keyspace cannot exist
SELECT kv_get('k', 'ks_' || repeat('x', 61));
-- the limit is in bytes: "ks_" and 20 three-byte characters are 63 bytes,
-- with 21 they are 66
SELECT kv_create_keyspace('ks_' || repeat('€', 21));
SELECT kv_create_keyspace('ks_' || repeat('€', 20));
SELECT kv_create_keyspace('KS_Case');
SELECT kv_create_keyspace('ks_case');
SELECT kv_create_keyspace('ks with spaces, "quotes" and ключ');
SELECT kv_put('k', 'upper', 'KS_Case'), kv_put('k', 'lower', 'ks_case');
SELECT kv_get('k', 'KS_Case'), kv_get('k', 'ks_case');
SELECT kv_get('k', 'KS_CASE');
SELECT kv_put('k', 'odd name', 'ks with spaces, "quotes" and ключ');
SELECT kv_get('k', 'ks with spaces, "quotes" and ключ');
SELECT keyspace, entries FROM kv_keyspaces() ORDER BY keyspace COLLATE "C";
SELECT kv_create_keyspace(' ks_lead');
SELECT kv_create_keyspace('ks_trail ');
SELECT kv_create_keyspace(E'ks_tab\t');
SELECT kv_create_keyspace(E'ks\ttab');
SELECT kv_create_keyspace(E'ks\nnewline');
SELECT kv_create_keyspace(E'ks\x7fdel', true);
SELECT kv_create_keyspace('Default');
SELECT count(*) FROM kv_keyspaces() WHERE keyspace ~ '[[:cntrl:]]' OR keyspace <> btrim(keyspace);
SELECT kv_drop_keyspace('ks_trail ', true);
SELECT kv_drop_keyspace('Default');
SELECT kv_drop_keyspace('ks_' || repeat('x', 60)), kv_drop_keyspace('ks_' || repeat('€', 20)),
       kv_drop_keyspace('KS_Case'), kv_drop_keyspace('ks_case'),
       kv_drop_keyspace('ks with spaces, "quotes" and ключ');

-- creating and dropping keyspaces is transactional, like CREATE TABLE and
-- DROP TABLE: the keyspace exists for its transaction at once, for others at
-- commit, and a ROLLBACK undoes it with the writes made in it
BEGIN;
SELECT kv_create_keyspace('ks_rollback');
SELECT kv_put('ks:k', 'rolled back', 'ks_rollback');
SELECT kv_get('ks:k', 'ks_rollback') AS seen_inside;
ROLLBACK;
SELECT count(*) AS gone FROM kv_keyspaces() WHERE keyspace = 'ks_rollback';
SELECT kv_get('ks:k', 'ks_rollback');
BEGIN;
SELECT kv_create_keyspace('ks_rollback');
SELECT kv_put('ks:k', 'committed', 'ks_rollback');
COMMIT;
SELECT keyspace, entries FROM kv_keyspaces() WHERE keyspace = 'ks_rollback';
-- a dropped keyspace is gone for its transaction at once; a rollback brings
-- it back with its keys
BEGIN;
SELECT kv_drop_keyspace('ks_rollback');
SELECT count(*) AS gone_inside FROM kv_keyspaces() WHERE keyspace = 'ks_rollback';
SELECT kv_get('ks:k', 'ks_rollback');
ROLLBACK;
SELECT count(*) AS still_there FROM kv_keyspaces() WHERE keyspace = 'ks_rollback';
SELECT kv_get('ks:k', 'ks_rollback');
-- ROLLBACK TO undoes a create, RELEASE keeps it
BEGIN;
SAVEPOINT s1;
SELECT kv_create_keyspace('ks_sp');
ROLLBACK TO s1;
SELECT count(*) AS after_rollback_to FROM kv_keyspaces() WHERE keyspace = 'ks_sp';
SAVEPOINT s2;
SELECT kv_create_keyspace('ks_sp');
SELECT kv_put('ks:k', 'in ks_sp', 'ks_sp');
RELEASE s2;
COMMIT;
SELECT kv_get('ks:k', 'ks_sp');
-- created, dropped and created again in one transaction
BEGIN;
SELECT kv_create_keyspace('ks_brief');
SELECT kv_drop_keyspace('ks_brief');
SELECT kv_create_keyspace('ks_brief');
SELECT kv_put('ks:k', 'second', 'ks_brief');
COMMIT;
SELECT keyspace, entries FROM kv_keyspaces() WHERE keyspace = 'ks_brief';
SELECT kv_drop_keyspace('ks_brief'), kv_drop_keyspace('ks_sp');
-- a parallel worker sees what its leader's transaction created or dropped
BEGIN;
SELECT kv_create_keyspace('ks_par');
SELECT kv_put('ks:k', 'from the leader', 'ks_par');
SELECT kv_drop_keyspace('ks_rollback');
SET LOCAL force_parallel_mode = on;
SET LOCAL parallel_leader_participation = off;
SELECT kv_get('ks:k', 'ks_par') AS created_in_leader;
SELECT kv_get('ks:k', 'ks_rollback') AS dropped_in_leader;
ROLLBACK;
-- a statement that fails half-way through creating keyspaces creates none
SELECT kv_create_keyspace(n) FROM (VALUES ('ks_m1'), ('ks_m2'), ('ks_rollback')) v(n);
SELECT count(*) AS none_created FROM kv_keyspaces() WHERE keyspace IN ('ks_m1', 'ks_m2');

-- a transaction cannot drop a keyspace it has written to (55006); a drop
-- waits for other transactions' writes (isolation drop_race)
SELECT kv_put('ks:k', 'committed', 'ks_two');
BEGIN;
SELECT kv_put('ks:k', 'uncommitted', 'ks_two');
SAVEPOINT before_drop;
SELECT kv_drop_keyspace('ks_two');
ROLLBACK TO before_drop;
-- the keyspace still works, with this transaction's writes intact
SELECT kv_get('ks:k', 'ks_two');
SELECT kv_put('ks:k2', 'also uncommitted', 'ks_two');
SELECT * FROM kv_scan('ks:', 'ks_two') ORDER BY key;
SELECT kv_count('ks_two');
COMMIT;
SELECT * FROM kv_scan('ks:', 'ks_two') ORDER BY key;
SELECT keyspace, entries FROM kv_keyspaces() WHERE keyspace = 'ks_two';
-- a delete is an uncommitted write as well
BEGIN;
SELECT kv_delete('ks:k2', 'ks_two');
SELECT kv_drop_keyspace('ks_two');
ROLLBACK;
SELECT kv_get('ks:k2', 'ks_two');
-- writes that were rolled back (to a savepoint) no longer count: the drop
-- works in the same transaction
BEGIN;
SAVEPOINT s1;
SELECT kv_put('ks:k3', 'undone', 'ks_two');
ROLLBACK TO s1;
SELECT kv_delete('ks:never-there', 'ks_two');  -- deletes nothing, writes nothing
SELECT kv_get('ks:k', 'ks_two');               -- reads are not writes
SELECT kv_drop_keyspace('ks_two');
COMMIT;
SELECT count(*) FROM kv_keyspaces() WHERE keyspace = 'ks_two';
-- uncommitted writes in ANOTHER keyspace do not prevent a drop
SELECT kv_create_keyspace('ks_two');
BEGIN;
SELECT kv_put('ks:k', 'uncommitted', 'ks_rollback');
SELECT kv_drop_keyspace('ks_two');
COMMIT;
SELECT kv_get('ks:k', 'ks_rollback');
SELECT keyspace FROM kv_keyspaces() ORDER BY keyspace;

-- creating keyspaces is not granted to PUBLIC, and a keyspace is private
-- to its owner (privileges.sql tests the rights in full)
CREATE ROLE regress_kv_ks_user;
SET ROLE regress_kv_ks_user;
SELECT kv_create_keyspace('ks_user');
SELECT kv_drop_keyspace('ks_rollback');
SELECT kv_put('ks:user', 'by user', 'ks_rollback');
SELECT kv_get('ks:user', 'ks_rollback');
SELECT keyspace FROM kv_keyspaces() ORDER BY keyspace;
RESET ROLE;
GRANT EXECUTE ON FUNCTION kv_create_keyspace(text, boolean) TO regress_kv_ks_user;
SET ROLE regress_kv_ks_user;
SELECT kv_create_keyspace('ks_user');
SELECT keyspace, owner FROM kv_keyspaces() ORDER BY keyspace;
SELECT kv_drop_keyspace('ks_user');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION kv_create_keyspace(text, boolean) FROM regress_kv_ks_user;
DROP ROLE regress_kv_ks_user;

-- kvext.max_keyspaces (64 here, "default" and kvext's own keyspace of
-- rights included): one more is refused
-- with 53400 (configuration_limit_exceeded); a freed slot can be reused
SHOW kvext.max_keyspaces;
DO $$
DECLARE
    i int := 0;
BEGIN
    LOOP
        i := i + 1;
        BEGIN
            PERFORM kv_create_keyspace('ks_lim_' || i);
        EXCEPTION WHEN configuration_limit_exceeded THEN
            RAISE NOTICE 'refused with % after reaching % keyspaces',
                SQLSTATE, (SELECT count(*) FROM kv_keyspaces());
            EXIT;
        END;
        PERFORM kv_put('ks:k', 'in ks_lim_' || i, 'ks_lim_' || i);
    END LOOP;
END $$;
SELECT count(*) FROM kv_keyspaces();
SELECT kv_create_keyspace('ks_one_too_many');
SELECT kv_create_keyspace('ks_lim_1', true);
SELECT kv_count('ks_lim_1');
SELECT kv_drop_keyspace('ks_lim_1');
SELECT kv_create_keyspace('ks_one_too_many');
SELECT kv_put('ks:k', 'reused slot', 'ks_one_too_many');
SELECT kv_get('ks:k', 'ks_one_too_many'), kv_count('ks_one_too_many');
SELECT kv_create_keyspace('ks_lim_1');
-- drop them all
SELECT count(kv_drop_keyspace(keyspace)) FROM kv_keyspaces() WHERE keyspace LIKE 'ks\_%';
SELECT * FROM kv_keyspaces() ORDER BY keyspace;
-- the default keyspace was not affected
SELECT kv_get('ks:k'), kv_get('ks:n');
SELECT kv_delete('ks:k'), kv_delete('ks:n');
