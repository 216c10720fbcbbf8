/*-------------------------------------------------------------------------
 *
 * serve.c
 *	  The SQL entry points a kvext node offers to other nodes' kvext_fdw:
 *	  what a foreign table of a remote server runs there.
 *
 * A remote scan or write must mean on the node what it means locally, so
 * these functions call the store as the local wrapper does, with keys and
 * values as bytea (the exact stored bytes, whatever the column types:
 * text is UTF-8 on every node, and the conversion from and to the column
 * types and the database encoding happens on the calling node, codec.c
 * and fdw.c row_to_text; a point read with text_values refuses here a
 * value written as bytea that is not UTF-8, KV_READ_STORED_TEXT, since
 * its rows do not say which values are binary).  Keyspace names are
 * text, converted by libpq to this database's encoding, then to UTF-8
 * (resolve):
 *	kvext_fdw_remote_read	point, multi-key, prefix and full reads:
 *							(key, value, binary) rows
 *	kvext_fdw_remote_count	count(*) pushdown
 *	kvext_fdw_remote_insert	INSERT (one row or a batch): each key written
 *							only if absent (or overwritten with upsert), in
 *							one compare-and-set per key, so the check for
 *							an existing key is atomic with the write
 *	kvext_fdw_remote_cas	UPDATE and DELETE: replace (or delete) a key
 *							only if it still holds the expected bytes
 * They run in the caller's remote transaction (remote.c), so their writes
 * commit when the calling node's transaction does.  Keyspace rights and
 * the key and value limits are checked here, as for the kv functions (and
 * that a key holds no zero byte, which a text key never does), and
 * so is the node's role: a write on a follower (or on a leader still
 * applying its log) is 25006 at once, as kv_put()'s, not at the commit,
 * so that the calling node can tell its write reached no leader
 * (remote.c moves a remote transaction that wrote nothing yet to the new
 * leader).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"

#include "api/api.h"
#include "failpoint.h"
#include "log/visible.h"
#include "store/acl.h"
#include "store/keyspace.h"
#include "store/text.h"
#include "store/store.h"
#include "store/writeset.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(kvext_fdw_remote_read);
PG_FUNCTION_INFO_V1(kvext_fdw_remote_count);
PG_FUNCTION_INFO_V1(kvext_fdw_remote_insert);
PG_FUNCTION_INFO_V1(kvext_fdw_remote_cas);

/*
 * resolve
 *		The keyspace named by text argument name (text of this database's
 *		encoding, which libpq converted from the caller's: stored as UTF-8);
 *		*exists false (and the reference unusable) for a missing one if
 *		missing_ok, else 42704.
 */
static KvKeyspaceRef
resolve(text *name, int rights, bool missing_ok, bool *exists)
{
	KvKeyspaceRef ref = {0, 0};

	KvCheckAvailable();
	name = KvTextArgToStore(name);
	*exists = KvKeyspaceTryResolve(VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name),
								   (rights & KV_RIGHT_WRITE) != 0, &ref);
	if (!*exists && !missing_ok)
		KvReportNoKeyspace(VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
	if (*exists)
		KvAclCheck(ref, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name), rights);
	return ref;
}

/*
 * bytea_elems
 *		The elements of bytea[] argument what, which must have at most one
 *		dimension (as kv_mget's and kv_mput's); the caller decides what a
 *		NULL element means.
 */
static int
bytea_elems(ArrayType *arr, const char *what, Datum **elems, bool **nulls)
{
	int			n;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(arr, BYTEAOID, -1, false, TYPALIGN_INT, elems, nulls, &n);
	return n;
}

/*
 * check_text_bytes
 *		Refuse a key, or a value written as text, that holds a zero byte:
 *		no text of any encoding does, so kv_delete() could never name such
 *		a key, and every kv_scan() of its keyspace would fail on it.  Other
 *		bytes are checked when they are read as text, by the node that
 *		reads them (store/text.c).
 */
static void
check_text_bytes(const char *what, const char *bytes, uint32 len)
{
	if (memchr(bytes, '\0', len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("%s must not contain a zero byte", what),
				 errdetail("Keys and text values are text, which cannot hold the byte 0x00.")));
}

typedef struct ReadState
{
	ReturnSetInfo *rsinfo;
} ReadState;

/* KvStoreScan callback: one row of the result */
static void
read_keep(void *arg, const char *key, uint32 keylen,
		  const char *value, uint32 vallen, bool binary)
{
	ReturnSetInfo *rsinfo = ((ReadState *) arg)->rsinfo;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	values[0] = PointerGetDatum(cstring_to_text_with_len(key, keylen));
	values[1] = PointerGetDatum(cstring_to_text_with_len(value, vallen));
	values[2] = BoolGetDatum(binary);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * kvext_fdw_remote_read(keyspace text, missing_ok bool, text_values bool,
 *						 prefix bytea, keys bytea[])
 *		returns table (key bytea, value bytea, binary bool)
 *
 * keys not NULL: the values of those keys that exist, each once, in the
 * order given (text_values: as kv_get() reads them, checking a binary
 * value is valid text).  Else every key starting with prefix.
 */
Datum
kvext_fdw_remote_read(PG_FUNCTION_ARGS)
{
	ReadState	rs;
	KvKeyspaceRef ks;
	bool		exists;

	/* one message per argument, as the kv functions' (kv_digest calls this) */
	for (int i = 0; i < 3; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null",
							i == 0 ? "keyspace" : i == 1 ? "missing_ok" : "text_values")));
	KvFailpoint("fdw-remote-read");
	InitMaterializedSRF(fcinfo, 0);
	rs.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ks = resolve(PG_GETARG_TEXT_PP(0), KV_RIGHT_READ, PG_GETARG_BOOL(1), &exists);
	if (!exists)
		PG_RETURN_VOID();
	if (!PG_ARGISNULL(4))
	{
		KvReadMode	mode = PG_GETARG_BOOL(2) ? KV_READ_STORED_TEXT : KV_READ_BYTEA;
		Datum	   *elems;
		bool	   *nulls;
		int			n = bytea_elems(PG_GETARG_ARRAYTYPE_P(4), "keys", &elems, &nulls);

		for (int i = 0; i < n; i++)
		{
			bytea	   *k;
			struct varlena *value;
			bool		seen = false;

			CHECK_FOR_INTERRUPTS();
			if (nulls[i])
				continue;
			k = DatumGetByteaPP(elems[i]);
			for (int j = 0; j < i && !seen; j++)
				seen = !nulls[j] && datumIsEqual(elems[i], elems[j], false, -1);
			if (seen)
				continue;
			if (KvStoreGet(ks, VARDATA_ANY(k), VARSIZE_ANY_EXHDR(k), mode, &value))
				read_keep(&rs, VARDATA_ANY(k), VARSIZE_ANY_EXHDR(k),
						  VARDATA(value), VARSIZE(value) - VARHDRSZ, false);
		}
	}
	else
	{
		bytea	   *prefix = PG_ARGISNULL(3) ? NULL : PG_GETARG_BYTEA_PP(3);

		KvStoreScan(ks, prefix ? VARDATA_ANY(prefix) : "",
					prefix ? VARSIZE_ANY_EXHDR(prefix) : 0, read_keep, &rs);
	}
	PG_RETURN_VOID();
}

/*
 * kvext_fdw_remote_count(keyspace text, missing_ok bool) returns bigint
 *		The keys of the keyspace as this transaction sees them.
 */
Datum
kvext_fdw_remote_count(PG_FUNCTION_ARGS)
{
	KvKeyspaceRef ks;
	bool		exists;

	/* not STRICT: a NULL argument is an error, as for every kv function */
	for (int i = 0; i < 2; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", i == 0 ? "keyspace" : "missing_ok")));
	ks = resolve(PG_GETARG_TEXT_PP(0), KV_RIGHT_READ, PG_GETARG_BOOL(1), &exists);
	if (!exists)
		PG_RETURN_INT64(0);
	PG_RETURN_INT64((int64) pg_atomic_read_u64(&KvKeyspaces[ks.id].nentries) +
					KvWsCountDelta(ks.id));
}

/*
 * kvext_fdw_remote_insert(keyspace text, keys bytea[], values bytea[],
 *						   binary bool, upsert bool) returns bool[]
 *
 * Write each key = value; without upsert only a key that does not exist
 * (a compare-and-set expecting "absent", atomic with the write).  Returns,
 * per key, whether it was written.  Keys written earlier in the same call
 * count as existing.
 */
Datum
kvext_fdw_remote_insert(PG_FUNCTION_ARGS)
{
	KvKeyspaceRef ks;
	bool		exists;
	Datum	   *keys;
	Datum	   *vals;
	bool	   *knulls;
	bool	   *vnulls;
	int			n;
	int			nv;
	Datum	   *done;

	for (int i = 0; i < 5; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("arguments of kvext_fdw_remote_insert must not be NULL")));
	KvCheckAvailable();
	KvVisibleCheckWritable();
	ks = resolve(PG_GETARG_TEXT_PP(0), KV_RIGHT_WRITE, false, &exists);
	n = bytea_elems(PG_GETARG_ARRAYTYPE_P(1), "keys", &keys, &knulls);
	nv = bytea_elems(PG_GETARG_ARRAYTYPE_P(2), "values", &vals, &vnulls);
	if (n != nv)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("keys and values have different lengths")));
	done = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		KvWrite		w = {0};
		bytea	   *k;
		bytea	   *v;

		CHECK_FOR_INTERRUPTS();
		if (knulls[i] || vnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key or value must not be NULL")));
		k = DatumGetByteaPP(keys[i]);
		v = DatumGetByteaPP(vals[i]);
		KvCheckKeySize(VARSIZE_ANY_EXHDR(k));
		KvCheckValueSize(VARSIZE_ANY_EXHDR(v));
		check_text_bytes("key", VARDATA_ANY(k), VARSIZE_ANY_EXHDR(k));
		if (!PG_GETARG_BOOL(3))
			check_text_bytes("value", VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
		w.op = PG_GETARG_BOOL(4) ? KV_OP_PUT : KV_OP_CAS;
		w.value = VARDATA_ANY(v);
		w.vallen = VARSIZE_ANY_EXHDR(v);
		w.binary = PG_GETARG_BOOL(3);
		w.expected = NULL;
		KvStoreWrite(ks, VARDATA_ANY(k), VARSIZE_ANY_EXHDR(k), &w);
		done[i] = BoolGetDatum(w.op == KV_OP_PUT || w.swapped);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(done, n, BOOLOID, 1, true, TYPALIGN_CHAR));
}

/*
 * kvext_fdw_remote_cas(keyspace text, key bytea, expected bytea,
 *						value bytea, binary bool) returns bool
 *
 * Replace key's value by value (NULL: delete the key) if it holds exactly
 * the bytes expected; waits for a concurrent writer of the key first.
 * Returns whether it did.
 */
Datum
kvext_fdw_remote_cas(PG_FUNCTION_ARGS)
{
	KvKeyspaceRef ks;
	bool		exists;
	KvWrite		w = {0};
	bytea	   *k;
	bytea	   *expected;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("keyspace, key, expected and binary must not be NULL")));
	KvCheckAvailable();
	KvVisibleCheckWritable();
	ks = resolve(PG_GETARG_TEXT_PP(0), KV_RIGHT_ALL, false, &exists);
	k = PG_GETARG_BYTEA_PP(1);
	expected = PG_GETARG_BYTEA_PP(2);
	KvCheckKeySize(VARSIZE_ANY_EXHDR(k));
	check_text_bytes("key", VARDATA_ANY(k), VARSIZE_ANY_EXHDR(k));
	w.op = KV_OP_CAS;
	w.expected = VARDATA_ANY(expected);
	w.expectedlen = VARSIZE_ANY_EXHDR(expected);
	if (!PG_ARGISNULL(3))
	{
		bytea	   *v = PG_GETARG_BYTEA_PP(3);

		KvCheckValueSize(VARSIZE_ANY_EXHDR(v));
		if (!PG_GETARG_BOOL(4))
			check_text_bytes("value", VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
		w.value = VARDATA_ANY(v);
		w.vallen = VARSIZE_ANY_EXHDR(v);
	}
	w.binary = PG_GETARG_BOOL(4);
	KvStoreWrite(ks, VARDATA_ANY(k), VARSIZE_ANY_EXHDR(k), &w);
	PG_RETURN_BOOL(w.swapped);
}
