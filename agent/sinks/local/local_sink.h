/*
 * local_sink.h — the embedded `local` sink: a cursor over the transaction log that
 * materialises every run under the state dir, in a W&B-like layout:
 *
 *   <state_dir>/runs/<entity>/<project>/run-YYYYMMDD_HHMMSS-<id>/
 *       metadata.json   identity, host, pids, uid, state, start/end time, exit code
 *       config.yaml     W&B's layout (`key: {desc: null, value: …}`)
 *       history.jsonl   one committed row per line (_step, _runtime, _timestamp)
 *       summary.json    the run summary
 *       output.log      console lines
 *       events.jsonl    system metrics, one W&B wandb-events.jsonl line per sample
 *       wandb-metadata.json  the run's environment (RunMetadata), one JSON line
 *       client-environment.json  the client's process facts (RunEnvironment), which
 *                            win over the agent's in wandb-metadata.json (environment.h)
 *       files/          W&B's run files: media/images/…png, media/table/…table.json
 *                       (from history rows' media values), saved files; each a
 *                       hard link to a blob (run_files_sink.c, blobs.h)
 *       files.jsonl     one line per file materialised (trackctl files)
 *       .snapshot       the sink's state of the run (protobuf RunSnapshot)
 *
 * Run semantics come from agent/runs (run.h); this module routes records to runs,
 * writes files, detects crashed clients, and answers queries. The store it
 * writes is read by others through local_store.h (library trackd_local_store),
 * never by naming its files.
 *
 * A client's records for a run whose start record is not in the log (it was
 * quarantined as damaged, or a power cut took it) are kept, not skipped: the
 * run is made without its start, under the client's uid and the project
 * RECOVERED_PROJECT, with no config; the log says so and runs_recovered counts it.
 *
 * Exactly-once files: appended lines are written every flush interval; at every
 * checkpoint the appended files are fdatasync'ed, each touched run's snapshot is
 * written atomically (temp, fsync, rename, fsync dir) with the file lengths and
 * the last log index applied, and only then the sink's txlog cursor is
 * committed. After a crash, files are cut back to their snapshot lengths and
 * records at or below a run's last index are skipped.
 *
 * Crash detection: every `crash_poll_ms`, and at once when ingest reports a
 * closed connection (local_sink_notify), each running run's attached processes
 * are checked (the pid exists and has the same start time as when first seen);
 * for a vanished one the sink submits an EXIT_CRASHED record through the log, so
 * every sink sees the same end. Runs that were running when the agent stopped
 * are reloaded at start and checked the same way.
 *
 * Threading: one sink thread; local_sink_query may be called from another thread
 * (it takes the sink's mutex). Lifecycle: start → close (stop reading) → stop
 * (final flush and checkpoint, join) → free.
 */
#ifndef TRACKD_SINKS_LOCAL_H
#define TRACKD_SINKS_LOCAL_H

#include "artifacts.h"
#include "blobs.h"
#include "buf.h"
#include "run.h"
#include "txlog.h"

#include "trackd/v1/limits.h"

#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

#define RECOVERED_PROJECT "trackd-recovered"

typedef struct local_sink local_sink;

struct local_sink_options {
	const char *state_dir;
	txlog *log;
	uint32_t max_record_bytes;
	uint32_t flush_interval_ms;      /* appended lines reach the files (default 100) */
	uint32_t checkpoint_interval_ms; /* snapshots + cursor (default 1000) */
	uint32_t crash_poll_ms;          /* default 250 */
	uint32_t max_active_runs;        /* runs kept in memory while running (default 4096) */
	blobs *blobs; /* files named by records come from here (NULL: none); borrowed */
	/* ArtifactLog / ArtifactUse records are applied to it, in log order
	 * (artifacts.h: replay-safe). NULL: none (such records are skipped). */
	artifacts *artifacts;
	/* Appends an agent-generated record (crash mark, rename) through ingest,
	 * which frames it (the sink builds no wire bytes). `rec` is borrowed: it is
	 * packed before the call returns. Must be thread-safe. */
	int (*submit)(void *arg, const Trackd__V1__Record *rec);
	void *submit_arg;
	/* Optional: told (with submit_arg) after the live runs changed
	 * (local_sink_live_runs); runs on the sink thread, must only hand off. */
	void (*live_changed)(void *arg);
};

struct local_sink_stats {
	uint64_t runs_active;
	uint64_t processed_index; /* last log index applied */
	uint64_t backlog;         /* readable records not yet applied */
	uint64_t records_applied;
	uint64_t records_orphaned; /* undecodable, or the agent's own for an unknown run */
	uint64_t runs_recovered;   /* runs whose start record was gone (RECOVERED_PROJECT) */
	uint64_t rows_rejected;    /* rows whose explicit step went backwards */
	uint64_t crashes_detected;
	uint64_t write_errors;
	bool write_stalled; /* run files cannot be written (disk full): applying paused */
	/* Runs this process saw end (a resumed run that ends again counts again). */
	uint64_t runs_finished, runs_failed, runs_crashed, runs_killed;
};

int local_sink_start(const struct local_sink_options *opts, local_sink **out);
void local_sink_close(local_sink *s);
void local_sink_stop(local_sink *s);
void local_sink_free(local_sink *s);

/* Wakes the sink: a client connection closed (check processes now). Cheap and
 * safe from any thread, including NNG callbacks. */
void local_sink_notify(local_sink *s);

void local_sink_get_stats(local_sink *s, struct local_sink_stats *out);

/* Monotonic time (µs) of the sink thread's last loop (it loops at least every
 * 20 ms while healthy, more often when busy; one checkpoint may take longer). */
int64_t local_sink_heartbeat_us(local_sink *s);

/* Read-your-writes for queries: waits until the sink has applied every record
 * the log held at the call, so that an answer shows every batch acknowledged
 * before the query was asked (a finished run is `finished`, a rename shows), or
 * until timeout_ms, or at once while the sink is stalled on a full disk or
 * closing. Never takes the sink's lock (a checkpoint may hold it for seconds);
 * for query threads, never the ingest path. */
void local_sink_catch_up(local_sink *s, int timeout_ms);

/* The queries the local run store answers (agent/cmd/queries.c routes them
 * here), each with its typed reply in *out (malloc'd throughout: the caller
 * frees it with its free_unpacked; NULL on failure), for the requester `uid`:
 * it sees and changes only its own runs unless `admin`. A request is
 * borrowed. Returns 0, or a TRACKD__V1__ERROR_CODE__* (> 0) with a message in
 * err; ERROR_TOO_LARGE when the answer would take more than `max_bytes`
 * packed. History is read outside the sink's lock, 64 KiB at a time. */
int local_sink_query_runs(local_sink *s, const Trackd__V1__RunsRequest *q, uint32_t uid, bool admin,
                          size_t max_bytes, Trackd__V1__RunsReply **out, char *err, size_t errlen);
int local_sink_query_run(local_sink *s, const char *ref, uint32_t uid, bool admin,
                         Trackd__V1__RunInfo **out, char *err, size_t errlen);
int local_sink_query_history(local_sink *s, const Trackd__V1__HistoryRequest *q, uint32_t uid,
                             bool admin, size_t max_bytes, Trackd__V1__HistoryPage **out, char *err,
                             size_t errlen);
/* SeriesRequest: buckets default SERIES_DEFAULT_BUCKETS (1000), over
 * SERIES_MAX_BUCKETS (10000) is ERROR_INVALID, as is an x that is neither a
 * row axis nor a key of the run; a key not in the run gives an empty series
 * (total_points 0). Read from the series index outside the sink's lock. */
int local_sink_query_series(local_sink *s, const Trackd__V1__SeriesRequest *q, uint32_t uid,
                            bool admin, size_t max_bytes, Trackd__V1__SeriesReply **out, char *err,
                            size_t errlen);
/* ConsoleRequest: a page of output.log, lines from from_line on (only those
 * containing grep, when set), at most max_lines (0: no limit); a page ends
 * early, at next_line, when the next line would pass max_bytes. Read outside
 * the sink's lock, as history. */
int local_sink_query_console(local_sink *s, const Trackd__V1__ConsoleRequest *q, uint32_t uid,
                             bool admin, size_t max_bytes, Trackd__V1__ConsolePage **out, char *err,
                             size_t errlen);
/* FilesRequest: the run's files (files.jsonl, the last line of each name),
 * sorted by name. */
int local_sink_query_files(local_sink *s, const Trackd__V1__FilesRequest *q, uint32_t uid,
                           bool admin, size_t max_bytes, Trackd__V1__FilesReply **out, char *err,
                           size_t errlen);
/* RunFileReadRequest: a piece of one file the run's files.jsonl lists, read
 * from <run dir>/files/ outside the sink's lock and verified against its
 * recorded SHA-256 first (run_file_read.h): at most TRACKD_RUN_FILE_READ_MAX
 * bytes. A bad name, length or offset: ERROR_INVALID; a name the run does not
 * list, or not materialised: ERROR_NOT_FOUND; a corrupt file:
 * ERROR_UNAVAILABLE saying so. Each piece looks the name up in files.jsonl
 * again (what the file list reads, bounded the same), so a piece is always
 * checked against the run's latest record of the name. */
int local_sink_query_run_file(local_sink *s, const Trackd__V1__RunFileReadRequest *q, uint32_t uid,
                              bool admin, size_t max_bytes, Trackd__V1__RunFileChunk **out,
                              char *err, size_t errlen);
/* Records a change of the run's name, tags and/or notes (a RunRename record
 * submitted to ingest; only the owner or an admin). */
int local_sink_query_rename(local_sink *s, const Trackd__V1__RenameRequest *q, uint32_t uid,
                            bool admin, char *err, size_t errlen);

/* A running run as the system-metrics sampler needs it: its id, its owner,
 * its start, and its attached processes that have not ended. */
struct local_live_run {
	char id[TRACKD_MAX_RUN_ID_BYTES + 1];
	uint32_t uid;
	int64_t start_time_us;
	size_t n_pids;
	int32_t pids[RUN_MAX_ATTACHED];
	uint64_t start_ticks[RUN_MAX_ATTACHED]; /* /proc starttime, 0 unknown */
	/* The sampler's counter bases the run holds (run.h), for a restarted
	 * sampler to continue from. */
	char counters_boot_id[RUN_BOOT_ID_BYTES];
	struct run_counter_base counter_bases[RUN_MAX_COUNTER_BASES];
	size_t n_counter_bases;
	/* The working directory its client reported (client-environment.json's
	 * root), "" unknown. */
	char client_root[1024];
};

/* Copies the running runs into *out (malloc'd, the caller frees; NULL and 0
 * when none). Takes only the small lock the sink thread publishes them under,
 * never the sink's own: at most one round (20 ms idle) behind the log the
 * sink has applied. Thread-safe. TRACKD_ENOMEM. */
int local_sink_live_runs(local_sink *s, struct local_live_run **out, size_t *n);

/* For `trackctl sync`: run `ref` (an id or entity/project/id) for requester
 * `uid` (its own runs only unless `admin`): its directory, its path
 * (entity/project/id), whether it is offline, still running, and its owner —
 * from memory when the sink holds it (its .snapshot on disk may lag behind by
 * a checkpoint, or not exist yet). Returns 0, or ERROR_NOT_FOUND /
 * ERROR_PERMISSION_DENIED with a message. */
struct local_run_info {
	char dir[4096];
	char path[1024];
	bool running, offline;
	uint32_t owner;
};
int local_sink_locate(local_sink *s, const char *ref, uint32_t uid, bool admin,
                      struct local_run_info *info, char *err, size_t errlen);

#endif
