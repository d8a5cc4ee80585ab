/*
 * sse — server-sent events: the writer, the loop that follows a generation
 * onto a stream, and the generation routes that let a client resume.
 *
 * A stream is a chunked text/event-stream response. Each generation event
 * becomes one SSE event whose `id:` is the event's sequence number, so a
 * browser's EventSource sends it back as Last-Event-ID when it reconnects
 * and the resumed stream starts exactly after it. Each event goes out as
 * one chunk (one write): a client that vanished is noticed on the next
 * write, and when the generation is quiet a comment line goes out every
 * heartbeat_ms for the same purpose.
 *
 * Routes (all owner-checked: another key's generation is "not found"):
 *   GET  /api/generations/{id}         state and last sequence number
 *   GET  /api/generations/{id}/events  SSE from Last-Event-ID / ?after=N
 *   POST /api/generations/{id}/cancel  request cancellation
 *   POST /api/generations/{id}/params  change temperature / top_p /
 *                                      granularity while it streams
 */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "server/internal.h"

int srv_sse_start(srv_req *r) {
    if (r->status) return CF_EIO;
    r->status = 200;
    r->streaming = true;
    if (mg_response_header_start(r->conn, 200) < 0) return CF_EIO;
    mg_response_header_add(r->conn, "Content-Type", "text/event-stream; charset=utf-8", -1);
    mg_response_header_add(r->conn, "Cache-Control", "no-cache", -1);
    mg_response_header_add(r->conn, "X-Accel-Buffering", "no", -1);
    /* HTTP/1.0 has no chunked encoding: stream raw and close at the end. */
    const char *v = mg_get_request_info(r->conn)->http_version;
    r->sse_raw = v && !strcmp(v, "1.0");
    if (r->sse_raw)
        mg_response_header_add(r->conn, "Connection", "close", -1);
    else
        mg_response_header_add(r->conn, "Transfer-Encoding", "chunked", -1);
    srv_common_headers(r);
    if (mg_response_header_send(r->conn) < 0) return CF_ECLOSED;
    return 0;
}

static int send_chunk(srv_req *r, const char *p, size_t n) {
    if (r->sse_raw) return mg_write(r->conn, p, n) > 0 ? 0 : CF_ECLOSED;
    return mg_send_chunk(r->conn, p, (unsigned)n) > 0 ? 0 : CF_ECLOSED;
}

int srv_sse_event(srv_req *r, uint64_t id, const char *event, const char *data, size_t len) {
    sb_t b = {0};
    if (id) sb_printf(&b, "id: %llu\n", (unsigned long long)id);
    if (event) sb_printf(&b, "event: %s\n", event);
    /* One data: line per line of DATA (SSE cannot carry raw newlines). */
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || data[i] == '\n') {
            sb_append(&b, "data: ");
            sb_appendn(&b, data + start, i - start);
            sb_putc(&b, '\n');
            start = i + 1;
        }
    }
    sb_putc(&b, '\n');
    int rc = send_chunk(r, b.data, b.len);
    sb_free(&b);
    return rc;
}

int srv_sse_comment(srv_req *r, const char *text) {
    sb_t b = {0};
    sb_printf(&b, ": %s\n\n", text);
    int rc = send_chunk(r, b.data, b.len);
    sb_free(&b);
    return rc;
}

int srv_sse_done(srv_req *r) { return send_chunk(r, "data: [DONE]\n\n", 14); }

int srv_sse_end(srv_req *r) {
    if (r->sse_raw) return 0; /* the connection closes after the handler */
    return mg_send_chunk(r->conn, "", 0) >= 0 ? 0 : CF_ECLOSED;
}

void srv_gen_frame(gen *g, const gen_event *ev, sb_t *out) {
    sb_printf(out, "{\"type\":\"%s\",\"generation_id\":\"%s\",\"seq\":%llu", gen_ev_name(ev->type),
              gen_id(g), (unsigned long long)ev->seq);
    /* Splice the payload's members in: it is a JSON object (checked by
     * gen_append), so skip its opening brace. */
    const char *p = ev->json;
    while (*p && *p != '{')
        p++;
    p++;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    if (*p != '}') sb_putc(out, ',');
    sb_append(out, p);
}

static int std_fmt(void *ctx, gen *g, const gen_event *ev, sb_t *out) {
    (void)ctx;
    srv_gen_frame(g, ev, out);
    return 1;
}

int srv_sse_follow(srv_req *r, gen *g, uint64_t after, srv_sse_fmt fmt, void *ctx) {
    srv_t *s = r->srv;
    if (!fmt) fmt = std_fmt;
    srv_stream_enter(s);
    double last_write = clock_mono_ms();
    sb_t data = {0};
    int rc = 0;
    for (;;) {
        if (atomic_load(&s->hard_stop)) {
            rc = CF_ECANCEL;
            break;
        }
        const gen_event *evs[32];
        size_t n = 0;
        int w = gen_wait(g, after, s->o.heartbeat_ms < 250 ? s->o.heartbeat_ms : 250, evs, 32, &n);
        if (w == CF_ECLOSED) break; /* finished and everything sent */
        if (w == CF_ETIMEOUT) {
            if (clock_mono_ms() - last_write >= s->o.heartbeat_ms) {
                if (srv_sse_comment(r, "keep-alive") != 0) {
                    rc = CF_ECLOSED;
                    break;
                }
                last_write = clock_mono_ms();
            }
            continue;
        }
        for (size_t i = 0; i < n && rc == 0; i++) {
            sb_clear(&data);
            after = evs[i]->seq;
            if (!fmt(ctx, g, evs[i], &data)) continue;
            if (srv_sse_event(r, evs[i]->seq, NULL, sb_str(&data), data.len) != 0) rc = CF_ECLOSED;
        }
        if (rc) break;
        last_write = clock_mono_ms();
    }
    sb_free(&data);
    srv_stream_leave(s);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Generation routes                                                   */
/* ------------------------------------------------------------------ */

/* The generation named by {id} if the caller owns it; else sends 404. */
static gen *owned_gen(srv_req *r) {
    const char *id = srv_req_param(r, "id");
    gen *g = id ? gen_get(r->srv->gens, id) : NULL;
    if (g && strcmp(gen_owner(g), r->owner)) {
        gen_unref(g);
        g = NULL;
    }
    if (!g)
        srv_reply_error(r, 404, "invalid_request_error", "generation_not_found", "id",
                        "no generation %s (finished ones are kept for a while, then expire)",
                        id ? id : "");
    return g;
}

static json_t *gen_json(gen *g) {
    return json_pack("{s:s, s:s, s:I, s:s?}", "id", gen_id(g), "state",
                     gen_state_name(gen_get_state(g)), "last_seq", (json_int_t)gen_last_seq(g),
                     "session_id", *gen_session(g) ? gen_session(g) : NULL);
}

static int h_gen_get(srv_req *r, void *ctx) {
    (void)ctx;
    gen *g = owned_gen(r);
    if (!g) return 0;
    json_t *j = gen_json(g);
    srv_reply_json(r, 200, j);
    json_decref(j);
    gen_unref(g);
    return 0;
}

/* Parses a non-negative decimal sequence number. */
static bool parse_seq(const char *s, uint64_t *out) {
    if (!s || !*s || strlen(s) > 19) return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

static int h_gen_events(srv_req *r, void *ctx) {
    (void)ctx;
    uint64_t after = 0;
    const char *lei = srv_req_header(r, "Last-Event-ID");
    char q[32];
    if (lei) {
        if (!parse_seq(lei, &after))
            return srv_reply_error(r, 400, "invalid_request_error", "invalid_last_event_id",
                                   "Last-Event-ID", "Last-Event-ID must be a non-negative integer");
    } else if (srv_req_query(r, "after", q, sizeof q) >= 0) {
        if (!parse_seq(q, &after))
            return srv_reply_error(r, 400, "invalid_request_error", "invalid_after", "after",
                                   "after must be a non-negative integer");
    }
    gen *g = owned_gen(r);
    if (!g) return 0;
    uint64_t last = gen_last_seq(g);
    if (after > last && gen_get_state(g) != GEN_RUNNING) {
        gen_unref(g);
        return srv_reply_error(r, 400, "invalid_request_error", "invalid_after", "after",
                               "after=%llu is past the last event (%llu)",
                               (unsigned long long)after, (unsigned long long)last);
    }
    if (after >= last && gen_get_state(g) != GEN_RUNNING) {
        /* Nothing more will come: 204 tells EventSource not to reconnect. */
        gen_unref(g);
        return srv_reply(r, 204, NULL, NULL, 0, NULL);
    }
    if (srv_sse_start(r) == 0) {
        int rc = srv_sse_follow(r, g, after, NULL, NULL);
        if (rc != CF_ECLOSED) srv_sse_end(r);
    }
    gen_unref(g);
    return 0;
}

static int h_gen_cancel(srv_req *r, void *ctx) {
    (void)ctx;
    gen *g = owned_gen(r);
    if (!g) return 0;
    if (gen_cancel(g) != 0) {
        srv_reply_error(r, 409, "invalid_request_error", "generation_finished", "id",
                        "generation %s has already finished (%s)", gen_id(g),
                        gen_state_name(gen_get_state(g)));
    } else {
        json_t *j = gen_json(g);
        json_object_set_new(j, "cancel_requested", json_true());
        srv_reply_json(r, 202, j);
        json_decref(j);
    }
    gen_unref(g);
    return 0;
}

/* Fills P from a JSON object with temperature / top_p / granularity.
 * Returns NULL, or a message naming the bad field. */
static const char *params_from_json(json_t *j, gen_params *p) {
    memset(p, 0, sizeof *p);
    json_t *t = json_object_get(j, "temperature"), *tp = json_object_get(j, "top_p");
    json_t *gr = json_object_get(j, "granularity");
    if (t && !json_is_number(t)) return "temperature must be a number";
    if (tp && !json_is_number(tp)) return "top_p must be a number";
    if (gr && (!json_is_string(gr) || json_string_length(gr) >= sizeof p->granularity))
        return "granularity must be token, word or sentence";
    if (!t && !tp && !gr) return "give temperature, top_p or granularity";
    if (t) p->has_temperature = true, p->temperature = json_number_value(t);
    if (tp) p->has_top_p = true, p->top_p = json_number_value(tp);
    if (gr) snprintf(p->granularity, sizeof p->granularity, "%s", json_string_value(gr));
    return NULL;
}

json_t *srv_params_json(gen *g) {
    gen_params cur;
    gen_get_params(g, &cur);
    json_t *pj = json_pack("{s:I}", "version", (json_int_t)cur.version);
    if (cur.has_temperature) json_object_set_new(pj, "temperature", json_real(cur.temperature));
    if (cur.has_top_p) json_object_set_new(pj, "top_p", json_real(cur.top_p));
    if (cur.granularity[0]) json_object_set_new(pj, "granularity", json_string(cur.granularity));
    return pj;
}

int srv_set_params(gen *g, json_t *body, cf_err *err) {
    gen_params p;
    const char *bad = params_from_json(body, &p);
    if (bad) return cf_seterr(err, CF_EINVAL, "%s", bad);
    return gen_set_params(g, &p, err);
}

static int h_gen_params(srv_req *r, void *ctx) {
    (void)ctx;
    json_t *body = srv_req_json(r);
    if (!body) return 0;
    gen *g = json_is_object(body) ? owned_gen(r) : NULL;
    if (!json_is_object(body)) {
        srv_reply_error(r, 400, "invalid_request_error", "invalid_params", NULL,
                        "the body must be a JSON object");
    } else if (g) {
        cf_err err = {0};
        int rc = srv_set_params(g, body, &err);
        if (rc == 0) {
            json_t *j = gen_json(g);
            json_object_set_new(j, "params", srv_params_json(g));
            srv_reply_json(r, 200, j);
            json_decref(j);
        } else if (rc == CF_ECLOSED) {
            srv_reply_error(r, 409, "invalid_request_error", "generation_finished", "id", "%s",
                            err.msg);
        } else {
            srv_reply_error(r, 400, "invalid_request_error", "invalid_params", NULL, "%s", err.msg);
        }
    }
    gen_unref(g);
    json_decref(body);
    return 0;
}

void srv_sse_routes(srv_t *s) {
    srv_route_add(s, "POST", "/api/generations/{id}/params", h_gen_params, s);
    srv_route_add(s, "GET", "/api/generations/{id}", h_gen_get, s);
    srv_route_add_flags(s, "GET", "/api/generations/{id}/events", h_gen_events, s,
                        SRV_ROUTE_QUERY_TOKEN);
    srv_route_add(s, "POST", "/api/generations/{id}/cancel", h_gen_cancel, s);
}
