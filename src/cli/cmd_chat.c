/*
 * cmd_chat — `confab chat`, the terminal chat, and `confab run MODEL PROMPT`,
 * its one-shot form.
 *
 * Both go through the same chat service, store, cache and router as
 * `confab serve` (chat_env), so a conversation typed here is a session in
 * the web UI and vice versa. The turn itself runs on a worker thread
 * (chat_view) while this thread waits for SIGINT: Ctrl-C during a reply
 * cancels the reply (kept in the store as cancelled), never the program.
 *
 * The REPL reads with libedit (emacs keys, history in DATA/chat_history).
 * At the prompt the terminal's ISIG is off and Ctrl-C is a key bound to
 * "discard this line", so no signal is involved there; Ctrl-D on an empty
 * line exits. Input: a line ending in '\' continues on the next line; a
 * line `"""` opens a block that the next `"""` line closes; a line starting
 * with '/' is a command, '//' sends a literal '/'.
 */
#include <errno.h>
#include <histedit.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "app/prompts.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/sb.h"
#include "cli/chat_env.h"
#include "cli/chat_view.h"
#include "cli/cli.h"
#include "providers/pricing.h"
#include "store/store.h"

#define BOLD "\x1b[1m"
#define DIM "\x1b[2m"
#define RED "\x1b[31m"
#define RESET "\x1b[0m"

/* The engine's info lines (model loading) would land in the middle of the
 * conversation: a terminal front end shows warnings and errors only, unless
 * --log-level asked for more detail than the default. */
static void quiet_logs(void) {
    if (log_get_level() == LOG_INFO) log_set_level(LOG_WARN);
}

/* ------------------------------------------------------------ state */

typedef struct {
    chat_env env;
    EditLine *el;
    History *hist;
    char *hist_path;
    const char *prompt; /* the prompt libedit shows now */
    bool discard;       /* Ctrl-C pressed: drop the line being read */
    bool tty;           /* stdout is a terminal */
    /* What the next turn uses. */
    int64_t session_id; /* 0: a new session with the next message */
    char *model;        /* NULL: the session's, else the default */
    bool has_temp;
    double temp;
    char *system; /* NULL: the session's */
    chunk_mode mode;
    chat_result last; /* the last turn (status < 0 or no turn: model[0] == 0) */
    sb_t line;        /* the line being read */
} repl;

static int term_rows(void) {
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0) return 0;
    return ws.ws_row;
}

/* Prints an error for a command: red on a terminal. Always to stdout so it
 * stays in order with the rest of the conversation. */
static void repl_err(const repl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void repl_err(const repl *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(r->tty ? RED "error: " : "error: ", stdout);
    vprintf(fmt, ap);
    fputs(r->tty ? RESET "\n" : "\n", stdout);
    va_end(ap);
    fflush(stdout);
}

/* ------------------------------------------------------------ turns */

static void repl_turn(repl *r, chat_request *req) {
    req->model = r->model;
    req->system_prompt = r->system;
    req->has_temperature = r->has_temp;
    req->temperature = r->temp;
    req->granularity = r->mode;
    if (r->session_id > 0)
        req->session_id = r->session_id;
    else
        req->new_session = true;
    chat_view_opts vo = {.out = stdout,
                         .tty = r->tty,
                         .rows = r->tty ? term_rows() : 0,
                         .label = r->model ? r->model : chat_default_model(r->env.cs)};
    const cfg_model *cm = vo.label ? cfg_find_model(r->env.cfg, vo.label) : NULL;
    prov_model_cfg pm;
    cf_err perr = {0};
    if (cm && app_model_to_prov(cm, &pm, &perr) == 0) vo.price = prov_price_for(&pm);
    chat_result res;
    bool cancelled;
    int rc = chat_view_turn(r->env.cs, req, &vo, &res, &cancelled);
    if (res.session_id > 0) r->session_id = res.session_id;
    if (rc == 0 || cancelled) r->last = res;
}

/* ------------------------------------------------------------ commands */

/* Splits LINE into words: blanks separate, "double quotes" group (with \"
 * and \\ inside). Returns the count (at most MAX); words point into BUF. */
static int split_words(const char *line, char *buf, size_t bufn, char **words, int max) {
    int n = 0;
    size_t o = 0;
    const char *p = line;
    while (*p && n < max) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p) break;
        words[n++] = buf + o;
        bool q = false;
        while (*p && (q || (*p != ' ' && *p != '\t')) && o + 1 < bufn) {
            if (*p == '"')
                q = !q, p++;
            else if (q && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
                buf[o++] = p[1], p += 2;
            else
                buf[o++] = *p++;
        }
        buf[o++] = '\0';
        if (o >= bufn) break;
    }
    return n;
}

static void cmd_help_text(repl *r) {
    printf("%s"
           "  /help                       this list\n"
           "  /new                        start a new conversation\n"
           "  /sessions                   recent conversations (* marks this one)\n"
           "  /load ID                    continue a conversation (id or uuid)\n"
           "  /search QUERY               search every conversation\n"
           "  /export FILE                this conversation as JSON (FILE.md: Markdown)\n"
           "  /template NAME key=value... send a prompt template from the config\n"
           "  /model [NAME]               show or switch the model\n"
           "  /temp [X|default]           show or set the temperature (0 to 2)\n"
           "  /system [TEXT|-]            show, set or (-) clear the system prompt\n"
           "  /tokens                     tokens and cost of this conversation\n"
           "  /stream token|word|sentence how replies are chunked as they stream\n"
           "  /quit                       exit (also Ctrl-D on an empty line)\n"
           "%s"
           "Input: end a line with \\ to continue it; \"\"\" on its own line starts and ends a\n"
           "multi-line block; // at the start sends a literal /. Ctrl-C stops a reply, or\n"
           "clears the line at the prompt.\n",
           r->tty ? BOLD : "", r->tty ? RESET : "");
    fflush(stdout);
}

static struct store *repl_store(repl *r, chat_handles **h) {
    cf_err err = {0};
    *h = chat_acquire(r->env.cs, &err);
    if (!*h) {
        repl_err(r, "cannot open the store: %s", err.msg);
        return NULL;
    }
    return chat_handles_store(*h);
}

static void cmd_sessions_list(repl *r) {
    chat_handles *h;
    struct store *st = repl_store(r, &h);
    if (!st) return;
    store_list_opts lo = {.limit = 20};
    store_session *v = NULL;
    size_t n = 0;
    cf_err err = {0};
    if (store_session_list(st, &lo, &v, &n, &err)) {
        repl_err(r, "%s", err.msg);
    } else if (!n) {
        printf("no conversations yet\n");
    } else {
        for (size_t i = 0; i < n; i++) {
            char when[32];
            clock_iso8601(v[i].updated_at, when);
            when[16] = '\0';
            printf("%s %4" PRId64 "  %-40.40s  %3" PRId64 " msgs  %s  %s\n",
                   v[i].id == r->session_id ? "*" : " ", v[i].id,
                   v[i].title[0] ? v[i].title : "(untitled)", v[i].message_count, when,
                   v[i].model ? v[i].model : "");
        }
    }
    store_sessions_free(v, n);
    chat_release(r->env.cs, h);
    fflush(stdout);
}

static void cmd_load(repl *r, int argc, char **argv) {
    if (argc != 2) return repl_err(r, "usage: /load ID   (an id or uuid from /sessions)");
    chat_handles *h;
    struct store *st = repl_store(r, &h);
    if (!st) return;
    cf_err err = {0};
    int64_t id;
    store_session s = {0};
    store_message *m = NULL;
    size_t n = 0;
    if (store_session_find(st, argv[1], &id, &err) || store_session_get(st, id, &s, &err) ||
        store_msg_list(st, id, &m, &n, &err)) {
        repl_err(r, "cannot load '%s': %s", argv[1], err.msg);
    } else {
        r->session_id = id;
        printf("loaded conversation %" PRId64 ": %s (%zu messages)\n", id,
               s.title[0] ? s.title : "(untitled)", n);
        size_t from = n > 6 ? n - 6 : 0;
        if (from)
            printf("%s... %zu earlier messages%s\n", r->tty ? DIM : "", from, r->tty ? RESET : "");
        for (size_t i = from; i < n; i++) {
            printf("%s%s:%s %s%s\n", r->tty ? BOLD : "", m[i].role, r->tty ? RESET : "",
                   m[i].content,
                   m[i].status == STORE_CANCELLED ? " [cancelled]"
                   : m[i].status == STORE_ERROR   ? " [error]"
                                                  : "");
        }
    }
    store_messages_free(m, n);
    store_session_clear(&s);
    chat_release(r->env.cs, h);
    fflush(stdout);
}

static void cmd_search(repl *r, const char *query) {
    if (!*query) return repl_err(r, "usage: /search QUERY");
    chat_handles *h;
    struct store *st = repl_store(r, &h);
    if (!st) return;
    store_search_opts so = {.query = query, .limit = 10};
    if (r->tty) so.hl_open = BOLD, so.hl_close = RESET;
    store_hit *v = NULL;
    size_t n = 0;
    cf_err err = {0};
    if (store_search(st, &so, &v, &n, &err)) {
        repl_err(r, "search: %s", err.msg);
    } else if (!n) {
        printf("no matches for '%s'\n", query);
    } else {
        for (size_t i = 0; i < n; i++)
            printf("%4" PRId64 "  %-30.30s  %-9s %s\n", v[i].session_id,
                   v[i].session_title ? v[i].session_title : "", v[i].role ? v[i].role : "title",
                   v[i].snippet ? v[i].snippet : "");
        printf("(/load ID continues one)\n");
    }
    store_hits_free(v, n);
    chat_release(r->env.cs, h);
    fflush(stdout);
}

static void cmd_export(repl *r, int argc, char **argv) {
    if (argc != 2)
        return repl_err(r, "usage: /export FILE   (FILE.md writes Markdown, anything else JSON)");
    if (r->session_id <= 0)
        return repl_err(r, "nothing to export yet: send a message or /load a conversation");
    size_t l = strlen(argv[1]);
    bool md = l > 3 && !strcmp(argv[1] + l - 3, ".md");
    FILE *f = fopen(argv[1], "w");
    if (!f) return repl_err(r, "cannot write %s: %s", argv[1], strerror(errno));
    chat_handles *h;
    struct store *st = repl_store(r, &h);
    if (!st) {
        fclose(f);
        return;
    }
    cf_err err = {0};
    int rc = md ? store_export_markdown(st, r->session_id, f, &err)
                : store_export_json(st, r->session_id, f, &err);
    chat_release(r->env.cs, h);
    if (fclose(f) != 0 && !rc)
        rc = CF_EIO, snprintf(err.msg, sizeof err.msg, "%s", strerror(errno));
    if (rc)
        repl_err(r, "export to %s: %s", argv[1], err.msg);
    else
        printf("exported conversation %" PRId64 " to %s (%s)\n", r->session_id, argv[1],
               md ? "Markdown" : "JSON");
    fflush(stdout);
}

static void cmd_template_send(repl *r, int argc, char **argv) {
    const cfg_t *cfg = r->env.cfg;
    if (argc < 2) {
        if (!cfg->n_prompts)
            return repl_err(r, "usage: /template NAME key=value ...  (the config has no prompts:)");
        sb_t sb = {0};
        for (size_t i = 0; i < cfg->n_prompts; i++)
            sb_printf(&sb, "%s%s", i ? ", " : "", cfg->prompts[i].name);
        repl_err(r, "usage: /template NAME key=value ...  (templates: %s)", sb_str(&sb));
        sb_free(&sb);
        return;
    }
    const cfg_prompt *p = cfg_find_prompt(cfg, argv[1]);
    if (!p)
        return repl_err(r, "no template '%s' in the config (see prompts: in %s)", argv[1],
                        cfg->source ? cfg->source : "the config");
    const char *keys[32], *vals[32];
    size_t n = 0;
    for (int i = 2; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i]) return repl_err(r, "'%s' is not key=value", argv[i]);
        if (n == 32) return repl_err(r, "at most 32 key=value pairs");
        *eq = '\0';
        keys[n] = argv[i], vals[n++] = eq + 1;
    }
    cf_err err = {0};
    char *filled = prompt_fill(p->text, keys, vals, n, &err);
    if (!filled) return repl_err(r, "template %s: %s", argv[1], err.msg);
    printf("%s%s%s\n", r->tty ? DIM : "", filled, r->tty ? RESET : "");
    free(filled);
    chat_request req = {.template_name = argv[1],
                        .template_keys = keys,
                        .template_values = vals,
                        .n_template_vars = n};
    repl_turn(r, &req);
}

static bool model_known(const cfg_t *cfg, const char *name) {
    if (cfg_find_model(cfg, name)) return true;
    for (size_t i = 0; i < cfg->n_ab; i++)
        if (!strcmp(cfg->ab[i].name, name)) return true;
    return false;
}

static void cmd_model(repl *r, int argc, char **argv) {
    char *names = chat_env_model_names(r->env.cfg);
    if (argc == 1) {
        const char *cur = r->model ? r->model : chat_default_model(r->env.cs);
        printf("model: %s%s   (configured: %s)\n", cur ? cur : "(none)",
               r->model ? "" : " (default)", names);
    } else if (argc != 2) {
        repl_err(r, "usage: /model NAME   (configured: %s)", names);
    } else if (!model_known(r->env.cfg, argv[1])) {
        repl_err(r, "unknown model '%s' (configured: %s)", argv[1], names);
    } else {
        free(r->model);
        r->model = strdup(argv[1]);
        printf("model: %s\n", r->model);
    }
    free(names);
    fflush(stdout);
}

static void cmd_temp(repl *r, int argc, char **argv) {
    if (argc == 1) {
        if (r->has_temp)
            printf("temperature: %g\n", r->temp);
        else
            printf("temperature: the model's default\n");
    } else if (argc == 2 && !strcmp(argv[1], "default")) {
        r->has_temp = false;
        printf("temperature: the model's default\n");
    } else {
        char *end;
        errno = 0;
        double t = argc == 2 ? strtod(argv[1], &end) : -1;
        if (argc != 2 || errno || end == argv[1] || *end || !(t >= 0 && t <= 2))
            return repl_err(r, "usage: /temp X   (a number from 0 to 2, or 'default')");
        r->has_temp = true, r->temp = t;
        printf("temperature: %g\n", t);
    }
    fflush(stdout);
}

static void cmd_system(repl *r, const char *text) {
    if (!*text) {
        printf("system prompt: %s\n", r->system ? r->system : "(the conversation's)");
    } else if (!strcmp(text, "-")) {
        free(r->system);
        r->system = strdup("");
        printf("system prompt cleared\n");
    } else {
        free(r->system);
        r->system = strdup(text);
        printf("system prompt set\n");
    }
    fflush(stdout);
}

static void cmd_tokens(repl *r) {
    if (r->last.model[0])
        printf("last reply: %" PRId64 " prompt + %" PRId64 " completion tokens%s, %s\n",
               r->last.usage.prompt_tokens, r->last.usage.completion_tokens,
               r->last.usage.estimated ? " (estimated)" : "", r->last.model);
    if (r->session_id <= 0) {
        printf("no conversation yet\n");
        fflush(stdout);
        return;
    }
    chat_handles *h;
    struct store *st = repl_store(r, &h);
    if (!st) return;
    store_message *m = NULL;
    size_t n = 0;
    cf_err err = {0};
    if (store_msg_list(st, r->session_id, &m, &n, &err)) {
        repl_err(r, "%s", err.msg);
    } else {
        int64_t pt = 0, ct = 0, replies = 0;
        double cost = 0;
        bool cost_known = false;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(m[i].role, "assistant")) continue;
            replies++;
            pt += m[i].prompt_tokens, ct += m[i].completion_tokens;
            if (m[i].cost > 0) cost += m[i].cost, cost_known = true;
        }
        printf("conversation %" PRId64 ": %" PRId64 " replies, %" PRId64 " prompt + %" PRId64
               " completion tokens (%" PRId64 " total)",
               r->session_id, replies, pt, ct, pt + ct);
        if (cost_known) printf(", $%.6f", cost);
        int64_t budget = r->env.cfg->budget.max_tokens_per_conversation;
        if (budget > 0) printf(", budget %" PRId64 " per conversation", budget);
        printf("\n");
    }
    store_messages_free(m, n);
    chat_release(r->env.cs, h);
    fflush(stdout);
}

/* Runs the command LINE (starting with '/'). Returns false for /quit. */
static bool repl_command(repl *r, const char *line) {
    char buf[4096], *argv[40];
    int argc = split_words(line, buf, sizeof buf, argv, 40);
    if (argc == 0) return true;
    const char *c = argv[0];
    /* The rest of the line after the command word, for free text. */
    const char *rest = line + 1;
    while (*rest && *rest != ' ' && *rest != '\t')
        rest++;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    if (!strcmp(c, "/quit") || !strcmp(c, "/exit")) return false;
    if (!strcmp(c, "/help") || !strcmp(c, "/?"))
        cmd_help_text(r);
    else if (!strcmp(c, "/new")) {
        if (argc != 1)
            repl_err(r, "usage: /new");
        else {
            r->session_id = 0;
            printf("new conversation (saved with your first message)\n");
            fflush(stdout);
        }
    } else if (!strcmp(c, "/sessions")) {
        if (argc != 1)
            repl_err(r, "usage: /sessions");
        else
            cmd_sessions_list(r);
    } else if (!strcmp(c, "/load"))
        cmd_load(r, argc, argv);
    else if (!strcmp(c, "/search"))
        cmd_search(r, rest);
    else if (!strcmp(c, "/export"))
        cmd_export(r, argc, argv);
    else if (!strcmp(c, "/template"))
        cmd_template_send(r, argc, argv);
    else if (!strcmp(c, "/model"))
        cmd_model(r, argc, argv);
    else if (!strcmp(c, "/temp"))
        cmd_temp(r, argc, argv);
    else if (!strcmp(c, "/system"))
        cmd_system(r, rest);
    else if (!strcmp(c, "/tokens"))
        cmd_tokens(r);
    else if (!strcmp(c, "/stream")) {
        chunk_mode m;
        if (argc == 1)
            printf("stream: %s\n", chunk_mode_name(r->mode)), fflush(stdout);
        else if (argc != 2 || chunk_mode_parse(argv[1], &m) != 0)
            repl_err(r, "usage: /stream token|word|sentence");
        else {
            r->mode = m;
            printf("stream: %s\n", chunk_mode_name(m));
            fflush(stdout);
        }
    } else
        repl_err(r, "unknown command '%s' (/help lists them)", c);
    return true;
}

/* ------------------------------------------------------------ input */

static char *repl_prompt_fn(EditLine *el) {
    repl *r = NULL;
    el_get(el, EL_CLIENTDATA, &r);
    return (char *)r->prompt;
}

/* Ctrl-C at the prompt: end the read and mark the line to be discarded. */
static unsigned char repl_key_discard(EditLine *el, int ch) {
    (void)ch;
    repl *r = NULL;
    el_get(el, EL_CLIENTDATA, &r);
    r->discard = true;
    fputs("^C\n", stdout);
    fflush(stdout);
    return CC_NEWLINE;
}

static void repl_history_add(repl *r, const char *line) {
    HistEvent ev;
    if (!*line) return;
    history(r->hist, &ev, H_ENTER, line);
    if (r->hist_path) history(r->hist, &ev, H_SAVE, r->hist_path);
}

/* Reads one message into MSG (lines joined with '\n'). Returns 1 for a
 * message, 0 at end of input. *IS_CMD is set for a slash command. */
static int repl_read(repl *r, sb_t *msg, bool *is_cmd) {
    sb_clear(msg);
    *is_cmd = false;
    bool block = false, cont = false;
    r->prompt = ">>> ";
    for (;;) {
        int n = 0;
        const char *got = el_gets(r->el, &n);
        if (!got || n <= 0) {
            if (!got && n < 0 && errno == EINTR) continue;
            /* End of input inside a block or a continued line: send what
             * was typed. */
            if (msg->len) {
                if (sb_str(msg)[msg->len - 1] == '\n') sb_truncate(msg, msg->len - 1);
                return 1;
            }
            return 0;
        }
        /* A line of any length (pasted text must not be cut). */
        sb_clear(&r->line);
        sb_append(&r->line, got); /* N counts characters in some libedits */
        char *line = r->line.data;
        size_t l = r->line.len;
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r'))
            line[--l] = '\0';
        if (r->discard) {
            r->discard = false;
            sb_clear(msg);
            block = cont = false;
            r->prompt = ">>> ";
            continue;
        }
        repl_history_add(r, line);
        if (block) {
            if (!strcmp(line, "\"\"\"")) {
                if (msg->len) sb_truncate(msg, msg->len - 1); /* the last line's '\n' */
                if (!msg->len) {
                    r->prompt = ">>> ";
                    block = false;
                    continue;
                }
                return 1;
            }
            sb_append(msg, line);
            sb_putc(msg, '\n');
            continue;
        }
        if (!cont && !msg->len && !strcmp(line, "\"\"\"")) {
            block = true;
            r->prompt = "... ";
            continue;
        }
        if (!cont && line[0] == '/') {
            if (line[1] == '/') {
                sb_append(msg, line + 1);
                return 1;
            }
            *is_cmd = true;
            sb_append(msg, line);
            return 1;
        }
        if (l && line[l - 1] == '\\') {
            line[l - 1] = '\0';
            sb_append(msg, line);
            sb_putc(msg, '\n');
            cont = true;
            r->prompt = "... ";
            continue;
        }
        sb_append(msg, line);
        if (!msg->len) {
            /* An empty line at the prompt: ask again. */
            cont = false;
            r->prompt = ">>> ";
            continue;
        }
        return 1;
    }
}

/* ------------------------------------------------------------ chat */

int cmd_chat(int argc, char **argv) {
    const char *model = NULL, *session = NULL, *cfg_path = NULL, *data = NULL;
    bool new_session = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **sval = NULL;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            sval = &model;
        else if (!strcmp(a, "--session"))
            sval = &session;
        else if (!strcmp(a, "--config"))
            sval = &cfg_path;
        else if (!strcmp(a, "--data"))
            sval = &data;
        else if (!strcmp(a, "--new")) {
            new_session = true;
            continue;
        } else
            return cli_usage_error("chat", "unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("chat", "%s needs a value", a);
        *sval = argv[++i];
    }
    if (session && new_session)
        return cli_usage_error("chat", "give --session ID or --new, not both");

    /* Before any thread exists: SIGINT is taken only by chat_view. */
    chat_view_block_sigint();
    quiet_logs();
    repl r = {.tty = isatty(STDOUT_FILENO) == 1, .mode = CHUNK_TOKEN};
    chat_env_opts eo = {.config_path = cfg_path, .data_dir = data, .model = model, .cmd = "chat"};
    int rc = chat_env_open(&r.env, &eo);
    if (rc) {
        chat_env_close(&r.env);
        return rc;
    }
    if (model) r.model = strdup(r.env.model);
    const char *g = r.env.cfg->streaming.granularity;
    if (g) chunk_mode_parse(g, &r.mode);
    if (session) {
        chat_handles *h;
        struct store *st = repl_store(&r, &h);
        if (!st) {
            chat_env_close(&r.env);
            return 1;
        }
        cf_err err = {0};
        if (store_session_find(st, session, &r.session_id, &err)) {
            fprintf(stderr, "confab: chat: --session %s: %s\n", session, err.msg);
            chat_release(r.env.cs, h);
            free(r.model);
            chat_env_close(&r.env);
            return 2;
        }
        chat_release(r.env.cs, h);
    }

    r.el = el_init("confab", stdin, stdout, stderr);
    r.hist = history_init();
    HistEvent ev;
    history(r.hist, &ev, H_SETSIZE, 1000);
    history(r.hist, &ev, H_SETUNIQUE, 1);
    size_t hl = strlen(r.env.data_dir) + 32;
    r.hist_path = malloc(hl);
    snprintf(r.hist_path, hl, "%s/chat_history", r.env.data_dir);
    history(r.hist, &ev, H_LOAD, r.hist_path);
    el_set(r.el, EL_CLIENTDATA, &r);
    el_set(r.el, EL_EDITOR, "emacs");
    el_set(r.el, EL_HIST, history, r.hist);
    el_set(r.el, EL_PROMPT, repl_prompt_fn);
    /* Ctrl-C at the prompt is a key (ISIG off while editing), not a signal. */
    el_set(r.el, EL_SETTY, "-d", "-isig", NULL);
    /* The wide form keeps our (static) strings; the narrow one copies them
     * and never frees the copies. */
    el_wset(r.el, EL_ADDFN, L"confab-discard", L"discard the line", repl_key_discard);
    el_set(r.el, EL_BIND, "^C", "confab-discard", NULL);
    el_source(r.el, NULL); /* ~/.editrc, as every libedit program */

    const char *cur = r.model ? r.model : chat_default_model(r.env.cs);
    if (r.tty)
        printf(BOLD "confab chat" RESET DIM " · %s · %s · /help for commands, Ctrl-D to quit" RESET
                    "\n",
               cur ? cur : "no model",
               r.session_id ? "continuing a conversation" : "new conversation");
    else
        printf("confab chat · %s · /help for commands\n", cur ? cur : "no model");
    fflush(stdout);

    sb_t msg = {0};
    bool is_cmd;
    while (repl_read(&r, &msg, &is_cmd) == 1) {
        if (is_cmd) {
            if (!repl_command(&r, sb_str(&msg))) break;
            continue;
        }
        chat_request req = {.content = sb_str(&msg)};
        repl_turn(&r, &req);
    }
    if (r.tty) printf("\n");
    fflush(stdout);
    sb_free(&msg);
    sb_free(&r.line);
    history(r.hist, &ev, H_SAVE, r.hist_path);
    history_end(r.hist);
    el_end(r.el);
    free(r.hist_path);
    free(r.model);
    free(r.system);
    chat_env_close(&r.env);
    return 0;
}

/* ------------------------------------------------------------ run MODEL PROMPT */

static int read_all(FILE *f, sb_t *out) {
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_appendn(out, buf, n);
    return ferror(f) ? -1 : 0;
}

int cmd_run_chat(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *cfg_path = NULL, *data = NULL, *system = NULL;
    const char *stream = NULL;
    bool has_temp = false, has_seed = false, no_save = false;
    double temp = 0;
    long long seed = 0;
    long max_tokens = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **sval = NULL;
        if (a[0] != '-' || !strcmp(a, "-")) {
            if (!model)
                model = a;
            else if (!prompt)
                prompt = a;
            else
                return cli_usage_error("run", "unexpected argument '%s' (quote the prompt)", a);
            continue;
        }
        if (!strcmp(a, "--config"))
            sval = &cfg_path;
        else if (!strcmp(a, "--data"))
            sval = &data;
        else if (!strcmp(a, "--system"))
            sval = &system;
        else if (!strcmp(a, "--stream"))
            sval = &stream;
        else if (!strcmp(a, "--no-save")) {
            no_save = true;
            continue;
        } else if (strcmp(a, "--temp") && strcmp(a, "--seed") && strcmp(a, "-n") &&
                   strcmp(a, "--max-tokens"))
            return cli_usage_error("run", "unknown option '%s' for `confab run MODEL PROMPT`", a);
        if (i + 1 >= argc) return cli_usage_error("run", "%s needs a value", a);
        const char *v = argv[++i];
        char *end;
        errno = 0;
        if (sval)
            *sval = v;
        else if (!strcmp(a, "--temp")) {
            temp = strtod(v, &end), has_temp = true;
            if (errno || end == v || *end || !(temp >= 0 && temp <= 2))
                return cli_usage_error("run", "--temp wants a number from 0 to 2, got '%s'", v);
        } else if (!strcmp(a, "--seed")) {
            seed = strtoll(v, &end, 10), has_seed = true;
            if (errno || end == v || *end || seed < 0)
                return cli_usage_error("run", "--seed wants an integer >= 0, got '%s'", v);
        } else {
            max_tokens = strtol(v, &end, 10);
            if (errno || end == v || *end || max_tokens < 1 || max_tokens > 1 << 24)
                return cli_usage_error("run", "%s wants a count >= 1, got '%s'", a, v);
        }
    }
    if (!model || !prompt)
        return cli_usage_error("run", "give MODEL and PROMPT (PROMPT - reads stdin)");
    chunk_mode mode = CHUNK_TOKEN;
    if (stream && chunk_mode_parse(stream, &mode) != 0)
        return cli_usage_error("run", "--stream wants token, word or sentence, got '%s'", stream);
    sb_t in = {0};
    if (!strcmp(prompt, "-")) {
        if (read_all(stdin, &in) != 0) {
            fprintf(stderr, "confab: run: cannot read stdin: %s\n", strerror(errno));
            sb_free(&in);
            return 1;
        }
        while (in.len && (sb_str(&in)[in.len - 1] == '\n' || sb_str(&in)[in.len - 1] == '\r'))
            sb_truncate(&in, in.len - 1);
        prompt = sb_str(&in);
    }
    if (!*prompt) {
        sb_free(&in);
        return cli_usage_error("run", "the prompt is empty");
    }

    chat_view_block_sigint();
    signal(SIGPIPE, SIG_IGN);
    quiet_logs();
    chat_env env = {0};
    chat_env_opts eo = {.config_path = cfg_path, .data_dir = data, .model = model, .cmd = "run"};
    int rc = chat_env_open(&env, &eo);
    if (rc) {
        chat_env_close(&env);
        sb_free(&in);
        return rc;
    }
    chat_msg msgs[2];
    size_t nm = 0;
    if (system && no_save) msgs[nm++] = (chat_msg){"system", system};
    msgs[nm++] = (chat_msg){"user", prompt};
    chat_request req = {.model = env.model,
                        .granularity = mode,
                        .has_temperature = has_temp,
                        .temperature = temp,
                        .has_seed = has_seed,
                        .seed = seed,
                        .max_tokens = (int)max_tokens};
    if (no_save) {
        req.messages = msgs, req.n_messages = nm;
    } else {
        req.new_session = true, req.content = prompt, req.system_prompt = system;
    }
    bool tty = isatty(STDOUT_FILENO) == 1;
    chat_view_opts vo = {.out = stdout, .tty = tty, .rows = tty ? term_rows() : 0, .quiet = true};
    chat_result res;
    bool cancelled;
    int st = chat_view_turn(env.cs, &req, &vo, &res, &cancelled);
    if (tty && st == 0 && !cancelled && res.usage.completion_tokens > 0) {
        double gen_s = (double)(res.latency_ms - res.ttft_ms) / 1000.0;
        fprintf(stderr, DIM "[%s · %" PRId64 " tokens", res.model, res.usage.completion_tokens);
        if (gen_s > 0.001)
            fprintf(stderr, " · %.1f tok/s", (double)res.usage.completion_tokens / gen_s);
        if (res.cost > 0) fprintf(stderr, " · $%.6f", res.cost);
        fprintf(stderr, "]" RESET "\n");
    }
    chat_env_close(&env);
    sb_free(&in);
    if (cancelled) return 130;
    if (st == CF_ENOTFOUND) return 2;
    return st ? 1 : 0;
}
