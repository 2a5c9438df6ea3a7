/*
 * trackd — the machine-wide agent. Wires the stages together:
 *   config → txlog (recovery rebuilds the dedupe table) → ingest (NNG socket)
 * then waits for signals on the main thread:
 *   SIGTERM/SIGINT: stop taking requests, answer every request received, sync the
 *                   log, exit 0.
 *   SIGHUP:         re-read the config file; apply what can change at run time
 *                   (log level, shutdown timeout, request limits, disk budget,
 *                   wandb connection settings: the keys config.c marks) and log,
 *                   per changed key, "applied" or "needs a restart". A file that
 *                   does not load is rejected as a whole; the old one stays.
 * With metrics_listen, a Prometheus endpoint serves the counters (collect.h).
 * Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration or usage.
 */
#include "artifacts.h"
#include "blobs.h"
#include "collect.h"
#include "config.h"
#include "errors.h"
#include "ingest.h"
#include "local_sink.h"
#include "local_store.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "paths.h"
#include "queries.h"
#include "sdnotify.h"
#include "sessions.h"
#include "sysmetrics.h"
#include "state_dir.h"
#include "txlog.h"
#include "user_mode.h"
#include "wandb_sink.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef TRACKD_VERSION
#define TRACKD_VERSION "0.0.0"
#endif

struct args {
	const char *config_path;
	const char *state_dir;
	const char *listen;
	bool check_config;
	bool user;             /* --user: a private agent (user_mode.h) */
	const char *idle_exit; /* --idle-exit: overrides idle_exit */
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: trackd [options]\n"
	             "\n"
	             "The trackd agent: takes run records from training processes over a Unix\n"
	             "socket and makes them durable in a transaction log.\n"
	             "\n"
	             "Options:\n"
	             "  --config FILE     YAML configuration file (see the keys below)\n"
	             "  --state-dir DIR   where the transaction log lives (overrides state_dir)\n"
	             "  --listen URL      ipc:// URL of the socket (overrides listen)\n"
	             "  --user            a private agent for the current user: per-user paths,\n"
	             "                    a socket only this user may reach, one agent per user,\n"
	             "                    exits after idle_exit with nothing to do (clients start\n"
	             "                    it on their own when no agent answers)\n"
	             "  --idle-exit SECS  with --user: idle time before exiting (seconds, or a\n"
	             "                    duration such as 2m; 0 = never); overrides idle_exit\n"
	             "  --check-config    validate the configuration, print it, and exit\n"
	             "  --version         print the version and exit\n"
	             "  --help            this text\n"
	             "\n"
	             "Clients find the agent through TRACKD_SOCKET (an NNG URL), else the\n"
	             "machine's socket if an agent answers there, else the user's private agent,\n"
	             "which they start (trackd --user) unless TRACKD_NO_AUTOSTART is set.\n"
	             "Signals: SIGTERM/SIGINT stop cleanly, SIGHUP reloads.\n"
	             "\n");
	config_print_reference(out);
}

static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"state-dir", required_argument, NULL, 's'},
	    {"listen", required_argument, NULL, 'l'},
	    {"check-config", no_argument, NULL, 'k'},
	    {"user", no_argument, NULL, 'u'},
	    {"idle-exit", required_argument, NULL, 'i'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': a->config_path = optarg; break;
		case 's': a->state_dir = optarg; break;
		case 'l': a->listen = optarg; break;
		case 'k': a->check_config = true; break;
		case 'u': a->user = true; break;
		case 'i': a->idle_exit = optarg; break;
		case 'V': printf("trackd %s\n", TRACKD_VERSION); exit(0);
		case 'h': usage(stdout); exit(0);
		default: fprintf(stderr, "trackd: try 'trackd --help'\n"); return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "trackd: unexpected argument '%s'; try 'trackd --help'\n",
		        argv[optind]);
		return -1;
	}
	return 0;
}

/* Loads defaults, the file, then the command-line overrides. On failure `err`
 * says why (printed at start-up, logged at a reload); `cfg` holds no strings. */
static int load_config(const struct args *a, struct config *cfg, char *err, size_t errlen)
{
	char user_file[4096];
	/* The machine's agent has the system paths whatever uid runs it (the
	 * service runs as user trackd); only --user picks per-user paths. */
	if (config_defaults(cfg, !a->user) != 0) {
		snprintf(err, errlen, "cannot compute default configuration");
		return -1;
	}
	const char *file = a->config_path;
	if (!file && a->user)
		file = user_mode_config_file(user_file, sizeof user_file);
	if (file && config_load_file(cfg, file, err, errlen) != 0)
		goto fail;
	if (a->idle_exit) {
		/* Seconds, as the option says, or a duration with its unit. */
		char *end;
		unsigned long long secs = strtoull(a->idle_exit, &end, 10);
		bool digits = a->idle_exit[0] >= '0' && a->idle_exit[0] <= '9' && *end == '\0';
		if (digits ? secs > UINT64_MAX / 1000
		           : config_parse_duration_ms(a->idle_exit, &cfg->idle_exit_ms) != 0) {
			snprintf(err, errlen,
			         "--idle-exit %s: expected seconds or a duration such as 2m",
			         a->idle_exit);
			goto fail;
		}
		if (digits)
			cfg->idle_exit_ms = (uint64_t)secs * 1000;
	}
	if (a->state_dir) {
		free(cfg->state_dir);
		cfg->state_dir = strdup(a->state_dir);
	}
	if (a->listen) {
		if (strncmp(a->listen, "ipc://", 6) != 0) {
			snprintf(err, errlen, "--listen %s: expected an ipc:// URL", a->listen);
			goto fail;
		}
		free(cfg->listen);
		cfg->listen = strdup(a->listen);
	}
	if (!cfg->state_dir || !cfg->listen) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* A batch larger than what the budget can ever hold would be refused
	 * forever; keep room for a few requests in flight. */
	if (cfg->txlog.max_bytes < 4 * cfg->limits.max_message_bytes) {
		snprintf(err, errlen,
		         "txlog.max_bytes (%llu bytes) must be at least 4 × "
		         "limits.max_message_bytes (%llu bytes)",
		         (unsigned long long)cfg->txlog.max_bytes,
		         (unsigned long long)cfg->limits.max_message_bytes);
		goto fail;
	}
	return 0;
fail:
	config_fini(cfg);
	return -1;
}

static enum txlog_fsync_policy fsync_policy(enum config_fsync f)
{
	switch (f) {
	case CONFIG_FSYNC_ALWAYS: return TXLOG_FSYNC_ALWAYS;
	case CONFIG_FSYNC_NEVER: return TXLOG_FSYNC_NEVER;
	case CONFIG_FSYNC_INTERVAL: break;
	}
	return TXLOG_FSYNC_INTERVAL;
}

/* The running agent's stages, for the hooks that connect them. The pointers are
 * set while threads already run (each stage starts before the next exists), so
 * they are atomic; a hook that finds its target missing reports "starting". */
struct agent {
	const char *state_dir;
	_Atomic uint64_t log_max_bytes; /* changed by reloads, read by status queries */
	txlog *log;                     /* set before any hook or the metrics run */
	blobs *blobs;                   /* the blob store, set with log */
	artifacts *artifacts;           /* the artifact store, set with blobs */
	int64_t next_sweep_us;          /* main thread: the blob store's next sweep */
	struct blobs_marks sweep_marks; /* main thread: when every record was applied */
	_Atomic uint64_t reloads_applied, reloads_rejected;
	/* The configuration in force; only the main thread reads or changes it
	 * (stages were given copies of their settings or borrow keys that a
	 * reload never changes). */
	struct config *running;
	uint64_t started_max_message_bytes;
	_Atomic(ingest *) in;
	_Atomic(local_sink *) sink;
	_Atomic(wandb_sink *) wandb;   /* NULL when sinks.wandb is off */
	_Atomic(sysmetrics *) sampler; /* NULL when system_metrics is off */
	struct user_mode *user;        /* --user only */
};

static int submit_record(void *arg, const Trackd__V1__Record *rec)
{
	struct agent *ag = arg;
	ingest *in = atomic_load(&ag->in);
	return in ? ingest_submit(in, rec) : TRACKD_EAGAIN;
}

/* The sampler's view of the live runs: the local sink's published copy
 * (local_sink_live_runs takes only its small publication lock, never the
 * sink's own, which a checkpoint holds through its fsyncs). */
static int live_runs(void *arg, struct sysmetrics_run **out, size_t *n)
{
	struct agent *ag = arg;
	*out = NULL;
	*n = 0;
	local_sink *sink = atomic_load(&ag->sink);
	struct local_live_run *live;
	size_t k;
	if (!sink || local_sink_live_runs(sink, &live, &k) != 0 || k == 0)
		return 0;
	struct sysmetrics_run *runs = calloc(k, sizeof *runs);
	if (!runs) {
		free(live);
		return TRACKD_ENOMEM;
	}
	for (size_t i = 0; i < k; i++) {
		snprintf(runs[i].id, sizeof runs[i].id, "%s", live[i].id);
		runs[i].start_time_us = live[i].start_time_us;
		for (size_t p = 0; p < live[i].n_pids && p < SYSMETRICS_MAX_PIDS; p++) {
			runs[i].pids[p] = live[i].pids[p];
			runs[i].start_ticks[p] = live[i].start_ticks[p];
			runs[i].n_pids++;
		}
		snprintf(runs[i].boot_id, sizeof runs[i].boot_id, "%s", live[i].counters_boot_id);
		snprintf(runs[i].cwd, sizeof runs[i].cwd, "%s", live[i].client_root);
		for (size_t b = 0; b < live[i].n_counter_bases && b < SYSMETRICS_MAX_BASES; b++) {
			snprintf(runs[i].bases[b].key, sizeof runs[i].bases[b].key, "%s",
			         live[i].counter_bases[b].key);
			runs[i].bases[b].value = live[i].counter_bases[b].value;
			runs[i].n_bases++;
		}
	}
	free(live);
	*out = runs;
	*n = k;
	return 0;
}

/* Before the sampler's first pass: the local sink has applied what the log
 * held at start-up (the runs' counter bases among it), or 5 s have passed. */
static void sampler_wait_ready(void *arg)
{
	struct agent *ag = arg;
	local_sink *sink = atomic_load(&ag->sink);
	if (sink)
		local_sink_catch_up(sink, 5000);
}

/* The local sink's live runs changed: a new run gets its first sample now. */
static void live_changed(void *arg)
{
	struct agent *ag = arg;
	sysmetrics_wake(atomic_load(&ag->sampler));
}

/* Queries go through the one table in queries.c, with the stages running now. */
static int answer_query(void *arg, const uint8_t *query, size_t len, uint32_t uid, bool admin,
                        size_t max_bytes, Trackd__V1__QueryReply **reply, char *err, size_t errlen)
{
	struct agent *ag = arg;
	const struct query_stages st = {.local = atomic_load(&ag->sink),
	                                .wandb = atomic_load(&ag->wandb),
	                                .artifacts = ag->artifacts,
	                                .submit = submit_record,
	                                .submit_arg = ag};
	return queries_answer(&st, query, len, uid, admin, max_bytes, reply, err, errlen);
}

/* Start-up only, before ingest serves: the owner of every run in the local
 * store, the first half of the owner index (owners.h says why). */
static int seed_owner(void *arg, const char *run_dir)
{
	run_owners *owners = arg;
	struct run *r;
	if (local_store_load_run(run_dir, &r) != 0)
		return 0; /* no checkpoint yet: its records are in the log */
	int rv = run_owners_note(owners, r->id, strlen(r->id), r->uid);
	run_free(r);
	if (rv == TRACKD_ETOOBIG && run_owners_refused(owners) == 1)
		log_warn("run owner index full (%zu runs, OWNERS_MAX_RUNS): batches creating runs "
		         "are refused",
		         run_owners_max(owners));
	return rv == TRACKD_ENOMEM ? rv : 0;
}

static int seed_owners(const char *state_dir, run_owners *owners)
{
	char runs_dir[4096];
	int rv = local_store_runs_dir(state_dir, runs_dir, sizeof runs_dir);
	if (!rv)
		rv = local_store_each_run(runs_dir, seed_owner, owners);
	if (rv)
		log_error("cannot read the run owners of the local store in %s: %s", state_dir,
		          trackd_strerror(rv));
	return rv;
}

static void add_status(void *arg, Trackd__V1__StatusReply *st)
{
	struct agent *ag = arg;
	st->state_dir = (char *)ag->state_dir;
	st->has_log_max_bytes = true;
	st->log_max_bytes = atomic_load(&ag->log_max_bytes);
	local_sink *sink = atomic_load(&ag->sink);
	if (!sink)
		return;
	struct local_sink_stats ls;
	local_sink_get_stats(sink, &ls);
	st->has_runs_active = st->has_local_sink_backlog = true;
	st->runs_active = ls.runs_active;
	st->local_sink_backlog = ls.backlog;
	/* ---- wandb sink ---- */
	wandb_sink *wandb = atomic_load(&ag->wandb);
	if (!wandb)
		return;
	struct wandb_sink_stats ws;
	wandb_sink_get_stats(wandb, &ws);
	st->has_wandb_enabled = st->wandb_enabled = true;
#define WB_STAT(field, value) (st->has_wandb_##field = true, st->wandb_##field = (value))
	WB_STAT(requests_ok, ws.requests_ok);
	WB_STAT(requests_failed, ws.requests_failed);
	WB_STAT(runs_retrying, ws.runs_retrying);
	WB_STAT(runs_parked, ws.runs_parked);
	WB_STAT(runs_uploading, ws.runs_uploading);
	WB_STAT(lines_skipped, ws.lines_skipped);
	WB_STAT(bytes_sent, ws.bytes_sent);
	WB_STAT(backlog, ws.backlog);
#undef WB_STAT
}

static void collect(void *arg, struct metrics_writer *w)
{
	struct agent *ag = arg;
	struct collect_sources src = {
	    .version = TRACKD_VERSION,
	    .in = atomic_load(&ag->in),
	    .log = ag->log,
	    .local = atomic_load(&ag->sink),
	    .wandb = atomic_load(&ag->wandb),
	    .sampler = atomic_load(&ag->sampler),
	    .reloads_applied = atomic_load(&ag->reloads_applied),
	    .reloads_rejected = atomic_load(&ag->reloads_rejected),
	};
	collect_metrics(&src, w);
}

/* ---- SIGHUP ------------------------------------------------------------------------ */

static void wandb_options_of(const struct config *cfg, struct wandb_sink_options *wo)
{
	const struct config_wandb *wc = &cfg->sinks.wandb;
	*wo = (struct wandb_sink_options){
	    .state_dir = cfg->state_dir,
	    .version = TRACKD_VERSION,
	    .base_url = wc->base_url,
	    .app_url = wc->app_url,
	    .entity = wc->entity,
	    .api_key_file = wc->api_key_file,
	    .api_key_env = wc->api_key_env,
	    .transmit_interval_ms = (uint32_t)wc->transmit_interval_ms,
	    .heartbeat_interval_ms = (uint32_t)wc->heartbeat_interval_ms,
	    .upsert_debounce_ms = (uint32_t)wc->upsert_debounce_ms,
	    .connect_timeout_ms = (uint32_t)wc->connect_timeout_ms,
	    .request_timeout_ms = (uint32_t)wc->request_timeout_ms,
	    .stall_timeout_ms = (uint32_t)wc->stall_timeout_ms,
	    .retry_min_ms = (uint32_t)wc->retry_min_ms,
	    .retry_max_ms = (uint32_t)wc->retry_max_ms,
	    .retry_after_max_ms = (uint32_t)wc->retry_after_max_ms,
	    .max_request_bytes = wc->max_request_bytes,
	    .max_line_bytes = wc->max_line_bytes,
	    .max_buffer_bytes = wc->max_buffer_bytes,
	    .max_parallel_requests = (uint32_t)wc->max_parallel_requests,
	    .max_parallel_uploads = (uint32_t)wc->max_parallel_uploads,
	    .files_batch_delay_ms = (uint32_t)wc->files_batch_delay_ms,
	    .tls_verify = wc->tls_verify,
	    .ca_file = wc->ca_file,
	    .complete_crashed = wc->complete_crashed,
	    /* Its share of shutdown_timeout; unanswered requests are redone. */
	    .drain_timeout_ms = (uint32_t)(cfg->shutdown_timeout_ms / 4),
	};
}

static struct validate_limits validate_limits_of(const struct config *cfg)
{
	return (struct validate_limits){
	    .max_records_per_batch = cfg->limits.max_records_per_batch,
	    .max_items_per_record = cfg->limits.max_items_per_record,
	    .max_key_bytes = cfg->limits.max_key_bytes,
	    .max_string_bytes = cfg->limits.max_string_bytes,
	    .max_nesting_depth = cfg->limits.max_nesting_depth,
	    .max_list_length = cfg->limits.max_list_length,
	};
}

/* What a reload found: which groups of keys changed, and how each changed key
 * was reported. */
struct reload_plan {
	struct agent *ag;
	const struct config *next;
	bool wandb_changed, limits_changed;
	unsigned applied, restart;
	bool scan_only; /* first pass: classify, log nothing */
};

static bool key_in(const char *key, const char *section)
{
	size_t n = strlen(section);
	return strncmp(key, section, n) == 0 && key[n] == '.';
}

/* Whether a reloadable key cannot be applied now, and why (NULL: it can). */
static const char *cannot_apply(const struct reload_plan *p, const struct config_change *c)
{
	if (!c->reloadable)
		return "needs a restart";
	if (strcmp(c->key, "limits.max_message_bytes") == 0 &&
	    p->next->limits.max_message_bytes > p->ag->started_max_message_bytes)
		return "needs a restart (above the value the agent started with; lower values "
		       "apply at once)";
	if (key_in(c->key, "sinks.wandb") && !atomic_load(&p->ag->wandb))
		return "needs a restart (the wandb sink is not running)";
	return NULL;
}

static int plan_change(void *arg, const struct config_change *c)
{
	struct reload_plan *p = arg;
	const char *why = cannot_apply(p, c);
	if (p->scan_only) {
		if (!why && key_in(c->key, "sinks.wandb"))
			p->wandb_changed = true;
		if (!why && key_in(c->key, "limits"))
			p->limits_changed = true;
		return 0;
	}
	if (why) {
		p->restart++;
		log_warn("reload: %s: %s -> %s: %s; the running value %s stays in force", c->key,
		         c->old_value, c->new_value, why, c->old_value);
		return 0;
	}
	p->applied++;
	log_info("reload: %s: %s -> %s: applied", c->key, c->old_value, c->new_value);
	/* The running configuration takes the value (a restart-only key keeps the
	 * old one, so the next reload reports it again). */
	if (config_copy_key(p->ag->running, p->next, c->key) != 0)
		log_error("reload: %s: out of memory recording the new value", c->key);
	return 0;
}

/* SIGHUP: re-reads the configuration and applies what can change while running.
 * A configuration that does not load, or whose wandb settings cannot be used (a
 * bad key file), is rejected as a whole: nothing changes. systemd hears
 * RELOADING=1 before and READY=1 after, as Type=notify with ExecReload expects. */
static void reload(const struct args *a, struct agent *ag, struct sdnotify *notify)
{
	char msg[256], err[1024];
	struct timespec mono;
	clock_gettime(CLOCK_MONOTONIC, &mono);
	snprintf(
	    msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
	    (unsigned long long)mono.tv_sec * 1000000ULL + (unsigned long long)mono.tv_nsec / 1000);
	sdnotify_send(notify, msg);
	log_info("reload: re-reading %s",
	         a->config_path ? a->config_path : "the defaults (no --config file)");
	struct config next;
	if (load_config(a, &next, err, sizeof err) != 0) {
		atomic_fetch_add(&ag->reloads_rejected, 1);
		log_error("reload rejected: %s; the running configuration stays in force", err);
		sdnotify_send(notify, "READY=1\nSTATUS=ready (reload rejected: see the log)");
		return;
	}
	/* As at start-up: the running state dir is absolute. */
	char *abs_state = realpath(next.state_dir, NULL);
	if (abs_state) {
		free(next.state_dir);
		next.state_dir = abs_state;
	}
	struct reload_plan plan = {.ag = ag, .next = &next, .scan_only = true};
	config_diff(ag->running, &next, plan_change, &plan);

	/* The one step that can still fail, so it goes first. Done at every reload,
	 * changed keys or not: the API key is read again (a rotated key file keeps
	 * its path), with the same checks as at start. */
	wandb_sink *wandb = atomic_load(&ag->wandb);
	if (wandb) {
		struct wandb_sink_options wo;
		bool key_changed = false;
		wandb_options_of(&next, &wo);
		if (wandb_sink_reconfigure(wandb, &wo, &key_changed, err, sizeof err) != 0) {
			atomic_fetch_add(&ag->reloads_rejected, 1);
			log_error(
			    "reload rejected: sinks.wandb: %s; the running configuration, and "
			    "the API key in use, stay in force",
			    err);
			config_fini(&next);
			sdnotify_send(notify,
			              "READY=1\nSTATUS=ready (reload rejected: see the log)");
			return;
		}
		const struct config_wandb *wc = &next.sinks.wandb;
		bool from_file = wc->api_key_file && *wc->api_key_file;
		log_info("reload: sinks.wandb API key (%s %s): re-read: %s",
		         from_file ? "file" : "environment variable",
		         from_file ? wc->api_key_file : wc->api_key_env,
		         key_changed ? "a new key, applied" : "unchanged");
	}
	enum trackd_log_level level;
	if (trackd_log_level_parse(next.log_level, &level) == 0)
		trackd_log_set_level(level);
	ingest *in = atomic_load(&ag->in);
	if (in && plan.limits_changed) {
		uint64_t max = next.limits.max_message_bytes;
		if (max > ag->started_max_message_bytes) /* reported: needs a restart */
			max = ag->running->limits.max_message_bytes;
		struct validate_limits vl = validate_limits_of(&next);
		ingest_set_limits(in, max, &vl);
	}
	txlog_set_max_bytes(ag->log, next.txlog.max_bytes);
	atomic_store(&ag->log_max_bytes, next.txlog.max_bytes);
	blobs_set_limits(ag->blobs, next.blobs.max_file_bytes, next.blobs.max_run_bytes);

	plan.scan_only = false;
	config_diff(ag->running, &next, plan_change, &plan);
	config_fini(&next);
	atomic_fetch_add(&ag->reloads_applied, 1);
	log_info("reload done: %u change(s) applied, %u need a restart", plan.applied,
	         plan.restart);
	snprintf(msg, sizeof msg, "READY=1\nSTATUS=ready (reloaded: %u applied, %u need a restart)",
	         plan.applied, plan.restart);
	sdnotify_send(notify, msg);
}

static void client_disconnected(void *arg)
{
	struct agent *ag = arg;
	local_sink_notify(atomic_load(&ag->sink));
}

static void *stop_deadline_main(void *arg)
{
	uint64_t ms = (uint64_t)(uintptr_t)arg;
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
	                      .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	/* Everything acknowledged is already in the log: exiting now loses nothing
	 * acknowledged, it only skips the final checkpoint (replayed at start). */
	log_error("stop took longer than shutdown_timeout (%llu ms): exiting now",
	          (unsigned long long)ms);
	_exit(1);
	return NULL;
}

/* Bounds the stop: past `ms` the process exits whatever is still running. */
static void start_stop_deadline(uint64_t ms)
{
	pthread_t t;
	if (pthread_create(&t, NULL, stop_deadline_main, (void *)(uintptr_t)ms) == 0)
		pthread_detach(t);
}

/* NULL when every stage that must keep moving has moved within `limit_us`,
 * else the name of one that has not (and in *since_us how long ago it moved).
 * A slow upstream does not count: only the threads that take and store records
 * do. */
static const char *stage_stalled(struct agent *ag, int64_t now, int64_t limit_us, int64_t *since_us)
{
	ingest *in = atomic_load(&ag->in);
	local_sink *sink = atomic_load(&ag->sink);
	if (in && (*since_us = now - ingest_heartbeat_us(in)) >= limit_us)
		return "the ingest worker";
	if (sink && (*since_us = now - local_sink_heartbeat_us(sink)) >= limit_us)
		return "the local sink";
	return NULL;
}

/* The main thread: signals, the listener check, systemd's watchdog and status.
 * Returns on SIGTERM/SIGINT. */
/* Relistening failed this many times in a row (one listener check apart): the
 * agent stops with exit status 1, so that systemd (Restart=on-failure) starts a
 * fresh one, rather than run on unreachable. */
#define RELISTEN_FAILURES_MAX 3

/* Returns 0 when asked to stop (signal, idle exit), 1 when it gave up. */

/* The lowest position of the log's sink cursors (every record up to it is
 * applied by every sink); UINT64_MAX with none. */
static uint64_t lowest_cursor(txlog *log)
{
	struct txlog_cursor_info info[16];
	size_t n = txlog_cursors_info(log, info, 16);
	uint64_t low = UINT64_MAX;
	if (n > 16)
		return 0; /* more than we can see: nothing is known */
	for (size_t i = 0; i < n; i++)
		if (info[i].position < low)
			low = info[i].position;
	return low;
}

static int main_loop(const struct args *a, struct agent *ag, struct sdnotify *notify)
{
	int relisten_failures = 0;
	const int64_t listener_check_us = 2000000;
	int64_t watchdog_us = (int64_t)sdnotify_watchdog_usec();
	/* Ping at half the interval, as systemd asks; check the listener every 2 s. */
	int64_t tick_us = watchdog_us ? watchdog_us / 2 : listener_check_us;
	if (tick_us > listener_check_us)
		tick_us = listener_check_us;
	if (ag->user && tick_us > 250000)
		tick_us = 250000; /* the idle check's resolution */
	if (tick_us < 10000)
		tick_us = 10000;
	int64_t next_listener_check = clock_mono_us() + listener_check_us;
	bool stall_reported = false;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	for (;;) {
		struct timespec tick = {.tv_sec = tick_us / 1000000,
		                        .tv_nsec = (tick_us % 1000000) * 1000};
		int sig = sigtimedwait(&set, NULL, &tick);
		if (sig == SIGTERM || sig == SIGINT) {
			log_info("stopping (%s): answering received requests, syncing the log",
			         sig == SIGTERM ? "SIGTERM" : "SIGINT");
			return 0;
		}
		if (sig == SIGHUP)
			reload(a, ag, notify);
		int64_t now = clock_mono_us();
		if (watchdog_us) {
			int64_t since_us = 0;
			const char *stalled = stage_stalled(ag, now, watchdog_us, &since_us);
			if (!stalled) {
				char msg[256];
				struct ingest_stats is;
				ingest_get_stats(atomic_load(&ag->in), &is);
				snprintf(msg, sizeof msg,
				         "WATCHDOG=1\nSTATUS=%llu clients, %llu batches stored",
				         (unsigned long long)is.clients_connected,
				         (unsigned long long)is.batches_appended);
				sdnotify_send(notify, msg);
				stall_reported = false;
			} else if (!stall_reported) {
				log_error(
				    "a stage stopped moving (%s, %lld ms since its last loop): "
				    "watchdog pings withheld so systemd restarts the agent",
				    stalled, (long long)(since_us / 1000));
				stall_reported = true;
			}
		}
		if (now >= next_listener_check) {
			if (ingest_check_listener(atomic_load(&ag->in)) == 0) {
				relisten_failures = 0;
			} else if (++relisten_failures < RELISTEN_FAILURES_MAX) {
				log_error(
				    "cannot listen anew; clients cannot connect (trying again)");
			} else {
				log_error(
				    "cannot listen anew %d times in a row: stopping so that a "
				    "fresh agent starts (systemd restarts it on failure)",
				    relisten_failures);
				return 1;
			}
			next_listener_check = now + listener_check_us;
		}
		/* Blobs no run links any more, past their grace counted back from
		 * when every sink had applied every record (a sink behind has not
		 * linked or held its blobs yet: blobs.h): a slow directory walk,
		 * so once a minute, on this thread (it does no other I/O). */
		if (now >= ag->next_sweep_us) {
			blobs_marks_add(&ag->sweep_marks, time(NULL), txlog_last_index(ag->log));
			if (ag->next_sweep_us) {
				size_t swept = blobs_sweep(
				    ag->blobs, (int64_t)(ag->running->blobs.grace_ms / 1000),
				    blobs_marks_applied_before(&ag->sweep_marks,
				                               lowest_cursor(ag->log)));
				if (swept)
					log_info("blob store: %zu unreferenced file(s) removed",
					         swept);
				txlog_set_external_bytes(ag->log, blobs_disk_bytes(ag->blobs));
			}
			ag->next_sweep_us = now + 60 * 1000000LL;
		}
		ingest *in = atomic_load(&ag->in);
		if (ag->user && user_mode_idle_over(ag->user,
		                                    user_mode_busy(in, atomic_load(&ag->sink),
		                                                   atomic_load(&ag->wandb)),
		                                    in ? ingest_client_activity_us(in) : 0, now)) {
			log_info("stopping: idle for idle_exit with nothing pending");
			return 0;
		}
	}
}

static int run(const struct args *a, struct config *cfg)
{
	struct agent ag = {0};
	local_sink *sink = NULL;
	wandb_sink *wandb = NULL;
	metrics *mx = NULL;
	sysmetrics *sampler = NULL;
	run_owners *owners = NULL;
	struct sdnotify notify;
	if (sdnotify_open(&notify) != 0)
		log_warn("NOTIFY_SOCKET is malformed; systemd will not hear from the agent");
	int rv;
	sessions *sess = NULL;
	txlog *log = NULL;
	blobs *blobstore = NULL;
	artifacts *artstore = NULL;
	ingest *in = NULL;
	int exit_code = 1;
	struct user_mode um = {.socket_lock_fd = -1, .state_lock_fd = -1};
	if (a->user) {
		enum user_mode_claim claim = user_mode_claim(&um, cfg);
		if (claim != USER_MODE_CLAIMED) {
			sdnotify_close(&notify);
			return claim == USER_MODE_SERVED ? 0 : 1;
		}
		ag.user = &um;
	}

	if ((rv = mkdir_parents(cfg->state_dir, 0700)) != 0) {
		log_error("cannot create state dir %s: %s", cfg->state_dir, trackd_strerror(rv));
		sdnotify_close(&notify);
		user_mode_release(&um);
		return 1;
	}
	/* Before anything reads or writes the store (the private agent took the
	 * same lock in user_mode_claim). */
	int state_lock_fd = -1;
	if (!a->user) {
		long holder;
		rv = state_dir_lock(cfg->state_dir, &state_lock_fd, &holder);
		if (rv == TRACKD_EEXIST) {
			char pid[64] = "pid unknown: it has not written it yet";
			if (holder)
				snprintf(pid, sizeof pid, "pid %ld", holder);
			log_error("the state dir %s is in use by another agent (%s, holding "
			          "%s/" STATE_LOCK_FILE
			          "); two agents on one store lose records: refusing to start",
			          cfg->state_dir, pid, cfg->state_dir);
		}
		if (rv != 0) {
			sdnotify_close(&notify);
			return 1;
		}
	}
	if (state_dir_make_private(cfg->state_dir) != 0) {
		log_error("the state dir %s cannot be made private to uid %lu (see above); "
		          "refusing to start rather than leave runs readable by others",
		          cfg->state_dir, (unsigned long)geteuid());
		goto out;
	}
	/* Absolute from here on: run dirs are reported to clients in another cwd. */
	char *abs_state = realpath(cfg->state_dir, NULL);
	if (abs_state) {
		free(cfg->state_dir);
		cfg->state_dir = abs_state;
	}
	if ((rv = sessions_new(cfg->limits.max_sessions, &sess)) != 0 ||
	    (rv = run_owners_new(OWNERS_MAX_RUNS, &owners)) != 0 ||
	    (rv = seed_owners(cfg->state_dir, owners)) != 0)
		goto out;
	struct ingest_tables tables = {.sessions = sess, .owners = owners};

	char log_dir[4096];
	if (snprintf(log_dir, sizeof log_dir, "%s/log", cfg->state_dir) >= (int)sizeof log_dir) {
		log_error("state dir path too long: %s", cfg->state_dir);
		goto out;
	}
	struct txlog_options to = {
	    .dir = log_dir,
	    .fsync = fsync_policy(cfg->txlog.fsync),
	    .fsync_interval_ms = (uint32_t)cfg->txlog.fsync_interval_ms,
	    .segment_bytes = cfg->txlog.segment_bytes,
	    .max_bytes = cfg->txlog.max_bytes,
	    /* A stored LogEntry is the request's batch plus a small header. */
	    .max_record_bytes = (uint32_t)(cfg->limits.max_message_bytes + 64),
	    .on_record = ingest_recover_record,
	    .on_record_arg = &tables,
	};
	if ((rv = txlog_open(&to, &log)) != 0) {
		log_error("cannot open the transaction log in %s: %s", log_dir,
		          trackd_strerror(rv));
		goto out;
	}
	struct txlog_stats ts;
	txlog_stats(log, &ts);
	log_info(
	    "log recovered: records %llu..%llu, %llu quarantined, %llu bytes of torn tail cut, "
	    "%zu sessions, %zu run owners",
	    (unsigned long long)ts.first_index, (unsigned long long)ts.last_index,
	    (unsigned long long)ts.records_quarantined, (unsigned long long)ts.bytes_truncated,
	    sessions_count(sess), run_owners_count(owners));

	struct blobs_options bo = {.state_dir = cfg->state_dir,
	                           .max_file_bytes = cfg->blobs.max_file_bytes,
	                           .max_run_bytes = cfg->blobs.max_run_bytes};
	if ((rv = blobs_open(&bo, &blobstore)) != 0) {
		log_error("cannot open the blob store in %s/blobs: %s", cfg->state_dir,
		          trackd_strerror(rv));
		goto out;
	}
	txlog_set_external_bytes(log, blobs_disk_bytes(blobstore));
	struct artifacts_options ao = {.state_dir = cfg->state_dir, .blobs = blobstore};
	if ((rv = artifacts_open(&ao, &artstore)) != 0) {
		log_error("cannot open the artifact store in %s/artifacts: %s", cfg->state_dir,
		          trackd_strerror(rv));
		goto out;
	}

	ag.state_dir = cfg->state_dir;
	ag.log_max_bytes = cfg->txlog.max_bytes;
	ag.log = log;
	ag.blobs = blobstore;
	ag.artifacts = artstore;
	ag.running = cfg;
	ag.started_max_message_bytes = cfg->limits.max_message_bytes;
	/* Early, so a scrape sees start-up; stages appear in it as they start. */
	if (cfg->metrics_listen[0]) {
		struct metrics_options mo = {
		    .listen = cfg->metrics_listen, .collect = collect, .collect_arg = &ag};
		if ((rv = metrics_start(&mo, &mx)) != 0) {
			log_error("cannot serve metrics on %s (metrics_listen): %s",
			          cfg->metrics_listen, trackd_strerror(rv));
			goto out;
		}
	}
	struct local_sink_options so = {
	    .state_dir = cfg->state_dir,
	    .log = log,
	    .max_record_bytes = to.max_record_bytes,
	    .blobs = blobstore,
	    .artifacts = artstore,
	    .submit = submit_record,
	    .submit_arg = &ag,
	    .live_changed = live_changed,
	};
	if ((rv = local_sink_start(&so, &sink)) != 0) {
		log_error("cannot start the local sink in %s: %s", cfg->state_dir,
		          trackd_strerror(rv));
		goto out;
	}
	atomic_store(&ag.sink, sink);

	/* ---- wandb sink: after the local sink, stopped before it ---- */
	const struct config_wandb *wc = &cfg->sinks.wandb;
	if (wc->enabled) {
		struct wandb_sink_options wo;
		wandb_options_of(cfg, &wo);
		wo.log = log;
		wo.blobs = blobstore;
		if ((rv = wandb_sink_start(&wo, &wandb)) != 0) {
			log_error("cannot start the wandb sink: %s (see above)",
			          trackd_strerror(rv));
			goto out;
		}
		atomic_store(&ag.wandb, wandb);
	} else if (txlog_cursor_remove(log, "wandb") == 0) {
		/* A cursor left by an earlier configuration would keep every segment. */
		log_warn("sinks.wandb is disabled: its log cursor was removed; runs not yet "
		         "uploaded will not be");
	}
	/* ---- end wandb ---- */

	struct ingest_options io = {
	    .url = cfg->listen,
	    .socket_mode = cfg->socket_mode,
	    .contexts = (uint32_t)cfg->ingest_contexts,
	    .max_message_bytes = cfg->limits.max_message_bytes,
	    .limits = validate_limits_of(cfg),
	    .sync_before_ack = cfg->txlog.fsync == CONFIG_FSYNC_ALWAYS,
	    .version = TRACKD_VERSION,
	    .log = log,
	    .tables = &tables,
	    .blobs = blobstore,
	    .group = cfg->access.group,
	    .admin_group = cfg->access.admin_group,
	    .query = answer_query,
	    .status = add_status,
	    .disconnected = client_disconnected,
	    .hook_arg = &ag,
	};
	if ((rv = ingest_start(&io, &in)) != 0) {
		if (rv == TRACKD_EEXIST)
			log_error("another agent already listens on %s", cfg->listen);
		goto out;
	}
	atomic_store(&ag.in, in);
	log_info("ready: listening on %s, state dir %s, fsync %s", cfg->listen, cfg->state_dir,
	         cfg->txlog.fsync == CONFIG_FSYNC_ALWAYS  ? "always"
	         : cfg->txlog.fsync == CONFIG_FSYNC_NEVER ? "never"
	                                                  : "interval");

	if (cfg->system_metrics.enabled) {
		struct sysmetrics_options smo = {
		    .interval_ms = (uint32_t)cfg->system_metrics.interval_ms,
		    .nvml_library = cfg->system_metrics.nvml_library,
		    .cgroup_root = cfg->system_metrics.cgroup_root,
		    .state_dir = cfg->state_dir,
		    .live_runs = live_runs,
		    .submit = submit_record,
		    .wait_ready = sampler_wait_ready,
		    .arg = &ag,
		};
		/* Without a sampler the agent still does its job: said, not fatal. */
		if ((rv = sysmetrics_new(&smo, &sampler)) != 0 ||
		    (rv = sysmetrics_start(sampler)) != 0) {
			log_error("system metrics are off: cannot start the sampler: %s",
			          trackd_strerror(rv));
			sysmetrics_free(sampler);
			sampler = NULL;
		}
		atomic_store(&ag.sampler, sampler);
	}

	sdnotify_send(&notify, "READY=1\nSTATUS=ready");
	int gave_up = main_loop(a, &ag, &notify);
	sdnotify_send(&notify, "STOPPING=1\nSTATUS=stopping: answering received requests");
	start_stop_deadline(cfg->shutdown_timeout_ms);
	/* The sampler's thread first: it submits through ingest. The sampler
	 * itself stays until the local sink is gone, which may still wake it. */
	sysmetrics_stop(sampler);
	ingest_close(in);
	ingest_stop(in);
	exit_code = gave_up;

out:
	/* First: the collector reads every stage below. */
	metrics_free(mx);
	sysmetrics_stop(sampler);
	/* The sink stops after ingest (it may still submit crash marks until then)
	 * and before the log closes (its final checkpoint moves its cursor). The
	 * wandb sink stops first: it reads what the local sink also reads. */
	atomic_store(&ag.wandb, NULL);
	wandb_sink_stop(wandb);
	wandb_sink_free(wandb);
	local_sink_close(sink);
	local_sink_stop(sink);
	atomic_store(&ag.in, NULL);
	ingest_free(in);
	atomic_store(&ag.sink, NULL);
	local_sink_free(sink);
	atomic_store(&ag.sampler, NULL);
	sysmetrics_free(sampler);
	if (log && (rv = txlog_close(log)) != 0) {
		log_error("final sync of the log failed: %s", trackd_strerror(rv));
		exit_code = 1;
	}
	artifacts_free(artstore);
	blobs_free(blobstore);
	sessions_free(sess);
	run_owners_free(owners);
	sdnotify_close(&notify);
	user_mode_release(&um);
	if (state_lock_fd >= 0)
		close(state_lock_fd);
	if (exit_code == 0)
		log_info("stopped cleanly");
	return exit_code;
}

int main(int argc, char **argv)
{
	/* Signals are taken synchronously by the main thread: block them before any
	 * other thread (NNG's, the log flusher) exists, so every thread inherits it. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Everything the agent creates is its own user's alone (state_dir.h): the
	 * socket's mode is set explicitly, the store's files inherit this. */
	umask(077);
	/* Request and batch buffers come and go in MiB sizes. glibc raises its mmap
	 * threshold after each such buffer is freed, and from then on keeps them in
	 * the heap: a burst leaves the agent's RSS tens of MiB higher for good. A
	 * fixed threshold keeps them mmapped and returned on free. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);

	struct args a = {0};
	if (parse_args(argc, argv, &a) != 0)
		return 2;
	struct config cfg;
	char err[4096]; /* room for the config file's errors, one per line */
	if (load_config(&a, &cfg, err, sizeof err) != 0) {
		fprintf(stderr, "trackd: %s\n", err);
		return 2;
	}
	if (a.check_config) {
		config_print(&cfg, stdout);
		config_fini(&cfg);
		return 0;
	}
	enum trackd_log_level level;
	if (trackd_log_level_parse(cfg.log_level, &level) == 0)
		trackd_log_set_level(level);
	int rc = run(&a, &cfg);
	config_fini(&cfg);
	return rc;
}
