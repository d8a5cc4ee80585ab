/* Tests for src/base: string builder, UTF-8, errors, logging levels, hashing,
 * clock and the bounded event queue. */
#include "base/clock.h"
#include "base/cpu.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/path.h"
#include "base/queue.h"
#include "base/sb.h"
#include "base/utf8.h"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ sb */

static void sb_appends_and_formats(void **st) {
    (void)st;
    sb_t s = {0};
    assert_string_equal(sb_str(&s), "");
    sb_append(&s, "hello");
    sb_putc(&s, ' ');
    sb_printf(&s, "%d-%s", 42, "x");
    assert_string_equal(s.data, "hello 42-x");
    assert_int_equal(s.len, 10);
    sb_truncate(&s, 5);
    assert_string_equal(s.data, "hello");
    sb_clear(&s);
    assert_int_equal(s.len, 0);
    assert_string_equal(s.data, "");
    sb_free(&s);
    assert_null(s.data);
}

static void sb_grows_past_large_printf(void **st) {
    (void)st;
    sb_t s = {0};
    char big[1000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    for (int i = 0; i < 100; i++)
        sb_printf(&s, "%s|", big);
    assert_int_equal(s.len, 100 * 1000);
    assert_int_equal(s.data[999], '|');
    assert_int_equal(s.data[s.len - 1], '|');
    char *t = sb_take(&s);
    assert_int_equal(strlen(t), 100000);
    assert_null(s.data);
    free(t);
}

static void sb_keeps_binary_bytes(void **st) {
    (void)st;
    sb_t s = {0};
    sb_appendn(&s, "a\0b", 3);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.data, "a\0b", 3);
    assert_int_equal(s.data[3], 0);
    sb_free(&s);
}

static void sb_escapes_json(void **st) {
    (void)st;
    sb_t s = {0};
    const char *in = "a\"b\\c\n\x01é";
    sb_append_json_str(&s, in, strlen(in));
    assert_string_equal(s.data, "\"a\\\"b\\\\c\\n\\u0001é\"");
    sb_free(&s);
}

/* ---------------------------------------------------------------- utf8 */

static void utf8_accepts_valid_and_rejects_invalid(void **st) {
    (void)st;
    const char *ok = "plain ascii, é, 中文, 😀";
    assert_true(utf8_valid(ok, strlen(ok), NULL));
    size_t bad;
    assert_false(utf8_valid("ab\xC0\xAF", 4, &bad)); /* overlong '/' */
    assert_int_equal(bad, 2);
    assert_false(utf8_valid("\xED\xA0\x80", 3, &bad)); /* surrogate */
    assert_int_equal(bad, 0);
    assert_false(utf8_valid("\xF4\x90\x80\x80", 4, NULL)); /* > U+10FFFF */
    assert_false(utf8_valid("x\xE4\xB8", 3, &bad));        /* truncated */
    assert_int_equal(bad, 1);
    assert_false(utf8_valid("\x80", 1, NULL)); /* lone continuation */
}

static void utf8_decodes_and_encodes_round_trip(void **st) {
    (void)st;
    uint32_t cps[] = {0x24, 0xA2, 0x20AC, 0x10348, 0x10FFFF};
    for (size_t i = 0; i < sizeof cps / sizeof *cps; i++) {
        char buf[4];
        int n = utf8_encode(cps[i], buf);
        assert_int_equal(n, (int)i < 4 ? (int)i + 1 : 4);
        uint32_t cp;
        assert_int_equal(utf8_decode(buf, (size_t)n, &cp), n);
        assert_int_equal(cp, cps[i]);
    }
    char buf[4];
    assert_int_equal(utf8_encode(0xD800, buf), 0);
    assert_int_equal(utf8_encode(0x110000, buf), 0);
    assert_int_equal(utf8_count("a中😀", strlen("a中😀")), 3);
}

static void utf8_holds_back_incomplete_tail(void **st) {
    (void)st;
    const char *s = "ok\xE4\xB8\xAD"; /* "ok中" */
    assert_int_equal(utf8_complete_len(s, 5), 5);
    assert_int_equal(utf8_complete_len(s, 4), 2); /* two of three bytes */
    assert_int_equal(utf8_complete_len(s, 3), 2);
    assert_int_equal(utf8_complete_len(s, 2), 2);
    const char *emoji = "\xF0\x9F\x98\x80";
    assert_int_equal(utf8_complete_len(emoji, 3), 0);
    assert_int_equal(utf8_complete_len(emoji, 4), 4);
    /* An invalid byte is not held back (it will never complete). */
    assert_int_equal(utf8_complete_len("a\xFF", 2), 2);
    /* A lead that can never be valid with what follows is not held. */
    assert_int_equal(utf8_complete_len("a\xE0\x80", 3), 3);
}

/* ----------------------------------------------------------------- err */

static void err_formats_and_prefixes_context(void **st) {
    (void)st;
    cf_err e = {0};
    int rc = cf_seterr(&e, CF_EFORMAT, "bad magic 0x%08x", 0xdeadbeefu);
    assert_int_equal(rc, CF_EFORMAT);
    assert_string_equal(e.msg, "bad magic 0xdeadbeef");
    cf_errctx(&e, "loading %s", "m.gguf");
    assert_string_equal(e.msg, "loading m.gguf: bad magic 0xdeadbeef");
    assert_string_equal(cf_strerror(e.code), "format");
    assert_int_equal(cf_seterr(NULL, CF_EIO, "ignored"), CF_EIO);
    cf_errclear(&e);
    assert_int_equal(e.code, 0);
    assert_string_equal(e.msg, "");
}

/* ----------------------------------------------------------------- log */

static void log_parses_levels_and_filters(void **st) {
    (void)st;
    log_level l;
    assert_int_equal(log_parse_level("debug", &l), 0);
    assert_int_equal(l, LOG_DEBUG);
    assert_int_equal(log_parse_level("WARNING", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_parse_level("loud", &l), -1);
    /* Capture stderr to check that filtered levels print nothing. */
    fflush(stderr);
    int saved = dup(2);
    char path[] = "/tmp/confab-log-XXXXXX";
    int fd = mkstemp(path);
    dup2(fd, 2);
    log_set_level(LOG_WARN);
    log_info("test", "hidden %d", 1);
    log_warn("test", "shown %d", 2);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    log_set_level(LOG_INFO);
    size_t n;
    char *out = tu_read_file(path, &n);
    close(fd);
    unlink(path);
    assert_non_null(out);
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, "warn  test: shown 2\n"));
    free(out);
}

/* ---------------------------------------------------------------- hash */

static void hash_is_deterministic_and_incremental(void **st) {
    (void)st;
    const char *a = "the quick brown fox";
    uint64_t h1 = hash64(a, strlen(a), 0), h2 = hash64(a, strlen(a), 0);
    assert_true(h1 == h2);
    assert_true(h1 != hash64(a, strlen(a), 1));
    assert_true(h1 != hash64("the quick brown fix", 19, 0));
    hash_state *h = hash_new(0);
    hash_update(h, "the quick ", 10);
    hash_update(h, "brown fox", 9);
    assert_true(hash_digest(h) == h1);
    char hex[33];
    hash_digest_hex128(h, hex);
    assert_int_equal(strlen(hex), 32);
    hash_free(h);
}

/* --------------------------------------------------------------- clock */

static void clock_is_monotonic_and_formats_iso(void **st) {
    (void)st;
    uint64_t a = clock_mono_ns();
    clock_sleep_ms(5);
    uint64_t b = clock_mono_ns();
    assert_true(b - a >= 5000000ull);
    char buf[32];
    clock_iso8601(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    clock_iso8601(1732442400123LL, buf);
    assert_string_equal(buf, "2024-11-24T10:00:00.123Z");
    assert_true(clock_wall_ms() > 1700000000000LL);
}

/* --------------------------------------------------------------- queue */

static void queue_is_fifo_and_bounded(void **st) {
    (void)st;
    cf_queue *q = queue_new(2);
    int a = 1, b = 2, c = 3;
    assert_int_equal(queue_push(q, &a, 0), 0);
    assert_int_equal(queue_push(q, &b, 0), 0);
    assert_int_equal(queue_push(q, &c, 0), CF_ETIMEOUT); /* full */
    assert_int_equal(queue_push(q, &c, 20), CF_ETIMEOUT);
    assert_int_equal(queue_len(q), 2);
    void *out;
    assert_int_equal(queue_pop(q, &out, 0), 0);
    assert_ptr_equal(out, &a);
    assert_int_equal(queue_pop(q, &out, 0), 0);
    assert_ptr_equal(out, &b);
    assert_int_equal(queue_pop(q, &out, 10), CF_ETIMEOUT);
    queue_free(q);
}

static void queue_close_drains_then_fails(void **st) {
    (void)st;
    cf_queue *q = queue_new(4);
    int a = 1;
    queue_push(q, &a, 0);
    queue_close(q);
    assert_int_equal(queue_push(q, &a, 0), CF_ECLOSED);
    void *out;
    assert_int_equal(queue_pop(q, &out, -1), 0);
    assert_ptr_equal(out, &a);
    assert_int_equal(queue_pop(q, &out, -1), CF_ECLOSED);
    queue_free(q);
}

typedef struct {
    cf_queue *q;
    int start, count;
} producer_arg;

static void *producer(void *p) {
    producer_arg *pa = p;
    for (int i = 0; i < pa->count; i++)
        queue_push(pa->q, (void *)(intptr_t)(pa->start + i + 1), -1);
    return NULL;
}

static void *closer(void *p) {
    clock_sleep_ms(30);
    queue_close(p);
    return NULL;
}

static void queue_delivers_every_item_across_threads(void **st) {
    (void)st;
    cf_queue *q = queue_new(8);
    enum { PER = 5000, NP = 3 };
    pthread_t th[NP];
    producer_arg args[NP];
    for (int i = 0; i < NP; i++) {
        args[i] = (producer_arg){q, i * PER, PER};
        pthread_create(&th[i], NULL, producer, &args[i]);
    }
    static unsigned char seen[NP * PER + 1];
    memset(seen, 0, sizeof seen);
    long sum = 0;
    for (int i = 0; i < NP * PER; i++) {
        void *out;
        assert_int_equal(queue_pop(q, &out, 5000), 0);
        intptr_t v = (intptr_t)out;
        assert_true(v >= 1 && v <= NP * PER);
        assert_int_equal(seen[v], 0);
        seen[v] = 1;
        sum += v;
    }
    for (int i = 0; i < NP; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(sum, (long)NP * PER * (NP * PER + 1) / 2);
    /* A blocked consumer is woken by close. */
    pthread_t t;
    pthread_create(&t, NULL, closer, q);
    void *out;
    assert_int_equal(queue_pop(q, &out, -1), CF_ECLOSED);
    pthread_join(t, NULL);
    queue_free(q);
}

/* ---------------------------------------------------------------- path */

static void path_joins_relative_and_keeps_absolute(void **st) {
    (void)st;
    char *a = path_join("./data", "confab.db"), *b = path_join("./data", "/srv/x.db");
    assert_string_equal(a, "./data/confab.db");
    assert_string_equal(b, "/srv/x.db");
    free(a);
    free(b);
}

static void path_mkdir_p_creates_parents_and_refuses_files(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    char *deep = path_join(dir, "a/b/c");
    assert_int_equal(path_mkdir_p(deep), 0);
    assert_int_equal(path_mkdir_p(deep), 0); /* existing is fine */
    char *file = path_join(dir, "f");
    tu_write_file(file, "x", 1);
    assert_int_equal(path_mkdir_p(file), -1);
    assert_int_equal(errno, ENOTDIR);
    free(deep);
    free(file);
    tu_rmtree(dir);
    free(dir);
}

/* ----------------------------------------------------------------- cpu */

static void cpu_reports_consistent_features(void **st) {
    (void)st;
    const cpu_features *c = cpu_get();
    if (cpu_has_avx512()) assert_true(cpu_has_avx2());
    if (cpu_has_avx2()) assert_true(c->avx2 && c->fma);
    assert_true(strlen(cpu_describe()) > 0);
    assert_true(cpu_count() >= 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sb_appends_and_formats),
        cmocka_unit_test(sb_grows_past_large_printf),
        cmocka_unit_test(sb_keeps_binary_bytes),
        cmocka_unit_test(sb_escapes_json),
        cmocka_unit_test(utf8_accepts_valid_and_rejects_invalid),
        cmocka_unit_test(utf8_decodes_and_encodes_round_trip),
        cmocka_unit_test(utf8_holds_back_incomplete_tail),
        cmocka_unit_test(err_formats_and_prefixes_context),
        cmocka_unit_test(log_parses_levels_and_filters),
        cmocka_unit_test(hash_is_deterministic_and_incremental),
        cmocka_unit_test(clock_is_monotonic_and_formats_iso),
        cmocka_unit_test(queue_is_fifo_and_bounded),
        cmocka_unit_test(queue_close_drains_then_fails),
        cmocka_unit_test(queue_delivers_every_item_across_threads),
        cmocka_unit_test(path_joins_relative_and_keeps_absolute),
        cmocka_unit_test(path_mkdir_p_creates_parents_and_refuses_files),
        cmocka_unit_test(cpu_reports_consistent_features),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
