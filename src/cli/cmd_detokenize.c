/*
 * cmd_detokenize — `confab detokenize -m MODEL.gguf [--special] IDS...`:
 * prints the text of the token ids, exactly, with no newline added.
 *
 * IDS may be separate arguments or one JSON array as `confab tokenize`
 * prints it ("[1, 15043, 3186]"). Control tokens print only with
 * --special; for SentencePiece vocabularies the space that tokenizing
 * adds in front is removed again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sb.h"
#include "cli/cli.h"
#include "engine/tokenizer.h"

/* Appends the integers in S (separated by spaces, commas or brackets) to
 * IDS; returns -1 and names the bad part in BAD when something else is there. */
static int parse_ids(const char *s, tok_ids *ids, char *bad, size_t badsz) {
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '[' || *p == ']' || *p == '\t' || *p == '\n')
            p++;
        if (!*p) return 0;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX ||
            (*end && !strchr(" ,[]\t\n", *end))) {
            snprintf(bad, badsz, "%.*s", (int)strcspn(p, " ,[]\t\n"), p);
            return -1;
        }
        tok_ids_push(ids, (int32_t)v);
        p = end;
    }
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    bool special = false;
    tok_ids ids = {0};
    bool any = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (i + 1 >= argc) {
                tok_ids_free(&ids);
                return cli_usage_error("detokenize", "%s needs a file", a);
            }
            model = argv[++i];
        } else if (!strncmp(a, "--model=", 8)) {
            model = a + 8;
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
            tok_ids_free(&ids);
            return cli_usage_error("detokenize", "unknown option '%s'", a);
        } else {
            char bad[64];
            if (parse_ids(a, &ids, bad, sizeof bad) != 0) {
                tok_ids_free(&ids);
                return cli_usage_error("detokenize", "'%s' is not a token id", bad);
            }
            any = true;
        }
    }
    if (!model) {
        tok_ids_free(&ids);
        return cli_usage_error("detokenize", "missing -m MODEL.gguf");
    }
    if (!any) {
        tok_ids_free(&ids);
        return cli_usage_error("detokenize", "missing token ids");
    }
    cf_err err = {0};
    tok_tokenizer *t = tok_load(model, &err);
    if (!t) {
        fprintf(stderr, "confab: detokenize: %s\n", err.msg);
        tok_ids_free(&ids);
        return 1;
    }
    sb_t out = {0};
    int rc = tok_decode(t, ids.v, ids.n, special, &out, &err);
    if (rc)
        fprintf(stderr, "confab: detokenize: %s\n", err.msg);
    else
        fwrite(out.data ? out.data : "", 1, out.len, stdout);
    sb_free(&out);
    tok_free(t);
    tok_ids_free(&ids);
    return rc ? 1 : 0;
}
