/* `trackctl sync` in the wandb sink: jobs that upload an offline run from the
 * local store's files. The contract is in sync.h; the query shapes in
 * wandb_sink.h (wandb_sink_sync). */
#include "sync.h"
#include "le.h"

#include "wandb_internal.h"

#include "clock.h"
#include "errors.h"
#include "trackd/v1/wire.h"
#include "fs.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_RECHECK_US (200 * 1000LL)

struct wb_sync {
	char *dir;    /* the local run dir */
	char *path;   /* entity/project/id in the local store, for messages */
	bool force;   /* this round starts from offset 0 */
	bool waiting; /* the local snapshot still says running: its checkpoint is pending */
	bool synced;
	int64_t next_check, started_us, done_us;
	uint64_t local_index;
	uint64_t h_total_lines, h_total_bytes, c_total_lines, c_total_bytes;
	uint64_t e_total_lines, e_total_bytes;
	uint64_t h_read, c_read, e_read;    /* file bytes read into memory */
	uint64_t h_acked, c_acked, e_acked; /* file bytes acknowledged (or skipped) */
};

/* ---- the progress record ------------------------------------------------------------ */

static const uint8_t progress_magic[8] = {'T', 'R', 'K', 'D', 'W', 'S', '0', '2'};
static const uint8_t progress_magic_v1[8] = {'T', 'R', 'K', 'D', 'W', 'S', '0', '1'};

void wb_sync_progress_encode(const struct wb_sync_progress *p, uint8_t out[WB_SYNC_PROGRESS_BYTES])
{
	memcpy(out, progress_magic, 8);
	for (int i = 0; i < 4; i++)
		out[8 + i] = (uint8_t)(p->flags >> (8 * i));
	put_le64(out + 12, p->local_index);
	put_le64(out + 20, p->history_lines);
	put_le64(out + 28, p->history_bytes);
	put_le64(out + 36, p->console_lines);
	put_le64(out + 44, p->console_bytes);
	put_le64(out + 52, p->events_lines);
	put_le64(out + 60, p->events_bytes);
}

int wb_sync_progress_decode(const uint8_t *data, size_t len, struct wb_sync_progress *p)
{
	bool v1 = len == WB_SYNC_PROGRESS_V1_BYTES && memcmp(data, progress_magic_v1, 8) == 0;
	if (!v1 && (len != WB_SYNC_PROGRESS_BYTES || memcmp(data, progress_magic, 8) != 0))
		return TRACKD_ECORRUPT;
	p->flags = get_le32(data + 8);
	p->local_index = get_le64(data + 12);
	p->history_lines = get_le64(data + 20);
	p->history_bytes = get_le64(data + 28);
	p->console_lines = get_le64(data + 36);
	p->console_bytes = get_le64(data + 44);
	p->events_lines = v1 ? 0 : get_le64(data + 52);
	p->events_bytes = v1 ? 0 : get_le64(data + 60);
	/* Every line ends in '\n': a line takes at least one byte. */
	if ((p->flags & ~WB_SYNC_SYNCED) || p->history_bytes < p->history_lines ||
	    p->console_bytes < p->console_lines || p->events_bytes < p->events_lines)
		return TRACKD_ECORRUPT;
	return TRACKD_OK;
}

size_t wb_sync_whole_lines(const char *data, size_t len)
{
	for (size_t i = len; i > 0; i--)
		if (data[i - 1] == '\n')
			return i;
	return 0;
}

/* ---- files ------------------------------------------------------------------------------ */

static void sync_dir(const struct wandb_sink *s, char *out, size_t len)
{
	snprintf(out, len, "%s/sync", s->dir);
}

/* The local store's run (local_store.h): the wandb sink reads it through the
 * store's reader API, never by its file names. */
static int read_local_snapshot(const char *dir, struct run **out)
{
	return local_store_load_run(dir, out);
}

static int read_progress(const struct wandb_sink *s, const char *id, struct wb_state *st,
                         struct wb_sync_progress *p)
{
	char dir[4200];
	sync_dir(s, dir, sizeof dir);
	int rv = wb_state_read(dir, id, st);
	if (rv)
		return rv;
	rv = wb_sync_progress_decode(st->snapshot, st->snapshot_len, p);
	if (rv)
		wb_state_fini(st);
	return rv;
}

/* ---- jobs --------------------------------------------------------------------------------- */

void wb_sync_free(struct wb_sync *j)
{
	if (!j)
		return;
	free(j->dir);
	free(j->path);
	free(j);
}

bool wb_sync_exhausted(const struct wb_run *wr)
{
	const struct wb_sync *j = wr->sync;
	return j && !j->waiting && j->h_read == j->h_total_bytes && j->c_read == j->c_total_bytes &&
	       j->e_read == j->e_total_bytes;
}

bool wb_sync_finished(const struct wb_run *wr)
{
	return wr->sync && wr->sync->synced;
}

int wb_sync_save(struct wandb_sink *s, struct wb_run *wr)
{
	struct wb_sync *j = wr->sync;
	struct wb_sync_progress p = {
	    .flags = j->synced ? WB_SYNC_SYNCED : 0,
	    .local_index = j->local_index,
	    .history_lines = wr->h_done,
	    .history_bytes = j->h_acked,
	    .console_lines = wr->c_done,
	    .console_bytes = j->c_acked,
	    .events_lines = wr->e_done,
	    .events_bytes = j->e_acked,
	};
	uint8_t payload[WB_SYNC_PROGRESS_BYTES];
	wb_sync_progress_encode(&p, payload);
	struct wb_state st = {
	    .flags = wr->upserted ? WB_STATE_UPSERTED : 0,
	    .history_base = wr->h_base,
	    .console_base = wr->c_base,
	    .history_skipped = wr->h_skipped,
	    .console_skipped = wr->c_skipped,
	    .events_base = wr->e_base,
	    .events_skipped = wr->e_skipped,
	    .entity = wr->up_entity,
	    .project = wr->up_project,
	    .snapshot = payload,
	    .snapshot_len = sizeof payload,
	};
	char dir[4200];
	sync_dir(s, dir, sizeof dir);
	int rv =
	    mkdir(dir, 0700) == 0 || errno == EEXIST ? TRACKD_OK : trackd_err_from_errno(errno);
	if (!rv)
		rv = wb_state_write(dir, wr->id, &st);
	if (rv) {
		atomic_fetch_add(&s->write_errors, 1);
		log_error("wandb: sync of run %s: cannot record its progress: %s (the next sync "
		          "re-sends from the last recorded offsets)",
		          wr->id, trackd_strerror(rv));
	}
	return rv;
}

/* A local problem (unreadable files): the job stops like a parked run, with the
 * reason; `trackctl sync` again tries anew. */
static void local_failure(struct wandb_sink *s, struct wb_run *wr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void local_failure(struct wandb_sink *s, struct wb_run *wr, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(wr->last_error, sizeof wr->last_error, fmt, ap);
	va_end(ap);
	wr->last_status = 0;
	log_error("wandb: sync of run %s stopped: %s", wr->id, wr->last_error);
	wb_park(s, wr);
}

/* (Re)loads the job from the local snapshot and its recorded progress. The run
 * must be offline and ended; an unsettled snapshot makes the job wait. */
static int load_job(struct wandb_sink *s, struct wb_run *wr)
{
	struct wb_sync *j = wr->sync;
	struct run *r = NULL;
	int rv = read_local_snapshot(j->dir, &r);
	if (rv == TRACKD_ENOENT) {
		j->waiting = true; /* a new run before its first checkpoint */
		return TRACKD_OK;
	}
	if (rv) {
		snprintf(wr->last_error, sizeof wr->last_error,
		         "cannot read the local snapshot of the run in %s: %s", j->dir,
		         trackd_strerror(rv));
		return rv;
	}
	wr->uid = r->uid;
	wr->uid_known = true;
	if (r->state == RUN_RUNNING) {
		/* The local sink writes the snapshot at its next checkpoint (~1 s). */
		run_free(r);
		j->waiting = true;
		return TRACKD_OK;
	}
	j->waiting = false;
	/* Same identity rule as an online run (wandb_sink.h). */
	if (!r->entity || !*r->entity || wb_is_default_entity(r->entity, r->uid)) {
		char *e = strdup(s->entity);
		if (!e) {
			run_free(r);
			return TRACKD_ENOMEM;
		}
		free(r->entity);
		r->entity = e;
	}
	struct wb_state st;
	struct wb_sync_progress p;
	rv = read_progress(s, wr->id, &st, &p);
	bool have = rv == 0;
	if (rv && rv != TRACKD_ENOENT)
		log_warn("wandb: sync of run %s: its recorded progress is unreadable (%s); "
		         "uploading it from the start",
		         wr->id, trackd_strerror(rv));
	if (have && (p.history_bytes > r->history_bytes || p.console_bytes > r->console_bytes ||
	             p.history_lines > r->history_lines || p.console_lines > r->console_lines ||
	             p.events_bytes > r->events_bytes || p.events_lines > r->events_lines ||
	             p.local_index > r->last_index)) {
		log_warn("wandb: sync of run %s: its recorded progress is past the local files; "
		         "uploading it from the start",
		         wr->id);
		p = (struct wb_sync_progress){0};
		st.history_skipped = st.console_skipped = st.events_skipped = 0;
	}
	free(wr->up_entity);
	free(wr->up_project);
	wr->up_entity = wr->up_project = NULL;
	wr->upserted = have && (st.flags & WB_STATE_UPSERTED);
	if (wr->upserted) {
		/* Where this run's lines start upstream, as the first sync learnt it. */
		wr->up_entity = st.entity;
		wr->up_project = st.project;
		st.entity = st.project = NULL;
		wr->h_base = st.history_base;
		wr->c_base = st.console_base;
		wr->e_base = st.events_base;
	} else {
		wr->h_base = wr->c_base = wr->e_base = 0;
	}
	if (have && !j->force) {
		wr->h_done = p.history_lines;
		wr->c_done = p.console_lines;
		wr->e_done = p.events_lines;
		wr->h_skipped = st.history_skipped;
		wr->c_skipped = st.console_skipped;
		wr->e_skipped = st.events_skipped;
		j->h_acked = j->h_read = p.history_bytes;
		j->c_acked = j->c_read = p.console_bytes;
		j->e_acked = j->e_read = p.events_bytes;
	} else {
		wr->h_done = wr->c_done = wr->h_skipped = wr->c_skipped = 0;
		wr->e_done = wr->e_skipped = 0;
		j->h_acked = j->h_read = j->c_acked = j->c_read = j->e_acked = j->e_read = 0;
	}
	if (have)
		wb_state_fini(&st);
	log_info("wandb: sync of run %s: %" PRIu64 " rows, %" PRIu64 " console lines and %" PRIu64
	         " system-metrics events, from row %" PRIu64 "%s",
	         wr->id, r->history_lines, r->console_lines, r->events_lines, wr->h_done,
	         j->force ? " (forced: from the start)" : "");
	/* Consumed: a retry of this round resumes what it has recorded. */
	j->force = false;
	j->local_index = r->last_index;
	j->h_total_lines = r->history_lines;
	j->h_total_bytes = r->history_bytes;
	j->c_total_lines = r->console_lines;
	j->c_total_bytes = r->console_bytes;
	j->e_total_lines = r->events_lines;
	j->e_total_bytes = r->events_bytes;
	j->synced = false;
	run_free(wr->run);
	wr->run = r;
	/* Everything goes up once more: metadata, summary, the end. */
	wr->meta_gen = 1;
	wr->meta_acked = 0;
	wr->sum_gen = 1;
	wr->sum_acked = 0;
	wr->end_gen = 1;
	wr->end_acked = 0;
	wr->more = false;
	wr->attempts = 0;
	wr->retry_at = 0;
	wr->last_error[0] = '\0';
	wr->phase = WB_ATTACHED;
	/* Its files (media, saved, config.yaml, wandb-summary.json) go up too;
	 * the job is synced once they are up and listed. */
	wb_files_note_local_run(s, wr, j->dir);
	return TRACKD_OK;
}

int wb_sync_read_lines(const char *dir, enum local_store_file file, uint64_t *read_off,
                       uint64_t total, size_t want, struct buf *into, uint64_t *added, char *why,
                       size_t whylen)
{
	if (*read_off >= total)
		return TRACKD_OK; /* nothing left */
	char path[4200];          /* for messages */
	snprintf(path, sizeof path, "%s/%s", dir, local_store_file_name(file));
	int fd;
	int orv = local_store_open(dir, file, &fd);
	if (orv) {
		snprintf(why, whylen, "cannot open %s: %s", path, trackd_strerror(orv));
		return TRACKD_EIO;
	}
	int rv = TRACKD_OK;
	char *tmp = NULL;
	if (want == 0)
		want = 1;
	for (;;) {
		uint64_t left = total - *read_off;
		size_t n = want < left ? want : (size_t)left;
		char *p = realloc(tmp, n ? n : 1);
		if (!p) {
			rv = TRACKD_ENOMEM;
			break;
		}
		tmp = p;
		size_t got = 0;
		while (got < n) {
			ssize_t k = pread(fd, tmp + got, n - got, (off_t)(*read_off + got));
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				break;
			got += (size_t)k;
		}
		if (got < n) {
			snprintf(why, whylen,
			         "%s is shorter than the run's snapshot records (%" PRIu64
			         " bytes)",
			         path, total);
			rv = TRACKD_ECORRUPT;
			break;
		}
		size_t whole = wb_sync_whole_lines(tmp, got);
		if (whole == 0 && n < left) {
			want = n * 2; /* one line longer than a request's worth: read it whole */
			continue;
		}
		if (whole == 0 || (n == left && whole != got)) {
			snprintf(why, whylen, "%s does not end with a whole line at byte %" PRIu64,
			         path, total);
			rv = TRACKD_ECORRUPT;
			break;
		}
		rv = buf_append(into, tmp, whole);
		if (rv) {
			snprintf(why, whylen, "no memory for the lines of %s", path);
			break;
		}
		*read_off += whole;
		*added += whole;
		break;
	}
	free(tmp);
	close(fd);
	return rv;
}

static void refill(struct wandb_sink *s, struct wb_run *wr)
{
	struct wb_sync *j = wr->sync;
	size_t per_file = s->opts.max_request_bytes;
	struct {
		enum local_store_file file;
		uint64_t *read, total;
		struct buf *b;
		size_t head;
	} files[] = {
	    {LOCAL_STORE_HISTORY, &j->h_read, j->h_total_bytes, &wr->hist, wr->h_head},
	    {LOCAL_STORE_CONSOLE, &j->c_read, j->c_total_bytes, &wr->cons, wr->c_head},
	    {LOCAL_STORE_EVENTS, &j->e_read, j->e_total_bytes, &wr->evts, wr->e_head},
	};
	for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
		size_t buffered = files[i].b->len - files[i].head;
		if (*files[i].read >= files[i].total || buffered >= per_file / 2)
			continue;
		/* The sink's bound on unsent lines holds for sync jobs too. */
		if (s->buffered >= s->opts.max_buffer_bytes)
			return;
		uint64_t added = 0;
		char why[300];
		int rv =
		    wb_sync_read_lines(j->dir, files[i].file, files[i].read, files[i].total,
		                       per_file - buffered, files[i].b, &added, why, sizeof why);
		s->buffered += added;
		if (rv) {
			local_failure(s, wr, "%s", why);
			return;
		}
	}
}

void wb_sync_tick(struct wandb_sink *s, int64_t now)
{
	for (size_t i = 0; i < s->n_runs; i++) {
		struct wb_run *wr = s->runs[i];
		struct wb_sync *j = wr->sync;
		if (!j || wr->phase != WB_ATTACHED || j->synced)
			continue;
		if (j->waiting) {
			if (now < j->next_check)
				continue;
			j->next_check = now + WAIT_RECHECK_US;
			int rv = load_job(s, wr);
			if (rv)
				local_failure(s, wr, "%s", wr->last_error);
			continue;
		}
		if (!wr->xfer && wr->run)
			refill(s, wr);
	}
}

void wb_sync_acked(struct wandb_sink *s, struct wb_run *wr, const struct wb_transfer *t)
{
	struct wb_sync *j = wr->sync;
	j->h_acked += t->out.history_bytes;
	j->c_acked += t->out.console_bytes;
	j->e_acked += t->out.events_bytes;
	if (wr->end_acked == wr->end_gen && wb_sync_exhausted(wr) && wr->hist.len == wr->h_head &&
	    wr->cons.len == wr->c_head && wr->evts.len == wr->e_head &&
	    wr->sum_acked == wr->sum_gen && wr->meta_acked == wr->meta_gen &&
	    !wb_files_pending(s, wr)) {
		j->synced = true;
		j->done_us = clock_mono_us();
	}
	if (wb_sync_save(s, wr) != 0 && j->synced) {
		/* Not marked on disk: the next sync sends the last request again. */
		log_warn("wandb: run %s synced, but not recorded as such", wr->id);
	}
	if (j->synced) {
		char url[4096];
		wb_run_url(s, wr, url, sizeof url);
		log_info("wandb: run %s synced: %" PRIu64 " rows, %" PRIu64
		         " console lines, %" PRIu64 " events%s%s",
		         wr->id, wr->h_done, wr->c_done, wr->e_done, *url ? " → " : "", url);
	}
}

void wb_sync_reattach(struct wandb_sink *s, struct wb_run *wr)
{
	struct wb_sync *j = wr->sync;
	wb_run_reset(s, wr);
	wr->phase = WB_ATTACHED;
	j->started_us = clock_mono_us();
	int rv = load_job(s, wr);
	if (rv)
		local_failure(s, wr, "%s", wr->last_error);
}

/* ---- queries ------------------------------------------------------------------------------ */

static const char *job_state(const struct wb_run *wr, int64_t now)
{
	const struct wb_sync *j = wr->sync;
	if (wr->phase == WB_PARKED)
		return "parked";
	if (j->synced)
		return "synced";
	if (j->waiting)
		return "waiting";
	if (wr->retry_at > now)
		return "retrying";
	return "uploading";
}

/* The job's progress (malloc'd throughout) in *out. `already`: a start that
 * found the run synced and had nothing to do. */
static int progress(struct wandb_sink *s, const struct wb_run *wr, bool already,
                    Trackd__V1__SyncProgress **out)
{
	const struct wb_sync *j = wr->sync;
	int64_t now = clock_mono_us();
	char url[4096];
	wb_run_url(s, wr, url, sizeof url);
	int64_t end = j->synced ? j->done_us : now;
	Trackd__V1__SyncProgress p = TRACKD__V1__SYNC_PROGRESS__INIT;
	p.id = wr->id;
	p.path = j->path;
	p.state = (char *)job_state(wr, now);
#define SET(f, v) (p.has_##f = true, p.f = (v))
	SET(rows, wr->h_done);
	SET(rows_total, j->h_total_lines);
	SET(console_lines, wr->c_done);
	SET(console_total, j->c_total_lines);
	/* Bytes count the run's files too: a run of large checkpoints shows
	 * its upload moving. */
	uint64_t files_up, files_total;
	wb_files_bytes(wr, &files_up, &files_total);
	SET(bytes, j->h_acked + j->c_acked + j->e_acked + files_up);
	SET(bytes_total, j->h_total_bytes + j->c_total_bytes + j->e_total_bytes + files_total);
	SET(lines_skipped, wr->h_skipped + wr->c_skipped + wr->e_skipped);
	SET(attempts, wr->attempts);
	SET(last_status, wr->last_status);
	SET(elapsed_ms, (end - j->started_us) / 1000);
	p.last_error = (char *)wr->last_error;
	p.run_url = url;
	if (already)
		SET(already, true);
	*out = (Trackd__V1__SyncProgress *)wire_copy(&p.base);
	return *out ? TRACKD_OK : TRACKD_ENOMEM;
}

/* Whether the recorded progress says `id` is synced as of local index `index`. */
static bool synced_on_disk(const struct wandb_sink *s, const char *id, uint64_t index,
                           struct wb_sync_progress *p)
{
	struct wb_state st;
	if (read_progress(s, id, &st, p) != 0) {
		memset(p, 0, sizeof *p);
		return false;
	}
	wb_state_fini(&st);
	return (p->flags & WB_SYNC_SYNCED) && p->local_index == index;
}

/* The answer for a run without a job in memory, from its recorded progress;
 * `r` is its local snapshot (NULL: none yet). */
static int disk_progress(struct wandb_sink *s, const char *id, const char *path,
                         const struct run *r, Trackd__V1__SyncProgress **out)
{
	struct wb_sync_progress d;
	bool synced = r && synced_on_disk(s, id, r->last_index, &d);
	if (!r)
		memset(&d, 0, sizeof d);
	Trackd__V1__SyncProgress p = TRACKD__V1__SYNC_PROGRESS__INIT;
	p.id = (char *)id;
	p.path = (char *)path;
	p.state = synced ? "synced" : "idle";
	SET(rows, d.history_lines);
	SET(rows_total, r ? r->history_lines : 0);
	SET(bytes, d.history_bytes + d.console_bytes + d.events_bytes);
	SET(bytes_total, r ? r->history_bytes + r->console_bytes + r->events_bytes : 0);
	SET(already, true);
#undef SET
	*out = (Trackd__V1__SyncProgress *)wire_copy(&p.base);
	return *out ? TRACKD_OK : TRACKD_ENOMEM;
}

static int count_jobs(const struct wandb_sink *s)
{
	int n = 0;
	for (size_t i = 0; i < s->n_runs; i++)
		n += s->runs[i]->sync != NULL && !s->runs[i]->sync->synced &&
		     s->runs[i]->phase == WB_ATTACHED; /* parked ones hold no lines */
	return n;
}

static struct wb_sync *job_new(const struct wandb_sync_target *t, bool force)
{
	struct wb_sync *j = calloc(1, sizeof *j);
	if (!j || !(j->dir = strdup(t->dir)) || !(j->path = strdup(t->path))) {
		wb_sync_free(j);
		return NULL;
	}
	j->force = force;
	j->started_us = clock_mono_us();
	j->next_check = 0;
	return j;
}

/* `r`: the local snapshot, NULL before the run's first checkpoint. */
static int start(struct wandb_sink *s, const char *ref, bool force, const char *id,
                 const struct wandb_sync_target *t, const struct run *r,
                 Trackd__V1__SyncProgress **out, char *err, size_t errlen)
{
	struct wb_run *wr = wb_find(s, id);
	if (wr && !wr->sync && wr->phase != WB_OFFLINE) {
		snprintf(err, errlen, "run '%s' is being uploaded by the agent as an online run",
		         ref);
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	if (wr && wr->sync) {
		struct wb_sync *j = wr->sync;
		/* Parked: tried anew; synced: again if forced or changed since; else the
		 * job in progress is joined. */
		if (wr->phase == WB_PARKED ||
		    (j->synced && (force || !r || j->local_index != r->last_index))) {
			j->force = force;
			j->synced = false;
			wb_sync_reattach(s, wr);
			return progress(s, wr, false, out);
		}
		return progress(s, wr, j->synced, out);
	}
	struct wb_sync_progress p;
	if (!force && r && synced_on_disk(s, id, r->last_index, &p))
		return disk_progress(s, id, t->path, r, out); /* nothing to do */
	if (count_jobs(s) >= WB_SYNC_MAX_JOBS) {
		snprintf(err, errlen,
		         "%d syncs are in progress already: try again when some have finished",
		         WB_SYNC_MAX_JOBS);
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	struct wb_sync *j = job_new(t, force);
	if (!j)
		return TRACKD_ENOMEM;
	if (!wr) {
		wr = wb_run_add(s, id);
		if (!wr) {
			wb_sync_free(j);
			return TRACKD_ENOMEM;
		}
	}
	/* An offline run the sink holds (its records are skipped): it becomes the job. */
	wr->sync = j;
	wr->phase = WB_ATTACHED;
	wr->uid = t->owner;
	wr->uid_known = true;
	if (load_job(s, wr) != 0)
		local_failure(s, wr, "%s", wr->last_error);
	return progress(s, wr, false, out);
}

int wandb_sink_sync(wandb_sink *s, bool is_start, bool force, const char *ref,
                    const struct wandb_sync_target *t, uint32_t uid, bool admin,
                    Trackd__V1__SyncProgress **out, char *err, size_t errlen)
{
	*out = NULL;
	ref = ref ? ref : "";
	if (!admin && t->owner != uid) {
		snprintf(err, errlen, "run '%s' belongs to another user (uid %u)", ref, t->owner);
		return TRACKD__V1__ERROR_CODE__ERROR_PERMISSION_DENIED;
	}
	if (!t->offline) {
		snprintf(err, errlen,
		         "run '%s' is not an offline run: the agent uploads online runs as they "
		         "run (trackctl status shows how far); trackctl sync is for offline runs",
		         ref);
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	if (is_start && t->running) {
		snprintf(err, errlen, "run '%s' is still running: sync it once it has ended", ref);
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	const char *slash = strrchr(t->path, '/');
	const char *id = slash ? slash + 1 : t->path;
	/* The local snapshot: read outside the sink's lock (it may be large). */
	struct run *r = NULL;
	int rv = read_local_snapshot(t->dir, &r);
	if (rv && rv != TRACKD_ENOENT) {
		snprintf(err, errlen, "run '%s': its local snapshot is unreadable: %s", ref,
		         trackd_strerror(rv));
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	pthread_mutex_lock(&s->mu);
	if (is_start) {
		rv = start(s, ref, force, id, t, r, out, err, errlen);
	} else {
		struct wb_run *wr = wb_find(s, id);
		rv = wr && wr->sync ? progress(s, wr, false, out)
		                    : disk_progress(s, id, t->path, r, out);
	}
	pthread_mutex_unlock(&s->mu);
	run_free(r);
	if (is_start && rv == 0)
		curl_multi_wakeup(s->multi); /* start now, not at the next poll */
	if (rv < 0) {
		snprintf(err, errlen, "cannot answer: %s", trackd_strerror(rv));
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	return rv;
}
