/* cmd_quantize — `confab quantize IN.gguf OUT.gguf TYPE`: converts a model's
 * weights to a smaller type with the engine's quant_file() and prints what
 * it wrote (tensors per type, size before and after). */
#include "base/err.h"
#include "cli/cli.h"
#include "engine/quantize.h"

#include <stdio.h>

int cmd_quantize(int argc, char **argv) {
    if (argc != 4)
        return cli_usage_error("quantize",
                               "quantize needs IN.gguf OUT.gguf TYPE (%d argument%s given)",
                               argc - 1, argc == 2 ? "" : "s");
    if (quant_preset_from_name(argv[3]) < 0)
        return cli_usage_error("quantize", "unknown type '%s' (one of %s)", argv[3],
                               quant_preset_list());
    cf_err err = {0};
    quant_stats st;
    if (quant_file(argv[1], argv[2], argv[3], &st, &err) != 0) {
        fprintf(stderr, "confab: quantize: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s: %d tensors (%d converted), %.2f MiB -> %.2f MiB of tensor data\n", argv[2],
           st.n_tensors, st.n_converted, (double)st.bytes_in / 1048576.0,
           (double)st.bytes_out / 1048576.0);
    for (int t = 0; t < TT_COUNT; t++)
        if (st.count[t]) printf("  %-7s %d\n", tt_get(t)->name, st.count[t]);
    return 0;
}
