/*
 * server — civetweb set-up, the request dispatcher and the reply helpers.
 *
 * civetweb is used as a socket and HTTP/1.1 parser only: one catch-all
 * request handler on "/" hands every request to our dispatcher, which owns
 * routing, auth, limits, CORS and errors, so all of them behave the same on
 * every route and can be tested in one place. civetweb's own features that
 * would act behind our back are switched off: no document root (so no
 * static files, CGI, SSI or directory listing), its permissive CORS
 * defaults are emptied, keep-alive and TCP_NODELAY are on (otherwise every
 * streamed event can wait 40 ms for Nagle's algorithm). civetweb uses one
 * thread per connection, so `threads` bounds the number of concurrent
 * streams; the default (96) leaves headroom above the 64 concurrent
 * streaming clients the benchmark asks for.
 *
 * Shutdown cannot "stop accepting" in civetweb without stopping
 * everything, so draining is done at the dispatcher: once srv_shutdown
 * begins, new requests get 503 with Connection: close while streams that
 * are already running continue until their generation ends or the grace
 * period passes; then every running generation is cancelled, stream loops
 * are told to end, and mg_stop joins the worker threads.
 */
#include "server/internal.h"

#include <ctype.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"

#ifndef CONFAB_VERSION
#define CONFAB_VERSION "0.0.0"
#endif
#ifndef CONFAB_GIT_COMMIT
#define CONFAB_GIT_COMMIT "unknown"
#endif

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

void srv_options_from_cfg(srv_options *o, const cfg_t *c) {
    memset(o, 0, sizeof *o);
    o->host = c->server.host;
    o->port = c->server.port;
    o->threads = c->server.threads;
    o->rate_limit_rpm = c->server.rate_limit_rpm;
    o->max_body_bytes = c->server.max_body_bytes;
    o->api_keys = (const char *const *)c->server.api_keys;
    o->n_api_keys = c->server.n_api_keys;
    o->cors_origins = (const char *const *)c->server.cors_origins;
    o->n_cors_origins = c->server.n_cors_origins;
    o->default_model = c->default_model;
    o->data_dir = c->storage.data_dir;
}

static bool host_is_loopback(const char *h) {
    return !strcmp(h, "localhost") || !strncmp(h, "127.", 4) || !strcmp(h, "::1") ||
           !strcmp(h, "[::1]");
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

bool srv_json_depth_ok(const char *s, size_t n, int max) {
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"')
            in_str = true;
        else if (c == '{' || c == '[') {
            if (++depth > max) return false;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return true;
}

void srv_stream_enter(srv_t *s) {
    atomic_fetch_add(&s->active_streams, 1);
    met_gauge_add(s->met, "confab_active_streams", "Streams (SSE and WebSocket followers) now open",
                  NULL, 1);
}

void srv_stream_leave(srv_t *s) {
    atomic_fetch_sub(&s->active_streams, 1);
    met_gauge_add(s->met, "confab_active_streams", "Streams (SSE and WebSocket followers) now open",
                  NULL, -1);
}

bool srv_stopping(const srv_t *s) { return atomic_load(&s->stopping); }
gen_registry *srv_gens(srv_t *s) { return s->gens; }
met_registry *srv_metrics(srv_t *s) { return s->met; }
int srv_port(const srv_t *s) { return s->port; }

void srv_set_chat_hook(srv_t *s, srv_chat_hook fn, void *ctx) {
    s->hook = fn;
    s->hook_ctx = ctx;
}

void srv_metrics_cache(srv_t *s, bool hit) {
    met_counter_add(s->met, "confab_cache_requests_total", "Response cache lookups by result",
                    hit ? "result=\"hit\"" : "result=\"miss\"", 1);
}

void srv_metrics_provider_error(srv_t *s, const char *provider) {
    sb_t l = {0};
    met_labels(&l, "provider", provider ? provider : "unknown", (const char *)NULL);
    met_counter_add(s->met, "confab_provider_errors_total", "Errors from providers", l.data, 1);
    sb_free(&l);
}

/* ------------------------------------------------------------------ */
/* Auth and rate limits                                                */
/* ------------------------------------------------------------------ */

static const char *header(const struct mg_connection *conn, const char *name) {
    const struct mg_request_info *ri = mg_get_request_info(conn);
    for (int i = 0; i < ri->num_headers; i++)
        if (!strcasecmp(ri->http_headers[i].name, name)) return ri->http_headers[i].value;
    return NULL;
}

bool srv_authenticate(srv_t *s, const struct mg_connection *conn, bool allow_query,
                      char owner[20]) {
    if (!s->keys) {
        snprintf(owner, 20, "%s", s->anon_owner);
        return true;
    }
    const char *a = header(conn, "Authorization");
    if (a && !strncasecmp(a, "Bearer ", 7)) {
        const char *t = a + 7;
        while (*t == ' ')
            t++;
        size_t n = strlen(t);
        while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
            n--;
        return srv_keys_check(s->keys, t, n, owner);
    }
    if (allow_query) {
        const struct mg_request_info *ri = mg_get_request_info(conn);
        char tok[512];
        if (ri->query_string) {
            int n = mg_get_var(ri->query_string, strlen(ri->query_string), "access_token", tok,
                               sizeof tok);
            if (n > 0) {
                bool ok = srv_keys_check(s->keys, tok, (size_t)n, owner);
                memset(tok, 0, sizeof tok);
                return ok;
            }
        }
    }
    return false;
}

bool srv_rate_ok(srv_t *s, const char *owner, int *retry_s) {
    if (!s->rl) return true;
    return srv_ratelimit_take(s->rl, owner, clock_mono_ns(), retry_s);
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

const char *srv_req_param(const srv_req *r, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < r->np; i++) /* pnames are "{name}" */
        if (strlen(r->pnames[i]) == n + 2 && !strncmp(r->pnames[i] + 1, name, n))
            return r->pvals[i];
    return NULL;
}

const char *srv_req_header(const srv_req *r, const char *name) { return header(r->conn, name); }

int srv_req_query(const srv_req *r, const char *name, char *out, size_t n) {
    if (!r->query) return -1;
    int k = mg_get_var(r->query, strlen(r->query), name, out, n);
    return k < 0 ? -1 : k;
}

json_t *srv_req_json(srv_req *r) {
    if (!r->body || r->body_len == 0) {
        srv_reply_error(r, 400, "invalid_request_error", "invalid_json", NULL,
                        "the request body is empty; expected JSON");
        return NULL;
    }
    int max = r->srv->o.max_json_depth;
    if (!srv_json_depth_ok(r->body, r->body_len, max)) {
        srv_reply_error(r, 400, "invalid_request_error", "json_too_deep", NULL,
                        "the JSON body nests deeper than %d levels", max);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        srv_reply_error(r, 400, "invalid_request_error", "invalid_json", NULL,
                        "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                        je.column);
        return NULL;
    }
    return j;
}

/* ------------------------------------------------------------------ */
/* Replies                                                             */
/* ------------------------------------------------------------------ */

void srv_common_headers(srv_req *r) {
    /* Our own Date header: civetweb computes a missing one with gmtime(),
     * whose static buffer races between connection threads. */
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    mg_response_header_add(r->conn, "Date", date, -1);
    mg_response_header_add(r->conn, "X-Content-Type-Options", "nosniff", -1);
    if (r->cors_origin) {
        mg_response_header_add(r->conn, "Access-Control-Allow-Origin", r->cors_origin, -1);
        mg_response_header_add(r->conn, "Vary", "Origin", -1);
        mg_response_header_add(r->conn, "Access-Control-Expose-Headers", "Retry-After", -1);
    }
}

int srv_reply(srv_req *r, int status, const char *content_type, const void *body, size_t len,
              const char *extra_headers) {
    if (r->status) return CF_EIO; /* already answered */
    r->status = status;
    if (mg_response_header_start(r->conn, status) < 0) return CF_EIO;
    if (content_type) mg_response_header_add(r->conn, "Content-Type", content_type, -1);
    char cl[32];
    snprintf(cl, sizeof cl, "%zu", len);
    mg_response_header_add(r->conn, "Content-Length", cl, -1);
    srv_common_headers(r);
    if (extra_headers) mg_response_header_add_lines(r->conn, extra_headers);
    if (mg_response_header_send(r->conn) < 0) return CF_EIO;
    if (len && strcmp(r->method, "HEAD") && mg_write(r->conn, body, len) <= 0) return CF_EIO;
    return 0;
}

int srv_reply_json(srv_req *r, int status, const json_t *j) {
    char *txt = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (!txt) return srv_reply_error(r, 500, "server_error", NULL, NULL, "could not encode JSON");
    int rc =
        srv_reply(r, status, "application/json", txt, strlen(txt), "Cache-Control: no-store\r\n");
    free(txt);
    return rc;
}

static int reply_error_extra(srv_req *r, int status, const char *type, const char *code,
                             const char *param, const char *extra, const char *fmt, va_list ap) {
    sb_t msg = {0}, body = {0};
    sb_vprintf(&msg, fmt, ap);
    sb_append(&body, "{\"error\":{\"message\":");
    sb_append_json_str(&body, msg.data, msg.len);
    sb_append(&body, ",\"type\":");
    sb_append_json_str(&body, type, strlen(type));
    sb_append(&body, ",\"param\":");
    if (param)
        sb_append_json_str(&body, param, strlen(param));
    else
        sb_append(&body, "null");
    sb_append(&body, ",\"code\":");
    if (code)
        sb_append_json_str(&body, code, strlen(code));
    else
        sb_append(&body, "null");
    sb_append(&body, "}}");
    sb_t hdr = {0};
    sb_append(&hdr, "Cache-Control: no-store\r\n");
    if (extra) sb_append(&hdr, extra);
    int rc = srv_reply(r, status, "application/json", body.data, body.len, hdr.data);
    sb_free(&msg);
    sb_free(&body);
    sb_free(&hdr);
    return rc;
}

int srv_reply_error(srv_req *r, int status, const char *type, const char *code, const char *param,
                    const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = reply_error_extra(r, status, type, code, param, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int srv_reply_error_hdr(srv_req *r, int status, const char *type, const char *code,
                        const char *param, const char *extra, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = reply_error_extra(r, status, type, code, param, extra, fmt, ap);
    va_end(ap);
    return rc;
}

static int reply_error_h(srv_req *r, int status, const char *type, const char *code,
                         const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int reply_error_h(srv_req *r, int status, const char *type, const char *code,
                         const char *extra, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = reply_error_extra(r, status, type, code, NULL, extra, fmt, ap);
    va_end(ap);
    return rc;
}

int srv_reply_cf_err(srv_req *r, const cf_err *err) {
    int status = 500;
    const char *type = "server_error";
    switch (err->code) {
    case CF_EINVAL:
    case CF_EFORMAT:
    case CF_ERANGE: status = 400, type = "invalid_request_error"; break;
    case CF_ENOTFOUND: status = 404, type = "invalid_request_error"; break;
    case CF_EAUTH: status = 401, type = "invalid_request_error"; break;
    case CF_EBUSY: status = 503, type = "server_error"; break;
    case CF_ETIMEOUT: status = 504, type = "server_error"; break;
    case CF_EUPSTREAM: status = 502, type = "upstream_error"; break;
    case CF_ECLOSED: status = 409, type = "invalid_request_error"; break;
    default: break;
    }
    return srv_reply_error(r, status, type, cf_strerror(err->code), NULL, "%s", err->msg);
}

/* ------------------------------------------------------------------ */
/* Routes                                                              */
/* ------------------------------------------------------------------ */

int srv_route_add_flags(srv_t *s, const char *method, const char *pattern, srv_handler h, void *ctx,
                        int flags) {
    if (atomic_load(&s->started)) return CF_EBUSY;
    if (!method || !pattern || pattern[0] != '/' || !h || strlen(method) >= 12) return CF_EINVAL;
    if (s->nroutes == s->cap_routes) {
        size_t nc = s->cap_routes ? s->cap_routes * 2 : 32;
        srv_route *nr = realloc(s->routes, nc * sizeof *nr);
        if (!nr) return CF_ENOMEM;
        s->routes = nr;
        s->cap_routes = nc;
    }
    srv_route *rt = &s->routes[s->nroutes];
    memset(rt, 0, sizeof *rt);
    snprintf(rt->method, sizeof rt->method, "%s", method);
    rt->pattern = strdup(pattern);
    rt->segbuf = strdup(pattern);
    if (!rt->pattern || !rt->segbuf) {
        free(rt->pattern);
        free(rt->segbuf);
        return CF_ENOMEM;
    }
    char *save = NULL;
    for (char *t = strtok_r(rt->segbuf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (rt->nseg == SRV_MAX_SEGS) {
            free(rt->pattern);
            free(rt->segbuf);
            return CF_EINVAL;
        }
        rt->segs[rt->nseg++] = t;
    }
    rt->h = h;
    rt->ctx = ctx;
    rt->flags = flags;
    s->nroutes++;
    return 0;
}

int srv_route_add(srv_t *s, const char *method, const char *pattern, srv_handler h, void *ctx) {
    return srv_route_add_flags(s, method, pattern, h, ctx, 0);
}

/* Matches PATH against RT, capturing {params} into R. */
static bool route_match(const srv_route *rt, const char *path, srv_req *r) {
    char buf[sizeof r->pbuf];
    size_t pl = strlen(path);
    if (pl >= sizeof buf) return false;
    memcpy(buf, path, pl + 1);
    size_t k = 0, np = 0;
    char *save = NULL;
    const char *names[8], *vals[8];
    for (char *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save), k++) {
        if (k >= rt->nseg) return false;
        const char *seg = rt->segs[k];
        size_t sl = strlen(seg);
        if (seg[0] == '{' && seg[sl - 1] == '}') {
            if (np == 8) return false;
            names[np] = seg;
            vals[np] = t;
            np++;
        } else if (strcmp(seg, t)) {
            return false;
        }
    }
    if (k != rt->nseg) return false;
    /* Commit: copy the matched buffer so values outlive this call. */
    memcpy(r->pbuf, buf, pl + 1);
    r->np = np;
    for (size_t i = 0; i < np; i++) {
        r->pnames[i] = names[i]; /* "{name}", owned by the route */
        r->pvals[i] = r->pbuf + (vals[i] - buf);
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Dispatcher                                                          */
/* ------------------------------------------------------------------ */

static bool origin_allowed(srv_t *s, const char *origin) {
    for (size_t i = 0; i < s->o.n_cors_origins; i++)
        if (!strcmp(s->o.cors_origins[i], "*") || !strcmp(s->o.cors_origins[i], origin))
            return true;
    return false;
}

/* Reads the body into R (at most max_body_bytes). Returns 0, or sends 413
 * / 400 and returns -1. */
static int read_body(srv_req *r, long long content_length) {
    int64_t max = r->srv->o.max_body_bytes;
    if (content_length > max) {
        reply_error_h(r, 413, "invalid_request_error", "request_too_large", "Connection: close\r\n",
                      "the request body is %lld bytes; the limit is %lld", content_length,
                      (long long)max);
        return -1;
    }
    const char *te = header(r->conn, "Transfer-Encoding");
    if (content_length <= 0 && !te) return 0;
    sb_t b = {0};
    char chunk[16384];
    for (;;) {
        int n = mg_read(r->conn, chunk, sizeof chunk);
        if (n <= 0) break;
        if ((int64_t)(b.len + (size_t)n) > max) {
            sb_free(&b);
            reply_error_h(r, 413, "invalid_request_error", "request_too_large",
                          "Connection: close\r\n",
                          "the request body exceeds the limit of %lld bytes", (long long)max);
            return -1;
        }
        sb_appendn(&b, chunk, (size_t)n);
    }
    if (content_length > 0 && (long long)b.len != content_length) {
        sb_free(&b);
        reply_error_h(r, 400, "invalid_request_error", "incomplete_body", "Connection: close\r\n",
                      "the request body ended early");
        return -1;
    }
    r->body_len = b.len;
    r->body = b.len ? sb_take(&b) : NULL;
    return 0;
}

static void record(srv_t *s, srv_req *r, double t0_ms) {
    char st[8];
    snprintf(st, sizeof st, "%d", r->status ? r->status : 500);
    sb_t l = {0};
    met_labels(&l, "route", r->route ? r->route : "unmatched", "method", r->method, "status", st,
               (const char *)NULL);
    met_counter_add(s->met, "confab_http_requests_total",
                    "HTTP requests by route, method and status", l.data, 1);
    sb_clear(&l);
    met_labels(&l, "route", r->route ? r->route : "unmatched", (const char *)NULL);
    double secs = (clock_mono_ms() - t0_ms) / 1000.0;
    if (!r->streaming)
        met_hist_observe(s->met, "confab_http_request_duration_seconds",
                         "Time to answer a non-streaming request", met_latency_buckets,
                         met_n_latency_buckets, l.data, secs);
    sb_free(&l);
    log_debug("http", "%s %s -> %d (%.2f ms)", r->method, r->path, r->status, secs * 1000);
}

static int on_request(struct mg_connection *conn, void *cbdata) {
    srv_t *s = cbdata;
    double t0 = clock_mono_ms();
    const struct mg_request_info *ri = mg_get_request_info(conn);
    srv_req r = {.srv = s,
                 .conn = conn,
                 .method = ri->request_method,
                 .path = ri->local_uri ? ri->local_uri : "/",
                 .query = ri->query_string};

    if (atomic_load(&s->stopping)) {
        reply_error_h(&r, 503, "server_error", "shutting_down",
                      "Connection: close\r\nRetry-After: 5\r\n", "the server is shutting down");
        goto out;
    }

    /* CORS: only when origins are configured. */
    const char *origin = header(conn, "Origin");
    if (origin && s->o.n_cors_origins && origin_allowed(s, origin)) r.cors_origin = origin;
    if (!strcmp(r.method, "OPTIONS") && origin && header(conn, "Access-Control-Request-Method") &&
        s->o.n_cors_origins) {
        r.route = "preflight";
        if (!r.cors_origin) {
            srv_reply_error(&r, 403, "invalid_request_error", "origin_not_allowed", NULL,
                            "origin %s is not allowed", origin);
            goto out;
        }
        srv_reply(&r, 204, NULL, NULL, 0,
                  "Access-Control-Allow-Methods: GET, POST, PUT, PATCH, DELETE, OPTIONS\r\n"
                  "Access-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID\r\n"
                  "Access-Control-Max-Age: 600\r\n");
        goto out;
    }

    /* Route. */
    const srv_route *hit = NULL;
    sb_t allow = {0};
    for (size_t i = 0; i < s->nroutes; i++) {
        const srv_route *rt = &s->routes[i];
        if (!route_match(rt, r.path, &r)) continue;
        bool same = !strcmp(rt->method, r.method) ||
                    (!strcmp(r.method, "HEAD") && !strcmp(rt->method, "GET"));
        if (same) {
            hit = rt;
            break;
        }
        if (!strstr(allow.data ? allow.data : "", rt->method)) {
            if (allow.len) sb_append(&allow, ", ");
            sb_append(&allow, rt->method);
        }
    }
    /* Auth comes before 404/405 so that callers without a key learn
     * nothing about which routes exist. */
    char owner[20];
    if (hit && (hit->flags & SRV_ROUTE_PUBLIC)) {
        snprintf(owner, sizeof owner, "%s", s->keys ? "public" : s->anon_owner);
    } else if (!srv_authenticate(s, conn, hit && (hit->flags & SRV_ROUTE_QUERY_TOKEN), owner)) {
        sb_free(&allow);
        reply_error_h(&r, 401, "invalid_request_error", "invalid_api_key",
                      "WWW-Authenticate: Bearer realm=\"confab\"\r\n",
                      header(conn, "Authorization")
                          ? "incorrect API key provided"
                          : "missing API key: send it as 'Authorization: Bearer <key>'");
        goto out;
    }
    r.owner = owner;

    if (!hit) {
        if (allow.len) {
            sb_t h = {0};
            sb_printf(&h, "Allow: %s\r\n", allow.data);
            reply_error_h(&r, 405, "invalid_request_error", "method_not_allowed", h.data,
                          "method %s is not allowed on %s (allowed: %s)", r.method, r.path,
                          allow.data);
            sb_free(&h);
        } else {
            srv_reply_error(&r, 404, "invalid_request_error", "unknown_url", NULL,
                            "no route for %s %s", r.method, r.path);
        }
        sb_free(&allow);
        goto out;
    }
    sb_free(&allow);
    r.route = hit->pattern;

    /* Rate limit per owner (public routes are not limited). */
    int retry = 0;
    if (!(hit->flags & SRV_ROUTE_PUBLIC) && !srv_rate_ok(s, owner, &retry)) {
        char h[64];
        snprintf(h, sizeof h, "Retry-After: %d\r\n", retry);
        reply_error_h(&r, 429, "rate_limit_error", "rate_limit_exceeded", h,
                      "rate limit of %d requests per minute reached; retry in %d s",
                      s->o.rate_limit_rpm, retry);
        goto out;
    }

    if (read_body(&r, ri->content_length) == 0) {
        hit->h(&r, hit->ctx);
        if (!r.status)
            srv_reply_error(&r, 500, "server_error", NULL, NULL, "the handler sent no response");
    }

out:
    record(s, &r, t0);
    free(r.body);
    return r.status ? r.status : 500;
}

/* Errors civetweb answers itself (malformed request line, headers over
 * max_request_size ...) get our JSON shape too. Returns 0 when sent. */
static int on_http_error(struct mg_connection *conn, int status, const char *errmsg) {
    srv_t *s = mg_get_user_data(mg_get_context(conn));
    srv_req r = {.srv = s, .conn = conn, .method = "GET", .path = ""};
    const char *why = status == 400 ? "the request is malformed or its headers exceed 16 KiB"
                                    : (errmsg && *errmsg ? errmsg : "the request was rejected");
    return srv_reply_error(&r, status, status >= 500 ? "server_error" : "invalid_request_error",
                           status == 400 ? "malformed_request" : NULL, NULL, "%s", why) == 0
               ? 0
               : 1;
}

static int on_log(const struct mg_connection *conn, const char *message) {
    (void)conn;
    log_warn("civetweb", "%s", message);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Built-in routes                                                     */
/* ------------------------------------------------------------------ */

static int h_healthz(srv_req *r, void *ctx) {
    srv_t *s = ctx;
    json_t *j = json_pack("{s:s, s:s, s:s, s:f, s:i, s:i}", "status", "ok", "version",
                          CONFAB_VERSION, "commit", CONFAB_GIT_COMMIT, "uptime_s",
                          (double)(clock_mono_ns() - s->started_ns) / 1e9, "active_streams",
                          (json_int_t)atomic_load(&s->active_streams), "generations_running",
                          (json_int_t)gen_registry_running(s->gens));
    int rc = srv_reply_json(r, 200, j);
    json_decref(j);
    return rc;
}

static int h_metrics(srv_req *r, void *ctx) {
    srv_t *s = ctx;
    met_gauge_set(s->met, "confab_uptime_seconds", "Seconds since the server started", NULL,
                  (double)(clock_mono_ns() - s->started_ns) / 1e9);
    met_gauge_set(s->met, "confab_generations_running", "Generations being produced now", NULL,
                  (double)gen_registry_running(s->gens));
    sb_t out = {0};
    met_render(s->met, &out);
    int rc = srv_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len,
                       "Cache-Control: no-store\r\n");
    sb_free(&out);
    return rc;
}

/* Feeds metrics from every generation event, whoever produces it. */
static void on_gen_event(void *ctx, gen *g, const gen_event *ev) {
    srv_t *s = ctx;
    switch (ev->type) {
    case GEN_EV_DELTA:
        if (ev->first_delta)
            met_hist_observe(s->met, "confab_time_to_first_token_seconds",
                             "Time from the start of a generation to its first text",
                             met_latency_buckets, met_n_latency_buckets, NULL,
                             (double)(clock_mono_ns() - gen_started_ns(g)) / 1e9);
        break;
    case GEN_EV_USAGE: {
        json_t *j = json_loads(ev->json, 0, NULL);
        json_int_t ct = json_integer_value(json_object_get(j, "completion_tokens"));
        json_int_t pt = json_integer_value(json_object_get(j, "prompt_tokens"));
        met_counter_add(s->met, "confab_tokens_total", "Tokens processed, by kind",
                        "kind=\"completion\"", (double)ct);
        met_counter_add(s->met, "confab_tokens_total", "Tokens processed, by kind",
                        "kind=\"prompt\"", (double)pt);
        json_decref(j);
        break;
    }
    case GEN_EV_ERROR: {
        json_t *j = json_loads(ev->json, 0, NULL);
        const char *prov = json_string_value(json_object_get(j, "provider"));
        if (prov) srv_metrics_provider_error(s, prov);
        json_decref(j);
        met_counter_add(s->met, "confab_generations_total", "Finished generations by final state",
                        "state=\"error\"", 1);
        break;
    }
    case GEN_EV_DONE: {
        json_t *j = json_loads(ev->json, 0, NULL);
        const char *fr = json_string_value(json_object_get(j, "finish_reason"));
        met_counter_add(s->met, "confab_generations_total", "Finished generations by final state",
                        fr && !strcmp(fr, "cancelled") ? "state=\"cancelled\"" : "state=\"done\"",
                        1);
        json_decref(j);
        break;
    }
    default: break;
    }
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */

srv_t *srv_new(const srv_options *o, cf_err *err) {
    srv_t *s = calloc(1, sizeof *s);
    if (!s) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    s->o = *o;
    s->host = strdup(o->host && *o->host ? o->host : "127.0.0.1");
    s->o.host = s->host;
    if (s->o.threads <= 0) s->o.threads = 96;
    if (s->o.max_body_bytes <= 0) s->o.max_body_bytes = 8 << 20;
    if (s->o.max_json_depth <= 0) s->o.max_json_depth = 64;
    if (s->o.heartbeat_ms <= 0) s->o.heartbeat_ms = 15000;
    pthread_mutex_init(&s->ws_mu, NULL);
    s->met = met_new();

    if (o->n_api_keys) {
        s->keys = srv_keys_new(o->api_keys, o->n_api_keys, err);
        if (!s->keys) {
            srv_free(s);
            return NULL;
        }
    } else if (!host_is_loopback(s->host) && !o->insecure_no_auth) {
        cf_seterr(err, CF_EAUTH,
                  "refusing to listen on %s without API keys: set server.api_keys in the config "
                  "(plaintext or \"sha256:<hex>\"), or pass --insecure-no-auth to serve anyone who "
                  "can reach this address",
                  s->host);
        srv_free(s);
        return NULL;
    }
    s->anon_owner = host_is_loopback(s->host) ? "local" : "insecure";
    s->rl = srv_ratelimit_new(o->rate_limit_rpm);

    if (o->gens) {
        s->gens = o->gens;
    } else {
        s->gens = gen_registry_new(10 * 60 * 1000);
        s->own_gens = true;
    }
    gen_registry_set_observer(s->gens, on_gen_event, s);

    /* Families that should show from the first scrape, at zero. */
    met_gauge_set(s->met, "confab_active_streams", "Streams (SSE and WebSocket followers) now open",
                  NULL, 0);
    met_counter_add(s->met, "confab_tokens_total", "Tokens processed, by kind",
                    "kind=\"completion\"", 0);
    met_counter_add(s->met, "confab_tokens_total", "Tokens processed, by kind", "kind=\"prompt\"",
                    0);
    met_counter_add(s->met, "confab_cache_requests_total", "Response cache lookups by result",
                    "result=\"hit\"", 0);
    met_counter_add(s->met, "confab_cache_requests_total", "Response cache lookups by result",
                    "result=\"miss\"", 0);

    srv_route_add_flags(s, "GET", "/healthz", h_healthz, s, SRV_ROUTE_PUBLIC);
    srv_route_add(s, "GET", "/metrics", h_metrics, s);
    srv_sse_routes(s);
    srv_asset_routes(s);
    return s;
}

int srv_start(srv_t *s, cf_err *err) {
    if (atomic_exchange(&s->started, true))
        return cf_seterr(err, CF_EBUSY, "server already started");
    char ports[300], threads[16], maxreq[16];
    bool v6 = strchr(s->host, ':') != NULL && s->host[0] != '[';
    snprintf(ports, sizeof ports, v6 ? "[%s]:%d" : "%s:%d", s->host, s->o.port);
    snprintf(threads, sizeof threads, "%d", s->o.threads);
    snprintf(maxreq, sizeof maxreq, "%d", 16384);
    const char *opts[] = {"listening_ports",
                          ports,
                          "num_threads",
                          threads,
                          "tcp_nodelay",
                          "1",
                          "enable_keep_alive",
                          "yes",
                          "keep_alive_timeout_ms",
                          "15000",
                          "request_timeout_ms",
                          "30000",
                          "enable_directory_listing",
                          "no",
                          "cgi_pattern",
                          "",
                          "ssi_pattern",
                          "",
                          "access_control_allow_origin",
                          "",
                          "access_control_allow_methods",
                          "",
                          "access_control_allow_headers",
                          "",
                          "enable_websocket_ping_pong",
                          "yes",
                          "websocket_timeout_ms",
                          "30000",
                          "max_request_size",
                          maxreq,
                          "decode_url",
                          "yes",
                          NULL};
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.log_message = on_log;
    cb.http_error = on_http_error;
    mg_init_library(0);
    s->started_ns = clock_mono_ns();
    s->mg = mg_start(&cb, s, opts);
    if (!s->mg) {
        mg_exit_library();
        return cf_seterr(err, CF_EIO, "cannot listen on %s (address in use or not available?)",
                         ports);
    }
    mg_set_request_handler(s->mg, "/", on_request, s);
    srv_ws_register(s);
    struct mg_server_port sp[4];
    int n = mg_get_server_ports(s->mg, 4, sp);
    s->port = n > 0 ? sp[0].port : s->o.port;
    return 0;
}

static void *stop_thread(void *p) {
    srv_t *s = p;
    mg_stop(s->mg);
    atomic_store(&s->mg_stopped, true);
    return NULL;
}

/* mg_stop waits for civetweb's accept loop, which polls its sockets with a
 * 2 s timeout; connecting to our own port wakes it at once. */
static void stop_civetweb(srv_t *s) {
    pthread_t t;
    atomic_store(&s->mg_stopped, false);
    if (pthread_create(&t, NULL, stop_thread, s) != 0) {
        mg_stop(s->mg);
        return;
    }
    bool v6 = strchr(s->host, ':') != NULL;
    const char *h = s->host;
    if (!strcmp(h, "0.0.0.0")) h = "127.0.0.1";
    if (!strcmp(h, "::") || !strcmp(h, "[::]")) h = "::1";
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    struct addrinfo hints = {.ai_family = v6 ? AF_INET6 : AF_INET, .ai_socktype = SOCK_STREAM},
                    *ai = NULL;
    if (getaddrinfo(h, port, &hints, &ai) != 0) ai = NULL;
    while (!atomic_load(&s->mg_stopped)) {
        if (ai) {
            int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd >= 0) {
                connect(fd, ai->ai_addr, ai->ai_addrlen);
                close(fd);
            }
        }
        clock_sleep_ms(20);
    }
    if (ai) freeaddrinfo(ai);
    pthread_join(t, NULL);
}

void srv_shutdown(srv_t *s, int grace_ms) {
    if (!s->mg || atomic_exchange(&s->stopping, true)) return;
    log_info("server", "shutting down: %d stream(s) open, grace %d ms",
             atomic_load(&s->active_streams), grace_ms);
    /* Let streams end on their own while their generations finish. */
    double until = clock_mono_ms() + (grace_ms > 0 ? grace_ms : 0);
    while (atomic_load(&s->active_streams) > 0 && clock_mono_ms() < until)
        clock_sleep_ms(20);
    size_t n = gen_registry_cancel_all(s->gens);
    if (n) log_info("server", "cancelled %zu running generation(s)", n);
    /* Give producers a moment to record "cancelled" and followers to send
     * it, then make every stream loop end. */
    until = clock_mono_ms() + 1000;
    while (atomic_load(&s->active_streams) > 0 && clock_mono_ms() < until)
        clock_sleep_ms(20);
    atomic_store(&s->hard_stop, true);
    srv_ws_close_all(s);
    stop_civetweb(s);
    s->mg = NULL;
    mg_exit_library();
}

void srv_free(srv_t *s) {
    if (!s) return;
    if (s->mg) srv_shutdown(s, 0);
    if (s->gens) gen_registry_set_observer(s->gens, NULL, NULL);
    if (s->own_gens) gen_registry_free(s->gens);
    for (size_t i = 0; i < s->nroutes; i++) {
        free(s->routes[i].pattern);
        free(s->routes[i].segbuf);
    }
    free(s->routes);
    srv_keys_free(s->keys);
    srv_ratelimit_free(s->rl);
    met_free(s->met);
    pthread_mutex_destroy(&s->ws_mu);
    free(s->host);
    free(s);
}
