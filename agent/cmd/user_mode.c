/* user_mode.c — see user_mode.h. */
#include "user_mode.h"

#include "clock.h"
#include "errors.h"
#include "log.h"
#include "paths.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *user_mode_config_file(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	const char *home = getenv("HOME");
	int n;
	if (xdg && xdg[0] == '/')
		n = snprintf(buf, len, "%s/trackd/trackd.yaml", xdg);
	else if (home && home[0] == '/')
		n = snprintf(buf, len, "%s/.config/trackd/trackd.yaml", home);
	else
		return NULL;
	if (n < 0 || (size_t)n >= len || access(buf, F_OK) != 0)
		return NULL;
	return buf;
}

/* The directory of the socket in an ipc:// URL. */
static int socket_dir(const char *url, char *dir, size_t len)
{
	const char *path = url + strlen("ipc://");
	const char *slash = strrchr(path, '/');
	if (!slash || slash == path || (size_t)(slash - path) >= len)
		return TRACKD_EINVAL;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	return TRACKD_OK;
}

/* Creates `dir` (0700, parents too) or accepts it if it is a directory of ours
 * with no group or other access; a too-open directory of ours is tightened. */
static int private_dir(const char *what, const char *dir)
{
	int rv = mkdir_parents(dir, 0700);
	if (rv != 0) {
		log_error("--user: cannot create the %s %s: %s", what, dir, trackd_strerror(rv));
		return -1;
	}
	struct stat st;
	if (lstat(dir, &st) != 0) {
		log_error("--user: %s %s: %s", what, dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_error("--user: the %s %s is not a directory (a symbolic link?); refusing it",
		          what, dir);
		return -1;
	}
	if (st.st_uid != geteuid()) {
		log_error("--user: the %s %s belongs to uid %lu, not to uid %lu; refusing it "
		          "(its owner could receive this user's runs)",
		          what, dir, (unsigned long)st.st_uid, (unsigned long)geteuid());
		return -1;
	}
	if ((st.st_mode & 077) != 0) {
		if (chmod(dir, 0700) != 0) {
			log_error("--user: the %s %s has mode %03o and cannot be made private: %s",
			          what, dir, (unsigned)(st.st_mode & 0777), strerror(errno));
			return -1;
		}
		log_warn("--user: the %s %s had mode %03o; now 0700", what, dir,
		         (unsigned)(st.st_mode & 0777));
	}
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The pid a lock holder wrote into its lock file, 0 if none readable. */
static long holder_pid(int fd)
{
	char text[32];
	ssize_t n = pread(fd, text, sizeof text - 1, 0);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	return strtol(text, NULL, 10);
}

enum lock_result { LOCK_TAKEN, LOCK_SERVED, LOCK_FAILED };

/* Takes an exclusive flock on `path` for the process's life and writes our pid
 * in it. While another process holds it: if an agent answers at `url`, that
 * one serves the user (LOCK_SERVED); otherwise the holder is starting or
 * exiting, so try again until the deadline. */
static enum lock_result take_lock(const char *path, const char *url, int64_t deadline_us,
                                  int *fd_out)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	struct stat st;
	if (fd < 0) {
		log_error("--user: cannot open the lock %s: %s", path, strerror(errno));
		return LOCK_FAILED;
	}
	if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || !S_ISREG(st.st_mode)) {
		log_error("--user: the lock %s is not a file of uid %lu; refusing it", path,
		          (unsigned long)geteuid());
		close(fd);
		return LOCK_FAILED;
	}
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			log_error("--user: cannot lock %s: %s", path, strerror(errno));
			close(fd);
			return LOCK_FAILED;
		}
		if (ingest_probe(url, 500)) {
			log_info("another agent (pid %ld, holding %s) serves %s; exiting",
			         holder_pid(fd), path, url);
			close(fd);
			return LOCK_SERVED;
		}
		if (clock_mono_us() >= deadline_us) {
			log_error("--user: %s is held by pid %ld, which does not answer on %s; "
			          "giving up",
			          path, holder_pid(fd), url);
			close(fd);
			return LOCK_FAILED;
		}
		sleep_ms(100);
	}
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_warn("--user: cannot write the pid into %s: %s", path, strerror(errno));
	*fd_out = fd;
	return LOCK_TAKEN;
}

enum user_mode_claim user_mode_claim(struct user_mode *um, const struct config *cfg)
{
	*um = (struct user_mode){
	    .socket_lock_fd = -1, .state_lock_fd = -1, .idle_exit_ms = cfg->idle_exit_ms};
	if ((cfg->socket_mode & 077) != 0) {
		log_error("--user: socket_mode %04o lets other users connect; a private agent's "
		          "socket must be 0600 or stricter",
		          (unsigned)cfg->socket_mode);
		return USER_MODE_FAILED;
	}
	if (cfg->access.group[0] != '\0') {
		log_error("--user: access.group must be empty (\"%s\" given): only this user may "
		          "reach a private agent",
		          cfg->access.group);
		return USER_MODE_FAILED;
	}
	char dir[PATH_MAX], path[PATH_MAX + 32];
	if (socket_dir(cfg->listen, dir, sizeof dir) != 0) {
		log_error("--user: %s: the socket must be in a directory of its own", cfg->listen);
		return USER_MODE_FAILED;
	}
	if (private_dir("socket directory", dir) != 0 ||
	    private_dir("state dir", cfg->state_dir) != 0)
		return USER_MODE_FAILED;
	int64_t deadline = clock_mono_us() + (int64_t)USER_MODE_LOCK_WAIT_MS * 1000;
	/* The socket's lock first: losing the start race is decided there. */
	snprintf(path, sizeof path, "%s/trackd.lock", dir);
	enum lock_result r = take_lock(path, cfg->listen, deadline, &um->socket_lock_fd);
	if (r == LOCK_TAKEN) {
		snprintf(path, sizeof path, "%s/agent.lock", cfg->state_dir);
		r = take_lock(path, cfg->listen, deadline, &um->state_lock_fd);
	}
	if (r != LOCK_TAKEN) {
		user_mode_release(um);
		return r == LOCK_SERVED ? USER_MODE_SERVED : USER_MODE_FAILED;
	}
	if (um->idle_exit_ms)
		log_info("private agent of uid %lu: exits after %llu ms idle",
		         (unsigned long)geteuid(), (unsigned long long)um->idle_exit_ms);
	return USER_MODE_CLAIMED;
}

const char *user_mode_busy(ingest *in, local_sink *sink, wandb_sink *wandb)
{
	if (!in || !sink)
		return "starting";
	struct ingest_stats is;
	ingest_get_stats(in, &is);
	struct local_sink_stats ls;
	local_sink_get_stats(sink, &ls);
	if (is.clients_connected > 0)
		return "a client is connected";
	if (ls.runs_active > 0)
		return "a run is running";
	if (ls.backlog > 0)
		return "the local sink has records to apply";
	if (wandb) {
		struct wandb_sink_stats ws;
		wandb_sink_get_stats(wandb, &ws);
		if (ws.backlog > 0 || ws.runs_uploading > 0 || ws.runs_retrying > 0)
			return "the wandb sink has records to upload";
	}
	return NULL;
}

bool user_mode_idle_over(struct user_mode *um, const char *busy, int64_t last_client_us,
                         int64_t now_us)
{
	if (busy != um->busy_reason) {
		log_debug("idle check: %s", busy ? busy : "nothing pending");
		um->busy_reason = busy;
	}
	if (um->idle_exit_ms == 0 || busy) {
		um->idle_since_us = 0;
		return false;
	}
	if (um->idle_since_us == 0)
		um->idle_since_us = now_us;
	/* A client that came and went between two checks was never seen busy. */
	if (last_client_us > um->idle_since_us)
		um->idle_since_us = last_client_us;
	return now_us - um->idle_since_us >= (int64_t)um->idle_exit_ms * 1000;
}

void user_mode_release(struct user_mode *um)
{
	if (um->state_lock_fd >= 0)
		close(um->state_lock_fd);
	if (um->socket_lock_fd >= 0)
		close(um->socket_lock_fd);
	um->state_lock_fd = um->socket_lock_fd = -1;
}
