/* store_fixture — a fresh database in a temporary directory per test, for
 * the store's test files (cmocka setup/teardown). */
#ifndef CONFAB_STORE_FIXTURE_H
#define CONFAB_STORE_FIXTURE_H

#include "store/store.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *dir;
    char path[4096];
    store *st;
} store_fx;

static int fx_setup(void **state) {
    store_fx *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    if (!f->dir) return -1;
    snprintf(f->path, sizeof f->path, "%s/confab.db", f->dir);
    cf_err err = {0};
    f->st = store_open(f->path, STORE_OPEN_CREATE, &err);
    if (!f->st) {
        fprintf(stderr, "store_open: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int fx_teardown(void **state) {
    store_fx *f = *state;
    store_close(f->st);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Creates a session titled TITLE and returns its id. */
static inline int64_t fx_session(store *st, const char *title) {
    store_session s = {0};
    s.title = (char *)title;
    int64_t id = 0;
    cf_err err = {0};
    int r = store_session_create(st, &s, &id, &err);
    if (r) fprintf(stderr, "fx_session: %s\n", err.msg);
    assert_int_equal(r, 0);
    return id;
}

/* Appends a complete message and returns its id. */
static inline int64_t fx_msg(store *st, int64_t sid, int64_t parent, const char *role,
                             const char *text) {
    store_message m = {0};
    m.session_id = sid;
    m.parent_id = parent;
    m.role = (char *)role;
    m.content = (char *)text;
    m.status = STORE_COMPLETE;
    int64_t id = 0;
    cf_err err = {0};
    int r = store_msg_append(st, &m, &id, &err);
    if (r) fprintf(stderr, "fx_msg: %s\n", err.msg);
    assert_int_equal(r, 0);
    return id;
}

#endif
