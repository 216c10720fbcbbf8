/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  Background worker registration.
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_WORKER_H
#define KVEXT_WORKER_H

extern void KvRegisterWorkers(void);
extern void KvWorkerAttach(void);

#endif							/* KVEXT_WORKER_H */
