/*
 * store_export — sessions out to JSON and Markdown, and JSON back in.
 *
 * The JSON document is versioned and complete:
 *   {"format": "confab-export", "version": 1, "exported_at": "<ISO>",
 *    "sessions": [{uuid, title, created_at, updated_at, system_prompt, model,
 *                  params {}, archived, owner,
 *                  messages: [{uuid, parent, role, content, created_at,
 *                              status, model, provider, prompt_tokens,
 *                              completion_tokens, cost, latency_ms,
 *                              finish_reason, variant, cached, error}],
 *                  votes: [{uuid, message_a, message_b, model_a, model_b,
 *                           winner, created_at}]}]}
 * Times are ISO-8601 UTC with milliseconds; references between records
 * (parent, message_a/b) are uuids, never row ids, so a file can move between
 * databases. Unknown values are null. Reals are written with 15 significant
 * digits when that reads back identical, else 17, so every cost comes back
 * bit-exact and a temperature of 0.7 still reads "0.7". Export streams one session at a
 * time: memory stays bounded by the largest session.
 *
 * Import is two passes. The first validates the whole document -- types,
 * required fields, roles, statuses, uuid syntax, duplicate uuids, parent and
 * vote references -- and stops at the first problem, naming its place as a
 * path ("sessions[2].messages[5].role"); JSON syntax errors carry jansson's
 * line and column. Only a valid document reaches the second pass, which
 * writes everything in one transaction (an error there rolls everything
 * back). Records whose uuid is already in the database are skipped, so a
 * file imported twice adds nothing the second time; a message uuid that
 * exists in a different session is a conflict and an error.
 */
#include "base/clock.h"
#include "base/sb.h"
#include "store/store_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ export */

static json_t *jstr_or_null(const char *s) { return s ? json_string(s) : json_null(); }
static json_t *jint_or_null(int64_t v) { return v ? json_integer(v) : json_null(); }
static json_t *jtime(int64_t ms) {
    char b[32];
    clock_iso8601(ms, b);
    return json_string(b);
}

static const char *uuid_of(const store_message *m, size_t n, int64_t id) {
    for (size_t i = 0; i < n; i++)
        if (m[i].id == id) return m[i].uuid;
    return NULL;
}

static int votes_json(store *st, int64_t sid, const store_message *msgs, size_t nm, json_t *arr,
                      cf_err *err) {
    static const char *q =
        "SELECT uuid, message_a, message_b, model_a, model_b, winner, created_at FROM votes "
        "WHERE session_id = ?1 ORDER BY id";
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, sid);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *v = json_object();
        json_object_set_new(v, "uuid", json_string((const char *)sqlite3_column_text(s, 0)));
        json_object_set_new(v, "message_a",
                            jstr_or_null(uuid_of(msgs, nm, sqlite3_column_int64(s, 1))));
        json_object_set_new(v, "message_b",
                            jstr_or_null(uuid_of(msgs, nm, sqlite3_column_int64(s, 2))));
        json_object_set_new(v, "model_a", json_string((const char *)sqlite3_column_text(s, 3)));
        json_object_set_new(v, "model_b", json_string((const char *)sqlite3_column_text(s, 4)));
        json_object_set_new(v, "winner", json_string((const char *)sqlite3_column_text(s, 5)));
        json_object_set_new(v, "created_at", jtime(sqlite3_column_int64(s, 6)));
        json_array_append_new(arr, v);
    }
    int r = rc == SQLITE_DONE ? 0 : store__sqlerr(st, err, "reading votes");
    sqlite3_reset(s);
    return r;
}

/* One session as a JSON object (caller decrefs), NULL on error. */
static json_t *session_json(store *st, int64_t id, cf_err *err) {
    store_session se;
    if (store_session_get(st, id, &se, err) != 0) return NULL;
    store_message *m = NULL;
    size_t nm = 0;
    if (store_msg_list(st, id, &m, &nm, err) != 0) {
        store_session_clear(&se);
        return NULL;
    }
    json_t *o = json_object();
    json_object_set_new(o, "uuid", json_string(se.uuid));
    json_object_set_new(o, "title", json_string(se.title));
    json_object_set_new(o, "created_at", jtime(se.created_at));
    json_object_set_new(o, "updated_at", jtime(se.updated_at));
    json_object_set_new(o, "system_prompt", jstr_or_null(se.system_prompt));
    json_object_set_new(o, "model", jstr_or_null(se.model));
    json_t *params = json_loads(se.params ? se.params : "{}", 0, NULL);
    json_object_set_new(o, "params", params ? params : json_object());
    json_object_set_new(o, "archived", json_boolean(se.archived));
    json_object_set_new(o, "owner", jstr_or_null(se.owner));
    json_t *ma = json_array();
    for (size_t i = 0; i < nm; i++) {
        json_t *j = json_object();
        json_object_set_new(j, "uuid", json_string(m[i].uuid));
        json_object_set_new(j, "parent",
                            jstr_or_null(m[i].parent_id ? uuid_of(m, nm, m[i].parent_id) : NULL));
        json_object_set_new(j, "role", json_string(m[i].role));
        json_object_set_new(j, "content", json_string(m[i].content));
        json_object_set_new(j, "created_at", jtime(m[i].created_at));
        json_object_set_new(j, "status", json_string(store_status_name(m[i].status)));
        json_object_set_new(j, "model", jstr_or_null(m[i].model));
        json_object_set_new(j, "provider", jstr_or_null(m[i].provider));
        json_object_set_new(j, "prompt_tokens", jint_or_null(m[i].prompt_tokens));
        json_object_set_new(j, "completion_tokens", jint_or_null(m[i].completion_tokens));
        json_object_set_new(j, "cost", m[i].cost > 0 ? json_real(m[i].cost) : json_null());
        json_object_set_new(j, "latency_ms", jint_or_null(m[i].latency_ms));
        json_object_set_new(j, "finish_reason", jstr_or_null(m[i].finish_reason));
        json_object_set_new(j, "variant", jstr_or_null(m[i].variant));
        json_object_set_new(j, "cached", json_boolean(m[i].cached));
        json_object_set_new(j, "error", jstr_or_null(m[i].error));
        json_array_append_new(ma, j);
    }
    json_object_set_new(o, "messages", ma);
    json_t *va = json_array();
    int r = votes_json(st, id, m, nm, va, err);
    json_object_set_new(o, "votes", va);
    store_messages_free(m, nm);
    store_session_clear(&se);
    if (r != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Ids of the sessions to export: one, or all (by id). */
static int export_ids(store *st, int64_t session_id, int64_t **ids, size_t *n, cf_err *err) {
    static const char *q = "SELECT id FROM sessions ORDER BY id";
    *ids = NULL;
    *n = 0;
    if (session_id) {
        store_session se;
        if (store_session_get(st, session_id, &se, err) != 0) return err ? err->code : CF_ENOTFOUND;
        store_session_clear(&se);
        *ids = malloc(sizeof **ids);
        if (!*ids) abort();
        (*ids)[0] = session_id;
        *n = 1;
        return 0;
    }
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            *ids = realloc(*ids, cap * sizeof **ids);
            if (!*ids) abort();
        }
        (*ids)[(*n)++] = sqlite3_column_int64(s, 0);
    }
    int r = rc == SQLITE_DONE ? 0 : store__sqlerr(st, err, "listing sessions");
    sqlite3_reset(s);
    return r;
}

/* Writes V to F indented by DEPTH levels, each real with 15 significant
 * digits when that reads back as the same double (0.7 stays "0.7"), else 17
 * (exact for every double). jansson's precision is per dump call, so the
 * containers are walked here and only scalars go through json_dumps.
 * Returns 0, or -1 when writing failed. */
static int emit(FILE *f, json_t *v, int depth) {
    if (json_is_object(v) || json_is_array(v)) {
        bool obj = json_is_object(v);
        size_t n = obj ? json_object_size(v) : json_array_size(v);
        if (n == 0) return fputs(obj ? "{}" : "[]", f) == EOF ? -1 : 0;
        fputc(obj ? '{' : '[', f);
        size_t i = 0;
        const char *key;
        json_t *x;
        if (obj) {
            json_object_foreach(v, key, x) {
                fprintf(f, "%s\n%*s", i++ ? "," : "", 2 * (depth + 1), "");
                json_t *k = json_string(key);
                char *kt = json_dumps(k, JSON_ENCODE_ANY);
                fputs(kt ? kt : "\"\"", f);
                free(kt);
                json_decref(k);
                fputs(": ", f);
                if (emit(f, x, depth + 1)) return -1;
            }
        } else {
            json_array_foreach(v, i, x) {
                fprintf(f, "%s\n%*s", i ? "," : "", 2 * (depth + 1), "");
                if (emit(f, x, depth + 1)) return -1;
            }
        }
        fprintf(f, "\n%*s%c", 2 * depth, "", obj ? '}' : ']');
        return ferror(f) ? -1 : 0;
    }
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    if (t && json_is_real(v)) {
        json_t *back = json_loads(t, JSON_DECODE_ANY, NULL);
        bool same = back && json_is_real(back) && json_real_value(back) == json_real_value(v);
        json_decref(back);
        if (!same) {
            free(t);
            t = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        }
    }
    int r = (!t || fputs(t, f) == EOF) ? -1 : 0;
    free(t);
    return r;
}

/* Compact text of V (params stored on import): reals at 15 digits when the
 * whole value reads back identical, else 17. Caller frees. */
static char *dump_compact(json_t *v) {
    char *t = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_t *back = t ? json_loads(t, 0, NULL) : NULL;
    bool same = back && json_equal(back, v);
    json_decref(back);
    if (same) return t;
    free(t);
    return json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
}

static int write_err(cf_err *err) { return cf_seterr(err, CF_EIO, "writing the export failed"); }

int store_export_json(store *st, int64_t session_id, FILE *f, cf_err *err) {
    int64_t *ids;
    size_t n;
    int r = export_ids(st, session_id, &ids, &n, err);
    if (r) return r;
    /* One read transaction, so the export is a consistent snapshot. */
    bool own_tx = sqlite3_get_autocommit(st->db);
    if (own_tx && (r = store_exec(st, "BEGIN", err)) != 0) {
        free(ids);
        return r;
    }
    char now[32];
    clock_iso8601(clock_wall_ms(), now);
    fprintf(f,
            "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"exported_at\": \"%s\",\n  "
            "\"sessions\": [",
            STORE_EXPORT_FORMAT, STORE_EXPORT_VERSION, now);
    for (size_t i = 0; r == 0 && i < n; i++) {
        json_t *o = session_json(st, ids[i], err);
        if (!o) {
            r = err ? err->code : CF_EIO;
            break;
        }
        fputs(i ? ",\n" : "\n", f);
        fputs("    ", f);
        if (emit(f, o, 2) != 0) r = write_err(err);
        json_decref(o);
    }
    if (r == 0) fputs(n ? "\n  ]\n}\n" : "]\n}\n", f);
    if (own_tx) store_exec(st, "COMMIT", NULL);
    free(ids);
    if (r == 0 && (fflush(f) != 0 || ferror(f))) r = write_err(err);
    return r;
}

static void md_time(FILE *f, int64_t ms) {
    char b[32];
    clock_iso8601(ms, b);
    fputs(b, f);
}

int store_export_markdown(store *st, int64_t session_id, FILE *f, cf_err *err) {
    int64_t *ids;
    size_t n;
    int r = export_ids(st, session_id, &ids, &n, err);
    if (r) return r;
    for (size_t i = 0; r == 0 && i < n; i++) {
        store_session se;
        store_message *m = NULL;
        size_t nm = 0;
        if ((r = store_session_get(st, ids[i], &se, err)) != 0) break;
        if ((r = store_msg_list(st, ids[i], &m, &nm, err)) != 0) {
            store_session_clear(&se);
            break;
        }
        if (i) fputs("\n---\n\n", f);
        fprintf(f, "# %s\n\n", se.title[0] ? se.title : "Untitled");
        fprintf(f, "- Session: %s (id %lld)%s\n", se.uuid, (long long)se.id,
                se.archived ? ", archived" : "");
        fputs("- Created: ", f);
        md_time(f, se.created_at);
        fputs(", updated: ", f);
        md_time(f, se.updated_at);
        fputs("\n", f);
        if (se.model) fprintf(f, "- Model: %s\n", se.model);
        if (se.owner) fprintf(f, "- Owner: %s\n", se.owner);
        if (se.system_prompt) fprintf(f, "- System prompt: %s\n", se.system_prompt);
        for (size_t j = 0; j < nm; j++) {
            const store_message *x = &m[j];
            fprintf(f, "\n## %s", x->role);
            if (x->model) fprintf(f, " · %s", x->model);
            if (x->provider) fprintf(f, " (%s)", x->provider);
            fputs(" · ", f);
            md_time(f, x->created_at);
            if (x->status != STORE_COMPLETE) fprintf(f, " · %s", store_status_name(x->status));
            if (x->variant) fprintf(f, " · variant %s", x->variant);
            fputs("\n\n", f);
            fputs(x->content, f);
            fputs("\n", f);
            if (x->error) fprintf(f, "\n> error: %s\n", x->error);
            if (x->prompt_tokens || x->completion_tokens || x->cost > 0 || x->latency_ms) {
                const char *sep = "";
                fputs("\n*", f);
                if (x->prompt_tokens) {
                    fprintf(f, "%lld prompt tokens", (long long)x->prompt_tokens);
                    sep = ", ";
                }
                if (x->completion_tokens) {
                    fprintf(f, "%s%lld completion tokens", sep, (long long)x->completion_tokens);
                    sep = ", ";
                }
                if (x->cost > 0) {
                    fprintf(f, "%s$%.6f", sep, x->cost);
                    sep = ", ";
                }
                if (x->latency_ms) fprintf(f, "%s%lld ms", sep, (long long)x->latency_ms);
                fputs("*\n", f);
            }
        }
        store_messages_free(m, nm);
        store_session_clear(&se);
    }
    free(ids);
    if (r == 0 && (fflush(f) != 0 || ferror(f))) r = write_err(err);
    return r;
}

/* ------------------------------------------------------------ validation */

typedef enum {
    F_STR,
    F_STR_NULL,
    F_TIME,
    F_INT_NULL,
    F_NUM_NULL,
    F_BOOL,
    F_OBJ,
    F_ARR,
    F_UUID,
    F_UUID_NULL
} ftype;
typedef struct {
    const char *key;
    ftype type;
    bool required;
} field;

static const field session_fields[] = {
    {"uuid", F_UUID, true},
    {"title", F_STR, true},
    {"created_at", F_TIME, true},
    {"updated_at", F_TIME, true},
    {"system_prompt", F_STR_NULL, false},
    {"model", F_STR_NULL, false},
    {"params", F_OBJ, false},
    {"archived", F_BOOL, false},
    {"owner", F_STR_NULL, false},
    {"messages", F_ARR, true},
    {"votes", F_ARR, false},
    {NULL, 0, false},
};
static const field message_fields[] = {
    {"uuid", F_UUID, true},
    {"parent", F_UUID_NULL, false},
    {"role", F_STR, true},
    {"content", F_STR, true},
    {"created_at", F_TIME, true},
    {"status", F_STR, false},
    {"model", F_STR_NULL, false},
    {"provider", F_STR_NULL, false},
    {"prompt_tokens", F_INT_NULL, false},
    {"completion_tokens", F_INT_NULL, false},
    {"cost", F_NUM_NULL, false},
    {"latency_ms", F_INT_NULL, false},
    {"finish_reason", F_STR_NULL, false},
    {"variant", F_STR_NULL, false},
    {"cached", F_BOOL, false},
    {"error", F_STR_NULL, false},
    {NULL, 0, false},
};
static const field vote_fields[] = {
    {"uuid", F_UUID, true},
    {"message_a", F_UUID_NULL, false},
    {"message_b", F_UUID_NULL, false},
    {"model_a", F_STR, true},
    {"model_b", F_STR, true},
    {"winner", F_STR, true},
    {"created_at", F_TIME, true},
    {NULL, 0, false},
};

static const char *type_name(ftype t) {
    switch (t) {
    case F_STR: return "a string";
    case F_STR_NULL: return "a string or null";
    case F_TIME: return "a time like \"2026-01-31T12:00:00.000Z\"";
    case F_INT_NULL: return "a non-negative integer or null";
    case F_NUM_NULL: return "a non-negative number or null";
    case F_BOOL: return "true or false";
    case F_OBJ: return "an object";
    case F_ARR: return "an array";
    case F_UUID: return "a uuid";
    case F_UUID_NULL: return "a uuid or null";
    }
    return "?";
}

static bool type_ok(json_t *v, ftype t) {
    int64_t ms;
    switch (t) {
    case F_STR: return json_is_string(v);
    case F_STR_NULL: return json_is_string(v) || json_is_null(v);
    case F_TIME: return json_is_string(v) && store_time_parse(json_string_value(v), &ms) == 0;
    case F_INT_NULL: return json_is_null(v) || (json_is_integer(v) && json_integer_value(v) >= 0);
    case F_NUM_NULL: return json_is_null(v) || (json_is_number(v) && json_number_value(v) >= 0);
    case F_BOOL: return json_is_boolean(v);
    case F_OBJ: return json_is_object(v);
    case F_ARR: return json_is_array(v);
    case F_UUID: return json_is_string(v) && store_uuid_valid(json_string_value(v));
    case F_UUID_NULL:
        return json_is_null(v) || (json_is_string(v) && store_uuid_valid(json_string_value(v)));
    }
    return false;
}

/* Checks O against FIELDS; PATH names O. */
static int check_fields(json_t *o, const field *fields, const char *path, cf_err *err) {
    if (!json_is_object(o)) return cf_seterr(err, CF_EFORMAT, "%s: must be an object", path);
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        bool known = false;
        for (const field *f = fields; f->key; f++)
            if (!strcmp(f->key, key)) known = true;
        if (!known) return cf_seterr(err, CF_EFORMAT, "%s.%s: unknown field", path, key);
    }
    for (const field *f = fields; f->key; f++) {
        v = json_object_get(o, f->key);
        if (!v) {
            if (f->required)
                return cf_seterr(err, CF_EFORMAT, "%s.%s: missing (required)", path, f->key);
            continue;
        }
        if (!type_ok(v, f->type))
            return cf_seterr(err, CF_EFORMAT, "%s.%s: must be %s", path, f->key,
                             type_name(f->type));
    }
    return 0;
}

static const char *jget_str(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A set of uuids seen, for duplicate and reference checks (JSON object as a
 * hash set, value = index of the session holding it). */
static int validate(json_t *root, cf_err *err) {
    if (!json_is_object(root)) return cf_seterr(err, CF_EFORMAT, "document: must be a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "format") && strcmp(key, "version") && strcmp(key, "exported_at") &&
            strcmp(key, "sessions"))
            return cf_seterr(err, CF_EFORMAT, "%s: unknown field", key);
    }
    const char *fmt = jget_str(root, "format");
    if (!fmt || strcmp(fmt, STORE_EXPORT_FORMAT))
        return cf_seterr(err, CF_EFORMAT, "format: must be \"%s\"", STORE_EXPORT_FORMAT);
    json_t *ver = json_object_get(root, "version");
    if (!json_is_integer(ver)) return cf_seterr(err, CF_EFORMAT, "version: must be an integer");
    if (json_integer_value(ver) != STORE_EXPORT_VERSION)
        return cf_seterr(err, CF_EFORMAT,
                         "version: unsupported export version %lld (this confab reads version %d)",
                         (long long)json_integer_value(ver), STORE_EXPORT_VERSION);
    json_t *ea = json_object_get(root, "exported_at");
    if (ea && !type_ok(ea, F_TIME))
        return cf_seterr(err, CF_EFORMAT, "exported_at: must be %s", type_name(F_TIME));
    json_t *sessions = json_object_get(root, "sessions");
    if (!json_is_array(sessions)) return cf_seterr(err, CF_EFORMAT, "sessions: must be an array");
    json_t *seen = json_object(); /* every uuid in the file */
    sb_t path = {0};
    int r = 0;
    size_t i, j;
    json_t *se, *m;
    json_array_foreach(sessions, i, se) {
        sb_clear(&path);
        sb_printf(&path, "sessions[%zu]", i);
        if ((r = check_fields(se, session_fields, path.data, err)) != 0) break;
        const char *su = jget_str(se, "uuid");
        if (json_object_get(seen, su)) {
            r = cf_seterr(err, CF_EFORMAT, "%s.uuid: %s appears twice in the file", path.data, su);
            break;
        }
        json_object_set_new(seen, su, json_integer((json_int_t)i));
        json_t *local = json_object(); /* message uuids of this session so far */
        json_array_foreach(json_object_get(se, "messages"), j, m) {
            sb_clear(&path);
            sb_printf(&path, "sessions[%zu].messages[%zu]", i, j);
            if ((r = check_fields(m, message_fields, path.data, err)) != 0) break;
            const char *mu = jget_str(m, "uuid");
            if (json_object_get(seen, mu)) {
                r = cf_seterr(err, CF_EFORMAT, "%s.uuid: %s appears twice in the file", path.data,
                              mu);
                break;
            }
            const char *role = jget_str(m, "role");
            if (!store_role_valid(role)) {
                r = cf_seterr(err, CF_EFORMAT,
                              "%s.role: '%s' is not system, user, assistant or tool", path.data,
                              role);
                break;
            }
            const char *status = jget_str(m, "status");
            if (status && store_status_parse(status) < 0) {
                r = cf_seterr(err, CF_EFORMAT,
                              "%s.status: '%s' is not streaming, complete, cancelled or error",
                              path.data, status);
                break;
            }
            const char *parent = jget_str(m, "parent");
            if (parent && !json_object_get(local, parent)) {
                r = cf_seterr(err, CF_EFORMAT,
                              "%s.parent: %s is not an earlier message of this session", path.data,
                              parent);
                break;
            }
            json_object_set_new(seen, mu, json_integer((json_int_t)i));
            json_object_set_new(local, mu, json_true());
        }
        if (r == 0) {
            json_t *votes = json_object_get(se, "votes");
            json_array_foreach(votes, j, m) {
                sb_clear(&path);
                sb_printf(&path, "sessions[%zu].votes[%zu]", i, j);
                if ((r = check_fields(m, vote_fields, path.data, err)) != 0) break;
                const char *vu = jget_str(m, "uuid");
                if (json_object_get(seen, vu)) {
                    r = cf_seterr(err, CF_EFORMAT, "%s.uuid: %s appears twice in the file",
                                  path.data, vu);
                    break;
                }
                json_object_set_new(seen, vu, json_integer((json_int_t)i));
                const char *w = jget_str(m, "winner");
                if (strcmp(w, "a") && strcmp(w, "b") && strcmp(w, "tie")) {
                    r = cf_seterr(err, CF_EFORMAT, "%s.winner: '%s' is not a, b or tie", path.data,
                                  w);
                    break;
                }
                const char *refs[2] = {"message_a", "message_b"};
                for (int k = 0; r == 0 && k < 2; k++) {
                    const char *ref = jget_str(m, refs[k]);
                    if (ref && !json_object_get(local, ref))
                        r = cf_seterr(err, CF_EFORMAT, "%s.%s: %s is not a message of this session",
                                      path.data, refs[k], ref);
                }
                if (r) break;
            }
        }
        json_decref(local);
        if (r) break;
    }
    json_decref(seen);
    sb_free(&path);
    return r;
}

/* ------------------------------------------------------------ import */

/* Looks up the id of a uuid in TABLE; 0 when absent. *SID gets its
 * session (for messages and votes). */
static int find_uuid(store *st, int table, const char *uuid, int64_t *id, int64_t *sid,
                     cf_err *err) {
    static const char *qs = "SELECT id, id FROM sessions WHERE uuid = lower(?1)";
    static const char *qm = "SELECT id, session_id FROM messages WHERE uuid = lower(?1)";
    static const char *qv = "SELECT id, session_id FROM votes WHERE uuid = lower(?1)";
    sqlite3_stmt *s = store__stmt(st, table == 0 ? qs : table == 1 ? qm : qv, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    int r = 0;
    *id = 0;
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        if (sid) *sid = sqlite3_column_int64(s, 1);
    } else if (rc != SQLITE_DONE) {
        r = store__sqlerr(st, err, "looking up a uuid");
    }
    sqlite3_reset(s);
    return r;
}

static int64_t jtime_ms(json_t *o, const char *k) {
    int64_t ms = 0;
    store_time_parse(jget_str(o, k), &ms);
    return ms;
}

static int64_t jint(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static const char *lower_uuid(const char *u, char out[37]) {
    for (int i = 0; i < 36; i++)
        out[i] = (char)((u[i] >= 'A' && u[i] <= 'F') ? u[i] + 32 : u[i]);
    out[36] = 0;
    return out;
}

static int import_session(store *st, json_t *se, size_t i, store_import_result *res, cf_err *err) {
    int64_t sid = 0, dummy;
    char u[37];
    int r = find_uuid(st, 0, jget_str(se, "uuid"), &sid, &dummy, err);
    if (r) return r;
    if (sid) {
        res->sessions_existing++;
    } else {
        store_session in = {0};
        lower_uuid(jget_str(se, "uuid"), in.uuid);
        in.title = (char *)jget_str(se, "title");
        in.created_at = jtime_ms(se, "created_at");
        in.updated_at = jtime_ms(se, "updated_at");
        in.system_prompt = (char *)jget_str(se, "system_prompt");
        in.model = (char *)jget_str(se, "model");
        in.owner = (char *)jget_str(se, "owner");
        in.archived = json_is_true(json_object_get(se, "archived"));
        json_t *params = json_object_get(se, "params");
        char *ptext = params ? dump_compact(params) : NULL;
        in.params = ptext;
        r = store_session_create(st, &in, &sid, err);
        free(ptext);
        if (r) return cf_errctx(err, "sessions[%zu]", i);
        res->sessions_added++;
    }
    size_t j;
    json_t *m;
    json_array_foreach(json_object_get(se, "messages"), j, m) {
        int64_t mid = 0, msid = 0;
        if ((r = find_uuid(st, 1, jget_str(m, "uuid"), &mid, &msid, err)) != 0) return r;
        if (mid) {
            if (msid != sid)
                return cf_seterr(err, CF_EFORMAT,
                                 "sessions[%zu].messages[%zu].uuid: message %s already exists in "
                                 "another session",
                                 i, j, jget_str(m, "uuid"));
            res->messages_existing++;
            continue;
        }
        store_message in = {0};
        in.session_id = sid;
        const char *parent = jget_str(m, "parent");
        if (parent && (r = find_uuid(st, 1, parent, &in.parent_id, &msid, err)) != 0) return r;
        in.role = (char *)jget_str(m, "role");
        in.content = (char *)jget_str(m, "content");
        in.created_at = jtime_ms(m, "created_at");
        const char *status = jget_str(m, "status");
        int stt = status ? store_status_parse(status) : STORE_COMPLETE;
        in.status = stt == STORE_STREAMING ? STORE_CANCELLED : (store_status)stt;
        in.model = (char *)jget_str(m, "model");
        in.provider = (char *)jget_str(m, "provider");
        in.prompt_tokens = jint(m, "prompt_tokens");
        in.completion_tokens = jint(m, "completion_tokens");
        json_t *cost = json_object_get(m, "cost");
        in.cost = json_is_number(cost) ? json_number_value(cost) : 0;
        in.latency_ms = jint(m, "latency_ms");
        in.finish_reason = (char *)jget_str(m, "finish_reason");
        in.variant = (char *)jget_str(m, "variant");
        in.cached = json_is_true(json_object_get(m, "cached"));
        in.error = (char *)jget_str(m, "error");
        if ((r = store__msg_insert(st, &in, lower_uuid(jget_str(m, "uuid"), u), NULL, err)) != 0)
            return cf_errctx(err, "sessions[%zu].messages[%zu]", i, j);
        res->messages_added++;
    }
    json_array_foreach(json_object_get(se, "votes"), j, m) {
        int64_t vid = 0, vsid = 0;
        if ((r = find_uuid(st, 2, jget_str(m, "uuid"), &vid, &vsid, err)) != 0) return r;
        if (vid) {
            res->votes_existing++;
            continue;
        }
        static const char *q = "INSERT INTO votes (uuid, session_id, message_a, message_b, "
                               "model_a, model_b, winner, created_at) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
        int64_t ma = 0, mb = 0, x;
        const char *ua = jget_str(m, "message_a"), *ub = jget_str(m, "message_b");
        if (ua && (r = find_uuid(st, 1, ua, &ma, &x, err)) != 0) return r;
        if (ub && (r = find_uuid(st, 1, ub, &mb, &x, err)) != 0) return r;
        sqlite3_stmt *s = store__stmt(st, q, err);
        if (!s) return err ? err->code : CF_EIO;
        sqlite3_bind_text(s, 1, lower_uuid(jget_str(m, "uuid"), u), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 2, sid);
        store__bind_i64_or_null(s, 3, ma);
        store__bind_i64_or_null(s, 4, mb);
        sqlite3_bind_text(s, 5, jget_str(m, "model_a"), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 6, jget_str(m, "model_b"), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 7, jget_str(m, "winner"), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 8, jtime_ms(m, "created_at"));
        if ((r = store__step_done(st, s, err, "importing a vote")) != 0)
            return cf_errctx(err, "sessions[%zu].votes[%zu]", i, j);
        res->votes_added++;
    }
    return 0;
}

int store_import_json(store *st, const char *data, size_t len, store_import_result *r,
                      cf_err *err) {
    store_import_result res = {0};
    if (r) *r = res;
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return cf_seterr(err, CF_EFORMAT, "line %d column %d: %s", je.line, je.column, je.text);
    int rc = validate(root, err);
    bool own_tx = sqlite3_get_autocommit(st->db); /* else the caller's transaction */
    if (rc == 0 && own_tx) rc = store_begin(st, err);
    if (rc == 0) {
        size_t i;
        json_t *se;
        json_array_foreach(json_object_get(root, "sessions"), i, se) {
            if ((rc = import_session(st, se, i, &res, err)) != 0) break;
        }
        if (rc == 0 && own_tx) rc = store_commit(st, err);
        if (rc != 0) {
            if (own_tx) store_rollback(st);
            res = (store_import_result){0};
        }
    }
    json_decref(root);
    if (r) *r = res;
    return rc;
}
