/* Tests for src/store: schema and migrations, sessions, messages, the
 * streaming writer, auto-titles, recovery (including a SIGKILLed writer),
 * A/B votes, and bad databases. */
#include "base/sb.h"
#include "base/utf8.h"
#include "store_fixture.h"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------ sessions */

static void session_create_get_keeps_every_field(void **state) {
    store_fx *f = *state;
    store_session in = {0};
    in.title = "Trip planning";
    in.system_prompt = "You are terse.";
    in.model = "qwen2-0.5b";
    in.params = "{\"temperature\":0.2}";
    in.owner = "alice";
    in.created_at = 1700000000123;
    int64_t id = 0;
    cf_err err = {0};
    assert_int_equal(store_session_create(f->st, &in, &id, &err), 0);
    store_session out;
    assert_int_equal(store_session_get(f->st, id, &out, &err), 0);
    assert_int_equal(out.id, id);
    assert_true(store_uuid_valid(out.uuid));
    assert_string_equal(out.title, "Trip planning");
    assert_string_equal(out.system_prompt, "You are terse.");
    assert_string_equal(out.model, "qwen2-0.5b");
    assert_string_equal(out.params, "{\"temperature\":0.2}");
    assert_string_equal(out.owner, "alice");
    assert_false(out.archived);
    assert_int_equal(out.created_at, 1700000000123);
    assert_int_equal(out.updated_at, 1700000000123);
    assert_int_equal(out.message_count, 0);
    int64_t found = 0;
    assert_int_equal(store_session_find(f->st, out.uuid, &found, &err), 0);
    assert_int_equal(found, id);
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)id);
    assert_int_equal(store_session_find(f->st, num, &found, &err), 0);
    assert_int_equal(found, id);
    store_session_clear(&out);
}

static void session_create_rejects_params_that_are_not_an_object(void **state) {
    store_fx *f = *state;
    store_session in = {0};
    in.params = "[1,2]";
    cf_err err = {0};
    assert_int_equal(store_session_create(f->st, &in, NULL, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "JSON object"));
    in.params = "{not json";
    assert_int_equal(store_session_create(f->st, &in, NULL, &err), CF_EINVAL);
    in.params = NULL;
    memcpy(in.uuid, "not-a-uuid", 11);
    assert_int_equal(store_session_create(f->st, &in, NULL, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "uuid"));
}

static void session_update_replaces_settings_and_checks_them(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "keep my title");
    store_session up = {0};
    up.system_prompt = "Answer in French.";
    up.model = "mistral";
    up.params = "{\"temperature\":1.1}";
    up.owner = "carol";
    cf_err err = {0};
    assert_int_equal(store_session_update(f->st, sid, &up, &err), 0);
    store_session g;
    assert_int_equal(store_session_get(f->st, sid, &g, &err), 0);
    assert_string_equal(g.title, "keep my title");
    assert_string_equal(g.system_prompt, "Answer in French.");
    assert_string_equal(g.model, "mistral");
    assert_string_equal(g.params, "{\"temperature\":1.1}");
    assert_string_equal(g.owner, "carol");
    store_session_clear(&g);
    up.params = "42";
    assert_int_equal(store_session_update(f->st, sid, &up, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "JSON object"));
    store_session none = {0};
    assert_int_equal(store_session_update(f->st, 999, &none, &err), CF_ENOTFOUND);
    assert_int_equal(store_session_update(f->st, sid, &none, &err), 0); /* clears */
    assert_int_equal(store_session_get(f->st, sid, &g, &err), 0);
    assert_null(g.model);
    assert_string_equal(g.params, "{}");
    store_session_clear(&g);
}

static void session_list_is_newest_first_paged_and_filtered(void **state) {
    store_fx *f = *state;
    int64_t ids[7];
    for (int i = 0; i < 7; i++) {
        store_session in = {0};
        char t[16];
        snprintf(t, sizeof t, "s%d", i);
        in.title = t;
        in.owner = i % 2 ? "bob" : "alice";
        in.created_at = 1000 + i * 10;
        assert_int_equal(store_session_create(f->st, &in, &ids[i], NULL), 0);
    }
    /* A message makes s1 the most recently updated. */
    store_message m = {0};
    m.session_id = ids[1];
    m.role = "user";
    m.content = "bump";
    m.status = STORE_COMPLETE;
    m.created_at = 5000;
    assert_int_equal(store_msg_append(f->st, &m, NULL, NULL), 0);
    assert_int_equal(store_session_archive(f->st, ids[6], true, NULL), 0);

    store_session *a;
    size_t n;
    store_list_opts o = {.limit = 3};
    assert_int_equal(store_session_list(f->st, &o, &a, &n, NULL), 0);
    assert_int_equal(n, 3);
    assert_int_equal(a[0].id, ids[1]);
    assert_int_equal(a[0].message_count, 1);
    assert_int_equal(a[1].id, ids[5]); /* s6 archived: hidden */
    assert_int_equal(a[2].id, ids[4]);
    store_sessions_free(a, n);
    o.offset = 3;
    assert_int_equal(store_session_list(f->st, &o, &a, &n, NULL), 0);
    assert_int_equal(n, 3);
    assert_int_equal(a[0].id, ids[3]);
    assert_int_equal(a[2].id, ids[0]);
    store_sessions_free(a, n);
    o.offset = 6;
    assert_int_equal(store_session_list(f->st, &o, &a, &n, NULL), 0);
    assert_int_equal(n, 0);
    assert_null(a);
    store_list_opts all = {.include_archived = true, .owner = "alice"};
    assert_int_equal(store_session_list(f->st, &all, &a, &n, NULL), 0);
    assert_int_equal(n, 4); /* s0 s2 s4 s6 */
    assert_int_equal(a[0].id, ids[6]);
    assert_true(a[0].archived);
    store_sessions_free(a, n);
}

static void session_rename_archive_delete_of_missing_session_is_notfound(void **state) {
    store_fx *f = *state;
    cf_err err = {0};
    assert_int_equal(store_session_rename(f->st, 999, "x", &err), CF_ENOTFOUND);
    assert_string_equal(err.msg, "no session 999");
    assert_int_equal(store_session_archive(f->st, 999, true, &err), CF_ENOTFOUND);
    assert_int_equal(store_session_delete(f->st, 999, &err), CF_ENOTFOUND);
    store_session s;
    assert_int_equal(store_session_get(f->st, 999, &s, &err), CF_ENOTFOUND);
    int64_t id;
    assert_int_equal(store_session_find(f->st, "12ab", &id, &err), CF_EINVAL);
    assert_int_equal(store_session_find(f->st, "00000000-0000-4000-8000-000000000000", &id, &err),
                     CF_ENOTFOUND);
    int64_t sid = fx_session(f->st, "a");
    assert_int_equal(store_session_rename(f->st, sid, "\xff\xfe", &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "UTF-8"));
    assert_int_equal(store_session_rename(f->st, sid, "New name", &err), 0);
    assert_int_equal(store_session_get(f->st, sid, &s, &err), 0);
    assert_string_equal(s.title, "New name");
    store_session_clear(&s);
}

static void session_delete_removes_messages_votes_and_index_rows(void **state) {
    store_fx *f = *state;
    int64_t keep = fx_session(f->st, "keep");
    int64_t gone = fx_session(f->st, "gone zebra");
    fx_msg(f->st, keep, 0, "user", "zebra in the keep session");
    int64_t a = fx_msg(f->st, gone, 0, "user", "zebra crossing");
    int64_t b = fx_msg(f->st, gone, a, "assistant", "zebras are striped");
    store_vote v = {.session_id = gone,
                    .message_a = a,
                    .message_b = b,
                    .model_a = "m1",
                    .model_b = "m2",
                    .winner = "a"};
    assert_int_equal(store_vote_add(f->st, &v, NULL, NULL), 0);
    cf_err err = {0};
    assert_int_equal(store_session_delete(f->st, gone, &err), 0);
    store_message m;
    assert_int_equal(store_msg_get(f->st, a, &m, &err), CF_ENOTFOUND);
    store_hit *h;
    size_t n;
    store_search_opts so = {.query = "zebra*"};
    assert_int_equal(store_search(f->st, &so, &h, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].session_id, keep);
    store_hits_free(h, n);
    store_pair_stats *ps;
    assert_int_equal(store_vote_stats(f->st, &ps, &n, &err), 0);
    assert_int_equal(n, 0);
    /* The external-content indexes agree with their tables. */
    assert_int_equal(store_exec(f->st,
                                "INSERT INTO messages_fts(messages_fts) VALUES('integrity-check');"
                                "INSERT INTO sessions_fts(sessions_fts) VALUES('integrity-check')",
                                &err),
                     0);
}

/* ------------------------------------------------------------ messages */

static void msg_append_rejects_bad_input_with_clear_errors(void **state) {
    store_fx *f = *state;
    int64_t s1 = fx_session(f->st, "one"), s2 = fx_session(f->st, "two");
    int64_t other = fx_msg(f->st, s2, 0, "user", "elsewhere");
    store_message m = {0};
    m.session_id = s1;
    m.role = "robot";
    m.content = "x";
    m.status = STORE_COMPLETE;
    cf_err err = {0};
    assert_int_equal(store_msg_append(f->st, &m, NULL, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "bad role 'robot'"));
    m.role = "user";
    m.session_id = 4242;
    assert_int_equal(store_msg_append(f->st, &m, NULL, &err), CF_ENOTFOUND);
    assert_string_equal(err.msg, "no session 4242");
    m.session_id = s1;
    m.parent_id = other;
    assert_int_equal(store_msg_append(f->st, &m, NULL, &err), CF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "not in session"));
    m.parent_id = 0;
    m.content = "bad \xc3\x28 utf8";
    assert_int_equal(store_msg_append(f->st, &m, NULL, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "UTF-8"));
    m.content = "ok";
    m.prompt_tokens = -3;
    assert_int_equal(store_msg_append(f->st, &m, NULL, &err), CF_EINVAL);
    store_message *list;
    size_t n;
    assert_int_equal(store_msg_list(f->st, s1, &list, &n, &err), 0);
    assert_int_equal(n, 0); /* nothing half-written */
}

static void msg_append_get_keeps_accounting_fields(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "acc");
    store_message m = {0};
    m.session_id = sid;
    m.role = "assistant";
    m.content = "answer";
    m.model = "gpt-x";
    m.provider = "openai";
    m.status = STORE_ERROR;
    m.prompt_tokens = 12;
    m.completion_tokens = 34;
    m.cost = 0.00123;
    m.latency_ms = 456;
    m.finish_reason = "length";
    m.variant = "b";
    m.cached = true;
    m.error = "upstream 500";
    m.created_at = 1234567;
    int64_t id;
    assert_int_equal(store_msg_append(f->st, &m, &id, NULL), 0);
    store_message g;
    assert_int_equal(store_msg_get(f->st, id, &g, NULL), 0);
    assert_string_equal(g.role, "assistant");
    assert_string_equal(g.content, "answer");
    assert_string_equal(g.model, "gpt-x");
    assert_string_equal(g.provider, "openai");
    assert_int_equal(g.status, STORE_ERROR);
    assert_int_equal(g.prompt_tokens, 12);
    assert_int_equal(g.completion_tokens, 34);
    assert_true(g.cost == 0.00123);
    assert_int_equal(g.latency_ms, 456);
    assert_string_equal(g.finish_reason, "length");
    assert_string_equal(g.variant, "b");
    assert_true(g.cached);
    assert_string_equal(g.error, "upstream 500");
    assert_int_equal(g.created_at, 1234567);
    assert_int_equal(g.session_id, sid);
    assert_true(store_uuid_valid(g.uuid));
    store_message_clear(&g);
}

static void msg_thread_follows_parents_from_root_to_leaf(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "tree");
    int64_t u1 = fx_msg(f->st, sid, 0, "user", "q1");
    int64_t a1 = fx_msg(f->st, sid, u1, "assistant", "a1");
    int64_t a1b = fx_msg(f->st, sid, u1, "assistant", "a1 regenerated");
    int64_t u2 = fx_msg(f->st, sid, a1b, "user", "q2");
    (void)a1;
    store_message *t;
    size_t n;
    assert_int_equal(store_msg_thread(f->st, u2, &t, &n, NULL), 0);
    assert_int_equal(n, 3);
    assert_string_equal(t[0].content, "q1");
    assert_string_equal(t[1].content, "a1 regenerated");
    assert_string_equal(t[2].content, "q2");
    store_messages_free(t, n);
    cf_err err = {0};
    assert_int_equal(store_msg_thread(f->st, 9999, &t, &n, &err), CF_ENOTFOUND);
}

/* ------------------------------------------------------------ titles */

static void auto_title_takes_first_line_trimmed_and_collapsed(void **state) {
    (void)state;
    char *t = store_auto_title("  \n\n  How do   I\tcook rice?  \nDetails follow.");
    assert_string_equal(t, "How do I cook rice?");
    free(t);
    t = store_auto_title(" \n\t ");
    assert_string_equal(t, "");
    free(t);
}

static void auto_title_cuts_long_text_at_a_word_boundary(void **state) {
    (void)state;
    const char *in =
        "Please explain the difference between processes and threads in modern operating systems";
    char *t = store_auto_title(in);
    assert_string_equal(t, "Please explain the difference between processes and threads…");
    free(t);
}

static void auto_title_cuts_unbroken_utf8_text_on_a_character_boundary(void **state) {
    (void)state;
    sb_t s = {0};
    for (int i = 0; i < 100; i++)
        sb_append(&s, "\xe6\x97\xa5"); /* 日 x100, no spaces */
    char *t = store_auto_title(s.data);
    size_t n = strlen(t);
    assert_true(utf8_valid(t, n, NULL));
    /* 59 characters of 3 bytes plus the 3-byte ellipsis. */
    assert_int_equal(n, 60 * 3);
    assert_memory_equal(t + n - 3, "\xe2\x80\xa6", 3);
    free(t);
    sb_free(&s);
}

static void first_user_message_titles_only_untitled_sessions(void **state) {
    store_fx *f = *state;
    int64_t untitled = fx_session(f->st, NULL);
    int64_t named = fx_session(f->st, "Mine");
    fx_msg(f->st, untitled, 0, "system", "system text is not a title");
    fx_msg(f->st, untitled, 0, "user", "What is a monad?\nAsking for a friend");
    fx_msg(f->st, untitled, 0, "user", "second question");
    fx_msg(f->st, named, 0, "user", "ignored for the title");
    store_session s;
    assert_int_equal(store_session_get(f->st, untitled, &s, NULL), 0);
    assert_string_equal(s.title, "What is a monad?");
    store_session_clear(&s);
    assert_int_equal(store_session_get(f->st, named, &s, NULL), 0);
    assert_string_equal(s.title, "Mine");
    store_session_clear(&s);
}

/* ------------------------------------------------------------ streaming */

typedef struct {
    int64_t t;
} fake_clock;
static int64_t fake_now(void *ctx) { return ((fake_clock *)ctx)->t; }

static char *db_content(store *st, int64_t id) {
    store_message m;
    if (store_msg_get(st, id, &m, NULL) != 0) return NULL;
    char *c = strdup(m.content);
    store_message_clear(&m);
    return c;
}

static void stream_at_50_tokens_per_second_flushes_at_most_every_100ms(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "stream");
    fake_clock clk = {1000};
    store_stream_opts o = {
        .session_id = sid, .model = "m", .provider = "local", .now_ms = fake_now, .now_ctx = &clk};
    cf_err err = {0};
    store_stream *w = store_stream_begin(f->st, &o, &err);
    assert_non_null(w);
    int64_t id = store_stream_id(w);
    sb_t expect = {0};
    for (int i = 0; i < 500; i++) { /* 10 s of tokens, one every 20 ms */
        char tok[16];
        int k = snprintf(tok, sizeof tok, "t%d ", i);
        clk.t += 20;
        assert_int_equal(store_stream_append(w, tok, (size_t)k, &err), 0);
        sb_append(&expect, tok);
        if (i == 250) {
            /* What is in the database is a prefix of the reply so far. */
            char *c = db_content(f->st, id);
            assert_non_null(c);
            assert_true(strlen(c) > 0 && strlen(c) <= expect.len);
            assert_memory_equal(c, expect.data, strlen(c));
            free(c);
            store_message m;
            assert_int_equal(store_msg_get(f->st, id, &m, NULL), 0);
            assert_int_equal(m.status, STORE_STREAMING);
            store_message_clear(&m);
        }
    }
    int flushes = store_stream_flushes(w);
    /* 10 s at one flush per 100 ms: 100 flushes, not 500. */
    assert_true(flushes >= 95 && flushes <= 100);
    store_stream_end end = {.status = STORE_COMPLETE,
                            .prompt_tokens = 20,
                            .completion_tokens = 500,
                            .cost = 0.5,
                            .latency_ms = 10000,
                            .finish_reason = "stop"};
    assert_int_equal(store_stream_finish(w, &end, &err), 0);
    store_message m;
    assert_int_equal(store_msg_get(f->st, id, &m, NULL), 0);
    assert_string_equal(m.content, expect.data);
    assert_int_equal(m.status, STORE_COMPLETE);
    assert_int_equal(m.completion_tokens, 500);
    assert_int_equal(m.latency_ms, 10000);
    assert_string_equal(m.finish_reason, "stop");
    assert_string_equal(m.provider, "local");
    store_message_clear(&m);
    sb_free(&expect);
}

static void stream_finish_records_who_answered_after_fallback(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "fallback");
    store_stream_opts o = {.session_id = sid, .model = "primary", .provider = "local"};
    store_stream *w = store_stream_begin(f->st, &o, NULL);
    assert_non_null(w);
    int64_t id = store_stream_id(w);
    assert_int_equal(store_stream_append(w, "hi", 2, NULL), 0);
    store_stream_end end = {
        .status = STORE_COMPLETE, .model = "backup", .provider = "openai", .variant = "b"};
    assert_int_equal(store_stream_finish(w, &end, NULL), 0);
    store_message m;
    assert_int_equal(store_msg_get(f->st, id, &m, NULL), 0);
    assert_string_equal(m.model, "backup");
    assert_string_equal(m.provider, "openai");
    assert_string_equal(m.variant, "b");
    store_message_clear(&m);
    /* NULL keeps what begin recorded. */
    w = store_stream_begin(f->st, &o, NULL);
    id = store_stream_id(w);
    assert_int_equal(store_stream_finish(w, NULL, NULL), 0);
    assert_int_equal(store_msg_get(f->st, id, &m, NULL), 0);
    assert_string_equal(m.model, "primary");
    assert_string_equal(m.provider, "local");
    store_message_clear(&m);
}

static void stream_holds_back_a_character_split_across_appends(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "utf8");
    fake_clock clk = {0};
    store_stream_opts o = {.session_id = sid, .now_ms = fake_now, .now_ctx = &clk};
    store_stream *w = store_stream_begin(f->st, &o, NULL);
    assert_non_null(w);
    int64_t id = store_stream_id(w);
    assert_int_equal(store_stream_append(w, "caf\xc3", 4, NULL), 0); /* é split */
    assert_int_equal(store_stream_flush(w, NULL), 0);
    char *c = db_content(f->st, id);
    assert_string_equal(c, "caf");
    free(c);
    assert_int_equal(store_stream_append(w, "\xa9!", 2, NULL), 0);
    cf_err err = {0};
    assert_int_equal(store_stream_append(w, "\xff", 1, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "UTF-8"));
    assert_int_equal(store_stream_append(w, " ok \xe2\x82", 6, NULL), 0); /* ends mid-€ */
    assert_int_equal(store_stream_finish(w, NULL, NULL), 0);
    c = db_content(f->st, id);
    assert_string_equal(c, "caf\xc3\xa9! ok \xef\xbf\xbd");
    free(c);
}

static void stream_finish_indexes_the_reply_for_search(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "s");
    store_stream_opts o = {.session_id = sid};
    store_stream *w = store_stream_begin(f->st, &o, NULL);
    assert_int_equal(store_stream_append(w, "a quokka appears", 16, NULL), 0);
    assert_int_equal(store_stream_flush(w, NULL), 0);
    store_hit *h;
    size_t n;
    store_search_opts so = {.query = "quokka"};
    assert_int_equal(store_search(f->st, &so, &h, &n, NULL), 0);
    assert_int_equal(n, 0); /* not indexed while streaming */
    store_stream_end end = {.status = STORE_CANCELLED};
    assert_int_equal(store_stream_finish(w, &end, NULL), 0);
    assert_int_equal(store_search(f->st, &so, &h, &n, NULL), 0);
    assert_int_equal(n, 1);
    store_hits_free(h, n);
}

/* ------------------------------------------------------------ recovery */

static void reopen_marks_abandoned_stream_cancelled_keeping_text(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "r");
    store_stream_opts o = {.session_id = sid};
    store_stream *w = store_stream_begin(f->st, &o, NULL);
    int64_t id = store_stream_id(w);
    assert_int_equal(store_stream_append(w, "partial answer", 14, NULL), 0);
    assert_int_equal(store_stream_flush(w, NULL), 0);
    store_stream_abandon(w);
    store_close(f->st);
    cf_err err = {0};
    f->st = store_open(f->path, 0, &err);
    assert_non_null(f->st);
    store_message m;
    assert_int_equal(store_msg_get(f->st, id, &m, NULL), 0);
    assert_int_equal(m.status, STORE_CANCELLED);
    assert_string_equal(m.content, "partial answer");
    assert_string_equal(m.finish_reason, "interrupted");
    store_message_clear(&m);
    assert_int_equal(store_recover(f->st, NULL), 0); /* nothing left */
}

static void open_beside_a_live_handle_leaves_its_stream_alone(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "live");
    store_stream_opts o = {.session_id = sid};
    store_stream *w = store_stream_begin(f->st, &o, NULL);
    int64_t id = store_stream_id(w);
    cf_err err = {0};
    store *other = store_open(f->path, 0, &err); /* e.g. `confab sessions list` */
    assert_non_null(other);
    store_message m;
    assert_int_equal(store_msg_get(other, id, &m, NULL), 0);
    assert_int_equal(m.status, STORE_STREAMING);
    store_message_clear(&m);
    store_close(other);
    assert_int_equal(store_stream_append(w, "still mine", 10, NULL), 0);
    assert_int_equal(store_stream_finish(w, NULL, NULL), 0);
    assert_int_equal(store_msg_get(f->st, id, &m, NULL), 0);
    assert_int_equal(m.status, STORE_COMPLETE);
    assert_string_equal(m.content, "still mine");
    store_message_clear(&m);
}

/* The child streams "w0 w1 w2 ..." into a reply until killed. */
static void crash_child(const char *path, int64_t sid, int fd) {
    cf_err err = {0};
    store *st = store_open(path, 0, &err);
    if (!st) _exit(3);
    store_message m = {0};
    m.session_id = sid;
    m.role = "user";
    m.content = "child question, complete";
    m.status = STORE_COMPLETE;
    if (store_msg_append(st, &m, NULL, &err) != 0) _exit(4);
    store_stream_opts o = {.session_id = sid, .flush_interval_ms = 1};
    store_stream *w = store_stream_begin(st, &o, &err);
    if (!w) _exit(5);
    bool told = false;
    for (long i = 0; i < 50000000; i++) {
        char tok[24];
        int k = snprintf(tok, sizeof tok, "w%ld ", i);
        if (store_stream_append(w, tok, (size_t)k, &err) != 0) _exit(6);
        if (!told && store_stream_flushes(w) >= 30) {
            if (write(fd, "x", 1) != 1) _exit(7);
            told = true;
        }
        usleep(50);
    }
    _exit(8); /* never reached in the test: the parent kills us first */
}

static void sigkill_during_streaming_leaves_a_sound_database_and_a_cancelled_reply(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "crash");
    int64_t q = fx_msg(f->st, sid, 0, "user", "first question");
    int64_t a = fx_msg(f->st, sid, q, "assistant", "first answer, complete");
    store_close(f->st); /* connections must not cross fork() */
    f->st = NULL;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        crash_child(f->path, sid, p[1]);
    }
    close(p[1]);
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    usleep(20000); /* let it write some more */
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    close(p[0]);

    cf_err err = {0};
    f->st = store_open(f->path, 0, &err);
    assert_non_null(f->st);
    assert_int_equal(store_integrity_check(f->st, &err), 0);
    store_message *m;
    size_t n;
    assert_int_equal(store_msg_list(f->st, sid, &m, &n, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(m[0].id, q);
    assert_string_equal(m[0].content, "first question");
    assert_int_equal(m[1].id, a);
    assert_string_equal(m[1].content, "first answer, complete");
    assert_int_equal(m[1].status, STORE_COMPLETE);
    assert_string_equal(m[2].content, "child question, complete");
    assert_int_equal(m[3].status, STORE_CANCELLED);
    /* The partial text is a prefix of what the child was writing. */
    const char *got = m[3].content;
    assert_true(strlen(got) >= 30);
    sb_t expect = {0};
    for (long i = 0; expect.len < strlen(got) + 32; i++)
        sb_printf(&expect, "w%ld ", i);
    assert_memory_equal(got, expect.data, strlen(got));
    sb_free(&expect);
    store_messages_free(m, n);
}

/* ------------------------------------------------------------ threads */

typedef struct {
    const char *path;
    int64_t sid;
    int ok;
} writer_arg;

static void *writer_thread(void *p) {
    writer_arg *a = p;
    cf_err err = {0};
    store *st = store_open(a->path, 0, &err); /* one handle per thread */
    if (!st) return NULL;
    for (int i = 0; i < 150; i++) {
        char t[32];
        snprintf(t, sizeof t, "message %d", i);
        store_message m = {0};
        m.session_id = a->sid;
        m.role = "user";
        m.content = t;
        m.status = STORE_COMPLETE;
        if (store_msg_append(st, &m, NULL, &err) == 0)
            a->ok++;
        else
            fprintf(stderr, "writer: %s\n", err.msg);
    }
    store_close(st);
    return NULL;
}

static void writers_in_two_threads_with_own_handles_both_succeed(void **state) {
    store_fx *f = *state;
    writer_arg a[2] = {{f->path, fx_session(f->st, "t1"), 0},
                       {f->path, fx_session(f->st, "t2"), 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer_thread, &a[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(a[i].ok, 150);
        store_session s;
        assert_int_equal(store_session_get(f->st, a[i].sid, &s, NULL), 0);
        assert_int_equal(s.message_count, 150);
        store_session_clear(&s);
    }
}

/* ------------------------------------------------------------ migrations */

static void migration_from_seed_schema_keeps_sessions_and_messages(void **state) {
    store_fx *f = *state;
    store_close(f->st);
    f->st = NULL;
    unlink(f->path);
    cf_err err = {0};
    store *old = store_open_at_version(f->path, 1, &err);
    assert_non_null(old);
    assert_int_equal(store_schema_version(old), 1);
    assert_int_equal(
        store_exec(old,
                   "INSERT INTO sessions VALUES (1, '2024-01-02 03:04:05', 'Old chat', '2024-01-02 "
                   "03:05:00');"
                   "INSERT INTO sessions VALUES (2, 1704164645, NULL, NULL);"
                   "INSERT INTO messages VALUES (1, 1, 'user', 'hello from the seed', '2024-01-02 "
                   "03:04:05');"
                   "INSERT INTO messages VALUES (2, 1, 'assistant', 'hi there', 1704164700);"
                   "INSERT INTO messages VALUES (3, 2, 'user', NULL, NULL);",
                   &err),
        0);
    store_close(old);
    f->st = store_open(f->path, 0, &err);
    assert_non_null(f->st);
    assert_int_equal(store_schema_version(f->st), STORE_SCHEMA_VERSION);
    store_session s;
    assert_int_equal(store_session_get(f->st, 1, &s, &err), 0);
    assert_string_equal(s.title, "Old chat");
    int64_t t0;
    assert_int_equal(store_time_parse("2024-01-02T03:04:05.000Z", &t0), 0);
    assert_int_equal(s.created_at, t0);
    assert_int_equal(s.updated_at, t0 + 55000);
    assert_int_equal(s.message_count, 2);
    assert_true(store_uuid_valid(s.uuid));
    char u1[37];
    memcpy(u1, s.uuid, 37);
    store_session_clear(&s);
    assert_int_equal(store_session_get(f->st, 2, &s, &err), 0);
    assert_string_equal(s.title, "");
    assert_int_equal(s.created_at, 1704164645000);
    assert_string_not_equal(s.uuid, u1);
    store_session_clear(&s);
    store_message *m;
    size_t n;
    assert_int_equal(store_msg_list(f->st, 1, &m, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(m[0].content, "hello from the seed");
    assert_string_equal(m[1].role, "assistant");
    assert_int_equal(m[1].created_at, 1704164700000);
    assert_int_equal(m[1].status, STORE_COMPLETE);
    store_messages_free(m, n);
    /* Old rows are searchable, and the new constraints hold. */
    store_hit *h;
    store_search_opts so = {.query = "seed"};
    assert_int_equal(store_search(f->st, &so, &h, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].message_id, 1);
    store_hits_free(h, n);
    assert_int_equal(store_session_delete(f->st, 1, &err), 0);
    assert_int_equal(store_msg_get(f->st, 2, &(store_message){0}, &err), CF_ENOTFOUND);
}

static void migration_from_v2_indexes_old_messages_and_recovers_streaming(void **state) {
    store_fx *f = *state;
    store_close(f->st);
    f->st = NULL;
    unlink(f->path);
    cf_err err = {0};
    store *old = store_open_at_version(f->path, 2, &err);
    assert_non_null(old);
    assert_int_equal(
        store_exec(
            old,
            "INSERT INTO sessions (id, uuid, created_at, updated_at, title, params, owner) VALUES"
            " (7, '11111111-2222-4333-8444-555555555555', 10, 20, 'Penguin facts', '{\"t\":1}', "
            "'z');"
            "INSERT INTO messages (id, uuid, session_id, role, content, timestamp, status, cost) "
            "VALUES"
            " (1, 'aaaaaaaa-2222-4333-8444-555555555555', 7, 'user', 'tell me about penguins', 11, "
            "'complete', NULL),"
            " (2, 'bbbbbbbb-2222-4333-8444-555555555555', 7, 'assistant', 'penguins swim', 12, "
            "'streaming', 0.5);",
            &err),
        0);
    store_close(old);
    f->st = store_open(f->path, 0, &err);
    assert_non_null(f->st);
    store_session s;
    assert_int_equal(store_session_get(f->st, 7, &s, &err), 0);
    assert_string_equal(s.uuid, "11111111-2222-4333-8444-555555555555");
    assert_string_equal(s.params, "{\"t\":1}");
    assert_string_equal(s.owner, "z");
    store_session_clear(&s);
    store_message m;
    assert_int_equal(store_msg_get(f->st, 2, &m, &err), 0);
    assert_int_equal(m.status, STORE_CANCELLED); /* recovered on open */
    assert_true(m.cost == 0.5);
    store_message_clear(&m);
    store_hit *h;
    size_t n;
    store_search_opts so = {.query = "penguin*"};
    assert_int_equal(store_search(f->st, &so, &h, &n, &err), 0);
    assert_int_equal(n, 3); /* two messages and the title */
    store_hits_free(h, n);
}

static void migration_upgrades_a_database_made_at_every_earlier_version(void **state) {
    store_fx *f = *state;
    for (int k = 0; k < STORE_SCHEMA_VERSION; k++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/v%d.db", f->dir, k);
        cf_err err = {0};
        store *old = store_open_at_version(p, k, &err);
        assert_non_null(old);
        assert_int_equal(store_schema_version(old), k);
        if (k == 1) /* the seed schema: no uuid yet */
            assert_int_equal(store_exec(old,
                                        "INSERT INTO sessions (id, title, created_at, updated_at) "
                                        "VALUES (5, 'kept title', '2020-01-01 00:00:00', NULL)",
                                        &err),
                             0);
        if (k >= 2)
            assert_int_equal(
                store_exec(old,
                           "INSERT INTO sessions (id, uuid, title, created_at, updated_at) VALUES "
                           "(5, '0123abcd-0000-4000-8000-000000000005', 'kept title', 1000, 2000)",
                           &err),
                0);
        store_close(old);
        store *st = store_open(p, 0, &err);
        assert_non_null(st);
        assert_int_equal(store_schema_version(st), STORE_SCHEMA_VERSION);
        assert_int_equal(store_integrity_check(st, &err), 0);
        if (k >= 1) {
            store_session s;
            assert_int_equal(store_session_get(st, 5, &s, &err), 0);
            assert_string_equal(s.title, "kept title");
            store_session_clear(&s);
        }
        /* The upgraded database works like a new one. */
        int64_t sid = fx_session(st, "after upgrade");
        fx_msg(st, sid, 0, "user", "works");
        store_close(st);
    }
}

/* ------------------------------------------------------------ bad files */

static void open_of_a_file_that_is_not_a_database_fails_and_leaves_it_untouched(void **state) {
    store_fx *f = *state;
    char p[4200];
    snprintf(p, sizeof p, "%s/notes.txt", f->dir);
    const char text[] = "these are my notes, not a database; please do not eat them\n"
                        "line two, long enough to fill a SQLite header and then some more text.\n";
    assert_int_equal(tu_write_file(p, text, sizeof text - 1), 0);
    cf_err err = {0};
    store *st = store_open(p, 0, &err);
    assert_null(st);
    assert_int_equal(err.code, CF_EFORMAT);
    assert_non_null(strstr(err.msg, "is not a confab database"));
    size_t len;
    char *back = tu_read_file(p, &len);
    assert_int_equal(len, sizeof text - 1);
    assert_memory_equal(back, text, len);
    free(back);
    char side[4300];
    snprintf(side, sizeof side, "%s-wal", p);
    assert_int_not_equal(access(side, F_OK), 0);
    snprintf(side, sizeof side, "%s-lock", p);
    assert_int_not_equal(access(side, F_OK), 0);
}

static void a_damaged_database_is_reported_not_trusted(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "to be damaged");
    sb_t big = {0};
    for (int i = 0; i < 400; i++)
        sb_append(&big, "filler text to spread over many pages ");
    for (int i = 0; i < 20; i++)
        fx_msg(f->st, sid, 0, "user", big.data);
    sb_free(&big);
    assert_int_equal(store_exec(f->st, "PRAGMA wal_checkpoint(TRUNCATE)", NULL), 0);
    store_close(f->st);
    f->st = NULL;
    /* Scribble over pages 2-5 (the header page stays valid). */
    FILE *fp = fopen(f->path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 4096, SEEK_SET), 0);
    for (int i = 0; i < 4 * 4096; i++)
        fputc((i * 7 + 13) & 0xff, fp);
    fclose(fp);
    cf_err err = {0};
    f->st = store_open(f->path, 0, &err);
    if (f->st) { /* the schema page survived: the check must notice */
        assert_int_equal(store_integrity_check(f->st, &err), CF_EFORMAT);
    } else {
        assert_int_equal(err.code, CF_EFORMAT);
        f->st = store_open(":memory:", 0, &err);
    }
    assert_true(strlen(err.msg) > 0);
}

static void stream_begin_and_finish_reject_bad_arguments(void **state) {
    store_fx *f = *state;
    cf_err err = {0};
    store_stream_opts o = {.session_id = 404};
    assert_null(store_stream_begin(f->st, &o, &err));
    assert_int_equal(err.code, CF_ENOTFOUND);
    assert_null(store_stream_begin(f->st, NULL, &err));
    assert_int_equal(err.code, CF_EINVAL);
    o.session_id = fx_session(f->st, "s");
    o.role = "narrator";
    assert_null(store_stream_begin(f->st, &o, &err));
    assert_int_equal(err.code, CF_EINVAL);
    o.role = NULL;
    store_stream *w = store_stream_begin(f->st, &o, &err);
    assert_non_null(w);
    int64_t id = store_stream_id(w);
    store_stream_end still = {.status = STORE_STREAMING};
    assert_int_equal(store_stream_finish(w, &still, &err), CF_EINVAL); /* frees w */
    assert_non_null(strstr(err.msg, "complete, cancelled or error"));
    store_message m;
    assert_int_equal(store_msg_get(f->st, id, &m, NULL), 0);
    assert_int_equal(m.status, STORE_STREAMING); /* left for recovery */
    assert_string_equal(m.role, "assistant");
    store_message_clear(&m);
}

static void open_of_a_newer_schema_is_refused(void **state) {
    store_fx *f = *state;
    assert_int_equal(store_exec(f->st, "PRAGMA user_version = 99", NULL), 0);
    store_close(f->st);
    cf_err err = {0};
    f->st = store_open(f->path, 0, &err);
    assert_null(f->st);
    assert_int_equal(err.code, CF_EFORMAT);
    assert_non_null(strstr(err.msg, "schema version 99, newer"));
    f->st = store_open_at_version(f->path, STORE_SCHEMA_VERSION, &err);
    assert_null(f->st);
    /* Put it back so teardown has something to close. */
    f->st = store_open(":memory:", 0, &err);
    assert_non_null(f->st);
}

static void open_of_a_missing_file_without_create_is_notfound(void **state) {
    store_fx *f = *state;
    char p[4200];
    snprintf(p, sizeof p, "%s/absent.db", f->dir);
    cf_err err = {0};
    assert_null(store_open(p, 0, &err));
    assert_int_equal(err.code, CF_ENOTFOUND);
    assert_int_not_equal(access(p, F_OK), 0);
    assert_null(store_open_at_version(p, 9, &err));
    assert_int_equal(err.code, CF_ERANGE);
}

/* ------------------------------------------------------------ votes */

static void vote_stats_count_wins_per_unordered_model_pair(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "ab");
    int64_t x = fx_msg(f->st, sid, 0, "assistant", "x"),
            y = fx_msg(f->st, sid, 0, "assistant", "y");
    struct {
        const char *a, *b, *w;
    } votes[] = {
        {"llama", "qwen", "a"}, {"qwen", "llama", "a"}, {"llama", "qwen", "tie"},
        {"qwen", "llama", "b"}, {"gpt", "claude", "b"},
    };
    for (size_t i = 0; i < sizeof votes / sizeof votes[0]; i++) {
        store_vote v = {.session_id = sid,
                        .message_a = x,
                        .message_b = y,
                        .model_a = votes[i].a,
                        .model_b = votes[i].b,
                        .winner = votes[i].w};
        assert_int_equal(store_vote_add(f->st, &v, NULL, NULL), 0);
    }
    store_pair_stats *p;
    size_t n;
    assert_int_equal(store_vote_stats(f->st, &p, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(p[0].model_a, "llama");
    assert_string_equal(p[0].model_b, "qwen");
    assert_int_equal(p[0].total, 4);
    assert_int_equal(p[0].wins_a, 2); /* llama won as a once, as b once */
    assert_int_equal(p[0].wins_b, 1);
    assert_int_equal(p[0].ties, 1);
    assert_true(p[0].rate_a == 0.625);
    assert_string_equal(p[1].model_a, "claude");
    assert_int_equal(p[1].wins_a, 1);
    store_pair_stats_free(p, n);
    cf_err err = {0};
    store_vote bad = {.session_id = sid, .model_a = "a", .model_b = "b", .winner = "both"};
    assert_int_equal(store_vote_add(f->st, &bad, NULL, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "a, b or tie"));
    int64_t other = fx_session(f->st, "other");
    store_vote foreign = {
        .session_id = other, .message_a = x, .model_a = "a", .model_b = "b", .winner = "a"};
    assert_int_equal(store_vote_add(f->st, &foreign, NULL, &err), CF_ENOTFOUND);
}

static void uuid_and_time_helpers_validate_strictly(void **state) {
    (void)state;
    char u[37];
    store_uuid_new(u);
    assert_true(store_uuid_valid(u));
    assert_int_equal(u[14], '4');
    char u2[37];
    store_uuid_new(u2);
    assert_string_not_equal(u, u2);
    assert_false(store_uuid_valid("0123abcd-0000-4000-8000-00000000000"));
    assert_false(store_uuid_valid("0123abcd-0000-4000-8000-00000000000g"));
    int64_t ms;
    assert_int_equal(store_time_parse("1970-01-01T00:00:01.500Z", &ms), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(store_time_parse("2026-02-31T00:00:00Z", &ms), -1);
    assert_int_equal(store_time_parse("2026-01-01 00:00:00Z", &ms), -1);
    assert_int_equal(store_time_parse("2026-01-01T00:00:00.000+01:00", &ms), -1);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(session_create_get_keeps_every_field),
        T(session_create_rejects_params_that_are_not_an_object),
        T(session_update_replaces_settings_and_checks_them),
        T(session_list_is_newest_first_paged_and_filtered),
        T(session_rename_archive_delete_of_missing_session_is_notfound),
        T(session_delete_removes_messages_votes_and_index_rows),
        T(msg_append_rejects_bad_input_with_clear_errors),
        T(msg_append_get_keeps_accounting_fields),
        T(msg_thread_follows_parents_from_root_to_leaf),
        cmocka_unit_test(auto_title_takes_first_line_trimmed_and_collapsed),
        cmocka_unit_test(auto_title_cuts_long_text_at_a_word_boundary),
        cmocka_unit_test(auto_title_cuts_unbroken_utf8_text_on_a_character_boundary),
        T(first_user_message_titles_only_untitled_sessions),
        T(stream_at_50_tokens_per_second_flushes_at_most_every_100ms),
        T(stream_finish_records_who_answered_after_fallback),
        T(stream_holds_back_a_character_split_across_appends),
        T(stream_finish_indexes_the_reply_for_search),
        T(reopen_marks_abandoned_stream_cancelled_keeping_text),
        T(open_beside_a_live_handle_leaves_its_stream_alone),
        T(sigkill_during_streaming_leaves_a_sound_database_and_a_cancelled_reply),
        T(writers_in_two_threads_with_own_handles_both_succeed),
        T(migration_from_seed_schema_keeps_sessions_and_messages),
        T(migration_from_v2_indexes_old_messages_and_recovers_streaming),
        T(migration_upgrades_a_database_made_at_every_earlier_version),
        T(open_of_a_file_that_is_not_a_database_fails_and_leaves_it_untouched),
        T(a_damaged_database_is_reported_not_trusted),
        T(stream_begin_and_finish_reject_bad_arguments),
        T(open_of_a_newer_schema_is_refused),
        T(open_of_a_missing_file_without_create_is_notfound),
        T(vote_stats_count_wins_per_unordered_model_pair),
        cmocka_unit_test(uuid_and_time_helpers_validate_strictly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
