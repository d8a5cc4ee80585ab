/* cmd_version — `confab version`: build identity, CPU features, libraries. */
#include <civetweb.h>
#include <curl/curl.h>
#include <jansson.h>
#include <libfyaml.h>
#include <sqlite3.h>
#include <stdio.h>
#include <xxhash.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include "base/cpu.h"
#include "cli/cli.h"
#include "engine/types.h"

#include <pcre2.h>

int cmd_version(int argc, char **argv) {
    (void)argv;
    if (argc > 1) return cli_usage_error("version", "unexpected argument '%s'", argv[1]);
    char pcre[64] = "?";
    pcre2_config(PCRE2_CONFIG_VERSION, pcre);
    uint32_t jit = 0;
    pcre2_config(PCRE2_CONFIG_JIT, &jit);
    printf("confab %s (commit %s, built %s)\n", CONFAB_VERSION, CONFAB_GIT_COMMIT, __DATE__);
    printf("cpu: %s (%d cores)\n", cpu_describe(), cpu_count());
    printf("kernels: %s\n", tt_kernel_family());
    printf("libraries:\n");
    printf("  sqlite   %s\n", sqlite3_libversion());
    printf("  jansson  %s\n", jansson_version_str());
    printf("  libfyaml %s\n", fy_library_version());
    printf("  libcurl  %s\n", curl_version_info(CURLVERSION_NOW)->version);
    printf("  civetweb %s\n", mg_version());
    printf("  pcre2    %s%s\n", pcre, jit ? " (jit)" : "");
    printf("  xxhash   %u\n", XXH_versionNumber());
    return 0;
}
