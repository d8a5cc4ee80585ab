/*
 * pool — worker threads for the kernels (see pool.h for the contract).
 *
 * A forward pass dispatches a few hundred short jobs per token, so the
 * hand-off must be cheap: the caller publishes (fn, arg), bumps an atomic
 * generation counter and wakes sleepers; workers spin briefly on the
 * counter (the next job usually follows within microseconds) before they
 * sleep on a condition variable, so an idle pool costs no CPU. Completion is
 * an atomic counter the caller spins on (then yields), since the caller has
 * just done its own share and the others finish at about the same time.
 *
 * Trade-off: spinning wastes a little CPU between jobs on a loaded machine;
 * the bound (POOL_SPIN) keeps that to tens of microseconds.
 */
#include "engine/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#define POOL_SPIN 20000

typedef struct {
    pool *p;
    int ith;
    pthread_t th;
} pool_worker;

struct pool {
    int n;                    /* threads including the caller */
    pool_worker *w;           /* (n - 1,) */
    pool_fn fn;
    void *arg;
    _Atomic unsigned long gen; /* bumped once per job */
    _Atomic int n_done;       /* workers finished with the current job */
    _Atomic int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static inline void pool_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *pool_main(void *argp) {
    pool_worker *w = argp;
    pool *p = w->p;
    unsigned long seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen &&
               !atomic_load(&p->stop) && spins < POOL_SPIN) {
            pool_pause();
            spins++;
        }
        if (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) break;
        seen = atomic_load_explicit(&p->gen, memory_order_acquire);
        p->fn(p->arg, w->ith, p->n);
        atomic_fetch_add_explicit(&p->n_done, 1, memory_order_release);
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
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
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
            p->n = i; /* only join the ones that started */
            pool_free(p);
            cf_seterr(err, CF_ENOMEM, "pool: cannot start thread %d of %d", i, n_threads);
            return NULL;
        }
    }
    return p;
}

void pool_free(pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->w[i - 1].th, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->w);
    free(p);
}

int pool_size(const pool *p) { return p->n; }

void pool_run(pool *p, pool_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->n_done, memory_order_acquire) < p->n - 1) {
        if (++spins < POOL_SPIN) pool_pause();
        else sched_yield();
    }
}

void pool_split(int n, int ith, int nth, int align, int *lo, int *hi) {
    if (align < 1) align = 1;
    int blocks = (n + align - 1) / align;
    int per = blocks / nth, extra = blocks % nth;
    int b0 = ith * per + (ith < extra ? ith : extra);
    int b1 = b0 + per + (ith < extra ? 1 : 0);
    *lo = b0 * align < n ? b0 * align : n;
    *hi = b1 * align < n ? b1 * align : n;
}
