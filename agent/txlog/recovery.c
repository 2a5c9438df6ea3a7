/* recovery.c — start-up scan of every segment: verify, quarantine, truncate.
 *
 * One pass per segment with a bounded window, so memory does not grow with the
 * log. A segment needing cuts is rewritten on the fly: the kept byte ranges are
 * copied to `<segment>.tmp`, which replaces the original only after the
 * quarantined bytes are durable. A crash at any point leaves either the original
 * or the repaired file, and the next start redoes the same work. */
#include "txlog_internal.h"

#include "clock.h"
#include "errors.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_CHUNK (256u << 10)

struct recovery {
	txlog *log;
	struct frame_scan sc;
	uint8_t *copybuf;
	uint64_t prev; /* highest valid index so far: frames must go above it */
	uint64_t records;
	bool qdir_dirty;
};

/* The rewrite of one segment: kept ranges copied to tmp_fd as damage is found. */
struct rewrite {
	int tmp_fd;
	uint64_t keep_from; /* start of the kept range not copied yet */
	char tmp[SEG_NAME_BUF];
};

static int need_copybuf(struct recovery *rc)
{
	if (!rc->copybuf)
		rc->copybuf = malloc(COPY_CHUNK);
	return rc->copybuf ? TRACKD_OK : TRACKD_ENOMEM;
}

/* Saves [off, off + len) of the segment for a human, durably, before any cut. */
static int quarantine_span(struct recovery *rc, const char *seg, int fd, uint64_t off, uint64_t len)
{
	txlog *log = rc->log;
	char qname[SEG_NAME_BUF];
	/* "<first>.<offset>.bad": the segment name without ".seg". */
	snprintf(qname, sizeof qname, "%.20s.%" PRIu64 ".bad", seg, off);
	int r = need_copybuf(rc);
	if (r != TRACKD_OK)
		return r;
	int qfd = openat(log->qdirfd, qname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (qfd < 0)
		return io_fail("create quarantine file", qname);
	if (io_copy_range(fd, off, len, qfd, rc->copybuf, COPY_CHUNK) != TRACKD_OK ||
	    fsync(qfd) != 0) {
		r = io_fail("write quarantine file", qname);
		close(qfd);
		return r;
	}
	close(qfd);
	rc->qdir_dirty = true;
	atomic_fetch_add(&log->records_quarantined, 1);
	atomic_fetch_add(&log->bytes_quarantined, len);
	log_warn("txlog: quarantined %" PRIu64 " damaged bytes of %s at offset %" PRIu64
	         " to quarantine/%s",
	         len, seg, off, qname);
	return TRACKD_OK;
}

/* Drops [from, to) from the segment being rewritten. */
static int cut_span(struct recovery *rc, struct rewrite *rw, const char *seg, uint64_t first,
                    int fd, uint64_t from, uint64_t to)
{
	int r = need_copybuf(rc);
	if (r != TRACKD_OK)
		return r;
	if (rw->tmp_fd < 0) {
		snprintf(rw->tmp, sizeof rw->tmp, "%.30s.tmp", seg);
		rw->tmp_fd =
		    openat(rc->log->dirfd, rw->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (rw->tmp_fd < 0)
			return io_fail("create", rw->tmp);
		uint8_t hdr[TXLOG_SEGMENT_HEADER];
		seg_header_encode(hdr, first);
		if (io_write_full(rw->tmp_fd, hdr, sizeof hdr) != TRACKD_OK)
			return io_fail("write", rw->tmp);
	}
	if (from > rw->keep_from && io_copy_range(fd, rw->keep_from, from - rw->keep_from,
	                                          rw->tmp_fd, rc->copybuf, COPY_CHUNK) != TRACKD_OK)
		return io_fail("copy into", rw->tmp);
	rw->keep_from = to;
	return TRACKD_OK;
}

static void rewrite_abort(txlog *log, struct rewrite *rw)
{
	if (rw->tmp_fd >= 0) {
		close(rw->tmp_fd);
		unlinkat(log->dirfd, rw->tmp, 0);
		rw->tmp_fd = -1;
	}
}

/* Puts the rewritten segment in place of the original: data, quarantine, then
 * the rename, each durable before the next. */
static int rewrite_commit(struct recovery *rc, struct rewrite *rw, const char *seg, int fd,
                          uint64_t end, uint64_t *size_out)
{
	txlog *log = rc->log;
	if (end > rw->keep_from && io_copy_range(fd, rw->keep_from, end - rw->keep_from, rw->tmp_fd,
	                                         rc->copybuf, COPY_CHUNK) != TRACKD_OK)
		return io_fail("copy into", rw->tmp);
	struct stat st;
	if (fsync(rw->tmp_fd) != 0 || fstat(rw->tmp_fd, &st) != 0)
		return io_fail("fsync", rw->tmp);
	if (rc->qdir_dirty) {
		if (fsync(log->qdirfd) != 0)
			return io_fail("fsync", "quarantine/");
		rc->qdir_dirty = false;
	}
	if (renameat(log->dirfd, rw->tmp, log->dirfd, seg) != 0)
		return io_fail("rename repaired segment", seg);
	close(rw->tmp_fd);
	rw->tmp_fd = -1;
	if (fsync(log->dirfd) != 0)
		return io_fail("fsync", log->dir);
	*size_out = (uint64_t)st.st_size;
	return TRACKD_OK;
}

static int recover_segment(struct recovery *rc, struct seg_info *si, bool newest)
{
	txlog *log = rc->log;
	char seg[SEG_NAME_BUF];
	seg_name(seg, si->first_index);
	int fd = openat(log->dirfd, seg, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return io_fail("open segment", seg);
	struct rewrite rw = {.tmp_fd = -1, .keep_from = TXLOG_SEGMENT_HEADER};
	int r;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		r = io_fail("stat segment", seg);
		goto out;
	}
	uint64_t size = (uint64_t)st.st_size;

	uint8_t hdr[TXLOG_SEGMENT_HEADER];
	size_t hn;
	if (io_pread_full(fd, hdr, sizeof hdr, 0, &hn) != TRACKD_OK) {
		r = io_fail("read segment header", seg);
		goto out;
	}
	bool header_ok = seg_header_ok(hdr, hn, si->first_index);
	if (!header_ok) {
		atomic_fetch_add(&log->bad_segment_headers, 1);
		log_warn("txlog: segment %s has a bad header (%zu bytes); scanning it anyway", seg,
		         hn);
	}

	scan_reset(&rc->sc, fd, size);
	uint64_t pos = TXLOG_SEGMENT_HEADER, end = size;
	while (pos < rc->sc.bound) {
		uint64_t min_index =
		    rc->prev + 1 > si->first_index ? rc->prev + 1 : si->first_index;
		struct frame f;
		r = scan_frame_at(&rc->sc, pos, min_index, &f);
		if (r < 0) {
			io_fail("read segment", seg);
			goto out;
		}
		if (r == 1) {
			if (log->opts.on_record) {
				int cr = log->opts.on_record(log->opts.on_record_arg, f.index,
				                             f.payload, f.len);
				if (cr != 0) {
					log_error(
					    "txlog: recovery stopped by on_record (%d) at %" PRIu64,
					    cr, f.index);
					r = cr < 0 ? cr : TRACKD_EINVAL;
					goto out;
				}
			}
			if (!si->first_record)
				si->first_record = f.index;
			si->last_record = f.index;
			rc->prev = f.index;
			rc->records++;
			pos += TXLOG_FRAME_OVERHEAD + (uint64_t)f.len;
			continue;
		}
		uint64_t next;
		r = scan_resync(&rc->sc, pos + 1, min_index, &next);
		if (r < 0) {
			io_fail("read segment", seg);
			goto out;
		}
		if (r == 0 && newest) {
			/* Nothing valid follows: a torn tail from a crash mid-write. */
			end = pos;
			break;
		}
		uint64_t span_end = r == 1 ? next : rc->sc.bound;
		r = quarantine_span(rc, seg, fd, pos, span_end - pos);
		if (r == TRACKD_OK)
			r = cut_span(rc, &rw, seg, si->first_index, fd, pos, span_end);
		if (r != TRACKD_OK)
			goto out;
		pos = span_end;
	}
	if (end > rc->sc.bound)
		end = rc->sc.bound; /* the file was shorter than it said */

	uint64_t final_size = end;
	if (rw.tmp_fd >= 0) {
		r = rewrite_commit(rc, &rw, seg, fd, end, &final_size);
		if (r != TRACKD_OK)
			goto out;
		close(fd);
		fd = openat(log->dirfd, seg, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = io_fail("reopen segment", seg);
			goto out;
		}
	} else {
		if (!header_ok) {
			uint8_t good[TXLOG_SEGMENT_HEADER];
			seg_header_encode(good, si->first_index);
			if (pwrite(fd, good, sizeof good, 0) != (ssize_t)sizeof good) {
				r = io_fail("repair segment header", seg);
				goto out;
			}
			if (final_size < TXLOG_SEGMENT_HEADER)
				final_size = TXLOG_SEGMENT_HEADER;
		}
		if (end < size) {
			if (ftruncate(fd, (off_t)end) != 0) {
				r = io_fail("truncate torn tail of", seg);
				goto out;
			}
			log_warn("txlog: truncated a torn tail of %" PRIu64 " bytes from %s",
			         size - end, seg);
		}
	}
	if (end < size)
		atomic_fetch_add(&log->bytes_truncated, size - end);
	/* What recovery found may still be only in the page cache (the agent, not
	 * the machine, crashed): make it durable before calling it durable. A clean
	 * file costs next to nothing. */
	if (fdatasync(fd) != 0) {
		r = io_fail("fsync segment", seg);
		goto out;
	}
	si->bytes = final_size;
	si->readable_bytes = final_size;
	si->sealed = !newest;
	r = TRACKD_OK;
out:
	rewrite_abort(log, &rw);
	if (fd >= 0)
		close(fd);
	return r;
}

int recovery_run(txlog *log, uint64_t *last_valid)
{
	int64_t t0 = clock_mono_us();
	uint64_t *firsts;
	size_t n;
	int r = seg_list_dir(log->dirfd, true, &firsts, &n);
	if (r != TRACKD_OK)
		return r;
	struct recovery rc = {.log = log};
	scan_init(&rc.sc, log->opts.max_record_bytes, RECOVERY_CHUNK);
	for (size_t i = 0; i < n; i++) {
		struct seg_info si = {.first_index = firsts[i]};
		r = recover_segment(&rc, &si, i + 1 == n);
		if (r != TRACKD_OK)
			break;
		pthread_mutex_lock(&log->seg_lock);
		r = seg_list_push(log, &si);
		pthread_mutex_unlock(&log->seg_lock);
		if (r != TRACKD_OK)
			break;
	}
	scan_fini(&rc.sc);
	free(rc.copybuf);
	free(firsts);
	if (r != TRACKD_OK)
		return r;
	*last_valid = rc.prev;
	log_info("txlog: recovered %zu segments, %" PRIu64 " records (last %" PRIu64 "), %" PRIu64
	         " quarantined, %" PRIu64 " bytes truncated, in %" PRId64 " ms",
	         n, rc.records, rc.prev, (uint64_t)atomic_load(&log->records_quarantined),
	         (uint64_t)atomic_load(&log->bytes_truncated), (clock_mono_us() - t0) / 1000);
	return TRACKD_OK;
}
