/*
 * wandb_convert.h — turns the records of one W&B transaction file (decoded
 * with wandb_record.proto) into trackd records, in file order, for
 * `trackctl import`. Pure: records go to the caller's `emit`; nothing here
 * talks to the agent.
 *
 *   W&B record            trackd record
 *   run (the first)       RunStart: id, entity, project, display name, notes,
 *                         group, job type, tags, host, start time, config;
 *                         mode offline, imported (so `trackctl sync` uploads
 *                         it and the agent's sampler leaves it alone)
 *   run (later)           RunStart (resume allow) with the fields it sets
 *   history               HistoryRow: step (step.num, else `_step`), the row's
 *                         own `_timestamp` and `_runtime` (HistoryRow.timestamp
 *                         and runtime: kept as the file has them), the other
 *                         items; nested_key paths become nested maps
 *   summary, config       SummaryUpdate / ConfigUpdate of the top-level keys an
 *                         update or remove touched, with their whole value as
 *                         the file's updates so far make it (config `_wandb`,
 *                         W&B's own bookkeeping, is left out)
 *   output, output_raw    ConsoleOutput per stream, whole lines (a line split
 *                         over records is joined; at most WBC_MAX_PARTIAL bytes
 *                         wait for their newline)
 *   stats                 SystemStats at the record's time: W&B's keys without
 *                         `system.`, numeric values
 *   metric                DefineMetric (min/max/mean/none; others: last)
 *   exit                  RunExit with its code, emitted by wbc_finish after
 *                         every other record, at the later of start + runtime
 *                         and the last time the file holds
 *   (no exit)             RunExit{EXIT_CRASHED, pid} at the last time: the run
 *                         is crashed, as W&B shows a run whose process died
 * Everything else (header, files, telemetry, artifacts, …) is skipped and
 * counted. Records before the first run record start the run with the id of
 * the file name (`run-<id>.wandb`), the only fact left (counted in
 * stats.no_run_record).
 *
 * JSON values (`value_json`) are parsed with json-c, nesting bounded by
 * WBC_MAX_JSON_DEPTH; one that does not parse is skipped and counted.
 *
 * Ownership: options' strings are borrowed for the converter's life; records
 * handed to `emit` are the converter's and freed when emit returns. Not
 * thread-safe. Errors: TRACKD_ENOMEM, or what `emit`/`begin` return.
 */
#ifndef TRACKD_CLI_IMPORT_WANDB_CONVERT_H
#define TRACKD_CLI_IMPORT_WANDB_CONVERT_H

#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WBC_MAX_JSON_DEPTH 64
#define WBC_MAX_PARTIAL    (64u << 10)
#define WBC_MAX_ID_BYTES   64

/* `begin`'s answer: the run exists already as this import would make it. */
#define WBC_SKIP 1

struct wbc_options {
	const char *entity, *project; /* override the file's when set */
	const char *file_id;          /* the id of the file name, for a file without run record */
	int32_t pid;                  /* the importing process (RunStart.pid, RunExit.pid) */
	/* Called once, with the run id, before the run's first record: 0 goes
	 * on, WBC_SKIP emits nothing more (the rest of the file is still read
	 * and counted in the stats, for a comparison with the run there), < 0
	 * is an error. */
	int (*begin)(void *arg, const char *run_id, const char *entity, const char *project);
	/* One trackd record (borrowed), from the W&B record at `offset`. */
	int (*emit)(void *arg, const Trackd__V1__Record *rec, uint64_t offset);
	void *arg;
};

struct wbc_stats {
	char run_id[WBC_MAX_ID_BYTES + 1];
	bool started, skipped, no_run_record;
	bool have_exit;
	int32_t exit_code;
	uint64_t records; /* W&B records read */
	uint64_t rows, console_lines, samples;
	uint64_t undecodable;  /* records that are not a W&B Record */
	uint64_t bad_values;   /* value_json that is not JSON */
	uint64_t not_imported; /* records of kinds trackd does not import */
	uint64_t before_run;   /* nothing to attach them to: no id at all */
};

typedef struct wbc wbc;

int wbc_new(const struct wbc_options *o, wbc **out);
void wbc_free(wbc *c);

/* One W&B record's bytes (a wtx_next record) at file offset `offset`. */
int wbc_record(wbc *c, const uint8_t *data, size_t len, uint64_t offset);

/* The end of the file: pending console text, then the run's exit. */
int wbc_finish(wbc *c);

const struct wbc_stats *wbc_stats(const wbc *c);

#endif
