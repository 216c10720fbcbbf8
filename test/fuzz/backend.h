/*-------------------------------------------------------------------------
 *
 * backend.h
 *	  The pretend backend the fuzzing harnesses run kvext's decoders in
 *	  (backend.c), and what the harnesses share (common.c).
 *
 * Copyright (c) 2026, kvext authors
 *
 *-------------------------------------------------------------------------
 */
#ifndef KVEXT_FUZZ_BACKEND_H
#define KVEXT_FUZZ_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* backend.c */
extern char FuzzLastError[1024];
extern uint32 FuzzStoreSum;
extern void FuzzResetMemory(void);
extern void FuzzResetFiles(void);

/* common.c */
extern void FuzzEnterWorkDir(int *argc, char ***argv);
extern void FuzzWriteFile(const char *path, const uint8_t *data, size_t len);
extern void FuzzFixRecordCrcs(uint8_t *buf, size_t len, uint64_t pos);
extern void FuzzReadLog(const uint8_t *data, size_t len, size_t split, int64_t gap);

/* each harness */
extern int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern int	LLVMFuzzerInitialize(int *argc, char ***argv);

#endif							/* KVEXT_FUZZ_BACKEND_H */
