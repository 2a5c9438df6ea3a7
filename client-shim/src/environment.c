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
#include <unistd.h>

#include "environment.h"
#include "error.h"
#include "run.h"
#include "runenv.h"
#include "utf8.h"

#define CMDLINE_MAX (64u << 10)

struct tdi_environment {
	pthread_t thread;
	atomic_bool abort;
	char python[64];
};

/* A string as the agent accepts it: at most `max` bytes, valid UTF-8, and no
 * control characters unless `controls` (arguments may hold newlines). */
static char *clean(const char *s, size_t max, bool controls)
{
	size_t n = strlen(s);
	if (n > max)
		n = max;
	while (n > 0 && !utf8_valid(s, n)) /* a cut in the middle of a character */
		n--;
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	memcpy(out, s, n);
	out[n] = '\0';
	if (!controls)
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
				out[i] = '?';
	return out;
}

static void *environment_main(void *arg)
{
	struct td_run *run = arg;
	struct tdi_environment *e = run->environment;
	Trackd__V1__RunEnvironment env = TRACKD__V1__RUN_ENVIRONMENT__INIT;
	char *argv_clean[RUNENV_MAX_ARGS];
	size_t n_args = 0;
	char *program = NULL, *exe_s = NULL, *root_s = NULL, *remote = NULL;
	char *cmdline = malloc(CMDLINE_MAX);
	FILE *f = cmdline ? fopen("/proc/self/cmdline", "re") : NULL;
	if (f) {
		size_t len = fread(cmdline, 1, CMDLINE_MAX, f);
		fclose(f);
		const char *argv[RUNENV_MAX_ARGS];
		int prog;
		int argc = runenv_argv(cmdline, len, argv, &prog);
		if (argc > 0) {
			program = clean(argv[prog], TRACKD_MAX_ENV_STRING, false);
			for (int i = prog + 1; i < argc && n_args < TRACKD_MAX_ENV_ARGS; i++)
				if ((argv_clean[n_args] =
				         clean(argv[i], TRACKD_DEFAULT_MAX_STRING_BYTES, true)))
					n_args++;
		}
	}
	free(cmdline);
	env.program = program;
	env.args = argv_clean;
	env.n_args = n_args;
	char exe[PATH_MAX], cwd[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[k > 0 ? k : 0] = '\0';
	if (exe[0])
		env.executable = exe_s = clean(exe, TRACKD_MAX_ENV_STRING, false);
	if (!getcwd(cwd, sizeof cwd))
		cwd[0] = '\0';
	if (cwd[0])
		env.root = root_s = clean(cwd, TRACKD_MAX_ENV_STRING, false);
	if (e->python[0])
		env.python = e->python;
	struct runenv_git g;
	if (cwd[0] && runenv_git(cwd, &g) == 0) {
		if (g.remote[0])
			env.git_remote = remote = clean(g.remote, TRACKD_MAX_ENV_STRING, false);
		env.git_commit = g.commit[0] ? g.commit : NULL;
		env.git_branch = g.branch[0] ? g.branch : NULL;
		/* Last: the only step that may take long. */
		enum runenv_dirty d = runenv_git_dirty(cwd, TDI_GIT_STATUS_TIMEOUT_MS, &e->abort);
		if (d != RUNENV_DIRTY_UNKNOWN) {
			env.has_git_dirty = true;
			env.git_dirty = d == RUNENV_DIRTY;
		}
	}

	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = run->run_id;
	rec.body_case = TRACKD__V1__RECORD__BODY_ENVIRONMENT;
	rec.environment = &env;
	pthread_mutex_lock(&run->mu);
	if (!run->closed && tdi_buffer_append_locked(run, &rec.base, false) == TD_OK)
		pthread_cond_signal(&run->wake);
	pthread_mutex_unlock(&run->mu);

	for (size_t i = 0; i < n_args; i++)
		free(argv_clean[i]);
	free(program);
	free(exe_s);
	free(root_s);
	free(remote);
	return NULL;
}

int tdi_environment_start(struct td_run *run, const char *python_version)
{
	struct tdi_environment *e = calloc(1, sizeof *e);
	if (!e)
		return tdi_fail(TD_ERR_NOMEM, "td_init: out of memory");
	if (python_version) {
		char *p = clean(python_version, sizeof e->python - 1, false);
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
