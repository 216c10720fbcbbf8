/*-------------------------------------------------------------------------
 *
 * config.h
 *	  The replication group's configuration (kvext.node_name, kvext.peers,
 *	  kvext.leader), parsed and checked once at startup.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_REPL_CONFIG_H
#define KVEXT_REPL_CONFIG_H

#define KVEXT_MAX_PEERS			8	/* a group has at most 9 nodes */
#define KVEXT_CONNINFO_MAX		1024

typedef struct KvPeer
{
	char		name[NAMEDATALEN];
	char		conninfo[KVEXT_CONNINFO_MAX];	/* as configured */
	char		conninfo_shown[KVEXT_CONNINFO_MAX];	/* password removed */
} KvPeer;

typedef struct KvGroupConfig
{
	bool		checked;		/* KvReplConfigLoad ran */
	bool		valid;			/* ... and found no error */
	char		error[256];		/* if !valid: why (one sentence) */
	char		node_name[NAMEDATALEN];
	char		leader[NAMEDATALEN];
	int			npeers;			/* 0: a group of one */
	KvPeer		peers[KVEXT_MAX_PEERS];
} KvGroupConfig;

extern Size KvReplConfigShmemSize(void);
extern void KvReplConfigShmemInit(void);

/* parse and check the settings; call once per postmaster start */
extern void KvReplConfigLoad(void);

/* the parsed configuration (shared memory; read-only after load) */
extern const KvGroupConfig *KvReplConfig(void);

/* ERROR (F0000) with the reason if the configuration is bad; else no-op */
extern void KvReplCheckConfig(void);

/* number of nodes needed for a majority (npeers + 1 nodes in all) */
extern int	KvReplQuorum(void);

extern bool KvReplIsPeer(const char *name);

#endif							/* KVEXT_REPL_CONFIG_H */
