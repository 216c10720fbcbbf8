--
-- hostile: input no client should send, generated systematically from the
-- extension's own catalogue entries: NULL in every argument position, a
-- role without rights calling every function, hostile keyspace names, keys
-- and values in every position that takes them, odd arrays, zero bytes.
-- Each group of calls must end in a clear error (its SQLSTATE is printed)
-- and leave the whole store unchanged: a dump of every keyspace (name,
-- owner, rights, keys and values) is compared before and after.
-- Keys of this file start with "hostile:", keyspaces with "hostile_",
-- roles with "regress_hostile_".  errors.sql, keyspace.sql and
-- privileges.sql test the ordinary error paths one by one.
--
\set SHOW_CONTEXT never

-- the whole store, as one md5: every keyspace the superuser sees (all of
-- them), its owner and rights, and a digest of its keys and values
CREATE TEMP VIEW hostile_dump AS
SELECT md5(string_agg(format('%s|%s|%s|%s|%s', keyspace, entries, owner, rights,
                             kv_digest(keyspace)),
                      E'\n' ORDER BY keyspace COLLATE "C")) AS dump
  FROM kv_keyspaces();

-- an argument that works, by name and type, for the generated calls:
-- the calls reach the keyspace hostile_ks and its key hostile:k
CREATE FUNCTION hostile_arg(name text, type regtype) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE
    WHEN name = 'keyspace' THEN quote_literal('hostile_ks')
    WHEN name = 'key' AND type = 'bytea'::regtype THEN quote_literal(convert_to('hostile:k', 'UTF8')) || '::bytea'
    WHEN name = 'key' THEN quote_literal('hostile:k')
    WHEN name = 'keys' AND type = 'bytea[]'::regtype
        THEN format('ARRAY[%L::bytea]', convert_to('hostile:k', 'UTF8'))
    WHEN name = 'keys' THEN $a$ARRAY['hostile:k']$a$
    WHEN name = 'values' AND type = 'bytea[]'::regtype THEN $a$ARRAY['\x76'::bytea]$a$
    WHEN name = 'values' THEN $a$ARRAY['v']$a$
    WHEN name = 'prefix' AND type = 'bytea'::regtype THEN $a$'\x'::bytea$a$
    WHEN name = 'prefix' THEN quote_literal('hostile:')
    WHEN name = 'expected' THEN quote_literal('not the value') || '::' || type::text
    WHEN name = 'role' THEN quote_literal('regress_hostile_reader')
    WHEN name = 'right' THEN quote_literal('read')
    WHEN name = 'name' THEN quote_literal('hostile_table')
    WHEN type = 'text'::regtype THEN quote_literal('v')
    WHEN type = 'bytea'::regtype THEN $a$'\x76'::bytea$a$
    WHEN type = 'jsonb'::regtype THEN $a$'{}'::jsonb$a$
    WHEN type = 'text[]'::regtype THEN $a$ARRAY['v']$a$
    WHEN type = 'bytea[]'::regtype THEN $a$ARRAY['\x76'::bytea]$a$
    WHEN type = 'boolean'::regtype THEN 'false'
    WHEN type IN ('bigint'::regtype, 'integer'::regtype) THEN '0'
    WHEN type = 'pg_lsn'::regtype THEN $a$'0/0'::pg_lsn$a$
    ELSE 'NULL::' || type::text
END $$;

-- every SQL-callable function of the extension with its input arguments
-- (name, type, position), except the wrapper's handler, validator and
-- event trigger, which PostgreSQL itself calls
CREATE TEMP VIEW hostile_fn AS
SELECT p.oid::regprocedure AS fn, p.proname::text AS proname, a.name, a.type, a.pos
  FROM pg_proc p
  JOIN pg_depend dep ON dep.classid = 'pg_proc'::regclass AND dep.objid = p.oid
   AND dep.refclassid = 'pg_extension'::regclass AND dep.deptype = 'e'
   AND dep.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'kvext')
  LEFT JOIN LATERAL (
      SELECT u.name, u.type::regtype AS type, (row_number() OVER (ORDER BY u.o))::int AS pos
        FROM unnest(p.proargnames,
                    coalesce(p.proargmodes, array_fill('i'::"char", ARRAY[p.pronargs])),
                    coalesce(p.proallargtypes, p.proargtypes::oid[]))
             WITH ORDINALITY AS u(name, mode, type, o)
       WHERE u.mode IN ('i', 'b')) a ON true
 WHERE p.prorettype NOT IN ('fdw_handler'::regtype, 'event_trigger'::regtype)
   AND p.proname NOT IN ('kvext_fdw_validator', 'kvext_fdw_check_table', 'kv_try');

-- hostile_call(fn, pos, arg): a call of fn with every argument as
-- hostile_arg gives it, except argument pos, which is arg
CREATE TEMP VIEW hostile_fn_call AS
SELECT fn, proname FROM hostile_fn GROUP BY fn, proname;
CREATE FUNCTION hostile_call(f regprocedure, pos int, arg text) RETURNS text
LANGUAGE sql STABLE AS $$
SELECT format('SELECT count(*) FROM %s(%s)', min(proname),
              coalesce(string_agg(CASE WHEN a.pos = $2 THEN $3 ELSE hostile_arg(a.name, a.type) END,
                                  ', ' ORDER BY a.pos) FILTER (WHERE a.pos IS NOT NULL), ''))
  FROM hostile_fn a WHERE a.fn = $1
$$;
GRANT SELECT ON hostile_fn, hostile_fn_call TO PUBLIC;

-- the store to protect: keys in default and in a private keyspace, text
-- and binary values (zero bytes included), an empty value, and a grant
CREATE ROLE regress_hostile_reader;
CREATE ROLE regress_hostile_nobody;
SELECT kv_create_keyspace('hostile_ks');
SELECT kv_put('hostile:k', 'v0', 'hostile_ks'),
       kv_put('hostile:n', '41', 'hostile_ks'),
       kv_put('hostile:empty', '', 'hostile_ks'),
       kv_put('hostile:zeros', '\x000000'::bytea, 'hostile_ks'),
       kv_put('hostile:k', 'in default');
SELECT kv_grant('hostile_ks', 'regress_hostile_reader', 'read');
SELECT dump AS before FROM hostile_dump \gset

--
-- NULL in every argument position of every function: 22004 where the
-- argument is required.  kv_cas takes NULL as "absent" (expected) and
-- "delete" (new); kv_create_keyspace and kv_drop_keyspace's flags, and
-- the internal kvext_fdw functions' flags, arrays and prefix have meanings
-- of their own (their results are listed)
--
SELECT fn, pos, name, kv_try(hostile_call(fn, pos, 'NULL::' || type::text)) AS result
  FROM hostile_fn WHERE pos IS NOT NULL
 ORDER BY fn::text COLLATE "C", pos;
SELECT dump = :'before' AS unchanged FROM hostile_dump;

-- NULL inside every array argument, first and last element
SELECT fn, pos, name, v AS arg, kv_try(hostile_call(fn, pos, v)) AS result
  FROM hostile_fn,
       LATERAL (VALUES (format('ARRAY[NULL, %s]::%s', regexp_replace(hostile_arg(name, type), '^ARRAY\[(.*)\]$', '\1'), type)),
                       (format('ARRAY[%s, NULL]::%s', regexp_replace(hostile_arg(name, type), '^ARRAY\[(.*)\]$', '\1'), type))) v(v)
 WHERE type IN ('text[]'::regtype, 'bytea[]'::regtype)
 ORDER BY fn::text COLLATE "C", pos, v COLLATE "C";
SELECT dump = :'before' AS unchanged FROM hostile_dump;

--
-- every function, called by a role without any right: 42501 (no EXECUTE,
-- or no right on hostile_ks), and the listings show nothing of hostile_ks
--
SET ROLE regress_hostile_nobody;
SELECT fn, kv_try(hostile_call(fn, 0, NULL)) AS result
  FROM hostile_fn_call ORDER BY fn::text COLLATE "C";
SELECT count(*) AS sees_hostile_ks FROM kv_keyspaces() WHERE keyspace LIKE 'hostile%';
SELECT count(*) AS sees_hostile_ks FROM kv_stats() WHERE keyspace LIKE 'hostile%';
RESET ROLE;
SELECT dump = :'before' AS unchanged FROM hostile_dump;
-- a role that may read hostile_ks writes nothing there either
SET ROLE regress_hostile_reader;
SELECT fn, kv_try(hostile_call(fn, 0, NULL)) AS result
  FROM hostile_fn_call ORDER BY fn::text COLLATE "C";
RESET ROLE;
SELECT dump = :'before' AS unchanged FROM hostile_dump;

--
-- hostile keyspace names in every keyspace position: none exists, none
-- is created by a call other than kv_create_keyspace (which refuses the
-- invalid ones); errors only, one line per name
--
CREATE TEMP TABLE hostile_names(label text, ks text);
INSERT INTO hostile_names VALUES
    ('empty', ''),
    ('64 bytes', repeat('k', 64)),
    ('1MB', repeat('k', 1048576)),
    ('quote', 'hostile''ks'),
    ('double quote', 'hostile"ks'),
    ('sql', 'x''); SELECT kv_drop_keyspace(''hostile_ks''); --'),
    ('format', '%s%s%s%n%x'),
    ('backslash', E'hostile\\ks'),
    ('space only', ' '),
    ('leading space', ' hostile_ks'),
    ('trailing space', 'hostile_ks '),
    ('nbsp', 'hostile_ks' || chr(160)),
    ('zero width', 'hostile' || chr(8203) || '_ks'),
    ('rtl', 'hostile' || chr(8238) || '_ks'),
    ('tab', E'hostile\tks'),
    ('newline', E'hostile\nks'),
    ('escape', E'hostile\x1bks'),
    ('del', E'hostile\x7fks'),
    ('rights keyspace', chr(1) || 'acl'),
    ('case', 'HOSTILE_KS'),
    ('emoji', 'hostile_' || chr(128165));
SELECT label, octet_length(ks) AS bytes,
       string_agg(DISTINCT split_part(kv_try(hostile_call(f.fn, f.pos, quote_literal(ks))), ':', 1), ' ') AS sqlstates
  FROM hostile_names, hostile_fn f
 WHERE f.name = 'keyspace' AND f.proname NOT IN ('kv_create_keyspace')
 GROUP BY label, ks ORDER BY label COLLATE "C";
SELECT dump = :'before' AS unchanged FROM hostile_dump;
-- kv_create_keyspace: the names it refuses, with the error (long names
-- are shown cut short); the ones it accepts work in every function, in
-- hostile_roundtrip, and are listed by kv_keyspaces as they were given
CREATE FUNCTION hostile_roundtrip(ks text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kv_put('k', 'v', ks), kv_put('b', '\x00ff'::bytea, ks), kv_put('j', '{"a": 1}'::jsonb, ks),
            kv_mput(ARRAY['m1', 'm2'], ARRAY['1', '2'], ks), kv_incr('n', 5, ks),
            kv_cas('m1', '1', 'one', ks), kv_delete('m2', ks);
    PERFORM kv_grant(ks, 'regress_hostile_reader', 'read'), kv_revoke(ks, 'regress_hostile_reader', 'read');
    IF kv_get('k', ks) IS DISTINCT FROM 'v' OR kv_get_bytea('b', ks) <> '\x00ff'
       OR NOT kv_exists('j', ks) OR kv_mget(ARRAY['m1', 'm2', 'n'], ks) <> ARRAY['one', NULL, '5']
       OR kv_count(ks) <> 5 OR (SELECT string_agg(key || '=' || value, ',') FROM kv_scan('m', ks)) <> 'm1=one'
       OR (SELECT count(*) FROM kv_scan_bytea('', ks)) <> 5 OR kv_digest(ks) IS NULL
       OR (SELECT count(*) FROM kv_keyspaces() WHERE keyspace = ks) <> 1
       OR (SELECT count(*) FROM kvext_fdw_remote_read(ks, false, false, '\x'::bytea, NULL)) <> 5
    THEN
        RETURN 'wrong';
    END IF;
    RETURN 'ok';
END $$;
SELECT label, left(kv_try(format('SELECT kv_create_keyspace(%L)', ks)), 200) AS result
  FROM hostile_names ORDER BY label COLLATE "C";
SELECT label, kv_try(format('SELECT hostile_roundtrip(%L)', ks)) AS roundtrip,
       kv_try(format('SELECT hostile_roundtrip(%L)', ks)) AS again
  FROM hostile_names JOIN kv_keyspaces() k ON k.keyspace = ks ORDER BY label COLLATE "C";
SELECT count(kv_drop_keyspace(ks)) AS dropped FROM hostile_names JOIN kv_keyspaces() k ON k.keyspace = ks;
SELECT dump = :'before' AS unchanged FROM hostile_dump;
-- a too long name is shown cut short in every error, whatever the function
SELECT result FROM (
    SELECT DISTINCT left(kv_try(hostile_call(f.fn, f.pos, quote_literal(repeat('k', 1048576)))), 200) AS result
      FROM hostile_fn f WHERE f.name = 'keyspace') r
 ORDER BY result COLLATE "C";

--
-- empty and oversized keys, prefixes and values in every position that
-- takes one: reads find nothing, writes fail with 54000 (limits: 8kB keys
-- and 1MB values, errors.sql tests them at the byte)
--
SELECT f.fn, f.pos, f.name, v.label,
       kv_try(hostile_call(f.fn, f.pos, format(v.expr, f.type))) AS result
  FROM hostile_fn f,
       (VALUES ('8kB+1', 'repeat(''k'', 8193)', 'key'),
               ('1MB', 'repeat(''k'', 1048576)', 'key'),
               ('8kB+1', 'ARRAY[''hostile:k'', repeat(''k'', 8193)]', 'keys'),
               ('1MB+1', 'repeat(''v'', 1048577)', 'value'),
               ('1MB+1', 'ARRAY[''v'', repeat(''v'', 1048577)]', 'values'),
               ('1MB+1', 'repeat(''v'', 1048577)', 'new')) AS v(label, expr, name)
 WHERE f.name = v.name AND f.proname LIKE 'kv\_%'
   AND f.type IN ('text'::regtype, 'text[]'::regtype)
 ORDER BY f.fn::text COLLATE "C", f.pos, v.label COLLATE "C";
SELECT kv_try($$SELECT kv_put('hostile:k', convert_to(repeat('v', 1048577), 'UTF8'), 'hostile_ks')$$) AS bytea,
       kv_try($$SELECT kv_put('hostile:k', to_jsonb(repeat('v', 1048576)), 'hostile_ks')$$) AS jsonb,
       kv_try($$SELECT kvext_fdw_remote_insert('hostile_ks', ARRAY['\x6b'::bytea], ARRAY[convert_to(repeat('v', 1048577), 'UTF8')], true, true)$$) AS remote_insert,
       kv_try($$SELECT kvext_fdw_remote_insert('hostile_ks', ARRAY[convert_to(repeat('k', 8193), 'UTF8')], ARRAY['\x76'::bytea], true, true)$$) AS remote_insert_key,
       kv_try($$SELECT kvext_fdw_remote_cas('hostile_ks', '\x6b'::bytea, NULL, convert_to(repeat('v', 1048577), 'UTF8'), true)$$) AS remote_cas;
SELECT dump = :'before' AS unchanged FROM hostile_dump;
-- the empty key and the empty value are ordinary ones
BEGIN;
SELECT kv_put('', '', 'hostile_ks'), kv_put('', 'in default');
SELECT kv_get('', 'hostile_ks') = '' AS empty_value, kv_exists('', 'hostile_ks'),
       kv_mget(ARRAY['', ''], 'hostile_ks'), kv_get('') AS in_default,
       (SELECT count(*) FROM kv_scan_bytea('', 'hostile_ks') WHERE key = '') AS scanned;
SELECT kv_delete('', 'hostile_ks'), kv_delete(''), kv_exists('', 'hostile_ks');
COMMIT;
SELECT dump = :'before' AS unchanged FROM hostile_dump;

--
-- bytea with zero bytes: stored and read byte for byte; never read as
-- text (22021), never parsed as a number up to the zero byte, never equal
-- to the text before the zero
--
BEGIN;
SELECT kv_put('hostile:z1', '\x3100'::bytea, 'hostile_ks'),
       kv_put('hostile:z2', '\x00'::bytea, 'hostile_ks'),
       kv_put('hostile:z3', decode(repeat('00', 1048576), 'hex'), 'hostile_ks');
SELECT kv_get_bytea('hostile:z1', 'hostile_ks') AS z1, kv_get_bytea('hostile:z2', 'hostile_ks') AS z2,
       octet_length(kv_get_bytea('hostile:z3', 'hostile_ks')) AS z3_bytes,
       (SELECT string_agg(key || '=' || octet_length(value), ' ' ORDER BY key COLLATE "C")
          FROM kv_scan_bytea('hostile:z', 'hostile_ks')) AS scanned;
SELECT stmt, kv_try(stmt) FROM (VALUES
    ($$SELECT kv_get('hostile:z1', 'hostile_ks')$$),
    ($$SELECT kv_mget(ARRAY['hostile:k', 'hostile:z2'], 'hostile_ks')$$),
    ($$SELECT count(*) FROM kv_scan('hostile:z', 'hostile_ks')$$),
    ($$SELECT kv_incr('hostile:z1', 1, 'hostile_ks')$$),
    ($$SELECT kv_put('hostile:z4', decode(repeat('00', 1048577), 'hex'), 'hostile_ks')$$),
    -- a key cannot hold a zero byte: not through the internal bytea entry points either
    ($$SELECT kvext_fdw_remote_insert('hostile_ks', ARRAY['\x6b00'::bytea], ARRAY['\x76'::bytea], true, true)$$),
    ($$SELECT kvext_fdw_remote_cas('hostile_ks', '\x6b00'::bytea, '\x'::bytea, '\x76'::bytea, true)$$),
    -- nor a value written as text
    ($$SELECT kvext_fdw_remote_insert('hostile_ks', ARRAY['\x6b'::bytea], ARRAY['\x7600'::bytea], false, true)$$),
    ($$SELECT kvext_fdw_remote_cas('hostile_ks', '\x6b'::bytea, '\x'::bytea, '\x7600'::bytea, false)$$),
    ($$SELECT count(*) FROM kvext_fdw_remote_read('hostile_ks', false, false, '\x6800'::bytea, NULL)$$),
    ($$SELECT count(*) FROM kvext_fdw_remote_read('hostile_ks', false, false, NULL, ARRAY['\x6b00'::bytea])$$)
) AS t(stmt);
SELECT kv_cas('hostile:z1', '1', 'replaced', 'hostile_ks') AS text_before_zero_matches,
       kv_get_bytea('hostile:z1', 'hostile_ks') AS z1;
ROLLBACK;
SELECT dump = :'before' AS unchanged FROM hostile_dump;

--
-- arrays: only NULLs, more dimensions, other lower bounds, mismatched
-- shapes with equal counts, many elements; kv_mput writes all or nothing
--
SELECT stmt, kv_try(stmt) FROM (VALUES
    ($$SELECT kv_mget(ARRAY[NULL]::text[], 'hostile_ks')$$),
    ($$SELECT kv_mput(ARRAY[NULL]::text[], ARRAY[NULL]::text[], 'hostile_ks')$$),
    ($$SELECT kv_mget('{{{hostile:k}}}', 'hostile_ks')$$),
    ($$SELECT kv_mput('{{{hostile:k}}}', '{{{v}}}', 'hostile_ks')$$),
    ($$SELECT kv_mput('{hostile:a,hostile:b}', '{{v,w}}', 'hostile_ks')$$),
    ($$SELECT kv_mput('{{hostile:a},{hostile:b}}', '{{v,w}}', 'hostile_ks')$$),
    ($$SELECT kv_mput('{{}}', '{{}}', 'hostile_ks')$$),
    ($$SELECT kv_mget('[0:1]={hostile:k,hostile:n}', 'hostile_ks')$$),
    ($$SELECT kv_mget('[-2147483648:-2147483647]={hostile:k,hostile:n}', 'hostile_ks')$$),
    ($$SELECT kv_mput(array_fill('hostile:a'::text, ARRAY[3]), array_fill(NULL::text, ARRAY[3]), 'hostile_ks')$$),
    ($$SELECT kv_mput(array_fill('hostile:a'::text, ARRAY[100000]), array_fill('v'::text, ARRAY[100001]), 'hostile_ks')$$),
    ($$SELECT kvext_fdw_remote_insert('hostile_ks', '{{"\\x6b"}}', '{"\\x76"}', true, true)$$),
    ($$SELECT kvext_fdw_remote_insert('hostile_ks', '{"\\x6b","\\x6c"}', '{"\\x76"}', true, true)$$),
    ($$SELECT count(*) FROM kvext_fdw_remote_read('hostile_ks', false, false, NULL, '{{"\\x6b"}}')$$)
) AS t(stmt);
SELECT dump = :'before' AS unchanged FROM hostile_dump;
-- shapes that are not errors: other lower bounds (elements pair up in
-- order), a repeated key (the last one wins), many elements
BEGIN;
SELECT kv_mput('[5:6]={hostile:a,hostile:b}', '[-1:0]={one,two}', 'hostile_ks');
SELECT kv_mget('[0:1]={hostile:a,hostile:b}', 'hostile_ks') AS mget;
SELECT kv_mput(ARRAY['hostile:a', 'hostile:a'], ARRAY['first', 'last'], 'hostile_ks');
SELECT kv_get('hostile:a', 'hostile_ks') AS repeated;
SELECT kv_mput(array_agg('hostile:many:' || i), array_agg(i::text), 'hostile_ks')
  FROM generate_series(1, 100000) i;
SELECT cardinality(kv_mget(array_fill('hostile:k'::text, ARRAY[100000]), 'hostile_ks')) AS mget_many,
       kv_count('hostile_ks');
ROLLBACK;
SELECT dump = :'before' AS unchanged FROM hostile_dump;

--
-- hostile role names and rights in kv_grant and kv_revoke: errors (long
-- names shown cut short), or for kv_revoke of a role that does not exist,
-- nothing to do
--
SELECT fn, label, left(kv_try(format('SELECT %s(%L, %L, %L)', fn, 'hostile_ks', r, g)), 150) AS result
  FROM unnest(ARRAY['kv_grant', 'kv_revoke']) fn,
       (VALUES ('empty role', '', 'read'),
               ('role 1MB', repeat('r', 1048576), 'read'),
               ('role quoted', '"regress_hostile_reader"', 'read'),
               ('role space', 'regress_hostile_reader ', 'read'),
               ('role PUBLIC', 'PUBLIC', 'read'),
               ('right empty', 'regress_hostile_reader', ''),
               ('right space', 'regress_hostile_reader', ' read'),
               ('right list', 'regress_hostile_reader', 'read,write'),
               ('right 1MB', 'regress_hostile_reader', repeat('a', 1048576))) AS v(label, r, g)
 ORDER BY fn, label COLLATE "C";
SELECT dump = :'before' AS unchanged FROM hostile_dump;

-- clean up
SELECT kv_drop_keyspace('hostile_ks'), kv_delete('hostile:k');
DROP ROLE regress_hostile_reader, regress_hostile_nobody;
DROP FUNCTION hostile_arg(text, regtype), hostile_call(regprocedure, int, text), hostile_roundtrip(text);
