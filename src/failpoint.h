/*-------------------------------------------------------------------------
 *
 * failpoint.h
 *	  Named failure points for crash and error tests (kvext.failpoint).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_FAILPOINT_H
#define KVEXT_FAILPOINT_H

#include "utils/guc.h"

extern PGDLLIMPORT char *kvext_failpoint;

extern void KvFailpointHit(const char *name);
extern bool KvFailpointMatches(const char *name);
extern void KvFailpointHold(void);
extern bool KvFailpointCheck(char **newval, void **extra, GucSource source);

/*
 * KvFailpoint
 *		PANIC (default) or ERROR here if kvext.failpoint names this point.
 *		Costs one byte comparison when no failpoint is set.
 */
#define KvFailpoint(name) \
	do { \
		if (unlikely(kvext_failpoint != NULL && kvext_failpoint[0] != '\0')) \
			KvFailpointHit(name); \
	} while (0)

/* true if kvext.failpoint names this point: the caller fakes a failure */
/* is the failpoint set (for points that change behaviour, not fail)? */
#define KvFailpointSet(name) \
	(unlikely(kvext_failpoint != NULL && kvext_failpoint[0] != '\0') && \
	 KvFailpointMatches(name))

#define KvFailpointEnospc(name) \
	(unlikely(kvext_failpoint != NULL && kvext_failpoint[0] != '\0') && \
	 KvFailpointMatches(name))

#endif							/* KVEXT_FAILPOINT_H */
