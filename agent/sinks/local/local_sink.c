#include "local_sink_internal.h"

#include "clock.h"
#include "environment.h"
#include "errors.h"
#include "files.h"
#include "json_write.h"
#include "log.h"
#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CURSOR_NAME       "local"
#define LINE_BUF_MAX      (256u << 20) /* pending appended lines of one run */
#define ENTRIES_PER_ROUND 256          /* log entries applied per lock hold */
#define STALL_RETRY_MS    500          /* retry of failing disk writes */
/* Lines applied but not yet appended to the run files, all runs together: at
 * this much they are written out within the round (a round of 256 entries of
 * up to 4 MiB each would otherwise hold up to 1 GiB), and a run's buffer keeps
 * at most this much memory between flushes. */
#define PENDING_FLUSH_BYTES (1u << 20)

static void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- run directories ---------------------------------------------------------- */

static void active_free(struct active_run *ar)
{
	if (!ar)
		return;
	run_free(ar->run);
	series_writer_free(ar->series);
	free(ar->row_values);
	free(ar->dir);
	free(ar->client_root);
	buf_fini(&ar->history_out);
	buf_fini(&ar->console_out);
	buf_fini(&ar->events_out);
	free(ar);
}

static struct active_run *active_new(struct run *r, const char *dir)
{
	struct active_run *ar = calloc(1, sizeof *ar);
	if (!ar)
		return NULL;
	ar->dir = strdup(dir);
	if (!ar->dir) {
		free(ar);
		return NULL;
	}
	ar->run = r;
	buf_init(&ar->history_out, LINE_BUF_MAX);
	buf_init(&ar->console_out, LINE_BUF_MAX);
	buf_init(&ar->events_out, LINE_BUF_MAX);
	return ar;
}

static int project_dir(struct local_sink *s, const char *entity, const char *project, char *out,
                       size_t len)
{
	char e[300], p[300];
	path_component(entity, e, sizeof e);
	path_component(project, p, sizeof p);
	return snprintf(out, len, "%s/%s/%s", s->runs_dir, e, p) < (int)len ? TRACKD_OK
	                                                                    : TRACKD_EINVAL;
}

/* Looks for "run-*-<id>" in one project dir. */
static int find_in_project(const char *pdir, const char *id, char *out, size_t len)
{
	return local_store_find_in_project(pdir, id, out, len);
}

static int find_anywhere(struct local_sink *s, const char *id, char *out, size_t len)
{
	return local_store_find_run(s->runs_dir, id, out, len);
}

int sink_load_snapshot(const char *dir, struct run **out)
{
	return local_store_load_run(dir, out);
}

struct active_run *sink_find_active(struct local_sink *s, const char *ref)
{
	const char *slash = strrchr(ref, '/');
	const char *id = slash ? slash + 1 : ref;
	for (size_t i = 0; i < s->n_active; i++) {
		struct run *r = s->active[i]->run;
		if (strcmp(r->id, id) != 0)
			continue;
		if (!slash)
			return s->active[i];
		char path[1024];
		snprintf(path, sizeof path, "%s/%s/%s", r->entity, r->project, r->id);
		if (strcmp(path, ref) == 0)
			return s->active[i];
	}
	return NULL;
}

int sink_resolve_dir(struct local_sink *s, const char *ref, char *dir, size_t len)
{
	struct active_run *ar = sink_find_active(s, ref);
	if (ar)
		return snprintf(dir, len, "%s", ar->dir) < (int)len ? TRACKD_OK : TRACKD_EINVAL;
	/* entity/project/id: look in that project only. */
	const char *last = strrchr(ref, '/');
	if (last) {
		const char *first = strchr(ref, '/');
		if (first == last)
			return TRACKD_ENOENT;
		char entity[300], project[300];
		snprintf(entity, sizeof entity, "%.*s", (int)(first - ref), ref);
		snprintf(project, sizeof project, "%.*s", (int)(last - first - 1), first + 1);
		char pdir[4096];
		if (project_dir(s, entity, project, pdir, sizeof pdir) != 0)
			return TRACKD_EINVAL;
		return find_in_project(pdir, last + 1, dir, len);
	}
	return find_anywhere(s, ref, dir, len);
}

static void entity_for_uid(uint32_t uid, char *out, size_t len)
{
	struct passwd pw, *res = NULL;
	char buf[1024];
	if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res)
		snprintf(out, len, "%s", res->pw_name);
	else
		snprintf(out, len, "uid%u", uid);
}

/* ---- disk full: stall ------------------------------------------------------------- */

/* A write of the run files failed (disk full, I/O error). Nothing is dropped:
 * the sink stops applying records (its cursor stays, so the log keeps them and,
 * once the disk fills, refuses new batches with a retryable error) and retries
 * every STALL_RETRY_MS; see retry_stalled. Logged once per stall. */
static void note_write_failure(struct local_sink *s, const char *what, int rv)
{
	count(&s->write_errors);
	if (!s->stall_reported)
		log_error("local sink: cannot %s: %s; applying records is paused until writes "
		          "succeed (the log keeps them)",
		          what, trackd_strerror(rv));
	s->stall_reported = true;
	atomic_store(&s->write_stalled, true);
}

/* ---- routing records to runs ------------------------------------------------------- */

static int add_active(struct local_sink *s, struct active_run *ar)
{
	if (s->n_active >= s->opts.max_active_runs)
		return TRACKD_ETOOBIG;
	struct active_run **p = realloc(s->active, (s->n_active + 1) * sizeof *p);
	if (!p)
		return TRACKD_ENOMEM;
	s->active = p;
	s->active[s->n_active++] = ar;
	return TRACKD_OK;
}

/* The index rows a run's snapshot vouches for; for a snapshot from an agent
 * without the index, the rows of an index built from history.jsonl (once:
 * its `legacy` file says how many rows it holds). */
/* A build of the series index going on: the sink is busy, not stuck. */
static void build_tick(void *arg)
{
	struct local_sink *s = arg;
	atomic_store(&s->heartbeat_us, clock_mono_us());
}

int sink_series_rows(struct local_sink *s, const char *dir, const struct run *r, uint64_t *rows)
{
	if (r->has_series_rows) {
		*rows = r->series_rows;
		if (series_holds(dir, *rows))
			return TRACKD_OK;
		log_warn("local sink: the series index of %s lacks rows its snapshot counts "
		         "(removed?): rebuilding it from history.jsonl",
		         dir);
	} else if (series_legacy_rows(dir, rows) == 0 && *rows == r->history_lines) {
		return TRACKD_OK;
	} else {
		log_info("local sink: building the series index of %s from its history.jsonl "
		         "(once: it was stored by an agent without the index)",
		         dir);
	}
	int rv = series_build_from_history(dir, r->history_bytes, rows, build_tick, s);
	if (!rv && *rows != r->history_lines)
		log_warn("local sink: %s: history.jsonl holds %" PRIu64
		         " rows, its snapshot %" PRIu64,
		         dir, *rows, r->history_lines);
	return rv;
}

int sink_series_attach(struct local_sink *s, struct active_run *ar)
{
	struct run *r = ar->run;
	uint64_t rows = 0;
	int rv = sink_series_rows(s, ar->dir, r, &rows);
	if (!rv) {
		rv = series_writer_open(ar->dir, rows, &ar->series);
		if (rv == TRACKD_ECORRUPT) { /* the index lost rows its snapshot counted */
			log_warn("local sink: the series index of %s is short; rebuilding it from "
			         "history.jsonl",
			         ar->dir);
			rv = series_build_from_history(ar->dir, r->history_bytes, &rows, build_tick,
			                               s);
			if (!rv)
				rv = series_writer_open(ar->dir, rows, &ar->series);
		}
	}
	if (rv) {
		log_error("local sink: cannot open the series index of %s: %s (rebuilt at the "
		          "next load)",
		          ar->dir, trackd_strerror(rv));
		r->has_series_rows = false;
		return rv;
	}
	series_set_dropped_base(ar->series, r->series_dropped);
	return TRACKD_OK;
}

/* run_apply's on_row: the row's numbers into the series index. */
static int index_row(void *arg, const struct run_row *row)
{
	struct active_run *ar = arg;
	if (!ar->series)
		return TRACKD_OK;
	if (row->index != series_rows(ar->series)) {
		if (!ar->series_warned)
			log_error("local sink: run %s: row %" PRIu64 " does not follow the series "
			          "index's %" PRIu64 " rows; not indexed",
			          ar->run->id, row->index, series_rows(ar->series));
		ar->series_warned = true;
		return TRACKD_OK;
	}
	const struct vmap *m = row->values;
	if (m->n > ar->row_values_cap) {
		struct series_value *p = realloc(ar->row_values, m->n * sizeof *p);
		if (!p)
			return TRACKD_ENOMEM;
		ar->row_values = p;
		ar->row_values_cap = m->n;
	}
	size_t n = 0;
	for (size_t i = 0; i < m->n; i++) {
		const struct vvalue *v = &m->items[i].v;
		if (v->kind == V_DOUBLE)
			ar->row_values[n++] = (struct series_value){m->items[i].key, v->u.d};
		else if (v->kind == V_INT)
			ar->row_values[n++] =
			    (struct series_value){m->items[i].key, (double)v->u.i};
	}
	return series_add_row(ar->series, row->step, row->runtime, row->timestamp, ar->row_values,
	                      n);
}

/* Brings a run that exists on disk back into memory, its files cut back to the
 * lengths of its last checkpoint (lines after that were written by a sink that
 * stopped before checkpointing, and will be written again). */
static struct active_run *reopen(struct local_sink *s, const char *dir)
{
	struct run *r;
	if (sink_load_snapshot(dir, &r) != 0)
		return NULL;
	file_truncate(dir, HISTORY_FILE, r->history_bytes);
	file_truncate(dir, CONSOLE_FILE, r->console_bytes);
	file_truncate(dir, EVENTS_FILE, r->events_bytes);
	struct active_run *ar = active_new(r, dir);
	if (!ar || add_active(s, ar) != 0) {
		if (ar)
			active_free(ar);
		else
			run_free(r);
		return NULL;
	}
	sink_series_attach(s, ar); /* cut back to the snapshot's rows, as the files above */
	return ar;
}

static struct active_run *open_for_start(struct local_sink *s, const char *id,
                                         const Trackd__V1__RunStart *start,
                                         const struct record_origin *o)
{
	char entity[300], pdir[4096], dir[4096];
	if (start->entity && *start->entity)
		snprintf(entity, sizeof entity, "%s", start->entity);
	else
		entity_for_uid(o->uid, entity, sizeof entity);
	const char *project = start->project && *start->project ? start->project : "uncategorized";
	if (project_dir(s, entity, project, pdir, sizeof pdir) != 0)
		return NULL;
	if (find_in_project(pdir, id, dir, sizeof dir) == 0) {
		struct active_run *ar = reopen(s, dir);
		if (ar)
			return ar; /* resume: run_apply attaches the new process */
		/* A run dir without a snapshot: its first checkpoint never happened, so
		 * everything in it is replayed from the log. */
	}
	Trackd__V1__RunStart st = *start;
	st.entity = entity;
	st.project = (char *)project;
	/* Without a display name, run_new makes one from the id, as the wandb sink's. */
	struct run *r;
	if (run_new(id, &st, o, &r) != 0)
		return NULL;
	if (snprintf(dir, sizeof dir, "%s/%s", pdir, r->dir_name) >= (int)sizeof dir) {
		log_error("local sink: run dir path too long: %s/%s", pdir, r->dir_name);
		run_free(r);
		return NULL;
	}
	int rv = mkdir_parents(dir, 0700);
	if (rv != 0) {
		/* Disk full or failing: the start is retried, not dropped (see stall). */
		s->create_error = rv;
		run_free(r);
		return NULL;
	}
	/* A half-written earlier attempt at this same run: start its files afresh. */
	file_truncate(dir, HISTORY_FILE, 0);
	file_truncate(dir, CONSOLE_FILE, 0);
	series_remove(dir);
	file_truncate(dir, EVENTS_FILE, 0);
	struct active_run *ar = active_new(r, dir);
	if (!ar || add_active(s, ar) != 0) {
		if (ar)
			active_free(ar);
		else
			run_free(r);
		return NULL;
	}
	r->has_series_rows = true; /* a new run: its index starts empty */
	sink_series_attach(s, ar);
	ar->files_dirty = ar->checkpoint_dirty = true;
	return ar;
}

/* A client's record for a run the store has never seen: the run's start record
 * is gone from the log (quarantined as damaged, or cut by a power loss before a
 * sync reached it). Its later records were acknowledged and are intact, so they
 * are kept, in a run made without the start: the client's uid as entity, the
 * project RECOVERED_PROJECT, no config; the log says so. */
static struct active_run *recover_run(struct local_sink *s, const char *id,
                                      const struct record_origin *o)
{
	Trackd__V1__RunStart start = TRACKD__V1__RUN_START__INIT;
	start.project = (char *)RECOVERED_PROJECT;
	start.has_pid = true;
	start.pid = o->pid;
	start.has_start_time_us = true;
	start.start_time_us = o->recv_time_us;
	struct active_run *ar = open_for_start(s, id, &start, o);
	if (ar) {
		count(&s->runs_recovered);
		log_warn("local sink: run %s has no start record in the log (lost to damage or a "
		         "power cut); its records from index %" PRIu64 " on are kept in project %s",
		         id, o->index, RECOVERED_PROJECT);
	}
	return ar;
}

static struct active_run *route(struct local_sink *s, const Trackd__V1__Record *rec,
                                const struct record_origin *o)
{
	struct active_run *ar = sink_find_active(s, rec->run_id);
	if (rec->body_case == TRACKD__V1__RECORD__BODY_START) {
		if (ar)
			return ar;
		return open_for_start(s, rec->run_id, rec->start, o);
	}
	if (ar)
		return ar;
	char dir[4096];
	if (find_anywhere(s, rec->run_id, dir, sizeof dir) == 0)
		return reopen(s, dir);
	/* The agent's own records (pid 0: crash marks, renames) never make a run. */
	if (o->pid > 0)
		return recover_run(s, rec->run_id, o);
	return NULL;
}

/* An artifact record: applied to the artifact store (artifacts.h), and
 * noted in the run's artifacts.jsonl ({"logged"|"used": "entity/project/
 * name:vN"}), the run's side of the lineage (a replay may note it twice). */
static void apply_artifact(struct local_sink *s, struct active_run *ar,
                           const Trackd__V1__Record *rec, const struct record_origin *o)
{
	if (!s->opts.artifacts)
		return;
	const struct run *r = ar->run;
	struct artifacts_origin ao = {.uid = o->uid,
	                              .entity = r->entity ? r->entity : "",
	                              .project = r->project ? r->project : "",
	                              .run_id = r->id,
	                              .time_us = o->recv_time_us,
	                              .index = o->index,
	                              .position = s->applying_position};
	char err[512] = "", ref[1024];
	uint32_t version = 0;
	int rv;
	const char *key;
	if (rec->body_case == TRACKD__V1__RECORD__BODY_LOG_ARTIFACT) {
		rv = artifacts_apply_log(s->opts.artifacts, &ao, rec->log_artifact, &version, err,
		                         sizeof err);
		key = "logged";
		snprintf(ref, sizeof ref, "%.300s/%.300s/%.200s:v%" PRIu32, ao.entity, ao.project,
		         rec->log_artifact->name ? rec->log_artifact->name : "", version);
	} else if (rec->body_case == TRACKD__V1__RECORD__BODY_ARTIFACT_CHANGE) {
		/* The agent's own record: its store is the uid it names. */
		rv = artifacts_apply_change(s->opts.artifacts, &ao, rec->artifact_change, err,
		                            sizeof err);
		if (rv == TRACKD_ENOENT) {
			log_warn("local sink: artifact change at index %" PRIu64 ": %s", o->index,
			         err);
			return;
		}
		if (!rv)
			log_info("artifact %s changed (%s)", rec->artifact_change->artifact,
			         rec->artifact_change->delete_ ? "deleted" : "aliases");
		if (rv)
			count(&s->write_errors);
		if (rv)
			log_error("local sink: artifact change at index %" PRIu64
			          " not applied: %s",
			          o->index, err[0] ? err : trackd_strerror(rv));
		return;
	} else {
		rv =
		    artifacts_apply_use(s->opts.artifacts, &ao, rec->use_artifact, err, sizeof err);
		key = "used";
		snprintf(ref, sizeof ref, "%.1000s",
		         rec->use_artifact->artifact ? rec->use_artifact->artifact : "");
	}
	if (rv) {
		count(&s->write_errors);
		log_error("local sink: run %s: artifact record at index %" PRIu64
		          " not applied: %s",
		          r->id, o->index, err[0] ? err : trackd_strerror(rv));
		return;
	}
	struct buf line;
	buf_init(&line, 8192);
	int wrv = buf_printf(&line, "{\"%s\":", key);
	wrv = wrv ? wrv : json_write_string(&line, ref);
	wrv = wrv ? wrv : buf_puts(&line, "}\n");
	if (wrv || file_append(ar->dir, ARTIFACTS_NOTE_FILE, line.data, line.len) != 0)
		log_warn("local sink: run %s: cannot note the artifact in %s", r->id,
		         ARTIFACTS_NOTE_FILE);
	buf_fini(&line);
}

static void apply_record(struct local_sink *s, const Trackd__V1__Record *rec,
                         const struct record_origin *o)
{
	struct active_run *ar = route(s, rec, o);
	if (!ar) {
		count(&s->records_orphaned);
		log_warn("local sink: record for unknown run %s skipped (index %" PRIu64 ")",
		         rec->run_id, o->index);
		return;
	}
	struct run *r = ar->run;
	/* Exactly once: a whole entry at or below the run's checkpointed index was
	 * applied before; within the entry being applied, every record counts. */
	if (o->index < r->last_index ||
	    (o->index == r->last_index && ar->applying_index != o->index))
		return;
	ar->applying_index = o->index;
	struct run_effects fx = {.history = &ar->history_out,
	                         .console = &ar->console_out,
	                         .events = &ar->events_out,
	                         .on_row = index_row,
	                         .row_arg = ar};
	enum run_state before = r->state;
	size_t attached_before = r->n_attached;
	size_t pending_before = ar->history_out.len + ar->console_out.len + ar->events_out.len;
	int rv = run_apply(r, rec, o, &fx);
	s->pending_bytes +=
	    ar->history_out.len + ar->console_out.len + ar->events_out.len - pending_before;
	/* Which processes are live changed only by a start, an exit or a new
	 * process logging: the sampler's view is rebuilt then, not per record. */
	if (r->state != before || r->n_attached != attached_before ||
	    rec->body_case == TRACKD__V1__RECORD__BODY_START ||
	    rec->body_case == TRACKD__V1__RECORD__BODY_EXIT ||
	    (rec->body_case == TRACKD__V1__RECORD__BODY_STATS && rec->stats->n_bases))
		s->live_dirty = true;
	if (before == RUN_RUNNING && r->state != RUN_RUNNING)
		++*(r->state == RUN_FINISHED  ? &s->ended_finished
		    : r->state == RUN_FAILED  ? &s->ended_failed
		    : r->state == RUN_CRASHED ? &s->ended_crashed
		                              : &s->ended_killed);
	if (rv != 0) {
		count(&s->write_errors);
		log_error("local sink: run %s: record at index %" PRIu64 " not applied: %s", r->id,
		          o->index, trackd_strerror(rv));
	}
	if (fx.step_rejected) {
		count(&s->rows_rejected);
		log_warn("run %s: a row for a step lower than the current step %" PRId64
		         " was dropped",
		         r->id, r->step);
	}
	if (rec->body_case == TRACKD__V1__RECORD__BODY_LOG_ARTIFACT ||
	    rec->body_case == TRACKD__V1__RECORD__BODY_USE_ARTIFACT ||
	    rec->body_case == TRACKD__V1__RECORD__BODY_ARTIFACT_CHANGE)
		apply_artifact(s, ar, rec, o);
	if ((rec->body_case == TRACKD__V1__RECORD__BODY_HISTORY ||
	     rec->body_case == TRACKD__V1__RECORD__BODY_FILE) &&
	    sink_materialise_files(s, ar, rec, o->uid) > 0)
		count(&s->write_errors);
	/* The run's environment: a whole file, replaced (a replay writes the same),
	 * the client's process facts over the agent's (environment.h). */
	int wrv = TRACKD_OK;
	if (rec->body_case == TRACKD__V1__RECORD__BODY_METADATA && rec->metadata->json)
		wrv = environment_apply_agent(ar->dir, rec->metadata->json);
	else if (rec->body_case == TRACKD__V1__RECORD__BODY_ENVIRONMENT) {
		wrv = environment_apply_client(ar->dir, rec->environment);
		if (rec->environment->root && rec->environment->root[0] == '/') {
			char *root = strdup(rec->environment->root);
			if (root) {
				free(ar->client_root);
				ar->client_root = root;
				ar->client_root_read = true;
				s->live_dirty = true;
			}
		}
	}
	if (wrv) {
		count(&s->write_errors);
		log_error("local sink: run %s: cannot write %s: %s", r->id, ENVIRONMENT_FILE,
		          trackd_strerror(wrv));
	}
	ar->files_dirty |= fx.summary_changed || fx.config_changed || fx.meta_changed;
	ar->checkpoint_dirty = true;
	count(&s->records_applied);
}

/* Applies one log entry: 0, or TRACKD_EAGAIN when a run it starts could not be
 * created on disk — then nothing of the entry was applied, and it is retried. */
static int apply_entry(struct local_sink *s, uint64_t index, const void *data, size_t len)
{
	Trackd__V1__LogEntry *e = trackd__v1__log_entry__unpack(NULL, len, data);
	if (!e || !e->batch) {
		count(&s->records_orphaned);
		log_error("local sink: log entry %" PRIu64 " does not decode; skipped", index);
		trackd__v1__log_entry__free_unpacked(e, NULL);
		return TRACKD_OK;
	}
	struct record_origin o = {.index = index,
	                          .uid = e->peer_uid,
	                          .pid = e->peer_pid,
	                          .recv_time_us = e->recv_time_us};
	/* Create the runs this entry starts before applying any of it, so that an
	 * entry is applied whole or not at all. */
	for (size_t i = 0; i < e->batch->n_records; i++) {
		const Trackd__V1__Record *rec = e->batch->records[i];
		s->create_error = 0;
		/* A batch is mostly one run's rows: look each run up once. */
		bool same_run = i > 0 && strcmp(rec->run_id, e->batch->records[i - 1]->run_id) == 0;
		bool creates = rec->body_case == TRACKD__V1__RECORD__BODY_START ||
		               (!same_run && !sink_find_active(s, rec->run_id)); /* or recovers */
		if (creates && !route(s, rec, &o) && s->create_error) {
			note_write_failure(s, "create a run dir", s->create_error);
			trackd__v1__log_entry__free_unpacked(e, NULL);
			return TRACKD_EAGAIN;
		}
	}
	for (size_t i = 0; i < e->batch->n_records; i++) {
		s->applying_position = (uint32_t)i;
		apply_record(s, e->batch->records[i], &o);
	}
	trackd__v1__log_entry__free_unpacked(e, NULL);
	return TRACKD_OK;
}

/* ---- writing files ----------------------------------------------------------------- */

static int write_whole_files(struct active_run *ar)
{
	struct buf b;
	buf_init(&b, SNAPSHOT_MAX_BYTES);
	int rv = vmap_to_json(&ar->run->summary, &b);
	if (!rv)
		rv = file_write_atomic(ar->dir, SUMMARY_FILE, b.data, b.len, false);
	buf_reset(&b);
	if (!rv)
		rv = vmap_to_config_yaml(&ar->run->config, &b);
	if (!rv)
		rv = file_write_atomic(ar->dir, CONFIG_FILE, b.data, b.len, false);
	buf_reset(&b);
	if (!rv)
		rv = run_to_json(ar->run, ar->dir, false, &b);
	if (!rv)
		rv = buf_putc(&b, '\n');
	if (!rv)
		rv = file_write_atomic(ar->dir, METADATA_FILE, b.data, b.len, false);
	buf_fini(&b);
	if (!rv)
		ar->files_dirty = false;
	return rv;
}

int sink_flush_run(struct local_sink *s, struct active_run *ar)
{
	int rv = 0;
	if (ar->history_out.len) {
		rv = file_append(ar->dir, HISTORY_FILE, ar->history_out.data, ar->history_out.len);
		if (!rv)
			buf_reset_keep(&ar->history_out, PENDING_FLUSH_BYTES);
	}
	if (!rv && ar->console_out.len) {
		rv = file_append(ar->dir, CONSOLE_FILE, ar->console_out.data, ar->console_out.len);
		if (!rv)
			buf_reset_keep(&ar->console_out, PENDING_FLUSH_BYTES);
	}
	if (!rv && ar->series)
		rv = series_flush(ar->series);
	if (!rv && ar->events_out.len) {
		rv = file_append(ar->dir, EVENTS_FILE, ar->events_out.data, ar->events_out.len);
		if (!rv)
			buf_reset_keep(&ar->events_out, PENDING_FLUSH_BYTES);
	}
	if (!rv && ar->files_dirty)
		rv = write_whole_files(ar);
	if (rv)
		note_write_failure(s, "write the files of a run", rv);
	return rv;
}

static int flush_all(struct local_sink *s)
{
	int first = 0;
	for (size_t i = 0; i < s->n_active; i++) {
		int rv = sink_flush_run(s, s->active[i]);
		if (rv && !first)
			first = rv;
	}
	if (!first)
		s->pending_bytes = 0;
	return first;
}

static int write_snapshot(struct active_run *ar)
{
	int rv = file_sync(ar->dir, HISTORY_FILE, &ar->run->history_bytes);
	if (!rv)
		rv = file_sync(ar->dir, CONSOLE_FILE, &ar->run->console_bytes);
	/* The index as history.jsonl: durable before the snapshot counts its rows. */
	if (!rv && ar->series)
		rv = series_sync(ar->series);
	if (!rv)
		rv = file_sync(ar->dir, EVENTS_FILE, &ar->run->events_bytes);
	if (rv)
		return rv;
	ar->run->has_series_rows = ar->series != NULL;
	if (ar->series) {
		ar->run->series_rows = series_rows(ar->series);
		ar->run->series_dropped = series_dropped(ar->series);
	}
	Trackd__V1__RunSnapshot *snap = run_to_snapshot(ar->run);
	if (!snap)
		return TRACKD_ENOMEM;
	size_t len = trackd__v1__run_snapshot__get_packed_size(snap);
	uint8_t *data = malloc(len ? len : 1);
	if (!data) {
		run_snapshot_free(snap);
		return TRACKD_ENOMEM;
	}
	trackd__v1__run_snapshot__pack(snap, data);
	run_snapshot_free(snap);
	rv = file_write_atomic(ar->dir, SNAPSHOT_FILE, data, len, true);
	free(data);
	return rv;
}

/* Makes everything applied so far durable, then moves the cursor past it. */
static void checkpoint(struct local_sink *s)
{
	if (flush_all(s) != 0)
		return; /* stalled: nothing is made durable past what the files hold */
	bool ok = true;
	bool wrote = false;
	struct buf active_list;
	buf_init(&active_list, 64u << 20);
	for (size_t i = 0; i < s->n_active; i++) {
		struct active_run *ar = s->active[i];
		if (ar->checkpoint_dirty) {
			int rv = write_snapshot(ar);
			if (rv) {
				ok = false;
				note_write_failure(s, "checkpoint a run", rv);
				continue;
			}
			ar->checkpoint_dirty = false;
			wrote = true;
		}
		if (ar->run->state == RUN_RUNNING)
			buf_printf(&active_list, "%s\n", ar->dir);
	}
	if (ok && file_write_atomic(s->sink_dir, "active", active_list.data ? active_list.data : "",
	                            active_list.len, true) != 0)
		ok = false;
	buf_fini(&active_list);
#ifdef TRACKD_TEST_HOOKS
	if (wrote && s->test_hold_ms) {
		log_info("local sink: test hook: holding the sink's lock for %u ms",
		         s->test_hold_ms);
		struct timespec hold = {.tv_sec = s->test_hold_ms / 1000,
		                        .tv_nsec = (long)(s->test_hold_ms % 1000) * 1000000};
		while (nanosleep(&hold, &hold) != 0 && errno == EINTR)
			;
	}
#endif
	(void)wrote;
	if (ok && s->processed_index > s->committed_index) {
		int rv = txlog_cursor_commit(s->opts.log, CURSOR_NAME, s->processed_index);
		if (rv == 0)
			s->committed_index = s->processed_index;
		else
			log_error("local sink: cursor commit failed: %s", trackd_strerror(rv));
	}
	if (!ok)
		return;
	/* Ended runs are durable on disk now: they leave memory. */
	size_t kept = 0;
	for (size_t i = 0; i < s->n_active; i++) {
		struct active_run *ar = s->active[i];
		if (ar->run->state != RUN_RUNNING && !ar->checkpoint_dirty)
			active_free(ar);
		else
			s->active[kept++] = ar;
	}
	s->n_active = kept;
}

/* ---- crash detection ------------------------------------------------------------- */

static int submit_crash(struct local_sink *s, const struct run *r, int32_t pid)
{
	Trackd__V1__RunExit e = TRACKD__V1__RUN_EXIT__INIT;
	e.has_reason = e.has_pid = e.has_client_time_us = true;
	e.reason = TRACKD__V1__EXIT_REASON__EXIT_CRASHED;
	e.pid = pid;
	e.client_time_us = clock_wall_us();
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_EXIT;
	rec.exit = &e;
	return s->opts.submit(s->opts.submit_arg, &rec);
}

static void crash_poll(struct local_sink *s)
{
	for (size_t i = 0; i < s->n_active; i++) {
		struct active_run *ar = s->active[i];
		struct run *r = ar->run;
		if (r->state != RUN_RUNNING)
			continue;
		for (size_t k = 0; k < r->n_attached; k++) {
			struct run_attached *a = &r->attached[k];
			if (a->done || ar->crash_submitted[k] || proc_alive(a->pid, a->start_ticks))
				continue;
			if (!ar->dead_mark[k])
				ar->dead_mark[k] = txlog_last_index(s->opts.log);
			if (s->processed_index < ar->dead_mark[k])
				continue; /* its last records (an exit, maybe) are not applied yet
				           */
			if (submit_crash(s, r, a->pid) == 0) {
				ar->crash_submitted[k] = true;
				count(&s->crashes_detected);
				log_info("run %s: process %d vanished without finishing: marking "
				         "it crashed",
				         r->id, a->pid);
			}
		}
	}
}

/* ---- the sink thread ------------------------------------------------------------- */

/* Leaves the stall once the pending lines are written. An entry that could not
 * be applied (its run dir could not be created) is read again. */
static void retry_stalled(struct local_sink *s)
{
	if (flush_all(s) != 0)
		return;
	if (s->reread) {
		txlog_reader *r;
		if (txlog_reader_open(s->opts.log, s->processed_index, &r) != 0)
			return;
		txlog_reader_close(s->reader);
		s->reader = r;
		s->reread = false;
	}
	atomic_store(&s->write_stalled, false);
}

/* Applies up to ENTRIES_PER_ROUND entries; returns how many. */
static int apply_round(struct local_sink *s)
{
	int n = 0;
	if (atomic_load(&s->write_stalled))
		return 0;
#ifdef TRACKD_TEST_HOOKS
	if (s->test_apply_delay_ms) {
		pthread_mutex_unlock(&s->mu);
		struct timespec delay = {.tv_sec = s->test_apply_delay_ms / 1000,
		                         .tv_nsec =
		                             (long)(s->test_apply_delay_ms % 1000) * 1000000};
		while (nanosleep(&delay, &delay) != 0 && errno == EINTR)
			;
		pthread_mutex_lock(&s->mu);
	}
#endif
	for (; n < ENTRIES_PER_ROUND; n++) {
		uint64_t index;
		const void *data;
		size_t len;
		int rv = txlog_reader_next(s->reader, &index, &data, &len);
		if (rv == TRACKD_ECORRUPT)
			continue; /* counted by the txlog; the reader resumes after the damage */
		if (rv != 0)
			break;
		if (apply_entry(s, index, data, len) == TRACKD_EAGAIN) {
			s->reread = true; /* the reader is past it: reopen at the retry */
			break;
		}
		s->processed_index = index;
		/* Alive per entry, not per round: a round of 4 MiB entries is up to
		 * 1 GiB of work, longer than a watchdog interval on a slow machine. */
		atomic_store(&s->heartbeat_us, clock_mono_us());
		if (s->pending_bytes >= PENDING_FLUSH_BYTES && flush_all(s) != 0)
			break; /* stalled: the disk is full */
		if (s->stall_reported) {
			s->stall_reported = false;
			log_info("local sink: disk writes succeed again; applying records resumed");
		}
	}
	return n;
}

/* mu held. Rebuilds the sampler's view of the running runs (live_dirty). */
static void publish_live(struct local_sink *s)
{
	if (!s->live_dirty)
		return;
	size_t n = 0;
	/* An imported run is live only while trackctl import replays it: its
	 * samples come from its file, not from this machine. */
	for (size_t i = 0; i < s->n_active; i++)
		n += s->active[i]->run->state == RUN_RUNNING && !s->active[i]->run->imported;
	struct local_live_run *live = n ? calloc(n, sizeof *live) : NULL;
	if (n && !live)
		return; /* stays dirty: tried again next round */
	size_t k = 0;
	for (size_t i = 0; i < s->n_active; i++) {
		struct active_run *ar = s->active[i];
		const struct run *r = ar->run;
		if (r->state != RUN_RUNNING || r->imported)
			continue;
		if (!ar->client_root_read) {
			/* A run loaded after a restart: its client's record was applied
			 * before, and only the file holds what it said. */
			ar->client_root = environment_client_root(ar->dir);
			ar->client_root_read = true;
		}
		struct local_live_run *l = &live[k++];
		snprintf(l->id, sizeof l->id, "%s", r->id);
		l->uid = r->uid;
		l->start_time_us = r->start_time_us;
		for (size_t a = 0; a < r->n_attached; a++) {
			if (r->attached[a].done)
				continue;
			l->pids[l->n_pids] = r->attached[a].pid;
			l->start_ticks[l->n_pids++] = r->attached[a].start_ticks;
		}
		memcpy(l->counters_boot_id, r->counters_boot_id, sizeof l->counters_boot_id);
		memcpy(l->counter_bases, r->counter_bases, sizeof l->counter_bases);
		l->n_counter_bases = r->n_counter_bases;
		if (ar->client_root)
			snprintf(l->client_root, sizeof l->client_root, "%s", ar->client_root);
	}
	pthread_mutex_lock(&s->live_mu);
	struct local_live_run *old = s->live;
	s->live = live;
	s->n_live = k;
	pthread_mutex_unlock(&s->live_mu);
	free(old);
	s->live_dirty = false;
	if (s->opts.live_changed)
		s->opts.live_changed(s->opts.submit_arg);
}

int local_sink_live_runs(local_sink *s, struct local_live_run **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&s->live_mu);
	int rv = TRACKD_OK;
	if (s->n_live) {
		*out = malloc(s->n_live * sizeof **out);
		if (*out) {
			memcpy(*out, s->live, s->n_live * sizeof **out);
			*n = s->n_live;
		} else {
			rv = TRACKD_ENOMEM;
		}
	}
	pthread_mutex_unlock(&s->live_mu);
	return rv;
}

/* mu held. */
static void publish_stats(struct local_sink *s)
{
	publish_live(s);
	uint64_t running = 0;
	for (size_t i = 0; i < s->n_active; i++)
		running += s->active[i]->run->state == RUN_RUNNING;
	atomic_store(&s->published_runs_active, running);
	atomic_store(&s->runs_finished, s->ended_finished);
	atomic_store(&s->runs_failed, s->ended_failed);
	atomic_store(&s->runs_crashed, s->ended_crashed);
	atomic_store(&s->runs_killed, s->ended_killed);
	if (atomic_exchange(&s->published_index, s->processed_index) != s->processed_index) {
		pthread_mutex_lock(&s->applied_mu);
		pthread_cond_broadcast(&s->applied_cv);
		pthread_mutex_unlock(&s->applied_mu);
	}
}

void local_sink_catch_up(local_sink *s, int timeout_ms)
{
	uint64_t target = txlog_last_index(s->opts.log);
	struct timespec deadline = clock_deadline_ms(CLOCK_REALTIME, timeout_ms);
	pthread_mutex_lock(&s->applied_mu);
	while (atomic_load(&s->published_index) < target && !atomic_load(&s->write_stalled) &&
	       !atomic_load(&s->closing_for_queries)) {
		if (pthread_cond_timedwait(&s->applied_cv, &s->applied_mu, &deadline) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&s->applied_mu);
}

static void *sink_main(void *arg)
{
	struct local_sink *s = arg;
	int64_t now = clock_mono_us();
	int64_t next_flush = now, next_checkpoint = now, next_poll = now, next_retry = now;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		int applied = apply_round(s);
		now = clock_mono_us();
		atomic_store(&s->heartbeat_us, now);
		if (atomic_exchange(&s->notified, false) || now >= next_poll) {
			crash_poll(s);
			next_poll = now + (int64_t)s->opts.crash_poll_ms * 1000;
		}
		if (atomic_load(&s->write_stalled)) {
			if (now >= next_retry) {
				retry_stalled(s);
				next_retry = now + STALL_RETRY_MS * 1000;
			}
		} else if (now >= next_flush || applied == 0) {
			flush_all(s);
			next_flush = now + (int64_t)s->opts.flush_interval_ms * 1000;
		}
		if (now >= next_checkpoint) {
			checkpoint(s);
			next_checkpoint = now + (int64_t)s->opts.checkpoint_interval_ms * 1000;
		}
		if (s->closing && applied == 0)
			break;
		/* Where the lock is let go: status sees what it could see when it
		 * took the lock itself. */
		publish_stats(s);
		if (applied == 0) {
			struct timespec ts = clock_deadline_ms(CLOCK_REALTIME, 20);
			if (!atomic_load(&s->notified) && !s->closing)
				pthread_cond_timedwait(&s->cv, &s->mu, &ts);
		} else {
			/* Let queries in between rounds. */
			pthread_mutex_unlock(&s->mu);
			pthread_mutex_lock(&s->mu);
		}
	}
	checkpoint(s);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Runs that were running when the agent last stopped: back into memory, so their
 * processes are watched for crashes even if they never send another record. */
static void load_active_list(struct local_sink *s)
{
	char *data;
	size_t len;
	if (file_read(s->sink_dir, "active", 64u << 20, &data, &len) != 0)
		return;
	for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
		struct active_run *ar = reopen(s, line);
		if (!ar)
			log_warn("local sink: active run %s could not be reloaded", line);
	}
	free(data);
}

int local_sink_start(const struct local_sink_options *opts, local_sink **out)
{
	struct local_sink *s = calloc(1, sizeof *s);
	if (!s)
		return TRACKD_ENOMEM;
	s->opts = *opts;
	if (!s->opts.flush_interval_ms)
		s->opts.flush_interval_ms = 100;
	if (!s->opts.checkpoint_interval_ms)
		s->opts.checkpoint_interval_ms = 1000;
	if (!s->opts.crash_poll_ms)
		s->opts.crash_poll_ms = 250;
	if (!s->opts.max_active_runs)
		s->opts.max_active_runs = 4096;
	run_file_verified_init(&s->verified);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	pthread_mutex_init(&s->applied_mu, NULL);
	pthread_cond_init(&s->applied_cv, NULL);
	pthread_mutex_init(&s->live_mu, NULL);
	s->live_dirty = true;
	s->heartbeat_us = clock_mono_us();
#ifdef TRACKD_TEST_HOOKS
	const char *hold = getenv("TRACKD_TEST_CHECKPOINT_HOLD_MS");
	s->test_hold_ms = hold ? (uint32_t)strtoul(hold, NULL, 10) : 0;
	const char *delay = getenv("TRACKD_TEST_APPLY_DELAY_MS");
	s->test_apply_delay_ms = delay ? (uint32_t)strtoul(delay, NULL, 10) : 0;
#endif
	int rv;
	if (local_store_runs_dir(opts->state_dir, s->runs_dir, sizeof s->runs_dir) != 0 ||
	    snprintf(s->sink_dir, sizeof s->sink_dir, "%s/sinks/local", opts->state_dir) >=
	        (int)sizeof s->sink_dir) {
		rv = TRACKD_EINVAL;
		goto fail;
	}
	if ((rv = mkdir_parents(s->runs_dir, 0700)) != 0 ||
	    (rv = mkdir_parents(s->sink_dir, 0700)) != 0)
		goto fail;
	uint64_t position;
	if ((rv = txlog_cursor_register(opts->log, CURSOR_NAME, &position)) != 0 ||
	    (rv = txlog_reader_open(opts->log, position, &s->reader)) != 0)
		goto fail;
	s->processed_index = s->committed_index = position;
	load_active_list(s);
	publish_stats(s);
	if (pthread_create(&s->thread, NULL, sink_main, s) != 0) {
		rv = TRACKD_ESYS;
		goto fail;
	}
	s->thread_started = true;
	*out = s;
	return TRACKD_OK;
fail:
	local_sink_free(s);
	return rv;
}

void local_sink_close(local_sink *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->closing = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_lock(&s->applied_mu);
	atomic_store(&s->closing_for_queries, true);
	pthread_cond_broadcast(&s->applied_cv);
	pthread_mutex_unlock(&s->applied_mu);
}

void local_sink_stop(local_sink *s)
{
	if (!s || !s->thread_started)
		return;
	pthread_join(s->thread, NULL);
	s->thread_started = false;
}

void local_sink_free(local_sink *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_active; i++)
		active_free(s->active[i]);
	free(s->active);
	txlog_reader_close(s->reader);
	run_file_verified_fini(&s->verified);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->applied_mu);
	pthread_cond_destroy(&s->applied_cv);
	pthread_mutex_destroy(&s->live_mu);
	free(s->live);
	free(s);
}

void local_sink_notify(local_sink *s)
{
	if (!s)
		return;
	/* No lock: this runs on NNG's callback threads and must not wait for the
	 * sink. A wake-up lost to the race costs at most one 20 ms idle wait. */
	atomic_store(&s->notified, true);
	pthread_cond_signal(&s->cv);
}

int64_t local_sink_heartbeat_us(local_sink *s)
{
	return atomic_load(&s->heartbeat_us);
}

void local_sink_get_stats(local_sink *s, struct local_sink_stats *out)
{
	memset(out, 0, sizeof *out);
	out->runs_active = atomic_load(&s->published_runs_active);
	out->processed_index = atomic_load(&s->published_index);
	uint64_t readable = txlog_readable_index(s->opts.log);
	out->backlog = readable > out->processed_index ? readable - out->processed_index : 0;
	out->records_applied = atomic_load(&s->records_applied);
	out->records_orphaned = atomic_load(&s->records_orphaned);
	out->runs_recovered = atomic_load(&s->runs_recovered);
	out->rows_rejected = atomic_load(&s->rows_rejected);
	out->crashes_detected = atomic_load(&s->crashes_detected);
	out->write_errors = atomic_load(&s->write_errors);
	out->write_stalled = atomic_load(&s->write_stalled);
	out->runs_finished = atomic_load(&s->runs_finished);
	out->runs_failed = atomic_load(&s->runs_failed);
	out->runs_crashed = atomic_load(&s->runs_crashed);
	out->runs_killed = atomic_load(&s->runs_killed);
}
