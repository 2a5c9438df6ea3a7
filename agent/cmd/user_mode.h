/*
 * user_mode.h — `trackd --user`: a private agent for one user, started on demand
 * by the user's clients (client-shim/src/autostart.c) or by `systemctl --user`.
 *
 * What --user changes:
 *   - the defaults are the per-user ones even for root (config.h: socket under
 *     $XDG_RUNTIME_DIR/trackd or /tmp/trackd-<uid>, state under
 *     $XDG_STATE_HOME/trackd or ~/.local/state/trackd), and without --config
 *     the user's own file is read if it exists ($XDG_CONFIG_HOME/trackd/trackd.yaml,
 *     else ~/.config/trackd/trackd.yaml);
 *   - the socket must be private: socket_mode grants nothing to group or
 *     others, access.group is empty, and the socket's directory is a real
 *     directory owned by this uid with mode 0700 (created so; a directory of
 *     another owner is refused, since whoever owns it could put their own
 *     socket in the way and receive the user's runs);
 *   - one agent per socket and per state dir: the agent holds an exclusive
 *     flock on <socket dir>/trackd.lock and <state dir>/agent.lock for its whole
 *     life, with its pid written in them. A second agent that finds a lock held
 *     exits 0 as soon as the holder answers on the socket (the usual outcome of
 *     several clients starting agents at the same moment); while the holder
 *     does not answer yet (starting, or exiting and about to drop the lock) it
 *     keeps trying for USER_MODE_LOCK_WAIT_MS, then fails;
 *   - idle exit: after idle_exit with nothing pending (no client connected, no
 *     running run, every sink caught up) the agent stops as on SIGTERM.
 *
 * Threading: called from the main thread only.
 */
#ifndef TRACKD_CMD_USER_MODE_H
#define TRACKD_CMD_USER_MODE_H

#include "config.h"
#include "ingest.h"
#include "local_sink.h"
#include "wandb_sink.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USER_MODE_LOCK_WAIT_MS 10000

struct user_mode {
	int socket_lock_fd; /* -1 when not held */
	int state_lock_fd;
	uint64_t idle_exit_ms;   /* 0: never */
	int64_t idle_since_us;   /* monotonic; 0 while something is pending */
	const char *busy_reason; /* the last user_mode_busy answer, logged on change */
};

enum user_mode_claim {
	USER_MODE_CLAIMED, /* this process is the user's agent */
	USER_MODE_SERVED,  /* another agent holds the lock and answers: exit 0 */
	USER_MODE_FAILED,  /* logged */
};

/* The user's own configuration file, written into buf, if it exists; else NULL. */
const char *user_mode_config_file(char *buf, size_t len);

/* Checks that cfg describes a private agent (see above), prepares the socket's
 * directory and the state dir, and takes both locks. `um` is initialised here. */
enum user_mode_claim user_mode_claim(struct user_mode *um, const struct config *cfg);

/* What keeps the agent busy (a constant string: a client connected, a run
 * running, a record a sink has not processed yet), or NULL when nothing does.
 * NULL stages count as busy (starting). The agent's own listener probes are not
 * clients (ingest.h): they must not reset the idle time. */
const char *user_mode_busy(ingest *in, local_sink *sink, wandb_sink *wandb);

/* Called from the main loop with user_mode_busy's answer and the last client
 * activity (ingest_client_activity_us): true once the agent has been idle for
 * idle_exit without interruption, counted from the later of the first idle
 * check and the last client's connect or disconnect. */
bool user_mode_idle_over(struct user_mode *um, const char *busy, int64_t last_client_us,
                         int64_t now_us);

/* Drops the locks (the process exit would too). Idempotent. */
void user_mode_release(struct user_mode *um);

#endif
