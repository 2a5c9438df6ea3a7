/*
 * file_journal.h — the wandb sink's durable per-file upload state of one run:
 * which run files (W&B's Files tab) the run wants up, which content of each is
 * up, and which PUTs the backend has been told of (file_stream `uploaded`).
 *
 * Why a journal beside the run's .state (store.h) and not in it: the .state is
 * rewritten whole at each acknowledged snapshot, and a run may have thousands
 * of media files whose state changes one at a time; rewriting them all per PUT
 * would be quadratic. Each change is one appended event instead, synced before
 * the sink acts on it (a PUT is never recorded before its 2xx; an `uploaded`
 * listing never before the file_stream answer).
 *
 * File: `<dir>/<name>.files`, <name> as wb_state_file_name without ".state".
 *   "TRKDWF01" then events, each: u32 payload length | u32 crc32c(payload) |
 *   payload = u8 op | u8 source | u16 name length | name | u64 size
 *             | u64 log index | 32 bytes sha256 | 16 bytes md5
 *   (integers little-endian)
 *   A torn or corrupt tail (a crash mid-append) is cut at the last whole
 *   event when the journal is opened: events are appended only, so nothing
 *   before it is lost. The journal is compacted (one event per fact, written
 *   atomically) when it is opened and holds more than twice the events its
 *   table needs, and while it is written once it holds more than four events
 *   a file (and over 1024): it stays within about 4 × files events, which
 *   bounds what an open reads.
 *
 * Events (the content of a file is identified by its MD5, as W&B's client
 * skips a file whose base64 MD5 equals the last uploaded one; the SHA-256 names
 * the blob it is read from):
 *   WANT    the run wants `name` up with this content, as of `index`, the
 *           place in the log of the record that named it (increasing along
 *           the log; 0 for files the sink makes itself).
 *           Ignored when this content is already wanted, and when index is at
 *           or below the index of the WANT that holds the entry: a record
 *           replayed after a restart (the log is re-read from the run's hold)
 *           changes nothing, even when later records changed the file since.
 *           A content already up is wanted without a PUT: an unchanged file
 *           (same MD5) is never uploaded twice.
 *   PUT     a PUT of the wanted content got a 2xx: it is up.
 *   LISTED  a file_stream request naming it in `uploaded` was acknowledged.
 *   DROPPED the wanted content was given up (a permanent PUT answer, or its
 *           blob is gone): never retried, reported.
 * After kill -9: a file whose PUT event is on disk is not PUT again; one
 * whose 2xx arrived but whose PUT event did not reach the disk is PUT once
 * more (the one window, as in W&B's client, which keeps no state at all);
 * a file WANTed is PUT after the restart whatever happened before.
 *
 * Bounds: at most WB_FILES_MAX events in a table (files of one run) — a WANT
 * past it is TRACKD_ETOOBIG; names are valid run file names (run_files.h).
 *
 * Not thread-safe: one journal belongs to the sink thread. Errors: trackd_err.
 */
#ifndef TRACKD_SINKS_WANDB_FILE_JOURNAL_H
#define TRACKD_SINKS_WANDB_FILE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WB_FILES_MAX        100000u /* run files of one run */
#define WB_FILE_EVENT_FIXED (1 + 1 + 2 + 8 + 8 + 32 + 16)
#define WB_FILE_EVENT_MAX   (8 + WB_FILE_EVENT_FIXED + 1024)

enum wb_file_op { WB_FILE_WANT = 1, WB_FILE_PUT = 2, WB_FILE_LISTED = 3, WB_FILE_DROPPED = 4 };

/* Where the sink reads a file's bytes from when it PUTs it. */
enum wb_file_source {
	WB_FILE_BLOB = 1,    /* the blob store (held for the sink: blobs_hold), by sha256 */
	WB_FILE_SPOOLED = 2, /* a file the sink wrote itself (config.yaml, …), by md5 */
};

struct wb_file_event {
	uint8_t op, source;
	const char *name; /* borrowed; a valid run file name */
	uint64_t size;
	uint64_t index; /* WANT: the record's place in the log (0: made by the sink) */
	uint8_t sha256[32];
	uint8_t md5[16];
};

struct wb_file {
	char *name;
	uint8_t source;
	uint64_t size, want_index;
	uint8_t sha256[32], md5[16]; /* the content wanted up */
	bool has_put;                /* some content of name is up: put_md5 */
	uint8_t put_md5[16];
	bool listed;  /* the content up was named in an acknowledged `uploaded` */
	bool dropped; /* the content wanted was given up */
	/* Not durable: the sink's bookkeeping while it runs. */
	bool busy; /* in a CreateRunFiles batch or a PUT */
	uint32_t attempts;
	int64_t retry_at;
};

/* A run's file table, rebuilt from its journal. */
struct wb_files {
	struct wb_file *v;
	size_t n, cap;
	size_t *index; /* open addressing over v, 0 = empty, else position + 1 */
	size_t index_cap;
	size_t events; /* events in the journal (for compaction) */
	int fd;        /* the journal, open for appends; -1 = none */
	char *path;    /* of the journal (owned), for compaction */
};

void wb_files_init(struct wb_files *t);
void wb_files_fini(struct wb_files *t); /* closes the journal too */

/* The file called name, or NULL. */
struct wb_file *wb_files_find(const struct wb_files *t, const char *name);

/* Whether f still needs a PUT / a listing in `uploaded`. */
bool wb_file_needs_put(const struct wb_file *f);
bool wb_file_needs_listing(const struct wb_file *f);

/* Applies one event to the table (no I/O). *changed says whether it changed
 * anything (only changing events are written). TRACKD_EINVAL: an invalid name
 * or op, a PUT/LISTED/DROPPED for a name or content not wanted; TRACKD_ETOOBIG:
 * a WANT past WB_FILES_MAX; TRACKD_ENOMEM. */
int wb_files_apply(struct wb_files *t, const struct wb_file_event *ev, bool *changed);

/* One event's frame into out (WB_FILE_EVENT_MAX bytes do). *len its length. */
int wb_file_event_encode(const struct wb_file_event *ev, uint8_t *out, size_t cap, size_t *len);

/* Applies the whole events of data[0..len) (after the magic) in order;
 * *valid is how many bytes they take: the rest is a torn or corrupt tail. */
int wb_files_replay(struct wb_files *t, const uint8_t *data, size_t len, size_t *valid);

/* Opens (creating) the journal of run_id in dir and rebuilds t from it (t is
 * initialised here), cutting a torn tail and compacting as above. */
int wb_files_open(struct wb_files *t, const char *dir, const char *run_id);

/* Applies ev and, if it changes anything, appends it and fdatasyncs first:
 * on an I/O error the table is as before (the caller retries, or for a WANT
 * relies on the log giving the record again after a restart). */
int wb_files_record(struct wb_files *t, const struct wb_file_event *ev);

/* Whether run_id has a journal in dir. */
bool wb_files_exists(const char *dir, const char *run_id);

/* Removes run_id's journal (the run is forgotten); ENOENT is success. */
int wb_files_remove(const char *dir, const char *run_id);

#endif
