/*-------------------------------------------------------------------------
 *
 * functions.c
 *	  The SQL API: kv_get, kv_put and family.
 *
 * Each function checks its arguments completely before touching the store,
 * so a bad argument changes nothing; every error carries an SQLSTATE:
 *	22004	a NULL key, value, keyspace or delta
 *	54000	a key over kvext.max_key_size or a value over
 *			kvext.max_value_size (writes only: reads of a longer key simply
 *			find nothing)
 *	42704	unknown keyspace
 *	25006	a write in a read-only transaction, on a standby, or on a
 *			follower of a replication group (the hint names the leader)
 *	2202E	kv_mput arrays of different lengths
 *	22021	a key, value or keyspace name read as text that is not valid
 *			UTF-8, the store's encoding (store/text.c)
 *	22P05	one with a character the database encoding lacks
 * and, from store.c, 53200 (store full), 22P02 / 22003 (kv_incr).
 *
 * Text arguments (keys, text values, prefixes, keyspace names) are
 * converted to the store's UTF-8 first, before any size check or lookup,
 * and text results back to the database encoding (store/text.c); a UTF8
 * database converts nothing.
 *
 * Writes follow the transaction (see txn.c); reads see committed data plus
 * the current transaction's own writes.  The functions are not STRICT:
 * a NULL argument is an error, not a NULL result.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "api/api.h"
#include "kvext.h"
#include "log/visible.h"
#include "shmem.h"
#include "store/acl.h"
#include "store/keyspace.h"
#include "store/store.h"
#include "store/text.h"
#include "store/writeset.h"

PG_FUNCTION_INFO_V1(kv_get);
PG_FUNCTION_INFO_V1(kv_get_bytea);
PG_FUNCTION_INFO_V1(kv_exists);
PG_FUNCTION_INFO_V1(kv_put);
PG_FUNCTION_INFO_V1(kv_put_bytea);
PG_FUNCTION_INFO_V1(kv_delete);
PG_FUNCTION_INFO_V1(kv_incr);
PG_FUNCTION_INFO_V1(kv_cas);
PG_FUNCTION_INFO_V1(kv_mget);
PG_FUNCTION_INFO_V1(kv_mput);
PG_FUNCTION_INFO_V1(kv_scan);
PG_FUNCTION_INFO_V1(kv_scan_bytea);
PG_FUNCTION_INFO_V1(kv_count);
PG_FUNCTION_INFO_V1(kv_create_keyspace);
PG_FUNCTION_INFO_V1(kv_drop_keyspace);
PG_FUNCTION_INFO_V1(kv_keyspaces);
PG_FUNCTION_INFO_V1(kv_grant);
PG_FUNCTION_INFO_V1(kv_revoke);
PG_FUNCTION_INFO_V1(kvext_check_preloaded);

/* raise 22004 for a NULL argument */
static void
report_null(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s must not be null", what)));
}

/*
 * KvCheckKeySize
 *		Raise 54000 for a key over kvext.max_key_size (writes only).
 */
void
KvCheckKeySize(uint32 keylen)
{
	if (keylen > (uint32) kvext_max_key_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("key is too long"),
				 errdetail("The key is %u bytes; kvext.max_key_size is %d bytes.",
						   keylen, kvext_max_key_size)));
}

/*
 * KvCheckValueSize
 *		Raise 54000 for a value over kvext.max_value_size.
 */
void
KvCheckValueSize(uint32 vallen)
{
	if (vallen > (uint32) kvext_max_value_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value is too long"),
				 errdetail("The value is %u bytes; kvext.max_value_size is %d bytes.",
						   vallen, kvext_max_value_size)));
}

/*
 * the key argument as stored (UTF-8); for writes, also checked against the
 * size limit
 */
static inline text *
arg_key(FunctionCallInfo fcinfo, int argno, bool write)
{
	text	   *key;

	if (PG_ARGISNULL(argno))
		report_null("key");
	key = KvTextArgToStore(PG_GETARG_TEXT_PP(argno));
	if (write)
		KvCheckKeySize(VARSIZE_ANY_EXHDR(key));
	return key;
}

/*
 * the keyspace argument, resolved for a read or a write, and checked for
 * the rights (KV_RIGHT_*) the call needs
 */
static inline KvKeyspaceRef
arg_keyspace(FunctionCallInfo fcinfo, int argno, int rights)
{
	text	   *name;
	KvKeyspaceRef ref;

	if (PG_ARGISNULL(argno))
		report_null("keyspace");
	name = KvTextArgToStore(PG_GETARG_TEXT_PP(argno));
	ref = KvKeyspaceResolve(VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name),
							(rights & KV_RIGHT_WRITE) != 0);
	KvAclCheck(ref, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name), rights);
	return ref;
}

/* common checks of every writing function (a follower refuses: 25006) */
static void
prepare_write(const char *fname)
{
	PreventCommandIfReadOnly(fname);
	PreventCommandIfParallelMode(fname);
	KvVisibleCheckWritable();
}

static Datum
get_common(FunctionCallInfo fcinfo, KvReadMode mode)
{
	text	   *key;
	KvKeyspaceRef ks;
	struct varlena *v;

	KvCheckAvailable();
	key = arg_key(fcinfo, 0, false);
	ks = arg_keyspace(fcinfo, 1, KV_RIGHT_READ);

	if (!KvStoreGet(ks, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), mode, &v))
		PG_RETURN_NULL();
	PG_RETURN_POINTER(v);
}

/*
 * kv_get(key text, keyspace text) returns text
 */
Datum
kv_get(PG_FUNCTION_ARGS)
{
	return get_common(fcinfo, KV_READ_TEXT);
}

/*
 * kv_get_bytea(key text, keyspace text) returns bytea
 */
Datum
kv_get_bytea(PG_FUNCTION_ARGS)
{
	return get_common(fcinfo, KV_READ_BYTEA);
}

/*
 * kv_exists(key text, keyspace text) returns boolean
 */
Datum
kv_exists(PG_FUNCTION_ARGS)
{
	text	   *key;
	KvKeyspaceRef ks;

	KvCheckAvailable();
	key = arg_key(fcinfo, 0, false);
	ks = arg_keyspace(fcinfo, 1, KV_RIGHT_READ);
	PG_RETURN_BOOL(KvStoreGet(ks, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
							  KV_READ_EXISTS, NULL));
}

static Datum
put_common(FunctionCallInfo fcinfo, bool binary)
{
	text	   *key;
	struct varlena *value;
	KvKeyspaceRef ks;
	KvWrite		w = {0};

	KvCheckAvailable();
	key = arg_key(fcinfo, 0, true);
	if (PG_ARGISNULL(1))
		report_null("value");
	value = PG_GETARG_VARLENA_PP(1);
	if (!binary)
		value = KvTextArgToStore(value);
	KvCheckValueSize(VARSIZE_ANY_EXHDR(value));
	ks = arg_keyspace(fcinfo, 2, KV_RIGHT_WRITE);
	prepare_write("kv_put()");

	w.op = KV_OP_PUT;
	w.value = VARDATA_ANY(value);
	w.vallen = VARSIZE_ANY_EXHDR(value);
	w.binary = binary;
	KvStoreWrite(ks, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), &w);
	PG_RETURN_VOID();
}

/*
 * kv_put(key text, value text, keyspace text) returns void
 */
Datum
kv_put(PG_FUNCTION_ARGS)
{
	return put_common(fcinfo, false);
}

/*
 * kv_put(key text, value bytea, keyspace text) returns void
 */
Datum
kv_put_bytea(PG_FUNCTION_ARGS)
{
	return put_common(fcinfo, true);
}

/*
 * kv_delete(key text, keyspace text) returns boolean: whether it existed
 */
Datum
kv_delete(PG_FUNCTION_ARGS)
{
	text	   *key;
	KvKeyspaceRef ks;
	KvWrite		w = {0};

	KvCheckAvailable();
	key = arg_key(fcinfo, 0, false);
	ks = arg_keyspace(fcinfo, 1, KV_RIGHT_WRITE);
	prepare_write("kv_delete()");

	w.op = KV_OP_DELETE;
	KvStoreWrite(ks, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), &w);
	PG_RETURN_BOOL(w.existed);
}

/*
 * kv_incr(key text, delta bigint, keyspace text) returns bigint
 */
Datum
kv_incr(PG_FUNCTION_ARGS)
{
	text	   *key;
	KvKeyspaceRef ks;
	KvWrite		w = {0};

	KvCheckAvailable();
	key = arg_key(fcinfo, 0, true);
	if (PG_ARGISNULL(1))
		report_null("delta");
	ks = arg_keyspace(fcinfo, 2, KV_RIGHT_ALL);
	prepare_write("kv_incr()");

	w.op = KV_OP_INCR;
	w.delta = PG_GETARG_INT64(1);
	KvStoreWrite(ks, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), &w);
	PG_RETURN_INT64(w.result);
}

/*
 * kv_cas(key text, expected text, new text, keyspace text) returns boolean
 *
 * Writes new if the key's current value equals expected (expected NULL:
 * the key must not exist); new NULL deletes the key.  Returns whether the
 * comparison matched.
 */
Datum
kv_cas(PG_FUNCTION_ARGS)
{
	text	   *key;
	KvKeyspaceRef ks;
	KvWrite		w = {0};

	KvCheckAvailable();
	key = arg_key(fcinfo, 0, true);
	if (!PG_ARGISNULL(1))
	{
		text	   *expected = KvTextArgToStore(PG_GETARG_TEXT_PP(1));

		w.expected = VARDATA_ANY(expected);
		w.expectedlen = VARSIZE_ANY_EXHDR(expected);
	}
	if (!PG_ARGISNULL(2))
	{
		text	   *value = KvTextArgToStore(PG_GETARG_TEXT_PP(2));

		w.value = VARDATA_ANY(value);
		w.vallen = VARSIZE_ANY_EXHDR(value);
		KvCheckValueSize(w.vallen);
	}
	ks = arg_keyspace(fcinfo, 3, KV_RIGHT_ALL);
	prepare_write("kv_cas()");

	w.op = KV_OP_CAS;
	KvStoreWrite(ks, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), &w);
	PG_RETURN_BOOL(w.swapped);
}

/*
 * a one-dimensional text[] argument as elements, converted to stored text;
 * NULL elements allowed
 */
static int
arg_text_array(FunctionCallInfo fcinfo, int argno, const char *what,
			   Datum **elems, bool **nulls)
{
	ArrayType  *arr;
	int			n;

	if (PG_ARGISNULL(argno))
		report_null(what);
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, elems, nulls, &n);
	if (KvTextConverts())
		for (int i = 0; i < n; i++)
			if (!(*nulls)[i])
				(*elems)[i] = PointerGetDatum(KvTextArgToStore(DatumGetTextPP((*elems)[i])));
	return n;
}

/*
 * prefetch_ahead
 *		Before key i of a batch of n keys: prefetch the chain of key i + D,
 *		whose bucket was prefetched D keys ago, and the bucket of key i + 2D
 *		(D = KV_PREFETCH_DISTANCE; the first 2D buckets at i = 0), so that
 *		the batch's cache misses overlap (KvStorePrefetch).
 */
#define KV_PREFETCH_DISTANCE 4

static void
prefetch_key(KvKeyspaceRef ks, Datum key, bool chain)
{
	text	   *k = DatumGetTextPP(key);

	KvStorePrefetch(ks, VARDATA_ANY(k), VARSIZE_ANY_EXHDR(k), chain);
}

static inline void
prefetch_ahead(KvKeyspaceRef ks, Datum *keys, int i, int n)
{
	const int	d = KV_PREFETCH_DISTANCE;

	if (n <= 1)
		return;
	if (i == 0)
		for (int j = 0; j < Min(n, 2 * d); j++)
			prefetch_key(ks, keys[j], false);
	if (i + d < n)
		prefetch_key(ks, keys[i + d], true);
	if (i > 0 && i + 2 * d - 1 < n)
		prefetch_key(ks, keys[i + 2 * d - 1], false);
}

/*
 * kv_mget(keys text[], keyspace text) returns text[]
 *
 * The values of keys, in order, NULL where a key does not exist.
 */
Datum
kv_mget(PG_FUNCTION_ARGS)
{
	Datum	   *keys;
	bool	   *keynulls;
	int			n;
	KvKeyspaceRef ks;
	Datum	   *values;
	bool	   *nulls;
	int			dims[1];
	int			lbs[1] = {1};

	KvCheckAvailable();
	n = arg_text_array(fcinfo, 0, "keys", &keys, &keynulls);
	ks = arg_keyspace(fcinfo, 1, KV_RIGHT_READ);
	for (int i = 0; i < n; i++)
		if (keynulls[i])
			report_null("key");

	values = palloc(sizeof(Datum) * Max(n, 1));
	nulls = palloc(sizeof(bool) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		text	   *key = DatumGetTextPP(keys[i]);
		struct varlena *v;

		prefetch_ahead(ks, keys, i, n);
		nulls[i] = !KvStoreGet(ks, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
							   KV_READ_TEXT, &v);
		values[i] = nulls[i] ? (Datum) 0 : PointerGetDatum(v);
	}
	dims[0] = n;
	if (n == 0)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(TEXTOID));
	PG_RETURN_ARRAYTYPE_P(construct_md_array(values, nulls, 1, dims, lbs,
											 TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * kv_mput(keys text[], values text[], keyspace text) returns void
 *
 * Writes keys[i] = values[i] for every i, in order (a repeated key ends
 * with its last value).  All arguments are checked before the first write.
 */
Datum
kv_mput(PG_FUNCTION_ARGS)
{
	Datum	   *keys;
	Datum	   *vals;
	bool	   *keynulls;
	bool	   *valnulls;
	int			nkeys;
	int			nvals;
	KvKeyspaceRef ks;

	KvCheckAvailable();
	nkeys = arg_text_array(fcinfo, 0, "keys", &keys, &keynulls);
	nvals = arg_text_array(fcinfo, 1, "values", &vals, &valnulls);
	if (nkeys != nvals)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("keys and values must have the same number of elements"),
				 errdetail("There are %d keys and %d values.", nkeys, nvals)));
	for (int i = 0; i < nkeys; i++)
	{
		if (keynulls[i])
			report_null("key");
		if (valnulls[i])
			report_null("value");
		KvCheckKeySize(VARSIZE_ANY_EXHDR(DatumGetPointer(keys[i])));
		KvCheckValueSize(VARSIZE_ANY_EXHDR(DatumGetPointer(vals[i])));
	}
	ks = arg_keyspace(fcinfo, 2, KV_RIGHT_WRITE);
	prepare_write("kv_mput()");

	for (int i = 0; i < nkeys; i++)
	{
		text	   *key = DatumGetTextPP(keys[i]);
		text	   *val = DatumGetTextPP(vals[i]);
		KvWrite		w = {0};

		CHECK_FOR_INTERRUPTS();
		prefetch_ahead(ks, keys, i, nkeys);
		w.op = KV_OP_PUT;
		w.value = VARDATA_ANY(val);
		w.vallen = VARSIZE_ANY_EXHDR(val);
		KvStoreWrite(ks, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), &w);
	}
	PG_RETURN_VOID();
}

typedef struct KvScanOut
{
	ReturnSetInfo *rsinfo;
	bool		bytea;			/* values as bytea, unchecked */
	const char *keyspace;		/* its stored name, for errors */
} KvScanOut;

/*
 * scan_emit
 *		KvStoreScan callback: one row.  Keys are text in both functions and
 *		values in kv_scan: each is converted to the database encoding here,
 *		once (text.c).
 */
static void
scan_emit(void *arg, const char *key, uint32 keylen,
		  const char *value, uint32 vallen, bool binary)
{
	KvScanOut  *st = (KvScanOut *) arg;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	const char *k;
	const char *v = value;
	uint32		klen;
	uint32		vlen = vallen;

	if (unlikely(!KvTextFromStore(key, keylen, &k, &klen)))
		KvReportKeyNotText(st->keyspace, key, keylen);
	if (!st->bytea && unlikely(!KvTextFromStore(value, vallen, &v, &vlen)))
		KvReportValueNotText(st->keyspace, key, keylen, value, vallen, binary);

	values[0] = PointerGetDatum(cstring_to_text_with_len(k, klen));
	/* text and bytea share the varlena layout */
	values[1] = PointerGetDatum(cstring_to_text_with_len(v, vlen));
	tuplestore_putvalues(st->rsinfo->setResult, st->rsinfo->setDesc,
						 values, nulls);
	pfree(DatumGetPointer(values[0]));
	pfree(DatumGetPointer(values[1]));
	if (k != key)
		pfree((char *) k);
	if (v != value)
		pfree((char *) v);
}

/*
 * kv_scan(prefix text, keyspace text) returns table (key text, value text)
 *
 * Every key starting with prefix, in no particular order.
 */
static Datum
scan_common(FunctionCallInfo fcinfo, bool bytea)
{
	text	   *prefix;
	KvKeyspaceRef ks;
	KvScanOut	st;

	KvCheckAvailable();
	if (PG_ARGISNULL(0))
		report_null("prefix");
	prefix = KvTextArgToStore(PG_GETARG_TEXT_PP(0));
	ks = arg_keyspace(fcinfo, 1, KV_RIGHT_READ);

	InitMaterializedSRF(fcinfo, 0);
	st.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	st.bytea = bytea;
	st.keyspace = KvTextCStringToStore(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	KvStoreScan(ks, VARDATA_ANY(prefix), VARSIZE_ANY_EXHDR(prefix),
				scan_emit, &st);
	return (Datum) 0;
}

Datum
kv_scan(PG_FUNCTION_ARGS)
{
	return scan_common(fcinfo, false);
}

/*
 * kv_scan_bytea(prefix text, keyspace text)
 *		returns table (key text, value bytea)
 *
 * Like kv_scan, with values as bytes: lists keys whose values are not
 * valid text.  Keys are still text, checked as kv_scan checks them.
 */
Datum
kv_scan_bytea(PG_FUNCTION_ARGS)
{
	return scan_common(fcinfo, true);
}

/*
 * kv_count(keyspace text) returns bigint
 *
 * Keys in the keyspace as this transaction sees them: the committed count
 * plus this transaction's own inserts minus its own deletes.
 */
Datum
kv_count(PG_FUNCTION_ARGS)
{
	KvKeyspaceRef ks;
	int64		n;

	KvCheckAvailable();
	ks = arg_keyspace(fcinfo, 0, KV_RIGHT_READ);
	n = (int64) pg_atomic_read_u64(&KvKeyspaces[ks.id].nentries) +
		KvWsCountDelta(ks.id);
	PG_RETURN_INT64(n);
}

/*
 * kv_create_keyspace(keyspace text, if_not_exists boolean) returns void
 */
Datum
kv_create_keyspace(PG_FUNCTION_ARGS)
{
	KvCheckAvailable();
	if (PG_ARGISNULL(0))
		report_null("keyspace");
	if (PG_ARGISNULL(1))
		report_null("if_not_exists");
	prepare_write("kv_create_keyspace()");
	KvAclCreateKeyspace(KvTextCStringToStore(text_to_cstring(PG_GETARG_TEXT_PP(0))),
						PG_GETARG_BOOL(1));
	PG_RETURN_VOID();
}

/*
 * kv_drop_keyspace(keyspace text, if_exists boolean) returns void
 */
Datum
kv_drop_keyspace(PG_FUNCTION_ARGS)
{
	KvCheckAvailable();
	if (PG_ARGISNULL(0))
		report_null("keyspace");
	/* not "false": a NULL flag would drop a keyspace the caller meant to keep */
	if (PG_ARGISNULL(1))
		report_null("if_exists");
	prepare_write("kv_drop_keyspace()");
	KvAclDropKeyspace(KvTextCStringToStore(text_to_cstring(PG_GETARG_TEXT_PP(0))),
					  PG_GETARG_BOOL(1));
	PG_RETURN_VOID();
}

/* "role=rw" for each grant, as a text[] (NULL for none) */
static Datum
rights_array(const KvAclItem *items, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(psprintf("%s=%s%s",
												KvRoleNameForDisplay(items[i].role),
												(items[i].rights & KV_RIGHT_READ) ? "r" : "",
												(items[i].rights & KV_RIGHT_WRITE) ? "w" : ""));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * kv_keyspaces() returns table (keyspace text, entries bigint, owner text,
 * rights text[])
 *
 * The keyspaces the current user has a right on (all of them for
 * pg_read_all_stats and superusers: KvAclCanList), names converted to the
 * database encoding.  A name that is not UTF-8 is an error, 22021, one
 * with a character the encoding lacks 22P05 (text.c); kv_stats() shows
 * either escaped.
 */
Datum
kv_keyspaces(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	KvKeyspaceRef *refs;
	char		(*names)[NAMEDATALEN];
	int			n;

	KvCheckAvailable();
	InitMaterializedSRF(fcinfo, 0);

	refs = palloc(sizeof(KvKeyspaceRef) * kvext_max_keyspaces);
	names = palloc(NAMEDATALEN * kvext_max_keyspaces);
	n = KvKeyspaceList(refs, names);
	for (int i = 0; i < n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		char		owner[NAMEDATALEN];
		KvAclItem  *items;
		int			nitems;
		const char *name;
		uint32		namelen;

		if (!KvAclCanList(names[i]))
			continue;
		if (unlikely(!KvTextFromStore(names[i], strlen(names[i]), &name, &namelen)))
			KvReportKeyspaceNotText(names[i]);
		(void) KvAclDescribe(names[i], owner, &items, &nitems);
		values[0] = PointerGetDatum(cstring_to_text_with_len(name, (int) namelen));
		values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&KvKeyspaces[refs[i].id].nentries));
		values[2] = CStringGetTextDatum(KvRoleNameForDisplay(owner));
		nulls[2] = (owner[0] == '\0');
		values[3] = rights_array(items, nitems);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		pfree(items);
	}
	return (Datum) 0;
}

/* the right argument of kv_grant and kv_revoke */
static int
arg_right(FunctionCallInfo fcinfo, int argno)
{
	char	   *right;

	if (PG_ARGISNULL(argno))
		report_null("right");
	right = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (pg_strcasecmp(right, "read") == 0)
		return KV_RIGHT_READ;
	if (pg_strcasecmp(right, "write") == 0)
		return KV_RIGHT_WRITE;
	if (pg_strcasecmp(right, "all") == 0)
		return KV_RIGHT_ALL;
	/* shown cut short: the message goes to the server log too */
	if (strlen(right) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized keyspace right \"%s...\"",
						pnstrdup(right, pg_mbcliplen(right, strlen(right), NAMEDATALEN - 1))),
				 errhint("The rights are \"read\", \"write\" and \"all\".")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized keyspace right \"%s\"", right),
			 errhint("The rights are \"read\", \"write\" and \"all\".")));
	return 0;					/* keep compiler quiet */
}

/* kv_grant and kv_revoke */
static Datum
change_rights(FunctionCallInfo fcinfo, bool grant)
{
	char	   *ksname;
	char	   *role;
	int			rights;
	KvKeyspaceRef ref;

	KvCheckAvailable();
	if (PG_ARGISNULL(0))
		report_null("keyspace");
	if (PG_ARGISNULL(1))
		report_null("role");
	rights = arg_right(fcinfo, 2);
	ksname = KvTextCStringToStore(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	role = text_to_cstring(PG_GETARG_TEXT_PP(1));
	/*
	 * No role has a name this long (kv_revoke of it is a no-op, as for any
	 * role that does not exist); show it cut short rather than echo it
	 * whole to the client and the server log.
	 */
	if (grant && strlen(role) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s...\" does not exist",
						pnstrdup(role, pg_mbcliplen(role, strlen(role), NAMEDATALEN - 1))),
				 errdetail("Role names are at most %d bytes; this one has %zu.",
						   NAMEDATALEN - 1, strlen(role))));
	prepare_write(grant ? "kv_grant()" : "kv_revoke()");
	KvKeyspaceCheckName(ksname, false);
	ref = KvKeyspaceResolve(ksname, strlen(ksname), true);
	if (KvKeyspaceIsAcl(ksname))
		KvAclCheck(ref, ksname, strlen(ksname), KV_RIGHT_READ);
	KvAclChange(ksname, role, rights, grant);
	PG_RETURN_VOID();
}

/*
 * kv_grant(keyspace text, role text, "right" text) returns void
 */
Datum
kv_grant(PG_FUNCTION_ARGS)
{
	return change_rights(fcinfo, true);
}

/*
 * kv_revoke(keyspace text, role text, "right" text) returns void
 */
Datum
kv_revoke(PG_FUNCTION_ARGS)
{
	return change_rights(fcinfo, false);
}

/*
 * kvext_check_preloaded() returns void
 *
 * Called by the install script so that CREATE EXTENSION fails (55000) on
 * a server that did not preload the library.
 */
Datum
kvext_check_preloaded(PG_FUNCTION_ARGS)
{
	KvCheckAvailable();
	PG_RETURN_VOID();
}
