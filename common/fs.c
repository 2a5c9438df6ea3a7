#include "fs.h"

#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_write_all(int fd, const void *data, size_t len)
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

int fs_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return trackd_err_from_errno(errno);
		}
		if (n == 0) {
			errno = EIO;
			return TRACKD_EIO;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return TRACKD_OK;
}

int fs_pwritev_all(int fd, struct iovec *iov, int n, uint64_t off)
{
	while (n > 0) {
		ssize_t w = pwritev(fd, iov, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return trackd_err_from_errno(errno);
		}
		off += (uint64_t)w;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return TRACKD_OK;
}

int fs_read_fd(int fd, size_t max, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	/* The size is only a first guess (the file may grow, or be a pipe): the
	 * loop reads to EOF, one byte past `max` at most, to tell "too big". */
	struct stat st;
	size_t cap = 4096;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0)
		cap = (uint64_t)st.st_size < max ? (size_t)st.st_size + 2 : max + 2;
	if (cap > max + 2)
		cap = max + 2;
	char *buf = malloc(cap);
	if (!buf)
		return TRACKD_ENOMEM;
	size_t got = 0;
	for (;;) {
		if (got + 1 == cap) {
			if (cap == max + 2)
				break;
			size_t ncap = 2 * cap > max + 2 ? max + 2 : 2 * cap;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				free(buf);
				return TRACKD_ENOMEM;
			}
			buf = nb;
			cap = ncap;
		}
		ssize_t n = read(fd, buf + got, cap - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(buf);
			errno = e;
			return trackd_err_from_errno(e);
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got > max) {
		free(buf);
		return TRACKD_ETOOBIG;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return TRACKD_OK;
}

int fs_read_file(const char *path, size_t max, char **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return trackd_err_from_errno(errno);
	int rv = fs_read_fd(fd, max, out, len);
	int e = errno;
	close(fd);
	errno = e;
	return rv;
}

/* fsync of the directory holding `path`, so a rename in it is durable. */
static int sync_parent(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (!slash) {
		dir[0] = '.';
		dir[1] = '\0';
	} else {
		size_t n = slash == path ? 1 : (size_t)(slash - path);
		if (n >= sizeof dir)
			return TRACKD_EINVAL;
		memcpy(dir, path, n);
		dir[n] = '\0';
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return trackd_err_from_errno(errno);
	int rv = fsync(fd) == 0 ? TRACKD_OK : trackd_err_from_errno(errno);
	int e = errno;
	close(fd);
	errno = e;
	return rv;
}

int fs_write_atomic(const char *path, const void *data, size_t len, unsigned mode, bool durable)
{
	char tmp[4200];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
		errno = ENAMETOOLONG;
		return TRACKD_EINVAL;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
	if (fd < 0)
		return trackd_err_from_errno(errno);
	int rv = fs_write_all(fd, data, len);
	if (!rv && durable && fdatasync(fd) != 0)
		rv = trackd_err_from_errno(errno);
	if (close(fd) != 0 && !rv)
		rv = trackd_err_from_errno(errno);
	if (!rv && rename(tmp, path) != 0)
		rv = trackd_err_from_errno(errno);
	if (rv) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return rv;
	}
	return durable ? sync_parent(path) : TRACKD_OK;
}

long fs_read_prefix(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	return (long)n;
}
