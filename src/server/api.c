/*
 * api — chat-service routes; see api.h and docs/API.md.
 *
 * Layout of this file: the generation runner (a job = one chat_turn on its
 * own detached thread, writing into a gen), then the handlers grouped by
 * route family. Handlers validate everything synchronously (JSON types,
 * model names, session ownership) so mistakes get a 4xx at once; only the
 * reply itself runs in the background.
 */
#include "server/api.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cache.h"
#include "app/gen_chat.h"
#include "app/prompts.h"
#include "base/log.h"
#include "providers/provider.h"
#include "store/store.h"

struct srv_api {
    srv_t *srv;
    chat_service *cs;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    int running; /* turn threads alive */
};

/* ------------------------------------------------------------ jobs */

typedef struct {
    srv_api *api;
    gen *g;
    prov_cancel *cancel;
    chat_request req;
    /* owned copies of the request's strings */
    char *owner, *content, *model, *system;
    chat_msg *msgs;
    size_t n_msgs;
    char **stops;
    size_t n_stops;
} job;

static void job_free(job *j) {
    free(j->owner);
    free(j->content);
    free(j->model);
    free(j->system);
    for (size_t i = 0; i < j->n_msgs; i++) {
        free((char *)j->msgs[i].role);
        free((char *)j->msgs[i].content);
    }
    free(j->msgs);
    for (size_t i = 0; i < j->n_stops; i++)
        free(j->stops[i]);
    free(j->stops);
    prov_cancel_free(j->cancel);
    if (j->g) gen_unref(j->g);
    free(j);
}

static void *job_main(void *arg) {
    job *j = arg;
    gen_chat_bridge b;
    gen_chat_bridge_init(&b, j->g, j->cancel);
    chat_sink sink = gen_chat_bridge_sink(&b);
    chat_result res;
    cf_err err = {0};
    int rc = chat_turn(j->api->cs, &j->req, j->cancel, &sink, &res, &err);
    gen_chat_bridge_finish(&b, rc == CF_ECANCEL ? 0 : rc, &err);
    srv_metrics_cache(j->api->srv, res.cached);
    if (res.status && res.status != CF_ECANCEL && res.provider[0])
        srv_metrics_provider_error(j->api->srv, res.provider);
    srv_api *api = j->api;
    job_free(j);
    pthread_mutex_lock(&api->mu);
    if (--api->running == 0) pthread_cond_broadcast(&api->idle);
    pthread_mutex_unlock(&api->mu);
    return NULL;
}

/* Starts J (taking ownership). Returns a new reference to its generation
 * or NULL with ERR set (J freed). */
static gen *job_start(srv_api *api, job *j, const char *session_key, cf_err *err) {
    j->api = api;
    j->cancel = prov_cancel_new();
    j->g = gen_start(srv_gens(api->srv), j->owner, session_key, err);
    if (!j->cancel || !j->g) {
        job_free(j);
        return NULL;
    }
    gen_ref(j->g); /* one for the caller */
    pthread_mutex_lock(&api->mu);
    api->running++;
    pthread_mutex_unlock(&api->mu);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    gen *g = j->g;
    int rc = pthread_create(&th, &at, job_main, j);
    pthread_attr_destroy(&at);
    if (rc) {
        gen_error(g, "internal", "cannot start a thread for the reply");
        pthread_mutex_lock(&api->mu);
        api->running--;
        pthread_mutex_unlock(&api->mu);
        job_free(j);
        gen_unref(g);
        cf_seterr(err, CF_EBUSY, "cannot start a thread for the reply");
        return NULL;
    }
    return g;
}

/* A job with the defaults from the config (granularity). */
static job *job_new(srv_api *api, const char *owner) {
    job *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->api = api;
    j->owner = strdup(owner ? owner : "local");
    j->req.owner = j->owner;
    const char *g = chat_cfg(api->cs)->streaming.granularity;
    chunk_mode m;
    if (g && chunk_mode_parse(g, &m) == 0) j->req.granularity = m;
    return j;
}

/* ------------------------------------------------------------ helpers */

static char *dupn(const char *s) { return s ? strdup(s) : NULL; }

static bool model_known(srv_api *api, const char *name) {
    const cfg_t *cfg = chat_cfg(api->cs);
    if (cfg_find_model(cfg, name)) return true;
    for (size_t i = 0; i < cfg->n_ab; i++)
        if (!strcmp(cfg->ab[i].name, name)) return true;
    return false;
}

/* Reads the sampling fields shared by the OpenAI API, the sessions API and
 * the WebSocket into Q. Returns 0 or sends a 400 naming the field. */
static int read_params(srv_req *r, const json_t *o, job *j) {
    chat_request *q = &j->req;
    json_t *v;
    if ((v = json_object_get(o, "temperature")) && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 2)
            return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "temperature",
                                   "temperature must be a number from 0 to 2"),
                   -1;
        q->has_temperature = true;
        q->temperature = json_number_value(v);
    }
    if ((v = json_object_get(o, "top_p")) && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > 1)
            return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "top_p",
                                   "top_p must be a number in (0, 1]"),
                   -1;
        q->has_top_p = true;
        q->top_p = json_number_value(v);
    }
    const char *mt_name =
        json_object_get(o, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if ((v = json_object_get(o, mt_name)) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000000)
            return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", mt_name,
                                   "%s must be a positive integer", mt_name),
                   -1;
        q->max_tokens = (int)json_integer_value(v);
    }
    if ((v = json_object_get(o, "seed")) && !json_is_null(v)) {
        if (!json_is_integer(v))
            return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "seed",
                                   "seed must be an integer"),
                   -1;
        q->has_seed = true;
        q->seed = json_integer_value(v);
    }
    static const char *pen[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        if ((v = json_object_get(o, pen[i])) && !json_is_null(v)) {
            if (!json_is_number(v) || json_number_value(v) < -2 || json_number_value(v) > 2)
                return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", pen[i],
                                       "%s must be a number from -2 to 2", pen[i]),
                       -1;
            if (i == 0)
                q->has_presence_penalty = true, q->presence_penalty = json_number_value(v);
            else
                q->has_frequency_penalty = true, q->frequency_penalty = json_number_value(v);
        }
    }
    if ((v = json_object_get(o, "stop")) && !json_is_null(v)) {
        json_t *arr = json_is_string(v) ? json_pack("[O]", v) : json_incref(v);
        if (!json_is_array(arr) || json_array_size(arr) > PROV_MAX_STOP) {
            json_decref(arr);
            return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "stop",
                                   "stop must be a string or an array of at most %d strings",
                                   PROV_MAX_STOP),
                   -1;
        }
        j->stops = calloc(json_array_size(arr) + 1, sizeof *j->stops);
        size_t i;
        json_t *s;
        json_array_foreach(arr, i, s) {
            if (!json_is_string(s) || !json_string_length(s)) {
                json_decref(arr);
                return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "stop",
                                       "stop strings must be non-empty strings"),
                       -1;
            }
            j->stops[j->n_stops++] = strdup(json_string_value(s));
        }
        json_decref(arr);
        q->stop = (const char *const *)j->stops;
        q->n_stop = j->n_stops;
    }
    if ((v = json_object_get(o, "granularity")) && !json_is_null(v)) {
        chunk_mode m;
        if (!json_is_string(v) || chunk_mode_parse(json_string_value(v), &m))
            return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "granularity",
                                   "granularity must be token, word or sentence"),
                   -1;
        q->granularity = m;
    }
    if ((v = json_object_get(o, "cache")) && json_is_false(v)) q->no_cache = true;
    return 0;
}

/* Session id from a path or body value: a decimal id or a uuid, owned by
 * OWNER. Returns the id, or 0 after sending 404/400. */
static int64_t session_of(srv_req *r, store *st, const char *ref, const char *owner) {
    int64_t id = 0;
    cf_err err = {0};
    store_session s = {0};
    if (!ref || store_session_find(st, ref, &id, &err) || store_session_get(st, id, &s, &err) ||
        (s.owner && strcmp(s.owner, owner))) {
        store_session_clear(&s);
        srv_reply_error(r, 404, "invalid_request_error", "session_not_found", "session_id",
                        "session %s not found", ref ? ref : "(none)");
        return 0;
    }
    store_session_clear(&s);
    return id;
}

static json_t *session_json(const store_session *s) {
    return json_pack("{s:I,s:s,s:s,s:s?,s:s?,s:b,s:I,s:I,s:I,s:o}", "id", (json_int_t)s->id, "uuid",
                     s->uuid, "title", s->title ? s->title : "", "model", s->model, "system_prompt",
                     s->system_prompt, "archived", s->archived, "created_at",
                     (json_int_t)s->created_at, "updated_at", (json_int_t)s->updated_at,
                     "message_count", (json_int_t)s->message_count, "params",
                     json_loads(s->params ? s->params : "{}", 0, NULL) ?: json_object());
}

static json_t *message_json(const store_message *m) {
    json_t *j = json_pack(
        "{s:I,s:s,s:I,s:s,s:s,s:s,s:s?,s:s?,s:I,s:I,s:f,s:I,s:s?,s:b,s:I,s:s?,s:s?}", "id",
        (json_int_t)m->id, "uuid", m->uuid, "session_id", (json_int_t)m->session_id, "role",
        m->role, "content", m->content ? m->content : "", "status", store_status_name(m->status),
        "model", m->model, "provider", m->provider, "prompt_tokens", (json_int_t)m->prompt_tokens,
        "completion_tokens", (json_int_t)m->completion_tokens, "cost", m->cost, "latency_ms",
        (json_int_t)m->latency_ms, "finish_reason", m->finish_reason, "cached", m->cached,
        "created_at", (json_int_t)m->created_at, "error", m->error, "variant", m->variant);
    json_object_set_new(j, "parent_id", m->parent_id ? json_integer(m->parent_id) : json_null());
    return j;
}

/* A session reference from a JSON id (integer) or uuid (string) into OUT;
 * "" for anything else (which session_of then reports as not found). */
static const char *json_session_ref(const json_t *v, char out[64]) {
    if (json_is_integer(v))
        snprintf(out, 64, "%lld", (long long)json_integer_value(v));
    else
        snprintf(out, 64, "%s", json_is_string(v) ? json_string_value(v) : "");
    return out;
}

/* Answers STATUS with session ID as JSON (or the error reading it). */
static int reply_session(srv_req *r, store *st, int64_t id, int status) {
    store_session s = {0};
    cf_err err = {0};
    int rc;
    if (store_session_get(st, id, &s, &err)) {
        rc = srv_reply_cf_err(r, &err);
    } else {
        json_t *j = session_json(&s);
        rc = srv_reply_json(r, status, j);
        json_decref(j);
    }
    store_session_clear(&s);
    return rc;
}

#define WITH_STORE(r, h, st)                                                                       \
    cf_err herr_ = {0};                                                                            \
    chat_handles *h = chat_acquire(api->cs, &herr_);                                               \
    if (!h) return srv_reply_cf_err(r, &herr_), 0;                                                 \
    store *st = chat_handles_store(h)

/* ------------------------------------------------------------ OpenAI API */

static int h_models(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    const cfg_t *cfg = chat_cfg(api->cs);
    json_t *data = json_array();
    for (size_t i = 0; i < cfg->n_models; i++) {
        const cfg_model *m = &cfg->models[i];
        json_t *o = json_pack("{s:s,s:s,s:i,s:s,s:s?,s:b}", "id", m->name, "object", "model",
                              "created", 0, "owned_by", m->backend, "upstream", m->model,
                              "available", m->api_key_env_missing == NULL);
        if (m->context_window)
            json_object_set_new(o, "context_window", json_integer(m->context_window));
        json_array_append_new(data, o);
    }
    for (size_t i = 0; i < cfg->n_ab; i++)
        json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s}", "id", cfg->ab[i].name, "object",
                                              "model", "created", 0, "owned_by", "ab"));
    json_t *o = json_pack("{s:s,s:o,s:s?}", "object", "list", "data", data, "default",
                          chat_default_model(api->cs));
    int rc = srv_reply_json(r, 200, o);
    json_decref(o);
    return rc;
}

/* OpenAI message content: a string, or an array of parts of which the text
 * parts are joined. Returns a malloc'd string or NULL when neither. */
static char *content_text(const json_t *c) {
    if (json_is_string(c)) return strdup(json_string_value(c));
    if (!json_is_array(c)) return NULL;
    sb_t s = {0};
    size_t i;
    json_t *p;
    json_array_foreach(c, i, p) {
        const char *type = json_string_value(json_object_get(p, "type"));
        const char *text = json_string_value(json_object_get(p, "text"));
        if (!type || strcmp(type, "text") || !text) {
            sb_free(&s);
            return NULL;
        }
        sb_append(&s, text);
    }
    return sb_take(&s);
}

static int h_chat_completions(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    json_t *b = srv_req_json(r);
    if (!b) return 0;
    int rc = 0;
    job *j = job_new(api, r->owner);
    json_t *v = json_object_get(b, "model");
    if (v && !json_is_string(v)) {
        rc = srv_reply_error(r, 400, "invalid_request_error", "invalid_type", "model",
                             "model must be a string");
        goto bad;
    }
    const char *model = v ? json_string_value(v) : chat_default_model(api->cs);
    if (!model) {
        rc = srv_reply_error(r, 400, "invalid_request_error", "missing_model", "model",
                             "no model given and none configured");
        goto bad;
    }
    if (!model_known(api, model)) {
        rc = srv_reply_error(r, 404, "invalid_request_error", "model_not_found", "model",
                             "The model `%s` does not exist or is not configured", model);
        goto bad;
    }
    j->model = strdup(model);
    j->req.model = j->model;
    json_t *msgs = json_object_get(b, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        rc = srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "messages",
                             "messages must be a non-empty array");
        goto bad;
    }
    j->msgs = calloc(json_array_size(msgs), sizeof *j->msgs);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        char *text = content_text(json_object_get(m, "content"));
        if (!role || (strcmp(role, "system") && strcmp(role, "developer") && strcmp(role, "user") &&
                      strcmp(role, "assistant"))) {
            free(text);
            rc = srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "messages",
                                 "messages[%zu].role must be system, developer, user or assistant",
                                 i);
            goto bad;
        }
        if (!text) {
            rc = srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "messages",
                                 "messages[%zu].content must be a string or an array of text parts",
                                 i);
            goto bad;
        }
        j->msgs[j->n_msgs].role = strdup(!strcmp(role, "developer") ? "system" : role);
        j->msgs[j->n_msgs].content = text;
        j->n_msgs++;
    }
    if (strcmp(j->msgs[j->n_msgs - 1].role, "user")) {
        rc = srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "messages",
                             "the last message must have role user");
        goto bad;
    }
    j->req.messages = j->msgs;
    j->req.n_messages = j->n_msgs;
    if ((v = json_object_get(b, "n")) && !json_is_null(v) &&
        (!json_is_integer(v) || json_integer_value(v) != 1)) {
        rc = srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "n",
                             "only n=1 is supported");
        goto bad;
    }
    if (read_params(r, b, j)) goto bad_sent;
    json_t *stream = json_object_get(b, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        rc = srv_reply_error(r, 400, "invalid_request_error", "invalid_type", "stream",
                             "stream must be a boolean");
        goto bad;
    }
    bool include_usage =
        json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage"));
    char sid_key[32] = "";
    if ((v = json_object_get(b, "session_id")) && !json_is_null(v)) {
        char ref[64];
        if (!json_is_integer(v) && !json_is_string(v)) {
            rc = srv_reply_error(r, 400, "invalid_request_error", "invalid_type", "session_id",
                                 "session_id must be an integer or a uuid string");
            goto bad;
        }
        json_session_ref(v, ref);
        chat_handles *h = chat_acquire(api->cs, NULL);
        int64_t sid = h ? session_of(r, chat_handles_store(h), ref, r->owner) : 0;
        chat_release(api->cs, h);
        if (!sid) {
            if (!h)
                rc = srv_reply_error(r, 503, "server_error", "storage", NULL,
                                     "the database is unavailable");
            goto bad_sent;
        }
        j->req.session_id = sid;
        snprintf(sid_key, sizeof sid_key, "%lld", (long long)sid);
    }
    cf_err err = {0};
    gen *g = job_start(api, j, sid_key[0] ? sid_key : NULL, &err);
    j = NULL;
    if (!g) {
        rc = srv_reply_cf_err(r, &err);
        goto bad;
    }
    if (json_is_true(stream))
        srv_openai_stream(r, g, model, include_usage);
    else
        srv_openai_reply(r, g, model);
    gen_unref(g);
    json_decref(b);
    return 0;
bad:
bad_sent:
    if (j) job_free(j);
    json_decref(b);
    return rc;
}

/* ------------------------------------------------------------ sessions */

static int h_sessions_list(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    char buf[32];
    store_list_opts o = {.limit = 50, .owner = r->owner};
    if (srv_req_query(r, "limit", buf, sizeof buf) > 0) o.limit = atoi(buf);
    if (srv_req_query(r, "offset", buf, sizeof buf) > 0) o.offset = atoi(buf);
    if (srv_req_query(r, "archived", buf, sizeof buf) > 0)
        o.include_archived = !strcmp(buf, "1") || !strcmp(buf, "true");
    if (o.limit < 1 || o.limit > 1000 || o.offset < 0)
        return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "limit",
                               "limit must be 1..1000 and offset >= 0");
    WITH_STORE(r, h, st);
    store_session *ss = NULL;
    size_t n = 0;
    cf_err err = {0};
    int rc;
    if (store_session_list(st, &o, &ss, &n, &err)) {
        rc = srv_reply_cf_err(r, &err);
    } else {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, session_json(&ss[i]));
        json_t *out = json_pack("{s:o}", "sessions", a);
        rc = srv_reply_json(r, 200, out);
        json_decref(out);
    }
    store_sessions_free(ss, n);
    chat_release(api->cs, h);
    return rc;
}

/* Checks a session body: an object whose title, model and system_prompt
 * are strings (or null), archived a boolean, and model a configured one.
 * Returns 0, or -1 after answering 400/404. */
static int check_session_body(srv_req *r, srv_api *api, const json_t *b) {
    if (!json_is_object(b))
        return srv_reply_error(r, 400, "invalid_request_error", "invalid_type", NULL,
                               "expected a JSON object"),
               -1;
    static const char *fields[] = {"title", "model", "system_prompt"};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(b, fields[i]);
        if (v && !json_is_string(v) && !json_is_null(v))
            return srv_reply_error(r, 400, "invalid_request_error", "invalid_type", fields[i],
                                   "%s must be a string", fields[i]),
                   -1;
    }
    json_t *arch = json_object_get(b, "archived");
    if (arch && !json_is_boolean(arch))
        return srv_reply_error(r, 400, "invalid_request_error", "invalid_type", "archived",
                               "archived must be a boolean"),
               -1;
    const char *model = json_string_value(json_object_get(b, "model"));
    if (model && !model_known(api, model))
        return srv_reply_error(r, 404, "invalid_request_error", "model_not_found", "model",
                               "model %s is not configured", model),
               -1;
    return 0;
}

static int h_session_create(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    json_t *b = r->body_len ? srv_req_json(r) : json_object();
    if (!b) return 0;
    if (check_session_body(r, api, b)) {
        json_decref(b);
        return 0;
    }
    const char *model = json_string_value(json_object_get(b, "model"));
    WITH_STORE(r, h, st);
    store_session in = {.title = (char *)json_string_value(json_object_get(b, "title")),
                        .model = (char *)model,
                        .system_prompt =
                            (char *)json_string_value(json_object_get(b, "system_prompt")),
                        .owner = (char *)r->owner};
    int64_t id;
    cf_err err = {0};
    int rc = store_session_create(st, &in, &id, &err) ? srv_reply_cf_err(r, &err)
                                                      : reply_session(r, st, id, 201);
    chat_release(api->cs, h);
    json_decref(b);
    return rc;
}

static int h_session_get(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    WITH_STORE(r, h, st);
    int64_t id = session_of(r, st, srv_req_param(r, "id"), r->owner);
    int rc = 0;
    if (id) {
        store_session s = {0};
        store_message *msgs = NULL;
        size_t n = 0;
        cf_err err = {0};
        if (store_session_get(st, id, &s, &err) || store_msg_list(st, id, &msgs, &n, &err)) {
            rc = srv_reply_cf_err(r, &err);
        } else {
            json_t *j = session_json(&s);
            json_t *a = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(a, message_json(&msgs[i]));
            json_object_set_new(j, "messages", a);
            char key[32];
            snprintf(key, sizeof key, "%lld", (long long)id);
            gen *g = gen_for_session(srv_gens(api->srv), key);
            json_object_set_new(j, "generation_id",
                                g && gen_get_state(g) == GEN_RUNNING ? json_string(gen_id(g))
                                                                     : json_null());
            if (g) gen_unref(g);
            rc = srv_reply_json(r, 200, j);
            json_decref(j);
        }
        store_messages_free(msgs, n);
        store_session_clear(&s);
    }
    chat_release(api->cs, h);
    return rc;
}

static int h_session_patch(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    json_t *b = srv_req_json(r);
    if (!b) return 0;
    json_t *arch = json_object_get(b, "archived");
    if (check_session_body(r, api, b)) {
        json_decref(b);
        return 0;
    }
    const char *model = json_string_value(json_object_get(b, "model"));
    WITH_STORE(r, h, st);
    int64_t id = session_of(r, st, srv_req_param(r, "id"), r->owner);
    int rc = 0;
    if (id) {
        cf_err err = {0};
        store_session s = {0};
        int e = store_session_get(st, id, &s, &err);
        json_t *t = json_object_get(b, "title");
        if (!e && json_is_string(t)) e = store_session_rename(st, id, json_string_value(t), &err);
        if (!e && arch) e = store_session_archive(st, id, json_is_true(arch), &err);
        if (!e && (json_object_get(b, "model") || json_object_get(b, "system_prompt"))) {
            store_session in = s;
            if (json_object_get(b, "model")) in.model = (char *)model;
            if (json_object_get(b, "system_prompt"))
                in.system_prompt = (char *)json_string_value(json_object_get(b, "system_prompt"));
            e = store_session_update(st, id, &in, &err);
        }
        store_session_clear(&s);
        rc = e ? srv_reply_cf_err(r, &err) : reply_session(r, st, id, 200);
    }
    chat_release(api->cs, h);
    json_decref(b);
    return rc;
}

static int h_session_delete(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    WITH_STORE(r, h, st);
    int64_t id = session_of(r, st, srv_req_param(r, "id"), r->owner);
    int rc = 0;
    if (id) {
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)id);
        gen *g = gen_for_session(srv_gens(api->srv), key);
        if (g) {
            gen_cancel(g); /* a reply still streaming into it stops */
            gen_unref(g);
        }
        cf_err err = {0};
        if (store_session_delete(st, id, &err))
            rc = srv_reply_cf_err(r, &err);
        else
            rc = srv_reply(r, 204, NULL, NULL, 0, NULL);
    }
    chat_release(api->cs, h);
    return rc;
}

static int h_session_export(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    char fmt[16] = "json";
    srv_req_query(r, "format", fmt, sizeof fmt);
    bool md = !strcmp(fmt, "markdown") || !strcmp(fmt, "md");
    if (!md && strcmp(fmt, "json"))
        return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "format",
                               "format must be json or markdown");
    WITH_STORE(r, h, st);
    int64_t id = session_of(r, st, srv_req_param(r, "id"), r->owner);
    int rc = 0;
    if (id) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        cf_err err = {0};
        int e = md ? store_export_markdown(st, id, f, &err) : store_export_json(st, id, f, &err);
        fclose(f);
        if (e) {
            rc = srv_reply_cf_err(r, &err);
        } else {
            char hdr[160];
            snprintf(hdr, sizeof hdr,
                     "Content-Disposition: attachment; filename=\"confab-session-%lld.%s\"\r\n",
                     (long long)id, md ? "md" : "json");
            rc = srv_reply(r, 200, md ? "text/markdown; charset=utf-8" : "application/json", buf,
                           len, hdr);
        }
        free(buf);
    }
    chat_release(api->cs, h);
    return rc;
}

static int h_import(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    if (!r->body_len)
        return srv_reply_error(r, 400, "invalid_request_error", "invalid_json", NULL, "empty body");
    WITH_STORE(r, h, st);
    store_import_result res = {0};
    cf_err err = {0};
    int rc;
    if (store_import_json(st, r->body, r->body_len, &res, &err)) {
        rc =
            srv_reply_error(r, 400, "invalid_request_error", "invalid_import", NULL, "%s", err.msg);
    } else {
        /* Imported sessions belong to whoever imports them. */
        json_t *o = json_pack("{s:i,s:i,s:i,s:i}", "sessions_imported", res.sessions_added,
                              "sessions_existing", res.sessions_existing, "messages_imported",
                              res.messages_added, "messages_existing", res.messages_existing);
        rc = srv_reply_json(r, 200, o);
        json_decref(o);
    }
    chat_release(api->cs, h);
    return rc;
}

static int h_search(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    char q[1024], buf[64];
    if (srv_req_query(r, "q", q, sizeof q) <= 0)
        return srv_reply_error(r, 400, "invalid_request_error", "missing_value", "q",
                               "the query q is required");
    store_search_opts o = {.query = q, .limit = 20, .hl_open = "[", .hl_close = "]"};
    if (srv_req_query(r, "limit", buf, sizeof buf) > 0) o.limit = atoi(buf);
    if (o.limit < 1 || o.limit > 200)
        return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "limit",
                               "limit must be 1..200");
    WITH_STORE(r, h, st);
    int rc = 0;
    if (srv_req_query(r, "session", buf, sizeof buf) > 0) {
        o.session_id = session_of(r, st, buf, r->owner);
        if (!o.session_id) goto out;
    }
    o.limit *= 4; /* other owners' hits are filtered out below */
    store_hit *hits = NULL;
    size_t n = 0;
    cf_err err = {0};
    if (store_search(st, &o, &hits, &n, &err)) {
        rc = srv_reply_error(r, 400, "invalid_request_error", "invalid_query", "q", "%s", err.msg);
        goto out;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n && json_array_size(a) < (size_t)o.limit / 4; i++) {
        store_session s = {0};
        if (store_session_get(st, hits[i].session_id, &s, NULL) == 0 &&
            (!s.owner || !strcmp(s.owner, r->owner))) {
            json_t *hj = json_pack(
                "{s:I,s:s,s:s,s:I,s:s?,s:f}", "session_id", (json_int_t)hits[i].session_id, "title",
                hits[i].session_title ? hits[i].session_title : "", "snippet",
                hits[i].snippet ? hits[i].snippet : "", "created_at", (json_int_t)hits[i].time,
                "role", hits[i].role, "rank", hits[i].rank);
            json_object_set_new(hj, "message_id",
                                hits[i].message_id ? json_integer(hits[i].message_id)
                                                   : json_null());
            json_array_append_new(a, hj);
        }
        store_session_clear(&s);
    }
    store_hits_free(hits, n);
    json_t *out = json_pack("{s:o}", "hits", a);
    rc = srv_reply_json(r, 200, out);
    json_decref(out);
out:
    chat_release(api->cs, h);
    return rc;
}

/* POST /api/sessions/{id}/messages — start a reply; follow it by SSE/WS. */
static int h_session_message(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    json_t *b = srv_req_json(r);
    if (!b) return 0;
    int rc = 0;
    job *j = job_new(api, r->owner);
    json_t *c = json_object_get(b, "content");
    bool regen = json_is_true(json_object_get(b, "regenerate"));
    const char *tmpl = json_string_value(json_object_get(b, "template"));
    if (!regen && !tmpl && (!json_is_string(c) || !json_string_length(c))) {
        rc = srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "content",
                             "content must be a non-empty string (or regenerate: true)");
        goto bad;
    }
    const char *model = json_string_value(json_object_get(b, "model"));
    if (model && !model_known(api, model)) {
        rc = srv_reply_error(r, 404, "invalid_request_error", "model_not_found", "model",
                             "model %s is not configured", model);
        goto bad;
    }
    j->model = dupn(model);
    j->req.model = j->model;
    if (read_params(r, b, j)) goto bad;
    {
        chat_handles *h = chat_acquire(api->cs, NULL);
        int64_t sid =
            h ? session_of(r, chat_handles_store(h), srv_req_param(r, "id"), r->owner) : 0;
        chat_release(api->cs, h);
        if (!sid) goto bad;
        j->req.session_id = sid;
    }
    if (regen)
        j->req.regenerate = true;
    else if (tmpl) {
        /* {"template": name, "values": {k: v}} fills a prompt template. */
        json_t *vals = json_object_get(b, "values");
        size_t nv = json_is_object(vals) ? json_object_size(vals) : 0;
        const char **keys = calloc(nv + 1, sizeof *keys), **vv = calloc(nv + 1, sizeof *vv);
        const char *k;
        json_t *x;
        size_t i = 0;
        json_object_foreach(vals, k, x) {
            keys[i] = k;
            vv[i++] = json_is_string(x) ? json_string_value(x) : "";
        }
        const cfg_prompt *p = cfg_find_prompt(chat_cfg(api->cs), tmpl);
        cf_err err = {0};
        char *text = p ? prompt_fill(p->text, keys, vv, i, &err) : NULL;
        free(keys);
        free(vv);
        if (!text) {
            rc = p ? srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "values",
                                     "%s", err.msg)
                   : srv_reply_error(r, 404, "invalid_request_error", "template_not_found",
                                     "template", "no prompt template named %s", tmpl);
            goto bad;
        }
        j->content = text;
        j->req.content = j->content;
    } else {
        j->content = strdup(json_string_value(c));
        j->req.content = j->content;
    }
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)j->req.session_id);
    cf_err err = {0};
    gen *g = job_start(api, j, key, &err);
    j = NULL;
    if (!g) {
        rc = srv_reply_cf_err(r, &err);
        goto bad;
    }
    json_t *o = json_pack("{s:s,s:s}", "generation_id", gen_id(g), "session_id", key);
    rc = srv_reply_json(r, 202, o);
    json_decref(o);
    gen_unref(g);
bad:
    if (j) job_free(j);
    json_decref(b);
    return rc;
}

/* ------------------------------------------------------------ templates */

static int h_templates(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    const cfg_t *cfg = chat_cfg(api->cs);
    json_t *a = json_array();
    for (size_t i = 0; i < cfg->n_prompts; i++) {
        char **names;
        size_t n;
        prompt_placeholders(cfg->prompts[i].text, &names, &n);
        json_t *ph = json_array();
        for (size_t k = 0; k < n; k++)
            json_array_append_new(ph, json_string(names[k]));
        prompt_names_free(names, n);
        json_array_append_new(a, json_pack("{s:s,s:s,s:o}", "name", cfg->prompts[i].name, "text",
                                           cfg->prompts[i].text, "placeholders", ph));
    }
    json_t *o = json_pack("{s:o}", "templates", a);
    int rc = srv_reply_json(r, 200, o);
    json_decref(o);
    return rc;
}

static int h_template_render(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    const cfg_prompt *p = cfg_find_prompt(chat_cfg(api->cs), srv_req_param(r, "name"));
    if (!p)
        return srv_reply_error(r, 404, "invalid_request_error", "template_not_found", NULL,
                               "no prompt template named %s", srv_req_param(r, "name"));
    json_t *b = srv_req_json(r);
    if (!b) return 0;
    json_t *vals = json_object_get(b, "values");
    if (vals && !json_is_object(vals)) {
        json_decref(b);
        return srv_reply_error(r, 400, "invalid_request_error", "invalid_type", "values",
                               "values must be an object");
    }
    size_t nv = vals ? json_object_size(vals) : 0, i = 0;
    const char **keys = calloc(nv + 1, sizeof *keys), **vv = calloc(nv + 1, sizeof *vv);
    const char *k;
    json_t *x;
    json_object_foreach(vals, k, x) {
        if (!json_is_string(x)) {
            free(keys);
            free(vv);
            json_decref(b);
            return srv_reply_error(r, 400, "invalid_request_error", "invalid_type", "values",
                                   "values.%s must be a string", k);
        }
        keys[i] = k;
        vv[i++] = json_string_value(x);
    }
    cf_err err = {0};
    char *text = prompt_fill(p->text, keys, vv, i, &err);
    free(keys);
    free(vv);
    int rc;
    if (!text) {
        rc = srv_reply_error(r, 400, "invalid_request_error", "invalid_value", "values", "%s",
                             err.msg);
    } else {
        json_t *o = json_pack("{s:s}", "text", text);
        rc = srv_reply_json(r, 200, o);
        json_decref(o);
    }
    free(text);
    json_decref(b);
    return rc;
}

/* ------------------------------------------------------------ stats */

static json_t *usage_rows(store_usage_row *rows, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:f}", "key", rows[i].key,
                                           "replies", (json_int_t)rows[i].replies, "prompt_tokens",
                                           (json_int_t)rows[i].prompt_tokens, "completion_tokens",
                                           (json_int_t)rows[i].completion_tokens, "cached",
                                           (json_int_t)rows[i].cached, "errors",
                                           (json_int_t)rows[i].errors, "cost", rows[i].cost));
    return a;
}

static int h_stats(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    const cfg_t *cfg = chat_cfg(api->cs);
    WITH_STORE(r, h, st);
    json_t *o = json_object();
    static const struct {
        const char *name;
        store_usage_by by;
    } groups[] = {{"total", STORE_USAGE_TOTAL},
                  {"by_model", STORE_USAGE_BY_MODEL},
                  {"by_day", STORE_USAGE_BY_DAY},
                  {"by_variant", STORE_USAGE_BY_VARIANT}};
    int rc = 0;
    for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
        store_usage_row *rows = NULL;
        size_t n = 0;
        cf_err err = {0};
        if (store_usage(st, groups[g].by, 0, r->owner, &rows, &n, &err)) {
            rc = srv_reply_cf_err(r, &err);
            json_decref(o);
            chat_release(api->cs, h);
            return rc;
        }
        json_t *a = usage_rows(rows, n);
        if (groups[g].by == STORE_USAGE_TOTAL) {
            json_object_set(o, "tokens", n ? json_array_get(a, 0) : json_null());
            json_decref(a);
        } else {
            json_object_set_new(o, groups[g].name, a);
        }
        store_usage_free(rows, n);
    }
    cache *ca = chat_handles_cache(h);
    cache_stats cst = {0};
    if (ca && cache_get_stats(ca, &cst, NULL) == 0)
        json_object_set_new(o, "cache",
                            json_pack("{s:b,s:I,s:I,s:I,s:I}", "enabled", 1, "hits",
                                      (json_int_t)cst.hits, "misses", (json_int_t)cst.misses,
                                      "entries", (json_int_t)cst.entries, "evictions",
                                      (json_int_t)cst.evictions));
    else
        json_object_set_new(o, "cache", json_pack("{s:b}", "enabled", 0));
    store_pair_stats *ps = NULL;
    size_t np = 0;
    json_t *ab = json_array();
    if (store_vote_stats(st, &ps, &np, NULL) == 0)
        for (size_t i = 0; i < np; i++)
            json_array_append_new(
                ab, json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:f}", "model_a", ps[i].model_a, "model_b",
                              ps[i].model_b, "votes", (json_int_t)ps[i].total, "wins_a",
                              (json_int_t)ps[i].wins_a, "wins_b", (json_int_t)ps[i].wins_b, "ties",
                              (json_int_t)ps[i].ties, "win_rate_a", ps[i].rate_a));
    store_pair_stats_free(ps, np);
    json_object_set_new(o, "ab", ab);
    json_object_set_new(o, "budget",
                        json_pack("{s:I,s:f,s:s}", "max_tokens_per_conversation",
                                  (json_int_t)cfg->budget.max_tokens_per_conversation, "warn_ratio",
                                  cfg->budget.warn_ratio, "on_exceed", cfg->budget.on_exceed));
    rc = srv_reply_json(r, 200, o);
    json_decref(o);
    chat_release(api->cs, h);
    return rc;
}

/* ------------------------------------------------------------ compare */

static int h_compare(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    json_t *b = srv_req_json(r);
    if (!b) return 0;
    json_t *models = json_object_get(b, "models");
    const char *content = json_string_value(json_object_get(b, "content"));
    int rc = 0;
    if (!json_is_array(models) || json_array_size(models) != 2 ||
        !json_is_string(json_array_get(models, 0)) || !json_is_string(json_array_get(models, 1)) ||
        !content || !*content) {
        rc = srv_reply_error(
            r, 400, "invalid_request_error", "invalid_value", NULL,
            "compare needs content (a non-empty string) and models (two model names)");
        json_decref(b);
        return rc;
    }
    for (int i = 0; i < 2; i++) {
        const char *m = json_string_value(json_array_get(models, (size_t)i));
        if (!model_known(api, m)) {
            json_decref(b);
            return srv_reply_error(r, 404, "invalid_request_error", "model_not_found", "models",
                                   "model %s is not configured", m);
        }
    }
    chat_handles *h = chat_acquire(api->cs, NULL);
    if (!h) {
        json_decref(b);
        return srv_reply_error(r, 503, "server_error", "storage", NULL,
                               "the database is unavailable");
    }
    store *st = chat_handles_store(h);
    int64_t sid = 0;
    json_t *jsid = json_object_get(b, "session_id");
    cf_err err = {0};
    if (jsid && !json_is_null(jsid)) {
        char ref[64];
        sid = session_of(r, st, json_session_ref(jsid, ref), r->owner);
        if (!sid) {
            chat_release(api->cs, h);
            json_decref(b);
            return 0;
        }
    } else {
        store_session in = {.owner = (char *)r->owner};
        if (store_session_create(st, &in, &sid, &err)) {
            chat_release(api->cs, h);
            json_decref(b);
            return srv_reply_cf_err(r, &err);
        }
    }
    /* The question is stored once; both answers become its alternatives. */
    store_message *all = NULL;
    size_t na = 0;
    store_msg_list(st, sid, &all, &na, NULL);
    store_message um = {.session_id = sid,
                        .parent_id = na ? all[na - 1].id : 0,
                        .role = "user",
                        .content = (char *)content};
    store_messages_free(all, na);
    int64_t uid;
    int e = store_msg_append(st, &um, &uid, &err);
    chat_release(api->cs, h);
    if (e) {
        json_decref(b);
        return srv_reply_cf_err(r, &err);
    }
    json_t *gens = json_array();
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)sid);
    for (int i = 0; i < 2; i++) {
        job *j = job_new(api, r->owner);
        j->model = strdup(json_string_value(json_array_get(models, (size_t)i)));
        j->req.model = j->model;
        j->req.session_id = sid;
        j->req.regenerate = true;
        if (read_params(r, b, j)) {
            job_free(j);
            json_decref(gens);
            json_decref(b);
            return 0;
        }
        gen *g = job_start(api, j, key, &err);
        if (!g) {
            json_decref(gens);
            json_decref(b);
            return srv_reply_cf_err(r, &err);
        }
        json_array_append_new(gens, json_string(gen_id(g)));
        gen_unref(g);
    }
    json_t *o = json_pack("{s:o,s:I,s:I}", "generations", gens, "session_id", (json_int_t)sid,
                          "message_id", (json_int_t)uid);
    rc = srv_reply_json(r, 202, o);
    json_decref(o);
    json_decref(b);
    return rc;
}

static int h_vote(srv_req *r, void *ctx) {
    srv_api *api = ctx;
    json_t *b = srv_req_json(r);
    if (!b) return 0;
    const char *winner = json_string_value(json_object_get(b, "winner"));
    const char *ma = json_string_value(json_object_get(b, "model_a")),
               *mb = json_string_value(json_object_get(b, "model_b"));
    json_t *a = json_object_get(b, "message_a"), *bb = json_object_get(b, "message_b");
    if (!winner || (strcmp(winner, "a") && strcmp(winner, "b") && strcmp(winner, "tie")) || !ma ||
        !mb || !json_is_integer(a) || !json_is_integer(bb)) {
        json_decref(b);
        return srv_reply_error(r, 400, "invalid_request_error", "invalid_value", NULL,
                               "a vote needs session_id, message_a, message_b (ids), model_a, "
                               "model_b and winner (a, b or tie)");
    }
    WITH_STORE(r, h, st);
    char ref[64];
    int64_t sid =
        session_of(r, st, json_session_ref(json_object_get(b, "session_id"), ref), r->owner);
    int rc = 0;
    if (sid) {
        store_vote v = {.session_id = sid,
                        .message_a = json_integer_value(a),
                        .message_b = json_integer_value(bb),
                        .model_a = ma,
                        .model_b = mb,
                        .winner = winner};
        int64_t id;
        cf_err err = {0};
        if (store_vote_add(st, &v, &id, &err)) {
            rc = srv_reply_cf_err(r, &err);
        } else {
            json_t *o = json_pack("{s:I}", "id", (json_int_t)id);
            rc = srv_reply_json(r, 201, o);
            json_decref(o);
        }
    }
    chat_release(api->cs, h);
    json_decref(b);
    return rc;
}

/* ------------------------------------------------------------ WebSocket hook */

static gen *ws_hook(void *ctx, const srv_chat_request *rq, cf_err *err) {
    srv_api *api = ctx;
    job *j = job_new(api, rq->owner);
    if (rq->model && !model_known(api, rq->model)) {
        job_free(j);
        cf_seterr(err, CF_ENOTFOUND, "model %s is not configured", rq->model);
        return NULL;
    }
    j->model = dupn(rq->model);
    j->req.model = j->model;
    if (rq->params) {
        json_t *p = (json_t *)rq->params;
        json_t *t = json_object_get(p, "temperature"), *tp = json_object_get(p, "top_p"),
               *g = json_object_get(p, "granularity");
        if (json_is_number(t))
            j->req.has_temperature = true, j->req.temperature = json_number_value(t);
        if (json_is_number(tp)) j->req.has_top_p = true, j->req.top_p = json_number_value(tp);
        chunk_mode m;
        if (json_is_string(g) && chunk_mode_parse(json_string_value(g), &m) == 0)
            j->req.granularity = m;
        json_t *mt = json_object_get(p, "max_tokens");
        if (json_is_integer(mt) && json_integer_value(mt) > 0)
            j->req.max_tokens = (int)json_integer_value(mt);
    }
    chat_handles *h = chat_acquire(api->cs, err);
    if (!h) {
        job_free(j);
        return NULL;
    }
    store *st = chat_handles_store(h);
    int64_t sid = 0;
    if (rq->session_id) {
        store_session s = {0};
        if (store_session_find(st, rq->session_id, &sid, NULL) ||
            store_session_get(st, sid, &s, NULL) || (s.owner && strcmp(s.owner, j->owner))) {
            store_session_clear(&s);
            chat_release(api->cs, h);
            job_free(j);
            cf_seterr(err, CF_ENOTFOUND, "session %s not found", rq->session_id);
            return NULL;
        }
        store_session_clear(&s);
    } else {
        store_session in = {.owner = j->owner, .model = j->model};
        if (store_session_create(st, &in, &sid, err)) {
            chat_release(api->cs, h);
            job_free(j);
            return NULL;
        }
    }
    chat_release(api->cs, h);
    j->req.session_id = sid;
    if (rq->regenerate)
        j->req.regenerate = true;
    else {
        j->content = strdup(rq->content ? rq->content : "");
        j->req.content = j->content;
    }
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)sid);
    return job_start(api, j, key, err);
}

/* ------------------------------------------------------------ setup */

srv_api *srv_api_new(srv_t *s, chat_service *cs, cf_err *err) {
    srv_api *a = calloc(1, sizeof *a);
    if (!a) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    a->srv = s;
    a->cs = cs;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->idle, NULL);
    struct {
        const char *method, *path;
        srv_handler h;
    } routes[] = {
        {"GET", "/v1/models", h_models},
        {"POST", "/v1/chat/completions", h_chat_completions},
        {"GET", "/api/models", h_models},
        {"GET", "/api/sessions", h_sessions_list},
        {"POST", "/api/sessions", h_session_create},
        {"GET", "/api/sessions/{id}", h_session_get},
        {"PATCH", "/api/sessions/{id}", h_session_patch},
        {"DELETE", "/api/sessions/{id}", h_session_delete},
        {"GET", "/api/sessions/{id}/export", h_session_export},
        {"POST", "/api/sessions/{id}/messages", h_session_message},
        {"POST", "/api/import", h_import},
        {"GET", "/api/search", h_search},
        {"GET", "/api/templates", h_templates},
        {"POST", "/api/templates/{name}/render", h_template_render},
        {"GET", "/api/stats", h_stats},
        {"POST", "/api/compare", h_compare},
        {"POST", "/api/votes", h_vote},
    };
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        if (srv_route_add(s, routes[i].method, routes[i].path, routes[i].h, a)) {
            cf_seterr(err, CF_EINVAL, "cannot register %s %s", routes[i].method, routes[i].path);
            srv_api_free(a);
            return NULL;
        }
    }
    srv_set_chat_hook(s, ws_hook, a);
    return a;
}

void srv_api_free(srv_api *a) {
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    while (a->running > 0)
        pthread_cond_wait(&a->idle, &a->mu);
    pthread_mutex_unlock(&a->mu);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->idle);
    free(a);
}
