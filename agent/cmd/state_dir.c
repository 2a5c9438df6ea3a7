/* state_dir.c — see state_dir.h. */
#include "state_dir.h"

#include "errors.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fts.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long a refused agent waits for the holder's pid: the holder writes it
 * right after taking the lock. */
#define HOLDER_PID_WAIT_MS 1000

static long read_pid(int fd)
{
	char text[32];
	ssize_t n = pread(fd, text, sizeof text - 1, 0);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	long pid = strtol(text, NULL, 10);
	return pid > 0 ? pid : 0;
}

static long wait_holder_pid(int fd)
{
	for (int waited = 0;; waited += 50) {
		long pid = read_pid(fd);
		if (pid || waited >= HOLDER_PID_WAIT_MS)
			return pid;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

int state_dir_lock(const char *state_dir, int *fd_out, long *holder)
{
	char path[4096];
	*holder = 0;
	if (snprintf(path, sizeof path, "%s/" STATE_LOCK_FILE, state_dir) >= (int)sizeof path)
		return TRACKD_EINVAL;
	/* No O_TRUNC: a refused agent must leave the holder's pid in place. */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		int rv = trackd_err_from_errno(errno);
		log_error("cannot open the state dir's lock %s: %s", path, strerror(errno));
		return rv;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		log_error("the state dir's lock %s is not a regular file; refusing it", path);
		close(fd);
		return TRACKD_EINVAL;
	}
	while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EINTR)
			continue;
		int err = errno;
		if (err == EWOULDBLOCK) {
			*holder = wait_holder_pid(fd);
			close(fd);
			return TRACKD_EEXIST;
		}
		log_error("cannot lock %s: %s", path, strerror(err));
		close(fd);
		return trackd_err_from_errno(err);
	}
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_warn("cannot write the pid into %s: %s", path, strerror(errno));
	*fd_out = fd;
	return TRACKD_OK;
}

static bool open_to_others(const struct stat *st)
{
	return st->st_uid == geteuid() && (st->st_mode & 077) != 0;
}

/* Whether the state dir or an entry at its top (log/, runs/, wandb/…) is open
 * to group or others. Versions before the private store made these 0750 with
 * everything below them; this agent makes nothing so. So a store whose top is
 * private needs no walk, and a start does not stat every file of every run. */
static bool top_open_to_others(const char *state_dir)
{
	DIR *d = opendir(state_dir);
	struct stat st;
	if (!d)
		return true; /* let the walk report it */
	bool open = fstat(dirfd(d), &st) != 0 || open_to_others(&st);
	struct dirent *e;
	while (!open && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		open = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		       !S_ISLNK(st.st_mode) && open_to_others(&st);
	}
	closedir(d);
	return open;
}

int state_dir_make_private(const char *state_dir)
{
	if (!top_open_to_others(state_dir))
		return TRACKD_OK;
	char *const roots[] = {(char *)state_dir, NULL};
	/* FTS_PHYSICAL: a planted symlink is not followed; FTS_XDEV: nor a mount. */
	FTS *fts = fts_open(roots, FTS_PHYSICAL | FTS_XDEV | FTS_NOCHDIR, NULL);
	if (!fts) {
		log_error("cannot walk the state dir %s: %s", state_dir, strerror(errno));
		return trackd_err_from_errno(errno);
	}
	unsigned changed = 0, failed = 0;
	FTSENT *e;
	while ((e = fts_read(fts)) != NULL) {
		/* FTS_D: a directory on the way in (FTS_DP, the way out, is skipped). */
		if (e->fts_info != FTS_F && e->fts_info != FTS_D)
			continue;
		const struct stat *st = e->fts_statp;
		if (!open_to_others(st))
			continue;
		if (chmod(e->fts_accpath, st->st_mode & 07700) == 0) {
			changed++;
		} else if (failed++ == 0) {
			log_error("cannot make %s private (mode %03o): %s", e->fts_path,
			          (unsigned)(st->st_mode & 0777), strerror(errno));
		}
	}
	fts_close(fts);
	if (changed)
		log_warn("state dir %s: %u files and directories were open to group or others "
		         "(an older version's modes); now private to uid %lu",
		         state_dir, changed, (unsigned long)geteuid());
	return failed ? TRACKD_EIO : TRACKD_OK;
}
