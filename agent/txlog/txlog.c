/* txlog.c — open/close, the append path, fsync policies and the flusher.
 *
 * Durability bookkeeping: the writer keeps every segment it has written to but
 * not yet fdatasync'ed open (`open[]`, the current one last). A sync covers all
 * of them, so a group of appends spanning a roll is made durable — or, when the
 * fdatasync fails, thrown away — as a whole. Readers only ever see bytes covered
 * by a completed sync (ALWAYS/INTERVAL), published through the segment list. */
#include "txlog_internal.h"

#include "clock.h"
#include "crc32c.h"
#include "errors.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static struct open_seg *current(txlog *log)
{
	return &log->open[log->nopen - 1];
}

static struct seg_info *seg_find_locked(txlog *log, uint64_t first_index)
{
	/* Open segments are the newest: search from the end. */
	for (size_t i = log->nsegs; i-- > 0;)
		if (log->segs[i].first_index == first_index)
			return &log->segs[i];
	return NULL;
}

/* Pushes the open segments' state to what readers and stats see, and closes the
 * rolled-away segments that are now fully durable. Called with mu held whenever
 * offsets or synced positions change. */
static void publish_locked(txlog *log)
{
	uint64_t durable = atomic_load(&log->durable_index), last = 0;
	for (size_t i = 0; i < log->nopen; i++) {
		struct open_seg *os = &log->open[i];
		if (os->synced_record > durable)
			durable = os->synced_record;
		if (os->last_record > last)
			last = os->last_record;
	}
	if (last < durable)
		last = durable;
	bool never = log->opts.fsync == TXLOG_FSYNC_NEVER;
	/* Indices first, then the byte bounds: a reader never returns a record
	 * above what txlog_readable_index() already says. */
	atomic_store(&log->durable_index, durable);
	atomic_store(&log->last_index, last);
	atomic_store(&log->readable_index, never ? last : durable);

	pthread_mutex_lock(&log->seg_lock);
	for (size_t i = 0; i < log->nopen; i++) {
		struct open_seg *os = &log->open[i];
		struct seg_info *si = seg_find_locked(log, os->first_index);
		if (!si)
			continue;
		si->bytes = os->offset;
		si->first_record = os->first_record;
		si->last_record = os->last_record;
		si->readable_bytes = never ? os->offset : os->synced;
	}
	pthread_mutex_unlock(&log->seg_lock);

	size_t keep = 0;
	for (size_t i = 0; i < log->nopen; i++) {
		struct open_seg *os = &log->open[i];
		if (i + 1 < log->nopen && os->synced == os->offset)
			close(os->fd);
		else
			log->open[keep++] = *os;
	}
	log->nopen = keep;
}

/* The flusher's fdatasync runs on snapshot fds without mu; nothing may close or
 * truncate those fds until it is done. */
static void wait_flusher_idle_locked(txlog *log)
{
	while (log->flusher_busy)
		pthread_cond_wait(&log->idle_cv, &log->mu);
}

/* Makes `first` the current segment: a new file, sealed predecessors. */
static int start_segment_locked(txlog *log, uint64_t first)
{
	if (log->nopen == TXLOG_MAX_OPEN_SEGS)
		return TRACKD_EIO; /* callers sync first; never reached */
	pthread_mutex_lock(&log->seg_lock);
	uint64_t newest = log->nsegs ? log->segs[log->nsegs - 1].first_index : 0;
	pthread_mutex_unlock(&log->seg_lock);
	if (first <= newest) {
		/* Would rename over a segment holding records. */
		log_error("txlog: new segment %" PRIu64 " not after newest %" PRIu64, first,
		          newest);
		return TRACKD_EIO;
	}
	int fd;
	int rc = seg_create(log, first, &fd);
	if (rc != TRACKD_OK)
		return rc;
	struct seg_info si = {.first_index = first,
	                      .bytes = TXLOG_SEGMENT_HEADER,
	                      .readable_bytes = TXLOG_SEGMENT_HEADER};
	pthread_mutex_lock(&log->seg_lock);
	rc = seg_list_push(log, &si);
	if (rc == TRACKD_OK && log->nsegs >= 2)
		log->segs[log->nsegs - 2].sealed = true;
	pthread_mutex_unlock(&log->seg_lock);
	if (rc != TRACKD_OK) {
		close(fd);
		char name[SEG_NAME_BUF];
		seg_name(name, first);
		unlinkat(log->dirfd, name, 0);
		return rc;
	}
	log->open[log->nopen++] = (struct open_seg){
	    .fd = fd,
	    .first_index = first,
	    .offset = TXLOG_SEGMENT_HEADER,
	    .synced = TXLOG_SEGMENT_HEADER,
	};
	log->need_roll = false;
	publish_locked(log);
	return TRACKD_OK;
}

/* After a failed fdatasync nothing past the last durable position can be trusted:
 * truncate every open segment back to it and, with fresh_segment, continue in a
 * new file (the failed one may keep reporting stale errors or none at all). If
 * that is impossible the log refuses further appends. mu held, flusher idle. */
static int discard_unsynced_locked(txlog *log, bool fresh_segment)
{
	bool ok = true;
	/* A current segment that was not dirty was not part of the failed sync and
	 * was created by a successful one: it can stay current. */
	struct open_seg *cur = current(log);
	if (cur->synced == cur->offset)
		fresh_segment = false;
	for (size_t i = 0; i < log->nopen; i++) {
		struct open_seg *os = &log->open[i];
		if (os->synced < os->offset) {
			char name[SEG_NAME_BUF];
			seg_name(name, os->first_index);
			if (ftruncate(os->fd, (off_t)os->synced) != 0) {
				io_fail("truncate after failed fsync", name);
				ok = false;
			} else if (seg_fsync(log, os->fd) != 0) {
				io_fail("fsync truncation after failed fsync", name);
				ok = false;
			}
			log_warn("txlog: discarded %" PRIu64
			         " unsynced bytes of %s (records %" PRIu64 "..%" PRIu64 ")",
			         os->offset - os->synced, name, os->synced_record + 1,
			         os->last_record);
		}
		os->offset = os->synced;
		os->last_record = os->synced_record;
		if (!os->synced_record)
			os->first_record = 0;
	}
	int rc = TRACKD_OK;
	publish_locked(log); /* closes the rolled-away segments, now all clean */
	if (ok && fresh_segment)
		rc = start_segment_locked(log, log->next_index);
	if (!ok || rc != TRACKD_OK) {
		log->failed = true;
		log->failed_retry_us = (int64_t)clock_mono_us();
		log_error("txlog: cannot recover from a failed fsync; refusing appends");
	}
	publish_locked(log);
	return TRACKD_EIO;
}

/* Leaves the failed state once the disk works again: a disk whose fsync failed
 * for a while must not need a restart to take records after it recovered.
 * Redoes the cut of every open segment back to its durable size, syncs it, and
 * continues in a fresh segment, as discard_unsynced_locked would have. Tried
 * at most once a second, the first a second after the failure (each try costs
 * syscalls on a failing disk). mu held. */
static int leave_failed_state_locked(txlog *log)
{
	int64_t now = (int64_t)clock_mono_us();
	if (now - log->failed_retry_us < 1000000)
		return TRACKD_EIO;
	log->failed_retry_us = now;
	wait_flusher_idle_locked(log);
	for (size_t i = 0; i < log->nopen; i++) {
		struct open_seg *os = &log->open[i];
		if (ftruncate(os->fd, (off_t)os->synced) != 0 || seg_fsync(log, os->fd) != 0)
			return TRACKD_EIO;
		os->offset = os->synced;
		os->last_record = os->synced_record;
	}
	publish_locked(log);
	pthread_mutex_lock(&log->seg_lock);
	uint64_t newest = log->nsegs ? log->segs[log->nsegs - 1].first_index : 0;
	pthread_mutex_unlock(&log->seg_lock);
	/* (A current segment that starts at next_index holds no record yet.) */
	if (log->next_index > newest && start_segment_locked(log, log->next_index) != TRACKD_OK)
		return TRACKD_EIO;
	log->failed = false;
	log_warn("txlog: fsync works again; appends resume in a new segment");
	publish_locked(log);
	return TRACKD_OK;
}

/* Makes every written record durable. mu held. */
static int sync_all_locked(txlog *log)
{
	if (log->failed)
		return TRACKD_EIO;
	wait_flusher_idle_locked(log);
	if (log->failed)
		return TRACKD_EIO;
	bool lost = log->lost;
	log->lost = false;
	if (lost && (log->opts.fsync == TXLOG_FSYNC_ALWAYS || log->group_open)) {
		/* Part of this group is gone: drop the rest too, so the caller's retry
		 * does not leave half of it twice. */
		discard_unsynced_locked(log, false);
		return TRACKD_EIO;
	}
	for (size_t i = 0; i < log->nopen; i++) {
		struct open_seg *os = &log->open[i];
		if (os->synced == os->offset)
			continue;
		if (seg_fsync(log, os->fd) != 0) {
			char name[SEG_NAME_BUF];
			seg_name(name, os->first_index);
			io_fail("fdatasync", name);
			atomic_fetch_add(&log->fsync_failures, 1);
			return discard_unsynced_locked(log, true);
		}
	}
	for (size_t i = 0; i < log->nopen; i++) {
		log->open[i].synced = log->open[i].offset;
		log->open[i].synced_record = log->open[i].last_record;
	}
	publish_locked(log);
	return lost ? TRACKD_EIO : TRACKD_OK;
}

static int roll_locked(txlog *log)
{
	if (log->opts.fsync == TXLOG_FSYNC_NEVER || log->nopen == TXLOG_MAX_OPEN_SEGS) {
		/* NEVER keeps nothing open; the others only when too many wait. */
		int rc = sync_all_locked(log);
		if (log->failed)
			return TRACKD_EIO;
		if (rc != TRACKD_OK) {
			/* The discard already moved to a fresh segment; report it at the
			 * next sync. */
			log->lost = true;
			return TRACKD_OK;
		}
	}
	return start_segment_locked(log, log->next_index);
}

static int append_once(txlog *log, const void *data, size_t len, uint64_t *index_out,
                       bool *over_budget);

int txlog_append(txlog *log, const void *data, size_t len, uint64_t *index_out)
{
	bool over_budget = false;
	int rc = append_once(log, data, len, index_out, &over_budget);
	if (over_budget) {
		/* The cap may be held by segments that every sink has passed but that
		 * no commit has deleted yet (a caught-up sink commits nothing new). */
		cursors_release(log);
		over_budget = false;
		rc = append_once(log, data, len, index_out, &over_budget);
		if (over_budget)
			atomic_fetch_add(&log->budget_refusals, 1);
	}
	return rc;
}

static int append_once(txlog *log, const void *data, size_t len, uint64_t *index_out,
                       bool *over_budget)
{
	if (!log)
		return TRACKD_EINVAL;
	if (len > log->opts.max_record_bytes)
		return TRACKD_ETOOBIG;
	if (len && !data)
		return TRACKD_EINVAL;
	if (atomic_load(&log->closed))
		return TRACKD_ECLOSED;

	pthread_mutex_lock(&log->mu);
	int rc;
	if (log->failed && leave_failed_state_locked(log) != TRACKD_OK) {
		rc = TRACKD_EIO;
		goto out;
	}
	/* Indices never wrap. 2^63 is out of reach of any real log (a million
	 * appends a second for 292,000 years); only a damaged or forged state dir
	 * gets there, and then appends fail rather than reuse index 0. */
	if (log->next_index >= TXLOG_MAX_INDEX) {
		log_error("txlog: index space exhausted at %" PRIu64 " (damaged state dir?)",
		          log->next_index);
		rc = TRACKD_EIO;
		goto out;
	}
	uint64_t frame_len = TXLOG_FRAME_OVERHEAD + (uint64_t)len;
	uint64_t max_bytes = atomic_load_explicit(&log->max_bytes, memory_order_relaxed);
	if (max_bytes) {
		/* A roll adds a segment header; count it so the cap holds exactly. */
		uint64_t used = TXLOG_SEGMENT_HEADER +
		                atomic_load_explicit(&log->external_bytes, memory_order_relaxed);
		pthread_mutex_lock(&log->seg_lock);
		for (size_t i = 0; i < log->nsegs; i++)
			used += log->segs[i].bytes;
		pthread_mutex_unlock(&log->seg_lock);
		if (used + frame_len > max_bytes) {
			/* Every cursor is past the segment being written: start a new one
			 * so this one can be released. */
			struct open_seg *cur = current(log);
			uint64_t min = atomic_load(&log->min_cursor);
			if (cur->last_record && min >= cur->last_record)
				roll_locked(log);
			*over_budget = true;
			rc = TRACKD_ENOSPC;
			goto out;
		}
	}
	struct open_seg *cur = current(log);
	if (log->need_roll || (cur->offset > TXLOG_SEGMENT_HEADER &&
	                       cur->offset + frame_len > log->opts.segment_bytes)) {
		rc = roll_locked(log);
		if (rc != TRACKD_OK)
			goto out;
		cur = current(log);
	}

	uint64_t index = log->next_index;
	uint8_t hdr[TXLOG_FRAME_OVERHEAD];
	put_le32(hdr, FRAME_MAGIC);
	put_le32(hdr + 4, (uint32_t)len);
	put_le64(hdr + 8, index);
	uint32_t crc = crc32c_update(0, hdr + 4, 12);
	crc = crc32c_update(crc, data, len);
	put_le32(hdr + 16, crc);

	/* One positioned write per frame; a short write is continued, a failed one
	 * rolled back so the next frame starts where this one did. */
	struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)data, len}};
	uint64_t done = 0;
	while (done < frame_len) {
		struct iovec v[2];
		int nv = 0;
		uint64_t skip = done;
		for (int i = 0; i < 2; i++) {
			if (skip >= iov[i].iov_len) {
				skip -= iov[i].iov_len;
				continue;
			}
			v[nv].iov_base = (uint8_t *)iov[i].iov_base + skip;
			v[nv].iov_len = iov[i].iov_len - skip;
			skip = 0;
			nv++;
		}
		ssize_t w = pwritev(cur->fd, v, nv, (off_t)(cur->offset + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			if (errno == ENOSPC) {
				/* Expected while the disk is full: the caller reports it
				 * (once per episode), the counter counts each refusal. */
				rc = TRACKD_ENOSPC;
				atomic_fetch_add(&log->budget_refusals, 1);
			} else {
				char name[SEG_NAME_BUF];
				seg_name(name, cur->first_index);
				rc = io_fail("append to", name);
			}
			if (ftruncate(cur->fd, (off_t)cur->offset) != 0)
				log->need_roll = true;
			goto out;
		}
		done += (uint64_t)w;
	}
	cur->offset += frame_len;
	if (!cur->first_record)
		cur->first_record = index;
	cur->last_record = index;
	log->next_index = index + 1;
	atomic_fetch_add(&log->records_appended, 1);
	atomic_fetch_add(&log->bytes_appended, frame_len);
	publish_locked(log);
	if (index_out)
		*index_out = index;
	rc = TRACKD_OK;
out:
	pthread_mutex_unlock(&log->mu);
	return rc;
}

int txlog_sync(txlog *log)
{
	if (!log)
		return TRACKD_EINVAL;
	if (atomic_load(&log->closed))
		return TRACKD_ECLOSED;
	pthread_mutex_lock(&log->mu);
	int rc = sync_all_locked(log);
	log->group_open = false;
	pthread_mutex_unlock(&log->mu);
	return rc;
}

void txlog_group_begin(txlog *log)
{
	if (!log || log->opts.fsync == TXLOG_FSYNC_ALWAYS)
		return;
	pthread_mutex_lock(&log->mu);
	if (!log->group_open && log->nopen > 0) {
		struct open_seg *cur = current(log);
		log->group_open = true;
		log->lost = false;
		log->hold_first = cur->first_index;
		log->hold_offset = cur->offset;
		log->hold_record = cur->last_record;
	}
	pthread_mutex_unlock(&log->mu);
}

/* What the flusher syncs: an fd and the position it promises once synced. */
struct flush_target {
	int fd;
	uint64_t first, offset, record;
};

static void *flusher_main(void *arg)
{
	txlog *log = arg;
	pthread_mutex_lock(&log->mu);
	while (!log->stop) {
		struct timespec deadline;
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		uint64_t ns =
		    (uint64_t)deadline.tv_nsec + (uint64_t)log->opts.fsync_interval_ms * 1000000u;
		deadline.tv_sec += (time_t)(ns / 1000000000u);
		deadline.tv_nsec = (long)(ns % 1000000000u);
		while (!log->stop &&
		       pthread_cond_timedwait(&log->flush_cv, &log->mu, &deadline) != ETIMEDOUT)
			;
		if (log->stop || log->failed)
			continue;

		/* Snapshot under mu, fdatasync without it: appends go on meanwhile and
		 * land after the snapshot offsets, which is all this sync promises. */
		struct flush_target snap[TXLOG_MAX_OPEN_SEGS];
		size_t n = 0;
		for (size_t i = 0; i < log->nopen; i++) {
			struct open_seg *os = &log->open[i];
			uint64_t upto = os->offset, record = os->last_record;
			if (log->group_open) {
				/* An open group is synced (or discarded) only as a whole. */
				if (os->first_index > log->hold_first)
					continue;
				if (os->first_index == log->hold_first && log->hold_offset < upto) {
					upto = log->hold_offset;
					record = log->hold_record;
				}
			}
			if (os->synced < upto)
				snap[n++] =
				    (struct flush_target){os->fd, os->first_index, upto, record};
		}
		if (n == 0)
			continue;
		txlog_fsync_hook hook = log->fsync_hook;
		void *hook_arg = log->fsync_hook_arg;
		log->flusher_busy = true;
		pthread_mutex_unlock(&log->mu);

		bool ok = true;
		for (size_t i = 0; i < n && ok; i++) {
			int64_t t0 = clock_mono_us();
			ok = (hook ? hook(hook_arg, snap[i].fd) : fdatasync(snap[i].fd)) == 0;
			int e = errno;
			fsync_observe(log, clock_mono_us() - t0);
			errno = e;
		}
		int err = errno;

		pthread_mutex_lock(&log->mu);
		log->flusher_busy = false;
		if (ok) {
			for (size_t i = 0; i < n; i++) {
				for (size_t j = 0; j < log->nopen; j++) {
					struct open_seg *os = &log->open[j];
					if (os->first_index != snap[i].first)
						continue;
					if (snap[i].offset > os->synced) {
						os->synced = snap[i].offset;
						os->synced_record = snap[i].record;
					}
				}
			}
			publish_locked(log);
		} else {
			errno = err;
			io_fail("fdatasync (interval)", log->dir);
			atomic_fetch_add(&log->fsync_failures, 1);
			discard_unsynced_locked(log, true);
			log->lost = true;
		}
		pthread_cond_broadcast(&log->idle_cv);
	}
	pthread_mutex_unlock(&log->mu);
	return NULL;
}

void txlog_test_set_fsync_hook(txlog *log, txlog_fsync_hook hook, void *arg)
{
	pthread_mutex_lock(&log->mu);
	wait_flusher_idle_locked(log);
	log->fsync_hook = hook;
	log->fsync_hook_arg = arg;
	pthread_mutex_unlock(&log->mu);
}

/* ---- open / close --------------------------------------------------------- */

static int open_subdir(txlog *log, const char *name, int *fd_out)
{
	if (mkdirat(log->dirfd, name, 0700) != 0 && errno != EEXIST)
		return io_fail("create directory", name);
	int fd = openat(log->dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return io_fail("open directory", name);
	*fd_out = fd;
	return TRACKD_OK;
}

/* A new directory's entry is durable only once its parent is synced. */
static int fsync_parent(const char *dir)
{
	char *copy = strdup(dir);
	if (!copy)
		return TRACKD_ENOMEM;
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = TRACKD_OK;
	if (fd < 0 || fsync(fd) != 0)
		rc = io_fail("fsync parent of", dir);
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

static void free_log(txlog *log)
{
	for (size_t i = 0; i < log->nopen; i++)
		close(log->open[i].fd);
	if (log->dirfd >= 0)
		close(log->dirfd);
	if (log->cdirfd >= 0)
		close(log->cdirfd);
	if (log->qdirfd >= 0)
		close(log->qdirfd);
	cursors_free(log);
	free(log->segs);
	free(log->dir);
	pthread_mutex_destroy(&log->mu);
	pthread_mutex_destroy(&log->seg_lock);
	pthread_mutex_destroy(&log->cur_lock);
	pthread_cond_destroy(&log->flush_cv);
	pthread_cond_destroy(&log->idle_cv);
	free(log);
}

static int check_options(const struct txlog_options *o)
{
	if (!o || !o->dir || !*o->dir)
		return TRACKD_EINVAL;
	if (o->fsync != TXLOG_FSYNC_ALWAYS && o->fsync != TXLOG_FSYNC_INTERVAL &&
	    o->fsync != TXLOG_FSYNC_NEVER)
		return TRACKD_EINVAL;
	if (o->fsync == TXLOG_FSYNC_INTERVAL && o->fsync_interval_ms == 0)
		return TRACKD_EINVAL;
	if (o->segment_bytes <= TXLOG_SEGMENT_HEADER + TXLOG_FRAME_OVERHEAD ||
	    o->max_record_bytes == 0)
		return TRACKD_EINVAL;
	return TRACKD_OK;
}

/* Continues in the newest segment as recovery left it. */
static int adopt_newest_locked(txlog *log)
{
	struct seg_info si = log->segs[log->nsegs - 1];
	char name[SEG_NAME_BUF];
	seg_name(name, si.first_index);
	int fd = openat(log->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return io_fail("open segment", name);
	log->open[0] = (struct open_seg){
	    .fd = fd,
	    .first_index = si.first_index,
	    .offset = si.bytes,
	    .synced = si.bytes,
	    .first_record = si.first_record,
	    .last_record = si.last_record,
	    .synced_record = si.last_record,
	};
	log->nopen = 1;
	return TRACKD_OK;
}

int txlog_open(const struct txlog_options *opts, txlog **out)
{
	int rc = check_options(opts);
	if (rc != TRACKD_OK)
		return rc;
	txlog *log = calloc(1, sizeof *log);
	if (!log)
		return TRACKD_ENOMEM;
	log->dirfd = log->cdirfd = log->qdirfd = -1;
	log->opts = *opts;
	atomic_init(&log->max_bytes, opts->max_bytes);
	atomic_init(&log->external_bytes, 0);
	log->dir = strdup(opts->dir);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&log->mu, NULL);
	pthread_mutex_init(&log->seg_lock, NULL);
	pthread_mutex_init(&log->cur_lock, NULL);
	pthread_cond_init(&log->flush_cv, &ca);
	pthread_cond_init(&log->idle_cv, NULL);
	pthread_condattr_destroy(&ca);
	if (!log->dir) {
		free_log(log);
		return TRACKD_ENOMEM;
	}
	log->opts.dir = log->dir;

	if (mkdir(log->dir, 0700) == 0) {
		rc = fsync_parent(log->dir);
		if (rc != TRACKD_OK)
			goto fail;
	} else if (errno != EEXIST) {
		rc = io_fail("create log directory", log->dir);
		goto fail;
	}
	log->dirfd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (log->dirfd < 0) {
		rc = io_fail("open log directory", log->dir);
		goto fail;
	}
	if ((rc = open_subdir(log, "cursors", &log->cdirfd)) != TRACKD_OK ||
	    (rc = open_subdir(log, "quarantine", &log->qdirfd)) != TRACKD_OK)
		goto fail;
	if (fsync(log->dirfd) != 0) {
		rc = io_fail("fsync", log->dir);
		goto fail;
	}
	if ((rc = cursors_load(log)) != TRACKD_OK)
		goto fail;

	uint64_t last_valid = 0;
	if ((rc = recovery_run(log, &last_valid)) != TRACKD_OK)
		goto fail;

	/* Never reuse an index: not one a cursor has seen, not one a released
	 * segment held (its successor's name remembers it). */
	uint64_t next = last_valid;
	uint64_t cmax = cursors_max_position(log);
	if (cmax > next)
		next = cmax;
	if (log->nsegs && log->segs[log->nsegs - 1].first_index - 1 > next)
		next = log->segs[log->nsegs - 1].first_index - 1;
	if (next == UINT64_MAX) {
		rc = TRACKD_ECORRUPT;
		goto fail;
	}
	log->next_index = next + 1;
	atomic_store(&log->last_index, last_valid);
	atomic_store(&log->durable_index, last_valid);
	atomic_store(&log->readable_index, last_valid);

	pthread_mutex_lock(&log->mu);
	if (log->nsegs)
		rc = adopt_newest_locked(log);
	else
		rc = start_segment_locked(log, log->next_index);
	pthread_mutex_unlock(&log->mu);
	if (rc != TRACKD_OK)
		goto fail;

	if (log->opts.fsync == TXLOG_FSYNC_INTERVAL) {
		/* Set before the thread runs: it shares a word with fields it reads. */
		log->has_flusher = true;
		if (pthread_create(&log->flusher, NULL, flusher_main, log) != 0) {
			log->has_flusher = false;
			rc = TRACKD_ESYS;
			log_error("txlog: cannot start the flusher thread");
			goto fail;
		}
	}
	*out = log;
	return TRACKD_OK;
fail:
	free_log(log);
	return rc;
}

int txlog_close(txlog *log)
{
	if (!log)
		return TRACKD_OK;
	atomic_store(&log->closed, true);
	if (log->has_flusher) {
		pthread_mutex_lock(&log->mu);
		log->stop = true;
		pthread_cond_broadcast(&log->flush_cv);
		pthread_mutex_unlock(&log->mu);
		pthread_join(log->flusher, NULL);
	}
	pthread_mutex_lock(&log->mu);
	int rc = sync_all_locked(log);
	pthread_mutex_unlock(&log->mu);
	free_log(log);
	return rc;
}

uint64_t txlog_last_index(txlog *log)
{
	return atomic_load(&log->last_index);
}

uint64_t txlog_durable_index(txlog *log)
{
	return atomic_load(&log->durable_index);
}

uint64_t txlog_readable_index(txlog *log)
{
	return atomic_load(&log->readable_index);
}

void txlog_stats(txlog *log, struct txlog_stats *out)
{
	memset(out, 0, sizeof *out);
	out->records_appended = atomic_load(&log->records_appended);
	out->bytes_appended = atomic_load(&log->bytes_appended);
	out->records_quarantined = atomic_load(&log->records_quarantined);
	out->bytes_quarantined = atomic_load(&log->bytes_quarantined);
	out->bytes_truncated = atomic_load(&log->bytes_truncated);
	out->bad_segment_headers = atomic_load(&log->bad_segment_headers);
	out->fsync_failures = atomic_load(&log->fsync_failures);
	out->budget_refusals = atomic_load(&log->budget_refusals);
	out->last_index = atomic_load(&log->last_index);
	out->durable_index = atomic_load(&log->durable_index);
	out->max_bytes = atomic_load(&log->max_bytes);
	pthread_mutex_lock(&log->seg_lock);
	out->segments = log->nsegs;
	for (size_t i = 0; i < log->nsegs; i++) {
		out->disk_bytes += log->segs[i].bytes;
		if (!out->first_index && log->segs[i].first_record)
			out->first_index = log->segs[i].first_record;
	}
	pthread_mutex_unlock(&log->seg_lock);
}

void txlog_set_external_bytes(txlog *log, uint64_t bytes)
{
	atomic_store_explicit(&log->external_bytes, bytes, memory_order_relaxed);
}

uint64_t txlog_budget_room(txlog *log)
{
	uint64_t max_bytes = atomic_load_explicit(&log->max_bytes, memory_order_relaxed);
	if (!max_bytes)
		return UINT64_MAX;
	uint64_t used =
	    TXLOG_SEGMENT_HEADER + atomic_load_explicit(&log->external_bytes, memory_order_relaxed);
	pthread_mutex_lock(&log->seg_lock);
	for (size_t i = 0; i < log->nsegs; i++)
		used += log->segs[i].bytes;
	pthread_mutex_unlock(&log->seg_lock);
	return used >= max_bytes ? 0 : max_bytes - used;
}

void txlog_set_max_bytes(txlog *log, uint64_t max_bytes)
{
	atomic_store_explicit(&log->max_bytes, max_bytes, memory_order_relaxed);
}

void txlog_fsync_histogram(txlog *log, struct txlog_fsync_histogram *out)
{
	for (size_t i = 0; i <= TXLOG_FSYNC_BUCKETS; i++)
		out->count[i] = atomic_load_explicit(&log->fsync_buckets[i], memory_order_relaxed);
	out->sum_us = atomic_load_explicit(&log->fsync_sum_us, memory_order_relaxed);
}
