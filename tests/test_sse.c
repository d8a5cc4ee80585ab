/* Tests for src/providers/sse.c: the incremental Server-Sent Events parser,
 * fed whole, byte by byte and at every split point. */
#include "base/err.h"
#include "base/sb.h"
#include "providers/sse.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

/* Collects events as "event|data|id" lines. */
typedef struct {
    sb_t out;
    int stop_after; /* 0 = never stop */
    int n;
} collect;

static int on_ev(void *ud, const sse_event *ev) {
    collect *c = ud;
    sb_printf(&c->out, "%s|", ev->event);
    sb_appendn(&c->out, ev->data, ev->data_len);
    sb_printf(&c->out, "|%s\n", ev->id);
    c->n++;
    return (c->stop_after && c->n >= c->stop_after) ? 7 : 0;
}

/* Parses INPUT split into pieces of size STEP (0 = whole). */
static char *parse(const char *input, size_t len, size_t step) {
    sse_parser p;
    sse_init(&p, 0);
    collect c = {0};
    if (!step) step = len ? len : 1;
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        assert_int_equal(sse_feed(&p, input + i, n, on_ev, &c), 0);
    }
    sse_free(&p);
    sb_putc(&c.out, 0);
    return sb_take(&c.out);
}

static void sse_parses_openai_style_data_lines(void **st) {
    (void)st;
    const char *in = "data: {\"a\":1}\n\ndata: [DONE]\n\n";
    char *out = parse(in, strlen(in), 0);
    assert_string_equal(out, "|{\"a\":1}|\n|[DONE]|\n");
    free(out);
}

static void sse_keeps_event_and_id_fields(void **st) {
    (void)st;
    const char *in = "event: message_start\nid: 7\ndata: x\n\nevent: ping\ndata: y\n\ndata: z\n\n";
    char *out = parse(in, strlen(in), 0);
    /* The event type resets after dispatch; the id persists. */
    assert_string_equal(out, "message_start|x|7\nping|y|7\n|z|7\n");
    free(out);
}

static void sse_joins_multiline_data_with_lf(void **st) {
    (void)st;
    const char *in = "data: one\ndata:two\ndata:  three\n\n";
    char *out = parse(in, strlen(in), 0);
    /* Only one leading space is stripped. */
    assert_string_equal(out, "|one\ntwo\n three|\n");
    free(out);
}

static void sse_accepts_crlf_cr_and_lf_line_ends(void **st) {
    (void)st;
    const char *in = "data: a\r\n\r\ndata: b\r\rdata: c\n\n";
    char *out = parse(in, strlen(in), 0);
    assert_string_equal(out, "|a|\n|b|\n|c|\n");
    free(out);
}

static void sse_ignores_comments_and_unknown_fields(void **st) {
    (void)st;
    const char *in = ": keep-alive\n\nretry: 100\nfoo: bar\ndata: d\n: inside\n\n";
    sse_parser p;
    sse_init(&p, 0);
    collect c = {0};
    assert_int_equal(sse_feed(&p, in, strlen(in), on_ev, &c), 0);
    assert_string_equal(sb_str(&c.out), "|d|\n");
    assert_int_equal(p.n_comments, 2);
    sse_free(&p);
    sb_free(&c.out);
}

static void sse_does_not_dispatch_event_without_data(void **st) {
    (void)st;
    const char *in = "event: lonely\n\ndata:\n\n";
    char *out = parse(in, strlen(in), 0);
    /* "event:" alone dispatches nothing; an empty data line is an empty event. */
    assert_string_equal(out, "||\n");
    free(out);
}

static void sse_gives_same_events_at_every_split_point(void **st) {
    (void)st;
    const char *in = "\xEF\xBB\xBF"
                     "event: a\r\ndata: h\xC3\xA9llo\r\n\r\n: c\r\ndata: 2\r\nid: q\r\n\r\n";
    size_t len = strlen(in);
    char *whole = parse(in, len, 0);
    assert_string_equal(whole, "a|h\xC3\xA9llo|\n|2|q\n");
    for (size_t step = 1; step <= len; step++) {
        char *got = parse(in, len, step);
        assert_string_equal(got, whole);
        free(got);
    }
    /* Two pieces split at every position. */
    for (size_t cut = 0; cut <= len; cut++) {
        sse_parser p;
        sse_init(&p, 0);
        collect c = {0};
        assert_int_equal(sse_feed(&p, in, cut, on_ev, &c), 0);
        assert_int_equal(sse_feed(&p, in + cut, len - cut, on_ev, &c), 0);
        assert_string_equal(sb_str(&c.out), whole);
        sse_free(&p);
        sb_free(&c.out);
    }
    free(whole);
}

static void sse_reports_pending_partial_event(void **st) {
    (void)st;
    sse_parser p;
    sse_init(&p, 0);
    collect c = {0};
    const char *in = "data: done\n\ndata: half";
    assert_int_equal(sse_feed(&p, in, strlen(in), on_ev, &c), 0);
    assert_int_equal(c.n, 1);
    assert_true(sse_pending(&p));
    assert_int_equal(sse_feed(&p, "\n\n", 2, on_ev, &c), 0);
    assert_false(sse_pending(&p));
    assert_int_equal(c.n, 2);
    sse_free(&p);
    sb_free(&c.out);
}

static void sse_rejects_line_over_limit(void **st) {
    (void)st;
    sse_parser p;
    sse_init(&p, 16);
    collect c = {0};
    assert_int_equal(sse_feed(&p, "data: 0123456789", 16, on_ev, &c), 0);
    assert_int_equal(sse_feed(&p, "ABCDEF", 6, on_ev, &c), CF_EFORMAT);
    sse_free(&p);
    sse_init(&p, 16);
    /* Many short data lines that add up past the limit. */
    int rc = 0;
    for (int i = 0; i < 10 && !rc; i++)
        rc = sse_feed(&p, "data: abcd\n", 11, on_ev, &c);
    assert_int_equal(rc, CF_EFORMAT);
    assert_int_equal(c.n, 0);
    sse_free(&p);
    sb_free(&c.out);
}

static void sse_stops_when_callback_says_so(void **st) {
    (void)st;
    sse_parser p;
    sse_init(&p, 0);
    collect c = {.stop_after = 1};
    const char *in = "data: 1\n\ndata: 2\n\n";
    assert_int_equal(sse_feed(&p, in, strlen(in), on_ev, &c), 7);
    assert_int_equal(c.n, 1);
    sse_free(&p);
    sb_free(&c.out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sse_parses_openai_style_data_lines),
        cmocka_unit_test(sse_keeps_event_and_id_fields),
        cmocka_unit_test(sse_joins_multiline_data_with_lf),
        cmocka_unit_test(sse_accepts_crlf_cr_and_lf_line_ends),
        cmocka_unit_test(sse_ignores_comments_and_unknown_fields),
        cmocka_unit_test(sse_does_not_dispatch_event_without_data),
        cmocka_unit_test(sse_gives_same_events_at_every_split_point),
        cmocka_unit_test(sse_reports_pending_partial_event),
        cmocka_unit_test(sse_rejects_line_over_limit),
        cmocka_unit_test(sse_stops_when_callback_says_so),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
