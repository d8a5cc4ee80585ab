/*
 * store_search — full-text search over message content and session titles,
 * and the storage side of A/B votes.
 *
 * Two external-content FTS5 tables (messages_fts, sessions_fts) index the
 * text stored in messages and sessions, so nothing is stored twice. A search
 * runs in two phases: first the ranked ids only (bm25 over both tables,
 * UNION ALL, ORDER BY rank with the session and date filters joined in,
 * LIMIT/OFFSET), then a snippet for each of the few hits on that page. So
 * snippet() -- which re-reads and re-tokenizes a document -- runs for twenty
 * rows, not for every match.
 *
 * User queries are not FTS5 syntax: each word becomes a quoted term, a
 * "quoted phrase" stays a phrase, and word* keeps its prefix star. Quotes,
 * parentheses, colons, AND/OR/NOT and other operators in user text are then
 * just text, so no input can cause an FTS5 syntax error. Words with no
 * letters or digits are dropped (the tokenizer would drop them anyway). With
 * opts.raw the query goes to FTS5 unchanged and its syntax errors come back
 * as CF_EINVAL with SQLite's explanation.
 *
 * bm25 scores of the two tables are on the same scale (negative, lower is
 * better) and are merged as they are. Ranking costs a lookup of each
 * matching document's length, so a word found in most of 100,000 messages
 * costs ~100 ms to rank in full. An unfiltered search therefore ranks only the
 * newest max_candidates (default 10,000) messages that match -- in a chat
 * history the newest matches are the likely ones -- and a search filtered by
 * session or date ranks every match (a cap applied before the filter could
 * hide matches the filter keeps).
 */
#include "base/clock.h"
#include "base/sb.h"
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ query text */

static bool has_word_char(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            return true;
    }
    return false;
}

/* Appends S[0..N) as an FTS5 string ("..." with quotes doubled). */
static void quote_term(sb_t *q, const char *s, size_t n) {
    if (q->len) sb_putc(q, ' ');
    sb_putc(q, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') sb_putc(q, '"');
        sb_putc(q, s[i]);
    }
    sb_putc(q, '"');
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Turns user text into a safe FTS5 query (words ANDed). Returns 0, or
 * CF_EINVAL when there is no word to look for. */
static int build_query(const char *text, sb_t *q, cf_err *err) {
    const char *p = text;
    while (*p) {
        if (is_space(*p)) {
            p++;
            continue;
        }
        if (*p == '"') {
            const char *end = strchr(p + 1, '"');
            if (end) { /* a balanced phrase */
                if (has_word_char(p + 1, (size_t)(end - p - 1)))
                    quote_term(q, p + 1, (size_t)(end - p - 1));
                p = end + 1;
                continue;
            }
            p++; /* a stray quote is just dropped */
            continue;
        }
        const char *s = p;
        while (*p && !is_space(*p) && *p != '"')
            p++;
        size_t n = (size_t)(p - s);
        bool prefix = n > 1 && s[n - 1] == '*';
        if (prefix) n--;
        if (has_word_char(s, n)) {
            quote_term(q, s, n);
            if (prefix) sb_putc(q, '*');
        }
    }
    if (q->len == 0) return cf_seterr(err, CF_EINVAL, "search query has no words to look for");
    return 0;
}

/* ------------------------------------------------------------ search */

void store_hits_free(store_hit *a, size_t n) {
    for (size_t i = 0; a && i < n; i++) {
        free(a[i].session_title);
        free(a[i].role);
        free(a[i].snippet);
    }
    free(a);
}

static int snippet_for(store *st, store_hit *h, const char *match, const char *ho, const char *hc,
                       cf_err *err) {
    static const char *qm = "SELECT snippet(messages_fts, 0, ?3, ?4, '…', 16) FROM messages_fts "
                            "WHERE messages_fts MATCH ?1 AND rowid = ?2";
    static const char *qt = "SELECT highlight(sessions_fts, 0, ?3, ?4) FROM sessions_fts WHERE "
                            "sessions_fts MATCH ?1 AND rowid = ?2";
    sqlite3_stmt *s = store__stmt(st, h->kind == STORE_HIT_MESSAGE ? qm : qt, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_text(s, 1, match, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, h->kind == STORE_HIT_MESSAGE ? h->message_id : h->session_id);
    sqlite3_bind_text(s, 3, ho, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, hc, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int r = 0;
    if (rc == SQLITE_ROW)
        h->snippet = store__col_dup(s, 0);
    else if (rc != SQLITE_DONE)
        r = store__sqlerr(st, err, "making a snippet");
    if (!h->snippet) h->snippet = strdup("");
    sqlite3_reset(s);
    return r;
}

/* Phase one in three shapes, so each uses its plan: unfiltered searches rank
 * a capped set of the newest matches; session and date filters join first
 * and rank only the rows that pass (bm25 computed after the filter). */
#define HIT_HEAD "SELECT h.kind, h.sid, h.mid, h.rank, h.ts, s.title, m.role FROM ("
#define HIT_TITLES                                                                                 \
    "  UNION ALL"                                                                                  \
    "  SELECT 1, s.id, 0, bm25(sessions_fts), s.updated_at"                                        \
    "  FROM sessions_fts f JOIN sessions s ON s.id = f.rowid"                                      \
    "  WHERE sessions_fts MATCH ?1 AND (?2 = 0 OR s.id = ?2)"                                      \
    "    AND s.updated_at >= ?3 AND s.updated_at <= ?4"                                            \
    "  ORDER BY 4, 3 LIMIT ?5 OFFSET ?6"                                                           \
    ") h JOIN sessions s ON s.id = h.sid LEFT JOIN messages m ON m.id = h.mid AND h.kind = 0 "     \
    "ORDER BY h.rank, h.mid"

static const char *q_hits_capped = HIT_HEAD
    "  SELECT 0 AS kind, m.session_id AS sid, m.id AS mid, f.r AS rank, m.timestamp AS ts"
    "  FROM (SELECT rowid, bm25(messages_fts) AS r FROM messages_fts WHERE messages_fts MATCH ?1"
    "        ORDER BY rowid DESC LIMIT ?7) f"
    "  JOIN messages m ON m.id = f.rowid"
    "  WHERE ?2 = 0 AND m.timestamp >= ?3 AND m.timestamp <= ?4" HIT_TITLES;
static const char *q_hits_session =
    HIT_HEAD "  SELECT 0 AS kind, m.session_id AS sid, m.id AS mid, bm25(messages_fts) AS rank, "
             "m.timestamp AS ts"
             "  FROM messages_fts f JOIN messages m ON m.id = f.rowid"
             "  WHERE messages_fts MATCH ?1 AND m.session_id = ?2"
             "    AND m.timestamp >= ?3 AND m.timestamp <= ?4" HIT_TITLES;
static const char *q_hits_dates =
    HIT_HEAD "  SELECT 0 AS kind, m.session_id AS sid, m.id AS mid, bm25(messages_fts) AS rank, "
             "m.timestamp AS ts"
             "  FROM messages_fts f JOIN messages m ON m.id = f.rowid"
             "  WHERE messages_fts MATCH ?1 AND ?2 = 0"
             "    AND m.timestamp >= ?3 AND m.timestamp <= ?4" HIT_TITLES;

int store_search(store *st, const store_search_opts *o, store_hit **out, size_t *n, cf_err *err) {
    *out = NULL;
    *n = 0;
    if (!o || !o->query) return cf_seterr(err, CF_EINVAL, "missing search query");
    if (o->offset < 0) return cf_seterr(err, CF_EINVAL, "negative offset %d", o->offset);
    if (o->until && o->since > o->until)
        return cf_seterr(err, CF_EINVAL, "date range ends before it starts");
    sb_t match = {0};
    if (o->raw)
        sb_append(&match, o->query);
    else if (build_query(o->query, &match, err) != 0) {
        sb_free(&match);
        return CF_EINVAL;
    }
    if (match.len == 0) {
        sb_free(&match);
        return cf_seterr(err, CF_EINVAL, "search query has no words to look for");
    }
    const char *ho = o->hl_open ? o->hl_open : "**";
    const char *hc = o->hl_close ? o->hl_close : "**";
    /* A cap applied before a filter could drop matches the filter keeps, so
     * filtered searches rank every match that passes. */
    int ncand = o->max_candidates ? o->max_candidates : 10000;
    const char *q = o->session_id            ? q_hits_session
                    : (o->since || o->until) ? q_hits_dates
                                             : q_hits_capped;
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) {
        sb_free(&match);
        return err ? err->code : CF_EIO;
    }
    sqlite3_bind_text(s, 1, match.data, (int)match.len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, o->session_id);
    sqlite3_bind_int64(s, 3, o->since);
    sqlite3_bind_int64(s, 4, o->until ? o->until : INT64_MAX);
    sqlite3_bind_int(s, 5, o->limit > 0 ? o->limit : 20);
    sqlite3_bind_int(s, 6, o->offset);
    if (q == q_hits_capped) sqlite3_bind_int(s, 7, ncand < 0 ? -1 : ncand);
    store_hit *a = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            a = realloc(a, cap * sizeof *a);
            if (!a) abort();
        }
        store_hit *h = &a[cnt++];
        memset(h, 0, sizeof *h);
        h->kind = sqlite3_column_int(s, 0);
        h->session_id = sqlite3_column_int64(s, 1);
        h->message_id = sqlite3_column_int64(s, 2);
        h->rank = sqlite3_column_double(s, 3);
        h->time = sqlite3_column_int64(s, 4);
        h->session_title = store__col_dup(s, 5);
        h->role = store__col_dup(s, 6);
    }
    int r = 0;
    if (rc != SQLITE_DONE) {
        r = store__sqlerr(st, err, "searching");
        if (o->raw)
            r = cf_seterr(err, CF_EINVAL, "bad search query '%s': %s", o->query,
                          sqlite3_errmsg(st->db));
    }
    sqlite3_reset(s);
    for (size_t i = 0; r == 0 && i < cnt; i++)
        r = snippet_for(st, &a[i], match.data, ho, hc, err);
    sb_free(&match);
    if (r != 0) {
        store_hits_free(a, cnt);
        return r;
    }
    *out = a;
    *n = cnt;
    return 0;
}

/* ------------------------------------------------------------ votes */

int store_vote_add(store *st, const store_vote *v, int64_t *id, cf_err *err) {
    static const char *q = "INSERT INTO votes (uuid, session_id, message_a, message_b, model_a, "
                           "model_b, winner, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    if (!v->model_a || !v->model_b || !*v->model_a || !*v->model_b)
        return cf_seterr(err, CF_EINVAL, "a vote needs both model names");
    if (!v->winner ||
        (strcmp(v->winner, "a") && strcmp(v->winner, "b") && strcmp(v->winner, "tie")))
        return cf_seterr(err, CF_EINVAL, "vote winner must be a, b or tie, not '%s'",
                         v->winner ? v->winner : "(null)");
    int64_t msgs[2] = {v->message_a, v->message_b};
    for (int i = 0; i < 2; i++) {
        if (!msgs[i]) continue;
        int r = store__msg_in_session(st, msgs[i], v->session_id, err);
        if (r < 0) return r;
        if (r == 0)
            return cf_seterr(err, CF_ENOTFOUND, "message %lld is not in session %lld",
                             (long long)msgs[i], (long long)v->session_id);
    }
    char uuid[37];
    store_uuid_new(uuid);
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, v->session_id);
    store__bind_i64_or_null(s, 3, v->message_a);
    store__bind_i64_or_null(s, 4, v->message_b);
    sqlite3_bind_text(s, 5, v->model_a, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 6, v->model_b, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 7, v->winner, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 8, v->created_at ? v->created_at : clock_wall_ms());
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        if ((sqlite3_extended_errcode(st->db)) == SQLITE_CONSTRAINT_FOREIGNKEY)
            return cf_seterr(err, CF_ENOTFOUND, "no session %lld", (long long)v->session_id);
        return store__sqlerr(st, err, "recording a vote");
    }
    if (id) *id = sqlite3_last_insert_rowid(st->db);
    return 0;
}

void store_pair_stats_free(store_pair_stats *a, size_t n) {
    for (size_t i = 0; a && i < n; i++) {
        free(a[i].model_a);
        free(a[i].model_b);
    }
    free(a);
}

int store_vote_stats(store *st, store_pair_stats **out, size_t *n, cf_err *err) {
    /* Each vote is turned so model_a < model_b, swapping the winner too. */
    static const char *q =
        "SELECT ma, mb, count(*), sum(w = 'a'), sum(w = 'b'), sum(w = 'tie') FROM ("
        "  SELECT CASE WHEN model_a <= model_b THEN model_a ELSE model_b END AS ma,"
        "         CASE WHEN model_a <= model_b THEN model_b ELSE model_a END AS mb,"
        "         CASE WHEN model_a <= model_b OR winner = 'tie' THEN winner"
        "              WHEN winner = 'a' THEN 'b' ELSE 'a' END AS w FROM votes)"
        " GROUP BY ma, mb ORDER BY count(*) DESC, ma, mb";
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    store_pair_stats *a = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            a = realloc(a, cap * sizeof *a);
            if (!a) abort();
        }
        store_pair_stats *p = &a[cnt++];
        p->model_a = store__col_dup(s, 0);
        p->model_b = store__col_dup(s, 1);
        p->total = sqlite3_column_int64(s, 2);
        p->wins_a = sqlite3_column_int64(s, 3);
        p->wins_b = sqlite3_column_int64(s, 4);
        p->ties = sqlite3_column_int64(s, 5);
        p->rate_a = p->total ? ((double)p->wins_a + 0.5 * (double)p->ties) / (double)p->total : 0;
    }
    int r = 0;
    if (rc != SQLITE_DONE) {
        r = store__sqlerr(st, err, "counting votes");
        store_pair_stats_free(a, cnt);
        a = NULL;
        cnt = 0;
    }
    sqlite3_reset(s);
    *out = a;
    *n = cnt;
    return r;
}
