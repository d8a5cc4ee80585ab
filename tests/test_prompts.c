/* Tests for src/app/prompts: listing and filling {placeholders}. */
#include <stdlib.h>
#include <string.h>

#include "app/prompts.h"
#include "testutil.h"

static void lists_distinct_placeholders_in_order(void **st) {
    (void)st;
    char **names;
    size_t n;
    prompt_placeholders("Explain this concept like I'm a {level} developer:\n{concept} ({level})",
                        &names, &n);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "level");
    assert_string_equal(names[1], "concept");
    prompt_names_free(names, n);
    prompt_placeholders("json {\"a\": 1} and {{literal}} and { spaced } and {}", &names, &n);
    assert_int_equal(n, 0);
    prompt_names_free(names, n);
}

static void fills_every_placeholder(void **st) {
    (void)st;
    const char *keys[] = {"code"}, *vals[] = {"int main() { return 0; }"};
    char *s =
        prompt_fill("Review this code for bugs and improvements:\n{code}", keys, vals, 1, NULL);
    assert_string_equal(s, "Review this code for bugs and improvements:\nint main() { return 0; }");
    free(s);
    const char *k2[] = {"concept", "level"}, *v2[] = {"monads", "junior"};
    s = prompt_fill("Like I'm a {level} dev: {concept}. {{level}} stays, {level} again", k2, v2, 2,
                    NULL);
    assert_string_equal(s, "Like I'm a junior dev: monads. {level} stays, junior again");
    free(s);
}

static void missing_value_is_an_error(void **st) {
    (void)st;
    cf_err err = {0};
    const char *keys[] = {"level"}, *vals[] = {"senior"};
    assert_null(prompt_fill("{level} {concept}", keys, vals, 1, &err));
    assert_string_equal(err.msg, "missing a value for {concept}");
}

static void unknown_key_is_an_error_naming_the_real_ones(void **st) {
    (void)st;
    cf_err err = {0};
    const char *keys[] = {"txt"}, *vals[] = {"x"};
    assert_null(prompt_fill("Summarize:\n{text}", keys, vals, 1, &err));
    assert_string_equal(err.msg, "the template has no placeholder {txt} (it has: {text})");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lists_distinct_placeholders_in_order),
        cmocka_unit_test(fills_every_placeholder),
        cmocka_unit_test(missing_value_is_an_error),
        cmocka_unit_test(unknown_key_is_an_error_naming_the_real_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
