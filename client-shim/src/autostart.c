/* autostart.c — see autostart.h. */
#include "autostart.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "nng_close.h"
#include "trackd/v1/limits.h"

#define LOG_ROTATE_BYTES (1 << 20)

/* Request{protocol_version} and nothing else: the agent's ping (ingest.c),
 * answered with an empty Reply by any agent, busy or not. */
static const uint8_t ping_request[] = {0x08, TRACKD_PROTOCOL_VERSION};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

__attribute__((format(printf, 3, 4))) static void say(char *why, size_t len, const char *fmt, ...)
{
	if (why == NULL || len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

bool tdi_agent_probe(const char *url, int timeout_ms)
{
	nng_socket s;
	nng_msg *reply;
	bool answered = false;

	if (nng_req0_open(&s) != 0)
		return false;
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, timeout_ms);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, timeout_ms);
	nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 1 << 16);
	/* A synchronous dial: where nothing listens it fails at once. */
	if (nng_dial(s, url, NULL, 0) == 0 &&
	    nng_send(s, (void *)ping_request, sizeof(ping_request), 0) == 0 &&
	    nng_recvmsg(s, &reply, 0) == 0) {
		answered = true;
		nng_msg_free(reply);
	}
	(void)nng_close_bounded(s, timeout_ms); /* nng_close.h: may hang */
	return answered;
}

/* ---- paths ----------------------------------------------------------------- */

static const char *absolute_env(const char *name)
{
	const char *v = getenv(name);
	return v != NULL && v[0] == '/' ? v : NULL;
}

/* The private agent's socket directory (the agent's {runtime} default). */
static int private_dir(char *buf, size_t len)
{
	const char *xdg = absolute_env("XDG_RUNTIME_DIR");
	int n = xdg ? snprintf(buf, len, "%s/trackd", xdg)
	            : snprintf(buf, len, "/tmp/trackd-%lu", (unsigned long)getuid());
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* The agent's {state} default: where its log goes. */
static int state_dir(char *buf, size_t len)
{
	const char *dir = absolute_env("XDG_STATE_HOME");
	int n;
	if (dir != NULL) {
		n = snprintf(buf, len, "%s/trackd", dir);
	} else {
		struct passwd pw, *res = NULL;
		char pwbuf[4096];
		if ((dir = absolute_env("HOME")) == NULL) {
			if (getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &res) != 0 || !res ||
			    !pw.pw_dir || pw.pw_dir[0] != '/')
				return -1;
			dir = pw.pw_dir;
		}
		n = snprintf(buf, len, "%s/.local/state/trackd", dir);
	}
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int mkdirs(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(buf, mode) != 0 && errno != EEXIST ? -1 : 0;
}

static bool executable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* The agent executable (see autostart.h for the order). */
static int find_agent(char *out, size_t len, char *why, size_t why_len)
{
	const char *env = getenv("TRACKD_AGENT_BIN");
	if (env != NULL && env[0] != '\0') {
		if (!executable(env) || snprintf(out, len, "%s", env) >= (int)len) {
			say(why, why_len, "TRACKD_AGENT_BIN=%s is not an executable file", env);
			return -1;
		}
		return 0;
	}
	const char *path = getenv("PATH");
	for (const char *p = path; p != NULL && *p;) {
		const char *end = strchr(p, ':');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		/* An empty or relative entry would depend on the training's cwd. */
		if (n > 0 && p[0] == '/' &&
		    snprintf(out, len, "%.*s/trackd", (int)n, p) < (int)len && executable(out))
			return 0;
		p = end ? end + 1 : NULL;
	}
	Dl_info info;
	if (dladdr((void *)find_agent, &info) != 0 && info.dli_fname != NULL &&
	    info.dli_fname[0] == '/') {
		static const char *const rel[] = {"../bin/trackd", "../../bin/trackd",
		                                  "../libexec/trackd/trackd"};
		const char *slash = strrchr(info.dli_fname, '/');
		for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			if (snprintf(out, len, "%.*s/%s", (int)(slash - info.dli_fname),
			             info.dli_fname, rel[i]) < (int)len &&
			    executable(out))
				return 0;
		}
	}
	if (executable("/usr/bin/trackd") && snprintf(out, len, "/usr/bin/trackd") < (int)len)
		return 0;
	say(why, why_len,
	    "no trackd executable found (not on PATH, not next to libtrackd; "
	    "set TRACKD_AGENT_BIN)");
	return -1;
}

/* <state dir>/trackd.log for appending, close-on-exec, or -1. */
static int open_log(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 16], old[PATH_MAX + 16];
	struct stat st;
	if (state_dir(dir, sizeof(dir)) != 0 || mkdirs(dir, 0700) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/trackd.log", dir);
	if (stat(path, &st) == 0 && st.st_size > LOG_ROTATE_BYTES) {
		snprintf(old, sizeof(old), "%s/trackd.log.1", dir);
		(void)rename(path, old);
	}
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
}

/* fd moved to 10 or above (close-on-exec), so the child's dup2 onto 0..3
 * never meets it; the original is closed. */
static int lift(int fd)
{
	if (fd < 0)
		return -1;
	int hi = fcntl(fd, F_DUPFD_CLOEXEC, 10);
	close(fd);
	return hi;
}

/* Runs `bin --user --listen url` detached (see autostart.h). Between fork and
 * exec only async-signal-safe calls: the training process may have threads. */
static int spawn_agent(const char *bin, const char *url, char *why, size_t why_len)
{
	char *const argv[] = {(char *)bin, "--user", "--listen", (char *)url, NULL};
	int nullfd = lift(open("/dev/null", O_RDWR | O_CLOEXEC));
	int logfd = lift(open_log());
	int pfd[2] = {-1, -1};
	long maxfd = sysconf(_SC_OPEN_MAX);
	if (maxfd < 0 || maxfd > 65536)
		maxfd = 65536;

	if (nullfd < 0 || pipe2(pfd, O_CLOEXEC) != 0 || (pfd[0] = lift(pfd[0])) < 0 ||
	    (pfd[1] = lift(pfd[1])) < 0) {
		say(why, why_len, "cannot prepare to start %s: %s", bin, strerror(errno));
		goto fail;
	}
	if (logfd < 0)
		logfd = nullfd;

	pid_t pid = fork();
	if (pid == 0) {
		if (setsid() < 0)
			_exit(1);
		pid_t g = fork();
		if (g != 0)
			_exit(g < 0 ? 1 : 0);
		/* The agent: not our child, in a session of its own. */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		struct sigaction dfl;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		for (int sig = 1; sig < NSIG; sig++)
			(void)sigaction(sig, &dfl, NULL);
		/* No hangup can end it, even before it blocks SIGHUP to take it as
		 * "reload" (Linux still queues an ignored signal that is blocked). */
		dfl.sa_handler = SIG_IGN;
		(void)sigaction(SIGHUP, &dfl, NULL);
		if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 ||
		    dup2(pfd[1], 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
			_exit(126);
		/* Nothing of the training process stays open in the agent. */
		if (close_range(4, ~0U, 0) != 0) { /* ENOSYS before Linux 5.9 */
			for (int fd = 4; fd < maxfd; fd++)
				close(fd);
		}
		if (chdir("/") != 0)
			_exit(126);
		umask(077);
		execv(bin, argv);
		int e = errno;
		ssize_t w = write(3, &e, sizeof(e));
		(void)w;
		_exit(127);
	}
	int fork_errno = errno;
	close(pfd[1]);
	pfd[1] = -1;
	if (pid < 0) {
		say(why, why_len, "cannot fork to start %s: %s", bin, strerror(fork_errno));
		goto fail;
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	/* EOF: the agent's end of the pipe was closed by a successful exec. */
	int e = 0;
	ssize_t n;
	while ((n = read(pfd[0], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	close(pfd[0]);
	pfd[0] = -1;
	if (n == (ssize_t)sizeof(e)) {
		say(why, why_len, "cannot execute %s: %s", bin, strerror(e));
		goto fail;
	}
	if (logfd != nullfd)
		close(logfd);
	close(nullfd);
	return 0;
fail:
	if (logfd >= 0 && logfd != nullfd)
		close(logfd);
	if (nullfd >= 0)
		close(nullfd);
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	return -1;
}

/* ---- starting ------------------------------------------------------------- */

/* Per process: when the last start was attempted, and until when not to try
 * again after a failure. */
static _Atomic int64_t last_spawn_ms = INT64_MIN / 2;
static _Atomic int64_t failed_until_ms = INT64_MIN / 2;
static char last_failure[256];
static pthread_mutex_t failure_mu = PTHREAD_MUTEX_INITIALIZER;

static bool opted_out(void)
{
	const char *v = getenv("TRACKD_NO_AUTOSTART");
	return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static void note_failure(const char *what)
{
	pthread_mutex_lock(&failure_mu);
	snprintf(last_failure, sizeof(last_failure), "%s", what);
	pthread_mutex_unlock(&failure_mu);
	atomic_store(&failed_until_ms, mono_ms() + TDI_AUTOSTART_BACKOFF_MS);
}

bool tdi_agent_absent(const char *url)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strncmp(url, "ipc://", 6) != 0 || strlen(url + 6) >= sizeof(sa.sun_path))
		return false;
	memcpy(sa.sun_path, url + 6, strlen(url + 6) + 1);
	struct stat st;
	if (stat(sa.sun_path, &st) != 0)
		return errno == ENOENT;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	int rv = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int err = errno;
	close(fd);
	return rv != 0 && (err == ENOENT || err == ECONNREFUSED);
}

bool tdi_agent_can_start(void)
{
	return !opted_out() && mono_ms() >= atomic_load(&failed_until_ms);
}

bool tdi_agent_ensure(const char *url, int wait_ms, char *why, size_t why_len)
{
	char bin[PATH_MAX], err[384] = "";

	if (tdi_agent_probe(url, TDI_PROBE_TIMEOUT_MS))
		return true;
	if (opted_out()) {
		say(why, why_len, "no agent answers at %s (TRACKD_NO_AUTOSTART is set)", url);
		return false;
	}
	int64_t now = mono_ms();
	if (now < atomic_load(&failed_until_ms)) {
		pthread_mutex_lock(&failure_mu);
		say(why, why_len, "no agent answers at %s; starting one failed a moment ago: %s",
		    url, last_failure);
		pthread_mutex_unlock(&failure_mu);
		return false;
	}
	/* Another thread of this process started one just now: wait for it. */
	int64_t last = atomic_load(&last_spawn_ms);
	if (now - last >= TDI_AUTOSTART_RETRY_MS &&
	    atomic_compare_exchange_strong(&last_spawn_ms, &last, now)) {
		if (find_agent(bin, sizeof(bin), err, sizeof(err)) != 0 ||
		    spawn_agent(bin, url, err, sizeof(err)) != 0) {
			note_failure(err);
			say(why, why_len, "no agent answers at %s and none could be started: %s",
			    url, err);
			return false;
		}
	}
	int64_t deadline = now + wait_ms;
	while (mono_ms() < deadline) {
		if (tdi_agent_probe(url, TDI_PROBE_TIMEOUT_MS))
			return true;
		sleep_ms(50);
	}
	if (wait_ms > 0) {
		char state[PATH_MAX];
		if (state_dir(state, sizeof(state)) != 0)
			snprintf(state, sizeof(state), "the agent's state dir");
		snprintf(err, sizeof(err),
		         "the agent started did not answer within %d ms (see %.200s/trackd.log)",
		         wait_ms, state);
		note_failure(err);
		say(why, why_len, "no agent answers at %s: %s", url, err);
	}
	return false;
}

/* ---- lookup --------------------------------------------------------------- */

/* Whether the private socket's directory is safe to trust: missing (the agent
 * creates it), or a real directory of ours that nobody else may write to. */
static int check_private_dir(const char *dir, char *why, size_t why_len)
{
	struct stat st;
	if (lstat(dir, &st) != 0)
		return errno == ENOENT ? 0
		                       : (say(why, why_len, "%s: %s", dir, strerror(errno)), -1);
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 022) != 0) {
		say(why, why_len,
		    "%s is not a private directory of uid %lu (owner %lu, mode %03o): refusing an "
		    "agent there; set XDG_RUNTIME_DIR or TRACKD_SOCKET",
		    dir, (unsigned long)getuid(), (unsigned long)st.st_uid,
		    (unsigned)(st.st_mode & 0777));
		return -1;
	}
	return 0;
}

int tdi_agent_locate(const char *given, bool autostart, char *url, size_t len,
                     struct tdi_agent_where *w)
{
	char dir[PATH_MAX];
	int n;

	memset(w, 0, sizeof(*w));
	if (given == NULL || given[0] == '\0')
		given = getenv("TRACKD_SOCKET");
	if (given != NULL && given[0] != '\0') {
		w->kind = TDI_AGENT_EXPLICIT;
		if ((n = snprintf(url, len, "%s", given)) < 0 || (size_t)n >= len) {
			say(w->why, sizeof(w->why), "agent address longer than %zu bytes", len - 1);
			return -1;
		}
		return 0;
	}
	const char *sys = getenv("TRACKD_SYSTEM_SOCKET");
	if (sys == NULL || sys[0] == '\0')
		sys = TDI_SYSTEM_SOCKET_URL;
	if (strlen(sys) < len && tdi_agent_probe(sys, TDI_PROBE_TIMEOUT_MS)) {
		w->kind = TDI_AGENT_SYSTEM;
		w->answers = true;
		snprintf(url, len, "%s", sys);
		return 0;
	}
	w->kind = TDI_AGENT_PRIVATE;
	if (private_dir(dir, sizeof(dir)) != 0 ||
	    (n = snprintf(url, len, "ipc://%s/trackd.sock", dir)) < 0 || (size_t)n >= len) {
		say(w->why, sizeof(w->why), "the private agent's address is too long");
		return -1;
	}
	if (check_private_dir(dir, w->why, sizeof(w->why)) != 0)
		return -1;
	if (tdi_agent_probe(url, TDI_PROBE_TIMEOUT_MS)) {
		w->answers = true;
		return 0;
	}
	if (!autostart) {
		say(w->why, sizeof(w->why), "no agent answers at %s", url);
		return 0;
	}
	w->answers = w->started =
	    tdi_agent_ensure(url, TDI_AUTOSTART_WAIT_MS, w->why, sizeof(w->why));
	w->start_failed = !w->answers && !opted_out();
	return 0;
}
