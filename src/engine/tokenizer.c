/*
 * tokenizer — SentencePiece-style and byte-level BPE tokenizers, exact to
 * llama.cpp's llama-vocab (commit c392e509), plus detokenizing.
 *
 * How encoding works (tok_encode):
 *  1. Invalid UTF-8 bytes are replaced by U+FFFD (one per byte), so every
 *     later stage sees valid UTF-8; PCRE2 then never re-checks it
 *     (PCRE2_NO_UTF_CHECK), which keeps matching linear.
 *  2. Special-token partition: the text is cut around occurrences of special
 *     tokens (control and unknown tokens only when parse_special, user-defined
 *     tokens always), longest token text first, as llama.cpp does; a pass
 *     over a byte trie first finds which special texts occur at all, so
 *     only those are searched for.
 *  3. Each text fragment is tokenized by the vocabulary's algorithm:
 *     SPM: spaces become "▁" (with one added in front of the first fragment),
 *       the text is split into UTF-8 characters, and the adjacent pair whose
 *       concatenation is the best-scoring token is merged, repeatedly, using
 *       a priority queue over a doubly linked list of symbols: O(n log n).
 *       Symbols no token covers fall back to <0xNN> byte tokens. When no
 *       token has "▁" right after another character (checked at load;
 *       true of Llama 2 / Mistral / Phi-3), no merge can cross the start of
 *       a "▁" run, so each run is merged on its own: same result, small
 *       queues.
 *     BPE: a list of regexes (the pre-tokenizer) splits the fragment into
 *       words: each regex splits every piece the previous one produced,
 *       keeping both the matches and the text between them. Each word's
 *       bytes are mapped to printable code points (GPT-2's bytes_to_unicode)
 *       and merged by rank with the same queue. Merges work on integer
 *       symbol ids, not strings: every token and every merge result has an
 *       id, and a merge table maps (left id, right id) to (rank, result id).
 *  4. BOS/EOS are added as the vocabulary says.
 *
 * Trade-offs:
 *  - Regexes are compiled once per tokenizer with PCRE2 UTF+UCP and JIT;
 *    match data and the JIT stack are per call, so encoding is thread-safe
 *    without locks. `\s`/`\S` are rewritten to the Unicode White_Space set
 *    (what llama.cpp and Hugging Face use): PCRE2's `\s` also matches
 *    U+180E. `$` means end of piece only (PCRE2_DOLLAR_ENDONLY, as in
 *    ECMAScript), and deepseek-llm's `\s+$` is anchored after a non-space so
 *    long runs of spaces cost linear time.
 *  - An encode call caches the tokens of each distinct BPE word or SPM run
 *    it meets (up to 48 bytes, bounded table), because natural text repeats
 *    words; the cache lives and dies with the call.
 *  - llama.cpp's SPM "resegment" step is not needed: every merged symbol is a
 *    token by construction, so only single characters can lack a token.
 *  - WordPiece, Unigram and RWKV vocabularies are not supported.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "engine/tokenizer.h"

#include <ctype.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/log.h"
#include "base/utf8.h"

/* Attribute bits of a token, derived from its type (llama_token_attr). */
enum {
    ATTR_NORMAL = 1 << 0,
    ATTR_UNKNOWN = 1 << 1,
    ATTR_CONTROL = 1 << 2,
    ATTR_USER_DEFINED = 1 << 3,
    ATTR_UNUSED = 1 << 4,
    ATTR_BYTE = 1 << 5,
    ATTR_LSTRIP = 1 << 6,
    ATTR_RSTRIP = 1 << 7,
};

#define MAX_REGEX 6

/* ------------------------------------------------------------------ string -> id map */

/* Open addressing over symbol ids; the texts live in the tokenizer's pool. */
typedef struct {
    int32_t *slot;  /* (cap,) symbol id or -1 */
    uint32_t *hash; /* (cap,) low 32 bits of the key's hash */
    size_t cap;     /* power of two */
} strmap;

/* ------------------------------------------------------------------ merge table */

typedef struct {
    uint64_t key; /* (left sid << 32) | right sid; UINT64_MAX = empty */
    int32_t rank;
    int32_t result; /* sid of left+right */
} merge_ent;

typedef struct {
    merge_ent *e; /* (cap,) */
    size_t cap;   /* power of two */
} mergemap;

/* ------------------------------------------------------------------ the tokenizer */

struct tok_tokenizer {
    tok_kind kind;
    uint32_t n_tokens;
    /* Symbols: ids [0, n_tokens) are the tokens; ids above are merge
     * results that are not tokens (BPE only). */
    uint32_t n_syms, cap_syms;
    uint64_t *sym_off; /* (n_syms,) offset into pool << 32 | length */
    sb_t pool;         /* all symbol texts, back to back */
    strmap map;        /* text -> sid */
    float *scores;     /* (n_tokens,) */
    uint8_t *types;    /* (n_tokens,) TOK_TYPE_* */
    uint8_t *attr;     /* (n_tokens,) ATTR_* */

    mergemap merges;
    int32_t byte_sym[256]; /* BPE: sid of the mapped code point of each byte, or -1 */
    char byte_enc[256][3]; /* BPE: UTF-8 of the code point each byte maps to */
    uint8_t byte_enc_len[256];
    int32_t byte_tok[256]; /* SPM: <0xNN> token of each byte (or the 1-char token), or -1 */
    int16_t cp_byte[324];  /* BPE decoding: code point -> byte, or -1 */

    int32_t *specials; /* (n_specials,) ids tried in the partition, longest text first */
    uint32_t n_specials;
    /* Byte trie of the special texts: edge (node << 8 | byte) -> child node;
     * node_prio[node] = index into specials of the text ending there, or -1. */
    struct trie_edge {
        uint64_t key; /* UINT64_MAX = empty */
        int32_t child;
    } * trie;
    size_t trie_cap;
    int32_t *node_prio;
    uint8_t first_byte[32]; /* bitmap: bytes that start some special text */

    char pre_name[32];
    int n_regex;
    pcre2_code *re[MAX_REGEX];
    bool re_jit[MAX_REGEX]; /* compiled by the JIT: match with pcre2_jit_match */
    bool ignore_merges;
    bool spm_split; /* SPM: no token has "▁" right after another character */

    int32_t bos, eos, unk, eot;
    bool add_bos, add_eos, add_space_prefix;
};

/* ------------------------------------------------------------------ helpers */

static uint32_t sym_len(const tok_tokenizer *t, int32_t sid) {
    return (uint32_t)(t->sym_off[sid] & 0xffffffffu);
}
static const char *sym_text(const tok_tokenizer *t, int32_t sid) {
    return t->pool.data + (t->sym_off[sid] >> 32);
}

static uint64_t str_hash(const char *p, size_t n) { return hash64(p, n, 0x7a6f6b); }

static int strmap_init(strmap *m, size_t n) {
    size_t cap = 64;
    while (cap < n * 2)
        cap *= 2;
    m->slot = malloc(cap * sizeof *m->slot);
    m->hash = malloc(cap * sizeof *m->hash);
    if (!m->slot || !m->hash) return CF_ENOMEM;
    memset(m->slot, 0xff, cap * sizeof *m->slot);
    m->cap = cap;
    return 0;
}

static void strmap_free(strmap *m) {
    free(m->slot);
    free(m->hash);
    memset(m, 0, sizeof *m);
}

/* Returns the sid stored for text P[0..N), or -1. */
static int32_t strmap_get(const tok_tokenizer *t, const char *p, size_t n) {
    const strmap *m = &t->map;
    uint64_t h = str_hash(p, n);
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        int32_t sid = m->slot[i];
        if (sid < 0) return -1;
        if (m->hash[i] == (uint32_t)h && sym_len(t, sid) == n && !memcmp(sym_text(t, sid), p, n))
            return sid;
    }
}

/* Inserts SID (whose text is already in the pool); the map must have room. */
static void strmap_put(tok_tokenizer *t, int32_t sid) {
    strmap *m = &t->map;
    uint64_t h = str_hash(sym_text(t, sid), sym_len(t, sid));
    size_t mask = m->cap - 1;
    size_t i = (size_t)h & mask;
    while (m->slot[i] >= 0)
        i = (i + 1) & mask;
    m->slot[i] = sid;
    m->hash[i] = (uint32_t)h;
}

static int strmap_grow(tok_tokenizer *t) {
    strmap old = t->map;
    if (strmap_init(&t->map, old.cap) != 0) { /* doubles: init makes cap >= 2n */
        strmap_free(&t->map);
        t->map = old;
        return CF_ENOMEM;
    }
    for (size_t i = 0; i < old.cap; i++)
        if (old.slot[i] >= 0) strmap_put(t, old.slot[i]);
    strmap_free(&old);
    return 0;
}

/* Appends a new symbol with text P[0..N) and returns its sid, or -1 when
 * out of memory. Does not check for duplicates. */
static int32_t sym_add(tok_tokenizer *t, const char *p, size_t n) {
    if (t->n_syms == t->cap_syms) {
        uint32_t cap = t->cap_syms ? t->cap_syms * 2 : 1024;
        uint64_t *o = realloc(t->sym_off, cap * sizeof *o);
        if (!o) return -1;
        t->sym_off = o;
        t->cap_syms = cap;
    }
    if ((size_t)(t->n_syms + 1) * 2 > t->map.cap && strmap_grow(t) != 0) return -1;
    int32_t sid = (int32_t)t->n_syms++;
    t->sym_off[sid] = ((uint64_t)t->pool.len << 32) | (uint64_t)n;
    sb_appendn(&t->pool, p, n);
    strmap_put(t, sid);
    return sid;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static const merge_ent *merge_get(const tok_tokenizer *t, int32_t a, int32_t b) {
    const mergemap *m = &t->merges;
    if (!m->cap) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)mix64(key) & mask;; i = (i + 1) & mask) {
        if (m->e[i].key == key) return &m->e[i];
        if (m->e[i].key == UINT64_MAX) return NULL;
    }
}

/* ------------------------------------------------------------------ byte <-> unicode (GPT-2) */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100 onwards, in byte order. */
static uint32_t byte_to_cp(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)))
            n++;
    return 256u + (uint32_t)n;
}

/* ------------------------------------------------------------------ pre-tokenizers */

/* The regexes of each pre-tokenizer, copied from llama.cpp's llama-vocab.cpp
 * (already adapted there from each model's tokenizer.json). Code points that
 * Unicode normalization would change (U+1F7D, U+1FBE, U+1FD3, U+1FDB,
 * U+2126, U+212A) are written as \x{...} so no editor or tool can silently
 * turn them into their canonical equivalents. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"     \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"     \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* The formatter miscounts the width of these characters. */
// clang-format off
#define RE_DEEPSEEK_LETTERS \
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯ" \
    "Ա-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\\x{1F7D}" \
    "ᾀ-ᾴᾶ-ᾼ\\x{1FBE}ῂ-ῄῆ-ῌῐ-\\x{1FD3}ῖ-\\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-" \
    "ℓℕℙ-ℝℤ\\x{2126}ℨ\\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-" \
    "ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"
// clang-format on

#define UPPERISH "[^\\P{L}a-z]" /* a letter, not a-z */
#define LOWERISH "[^\\P{L}A-Z]" /* a letter, not A-Z */
#define RE_CONTRACTION "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

enum { PRE_ADD_BOS = 1, PRE_IGNORE_MERGES = 2, PRE_NO_BOS_ID = 4 };

typedef struct {
    const char *id;        /* canonical name (llama.cpp's LLAMA_VOCAB_PRE_TYPE_*) */
    const char *names[12]; /* tokenizer.ggml.pre values that select it */
    const char *re[MAX_REGEX];
    int flags;
} pre_def;

static const pre_def PRE_DEFS[] = {
    {"default",
     {"default"},
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
     0},
    {"llama3",
     {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
     {RE_LLAMA3},
     PRE_ADD_BOS | PRE_IGNORE_MERGES},
    {"dbrx", {"dbrx", "smaug-bpe"}, {RE_LLAMA3}, 0},
    {"deepseek-llm",
     {"deepseek-llm"},
     {"[\r\n]", RE_DEEPSEEK_LETTERS, "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$",
      "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
     0},
    {"deepseek-coder",
     {"deepseek-coder"},
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"},
     0},
    {"deepseek-v3",
     {"deepseek-v3"},
     {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
      "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
      "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
     0},
    {"falcon", {"falcon"}, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, 0},
    {"starcoder",
     {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
     {"\\p{N}", RE_GPT2},
     0},
    {"gpt2",
     {"gpt-2", "phi-2", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "mpt", "olmo", "jais",
      "roberta-bpe", "jina-v1-en", "jina-v2-code"},
     {RE_GPT2},
     0},
    {"gpt2", {"exaone4", "gigachat", "a.x-4.0", "trillion", "granite-docling"}, {RE_GPT2}, 0},
    {"qwen2",
     {"qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan", "megrez", "kormo"},
     {RE_QWEN2},
     0},
    {"qwen35",
     {"qwen35"},
     {RE_CONTRACTION "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}"
                     "| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     0},
    {"poro", {"poro-chat", "bloom", "gpt3-finnish"}, {" ?[^(\\s|.,!?…。，、।۔،)]+"}, 0},
    {"chatglm4", {"chatglm-bpe", "glm4"}, {RE_LLAMA3}, PRE_NO_BOS_ID},
    {"viking", {"viking"}, {" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"}, 0},
    /* llama.cpp spells "a letter but not a-z" as ((?=[\p{L}])([^a-z])); the
     * class [^\P{L}a-z] says the same without a group per character, which
     * would backtrack (and overflow the JIT stack) on long words. */
    {"tekken",
     {"tekken"},
     {"[^\\r\\n\\p{L}\\p{N}]?" UPPERISH "*" LOWERISH "+|[^\\r\\n\\p{L}\\p{N}]?" UPPERISH
      "+" LOWERISH "*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     PRE_ADD_BOS | PRE_IGNORE_MERGES},
    {"gpt4o",
     {"gpt-4o", "llama4"},
     {"[^\\r\\n\\p{L}\\p{N}]?" UPPERISH "*" LOWERISH "+" RE_CONTRACTION
      "?|[^\\r\\n\\p{L}\\p{N}]?" UPPERISH "+" LOWERISH "*" RE_CONTRACTION
      "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     0},
    {"seed-coder",
     {"seed-coder"},
     {RE_CONTRACTION "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}"
                     "| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     0},
};

static const pre_def *pre_find(const char *name) {
    for (size_t i = 0; i < sizeof PRE_DEFS / sizeof PRE_DEFS[0]; i++)
        for (int k = 0; k < 12 && PRE_DEFS[i].names[k]; k++)
            if (!strcmp(PRE_DEFS[i].names[k], name)) return &PRE_DEFS[i];
    return NULL;
}

/* The Unicode White_Space set, as a character-class body. */
#define WS_CLASS                                                                                   \
    "\\t-\\r "                                                                                     \
    "\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* Rewrites a pre-tokenizer regex for PCRE2: `\s` and `\S` become the
 * White_Space set (inside a class: its body; outside: a class of it or of
 * its complement), and `\s+$` is anchored after a non-space so a long space
 * run is not rescanned from every position (same matches: the leftmost
 * match of `\s+$` always starts a maximal space run). */
static void regex_translate(const char *re, sb_t *out) {
    if (!strcmp(re, "\\s+$")) {
        sb_append(out, "(?<![" WS_CLASS "])[" WS_CLASS "]+$");
        return;
    }
    bool in_class = false;
    for (size_t i = 0; re[i]; i++) {
        char c = re[i];
        if (c == '\\' && re[i + 1]) {
            char e = re[i + 1];
            if (e == 's') {
                sb_append(out, in_class ? WS_CLASS : "[" WS_CLASS "]");
            } else if (e == 'S' && !in_class) {
                sb_append(out, "[^" WS_CLASS "]");
            } else {
                sb_putc(out, c);
                sb_putc(out, e);
            }
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = true;
            sb_putc(out, c);
            if (re[i + 1] == '^') sb_putc(out, re[++i]);
            if (re[i + 1] == ']') sb_putc(out, re[++i]); /* literal ] first in class */
            continue;
        }
        if (c == ']' && in_class) in_class = false;
        sb_putc(out, c);
    }
}

static int compile_pre(tok_tokenizer *t, const pre_def *p, cf_err *err) {
    for (int i = 0; i < MAX_REGEX && p->re[i]; i++) {
        sb_t s = {0};
        regex_translate(p->re[i], &s);
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile(
            (PCRE2_SPTR)s.data, s.len,
            PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NO_UTF_CHECK, &ec, &eo, NULL);
        if (!re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            cf_seterr(err, CF_EINVAL, "pre-tokenizer %s: regex %d does not compile at %zu: %s",
                      p->id, i, (size_t)eo, (const char *)msg);
            sb_free(&s);
            return CF_EINVAL;
        }
        sb_free(&s);
        /* JIT is an optimisation: without it (unsupported CPU) matching still works. */
        t->re_jit[t->n_regex] = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
        if (!t->re_jit[t->n_regex])
            log_debug("tok", "PCRE2 JIT unavailable for pre-tokenizer %s", p->id);
        t->re[t->n_regex++] = re;
    }
    return 0;
}

/* ------------------------------------------------------------------ construction */

void tok_desc_init(tok_vocab_desc *d, tok_kind kind) {
    memset(d, 0, sizeof *d);
    d->kind = kind;
    d->bos_id = d->eos_id = d->unk_id = d->eot_id = TOK_ID_DEFAULT;
    d->add_bos = d->add_eos = d->add_space_prefix = -1;
}

static uint8_t attr_of_type(int type) {
    switch (type) {
    case TOK_TYPE_NORMAL: return ATTR_NORMAL;
    case TOK_TYPE_UNKNOWN: return ATTR_UNKNOWN;
    case TOK_TYPE_CONTROL: return ATTR_CONTROL;
    case TOK_TYPE_USER_DEFINED: return ATTR_USER_DEFINED;
    case TOK_TYPE_UNUSED: return ATTR_UNUSED;
    case TOK_TYPE_BYTE: return ATTR_BYTE;
    default: return 0; /* undefined */
    }
}

static int resolve_id(const char *what, int32_t given, int32_t dflt, uint32_t n, int32_t *out,
                      cf_err *err) {
    if (given == TOK_ID_DEFAULT) {
        *out = (dflt >= 0 && (uint32_t)dflt < n) ? dflt : -1;
        return 0;
    }
    if (given < -1 || (given >= 0 && (uint32_t)given >= n))
        return cf_seterr(err, CF_EINVAL, "%s token id %d is outside the vocabulary (%u tokens)",
                         what, given, n);
    *out = given;
    return 0;
}

static int build_merges(tok_tokenizer *t, const tok_vocab_desc *d, cf_err *err) {
    size_t cap = 64;
    while (cap < (size_t)d->n_merges * 2)
        cap *= 2;
    t->merges.e = malloc(cap * sizeof *t->merges.e);
    if (!t->merges.e) return cf_seterr(err, CF_ENOMEM, "out of memory for %u merges", d->n_merges);
    memset(t->merges.e, 0xff, cap * sizeof *t->merges.e);
    t->merges.cap = cap;
    for (uint32_t r = 0; r < d->n_merges; r++) {
        const char *p = d->merges[r].p;
        size_t n = d->merges[r].n;
        /* Split at the first space after the first byte (llama.cpp: find(' ', 1)). */
        const char *sp = n > 1 ? memchr(p + 1, ' ', n - 1) : NULL;
        if (!sp)
            return cf_seterr(err, CF_EFORMAT,
                             "merge %u (\"%.*s\") has no space between its two parts", r,
                             (int)(n > 60 ? 60 : n), p);
        size_t ln = (size_t)(sp - p), rn = n - ln - 1;
        int32_t a = strmap_get(t, p, ln), b = strmap_get(t, sp + 1, rn);
        if (a < 0) a = sym_add(t, p, ln);
        if (b < 0) b = sym_add(t, sp + 1, rn);
        if (a < 0 || b < 0) return cf_seterr(err, CF_ENOMEM, "out of memory for merges");
        /* The merge result: left text + right text (look it up by a copy). */
        char small[256];
        char *cat = ln + rn <= sizeof small ? small : malloc(ln + rn);
        if (!cat) return cf_seterr(err, CF_ENOMEM, "out of memory for merges");
        memcpy(cat, p, ln);
        memcpy(cat + ln, sp + 1, rn);
        int32_t res = strmap_get(t, cat, ln + rn);
        if (res < 0) res = sym_add(t, cat, ln + rn);
        if (cat != small) free(cat);
        if (res < 0) return cf_seterr(err, CF_ENOMEM, "out of memory for merges");
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
        size_t mask = cap - 1;
        size_t i = (size_t)mix64(key) & mask;
        while (t->merges.e[i].key != UINT64_MAX && t->merges.e[i].key != key)
            i = (i + 1) & mask;
        if (t->merges.e[i].key == key) continue; /* duplicate pair: first rank wins (emplace) */
        t->merges.e[i] = (merge_ent){key, (int32_t)r, res};
    }
    return 0;
}

/* The special tokens the partition looks for, longest text first (ties by
 * id, so the order is deterministic). */
static int cmp_special_len_desc(const void *a, const void *b, void *ctx) {
    const tok_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = sym_len(t, x), ly = sym_len(t, y);
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int32_t trie_child(const tok_tokenizer *t, int32_t node, unsigned char b) {
    uint64_t key = ((uint64_t)(uint32_t)node << 8) | b;
    size_t mask = t->trie_cap - 1;
    for (size_t i = (size_t)mix64(key) & mask;; i = (i + 1) & mask) {
        if (t->trie[i].key == key) return t->trie[i].child;
        if (t->trie[i].key == UINT64_MAX) return -1;
    }
}

static int build_trie(tok_tokenizer *t) {
    size_t total = 1;
    for (uint32_t k = 0; k < t->n_specials; k++)
        total += sym_len(t, t->specials[k]);
    size_t cap = 64;
    while (cap < total * 2)
        cap *= 2;
    t->trie = malloc(cap * sizeof *t->trie);
    t->node_prio = malloc(total * sizeof *t->node_prio);
    if (!t->trie || !t->node_prio) return CF_ENOMEM;
    memset(t->trie, 0xff, cap * sizeof *t->trie);
    t->trie_cap = cap;
    t->node_prio[0] = -1;
    int32_t n_nodes = 1;
    for (uint32_t k = 0; k < t->n_specials; k++) {
        const unsigned char *p = (const unsigned char *)sym_text(t, t->specials[k]);
        uint32_t n = sym_len(t, t->specials[k]);
        t->first_byte[p[0] >> 3] |= (uint8_t)(1u << (p[0] & 7));
        int32_t node = 0;
        for (uint32_t i = 0; i < n; i++) {
            int32_t c = trie_child(t, node, p[i]);
            if (c < 0) {
                uint64_t key = ((uint64_t)(uint32_t)node << 8) | p[i];
                size_t j = (size_t)mix64(key) & (cap - 1);
                while (t->trie[j].key != UINT64_MAX)
                    j = (j + 1) & (cap - 1);
                c = n_nodes++;
                t->trie[j] = (struct trie_edge){key, c};
                t->node_prio[c] = -1;
            }
            node = c;
        }
        t->node_prio[node] = (int32_t)k;
    }
    return 0;
}

tok_tokenizer *tok_new(const tok_vocab_desc *d, cf_err *err) {
    if (!d || (d->kind != TOK_SPM && d->kind != TOK_BPE)) {
        cf_seterr(err, CF_EINVAL, "unsupported tokenizer kind");
        return NULL;
    }
    if (d->n_tokens == 0 || !d->tokens) {
        cf_seterr(err, CF_EINVAL, "the vocabulary has no tokens");
        return NULL;
    }
    if (d->n_tokens > (1u << 30)) {
        cf_seterr(err, CF_EINVAL, "the vocabulary has too many tokens (%u)", d->n_tokens);
        return NULL;
    }
    const pre_def *pre = NULL;
    if (d->kind == TOK_BPE) {
        const char *name = d->pre && d->pre[0] ? d->pre : "default";
        pre = pre_find(name);
        if (!pre) {
            cf_seterr(err, CF_EINVAL, "unknown pre-tokenizer '%s' (tokenizer.ggml.pre)", name);
            return NULL;
        }
        if (d->n_merges == 0 || !d->merges) {
            cf_seterr(err, CF_EINVAL, "a BPE vocabulary needs merges (tokenizer.ggml.merges)");
            return NULL;
        }
    }

    tok_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    t->kind = d->kind;
    t->n_tokens = d->n_tokens;
    uint32_t n = d->n_tokens;
    t->scores = calloc(n, sizeof *t->scores);
    t->types = calloc(n, 1);
    t->attr = calloc(n, 1);
    if (!t->scores || !t->types || !t->attr || strmap_init(&t->map, n) != 0) {
        cf_seterr(err, CF_ENOMEM, "out of memory for %u tokens", n);
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++) {
        tok_str s = d->tokens[i];
        if (s.n == 0 || !s.p) {
            cf_seterr(err, CF_EFORMAT, "token %u is empty", i);
            goto fail;
        }
        if (s.n > 0xffffffu) {
            cf_seterr(err, CF_EFORMAT, "token %u is %zu bytes long", i, s.n);
            goto fail;
        }
        int32_t dup = strmap_get(t, s.p, s.n);
        if (dup >= 0) {
            cf_seterr(err, CF_EFORMAT, "duplicate token in vocabulary: '%.*s' has ids %d and %u",
                      (int)(s.n > 60 ? 60 : s.n), s.p, dup, i);
            goto fail;
        }
        if (sym_add(t, s.p, s.n) < 0) {
            cf_seterr(err, CF_ENOMEM, "out of memory for %u tokens", n);
            goto fail;
        }
        t->scores[i] = d->scores ? d->scores[i] : 0.0f;
        int type = d->types ? d->types[i] : TOK_TYPE_NORMAL;
        t->types[i] = (uint8_t)(type >= 0 && type <= TOK_TYPE_BYTE ? type : TOK_TYPE_UNDEFINED);
        t->attr[i] = attr_of_type(t->types[i]);
    }

    /* Special ids and flags, with llama.cpp's defaults per kind. */
    bool spm = d->kind == TOK_SPM;
    int32_t def_bos = spm ? 1 : 11, def_eos = spm ? 2 : 11, def_unk = spm ? 0 : -1;
    if (pre && (pre->flags & PRE_NO_BOS_ID)) def_bos = -1;
    if (resolve_id("BOS", d->bos_id, def_bos, n, &t->bos, err) ||
        resolve_id("EOS", d->eos_id, def_eos, n, &t->eos, err) ||
        resolve_id("unknown", d->unk_id, def_unk, n, &t->unk, err) ||
        resolve_id("EOT", d->eot_id, -1, n, &t->eot, err))
        goto fail;
    bool def_add_bos = spm || (pre && (pre->flags & PRE_ADD_BOS));
    t->add_bos = d->add_bos < 0 ? def_add_bos : d->add_bos != 0;
    t->add_eos = d->add_eos < 0 ? false : d->add_eos != 0;
    t->add_space_prefix = spm && (d->add_space_prefix < 0 || d->add_space_prefix != 0);
    if (t->add_bos && t->bos < 0) {
        cf_seterr(err, CF_EINVAL, "add_bos_token is true but there is no BOS token");
        goto fail;
    }
    if (t->add_eos && t->eos < 0) {
        cf_seterr(err, CF_EINVAL, "add_eos_token is true but there is no EOS token");
        goto fail;
    }

    /* Without an EOT id in the metadata, the first end-of-turn token found
     * by its text becomes EOT and is made a control token whatever its type
     * says; so is "<|eom_id|>" (llama.cpp does both). */
    static const char *const eot_texts[] = {
        "<|eot_id|>",      "<|im_end|>", "<|end|>", "<end_of_turn>",        "<|endoftext|>",
        "<|end_of_text|>", "<EOT>",      "_<EOT>",  "<｜end▁of▁sentence｜>"};
    for (size_t k = 0; k < sizeof eot_texts / sizeof eot_texts[0] && t->eot < 0; k++) {
        int32_t id = strmap_get(t, eot_texts[k], strlen(eot_texts[k]));
        if (id < 0 || (uint32_t)id >= n) continue;
        t->eot = id;
        t->attr[id] |= ATTR_CONTROL;
    }
    int32_t eom = strmap_get(t, "<|eom_id|>", 10);
    if (eom >= 0 && (uint32_t)eom < n) t->attr[eom] |= ATTR_CONTROL;

    /* Tokens the special-token partition looks for. */
    t->specials = malloc(n * sizeof *t->specials);
    if (!t->specials) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))
            t->specials[t->n_specials++] = (int32_t)i;
    qsort_r(t->specials, t->n_specials, sizeof *t->specials, cmp_special_len_desc, t);
    if (d->rstrip_special) {
        /* Phi-3: whitespace after a special token belongs to the token. */
        for (uint32_t i = 0; i < t->n_specials; i++)
            t->attr[t->specials[i]] |= ATTR_RSTRIP;
        int32_t id = strmap_get(t, "</s>", 4);
        if (id >= 0 && (uint32_t)id < n) t->attr[id] |= ATTR_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (size_t k = 0; k < 3; k++) {
            id = strmap_get(t, keep[k], strlen(keep[k]));
            if (id >= 0 && (uint32_t)id < n) t->attr[id] &= (uint8_t)~ATTR_RSTRIP;
        }
    }

    if (build_trie(t) != 0) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        goto fail;
    }

    /* Byte tables. */
    for (int b = 0; b < 256; b++) {
        t->byte_sym[b] = t->byte_tok[b] = -1;
        char enc[4];
        int l = utf8_encode(byte_to_cp(b), enc);
        memcpy(t->byte_enc[b], enc, (size_t)l);
        t->byte_enc_len[b] = (uint8_t)l;
    }
    memset(t->cp_byte, 0xff, sizeof t->cp_byte);
    for (int b = 0; b < 256; b++)
        t->cp_byte[byte_to_cp(b)] = (int16_t)b;

    if (spm) {
        t->spm_split = true;
        for (uint32_t i = 0; i < n && t->spm_split; i++) {
            const char *p = sym_text(t, (int32_t)i);
            uint32_t l = sym_len(t, (int32_t)i);
            for (uint32_t k = 1; k + 3 <= l; k++)
                if (!memcmp(p + k, "\xE2\x96\x81", 3) &&
                    (k < 3 || memcmp(p + k - 3, "\xE2\x96\x81", 3) != 0)) {
                    t->spm_split = false;
                    break;
                }
        }
        static const char hex[] = "0123456789ABCDEF";
        for (int b = 0; b < 256; b++) {
            char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            int32_t id = strmap_get(t, buf, 6);
            if (id < 0) {
                char c = (char)b;
                id = strmap_get(t, &c, 1);
            }
            t->byte_tok[b] = id >= 0 && (uint32_t)id < n ? id : -1;
        }
    } else {
        snprintf(t->pre_name, sizeof t->pre_name, "%s", pre->id);
        t->ignore_merges = (pre->flags & PRE_IGNORE_MERGES) != 0;
        if (compile_pre(t, pre, err) != 0) goto fail;
        if (build_merges(t, d, err) != 0) goto fail;
        for (int b = 0; b < 256; b++) {
            t->byte_sym[b] = strmap_get(t, t->byte_enc[b], t->byte_enc_len[b]);
            char c = (char)b;
            int32_t id = strmap_get(t, &c, 1);
            t->byte_tok[b] = id >= 0 && (uint32_t)id < n ? id : -1;
        }
    }
    return t;

fail:
    tok_free(t);
    return NULL;
}

void tok_free(tok_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_regex; i++)
        pcre2_code_free(t->re[i]);
    free(t->merges.e);
    free(t->specials);
    free(t->trie);
    free(t->node_prio);
    strmap_free(&t->map);
    sb_free(&t->pool);
    free(t->sym_off);
    free(t->scores);
    free(t->types);
    free(t->attr);
    free(t);
}

/* ------------------------------------------------------------------ properties */

tok_kind tok_get_kind(const tok_tokenizer *t) { return t->kind; }
uint32_t tok_n_tokens(const tok_tokenizer *t) { return t->n_tokens; }
int32_t tok_bos(const tok_tokenizer *t) { return t->bos; }
int32_t tok_eos(const tok_tokenizer *t) { return t->eos; }
int32_t tok_eot(const tok_tokenizer *t) { return t->eot; }
bool tok_add_bos(const tok_tokenizer *t) { return t->add_bos; }
bool tok_add_eos(const tok_tokenizer *t) { return t->add_eos; }
const char *tok_pre_name(const tok_tokenizer *t) { return t->pre_name; }

tok_str tok_text(const tok_tokenizer *t, int32_t id) {
    return (tok_str){sym_text(t, id), sym_len(t, id)};
}
int tok_type(const tok_tokenizer *t, int32_t id) { return t->types[id]; }

int32_t tok_find(const tok_tokenizer *t, const char *s, size_t n) {
    int32_t sid = strmap_get(t, s, n);
    return sid >= 0 && (uint32_t)sid < t->n_tokens ? sid : -1;
}

void tok_ids_push(tok_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) abort(); /* as sb: running out of memory while building output is fatal */
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
}

void tok_ids_free(tok_ids *a) {
    free(a->v);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------ merge queue */

/* One candidate merge of two adjacent symbols. Lower prio merges first
 * (BPE: the rank; SPM: minus the score); ties go to the leftmost pair. */
typedef struct {
    float prio;
    int32_t left, right; /* symbol indices */
    int32_t a, b;        /* BPE: the two sids when queued; SPM: unused / byte size */
} bigram;

typedef struct {
    bigram *v;
    size_t n, cap;
} heap;

static bool bg_before(const bigram *x, const bigram *y) {
    return x->prio < y->prio || (x->prio == y->prio && x->left < y->left);
}

static void heap_push(heap *h, bigram g) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        bigram *v = realloc(h->v, cap * sizeof *v);
        if (!v) abort();
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_before(&g, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = g;
}

static bigram heap_pop(heap *h) {
    bigram top = h->v[0];
    bigram last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bg_before(&h->v[c + 1], &h->v[c])) c++;
        if (!bg_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* A symbol in the linked list a word is merged in. */
typedef struct {
    int32_t prev, next;
    uint32_t off, n; /* bytes in the (escaped / original) text; n == 0: merged away */
    int32_t sid;     /* BPE: symbol id, -1 when the character has none */
} symbol;

/* Scratch memory of one encode call. */
typedef struct {
    symbol *sym;
    size_t n_sym, cap_sym;
    heap q;
    sb_t buf;         /* SPM escaped text / BPE encoded word */
    const char *base; /* SPM: the chunk being merged */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    /* pieces of the pre-tokenizer: (off << 32 | len) */
    uint64_t *pc, *pc2;
    size_t n_pc, n_pc2, cap_pc, cap_pc2;
    /* Word cache (BPE): word bytes -> ids, for words up to WC_MAX_WORD bytes. */
    struct wc_ent {
        uint64_t h; /* 0 = empty */
        uint32_t key_off, key_len, ids_off, ids_n;
    } * wc;
    size_t wc_used;
    sb_t wc_keys;
    tok_ids wc_ids;
} enc_ctx;

#define WC_CAP (1u << 15)
#define WC_MAX_WORD 48

static void ctx_free(enc_ctx *c) {
    free(c->sym);
    free(c->q.v);
    sb_free(&c->buf);
    if (c->md) pcre2_match_data_free(c->md);
    if (c->mctx) pcre2_match_context_free(c->mctx);
    if (c->jit) pcre2_jit_stack_free(c->jit);
    free(c->pc);
    free(c->pc2);
    free(c->wc);
    sb_free(&c->wc_keys);
    tok_ids_free(&c->wc_ids);
}

static void sym_push(enc_ctx *c, symbol s) {
    if (c->n_sym == c->cap_sym) {
        size_t cap = c->cap_sym ? c->cap_sym * 2 : 256;
        symbol *v = realloc(c->sym, cap * sizeof *v);
        if (!v) abort();
        c->sym = v;
        c->cap_sym = cap;
    }
    c->sym[c->n_sym++] = s;
}

/* Appends S[0..N) to OUT with every byte that is not part of a valid UTF-8
 * sequence replaced by U+FFFD. */
static void append_sanitized(sb_t *out, const char *s, size_t n) {
    size_t i = 0, run = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int l = utf8_decode(s + i, n - i, &cp);
        if (l > 0) {
            i += (size_t)l;
            continue;
        }
        sb_appendn(out, s + run, i - run);
        sb_append(out, "\xEF\xBF\xBD");
        i++;
        run = i;
    }
    sb_appendn(out, s + run, n - run);
}

/* Byte length of the UTF-8 sequence a lead byte announces (1 for stray
 * continuation bytes), as llama.cpp's unicode_len_utf8. */
static size_t lead_len(unsigned char c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* ------------------------------------------------------------------ SPM */

static void spm_try(const tok_tokenizer *t, enc_ctx *c, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const symbol *l = &c->sym[left], *r = &c->sym[right];
    size_t n = (size_t)l->n + r->n;
    int32_t id = tok_find(t, c->base + l->off, n);
    if (id < 0) return;
    heap_push(&c->q, (bigram){-t->scores[id], left, right, (int32_t)n, 0});
}

static void spm_emit_byte(const tok_tokenizer *t, unsigned char b, tok_ids *out) {
    int32_t id = t->byte_tok[b];
    if (id < 0) id = t->unk;
    if (id >= 0) tok_ids_push(out, id);
}

/* Merges one chunk W[0..N) of escaped text by score (llama.cpp's
 * llm_tokenizer_spm) and appends its tokens. */
static void spm_chunk(const tok_tokenizer *t, enc_ctx *c, const char *w, size_t n, tok_ids *out) {
    c->base = w;
    c->n_sym = 0;
    c->q.n = 0;
    for (size_t off = 0; off < n;) {
        size_t l = lead_len((unsigned char)w[off]);
        if (l > n - off) l = n - off;
        int32_t idx = (int32_t)c->n_sym;
        sym_push(c, (symbol){idx - 1, off + l == n ? -1 : idx + 1, (uint32_t)off, (uint32_t)l, -1});
        off += l;
    }
    for (size_t i = 1; i < c->n_sym; i++)
        spm_try(t, c, (int32_t)i - 1, (int32_t)i);
    while (c->q.n) {
        bigram g = heap_pop(&c->q);
        symbol *l = &c->sym[g.left], *r = &c->sym[g.right];
        if (l->n == 0 || r->n == 0 || (int32_t)(l->n + r->n) != g.a) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) c->sym[r->next].prev = g.left;
        spm_try(t, c, l->prev, g.left);
        spm_try(t, c, g.left, l->next);
    }
    for (int32_t i = 0; i != -1; i = c->sym[i].next) {
        const symbol *y = &c->sym[i];
        int32_t id = tok_find(t, w + y->off, y->n);
        if (id >= 0) {
            tok_ids_push(out, id);
            continue;
        }
        for (uint32_t k = 0; k < y->n; k++)
            spm_emit_byte(t, (unsigned char)w[y->off + k], out);
    }
}

static void cached_word(const tok_tokenizer *t, enc_ctx *c, const char *w, size_t n, tok_ids *out);

/* Tokenizes one text fragment with the SentencePiece algorithm: spaces
 * become "▁" (one more in front when PREFIX), then the text is merged.
 * When no token holds "▁" right after another character, no merge can
 * cross the start of a "▁" run, so the text is merged run by run (same
 * result, small queues, and repeated words come from the cache). */
static void spm_encode(const tok_tokenizer *t, enc_ctx *c, const char *s, size_t n, bool prefix,
                       tok_ids *out) {
    sb_t *buf = &c->buf;
    sb_clear(buf);
    if (prefix) sb_append(buf, "\xE2\x96\x81");
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ') continue;
        sb_appendn(buf, s + run, i - run);
        sb_append(buf, "\xE2\x96\x81");
        run = i + 1;
    }
    sb_appendn(buf, s + run, n - run);
    if (buf->len == 0) return;
    if (!t->spm_split) {
        spm_chunk(t, c, buf->data, buf->len, out);
        return;
    }
    const char *p = buf->data;
    size_t len = buf->len, start = 0;
    for (size_t i = 3; i + 3 <= len; i++) {
        if (memcmp(p + i, "\xE2\x96\x81", 3) != 0 || memcmp(p + i - 3, "\xE2\x96\x81", 3) == 0)
            continue;
        cached_word(t, c, p + start, i - start, out);
        start = i;
        i += 2;
    }
    cached_word(t, c, p + start, len - start, out);
}

/* ------------------------------------------------------------------ BPE */

static void bpe_try(const tok_tokenizer *t, enc_ctx *c, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    int32_t a = c->sym[left].sid, b = c->sym[right].sid;
    if (a < 0 || b < 0) return;
    const merge_ent *m = merge_get(t, a, b);
    if (!m) return;
    heap_push(&c->q, (bigram){(float)m->rank, left, right, a, b});
}

/* Tokens of one pre-tokenized word W[0..N) (original bytes). */
static void bpe_word_uncached(const tok_tokenizer *t, enc_ctx *c, const char *w, size_t n,
                              tok_ids *out) {
    if (t->ignore_merges) {
        sb_clear(&c->buf);
        for (size_t i = 0; i < n; i++) {
            unsigned char b = (unsigned char)w[i];
            sb_appendn(&c->buf, t->byte_enc[b], t->byte_enc_len[b]);
        }
        int32_t id = tok_find(t, c->buf.data, c->buf.len);
        if (id >= 0) {
            tok_ids_push(out, id);
            return;
        }
    }
    c->n_sym = 0;
    c->q.n = 0;
    for (size_t i = 0; i < n; i++)
        sym_push(c, (symbol){(int32_t)i - 1, i + 1 == n ? -1 : (int32_t)i + 1, (uint32_t)i, 1,
                             t->byte_sym[(unsigned char)w[i]]});
    for (size_t i = 1; i < n; i++)
        bpe_try(t, c, (int32_t)i - 1, (int32_t)i);
    while (c->q.n) {
        bigram g = heap_pop(&c->q);
        symbol *l = &c->sym[g.left], *r = &c->sym[g.right];
        /* Stale when either side merged since: a symbol's id changes exactly
         * when its text does, and a live right side is still adjacent. */
        if (l->n == 0 || r->n == 0 || l->sid != g.a || r->sid != g.b) continue;
        const merge_ent *m = merge_get(t, g.a, g.b);
        l->sid = m->result;
        l->n += r->n;
        r->n = 0;
        r->sid = -1;
        l->next = r->next;
        if (r->next >= 0) c->sym[r->next].prev = g.left;
        bpe_try(t, c, l->prev, g.left);
        bpe_try(t, c, g.left, l->next);
    }
    for (int32_t i = 0; i != -1; i = c->sym[i].next) {
        const symbol *y = &c->sym[i];
        if (y->sid >= 0 && (uint32_t)y->sid < t->n_tokens) {
            tok_ids_push(out, y->sid);
            continue;
        }
        /* Not a token: llama.cpp looks up each byte of the mapped text as a
         * one-byte token and drops those that are not. */
        const char *p;
        size_t pn;
        if (y->sid >= 0) {
            p = sym_text(t, y->sid);
            pn = sym_len(t, y->sid);
        } else {
            unsigned char b = (unsigned char)w[y->off];
            p = t->byte_enc[b];
            pn = t->byte_enc_len[b];
        }
        for (size_t k = 0; k < pn; k++) {
            int32_t id = t->byte_tok[(unsigned char)p[k]];
            if (id >= 0) tok_ids_push(out, id);
        }
    }
}

static void word_uncached(const tok_tokenizer *t, enc_ctx *c, const char *w, size_t n,
                          tok_ids *out) {
    if (t->kind == TOK_SPM)
        spm_chunk(t, c, w, n, out);
    else
        bpe_word_uncached(t, c, w, n, out);
}

/* Tokens of one word (BPE) or chunk (SPM), from the call's cache when the
 * same bytes were seen before. */
static void cached_word(const tok_tokenizer *t, enc_ctx *c, const char *w, size_t n, tok_ids *out) {
    if (n > WC_MAX_WORD) {
        word_uncached(t, c, w, n, out);
        return;
    }
    if (!c->wc) {
        c->wc = calloc(WC_CAP, sizeof *c->wc);
        if (!c->wc) abort();
    }
    uint64_t h = str_hash(w, n) | 1;
    size_t mask = WC_CAP - 1, i = (size_t)h & mask;
    for (; c->wc[i].h; i = (i + 1) & mask) {
        const struct wc_ent *e = &c->wc[i];
        if (e->h == h && e->key_len == n && !memcmp(c->wc_keys.data + e->key_off, w, n)) {
            for (uint32_t k = 0; k < e->ids_n; k++)
                tok_ids_push(out, c->wc_ids.v[e->ids_off + k]);
            return;
        }
    }
    size_t start = out->n;
    word_uncached(t, c, w, n, out);
    if (c->wc_used * 2 >= WC_CAP) { /* full: start over rather than grow without bound */
        memset(c->wc, 0, WC_CAP * sizeof *c->wc);
        c->wc_used = 0;
        sb_clear(&c->wc_keys);
        c->wc_ids.n = 0;
        i = (size_t)h & mask;
    }
    c->wc[i] = (struct wc_ent){h, (uint32_t)c->wc_keys.len, (uint32_t)n, (uint32_t)c->wc_ids.n,
                               (uint32_t)(out->n - start)};
    c->wc_used++;
    sb_appendn(&c->wc_keys, w, n);
    for (size_t k = start; k < out->n; k++)
        tok_ids_push(&c->wc_ids, out->v[k]);
}

static void pc_push(uint64_t **v, size_t *n, size_t *cap, size_t off, size_t len) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        uint64_t *p = realloc(*v, nc * sizeof *p);
        if (!p) abort();
        *v = p;
        *cap = nc;
    }
    (*v)[(*n)++] = ((uint64_t)off << 32) | (uint64_t)len;
}

/* Splits S[0..N) (valid UTF-8) into words with the pre-tokenizer's regexes;
 * the words end up in c->pc as (offset << 32 | length). */
static int pretokenize(const tok_tokenizer *t, enc_ctx *c, const char *s, size_t n, cf_err *err) {
    c->n_pc = 0;
    pc_push(&c->pc, &c->n_pc, &c->cap_pc, 0, n);
    for (int r = 0; r < t->n_regex; r++) {
        c->n_pc2 = 0;
        for (size_t k = 0; k < c->n_pc; k++) {
            size_t po = (size_t)(c->pc[k] >> 32), pl = (size_t)(c->pc[k] & 0xffffffffu);
            const PCRE2_SPTR subj = (PCRE2_SPTR)(s + po);
            size_t pos = 0, last = 0;
            while (pos < pl) {
                /* pcre2_jit_match skips pcre2_match's per-call checks; the
                 * subject is valid UTF-8 and the pattern was JIT-compiled. */
                int rc = t->re_jit[r] ? pcre2_jit_match(t->re[r], subj, pl, pos, 0, c->md, c->mctx)
                                      : pcre2_match(t->re[r], subj, pl, pos, PCRE2_NO_UTF_CHECK,
                                                    c->md, c->mctx);
                if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
                    rc = pcre2_match(t->re[r], subj, pl, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                                     c->md, c->mctx);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0) {
                    PCRE2_UCHAR msg[160];
                    pcre2_get_error_message(rc, msg, sizeof msg);
                    return cf_seterr(err, CF_ERANGE, "pre-tokenizer %s: matching failed: %s",
                                     t->pre_name, (const char *)msg);
                }
                const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
                size_t ms = ov[0], me = ov[1];
                if (me <= ms) { /* empty match: move on by one character */
                    pos = ms + 1;
                    while (pos < pl && ((unsigned char)s[po + pos] & 0xC0) == 0x80)
                        pos++;
                    continue;
                }
                if (ms > last) pc_push(&c->pc2, &c->n_pc2, &c->cap_pc2, po + last, ms - last);
                pc_push(&c->pc2, &c->n_pc2, &c->cap_pc2, po + ms, me - ms);
                last = pos = me;
            }
            if (last < pl) pc_push(&c->pc2, &c->n_pc2, &c->cap_pc2, po + last, pl - last);
        }
        uint64_t *tv = c->pc;
        c->pc = c->pc2;
        c->pc2 = tv;
        size_t tn = c->n_pc, tc = c->cap_pc;
        c->n_pc = c->n_pc2;
        c->cap_pc = c->cap_pc2;
        c->n_pc2 = tn;
        c->cap_pc2 = tc;
    }
    return 0;
}

/* ------------------------------------------------------------------ special-token partition */

typedef struct {
    int32_t tok; /* >= 0: this special token; -1: text */
    uint32_t off, len;
} frag;

typedef struct {
    frag *v;
    size_t n, cap;
} frags;

static void frag_push(frags *f, frag x) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) abort();
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = x;
}

/* Cuts S[0..N) into text fragments and special tokens exactly as
 * llama.cpp's tokenizer_st_partition: special tokens are taken longest
 * first, and each cuts every remaining text fragment at its leftmost
 * non-overlapping occurrences (eating whitespace beside it for LSTRIP /
 * RSTRIP tokens). Doing that for every special token would cost
 * O(specials x length) (deepseek has 2400 user-defined tokens), so one
 * pass over a byte trie first finds which special texts occur at all, and
 * only those are searched for: O(length x longest special text) plus
 * O(length) per special text present. Memory stays O(fragments). */
static void partition(const tok_tokenizer *t, const char *s, size_t n, bool parse_special,
                      frags *f) {
    if (n == 0) return;
    frag_push(f, (frag){-1, 0, (uint32_t)n});
    uint8_t *seen = NULL; /* (n_specials,) 1 = that special text occurs in S */
    size_t n_seen = 0;
    for (size_t i = 0; i < n && t->n_specials; i++) {
        unsigned char b = (unsigned char)s[i];
        if (!(t->first_byte[b >> 3] & (1u << (b & 7)))) continue;
        int32_t node = 0;
        for (size_t j = i; j < n; j++) {
            node = trie_child(t, node, (unsigned char)s[j]);
            if (node < 0) break;
            int32_t k = t->node_prio[node];
            if (k < 0) continue;
            if (!parse_special && (t->attr[t->specials[k]] & (ATTR_CONTROL | ATTR_UNKNOWN)))
                continue;
            if (!seen && !(seen = calloc(t->n_specials, 1))) abort();
            if (!seen[k]) seen[k] = 1, n_seen++;
        }
    }
    if (!n_seen) return;

    frags next = {0};
    for (uint32_t k = 0; k < t->n_specials; k++) {
        if (!seen[k]) continue;
        int32_t id = t->specials[k];
        uint8_t a = t->attr[id];
        const char *tx = sym_text(t, id);
        size_t tl = sym_len(t, id);
        next.n = 0;
        bool changed = false;
        for (size_t i = 0; i < f->n; i++) {
            frag x = f->v[i];
            if (x.tok >= 0) {
                frag_push(&next, x);
                continue;
            }
            size_t base = x.off, blen = x.len;
            for (;;) {
                const char *m = blen >= tl ? memmem(s + base, blen, tx, tl) : NULL;
                if (!m) {
                    if (blen) frag_push(&next, (frag){-1, (uint32_t)base, (uint32_t)blen});
                    break;
                }
                changed = true;
                size_t at = (size_t)(m - s);
                size_t ll = at - base;
                if (a & ATTR_LSTRIP)
                    while (ll > 0 && isspace((unsigned char)s[base + ll - 1]))
                        ll--;
                if (ll) frag_push(&next, (frag){-1, (uint32_t)base, (uint32_t)ll});
                frag_push(&next, (frag){id, 0, 0});
                size_t ro = at + tl, rl = base + blen - ro;
                if (a & ATTR_RSTRIP)
                    while (rl > 0 && isspace((unsigned char)s[ro]))
                        ro++, rl--;
                base = ro;
                blen = rl;
            }
        }
        if (changed) {
            frags tmp = *f;
            *f = next;
            next = tmp;
        }
    }
    free(next.v);
    free(seen);
}

/* ------------------------------------------------------------------ encode */

int tok_encode(const tok_tokenizer *t, const char *text, size_t len, bool add_special,
               bool parse_special, tok_ids *out, cf_err *err) {
    if (len > 0x7fffffffu)
        return cf_seterr(err, CF_ERANGE, "text too long to tokenize (%zu bytes)", len);
    if (!text) {
        if (len) return cf_seterr(err, CF_EINVAL, "no text to tokenize");
        text = "";
    }
    sb_t clean = {0};
    if (!utf8_valid(text, len, NULL)) {
        append_sanitized(&clean, text, len);
        if (clean.len > 0x7fffffffu) {
            sb_free(&clean);
            return cf_seterr(err, CF_ERANGE, "text too long to tokenize (%zu bytes)", len);
        }
        text = clean.data;
        len = clean.len;
    }

    enc_ctx c = {0};
    frags f = {0};
    int rc = 0;
    if (t->kind == TOK_BPE) {
        c.md = pcre2_match_data_create(1, NULL);
        c.mctx = pcre2_match_context_create(NULL);
        c.jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
        if (!c.md || !c.mctx || !c.jit) {
            rc = cf_seterr(err, CF_ENOMEM, "out of memory for the regex matcher");
            goto done;
        }
        pcre2_jit_stack_assign(c.mctx, NULL, c.jit);
    }
    partition(t, text, len, parse_special, &f);

    if (add_special && t->add_bos) tok_ids_push(out, t->bos);
    bool prev_special = true; /* SPM: the first fragment gets the prefix space */
    for (size_t i = 0; i < f.n; i++) {
        frag x = f.v[i];
        if (x.tok >= 0) {
            tok_ids_push(out, x.tok);
            prev_special = true;
            continue;
        }
        if (t->kind == TOK_SPM) {
            spm_encode(t, &c, text + x.off, x.len, t->add_space_prefix && prev_special, out);
            prev_special = false;
            continue;
        }
        rc = pretokenize(t, &c, text + x.off, x.len, err);
        if (rc) goto done;
        for (size_t k = 0; k < c.n_pc; k++)
            cached_word(t, &c, text + x.off + (c.pc[k] >> 32), (size_t)(c.pc[k] & 0xffffffffu),
                        out);
    }
    if (add_special && t->add_eos) tok_ids_push(out, t->eos);

done:
    free(f.v);
    ctx_free(&c);
    sb_free(&clean);
    return rc;
}

/* ------------------------------------------------------------------ decode */

static int byte_of_token_text(const char *p, size_t n) {
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char ch = p[i];
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                                         : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

int tok_piece(const tok_tokenizer *t, int32_t id, bool special, sb_t *out, cf_err *err) {
    if (id < 0 || (uint32_t)id >= t->n_tokens)
        return cf_seterr(err, CF_ERANGE, "token id %d is outside the vocabulary (%u tokens)", id,
                         t->n_tokens);
    uint8_t a = t->attr[id];
    const char *p = sym_text(t, id);
    size_t n = sym_len(t, id);
    if (a & (ATTR_UNKNOWN | ATTR_CONTROL)) {
        if (special) sb_appendn(out, p, n);
        return 0;
    }
    if (a & ATTR_USER_DEFINED) {
        sb_appendn(out, p, n);
        return 0;
    }
    if (a & ATTR_NORMAL) {
        if (t->kind == TOK_SPM) {
            size_t run = 0;
            for (size_t i = 0; i + 2 < n; i++) {
                if (memcmp(p + i, "\xE2\x96\x81", 3) != 0) continue;
                sb_appendn(out, p + run, i - run);
                sb_putc(out, ' ');
                run = i + 3;
                i += 2;
            }
            sb_appendn(out, p + run, n - run);
            return 0;
        }
        /* BPE: each code point stands for one byte; code points outside the
         * byte map (a malformed vocabulary) are passed through as they are. */
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            int l = utf8_decode(p + i, n - i, &cp);
            if (l <= 0) {
                sb_putc(out, p[i]);
                i++;
                continue;
            }
            if (cp < 324 && t->cp_byte[cp] >= 0)
                sb_putc(out, (char)t->cp_byte[cp]);
            else
                sb_appendn(out, p + i, (size_t)l);
            i += (size_t)l;
        }
        return 0;
    }
    if (a & ATTR_BYTE) {
        int b = byte_of_token_text(p, n);
        if (b >= 0) sb_putc(out, (char)b);
        return 0;
    }
    return 0; /* unused and undefined tokens have no text */
}

int tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, bool special, sb_t *out,
               cf_err *err) {
    bool strip = t->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        size_t before = out->len;
        int rc = tok_piece(t, ids[i], special, out, err);
        if (rc) return rc;
        if (strip && out->len > before) {
            if (out->data[before] == ' ') {
                memmove(out->data + before, out->data + before + 1, out->len - before - 1);
                sb_truncate(out, out->len - 1);
            }
            strip = false;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ streaming detokenizer */

struct tok_stream {
    const tok_tokenizer *t;
    int flags;
    bool started; /* some piece produced text already */
    sb_t held;    /* bytes of an unfinished character */
    sb_t piece;
};

tok_stream *tok_stream_new(const tok_tokenizer *t, int flags) {
    tok_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->t = t;
    s->flags = flags;
    return s;
}

int tok_stream_push(tok_stream *s, int32_t id, sb_t *out, cf_err *err) {
    sb_clear(&s->piece);
    int rc = tok_piece(s->t, id, (s->flags & TOK_STREAM_SPECIAL) != 0, &s->piece, err);
    if (rc) return rc;
    if (s->piece.len == 0) return 0;
    const char *p = s->piece.data;
    size_t n = s->piece.len;
    if (!s->started) {
        s->started = true;
        if ((s->flags & TOK_STREAM_STRIP_SPACE) && s->t->add_space_prefix && p[0] == ' ') {
            p++;
            n--;
        }
    }
    sb_appendn(&s->held, p, n);
    size_t k = utf8_complete_len(s->held.data, s->held.len);
    append_sanitized(out, s->held.data, k);
    memmove(s->held.data, s->held.data + k, s->held.len - k);
    sb_truncate(&s->held, s->held.len - k);
    return 0;
}

size_t tok_stream_pending(const tok_stream *s) { return s->held.len; }

void tok_stream_flush(tok_stream *s, sb_t *out) {
    if (s->held.len) sb_append(out, "\xEF\xBF\xBD");
    sb_clear(&s->held);
    s->started = false;
}

void tok_stream_free(tok_stream *s) {
    if (!s) return;
    sb_free(&s->held);
    sb_free(&s->piece);
    free(s);
}
