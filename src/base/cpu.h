/*
 * cpu — CPU feature detection, done once at start-up. Kernels are chosen from
 * these flags at run time; the binary itself assumes only baseline x86-64.
 * CONFAB_CPU=scalar|avx2|avx512 in the environment caps what is used (for
 * tests and benchmarks of each kernel family).
 */
#ifndef CONFAB_BASE_CPU_H
#define CONFAB_BASE_CPU_H

#include <stdbool.h>

typedef struct {
    bool sse42, avx, avx2, fma, f16c, bmi2;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16, avxvnni;
} cpu_features;

/* Features of this CPU, after the CONFAB_CPU cap. Thread-safe. */
const cpu_features *cpu_get(void);
/* True when the full AVX2 kernel family (AVX2+FMA+F16C) may be used. */
bool cpu_has_avx2(void);
/* True when the AVX-512 kernel family (F+BW+VL+DQ) may be used. */
bool cpu_has_avx512(void);
/* Space-separated list of detected features ("avx2 fma f16c avx512f ..."). */
const char *cpu_describe(void);
/* Number of online CPU cores (>= 1). */
int cpu_count(void);

#endif
