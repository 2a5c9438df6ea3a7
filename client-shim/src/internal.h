/*
 * internal.h — the inside of libtrackd: one run, its batch buffer and its sender.
 *
 * Data flow: a recording call (td_log, …) validates its items without the lock,
 * then, under the run's one mutex, encodes one protobuf Record straight into
 * the *open batch*, framed as field 3 of a Batch message (tag 0x1a, varint
 * length, bytes): item records by the hand encoder in encode.c, the rare
 * others (RunStart, RunExit, console output) by protobuf-c. Sealing moves the open batch to the FIFO of *sealed*
 * batches and gives it the next seq; the sender thread sends the oldest sealed
 * batch, wrapped in a hand-built Request/Batch envelope, and frees it once the
 * agent acknowledges that seq. Record bytes are encoded exactly once.
 *
 * Who seals: the sender, every flush_interval_ms or when woken because the open
 * batch reached batch_bytes (or when the run is finishing); a recording call
 * only when the next record would take the open batch over the message limit
 * or the per-batch record limit.
 *
 * Bound: buffered_bytes (framed record bytes of the open batch plus every
 * sealed batch) never exceeds max_buffer_bytes; a record that would cross it is
 * refused with TD_ERR_FULL and counted. Only the final RunExit record may pass
 * the bound, so a full buffer can still end the run cleanly.
 *
 * Threading: every field below `mu` is guarded by it. The sender reads the head
 * batch's bytes without the lock: a sealed batch never changes, and only the
 * sender unlinks and frees it (td_finish frees the rest after joining it).
 * The sender never holds the lock across I/O, so recording calls never wait on
 * the agent.
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

#include "trackd/trackd.h"
#include "trackd/v1/limits.h"
#include "trackd/v1/trackd.pb-c.h"

/* Largest Request/Batch envelope written in front of the record bytes:
 * version (2) + batch tag and length (1 + 10) + session id (2 + 16) + seq (1 + 10). */
#define TD_ENVELOPE_MAX 48u

/* Largest framed-records part of one batch, so the whole request stays within
 * the agent's default message limit. */
#define TD_MAX_BATCH_RECORD_BYTES (TRACKD_DEFAULT_MAX_MESSAGE_BYTES - TD_ENVELOPE_MAX)

#define TD_DEFAULT_MAX_BUFFER_BYTES  ((size_t)64 << 20)
#define TD_MIN_MAX_BUFFER_BYTES      ((size_t)64 << 10)
#define TD_DEFAULT_BATCH_BYTES       ((size_t)256 << 10)
#define TD_DEFAULT_FLUSH_INTERVAL_MS 10u
#define TD_DEFAULT_FINISH_TIMEOUT_MS 30000
/* How long the sender waits for a reply (and for a connection to send on)
 * before it sends the same batch again. */
#define TD_REPLY_TIMEOUT_MS 2000
/* Capped exponential backoff between failed attempts. */
#define TD_BACKOFF_MIN_MS 10u
#define TD_BACKOFF_MAX_MS 1000u
/* Redial interval while the agent is not listening. */
#define TD_RECONNECT_MIN_MS 10
#define TD_RECONNECT_MAX_MS 500
/* Replies are an Ack or an Error with a short message. */
#define TD_MAX_REPLY_BYTES ((size_t)64 << 10)

/* A batch of framed records. The open batch has seq 0. */
struct td_batch {
	struct td_batch *next;
	uint64_t seq;
	uint32_t n_records;
	size_t len; /* bytes used in data */
	size_t cap;
	uint8_t *data;
};

/* Encoded lengths of one item, computed before it is written (protobuf puts
 * a length in front of every nested message). */
struct td_item_len {
	size_t item;  /* Item message */
	size_t key;   /* key bytes */
	size_t value; /* Value message */
	size_t inner; /* string bytes, or the MapValue message */
};

/* Reusable per-run encoding state, so encoding a record does not allocate:
 * a record with N items (nested included) and M maps uses N lens (hand
 * encoder) or N items, values and pointers plus M maps (protobuf-c structs).
 * Grows, never shrinks. */
struct td_scratch {
	struct td_item_len *lens;
	Trackd__V1__Item *items;
	Trackd__V1__Value *values;
	Trackd__V1__Item **ptrs;
	size_t cap_items;
	Trackd__V1__MapValue *maps;
	size_t cap_maps;
};

/* A record whose body is a few scalar fields followed by repeated items:
 * Record{run_id = 1, <body_key>: {head…, <items_key>: Item…}}. HistoryRow,
 * SummaryUpdate and ConfigUpdate have this shape; they are the hot path and
 * are encoded by hand (protobuf-c's reflective packer was over half of the
 * cost of td_log). The bytes equal protobuf-c's (client_test checks). */
struct td_items_record {
	const char *run_id;
	size_t run_id_len;
	uint8_t body_key;    /* Record field key: history, summary or config */
	const uint8_t *head; /* body fields that precede the items, encoded */
	size_t head_len;
	uint8_t items_key; /* key of the items field in the body */
	const td_item *items;
	size_t n;
	/* Set by td_items_record_measure. */
	size_t body_len;
	size_t record_len;
};

/* Record field keys (field << 3 | length-delimited). */
#define TD_KEY_RECORD_HISTORY 0x1a
#define TD_KEY_RECORD_SUMMARY 0x22
#define TD_KEY_RECORD_CONFIG  0x2a
#define TD_KEY_HISTORY_ITEMS  0x22
#define TD_KEY_UPDATE_ITEMS   0x0a
#define TD_HISTORY_HEAD_MAX   32

/* What validation counted, so encoding can size its scratch up front. */
struct td_item_count {
	size_t items; /* nested included */
	size_t maps;
};

struct td_run {
	/* Immutable after td_init. */
	bool disabled;
	char run_id[TRACKD_MAX_RUN_ID_BYTES + 1];
	size_t run_id_len;
	uint8_t session_id[TRACKD_SESSION_ID_BYTES];
	char url[256];
	size_t max_buffer_bytes;
	size_t batch_bytes;
	uint32_t flush_interval_ms;
	nng_socket sock;
	bool sock_open;
	pthread_t sender;
	bool sender_started;

	pthread_mutex_t mu;
	pthread_cond_t wake;    /* the sender waits here */
	pthread_cond_t drained; /* td_finish waits here for acks */

	/* Guarded by mu. */
	struct td_batch open;
	struct td_batch *head, *tail; /* sealed, unacknowledged, in seq order */
	struct td_batch *spare;       /* an acknowledged batch kept for reuse */
	uint64_t next_seq;
	size_t buffered_bytes;
	size_t reserved;     /* framed bytes of the record being written */
	bool seal_requested; /* open batch reached batch_bytes */
	bool finishing;      /* RunExit buffered: seal at once */
	bool stopping;       /* the sender must exit */
	bool closed;         /* no more records */
	uint64_t records_logged;
	uint64_t records_acked;
	uint64_t records_refused_full;
	uint64_t records_rejected;
	char agent_error[256];     /* last non-retryable error from the agent */
	char transport_error[256]; /* last reason a send attempt failed */
	struct td_scratch scratch;
};

/* error.c */
/* Sets the calling thread's td_last_error() detail; returns err. */
int td_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* validate.c */
bool td_utf8_valid(const char *s, size_t n);
/* Checks items against the default limits; on failure sets the detail (prefixed
 * with `what`) and returns TD_ERR_INVALID. */
int td_check_items(const char *what, const td_item *items, size_t n, struct td_item_count *count);
/* Checks an optional string option: NULL passes; otherwise valid UTF-8 of at
 * most max bytes (and non-empty if required). */
int td_check_text(const char *what, const char *s, size_t max, bool non_empty);

/* encode.c */
size_t td_varint_size(uint64_t v);
size_t td_varint_put(uint8_t *dst, uint64_t v);
/* Writes the Request{protocol_version, batch = Batch{session_id, seq, …}}
 * prefix for `records_len` bytes of framed records; returns its length. */
size_t td_envelope_put(uint8_t dst[TD_ENVELOPE_MAX],
                       const uint8_t session_id[TRACKD_SESSION_ID_BYTES], uint64_t seq,
                       size_t records_len);
int td_scratch_reserve(struct td_scratch *s, const struct td_item_count *count);
void td_scratch_fini(struct td_scratch *s);
/* Points protobuf-c structs in `s` at the caller's items (nothing copied);
 * returns the top-level item pointer array. Needs td_scratch_reserve first. */
Trackd__V1__Item **td_scratch_fill(struct td_scratch *s, const td_item *items, size_t n);
/* Lengths of r (items validated, scratch reserved); returns r->record_len. */
size_t td_items_record_measure(struct td_scratch *s, struct td_items_record *r);
/* Writes the Record measured last; returns the end of what was written. */
uint8_t *td_items_record_write(const struct td_scratch *s, const struct td_items_record *r,
                               uint8_t *dst);
/* Encodes HistoryRow fields 1-3 (step unless TD_STEP_AUTO, commit if false,
 * client_time_us); returns their length (≤ TD_HISTORY_HEAD_MAX). */
size_t td_history_head(uint8_t *dst, int64_t step, bool commit, int64_t client_time_us);
int64_t td_wall_us(void);
int64_t td_mono_ms(void);

/* buffer.c — all with run->mu held. */
/* Makes room in the open batch for one Record of record_len bytes (framing
 * added here); TD_ERR_FULL (counted) if that would cross the bound, unless
 * bypass_bound. On success *dst is where the unframed Record goes; finish
 * with td_buffer_commit_locked before unlocking. */
int td_buffer_reserve_locked(struct td_run *run, size_t record_len, bool bypass_bound,
                             uint8_t **dst);
void td_buffer_commit_locked(struct td_run *run);
/* Encodes rec with protobuf-c and appends it (reserve + pack + commit). */
int td_buffer_append_locked(struct td_run *run, const ProtobufCMessage *rec, bool bypass_bound);
/* Moves a non-empty open batch to the sealed FIFO with the next seq. */
int td_buffer_seal_locked(struct td_run *run);
/* Unlinks the head batch after the agent acked (acked = true) or refused it. */
void td_buffer_release_head_locked(struct td_run *run, bool acked);
uint64_t td_buffer_unacked_records_locked(const struct td_run *run);
void td_buffer_free_all(struct td_run *run);

/* sender.c */
int td_sender_start(struct td_run *run);
/* Asks the sender to exit, unblocks its I/O by closing the socket, joins it. */
void td_sender_stop(struct td_run *run);

/* Test hook (static library only): bytes counted against max_buffer_bytes. */
size_t td_internal_buffered_bytes(td_run *run);

#endif
