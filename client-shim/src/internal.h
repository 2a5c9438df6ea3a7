/*
 * internal.h — the inside of libtrackd: one run, its batch buffer and its sender.
 *
 * Data flow: a recording call (td_log, …) validates its items without the lock,
 * then, under the run's one mutex, encodes one protobuf Record straight into
 * the *open batch*, framed as Batch.records entries (key, varint
 * length, bytes): item records by the hand encoder in encode.c, the rare
 * others (RunStart, RunExit, console output) by protobuf-c. Sealing moves the open batch to the
 * FIFO of *sealed* batches and gives it the next seq; the sender thread sends the oldest sealed
 * batch, wrapped in a hand-built Request/Batch envelope, and frees it once the
 * agent acknowledges that seq. Record bytes are encoded exactly once.
 *
 * Who seals: the sender, every flush_interval_ms or when woken because the open
 * batch reached batch_bytes (or when the run is finishing); a recording call
 * only when the next record would take the open batch over the message limit
 * or the per-batch record limit.
 *
 * Bound: buffered_bytes (framed record bytes of the open batch plus every
 * sealed batch) never exceeds max_buffer_bytes. A record that would cross it
 * first makes room by spilling (spool.c): if the agent is unreachable, every
 * sealed batch (the open one sealed first) is appended to the spool file, in
 * seq order, so the spooled batches are always the oldest unacknowledged ones
 * and the sender sends them (read back from the file) before the batches in
 * memory. If the agent is reachable, or the spool cannot take them, the record
 * is refused with TD_ERR_FULL and counted. Only the final RunExit record may
 * pass the bound, so a full buffer can still end the run cleanly.
 *
 * Threading: every field below `mu` is guarded by it. The sender copies the
 * head batch into a message without the lock while the batch is `pinned`
 * (a spill waits for `unpinned` before it takes the head); after that it only
 * remembers the seq, so a spill may free the batch while its request is in
 * flight. Only the sender and a spill (both under the lock) unlink batches.
 * The sender never holds the lock across I/O, so recording calls never wait on
 * the agent.
 *
 * Other threads of a run, all started with every signal blocked: the replay
 * thread (spool files of dead processes, spool.c), the console reader
 * (console.c) and the signal thread (signals.c).
 *
 * Everything here has hidden visibility (the library is built with
 * -fvisibility=hidden); tests reach it by linking the static library.
 */
#ifndef TRACKD_CLIENT_INTERNAL_H
#define TRACKD_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "buf.h"
#include "nng_close.h" /* nng_close_bounded (common/nng) */
#include "trackd/trackd.h"
#include "trackd/v1/limits.h"
#include "trackd/v1/trackd.pb-c.h"
#include "trackd/v1/wire.h"

/* Largest Request/Batch envelope written in front of the record bytes:
 * version (2) + batch tag and length (1 + 10) + session id (2 + 16) + seq (1 + 10). */
#define TDI_ENVELOPE_MAX 48u

/* Largest framed-records part of one batch, so the whole request stays within
 * the agent's default message limit. */
#define TDI_MAX_BATCH_RECORD_BYTES (TRACKD_DEFAULT_MAX_MESSAGE_BYTES - TDI_ENVELOPE_MAX)

#define TDI_DEFAULT_MAX_BUFFER_BYTES  ((size_t)64 << 20)
#define TDI_MIN_MAX_BUFFER_BYTES      ((size_t)64 << 10)
#define TDI_DEFAULT_BATCH_BYTES       ((size_t)256 << 10)
#define TDI_DEFAULT_FLUSH_INTERVAL_MS 10u
#define TDI_DEFAULT_FINISH_TIMEOUT_MS 30000
/* How long the sender waits for a reply (and for a connection to send on)
 * before it sends the same batch again. */
#define TDI_REPLY_TIMEOUT_MS 2000
/* A sent batch that got no reply in time is sent again (same seq: the agent
 * acknowledges the duplicate without storing it). An agent that is merely slow
 * would get every batch twice and fall further behind, so each reply timeout
 * doubles the next attempt's wait up to this; any answer resets it. */
#define TDI_REPLY_TIMEOUT_MAX_MS 16000
/* Capped exponential backoff between failed attempts. */
#define TDI_BACKOFF_MIN_MS 10u
#define TDI_BACKOFF_MAX_MS 1000u
/* Redial interval while the agent is not listening. */
#define TDI_RECONNECT_MIN_MS 10
#define TDI_RECONNECT_MAX_MS 500
/* Attempts finding no connection (TDI_REPLY_TIMEOUT_MS each) before the sender
 * (or a spool replay) replaces its dialer: NNG 1.5's dialer stops redialling for good when a
 * connection is closed during the SP handshake (an agent killed right after
 * accepting), so waiting for it would wait forever. */
#define TDI_REDIAL_AFTER 3u
/* How long closing a socket may take: NNG 1.5.2's nng_close can hang
 * (nng_close.h); a training process must not hang in td_finish because of it. */
#define TDI_CLOSE_TIMEOUT_MS 2000
/* Replies are an Ack or an Error with a short message. */
#define TDI_MAX_REPLY_BYTES ((size_t)64 << 10)
/* Query replies carry JSON (history pages): bounded, but generously. */
#define TDI_MAX_QUERY_REPLY_BYTES    ((size_t)256 << 20)
#define TDI_DEFAULT_QUERY_TIMEOUT_MS 10000
/* td_init's resume check and the state-dir lookup must not hold up a
 * training script for long when the agent is wedged. */
#define TDI_INIT_QUERY_TIMEOUT_MS 2000
#define TDI_DIR_QUERY_TIMEOUT_MS  1000
/* The footer waits at most this long for the agent's wandb sink to learn the
 * run's URL (a short run ends before the backend answered its UpsertBucket);
 * not at all when the backend is failing or there is no sink. */
#define TDI_FOOTER_URL_WAIT_MS       3000
#define TDI_DEFAULT_MAX_SPOOL_BYTES  ((uint64_t)1 << 30)
#define TDI_DEFAULT_FLUSH_TIMEOUT_MS 30000
/* td_finish stops waiting for the agent (and spools) once the sender found no
 * connection to send on and this many checks, this far apart, found no agent
 * that could answer: nothing listens at the address and none can be started,
 * so waiting out the timeout gains nothing. Several checks: an agent
 * restarting unlinks and re-creates its socket. The sender's evidence first:
 * the check connects, and a listener that is there must not see probes. */
#define TDI_NO_AGENT_CHECK_MS 100
#define TDI_NO_AGENT_CHECKS   3
/* How long the signal thread waits for the agent before spooling the rest. */
#define TDI_SIGNAL_FINISH_TIMEOUT_MS 5000
/* Spool frame header: u32 length, u32 CRC32C of the Request bytes (LE). */
#define TDI_SPOOL_FRAME_HEADER 8u

/* A batch of framed records. The open batch has seq 0. */
struct tdi_batch {
	struct tdi_batch *next;
	uint64_t seq;
	uint32_t n_records;
	size_t len; /* bytes used in data */
	size_t cap;
	uint8_t *data;
};

/* Encoded lengths of one item, computed before it is written (protobuf puts
 * a length in front of every nested message). */
struct tdi_item_len {
	size_t item;  /* Item message */
	size_t key;   /* key bytes */
	size_t value; /* Value message */
	size_t inner; /* string bytes, or the MapValue / ListValue message */
};

/* Reusable per-run encoding state, so encoding a record does not allocate:
 * a record with N items (nested items and list elements included), M maps and
 * L lists uses N lens (hand encoder) or N items, values and pointers plus M
 * maps and L lists (protobuf-c structs; a list element uses only its value
 * and value pointer). Grows, never shrinks. */
struct tdi_scratch {
	struct tdi_item_len *lens;
	Trackd__V1__Item *items;
	Trackd__V1__Value *values;
	Trackd__V1__Item **ptrs;
	Trackd__V1__Value **vptrs;
	size_t cap_items;
	Trackd__V1__MapValue *maps;
	size_t cap_maps;
	Trackd__V1__ListValue *lists;
	size_t cap_lists;
};

/* A record whose body is a few scalar fields followed by repeated items:
 * Record{run_id = 1, <body_key>: {head…, <items_key>: Item…}}. HistoryRow,
 * SummaryUpdate and ConfigUpdate have this shape; they are the hot path and
 * are encoded by hand (protobuf-c's reflective packer was over half of the
 * cost of td_log). The bytes equal protobuf-c's (client_test checks). */
struct tdi_items_record {
	const char *run_id;
	size_t run_id_len;
	uint8_t body_key;    /* Record field key: history, summary or config */
	const uint8_t *head; /* body fields that precede the items, encoded */
	size_t head_len;
	uint8_t items_key; /* key of the items field in the body */
	const td_item *items;
	size_t n;
	/* Set by tdi_items_record_measure. */
	size_t body_len;
	size_t record_len;
};

/* Keys of the item records' bodies (trackd/v1/wire.h). */
#define TDI_KEY_RECORD_HISTORY WIRE_KEY(RECORD, HISTORY)
#define TDI_KEY_RECORD_SUMMARY WIRE_KEY(RECORD, SUMMARY)
#define TDI_KEY_RECORD_CONFIG  WIRE_KEY(RECORD, CONFIG)
#define TDI_KEY_HISTORY_ITEMS  WIRE_KEY(HISTORY_ROW, ITEMS)
#define TDI_KEY_SUMMARY_ITEMS  WIRE_KEY(SUMMARY_UPDATE, ITEMS)
#define TDI_KEY_CONFIG_ITEMS   WIRE_KEY(CONFIG_UPDATE, ITEMS)
#define TDI_HISTORY_HEAD_MAX   32

/* What validation counted, so encoding can size its scratch up front. */
/* The limits records are checked against: limits.h's defaults until an ack
 * tells the agent's own (trackd.proto, Limits), then the smaller of each pair —
 * so a record the agent would refuse is refused by td_log with a clear error,
 * instead of taking its whole batch down with it at the agent. Batches sealed
 * before the first ack assume the defaults. */
struct tdi_limits {
	uint64_t message_bytes, records_per_batch, items_per_record, key_bytes, string_bytes,
	    nesting_depth, list_length;
};
#define TDI_N_LIMITS 7
extern const struct tdi_limits tdi_default_limits;
/* The batch bytes (records, without the envelope) one request may carry. */
static inline size_t tdi_limits_batch_bytes(const struct tdi_limits *l)
{
	return (size_t)l->message_bytes - TDI_ENVELOPE_MAX;
}

struct tdi_item_count {
	size_t items; /* nested items and list elements included */
	size_t maps;
	size_t lists;
};

/* This process's spool file (spool.c). Spooled frames are the oldest
 * unacknowledged batches, in seq order, from read_off to write_off; frames
 * before read_off are acknowledged. The file is created (and locked) at the
 * first spill, emptied whenever everything in it is acknowledged, and deleted
 * at td_finish unless it still holds unacknowledged frames. */
struct tdi_spool {
	bool enabled;
	char dir[600]; /* <spool_dir>/<agent hash> */
	char path[700];
	int fd; /* -1 until the first spill */
	uint64_t max_bytes;
	uint64_t write_off, read_off;
	uint64_t pending_batches, pending_records;
	/* The frame at read_off, when a spill wrote it into an empty spool (the
	 * sender may have its batch in flight: see sender.c settle()). */
	uint64_t first_frame_len;
	uint32_t first_frame_records;
	uint64_t records_written; /* ever, for the report */
	char error[256];          /* why the last spill failed */
};

/* Replaying spool files left by dead processes (spool.c). */
struct tdi_replay {
	pthread_t thread;
	bool started;
	int fds[64];
	char *paths[64];
	size_t n;
	nng_socket sock;   /* closed by td_finish to cut a wait short */
	nng_dialer dialer; /* the replay thread's until then (replaced by it) */
	bool sock_open;
	pthread_cond_t cond; /* the thread's back-off waits here */
	bool stop;           /* guarded by the run's mu */
	bool done;           /* guarded by the run's mu */
};

struct tdi_mirror;
struct tdi_console;
struct tdi_signals;

struct td_run {
	/* Immutable after td_init. */
	bool disabled;
	char run_id[TRACKD_MAX_RUN_ID_BYTES + 1];
	size_t run_id_len;
	char entity[TRACKD_MAX_NAME_BYTES + 1];
	char project[TRACKD_MAX_NAME_BYTES + 1];
	td_mode mode;
	td_resume resume;
	int64_t start_time_us;
	bool print_footer;
	uint8_t session_id[TRACKD_SESSION_ID_BYTES];
	char url[256];
	bool private_agent; /* url is the private agent's: the sender restarts it (autostart.h) */
	size_t max_buffer_bytes;
	size_t batch_bytes;
	uint32_t flush_interval_ms;
	nng_socket sock;
	bool sock_open;
	nng_dialer dialer; /* the sender's; replaced by sender.c redial() */
	/* What the agent told (tdi_limits_learn, any thread); read with
	 * tdi_limits_load, also without mu: validation runs unlocked. */
	_Atomic uint64_t limits[TDI_N_LIMITS];
	uint32_t unreachable;     /* consecutive attempts that found no connection */
	int32_t reply_timeout_ms; /* the sender's current wait (TDI_REPLY_TIMEOUT_MAX_MS) */
	pthread_t sender;
	bool sender_started;

	pthread_mutex_t mu;
	pthread_cond_t wake;     /* the sender waits here */
	pthread_cond_t drained;  /* td_finish waits here for acks */
	pthread_cond_t unpinned; /* a spill waits here for the sender's copy */

	/* Guarded by mu. */
	struct tdi_batch open;
	struct tdi_batch *head, *tail;  /* sealed, in memory, unacknowledged, in seq order */
	struct tdi_batch *spare;        /* an acknowledged batch kept for reuse */
	const struct tdi_batch *pinned; /* being copied by the sender */
	uint64_t next_seq;
	uint64_t acked_through; /* every seq up to this one is acknowledged */
	size_t buffered_bytes;
	size_t reserved;     /* framed bytes of the record being written */
	bool seal_requested; /* open batch reached batch_bytes */
	bool finishing;      /* RunExit buffered: seal at once */
	bool stopping;       /* the sender must exit */
	bool closed;         /* no more records */
	bool agent_ok;       /* the last attempt got an answer: no spilling */
	bool no_connection;  /* the last attempt found no connection to send on */
	uint64_t records_logged;
	uint64_t records_acked;
	uint64_t records_refused_full;
	uint64_t records_rejected;
	char agent_error[256];     /* last non-retryable error from the agent */
	char transport_error[256]; /* last reason a send attempt failed */
	struct tdi_scratch scratch;
	struct tdi_spool spool;
	struct tdi_replay replay;
	/* W&B step of the row being built (HistoryRow semantics as the agent's). */
	int64_t step;
	bool has_pending;
	struct tdi_mirror *mirror; /* what the footer shows */
	char *state_dir;           /* the agent's, once asked */
	char *known_dir;           /* resumed run: the dir the agent reported */
	int finish_owner;          /* 0 none, 1 the application, 2 the signal thread */
	int pending_signal;        /* arrived while the application was finishing */

	/* Set up in td_init and torn down in td_finish, by one thread. */
	struct tdi_console *console;
	struct tdi_signals *signals;
};

/* error.c */
/* Sets the calling thread's td_last_error() detail; returns err. */
int tdi_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* validate.c */
/* Checks items against the default limits; on failure sets the detail (prefixed
 * with `what`) and returns TD_ERR_INVALID. */
int tdi_check_items(const struct tdi_limits *lim, const char *what, const td_item *items, size_t n,
                    struct tdi_item_count *count);
/* The limits in force for run (see struct tdi_limits). Any thread. */
void tdi_limits_load(struct td_run *run, struct tdi_limits *out);
/* Takes the agent's limits from an ack: the smaller of each and the default;
 * absent or zero fields leave the default. Any thread. */
void tdi_limits_learn(struct td_run *run, const Trackd__V1__Limits *agent);
/* Checks an optional string option: NULL passes; otherwise valid UTF-8 of at
 * most max bytes (and non-empty if required). */
int tdi_check_text(const char *what, const char *s, size_t max, bool non_empty);

/* encode.c */
/* Writes the Request{protocol_version, batch = Batch{session_id, seq, …}}
 * prefix for `records_len` bytes of framed records; returns its length. */
size_t tdi_envelope_put(uint8_t dst[TDI_ENVELOPE_MAX],
                        const uint8_t session_id[TRACKD_SESSION_ID_BYTES], uint64_t seq,
                        size_t records_len);
int tdi_scratch_reserve(struct tdi_scratch *s, const struct tdi_item_count *count);
void tdi_scratch_fini(struct tdi_scratch *s);
/* Points protobuf-c structs in `s` at the caller's items (nothing copied);
 * returns the top-level item pointer array. Needs tdi_scratch_reserve first. */
Trackd__V1__Item **tdi_scratch_fill(struct tdi_scratch *s, const td_item *items, size_t n);
/* Lengths of r (items validated, scratch reserved); returns r->record_len. */
size_t tdi_items_record_measure(struct tdi_scratch *s, struct tdi_items_record *r);
/* Writes the Record measured last; returns the end of what was written. */
uint8_t *tdi_items_record_write(const struct tdi_scratch *s, const struct tdi_items_record *r,
                                uint8_t *dst);
/* Encodes HistoryRow fields 1-3 (step unless TD_STEP_AUTO, commit if false,
 * client_time_us); returns their length (≤ TDI_HISTORY_HEAD_MAX). */
size_t tdi_history_head(uint8_t *dst, int64_t step, bool commit, int64_t client_time_us);
int64_t tdi_wall_us(void);
int64_t tdi_mono_ms(void);
/* pthread_cond_timedwait until a tdi_mono_ms() deadline (conds use the
 * monotonic clock). */
void tdi_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t deadline_ms);

/* buffer.c — all with run->mu held. */
/* Makes room in the open batch for one Record of record_len bytes (framing
 * added here); TD_ERR_FULL (counted) if that would cross the bound, unless
 * bypass_bound. On success *dst is where the unframed Record goes; finish
 * with tdi_buffer_commit_locked before unlocking. */
int tdi_buffer_reserve_locked(struct td_run *run, size_t record_len, bool bypass_bound,
                              uint8_t **dst);
void tdi_buffer_commit_locked(struct td_run *run);
/* Encodes rec with protobuf-c and appends it (reserve + pack + commit). */
int tdi_buffer_append_locked(struct td_run *run, const ProtobufCMessage *rec, bool bypass_bound);
/* Moves a non-empty open batch to the sealed FIFO with the next seq. */
int tdi_buffer_seal_locked(struct td_run *run);
/* Unlinks the head batch after the agent acked (acked = true) or refused it. */
void tdi_buffer_release_head_locked(struct td_run *run, bool acked);
uint64_t tdi_buffer_unacked_records_locked(const struct td_run *run);
void tdi_buffer_free_all(struct td_run *run);

/* Makes room for `framed` more bytes by spilling to the spool if the agent is
 * unreachable (spool.c). TD_OK when there is room now; TD_ERR_FULL otherwise
 * (not counted here). */
int tdi_buffer_make_room_locked(struct td_run *run, size_t framed);

/* sender.c */
int tdi_sender_start(struct td_run *run);
/* Asks the sender to exit, unblocks its I/O by closing the socket, joins it. */
void tdi_sender_stop(struct td_run *run);
/* The outcome of one request carrying a batch. */
enum tdi_outcome {
	TDI_ACKED,    /* agent stored the batch (or had already) */
	TDI_REJECTED, /* agent refused it for good: drop and count */
	TDI_RETRY,    /* no answer, connection trouble or a retryable error */
};
/* Creates and starts a non-blocking dialer for url on sock with the reconnect
 * and reply-size settings every libtrackd connection uses. Returns an NNG error
 * (0 on success). A caller that finds no connection TDI_REDIAL_AFTER times in a
 * row closes the dialer and starts a new one (NNG 1.5's may have given up). */
int tdi_dialer_start(nng_socket sock, const char *url, nng_dialer *out);

/* How far an attempt got: no connection to send on, sent but no reply within
 * the receive timeout, or an answer (a retryable error is an answer). */
enum tdi_reach { TDI_NO_CONNECTION, TDI_NO_REPLY, TDI_ANSWERED };

/* Sends req (consumed in every case) on sock and waits for the ack of seq;
 * `why` explains any outcome but TDI_ACKED; *reach tells how far it got. The
 * limits an ack carries go to `learn` (may be NULL). */
enum tdi_outcome tdi_exchange(struct td_run *learn, nng_socket sock, const char *url, nng_msg *req,
                              uint64_t seq, enum tdi_reach *reach, char *why, size_t why_len);

/* spool.c */
/* Sets up the spool from the options (nothing on disk yet). */
int tdi_spool_init(struct td_run *run, const char *dir, size_t max_bytes);
/* Spills every batch in memory (the open one sealed first) to the spool: with
 * mu held; waits for the sender's copy if the head is pinned. TD_OK if all of
 * them went, else TD_ERR_FULL with run->spool.error saying why (what did not
 * fit stays in memory). */
int tdi_spool_spill_locked(struct td_run *run);
/* Sender: reads the oldest unacknowledged spooled frame into a new request;
 * *seq and *n_records from its envelope. Without mu (only the sender reads,
 * and frames before write_off never change). */
int tdi_spool_read_head(struct td_run *run, uint64_t off, nng_msg **req, uint64_t *seq,
                        uint32_t *n_records, uint64_t *frame_len);
/* Sender, with mu: the head frame was acknowledged or refused. */
void tdi_spool_pop_locked(struct td_run *run, uint64_t frame_len, uint32_t n_records, bool acked);
/* Sender, with mu: the head frame cannot be read back (the file is damaged):
 * every spooled record is counted as lost and the spool starts over. */
void tdi_spool_discard_locked(struct td_run *run, const char *why);
/* td_finish, after the sender stopped: deletes an empty spool file, or syncs
 * and closes one that still holds frames (the lock goes with the close). */
void tdi_spool_close(struct td_run *run);
/* td_init: finds spool files of dead processes and starts the replay thread. */
int tdi_replay_start(struct td_run *run);
/* Asks the replay thread to stop and joins it (the files it did not finish
 * stay for the next client). */
void tdi_replay_stop(struct td_run *run);
/* The default spool dir into buf. */
int tdi_spool_default_dir(char *buf, size_t len);

/* query.c — synchronous requests for the cold paths */
/* options.socket_url / given, else $TRACKD_SOCKET, else the agent's default. */
int tdi_resolve_url(const char *given, char *url, size_t len);
/* The same, and whether the address is the private agent's (autostart.h). */
int tdi_resolve_url_kind(const char *given, char *url, size_t len, bool *private_agent);
/* One request/reply on a fresh connection. *out is freed with
 * trackd__v1__reply__free_unpacked. TD_ERR_TRANSPORT if no agent answers. */
int tdi_agent_call(const char *url, const Trackd__V1__Request *req, int timeout_ms,
                   Trackd__V1__Reply **out);
/* td_query_agent with a resolved url. */
int tdi_agent_query(const char *url, const td_query *q, int timeout_ms, char **json_out);
/* td_init's resume rules (see trackd.h); may set run->known_dir. */
int tdi_check_resume(struct td_run *run, bool explicit_id);
/* What the agent says of the run's upload to W&B (one run query: the typed
 * UploadInfo of its RunReply, from agent/cmd/queries.c). Every field is malloc'd, or NULL
 * when absent: run_url and project_url are NULL until the backend answered. */
struct tdi_upload {
	char *state; /* "disabled", "pending", "uploading", "parked", "done", … */
	char *run_url, *project_url, *last_error;
	char *display_name; /* the run's, as the agent knows it */
};
int tdi_upload_info(struct td_run *run, int timeout_ms, struct tdi_upload *out);
void tdi_upload_fini(struct tdi_upload *u);
/* Whether the run's agent has an upload sink (its status says wandb_enabled);
 * false when it does not answer. */
bool tdi_agent_uploads(struct td_run *run, int timeout_ms);

/* Most text the library builds in a struct buf (common/buf.h) for its callers
 * (status JSON, paths, footer lines): what tdi_text_copy_out can return. */
#define TDI_TEXT_MAX ((size_t)INT32_MAX)
/* snprintf-style copy of text into buf (may be NULL when len is 0); returns
 * text_len, or TD_ERR_NOMEM if that does not fit an int. */
int tdi_text_copy_out(const char *text, size_t text_len, char *buf, size_t len);

/* mirror.c — what this process logged, for the footer (with mu held) */
int tdi_mirror_new(struct td_run *run);
void tdi_mirror_free(struct tdi_mirror *m);
/* One accepted history row at `step` (before td_log moves the step). Uses the
 * key lengths tdi_items_record_measure left in run->scratch for this row. */
void tdi_mirror_row_locked(struct td_run *run, const td_item *items, size_t n, int64_t step,
                           bool commit);
void tdi_mirror_summary_locked(struct td_run *run, const td_item *items, size_t n);
void tdi_mirror_define_locked(struct td_run *run, const char *name, td_metric_summary summary);
/* The pending row counts as committed (finish, or a larger step). */
void tdi_mirror_commit_locked(struct td_run *run, int64_t step);
/* Renders history and summary plus trailer lines into *out (malloc'd). */
int tdi_mirror_render_locked(struct td_run *run, const char *const *trailer, size_t n_trailer,
                             char **out, size_t *out_len);

/* console.c */
int tdi_console_start(struct td_run *run);
/* Restores fds 1 and 2, drains what the pipes hold into the run, joins. */
void tdi_console_stop(struct td_run *run);

/* signals.c */
int tdi_signals_install(struct td_run *run);
/* Restores the previous handlers and joins the signal thread. Not from the
 * signal thread. */
void tdi_signals_uninstall(struct td_run *run);

/* run.c — the end of a run, shared by td_finish_reason and the signal thread:
 * console lines, RunExit, the wait for acks, the spool, the report and the
 * footer. It never frees the run: td_finish_reason does that afterwards, the
 * signal thread never (the process is about to die, and the application may
 * still hold the pointer). */
int tdi_run_end(struct td_run *run, int exit_code, td_exit_reason reason, int timeout_ms,
                td_finish_report *report);

/* Test hook (static library only): bytes counted against max_buffer_bytes. */
size_t tdi_run_buffered_bytes(td_run *run);

#endif
