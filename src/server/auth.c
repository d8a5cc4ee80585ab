/*
 * auth — API key hashing and checking, and token-bucket rate limits
 * (see auth.h for the design).
 */
#include "server/auth.h"

#include <ctype.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srv_keys {
    unsigned char (*hash)[32]; /* (n,) SHA-256 of each key */
    size_t n;
};

static void sha256(const void *data, size_t n, unsigned char out[32]) {
    unsigned int len = 32;
    EVP_Digest(data, n, out, &len, EVP_sha256(), NULL);
}

void srv_sha256_hex(const void *data, size_t n, char out[65]) {
    unsigned char h[32];
    sha256(data, n, h);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

srv_keys *srv_keys_new(const char *const *keys, size_t n, cf_err *err) {
    srv_keys *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->hash = calloc(n ? n : 1, sizeof *k->hash);
    if (!k->hash) {
        free(k);
        cf_seterr(err, CF_ENOMEM, "out of memory loading API keys");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = keys[i];
        if (!s || !*s) {
            srv_keys_free(k);
            cf_seterr(err, CF_EINVAL, "server.api_keys[%zu] is empty", i);
            return NULL;
        }
        if (!strncmp(s, "sha256:", 7)) {
            const char *h = s + 7;
            if (strlen(h) != 64) {
                srv_keys_free(k);
                cf_seterr(err, CF_EINVAL, "server.api_keys[%zu]: a sha256: key needs 64 hex digits",
                          i);
                return NULL;
            }
            for (int b = 0; b < 32; b++) {
                int hi = hexval((unsigned char)h[2 * b]), lo = hexval((unsigned char)h[2 * b + 1]);
                if (hi < 0 || lo < 0) {
                    srv_keys_free(k);
                    cf_seterr(err, CF_EINVAL,
                              "server.api_keys[%zu]: a sha256: key needs 64 hex digits", i);
                    return NULL;
                }
                k->hash[i][b] = (unsigned char)(hi << 4 | lo);
            }
        } else {
            sha256(s, strlen(s), k->hash[i]);
        }
    }
    k->n = n;
    return k;
}

void srv_keys_free(srv_keys *k) {
    if (!k) return;
    if (k->hash) OPENSSL_cleanse(k->hash, (k->n ? k->n : 1) * sizeof *k->hash);
    free(k->hash);
    free(k);
}

size_t srv_keys_count(const srv_keys *k) { return k ? k->n : 0; }

bool srv_keys_check(const srv_keys *k, const char *token, size_t n, char owner[20]) {
    if (!k || !token || n == 0) return false;
    unsigned char h[32];
    sha256(token, n, h);
    /* Compare against every key, without stopping at the first match. */
    size_t match = (size_t)-1;
    for (size_t i = 0; i < k->n; i++) {
        int eq = CRYPTO_memcmp(h, k->hash[i], 32) == 0;
        match = eq ? i : match;
    }
    if (match == (size_t)-1) return false;
    memcpy(owner, "key:", 4);
    for (int b = 0; b < 6; b++)
        snprintf(owner + 4 + 2 * b, 3, "%02x", k->hash[match][b]);
    return true;
}

/* ------------------------------------------------------------------ */
/* Rate limits                                                         */
/* ------------------------------------------------------------------ */

typedef struct {
    char owner[64];
    double tokens;
    uint64_t last_ns;
} bucket;

struct srv_ratelimit {
    pthread_mutex_t mu;
    double capacity, per_ns;
    bucket *b; /* (n,) */
    size_t n, cap;
};

srv_ratelimit *srv_ratelimit_new(int rpm) {
    if (rpm <= 0) return NULL;
    srv_ratelimit *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    r->capacity = rpm;
    r->per_ns = rpm / 60e9;
    return r;
}

void srv_ratelimit_free(srv_ratelimit *r) {
    if (!r) return;
    pthread_mutex_destroy(&r->mu);
    free(r->b);
    free(r);
}

bool srv_ratelimit_take(srv_ratelimit *r, const char *owner, uint64_t now_ns, int *retry_after_s) {
    pthread_mutex_lock(&r->mu);
    bucket *b = NULL;
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->b[i].owner, owner)) {
            b = &r->b[i];
            break;
        }
    if (!b) {
        if (r->n == r->cap) {
            size_t nc = r->cap ? r->cap * 2 : 8;
            bucket *nb = realloc(r->b, nc * sizeof *nb);
            if (!nb) { /* cannot track: refuse rather than let it through */
                pthread_mutex_unlock(&r->mu);
                *retry_after_s = 1;
                return false;
            }
            r->b = nb;
            r->cap = nc;
        }
        b = &r->b[r->n++];
        snprintf(b->owner, sizeof b->owner, "%s", owner);
        b->tokens = r->capacity;
        b->last_ns = now_ns;
    }
    if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) * r->per_ns;
        if (b->tokens > r->capacity) b->tokens = r->capacity;
        b->last_ns = now_ns;
    }
    bool ok = b->tokens >= 1.0;
    if (ok) {
        b->tokens -= 1.0;
    } else {
        double wait_s = (1.0 - b->tokens) / (r->per_ns * 1e9);
        int s = (int)ceil(wait_s);
        *retry_after_s = s < 1 ? 1 : s;
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}
