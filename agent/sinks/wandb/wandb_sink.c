/* The wandb sink's thread: reads the log, applies records to runs, decides which
 * request each run needs next, completes requests, makes progress durable and
 * moves the cursor. The contract and the reasoning are in wandb_sink.h. */
#include "wandb_internal.h"

#include "clock.h"
#include "errors.h"
#include "log.h"
#include "paths.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CURSOR_NAME       "wandb"
#define ENTRIES_PER_ROUND 256
#define POLL_MS           20
#define IDLE_FREE_US      (10 * 1000000LL) /* an ended, delivered run leaves memory */
#define API_KEY_MAX       512
/* A safety net only: the global bound pauses reading long before a run's buffer
 * could reach this. */
#define RUN_BUF_SLACK (64u << 20)

static void count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

/* ---- runs in memory --------------------------------------------------------------- */

static size_t wr_buffered(const struct wb_run *wr)
{
	return (wr->hist.len - wr->h_head) + (wr->cons.len - wr->c_head) +
	       (wr->evts.len - wr->e_head);
}

static struct wb_run *wr_new(struct wandb_sink *s, const char *id)
{
	struct wb_run *wr = calloc(1, sizeof *wr);
	if (!wr || !(wr->id = strdup(id))) {
		free(wr);
		return NULL;
	}
	size_t max = s->opts.max_buffer_bytes + RUN_BUF_SLACK;
	buf_init(&wr->hist, max);
	buf_init(&wr->cons, max);
	buf_init(&wr->evts, max);
	wr->hold = WB_NO_HOLD;
	wr->touched_at = clock_mono_us();
	return wr;
}

static void wr_drop_lines(struct wandb_sink *s, struct wb_run *wr)
{
	s->buffered -= wr_buffered(wr);
	size_t max = wr->hist.max;
	buf_fini(&wr->hist);
	buf_fini(&wr->cons);
	buf_fini(&wr->evts);
	buf_init(&wr->hist, max);
	buf_init(&wr->cons, max);
	buf_init(&wr->evts, max);
	wr->h_head = wr->c_head = wr->e_head = 0;
}

/* Forgets everything derived from the log (the durable state is on disk). */
static void wr_reset(struct wandb_sink *s, struct wb_run *wr)
{
	wb_files_drop(s, wr);
	wr_drop_lines(s, wr);
	run_free(wr->run);
	wr->run = NULL;
	free(wr->up_entity);
	free(wr->up_project);
	wr->up_entity = wr->up_project = NULL;
	wr->upserted = false;
	wr->h_base = wr->c_base = wr->h_done = wr->c_done = wr->h_skipped = wr->c_skipped = 0;
	wr->e_base = wr->e_done = wr->e_skipped = 0;
	wr->meta_gen = wr->meta_acked = wr->sum_gen = wr->sum_acked = 0;
	wr->end_gen = wr->end_acked = 0;
	wr->applying_entry = 0;
	wr->durable_index = 0;
	wr->more = false;
}

static void wr_free(struct wandb_sink *s, struct wb_run *wr)
{
	if (!wr)
		return;
	wr_reset(s, wr);
	buf_fini(&wr->hist);
	buf_fini(&wr->cons);
	buf_fini(&wr->evts);
	wb_files_fini(&wr->files.t);
	wb_sync_free(wr->sync);
	free(wr->id);
	free(wr);
}

void wb_run_reset(struct wandb_sink *s, struct wb_run *wr)
{
	wr_reset(s, wr);
}

static int add_run(struct wandb_sink *s, struct wb_run *wr)
{
	if (s->n_runs == s->cap_runs) {
		size_t cap = s->cap_runs ? s->cap_runs * 2 : 64;
		struct wb_run **p = realloc(s->runs, cap * sizeof *p);
		if (!p)
			return TRACKD_ENOMEM;
		s->runs = p;
		s->cap_runs = cap;
	}
	s->runs[s->n_runs++] = wr;
	return TRACKD_OK;
}

static struct wb_run *find_id(struct wandb_sink *s, const char *id)
{
	for (size_t i = 0; i < s->n_runs; i++)
		if (strcmp(s->runs[i]->id, id) == 0)
			return s->runs[i];
	return NULL;
}

struct wb_run *wb_run_add(struct wandb_sink *s, const char *id)
{
	struct wb_run *wr = wr_new(s, id);
	if (wr && add_run(s, wr) != 0) {
		wr_free(s, wr);
		wr = NULL;
	}
	return wr;
}

struct wb_run *wb_find(struct wandb_sink *s, const char *ref)
{
	const char *slash = strrchr(ref, '/');
	struct wb_run *wr = find_id(s, slash ? slash + 1 : ref);
	if (!wr || !slash)
		return wr;
	char path[1024];
	snprintf(path, sizeof path, "%s/%s/%s", wr->up_entity ? wr->up_entity : "",
	         wr->up_project ? wr->up_project : (wr->run ? wr->run->project : ""), wr->id);
	return strcmp(path, ref) == 0 ? wr : NULL;
}

static bool ended(const struct wb_run *wr)
{
	return wr->run && wr->run->state != RUN_RUNNING;
}

static bool lines_pending(const struct wb_run *wr)
{
	return wr_buffered(wr) > 0;
}

/* Nothing derived from the applied records waits for the backend. */
static bool delivered(const struct wb_run *wr)
{
	return wr->phase == WB_ATTACHED && wr->run && !wr->xfer && wr->upserted &&
	       !lines_pending(wr) && wr->sum_gen == wr->sum_acked &&
	       wr->meta_gen == wr->meta_acked && wr->end_gen == wr->end_acked &&
	       (!wr->sync || wb_sync_exhausted(wr));
}

/* ---- durable state ----------------------------------------------------------------- */

static int load_state(struct wandb_sink *s, struct wb_run *wr)
{
	struct wb_state st;
	int rv = wb_state_read(s->runs_dir, wr->id, &st);
	if (rv)
		return rv;
	if (st.flags & WB_STATE_OFFLINE) {
		wr->phase = WB_OFFLINE;
		wb_state_fini(&st);
		return TRACKD_OK;
	}
	struct run *r = NULL;
	if (st.snapshot_len) {
		Trackd__V1__RunSnapshot *snap =
		    trackd__v1__run_snapshot__unpack(NULL, st.snapshot_len, st.snapshot);
		rv = snap ? run_from_snapshot(snap, &r) : TRACKD_ECORRUPT;
		trackd__v1__run_snapshot__free_unpacked(snap, NULL);
		if (rv) {
			wb_state_fini(&st);
			return rv;
		}
	}
	wr->phase = WB_ATTACHED;
	wr->run = r;
	wr->upserted = (st.flags & WB_STATE_UPSERTED) != 0;
	wr->up_entity = st.entity;
	wr->up_project = st.project;
	st.entity = st.project = NULL;
	wr->h_base = st.history_base;
	wr->c_base = st.console_base;
	wr->h_skipped = st.history_skipped;
	wr->c_skipped = st.console_skipped;
	wr->e_base = st.events_base;
	wr->e_skipped = st.events_skipped;
	if (r) {
		wr->uid = r->uid;
		wr->uid_known = true;
		wr->h_done = r->history_lines;
		wr->c_done = r->console_lines;
		wr->e_done = r->events_lines;
		wr->durable_index = r->last_index;
	}
	wb_state_fini(&st);
	return TRACKD_OK;
}

/* Writes the run's state; `snapshot` (may be NULL) is the packed RunSnapshot. */
static int write_state(struct wandb_sink *s, struct wb_run *wr, const uint8_t *snapshot,
                       size_t snapshot_len)
{
	struct wb_state st = {
	    .flags =
	        wr->phase == WB_OFFLINE ? WB_STATE_OFFLINE : (wr->upserted ? WB_STATE_UPSERTED : 0),
	    .history_base = wr->h_base,
	    .console_base = wr->c_base,
	    .history_skipped = wr->h_skipped,
	    .console_skipped = wr->c_skipped,
	    .events_base = wr->e_base,
	    .events_skipped = wr->e_skipped,
	    .entity = wr->up_entity,
	    .project = wr->up_project,
	    .snapshot = (uint8_t *)snapshot,
	    .snapshot_len = snapshot_len,
	};
	int rv = wb_state_write(s->runs_dir, wr->id, &st);
	if (rv) {
		count(&s->write_errors, 1);
		log_error("wandb: cannot write the upload state of run %s: %s", wr->id,
		          trackd_strerror(rv));
	}
	return rv;
}

static int pack_snapshot(const struct run *r, uint8_t **out, size_t *len)
{
	Trackd__V1__RunSnapshot *snap = run_to_snapshot(r);
	if (!snap)
		return TRACKD_ENOMEM;
	*len = trackd__v1__run_snapshot__get_packed_size(snap);
	*out = malloc(*len ? *len : 1);
	if (!*out) {
		run_snapshot_free(snap);
		return TRACKD_ENOMEM;
	}
	trackd__v1__run_snapshot__pack(snap, *out);
	run_snapshot_free(snap);
	return TRACKD_OK;
}

/* A snapshot as of log index `index` is on disk: records after it are the only
 * ones this run still needs from the log. */
static void made_durable(struct wb_run *wr, uint64_t index)
{
	wr->durable_index = index;
	wr->hold = wr->run && wr->run->last_index > index ? index : WB_NO_HOLD;
}

/* ---- the API key and URLs --------------------------------------------------------- */

static int key_from_text(char *text, char **key_out, const char *where, char *err, size_t errlen)
{
	size_t n = strlen(text);
	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ' ||
	             text[n - 1] == '\t'))
		text[--n] = '\0';
	char *p = text;
	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p) {
		snprintf(err, errlen, "%s holds no API key", where);
		return TRACKD_EINVAL;
	}
	for (const char *c = p; *c; c++) {
		/* It goes into an HTTP header: visible ASCII only. */
		if (*c < 0x21 || *c > 0x7e) {
			snprintf(err, errlen,
			         "the API key in %s contains a character that cannot be sent in a "
			         "header (spaces, control or non-ASCII characters)",
			         where);
			return TRACKD_EINVAL;
		}
	}
	if (strlen(p) > API_KEY_MAX) {
		snprintf(err, errlen, "the API key in %s is longer than %d characters", where,
		         API_KEY_MAX);
		return TRACKD_EINVAL;
	}
	*key_out = strdup(p);
	return *key_out ? TRACKD_OK : TRACKD_ENOMEM;
}

int wb_load_api_key(const char *file, const char *env, char **key_out, char *err, size_t errlen)
{
	*key_out = NULL;
	if (file && *file) {
		int fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			snprintf(err, errlen, "sinks.wandb.api_key_file %s: cannot open: %s", file,
			         strerror(errno));
			return TRACKD_EINVAL;
		}
		struct stat st;
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
			close(fd);
			snprintf(err, errlen, "sinks.wandb.api_key_file %s: not a regular file",
			         file);
			return TRACKD_EPERM;
		}
		if (st.st_mode & 077) {
			close(fd);
			snprintf(
			    err, errlen,
			    "sinks.wandb.api_key_file %s is accessible by group or others (mode "
			    "%04o); refusing to use it: make it readable by its owner only "
			    "(chmod 600 %s)",
			    file, (unsigned)(st.st_mode & 07777), file);
			return TRACKD_EPERM;
		}
		char text[API_KEY_MAX + 64];
		size_t got = 0;
		while (got < sizeof text - 1) {
			ssize_t n = read(fd, text + got, sizeof text - 1 - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		close(fd);
		text[got] = '\0';
		char where[4200];
		snprintf(where, sizeof where, "sinks.wandb.api_key_file %s", file);
		int rv =
		    strlen(text) != got
		        ? (snprintf(err, errlen, "%s contains a NUL byte", where), TRACKD_EINVAL)
		        : key_from_text(text, key_out, where, err, errlen);
		explicit_bzero(text, sizeof text);
		return rv;
	}
	const char *v = env && *env ? getenv(env) : NULL;
	if (!v || !*v) {
		snprintf(
		    err, errlen,
		    "no W&B API key: set sinks.wandb.api_key_file, or the environment variable "
		    "%s (sinks.wandb.api_key_env)",
		    env && *env ? env : "named by sinks.wandb.api_key_env");
		return TRACKD_EINVAL;
	}
	char *copy = strdup(v);
	if (!copy)
		return TRACKD_ENOMEM;
	char where[300];
	snprintf(where, sizeof where, "the environment variable %s", env);
	int rv = key_from_text(copy, key_out, where, err, errlen);
	explicit_bzero(copy, strlen(copy));
	free(copy);
	return rv;
}

void wb_derive_app_url(const char *base_url, char *out, size_t len)
{
	/* The official client's mapping (wandb.util.app_url): the public cloud's
	 * api.wandb.<tld> drops "api.", a dedicated api.<host> becomes app.<host>
	 * (its dev api.wandb.test too), anything else (a local server,
	 * localhost:8080) serves the UI on the same address. */
	char plain[4096];
	wb_strip_userinfo(base_url, plain, sizeof plain);
	const char *sep = strstr(plain, "://");
	const char *host = sep ? sep + 3 : plain;
	int scheme = (int)(host - plain);
	if (strncmp(host, "api.wandb.", 10) == 0 && strncmp(host, "api.wandb.test", 14) != 0)
		snprintf(out, len, "%.*s%s", scheme, plain, host + 4);
	else if (strncmp(host, "api.", 4) == 0)
		snprintf(out, len, "%.*sapp.%s", scheme, plain, host + 4);
	else
		snprintf(out, len, "%s", plain);
	wb_trim_slashes(out);
}

void wb_strip_userinfo(const char *url, char *out, size_t len)
{
	const char *sep = strstr(url, "://");
	const char *host = sep ? sep + 3 : url;
	size_t authority = strcspn(host, "/?#");
	const char *at = memchr(host, '@', authority);
	/* Everything up to the last '@' of the authority is user:password. */
	while (at && memchr(at + 1, '@', authority - (size_t)(at + 1 - host)))
		at = memchr(at + 1, '@', authority - (size_t)(at + 1 - host));
	if (!at)
		snprintf(out, len, "%s", url);
	else
		snprintf(out, len, "%.*s%s", (int)(host - url), url, at + 1);
}

void wb_trim_slashes(char *url)
{
	size_t n = strlen(url);
	while (n > 0 && url[n - 1] == '/')
		url[--n] = '\0';
}

static const char *project_of(const struct wb_run *wr)
{
	if (wr->up_project && *wr->up_project)
		return wr->up_project;
	return wr->run ? wr->run->project : "";
}

void wb_project_url(const struct wandb_sink *s, const struct wb_run *wr, char *out, size_t len)
{
	if (!wr->upserted || !wr->up_entity || !*wr->up_entity)
		snprintf(out, len, "%s", "");
	else
		snprintf(out, len, "%s/%s/%s", s->app_url, wr->up_entity, project_of(wr));
}

void wb_run_url(const struct wandb_sink *s, const struct wb_run *wr, char *out, size_t len)
{
	char p[3000];
	wb_project_url(s, wr, p, sizeof p);
	if (!*p)
		snprintf(out, len, "%s", "");
	else
		snprintf(out, len, "%s/runs/%s", p, wr->id);
}

/* ---- routing records to runs ------------------------------------------------------- */

/* The run a record belongs to: in memory, on disk, or new (a start record). */
static struct wb_run *route(struct wandb_sink *s, const Trackd__V1__Record *rec)
{
	struct wb_run *wr = find_id(s, rec->run_id);
	if (wr)
		return wr;
	wr = wr_new(s, rec->run_id);
	if (!wr)
		return NULL;
	int rv = load_state(s, wr);
	if (rv && rv != TRACKD_ENOENT) {
		count(&s->write_errors, 1);
		log_error("wandb: the upload state of run %s is unreadable (%s); the run is "
		          "uploaded anew from what the log still holds",
		          wr->id, trackd_strerror(rv));
		wr_reset(s, wr);
	}
	if (rv == 0 || rec->body_case == TRACKD__V1__RECORD__BODY_START) {
		if (rv != 0 && rec->start->has_mode &&
		    rec->start->mode == TRACKD__V1__RUN_MODE__RUN_MODE_OFFLINE) {
			/* Remembered on disk, so its later records are skipped after a restart
			 * too: it is synced by `trackctl sync`, not here. */
			wr->phase = WB_OFFLINE;
			write_state(s, wr, NULL, 0);
			log_info("wandb: run %s is offline: not uploaded by the agent", wr->id);
		}
		if (add_run(s, wr) == 0)
			return wr;
	}
	wr_free(s, wr);
	return NULL;
}

static bool changes_meta(const Trackd__V1__Record *rec)
{
	return rec->body_case == TRACKD__V1__RECORD__BODY_START ||
	       rec->body_case == TRACKD__V1__RECORD__BODY_CONFIG ||
	       rec->body_case == TRACKD__V1__RECORD__BODY_RENAME;
}

/* What libtrackd (and the local sink) put in a run's entity when the user gave
 * none: the owner's login name, or uid<N>. */
bool wb_is_default_entity(const char *entity, uint32_t uid)
{
	struct passwd pw, *res = NULL;
	char buf[1024], name[32];
	if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res &&
	    strcmp(entity, res->pw_name) == 0)
		return true;
	snprintf(name, sizeof name, "uid%u", uid);
	return strcmp(entity, name) == 0;
}

static int create_run(struct wandb_sink *s, struct wb_run *wr, const Trackd__V1__Record *rec,
                      const struct record_origin *o)
{
	Trackd__V1__RunStart st = *rec->start;
	/* A login name means nothing to W&B: a run whose entity is its owner's
	 * default goes to sinks.wandb.entity, else to the API key's default entity
	 * ("": learnt from the UpsertBucket answer). A user who names their login
	 * as the entity on purpose gets the same. */
	if (!st.entity || !*st.entity || wb_is_default_entity(st.entity, o->uid))
		st.entity = s->entity;
	return run_new(rec->run_id, &st, o, &wr->run);
}

static void apply_record(struct wandb_sink *s, const Trackd__V1__Record *rec,
                         const struct record_origin *o)
{
	struct wb_run *wr = route(s, rec);
	if (!wr) {
		count(&s->records_orphaned, 1);
		log_debug("wandb: record for unknown run %s skipped (index %" PRIu64 ")",
		          rec->run_id, o->index);
		return;
	}
	wr->touched_at = clock_mono_us();
	/* Offline (a sync job included): uploaded by `trackctl sync`, from the
	 * local store. */
	if (wr->phase == WB_OFFLINE || wr->sync)
		return;
	if (wr->phase != WB_ATTACHED) {
		/* Parked or evicted: skipped now, read again when it comes back. */
		if (wr->hold == WB_NO_HOLD && o->index > wr->durable_index)
			wr->hold = o->index - 1;
		return;
	}
	if (!wr->run) {
		if (rec->body_case != TRACKD__V1__RECORD__BODY_START) {
			count(&s->records_orphaned, 1);
			return;
		}
		int rv = create_run(s, wr, rec, o);
		if (rv) {
			count(&s->write_errors, 1);
			log_error("wandb: run %s: cannot start it: %s", wr->id,
			          trackd_strerror(rv));
			return;
		}
	}
	struct run *r = wr->run;
	wr->uid = r->uid;
	wr->uid_known = true;
	/* Exactly once: a whole entry at or below the run's index was applied before;
	 * within the entry being applied (this very reading of it: the log may be
	 * read again after a rewind), every record counts. */
	if (o->index < r->last_index ||
	    (o->index == r->last_index && wr->applying_entry != s->entries_read))
		return;
	wr->applying_entry = s->entries_read;
	if (wr->hold == WB_NO_HOLD)
		wr->hold = o->index - 1;
	bool was_running = r->state == RUN_RUNNING;
	size_t before = wr_buffered(wr);
	/* A sync job's lines come from the local store's files (sync.c), which
	 * upload no events yet: its samples are not buffered. */
	struct run_effects fx = {
	    .history = &wr->hist, .console = &wr->cons, .events = wr->sync ? NULL : &wr->evts};
	int rv = run_apply(r, rec, o, &fx);
	if (rv) {
		count(&s->write_errors, 1);
		log_error("wandb: run %s: record at index %" PRIu64 " not applied: %s", r->id,
		          o->index, trackd_strerror(rv));
	}
	s->buffered += wr_buffered(wr) - before;
	if (fx.summary_changed)
		wr->sum_gen++;
	if (changes_meta(rec) || fx.config_changed)
		wr->meta_gen++;
	if (rec->body_case == TRACKD__V1__RECORD__BODY_RENAME) {
		if (rec->rename->set_tags && rec->rename->n_tags == 0)
			wr->tags_cleared_gen = wr->meta_gen;
		if (rec->rename->notes && !rec->rename->notes[0])
			wr->notes_cleared_gen = wr->meta_gen;
	}
	/* A settled end (a late exit replaced a crash) is a new end to send: a run not
	 * completed upstream gets its real exit code; one completed as crashed
	 * (complete_crashed, sync) gets `complete` again with it, which the backend
	 * takes as the final state (WANDB-UPSTREAM.md). */
	/* The record's files (media, saved files) are wanted up, durably. */
	wb_files_note_record(s, wr, rec, wb_file_position(o->index, s->record_pos));
	if (fx.metadata_changed)
		wb_files_note_metadata(s, wr);
	if ((was_running && r->state != RUN_RUNNING) || fx.settled) {
		wr->end_gen++;
		wb_files_note_end(s, wr);
	} else if (!was_running && r->state == RUN_RUNNING)
		wr->end_acked = wr->end_gen; /* resumed: the earlier end no longer matters */
}

static void apply_entry(struct wandb_sink *s, uint64_t index, const void *data, size_t len)
{
	Trackd__V1__LogEntry *e = trackd__v1__log_entry__unpack(NULL, len, data);
	if (!e || !e->batch) {
		count(&s->records_orphaned, 1);
		trackd__v1__log_entry__free_unpacked(e, NULL);
		return;
	}
	struct record_origin o = {.index = index,
	                          .uid = e->peer_uid,
	                          .pid = e->peer_pid,
	                          .recv_time_us = e->recv_time_us};
	s->entries_read++;
	for (size_t i = 0; i < e->batch->n_records; i++) {
		s->record_pos = i;
		apply_record(s, e->batch->records[i], &o);
	}
	trackd__v1__log_entry__free_unpacked(e, NULL);
}

/* ---- parking, eviction, re-reading ------------------------------------------------------ */

static void evict(struct wandb_sink *s, struct wb_run *wr, enum wb_phase phase)
{
	/* The durable state and the log hold everything: the memory goes. */
	uint64_t hold = wr->hold, durable = wr->durable_index;
	char *entity = wr->up_entity ? strdup(wr->up_entity) : NULL;
	char *project = wr->up_project ? strdup(wr->up_project) : NULL;
	bool upserted = wr->upserted;
	wr_reset(s, wr);
	wr->phase = phase;
	wr->hold = hold;
	wr->durable_index = durable;
	/* Kept for status and URLs only; reloaded from disk on return. */
	wr->up_entity = entity;
	wr->up_project = project;
	wr->upserted = upserted;
}

static void park(struct wandb_sink *s, struct wb_run *wr)
{
	log_error("wandb: run %s parked: %s; other runs go on; `trackctl retry %s` or an agent "
	          "restart tries it again",
	          wr->id, wr->last_error, wr->id);
	evict(s, wr, WB_PARKED);
}

void wb_park(struct wandb_sink *s, struct wb_run *wr)
{
	park(s, wr);
}

void wb_reattach(struct wandb_sink *s, struct wb_run *wr)
{
	if (wr->phase != WB_PARKED && wr->phase != WB_EVICTED)
		return;
	if (wr->sync) {
		wb_sync_reattach(s, wr); /* its source is the local store, not the log */
		return;
	}
	uint64_t hold = wr->hold;
	wr_reset(s, wr);
	wr->attempts = 0;
	wr->retry_at = 0;
	wr->phase = WB_ATTACHED;
	int rv = load_state(s, wr);
	if (rv && rv != TRACKD_ENOENT) {
		count(&s->write_errors, 1);
		log_error("wandb: the upload state of run %s is unreadable (%s); re-reading it "
		          "from the log as a new run",
		          wr->id, trackd_strerror(rv));
		wr_reset(s, wr);
		wr->phase = WB_ATTACHED;
	}
	wr->hold = hold;
	if (hold != WB_NO_HOLD && hold < s->rewind_to)
		s->rewind_to = hold;
}

/* Memory is short: runs that wait to retry give theirs back. */
static bool make_room(struct wandb_sink *s, int64_t now)
{
	for (size_t i = 0; i < s->n_runs && s->buffered >= s->opts.max_buffer_bytes; i++) {
		struct wb_run *wr = s->runs[i];
		if (wr->phase == WB_ATTACHED && !wr->xfer && wr->retry_at > now &&
		    wr_buffered(wr) > 0 && !wr->sync) {
			log_warn(
			    "wandb: run %s is failing and memory for unsent lines is full: its "
			    "lines are dropped from memory and read again from the log when it "
			    "retries",
			    wr->id);
			count(&s->runs_evicted, 1);
			int64_t retry_at = wr->retry_at;
			uint32_t attempts = wr->attempts;
			evict(s, wr, WB_EVICTED);
			wr->retry_at = retry_at;
			wr->attempts = attempts;
		}
	}
	return s->buffered < s->opts.max_buffer_bytes;
}

static void do_rewind(struct wandb_sink *s)
{
	if (s->rewind_to == WB_NO_HOLD)
		return;
	txlog_reader_close(s->reader);
	s->reader = NULL;
	int rv = txlog_reader_open(s->opts.log, s->rewind_to, &s->reader);
	if (rv) {
		log_error("wandb: cannot re-read the log from %" PRIu64 ": %s", s->rewind_to,
		          trackd_strerror(rv));
		return; /* tried again next round */
	}
	log_debug("wandb: re-reading the log from index %" PRIu64, s->rewind_to + 1);
	if (s->rewind_to < s->processed_index)
		s->processed_index = s->rewind_to;
	s->rewind_to = WB_NO_HOLD;
}

static int read_round(struct wandb_sink *s, int64_t now)
{
	int n = 0;
	s->paused = false;
	for (; n < ENTRIES_PER_ROUND; n++) {
		if (s->buffered >= s->opts.max_buffer_bytes && !make_room(s, now)) {
			s->paused = true; /* backpressure: the log keeps the rest */
			break;
		}
		uint64_t index;
		const void *data;
		size_t len;
		int rv = txlog_reader_next(s->reader, &index, &data, &len);
		if (rv == TRACKD_ECORRUPT)
			continue; /* counted by the txlog; the reader resumes after it */
		if (rv != 0)
			break;
		apply_entry(s, index, data, len);
		s->processed_index = index;
	}
	return n;
}

/* ---- requests ----------------------------------------------------------------------------- */

static bool complete_for(const struct wandb_sink *s, const struct wb_run *wr, int32_t *code)
{
	const struct run *r = wr->run;
	switch (r->state) {
	case RUN_FINISHED: *code = 0; return true;
	case RUN_FAILED: *code = r->exit_code ? r->exit_code : 1; return true;
	case RUN_CRASHED:
	case RUN_KILLED:
		/* A synced run gets no heartbeats the backend could miss: it ends it. */
		if (!s->opts.complete_crashed && !wr->sync)
			return false;
		*code = r->has_exit_code && r->exit_code ? r->exit_code : 1;
		return true;
	case RUN_RUNNING: break;
	}
	return false;
}

static int start_upsert(struct wandb_sink *s, struct wb_run *wr, int64_t now)
{
	struct run *r = wr->run;
	struct wb_upsert u = {
	    .name = r->id,
	    .project = r->project,
	    .entity = wr->upserted && wr->up_entity ? wr->up_entity : r->entity,
	    .display_name = r->display_name,
	    .notes = r->notes,
	    .group = r->group,
	    .job_type = r->job_type,
	    .host = r->host,
	    .tags = r->tags,
	    .n_tags = r->n_tags,
	    .clear_tags = wr->tags_cleared_gen > wr->meta_acked,
	    .clear_notes = wr->notes_cleared_gen > wr->meta_acked,
	    .config = &r->config,
	    .agent_version = s->version,
	};
	struct buf body;
	buf_init(&body, s->opts.max_request_bytes + (64u << 20));
	int rv = wb_build_upsert(&u, &body);
	struct wb_transfer *t = NULL;
	if (!rv)
		rv = wb_transfer_start(s, wr, WB_CALL_UPSERT, &body, &t);
	buf_fini(&body);
	if (rv)
		return rv;
	t->meta_gen = wr->meta_gen;
	wr->xfer = t;
	wr->last_upsert_at = now;
	return TRACKD_OK;
}

static int start_stream(struct wandb_sink *s, struct wb_run *wr, bool heartbeat, int64_t now)
{
	struct run *r = wr->run;
	struct buf summary, body;
	buf_init(&summary, s->opts.max_buffer_bytes + RUN_BUF_SLACK);
	buf_init(&body, s->opts.max_request_bytes + 1);
	struct wb_stream_in in = {
	    .max_body = s->opts.max_request_bytes,
	    .max_line = s->opts.max_line_bytes,
	};
	bool final = false;
	int rv = TRACKD_OK;
	if (!heartbeat) {
		in.history = (struct wb_lines){
		    .data = wr->hist.data ? wr->hist.data + wr->h_head : "",
		    .len = wr->hist.len - wr->h_head,
		    .offset = wr->h_base + wr->h_done - wr->h_skipped,
		};
		in.console = (struct wb_lines){
		    .data = wr->cons.data ? wr->cons.data + wr->c_head : "",
		    .len = wr->cons.len - wr->c_head,
		    .offset = wr->c_base + wr->c_done - wr->c_skipped,
		};
		in.events = (struct wb_lines){
		    .data = wr->evts.data ? wr->evts.data + wr->e_head : "",
		    .len = wr->evts.len - wr->e_head,
		    .offset = wr->e_base + wr->e_done - wr->e_skipped,
		};
		if (wr->sum_gen != wr->sum_acked) {
			rv = vmap_to_json(&r->summary, &summary);
			in.summary = summary.data ? summary.data : "{}";
			in.summary_len = summary.data ? summary.len : 2;
		}
		/* A sync job ends when the last line of its files has gone. */
		final = wr->end_gen != wr->end_acked && (!wr->sync || wb_sync_exhausted(wr)) &&
		        !wb_files_unput(s, wr);
		in.complete = final && complete_for(s, wr, &in.exitcode);
	}
	const char *uploaded[WB_UPLOADED_NAMES];
	struct wb_transfer listing = {0};
	if (!heartbeat && !rv) {
		int n = wb_files_listing(s, wr, uploaded, WB_UPLOADED_NAMES, &listing);
		if (n < 0)
			rv = n;
		in.uploaded = uploaded;
		in.n_uploaded = n > 0 ? (size_t)n : 0;
	}
	struct wb_stream_out out;
	if (!rv)
		rv = wb_build_file_stream(&in, &body, &out);
	/* An `uploaded` list too long for one request alone (long names, a small
	 * max_request_bytes): fewer names, the rest go with later requests. */
	while (rv == TRACKD_ETOOBIG && in.n_uploaded > 1) {
		in.n_uploaded /= 2;
		listing.n_listed = in.n_uploaded;
		buf_reset(&body);
		rv = wb_build_file_stream(&in, &body, &out);
	}
	buf_fini(&summary);
	uint8_t *capture = NULL;
	size_t capture_len = 0;
	/* Everything the run produced is in this request: when it is acknowledged,
	 * the run as it is now is what the backend holds. */
	if (!rv && !heartbeat && out.all && wr->meta_gen == wr->meta_acked && !wr->sync)
		rv = pack_snapshot(r, &capture, &capture_len);
	struct wb_transfer *t = NULL;
	if (!rv)
		rv = wb_transfer_start(s, wr, WB_CALL_FILE_STREAM, &body, &t);
	buf_fini(&body);
	if (rv) {
		free(capture);
		free(listing.listed);
		free(listing.listed_md5);
		return rv;
	}
	if (out.uploaded_sent) {
		t->listed = listing.listed;
		t->listed_md5 = listing.listed_md5;
		t->n_listed = listing.n_listed;
	} else {
		free(listing.listed);
		free(listing.listed_md5);
	}
	t->out = out;
	t->sum_gen = wr->sum_gen;
	t->final = final && out.all;
	t->end_gen = wr->end_gen;
	t->capture = capture;
	t->capture_len = capture_len;
	t->capture_index = r->last_index;
	wr->xfer = t;
	wr->last_stream_at = now;
	return TRACKD_OK;
}

/* The heartbeat of an evicted run, sent to learn whether the backend is back. */
static int start_probe(struct wandb_sink *s, struct wb_run *wr, int64_t now)
{
	struct buf body;
	buf_init(&body, 16);
	int rv = buf_puts(&body, "{}");
	struct wb_transfer *t = NULL;
	if (!rv)
		rv = wb_transfer_start(s, wr, WB_CALL_FILE_STREAM, &body, &t);
	buf_fini(&body);
	if (rv)
		return rv;
	t->out.empty = t->out.all = true;
	wr->xfer = t;
	wr->last_stream_at = now;
	return TRACKD_OK;
}

enum action { ACT_NONE, ACT_UPSERT, ACT_STREAM, ACT_HEARTBEAT };

static enum action next_action(struct wandb_sink *s, struct wb_run *wr, int64_t now)
{
	const struct wandb_sink_options *o = &s->opts;
	if (!wr->upserted)
		return ACT_UPSERT;
	bool end = ended(wr);
	if (wr->meta_gen != wr->meta_acked &&
	    (end || now - wr->last_upsert_at >= (int64_t)o->upsert_debounce_ms * 1000))
		return ACT_UPSERT;
	/* A sync job between two reads of its files: wait for the lines. */
	if (wr->sync && !lines_pending(wr) && !wb_sync_exhausted(wr))
		return ACT_NONE;
	int32_t code;
	if (wr->end_gen != wr->end_acked && !complete_for(s, wr, &code) && !lines_pending(wr) &&
	    wr->sum_gen == wr->sum_acked) {
		/* Crashed or killed, all delivered: the backend decides from the
		 * missing heartbeats, so there is nothing to send. */
		wr->end_acked = wr->end_gen;
		count(&s->runs_finished, 1);
	}
	/* Files PUT since the last request are listed in `uploaded`; the end
	 * (complete) waits until every file is up, as W&B's client finishes its
	 * file_stream after its uploads: the last request lists the last files. */
	bool end_due = wr->end_gen != wr->end_acked && !wb_files_unput(s, wr);
	bool data = lines_pending(wr) || wr->sum_gen != wr->sum_acked || end_due ||
	            wb_files_listing(s, wr, NULL, 0, NULL) > 0;
	if (data) {
		if (end || wr->more || s->paused ||
		    now - wr->last_stream_at >= (int64_t)o->transmit_interval_ms * 1000)
			return ACT_STREAM;
		return ACT_NONE;
	}
	if (!end && now - wr->last_stream_at >= (int64_t)o->heartbeat_interval_ms * 1000)
		return ACT_HEARTBEAT;
	return ACT_NONE;
}

static void schedule(struct wandb_sink *s, int64_t now)
{
	if (now < s->gate_until || s->n_runs == 0)
		return;
	size_t n = s->n_runs, first = s->next_pick % n;
	for (size_t k = 0; k < n && s->in_flight < s->opts.max_parallel_requests; k++) {
		struct wb_run *wr = s->runs[(first + k) % n];
		if (wr->phase == WB_EVICTED && !wr->xfer && wr->retry_at && now >= wr->retry_at) {
			/* Its turn to retry. Re-reading the log is costly during a long
			 * outage: an empty request asks first whether the backend is
			 * back (a run the backend does not know yet is re-read at once). */
			if (!wr->upserted || start_probe(s, wr, now) != 0)
				wb_reattach(s, wr);
			continue;
		}
		if (wr->phase != WB_ATTACHED || !wr->run || wr->xfer)
			continue;
		if (wr->retry_at && now < wr->retry_at)
			continue;
		enum action a = next_action(s, wr, now);
		int rv = TRACKD_OK;
		switch (a) {
		case ACT_NONE: continue;
		case ACT_UPSERT: rv = start_upsert(s, wr, now); break;
		case ACT_STREAM: rv = start_stream(s, wr, false, now); break;
		case ACT_HEARTBEAT: rv = start_stream(s, wr, true, now); break;
		}
		if (rv) {
			/* A local failure (memory): try again later, like a failed request. */
			snprintf(wr->last_error, sizeof wr->last_error,
			         "cannot build a request: %s", trackd_strerror(rv));
			wr->retry_at = now + (int64_t)s->opts.retry_min_ms * 1000;
		}
	}
	s->next_pick = (first + 1) % n;
}

/* ---- answers ------------------------------------------------------------------------------ */

double wb_uniform(struct wandb_sink *s)
{
	/* xorshift64*: jitter needs spread, not secrecy. */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return (double)((s->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static void note_rate_limit(struct wandb_sink *s, const struct wb_transfer *t, int64_t now)
{
	if (t->has_ratelimit_remaining && t->ratelimit_remaining == 0 && t->has_ratelimit_reset) {
		uint64_t ms = t->ratelimit_reset * 1000;
		if (ms > s->opts.retry_after_max_ms)
			ms = s->opts.retry_after_max_ms;
		int64_t until = now + (int64_t)ms * 1000;
		if (until > s->gate_until) {
			s->gate_until = until;
			log_info("wandb: rate limit reached; requests wait %" PRIu64 " ms", ms);
		}
	}
}

static void failed(struct wandb_sink *s, struct wb_run *wr, const struct wb_transfer *t,
                   long status, enum wb_verdict verdict, int64_t now)
{
	count(&s->requests_failed, 1);
	wr->last_status = status;
	if (verdict == WB_PERMANENT) {
		park(s, wr);
		return;
	}
	uint64_t delay =
	    wb_backoff_ms(wr->attempts, s->opts.retry_min_ms, s->opts.retry_max_ms, wb_uniform(s));
	uint64_t ra;
	bool retry_after =
	    t && t->retry_after[0] &&
	    wb_parse_retry_after(t->retry_after, clock_wall_us() / 1000000, &ra) == 0;
	if (retry_after) {
		delay = ra < s->opts.retry_after_max_ms ? ra : s->opts.retry_after_max_ms;
		/* Too Many Requests is about the key, not the run: everyone waits. */
		if (status == 429 && now + (int64_t)delay * 1000 > s->gate_until)
			s->gate_until = now + (int64_t)delay * 1000;
	}
	count(&s->requests_retried, 1);
	if (wr->attempts < UINT32_MAX)
		wr->attempts++;
	wr->retry_at = now + (int64_t)delay * 1000;
	if (wr->attempts == 1 || wr->attempts % 10 == 0)
		log_warn("wandb: run %s: %s (attempt %u); retrying in %" PRIu64 " ms%s", wr->id,
		         wr->last_error, wr->attempts, delay, retry_after ? " (Retry-After)" : "");
}

static void succeeded(struct wandb_sink *s, struct wb_run *wr, const struct wb_transfer *t)
{
	count(&s->requests_ok, 1);
	count(&s->bytes_sent, t->body.len);
	if (wr->attempts)
		log_info("wandb: run %s: delivered again after %u failed attempts", wr->id,
		         wr->attempts);
	wr->attempts = 0;
	wr->retry_at = 0;
	wr->last_error[0] = '\0';
}

static void upsert_done(struct wandb_sink *s, struct wb_run *wr, struct wb_transfer *t, long status,
                        int64_t now)
{
	struct wb_upsert_result res;
	enum wb_verdict v = wb_parse_upsert_response(t->response.data, t->response.len, &res);
	if (v != WB_OK) {
		snprintf(wr->last_error, sizeof wr->last_error, "UpsertBucket: %.250s", res.error);
		failed(s, wr, t, status, v, now);
		return;
	}
	if (!wr->upserted) {
		free(wr->up_entity);
		free(wr->up_project);
		wr->up_entity = dup_or_empty(*res.entity ? res.entity : wr->run->entity);
		wr->up_project = dup_or_empty(*res.project ? res.project : wr->run->project);
		/* Where this sink's lines start: after what the backend already holds
		 * (0 for a new run). Durable before any line is sent, so a restart
		 * cannot mistake our own lines for someone else's. */
		wr->h_base = res.has_history_line_count ? res.history_line_count : 0;
		wr->c_base = res.has_log_line_count ? res.log_line_count : 0;
		wr->e_base = res.has_events_line_count ? res.events_line_count : 0;
		wr->upserted = true;
		if (!wr->up_entity || !wr->up_project ||
		    (wr->sync ? wb_sync_save(s, wr) : write_state(s, wr, NULL, 0)) != 0) {
			wr->upserted = false;
			snprintf(wr->last_error, sizeof wr->last_error,
			         "cannot record the run's upload state on disk");
			failed(s, wr, NULL, 0, WB_RETRY, now);
			return;
		}
		if (!wr->url_logged) {
			char url[4096];
			wb_run_url(s, wr, url, sizeof url);
			log_info("wandb: run %s uploading to %s", wr->id, url);
			wr->url_logged = true;
		}
	}
	wr->meta_acked = t->meta_gen;
	succeeded(s, wr, t);
}

static void consume(struct wandb_sink *s, struct wb_run *wr, const struct wb_stream_out *out)
{
	wr->h_head += out->history_bytes;
	wr->c_head += out->console_bytes;
	wr->e_head += out->events_bytes;
	wr->h_done += out->history_lines;
	wr->c_done += out->console_lines;
	wr->e_done += out->events_lines;
	count(&s->lines_sent, out->history_lines + out->console_lines + out->events_lines -
	                          out->history_skipped - out->console_skipped -
	                          out->events_skipped);
	wr->h_skipped += out->history_skipped;
	wr->c_skipped += out->console_skipped;
	wr->e_skipped += out->events_skipped;
	s->buffered -= out->history_bytes + out->console_bytes + out->events_bytes;
	size_t skipped = out->history_skipped + out->console_skipped + out->events_skipped;
	if (skipped) {
		count(&s->lines_skipped, skipped);
		log_warn("wandb: run %s: %zu line(s) over the line limit (%" PRIu64
		         " bytes, or too large for one request) not uploaded; largest %zu bytes",
		         wr->id, skipped, s->opts.max_line_bytes, out->largest_skipped);
	}
	/* Compact now and then, not on every answer. */
	if (wr->h_head == wr->hist.len) {
		buf_reset(&wr->hist);
		wr->h_head = 0;
	} else if (wr->h_head > (1u << 20) && wr->h_head > wr->hist.len / 2) {
		memmove(wr->hist.data, wr->hist.data + wr->h_head, wr->hist.len - wr->h_head + 1);
		wr->hist.len -= wr->h_head;
		wr->h_head = 0;
	}
	if (wr->e_head == wr->evts.len) {
		buf_reset(&wr->evts);
		wr->e_head = 0;
	} else if (wr->e_head > (1u << 20) && wr->e_head > wr->evts.len / 2) {
		memmove(wr->evts.data, wr->evts.data + wr->e_head, wr->evts.len - wr->e_head + 1);
		wr->evts.len -= wr->e_head;
		wr->e_head = 0;
	}
	if (wr->c_head == wr->cons.len) {
		buf_reset(&wr->cons);
		wr->c_head = 0;
	} else if (wr->c_head > (1u << 20) && wr->c_head > wr->cons.len / 2) {
		memmove(wr->cons.data, wr->cons.data + wr->c_head, wr->cons.len - wr->c_head + 1);
		wr->cons.len -= wr->c_head;
		wr->c_head = 0;
	}
}

static void stream_done(struct wandb_sink *s, struct wb_run *wr, struct wb_transfer *t)
{
	consume(s, wr, &t->out);
	if (t->out.summary_sent)
		wr->sum_acked = t->sum_gen;
	if (t->out.summary_skipped) {
		wr->sum_acked = t->sum_gen;
		if (!wr->summary_too_big) {
			count(&s->lines_skipped, 1);
			log_warn("wandb: run %s: the summary is too large for one request; not "
			         "uploaded",
			         wr->id);
			wr->summary_too_big = true;
		}
	}
	if (t->final && wr->end_gen == t->end_gen && wr->end_acked != t->end_gen) {
		wr->end_acked = t->end_gen;
		count(&s->runs_finished, 1);
	}
	wr->more = !t->out.all && !t->out.empty;
	if (!wr->stop_requested && wb_stream_response_stopped(t->response.data, t->response.len)) {
		wr->stop_requested = true;
		log_warn("wandb: run %s: a stop was requested in the W&B UI; the agent has no way "
		         "to stop the training process and goes on uploading",
		         wr->id);
	}
	if (t->capture && write_state(s, wr, t->capture, t->capture_len) == 0)
		made_durable(wr, t->capture_index);
	wb_files_listed(s, wr, t); /* before: a sync job is synced once its files are */
	if (wr->sync)
		wb_sync_acked(s, wr, t);
	succeeded(s, wr, t);
}

static void transfer_done(struct wandb_sink *s, struct wb_transfer *t, CURLcode result, int64_t now)
{
	struct wb_run *wr = t->wr;
	wr->xfer = NULL;
	wr->touched_at = now;
	long status = 0;
	if (result == CURLE_OK)
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	note_rate_limit(s, t, now);
	const char *what = t->call == WB_CALL_UPSERT ? "UpsertBucket" : "file_stream";
	if (result != CURLE_OK) {
		snprintf(wr->last_error, sizeof wr->last_error, "%s: %.250s", what,
		         t->errbuf[0] ? t->errbuf : curl_easy_strerror(result));
		failed(s, wr, t, 0, WB_RETRY, now);
		return;
	}
	enum wb_verdict v = wb_classify_status(t->call, status);
	if (v != WB_OK) {
		snprintf(wr->last_error, sizeof wr->last_error, "%s: HTTP %ld: %.120s", what,
		         status, t->response.data ? t->response.data : "");
		failed(s, wr, t, status, v, now);
		return;
	}
	wr->last_status = status;
	if (wr->phase == WB_EVICTED) {
		/* The probe went through: now derive the run's lines again. */
		succeeded(s, wr, t);
		wb_reattach(s, wr);
	} else if (t->call == WB_CALL_UPSERT)
		upsert_done(s, wr, t, status, now);
	else
		stream_done(s, wr, t);
}

/* Returns how many requests ended. */
static int collect(struct wandb_sink *s)
{
	CURLMsg *m;
	int left, ended = 0;
	while ((m = curl_multi_info_read(s->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct wb_transfer *t = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
		CURLcode result = m->data.result;
		if (!t)
			continue;
		if (t->is_put || t->crf_n)
			wb_files_done(s, t, result, clock_mono_us());
		else
			transfer_done(s, t, result, clock_mono_us());
		wb_transfer_free(s, t);
		ended++;
	}
	return ended;
}

/* ---- checkpoints --------------------------------------------------------------------------- */

static void checkpoint(struct wandb_sink *s, int64_t now)
{
	/* Runs with nothing left to send: their current state is what the backend
	 * holds, so it can be made durable without a request. */
	for (size_t i = 0; i < s->n_runs; i++) {
		struct wb_run *wr = s->runs[i];
		if (wr->hold == WB_NO_HOLD || !delivered(wr))
			continue;
		uint8_t *snap;
		size_t len;
		if (pack_snapshot(wr->run, &snap, &len) != 0)
			continue;
		if (write_state(s, wr, snap, len) == 0)
			made_durable(wr, wr->run->last_index);
		free(snap);
	}
	uint64_t cursor = s->processed_index;
	for (size_t i = 0; i < s->n_runs; i++)
		if (s->runs[i]->hold < cursor)
			cursor = s->runs[i]->hold;
	if (cursor > s->committed_index) {
		int rv = txlog_cursor_commit(s->opts.log, CURSOR_NAME, cursor);
		if (rv == 0)
			s->committed_index = cursor;
		else
			log_error("wandb: cursor commit failed: %s", trackd_strerror(rv));
	}
	/* Ended, delivered, idle runs leave memory (they are reloaded from disk if a
	 * record comes for them); running runs stay for their heartbeats. */
	size_t kept = 0;
	for (size_t i = 0; i < s->n_runs; i++) {
		struct wb_run *wr = s->runs[i];
		bool idle =
		    now - wr->touched_at > IDLE_FREE_US && wr->hold == WB_NO_HOLD && !wr->xfer;
		bool done = wr->sync ? wb_sync_finished(wr)
		                     : (wr->phase == WB_OFFLINE) ||
		                           (wr->phase == WB_ATTACHED &&
		                            (!wr->run || (ended(wr) && delivered(wr))));
		/* Its files keep it in memory until they are up and listed. */
		if (idle && done && !wb_files_pending(s, wr)) {
			wb_files_forget(s, wr);
			wr_free(s, wr);
		} else
			s->runs[kept++] = wr;
	}
	s->n_runs = kept;
}

/* ---- the thread ---------------------------------------------------------------------------- */

static void *sink_main(void *arg)
{
	struct wandb_sink *s = arg;
	int64_t now = clock_mono_us(), drain_deadline = 0;
	int64_t next_checkpoint = now + (int64_t)s->opts.checkpoint_interval_ms * 1000;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		now = clock_mono_us();
		int applied = 0;
		if (!s->closing) {
			do_rewind(s);
			if (s->reader)
				applied = read_round(s, now);
			wb_sync_tick(s, now);
			schedule(s, now);
			wb_files_schedule(s, now);
		} else if (!drain_deadline) {
			drain_deadline = now + (int64_t)s->opts.drain_timeout_ms * 1000;
		}
		int running;
		curl_multi_perform(s->multi, &running);
		/* An answer may have made room for the next request: no wait then. */
		int answered = collect(s);
		now = clock_mono_us();
		if (now >= next_checkpoint) {
			checkpoint(s, now);
			next_checkpoint = now + (int64_t)s->opts.checkpoint_interval_ms * 1000;
		}
		if (s->closing && (s->in_flight == 0 || now >= drain_deadline))
			break; /* PUTs are not waited for: their journal redoes them */
		pthread_mutex_unlock(&s->mu);
		curl_multi_poll(s->multi, NULL, 0,
		                applied == ENTRIES_PER_ROUND || answered ? 0 : POLL_MS, NULL);
		pthread_mutex_lock(&s->mu);
	}
	/* Unanswered requests are abandoned: what they carried is derived again
	 * from the log at the next start. */
	for (size_t i = 0; i < s->n_runs; i++) {
		struct wb_run *wr = s->runs[i];
		if (wr->xfer) {
			wb_transfer_free(s, wr->xfer);
			wr->xfer = NULL;
		}
		wb_files_drop(s, wr);
	}
	checkpoint(s, clock_mono_us());
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Runs that were running at the last stop: back in memory for their heartbeats
 * even if no record comes for them. */
static void load_running(struct wandb_sink *s)
{
	DIR *d = opendir(s->runs_dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n < 7 || n > 200 || strcmp(de->d_name + n - 6, ".state") != 0)
			continue;
		/* The file name is the id, or "x" + the id in hex: whichever names
		 * this very file. */
		char id[128], check[256];
		snprintf(id, sizeof id, "%.*s", (int)(n - 6), de->d_name);
		wb_state_file_name(id, check, sizeof check);
		if (strcmp(check, de->d_name) != 0) {
			size_t k = 0;
			for (size_t i = 1; i + 1 < n - 6 && k + 1 < sizeof id; i += 2) {
				unsigned v;
				if (sscanf(de->d_name + i, "%2x", &v) != 1)
					break;
				id[k++] = (char)v;
			}
			id[k] = '\0';
			wb_state_file_name(id, check, sizeof check);
			if (strcmp(check, de->d_name) != 0)
				continue;
		}
		if (find_id(s, id))
			continue;
		struct wb_run *wr = wr_new(s, id);
		if (!wr)
			continue;
		/* Ended runs with files still to upload come back too (their
		 * journal says so; it is opened once and kept). */
		if (load_state(s, wr) != 0 || wr->phase != WB_ATTACHED || !wr->run ||
		    (wr->run->state != RUN_RUNNING && !wb_files_pending(s, wr)) ||
		    add_run(s, wr) != 0)
			wr_free(s, wr);
	}
	closedir(d);
}

static bool loopback_url(const char *url)
{
	const char *h = strstr(url, "://");
	h = h ? h + 3 : url;
	return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost", 9) == 0 ||
	       strncmp(h, "[::1]", 5) == 0;
}

/* ---- connection settings (start and reconfigure) --------------------------------- */

void wb_headers_release(struct wb_headers *h)
{
	if (!h || --h->refs > 0)
		return;
	curl_slist_free_all(h->list);
	free(h);
}

/* What a configuration change may replace, built whole before anything is
 * swapped in, so that a bad new setting changes nothing. */
struct wb_settings {
	char *base_url, *app_url, *entity, *ca_file;
	char *api_key; /* secret */
	struct wb_headers *headers;
};

static void settings_free(struct wb_settings *st)
{
	free(st->base_url);
	free(st->app_url);
	free(st->entity);
	free(st->ca_file);
	if (st->api_key) {
		explicit_bzero(st->api_key, strlen(st->api_key));
		free(st->api_key);
	}
	wb_headers_release(st->headers);
	memset(st, 0, sizeof *st);
}

static int settings_make(const struct wandb_sink_options *o, const char *version,
                         struct wb_settings *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof *st);
	char app[2100];
	const char *base = o->base_url && *o->base_url ? o->base_url : "https://api.wandb.ai";
	snprintf(err, errlen, "out of memory");
	if (!(st->base_url = strdup(base)))
		goto nomem;
	size_t bl = strlen(st->base_url);
	while (bl > 8 && st->base_url[bl - 1] == '/')
		st->base_url[--bl] = '\0';
	if (o->app_url && *o->app_url)
		snprintf(app, sizeof app, "%s", o->app_url);
	else
		wb_derive_app_url(st->base_url, app, sizeof app);
	size_t al = strlen(app);
	while (al > 8 && app[al - 1] == '/')
		app[--al] = '\0';
	if (!(st->app_url = strdup(app)) || !(st->entity = dup_or_empty(o->entity)) ||
	    !(st->ca_file = dup_or_empty(o->ca_file)))
		goto nomem;
	if (strncmp(st->base_url, "http://", 7) != 0 && strncmp(st->base_url, "https://", 8) != 0) {
		snprintf(err, errlen,
		         "sinks.wandb.base_url %s: expected an http:// or https:// URL",
		         st->base_url);
		settings_free(st);
		return TRACKD_EINVAL;
	}
	char *key = NULL;
	int rv = wb_load_api_key(o->api_key_file, o->api_key_env, &key, err, errlen);
	if (rv != 0) {
		settings_free(st);
		return rv;
	}
	st->api_key = key;
	if (!(st->headers = calloc(1, sizeof *st->headers)))
		goto nomem;
	st->headers->refs = 1;
	char ua[200];
	snprintf(ua, sizeof ua, "User-Agent: trackd/%s", version);
	const char *lines[] = {"Content-Type: application/json", ua,
	                       /* No 100-continue round trip before each large body. */
	                       "Expect:"};
	for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
		struct curl_slist *n = curl_slist_append(st->headers->list, lines[i]);
		if (!n)
			goto nomem;
		st->headers->list = n;
	}
	return TRACKD_OK;
nomem:
	snprintf(err, errlen, "out of memory");
	settings_free(st);
	return TRACKD_ENOMEM;
}

static bool loopback_url(const char *url);

static void settings_warn(const struct wandb_sink_options *o, const char *base_url)
{
	if (strncmp(base_url, "http://", 7) == 0 && !loopback_url(base_url))
		log_warn("wandb: %s is plain http: the API key crosses the network unencrypted",
		         base_url);
	if (!o->tls_verify)
		log_warn("wandb: sinks.wandb.tls_verify is false: the server's identity is not "
		         "checked");
}

/* Exchanges the sink's settings with `st` (which then holds the old ones).
 * Caller holds s->mu, or no thread runs yet. */
static void settings_swap(struct wandb_sink *s, struct wb_settings *st)
{
	struct wb_settings old = {s->base_url, s->app_url, s->entity,
	                          s->ca_file,  s->api_key, s->headers};
	s->base_url = st->base_url;
	s->app_url = st->app_url;
	s->entity = st->entity;
	s->ca_file = st->ca_file;
	s->api_key = st->api_key;
	s->headers = st->headers;
	*st = old;
}

int wandb_sink_reconfigure(wandb_sink *s, const struct wandb_sink_options *opts, bool *key_changed,
                           char *err, size_t errlen)
{
	struct wb_settings st;
	int rv = settings_make(opts, s->version, &st, err, errlen);
	if (rv != 0)
		return rv;
	settings_warn(opts, st.base_url);
	pthread_mutex_lock(&s->mu);
	bool moved = strcmp(s->base_url, st.base_url) != 0;
	if (key_changed)
		*key_changed = strcmp(s->api_key, st.api_key) != 0;
	settings_swap(s, &st);
	struct wandb_sink_options *o = &s->opts;
	/* The option strings were read above; the caller's may go away. */
	o->base_url = o->app_url = o->entity = o->ca_file = NULL;
	o->api_key_file = o->api_key_env = NULL;
#define TAKE(f)                                                                                    \
	do {                                                                                       \
		if (opts->f)                                                                       \
			o->f = opts->f;                                                            \
	} while (0)
	TAKE(transmit_interval_ms);
	TAKE(heartbeat_interval_ms);
	TAKE(connect_timeout_ms);
	TAKE(request_timeout_ms);
	TAKE(stall_timeout_ms);
	TAKE(retry_min_ms);
	TAKE(retry_max_ms);
	TAKE(retry_after_max_ms);
#undef TAKE
	o->upsert_debounce_ms = opts->upsert_debounce_ms;
	o->files_batch_delay_ms = opts->files_batch_delay_ms;
	o->tls_verify = opts->tls_verify;
	o->complete_crashed = opts->complete_crashed;
	/* Waits a server imposed (backoff, Retry-After, rate limits) hold for that
	 * server only: at a new address, runs waiting to retry go at once. */
	if (moved) {
		int64_t now = clock_mono_us();
		for (size_t i = 0; i < s->n_runs; i++)
			if (s->runs[i]->retry_at > now)
				s->runs[i]->retry_at = now;
		s->gate_until = 0;
	}
	pthread_mutex_unlock(&s->mu);
	/* In-flight requests keep the old headers (and URL) until they end. */
	settings_free(&st);
	if (s->multi)
		curl_multi_wakeup(s->multi);
	log_info("wandb sink: settings reloaded; uploading to %s", s->base_url);
	return TRACKD_OK;
}

int wandb_sink_start(const struct wandb_sink_options *opts, wandb_sink **out)
{
	struct wandb_sink *s = calloc(1, sizeof *s);
	if (!s)
		return TRACKD_ENOMEM;
	s->opts = *opts;
	struct wandb_sink_options *o = &s->opts;
#define DEFAULT(f, v)                                                                              \
	do {                                                                                       \
		if (!o->f)                                                                         \
			o->f = (v);                                                                \
	} while (0)
	DEFAULT(transmit_interval_ms, 15000);
	DEFAULT(heartbeat_interval_ms, 30000);
	DEFAULT(connect_timeout_ms, 10000);
	DEFAULT(request_timeout_ms, 180000);
	DEFAULT(stall_timeout_ms, 30000);
	DEFAULT(retry_min_ms, 2000);
	DEFAULT(retry_max_ms, 60000);
	DEFAULT(retry_after_max_ms, 3600000);
	DEFAULT(max_request_bytes, 10u << 20);
	DEFAULT(max_line_bytes, (10u << 20) - (100u << 10));
	DEFAULT(max_buffer_bytes, 256u << 20);
	DEFAULT(max_parallel_requests, 16);
	DEFAULT(max_parallel_uploads, 4);
	DEFAULT(checkpoint_interval_ms, 1000);
	DEFAULT(drain_timeout_ms, 2000);
#undef DEFAULT
	pthread_mutex_init(&s->mu, NULL);
	s->rewind_to = WB_NO_HOLD;
	s->rng = (uint64_t)clock_wall_us() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
	int rv = TRACKD_ENOMEM;
	if (!(s->version = dup_or_empty(o->version ? o->version : "0")))
		goto fail;
	struct wb_settings st;
	char err[600];
	if ((rv = settings_make(o, s->version, &st, err, sizeof err)) != 0) {
		log_error("wandb sink not started: %s", err);
		goto fail;
	}
	settings_warn(o, st.base_url);
	settings_swap(s, &st);
	settings_free(&st); /* what the sink had: nothing */

	if (snprintf(s->dir, sizeof s->dir, "%s/sinks/wandb", o->state_dir) >= (int)sizeof s->dir) {
		rv = TRACKD_EINVAL;
		goto fail;
	}
	snprintf(s->runs_dir, sizeof s->runs_dir, "%s/runs", s->dir);
	snprintf(s->files_dir, sizeof s->files_dir, "%s/files", s->dir);
	if ((rv = mkdir_parents(s->runs_dir, 0700)) != 0 ||
	    (rv = mkdir_parents(s->files_dir, 0700)) != 0) {
		log_error("wandb: cannot create its dirs under %s: %s", s->dir,
		          trackd_strerror(rv));
		goto fail;
	}
	s->put_queue = calloc(WB_PUT_QUEUE_MAX, sizeof *s->put_queue);
	s->puts = calloc(o->max_parallel_uploads, sizeof *s->puts);
	if (!s->put_queue || !s->puts) {
		rv = TRACKD_ENOMEM;
		goto fail;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("wandb: libcurl did not initialise");
		rv = TRACKD_ESYS;
		goto fail;
	}
	s->curl_inited = true;
	if (!(s->multi = curl_multi_init())) {
		rv = TRACKD_ENOMEM;
		goto fail;
	}
	/* Uploads have their own slots: a run's PUTs never wait for file_stream's. */
	long conns = (long)o->max_parallel_requests + (long)o->max_parallel_uploads;
	curl_multi_setopt(s->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns);
	curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, conns);
	uint64_t position;
	if ((rv = txlog_cursor_register(o->log, CURSOR_NAME, &position)) != 0 ||
	    (rv = txlog_reader_open(o->log, position, &s->reader)) != 0) {
		log_error("wandb: cannot open its cursor on the log: %s", trackd_strerror(rv));
		goto fail;
	}
	s->processed_index = s->committed_index = position;
	load_running(s);
	size_t reloaded = s->n_runs; /* read before the thread owns the run table */
	if (pthread_create(&s->thread, NULL, sink_main, s) != 0) {
		rv = TRACKD_ESYS;
		goto fail;
	}
	s->thread_started = true;
	log_info("wandb sink: uploading to %s from log index %" PRIu64 ", %zu running run(s) "
	         "reloaded",
	         s->base_url, position + 1, reloaded);
	*out = s;
	return TRACKD_OK;
fail:
	wandb_sink_free(s);
	return rv;
}

void wandb_sink_close(wandb_sink *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->closing = true;
	pthread_mutex_unlock(&s->mu);
	if (s->multi)
		curl_multi_wakeup(s->multi);
}

void wandb_sink_stop(wandb_sink *s)
{
	if (!s || !s->thread_started)
		return;
	wandb_sink_close(s);
	pthread_join(s->thread, NULL);
	s->thread_started = false;
}

void wandb_sink_free(wandb_sink *s)
{
	if (!s)
		return;
	wandb_sink_stop(s);
	for (size_t i = 0; i < s->n_runs; i++) {
		if (s->runs[i]->xfer)
			wb_transfer_free(s, s->runs[i]->xfer);
		wr_free(s, s->runs[i]);
	}
	free(s->runs);
	free(s->put_queue);
	free(s->puts);
	txlog_reader_close(s->reader);
	if (s->multi)
		curl_multi_cleanup(s->multi);
	if (s->curl_inited)
		curl_global_cleanup();
	struct wb_settings st = {s->base_url, s->app_url, s->entity,
	                         s->ca_file,  s->api_key, s->headers};
	settings_free(&st);
	free(s->version);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

void wandb_sink_get_stats(wandb_sink *s, struct wandb_sink_stats *out)
{
	memset(out, 0, sizeof *out);
	int64_t now = clock_mono_us();
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->n_runs; i++) {
		const struct wb_run *wr = s->runs[i];
		out->runs_parked += wr->phase == WB_PARKED;
		out->runs_retrying +=
		    (wr->phase == WB_EVICTED) || (wr->phase == WB_ATTACHED && wr->retry_at > now);
		out->runs_uploading +=
		    wr->phase == WB_ATTACHED && wr->run && (!ended(wr) || !delivered(wr));
	}
	out->processed_index = s->processed_index;
	out->committed_index = s->committed_index;
	out->buffered_bytes = s->buffered;
	pthread_mutex_unlock(&s->mu);
	uint64_t readable = txlog_readable_index(s->opts.log);
	out->backlog = readable > out->processed_index ? readable - out->processed_index : 0;
	out->requests_ok = atomic_load(&s->requests_ok);
	out->requests_failed = atomic_load(&s->requests_failed);
	out->lines_skipped = atomic_load(&s->lines_skipped);
	out->bytes_sent = atomic_load(&s->bytes_sent);
	out->requests_retried = atomic_load(&s->requests_retried);
	out->lines_sent = atomic_load(&s->lines_sent);
	out->runs_finished = atomic_load(&s->runs_finished);
	out->files_uploaded = atomic_load(&s->files_uploaded);
	out->files_failed = atomic_load(&s->files_failed);
	out->file_bytes_sent = atomic_load(&s->file_bytes_sent);
}
