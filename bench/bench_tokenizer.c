/*
 * bench_tokenizer — tokenizing speed on one core, in MB/s of input.
 *
 * The text is built from the tokenizer test inputs in the shared test data
 * (testdata/vocab/X.inp files): the texts that are mostly ASCII (English
 * sentences, code, numbers), joined by newlines and repeated to 8 MiB.
 * Nothing is downloaded.
 *
 * Two figures per vocabulary:
 *   bulk   one tok_encode call over the whole 8 MiB (its word cache warms up);
 *   prompt the same text in 4 KiB calls, each starting with an empty word
 *          cache, as chat prompts are tokenized.
 * Best of 3 runs after a warm-up run. Times are the thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID), so other work on a shared machine disturbs
 * them less than wall time; wall time is printed too.
 *
 * usage: bench_tokenizer [TESTDATA_DIR]   (default $CONFAB_TESTDATA or ../shared/testdata)
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/sb.h"
#include "engine/tokenizer.h"

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    sb_t s = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_appendn(&s, buf, n);
    fclose(f);
    *len = s.len;
    return sb_take(&s);
}

/* Appends the mostly-ASCII texts of one .inp file to OUT. */
static void add_texts(const char *path, sb_t *out) {
    size_t len;
    char *buf = read_all(path, &len);
    if (!buf) return;
    static const char mark[] = "\n__ggml_vocab_test__\n";
    size_t pos = 0;
    while (pos < len) {
        char *m = memmem(buf + pos, len - pos, mark, sizeof mark - 1);
        if (!m) break;
        size_t tl = (size_t)(m - (buf + pos)), ascii = 0;
        for (size_t i = 0; i < tl; i++)
            ascii += (unsigned char)buf[pos + i] < 0x80;
        if (tl >= 8 && ascii * 10 >= tl * 9) {
            sb_appendn(out, buf + pos, tl);
            sb_putc(out, '\n');
        }
        pos = (size_t)(m - buf) + sizeof mark - 1;
    }
    free(buf);
}

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void bench(const char *name, const tok_tokenizer *t, const char *text, size_t len) {
    double best_bulk = 1e30, best_prompt = 1e30, wall_bulk = 1e30;
    size_t ntok = 0;
    for (int run = 0; run < 4; run++) {
        tok_ids ids = {0};
        cf_err err = {0};
        double w0 = clock_mono_ms(), t0 = cpu_ms();
        if (tok_encode(t, text, len, false, false, &ids, &err) != 0) {
            fprintf(stderr, "%s: %s\n", name, err.msg);
            exit(1);
        }
        double t1 = cpu_ms(), w1 = clock_mono_ms();
        ntok = ids.n;
        tok_ids_free(&ids);
        for (size_t off = 0; off < len;) {
            size_t n = len - off < 4096 ? len - off : 4096;
            while (off + n < len && n > 0 && ((unsigned char)text[off + n] & 0xC0) == 0x80)
                n--;
            tok_encode(t, text + off, n, false, false, &ids, &err);
            ids.n = 0;
            off += n;
        }
        double t2 = cpu_ms();
        tok_ids_free(&ids);
        if (run == 0) continue; /* warm-up */
        if (t1 - t0 < best_bulk) best_bulk = t1 - t0;
        if (w1 - w0 < wall_bulk) wall_bulk = w1 - w0;
        if (t2 - t1 < best_prompt) best_prompt = t2 - t1;
    }
    double mb = (double)len / (1024.0 * 1024.0);
    printf("%-16s bulk %6.1f MB/s (wall %6.1f)   prompt %6.1f MB/s   %.2f bytes/token\n", name,
           mb / (best_bulk / 1000.0), mb / (wall_bulk / 1000.0), mb / (best_prompt / 1000.0),
           (double)len / (double)ntok);
}

/* Hostile input: one 1 MiB run of a single byte (a "word" with no break)
 * per fill character; linear work keeps these in the MB/s range. */
static void bench_runs(const char *name, const tok_tokenizer *t) {
    size_t n = 1u << 20;
    char *big = malloc(n);
    printf("%-16s 1 MiB runs:", name);
    const char fill[] = {'a', '7', ' ', '!', '\n'};
    for (int f = 0; f < 5; f++) {
        memset(big, fill[f], n);
        tok_ids ids = {0};
        cf_err err = {0};
        double t0 = cpu_ms();
        tok_encode(t, big, n, false, false, &ids, &err);
        double ms = cpu_ms() - t0;
        printf("  '%s' %5.1f MB/s", fill[f] == '\n' ? "\\n" : (char[]){fill[f], 0},
               1.0 / (ms / 1000.0));
        tok_ids_free(&ids);
    }
    printf("\n");
    free(big);
}

static tok_tokenizer *load_llama3_json(const char *root) {
    char p[1024];
    snprintf(p, sizeof p, "%s/llama3.2-bpe/llama3.2-encoder.json", root);
    json_error_t je;
    json_t *enc = json_load_file(p, 0, &je);
    if (!enc) return NULL;
    size_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(enc, key, val) {
        if ((size_t)json_integer_value(val) + 1 > n) n = (size_t)json_integer_value(val) + 1;
    }
    tok_str *toks = calloc(n, sizeof *toks);
    json_object_foreach(enc, key, val) {
        toks[json_integer_value(val)] = (tok_str){key, strlen(key)};
    }
    snprintf(p, sizeof p, "%s/llama3.2-bpe/llama3.2-vocab.bpe", root);
    size_t blen;
    char *bpe = read_all(p, &blen);
    tok_str *merges = malloc(sizeof *merges * (blen / 3 + 1));
    size_t nm = 0;
    for (char *q = bpe; bpe && q < bpe + blen;) {
        char *nl = memchr(q, '\n', (size_t)(bpe + blen - q));
        size_t l = nl ? (size_t)(nl - q) : (size_t)(bpe + blen - q);
        if (l && strncmp(q, "#version", 8) != 0) merges[nm++] = (tok_str){q, l};
        q += l + 1;
    }
    tok_vocab_desc d;
    tok_desc_init(&d, TOK_BPE);
    d.pre = "llama-bpe";
    d.n_tokens = (uint32_t)n;
    d.tokens = toks;
    d.n_merges = (uint32_t)nm;
    d.merges = merges;
    d.bos_id = -1;
    d.add_bos = 0;
    cf_err err = {0};
    tok_tokenizer *t = tok_new(&d, &err);
    free(toks);
    free(merges);
    free(bpe);
    json_decref(enc);
    return t;
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : getenv("CONFAB_TESTDATA");
    if (!root) root = "../shared/testdata";
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/vocab", root);
    DIR *dp = opendir(dir);
    if (!dp) {
        fprintf(stderr, "bench_tokenizer: no test data at %s\n", dir);
        return 1;
    }
    sb_t base = {0};
    struct dirent *de;
    char *names[64];
    int nn = 0;
    while ((de = readdir(dp)) && nn < 64) {
        size_t l = strlen(de->d_name);
        if (l > 4 && !strcmp(de->d_name + l - 4, ".inp")) names[nn++] = strdup(de->d_name);
    }
    closedir(dp);
    /* Sorted, so the text is the same from run to run. */
    for (int i = 0; i < nn; i++)
        for (int j = i + 1; j < nn; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char *x = names[i];
                names[i] = names[j];
                names[j] = x;
            }
    for (int i = 0; i < nn; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        add_texts(p, &base);
        free(names[i]);
    }
    if (base.len == 0) {
        fprintf(stderr, "bench_tokenizer: no text in %s/*.inp\n", dir);
        return 1;
    }
    sb_t text = {0};
    while (text.len < (8u << 20))
        sb_appendn(&text, base.data, base.len);
    printf("text: %zu bytes of distinct test text repeated to %.1f MiB, one thread\n", base.len,
           (double)text.len / (1024.0 * 1024.0));

    tok_tokenizer *l3 = load_llama3_json(root);
    if (l3) {
        bench("llama3 (json)", l3, text.data, text.len);
        tok_free(l3);
    }
    static const char *const vocabs[] = {"gpt-2",          "llama-spm", "phi-3",     "deepseek-llm",
                                         "deepseek-coder", "falcon",    "starcoder", "mpt",
                                         "refact"};
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/ggml-vocab-%s.gguf", dir, vocabs[i]);
        cf_err err = {0};
        tok_tokenizer *t = tok_load(p, &err);
        if (!t) {
            printf("%-22s skipped: %s\n", vocabs[i], err.msg);
            continue;
        }
        bench(vocabs[i], t, text.data, text.len);
        tok_free(t);
    }
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/ggml-vocab-%s.gguf", dir, vocabs[i]);
        cf_err err = {0};
        tok_tokenizer *t = tok_load(p, &err);
        if (!t) continue;
        bench_runs(vocabs[i], t);
        tok_free(t);
    }
    sb_free(&base);
    sb_free(&text);
    return 0;
}
