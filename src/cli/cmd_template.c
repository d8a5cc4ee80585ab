/*
 * cmd_template — `confab template render`: renders a chat template with a
 * conversation read from a JSON file and writes the prompt to stdout,
 * byte-exact and nothing else (no trailing newline), so the output can be
 * diffed against other implementations or piped to the tokenizer.
 *
 * The template comes from a file (--template), a built-in (--builtin), or a
 * model's GGUF metadata (-m: tokenizer.chat_template, with the BOS/EOS token
 * strings looked up from tokenizer.ggml.tokens by their ids). --bos/--eos
 * override the token strings; --tools FILE.json defines `tools` (otherwise
 * it stays undefined, as in apply_chat_template without tools); --var
 * NAME=VALUE passes more variables (enable_thinking=false, ...).
 */
#include "base/sb.h"
#include "cli/cli.h"
#include "engine/chat_template.h"
#include "engine/gguf.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads all of PATH ("-" = stdin) into a malloc'd NUL-terminated buffer. */
static char *read_all(const char *path, size_t *len, cf_err *err) {
    bool is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        cf_seterr(err, CF_EIO, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    sb_t b = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_appendn(&b, buf, n);
    bool bad = ferror(f);
    if (!is_stdin) fclose(f);
    if (bad) {
        sb_free(&b);
        cf_seterr(err, CF_EIO, "cannot read %s", path);
        return NULL;
    }
    *len = b.len;
    return sb_take(&b);
}

/* Token string of the id stored under KEY (e.g. tokenizer.ggml.bos_token_id). */
static char *token_string(const gguf_file *g, const char *key) {
    uint32_t id;
    gguf_vtype et;
    uint64_t n;
    if (!gguf_get_u32(g, key, &id)) return NULL;
    if (!gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) || et != GGUF_TYPE_STRING || id >= n)
        return NULL;
    return gguf_str_dup(gguf_arr_str(g, "tokenizer.ggml.tokens", id));
}

/* Loads the chat template and BOS/EOS strings of a GGUF model. */
static int load_model_template(const char *path, char **tmpl, char **bos, char **eos, cf_err *err) {
    gguf_file *g = gguf_open(path, err);
    if (!g) return err->code;
    gguf_str s;
    if (!gguf_get_str(g, "tokenizer.chat_template", &s)) {
        gguf_close(g);
        return cf_seterr(err, CF_ENOTFOUND,
                         "%s has no tokenizer.chat_template; use --builtin NAME (chatml, llama2, "
                         "llama3, mistral, "
                         "gemma, phi3)",
                         path);
    }
    *tmpl = gguf_str_dup(s);
    *bos = token_string(g, "tokenizer.ggml.bos_token_id");
    *eos = token_string(g, "tokenizer.ggml.eos_token_id");
    gguf_close(g);
    return 0;
}

/* Reads PATH as a JSON array; prints the reason and returns NULL when it is
 * unreadable, not JSON, or not an array. */
static json_t *load_json_array(const char *path, const char *what) {
    cf_err err = {0};
    size_t len;
    char *text = read_all(path, &len, &err);
    if (!text) {
        fprintf(stderr, "confab: %s\n", err.msg);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_ALLOW_NUL, &je);
    free(text);
    if (!j) {
        fprintf(stderr, "confab: %s: invalid JSON at line %d, column %d: %s\n", path, je.line,
                je.column, je.text);
        return NULL;
    }
    if (!json_is_array(j)) {
        fprintf(stderr, "confab: %s: expected a JSON array of %s\n", path, what);
        json_decref(j);
        return NULL;
    }
    return j;
}

static int render_main(int argc, char **argv) {
    const char *tfile = NULL, *builtin = NULL, *model = NULL, *msgs = NULL, *bos = NULL,
               *eos = NULL, *tools_file = NULL;
    bool agp = false;
    json_t *extra = json_object();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "--var")) {
            /* --var NAME=VALUE: VALUE is JSON (true, 3, "s", [..]) or else a string */
            const char *eq = i + 1 < argc ? strchr(argv[i + 1], '=') : NULL;
            if (!eq || eq == argv[i + 1]) {
                json_decref(extra);
                return cli_usage_error("template", "--var needs NAME=VALUE");
            }
            char *name = strndup(argv[i + 1], (size_t)(eq - argv[i + 1]));
            json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
            if (!v) v = json_string(eq + 1);
            if (!v) {
                free(name);
                json_decref(extra);
                return cli_usage_error("template", "--var %s: value is not valid UTF-8",
                                       argv[i + 1]);
            }
            json_object_set_new(extra, name, v);
            free(name);
            i++;
            continue;
        }
        if (!strcmp(a, "--template"))
            slot = &tfile;
        else if (!strcmp(a, "--builtin"))
            slot = &builtin;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            slot = &model;
        else if (!strcmp(a, "--messages"))
            slot = &msgs;
        else if (!strcmp(a, "--bos"))
            slot = &bos;
        else if (!strcmp(a, "--eos"))
            slot = &eos;
        else if (!strcmp(a, "--tools"))
            slot = &tools_file;
        else if (!strcmp(a, "--add-generation-prompt")) {
            agp = true;
            continue;
        } else {
            json_decref(extra);
            return cli_usage_error("template", "unknown option '%s'", a);
        }
        if (i + 1 >= argc) {
            json_decref(extra);
            return cli_usage_error("template", "%s needs a value", a);
        }
        *slot = argv[++i];
    }
    if ((tfile != NULL) + (builtin != NULL) + (model != NULL) != 1) {
        json_decref(extra);
        return cli_usage_error(
            "template", "give exactly one of --template FILE, --builtin NAME, -m MODEL.gguf");
    }
    if (!msgs) {
        json_decref(extra);
        return cli_usage_error("template", "--messages FILE.json is required");
    }

    cf_err err = {0};
    char *src = NULL, *mbos = NULL, *meos = NULL;
    size_t len;
    if (tfile) {
        src = read_all(tfile, &len, &err);
        if (src && strlen(src) != len) {
            free(src);
            src = NULL;
            cf_seterr(&err, CF_EFORMAT, "%s contains a NUL byte", tfile);
        }
    } else if (builtin) {
        const char *b = tmpl_builtin(builtin);
        if (!b) {
            sb_t names = {0};
            for (const char *const *n = tmpl_builtin_names(); *n; n++)
                sb_printf(&names, "%s%s", names.len ? ", " : "", *n);
            int rc = cli_usage_error("template", "unknown built-in template '%s' (known: %s)",
                                     builtin, sb_str(&names));
            sb_free(&names);
            json_decref(extra);
            return rc;
        }
        src = strdup(b);
    } else {
        load_model_template(model, &src, &mbos, &meos, &err);
    }
    if (!src) {
        fprintf(stderr, "confab: %s\n", err.msg);
        json_decref(extra);
        return 1;
    }

    int rc = 1;
    json_t *tools = NULL;
    json_t *messages = load_json_array(msgs, "{\"role\", \"content\"} messages");
    if (!messages) goto out;
    if (tools_file && !(tools = load_json_array(tools_file, "tool definitions"))) goto out;
    for (size_t i = 0; i < json_array_size(messages); i++) {
        json_t *m = json_array_get(messages, i);
        if (!json_is_object(m) || !json_is_string(json_object_get(m, "role"))) {
            fprintf(stderr, "confab: %s: message %zu is not an object with a string \"role\"\n",
                    msgs, i);
            goto out;
        }
    }
    sb_t out = {0};
    tmpl_input in = {.messages = messages,
                     .add_generation_prompt = agp,
                     .bos = bos ? bos : mbos,
                     .eos = eos ? eos : meos,
                     .tools = tools,
                     .extra = extra};
    if (tmpl_render_ex(src, &in, &out, &err)) {
        fprintf(stderr, "confab: template: %s\n", err.msg);
        sb_free(&out);
        goto out;
    }
    rc = fwrite(out.data ? out.data : "", 1, out.len, stdout) == out.len && fflush(stdout) == 0 ? 0
                                                                                                : 1;
    sb_free(&out);
out:
    json_decref(extra);
    json_decref(messages);
    json_decref(tools);
    free(src);
    free(mbos);
    free(meos);
    return rc;
}

int cmd_template(int argc, char **argv) {
    if (argc < 2) return cli_usage_error("template", "missing subcommand (render)");
    if (!strcmp(argv[1], "render")) return render_main(argc - 1, argv + 1);
    return cli_usage_error("template", "unknown subcommand '%s' (render)", argv[1]);
}
