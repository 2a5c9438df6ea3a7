/*
 * environment.c — the client's own process facts as one RunEnvironment record
 * (environment.h).
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "environment.h"
#include "error.h"
#include "run.h"
#include "timing.h"
#include "runenv.h"
#include "utf8.h"

#define CMDLINE_MAX (64u << 10)

struct tdi_environment {
	pthread_t thread;
	atomic_bool abort;
	char python[64];
};

/* The length of the UTF-8 sequence that byte b starts, 0 if none can. */
static size_t sequence_length(unsigned char b)
{
	return b < 0x80                 ? 1
	       : b >= 0xc2 && b <= 0xdf ? 2
	       : b >= 0xe0 && b <= 0xef ? 3
	       : b >= 0xf0 && b <= 0xf4 ? 4
	                                : 0;
}

char *tdi_environment_clean(const char *s, size_t max, bool controls)
{
	size_t n = strlen(s);
	char *out = malloc((n < max ? n : max) + 1);
	if (!out)
		return NULL;
	size_t i = 0, k = 0;
	while (i < n) {
		size_t len = sequence_length((unsigned char)s[i]);
		bool ok = len && i + len <= n && utf8_valid(s + i, len);
		size_t take = ok ? len : 1;
		if (k + take > max)
			break;
		if (!ok) {
			out[k++] = '?';
		} else if (len == 1 && !controls && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)) {
			out[k++] = '?';
		} else {
			memcpy(out + k, s + i, len);
			k += len;
		}
		i += take;
	}
	out[k] = '\0';
	return out;
}

/* Waits, a bounded time, for the agent's first acknowledgement: it carries
 * the agent's limits, which the record must fit (an agent configured below
 * the defaults would refuse the whole batch otherwise, and the rows in it). */
static void wait_for_limits(struct td_run *run, const struct tdi_environment *e)
{
	int64_t deadline = tdi_mono_ms() + TDI_ENV_LIMITS_WAIT_MS;
	for (;;) {
		pthread_mutex_lock(&run->mu);
		bool known = run->acked_through > 0 || run->closed;
		pthread_mutex_unlock(&run->mu);
		if (known || atomic_load(&e->abort) || tdi_mono_ms() >= deadline)
			return;
		struct timespec ts = {0, 10 * 1000000};
		nanosleep(&ts, NULL);
	}
}

static void *environment_main(void *arg)
{
	struct td_run *run = arg;
	struct tdi_environment *e = run->environment;
	Trackd__V1__RunEnvironment env = TRACKD__V1__RUN_ENVIRONMENT__INIT;
	char *argv_clean[RUNENV_MAX_ARGS];
	const char *argv[RUNENV_MAX_ARGS];
	size_t n_args = 0;
	int argc = 0, prog = 0;
	char *program = NULL, *exe_s = NULL, *root_s = NULL, *remote = NULL, *commit = NULL,
	     *branch = NULL;
	char *cmdline = malloc(CMDLINE_MAX);
	FILE *f = cmdline ? fopen("/proc/self/cmdline", "re") : NULL;
	if (f) {
		size_t len = fread(cmdline, 1, CMDLINE_MAX, f);
		fclose(f);
		argc = runenv_argv(cmdline, len, argv, &prog);
		if (argc > 0)
			env.program = program =
			    tdi_environment_clean(argv[prog], TRACKD_MAX_ENV_STRING, false);
	}
	char exe[PATH_MAX], cwd[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[k > 0 ? k : 0] = '\0';
	if (exe[0])
		env.executable = exe_s = tdi_environment_clean(exe, TRACKD_MAX_ENV_STRING, false);
	if (!getcwd(cwd, sizeof cwd))
		cwd[0] = '\0';
	if (cwd[0])
		env.root = root_s = tdi_environment_clean(cwd, TRACKD_MAX_ENV_STRING, false);
	if (e->python[0])
		env.python = e->python;
	struct runenv_git g;
	if (cwd[0] && runenv_git(cwd, &g) == 0) {
		/* From files anyone may have written: cleaned like the rest. */
		if (g.remote[0])
			env.git_remote = remote =
			    tdi_environment_clean(g.remote, TRACKD_MAX_ENV_STRING, false);
		if (g.commit[0])
			env.git_commit = commit =
			    tdi_environment_clean(g.commit, TRACKD_MAX_ENV_STRING, false);
		if (g.branch[0])
			env.git_branch = branch =
			    tdi_environment_clean(g.branch, TRACKD_MAX_ENV_STRING, false);
		/* The only step that may take long. */
		enum runenv_dirty d = runenv_git_dirty(cwd, TDI_GIT_STATUS_TIMEOUT_MS, &e->abort);
		if (d != RUNENV_DIRTY_UNKNOWN) {
			env.has_git_dirty = true;
			env.git_dirty = d == RUNENV_DIRTY;
		}
	}

	/* Arguments are strings like any other to the agent: its string limit. */
	wait_for_limits(run, e);
	struct tdi_limits lim;
	tdi_limits_load(run, &lim);
	size_t arg_max = lim.string_bytes < TRACKD_MAX_ENV_STRING ? (size_t)lim.string_bytes
	                                                          : TRACKD_MAX_ENV_STRING;
	for (int i = prog + 1; i < argc && n_args < TRACKD_MAX_ENV_ARGS; i++)
		if ((argv_clean[n_args] = tdi_environment_clean(argv[i], arg_max, true)))
			n_args++;
	env.args = argv_clean;
	env.n_args = n_args;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = run->run_id;
	rec.body_case = TRACKD__V1__RECORD__BODY_ENVIRONMENT;
	rec.environment = &env;
	/* One batch must hold it (with its framing): else without the args,
	 * else not at all. */
	size_t room = tdi_limits_batch_bytes(&lim) - 16;
	if (trackd__v1__record__get_packed_size(&rec) > room)
		env.n_args = 0;
	if (trackd__v1__record__get_packed_size(&rec) <= room) {
		pthread_mutex_lock(&run->mu);
		if (!run->closed && tdi_buffer_append_locked(run, &rec.base, false) == TD_OK)
			pthread_cond_signal(&run->wake);
		pthread_mutex_unlock(&run->mu);
	}

	for (size_t i = 0; i < n_args; i++)
		free(argv_clean[i]);
	free(cmdline);
	free(program);
	free(exe_s);
	free(root_s);
	free(remote);
	free(commit);
	free(branch);
	return NULL;
}

int tdi_environment_start(struct td_run *run, const char *python_version)
{
	struct tdi_environment *e = calloc(1, sizeof *e);
	if (!e)
		return tdi_fail(TD_ERR_NOMEM, "td_init: out of memory");
	if (python_version) {
		char *p = tdi_environment_clean(python_version, sizeof e->python - 1, false);
		if (p) {
			snprintf(e->python, sizeof e->python, "%s", p);
			free(p);
		}
	}
	atomic_init(&e->abort, false);
	run->environment = e;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rv = pthread_create(&e->thread, NULL, environment_main, run);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0) {
		run->environment = NULL;
		free(e);
		return tdi_fail(TD_ERR_TRANSPORT, "td_init: cannot start a thread: %s",
		                strerror(rv));
	}
	pthread_setname_np(e->thread, "trackd-env");
	return TD_OK;
}

void tdi_environment_stop(struct td_run *run)
{
	struct tdi_environment *e = run->environment;
	if (!e)
		return;
	atomic_store(&e->abort, true);
	pthread_join(e->thread, NULL);
	run->environment = NULL;
	free(e);
}
