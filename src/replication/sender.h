/*-------------------------------------------------------------------------
 *
 * sender.h
 *	  The leader's log senders: one "kvext sender <peer>" worker per peer,
 *	  shipping kvext's log over libpq and advancing the commit position.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_REPL_SENDER_H
#define KVEXT_REPL_SENDER_H

#include "datatype/timestamp.h"

#include "log/wal.h"
#include "replication/config.h"

#define KVEXT_PEER_STATE_LEN	16
#define KVEXT_PEER_ERROR_LEN	256

/* what a sender publishes about its peer (a copy: KvSenderGetStatus) */
typedef struct KvPeerStatus
{
	char		state[KVEXT_PEER_STATE_LEN];	/* inactive, connecting, backoff,
												 * catchup, streaming */
	uint64		term;			/* leader term the positions belong to (0:
								 * none yet) */
	KvLsn		sent;			/* end of the last batch sent */
	KvLsn		flushed;		/* end of the log the peer has flushed and
								 * that matches ours */
	KvLsn		applied;		/* the peer's applied position */
	TimestampTz last_reply;		/* last answer to an append, or 0 */
	TimestampTz behind_since;	/* since when the peer lacks a record we
								 * have flushed; 0 if it lacks none */
	TimestampTz connected_since;	/* 0 if not connected */
	char		last_error[KVEXT_PEER_ERROR_LEN];	/* "" if none yet */
	TimestampTz last_error_time;
} KvPeerStatus;

extern Size KvSenderShmemSize(void);
extern void KvSenderShmemInit(void);

/* from _PG_init (the postmaster): one worker per name in kvext.peers */
extern void KvSenderRegisterWorkers(void);

/* copy peer slot's status (slot < KvReplConfig()->npeers) */
extern void KvSenderGetStatus(int slot, KvPeerStatus *out);

#endif							/* KVEXT_REPL_SENDER_H */
