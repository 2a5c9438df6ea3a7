/*
 * timing.h — the client's two clocks and its timed wait. Wall time (Unix
 * microseconds) stamps records; monotonic milliseconds are for deadlines, and
 * every condition variable of a run is made with CLOCK_MONOTONIC (run.c), so
 * tdi_wait_until takes a tdi_mono_ms() deadline. No state; any thread.
 */
#ifndef TRACKD_CLIENT_TIMING_H
#define TRACKD_CLIENT_TIMING_H

#include <pthread.h>
#include <stdint.h>

int64_t tdi_wall_us(void);
int64_t tdi_mono_ms(void);
/* pthread_cond_timedwait until a tdi_mono_ms() deadline (conds use the
 * monotonic clock). */
void tdi_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t deadline_ms);

#endif
