/*
 * fs.h — files written and read whole, for the agent, libtrackd and trackctl:
 * write_all (one write loop), a bounded read of a whole file, and the atomic
 * replace (write a temporary, rename over). Directories: paths.h.
 *
 * Errors: 0 or a trackd_err (errors.h); on a system failure errno still holds
 * the system's reason, so a caller that reports strerror(errno) may. Every
 * function is thread-safe (no shared state); a buffer returned is owned by the
 * caller (free()).
 */
#ifndef TRACKD_COMMON_FS_H
#define TRACKD_COMMON_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Writes all of [data, data+len) to fd, retrying short writes and EINTR. */
int fs_write_all(int fd, const void *data, size_t len);

/* Reads exactly len bytes at `off` (pread, retrying short reads and EINTR);
 * TRACKD_EIO when the file ends first (errno EIO). */
int fs_pread_all(int fd, void *buf, size_t len, uint64_t off);

/* pwritev() at `off` until all `n` vectors are written, retrying short writes
 * and EINTR. The vectors are consumed (iov_base/iov_len advanced). */
int fs_pwritev_all(int fd, struct iovec *iov, int n, uint64_t off);

/* Reads fd from its position to EOF into a malloc'd, NUL-terminated buffer
 * (*out, *len excludes the NUL). A file longer than `max` bytes is refused
 * with TRACKD_ETOOBIG before more than max + 1 bytes are held; the fd is
 * borrowed (not closed). On failure *out is NULL. */
int fs_read_fd(int fd, size_t max, char **out, size_t *len);

/* fs_read_fd on `path` opened O_RDONLY | O_CLOEXEC. */
int fs_read_file(const char *path, size_t max, char **out, size_t *len);

/* The first cap - 1 bytes of `path` (less if it is shorter) into buf,
 * NUL-terminated, with no allocation: for /proc, /sys and small files read
 * often. Their length, or -1 with errno set. */
long fs_read_prefix(const char *path, char *buf, size_t cap);

/* Replaces `path` with [data, data+len) atomically: writes "<path>.tmp" (mode
 * `mode`, truncated), renames it over `path`. With `durable`, the data is
 * fdatasync'ed before the rename and the directory fsync'ed after, so the new
 * content survives a crash once this returns 0. On failure the temporary is
 * removed and `path` is as it was. */
int fs_write_atomic(const char *path, const void *data, size_t len, unsigned mode, bool durable);

#endif
