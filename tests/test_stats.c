/* Tests for store_usage (token/cost totals) and `confab stats`. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "testutil.h"

static int64_t reply(store *st, int64_t sid, const char *model, const char *variant, int64_t pt,
                     int64_t ct, double cost, bool cached, int64_t when) {
    store_message m = {.session_id = sid,
                       .role = "assistant",
                       .content = "x",
                       .model = (char *)model,
                       .variant = (char *)variant,
                       .prompt_tokens = pt,
                       .completion_tokens = ct,
                       .cost = cost,
                       .cached = cached,
                       .created_at = when};
    int64_t id;
    assert_int_equal(store_msg_append(st, &m, &id, NULL), 0);
    return id;
}

static char *mkdb(char **dir, store **st) {
    *dir = tu_tmpdir();
    char *path = malloc(strlen(*dir) + 16);
    sprintf(path, "%s/c.db", *dir);
    *st = store_open(path, STORE_OPEN_CREATE, NULL);
    assert_non_null(*st);
    store_session a = {.title = "alpha", .owner = "alice"}, b = {.title = "beta", .owner = "bob"};
    int64_t sa, sb;
    store_session_create(*st, &a, &sa, NULL);
    store_session_create(*st, &b, &sb, NULL);
    int64_t day1 = 1735689600000LL; /* 2025-01-01 */
    int64_t day2 = day1 + 86400000LL;
    store_message u = {.session_id = sa, .role = "user", .content = "q", .prompt_tokens = 999};
    store_msg_append(*st, &u, NULL, NULL); /* user rows never count */
    reply(*st, sa, "gpt", "gpt", 100, 10, 0.5, false, day1);
    reply(*st, sa, "gpt", "gpt", 200, 20, 1.0, false, day2);
    reply(*st, sb, "local", "local", 50, 5, 0, true, day2);
    return path;
}

static void totals_group_by_model_day_and_owner(void **st_) {
    (void)st_;
    char *dir;
    store *st;
    char *path = mkdb(&dir, &st);
    store_usage_row *r;
    size_t n;
    assert_int_equal(store_usage(st, STORE_USAGE_TOTAL, 0, NULL, &r, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].replies, 3);
    assert_int_equal(r[0].prompt_tokens, 350);
    assert_int_equal(r[0].completion_tokens, 35);
    assert_int_equal(r[0].cached, 1);
    assert_true(r[0].cost > 1.49 && r[0].cost < 1.51);
    store_usage_free(r, n);
    assert_int_equal(store_usage(st, STORE_USAGE_BY_MODEL, 0, NULL, &r, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(r[0].key, "gpt"); /* most expensive first */
    assert_int_equal(r[0].replies, 2);
    assert_string_equal(r[1].key, "local");
    store_usage_free(r, n);
    assert_int_equal(store_usage(st, STORE_USAGE_BY_DAY, 0, NULL, &r, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(r[0].key, "2025-01-02");
    assert_int_equal(r[0].replies, 2);
    store_usage_free(r, n);
    assert_int_equal(
        store_usage(st, STORE_USAGE_TOTAL, 1735689600000LL + 86400000LL, NULL, &r, &n, NULL), 0);
    assert_int_equal(r[0].replies, 2);
    store_usage_free(r, n);
    assert_int_equal(store_usage(st, STORE_USAGE_BY_MODEL, 0, "bob", &r, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].key, "local");
    store_usage_free(r, n);
    cf_err err = {0};
    assert_int_equal(store_usage(st, (store_usage_by)42, 0, NULL, &r, &n, &err), CF_EINVAL);
    store_close(st);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

static void cli_prints_totals_and_ab_results(void **st_) {
    (void)st_;
    char *dir;
    store *st;
    char *path = mkdb(&dir, &st);
    store_vote v = {.session_id = 1,
                    .message_a = 2,
                    .message_b = 3,
                    .model_a = "gpt",
                    .model_b = "local",
                    .winner = "a"};
    assert_int_equal(store_vote_add(st, &v, NULL, NULL), 0);
    store_close(st);
    char cmd[4200], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s stats --db %s --json", tu_confab_bin(), path);
    assert_int_equal(tu_run(cmd, &out), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "total"), "replies")),
                     3);
    assert_int_equal(json_array_size(json_object_get(j, "model")), 2);
    json_decref(j);
    free(out);
    snprintf(cmd, sizeof cmd, "%s stats ab --db %s", tu_confab_bin(), path);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "100.0%"));
    assert_non_null(strstr(out, "gpt"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s stats --by week --db %s 2>&1", tu_confab_bin(), path);
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "--by takes model, day or session"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s stats --db %s/missing.db 2>&1", tu_confab_bin(), dir);
    assert_int_equal(tu_run(cmd, &out), 1);
    free(out);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(totals_group_by_model_day_and_owner),
        cmocka_unit_test(cli_prints_totals_and_ab_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
