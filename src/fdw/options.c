/*-------------------------------------------------------------------------
 *
 * options.c
 *	  kvext_fdw's options: the validator, and the settings and columns of a
 *	  foreign table as the planner and executor use them.
 *
 * Options, by object:
 *	server			the libpq connection options postgres_fdw accepts
 *					(host, port, dbname, ...); a server with any of them is
 *					a remote kvext node (remote.c connects to it); a
 *					server without is this node's store.  batch_size
 *					(rows per remote INSERT call, default 1) is a server
 *					or table option, the table's winning.  host and
 *					port may list several nodes of one replicated group
 *					(libpq's multi-host form, the counts checked as libpq
 *					checks them): remote.c then finds the group's leader.
 *					read_from ('leader', the default, or 'any': reads may
 *					use any node of the group) is a server or table
 *					option, the table's winning.  async_capable (boolean,
 *					default false; server or table, the table's winning,
 *					as in postgres_fdw): scans of the table's remote node
 *					may run concurrently with others under an Append
 *					(fdw.c)
 *	user mapping	user, password, sslcert, sslkey, password_required
 *					(false: superusers only, as in postgres_fdw)
 *	foreign table	keyspace (default: the table's name), create_keyspace
 *					(a write creates a missing keyspace), upsert (INSERT
 *					overwrites an existing key), key_column and
 *					value_column (the names of the key and value columns,
 *					when they are not key and value: a partition has its
 *					parent's column names, and CREATE FOREIGN TABLE ...
 *					PARTITION OF takes no column options)
 *	column			column_name: 'key' or 'value', for a column named
 *					otherwise (as postgres_fdw's column_name)
 * A misspelt option gets a hint: the option of that name elsewhere, the
 * closest valid option, or the list of valid ones (PostgreSQL 15's
 * postgres_fdw gives the list, 16's the closest match).
 *
 * Columns.  A kvext foreign table has exactly two columns, its key and its
 * value, named key and value or mapped with column_name, key_column or
 * value_column (a column option wins over a table option); their types are
 * free (codec.c).  The validator sees no columns, so the column set is
 * checked when the table is used (planning, COPY), and at CREATE and ALTER
 * FOREIGN TABLE by the extension's event trigger (kvext_fdw_check_table in
 * fdw.c).
 *
 * Keyspace.  KvFdwKeyspace resolves a table's keyspace for a read or a
 * write, creating it for a write when the table says create_keyspace.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/reloptions.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_type.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/varlena.h"

#include "fdw/kvext_fdw.h"
#include "shmem.h"
#include "store/acl.h"
#include "store/keyspace.h"
#include "store/text.h"

PG_FUNCTION_INFO_V1(kvext_fdw_validator);

/* an option name and the catalog of the objects it belongs to */
typedef struct KvFdwOption
{
	const char *keyword;
	Oid			context;
	bool		libpq;			/* passed to libpq (remote servers) */
} KvFdwOption;

/* kvext's own options */
static const KvFdwOption kvext_options[] = {
	{"keyspace", ForeignTableRelationId, false},
	{"create_keyspace", ForeignTableRelationId, false},
	{"upsert", ForeignTableRelationId, false},
	{"key_column", ForeignTableRelationId, false},
	{"value_column", ForeignTableRelationId, false},
	{"column_name", AttributeRelationId, false},
	{"password_required", UserMappingRelationId, false},
	{"batch_size", ForeignServerRelationId, false},
	{"batch_size", ForeignTableRelationId, false},
	{"read_from", ForeignServerRelationId, false},
	{"read_from", ForeignTableRelationId, false},
	{"async_capable", ForeignServerRelationId, false},
	{"async_capable", ForeignTableRelationId, false},
	{NULL, InvalidOid, false}
};

/* kvext's options plus libpq's, built once per backend */
static KvFdwOption *all_options = NULL;

/* closest matches farther than this are not suggested (as PostgreSQL 16) */
#define KVEXT_OPTION_MAX_DISTANCE 4
/* varstr_levenshtein's limit (KVEXT_LEVENSHTEIN_MAX_LEN, not exported) */
#define KVEXT_LEVENSHTEIN_MAX_LEN 255

/*
 * init_options
 *		Build all_options: libpq's connection options, less those
 *		postgres_fdw hides (debug options, client_encoding,
 *		fallback_application_name), user, password, sslcert and sslkey
 *		going to user mappings, then kvext's own.
 */
static void
init_options(void)
{
	PQconninfoOption *libpq_options;
	PQconninfoOption *lopt;
	int			n = 0;
	KvFdwOption *opts;
	int			i = 0;

	if (all_options)
		return;
	libpq_options = PQconndefaults();
	if (libpq_options == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not get libpq's default connection options.")));
	for (lopt = libpq_options; lopt->keyword; lopt++)
		n++;
	opts = MemoryContextAllocZero(TopMemoryContext,
								  sizeof(KvFdwOption) * (n + lengthof(kvext_options)));
	for (lopt = libpq_options; lopt->keyword; lopt++)
	{
		if (strchr(lopt->dispchar, 'D') ||
			strcmp(lopt->keyword, "fallback_application_name") == 0 ||
			strcmp(lopt->keyword, "client_encoding") == 0)
			continue;
		opts[i].keyword = MemoryContextStrdup(TopMemoryContext, lopt->keyword);
		if (strcmp(lopt->keyword, "user") == 0 ||
			strcmp(lopt->keyword, "password") == 0 ||
			strcmp(lopt->keyword, "sslcert") == 0 ||
			strcmp(lopt->keyword, "sslkey") == 0)
			opts[i].context = UserMappingRelationId;
		else
			opts[i].context = ForeignServerRelationId;
		opts[i].libpq = true;
		i++;
	}
	PQconninfoFree(libpq_options);
	for (int k = 0; kvext_options[k].keyword; k++)
		opts[i++] = kvext_options[k];
	opts[i].keyword = NULL;
	all_options = opts;
}

/* the option named keyword, or NULL */
static const KvFdwOption *
find_option(const char *keyword, Oid context)
{
	for (const KvFdwOption *o = all_options; o->keyword; o++)
		if (strcmp(o->keyword, keyword) == 0 &&
			(context == InvalidOid || o->context == context))
			return o;
	return NULL;
}

/*
 * closest_match
 *		Of the n words in candidates, the one closest to name (edit
 *		distance at most KVEXT_OPTION_MAX_DISTANCE and half name's length),
 *		or NULL: the suggestion of a hint.
 */
static const char *
closest_match(const char *name, const char *const *candidates, int n)
{
	const char *closest = NULL;
	int			closest_d = -1;
	int			namelen = strlen(name);

	if (namelen > KVEXT_LEVENSHTEIN_MAX_LEN)
		return NULL;
	for (int i = 0; i < n; i++)
	{
		int			len = strlen(candidates[i]);
		int			d;

		if (len > KVEXT_LEVENSHTEIN_MAX_LEN)
			continue;
		d = varstr_levenshtein_less_equal(name, namelen, candidates[i], len,
										  1, 1, 1,
										  KVEXT_OPTION_MAX_DISTANCE + 1, true);
		if (d <= KVEXT_OPTION_MAX_DISTANCE && d <= namelen / 2 &&
			(closest_d < 0 || d < closest_d))
		{
			closest = candidates[i];
			closest_d = d;
		}
	}
	return closest;
}

/*
 * report_invalid_option
 *		Raise HV00D for an option that is not valid on this kind of object,
 *		with the most useful hint: where the option belongs, the closest
 *		valid name, or the list of valid names.
 */
static void
report_invalid_option(const char *name, Oid context)
{
	const KvFdwOption *elsewhere = find_option(name, InvalidOid);
	const char *closest;
	const char **names = palloc(sizeof(char *) * (lengthof(kvext_options) + 64));
	int			nnames = 0;
	int			maxnames = lengthof(kvext_options) + 64;
	StringInfoData valid;

	initStringInfo(&valid);
	for (const KvFdwOption *o = all_options; o->keyword; o++)
	{
		if (o->context != context)
			continue;
		appendStringInfo(&valid, "%s%s", valid.len > 0 ? ", " : "", o->keyword);
		if (nnames == maxnames)
		{
			maxnames *= 2;
			names = repalloc(names, sizeof(char *) * maxnames);
		}
		names[nnames++] = o->keyword;
	}
	closest = closest_match(name, names, nnames);

	if (elsewhere && elsewhere->context == ForeignServerRelationId)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", name),
				 errhint("\"%s\" is an option of servers.", name)));
	if (elsewhere && elsewhere->context == UserMappingRelationId)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", name),
				 errhint("\"%s\" is an option of user mappings.", name)));
	if (elsewhere && elsewhere->context == ForeignTableRelationId)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", name),
				 errhint("\"%s\" is an option of foreign tables.", name)));
	if (elsewhere && elsewhere->context == AttributeRelationId)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", name),
				 errhint("\"%s\" is an option of foreign table columns.", name)));
	if (closest)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", name),
				 errhint("Perhaps you meant the option \"%s\".", closest)));
	if (valid.len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", name),
				 errhint("Valid options in this context are: %s.", valid.data)));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
			 errmsg("invalid option \"%s\"", name),
			 errhint("There are no valid options in this context.")));
}

/* a boolean option's value; 22023 if it is not one */
static bool
option_bool(DefElem *def)
{
	bool		result;

	if (!parse_bool(defGetString(def), &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for boolean option \"%s\": %s",
						def->defname, defGetString(def))));
	return result;
}

/* batch_size's value: an integer of at least 1; 22023 otherwise */
static int
option_batch_size(DefElem *def)
{
	char	   *end;
	long		v = strtol(defGetString(def), &end, 10);

	if (*end != '\0' || v < 1 || v > 100000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"batch_size\": %s",
						defGetString(def)),
				 errhint("batch_size is an integer from 1 to 100000.")));
	return (int) v;
}

/* read_from's values: the group's leader only, or any of its nodes */
static const char *const read_from_values[] = {"leader", "any"};

/* read_from's value: true for 'any'; 22023 with a hint otherwise */
static bool
option_read_any(DefElem *def)
{
	const char *v = defGetString(def);
	const char *closest;

	if (strcmp(v, "leader") == 0)
		return false;
	if (strcmp(v, "any") == 0)
		return true;
	closest = closest_match(v, read_from_values, lengthof(read_from_values));
	if (closest)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"read_from\": \"%s\"", v),
				 errhint("Perhaps you meant \"%s\".", closest)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for option \"read_from\": \"%s\"", v),
			 errhint("read_from is \"leader\" (the default) or \"any\".")));
	return false;				/* keep compiler quiet */
}

/* items of a libpq multi-host list ("h1,h2,h3"): commas plus one */
static int
count_list(const char *v)
{
	int			n = 1;

	for (; *v; v++)
		if (*v == ',')
			n++;
	return n;
}

/*
 * server_hosts
 *		How many hosts a server's options name, as libpq counts them (host,
 *		else hostaddr; 0: neither).  With check, raise 22023 where libpq
 *		would refuse the lists at connection time: host and hostaddr of
 *		different lengths, or a port list that is neither one port nor one
 *		per host.
 */
static int
server_hosts(List *options, bool check)
{
	int			nhost = 0;
	int			naddr = 0;
	int			nport = 0;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "host") == 0)
			nhost = count_list(defGetString(def));
		else if (strcmp(def->defname, "hostaddr") == 0)
			naddr = count_list(defGetString(def));
		else if (strcmp(def->defname, "port") == 0)
			nport = count_list(defGetString(def));
	}
	if (check && nhost > 0 && naddr > 0 && nhost != naddr)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not match %d host names to %d hostaddr values",
						nhost, naddr),
				 errhint("A server naming several nodes of a replicated group lists them as libpq does: host 'h1,h2,h3', with as many hostaddr values if any.")));
	if (nhost == 0)
		nhost = naddr;
	if (check && nport > 1 && nport != Max(nhost, 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not match %d port numbers to %d hosts",
						nport, Max(nhost, 1)),
				 errhint("Give one port for all hosts, or one port per host, in the order of host.")));
	return nhost;
}

/*
 * kvext_fdw_validator(options text[], catalog oid) returns void
 *
 * The validator of kvext_fdw: every option is known for its kind of
 * object and has a valid value.
 */
Datum
kvext_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *lc;

	init_options();
	if (catalog == ForeignServerRelationId)
		(void) server_hosts(options, true);
	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (!find_option(def->defname, catalog))
			report_invalid_option(def->defname, catalog);

		if (strcmp(def->defname, "keyspace") == 0)
			KvKeyspaceCheckName(defGetString(def), true);	/* may create it */
		else if (strcmp(def->defname, "create_keyspace") == 0 ||
				 strcmp(def->defname, "upsert") == 0 ||
				 strcmp(def->defname, "async_capable") == 0)
			(void) option_bool(def);
		else if (strcmp(def->defname, "batch_size") == 0)
			(void) option_batch_size(def);
		else if (strcmp(def->defname, "read_from") == 0)
			(void) option_read_any(def);
		else if (strcmp(def->defname, "connect_timeout") == 0)
		{
			/* libpq would take "x" as 0, which kvext reads as no timeout */
			char	   *end;
			long		v = strtol(defGetString(def), &end, 10);

			if (*end != '\0' || end == defGetString(def) || v < 1 || v > 86400)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for option \"connect_timeout\": %s",
								defGetString(def)),
						 errhint("connect_timeout is a number of seconds from 1 to 86400.")));
		}
		else if (strcmp(def->defname, "password_required") == 0)
		{
			if (!option_bool(def) && !superuser())
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("password_required=false is superuser-only"),
						 errhint("User mappings with the password_required option set to false may only be created or modified by the superuser.")));
		}
		else if (strcmp(def->defname, "column_name") == 0)
		{
			const char *v = defGetString(def);

			if (strcmp(v, "key") != 0 && strcmp(v, "value") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_COLUMN_NAME),
						 errmsg("invalid value for option \"column_name\": \"%s\"", v),
						 errhint("A kvext foreign table has two columns, \"key\" and \"value\".")));
		}
	}
	PG_RETURN_VOID();
}

/*
 * server_is_remote
 *		Does the server name another node (any libpq option)?
 */
static bool
server_is_remote(ForeignServer *server)
{
	ListCell   *lc;

	init_options();
	foreach(lc, server->options)
	{
		const KvFdwOption *o = find_option(((DefElem *) lfirst(lc))->defname,
										   ForeignServerRelationId);

		if (o && o->libpq)
			return true;
	}
	return false;
}

/*
 * check_columns
 *		Find the key and value columns of rel into table, raising HV007 for
 *		a column that is neither or is one of them twice, HV005 for a
 *		missing one.
 */
static void
check_columns(Relation rel, KvFdwTable *table, const char *key_column,
			  const char *value_column)
{
	TupleDesc	desc = RelationGetDescr(rel);

	table->key_attno = InvalidAttrNumber;
	table->value_attno = InvalidAttrNumber;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *role = NameStr(att->attname);
		ListCell   *lc;
		AttrNumber *slot;

		if (att->attisdropped)
			continue;
		if (key_column && strcmp(role, key_column) == 0)
			role = "key";
		else if (value_column && strcmp(role, value_column) == 0)
			role = "value";
		else if (key_column && strcmp(role, "key") == 0)
			role = "";			/* the key is another column */
		else if (value_column && strcmp(role, "value") == 0)
			role = "";
		foreach(lc, GetForeignColumnOptions(RelationGetRelid(rel), att->attnum))
		{
			DefElem    *def = (DefElem *) lfirst(lc);

			if (strcmp(def->defname, "column_name") == 0)
				role = defGetString(def);
		}
		if (strcmp(role, "key") == 0)
			slot = &table->key_attno;
		else if (strcmp(role, "value") == 0)
			slot = &table->value_attno;
		else
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_COLUMN_NAME),
					 errmsg("column \"%s\" of foreign table \"%s\" is neither the key nor the value",
							NameStr(att->attname), RelationGetRelationName(rel)),
					 errhint("A kvext foreign table has two columns, key and value; name them so, or name them with the table options key_column and value_column.")));
		if (*slot != InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_COLUMN_NAME),
					 errmsg("foreign table \"%s\" has two %s columns, \"%s\" and \"%s\"",
							RelationGetRelationName(rel), role,
							NameStr(TupleDescAttr(desc, *slot - 1)->attname),
							NameStr(att->attname))));
		*slot = att->attnum;
	}
	if (table->key_attno == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_COLUMN_NAME_NOT_FOUND),
				 errmsg("foreign table \"%s\" has no key column",
						RelationGetRelationName(rel)),
				 key_column ?
				 errdetail("Table option key_column names \"%s\".", key_column) : 0,
				 errhint("A kvext foreign table has two columns, key and value; name them so, or name them with the table options key_column and value_column.")));
	if (table->value_attno == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_COLUMN_NAME_NOT_FOUND),
				 errmsg("foreign table \"%s\" has no value column",
						RelationGetRelationName(rel)),
				 value_column ?
				 errdetail("Table option value_column names \"%s\".", value_column) : 0,
				 errhint("A kvext foreign table has two columns, key and value; name them so, or name them with the table options key_column and value_column.")));

	table->key_type = TupleDescAttr(desc, table->key_attno - 1)->atttypid;
	table->key_typmod = TupleDescAttr(desc, table->key_attno - 1)->atttypmod;
	table->key_collation = TupleDescAttr(desc, table->key_attno - 1)->attcollation;
	table->value_type = TupleDescAttr(desc, table->value_attno - 1)->atttypid;
	table->value_typmod = TupleDescAttr(desc, table->value_attno - 1)->atttypmod;
}

/*
 * KvFdwGetTable
 *		The settings and columns of foreign table rel, palloc'd in the
 *		current memory context.  Raises the errors of check_columns.
 */
KvFdwTable *
KvFdwGetTable(Relation rel, bool for_use)
{
	KvFdwTable *table = palloc0(sizeof(KvFdwTable));
	ForeignTable *ft = GetForeignTable(RelationGetRelid(rel));
	ForeignServer *server = GetForeignServer(ft->serverid);
	const char *keyspace = RelationGetRelationName(rel);
	const char *key_column = NULL;
	const char *value_column = NULL;
	ListCell   *lc;

	table->remote = server_is_remote(server);
	table->serverid = server->serverid;
	strlcpy(table->servername, server->servername, NAMEDATALEN);
	table->multihost = table->remote && server_hosts(server->options, false) > 1;
	table->batch_size = 1;
	foreach(lc, server->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "batch_size") == 0)
			table->batch_size = option_batch_size(def);
		else if (strcmp(def->defname, "read_from") == 0)
			table->read_any = option_read_any(def);
		else if (strcmp(def->defname, "async_capable") == 0)
			table->async_capable = option_bool(def);
	}
	table->relid = RelationGetRelid(rel);
	table->relname = pstrdup(RelationGetRelationName(rel));
	foreach(lc, ft->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "keyspace") == 0)
			keyspace = defGetString(def);
		else if (strcmp(def->defname, "create_keyspace") == 0)
			table->create_keyspace = option_bool(def);
		else if (strcmp(def->defname, "upsert") == 0)
			table->upsert = option_bool(def);
		else if (strcmp(def->defname, "key_column") == 0)
			key_column = defGetString(def);
		else if (strcmp(def->defname, "value_column") == 0)
			value_column = defGetString(def);
		else if (strcmp(def->defname, "batch_size") == 0)
			table->batch_size = option_batch_size(def);
		else if (strcmp(def->defname, "read_from") == 0)
			table->read_any = option_read_any(def);
		else if (strcmp(def->defname, "async_capable") == 0)
			table->async_capable = option_bool(def);
	}
	/* a table name is at most NAMEDATALEN - 1 bytes too */
	KvKeyspaceCheckName(keyspace, false);
	strlcpy(table->keyspace, keyspace, NAMEDATALEN);
	table->keyspace_len = strlen(table->keyspace);
	/* the store's name is UTF-8 (store/text.c), perhaps longer; a copy */
	table->stored_keyspace = KvTextCStringToStore(table->keyspace);
	if (table->stored_keyspace == table->keyspace)
		table->stored_keyspace = pstrdup(table->keyspace);
	table->stored_keyspace_len = strlen(table->stored_keyspace);
	KvKeyspaceCheckName(table->stored_keyspace, false);

	check_columns(rel, table, key_column, value_column);
	return table;
}

/*
 * kvext_function_oid
 *		The OID of function name(argtypes) of the kvext extension, found in
 *		the extension's schema whatever the search path.
 */
static Oid
kvext_function_oid(const char *name, int nargs, Oid *argtypes)
{
	Oid			extoid = get_extension_oid("kvext", false);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nspid = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nspid = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(nspid))
		elog(ERROR, "extension kvext has no schema");
	return LookupFuncName(list_make2(makeString(get_namespace_name(nspid)),
									 makeString(pstrdup(name))),
						  nargs, argtypes, false);
}

/*
 * create_keyspace
 *		Create the keyspace of a create_keyspace 'true' table for a write,
 *		in the current transaction, as kv_create_keyspace() would: the
 *		current user needs EXECUTE on it (42501).
 */
static void
create_keyspace(const KvFdwTable *table)
{
	Oid			argtypes[2] = {TEXTOID, BOOLOID};
	Oid			func = kvext_function_oid("kv_create_keyspace", 2, argtypes);

	if (pg_proc_aclcheck(func, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create keyspace \"%s\"",
						table->keyspace),
				 errdetail("Foreign table \"%s\" creates its keyspace on first write (create_keyspace 'true'), which needs EXECUTE on kv_create_keyspace(text, boolean).",
						   table->relname)));
	(void) KvAclCreateKeyspace(table->stored_keyspace, true);
}

/*
 * KvFdwKeyspace
 *		The keyspace of a table, for a read or a write; *exists gets whether
 *		it exists.  A missing keyspace is 42704 unless the table has
 *		create_keyspace 'true': then a write creates it (in the current
 *		transaction) and a read finds it empty (*exists false, and the
 *		reference returned must not be used).
 */
KvKeyspaceRef
KvFdwKeyspace(const KvFdwTable *table, bool write, bool *exists)
{
	KvKeyspaceRef ref = {0, 0};

	KvCheckAvailable();
	*exists = true;
	if (KvKeyspaceTryResolve(table->stored_keyspace, table->stored_keyspace_len,
							 write, &ref))
	{
		KvAclCheck(ref, table->stored_keyspace, table->stored_keyspace_len,
				   write ? KV_RIGHT_WRITE : KV_RIGHT_READ);
		return ref;
	}
	if (!table->create_keyspace)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("keyspace \"%s\" does not exist", table->keyspace),
				 errdetail("Foreign table \"%s\" maps to it.", table->relname),
				 errhint("Create it with kv_create_keyspace(), or set the table option create_keyspace 'true'.")));
	if (!write)
	{
		*exists = false;
		return ref;
	}
	create_keyspace(table);
	ref = KvKeyspaceResolve(table->stored_keyspace, table->stored_keyspace_len, true);
	KvAclCheck(ref, table->stored_keyspace, table->stored_keyspace_len, KV_RIGHT_WRITE);
	return ref;
}
