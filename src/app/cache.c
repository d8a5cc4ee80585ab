/*
 * cache — SQLite-backed response cache; see cache.h for the contract.
 *
 * Schema (user_version 1):
 *   entries(key PRIMARY KEY, created_ms, accessed_ms, expires_ms, hits,
 *           chunks JSON text, meta JSON text)  + index on accessed_ms
 *   counters(name PRIMARY KEY, value)          hits / misses / evictions
 * Eviction runs after each put: expired rows first, then the least recently
 * accessed rows beyond max_entries. Every statement is prepared once.
 */
#include "app/cache.h"

#include "base/clock.h"
#include "base/hash.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

struct cache {
    sqlite3 *db;
    cache_opts opts;
    sqlite3_stmt *get, *touch, *del, *put, *bump, *evict_expired, *evict_lru, *count;
};

static const char *SCHEMA =
    "CREATE TABLE IF NOT EXISTS entries ("
    "  key TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, accessed_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 0,"
    "  chunks TEXT NOT NULL, meta TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS entries_accessed ON entries(accessed_ms);"
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO counters VALUES ('hits',0),('misses',0),('evictions',0);"
    "PRAGMA user_version = 1;";

static int dberr(cache *c, cf_err *err, const char *what) {
    return cf_seterr(err, CF_EIO, "response cache: %s: %s", what, sqlite3_errmsg(c->db));
}

static int prep(cache *c, sqlite3_stmt **st, const char *sql, cf_err *err) {
    if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return dberr(c, err, "prepare");
    return 0;
}

cache *cache_open(const char *path, const cache_opts *opts, cf_err *err) {
    cache *c = calloc(1, sizeof *c);
    if (!c) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    if (opts) c->opts = *opts;
    if (sqlite3_open_v2(path, &c->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        cf_seterr(err, CF_EIO, "response cache %s: %s", path,
                  c->db ? sqlite3_errmsg(c->db) : "cannot open");
        cache_close(c);
        return NULL;
    }
    sqlite3_busy_timeout(c->db, 5000);
    /* A file that is not a database (or a foreign database) is refused
     * before anything is written to it. */
    sqlite3_stmt *st = NULL;
    int uv = -1;
    if (sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        uv = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (uv < 0) {
        cf_seterr(err, CF_EFORMAT, "response cache %s: not a cache database (%s)", path,
                  sqlite3_errmsg(c->db));
        cache_close(c);
        return NULL;
    }
    if (uv > 1) {
        cf_seterr(err, CF_EFORMAT, "response cache %s: written by a newer confab (version %d)",
                  path, uv);
        cache_close(c);
        return NULL;
    }
    if (uv == 0) {
        /* Version 0 is either new (no tables) or someone else's database. */
        int tables = 0;
        if (sqlite3_prepare_v2(c->db,
                               "SELECT count(*) FROM sqlite_master WHERE name NOT IN "
                               "('entries','counters','entries_accessed')",
                               -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            tables = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (tables > 0) {
            cf_seterr(err, CF_EFORMAT,
                      "response cache %s: the file holds another database; refusing to use it",
                      path);
            cache_close(c);
            return NULL;
        }
    }
    char *msg = NULL;
    if (sqlite3_exec(c->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
        cf_seterr(err, CF_EIO, "response cache %s: %s", path, msg ? msg : "schema");
        sqlite3_free(msg);
        cache_close(c);
        return NULL;
    }
    if (prep(c, &c->get,
             "SELECT chunks, meta, created_ms, expires_ms, hits FROM entries WHERE key = ?", err) ||
        prep(c, &c->touch, "UPDATE entries SET accessed_ms = ?, hits = hits + 1 WHERE key = ?",
             err) ||
        prep(c, &c->del, "DELETE FROM entries WHERE key = ?", err) ||
        prep(c, &c->put,
             "INSERT OR REPLACE INTO entries(key, created_ms, accessed_ms, expires_ms, hits, "
             "chunks, meta) VALUES (?,?,?,?,0,?,?)",
             err) ||
        prep(c, &c->bump, "UPDATE counters SET value = value + ? WHERE name = ?", err) ||
        prep(c, &c->evict_expired, "DELETE FROM entries WHERE expires_ms > 0 AND expires_ms <= ?",
             err) ||
        prep(c, &c->evict_lru,
             "DELETE FROM entries WHERE key IN (SELECT key FROM entries ORDER BY accessed_ms ASC "
             "LIMIT max(0, (SELECT count(*) FROM entries) - ?))",
             err) ||
        prep(c, &c->count,
             "SELECT (SELECT count(*) FROM entries), (SELECT value FROM counters WHERE "
             "name='hits'), (SELECT value FROM counters WHERE name='misses'), (SELECT value FROM "
             "counters WHERE name='evictions')",
             err)) {
        cache_close(c);
        return NULL;
    }
    return c;
}

void cache_close(cache *c) {
    if (!c) return;
    sqlite3_stmt *all[] = {c->get,  c->touch,         c->del,       c->put,
                           c->bump, c->evict_expired, c->evict_lru, c->count};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(c->db);
    free(c);
}

/* --------------------------------------------------------------- the key */

static const char *const SAMPLING_KEYS[] = {"temperature",
                                            "top_p",
                                            "top_k",
                                            "min_p",
                                            "max_tokens",
                                            "max_completion_tokens",
                                            "stop",
                                            "seed",
                                            "presence_penalty",
                                            "frequency_penalty",
                                            "repetition_penalty",
                                            "logit_bias",
                                            "response_format",
                                            "tools",
                                            NULL};

int cache_key(const json_t *req, char out[33], cf_err *err) {
    const json_t *model = json_object_get(req, "model"), *msgs = json_object_get(req, "messages");
    if (!json_is_string(model) || !json_is_array(msgs))
        return cf_seterr(err, CF_EINVAL, "cache key: request needs a model and a messages array");
    json_t *canon = json_object();
    json_object_set(canon, "model", (json_t *)model);
    json_t *cm = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        /* Only what the model sees: role, content, name, tool calls. */
        json_t *x = json_object();
        const char *keep[] = {"role", "content", "name", "tool_calls", "tool_call_id"};
        for (size_t k = 0; k < sizeof keep / sizeof *keep; k++) {
            json_t *v = json_object_get(m, keep[k]);
            if (v) json_object_set(x, keep[k], v);
        }
        json_array_append_new(cm, x);
    }
    json_object_set_new(canon, "messages", cm);
    for (const char *const *k = SAMPLING_KEYS; *k; k++) {
        json_t *v = json_object_get(req, *k);
        if (v && !json_is_null(v)) json_object_set(canon, *k, v);
    }
    char *text = json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(canon);
    if (!text) return cf_seterr(err, CF_ENOMEM, "cache key: cannot serialize request");
    hash_state *h = hash_new(0x636f6e666162ull); /* "confab" */
    hash_update(h, "confab-cache-v1\n", 16);
    hash_update(h, text, strlen(text));
    hash_digest_hex128(h, out);
    hash_free(h);
    free(text);
    return 0;
}

bool cache_eligible(const json_t *req, bool always) {
    const json_t *flag = json_object_get(req, "cache");
    if (json_is_false(flag)) return false;
    if (always) return true;
    const json_t *seed = json_object_get(req, "seed");
    if (seed && json_is_integer(seed)) return true;
    const json_t *t = json_object_get(req, "temperature");
    return t && json_is_number(t) && json_number_value(t) == 0.0;
}

/* ---------------------------------------------------------- get and put */

static void bump(cache *c, const char *name, int64_t by) {
    sqlite3_reset(c->bump);
    sqlite3_bind_int64(c->bump, 1, by);
    sqlite3_bind_text(c->bump, 2, name, -1, SQLITE_STATIC);
    sqlite3_step(c->bump);
}

int cache_get(cache *c, const char *key, cache_entry *e, cf_err *err) {
    memset(e, 0, sizeof *e);
    int64_t now = clock_wall_ms();
    sqlite3_reset(c->get);
    sqlite3_bind_text(c->get, 1, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(c->get);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(c->get);
        bump(c, "misses", 1);
        return 0;
    }
    if (rc != SQLITE_ROW) return dberr(c, err, "lookup");
    int64_t expires = sqlite3_column_int64(c->get, 3);
    if (expires > 0 && expires <= now) {
        sqlite3_reset(c->get);
        sqlite3_reset(c->del);
        sqlite3_bind_text(c->del, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_step(c->del);
        bump(c, "misses", 1);
        bump(c, "evictions", 1);
        return 0;
    }
    json_error_t je;
    e->chunks = json_loads((const char *)sqlite3_column_text(c->get, 0), 0, &je);
    e->meta = json_loads((const char *)sqlite3_column_text(c->get, 1), 0, &je);
    e->created_ms = sqlite3_column_int64(c->get, 2);
    e->hits = sqlite3_column_int64(c->get, 4) + 1;
    sqlite3_reset(c->get);
    if (!json_is_array(e->chunks) || !json_is_object(e->meta)) {
        /* A damaged row is dropped, never served. */
        cache_entry_free(e);
        sqlite3_reset(c->del);
        sqlite3_bind_text(c->del, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_step(c->del);
        bump(c, "misses", 1);
        return 0;
    }
    sqlite3_reset(c->touch);
    sqlite3_bind_int64(c->touch, 1, now);
    sqlite3_bind_text(c->touch, 2, key, -1, SQLITE_TRANSIENT);
    sqlite3_step(c->touch);
    bump(c, "hits", 1);
    return 1;
}

int cache_put(cache *c, const char *key, const json_t *chunks, const json_t *meta, cf_err *err) {
    if (!json_is_array(chunks) || !json_is_object(meta))
        return cf_seterr(err, CF_EINVAL, "cache put: chunks must be an array and meta an object");
    char *cj = json_dumps(chunks, JSON_COMPACT);
    char *mj = json_dumps(meta, JSON_COMPACT | JSON_REAL_PRECISION(15));
    int64_t now = clock_wall_ms();
    int64_t expires = c->opts.ttl_s > 0 ? now + c->opts.ttl_s * 1000 : 0;
    sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    sqlite3_reset(c->put);
    sqlite3_bind_text(c->put, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(c->put, 2, now);
    sqlite3_bind_int64(c->put, 3, now);
    sqlite3_bind_int64(c->put, 4, expires);
    sqlite3_bind_text(c->put, 5, cj, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(c->put, 6, mj, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(c->put);
    free(cj);
    free(mj);
    if (rc != SQLITE_DONE) {
        int e = dberr(c, err, "store");
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return e;
    }
    int64_t evicted = 0;
    sqlite3_reset(c->evict_expired);
    sqlite3_bind_int64(c->evict_expired, 1, now);
    sqlite3_step(c->evict_expired);
    evicted += sqlite3_changes(c->db);
    if (c->opts.max_entries > 0) {
        sqlite3_reset(c->evict_lru);
        sqlite3_bind_int64(c->evict_lru, 1, c->opts.max_entries);
        sqlite3_step(c->evict_lru);
        evicted += sqlite3_changes(c->db);
    }
    if (evicted) bump(c, "evictions", evicted);
    if (sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        int e = dberr(c, err, "commit");
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return e;
    }
    return 0;
}

void cache_entry_free(cache_entry *e) {
    json_decref(e->chunks);
    json_decref(e->meta);
    e->chunks = e->meta = NULL;
}

int cache_get_stats(cache *c, cache_stats *out, cf_err *err) {
    sqlite3_reset(c->count);
    if (sqlite3_step(c->count) != SQLITE_ROW) return dberr(c, err, "stats");
    out->entries = sqlite3_column_int64(c->count, 0);
    out->hits = sqlite3_column_int64(c->count, 1);
    out->misses = sqlite3_column_int64(c->count, 2);
    out->evictions = sqlite3_column_int64(c->count, 3);
    sqlite3_reset(c->count);
    return 0;
}

int cache_clear(cache *c, cf_err *err) {
    if (sqlite3_exec(c->db, "DELETE FROM entries", NULL, NULL, NULL) != SQLITE_OK)
        return dberr(c, err, "clear");
    return 0;
}
