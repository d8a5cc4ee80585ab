/* Tests for src/app/cache: the response cache's key, eligibility, replay,
 * TTL, LRU eviction, persistence of counters, and refusal of bad files. */
#include "app/cache.h"
#include "base/clock.h"
#include "testutil.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *req(const char *text) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j) fail_msg("bad test JSON: %s", je.text);
    return j;
}

static void key(const char *json, char out[33]) {
    json_t *r = req(json);
    assert_int_equal(cache_key(r, out, NULL), 0);
    json_decref(r);
}

static void key_ignores_field_order_and_transport_fields(void **st) {
    (void)st;
    char a[33], b[33], c[33];
    key("{\"model\":\"m\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        a);
    key("{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\"temperature\":0,\"model\":\"m\","
        "\"stream\":true,\"session_id\":7,\"user\":\"x\"}",
        b);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 32);
    key("{\"model\":\"m\",\"temperature\":0.7,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
        "}",
        c);
    assert_string_not_equal(a, c);
    key("{\"model\":\"m2\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
        "}",
        c);
    assert_string_not_equal(a, c);
    key("{\"model\":\"m\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi!\"}]"
        "}",
        c);
    assert_string_not_equal(a, c);
    key("{\"model\":\"m\",\"temperature\":0,\"seed\":1,\"messages\":[{\"role\":\"user\","
        "\"content\":\"hi\"}]}",
        c);
    assert_string_not_equal(a, c);
}

static void key_needs_model_and_messages(void **st) {
    (void)st;
    char k[33];
    cf_err err = {0};
    json_t *r = req("{\"messages\":[]}");
    assert_int_equal(cache_key(r, k, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "model"));
    json_decref(r);
}

static void only_deterministic_requests_are_eligible(void **st) {
    (void)st;
    json_t *t0 = req("{\"temperature\":0}"), *t7 = req("{\"temperature\":0.7}"),
           *seeded = req("{\"temperature\":0.7,\"seed\":42}"),
           *bypass = req("{\"temperature\":0,\"cache\":false}"), *none = req("{}");
    assert_true(cache_eligible(t0, false));
    assert_false(cache_eligible(t7, false));
    assert_true(cache_eligible(seeded, false));
    assert_false(cache_eligible(bypass, false));
    assert_false(cache_eligible(bypass, true));
    assert_false(cache_eligible(none, false)); /* default temperature is not 0 */
    assert_true(cache_eligible(t7, true));
    json_decref(t0);
    json_decref(t7);
    json_decref(seeded);
    json_decref(bypass);
    json_decref(none);
}

static char *tmpfile_in(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static void hit_replays_the_same_chunks(void **st) {
    (void)st;
    char *dir = tu_tmpdir(), *path = tmpfile_in(dir, "cache.db");
    cf_err err = {0};
    cache_opts o = {.ttl_s = 3600, .max_entries = 100};
    cache *c = cache_open(path, &o, &err);
    assert_non_null(c);
    cache_entry e;
    assert_int_equal(cache_get(c, "k1", &e, &err), 0);
    json_t *chunks = req("[\"Hel\",\"lo \",\"wörld\"]"),
           *meta = req("{\"finish_reason\":\"stop\",\"completion_tokens\":3}");
    assert_int_equal(cache_put(c, "k1", chunks, meta, &err), 0);
    assert_int_equal(cache_get(c, "k1", &e, &err), 1);
    assert_true(json_equal(e.chunks, chunks));
    assert_string_equal(json_string_value(json_object_get(e.meta, "finish_reason")), "stop");
    assert_int_equal(e.hits, 1);
    cache_entry_free(&e);
    assert_int_equal(cache_get(c, "k1", &e, &err), 1);
    assert_int_equal(e.hits, 2);
    cache_entry_free(&e);
    cache_stats s;
    assert_int_equal(cache_get_stats(c, &s, &err), 0);
    assert_int_equal(s.hits, 2);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.entries, 1);
    cache_close(c);
    /* Counters and entries survive a reopen. */
    c = cache_open(path, &o, &err);
    assert_int_equal(cache_get_stats(c, &s, &err), 0);
    assert_int_equal(s.hits, 2);
    assert_int_equal(s.entries, 1);
    assert_int_equal(cache_clear(c, &err), 0);
    assert_int_equal(cache_get(c, "k1", &e, &err), 0);
    cache_close(c);
    json_decref(chunks);
    json_decref(meta);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

static void entries_expire_after_ttl(void **st) {
    (void)st;
    char *dir = tu_tmpdir(), *path = tmpfile_in(dir, "cache.db");
    cf_err err = {0};
    cache_opts o = {.ttl_s = 1, .max_entries = 0};
    cache *c = cache_open(path, &o, &err);
    json_t *chunks = req("[\"x\"]"), *meta = req("{}");
    cache_put(c, "k", chunks, meta, &err);
    cache_entry e;
    assert_int_equal(cache_get(c, "k", &e, &err), 1);
    cache_entry_free(&e);
    clock_sleep_ms(1100);
    assert_int_equal(cache_get(c, "k", &e, &err), 0);
    cache_stats s;
    cache_get_stats(c, &s, &err);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.evictions, 1);
    cache_close(c);
    json_decref(chunks);
    json_decref(meta);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

static void least_recently_used_is_evicted_first(void **st) {
    (void)st;
    char *dir = tu_tmpdir(), *path = tmpfile_in(dir, "cache.db");
    cf_err err = {0};
    cache_opts o = {.ttl_s = 0, .max_entries = 3};
    cache *c = cache_open(path, &o, &err);
    json_t *chunks = req("[\"x\"]"), *meta = req("{}");
    cache_entry e;
    cache_put(c, "a", chunks, meta, &err);
    clock_sleep_ms(3);
    cache_put(c, "b", chunks, meta, &err);
    clock_sleep_ms(3);
    cache_put(c, "c", chunks, meta, &err);
    clock_sleep_ms(3);
    assert_int_equal(cache_get(c, "a", &e, &err), 1); /* a is now the most recent */
    cache_entry_free(&e);
    clock_sleep_ms(3);
    cache_put(c, "d", chunks, meta, &err); /* evicts b */
    assert_int_equal(cache_get(c, "b", &e, &err), 0);
    assert_int_equal(cache_get(c, "a", &e, &err), 1);
    cache_entry_free(&e);
    assert_int_equal(cache_get(c, "c", &e, &err), 1);
    cache_entry_free(&e);
    assert_int_equal(cache_get(c, "d", &e, &err), 1);
    cache_entry_free(&e);
    cache_stats s;
    cache_get_stats(c, &s, &err);
    assert_int_equal(s.entries, 3);
    assert_int_equal(s.evictions, 1);
    cache_close(c);
    json_decref(chunks);
    json_decref(meta);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

static void garbage_file_is_refused_and_left_untouched(void **st) {
    (void)st;
    char *dir = tu_tmpdir(), *path = tmpfile_in(dir, "cache.db");
    const char junk[] = "this is not a sqlite database, just some text that must survive\n";
    char big[4096];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = junk[i % (sizeof junk - 1)];
    tu_write_file(path, big, sizeof big);
    cf_err err = {0};
    assert_null(cache_open(path, NULL, &err));
    assert_int_equal(err.code, CF_EFORMAT);
    assert_non_null(strstr(err.msg, "not a cache database"));
    size_t n;
    char *after = tu_read_file(path, &n);
    assert_int_equal(n, sizeof big);
    assert_memory_equal(after, big, n);
    free(after);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

static void foreign_database_is_refused(void **st) {
    (void)st;
    char *dir = tu_tmpdir(), *path = tmpfile_in(dir, "other.db");
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db,
                 "CREATE TABLE sessions(id INTEGER PRIMARY KEY); INSERT INTO sessions VALUES (1);",
                 NULL, NULL, NULL);
    sqlite3_close(db);
    cf_err err = {0};
    assert_null(cache_open(path, NULL, &err));
    assert_non_null(strstr(err.msg, "another database"));
    sqlite3_open(path, &db);
    sqlite3_stmt *q;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM sessions", -1, &q, NULL);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 1);
    sqlite3_finalize(q);
    sqlite3_close(db);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

static void damaged_row_is_dropped_not_served(void **st) {
    (void)st;
    char *dir = tu_tmpdir(), *path = tmpfile_in(dir, "cache.db");
    cf_err err = {0};
    cache *c = cache_open(path, NULL, &err);
    json_t *chunks = req("[\"x\"]"), *meta = req("{}");
    cache_put(c, "k", chunks, meta, &err);
    cache_close(c);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "UPDATE entries SET chunks = '[broken'", NULL, NULL, NULL);
    sqlite3_close(db);
    c = cache_open(path, NULL, &err);
    cache_entry e;
    assert_int_equal(cache_get(c, "k", &e, &err), 0);
    cache_stats s;
    cache_get_stats(c, &s, &err);
    assert_int_equal(s.entries, 0);
    cache_close(c);
    json_decref(chunks);
    json_decref(meta);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

static void put_rejects_wrong_shapes(void **st) {
    (void)st;
    char *dir = tu_tmpdir(), *path = tmpfile_in(dir, "cache.db");
    cf_err err = {0};
    cache *c = cache_open(path, NULL, &err);
    json_t *obj = req("{}");
    assert_int_equal(cache_put(c, "k", obj, obj, &err), CF_EINVAL);
    cache_close(c);
    json_decref(obj);
    tu_rmtree(dir);
    free(dir);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_ignores_field_order_and_transport_fields),
        cmocka_unit_test(key_needs_model_and_messages),
        cmocka_unit_test(only_deterministic_requests_are_eligible),
        cmocka_unit_test(hit_replays_the_same_chunks),
        cmocka_unit_test(entries_expire_after_ttl),
        cmocka_unit_test(least_recently_used_is_evicted_first),
        cmocka_unit_test(garbage_file_is_refused_and_left_untouched),
        cmocka_unit_test(foreign_database_is_refused),
        cmocka_unit_test(damaged_row_is_dropped_not_served),
        cmocka_unit_test(put_rejects_wrong_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
