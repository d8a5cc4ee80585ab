/*
 * http_client — a small libcurl client for tests that talk to confab's HTTP
 * server on 127.0.0.1:g_port: any method, body, bearer key and extra
 * headers; collects status, headers and body; can hang up after N SSE
 * events (to test resume and disconnect handling).
 */
#ifndef CONFAB_TESTS_HTTP_CLIENT_H
#define CONFAB_TESTS_HTTP_CLIENT_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/sb.h"

/* ------------------------------------------------------------------ */
/* HTTP client                                                         */
/* ------------------------------------------------------------------ */

typedef struct {
    long status;
    sb_t body, headers;
    int abort_after_events; /* > 0: abort once this many SSE events arrived */
    int events;
} resp;

__attribute__((unused)) static size_t on_body(char *p, size_t sz, size_t n, void *u) {
    resp *r = u;
    sb_appendn(&r->body, p, sz * n);
    if (r->abort_after_events > 0) {
        r->events = 0;
        for (const char *q = r->body.data; (q = strstr(q, "\n\n")); q += 2)
            r->events++;
        if (r->events >= r->abort_after_events) return 0; /* hang up */
    }
    return sz * n;
}

__attribute__((unused)) static size_t on_header(char *p, size_t sz, size_t n, void *u) {
    resp *r = u;
    sb_appendn(&r->headers, p, sz * n);
    return sz * n;
}

__attribute__((unused)) static void resp_free(resp *r) {
    sb_free(&r->body);
    sb_free(&r->headers);
}

/* Value of header NAME in R (case-insensitive), copied into a static
 * buffer, or NULL. */
__attribute__((unused)) static const char *hdr(const resp *r, const char *name) {
    __attribute__((unused)) static char val[256];
    size_t nl = strlen(name);
    for (const char *line = r->headers.data; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        if (!eol) break;
        if (!strncasecmp(line, name, nl) && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(eol - v);
            if (vl >= sizeof val) vl = sizeof val - 1;
            memcpy(val, v, vl);
            val[vl] = 0;
            return val;
        }
        line = eol + 2;
    }
    return NULL;
}

typedef struct {
    const char *method, *path, *key, *body;
    size_t body_len;
    const char *h1, *h2; /* extra header lines */
    bool chunked, http10;
    int abort_after_events;
    long timeout_ms;
} req_opts;

/* The port requests go to; each test file sets it. */
static int g_port;

__attribute__((unused)) static resp http(req_opts o) {
    resp r = {0};
    r.abort_after_events = o.abort_after_events;
    CURL *c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", g_port, o.path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o.timeout_ms ? o.timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    struct curl_slist *hl = NULL;
    char auth[300];
    if (o.key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o.key);
        hl = curl_slist_append(hl, auth);
    }
    if (o.h1) hl = curl_slist_append(hl, o.h1);
    if (o.h2) hl = curl_slist_append(hl, o.h2);
    hl = curl_slist_append(hl, "Expect:");
    if (o.chunked) hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    if (o.method) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, o.method);
    if (o.http10) curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_0);
    if (o.body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, o.body);
        if (!o.chunked)
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)(o.body_len ? o.body_len : strlen(o.body)));
    }
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return r;
}

__attribute__((unused)) static resp get(const char *path, const char *key) {
    return http((req_opts){.path = path, .key = key});
}

#endif
