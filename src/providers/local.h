/*
 * local — the local inference engine as a provider backend ("local").
 *
 * Each local model (a GGUF file) is loaded once: weights mmapped by the
 * engine, its tokenizer, and its chat template (the file's
 * tokenizer.chat_template, or a built-in chosen from the architecture when
 * the file has none). A model has one worker thread and one engine context
 * of n_seq sequences (KV slots). The worker batches concurrent requests
 * continuously: every forward step carries one token of each generating
 * request plus chunks of new prompts; requests join and leave between
 * steps. A slot keeps its KV between requests, so a prompt that starts
 * with tokens already cached (the next turn of the same conversation, or
 * a system prompt shared with another slot, copied over) only decodes the
 * new tokens; idle slots are reused least recently used first. When every
 * slot is busy a request waits up to queue_wait_ms, then fails with
 * PROV_ERR_UNAVAILABLE (503) and a retry delay. With a state_dir the
 * slots are saved at shutdown and restored at load (checked against the
 * model's identity), so a conversation continues after a restart without
 * decoding its history again.
 *
 * A turn: render the template with the messages, tokenize (special tokens
 * parsed), reuse the cached prefix, decode the rest, then sample token by
 * token — polling the cancel handle and the live sampling parameters before
 * each one — detokenize with the streaming detokenizer (whole UTF-8
 * characters), cut at stop strings, and stream deltas. Usage is exact (the
 * tokens the engine decoded). The end of the context window ends the reply
 * with finish reason "length".
 */
#ifndef CONFAB_PROVIDERS_LOCAL_H
#define CONFAB_PROVIDERS_LOCAL_H

#include "providers/provider.h"

typedef struct prov_local prov_local;

typedef struct {
    int n_threads;         /* kernel threads per model; 0 = cores */
    int n_ctx;             /* context length; 0 = the model's own */
    bool kv_f32;           /* F32 KV cache instead of F16 */
    int n_batch;           /* tokens per forward step (decodes + prompt chunks); 0 = 512 */
    int n_seq;             /* sequences (KV slots) per model; 0 = PROV_LOCAL_DEFAULT_SEQ,
                              or as many as kv_budget_mb holds (at most 64) */
    int64_t kv_budget_mb;  /* KV cache memory per model; 0 = no limit */
    int queue_wait_ms;     /* how long a request waits for a free slot; 0 = 30 s */
    const char *state_dir; /* NULL = off; else each model's slots are saved there
                              at prov_local_free (cf_ctx_seq_save) and restored
                              at prov_local_add, so conversations survive a
                              restart; copied */
} prov_local_opts;

#define PROV_LOCAL_DEFAULT_SEQ 4

prov_local *prov_local_new(const prov_local_opts *o, cf_err *err);
/* Stops the workers (cancelling queued requests with an error) and frees. */
void prov_local_free(prov_local *l);

/* Loads the GGUF at PATH for the model named NAME. Returns 0 or an error
 * naming the file and the problem. */
int prov_local_add(prov_local *l, const char *name, const char *path, cf_err *err);

/* The backend to register with the router as "local". */
prov_backend prov_local_backend(prov_local *l);

/* An exact token counter for model NAME (for prov_model_cfg.count_tokens):
 * fills *FN and *UD and returns true when the model is loaded. */
bool prov_local_counter(prov_local *l, const char *name, prov_count_fn *fn, void **ud);

/* Prompt tokens of model NAME's last request and how many of them were
 * reused from the KV cache rather than decoded. False when not loaded. */
bool prov_local_last_prompt(prov_local *l, const char *name, int *prompt_tokens, int *reused);

/* Sequences (KV slots) of model NAME, i.e. requests served at once (0 when
 * unknown). */
int prov_local_n_seq(prov_local *l, const char *name);
/* The most requests of model NAME that have shared one forward step. */
int prov_local_peak_running(prov_local *l, const char *name);

/* Context length of model NAME (0 when unknown). */
int prov_local_n_ctx(prov_local *l, const char *name);

#endif
