/*
 * gen_chat — a chat turn's events into a generation's log and the
 * generation's controls back to the turn (see gen_chat.h).
 */
#include "app/gen_chat.h"

#include <string.h>

#include "base/sb.h"

static void fire(void *ud) { prov_cancel_fire(ud); }

void gen_chat_bridge_init(gen_chat_bridge *b, gen *g, prov_cancel *cancel) {
    b->g = g;
    b->cancel = cancel;
    gen_params p;
    b->params_seen = gen_get_params(g, &p);
    if (cancel) gen_on_cancel(g, fire, cancel);
}

static void kv(sb_t *s, const char *key, const char *val) {
    if (!val) return;
    if (s->len > 1) sb_putc(s, ',');
    sb_append_json_str(s, key, strlen(key));
    sb_putc(s, ':');
    sb_append_json_str(s, val, strlen(val));
}

static void kv_id(sb_t *s, const char *key, int64_t v) {
    if (v <= 0) return;
    if (s->len > 1) sb_putc(s, ',');
    sb_printf(s, "\"%s\":%lld", key, (long long)v);
}

static void emit(void *ud, const chat_event *ev) {
    gen_chat_bridge *b = ud;
    switch (ev->type) {
    case CHAT_EV_DELTA: gen_delta(b->g, ev->text, ev->len); break;
    case CHAT_EV_USAGE:
        gen_usage(b->g, ev->prompt_tokens, ev->completion_tokens, ev->cost, ev->estimated);
        break;
    case CHAT_EV_INFO: gen_info(b->g, ev->kind ? ev->kind : "info", ev->message); break;
    case CHAT_EV_DONE: {
        sb_t s = {0};
        sb_putc(&s, '{');
        kv(&s, "finish_reason", ev->finish_reason ? ev->finish_reason : "stop");
        kv(&s, "model", ev->model);
        kv(&s, "provider", ev->provider);
        sb_printf(&s, ",\"cached\":%s", ev->cached ? "true" : "false");
        kv_id(&s, "session_id", ev->session_id);
        kv_id(&s, "message_id", ev->message_id);
        sb_putc(&s, '}');
        gen_append(b->g, GEN_EV_DONE, s.data);
        sb_free(&s);
        break;
    }
    case CHAT_EV_ERROR: {
        sb_t s = {0};
        sb_putc(&s, '{');
        kv(&s, "kind", ev->kind ? ev->kind : "error");
        kv(&s, "message", ev->message ? ev->message : "");
        kv(&s, "provider", ev->provider);
        kv_id(&s, "session_id", ev->session_id);
        kv_id(&s, "message_id", ev->message_id);
        kv_id(&s, "retry_after_ms", ev->retry_after_ms);
        sb_putc(&s, '}');
        gen_append(b->g, GEN_EV_ERROR, s.data);
        sb_free(&s);
        break;
    }
    }
}

static bool granularity(void *ud, chunk_mode *mode) {
    gen_chat_bridge *b = ud;
    gen_params p;
    uint64_t v = gen_get_params(b->g, &p);
    if (v == b->params_seen) return false;
    b->params_seen = v;
    return p.granularity[0] && chunk_mode_parse(p.granularity, mode) == 0;
}

/* Temperature and top_p set on the generation while it runs: the values
 * themselves (not a version), so it never competes with granularity()
 * for the same change. */
static bool sampling(void *ud, bool *ht, double *t, bool *hp, double *p) {
    gen_chat_bridge *b = ud;
    gen_params gp;
    gen_get_params(b->g, &gp);
    if (!gp.has_temperature && !gp.has_top_p) return false;
    if (gp.has_temperature) *ht = true, *t = gp.temperature;
    if (gp.has_top_p) *hp = true, *p = gp.top_p;
    return true;
}

chat_sink gen_chat_bridge_sink(gen_chat_bridge *b) {
    return (chat_sink){.emit = emit, .granularity = granularity, .sampling = sampling, .ud = b};
}

void gen_chat_bridge_finish(gen_chat_bridge *b, int rc, const cf_err *err) {
    if (b->cancel) gen_on_cancel(b->g, NULL, NULL);
    if (gen_get_state(b->g) != GEN_RUNNING) return;
    if (rc == 0) {
        gen_done(b->g, gen_cancelled(b->g) ? "cancelled" : "stop", NULL, NULL, false);
    } else {
        gen_error(b->g, cf_strerror(rc), err && err->msg[0] ? err->msg : "the chat turn failed");
    }
}
