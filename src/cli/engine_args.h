/*
 * engine_args — strict number parsing for the engine commands (run, bench,
 * mkmodel): the whole string must be a number within [lo, hi], so "12x" or
 * "" is rejected instead of silently read as 12 or 0.
 */
#ifndef CONFAB_CLI_ENGINE_ARGS_H
#define CONFAB_CLI_ENGINE_ARGS_H

#include <errno.h>
#include <math.h>
#include <stdlib.h>

/* 0 and *OUT set when S is an integer in [LO, HI]; -1 otherwise. */
static inline int ea_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static inline int ea_ll(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno) return -1;
    *out = v;
    return 0;
}

/* 0 and *OUT set when S is a finite number in [LO, HI]; -1 otherwise. */
static inline int ea_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

#endif
