/*
 * types — the tensor-type table (see types.h).
 *
 * One static row per GGML type id describes the block layout (values per
 * block, bytes per block) and points at the kernels: to_float
 * (dequantization), from_float (quantization) and vec_dot with the type the
 * activations are converted to first (vec_dot_type). The scalar reference
 * kernels live in quants.c and define what "correct" means.
 *
 * The table also knows the layout of GGML types confab cannot compute with
 * (IQ2_XXS, IQ1_S, TQ1_0, ...): their rows carry only name and sizes, so
 * gguf.c can validate and list any file, while the model loader refuses
 * tensors whose to_float/vec_dot is NULL.
 *
 * Kernel selection: tt_init() fills the table once (pthread_once) with the
 * scalar kernels, then lets the SIMD families overwrite rows through the two
 * hooks tt_install_avx2() / tt_install_avx512(), defined in quants_avx2.c /
 * quants_avx512.c (declared in quants_simd.h). Calling them directly (not
 * through weak symbols) makes the linker always pull the SIMD kernels out of
 * the static library, whatever else a program uses. Trade-off: a function pointer call per
 * row dot product, which is negligible next to a 256+ value dot product, in
 * exchange for one place deciding which kernel runs.
 *
 * The table is process-wide state written exactly once, before any reader
 * sees it (pthread_once gives the ordering), and read-only afterwards.
 */
#include "engine/types.h"

#include "base/cpu.h"
#include "engine/blocks.h"
#include "engine/quants.h"
#include "engine/quants_simd.h"

#include <ctype.h>
#include <pthread.h>
#include <string.h>

static tt_traits tt_table[TT_COUNT];
static const char *tt_family = "scalar";
static pthread_once_t tt_once = PTHREAD_ONCE_INIT;

/* Layout-only rows for GGML types without kernels here: id, name, blck, bytes. */
static const struct {
    int id;
    const char *name;
    int blck;
    size_t bytes;
} tt_layout_only[] = {
    {16, "IQ2_XXS", QK_K, 66}, {17, "IQ2_XS", QK_K, 74}, {18, "IQ3_XXS", QK_K, 98},
    {19, "IQ1_S", QK_K, 50},   {21, "IQ3_S", QK_K, 110}, {22, "IQ2_S", QK_K, 82},
    {24, "I8", 1, 1},          {25, "I16", 1, 2},        {26, "I32", 1, 4},
    {27, "I64", 1, 8},         {28, "F64", 1, 8},        {29, "IQ1_M", QK_K, 56},
    {34, "TQ1_0", QK_K, 54},   {35, "TQ2_0", QK_K, 66},  {39, "MXFP4", 32, 17},
};

static void tt_set(int id, const char *name, int blck, size_t bytes, int quantized,
                   tt_to_float_fn to_float, tt_from_float_fn from_float, tt_type vdt,
                   tt_vec_dot_fn vec_dot) {
    tt_table[id] = (tt_traits){name, blck,    bytes, quantized, to_float, from_float,
                               vdt,  vec_dot, NULL,  0,         NULL};
}

static void tt_init_once(void) {
    for (size_t i = 0; i < sizeof tt_layout_only / sizeof tt_layout_only[0]; i++)
        tt_set(tt_layout_only[i].id, tt_layout_only[i].name, tt_layout_only[i].blck,
               tt_layout_only[i].bytes, 1, NULL, NULL, TT_F32, NULL);
    /* Arguments: id, name, values per block, bytes per block, quantized,
     * to_float, from_float, vec_dot_type, vec_dot. */
    tt_set(TT_F32, "F32", 1, 4, 0, tt_to_float_f32, tt_from_float_f32, TT_F32, tt_vec_dot_f32_ref);
    tt_set(TT_F16, "F16", 1, 2, 0, tt_to_float_f16, tt_from_float_f16, TT_F16, tt_vec_dot_f16_ref);
    tt_set(TT_BF16, "BF16", 1, 2, 0, tt_to_float_bf16, tt_from_float_bf16, TT_BF16,
           tt_vec_dot_bf16_ref);
    tt_table[TT_F32].mat_dot = tt_mat_dot_f32_ref;
    tt_table[TT_F32].mat_blk = 16;
    tt_table[TT_F32].vec_dot_ex = tt_vec_dot_f32_ex_ref;
    tt_table[TT_F16].mat_dot = tt_mat_dot_f16_ref;
    tt_table[TT_F16].mat_blk = 16;
    tt_table[TT_F16].vec_dot_ex = tt_vec_dot_f16_ex_ref;
    tt_table[TT_BF16].mat_dot = tt_mat_dot_bf16_ref;
    tt_table[TT_BF16].mat_blk = 32;
    tt_set(TT_Q4_0, "Q4_0", QK4_0, sizeof(block_q4_0), 1, tt_to_float_q4_0, tt_from_float_q4_0,
           TT_Q8_0, tt_vec_dot_q4_0_q8_0_ref);
    tt_set(TT_Q4_1, "Q4_1", QK4_1, sizeof(block_q4_1), 1, tt_to_float_q4_1, tt_from_float_q4_1,
           TT_Q8_1, tt_vec_dot_q4_1_q8_1_ref);
    tt_set(TT_Q5_0, "Q5_0", QK5_0, sizeof(block_q5_0), 1, tt_to_float_q5_0, tt_from_float_q5_0,
           TT_Q8_0, tt_vec_dot_q5_0_q8_0_ref);
    tt_set(TT_Q5_1, "Q5_1", QK5_1, sizeof(block_q5_1), 1, tt_to_float_q5_1, tt_from_float_q5_1,
           TT_Q8_1, tt_vec_dot_q5_1_q8_1_ref);
    tt_set(TT_Q8_0, "Q8_0", QK8_0, sizeof(block_q8_0), 1, tt_to_float_q8_0, tt_from_float_q8_0,
           TT_Q8_0, tt_vec_dot_q8_0_q8_0_ref);
    tt_set(TT_Q8_1, "Q8_1", QK8_1, sizeof(block_q8_1), 1, tt_to_float_q8_1, tt_from_float_q8_1,
           TT_Q8_1, NULL);
    tt_set(TT_Q2_K, "Q2_K", QK_K, sizeof(block_q2_K), 1, tt_to_float_q2_K, tt_from_float_q2_K,
           TT_Q8_K, tt_vec_dot_q2_K_q8_K_ref);
    tt_set(TT_Q3_K, "Q3_K", QK_K, sizeof(block_q3_K), 1, tt_to_float_q3_K, tt_from_float_q3_K,
           TT_Q8_K, tt_vec_dot_q3_K_q8_K_ref);
    tt_set(TT_Q4_K, "Q4_K", QK_K, sizeof(block_q4_K), 1, tt_to_float_q4_K, tt_from_float_q4_K,
           TT_Q8_K, tt_vec_dot_q4_K_q8_K_ref);
    tt_set(TT_Q5_K, "Q5_K", QK_K, sizeof(block_q5_K), 1, tt_to_float_q5_K, tt_from_float_q5_K,
           TT_Q8_K, tt_vec_dot_q5_K_q8_K_ref);
    tt_set(TT_Q6_K, "Q6_K", QK_K, sizeof(block_q6_K), 1, tt_to_float_q6_K, tt_from_float_q6_K,
           TT_Q8_K, tt_vec_dot_q6_K_q8_K_ref);
    tt_set(TT_Q8_K, "Q8_K", QK_K, sizeof(block_q8_K), 1, tt_to_float_q8_K, tt_from_float_q8_K,
           TT_Q8_K, NULL);
    tt_set(TT_IQ4_NL, "IQ4_NL", QK4_NL, sizeof(block_iq4_nl), 1, tt_to_float_iq4_nl,
           tt_from_float_iq4_nl, TT_Q8_0, tt_vec_dot_iq4_nl_q8_0_ref);
    tt_set(TT_IQ4_XS, "IQ4_XS", QK_K, sizeof(block_iq4_xs), 1, tt_to_float_iq4_xs,
           tt_from_float_iq4_xs, TT_Q8_K, tt_vec_dot_iq4_xs_q8_K_ref);

    /* The family is named only when its hook actually replaced a kernel, so
     * a build without SIMD kernels honestly reports "scalar". */
    static tt_traits before[TT_COUNT];
    if (cpu_has_avx2()) {
        memcpy(before, tt_table, sizeof tt_table);
        tt_install_avx2(tt_table);
        if (memcmp(before, tt_table, sizeof tt_table)) tt_family = "avx2";
    }
    if (cpu_has_avx512()) {
        memcpy(before, tt_table, sizeof tt_table);
        tt_install_avx512(tt_table);
        if (memcmp(before, tt_table, sizeof tt_table)) tt_family = "avx512";
    }
}

void tt_init(void) { pthread_once(&tt_once, tt_init_once); }

const tt_traits *tt_get(int type) {
    if (type < 0 || type >= TT_COUNT) return NULL;
    tt_init();
    return tt_table[type].name ? &tt_table[type] : NULL;
}

int tt_from_name(const char *name) {
    if (!name) return -1;
    tt_init();
    for (int i = 0; i < TT_COUNT; i++) {
        const char *n = tt_table[i].name;
        if (n && !strcasecmp(n, name)) return i;
    }
    return -1;
}

size_t tt_row_size(int type, int64_t n) {
    const tt_traits *t = tt_get(type);
    if (!t || n < 0 || n % t->blck) return 0;
    const uint64_t blocks = (uint64_t)(n / t->blck);
    if (blocks > SIZE_MAX / t->bytes) return 0;
    return (size_t)blocks * t->bytes;
}

const char *tt_kernel_family(void) {
    tt_init();
    return tt_family;
}
