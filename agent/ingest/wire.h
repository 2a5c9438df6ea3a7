/*
 * wire.h — just enough of the protobuf wire format to read a message without
 * decoding it: field iteration over a byte range, bounds-checked, no allocation.
 * The agent validates and stores client batches with this instead of unpacking
 * them, which keeps ingest allocation-free and its memory independent of what a
 * client sends (protobuf-c's unpack can allocate ~25× the wire size).
 *
 * Pure functions; thread-safe.
 */
#ifndef TRACKD_INGEST_WIRE_H
#define TRACKD_INGEST_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum wire_type { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

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

#endif
