/* Tests for src/engine/kv: shapes, element types, the transposed V layout,
 * F16 rounding, and bad shapes. */
#include <string.h>

#include "engine/blocks.h"
#include "engine/kv.h"
#include "engine/types.h"
#include "testutil.h"

static void kv_stores_keys_by_position_and_values_transposed(void **st) {
    (void)st;
    kv_cache kv;
    assert_int_equal(kv_init(&kv, 0, 2, 5, 3, NULL), 0);
    assert_int_equal(kv_type(&kv), TT_F32);
    assert_int_equal(kv_bytes(&kv), 2u * 2 * 5 * 3 * 4);
    const float k[3] = {1, 2, 3}, v[3] = {4, 5, 6};
    kv_store(&kv, 1, 2, k, v);
    const float *K = kv.k[1], *V = kv.v[1];
    assert_memory_equal(K + 2 * 3, k, sizeof k); /* row 2 of (n_ctx, dim) */
    for (int d = 0; d < 3; d++)
        assert_true(V[d * 5 + 2] == v[d]); /* column 2 of (dim, n_ctx) */
    const float *K0 = kv.k[0];
    for (int i = 0; i < 15; i++)
        assert_true(K0[i] == 0.0f); /* other layer untouched */
    kv_free(&kv);
}

static void kv_f16_rounds_to_nearest_even(void **st) {
    (void)st;
    kv_cache kv;
    assert_int_equal(kv_init(&kv, 1, 1, 4, 2, NULL), 0);
    assert_int_equal(kv_type(&kv), TT_F16);
    assert_int_equal(kv_bytes(&kv), 2u * 1 * 4 * 2 * 2);
    /* 1 + 2^-11 lies halfway between two halves: rounds to even (1.0) */
    const float k[2] = {1.0f + 0x1p-11f, -2.5f}, v[2] = {65504.0f, 0x1p-24f};
    kv_store(&kv, 0, 3, k, v);
    const cf_fp16 *K = kv.k[0], *V = kv.v[0];
    assert_true(cf_fp16_to_fp32(K[6]) == 1.0f);
    assert_true(cf_fp16_to_fp32(K[7]) == -2.5f);
    assert_true(cf_fp16_to_fp32(V[0 * 4 + 3]) == 65504.0f);
    assert_true(cf_fp16_to_fp32(V[1 * 4 + 3]) == 0x1p-24f); /* smallest subnormal */
    kv_free(&kv);
}

static void kv_rejects_bad_shapes(void **st) {
    (void)st;
    kv_cache kv;
    cf_err e = {0};
    assert_int_equal(kv_init(&kv, 1, 0, 4, 2, &e), CF_EINVAL);
    assert_non_null(strstr(e.msg, "bad shape"));
    assert_int_equal(kv_init(&kv, 1, 1, -1, 2, &e), CF_EINVAL);
    kv_free(&kv); /* freeing a failed cache is safe */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kv_stores_keys_by_position_and_values_transposed),
        cmocka_unit_test(kv_f16_rounds_to_nearest_even),
        cmocka_unit_test(kv_rejects_bad_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
