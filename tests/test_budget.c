/* Tests for src/app/budget: warnings, refusal, dropping oldest turns, and
 * context-window fitting that keeps the system prompt. */
#include <string.h>

#include "app/budget.h"
#include "testutil.h"

/* system(10) u(100) a(100) u(100) a(100) new-u(50) */
static const budget_msg CONV[] = {{true, 10},   {false, 100}, {false, 100},
                                  {false, 100}, {false, 100}, {false, 50}};
enum { NCONV = sizeof CONV / sizeof *CONV };

static void under_budget_is_ok_without_message(void **st) {
    (void)st;
    budget_cfg c = {.max_tokens = 10000, .warn_ratio = 0.8};
    budget_result r;
    budget_check(&c, CONV, NCONV, -1, &r);
    assert_int_equal(r.verdict, BUDGET_OK);
    assert_int_equal(r.used, 460);
    assert_int_equal(r.prompt_tokens, 460);
    assert_string_equal(r.message, "");
}

static void eighty_percent_warns(void **st) {
    (void)st;
    budget_cfg c = {.max_tokens = 500, .warn_ratio = 0.8};
    budget_result r;
    budget_check(&c, CONV, NCONV, -1, &r);
    assert_int_equal(r.verdict, BUDGET_WARN);
    assert_true(r.warn);
    assert_non_null(strstr(r.message, "92% of the conversation's token budget used (460 of 500)"));
}

static void exhausted_budget_refuses_when_configured(void **st) {
    (void)st;
    budget_cfg c = {.max_tokens = 400, .warn_ratio = 0.8, .drop_oldest = false};
    budget_result r;
    budget_check(&c, CONV, NCONV, -1, &r);
    assert_int_equal(r.verdict, BUDGET_REFUSED);
    assert_non_null(strstr(r.message, "token budget exhausted: 460 of 400"));
}

static void exhausted_budget_drops_oldest_and_says_so(void **st) {
    (void)st;
    budget_cfg c = {.max_tokens = 400, .warn_ratio = 0.8, .drop_oldest = true};
    budget_result r;
    budget_check(&c, CONV, NCONV, -1, &r);
    assert_int_equal(r.verdict, BUDGET_TRIMMED);
    assert_int_equal(r.n_dropped, 1); /* 460 -> 360 < 400 */
    assert_int_equal(r.prompt_tokens, 360);
    assert_non_null(strstr(r.message, "dropped the 1 oldest messages"));
    assert_true(budget_keeps(CONV, NCONV, &r, 0)); /* system */
    assert_false(budget_keeps(CONV, NCONV, &r, 1));
    assert_true(budget_keeps(CONV, NCONV, &r, 2));
    assert_true(budget_keeps(CONV, NCONV, &r, 5)); /* the new message */
}

static void recorded_usage_counts_against_budget(void **st) {
    (void)st;
    /* Completions made earlier turns cost more than their text now shows. */
    budget_cfg c = {.max_tokens = 1000, .warn_ratio = 0.8};
    budget_result r;
    budget_check(&c, CONV, NCONV, 900, &r);
    assert_int_equal(r.used, 950);
    assert_int_equal(r.verdict, BUDGET_WARN);
}

static void context_overflow_drops_oldest_but_keeps_system(void **st) {
    (void)st;
    budget_cfg c = {.context_window = 300, .reply_reserve = 40};
    budget_result r;
    budget_check(&c, CONV, NCONV, -1, &r);
    /* room 260: 460 -> 360 -> 260 fits after dropping two. */
    assert_int_equal(r.verdict, BUDGET_TRIMMED);
    assert_int_equal(r.n_dropped, 2);
    assert_int_equal(r.prompt_tokens, 260);
    assert_true(budget_keeps(CONV, NCONV, &r, 0));
    assert_false(budget_keeps(CONV, NCONV, &r, 2));
    assert_true(budget_keeps(CONV, NCONV, &r, 3));
    assert_non_null(
        strstr(r.message, "context window (300 tokens): dropped the 2 oldest messages"));
}

static void message_too_big_for_context_is_refused(void **st) {
    (void)st;
    budget_cfg c = {.context_window = 50, .reply_reserve = 10};
    budget_result r;
    budget_check(&c, CONV, NCONV, -1, &r);
    assert_int_equal(r.verdict, BUDGET_REFUSED);
    assert_int_equal(r.n_dropped, 0);
    assert_non_null(strstr(
        r.message, "does not fit the model's context window (60 tokens needed, 40 available)"));
}

static void budget_and_context_messages_combine(void **st) {
    (void)st;
    budget_cfg c = {.max_tokens = 400,
                    .warn_ratio = 0.8,
                    .drop_oldest = true,
                    .context_window = 300,
                    .reply_reserve = 40};
    budget_result r;
    budget_check(&c, CONV, NCONV, -1, &r);
    assert_int_equal(r.verdict, BUDGET_TRIMMED);
    assert_int_equal(r.n_dropped, 2);
    assert_non_null(strstr(r.message, "token budget reached"));
    assert_non_null(strstr(r.message, "context window"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(under_budget_is_ok_without_message),
        cmocka_unit_test(eighty_percent_warns),
        cmocka_unit_test(exhausted_budget_refuses_when_configured),
        cmocka_unit_test(exhausted_budget_drops_oldest_and_says_so),
        cmocka_unit_test(recorded_usage_counts_against_budget),
        cmocka_unit_test(context_overflow_drops_oldest_but_keeps_system),
        cmocka_unit_test(message_too_big_for_context_is_refused),
        cmocka_unit_test(budget_and_context_messages_combine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
