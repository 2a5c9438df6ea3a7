/* Private to the local sink: the structures shared by local_sink.c (the sink
 * thread) and query.c (answers, on the ingest's query thread, under s->mu). */
#ifndef TRACKD_SINKS_LOCAL_INTERNAL_H
#define TRACKD_SINKS_LOCAL_INTERNAL_H

#include "local_sink.h"
#include "run.h"
#include "run_file_read.h"
#include "series.h"
#include "store_layout.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* A run the sink holds in memory: every running run, and ended ones until their
 * last checkpoint. */
struct active_run {
	struct run *run;
	char *dir;              /* absolute path of the run dir */
	struct buf history_out; /* lines not yet appended to history.jsonl */
	struct buf console_out;
	/* The run's series index (series.h), fed each committed row by
	 * run_apply's on_row; NULL if it could not be opened (the next snapshot
	 * then says so, and the index is rebuilt from history.jsonl on load). */
	struct series_writer *series;
	struct series_value *row_values; /* scratch for on_row */
	size_t row_values_cap;
	bool series_warned;    /* a row the index could not take was logged */
	struct buf events_out; /* system-metrics lines not yet appended to events.jsonl */
	bool files_dirty;      /* summary/config/metadata to rewrite at next flush */
	/* The working directory the client reported (RunEnvironment.root), for
	 * the sampler; read from client-environment.json once when the run is
	 * first published after a load. NULL unknown. */
	char *client_root;
	bool client_root_read;
	bool checkpoint_dirty;   /* changed since the last snapshot */
	uint64_t applying_index; /* log index of the entry being applied */
	bool crash_submitted[RUN_MAX_ATTACHED];
	/* Log index appended when the process was first seen dead (0: not seen).
	 * A dead process appends nothing more, so once the sink has applied up to
	 * here, a missing exit record really is missing (it may still be on its way
	 * through the fsync interval when the pid disappears). */
	uint64_t dead_mark[RUN_MAX_ATTACHED];
};

struct local_sink {
	struct local_sink_options opts;
	char runs_dir[4096];
	char sink_dir[4096];

	struct run_file_verified verified; /* RunFileRead's cache (own lock) */

	pthread_mutex_t mu; /* guards everything below that a query may read */
	pthread_cond_t cv;
	bool closing;
	_Atomic bool notified; /* a connection closed: poll processes now */
	pthread_t thread;
	bool thread_started;

	struct active_run **active;
	size_t n_active;

	txlog_reader *reader;
	uint64_t processed_index;
	uint64_t committed_index;

	/* Disk writes failing: applying paused (see note_write_failure). */
	_Atomic bool write_stalled;
	bool stall_reported;        /* logged; cleared when an entry applies again */
	bool reread;                /* the reader must go back to processed_index */
	int create_error;           /* why open_for_start could not create a run dir */
	size_t pending_bytes;       /* lines applied, not yet appended (PENDING_FLUSH_BYTES) */
	uint32_t applying_position; /* of the record being applied, in its batch */

	_Atomic int64_t heartbeat_us; /* the sink thread's last loop */
	/* processed_index and the count of running runs as of the sink thread's
	 * last loop, for status: a checkpoint holds mu through its fsyncs, which
	 * with a backlog take seconds, and status must not wait for them. */
	_Atomic uint64_t published_index, published_runs_active;
	/* Broadcast whenever published_index is stored (local_sink_catch_up);
	 * its own mutex, so a waiting query never holds up the sink. */
	pthread_mutex_t applied_mu;
	pthread_cond_t applied_cv;
	_Atomic bool closing_for_queries; /* closing, as seen without mu */
	_Atomic uint64_t records_applied, records_orphaned, runs_recovered, rows_rejected,
	    crashes_detected, write_errors;
	/* Runs that ended, by final state: counted by the apply (mu held) and
	 * published with published_runs_active (publish_stats: the running count
	 * first), so a reader who sees a run's end counted also sees it no longer
	 * running. */
	uint64_t ended_finished, ended_failed, ended_crashed, ended_killed;
	_Atomic uint64_t runs_finished, runs_failed, runs_crashed, runs_killed;

	/* The running runs and their live processes, for the system-metrics
	 * sampler (local_sink_live_runs): rebuilt by the sink thread when a run
	 * starts, ends or gains or loses a process (live_dirty, under mu), and
	 * read under live_mu only, so a sampler never waits for a checkpoint. */
	bool live_dirty;
	pthread_mutex_t live_mu;
	struct local_live_run *live;
	size_t n_live;
#ifdef TRACKD_TEST_HOOKS
	/* Test builds only: a checkpoint that wrote snapshots keeps mu this long
	 * more (TRACKD_TEST_CHECKPOINT_HOLD_MS), as a checkpoint's fsyncs do on a
	 * slow disk, so tests can show who waits for the sink's lock. */
	uint32_t test_hold_ms;
	/* Test builds only: each round waits this long (TRACKD_TEST_APPLY_DELAY_MS,
	 * mu let go) before it applies what the log holds, as a sink behind on a
	 * loaded machine, so tests can show what a query sees of it. */
	uint32_t test_apply_delay_ms;
#endif
};

/* Finds a run in memory by id, or "entity/project/id". Caller holds s->mu. */
struct active_run *sink_find_active(struct local_sink *s, const char *ref);

/* Resolves a run reference to its directory on disk, in memory or not:
 * writes the dir path into `dir`. Caller holds s->mu. Returns 0 or TRACKD_ENOENT. */
int sink_resolve_dir(struct local_sink *s, const char *ref, char *dir, size_t len);

/* Opens the series index of a run brought into memory (built once from
 * history.jsonl for a run stored without one). Caller holds s->mu. */
int sink_series_attach(struct local_sink *s, struct active_run *ar);

/* The rows of the series index of a run not in memory, from its snapshot;
 * for a run stored without the index, builds it first (once, under s->mu:
 * seconds for a run of millions of rows; the build counts as the sink's
 * heartbeat meanwhile). */
int sink_series_rows(struct local_sink *s, const char *dir, const struct run *r, uint64_t *rows);

/* Loads a run's snapshot from its dir (for runs not in memory). */
int sink_load_snapshot(const char *dir, struct run **out);

/* Appends an active run's pending lines to its files now (and rewrites its
 * whole files if changed): 0, or the error, counted and starting a stall.
 * Caller holds s->mu. */
int sink_flush_run(struct local_sink *s, struct active_run *ar);

/* Materialises the files a record names (run_files_sink.c): its media
 * values, or a SavedFile, from uid's blobs. Returns how many failed. */
int sink_materialise_files(struct local_sink *s, struct active_run *ar,
                           const Trackd__V1__Record *rec, uint32_t uid);

#endif
