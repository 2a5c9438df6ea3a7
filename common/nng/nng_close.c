#include "nng_close.h"

#include "clock.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

struct closer {
	nng_socket sock;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done, abandoned; /* abandoned: the closer thread frees the struct */
};

static void closer_free(struct closer *c)
{
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

static void *closer_main(void *arg)
{
	struct closer *c = arg;
	nng_close(c->sock);
	pthread_mutex_lock(&c->mu);
	c->done = true;
	bool abandoned = c->abandoned;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (abandoned)
		closer_free(c);
	return NULL;
}

bool nng_close_bounded(nng_socket sock, int timeout_ms)
{
	struct closer *c = calloc(1, sizeof *c);
	if (!c) {
		nng_close(sock);
		return true;
	}
	c->sock = sock;
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* The helper thread must not take the application's signals (libtrackd
	 * runs inside training processes). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	int rv = pthread_create(&t, NULL, closer_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0) {
		closer_free(c);
		nng_close(sock);
		return true;
	}
	struct timespec deadline = clock_deadline_ms(CLOCK_MONOTONIC, timeout_ms);
	pthread_mutex_lock(&c->mu);
	while (!c->done && pthread_cond_timedwait(&c->cv, &c->mu, &deadline) != ETIMEDOUT)
		;
	bool done = c->done;
	c->abandoned = !done;
	pthread_mutex_unlock(&c->mu);
	if (done) {
		/* Joined, not left to exit on its own: a close leaves no thread behind
		 * (callers count threads; a client closes sockets often). */
		pthread_join(t, NULL);
		closer_free(c);
	} else {
		pthread_detach(t);
	}
	return done;
}
