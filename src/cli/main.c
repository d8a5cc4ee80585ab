/* main — confab's entry point: everything happens in cli_main(). */
#include "cli/cli.h"

#include <locale.h>

int main(int argc, char **argv) {
    setlocale(LC_CTYPE, "C.UTF-8");
    return cli_main(argc, argv);
}
