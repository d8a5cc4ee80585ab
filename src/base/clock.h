/*
 * clock — time sources. Durations use the monotonic clock (never jumps);
 * timestamps stored or shown to people use wall-clock UTC.
 */
#ifndef CONFAB_BASE_CLOCK_H
#define CONFAB_BASE_CLOCK_H

#include <stdint.h>

/* Monotonic nanoseconds since an arbitrary start. */
uint64_t clock_mono_ns(void);
/* Monotonic milliseconds as a double, for timing reports. */
double clock_mono_ms(void);
/* Wall-clock milliseconds since the Unix epoch. */
int64_t clock_wall_ms(void);
/* ISO-8601 UTC with milliseconds ("2026-11-24T10:00:00.123Z") of MS since
 * the epoch into OUT (at least 25 bytes). */
void clock_iso8601(int64_t ms, char out[32]);
/* Sleeps for MS milliseconds (restarted on EINTR). */
void clock_sleep_ms(uint64_t ms);

#endif
