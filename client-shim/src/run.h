/*
 * run.h — the inside of libtrackd: one run (struct td_run, the public opaque
 * type), the modules that work on it, and how they fit together.
 *
 * Layers, top down; each module uses only those below it:
 *   run.c         the public API of a run: td_init … td_finish, the recording
 *                 calls, the footer; decides when to spill (run->make_room)
 *   console.c,    threads beside run.c that it starts and stops: they feed the
 *   signals.c,    run through its API (td_output), end it (tdi_run_end), or
 *   environment.c append the process's own facts once (RunEnvironment)
 *   media.c       media values and saved files: W&B's objects, files queued
 *   blob_queue.c  file content waiting for the agent, sent by the sender
 *   mirror.c      what this process logged, for the footer
 *   sender.c      the thread that ships this run's batches
 *   replay.c      the thread (and td_spool_flush) that ships the spool files
 *                 of dead processes
 *   query.c       synchronous requests: where the agent is, the cold paths
 *                 (td_query_agent, td_status_agent, td_run_dir, td_run_url)
 *   spool_file.c  batches on disk: the file format, this process's file
 *   buffer.c      batches in memory and the memory bound
 *   validate.c    the limits, checked before anything is buffered
 *   encode.c      records and envelopes in wire format
 *   transport.c   NNG connections and one request/reply: the bottom, used by
 *                 the sender, the replay and the queries
 * and, used by any: error.c (td_last_error's detail, text results), timing.c
 * (clocks, timed waits), autostart.c (where the agent is, starting the private
 * one; trackctl compiles it in too). Each module's header states its contract.
 *
 * Data flow: a recording call (td_log, …) validates its items without the lock
 * (validate.h), then, under the run's one mutex, encodes one protobuf Record
 * straight into the *open batch* (buffer.h), framed as Batch.records entries
 * (key, varint length, bytes): item records by the hand encoder in encode.c,
 * the rare others (RunStart, RunExit, console output) by protobuf-c. Sealing
 * moves the open batch to the FIFO of *sealed* batches and gives it the next
 * seq; the sender thread (sender.h) sends the oldest sealed batch, wrapped in a
 * hand-built Request/Batch envelope, through tdi_exchange (transport.h), and
 * frees it once the agent acknowledges that seq. Record bytes are encoded
 * exactly once.
 *
 *   td_log → tdi_check_items → tdi_items_record_measure/_write into
 *   tdi_buffer_reserve_locked/_commit_locked → [bound: run->make_room →
 *   tdi_spool_spill_locked] → sender: tdi_buffer_seal_locked, the oldest batch
 *   (spool_file.h's frame, else the buffer's head) → tdi_exchange → agent;
 *   the ack → tdi_spool_pop_locked / tdi_buffer_release_head_locked.
 *
 * Who seals: the sender, every flush_interval_ms or when woken because the open
 * batch reached batch_bytes (or when the run is finishing); a recording call
 * only when the next record would take the open batch over the message limit
 * or the per-batch record limit.
 *
 * Bound: buffered_bytes (framed record bytes of the open batch plus every
 * sealed batch) never exceeds max_buffer_bytes. A record that would cross it
 * first makes room: the buffer asks run->make_room, and run.c's spills
 * (spool_file.h): if the agent is unreachable, every sealed batch (the open one
 * sealed first) is appended to the spool file, in seq order, so the spooled
 * batches are always the oldest unacknowledged ones and the sender sends them
 * (read back from the file) before the batches in memory. If the agent is
 * reachable, or the spool cannot take them, the record is refused with
 * TD_ERR_FULL and counted. Only the final RunExit record may pass the bound, so
 * a full buffer can still end the run cleanly.
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
 * thread (spool files of dead processes, replay.h), the console reader
 * (console.h) and the signal thread (signals.h).
 *
 * Names: tdi_ / TDI_ inside the library, td_ / TD_ for the public API
 * (trackd.h) only. Everything here has hidden visibility (the library is built
 * with -fvisibility=hidden); tests reach it by linking the static library.
 */
#ifndef TRACKD_CLIENT_RUN_H
#define TRACKD_CLIENT_RUN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "blob_queue.h"
#include "buffer.h"
#include "encode.h"
#include "replay.h"
#include "spool_file.h"
#include "trackd/trackd.h"
#include "validate.h"

#define TDI_DEFAULT_FLUSH_INTERVAL_MS 10u
#define TDI_DEFAULT_FINISH_TIMEOUT_MS 30000
/* The footer waits at most this long for the agent's wandb sink to learn the
 * run's URL (a short run ends before the backend answered its UpsertBucket);
 * not at all when the backend is failing or there is no sink. */
#define TDI_FOOTER_URL_WAIT_MS 3000
/* td_finish stops waiting for the agent (and spools) once the sender found no
 * connection to send on and this many checks, this far apart, found no agent
 * that could answer: nothing listens at the address and none can be started,
 * so waiting out the timeout gains nothing. Several checks: an agent
 * restarting unlinks and re-creates its socket. The sender's evidence first:
 * the check connects, and a listener that is there must not see probes. */
#define TDI_NO_AGENT_CHECK_MS 100
#define TDI_NO_AGENT_CHECKS   3

struct tdi_mirror;
struct tdi_console;
struct tdi_signals;
struct tdi_environment;

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
	tdi_make_room_fn *make_room; /* run.c's: spills to the spool (buffer.h) */
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
	struct tdi_blob_queue blobs; /* files for the agent, sent before batches */
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
	struct tdi_environment *environment; /* its thread, while it gathers */
};

/* The end of a run, shared by td_finish_reason and the signal thread:
 * console lines, RunExit, the wait for acks, the spool, the report and the
 * footer. It never frees the run: td_finish_reason does that afterwards, the
 * signal thread never (the process is about to die, and the application may
 * still hold the pointer). */
int tdi_run_end(struct td_run *run, int exit_code, td_exit_reason reason, int timeout_ms,
                td_finish_report *report);

/* Buffers one record built with protobuf-c (the rare kinds: a saved file),
 * taking the lock. */
int tdi_record_proto(struct td_run *run, const char *what, Trackd__V1__Record *rec);

/* Test hook (static library only): bytes counted against max_buffer_bytes. */
size_t tdi_run_buffered_bytes(td_run *run);

#endif
