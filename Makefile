# confab build. `make` builds build/confab; `make test` runs the whole suite;
# `make test SANITIZE=1` runs it under ASan+UBSan; `make deps` installs
# everything the project needs from Debian's archive and npm.
#
# Sources are discovered: every src/**/*.c goes into libconfab.a except
# src/cli/main.c; every tests/test_*.c becomes one cmocka test binary.
# Files named *_avx2.c / *_avx512.c are compiled with those ISA flags only;
# the rest of the binary is baseline x86-64 and picks kernels at run time.

CC       ?= gcc
.DEFAULT_GOAL := all
PKGS     := sqlite3 jansson libfyaml libcurl libpcre2-8 libedit libxxhash libcrypto
OPT      ?= -O2
WARN     := -Wall -Wextra -Wshadow -Wno-unused-parameter
# -ffp-contract=off: the engine's arithmetic follows the reference engine
# bit for bit (quants.h), so every FMA is written out (fmaf, intrinsics)
# and no compiler may fuse a * b + c on its own.
CFLAGS_BASE := -std=c17 -D_GNU_SOURCE $(OPT) -g $(WARN) -Iinclude -Isrc -ffp-contract=off \
               -fno-strict-aliasing -pthread $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcivetweb -lm -lutil -pthread

ifeq ($(WERROR),1)
CFLAGS_BASE += -Werror
endif

ifeq ($(SANITIZE),1)
BUILD    ?= build/asan
CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
else
BUILD    ?= build
endif

GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
VERSION    := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CFLAGS_BASE += -DCONFAB_VERSION='"$(VERSION)"' -DCONFAB_GIT_COMMIT='"$(GIT_COMMIT)"'

CFLAGS_AVX2   := -mavx2 -mfma -mf16c -mbmi2
CFLAGS_AVX512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma -mf16c -mbmi2

LIB_SRC  := $(filter-out src/cli/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
WEB_SRC  := $(shell find web -type f ! -name README.md 2>/dev/null | sort)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_UTIL_OBJ := $(BUILD)/tests/testutil.o
BENCH_SRC := $(sort $(wildcard bench/bench_*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps run test bench format lint clean FORCE

all: $(BUILD)/confab

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS_BASE) $(if $(findstring _avx512,$<),$(CFLAGS_AVX512),$(if $(findstring _avx2,$<),$(CFLAGS_AVX2))) -MMD -MP -c $< -o $@

# The version banner embeds the commit: rebuild it every time (it is tiny).
$(BUILD)/src/cli/cmd_version.o: FORCE

# The web UI is embedded: tools/embed.sh turns web/ into a C file of byte
# arrays (with MIME types and ETags) that goes into libconfab.a. The folder
# itself is a prerequisite so adding or removing a file regenerates it.
WEB_GEN := $(BUILD)/gen/web_assets.c
WEB_OBJ := $(BUILD)/gen/web_assets.o
#
# Third-party browser code comes from npm (tools/web/package.json, installed
# by `make deps`) and is staged beside web/'s files: markdown-it renders
# replies. Without it (no npm) the UI still works and shows replies as plain
# text; the build says so.
WEB_STAGE  := $(BUILD)/gen/webroot
WEB_VENDOR := $(wildcard tools/web/node_modules/markdown-it/dist/markdown-it.min.js)
$(WEB_GEN): $(WEB_SRC) web tools/embed.sh $(WEB_VENDOR)
	@mkdir -p $(dir $@)
	@rm -rf $(WEB_STAGE) && mkdir -p $(WEB_STAGE)/vendor && cp -R web/. $(WEB_STAGE)/
	@if [ -n "$(WEB_VENDOR)" ]; then \
	  cp $(WEB_VENDOR) $(WEB_STAGE)/vendor/markdown-it.min.js; \
	  cp tools/web/node_modules/markdown-it/LICENSE $(WEB_STAGE)/vendor/markdown-it.LICENSE.txt; \
	else echo "  note: markdown-it not installed (make deps); the UI will show replies as plain text"; fi
	bash tools/embed.sh $(WEB_STAGE) $@

$(WEB_OBJ): $(WEB_GEN)
	$(CC) $(CFLAGS_BASE) -c $< -o $@

$(BUILD)/libconfab.a: $(LIB_OBJ) $(WEB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/confab: $(BUILD)/src/cli/main.o $(BUILD)/libconfab.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(TEST_UTIL_OBJ): tests/testutil.c tests/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(shell pkg-config --cflags cmocka) -c $< -o $@

$(BUILD)/tests/%: tests/%.c $(TEST_UTIL_OBJ) $(BUILD)/libconfab.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(shell pkg-config --cflags cmocka) $(LDFLAGS) -MMD -MP -o $@ $< $(TEST_UTIL_OBJ) $(BUILD)/libconfab.a $(LDLIBS) $(shell pkg-config --libs cmocka)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libconfab.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(LDFLAGS) -o $@ $< $(BUILD)/libconfab.a $(LDLIBS)

# Everything the tests run: unit binaries plus the CLI they drive.
test: $(BUILD)/confab $(TEST_BIN)
	@CONFAB_BIN=$(abspath $(BUILD)/confab) BUILD=$(BUILD) bash tests/run.sh $(TEST_BIN)

bench: $(BUILD)/confab $(BENCH_BIN)

# Installs dependencies, builds, and serves on http://127.0.0.1:8080 with
# the data in ./data (config: ./confab.yaml or ~/.config/confab/config.yaml).
run: deps
	$(MAKE) $(BUILD)/confab
	$(BUILD)/confab serve --host 127.0.0.1 --port 8080 --data ./data

deps:
	bash tools/deps.sh

format:
	clang-format -i $$(find src include tests bench tools -name '*.[ch]')

lint:
	clang-format --dry-run --Werror $$(find src include tests bench tools -name '*.[ch]')
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --std=c11 --inline-suppr --suppress=missingIncludeSystem -Iinclude -Isrc src

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
FORCE:
