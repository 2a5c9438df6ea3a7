/*
 * timing.c — the client's clocks and its timed wait (timing.h).
 */
#include <time.h>

#include "timing.h"

int64_t tdi_wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t tdi_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tdi_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t deadline_ms)
{
	struct timespec ts = {
	    .tv_sec = (time_t)(deadline_ms / 1000),
	    .tv_nsec = (long)(deadline_ms % 1000) * 1000000,
	};

	pthread_cond_timedwait(cond, mu, &ts);
}
