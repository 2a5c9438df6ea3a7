#include "files.h"

#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int join(char *out, size_t len, const char *dir, const char *name)
{
	return snprintf(out, len, "%s/%s", dir, name) < (int)len ? TRACKD_OK : TRACKD_EINVAL;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return trackd_err_from_errno(errno);
		}
		p += n;
		len -= (size_t)n;
	}
	return TRACKD_OK;
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return trackd_err_from_errno(errno);
	int rv = fsync(fd) == 0 ? TRACKD_OK : trackd_err_from_errno(errno);
	close(fd);
	return rv;
}

int file_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                      bool durable)
{
	char path[4096], tmp[4200];
	if (join(path, sizeof path, dir, name) != 0)
		return TRACKD_EINVAL;
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return trackd_err_from_errno(errno);
	int rv = write_all(fd, data, len);
	if (!rv && durable && fdatasync(fd) != 0)
		rv = trackd_err_from_errno(errno);
	if (close(fd) != 0 && !rv)
		rv = trackd_err_from_errno(errno);
	if (!rv && rename(tmp, path) != 0)
		rv = trackd_err_from_errno(errno);
	if (rv) {
		unlink(tmp);
		return rv;
	}
	return durable ? sync_dir(dir) : TRACKD_OK;
}

int file_append(const char *dir, const char *name, const void *data, size_t len)
{
	char path[4096];
	if (join(path, sizeof path, dir, name) != 0)
		return TRACKD_EINVAL;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return trackd_err_from_errno(errno);
	/* All or nothing: a write cut short (ENOSPC) is undone, so the caller's retry
	 * of the same bytes never leaves half a line behind. The sink thread is the
	 * only writer of its run files, so the size read here stays valid. */
	struct stat st;
	int rv = fstat(fd, &st) == 0 ? TRACKD_OK : trackd_err_from_errno(errno);
	if (!rv)
		rv = write_all(fd, data, len);
	if (rv && ftruncate(fd, st.st_size) != 0)
		rv = TRACKD_EIO; /* could not undo: no longer a plain "disk full" */
	if (close(fd) != 0 && !rv)
		rv = trackd_err_from_errno(errno);
	return rv;
}

int file_sync(const char *dir, const char *name, uint64_t *size_out)
{
	char path[4096];
	if (join(path, sizeof path, dir, name) != 0)
		return TRACKD_EINVAL;
	if (size_out)
		*size_out = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? TRACKD_OK : trackd_err_from_errno(errno);
	int rv = fdatasync(fd) == 0 ? TRACKD_OK : trackd_err_from_errno(errno);
	struct stat st;
	if (!rv && size_out && fstat(fd, &st) == 0)
		*size_out = (uint64_t)st.st_size;
	close(fd);
	return rv;
}

int file_truncate(const char *dir, const char *name, uint64_t size)
{
	char path[4096];
	if (join(path, sizeof path, dir, name) != 0)
		return TRACKD_EINVAL;
	struct stat st;
	if (stat(path, &st) != 0)
		return errno == ENOENT ? TRACKD_OK : trackd_err_from_errno(errno);
	if ((uint64_t)st.st_size <= size)
		return TRACKD_OK;
	return truncate(path, (off_t)size) == 0 ? TRACKD_OK : trackd_err_from_errno(errno);
}

int file_read(const char *dir, const char *name, size_t max, char **out, size_t *len)
{
	char path[4096];
	if (join(path, sizeof path, dir, name) != 0)
		return TRACKD_EINVAL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return trackd_err_from_errno(errno);
	struct stat st;
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size > max) {
		close(fd);
		return TRACKD_ETOOBIG;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return TRACKD_ENOMEM;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return TRACKD_OK;
}

void path_component(const char *name, char *out, size_t len)
{
	size_t n = 0;
	if (!name || !*name)
		name = "_";
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		out[n++] = '_';
	for (const unsigned char *p = (const unsigned char *)name; *p && n + 1 < len; p++)
		out[n++] = (*p == '/' || *p < 0x20) ? '_' : (char)*p;
	out[n] = '\0';
}
