/*
 * cmd_sessions — `confab sessions list|show|search|export|import|rename|
 * archive|delete`: the conversation store from the command line.
 *
 * Every subcommand takes --db PATH (default: storage.data_dir/storage.db of
 * the config, --config FILE or the usual search order; formerly
 * config supplies the data directory) and --json, which prints one JSON value
 * on stdout for scripts instead of text for people. Options are parsed into
 * one struct, then checked against the subcommand's list of allowed options,
 * so a misplaced flag is a usage error (exit 2), not silently ignored.
 * Commands that only read or change existing data refuse to create a
 * database; `import` creates it (and its directory) when missing.
 */
#include "base/clock.h"
#include "base/sb.h"
#include "app/config.h"
#include "cli/cli.h"
#include "store/store.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


typedef struct {
    const char *db, *owner, *session, *since, *until, *format, *output, *config;
    bool json, all, raw, undo;
    int limit, offset;
    const char *pos[4];
    int npos;
    unsigned seen; /* bit per option given */
} opts;

enum {
    O_DB = 1,
    O_JSON = 2,
    O_ALL = 4,
    O_OWNER = 8,
    O_LIMIT = 16,
    O_OFFSET = 32,
    O_SESSION = 64,
    O_SINCE = 128,
    O_UNTIL = 256,
    O_RAW = 512,
    O_FORMAT = 1024,
    O_OUTPUT = 2048,
    O_UNDO = 4096,
    O_CONFIG = 8192
};

static const struct {
    const char *name;
    unsigned bit;
    bool takes_value;
} option_table[] = {
    {"--db", O_DB, true},           {"--json", O_JSON, false},    {"--all", O_ALL, false},
    {"--owner", O_OWNER, true},     {"--limit", O_LIMIT, true},   {"--offset", O_OFFSET, true},
    {"--session", O_SESSION, true}, {"--since", O_SINCE, true},   {"--until", O_UNTIL, true},
    {"--raw", O_RAW, false},        {"--format", O_FORMAT, true}, {"-o", O_OUTPUT, true},
    {"--output", O_OUTPUT, true},   {"--undo", O_UNDO, false},    {"--config", O_CONFIG, true},
};

static int parse_count(const char *name, const char *v, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < 0 || x > 1000000)
        return cli_usage_error("sessions", "%s needs a whole number from 0 to 1000000, not '%s'",
                               name, v);
    *out = (int)x;
    return 0;
}

static int parse_opts(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1]) {
            size_t k;
            const char *val = NULL;
            const char *eq = strchr(a, '=');
            size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
            for (k = 0; k < sizeof option_table / sizeof option_table[0]; k++)
                if (strlen(option_table[k].name) == nlen && !strncmp(option_table[k].name, a, nlen))
                    break;
            if (k == sizeof option_table / sizeof option_table[0])
                return cli_usage_error("sessions", "unknown option '%s'", a);
            if (option_table[k].takes_value) {
                if (eq)
                    val = eq + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else
                    return cli_usage_error("sessions", "%s needs a value", option_table[k].name);
            } else if (eq) {
                return cli_usage_error("sessions", "%s takes no value", option_table[k].name);
            }
            o->seen |= option_table[k].bit;
            switch (option_table[k].bit) {
            case O_DB: o->db = val; break;
            case O_JSON: o->json = true; break;
            case O_ALL: o->all = true; break;
            case O_OWNER: o->owner = val; break;
            case O_LIMIT:
                if (parse_count("--limit", val, &o->limit)) return 2;
                break;
            case O_OFFSET:
                if (parse_count("--offset", val, &o->offset)) return 2;
                break;
            case O_SESSION: o->session = val; break;
            case O_SINCE: o->since = val; break;
            case O_UNTIL: o->until = val; break;
            case O_RAW: o->raw = true; break;
            case O_FORMAT: o->format = val; break;
            case O_OUTPUT: o->output = val; break;
            case O_UNDO: o->undo = true; break;
            case O_CONFIG: o->config = val; break;
            }
        } else {
            if (o->npos == 4) return cli_usage_error("sessions", "too many arguments ('%s')", a);
            o->pos[o->npos++] = a;
        }
    }
    return 0;
}

static int check_allowed(const char *sub, const opts *o, unsigned allowed, int min_pos,
                         int max_pos) {
    unsigned extra = o->seen & ~(allowed | O_DB | O_JSON | O_CONFIG);
    for (size_t k = 0; extra && k < sizeof option_table / sizeof option_table[0]; k++)
        if (extra & option_table[k].bit)
            return cli_usage_error("sessions", "'sessions %s' does not take %s", sub,
                                   option_table[k].name);
    if (o->npos < min_pos)
        return cli_usage_error("sessions", "'sessions %s' needs more arguments", sub);
    if (o->npos > max_pos)
        return cli_usage_error("sessions", "unexpected argument '%s'", o->pos[max_pos]);
    return 0;
}

/* Opens the store; CREATE only for import. Prints the error. */
static store *open_db(const opts *o, bool create) {
    cf_err err = {0};
    if (create) { /* make the data directory */
        char *dir = strdup(o->db);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = 0;
            for (char *p = dir + 1; *p; p++) {
                if (*p == '/') {
                    *p = 0;
                    mkdir(dir, 0755);
                    *p = '/';
                }
            }
            mkdir(dir, 0755);
        }
        free(dir);
    }
    store *st = store_open(o->db, create ? STORE_OPEN_CREATE : 0, &err);
    if (!st) {
        if (err.code == CF_ENOTFOUND)
            fprintf(stderr, "confab: %s (use --db PATH)\n", err.msg);
        else
            fprintf(stderr, "confab: %s\n", err.msg);
    }
    return st;
}

static int fail(const cf_err *err) {
    fprintf(stderr, "confab: %s\n", err->msg);
    return 1;
}

static void print_json(json_t *j) {
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    fputc('\n', stdout);
    json_decref(j);
}

static json_t *jtime(int64_t ms) {
    char b[32];
    clock_iso8601(ms, b);
    return json_string(b);
}

static json_t *jstr(const char *s) { return s ? json_string(s) : json_null(); }

/* Dates for --since/--until: YYYY-MM-DD or full ISO-8601 UTC. */
static int parse_date(const char *name, const char *v, bool end_of_day, int64_t *ms) {
    if (store_time_parse(v, ms) == 0) return 0;
    char full[40];
    if (strlen(v) == 10) {
        snprintf(full, sizeof full, "%sT00:00:00Z", v);
        if (store_time_parse(full, ms) == 0) {
            if (end_of_day) *ms += 86400000 - 1;
            return 0;
        }
    }
    return cli_usage_error(
        "sessions", "%s needs a date like 2026-01-31 or 2026-01-31T12:00:00Z, not '%s'", name, v);
}

/* ------------------------------------------------------------ subcommands */

static int do_list(const opts *o) {
    store *st = open_db(o, false);
    if (!st) return 1;
    store_list_opts lo = {.limit = o->limit ? o->limit : 50,
                          .offset = o->offset,
                          .include_archived = o->all,
                          .owner = o->owner};
    store_session *a;
    size_t n;
    cf_err err = {0};
    if (store_session_list(st, &lo, &a, &n, &err) != 0) {
        store_close(st);
        return fail(&err);
    }
    if (o->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *j = json_object();
            json_object_set_new(j, "id", json_integer(a[i].id));
            json_object_set_new(j, "uuid", json_string(a[i].uuid));
            json_object_set_new(j, "title", json_string(a[i].title));
            json_object_set_new(j, "created_at", jtime(a[i].created_at));
            json_object_set_new(j, "updated_at", jtime(a[i].updated_at));
            json_object_set_new(j, "messages", json_integer(a[i].message_count));
            json_object_set_new(j, "model", jstr(a[i].model));
            json_object_set_new(j, "owner", jstr(a[i].owner));
            json_object_set_new(j, "archived", json_boolean(a[i].archived));
            json_array_append_new(arr, j);
        }
        print_json(arr);
    } else if (n == 0) {
        printf("no sessions\n");
    } else {
        printf("%6s  %-24s  %5s  %s\n", "ID", "UPDATED", "MSGS", "TITLE");
        for (size_t i = 0; i < n; i++) {
            char t[32];
            clock_iso8601(a[i].updated_at, t);
            printf("%6lld  %-24s  %5lld  %s%s\n", (long long)a[i].id, t,
                   (long long)a[i].message_count, a[i].title[0] ? a[i].title : "(untitled)",
                   a[i].archived ? "  [archived]" : "");
        }
    }
    store_sessions_free(a, n);
    store_close(st);
    return 0;
}

static int resolve(store *st, const char *ref, int64_t *id) {
    cf_err err = {0};
    if (store_session_find(st, ref, id, &err) != 0) return fail(&err);
    return 0;
}

static int do_show(const opts *o) {
    store *st = open_db(o, false);
    if (!st) return 1;
    int64_t id;
    int rc = resolve(st, o->pos[0], &id);
    cf_err err = {0};
    if (rc == 0 && o->json) {
        if (store_export_json(st, id, stdout, &err) != 0) rc = fail(&err);
    } else if (rc == 0) {
        store_session s;
        store_message *m = NULL;
        size_t n = 0;
        if (store_session_get(st, id, &s, &err) != 0 || store_msg_list(st, id, &m, &n, &err) != 0) {
            rc = fail(&err);
        } else {
            char t[32];
            clock_iso8601(s.created_at, t);
            printf("session %lld  %s\ntitle:   %s\ncreated: %s\n", (long long)s.id, s.uuid,
                   s.title[0] ? s.title : "(untitled)", t);
            if (s.model) printf("model:   %s\n", s.model);
            if (s.owner) printf("owner:   %s\n", s.owner);
            if (s.archived) printf("archived\n");
            if (s.system_prompt) printf("system:  %s\n", s.system_prompt);
            for (size_t i = 0; i < n; i++) {
                clock_iso8601(m[i].created_at, t);
                printf("\n[%lld] %s%s%s  %s%s%s\n", (long long)m[i].id, m[i].role,
                       m[i].model ? " · " : "", m[i].model ? m[i].model : "", t,
                       m[i].status != STORE_COMPLETE ? "  " : "",
                       m[i].status != STORE_COMPLETE ? store_status_name(m[i].status) : "");
                printf("%s\n", m[i].content);
            }
            store_messages_free(m, n);
            store_session_clear(&s);
        }
    }
    store_close(st);
    return rc;
}

static int do_search(const opts *o) {
    store_search_opts so = {
        .query = o->pos[0], .raw = o->raw, .limit = o->limit ? o->limit : 20, .offset = o->offset};
    if (o->since && parse_date("--since", o->since, false, &so.since)) return 2;
    if (o->until && parse_date("--until", o->until, true, &so.until)) return 2;
    store *st = open_db(o, false);
    if (!st) return 1;
    int rc = 0;
    if (o->session) rc = resolve(st, o->session, &so.session_id);
    if (!o->json && isatty(1)) {
        so.hl_open = "\x1b[1m";
        so.hl_close = "\x1b[0m";
    }
    store_hit *h = NULL;
    size_t n = 0;
    cf_err err = {0};
    if (rc == 0 && store_search(st, &so, &h, &n, &err) != 0) rc = fail(&err);
    if (rc == 0 && o->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *j = json_object();
            json_object_set_new(j, "kind",
                                json_string(h[i].kind == STORE_HIT_TITLE ? "title" : "message"));
            json_object_set_new(j, "session_id", json_integer(h[i].session_id));
            json_object_set_new(j, "session_title", jstr(h[i].session_title));
            json_object_set_new(j, "message_id",
                                h[i].message_id ? json_integer(h[i].message_id) : json_null());
            json_object_set_new(j, "role", jstr(h[i].role));
            json_object_set_new(j, "time", jtime(h[i].time));
            json_object_set_new(j, "snippet", json_string(h[i].snippet));
            json_object_set_new(j, "rank", json_real(h[i].rank));
            json_array_append_new(arr, j);
        }
        print_json(arr);
    } else if (rc == 0) {
        if (n == 0) printf("no matches\n");
        for (size_t i = 0; i < n; i++) {
            char t[32];
            clock_iso8601(h[i].time, t);
            if (h[i].kind == STORE_HIT_TITLE)
                printf("session %lld (title)  %s\n  %s\n", (long long)h[i].session_id, t,
                       h[i].snippet);
            else
                printf("session %lld \"%s\"  message %lld  %s  %s\n  %s\n",
                       (long long)h[i].session_id, h[i].session_title ? h[i].session_title : "",
                       (long long)h[i].message_id, h[i].role, t, h[i].snippet);
        }
    }
    store_hits_free(h, n);
    store_close(st);
    return rc;
}

static int do_export(const opts *o) {
    bool md = false;
    if (o->format) {
        if (!strcmp(o->format, "markdown") || !strcmp(o->format, "md"))
            md = true;
        else if (strcmp(o->format, "json") != 0)
            return cli_usage_error("sessions", "--format must be json or markdown, not '%s'",
                                   o->format);
    }
    if (o->npos == 0 && !o->all)
        return cli_usage_error("sessions", "export needs a session id, uuid or --all");
    if (o->npos == 1 && o->all)
        return cli_usage_error("sessions", "give a session or --all, not both");
    store *st = open_db(o, false);
    if (!st) return 1;
    int64_t id = 0;
    int rc = o->npos ? resolve(st, o->pos[0], &id) : 0;
    FILE *f = stdout;
    if (rc == 0 && o->output && strcmp(o->output, "-") != 0) {
        f = fopen(o->output, "w");
        if (!f) {
            fprintf(stderr, "confab: cannot write %s: %s\n", o->output, strerror(errno));
            rc = 1;
        }
    }
    cf_err err = {0};
    if (rc == 0) {
        int r = md ? store_export_markdown(st, id, f, &err) : store_export_json(st, id, f, &err);
        if (r != 0) rc = fail(&err);
        if (f != stdout && fclose(f) != 0 && rc == 0) {
            fprintf(stderr, "confab: writing %s failed\n", o->output);
            rc = 1;
        }
    }
    store_close(st);
    return rc;
}

static int do_import(const opts *o) {
    const char *path = o->pos[0];
    sb_t data = {0};
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "confab: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        sb_appendn(&data, buf, k);
    bool bad = ferror(f);
    if (f != stdin) fclose(f);
    if (bad) {
        fprintf(stderr, "confab: reading %s failed\n", path);
        sb_free(&data);
        return 1;
    }
    store *st = open_db(o, true);
    if (!st) {
        sb_free(&data);
        return 1;
    }
    store_import_result r;
    cf_err err = {0};
    int rc = 0;
    if (store_import_json(st, data.data ? data.data : "", data.len, &r, &err) != 0) {
        fprintf(stderr, "confab: %s: %s (nothing imported)\n", path, err.msg);
        rc = 1;
    } else if (o->json) {
        json_t *j = json_object();
        json_object_set_new(j, "sessions_added", json_integer(r.sessions_added));
        json_object_set_new(j, "sessions_existing", json_integer(r.sessions_existing));
        json_object_set_new(j, "messages_added", json_integer(r.messages_added));
        json_object_set_new(j, "messages_existing", json_integer(r.messages_existing));
        json_object_set_new(j, "votes_added", json_integer(r.votes_added));
        json_object_set_new(j, "votes_existing", json_integer(r.votes_existing));
        print_json(j);
    } else {
        printf("imported %d sessions, %d messages, %d votes (already present: %d sessions, %d "
               "messages, %d votes)\n",
               r.sessions_added, r.messages_added, r.votes_added, r.sessions_existing,
               r.messages_existing, r.votes_existing);
    }
    sb_free(&data);
    store_close(st);
    return rc;
}

/* rename, archive and delete: change one session, report it. */
static int do_change(const char *sub, const opts *o) {
    store *st = open_db(o, false);
    if (!st) return 1;
    int64_t id;
    int rc = resolve(st, o->pos[0], &id);
    cf_err err = {0};
    const char *done = NULL;
    if (rc == 0) {
        int r;
        if (!strcmp(sub, "rename")) {
            r = store_session_rename(st, id, o->pos[1], &err);
            done = "renamed";
        } else if (!strcmp(sub, "archive")) {
            r = store_session_archive(st, id, !o->undo, &err);
            done = o->undo ? "unarchived" : "archived";
        } else {
            r = store_session_delete(st, id, &err);
            done = "deleted";
        }
        if (r != 0) rc = fail(&err);
    }
    if (rc == 0) {
        if (o->json) {
            json_t *j = json_object();
            json_object_set_new(j, "id", json_integer(id));
            json_object_set_new(j, "result", json_string(done));
            print_json(j);
        } else {
            printf("%s session %lld\n", done, (long long)id);
        }
    }
    store_close(st);
    return rc;
}

static int run_sub(const char *sub, opts *o_);

int cmd_sessions(int argc, char **argv) {
    if (argc < 2) return cli_usage_error("sessions", "missing subcommand");
    opts o;
    int r = parse_opts(argc, argv, &o);
    if (r) return r;
    /* Without --db, the database the server uses: storage.data_dir /
     * storage.db of the config (--config, or the usual search order). */
    char *db = NULL;
    if (!(o.seen & O_DB)) {
        cf_err err = {0};
        cfg_t *cfg = cfg_load(o.config, &err);
        if (!cfg) {
            fprintf(stderr, "confab: config: %s\n", err.msg);
            return 1;
        }
        db = cfg_data_path(cfg, cfg->storage.db);
        cfg_free(cfg);
        o.db = db;
    }
    r = run_sub(argv[1], &o);
    free(db);
    return r;
}

static int run_sub(const char *sub, opts *o_) {
    opts o = *o_;
    int r;
    if (!strcmp(sub, "list")) {
        if ((r = check_allowed(sub, &o, O_ALL | O_OWNER | O_LIMIT | O_OFFSET, 0, 0))) return r;
        return do_list(&o);
    }
    if (!strcmp(sub, "show")) {
        if ((r = check_allowed(sub, &o, 0, 1, 1))) return r;
        return do_show(&o);
    }
    if (!strcmp(sub, "search")) {
        if ((r = check_allowed(sub, &o, O_SESSION | O_SINCE | O_UNTIL | O_LIMIT | O_OFFSET | O_RAW,
                               1, 1)))
            return r;
        return do_search(&o);
    }
    if (!strcmp(sub, "export")) {
        if ((r = check_allowed(sub, &o, O_ALL | O_FORMAT | O_OUTPUT, 0, 1))) return r;
        return do_export(&o);
    }
    if (!strcmp(sub, "import")) {
        if ((r = check_allowed(sub, &o, 0, 1, 1))) return r;
        return do_import(&o);
    }
    if (!strcmp(sub, "rename")) {
        if ((r = check_allowed(sub, &o, 0, 2, 2))) return r;
        return do_change(sub, &o);
    }
    if (!strcmp(sub, "archive")) {
        if ((r = check_allowed(sub, &o, O_UNDO, 1, 1))) return r;
        return do_change(sub, &o);
    }
    if (!strcmp(sub, "delete")) {
        if ((r = check_allowed(sub, &o, 0, 1, 1))) return r;
        return do_change(sub, &o);
    }
    return cli_usage_error("sessions", "unknown subcommand '%s'", sub);
}
