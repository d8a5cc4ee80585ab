/*
 * confab/engine.h — the public interface of confab's inference engine.
 *
 * Written like the header of a library strangers link against: every type is
 * opaque, every function says who owns what it returns, and nothing here
 * touches global mutable state. Four objects:
 *
 *   cf_model    a GGUF model, mmapped read-only (weights are never copied),
 *               plus the worker pool that runs its kernels. Immutable after
 *               load; one model may back several contexts.
 *   cf_ctx      an evaluation context: a KV cache and scratch buffers. A
 *               context holds n_seq sequences (slots, cf_ctx_opts.n_seq),
 *               each with its own n_ctx positions; one cf_batch may mix
 *               tokens of several sequences (continuous batching), which
 *               then share every matrix product of the step.
 *   cf_sampler  turns a row of logits into a token id (greedy, temperature,
 *               top-k, top-p, min-p, penalties, logit bias, seeded PRNG).
 *   cf_stop     finds stop strings in a stream of text pieces, holding back
 *               text that may be the start of one.
 *
 * Generation is step-wise by construction: the caller decodes the prompt
 * (cf_ctx_decode), then loops { sample, decode one token } and may stop
 * between any two steps. A long prompt can be cancelled between chunks with
 * cf_ctx_set_abort(). Errors follow base/err.h: int results (0 or a negative
 * CF_E* code) and a cf_err the caller provides (may be NULL).
 *
 * Threading: one cf_ctx is used by one thread at a time; different contexts
 * of one model may be used from different threads at once (their kernel
 * jobs take turns on the model's worker pool). A cf_sampler and a cf_stop
 * belong to one thread at a time. Results are bit-identical whatever the
 * number of worker threads.
 */
#ifndef CONFAB_ENGINE_H
#define CONFAB_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct cf_model cf_model;
typedef struct cf_ctx cf_ctx;
typedef struct cf_sampler cf_sampler;
typedef struct cf_stop cf_stop;

/* ------------------------------------------------------------------ model */

typedef enum { CF_KV_F16 = 0, CF_KV_F32 = 1 } cf_kv_type;

typedef struct {
    int n_threads;      /* worker threads for kernels; 0 = number of cores */
    int n_ctx;          /* default context length for new contexts; 0 = from the file */
    cf_kv_type kv_type; /* default KV cache element type (F16) */
} cf_model_opts;

/* Default options (threads = cores, context from the file, F16 KV). */
cf_model_opts cf_model_opts_default(void);

/* Loads the GGUF model at PATH. OPTS may be NULL for the defaults.
 * Returns a model the caller frees with cf_model_free(), or NULL with ERR
 * set (file missing, corrupt, unsupported architecture or tensor type,
 * missing or mis-shaped tensor: the message names it). */
cf_model *cf_model_load(const char *path, const cf_model_opts *opts, cf_err *err);
/* Frees the model, its mapping and its worker threads. Every context made
 * from it must be freed first. NULL is allowed. */
void cf_model_free(cf_model *m);

typedef struct {
    const char *arch; /* "llama", "qwen2", "qwen3"; owned by the model */
    const char *name; /* general.name or ""; owned by the model */
    int n_vocab;
    int n_ctx_train; /* context length the model was trained with */
    int n_ctx;       /* default context of new contexts (option or train) */
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;
    int n_ff;
    float rope_freq_base;
    float rms_eps;
    int bos_id, eos_id; /* -1 when the file names none */
    int n_threads;
    uint64_t n_params;     /* number of weights */
    uint64_t weight_bytes; /* bytes of tensor data */
} cf_model_info;

/* Fills *INFO with the model's hyper-parameters. Pointers inside stay valid
 * while the model lives. */
void cf_model_get_info(const cf_model *m, cf_model_info *info);

/* Raw vocabulary string of token ID (tokenizer.ggml.tokens, not
 * NUL-terminated, *LEN bytes, owned by the model), or NULL when ID is out of
 * range or the file has no vocabulary. */
const char *cf_model_token_raw(const cf_model *m, int32_t id, size_t *len);
/* Display text of token ID into BUF (CAP bytes, NUL-terminated when CAP>0):
 * SentencePiece "▁" becomes a space, "<0xNN>" byte tokens become that byte,
 * control tokens (type 3) give "". Returns the text length (which may exceed
 * CAP-1: then the text was cut), or -1 for an unknown id. A stand-in until
 * the tokenizer module decodes. */
int cf_model_token_text(const cf_model *m, int32_t id, char *buf, size_t cap);

/* ---------------------------------------------------------------- context */

typedef struct {
    int n_ctx;   /* positions in the KV cache; 0 = the model's default */
    int kv_type; /* cf_kv_type, or -1 = the model's default */
    int n_batch; /* tokens per forward chunk; 0 = 512 */
    int n_seq;   /* sequences (slots) the KV cache holds, each of n_ctx
                    positions; 0 = 1. Memory: n_seq times one's. */
} cf_ctx_opts;

cf_ctx_opts cf_ctx_opts_default(void);

/* Makes a context on M (which must outlive it). OPTS may be NULL.
 * Caller frees with cf_ctx_free(). NULL with ERR on failure. */
cf_ctx *cf_ctx_new(cf_model *m, const cf_ctx_opts *opts, cf_err *err);
void cf_ctx_free(cf_ctx *c);

/* Number of positions each sequence holds, the number of sequences, and
 * how many positions sequence SEQ has filled (0 for an unknown SEQ). */
int cf_ctx_n_ctx(const cf_ctx *c);
int cf_ctx_n_seq(const cf_ctx *c);
int cf_ctx_seq_len(const cf_ctx *c, int seq);

/* Forgets positions [N, end) of sequence SEQ (N = 0 clears it), so a caller
 * can rewind and re-decode (e.g. reuse a shared prompt prefix).
 * CF_ERANGE when N is beyond the sequence length. */
int cf_ctx_seq_truncate(cf_ctx *c, int seq, int n, cf_err *err);

/* Makes sequence DST the first N positions of sequence SRC (their KV rows
 * copied; DST's old content is dropped), so a shared prefix (a system
 * prompt) is computed once. SRC == DST truncates. CF_EINVAL for an unknown
 * sequence, CF_ERANGE when N exceeds SRC's length. */
int cf_ctx_seq_copy(cf_ctx *c, int src, int dst, int n, cf_err *err);

/* Saves sequence SEQ's state to PATH: its N_TOKENS tokens (the caller's
 * record of what the sequence holds; N_TOKENS must equal its length) and
 * their KV rows, stamped with the model's identity (hyper-parameters and
 * tensor names, types, shapes and data samples) and the KV element type,
 * plus a checksum. Written atomically (PATH.tmp, then renamed). CF_EINVAL
 * for a wrong length, CF_EIO when the file cannot be written. */
int cf_ctx_seq_save(const cf_ctx *c, int seq, const int32_t *tokens, int n_tokens, const char *path,
                    cf_err *err);
/* Restores a state saved by cf_ctx_seq_save into sequence SEQ (any context
 * of a model with the same identity and KV type, n_ctx large enough). The
 * next decode then gives the same logits as it would have in the saved
 * context. *TOKENS (malloc'd, caller frees) and *N_TOKENS get the saved
 * tokens. Errors: CF_ENOTFOUND (no file), CF_EFORMAT (not a state file,
 * other version, truncated or checksum mismatch: "corrupt"), CF_EINVAL
 * ("saved by a different model", other KV type), CF_ERANGE (longer than
 * n_ctx). On an error after the header checks the sequence is left
 * empty. */
int cf_ctx_seq_load(cf_ctx *c, int seq, const char *path, int32_t **tokens, int *n_tokens,
                    cf_err *err);

/* A batch of tokens to decode. Every array has n_tokens entries.
 * pos: position of each token, or NULL = continue each sequence.
 * seq_id: sequence of each token, or NULL = all sequence 0.
 * logits: nonzero for tokens whose logits the caller wants, or NULL = only
 *         the last token. */
typedef struct {
    int n_tokens;
    const int32_t *token;
    const int32_t *pos;
    const int32_t *seq_id;
    const int8_t *logits;
} cf_batch;

/* Runs the forward pass over the batch, extending the KV cache. Tokens go
 * through each layer together in chunks of n_batch (weights are read once
 * per chunk, whatever sequences the tokens belong to). The tokens of each
 * sequence must continue it in batch order (position = its length so far);
 * tokens of different sequences may interleave freely, and each attends
 * only to its own sequence. A sequence's results (logits, KV) do not
 * depend on what else is in the batch nor on the thread count: decoding N
 * sequences together gives bit-identical results to decoding them alone.
 * Errors (the batch is checked first; nothing runs on error): CF_EINVAL
 * (token id out of range, bad position or sequence id), CF_ERANGE (a
 * sequence would pass n_ctx); CF_ECANCEL (abort callback said stop; the
 * sequences then keep the chunks that completed). */
int cf_ctx_decode(cf_ctx *c, const cf_batch *b, cf_err *err);

/* Convenience: decodes N tokens of sequence 0 after its current end; logits
 * for every token when ALL_LOGITS, else only the last. */
int cf_ctx_eval(cf_ctx *c, const int32_t *tokens, int n, bool all_logits, cf_err *err);

/* Logits (n_vocab floats) of the I-th token that asked for logits in the
 * last decode (I < cf_ctx_n_logits; I = -1 means the last one). Owned by the
 * context, valid until the next decode. NULL when out of range. */
const float *cf_ctx_logits(const cf_ctx *c, int i);
int cf_ctx_n_logits(const cf_ctx *c);

/* Abort callback, polled between chunks and layers of a decode; returning
 * true makes the decode stop with CF_ECANCEL. FN may be NULL (the default). */
void cf_ctx_set_abort(cf_ctx *c, bool (*fn)(void *user), void *user);

/* ---------------------------------------------------------------- sampler */

typedef struct {
    int32_t token;
    float bias; /* added to the logit; -INFINITY bans the token */
} cf_logit_bias;

typedef struct {
    float temp;                /* <= 0: greedy (argmax, lowest id wins ties) */
    int top_k;                 /* keep the K most likely; <= 0 = off */
    float top_p;               /* keep the smallest set with mass >= P; >= 1 = off */
    float min_p;               /* drop tokens below MIN_P * p(best); <= 0 = off */
    float repeat_penalty;      /* divide positive / multiply negative logits of
                                  recent tokens; 1 = off */
    int repeat_last_n;         /* how many recent tokens the penalties see (64) */
    float freq_penalty;        /* minus count * this; 0 = off */
    float presence_penalty;    /* minus this once present; 0 = off */
    uint64_t seed;             /* same seed and inputs, same output */
    const cf_logit_bias *bias; /* copied at cf_samp_new */
    int n_bias;
} cf_samp_params;

/* Greedy, no penalties, top_p 1, repeat_last_n 64, seed 0. */
cf_samp_params cf_samp_params_default(void);

/* Makes a sampler for N_VOCAB logits. Caller frees with cf_samp_free().
 * NULL with ERR for invalid parameters (negative temperature is greedy;
 * top_p or min_p outside [0,1], repeat_penalty <= 0, a bias token out of
 * range are errors). */
cf_sampler *cf_samp_new(const cf_samp_params *p, int n_vocab, cf_err *err);
void cf_samp_free(cf_sampler *s);
/* Picks a token from LOGITS (n_vocab floats, not modified). Does not record
 * it: call cf_samp_accept() with the token actually used. */
int32_t cf_samp_sample(cf_sampler *s, const float *logits);
/* Records TOKEN in the history the penalties look at (prompt tokens too,
 * if the caller wants them penalised). */
void cf_samp_accept(cf_sampler *s, int32_t token);
/* Clears the history and re-seeds the PRNG with the original seed. */
void cf_samp_reset(cf_sampler *s);

/* ------------------------------------------------------------ stop strings */

/* Matcher over N stop strings (copied; empty strings are ignored).
 * Caller frees with cf_stop_free(). NULL only when out of memory. */
cf_stop *cf_stop_new(const char *const *stops, int n);
void cf_stop_free(cf_stop *s);
/* Feeds the next N bytes of generated text. *OUT / *OUT_N get the text that
 * is now safe to show (owned by the matcher, valid until the next call).
 * Returns 1 when a stop string was found: *OUT then ends just before it and
 * the rest is dropped; later feeds return nothing. Returns 0 otherwise; text
 * that could be the start of a stop string is held back. */
int cf_stop_feed(cf_stop *s, const char *text, size_t n, const char **out, size_t *out_n);
/* End of stream: releases the held-back text (no stop string matched). */
void cf_stop_flush(cf_stop *s, const char **out, size_t *out_n);

#endif
