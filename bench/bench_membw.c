/*
 * bench_membw — memory read bandwidth, the ceiling of token generation.
 *
 * Generating one token reads every weight once, so tg tokens/s can be at
 * most bandwidth / weight bytes. This reads a 1 GiB buffer (far larger than
 * any cache) with 1..T threads, each summing its own slice with 64-bit
 * loads, and prints the best of 5 passes in GB/s.
 *   build/bench/bench_membw [THREADS]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

typedef struct {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} membw_slice;

static void *membw_read(void *arg) {
    membw_slice *s = arg;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= s->n; i += 4) {
        a += s->p[i];
        b += s->p[i + 1];
        c += s->p[i + 2];
        d += s->p[i + 3];
    }
    s->sum = a + b + c + d;
    return NULL;
}

int main(int argc, char **argv) {
    int max_t = argc > 1 ? atoi(argv[1]) : 2;
    if (max_t < 1 || max_t > 64) max_t = 2;
    const size_t bytes = (size_t)1 << 30, n = bytes / 8;
    uint64_t *buf = malloc(bytes);
    if (!buf) return 1;
    memset(buf, 1, bytes);
    for (int t = 1; t <= max_t; t++) {
        double best = 0;
        uint64_t check = 0;
        for (int rep = 0; rep < 5; rep++) {
            pthread_t th[64];
            membw_slice sl[64];
            double t0 = clock_mono_ms();
            for (int i = 0; i < t; i++) {
                sl[i] = (membw_slice){buf + n / (size_t)t * (size_t)i, n / (size_t)t, 0};
                pthread_create(&th[i], NULL, membw_read, &sl[i]);
            }
            for (int i = 0; i < t; i++) {
                pthread_join(th[i], NULL);
                check += sl[i].sum;
            }
            double gbs = (double)bytes / ((clock_mono_ms() - t0) * 1e6);
            if (gbs > best) best = gbs;
        }
        printf("threads %d: %.2f GB/s read (checksum %llu)\n", t, best,
               (unsigned long long)(check & 0xff));
    }
    free(buf);
    return 0;
}
