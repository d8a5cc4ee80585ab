/*
 * cmd_tokenize — `confab tokenize -m MODEL.gguf [--no-bos] [--special] TEXT`:
 * prints the token ids of TEXT (`-` reads stdin) as one JSON array.
 *
 * BOS/EOS are added as the model's vocabulary says (--no-bos leaves BOS
 * out); --special lets control tokens written in TEXT ("<|eot_id|>")
 * become those tokens. Only the vocabulary is read from the file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sb.h"
#include "cli/cli.h"
#include "engine/tokenizer.h"

static int read_stdin(sb_t *s) {
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        sb_appendn(s, buf, n);
    return ferror(stdin) ? -1 : 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL;
    bool no_bos = false, special = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (i + 1 >= argc) return cli_usage_error("tokenize", "%s needs a file", a);
            model = argv[++i];
        } else if (!strncmp(a, "--model=", 8)) {
            model = a + 8;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--")) {
            if (i + 1 < argc && !text) text = argv[++i];
            if (i + 1 < argc)
                return cli_usage_error("tokenize", "give the text as one argument (quote it)");
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("tokenize", "unknown option '%s'", a);
        } else if (text) {
            return cli_usage_error("tokenize",
                                   "give the text as one argument (quote it), or - for stdin");
        } else {
            text = a;
        }
    }
    if (!model) return cli_usage_error("tokenize", "missing -m MODEL.gguf");
    if (!text) return cli_usage_error("tokenize", "missing TEXT (or - to read stdin)");

    sb_t in = {0};
    if (!strcmp(text, "-")) {
        if (read_stdin(&in) != 0) {
            fprintf(stderr, "confab: tokenize: cannot read stdin\n");
            sb_free(&in);
            return 1;
        }
    } else {
        sb_append(&in, text);
    }

    cf_err err = {0};
    tok_tokenizer *t = tok_load(model, &err);
    if (!t) {
        fprintf(stderr, "confab: tokenize: %s\n", err.msg);
        sb_free(&in);
        return 1;
    }
    tok_ids ids = {0};
    if (tok_add_bos(t) && !no_bos) tok_ids_push(&ids, tok_bos(t));
    int rc = tok_encode(t, in.data ? in.data : "", in.len, false, special, &ids, &err);
    if (rc == 0 && tok_add_eos(t)) tok_ids_push(&ids, tok_eos(t));
    if (rc != 0) {
        fprintf(stderr, "confab: tokenize: %s\n", err.msg);
    } else {
        sb_t out = {0};
        sb_putc(&out, '[');
        for (size_t i = 0; i < ids.n; i++)
            sb_printf(&out, "%s%d", i ? ", " : "", ids.v[i]);
        sb_append(&out, "]\n");
        fwrite(out.data, 1, out.len, stdout);
        sb_free(&out);
    }
    tok_ids_free(&ids);
    tok_free(t);
    sb_free(&in);
    return rc ? 1 : 0;
}
