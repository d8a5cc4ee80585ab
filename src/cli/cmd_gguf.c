/* cmd_gguf — `confab gguf FILE`: validates a GGUF file and lists its header,
 * metadata (values abbreviated) and tensors (type, shape, offset, size), for
 * debugging models. A bad file prints the reader's error and exits 1. */
#include "base/err.h"
#include "base/sb.h"
#include "cli/cli.h"
#include "engine/gguf.h"
#include "engine/types.h"

#include <inttypes.h>
#include <stdio.h>

int cmd_gguf(int argc, char **argv) {
    if (argc != 2) return cli_usage_error("gguf", "gguf needs exactly one FILE");
    cf_err err = {0};
    gguf_file *f = gguf_open(argv[1], &err);
    if (!f) {
        fprintf(stderr, "confab: gguf: %s\n", err.msg);
        return 1;
    }
    printf("%s: GGUF v%u, %" PRIu64 " bytes, alignment %u, %" PRId64 " metadata keys, %" PRId64
           " tensors\n",
           argv[1], gguf_version(f), gguf_file_size(f), gguf_alignment(f), gguf_n_kv(f),
           gguf_n_tensors(f));
    printf("\nmetadata:\n");
    sb_t s = {0};
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        gguf_str k = gguf_kv_key(f, i);
        sb_clear(&s);
        gguf_kv_describe(f, i, 8, &s);
        printf("  %-44.*s %-7s %s\n", (int)k.n, k.p, gguf_vtype_name(gguf_kv_type(f, i)),
               sb_str(&s));
    }
    printf("\ntensors:\n");
    uint64_t total = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        sb_clear(&s);
        sb_putc(&s, '[');
        for (uint32_t d = 0; d < t->n_dims; d++)
            sb_printf(&s, "%s%" PRId64, d ? ", " : "", t->ne[d]);
        sb_putc(&s, ']');
        printf("  %-36.*s %-7s %-16s offset %-10" PRIu64 " %" PRIu64 " bytes\n", (int)t->name.n,
               t->name.p, tt_get(t->type)->name, sb_str(&s), t->offset, t->nbytes);
        total += t->nbytes;
    }
    printf("\n%" PRId64 " tensors, %" PRIu64 " bytes of tensor data\n", gguf_n_tensors(f), total);
    sb_free(&s);
    gguf_close(f);
    return 0;
}
