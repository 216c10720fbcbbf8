/*-------------------------------------------------------------------------
 *
 * config.c
 *	  The replication group's configuration: kvext.node_name, kvext.peers
 *	  and kvext.leader, parsed and checked once per postmaster start.
 *
 * kvext.peers = 'name:conninfo; name:conninfo' lists every other node of
 * the group: entries are separated by ';', the name is what comes before
 * the first ':' of an entry, the rest is a libpq conninfo (checked with
 * PQconninfoParse, so a typo is found at startup, not at the first
 * connection).  Spaces around names and conninfos are ignored, and so are
 * empty entries (a trailing ';').
 *
 * A bad configuration does not stop the server: the group is marked
 * misconfigured, the reason (one sentence) is logged once, and every kv
 * function fails with it (SQLSTATE F0000, KvReplCheckConfig), so nothing
 * is served under a wrong configuration and the operator finds out from
 * any session.  The checks: a node name is required once peers are set;
 * names are 1 to NAMEDATALEN - 1 letters, digits, '_' or '-'; the node's
 * own name is not among its peers; no name appears twice; every conninfo
 * parses and fits; there are at most KVEXT_MAX_PEERS peers; kvext.leader
 * names a member of the group (this node or a peer).  Without peers the
 * node is a group of one: kvext.leader is not looked at.
 *
 * Passwords: conninfo_shown is the conninfo rebuilt from its parsed
 * options without "password"; status functions and log lines print only
 * that.
 *
 * When: KvReplConfigLoad runs in the postmaster from the shared memory
 * startup hook (at start and after every crash-restart, which re-creates
 * shared memory), before any backend or worker is forked, so every
 * process finds the result in shared memory and nothing changes it later:
 * readers take no lock.  The settings are PGC_POSTMASTER, so they cannot
 * change under a running server.  The same hook tells log/visible.c
 * whether this node is in a group and its initial role; recovery then
 * corrects the role by the term it finds in the control file
 * (KvVisibleRecoveredTerm).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq-fe.h"
#include "storage/shmem.h"

#include "kvext.h"
#include "log/visible.h"
#include "replication/config.h"

static KvGroupConfig *config = NULL;

Size
KvReplConfigShmemSize(void)
{
	return sizeof(KvGroupConfig);
}

/*
 * KvReplConfigShmemInit
 *		Create or attach the shared copy; caller holds AddinShmemInitLock.
 */
void
KvReplConfigShmemInit(void)
{
	bool		found;

	config = ShmemInitStruct("kvext replication config", sizeof(KvGroupConfig), &found);
	if (!found)
		memset(config, 0, sizeof(KvGroupConfig));
}

/* record the first error found (later ones are not reported) */
static void
set_error(KvGroupConfig *c, const char *fmt,...) pg_attribute_printf(2, 3);

static void
set_error(KvGroupConfig *c, const char *fmt,...)
{
	va_list		ap;

	if (!c->valid)
		return;
	c->valid = false;
	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
}

/* is name a valid node name?  (1..NAMEDATALEN-1 of [A-Za-z0-9_-]) */
static bool
valid_name(const char *name, size_t len)
{
	if (len == 0 || len >= NAMEDATALEN)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char		ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* trim spaces at both ends of [*s, *s + *len) */
static void
trim(const char **s, size_t *len)
{
	while (*len > 0 && isspace((unsigned char) (*s)[0]))
	{
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && isspace((unsigned char) (*s)[*len - 1]))
		(*len)--;
}

/*
 * append_shown
 *		Append "keyword=value" to out (KVEXT_CONNINFO_MAX bytes), quoting
 *		the value as libpq's conninfo syntax wants when it is empty or holds
 *		spaces, quotes or backslashes.
 */
static void
append_shown(char *out, const char *keyword, const char *value)
{
	size_t		n = strlen(out);
	bool		quote = (value[0] == '\0');

	for (const char *p = value; *p && !quote; p++)
		if (isspace((unsigned char) *p) || *p == '\'' || *p == '\\')
			quote = true;
	n += snprintf(out + n, KVEXT_CONNINFO_MAX - n, "%s%s=%s", n > 0 ? " " : "",
				  keyword, quote ? "'" : "");
	for (const char *p = value; *p && n + 3 < KVEXT_CONNINFO_MAX; p++)
	{
		if (*p == '\'' || *p == '\\')
			out[n++] = '\\';
		out[n++] = *p;
	}
	if (quote && n + 1 < KVEXT_CONNINFO_MAX)
		out[n++] = '\'';
	out[Min(n, KVEXT_CONNINFO_MAX - 1)] = '\0';
}

/*
 * parse_peer
 *		One entry of kvext.peers, [entry, entry + len), already trimmed and
 *		not empty: check it and add it to c (or set c's error).
 */
static void
parse_peer(KvGroupConfig *c, const char *entry, size_t len)
{
	const char *colon = memchr(entry, ':', len);
	const char *name = entry;
	size_t		namelen;
	const char *conninfo;
	size_t		conninfolen;
	KvPeer	   *peer;
	PQconninfoOption *opts;
	char	   *errmsg = NULL;

	if (colon == NULL)
	{
		set_error(c, "kvext.peers entry \"%.*s\" has no \"name:\" before its connection string",
				  (int) Min(len, 64), entry);
		return;
	}
	namelen = colon - entry;
	trim(&name, &namelen);
	conninfo = colon + 1;
	conninfolen = len - (conninfo - entry);
	trim(&conninfo, &conninfolen);

	if (!valid_name(name, namelen))
	{
		set_error(c, "kvext.peers names a node \"%.*s\", but a node name must be 1 to %d letters, digits, \"_\" or \"-\"",
				  (int) Min(namelen, 64), name, NAMEDATALEN - 1);
		return;
	}
	if (strlen(c->node_name) == namelen && strncmp(c->node_name, name, namelen) == 0)
	{
		set_error(c, "kvext.peers lists this node's own name \"%s\"; list only the other nodes",
				  c->node_name);
		return;
	}
	for (int i = 0; i < c->npeers; i++)
		if (strlen(c->peers[i].name) == namelen &&
			strncmp(c->peers[i].name, name, namelen) == 0)
		{
			set_error(c, "kvext.peers names node \"%s\" twice", c->peers[i].name);
			return;
		}
	if (c->npeers >= KVEXT_MAX_PEERS)
	{
		set_error(c, "kvext.peers lists more than %d peers", KVEXT_MAX_PEERS);
		return;
	}
	if (conninfolen == 0)
	{
		set_error(c, "kvext.peers gives no connection string for node \"%.*s\"",
				  (int) namelen, name);
		return;
	}
	if (conninfolen >= KVEXT_CONNINFO_MAX)
	{
		set_error(c, "kvext.peers gives node \"%.*s\" a connection string longer than %d bytes",
				  (int) namelen, name, KVEXT_CONNINFO_MAX - 1);
		return;
	}

	peer = &c->peers[c->npeers];
	memset(peer, 0, sizeof(KvPeer));
	memcpy(peer->name, name, namelen);
	memcpy(peer->conninfo, conninfo, conninfolen);

	opts = PQconninfoParse(peer->conninfo, &errmsg);
	if (opts == NULL)
	{
		char	   *nl;

		/* libpq's message ends with a newline; keep its first line */
		if (errmsg && (nl = strchr(errmsg, '\n')) != NULL)
			*nl = '\0';
		set_error(c, "kvext.peers gives node \"%s\" a connection string that does not parse: %s",
				  peer->name, errmsg ? errmsg : "out of memory");
		if (errmsg)
			PQfreemem(errmsg);
		return;
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && strcmp(o->keyword, "password") != 0)
			append_shown(peer->conninfo_shown, o->keyword, o->val);
	PQconninfoFree(opts);
	c->npeers++;
}

/*
 * parse_config
 *		Fill c from the three settings.
 */
static void
parse_config(KvGroupConfig *c)
{
	const char *peers = kvext_peers ? kvext_peers : "";
	const char *node = kvext_node_name ? kvext_node_name : "";
	const char *leader = kvext_leader ? kvext_leader : "";
	const char *p;
	bool		leader_found;

	memset(c, 0, sizeof(KvGroupConfig));
	c->checked = true;
	c->valid = true;
	strlcpy(c->node_name, node, NAMEDATALEN);
	strlcpy(c->leader, leader, NAMEDATALEN);

	/* no peers at all: a group of one, as a single server */
	if (strspn(peers, " \t\n\r;") == strlen(peers))
		return;

	if (node[0] == '\0')
	{
		set_error(c, "kvext.peers is set, but kvext.node_name is empty");
		return;
	}
	if (!valid_name(node, strlen(node)))
	{
		set_error(c, "kvext.node_name \"%s\" is not a valid node name (1 to %d letters, digits, \"_\" or \"-\")",
				  node, NAMEDATALEN - 1);
		return;
	}

	for (p = peers; *p && c->valid;)
	{
		const char *semi = strchr(p, ';');
		size_t		len = semi ? (size_t) (semi - p) : strlen(p);
		const char *entry = p;

		trim(&entry, &len);
		if (len > 0)
			parse_peer(c, entry, len);
		p = semi ? semi + 1 : p + strlen(p);
	}
	if (!c->valid)
		return;

	if (leader[0] == '\0')
	{
		set_error(c, "kvext.leader is empty; it must name the group's initial leader");
		return;
	}
	leader_found = (strcmp(leader, c->node_name) == 0);
	for (int i = 0; i < c->npeers && !leader_found; i++)
		leader_found = (strcmp(leader, c->peers[i].name) == 0);
	if (!leader_found)
		set_error(c, "kvext.leader \"%s\" is neither this node nor one of its peers", leader);
}

/*
 * KvReplConfigLoad
 *		Parse and check the settings into shared memory, log what is wrong
 *		(once: this runs once per shared memory lifetime, in the
 *		postmaster), and tell log/visible.c whether this node is in a group
 *		and whether it starts as the leader.  Never raises an error.
 */
void
KvReplConfigLoad(void)
{
	bool		group;
	bool		leads;

	parse_config(config);
	if (!config->valid)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("invalid kvext replication configuration: %s", config->error),
				 errdetail("Every kv function fails until the configuration is fixed."),
				 errhint("Fix kvext.node_name, kvext.peers and kvext.leader in postgresql.conf and restart the server.")));
	else if (config->npeers > 0)
		ereport(LOG,
				(errmsg("kvext replication group: node \"%s\", %d peers, initial leader \"%s\"",
						config->node_name, config->npeers, config->leader)));

	/*
	 * A misconfigured node with peers set is treated as a follower: its
	 * recovery then writes nothing to a log that may be part of a group.
	 */
	group = (config->npeers > 0) ||
		(!config->valid && kvext_peers != NULL &&
		 strspn(kvext_peers, " \t\n\r;") != strlen(kvext_peers));
	leads = !group ||
		(config->valid && strcmp(config->node_name, config->leader) == 0);
	KvVisibleSetGroup(group);
	KvVisibleSetRole(leads, 0, group && config->valid ? config->leader : NULL);
}

/*
 * KvReplConfig
 *		The parsed configuration, in shared memory; read-only after
 *		KvReplConfigLoad (no lock needed).
 */
const KvGroupConfig *
KvReplConfig(void)
{
	return config;
}

/*
 * KvReplCheckConfig
 *		Raise ERROR (F0000) with the reason if the group is misconfigured.
 */
void
KvReplCheckConfig(void)
{
	if (config == NULL || !config->checked || config->valid)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg("invalid kvext replication configuration: %s", config->error),
			 errhint("Fix kvext.node_name, kvext.peers and kvext.leader in postgresql.conf and restart the server.")));
}

/*
 * KvReplQuorum
 *		Nodes needed for a majority of the group (this node included).
 */
int
KvReplQuorum(void)
{
	return (config->npeers + 1) / 2 + 1;
}

/* is name one of this node's peers? */
bool
KvReplIsPeer(const char *name)
{
	const KvGroupConfig *c = KvReplConfig();

	for (int i = 0; i < c->npeers; i++)
		if (strcmp(c->peers[i].name, name) == 0)
			return true;
	return false;
}
