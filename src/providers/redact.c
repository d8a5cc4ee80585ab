/*
 * redact — secret scrubbing; see redact.h. Known secrets are replaced by
 * exact match first (they may have any shape), then generic patterns catch
 * keys we were not told about (a proxy's, another tenant's).
 */
#include "providers/redact.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static void replace_all(sb_t *s, const char *needle) {
    size_t nl = strlen(needle);
    if (nl < 4 || !s->data) return;
    sb_t out = {0};
    size_t i = 0;
    bool hit = false;
    while (i < s->len) {
        const char *f = s->len - i >= nl ? memmem(s->data + i, s->len - i, needle, nl) : NULL;
        if (!f) break;
        hit = true;
        sb_appendn(&out, s->data + i, (size_t)(f - (s->data + i)));
        sb_append(&out, PROV_REDACTED);
        i = (size_t)(f - s->data) + nl;
    }
    if (!hit) return;
    sb_appendn(&out, s->data + i, s->len - i);
    sb_free(s);
    *s = out;
}

static bool tokch(char c) {
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '+' ||
           c == '/' || c == '=';
}

/* Replaces the token run that follows each occurrence of PREFIX (matched
 * case-insensitively, at a word start) when it is at least MIN bytes long. */
static void redact_after(sb_t *s, const char *prefix, size_t min, bool keep_prefix) {
    size_t pl = strlen(prefix);
    sb_t out = {0};
    size_t i = 0, last = 0;
    bool hit = false;
    while (s->data && i + pl <= s->len) {
        bool at_start = i == 0 || !isalnum((unsigned char)s->data[i - 1]);
        if (at_start && !strncasecmp(s->data + i, prefix, pl)) {
            size_t j = i + pl;
            while (j < s->len && tokch(s->data[j]) && s->data[j] != '&')
                j++;
            if (j - (i + pl) >= min) {
                hit = true;
                sb_appendn(&out, s->data + last, (keep_prefix ? i + pl : i) - last);
                sb_append(&out, PROV_REDACTED);
                last = i = j;
                continue;
            }
        }
        i++;
    }
    if (!hit) return;
    sb_appendn(&out, s->data + last, s->len - last);
    sb_free(s);
    *s = out;
}

void prov_redact(sb_t *s, const char *const *secrets, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (secrets[i]) replace_all(s, secrets[i]);
    redact_after(s, "Bearer ", 8, true);
    redact_after(s, "sk-", 8, false);
    redact_after(s, "key=", 8, true);
    redact_after(s, "x-api-key: ", 8, true);
}

void prov_redact_cfg(sb_t *s, const prov_model_cfg *cfg) {
    const char *sec[PROV_MAX_HEADERS + 1];
    size_t n = 0;
    if (cfg) {
        if (cfg->api_key && *cfg->api_key) sec[n++] = cfg->api_key;
        for (size_t i = 0; i < cfg->n_headers && n < PROV_MAX_HEADERS + 1; i++)
            if (cfg->headers[i].value) sec[n++] = cfg->headers[i].value;
    }
    prov_redact(s, sec, n);
}
