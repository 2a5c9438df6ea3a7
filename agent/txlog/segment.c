/* segment.c — segment file names, headers, creation, and small I/O helpers. */
#include "txlog_internal.h"

#include "clock.h"

#include "errors.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_DIGITS 20

void seg_name(char out[SEG_NAME_BUF], uint64_t first_index)
{
	snprintf(out, SEG_NAME_BUF, "%020" PRIu64 ".seg", first_index);
}

/* Only the exact form we write is a segment: 20 digits, ".seg", value ≥ 1. */
static bool parse_digits(const char *name, uint64_t *value)
{
	uint64_t v = 0;
	for (int i = 0; i < SEG_DIGITS; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		unsigned d = (unsigned)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*value = v;
	return true;
}

bool seg_parse_name(const char *name, uint64_t *first_index)
{
	if (strlen(name) != SEG_DIGITS + 4 || strcmp(name + SEG_DIGITS, ".seg") != 0)
		return false;
	return parse_digits(name, first_index) && *first_index > 0;
}

static bool is_seg_tmp(const char *name)
{
	uint64_t v;
	return strlen(name) == SEG_DIGITS + 8 && strcmp(name + SEG_DIGITS, ".seg.tmp") == 0 &&
	       parse_digits(name, &v);
}

void seg_header_encode(uint8_t out[TXLOG_SEGMENT_HEADER], uint64_t first_index)
{
	memcpy(out, SEG_MAGIC, 8);
	put_le64(out + 8, first_index);
}

bool seg_header_ok(const uint8_t *hdr, size_t n, uint64_t first_index)
{
	return n >= TXLOG_SEGMENT_HEADER && memcmp(hdr, SEG_MAGIC, 8) == 0 &&
	       get_le64(hdr + 8) == first_index;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int seg_list_dir(int dirfd, bool remove_tmp, uint64_t **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	int fd = dup(dirfd);
	if (fd < 0)
		return io_fail("dup directory", "");
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return io_fail("opendir", "");
	}
	rewinddir(d);
	uint64_t *list = NULL;
	size_t len = 0, cap = 0;
	int rc = TRACKD_OK;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		uint64_t first;
		if (seg_parse_name(e->d_name, &first)) {
			if (len == cap) {
				size_t ncap = cap ? cap * 2 : 16;
				uint64_t *nl = realloc(list, ncap * sizeof *nl);
				if (!nl) {
					rc = TRACKD_ENOMEM;
					break;
				}
				list = nl;
				cap = ncap;
			}
			list[len++] = first;
		} else if (remove_tmp && is_seg_tmp(e->d_name)) {
			/* An interrupted create or rewrite: the original is intact. */
			if (unlinkat(dirfd, e->d_name, 0) != 0)
				log_warn("txlog: cannot remove %s: %s", e->d_name, strerror(errno));
		}
	}
	closedir(d);
	if (rc != TRACKD_OK) {
		free(list);
		return rc;
	}
	if (len)
		qsort(list, len, sizeof *list, cmp_u64);
	*out = list;
	*n = len;
	return TRACKD_OK;
}

const uint64_t txlog_fsync_bucket_us[TXLOG_FSYNC_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000,
};

void fsync_observe(txlog *log, int64_t us)
{
	uint64_t v = us > 0 ? (uint64_t)us : 0;
	size_t b = 0;
	while (b < TXLOG_FSYNC_BUCKETS && v > txlog_fsync_bucket_us[b])
		b++;
	atomic_fetch_add_explicit(&log->fsync_buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&log->fsync_sum_us, v, memory_order_relaxed);
}

int seg_fsync(txlog *log, int fd)
{
	int64_t t0 = clock_mono_us();
	int rc = log->fsync_hook ? log->fsync_hook(log->fsync_hook_arg, fd) : fdatasync(fd);
	int err = errno;
	fsync_observe(log, clock_mono_us() - t0);
	errno = err;
	return rc;
}

int seg_create(txlog *log, uint64_t first_index, int *fd_out)
{
	char name[SEG_NAME_BUF], tmp[SEG_NAME_BUF];
	seg_name(name, first_index);
	snprintf(tmp, sizeof tmp, "%.30s.tmp", name);

	int fd = openat(log->dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return io_fail("create segment", tmp);
	uint8_t hdr[TXLOG_SEGMENT_HEADER];
	seg_header_encode(hdr, first_index);
	int rc = io_write_full(fd, hdr, sizeof hdr);
	if (rc != TRACKD_OK) {
		rc = io_fail("write segment header", tmp);
		goto fail;
	}
	/* The header must be on disk before the name is, or a crash could leave a
	 * named segment without one. (Not through the test hook: that one is for
	 * the syncs that make records durable.) */
	if (fsync(fd) != 0) {
		rc = io_fail("fsync new segment", tmp);
		goto fail;
	}
	if (renameat(log->dirfd, tmp, log->dirfd, name) != 0) {
		rc = io_fail("rename new segment", name);
		goto fail;
	}
	if (fsync(log->dirfd) != 0) {
		/* The file exists under its name; only its directory entry may not be
		 * durable yet. Give it up rather than write records into it. */
		rc = io_fail("fsync log directory", log->dir);
		close(fd);
		unlinkat(log->dirfd, name, 0);
		return rc;
	}
	*fd_out = fd;
	return TRACKD_OK;
fail:
	close(fd);
	unlinkat(log->dirfd, tmp, 0);
	return rc;
}

int seg_list_push(txlog *log, const struct seg_info *si)
{
	if (log->nsegs == log->segs_cap) {
		size_t ncap = log->segs_cap ? log->segs_cap * 2 : 16;
		struct seg_info *ns = realloc(log->segs, ncap * sizeof *ns);
		if (!ns)
			return TRACKD_ENOMEM;
		log->segs = ns;
		log->segs_cap = ncap;
	}
	log->segs[log->nsegs++] = *si;
	return TRACKD_OK;
}

/* ---- I/O helpers -------------------------------------------------------- */

int io_fail(const char *what, const char *name)
{
	int e = errno;
	log_error("txlog: %s %s: %s", what, name, strerror(e));
	int rc = trackd_err_from_errno(e);
	/* Only disk-full is worth telling apart; the rest is an I/O failure. */
	return rc == TRACKD_ENOSPC || rc == TRACKD_ENOMEM ? rc : TRACKD_EIO;
}

int io_pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *got)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = pread(fd, (uint8_t *)buf + done, n - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			*got = done;
			return TRACKD_EIO;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	*got = done;
	return TRACKD_OK;
}

int io_write_full(int fd, const void *buf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = write(fd, (const uint8_t *)buf + done, n - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return TRACKD_EIO;
		}
		done += (size_t)r;
	}
	return TRACKD_OK;
}

int io_copy_range(int src, uint64_t off, uint64_t len, int dst, uint8_t *buf, size_t bufsz)
{
	while (len > 0) {
		size_t want = len < bufsz ? (size_t)len : bufsz, got;
		if (io_pread_full(src, buf, want, off, &got) != TRACKD_OK)
			return TRACKD_EIO;
		if (got != want) {
			errno = EIO; /* the source shrank under us */
			return TRACKD_EIO;
		}
		if (io_write_full(dst, buf, got) != TRACKD_OK)
			return TRACKD_EIO;
		off += got;
		len -= got;
	}
	return TRACKD_OK;
}
