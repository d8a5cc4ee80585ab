/*
 * store — opening the database, the handle's statement cache, recovery,
 * transactions, and small helpers (uuids, timestamps) the rest of the store
 * uses.
 *
 * Opening is careful about files that are not ours: the first thing done is
 * a read of the schema, so a file that is not a SQLite database fails with
 * CF_EFORMAT before anything (WAL switch, lock file, migration) could write
 * to it. Then the connection gets WAL mode (readers never block the writer),
 * synchronous=NORMAL (a process crash loses nothing; a power cut may lose
 * the last transactions but never corrupts), foreign keys on, and a 5 s
 * busy timeout so writers in other threads wait for each other.
 *
 * Recovery needs to know that nobody else is writing: a row in "streaming"
 * status may belong to a live reply in another process. Each handle holds a
 * shared flock() on "<db>-lock" for its lifetime; a handle that can take the
 * lock exclusively at open is alone, so "streaming" rows are leftovers of a
 * crash and are marked cancelled. flock() locks die with their process, so
 * a SIGKILLed writer never blocks recovery.
 *
 * Prepared statements are cached per handle, keyed by the address of the SQL
 * string literal: appending a message costs no SQL parsing.
 */
#include "base/clock.h"
#include "base/sb.h"
#include "base/utf8.h"
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

int store__sqlerr(store *st, cf_err *err, const char *what) {
    int rc = sqlite3_errcode(st->db) & 0xff;
    int code = CF_EIO;
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        code = CF_EBUSY;
    else if (rc == SQLITE_CONSTRAINT || rc == SQLITE_MISMATCH || rc == SQLITE_RANGE)
        code = CF_EINVAL;
    else if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB)
        code = CF_EFORMAT;
    else if (rc == SQLITE_NOMEM)
        code = CF_ENOMEM;
    return cf_seterr(err, code, "%s: %s", what, sqlite3_errmsg(st->db));
}

sqlite3_stmt *store__stmt(store *st, const char *sql, cf_err *err) {
    for (int i = 0; i < st->ncache; i++) {
        if (st->cache[i].sql == sql) {
            sqlite3_stmt *s = st->cache[i].stmt;
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            return s;
        }
    }
    sqlite3_stmt *s = NULL;
    unsigned pf = st->ncache < STORE_STMT_CACHE ? SQLITE_PREPARE_PERSISTENT : 0;
    if (sqlite3_prepare_v3(st->db, sql, -1, pf, &s, NULL) != SQLITE_OK) {
        store__sqlerr(st, err, "preparing a query");
        return NULL;
    }
    if (st->ncache < STORE_STMT_CACHE) {
        st->cache[st->ncache].sql = sql;
        st->cache[st->ncache].stmt = s;
        st->ncache++;
    } else {
        /* Cache full: should not happen with the store's fixed set of
         * queries; leak-free fallback is to refuse. */
        sqlite3_finalize(s);
        cf_seterr(err, CF_ENOMEM, "statement cache full");
        return NULL;
    }
    return s;
}

char *store__col_dup(sqlite3_stmt *s, int i) {
    if (sqlite3_column_type(s, i) == SQLITE_NULL) return NULL;
    const unsigned char *t = sqlite3_column_text(s, i);
    int n = sqlite3_column_bytes(s, i);
    char *r = malloc((size_t)n + 1);
    if (!r) abort();
    memcpy(r, t ? (const char *)t : "", (size_t)n);
    r[n] = 0;
    return r;
}

int store__bind_str(sqlite3_stmt *s, int i, const char *text) {
    return text ? sqlite3_bind_text(s, i, text, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, i);
}

int store__bind_i64_or_null(sqlite3_stmt *s, int i, int64_t v) {
    return v ? sqlite3_bind_int64(s, i, v) : sqlite3_bind_null(s, i);
}

int store__step_done(store *st, sqlite3_stmt *s, cf_err *err, const char *what) {
    int rc = sqlite3_step(s);
    int r = 0;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) r = store__sqlerr(st, err, what);
    sqlite3_reset(s);
    return r;
}

bool store__utf8_ok(const char *s) { return !s || utf8_valid(s, strlen(s), NULL); }

int store__touch_session(store *st, int64_t session_id, int64_t now, cf_err *err) {
    static const char *q = "UPDATE sessions SET updated_at = max(updated_at, ?1) WHERE id = ?2";
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int64(s, 2, session_id);
    return store__step_done(st, s, err, "updating the session time");
}

int store__msg_in_session(store *st, int64_t msg_id, int64_t session_id, cf_err *err) {
    static const char *q = "SELECT session_id FROM messages WHERE id = ?1";
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, msg_id);
    int rc = sqlite3_step(s);
    int r = 0;
    if (rc == SQLITE_ROW)
        r = sqlite3_column_int64(s, 0) == session_id;
    else if (rc != SQLITE_DONE)
        r = store__sqlerr(st, err, "looking up a message");
    sqlite3_reset(s);
    return r;
}

void store_uuid_new(char out[37]) {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t k = getrandom(b + got, sizeof b - got, 0);
        if (k < 0) {
            if (errno == EINTR) continue;
            /* No kernel randomness: fall back to SQLite's PRNG. */
            sqlite3_randomness((int)(sizeof b - got), b + got);
            break;
        }
        got += (size_t)k;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hx[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hx[b[i] >> 4];
        out[o++] = hx[b[i] & 15];
    }
    out[o] = 0;
}

bool store_uuid_valid(const char *s) {
    if (!s || strlen(s) != 36) return false;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

static int digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int store_time_parse(const char *s, int64_t *ms) {
    int y, mo, d, h, mi, se, frac = 0;
    if (!s || strlen(s) < 20) return -1;
    if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || s[10] != 'T' || digits(s + 11, 2, &h) || s[13] != ':' ||
        digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &se))
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        if (digits(p + 1, 3, &frac)) return -1;
        p += 4;
    }
    if (p[0] != 'Z' || p[1] != 0) return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return -1;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    if (tm.tm_mday != d) return -1; /* 31 February and friends */
    *ms = (int64_t)t * 1000 + frac;
    return 0;
}

/* ------------------------------------------------------------ open/close */

static void lock_release(store *st) {
    if (st->lock_fd >= 0) close(st->lock_fd); /* drops the flock */
    st->lock_fd = -1;
}

void store_close(store *st) {
    if (!st) return;
    for (int i = 0; i < st->ncache; i++)
        sqlite3_finalize(st->cache[i].stmt);
    sqlite3_close(st->db);
    lock_release(st);
    free(st->path);
    free(st);
}

int store_exec(store *st, const char *sql, cf_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = sqlite3_errcode(st->db) & 0xff;
        int code = rc == SQLITE_BUSY                             ? CF_EBUSY
                   : rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT ? CF_EFORMAT
                                                                 : CF_EIO;
        cf_seterr(err, code, "%s", msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return code;
    }
    return 0;
}

int store_schema_version(store *st) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK) return CF_EIO;
    int v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : CF_EIO;
    sqlite3_finalize(s);
    return v;
}

/* Opens the connection and proves the file is a SQLite database by reading
 * its schema, before anything writes. */
static store *open_conn(const char *path, int flags, cf_err *err) {
    bool mem = !strcmp(path, ":memory:");
    if (!mem && !(flags & STORE_OPEN_CREATE) && access(path, F_OK) != 0) {
        cf_seterr(err, CF_ENOTFOUND, "no database at %s", path);
        return NULL;
    }
    store *st = calloc(1, sizeof *st);
    if (!st) abort();
    st->lock_fd = -1;
    st->path = strdup(path);
    int of = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
             (flags & STORE_OPEN_CREATE ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &st->db, of, NULL) != SQLITE_OK) {
        cf_seterr(err, CF_EIO, "opening %s: %s", path,
                  st->db ? sqlite3_errmsg(st->db) : "out of memory");
        store_close(st);
        return NULL;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, 5000);
    if (store_exec(st, "SELECT count(*) FROM sqlite_master", err) != 0) {
        if (err && err->code == CF_EFORMAT)
            cf_seterr(err, CF_EFORMAT, "%s is not a confab database (%s)", path,
                      sqlite3_errmsg(st->db));
        else
            cf_errctx(err, "opening %s", path);
        store_close(st);
        return NULL;
    }
    int v = store_schema_version(st);
    if (v > STORE_SCHEMA_VERSION) {
        cf_seterr(err, CF_EFORMAT,
                  "%s has schema version %d, newer than this confab understands (%d)", path, v,
                  STORE_SCHEMA_VERSION);
        store_close(st);
        return NULL;
    }
    if (store_exec(st,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
                   err) != 0) {
        cf_errctx(err, "setting up %s", path);
        store_close(st);
        return NULL;
    }
    return st;
}

store *store_open(const char *path, int flags, cf_err *err) {
    store *st = open_conn(path, flags, err);
    if (!st) return NULL;
    bool alone = true;
    if (strcmp(path, ":memory:") != 0) {
        sb_t lp = {0};
        sb_printf(&lp, "%s-lock", path);
        st->lock_fd = open(lp.data, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (st->lock_fd < 0) {
            cf_seterr(err, CF_EIO, "opening lock file %s: %s", lp.data, strerror(errno));
            sb_free(&lp);
            store_close(st);
            return NULL;
        }
        sb_free(&lp);
        alone = flock(st->lock_fd, LOCK_EX | LOCK_NB) == 0;
    }
    if (store__migrate(st, STORE_SCHEMA_VERSION, err) != 0) {
        cf_errctx(err, "upgrading %s", path);
        store_close(st);
        return NULL;
    }
    if (alone && !(flags & STORE_OPEN_NO_RECOVER) && store_recover(st, err) < 0) {
        cf_errctx(err, "recovering %s", path);
        store_close(st);
        return NULL;
    }
    /* Hold a shared lock while open, so a later opener knows we are live.
     * Converting EX->SH is not atomic; in that gap another opener may run a
     * recovery, which is harmless: we have not started writing yet. */
    if (st->lock_fd >= 0) {
        while (flock(st->lock_fd, LOCK_SH) != 0) {
            if (errno != EINTR) {
                cf_seterr(err, CF_EIO, "locking %s: %s", path, strerror(errno));
                store_close(st);
                return NULL;
            }
        }
    }
    return st;
}

store *store_open_at_version(const char *path, int target, cf_err *err) {
    if (target < 0 || target > STORE_SCHEMA_VERSION) {
        cf_seterr(err, CF_ERANGE, "schema version %d out of range 0..%d", target,
                  STORE_SCHEMA_VERSION);
        return NULL;
    }
    store *st = open_conn(path, STORE_OPEN_CREATE, err);
    if (!st) return NULL;
    if (store__migrate(st, target, err) != 0) {
        store_close(st);
        return NULL;
    }
    return st;
}

int store_migrate(store *st, int target, cf_err *err) {
    if (target < 0 || target > STORE_SCHEMA_VERSION)
        return cf_seterr(err, CF_ERANGE, "schema version %d out of range 0..%d", target,
                         STORE_SCHEMA_VERSION);
    return store__migrate(st, target, err);
}

int store_integrity_check(store *st, cf_err *err) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, "PRAGMA integrity_check", -1, &s, NULL) != SQLITE_OK)
        return store__sqlerr(st, err, "integrity check");
    int rc = sqlite3_step(s);
    int r = 0;
    if (rc != SQLITE_ROW)
        r = store__sqlerr(st, err, "integrity check");
    else {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (!t || strcmp(t, "ok") != 0)
            r = cf_seterr(err, CF_EFORMAT, "integrity check: %s", t ? t : "?");
    }
    sqlite3_finalize(s);
    return r;
}

int store_recover(store *st, cf_err *err) {
    static const char *q = "UPDATE messages SET status = 'cancelled', finish_reason = "
                           "coalesce(finish_reason, 'interrupted') "
                           "WHERE status = 'streaming'";
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    int r = store__step_done(st, s, err, "recovering interrupted messages");
    return r < 0 ? r : sqlite3_changes(st->db);
}

int store_begin(store *st, cf_err *err) { return store_exec(st, "BEGIN IMMEDIATE", err); }
int store_commit(store *st, cf_err *err) { return store_exec(st, "COMMIT", err); }
void store_rollback(store *st) {
    if (!sqlite3_get_autocommit(st->db)) store_exec(st, "ROLLBACK", NULL);
}
