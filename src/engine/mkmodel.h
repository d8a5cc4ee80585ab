/*
 * mkmodel — writes random-weight GGUF models of any supported architecture,
 * shape and tensor type, for tests and benchmarks of shapes no shared file
 * has. Seeded and deterministic: the same options give the same bytes.
 */
#ifndef CONFAB_ENGINE_MKMODEL_H
#define CONFAB_ENGINE_MKMODEL_H

#include <stdint.h>

#include "base/err.h"

typedef struct {
    const char *arch; /* "llama", "qwen2", "qwen3" */
    int dim, layers, heads, kv_heads, ffn;
    int head_dim;           /* 0 = dim / heads */
    int ctx;                /* context_length; 0 = 2048 */
    int vocab;              /* used when vocab_from is NULL */
    const char *vocab_from; /* GGUF whose tokenizer.* keys are copied (and n_vocab) */
    const char *type; /* "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M" */
    int tied;         /* no output.weight: the embedding is reused */
    float rope_base;  /* 0 = 10000 (llama) / 1000000 (qwen) */
    const char *rope_scaling; /* NULL, "linear:FACTOR" (rope.scaling.* keys) or
                                 "llama3:FACTOR" (a rope_freqs tensor, as Llama 3.1+
                                 converters write, original context 8192) */
    uint64_t seed;
} mkmodel_opts;

/* Writes the model to PATH. CF_EINVAL for a bad shape, arch or type (the
 * message says which), CF_EIO / CF_EFORMAT from reading the vocabulary or
 * writing the file. */
int mkmodel_write(const mkmodel_opts *o, const char *path, cf_err *err);

#endif
