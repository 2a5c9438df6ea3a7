/*
 * json_write.h — the one JSON writer of the project (agent, libtrackd, trackctl).
 *
 * JSON exists only at the edges (files in the local store, `trackctl --json`,
 * the W&B protocol, the Python Api's text); every one of them writes through
 * these functions so that strings and numbers look the same everywhere.
 *
 * Strings: `"` and `\` and the control characters are escaped (\n \r \t \b \f
 * short, the others and NUL as \u00XX); every other byte passes through, so
 * UTF-8 stays as it is. With JSON_UTF8_REPAIR, bytes that are not UTF-8 become
 * \ufffd instead, so the text is valid UTF-8 whatever the input (the W&B
 * protocol needs that).
 * Doubles: the shortest form that reads back to the same double, always with a
 * '.' or an exponent (a reader keeps 1.0 a float); NaN, Infinity, -Infinity
 * bare, as W&B's own files have them (Python's json reads them).
 *
 * Appends to a `struct buf` (bounded: TRACKD_ETOOBIG past its maximum, the
 * buffer possibly holding part of the value); 0 or a trackd_err. Stateless and
 * thread-safe.
 */
#ifndef TRACKD_COMMON_JSON_WRITE_H
#define TRACKD_COMMON_JSON_WRITE_H

#include "buf.h"

#include <stdint.h>
#include <stdio.h>

/* The largest text the helpers that make their own buffer (json_fput_string)
 * write: one string of a reply, far above any configured string limit. */
#define JSON_TEXT_MAX ((size_t)64 << 20)

enum json_write_flags {
	JSON_UTF8_REPAIR = 1, /* bytes that are not UTF-8 → \ufffd */
};

/* A JSON string literal of [p, p + n) (NULs inside are escaped). */
int json_write_stringn(struct buf *out, const char *p, size_t n, unsigned flags);
/* The exact length json_write_stringn would append. */
size_t json_string_len(const char *p, size_t n, unsigned flags);
/* A JSON string literal of NUL-terminated s (NULL writes ""). */
int json_write_string(struct buf *out, const char *s);
int json_write_double(struct buf *out, double d);
int json_write_int(struct buf *out, int64_t i);
int json_write_uint(struct buf *out, uint64_t u);
int json_write_bool(struct buf *out, int b);

/* json_write_string onto a stdio stream (the command line's output). */
void json_fput_string(FILE *f, const char *s);

#endif
