/*-------------------------------------------------------------------------
 *
 * text.c
 *	  Stored bytes read out as text: keys, values and keyspace names are
 *	  checked against the reading database's encoding on the way out.
 *
 * The store is shared by every database of the server, and databases may
 * have different encodings: a key, value or keyspace name written as text
 * from a LATIN1 database holds LATIN1 bytes, which are not valid text in a
 * UTF8 database (and a value written as bytea may be any bytes).  The
 * store does not know the encoding a text was written in (its log and
 * snapshot formats do not record it yet), so it cannot convert; instead
 * every path that returns stored bytes as text checks them with
 * pg_verifymbstr() and raises 22021 (character not in repertoire) rather
 * than hand invalid text to SQL, where it could be stored in a table and
 * break a later dump and restore.  Every check is done once per datum, at
 * the place where the bytes become text:
 *	kv_get, kv_mget, point reads of kvext_fdw	KvStoreGet (KV_READ_TEXT)
 *	kv_scan, kv_scan_bytea (keys)				functions.c scan_emit
 *	kvext_fdw scans and remote reads			fdw.c, before decoding
 *	kv_keyspaces								functions.c
 * Status views (kv_stats, kv_locks) never fail for this: they show such a
 * name or key with KvTextForDisplay's escapes.  Error messages name keys
 * and keyspaces the same way (KvKeyExcerpt), so that an error about bad
 * bytes does not itself carry them to the client or the server log.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "store/store.h"
#include "store/text.h"

/* bytes of a key shown in a message (KvKeyExcerpt) */
#define KEY_EXCERPT_BYTES	64

/*
 * display_prefix
 *		Up to limit bytes of bytes as text of the database encoding: the
 *		longest valid prefix as it is (cut at a character boundary), then,
 *		if that stopped early, the remaining bytes with every byte that is
 *		not printable ASCII written as \xNN.  palloc'd, NUL-terminated.
 */
static char *
display_prefix(const char *bytes, uint32 len, uint32 limit)
{
	uint32		look = Min(len, limit + MAX_MULTIBYTE_CHAR_LEN);
	int			valid = pg_encoding_verifymbstr(GetDatabaseEncoding(),
												bytes, (int) look);
	StringInfoData buf;

	if ((uint32) valid >= Min(len, limit))
		return pnstrdup(bytes, pg_mbcliplen(bytes, valid, (int) Min(len, limit)));

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, bytes, valid);
	for (uint32 i = (uint32) valid; i < Min(len, limit); i++)
	{
		unsigned char c = (unsigned char) bytes[i];

		if (c >= 0x20 && c < 0x7F)
			appendStringInfoChar(&buf, (char) c);
		else
			appendStringInfo(&buf, "\\x%02x", c);
	}
	return buf.data;
}

/*
 * KvKeyExcerpt
 *		A key for a message: at most 64 bytes, cut at a character boundary,
 *		so the message converts to the client's encoding.  A key that is not
 *		valid text of the database encoding (written from a database with
 *		another encoding) is shown with \xNN escapes from its first invalid
 *		byte on.  palloc'd.
 */
char *
KvKeyExcerpt(const char *key, uint32 keylen)
{
	return display_prefix(key, keylen, KEY_EXCERPT_BYTES);
}

/*
 * KvTextForDisplay
 *		len bytes as valid text of the database encoding, for status views:
 *		as they are if they are valid, else escaped as KvKeyExcerpt does
 *		(not cut).  palloc'd.
 */
char *
KvTextForDisplay(const char *bytes, uint32 len)
{
	return display_prefix(bytes, len, len);
}

/*
 * KvReportValueNotText
 *		Raise 22021 for the value of key in keyspace that is not valid text
 *		of the database encoding; binary: it was written as bytea (else as
 *		text, from a database of another encoding).
 */
void
KvReportValueNotText(const char *keyspace, const char *key, uint32 keylen,
					 bool binary)
{
	char	   *ks = KvKeyExcerpt(keyspace, strlen(keyspace));

	if (binary)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("value of key \"%s\" in keyspace \"%s\" is not valid text in encoding \"%s\"",
						KvKeyExcerpt(key, keylen), ks, GetDatabaseEncodingName()),
				 errdetail("The value was written as bytea."),
				 errhint("Read it as bytes with kv_get_bytea() or kv_scan_bytea(), or through a bytea column.")));
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("value of key \"%s\" in keyspace \"%s\" is not valid text in encoding \"%s\"",
					KvKeyExcerpt(key, keylen), ks, GetDatabaseEncodingName()),
			 errdetail("The value was written as text from a database with another encoding; kvext does not convert between encodings."),
			 errhint("Read it as bytes with kv_get_bytea() or kv_scan_bytea(), or through a bytea column.")));
	pg_unreachable();
}

/*
 * KvReportKeyNotText
 *		Raise 22021 for a key of keyspace that is not valid text of the
 *		database encoding.  Keys are text everywhere (kv_scan_bytea's too),
 *		so the hint points to a database of the writer's encoding.
 */
void
KvReportKeyNotText(const char *keyspace, const char *key, uint32 keylen)
{
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("key \"%s\" in keyspace \"%s\" is not valid text in encoding \"%s\"",
					KvKeyExcerpt(key, keylen),
					KvKeyExcerpt(keyspace, strlen(keyspace)),
					GetDatabaseEncodingName()),
			 errdetail("The key was written from a database with another encoding, or through a bytea key column; kvext does not convert between encodings."),
			 errhint("Read or delete it from a database with the encoding it was written in, or through a foreign table whose key column is bytea.")));
	pg_unreachable();
}

/*
 * KvReportKeyspaceNotText
 *		Raise 22021 for a keyspace name that is not valid text of the
 *		database encoding.
 */
void
KvReportKeyspaceNotText(const char *keyspace)
{
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("keyspace name \"%s\" is not valid text in encoding \"%s\"",
					KvKeyExcerpt(keyspace, strlen(keyspace)),
					GetDatabaseEncodingName()),
			 errdetail("The keyspace was created from a database with another encoding; kvext does not convert between encodings."),
			 errhint("List or drop it from a database with the encoding it was created in; kv_stats() shows its name escaped.")));
	pg_unreachable();
}
