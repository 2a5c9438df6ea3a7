/*
 * run_file_read.c — one piece of a run file, verified first (run_file_read.h).
 */
#include "run_file_read.h"

#include "blobs.h"
#include "errors.h"
#include "run_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void run_file_verified_init(struct run_file_verified *v)
{
	memset(v, 0, sizeof *v);
	pthread_mutex_init(&v->mu, NULL);
}

void run_file_verified_fini(struct run_file_verified *v)
{
	pthread_mutex_destroy(&v->mu);
}

static int64_t ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

static bool same_file(const struct run_file_verified_slot *e, const struct stat *st,
                      const uint8_t digest[32])
{
	return e->used && e->dev == st->st_dev && e->ino == st->st_ino &&
	       e->size == (uint64_t)st->st_size && e->mtime_ns == ns(&st->st_mtim) &&
	       e->ctime_ns == ns(&st->st_ctim) && memcmp(e->digest, digest, 32) == 0;
}

static bool verified_before(struct run_file_verified *v, const struct stat *st,
                            const uint8_t digest[32])
{
	if (!v)
		return false;
	bool found = false;
	pthread_mutex_lock(&v->mu);
	for (size_t i = 0; i < RUN_FILE_VERIFIED_SLOTS && !found; i++)
		if (same_file(&v->slot[i], st, digest)) {
			v->slot[i].used = ++v->tick;
			found = true;
		}
	pthread_mutex_unlock(&v->mu);
	return found;
}

static void remember_verified(struct run_file_verified *v, const struct stat *st,
                              const uint8_t digest[32])
{
	if (!v)
		return;
	pthread_mutex_lock(&v->mu);
	struct run_file_verified_slot *e = &v->slot[0];
	for (size_t i = 1; i < RUN_FILE_VERIFIED_SLOTS; i++)
		if (v->slot[i].used < e->used)
			e = &v->slot[i];
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	e->size = (uint64_t)st->st_size;
	e->mtime_ns = ns(&st->st_mtim);
	e->ctime_ns = ns(&st->st_ctim);
	memcpy(e->digest, digest, 32);
	e->used = ++v->tick;
	pthread_mutex_unlock(&v->mu);
}

static int open_errno(int e)
{
	return e == ELOOP || e == ENOTDIR ? TRACKD_ESYS : trackd_err_from_errno(e);
}

/* Opens name under files_fd one component at a time, never following a
 * symlink; *fd is the file's, read-only. */
static int open_under(int files_fd, const char *name, int *fd)
{
	char part[TRACKD_MAX_FILE_NAME_PART + 1];
	int dir = files_fd;
	const char *p = name;
	int rv = TRACKD_OK;
	for (;;) {
		size_t n = strcspn(p, "/");
		memcpy(part, p, n); /* files_name_valid bounds n */
		part[n] = '\0';
		bool last = p[n] == '\0';
		int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last ? O_NONBLOCK : O_DIRECTORY);
		int next = openat(dir, part, flags);
		int e = errno;
		if (dir != files_fd)
			close(dir);
		if (next < 0) {
			rv = open_errno(e);
			break;
		}
		if (last) {
			*fd = next;
			break;
		}
		dir = next;
		p += n + 1;
	}
	return rv;
}

int run_file_read(int files_fd, const char *name, const uint8_t digest[32], uint64_t size,
                  uint64_t offset, uint64_t length, struct run_file_verified *cache, uint8_t **data,
                  size_t *len, char *err, size_t errlen)
{
	*data = NULL;
	*len = 0;
	if (!name || !files_name_valid(name, strlen(name))) {
		snprintf(err, errlen, "not a run file name (relative to files/, no '..')");
		return TRACKD_EINVAL;
	}
	if (length > TRACKD_RUN_FILE_READ_MAX) {
		snprintf(err, errlen, "length %llu is over the most one read gives (%u bytes)",
		         (unsigned long long)length, TRACKD_RUN_FILE_READ_MAX);
		return TRACKD_EINVAL;
	}
	if (offset > size) {
		snprintf(err, errlen, "offset %llu is past the file's size (%llu)",
		         (unsigned long long)offset, (unsigned long long)size);
		return TRACKD_EINVAL;
	}
	if (length == 0)
		length = TRACKD_RUN_FILE_READ_MAX;
	int fd = -1;
	int rv = open_under(files_fd, name, &fd);
	if (rv) {
		snprintf(err, errlen, "cannot open files/%s: %s", name,
		         rv == TRACKD_ESYS ? "a symlink or non-directory on the way"
		                           : trackd_strerror(rv));
		return rv;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rv = TRACKD_EIO;
	} else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
		rv = TRACKD_ECORRUPT;
	} else if (!verified_before(cache, &st, digest)) {
		uint8_t got[32];
		rv = blobs_sha256_fd(fd, got);
		if (!rv && memcmp(got, digest, 32) != 0)
			rv = TRACKD_ECORRUPT;
		if (!rv)
			remember_verified(cache, &st, digest);
	}
	uint64_t want = size - offset < length ? size - offset : length;
	uint8_t *buf = NULL;
	if (!rv && want && !(buf = malloc(want)))
		rv = TRACKD_ENOMEM;
	for (size_t got = 0; !rv && got < want;) {
		ssize_t n = pread(fd, buf + got, want - got, (off_t)(offset + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) /* shorter than fstat said: changed under us */
			rv = n < 0 ? TRACKD_EIO : TRACKD_ECORRUPT;
		else
			got += (size_t)n;
	}
	close(fd);
	if (rv) {
		free(buf);
		if (rv == TRACKD_ECORRUPT)
			snprintf(err, errlen,
			         "files/%s is corrupt: its content is not the one recorded "
			         "(size or SHA-256)",
			         name);
		else
			snprintf(err, errlen, "cannot read files/%s: %s", name,
			         trackd_strerror(rv));
		return rv;
	}
	*data = buf;
	*len = (size_t)want;
	return TRACKD_OK;
}
