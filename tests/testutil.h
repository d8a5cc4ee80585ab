/*
 * testutil — shared helpers for confab's cmocka tests.
 *
 * Tests that need files from the shared test data ask for them through
 * td_path(); when the file is absent the test is skipped with a message
 * naming what is missing, and the runner counts the skip.
 */
#ifndef CONFAB_TESTUTIL_H
#define CONFAB_TESTUTIL_H

/* cmocka needs these headers first, in this order. */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

/* Root of the shared test data: $CONFAB_TESTDATA or ../shared/testdata. */
const char *td_root(void);

/* Full path of REL under the test data root, in a static buffer that the
 * next call overwrites, or NULL when the file does not exist. */
const char *td_find(const char *rel);

/* Like td_find but skips the current test (printing why) when absent. */
#define td_path(rel)                                                                               \
    ({                                                                                             \
        const char *td__p = td_find(rel);                                                          \
        if (!td__p) {                                                                              \
            print_message("# SKIP: test data %s/%s absent\n", td_root(), rel);                     \
            skip();                                                                                \
        }                                                                                          \
        td__p;                                                                                     \
    })

/* Reads a whole file into a malloc'd buffer (NUL-terminated); *len gets the
 * size. Returns NULL on error. */
char *tu_read_file(const char *path, size_t *len);

/* Makes a fresh empty temporary directory and returns its path (static
 * buffer per call site is not needed: the result is malloc'd). */
char *tu_tmpdir(void);

/* Removes a directory tree (best effort). */
void tu_rmtree(const char *path);

/* Writes LEN bytes to PATH; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);

/* Path of the built confab binary ($CONFAB_BIN or build/confab). */
const char *tu_confab_bin(void);

/* Runs a shell command, capturing stdout (malloc'd, NUL-terminated) into
 * *out when OUT is not NULL; returns the exit status (or -1). */
int tu_run(const char *cmd, char **out);

#endif
