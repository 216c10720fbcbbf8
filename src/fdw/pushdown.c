/*-------------------------------------------------------------------------
 *
 * pushdown.c
 *	  Which quals of a kvext foreign table the store answers, and when
 *	  count(*) is the keyspace's count.
 *
 * A scan reads one of (best first):
 *	point	key = e			one lookup
 *	multi	key = ANY(e)	one lookup per distinct element (IN lists too)
 *	prefix	key LIKE 'abc%', key ^@ 'abc', starts_with(key, 'abc')
 *							the keys starting with the prefix
 *	full					every key
 * where e is any expression without Vars, volatile functions or subplans
 * (a constant, a parameter $1, an initplan's result, a stable function
 * call), evaluated when the scan starts.  Every other qual runs locally,
 * on the rows the store returns.
 *
 * A lookup must find exactly the rows the qual accepts.  A key is the text
 * form of the column value (codec.c), so key = e is pushed only where
 * equal values have one text form:
 *	text, varchar	texteq under a deterministic collation
 *	bytea			byteaeq
 *	other types		the type's default btree equality operator on the
 *					type itself, when the opclass says equality is image
 *					equality (BTEQUALIMAGE_PROC, as B-tree deduplication
 *					asks): integers, dates, uuid, ... but not numeric
 *					(1.0 = 1.00) or float (0 = -0)
 * The point and multi clauses are then answered exactly and not checked
 * again; a prefix scan keeps its clause as a local qual (a LIKE pattern
 * may go on after its prefix), and is only used for text and varchar keys
 * under a deterministic collation, where both are byte prefixes.
 *
 * count(*): a query whose only relation is a kvext foreign table with no
 * qual at all, no GROUP BY, HAVING or grouping sets, and no aggregate but
 * count(*), reads the keyspace's count (what kv_count() returns: the
 * committed count plus this transaction's own inserts and deletes) instead
 * of its rows.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/nbtree.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "fdw/kvext_fdw.h"

/* is expr the key column of rel (under binary-compatible relabelings)? */
static bool
is_key_var(Node *expr, RelOptInfo *rel, const KvFdwTable *table)
{
	while (expr && IsA(expr, RelabelType))
		expr = (Node *) ((RelabelType *) expr)->arg;
	return expr && IsA(expr, Var) &&
		((Var *) expr)->varno == rel->relid &&
		((Var *) expr)->varattno == table->key_attno &&
		((Var *) expr)->varlevelsup == 0;
}

/* can expr be evaluated once when the scan starts? */
static bool
is_scan_constant(Node *expr)
{
	return !contain_var_clause(expr) &&
		!contain_volatile_functions(expr) &&
		!contain_subplans(expr) &&
		!expression_returns_set(expr);
}

/* does a comparison under collid compare bytes? */
static bool
collation_is_bytewise(Oid collid)
{
	return !OidIsValid(collid) || get_collation_isdeterministic(collid);
}

static bool
key_is_text(const KvFdwTable *table)
{
	return table->key_type == TEXTOID || table->key_type == VARCHAROID;
}

/*
 * is_key_equality
 *		Does opno (under collid) between two key values hold exactly when
 *		their text forms are equal?  See the file header.
 */
static bool
is_key_equality(Oid opno, Oid collid, const KvFdwTable *table)
{
	TypeCacheEntry *tce;
	Oid			proc;

	if (key_is_text(table))
		return opno == TextEqualOperator && collation_is_bytewise(collid);
	if (table->key_type == BYTEAOID)
		return opno == ByteaEqualOperator;

	tce = lookup_type_cache(table->key_type,
							TYPECACHE_EQ_OPR | TYPECACHE_BTREE_OPFAMILY);
	if (opno != tce->eq_opr || !OidIsValid(tce->btree_opf) ||
		tce->btree_opintype != table->key_type)
		return false;
	proc = get_opfamily_proc(tce->btree_opf, tce->btree_opintype,
							 tce->btree_opintype, BTEQUALIMAGE_PROC);
	if (!OidIsValid(proc))
		return false;
	return DatumGetBool(OidFunctionCall1Coll(proc, collid,
											 ObjectIdGetDatum(tce->btree_opintype)));
}

/*
 * like_prefix
 *		The fixed prefix of a LIKE pattern with the default escape (the
 *		characters before the first unescaped % or _), palloc'd; NULL for
 *		an empty prefix or a pattern that ends with the escape character
 *		(which LIKE rejects).
 */
static char *
like_prefix(const char *pattern, int len)
{
	char	   *prefix = palloc(len + 1);
	int			n = 0;
	int			i = 0;

	while (i < len)
	{
		int			clen;

		if (pattern[i] == '%' || pattern[i] == '_')
			break;
		if (pattern[i] == '\\')
		{
			i++;
			if (i >= len)
				return NULL;
		}
		clen = pg_mblen(pattern + i);
		if (i + clen > len)
			return NULL;
		memcpy(prefix + n, pattern + i, clen);
		n += clen;
		i += clen;
	}
	if (n == 0)
		return NULL;
	prefix[n] = '\0';
	return prefix;
}

/*
 * prefix_of_clause
 *		For key LIKE 'const', key ^@ 'const' or starts_with(key, 'const'),
 *		the prefix of the keys it accepts (palloc'd); else NULL.
 */
static char *
prefix_of_clause(Expr *clause, RelOptInfo *rel, const KvFdwTable *table)
{
	Oid			funcid;
	List	   *args;
	Oid			collid;
	Const	   *c;
	text	   *t;

	if (!key_is_text(table))
		return NULL;
	if (IsA(clause, OpExpr))
	{
		funcid = ((OpExpr *) clause)->opfuncid;
		if (!OidIsValid(funcid))
			funcid = get_opcode(((OpExpr *) clause)->opno);
		args = ((OpExpr *) clause)->args;
		collid = ((OpExpr *) clause)->inputcollid;
	}
	else if (IsA(clause, FuncExpr))
	{
		funcid = ((FuncExpr *) clause)->funcid;
		args = ((FuncExpr *) clause)->args;
		collid = ((FuncExpr *) clause)->inputcollid;
	}
	else
		return NULL;
	if ((funcid != F_TEXTLIKE && funcid != F_STARTS_WITH) ||
		list_length(args) != 2 || !collation_is_bytewise(collid) ||
		!is_key_var(linitial(args), rel, table) ||
		!IsA(lsecond(args), Const) || ((Const *) lsecond(args))->constisnull)
		return NULL;

	c = (Const *) lsecond(args);
	t = DatumGetTextPP(c->constvalue);
	if (funcid == F_STARTS_WITH)
		return VARSIZE_ANY_EXHDR(t) > 0 ? text_to_cstring(t) : NULL;
	return like_prefix(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* the number of elements of a constant array or ARRAY[...] expression */
static double
array_length_estimate(Node *expr)
{
	if (IsA(expr, Const) && !((Const *) expr)->constisnull)
	{
		ArrayType  *arr = DatumGetArrayTypeP(((Const *) expr)->constvalue);

		return ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	}
	if (IsA(expr, ArrayExpr))
		return list_length(((ArrayExpr *) expr)->elements);
	return 10;
}

/*
 * KvFdwChooseLookup
 *		Choose the lookup of a scan of baserel from its quals (file
 *		header); sets info's kind, key_expr, pushed, prefix, nkeys and
 *		local_conds.  info->table is set.
 */
void
KvFdwChooseLookup(PlannerInfo *root, RelOptInfo *baserel, KvFdwRelInfo *info)
{
	const KvFdwTable *table = info->table;
	RestrictInfo *point = NULL;
	RestrictInfo *multi = NULL;
	char	   *prefix = NULL;
	ListCell   *lc;

	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);
		Expr	   *clause = ri->clause;

		if (IsA(clause, OpExpr) && point == NULL &&
			list_length(((OpExpr *) clause)->args) == 2)
		{
			OpExpr	   *op = (OpExpr *) clause;
			Node	   *l = linitial(op->args);
			Node	   *r = lsecond(op->args);

			if (is_key_equality(op->opno, op->inputcollid, table) &&
				((is_key_var(l, baserel, table) && is_scan_constant(r)) ||
				 (is_key_var(r, baserel, table) && is_scan_constant(l))))
			{
				point = ri;
				info->key_expr = (Expr *) (is_key_var(l, baserel, table) ? r : l);
				continue;
			}
		}
		if (IsA(clause, ScalarArrayOpExpr) && multi == NULL)
		{
			ScalarArrayOpExpr *sa = (ScalarArrayOpExpr *) clause;

			if (sa->useOr &&
				is_key_equality(sa->opno, sa->inputcollid, table) &&
				is_key_var(linitial(sa->args), baserel, table) &&
				is_scan_constant(lsecond(sa->args)))
			{
				multi = ri;
				continue;
			}
		}
		if (prefix == NULL)
			prefix = prefix_of_clause(clause, baserel, table);
	}

	info->local_conds = NIL;
	if (point)
	{
		info->kind = KV_LOOKUP_POINT;
		info->pushed = point;
	}
	else if (multi)
	{
		ScalarArrayOpExpr *sa = (ScalarArrayOpExpr *) multi->clause;

		info->kind = KV_LOOKUP_MULTI;
		info->pushed = multi;
		info->key_expr = (Expr *) lsecond(sa->args);
		info->nkeys = array_length_estimate(lsecond(sa->args));
	}
	else if (prefix)
	{
		info->kind = KV_LOOKUP_PREFIX;
		info->prefix = prefix;
	}
	else
		info->kind = KV_LOOKUP_FULL;

	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);

		if (ri != info->pushed)
			info->local_conds = lappend(info->local_conds, ri);
	}
}

/*
 * count_walker
 *		Collect the Aggrefs of a grouping target into *(List **) context;
 *		true (stop) at anything count(*) pushdown cannot compute: a Var, an
 *		aggregate other than a plain count(*).
 */
static bool
count_walker(Node *node, void *context)
{
	List	  **aggs = (List **) context;

	if (node == NULL)
		return false;
	if (IsA(node, Var) || IsA(node, PlaceHolderVar) ||
		IsA(node, GroupingFunc) || IsA(node, WindowFunc))
		return true;
	if (IsA(node, Aggref))
	{
		Aggref	   *agg = (Aggref *) node;

		if (agg->aggfnoid != F_COUNT_ || !agg->aggstar ||
			agg->aggfilter != NULL || agg->aggdistinct != NIL ||
			agg->aggorder != NIL || agg->agglevelsup != 0 ||
			agg->aggsplit != AGGSPLIT_SIMPLE)
			return true;
		*aggs = list_append_unique(*aggs, agg);
		return false;
	}
	return expression_tree_walker(node, count_walker, context);
}

/*
 * KvFdwCountTargets
 *		When the grouping step of output_rel over input_rel can be the
 *		keyspace's count (file header), the distinct count(*) Aggrefs of its
 *		target; else NIL.  extra is the GroupPathExtraData of
 *		GetForeignUpperPaths.
 */
List *
KvFdwCountTargets(PlannerInfo *root, RelOptInfo *input_rel,
				  RelOptInfo *output_rel, void *extra)
{
	GroupPathExtraData *gextra = (GroupPathExtraData *) extra;
	KvFdwRelInfo *info = (KvFdwRelInfo *) input_rel->fdw_private;
	Query	   *parse = root->parse;
	List	   *aggs = NIL;
	ListCell   *lc;

	if (input_rel->reloptkind != RELOPT_BASEREL || info == NULL ||
		info->kind != KV_LOOKUP_FULL || input_rel->baserestrictinfo != NIL ||
		gextra == NULL || gextra->patype != PARTITIONWISE_AGGREGATE_NONE ||
		gextra->havingQual != NULL ||
		parse->groupClause != NIL || parse->groupingSets != NIL ||
		parse->hasTargetSRFs)
		return NIL;
	foreach(lc, output_rel->reltarget->exprs)
	{
		Node	   *expr = (Node *) lfirst(lc);

		if (contain_volatile_functions(expr) || count_walker(expr, &aggs))
			return NIL;
	}
	return aggs;
}

/* the name EXPLAIN gives a lookup */
const char *
KvFdwLookupName(KvLookupKind kind)
{
	switch (kind)
	{
		case KV_LOOKUP_FULL:
			return "full scan";
		case KV_LOOKUP_POINT:
			return "point";
		case KV_LOOKUP_MULTI:
			return "multi-key";
		case KV_LOOKUP_PREFIX:
			return "prefix";
		case KV_LOOKUP_COUNT:
			return "count";
	}
	return "?";
}
