/*-------------------------------------------------------------------------
 *
 * kvext_fdw.h
 *	  kvext_fdw, the foreign data wrapper over kvext keyspaces: what its
 *	  files share.
 *
 * The wrapper is split by concern, as contrib/postgres_fdw is:
 *	fdw.c		the handler, planner callbacks, scans and EXPLAIN
 *	options.c	the validator; a foreign table's settings, columns and
 *				keyspace
 *	pushdown.c	which quals become point, multi-key and prefix lookups,
 *				and when count(*) becomes the keyspace's count
 *	codec.c		how a column value becomes the bytes of a key or value
 *				and back
 *	modify.c	INSERT, UPDATE, DELETE, COPY FROM, tuple routing and the
 *				partition-bound check
 *	serve.c		the SQL entry points a remote table calls on its node
 * For a table of this node it calls the store (store/store.h,
 * store/keyspace.h) in process, as the SQL functions do, and the API's
 * argument checks (api/api.h); for a table of a remote server, fdw.c and
 * modify.c call serve.c's functions on that node over remote.c's
 * connections (remote.h).  Nothing below calls into it.  Within it, fdw.c (the handler) calls the others,
 * modify.c calls options.c and codec.c, and options.c, pushdown.c and
 * codec.c call no other file of the wrapper: no circle.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_KVEXT_FDW_H
#define KVEXT_KVEXT_FDW_H

#include "fmgr.h"
#include "foreign/fdwapi.h"
#include "nodes/pathnodes.h"
#include "utils/relcache.h"

#include "store/store.h"

/*
 * How a column value and the bytes of a key or value correspond.
 *	TEXT	text and varchar: the string's bytes
 *	BYTEA	bytea: the bytes themselves (values are marked binary, as
 *			kv_put(key, bytea) marks them)
 *	IO		any other type: the text of the type's output function, read
 *			back with its input function; for types whose text depends on
 *			settings (dates, times, floats, money...), under fixed ones
 *			(see codec.c)
 */
typedef enum KvFdwCodecKind
{
	KV_CODEC_TEXT,
	KV_CODEC_BYTEA,
	KV_CODEC_IO
} KvFdwCodecKind;

typedef struct KvFdwCodec
{
	Oid			type;
	int32		typmod;
	KvFdwCodecKind kind;
	bool		fixed_settings; /* convert under codec.c's fixed settings */
	FmgrInfo	in;
	FmgrInfo	out;
	Oid			ioparam;
	int16		typlen;
	bool		typbyval;
} KvFdwCodec;

/* A foreign table's settings and columns (options.c: KvFdwGetTable). */
typedef struct KvFdwTable
{
	Oid			relid;
	char	   *relname;
	char		keyspace[NAMEDATALEN];	/* as the table's option says it */
	int			keyspace_len;
	char	   *stored_keyspace;	/* ... and as stored (UTF-8), for this
									 * node's store */
	int			stored_keyspace_len;
	bool		create_keyspace;	/* a write creates a missing keyspace */
	bool		upsert;			/* INSERT overwrites an existing key */
	AttrNumber	key_attno;
	AttrNumber	value_attno;
	Oid			key_type;
	int32		key_typmod;
	Oid			key_collation;
	Oid			value_type;
	int32		value_typmod;
	/* the server */
	bool		remote;			/* another node: read and written over
								 * remote.c's connections (serve.c there) */
	Oid			serverid;
	char		servername[NAMEDATALEN];
	int			batch_size;		/* rows per remote INSERT call */
	bool		multihost;		/* the server lists several nodes of a
								 * replicated group (remote.c) */
	bool		read_any;		/* read_from 'any': reads may use any
								 * node of the group, not only its leader */
	bool		async_capable;	/* remote scans may run concurrently under
								 * an Append (fdw.c) */
} KvFdwTable;

/* What a scan of a foreign table reads (pushdown.c decides). */
typedef enum KvLookupKind
{
	KV_LOOKUP_FULL,				/* every key of the keyspace */
	KV_LOOKUP_POINT,			/* key = expr */
	KV_LOOKUP_MULTI,			/* key = ANY(array expr), key IN (...) */
	KV_LOOKUP_PREFIX,			/* key LIKE 'abc%', key ^@ 'abc' */
	KV_LOOKUP_COUNT				/* count(*) of the keyspace */
} KvLookupKind;

/* The planner's state of a foreign base relation (baserel->fdw_private). */
typedef struct KvFdwRelInfo
{
	KvFdwTable *table;
	KvLookupKind kind;
	Expr	   *key_expr;		/* POINT: the key; MULTI: the array */
	RestrictInfo *pushed;		/* POINT, MULTI: the clause it answers */
	char	   *prefix;			/* PREFIX: the prefix (NUL-terminated) */
	double		nkeys;			/* MULTI: elements, when known */
	double		nentries;		/* keys in the keyspace now */
	List	   *local_conds;	/* RestrictInfos evaluated locally */
	bool		async;			/* a remote scan that may run asynchronously
								 * (async_capable, not a result relation) */
} KvFdwRelInfo;

/* the calls a remote table makes on its node (serve.c there) */
#define KVEXT_REMOTE_READ_SQL \
	"SELECT key, value, \"binary\" FROM kvext_fdw_remote_read($1, $2, $3, $4, $5)"
#define KVEXT_REMOTE_COUNT_SQL "SELECT kvext_fdw_remote_count($1, $2)"
#define KVEXT_REMOTE_INSERT_SQL "SELECT kvext_fdw_remote_insert($1, $2, $3, $4, $5)"
#define KVEXT_REMOTE_CAS_SQL "SELECT kvext_fdw_remote_cas($1, $2, $3, $4, $5)"
#define KVEXT_REMOTE_CREATE_SQL "SELECT kv_create_keyspace($1, true)"

/* options.c */
extern KvFdwTable *KvFdwGetTable(Relation rel, bool for_use);
extern KvKeyspaceRef KvFdwKeyspace(const KvFdwTable *table, bool write,
								   bool *exists);

/* pushdown.c */
extern void KvFdwChooseLookup(PlannerInfo *root, RelOptInfo *baserel,
							  KvFdwRelInfo *info);
extern List *KvFdwCountTargets(PlannerInfo *root, RelOptInfo *input_rel,
							   RelOptInfo *output_rel, void *extra);
extern const char *KvFdwLookupName(KvLookupKind kind);

/* codec.c */
extern void KvFdwCodecInit(KvFdwCodec *codec, Oid type, int32 typmod);
extern char *KvFdwEncode(const KvFdwCodec *codec, Datum value, uint32 *len);
extern Datum KvFdwDecode(const KvFdwCodec *codec, const char *bytes,
						 uint32 len);
extern Datum KvFdwDecodeKey(const KvFdwCodec *codec, const char *bytes,
							uint32 len);
extern bool KvFdwValueEquals(const KvFdwCodec *codec, Datum value,
							 const char *bytes, uint32 len);

/* modify.c: the modify callbacks, installed by the handler */
extern void KvFdwModifyRoutine(FdwRoutine *routine);

#endif							/* KVEXT_KVEXT_FDW_H */
