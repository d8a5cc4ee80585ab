/* cmd_quantize — `confab quantize [-t N] IN.gguf OUT.gguf TYPE`: converts a
 * model's weights to a smaller type with the engine's quant_file() and
 * prints what it wrote (tensors per type, size before and after). */
#include "base/err.h"
#include "cli/cli.h"
#include "engine/quantize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_quantize(int argc, char **argv) {
    const char *pos[3];
    int n_pos = 0, n_threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            char *end = NULL;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (i + 1 >= argc || *end || v <= 0 || v > 1024)
                return cli_usage_error("quantize", "--threads needs a positive number");
            n_threads = (int)v;
            i++;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("quantize", "unknown option '%s'", a);
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            return cli_usage_error("quantize", "unexpected argument '%s'", a);
        }
    }
    if (n_pos != 3) return cli_usage_error("quantize", "quantize needs IN.gguf OUT.gguf TYPE");
    if (quant_preset_from_name(pos[2]) < 0)
        return cli_usage_error("quantize", "unknown type '%s' (one of %s)", pos[2],
                               quant_preset_list());
    cf_err err = {0};
    quant_stats st;
    if (quant_file(pos[0], pos[1], pos[2], n_threads, &st, &err) != 0) {
        fprintf(stderr, "confab: quantize: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s: %d tensors (%d converted), %.2f MiB -> %.2f MiB of tensor data\n", pos[1],
           st.n_tensors, st.n_converted, (double)st.bytes_in / 1048576.0,
           (double)st.bytes_out / 1048576.0);
    for (int t = 0; t < TT_COUNT; t++)
        if (st.count[t]) printf("  %-7s %d\n", tt_get(t)->name, st.count[t]);
    return 0;
}
