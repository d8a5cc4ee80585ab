/* cmd_mkmodel — `confab mkmodel`: writes a random-weight GGUF model (see
 * src/engine/mkmodel.h) for tests and benchmarks. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/engine_args.h"
#include "engine/mkmodel.h"

int cmd_mkmodel(int argc, char **argv) {
    mkmodel_opts o = {0};
    o.arch = "llama";
    o.type = "F32";
    const char *out = NULL;
    static const struct {
        const char *flag;
        size_t off;
        long lo, hi;
    } ints[] = {
        {"--dim", offsetof(mkmodel_opts, dim), 2, 65536},
        {"--layers", offsetof(mkmodel_opts, layers), 1, 1024},
        {"--heads", offsetof(mkmodel_opts, heads), 1, 4096},
        {"--kv-heads", offsetof(mkmodel_opts, kv_heads), 1, 4096},
        {"--ffn", offsetof(mkmodel_opts, ffn), 1, 262144},
        {"--head-dim", offsetof(mkmodel_opts, head_dim), 2, 1024},
        {"--ctx", offsetof(mkmodel_opts, ctx), 1, 1 << 24},
        {"--vocab", offsetof(mkmodel_opts, vocab), 1, 1 << 24},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tied")) {
            o.tied = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_usage_error("mkmodel", "%s needs a value", a);
        const char *v = argv[++i];
        int done = 0;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
            if (strcmp(a, ints[k].flag)) continue;
            long x;
            if (ea_long(v, ints[k].lo, ints[k].hi, &x))
                return cli_usage_error("mkmodel", "%s wants an integer in [%ld, %ld], got '%s'", a,
                                       ints[k].lo, ints[k].hi, v);
            *(int *)((char *)&o + ints[k].off) = (int)x;
            done = 1;
        }
        if (done) continue;
        if (!strcmp(a, "--arch"))
            o.arch = v;
        else if (!strcmp(a, "--type"))
            o.type = v;
        else if (!strcmp(a, "--vocab-from"))
            o.vocab_from = v;
        else if (!strcmp(a, "-o"))
            out = v;
        else if (!strcmp(a, "--rope-scaling"))
            o.rope_scaling = v;
        else if (!strcmp(a, "--seed")) {
            long long s;
            if (ea_ll(v, &s) || s < 0)
                return cli_usage_error("mkmodel", "--seed wants an integer >= 0, got '%s'", v);
            o.seed = (uint64_t)s;
        } else if (!strcmp(a, "--rope-base")) {
            double d;
            if (ea_double(v, 1, 1e12, &d))
                return cli_usage_error("mkmodel", "--rope-base wants a number >= 1, got '%s'", v);
            o.rope_base = (float)d;
        } else
            return cli_usage_error("mkmodel", "unknown option '%s'", a);
    }
    if (!out) return cli_usage_error("mkmodel", "-o OUT.gguf is required");
    if (!o.dim || !o.layers || !o.heads)
        return cli_usage_error("mkmodel", "--dim, --layers and --heads are required");
    if (!o.ffn) o.ffn = 4 * o.dim;
    if (!o.vocab_from && !o.vocab)
        return cli_usage_error("mkmodel", "--vocab-from FILE or --vocab N is required");
    cf_err err = {0};
    if (mkmodel_write(&o, out, &err) < 0) {
        fprintf(stderr, "confab: %s\n", err.msg);
        return err.code == CF_EINVAL ? 2 : 1;
    }
    return 0;
}
