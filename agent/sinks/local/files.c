#include "files.h"

#include "errors.h"
#include "fs.h"

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

int file_write_atomic(const char *dir, const char *name, const void *data, size_t len, bool durable)
{
	char path[4096];
	if (join(path, sizeof path, dir, name) != 0)
		return TRACKD_EINVAL;
	return fs_write_atomic(path, data, len, 0600, durable);
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
		rv = fs_write_all(fd, data, len);
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
	return fs_read_file(path, max, out, len);
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
