/*-------------------------------------------------------------------------
 *
 * text.c
 *	  Text in the store is UTF-8: keys, values written as text and keyspace
 *	  names are converted from the writing database's encoding on the way
 *	  in, and to the reading database's encoding on the way out.
 *
 * The store is shared by every database of the server, and replicated to
 * servers whose databases may have other encodings, so it keeps text in
 * one encoding, UTF-8, which every server encoding converts to without
 * loss.  A key written as 'é' from a LATIN1 database is then the key
 * kv_get('é') finds from a UTF8 database, and the other way round; every
 * node of a group holds the same bytes (kv_digest agrees); nothing in the
 * log or snapshot formats records an encoding.
 *
 * On the way in (KvTextToStore), every text argument that is stored or
 * looked up (keys, text values, expected values of kv_cas, prefixes,
 * keyspace names; the kvext_fdw codec's bytes of text-read columns) is
 * converted from the database encoding to UTF-8 before it is hashed,
 * compared or size-checked: limits are on stored bytes.  Text of a valid
 * server encoding always has a UTF-8 form; if a conversion ever lacks a
 * character, that is PostgreSQL's own 22P05.
 *
 * On the way out (KvTextFromStore), every path that returns stored bytes
 * as text converts them, once per datum, at the place where they become
 * text:
 *	kv_get, kv_mget, point reads of kvext_fdw	KvStoreGet (KV_READ_TEXT)
 *	kv_scan, kv_scan_bytea (keys)				functions.c scan_emit
 *	kvext_fdw scans and remote reads			fdw.c, before decoding
 *	kv_keyspaces								functions.c
 * Bytes that are not valid UTF-8 (a value written as bytea, a key written
 * through a bytea key column, text stored raw by a SQL_ASCII database or
 * by a non-UTF8 database before kvext converted) are 22021; a character
 * that the database encoding lacks (a UTF8 '€' read from a LATIN1
 * database) is 22P05.  Both messages name the key and keyspace.
 *
 * Costs.  A UTF8 database pays one comparison (KvTextConverts) on the way
 * in and only the check it always made on the way out.  A SQL_ASCII
 * database has no encoding, as for PostgreSQL: its bytes go in and out as
 * they are (bytes that are UTF-8 read correctly everywhere; others only
 * from SQL_ASCII databases).  Other encodings convert through
 * PostgreSQL's default conversion functions, looked up once per backend.
 *
 * bytea is never converted: kv_put(key, bytea), kv_get_bytea and bytea
 * columns of foreign tables read and write the stored bytes, which for
 * text are UTF-8.
 *
 * Status views (kv_stats, kv_locks) never fail: they show a name or key
 * with KvTextForDisplay, converted where it can be and with \xNN escapes
 * where not.  Error messages name keys and keyspaces the same way
 * (KvKeyExcerpt, KvNameExcerpt), so that an error about bad bytes does not
 * itself carry them to the client or the server log.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "store/store.h"
#include "store/text.h"

/* bytes of a key shown in a message (KvKeyExcerpt) */
#define KEY_EXCERPT_BYTES	64

/* source bytes given to one call of a conversion function */
#define CONVERT_CHUNK		(64 * 1024)

/* the conversions of this backend's database encoding, once looked up */
static int	procs_encoding = -1;
static Oid	to_utf8_proc = InvalidOid;
static Oid	from_utf8_proc = InvalidOid;

/*
 * lookup_procs
 *		Find the default conversions between the database encoding and
 *		UTF-8 (catalog access: the caller is in a transaction).  The
 *		database encoding never changes in a backend.
 */
static bool
find_procs(void)
{
	int			enc = GetDatabaseEncoding();

	if (procs_encoding == enc)
		return true;
	to_utf8_proc = FindDefaultConversionProc(enc, PG_UTF8);
	from_utf8_proc = FindDefaultConversionProc(PG_UTF8, enc);
	if (!OidIsValid(to_utf8_proc) || !OidIsValid(from_utf8_proc))
		return false;
	procs_encoding = enc;
	return true;
}

/* find_procs, or an error for a database encoding without them */
static void
lookup_procs(void)
{
	if (!find_procs())
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("default conversion between encoding \"%s\" and \"UTF8\" does not exist",
						GetDatabaseEncodingName()),
				 errdetail("kvext stores text as UTF-8 and converts it for each database.")));
}

/*
 * convert
 *		Append len bytes of src, converted from encoding from to encoding to
 *		with proc, to buf, in chunks.  Returns how many bytes of src were
 *		converted: len, or the offset of the first character that is not
 *		valid in from or has no equivalent in to.
 */
static uint32
convert(Oid proc, int from, int to, const char *src, uint32 len,
		StringInfo buf)
{
	uint32		done = 0;

	while (done < len)
	{
		uint32		chunk = Min(len - done, CONVERT_CHUNK);
		int			n;
		int			l;

		enlargeStringInfo(buf, (int) (chunk * MAX_CONVERSION_GROWTH + 1));
		n = pg_do_encoding_conversion_buf(proc, from, to,
										  (unsigned char *) src + done, (int) chunk,
										  (unsigned char *) buf->data + buf->len,
										  buf->maxlen - buf->len, true);
		buf->len += strlen(buf->data + buf->len);
		done += (uint32) n;
		if ((uint32) n == chunk)
			continue;
		/* stopped early: at a bad character, or at one the chunk cut */
		l = pg_encoding_verifymbchar(from, src + done, (int) (len - done));
		if (l <= 0 || (uint32) n + (uint32) l <= chunk)
			return done;
	}
	return done;
}

/*
 * KvTextToStoreSlow
 *		KvTextToStore for a database that converts.
 */
const char *
KvTextToStoreSlow(const char *s, uint32 len, uint32 *outlen)
{
	StringInfoData buf;
	uint32		n;

	lookup_procs();
	initStringInfo(&buf);
	n = convert(to_utf8_proc, GetDatabaseEncoding(), PG_UTF8, s, len, &buf);
	if (n < len)
	{
		/* text arguments are valid, so this is a character UTF-8 lacks */
		if (pg_encoding_verifymbchar(GetDatabaseEncoding(), s + n, (int) (len - n)) <= 0)
			report_invalid_encoding(GetDatabaseEncoding(), s + n, (int) (len - n));
		report_untranslatable_char(GetDatabaseEncoding(), PG_UTF8, s + n, (int) (len - n));
	}
	/*
	 * Some conversions map two characters to one (EUC_JP has such pairs):
	 * two different texts would be stored as one, and a value would read
	 * back changed.  Only text that converts back unchanged goes in.
	 */
	{
		StringInfoData back;

		initStringInfo(&back);
		if (convert(from_utf8_proc, PG_UTF8, GetDatabaseEncoding(), buf.data,
					(uint32) buf.len, &back) < (uint32) buf.len ||
			back.len != (int) len || memcmp(back.data, s, len) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
					 errmsg("text of encoding \"%s\" has a character that UTF-8 cannot hold apart from another",
							GetDatabaseEncodingName()),
					 errdetail("kvext stores text as UTF-8, and this text does not convert back to the same bytes: two different texts would be stored as one."),
					 errhint("Write it with the bytea functions, or from a database whose encoding converts it one to one.")));
		pfree(back.data);
	}
	*outlen = (uint32) buf.len;
	return buf.data;
}

/*
 * KvTextFromStoreSlow
 *		KvTextFromStore for a database that converts.
 */
bool
KvTextFromStoreSlow(const char *bytes, uint32 len, const char **out,
					uint32 *outlen)
{
	StringInfoData buf;

	lookup_procs();
	initStringInfo(&buf);
	if (convert(from_utf8_proc, PG_UTF8, GetDatabaseEncoding(), bytes, len, &buf) < len)
	{
		pfree(buf.data);
		return false;
	}
	*out = buf.data;
	*outlen = (uint32) buf.len;
	return true;
}

/*
 * KvTextArgToStoreSlow
 *		KvTextArgToStore for a database that converts: a palloc'd text.
 */
struct varlena *
KvTextArgToStoreSlow(struct varlena *t)
{
	const char *s;
	uint32		len;

	s = KvTextToStoreSlow(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &len);
	return (struct varlena *) cstring_to_text_with_len(s, (int) len);
}

/*
 * KvTextCStringToStore
 *		A NUL-terminated string of the database encoding (a keyspace name)
 *		as stored text: s itself, or a palloc'd string.
 */
char *
KvTextCStringToStore(const char *s)
{
	uint32		len;

	if (likely(!KvTextConverts()))
		return (char *) s;
	return (char *) KvTextToStoreSlow(s, strlen(s), &len);
}

/* \xNN for each of len bytes */
static void
append_escaped(StringInfo buf, const char *bytes, uint32 len)
{
	for (uint32 i = 0; i < len; i++)
		appendStringInfo(buf, "\\x%02x", (unsigned char) bytes[i]);
}

/*
 * display_raw
 *		display_prefix where nothing converts: the longest valid prefix as
 *		it is, then every byte that is not printable ASCII as \xNN.
 */
static char *
display_raw(const char *bytes, uint32 len, uint32 limit)
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
			append_escaped(&buf, (const char *) &c, 1);
	}
	return buf.data;
}

/*
 * display_converted
 *		display_prefix in a database that converts: up to limit bytes of
 *		stored text, cut at a character boundary, converted; a character
 *		the database encoding lacks, or a byte that is not UTF-8, as \xNN.
 */
static char *
display_converted(const char *bytes, uint32 len, uint32 limit)
{
	uint32		end = Min(len, limit);
	uint32		pos = 0;
	StringInfoData buf;

	initStringInfo(&buf);
	while (pos < end)
	{
		int			l;

		pos += convert(from_utf8_proc, PG_UTF8, GetDatabaseEncoding(),
					   bytes + pos, end - pos, &buf);
		if (pos >= end)
			break;
		l = pg_encoding_verifymbchar(PG_UTF8, bytes + pos, (int) (len - pos));
		if (l > 0 && pos + (uint32) l > end)
			break;				/* cut at a character boundary */
		if (l <= 0)
			l = 1;
		append_escaped(&buf, bytes + pos, (uint32) l);
		pos += (uint32) l;
	}
	return buf.data;
}

/*
 * display_prefix
 *		Up to limit bytes of stored bytes as text of the database encoding,
 *		for a message or a status view: converted (display_converted), or
 *		where nothing converts (or the conversions are not known yet and
 *		cannot be looked up, outside a transaction, or do not exist, as for
 *		MULE_INTERNAL) checked and escaped (display_raw).  Never fails for
 *		the bytes.  palloc'd, NUL-terminated.
 */
static char *
display_prefix(const char *bytes, uint32 len, uint32 limit)
{
	if (KvTextConverts() &&
		(procs_encoding == GetDatabaseEncoding() || IsTransactionState()) &&
		find_procs())
		return display_converted(bytes, len, limit);
	return display_raw(bytes, len, limit);
}

/*
 * KvKeyExcerpt
 *		A stored key for a message: at most 64 bytes, cut at a character
 *		boundary, converted to the database encoding, so the message
 *		converts to the client's encoding.  What is not valid UTF-8, or has
 *		no equivalent in the database encoding, is shown with \xNN escapes.
 *		palloc'd.
 */
char *
KvKeyExcerpt(const char *key, uint32 keylen)
{
	return display_prefix(key, keylen, KEY_EXCERPT_BYTES);
}

/*
 * KvNameExcerpt
 *		A stored keyspace name for a message, as KvKeyExcerpt shows a key,
 *		cut to NAMEDATALEN - 1 bytes.  palloc'd.
 */
char *
KvNameExcerpt(const char *name, uint32 len)
{
	return display_prefix(name, len, NAMEDATALEN - 1);
}

/*
 * KvRoleNameForDisplay
 *		A role name (from pg_authid: shared by every database, so in the
 *		encoding of the database it was created from) as valid text of
 *		this database's encoding: as it is if it is valid here, else with
 *		\xNN escapes (display_raw).  palloc'd.
 */
char *
KvRoleNameForDisplay(const char *name)
{
	uint32		len = strlen(name);

	return display_raw(name, len, len);
}

/*
 * KvTextForDisplay
 *		len stored bytes as valid text of the database encoding, for status
 *		views: as KvKeyExcerpt shows them, not cut.  palloc'd.
 */
char *
KvTextForDisplay(const char *bytes, uint32 len)
{
	return display_prefix(bytes, len, len);
}

/*
 * lacking_char
 *		If KvTextFromStore failed on len bytes because they hold a character
 *		the database encoding lacks (they are valid UTF-8), that character's
 *		code point; else 0 (not valid UTF-8: 22021).
 */
static pg_wchar
lacking_char(const char *bytes, uint32 len)
{
	StringInfoData buf;
	uint32		n;

	if (!KvTextConverts() ||
		pg_encoding_verifymbstr(PG_UTF8, bytes, (int) len) != (int) len)
		return 0;
	lookup_procs();
	initStringInfo(&buf);
	n = convert(from_utf8_proc, PG_UTF8, GetDatabaseEncoding(), bytes, len, &buf);
	pfree(buf.data);
	if (n >= len)
		return 0;
	return utf8_to_unicode((const unsigned char *) bytes + n);
}

/*
 * KvReportValueNotText
 *		Raise the error for the stored value (value, vallen) of key in
 *		keyspace that KvTextFromStore refused: 22P05 for a character the
 *		database encoding lacks, else 22021 (not UTF-8); binary: it was
 *		written as bytea.
 */
void
KvReportValueNotText(const char *keyspace, const char *key, uint32 keylen,
					 const char *value, uint32 vallen, bool binary)
{
	char	   *ks = KvNameExcerpt(keyspace, strlen(keyspace));
	pg_wchar	c = lacking_char(value, vallen);

	if (c != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("value of key \"%s\" in keyspace \"%s\" has a character with no equivalent in encoding \"%s\"",
						KvKeyExcerpt(key, keylen), ks, GetDatabaseEncodingName()),
				 errdetail("The value holds U+%04X; kvext stores text as UTF-8 and converts it to the encoding of the database that reads it.",
						   (unsigned int) c),
				 errhint("Read it from a UTF8 database, or as UTF-8 bytes with kv_get_bytea() or kv_scan_bytea().")));
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
			 errdetail("The value is not valid UTF-8, the encoding kvext stores text in: it was written from a SQL_ASCII database, or from a database of another encoding before kvext converted text."),
			 errhint("Read it as bytes with kv_get_bytea() or kv_scan_bytea(), or through a bytea column.")));
	pg_unreachable();
}

/*
 * KvReportKeyNotText
 *		Raise the error for a stored key of keyspace that KvTextFromStore
 *		refused: 22P05 for a character the database encoding lacks, else
 *		22021.  Keys are text everywhere (kv_scan_bytea's too), so the hint
 *		points to a database that can read it.
 */
void
KvReportKeyNotText(const char *keyspace, const char *key, uint32 keylen)
{
	pg_wchar	c = lacking_char(key, keylen);

	if (c != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("key \"%s\" in keyspace \"%s\" has a character with no equivalent in encoding \"%s\"",
						KvKeyExcerpt(key, keylen),
						KvNameExcerpt(keyspace, strlen(keyspace)),
						GetDatabaseEncodingName()),
				 errdetail("The key holds U+%04X; kvext stores text as UTF-8 and converts it to the encoding of the database that reads it.",
						   (unsigned int) c),
				 errhint("Read or delete it from a UTF8 database, or through a foreign table whose key column is bytea.")));
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("key \"%s\" in keyspace \"%s\" is not valid text in encoding \"%s\"",
					KvKeyExcerpt(key, keylen),
					KvNameExcerpt(keyspace, strlen(keyspace)),
					GetDatabaseEncodingName()),
			 errdetail("The key is not valid UTF-8, the encoding kvext stores text in: it was written through a bytea key column, from a SQL_ASCII database, or from a database of another encoding before kvext converted text."),
			 errhint("Read or delete it from a SQL_ASCII database, or through a foreign table whose key column is bytea.")));
	pg_unreachable();
}

/*
 * KvReportKeyspaceNotText
 *		Raise the error for a stored keyspace name that KvTextFromStore
 *		refused: 22P05 or 22021, as for keys.
 */
void
KvReportKeyspaceNotText(const char *keyspace)
{
	pg_wchar	c = lacking_char(keyspace, strlen(keyspace));

	if (c != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("keyspace name \"%s\" has a character with no equivalent in encoding \"%s\"",
						KvNameExcerpt(keyspace, strlen(keyspace)),
						GetDatabaseEncodingName()),
				 errdetail("The name holds U+%04X; kvext stores text as UTF-8 and converts it to the encoding of the database that reads it.",
						   (unsigned int) c),
				 errhint("List or drop it from a UTF8 database; kv_stats() shows its name escaped.")));
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("keyspace name \"%s\" is not valid text in encoding \"%s\"",
					KvNameExcerpt(keyspace, strlen(keyspace)),
					GetDatabaseEncodingName()),
			 errdetail("The name is not valid UTF-8, the encoding kvext stores text in: it was created from a SQL_ASCII database, or from a database of another encoding before kvext converted text."),
			 errhint("List or drop it from a SQL_ASCII database; kv_stats() shows its name escaped.")));
	pg_unreachable();
}
