/*-------------------------------------------------------------------------
 *
 * campaign.h
 *	  A leader whose machine restarted wins a new term before it leads
 *	  again (campaign.c).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_REPL_CAMPAIGN_H
#define KVEXT_REPL_CAMPAIGN_H

/* the wal writer: start the campaign worker if one is due */
extern void KvCampaignEnsure(void);

#endif							/* KVEXT_REPL_CAMPAIGN_H */
