/*
 * buffer.h — a run's records in memory: the open batch, the FIFO of sealed
 * batches waiting for the agent's ack, and the memory bound.
 *
 * Records are framed as Batch.records entries (key, varint length, bytes) and
 * written once, straight into the open batch (reserve, write, commit). Sealing
 * moves the open batch to the tail of the FIFO with the next seq; the sender
 * (sender.h) releases the head once the agent acknowledged or refused it.
 *
 * Bound: buffered_bytes (framed record bytes of the open batch plus every
 * sealed batch) never exceeds max_buffer_bytes. A record that would cross it
 * asks the layer above to make room (run->make_room, set by run.c, which
 * spills to the spool: spool_file.h); the buffer never calls into the spool
 * itself. If no room is made the record is refused with TD_ERR_FULL and
 * counted. Only the final RunExit record may pass the bound (bypass_bound), so
 * a full buffer can still end the run cleanly.
 *
 * State: the fields of struct td_run (run.h) from `open` to `reserved`. Every
 * function here runs with run->mu held; none does I/O or waits, except that
 * make_room may (a spill writes and syncs the spool file). Batches are owned
 * by the run until released or freed with tdi_buffer_free_all. Errors:
 * TD_ERR_FULL, TD_ERR_INVALID (a record over the agent's message limit),
 * TD_ERR_NOMEM, with the detail set (tdi_fail).
 */
#ifndef TRACKD_CLIENT_BUFFER_H
#define TRACKD_CLIENT_BUFFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

struct td_run;

#define TDI_DEFAULT_MAX_BUFFER_BYTES ((size_t)64 << 20)
#define TDI_MIN_MAX_BUFFER_BYTES     ((size_t)64 << 10)
#define TDI_DEFAULT_BATCH_BYTES      ((size_t)256 << 10)

/* A batch of framed records. The open batch has seq 0. */
struct tdi_batch {
	struct tdi_batch *next;
	uint64_t seq;
	uint32_t n_records;
	size_t len; /* bytes used in data */
	size_t cap;
	uint8_t *data;
};

/* What the buffer asks of the layer above (run->make_room) when a record of
 * `framed` bytes would take it over max_buffer_bytes, with mu held: make room
 * (run.c spills to the spool). TD_OK when there is room now; TD_ERR_FULL
 * otherwise (the buffer counts the refusal), with *why set to what the spool
 * said, or left NULL or "" when there is nothing to add. */
typedef int tdi_make_room_fn(struct td_run *run, size_t framed, const char **why);

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
/* Records in memory (the open batch and the sealed ones): not yet acknowledged. */
uint64_t tdi_buffer_unacked_records_locked(const struct td_run *run);
void tdi_buffer_free_all(struct td_run *run);

#endif
