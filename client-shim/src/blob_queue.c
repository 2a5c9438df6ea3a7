/*
 * blob_queue.c — file content waiting for the agent (blob_queue.h).
 */
#include "blob_queue.h"

#include "error.h"
#include "run.h"
#include "transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room in a request for the envelope, run id and digest around a piece. */
#define TDI_BLOB_ENVELOPE_ROOM 1024

int tdi_blob_enqueue_locked(struct td_run *run, uint8_t *data, size_t len, const uint8_t digest[32])
{
	struct tdi_blob_queue *q = &run->blobs;
	for (struct tdi_blob *b = q->head; b; b = b->next)
		if (memcmp(b->digest, digest, 32) == 0) {
			free(data);
			return TD_OK;
		}
	if (q->bytes + len > run->max_buffer_bytes)
		return tdi_fail(TD_ERR_FULL,
		                "file queue full: %zu bytes waiting for the agent, a %zu-byte file "
		                "does not fit (max_buffer_bytes %zu)",
		                q->bytes, len, run->max_buffer_bytes);
	struct tdi_blob *b = calloc(1, sizeof *b);
	if (!b)
		return tdi_fail(TD_ERR_NOMEM, "out of memory queueing a file");
	memcpy(b->digest, digest, 32);
	b->data = data;
	b->len = len;
	if (q->tail)
		q->tail->next = b;
	else
		q->head = b;
	q->tail = b;
	q->bytes += len;
	pthread_cond_signal(&run->wake);
	return TD_OK;
}

static void pop(struct td_run *run)
{
	struct tdi_blob_queue *q = &run->blobs;
	struct tdi_blob *b = q->head;
	q->head = b->next;
	if (!q->head)
		q->tail = NULL;
	q->bytes -= b->len;
	free(b->data);
	free(b);
	pthread_cond_broadcast(&run->drained);
}

size_t tdi_blob_queue_clear(struct td_run *run)
{
	size_t n = 0;
	while (run->blobs.head) {
		pop(run);
		n++;
	}
	return n;
}

int tdi_blob_step_locked(struct td_run *run)
{
	struct tdi_blob *b = run->blobs.head;
	struct tdi_limits lim;
	tdi_limits_load(run, &lim);
	size_t piece = TRACKD_BLOB_CHUNK_BYTES;
	if (lim.message_bytes > TDI_BLOB_ENVELOPE_ROOM &&
	    lim.message_bytes - TDI_BLOB_ENVELOPE_ROOM < piece)
		piece = lim.message_bytes - TDI_BLOB_ENVELOPE_ROOM;

	Trackd__V1__Request req = TRACKD__V1__REQUEST__INIT;
	req.has_protocol_version = true;
	req.protocol_version = TRACKD_PROTOCOL_VERSION;
	Trackd__V1__BlobQuery bq = TRACKD__V1__BLOB_QUERY__INIT;
	Trackd__V1__BlobChunk bc = TRACKD__V1__BLOB_CHUNK__INIT;
	ProtobufCBinaryData digest = {.len = 32, .data = b->digest};
	size_t n = 0;
	if (!b->asked) {
		req.body_case = TRACKD__V1__REQUEST__BODY_BLOB_QUERY;
		req.blob_query = &bq;
		bq.run_id = run->run_id;
		bq.n_sha256 = 1;
		bq.sha256 = &digest;
	} else {
		req.body_case = TRACKD__V1__REQUEST__BODY_BLOB_CHUNK;
		req.blob_chunk = &bc;
		bc.run_id = run->run_id;
		bc.has_sha256 = true;
		bc.sha256 = digest;
		bc.has_size = bc.has_offset = true;
		bc.size = b->len;
		bc.offset = b->offset;
		n = b->len - b->offset < piece ? b->len - b->offset : piece;
		bc.has_data = true;
		bc.data.len = n;
		bc.data.data = b->data + b->offset;
	}
	/* The blob stays at the head while the lock is let go: only this thread
	 * pops it, and a recording call only appends. */
	size_t len = trackd__v1__request__get_packed_size(&req);
	nng_msg *msg = NULL;
	if (nng_msg_alloc(&msg, len) != 0)
		return 1;
	trackd__v1__request__pack(&req, nng_msg_body(msg));
	pthread_mutex_unlock(&run->mu);
	Trackd__V1__Reply *reply = NULL;
	enum tdi_reach reach;
	char why[256];
	(void)nng_socket_set_ms(run->sock, NNG_OPT_RECVTIMEO, run->reply_timeout_ms);
	tdi_request(run->sock, run->url, msg, &reply, &reach, why, sizeof why);
	pthread_mutex_lock(&run->mu);
	run->agent_ok = reach == TDI_ANSWERED;
	run->no_connection = reach == TDI_NO_CONNECTION;
	if (!reply) {
		if (!run->stopping)
			snprintf(run->transport_error, sizeof run->transport_error, "%s", why);
		return 1;
	}
	int out = 0;
	if (reply->body_case == TRACKD__V1__REPLY__BODY_ERROR) {
		const Trackd__V1__Error *e = reply->error;
		if (e->retryable) {
			snprintf(run->transport_error, sizeof run->transport_error, "%s",
			         e->message ? e->message : "agent busy");
			out = 1;
		} else {
			snprintf(run->agent_error, sizeof run->agent_error, "file refused: %s",
			         e->message ? e->message : "(no message)");
			/* Counted as a rejected record: td_finish reports it. */
			run->blobs.blobs_dropped++;
			run->records_rejected++;
			pop(run);
		}
	} else if (reply->body_case == TRACKD__V1__REPLY__BODY_BLOB) {
		const Trackd__V1__BlobReply *br = reply->blob;
		if (br->limits)
			tdi_limits_learn_hook(run, br->limits);
		if (!b->asked) {
			if (br->n_missing == 0) {
				run->blobs.blobs_skipped++;
				pop(run);
			} else {
				b->asked = true;
				b->offset = 0;
			}
		} else if (br->complete) {
			run->blobs.bytes_sent += n;
			run->blobs.blobs_sent++;
			pop(run);
		} else {
			if (br->have == b->offset + n)
				run->blobs.bytes_sent += n;
			/* Where the agent has got to: on from there (0: anew). */
			b->offset = br->have <= b->len ? br->have : 0;
		}
	} else {
		out = 1;
	}
	trackd__v1__reply__free_unpacked(reply, NULL);
	return out;
}
