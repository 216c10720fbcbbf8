/*-------------------------------------------------------------------------
 *
 * codec.c
 *	  How a column value of a kvext foreign table becomes the bytes of a
 *	  key or value, and back.
 *
 * The rule is the one that keeps the wrapper and the kv functions in
 * agreement: a text key 'abc' written through a foreign table is the key
 * kv_put('abc', ...) writes, and a value written by kv_put() reads back
 * through a text, jsonb or integer column.
 *	text, varchar		the string's bytes
 *	bytea				the bytes themselves; values are marked binary, as
 *						kv_put(key, bytea) marks them (kv_get_bytea reads
 *						them), keys are the raw bytes
 *	any other type		the text its output function writes, read back
 *						with its input function (a jsonb value is stored as
 *						kv_put(key, jsonb) stores it)
 * Text of a type whose output depends on settings (DateStyle,
 * IntervalStyle, extra_float_digits, TimeZone: dates, times, intervals,
 * floats, and arrays or records of them) is written and read under fixed
 * settings, as postgres_fdw sends values to a remote server: ISO dates,
 * postgres intervals, extra_float_digits 3, and time zone UTC, so that one
 * timestamptz is one key whatever the session's time zone.
 *
 * Keys must also compare as the column compares: a key read through an
 * integer column must be the one key = 7 looks up.  So a key that is not
 * in the exact text form its type writes ('007' for an integer column) is
 * an error when it is read, rather than a row that no lookup can find.
 * A value is read as its input function reads it, whatever its form.
 *
 * Text is stored as UTF-8 (store/text.c): the bytes of a column of any
 * type but bytea are converted from the database encoding to UTF-8 when
 * they become a key or value (KvFdwEncode), and stored bytes back to the
 * database encoding before they are decoded, by the caller (fdw.c
 * row_to_text: 22021 for bytes that are not UTF-8, 22P05 for a character
 * the encoding lacks), so KvFdwDecode takes text of the database
 * encoding.  bytea columns take the stored bytes as they are.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "fdw/kvext_fdw.h"
#include "store/text.h"

/*
 * Types whose text form does not depend on any setting; every other type
 * converts under the fixed settings.
 */
static bool
text_is_setting_free(Oid type)
{
	switch (type)
	{
		case BOOLOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case NUMERICOID:
		case UUIDOID:
		case JSONOID:
		case JSONBOID:
		case NAMEOID:
		case BPCHAROID:
		case VARCHAROID:
		case CHAROID:
		case TEXTOID:
			return true;
		default:
			return false;
	}
}

/*
 * enter_fixed_settings
 *		Switch to the settings of the file header for the current
 *		conversion, setting only those that differ; returns the GUC nesting
 *		level to give exit_fixed_settings (or 0: nothing changed).  An
 *		error in between is cleaned up by the (sub)transaction abort, as
 *		for a function's SET clause.
 */
static int
enter_fixed_settings(void)
{
	int			nestlevel = 0;

	if (DateStyle == USE_ISO_DATES && IntervalStyle == INTSTYLE_POSTGRES &&
		extra_float_digits >= 3 &&
		strcmp(pg_get_timezone_name(session_timezone), "UTC") == 0)
		return 0;

	nestlevel = NewGUCNestLevel();
	if (DateStyle != USE_ISO_DATES)
		(void) set_config_option("datestyle", "ISO",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	if (IntervalStyle != INTSTYLE_POSTGRES)
		(void) set_config_option("intervalstyle", "postgres",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	if (extra_float_digits < 3)
		(void) set_config_option("extra_float_digits", "3",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	if (strcmp(pg_get_timezone_name(session_timezone), "UTC") != 0)
		(void) set_config_option("timezone", "UTC",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/* undo enter_fixed_settings */
static void
exit_fixed_settings(int nestlevel)
{
	if (nestlevel > 0)
		AtEOXact_GUC(true, nestlevel);
}

/*
 * KvFdwCodecInit
 *		Set up the conversions of a column (or expression) of type and
 *		typmod.  FmgrInfos live in the current memory context.
 */
void
KvFdwCodecInit(KvFdwCodec *codec, Oid type, int32 typmod)
{
	Oid			infunc;
	Oid			outfunc;
	bool		isvarlena;

	memset(codec, 0, sizeof(*codec));
	codec->type = type;
	codec->typmod = typmod;
	get_typlenbyval(type, &codec->typlen, &codec->typbyval);
	if (type == BYTEAOID)
		codec->kind = KV_CODEC_BYTEA;
	else if (type == TEXTOID || (type == VARCHAROID && typmod < 0))
		codec->kind = KV_CODEC_TEXT;
	else
	{
		codec->kind = KV_CODEC_IO;
		codec->fixed_settings = !text_is_setting_free(type);
		getTypeInputInfo(type, &infunc, &codec->ioparam);
		fmgr_info(infunc, &codec->in);
		getTypeOutputInfo(type, &outfunc, &isvarlena);
		fmgr_info(outfunc, &codec->out);
	}
}

/*
 * encode_text
 *		The bytes of a (non-NULL) value in the database encoding (for a
 *		bytea codec, the bytes themselves); *len gets their length.  The
 *		result is palloc'd in the current memory context or points into
 *		the value itself: it lives as long as both.
 */
static char *
encode_text(const KvFdwCodec *codec, Datum value, uint32 *len)
{
	if (codec->kind == KV_CODEC_IO)
	{
		int			nestlevel = 0;
		char	   *str;

		if (codec->fixed_settings)
			nestlevel = enter_fixed_settings();
		str = OutputFunctionCall((FmgrInfo *) &codec->out, value);
		exit_fixed_settings(nestlevel);
		*len = (uint32) strlen(str);
		return str;
	}
	else
	{
		struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(value));

		*len = VARSIZE_ANY_EXHDR(v);
		return VARDATA_ANY(v);
	}
}

/*
 * KvFdwEncode
 *		The stored bytes of a (non-NULL) value: encode_text's, converted to
 *		UTF-8 unless the codec is bytea; *len gets their length.  The
 *		result is palloc'd in the current memory context or points into
 *		the value itself: it lives as long as both.
 */
char *
KvFdwEncode(const KvFdwCodec *codec, Datum value, uint32 *len)
{
	char	   *bytes = encode_text(codec, value, len);

	if (codec->kind == KV_CODEC_BYTEA)
		return bytes;
	return (char *) KvTextToStore(bytes, *len, len);
}

/* the input function of an IO codec applied to bytes, under its settings */
static Datum
input_call(const KvFdwCodec *codec, const char *bytes, uint32 len)
{
	int			nestlevel = 0;
	char	   *str = pnstrdup(bytes, len);
	Datum		d;

	if (codec->fixed_settings)
		nestlevel = enter_fixed_settings();
	d = InputFunctionCall((FmgrInfo *) &codec->in, str, codec->ioparam,
						  codec->typmod);
	exit_fixed_settings(nestlevel);
	pfree(str);
	return d;
}

/*
 * KvFdwDecode
 *		The column value of bytes.  Unless the codec is bytea, the bytes
 *		must be valid text of the database encoding: the caller has
 *		converted them from the store's UTF-8 (fdw.c row_to_text, or
 *		KvStoreGet), once, since text takes them as they are and input
 *		functions assume valid text.
 *		The result is palloc'd in the current memory context.
 */
Datum
KvFdwDecode(const KvFdwCodec *codec, const char *bytes, uint32 len)
{
	switch (codec->kind)
	{
		case KV_CODEC_BYTEA:
		case KV_CODEC_TEXT:
			return PointerGetDatum(cstring_to_text_with_len(bytes, len));
		case KV_CODEC_IO:
			return input_call(codec, bytes, len);
	}
	pg_unreachable();
}

/*
 * KvFdwDecodeKey
 *		The column value of key bytes, converted as for KvFdwDecode; a key
 *		that is not in the exact text form of its type is an error (file
 *		header).
 */
Datum
KvFdwDecodeKey(const KvFdwCodec *codec, const char *bytes, uint32 len)
{
	Datum		d;
	char	   *again;
	uint32		againlen;

	d = KvFdwDecode(codec, bytes, len);
	if (codec->kind != KV_CODEC_IO)
		return d;

	again = encode_text(codec, d, &againlen);
	if (againlen != len || memcmp(again, bytes, len) != 0)
	{
		/* both shown as stored keys are (KvKeyExcerpt takes UTF-8) */
		uint32		slen;
		uint32		sagainlen;
		const char *s = KvTextToStore(bytes, len, &slen);
		const char *sagain = KvTextToStore(again, againlen, &sagainlen);

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("key \"%s\" is not in the text form of type %s",
						KvKeyExcerpt(s, slen), format_type_be(codec->type)),
				 errdetail("Type %s writes this value as \"%s\"; only that key is the one the value looks up.",
						   format_type_be(codec->type),
						   KvKeyExcerpt(sagain, sagainlen)),
				 errhint("Read the keyspace through a foreign table with a text key column.")));
	}
	pfree(again);
	return d;
}

/*
 * KvFdwValueEquals
 *		Do stored bytes read as the same column value as value?  Used to
 *		tell whether a key changed since a scan read it.  Bytes that do not
 *		convert to text of the database encoding are not equal to a value
 *		of a text-read type.
 */
bool
KvFdwValueEquals(const KvFdwCodec *codec, Datum value, const char *bytes,
				 uint32 len)
{
	Datum		d;
	const char *str;
	uint32		textlen;

	if (codec->kind != KV_CODEC_IO)
	{
		uint32		vlen;
		char	   *v = KvFdwEncode(codec, value, &vlen);

		return vlen == len && memcmp(v, bytes, len) == 0;
	}
	if (!KvTextFromStore(bytes, len, &str, &textlen))
		return false;
	d = input_call(codec, str, textlen);
	return datum_image_eq(value, d, codec->typbyval, codec->typlen);
}
