/*
 * txlog.h — the transaction log: append-only, checksummed, segmented, durable.
 *
 * What it does
 *   Records (opaque byte strings) are appended to segment files in `<dir>/`.
 *   Every record gets an index, strictly increasing (gaps are possible after a
 *   quarantine, never reuse). Readers stream records in index order; sinks keep a
 *   durable cursor (the highest index they have fully delivered). A segment file is
 *   deleted only when every registered cursor is at or past its last index.
 *
 * On-disk format (all integers little-endian)
 *   Segment file `<dir>/<first_index as %020llu>.seg`:
 *     header, 16 bytes: magic "TRKDLOG1" (8) | u64 first_index
 *     frames, back to back:
 *       u32 magic 0x5452434B ("TRCK" read as LE bytes K C R T) | u32 length
 *       | u64 index | u32 crc32c(length|index|payload) | payload[length]
 *     → TXLOG_FRAME_OVERHEAD = 20 bytes per record.
 *   Cursor file `<dir>/cursors/<name>.cur`: written atomically (temp, fsync,
 *   rename, fsync dir); content "u64 index | u32 crc32c" (12 bytes).
 *   Quarantine `<dir>/quarantine/<segment>.<offset>.bad` (<segment> = the segment
 *   file's name without ".seg", <offset> = where the span began in it): raw bytes
 *   of frames that failed their checks, kept for a human; never read back.
 *
 * Durability (`fsync` policy, as Redis appendfsync)
 *   ALWAYS   — txlog_sync() after appends makes them durable (one fdatasync for all
 *              appends since the last sync: group commit). The caller acks only
 *              after txlog_sync() returns 0.
 *   INTERVAL — a background thread calls fdatasync every `fsync_interval_ms`.
 *              Acks are sent after the append; a crash of the machine (not of the
 *              agent) can lose up to one interval.
 *   NEVER    — the kernel decides. The agent process may crash without loss (the
 *              page cache survives); a power loss may lose anything not yet written
 *              back.
 *   A failed fdatasync is never reported as success: txlog_sync() returns
 *   TRACKD_EIO, the log truncates itself back to the last durable position, and
 *   appends after the failure go to a new segment. If even that fails, the log
 *   enters a failed state where every append returns TRACKD_EIO, until the
 *   repair succeeds at a later append (tried at most once a second): once the
 *   disk works again, appends resume in a new segment without a restart.
 *   Under ALWAYS the unit is the group (appends since the last txlog_sync): a
 *   segment rolled away from mid-group is synced with the group, and a failed
 *   group is discarded as a whole, so a retry never duplicates half of it.
 *   Indices of discarded records are not reused. When records were discarded
 *   outside txlog_sync (the INTERVAL flusher's fdatasync, or one forced at a roll,
 *   failed), the next txlog_sync()/txlog_close() returns TRACKD_EIO once.
 *   Readers see only records up to txlog_readable_index(): the durable index under
 *   ALWAYS/INTERVAL, the written index under NEVER. So a sink cursor can never get
 *   ahead of what a power loss keeps.
 *
 * Recovery (txlog_open)
 *   Streams every segment once (memory does not grow with the log size):
 *   - a torn tail of the newest segment (incomplete frame, or bytes after the last
 *     valid frame that contain no further valid frame) is truncated;
 *   - a complete frame with a bad checksum, or garbage between valid frames, in any
 *     segment, is copied to quarantine/, counted, and cut out of its segment (the
 *     segment is rewritten through a temp file + rename); readers resynchronise on
 *     the next valid frame magic;
 *   - a segment whose header is bad is counted and scanned for frames anyway;
 *   - it never needs a human, never loops, never deletes a valid frame;
 *   - the next index is one past the highest of: the last valid frame, any cursor
 *     position, the newest segment's first_index − 1 — so an index is never reused
 *     even when every segment was already released, and a cursor left beyond the
 *     last record by a power cut never hides new records.
 *   `on_record` (optional) is called for every valid record during the scan, in
 *   index order, so the caller can rebuild state (e.g. ingest's dedupe table).
 *   A non-zero return stops recovery: txlog_open fails with it (if negative) or
 *   TRACKD_EINVAL; segments scanned before may already be repaired, the one being
 *   scanned is left as it was.
 *
 * Threading
 *   One writer thread calls txlog_append/txlog_sync. Any thread may create and use
 *   its own reader and call the cursor functions; a reader is used by one thread at
 *   a time. txlog_stats and txlog_*_index are safe from any thread. The INTERVAL
 *   flusher is internal.
 *
 * Ownership
 *   `data` passed to txlog_append is borrowed (copied to the file). The buffer a
 *   reader returns is owned by the reader and valid until the next read or close.
 *
 * Errors: TRACKD_ETOOBIG (record over max_record_bytes), TRACKD_EIO, TRACKD_ENOSPC,
 * TRACKD_ECLOSED (after txlog_close), TRACKD_ECORRUPT (reader: damaged frame
 * skipped — the reader continues after it), TRACKD_EAGAIN (reader: no more
 * readable records now).
 */
#ifndef TRACKD_TXLOG_H
#define TRACKD_TXLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TXLOG_FRAME_OVERHEAD 20
/* Appends fail (TRACKD_EIO) once the next index reaches this: indices never wrap. */
#define TXLOG_MAX_INDEX      (UINT64_C(1) << 63)
#define TXLOG_SEGMENT_HEADER 16

typedef struct txlog txlog;
typedef struct txlog_reader txlog_reader;

enum txlog_fsync_policy {
	TXLOG_FSYNC_ALWAYS,
	TXLOG_FSYNC_INTERVAL,
	TXLOG_FSYNC_NEVER,
};

struct txlog_options {
	const char *dir; /* created if missing (mode 0700) */
	enum txlog_fsync_policy fsync;
	uint32_t fsync_interval_ms; /* INTERVAL only; > 0 */
	uint64_t segment_bytes;     /* roll to a new segment past this size */
	uint32_t max_record_bytes;  /* payload limit, checked before any allocation */
	/* Disk budget: an append that would take the segments on disk past this
	 * many bytes is refused with TRACKD_ENOSPC (counted in budget_refusals); it
	 * succeeds again once sinks have released segments. 0 = no budget. */
	uint64_t max_bytes;
	/* Called for each valid record found while recovering. Return 0 to go on. */
	int (*on_record)(void *arg, uint64_t index, const void *data, size_t len);
	void *on_record_arg;
};

struct txlog_stats {
	uint64_t records_appended;    /* since open */
	uint64_t bytes_appended;      /* since open, frames included */
	uint64_t records_quarantined; /* found damaged at recovery (frames or spans) */
	uint64_t bytes_quarantined;
	uint64_t bytes_truncated; /* torn tail cut at recovery */
	uint64_t bad_segment_headers;
	uint64_t fsync_failures;
	uint64_t budget_refusals; /* appends refused by max_bytes or a full disk */
	uint64_t segments;        /* files now on disk */
	uint64_t disk_bytes;      /* bytes now on disk in segments */
	uint64_t first_index;     /* oldest record still on disk, 0 if none */
	uint64_t last_index;      /* newest appended, 0 if none */
	uint64_t durable_index;   /* newest covered by a completed fdatasync */
	uint64_t max_bytes;       /* the disk budget in force, 0 = none */
};

/* Opens (creating if needed) and recovers the log. On success *out is owned by
 * the caller (release with txlog_close). */
int txlog_open(const struct txlog_options *opts, txlog **out);

/* Closes: syncs (whatever the policy), stops the flusher, frees. NULL is a no-op.
 * Returns the result of the final sync. */
int txlog_close(txlog *log);

/* Appends one record. On success *index_out (may be NULL) is its index. The record
 * is written (in the page cache) when this returns; durable per the policy. */
int txlog_append(txlog *log, const void *data, size_t len, uint64_t *index_out);

/* Makes every appended record durable (fdatasync). Under NEVER it still syncs.
 * Ends a group begun by txlog_group_begin(). */
int txlog_sync(txlog *log);

/* Under INTERVAL and NEVER: the appends from now until the next txlog_sync() form
 * a group with ALWAYS semantics — that txlog_sync() makes all of them durable, or,
 * when an fdatasync fails, they are all discarded and it returns TRACKD_EIO — so
 * a caller can ack a group durably and roll it back exactly on failure. Until
 * then the INTERVAL flusher syncs only what was appended before the call. A
 * discard the flusher made before the call is not reported by that txlog_sync():
 * it concerned records outside the group (it was logged when it happened).
 * No-op under ALWAYS, where every append already belongs to such a group, and
 * while a group is open. Writer thread only. */
void txlog_group_begin(txlog *log);

uint64_t txlog_last_index(txlog *log);
uint64_t txlog_durable_index(txlog *log);
uint64_t txlog_readable_index(txlog *log);
void txlog_stats(txlog *log, struct txlog_stats *out);

/* Changes the disk budget of a running log (SIGHUP reload); 0 = none. Safe from
 * any thread: the next append checks the new value. Lowering it below the bytes
 * on disk refuses appends until sinks release segments; nothing is deleted. */
void txlog_set_max_bytes(txlog *log, uint64_t max_bytes);

/* Bytes that share the disk budget with the segments (the blob store's,
 * blobs.h): counted as used by every append's budget check. Any thread. */
void txlog_set_external_bytes(txlog *log, uint64_t bytes);
/* What the budget leaves: max_bytes minus segments and external bytes
 * (UINT64_MAX without a budget). Any thread. */
uint64_t txlog_budget_room(txlog *log);

/* ---- fdatasync latency ----------------------------------------------------
 * Every fdatasync that makes appended records durable (txlog_sync, the INTERVAL
 * flusher, rolls, the repair after a failure) is timed, failed ones included,
 * into fixed buckets by atomic counters: no lock on the durability path. */
#define TXLOG_FSYNC_BUCKETS 14
/* Upper bounds (inclusive, µs) of the buckets, ascending. */
extern const uint64_t txlog_fsync_bucket_us[TXLOG_FSYNC_BUCKETS];
struct txlog_fsync_histogram {
	/* Per bucket, not cumulative; count[TXLOG_FSYNC_BUCKETS] holds the slower
	 * ones. Their sum is the number of fdatasyncs timed. */
	uint64_t count[TXLOG_FSYNC_BUCKETS + 1];
	uint64_t sum_us;
};
/* Safe from any thread; a sync finishing meanwhile may be in count or sum only. */
void txlog_fsync_histogram(txlog *log, struct txlog_fsync_histogram *out);

/* ---- readers ------------------------------------------------------------- */

/* A reader over a live log, starting at the first record with index > after
 * (or at the oldest record on disk, if that is later). `log` must outlive the
 * reader. A segment released while the reader has it open is still read to its
 * end; segments released before the reader got to them are skipped (every
 * cursor had passed them), so a reader that must see everything belongs to a
 * registered cursor that it advances. */
int txlog_reader_open(txlog *log, uint64_t after, txlog_reader **out);

/* A reader over a log directory without a running txlog (trackctl, tests, fuzz):
 * reads everything on disk, never modifies anything, limit = max_record_bytes.
 * It reads the segments present when it is opened, each up to its size when the
 * reader reaches it; a bad segment header, a torn tail and a frame over the limit
 * are damage (TRACKD_ECORRUPT). Memory stays within max(256 KiB, largest frame
 * that fits in the file), whatever the bytes. */
int txlog_reader_open_dir(const char *dir, uint32_t max_record_bytes, uint64_t after,
                          txlog_reader **out);

/* Next record: 0 and (*index, *data, *len) set; TRACKD_EAGAIN at the readable end
 * (call again later); TRACKD_ECORRUPT when damage was skipped (call again to go
 * on; each call reports one damaged span). Other errors are I/O errors. */
int txlog_reader_next(txlog_reader *r, uint64_t *index, const void **data, size_t *len);

void txlog_reader_close(txlog_reader *r);

/* ---- sink cursors -------------------------------------------------------- */

/* Registers a named cursor (a sink) and loads its durable position (0 if new).
 * Segments are kept until every registered cursor is past them. Names are
 * [a-z0-9_-]{1,32}. A cursor persisted on disk but never registered in this
 * process still holds segments back (a sink that is configured off must be
 * removed with txlog_cursor_remove). */
int txlog_cursor_register(txlog *log, const char *name, uint64_t *position_out);

/* Durably records that `name` has delivered everything up to `index` (atomic
 * write), then deletes segments every cursor has passed. `index` must not go
 * backwards (TRACKD_EINVAL) and must be ≤ txlog_readable_index. */
int txlog_cursor_commit(txlog *log, const char *name, uint64_t index);

int txlog_cursor_remove(txlog *log, const char *name);

/* Where a cursor stands, for monitoring. */
struct txlog_cursor_info {
	char name[33];
	uint64_t position;       /* durable: everything up to it is delivered */
	uint64_t records_behind; /* readable indices past position */
	uint64_t bytes_behind;   /* segment bytes holding records past position: what
	                          * this cursor keeps on disk */
};

/* Fills up to `max` entries (every cursor the log knows, registered or only
 * loaded from disk) and returns how many there are. Safe from any thread. */
size_t txlog_cursors_info(txlog *log, struct txlog_cursor_info *out, size_t max);

#endif
