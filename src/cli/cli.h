/*
 * cli — the `confab <command>` front end.
 *
 * Every subcommand is one row of the table in commands.c: name, one-line
 * summary, usage text and the function that runs it. A command function gets
 * argv with argv[0] = the command name, returns the process exit code
 * (0 ok, 1 failure, 2 usage error), and prints its own errors.
 */
#ifndef CONFAB_CLI_H
#define CONFAB_CLI_H

typedef struct {
    const char *name;
    const char *summary; /* one line for `confab help` */
    const char *usage;   /* full text for `confab help NAME` */
    int (*run)(int argc, char **argv);
} cli_command;

/* The command table, terminated by a row with name == NULL. */
extern const cli_command cli_commands[];

/* Looks a command up by name; NULL when unknown. */
const cli_command *cli_find(const char *name);

/* Prints "confab: MSG" and the command's usage to stderr; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints the general usage (list of commands) to F. */
void cli_print_usage(void *f);

/* Entry point used by main(): strips global flags (--log-level L),
 * dispatches, returns the exit code. */
int cli_main(int argc, char **argv);

/* Commands (one function per row of the table). */
int cmd_help(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_gguf(int argc, char **argv);
int cmd_sessions(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_run_chat(int argc, char **argv); /* `confab run MODEL PROMPT` (cmd_chat.c) */
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_pull(int argc, char **argv);

#endif
