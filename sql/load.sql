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
-- it is parallel unsafe (the writing functions must be), strictness (no kv
-- function is strict: a NULL argument is an error, not a NULL result; the
-- wrapper's handler and validator are, as in contrib), and its comment
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

-- the foreign data wrapper, and the event trigger that checks the columns
-- of its foreign tables
SELECT fdwname, fdwhandler::regproc, fdwvalidator::regproc, fdwoptions
  FROM pg_foreign_data_wrapper;
SELECT evtname, evtevent, evtfoid::regproc, evtenabled, evttags
  FROM pg_event_trigger;

-- the store starts empty, with only the default keyspace
SELECT * FROM kv_keyspaces() ORDER BY keyspace;
SELECT kv_count();

-- A helper of the regress files that check errors (errors, fdw, ...):
-- kv_try(stmt): run stmt; 'ok' or the error as "SQLSTATE: message" plus
-- detail and hint.  The statement runs in a subtransaction (the exception
-- block), like any failed statement its writes are rolled back.
CREATE FUNCTION kv_try(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text; hnt text;
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    RETURN st || ': ' || msg
        || coalesce(' DETAIL: ' || nullif(det, ''), '')
        || coalesce(' HINT: ' || nullif(hnt, ''), '');
END $$;
