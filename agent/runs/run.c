#include "run.h"

#include "errors.h"
#include "hash.h"
#include "json_write.h"
#include "run_metadata.h"
#include "proc.h"
#include "run_files.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const state_names[] = {
    [RUN_RUNNING] = "running", [RUN_FINISHED] = "finished", [RUN_FAILED] = "failed",
    [RUN_KILLED] = "killed",   [RUN_CRASHED] = "crashed",
};

const char *run_state_name(enum run_state s)
{
	return state_names[s];
}

static enum run_state state_from_name(const char *name)
{
	for (int i = 0; i <= RUN_CRASHED; i++)
		if (name && strcmp(name, state_names[i]) == 0)
			return (enum run_state)i;
	return RUN_RUNNING;
}

/* Outcome order for runs with several processes: the worst one wins. */
static int severity(enum run_state s)
{
	switch (s) {
	case RUN_CRASHED: return 4;
	case RUN_KILLED: return 3;
	case RUN_FAILED: return 2;
	case RUN_FINISHED: return 1;
	case RUN_RUNNING: return 0;
	}
	return 0;
}

void run_dir_name(int64_t start_time_us, const char *id, char *out, size_t len)
{
	time_t t = (time_t)(start_time_us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(out, len, "run-%04d%02d%02d_%02d%02d%02d-%s", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, id);
}

static const char *const name_adjectives[] = {
    "amber", "brisk", "calm",  "dapper", "eager",   "fancy", "gentle", "hearty",
    "icy",   "jolly", "keen",  "lucky",  "misty",   "noble", "olive",  "polar",
    "quiet", "rosy",  "sunny", "tidy",   "upbeat",  "vivid", "witty",  "young",
    "zesty", "bold",  "crisp", "dusty",  "earnest", "fresh", "golden", "hazy",
};
static const char *const name_nouns[] = {
    "aardvark", "breeze", "canyon", "dawn",    "ember",    "forest", "glade", "harbor",
    "island",   "jungle", "kite",   "lake",    "meadow",   "night",  "ocean", "pine",
    "quartz",   "river",  "sky",    "thunder", "universe", "valley", "wave",  "yak",
    "zephyr",   "brook",  "cloud",  "dune",    "field",    "grove",  "hill",  "moon",
};

void run_default_name(const char *id, char *out, size_t len)
{
	/* FNV-1a: stable across builds and machines, unlike anything seeded. */
	uint32_t h = hash_fnv1a32_str(id);
	size_t na = sizeof name_adjectives / sizeof *name_adjectives;
	size_t nn = sizeof name_nouns / sizeof *name_nouns;
	snprintf(out, len, "%s-%s-%u", name_adjectives[h % na], name_nouns[(h >> 8) % nn],
	         (unsigned)((h >> 16) % 999 + 1));
}

static int set_str(char **dst, const char *src)
{
	char *c = strdup(src ? src : "");
	if (!c)
		return TRACKD_ENOMEM;
	free(*dst);
	*dst = c;
	return TRACKD_OK;
}

static int set_tags(struct run *r, char **tags, size_t n)
{
	char **copy = calloc(n ? n : 1, sizeof *copy);
	if (!copy)
		return TRACKD_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		copy[i] = strdup(tags[i] ? tags[i] : "");
		if (!copy[i]) {
			while (i--)
				free(copy[i]);
			free(copy);
			return TRACKD_ENOMEM;
		}
	}
	for (size_t i = 0; i < r->n_tags; i++)
		free(r->tags[i]);
	free(r->tags);
	r->tags = copy;
	r->n_tags = n;
	return TRACKD_OK;
}

/* `by_start`: the process sent a start for the run (else it only logged). */
static void attach(struct run *r, int32_t pid, bool by_start)
{
	for (size_t i = 0; i < r->n_attached; i++) {
		if (r->attached[i].pid == pid && !r->attached[i].done) {
			r->attached[i].by_records &= !by_start;
			return;
		}
	}
	/* Reuse a slot of an ended process before giving up on a full table. */
	struct run_attached *slot = NULL;
	if (r->n_attached < RUN_MAX_ATTACHED)
		slot = &r->attached[r->n_attached++];
	else
		for (size_t i = 0; i < r->n_attached && !slot; i++)
			if (r->attached[i].done)
				slot = &r->attached[i];
	if (!slot)
		return; /* 64 live processes on one run: the rest are not tracked for crashes */
	slot->pid = pid;
	slot->start_ticks = proc_start_ticks(pid);
	slot->done = slot->crashed = false;
	slot->by_records = !by_start;
}

int run_new(const char *id, const Trackd__V1__RunStart *start, const struct record_origin *o,
            struct run **out)
{
	struct run *r = calloc(1, sizeof *r);
	if (!r)
		return TRACKD_ENOMEM;
	vmap_init(&r->pending);
	vmap_init(&r->summary);
	vmap_init(&r->config);
	r->start_time_us = start->has_start_time_us ? start->start_time_us : o->recv_time_us;
	char dir[160];
	run_dir_name(r->start_time_us, id, dir, sizeof dir);
	int rv = set_str(&r->id, id);
	if (!rv)
		rv = set_str(&r->entity, start->entity);
	if (!rv)
		rv = set_str(&r->project,
		             start->project && *start->project ? start->project : "uncategorized");
	if (!rv)
		rv = set_str(&r->dir_name, dir);
	if (!rv && start->display_name && *start->display_name) {
		rv = set_str(&r->display_name, start->display_name);
	} else if (!rv) {
		char name[128];
		run_default_name(id, name, sizeof name);
		rv = set_str(&r->display_name, name);
	}
	if (!rv)
		rv = set_str(&r->notes, start->notes);
	if (!rv)
		rv = set_str(&r->group, start->group);
	if (!rv)
		rv = set_str(&r->job_type, start->job_type);
	if (!rv)
		rv = set_str(&r->host, start->host);
	if (!rv)
		rv = set_tags(r, start->tags, start->n_tags);
	if (rv) {
		run_free(r);
		return rv;
	}
	r->mode = start->mode;
	r->imported = start->imported;
	r->uid = o->uid;
	r->state = RUN_RUNNING;
	r->worst_outcome = RUN_RUNNING;
	*out = r;
	return TRACKD_OK;
}

void run_free(struct run *r)
{
	if (!r)
		return;
	free(r->id);
	free(r->entity);
	free(r->project);
	free(r->display_name);
	free(r->notes);
	free(r->group);
	free(r->job_type);
	free(r->host);
	free(r->dir_name);
	free(r->agent_metadata);
	free(r->client_environment);
	for (size_t i = 0; i < r->n_tags; i++)
		free(r->tags[i]);
	free(r->tags);
	vmap_fini(&r->pending);
	vmap_fini(&r->summary);
	vmap_fini(&r->config);
	for (size_t i = 0; i < r->n_metrics; i++)
		free(r->metrics[i].name);
	free(r->metrics);
	free(r);
}

/* ---- history and summary ---------------------------------------------------- */

static struct run_metric *find_metric(struct run *r, const char *name)
{
	for (size_t i = 0; i < r->n_metrics; i++)
		if (strcmp(r->metrics[i].name, name) == 0)
			return &r->metrics[i];
	return NULL;
}

static bool numeric(const struct vvalue *v, double *out)
{
	if (v->kind == V_DOUBLE)
		*out = v->u.d;
	else if (v->kind == V_INT)
		*out = (double)v->u.i;
	else
		return false;
	return true;
}

static int summarise(struct run *r, const char *key, const struct vvalue *v)
{
	struct run_metric *m = find_metric(r, key);
	Trackd__V1__MetricSummary mode =
	    m ? m->summary : TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_LAST;
	double x, cur;
	if (mode == TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_NONE)
		return TRACKD_OK;
	/* min / max / mean of a map, list or null means nothing: such a value
	 * leaves the summary as it is (strings, bools and NaN still replace). */
	if (mode != TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_LAST &&
	    (v->kind == V_MAP || v->kind == V_LIST || v->kind == V_NULL))
		return TRACKD_OK;
	if (mode == TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_LAST || !numeric(v, &x) || isnan(x))
		return vmap_set(&r->summary, key, v);
	struct vvalue *prev = vmap_get(&r->summary, key);
	bool have = prev && numeric(prev, &cur);
	switch (mode) {
	case TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MIN:
		return !have || x < cur ? vmap_set(&r->summary, key, v) : TRACKD_OK;
	case TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MAX:
		return !have || x > cur ? vmap_set(&r->summary, key, v) : TRACKD_OK;
	case TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MEAN:
		m->sum += x;
		m->count++;
		return vmap_set_double(&r->summary, key, m->sum / (double)m->count);
	default: return vmap_set(&r->summary, key, v);
	}
}

/* Emits the pending row as one history line and moves to the next step. */
static int commit_pending(struct run *r, struct run_effects *fx)
{
	if (!r->has_pending)
		return TRACKD_OK;
	double runtime = (double)(r->pending_time_us - r->start_time_us) / 1e6;
	double timestamp = (double)r->pending_time_us / 1e6;
	if (runtime < 0)
		runtime = 0;
	/* An imported row keeps the stamps its source gave it, exactly. */
	if (r->has_pending_timestamp)
		timestamp = r->pending_timestamp;
	if (r->has_pending_runtime)
		runtime = r->pending_runtime;
	r->has_pending_timestamp = r->has_pending_runtime = false;
	int rv = vmap_set_int(&r->pending, "_step", r->step);
	if (!rv)
		rv = vmap_set_double(&r->pending, "_runtime", runtime);
	if (!rv)
		rv = vmap_set_double(&r->pending, "_timestamp", timestamp);
	size_t mark = fx->history->len;
	int row_rv = TRACKD_OK; /* the index's failure does not stop the summary */
	if (!rv)
		rv = vmap_to_json(&r->pending, fx->history);
	if (!rv)
		rv = buf_putc(fx->history, '\n');
	if (rv) {
		fx->history->len = mark; /* never half a line */
		return rv;
	}
	if (fx->on_row) {
		const struct run_row row = {.index = r->history_lines,
		                            .step = r->step,
		                            .runtime = runtime,
		                            .timestamp = timestamp,
		                            .values = &r->pending};
		row_rv = fx->on_row(fx->row_arg, &row);
	}
	for (size_t i = 0; i < r->pending.n && !rv; i++) {
		const struct vnode *n = &r->pending.items[i];
		if (n->key[0] == '_')
			continue;
		rv = summarise(r, n->key, &n->v);
	}
	if (!rv)
		rv = vmap_set_int(&r->summary, "_step", r->step);
	if (!rv)
		rv = vmap_set_double(&r->summary, "_runtime", runtime);
	if (!rv)
		rv = vmap_set_double(&r->summary, "_timestamp", timestamp);
	r->history_lines++;
	r->step++;
	r->has_pending = false;
	vmap_clear(&r->pending);
	fx->summary_changed = true;
	fx->meta_changed = true;
	return rv ? rv : row_rv;
}

static int apply_history(struct run *r, const Trackd__V1__HistoryRow *h,
                         const struct record_origin *o, struct run_effects *fx)
{
	int rv;
	if (h->has_step) {
		if (h->step < r->step) {
			r->rows_rejected++;
			fx->step_rejected = true;
			fx->meta_changed = true;
			return TRACKD_OK;
		}
		if (h->step > r->step) {
			if ((rv = commit_pending(r, fx)) != 0)
				return rv;
			r->step = h->step;
		}
	}
	for (size_t i = 0; i < h->n_items; i++)
		if ((rv = vmap_set_item(&r->pending, h->items[i])) != 0)
			return rv;
	r->has_pending = true;
	r->pending_time_us = h->has_client_time_us ? h->client_time_us : o->recv_time_us;
	if (h->has_timestamp) {
		r->has_pending_timestamp = true;
		r->pending_timestamp = h->timestamp;
	}
	if (h->has_runtime) {
		r->has_pending_runtime = true;
		r->pending_runtime = h->runtime;
	}
	/* proto2 default for `commit` is true: absent means commit. */
	if (!h->has_commit || h->commit)
		return commit_pending(r, fx);
	return TRACKD_OK;
}

/* ---- console ---------------------------------------------------------------- */

static int apply_console(struct run *r, const Trackd__V1__ConsoleOutput *c,
                         const struct record_origin *o, struct run_effects *fx)
{
	int64_t us = c->has_client_time_us ? c->client_time_us : o->recv_time_us;
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char stamp[96];
	snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%06d", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(us % 1000000));
	bool err = c->stream == TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDERR;
	const char *p = c->text ? c->text : "";
	/* One output line per text line; a trailing newline does not make an empty one. */
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		size_t mark = fx->console->len;
		int rv = buf_printf(fx->console, "%s%s ", err ? "ERROR " : "", stamp);
		if (!rv)
			rv = buf_append(fx->console, p, n);
		if (!rv)
			rv = buf_putc(fx->console, '\n');
		if (rv) {
			fx->console->len = mark;
			return rv;
		}
		r->console_lines++;
		p += n + (nl ? 1 : 0);
	}
	fx->meta_changed = true;
	return TRACKD_OK;
}

/* ---- system metrics ------------------------------------------------------- */

/* A sample that carries counter bases replaces the run's set (the sampler
 * sends its whole set whenever it takes one). */
static void apply_counter_bases(struct run *r, const Trackd__V1__SystemStats *st)
{
	if (!st->n_bases)
		return;
	snprintf(r->counters_boot_id, sizeof r->counters_boot_id, "%s",
	         st->boot_id ? st->boot_id : "");
	r->n_counter_bases = 0;
	for (size_t i = 0; i < st->n_bases && r->n_counter_bases < RUN_MAX_COUNTER_BASES; i++) {
		const Trackd__V1__CounterBase *b = st->bases[i];
		if (!b->key || strlen(b->key) >= RUN_COUNTER_KEY_BYTES)
			continue;
		struct run_counter_base *c = &r->counter_bases[r->n_counter_bases++];
		snprintf(c->key, sizeof c->key, "%s", b->key);
		c->value = b->value;
	}
}

static int apply_stats(struct run *r, const Trackd__V1__SystemStats *st,
                       const struct record_origin *o, struct run_effects *fx)
{
	apply_counter_bases(r, st);
	if (!fx->events)
		return TRACKD_OK;
	int64_t us = st->has_time_us ? st->time_us : o->recv_time_us;
	/* A sample taken while the run was live belongs to it even when the log
	 * holds it after the exit (a short run ends while its sample is on the
	 * way); one taken after the end does not. */
	if (r->state != RUN_RUNNING && us > r->end_time_us)
		return TRACKD_OK;
	double runtime = (double)(us - r->start_time_us) / 1e6;
	if (runtime < 0)
		runtime = 0;
	size_t mark = fx->events->len;
	int rv = buf_puts(fx->events, "{\"_wandb\":true,\"_timestamp\":");
	if (!rv)
		rv = json_write_double(fx->events, (double)us / 1e6);
	if (!rv)
		rv = buf_puts(fx->events, ",\"_runtime\":");
	if (!rv)
		rv = json_write_double(fx->events, runtime);
	char key[300];
	for (size_t i = 0; i < st->n_items && !rv; i++) {
		const Trackd__V1__Item *it = st->items[i];
		/* Only finite numbers: a sampler never sends others, and a line must
		 * stay plain JSON for every reader. */
		if (!it->key || !it->value ||
		    it->value->kind_case != TRACKD__V1__VALUE__KIND_DOUBLE_VALUE ||
		    !isfinite(it->value->double_value) ||
		    snprintf(key, sizeof key, "system.%s", it->key) >= (int)sizeof key)
			continue;
		rv = buf_putc(fx->events, ',');
		if (!rv)
			rv = json_write_string(fx->events, key);
		if (!rv)
			rv = buf_putc(fx->events, ':');
		if (!rv)
			rv = json_write_double(fx->events, it->value->double_value);
	}
	if (!rv)
		rv = buf_puts(fx->events, "}\n");
	if (rv) {
		fx->events->len = mark; /* never half a line */
		return rv;
	}
	r->events_lines++;
	return TRACKD_OK;
}

/* ---- state -------------------------------------------------------------------- */

/* Folds one process's outcome into the run's. A crash mark counts until the
 * process's own exit settles it; among the outcomes processes reported, the
 * worst wins (a later one of the same severity gives the exit code). */
static void fold_outcome(struct run *r, enum run_state outcome, int32_t exit_code)
{
	if (outcome == RUN_CRASHED) {
		r->crashed_processes++;
	} else if (severity(outcome) >= severity(r->reported_outcome)) {
		r->reported_outcome = outcome;
		r->reported_exit_code = exit_code;
	}
	r->worst_outcome = r->crashed_processes ? RUN_CRASHED : r->reported_outcome;
	r->outcome_exit_code = r->crashed_processes ? -1 : r->reported_exit_code;
}

static struct run_attached *find_attached(struct run *r, int32_t pid, bool done)
{
	for (size_t i = 0; i < r->n_attached; i++)
		if (r->attached[i].pid == pid && r->attached[i].done == done)
			return &r->attached[i];
	return NULL;
}

static int end_process(struct run *r, int32_t pid, enum run_state outcome, int32_t exit_code,
                       int64_t when_us, struct run_effects *fx)
{
	/* An exit from an untracked process still counts as its outcome. */
	struct run_attached *a = find_attached(r, pid, false);
	if (a) {
		a->done = true;
		a->crashed = outcome == RUN_CRASHED;
	}
	bool any_live = false;
	for (size_t i = 0; i < r->n_attached; i++)
		any_live |= !r->attached[i].done;
	fold_outcome(r, outcome, exit_code);
	fx->meta_changed = true;
	if (any_live || r->state != RUN_RUNNING)
		return TRACKD_OK;
	int rv = commit_pending(r, fx);
	r->state = r->worst_outcome;
	r->has_exit_code = r->state != RUN_CRASHED;
	r->exit_code = r->outcome_exit_code;
	r->end_time_us = when_us;
	fx->ended = true;
	return rv;
}

/* The own exit of a process the agent had marked crashed: it replaces the
 * crash. An ended run takes the outcome it now has; its end time stays (the
 * rows it ended with are the same). */
static int settle_process(struct run *r, struct run_attached *a, enum run_state outcome,
                          int32_t exit_code, struct run_effects *fx)
{
	a->crashed = false;
	if (r->crashed_processes > 0)
		r->crashed_processes--;
	fold_outcome(r, outcome, exit_code);
	fx->meta_changed = true;
	if (r->state == RUN_RUNNING)
		return TRACKD_OK; /* others still run: the run ends with this outcome folded in */
	r->state = r->worst_outcome;
	r->has_exit_code = r->state != RUN_CRASHED;
	r->exit_code = r->outcome_exit_code;
	fx->settled = true;
	return TRACKD_OK;
}

int run_process_vanished(struct run *r, int32_t pid, int64_t when_us, struct run_effects *fx)
{
	return end_process(r, pid, RUN_CRASHED, -1, when_us, fx);
}

/* The process a client's exit is about: the one it names if the run knows it
 * (a spooled exit is delivered by another process), else the sender (a client
 * in another pid namespace names a pid the agent does not see). */
static int32_t exit_pid(struct run *r, const Trackd__V1__RunExit *e, const struct record_origin *o)
{
	if (e->has_pid && e->pid > 0 &&
	    (find_attached(r, e->pid, false) || find_attached(r, e->pid, true)))
		return e->pid;
	return o->pid;
}

static int apply_exit(struct run *r, const Trackd__V1__RunExit *e, const struct record_origin *o,
                      struct run_effects *fx)
{
	int64_t when = e->has_client_time_us ? e->client_time_us : o->recv_time_us;
	if (e->reason == TRACKD__V1__EXIT_REASON__EXIT_CRASHED) {
		/* Decided before the process's own exit was applied: the exit stands. */
		if (!find_attached(r, e->pid, false) && find_attached(r, e->pid, true))
			return TRACKD_OK;
		/* An import of a log without an exit ends the run when its source
		 * stopped, not when the import did. */
		int64_t at = r->imported && e->has_client_time_us ? when : o->recv_time_us;
		return end_process(r, e->pid, RUN_CRASHED, -1, at, fx);
	}
	enum run_state outcome = e->reason == TRACKD__V1__EXIT_REASON__EXIT_KILLED ? RUN_KILLED
	                         : e->exit_code == 0                               ? RUN_FINISHED
	                                                                           : RUN_FAILED;
	int32_t pid = exit_pid(r, e, o);
	/* Delivered by another process (a spool flush, another run's td_init): its
	 * replayed records attached the deliverer, which ran nothing of this run
	 * and must not keep it running, nor crash it when it exits. */
	struct run_attached *deliverer = pid != o->pid ? find_attached(r, o->pid, false) : NULL;
	if (deliverer && deliverer->by_records)
		deliverer->done = true;
	if (!find_attached(r, pid, false)) {
		for (size_t i = 0; i < r->n_attached; i++)
			if (r->attached[i].pid == pid && r->attached[i].crashed)
				return settle_process(r, &r->attached[i], outcome, e->exit_code,
				                      fx);
	}
	return end_process(r, pid, outcome, e->exit_code, when, fx);
}

static int apply_start(struct run *r, const Trackd__V1__RunStart *s, const struct record_origin *o,
                       struct run_effects *fx)
{
	/* Another process attaches (resume or distributed training): the run is
	 * running again; fields it gives replace the old ones. */
	int rv = 0;
	if (s->display_name && *s->display_name)
		rv = set_str(&r->display_name, s->display_name);
	if (!rv && s->notes && *s->notes)
		rv = set_str(&r->notes, s->notes);
	if (!rv && s->group && *s->group)
		rv = set_str(&r->group, s->group);
	if (!rv && s->job_type && *s->job_type)
		rv = set_str(&r->job_type, s->job_type);
	if (!rv && s->host && *s->host)
		rv = set_str(&r->host, s->host);
	if (!rv && s->n_tags)
		rv = set_tags(r, s->tags, s->n_tags);
	if (rv)
		return rv;
	if (r->state != RUN_RUNNING) {
		r->state = RUN_RUNNING;
		r->worst_outcome = r->reported_outcome = RUN_RUNNING;
		r->crashed_processes = 0;
		r->has_exit_code = false;
		r->end_time_us = 0;
		/* The earlier end no longer matters, nor a late exit settling it. */
		for (size_t i = 0; i < r->n_attached; i++)
			r->attached[i].crashed = false;
	}
	attach(r, o->pid, true);
	if (s->config) {
		for (size_t i = 0; i < s->config->n_items; i++)
			if ((rv = vmap_set_item(&r->config, s->config->items[i])) != 0)
				return rv;
		fx->config_changed = true;
	}
	fx->meta_changed = true;
	return TRACKD_OK;
}

/* Only what the record carries changes: a record of an older agent holds the
 * name alone, and a name of "" was never allowed. */
static int apply_update(struct run *r, const Trackd__V1__RunRename *u, struct run_effects *fx)
{
	int rv = TRACKD_OK;
	if (u->display_name && *u->display_name)
		rv = set_str(&r->display_name, u->display_name);
	if (!rv && u->has_set_tags && u->set_tags)
		rv = set_tags(r, u->tags, u->n_tags);
	if (!rv && u->notes)
		rv = set_str(&r->notes, u->notes);
	fx->meta_changed = true;
	return rv;
}

int run_apply(struct run *r, const Trackd__V1__Record *rec, const struct record_origin *o,
              struct run_effects *fx)
{
	int rv = TRACKD_OK;
	if (rec->body_case != TRACKD__V1__RECORD__BODY_START && o->pid > 0 &&
	    rec->body_case != TRACKD__V1__RECORD__BODY_EXIT && r->state == RUN_RUNNING)
		attach(r, o->pid,
		       false); /* a process that logs is attached, whatever it sent first */
	switch (rec->body_case) {
	case TRACKD__V1__RECORD__BODY_START: rv = apply_start(r, rec->start, o, fx); break;
	case TRACKD__V1__RECORD__BODY_HISTORY: rv = apply_history(r, rec->history, o, fx); break;
	case TRACKD__V1__RECORD__BODY_SUMMARY:
		for (size_t i = 0; i < rec->summary->n_items && !rv; i++)
			rv = vmap_set_item(&r->summary, rec->summary->items[i]);
		for (size_t i = 0; i < rec->summary->n_remove_keys; i++)
			vmap_remove(&r->summary, rec->summary->remove_keys[i]);
		fx->summary_changed = true;
		break;
	case TRACKD__V1__RECORD__BODY_CONFIG:
		for (size_t i = 0; i < rec->config->n_items && !rv; i++)
			rv = vmap_set_item(&r->config, rec->config->items[i]);
		fx->config_changed = true;
		break;
	case TRACKD__V1__RECORD__BODY_CONSOLE: rv = apply_console(r, rec->console, o, fx); break;
	case TRACKD__V1__RECORD__BODY_EXIT: rv = apply_exit(r, rec->exit, o, fx); break;
	case TRACKD__V1__RECORD__BODY_DEFINE_METRIC: {
		struct run_metric *m = find_metric(r, rec->define_metric->name);
		if (!m && r->n_metrics < RUN_MAX_METRICS) {
			struct run_metric *p = realloc(r->metrics, (r->n_metrics + 1) * sizeof *p);
			if (!p)
				return TRACKD_ENOMEM;
			r->metrics = p;
			m = &r->metrics[r->n_metrics];
			memset(m, 0, sizeof *m);
			m->name = strdup(rec->define_metric->name);
			if (!m->name)
				return TRACKD_ENOMEM;
			r->n_metrics++;
		}
		if (m)
			m->summary = rec->define_metric->summary;
		fx->meta_changed = true;
		break;
	}
	case TRACKD__V1__RECORD__BODY_RENAME: rv = apply_update(r, rec->rename, fx); break;
	case TRACKD__V1__RECORD__BODY_STATS: rv = apply_stats(r, rec->stats, o, fx); break;
	case TRACKD__V1__RECORD__BODY_METADATA:
		rv = set_str(&r->agent_metadata, rec->metadata->json ? rec->metadata->json : "{}");
		fx->metadata_changed = !rv;
		break;
	case TRACKD__V1__RECORD__BODY_ENVIRONMENT: {
		char *json = NULL;
		rv = run_environment_json(rec->environment, &json);
		if (!rv) {
			free(r->client_environment);
			r->client_environment = json;
			fx->metadata_changed = true;
		}
		break;
	}
	default: break;
	}
	r->last_index = o->index;
	return rv;
}

/* ---- JSON ------------------------------------------------------------------- */

static int json_field_str(struct buf *b, const char *key, const char *value)
{
	int rv = buf_printf(b, ",\"%s\":", key);
	return rv ? rv : json_write_string(b, value ? value : "");
}

int run_to_json(const struct run *r, const char *dir, bool with_values, struct buf *b)
{
	int rv = buf_puts(b, "{\"id\":");
	if (!rv)
		rv = json_write_string(b, r->id);
	if (!rv)
		rv = json_field_str(b, "entity", r->entity);
	if (!rv)
		rv = json_field_str(b, "project", r->project);
	if (!rv) {
		rv = buf_puts(b, ",\"path\":");
		char path[1024];
		snprintf(path, sizeof path, "%s/%s/%s", r->entity, r->project, r->id);
		if (!rv)
			rv = json_write_string(b, path);
	}
	if (!rv)
		rv = json_field_str(b, "display_name", r->display_name);
	if (!rv)
		rv = json_field_str(b, "state", run_state_name(r->state));
	if (!rv)
		rv = buf_puts(b, ",\"start_time\":");
	if (!rv)
		rv = json_write_double(b, (double)r->start_time_us / 1e6);
	if (!rv)
		rv = buf_puts(b, ",\"end_time\":");
	if (!rv)
		rv = r->state == RUN_RUNNING ? buf_puts(b, "null")
		                             : json_write_double(b, (double)r->end_time_us / 1e6);
	if (!rv)
		rv = r->has_exit_code && r->state != RUN_RUNNING
		         ? buf_printf(b, ",\"exit_code\":%d", r->exit_code)
		         : buf_puts(b, ",\"exit_code\":null");
	if (!rv)
		rv = json_field_str(b, "host", r->host);
	if (!rv)
		rv = buf_puts(b, ",\"pids\":[");
	for (size_t i = 0; i < r->n_attached && !rv; i++)
		rv = buf_printf(b, "%s%d", i ? "," : "", r->attached[i].pid);
	if (!rv)
		rv = buf_printf(b, "],\"uid\":%u", r->uid);
	if (!rv)
		rv = json_field_str(b, "notes", r->notes);
	if (!rv)
		rv = buf_puts(b, ",\"tags\":[");
	for (size_t i = 0; i < r->n_tags && !rv; i++) {
		if (i)
			rv = buf_putc(b, ',');
		if (!rv)
			rv = json_write_string(b, r->tags[i]);
	}
	if (!rv)
		rv = buf_putc(b, ']');
	if (!rv)
		rv = json_field_str(b, "group", r->group);
	if (!rv)
		rv = json_field_str(b, "job_type", r->job_type);
	if (!rv)
		rv = json_field_str(b, "mode",
		                    r->mode == TRACKD__V1__RUN_MODE__RUN_MODE_OFFLINE ? "offline"
		                                                                      : "online");
	if (!rv)
		rv = json_field_str(b, "dir", dir);
	if (!rv)
		rv = buf_printf(b,
		                ",\"history_lines\":%" PRIu64 ",\"console_lines\":%" PRIu64
		                ",\"rows_rejected\":%" PRIu64 ",\"events_lines\":%" PRIu64,
		                r->history_lines, r->console_lines, r->rows_rejected,
		                r->events_lines);
	if (!rv && r->imported)
		rv = buf_puts(b, ",\"imported\":true");
	if (!rv && with_values) {
		rv = buf_puts(b, ",\"summary\":");
		if (!rv)
			rv = vmap_to_json(&r->summary, b);
		if (!rv)
			rv = buf_puts(b, ",\"config\":");
		if (!rv)
			rv = vmap_to_json(&r->config, b);
	}
	return rv ? rv : buf_putc(b, '}');
}

/* ---- snapshots ----------------------------------------------------------------- */

Trackd__V1__RunSnapshot *run_to_snapshot(const struct run *r)
{
	Trackd__V1__RunSnapshot *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	trackd__v1__run_snapshot__init(s);
	s->id = r->id;
	s->entity = r->entity;
	s->project = r->project;
	s->display_name = r->display_name;
	s->notes = r->notes;
	s->tags = r->tags;
	s->n_tags = r->n_tags;
	s->group = r->group;
	s->job_type = r->job_type;
	s->host = r->host;
	s->dir_name = r->dir_name;
	s->has_mode = true;
	s->mode = r->mode;
	s->has_uid = true;
	s->uid = r->uid;
	s->state = (char *)run_state_name(r->state);
	s->worst_outcome = (char *)run_state_name(r->worst_outcome);
	s->has_outcome_exit_code = true;
	s->outcome_exit_code = r->outcome_exit_code;
	s->reported_outcome = (char *)run_state_name(r->reported_outcome);
	s->has_reported_exit_code = s->has_crashed_processes = true;
	s->reported_exit_code = r->reported_exit_code;
	s->crashed_processes = r->crashed_processes;
	s->has_exit_code = r->has_exit_code;
	s->exit_code = r->exit_code;
#define SET(f, v) (s->has_##f = true, s->f = (v))
	SET(start_time_us, r->start_time_us);
	SET(end_time_us, r->end_time_us);
	SET(step, r->step);
	SET(has_pending, r->has_pending);
	SET(pending_time_us, r->pending_time_us);
	SET(history_lines, r->history_lines);
	SET(console_lines, r->console_lines);
	SET(rows_rejected, r->rows_rejected);
	SET(last_index, r->last_index);
	SET(history_bytes, r->history_bytes);
	SET(console_bytes, r->console_bytes);
	if (r->has_series_rows) {
		SET(series_rows, r->series_rows);
		SET(series_dropped, r->series_dropped);
	}
	SET(events_lines, r->events_lines);
	SET(events_bytes, r->events_bytes);
	if (r->imported)
		SET(imported, true);
	if (r->has_pending_timestamp)
		SET(pending_timestamp, r->pending_timestamp);
	if (r->has_pending_runtime)
		SET(pending_runtime, r->pending_runtime);
#undef SET
	/* Borrowed from r, as the other strings are. */
	s->agent_metadata = r->agent_metadata;
	s->client_environment = r->client_environment;
	if (r->n_counter_bases) {
		/* Borrowed from r, as the other strings are. */
		s->counters_boot_id = (char *)r->counters_boot_id;
		s->counter_bases = calloc(r->n_counter_bases, sizeof *s->counter_bases);
		if (!s->counter_bases) {
			run_snapshot_free(s);
			return NULL;
		}
		for (size_t i = 0; i < r->n_counter_bases; i++) {
			Trackd__V1__CounterBase *b = malloc(sizeof *b);
			if (!b) {
				run_snapshot_free(s);
				return NULL;
			}
			trackd__v1__counter_base__init(b);
			s->counter_bases[s->n_counter_bases++] = b;
			b->key = (char *)r->counter_bases[i].key;
			b->has_value = true;
			b->value = r->counter_bases[i].value;
		}
	}
	s->pending = vmap_to_proto(&r->pending);
	s->summary = vmap_to_proto(&r->summary);
	s->config = vmap_to_proto(&r->config);
	s->attached = calloc(r->n_attached ? r->n_attached : 1, sizeof *s->attached);
	s->metrics = calloc(r->n_metrics ? r->n_metrics : 1, sizeof *s->metrics);
	if (!s->pending || !s->summary || !s->config || !s->attached || !s->metrics) {
		run_snapshot_free(s);
		return NULL;
	}
	for (size_t i = 0; i < r->n_attached; i++) {
		Trackd__V1__RunSnapshot__Attached *a = malloc(sizeof *a);
		if (!a) {
			run_snapshot_free(s);
			return NULL;
		}
		trackd__v1__run_snapshot__attached__init(a);
		a->has_pid = a->has_start_ticks = a->has_done = a->has_crashed = true;
		a->has_by_records = true;
		a->by_records = r->attached[i].by_records;
		a->pid = r->attached[i].pid;
		a->start_ticks = r->attached[i].start_ticks;
		a->done = r->attached[i].done;
		a->crashed = r->attached[i].crashed;
		s->attached[s->n_attached++] = a;
	}
	for (size_t i = 0; i < r->n_metrics; i++) {
		Trackd__V1__RunSnapshot__Metric *m = malloc(sizeof *m);
		if (!m) {
			run_snapshot_free(s);
			return NULL;
		}
		trackd__v1__run_snapshot__metric__init(m);
		m->name = r->metrics[i].name;
		m->has_summary = m->has_sum = m->has_count = true;
		m->summary = r->metrics[i].summary;
		m->sum = r->metrics[i].sum;
		m->count = r->metrics[i].count;
		s->metrics[s->n_metrics++] = m;
	}
	return s;
}

void run_snapshot_free(Trackd__V1__RunSnapshot *s)
{
	if (!s)
		return;
	vmap_proto_free(s->pending);
	vmap_proto_free(s->summary);
	vmap_proto_free(s->config);
	for (size_t i = 0; i < s->n_attached; i++)
		free(s->attached[i]);
	for (size_t i = 0; i < s->n_metrics; i++)
		free(s->metrics[i]);
	for (size_t i = 0; i < s->n_counter_bases; i++)
		free(s->counter_bases[i]);
	free(s->attached);
	free(s->metrics);
	free(s->counter_bases);
	free(s);
}

int run_from_snapshot(const Trackd__V1__RunSnapshot *s, struct run **out)
{
	if (!s->id || !s->dir_name)
		return TRACKD_ECORRUPT;
	struct run *r = calloc(1, sizeof *r);
	if (!r)
		return TRACKD_ENOMEM;
	vmap_init(&r->pending);
	vmap_init(&r->summary);
	vmap_init(&r->config);
	int rv = set_str(&r->id, s->id);
	if (!rv)
		rv = set_str(&r->entity, s->entity);
	if (!rv)
		rv = set_str(&r->project, s->project);
	if (!rv)
		rv = set_str(&r->display_name, s->display_name);
	if (!rv)
		rv = set_str(&r->notes, s->notes);
	if (!rv)
		rv = set_str(&r->group, s->group);
	if (!rv)
		rv = set_str(&r->job_type, s->job_type);
	if (!rv)
		rv = set_str(&r->host, s->host);
	if (!rv)
		rv = set_str(&r->dir_name, s->dir_name);
	if (!rv)
		rv = set_tags(r, s->tags, s->n_tags);
	if (!rv)
		rv = vmap_from_proto(&r->pending, s->pending);
	if (!rv)
		rv = vmap_from_proto(&r->summary, s->summary);
	if (!rv)
		rv = vmap_from_proto(&r->config, s->config);
	if (!rv && s->n_metrics) {
		r->metrics = calloc(s->n_metrics, sizeof *r->metrics);
		if (!r->metrics)
			rv = TRACKD_ENOMEM;
		for (size_t i = 0; !rv && i < s->n_metrics && i < RUN_MAX_METRICS; i++) {
			r->metrics[i].name = strdup(s->metrics[i]->name ? s->metrics[i]->name : "");
			r->metrics[i].summary = s->metrics[i]->summary;
			r->metrics[i].sum = s->metrics[i]->sum;
			r->metrics[i].count = s->metrics[i]->count;
			r->n_metrics++;
			if (!r->metrics[i].name)
				rv = TRACKD_ENOMEM;
		}
	}
	if (rv) {
		run_free(r);
		return rv;
	}
	r->mode = s->mode;
	r->uid = s->uid;
	r->state = state_from_name(s->state);
	r->worst_outcome = state_from_name(s->worst_outcome);
	r->outcome_exit_code = s->outcome_exit_code;
	if (s->reported_outcome) {
		r->reported_outcome = state_from_name(s->reported_outcome);
		r->reported_exit_code = s->reported_exit_code;
		r->crashed_processes = s->crashed_processes;
	} else if (r->worst_outcome == RUN_CRASHED) {
		/* A snapshot from before settling existed: its crashes stay. */
		r->crashed_processes = 1;
	} else {
		r->reported_outcome = r->worst_outcome;
		r->reported_exit_code = r->outcome_exit_code;
	}
	r->has_exit_code = s->has_exit_code;
	r->exit_code = s->exit_code;
	r->start_time_us = s->start_time_us;
	r->end_time_us = s->end_time_us;
	r->step = s->step;
	r->has_pending = s->has_pending;
	r->pending_time_us = s->pending_time_us;
	r->history_lines = s->history_lines;
	r->console_lines = s->console_lines;
	r->rows_rejected = s->rows_rejected;
	r->last_index = s->last_index;
	r->history_bytes = s->history_bytes;
	r->console_bytes = s->console_bytes;
	r->has_series_rows = s->has_series_rows;
	r->series_rows = s->series_rows;
	r->series_dropped = s->series_dropped;
	r->events_lines = s->events_lines;
	r->events_bytes = s->events_bytes;
	Trackd__V1__SystemStats bases = TRACKD__V1__SYSTEM_STATS__INIT;
	bases.boot_id = s->counters_boot_id;
	bases.bases = s->counter_bases;
	bases.n_bases = s->n_counter_bases;
	apply_counter_bases(r, &bases);
	r->imported = s->has_imported && s->imported;
	if ((s->agent_metadata && set_str(&r->agent_metadata, s->agent_metadata)) ||
	    (s->client_environment && set_str(&r->client_environment, s->client_environment))) {
		run_free(r);
		return TRACKD_ENOMEM;
	}
	r->has_pending_timestamp = s->has_pending_timestamp;
	r->pending_timestamp = s->pending_timestamp;
	r->has_pending_runtime = s->has_pending_runtime;
	r->pending_runtime = s->pending_runtime;
	for (size_t i = 0; i < s->n_attached && i < RUN_MAX_ATTACHED; i++) {
		r->attached[i].pid = s->attached[i]->pid;
		r->attached[i].start_ticks = s->attached[i]->start_ticks;
		r->attached[i].done = s->attached[i]->done;
		r->attached[i].crashed = s->attached[i]->crashed;
		r->attached[i].by_records = s->attached[i]->by_records;
		r->n_attached++;
	}
	*out = r;
	return TRACKD_OK;
}

/* ---- run files ------------------------------------------------------------------------- */

static const char *string_item(const Trackd__V1__MapValue *m, const char *key)
{
	for (size_t i = 0; i < m->n_items; i++) {
		const Trackd__V1__Item *it = m->items[i];
		if (it->key && strcmp(it->key, key) == 0 && it->value &&
		    it->value->kind_case == TRACKD__V1__VALUE__KIND_STRING_VALUE)
			return it->value->string_value;
	}
	return NULL;
}

static size_t media_in_map(const Trackd__V1__MapValue *m, int depth, run_file_fn each, void *arg)
{
	const char *type = string_item(m, "_type");
	if (type && (strcmp(type, "image-file") == 0 || strcmp(type, "table-file") == 0)) {
		const char *path = string_item(m, "path");
		const char *sha = string_item(m, "sha256");
		/* W&B's media live under media/: anything else is not a media value. */
		if (!path || !sha || strncmp(path, "media/", 6) != 0)
			return 0;
		uint8_t digest[32];
		bool ok = files_name_valid(path, strlen(path)) &&
		          files_parse_digest(sha, strlen(sha), digest);
		each(arg, path, ok ? digest : NULL, type[0] == 'i' ? "image" : "table");
		return 1;
	}
	if (depth >= RUN_MEDIA_MAX_DEPTH)
		return 0;
	size_t n = 0;
	for (size_t i = 0; i < m->n_items; i++) {
		const Trackd__V1__Value *v = m->items[i]->value;
		if (v && v->kind_case == TRACKD__V1__VALUE__KIND_MAP_VALUE)
			n += media_in_map(v->map_value, depth + 1, each, arg);
		else if (v && v->kind_case == TRACKD__V1__VALUE__KIND_LIST_VALUE)
			for (size_t j = 0; j < v->list_value->n_values; j++) {
				const Trackd__V1__Value *e = v->list_value->values[j];
				if (e->kind_case == TRACKD__V1__VALUE__KIND_MAP_VALUE)
					n += media_in_map(e->map_value, depth + 1, each, arg);
			}
	}
	return n;
}

size_t run_record_files(const Trackd__V1__Record *rec, run_file_fn each, void *arg)
{
	size_t n = 0;
	if (rec->body_case == TRACKD__V1__RECORD__BODY_HISTORY) {
		/* Only map values can be media: a row of scalars costs one look at
		 * each value's kind. */
		for (size_t i = 0; i < rec->history->n_items; i++) {
			const Trackd__V1__Value *v = rec->history->items[i]->value;
			if (v && v->kind_case == TRACKD__V1__VALUE__KIND_MAP_VALUE)
				n += media_in_map(v->map_value, 1, each, arg);
		}
	} else if (rec->body_case == TRACKD__V1__RECORD__BODY_FILE && rec->file->name) {
		const char *name = rec->file->name;
		bool ok = files_name_valid(name, strlen(name)) && rec->file->sha256.len == 32;
		/* A list of images saves each image as a file of media/images/. */
		each(arg, name, ok ? rec->file->sha256.data : NULL,
		     strncmp(name, "media/images/", 13) == 0 ? "image" : "file");
		n = 1;
	}
	return n;
}
