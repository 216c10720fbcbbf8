--
-- load: create the extension and pin down its SQL surface.
--
-- The test instance preloads kvext (test/kvext.conf), so CREATE EXTENSION
-- succeeds; the install script's kvext_check_preloaded() call is what
-- would make it fail with SQLSTATE 55000 on a server that does not.
--
CREATE EXTENSION kvext;

SELECT extname, extversion, extrelocatable FROM pg_extension WHERE extname = 'kvext';

-- every function of the extension: signature, result, volatility, whether
-- it is parallel unsafe (the writing functions must be), strictness (none is
-- strict: a NULL argument is an error, not a NULL result), and its comment
SELECT p.oid::regprocedure AS function,
       pg_get_function_result(p.oid) AS result,
       p.provolatile AS vol, p.proparallel = 'u' AS par_unsafe,
       p.proisstrict AS strict, d.description
  FROM pg_depend dep
  JOIN pg_proc p ON dep.classid = 'pg_proc'::regclass AND dep.objid = p.oid
  LEFT JOIN pg_description d ON d.classoid = 'pg_proc'::regclass AND d.objoid = p.oid
 WHERE dep.refclassid = 'pg_extension'::regclass
   AND dep.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'kvext')
   AND dep.deptype = 'e'
 ORDER BY p.proname, p.oid::regprocedure::text;

-- argument names and defaults (named notation is part of the API)
SELECT p.oid::regprocedure AS function,
       pg_get_function_arguments(p.oid) AS arguments
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'kv%'
 ORDER BY p.proname, p.oid::regprocedure::text;

-- keyspace administration is not granted to PUBLIC
SELECT p.oid::regprocedure AS function,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'kv%'
 ORDER BY p.proname, p.oid::regprocedure::text;

-- kv_locks is readable by every role, as pg_locks is (the key column is
-- filtered per row, see README "Monitoring")
SELECT has_table_privilege('public', 'kv_locks', 'SELECT') AS public_select;
-- kv_cluster is too; kv_replication shows conninfos: pg_monitor only
SELECT v, has_table_privilege('public', v, 'SELECT') AS public_select,
       has_table_privilege('pg_monitor', v, 'SELECT') AS pg_monitor_select
  FROM unnest(ARRAY['kv_cluster', 'kv_replication']) v;

-- the store starts empty, with only the default keyspace
SELECT * FROM kv_keyspaces() ORDER BY keyspace;
SELECT kv_count();
