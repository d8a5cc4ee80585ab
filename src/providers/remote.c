/*
 * remote — HTTP backends on the shared I/O thread; see remote.h.
 *
 * One wire_call lives per request. prov_backend.start builds the request
 * through the wire format (openai.c, anthropic.c, cohere.c), copies the
 * secrets it will need to scrub messages later (the config is only borrowed
 * for the call), and submits it to prov_io. From then on everything runs on
 * the I/O thread:
 *
 *   on_headers  classify the response: 2xx with the expected content type
 *               (text/event-stream when streaming, JSON otherwise) → parse;
 *               4xx/5xx → collect a bounded error body; anything else →
 *               protocol error.
 *   on_body     streaming: feed the SSE parser, whose events go to the wire
 *               format, which emits deltas at once and records usage and
 *               finish; otherwise buffer (bounded).
 *   on_done     exactly one terminal event: ERROR with a kind, or USAGE,
 *               FINISH, DONE. A stream that ends without its format's end
 *               marker is a protocol error ("cut mid-stream"), never a
 *               silent success.
 *
 * Every error message passes through prov_redact with the model's secrets.
 */
#include "providers/remote.h"

#include "base/log.h"
#include "base/utf8.h"
#include "providers/redact.h"
#include "providers/wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_BODY ((size_t)16 << 20)     /* non-streamed response */
#define MAX_ERR_BODY ((size_t)64 << 10) /* error response kept for its message */

typedef struct {
    prov_io *io;
    const prov_wire *wire;
    prov_backend b;
} remote;

enum { MODE_STREAM, MODE_JSON, MODE_ERROR };

struct wire_call {
    const prov_wire *wire;
    prov_event_cb cb;
    void *ud;
    char *secrets[PROV_MAX_HEADERS + 1]; /* copies, for redaction */
    size_t n_secrets;
    char model_name[64]; /* config name, for log lines */
    bool stream;
    int mode;
    long status;
    int retry_after_ms;
    sse_parser sse;
    sb_t body;
    bool text_seen, complete, have_usage, failed;
    prov_usage usage;
    prov_finish finish;
    prov_errkind err_kind;
    int err_status;
    sb_t err_msg;
};

/* ------------------------------------------------------ wire helpers */

static void emit(wire_call *c, const prov_event *ev) { c->cb(c->ud, ev); }

void wire_delta(wire_call *c, const char *text, size_t len) {
    if (!len) return;
    c->text_seen = true;
    prov_event ev = {.kind = PROV_EV_DELTA, .text = text, .len = len};
    emit(c, &ev);
}

void wire_usage(wire_call *c, int64_t prompt, int64_t completion, int64_t cached) {
    c->have_usage = true;
    c->usage.prompt_tokens = prompt < 0 ? 0 : prompt;
    c->usage.completion_tokens = completion < 0 ? 0 : completion;
    c->usage.cached_tokens = cached < 0 ? 0 : cached;
    c->usage.estimated = false;
}

void wire_usage_part(wire_call *c, int64_t prompt, int64_t completion, int64_t cached) {
    c->have_usage = true;
    if (prompt >= 0) c->usage.prompt_tokens = prompt;
    if (completion >= 0) c->usage.completion_tokens = completion;
    if (cached >= 0) c->usage.cached_tokens = cached;
}

void wire_finish(wire_call *c, prov_finish f) { c->finish = f; }
void wire_complete(wire_call *c) { c->complete = true; }

int wire_fail(wire_call *c, prov_errkind kind, int http_status, const char *fmt, ...) {
    if (c->failed) return c->err_kind; /* keep the first explanation */
    c->failed = true;
    c->err_kind = kind;
    c->err_status = http_status;
    sb_clear(&c->err_msg);
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&c->err_msg, fmt, ap);
    va_end(ap);
    return kind;
}

json_t *wire_json(wire_call *c, const sse_event *ev) {
    json_error_t je;
    json_t *o = json_loadb(ev->data, ev->data_len, 0, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        wire_fail(c, PROV_ERR_PROTOCOL, 0, "malformed JSON in %s stream event: %s", c->wire->name,
                  o ? "not an object" : je.text);
        return NULL;
    }
    return o;
}

void wire_header(sb_t *hdrs, const char *name, const char *value) {
    sb_printf(hdrs, "%s: %s\n", name, value);
}

void wire_extra_headers(sb_t *hdrs, const prov_model_cfg *cfg) {
    for (size_t i = 0; i < cfg->n_headers; i++) {
        const char *n = cfg->headers[i].name, *v = cfg->headers[i].value;
        if (!n || !v || strpbrk(n, "\r\n:") || strpbrk(v, "\r\n"))
            continue; /* no header injection */
        wire_header(hdrs, n, v);
    }
}

void wire_url(sb_t *url, const char *base, const char *path) {
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        n--;
    sb_appendn(url, base, n);
    sb_append(url, path);
}

const char *wire_role(prov_role r) {
    switch (r) {
    case PROV_ROLE_SYSTEM: return "system";
    case PROV_ROLE_ASSISTANT: return "assistant";
    case PROV_ROLE_USER: break;
    }
    return "user";
}

void wire_add_common(json_t *o, const prov_request *req, const char *top_p_key, bool penalties,
                     bool seed, const char *stop_key) {
    if (req->has_temperature) json_object_set_new(o, "temperature", json_real(req->temperature));
    if (req->has_top_p) json_object_set_new(o, top_p_key, json_real(req->top_p));
    if (penalties && req->has_presence_penalty)
        json_object_set_new(o, "presence_penalty", json_real(req->presence_penalty));
    if (penalties && req->has_frequency_penalty)
        json_object_set_new(o, "frequency_penalty", json_real(req->frequency_penalty));
    if (seed && req->has_seed) json_object_set_new(o, "seed", json_integer(req->seed));
    if (req->n_stop) {
        json_t *a = json_array();
        for (size_t i = 0; i < req->n_stop && i < PROV_MAX_STOP; i++)
            if (req->stop[i]) json_array_append_new(a, json_string(req->stop[i]));
        json_object_set_new(o, stop_key, a);
    }
}

int wire_dump(json_t *o, sb_t *body, cf_err *err) {
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(o);
    if (!s)
        return cf_seterr(err, CF_EINVAL, "cannot encode the request (invalid UTF-8 in a message?)");
    sb_append(body, s);
    free(s);
    return 0;
}

/* ------------------------------------------------------- lifecycle */

static void call_free(wire_call *c) {
    for (size_t i = 0; i < c->n_secrets; i++)
        free(c->secrets[i]);
    sse_free(&c->sse);
    sb_free(&c->body);
    sb_free(&c->err_msg);
    free(c);
}

static void redact_call(wire_call *c, sb_t *s) {
    prov_redact(s, (const char *const *)c->secrets, c->n_secrets);
}

static void emit_error(wire_call *c, prov_errkind kind, int status, int retry_after_ms, sb_t *msg) {
    redact_call(c, msg);
    log_debug("providers", "%s %s: %s error: %s", c->wire->name, c->model_name,
              prov_errkind_name(kind), sb_str(msg));
    prov_event ev = {.kind = PROV_EV_ERROR,
                     .err_kind = kind,
                     .http_status = status,
                     .retry_after_ms = retry_after_ms,
                     .message = sb_str(msg)};
    emit(c, &ev);
}

/* The message of an error response body: error.message, message, error
 * (string) or the start of the text, printable characters only. */
static void error_body_message(wire_call *c, sb_t *out) {
    json_t *o = json_loadb(c->body.data ? c->body.data : "", c->body.len, 0, NULL);
    const char *m = NULL, *type = NULL;
    if (o) {
        json_t *e = json_object_get(o, "error");
        if (json_is_object(e)) {
            m = json_string_value(json_object_get(e, "message"));
            type = json_string_value(json_object_get(e, "type"));
        } else if (json_is_string(e)) {
            m = json_string_value(e);
        }
        if (!m) m = json_string_value(json_object_get(o, "message"));
    }
    if (m) {
        if (type) sb_printf(out, "%.64s: ", type);
        sb_appendn(out, m, strlen(m) < 300 ? strlen(m) : 300);
    } else {
        size_t n = c->body.len < 200 ? c->body.len : 200;
        for (size_t i = 0; i < n; i++) {
            char ch = c->body.data[i];
            sb_putc(out, (ch >= 0x20 && ch < 0x7f) ? ch : ' ');
        }
    }
    json_decref(o);
}

static prov_errkind status_kind(long st) {
    if (st == 401 || st == 403) return PROV_ERR_AUTH;
    if (st == 429) return PROV_ERR_RATE_LIMITED;
    if (st == 408) return PROV_ERR_TIMEOUT;
    if (st >= 500) return PROV_ERR_HTTP_5XX;
    if (st >= 400) return PROV_ERR_HTTP_4XX;
    return PROV_ERR_PROTOCOL;
}

static bool ctype_is(const char *ct, const char *want) {
    size_t n = strlen(want);
    return !strncasecmp(ct, want, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

static int on_headers(void *ud, long status, const char *ctype, int retry_after_ms) {
    wire_call *c = ud;
    c->status = status;
    c->retry_after_ms = retry_after_ms;
    if (status >= 400) {
        c->mode = MODE_ERROR;
        return 0;
    }
    if (status < 200 || status >= 300)
        return wire_fail(c, PROV_ERR_PROTOCOL, (int)status, "unexpected HTTP status %ld", status);
    if (c->stream) {
        if (!ctype_is(ctype, "text/event-stream"))
            return wire_fail(c, PROV_ERR_PROTOCOL, (int)status,
                             "expected a text/event-stream response, got content type \"%.60s\"",
                             *ctype ? ctype : "(none)");
        c->mode = MODE_STREAM;
    } else {
        if (!ctype_is(ctype, "application/json"))
            return wire_fail(c, PROV_ERR_PROTOCOL, (int)status,
                             "expected an application/json response, got content type \"%.60s\"",
                             *ctype ? ctype : "(none)");
        c->mode = MODE_JSON;
    }
    return 0;
}

static int on_sse(void *ud, const sse_event *ev) {
    wire_call *c = ud;
    if (c->complete) return 0; /* ignore anything after the end marker */
    return c->wire->on_event(c, ev);
}

static int on_body(void *ud, const char *p, size_t n) {
    wire_call *c = ud;
    switch (c->mode) {
    case MODE_STREAM: {
        int rc = sse_feed(&c->sse, p, n, on_sse, c);
        if (rc == CF_EFORMAT)
            return wire_fail(c, PROV_ERR_PROTOCOL, 0, "SSE line or event over the size limit");
        return rc;
    }
    case MODE_JSON:
        if (c->body.len + n > MAX_BODY)
            return wire_fail(c, PROV_ERR_PROTOCOL, 0, "response body over %zu bytes", MAX_BODY);
        sb_appendn(&c->body, p, n);
        return 0;
    default:
        if (c->body.len < MAX_ERR_BODY) sb_appendn(&c->body, p, n);
        return 0;
    }
}

static void on_done(void *ud, const prov_io_outcome *o) {
    wire_call *c = ud;
    sb_t msg = {0};
    if (c->failed) {
        /* A wire-format or classification error explains the abort best,
         * unless the caller cancelled meanwhile. */
        prov_errkind k = o->kind == PROV_ERR_CANCELLED ? PROV_ERR_CANCELLED : c->err_kind;
        sb_append(&msg, k == PROV_ERR_CANCELLED ? "cancelled" : sb_str(&c->err_msg));
        emit_error(c, k, c->err_status ? c->err_status : (int)c->status, c->retry_after_ms, &msg);
    } else if (o->kind != PROV_ERR_NONE) {
        const char *what =
            o->kind == PROV_ERR_CONNECT && c->status ? "connection lost mid-response" : NULL;
        if (what)
            sb_printf(&msg, "%s (%s)", what, o->message);
        else
            sb_append(&msg, o->message);
        emit_error(c, o->kind, (int)c->status, c->retry_after_ms, &msg);
    } else if (c->mode == MODE_ERROR) {
        sb_printf(&msg, "HTTP %ld from %s: ", c->status, c->wire->name);
        error_body_message(c, &msg);
        emit_error(c, status_kind(c->status), (int)c->status, c->retry_after_ms, &msg);
    } else {
        int k = 0;
        if (c->mode == MODE_JSON) {
            json_error_t je;
            json_t *root = json_loadb(c->body.data ? c->body.data : "", c->body.len, 0, &je);
            if (!json_is_object(root))
                k = wire_fail(c, PROV_ERR_PROTOCOL, 0, "malformed JSON response: %s", je.text);
            else
                k = c->wire->on_body(c, root);
            json_decref(root);
            if (!k) c->complete = true;
        } else if (!c->complete && c->wire->finish_completes && c->finish &&
                   !sse_pending(&c->sse)) {
            c->complete = true;
        } else if (!c->complete) {
            k = wire_fail(c, PROV_ERR_PROTOCOL, (int)c->status,
                          "stream ended before its end-of-message event (cut mid-stream%s)",
                          sse_pending(&c->sse) ? ", inside an event" : "");
        }
        if (k) {
            sb_append(&msg, sb_str(&c->err_msg));
            emit_error(c, (prov_errkind)k, c->err_status, c->retry_after_ms, &msg);
        } else {
            if (c->have_usage) {
                prov_event ev = {.kind = PROV_EV_USAGE, .usage = c->usage};
                emit(c, &ev);
            }
            prov_event fe = {.kind = PROV_EV_FINISH,
                             .finish = c->finish ? c->finish : PROV_FINISH_STOP};
            emit(c, &fe);
            prov_event de = {.kind = PROV_EV_DONE};
            emit(c, &de);
        }
    }
    sb_free(&msg);
    call_free(c);
}

static int remote_start(void *self, const prov_request *req, const prov_model_cfg *cfg,
                        prov_cancel *cancel, prov_event_cb cb, void *ud, cf_err *err) {
    remote *r = self;
    const char *model = req->model && *req->model ? req->model : cfg->model;
    if (!model || !*model)
        return cf_seterr(err, CF_EINVAL, "model %s has no upstream model id",
                         cfg->name ? cfg->name : "?");
    if (!cfg->base_url || !*cfg->base_url)
        return cf_seterr(err, CF_EINVAL, "model %s has no base_url", cfg->name ? cfg->name : "?");
    if (req->n_msgs == 0)
        return cf_seterr(err, CF_EINVAL, "a chat request needs at least one message");
    /* jansson refuses invalid UTF-8 by dropping the value; say so instead. */
    for (size_t i = 0; i < req->n_msgs; i++) {
        const char *t = req->msgs[i].content ? req->msgs[i].content : "";
        size_t bad;
        if (!utf8_valid(t, strlen(t), &bad))
            return cf_seterr(err, CF_EINVAL, "message %zu is not valid UTF-8 (byte %zu)", i + 1,
                             bad);
    }
    for (size_t i = 0; i < req->n_stop && i < PROV_MAX_STOP; i++)
        if (req->stop[i] && !utf8_valid(req->stop[i], strlen(req->stop[i]), NULL))
            return cf_seterr(err, CF_EINVAL, "stop sequence %zu is not valid UTF-8", i + 1);
    sb_t url = {0}, body = {0}, hdrs = {0};
    int rc = r->wire->build(req, cfg, model, &url, &body, &hdrs, err);
    if (rc) goto out;
    wire_call *c = calloc(1, sizeof *c);
    if (!c) {
        rc = cf_seterr(err, CF_ENOMEM, "out of memory");
        goto out;
    }
    c->wire = r->wire;
    c->cb = cb;
    c->ud = ud;
    c->stream = req->stream;
    c->retry_after_ms = -1;
    snprintf(c->model_name, sizeof c->model_name, "%s", cfg->name ? cfg->name : model);
    sse_init(&c->sse, 0);
    if (cfg->api_key && *cfg->api_key) c->secrets[c->n_secrets++] = strdup(cfg->api_key);
    for (size_t i = 0; i < cfg->n_headers && c->n_secrets < PROV_MAX_HEADERS + 1; i++)
        if (cfg->headers[i].value && *cfg->headers[i].value)
            c->secrets[c->n_secrets++] = strdup(cfg->headers[i].value);
    /* Header lines → array of C strings (in place). */
    const char *lines[PROV_MAX_HEADERS + 8];
    size_t nl = 0;
    for (char *p = hdrs.data; p && *p && nl < sizeof lines / sizeof lines[0];) {
        char *e = strchr(p, '\n');
        if (!e) break;
        *e = 0;
        lines[nl++] = p;
        p = e + 1;
    }
    prov_io_request ir = {
        .url = sb_str(&url),
        .body = sb_str(&body),
        .body_len = body.len,
        .headers = lines,
        .n_headers = nl,
        .connect_ms = cfg->timeouts.connect_ms,
        .first_byte_ms = cfg->timeouts.first_byte_ms,
        .idle_ms = cfg->timeouts.idle_ms,
        .cancel = cancel,
        .h = {on_headers, on_body, on_done, c},
    };
    rc = prov_io_submit(r->io, &ir, err);
    if (rc) {
        call_free(c);
        /* The URL is configuration, but scrub it anyway. */
        sb_t m = {0};
        sb_append(&m, err ? err->msg : "");
        prov_redact_cfg(&m, cfg);
        if (err) snprintf(err->msg, sizeof err->msg, "%s", sb_str(&m));
        sb_free(&m);
    }
out:
    sb_free(&url);
    sb_free(&body);
    sb_free(&hdrs);
    return rc;
}

static const prov_wire *wire_by_name(const char *kind) {
    if (!kind) return NULL;
    if (!strcmp(kind, "openai")) return &prov_wire_openai;
    if (!strcmp(kind, "anthropic")) return &prov_wire_anthropic;
    if (!strcmp(kind, "cohere")) return &prov_wire_cohere;
    return NULL;
}

bool prov_remote_known(const char *kind) { return wire_by_name(kind) != NULL; }

prov_backend *prov_remote_new(prov_io *io, const char *kind, cf_err *err) {
    const prov_wire *w = wire_by_name(kind);
    if (!w) {
        cf_seterr(err, CF_ENOTFOUND, "unknown backend \"%s\" (openai, anthropic, cohere)",
                  kind ? kind : "");
        return NULL;
    }
    remote *r = calloc(1, sizeof *r);
    if (!r) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    r->io = io;
    r->wire = w;
    r->b.name = w->name;
    r->b.self = r;
    r->b.start = remote_start;
    return &r->b;
}

void prov_remote_free(prov_backend *b) {
    if (!b) return;
    free(b->self);
}
