/* Tests for pull: downloads from a local HTTP server on 127.0.0.1 that
 * serves a real GGUF file from the test data, honours Range requests (or is
 * told not to), can cut the connection halfway, stall, answer 404, redirect
 * like Hugging Face's resolve/ URLs, and publish digests in headers. */
#include "testutil.h"

#include "app/pull.h"
#include "providers/provider.h"
#include "range_server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------ fixture */

typedef struct {
    char *dir; /* temp dir; models go to dir/models */
    char models[4200];
    char *gguf; /* the served file */
    size_t len;
    char sha[65];
    rs_server srv;
    char url[256];
} fx;

static void sha_hex(const void *p, size_t n, char out[65]) {
    unsigned char d[32];
    unsigned int dn = 0;
    EVP_Digest(p, n, d, &dn, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static int setup(void **state) {
    const char *src = td_find("models/stories260K.gguf");
    if (!src) {
        *state = NULL;
        return 0;
    }
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    snprintf(f->models, sizeof f->models, "%s/models", f->dir);
    f->gguf = tu_read_file(src, &f->len);
    sha_hex(f->gguf, f->len, f->sha);
    f->srv.body = f->gguf;
    f->srv.len = f->len;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    if (!f) return 0;
    if (f->srv.th) rs_stop(&f->srv);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->gguf);
    free(f);
    unsetenv("CONFAB_HF_ENDPOINT");
    return 0;
}

/* The fixture, skipping when the test data is absent. */
static fx *need(void **state) {
    if (!*state) { td_path("models/stories260K.gguf"); /* skips, saying why */ }
    return *state;
}

static const char *start(fx *f, const char *path) {
    rs_start(&f->srv);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d%s", f->srv.port, path);
    return f->url;
}

static pull_opts opts_for(fx *f) {
    pull_opts o = {.models_dir = f->models, .connect_timeout_ms = 3000, .low_speed_time_s = 5};
    return o;
}

static bool exists(const char *dir, const char *name) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

static off_t size_of(const char *dir, const char *name) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size : -1;
}

static void assert_same_as_served(fx *f, const char *name) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", f->models, name);
    size_t n = 0;
    char *got = tu_read_file(p, &n);
    assert_non_null(got);
    assert_int_equal(n, f->len);
    assert_memory_equal(got, f->gguf, n);
    free(got);
}

/* ------------------------------------------------------------ sources */

static void test_hf_reference_maps_to_resolve_url(void **state) {
    (void)state;
    char *url, *name;
    cf_err err = {0};
    assert_int_equal(
        pull_parse_source("hf:org/repo/sub/M-Q8_0.gguf", "http://h:1/", &url, &name, &err), 0);
    assert_string_equal(url, "http://h:1/org/repo/resolve/main/sub/M-Q8_0.gguf");
    assert_string_equal(name, "M-Q8_0.gguf");
    free(url);
    free(name);
    setenv("CONFAB_HF_ENDPOINT", "http://127.0.0.1:9", 1);
    assert_int_equal(pull_parse_source("hf:a/b/c.gguf", NULL, &url, &name, &err), 0);
    assert_string_equal(url, "http://127.0.0.1:9/a/b/resolve/main/c.gguf");
    free(url);
    free(name);
    unsetenv("CONFAB_HF_ENDPOINT");
    assert_int_equal(pull_parse_source("hf:a/b/c.gguf", NULL, &url, &name, &err), 0);
    assert_string_equal(url, "https://huggingface.co/a/b/resolve/main/c.gguf");
    free(url);
    free(name);
}

static void test_url_file_name_is_last_segment_without_query(void **state) {
    (void)state;
    char *url, *name;
    cf_err err = {0};
    assert_int_equal(
        pull_parse_source("https://x.example/a/b/Tiny.gguf?download=1", NULL, &url, &name, &err),
        0);
    assert_string_equal(name, "Tiny.gguf");
    assert_string_equal(url, "https://x.example/a/b/Tiny.gguf?download=1");
    free(url);
    free(name);
}

static void test_bad_sources_are_rejected_with_reason(void **state) {
    (void)state;
    char *url, *name;
    cf_err err = {0};
    assert_int_equal(pull_parse_source("ftp://x/y.gguf", NULL, &url, &name, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "unknown model source"));
    assert_int_equal(pull_parse_source("hf:org/repo", NULL, &url, &name, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "hf:ORG/REPO/FILE.gguf"));
    assert_int_equal(pull_parse_source("hf:org/repo/../x.gguf", NULL, &url, &name, &err),
                     CF_EINVAL);
    assert_int_equal(pull_parse_source("hf:org/repo/readme.md", NULL, &url, &name, &err),
                     CF_EINVAL);
    assert_non_null(strstr(err.msg, "does not name a .gguf file"));
    assert_int_equal(pull_parse_source("https://h/dir/", NULL, &url, &name, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "-o NAME"));
    assert_int_equal(pull_parse_source("https://u:p@h/x.gguf", NULL, &url, &name, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "credentials"));
}

/* ------------------------------------------------------------ transfers */

typedef struct {
    int calls, finished;
    uint64_t last_done;
    int64_t total;
    volatile sig_atomic_t *cancel_at_first;
} prog_log;

static void on_progress(void *ctx, const pull_progress *p) {
    prog_log *l = ctx;
    l->calls++;
    l->finished += p->finished;
    l->last_done = p->done;
    l->total = p->total;
    if (l->cancel_at_first && p->done > 0) *l->cancel_at_first = 1;
}

static void test_complete_transfer_lands_under_final_name(void **state) {
    fx *f = need(state);
    const char *url = start(f, "/files/stories260K.gguf");
    pull_opts o = opts_for(f);
    prog_log pl = {0};
    o.progress = on_progress;
    o.progress_ctx = &pl;
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    assert_true(r.path && strstr(r.path, "/models/stories260K.gguf"));
    assert_int_equal(r.size, f->len);
    assert_string_equal(r.sha256, f->sha);
    assert_int_equal(r.resumed_from, 0);
    assert_null(r.digest_source); /* the server published none */
    assert_same_as_served(f, "stories260K.gguf");
    assert_false(exists(f->models, "stories260K.gguf.part"));
    assert_int_equal(pl.finished, 1);
    assert_int_equal(pl.last_done, f->len);
    assert_int_equal(pl.total, (int64_t)f->len);
    assert_string_equal(f->srv.ranges[0], "");
    pull_result_free(&r);
}

static void test_cut_transfer_resumes_with_range_and_is_identical(void **state) {
    fx *f = need(state);
    f->srv.cut_after = (long)(f->len / 2);
    f->srv.cut_times = 1;
    const char *url = start(f, "/m/stories260K.gguf");
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), CF_EIO);
    assert_non_null(strstr(err.msg, "network error"));
    assert_non_null(strstr(err.msg, "resume"));
    assert_false(exists(f->models, "stories260K.gguf"));
    assert_int_equal(size_of(f->models, "stories260K.gguf.part"), (off_t)(f->len / 2));

    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    assert_int_equal(f->srv.n_req, 2);
    char want[64];
    snprintf(want, sizeof want, "bytes=%zu-", f->len / 2);
    assert_string_equal(f->srv.ranges[1], want);
    assert_int_equal(r.resumed_from, f->len / 2);
    assert_false(r.restarted);
    assert_string_equal(r.sha256, f->sha); /* the digest covers the resumed bytes too */
    assert_same_as_served(f, "stories260K.gguf");
    assert_false(exists(f->models, "stories260K.gguf.part"));
    pull_result_free(&r);
}

static void test_server_ignoring_range_restarts_from_zero(void **state) {
    fx *f = need(state);
    f->srv.ignore_range = true;
    const char *url = start(f, "/m/stories260K.gguf");
    mkdir(f->models, 0755);
    char part[4400];
    snprintf(part, sizeof part, "%s/stories260K.gguf.part", f->models);
    /* A stale .part whose bytes are wrong: appending to it would corrupt the file. */
    assert_int_equal(tu_write_file(part, "XXXXXXXXXXXXXXXX", 16), 0);
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    assert_string_equal(f->srv.ranges[0], "bytes=16-");
    assert_int_equal(r.resumed_from, 0);
    assert_true(r.restarted);
    assert_same_as_served(f, "stories260K.gguf");
    pull_result_free(&r);
}

static void test_wrong_content_range_restarts_from_zero(void **state) {
    fx *f = need(state);
    f->srv.bad_range_shift = -8; /* 206 starting 8 bytes before what was asked */
    const char *url = start(f, "/m/stories260K.gguf");
    mkdir(f->models, 0755);
    char part[4400];
    snprintf(part, sizeof part, "%s/stories260K.gguf.part", f->models);
    assert_int_equal(tu_write_file(part, f->gguf, 100), 0);
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    assert_int_equal(f->srv.n_req, 2);
    assert_string_equal(f->srv.ranges[0], "bytes=100-");
    assert_string_equal(f->srv.ranges[1], ""); /* the retry asked for everything */
    assert_true(r.restarted);
    assert_same_as_served(f, "stories260K.gguf");
    pull_result_free(&r);
}

static void test_complete_part_is_finished_after_416(void **state) {
    fx *f = need(state);
    const char *url = start(f, "/m/stories260K.gguf");
    mkdir(f->models, 0755);
    char part[4400];
    snprintf(part, sizeof part, "%s/stories260K.gguf.part", f->models);
    assert_int_equal(tu_write_file(part, f->gguf, f->len), 0);
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    assert_int_equal(f->srv.n_req, 1);
    assert_int_equal(r.resumed_from, f->len);
    assert_string_equal(r.sha256, f->sha);
    assert_same_as_served(f, "stories260K.gguf");
    pull_result_free(&r);
}

static void test_bad_sha256_deletes_download(void **state) {
    fx *f = need(state);
    const char *url = start(f, "/m/stories260K.gguf");
    pull_opts o = opts_for(f);
    o.sha256 = "0000000000000000000000000000000000000000000000000000000000000000";
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg, "sha256 mismatch"));
    assert_non_null(strstr(err.msg, f->sha));
    assert_false(exists(f->models, "stories260K.gguf"));
    assert_false(exists(f->models, "stories260K.gguf.part"));
}

static void test_right_sha256_is_accepted_in_any_case(void **state) {
    fx *f = need(state);
    const char *url = start(f, "/m/stories260K.gguf");
    pull_opts o = opts_for(f);
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)toupper((unsigned char)f->sha[i]);
    o.sha256 = upper;
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    assert_string_equal(r.digest_source, "--sha256");
    pull_result_free(&r);
}

static void test_malformed_sha256_option_is_rejected(void **state) {
    fx *f = need(state);
    pull_opts o = opts_for(f);
    o.sha256 = "abc";
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model("http://127.0.0.1:1/x.gguf", &o, &r, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "64 hex digits"));
}

static void test_non_gguf_body_is_rejected_and_deleted(void **state) {
    fx *f = need(state);
    static const char html[] =
        "<html><body>Sorry, this is a login page, not a model.</body></html>";
    f->srv.body = html;
    f->srv.len = sizeof html - 1;
    const char *url = start(f, "/m/model.gguf");
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg, "not a valid GGUF file"));
    assert_false(exists(f->models, "model.gguf"));
    assert_false(exists(f->models, "model.gguf.part"));
}

static void test_published_digest_mismatch_is_rejected(void **state) {
    fx *f = need(state);
    f->srv.headers =
        "X-Linked-Etag: \"1111111111111111111111111111111111111111111111111111111111111111\"\r\n";
    const char *url = start(f, "/m/stories260K.gguf");
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg, "X-Linked-Etag"));
    assert_false(exists(f->models, "stories260K.gguf"));
    assert_false(exists(f->models, "stories260K.gguf.part"));
}

static void test_digest_header_base64_is_verified(void **state) {
    fx *f = need(state);
    unsigned char d[32];
    unsigned int dn = 0;
    EVP_Digest(f->gguf, f->len, d, &dn, EVP_sha256(), NULL);
    unsigned char b64[64];
    EVP_EncodeBlock(b64, d, 32);
    char hdr[128];
    snprintf(hdr, sizeof hdr, "Digest: SHA-256=%s\r\n", b64);
    f->srv.headers = hdr;
    const char *url = start(f, "/m/stories260K.gguf");
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    assert_string_equal(r.digest_source, "Digest");
    pull_result_free(&r);
}

static void test_repr_digest_mismatch_is_rejected(void **state) {
    fx *f = need(state);
    /* RFC 9530 byte-sequence syntax; 32 bytes of 0xff, not the file's digest. */
    f->srv.headers = "Repr-Digest: sha-256=://////////////////////////////////////////8=:\r\n";
    const char *url = start(f, "/m/stories260K.gguf");
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg,
                           "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
                           " (Repr-Digest)"));
    assert_false(exists(f->models, "stories260K.gguf"));
}

static void test_hf_source_follows_redirect_and_checks_linked_etag(void **state) {
    fx *f = need(state);
    char hdr[160];
    snprintf(hdr, sizeof hdr, "X-Linked-Etag: \"%s\"\r\nETag: \"%s\"\r\n", f->sha, f->sha);
    f->srv.redirect = true;
    f->srv.redirect_headers = hdr;
    start(f, "");
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f->srv.port);
    setenv("CONFAB_HF_ENDPOINT", ep, 1);
    setenv("HF_TOKEN", "hf_testtoken", 1);
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    int rc = pull_model("hf:someorg/somerepo/Tiny-Q8_0.gguf", &o, &r, &err);
    unsetenv("HF_TOKEN");
    assert_int_equal(rc, 0);
    assert_string_equal(r.digest_source, "X-Linked-Etag");
    assert_int_equal(f->srv.n_req, 2);
    assert_string_equal(f->srv.paths[0], "/someorg/somerepo/resolve/main/Tiny-Q8_0.gguf");
    assert_string_equal(f->srv.paths[1], "/cdn/Tiny-Q8_0.gguf");
    assert_string_equal(f->srv.auth[0], "Bearer hf_testtoken");
    assert_same_as_served(f, "Tiny-Q8_0.gguf");
    pull_result_free(&r);
}

/* The real Hugging Face flow: resolve/ redirects to the CDN; the transfer
 * is cut; the resume carries Range through the redirect, and the digest on
 * the redirect covers the whole file. */
static void test_hf_resume_carries_range_through_redirect(void **state) {
    fx *f = need(state);
    char hdr[160];
    snprintf(hdr, sizeof hdr, "X-Linked-Etag: \"%s\"\r\n", f->sha);
    f->srv.redirect = true;
    f->srv.redirect_headers = hdr;
    f->srv.cut_after = 300000;
    f->srv.cut_times = 1;
    start(f, "");
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f->srv.port);
    setenv("CONFAB_HF_ENDPOINT", ep, 1);
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model("hf:o/r/M.gguf", &o, &r, &err), CF_EIO);
    assert_int_equal(size_of(f->models, "M.gguf.part"), 300000);
    assert_int_equal(pull_model("hf:o/r/M.gguf", &o, &r, &err), 0);
    assert_int_equal(f->srv.n_req, 4);
    assert_string_equal(f->srv.paths[2], "/o/r/resolve/main/M.gguf");
    assert_string_equal(f->srv.ranges[2], "bytes=300000-");
    assert_string_equal(f->srv.paths[3], "/cdn/M.gguf");
    assert_string_equal(f->srv.ranges[3], "bytes=300000-");
    assert_int_equal(r.resumed_from, 300000);
    assert_string_equal(r.digest_source, "X-Linked-Etag");
    assert_same_as_served(f, "M.gguf");
    pull_result_free(&r);
}

static void test_hf_cdn_etag_after_redirect_is_not_a_digest(void **state) {
    fx *f = need(state);
    char hdr[160];
    snprintf(hdr, sizeof hdr, "X-Linked-Etag: \"%s\"\r\n", f->sha);
    f->srv.redirect = true;
    f->srv.redirect_headers = hdr;
    /* The CDN's own validator: 64 hex digits, but not the file's sha256. */
    f->srv.headers =
        "ETag: \"3333333333333333333333333333333333333333333333333333333333333333\"\r\n";
    start(f, "");
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f->srv.port);
    setenv("CONFAB_HF_ENDPOINT", ep, 1);
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model("hf:o/r/M.gguf", &o, &r, &err), 0);
    assert_string_equal(r.digest_source, "X-Linked-Etag");
    pull_result_free(&r);
}

static void test_hf_etag_on_direct_answer_is_checked(void **state) {
    fx *f = need(state);
    f->srv.headers =
        "ETag: \"4444444444444444444444444444444444444444444444444444444444444444\"\r\n";
    start(f, "");
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f->srv.port);
    setenv("CONFAB_HF_ENDPOINT", ep, 1);
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model("hf:o/r/M.gguf", &o, &r, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg, "(ETag)"));
    assert_false(exists(f->models, "M.gguf"));
    assert_false(exists(f->models, "M.gguf.part"));
}

static void test_etag_is_a_digest_only_for_hf_sources(void **state) {
    fx *f = need(state);
    /* A 64-hex ETag that is not the file's sha256: opaque for a plain URL. */
    f->srv.headers =
        "ETag: \"2222222222222222222222222222222222222222222222222222222222222222\"\r\n";
    const char *url = start(f, "/m/stories260K.gguf");
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    assert_null(r.digest_source);
    pull_result_free(&r);
}

static void test_404_is_reported_as_not_found_with_url(void **state) {
    fx *f = need(state);
    f->srv.status = 404;
    const char *url = start(f, "/nothing/here.gguf");
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), CF_ENOTFOUND);
    char want[300];
    snprintf(want, sizeof want, "not found: %s", url);
    assert_string_equal(err.msg, want);
    assert_false(exists(f->models, "here.gguf"));
}

static void test_server_error_status_is_named(void **state) {
    fx *f = need(state);
    f->srv.status = 503;
    const char *url = start(f, "/m/x.gguf");
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), CF_EUPSTREAM);
    assert_non_null(strstr(err.msg, "HTTP 503"));
    assert_false(exists(f->models, "x.gguf"));
}

static void test_access_denied_mentions_token_for_hf(void **state) {
    fx *f = need(state);
    f->srv.status = 401;
    start(f, "");
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", f->srv.port);
    setenv("CONFAB_HF_ENDPOINT", ep, 1);
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model("hf:meta/gated/M.gguf", &o, &r, &err), CF_EAUTH);
    assert_non_null(strstr(err.msg, "access denied (HTTP 401)"));
    assert_non_null(strstr(err.msg, "HF_TOKEN"));
    assert_false(exists(f->models, "M.gguf"));
}

static void test_second_pull_of_same_file_is_refused_while_first_runs(void **state) {
    fx *f = need(state);
    const char *url = start(f, "/m/stories260K.gguf");
    mkdir(f->models, 0755);
    char part[4400];
    snprintf(part, sizeof part, "%s/stories260K.gguf.part", f->models);
    int fd = open(part, O_RDWR | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0); /* what a running pull holds */
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), CF_EBUSY);
    assert_non_null(strstr(err.msg, "another pull"));
    assert_true(exists(f->models, "stories260K.gguf.part")); /* not the refused pull's to delete */
    assert_int_equal(f->srv.n_req, 0);
    close(fd);
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    pull_result_free(&r);
}

static void test_connection_refused_is_a_named_network_error(void **state) {
    fx *f = need(state);
    /* Bind and close a port so nothing listens there. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x.gguf", ntohs(a.sin_port));
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), CF_EIO);
    assert_non_null(strstr(err.msg, "cannot connect"));
    assert_false(exists(f->models, "x.gguf"));
    assert_false(exists(f->models, "x.gguf.part")); /* nothing arrived: no empty .part */
}

static void test_stalled_server_times_out_and_keeps_part(void **state) {
    fx *f = need(state);
    /* Few bytes, then silence: libcurl's speed is averaged over a few
     * seconds, so more bytes before the stall would delay the verdict. */
    f->srv.pause_after = 512;
    f->srv.pause_ms = 15000; /* ends early when the client hangs up */
    const char *url = start(f, "/m/stories260K.gguf");
    pull_opts o = opts_for(f);
    o.low_speed_time_s = 1;
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), CF_ETIMEOUT);
    assert_non_null(strstr(err.msg, "timeout"));
    assert_false(exists(f->models, "stories260K.gguf"));
    assert_int_equal(size_of(f->models, "stories260K.gguf.part"), 512);
}

static void test_cancel_stops_and_keeps_part_for_resume(void **state) {
    fx *f = need(state);
    f->srv.pause_after = 65536;
    f->srv.pause_ms = 5000; /* the cancel lands during this pause */
    const char *url = start(f, "/m/stories260K.gguf");
    pull_opts o = opts_for(f);
    volatile sig_atomic_t cancel = 0;
    prog_log pl = {.cancel_at_first = &cancel};
    o.progress = on_progress;
    o.progress_ctx = &pl;
    o.cancel = &cancel;
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), CF_ECANCEL);
    assert_non_null(strstr(err.msg, "cancelled"));
    assert_false(exists(f->models, "stories260K.gguf"));
    assert_int_equal(size_of(f->models, "stories260K.gguf.part"), 65536);
    cancel = 0;
    pl.cancel_at_first = NULL;
    f->srv.pause_after = 0;
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    assert_same_as_served(f, "stories260K.gguf");
    pull_result_free(&r);
}

static void test_existing_file_is_not_downloaded_again(void **state) {
    fx *f = need(state);
    const char *url = start(f, "/m/stories260K.gguf");
    pull_opts o = opts_for(f);
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    pull_result_free(&r);
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    assert_true(r.already_present);
    assert_int_equal(f->srv.n_req, 1);
    pull_result_free(&r);
    o.sha256 = "0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(pull_model(url, &o, &r, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "already exists with a different sha256"));
}

static void test_output_name_gets_gguf_suffix_and_is_validated(void **state) {
    fx *f = need(state);
    const char *url = start(f, "/m/stories260K.gguf");
    pull_opts o = opts_for(f);
    o.out_name = "tiny";
    pull_result r;
    cf_err err = {0};
    assert_int_equal(pull_model(url, &o, &r, &err), 0);
    assert_same_as_served(f, "tiny.gguf");
    pull_result_free(&r);
    o.out_name = "../escape";
    assert_int_equal(pull_model(url, &o, &r, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "bad output name"));
}

static void test_progress_render_shows_bytes_rate_and_eta(void **state) {
    (void)state;
    pull_progress p = {
        .file = "m.gguf", .done = 50 << 20, .total = 100 << 20, .rate = 10 << 20, .eta_s = 5};
    sb_t s = {0};
    pull_progress_render(&p, false, &s);
    assert_string_equal(s.data, "50.0 MiB of 100.0 MiB (50%), 10.0 MiB/s, ETA 0:05");
    sb_clear(&s);
    pull_progress_render(&p, true, &s);
    assert_string_equal(s.data,
                        "[############............]  50.0 MiB / 100.0 MiB  10.0 MiB/s  ETA 0:05");
    sb_clear(&s);
    p.total = -1;
    p.eta_s = -1;
    pull_progress_render(&p, false, &s);
    assert_string_equal(s.data, "50.0 MiB, 10.0 MiB/s, ETA --:--");
    sb_free(&s);
}

/* The CLI end to end: a pull into --models-dir prints what it did and exits 0;
 * a 404 exits 1 with the message on stderr. */
static void test_cli_pull_reports_result_and_errors(void **state) {
    fx *f = need(state);
    const char *url = start(f, "/m/stories260K.gguf");
    char cmd[9000];
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' pull '%s' --models-dir '%s' 2>&1", tu_confab_bin(), url,
             f->models);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "pulled "));
    char want[4600];
    snprintf(want, sizeof want, "pull: %s -> %s/stories260K.gguf", url, f->models);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, f->sha));
    assert_non_null(strstr(out, "pull: stories260K.gguf: 1.1 MiB of 1.1 MiB (100%)"));
    free(out);
    assert_same_as_served(f, "stories260K.gguf");
    snprintf(cmd, sizeof cmd,
             "'%s' pull 'http://127.0.0.1:%d/x.gguf' --models-dir='%s' --sha256=12 2>&1",
             tu_confab_bin(), f->srv.port, f->models);
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "64 hex digits"));
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' pull 2>&1", tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 2);
    free(out);
}

/* Ctrl-C on `confab pull` stops the transfer, exits 130 and keeps the
 * .part with what had arrived. */
static void test_cli_sigint_stops_and_keeps_part(void **state) {
    fx *f = need(state);
    f->srv.pause_after = 65536;
    f->srv.pause_ms = 15000;
    const char *url = start(f, "/m/stories260K.gguf");
    const char *bin = tu_confab_bin(); /* before fork: only exec-safe calls in the child */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(bin, "confab", "pull", url, "--models-dir", f->models, (char *)NULL);
        _exit(127);
    }
    /* Wait for the first 64 KiB to land in the .part, then interrupt. */
    for (int i = 0; i < 500 && size_of(f->models, "stories260K.gguf.part") < 65536; i++)
        usleep(10000);
    assert_int_equal(size_of(f->models, "stories260K.gguf.part"), 65536);
    kill(pid, SIGINT);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 130);
    assert_false(exists(f->models, "stories260K.gguf"));
    assert_int_equal(size_of(f->models, "stories260K.gguf.part"), 65536);
}

int main(void) {
    cf_err err = {0};
    if (prov_global_init(&err)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_reference_maps_to_resolve_url),
        cmocka_unit_test(test_url_file_name_is_last_segment_without_query),
        cmocka_unit_test(test_bad_sources_are_rejected_with_reason),
        cmocka_unit_test_setup_teardown(test_complete_transfer_lands_under_final_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cut_transfer_resumes_with_range_and_is_identical,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_ignoring_range_restarts_from_zero, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wrong_content_range_restarts_from_zero, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_complete_part_is_finished_after_416, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_sha256_deletes_download, setup, teardown),
        cmocka_unit_test_setup_teardown(test_right_sha256_is_accepted_in_any_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_sha256_option_is_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_gguf_body_is_rejected_and_deleted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_published_digest_mismatch_is_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_digest_header_base64_is_verified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repr_digest_mismatch_is_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hf_source_follows_redirect_and_checks_linked_etag,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_hf_resume_carries_range_through_redirect, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hf_cdn_etag_after_redirect_is_not_a_digest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hf_etag_on_direct_answer_is_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_etag_is_a_digest_only_for_hf_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404_is_reported_as_not_found_with_url, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_server_error_status_is_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_denied_mentions_token_for_hf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_pull_of_same_file_is_refused_while_first_runs,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused_is_a_named_network_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stalled_server_times_out_and_keeps_part, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_stops_and_keeps_part_for_resume, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_existing_file_is_not_downloaded_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_output_name_gets_gguf_suffix_and_is_validated, setup,
                                        teardown),
        cmocka_unit_test(test_progress_render_shows_bytes_rate_and_eta),
        cmocka_unit_test_setup_teardown(test_cli_pull_reports_result_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_sigint_stops_and_keeps_part, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    prov_global_cleanup();
    return rc;
}
