/*
 * auth — API keys and per-key rate limits for the HTTP server.
 *
 * Keys are never kept in plaintext: each configured key is hashed with
 * SHA-256 at load (or given already hashed as "sha256:<64 hex>"), and a
 * presented bearer token is hashed and compared with every stored hash in
 * constant time (CRYPTO_memcmp, and no early exit over the key list), so
 * neither the comparison nor the position of the matching key leaks
 * through timing. A key's identity for ownership and rate limiting is
 * "key:" + the first 12 hex digits of its hash: stable, short, and useless
 * for recovering the key.
 *
 * Rate limits are token buckets, one per owner, holding at most `rpm`
 * tokens and refilled at rpm/60 per second: a key may burst up to a
 * minute's allowance, then is held to the steady rate. Buckets live in a
 * small array (one per key that has made requests) under a mutex.
 */
#ifndef CONFAB_SERVER_AUTH_H
#define CONFAB_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct srv_keys srv_keys;
typedef struct srv_ratelimit srv_ratelimit;

/* Builds the key set from KEYS as written in the config (plaintext, or
 * "sha256:<64 hex>"). Returns NULL with ERR set for a malformed hash or an
 * empty key. N may be 0 (no keys: every token is refused). */
srv_keys *srv_keys_new(const char *const *keys, size_t n, cf_err *err);
void srv_keys_free(srv_keys *k);
size_t srv_keys_count(const srv_keys *k);

/* Checks TOKEN (N bytes) against the set. On a match returns true and
 * writes the owner id ("key:<12 hex>") into OWNER (at least 20 bytes). */
bool srv_keys_check(const srv_keys *k, const char *token, size_t n, char owner[20]);

/* SHA-256 of DATA as 64 lowercase hex digits plus NUL. */
void srv_sha256_hex(const void *data, size_t n, char out[65]);

/* A limiter allowing RPM requests per minute per owner (RPM > 0). */
srv_ratelimit *srv_ratelimit_new(int rpm);
void srv_ratelimit_free(srv_ratelimit *r);
/* Takes one token for OWNER at monotonic time NOW_NS. Returns true when
 * allowed; otherwise false and *RETRY_AFTER_S gets the whole seconds until
 * a token is available (>= 1). */
bool srv_ratelimit_take(srv_ratelimit *r, const char *owner, uint64_t now_ns, int *retry_after_s);

#endif
