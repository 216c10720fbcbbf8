/*-------------------------------------------------------------------------
 *
 * receiver.h
 *	  The follower's side of log shipping (kv_repl_append).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_REPL_RECEIVER_H
#define KVEXT_REPL_RECEIVER_H

extern void KvReplLeaderCatchUp(void);

/* for snaprecv.c: the checks of an append's steps 1 to 3, the append lock */
extern bool KvReceiverCheckLeader(uint64 cluster_id, const char *leader,
								  uint64 term, uint64 *current);

#endif							/* KVEXT_REPL_RECEIVER_H */
