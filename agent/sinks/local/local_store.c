#include "local_store.h"
#include "store_layout.h"

#include "errors.h"

#include "trackd/v1/trackd.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const file_names[] = {
    [LOCAL_STORE_HISTORY] = HISTORY_FILE,   [LOCAL_STORE_CONSOLE] = CONSOLE_FILE,
    [LOCAL_STORE_CONFIG] = CONFIG_FILE,     [LOCAL_STORE_SUMMARY] = SUMMARY_FILE,
    [LOCAL_STORE_METADATA] = METADATA_FILE, [LOCAL_STORE_EVENTS] = EVENTS_FILE,
};

const char *local_store_file_name(enum local_store_file f)
{
	return (unsigned)f < sizeof file_names / sizeof *file_names ? file_names[f] : "?";
}

int local_store_runs_dir(const char *state_dir, char *out, size_t len)
{
	return snprintf(out, len, "%s/%s", state_dir, RUNS_SUBDIR) < (int)len ? TRACKD_OK
	                                                                      : TRACKD_EINVAL;
}

static int open_name(const char *run_dir, const char *name, int *fd)
{
	char path[4200];
	if (snprintf(path, sizeof path, "%s/%s", run_dir, name) >= (int)sizeof path)
		return TRACKD_EINVAL;
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	return *fd >= 0 ? TRACKD_OK : trackd_err_from_errno(errno);
}

int local_store_open(const char *run_dir, enum local_store_file f, int *fd)
{
	if ((unsigned)f >= sizeof file_names / sizeof *file_names)
		return TRACKD_EINVAL;
	return open_name(run_dir, file_names[f], fd);
}

int local_store_size(const char *run_dir, enum local_store_file f, uint64_t *size)
{
	if ((unsigned)f >= sizeof file_names / sizeof *file_names)
		return TRACKD_EINVAL;
	char path[4200];
	if (snprintf(path, sizeof path, "%s/%s", run_dir, file_names[f]) >= (int)sizeof path)
		return TRACKD_EINVAL;
	struct stat st;
	if (stat(path, &st) != 0)
		return trackd_err_from_errno(errno);
	*size = (uint64_t)st.st_size;
	return TRACKD_OK;
}

int local_store_load_run(const char *run_dir, struct run **out)
{
	int fd;
	int rv = open_name(run_dir, SNAPSHOT_FILE, &fd);
	if (rv)
		return rv;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rv = trackd_err_from_errno(errno);
		close(fd);
		return rv;
	}
	if (st.st_size > (off_t)LOCAL_STORE_SNAPSHOT_MAX_BYTES) {
		close(fd);
		return TRACKD_ETOOBIG;
	}
	size_t len = (size_t)st.st_size, got = 0;
	uint8_t *b = malloc(len ? len : 1);
	if (!b) {
		close(fd);
		return TRACKD_ENOMEM;
	}
	while (got < len) {
		ssize_t n = read(fd, b + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	rv = TRACKD_ECORRUPT; /* shorter than its size: replaced while read, or damaged */
	if (got == len) {
		Trackd__V1__RunSnapshot *snap = trackd__v1__run_snapshot__unpack(NULL, len, b);
		if (snap)
			rv = run_from_snapshot(snap, out);
		trackd__v1__run_snapshot__free_unpacked(snap, NULL);
	}
	free(b);
	return rv;
}

/* A run dir's name is run-YYYYMMDD_HHMMSS-<id> (run.h, dir_name). */
static bool names_run(const char *dirname, const char *id)
{
	size_t n = strlen(dirname), k = strlen(id);
	return strncmp(dirname, "run-", 4) == 0 && n > k + 1 && dirname[n - k - 1] == '-' &&
	       strcmp(dirname + n - k, id) == 0;
}

int local_store_find_in_project(const char *project_dir, const char *id, char *out, size_t len)
{
	DIR *d = opendir(project_dir);
	if (!d)
		return TRACKD_ENOENT;
	struct dirent *de;
	int rv = TRACKD_ENOENT;
	while ((de = readdir(d))) {
		if (names_run(de->d_name, id)) {
			rv = snprintf(out, len, "%s/%s", project_dir, de->d_name) < (int)len
			         ? TRACKD_OK
			         : TRACKD_EINVAL;
			break;
		}
	}
	closedir(d);
	return rv;
}

/* Calls fn for every <runs_dir>/<entity>/<project> dir; stops at non-zero. */
static int each_project(const char *runs_dir, int (*fn)(void *arg, const char *pdir), void *arg)
{
	DIR *de = opendir(runs_dir);
	if (!de)
		return TRACKD_OK;
	struct dirent *e;
	int rv = TRACKD_OK;
	while (rv == TRACKD_OK && (e = readdir(de))) {
		if (e->d_name[0] == '.')
			continue;
		char edir[4096];
		if (snprintf(edir, sizeof edir, "%s/%s", runs_dir, e->d_name) >= (int)sizeof edir)
			continue;
		DIR *dp = opendir(edir);
		if (!dp)
			continue;
		struct dirent *p;
		while (rv == TRACKD_OK && (p = readdir(dp))) {
			if (p->d_name[0] == '.')
				continue;
			char pdir[4096];
			if (snprintf(pdir, sizeof pdir, "%s/%s", edir, p->d_name) <
			    (int)sizeof pdir)
				rv = fn(arg, pdir);
		}
		closedir(dp);
	}
	closedir(de);
	return rv;
}

struct find_run {
	const char *id;
	char *out;
	size_t len;
};

static int find_in(void *arg, const char *pdir)
{
	struct find_run *f = arg;
	int rv = local_store_find_in_project(pdir, f->id, f->out, f->len);
	return rv == TRACKD_ENOENT ? TRACKD_OK : rv == TRACKD_OK ? 1 : rv;
}

int local_store_find_run(const char *runs_dir, const char *id, char *out, size_t len)
{
	struct find_run f = {.id = id, .out = out, .len = len};
	int rv = each_project(runs_dir, find_in, &f);
	return rv == 1 ? TRACKD_OK : rv == TRACKD_OK ? TRACKD_ENOENT : rv;
}

struct each_run {
	int (*fn)(void *arg, const char *run_dir);
	void *arg;
};

static int runs_in(void *arg, const char *pdir)
{
	struct each_run *e = arg;
	DIR *d = opendir(pdir);
	if (!d)
		return TRACKD_OK;
	struct dirent *de;
	int rv = TRACKD_OK;
	while (rv == TRACKD_OK && (de = readdir(d))) {
		if (strncmp(de->d_name, "run-", 4) != 0)
			continue;
		char dir[4096];
		if (snprintf(dir, sizeof dir, "%s/%s", pdir, de->d_name) < (int)sizeof dir)
			rv = e->fn(e->arg, dir);
	}
	closedir(d);
	return rv;
}

int local_store_each_run(const char *runs_dir, int (*fn)(void *arg, const char *run_dir), void *arg)
{
	struct each_run e = {.fn = fn, .arg = arg};
	return each_project(runs_dir, runs_in, &e);
}
