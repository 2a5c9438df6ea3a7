/*
 * wire.h — the protobuf wire format as trackd's hand-written code speaks it:
 * the field keys of every message a hand encoder writes or a wire reader picks
 * apart (one table, WIRE_FIELDS, checked field by field against the protobuf-c
 * descriptors by proto/wire_test.c, so renumbering a field in trackd.proto
 * fails a test instead of corrupting data), and a reader that iterates the
 * fields of a message without decoding it — bounds-checked, no allocation.
 * The agent validates and stores client batches with the reader instead of
 * unpacking them, which keeps ingest allocation-free and its memory
 * independent of what a client sends (protobuf-c's unpack can allocate ~25×
 * the wire size). Varints: common/varint.h.
 *
 * Pure functions and constants; thread-safe.
 */
#ifndef TRACKD_PROTO_WIRE_H
#define TRACKD_PROTO_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

enum wire_type { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

/*
 * X(MESSAGE, FIELD, message, field, number, wire type): message/field are the
 * protobuf-c names (the descriptor trackd__v1__<message>__descriptor and its
 * field <field>), MESSAGE/FIELD the same upper-cased, naming the constants. Every field here
 * has a number below 16, so its key is one byte (checked in wire.c).
 */
#define WIRE_FIELDS(X)                                                                             \
	X(REQUEST, PROTOCOL_VERSION, request, protocol_version, 1, WIRE_VARINT)                    \
	X(REQUEST, BATCH, request, batch, 2, WIRE_LEN)                                             \
	X(REQUEST, STATUS, request, status, 3, WIRE_LEN)                                           \
	X(REQUEST, QUERY, request, query, 4, WIRE_LEN)                                             \
	X(REQUEST, BLOB_QUERY, request, blob_query, 5, WIRE_LEN)                                   \
	X(REQUEST, BLOB_CHUNK, request, blob_chunk, 6, WIRE_LEN)                                   \
	X(BATCH, SESSION_ID, batch, session_id, 1, WIRE_LEN)                                       \
	X(BATCH, SEQ, batch, seq, 2, WIRE_VARINT)                                                  \
	X(BATCH, RECORDS, batch, records, 3, WIRE_LEN)                                             \
	X(RECORD, RUN_ID, record, run_id, 1, WIRE_LEN)                                             \
	X(RECORD, START, record, start, 2, WIRE_LEN)                                               \
	X(RECORD, HISTORY, record, history, 3, WIRE_LEN)                                           \
	X(RECORD, SUMMARY, record, summary, 4, WIRE_LEN)                                           \
	X(RECORD, CONFIG, record, config, 5, WIRE_LEN)                                             \
	X(RECORD, EXIT, record, exit, 7, WIRE_LEN)                                                 \
	X(RECORD, RENAME, record, rename, 9, WIRE_LEN)                                             \
	X(RECORD, ENVIRONMENT, record, environment, 10, WIRE_LEN)                                  \
	X(RUN_ENVIRONMENT, ARGS, run_environment, args, 2, WIRE_LEN)                               \
	X(RECORD, FILE, record, file, 11, WIRE_LEN)                                                \
	X(SAVED_FILE, NAME, saved_file, name, 1, WIRE_LEN)                                         \
	X(SAVED_FILE, SHA256, saved_file, sha256, 2, WIRE_LEN)                                     \
	X(ARTIFACT_LOG, NAME, artifact_log, name, 1, WIRE_LEN)                                     \
	X(ARTIFACT_LOG, TYPE, artifact_log, type, 2, WIRE_LEN)                                     \
	X(ARTIFACT_LOG, METADATA_JSON, artifact_log, metadata_json, 4, WIRE_LEN)                   \
	X(ARTIFACT_LOG, ALIASES, artifact_log, aliases, 5, WIRE_LEN)                               \
	X(ARTIFACT_LOG, ENTRIES, artifact_log, entries, 6, WIRE_LEN)                               \
	X(ARTIFACT_ENTRY, PATH, artifact_entry, path, 1, WIRE_LEN)                                 \
	X(ARTIFACT_ENTRY, SHA256, artifact_entry, sha256, 2, WIRE_LEN)                             \
	X(ARTIFACT_ENTRY, MD5_B64, artifact_entry, md5_b64, 3, WIRE_LEN)                           \
	X(ARTIFACT_ENTRY, REF, artifact_entry, ref, 5, WIRE_LEN)                                   \
	X(ARTIFACT_USE, ARTIFACT, artifact_use, artifact, 1, WIRE_LEN)                             \
	X(RUN_START, PROJECT, run_start, project, 1, WIRE_LEN)                                     \
	X(RUN_START, ENTITY, run_start, entity, 2, WIRE_LEN)                                       \
	X(RUN_START, TAGS, run_start, tags, 5, WIRE_LEN)                                           \
	X(RUN_START, NOTES, run_start, notes, 6, WIRE_LEN)                                         \
	X(HISTORY_ROW, STEP, history_row, step, 1, WIRE_VARINT)                                    \
	X(HISTORY_ROW, COMMIT, history_row, commit, 2, WIRE_VARINT)                                \
	X(HISTORY_ROW, CLIENT_TIME_US, history_row, client_time_us, 3, WIRE_VARINT)                \
	X(HISTORY_ROW, ITEMS, history_row, items, 4, WIRE_LEN)                                     \
	X(HISTORY_ROW, TIMESTAMP, history_row, timestamp, 5, WIRE_I64)                             \
	X(HISTORY_ROW, RUNTIME, history_row, runtime, 6, WIRE_I64)                                 \
	X(SYSTEM_STATS, TIME_US, system_stats, time_us, 1, WIRE_VARINT)                            \
	X(SYSTEM_STATS, BOOT_ID, system_stats, boot_id, 3, WIRE_LEN)                               \
	X(SYSTEM_STATS, BASES, system_stats, bases, 4, WIRE_LEN)                                   \
	X(SUMMARY_UPDATE, ITEMS, summary_update, items, 1, WIRE_LEN)                               \
	X(SUMMARY_UPDATE, REMOVE_KEYS, summary_update, remove_keys, 2, WIRE_LEN)                   \
	X(DEFINE_METRIC, NAME, define_metric, name, 1, WIRE_LEN)                                   \
	X(RUN_RENAME, DISPLAY_NAME, run_rename, display_name, 1, WIRE_LEN)                         \
	X(RUN_RENAME, TAGS, run_rename, tags, 3, WIRE_LEN)                                         \
	X(RUN_RENAME, NOTES, run_rename, notes, 4, WIRE_LEN)                                       \
	X(RENAME_REQUEST, NAME, rename_request, name, 2, WIRE_LEN)                                 \
	X(RENAME_REQUEST, TAGS, rename_request, tags, 4, WIRE_LEN)                                 \
	X(RENAME_REQUEST, NOTES, rename_request, notes, 5, WIRE_LEN)                               \
	X(CONFIG_UPDATE, ITEMS, config_update, items, 1, WIRE_LEN)                                 \
	X(ITEM, KEY, item, key, 1, WIRE_LEN)                                                       \
	X(ITEM, VALUE, item, value, 2, WIRE_LEN)                                                   \
	X(VALUE, DOUBLE_VALUE, value, double_value, 1, WIRE_I64)                                   \
	X(VALUE, INT_VALUE, value, int_value, 2, WIRE_VARINT)                                      \
	X(VALUE, BOOL_VALUE, value, bool_value, 3, WIRE_VARINT)                                    \
	X(VALUE, STRING_VALUE, value, string_value, 4, WIRE_LEN)                                   \
	X(VALUE, MAP_VALUE, value, map_value, 5, WIRE_LEN)                                         \
	X(VALUE, LIST_VALUE, value, list_value, 6, WIRE_LEN)                                       \
	X(VALUE, NULL_VALUE, value, null_value, 7, WIRE_LEN)                                       \
	X(MAP_VALUE, ITEMS, map_value, items, 1, WIRE_LEN)                                         \
	X(LIST_VALUE, VALUES, list_value, values, 1, WIRE_LEN)                                     \
	X(LOG_ENTRY, PEER_UID, log_entry, peer_uid, 1, WIRE_VARINT)                                \
	X(LOG_ENTRY, PEER_GID, log_entry, peer_gid, 2, WIRE_VARINT)                                \
	X(LOG_ENTRY, PEER_PID, log_entry, peer_pid, 3, WIRE_VARINT)                                \
	X(LOG_ENTRY, RECV_TIME_US, log_entry, recv_time_us, 4, WIRE_VARINT)                        \
	X(LOG_ENTRY, BATCH, log_entry, batch, 5, WIRE_LEN)

#define WIRE_ENUM_(M, F, m, f, num, type) WIRE_NUM_##M##_##F = (num), WIRE_TYPE_##M##_##F = (type),
enum { WIRE_FIELDS(WIRE_ENUM_) };
#undef WIRE_ENUM_

/* The field number of MESSAGE.FIELD, e.g. WIRE_NUM(BATCH, SEQ) == 2. */
#define WIRE_NUM(M, F) WIRE_NUM_##M##_##F
/* Its wire type. */
#define WIRE_TYPE(M, F) ((enum wire_type)WIRE_TYPE_##M##_##F)
/* Its key (number << 3 | wire type): one byte, a constant expression. */
#define WIRE_KEY(M, F) ((uint8_t)((WIRE_NUM_##M##_##F << 3) | WIRE_TYPE_##M##_##F))

/* The wire type protobuf puts a non-packed field of protobuf-c type t in.
 * Inline: ingest asks it for every field it validates. */
static inline enum wire_type wire_type_of(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_BOOL:
	case PROTOBUF_C_TYPE_ENUM: return WIRE_VARINT;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE: return WIRE_I64;
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT: return WIRE_I32;
	default: return WIRE_LEN;
	}
}

struct wire_field {
	uint32_t number;
	enum wire_type type;
	uint64_t varint;     /* WIRE_VARINT; also the raw bits of I64/I32 */
	const uint8_t *data; /* WIRE_LEN: the payload */
	size_t len;
};

struct wire_reader {
	const uint8_t *p, *end;
};

static inline void wire_reader_init(struct wire_reader *r, const void *buf, size_t len)
{
	r->p = buf;
	r->end = r->p + len;
}

/* 1: a field was read into *f; 0: clean end of message; -1: malformed (truncated
 * varint or length, a tag or length varint over 5 bytes — more than protobuf-c
 * accepts —, field number 0, group wire types, unknown wire type). */
int wire_next(struct wire_reader *r, struct wire_field *f);

/* A deep copy of `m` through its wire form (packed, then unpacked with the
 * default allocator: free it with protobuf_c_message_free_unpacked(…, NULL)).
 * For answers built from borrowed strings under a lock, handed on after it.
 * NULL without memory. */
ProtobufCMessage *wire_copy(const ProtobufCMessage *m);

#endif
