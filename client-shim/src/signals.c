/*
 * signals.c — the signal handler and the signal thread (signals.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "signals.h"
#include "error.h"
#include "run.h"
#include "timing.h"

static const int handled[] = {SIGTERM, SIGINT};
#define N_HANDLED (sizeof(handled) / sizeof(handled[0]))

/* The handler's only context. */
static volatile sig_atomic_t handler_fd = -1;
static atomic_bool in_use;

struct tdi_signals {
	int pipe[2];
	pthread_t thread;
	struct sigaction old[N_HANDLED];
	bool installed[N_HANDLED];
};

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;
	ssize_t r = write(handler_fd, &b, 1);

	(void)r; /* a full pipe already holds a pending signal */
	errno = saved;
}

static void restore_handlers(struct tdi_signals *s)
{
	for (size_t i = 0; i < N_HANDLED; i++) {
		if (s->installed[i])
			sigaction(handled[i], &s->old[i], NULL);
		s->installed[i] = false;
	}
}

/* Dies of sig (default action), from a thread that blocks every signal. */
static void die_of(int sig)
{
	sigset_t one;

	signal(sig, SIG_DFL);
	sigemptyset(&one);
	sigaddset(&one, sig);
	pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	raise(sig);
	_exit(128 + sig); /* not reached: SIGTERM and SIGINT terminate */
}

static void *signal_main(void *arg)
{
	struct td_run *run = arg;
	struct tdi_signals *s = run->signals;
	unsigned char b;

	for (;;) {
		ssize_t r = read(s->pipe[0], &b, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || b == 0)
			return NULL; /* tdi_signals_uninstall */
		int sig = b;

		pthread_mutex_lock(&run->mu);
		if (run->finish_owner != 0) {
			/* td_finish is ending the run: it raises sig when done. */
			if (run->pending_signal == 0)
				run->pending_signal = sig;
			pthread_mutex_unlock(&run->mu);
			continue;
		}
		run->finish_owner = 2;
		pthread_mutex_unlock(&run->mu);

		tdi_run_end(run, 128 + sig, TD_EXIT_KILLED, TDI_SIGNAL_FINISH_TIMEOUT_MS, NULL);
		restore_handlers(s);
		die_of(sig);
	}
}

int tdi_signals_install(struct td_run *run)
{
	struct tdi_signals *s;
	sigset_t all, old;
	bool expected = false;
	int rv;

	if (!atomic_compare_exchange_strong(&in_use, &expected, true))
		return tdi_fail(TD_ERR_INVALID,
		                "td_init: handle_signals: another run already handles signals");
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		atomic_store(&in_use, false);
		return tdi_fail(TD_ERR_NOMEM, "td_init: out of memory");
	}
	if (pipe2(s->pipe, O_CLOEXEC) != 0) {
		free(s);
		atomic_store(&in_use, false);
		return tdi_fail(TD_ERR_TRANSPORT, "td_init: handle_signals: pipe: %s",
		                strerror(errno));
	}
	/* The handler must never block: a full pipe means a signal is pending. */
	fcntl(s->pipe[1], F_SETFL, O_NONBLOCK);
	handler_fd = s->pipe[1];
	run->signals = s;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rv = pthread_create(&s->thread, NULL, signal_main, run);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0) {
		handler_fd = -1;
		close(s->pipe[0]);
		close(s->pipe[1]);
		free(s);
		run->signals = NULL;
		atomic_store(&in_use, false);
		return tdi_fail(TD_ERR_TRANSPORT, "td_init: cannot start the signal thread: %s",
		                strerror(rv));
	}
	pthread_setname_np(s->thread, "trackd-signals");

	for (size_t i = 0; i < N_HANDLED; i++) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		sa.sa_flags = SA_RESTART;
		if (sigaction(handled[i], NULL, &s->old[i]) != 0 || s->old[i].sa_handler == SIG_IGN)
			continue;
		if (sigaction(handled[i], &sa, NULL) == 0)
			s->installed[i] = true;
	}
	return TD_OK;
}

void tdi_signals_uninstall(struct td_run *run)
{
	struct tdi_signals *s = run->signals;
	unsigned char stop = 0;

	if (s == NULL)
		return;
	/* No new handler calls after this; then stop the thread, then close
	 * the pipe the handler wrote to. */
	restore_handlers(s);
	while (write(s->pipe[1], &stop, 1) < 0 && errno == EINTR)
		;
	pthread_join(s->thread, NULL);
	handler_fd = -1;
	close(s->pipe[0]);
	close(s->pipe[1]);
	free(s);
	run->signals = NULL;
	atomic_store(&in_use, false);
}
