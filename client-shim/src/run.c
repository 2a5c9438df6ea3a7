/*
 * run.c — the public API: a run's lifecycle (td_init … td_finish) and the
 * recording calls. Recording calls validate without the lock, then encode
 * straight into the open batch under it; they do no I/O unless the agent is
 * away and the buffer full (spool_file.h). td_init sets up the socket (never
 * waiting for the agent) and asks the agent only for the resume check;
 * td_finish waits for acks, spools the rest and prints the footer.
 *
 * History steps follow the agent's rules (agent/runs/run.h) so the client can
 * refuse a row the agent would drop: `step` is the step of the row being
 * built; a commit moves it on by one; an explicit larger step commits the
 * pending row first; an explicit smaller one is refused.
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "run.h"
#include "wandb_env.h"
#include "autostart.h"
#include "buf.h"
#include "console.h"
#include "environment.h"
#include "error.h"
#include "footer.h"
#include "mirror.h"
#include "query.h"
#include "media.h"
#include "sender.h"
#include "signals.h"
#include "timing.h"
#include "utf8.h"

void td_run_options_init(td_run_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->mode = TD_MODE_ONLINE;
	opts->resume = TD_RESUME_NEVER;
	opts->max_buffer_bytes = TDI_DEFAULT_MAX_BUFFER_BYTES;
	opts->batch_bytes = TDI_DEFAULT_BATCH_BYTES;
	opts->flush_interval_ms = TDI_DEFAULT_FLUSH_INTERVAL_MS;
	opts->print_footer = true;
	opts->max_spool_bytes = (size_t)TDI_DEFAULT_MAX_SPOOL_BYTES;
}

static int fill_random(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return tdi_fail(TD_ERR_TRANSPORT, "td_init: getrandom: %s",
			                strerror(errno));
		}
		p += r;
		n -= (size_t)r;
	}
	return TD_OK;
}

static int random_run_id(char out[9])
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	uint8_t bytes[16];
	size_t have = 0;
	int rc;

	while (have < 8) {
		if ((rc = fill_random(bytes, sizeof(bytes))) != TD_OK)
			return rc;
		/* Rejecting bytes ≥ 252 (= 7 · 36) keeps every character
		 * equally likely. */
		for (size_t i = 0; i < sizeof(bytes) && have < 8; i++) {
			if (bytes[i] < 252)
				out[have++] = alphabet[bytes[i] % 36];
		}
	}
	out[8] = '\0';
	return TD_OK;
}

static int set_run_id(struct td_run *run, const char *given)
{
	if (given == NULL) {
		run->run_id_len = 8;
		return random_run_id(run->run_id);
	}

	size_t len = strnlen(given, TRACKD_MAX_RUN_ID_BYTES + 1);
	if (len == 0)
		return tdi_fail(TD_ERR_INVALID, "td_init: run_id is empty");
	if (len > TRACKD_MAX_RUN_ID_BYTES) {
		return tdi_fail(TD_ERR_INVALID, "td_init: run_id is longer than %u bytes",
		                TRACKD_MAX_RUN_ID_BYTES);
	}
	size_t good = strspn(given, TRACKD_RUN_ID_ALLOWED);
	if (good < len) {
		unsigned char c = (unsigned char)given[good];
		return tdi_fail(
		    TD_ERR_INVALID,
		    c >= 0x20 && c < 0x7f
		        ? "td_init: run_id must not contain '%c': only letters, digits, '-' "
		          "and '_' (W&B's rule)"
		        : "td_init: run_id must not contain byte 0x%02x: only letters, "
		          "digits, '-' and '_' (W&B's rule)",
		    c);
	}
	memcpy(run->run_id, given, len + 1);
	run->run_id_len = len;
	return TD_OK;
}

/* Project and entity: W&B's rule, so that every run has a reachable path
 * (entity/project/id) and URL. */
static int check_name_chars(const char *what, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return tdi_fail(TD_ERR_INVALID, "%s must not contain control characters",
			                what);
		if (strchr(TRACKD_NAME_FORBIDDEN, *p))
			return tdi_fail(TD_ERR_INVALID, "%s must not contain '%c' (none of %s)",
			                what, *p, TRACKD_NAME_FORBIDDEN);
	}
	return TD_OK;
}

static int check_options(const td_run_options *o, struct tdi_item_count *config_count)
{
	int rc;

	if ((unsigned)o->resume > TD_RESUME_MUST)
		return tdi_fail(TD_ERR_INVALID, "td_init: unknown resume mode %d", (int)o->resume);
	if ((rc = tdi_check_text("td_init: project", o->project, TRACKD_MAX_NAME_BYTES, true)) ||
	    (rc = tdi_check_text("td_init: entity", o->entity, TRACKD_MAX_NAME_BYTES, false)) ||
	    (rc = check_name_chars("td_init: project", o->project)) ||
	    (rc = check_name_chars("td_init: entity", o->entity)) ||
	    (rc = tdi_check_text("td_init: display_name", o->display_name, TRACKD_MAX_NAME_BYTES,
	                         false)) ||
	    (rc = tdi_check_text("td_init: group", o->group, TRACKD_MAX_NAME_BYTES, false)) ||
	    (rc = tdi_check_text("td_init: job_type", o->job_type, TRACKD_MAX_NAME_BYTES, false)) ||
	    (rc = tdi_check_text("td_init: notes", o->notes, TRACKD_DEFAULT_MAX_STRING_BYTES,
	                         false)))
		return rc;
	if (o->n_tags > TRACKD_MAX_TAGS)
		return tdi_fail(TD_ERR_INVALID, "td_init: more than %u tags", TRACKD_MAX_TAGS);
	if (o->n_tags > 0 && o->tags == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_init: NULL tags with n_tags %zu", o->n_tags);
	for (size_t i = 0; i < o->n_tags; i++) {
		char what[48];
		snprintf(what, sizeof(what), "td_init: tag #%zu", i);
		if (o->tags[i] == NULL)
			return tdi_fail(TD_ERR_INVALID, "%s: NULL", what);
		if ((rc = tdi_check_text(what, o->tags[i], TRACKD_MAX_NAME_BYTES, true)) != TD_OK)
			return rc;
	}
	if (o->max_buffer_bytes != 0 && o->max_buffer_bytes < TDI_MIN_MAX_BUFFER_BYTES) {
		return tdi_fail(TD_ERR_INVALID,
		                "td_init: max_buffer_bytes %zu is below the minimum %zu",
		                o->max_buffer_bytes, TDI_MIN_MAX_BUFFER_BYTES);
	}
	return tdi_check_items(&tdi_default_limits, "td_init: config", o->config, o->n_config,
	                       config_count);
}

static void run_free(struct td_run *run)
{
	if (!run->disabled) {
		tdi_signals_uninstall(run);
		tdi_console_stop(run);
		tdi_environment_stop(run);
		tdi_sender_stop(run);
		tdi_replay_stop(run);
		tdi_spool_close(run);
		tdi_blob_queue_clear(run);
		tdi_buffer_free_all(run);
		tdi_scratch_fini(&run->scratch);
		tdi_mirror_free(run->mirror);
		free(run->state_dir);
		free(run->known_dir);
		pthread_cond_destroy(&run->replay.cond);
		pthread_cond_destroy(&run->unpinned);
		pthread_cond_destroy(&run->drained);
		pthread_cond_destroy(&run->wake);
		pthread_mutex_destroy(&run->mu);
	}
	free(run);
}

static int sync_init(struct td_run *run)
{
	pthread_condattr_t attr;

	/* Deadlines use the monotonic clock, immune to wall-clock steps. */
	if (pthread_condattr_init(&attr) != 0)
		return TD_ERR_NOMEM;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_mutex_init(&run->mu, NULL);
	pthread_cond_init(&run->wake, &attr);
	pthread_cond_init(&run->drained, &attr);
	pthread_cond_init(&run->unpinned, &attr);
	pthread_cond_init(&run->replay.cond, &attr);
	pthread_condattr_destroy(&attr);
	return TD_OK;
}

/* Who the run belongs to when the caller does not say: the login name of the
 * effective uid (the agent's local sink does the same for an empty entity). */
static void default_entity(char *out, size_t len)
{
	struct passwd pw, *res = NULL;
	char buf[1024];

	if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &res) == 0 && res != NULL &&
	    utf8_valid(res->pw_name, strlen(res->pw_name)))
		snprintf(out, len, "%s", res->pw_name);
	else
		snprintf(out, len, "uid%u", (unsigned)geteuid());
}

/* The buffer's run->make_room (buffer.h), with mu held: the run decides when
 * the buffer's bound is met by spilling to the spool (spool_file.h) instead. */
static int make_room_locked(struct td_run *run, size_t framed, const char **why)
{
	run->spool.error[0] = '\0';
	*why = run->spool.error;
	/* A reachable agent drains the buffer by itself; spooling is for when
	 * it is not there, or while it catches up with a spool (new batches
	 * queue behind the spooled ones anyway). */
	if (!run->spool.enabled || (run->agent_ok && run->spool.pending_batches == 0))
		return TD_ERR_FULL;
	if (tdi_spool_spill_locked(run) != TD_OK &&
	    run->buffered_bytes + framed > run->max_buffer_bytes)
		return TD_ERR_FULL;
	return run->buffered_bytes + framed > run->max_buffer_bytes ? TD_ERR_FULL : TD_OK;
}

static int buffer_run_start(struct td_run *run, const td_run_options *o,
                            const struct tdi_item_count *config_count)
{
	char host[256];
	Trackd__V1__RunStart start = TRACKD__V1__RUN_START__INIT;
	Trackd__V1__MapValue config = TRACKD__V1__MAP_VALUE__INIT;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	int rc;

	if (gethostname(host, sizeof(host)) != 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	/* The agent refuses invalid UTF-8; an odd host name must not sink the run. */
	if (!utf8_valid(host, strlen(host)))
		host[0] = '\0';

	/* protobuf-c wants char *; it only reads these. */
	start.project = run->project;
	start.entity = run->entity;
	start.display_name = (char *)o->display_name;
	start.notes = (char *)o->notes;
	start.group = (char *)o->group;
	start.job_type = (char *)o->job_type;
	start.n_tags = o->n_tags;
	start.tags = (char **)o->tags;
	start.host = host;
	start.has_pid = true;
	start.pid = (int32_t)getpid();
	start.has_start_time_us = true;
	start.start_time_us = run->start_time_us;
	start.has_mode = true;
	start.mode = o->mode == TD_MODE_OFFLINE ? TRACKD__V1__RUN_MODE__RUN_MODE_OFFLINE
	                                        : TRACKD__V1__RUN_MODE__RUN_MODE_ONLINE;
	start.has_resume = true;
	start.resume = (Trackd__V1__ResumeMode)o->resume;
	rec.run_id = run->run_id;
	rec.body_case = TRACKD__V1__RECORD__BODY_START;
	rec.start = &start;

	pthread_mutex_lock(&run->mu);
	rc = tdi_scratch_reserve(&run->scratch, config_count);
	if (rc == TD_OK) {
		if (o->n_config > 0) {
			config.n_items = o->n_config;
			config.items = tdi_scratch_fill(&run->scratch, o->config, o->n_config);
			start.config = &config;
		}
		rc = tdi_buffer_append_locked(run, &rec.base, false);
	}
	pthread_mutex_unlock(&run->mu);
	return rc;
}

int td_init(const td_run_options *opts, td_run **out)
{
	td_run_options defaults;
	struct tdi_item_count config_count = {0};
	struct td_run *run;
	int rc;

	if (out == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_init: out is NULL");
	*out = NULL;
	if (opts == NULL) {
		td_run_options_init(&defaults);
		opts = &defaults;
	}
	/* W&B's WANDB_* variables fill what the caller left unset. */
	td_run_options with_env;
	struct tdi_wandb_env wandb_env;
	int env_rc = tdi_wandb_env_apply(opts, &with_env, &wandb_env);
	if (env_rc != TD_OK)
		return env_rc;
	opts = &with_env;
	if ((unsigned)opts->mode > TD_MODE_DISABLED)
		return tdi_fail(TD_ERR_INVALID, "td_init: unknown mode %d", (int)opts->mode);
	if ((run = calloc(1, sizeof(*run))) == NULL)
		return tdi_fail(TD_ERR_NOMEM, "td_init: out of memory");
	run->spool.fd = -1;
	if ((rc = set_run_id(run, opts->run_id)) != TD_OK) {
		free(run);
		return rc;
	}
	/* Disabled: keep the id (callers may print it) and nothing else, but
	 * refuse the config an online run would refuse, so CI with tracking off
	 * still catches it. */
	if (opts->mode == TD_MODE_DISABLED) {
		struct tdi_item_count unused;
		if ((rc = tdi_check_items(&tdi_default_limits, "td_init: config", opts->config,
		                          opts->n_config, &unused)) != TD_OK) {
			free(run);
			return rc;
		}
		run->disabled = true;
		*out = run;
		return TD_OK;
	}

	if ((rc = check_options(opts, &config_count)) != TD_OK ||
	    (rc = tdi_resolve_url_kind(opts->socket_url, run->url, sizeof(run->url),
	                               &run->private_agent)) != TD_OK ||
	    (rc = fill_random(run->session_id, sizeof(run->session_id))) != TD_OK) {
		free(run);
		return rc;
	}
	if ((rc = sync_init(run)) != TD_OK) {
		free(run);
		return tdi_fail(rc, "td_init: cannot initialise locks");
	}
	run->max_buffer_bytes =
	    opts->max_buffer_bytes ? opts->max_buffer_bytes : TDI_DEFAULT_MAX_BUFFER_BYTES;
	run->batch_bytes = opts->batch_bytes ? opts->batch_bytes : TDI_DEFAULT_BATCH_BYTES;
	if (run->batch_bytes > TDI_MAX_BATCH_RECORD_BYTES)
		run->batch_bytes = TDI_MAX_BATCH_RECORD_BYTES;
	run->flush_interval_ms =
	    opts->flush_interval_ms ? opts->flush_interval_ms : TDI_DEFAULT_FLUSH_INTERVAL_MS;
	run->make_room = make_room_locked;
	run->next_seq = 1;
	tdi_limits_learn(run, &(Trackd__V1__Limits)TRACKD__V1__LIMITS__INIT); /* the defaults */
	run->mode = opts->mode;
	run->resume = opts->resume;
	run->print_footer = opts->print_footer;
	run->start_time_us = tdi_wall_us();
	snprintf(run->project, sizeof(run->project), "%s",
	         opts->project ? opts->project : "uncategorized");
	if (opts->entity != NULL && opts->entity[0] != '\0')
		snprintf(run->entity, sizeof(run->entity), "%s", opts->entity);
	else
		default_entity(run->entity, sizeof(run->entity));

	/* The resume check asks the agent before anything is buffered, and the
	 * sender starts last, so a run that fails to start leaves no trace at
	 * the agent. RunStart goes in first, ahead of captured console lines. */
	if ((rc = tdi_spool_init(run, opts->spool_dir, opts->max_spool_bytes)) != TD_OK ||
	    (rc = tdi_mirror_new(run)) != TD_OK ||
	    (rc = tdi_check_resume(run, opts->run_id != NULL)) != TD_OK ||
	    (rc = buffer_run_start(run, opts, &config_count)) != TD_OK ||
	    (opts->capture_console && (rc = tdi_console_start(run)) != TD_OK) ||
	    (opts->handle_signals && (rc = tdi_signals_install(run)) != TD_OK) ||
	    (rc = tdi_sender_start(run)) != TD_OK || (rc = tdi_replay_start(run)) != TD_OK ||
	    (!opts->disable_environment &&
	     (rc = tdi_environment_start(run, opts->python_version)) != TD_OK)) {
		char why[256];
		snprintf(why, sizeof(why), "%s", td_last_error());
		run_free(run);
		return tdi_fail(rc, "%s", why);
	}
	*out = run;
	return TD_OK;
}

const char *td_run_id(const td_run *run)
{
	return run ? run->run_id : "";
}

/* Takes the lock for a recording call; on success the caller appends and
 * unlocks. */
static int lock_for_record(struct td_run *run, const char *what, const struct tdi_item_count *count)
{
	int rc;

	pthread_mutex_lock(&run->mu);
	if (run->closed) {
		pthread_mutex_unlock(&run->mu);
		return tdi_fail(TD_ERR_CLOSED, "%s: the run is finishing", what);
	}
	if (count != NULL && (rc = tdi_scratch_reserve(&run->scratch, count)) != TD_OK) {
		pthread_mutex_unlock(&run->mu);
		return rc;
	}
	return TD_OK;
}

/* A history row's step and commit, for the step rules. */
struct history_ctx {
	int64_t step;
	bool commit;
};

/* With the lock, after a row was buffered: moves the step as the agent will,
 * and feeds the footer's mirror. */
static void advance_step_locked(struct td_run *run, const td_item *items, size_t n,
                                const struct history_ctx *h)
{
	if (h->step != TD_STEP_AUTO && h->step > run->step) {
		if (run->has_pending)
			tdi_mirror_commit_locked(run, run->step);
		run->step = h->step;
	}
	tdi_mirror_row_locked(run, items, n, run->step, h->commit);
	if (h->commit) {
		run->step++;
		run->has_pending = false;
	} else {
		run->has_pending = true;
	}
}

/* The hot path shared by td_log, td_summary_update and td_config_update:
 * validate without the lock, then measure, reserve and write under it. */
static int record_items(struct td_run *run, const char *what, struct tdi_items_record *r,
                        const struct history_ctx *h)
{
	struct tdi_item_count count;
	uint8_t *dst;
	int rc;

	struct tdi_limits lim;
	tdi_limits_load(run, &lim);
	if ((rc = tdi_check_items(&lim, what, r->items, r->n, &count)) != TD_OK)
		return rc;
	r->run_id = run->run_id;
	r->run_id_len = run->run_id_len;
	if ((rc = lock_for_record(run, what, &count)) != TD_OK)
		return rc;
	if (h != NULL && h->step != TD_STEP_AUTO && h->step < run->step) {
		long long cur = (long long)run->step;
		pthread_mutex_unlock(&run->mu);
		/* After unlocking: with console capture, stderr is a pipe whose
		 * reader records lines under this lock. */
		fprintf(stderr, "trackd: step %lld < current step %lld; row dropped\n",
		        (long long)h->step, cur);
		return tdi_fail(TD_ERR_INVALID,
		                "td_log: step %lld < current step %lld; row dropped",
		                (long long)h->step, cur);
	}
	size_t len = tdi_items_record_measure(&run->scratch, r);
	if ((rc = tdi_buffer_reserve_locked(run, len, false, &dst)) == TD_OK) {
		tdi_items_record_write(&run->scratch, r, dst);
		tdi_buffer_commit_locked(run);
		if (h != NULL)
			advance_step_locked(run, r->items, r->n, h);
		else if (r->body_key == TDI_KEY_RECORD_SUMMARY)
			tdi_mirror_summary_locked(run, r->items, r->n);
	}
	pthread_mutex_unlock(&run->mu);
	return rc;
}

/* A disabled run records nothing but refuses what an online run would (with
 * the default limits: it never hears the agent's). */
static int disabled_check(const char *what, const td_item *items, size_t n)
{
	struct tdi_item_count unused;

	return tdi_check_items(&tdi_default_limits, what, items, n, &unused);
}

int td_log(td_run *run, const td_item *items, size_t n, int64_t step, bool commit)
{
	uint8_t head[TDI_HISTORY_HEAD_MAX];

	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_log: run is NULL");
	if (run->disabled)
		/* Media values are not checked here: nothing is encoded or sent. */
		return tdi_has_media(items, n) ? TD_OK : disabled_check("td_log", items, n);
	if (step < TD_STEP_AUTO) {
		return tdi_fail(TD_ERR_INVALID,
		                "td_log: step %lld is negative (TD_STEP_AUTO is %d)",
		                (long long)step, TD_STEP_AUTO);
	}
	if (tdi_has_media(items, n))
		return tdi_media_log(run, items, n, step, commit, td_log);
	struct tdi_items_record r = {
	    .body_key = TDI_KEY_RECORD_HISTORY,
	    .head = head,
	    .head_len = tdi_history_head(head, step, commit, tdi_wall_us()),
	    .items_key = TDI_KEY_HISTORY_ITEMS,
	    .items = items,
	    .n = n,
	};
	struct history_ctx h = {.step = step, .commit = commit};
	return record_items(run, "td_log", &r, &h);
}

int td_summary_update(td_run *run, const td_item *items, size_t n)
{
	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_summary_update: run is NULL");
	if (run->disabled)
		return disabled_check("td_summary_update", items, n);
	struct tdi_items_record r = {
	    .body_key = TDI_KEY_RECORD_SUMMARY,
	    .items_key = TDI_KEY_SUMMARY_ITEMS,
	    .items = items,
	    .n = n,
	};
	return record_items(run, "td_summary_update", &r, NULL);
}

int td_config_update(td_run *run, const td_item *items, size_t n)
{
	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_config_update: run is NULL");
	if (run->disabled)
		return disabled_check("td_config_update", items, n);
	struct tdi_items_record r = {
	    .body_key = TDI_KEY_RECORD_CONFIG,
	    .items_key = TDI_KEY_CONFIG_ITEMS,
	    .items = items,
	    .n = n,
	};
	return record_items(run, "td_config_update", &r, NULL);
}

int td_output(td_run *run, bool is_stderr, const char *text)
{
	Trackd__V1__ConsoleOutput console = TRACKD__V1__CONSOLE_OUTPUT__INIT;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	int rc;

	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_output: run is NULL");
	if (run->disabled)
		return TD_OK;
	if (text == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_output: text is NULL");
	struct tdi_limits lim;
	tdi_limits_load(run, &lim);
	if ((rc = tdi_check_text("td_output: text", text, lim.string_bytes, false)))
		return rc;

	console.has_stream = true;
	console.stream = is_stderr ? TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDERR
	                           : TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDOUT;
	console.text = (char *)text;
	console.has_client_time_us = true;
	console.client_time_us = tdi_wall_us();
	rec.body_case = TRACKD__V1__RECORD__BODY_CONSOLE;
	rec.console = &console;

	rec.run_id = run->run_id;
	if ((rc = lock_for_record(run, "td_output", NULL)) != TD_OK)
		return rc;
	rc = tdi_buffer_append_locked(run, &rec.base, false);
	pthread_mutex_unlock(&run->mu);
	return rc;
}

/* Appends a cold record built with protobuf-c (lock taken here). */
static int record_message(struct td_run *run, const char *what, Trackd__V1__Record *rec)
{
	int rc;

	rec->run_id = run->run_id;
	if ((rc = lock_for_record(run, what, NULL)) != TD_OK)
		return rc;
	rc = tdi_buffer_append_locked(run, &rec->base, false);
	return rc; /* still locked: the caller updates the mirror, then unlocks */
}

int tdi_record_proto(struct td_run *run, const char *what, Trackd__V1__Record *rec)
{
	int rc;

	rec->run_id = run->run_id;
	if ((rc = lock_for_record(run, what, NULL)) != TD_OK)
		return rc;
	rc = tdi_buffer_append_locked(run, &rec->base, false);
	pthread_mutex_unlock(&run->mu);
	return rc;
}

int td_define_metric(td_run *run, const char *name, td_metric_summary summary)
{
	Trackd__V1__DefineMetric dm = TRACKD__V1__DEFINE_METRIC__INIT;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	int rc;

	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_define_metric: run is NULL");
	if (run->disabled)
		return TD_OK;
	if (name == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_define_metric: name is NULL");
	struct tdi_limits lim;
	tdi_limits_load(run, &lim);
	if ((rc = tdi_check_text("td_define_metric: name", name, lim.key_bytes, true)) != TD_OK)
		return rc;
	if ((unsigned)summary > TD_SUMMARY_NONE)
		return tdi_fail(TD_ERR_INVALID, "td_define_metric: unknown summary %d",
		                (int)summary);

	dm.name = (char *)name;
	dm.has_summary = true;
	dm.summary = (Trackd__V1__MetricSummary)summary;
	rec.body_case = TRACKD__V1__RECORD__BODY_DEFINE_METRIC;
	rec.define_metric = &dm;
	rc = record_message(run, "td_define_metric", &rec);
	if (rc == TD_ERR_CLOSED)
		return rc;
	if (rc == TD_OK)
		tdi_mirror_define_locked(run, name, summary);
	pthread_mutex_unlock(&run->mu);
	return rc;
}

int td_set_name(td_run *run, const char *display_name)
{
	Trackd__V1__RunRename rn = TRACKD__V1__RUN_RENAME__INIT;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	int rc;

	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_set_name: run is NULL");
	if (run->disabled)
		return TD_OK;
	if (display_name == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_set_name: display_name is NULL");
	if ((rc = tdi_check_text("td_set_name: display_name", display_name, TRACKD_MAX_NAME_BYTES,
	                         true)) != TD_OK)
		return rc;
	rn.display_name = (char *)display_name;
	rec.body_case = TRACKD__V1__RECORD__BODY_RENAME;
	rec.rename = &rn;
	rc = record_message(run, "td_set_name", &rec);
	if (rc == TD_ERR_CLOSED)
		return rc;
	pthread_mutex_unlock(&run->mu);
	return rc;
}

int td_set_tags(td_run *run, const char *const *tags, size_t n_tags)
{
	Trackd__V1__RunRename rn = TRACKD__V1__RUN_RENAME__INIT;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	int rc;

	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_set_tags: run is NULL");
	if (run->disabled)
		return TD_OK;
	if (tags == NULL && n_tags > 0)
		return tdi_fail(TD_ERR_INVALID, "td_set_tags: NULL tags with n_tags %zu", n_tags);
	if (n_tags > TRACKD_MAX_TAGS)
		return tdi_fail(TD_ERR_INVALID, "td_set_tags: %zu tags, limit %u", n_tags,
		                TRACKD_MAX_TAGS);
	for (size_t i = 0; i < n_tags; i++) {
		if (tags[i] == NULL)
			return tdi_fail(TD_ERR_INVALID, "td_set_tags: tag %zu is NULL", i);
		if ((rc = tdi_check_text("td_set_tags: tag", tags[i], TRACKD_MAX_NAME_BYTES,
		                         false)) != TD_OK)
			return rc;
	}
	rn.has_set_tags = rn.set_tags = true;
	rn.tags = (char **)tags;
	rn.n_tags = n_tags;
	rec.body_case = TRACKD__V1__RECORD__BODY_RENAME;
	rec.rename = &rn;
	rc = record_message(run, "td_set_tags", &rec);
	if (rc == TD_ERR_CLOSED)
		return rc;
	pthread_mutex_unlock(&run->mu);
	return rc;
}

int td_set_notes(td_run *run, const char *notes)
{
	Trackd__V1__RunRename rn = TRACKD__V1__RUN_RENAME__INIT;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	int rc;

	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_set_notes: run is NULL");
	if (run->disabled)
		return TD_OK;
	if (notes == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_set_notes: notes is NULL");
	struct tdi_limits lim;
	tdi_limits_load(run, &lim);
	if ((rc = tdi_check_text("td_set_notes: notes", notes, lim.string_bytes, false)) != TD_OK)
		return rc;
	rn.notes = (char *)notes;
	rec.body_case = TRACKD__V1__RECORD__BODY_RENAME;
	rec.rename = &rn;
	rc = record_message(run, "td_set_notes", &rec);
	if (rc == TD_ERR_CLOSED)
		return rc;
	pthread_mutex_unlock(&run->mu);
	return rc;
}

/* Run data from the agent goes to the user's terminal: no control characters. */
static void make_printable(char *p)
{
	for (; p != NULL && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

/* Still on its way to a healthy backend: worth a short wait at the end. */
static bool url_coming(const struct tdi_upload *u)
{
	return u->run_url == NULL && u->last_error == NULL && u->state != NULL &&
	       (strcmp(u->state, "pending") == 0 || strcmp(u->state, "waiting") == 0 ||
	        strcmp(u->state, "uploading") == 0);
}

/* The upload as the agent knows it, waiting up to TDI_FOOTER_URL_WAIT_MS while
 * the run is unknown to the agent yet (its sinks read the log at their own
 * pace) or its first UpsertBucket is on its way, as W&B prints the URL at the
 * end. */
static int upload_for_footer(struct td_run *run, struct tdi_upload *u)
{
	int64_t deadline = tdi_mono_ms() + TDI_FOOTER_URL_WAIT_MS;
	bool asked_sink = false;
	for (;;) {
		int rc = tdi_upload_info(run, TDI_DIR_QUERY_TIMEOUT_MS, u);
		if ((rc == TD_OK && !url_coming(u)) || (rc != TD_OK && rc != TD_ERR_NOT_FOUND) ||
		    tdi_mono_ms() >= deadline)
			return rc;
		/* Not known to the agent yet (its sinks see a record once it is
		 * durable: up to the fsync interval). Without an upload sink there
		 * is no URL to wait for: the footer does not keep finish waiting. */
		if (rc == TD_ERR_NOT_FOUND && !asked_sink) {
			asked_sink = true;
			if (!tdi_agent_uploads(run, TDI_DIR_QUERY_TIMEOUT_MS))
				return rc;
		}
		if (rc == TD_OK)
			tdi_upload_fini(u);
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

/* The trailer lines under the footer: the run on W&B (as wandb prints it:
 * "View run NAME at: URL", "View project at: URL") once the agent's wandb
 * sink has had the backend's answer, or why not yet; where the run is and how
 * to look. */
static int footer_text(struct td_run *run, char **out, size_t *out_len)
{
	char dir[4096];
	struct buf data, view, w1, w2, w3;
	const char *trailer[5];
	size_t n = 0;
	int rc;

	/* Each gets one append: it holds text only if that append succeeded. */
	buf_init(&data, TDI_TEXT_MAX);
	buf_init(&view, TDI_TEXT_MAX);
	buf_init(&w1, TDI_TEXT_MAX);
	buf_init(&w2, TDI_TEXT_MAX);
	buf_init(&w3, TDI_TEXT_MAX);

	/* Asking the agent happens without the lock; an agent that does not
	 * answer is not asked twice. */
	int dir_len = td_run_dir(run, dir, sizeof(dir));
	if (run->mode != TD_MODE_OFFLINE && dir_len != TD_ERR_TRANSPORT) {
		struct tdi_upload u;
		if (upload_for_footer(run, &u) == TD_OK) {
			make_printable(u.display_name);
			make_printable(u.last_error);
			if (u.run_url != NULL) {
				make_printable(u.run_url);
				make_printable(u.project_url);
				buf_printf(&w1, "View run %s at: %s",
				           u.display_name ? u.display_name : run->run_id,
				           u.run_url);
				if (u.project_url != NULL)
					buf_printf(&w2, "View project at: %s", u.project_url);
			}
			if (u.state != NULL && strcmp(u.state, "parked") == 0) {
				buf_printf(
				    &w3, "W&B: upload parked: %s; retry with: trackctl retry %s",
				    u.last_error ? u.last_error : "a permanent error", run->run_id);
			} else if (u.run_url == NULL && u.state != NULL &&
			           strcmp(u.state, "disabled") != 0 &&
			           strcmp(u.state, "offline") != 0) {
				buf_printf(
				    &w3,
				    "W&B: upload pending; trackctl show %s gives the run's URL "
				    "once the backend answers",
				    run->run_id);
			}
			tdi_upload_fini(&u);
		}
	}
	if (w1.len > 0)
		trailer[n++] = w1.data;
	if (w2.len > 0)
		trailer[n++] = w2.data;
	if (w3.len > 0)
		trailer[n++] = w3.data;
	if (dir_len > 0 && (size_t)dir_len < sizeof(dir)) {
		if (buf_printf(&data, "Run data: %s", dir) == 0)
			trailer[n++] = data.data;
	}
	int view_rc;
	if (run->mode == TD_MODE_OFFLINE)
		view_rc = buf_printf(&view, "Offline run; upload it later with: trackctl sync %s",
		                     run->run_id);
	else
		view_rc = buf_printf(&view, "View it: trackctl show %s/%s/%s", run->entity,
		                     run->project, run->run_id);
	if (view_rc == 0)
		trailer[n++] = view.data;
	pthread_mutex_lock(&run->mu);
	rc = tdi_mirror_render_locked(run, trailer, n, out, out_len);
	pthread_mutex_unlock(&run->mu);
	buf_fini(&data);
	buf_fini(&view);
	buf_fini(&w1);
	buf_fini(&w2);
	buf_fini(&w3);
	return rc;
}

int td_footer(td_run *run, char *buf, size_t len)
{
	char *text;
	size_t text_len;
	int rc;

	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_footer: run is NULL");
	if (run->disabled) {
		if (buf != NULL && len > 0)
			buf[0] = '\0';
		return 0;
	}
	if ((rc = footer_text(run, &text, &text_len)) != TD_OK)
		return rc;
	rc = tdi_text_copy_out(text, text_len, buf, len);
	free(text);
	return rc;
}

/* What td_finish tells the user beside the footer when not everything made it. */
static void print_delivery_warning(const struct td_run *run, const td_finish_report *rep)
{
	uint64_t lost = rep->records_unacked - rep->records_spooled;

	if (rep->records_spooled > 0)
		fprintf(stderr,
		        "trackd: %llu records are not with the agent yet; they are safe in %s and "
		        "go out with the next run or `trackctl spool flush`\n",
		        (unsigned long long)rep->records_spooled, run->spool.path);
	if (lost > 0 || rep->records_refused_full > 0 || rep->records_rejected > 0)
		fprintf(stderr,
		        "trackd: records lost: %llu undelivered, %llu refused (buffer full), %llu "
		        "refused by the agent%s%s\n",
		        (unsigned long long)lost, (unsigned long long)rep->records_refused_full,
		        (unsigned long long)rep->records_rejected, rep->last_error[0] ? ": " : "",
		        rep->last_error);
}

int tdi_run_end(struct td_run *run, int exit_code, td_exit_reason reason, int timeout_ms,
                td_finish_report *report)
{
	td_finish_report rep;
	Trackd__V1__RunExit ex = TRACKD__V1__RUN_EXIT__INIT;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	int exit_rc, rc;

	memset(&rep, 0, sizeof(rep));
	if (timeout_ms < 0)
		timeout_ms = TDI_DEFAULT_FINISH_TIMEOUT_MS;
	int64_t deadline = tdi_mono_ms() + timeout_ms;

	/* Console lines written before the end belong before the exit record,
	 * and so do the process's facts (a git status still running is cut). */
	tdi_console_stop(run);
	tdi_environment_stop(run);

	ex.has_exit_code = true;
	ex.exit_code = exit_code;
	ex.has_reason = true;
	ex.reason = reason == TD_EXIT_KILLED ? TRACKD__V1__EXIT_REASON__EXIT_KILLED
	                                     : TRACKD__V1__EXIT_REASON__EXIT_FINISHED;
	ex.has_client_time_us = true;
	ex.client_time_us = tdi_wall_us();
	/* Names this process: if the exit is spooled, whoever delivers it later is
	 * another process, and the agent must still settle this one. */
	ex.has_pid = true;
	ex.pid = (int32_t)getpid();
	rec.run_id = run->run_id;
	rec.body_case = TRACKD__V1__RECORD__BODY_EXIT;
	rec.exit = &ex;

	pthread_mutex_lock(&run->mu);
	/* The exit record may pass the bound: ending the run must not depend
	 * on the agent having drained the buffer. */
	exit_rc = tdi_buffer_append_locked(run, &rec.base, true);
	run->closed = true;
	run->finishing = true;
	/* The agent commits a pending row at the end as well. */
	if (run->has_pending) {
		tdi_mirror_commit_locked(run, run->step);
		run->has_pending = false;
	}
	pthread_cond_signal(&run->wake);
	bool no_agent = false;
	int absent_checks = 0;
	int64_t next_check = tdi_mono_ms() + TDI_NO_AGENT_CHECK_MS;
	while ((run->open.n_records > 0 || run->head != NULL || run->spool.pending_batches > 0 ||
	        !run->replay.done) &&
	       tdi_mono_ms() < deadline) {
		tdi_wait_until(&run->drained, &run->mu,
		               next_check < deadline ? next_check : deadline);
		if (tdi_mono_ms() < next_check)
			continue;
		next_check = tdi_mono_ms() + TDI_NO_AGENT_CHECK_MS;
		bool absent = false;
		if (run->no_connection) {
			pthread_mutex_unlock(&run->mu);
			absent = tdi_agent_absent(run->url) &&
			         (!run->private_agent || !tdi_agent_can_start());
			pthread_mutex_lock(&run->mu);
		}
		absent_checks = absent ? absent_checks + 1 : 0;
		if (absent_checks >= TDI_NO_AGENT_CHECKS) {
			no_agent = true;
			break;
		}
	}
	pthread_mutex_unlock(&run->mu);

	tdi_sender_stop(run);
	tdi_replay_stop(run);

	/* Whatever the agent has not acknowledged goes to the spool, so a client
	 * whose agent never came up loses nothing. */
	pthread_mutex_lock(&run->mu);
	/* Files first: a replay sends them before the frames that name them. */
	size_t files_spooled = 0;
	(void)tdi_blob_spool_locked(run, &files_spooled);
	if (run->open.n_records > 0 || run->head != NULL)
		(void)tdi_spool_spill_locked(run);
	pthread_mutex_unlock(&run->mu);
	tdi_spool_close(run);

	/* The threads are gone: the counters are final. */
	rep.records_logged = run->records_logged;
	rep.records_acked = run->records_acked;
	rep.records_unacked = tdi_buffer_unacked_records_locked(run) + run->spool.pending_records;
	rep.records_refused_full = run->records_refused_full;
	rep.records_rejected = run->records_rejected;
	rep.records_spooled = run->spool.pending_records;
	if (rep.records_rejected > 0)
		snprintf(rep.last_error, sizeof(rep.last_error), "%s", run->agent_error);
	else if (rep.records_unacked > 0)
		snprintf(rep.last_error, sizeof(rep.last_error), "%s", run->transport_error);
	/* Files the spool could not take (blob_queue.h): say how many are lost. */
	size_t files_left = 0;
	for (const struct tdi_blob *b = run->blobs.head; b; b = b->next)
		files_left++;
	if (files_left) {
		size_t n = strlen(rep.last_error);
		snprintf(rep.last_error + n, sizeof(rep.last_error) - n,
		         "%s%zu file(s) not delivered and not spooled", n ? "; " : "", files_left);
	}

	if (rep.records_rejected > 0) {
		rc = tdi_fail(TD_ERR_REJECTED, "td_finish: the agent refused %llu records: %s",
		              (unsigned long long)rep.records_rejected, rep.last_error);
	} else if (rep.records_unacked > 0) {
		char spooled[80] = "";
		if (rep.records_spooled > 0)
			snprintf(spooled, sizeof(spooled),
			         " (%llu of them spooled for later delivery)",
			         (unsigned long long)rep.records_spooled);
		if (no_agent)
			rc = tdi_fail(TD_ERR_TIMEOUT,
			              "td_finish: %llu records not acknowledged: no agent at %s, "
			              "none can be started%s%s%s",
			              (unsigned long long)rep.records_unacked, run->url, spooled,
			              rep.last_error[0] ? ": " : "", rep.last_error);
		else
			rc = tdi_fail(TD_ERR_TIMEOUT,
			              "td_finish: %llu records not acknowledged within %d ms%s%s%s",
			              (unsigned long long)rep.records_unacked, timeout_ms, spooled,
			              rep.last_error[0] ? ": " : "", rep.last_error);
	} else {
		rc = exit_rc;
	}

	if (run->print_footer) {
		char detail[256];
		char *text = NULL;
		size_t len = 0;
		snprintf(detail, sizeof(detail), "%s", td_last_error());
		if (footer_text(run, &text, &len) == TD_OK && len > 0)
			fwrite(text, 1, len, stderr);
		free(text);
		print_delivery_warning(run, &rep);
		fflush(stderr);
		tdi_fail(rc, "%s", detail); /* the footer's lookups must not hide it */
	}
	if (report != NULL)
		*report = rep;
	return rc;
}

int td_finish_reason(td_run *run, int exit_code, td_exit_reason reason, int timeout_ms,
                     td_finish_report *report)
{
	if (report != NULL)
		memset(report, 0, sizeof(*report));
	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_finish: run is NULL");
	if (run->disabled) {
		run_free(run);
		return TD_OK;
	}
	if ((unsigned)reason > TD_EXIT_KILLED)
		return tdi_fail(TD_ERR_INVALID, "td_finish: unknown exit reason %d", (int)reason);

	pthread_mutex_lock(&run->mu);
	if (run->finish_owner == 2) {
		/* The signal thread is ending the run and then the process. */
		pthread_mutex_unlock(&run->mu);
		for (;;)
			pause();
	}
	if (run->finish_owner != 0) {
		pthread_mutex_unlock(&run->mu);
		return tdi_fail(TD_ERR_CLOSED, "td_finish: the run is already finishing");
	}
	run->finish_owner = 1;
	pthread_mutex_unlock(&run->mu);

	tdi_signals_uninstall(run);
	int rc = tdi_run_end(run, exit_code, reason, timeout_ms, report);
	int sig = run->pending_signal;
	run_free(run);
	if (sig != 0) {
		/* A SIGTERM/SIGINT came while we were finishing: it still kills. */
		signal(sig, SIG_DFL);
		raise(sig);
	}
	return rc;
}

int td_finish(td_run *run, int exit_code, int timeout_ms, td_finish_report *report)
{
	return td_finish_reason(run, exit_code, TD_EXIT_FINISHED, timeout_ms, report);
}

size_t tdi_run_buffered_bytes(td_run *run)
{
	pthread_mutex_lock(&run->mu);
	size_t n = run->buffered_bytes;
	pthread_mutex_unlock(&run->mu);
	return n;
}
