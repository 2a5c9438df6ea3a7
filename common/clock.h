/*
 * clock.h — the two clocks the agent uses. Wall time (Unix microseconds) is for
 * timestamps that leave the process; monotonic time is for deadlines and
 * intervals. Thread-safe, no state.
 */
#ifndef TRACKD_CORE_CLOCK_H
#define TRACKD_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

int64_t clock_wall_us(void);
int64_t clock_mono_us(void);
/* The absolute time `ms` milliseconds from now on clock `clk`, for
 * pthread_cond_timedwait (CLOCK_REALTIME unless the condition variable was
 * made with another clock). */
struct timespec clock_deadline_ms(clockid_t clk, int64_t ms);

#endif
