/*
 * store_int — what the store's own files share: the handle, a cache of
 * prepared statements, and small SQLite helpers. Not for other modules.
 */
#ifndef CONFAB_STORE_INT_H
#define CONFAB_STORE_INT_H

#include "store/store.h"

#include <sqlite3.h>

#define STORE_STMT_CACHE 64

struct store {
    sqlite3 *db;
    char *path;
    int lock_fd; /* -1 for in-memory databases */
    struct {
        const char *sql; /* a string literal; looked up by address */
        sqlite3_stmt *stmt;
    } cache[STORE_STMT_CACHE];
    int ncache;
};

/* A prepared statement for the literal SQL, from the cache (reset, bindings
 * cleared). The caller must sqlite3_reset() it when done, so no read
 * transaction stays open. NULL on error (ERR filled). */
sqlite3_stmt *store__stmt(store *st, const char *sql, cf_err *err);
/* Fills ERR from the connection's last error: "WHAT: sqlite message".
 * Maps busy to CF_EBUSY, constraint to CF_EINVAL, corrupt to CF_EFORMAT,
 * else CF_EIO. Returns the code. */
int store__sqlerr(store *st, cf_err *err, const char *what);
/* Column I as a malloc'd string, or NULL when SQL NULL. */
char *store__col_dup(sqlite3_stmt *s, int i);
/* Binds TEXT, or NULL when TEXT is NULL. */
int store__bind_str(sqlite3_stmt *s, int i, const char *text);
/* Binds V, or NULL when V is 0 (the store's "unknown"). */
int store__bind_i64_or_null(sqlite3_stmt *s, int i, int64_t v);
/* Runs a cached statement that returns no rows (bindings done). */
int store__step_done(store *st, sqlite3_stmt *s, cf_err *err, const char *what);
/* True when S (may be NULL) is valid UTF-8. */
bool store__utf8_ok(const char *s);
/* Moves a session's updated_at to NOW. */
int store__touch_session(store *st, int64_t session_id, int64_t now, cf_err *err);
/* Does a message id exist in the session?  1 yes, 0 no, <0 error. */
int store__msg_in_session(store *st, int64_t msg_id, int64_t session_id, cf_err *err);

/* Inserts a message row as given (created_at used as is, no checks, no
 * session touch or title): store_msg_append and import use it. */
int store__msg_insert(store *st, const store_message *in, const char *uuid, int64_t *id,
                      cf_err *err);

/* Migrations (store_schema.c). */
int store__migrate(store *st, int target, cf_err *err);

#endif
