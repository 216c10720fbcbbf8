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

extern KvRemoteConn *KvRemoteConnect(Oid serverid, Oid userid, bool any);
extern const char *KvRemoteServerName(const KvRemoteConn *conn);
extern char *KvRemoteNodeName(const KvRemoteConn *conn);
extern char *KvRemoteCachedNodeName(Oid serverid, Oid userid, bool any);
extern PGresult *KvRemoteExec(KvRemoteConn *conn, bool write, const char *sql,
							  int nparams, const char *const *values,
							  const int *lengths, const int *formats,
							  int result_format);

#endif							/* KVEXT_REMOTE_H */
