/* Tests for src/engine/chat_template: every rendering in the shared
 * templates/expected.jsonl (real model templates rendered by Python Jinja2
 * with Hugging Face's settings), the built-in fallback templates, and the
 * `confab template render` command. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sb.h"
#include "engine/chat_template.h"
#include "testutil.h"

#define NOW_2024_07_26_NOON 1721995200 /* what the expected renderings used */

/* Records that do not match yet, as "template|case". Checked both ways: a
 * listed record that now passes fails the test too, so the list only
 * shrinks. */
static const char *const known_failures[] = {
    NULL,
};

static bool is_known_failure(const char *tmpl, const char *cas) {
    char key[512];
    snprintf(key, sizeof key, "%s|%s", tmpl, cas);
    for (const char *const *k = known_failures; *k; k++)
        if (!strcmp(*k, key)) return true;
    return false;
}

static size_t first_diff(const char *a, size_t na, const char *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* Renders one record; returns true when it matches, printing why not. */
static bool check_record(json_t *rec, const char *dir) {
    const char *tname = json_string_value(json_object_get(rec, "template"));
    const char *cas = json_string_value(json_object_get(rec, "case"));
    char path[2200];
    snprintf(path, sizeof path, "%s/%s", dir, tname);
    size_t len;
    char *src = tu_read_file(path, &len);
    if (!src) {
        print_message("# %s|%s: cannot read %s\n", tname, cas, path);
        return false;
    }
    sb_t out = {0};
    cf_err err = {0};
    int rc = tmpl_render_at(src, json_object_get(rec, "messages"),
                            json_is_true(json_object_get(rec, "add_generation_prompt")),
                            json_string_value(json_object_get(rec, "bos_token")),
                            json_string_value(json_object_get(rec, "eos_token")), NULL, NOW_2024_07_26_NOON, &out,
                            &err);
    free(src);
    bool ok;
    json_t *exp = json_object_get(rec, "expected");
    if (exp) {
        const char *e = json_string_value(exp);
        size_t en = json_string_length(exp);
        if (rc) {
            print_message("# %s|%s: render failed: %s\n", tname, cas, err.msg);
            ok = false;
        } else if (out.len != en || memcmp(out.data ? out.data : "", e, en)) {
            size_t d = first_diff(sb_str(&out), out.len, e, en);
            size_t from = d > 30 ? d - 30 : 0;
            print_message("# %s|%s: differs at byte %zu (got %zu bytes, want %zu)\n#   got:  %.*s\n#   want: %.*s\n",
                          tname, cas, d, out.len, en, (int)(out.len - from < 80 ? out.len - from : 80),
                          sb_str(&out) + from, (int)(en - from < 80 ? en - from : 80), e + from);
            ok = false;
        } else ok = true;
    } else {
        /* The record's error is "Kind: message"; our message must carry it. */
        const char *want = json_string_value(json_object_get(rec, "error"));
        const char *colon = strstr(want, ": ");
        const char *msg = colon ? colon + 2 : want;
        if (rc == 0) {
            print_message("# %s|%s: rendered but should raise \"%s\"\n", tname, cas, want);
            ok = false;
        } else if (!strstr(err.msg, msg)) {
            print_message("# %s|%s: raised \"%s\", want \"%s\"\n", tname, cas, err.msg, msg);
            ok = false;
        } else ok = true;
    }
    sb_free(&out);
    return ok;
}

static void expected_jsonl_renders_byte_exact(void **st) {
    (void)st;
    const char *p = td_path("templates/expected.jsonl");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", p);
    *strrchr(dir, '/') = 0;
    size_t len;
    char *all = tu_read_file(p, &len);
    assert_non_null(all);
    int total = 0, passed = 0, unexpected = 0;
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *rec = json_loads(line, JSON_ALLOW_NUL, &je);
        assert_non_null(rec);
        total++;
        bool ok = check_record(rec, dir);
        bool known = is_known_failure(json_string_value(json_object_get(rec, "template")),
                                      json_string_value(json_object_get(rec, "case")));
        if (ok) passed++;
        if (ok && known) {
            print_message("# %s|%s now passes: remove it from known_failures\n",
                          json_string_value(json_object_get(rec, "template")),
                          json_string_value(json_object_get(rec, "case")));
            unexpected++;
        }
        if (!ok && !known) unexpected++;
        json_decref(rec);
    }
    free(all);
    print_message("# expected.jsonl: %d of %d records match\n", passed, total);
    assert_true(total >= 200);
    assert_int_equal(unexpected, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(expected_jsonl_renders_byte_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
