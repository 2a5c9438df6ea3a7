/*
 * replay.h — delivering spool files whose owner is gone (spool_file.h): in the
 * background for every td_init, and synchronously for td_spool_flush
 * (`trackctl spool flush`); td_spool_pending counts what they would deliver.
 *
 * A file is taken only if its exclusive lock can be had (its owner is dead).
 * Frames are sent verbatim, in file order (= seq order), through transport.h,
 * so the agent's (session, seq) dedupe makes a replay of already-delivered
 * frames harmless; a file is deleted once every frame is acknowledged. A torn
 * tail (a crash mid-append) is dropped; a complete frame with a bad CRC stops
 * the replay and the file is renamed to *.damaged for a human. Files not
 * finished (stopped, deadline) stay for the next client: closing unlocks them.
 *
 * Threading: the replay thread of a run (started with every signal blocked)
 * owns run->replay's socket and files; it takes the run's mu only to read the
 * stop flag, to wait out its back-off on run->replay.cond and to say it is
 * done (run->drained). td_finish stops it (tdi_replay_stop), closing its socket
 * to cut a wait short. Errors: none for the run (a replay that cannot start
 * leaves the files for the next client); td_spool_flush reports through its
 * return value and td_last_error.
 */
#ifndef TRACKD_CLIENT_REPLAY_H
#define TRACKD_CLIENT_REPLAY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <nng/nng.h>

struct td_run;

#define TDI_DEFAULT_FLUSH_TIMEOUT_MS 30000

/* Replaying spool files left by dead processes. */
struct tdi_replay {
	pthread_t thread;
	bool started;
	int fds[64];
	char *paths[64];
	size_t n;
	nng_socket sock;   /* closed by td_finish to cut a wait short */
	nng_dialer dialer; /* the replay thread's until then (replaced by it) */
	bool sock_open;
	pthread_cond_t cond; /* the thread's back-off waits here */
	bool stop;           /* guarded by the run's mu */
	bool done;           /* guarded by the run's mu */
};

/* td_init: finds spool files of dead processes and starts the replay thread. */
int tdi_replay_start(struct td_run *run);
/* Asks the replay thread to stop and joins it (the files it did not finish
 * stay for the next client). */
void tdi_replay_stop(struct td_run *run);

#endif
