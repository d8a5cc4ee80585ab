/*
 * ws — the WebSocket endpoint /ws and its JSON protocol (docs/API.md).
 *
 * civetweb reads frames on the connection's own thread and calls
 * on_data for each; that thread must stay free to read the next op (a
 * `stop` or `set` arrives while a reply streams), so following a
 * generation happens on a separate thread per (connection, generation),
 * a "follower", which waits on the generation's event log and writes
 * frames. civetweb serialises writes to one connection with its own lock,
 * so followers and the reading thread can both write. When the connection
 * closes its followers are told to stop and joined before the connection
 * goes away; the generations themselves go on (a client that comes back
 * sends `resume`).
 *
 * Auth happens at the handshake (Authorization header, or ?access_token=
 * since browsers cannot set headers on a WebSocket). A refused client is
 * still upgraded, gets one error frame saying why, and a close frame with
 * code 1008: a bare refused handshake tells a browser nothing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"

#ifndef CONFAB_VERSION
#define CONFAB_VERSION "0.0.0"
#endif

typedef struct ws_follower ws_follower;
struct ws_follower {
    ws_follower *next;
    ws_conn *wc;
    gen *g; /* our reference */
    uint64_t after;
    pthread_t th;
    atomic_bool stop, done;
};

struct ws_conn {
    ws_conn *next; /* in srv->ws_list */
    srv_t *s;
    struct mg_connection *conn;
    char owner[20];
    bool authed;
    char reject_kind[32];
    char reject_msg[160];
    pthread_mutex_t mu; /* guards followers */
    ws_follower *followers;
};

/* ------------------------------------------------------------------ */
/* Frames                                                              */
/* ------------------------------------------------------------------ */

static int ws_send(ws_conn *wc, const char *txt, size_t n) {
    return mg_websocket_write(wc->conn, MG_WEBSOCKET_OPCODE_TEXT, txt, n) > 0 ? 0 : CF_ECLOSED;
}

static void ws_send_json(ws_conn *wc, json_t *j) {
    char *t = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (t) ws_send(wc, t, strlen(t));
    free(t);
    json_decref(j);
}

/* A protocol error frame: {"type":"error","kind","message","ref"?}. */
static void ws_error(ws_conn *wc, const json_t *ref, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void ws_error(ws_conn *wc, const json_t *ref, const char *kind, const char *fmt, ...) {
    sb_t m = {0};
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&m, fmt, ap);
    va_end(ap);
    json_t *j = json_pack("{s:s, s:s, s:s}", "type", "error", "kind", kind, "message", sb_str(&m));
    if (ref) json_object_set(j, "ref", (json_t *)ref);
    sb_free(&m);
    ws_send_json(wc, j);
}

static void ws_close(ws_conn *wc, int code, const char *reason) {
    char buf[128];
    size_t rl = strlen(reason);
    if (rl > sizeof buf - 2) rl = sizeof buf - 2;
    buf[0] = (char)(code >> 8);
    buf[1] = (char)(code & 0xff);
    memcpy(buf + 2, reason, rl);
    mg_websocket_write(wc->conn, MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, buf, rl + 2);
}

/* ------------------------------------------------------------------ */
/* Followers                                                           */
/* ------------------------------------------------------------------ */

static void *follow_main(void *p) {
    ws_follower *f = p;
    srv_t *s = f->wc->s;
    srv_stream_enter(s);
    sb_t fr = {0};
    for (;;) {
        if (atomic_load(&f->stop) || atomic_load(&s->hard_stop)) break;
        const gen_event *evs[32];
        size_t n = 0;
        int rc = gen_wait(f->g, f->after, 250, evs, 32, &n);
        if (rc == CF_ECLOSED) break;
        if (rc != 0) continue;
        bool gone = false;
        for (size_t i = 0; i < n && !gone; i++) {
            sb_clear(&fr);
            srv_gen_frame(f->g, evs[i], &fr);
            gone = ws_send(f->wc, fr.data, fr.len) != 0;
            f->after = evs[i]->seq;
        }
        if (gone) break;
    }
    sb_free(&fr);
    srv_stream_leave(s);
    atomic_store(&f->done, true);
    return NULL;
}

static void follower_free(ws_follower *f) {
    pthread_join(f->th, NULL);
    gen_unref(f->g);
    free(f);
}

/* Stops and joins followers: all of them, or only those of G, or (when
 * ONLY_DONE) those that already ended. Caller holds wc->mu. */
static void reap(ws_conn *wc, gen *g, bool only_done) {
    ws_follower **pp = &wc->followers;
    while (*pp) {
        ws_follower *f = *pp;
        bool pick = only_done ? atomic_load(&f->done) : (!g || f->g == g);
        if (!pick) {
            pp = &f->next;
            continue;
        }
        *pp = f->next;
        atomic_store(&f->stop, true);
        gen_wake(f->g);
        follower_free(f);
    }
}

/* Starts following G (takes a new reference) from AFTER. */
static int follow(ws_conn *wc, gen *g, uint64_t after) {
    ws_follower *f = calloc(1, sizeof *f);
    if (!f) return CF_ENOMEM;
    f->wc = wc;
    f->g = g;
    gen_ref(g);
    f->after = after;
    pthread_mutex_lock(&wc->mu);
    reap(wc, NULL, true);
    reap(wc, g, false); /* one follower per generation per connection */
    if (pthread_create(&f->th, NULL, follow_main, f) != 0) {
        pthread_mutex_unlock(&wc->mu);
        gen_unref(g);
        free(f);
        return CF_ENOMEM;
    }
    f->next = wc->followers;
    wc->followers = f;
    pthread_mutex_unlock(&wc->mu);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Ops                                                                 */
/* ------------------------------------------------------------------ */

static const char *kind_of(int code) {
    switch (code) {
    case CF_EINVAL:
    case CF_EFORMAT:
    case CF_ERANGE: return "bad_request";
    case CF_ENOTFOUND: return "not_found";
    case CF_EAUTH: return "forbidden";
    case CF_EBUSY: return "busy";
    case CF_EUPSTREAM: return "upstream";
    case CF_ETIMEOUT: return "timeout";
    default: return "internal";
    }
}

/* The generation named by msg.generation_id, owned by this connection's
 * key; sends an error frame and returns NULL otherwise. */
static gen *op_gen(ws_conn *wc, json_t *msg, const json_t *ref) {
    const char *id = json_string_value(json_object_get(msg, "generation_id"));
    if (!id) {
        ws_error(wc, ref, "bad_request", "generation_id (a string) is required");
        return NULL;
    }
    gen *g = gen_get(wc->s->gens, id);
    if (g && strcmp(gen_owner(g), wc->owner)) {
        gen_unref(g);
        g = NULL;
    }
    if (!g) ws_error(wc, ref, "not_found", "no generation %s", id);
    return g;
}

static void ack(ws_conn *wc, const char *op, gen *g, const json_t *ref, json_t *extra) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I}", "type", "ack", "op", op, "generation_id",
                          gen_id(g), "state", gen_state_name(gen_get_state(g)), "last_seq",
                          (json_int_t)gen_last_seq(g));
    if (ref) json_object_set(j, "ref", (json_t *)ref);
    if (extra) json_object_update(j, extra);
    json_decref(extra);
    ws_send_json(wc, j);
}

static void op_chat(ws_conn *wc, json_t *msg, const json_t *ref, bool regenerate) {
    srv_t *s = wc->s;
    json_t *jsid = json_object_get(msg, "session_id"), *jc = json_object_get(msg, "content");
    json_t *jm = json_object_get(msg, "model"), *jp = json_object_get(msg, "params");
    if (jsid && !json_is_string(jsid))
        return ws_error(wc, ref, "bad_request", "session_id must be a string");
    if (jm && !json_is_string(jm))
        return ws_error(wc, ref, "bad_request", "model must be a string");
    if (jp && !json_is_object(jp))
        return ws_error(wc, ref, "bad_request", "params must be an object");
    if (regenerate) {
        if (!jsid) return ws_error(wc, ref, "bad_request", "regenerate needs session_id");
    } else if (!json_is_string(jc) || json_string_length(jc) == 0) {
        return ws_error(wc, ref, "bad_request", "content (a non-empty string) is required");
    }
    int retry = 0;
    if (!srv_rate_ok(s, wc->owner, &retry))
        return ws_error(wc, ref, "rate_limited",
                        "rate limit of %d requests per minute reached; retry in %d s",
                        s->o.rate_limit_rpm, retry);
    if (!s->hook) return ws_error(wc, ref, "unavailable", "no chat service configured");
    srv_chat_request rq = {.owner = wc->owner,
                           .session_id = json_string_value(jsid),
                           .content = regenerate ? NULL : json_string_value(jc),
                           .model = jm ? json_string_value(jm) : s->o.default_model,
                           .params = jp,
                           .regenerate = regenerate};
    cf_err err = {0};
    gen *g = s->hook(s->hook_ctx, &rq, &err);
    if (!g)
        return ws_error(wc, ref, kind_of(err.code), "%s",
                        err.msg[0] ? err.msg : "the chat turn failed");
    json_t *j = json_pack("{s:s, s:s}", "type", "started", "generation_id", gen_id(g));
    if (*gen_session(g)) json_object_set_new(j, "session_id", json_string(gen_session(g)));
    if (ref) json_object_set(j, "ref", (json_t *)ref);
    ws_send_json(wc, j);
    if (follow(wc, g, 0) != 0) ws_error(wc, ref, "internal", "cannot follow the generation");
    gen_unref(g);
}

static void op_stop(ws_conn *wc, json_t *msg, const json_t *ref) {
    gen *g = op_gen(wc, msg, ref);
    if (!g) return;
    if (gen_cancel(g) != 0)
        ws_error(wc, ref, "finished", "generation %s has already finished (%s)", gen_id(g),
                 gen_state_name(gen_get_state(g)));
    else
        ack(wc, "stop", g, ref, NULL);
    gen_unref(g);
}

static void op_set(ws_conn *wc, json_t *msg, const json_t *ref) {
    gen *g = op_gen(wc, msg, ref);
    if (!g) return;
    cf_err err = {0};
    int rc = srv_set_params(g, msg, &err);
    if (rc == CF_ECLOSED) {
        ws_error(wc, ref, "finished", "%s", err.msg);
    } else if (rc != 0) {
        ws_error(wc, ref, "bad_request", "%s", err.msg);
    } else {
        json_t *x = json_object();
        json_object_set_new(x, "params", srv_params_json(g));
        ack(wc, "set", g, ref, x);
    }
    gen_unref(g);
}

static void op_resume(ws_conn *wc, json_t *msg, const json_t *ref) {
    json_t *ja = json_object_get(msg, "after");
    if (ja && (!json_is_integer(ja) || json_integer_value(ja) < 0))
        return ws_error(wc, ref, "bad_request", "after must be a non-negative integer");
    gen *g = NULL;
    const char *sid = json_string_value(json_object_get(msg, "session_id"));
    if (sid && !json_object_get(msg, "generation_id")) {
        /* A client that knows only its session (a reloaded page) picks up
         * the session's current generation. */
        g = gen_for_session(wc->s->gens, sid);
        if (g && strcmp(gen_owner(g), wc->owner)) {
            gen_unref(g);
            g = NULL;
        }
        if (!g) return ws_error(wc, ref, "not_found", "session %s has no recent generation", sid);
    } else {
        g = op_gen(wc, msg, ref);
    }
    if (!g) return;
    uint64_t after = ja ? (uint64_t)json_integer_value(ja) : 0;
    if (after > gen_last_seq(g) && gen_get_state(g) != GEN_RUNNING) {
        ws_error(wc, ref, "bad_request", "after=%llu is past the last event (%llu)",
                 (unsigned long long)after, (unsigned long long)gen_last_seq(g));
    } else {
        ack(wc, "resume", g, ref, NULL);
        if (follow(wc, g, after) != 0)
            ws_error(wc, ref, "internal", "cannot follow the generation");
    }
    gen_unref(g);
}

static void handle_text(ws_conn *wc, const char *data, size_t len) {
    srv_t *s = wc->s;
    if ((int64_t)len > s->o.max_body_bytes)
        return ws_error(wc, NULL, "too_large", "message of %zu bytes exceeds the limit of %lld",
                        len, (long long)s->o.max_body_bytes);
    if (!srv_json_depth_ok(data, len, s->o.max_json_depth))
        return ws_error(wc, NULL, "bad_request", "message nests deeper than %d levels",
                        s->o.max_json_depth);
    json_error_t je;
    json_t *msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!msg) return ws_error(wc, NULL, "bad_json", "message is not valid JSON: %s", je.text);
    if (!json_is_object(msg)) {
        json_decref(msg);
        return ws_error(wc, NULL, "bad_request", "message must be a JSON object with an \"op\"");
    }
    const json_t *ref = json_object_get(msg, "id");
    const char *op = json_string_value(json_object_get(msg, "op"));
    if (!op)
        ws_error(wc, ref, "bad_request", "op (a string) is required");
    else if (!strcmp(op, "send"))
        op_chat(wc, msg, ref, false);
    else if (!strcmp(op, "regenerate"))
        op_chat(wc, msg, ref, true);
    else if (!strcmp(op, "stop"))
        op_stop(wc, msg, ref);
    else if (!strcmp(op, "set"))
        op_set(wc, msg, ref);
    else if (!strcmp(op, "resume"))
        op_resume(wc, msg, ref);
    else if (!strcmp(op, "ping")) {
        json_t *j = json_pack("{s:s}", "type", "pong");
        if (ref) json_object_set(j, "ref", (json_t *)ref);
        ws_send_json(wc, j);
    } else {
        ws_error(wc, ref, "unknown_op",
                 "unknown op '%.40s' (send, regenerate, stop, set, resume, ping)", op);
    }
    json_decref(msg);
}

/* ------------------------------------------------------------------ */
/* civetweb callbacks                                                  */
/* ------------------------------------------------------------------ */

static int on_connect(const struct mg_connection *conn, void *cbdata) {
    srv_t *s = cbdata;
    ws_conn *wc = calloc(1, sizeof *wc);
    if (!wc) return 1;
    wc->s = s;
    pthread_mutex_init(&wc->mu, NULL);
    int retry = 0;
    if (atomic_load(&s->stopping)) {
        snprintf(wc->reject_kind, sizeof wc->reject_kind, "unavailable");
        snprintf(wc->reject_msg, sizeof wc->reject_msg, "the server is shutting down");
    } else if (!srv_authenticate(s, conn, true, wc->owner)) {
        snprintf(wc->reject_kind, sizeof wc->reject_kind, "auth");
        snprintf(
            wc->reject_msg, sizeof wc->reject_msg,
            "missing or incorrect API key (send 'Authorization: Bearer <key>' or ?access_token=)");
    } else if (!srv_rate_ok(s, wc->owner, &retry)) {
        snprintf(wc->reject_kind, sizeof wc->reject_kind, "rate_limited");
        snprintf(wc->reject_msg, sizeof wc->reject_msg, "rate limit reached; retry in %d s", retry);
    } else {
        wc->authed = true;
    }
    mg_set_user_connection_data(conn, wc);
    met_counter_add(s->met, "confab_http_requests_total",
                    "HTTP requests by route, method and status",
                    wc->authed ? "route=\"/ws\",method=\"GET\",status=\"101\""
                               : "route=\"/ws\",method=\"GET\",status=\"401\"",
                    1);
    return 0;
}

static void on_ready(struct mg_connection *conn, void *cbdata) {
    srv_t *s = cbdata;
    ws_conn *wc = mg_get_user_connection_data(conn);
    if (!wc) return;
    wc->conn = conn;
    if (!wc->authed) {
        ws_error(wc, NULL, wc->reject_kind, "%s", wc->reject_msg);
        ws_close(wc, 1008, wc->reject_kind);
        return;
    }
    pthread_mutex_lock(&s->ws_mu);
    wc->next = s->ws_list;
    s->ws_list = wc;
    pthread_mutex_unlock(&s->ws_mu);
    json_t *j =
        json_pack("{s:s, s:i, s:s}", "type", "hello", "protocol", 1, "version", CONFAB_VERSION);
    ws_send_json(wc, j);
}

static int on_data(struct mg_connection *conn, int bits, char *data, size_t len, void *cbdata) {
    (void)cbdata;
    ws_conn *wc = mg_get_user_connection_data(conn);
    if (!wc || !wc->authed) return 0;
    int opcode = bits & 0x0f;
    switch (opcode) {
    case MG_WEBSOCKET_OPCODE_TEXT:
        if (!(bits & 0x80)) {
            ws_error(wc, NULL, "bad_request", "fragmented messages are not supported");
            return 1;
        }
        handle_text(wc, data, len);
        return 1;
    case MG_WEBSOCKET_OPCODE_BINARY:
        ws_error(wc, NULL, "bad_request", "binary frames are not supported; send JSON text");
        return 1;
    case MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE: return 0;
    default: return 1; /* ping / pong / continuation */
    }
}

static void on_close(const struct mg_connection *conn, void *cbdata) {
    srv_t *s = cbdata;
    ws_conn *wc = mg_get_user_connection_data(conn);
    if (!wc) return;
    pthread_mutex_lock(&s->ws_mu);
    for (ws_conn **pp = &s->ws_list; *pp; pp = &(*pp)->next)
        if (*pp == wc) {
            *pp = wc->next;
            break;
        }
    pthread_mutex_unlock(&s->ws_mu);
    pthread_mutex_lock(&wc->mu);
    reap(wc, NULL, false);
    pthread_mutex_unlock(&wc->mu);
    pthread_mutex_destroy(&wc->mu);
    mg_set_user_connection_data(conn, NULL);
    free(wc);
}

void srv_ws_register(srv_t *s) {
    mg_set_websocket_handler(s->mg, "/ws", on_connect, on_ready, on_data, on_close, s);
}

void srv_ws_close_all(srv_t *s) {
    pthread_mutex_lock(&s->ws_mu);
    for (ws_conn *wc = s->ws_list; wc; wc = wc->next)
        ws_close(wc, 1001, "server shutting down");
    pthread_mutex_unlock(&s->ws_mu);
}
