--
-- privileges: keyspace owners and rights (README "Security").  Roles of
-- this file start with "regress_priv_", keyspaces with "priv_"; all are
-- dropped at the end.  kv_try (load.sql) prints an error's SQLSTATE.
--
\set SHOW_CONTEXT never

CREATE ROLE regress_priv_owner;
CREATE ROLE regress_priv_reader;
CREATE ROLE regress_priv_group;
CREATE ROLE regress_priv_member IN ROLE regress_priv_group;
CREATE ROLE regress_priv_noinherit NOINHERIT IN ROLE regress_priv_group;
CREATE ROLE regress_priv_monitor IN ROLE pg_monitor;
GRANT EXECUTE ON FUNCTION kv_create_keyspace(text, boolean) TO regress_priv_owner;

-- the state every refused call below must leave unchanged
CREATE TEMP VIEW priv_state AS
SELECT kv_digest('priv_a') AS digest, kv_count('priv_a') AS count,
       (SELECT owner || ' ' || rights::text FROM kv_keyspaces() WHERE keyspace = 'priv_a') AS acl;
GRANT SELECT ON priv_state TO PUBLIC;

-- "default" has no owner: only superusers use it until rights are granted
SELECT keyspace, owner, rights FROM kv_keyspaces() WHERE keyspace = 'default';
SET ROLE regress_priv_reader;
SELECT kv_try($$SELECT kv_get('k')$$);
SELECT kv_try($$SELECT kv_put('k', 'v')$$);
SELECT keyspace FROM kv_keyspaces();
RESET ROLE;

-- creating needs EXECUTE on kv_create_keyspace; the creator owns the
-- keyspace, which is private to it
SET ROLE regress_priv_reader;
SELECT kv_try($$SELECT kv_create_keyspace('priv_a')$$);
SET ROLE regress_priv_owner;
SELECT kv_create_keyspace('priv_a');
SELECT kv_put('a1', 'one', 'priv_a'), kv_put('a2', 'two', 'priv_a');
SELECT keyspace, entries, owner, rights FROM kv_keyspaces();
SET ROLE regress_priv_reader;
SELECT kv_try($$SELECT kv_get('a1', 'priv_a')$$);
SELECT kv_try($$SELECT kv_exists('a1', 'priv_a')$$);
SELECT kv_try($$SELECT kv_mget(ARRAY['a1'], 'priv_a')$$);
SELECT kv_try($$SELECT count(*) FROM kv_scan('', 'priv_a')$$);
SELECT kv_try($$SELECT kv_count('priv_a')$$);
SELECT kv_try($$SELECT kv_digest('priv_a')$$);
SELECT kv_try($$SELECT kv_put('a1', 'x', 'priv_a')$$);
SELECT kv_try($$SELECT kv_mput(ARRAY['a9'], ARRAY['x'], 'priv_a')$$);
SELECT kv_try($$SELECT kv_delete('a1', 'priv_a')$$);
SELECT kv_try($$SELECT kv_incr('n', 1, 'priv_a')$$);
SELECT kv_try($$SELECT kv_cas('a1', 'one', 'x', 'priv_a')$$);
SELECT kv_try($$SELECT kv_grant('priv_a', 'regress_priv_reader', 'all')$$);
SELECT kv_try($$SELECT kv_drop_keyspace('priv_a')$$);
SELECT keyspace FROM kv_keyspaces();
SELECT keyspace FROM kv_stats() WHERE keyspace IS NOT NULL;
RESET ROLE;
SELECT * FROM priv_state;

-- the owner grants read: reads work, writes do not
SET ROLE regress_priv_owner;
SELECT kv_grant('priv_a', 'regress_priv_reader', 'read');
SET ROLE regress_priv_reader;
SELECT kv_get('a1', 'priv_a'), kv_count('priv_a'), kv_exists('a2', 'priv_a');
SELECT key, value FROM kv_scan('', 'priv_a') ORDER BY key;
SELECT kv_try($$SELECT kv_put('a1', 'x', 'priv_a')$$);
SELECT kv_try($$SELECT kv_incr('n', 1, 'priv_a')$$);
SELECT keyspace, owner, rights FROM kv_keyspaces();
RESET ROLE;
SELECT * FROM priv_state;

-- write alone: writes, but no read and no read-modify-write
SET ROLE regress_priv_owner;
SELECT kv_revoke('priv_a', 'regress_priv_reader', 'read');
SELECT kv_grant('priv_a', 'regress_priv_reader', 'write');
SET ROLE regress_priv_reader;
SELECT kv_put('a3', 'three', 'priv_a');
SELECT kv_try($$SELECT kv_get('a3', 'priv_a')$$);
SELECT kv_try($$SELECT kv_cas('a3', 'three', 'x', 'priv_a')$$);
RESET ROLE;
SELECT kv_get('a3', 'priv_a');

-- membership: a grant to a group reaches its members that inherit
SET ROLE regress_priv_owner;
SELECT kv_grant('priv_a', 'regress_priv_group', 'read');
SET ROLE regress_priv_member;
SELECT kv_get('a1', 'priv_a');
SET ROLE regress_priv_noinherit;
SELECT kv_try($$SELECT kv_get('a1', 'priv_a')$$);
SET ROLE regress_priv_group;
SELECT kv_get('a1', 'priv_a');
RESET ROLE;

-- public
SET ROLE regress_priv_owner;
SELECT kv_grant('priv_a', 'public', 'read');
SET ROLE regress_priv_noinherit;
SELECT kv_get('a1', 'priv_a');
SET ROLE regress_priv_owner;
SELECT kv_revoke('priv_a', 'public', 'all');
SELECT keyspace, owner, rights FROM kv_keyspaces();
RESET ROLE;

-- a rollback undoes a grant; so does a rolled back savepoint
SET ROLE regress_priv_owner;
BEGIN;
SELECT kv_grant('priv_a', 'regress_priv_noinherit', 'all');
SELECT rights FROM kv_keyspaces() WHERE keyspace = 'priv_a';
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT kv_grant('priv_a', 'regress_priv_noinherit', 'all');
ROLLBACK TO s;
COMMIT;
SELECT rights FROM kv_keyspaces() WHERE keyspace = 'priv_a';
SET ROLE regress_priv_noinherit;
SELECT kv_try($$SELECT kv_get('a1', 'priv_a')$$);
RESET ROLE;

-- pg_monitor lists every keyspace (pg_read_all_stats), but reads none
SET ROLE regress_priv_monitor;
SELECT keyspace, owner FROM kv_keyspaces() WHERE keyspace LIKE 'priv\_%';
SELECT keyspace FROM kv_stats() WHERE keyspace LIKE 'priv\_%';
SELECT kv_try($$SELECT kv_get('a1', 'priv_a')$$);
RESET ROLE;

-- bad arguments: clear errors, nothing changed
SELECT * FROM priv_state;
SELECT kv_try($$SELECT kv_grant('priv_a', 'regress_priv_nobody', 'read')$$);
SELECT kv_try($$SELECT kv_grant('priv_a', 'regress_priv_reader', 'delete')$$);
SELECT kv_try($$SELECT kv_grant('priv_missing', 'regress_priv_reader', 'read')$$);
SELECT kv_try($$SELECT kv_grant(NULL, 'regress_priv_reader', 'read')$$);
SELECT kv_try($$SELECT kv_grant('priv_a', NULL, 'read')$$);
SELECT kv_try($$SELECT kv_revoke('priv_a', 'regress_priv_reader', NULL)$$);
-- revoking what was never granted is a no-op, as REVOKE is
SELECT kv_revoke('priv_a', 'regress_priv_monitor', 'all');
SELECT * FROM priv_state;

-- kvext's own keyspace of rights is nobody's to use, superusers included
SELECT kv_try(format($$SELECT count(*) FROM kv_scan('', %L)$$, chr(1) || 'acl'));
SELECT kv_try(format($$SELECT kv_put('priv_a', 'x', %L)$$, chr(1) || 'acl'));
SELECT kv_try(format($$SELECT kv_drop_keyspace(%L)$$, chr(1) || 'acl'));
SELECT kv_try(format($$SELECT kv_grant(%L, 'regress_priv_reader', 'all')$$, chr(1) || 'acl'));
SELECT count(*) FROM kv_keyspaces() WHERE keyspace LIKE chr(1) || '%';

-- a role named in rights cannot be dropped or renamed (rights follow names)
SELECT kv_try($$DROP ROLE regress_priv_reader$$);
SELECT kv_try($$ALTER ROLE regress_priv_owner RENAME TO regress_priv_owner2$$);
SELECT kv_try($$DROP ROLE regress_priv_group$$);
SET ROLE regress_priv_owner;
SELECT kv_revoke('priv_a', 'regress_priv_reader', 'all');
RESET ROLE;
DROP ROLE regress_priv_reader;

-- superusers grant on "default"
SELECT kv_grant('default', 'regress_priv_member', 'read');
SET ROLE regress_priv_member;
SELECT kv_get('no such key') IS NULL AS reads_default;
SELECT kv_try($$SELECT kv_put('k', 'v')$$);
RESET ROLE;
SELECT kv_revoke('default', 'regress_priv_member', 'read');

-- the owner drops the keyspace; a new one of the same name starts private
SET ROLE regress_priv_owner;
SELECT kv_drop_keyspace('priv_a');
RESET ROLE;
SELECT kv_create_keyspace('priv_a');
SELECT keyspace, owner, rights FROM kv_keyspaces() WHERE keyspace = 'priv_a';
SELECT kv_drop_keyspace('priv_a');

DROP VIEW priv_state;
REVOKE EXECUTE ON FUNCTION kv_create_keyspace(text, boolean) FROM regress_priv_owner;
DROP ROLE regress_priv_owner, regress_priv_member, regress_priv_noinherit,
  regress_priv_group, regress_priv_monitor;
