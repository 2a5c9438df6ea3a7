/*
 * blob_queue.h — file content waiting for the agent: the bytes of media
 * values and saved files, copied by the recording call and shipped by the
 * sender thread (sender.h) before the batches that reference them.
 *
 * Protocol (trackd.proto BlobQuery/BlobChunk, the agent's blobs.h): for the
 * oldest queued blob the sender asks whether the agent holds it; if not it
 * sends it in pieces of TRACKD_BLOB_CHUNK_BYTES (or less under the agent's
 * message limit) from where the agent says it has got to, until the agent
 * answers `complete` (verified and durable). Then the blob is freed. A
 * retryable refusal (the agent's disk budget, a resend after a reconnect)
 * keeps it, after the sender's backoff; a permanent one (a limit, another
 * user's run) drops it, counted as a rejected record (td_finish reports
 * it) with the agent's message as the run's agent_error.
 *
 * Ordering: every blob queued before a batch was sealed is complete before
 * the sender sends that batch (the sender drains this queue first), so the
 * agent never stores a row naming a file it has not got. Files still queued
 * at td_finish are written to the spool dir with the batches
 * (tdi_blob_spool_locked), and a replay sends them before the frames. A
 * process killed outright loses its queued files (its spooled rows then
 * name files the agent lacks: the agent logs each).
 *
 * Where the bytes wait: in memory (media values, td_save_file's bytes), in
 * an unnamed file of the spool dir (td_save_path: O_TMPFILE, so a process
 * killed outright leaves nothing behind), or in the user's own file, read
 * again as it is sent (an artifact's files, td_artifact_add_file: a file that
 * changed meanwhile is refused); the last two are read back in pieces.
 *
 * Bounds: the bytes queued in memory never exceed the run's max_buffer_bytes
 * (a second bound beside the records' buffer), those queued in spool copies
 * the run's max_spool_bytes (artifact files take neither); a blob that would
 * pass its bound is refused with TD_ERR_FULL (one larger than the bound
 * itself with TD_ERR_INVALID: it could never fit). A digest already queued is
 * not queued twice.
 *
 * Threading: everything here is guarded by the run's mu; the sender's step
 * lets go of it for the exchange.
 */
#ifndef TRACKD_CLIENT_BLOB_QUEUE_H
#define TRACKD_CLIENT_BLOB_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

struct td_run;

struct tdi_blob {
	struct tdi_blob *next;
	uint8_t digest[32];
	uint8_t *data; /* owned; NULL when the bytes are in fd or path */
	int fd;        /* owned: an unnamed spool file holding them; -1 otherwise */
	size_t len;
	/* Read from the file `path` (owned, absolute) piece by piece as it is
	 * sent instead of held in memory (td_artifact_add_file): not counted in
	 * the bound, and no fd held while it waits. */
	char *path;
	uint64_t offset; /* next piece to send */
	bool asked;      /* the agent said it lacks it */
};

struct tdi_blob_queue {
	struct tdi_blob *head, *tail;
	size_t bytes;           /* queued in memory */
	uint64_t disk_bytes;    /* queued in spool files */
	uint64_t bytes_sent;    /* piece bytes the agent took */
	uint64_t blobs_sent;    /* completed by a transfer */
	uint64_t blobs_skipped; /* the agent held them already */
	uint64_t blobs_dropped; /* refused for good */
};

/* Queues `data` (owned on success, freed here when the digest is queued
 * already). TD_ERR_FULL over the bound (data still the caller's). mu held. */
int tdi_blob_enqueue_locked(struct td_run *run, uint8_t *data, size_t len,
                            const uint8_t digest[32]);

/* Copies the readable file `src` (len bytes from offset 0) into a new unnamed
 * file in the spool dir, its SHA-256 into digest on the way: *fd_out, owned
 * by the caller. Without mu (it reads and writes the whole file).
 * 1 (not an error) when the run has no spool dir or its file system cannot
 * make unnamed files: the caller queues the bytes in memory instead;
 * TD_ERR_TRANSPORT on an I/O error (tdi_fail says which). */
int tdi_blob_copy_to_spool(struct td_run *run, int src, uint64_t *len, uint8_t digest[32],
                           int *fd_out);

/* Whether a spool copy of len bytes fits now (TD_OK), never (TD_ERR_INVALID)
 * or not yet (TD_ERR_FULL): asked before copying, so a refusal costs no copy.
 * mu held. */
int tdi_blob_spool_room_locked(struct td_run *run, uint64_t len);

/* Queues the spool copy fd (owned on success, closed here when the digest is
 * queued already). TD_ERR_FULL over max_spool_bytes (fd still the caller's).
 * mu held. */
int tdi_blob_enqueue_fd_locked(struct td_run *run, int fd, uint64_t len, const uint8_t digest[32]);

/* Queues the content of the file `path` (absolute; owned on success, freed
 * here when the digest is queued already), `len` bytes hashed as `digest` by
 * the caller: read again piece by piece as it is sent, so it takes no memory
 * in the queue. A file that changed since (shorter: refused here; other
 * content: the agent's SHA-256 check refuses it) is dropped as a refused
 * file. mu held. */
int tdi_blob_enqueue_file_locked(struct td_run *run, char *path, size_t len,
                                 const uint8_t digest[32]);

/* One exchange for the oldest blob (mu held, let go during I/O). Returns
 * 0 when it moved on, 1 when it should be retried after a backoff. */
int tdi_blob_step_locked(struct td_run *run);

/* One blob being sent by whoever holds a socket (the sender, a replay). */
struct tdi_blob_send {
	const char *run_id;
	uint8_t digest[32];
	const uint8_t *data; /* the bytes, or NULL: read from fd */
	int fd;
	size_t len;
	const char *path; /* pieces are read from this file instead of data */
	size_t piece;     /* bytes per BlobChunk (the agent's limit lowers it) */
	bool asked;       /* the agent said it lacks it */
	uint64_t offset;  /* next piece */
	uint64_t bytes_sent;
};
enum {
	TDI_BLOB_MOVED = 0, /* a step done: call again */
	TDI_BLOB_RETRY,     /* no answer or a retryable refusal: again after a backoff */
	TDI_BLOB_REFUSED,   /* refused for good (why) */
	TDI_BLOB_HELD,      /* the agent had it already */
	TDI_BLOB_STORED,    /* sent, verified, durable */
};
/* One request for t (the query, then the next piece). */
int tdi_blob_exchange(nng_socket sock, const char *url, struct tdi_blob_send *t,
                      tdi_limits_fn *learn, void *learn_arg, enum tdi_reach *reach, char *why,
                      size_t why_len);

/* Files still queued at td_finish go to the spool dir, as the batches that
 * name them do: <spool dir>/files/<run id>.<sha256 hex>.blob (written to a
 * temp file, fdatasync'd, renamed). A replay (replay.h) sends them, before
 * any frame, and deletes each once the agent has it. mu held (the sender is
 * stopped). *written: how many. */
#define TDI_BLOB_SPOOL_SUBDIR "files"
#define TDI_BLOB_SPOOL_SUFFIX ".blob"
int tdi_blob_spool_locked(struct td_run *run, size_t *written);

/* Frees every queued blob; returns how many there were. mu held or the run
 * no longer shared. */
size_t tdi_blob_queue_clear(struct td_run *run);

#endif
