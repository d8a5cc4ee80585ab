/* hash — thin wrapper over libxxhash's XXH3; see hash.h. */
#include "base/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

struct hash_state {
    XXH3_state_t *s64;
    XXH3_state_t *s128;
};

uint64_t hash64(const void *data, size_t n, uint64_t seed) {
    return (uint64_t)XXH3_64bits_withSeed(data, n, (XXH64_hash_t)seed);
}

hash_state *hash_new(uint64_t seed) {
    hash_state *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->s64 = XXH3_createState();
    h->s128 = XXH3_createState();
    if (!h->s64 || !h->s128) {
        hash_free(h);
        return NULL;
    }
    XXH3_64bits_reset_withSeed(h->s64, seed);
    XXH3_128bits_reset_withSeed(h->s128, seed);
    return h;
}

void hash_update(hash_state *h, const void *data, size_t n) {
    XXH3_64bits_update(h->s64, data, n);
    XXH3_128bits_update(h->s128, data, n);
}

uint64_t hash_digest(const hash_state *h) { return (uint64_t)XXH3_64bits_digest(h->s64); }

void hash_digest_hex128(const hash_state *h, char out[33]) {
    XXH128_hash_t d = XXH3_128bits_digest(h->s128);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)d.high64, (unsigned long long)d.low64);
}

void hash_free(hash_state *h) {
    if (!h) return;
    if (h->s64) XXH3_freeState(h->s64);
    if (h->s128) XXH3_freeState(h->s128);
    free(h);
}
