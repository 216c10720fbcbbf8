/*-------------------------------------------------------------------------
 *
 * api.h
 *	  Checks of the SQL API that the foreign data wrapper (src/fdw/) shares,
 *	  so that a key or value refused by kv_put() is refused, with the same
 *	  error, by an INSERT into a kvext foreign table; and the utility hook
 *	  that keeps keyspace rights attached to their roles (roles.c).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_API_H
#define KVEXT_API_H

extern void KvCheckKeySize(uint32 keylen);
extern void KvCheckValueSize(uint32 vallen);

/* roles.c */
extern void KvRolesInit(void);

#endif							/* KVEXT_API_H */
