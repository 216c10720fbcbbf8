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

#endif							/* KVEXT_REPL_RECEIVER_H */
