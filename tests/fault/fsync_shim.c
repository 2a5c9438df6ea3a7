/*
 * fsync_shim.so — an LD_PRELOAD library for simulating power loss and failing
 * disks under a real agent (tests/fault, RELIABILITY.md R2 and R5).
 *
 * Environment:
 *   FSYNC_SHIM_LOG=PATH     after every successful fsync()/fdatasync() of a
 *                           regular file, appends one line "<dev> <ino> <size>\n"
 *                           (the file's size when the sync began: everything up
 *                           to it is on stable storage). One write(2) on an
 *                           O_APPEND descriptor per line, so lines from several
 *                           threads never interleave and survive a kill -9.
 *                           Files are named by inode, not path: segments are
 *                           synced under a temporary name and renamed.
 *   FSYNC_SHIM_FAIL=PATH    while PATH exists, fsync()/fdatasync() of a regular
 *                           file whose name ends in FSYNC_SHIM_FAIL_SUFFIX
 *                           (default ".seg") fail with EIO without syncing, as a
 *                           disk that lost the write would.
 *   FSYNC_SHIM_HANG=PATH    while PATH exists, fsync()/fdatasync() of such a
 *                           file blocks (polling every 10 ms) before syncing, as
 *                           a disk that stopped answering would; the call goes
 *                           on normally once PATH is removed (R15).
 *
 * A test reads the log after killing the agent, cuts every file back to the
 * last size recorded for its inode (0 if never synced) and restarts: that is
 * what a power cut leaves of a file when the kernel wrote back nothing more.
 */
#include <dlfcn.h> /* RTLD_NEXT: _GNU_SOURCE comes from trackd_warnings() */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef int (*sync_fn)(int);

static int log_fd(void)
{
	/* Opened once per process; the race of two first calls only costs an
	 * extra descriptor. */
	static int fd = -2;
	if (fd == -2) {
		const char *path = getenv("FSYNC_SHIM_LOG");
		fd = path && *path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)
		                   : -1;
	}
	return fd;
}

static int name_matches(int fd)
{
	const char *suffix = getenv("FSYNC_SHIM_FAIL_SUFFIX");
	char link[64], path[4096];
	if (!suffix)
		suffix = ".seg";
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof path - 1);
	if (n < 0)
		return 0;
	path[n] = '\0';
	size_t sl = strlen(suffix);
	return (size_t)n >= sl && strcmp(path + n - sl, suffix) == 0;
}

static int shim_sync(int fd, const char *name)
{
	sync_fn real = (sync_fn)dlsym(RTLD_NEXT, name);
	struct stat st;
	/* The size before the call: whatever was written before the sync began is
	 * covered by it; bytes appended by another thread meanwhile may not be. */
	int regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	const char *fail = getenv("FSYNC_SHIM_FAIL");
	const char *hang = getenv("FSYNC_SHIM_HANG");

	if (regular && hang && *hang && access(hang, F_OK) == 0 && name_matches(fd)) {
		const struct timespec poll = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
		while (access(hang, F_OK) == 0)
			nanosleep(&poll, NULL);
	}

	if (regular && fail && *fail && access(fail, F_OK) == 0 && name_matches(fd)) {
		errno = EIO;
		return -1;
	}
	int rc = real(fd);
	if (rc == 0 && regular && log_fd() >= 0) {
		char line[96];
		int len = snprintf(line, sizeof line, "%ju %ju %jd\n", (uintmax_t)st.st_dev,
		                   (uintmax_t)st.st_ino, (intmax_t)st.st_size);
		if (write(log_fd(), line, (size_t)len) != len)
			abort(); /* a test that cannot record must not pass */
	}
	return rc;
}

int fsync(int fd)
{
	return shim_sync(fd, "fsync");
}

int fdatasync(int fd)
{
	return shim_sync(fd, "fdatasync");
}
