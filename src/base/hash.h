/*
 * hash — fast non-cryptographic hashing (xxHash's XXH3, 64 and 128 bit).
 * Used for cache keys and hash tables; not for secrets (see the server's
 * key hashing for that).
 */
#ifndef CONFAB_BASE_HASH_H
#define CONFAB_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t hash64(const void *data, size_t n, uint64_t seed);

/* Incremental hashing over several pieces. */
typedef struct hash_state hash_state;
hash_state *hash_new(uint64_t seed);
void hash_update(hash_state *h, const void *data, size_t n);
uint64_t hash_digest(const hash_state *h);
/* 128-bit digest as 32 lowercase hex characters plus NUL into OUT. */
void hash_digest_hex128(const hash_state *h, char out[33]);
void hash_free(hash_state *h);

#endif
