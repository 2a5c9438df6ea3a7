/*
 * state_dir.h — the state dir: one agent at a time, private to the agent's user.
 *
 * One agent per state dir: two agents appending to one log lose acknowledged
 * records (each recovers and cuts what the other wrote), so every agent holds an
 * exclusive flock on <state dir>/agent.lock for its whole life, with its pid
 * written in the file for the message of the one refused. The private agent
 * (user_mode.h) takes the same file, so a private agent and a machine agent
 * exclude each other too. A refused agent changes nothing in the state dir: it
 * opens the lock file without truncating it and never writes to it.
 *
 * Private: the store holds every user's runs, and the agent's uid check on the
 * socket is the only read path (a member of the logging group must not read
 * another user's files). So nothing under the state dir grants group or other
 * access: the agent creates files 0600 and directories 0700 (its umask is 077),
 * and at start takes group and other bits off whatever an older version left.
 *
 * Threading: main thread, before any stage starts.
 */
#ifndef TRACKD_CMD_STATE_DIR_H
#define TRACKD_CMD_STATE_DIR_H

#define STATE_LOCK_FILE "agent.lock"

/* Takes the lock of `state_dir` (which exists). On success *fd is the lock's
 * descriptor (close it, or exit, to release). TRACKD_EEXIST: another process
 * holds it; *holder is its pid, 0 if it wrote none yet. Other errors: the file
 * cannot be opened or locked (logged). */
int state_dir_lock(const char *state_dir, int *fd, long *holder);

/* Removes group and other permissions from the state dir and everything in it
 * owned by this uid (symbolic links are not followed; other file systems
 * mounted inside are not entered). Logs how many it changed; a failure is
 * logged and returned (the walk goes on). The walk happens only when the state
 * dir or an entry at its top is open to others (an older version's store): a
 * private store costs one readdir of its top, not an lstat per file. */
int state_dir_make_private(const char *state_dir);

#endif
