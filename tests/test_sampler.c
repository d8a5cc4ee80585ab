/* Tests for src/engine/sampler: greedy, temperature, top-k, top-p, min-p,
 * penalties, logit bias, seeding, parameter errors, and the stop-string
 * matcher over a text stream. */
#include <math.h>
#include <string.h>

#include "confab/engine.h"
#include "testutil.h"

static const float L8[8] = {1.0f, 3.0f, 2.0f, 0.5f, 2.9f, -1.0f, 0.0f, 2.0f};

static cf_sampler *mk(cf_samp_params p) {
    cf_err e = {0};
    cf_sampler *s = cf_samp_new(&p, 8, &e);
    if (!s) fail_msg("cf_samp_new: %s", e.msg);
    return s;
}

static void samp_greedy_picks_argmax_lowest_id_on_ties(void **st) {
    (void)st;
    cf_sampler *s = mk(cf_samp_params_default());
    assert_int_equal(cf_samp_sample(s, L8), 1);
    float tie[8] = {0, 5, 1, 5, 0, 0, 0, 0};
    assert_int_equal(cf_samp_sample(s, tie), 1);
    cf_samp_free(s);
}

/* Counts draws over many samples. */
static void draw_hist(cf_sampler *s, const float *l, int n, int hist[8]) {
    memset(hist, 0, 8 * sizeof(int));
    for (int i = 0; i < n; i++)
        hist[cf_samp_sample(s, l)]++;
}

static void samp_top_k_keeps_only_k_best(void **st) {
    (void)st;
    cf_samp_params p = cf_samp_params_default();
    p.temp = 5.0f; /* flat, so every survivor shows up */
    p.top_k = 2;
    p.seed = 3;
    cf_sampler *s = mk(p);
    int h[8];
    draw_hist(s, L8, 2000, h);
    assert_true(h[1] > 0 && h[4] > 0);
    assert_int_equal(h[1] + h[4], 2000);
    cf_samp_free(s);
}

static void samp_top_k_selects_k_best_in_large_vocab_with_ties(void **st) {
    (void)st;
    enum { NV = 5000, K = 25 };
    static float l[NV];
    uint64_t x = 12345;
    for (int i = 0; i < NV; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((x >> 40) % 200) / 10.0f; /* many ties */
    }
    /* the K best by (logit desc, id asc), found the slow way */
    int best[K];
    char taken[NV] = {0};
    for (int k = 0; k < K; k++) {
        int b = -1;
        for (int i = 0; i < NV; i++)
            if (!taken[i] && (b < 0 || l[i] > l[b])) b = i;
        taken[b] = 1;
        best[k] = b;
    }
    cf_samp_params p = cf_samp_params_default();
    p.temp = 50.0f;
    p.top_k = K;
    p.seed = 4;
    cf_err e = {0};
    cf_sampler *s = cf_samp_new(&p, NV, &e);
    assert_non_null(s);
    char seen[NV] = {0};
    for (int i = 0; i < 4000; i++) {
        int t = cf_samp_sample(s, l);
        assert_true(taken[t]);
        seen[t] = 1;
    }
    for (int k = 0; k < K; k++)
        assert_true(seen[best[k]]);
    cf_samp_free(s);
}

static void samp_top_p_keeps_smallest_set_reaching_mass(void **st) {
    (void)st;
    /* probabilities at T=1: token 0 ~0.6652, 1 ~0.2447, 2 ~0.0900 (others ~0) */
    float l[8] = {2.0f, 1.0f, 0.0f, -30, -30, -30, -30, -30};
    cf_samp_params p = cf_samp_params_default();
    p.temp = 1.0f;
    p.top_p = 0.8f;
    p.seed = 9;
    cf_sampler *s = mk(p);
    int h[8];
    draw_hist(s, l, 3000, h);
    assert_true(h[0] > 0 && h[1] > 0);
    assert_int_equal(h[0] + h[1], 3000);
    /* ratio follows renormalised probabilities 0.731 / 0.269 */
    assert_true(fabs(h[0] / 3000.0 - 0.731) < 0.04);
    cf_samp_free(s);
}

static void samp_min_p_drops_tokens_below_fraction_of_best(void **st) {
    (void)st;
    float l[8] = {0.0f, 0.0f, -1.0f, -3.0f, -30, -30, -30, -30};
    cf_samp_params p = cf_samp_params_default();
    p.temp = 1.0f;
    p.min_p = 0.3f; /* keeps p >= 0.3 * p0: tokens 0, 1, 2 (e^-1 = 0.37), not 3 (e^-3) */
    p.seed = 1;
    cf_sampler *s = mk(p);
    int h[8];
    draw_hist(s, l, 3000, h);
    assert_true(h[0] > 0 && h[1] > 0 && h[2] > 0);
    assert_int_equal(h[0] + h[1] + h[2], 3000);
    cf_samp_free(s);
}

static void samp_temperature_sharpens_and_flattens(void **st) {
    (void)st;
    float l[8] = {1.0f, 0.0f, -30, -30, -30, -30, -30, -30};
    cf_samp_params p = cf_samp_params_default();
    p.seed = 5;
    int h[8];
    p.temp = 0.25f; /* p0 = 1/(1+e^-4) = 0.982 */
    cf_sampler *s = mk(p);
    draw_hist(s, l, 4000, h);
    assert_true(fabs(h[0] / 4000.0 - 0.982) < 0.01);
    cf_samp_free(s);
    p.temp = 4.0f; /* p0 = 1/(1+e^-0.25) = 0.562 */
    s = mk(p);
    draw_hist(s, l, 4000, h);
    assert_true(fabs(h[0] / 4000.0 - 0.562) < 0.03);
    cf_samp_free(s);
}

static void samp_same_seed_same_sequence_other_seed_differs(void **st) {
    (void)st;
    float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    cf_samp_params p = cf_samp_params_default();
    p.temp = 1.0f;
    p.seed = 42;
    cf_sampler *a = mk(p), *b = mk(p);
    p.seed = 43;
    cf_sampler *c = mk(p);
    int same = 1, diff = 0;
    int first[64];
    for (int i = 0; i < 64; i++) {
        int x = cf_samp_sample(a, l), y = cf_samp_sample(b, l), z = cf_samp_sample(c, l);
        first[i] = x;
        same &= x == y;
        diff += x != z;
    }
    assert_true(same);
    assert_true(diff > 0);
    cf_samp_reset(a); /* reset replays the same draws */
    for (int i = 0; i < 64; i++)
        assert_int_equal(cf_samp_sample(a, l), first[i]);
    cf_samp_free(a);
    cf_samp_free(b);
    cf_samp_free(c);
}

static void samp_repeat_penalty_divides_recent_positive_logits(void **st) {
    (void)st;
    cf_samp_params p = cf_samp_params_default();
    p.repeat_penalty = 2.0f;
    cf_sampler *s = mk(p);
    /* token 1 (3.0) seen: 1.5 < token 4 (2.9) */
    cf_samp_accept(s, 1);
    assert_int_equal(cf_samp_sample(s, L8), 4);
    /* negative logits get multiplied (more negative) */
    float neg[8] = {-1.0f, -0.6f, -5, -5, -5, -5, -5, -5};
    cf_samp_accept(s, 0);
    assert_int_equal(cf_samp_sample(s, neg), 1);
    cf_samp_free(s);
}

static void samp_frequency_and_presence_penalties_subtract(void **st) {
    (void)st;
    cf_samp_params p = cf_samp_params_default();
    p.freq_penalty = 0.06f;
    cf_sampler *s = mk(p);
    cf_samp_accept(s, 1); /* 3.0 - 0.06 = 2.94 > 2.9 */
    assert_int_equal(cf_samp_sample(s, L8), 1);
    cf_samp_accept(s, 1); /* 3.0 - 0.12 = 2.88 < 2.9 */
    assert_int_equal(cf_samp_sample(s, L8), 4);
    cf_samp_free(s);
    p = cf_samp_params_default();
    p.presence_penalty = 0.2f;
    s = mk(p);
    cf_samp_accept(s, 1);
    cf_samp_accept(s, 1); /* once: 2.8 < 2.9 */
    assert_int_equal(cf_samp_sample(s, L8), 4);
    cf_samp_free(s);
}

static void samp_penalty_window_forgets_old_tokens(void **st) {
    (void)st;
    cf_samp_params p = cf_samp_params_default();
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 2;
    cf_sampler *s = mk(p);
    cf_samp_accept(s, 1);
    assert_int_equal(cf_samp_sample(s, L8), 4);
    cf_samp_accept(s, 6);
    cf_samp_accept(s, 7); /* token 1 left the window */
    assert_int_equal(cf_samp_sample(s, L8), 1);
    cf_samp_free(s);
}

static void samp_logit_bias_bans_and_boosts(void **st) {
    (void)st;
    cf_logit_bias b[2] = {{1, -INFINITY}, {5, 10.0f}};
    cf_samp_params p = cf_samp_params_default();
    p.bias = b;
    p.n_bias = 1;
    cf_sampler *s = mk(p);
    assert_int_equal(cf_samp_sample(s, L8), 4);
    cf_samp_free(s);
    p.n_bias = 2;
    s = mk(p);
    assert_int_equal(cf_samp_sample(s, L8), 5);
    cf_samp_free(s);
    /* banned tokens are never drawn at high temperature either */
    p.n_bias = 1;
    p.temp = 100.0f;
    p.seed = 2;
    s = mk(p);
    for (int i = 0; i < 500; i++)
        assert_int_not_equal(cf_samp_sample(s, L8), 1);
    cf_samp_free(s);
}

static void samp_rejects_bad_parameters(void **st) {
    (void)st;
    cf_err e = {0};
    cf_samp_params p = cf_samp_params_default();
    p.min_p = 1.5f;
    assert_null(cf_samp_new(&p, 8, &e));
    assert_int_equal(e.code, CF_EINVAL);
    assert_non_null(strstr(e.msg, "min_p"));
    p = cf_samp_params_default();
    p.repeat_penalty = 0.0f;
    assert_null(cf_samp_new(&p, 8, &e));
    assert_non_null(strstr(e.msg, "repeat_penalty"));
    cf_logit_bias b = {8, 1.0f};
    p = cf_samp_params_default();
    p.bias = &b;
    p.n_bias = 1;
    assert_null(cf_samp_new(&p, 8, &e));
    assert_non_null(strstr(e.msg, "out of range"));
    assert_null(cf_samp_new(NULL, 0, &e));
    assert_int_equal(e.code, CF_EINVAL);
}

/* ---- stop strings ---- */

typedef struct {
    char buf[256];
    size_t n;
    int stopped;
} stop_out;

static void stop_feed_str(cf_stop *s, const char *t, stop_out *o) {
    const char *p;
    size_t n;
    int r = cf_stop_feed(s, t, strlen(t), &p, &n);
    memcpy(o->buf + o->n, p, n);
    o->n += n;
    o->buf[o->n] = 0;
    if (r) o->stopped = 1;
}

static void stop_holds_back_partial_match_then_stops(void **st) {
    (void)st;
    const char *stops[] = {"</s>", "User:"};
    cf_stop *s = cf_stop_new(stops, 2);
    stop_out o = {0};
    stop_feed_str(s, "Hello <", &o);
    assert_string_equal(o.buf, "Hello "); /* "<" may start "</s>" */
    stop_feed_str(s, "/", &o);
    assert_string_equal(o.buf, "Hello ");
    stop_feed_str(s, "s> more", &o);
    assert_string_equal(o.buf, "Hello ");
    assert_true(o.stopped);
    const char *p;
    size_t n;
    assert_int_equal(cf_stop_feed(s, "x", 1, &p, &n), 1);
    assert_int_equal(n, 0);
    cf_stop_free(s);
}

static void stop_releases_text_when_prefix_breaks(void **st) {
    (void)st;
    const char *stops[] = {"User:"};
    cf_stop *s = cf_stop_new(stops, 1);
    stop_out o = {0};
    stop_feed_str(s, "a Use", &o);
    assert_string_equal(o.buf, "a ");
    stop_feed_str(s, "d it", &o);
    assert_string_equal(o.buf, "a Used it");
    assert_false(o.stopped);
    stop_feed_str(s, " Us", &o);
    assert_string_equal(o.buf, "a Used it "); /* "Us" held back */
    const char *p;
    size_t n;
    cf_stop_flush(s, &p, &n);
    assert_int_equal(n, 2);
    assert_memory_equal(p, "Us", 2);
    cf_stop_free(s);
}

static void stop_finds_earliest_of_several_in_one_piece(void **st) {
    (void)st;
    const char *stops[] = {"BB", "A"};
    cf_stop *s = cf_stop_new(stops, 2);
    stop_out o = {0};
    stop_feed_str(s, "xxBByyA", &o);
    assert_string_equal(o.buf, "xx");
    assert_true(o.stopped);
    cf_stop_free(s);
}

static void stop_without_strings_passes_text_through(void **st) {
    (void)st;
    cf_stop *s = cf_stop_new(NULL, 0);
    stop_out o = {0};
    stop_feed_str(s, "anything </s>", &o);
    assert_string_equal(o.buf, "anything </s>");
    assert_false(o.stopped);
    cf_stop_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(samp_greedy_picks_argmax_lowest_id_on_ties),
        cmocka_unit_test(samp_top_k_keeps_only_k_best),
        cmocka_unit_test(samp_top_k_selects_k_best_in_large_vocab_with_ties),
        cmocka_unit_test(samp_top_p_keeps_smallest_set_reaching_mass),
        cmocka_unit_test(samp_min_p_drops_tokens_below_fraction_of_best),
        cmocka_unit_test(samp_temperature_sharpens_and_flattens),
        cmocka_unit_test(samp_same_seed_same_sequence_other_seed_differs),
        cmocka_unit_test(samp_repeat_penalty_divides_recent_positive_logits),
        cmocka_unit_test(samp_frequency_and_presence_penalties_subtract),
        cmocka_unit_test(samp_penalty_window_forgets_old_tokens),
        cmocka_unit_test(samp_logit_bias_bans_and_boosts),
        cmocka_unit_test(samp_rejects_bad_parameters),
        cmocka_unit_test(stop_holds_back_partial_match_then_stops),
        cmocka_unit_test(stop_releases_text_when_prefix_breaks),
        cmocka_unit_test(stop_finds_earliest_of_several_in_one_piece),
        cmocka_unit_test(stop_without_strings_passes_text_through),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
