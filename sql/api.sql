--
-- api: the normal paths of every function.  Keys of this file start with
-- "api:"; they are all removed at the end.
--

-- kv_put / kv_get / kv_exists
SELECT kv_get('api:a') IS NULL AS missing_is_null, kv_exists('api:a') AS exists;
SELECT kv_put('api:a', 'alpha');
SELECT kv_get('api:a'), kv_exists('api:a');
-- overwrite
SELECT kv_put('api:a', 'alpha2');
SELECT kv_get('api:a');
-- a result of kv_put is void, usable in a FROM list too
SELECT * FROM kv_put('api:b', 'beta');
SELECT kv_get('api:b');

-- empty key and empty value are ordinary keys and values (not NULL)
SELECT kv_put('', 'empty key');
SELECT kv_get('') AS empty_key_value;
SELECT kv_put('api:empty', '');
SELECT kv_get('api:empty') = '' AS is_empty_string,
       kv_get('api:empty') IS NULL AS is_null,
       kv_exists('api:empty') AS exists;
SELECT kv_delete('');
SELECT kv_exists('') AS empty_key_exists;

-- unicode text: keys and values round trip unchanged
SELECT kv_put('api:ключ-鍵-🔑', 'значение — 値 — ✓ — ẞ');
SELECT kv_get('api:ключ-鍵-🔑'), length(kv_get('api:ключ-鍵-🔑')) AS chars,
       octet_length(kv_get('api:ключ-鍵-🔑')) AS bytes;
-- keys are compared byte for byte: no case folding, no normalization
SELECT kv_get('api:Ключ-鍵-🔑') IS NULL AS other_case_missing;
SELECT kv_put('api:case', 'lower'), kv_put('api:CASE', 'upper');
SELECT kv_get('api:case'), kv_get('api:CASE');
-- trailing spaces matter
SELECT kv_put('api:sp ', 'with space');
SELECT kv_get('api:sp') IS NULL AS without_space_missing, kv_get('api:sp ');

-- kv_delete returns whether the key existed
SELECT kv_delete('api:b') AS existed;
SELECT kv_delete('api:b') AS existed_again;
SELECT kv_delete('api:never') AS never_existed;
SELECT kv_get('api:b') IS NULL AS gone, kv_exists('api:b') AS exists;

-- kv_incr: a missing key counts as 0, default delta 1
SELECT kv_incr('api:n');
SELECT kv_incr('api:n');
SELECT kv_incr('api:n', 10);
SELECT kv_incr('api:n', -20);
SELECT kv_incr('api:n', 0);
SELECT kv_get('api:n');
-- the stored value is plain text and can be read or overwritten as such
SELECT kv_put('api:n', '+41');
SELECT kv_incr('api:n');
SELECT kv_get('api:n');
SELECT kv_put('api:n', '-0');
SELECT kv_incr('api:n', -1);
-- a negative delta on a missing key
SELECT kv_incr('api:m', -5);
-- the extremes of bigint are reachable
SELECT kv_put('api:big', '9223372036854775806');
SELECT kv_incr('api:big');
SELECT kv_put('api:small', '-9223372036854775807');
SELECT kv_incr('api:small', -1);
SELECT kv_get('api:small');
-- named arguments
SELECT kv_incr(key => 'api:n', delta => 100);
SELECT kv_incr('api:n', delta => -100);

-- kv_cas: compare and set
SELECT kv_put('api:c', 'one');
SELECT kv_cas('api:c', 'one', 'two') AS swapped;
SELECT kv_get('api:c');
SELECT kv_cas('api:c', 'one', 'three') AS swapped;   -- mismatch: no change
SELECT kv_get('api:c');
-- expected NULL: the key must not exist
SELECT kv_cas('api:c', NULL, 'four') AS swapped;      -- it exists
SELECT kv_get('api:c');
SELECT kv_cas('api:c2', NULL, 'created') AS swapped;  -- it does not
SELECT kv_get('api:c2');
SELECT kv_cas('api:c2', NULL, 'again') AS swapped;
SELECT kv_get('api:c2');
-- new NULL deletes
SELECT kv_cas('api:c', 'two', NULL) AS swapped;
SELECT kv_exists('api:c') AS exists;
-- a mismatching delete keeps the key
SELECT kv_cas('api:c2', 'wrong', NULL) AS swapped;
SELECT kv_get('api:c2');
-- comparison is exact: case, length, empty string versus missing
SELECT kv_cas('api:c2', 'CREATED', 'x') AS swapped;
SELECT kv_cas('api:c2', 'created ', 'x') AS swapped;
SELECT kv_cas('api:c2', '', 'x') AS swapped;
SELECT kv_cas('api:empty', NULL, 'x') AS swapped;     -- '' exists
SELECT kv_cas('api:empty', '', 'was empty') AS swapped;
SELECT kv_get('api:empty');
-- both NULL on a missing key: matches, nothing to delete
SELECT kv_cas('api:nothing', NULL, NULL) AS swapped;
SELECT kv_exists('api:nothing') AS exists;
-- kv_cas on a number written by kv_incr compares the text
SELECT kv_incr('api:cnt', 7);
SELECT kv_cas('api:cnt', '7', '8') AS swapped;
SELECT kv_incr('api:cnt');

-- kv_mget: values in order, NULL for missing keys, repeated keys repeated
SELECT kv_mget(ARRAY['api:a', 'api:missing', 'api:c2', 'api:a']);
SELECT kv_mget(ARRAY['api:missing']);
SELECT kv_mget('{}'::text[]);
SELECT array_length(kv_mget('{}'::text[]), 1) IS NULL AS empty_result;
SELECT kv_mget(ARRAY['api:empty', 'api:ключ-鍵-🔑']);
-- the result is a text[] that unnests in order
SELECT ord, v FROM unnest(kv_mget(ARRAY['api:c2', 'api:x', 'api:a'])) WITH ORDINALITY AS t(v, ord);

-- kv_mput: pairs; a repeated key ends with its last value
SELECT kv_mput(ARRAY['api:m1', 'api:m2', 'api:m3'], ARRAY['v1', 'v2', 'v3']);
SELECT kv_mget(ARRAY['api:m1', 'api:m2', 'api:m3']);
SELECT kv_mput(ARRAY['api:m1', 'api:m4', 'api:m1'], ARRAY['first', 'v4', 'last']);
SELECT kv_get('api:m1'), kv_get('api:m4');
-- empty arrays: nothing to do
SELECT kv_mput('{}'::text[], '{}'::text[]);
-- arrays with another lower bound work the same
SELECT kv_mput('[0:1]={api:m5,api:m6}'::text[], '[5:6]={five,six}'::text[]);
SELECT kv_get('api:m5'), kv_get('api:m6');

-- kv_scan: every key with the prefix; order is unspecified, hence ORDER BY
SELECT * FROM kv_scan('api:m') ORDER BY key;
SELECT * FROM kv_scan('api:m4') ORDER BY key;
SELECT * FROM kv_scan('api:nothing-here') ORDER BY key;
SELECT key FROM kv_scan('api:c') ORDER BY key;
-- the prefix is a byte prefix: no pattern characters
SELECT kv_put('api:pct%', 'percent'), kv_put('api:pct_', 'underscore');
SELECT * FROM kv_scan('api:pct%') ORDER BY key;
SELECT * FROM kv_scan('api:pct_') ORDER BY key;
-- '' (the default) is every key
SELECT count(*) = kv_count() AS scan_all_matches_count FROM kv_scan('');
SELECT count(*) = kv_count() AS scan_default_matches_count FROM kv_scan();
SELECT key, value FROM kv_scan() WHERE key LIKE 'api:m%' ORDER BY key;

-- kv_count
SELECT kv_count() AS before \gset
SELECT kv_put('api:count1', 'x'), kv_put('api:count2', 'y');
SELECT kv_count() - :before AS added;
SELECT kv_put('api:count1', 'overwrite');
SELECT kv_count() - :before AS added_after_overwrite;
SELECT kv_delete('api:count1'), kv_delete('api:count2');
SELECT kv_count() - :before AS added_after_delete;

-- the jsonb overload stores the text form of the jsonb value
SELECT kv_put('api:json', '{"b": [1, 2, {"c": null}], "a": 1}'::jsonb);
SELECT kv_get('api:json');
SELECT kv_get('api:json')::jsonb -> 'b' -> 2 AS element, (kv_get('api:json')::jsonb ->> 'a')::int AS a;
SELECT kv_get('api:json')::jsonb = '{"a":1,"b":[1,2,{"c":null}]}'::jsonb AS same_json;
SELECT kv_put('api:json', jsonb_build_object('k', 'ключ'), keyspace => 'default');
SELECT kv_get('api:json')::jsonb;
-- jsonb scalars too
SELECT kv_put('api:json', '42'::jsonb);
SELECT kv_incr('api:json');

-- named argument keyspace => for every function (the default keyspace)
SELECT kv_put('api:named', 'n', keyspace => 'default');
SELECT kv_put(key => 'api:named2', value => 'n2', keyspace => 'default');
SELECT kv_get('api:named', keyspace => 'default'),
       kv_get_bytea('api:named', keyspace => 'default'),
       kv_exists('api:named', keyspace => 'default');
SELECT kv_mget(ARRAY['api:named', 'api:named2'], keyspace => 'default');
SELECT kv_incr('api:named3', keyspace => 'default');
SELECT kv_incr('api:named3', 2, keyspace => 'default');
SELECT kv_cas('api:named3', '3', 'three', keyspace => 'default');
SELECT kv_mput(ARRAY['api:named4'], ARRAY['n4'], keyspace => 'default');
SELECT * FROM kv_scan('api:named', keyspace => 'default') ORDER BY key;
SELECT * FROM kv_scan(keyspace => 'default', prefix => 'api:named4');
SELECT kv_count(keyspace => 'default') = kv_count() AS same_count;
SELECT kv_delete('api:named', keyspace => 'default');

-- a user keyspace through the same functions (keyspace.sql tests them in depth)
SELECT kv_create_keyspace('api_ks');
SELECT kv_put('api:a', 'in api_ks', 'api_ks');
SELECT kv_get('api:a', 'api_ks'), kv_get('api:a');
SELECT kv_count('api_ks');
SELECT kv_drop_keyspace('api_ks');

-- the functions work inside ordinary queries, once per row
SELECT kv_put('api:row' || i, (i * i)::text) FROM generate_series(1, 5) AS i;
SELECT i, kv_get('api:row' || i) FROM generate_series(0, 6) AS i ORDER BY i;
SELECT sum(kv_incr('api:rows')) FROM generate_series(1, 10);
SELECT kv_get('api:rows');

-- batches of every size around the distance at which kv_mput and kv_mget
-- prefetch (functions.c): each key written and read back, in order
SELECT n,
       kv_mput(array_agg('api:batch' || n || ':' || i ORDER BY i),
               array_agg('v' || i ORDER BY i)) IS NOT NULL AS written,
       kv_mget(array_agg('api:batch' || n || ':' || i ORDER BY i) || 'api:none'::text)
         = array_agg('v' || i ORDER BY i) || NULL::text AS read_back
FROM generate_series(1, 18) AS n, generate_series(1, n) AS i
GROUP BY n ORDER BY n;

-- clean up: the default keyspace holds no "api:" key any more
SELECT count(*) > 0 AS deleted_some FROM kv_scan('api:') WHERE kv_delete(key);
SELECT count(*) AS left_over FROM kv_scan('api:');
SELECT kv_count();
