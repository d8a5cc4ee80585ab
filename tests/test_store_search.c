/* Tests for the store's full-text search: ranking, snippets, filters,
 * paging, titles, and queries full of FTS5 syntax. */
#include "store_fixture.h"

static size_t run_search(store *st, store_search_opts *o, store_hit **h) {
    size_t n = 0;
    cf_err err = {0};
    int r = store_search(st, o, h, &n, &err);
    if (r) fprintf(stderr, "search '%s': %s\n", o->query, err.msg);
    assert_int_equal(r, 0);
    return n;
}

static void search_ranks_better_matches_first_and_highlights_terms(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "garden");
    int64_t weak = fx_msg(f->st, sid, 0, "user",
                          "I planted tomatoes last year, and many other vegetables grew well in "
                          "the long warm summer");
    int64_t strong = fx_msg(f->st, sid, weak, "assistant",
                            "Tomatoes need sun. Water tomatoes deeply; tomatoes hate wet leaves.");
    fx_msg(f->st, sid, strong, "user", "what about basil?");
    store_hit *h;
    store_search_opts o = {.query = "tomatoes"};
    size_t n = run_search(f->st, &o, &h);
    assert_int_equal(n, 2);
    assert_int_equal(h[0].message_id, strong);
    assert_int_equal(h[1].message_id, weak);
    assert_true(h[0].rank <= h[1].rank);
    assert_int_equal(h[0].kind, STORE_HIT_MESSAGE);
    assert_string_equal(h[0].role, "assistant");
    assert_string_equal(h[0].session_title, "garden");
    assert_int_equal(h[0].session_id, sid);
    assert_non_null(strstr(h[0].snippet, "**Tomatoes**"));
    assert_non_null(strstr(h[1].snippet, "**tomatoes**"));
    store_hits_free(h, n);
    o.hl_open = "<mark>";
    o.hl_close = "</mark>";
    n = run_search(f->st, &o, &h);
    assert_non_null(strstr(h[0].snippet, "<mark>tomatoes</mark>"));
    store_hits_free(h, n);
}

static void search_finds_session_titles(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "Kubernetes networking notes");
    fx_msg(f->st, sid, 0, "user", "unrelated body text");
    store_hit *h;
    store_search_opts o = {.query = "kubernetes"};
    size_t n = run_search(f->st, &o, &h);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].kind, STORE_HIT_TITLE);
    assert_int_equal(h[0].session_id, sid);
    assert_int_equal(h[0].message_id, 0);
    assert_null(h[0].role);
    assert_string_equal(h[0].snippet, "**Kubernetes** networking notes");
    store_hits_free(h, n);
}

static void search_filters_by_session_and_date_range(void **state) {
    store_fx *f = *state;
    int64_t s1 = fx_session(f->st, "one"), s2 = fx_session(f->st, "two");
    int64_t ids[6];
    for (int i = 0; i < 6; i++) {
        store_message m = {0};
        m.session_id = i % 2 ? s2 : s1;
        m.role = "user";
        m.content = "the walrus said hello";
        m.status = STORE_COMPLETE;
        m.created_at = 1000 * (i + 1);
        assert_int_equal(store_msg_append(f->st, &m, &ids[i], NULL), 0);
    }
    store_hit *h;
    store_search_opts o = {.query = "walrus", .session_id = s2};
    size_t n = run_search(f->st, &o, &h);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(h[i].session_id, s2);
    store_hits_free(h, n);
    store_search_opts d = {.query = "walrus", .since = 2000, .until = 4000};
    n = run_search(f->st, &d, &h);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++)
        assert_true(h[i].time >= 2000 && h[i].time <= 4000);
    store_hits_free(h, n);
    store_search_opts both = {.query = "walrus", .session_id = s1, .since = 2000, .until = 4000};
    n = run_search(f->st, &both, &h);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].message_id, ids[2]);
    store_hits_free(h, n);
    cf_err err = {0};
    store_search_opts bad = {.query = "walrus", .since = 5000, .until = 10};
    assert_int_equal(store_search(f->st, &bad, &h, &n, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "date range"));
}

static void search_pages_without_overlap(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "p");
    for (int i = 0; i < 25; i++) {
        char t[64];
        snprintf(t, sizeof t, "narwhal number %d", i);
        fx_msg(f->st, sid, 0, "user", t);
    }
    int64_t seen[25];
    size_t total = 0;
    for (int page = 0; page < 4; page++) {
        store_hit *h;
        store_search_opts o = {.query = "narwhal", .limit = 10, .offset = page * 10};
        size_t n = run_search(f->st, &o, &h);
        assert_int_equal(n, page < 2 ? 10 : page == 2 ? 5 : 0);
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < total; j++)
                assert_int_not_equal(seen[j], h[i].message_id);
            seen[total++] = h[i].message_id;
        }
        store_hits_free(h, n);
    }
    assert_int_equal(total, 25);
}

static void search_treats_fts_syntax_in_user_text_as_plain_words(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "syntax");
    fx_msg(f->st, sid, 0, "user", "error: NOT found AND retry OR quit (see col:name) near \"x\"");
    static const char *const tricky[] = {
        "\"found",       /* unbalanced quote */
        "found\"",       /* trailing quote */
        "found AND",     /* dangling operator */
        "NOT found",     /* leading operator */
        "(found",        /* open parenthesis */
        "col:name",      /* column filter syntax */
        "found OR",      /* operator as last word */
        "retry*",        /* prefix */
        "found NEAR(x)", /* NEAR group: the words "near x" as a phrase */
        "found ^ -retry +quit",
    };
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
        store_hit *h;
        store_search_opts o = {.query = tricky[i]};
        size_t n = run_search(f->st, &o, &h);
        if (n != 1) fprintf(stderr, "query %s found %zu\n", tricky[i], n);
        assert_int_equal(n, 1);
        store_hits_free(h, n);
    }
    /* Operators are words: "AND" must be in the text too. */
    fx_msg(f->st, sid, 0, "user", "found only");
    store_hit *h;
    store_search_opts o = {.query = "found AND"};
    size_t n = run_search(f->st, &o, &h);
    assert_int_equal(n, 1);
    store_hits_free(h, n);
    /* A query with nothing to look for is a clear error. */
    cf_err err = {0};
    store_search_opts empty = {.query = " \" ( * - "};
    assert_int_equal(store_search(f->st, &empty, &h, &n, &err), CF_EINVAL);
    assert_string_equal(err.msg, "search query has no words to look for");
}

static void search_quoted_phrase_matches_words_in_order(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "phrase");
    int64_t inorder = fx_msg(f->st, sid, 0, "user", "the quick brown fox");
    fx_msg(f->st, sid, 0, "user", "brown and quick, the fox");
    store_hit *h;
    store_search_opts o = {.query = "\"quick brown\""};
    size_t n = run_search(f->st, &o, &h);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].message_id, inorder);
    store_hits_free(h, n);
    store_search_opts words = {.query = "quick brown"};
    n = run_search(f->st, &words, &h);
    assert_int_equal(n, 2);
    store_hits_free(h, n);
}

static void search_ignores_case_and_diacritics(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "d");
    fx_msg(f->st, sid, 0, "user", "Un CAFÉ crème à Zürich");
    store_hit *h;
    store_search_opts o = {.query = "cafe zurich"};
    size_t n = run_search(f->st, &o, &h);
    assert_int_equal(n, 1);
    assert_non_null(strstr(h[0].snippet, "**CAFÉ**"));
    store_hits_free(h, n);
}

static void search_raw_mode_reports_fts_syntax_errors(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "raw");
    fx_msg(f->st, sid, 0, "user", "alpha beta gamma");
    store_hit *h;
    size_t n;
    store_search_opts ok = {.query = "alpha OR zeta", .raw = true};
    n = run_search(f->st, &ok, &h);
    assert_int_equal(n, 1);
    store_hits_free(h, n);
    static const char *const bad[] = {"\"alpha", "alpha AND", "(alpha", "alpha OR OR beta"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cf_err err = {0};
        store_search_opts o = {.query = bad[i], .raw = true};
        assert_int_equal(store_search(f->st, &o, &h, &n, &err), CF_EINVAL);
        assert_non_null(strstr(err.msg, "bad search query"));
        assert_int_equal(n, 0);
    }
}

static void search_caps_unfiltered_ranking_to_the_newest_matches(void **state) {
    store_fx *f = *state;
    int64_t sid = fx_session(f->st, "cap");
    int64_t best = fx_msg(f->st, sid, 0, "user", "ocelot ocelot ocelot"); /* oldest, best match */
    int64_t ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = fx_msg(f->st, sid, 0, "user", "an ocelot among many other words here");
    store_hit *h;
    store_search_opts capped = {.query = "ocelot", .max_candidates = 2};
    size_t n = run_search(f->st, &capped, &h);
    assert_int_equal(n, 2); /* only the two newest matches were ranked */
    assert_true((h[0].message_id == ids[3] || h[0].message_id == ids[2]) &&
                (h[1].message_id == ids[3] || h[1].message_id == ids[2]));
    store_hits_free(h, n);
    store_search_opts all = {.query = "ocelot", .max_candidates = -1};
    n = run_search(f->st, &all, &h);
    assert_int_equal(n, 5);
    assert_int_equal(h[0].message_id, best);
    store_hits_free(h, n);
    /* A filtered search ranks every match, whatever the cap. */
    store_search_opts filtered = {.query = "ocelot", .max_candidates = 2, .session_id = sid};
    n = run_search(f->st, &filtered, &h);
    assert_int_equal(n, 5);
    assert_int_equal(h[0].message_id, best);
    store_hits_free(h, n);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(search_ranks_better_matches_first_and_highlights_terms),
        T(search_finds_session_titles),
        T(search_filters_by_session_and_date_range),
        T(search_pages_without_overlap),
        T(search_treats_fts_syntax_in_user_text_as_plain_words),
        T(search_quoted_phrase_matches_words_in_order),
        T(search_ignores_case_and_diacritics),
        T(search_raw_mode_reports_fts_syntax_errors),
        T(search_caps_unfiltered_ranking_to_the_newest_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
