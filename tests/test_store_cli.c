/* Tests for `confab sessions`: they drive the built binary on a temporary
 * database and check exit codes, text and --json output. */
#include "testutil.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *dir;
    char db[4096];
} cli_fx;

static int setup(void **state) {
    cli_fx *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    snprintf(f->db, sizeof f->db, "%s/data/confab.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    cli_fx *f = *state;
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Runs `confab sessions ARGS --db DB` (stderr folded into the output). */
static int run(cli_fx *f, char **out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(cli_fx *f, char **out, const char *fmt, ...) {
    char args[4096], cmd[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' sessions %s --db '%s' 2>&1", f->dir, tu_confab_bin(),
             args, f->db);
    char *o = NULL;
    int rc = tu_run(cmd, &o);
    if (out)
        *out = o;
    else
        free(o);
    return rc;
}

static const char *DOC =
    "{\"format\":\"confab-export\",\"version\":1,\"sessions\":[\n"
    " {\"uuid\":\"11111111-1111-4111-8111-111111111111\",\"title\":\"Rice cooking\","
    "\"created_at\":\"2026-01-02T10:00:00.000Z\",\"updated_at\":\"2026-01-02T10:05:00.000Z\","
    "\"model\":\"qwen\","
    "\"messages\":[\n"
    "  {\"uuid\":\"21111111-1111-4111-8111-111111111111\",\"role\":\"user\",\"content\":\"How do I "
    "cook rice?\","
    "\"created_at\":\"2026-01-02T10:00:00.000Z\"},\n"
    "  "
    "{\"uuid\":\"31111111-1111-4111-8111-111111111111\",\"parent\":\"21111111-1111-4111-8111-"
    "111111111111\","
    "\"role\":\"assistant\",\"content\":\"Rinse the rice, then simmer it covered.\","
    "\"created_at\":\"2026-01-02T10:00:01.000Z\",\"model\":\"qwen\",\"provider\":\"local\"}]},\n"
    " {\"uuid\":\"41111111-1111-4111-8111-111111111111\",\"title\":\"Pasta\","
    "\"created_at\":\"2026-01-03T10:00:00.000Z\",\"updated_at\":\"2026-01-03T10:00:00.000Z\","
    "\"messages\":[]}]}\n";

static void seed(cli_fx *f) {
    char p[4200];
    snprintf(p, sizeof p, "%s/in.json", f->dir);
    assert_int_equal(tu_write_file(p, DOC, strlen(DOC)), 0);
    char *out;
    assert_int_equal(run(f, &out, "import in.json"), 0);
    assert_non_null(strstr(out, "imported 2 sessions, 2 messages"));
    free(out);
}

static void sessions_list_on_a_missing_database_fails_without_creating_it(void **state) {
    cli_fx *f = *state;
    char *out;
    assert_int_equal(run(f, &out, "list"), 1);
    assert_non_null(strstr(out, "no database at"));
    free(out);
    assert_int_not_equal(access(f->db, F_OK), 0);
}

static void sessions_import_then_list_newest_first_as_text_and_json(void **state) {
    cli_fx *f = *state;
    seed(f);
    char *out;
    assert_int_equal(run(f, &out, "list"), 0);
    char *pasta = strstr(out, "Pasta"), *rice = strstr(out, "Rice cooking");
    assert_non_null(pasta);
    assert_non_null(rice);
    assert_true(pasta < rice);
    free(out);
    assert_int_equal(run(f, &out, "list --json --limit 1 --offset 1"), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_array_size(j), 1);
    json_t *s = json_array_get(j, 0);
    assert_string_equal(json_string_value(json_object_get(s, "title")), "Rice cooking");
    assert_int_equal(json_integer_value(json_object_get(s, "messages")), 2);
    assert_string_equal(json_string_value(json_object_get(s, "uuid")),
                        "11111111-1111-4111-8111-111111111111");
    json_decref(j);
    free(out);
    /* A second import adds nothing. */
    assert_int_equal(run(f, &out, "import in.json --json"), 0);
    j = json_loads(out, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "sessions_added")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "messages_existing")), 2);
    json_decref(j);
    free(out);
}

static void sessions_search_finds_and_highlights(void **state) {
    cli_fx *f = *state;
    seed(f);
    char *out;
    assert_int_equal(run(f, &out, "search simmer --json"), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_array_size(j), 1);
    json_t *h = json_array_get(j, 0);
    assert_string_equal(json_string_value(json_object_get(h, "kind")), "message");
    assert_string_equal(json_string_value(json_object_get(h, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(h, "snippet")),
                        "Rinse the rice, then **simmer** it covered.");
    json_decref(j);
    free(out);
    assert_int_equal(run(f, &out, "search '\"cook rice' --since 2026-01-02 --until 2026-01-02"), 0);
    assert_non_null(strstr(out, "How do I **cook** **rice**?"));
    free(out);
    assert_int_equal(run(f, &out, "search rice --session 41111111-1111-4111-8111-111111111111"), 0);
    assert_non_null(strstr(out, "no matches"));
    free(out);
    assert_int_equal(run(f, &out, "search '(rice' --raw"), 1);
    assert_non_null(strstr(out, "bad search query"));
    free(out);
}

static void sessions_show_and_export_markdown_print_the_conversation(void **state) {
    cli_fx *f = *state;
    seed(f);
    char *out;
    assert_int_equal(run(f, &out, "show 1"), 0);
    assert_non_null(strstr(out, "title:   Rice cooking"));
    assert_non_null(strstr(out, "Rinse the rice, then simmer it covered."));
    free(out);
    assert_int_equal(run(f, &out, "export 11111111-1111-4111-8111-111111111111 --format markdown"),
                     0);
    assert_non_null(strstr(out, "# Rice cooking\n"));
    assert_non_null(strstr(out, "## assistant · qwen (local) · 2026-01-02T10:00:01.000Z\n"));
    free(out);
}

static void sessions_export_all_to_a_file_reimports_elsewhere(void **state) {
    cli_fx *f = *state;
    seed(f);
    char *out;
    assert_int_equal(run(f, &out, "export --all -o all.json"), 0);
    free(out);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' sessions import all.json --db other.db --json 2>&1",
             f->dir, tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "sessions_added")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "messages_added")), 2);
    json_decref(j);
    free(out);
}

static void sessions_rename_and_delete_change_the_store(void **state) {
    cli_fx *f = *state;
    seed(f);
    char *out;
    assert_int_equal(run(f, &out, "rename 2 'Pasta night'"), 0);
    assert_non_null(strstr(out, "renamed session 2"));
    free(out);
    assert_int_equal(run(f, &out, "archive 2"), 0);
    free(out);
    assert_int_equal(run(f, &out, "list"), 0);
    assert_null(strstr(out, "Pasta"));
    free(out);
    assert_int_equal(run(f, &out, "list --all"), 0);
    assert_non_null(strstr(out, "Pasta night  [archived]"));
    free(out);
    assert_int_equal(run(f, &out, "delete 1 --json"), 0);
    assert_non_null(strstr(out, "\"deleted\""));
    free(out);
    assert_int_equal(run(f, &out, "search rice"), 0);
    assert_non_null(strstr(out, "no matches"));
    free(out);
    assert_int_equal(run(f, &out, "rename 99 x"), 1);
    assert_non_null(strstr(out, "no session 99"));
    free(out);
    assert_int_equal(run(f, &out, "delete 1"), 1);
    free(out);
}

static void sessions_bad_usage_exits_2(void **state) {
    cli_fx *f = *state;
    seed(f);
    static const char *const bad[] = {
        "",                           /* no subcommand */
        "frobnicate",                 /* unknown subcommand */
        "list --bogus",               /* unknown option */
        "list --raw",                 /* option of another subcommand */
        "list --limit ten",           /* not a number */
        "list extra",                 /* stray argument */
        "show",                       /* missing argument */
        "rename 1",                   /* missing title */
        "search x --since yesterday", /* bad date */
        "export",                     /* nothing to export */
        "export 1 --all",             /* both */
        "export 1 --format pdf",      /* unknown format */
        "list --limit",               /* option without value */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out;
        int rc = run(f, &out, "%s", bad[i]);
        if (rc != 2) fprintf(stderr, "'%s' exited %d: %s\n", bad[i], rc, out);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(out, "usage: confab sessions"));
        free(out);
    }
}

static void sessions_import_of_a_bad_file_reports_the_place_and_imports_nothing(void **state) {
    cli_fx *f = *state;
    seed(f);
    char p[4200];
    snprintf(p, sizeof p, "%s/bad.json", f->dir);
    const char *bad =
        "{\"format\":\"confab-export\",\"version\":1,\"sessions\":[\n"
        " {\"uuid\":\"51111111-1111-4111-8111-111111111111\",\"title\":\"new\","
        "\"created_at\":\"2026-01-02T10:00:00.000Z\",\"updated_at\":\"2026-01-02T10:00:00.000Z\","
        "\"messages\":[{\"uuid\":\"61111111-1111-4111-8111-111111111111\",\"role\":\"wizard\","
        "\"content\":\"x\",\"created_at\":\"2026-01-02T10:00:00.000Z\"}]}]}";
    assert_int_equal(tu_write_file(p, bad, strlen(bad)), 0);
    char *out;
    assert_int_equal(run(f, &out, "import bad.json"), 1);
    assert_non_null(strstr(out, "bad.json: sessions[0].messages[0].role: 'wizard' is not"));
    assert_non_null(strstr(out, "nothing imported"));
    free(out);
    assert_int_equal(tu_write_file(p, "{\"format\": \n\n  [", 16), 0);
    assert_int_equal(run(f, &out, "import bad.json"), 1);
    assert_non_null(strstr(out, "line 3 column"));
    free(out);
    assert_int_equal(run(f, &out, "list --json --all"), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_int_equal(json_array_size(j), 2);
    json_decref(j);
    free(out);
    assert_int_equal(run(f, &out, "import missing.json"), 1);
    assert_non_null(strstr(out, "cannot read missing.json"));
    free(out);
}

static void sessions_on_a_corrupt_database_fails_clearly(void **state) {
    cli_fx *f = *state;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data", f->dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    const char junk[] =
        "SQLite format 2? no, this is a shopping list: eggs, milk, flour, sugar, butter.\n";
    assert_int_equal(tu_write_file(f->db, junk, sizeof junk - 1), 0);
    char *out;
    assert_int_equal(run(f, &out, "list"), 1);
    assert_non_null(strstr(out, "is not a confab database"));
    free(out);
    size_t n;
    char *back = tu_read_file(f->db, &n);
    assert_int_equal(n, sizeof junk - 1);
    assert_memory_equal(back, junk, n);
    free(back);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(sessions_list_on_a_missing_database_fails_without_creating_it),
        T(sessions_import_then_list_newest_first_as_text_and_json),
        T(sessions_search_finds_and_highlights),
        T(sessions_show_and_export_markdown_print_the_conversation),
        T(sessions_export_all_to_a_file_reimports_elsewhere),
        T(sessions_rename_and_delete_change_the_store),
        T(sessions_bad_usage_exits_2),
        T(sessions_import_of_a_bad_file_reports_the_place_and_imports_nothing),
        T(sessions_on_a_corrupt_database_fails_clearly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
