/*
 * pool — a fixed set of worker threads that run one function together.
 *
 * pool_run(p, fn, arg) calls fn(arg, ith, nth) once for every ith in
 * [0, nth) — the caller's own thread runs ith 0 — and returns when all have
 * finished. Work is split by the callee from (ith, nth) alone, so which
 * thread computes which output element is a pure function of the thread
 * count and every element is computed by exactly one thread: results never
 * depend on timing.
 *
 * A pool is used by one caller thread at a time.
 */
#ifndef CONFAB_ENGINE_POOL_H
#define CONFAB_ENGINE_POOL_H

#include "base/err.h"

typedef struct pool pool;
typedef void (*pool_fn)(void *arg, int ith, int nth);

/* Starts N_THREADS - 1 workers (N_THREADS >= 1; 1 = everything runs in the
 * caller). NULL with ERR when threads cannot be created. Free with pool_free. */
pool *pool_new(int n_threads, cf_err *err);
/* Stops and joins the workers. NULL is allowed. */
void pool_free(pool *p);
int pool_size(const pool *p);
/* Runs FN on every thread of the pool and waits for all of them. */
void pool_run(pool *p, pool_fn fn, void *arg);
/* Splits [0, N) into NTH nearly equal ranges aligned to ALIGN (>= 1) and
 * returns range ITH in *LO, *HI (possibly empty). */
void pool_split(int n, int ith, int nth, int align, int *lo, int *hi);

#endif
