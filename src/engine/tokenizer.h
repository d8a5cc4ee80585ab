/*
 * tokenizer — text <-> token ids, exactly as the model was trained.
 *
 * Two algorithms, chosen by the vocabulary's `tokenizer.ggml.model`:
 *   "llama" (SentencePiece-style, TOK_SPM): spaces become U+2581 "▁", a
 *           leading space is added, pieces merge by score, and text that no
 *           token covers falls back to <0xNN> byte tokens.
 *   "gpt2"  (byte-level BPE, TOK_BPE): a pre-tokenizer (a list of regexes
 *           chosen by `tokenizer.ggml.pre`) splits text into words, each
 *           byte is mapped to a printable code point, and ranked merges join
 *           symbols inside each word.
 * Both behave as llama.cpp's llama-vocab does (commit c392e509), which is
 * what the test vectors under testdata/vocab pin down.
 *
 * The core constructor takes plain arrays (tok_vocab_desc) so a vocabulary
 * can come from anywhere; tok_from_gguf() reads one from GGUF metadata.
 *
 * Thread safety: a tok_tokenizer is immutable after construction; any
 * number of threads may encode and decode with it at once (per-call scratch
 * memory, PCRE2 match data allocated per call).
 */
#ifndef CONFAB_ENGINE_TOKENIZER_H
#define CONFAB_ENGINE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/sb.h"

typedef enum { TOK_SPM = 1, TOK_BPE = 2 } tok_kind;

/* GGUF token types (tokenizer.ggml.token_type), numbered as llama.cpp. */
enum {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

/* A byte string that need not be NUL-terminated. */
typedef struct {
    const char *p;
    size_t n;
} tok_str;

/* Special-id value meaning "use the default for this kind of vocabulary"
 * (SPM: bos 1, eos 2, unk 0; BPE: bos 11, eos 11, no unk, as llama.cpp).
 * -1 means "none". */
#define TOK_ID_DEFAULT INT32_MIN

/* Everything a tokenizer is built from. Arrays are read during tok_new()
 * and not kept: the caller may free them afterwards. */
typedef struct {
    tok_kind kind;
    const char *pre; /* BPE pre-tokenizer name ("llama-bpe", "gpt-2", ...); NULL = "default" */
    uint32_t n_tokens;
    const tok_str *tokens; /* (n_tokens,) token texts, unique, non-empty */
    const float *scores;   /* (n_tokens,) or NULL (all 0); SPM merges by these */
    const int32_t *types;  /* (n_tokens,) TOK_TYPE_*, or NULL (all normal) */
    uint32_t n_merges;
    const tok_str *merges;                  /* (n_merges,) "left right", rank = index; BPE only */
    int32_t bos_id, eos_id, unk_id, eot_id; /* TOK_ID_DEFAULT, -1 or an id */
    int add_bos, add_eos;                   /* 1/0, or -1 for the default of kind and pre */
    int add_space_prefix;                   /* SPM: 1/0, or -1 for the default (1) */
    bool rstrip_special;                    /* eat whitespace after special tokens (Phi-3) */
} tok_vocab_desc;

/* Fills D with "nothing set": every id TOK_ID_DEFAULT, flags -1, no arrays. */
void tok_desc_init(tok_vocab_desc *d, tok_kind kind);

typedef struct tok_tokenizer tok_tokenizer;

/* Builds a tokenizer. Errors (CF_EINVAL / CF_EFORMAT with a message):
 * no tokens, an empty or duplicate token, a BPE vocabulary without merges,
 * an unknown pre-tokenizer name, a special id out of range, add_bos set but
 * no bos id. Returns NULL on error. Free with tok_free(). */
tok_tokenizer *tok_new(const tok_vocab_desc *d, cf_err *err);
void tok_free(tok_tokenizer *t);

struct gguf_file;
/* Builds the tokenizer described by F's tokenizer.ggml.* metadata. Errors
 * name the key at fault: missing tokens, arrays of the wrong type or a
 * length that does not match the token list, an unsupported model. */
tok_tokenizer *tok_from_gguf(const struct gguf_file *f, cf_err *err);
/* Opens PATH, reads its tokenizer and closes it. */
tok_tokenizer *tok_load(const char *path, cf_err *err);

/* ---- properties ---- */
tok_kind tok_get_kind(const tok_tokenizer *t);
uint32_t tok_n_tokens(const tok_tokenizer *t);
int32_t tok_bos(const tok_tokenizer *t); /* -1 when none */
int32_t tok_eos(const tok_tokenizer *t);
int32_t tok_eot(const tok_tokenizer *t);
bool tok_add_bos(const tok_tokenizer *t);
bool tok_add_eos(const tok_tokenizer *t);
/* Name of the BPE pre-tokenizer in use ("llama3", "gpt2", ...; "" for SPM). */
const char *tok_pre_name(const tok_tokenizer *t);
/* The token's text as stored in the vocabulary (not decoded); ID must be
 * in range. */
tok_str tok_text(const tok_tokenizer *t, int32_t id);
/* TOK_TYPE_* of ID. */
int tok_type(const tok_tokenizer *t, int32_t id);
/* Id of the token whose stored text is exactly S, or -1. */
int32_t tok_find(const tok_tokenizer *t, const char *s, size_t n);

/* ---- encoding ---- */

/* A growable array of token ids; start zeroed, free with tok_ids_free. */
typedef struct {
    int32_t *v; /* (cap,) */
    size_t n, cap;
} tok_ids;
void tok_ids_push(tok_ids *a, int32_t id);
void tok_ids_free(tok_ids *a);

/* Tokenizes LEN bytes of TEXT (NULL allowed when LEN is 0) and appends the
 * ids to OUT (on error OUT may hold part of the result).
 * ADD_SPECIAL adds BOS/EOS as the vocabulary asks (add_bos/add_eos).
 * PARSE_SPECIAL lets control tokens ("<|eot_id|>", "<s>") written in the
 * text become those tokens; otherwise they are tokenized as plain text.
 * User-defined tokens are always matched, as in Hugging Face tokenizers.
 * Invalid UTF-8: each byte that is not part of a valid sequence is read as
 * U+FFFD (the replacement character), so any input tokenizes; callers that
 * want to refuse such input check utf8_valid() first.
 * Cost is O(LEN log LEN) at worst (one enormous word), linear for text.
 * Returns 0, or CF_ERANGE (text over 2 GiB, a regex failing on its limits)
 * or CF_ENOMEM with ERR set. */
int tok_encode(const tok_tokenizer *t, const char *text, size_t len, bool add_special,
               bool parse_special, tok_ids *out, cf_err *err);

/* ---- decoding ---- */

/* Appends the bytes of token ID to OUT. Control and unknown tokens give
 * nothing unless SPECIAL. The bytes may be part of a UTF-8 character (byte
 * tokens); see tok_stream for output that must be whole characters.
 * Returns 0, or CF_ERANGE for an id outside the vocabulary. */
int tok_piece(const tok_tokenizer *t, int32_t id, bool special, sb_t *out, cf_err *err);

/* Appends the text of N ids to OUT. For SentencePiece vocabularies the
 * space added in front of the text by encoding is removed again, so
 * decode(encode(x)) == x for valid UTF-8 x. Returns 0 or CF_ERANGE. */
int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, bool special, sb_t *out,
               cf_err *err);

/* Streaming detokenizer for generation: push ids one at a time, get text
 * that ends on a whole UTF-8 character. Bytes of a character split over
 * tokens wait for the token that completes it; bytes that can never be
 * part of a character (0xFF, a lead byte followed by a non-continuation)
 * come out as U+FFFD, so every chunk is valid UTF-8. */
typedef struct tok_stream tok_stream;
enum {
    TOK_STREAM_SPECIAL = 1,     /* render control tokens as their text */
    TOK_STREAM_STRIP_SPACE = 2, /* SPM: drop the prefix space of the first piece */
};
/* Returns NULL only when out of memory. T must outlive the stream. */
tok_stream *tok_stream_new(const tok_tokenizer *t, int flags);
/* Appends to OUT the text completed by ID (possibly nothing). Returns 0 or
 * CF_ERANGE for a bad id (the stream is unchanged then). */
int tok_stream_push(tok_stream *s, int32_t id, sb_t *out, cf_err *err);
/* Number of bytes held back waiting for the rest of a character. */
size_t tok_stream_pending(const tok_stream *s);
/* Ends the stream: an unfinished character still held back is appended as
 * one U+FFFD. The stream may be reused afterwards (as a new stream). */
void tok_stream_flush(tok_stream *s, sb_t *out);
void tok_stream_free(tok_stream *s);

#endif
