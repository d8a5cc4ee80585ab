/*
 * cpu — feature flags via GCC's __builtin_cpu_supports (cpuid plus the OS's
 * XSAVE state), computed once under pthread_once.
 */
#include "base/cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static cpu_features g_cpu;
static char g_desc[256];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void add(const char *name, bool on) {
    if (!on) return;
    if (g_desc[0]) strncat(g_desc, " ", sizeof g_desc - strlen(g_desc) - 1);
    strncat(g_desc, name, sizeof g_desc - strlen(g_desc) - 1);
}

static void detect(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    g_cpu.sse42 = __builtin_cpu_supports("sse4.2");
    g_cpu.avx = __builtin_cpu_supports("avx");
    g_cpu.avx2 = __builtin_cpu_supports("avx2");
    g_cpu.fma = __builtin_cpu_supports("fma");
    g_cpu.f16c = __builtin_cpu_supports("f16c");
    g_cpu.bmi2 = __builtin_cpu_supports("bmi2");
    g_cpu.avx512f = __builtin_cpu_supports("avx512f");
    g_cpu.avx512bw = __builtin_cpu_supports("avx512bw");
    g_cpu.avx512vl = __builtin_cpu_supports("avx512vl");
    g_cpu.avx512dq = __builtin_cpu_supports("avx512dq");
    g_cpu.avx512vnni = __builtin_cpu_supports("avx512vnni");
    g_cpu.avx512bf16 = __builtin_cpu_supports("avx512bf16");
    g_cpu.avxvnni = __builtin_cpu_supports("avxvnni");
#endif
    const char *cap = getenv("CONFAB_CPU");
    if (cap && (!strcmp(cap, "scalar") || !strcmp(cap, "avx2"))) {
        g_cpu.avx512f = g_cpu.avx512bw = g_cpu.avx512vl = g_cpu.avx512dq = false;
        g_cpu.avx512vnni = g_cpu.avx512bf16 = false;
        if (!strcmp(cap, "scalar")) g_cpu.avx2 = g_cpu.fma = g_cpu.f16c = g_cpu.avxvnni = false;
    }
    add("sse4.2", g_cpu.sse42);
    add("avx", g_cpu.avx);
    add("avx2", g_cpu.avx2);
    add("fma", g_cpu.fma);
    add("f16c", g_cpu.f16c);
    add("bmi2", g_cpu.bmi2);
    add("avx512f", g_cpu.avx512f);
    add("avx512bw", g_cpu.avx512bw);
    add("avx512vl", g_cpu.avx512vl);
    add("avx512dq", g_cpu.avx512dq);
    add("avx512vnni", g_cpu.avx512vnni);
    add("avx512bf16", g_cpu.avx512bf16);
    add("avxvnni", g_cpu.avxvnni);
    if (!g_desc[0]) strcpy(g_desc, "baseline");
}

const cpu_features *cpu_get(void) {
    pthread_once(&g_once, detect);
    return &g_cpu;
}

bool cpu_has_avx2(void) {
    const cpu_features *c = cpu_get();
    return c->avx2 && c->fma && c->f16c;
}

bool cpu_has_avx512(void) {
    const cpu_features *c = cpu_get();
    return cpu_has_avx2() && c->avx512f && c->avx512bw && c->avx512vl && c->avx512dq;
}

const char *cpu_describe(void) {
    pthread_once(&g_once, detect);
    return g_desc;
}

int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
