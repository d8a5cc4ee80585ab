/*
 * quantize — converts a GGUF model's weights to a smaller type (the engine
 * side of `confab quantize`).
 *
 * A preset names a target ("Q4_K_M"); quant_tensor_type() decides each
 * tensor's type by the rules written at the top of quantize.c (the common
 * llama.cpp mixes), and quant_file() converts every tensor through float32
 * (dequantize -> quantize) and writes a new file atomically, with all
 * metadata copied and general.file_type / general.quantization_version set.
 */
#ifndef CONFAB_ENGINE_QUANTIZE_H
#define CONFAB_ENGINE_QUANTIZE_H

#include "base/err.h"
#include "engine/gguf.h"
#include "engine/types.h"

#include <stdint.h>

typedef enum {
    QUANT_F16,
    QUANT_BF16,
    QUANT_Q8_0,
    QUANT_Q4_0,
    QUANT_Q4_K_M,
    QUANT_Q5_K_M,
    QUANT_Q6_K,
    QUANT_Q2_K,
    QUANT_Q3_K_M,
    QUANT_PRESET_COUNT
} quant_preset;

typedef struct {
    int n_tensors;
    int n_converted;     /* tensors whose type changed */
    uint64_t bytes_in;   /* tensor data bytes read */
    uint64_t bytes_out;  /* tensor data bytes written */
    int count[TT_COUNT]; /* output tensors per type */
} quant_stats;

/* Preset for NAME ("q4_k_m", case-insensitive), or -1 when unknown. */
int quant_preset_from_name(const char *name);
/* Canonical name of preset P ("Q4_K_M"). */
const char *quant_preset_name(quant_preset p);
/* the preset names, comma-separated, for usage messages. */
const char *quant_preset_list(void);

/* Position of a tensor among those of its kind, for the _M mixes: I_LAYER
 * is the index of this attn_v (or ffn_down) tensor in file order and
 * N_LAYER how many the file holds; HAS_OUTPUT is whether output.weight
 * exists (if not, token_embd.weight doubles as the output matrix); N_GQA is
 * attention heads per KV head (1 when unknown). */
typedef struct {
    int i_layer, n_layer;
    int has_output;
    int n_gqa;
} quant_ctx;

/* Type tensor T (named NAME) gets under preset P. Tensors that stay as
 * they are return T->type. */
int quant_tensor_type(quant_preset p, const char *name, const gguf_tensor *t, quant_ctx ctx);

/* Quantizes IN into OUT (written atomically; OUT may equal IN) with PRESET,
 * on N_THREADS threads (<= 0: one per core; the output does not depend on
 * it). Tensors are converted while the file is written, so memory holds
 * one output tensor at a time. Fills *STATS when not NULL. Errors:
 * CF_EINVAL for an unknown preset, CF_EFORMAT for a bad input file or a
 * tensor type that cannot be converted (checked before anything is
 * written), CF_EIO for I/O; on error nothing is left at OUT. */
int quant_file(const char *in, const char *out, const char *preset, int n_threads,
               quant_stats *stats, cf_err *err);

#endif
