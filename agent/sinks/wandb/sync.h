/*
 * sync.h — `trackctl sync`: the wandb sink uploads an offline run later, from
 * the local store's files, through the same requests, retries and parking as
 * an online run (private to the sink; the query entry is wandb_sink_sync in
 * wandb_sink.h).
 *
 * A sync job is a struct wb_run in the sink's table with `sync` set. Its run
 * (config, summary, state, exit code) is the local sink's `.snapshot` of the run
 * dir; its lines are read from its history and console files (local_store.h) up to the lengths
 * that snapshot records (whole lines, as the local sink checkpointed them) —
 * its system-metrics events too, as wandb-events.jsonl with offsets of their
 * own, exactly once like the history —
 * a request's worth at a time (at most max_request_bytes per file in memory,
 * and nothing while the sink's line memory is full). The log is not involved:
 * records for a run with a sync job are skipped, as for any offline run.
 *
 * Files: the run's files go up as an online run's (wandb_sink.h, run files);
 * progress bytes count them.
 *
 * Durable progress: after each acknowledged request (and after the first
 * UpsertBucket, before any line is sent) the job writes
 * `<state>/sinks/wandb/sync/<name>.state` (store.h: bases, skipped counts,
 * upstream entity/project, events base and skipped count) whose payload is
 * the progress record below: the lines and file bytes acknowledged per file
 * (history, console, events) and the local snapshot's log
 * index the job uploads. A job started again (trackctl killed and re-run, the
 * agent killed -9 and restarted, a parked job retried) resumes at those
 * offsets, so at most the one unacknowledged request is sent again — with the
 * same offsets, which the backend applies idempotently. The final request
 * carries complete + exitcode (finished → 0, failed → its code, crashed or
 * killed → its code or 1: no heartbeat will ever come for an offline run);
 * its acknowledgement sets SYNCED in the same write. A synced run whose local
 * index is unchanged is skipped; one that was resumed offline since then
 * continues after what was synced; `force` starts from offset 0 again (same
 * bases, so the backend receives the same lines at the same offsets).
 *
 * Everything here runs under s->mu (sink thread or query thread).
 */
#ifndef TRACKD_SINKS_WANDB_SYNC_H
#define TRACKD_SINKS_WANDB_SYNC_H

#include "buf.h"
#include "local_store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wandb_sink;
struct wb_run;
struct wb_transfer;
struct wb_sync;

#define WB_SYNC_MAX_JOBS 64 /* sync jobs in memory at once; more: try again later */

/* ---- the progress record (pure, unit-tested) ---------------------------------- */

#define WB_SYNC_PROGRESS_BYTES    68
#define WB_SYNC_PROGRESS_V1_BYTES 52   /* before events: read, never written */
#define WB_SYNC_SYNCED            0x1u /* the final request was acknowledged */

struct wb_sync_progress {
	uint32_t flags;
	uint64_t local_index;                  /* last_index of the local snapshot being uploaded */
	uint64_t history_lines, history_bytes; /* acknowledged (or skipped): lines, file bytes */
	uint64_t console_lines, console_bytes;
	uint64_t events_lines, events_bytes;
};

/* "TRKDWS02" | u32 flags | u64 × 7, little-endian: exactly WB_SYNC_PROGRESS_BYTES.
 * A "TRKDWS01" record (u64 × 5, no events) decodes with no events acknowledged. */
void wb_sync_progress_encode(const struct wb_sync_progress *p, uint8_t out[WB_SYNC_PROGRESS_BYTES]);
/* 0, or TRACKD_ECORRUPT (wrong length or magic, unknown flags, bytes < lines). */
int wb_sync_progress_decode(const uint8_t *data, size_t len, struct wb_sync_progress *p);

/* The length of the whole lines at the start of data[0, len): up to and
 * including the last '\n', 0 if there is none. */
size_t wb_sync_whole_lines(const char *data, size_t len);

/* Appends the next whole lines of one of a local run's appended files (the
 * run dir `dir`, `file` HISTORY, CONSOLE or EVENTS, local_store.h) to `into`, from file offset
 * *read_off up to `total` (the length the local snapshot records): at most
 * `want` bytes; when not even one line fits, the chunk doubles until one does
 * (so a line longer than `want` is taken whole, with what follows it in the
 * last chunk).
 * Advances *read_off and adds to *added the bytes appended. Errors, with the
 * reason in `why`: TRACKD_EIO (cannot open), TRACKD_ECORRUPT (the file is
 * shorter than `total`, or does not end with '\n' at `total`), TRACKD_ENOMEM and
 * TRACKD_ETOOBIG (into's maximum). */
int wb_sync_read_lines(const char *dir, enum local_store_file file, uint64_t *read_off,
                       uint64_t total, size_t want, struct buf *into, uint64_t *added, char *why,
                       size_t whylen);

/* ---- hooks for the sink thread (wandb_sink.c) --------------------------------- */

void wb_sync_free(struct wb_sync *j);

/* Every loop, before scheduling: waiting jobs look at the local snapshot again,
 * active ones read the next lines from the files. */
void wb_sync_tick(struct wandb_sink *s, int64_t now);

/* Every line of the files has been read into memory (sent or not). */
bool wb_sync_exhausted(const struct wb_run *wr);

/* The job is over: the backend acknowledged the final request. */
bool wb_sync_finished(const struct wb_run *wr);

/* Makes the job's progress durable (after the first UpsertBucket). */
int wb_sync_save(struct wandb_sink *s, struct wb_run *wr);

/* A file_stream request of the job was acknowledged (after consume). */
void wb_sync_acked(struct wandb_sink *s, struct wb_run *wr, const struct wb_transfer *t);

/* Brings a parked job back: reloaded from the local store and its progress. */
void wb_sync_reattach(struct wandb_sink *s, struct wb_run *wr);

#endif
