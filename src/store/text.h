/*-------------------------------------------------------------------------
 *
 * text.h
 *	  Text in the store is UTF-8: conversion from and to the database
 *	  encoding, the check on the way out, and its errors (text.c).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_TEXT_H
#define KVEXT_TEXT_H

#include "mb/pg_wchar.h"

/*
 * KvTextConverts
 *		Does this database convert text to and from the store's UTF-8?  All
 *		encodings do but UTF8 (the store's own) and SQL_ASCII (no encoding:
 *		bytes as they are).  The only test a UTF8 database pays for.
 */
static inline bool
KvTextConverts(void)
{
	int			enc = GetDatabaseEncoding();

	return enc != PG_UTF8 && enc != PG_SQL_ASCII;
}

extern const char *KvTextToStoreSlow(const char *s, uint32 len, uint32 *outlen);
extern bool KvTextFromStoreSlow(const char *bytes, uint32 len,
								const char **out, uint32 *outlen);

/*
 * KvTextToStore
 *		Text of the database encoding (already valid: a text Datum's bytes)
 *		as the store keeps it: UTF-8.  Returns s itself when nothing
 *		converts, else a palloc'd copy (NUL-terminated); *outlen gets its
 *		length.  A character with no UTF-8 form is 22P05.
 */
static inline const char *
KvTextToStore(const char *s, uint32 len, uint32 *outlen)
{
	if (likely(!KvTextConverts()))
	{
		*outlen = len;
		return s;
	}
	return KvTextToStoreSlow(s, len, outlen);
}

/*
 * KvTextFromStore
 *		Stored bytes as text of the database encoding: *out is bytes itself
 *		(UTF8 and SQL_ASCII databases, after the check) or a palloc'd
 *		conversion.  Returns false, with *out unset, if the bytes are not
 *		valid UTF-8 (not valid text, in a UTF8 or SQL_ASCII database) or
 *		hold a character with no equivalent in the database encoding; the
 *		caller then raises the error naming what it read (KvReport*NotText,
 *		which tell 22021 from 22P05).  pg_verifymbstr's ASCII fast path
 *		makes the UTF8 check cheap; a zero byte is never valid.
 */
static inline bool
KvTextFromStore(const char *bytes, uint32 len, const char **out, uint32 *outlen)
{
	if (likely(!KvTextConverts()))
	{
		*out = bytes;
		*outlen = len;
		return pg_verifymbstr(bytes, (int) len, true);
	}
	return KvTextFromStoreSlow(bytes, len, out, outlen);
}

extern struct varlena *KvTextArgToStoreSlow(struct varlena *t);
extern char *KvTextCStringToStore(const char *s);

/*
 * KvTextArgToStore
 *		A text argument (detoasted) as stored text: t itself, or a palloc'd
 *		text in UTF-8.
 */
static inline struct varlena *
KvTextArgToStore(struct varlena *t)
{
	if (likely(!KvTextConverts()))
		return t;
	return KvTextArgToStoreSlow(t);
}

extern char *KvTextForDisplay(const char *bytes, uint32 len);
extern char *KvRoleNameForDisplay(const char *name);
extern char *KvNameExcerpt(const char *name, uint32 len);
extern void KvReportValueNotText(const char *keyspace, const char *key,
								 uint32 keylen, const char *value,
								 uint32 vallen, bool binary) pg_attribute_noreturn();
extern void KvReportKeyNotText(const char *keyspace, const char *key,
							   uint32 keylen) pg_attribute_noreturn();
extern void KvReportKeyspaceNotText(const char *keyspace) pg_attribute_noreturn();

#endif							/* KVEXT_TEXT_H */
