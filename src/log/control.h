/*-------------------------------------------------------------------------
 *
 * control.h
 *	  kvext's control file: cluster id, current term and vote, the term
 *	  this node led last and the boot of its machine it led in, the flush
 *	  and commit watermarks.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_CONTROL_H
#define KVEXT_CONTROL_H

#include "storage/lwlock.h"

#include "log/wal.h"

#define KVEXT_CONTROL_FILE		"kvext/control"
#define KVEXT_CONTROL_TMP		"kvext/control.tmp"

/* a boot id ("/proc/sys/kernel/random/boot_id") and its terminating zero */
#define KVEXT_BOOT_ID_LEN		40

/* what the control file holds, in memory */
typedef struct KvControl
{
	uint64		cluster_id;		/* random, fixed when the store is created */
	uint64		term;			/* current term */
	char		voted_for[NAMEDATALEN];	/* vote in that term, "" if none */
	KvLsn		flush_watermark;	/* the log was durable at least up to here */
	KvLsn		commit_watermark;	/* a follower: the log was committed
									 * (and applied) at least up to here */
	uint64		led_term;		/* the last term this node led (0: none) */
	char		term_leader[NAMEDATALEN];	/* who leads term, "" if unknown */
	char		led_boot[KVEXT_BOOT_ID_LEN];	/* the machine's boot in which
												 * this node last led, "" if
												 * none */
	uint32		campaign;		/* must win a new term before it leads
								 * (replication/campaign.c) */
	uint32		pad;
} KvControl;

extern Size KvControlShmemSize(void);
extern void KvControlShmemInit(LWLock *lock);
extern bool KvControlLoad(bool create);
extern void KvControlGet(KvControl *out);
extern void KvControlSetTerm(uint64 term, const char *voted_for);
extern void KvControlSetClusterId(uint64 cluster_id);
extern void KvControlSetLedTerm(uint64 term);
extern void KvControlSetTermLeader(const char *leader);
extern uint64 KvControlLedTerm(const KvControl *control);
extern bool KvControlMayStand(const KvControl *control);
extern void KvControlSetLedBoot(void);
extern void KvControlSetCampaign(bool on);
extern void KvBootId(char *out);
extern void KvControlAdvanceWatermark(KvLsn flushed);
extern void KvControlAdvance(KvLsn flushed, KvLsn committed);
extern void KvControlLowerWatermark(KvLsn at);
extern void KvControlResetWatermark(KvLsn flushed);
extern void KvControlResetToSnapshot(KvLsn at);

#endif							/* KVEXT_CONTROL_H */
