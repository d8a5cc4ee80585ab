/*
 * cmd_run — `confab run`: load a model, decode a prompt, generate.
 *
 * The loop is the engine's step-wise API in its plainest form:
 *   decode(prompt) -> repeat n times { sample; print; decode(token) }
 * Each generated token is decoded too, so --logits-out holds one row per
 * prompt position and one per generated token (the layout of the shared
 * reference logits), and a caller could stop between any two steps.
 *
 * The prompt is text (-p, encoded by the model's own tokenizer with BOS as
 * the vocabulary asks) or ids (--prompt-ids). Output text goes through the
 * tokenizer's streaming detokenizer, so it is whole UTF-8 characters; a
 * model without a usable vocabulary falls back to raw pieces
 * (cf_model_token_text) and accepts only --prompt-ids.
 *
 * `confab run MODEL PROMPT` (a bare word among the arguments, i.e. one that
 * is not an option's value) is the other form: a one-shot through the chat
 * service, in cmd_chat.c. The dispatch is run_is_chat_form below.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/sb.h"
#include "base/utf8.h"
#include "cli/cli.h"
#include "cli/engine_args.h"
#include "confab/engine.h"
#include "engine/chat_template.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

#include <jansson.h>

/* Parses "1 15043 ..." (spaces, commas or tabs) into *IDS. Returns the
 * count, or -1 with a message in ERR. */
static int run_parse_ids(const char *s, int32_t **ids, char *err, size_t errn) {
    int n = 0, cap = 16;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n')
            p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            snprintf(err, errn, "bad token id near '%.16s' in --prompt-ids", p);
            free(v);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[n++] = (int32_t)x;
        p = end;
    }
    *ids = v;
    return n;
}

/* Appends S as a JSON string, replacing invalid UTF-8 with U+FFFD. */
static void run_json_text(sb_t *out, const char *s, size_t n) {
    sb_t clean = {0};
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_decode(s + i, n - i, &cp);
        if (l <= 0) {
            sb_append(&clean, "\xEF\xBF\xBD");
            i++;
        } else {
            sb_appendn(&clean, s + i, (size_t)l);
            i += (size_t)l;
        }
    }
    sb_append_json_str(out, sb_str(&clean), clean.len);
    sb_free(&clean);
}

static void run_json_ids(sb_t *out, const int32_t *ids, int n) {
    sb_putc(out, '[');
    for (int i = 0; i < n; i++)
        sb_printf(out, "%s%d", i ? "," : "", ids[i]);
    sb_putc(out, ']');
}

/* True when the arguments hold a bare word (not an option, not the value
 * of one): `confab run MODEL PROMPT [options]`. Every option of either form
 * takes a value except the flags listed here. */
static bool run_is_chat_form(int argc, char **argv) {
    static const char *const flags[] = {"--kv-f32", "--json",    "--ignore-eos",
                                        "--chat",   "--no-save", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !strcmp(a, "-")) return true;
        bool flag = false;
        for (int k = 0; flags[k]; k++)
            flag |= !strcmp(a, flags[k]);
        if (!flag) i++; /* skip the option's value */
    }
    return false;
}

int cmd_run(int argc, char **argv) {
    if (run_is_chat_form(argc, argv)) return cmd_run_chat(argc, argv);
    const char *model = NULL, *prompt_ids = NULL, *prompt = NULL, *logits_out = NULL;
    const char *system_prompt = NULL;
    bool chat = false;
    long n_gen = 32, top_k = 0, threads = 0, n_ctx = 0;
    double temp = 0.8, top_p = 1.0, min_p = 0.0, rep = 1.0;
    unsigned long long seed = 0;
    int json = 0, kv_f32 = 0, ignore_eos = 0, n_stops = 0;
    const char *stops[16];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
#define VAL()                                                                                      \
    do {                                                                                           \
        if (i + 1 >= argc) return cli_usage_error("run", "%s needs a value", a);                   \
        v = argv[++i];                                                                             \
    } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            VAL();
            model = v;
        } else if (!strcmp(a, "--prompt-ids")) {
            VAL();
            prompt_ids = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            VAL();
            prompt = v;
        } else if (!strcmp(a, "--chat")) {
            chat = true;
        } else if (!strcmp(a, "--system")) {
            VAL();
            system_prompt = v;
        } else if (!strcmp(a, "-n")) {
            VAL();
            if (ea_long(v, 0, 1 << 24, &n_gen))
                return cli_usage_error("run", "-n wants a count >= 0, got '%s'", v);
        } else if (!strcmp(a, "--temp")) {
            VAL();
            if (ea_double(v, 0, 1000, &temp))
                return cli_usage_error("run", "--temp wants a number >= 0, got '%s'", v);
        } else if (!strcmp(a, "--top-k")) {
            VAL();
            if (ea_long(v, 0, 1 << 24, &top_k))
                return cli_usage_error("run", "--top-k wants a count >= 0, got '%s'", v);
        } else if (!strcmp(a, "--top-p")) {
            VAL();
            if (ea_double(v, 0, 1, &top_p))
                return cli_usage_error("run", "--top-p wants a number in [0, 1], got '%s'", v);
        } else if (!strcmp(a, "--min-p")) {
            VAL();
            if (ea_double(v, 0, 1, &min_p))
                return cli_usage_error("run", "--min-p wants a number in [0, 1], got '%s'", v);
        } else if (!strcmp(a, "--repeat-penalty")) {
            VAL();
            if (ea_double(v, 0.01, 100, &rep))
                return cli_usage_error("run", "--repeat-penalty wants a number > 0, got '%s'", v);
        } else if (!strcmp(a, "--seed")) {
            VAL();
            long long s;
            if (ea_ll(v, &s) || s < 0)
                return cli_usage_error("run", "--seed wants an integer >= 0, got '%s'", v);
            seed = (unsigned long long)s;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            VAL();
            if (ea_long(v, 1, 1024, &threads))
                return cli_usage_error("run", "--threads wants a count in [1, 1024], got '%s'", v);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            VAL();
            if (ea_long(v, 1, 1 << 24, &n_ctx))
                return cli_usage_error("run", "--ctx wants a count >= 1, got '%s'", v);
        } else if (!strcmp(a, "--logits-out")) {
            VAL();
            logits_out = v;
        } else if (!strcmp(a, "--kv-f32"))
            kv_f32 = 1;
        else if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--ignore-eos"))
            ignore_eos = 1;
        else if (!strcmp(a, "--stop")) {
            VAL();
            if (n_stops == 16) return cli_usage_error("run", "at most 16 --stop strings");
            stops[n_stops++] = v;
        } else
            return cli_usage_error("run", "unknown option '%s'", a);
#undef VAL
    }
    if (!model) return cli_usage_error("run", "-m MODEL.gguf is required");
    if (prompt && prompt_ids)
        return cli_usage_error("run", "give either -p TEXT or --prompt-ids, not both");
    if (!prompt && !prompt_ids)
        return cli_usage_error("run", "-p TEXT or --prompt-ids \"ID ...\" is required");
    int32_t *ids = NULL;
    int n_prompt = 0;
    if (prompt_ids) {
        char perr[128];
        n_prompt = run_parse_ids(prompt_ids, &ids, perr, sizeof perr);
        if (n_prompt < 0) return cli_usage_error("run", "%s", perr);
        if (n_prompt == 0) {
            free(ids);
            return cli_usage_error("run", "--prompt-ids holds no token ids");
        }
    }

    cf_err err = {0};
    /* The tokenizer reads the same file (its own read-only mapping). */
    tok_tokenizer *tkz = tok_load(model, &err);
    tok_stream *ts = NULL;
    sb_t piece_sb = {0};
    if (!tkz && prompt) {
        fprintf(stderr, "confab: -p needs the model's tokenizer: %s\n", err.msg);
        return 1;
    }
    sb_t rendered = {0};
    bool add_special = true, parse_special = false;
    if (chat && !prompt) {
        tok_free(tkz);
        return cli_usage_error("run", "--chat needs -p TEXT (the user's message)");
    }
    if (chat) {
        /* The model's chat template around one user message (and an
         * optional system prompt); its special tokens are parsed, and BOS
         * is added only when the template did not write it. */
        gguf_file *gf = gguf_open(model, &err);
        char *src = gf ? tmpl_for_model(gf, tkz, NULL) : NULL;
        json_t *msgs = json_array();
        if (system_prompt)
            json_array_append_new(
                msgs, json_pack("{s:s,s:s}", "role", "system", "content", system_prompt));
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", prompt));
        tok_str bos = tok_text(tkz, tok_bos(tkz)), eos = tok_text(tkz, tok_eos(tkz));
        char *bs = tok_bos(tkz) >= 0 ? strndup(bos.p, bos.n) : strdup("");
        char *es = tok_eos(tkz) >= 0 ? strndup(eos.p, eos.n) : strdup("");
        int trc = src ? tmpl_render(src, msgs, true, bs, es, NULL, &rendered, &err) : -1;
        add_special = !(*bs && !strncmp(sb_str(&rendered), bs, strlen(bs)));
        free(bs);
        free(es);
        free(src);
        json_decref(msgs);
        gguf_close(gf);
        if (trc) {
            fprintf(stderr, "confab: --chat: %s\n", err.msg);
            sb_free(&rendered);
            tok_free(tkz);
            return 1;
        }
        prompt = sb_str(&rendered);
        parse_special = true;
    }
    if (prompt) {
        tok_ids ti = {0};
        if (tok_encode(tkz, prompt, strlen(prompt), add_special, parse_special, &ti, &err) < 0 ||
            ti.n == 0) {
            fprintf(stderr, "confab: cannot tokenize the prompt: %s\n",
                    ti.n ? err.msg : "no tokens");
            tok_ids_free(&ti);
            tok_free(tkz);
            return 1;
        }
        ids = ti.v; /* tok_ids owns a plain malloc'd array */
        n_prompt = (int)ti.n;
    }
    sb_free(&rendered);
    prompt = NULL;
    if (tkz && !(ts = tok_stream_new(tkz, 0))) {
        free(ids);
        tok_free(tkz);
        return 1;
    }
    cf_model_opts mo = cf_model_opts_default();
    mo.n_threads = (int)threads;
    mo.kv_type = kv_f32 ? CF_KV_F32 : CF_KV_F16;
    int rc = 1;
    cf_ctx *ctx = NULL;
    cf_sampler *smp = NULL;
    cf_stop *stopper = cf_stop_new(stops, n_stops);
    FILE *lf = NULL;
    int32_t *gen = NULL;
    sb_t text = {0};
    cf_model *m = cf_model_load(model, &mo, &err);
    if (!m) {
        fprintf(stderr, "confab: %s\n", err.msg);
        goto done;
    }
    cf_model_info info;
    cf_model_get_info(m, &info);
    cf_ctx_opts co = cf_ctx_opts_default();
    co.n_ctx = n_ctx > 0 ? (int)n_ctx
                         : (int)(n_prompt + n_gen < info.n_ctx ? n_prompt + n_gen : info.n_ctx);
    if (co.n_ctx < 1) co.n_ctx = 1;
    ctx = cf_ctx_new(m, &co, &err);
    if (!ctx) {
        fprintf(stderr, "confab: %s\n", err.msg);
        goto done;
    }
    cf_samp_params sp = cf_samp_params_default();
    sp.temp = (float)temp;
    sp.top_k = (int)top_k;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.repeat_penalty = (float)rep;
    sp.seed = seed;
    smp = cf_samp_new(&sp, info.n_vocab, &err);
    if (!smp) {
        fprintf(stderr, "confab: %s\n", err.msg);
        goto done;
    }
    if (logits_out && !(lf = fopen(logits_out, "wb"))) {
        fprintf(stderr, "confab: cannot write %s: %s\n", logits_out, strerror(errno));
        goto done;
    }
    gen = malloc((size_t)(n_gen > 0 ? n_gen : 1) * sizeof *gen);
    if (!gen) goto done;
    const size_t V = (size_t)info.n_vocab;

    double t0 = clock_mono_ms();
    if (cf_ctx_eval(ctx, ids, n_prompt, lf != NULL, &err) < 0) {
        fprintf(stderr, "confab: %s\n", err.msg);
        goto done;
    }
    double prompt_ms = clock_mono_ms() - t0;
    if (lf)
        for (int i = 0; i < cf_ctx_n_logits(ctx); i++)
            fwrite(cf_ctx_logits(ctx, i), sizeof(float), V, lf);
    for (int i = 0; i < n_prompt; i++)
        cf_samp_accept(smp, ids[i]);

    int n_done = 0;
    double t1 = clock_mono_ms();
    char piece[256];
    for (; n_done < n_gen; n_done++) {
        int32_t tok = cf_samp_sample(smp, cf_ctx_logits(ctx, -1));
        if (tok == info.eos_id && !ignore_eos) break;
        cf_samp_accept(smp, tok);
        gen[n_done] = tok;
        const char *pp = piece;
        size_t len = 0;
        if (ts) {
            sb_clear(&piece_sb);
            tok_stream_push(ts, tok, &piece_sb, NULL);
            pp = sb_str(&piece_sb);
            len = piece_sb.len;
        } else {
            int pl = cf_model_token_text(m, tok, piece, sizeof piece);
            len = pl <= 0 ? 0 : (size_t)pl < sizeof piece ? (size_t)pl : sizeof piece - 1;
        }
        const char *rel;
        size_t rel_n;
        int stopped = stopper ? cf_stop_feed(stopper, pp, len, &rel, &rel_n) : 0;
        if (!stopper) rel = pp, rel_n = len;
        if (rel_n > 0) {
            sb_appendn(&text, rel, rel_n);
            if (!json) {
                fwrite(rel, 1, rel_n, stdout);
                fflush(stdout);
            }
        }
        if (stopped) {
            n_done++;
            break; /* a stop string ended the text */
        }
        if (cf_ctx_seq_len(ctx, 0) >= cf_ctx_n_ctx(ctx)) {
            n_done++;
            break; /* context full: this token cannot be decoded */
        }
        if (cf_ctx_eval(ctx, &tok, 1, false, &err) < 0) {
            fprintf(stderr, "\nconfab: %s\n", err.msg);
            goto done;
        }
        if (lf) fwrite(cf_ctx_logits(ctx, -1), sizeof(float), V, lf);
    }
    double gen_ms = clock_mono_ms() - t1;
    {
        sb_clear(&piece_sb);
        if (ts) tok_stream_flush(ts, &piece_sb);
        const char *rel = sb_str(&piece_sb);
        size_t rel_n = piece_sb.len;
        sb_t tail = {0};
        if (stopper) {
            if (cf_stop_feed(stopper, rel, rel_n, &rel, &rel_n) == 0) {
                sb_appendn(&tail, rel, rel_n);
                cf_stop_flush(stopper, &rel, &rel_n);
            }
            sb_appendn(&tail, rel, rel_n);
            rel = sb_str(&tail);
            rel_n = tail.len;
        }
        sb_appendn(&text, rel, rel_n);
        if (!json) fwrite(rel, 1, rel_n, stdout);
        sb_free(&tail);
    }
    if (json) {
        sb_t out = {0};
        sb_append(&out, "{\"prompt_ids\":");
        run_json_ids(&out, ids, n_prompt);
        sb_append(&out, ",\"ids\":");
        run_json_ids(&out, gen, n_done);
        sb_append(&out, ",\"text\":");
        run_json_text(&out, sb_str(&text), text.len);
        sb_printf(&out,
                  ",\"timings\":{\"prompt_tokens\":%d,\"prompt_ms\":%.3f,\"gen_tokens\":%d,"
                  "\"gen_ms\":%.3f}}\n",
                  n_prompt, prompt_ms, n_done, gen_ms);
        fputs(sb_str(&out), stdout);
        sb_free(&out);
    } else {
        printf("\n");
        fprintf(stderr,
                "prompt: %d tokens in %.1f ms (%.2f t/s), generation: %d tokens in %.1f ms (%.2f "
                "t/s)\n",
                n_prompt, prompt_ms, prompt_ms > 0 ? n_prompt * 1000.0 / prompt_ms : 0.0, n_done,
                gen_ms, gen_ms > 0 ? n_done * 1000.0 / gen_ms : 0.0);
    }
    rc = 0;
done:
    if (lf && fclose(lf) != 0 && rc == 0) {
        fprintf(stderr, "confab: writing %s failed\n", logits_out);
        rc = 1;
    }
    sb_free(&text);
    sb_free(&piece_sb);
    tok_stream_free(ts);
    tok_free(tkz);
    free(gen);
    free(ids);
    cf_samp_free(smp);
    cf_stop_free(stopper);
    cf_ctx_free(ctx);
    cf_model_free(m);
    return rc;
}
