/*
 * pool — a fixed set of worker threads that share the chunks of one job.
 *
 * pool_run(p, n, fn, arg) calls fn(arg, c, ith) exactly once for every chunk
 * c in [0, n) and returns when all calls have finished. Which thread runs a
 * chunk is decided at run time (threads claim the next chunk from a
 * counter), but what a chunk computes is fixed by the caller's cut of the
 * work into chunks, so every output element is computed by exactly one call
 * with the same kernel: results never depend on the number of threads or on
 * timing. ith (0 = the caller, < pool_size) names the running thread, for
 * per-thread scratch buffers.
 *
 * Claiming instead of a static split keeps the pool fast on a loaded
 * machine: a worker the OS has not scheduled simply claims nothing, and the
 * others (the caller included) do its share instead of waiting for it.
 *
 * Several threads may call pool_run on one pool: their jobs run one after
 * the other (a mutex), each on all the pool's threads.
 */
#ifndef CONFAB_ENGINE_POOL_H
#define CONFAB_ENGINE_POOL_H

#include "base/err.h"

typedef struct pool pool;
typedef void (*pool_fn)(void *arg, int chunk, int ith);

/* Starts N_THREADS - 1 workers (N_THREADS in [1, 1024]; 1 = everything runs
 * in the caller). NULL with ERR when threads cannot be created. */
pool *pool_new(int n_threads, cf_err *err);
/* Stops and joins the workers. NULL is allowed. */
void pool_free(pool *p);
int pool_size(const pool *p);
/* Runs FN once for each of N_CHUNKS chunks on the pool's threads and waits
 * for all of them. N_CHUNKS < 2^31. */
void pool_run(pool *p, int n_chunks, pool_fn fn, void *arg);

#endif
