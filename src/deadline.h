/*-------------------------------------------------------------------------
 *
 * deadline.h
 *	  When a commit's waits end (deadline.c).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_DEADLINE_H
#define KVEXT_DEADLINE_H

#include "datatype/timestamp.h"

extern void KvDeadlineInit(void);
extern void KvDeadlineObserve(void);
extern TimestampTz KvCommitDeadline(void);

#endif							/* KVEXT_DEADLINE_H */
