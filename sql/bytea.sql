--
-- bytea: binary values round trip byte for byte.  Keys of this file start
-- with "bin:".
--
\set SHOW_CONTEXT never

-- all 256 byte values, in order
CREATE TEMP TABLE bin_src AS
SELECT decode(string_agg(lpad(to_hex(i), 2, '0'), '' ORDER BY i), 'hex') AS all_bytes
  FROM generate_series(0, 255) AS i;
SELECT length(all_bytes), md5(all_bytes) FROM bin_src;
SELECT kv_put('bin:all', all_bytes) FROM bin_src;
SELECT kv_get_bytea('bin:all') = all_bytes AS same,
       length(kv_get_bytea('bin:all')) AS length,
       md5(kv_get_bytea('bin:all')) AS md5
  FROM bin_src;
SELECT kv_get_bytea('bin:all');
-- every single byte value on its own, 0x00 included
DO $$
DECLARE
    n int := 0;
BEGIN
    FOR i IN 0..255 LOOP
        PERFORM kv_put('bin:one:' || i, set_byte('\x00'::bytea, 0, i));
    END LOOP;
    FOR i IN 0..255 LOOP
        IF kv_get_bytea('bin:one:' || i) = set_byte('\x00'::bytea, 0, i) THEN
            n := n + 1;
        END IF;
    END LOOP;
    RAISE NOTICE '% of 256 single-byte values read back unchanged', n;
END $$;
SELECT count(*) AS deleted FROM generate_series(0, 255) AS i WHERE kv_delete('bin:one:' || i);

-- NUL bytes anywhere: at the start, in the middle, at the end, only NULs
SELECT v AS written, kv_put('bin:nul', v), kv_get_bytea('bin:nul') AS read,
       kv_get_bytea('bin:nul') = v AS same
  FROM unnest(ARRAY['\x00'::bytea, '\x0000000000'::bytea, '\x00616263'::bytea,
                    '\x61620063'::bytea, '\x61626300'::bytea]) AS v;

-- the empty bytea is a value, not NULL
SELECT kv_put('bin:empty', ''::bytea);
SELECT kv_get_bytea('bin:empty'), kv_get_bytea('bin:empty') IS NULL AS is_null,
       kv_exists('bin:empty') AS exists, kv_get('bin:empty') = '' AS empty_text;

-- a large (1MB, the default kvext.max_value_size) value of pseudo-random bytes
CREATE TEMP TABLE bin_big AS
SELECT string_agg(sha256(i::text::bytea), ''::bytea ORDER BY i) AS b
  FROM generate_series(1, 32768) AS i;
SELECT length(b), md5(b) FROM bin_big;
SELECT kv_put('bin:big', b) FROM bin_big;
SELECT length(kv_get_bytea('bin:big')) AS length, md5(kv_get_bytea('bin:big')) AS md5,
       kv_get_bytea('bin:big') = b AS same
  FROM bin_big;
-- overwritten by a slightly different one, in a transaction: own write read back
BEGIN;
SELECT kv_put('bin:big', set_byte(b, 1048575, get_byte(b, 1048575) # 1)) FROM bin_big;
SELECT kv_get_bytea('bin:big') = b AS same_as_before,
       substr(kv_get_bytea('bin:big'), 1, 1048575) = substr(b, 1, 1048575) AS same_prefix
  FROM bin_big;
ROLLBACK;
SELECT kv_get_bytea('bin:big') = b AS same FROM bin_big;

-- text written, read as bytea: its bytes in the database encoding
SELECT kv_put('bin:text', 'héllo wörld ✓');
SELECT kv_get_bytea('bin:text');
SELECT kv_get_bytea('bin:text') = convert_to('héllo wörld ✓', 'UTF8') AS equals_convert_to;
SELECT convert_from(kv_get_bytea('bin:text'), 'UTF8');
SELECT kv_get_bytea('bin:empty-text') IS NULL AS missing;
SELECT kv_put('bin:empty-text', '');
SELECT kv_get_bytea('bin:empty-text');
-- numbers written by kv_incr too
SELECT kv_incr('bin:n', 255);
SELECT kv_get_bytea('bin:n');
-- kv_mget(), kv_exists() and kv_delete() do not care how a value was written
SELECT kv_mget(ARRAY['bin:text', 'bin:empty', 'bin:n']);
SELECT kv_exists('bin:all'), kv_delete('bin:all'), kv_exists('bin:all');

-- bytea written, read as text: valid UTF-8 reads fine (invalid text is
-- refused, see errors.sql)
SELECT kv_put('bin:utf8', convert_to('日本語', 'UTF8'));
SELECT kv_get('bin:utf8');
SELECT * FROM kv_scan('bin:utf8');
-- a binary value holding a number can be incremented; the result is text
SELECT kv_put('bin:n', '\x3431'::bytea);
SELECT kv_get('bin:n');
SELECT kv_incr('bin:n');
-- a key switches between text and binary with each write
SELECT kv_put('bin:switch', '\xfffe'::bytea);
SELECT kv_get_bytea('bin:switch');
BEGIN;
SELECT kv_put('bin:switch', 'now text');
SELECT kv_get('bin:switch');
ROLLBACK;
SELECT kv_get_bytea('bin:switch');
SELECT kv_put('bin:switch', 'now text');
SELECT kv_get('bin:switch');
-- kv_cas compares bytes, whatever type wrote them
SELECT kv_put('bin:cas', convert_to('abc', 'UTF8'));
SELECT kv_cas('bin:cas', 'abc', 'def');
SELECT kv_get('bin:cas');

-- kv_scan cannot list keys whose value is not valid text; kv_scan_bytea can,
-- byte for byte
SELECT key, value FROM kv_scan_bytea('bin:nul');
SELECT md5(value) = (SELECT md5(b) FROM bin_big) AS big_intact
  FROM kv_scan_bytea('bin:big');
SELECT count(*) > 0 AS lists_all FROM kv_scan_bytea('bin:');

-- clean up, through kv_scan_bytea
SELECT count(*) > 0 AS deleted_some FROM kv_scan_bytea('bin:') WHERE kv_delete(key);
SELECT count(*) FROM kv_scan_bytea('bin:');
DROP TABLE bin_src, bin_big;
