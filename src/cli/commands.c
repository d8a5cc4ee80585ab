/*
 * commands — the one table of `confab` subcommands and the dispatcher.
 * To add a command: write `int cmd_x(int argc, char **argv)` in its own
 * src/cli/cmd_x.c, declare it in cli.h and add a row here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "cli/cli.h"

const cli_command cli_commands[] = {
    {"help", "show help for confab or one command", "confab help [COMMAND]", cmd_help},
    {"version", "print version, build, CPU features and library versions", "confab version",
     cmd_version},
    {"config", "check and show the configuration",
     "confab config check|show [--config FILE]\n"
     "  check   load the config (search order: --config, $CONFAB_CONFIG, ./confab.yaml,\n"
     "          ~/.config/confab/config.yaml), report errors and warnings\n"
     "  show    print the effective config as JSON (API keys masked)",
     cmd_config},
    {"serve", "run the HTTP server (OpenAI-compatible API, WebSocket, web UI)",
     "confab serve [--host H] [--port P] [--data DIR] [--config FILE] [-m MODEL]\n"
     "             [--insecure-no-auth] [--shutdown-grace SECONDS] [--no-pull]\n"
     "  --host H            address to listen on (default 127.0.0.1; any other address needs\n"
     "                      server.api_keys in the config, or --insecure-no-auth)\n"
     "  --port P            port (default 8080; 0 picks a free one)\n"
     "  --data DIR          data directory (default storage.data_dir, ./data)\n"
     "  -m MODEL            default model: a configured name, a GGUF path, or a short name\n"
     "                      of a file in the models directory (e.g. -m smollm2)\n"
     "  --no-pull           with no model configured or present, do not download the default\n"
     "  --shutdown-grace S  on SIGTERM/SIGINT, let streams finish for S seconds (default 10)",
     cmd_serve},
    {"template", "render a chat template with a conversation (byte-exact prompt)",
     "confab template render (--template FILE.jinja | --builtin NAME | -m MODEL.gguf) --messages "
     "FILE.json|-\n"
     "                       [--add-generation-prompt] [--bos S] [--eos S] [--tools FILE.json]\n"
     "                       [--var NAME=JSON]...\n"
     "  NAME: chatml, llama2, llama3, mistral, gemma, phi3",
     cmd_template},
    {"quantize", "convert a GGUF model's weights to a smaller type",
     "confab quantize [-t THREADS] IN.gguf OUT.gguf TYPE   (TYPE: F16, BF16, Q8_0, Q6_K, Q5_K_M, "
     "Q4_K_M, Q4_0, Q3_K_M, Q2_K)",
     cmd_quantize},
    {"gguf", "validate a GGUF file and list its metadata and tensors", "confab gguf FILE",
     cmd_gguf},
    {"sessions", "list, show, search, export, import, rename, archive, delete conversations",
     "confab sessions SUBCOMMAND [--db PATH] [--json] ...\n"
     "  list   [--all] [--owner NAME] [--limit N] [--offset N]   newest first; --all adds "
     "archived\n"
     "  show   SESSION                                         a session and its messages\n"
     "  search QUERY [--session SESSION] [--since DATE] [--until DATE] [--limit N] [--offset N] "
     "[--raw]\n"
     "  export SESSION|--all [--format json|markdown] [-o FILE]\n"
     "  import FILE|-                                          JSON from export; re-import adds "
     "nothing\n"
     "  rename SESSION TITLE\n"
     "  archive SESSION [--undo]\n"
     "  delete SESSION                                         with its messages\n"
     "SESSION is an id or a uuid; --db defaults to the config's storage.data_dir/storage.db\n"
     "(./data/confab.db); --config FILE names the config",
     cmd_sessions},
    {"stats", "tokens and cost of stored replies; A/B results",
     "confab stats [ab] [--by model|day|session] [--since DATE] [--json] [--db PATH] [--config "
     "FILE]\n"
     "  stats      replies, prompt/completion tokens, cached replies and cost, grouped --by "
     "(default model)\n"
     "  stats ab   usage per A/B variant and win rates from compare-mode votes, with counts",
     cmd_stats},
    {"tokenize", "print the token ids of a text as a JSON array",
     "confab tokenize -m MODEL.gguf [--no-bos] [--special] TEXT   (TEXT - reads stdin)",
     cmd_tokenize},
    {"detokenize", "print the text of token ids",
     "confab detokenize -m MODEL.gguf [--special] IDS...   (ids as arguments or one JSON array)",
     cmd_detokenize},
    {"chat", "chat in the terminal (same sessions, models and cache as serve)",
     "confab chat [-m MODEL] [--session ID | --new] [--config FILE] [--data DIR]\n"
     "  -m MODEL      a configured model, a GGUF path, or a short name in the models directory\n"
     "  --session ID  continue a conversation (id or uuid, e.g. from /sessions or the web UI)\n"
     "  --new         start a new conversation (the default)\n"
     "  --data DIR    data directory (default storage.data_dir, ./data); history: "
     "DIR/chat_history\n"
     "Commands: /help /new /sessions /load ID /search QUERY /export FILE /template NAME k=v ...\n"
     "          /model NAME /temp X /system TEXT /tokens /stream token|word|sentence /quit\n"
     "Input: a line ending in \\ continues; \"\"\" on its own line opens and closes a block.\n"
     "Ctrl-C stops a reply (kept as cancelled) or clears the line; Ctrl-D or /quit exits.",
     cmd_chat},
    {"run", "one-shot chat with a model, or generate with a GGUF model (engine level)",
     "confab run MODEL PROMPT [--system TEXT] [--temp T] [--seed S] [-n N] [--stream MODE]\n"
     "           [--no-save] [--config FILE] [--data DIR]\n"
     "  through the chat service: MODEL is a configured model, a GGUF path or a short name;\n"
     "  PROMPT - reads stdin. The reply goes to stdout (no colours or status when it is not a\n"
     "  terminal); it is saved as a conversation unless --no-save. Exit 1 on error, 2 on a\n"
     "  usage error or unknown model, 130 when Ctrl-C stopped it.\n"
     "confab run -m MODEL.gguf (-p TEXT [--chat [--system TEXT]] | --prompt-ids \"1 15043 ...\")\n"
     "           [-n N] [--temp T] [--seed S]\n"
     "           [--threads N] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]\n"
     "           [--ctx N] [--kv-f32] [--ignore-eos] [--stop STR]... [--json] [--logits-out FILE]\n"
     "  the engine directly (no store; --chat applies the model's chat template). The first\n"
     "  form is used whenever a bare argument (not an option or an option's value) is present.",
     cmd_run},
    {"bench", "measure prompt and generation speed (pp512 / tg128 like llama-bench)",
     "confab bench -m MODEL.gguf [-p 512] [-n 128] [-t THREADS] [-r REPS] [--json]", cmd_bench},
    {"mkmodel", "write a random-weight GGUF model of a given architecture and shape",
     "confab mkmodel --arch llama|qwen2|qwen3 --dim D --layers L --heads H [--kv-heads K]\n"
     "               [--ffn F] [--head-dim HD] [--ctx N] [--vocab-from VOCAB.gguf | --vocab N]\n"
     "               [--type F32|F16|BF16|Q8_0|Q4_0|Q4_K|Q5_K|Q6_K|Q4_K_M] [--tied] [--seed S]\n"
     "               [--rope-base B] [--rope-scaling linear:F|llama3:F] -o OUT.gguf",
     cmd_mkmodel},
    {"models", "list local GGUF models, resolve a short name, remove one",
     "confab models [list] [--json] | which NAME | rm NAME   [--models-dir DIR] [--config FILE]\n"
     "  list    every *.gguf in the models directory: architecture, parameters, quantization,\n"
     "          size, context length, chat template (corrupt files listed as INVALID)\n"
     "  which   print the file a short name resolves to (-m NAME uses the same rules)\n"
     "  rm      delete a model by short name (refuses ambiguous names)\n"
     "The directory: --models-dir, $CONFAB_MODELS_DIR, or storage.data_dir/storage.models_dir\n"
     "(./data/models by default)",
     cmd_models},
    {"pull", "download a GGUF model (Hugging Face or URL) into the models directory",
     "confab pull hf:ORG/REPO/FILE.gguf | https://HOST/.../FILE.gguf [--sha256 HEX] [-o NAME]\n"
     "            [--models-dir DIR] [--config FILE]\n"
     "Resumes an interrupted download (FILE.gguf.part), checks the sha256 (--sha256, or the\n"
     "digest the server publishes) and the GGUF header, then renames into place.\n"
     "hf: uses $CONFAB_HF_ENDPOINT (default https://huggingface.co); $HF_TOKEN for gated repos",
     cmd_pull},
    {NULL, NULL, NULL, NULL},
};

const cli_command *cli_find(const char *name) {
    for (const cli_command *c = cli_commands; c->name; c++)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

void cli_print_usage(void *fp) {
    FILE *f = fp;
    fprintf(f, "usage: confab [--log-level debug|info|warn|error] <command> [args]\n\ncommands:\n");
    for (const cli_command *c = cli_commands; c->name; c++)
        fprintf(f, "  %-12s %s\n", c->name, c->summary);
    fprintf(f, "\nRun 'confab help <command>' for a command's options.\n");
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "confab: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    const cli_command *c = cmd ? cli_find(cmd) : NULL;
    if (c)
        fprintf(stderr, "usage: %s\n", c->usage);
    else
        cli_print_usage(stderr);
    return 2;
}

int cmd_help(int argc, char **argv) {
    if (argc < 2) {
        cli_print_usage(stdout);
        return 0;
    }
    const cli_command *c = cli_find(argv[1]);
    if (!c) return cli_usage_error(NULL, "unknown command '%s'", argv[1]);
    printf("confab %s — %s\n\nusage: %s\n", c->name, c->summary, c->usage);
    return 0;
}

int cli_main(int argc, char **argv) {
    /* Global flags may appear anywhere; strip them before dispatch. */
    int n = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (!strcmp(a, "--log-level")) {
            if (i + 1 >= argc) return cli_usage_error(NULL, "--log-level needs a value");
            val = argv[++i];
        } else if (!strncmp(a, "--log-level=", 12)) {
            val = a + 12;
        }
        if (val) {
            log_level lvl;
            if (log_parse_level(val, &lvl) != 0)
                return cli_usage_error(
                    NULL, "unknown log level '%s' (debug, info, warn, error, off)", val);
            log_set_level(lvl);
            continue;
        }
        argv[n++] = argv[i];
    }
    argc = n;
    if (argc < 2) {
        cli_print_usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h")) return cmd_help(1, argv + 1);
    if (!strcmp(name, "--version")) return cmd_version(1, argv + 1);
    const cli_command *c = cli_find(name);
    if (!c) return cli_usage_error(NULL, "unknown command '%s'", name);
    /* `confab CMD --help` shows that command's help. */
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            char *hv[] = {"help", (char *)c->name};
            return cmd_help(2, hv);
        }
    }
    return c->run(argc - 1, argv + 1);
}
