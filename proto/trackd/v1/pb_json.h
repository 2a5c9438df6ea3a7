/*
 * pb_json.h — any message of trackd.proto as JSON text, by its protobuf-c
 * descriptor: the one way typed replies (QueryReply and below, StatusReply)
 * become the JSON that `trackctl --json` prints and the Python Api reads
 * (through libtrackd's td_query_agent). A new reply message needs no code
 * here: its fields in the .proto are its JSON shape.
 *
 * Rules:
 *   - a message is an object; its fields in field-number order, each keyed by
 *     its name in the .proto;
 *   - an unset optional field is null (a key is always there); a repeated
 *     field is an array (empty when it has no elements);
 *   - of a oneof, only the member that is set (none: nothing);
 *   - numbers, strings and bools as common/json_write.h writes them (doubles
 *     shortest round-trip, NaN and Infinity bare);
 *   - a MapValue is the object of its items, in order, a ListValue an array,
 *     a Value the value it holds (a map, list, number, string, bool or null):
 *     the same text the local store writes for rows, summary and config;
 *   - a `bytes` field holds JSON text made by the agent (a history line, as
 *     the store holds it) and is written as it is, not as a string; except
 *     RunFileChunk.data, a file's raw bytes: a string of their base64
 *     (proto3's JSON rule for bytes).
 *   - enums are written as their number (no reply has one yet).
 *
 * Appends to `out` (bounded: TRACKD_ETOOBIG past its maximum, the buffer then
 * holding part of the text); 0 or a trackd_err. Stateless and thread-safe;
 * the message is borrowed.
 */
#ifndef TRACKD_PROTO_PB_JSON_H
#define TRACKD_PROTO_PB_JSON_H

#include "buf.h"

#include "trackd/v1/trackd.pb-c.h"

int pb_json_write(const ProtobufCMessage *m, struct buf *out);

/* The same, but an unset optional field is left out instead of written as
 * null: for messages whose fields come and go with what the agent runs (the
 * StatusReply's wandb_* counters exist only with a wandb sink). */
int pb_json_write_present(const ProtobufCMessage *m, struct buf *out);

/* Nesting of the messages themselves is bounded by the schema; values
 * (MapValue in ListValue in …) by the agent's limits.max_nesting_depth (at
 * most 64), which is checked where they enter. This bound only keeps a
 * malformed in-memory tree from recursing without end: a value inside more
 * than PB_JSON_MAX_DEPTH maps and lists is TRACKD_ETOOBIG. */
#define PB_JSON_MAX_DEPTH 256

/* One value (a Value, as a MapValue item holds it) as the store writes it:
 * NULL and an unset kind as null. */
int pb_json_value(const Trackd__V1__Value *v, struct buf *out);

/* The answer a QueryReply holds (its one set member) as JSON; TRACKD_EINVAL
 * when none is set. */
int pb_json_query_reply(const Trackd__V1__QueryReply *r, struct buf *out);

#endif
