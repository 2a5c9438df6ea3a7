/*
 * local_store.h — reading the local store: the run directories the local sink
 * (local_sink.h) writes under <state_dir>/runs/<entity>/<project>/. Other
 * modules (the wandb sink's `trackctl sync`, the agent's start-up) read runs
 * through this API and never name the store's files; the local sink uses it for
 * its own reads. Library `trackd_local_store`: it links the run rules (to decode
 * a run's snapshot) and common/, not the local sink.
 *
 * A run dir holds its history rows, console lines, config, summary, metadata
 * and a snapshot: the run's state as of the sink's last checkpoint, with the
 * lengths of the history and console files at that moment (run->history_bytes,
 * run->console_bytes). The appended files may be longer than that while the
 * sink runs (lines applied, not yet checkpointed; after a crash the sink cuts
 * them back): a reader wanting a consistent run reads up to those lengths. A
 * run dir without a snapshot is a run whose first checkpoint has not happened
 * yet (its records are all still in the log): TRACKD_ENOENT.
 *
 * Limits: a snapshot over LOCAL_STORE_SNAPSHOT_MAX_BYTES is refused
 * (TRACKD_ETOOBIG) before it is read. Paths are bounded by the callers' buffers
 * (TRACKD_EINVAL when one is too small).
 *
 * Threading: no state; safe from any thread. Reads race with the sink's writes
 * only as described above (whole files are replaced atomically, appended files
 * only grow until a restart). Errors: trackd_err values (errno translated).
 */
#ifndef TRACKD_SINKS_LOCAL_STORE_H
#define TRACKD_SINKS_LOCAL_STORE_H

#include "run.h"

#include <stddef.h>
#include <stdint.h>

/* Largest run snapshot read (the snapshot holds config, summary and metrics). */
#define LOCAL_STORE_SNAPSHOT_MAX_BYTES (64u << 20)

enum local_store_file {
	LOCAL_STORE_HISTORY,  /* one JSON object per committed row, '\n'-terminated */
	LOCAL_STORE_CONSOLE,  /* console lines */
	LOCAL_STORE_CONFIG,   /* W&B's config.yaml layout */
	LOCAL_STORE_SUMMARY,  /* JSON object */
	LOCAL_STORE_METADATA, /* JSON object: identity, state, times, uid */
	LOCAL_STORE_EVENTS,   /* system-metrics samples, W&B's wandb-events.jsonl lines */
};

/* The file's name inside a run dir, for messages. */
const char *local_store_file_name(enum local_store_file f);

/* <state_dir>/runs into `out`. */
int local_store_runs_dir(const char *state_dir, char *out, size_t len);

/* Opens one of a run's files read-only (O_CLOEXEC): 0 and *fd (owned by the
 * caller), or TRACKD_ENOENT when the file does not exist (yet), or the error. */
int local_store_open(const char *run_dir, enum local_store_file f, int *fd);

/* The file's current length: 0 and *size, or TRACKD_ENOENT, or the error. */
int local_store_size(const char *run_dir, enum local_store_file f, uint64_t *size);

/* The run as of its last checkpoint (its snapshot): 0 and *out (owned by the
 * caller, run_free), TRACKD_ENOENT (no checkpoint yet), TRACKD_ETOOBIG,
 * TRACKD_ECORRUPT, or the read error. */
int local_store_load_run(const char *run_dir, struct run **out);

/* The dir of run `id` in one project dir (<runs_dir>/<entity>/<project>). */
int local_store_find_in_project(const char *project_dir, const char *id, char *out, size_t len);

/* The dir of run `id` in any entity/project under `runs_dir` (ids are unique
 * per project; the first match wins, which is what a bare id can mean). */
int local_store_find_run(const char *runs_dir, const char *id, char *out, size_t len);

/* Calls fn(arg, run_dir) for every run dir under `runs_dir`, in directory
 * order; stops when fn returns non-zero and returns that. A missing `runs_dir`
 * is an empty store (0). */
int local_store_each_run(const char *runs_dir, int (*fn)(void *arg, const char *run_dir),
                         void *arg);

#endif
