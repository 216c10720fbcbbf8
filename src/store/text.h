/*-------------------------------------------------------------------------
 *
 * text.h
 *	  Stored bytes read out as text: the encoding check and its errors
 *	  (text.c).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_TEXT_H
#define KVEXT_TEXT_H

#include "mb/pg_wchar.h"

/*
 * KvIsText
 *		Are len bytes valid text of the database encoding?  pg_verifymbstr,
 *		whose ASCII fast path makes the common case cheap; a zero byte is
 *		never valid.
 */
static inline bool
KvIsText(const char *bytes, uint32 len)
{
	return pg_verifymbstr(bytes, (int) len, true);
}

extern char *KvTextForDisplay(const char *bytes, uint32 len);
extern void KvReportValueNotText(const char *keyspace, const char *key,
								 uint32 keylen, bool binary) pg_attribute_noreturn();
extern void KvReportKeyNotText(const char *keyspace, const char *key,
							   uint32 keylen) pg_attribute_noreturn();
extern void KvReportKeyspaceNotText(const char *keyspace) pg_attribute_noreturn();

#endif							/* KVEXT_TEXT_H */
