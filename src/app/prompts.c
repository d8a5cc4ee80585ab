/*
 * prompts — {placeholder} templates; see prompts.h. One scanner,
 * next_token(), drives both listing and filling.
 */
#include "app/prompts.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/sb.h"

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* At P: returns the length of a placeholder `{name}` (and its name span), or
 * 0 when P does not start one. */
static size_t placeholder_at(const char *p, const char **name, size_t *name_len) {
    if (p[0] != '{' || p[1] == '{') return 0;
    size_t i = 1;
    while (name_char(p[i]))
        i++;
    if (i == 1 || p[i] != '}') return 0;
    *name = p + 1;
    *name_len = i - 1;
    return i + 1;
}

int prompt_placeholders(const char *text, char ***names, size_t *n) {
    *names = NULL;
    *n = 0;
    for (const char *p = text; *p;) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            p += 2;
            continue;
        }
        const char *nm;
        size_t nl, len = placeholder_at(p, &nm, &nl);
        if (!len) {
            p++;
            continue;
        }
        bool seen = false;
        for (size_t i = 0; i < *n && !seen; i++)
            seen = strlen((*names)[i]) == nl && !memcmp((*names)[i], nm, nl);
        if (!seen) {
            char **a = realloc(*names, (*n + 1) * sizeof *a);
            if (!a) abort();
            *names = a;
            a[(*n)++] = strndup(nm, nl);
        }
        p += len;
    }
    return 0;
}

void prompt_names_free(char **names, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

char *prompt_fill(const char *text, const char *const *keys, const char *const *values, size_t n,
                  cf_err *err) {
    char **names;
    size_t nn;
    prompt_placeholders(text, &names, &nn);
    for (size_t k = 0; k < n; k++) {
        bool found = false;
        for (size_t i = 0; i < nn && !found; i++)
            found = !strcmp(names[i], keys[k]);
        if (!found) {
            sb_t have = {0};
            for (size_t i = 0; i < nn; i++)
                sb_printf(&have, "%s{%s}", i ? ", " : "", names[i]);
            cf_seterr(err, CF_EINVAL, "the template has no placeholder {%s} (it has: %s)", keys[k],
                      nn ? sb_str(&have) : "none");
            sb_free(&have);
            prompt_names_free(names, nn);
            return NULL;
        }
    }
    prompt_names_free(names, nn);
    sb_t out = {0};
    for (const char *p = text; *p;) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            sb_putc(&out, p[0]);
            p += 2;
            continue;
        }
        const char *nm;
        size_t nl, len = placeholder_at(p, &nm, &nl);
        if (!len) {
            sb_putc(&out, *p++);
            continue;
        }
        const char *val = NULL;
        for (size_t k = 0; k < n && !val; k++)
            if (strlen(keys[k]) == nl && !memcmp(keys[k], nm, nl)) val = values[k];
        if (!val) {
            cf_seterr(err, CF_EINVAL, "missing a value for {%.*s}", (int)nl, nm);
            sb_free(&out);
            return NULL;
        }
        sb_append(&out, val);
        p += len;
    }
    return sb_take(&out);
}
