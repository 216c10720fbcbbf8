/*-------------------------------------------------------------------------
 *
 * modify.c
 *	  kvext_fdw writes: INSERT, UPDATE, DELETE, RETURNING, COPY FROM, tuple
 *	  routing into kvext partitions, the partition-bound check, and rows
 *	  that an UPDATE moves out of a kvext partition.
 *
 * Every write goes through KvStoreWrite(), the write path of kv_put(): it
 * joins the current transaction (it is visible to this transaction at
 * once, to others at commit; ROLLBACK and ROLLBACK TO SAVEPOINT undo it)
 * and locks its key until the transaction ends, so a second writer of the
 * key waits for it as it would for kv_put().
 *
 * A table of a remote server writes on its node, in the remote transaction
 * of this one (remote.c): INSERT through kvext_fdw_remote_insert (an
 * array of rows per call with batch_size, each an insert-if-absent there),
 * UPDATE and DELETE as a read of the key's bytes, the comparison here,
 * then kvext_fdw_remote_cas there (serve.c).  A create_keyspace table's
 * first write calls kv_create_keyspace(keyspace, true) on the node.
 *
 * INSERT writes a key only if it does not exist (a compare-and-set whose
 * expected value is "absent"): an existing key is 23505, or is skipped
 * with ON CONFLICT DO NOTHING, unless the table has upsert 'true', which
 * overwrites it as kv_put() does.  A NULL key or value is 22004, as for
 * kv_put(); a key or value over kvext's limits is 54000.
 *
 * UPDATE and DELETE identify a row by its key and the value the scan read
 * (AddForeignUpdateTargets adds both as row identity columns, "kvext_key"
 * and "kvext_value").  The write is a compare-and-set against the stored
 * bytes that read as that value, which waits for a concurrent writer of
 * the key first, so:
 *	- a key deleted since the scan read it is skipped (0 rows), as an
 *	  UPDATE of a heap row deleted meanwhile is;
 *	- a key whose value changed since is 40001 (serialization failure),
 *	  the error postgres_fdw's repeatable-read remote transaction gives:
 *	  the UPDATE's new value was computed from the old one, and kvext has
 *	  no EvalPlanQual to compute it again.  kv_incr() and kv_cas() update
 *	  a key atomically.
 * An UPDATE of the key deletes the old key and inserts the new one (23505
 * if it exists: upsert applies to INSERT only, so an UPDATE never
 * overwrites another row).  A row whose key the same statement already
 * wrote (changed, deleted, or gave to another row) is skipped, as
 * PostgreSQL skips a heap row its own command updated (wrote_key).
 *
 * Partitions.  PostgreSQL checks a partition's bound for heap partitions
 * only; kvext checks it for kvext partitions:
 *	- a direct INSERT (BeginForeignModify) checks every row: 23514;
 *	- a routed INSERT or COPY (BeginForeignInsert) was routed by the bound,
 *	  and is checked only when a BEFORE ROW trigger of the partition may
 *	  have changed it (COPY does that check itself);
 *	- an UPDATE checks the new row.  Through the partitioned table, a row
 *	  that no longer fits is moved, which PostgreSQL does not do for
 *	  foreign partitions: the key is deleted here and the row is routed
 *	  from the root (ExecFindPartition) to its new partition, which must be
 *	  a kvext foreign table without row insert triggers (0A000 otherwise).
 *	  Directly on the partition, it is 23514, as for a heap partition.
 * Rows moved or routed into a kvext partition that the same UPDATE has
 * yet to scan would be scanned again, so that is refused (0A000), as
 * postgres_fdw refuses it.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/tupconvert.h"
#include "executor/execPartition.h"
#include "executor/executor.h"
#include "commands/explain.h"
#include "common/hashfn.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/appendinfo.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "catalog/pg_type.h"
#include "utils/rel.h"

#include "api/api.h"
#include "fdw/kvext_fdw.h"
#include "remote.h"
#include "store/store.h"

/* the state of one result relation, in ri_FdwState */
typedef struct KvFdwModifyState
{
	KvFdwTable *table;
	KvFdwCodec	key_codec;
	KvFdwCodec	value_codec;
	AttrNumber	key_junk;		/* UPDATE, DELETE: row identity columns */
	AttrNumber	value_junk;
	bool		check_partition;	/* check each inserted row's bound */
	bool		skip_existing;	/* ON CONFLICT DO NOTHING */
	ModifyTableState *mtstate;	/* NULL for COPY */
	MemoryContext temp_cxt;		/* per row, reset at each */
	bool		keyspace_made;	/* remote create_keyspace: asked for it */
	HTAB	   *written;		/* UPDATE, DELETE: keys this statement wrote */
	MemoryContext written_cxt;	/* where they are kept (the query's) */
} KvFdwModifyState;

/* a set of keys: their hash, then the keys of that hash */
typedef struct WrittenKeys
{
	uint64		hash;
	List	   *keys;			/* bytea copies */
} WrittenKeys;

/* the names of the row identity columns */
#define KVEXT_KEY_JUNK		"kvext_key"
#define KVEXT_VALUE_JUNK	"kvext_value"

/*
 * create_state
 *		The modify state of rel, in the current memory context.
 */
static KvFdwModifyState *
create_state(Relation rel, ModifyTableState *mtstate)
{
	KvFdwModifyState *fm = palloc0(sizeof(KvFdwModifyState));

	fm->table = KvFdwGetTable(rel, true);
	fm->mtstate = mtstate;
	KvFdwCodecInit(&fm->key_codec, fm->table->key_type, fm->table->key_typmod);
	KvFdwCodecInit(&fm->value_codec, fm->table->value_type, fm->table->value_typmod);
	fm->written_cxt = CurrentMemoryContext;
	fm->temp_cxt = AllocSetContextCreate(CurrentMemoryContext,
										 "kvext_fdw modify",
										 ALLOCSET_DEFAULT_SIZES);
	return fm;
}

/*
 * kvAddForeignUpdateTargets
 *		UPDATE and DELETE identify a row by its key and the value read.
 */
static void
kvAddForeignUpdateTargets(PlannerInfo *root, Index rtindex,
						  RangeTblEntry *target_rte, Relation target_relation)
{
	KvFdwTable *table = KvFdwGetTable(target_relation, true);
	TupleDesc	desc = RelationGetDescr(target_relation);
	Form_pg_attribute katt = TupleDescAttr(desc, table->key_attno - 1);
	Form_pg_attribute vatt = TupleDescAttr(desc, table->value_attno - 1);

	add_row_identity_var(root,
						 makeVar(rtindex, table->key_attno, katt->atttypid,
								 katt->atttypmod, katt->attcollation, 0),
						 rtindex, KVEXT_KEY_JUNK);
	add_row_identity_var(root,
						 makeVar(rtindex, table->value_attno, vatt->atttypid,
								 vatt->atttypmod, vatt->attcollation, 0),
						 rtindex, KVEXT_VALUE_JUNK);
}

/*
 * kvPlanForeignModify
 *		fdw_private: whether the statement has ON CONFLICT DO NOTHING.
 */
static List *
kvPlanForeignModify(PlannerInfo *root, ModifyTable *plan, Index resultRelation,
					int subplan_index)
{
	return list_make1(makeInteger(plan->onConflictAction == ONCONFLICT_NOTHING));
}

/*
 * kvBeginForeignModify
 *		Set up INSERT, UPDATE or DELETE of a table named by the statement
 *		(or, for UPDATE and DELETE, one of its partitions).
 */
static void
kvBeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
					 List *fdw_private, int subplan_index, int eflags)
{
	KvFdwModifyState *fm = create_state(rinfo->ri_RelationDesc, mtstate);
	CmdType		op = mtstate->operation;

	rinfo->ri_FdwState = fm;
	fm->skip_existing = intVal(linitial(fdw_private)) != 0;
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	if (op == CMD_UPDATE || op == CMD_DELETE)
	{
		Plan	   *subplan = outerPlanState(mtstate)->plan;

		fm->key_junk = ExecFindJunkAttributeInTlist(subplan->targetlist,
													KVEXT_KEY_JUNK);
		fm->value_junk = ExecFindJunkAttributeInTlist(subplan->targetlist,
													  KVEXT_VALUE_JUNK);
		if (!AttributeNumberIsValid(fm->key_junk) ||
			!AttributeNumberIsValid(fm->value_junk))
			elog(ERROR, "kvext_fdw: row identity columns not found");
	}
	/* a direct INSERT into a partition: nothing routed it there */
	fm->check_partition = (op == CMD_INSERT &&
						   rinfo->ri_RelationDesc->rd_rel->relispartition);
}

/*
 * kvBeginForeignInsert
 *		Set up inserts routed into a kvext partition (INSERT or UPDATE
 *		through the partitioned table) or COPY FROM (mtstate NULL).
 */
static void
kvBeginForeignInsert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	Relation	rel = rinfo->ri_RelationDesc;
	KvFdwModifyState *fm;

	if (rinfo->ri_FdwState != NULL)
	{
		/* an UPDATE result relation that rows are now routed into */
		if (mtstate && mtstate->operation == CMD_UPDATE &&
			rinfo > mtstate->resultRelInfo + mtstate->mt_lastResultIndex)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot route rows into foreign table \"%s\", which this UPDATE has yet to scan",
							RelationGetRelationName(rel)),
					 errdetail("The UPDATE would read the moved rows again."),
					 errhint("Update fewer partitions at a time, or DELETE the rows and INSERT them through the partitioned table.")));
		return;
	}

	fm = create_state(rel, mtstate);
	rinfo->ri_FdwState = fm;
	if (mtstate && mtstate->ps.plan)
		fm->skip_existing = ((ModifyTable *) mtstate->ps.plan)->onConflictAction == ONCONFLICT_NOTHING;
	fm->check_partition = (mtstate != NULL && rel->rd_rel->relispartition &&
						   rinfo->ri_TrigDesc &&
						   rinfo->ri_TrigDesc->trig_insert_before_row);
}

/* raise 22004 for a NULL key or value of table */
static void
report_null(const KvFdwTable *table, AttrNumber attno)
{
	if (attno == table->key_attno)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key must not be null"),
				 errdetail("Foreign table \"%s\" stores rows as keys of keyspace \"%s\".",
						   table->relname, table->keyspace)));
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("value must not be null"),
			 errdetail("Foreign table \"%s\" stores rows as keys of keyspace \"%s\", whose values are never null.",
					   table->relname, table->keyspace)));
}

/* the encoded key or value of a row; 22004 if it is NULL */
static char *
encode_column(KvFdwModifyState *fm, TupleTableSlot *slot, AttrNumber attno,
			  uint32 *len)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, attno, &isnull);

	if (isnull)
		report_null(fm->table, attno);
	return KvFdwEncode(attno == fm->table->key_attno ? &fm->key_codec : &fm->value_codec,
					   d, len);
}

/*
 * remote_conn
 *		The connection of a remote table's writes, in this transaction's
 *		remote transaction; the first write of a create_keyspace table
 *		creates its keyspace there if missing.
 */
static KvRemoteConn *
remote_conn(KvFdwModifyState *fm)
{
	KvRemoteConn *conn = KvRemoteConnect(fm->table->serverid, GetUserId(), false);

	if (fm->table->create_keyspace && !fm->keyspace_made)
	{
		const char *values[1] = {fm->table->keyspace};

		PQclear(KvRemoteExec(conn, true, KVEXT_REMOTE_CREATE_SQL, 1, values, NULL,
							 NULL, 0));
		fm->keyspace_made = true;
	}
	return conn;
}

/* the binary form of a bytea[] parameter of n items; *len its length */
static char *
bytea_array_param(char **items, uint32 *lens, int n, int *len)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	bytea	   *bin;

	for (int i = 0; i < n; i++)
		elems[i] = PointerGetDatum(cstring_to_text_with_len(items[i], lens[i]));
	bin = DatumGetByteaPP(OidFunctionCall1(F_ARRAY_SEND,
										   PointerGetDatum(construct_array(elems, n, BYTEAOID, -1, false, TYPALIGN_INT))));
	*len = VARSIZE_ANY_EXHDR(bin);
	return VARDATA_ANY(bin);
}

/* 23505 for key, which exists (update: an UPDATE gave a row that key) */
static void
report_exists(KvFdwModifyState *fm, const char *key, uint32 keylen, bool update)
{
	if (update)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("key \"%s\" already exists in keyspace \"%s\"",
						KvKeyExcerpt(key, keylen), fm->table->keyspace),
				 errdetail("An UPDATE that changes a row's key never overwrites another row of foreign table \"%s\", whatever its upsert option.",
						   fm->table->relname)));
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("key \"%s\" already exists in keyspace \"%s\"",
					KvKeyExcerpt(key, keylen), fm->table->keyspace),
			 errdetail("An INSERT into foreign table \"%s\" writes only keys that do not exist yet.",
					   fm->table->relname),
			 errhint("Set the table option upsert 'true' to overwrite existing keys, or use ON CONFLICT DO NOTHING to skip them.")));
}

/*
 * wrote_key, note_written
 *		The keys an UPDATE or DELETE statement has written (changed, deleted
 *		or given to a row) on this table.  A row the scan read under such a
 *		key was changed by the statement itself since: it is skipped, as
 *		PostgreSQL skips a heap row the same command updated (a join that
 *		matches a row twice updates it once; an UPDATE that moved another
 *		row onto the key does not then delete it as if it were the one it
 *		read).
 */
static bool
wrote_key(KvFdwModifyState *fm, const char *key, uint32 keylen)
{
	uint64		h;
	WrittenKeys *wk;
	ListCell   *lc;

	if (fm->written == NULL)
		return false;
	h = hash_bytes_extended((const unsigned char *) key, keylen, 0);
	wk = hash_search(fm->written, &h, HASH_FIND, NULL);
	if (wk == NULL)
		return false;
	foreach(lc, wk->keys)
	{
		bytea	   *k = lfirst(lc);

		if (VARSIZE(k) - VARHDRSZ == keylen && memcmp(VARDATA(k), key, keylen) == 0)
			return true;
	}
	return false;
}

static void
note_written(KvFdwModifyState *fm, const char *key, uint32 keylen)
{
	uint64		h = hash_bytes_extended((const unsigned char *) key, keylen, 0);
	WrittenKeys *wk;
	bool		found;
	MemoryContext old;
	bytea	   *k;

	if (wrote_key(fm, key, keylen))
		return;
	old = MemoryContextSwitchTo(fm->written_cxt);
	if (fm->written == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(WrittenKeys);
		ctl.hcxt = fm->written_cxt;
		fm->written = hash_create("kvext_fdw written keys", 256, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	wk = hash_search(fm->written, &h, HASH_ENTER, &found);
	if (!found)
		wk->keys = NIL;
	k = palloc(VARHDRSZ + keylen);
	SET_VARSIZE(k, VARHDRSZ + keylen);
	memcpy(VARDATA(k), key, keylen);
	wk->keys = lappend(wk->keys, k);
	MemoryContextSwitchTo(old);
}

/*
 * remote_insert
 *		Insert n keys into a remote table in one kvext_fdw_remote_insert
 *		call; written[i] gets whether key i was written (with overwrite,
 *		always).
 */
static void
remote_insert(KvFdwModifyState *fm, char **keys, uint32 *keylens,
			  char **vals, uint32 *vallens, int n, bool overwrite,
			  bool *written)
{
	KvRemoteConn *conn = remote_conn(fm);
	const char *values[5];
	int			lengths[5] = {0, 0, 0, 0, 0};
	int			formats[5] = {0, 1, 1, 0, 0};
	PGresult   *res;
	const char *r;
	int			i = 0;

	values[0] = fm->table->keyspace;
	values[1] = bytea_array_param(keys, keylens, n, &lengths[1]);
	values[2] = bytea_array_param(vals, vallens, n, &lengths[2]);
	values[3] = fm->value_codec.kind == KV_CODEC_BYTEA ? "true" : "false";
	values[4] = overwrite ? "true" : "false";
	res = KvRemoteExec(conn, true, KVEXT_REMOTE_INSERT_SQL, 5, values, lengths,
					   formats, 0);
	/* the text form of a bool[]: {t,f,...} */
	r = PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "";
	for (; *r && i < n; r++)
		if (*r == 't' || *r == 'f')
			written[i++] = (*r == 't');
	PQclear(res);
	if (i != n)
		elog(ERROR, "kvext_fdw: unexpected answer of server \"%s\" to an insert",
			 fm->table->servername);
}

/*
 * remote_replace_checked
 *		replace_checked on a remote table: read the key's bytes, compare,
 *		then compare-and-set them on the node.
 */
static bool
remote_replace_checked(KvFdwModifyState *fm, const char *key, uint32 keylen,
					   Datum old, const char *value, uint32 vallen)
{
	KvRemoteConn *conn = remote_conn(fm);

	for (;;)
	{
		const char *values[5];
		int			lengths[5] = {0, 0, 0, 0, 0};
		int			formats[5] = {0, 0, 0, 1, 1};
		char	   *k = (char *) key;
		PGresult   *res;
		char	   *cur;
		int			curlen;
		bool		swapped;

		CHECK_FOR_INTERRUPTS();
		values[0] = fm->table->keyspace;
		values[1] = "false";
		values[2] = "false";
		values[3] = NULL;
		values[4] = bytea_array_param(&k, &keylen, 1, &lengths[4]);
		res = KvRemoteExec(conn, false, KVEXT_REMOTE_READ_SQL, 5, values, lengths,
						   formats, 1);
		if (PQntuples(res) == 0)
		{
			PQclear(res);
			return false;
		}
		curlen = PQgetlength(res, 0, 1);
		cur = palloc(curlen + 1);
		memcpy(cur, PQgetvalue(res, 0, 1), curlen);
		PQclear(res);
		if (!KvFdwValueEquals(&fm->value_codec, old, cur, curlen))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update"),
					 errdetail("Key \"%s\" of keyspace \"%s\" changed after this statement read it.",
							   KvKeyExcerpt(key, keylen), fm->table->keyspace),
					 errhint("Retry the statement; kv_incr() and kv_cas() change a key atomically.")));
		values[1] = key;
		lengths[1] = keylen;
		values[2] = cur;
		lengths[2] = curlen;
		values[3] = value;
		lengths[3] = vallen;
		values[4] = fm->value_codec.kind == KV_CODEC_BYTEA ? "true" : "false";
		formats[1] = formats[2] = formats[3] = 1;
		formats[4] = 0;
		res = KvRemoteExec(conn, true, KVEXT_REMOTE_CAS_SQL, 5, values, lengths,
						   formats, 0);
		swapped = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
		PQclear(res);
		pfree(cur);
		if (swapped)
			return true;
	}
}

/*
 * insert_key
 *		Write key = value as a new key of the table's keyspace (or over an
 *		existing one, with upsert, for an INSERT: the new key of an UPDATE,
 *		update, never overwrites).  Returns false if the key exists and the
 *		statement skips existing keys; else 23505 for an existing key.
 */
static bool
insert_key(KvFdwModifyState *fm, const char *key, uint32 keylen,
		   const char *value, uint32 vallen, bool update)
{
	KvWrite		w = {0};
	bool		exists;
	KvKeyspaceRef ks;
	bool		overwrite = fm->table->upsert && !update;

	KvCheckKeySize(keylen);
	KvCheckValueSize(vallen);
	if (fm->table->remote)
	{
		bool		written;

		remote_insert(fm, (char **) &key, &keylen, (char **) &value, &vallen,
					  1, overwrite, &written);
		if (written)
			return true;
		if (fm->skip_existing)
			return false;
		report_exists(fm, key, keylen, update);
	}
	ks = KvFdwKeyspace(fm->table, true, &exists);
	w.op = overwrite ? KV_OP_PUT : KV_OP_CAS;
	w.value = value;
	w.vallen = vallen;
	w.binary = (fm->value_codec.kind == KV_CODEC_BYTEA);
	w.expected = NULL;
	KvStoreWrite(ks, key, keylen, &w);
	if (w.op == KV_OP_PUT || w.swapped)
		return true;
	if (fm->skip_existing)
		return false;
	report_exists(fm, key, keylen, update);
	return false;
}

/*
 * insert_row
 *		insert_key for a row of the table's own format (update: a row an
 *		UPDATE moves here).  Returns whether it was written.
 */
static bool
insert_row(KvFdwModifyState *fm, TupleTableSlot *slot, bool update)
{
	MemoryContext old;
	char	   *key;
	char	   *value;
	uint32		keylen;
	uint32		vallen;
	bool		done;

	MemoryContextReset(fm->temp_cxt);
	old = MemoryContextSwitchTo(fm->temp_cxt);
	key = encode_column(fm, slot, fm->table->key_attno, &keylen);
	value = encode_column(fm, slot, fm->table->value_attno, &vallen);
	done = insert_key(fm, key, keylen, value, vallen, update);
	MemoryContextSwitchTo(old);
	return done;
}

/*
 * kvExecForeignInsert
 *		Insert one row; NULL if ON CONFLICT DO NOTHING skipped it.
 */
static TupleTableSlot *
kvExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
					TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	KvFdwModifyState *fm = (KvFdwModifyState *) rinfo->ri_FdwState;

	if (fm->check_partition)
		(void) ExecPartitionCheck(rinfo, slot, estate, true);
	return insert_row(fm, slot, false) ? slot : NULL;
}

/*
 * kvGetForeignModifyBatchSize
 *		batch_size for INSERTs into a remote table, as postgres_fdw: 1
 *		when rows must come back one at a time (RETURNING, WITH CHECK
 *		OPTION, row triggers) or ON CONFLICT DO NOTHING needs each row's
 *		outcome.
 */
static int
kvGetForeignModifyBatchSize(ResultRelInfo *rinfo)
{
	KvFdwModifyState *fm = (KvFdwModifyState *) rinfo->ri_FdwState;

	if (fm == NULL || !fm->table->remote || fm->skip_existing ||
		rinfo->ri_projectReturning || rinfo->ri_WithCheckOptions ||
		(rinfo->ri_TrigDesc &&
		 (rinfo->ri_TrigDesc->trig_insert_before_row ||
		  rinfo->ri_TrigDesc->trig_insert_after_row)))
		return 1;
	return fm->table->batch_size;
}

/*
 * kvExecForeignBatchInsert
 *		Insert *numSlots rows of a remote table in one call; 23505 for the
 *		first existing key (unless upsert).
 */
static TupleTableSlot **
kvExecForeignBatchInsert(EState *estate, ResultRelInfo *rinfo,
						 TupleTableSlot **slots, TupleTableSlot **planSlots,
						 int *numSlots)
{
	KvFdwModifyState *fm = (KvFdwModifyState *) rinfo->ri_FdwState;
	int			n = *numSlots;
	MemoryContext old;
	char	  **keys;
	char	  **vals;
	uint32	   *keylens;
	uint32	   *vallens;
	bool	   *written;

	MemoryContextReset(fm->temp_cxt);
	old = MemoryContextSwitchTo(fm->temp_cxt);
	keys = palloc(sizeof(char *) * n);
	vals = palloc(sizeof(char *) * n);
	keylens = palloc(sizeof(uint32) * n);
	vallens = palloc(sizeof(uint32) * n);
	written = palloc(sizeof(bool) * n);
	for (int i = 0; i < n; i++)
	{
		if (fm->check_partition)
			(void) ExecPartitionCheck(rinfo, slots[i], estate, true);
		keys[i] = encode_column(fm, slots[i], fm->table->key_attno, &keylens[i]);
		vals[i] = encode_column(fm, slots[i], fm->table->value_attno, &vallens[i]);
		KvCheckKeySize(keylens[i]);
		KvCheckValueSize(vallens[i]);
	}
	remote_insert(fm, keys, keylens, vals, vallens, n, fm->table->upsert, written);
	for (int i = 0; i < n; i++)
		if (!written[i])
			report_exists(fm, keys[i], keylens[i], false);
	MemoryContextSwitchTo(old);
	return slots;
}

/*
 * replace_checked
 *		Write value (NULL: delete) over key, provided the key still holds a
 *		value that reads as old, the value the scan read.  Returns false if
 *		the key no longer exists; raises 40001 if its value changed (file
 *		header).  The compare-and-set waits for a concurrent writer of the
 *		key and then compares with its outcome; a value written back to the
 *		same bytes meanwhile is tried again.
 */
static bool
replace_checked(KvFdwModifyState *fm, const char *key, uint32 keylen,
				Datum old, const char *value, uint32 vallen)
{
	bool		exists;
	KvKeyspaceRef ks;

	if (fm->table->remote)
		return remote_replace_checked(fm, key, keylen, old, value, vallen);
	ks = KvFdwKeyspace(fm->table, true, &exists);
	for (;;)
	{
		struct varlena *cur;
		KvWrite		w = {0};

		CHECK_FOR_INTERRUPTS();
		if (!KvStoreGet(ks, key, keylen, KV_READ_BYTEA, &cur))
			return false;
		if (!KvFdwValueEquals(&fm->value_codec, old, VARDATA(cur),
							  VARSIZE(cur) - VARHDRSZ))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update"),
					 errdetail("Key \"%s\" of keyspace \"%s\" changed after this statement read it.",
							   KvKeyExcerpt(key, keylen), fm->table->keyspace),
					 errhint("Retry the statement; kv_incr() and kv_cas() change a key atomically.")));
		w.op = KV_OP_CAS;
		w.expected = VARDATA(cur);
		w.expectedlen = VARSIZE(cur) - VARHDRSZ;
		w.value = value;
		w.vallen = vallen;
		w.binary = (fm->value_codec.kind == KV_CODEC_BYTEA);
		KvStoreWrite(ks, key, keylen, &w);
		pfree(cur);
		if (w.swapped)
			return true;
	}
}

/*
 * start_old_row
 *		Start work on the row an UPDATE or DELETE is at: reset the per-row
 *		context and switch to it (returning the context to switch back to),
 *		fetch the row identity columns and encode the key.
 */
static MemoryContext
start_old_row(KvFdwModifyState *fm, TupleTableSlot *planSlot, Datum *keyd,
			  Datum *value, char **key, uint32 *keylen)
{
	MemoryContext old;
	bool		isnull;

	MemoryContextReset(fm->temp_cxt);
	old = MemoryContextSwitchTo(fm->temp_cxt);
	*keyd = slot_getattr(planSlot, fm->key_junk, &isnull);
	if (isnull)
		elog(ERROR, "kvext_fdw: row identity key is null");
	*value = slot_getattr(planSlot, fm->value_junk, &isnull);
	if (isnull)
		elog(ERROR, "kvext_fdw: row identity value is null");
	*key = KvFdwEncode(&fm->key_codec, *keyd, keylen);
	return old;
}

/*
 * move_row
 *		An UPDATE through a partitioned table gave a row of this kvext
 *		partition a key of another partition: delete it here and insert it
 *		where the root routes it (file header).  Returns the slot, or NULL
 *		if the key was deleted meanwhile.
 */
static TupleTableSlot *
move_row(KvFdwModifyState *fm, EState *estate, ResultRelInfo *rinfo,
		 TupleTableSlot *slot, const char *oldkey, uint32 oldkeylen,
		 Datum oldvalue)
{
	ModifyTableState *mtstate = fm->mtstate;
	ResultRelInfo *root = rinfo->ri_RootResultRelInfo;
	TupleConversionMap *map;
	TupleTableSlot *rootslot = slot;
	TupleTableSlot *destslot;
	ResultRelInfo *dest;
	KvFdwModifyState *destfm;

	if (mtstate == NULL || root == NULL ||
		root->ri_RelationDesc->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ExecPartitionCheckEmitError(rinfo, slot, estate);

	if (mtstate->mt_partition_tuple_routing == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);

		mtstate->mt_partition_tuple_routing =
			ExecSetupPartitionTupleRouting(estate, root->ri_RelationDesc);
		if (mtstate->mt_root_tuple_slot == NULL)
			mtstate->mt_root_tuple_slot = table_slot_create(root->ri_RelationDesc, NULL);
		MemoryContextSwitchTo(old);
	}
	map = ExecGetChildToRootMap(rinfo);
	if (map)
		rootslot = execute_attr_map_slot(map->attrMap, slot, mtstate->mt_root_tuple_slot);
	dest = ExecFindPartition(mtstate, root, mtstate->mt_partition_tuple_routing,
							 rootslot, estate);
	if (dest->ri_FdwRoutine == NULL ||
		dest->ri_FdwRoutine->ExecForeignInsert != kvExecForeignInsert)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot move a row from foreign table \"%s\" to partition \"%s\"",
						RelationGetRelationName(rinfo->ri_RelationDesc),
						RelationGetRelationName(dest->ri_RelationDesc)),
				 errdetail("PostgreSQL does not move rows out of foreign-table partitions; kvext_fdw moves them into kvext foreign tables only."),
				 errhint("DELETE the row and INSERT it through the partitioned table.")));
	if (dest->ri_TrigDesc &&
		(dest->ri_TrigDesc->trig_insert_before_row ||
		 dest->ri_TrigDesc->trig_insert_after_row))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot move a row into foreign table \"%s\", which has row insert triggers",
						RelationGetRelationName(dest->ri_RelationDesc)),
				 errhint("DELETE the row and INSERT it through the partitioned table.")));
	destslot = rootslot;
	if (dest->ri_RootToPartitionMap)
		destslot = execute_attr_map_slot(dest->ri_RootToPartitionMap->attrMap,
										  rootslot, dest->ri_PartitionTupleSlot);

	if (!replace_checked(fm, oldkey, oldkeylen, oldvalue, NULL, 0))
		return NULL;
	destfm = (KvFdwModifyState *) dest->ri_FdwState;
	(void) insert_row(destfm, destslot, true);
	/*
	 * If the destination is a result relation of this UPDATE too, its scan
	 * may still read the moved row: it must skip it (wrote_key).  insert_row
	 * reset the per-row context: encode the key again.
	 */
	{
		uint32		newkeylen;
		char	   *newkey = encode_column(destfm, destslot, destfm->table->key_attno,
										   &newkeylen);

		note_written(destfm, newkey, newkeylen);
	}
	return slot;
}

/*
 * kvExecForeignUpdate
 *		Update one row: its value in place, or, for a new key, delete the
 *		old key and insert the new one (in this table, or in the partition
 *		the row moves to).  NULL if the key was deleted meanwhile.
 */
static TupleTableSlot *
kvExecForeignUpdate(EState *estate, ResultRelInfo *rinfo,
					TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	KvFdwModifyState *fm = (KvFdwModifyState *) rinfo->ri_FdwState;
	MemoryContext old;
	Datum		oldkeyd;
	Datum		oldvalue;
	char	   *oldkey;
	char	   *key;
	char	   *value;
	uint32		oldkeylen;
	uint32		keylen;
	uint32		vallen;
	TupleTableSlot *result = slot;

	old = start_old_row(fm, planSlot, &oldkeyd, &oldvalue, &oldkey, &oldkeylen);
	if (wrote_key(fm, oldkey, oldkeylen))
	{
		/* this statement changed the row since the scan read it */
		MemoryContextSwitchTo(old);
		return NULL;
	}
	key = encode_column(fm, slot, fm->table->key_attno, &keylen);
	value = encode_column(fm, slot, fm->table->value_attno, &vallen);
	KvCheckKeySize(keylen);
	KvCheckValueSize(vallen);

	if (rinfo->ri_RelationDesc->rd_rel->relispartition &&
		!ExecPartitionCheck(rinfo, slot, estate, false))
		result = move_row(fm, estate, rinfo, slot, oldkey, oldkeylen, oldvalue);
	else if (keylen == oldkeylen && memcmp(key, oldkey, keylen) == 0)
	{
		if (!replace_checked(fm, key, keylen, oldvalue, value, vallen))
			result = NULL;
	}
	else if (!replace_checked(fm, oldkey, oldkeylen, oldvalue, NULL, 0))
		result = NULL;
	else
	{
		(void) insert_key(fm, key, keylen, value, vallen, true);
		note_written(fm, key, keylen);
	}
	if (result != NULL)
		note_written(fm, oldkey, oldkeylen);
	MemoryContextSwitchTo(old);
	return result;
}

/*
 * kvExecForeignDelete
 *		Delete one row; the slot gets the deleted row for RETURNING.  NULL
 *		if the key was deleted meanwhile.
 */
static TupleTableSlot *
kvExecForeignDelete(EState *estate, ResultRelInfo *rinfo,
					TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	KvFdwModifyState *fm = (KvFdwModifyState *) rinfo->ri_FdwState;
	MemoryContext old;
	Datum		keyd;
	Datum		value;
	char	   *key;
	uint32		keylen;
	bool		deleted;

	old = start_old_row(fm, planSlot, &keyd, &value, &key, &keylen);
	/* a row this statement deleted or changed already: skipped */
	deleted = !wrote_key(fm, key, keylen) &&
		replace_checked(fm, key, keylen, value, NULL, 0);
	if (deleted)
		note_written(fm, key, keylen);
	MemoryContextSwitchTo(old);
	if (!deleted)
		return NULL;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	slot->tts_values[fm->table->key_attno - 1] = keyd;
	slot->tts_isnull[fm->table->key_attno - 1] = false;
	slot->tts_values[fm->table->value_attno - 1] = value;
	slot->tts_isnull[fm->table->value_attno - 1] = false;
	return ExecStoreVirtualTuple(slot);
}

/*
 * kvIsForeignRelUpdatable
 *		Every kvext foreign table takes INSERT, UPDATE and DELETE.
 */
static int
kvIsForeignRelUpdatable(Relation rel)
{
	return (1 << CMD_INSERT) | (1 << CMD_UPDATE) | (1 << CMD_DELETE);
}

/*
 * kvExplainForeignModify
 *		With VERBOSE: the keyspace, the node and, for INSERT, what an
 *		existing key does.
 */
static void
kvExplainForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
					   List *fdw_private, int subplan_index,
					   struct ExplainState *es)
{
	KvFdwModifyState *fm = (KvFdwModifyState *) rinfo->ri_FdwState;

	if (!es->verbose || fm == NULL)
		return;
	ExplainPropertyText("Keyspace", fm->table->keyspace, es);
	ExplainPropertyText("Node", fm->table->remote ? fm->table->servername : "local", es);
	if (fm->table->multihost)
	{
		char	   *node = KvRemoteCachedNodeName(fm->table->serverid,
												  GetUserId(), false);

		ExplainPropertyText("Group Node", node ? node : "the leader, found at first use", es);
	}
	if (fm->table->remote)
		ExplainPropertyText("Remote Call",
							mtstate->operation == CMD_INSERT ? KVEXT_REMOTE_INSERT_SQL :
							KVEXT_REMOTE_CAS_SQL, es);
	if (fm->table->remote && mtstate->operation == CMD_INSERT)
		ExplainPropertyInteger("Batch Size", NULL,
							   kvGetForeignModifyBatchSize(rinfo), es);
	if (mtstate->operation == CMD_INSERT)
		ExplainPropertyText("Existing Key",
							fm->table->upsert ? "overwrite" :
							fm->skip_existing ? "skip" : "error", es);
}

/*
 * KvFdwModifyRoutine
 *		Install the modify callbacks into the wrapper's routine.
 */
void
KvFdwModifyRoutine(FdwRoutine *routine)
{
	routine->AddForeignUpdateTargets = kvAddForeignUpdateTargets;
	routine->PlanForeignModify = kvPlanForeignModify;
	routine->BeginForeignModify = kvBeginForeignModify;
	routine->ExecForeignInsert = kvExecForeignInsert;
	routine->ExecForeignUpdate = kvExecForeignUpdate;
	routine->ExecForeignDelete = kvExecForeignDelete;
	routine->BeginForeignInsert = kvBeginForeignInsert;
	routine->GetForeignModifyBatchSize = kvGetForeignModifyBatchSize;
	routine->ExecForeignBatchInsert = kvExecForeignBatchInsert;
	routine->IsForeignRelUpdatable = kvIsForeignRelUpdatable;
	routine->ExplainForeignModify = kvExplainForeignModify;
}
