/*
 * test_web — the web UI in a real browser.
 *
 * The checks themselves are in tests/js/web.test.mjs: it starts the confab
 * binary ($CONFAB_BIN, set by `make test`) on an ephemeral port with a fake
 * OpenAI-compatible upstream, drives Debian's chromium with playwright-core
 * and prints one TAP line per check ("ok N - ..."), which tests/run.sh
 * counts. This wrapper skips, saying why, when node, tests/js/node_modules
 * (`make deps`) or chromium is absent, and fails when any check fails.
 * Screenshots go to $BUILD/screenshots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

static void web_ui_checks_pass_in_chromium(void **st) {
    (void)st;
    const char *chromium = getenv("CHROMIUM") ? getenv("CHROMIUM") : "/usr/bin/chromium";
    const char *bin = tu_confab_bin();
    if (access("tests/js/node_modules/playwright-core", F_OK) != 0) {
        print_message("# SKIP: tests/js/node_modules/playwright-core absent (run make deps)\n");
        skip();
    }
    if (access(chromium, X_OK) != 0) {
        print_message("# SKIP: %s not found (make deps installs Debian's chromium)\n", chromium);
        skip();
    }
    if (tu_run("node --version >/dev/null 2>&1", NULL) != 0) {
        print_message("# SKIP: node not found\n");
        skip();
    }
    if (access(bin, X_OK) != 0) {
        print_message("# SKIP: %s not built (run through make test)\n", bin);
        skip();
    }
    char cmd[4200], *out = NULL;
    snprintf(cmd, sizeof cmd, "CONFAB_BIN='%s' node tests/js/web.test.mjs 2>&1", bin);
    int rc = tu_run(cmd, &out);
    /* Straight to stdout: print_message truncates long text. */
    if (out) fputs(out, stdout);
    fflush(stdout);
    bool ran = out != NULL, failed_check = out && strstr(out, "\nnot ok ");
    free(out); /* before asserting: a failed assert does not return */
    assert_true(ran);
    assert_false(failed_check);
    assert_int_equal(rc, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(web_ui_checks_pass_in_chromium),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
