/*
 * store_session — sessions: create, get, find, list, rename, archive, delete,
 * and the automatic title.
 *
 * Listing is newest first by updated_at (then id, so pages are stable when
 * times tie) over the index sessions_recent(archived, updated_at, id), with
 * LIMIT/OFFSET paging; the message count comes from the messages_session
 * index. Deleting a session cascades to its messages and votes through the
 * foreign keys, and the FTS triggers remove their index entries.
 */
#include "base/clock.h"
#include "base/sb.h"
#include "base/utf8.h"
#include "store/store_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void store_session_clear(store_session *s) {
    if (!s) return;
    free(s->title);
    free(s->system_prompt);
    free(s->model);
    free(s->params);
    free(s->owner);
    memset(s, 0, sizeof *s);
}

void store_sessions_free(store_session *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        store_session_clear(&a[i]);
    free(a);
}

#define SESSION_COLS                                                                               \
    "s.id, s.uuid, s.title, s.system_prompt, s.model, s.params, s.owner, s.archived, "             \
    "s.created_at, s.updated_at, (SELECT count(*) FROM messages m WHERE m.session_id = s.id)"

static void read_session(sqlite3_stmt *q, store_session *s) {
    memset(s, 0, sizeof *s);
    s->id = sqlite3_column_int64(q, 0);
    const char *u = (const char *)sqlite3_column_text(q, 1);
    snprintf(s->uuid, sizeof s->uuid, "%s", u ? u : "");
    s->title = store__col_dup(q, 2);
    if (!s->title) s->title = strdup("");
    s->system_prompt = store__col_dup(q, 3);
    s->model = store__col_dup(q, 4);
    s->params = store__col_dup(q, 5);
    s->owner = store__col_dup(q, 6);
    s->archived = sqlite3_column_int(q, 7) != 0;
    s->created_at = sqlite3_column_int64(q, 8);
    s->updated_at = sqlite3_column_int64(q, 9);
    s->message_count = sqlite3_column_int64(q, 10);
}

int store_session_create(store *st, const store_session *in, int64_t *id, cf_err *err) {
    static const char *q = "INSERT INTO sessions (uuid, created_at, updated_at, title, "
                           "system_prompt, model, params, archived, owner) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
    store_session empty = {0};
    if (!in) in = &empty;
    if (!store__utf8_ok(in->title) || !store__utf8_ok(in->system_prompt) ||
        !store__utf8_ok(in->model) || !store__utf8_ok(in->owner))
        return cf_seterr(err, CF_EINVAL, "session text is not valid UTF-8");
    char uuid[37];
    if (in->uuid[0]) {
        if (!store_uuid_valid(in->uuid))
            return cf_seterr(err, CF_EINVAL, "bad session uuid '%s'", in->uuid);
        snprintf(uuid, sizeof uuid, "%s", in->uuid);
    } else {
        store_uuid_new(uuid);
    }
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    int64_t now = clock_wall_ms();
    int64_t created = in->created_at ? in->created_at : now;
    sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, created);
    sqlite3_bind_int64(s, 3, in->updated_at ? in->updated_at : created);
    sqlite3_bind_text(s, 4, in->title ? in->title : "", -1, SQLITE_TRANSIENT);
    store__bind_str(s, 5, in->system_prompt);
    store__bind_str(s, 6, in->model);
    sqlite3_bind_text(s, 7, in->params ? in->params : "{}", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 8, in->archived ? 1 : 0);
    store__bind_str(s, 9, in->owner);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        if ((sqlite3_extended_errcode(st->db)) == SQLITE_CONSTRAINT_CHECK)
            return cf_seterr(err, CF_EINVAL, "session params must be a JSON object");
        return store__sqlerr(st, err, "creating a session");
    }
    if (id) *id = sqlite3_last_insert_rowid(st->db);
    return 0;
}

int store_session_get(store *st, int64_t id, store_session *out, cf_err *err) {
    static const char *q = "SELECT " SESSION_COLS " FROM sessions s WHERE s.id = ?1";
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    int r = 0;
    if (rc == SQLITE_ROW)
        read_session(s, out);
    else if (rc == SQLITE_DONE)
        r = cf_seterr(err, CF_ENOTFOUND, "no session %lld", (long long)id);
    else
        r = store__sqlerr(st, err, "reading a session");
    sqlite3_reset(s);
    return r;
}

int store_session_find(store *st, const char *ref, int64_t *id, cf_err *err) {
    static const char *qid = "SELECT id FROM sessions WHERE id = ?1";
    static const char *quu = "SELECT id FROM sessions WHERE uuid = lower(?1)";
    if (!ref || !*ref) return cf_seterr(err, CF_EINVAL, "empty session reference");
    bool numeric = true;
    for (const char *p = ref; *p; p++)
        if (!isdigit((unsigned char)*p)) numeric = false;
    if (!numeric && !store_uuid_valid(ref))
        return cf_seterr(err, CF_EINVAL, "'%s' is neither a session id nor a uuid", ref);
    sqlite3_stmt *s = store__stmt(st, numeric ? qid : quu, err);
    if (!s) return err ? err->code : CF_EIO;
    if (numeric)
        sqlite3_bind_int64(s, 1, strtoll(ref, NULL, 10));
    else
        sqlite3_bind_text(s, 1, ref, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    int r = 0;
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(s, 0);
    else if (rc == SQLITE_DONE)
        r = cf_seterr(err, CF_ENOTFOUND, "no session %s", ref);
    else
        r = store__sqlerr(st, err, "finding a session");
    sqlite3_reset(s);
    return r;
}

int store_session_list(store *st, const store_list_opts *o, store_session **out, size_t *n,
                       cf_err *err) {
    /* One statement per filter combination, so each can use its index. */
    static const char *q_active = "SELECT " SESSION_COLS " FROM sessions s WHERE s.archived = 0 "
                                  "ORDER BY s.updated_at DESC, s.id DESC LIMIT ?3 OFFSET ?4";
    static const char *q_all =
        "SELECT " SESSION_COLS
        " FROM sessions s ORDER BY s.updated_at DESC, s.id DESC LIMIT ?3 OFFSET ?4";
    static const char *q_owner_active =
        "SELECT " SESSION_COLS " FROM sessions s WHERE s.owner = ?2 AND s.archived = 0 "
        "ORDER BY s.updated_at DESC, s.id DESC LIMIT ?3 OFFSET ?4";
    static const char *q_owner_all = "SELECT " SESSION_COLS " FROM sessions s WHERE s.owner = ?2 "
                                     "ORDER BY s.updated_at DESC, s.id DESC LIMIT ?3 OFFSET ?4";
    store_list_opts def = {0};
    if (!o) o = &def;
    *out = NULL;
    *n = 0;
    if (o->offset < 0) return cf_seterr(err, CF_EINVAL, "negative offset %d", o->offset);
    int limit = o->limit > 0 ? o->limit : 50;
    const char *q = o->owner ? (o->include_archived ? q_owner_all : q_owner_active)
                             : (o->include_archived ? q_all : q_active);
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    if (o->owner) sqlite3_bind_text(s, 2, o->owner, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 3, limit);
    sqlite3_bind_int(s, 4, o->offset);
    store_session *a = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            a = realloc(a, cap * sizeof *a);
            if (!a) abort();
        }
        read_session(s, &a[cnt++]);
    }
    int r = 0;
    if (rc != SQLITE_DONE) {
        r = store__sqlerr(st, err, "listing sessions");
        store_sessions_free(a, cnt);
        a = NULL;
        cnt = 0;
    }
    sqlite3_reset(s);
    *out = a;
    *n = cnt;
    return r;
}

static int update_one(store *st, const char *q, int64_t id, cf_err *err, const char *what) {
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, id);
    return store__step_done(st, s, err, what);
}

int store_session_update(store *st, int64_t id, const store_session *in, cf_err *err) {
    static const char *q =
        "UPDATE sessions SET system_prompt = ?2, model = ?3, params = ?4, owner = ?5, "
        "updated_at = max(updated_at, ?6) WHERE id = ?1";
    if (!in) return cf_seterr(err, CF_EINVAL, "missing session settings");
    if (!store__utf8_ok(in->system_prompt) || !store__utf8_ok(in->model) ||
        !store__utf8_ok(in->owner))
        return cf_seterr(err, CF_EINVAL, "session text is not valid UTF-8");
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, id);
    store__bind_str(s, 2, in->system_prompt);
    store__bind_str(s, 3, in->model);
    sqlite3_bind_text(s, 4, in->params ? in->params : "{}", -1, SQLITE_TRANSIENT);
    store__bind_str(s, 5, in->owner);
    sqlite3_bind_int64(s, 6, clock_wall_ms());
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        if (sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_CHECK)
            return cf_seterr(err, CF_EINVAL, "session params must be a JSON object");
        return store__sqlerr(st, err, "updating a session");
    }
    if (sqlite3_changes(st->db) == 0)
        return cf_seterr(err, CF_ENOTFOUND, "no session %lld", (long long)id);
    return 0;
}

int store_session_rename(store *st, int64_t id, const char *title, cf_err *err) {
    static const char *q =
        "UPDATE sessions SET title = ?2, updated_at = max(updated_at, ?3) WHERE id = ?1";
    if (!title) return cf_seterr(err, CF_EINVAL, "missing title");
    if (!store__utf8_ok(title)) return cf_seterr(err, CF_EINVAL, "title is not valid UTF-8");
    sqlite3_stmt *s = store__stmt(st, q, err);
    if (!s) return err ? err->code : CF_EIO;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, title, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, clock_wall_ms());
    int r = store__step_done(st, s, err, "renaming a session");
    if (r == 0 && sqlite3_changes(st->db) == 0)
        r = cf_seterr(err, CF_ENOTFOUND, "no session %lld", (long long)id);
    return r;
}

int store_session_archive(store *st, int64_t id, bool archived, cf_err *err) {
    static const char *qa = "UPDATE sessions SET archived = 1 WHERE id = ?1";
    static const char *qu = "UPDATE sessions SET archived = 0 WHERE id = ?1";
    int r = update_one(st, archived ? qa : qu, id, err, "archiving a session");
    if (r == 0 && sqlite3_changes(st->db) == 0)
        r = cf_seterr(err, CF_ENOTFOUND, "no session %lld", (long long)id);
    return r;
}

int store_session_delete(store *st, int64_t id, cf_err *err) {
    static const char *q = "DELETE FROM sessions WHERE id = ?1";
    int r = update_one(st, q, id, err, "deleting a session");
    if (r == 0 && sqlite3_changes(st->db) == 0)
        r = cf_seterr(err, CF_ENOTFOUND, "no session %lld", (long long)id);
    return r;
}

/* ------------------------------------------------------------ auto title */

#define TITLE_MAX 60 /* code points */

char *store_auto_title(const char *text) {
    sb_t out = {0};
    sb_append(&out, "");
    if (!text) return sb_take(&out);
    size_t n = strlen(text);
    size_t i = 0;
    /* Skip blank lines and leading space. */
    while (i < n && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r' ||
                     text[i] == '\f' || text[i] == '\v'))
        i++;
    size_t cps = 0, last_space_len = 0, last_space_cps = 0;
    bool pending_space = false, cut = false;
    while (i < n && text[i] != '\n' && text[i] != '\r') {
        unsigned char c = (unsigned char)text[i];
        if (c == ' ' || c == '\t' || c == '\f' || c == '\v') {
            pending_space = true;
            i++;
            continue;
        }
        uint32_t cp;
        int k = utf8_decode(text + i, n - i, &cp);
        if (k == 0) k = 1; /* invalid byte: becomes U+FFFD below */
        if (cp < 0x20 || cp == 0x7f) {
            i += (size_t)k;
            continue; /* control characters never go into titles */
        }
        if (pending_space && out.len) {
            if (cps + 1 > TITLE_MAX) {
                cut = true;
                break;
            }
            last_space_len = out.len;
            last_space_cps = cps;
            sb_putc(&out, ' ');
            cps++;
        }
        pending_space = false;
        if (cps + 1 > TITLE_MAX) {
            cut = true;
            break;
        }
        char enc[4];
        int el = utf8_encode(cp, enc);
        sb_appendn(&out, enc, (size_t)el);
        cps++;
        i += (size_t)k;
    }
    if (cut) {
        /* Cut at the last word boundary unless that loses most of the text. */
        if (last_space_len > 0 && last_space_cps >= TITLE_MAX / 3) {
            sb_truncate(&out, last_space_len);
        } else { /* no good boundary: drop one character to make room for the ellipsis */
            size_t k = out.len;
            while (k > 0 && ((unsigned char)out.data[k - 1] & 0xc0) == 0x80)
                k--;
            if (k > 0) k--;
            sb_truncate(&out, k);
        }
        while (out.len && (out.data[out.len - 1] == ' ' || out.data[out.len - 1] == ',' ||
                           out.data[out.len - 1] == ';' || out.data[out.len - 1] == ':'))
            sb_truncate(&out, out.len - 1);
        sb_append(&out, "\xe2\x80\xa6"); /* … */
    }
    return sb_take(&out);
}
