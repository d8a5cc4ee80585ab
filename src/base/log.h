/*
 * log — leveled logging to stderr.
 *
 * One process-wide level, set by main from --log-level or the config before
 * threads start (the only global mutable state in base). Lines look like
 * `2026-11-24T10:00:00.123Z warn  config: unknown key "foo" (confab.yaml:3:1)`.
 * Each line is written with one write(2), so lines from threads never mix.
 */
#ifndef CONFAB_BASE_LOG_H
#define CONFAB_BASE_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 } log_level;

void log_set_level(log_level lvl);
log_level log_get_level(void);
/* Parses "debug", "info", "warn"/"warning", "error", "off". Returns 0 on
 * success, -1 for an unknown name. */
int log_parse_level(const char *name, log_level *out);
const char *log_level_name(log_level lvl);

void log_msg(log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(mod, ...) log_msg(LOG_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...) log_msg(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOG_ERROR, mod, __VA_ARGS__)

#endif
