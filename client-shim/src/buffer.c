/*
 * buffer.c — the open batch, the FIFO of sealed batches, and the memory bound.
 * Every function here runs with run->mu held (see buffer.h, run.h).
 */
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "error.h"
#include "run.h"
#include "varint.h"

#define BATCH_RECORD_KEY WIRE_KEY(BATCH, RECORDS)

static int reserve_open(struct td_run *run, size_t need)
{
	struct tdi_batch *b = &run->open;

	if (b->cap - b->len >= need)
		return TD_OK;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len < need)
		cap *= 2;
	if (cap > TDI_MAX_BATCH_RECORD_BYTES)
		cap = TDI_MAX_BATCH_RECORD_BYTES;
	uint8_t *data = realloc(b->data, cap);
	if (data == NULL)
		return tdi_fail(TD_ERR_NOMEM, "out of memory growing the batch to %zu bytes", cap);
	b->data = data;
	b->cap = cap;
	return TD_OK;
}

int tdi_buffer_reserve_locked(struct td_run *run, size_t record_len, bool bypass_bound,
                              uint8_t **dst)
{
	size_t framed = 1 + varint_size(record_len) + record_len;
	struct tdi_limits lim;
	int rc;

	tdi_limits_load(run, &lim);
	if (framed > tdi_limits_batch_bytes(&lim)) {
		return tdi_fail(
		    TD_ERR_INVALID,
		    "record of %zu bytes exceeds the agent's message limit of %llu bytes", framed,
		    (unsigned long long)lim.message_bytes);
	}
	const char *why = NULL;
	if (!bypass_bound && run->buffered_bytes + framed > run->max_buffer_bytes &&
	    (run->make_room == NULL || run->make_room(run, framed, &why) != TD_OK)) {
		run->records_refused_full++;
		if (why != NULL && why[0]) {
			return tdi_fail(TD_ERR_FULL,
			                "buffer full: %zu of %zu bytes held for the agent, record "
			                "needs %zu; spool: %s",
			                run->buffered_bytes, run->max_buffer_bytes, framed, why);
		}
		return tdi_fail(
		    TD_ERR_FULL,
		    "buffer full: %zu of %zu bytes held for the agent, record needs %zu "
		    "(agent slow?)",
		    run->buffered_bytes, run->max_buffer_bytes, framed);
	}
	/* The sender normally seals at batch_bytes; this only catches a batch
	 * that would break the agent's message or record-count limit. */
	if (run->open.len + framed > tdi_limits_batch_bytes(&lim) ||
	    run->open.n_records >= lim.records_per_batch) {
		if ((rc = tdi_buffer_seal_locked(run)) != TD_OK)
			return rc;
		pthread_cond_signal(&run->wake);
	}
	if ((rc = reserve_open(run, framed)) != TD_OK)
		return rc;

	uint8_t *p = run->open.data + run->open.len;
	*p++ = BATCH_RECORD_KEY;
	p += varint_put(p, record_len);
	*dst = p;
	run->reserved = framed;
	return TD_OK;
}

void tdi_buffer_commit_locked(struct td_run *run)
{
	run->open.len += run->reserved;
	run->open.n_records++;
	run->buffered_bytes += run->reserved;
	run->records_logged++;
	run->reserved = 0;
	/* One wake-up per batch, not per record: the flag stays set until the
	 * sender seals, and it also covers a sender that is busy sending now. */
	if (run->open.len >= run->batch_bytes && !run->seal_requested) {
		run->seal_requested = true;
		pthread_cond_signal(&run->wake);
	}
}

int tdi_buffer_append_locked(struct td_run *run, const ProtobufCMessage *rec, bool bypass_bound)
{
	size_t len = protobuf_c_message_get_packed_size(rec);
	uint8_t *dst;
	int rc;

	if ((rc = tdi_buffer_reserve_locked(run, len, bypass_bound, &dst)) != TD_OK)
		return rc;
	protobuf_c_message_pack(rec, dst);
	tdi_buffer_commit_locked(run);
	return TD_OK;
}

int tdi_buffer_seal_locked(struct td_run *run)
{
	struct tdi_batch *b;

	if (run->open.n_records == 0)
		return TD_OK;
	/* Reuse the last acknowledged batch (node and buffer) when there is
	 * one, so a steady run does not allocate per batch. */
	if (run->spare != NULL) {
		b = run->spare;
		run->spare = NULL;
	} else if ((b = calloc(1, sizeof(*b))) == NULL) {
		return tdi_fail(TD_ERR_NOMEM, "out of memory sealing a batch");
	}
	uint8_t *spare_data = b->data;
	size_t spare_cap = b->cap;

	*b = run->open;
	b->next = NULL;
	b->seq = run->next_seq++;
	if (run->tail)
		run->tail->next = b;
	else
		run->head = b;
	run->tail = b;

	memset(&run->open, 0, sizeof(run->open));
	run->open.data = spare_data;
	run->open.cap = spare_cap;
	run->seal_requested = false;
	return TD_OK;
}

void tdi_buffer_release_head_locked(struct td_run *run, bool acked)
{
	struct tdi_batch *b = run->head;

	run->head = b->next;
	if (run->head == NULL)
		run->tail = NULL;
	run->buffered_bytes -= b->len;
	if (acked)
		run->records_acked += b->n_records;
	else
		run->records_rejected += b->n_records;

	/* Keep the larger buffer for reuse. */
	if (run->spare == NULL || run->spare->cap < b->cap) {
		struct tdi_batch *old = run->spare;
		run->spare = b;
		b = old;
	}
	if (b != NULL) {
		free(b->data);
		free(b);
	}
}

uint64_t tdi_buffer_unacked_records_locked(const struct td_run *run)
{
	uint64_t n = run->open.n_records;

	for (const struct tdi_batch *b = run->head; b; b = b->next)
		n += b->n_records;
	return n;
}

void tdi_buffer_free_all(struct td_run *run)
{
	struct tdi_batch *b = run->head;

	while (b != NULL) {
		struct tdi_batch *next = b->next;
		free(b->data);
		free(b);
		b = next;
	}
	run->head = run->tail = NULL;
	if (run->spare) {
		free(run->spare->data);
		free(run->spare);
		run->spare = NULL;
	}
	free(run->open.data);
	memset(&run->open, 0, sizeof(run->open));
}
