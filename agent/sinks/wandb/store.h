/*
 * store.h — the wandb sink's durable state of one run: what the backend has
 * acknowledged, as of a log index.
 *
 * One file per run, `<dir>/<name>.state`, where <name> is the run id when it
 * is made of [A-Za-z0-9_-] only, else "x" + the id in hex (ids may hold any
 * character but / \ # ? % : and controls). Written atomically and durably
 * (temp, fdatasync, rename, fsync dir), so a reader sees one whole version.
 *
 * Format (integers little-endian):
 *   "TRKDWB02" | u32 flags | u64 history_base | u64 console_base
 *   | u64 history_skipped | u64 console_skipped | u64 events_base | u64 events_skipped
 *   | u16 len + upstream entity | u16 len + upstream project
 *   | u32 len + RunSnapshot (protobuf; len 0 = none yet) | u32 crc32c(all before)
 *
 * The snapshot is the run (run.h) at a point where everything derived from it
 * was acknowledged by the backend: its history_lines / console_lines are the
 * line counts the backend holds (minus the bases, plus the skipped lines), its
 * last_index the last log index applied. "TRKDWB01" files (before the
 * events: no events_base / events_skipped, read as 0) are read too. A file without a snapshot
 * records only that the run exists upstream and where its lines start (the bases).
 *
 * Thread-safe (no state). Errors: TRACKD_ENOENT, TRACKD_ECORRUPT (bad magic,
 * length or checksum), TRACKD_ETOOBIG, TRACKD_EIO and other errno translations.
 */
#ifndef TRACKD_SINKS_WANDB_STORE_H
#define TRACKD_SINKS_WANDB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WB_STATE_OFFLINE   0x1u /* an offline run: never uploaded by this sink */
#define WB_STATE_UPSERTED  0x2u /* the backend has the run; the bases are known */
#define WB_STATE_MAX_BYTES (256u << 20)

struct wb_state {
	uint32_t flags;
	uint64_t history_base, console_base;
	uint64_t history_skipped, console_skipped;
	uint64_t events_base, events_skipped; /* wandb-events.jsonl */
	char *entity, *project;               /* owned; "" when unknown */
	uint8_t *snapshot;                    /* owned; NULL = none */
	size_t snapshot_len;
};

/* `<name>.state` for a run id (see above) into out. */
void wb_state_file_name(const char *run_id, char *out, size_t len);

/* Writes the state of `run_id` atomically and durably; `st` is borrowed. */
int wb_state_write(const char *dir, const char *run_id, const struct wb_state *st);

/* Reads it; on success the caller owns *st (wb_state_fini). */
int wb_state_read(const char *dir, const char *run_id, struct wb_state *st);

/* Removes it (a run the sink no longer needs to know); ENOENT is success. */
int wb_state_remove(const char *dir, const char *run_id);

void wb_state_fini(struct wb_state *st);

#endif
