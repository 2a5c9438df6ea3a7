/*
 * ingest.h — the agent's front door: an NNG rep socket on ipc:// that takes
 * client requests, validates them, appends batches to the transaction log and
 * answers.
 *
 * Acknowledgement rule: a batch is acknowledged only after its LogEntry is in the
 * log — and, when `sync_before_ack` (fsync: always), after an fdatasync covering
 * it. Every request that arrived in the meantime shares that fdatasync (group
 * commit). Under the other policies a batch holding a run's start or exit is
 * acknowledged after such an fdatasync too (one or two per run): a power cut may
 * then lose the last interval of a run's rows, never the run itself (its later
 * records would have no run to go to), and a finished run is on disk when the
 * client's finish returns. A batch whose (session_id, seq) is not above the session's highest
 * appended seq is acknowledged with `duplicate = true` and not appended again.
 * A failed append or fsync is answered with a retryable error, never an ack, and
 * the session table is rolled back so the client's resend is appended.
 *
 * Bad input: a message over `max_message_bytes` (up to twice that, which is the
 * transport's receive limit) gets an ERROR_TOO_LARGE reply; past twice the limit
 * NNG drops the connection before allocating. Undecodable or invalid requests get
 * an error reply naming the problem. Each is counted; none affects other clients.
 *
 * Threading: NNG's aio callbacks only move messages to a queue; one worker thread
 * validates, appends, syncs and replies, so the txlog and the session table have
 * a single writer. Queries, and blob requests once the worker has checked them
 * (the run's owner), are answered on a query thread: writing and verifying a
 * file never holds up acknowledgements. A client sends a run's files before the
 * batches naming them and waits for each answer, so this keeps its order. Lifecycle: ingest_start →
 * ingest_close (refuse new requests: receives are cancelled, but every request already received is
 * still answered) → ingest_stop (waits until those answers are sent) → ingest_free.
 *
 * Ownership: `log` and `tables` are borrowed and must outlive the ingest.
 */
#ifndef TRACKD_INGEST_H
#define TRACKD_INGEST_H

#include "blobs.h"
#include "buf.h"
#include "owners.h"
#include "sessions.h"
#include "txlog.h"
#include "validate.h"

#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct ingest ingest;

/* What ingest remembers across requests, rebuilt from the log at start-up
 * (ingest_recover_record) before the ingest itself starts: the dedupe table and
 * the owner of every run (owners.h, which says how it is kept complete). Owned
 * by the caller. */
struct ingest_tables {
	sessions *sessions;
	run_owners *owners;
};

/* A group of requests is at most one per context. */
#define INGEST_MAX_CONTEXTS 256

struct ingest_options {
	const char *url;      /* ipc://… ; the socket's directory is created */
	uint32_t socket_mode; /* permissions of the socket file */
	uint32_t contexts;    /* requests handled concurrently */
	uint64_t max_message_bytes;
	struct validate_limits limits;
	bool sync_before_ack;
	const char *version; /* reported by status queries */
	txlog *log;
	struct ingest_tables *tables;
	/* The blob store (BlobQuery, BlobChunk; NULL: refused). Borrowed. Its
	 * bytes are told to `log` (txlog_set_external_bytes) after every piece,
	 * so files and batches share the disk budget. */
	blobs *blobs;

	/* Access: a peer may log when it is root, the agent's user, or in `group`
	 * ("" = anyone the socket lets in); runs belong to the uid that started them
	 * (owners.h: answered from memory, never by a sink) and only it, root and
	 * members of `admin_group` may append to or read them (access.h). */
	const char *group;
	const char *admin_group;

	/* Optional hooks. `query` answers a Query (its wire bytes) with a typed
	 * reply in *reply: a QueryReply of the default allocator (malloc'd
	 * throughout) that ingest packs and frees with free_unpacked, even on
	 * failure; the answer may take at most `max_bytes` packed (the reply
	 * limit, four times limits.max_message_bytes). It returns 0 or a
	 * TRACKD__V1__ERROR_CODE__* with a message; it runs
	 * on ingest's query thread, never on the worker, so slow reads do not delay
	 * acknowledgements. `status` adds fields to status replies. `disconnected`
	 * is told that a client connection closed; it runs on an NNG thread and must
	 * only hand off. */
	int (*query)(void *arg, const uint8_t *query, size_t len, uint32_t uid, bool admin,
	             size_t max_bytes, Trackd__V1__QueryReply **reply, char *err, size_t errlen);
	void (*status)(void *arg, Trackd__V1__StatusReply *st);
	void (*disconnected)(void *arg);
	void *hook_arg;
};

struct ingest_stats {
	uint64_t requests;
	uint64_t batches_appended;
	uint64_t batches_duplicate;
	uint64_t records_appended; /* client records inside appended batches */
	uint64_t rejected_version;
	uint64_t rejected_malformed;
	uint64_t rejected_invalid;
	uint64_t rejected_too_large;
	uint64_t rejected_permission; /* peer not allowed, or another user's run */
	uint64_t append_failures;     /* log append or fsync failed: retryable error */
	uint64_t clients_connected;   /* now; the agent's own listener probes excluded */
	uint64_t listener_restarts;   /* see ingest_check_listener */
	uint64_t queries;
	uint64_t internal_batches;    /* appended by the agent itself */
	uint64_t blob_queries;        /* BlobQuery requests answered */
	uint64_t blob_bytes_received; /* file bytes written to the blob store */
	uint64_t blobs_stored;        /* blobs completed (verified, durable) */
	uint64_t blobs_known;         /* digests asked for that the store held */
	uint64_t blob_refusals;       /* pieces refused (limit, budget, bad digest) */
};

/* Binds the socket and starts serving. Errors: TRACKD_EEXIST when another
 * process listens on the socket already; TRACKD_ESYS otherwise (logged). */
int ingest_start(const struct ingest_options *opts, ingest **out);
void ingest_close(ingest *in);
void ingest_stop(ingest *in);
void ingest_free(ingest *in);

/* Appends a record the agent itself writes (a crash mark, a rename): `rec` is
 * borrowed and packed here, framed as a Batch.records field of a batch of the
 * agent's own session (uid = the agent's, pid = 0), appended by the worker in
 * order with client batches. Thread-safe; does not wait for the append.
 * TRACKD_ETOOBIG over the agent's message limit, TRACKD_ENOMEM, TRACKD_ECLOSED. */
int ingest_submit(ingest *in, const Trackd__V1__Record *rec);

/* Checks that a new client can connect and be answered; if not, listens anew.
 * Needed because a peer that disconnects during NNG's handshake wedges the
 * listener of NNG 1.5.2 (Debian 12's libnng; nanomsg/nng#1518). Call from the
 * thread that started the ingest, every few seconds. Returns 0, or the error of
 * listening anew. */
int ingest_check_listener(ingest *in);

/* Whether an agent answers a status request at `url` within `timeout_ms`. */
bool ingest_probe(const char *url, int timeout_ms);

/* Monotonic time (µs) of the worker thread's last loop; it loops at least once
 * a second while healthy, so an old value means a stalled worker. */
int64_t ingest_heartbeat_us(ingest *in);

/* Monotonic time (µs) a client last connected or disconnected (the agent's own
 * probes excluded), 0 if none has. An idle check that samples
 * clients_connected misses a connection shorter than its tick; this does not. */
int64_t ingest_client_activity_us(ingest *in);

/* Safe from any thread. */
void ingest_get_stats(ingest *in, struct ingest_stats *out);

/* Changes the request limits of a running ingest (SIGHUP reload): requests
 * validated after this returns use them. `max_message_bytes` may not exceed the
 * value the ingest started with (its buffers and the transport's receive limit
 * were sized for it): TRACKD_EINVAL, nothing changed. Lowering it makes requests
 * between the new limit and twice the old one get ERROR_TOO_LARGE replies.
 * Safe from any thread. */
int ingest_set_limits(ingest *in, uint64_t max_message_bytes, const struct validate_limits *limits);

/* Builds the LogEntry bytes stored for one batch: the peer's identity and the
 * receive time, then the client's Batch bytes verbatim as field 5. Returns the
 * length, or 0 if `cap` is too small. Exposed for tests. */
size_t ingest_encode_log_entry(uint8_t *out, size_t cap, uint32_t uid, uint32_t gid, int32_t pid,
                               int64_t recv_time_us, const uint8_t *batch, size_t batch_len);

/* Rebuilds the tables from one stored LogEntry (txlog on_record callback: `arg`
 * is a struct ingest_tables). Never fails on bad data: it skips it. */
int ingest_recover_record(void *arg, uint64_t index, const void *data, size_t len);

#endif
