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

#include "storage/lwlock.h"

extern void KvReceiverInit(LWLock *append_lock);

#endif							/* KVEXT_REPL_RECEIVER_H */
