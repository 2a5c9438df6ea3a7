/*
 * wandb_sink.h — the `wandb` sink: a second cursor over the transaction log that
 * streams every online run to a Weights & Biases backend (libcurl), with the
 * protocol and retry policy of shared/design/WANDB-UPSTREAM.md.
 *
 * Per run
 *   The sink applies the log to runs with agent/runs (run.h), exactly as the
 *   local sink does: the same log gives the same history lines, `_step`s,
 *   console lines and summary. It sends `UpsertBucket` first (and again, at
 *   most every `upsert_debounce`, when name/tags/notes/group/config change,
 *   and before the final request), then `file_stream` requests: history and
 *   console lines with their line offsets, the whole summary at offset 0, and
 *   on the last one `complete` + `exitcode` (finished → 0, failed → its code;
 *   crashed/killed → no `complete`, the backend decides when heartbeats stop,
 *   unless `complete_crashed`). A run whose end is settled later (run.h: the
 *   process's own exit arrives after the crash mark, from its spool) gets a
 *   final request again with the real `complete` + `exitcode`: a run not yet
 *   completed upstream is completed with it; one already completed as crashed
 *   (`complete_crashed`, sync) is sent `complete` again with the new code —
 *   file_stream accepts requests after `complete`, and the last `exitcode`
 *   is the run's (WANDB-UPSTREAM.md: complete/exitcode ride the last request;
 *   a resumed run streams again). One request per run per `transmit_interval`
 *   (a backlog drains back to back, a run that ended flushes at once), at most
 *   `max_request_bytes`; lines over `max_line_bytes` are skipped and counted.
 *   A running run with nothing to send sends `{}` every `heartbeat_interval`.
 *   Offline runs (RunStart.mode = offline) are not uploaded as they run:
 *   `trackctl sync` uploads them later from the local store (sync.h). System
 *   events (wandb-events.jsonl) are not produced: no record carries them yet.
 *   A "stopped" answer (Stop pressed in the UI) is logged and shown by the
 *   "wandb" query; the agent has no channel to stop the training process.
 *
 * Identity: runs are keyed by run id (as the local sink routes them). The
 *   upstream entity is the run's own, except when it is the owner's login name
 *   or uid<N> — what libtrackd fills in when the user gave none, meaningless to
 *   W&B — then `entity` from the configuration, else the API key's default
 *   entity (UpsertBucket without one; the answer names it). Project: the
 *   run's. The display name is always sent: the user's, else the one
 *   run_new derives from the run id (run_default_name), the same the local
 *   sink shows; updates of the name, tags or notes (RunRename records, from
 *   the client, `trackctl rename`/`update` or the Api), config updates and a
 *   resume's start send it again, debounced. Tags and notes go with every
 *   UpsertBucket that has them; empty ones only after an update that cleared
 *   them (until acknowledged), so that it clears them upstream too while a
 *   run without them never wipes what was set in the W&B app.
 *   URLs: {app_url}/{entity}/{project}/runs/{id} and {app_url}/{entity}/
 *   {project}, known once the backend answered the first UpsertBucket; logged
 *   then, and returned by the "wandb" query and wandb_sink_run_upload. app_url
 *   is `app_url` from the configuration, else derived from base_url as the
 *   official client does (wb_derive_app_url).
 *
 * Offsets: a line's offset is base + its index in the run's derived file −
 *   the lines skipped before it. base is the line count the backend reported
 *   (historyLineCount / logLineCount) at this sink's first UpsertBucket of the
 *   run, made durable before any line is sent — 0 for a new run; a run resumed
 *   from another machine continues after the lines the backend holds.
 *
 * Exactly once over at-least-once HTTP
 *   A run's lines stay in memory until acknowledged (and are re-sent, with the
 *   same offsets, until they are; re-sending is idempotent). When a request
 *   carries everything the run has produced (lines, summary, complete) and no
 *   UpsertBucket is pending, it carries a snapshot of the run (RunSnapshot +
 *   bases + skipped counts); when the backend acknowledges it, the snapshot is
 *   written to `<state>/sinks/wandb/runs/<id>.state` (store.h). A run that has
 *   nothing left to send is snapshotted at the next checkpoint.
 *   Each run has a `hold`: the log index just before the first record it
 *   applied since its last durable snapshot. The cursor rule: the sink's txlog
 *   cursor is committed (every second) at min(last index read, every hold), so
 *   segments are kept until every run has its records acknowledged and
 *   snapshotted. After a restart (kill -9 included) reading resumes after the
 *   cursor; records at or below a run's snapshot index are skipped for it, so
 *   exactly the unacknowledged lines are derived again, with the same offsets.
 *
 * Run files (run_files_up.c, WANDB-FEATURES.md §2.1)
 *   Media and saved files a record names (run_record_files, the local sink's
 *   rule) are held in the blob store for the sink (blobs_hold, holder
 *   "wandb-<run>") and WANTed in the run's file journal (file_journal.h,
 *   runs/<name>.files) as the record is applied; at the run's end config.yaml
 *   and wandb-summary.json are written under files/wandb-<run>/ and WANTed
 *   too. Names go to CreateRunFiles in batches (WB_RUN_FILES_BATCH; new files
 *   wait `files_batch_delay`, an ended run's go at once; one call in flight
 *   per run), then each file is PUT to its signed URL with the batch's
 *   uploadHeaders (`max_parallel_uploads` at once, all runs; read from the
 *   held blob in curl's pieces). A 2xx is journalled (PUT) and the hold
 *   dropped; the next file_stream request lists the name in `uploaded`, and
 *   its acknowledgement is journalled (LISTED). Content unchanged since its
 *   last PUT (same MD5) is not PUT again. Retries: no answer, 408, 429, 5xx
 *   but 501 → the file's own backoff, then a new URL; 403 → a new URL at once;
 *   a permanent answer or a lost blob gives that content up (files_failed).
 *   The journal is the durable state, independent of the run's snapshot:
 *   after a restart an ended run with files left is loaded again, replayed
 *   records add nothing (WANT carries the record's place in the log), and
 *   only the PUT whose 2xx came just before a kill -9 can be repeated.
 *   A run stays in memory until its files are up and listed; then its holds
 *   go (blobs_release_all). A sync job (sync.h) uploads the files of the local
 *   run dir's files.jsonl, config.yaml, wandb-summary.json, and copies of its
 *   output.log and wandb-metadata.json; it is synced once they are up and
 *   listed. An online run's wandb-metadata.json is made from its records
 *   (run_metadata.h) and PUT when it changes; its output.log is not PUT as a
 *   file: its lines go up through file_stream's `output.log`, which the
 *   backend keeps as the run's output.log.
 *
 * Failures
 *   Every request has a connect timeout, a total timeout and a stall limit
 *   (under 64 B/s for `stall_timeout`). Retryable failures (no response, 408,
 *   429, 5xx but 501, any other non-listed status) back off per run:
 *   min(retry_max, retry_min·2^attempt)·(1 + U[0, 0.25]); a Retry-After
 *   (seconds or HTTP date, at most `retry_after_max`) wins; a 429's also holds
 *   every run, as does `RateLimit-Remaining: 0` until `RateLimit-Reset`.
 *   Attempts and elapsed time are unbounded: nothing is dropped for either.
 *   Permanent failures (400 401 403 404 409 410 413 422 501 — 409 is retried
 *   for UpsertBucket — and GraphQL errors) park the run: its buffered lines
 *   are dropped, its records are skipped (its hold keeps them in the log), and
 *   `retry` (wandb_sink_query_retry) or an agent restart re-reads the log for it.
 *   Other runs are unaffected: each run has at most one request in flight,
 *   `max_parallel_requests` are in flight at once (curl multi, keep-alive).
 *
 * Memory: the lines not yet acknowledged are bounded by `max_buffer_bytes`.
 *   Past it, runs that are waiting to retry are evicted like parked runs
 *   (re-read from the log when their retry time comes), and if none is, the
 *   sink stops reading the log (every run then sends what it has without
 *   waiting for its interval) until acknowledgements make room: the log keeps
 *   the backlog. Re-reading means the sink's one log reader goes back to the
 *   evicted run's hold; every other run skips what it already applied. A
 *   parked run keeps its segments on disk until it is retried: with a disk
 *   budget (txlog.max_bytes) a long-parked run ends in refused appends, so
 *   parking is logged as an error and counted in status.
 *
 * Secrets: the API key comes from `api_key_file` (refused when the file is
 *   accessible by group or others, or is not a regular file) or the variable
 *   named by `api_key_env`; it is sent only in the Authorization header and
 *   never logged or returned by queries.
 *
 * Threading: one sink thread does everything (log reading, curl multi,
 * files). the queries and wandb_sink_get_stats may be called from any
 * thread (they take the sink's mutex, which the sink thread releases while it
 * waits on the network). Lifecycle: start → close (stop reading and sending;
 * in-flight requests get until `drain_timeout_ms`) → stop (final checkpoint,
 * join) → free. Ownership: `log` is borrowed and must outlive the sink.
 * Errors: trackd_err values; start fails with TRACKD_EPERM for a bad key
 * file, TRACKD_EINVAL for a missing key or bad option (logged with the reason).
 */
#ifndef TRACKD_SINKS_WANDB_H
#define TRACKD_SINKS_WANDB_H

#include "buf.h"
#include "txlog.h"

#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct wandb_sink wandb_sink;

struct wandb_sink_options {
	const char *state_dir; /* the sink keeps <state_dir>/sinks/wandb/ */
	txlog *log;
	const char *version;  /* the agent's, for User-Agent and telemetry */
	const char *base_url; /* http(s)://… */
	const char *app_url;  /* "" or NULL: derived from base_url */
	const char *entity;   /* "" or NULL: the run's, else the key's default */
	const char *api_key_file;
	const char *api_key_env;
	uint32_t transmit_interval_ms;
	uint32_t heartbeat_interval_ms;
	uint32_t upsert_debounce_ms;
	uint32_t connect_timeout_ms;
	uint32_t request_timeout_ms;
	uint32_t stall_timeout_ms;
	uint32_t retry_min_ms, retry_max_ms, retry_after_max_ms;
	uint64_t max_request_bytes, max_line_bytes, max_buffer_bytes;
	uint32_t max_parallel_requests;
	uint32_t max_parallel_uploads; /* run file PUTs in flight; 0: 4 */
	uint32_t files_batch_delay_ms; /* CreateRunFiles batching delay (reloadable) */
	struct blobs *blobs;           /* borrowed; NULL: no media or saved files go up */
	bool tls_verify;
	const char *ca_file; /* "" or NULL: the system's */
	bool complete_crashed;
	uint32_t checkpoint_interval_ms; /* 0: 1000 */
	uint32_t drain_timeout_ms;       /* 0: 2000 */
};

struct wandb_sink_stats {
	uint64_t requests_ok, requests_failed;
	uint64_t runs_retrying, runs_parked, runs_uploading;
	uint64_t lines_skipped, bytes_sent;
	uint64_t processed_index, committed_index, backlog;
	uint64_t buffered_bytes;
	uint64_t requests_retried; /* failed attempts that will be tried again */
	uint64_t lines_sent;       /* history + console lines acknowledged */
	uint64_t runs_finished;    /* runs whose end the backend acknowledged */
	uint64_t files_uploaded;   /* run files PUT (2xx) */
	uint64_t files_failed;     /* run files given up (a permanent answer, blob gone) */
	uint64_t file_bytes_sent;  /* bytes of those PUTs */
};

int wandb_sink_start(const struct wandb_sink_options *opts, wandb_sink **out);
void wandb_sink_close(wandb_sink *s);
void wandb_sink_stop(wandb_sink *s);
void wandb_sink_free(wandb_sink *s);

void wandb_sink_get_stats(wandb_sink *s, struct wandb_sink_stats *out);

/* Applies new connection settings to a running sink (SIGHUP reload): base_url,
 * app_url, entity, the API key (api_key_file / api_key_env, read again now),
 * ca_file, tls_verify, the intervals, timeouts and retry bounds,
 * complete_crashed. Other fields of `opts` are ignored (sizes and parallelism
 * are fixed at start). Everything is prepared first: on an error (a bad URL, an
 * unreadable or too open key file; written to err, never the key) nothing
 * changes. Requests in flight finish with the old settings. A new base_url is
 * taken as the same backend at a new address: runs already begun continue
 * there at their offsets, and waits the old address imposed (backoff,
 * Retry-After, rate limits) are dropped. `opts` is
 * borrowed for the call only. *key_changed (may be NULL) tells whether the key
 * now in force differs from the one before. Safe from any thread but the
 * sink's. */
int wandb_sink_reconfigure(wandb_sink *s, const struct wandb_sink_options *opts, bool *key_changed,
                           char *err, size_t errlen);

/* The sink's queries (agent/cmd/queries.c routes them here), each with its
 * typed reply in *out (malloc'd throughout: the caller frees it with its
 * free_unpacked, whatever the result). A peer that is not `admin` sees and
 * retries only runs of its own `uid`.
 *   status (Query.wandb): WandbStatusReply: the counters, and every run of the
 *     peer's that the sink holds in memory (running, recently ended, parked,
 *     evicted, offline), its state one of waiting, uploading, retrying, done,
 *     parked, evicted, offline;
 *   retry (ref = "id", "entity/project/id", or NULL/"" for every parked run):
 *     RetryReply — parked and evicted runs are re-read from the log and runs
 *     waiting to retry retry now.
 * Returns 0, or a TRACKD__V1__ERROR_CODE__* (> 0) with a message in err. */
int wandb_sink_query_status(wandb_sink *s, uint32_t uid, bool admin,
                            Trackd__V1__WandbStatusReply **out, char *err, size_t errlen);
int wandb_sink_query_retry(wandb_sink *s, const char *ref, uint32_t uid, bool admin,
                           Trackd__V1__RetryReply **out, char *err, size_t errlen);

/* What the sink knows of run `run_id` (no access check: the caller answers for
 * a peer allowed to see the run), typed, in *out (malloc'd; the caller frees it
 * with free_unpacked): sink "wandb", state S, run_url U, project_url P,
 * last_error E. S is a status query state, or "pending" when the sink has not reached the
 * run yet (nothing in memory or on disk); U and P are "" until the backend
 * answered the run's first UpsertBucket. Runs not in memory are answered
 * from their durable state (done or offline). Returns 0 or a trackd_err. */
int wandb_sink_run_upload(wandb_sink *s, const char *run_id, Trackd__V1__UploadInfo **out);

/* `trackctl sync` (sync.h): uploads an offline run later from the local store.
 * The run as the local sink found it for this requester (local_sink_locate):
 * its directory and path, whether it is offline and still running, its owner. */
struct wandb_sync_target {
	const char *dir, *path;
	bool offline, running;
	uint32_t owner;
};
/* The run must be offline, ended (for a start) and the requester's own unless
 * `admin`.
 *   is_start (Query.sync: ref, force): starts the run's sync job, or joins the one
 *     in progress, or retries a parked one; a synced run whose local store has
 *     not changed since is not sent again unless `force` (from offset 0).
 *   !is_start (Query.sync_status: ref): only reports.
 * Both answer a SyncProgress in *out (malloc'd throughout), state one of
 *   waiting (the local store's checkpoint of the run's end is pending),
 *   uploading, retrying, parked (a permanent error: last_error says which),
 *   synced, idle (no job: none was started, or the agent restarted since); a
 *   run answered from disk has only id, path, state, rows, rows_total, bytes,
 *   bytes_total and already (true).
 * Returns 0, or a TRACKD__V1__ERROR_CODE__* (> 0) with a message in err. */
int wandb_sink_sync(wandb_sink *s, bool is_start, bool force, const char *ref,
                    const struct wandb_sync_target *t, uint32_t uid, bool admin,
                    Trackd__V1__SyncProgress **out, char *err, size_t errlen);

#endif
