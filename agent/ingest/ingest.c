#include "ingest.h"

#include "access.h"
#include "clock.h"
#include "errors.h"
#include "log.h"
#include "nng_close.h"
#include "paths.h"
#include "varint.h"

#include "trackd/v1/limits.h"
#include "trackd/v1/wire.h"
#include "trackd/v1/trackd.pb-c.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One NNG request context. Its aio alternates: receive → (queued for the worker)
 * → send the reply → receive … The aio callback runs on an NNG thread and only
 * moves the context onto the worker's queue. */
enum ctx_state { CTX_IDLE, CTX_RECV, CTX_QUEUED, CTX_SEND };

struct request_ctx {
	struct ingest *in;
	nng_ctx ctx;
	nng_aio *aio;
	enum ctx_state state;
	nng_msg *msg;             /* received request, owned while QUEUED */
	nng_msg *reply;           /* built by the worker */
	struct request_ctx *next; /* worker queue link */
	bool is_query;            /* answered by the query thread */
	bool is_status;           /* …a plain status request, sent there directly */
	/* …a blob request the worker checked (owner, fields): the query thread
	 * writes it, so a large file's check and fsync never hold up acks. */
	Trackd__V1__Request *blob;
	uint32_t uid; /* the requester, for queries */
	bool admin;
	/* Rollback information when an fsync fails after this batch was appended. */
	bool appended;
	bool synced_before_ack; /* its ack waits for the group's fdatasync */
	uint8_t session_id[TRACKD_SESSION_ID_BYTES];
	uint64_t prev_seq;
	uint64_t seq;
	uint64_t records;
};

/* ingest_check_listener probes at most twice in a row, one at a time; a probe
 * pipe whose removal is still in flight makes it four at worst. */
#define SELF_PIPES_MAX 4

struct ingest {
	struct ingest_options opts;
	nng_socket sock;
	nng_listener listener;
	struct request_ctx *ctxs;
	uint32_t nctx;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct request_ctx *queue_head, *queue_tail;
	bool closing;
	uint32_t busy; /* contexts QUEUED or SEND */
	pthread_t worker;
	bool worker_started;

	/* Records the agent writes itself, appended by the worker. */
	struct internal_batch *internal_head, *internal_tail;
	uint8_t agent_session[TRACKD_SESSION_ID_BYTES];
	uint64_t agent_seq;

	/* Queries wait here for the query thread. */
	pthread_cond_t query_cv;
	struct request_ctx *query_head, *query_tail;
	pthread_t query_thread;
	bool query_started;

	/* The limits in force: opts.max_message_bytes and opts.limits as changed by
	 * ingest_set_limits; read by the worker and the query thread. */
	pthread_mutex_t limits_mu;
	uint64_t max_message_bytes;
	struct validate_limits limits;

	access_control *access;
	uint8_t *entry_buf; /* LogEntry scratch, max_message_bytes + header room */
	size_t entry_cap;
	bool append_failing;  /* worker only: the last client append failed (logged once) */
	bool sync_group_open; /* worker only: txlog_group_begin() called this round */

	_Atomic int64_t heartbeat_us;       /* the worker's last sign of life */
	_Atomic int64_t client_activity_us; /* see ingest_client_activity_us */
	_Atomic uint64_t requests, batches_appended, batches_duplicate, records_appended,
	    rejected_version, rejected_malformed, rejected_invalid, rejected_too_large,
	    rejected_permission, append_failures, clients_connected, listener_restarts, queries,
	    internal_batches, blob_queries, blob_bytes_received, blobs_stored, blobs_known,
	    blob_refusals;
	/* Pipes of the agent's own listener probes (0 = free slot): not clients, so
	 * they count neither in clients_connected nor against a private agent's
	 * idle exit, which they used to reset every listener check. */
	_Atomic uint32_t self_pipes[SELF_PIPES_MAX];
};

#define LOG_ENTRY_HEADER_MAX 64
#define SOCKET_CLOSE_WAIT_MS 2000 /* nng_close.h: NNG 1.5.2 can hang closing */

/* Request{protocol_version = 1} and nothing else: a ping, answered with an empty
 * Reply by the NNG callback itself (see ctx_callback). */
static const uint8_t ping_request[] = {WIRE_KEY(REQUEST, PROTOCOL_VERSION),
                                       TRACKD_PROTOCOL_VERSION};
/* Request{protocol_version = 1, status = {}}, as trackctl and the clients send it:
 * answered on the query thread without queueing behind the worker's batches. */
static const uint8_t status_request[] = {WIRE_KEY(REQUEST, PROTOCOL_VERSION),
                                         TRACKD_PROTOCOL_VERSION, WIRE_KEY(REQUEST, STATUS), 0};

struct internal_batch {
	struct internal_batch *next;
	size_t len;
	uint8_t records[]; /* Batch.records fields */
};

static void count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void current_limits(struct ingest *in, uint64_t *max_message_bytes,
                           struct validate_limits *limits)
{
	pthread_mutex_lock(&in->limits_mu);
	*max_message_bytes = in->max_message_bytes;
	*limits = in->limits;
	pthread_mutex_unlock(&in->limits_mu);
}

int ingest_set_limits(ingest *in, uint64_t max_message_bytes, const struct validate_limits *limits)
{
	if (max_message_bytes > in->opts.max_message_bytes || max_message_bytes == 0)
		return TRACKD_EINVAL;
	pthread_mutex_lock(&in->limits_mu);
	in->max_message_bytes = max_message_bytes;
	in->limits = *limits;
	pthread_mutex_unlock(&in->limits_mu);
	return TRACKD_OK;
}

/* ---- replies ------------------------------------------------------------ */

static nng_msg *pack_reply(const Trackd__V1__Reply *reply)
{
	size_t len = trackd__v1__reply__get_packed_size(reply);
	nng_msg *m;
	if (nng_msg_alloc(&m, len) != 0)
		return NULL;
	trackd__v1__reply__pack(reply, nng_msg_body(m));
	return m;
}

/* The limits in force, as every ack and blob reply tells them (trackd.proto,
 * Limits). */
static void fill_limits(struct ingest *in, Trackd__V1__Limits *limits)
{
	uint64_t max_message_bytes;
	struct validate_limits l;
	current_limits(in, &max_message_bytes, &l);
	*limits = (Trackd__V1__Limits)TRACKD__V1__LIMITS__INIT;
	limits->has_max_message_bytes = limits->has_max_records_per_batch = true;
	limits->has_max_items_per_record = limits->has_max_key_bytes = true;
	limits->has_max_string_bytes = limits->has_max_nesting_depth = true;
	limits->has_max_list_length = true;
	limits->max_message_bytes = max_message_bytes;
	limits->max_records_per_batch = l.max_records_per_batch;
	limits->max_items_per_record = l.max_items_per_record;
	limits->max_key_bytes = l.max_key_bytes;
	limits->max_string_bytes = l.max_string_bytes;
	limits->max_nesting_depth = l.max_nesting_depth;
	limits->max_list_length = l.max_list_length;
}

/* Every ack tells the client the limits in force (see trackd.proto, Limits). */
static nng_msg *ack_reply(struct ingest *in, uint64_t seq, bool duplicate)
{
	Trackd__V1__Limits limits;
	fill_limits(in, &limits);
	Trackd__V1__Ack ack = TRACKD__V1__ACK__INIT;
	ack.has_seq = true;
	ack.seq = seq;
	ack.has_duplicate = true;
	ack.duplicate = duplicate;
	ack.limits = &limits;
	Trackd__V1__Reply reply = TRACKD__V1__REPLY__INIT;
	reply.body_case = TRACKD__V1__REPLY__BODY_ACK;
	reply.ack = &ack;
	return pack_reply(&reply);
}

static nng_msg *error_reply(int code, const char *message, bool retryable)
{
	Trackd__V1__Error err = TRACKD__V1__ERROR__INIT;
	err.has_code = true;
	err.code = (Trackd__V1__ErrorCode)code;
	err.message = (char *)message;
	err.has_retryable = true;
	err.retryable = retryable;
	Trackd__V1__Reply reply = TRACKD__V1__REPLY__INIT;
	reply.body_case = TRACKD__V1__REPLY__BODY_ERROR;
	reply.error = &err;
	return pack_reply(&reply);
}

static nng_msg *status_reply(struct ingest *in)
{
	struct txlog_stats ts;
	struct ingest_stats is;
	txlog_stats(in->opts.log, &ts);
	ingest_get_stats(in, &is);
	Trackd__V1__StatusReply st = TRACKD__V1__STATUS_REPLY__INIT;
	st.version = (char *)in->opts.version;
#define SET(field, value) (st.has_##field = true, st.field = (value))
	SET(records_appended, ts.records_appended);
	SET(batches_acked, is.batches_appended + is.batches_duplicate);
	SET(batches_duplicate, is.batches_duplicate);
	SET(requests_rejected, is.rejected_version + is.rejected_malformed + is.rejected_invalid +
	                           is.rejected_too_large + is.rejected_permission);
	SET(records_quarantined, ts.records_quarantined);
	SET(log_bytes, ts.disk_bytes);
	SET(last_index, ts.last_index);
	SET(durable_index, ts.durable_index);
	SET(clients_connected, is.clients_connected);
	SET(budget_refusals, ts.budget_refusals);
#undef SET
	if (in->opts.status)
		in->opts.status(in->opts.hook_arg, &st);
	Trackd__V1__Reply reply = TRACKD__V1__REPLY__INIT;
	reply.body_case = TRACKD__V1__REPLY__BODY_STATUS;
	reply.status = &st;
	return pack_reply(&reply);
}

/* ---- log entries -------------------------------------------------------- */

size_t ingest_encode_log_entry(uint8_t *out, size_t cap, uint32_t uid, uint32_t gid, int32_t pid,
                               int64_t recv_time_us, const uint8_t *batch, size_t batch_len)
{
	uint8_t head[LOG_ENTRY_HEADER_MAX];
	size_t n = 0;
	head[n++] = WIRE_KEY(LOG_ENTRY, PEER_UID);
	n += varint_put(head + n, uid);
	head[n++] = WIRE_KEY(LOG_ENTRY, PEER_GID);
	n += varint_put(head + n, gid);
	head[n++] = WIRE_KEY(LOG_ENTRY, PEER_PID);
	n += varint_put(head + n, (uint64_t)(int64_t)pid); /* int32: sign-extended */
	head[n++] = WIRE_KEY(LOG_ENTRY, RECV_TIME_US);
	n += varint_put(head + n, (uint64_t)recv_time_us);
	head[n++] = WIRE_KEY(LOG_ENTRY, BATCH);
	n += varint_put(head + n, batch_len);
	if (n + batch_len > cap)
		return 0;
	memcpy(out, head, n);
	memcpy(out + n, batch, batch_len);
	return n + batch_len;
}

/* The owner rule of owners.h: a start names its run's owner, and so does any
 * record of a client process (pid > 0) for a run whose start is lost; the
 * agent's own records (pid 0) never make a run. */
static bool names_owner(bool is_start, int32_t pid)
{
	return is_start || pid > 0;
}

struct owner_scan {
	run_owners *owners;
	uint32_t uid;
	int32_t pid;
};

static int note_owner(void *arg, const uint8_t *run_id, size_t id_len, bool is_start)
{
	struct owner_scan *o = arg;
	if (names_owner(is_start, o->pid) &&
	    run_owners_note(o->owners, run_id, id_len, o->uid) == TRACKD_ETOOBIG &&
	    run_owners_refused(o->owners) == 1)
		log_warn("run owner index full (%zu runs): owners of further runs in the log are "
		         "not known, and batches creating runs are refused",
		         run_owners_max(o->owners));
	return 0;
}

int ingest_recover_record(void *arg, uint64_t index, const void *data, size_t len)
{
	struct ingest_tables *t = arg;
	struct wire_reader r;
	struct wire_field f;
	struct owner_scan scan = {.owners = t->owners};
	const uint8_t *batch = NULL;
	size_t batch_len = 0;
	wire_reader_init(&r, data, len);
	while (wire_next(&r, &f) == 1) {
		if (f.number == WIRE_NUM(LOG_ENTRY, PEER_UID) && f.type == WIRE_VARINT)
			scan.uid = (uint32_t)f.varint;
		else if (f.number == WIRE_NUM(LOG_ENTRY, PEER_PID) && f.type == WIRE_VARINT)
			scan.pid = (int32_t)f.varint;
		else if (f.number == WIRE_NUM(LOG_ENTRY, BATCH) && f.type == WIRE_LEN) {
			batch = f.data;
			batch_len = f.len;
		}
	}
	const uint8_t *id;
	uint64_t seq;
	if (batch && validate_batch_identity(batch, batch_len, &id, &seq) == 0)
		sessions_record(t->sessions, id, seq);
	if (batch && t->owners)
		validate_batch_runs(batch, batch_len, note_owner, &scan);
	(void)index;
	return 0;
}

/* ---- the worker --------------------------------------------------------- */

/* False when the request's connection is gone: the socket is ipc only, so the
 * peer's credentials can be read while its pipe lives. */
static bool peer_identity(nng_msg *msg, uint32_t *uid, uint32_t *gid, int32_t *pid)
{
	nng_pipe p = nng_msg_get_pipe(msg);
	uint64_t v;
	if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_UID, &v) != 0)
		return false;
	*uid = (uint32_t)v;
	*gid = nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_GID, &v) == 0 ? (uint32_t)v : UINT32_MAX;
	*pid = nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_PID, &v) == 0 ? (int32_t)v : -1;
	return true;
}

static void count_rejection(struct ingest *in, int code)
{
	switch (code) {
	case TRACKD__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION:
		count(&in->rejected_version, 1);
		break;
	case TRACKD__V1__ERROR_CODE__ERROR_MALFORMED: count(&in->rejected_malformed, 1); break;
	case TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE: count(&in->rejected_too_large, 1); break;
	default: count(&in->rejected_invalid, 1); break;
	}
}

/* Runs a batch names that the index does not know yet, noted once the batch is
 * appended. A batch is mostly one run's rows, so a few slots cover nearly
 * every batch; a batch naming more new runs is scanned again after its append. */
#define NEW_RUNS_HELD 8

struct owner_check {
	const run_owners *owners;
	uint32_t uid;
	int32_t pid;
	bool admin;
	struct {
		const uint8_t *id; /* into the request's batch bytes */
		size_t len;
	} new_runs[NEW_RUNS_HELD];
	size_t n_new;
	bool more_new; /* over NEW_RUNS_HELD */
	/* The previous record's run, when it needs no second look: a batch is
	 * mostly one run's rows, so most records skip the index. */
	const uint8_t *settled_id;
	size_t settled_len;
	char run_id[TRACKD_MAX_RUN_ID_BYTES + 1];
	uint32_t owner;
};

/* A run belongs to the uid that first named it (owners.h); the index answers
 * from memory, and a run it does not know is a new one. Returns 1 for another
 * user's run (unless admin), 2 for a new run when the index is full. */
static int check_owner(void *arg, const uint8_t *run_id, size_t id_len, bool is_start)
{
	struct owner_check *oc = arg;
	if (oc->settled_id && id_len == oc->settled_len &&
	    memcmp(run_id, oc->settled_id, id_len) == 0)
		return 0;
	uint32_t owner;
	if (run_owners_get(oc->owners, run_id, id_len, &owner)) {
		if (owner == oc->uid || oc->admin) {
			oc->settled_id = run_id;
			oc->settled_len = id_len;
			return 0;
		}
		snprintf(oc->run_id, sizeof oc->run_id, "%.*s", (int)id_len, (const char *)run_id);
		oc->owner = owner;
		return 1;
	}
	if (!names_owner(is_start, oc->pid))
		return 0; /* not settled: a start of it later in the batch names its owner */
	oc->settled_id = run_id;
	oc->settled_len = id_len;
	for (size_t i = 0; i < oc->n_new; i++)
		if (oc->new_runs[i].len == id_len &&
		    memcmp(oc->new_runs[i].id, run_id, id_len) == 0)
			return 0;
	if (run_owners_count(oc->owners) + oc->n_new >= run_owners_max(oc->owners)) {
		snprintf(oc->run_id, sizeof oc->run_id, "%.*s", (int)id_len, (const char *)run_id);
		return 2;
	}
	if (oc->n_new < NEW_RUNS_HELD) {
		oc->new_runs[oc->n_new].id = run_id;
		oc->new_runs[oc->n_new].len = id_len;
		oc->n_new++;
	} else {
		oc->more_new = true;
	}
	return 0;
}

/* After the append: the batch's new runs are its uid's. */
static void note_new_owners(struct ingest *in, const struct owner_check *oc,
                            const struct validated_request *req)
{
	run_owners *owners = in->opts.tables->owners;
	for (size_t i = 0; i < oc->n_new; i++)
		run_owners_note(owners, oc->new_runs[i].id, oc->new_runs[i].len, oc->uid);
	if (oc->more_new) {
		struct owner_scan scan = {.owners = owners, .uid = oc->uid, .pid = oc->pid};
		validate_batch_runs(req->batch, req->batch_len, note_owner, &scan);
	}
}

/* A BlobQuery or BlobChunk (blobs.h): the store of the requester's uid, for
 * a run that is not another user's. Blobs are answered by the worker, in
 * order with batches: a client sends a run's blobs before the rows that use
 * them, on the same connection. */
static nng_msg *check_blob(struct ingest *in, struct request_ctx *rc, const uint8_t *body,
                           size_t len)
{
	if (!in->opts.blobs)
		return error_reply(TRACKD__V1__ERROR_CODE__ERROR_INVALID,
		                   "this agent stores no files", false);
	Trackd__V1__Request *req = trackd__v1__request__unpack(NULL, len, body);
	if (!req)
		return error_reply(TRACKD__V1__ERROR_CODE__ERROR_MALFORMED,
		                   "undecodable blob request", false);
	nng_msg *reply = NULL;
	const char *run_id = req->body_case == TRACKD__V1__REQUEST__BODY_BLOB_QUERY
	                         ? req->blob_query->run_id
	                         : req->blob_chunk->run_id;
	size_t id_len = run_id ? strlen(run_id) : 0;
	if (id_len == 0 || id_len > TRACKD_MAX_RUN_ID_BYTES ||
	    strspn(run_id, TRACKD_RUN_ID_ALLOWED) != id_len) {
		reply = error_reply(TRACKD__V1__ERROR_CODE__ERROR_INVALID,
		                    "blob request: run_id missing or not a valid run id", false);
		goto out;
	}
	uint32_t owner;
	if (!rc->admin &&
	    run_owners_get(in->opts.tables->owners, (const uint8_t *)run_id, id_len, &owner) &&
	    owner != rc->uid) {
		char msg[256];
		snprintf(msg, sizeof msg, "run '%s' belongs to another user (uid %u)", run_id,
		         owner);
		count(&in->rejected_permission, 1);
		log_warn("refused a blob request from uid %u: %s", rc->uid, msg);
		reply = error_reply(TRACKD__V1__ERROR_CODE__ERROR_PERMISSION_DENIED, msg, false);
		goto out;
	}
	if (req->body_case == TRACKD__V1__REQUEST__BODY_BLOB_QUERY) {
		const Trackd__V1__BlobQuery *q = req->blob_query;
		if (q->n_sha256 > TRACKD_MAX_BLOB_QUERY) {
			char msg[128];
			snprintf(msg, sizeof msg, "blob query of %zu digests, limit %u",
			         q->n_sha256, TRACKD_MAX_BLOB_QUERY);
			reply = error_reply(TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE, msg, false);
			goto out;
		}
		for (size_t i = 0; i < q->n_sha256; i++)
			if (q->sha256[i].len != TRACKD_BLOB_DIGEST_BYTES) {
				reply = error_reply(TRACKD__V1__ERROR_CODE__ERROR_INVALID,
				                    "blob query: a digest is not 32 bytes", false);
				goto out;
			}
	} else if (req->blob_chunk->sha256.len != TRACKD_BLOB_DIGEST_BYTES ||
	           !req->blob_chunk->has_size) {
		reply = error_reply(TRACKD__V1__ERROR_CODE__ERROR_INVALID,
		                    "blob chunk: sha256 (32 bytes) and size are required", false);
		goto out;
	}
	rc->blob = req; /* answered by the query thread (answer_blob) */
	return NULL;
out:
	trackd__v1__request__free_unpacked(req, NULL);
	return reply;
}

/* The query thread's half of a blob request check_blob accepted: the
 * store's answer. Frees rc->blob. */
static nng_msg *answer_blob(struct ingest *in, struct request_ctx *rc)
{
	Trackd__V1__Request *req = rc->blob;
	rc->blob = NULL;
	nng_msg *reply = NULL;
	const char *run_id = req->body_case == TRACKD__V1__REQUEST__BODY_BLOB_QUERY
	                         ? req->blob_query->run_id
	                         : req->blob_chunk->run_id;
	Trackd__V1__BlobReply br = TRACKD__V1__BLOB_REPLY__INIT;
	Trackd__V1__Limits limits;
	fill_limits(in, &limits);
	br.limits = &limits;
	Trackd__V1__Reply out = TRACKD__V1__REPLY__INIT;
	out.body_case = TRACKD__V1__REPLY__BODY_BLOB;
	out.blob = &br;
	if (req->body_case == TRACKD__V1__REQUEST__BODY_BLOB_QUERY) {
		const Trackd__V1__BlobQuery *q = req->blob_query;
		count(&in->blob_queries, 1);
		ProtobufCBinaryData missing[TRACKD_MAX_BLOB_QUERY]; /* check_blob: at most */
		for (size_t i = 0; i < q->n_sha256; i++) {
			if (blobs_have(in->opts.blobs, rc->uid, q->sha256[i].data))
				count(&in->blobs_known, 1);
			else
				missing[br.n_missing++] = q->sha256[i];
		}
		br.missing = missing;
		reply = pack_reply(&out);
		goto out;
	}
	const Trackd__V1__BlobChunk *c = req->blob_chunk;
	struct blobs_put_result res;
	char err[256];
	int rv = blobs_put(in->opts.blobs, rc->uid, run_id, c->sha256.data, c->size, c->offset,
	                   c->data.data, c->data.len, txlog_budget_room(in->opts.log), &res, err,
	                   sizeof err);
	txlog_set_external_bytes(in->opts.log, blobs_disk_bytes(in->opts.blobs));
	if (rv != 0) {
		bool retryable = rv == TRACKD_ENOSPC || rv == TRACKD_EIO || rv == TRACKD_ECORRUPT ||
		                 rv == TRACKD_ENOMEM;
		int code = rv == TRACKD_ETOOBIG ? TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE
		           : retryable          ? TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE
		                                : TRACKD__V1__ERROR_CODE__ERROR_INVALID;
		count(&in->blob_refusals, 1);
		log_debug("blob refused for run %s (uid %u): %s", run_id, rc->uid, err);
		reply = error_reply(code, err[0] ? err : trackd_strerror(rv), retryable);
		goto out;
	}
	if (!res.duplicate)
		count(&in->blob_bytes_received, c->data.len);
	if (res.complete && !res.duplicate)
		count(&in->blobs_stored, 1);
	br.has_have = br.has_complete = true;
	br.have = res.have;
	br.complete = res.complete;
	reply = pack_reply(&out);
out:
	trackd__v1__request__free_unpacked(req, NULL);
	return reply;
}

/* Validates and appends one request; leaves the reply in rc->reply. */
static void handle_request(struct ingest *in, struct request_ctx *rc)
{
	const uint8_t *body = nng_msg_body(rc->msg);
	size_t len = nng_msg_len(rc->msg);
	rc->appended = false;
	rc->is_query = false;
	rc->is_status = false;
	count(&in->requests, 1);

	uint64_t max_message_bytes;
	struct validate_limits limits;
	current_limits(in, &max_message_bytes, &limits);
	if (len > max_message_bytes) {
		char msg[160];
		snprintf(msg, sizeof msg,
		         "request is %zu bytes, limit %llu (limits.max_message_bytes)", len,
		         (unsigned long long)max_message_bytes);
		count(&in->rejected_too_large, 1);
		rc->reply = error_reply(TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE, msg, false);
		return;
	}
	char err[512];
	struct validated_request req;
	int code = validate_request(&limits, body, len, &req, err, sizeof err);
	if (code != 0) {
		count_rejection(in, code);
		log_debug("request rejected: %s", err);
		rc->reply = error_reply(code, err, false);
		return;
	}
	if (req.kind == VALIDATED_STATUS) {
		rc->reply = status_reply(in);
		return;
	}
	uint32_t uid, gid;
	int32_t pid;
	if (!peer_identity(rc->msg, &uid, &gid, &pid)) {
		/* The client hung up (or the agent closed its connection, listening
		 * anew) after sending: nobody is left to answer, and a request from an
		 * unknown user may not be stored. It is dropped, not refused: no reply,
		 * not counted as rejected; a client that is still running resends it
		 * on its next connection. */
		log_debug("dropped a request whose connection closed before it was handled");
		rc->reply = NULL;
		return;
	}
	if (!access_may_log(in->access, uid, gid)) {
		char msg[256];
		snprintf(msg, sizeof msg,
		         "uid %u may not use this agent: only root and members of group '%s' may",
		         uid, in->opts.group);
		count(&in->rejected_permission, 1);
		log_warn("refused a request from uid %u (pid %d): not in group %s", uid, pid,
		         in->opts.group);
		rc->reply =
		    error_reply(TRACKD__V1__ERROR_CODE__ERROR_PERMISSION_DENIED, msg, false);
		return;
	}
	rc->uid = uid;
	rc->admin = access_is_admin(in->access, uid, gid);
	if (req.kind == VALIDATED_QUERY) {
		rc->is_query = true; /* answered on the query thread */
		return;
	}
	if (req.kind == VALIDATED_BLOB) {
		rc->blob = NULL;
		rc->reply = check_blob(in, rc, body, len);
		rc->is_query = rc->blob != NULL; /* written on the query thread */
		return;
	}
	struct owner_check oc = {
	    .owners = in->opts.tables->owners, .uid = uid, .pid = pid, .admin = rc->admin};
	int owned = 0;
	if (req.runs_overflow)
		owned = validate_batch_runs(req.batch, req.batch_len, check_owner, &oc);
	for (size_t i = 0; !req.runs_overflow && i < req.n_runs && !owned; i++)
		owned = check_owner(&oc, req.runs[i].id, req.runs[i].len, req.runs[i].start);
	if (owned == 1) {
		char msg[256];
		snprintf(msg, sizeof msg, "run '%s' belongs to another user (uid %u)", oc.run_id,
		         oc.owner);
		count(&in->rejected_permission, 1);
		log_warn("refused a batch from uid %u (pid %d): %s", uid, pid, msg);
		rc->reply =
		    error_reply(TRACKD__V1__ERROR_CODE__ERROR_PERMISSION_DENIED, msg, false);
		return;
	}
	if (owned == 2) {
		char msg[256];
		snprintf(msg, sizeof msg,
		         "run '%s' is new and the agent knows the owners of %zu runs, its limit "
		         "(OWNERS_MAX_RUNS)",
		         oc.run_id, run_owners_max(oc.owners));
		count(&in->append_failures, 1);
		log_warn("refused a batch from uid %u (pid %d): %s", uid, pid, msg);
		rc->reply = error_reply(TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE, msg, true);
		return;
	}

	uint64_t highest = sessions_highest(in->opts.tables->sessions, req.session_id);
	if (req.seq <= highest) {
		count(&in->batches_duplicate, 1);
		rc->reply = ack_reply(in, req.seq, true);
		return;
	}
	/* A start or exit opens a sync group under INTERVAL/NEVER: it and every batch
	 * after it in this round are acked after one fdatasync (see ingest.h). */
	if (req.lifecycle && !in->opts.sync_before_ack && !in->sync_group_open) {
		txlog_group_begin(in->opts.log);
		in->sync_group_open = true;
	}
	size_t n = ingest_encode_log_entry(in->entry_buf, in->entry_cap, uid, gid, pid,
	                                   clock_wall_us(), req.batch, req.batch_len);
	int rv = n ? txlog_append(in->opts.log, in->entry_buf, n, NULL) : TRACKD_ETOOBIG;
	if (rv != 0) {
		count(&in->append_failures, 1);
		/* A full disk refuses every batch until space returns: one line per
		 * episode, the counters count each refusal. */
		if (!in->append_failing)
			log_warn("append failed: %s; batches are refused (retryable) until appends "
			         "succeed again",
			         trackd_strerror(rv));
		in->append_failing = true;
		bool retryable = rv != TRACKD_ETOOBIG;
		char msg[160];
		snprintf(msg, sizeof msg, "agent could not store the batch: %s",
		         trackd_strerror(rv));
		rc->reply = error_reply(retryable ? TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE
		                                  : TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
		                        msg, retryable);
		return;
	}
	if (in->append_failing) {
		in->append_failing = false;
		log_info("appends succeed again");
	}
	note_new_owners(in, &oc, &req);
	if (sessions_record(in->opts.tables->sessions, req.session_id, req.seq) != 0)
		log_warn("dedupe table: out of memory; a resend of this batch may be stored twice");
	rc->appended = true;
	rc->synced_before_ack = in->opts.sync_before_ack || in->sync_group_open;
	memcpy(rc->session_id, req.session_id, TRACKD_SESSION_ID_BYTES);
	rc->prev_seq = highest;
	rc->seq = req.seq;
	rc->records = req.records;
	rc->reply = NULL; /* the ack waits for the sync decision */
}

/* States change under in->mu, so ingest_close sees a consistent one; the NNG
 * call itself is made after unlocking (a receive that starts after close is
 * stopped by ingest_stop). */
static void start_recv(struct request_ctx *rc)
{
	pthread_mutex_lock(&rc->in->mu);
	bool closing = rc->in->closing;
	if (!closing)
		rc->state = CTX_RECV;
	pthread_mutex_unlock(&rc->in->mu);
	if (!closing)
		nng_ctx_recv(rc->ctx, rc->aio);
}

/* A context is done with its request (answered, or dropped): it receives the
 * next one unless the ingest is closing. */
static void ctx_finished(struct ingest *in, struct request_ctx *rc)
{
	pthread_mutex_lock(&in->mu);
	rc->state = CTX_IDLE;
	in->busy--;
	bool closing = in->closing;
	pthread_cond_broadcast(&in->cv);
	pthread_cond_broadcast(&in->query_cv);
	pthread_mutex_unlock(&in->mu);
	if (!closing)
		start_recv(rc);
}

/* Replies to one request; the aio callback re-arms the receive afterwards. */
static void send_reply(struct ingest *in, struct request_ctx *rc)
{
	nng_msg_free(rc->msg);
	rc->msg = NULL;
	if (!rc->reply) {
		/* Could not even allocate a reply: drop the request; the client resends. */
		ctx_finished(in, rc);
		return;
	}
	pthread_mutex_lock(&in->mu);
	rc->state = CTX_SEND;
	pthread_mutex_unlock(&in->mu);
	nng_aio_set_msg(rc->aio, rc->reply);
	rc->reply = NULL;
	nng_ctx_send(rc->ctx, rc->aio);
}

/* Appends one batch of the agent's own records. A failure is logged and
 * counted: there is no client to resend it (a crash mark is submitted again by
 * the next poll, since the run still looks alive). */
static void append_internal(struct ingest *in, const struct internal_batch *ib)
{
	uint8_t head[64];
	size_t n = 0;
	head[n++] = WIRE_KEY(BATCH, SESSION_ID);
	head[n++] = TRACKD_SESSION_ID_BYTES;
	memcpy(head + n, in->agent_session, TRACKD_SESSION_ID_BYTES);
	n += TRACKD_SESSION_ID_BYTES;
	head[n++] = WIRE_KEY(BATCH, SEQ);
	n += varint_put(head + n, ++in->agent_seq);
	uint8_t *batch = malloc(n + ib->len);
	if (!batch) {
		count(&in->append_failures, 1);
		return;
	}
	memcpy(batch, head, n);
	memcpy(batch + n, ib->records, ib->len);
	size_t len =
	    ingest_encode_log_entry(in->entry_buf, in->entry_cap, (uint32_t)geteuid(),
	                            (uint32_t)getegid(), 0, clock_wall_us(), batch, n + ib->len);
	free(batch);
	int rv = len ? txlog_append(in->opts.log, in->entry_buf, len, NULL) : TRACKD_ETOOBIG;
	if (rv != 0) {
		count(&in->append_failures, 1);
		log_error("could not store the agent's own records: %s", trackd_strerror(rv));
		return;
	}
	sessions_record(in->opts.tables->sessions, in->agent_session, in->agent_seq);
	count(&in->internal_batches, 1);
}

/* Appends rc to a queue (the worker's or the query thread's) and wakes the
 * thread that serves it. in->mu held. */
static void enqueue_locked(struct request_ctx **head, struct request_ctx **tail, pthread_cond_t *cv,
                           struct request_ctx *rc)
{
	rc->next = NULL;
	if (*tail)
		(*tail)->next = rc;
	else
		*head = rc;
	*tail = rc;
	pthread_cond_signal(cv);
}

static void queue_query(struct ingest *in, struct request_ctx *rc)
{
	pthread_mutex_lock(&in->mu);
	enqueue_locked(&in->query_head, &in->query_tail, &in->query_cv, rc);
	pthread_mutex_unlock(&in->mu);
}

static void process_group(struct ingest *in, struct request_ctx *group,
                          struct internal_batch *internal)
{
	bool any_appended = false;
	for (struct internal_batch *ib = internal, *next; ib; ib = next) {
		next = ib->next;
		append_internal(in, ib);
		any_appended = true;
		free(ib);
	}
	struct request_ctx **link = &group;
	while (*link) {
		struct request_ctx *rc = *link;
		handle_request(in, rc);
		any_appended |= rc->appended;
		if (rc->is_query) {
			*link = rc->next;
			queue_query(in, rc);
		} else {
			link = &rc->next;
		}
	}
	int sync_rc = 0;
	if ((any_appended && in->opts.sync_before_ack) || in->sync_group_open)
		sync_rc = txlog_sync(in->opts.log);
	in->sync_group_open = false;
	if (sync_rc != 0) {
		/* The log truncated itself back to its last durable point: these batches
		 * are gone. Undo their dedupe entries (newest first) so resends append. */
		log_error("fsync failed (%s): %s", trackd_strerror(sync_rc),
		          "answering the affected batches with a retryable error");
		struct request_ctx *stack[INGEST_MAX_CONTEXTS];
		size_t n = 0;
		for (struct request_ctx *rc = group; rc && n < INGEST_MAX_CONTEXTS; rc = rc->next)
			if (rc->appended && rc->synced_before_ack)
				stack[n++] = rc;
		while (n--)
			sessions_restore(in->opts.tables->sessions, stack[n]->session_id,
			                 stack[n]->prev_seq);
	}
	for (struct request_ctx *rc = group; rc; rc = rc->next) {
		if (!rc->appended)
			continue;
		if (sync_rc != 0 && rc->synced_before_ack) {
			count(&in->append_failures, 1);
			rc->reply = error_reply(
			    TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE,
			    "agent could not make the batch durable (fsync failed)", true);
		} else {
			count(&in->batches_appended, 1);
			count(&in->records_appended, rc->records);
			rc->reply = ack_reply(in, rc->seq, false);
		}
	}
	for (struct request_ctx *rc = group, *next; rc; rc = next) {
		next = rc->next;
		rc->next = NULL;
		send_reply(in, rc);
	}
}

static void *worker_main(void *arg)
{
	struct ingest *in = arg;
	pthread_mutex_lock(&in->mu);
	for (;;) {
		while (!in->queue_head && !in->internal_head && !(in->closing && in->busy == 0)) {
			/* Wake up now and then even when idle, so the heartbeat shows a
			 * live worker (the watchdog reads it). */
			atomic_store(&in->heartbeat_us, clock_mono_us());
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&in->cv, &in->mu, &ts);
		}
		atomic_store(&in->heartbeat_us, clock_mono_us());
		if (!in->queue_head && !in->internal_head)
			break; /* closing, and every received request answered */
		struct request_ctx *group = in->queue_head;
		struct internal_batch *internal = in->internal_head;
		in->queue_head = in->queue_tail = NULL;
		in->internal_head = in->internal_tail = NULL;
		pthread_mutex_unlock(&in->mu);
		process_group(in, group, internal);
		pthread_mutex_lock(&in->mu);
	}
	pthread_mutex_unlock(&in->mu);
	return NULL;
}

static void answer_query(struct ingest *in, struct request_ctx *rc)
{
	if (rc->is_status) {
		rc->reply = status_reply(in);
		return;
	}
	if (rc->blob) {
		rc->reply = answer_blob(in, rc);
		return;
	}
	count(&in->queries, 1);
	struct validated_request req;
	char err[512];
	uint64_t max_message_bytes;
	struct validate_limits limits;
	current_limits(in, &max_message_bytes, &limits);
	/* Validated by the worker already (perhaps under other limits): only the
	 * positions of the query are wanted here. */
	int vcode = validate_request(&limits, nng_msg_body(rc->msg), nng_msg_len(rc->msg), &req,
	                             err, sizeof err);
	if (vcode != 0 || req.kind != VALIDATED_QUERY) {
		/* Only when a reload changed the limits in between. */
		rc->reply = error_reply(vcode ? vcode : TRACKD__V1__ERROR_CODE__ERROR_INVALID,
		                        vcode ? err : "not a query", false);
		return;
	}
	if (!in->opts.query) {
		rc->reply = error_reply(TRACKD__V1__ERROR_CODE__ERROR_INVALID,
		                        "this agent keeps no run store to query", false);
		return;
	}
	/* Answers may be larger than requests (a page of history): clients
	 * accept up to four times the request limit. */
	size_t max_reply = (size_t)max_message_bytes * 4;
	Trackd__V1__QueryReply *qr = NULL;
	int code = in->opts.query(in->opts.hook_arg, req.query, req.query_len, rc->uid, rc->admin,
	                          max_reply, &qr, err, sizeof err);
	if (code == 0 && trackd__v1__query_reply__get_packed_size(qr) > max_reply) {
		snprintf(err, sizeof err, "answer too large (over %zu bytes): ask for less",
		         max_reply);
		code = TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE;
	}
	if (code != 0) {
		rc->reply = error_reply(code, err, false);
	} else {
		Trackd__V1__Reply reply = TRACKD__V1__REPLY__INIT;
		reply.body_case = TRACKD__V1__REPLY__BODY_QUERY;
		reply.query = qr;
		rc->reply = pack_reply(&reply);
	}
	if (qr)
		trackd__v1__query_reply__free_unpacked(qr, NULL);
}

static void *query_main(void *arg)
{
	struct ingest *in = arg;
	pthread_mutex_lock(&in->mu);
	for (;;) {
		while (!in->query_head && !(in->closing && in->busy == 0))
			pthread_cond_wait(&in->query_cv, &in->mu);
		struct request_ctx *rc = in->query_head;
		if (!rc)
			break;
		in->query_head = rc->next;
		if (!in->query_head)
			in->query_tail = NULL;
		pthread_mutex_unlock(&in->mu);
		answer_query(in, rc);
		send_reply(in, rc);
		pthread_mutex_lock(&in->mu);
	}
	pthread_mutex_unlock(&in->mu);
	return NULL;
}

int ingest_submit(ingest *in, const Trackd__V1__Record *rec)
{
	size_t n = trackd__v1__record__get_packed_size(rec);
	if (n > TRACKD_DEFAULT_MAX_MESSAGE_BYTES)
		return TRACKD_ETOOBIG;
	uint8_t head[1 + VARINT_MAX_BYTES];
	size_t k = 0;
	head[k++] = WIRE_KEY(BATCH, RECORDS);
	k += varint_put(head + k, n);
	struct internal_batch *ib = malloc(sizeof *ib + k + n);
	if (!ib)
		return TRACKD_ENOMEM;
	ib->next = NULL;
	ib->len = k + n;
	memcpy(ib->records, head, k);
	trackd__v1__record__pack(rec, ib->records + k);
	pthread_mutex_lock(&in->mu);
	if (in->closing) {
		pthread_mutex_unlock(&in->mu);
		free(ib);
		return TRACKD_ECLOSED;
	}
	if (in->internal_tail)
		in->internal_tail->next = ib;
	else
		in->internal_head = ib;
	in->internal_tail = ib;
	pthread_cond_signal(&in->cv);
	pthread_mutex_unlock(&in->mu);
	return TRACKD_OK;
}

/* ---- NNG callbacks: hand-offs only ---------------------------------------- */

static void ctx_callback(void *arg)
{
	struct request_ctx *rc = arg;
	struct ingest *in = rc->in;
	int result = nng_aio_result(rc->aio);
	pthread_mutex_lock(&in->mu);
	enum ctx_state state = rc->state;
	pthread_mutex_unlock(&in->mu);

	if (state == CTX_SEND) {
		if (result != 0) {
			/* Peer gone: the client will resend to whoever answers next. */
			nng_msg_free(nng_aio_get_msg(rc->aio));
		}
		ctx_finished(in, rc);
		return;
	}
	/* CTX_RECV */
	pthread_mutex_lock(&in->mu);
	if (result != 0) {
		rc->state = CTX_IDLE;
		bool closing = in->closing;
		pthread_cond_broadcast(&in->cv);
		pthread_cond_broadcast(&in->query_cv);
		pthread_mutex_unlock(&in->mu);
		if (!closing && result != NNG_ECLOSED && result != NNG_ECANCELED)
			start_recv(rc);
		return;
	}
	if (in->closing) {
		/* Received after the stop began (a receive re-armed just before it):
		 * the worker may be gone, so it is not answered; the client resends
		 * it to the next agent, as after any lost reply. */
		nng_msg_free(nng_aio_get_msg(rc->aio));
		rc->state = CTX_IDLE;
		pthread_cond_broadcast(&in->cv);
		pthread_cond_broadcast(&in->query_cv);
		pthread_mutex_unlock(&in->mu);
		return;
	}
	rc->msg = nng_aio_get_msg(rc->aio);
	if (nng_msg_len(rc->msg) == sizeof ping_request &&
	    memcmp(nng_msg_body(rc->msg), ping_request, sizeof ping_request) == 0) {
		/* A ping (the listener check): answered here, so a busy worker never
		 * makes a healthy listener look wedged. The reply is the same message,
		 * emptied: an empty Reply. */
		nng_msg_clear(rc->msg);
		rc->state = CTX_SEND;
		in->busy++;
		pthread_mutex_unlock(&in->mu);
		nng_aio_set_msg(rc->aio, rc->msg);
		rc->msg = NULL;
		nng_ctx_send(rc->ctx, rc->aio);
		return;
	}
	if (nng_msg_len(rc->msg) == sizeof status_request &&
	    memcmp(nng_msg_body(rc->msg), status_request, sizeof status_request) == 0) {
		/* Status reads counters only: a worker busy with a large group
		 * commit must not make `trackctl status` time out. */
		count(&in->requests, 1);
		rc->state = CTX_QUEUED;
		rc->is_query = rc->is_status = true;
		in->busy++;
		enqueue_locked(&in->query_head, &in->query_tail, &in->query_cv, rc);
		pthread_mutex_unlock(&in->mu);
		return;
	}
	rc->state = CTX_QUEUED;
	in->busy++;
	enqueue_locked(&in->queue_head, &in->queue_tail, &in->cv, rc);
	pthread_mutex_unlock(&in->mu);
}

/* Remembers a pipe of this process's own probe; false when it is a client's
 * (or, with every slot taken, counted as one: harmless, never lost). */
static bool self_pipe_add(struct ingest *in, nng_pipe p)
{
	uint64_t pid;
	if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_PID, &pid) != 0 || pid != (uint64_t)getpid())
		return false;
	uint32_t id = (uint32_t)nng_pipe_id(p);
	for (int i = 0; i < SELF_PIPES_MAX; i++) {
		uint32_t free_slot = 0;
		if (atomic_compare_exchange_strong(&in->self_pipes[i], &free_slot, id))
			return true;
	}
	return false;
}

static bool self_pipe_remove(struct ingest *in, nng_pipe p)
{
	uint32_t id = (uint32_t)nng_pipe_id(p);
	for (int i = 0; i < SELF_PIPES_MAX; i++) {
		uint32_t expected = id;
		if (atomic_compare_exchange_strong(&in->self_pipes[i], &expected, 0))
			return true;
	}
	return false;
}

static void pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct ingest *in = arg;
	if (ev == NNG_PIPE_EV_ADD_POST) {
		if (self_pipe_add(in, p))
			return;
		atomic_fetch_add(&in->clients_connected, 1);
		atomic_store(&in->client_activity_us, clock_mono_us());
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		if (self_pipe_remove(in, p))
			return;
		atomic_fetch_sub(&in->clients_connected, 1);
		atomic_store(&in->client_activity_us, clock_mono_us());
		if (in->opts.disconnected)
			in->opts.disconnected(in->opts.hook_arg);
	}
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The socket's directory, created if missing (0755: the socket file's own mode
 * decides who may connect). */
static int make_socket_dir(const char *url)
{
	char dir[4096];
	const char *path = url + strlen("ipc://");
	const char *slash = strrchr(path, '/');
	if (!slash || slash == path)
		return TRACKD_OK;
	if ((size_t)(slash - path) >= sizeof dir)
		return TRACKD_EINVAL;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	return mkdir_parents(dir, 0755);
}

/* Whether the agent at `url` answers a ping within `timeout_ms`. A full round
 * trip is needed: with NNG 1.5.2's wedge (a peer that disconnects during the
 * handshake: nanomsg/nng#1518) new connections still open but are never served.
 * The ping is answered by NNG's callback thread, so a busy agent answers too. */
bool ingest_probe(const char *url, int timeout_ms)
{
	nng_socket s;
	if (nng_req0_open(&s) != 0)
		return false;
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, timeout_ms);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, timeout_ms);
	nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 1 << 20);
	bool answered = false;
	nng_msg *reply;
	if (nng_dial(s, url, NULL, 0) == 0 &&
	    nng_send(s, (void *)ping_request, sizeof ping_request, 0) == 0 &&
	    nng_recvmsg(s, &reply, 0) == 0) {
		answered = true;
		nng_msg_free(reply);
	}
	if (!nng_close_bounded(s, SOCKET_CLOSE_WAIT_MS))
		log_warn("closing the probe socket hangs in NNG (nanomsg/nng#1543); left behind");
	return answered;
}

static int start_listener(struct ingest *in)
{
	int nrv;
	/* Permissions must be set between create and start, or the socket file
	 * exists for a moment with the umask's mode. */
	if ((nrv = nng_listener_create(&in->listener, in->sock, in->opts.url)) != 0 ||
	    (nrv = nng_listener_set_int(in->listener, NNG_OPT_IPC_PERMISSIONS,
	                                (int)in->opts.socket_mode)) != 0 ||
	    (nrv = nng_listener_start(in->listener, 0)) != 0) {
		log_error("cannot listen on %s: %s", in->opts.url, nng_strerror(nrv));
		return nrv == NNG_EADDRINUSE ? TRACKD_EEXIST : TRACKD_ESYS;
	}
	return TRACKD_OK;
}

int ingest_check_listener(ingest *in)
{
	/* Two failed probes in a row before acting: one slow handshake on a loaded
	 * machine is not a wedge. */
	if (ingest_probe(in->opts.url, 1000) || ingest_probe(in->opts.url, 2000))
		return TRACKD_OK;
	/* Closing the listener also closes the connections it accepted; their
	 * clients reconnect and resend what was not acknowledged. */
	log_warn("the socket %s stopped accepting connections (a peer that disconnects during "
	         "the handshake wedges NNG 1.5.2's listener); listening anew",
	         in->opts.url);
	count(&in->listener_restarts, 1);
	nng_listener_close(in->listener);
	return start_listener(in);
}

int ingest_start(const struct ingest_options *opts, ingest **out)
{
	if (strncmp(opts->url, "ipc://", 6) != 0 || opts->contexts == 0 ||
	    opts->contexts > INGEST_MAX_CONTEXTS)
		return TRACKD_EINVAL;
	struct ingest *in = calloc(1, sizeof *in);
	if (!in)
		return TRACKD_ENOMEM;
	in->opts = *opts;
	in->max_message_bytes = opts->max_message_bytes;
	in->limits = opts->limits;
	pthread_mutex_init(&in->limits_mu, NULL);
	pthread_mutex_init(&in->mu, NULL);
	pthread_cond_init(&in->cv, NULL);
	pthread_cond_init(&in->query_cv, NULL);
	if (getrandom(in->agent_session, sizeof in->agent_session, 0) !=
	    (ssize_t)sizeof in->agent_session) {
		free(in);
		return TRACKD_ESYS;
	}
	in->heartbeat_us = clock_mono_us();
	in->entry_cap = opts->max_message_bytes + LOG_ENTRY_HEADER_MAX;
	in->entry_buf = malloc(in->entry_cap);
	in->ctxs = calloc(opts->contexts, sizeof *in->ctxs);
	int rv;
	if (!in->entry_buf || !in->ctxs) {
		rv = TRACKD_ENOMEM;
		goto fail;
	}
	if (ingest_probe(opts->url, 1000)) {
		rv = TRACKD_EEXIST;
		goto fail;
	}
	if ((rv = access_new(opts->group, opts->admin_group, &in->access)) != 0)
		goto fail;
	rv = make_socket_dir(opts->url);
	if (rv != 0) {
		log_error("cannot create the directory of %s: %s", opts->url, trackd_strerror(rv));
		goto fail;
	}
	int nrv;
	if ((nrv = nng_rep0_open(&in->sock)) != 0)
		goto nng_fail;
	/* Twice the request limit: requests between the two get a clear TOO_LARGE
	 * reply; beyond it NNG refuses to allocate and drops the connection. */
	if ((nrv = nng_socket_set_size(in->sock, NNG_OPT_RECVMAXSZ, opts->max_message_bytes * 2)) !=
	    0)
		goto nng_fail;
	nng_pipe_notify(in->sock, NNG_PIPE_EV_ADD_POST, pipe_event, in);
	nng_pipe_notify(in->sock, NNG_PIPE_EV_REM_POST, pipe_event, in);
	for (uint32_t i = 0; i < opts->contexts; i++) {
		struct request_ctx *rc = &in->ctxs[i];
		rc->in = in;
		if ((nrv = nng_ctx_open(&rc->ctx, in->sock)) != 0 ||
		    (nrv = nng_aio_alloc(&rc->aio, ctx_callback, rc)) != 0)
			goto nng_fail;
		in->nctx++;
	}
	if (pthread_create(&in->worker, NULL, worker_main, in) != 0) {
		rv = TRACKD_ESYS;
		goto fail;
	}
	in->worker_started = true;
	if (pthread_create(&in->query_thread, NULL, query_main, in) != 0) {
		rv = TRACKD_ESYS;
		goto fail;
	}
	in->query_started = true;
	if ((rv = start_listener(in)) != 0)
		goto fail;
	for (uint32_t i = 0; i < in->nctx; i++)
		start_recv(&in->ctxs[i]);
	*out = in;
	return TRACKD_OK;

nng_fail:
	log_error("cannot set up the socket for %s: %s", opts->url, nng_strerror(nrv));
	rv = TRACKD_ESYS;
fail:
	ingest_close(in);
	ingest_stop(in);
	ingest_free(in);
	return rv;
}

void ingest_close(ingest *in)
{
	if (!in)
		return;
	pthread_mutex_lock(&in->mu);
	in->closing = true;
	pthread_cond_broadcast(&in->cv);
	pthread_cond_broadcast(&in->query_cv);
	pthread_mutex_unlock(&in->mu);
	if (nng_listener_id(in->listener) > 0)
		nng_listener_close(in->listener);
	/* Cancel pending receives only; queued requests and sends in flight finish.
	 * The check and the cancel happen under the lock, so a context cannot move
	 * on to sending its reply in between (NNG runs the cancelled operation's
	 * callback on its own threads, which then wait for the lock). */
	pthread_mutex_lock(&in->mu);
	for (uint32_t i = 0; i < in->nctx; i++)
		if (in->ctxs[i].state == CTX_RECV)
			nng_aio_cancel(in->ctxs[i].aio);
	pthread_mutex_unlock(&in->mu);
}

void ingest_stop(ingest *in)
{
	if (!in)
		return;
	if (in->worker_started) {
		pthread_join(in->worker, NULL);
		in->worker_started = false;
	}
	if (in->query_started) {
		pthread_mutex_lock(&in->mu);
		pthread_cond_broadcast(&in->query_cv);
		pthread_mutex_unlock(&in->mu);
		pthread_join(in->query_thread, NULL);
		in->query_started = false;
	}
	for (uint32_t i = 0; i < in->nctx; i++)
		nng_aio_stop(in->ctxs[i].aio);
}

void ingest_free(ingest *in)
{
	if (!in)
		return;
	for (uint32_t i = 0; i < in->nctx; i++) {
		nng_aio_free(in->ctxs[i].aio);
		nng_ctx_close(in->ctxs[i].ctx);
	}
	if (nng_socket_id(in->sock) > 0 && !nng_close_bounded(in->sock, SOCKET_CLOSE_WAIT_MS)) {
		/* NNG may still call the pipe callbacks with `in`: it stays allocated
		 * (the agent is exiting). Everything received was answered already. */
		log_warn("closing the listening socket hangs in NNG 1.5.2 (nanomsg/nng#1543); "
		         "exiting without waiting for it");
		return;
	}
	for (struct internal_batch *ib = in->internal_head, *next; ib; ib = next) {
		next = ib->next;
		free(ib);
	}
	pthread_mutex_destroy(&in->mu);
	pthread_mutex_destroy(&in->limits_mu);
	pthread_cond_destroy(&in->cv);
	pthread_cond_destroy(&in->query_cv);
	access_free(in->access);
	free(in->ctxs);
	free(in->entry_buf);
	free(in);
}

int64_t ingest_heartbeat_us(ingest *in)
{
	return atomic_load(&in->heartbeat_us);
}

int64_t ingest_client_activity_us(ingest *in)
{
	return atomic_load(&in->client_activity_us);
}

void ingest_get_stats(ingest *in, struct ingest_stats *out)
{
#define GET(f) out->f = atomic_load_explicit(&in->f, memory_order_relaxed)
	GET(requests);
	GET(batches_appended);
	GET(batches_duplicate);
	GET(records_appended);
	GET(rejected_version);
	GET(rejected_malformed);
	GET(rejected_invalid);
	GET(rejected_too_large);
	GET(rejected_permission);
	GET(append_failures);
	GET(clients_connected);
	GET(listener_restarts);
	GET(queries);
	GET(internal_batches);
	GET(blob_queries);
	GET(blob_bytes_received);
	GET(blobs_stored);
	GET(blobs_known);
	GET(blob_refusals);
#undef GET
}
