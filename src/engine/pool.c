/*
 * pool — worker threads for the kernels (see pool.h for the contract).
 *
 * A forward pass dispatches a few hundred short jobs per token, so the
 * hand-off must be cheap and must not stall when the machine is busy.
 *
 * Job state is one 64-bit atomic: (job generation << 32) | next chunk.
 * A thread claims a chunk with a compare-and-swap that only succeeds while
 * the generation is the one it joined, so a worker that wakes up late can
 * never claim a chunk of a later job. A successful claim also proves the
 * job is still running, so the (fn, arg) it reads after the claim are that
 * job's: the caller does not return (and cannot publish another job) until
 * every chunk is done.
 *
 * Workers spin briefly waiting for the next job (they usually follow within
 * microseconds), then sleep on a condition variable; the caller only takes
 * the mutex to wake them when some are asleep. The caller works on chunks
 * itself, then spins (then yields) until the chunks others claimed are done.
 */
#include "engine/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define POOL_SPIN 4000

typedef struct {
    pool *p;
    int ith;
    pthread_t th;
} pool_worker;

struct pool {
    int n;          /* threads including the caller */
    pool_worker *w; /* (n - 1,) */
    _Atomic(pool_fn) fn;
    _Atomic(void *) arg;
    _Atomic int n_chunks;
    _Atomic uint64_t state; /* (generation << 32) | next chunk */
    _Atomic int done;       /* chunks finished in the current job */
    _Atomic int stop;
    _Atomic int n_sleeping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t run_mu; /* one job at a time when several callers share the pool */
};

static inline void pool_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claims and runs chunks of generation GEN until none are left. */
static void pool_work(pool *p, uint32_t gen, int ith) {
    for (;;) {
        uint64_t s = atomic_load(&p->state);
        if ((uint32_t)(s >> 32) != gen) return;
        const int n = atomic_load_explicit(&p->n_chunks, memory_order_relaxed);
        const uint32_t c = (uint32_t)s;
        if ((int)c >= n) return;
        if (!atomic_compare_exchange_weak(&p->state, &s, s + 1)) continue;
        pool_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        fn(atomic_load_explicit(&p->arg, memory_order_relaxed), (int)c, ith);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void *pool_main(void *argp) {
    pool_worker *w = argp;
    pool *p = w->p;
    uint32_t seen = 0;
    for (;;) {
        int spins = 0;
        uint32_t gen;
        while ((gen = (uint32_t)(atomic_load(&p->state) >> 32)) == seen && !atomic_load(&p->stop)) {
            if (++spins < POOL_SPIN) {
                pool_pause();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->n_sleeping, 1);
            while ((uint32_t)(atomic_load(&p->state) >> 32) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->n_sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop)) break;
        seen = gen;
        pool_work(p, gen, w->ith);
    }
    return NULL;
}

pool *pool_new(int n_threads, cf_err *err) {
    if (n_threads < 1 || n_threads > 1024) {
        cf_seterr(err, CF_EINVAL, "thread count %d must be in [1, 1024]", n_threads);
        return NULL;
    }
    pool *p = calloc(1, sizeof *p);
    if (!p) {
        cf_seterr(err, CF_ENOMEM, "pool: out of memory");
        return NULL;
    }
    p->n = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_mutex_init(&p->run_mu, NULL);
    p->w = calloc((size_t)n_threads, sizeof *p->w);
    if (!p->w) {
        pool_free(p);
        cf_seterr(err, CF_ENOMEM, "pool: out of memory");
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        pool_worker *w = &p->w[i - 1];
        w->p = p;
        w->ith = i;
        if (pthread_create(&w->th, NULL, pool_main, w) != 0) {
            pool_free(p); /* joins the p->n - 1 started so far */
            cf_seterr(err, CF_ENOMEM, "pool: cannot start thread %d of %d", i, n_threads);
            return NULL;
        }
        p->n = i + 1;
    }
    return p;
}

void pool_free(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->w[i - 1].th, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_mu);
    free(p->w);
    free(p);
}

int pool_size(const pool *p) { return p->n; }

void pool_run(pool *p, int n_chunks, pool_fn fn, void *arg) {
    if (n_chunks <= 0) return;
    if (p->n == 1 || n_chunks == 1) {
        for (int c = 0; c < n_chunks; c++)
            fn(arg, c, 0);
        return;
    }
    pthread_mutex_lock(&p->run_mu);
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&p->n_chunks, n_chunks, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    uint32_t gen = (uint32_t)(atomic_load(&p->state) >> 32) + 1;
    atomic_store(&p->state, (uint64_t)gen << 32); /* seq_cst: publishes the fields above */
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    pool_work(p, gen, 0);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_chunks) {
        if (++spins < POOL_SPIN)
            pool_pause();
        else
            sched_yield();
    }
    pthread_mutex_unlock(&p->run_mu);
}
