/*
 * cache — the response cache: replies to repeated deterministic requests,
 * kept in their own SQLite file (as Python's diskcache does), so a repeated
 * question is answered at once and identically.
 *
 * Key: a 128-bit hash of the canonical request — model, messages (role and
 * content), and the sampling parameters that change the output (temperature,
 * top_p, top_k, min_p, max_tokens, stop, seed, penalties), serialized as JSON
 * with sorted keys — so field order, `stream`, `user` or a session id do not
 * change it. A request is eligible when deterministic (temperature 0, or a
 * seed given) or when the cache is configured `always`; a request may bypass
 * it. An entry keeps the reply's chunks, so a hit replays as a stream with
 * the same chunking; entries expire after a TTL and the least recently used
 * go first past max_entries. Hit and miss counts persist in the file.
 *
 * Threads: one cache handle is one SQLite connection; use one handle per
 * thread (WAL mode lets them share the file).
 */
#ifndef CONFAB_APP_CACHE_H
#define CONFAB_APP_CACHE_H

#include "base/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct cache cache;

typedef struct {
    int64_t ttl_s;       /* 0 = never expire */
    int64_t max_entries; /* 0 = unbounded */
} cache_opts;

/* Opens (creating) the cache file at PATH. NULL with ERR set on failure,
 * e.g. when the file exists but is not a cache database. */
cache *cache_open(const char *path, const cache_opts *opts, cf_err *err);
void cache_close(cache *c);

/* Key of a chat request (a JSON object in OpenAI's chat-completions shape
 * plus confab's extra sampling fields) into OUT as 32 hex chars. Returns 0,
 * or CF_EINVAL when REQ lacks model or messages. */
int cache_key(const json_t *req, char out[33], cf_err *err);

/* True when REQ may be served from / stored in the cache: not bypassed
 * (`"cache": false`) and deterministic or ALWAYS. */
bool cache_eligible(const json_t *req, bool always);

typedef struct {
    json_t *chunks; /* array of strings, the reply as it was streamed */
    json_t *meta;   /* object: usage, finish_reason, model, provider ... */
    int64_t created_ms;
    int64_t hits; /* times served, this one included */
} cache_entry;

/* Looks KEY up. Returns 1 and fills E on a hit (caller frees with
 * cache_entry_free), 0 on a miss (expired entries count as misses and are
 * removed), negative on error. Updates recency and the hit/miss counters. */
int cache_get(cache *c, const char *key, cache_entry *e, cf_err *err);

/* Stores a reply under KEY (replacing any), then evicts expired and excess
 * entries. CHUNKS: array of strings; META: object (both borrowed). */
int cache_put(cache *c, const char *key, const json_t *chunks, const json_t *meta, cf_err *err);

void cache_entry_free(cache_entry *e);

typedef struct {
    int64_t hits, misses, entries, evictions;
} cache_stats;

int cache_get_stats(cache *c, cache_stats *out, cf_err *err);
/* Removes every entry (counters are kept). */
int cache_clear(cache *c, cf_err *err);

#endif
