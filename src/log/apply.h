/*-------------------------------------------------------------------------
 *
 * apply.h
 *	  Applying log records to the store (recovery and followers).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_APPLY_H
#define KVEXT_APPLY_H

#include "log/reader.h"

/* undecided TXN records a follower can hold (apply.c) */
#define KVEXT_APPLY_MAX_PENDING		8192

/* applying the record a reader holds */
extern void KvApplyTxn(KvLogReader *r, KvLsn commit_end, bool alone);
typedef void (*KvTxnKeyFn) (void *arg, uint16 keyspace, const char *key,
							uint32 keylen);
extern void KvApplyTxnKeys(KvLogReader *r, KvTxnKeyFn fn, void *arg);
extern void KvApplyKeyspace(KvLogReader *r);

/* a follower's apply state */
extern Size KvApplyShmemSize(void);
extern void KvApplyShmemInit(void);
extern void KvApplyFollowerStart(KvLsn applied, KvLsn from,
								 const KvLsn *pending, int npending);
extern KvLsn KvApplyFollowerAdvance(KvLsn upto);
extern KvLsn KvApplyFollowerPos(void);
extern void KvApplyFollowerStop(void);
extern int	KvApplyFollowerPending(KvLsn **out);
extern int	KvApplyUndecided(const KvLsn *initial, int ninitial, KvLsn from,
							 KvLsn to, KvLsn **out);

#endif							/* KVEXT_APPLY_H */
