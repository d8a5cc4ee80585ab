/* Tests for the store's export (JSON, Markdown) and JSON import: round
 * trips, idempotent re-import, and validation errors with their place. */
#include "base/sb.h"
#include "store_fixture.h"

#include <jansson.h>

/* Export to a malloc'd string. */
static char *export_str(store *st, int64_t sid, bool markdown) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cf_err err = {0};
    int r =
        markdown ? store_export_markdown(st, sid, f, &err) : store_export_json(st, sid, f, &err);
    fclose(f);
    if (r) fprintf(stderr, "export: %s\n", err.msg);
    assert_int_equal(r, 0);
    return buf;
}

/* A database with every kind of field filled in. */
static void fill_rich(store *st) {
    store_session s = {0};
    s.title = "Ünïcödé title — 日本";
    s.system_prompt = "Be brief.\nTwo lines.";
    s.model = "qwen2-0.5b";
    s.params = "{\"temperature\":0.7,\"top_p\":0.9,\"stop\":[\"\\n\\n\"]}";
    s.owner = "alice";
    s.created_at = 1700000000001;
    s.updated_at = 1700000000999;
    int64_t s1;
    assert_int_equal(store_session_create(st, &s, &s1, NULL), 0);
    store_message m = {0};
    m.session_id = s1;
    m.role = "system";
    m.content = "Be brief.";
    m.status = STORE_COMPLETE;
    m.created_at = 1700000000100;
    int64_t sys;
    assert_int_equal(store_msg_append(st, &m, &sys, NULL), 0);
    m.parent_id = sys;
    m.role = "user";
    m.content = "Quote \"this\", tab\there, newline\nand emoji 🎉";
    m.created_at = 1700000000200;
    m.prompt_tokens = 17;
    int64_t u;
    assert_int_equal(store_msg_append(st, &m, &u, NULL), 0);
    store_message a = {0};
    a.session_id = s1;
    a.parent_id = u;
    a.role = "assistant";
    a.content = "Answer A";
    a.model = "qwen2-0.5b";
    a.provider = "local";
    a.status = STORE_COMPLETE;
    a.prompt_tokens = 17;
    a.completion_tokens = 3;
    a.cost = 0.1 + 0.2; /* 0.30000000000000004: needs 17 digits */
    a.latency_ms = 812;
    a.finish_reason = "stop";
    a.variant = "a";
    a.created_at = 1700000000300;
    int64_t ans_a, ans_b;
    assert_int_equal(store_msg_append(st, &a, &ans_a, NULL), 0);
    a.content = "Answer B (failed)";
    a.model = "gpt-4o-mini";
    a.provider = "openai";
    a.status = STORE_ERROR;
    a.error = "HTTP 500 from upstream";
    a.variant = "b";
    a.cached = true;
    a.finish_reason = NULL;
    a.cost = 0.1;
    assert_int_equal(store_msg_append(st, &a, &ans_b, NULL), 0);
    store_vote v = {.session_id = s1,
                    .message_a = ans_a,
                    .message_b = ans_b,
                    .model_a = "qwen2-0.5b",
                    .model_b = "gpt-4o-mini",
                    .winner = "a",
                    .created_at = 1700000000400};
    assert_int_equal(store_vote_add(st, &v, NULL, NULL), 0);
    /* A second, archived, untitled session with a cancelled reply. */
    store_session s2 = {0};
    s2.archived = true;
    s2.created_at = 1600000000000;
    int64_t id2;
    assert_int_equal(store_session_create(st, &s2, &id2, NULL), 0);
    store_message c = {0};
    c.session_id = id2;
    c.role = "assistant";
    c.content = "partial";
    c.status = STORE_CANCELLED;
    c.finish_reason = "interrupted";
    c.created_at = 1600000000500;
    assert_int_equal(store_msg_append(st, &c, NULL, NULL), 0);
    /* Keep updated_at exactly as created for a stable comparison. */
    assert_int_equal(store_exec(st, "UPDATE sessions SET updated_at = created_at + 999", NULL), 0);
}

/* The document without its exported_at, as canonical text. */
static char *canon(const char *doc) {
    json_error_t je;
    json_t *j = json_loads(doc, 0, &je);
    assert_non_null(j);
    json_object_del(j, "exported_at");
    char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(j);
    return s;
}

static store *fresh(store_fx *f, const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", f->dir, name);
    cf_err err = {0};
    store *st = store_open(p, STORE_OPEN_CREATE, &err);
    assert_non_null(st);
    return st;
}

static void import_ok(store *st, const char *doc, store_import_result *r) {
    cf_err err = {0};
    int rc = store_import_json(st, doc, strlen(doc), r, &err);
    if (rc) fprintf(stderr, "import: %s\n", err.msg);
    assert_int_equal(rc, 0);
}

static void export_json_round_trips_every_field(void **state) {
    store_fx *f = *state;
    fill_rich(f->st);
    char *doc = export_str(f->st, 0, false);
    /* Short decimals stay short; the odd cost gets every digit it needs. */
    assert_non_null(strstr(doc, "\"temperature\": 0.7,"));
    assert_non_null(strstr(doc, "\"cost\": 0.30000000000000004"));
    assert_non_null(strstr(doc, "\"cost\": 0.1,")); /* the other answer */
    store *b = fresh(f, "b.db");
    store_import_result r;
    import_ok(b, doc, &r);
    assert_int_equal(r.sessions_added, 2);
    assert_int_equal(r.messages_added, 5);
    assert_int_equal(r.votes_added, 1);
    char *doc2 = export_str(b, 0, false);
    char *c1 = canon(doc), *c2 = canon(doc2);
    assert_string_equal(c1, c2);
    /* And field by field, through the API of the new database. */
    store_list_opts all = {.include_archived = true};
    store_session *ss;
    size_t n;
    assert_int_equal(store_session_list(b, &all, &ss, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ss[0].title, "Ünïcödé title — 日本");
    assert_string_equal(ss[0].owner, "alice");
    assert_string_equal(ss[0].system_prompt, "Be brief.\nTwo lines.");
    assert_int_equal(ss[0].created_at, 1700000000001);
    assert_int_equal(ss[0].updated_at, 1700000001000);
    assert_string_equal(ss[0].params, "{\"temperature\":0.7,\"top_p\":0.9,\"stop\":[\"\\n\\n\"]}");
    json_t *p1 = json_loads(ss[0].params, 0, NULL);
    assert_true(json_real_value(json_object_get(p1, "temperature")) == 0.7);
    json_decref(p1);
    assert_true(ss[1].archived);
    assert_string_equal(ss[1].title, "");
    store_message *m;
    size_t nm;
    assert_int_equal(store_msg_list(b, ss[0].id, &m, &nm, NULL), 0);
    assert_int_equal(nm, 4);
    assert_int_equal(m[1].parent_id, m[0].id);
    assert_int_equal(m[2].parent_id, m[1].id);
    assert_int_equal(m[3].parent_id, m[1].id);
    assert_string_equal(m[1].content, "Quote \"this\", tab\there, newline\nand emoji 🎉");
    assert_true(m[2].cost == 0.1 + 0.2);
    assert_int_equal(m[2].latency_ms, 812);
    assert_string_equal(m[2].variant, "a");
    assert_int_equal(m[3].status, STORE_ERROR);
    assert_true(m[3].cached);
    assert_string_equal(m[3].error, "HTTP 500 from upstream");
    store_messages_free(m, nm);
    store_sessions_free(ss, n);
    store_pair_stats *ps;
    assert_int_equal(store_vote_stats(b, &ps, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ps[0].wins_b, 1); /* gpt-4o-mini < qwen2-0.5b, qwen won */
    store_pair_stats_free(ps, n);
    free(c1);
    free(c2);
    free(doc);
    free(doc2);
    store_close(b);
}

static void import_of_the_same_file_twice_adds_nothing(void **state) {
    store_fx *f = *state;
    fill_rich(f->st);
    char *doc = export_str(f->st, 0, false);
    store_import_result r;
    import_ok(f->st, doc, &r); /* into the database it came from */
    assert_int_equal(r.sessions_added, 0);
    assert_int_equal(r.sessions_existing, 2);
    assert_int_equal(r.messages_added, 0);
    assert_int_equal(r.messages_existing, 5);
    assert_int_equal(r.votes_existing, 1);
    store *b = fresh(f, "b.db");
    import_ok(b, doc, &r);
    import_ok(b, doc, &r);
    assert_int_equal(r.sessions_added + r.messages_added + r.votes_added, 0);
    store_list_opts all = {.include_archived = true};
    store_session *ss;
    size_t n;
    assert_int_equal(store_session_list(b, &all, &ss, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ss[0].message_count + ss[1].message_count, 5);
    store_sessions_free(ss, n);
    free(doc);
    store_close(b);
}

static void import_merges_new_messages_into_an_existing_session(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "grows");
    fx_msg(f->st, sid, 0, "user", "one");
    char *before = export_str(f->st, sid, false);
    store *b = fresh(f, "b.db");
    import_ok(b, before, NULL);
    fx_msg(f->st, sid, 0, "assistant", "two");
    char *after = export_str(f->st, sid, false);
    store_import_result r;
    import_ok(b, after, &r);
    assert_int_equal(r.sessions_existing, 1);
    assert_int_equal(r.messages_existing, 1);
    assert_int_equal(r.messages_added, 1);
    free(before);
    free(after);
    store_close(b);
}

static void import_turns_streaming_messages_into_cancelled_ones(void **state) {
    store_fx *f = *state;
    const char *doc =
        "{\"format\":\"confab-export\",\"version\":1,\"sessions\":[{\"uuid\":\"71111111-1111-4111-"
        "8111-111111111111\","
        "\"title\":\"t\",\"created_at\":\"2026-01-01T00:00:00.000Z\",\"updated_at\":\"2026-01-"
        "01T00:00:00.000Z\","
        "\"messages\":[{\"uuid\":\"81111111-1111-4111-8111-111111111111\",\"role\":\"assistant\","
        "\"content\":\"half a "
        "rep\",\"created_at\":\"2026-01-01T00:00:00.000Z\",\"status\":\"streaming\"}]}]}";
    import_ok(f->st, doc, NULL);
    int64_t sid;
    assert_int_equal(store_session_find(f->st, "71111111-1111-4111-8111-111111111111", &sid, NULL),
                     0);
    store_message *m;
    size_t n;
    assert_int_equal(store_msg_list(f->st, sid, &m, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].status, STORE_CANCELLED); /* nobody is writing it here */
    assert_string_equal(m[0].content, "half a rep");
    assert_string_equal(m[0].uuid, "81111111-1111-4111-8111-111111111111");
    store_messages_free(m, n);
}

static void import_reports_json_syntax_errors_with_line_and_column(void **state) {
    store_fx *f = *state;
    const char *doc =
        "{\n  \"format\": \"confab-export\",\n  \"version\": 1,\n  \"sessions\": [ }\n";
    cf_err err = {0};
    assert_int_equal(store_import_json(f->st, doc, strlen(doc), NULL, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg, "line 4 column"));
    const char *dup = "{\"format\": \"confab-export\", \"format\": \"x\"}";
    assert_int_equal(store_import_json(f->st, dup, strlen(dup), NULL, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg, "duplicate"));
    assert_int_equal(store_import_json(f->st, "", 0, NULL, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg, "line 1"));
}

/* Applies one change to a valid three-session document and checks that the
 * import fails with EXPECT and adds nothing. */
typedef void (*mutator)(json_t *doc);
static json_t *msg_at(json_t *d, size_t s, size_t m) {
    return json_array_get(
        json_object_get(json_array_get(json_object_get(d, "sessions"), s), "messages"), m);
}
static json_t *sess_at(json_t *d, size_t s) {
    return json_array_get(json_object_get(d, "sessions"), s);
}
static void m_version(json_t *d) { json_object_set_new(d, "version", json_integer(2)); }
static void m_version_str(json_t *d) { json_object_set_new(d, "version", json_string("1")); }
static void m_format(json_t *d) { json_object_set_new(d, "format", json_string("chatgpt")); }
static void m_sessions_obj(json_t *d) { json_object_set_new(d, "sessions", json_object()); }
static void m_role(json_t *d) {
    json_object_set_new(msg_at(d, 2, 1), "role", json_string("robot"));
}
static void m_status(json_t *d) {
    json_object_set_new(msg_at(d, 1, 0), "status", json_string("done"));
}
static void m_tokens(json_t *d) {
    json_object_set_new(msg_at(d, 2, 1), "prompt_tokens", json_string("12"));
}
static void m_neg_tokens(json_t *d) {
    json_object_set_new(msg_at(d, 2, 1), "completion_tokens", json_integer(-1));
}
static void m_content_missing(json_t *d) { json_object_del(msg_at(d, 2, 0), "content"); }
static void m_uuid(json_t *d) { json_object_set_new(msg_at(d, 0, 0), "uuid", json_string("1234")); }
static void m_time(json_t *d) {
    json_object_set_new(sess_at(d, 1), "created_at", json_string("yesterday"));
}
static void m_unknown(json_t *d) {
    json_object_set_new(msg_at(d, 1, 0), "colour", json_string("red"));
}
static void m_archived(json_t *d) {
    json_object_set_new(sess_at(d, 0), "archived", json_integer(1));
}
static void m_params(json_t *d) { json_object_set_new(sess_at(d, 0), "params", json_string("{}")); }
static void m_parent_later(json_t *d) {
    json_object_set(msg_at(d, 2, 0), "parent", json_object_get(msg_at(d, 2, 1), "uuid"));
}
static void m_parent_other(json_t *d) {
    json_object_set(msg_at(d, 2, 1), "parent", json_object_get(msg_at(d, 0, 0), "uuid"));
}
static void m_dup_uuid(json_t *d) {
    json_object_set(msg_at(d, 2, 1), "uuid", json_object_get(msg_at(d, 1, 0), "uuid"));
}
static void m_session_not_obj(json_t *d) {
    json_array_set_new(json_object_get(d, "sessions"), 1, json_string("x"));
}
static void m_vote_winner(json_t *d) {
    json_object_set_new(json_array_get(json_object_get(sess_at(d, 2), "votes"), 0), "winner",
                        json_string("both"));
}
static void m_vote_ref(json_t *d) {
    json_object_set(json_array_get(json_object_get(sess_at(d, 2), "votes"), 0), "message_b",
                    json_object_get(msg_at(d, 0, 0), "uuid"));
}

static void import_rejects_bad_documents_naming_the_place(void **state) {
    store_fx *f = *state;
    for (int i = 0; i < 3; i++) {
        char t[16];
        snprintf(t, sizeof t, "s%d", i);
        int64_t sid = fx_session(f->st, t);
        int64_t q = fx_msg(f->st, sid, 0, "user", "question");
        int64_t a = fx_msg(f->st, sid, q, "assistant", "answer");
        if (i == 2) {
            store_vote v = {.session_id = sid,
                            .message_a = q,
                            .message_b = a,
                            .model_a = "x",
                            .model_b = "y",
                            .winner = "tie"};
            assert_int_equal(store_vote_add(f->st, &v, NULL, NULL), 0);
        }
    }
    char *doc = export_str(f->st, 0, false);
    struct {
        mutator fn;
        const char *expect;
    } cases[] = {
        {m_version, "version: unsupported export version 2 (this confab reads version 1)"},
        {m_version_str, "version: must be an integer"},
        {m_format, "format: must be \"confab-export\""},
        {m_sessions_obj, "sessions: must be an array"},
        {m_role, "sessions[2].messages[1].role: 'robot' is not system, user, assistant or tool"},
        {m_status, "sessions[1].messages[0].status: 'done' is not"},
        {m_tokens, "sessions[2].messages[1].prompt_tokens: must be a non-negative integer or null"},
        {m_neg_tokens,
         "sessions[2].messages[1].completion_tokens: must be a non-negative integer or null"},
        {m_content_missing, "sessions[2].messages[0].content: missing (required)"},
        {m_uuid, "sessions[0].messages[0].uuid: must be a uuid"},
        {m_time, "sessions[1].created_at: must be a time"},
        {m_unknown, "sessions[1].messages[0].colour: unknown field"},
        {m_archived, "sessions[0].archived: must be true or false"},
        {m_params, "sessions[0].params: must be an object"},
        {m_parent_later, "sessions[2].messages[0].parent: "},
        {m_parent_other, "sessions[2].messages[1].parent: "},
        {m_dup_uuid, "sessions[2].messages[1].uuid: "},
        {m_session_not_obj, "sessions[1]: must be an object"},
        {m_vote_winner, "sessions[2].votes[0].winner: 'both' is not a, b or tie"},
        {m_vote_ref, "sessions[2].votes[0].message_b: "},
    };
    store *b = fresh(f, "b.db");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = json_loads(doc, 0, NULL);
        cases[i].fn(j);
        char *bad = json_dumps(j, JSON_INDENT(1));
        json_decref(j);
        cf_err err = {0};
        store_import_result r = {.sessions_added = 99};
        int rc = store_import_json(b, bad, strlen(bad), &r, &err);
        if (rc != CF_EFORMAT || strncmp(err.msg, cases[i].expect, strlen(cases[i].expect)) != 0)
            fprintf(stderr, "case %zu: rc %d, message '%s', wanted '%s'\n", i, rc, err.msg,
                    cases[i].expect);
        assert_int_equal(rc, CF_EFORMAT);
        assert_true(strncmp(err.msg, cases[i].expect, strlen(cases[i].expect)) == 0);
        assert_int_equal(r.sessions_added, 0);
        free(bad);
    }
    store_session *ss;
    size_t n;
    store_list_opts all = {.include_archived = true};
    assert_int_equal(store_session_list(b, &all, &ss, &n, NULL), 0);
    assert_int_equal(n, 0); /* nothing got in */
    free(doc);
    store_close(b);
}

static void import_conflicting_message_uuid_rolls_back_everything(void **state) {
    store_fx *f = *state;
    int64_t s1 = fx_session(f->st, "first");
    fx_msg(f->st, s1, 0, "user", "hello");
    char *doc = export_str(f->st, s1, false);
    /* Same message uuid, new session uuid, plus an innocent session first. */
    json_t *j = json_loads(doc, 0, NULL);
    json_t *se = json_array_get(json_object_get(j, "sessions"), 0);
    json_t *copy = json_deep_copy(se);
    json_object_set_new(copy, "uuid", json_string("99999999-0000-4000-8000-000000000001"));
    json_object_set_new(copy, "messages", json_array());
    json_object_set_new(copy, "title", json_string("innocent"));
    json_object_set_new(se, "uuid", json_string("99999999-0000-4000-8000-000000000002"));
    json_array_insert_new(json_object_get(j, "sessions"), 0, copy);
    char *bad = json_dumps(j, 0);
    json_decref(j);
    cf_err err = {0};
    store_import_result r;
    assert_int_equal(store_import_json(f->st, bad, strlen(bad), &r, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg, "sessions[1].messages[0].uuid: message"));
    assert_non_null(strstr(err.msg, "already exists in another session"));
    int64_t id;
    assert_int_equal(store_session_find(f->st, "99999999-0000-4000-8000-000000000001", &id, &err),
                     CF_ENOTFOUND);
    free(bad);
    free(doc);
}

static void export_markdown_is_a_readable_transcript(void **state) {
    store_fx *f = *state;
    fill_rich(f->st);
    int64_t sid;
    assert_int_equal(store_session_find(f->st, "1", &sid, NULL), 0);
    char *md = export_str(f->st, sid, true);
    assert_non_null(strstr(md, "# Ünïcödé title — 日本\n"));
    assert_non_null(strstr(md, "- Model: qwen2-0.5b\n"));
    assert_non_null(strstr(md, "- Created: 2023-11-14T22:13:20.001Z"));
    assert_non_null(strstr(md, "## user · 2023-11-14T22:13:20.200Z\n\nQuote \"this\""));
    assert_non_null(strstr(
        md,
        "## assistant · qwen2-0.5b (local) · 2023-11-14T22:13:20.300Z · variant a\n\nAnswer A\n"));
    assert_non_null(strstr(md, "· error · variant b"));
    assert_non_null(strstr(md, "> error: HTTP 500 from upstream"));
    assert_non_null(strstr(md, "17 prompt tokens, 3 completion tokens, $0.300000, 812 ms"));
    assert_null(strstr(md, "partial")); /* only the one session */
    free(md);
}

static void export_of_a_missing_session_is_notfound(void **state) {
    store_fx *f = *state;
    cf_err err = {0};
    FILE *devnull = fopen("/dev/null", "w");
    assert_int_equal(store_export_json(f->st, 77, devnull, &err), CF_ENOTFOUND);
    assert_int_equal(store_export_markdown(f->st, 77, devnull, &err), CF_ENOTFOUND);
    fclose(devnull);
    /* An empty database exports a valid, empty document. */
    char *doc = export_str(f->st, 0, false);
    json_t *j = json_loads(doc, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "sessions")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), 1);
    json_decref(j);
    import_ok(f->st, doc, NULL);
    free(doc);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(export_json_round_trips_every_field),
        T(import_of_the_same_file_twice_adds_nothing),
        T(import_merges_new_messages_into_an_existing_session),
        T(import_turns_streaming_messages_into_cancelled_ones),
        T(import_reports_json_syntax_errors_with_line_and_column),
        T(import_rejects_bad_documents_naming_the_place),
        T(import_conflicting_message_uuid_rolls_back_everything),
        T(export_markdown_is_a_readable_transcript),
        T(export_of_a_missing_session_is_notfound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
