/* Tests for src/engine/pool: every thread index runs exactly once per job,
 * splits cover a range exactly once, jobs run back to back, bad sizes fail. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "engine/pool.h"
#include "testutil.h"

typedef struct {
    _Atomic int hits[8];
    int n;
    int *cover; /* (n,) how many threads wrote each element */
    _Atomic int calls;
} pool_probe;

/* chunk c covers elements [4c, 4c + 4) of cover */
static void probe_fn(void *arg, int chunk, int ith) {
    pool_probe *p = arg;
    atomic_fetch_add(&p->hits[ith], 1);
    atomic_fetch_add(&p->calls, 1);
    for (int i = chunk * 4; i < chunk * 4 + 4 && i < p->n; i++)
        p->cover[i]++;
}

static void pool_runs_every_chunk_exactly_once_per_job(void **st) {
    (void)st;
    for (int nth = 1; nth <= 4; nth++) {
        pool *p = pool_new(nth, NULL);
        assert_non_null(p);
        assert_int_equal(pool_size(p), nth);
        int cover[103] = {0};
        pool_probe pr = {.n = 103, .cover = cover};
        for (int rep = 0; rep < 500; rep++)
            pool_run(p, 26, probe_fn, &pr); /* 26 chunks of 4 */
        for (int i = 0; i < 103; i++)
            assert_int_equal(cover[i], 500);
        assert_int_equal(atomic_load(&pr.calls), 500 * 26);
        int sum = 0;
        for (int i = 0; i < 8; i++) {
            if (i >= nth) assert_int_equal(atomic_load(&pr.hits[i]), 0);
            sum += atomic_load(&pr.hits[i]);
        }
        assert_int_equal(sum, 500 * 26);
        pool_run(p, 0, probe_fn, &pr); /* no chunks: nothing runs */
        assert_int_equal(atomic_load(&pr.calls), 500 * 26);
        pool_free(p);
    }
}

typedef struct {
    pool *p;
    int cover[103];
    pool_probe pr;
} pool_caller;

static void *pool_caller_main(void *arg) {
    pool_caller *c = arg;
    c->pr.n = 103;
    c->pr.cover = c->cover;
    for (int rep = 0; rep < 300; rep++)
        pool_run(c->p, 26, probe_fn, &c->pr);
    return NULL;
}

static void pool_jobs_from_two_callers_do_not_mix(void **st) {
    (void)st;
    pool *p = pool_new(3, NULL);
    pool_caller a = {.p = p}, b = {.p = p};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, pool_caller_main, &a);
    pthread_create(&tb, NULL, pool_caller_main, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    for (int i = 0; i < 103; i++) {
        assert_int_equal(a.cover[i], 300);
        assert_int_equal(b.cover[i], 300);
    }
    pool_free(p);
}

static void pool_rejects_bad_thread_count(void **st) {
    (void)st;
    cf_err e = {0};
    assert_null(pool_new(0, &e));
    assert_int_equal(e.code, CF_EINVAL);
    assert_non_null(strstr(e.msg, "thread count"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pool_runs_every_chunk_exactly_once_per_job),
        cmocka_unit_test(pool_jobs_from_two_callers_do_not_mix),
        cmocka_unit_test(pool_rejects_bad_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
