/* Tests for src/engine/pool: every thread index runs exactly once per job,
 * splits cover a range exactly once, jobs run back to back, bad sizes fail. */
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

static void probe_fn(void *arg, int ith, int nth) {
    pool_probe *p = arg;
    atomic_fetch_add(&p->hits[ith], 1);
    atomic_fetch_add(&p->calls, 1);
    int lo, hi;
    pool_split(p->n, ith, nth, 4, &lo, &hi);
    for (int i = lo; i < hi; i++) p->cover[i]++;
}

static void pool_runs_each_thread_index_once_per_job(void **st) {
    (void)st;
    for (int nth = 1; nth <= 4; nth++) {
        pool *p = pool_new(nth, NULL);
        assert_non_null(p);
        assert_int_equal(pool_size(p), nth);
        int cover[103] = {0};
        pool_probe pr = {.n = 103, .cover = cover};
        for (int rep = 0; rep < 200; rep++) pool_run(p, probe_fn, &pr);
        for (int i = 0; i < nth; i++) assert_int_equal(atomic_load(&pr.hits[i]), 200);
        for (int i = nth; i < 8; i++) assert_int_equal(atomic_load(&pr.hits[i]), 0);
        for (int i = 0; i < 103; i++) assert_int_equal(cover[i], 200);
        assert_int_equal(atomic_load(&pr.calls), 200 * nth);
        pool_free(p);
    }
}

static void pool_split_covers_range_aligned(void **st) {
    (void)st;
    for (int n = 0; n < 300; n += 7) {
        for (int nth = 1; nth <= 5; nth++) {
            int next = 0;
            for (int i = 0; i < nth; i++) {
                int lo, hi;
                pool_split(n, i, nth, 16, &lo, &hi);
                assert_int_equal(lo, next);
                assert_true(hi >= lo);
                if (hi < n) assert_int_equal(hi % 16, 0);
                next = hi;
            }
            assert_int_equal(next, n);
        }
    }
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
        cmocka_unit_test(pool_runs_each_thread_index_once_per_job),
        cmocka_unit_test(pool_split_covers_range_aligned),
        cmocka_unit_test(pool_rejects_bad_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
