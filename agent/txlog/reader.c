/* reader.c — streaming records out of the log, live or from a directory.
 *
 * A live reader reads a segment only up to the bytes the writer has published as
 * readable, and moves to the next segment once the current one is sealed and fully
 * readable. Segments released under it stay readable through its open fd; a
 * released segment it has not opened yet is skipped (every cursor has passed it).
 * A directory reader sees the segments present when it was opened, each as large
 * as it was when the reader got to it, and treats all bytes as untrusted. */
#include "txlog_internal.h"

#include "errors.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct txlog_reader {
	txlog *log; /* live reader; NULL for a directory reader */
	int dirfd;  /* the log directory (a directory reader's own fd) */
	uint64_t after;
	uint64_t prev; /* newest valid index seen: frames must go above it */
	bool started;

	/* The segment being read. */
	int fd;
	uint64_t seg_first;
	uint64_t pos;
	bool header_done;
	bool seg_complete; /* no more bytes will become readable in it */
	struct frame_scan sc;

	/* Directory reader: the segments found at open. */
	uint64_t *list;
	size_t nlist, at;
};

static int reader_new(txlog *log, int dirfd, uint32_t max_record, uint64_t after,
                      txlog_reader **out)
{
	txlog_reader *r = calloc(1, sizeof *r);
	if (!r)
		return TRACKD_ENOMEM;
	r->log = log;
	r->dirfd = dirfd;
	r->after = after;
	r->fd = -1;
	scan_init(&r->sc, max_record, READER_CHUNK);
	*out = r;
	return TRACKD_OK;
}

int txlog_reader_open(txlog *log, uint64_t after, txlog_reader **out)
{
	if (!log || !out)
		return TRACKD_EINVAL;
	if (atomic_load(&log->closed))
		return TRACKD_ECLOSED;
	return reader_new(log, log->dirfd, log->opts.max_record_bytes, after, out);
}

int txlog_reader_open_dir(const char *dir, uint32_t max_record_bytes, uint64_t after,
                          txlog_reader **out)
{
	if (!dir || !out)
		return TRACKD_EINVAL;
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		int rc = trackd_err_from_errno(errno);
		return rc == TRACKD_ENOENT || rc == TRACKD_EPERM ? rc : TRACKD_EIO;
	}
	uint64_t *list;
	size_t n;
	int rc = seg_list_dir(dirfd, false, &list, &n);
	if (rc != TRACKD_OK) {
		close(dirfd);
		return rc;
	}
	txlog_reader *r;
	rc = reader_new(NULL, dirfd, max_record_bytes, after, &r);
	if (rc != TRACKD_OK) {
		free(list);
		close(dirfd);
		return rc;
	}
	r->list = list;
	r->nlist = n;
	*out = r;
	return TRACKD_OK;
}

void txlog_reader_close(txlog_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	scan_fini(&r->sc);
	if (!r->log && r->dirfd >= 0)
		close(r->dirfd);
	free(r->list);
	free(r);
}

static void close_segment(txlog_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

/* A reader starts in the last segment starting at or below after + 1 (the one
 * that may hold it), or the oldest when everything before it was released. */
static bool starts_at_or_below(uint64_t first, uint64_t after)
{
	return first - 1 <= after; /* first ≥ 1; no overflow at after = UINT64_MAX */
}

/* Picks the next segment to read: 1 and *first set, or 0 when there is none. */
static int next_segment(txlog_reader *r, uint64_t *first)
{
	if (!r->log) {
		size_t i;
		if (!r->started) {
			i = 0;
			while (i + 1 < r->nlist && starts_at_or_below(r->list[i + 1], r->after))
				i++;
		} else
			i = r->at + 1;
		if (i >= r->nlist)
			return 0;
		r->at = i;
		*first = r->list[i];
		return 1;
	}
	txlog *log = r->log;
	int found = 0;
	pthread_mutex_lock(&log->seg_lock);
	if (!r->started) {
		if (log->nsegs) {
			size_t i = 0;
			while (i + 1 < log->nsegs &&
			       starts_at_or_below(log->segs[i + 1].first_index, r->after))
				i++;
			*first = log->segs[i].first_index;
			found = 1;
		}
	} else {
		for (size_t i = 0; i < log->nsegs; i++) {
			if (log->segs[i].first_index > r->seg_first) {
				*first = log->segs[i].first_index;
				found = 1;
				break;
			}
		}
	}
	pthread_mutex_unlock(&log->seg_lock);
	return found;
}

static int open_next_segment(txlog_reader *r)
{
	for (;;) {
		uint64_t first;
		if (!next_segment(r, &first))
			return TRACKD_EAGAIN;
		r->started = true;
		r->seg_first = first;
		char name[SEG_NAME_BUF];
		seg_name(name, first);
		int fd = openat(r->dirfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				continue; /* released meanwhile: every cursor passed it */
			return TRACKD_EIO;
		}
		uint64_t bound = 0;
		r->seg_complete = true;
		if (!r->log) {
			struct stat st;
			if (fstat(fd, &st) != 0) {
				close(fd);
				return TRACKD_EIO;
			}
			bound = (uint64_t)st.st_size;
		}
		r->fd = fd;
		r->pos = 0;
		r->header_done = false;
		scan_reset(&r->sc, fd, bound);
		return TRACKD_OK;
	}
}

/* Live reader: how far the current segment may be read now. */
static void refresh_bound(txlog_reader *r)
{
	txlog *log = r->log;
	pthread_mutex_lock(&log->seg_lock);
	const struct seg_info *si = NULL;
	for (size_t i = log->nsegs; i-- > 0;) {
		if (log->segs[i].first_index == r->seg_first) {
			si = &log->segs[i];
			break;
		}
	}
	if (si) {
		scan_set_bound(&r->sc, si->readable_bytes);
		r->seg_complete = si->sealed && si->readable_bytes >= si->bytes;
	} else {
		r->seg_complete = true;
	}
	pthread_mutex_unlock(&log->seg_lock);
	if (!si) {
		/* Released while we hold it open: it was sealed and fully durable, so
		 * the whole file is readable and will not change. */
		struct stat st;
		if (fstat(r->fd, &st) == 0 && (uint64_t)st.st_size > r->sc.bound)
			scan_set_bound(&r->sc, (uint64_t)st.st_size);
	}
}

int txlog_reader_next(txlog_reader *r, uint64_t *index, const void **data, size_t *len)
{
	if (!r || !index || !data || !len)
		return TRACKD_EINVAL;
	for (;;) {
		if (r->fd < 0) {
			int rc = open_next_segment(r);
			if (rc != TRACKD_OK)
				return rc;
			if (r->log)
				refresh_bound(r);
		}
		if (r->log && r->pos >= r->sc.bound)
			refresh_bound(r);

		if (!r->header_done) {
			int err;
			const uint8_t *h = scan_fill(&r->sc, 0, TXLOG_SEGMENT_HEADER, &err);
			if (!h && err)
				return err;
			if (!h && !r->seg_complete)
				return TRACKD_EAGAIN; /* not published yet */
			r->header_done = true;
			r->pos = TXLOG_SEGMENT_HEADER;
			if (!h || !seg_header_ok(h, TXLOG_SEGMENT_HEADER, r->seg_first))
				return TRACKD_ECORRUPT; /* reported once; its frames are still read
				                         */
		}
		if (r->pos >= r->sc.bound) {
			if (r->seg_complete) {
				close_segment(r);
				continue;
			}
			return TRACKD_EAGAIN;
		}

		uint64_t min_index = r->prev + 1 > r->seg_first ? r->prev + 1 : r->seg_first;
		struct frame f;
		int rc = scan_frame_at(&r->sc, r->pos, min_index, &f);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			r->pos += TXLOG_FRAME_OVERHEAD + (uint64_t)f.len;
			r->prev = f.index;
			if (f.index <= r->after)
				continue;
			*index = f.index;
			*data = f.payload;
			*len = f.len;
			return TRACKD_OK;
		}
		uint64_t next;
		rc = scan_resync(&r->sc, r->pos + 1, min_index, &next);
		if (rc < 0)
			return rc;
		r->pos = rc == 1 ? next : r->sc.bound;
		return TRACKD_ECORRUPT;
	}
}
