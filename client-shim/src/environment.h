/*
 * environment.h — the process facts of the run's wandb-metadata.json, sent by
 * the client about itself (one RunEnvironment record per process), because
 * the agent often cannot read them: running as another user (the systemd
 * service), it is denied /proc/<pid>/cwd and /proc/<pid>/exe.
 *
 * td_init starts one short-lived thread (every signal blocked) and returns: it
 * reads /proc/self/cmdline and /proc/self/exe, the working directory, the git
 * facts from the repository's files (common/runenv.h, no process), the Python
 * version the Python package passed in td_run_options, and last the dirty flag
 * from one `git status` bounded by TDI_GIT_STATUS_TIMEOUT_MS (then killed:
 * "dirty" is absent, as when git is missing). It appends the record like any
 * other (the run's mu, the buffer's bound; TD_ERR_FULL drops it) and exits —
 * after the agent's first acknowledgement (bounded), whose limits it then fits.
 *
 * td_finish (and the signal thread's end of a run) stops it before the exit
 * record: a git status still running is killed at once and the facts go
 * without the dirty flag, so finishing never waits on git. Facts that cannot
 * be read are absent; every string is cut to TRACKD_MAX_ENV_STRING bytes (at
 * most RUNENV_MAX_ARGS args from at most 64 KiB of command line), bytes that
 * are not UTF-8 and control characters (but in args) become '?', so the agent
 * never refuses the batch — and the records in it — over them. Errors: tdi_environment_start
 * returns TD_ERR_NOMEM or TD_ERR_TRANSPORT (the thread); the thread's own failures only leave facts
 * out.
 */
#ifndef TRACKD_CLIENT_ENVIRONMENT_H
#define TRACKD_CLIENT_ENVIRONMENT_H

#include <stdbool.h>
#include <stddef.h>

#define TDI_GIT_STATUS_TIMEOUT_MS 2000
/* Then the record waits this long at most for the agent's first ack, whose
 * limits it must fit (arguments: the agent's max_string_bytes; the whole
 * record: one batch); unknown by then, the defaults are assumed. */
#define TDI_ENV_LIMITS_WAIT_MS 2000

struct td_run;

/* python_version: borrowed, copied; NULL or "" when the client is not Python. */
int tdi_environment_start(struct td_run *run, const char *python_version);
/* Cuts a running git status short, joins the thread (its record is appended by
 * then), frees. Safe without a start. */
void tdi_environment_stop(struct td_run *run);

/* A string as the agent accepts it, in one pass: at most `max` bytes (never
 * cut inside a character), every byte that is not part of a valid UTF-8
 * character a '?', and so is every control character unless `controls`
 * (arguments may hold newlines). Malloc'd; NULL when out of memory. */
char *tdi_environment_clean(const char *s, size_t max, bool controls);

#endif
