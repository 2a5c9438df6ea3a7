#include "runenv.h"

#include "errors.h"
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

void runenv_strip_credentials(const char *url, char *out, size_t len)
{
	const char *scheme = strstr(url, "://");
	const char *host = scheme ? scheme + 3 : url;
	const char *slash = strchr(host, '/');
	const char *at = strchr(host, '@');
	/* user[:password]@ before the path; scp-like "git@host:x" has no scheme
	 * and its user is no secret, so it stays. */
	if (scheme && at && (!slash || at < slash))
		snprintf(out, len, "%.*s%s", (int)(host - url), url, at + 1);
	else
		snprintf(out, len, "%s", url);
}

/* snprintf whose cut result is reported (false) rather than warned about:
 * paths here are bounded by PATH_MAX, and a cut one is simply not found. */
static bool fit(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static bool fit(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, len, fmt, ap);
	va_end(ap);
	return n >= 0 && (size_t)n < len;
}

static void trim(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
}

/* "<dir>/<name>" read and trimmed into buf. */
static bool read_in(const char *dir, const char *name, char *buf, size_t cap)
{
	char path[PATH_MAX + 256];
	if (!fit(path, sizeof path, "%s/%s", dir, name))
		return false;
	if (fs_read_prefix(path, buf, cap) < 0)
		return false;
	trim(buf);
	return true;
}

int runenv_git(const char *dir, struct runenv_git *out)
{
	memset(out, 0, sizeof *out);
	char cur[PATH_MAX], gitdir[PATH_MAX], common[PATH_MAX];
	fit(cur, sizeof cur, "%s", dir);
	char *text = malloc(RUNENV_MAX_FILE);
	if (!text)
		return TRACKD_ENOMEM;
	bool found = false;
	for (int depth = 0; depth < RUNENV_MAX_DEPTH && !found; depth++) {
		char probe[PATH_MAX + 8];
		fit(probe, sizeof probe, "%s/.git", cur);
		if (read_in(probe, "HEAD", text, RUNENV_MAX_FILE)) {
			fit(gitdir, sizeof gitdir, "%s", probe);
			found = true;
		} else if (fs_read_prefix(probe, text, RUNENV_MAX_FILE) > 0 &&
		           strncmp(text, "gitdir: ", 8) == 0) {
			/* A worktree or submodule: .git is a file naming the real dir. */
			trim(text);
			if (text[8] == '/')
				fit(gitdir, sizeof gitdir, "%s", text + 8);
			else
				fit(gitdir, sizeof gitdir, "%s/%s", cur, text + 8);
			found = true;
		}
		if (found || strcmp(cur, "/") == 0)
			break;
		char *slash = strrchr(cur, '/');
		if (!slash)
			break;
		if (slash == cur)
			cur[1] = '\0';
		else
			*slash = '\0';
	}
	if (!found) {
		free(text);
		return TRACKD_ENOENT;
	}
	/* Refs and config live in the common dir of a worktree. */
	fit(common, sizeof common, "%s", gitdir);
	if (read_in(gitdir, "commondir", text, RUNENV_MAX_FILE) && text[0]) {
		if (text[0] == '/')
			fit(common, sizeof common, "%s", text);
		else
			fit(common, sizeof common, "%s/%s", gitdir, text);
	}
	if (read_in(gitdir, "HEAD", text, RUNENV_MAX_FILE)) {
		if (strncmp(text, "ref: ", 5) == 0) {
			char ref[512];
			fit(ref, sizeof ref, "%s", text + 5);
			if (strncmp(ref, "refs/heads/", 11) == 0)
				fit(out->branch, sizeof out->branch, "%s", ref + 11);
			if (read_in(common, ref, text, RUNENV_MAX_FILE) ||
			    read_in(gitdir, ref, text, RUNENV_MAX_FILE)) {
				fit(out->commit, sizeof out->commit, "%.40s", text);
			} else if (read_in(common, "packed-refs", text, RUNENV_MAX_FILE)) {
				/* "<sha> <ref>" lines */
				char *save = NULL;
				for (char *l = strtok_r(text, "\n", &save); l;
				     l = strtok_r(NULL, "\n", &save)) {
					char *sp = strchr(l, ' ');
					if (sp && strcmp(sp + 1, ref) == 0 && sp - l == 40) {
						fit(out->commit, sizeof out->commit, "%.40s", l);
						break;
					}
				}
			}
		} else {
			fit(out->commit, sizeof out->commit, "%.40s", text); /* detached */
		}
	}
	if (read_in(common, "config", text, RUNENV_MAX_FILE)) {
		/* The url of [remote "origin"]. */
		bool in_origin = false;
		char *save = NULL;
		for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
			while (*l == ' ' || *l == '\t')
				l++;
			if (*l == '[') {
				in_origin = strncmp(l, "[remote \"origin\"]", 17) == 0;
				continue;
			}
			if (in_origin && strncmp(l, "url", 3) == 0) {
				char *eq = strchr(l, '=');
				if (!eq)
					continue;
				eq++;
				while (*eq == ' ')
					eq++;
				trim(eq);
				runenv_strip_credentials(eq, out->remote, sizeof out->remote);
				break;
			}
		}
	}
	free(text);
	return 0;
}

int runenv_argv(char *cmdline, size_t len, const char **argv, int *program)
{
	int argc = 0;
	*program = 0;
	if (len == 0)
		return 0;
	cmdline[len - 1] = '\0'; /* a cut last argument still ends */
	for (size_t i = 0; i < len && argc < RUNENV_MAX_ARGS; i += strlen(cmdline + i) + 1)
		argv[argc++] = cmdline + i;
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strncmp(base, "python", 6) == 0 && argc > 1 && argv[1][0] != '-')
		*program = 1;
	return argc;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* git's environment: the caller's, plus GIT_OPTIONAL_LOCKS=0 so that status
 * does not refresh (and lock) the index under a user's own git commands. */
static char **git_environment(void)
{
	size_t n = 0;
	while (environ && environ[n])
		n++;
	char **env = calloc(n + 2, sizeof *env);
	if (!env)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "GIT_OPTIONAL_LOCKS=", 19) != 0)
			env[k++] = environ[i];
	env[k++] = "GIT_OPTIONAL_LOCKS=0";
	env[k] = NULL;
	return env;
}

enum runenv_dirty runenv_git_dirty(const char *dir, int timeout_ms, const atomic_bool *abort)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return RUNENV_DIRTY_UNKNOWN;
	char **env = git_environment();
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	/* Its own group, so a kill reaches whatever git started too; default
	 * signal actions and mask, whatever the application set. */
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
	                                    POSIX_SPAWN_SETSIGDEF);
	char *const argv[] = {
	    "git", "-C", (char *)dir, "status", "--porcelain", "--untracked-files=no", NULL};
	pid_t pid = -1;
	int rv = env ? posix_spawnp(&pid, "git", &fa, &attr, argv, env) : ENOMEM;
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(env);
	close(fds[1]);
	if (rv != 0) { /* no git installed */
		close(fds[0]);
		return RUNENV_DIRTY_UNKNOWN;
	}
	int64_t deadline = mono_ms() + timeout_ms;
	size_t output = 0;
	bool eof = false, cut = false;
	while (!eof) {
		int64_t left = deadline - mono_ms();
		if (left <= 0 || (abort && atomic_load(abort))) {
			cut = true;
			break;
		}
		/* Short slices: an abort is noticed within one. */
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		int pr = poll(&p, 1, left < 20 ? (int)left : 20);
		if (pr < 0 && errno != EINTR)
			break;
		if (pr <= 0)
			continue;
		char chunk[4096];
		ssize_t r = read(fds[0], chunk, sizeof chunk);
		if (r > 0)
			output += (size_t)r;
		else if (r == 0 || errno != EINTR)
			eof = true;
	}
	close(fds[0]);
	int status = 0;
	pid_t w = 0;
	while (!cut && (w = waitpid(pid, &status, WNOHANG)) == 0) {
		if (mono_ms() >= deadline || (abort && atomic_load(abort))) {
			cut = true;
			break;
		}
		struct timespec ts = {0, 5 * 1000000};
		nanosleep(&ts, NULL);
	}
	if (cut) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		return RUNENV_DIRTY_UNKNOWN;
	}
	/* w < 0: the application reaps every child (SIGCHLD ignored or its own
	 * waitpid(-1)): git's answer cannot be told from its failure. */
	if (w != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return RUNENV_DIRTY_UNKNOWN;
	return output > 0 ? RUNENV_DIRTY : RUNENV_CLEAN;
}
