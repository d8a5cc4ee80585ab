/*
 * store_msg — messages: append, get, list, the branch history, and the
 * streaming writer that grows a reply while it is generated.
 *
 * The streaming writer is the hot path. A reply arrives token by token (tens
 * per second); writing the row on every token would rewrite it, and its WAL
 * page, every 20 ms. Instead the writer buffers text and writes at most once
 * per flush interval (100 ms by default) with
 *   UPDATE messages SET content = content || ?buffered WHERE id = ?
 * and once more at the end, with the final status and accounting. Only
 * complete UTF-8 characters are written; the bytes of a character split
 * across tokens wait for the next append. While a message is "streaming" it
 * is not in the search index (the FTS triggers skip it), so flushes cost no
 * index work; finishing indexes it once. After a crash the row holds
 * everything flushed so far, and recovery marks it cancelled.
 *
 * SQLite has no in-place append, so each flush rewrites the row: the cost of
 * a flush grows with the reply (a 30 KB reply: well under a millisecond per
 * flush, see bench/README.md). Storing chunks in a side table would make a
 * flush O(new text) at the price of a join on every read of a message;
 * ten row writes a second did not justify that.
 *
 * Flushes are paced by a clock the caller may replace (store_stream_opts.
 * now_ms), so tests count flushes against simulated time.
 */
#include "base/clock.h"
#include "base/sb.h"
#include "base/utf8.h"
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

static const char *const status_names[] = {"complete", "streaming", "cancelled", "error"};

const char *store_status_name(store_status s) { return (unsigned)s < 4 ? status_names[s] : "?"; }

int store_status_parse(const char *name) {
    for (int i = 0; name && i < 4; i++)
        if (!strcmp(name, status_names[i])) return i;
    return -1;
}

bool store_role_valid(const char *role) {
    return role && (!strcmp(role, "system") || !strcmp(role, "user") ||
                    !strcmp(role, "assistant") || !strcmp(role, "tool"));
}

void store_message_clear(store_message *m) {
    if (!m) return;
    free(m->role);
    free(m->content);
    free(m->model);
    free(m->provider);
    free(m->finish_reason);
    free(m->variant);
    free(m->error);
    memset(m, 0, sizeof *m);
}

void store_messages_free(store_message *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        store_message_clear(&a[i]);
    free(a);
}

#define MSG_COLS                                                                                   \
    "m.id, m.uuid, m.session_id, m.parent_id, m.role, m.content, m.timestamp, m.model, "           \
    "m.provider, "                                                                                 \
    "m.status, m.prompt_tokens, m.completion_tokens, m.cost, m.latency_ms, m.finish_reason, "      \
    "m.variant, m.cached, m.error"

static void read_msg(sqlite3_stmt *q, store_message *m) {
    memset(m, 0, sizeof *m);
    m->id = sqlite3_column_int64(q, 0);
    const char *u = (const char *)sqlite3_column_text(q, 1);
    snprintf(m->uuid, sizeof m->uuid, "%s", u ? u : "");
    m->session_id = sqlite3_column_int64(q, 2);
    m->parent_id = sqlite3_column_int64(q, 3);
    m->role = store__col_dup(q, 4);
    m->content = store__col_dup(q, 5);
    if (!m->content) m->content = strdup("");
    m->created_at = sqlite3_column_int64(q, 6);
    m->model = store__col_dup(q, 7);
    m->provider = store__col_dup(q, 8);
    int stt = store_status_parse((const char *)sqlite3_column_text(q, 9));
    m->status = stt < 0 ? STORE_COMPLETE : (store_status)stt;
    m->prompt_tokens = sqlite3_column_int64(q, 10);
    m->completion_tokens = sqlite3_column_int64(q, 11);
    m->cost = sqlite3_column_double(q, 12);
    m->latency_ms = sqlite3_column_int64(q, 13);
    m->finish_reason = store__col_dup(q, 14);
    m->variant = store__col_dup(q, 15);
    m->cached = sqlite3_column_int(q, 16) != 0;
    m->error = store__col_dup(q, 17);
}

static int session_exists(store *st, int64_t id, cf_err *err) {
    static const char *q = "SELECT 1 FROM sessions WHERE id = ?1";
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    int r = rc == SQLITE_ROW    ? 1
            : rc == SQLITE_DONE ? 0
                                : store__sqlerr(st, err, "looking up a session");
    sqlite3_reset(s);
    return r;
}

/* Gives an untitled session the title of its first user message. */
static int maybe_title(store *st, int64_t session_id, const char *content, cf_err *err) {
    static const char *q = "UPDATE sessions SET title = ?2 WHERE id = ?1 AND title = ''";
    char *t = store_auto_title(content);
    int r = 0;
    if (*t) {
        sqlite3_stmt *s = store__stmt(st, q, err);
        if (!s)
            r = err ? err->code : CF_EIO;
        else {
            sqlite3_bind_int64(s, 1, session_id);
            sqlite3_bind_text(s, 2, t, -1, SQLITE_TRANSIENT);
            r = store__step_done(st, s, err, "titling a session");
        }
    }
    free(t);
    return r;
}

/* Checks what an insert needs: session, parent in it, role, UTF-8. */
static int check_msg(store *st, int64_t session_id, int64_t parent_id, const char *role,
                     cf_err *err) {
    int r = session_exists(st, session_id, err);
    if (r < 0) return r;
    if (r == 0) return cf_seterr(err, CF_ENOTFOUND, "no session %lld", (long long)session_id);
    if (parent_id) {
        r = store__msg_in_session(st, parent_id, session_id, err);
        if (r < 0) return r;
        if (r == 0)
            return cf_seterr(err, CF_ENOTFOUND, "parent message %lld is not in session %lld",
                             (long long)parent_id, (long long)session_id);
    }
    if (!store_role_valid(role))
        return cf_seterr(err, CF_EINVAL, "bad role '%s' (system, user, assistant or tool)",
                         role ? role : "(null)");
    return 0;
}

static const char *q_insert_msg =
    "INSERT INTO messages (uuid, session_id, parent_id, role, content, timestamp, model, provider, "
    "status, "
    "prompt_tokens, completion_tokens, cost, latency_ms, finish_reason, variant, cached, error) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

int store__msg_insert(store *st, const store_message *in, const char *uuid, int64_t *id,
                      cf_err *err) {
    sqlite3_stmt *s = store__stmt(st, q_insert_msg, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, in->session_id);
    store__bind_i64_or_null(s, 3, in->parent_id);
    sqlite3_bind_text(s, 4, in->role, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, in->content ? in->content : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 6, in->created_at);
    store__bind_str(s, 7, in->model);
    store__bind_str(s, 8, in->provider);
    sqlite3_bind_text(s, 9, store_status_name(in->status), -1, SQLITE_STATIC);
    store__bind_i64_or_null(s, 10, in->prompt_tokens);
    store__bind_i64_or_null(s, 11, in->completion_tokens);
    if (in->cost > 0) sqlite3_bind_double(s, 12, in->cost);
    store__bind_i64_or_null(s, 13, in->latency_ms);
    store__bind_str(s, 14, in->finish_reason);
    store__bind_str(s, 15, in->variant);
    sqlite3_bind_int(s, 16, in->cached ? 1 : 0);
    store__bind_str(s, 17, in->error);
    int rc = sqlite3_step(s);
    int r = rc == SQLITE_DONE ? 0 : store__sqlerr(st, err, "appending a message");
    sqlite3_reset(s);
    if (r == 0 && id) *id = sqlite3_last_insert_rowid(st->db);
    return r;
}

int store_msg_append(store *st, const store_message *in, int64_t *id, cf_err *err) {
    int r = check_msg(st, in->session_id, in->parent_id, in->role, err);
    if (r) return r;
    if (!store__utf8_ok(in->content) || !store__utf8_ok(in->model) ||
        !store__utf8_ok(in->provider) || !store__utf8_ok(in->finish_reason) ||
        !store__utf8_ok(in->variant) || !store__utf8_ok(in->error))
        return cf_seterr(err, CF_EINVAL, "message text is not valid UTF-8");
    if ((unsigned)in->status > STORE_ERROR)
        return cf_seterr(err, CF_EINVAL, "bad message status %d", (int)in->status);
    if (in->prompt_tokens < 0 || in->completion_tokens < 0 || in->latency_ms < 0 || in->cost < 0)
        return cf_seterr(err, CF_EINVAL, "negative token count, cost or latency");
    char uuid[37];
    if (in->uuid[0]) {
        if (!store_uuid_valid(in->uuid))
            return cf_seterr(err, CF_EINVAL, "bad message uuid '%s'", in->uuid);
        snprintf(uuid, sizeof uuid, "%s", in->uuid);
    } else {
        store_uuid_new(uuid);
    }
    store_message m = *in;
    if (!m.created_at) m.created_at = clock_wall_ms();
    bool own_tx = sqlite3_get_autocommit(st->db);
    if (own_tx && (r = store_begin(st, err)) != 0) return r;
    if ((r = store__msg_insert(st, &m, uuid, id, err)) != 0) goto fail;
    if ((r = store__touch_session(st, m.session_id, m.created_at, err)) != 0) goto fail;
    if (!strcmp(m.role, "user") && (r = maybe_title(st, m.session_id, m.content, err)) != 0)
        goto fail;
    if (own_tx && (r = store_commit(st, err)) != 0) goto fail;
    return 0;
fail:
    if (own_tx) store_rollback(st);
    return r;
}

int store_msg_get(store *st, int64_t id, store_message *out, cf_err *err) {
    static const char *q = "SELECT " MSG_COLS " FROM messages m WHERE m.id = ?1";
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    int r = 0;
    if (rc == SQLITE_ROW)
        read_msg(s, out);
    else if (rc == SQLITE_DONE)
        r = cf_seterr(err, CF_ENOTFOUND, "no message %lld", (long long)id);
    else
        r = store__sqlerr(st, err, "reading a message");
    sqlite3_reset(s);
    return r;
}

static int collect(store *st, sqlite3_stmt *s, store_message **out, size_t *n, cf_err *err,
                   const char *what) {
    store_message *a = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            a = realloc(a, cap * sizeof *a);
            if (!a) abort();
        }
        read_msg(s, &a[cnt++]);
    }
    int r = 0;
    if (rc != SQLITE_DONE) {
        r = store__sqlerr(st, err, what);
        store_messages_free(a, cnt);
        a = NULL;
        cnt = 0;
    }
    sqlite3_reset(s);
    *out = a;
    *n = cnt;
    return r;
}

int store_msg_list(store *st, int64_t session_id, store_message **out, size_t *n, cf_err *err) {
    static const char *q =
        "SELECT " MSG_COLS " FROM messages m WHERE m.session_id = ?1 ORDER BY m.id";
    *out = NULL;
    *n = 0;
    int r = session_exists(st, session_id, err);
    if (r < 0) return r;
    if (r == 0) return cf_seterr(err, CF_ENOTFOUND, "no session %lld", (long long)session_id);
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, session_id);
    return collect(st, s, out, n, err, "listing messages");
}

int store_msg_thread(store *st, int64_t leaf_id, store_message **out, size_t *n, cf_err *err) {
    static const char *q =
        "WITH RECURSIVE chain(id, depth) AS (SELECT ?1, 0 UNION ALL "
        "SELECT m.parent_id, c.depth + 1 FROM messages m JOIN chain c ON m.id = c.id "
        "WHERE m.parent_id IS NOT NULL AND c.depth < 100000) "
        "SELECT " MSG_COLS " FROM chain c JOIN messages m ON m.id = c.id ORDER BY c.depth DESC";
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, leaf_id);
    int r = collect(st, s, out, n, err, "reading a thread");
    if (r == 0 && *n == 0) r = cf_seterr(err, CF_ENOTFOUND, "no message %lld", (long long)leaf_id);
    return r;
}

/* ------------------------------------------------------------ streaming */

struct store_stream {
    store *st;
    int64_t id, session_id;
    sb_t pending;       /* (len,) bytes not yet written */
    size_t validated;   /* pending[0..validated) is checked UTF-8 */
    int64_t last_flush; /* ms on the pacing clock */
    int interval_ms;
    int flushes;
    int64_t (*now_ms)(void *ctx);
    void *now_ctx;
};

static int64_t mono_ms(void *ctx) {
    (void)ctx;
    return (int64_t)(clock_mono_ns() / 1000000u);
}

store_stream *store_stream_begin(store *st, const store_stream_opts *o, cf_err *err) {
    if (!o) {
        cf_seterr(err, CF_EINVAL, "missing stream options");
        return NULL;
    }
    store_message m = {0};
    m.session_id = o->session_id;
    m.parent_id = o->parent_id;
    m.role = (char *)(o->role ? o->role : "assistant");
    m.model = (char *)o->model;
    m.provider = (char *)o->provider;
    m.variant = (char *)o->variant;
    m.status = STORE_STREAMING;
    int64_t id;
    if (store_msg_append(st, &m, &id, err) != 0) return NULL;
    store_stream *w = calloc(1, sizeof *w);
    if (!w) abort();
    w->st = st;
    w->id = id;
    w->session_id = o->session_id;
    w->interval_ms = o->flush_interval_ms > 0 ? o->flush_interval_ms : 100;
    w->now_ms = o->now_ms ? o->now_ms : mono_ms;
    w->now_ctx = o->now_ctx;
    w->last_flush = w->now_ms(w->now_ctx);
    return w;
}

int64_t store_stream_id(const store_stream *w) { return w->id; }
int store_stream_flushes(const store_stream *w) { return w->flushes; }

/* Writes the first N pending bytes. */
static int write_pending(store_stream *w, size_t n, cf_err *err) {
    static const char *q = "UPDATE messages SET content = content || ?2 WHERE id = ?1";
    w->last_flush = w->now_ms(w->now_ctx);
    if (n == 0) return 0;
    sqlite3_stmt *s = store__stmt(w->st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, w->id);
    sqlite3_bind_text(s, 2, w->pending.data, (int)n, SQLITE_STATIC);
    int r = store__step_done(w->st, s, err, "writing a streamed reply");
    if (r) return r;
    w->flushes++;
    size_t rest = w->pending.len - n;
    memmove(w->pending.data, w->pending.data + n, rest);
    sb_truncate(&w->pending, rest);
    w->validated = w->validated > n ? w->validated - n : 0;
    return 0;
}

int store_stream_flush(store_stream *w, cf_err *err) { return write_pending(w, w->validated, err); }

int store_stream_append(store_stream *w, const char *text, size_t n, cf_err *err) {
    if (n > 0 && !text) return cf_seterr(err, CF_EINVAL, "NULL text");
    size_t old = w->pending.len;
    sb_appendn(&w->pending, text, n);
    /* Validate what became complete; a split character's bytes wait. */
    size_t done = utf8_complete_len(w->pending.data, w->pending.len);
    size_t bad;
    if (done > w->validated &&
        !utf8_valid(w->pending.data + w->validated, done - w->validated, &bad)) {
        sb_truncate(&w->pending, old);
        return cf_seterr(err, CF_EINVAL, "streamed text is not valid UTF-8");
    }
    if (done > w->validated) w->validated = done;
    if (w->now_ms(w->now_ctx) - w->last_flush >= w->interval_ms) return store_stream_flush(w, err);
    return 0;
}

static void stream_free(store_stream *w) {
    sb_free(&w->pending);
    free(w);
}

void store_stream_abandon(store_stream *w) {
    if (w) stream_free(w);
}

int store_stream_finish(store_stream *w, const store_stream_end *end, cf_err *err) {
    static const char *q =
        "UPDATE messages SET status = ?2, prompt_tokens = ?3, completion_tokens = ?4, cost = ?5, "
        "latency_ms = ?6, finish_reason = ?7, error = ?8, cached = ?9, "
        "model = coalesce(?10, model), provider = coalesce(?11, provider), "
        "variant = coalesce(?12, variant) WHERE id = ?1";
    store_stream_end def = {.status = STORE_COMPLETE};
    if (!end) end = &def;
    if (end->status == STORE_STREAMING || (unsigned)end->status > STORE_ERROR) {
        stream_free(w);
        return cf_seterr(err, CF_EINVAL,
                         "a finished message needs status complete, cancelled or error");
    }
    store *st = w->st;
    /* An incomplete character at the very end can never complete. */
    size_t ok = utf8_complete_len(w->pending.data, w->pending.len);
    if (ok < w->pending.len) {
        sb_truncate(&w->pending, ok);
        sb_append(&w->pending, "\xef\xbf\xbd");
    }
    bool own_tx = sqlite3_get_autocommit(st->db); /* else the caller's transaction */
    int r = own_tx ? store_begin(st, err) : 0;
    if (r == 0) r = write_pending(w, w->pending.len, err);
    sqlite3_stmt *s = r == 0 ? store__stmt(st, q, err) : NULL;
    if (r == 0 && !s) r = err ? err->code : CF_EIO;
    if (r == 0) {
        sqlite3_bind_int64(s, 1, w->id);
        sqlite3_bind_text(s, 2, store_status_name(end->status), -1, SQLITE_STATIC);
        store__bind_i64_or_null(s, 3, end->prompt_tokens);
        store__bind_i64_or_null(s, 4, end->completion_tokens);
        if (end->cost > 0) sqlite3_bind_double(s, 5, end->cost);
        store__bind_i64_or_null(s, 6, end->latency_ms);
        store__bind_str(s, 7, end->finish_reason);
        store__bind_str(s, 8, end->error);
        sqlite3_bind_int(s, 9, end->cached ? 1 : 0);
        store__bind_str(s, 10, end->model);
        store__bind_str(s, 11, end->provider);
        store__bind_str(s, 12, end->variant);
        r = store__step_done(st, s, err, "finishing a streamed reply");
    }
    if (r == 0) r = store__touch_session(st, w->session_id, clock_wall_ms(), err);
    if (r == 0 && own_tx) r = store_commit(st, err);
    if (r != 0 && own_tx) store_rollback(st);
    stream_free(w);
    return r;
}
