/*
 * encode.h — the wire-level pieces of the client: the hand-built Request/Batch
 * envelope, the hand encoder for item records (the hot path: td_log,
 * td_summary_update, td_config_update), and the scratch structs through which
 * protobuf-c encodes caller items for the cold records (RunStart's config)
 * without copying them.
 *
 * Records are encoded once, straight into the open batch (buffer.h); the
 * envelope is written in front of a batch's bytes only when it is sent or
 * spooled, so resending never re-encodes. Items are borrowed from the caller
 * and must be validated first (validate.h): nothing here checks limits.
 *
 * A struct tdi_scratch belongs to one run and is used with the run's mu held;
 * it grows and never shrinks. Everything else here is stateless. Errors:
 * tdi_scratch_reserve returns TD_ERR_NOMEM (with the detail set); the rest
 * cannot fail.
 */
#ifndef TRACKD_CLIENT_ENCODE_H
#define TRACKD_CLIENT_ENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Encoded lengths of one item, computed before it is written (protobuf puts
 * a length in front of every nested message). */
struct tdi_item_len {
	size_t item;  /* Item message */
	size_t key;   /* key bytes */
	size_t value; /* Value message */
	size_t inner; /* string bytes, or the MapValue / ListValue message */
};

/* What validation counted, so encoding can size its scratch up front. */
struct tdi_item_count {
	size_t items; /* nested items and list elements included */
	size_t maps;
	size_t lists;
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

#endif
