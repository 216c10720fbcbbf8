/*-------------------------------------------------------------------------
 *
 * fdw.c
 *	  kvext_fdw: the handler, the planner callbacks, scans and EXPLAIN.
 *
 * A foreign table of a server without connection options maps to one
 * keyspace of this node's store, which the wrapper calls in process, as
 * the kv functions do: a pushed-down point read costs about a kv_get().
 *
 * Planning.  GetForeignRelSize reads the table's settings and columns
 * (options.c) and chooses its lookup (pushdown.c); row counts come from
 * the keyspace's count.  GetForeignPaths offers one path, GetForeignPlan
 * keeps the point or multi-key clause out of the local quals and passes
 * its expression in fdw_exprs, so that PostgreSQL fixes up its parameters
 * (fdw_private: the lookup kind, the prefix, the table's OID and, for a
 * count, the relation's name).  GetForeignUpperPaths offers a
 * count(*) path, a ForeignScan with no scan relation whose fdw_scan_tlist
 * is the count(*) aggregates.
 *
 * Execution.  A scan reads the store at its first IterateForeignScan (so
 * that initplans and parameters have values), all at once: a point or
 * multi-key lookup keeps the values it found, a full or prefix scan copies
 * the keyspace's matching entries into a tuplestore (in kv_scan's
 * bounded batches; beyond work_mem it spills to a temporary file).  A scan
 * therefore never sees the rows its own statement writes afterwards (an
 * UPDATE that moves keys visits each key once).  Rows are converted to
 * column values one at a time (codec.c), with an error context naming the
 * key, keyspace and table; a key or value read as text is first converted
 * from the store's UTF-8 to the database encoding, once (row_to_text,
 * store/text.c: 22021, 22P05).  Keys to look up and prefixes are
 * converted to UTF-8 (codec.c, kvBeginForeignScan).
 * A rescan reads again.
 *
 * Remote tables.  A table of a server with connection options reads its
 * node: the same read, done there by kvext_fdw_remote_read or
 * kvext_fdw_remote_count (serve.c) in this transaction's remote
 * transaction (remote.c), whose (key, value, binary) rows go to the same
 * tuplestore and are converted here.  The planner asks the node nothing:
 * it assumes KVEXT_REMOTE_ROWS_GUESS rows and one round trip's cost.  A
 * server naming several nodes of a replicated group is read on its
 * leader, or with read_from 'any' on any node (remote.c); EXPLAIN VERBOSE
 * shows the node that served the scan (ANALYZE), or the node the cached
 * connection reaches, or that it is chosen at first use.
 *
 * Asynchronous scans.  A remote table with async_capable 'true' (table or
 * server option, as in postgres_fdw) offers paths that an Append may run
 * asynchronously, except as the scan of an UPDATE or DELETE and for a
 * count(*) (an upper relation); PostgreSQL's EXPLAIN shows them as "Async
 * Foreign Scan".  Such a scan connects (and opens its remote transaction)
 * at BeginForeignScan, as postgres_fdw does.  When the Append first asks
 * it for a row (ForeignAsyncRequest) it sends its one remote call with
 * KvRemoteSend and returns; the Append then waits on the sockets of all
 * its partitions at once (ForeignAsyncConfigureWait adds the connection's
 * socket), and ForeignAsyncNotify reads what arrived, and once the result
 * is complete keeps its rows in the tuplestore as a synchronous read does
 * and returns them one by one.  So the remote nodes run their scans at the
 * same time.  A connection carries one query at a time: a scan whose
 * connection (two partitions on one server and user share it) has another
 * scan's query in flight waits for it before sending (postgres_fdw's
 * pendingAreq rule); any other use of that connection first takes the
 * result of the query in flight (drain_scan, called by remote.c), and a
 * scan that ends or rescans with its query in flight takes the result and
 * drops it.  Errors, cancels and failover are remote.c's, as for a
 * synchronous read.
 *
 * Reads see what kv_get() sees: committed keys plus this transaction's
 * own writes, each key as of the moment it is read (read committed per
 * key; see README "Transactions").  A keyspace that does not exist is
 * 42704, or no rows for a table with create_keyspace 'true'.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/execAsync.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/selfuncs.h"
#include "utils/ruleutils.h"
#include "utils/tuplestore.h"

#include "fdw/kvext_fdw.h"
#include "remote.h"
#include "shmem.h"
#include "store/keyspace.h"
#include "store/store.h"
#include "store/text.h"
#include "store/writeset.h"

PG_FUNCTION_INFO_V1(kvext_fdw_handler);
PG_FUNCTION_INFO_V1(kvext_fdw_check_table);

/* indexes into a ForeignScan's fdw_private */
enum KvFdwScanPrivate
{
	KvFdwPrivateKind,			/* Integer: KvLookupKind */
	KvFdwPrivatePrefix,			/* String: PREFIX's prefix, else "" */
	KvFdwPrivateRelid,			/* Integer: the foreign table's OID */
	KvFdwPrivateRelations		/* String: COUNT's "Aggregate on (...)" */
};

/* rows the planner assumes for a remote table: it asks the node nothing */
#define KVEXT_REMOTE_ROWS_GUESS	1000
/* planner cost of one round trip to a remote node */
#define KVEXT_REMOTE_CALL_COST	100.0

/* planner cost of reading one key from the store, beyond cpu_tuple_cost */
#define KVEXT_KEY_READ_COST		(2 * DEFAULT_CPU_OPERATOR_COST)

typedef struct KvFdwScanState
{
	KvFdwTable *table;
	KvLookupKind kind;
	char	   *prefix;			/* PREFIX: as the query wrote it */
	const char *stored_prefix;	/* ... and as stored (UTF-8) */
	uint32		stored_prefixlen;
	ExprState  *key_state;		/* POINT, MULTI: the key expression */
	KvFdwCodec	key_codec;		/* the key column */
	KvFdwCodec	value_codec;	/* the value column */
	KvFdwCodec	arg_codec;		/* the key expression, or its elements */
	Oid			arg_elemtype;	/* MULTI: the array's element type */
	int			natts;			/* COUNT: columns of fdw_scan_tlist */
	MemoryContext rows_cxt;		/* what a read keeps, reset at rescan */
	Oid			userid;			/* remote: whose user mapping */
	char	   *served_by;		/* multi-host: the node that answered */
	bool		read_any;		/* read_from 'any', and not the scan of an
								 * UPDATE or DELETE (those read the leader,
								 * whose values they compare) */

	/* remote: the call, kept for an asynchronous send and a resend */
	const char *call_sql;
	int			call_nparams;
	const char *call_values[5];
	int			call_lengths[5];
	int			call_formats[5];
	int			call_result_format;
	/* asynchronous scans */
	KvRemoteConn *conn;			/* the connection, from BeginForeignScan */
	AsyncRequest *areq;			/* the Append's request */
	bool		inflight;		/* the call was sent, its result not taken */

	bool		read;			/* the store was read for this scan */
	/* POINT, MULTI: the keys found, their values */
	int			nfound;
	int			next;
	char	  **keys;
	uint32	   *keylens;
	struct varlena **values;
	/* FULL, PREFIX: (key bytea, value bytea, binary bool) rows */
	Tuplestorestate *rows;
	TupleTableSlot *raw_slot;
	/* COUNT */
	int64		count;

	/* for the error context while a row is converted */
	const char *cur_key;
	uint32		cur_keylen;
} KvFdwScanState;

/* the row layout of a full or prefix scan's tuplestore */
#define RAW_KEY		0
#define RAW_VALUE	1
#define RAW_BINARY	2

/* keys in the keyspace as this transaction sees them (kv_count()) */
static int64
keyspace_count(KvKeyspaceRef ks)
{
	return (int64) pg_atomic_read_u64(&KvKeyspaces[ks.id].nentries) +
		KvWsCountDelta(ks.id);
}

/*
 * kvGetForeignRelSize
 *		Read the table's settings, choose its lookup, estimate its rows.
 */
static void
kvGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	KvFdwRelInfo *info = palloc0(sizeof(KvFdwRelInfo));
	Relation	rel = table_open(foreigntableid, NoLock);
	KvKeyspaceRef ks;
	double		sel;
	double		rows;

	info->table = KvFdwGetTable(rel, true);
	table_close(rel, NoLock);

	/* a missing keyspace is reported when the scan runs, not here */
	KvCheckAvailable();
	if (info->table->remote)
		info->nentries = KVEXT_REMOTE_ROWS_GUESS;
	else if (KvKeyspaceTryResolve(info->table->stored_keyspace, info->table->stored_keyspace_len,
							 false, &ks))
		info->nentries = Max(keyspace_count(ks), 0);

	KvFdwChooseLookup(root, baserel, info);
	sel = clauselist_selectivity(root, info->local_conds, baserel->relid,
								 JOIN_INNER, NULL);
	switch (info->kind)
	{
		case KV_LOOKUP_POINT:
			rows = 1;
			break;
		case KV_LOOKUP_MULTI:
			rows = Min(info->nkeys, Max(info->nentries, 1));
			break;
		default:
			rows = info->nentries;
			break;
	}
	baserel->tuples = info->nentries;
	baserel->rows = clamp_row_est(rows * sel);
	/* an UPDATE's or DELETE's scan runs synchronously (file header) */
	info->async = info->table->remote && info->table->async_capable &&
		!bms_is_member(baserel->relid, root->all_result_relids);
	baserel->fdw_private = info;
}

/*
 * kvGetForeignPaths
 *		One path: the chosen lookup.  A full or prefix scan reads every
 *		matching key before its first row (startup cost).
 */
static void
kvGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	KvFdwRelInfo *info = (KvFdwRelInfo *) baserel->fdw_private;
	QualCost	qual;
	double		fetched;
	Cost		startup = 0;
	Cost		total;

	cost_qual_eval(&qual, info->local_conds, root);
	switch (info->kind)
	{
		case KV_LOOKUP_POINT:
			fetched = 1;
			break;
		case KV_LOOKUP_MULTI:
			fetched = info->nkeys;
			break;
		case KV_LOOKUP_PREFIX:
			/* every key is looked at; the matching ones are copied */
			fetched = clamp_row_est(info->nentries * DEFAULT_MATCH_SEL);
			startup = info->nentries * cpu_operator_cost;
			break;
		default:
			fetched = info->nentries;
			break;
	}
	startup += qual.startup;
	if (info->table->remote)
		startup += KVEXT_REMOTE_CALL_COST;
	if (info->kind == KV_LOOKUP_FULL || info->kind == KV_LOOKUP_PREFIX)
		startup += fetched * KVEXT_KEY_READ_COST;
	total = startup + fetched * (cpu_tuple_cost + qual.per_tuple);
	if (info->kind == KV_LOOKUP_POINT || info->kind == KV_LOOKUP_MULTI)
		total += fetched * KVEXT_KEY_READ_COST;

	add_path(baserel, (Path *)
			 create_foreignscan_path(root, baserel, NULL, baserel->rows,
									 startup, total, NIL, NULL, NULL, NIL));
}

/*
 * kvGetForeignUpperPaths
 *		For count(*) over a kvext table alone, a path that reads the
 *		keyspace's count (pushdown.c says when).
 */
static void
kvGetForeignUpperPaths(PlannerInfo *root, UpperRelationKind stage,
					   RelOptInfo *input_rel, RelOptInfo *output_rel,
					   void *extra)
{
	KvFdwRelInfo *info = (KvFdwRelInfo *) input_rel->fdw_private;
	List	   *aggs;
	ForeignPath *path;

	if (stage != UPPERREL_GROUP_AGG || output_rel->fdw_private != NULL)
		return;
	aggs = KvFdwCountTargets(root, input_rel, output_rel, extra);
	if (aggs == NIL)
		return;
	output_rel->fdw_private = info;
	path = create_foreign_upper_path(root, output_rel, output_rel->reltarget,
									 1, 0, cpu_tuple_cost + KVEXT_KEY_READ_COST,
									 NIL, NULL,
									 list_make2(aggs,
												makeInteger((int) info->table->relid)));
	add_path(output_rel, (Path *) path);
}

/*
 * kvGetForeignPlan
 *		The ForeignScan of a base relation (its lookup, local quals) or of
 *		a count(*) (no scan relation; fdw_scan_tlist holds the count(*)
 *		aggregates).
 */
static ForeignScan *
kvGetForeignPlan(PlannerInfo *root, RelOptInfo *foreignrel, Oid foreigntableid,
				 ForeignPath *best_path, List *tlist, List *scan_clauses,
				 Plan *outer_plan)
{
	KvFdwRelInfo *info = (KvFdwRelInfo *) foreignrel->fdw_private;
	List	   *local = NIL;
	List	   *fdw_exprs = NIL;
	List	   *private;
	ListCell   *lc;

	if (foreignrel->reloptkind == RELOPT_UPPER_REL)
	{
		List	   *aggs = (List *) linitial(best_path->fdw_private);
		Oid			relid = (Oid) intVal(lsecond(best_path->fdw_private));
		List	   *scan_tlist = NIL;
		char	   *relations;

		foreach(lc, aggs)
			scan_tlist = lappend(scan_tlist,
								 makeTargetEntry(copyObject(lfirst(lc)),
												 list_length(scan_tlist) + 1,
												 NULL, false));
		relations = psprintf("Aggregate on (%s)",
							 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
														get_rel_name(relid)));
		private = list_make4(makeInteger(KV_LOOKUP_COUNT), makeString(""),
							 makeInteger((int) relid), makeString(relations));
		return make_foreignscan(tlist, NIL, 0, NIL, private, scan_tlist,
								NIL, outer_plan);
	}

	foreach(lc, scan_clauses)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);

		if (ri == info->pushed || ri->pseudoconstant)
			continue;
		local = lappend(local, ri->clause);
	}
	if (info->key_expr)
		fdw_exprs = list_make1(info->key_expr);
	private = list_make3(makeInteger(info->kind),
						 makeString(info->prefix ? info->prefix : pstrdup("")),
						 makeInteger((int) foreigntableid));
	return make_foreignscan(tlist, local, foreignrel->relid, fdw_exprs,
							private, NIL, NIL, outer_plan);
}

/*
 * kvBeginForeignScan
 *		Set up a scan: the table, its codecs, the key expression.  Nothing
 *		is read before the first row is asked for.
 */
static void
kvBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	KvFdwScanState *st = palloc0(sizeof(KvFdwScanState));
	Oid			relid = (Oid) intVal(list_nth(plan->fdw_private, KvFdwPrivateRelid));
	char	   *prefix = strVal(list_nth(plan->fdw_private, KvFdwPrivatePrefix));
	Relation	rel;

	node->fdw_state = st;
	st->kind = (KvLookupKind) intVal(list_nth(plan->fdw_private, KvFdwPrivateKind));
	st->prefix = prefix[0] ? prefix : NULL;
	if (st->prefix)
		st->stored_prefix = KvTextToStore(prefix, strlen(prefix),
										  &st->stored_prefixlen);
	st->userid = GetUserId();
	if (plan->scan.scanrelid > 0)
	{
		RangeTblEntry *rte = exec_rt_fetch(plan->scan.scanrelid, estate);

		if (OidIsValid(rte->checkAsUser))
			st->userid = rte->checkAsUser;
	}

	if (node->ss.ss_currentRelation)
		st->table = KvFdwGetTable(node->ss.ss_currentRelation, true);
	else
	{
		rel = table_open(relid, AccessShareLock);
		st->table = KvFdwGetTable(rel, true);
		table_close(rel, AccessShareLock);
		st->natts = list_length(plan->fdw_scan_tlist);
	}
	st->read_any = st->table->multihost && st->table->read_any &&
		!(plan->scan.scanrelid > 0 &&
		  ExecRelationIsTargetRelation(estate, plan->scan.scanrelid));
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	KvFdwCodecInit(&st->key_codec, st->table->key_type, st->table->key_typmod);
	KvFdwCodecInit(&st->value_codec, st->table->value_type, st->table->value_typmod);
	if (plan->fdw_exprs != NIL)
	{
		Expr	   *expr = (Expr *) linitial(plan->fdw_exprs);
		Oid			type = exprType((Node *) expr);

		st->key_state = ExecInitExpr(expr, &node->ss.ps);
		if (st->kind == KV_LOOKUP_MULTI)
		{
			st->arg_elemtype = get_element_type(type);
			type = st->arg_elemtype;
		}
		KvFdwCodecInit(&st->arg_codec, type, -1);
	}
	st->rows_cxt = AllocSetContextCreate(estate->es_query_cxt,
										 "kvext_fdw scan rows",
										 ALLOCSET_DEFAULT_SIZES);
	/* an asynchronous scan connects now, as postgres_fdw's does */
	if (plan->scan.plan.async_capable && st->table->remote)
		st->conn = KvRemoteConnect(st->table->serverid, st->userid,
								   st->read_any);
}

/* keep one key found by a point or multi-key lookup */
static void
keep_found(KvFdwScanState *st, char *key, uint32 keylen, struct varlena *value)
{
	st->keys[st->nfound] = key;
	st->keylens[st->nfound] = keylen;
	st->values[st->nfound] = value;
	st->nfound++;
}

/* a key of a multi-key lookup, for sorting out repeated ones */
typedef struct MultiKey
{
	char	   *bytes;
	uint32		len;
	int			pos;			/* position in the array */
	bool		repeated;		/* an earlier element has the same bytes */
} MultiKey;

static int
multikey_cmp(const void *a, const void *b)
{
	const MultiKey *x = (const MultiKey *) a;
	const MultiKey *y = (const MultiKey *) b;
	int			c = memcmp(x->bytes, y->bytes, Min(x->len, y->len));

	if (c != 0)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->pos - y->pos;
}

static int
multikey_pos_cmp(const void *a, const void *b)
{
	return ((const MultiKey *) a)->pos - ((const MultiKey *) b)->pos;
}

/*
 * read_keys
 *		POINT and MULTI: evaluate the key expression and look the keys up,
 *		each distinct key once, in the order of their first appearance.
 *		A NULL key (or array element) matches nothing.  Caller is in
 *		rows_cxt.
 */
static void
read_keys(ForeignScanState *node, KvFdwScanState *st, KvKeyspaceRef ks)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	KvReadMode	mode = st->value_codec.kind == KV_CODEC_BYTEA ? KV_READ_BYTEA : KV_READ_TEXT;
	bool		isnull;
	Datum		arg;
	MultiKey   *keys;
	int			n = 0;

	arg = ExecEvalExpr(st->key_state, econtext, &isnull);
	if (isnull)
		return;
	if (st->kind == KV_LOOKUP_POINT)
	{
		keys = palloc(sizeof(MultiKey));
		keys[0].bytes = KvFdwEncode(&st->arg_codec, arg, &keys[0].len);
		keys[0].repeated = false;
		n = 1;
	}
	else
	{
		ArrayType  *arr = DatumGetArrayTypeP(arg);
		Datum	   *elems;
		bool	   *nulls;
		int			nelems;
		int16		elmlen;
		bool		elmbyval;
		char		elmalign;

		get_typlenbyvalalign(st->arg_elemtype, &elmlen, &elmbyval, &elmalign);
		deconstruct_array(arr, st->arg_elemtype, elmlen, elmbyval, elmalign,
						  &elems, &nulls, &nelems);
		keys = palloc(sizeof(MultiKey) * Max(nelems, 1));
		for (int i = 0; i < nelems; i++)
		{
			if (nulls[i])
				continue;
			keys[n].bytes = KvFdwEncode(&st->arg_codec, elems[i], &keys[n].len);
			keys[n].pos = n;
			keys[n].repeated = false;
			n++;
		}
		qsort(keys, n, sizeof(MultiKey), multikey_cmp);
		for (int i = 1; i < n; i++)
			keys[i].repeated = (keys[i].len == keys[i - 1].len &&
								memcmp(keys[i].bytes, keys[i - 1].bytes, keys[i].len) == 0);
		qsort(keys, n, sizeof(MultiKey), multikey_pos_cmp);
	}

	st->keys = palloc(sizeof(char *) * Max(n, 1));
	st->keylens = palloc(sizeof(uint32) * Max(n, 1));
	st->values = palloc(sizeof(struct varlena *) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		struct varlena *value;

		CHECK_FOR_INTERRUPTS();
		if (keys[i].repeated)
			continue;
		if (KvStoreGet(ks, keys[i].bytes, keys[i].len, mode, &value))
			keep_found(st, keys[i].bytes, keys[i].len, value);
	}
}

/* KvStoreScan callback: keep one entry of a full or prefix scan */
static void
scan_keep(void *arg, const char *key, uint32 keylen,
		  const char *value, uint32 vallen, bool binary)
{
	KvFdwScanState *st = (KvFdwScanState *) arg;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	values[RAW_KEY] = PointerGetDatum(cstring_to_text_with_len(key, keylen));
	values[RAW_VALUE] = PointerGetDatum(cstring_to_text_with_len(value, vallen));
	values[RAW_BINARY] = BoolGetDatum(binary);
	tuplestore_putvalues(st->rows, st->raw_slot->tts_tupleDescriptor,
						 values, nulls);
	pfree(DatumGetPointer(values[RAW_KEY]));
	pfree(DatumGetPointer(values[RAW_VALUE]));
}

/* the raw rows' tuplestore of a full, prefix or remote read */
static void
start_rows(KvFdwScanState *st)
{
	TupleDesc	desc = CreateTemplateTupleDesc(3);

	TupleDescInitEntry(desc, 1, "key", BYTEAOID, -1, 0);
	TupleDescInitEntry(desc, 2, "value", BYTEAOID, -1, 0);
	TupleDescInitEntry(desc, 3, "binary", BOOLOID, -1, 0);
	st->raw_slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	st->rows = tuplestore_begin_heap(false, false, work_mem);
}

/*
 * remote_keys
 *		POINT and MULTI of a remote table: the keys to ask for, as the
 *		binary form of a bytea[] parameter (NULL: none).
 */
static char *
remote_keys(ForeignScanState *node, KvFdwScanState *st, int *len)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	bool		isnull;
	Datum		arg = ExecEvalExpr(st->key_state, econtext, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	ArrayType  *keys;
	bytea	   *bin;

	if (isnull)
		return NULL;
	if (st->kind == KV_LOOKUP_POINT)
	{
		elems = palloc(sizeof(Datum));
		nulls = palloc0(sizeof(bool));
		elems[0] = arg;
		nelems = 1;
	}
	else
	{
		int16		elmlen;
		bool		elmbyval;
		char		elmalign;

		get_typlenbyvalalign(st->arg_elemtype, &elmlen, &elmbyval, &elmalign);
		deconstruct_array(DatumGetArrayTypeP(arg), st->arg_elemtype, elmlen,
						  elmbyval, elmalign, &elems, &nulls, &nelems);
	}
	for (int i = 0; i < nelems; i++)
	{
		uint32		klen;
		char	   *k;

		if (nulls[i])
			continue;
		k = KvFdwEncode(&st->arg_codec, elems[i], &klen);
		elems[i] = PointerGetDatum(cstring_to_text_with_len(k, klen));
	}
	keys = construct_md_array(elems, nulls, 1, &nelems, (int[]) {1},
							  BYTEAOID, -1, false, TYPALIGN_INT);
	bin = DatumGetByteaPP(OidFunctionCall1(F_ARRAY_SEND, PointerGetDatum(keys)));
	*len = VARSIZE_ANY_EXHDR(bin);
	return VARDATA_ANY(bin);
}

/* remember which node of a multi-host server answered, for EXPLAIN ANALYZE */
static void
note_served_by(KvFdwScanState *st, KvRemoteConn *conn)
{
	char	   *node = KvRemoteNodeName(conn);

	if (node)
		st->served_by = MemoryContextStrdup(GetMemoryChunkContext(st), node);
}

/*
 * prepare_call
 *		The remote call of a scan of a remote table into st's call_*:
 *		kvext_fdw_remote_read or kvext_fdw_remote_count (serve.c).
 *		Returns false if there is nothing to ask (a NULL key).  Caller is
 *		in rows_cxt, where the parameters are kept.
 */
static bool
prepare_call(ForeignScanState *node, KvFdwScanState *st)
{
	const char **values = st->call_values;
	int		   *lengths = st->call_lengths;

	memset(st->call_lengths, 0, sizeof(st->call_lengths));
	memset(st->call_formats, 0, sizeof(st->call_formats));
	values[0] = st->table->keyspace;
	values[1] = st->table->create_keyspace ? "true" : "false";
	if (st->kind == KV_LOOKUP_COUNT)
	{
		st->call_sql = KVEXT_REMOTE_COUNT_SQL;
		st->call_nparams = 2;
		st->call_result_format = 0;
		return true;
	}
	values[2] = st->value_codec.kind == KV_CODEC_BYTEA ? "false" : "true";
	values[3] = NULL;
	values[4] = NULL;
	st->call_formats[3] = 1;
	st->call_formats[4] = 1;
	if (st->kind == KV_LOOKUP_POINT || st->kind == KV_LOOKUP_MULTI)
	{
		values[4] = remote_keys(node, st, &lengths[4]);
		if (values[4] == NULL)
			return false;
	}
	else if (st->prefix)
	{
		values[3] = st->stored_prefix;
		lengths[3] = (int) st->stored_prefixlen;
	}
	st->call_sql = KVEXT_REMOTE_READ_SQL;
	st->call_nparams = 5;
	st->call_result_format = 1;
	return true;
}

/*
 * keep_result
 *		The result of a scan's remote call on conn: the count, or the rows
 *		in the tuplestore.  Frees res.  Caller is in rows_cxt.
 */
static void
keep_result(KvFdwScanState *st, KvRemoteConn *conn, PGresult *res)
{
	note_served_by(st, conn);
	if (st->kind == KV_LOOKUP_COUNT)
	{
		st->count = PQntuples(res) == 1 ? strtoi64(PQgetvalue(res, 0, 0), NULL, 10) : 0;
		PQclear(res);
		return;
	}
	start_rows(st);
	for (int i = 0; i < PQntuples(res); i++)
	{
		scan_keep(st, PQgetvalue(res, i, 0), PQgetlength(res, i, 0),
				  PQgetvalue(res, i, 1), PQgetlength(res, i, 1),
				  *PQgetvalue(res, i, 2) != 0);
	}
	PQclear(res);
}

/*
 * read_remote
 *		The one read of a scan of a remote table, synchronously, in this
 *		transaction's remote transaction.  Caller is in rows_cxt.
 */
static void
read_remote(ForeignScanState *node, KvFdwScanState *st)
{
	KvRemoteConn *conn = KvRemoteConnect(st->table->serverid, st->userid,
										 st->read_any);
	PGresult   *res;

	if (!prepare_call(node, st))
		return;
	res = KvRemoteExec(conn, false, st->call_sql, st->call_nparams,
					   st->call_values, st->call_lengths, st->call_formats,
					   st->call_result_format);
	keep_result(st, conn, res);
}

/*
 * read_store
 *		The one read of a scan: resolve the keyspace, then look up, scan or
 *		count.
 */
static void
read_store(ForeignScanState *node, KvFdwScanState *st)
{
	MemoryContext old = MemoryContextSwitchTo(st->rows_cxt);
	KvKeyspaceRef ks;
	bool		exists;

	st->read = true;
	st->nfound = 0;
	st->next = 0;
	st->count = 0;
	if (st->table->remote)
	{
		read_remote(node, st);
		MemoryContextSwitchTo(old);
		return;
	}
	ks = KvFdwKeyspace(st->table, false, &exists);
	if (exists)
	{
		switch (st->kind)
		{
			case KV_LOOKUP_POINT:
			case KV_LOOKUP_MULTI:
				read_keys(node, st, ks);
				break;
			case KV_LOOKUP_FULL:
			case KV_LOOKUP_PREFIX:
				{
					start_rows(st);
					KvStoreScan(ks, st->prefix ? st->stored_prefix : "",
								st->prefix ? st->stored_prefixlen : 0,
								scan_keep, st);
				}
				break;
			case KV_LOOKUP_COUNT:
				st->count = keyspace_count(ks);
				break;
		}
	}
	MemoryContextSwitchTo(old);
}

/* error context: which key of which keyspace and table was being read */
static void
row_error_context(void *arg)
{
	KvFdwScanState *st = (KvFdwScanState *) arg;

	if (st->cur_key)
		errcontext("key \"%s\" of keyspace \"%s\", foreign table \"%s\"",
				   KvKeyExcerpt(st->cur_key, st->cur_keylen),
				   st->table->keyspace, st->table->relname);
}

/*
 * row_to_text
 *		The key and value of a row as the columns read them: where a column
 *		takes its bytes as text (every type but bytea: text as it is,
 *		others through input functions, which assume valid text), converted
 *		from the store's UTF-8 to the database encoding; bytes that are not
 *		UTF-8 are 22021, a character the encoding lacks 22P05, both naming
 *		the key (store/text.c).  *key and *value are replaced by palloc'd
 *		conversions or left as they are.  value_done: the value is text of
 *		the database encoding already (KvStoreGet converted it).
 */
static void
row_to_text(KvFdwScanState *st, const char **key, uint32 *keylen,
			const char **value, uint32 *vallen, bool binary, bool value_done)
{
	const char *k = *key;
	uint32		klen = *keylen;

	/* a local point read's key is the query's: text already, unless converted */
	if (st->key_codec.kind != KV_CODEC_BYTEA &&
		(!value_done || KvTextConverts()) &&
		unlikely(!KvTextFromStore(k, klen, key, keylen)))
		KvReportKeyNotText(st->table->stored_keyspace, k, klen);
	if (!value_done && st->value_codec.kind != KV_CODEC_BYTEA)
	{
		const char *v = *value;
		uint32		vlen = *vallen;

		if (unlikely(!KvTextFromStore(v, vlen, value, vallen)))
			KvReportValueNotText(st->table->stored_keyspace, k, klen, v, vlen, binary);
	}
}

/*
 * next_row
 *		The stored key and value of the next row, or false.  *binary: the
 *		value was written as bytea.  *checked: the value is text of the
 *		database encoding already where the column reads it as text (a
 *		local point read: KvStoreGet converted it); the key is stored
 *		bytes either way (row_to_text).
 */
static bool
next_row(KvFdwScanState *st, const char **key, uint32 *keylen,
		 const char **value, uint32 *vallen, bool *binary, bool *checked)
{
	if ((st->kind == KV_LOOKUP_POINT || st->kind == KV_LOOKUP_MULTI) &&
		!st->table->remote)
	{
		struct varlena *v;

		if (st->next >= st->nfound)
			return false;
		*key = st->keys[st->next];
		*keylen = st->keylens[st->next];
		v = st->values[st->next];
		*value = VARDATA(v);
		*vallen = VARSIZE(v) - VARHDRSZ;
		*binary = false;
		*checked = true;		/* KvStoreGet converted it for a text read */
		st->next++;
		return true;
	}
	else
	{
		bool		isnull;
		bytea	   *k;
		bytea	   *v;

		if (st->rows == NULL ||
			!tuplestore_gettupleslot(st->rows, true, false, st->raw_slot))
			return false;
		k = DatumGetByteaPP(slot_getattr(st->raw_slot, RAW_KEY + 1, &isnull));
		v = DatumGetByteaPP(slot_getattr(st->raw_slot, RAW_VALUE + 1, &isnull));
		*key = VARDATA_ANY(k);
		*keylen = VARSIZE_ANY_EXHDR(k);
		*value = VARDATA_ANY(v);
		*vallen = VARSIZE_ANY_EXHDR(v);
		*binary = DatumGetBool(slot_getattr(st->raw_slot, RAW_BINARY + 1, &isnull));
		/* a scan's rows, or a node's rows: stored bytes */
		*checked = false;
		return true;
	}
}

/*
 * finish_fetch
 *		Take the result of the call an asynchronous scan sent (waiting for
 *		it if it is not complete) into its tuplestore.
 */
static void
finish_fetch(ForeignScanState *node)
{
	KvFdwScanState *st = (KvFdwScanState *) node->fdw_state;
	MemoryContext old = MemoryContextSwitchTo(st->rows_cxt);
	PGresult   *res;

	Assert(st->inflight);
	st->inflight = false;
	st->read = true;
	res = KvRemoteFinish(st->conn, node, st->call_sql, st->call_nparams,
						 st->call_values, st->call_lengths, st->call_formats,
						 st->call_result_format);
	keep_result(st, st->conn, res);
	MemoryContextSwitchTo(old);
}

/*
 * drain_scan
 *		remote.c's KvRemoteDrainFn: the connection of node, whose call is
 *		in flight, is needed for something else.  Take the result; with no
 *		rows, the Append's request is complete now (postgres_fdw's
 *		process_pending_request), otherwise ConfigureWait or Notify
 *		returns the rows.
 */
static void
drain_scan(void *arg)
{
	ForeignScanState *node = (ForeignScanState *) arg;
	KvFdwScanState *st = (KvFdwScanState *) node->fdw_state;
	AsyncRequest *areq = st->areq;

	finish_fetch(node);
	if (areq && areq->callback_pending &&
		(st->rows == NULL || tuplestore_tuple_count(st->rows) == 0))
	{
		areq->callback_pending = false;
		ExecAsyncRequestDone(areq, NULL);
		ExecAsyncResponse(areq);
	}
}

/*
 * fetch_begin
 *		Send the remote call of areq's scan without waiting.  With nothing
 *		to ask, or a connection that broke (KvRemoteSend false: read
 *		synchronously, which recovers or reports), the scan is read at
 *		once.
 */
static void
fetch_begin(AsyncRequest *areq)
{
	ForeignScanState *node = (ForeignScanState *) areq->requestee;
	KvFdwScanState *st = (KvFdwScanState *) node->fdw_state;
	MemoryContext old;

	Assert(!st->read && !st->inflight);
	st->areq = areq;
	st->nfound = 0;
	st->next = 0;
	st->count = 0;
	/* in a subtransaction, its savepoint; another scan's call finishes */
	st->conn = KvRemoteConnect(st->table->serverid, st->userid, st->read_any);
	old = MemoryContextSwitchTo(st->rows_cxt);
	if (!prepare_call(node, st))
		st->read = true;
	else if (KvRemoteSend(st->conn, st->call_sql, st->call_nparams,
						  st->call_values, st->call_lengths, st->call_formats,
						  st->call_result_format, drain_scan, node))
		st->inflight = true;
	else
	{
		st->read = true;
		keep_result(st, st->conn,
					KvRemoteExec(st->conn, false, st->call_sql, st->call_nparams,
								 st->call_values, st->call_lengths,
								 st->call_formats, st->call_result_format));
	}
	MemoryContextSwitchTo(old);
}

/*
 * produce_async
 *		Answer areq: the next row if the scan's rows are here, the end of
 *		the scan after the last one, else pending (a callback will come),
 *		sending the call first if fetch and the connection is free.
 */
static void
produce_async(AsyncRequest *areq, bool fetch)
{
	ForeignScanState *node = (ForeignScanState *) areq->requestee;
	KvFdwScanState *st = (KvFdwScanState *) node->fdw_state;

	if (fetch && !st->read && !st->inflight && KvRemotePending(st->conn) == NULL)
		fetch_begin(areq);
	if (st->read)
	{
		/* not ExecProcNode: the async machinery does the instrumentation */
		TupleTableSlot *slot = areq->requestee->ExecProcNodeReal(areq->requestee);

		ExecAsyncRequestDone(areq, TupIsNull(slot) ? NULL : slot);
	}
	else
		ExecAsyncRequestPending(areq);
}

/*
 * complete_request
 *		A pending request whose rows came meanwhile (another use of the
 *		connection drained its call): answer it outside a callback, as
 *		postgres_fdw's complete_pending_request.
 */
static void
complete_request(AsyncRequest *areq)
{
	Assert(areq->callback_pending);
	areq->callback_pending = false;
	produce_async(areq, false);
	ExecAsyncResponse(areq);
	if (areq->requestee->instrument)
		InstrUpdateTupleCount(areq->requestee->instrument,
							  TupIsNull(areq->result) ? 0.0 : 1.0);
}

/*
 * kvIsForeignPathAsyncCapable
 *		A remote table's scan with async_capable, not an UPDATE's or
 *		DELETE's, not a count(*).
 */
static bool
kvIsForeignPathAsyncCapable(ForeignPath *path)
{
	RelOptInfo *rel = path->path.parent;
	KvFdwRelInfo *info = (KvFdwRelInfo *) rel->fdw_private;

	return rel->reloptkind != RELOPT_UPPER_REL && info != NULL && info->async;
}

/*
 * kvForeignAsyncRequest
 *		The Append asks for a row.
 */
static void
kvForeignAsyncRequest(AsyncRequest *areq)
{
	produce_async(areq, true);
}

/*
 * kvForeignAsyncConfigureWait
 *		The Append is about to wait: add the connection's socket if this
 *		scan's call is in flight (sending it first if the connection is
 *		free).  A scan whose connection carries a call of another scan of
 *		the same Append adds nothing: that scan's event wakes the Append,
 *		and the connection is free then.  A call of another Append's scan
 *		is taken over only when this Append has nothing else to do or
 *		wait for (postgres_fdw's rule).
 */
static void
kvForeignAsyncConfigureWait(AsyncRequest *areq)
{
	ForeignScanState *node = (ForeignScanState *) areq->requestee;
	KvFdwScanState *st = (KvFdwScanState *) node->fdw_state;
	AppendState *requestor = (AppendState *) areq->requestor;
	WaitEventSet *set = requestor->as_eventset;

	Assert(areq->callback_pending);
	if (st->read)
	{
		complete_request(areq);
		return;
	}
	if (!st->inflight)
	{
		ForeignScanState *other = (ForeignScanState *) KvRemotePending(st->conn);

		if (other != NULL)
		{
			AsyncRequest *oreq = ((KvFdwScanState *) other->fdw_state)->areq;

			if (oreq == NULL || oreq->requestor == areq->requestor)
				return;
			if (!bms_is_empty(requestor->as_needrequest) ||
				GetNumRegisteredWaitEvents(set) > 1)
				return;
			drain_scan(other);
		}
		fetch_begin(areq);
		if (st->read)
		{
			complete_request(areq);
			return;
		}
	}
	AddWaitEventToSet(set, WL_SOCKET_READABLE, KvRemoteSocket(st->conn),
					  NULL, areq);
}

/*
 * kvForeignAsyncNotify
 *		The socket is readable: read what arrived; once the result is
 *		complete, answer with the first row.
 */
static void
kvForeignAsyncNotify(AsyncRequest *areq)
{
	ForeignScanState *node = (ForeignScanState *) areq->requestee;
	KvFdwScanState *st = (KvFdwScanState *) node->fdw_state;

	if (st->inflight)
	{
		if (!KvRemoteConsume(st->conn))
		{
			ExecAsyncRequestPending(areq);
			return;
		}
		finish_fetch(node);
	}
	produce_async(areq, true);
}

/*
 * finish_inflight
 *		A scan that ends or starts over with its call in flight: take the
 *		result and drop it.  Nothing to take if an abort of a
 *		subtransaction cancelled the call already.
 */
static void
finish_inflight(ForeignScanState *node)
{
	KvFdwScanState *st = (KvFdwScanState *) node->fdw_state;

	if (!st->inflight)
		return;
	if (KvRemotePending(st->conn) != node)
	{
		st->inflight = false;
		return;
	}
	finish_fetch(node);
}

/*
 * kvIterateForeignScan
 *		The next row, converted to column values in the per-tuple memory
 *		the executor calls us in; an empty slot at the end.
 */
static TupleTableSlot *
kvIterateForeignScan(ForeignScanState *node)
{
	KvFdwScanState *st = (KvFdwScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	const char *key;
	const char *value;
	uint32		keylen;
	uint32		vallen;
	bool		binary;
	bool		checked;
	ErrorContextCallback errcb;

	ExecClearTuple(slot);
	if (st->inflight)
		finish_fetch(node);
	else if (!st->read)
		read_store(node, st);

	if (st->kind == KV_LOOKUP_COUNT)
	{
		if (st->next++ > 0)
			return slot;
		for (int i = 0; i < st->natts; i++)
		{
			slot->tts_values[i] = Int64GetDatum(st->count);
			slot->tts_isnull[i] = false;
		}
		return ExecStoreVirtualTuple(slot);
	}

	if (!next_row(st, &key, &keylen, &value, &vallen, &binary, &checked))
		return slot;

	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	st->cur_key = key;
	st->cur_keylen = keylen;
	errcb.callback = row_error_context;
	errcb.arg = st;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	row_to_text(st, &key, &keylen, &value, &vallen, binary, checked);
	slot->tts_values[st->table->key_attno - 1] =
		KvFdwDecodeKey(&st->key_codec, key, keylen);
	slot->tts_isnull[st->table->key_attno - 1] = false;
	slot->tts_values[st->table->value_attno - 1] =
		KvFdwDecode(&st->value_codec, value, vallen);
	slot->tts_isnull[st->table->value_attno - 1] = false;
	error_context_stack = errcb.previous;
	st->cur_key = NULL;

	return ExecStoreVirtualTuple(slot);
}

/* forget what the last read kept */
static void
forget_rows(KvFdwScanState *st)
{
	if (st->rows)
		tuplestore_end(st->rows);
	st->rows = NULL;
	if (st->raw_slot)
		ExecDropSingleTupleTableSlot(st->raw_slot);
	st->raw_slot = NULL;
	if (st->rows_cxt)
		MemoryContextReset(st->rows_cxt);
	st->read = false;
}

/*
 * kvReScanForeignScan
 *		Start over: the next row reads the store again, with the key
 *		expression's new value.
 */
static void
kvReScanForeignScan(ForeignScanState *node)
{
	finish_inflight(node);
	forget_rows((KvFdwScanState *) node->fdw_state);
}

/*
 * kvEndForeignScan
 *		Free the tuplestore (its temporary file, if any), after taking the
 *		result of a call still in flight (a LIMIT ended the scan early).
 */
static void
kvEndForeignScan(ForeignScanState *node)
{
	KvFdwScanState *st = (KvFdwScanState *) node->fdw_state;

	if (st && st->rows_cxt)
	{
		finish_inflight(node);
		forget_rows(st);
	}
}

/*
 * kvExplainForeignScan
 *		Lookup: the kind of read; with VERBOSE, the key expression or
 *		prefix, the keyspace and the node.
 */
static void
kvExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *plan = (ForeignScan *) node->ss.ps.plan;
	KvFdwScanState *st = (KvFdwScanState *) node->fdw_state;
	List	   *context;

	if (list_length(plan->fdw_private) > KvFdwPrivateRelations)
		ExplainPropertyText("Relations",
							strVal(list_nth(plan->fdw_private, KvFdwPrivateRelations)),
							es);
	ExplainPropertyText("Lookup", KvFdwLookupName(st->kind), es);
	if (!es->verbose)
		return;
	if (plan->fdw_exprs != NIL)
	{
		context = set_deparse_context_plan(es->deparse_cxt, (Plan *) plan, NIL);
		ExplainPropertyText(st->kind == KV_LOOKUP_MULTI ? "Lookup Keys" : "Lookup Key",
							deparse_expression(linitial(plan->fdw_exprs),
											   context, false, false),
							es);
	}
	if (st->prefix)
		ExplainPropertyText("Lookup Prefix",
							quote_literal_cstr(st->prefix), es);
	ExplainPropertyText("Keyspace", st->table->keyspace, es);
	ExplainPropertyText("Node", st->table->remote ? st->table->servername : "local", es);
	if (st->table->multihost)
	{
		char	   *node = st->served_by;

		if (node == NULL)
			node = KvRemoteCachedNodeName(st->table->serverid, st->userid,
										  st->read_any);
		ExplainPropertyText("Read From", st->read_any ? "any" : "leader", es);
		ExplainPropertyText("Group Node", node ? node : "chosen at first use", es);
	}
	if (st->table->remote)
		ExplainPropertyText("Remote Call",
							st->kind == KV_LOOKUP_COUNT ? KVEXT_REMOTE_COUNT_SQL :
							KVEXT_REMOTE_READ_SQL, es);
}

/* the routine of this wrapper; the modify callbacks come from modify.c */
static void
fill_routine(FdwRoutine *routine)
{
	routine->GetForeignRelSize = kvGetForeignRelSize;
	routine->GetForeignPaths = kvGetForeignPaths;
	routine->GetForeignPlan = kvGetForeignPlan;
	routine->GetForeignUpperPaths = kvGetForeignUpperPaths;
	routine->BeginForeignScan = kvBeginForeignScan;
	routine->IterateForeignScan = kvIterateForeignScan;
	routine->ReScanForeignScan = kvReScanForeignScan;
	routine->EndForeignScan = kvEndForeignScan;
	routine->ExplainForeignScan = kvExplainForeignScan;
	routine->IsForeignPathAsyncCapable = kvIsForeignPathAsyncCapable;
	routine->ForeignAsyncRequest = kvForeignAsyncRequest;
	routine->ForeignAsyncConfigureWait = kvForeignAsyncConfigureWait;
	routine->ForeignAsyncNotify = kvForeignAsyncNotify;
	KvFdwModifyRoutine(routine);
}

/*
 * kvext_fdw_check_table(regclass) returns void
 *
 * Called by the extension's event trigger after CREATE and ALTER FOREIGN
 * TABLE: for a kvext foreign table, checks its options and column set, so
 * that a wrong one fails the DDL instead of the first query.
 */
Datum
kvext_fdw_check_table(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;

	if (get_rel_relkind(relid) != RELKIND_FOREIGN_TABLE ||
		GetFdwRoutineByRelId(relid)->GetForeignRelSize != kvGetForeignRelSize)
		PG_RETURN_VOID();
	rel = table_open(relid, AccessShareLock);
	(void) KvFdwGetTable(rel, false);
	table_close(rel, AccessShareLock);
	PG_RETURN_VOID();
}

/*
 * kvext_fdw_handler() returns fdw_handler
 */
Datum
kvext_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	fill_routine(routine);
	PG_RETURN_POINTER(routine);
}
