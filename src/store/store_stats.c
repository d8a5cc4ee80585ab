/*
 * store_stats — token and cost totals over the replies the store holds,
 * grouped by model, day, session or A/B variant, for `confab stats` and
 * GET /api/stats. Only assistant messages count (they carry the usage of
 * the turn that produced them); cached replies are counted apart because
 * they cost nothing. One GROUP BY query per call; the grouping key is chosen
 * from a fixed table, never built from input.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

static const char *const Q_BY[] = {
    [STORE_USAGE_TOTAL] =
        "SELECT 'total', count(*), coalesce(sum(m.prompt_tokens),0), "
        "coalesce(sum(m.completion_tokens),0),"
        " coalesce(sum(m.cost),0), coalesce(sum(m.cached),0), coalesce(sum(m.status='error'),0)"
        " FROM messages m JOIN sessions s ON s.id = m.session_id"
        " WHERE m.role = 'assistant' AND m.timestamp >= ?1 AND (?2 IS NULL OR s.owner IS ?2)",
    [STORE_USAGE_BY_MODEL] =
        "SELECT coalesce(m.model,'(unknown)'), count(*), coalesce(sum(m.prompt_tokens),0),"
        " coalesce(sum(m.completion_tokens),0), coalesce(sum(m.cost),0), coalesce(sum(m.cached),0),"
        " coalesce(sum(m.status='error'),0)"
        " FROM messages m JOIN sessions s ON s.id = m.session_id"
        " WHERE m.role = 'assistant' AND m.timestamp >= ?1 AND (?2 IS NULL OR s.owner IS ?2)"
        " GROUP BY 1 ORDER BY 5 DESC, 1",
    [STORE_USAGE_BY_DAY] =
        "SELECT date(m.timestamp / 1000, 'unixepoch'), count(*), coalesce(sum(m.prompt_tokens),0),"
        " coalesce(sum(m.completion_tokens),0), coalesce(sum(m.cost),0), coalesce(sum(m.cached),0),"
        " coalesce(sum(m.status='error'),0)"
        " FROM messages m JOIN sessions s ON s.id = m.session_id"
        " WHERE m.role = 'assistant' AND m.timestamp >= ?1 AND (?2 IS NULL OR s.owner IS ?2)"
        " GROUP BY 1 ORDER BY 1 DESC",
    [STORE_USAGE_BY_SESSION] =
        "SELECT s.id || ' ' || s.title, count(*), coalesce(sum(m.prompt_tokens),0),"
        " coalesce(sum(m.completion_tokens),0), coalesce(sum(m.cost),0), coalesce(sum(m.cached),0),"
        " coalesce(sum(m.status='error'),0)"
        " FROM messages m JOIN sessions s ON s.id = m.session_id"
        " WHERE m.role = 'assistant' AND m.timestamp >= ?1 AND (?2 IS NULL OR s.owner IS ?2)"
        " GROUP BY s.id ORDER BY 5 DESC, s.id LIMIT 1000",
    [STORE_USAGE_BY_VARIANT] =
        "SELECT m.variant, count(*), coalesce(sum(m.prompt_tokens),0),"
        " coalesce(sum(m.completion_tokens),0), coalesce(sum(m.cost),0), coalesce(sum(m.cached),0),"
        " coalesce(sum(m.status='error'),0)"
        " FROM messages m JOIN sessions s ON s.id = m.session_id"
        " WHERE m.role = 'assistant' AND m.variant IS NOT NULL AND m.timestamp >= ?1"
        " AND (?2 IS NULL OR s.owner IS ?2) GROUP BY 1 ORDER BY 1",
};

int store_usage(store *st, store_usage_by by, int64_t since_ms, const char *owner,
                store_usage_row **out, size_t *n, cf_err *err) {
    *out = NULL;
    *n = 0;
    if ((unsigned)by >= sizeof Q_BY / sizeof *Q_BY)
        return cf_seterr(err, CF_EINVAL, "unknown usage grouping");
    sqlite3_stmt *s = store__stmt(st, Q_BY[by], err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, since_ms);
    store__bind_str(s, 2, owner);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            store_usage_row *a = realloc(*out, cap * sizeof *a);
            if (!a) abort();
            *out = a;
        }
        store_usage_row *r = &(*out)[(*n)++];
        r->key = store__col_dup(s, 0);
        if (!r->key) r->key = strdup("");
        r->replies = sqlite3_column_int64(s, 1);
        r->prompt_tokens = sqlite3_column_int64(s, 2);
        r->completion_tokens = sqlite3_column_int64(s, 3);
        r->cost = sqlite3_column_double(s, 4);
        r->cached = sqlite3_column_int64(s, 5);
        r->errors = sqlite3_column_int64(s, 6);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        store_usage_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store__sqlerr(st, err, "usage totals");
    }
    return 0;
}

void store_usage_free(store_usage_row *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(a[i].key);
    free(a);
}
