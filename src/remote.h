/*-------------------------------------------------------------------------
 *
 * remote.h
 *	  libpq connections to other kvext nodes, cached per backend, each in a
 *	  remote transaction that follows the local one (remote.c).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_REMOTE_H
#define KVEXT_REMOTE_H

#include "libpq-fe.h"

typedef struct KvRemoteConn KvRemoteConn;

/*
 * Called when a connection with an asynchronous query in flight is needed
 * for something else: takes the query's result (KvRemoteFinish).
 */
typedef void (*KvRemoteDrainFn) (void *arg);

extern void KvRemoteInit(void);
extern KvRemoteConn *KvRemoteConnect(Oid serverid, Oid userid, bool any);
extern const char *KvRemoteServerName(const KvRemoteConn *conn);
extern char *KvRemoteNodeName(const KvRemoteConn *conn);
extern char *KvRemoteCachedNodeName(Oid serverid, Oid userid, bool any);
extern PGresult *KvRemoteExec(KvRemoteConn *conn, bool write, const char *sql,
							  int nparams, const char *const *values,
							  const int *lengths, const int *formats,
							  int result_format);
extern bool KvRemoteSend(KvRemoteConn *conn, const char *sql, int nparams,
						 const char *const *values, const int *lengths,
						 const int *formats, int result_format,
						 KvRemoteDrainFn drain, void *arg);
extern void *KvRemotePending(const KvRemoteConn *conn);
extern pgsocket KvRemoteSocket(const KvRemoteConn *conn);
extern bool KvRemoteConsume(KvRemoteConn *conn);
extern PGresult *KvRemoteFinish(KvRemoteConn *conn, void *arg, const char *sql,
								int nparams, const char *const *values,
								const int *lengths, const int *formats,
								int result_format);

#endif							/* KVEXT_REMOTE_H */
