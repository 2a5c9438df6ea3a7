/*
 * run.c — the public API: a run's lifecycle (td_init … td_finish) and the
 * recording calls. Recording calls validate without the lock, then encode
 * straight into the open batch under it; nothing here does I/O except td_init (socket set-up, never
 * waiting for the agent) and td_finish (waiting for acks).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal.h"

void td_run_options_init(td_run_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->mode = TD_MODE_ONLINE;
	opts->resume = TD_RESUME_NEVER;
	opts->max_buffer_bytes = TD_DEFAULT_MAX_BUFFER_BYTES;
	opts->batch_bytes = TD_DEFAULT_BATCH_BYTES;
	opts->flush_interval_ms = TD_DEFAULT_FLUSH_INTERVAL_MS;
}

static int fill_random(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return td_fail(TD_ERR_TRANSPORT, "td_init: getrandom: %s", strerror(errno));
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
		return td_fail(TD_ERR_INVALID, "td_init: run_id is empty");
	if (len > TRACKD_MAX_RUN_ID_BYTES) {
		return td_fail(TD_ERR_INVALID, "td_init: run_id is longer than %u bytes",
		               TRACKD_MAX_RUN_ID_BYTES);
	}
	size_t bad = strcspn(given, TRACKD_RUN_ID_FORBIDDEN);
	if (bad < len) {
		return td_fail(TD_ERR_INVALID, "td_init: run_id must not contain '%c' (none of %s)",
		               given[bad], TRACKD_RUN_ID_FORBIDDEN);
	}
	if (!td_utf8_valid(given, len))
		return td_fail(TD_ERR_INVALID, "td_init: run_id is not valid UTF-8");
	memcpy(run->run_id, given, len + 1);
	run->run_id_len = len;
	return TD_OK;
}

static int check_options(const td_run_options *o, struct td_item_count *config_count)
{
	int rc;

	if ((unsigned)o->resume > TD_RESUME_MUST)
		return td_fail(TD_ERR_INVALID, "td_init: unknown resume mode %d", (int)o->resume);
	if ((rc = td_check_text("td_init: project", o->project, TRACKD_MAX_NAME_BYTES, true)) ||
	    (rc = td_check_text("td_init: entity", o->entity, TRACKD_MAX_NAME_BYTES, false)) ||
	    (rc = td_check_text("td_init: display_name", o->display_name, TRACKD_MAX_NAME_BYTES,
	                        false)) ||
	    (rc = td_check_text("td_init: group", o->group, TRACKD_MAX_NAME_BYTES, false)) ||
	    (rc = td_check_text("td_init: job_type", o->job_type, TRACKD_MAX_NAME_BYTES, false)) ||
	    (rc =
	         td_check_text("td_init: notes", o->notes, TRACKD_DEFAULT_MAX_STRING_BYTES, false)))
		return rc;
	if (o->n_tags > TRACKD_MAX_TAGS)
		return td_fail(TD_ERR_INVALID, "td_init: more than %u tags", TRACKD_MAX_TAGS);
	if (o->n_tags > 0 && o->tags == NULL)
		return td_fail(TD_ERR_INVALID, "td_init: NULL tags with n_tags %zu", o->n_tags);
	for (size_t i = 0; i < o->n_tags; i++) {
		char what[48];
		snprintf(what, sizeof(what), "td_init: tag #%zu", i);
		if (o->tags[i] == NULL)
			return td_fail(TD_ERR_INVALID, "%s: NULL", what);
		if ((rc = td_check_text(what, o->tags[i], TRACKD_MAX_NAME_BYTES, true)) != TD_OK)
			return rc;
	}
	if (o->max_buffer_bytes != 0 && o->max_buffer_bytes < TD_MIN_MAX_BUFFER_BYTES) {
		return td_fail(TD_ERR_INVALID,
		               "td_init: max_buffer_bytes %zu is below the minimum %zu",
		               o->max_buffer_bytes, TD_MIN_MAX_BUFFER_BYTES);
	}
	return td_check_items("td_init: config", o->config, o->n_config, config_count);
}

/* options.socket_url, else $TRACKD_SOCKET, else the agent's default path. */
static int resolve_url(const td_run_options *o, char *url, size_t len)
{
	const char *u = o->socket_url;
	int n;

	if (u == NULL || *u == '\0')
		u = getenv("TRACKD_SOCKET");
	if (u != NULL && *u != '\0') {
		n = snprintf(url, len, "%s", u);
	} else if (geteuid() == 0) {
		n = snprintf(url, len, "ipc:///run/trackd/trackd.sock");
	} else {
		/* Without XDG_RUNTIME_DIR the agent falls back to /tmp/trackd-<uid>. */
		const char *xdg = getenv("XDG_RUNTIME_DIR");
		if (xdg != NULL && *xdg == '/')
			n = snprintf(url, len, "ipc://%s/trackd/trackd.sock", xdg);
		else
			n = snprintf(url, len, "ipc:///tmp/trackd-%u/trackd.sock",
			             (unsigned)geteuid());
	}
	if (n < 0 || (size_t)n >= len)
		return td_fail(TD_ERR_INVALID, "td_init: agent address longer than %zu bytes",
		               len - 1);
	return TD_OK;
}

static void run_free(struct td_run *run)
{
	if (!run->disabled) {
		td_sender_stop(run);
		td_buffer_free_all(run);
		td_scratch_fini(&run->scratch);
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
	pthread_condattr_destroy(&attr);
	return TD_OK;
}

static int buffer_run_start(struct td_run *run, const td_run_options *o,
                            const struct td_item_count *config_count)
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
	if (!td_utf8_valid(host, strlen(host)))
		host[0] = '\0';

	/* protobuf-c wants char *; it only reads these. */
	start.project = (char *)(o->project ? o->project : "uncategorized");
	start.entity = (char *)o->entity;
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
	start.start_time_us = td_wall_us();
	start.has_mode = true;
	start.mode = o->mode == TD_MODE_OFFLINE ? TRACKD__V1__RUN_MODE__RUN_MODE_OFFLINE
	                                        : TRACKD__V1__RUN_MODE__RUN_MODE_ONLINE;
	start.has_resume = true;
	start.resume = (Trackd__V1__ResumeMode)o->resume;
	rec.run_id = run->run_id;
	rec.body_case = TRACKD__V1__RECORD__BODY_START;
	rec.start = &start;

	pthread_mutex_lock(&run->mu);
	rc = td_scratch_reserve(&run->scratch, config_count);
	if (rc == TD_OK) {
		if (o->n_config > 0) {
			config.n_items = o->n_config;
			config.items = td_scratch_fill(&run->scratch, o->config, o->n_config);
			start.config = &config;
		}
		rc = td_buffer_append_locked(run, &rec.base, false);
	}
	pthread_mutex_unlock(&run->mu);
	return rc;
}

int td_init(const td_run_options *opts, td_run **out)
{
	td_run_options defaults;
	struct td_item_count config_count = {0};
	struct td_run *run;
	int rc;

	if (out == NULL)
		return td_fail(TD_ERR_INVALID, "td_init: out is NULL");
	*out = NULL;
	if (opts == NULL) {
		td_run_options_init(&defaults);
		opts = &defaults;
	}
	if ((unsigned)opts->mode > TD_MODE_DISABLED)
		return td_fail(TD_ERR_INVALID, "td_init: unknown mode %d", (int)opts->mode);
	if ((run = calloc(1, sizeof(*run))) == NULL)
		return td_fail(TD_ERR_NOMEM, "td_init: out of memory");
	if ((rc = set_run_id(run, opts->run_id)) != TD_OK) {
		free(run);
		return rc;
	}
	/* Disabled: keep the id (callers may print it) and nothing else. */
	if (opts->mode == TD_MODE_DISABLED) {
		run->disabled = true;
		*out = run;
		return TD_OK;
	}

	if ((rc = check_options(opts, &config_count)) != TD_OK ||
	    (rc = resolve_url(opts, run->url, sizeof(run->url))) != TD_OK ||
	    (rc = fill_random(run->session_id, sizeof(run->session_id))) != TD_OK) {
		free(run);
		return rc;
	}
	if ((rc = sync_init(run)) != TD_OK) {
		free(run);
		return td_fail(rc, "td_init: cannot initialise locks");
	}
	run->max_buffer_bytes =
	    opts->max_buffer_bytes ? opts->max_buffer_bytes : TD_DEFAULT_MAX_BUFFER_BYTES;
	run->batch_bytes = opts->batch_bytes ? opts->batch_bytes : TD_DEFAULT_BATCH_BYTES;
	if (run->batch_bytes > TD_MAX_BATCH_RECORD_BYTES)
		run->batch_bytes = TD_MAX_BATCH_RECORD_BYTES;
	run->flush_interval_ms =
	    opts->flush_interval_ms ? opts->flush_interval_ms : TD_DEFAULT_FLUSH_INTERVAL_MS;
	run->next_seq = 1;

	/* RunStart goes in before the sender starts, so it leads the first batch. */
	if ((rc = buffer_run_start(run, opts, &config_count)) != TD_OK ||
	    (rc = td_sender_start(run)) != TD_OK) {
		run_free(run);
		return rc;
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
static int lock_for_record(struct td_run *run, const char *what, const struct td_item_count *count)
{
	int rc;

	pthread_mutex_lock(&run->mu);
	if (run->closed) {
		pthread_mutex_unlock(&run->mu);
		return td_fail(TD_ERR_CLOSED, "%s: the run is finishing", what);
	}
	if (count != NULL && (rc = td_scratch_reserve(&run->scratch, count)) != TD_OK) {
		pthread_mutex_unlock(&run->mu);
		return rc;
	}
	return TD_OK;
}

/* The hot path shared by td_log, td_summary_update and td_config_update:
 * validate without the lock, then measure, reserve and write under it. */
static int record_items(struct td_run *run, const char *what, struct td_items_record *r)
{
	struct td_item_count count;
	uint8_t *dst;
	int rc;

	if ((rc = td_check_items(what, r->items, r->n, &count)) != TD_OK)
		return rc;
	r->run_id = run->run_id;
	r->run_id_len = run->run_id_len;
	if ((rc = lock_for_record(run, what, &count)) != TD_OK)
		return rc;
	size_t len = td_items_record_measure(&run->scratch, r);
	if ((rc = td_buffer_reserve_locked(run, len, false, &dst)) == TD_OK) {
		td_items_record_write(&run->scratch, r, dst);
		td_buffer_commit_locked(run);
	}
	pthread_mutex_unlock(&run->mu);
	return rc;
}

int td_log(td_run *run, const td_item *items, size_t n, int64_t step, bool commit)
{
	uint8_t head[TD_HISTORY_HEAD_MAX];

	if (run == NULL)
		return td_fail(TD_ERR_INVALID, "td_log: run is NULL");
	if (run->disabled)
		return TD_OK;
	if (step < TD_STEP_AUTO) {
		return td_fail(TD_ERR_INVALID, "td_log: step %lld is negative (TD_STEP_AUTO is %d)",
		               (long long)step, TD_STEP_AUTO);
	}
	struct td_items_record r = {
	    .body_key = TD_KEY_RECORD_HISTORY,
	    .head = head,
	    .head_len = td_history_head(head, step, commit, td_wall_us()),
	    .items_key = TD_KEY_HISTORY_ITEMS,
	    .items = items,
	    .n = n,
	};
	return record_items(run, "td_log", &r);
}

int td_summary_update(td_run *run, const td_item *items, size_t n)
{
	if (run == NULL)
		return td_fail(TD_ERR_INVALID, "td_summary_update: run is NULL");
	if (run->disabled)
		return TD_OK;
	struct td_items_record r = {
	    .body_key = TD_KEY_RECORD_SUMMARY,
	    .items_key = TD_KEY_UPDATE_ITEMS,
	    .items = items,
	    .n = n,
	};
	return record_items(run, "td_summary_update", &r);
}

int td_config_update(td_run *run, const td_item *items, size_t n)
{
	if (run == NULL)
		return td_fail(TD_ERR_INVALID, "td_config_update: run is NULL");
	if (run->disabled)
		return TD_OK;
	struct td_items_record r = {
	    .body_key = TD_KEY_RECORD_CONFIG,
	    .items_key = TD_KEY_UPDATE_ITEMS,
	    .items = items,
	    .n = n,
	};
	return record_items(run, "td_config_update", &r);
}

int td_output(td_run *run, bool is_stderr, const char *text)
{
	Trackd__V1__ConsoleOutput console = TRACKD__V1__CONSOLE_OUTPUT__INIT;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	int rc;

	if (run == NULL)
		return td_fail(TD_ERR_INVALID, "td_output: run is NULL");
	if (run->disabled)
		return TD_OK;
	if (text == NULL)
		return td_fail(TD_ERR_INVALID, "td_output: text is NULL");
	if ((rc = td_check_text("td_output: text", text, TRACKD_DEFAULT_MAX_STRING_BYTES, false)))
		return rc;

	console.has_stream = true;
	console.stream = is_stderr ? TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDERR
	                           : TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDOUT;
	console.text = (char *)text;
	console.has_client_time_us = true;
	console.client_time_us = td_wall_us();
	rec.body_case = TRACKD__V1__RECORD__BODY_CONSOLE;
	rec.console = &console;

	rec.run_id = run->run_id;
	if ((rc = lock_for_record(run, "td_output", NULL)) != TD_OK)
		return rc;
	rc = td_buffer_append_locked(run, &rec.base, false);
	pthread_mutex_unlock(&run->mu);
	return rc;
}

int td_finish(td_run *run, int exit_code, int timeout_ms, td_finish_report *report)
{
	td_finish_report rep;
	Trackd__V1__RunExit ex = TRACKD__V1__RUN_EXIT__INIT;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	int exit_rc, rc;

	memset(&rep, 0, sizeof(rep));
	if (report != NULL)
		*report = rep;
	if (run == NULL)
		return td_fail(TD_ERR_INVALID, "td_finish: run is NULL");
	if (run->disabled) {
		run_free(run);
		return TD_OK;
	}
	if (timeout_ms < 0)
		timeout_ms = TD_DEFAULT_FINISH_TIMEOUT_MS;

	ex.has_exit_code = true;
	ex.exit_code = exit_code;
	ex.has_reason = true;
	ex.reason = TRACKD__V1__EXIT_REASON__EXIT_FINISHED;
	ex.has_client_time_us = true;
	ex.client_time_us = td_wall_us();
	rec.run_id = run->run_id;
	rec.body_case = TRACKD__V1__RECORD__BODY_EXIT;
	rec.exit = &ex;

	pthread_mutex_lock(&run->mu);
	/* The exit record may pass the bound: ending the run must not depend
	 * on the agent having drained the buffer. */
	exit_rc = td_buffer_append_locked(run, &rec.base, true);
	run->closed = true;
	run->finishing = true;
	pthread_cond_signal(&run->wake);
	int64_t deadline = td_mono_ms() + timeout_ms;
	while ((run->open.n_records > 0 || run->head != NULL) && td_mono_ms() < deadline) {
		struct timespec ts = {.tv_sec = (time_t)(deadline / 1000),
		                      .tv_nsec = (long)(deadline % 1000) * 1000000};
		pthread_cond_timedwait(&run->drained, &run->mu, &ts);
	}
	pthread_mutex_unlock(&run->mu);

	td_sender_stop(run);

	/* The sender is gone: the counters are final. */
	rep.records_logged = run->records_logged;
	rep.records_acked = run->records_acked;
	rep.records_unacked = td_buffer_unacked_records_locked(run);
	rep.records_refused_full = run->records_refused_full;
	rep.records_rejected = run->records_rejected;
	if (rep.records_rejected > 0)
		snprintf(rep.last_error, sizeof(rep.last_error), "%s", run->agent_error);
	else if (rep.records_unacked > 0)
		snprintf(rep.last_error, sizeof(rep.last_error), "%s", run->transport_error);

	if (rep.records_rejected > 0) {
		rc = td_fail(TD_ERR_REJECTED, "td_finish: the agent refused %llu records: %s",
		             (unsigned long long)rep.records_rejected, rep.last_error);
	} else if (rep.records_unacked > 0) {
		rc = td_fail(TD_ERR_TIMEOUT,
		             "td_finish: %llu records not acknowledged within %d ms%s%s",
		             (unsigned long long)rep.records_unacked, timeout_ms,
		             rep.last_error[0] ? ": " : "", rep.last_error);
	} else {
		rc = exit_rc;
	}
	if (report != NULL)
		*report = rep;
	run_free(run);
	return rc;
}
