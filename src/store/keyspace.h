/*-------------------------------------------------------------------------
 *
 * keyspace.h
 *	  Named keyspaces: resolution, create, drop, listing, replay.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_KEYSPACE_H
#define KVEXT_KEYSPACE_H

#include "storage/lwlock.h"

#include "store/store.h"

extern void KvKeyspaceInit(LWLock *lock);
extern KvKeyspaceRef KvKeyspaceResolve(const char *name, int len, bool write);
extern bool KvKeyspaceTryResolve(const char *name, int len, bool write,
								 KvKeyspaceRef *ref);
extern void KvReportNoKeyspace(const char *name, int len) pg_attribute_noreturn();
extern void KvKeyspaceCheckName(const char *name, bool new_name);
extern bool KvKeyspaceCreate(const char *name, bool if_not_exists);
extern void KvKeyspaceCreateInternal(const char *name);
extern bool KvKeyspaceDrop(const char *name, bool if_exists);
extern int	KvKeyspaceList(KvKeyspaceRef *refs, char (*names)[NAMEDATALEN]);
extern int	KvKeyspaceListForSnapshot(KvKeyspaceRef *refs, char (*names)[NAMEDATALEN]);
extern bool KvKeyspaceIdIsActive(uint16 id);
extern void KvKeyspaceEndXact(uint16 id, uint8 kind, uint8 prev_state,
							  bool commit);
extern void KvKeyspaceName(uint16 id, char *name);
extern void KvKeyspaceCommitStarting(void);

/* recovery and snapshots */
extern void KvKeyspaceRecoverCreate(uint16 id, const char *name);
extern void KvKeyspaceRecoverDrop(uint16 id);
extern void KvKeyspaceResetAll(void);

#endif							/* KVEXT_KEYSPACE_H */
