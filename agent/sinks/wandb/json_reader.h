/*
 * json_reader.h — a small, bounded JSON reader for backend responses: finds one
 * value by its path in a document held in memory, without building a tree.
 *
 * What it reads: RFC 8259 JSON, plus the bare NaN / Infinity / -Infinity that
 * W&B's history files allow. Nesting deeper than JR_MAX_DEPTH is refused, so a
 * hostile response costs at most a bounded stack and one pass per lookup.
 *
 * Paths are dotted: "data.upsertBucket.bucket.historyLineCount"; a component
 * that is a decimal number indexes an array ("errors.0.message"). Keys are
 * compared after unescaping; keys longer than JR_MAX_KEY bytes never match.
 *
 * Thread-safe (no state). Errors: TRACKD_ENOENT (no such path), TRACKD_EINVAL
 * (malformed document, or the value is not of the asked type), TRACKD_ETOOBIG
 * (nested too deep).
 */
#ifndef TRACKD_SINKS_WANDB_JSON_READER_H
#define TRACKD_SINKS_WANDB_JSON_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JR_MAX_DEPTH 64
#define JR_MAX_KEY   256

enum jr_type { JR_NULL, JR_BOOL, JR_NUMBER, JR_STRING, JR_OBJECT, JR_ARRAY };

/* A value inside the document: [start, start + len) is its text. Borrowed. */
struct jr_value {
	enum jr_type type;
	const char *start;
	size_t len;
};

/* Whether `json` is exactly one well-formed value (whitespace around allowed). */
int jr_validate(const char *json, size_t len);

/* Finds the value at `path` ("" = the whole document). The whole document is
 * validated first: a lookup never succeeds on a malformed one. */
int jr_get(const char *json, size_t len, const char *path, struct jr_value *out);

/* Conversions of a found value. jr_int accepts an integral number within int64;
 * jr_string unescapes (\uXXXX included, surrogate pairs joined) into `out`, cut
 * at cap - 1 bytes on a character boundary, always NUL-terminated. */
int jr_int(const struct jr_value *v, int64_t *out);
int jr_bool(const struct jr_value *v, bool *out);
int jr_string(const struct jr_value *v, char *out, size_t cap);

/* Shorthands: the value at `path`, converted; TRACKD_ENOENT if absent. */
int jr_get_int(const char *json, size_t len, const char *path, int64_t *out);
int jr_get_bool(const char *json, size_t len, const char *path, bool *out);
int jr_get_string(const char *json, size_t len, const char *path, char *out, size_t cap);

#endif
