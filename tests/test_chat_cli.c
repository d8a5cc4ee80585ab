/* test_chat_cli — `confab chat` driven through a pseudo-terminal, and the
 * one-shot `confab run MODEL PROMPT`, with the real stories260K model (and
 * a random-weight model for long replies) configured as local models. What
 * the REPL stores is checked with the store API on the same database. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "base/clock.h"
#include "store/store.h"

#define SLOW 20000 /* ms: generous for sanitizer builds */

/* ------------------------------------------------------------ fixture */

typedef struct {
    char *dir;
    char cfg[4200], data[4200], db[4300];
} fx;

static fx *fx_new(void) {
    const char *stories = td_path("models/stories260K.gguf");
    char sp[4096];
    snprintf(sp, sizeof sp, "%s", stories);
    const char *noise = td_path("models/tiny-llama-d256-Q4_0.gguf");
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    snprintf(f->cfg, sizeof f->cfg, "%s/c.yaml", f->dir);
    snprintf(f->data, sizeof f->data, "%s/data", f->dir);
    snprintf(f->db, sizeof f->db, "%s/confab.db", f->data);
    char yaml[10000];
    snprintf(yaml, sizeof yaml,
             "models:\n"
             "  stories:\n    backend: local\n    model: \"%s\"\n"
             "    price: {input: 100, output: 200}\n"
             "  noise:\n    backend: local\n    model: \"%s\"\n"
             "engine: {threads: 1}\n"
             "cache: {enabled: false}\n"
             "prompts:\n  tale: \"Tell a story about {animal}.\"\n",
             sp, noise);
    assert_int_equal(tu_write_file(f->cfg, yaml, strlen(yaml)), 0);
    return f;
}

static void fx_free(fx *f) {
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
}

/* ------------------------------------------------------------ the pty */

typedef struct {
    pid_t pid;
    int fd;
    char *buf; /* everything read, escape sequences removed */
    size_t len, cap, mark;
    int esc; /* parser state: 0 text, 1 after ESC, 2 in CSI */
} term;

static term *term_spawn(const fx *f, const char *const *extra) {
    char *bin = realpath(tu_confab_bin(), NULL);
    assert_non_null(bin);
    term *t = calloc(1, sizeof *t);
    struct winsize ws = {.ws_row = 24, .ws_col = 100};
    t->pid = forkpty(&t->fd, NULL, NULL, &ws);
    assert_true(t->pid >= 0);
    if (t->pid == 0) {
        const char *argv[16] = {"confab", "chat", "--config", f->cfg, "--data", f->data};
        int n = 6;
        for (int i = 0; extra && extra[i]; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        if (chdir(f->dir) != 0) _exit(127);
        setenv("TERM", "xterm", 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    free(bin);
    t->cap = 1 << 16;
    t->buf = malloc(t->cap);
    t->buf[0] = '\0';
    return t;
}

/* Appends what the child printed, without ANSI escape sequences (CSI and
 * two-byte ESC forms). */
static void term_take(term *t, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (t->esc == 1) {
            t->esc = c == '[' ? 2 : 0;
            continue;
        }
        if (t->esc == 2) {
            if (c >= 0x40 && c <= 0x7e) t->esc = 0;
            continue;
        }
        if (c == 0x1b) {
            t->esc = 1;
            continue;
        }
        if (c == '\r') continue;
        if (t->len + 2 > t->cap) t->buf = realloc(t->buf, t->cap *= 2);
        t->buf[t->len++] = (char)c;
        t->buf[t->len] = '\0';
    }
}

/* Reads for up to MS milliseconds; returns false at end of output. */
static bool term_read(term *t, int ms) {
    struct pollfd p = {.fd = t->fd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0) return true;
    char b[4096];
    ssize_t n = read(t->fd, b, sizeof b);
    if (n <= 0) return false;
    term_take(t, b, (size_t)n);
    return true;
}

/* Waits (at most MS) until NEEDLE appears after the mark; moves the mark
 * past it. Fails the test with what was printed when it never does. */
static void term_expect(term *t, const char *needle, int ms) {
    double end = clock_mono_ms() + ms;
    for (;;) {
        char *hit = strstr(t->buf + t->mark, needle);
        if (hit) {
            t->mark = (size_t)(hit - t->buf) + strlen(needle);
            return;
        }
        double left = end - clock_mono_ms();
        if (left <= 0 || !term_read(t, left > 50 ? 50 : (int)left + 1)) break;
    }
    fail_msg("expected '%s'; the terminal shows after the mark:\n%s", needle,
             t->buf + (t->len - t->mark > 3000 ? t->len - 3000 : t->mark));
}

/* Waits for the prompt PROMPT, then until the line editor has the terminal
 * (ICANON off: on Linux the master reports the pty's modes). Control keys
 * sent before that would meet the terminal's cooked mode instead. */
static void term_prompt(term *t, const char *prompt) {
    term_expect(t, prompt, SLOW);
    double end = clock_mono_ms() + SLOW;
    struct termios tio;
    while (clock_mono_ms() < end) {
        if (tcgetattr(t->fd, &tio) == 0 && !(tio.c_lflag & ICANON)) return;
        term_read(t, 5);
    }
    fail_msg("the line editor never took the terminal after '%s'", prompt);
}

static void term_send(term *t, const char *keys) {
    size_t n = strlen(keys);
    assert_int_equal(write(t->fd, keys, n), (ssize_t)n);
}

/* Waits for the child to exit (at most MS); returns its exit status, or
 * -1 after killing it when it did not exit in time. */
static int term_wait(term *t, int ms) {
    double end = clock_mono_ms() + ms;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(t->pid, &st, WNOHANG);
        if (r == t->pid) break;
        if (clock_mono_ms() > end) {
            print_message("# confab did not exit; its terminal:\n%s\n", t->buf);
            kill(t->pid, SIGKILL);
            waitpid(t->pid, &st, 0);
            return -1;
        }
        term_read(t, 20);
    }
    while (term_read(t, 0) && t->len < (1u << 26)) {
        struct pollfd p = {.fd = t->fd, .events = POLLIN};
        if (poll(&p, 1, 0) <= 0) break;
    }
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (rc != 0) print_message("# confab exited with %d; its terminal:\n%s\n", rc, t->buf);
    return rc;
}

static void term_free(term *t) {
    if (waitpid(t->pid, NULL, WNOHANG) == 0) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, NULL, 0);
    }
    close(t->fd);
    free(t->buf);
    free(t);
}

/* The messages of the only session in the database (asserts there is
 * exactly N_SESSIONS), the session itself into *S. */
static store_message *only_session(const fx *f, size_t n_sessions, store_session *s, size_t *n) {
    cf_err err = {0};
    store *st = store_open(f->db, 0, &err);
    if (!st) fail_msg("%s", err.msg);
    store_list_opts lo = {.limit = 100, .include_archived = true};
    store_session *v = NULL;
    size_t ns = 0;
    assert_int_equal(store_session_list(st, &lo, &v, &ns, &err), 0);
    assert_int_equal(ns, n_sessions);
    assert_int_equal(store_session_get(st, v[0].id, s, &err), 0);
    store_message *m = NULL;
    assert_int_equal(store_msg_list(st, v[0].id, &m, n, &err), 0);
    store_sessions_free(v, ns);
    store_close(st);
    return m;
}

/* ------------------------------------------------------------ tests */

static void message_gets_a_streamed_reply_that_is_stored(void **state) {
    fx *f = fx_new();
    term *t = term_spawn(f, NULL);
    term_prompt(t, ">>> ");
    term_send(t, "Once upon a time, Zoë said «hi»\r");
    /* The live status line, then the summary with exact usage. */
    term_expect(t, "Ctrl-C stops", SLOW);
    term_expect(t, "[stories · ", SLOW);
    term_expect(t, " tokens", SLOW);
    term_expect(t, " · $", SLOW); /* priced in the config: the cost is shown */
    term_prompt(t, ">>> ");
    term_send(t, "/quit\r");
    assert_int_equal(term_wait(t, SLOW), 0);
    store_session s = {0};
    size_t n;
    store_message *m = only_session(f, 1, &s, &n);
    assert_int_equal(n, 2);
    assert_string_equal(m[0].role, "user");
    assert_string_equal(m[0].content, "Once upon a time, Zoë said «hi»");
    assert_string_equal(m[1].role, "assistant");
    assert_int_equal(m[1].status, STORE_COMPLETE);
    assert_true(strlen(m[1].content) > 0);
    assert_true(m[1].completion_tokens > 0);
    assert_string_equal(m[1].model, "stories");
    assert_true(m[1].cost > 0);
    assert_non_null(strstr(t->buf, " · output $")); /* the live cost in the status line */
    /* What was streamed is what was stored (its first bytes on screen; the
     * status line may be drawn between any two later tokens). */
    char head[7];
    snprintf(head, sizeof head, "%s", m[1].content);
    if (!strchr(head, '\n')) assert_non_null(strstr(t->buf, head));
    store_messages_free(m, n);
    store_session_clear(&s);
    term_free(t);
    fx_free(f);
}

static void slash_commands_work_and_bad_arguments_are_errors(void **state) {
    fx *f = fx_new();
    term *t = term_spawn(f, NULL);
    term_prompt(t, ">>> ");
    term_send(t, "/help\r");
    term_expect(t, "/template NAME key=value", SLOW);
    term_expect(t, "Ctrl-C stops a reply", SLOW);
    term_send(t, "/bogus\r");
    term_expect(t, "error: unknown command '/bogus'", SLOW);
    term_send(t, "/temp 0.5\r");
    term_expect(t, "temperature: 0.5", SLOW);
    term_send(t, "/temp hot\r");
    term_expect(t, "error: usage: /temp X", SLOW);
    term_send(t, "/temp 7\r");
    term_expect(t, "error: usage: /temp X", SLOW);
    term_send(t, "/stream word\r");
    term_expect(t, "stream: word", SLOW);
    term_send(t, "/stream lines\r");
    term_expect(t, "error: usage: /stream token|word|sentence", SLOW);
    term_send(t, "/model nosuch\r");
    term_expect(t, "error: unknown model 'nosuch' (configured: stories, noise)", SLOW);
    term_send(t, "/load 999\r");
    term_expect(t, "error: cannot load '999'", SLOW);
    term_send(t, "/export out.json\r");
    term_expect(t, "error: nothing to export yet", SLOW);
    term_send(t, "/template nosuch\r");
    term_expect(t, "error: no template 'nosuch'", SLOW);
    term_send(t, "/template tale\r");
    term_expect(t, "error: template tale:", SLOW);
    term_send(t, "/template tale animal\r");
    term_expect(t, "error: 'animal' is not key=value", SLOW);
    term_send(t, "/system You are a storyteller.\r");
    term_expect(t, "system prompt set", SLOW);
    term_send(t, "/template tale animal=dragon\r");
    term_expect(t, "Tell a story about dragon.", SLOW);
    term_expect(t, "[stories · ", SLOW);
    term_prompt(t, ">>> ");
    term_send(t, "/sessions\r");
    term_expect(t, "*    1  Tell a story about dragon.", SLOW);
    term_send(t, "/search dragon\r");
    term_expect(t, "Tell a story about", SLOW);
    term_expect(t, "(/load ID continues one)", SLOW);
    term_send(t, "/search zzzqqqxxx\r");
    term_expect(t, "no matches for 'zzzqqqxxx'", SLOW);
    term_send(t, "/tokens\r");
    term_expect(t, "conversation 1: 1 replies,", SLOW);
    term_send(t, "/export out.json\r");
    term_expect(t, "exported conversation 1 to out.json (JSON)", SLOW);
    term_send(t, "/new\r");
    term_expect(t, "new conversation", SLOW);
    term_send(t, "/load 1\r");
    term_expect(t, "loaded conversation 1: Tell a story about dragon. (2 messages)", SLOW);
    term_send(t, "/quit\r");
    assert_int_equal(term_wait(t, SLOW), 0);

    /* The export is the store's JSON document of that conversation. */
    char path[4300];
    snprintf(path, sizeof path, "%s/out.json", f->dir);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc) fail_msg("out.json: %s", je.text);
    assert_string_equal(json_string_value(json_object_get(doc, "format")), "confab-export");
    json_t *sessions = json_object_get(doc, "sessions");
    assert_int_equal(json_array_size(sessions), 1);
    json_t *msgs = json_object_get(json_array_get(sessions, 0), "messages");
    assert_int_equal(json_array_size(msgs), 2);
    json_decref(doc);

    /* /system and /template reached the store: the session's system prompt,
     * the filled template as the user's message, word granularity did not
     * change the text. */
    store_session s = {0};
    size_t n;
    store_message *m = only_session(f, 1, &s, &n);
    assert_string_equal(s.system_prompt, "You are a storyteller.");
    assert_int_equal(n, 2);
    assert_string_equal(m[0].content, "Tell a story about dragon.");
    assert_int_equal(m[1].status, STORE_COMPLETE);
    store_messages_free(m, n);
    store_session_clear(&s);
    term_free(t);
    fx_free(f);
}

static void ctrl_c_stops_the_reply_and_keeps_it_as_cancelled(void **state) {
    fx *f = fx_new();
    term *t = term_spawn(f, NULL);
    term_prompt(t, ">>> ");
    /* Random weights: no end-of-text in sight, the reply runs to the
     * context length (2048 tokens, seconds) unless stopped. */
    term_send(t, "/model noise\r");
    term_expect(t, "model: noise", SLOW);
    term_send(t, "hello there\r");
    term_expect(t, "Ctrl-C stops", SLOW);
    term_expect(t, " tok/s", SLOW); /* some tokens have streamed */
    term_send(t, "\x03");
    term_expect(t, "cancelled]", SLOW);
    term_prompt(t, ">>> ");
    /* Still running: the program answers a command. */
    term_send(t, "/tokens\r");
    term_expect(t, "conversation 1: 1 replies", SLOW);
    term_prompt(t, ">>> ");
    term_send(t, "\x04"); /* Ctrl-D */
    assert_int_equal(term_wait(t, SLOW), 0);
    store_session s = {0};
    size_t n;
    store_message *m = only_session(f, 1, &s, &n);
    assert_int_equal(n, 2);
    assert_string_equal(m[1].role, "assistant");
    assert_int_equal(m[1].status, STORE_CANCELLED);
    assert_string_equal(m[1].finish_reason, "cancelled");
    assert_true(strlen(m[1].content) > 0);
    assert_true(m[1].completion_tokens > 0 && m[1].completion_tokens < 2000);
    store_messages_free(m, n);
    store_session_clear(&s);
    term_free(t);
    fx_free(f);
}

static void ctrl_c_at_the_prompt_discards_the_line_and_ctrl_d_exits(void **state) {
    fx *f = fx_new();
    term *t = term_spawn(f, NULL);
    term_prompt(t, ">>> ");
    term_send(t, "this is never sent");
    term_expect(t, "never sent", SLOW);
    term_send(t, "\x03");
    term_expect(t, "^C", SLOW);
    term_prompt(t, ">>> ");
    term_send(t, "/sessions\r");
    term_expect(t, "no conversations yet", SLOW);
    term_prompt(t, ">>> ");
    term_send(t, "\x04");
    assert_int_equal(term_wait(t, SLOW), 0);
    /* Nothing was sent, so nothing was stored. */
    cf_err err = {0};
    store *st = store_open(f->db, 0, &err);
    assert_non_null(st);
    store_list_opts lo = {.limit = 10};
    store_session *v = NULL;
    size_t ns = 9;
    assert_int_equal(store_session_list(st, &lo, &v, &ns, &err), 0);
    assert_int_equal(ns, 0);
    store_close(st);
    term_free(t);
    fx_free(f);
}

static void multi_line_input_is_one_message(void **state) {
    fx *f = fx_new();
    term *t = term_spawn(f, NULL);
    term_prompt(t, ">>> ");
    term_send(t, "\"\"\"\r");
    term_prompt(t, "... ");
    term_send(t, "line one\r");
    term_prompt(t, "... ");
    term_send(t, "/not a command\r");
    term_prompt(t, "... ");
    term_send(t, "\"\"\"\r");
    term_expect(t, "[stories · ", SLOW);
    term_prompt(t, ">>> ");
    term_send(t, "first \\\r");
    term_prompt(t, "... ");
    term_send(t, "second\r");
    term_expect(t, "[stories · ", SLOW);
    term_prompt(t, ">>> ");
    term_send(t, "/quit\r");
    assert_int_equal(term_wait(t, SLOW), 0);
    store_session s = {0};
    size_t n;
    store_message *m = only_session(f, 1, &s, &n);
    assert_int_equal(n, 4);
    assert_string_equal(m[0].content, "line one\n/not a command");
    assert_string_equal(m[2].content, "first \nsecond");
    store_messages_free(m, n);
    store_session_clear(&s);
    /* The history file has the lines typed. */
    char hp[4300];
    snprintf(hp, sizeof hp, "%s/chat_history", f->data);
    char *h = tu_read_file(hp, NULL);
    assert_non_null(h);
    assert_non_null(strstr(h, "line"));
    free(h);
    term_free(t);
    fx_free(f);
}

static void session_flag_continues_a_conversation(void **state) {
    fx *f = fx_new();
    term *t = term_spawn(f, NULL);
    term_prompt(t, ">>> ");
    term_send(t, "The cat\r");
    term_expect(t, "[stories · ", SLOW);
    term_send(t, "/quit\r");
    assert_int_equal(term_wait(t, SLOW), 0);
    term_free(t);
    const char *args[] = {"--session", "1", NULL};
    t = term_spawn(f, args);
    term_expect(t, "continuing a conversation", SLOW);
    term_send(t, "The dog\r");
    term_expect(t, "[stories · ", SLOW);
    term_send(t, "/quit\r");
    assert_int_equal(term_wait(t, SLOW), 0);
    term_free(t);
    store_session s = {0};
    size_t n;
    store_message *m = only_session(f, 1, &s, &n);
    assert_int_equal(n, 4);
    assert_string_equal(m[2].content, "The dog");
    store_messages_free(m, n);
    store_session_clear(&s);
    /* An unknown session is a usage error. */
    const char *bad[] = {"--session", "77", NULL};
    t = term_spawn(f, bad);
    assert_int_equal(term_wait(t, SLOW), 2);
    assert_non_null(strstr(t->buf, "--session 77"));
    term_free(t);
    fx_free(f);
}

static void one_shot_run_is_pipe_friendly(void **state) {
    fx *f = fx_new();
    char cmd[16000];
    char *out = NULL;
    snprintf(cmd, sizeof cmd,
             "cd '%s' && '%s' run stories 'Once upon a time' --config c.yaml --data data -n 40",
             f->dir, tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_true(strlen(out) > 10);
    assert_null(strchr(out, '\x1b'));
    assert_int_equal(out[strlen(out) - 1], '\n');
    free(out);
    /* PROMPT - reads stdin; the turn is stored as a conversation. */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && printf 'Lily went to the park\\n' | '%s' run stories - --config c.yaml "
             "--data data -n 20",
             f->dir, tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_true(strlen(out) > 1);
    assert_null(strchr(out, '\x1b'));
    free(out);
    /* --no-save: answered, not stored. */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && '%s' run stories 'A bird' --no-save --config c.yaml --data data -n 10",
             f->dir, tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_true(strlen(out) > 1);
    free(out);
    cf_err err = {0};
    store *st = store_open(f->db, 0, &err);
    assert_non_null(st);
    store_list_opts lo = {.limit = 10};
    store_session *v = NULL;
    size_t ns = 0;
    assert_int_equal(store_session_list(st, &lo, &v, &ns, &err), 0);
    assert_int_equal(ns, 2);
    bool found = false;
    for (size_t i = 0; i < ns; i++)
        found |= !strcmp(v[i].title, "Lily went to the park");
    assert_true(found);
    store_sessions_free(v, ns);
    store_close(st);
    /* A GGUF path works as a model too. */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && '%s' run '%s' 'Once' --no-save --config c.yaml --data data -n 5", f->dir,
             tu_confab_bin(), td_path("models/stories260K.gguf"));
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_true(strlen(out) > 1);
    free(out);
    /* An unknown model: a clear message and exit code 2. */
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' run nosuch 'hi' --config c.yaml --data data 2>&1",
             f->dir, tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "unknown model 'nosuch'"));
    assert_non_null(strstr(out, "configured: stories, noise"));
    free(out);
    /* A missing prompt is a usage error. */
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' run stories --config c.yaml 2>&1", f->dir,
             tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "give MODEL and PROMPT"));
    free(out);
    /* The engine-level form is still the -m/-p one. */
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p 'Once upon' -n 4 --json", tu_confab_bin(),
             td_path("models/stories260K.gguf"));
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_int_equal(out[0], '{');
    free(out);
    /* ... also with its value-less --chat before --system VALUE. */
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p 'Hi' --chat --system 'Be brief' -n 3 --json",
             tu_confab_bin(), td_path("models/stories260K.gguf"));
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_int_equal(out[0], '{');
    free(out);
    fx_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(message_gets_a_streamed_reply_that_is_stored),
        cmocka_unit_test(slash_commands_work_and_bad_arguments_are_errors),
        cmocka_unit_test(ctrl_c_stops_the_reply_and_keeps_it_as_cancelled),
        cmocka_unit_test(ctrl_c_at_the_prompt_discards_the_line_and_ctrl_d_exits),
        cmocka_unit_test(multi_line_input_is_one_message),
        cmocka_unit_test(session_flag_continues_a_conversation),
        cmocka_unit_test(one_shot_run_is_pipe_friendly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
