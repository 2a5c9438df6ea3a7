/*
 * txlog_internal.h — private to agent/txlog/: the shared internals of the
 * transaction log's source files, and the test-only hook. Only files in this
 * folder (and txlog_test.c) include it; txlog.h is the contract.
 *
 * Locks (never held in the other order):
 *   mu → seg_lock      the writer publishes sizes into the segment list;
 *   cur_lock → seg_lock  a cursor commit deletes segments from the list.
 *   mu and cur_lock are never held together.
 */
#ifndef TRACKD_TXLOG_INTERNAL_H
#define TRACKD_TXLOG_INTERNAL_H

#include "le.h"
#include "txlog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEG_MAGIC              "TRKDLOG1"
#define FRAME_MAGIC            0x5452434Bu
#define SEG_NAME_BUF           64 /* "%020llu.seg.tmp" and quarantine names fit */
#define TXLOG_MAX_OPEN_SEGS    8  /* rolled but not yet synced, plus the current */
#define TXLOG_MAX_CURSORS      256
#define TXLOG_CURSOR_NAME_MAX  32
#define TXLOG_CURSOR_FILE_SIZE 12
#define RECOVERY_CHUNK         (1u << 20) /* read size while recovering */
#define READER_CHUNK           (256u << 10)

/* Test hook: replaces the fdatasync calls that make records durable (sync, roll,
 * the repair after a failure). Returns 0, or -1 with errno set. Called from the
 * writer thread and from the INTERVAL flusher, so it must be thread-safe. */
typedef int (*txlog_fsync_hook)(void *arg, int fd);
void txlog_test_set_fsync_hook(txlog *log, txlog_fsync_hook hook, void *arg);

/* ---- the log ------------------------------------------------------------ */

/* A segment as readers and the cursor code see it (under seg_lock). */
struct seg_info {
	uint64_t first_index;    /* from the file name */
	uint64_t first_record;   /* index of its first record, 0 if none */
	uint64_t last_record;    /* index of its last record, 0 if none */
	uint64_t bytes;          /* file size as written */
	uint64_t readable_bytes; /* readers stop here: durable (or written, NEVER) */
	bool sealed;             /* a newer segment exists; this one no longer grows */
};

/* A segment the writer still holds open: the current one (last) and those
 * rolled away from but not yet covered by an fdatasync. */
struct open_seg {
	int fd;
	uint64_t first_index;
	uint64_t offset;        /* bytes written */
	uint64_t synced;        /* bytes covered by a completed fdatasync */
	uint64_t first_record;  /* 0 if none */
	uint64_t last_record;   /* newest record written, 0 if none */
	uint64_t synced_record; /* newest record within `synced`, 0 if none */
};

struct cursor {
	char name[TXLOG_CURSOR_NAME_MAX + 1];
	uint64_t position;
	bool registered; /* by this process; loaded-only cursors still hold segments */
};

struct txlog {
	struct txlog_options opts; /* opts.dir points at `dir` */
	char *dir;
	int dirfd, cdirfd, qdirfd; /* the log, cursors/ and quarantine/ directories */

	/* Writer state: under mu. */
	pthread_mutex_t mu;
	pthread_cond_t flush_cv; /* wakes the flusher early (stop) */
	pthread_cond_t idle_cv;  /* the flusher finished an fdatasync */
	struct open_seg open[TXLOG_MAX_OPEN_SEGS];
	size_t nopen; /* open[nopen - 1] is the current segment */
	uint64_t next_index;
	bool failed;             /* a failed fsync could not be repaired: appends refused */
	int64_t failed_retry_us; /* when leaving the failed state was last tried */
	bool lost;               /* records were discarded since the last txlog_sync */
	/* txlog_group_begin: the flusher syncs nothing past this point of segment
	 * `hold_first` (nor any newer segment) until txlog_sync ends the group. */
	bool group_open;
	uint64_t hold_first, hold_offset, hold_record;
	bool need_roll;    /* the current segment has an unknown tail: leave it */
	bool flusher_busy; /* the flusher is in fdatasync on snapshot fds */
	bool stop;
	bool has_flusher;
	pthread_t flusher;
	txlog_fsync_hook fsync_hook;
	void *fsync_hook_arg;

	/* Segment list, oldest first: under seg_lock. */
	pthread_mutex_t seg_lock;
	struct seg_info *segs;
	size_t nsegs, segs_cap;

	/* Cursors: under cur_lock. */
	pthread_mutex_t cur_lock;
	struct cursor *cursors;
	size_t ncursors;
	/* Lowest cursor position (0 without cursors), for the writer, which may not
	 * take cur_lock: a full budget rolls a segment every cursor has passed. */
	_Atomic uint64_t min_cursor;

	_Atomic uint64_t last_index, durable_index, readable_index;
	_Atomic bool closed;
	_Atomic uint64_t records_appended, bytes_appended, records_quarantined, bytes_quarantined,
	    bytes_truncated, bad_segment_headers, fsync_failures, budget_refusals;
	_Atomic uint64_t max_bytes;      /* the budget: opts.max_bytes, changed by reloads */
	_Atomic uint64_t external_bytes; /* the blob store's, in the same budget */
	_Atomic uint64_t fsync_buckets[TXLOG_FSYNC_BUCKETS + 1], fsync_sum_us;
};

/* ---- segment files (segment.c) ------------------------------------------ */

void seg_name(char out[SEG_NAME_BUF], uint64_t first_index);
bool seg_parse_name(const char *name, uint64_t *first_index);
void seg_header_encode(uint8_t out[TXLOG_SEGMENT_HEADER], uint64_t first_index);
bool seg_header_ok(const uint8_t *hdr, size_t n, uint64_t first_index);
/* Sorted first indices of the segment files in a directory. With remove_tmp,
 * leftovers of an interrupted create or rewrite (never holding acked data) go. */
int seg_list_dir(int dirfd, bool remove_tmp, uint64_t **out, size_t *n);
/* Creates `<first>.seg` atomically (temp with header, fsync, rename, fsync dir). */
int seg_create(txlog *log, uint64_t first_index, int *fd_out);
/* fdatasync through the test hook, timed into the histogram. */
int seg_fsync(txlog *log, int fd);
/* Records one fdatasync of `us` microseconds in the histogram. */
void fsync_observe(txlog *log, int64_t us);
/* Appends a seg_info (seg_lock held by the caller). */
int seg_list_push(txlog *log, const struct seg_info *si);

int io_pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *got);
int io_write_full(int fd, const void *buf, size_t n);
int io_copy_range(int src, uint64_t off, uint64_t len, int dst, uint8_t *buf, size_t bufsz);
/* Logs `what` with errno and returns the translated error. */
int io_fail(const char *what, const char *name);
/* Deletes segments every cursor has passed (takes cur_lock; not with mu held). */
void cursors_release(txlog *log);

/* ---- frame scanning (scan.c) -------------------------------------------- */

/* A windowed reader over one file that finds and checks frames. It never reads
 * at or past `bound` and never buffers more than max(chunk, one frame that fits
 * in the file), so arbitrary bytes cannot make it allocate without limit. */
struct frame_scan {
	int fd;
	uint64_t bound;
	uint32_t max_record;
	size_t chunk;
	uint8_t *buf;
	size_t cap;
	uint64_t buf_off; /* file offset of buf[0] */
	size_t buf_len;
};

struct frame {
	uint64_t index;
	uint32_t len;
	const uint8_t *payload; /* in the scan's buffer, valid until it moves */
};

void scan_init(struct frame_scan *s, uint32_t max_record, size_t chunk);
void scan_reset(struct frame_scan *s, int fd, uint64_t bound);
/* Bounds only grow for a live segment; the window keeps what it has. */
void scan_set_bound(struct frame_scan *s, uint64_t bound);
void scan_fini(struct frame_scan *s);
/* [off, off + n) as a pointer into the window, or NULL (past the file's end; the
 * bound then shrinks to it) with *err set on an I/O error. */
const uint8_t *scan_fill(struct frame_scan *s, uint64_t off, size_t n, int *err);
/* 1: a valid frame with index ≥ min_index starts at off (f filled); 0: not;
 * negative: I/O error. */
int scan_frame_at(struct frame_scan *s, uint64_t off, uint64_t min_index, struct frame *f);
/* 1: *at is the next offset ≥ from where a valid frame begins; 0: none before
 * the bound; negative: I/O error. */
int scan_resync(struct frame_scan *s, uint64_t from, uint64_t min_index, uint64_t *at);

/* ---- recovery.c, cursor.c ------------------------------------------------ */

/* Scans and repairs every segment, fills the segment list, calls on_record.
 * *last_valid is the highest valid record index found (0 if none). */
int recovery_run(txlog *log, uint64_t *last_valid);

int cursors_load(txlog *log);
uint64_t cursors_max_position(txlog *log);
void cursors_free(txlog *log);

#endif
