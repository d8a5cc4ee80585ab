/* log — leveled logging to stderr; see log.h. */
#include "base/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = LOG_INFO;

void log_set_level(log_level lvl) { atomic_store(&g_level, (int)lvl); }
log_level log_get_level(void) { return (log_level)atomic_load(&g_level); }

static const char *const names[] = {"debug", "info", "warn", "error", "off"};

const char *log_level_name(log_level lvl) {
    return (lvl >= LOG_DEBUG && lvl <= LOG_OFF) ? names[lvl] : "?";
}

int log_parse_level(const char *name, log_level *out) {
    for (int i = 0; i <= LOG_OFF; i++) {
        if (!strcasecmp(name, names[i])) {
            *out = (log_level)i;
            return 0;
        }
    }
    if (!strcasecmp(name, "warning")) {
        *out = LOG_WARN;
        return 0;
    }
    return -1;
}

void log_msg(log_level lvl, const char *module, const char *fmt, ...) {
    if ((int)lvl < atomic_load(&g_level)) return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, log_level_name(lvl), module ? module : "-");
    if (n < 0) return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
