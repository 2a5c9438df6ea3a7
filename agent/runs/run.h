/*
 * run.h — W&B run semantics, applied to the record stream in log order.
 *
 * A `struct run` is what a sink knows about one run. run_apply() takes one
 * record (with where it came from) and updates the run deterministically — the
 * result depends only on the log, never on when or by whom it is replayed, so
 * every sink (local files, W&B upload) derives the same rows:
 *
 *   history  log(row, step, commit): rows accumulate into the pending step;
 *            a commit (or a larger explicit step) emits the pending row as one
 *            JSON line stamped with `_step`, `_runtime` (seconds since the run's
 *            first start, client clock) and `_timestamp` (Unix seconds at log()
 *            time; an imported row's own HistoryRow.timestamp / runtime
 *            instead when it gives them); an explicit step lower than the
 *            current one is dropped and counted (rows_rejected). Nested maps
 *            stay nested.
 *   summary  last value per top-level key, or min/max/mean/none per
 *            define_metric; explicit summary updates set or remove keys;
 *            `_step`, `_runtime`, `_timestamp` follow the last row.
 *   config   shallow updates from the start record and config updates.
 *   events   a SystemStats record (the agent's sampler) while the run is
 *            running becomes one W&B wandb-events.jsonl line: `_wandb: true`,
 *            `_timestamp` (the sample's time), `_runtime` (since the run's
 *            start), then `system.<key>` per item; a sample taken after
 *            the run's end (its time past end_time) is dropped.
 *   console  each line becomes `YYYY-MM-DDTHH:MM:SS.ffffff text` (UTC), stderr
 *            lines prefixed `ERROR `.
 *   state    running while any attached process (pid) has not ended; when the
 *            last one ends the run takes the worst outcome of its processes:
 *            crashed > killed > failed > finished. A process the agent marked
 *            crashed (it vanished) whose own exit record comes later (delivered
 *            from the client's spool after an agent outage) is settled by it:
 *            the process said how it ended, so its crash no longer counts and
 *            an ended run takes the outcome it would have had (fx->settled).
 *            A crash mark for a process that already sent its exit is ignored.
 *            A client exit names its process in RunExit.pid (the sender of a
 *            spooled record is whoever delivered it); without one, the sender.
 *            The deliverer, attached by the replayed records it sent (not by a
 *            start of its own), is detached by such an exit: it ran nothing.
 *            An imported run (RunStart.imported) whose source has no exit ends
 *            by the importer's own RunExit{EXIT_CRASHED} at its client time.
 *   metadata the last RunMetadata (agent) and RunEnvironment (client) are
 *            kept for wandb-metadata.json (run_metadata.h).
 *
 * Output goes to the caller's buffers (history lines, console lines) and flags
 * (what whole files changed). A run is snapshotted to / restored from the
 * protobuf RunSnapshot, which carries `last_index` for exactly-once replay.
 *
 * Not thread-safe: a run belongs to one sink thread. Strings are copied.
 */
#ifndef TRACKD_RUNS_RUN_H
#define TRACKD_RUNS_RUN_H

#include "buf.h"
#include "vtree.h"

#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

#define RUN_MAX_ATTACHED 64   /* processes attached to one run at a time */
#define RUN_MAX_METRICS  1024 /* define_metric entries per run */
/* Counter bases of the system-metrics sampler kept per run: network sent and
 * received, in and out of two block devices (the state dir's and the run's
 * working directory's), with room to spare; longer keys are not kept. */
#define RUN_MAX_COUNTER_BASES 8
#define RUN_COUNTER_KEY_BYTES 80
#define RUN_BOOT_ID_BYTES     40

enum run_state { RUN_RUNNING, RUN_FINISHED, RUN_FAILED, RUN_KILLED, RUN_CRASHED };

struct run_attached {
	int32_t pid;
	uint64_t start_ticks; /* /proc/<pid>/stat starttime when first seen; 0 unknown */
	bool done;
	bool crashed;    /* ended by the agent's crash mark; its own exit may still settle it */
	bool by_records; /* attached by logging, without a start: maybe a spool's deliverer */
};

struct run_counter_base {
	char key[RUN_COUNTER_KEY_BYTES];
	uint64_t value;
};

struct run_metric {
	char *name;
	Trackd__V1__MetricSummary summary;
	double sum;
	uint64_t count;
};

struct run {
	char *id, *entity, *project, *display_name, *notes, *group, *job_type, *host;
	char **tags;
	size_t n_tags;
	char *dir_name; /* run-YYYYMMDD_HHMMSS-<id> */
	Trackd__V1__RunMode mode;
	uint32_t uid;
	bool imported; /* RunStart.imported: made by trackctl import, not sampled */

	enum run_state state;
	bool has_exit_code;
	int32_t exit_code;
	int64_t start_time_us, end_time_us;
	enum run_state worst_outcome; /* of the processes that ended so far */
	int32_t outcome_exit_code;
	enum run_state reported_outcome; /* worst of those that sent their own exit */
	int32_t reported_exit_code;
	uint32_t crashed_processes; /* ended by a crash mark and not settled since */

	struct run_attached attached[RUN_MAX_ATTACHED];
	size_t n_attached;

	int64_t step; /* the step the pending row belongs to */
	bool has_pending;
	struct vmap pending;
	int64_t pending_time_us;
	/* An imported row's own _timestamp / _runtime (HistoryRow.timestamp,
	 * runtime), used instead of pending_time_us when set. */
	bool has_pending_timestamp, has_pending_runtime;
	double pending_timestamp, pending_runtime;
	uint64_t history_lines, console_lines, rows_rejected;
	uint64_t events_lines; /* system-metrics samples materialised */

	struct vmap summary, config;
	struct run_metric *metrics;
	size_t n_metrics;

	uint64_t last_index;                   /* txlog index of the last record applied */
	uint64_t history_bytes, console_bytes; /* file lengths at the last checkpoint */
	/* The local sink's series index at the last checkpoint (RunSnapshot
	 * fields 37, 38): has_series_rows is false in a snapshot written by an
	 * agent without the index. */
	bool has_series_rows;
	uint64_t series_rows, series_dropped;
	uint64_t events_bytes;
	/* The sampler's raw counters at the run's start (SystemStats.bases, the
	 * last set applied), so that a restarted agent continues from them. */
	char counters_boot_id[RUN_BOOT_ID_BYTES];
	struct run_counter_base counter_bases[RUN_MAX_COUNTER_BASES];
	size_t n_counter_bases;
	/* wandb-metadata.json's two sources (run_metadata.h), the last of each
	 * applied: the agent's RunMetadata JSON and the client's RunEnvironment
	 * as a JSON object; NULL until one comes. */
	char *agent_metadata, *client_environment;
};

/* Where a record came from. */
struct record_origin {
	uint64_t index; /* txlog index of its LogEntry */
	uint32_t uid;
	int32_t pid;
	int64_t recv_time_us;
};

/* A committed history row, as its line was written: for sinks that index
 * rows (the local sink's series index) without parsing the line again. */
struct run_row {
	uint64_t index; /* 0-based row number: history_lines before this row */
	int64_t step;
	double runtime, timestamp;
	const struct vmap *values; /* the row's values, _step/_runtime/_timestamp included */
};

struct run_effects {
	struct buf *history; /* JSON lines appended here, each ending in '\n' */
	/* Optional: called for each row committed, after its line was appended to
	 * `history`. A failure is the apply's failure (the line stays). */
	int (*on_row)(void *arg, const struct run_row *row);
	void *row_arg;
	struct buf *console; /* console lines appended here */
	struct buf *events;  /* events lines appended here; NULL: samples are dropped */
	bool summary_changed, config_changed, meta_changed;
	bool metadata_changed; /* a RunMetadata or RunEnvironment was applied */
	bool ended;            /* the run left the running state */
	bool settled;          /* an ended run's final state changed (a late exit) */
	bool step_rejected;    /* a row with a step lower than the current was dropped */
};

/* A new run from its start record. `id` is the record's run id. A start without
 * a display name gets run_default_name(id): every sink derives the same name
 * from the same log, so the local store and the W&B backend agree on it. */
int run_new(const char *id, const Trackd__V1__RunStart *start, const struct record_origin *o,
            struct run **out);
void run_free(struct run *r);

/* Applies one record. A RunStart for an existing run attaches another process
 * (resume). Errors: TRACKD_ENOMEM, TRACKD_ETOOBIG (a buffer's limit). */
int run_apply(struct run *r, const Trackd__V1__Record *rec, const struct record_origin *o,
              struct run_effects *fx);

/* The run files a record names, one rule for every sink (WANDB-FEATURES.md
 * §2): a SavedFile's name and digest, and the media objects of a history row
 * ({"_type":"image-file"|"table-file","path":"media/…","sha256":<hex>},
 * nested in maps and lists at most RUN_MEDIA_MAX_DEPTH deep; a path outside
 * media/ is not a media value). `each` gets the name and the digest
 * (borrowed for the call), NULL when the name is not a valid run file name
 * (run_files.h) or the digest not 32 bytes / 64 hex characters: the sink
 * reports it; and the kind ("image", "table" or "file"). Returns how many
 * were found. */
#define RUN_MEDIA_MAX_DEPTH 4
typedef void (*run_file_fn)(void *arg, const char *name, const uint8_t *digest, const char *kind);
size_t run_record_files(const Trackd__V1__Record *rec, run_file_fn each, void *arg);

/* A process attached to the run was found dead without having finished. */
int run_process_vanished(struct run *r, int32_t pid, int64_t when_us, struct run_effects *fx);

const char *run_state_name(enum run_state s);

/* JSON object of the run's metadata (identity, state, pids, times, counts),
 * optionally with summary and config. */
int run_to_json(const struct run *r, const char *dir, bool with_values, struct buf *out);

/* Snapshot conversion; the proto returned by run_to_snapshot points into `r`
 * and is freed with run_snapshot_free. */
Trackd__V1__RunSnapshot *run_to_snapshot(const struct run *r);
void run_snapshot_free(Trackd__V1__RunSnapshot *s);
int run_from_snapshot(const Trackd__V1__RunSnapshot *s, struct run **out);

/* The display name of a run started without one, in W&B's `adjective-noun-N`
 * shape. A pure function of the run id (words and N from a hash of it): the
 * log holds no other fact every sink could count on (W&B's N counts the
 * project's runs, which neither the log nor the wandb sink knows), so N here is
 * 1..999 from the hash, not a count. Writes at most len bytes (NUL included). */
void run_default_name(const char *id, char *out, size_t len);

/* "run-YYYYMMDD_HHMMSS-<id>" from a start time (UTC). */
void run_dir_name(int64_t start_time_us, const char *id, char *out, size_t len);

#endif
