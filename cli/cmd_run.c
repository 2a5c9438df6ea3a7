/*
 * cmd_run.c — `trackctl run [--] COMMAND [ARG...]`: run a W&B script unchanged.
 *
 * Contract: COMMAND is exec'd (it replaces trackctl: same pid, signals and exit
 * status) with a directory holding a `wandb` shim package placed first on its
 * PYTHONPATH, so that `import wandb` in any Python program it starts imports
 * trackd's wandb module (trackd.wandb, client-shim/python). Nothing is
 * installed and no real `wandb` is touched: the shadowing exists only in the
 * environment of COMMAND and its children.
 *
 * The shim directory is written here, not shipped: one small file whose text is
 * below, kept per user (never in a shared /tmp, since Python executes what it
 * finds there):
 *   $XDG_RUNTIME_DIR/trackd/wandb-shim (when that runtime dir exists), else
 *   $XDG_STATE_HOME/trackd/wandb-shim, else $HOME/.local/state/trackd/wandb-shim.
 * Directories are created 0700; the shim directory must be the caller's and
 * not writable by others, else the command is refused. The file is replaced
 * atomically (written beside it, then renamed), so concurrent `trackctl run`s
 * never see a partial file.
 *
 * The shim needs the trackd Python package importable by the interpreter (an
 * installed package, or PYTHONPATH); when it is not, `import wandb` fails with
 * an ImportError saying so.
 *
 * Exit status: that of COMMAND; 2 usage; 1 when the shim cannot be written;
 * 126 / 127 when COMMAND cannot be executed / is not found (as env(1)).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHIM_SUBDIR "trackd/wandb-shim"

/* The `wandb` package of the shim directory: it replaces itself in
 * sys.modules by trackd.wandb, so `import wandb` and `wandb.x` are trackd's. */
static const char shim_source[] =
    "# Written by `trackctl run`: in the command it runs, `import wandb` is\n"
    "# trackd's wandb module (trackd.wandb), which records through the trackd agent.\n"
    "import sys\n"
    "\n"
    "try:\n"
    "    import trackd.wandb as _trackd_wandb\n"
    "except ImportError as _e:\n"
    "    raise ImportError(\"trackctl run: `import wandb` is trackd's wandb module, but \"\n"
    "                      \"this python cannot import the trackd package (\" + str(_e) +\n"
    "                      \"): install it (scripts/install.sh or python3-trackd) or put \"\n"
    "                      \"it on PYTHONPATH\") from _e\n"
    "sys.modules[__name__] = _trackd_wandb\n";

/* mkdir -p with mode 0700 for what it creates; `path` is modified in place
 * and restored. */
static int make_dirs(char *path)
{
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		int rc = mkdir(path, 0700);
		int err = errno;
		*p = c;
		if (rc != 0 && err != EEXIST) {
			errno = err;
			return -1;
		}
		if (c == '\0')
			return 0;
	}
}

/* The shim directory's path into `out` (PATH_MAX bytes); 0 or -1. */
static int shim_dir_path(char *out, size_t len)
{
	const char *runtime = getenv("XDG_RUNTIME_DIR");
	const char *state = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;

	/* A runtime dir that is not there (a session without one) is skipped:
	 * creating /run/user/UID is not ours to do. */
	if (runtime != NULL && runtime[0] == '/' && access(runtime, W_OK) == 0)
		n = snprintf(out, len, "%s/" SHIM_SUBDIR, runtime);
	else if (state != NULL && state[0] == '/')
		n = snprintf(out, len, "%s/" SHIM_SUBDIR, state);
	else if (home != NULL && home[0] == '/')
		n = snprintf(out, len, "%s/.local/state/" SHIM_SUBDIR, home);
	else {
		fprintf(stderr, "trackctl: run: none of XDG_RUNTIME_DIR, XDG_STATE_HOME, HOME "
		                "is set to an absolute path: nowhere to put the wandb shim\n");
		return -1;
	}
	if (n < 0 || (size_t)n >= len) {
		fprintf(stderr, "trackctl: run: the wandb shim's path is too long\n");
		return -1;
	}
	return 0;
}

/* Python runs what it finds in the directory: it must be ours alone. */
static int check_private(const char *dir)
{
	struct stat st;
	if (lstat(dir, &st) != 0) {
		fprintf(stderr, "trackctl: run: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0022) != 0) {
		fprintf(stderr,
		        "trackctl: run: %s is not a directory of yours that only you can "
		        "write to: refusing to put Python code there\n",
		        dir);
		return -1;
	}
	return 0;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes <dir>/wandb/__init__.py (atomically); 0 or -1 (reported). */
static int write_shim(const char *dir)
{
	char pkg[PATH_MAX], file[PATH_MAX], tmp[PATH_MAX];
	if (snprintf(pkg, sizeof pkg, "%s/wandb", dir) >= (int)sizeof pkg ||
	    snprintf(file, sizeof file, "%s/__init__.py", pkg) >= (int)sizeof file ||
	    snprintf(tmp, sizeof tmp, "%s/.__init__.py.%ld", pkg, (long)getpid()) >=
	        (int)sizeof tmp) {
		fprintf(stderr, "trackctl: run: the wandb shim's path is too long\n");
		return -1;
	}
	if (mkdir(pkg, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "trackctl: run: %s: %s\n", pkg, strerror(errno));
		return -1;
	}
	if (check_private(pkg) != 0)
		return -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "trackctl: run: %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	int rc = write_all(fd, shim_source, sizeof shim_source - 1);
	int err = errno;
	if (close(fd) != 0 && rc == 0) {
		rc = -1;
		err = errno;
	}
	if (rc == 0 && rename(tmp, file) != 0) {
		rc = -1;
		err = errno;
	}
	if (rc != 0) {
		unlink(tmp);
		fprintf(stderr, "trackctl: run: writing %s: %s\n", file, strerror(err));
		return -1;
	}
	return 0;
}

/* PYTHONPATH = shim dir, then what it was (an empty entry would mean the
 * current directory: none is added). */
static int prepend_pythonpath(const char *dir)
{
	const char *old = getenv("PYTHONPATH");
	size_t len = strlen(dir) + (old ? strlen(old) + 1 : 0) + 1;
	char *value = malloc(len);
	if (value == NULL) {
		fprintf(stderr, "trackctl: run: out of memory\n");
		return -1;
	}
	if (old != NULL && old[0] != '\0')
		snprintf(value, len, "%s:%s", dir, old);
	else
		snprintf(value, len, "%s", dir);
	int rc = setenv("PYTHONPATH", value, 1);
	free(value);
	if (rc != 0) {
		fprintf(stderr, "trackctl: run: setting PYTHONPATH: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

int cmd_run(int argc, char **argv)
{
	int first = 1;
	if (first < argc && strcmp(argv[first], "--") == 0)
		first++;
	else if (first < argc && argv[first][0] == '-')
		return cli_usage_error("run: unknown option '%s' (put the command after --)",
		                       argv[first]);
	if (first >= argc)
		return cli_usage_error("run: no command given");

	char dir[PATH_MAX];
	if (shim_dir_path(dir, sizeof dir) != 0)
		return 1;
	if (make_dirs(dir) != 0) {
		fprintf(stderr, "trackctl: run: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (check_private(dir) != 0 || write_shim(dir) != 0 || prepend_pythonpath(dir) != 0)
		return 1;

	fflush(NULL);
	execvp(argv[first], argv + first);
	int err = errno;
	fprintf(stderr, "trackctl: run: %s: %s\n", argv[first], strerror(err));
	return err == ENOENT ? 127 : 126;
}
