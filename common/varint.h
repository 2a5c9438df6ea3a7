/*
 * varint.h — protobuf base-128 varints (little-endian groups of 7 bits, the
 * high bit set on every byte but the last), for the hand encoders and readers
 * of the wire format (proto/trackd/v1/wire.h) and the files that borrow it.
 *
 * Pure inline functions: they run per field on the hot paths (td_log's item
 * encoder, ingest's framing), where a call per varint would show.
 */
#ifndef TRACKD_COMMON_VARINT_H
#define TRACKD_COMMON_VARINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VARINT_MAX_BYTES 10 /* a uint64_t */

/* Bytes the varint of v takes (1..10). */
static inline size_t varint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Writes the varint of v at dst (room for varint_size(v) bytes); returns the
 * bytes written. */
static inline size_t varint_put(uint8_t *dst, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		dst[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	dst[n++] = (uint8_t)v;
	return n;
}

/* Reads a varint of at most max_bytes (≤ 10) bytes at *p, not past `end`,
 * into *v and advances *p. False (and *p unspecified) if it is truncated or
 * longer than max_bytes; a 10th byte's bits above 64 are dropped, as protobuf
 * does. */
static inline bool varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v, int max_bytes)
{
	uint64_t x = 0;
	for (int shift = 0; shift < 7 * max_bytes && shift < 64; shift += 7) {
		if (*p >= end)
			return false;
		uint8_t b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

#endif
