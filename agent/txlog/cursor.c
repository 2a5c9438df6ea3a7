/* cursor.c — durable sink cursors and the segment release they allow. */
#include "txlog_internal.h"

#include "crc32c.h"
#include "errors.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool valid_name(const char *name)
{
	if (!name)
		return false;
	size_t n = strlen(name);
	if (n < 1 || n > TXLOG_CURSOR_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static struct cursor *find_locked(txlog *log, const char *name)
{
	for (size_t i = 0; i < log->ncursors; i++)
		if (strcmp(log->cursors[i].name, name) == 0)
			return &log->cursors[i];
	return NULL;
}

static struct cursor *add_locked(txlog *log, const char *name, uint64_t position)
{
	if (log->ncursors == TXLOG_MAX_CURSORS)
		return NULL;
	if (!log->cursors) {
		log->cursors = calloc(TXLOG_MAX_CURSORS, sizeof *log->cursors);
		if (!log->cursors)
			return NULL;
	}
	struct cursor *c = &log->cursors[log->ncursors++];
	memset(c, 0, sizeof *c);
	snprintf(c->name, sizeof c->name, "%s", name);
	c->position = position;
	return c;
}

/* Atomic replace: temp, fsync, rename, fsync dir. */
static int write_cursor_file(txlog *log, const char *name, uint64_t position)
{
	char file[SEG_NAME_BUF], tmp[SEG_NAME_BUF];
	snprintf(file, sizeof file, "%s.cur", name);
	snprintf(tmp, sizeof tmp, "%s.cur.tmp", name);
	uint8_t buf[TXLOG_CURSOR_FILE_SIZE];
	put_le64(buf, position);
	put_le32(buf + 8, crc32c_update(0, buf, 8));
	int fd = openat(log->cdirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return io_fail("create cursor", tmp);
	if (io_write_full(fd, buf, sizeof buf) != TRACKD_OK || fsync(fd) != 0) {
		int rc = io_fail("write cursor", tmp);
		close(fd);
		unlinkat(log->cdirfd, tmp, 0);
		return rc;
	}
	close(fd);
	if (renameat(log->cdirfd, tmp, log->cdirfd, file) != 0) {
		int rc = io_fail("rename cursor", file);
		unlinkat(log->cdirfd, tmp, 0);
		return rc;
	}
	if (fsync(log->cdirfd) != 0)
		return io_fail("fsync", "cursors/");
	return TRACKD_OK;
}

/* A damaged cursor file reads as 0: its sink re-delivers (duplicates its
 * idempotency absorbs) rather than skipping anything. */
static uint64_t read_cursor_file(txlog *log, const char *file)
{
	int fd = openat(log->cdirfd, file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_warn("txlog: cannot open cursor %s: %s; using 0", file, strerror(errno));
		return 0;
	}
	uint8_t buf[TXLOG_CURSOR_FILE_SIZE + 1];
	size_t got = 0;
	int rc = io_pread_full(fd, buf, sizeof buf, 0, &got);
	close(fd);
	if (rc != TRACKD_OK || got != TXLOG_CURSOR_FILE_SIZE ||
	    crc32c_update(0, buf, 8) != get_le32(buf + 8)) {
		log_warn("txlog: cursor %s is damaged; using 0 (its sink re-delivers)", file);
		return 0;
	}
	return get_le64(buf);
}

int cursors_load(txlog *log)
{
	int fd = dup(log->cdirfd);
	if (fd < 0)
		return io_fail("dup", "cursors/");
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return io_fail("opendir", "cursors/");
	}
	int rc = TRACKD_OK;
	struct dirent *e;
	pthread_mutex_lock(&log->cur_lock);
	while ((e = readdir(d)) != NULL) {
		const char *n = e->d_name;
		size_t len = strlen(n);
		char base[TXLOG_CURSOR_NAME_MAX + 1];
		if (len > 8 && strcmp(n + len - 8, ".cur.tmp") == 0) {
			/* An interrupted commit: the previous .cur still holds. */
			unlinkat(log->cdirfd, n, 0);
			continue;
		}
		if (len < 5 || len - 4 > TXLOG_CURSOR_NAME_MAX || strcmp(n + len - 4, ".cur") != 0)
			continue;
		memcpy(base, n, len - 4);
		base[len - 4] = '\0';
		if (!valid_name(base) || find_locked(log, base))
			continue;
		if (!add_locked(log, base, read_cursor_file(log, n))) {
			log_error("txlog: more than %d cursors in cursors/", TXLOG_MAX_CURSORS);
			rc = TRACKD_ETOOBIG;
			break;
		}
	}
	pthread_mutex_unlock(&log->cur_lock);
	closedir(d);
	return rc;
}

uint64_t cursors_max_position(txlog *log)
{
	uint64_t max = 0;
	pthread_mutex_lock(&log->cur_lock);
	for (size_t i = 0; i < log->ncursors; i++)
		if (log->cursors[i].position > max)
			max = log->cursors[i].position;
	pthread_mutex_unlock(&log->cur_lock);
	return max;
}

void cursors_free(txlog *log)
{
	free(log->cursors);
	log->cursors = NULL;
	log->ncursors = 0;
}

/* Deletes the oldest segments every cursor has passed. Never the newest, never
 * one the writer still has to sync (its readable bytes lag its size), and only a
 * prefix, so the list stays contiguous for readers. cur_lock held. */
static void release_segments_locked(txlog *log)
{
	if (log->ncursors == 0) {
		atomic_store(&log->min_cursor, 0);
		return;
	}
	uint64_t min = UINT64_MAX;
	for (size_t i = 0; i < log->ncursors; i++)
		if (log->cursors[i].position < min)
			min = log->cursors[i].position;
	atomic_store(&log->min_cursor, min);

	uint64_t firsts[64];
	size_t k = 0;
	pthread_mutex_lock(&log->seg_lock);
	while (k < 64 && k + 1 < log->nsegs) {
		const struct seg_info *si = &log->segs[k];
		uint64_t max = si->last_record ? si->last_record : si->first_index - 1;
		if (!si->sealed || si->readable_bytes < si->bytes || max > min)
			break;
		firsts[k++] = si->first_index;
	}
	if (k) {
		memmove(log->segs, log->segs + k, (log->nsegs - k) * sizeof *log->segs);
		log->nsegs -= k;
	}
	pthread_mutex_unlock(&log->seg_lock);

	/* Out of the list first: a reader that still has one open keeps its fd. */
	for (size_t i = 0; i < k; i++) {
		char name[SEG_NAME_BUF];
		seg_name(name, firsts[i]);
		if (unlinkat(log->dirfd, name, 0) != 0)
			log_warn("txlog: cannot delete %s: %s", name, strerror(errno));
		else
			log_debug("txlog: deleted %s (all cursors past it)", name);
	}
	if (k && fsync(log->dirfd) != 0)
		log_warn("txlog: fsync %s: %s", log->dir, strerror(errno));
	if (k == 64)
		release_segments_locked(log);
}

void cursors_release(txlog *log)
{
	pthread_mutex_lock(&log->cur_lock);
	release_segments_locked(log);
	pthread_mutex_unlock(&log->cur_lock);
}

int txlog_cursor_register(txlog *log, const char *name, uint64_t *position_out)
{
	if (!log || !valid_name(name))
		return TRACKD_EINVAL;
	int rc = TRACKD_OK;
	pthread_mutex_lock(&log->cur_lock);
	struct cursor *c = find_locked(log, name);
	if (!c) {
		if (log->ncursors == TXLOG_MAX_CURSORS) {
			rc = TRACKD_ETOOBIG;
			goto out;
		}
		/* Persisted at once: from now on it holds segments back, also across a
		 * restart that happens before its first commit. */
		rc = write_cursor_file(log, name, 0);
		if (rc != TRACKD_OK)
			goto out;
		c = add_locked(log, name, 0);
		if (!c) {
			rc = TRACKD_ENOMEM;
			goto out;
		}
	}
	c->registered = true;
	if (position_out)
		*position_out = c->position;
	release_segments_locked(log);
out:
	pthread_mutex_unlock(&log->cur_lock);
	return rc;
}

int txlog_cursor_commit(txlog *log, const char *name, uint64_t index)
{
	if (!log || !valid_name(name))
		return TRACKD_EINVAL;
	int rc = TRACKD_OK;
	pthread_mutex_lock(&log->cur_lock);
	struct cursor *c = find_locked(log, name);
	if (!c) {
		rc = TRACKD_ENOENT;
		goto out;
	}
	if (index < c->position) {
		rc = TRACKD_EINVAL;
		goto out;
	}
	if (index == c->position)
		goto release;
	if (index > txlog_readable_index(log)) {
		rc = TRACKD_EINVAL;
		goto out;
	}
	rc = write_cursor_file(log, name, index);
	if (rc != TRACKD_OK)
		goto out;
	c->position = index;
release:
	release_segments_locked(log);
out:
	pthread_mutex_unlock(&log->cur_lock);
	return rc;
}

int txlog_cursor_remove(txlog *log, const char *name)
{
	if (!log || !valid_name(name))
		return TRACKD_EINVAL;
	int rc = TRACKD_OK;
	pthread_mutex_lock(&log->cur_lock);
	struct cursor *c = find_locked(log, name);
	if (!c) {
		rc = TRACKD_ENOENT;
		goto out;
	}
	char file[SEG_NAME_BUF];
	snprintf(file, sizeof file, "%s.cur", name);
	if (unlinkat(log->cdirfd, file, 0) != 0 && errno != ENOENT) {
		rc = io_fail("remove cursor", file);
		goto out;
	}
	if (fsync(log->cdirfd) != 0) {
		rc = io_fail("fsync", "cursors/");
		goto out;
	}
	*c = log->cursors[--log->ncursors];
	release_segments_locked(log);
out:
	pthread_mutex_unlock(&log->cur_lock);
	return rc;
}

size_t txlog_cursors_info(txlog *log, struct txlog_cursor_info *out, size_t max)
{
	uint64_t readable = txlog_readable_index(log);
	pthread_mutex_lock(&log->cur_lock);
	size_t n = log->ncursors;
	for (size_t i = 0; i < n && i < max; i++) {
		const struct cursor *c = &log->cursors[i];
		struct txlog_cursor_info *ci = &out[i];
		snprintf(ci->name, sizeof ci->name, "%s", c->name);
		ci->position = c->position;
		ci->records_behind = readable > c->position ? readable - c->position : 0;
		ci->bytes_behind = 0;
		pthread_mutex_lock(&log->seg_lock);
		for (size_t k = 0; k < log->nsegs; k++)
			if (log->segs[k].last_record > c->position)
				ci->bytes_behind += log->segs[k].bytes;
		pthread_mutex_unlock(&log->seg_lock);
	}
	pthread_mutex_unlock(&log->cur_lock);
	return n;
}
