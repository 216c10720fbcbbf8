/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Every kvext configuration setting, defined in one place.
 *
 * Settings that size shared memory are PGC_POSTMASTER.  The key and value
 * size limits protect the shared store from one session filling it with a
 * single huge write, so only superusers may change them (PGC_SUSET).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"
#include "utils/memutils.h"

#include "kvext.h"

int			kvext_memory_limit = 256 * 1024;	/* kB */
int			kvext_max_key_size = 8 * 1024;
int			kvext_max_value_size = 1024 * 1024;
int			kvext_max_keyspaces = 64;

/* the allocator addresses 8-byte units with 32-bit offsets: 32GB at most */
#define KVEXT_MAX_MEMORY_LIMIT_KB	(32 * 1024 * 1024)

/*
 * KvGucInit
 *		Define all kvext.* settings and reserve the prefix.
 */
void
KvGucInit(void)
{
	DefineCustomIntVariable("kvext.memory_limit",
							"Shared memory reserved for the key-value store.",
							"Keys, values, per-entry overhead and the hash index all count "
							"against this limit; a write that would exceed it fails.",
							&kvext_memory_limit,
							256 * 1024,
							8 * 1024,
							KVEXT_MAX_MEMORY_LIMIT_KB,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.max_key_size",
							"Largest key accepted by a write.",
							NULL,
							&kvext_max_key_size,
							8 * 1024,
							1,
							1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.max_value_size",
							"Largest value accepted by a write.",
							NULL,
							&kvext_max_value_size,
							1024 * 1024,
							0,
							(int) (MaxAllocSize - VARHDRSZ),
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("kvext.max_keyspaces",
							"Maximum number of keyspaces, including \"default\".",
							NULL,
							&kvext_max_keyspaces,
							64,
							1,
							1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("kvext");
}
