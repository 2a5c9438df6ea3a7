/*
 * json.h — a small, strict JSON reader for the agent's query replies.
 *
 * json_parse() turns a text into a tree held by one json_doc. It accepts RFC 8259
 * JSON plus the bare tokens NaN, Infinity and -Infinity that W&B's history files
 * (and the agent's replies) use for non-finite numbers. Limits: nesting deeper
 * than `max_depth` arrays/objects is refused (TRACKD_ETOOBIG), so a hostile or
 * broken reply cannot exhaust the stack; the input size is the caller's bound
 * (trackctl: the NNG receive limit).
 *
 * Strings: escapes are decoded (\uXXXX included; a surrogate pair becomes one
 * UTF-8 sequence, a lone surrogate U+FFFD); other bytes, UTF-8 or not, pass through
 * unchanged; raw control characters are an error, as RFC 8259 says. Decoded
 * strings are NUL-terminated and also carry their length (\u0000 may occur).
 * Numbers keep their double value and, when the literal is an integer that fits
 * int64, the exact integer too (so 3 and 3.0 stay distinguishable, as Python
 * prints them differently).
 *
 * Every value also points at its own text in the input (`raw`, `raw_len`), so a
 * caller can pass values through byte for byte (history rows, CSV cells) without
 * re-formatting numbers. The input is therefore BORROWED: it must outlive the doc.
 *
 * Ownership: the doc owns every node and decoded string; json_doc_free() releases
 * all of it (NULL is a no-op). Not thread-safe; a doc is read-only after parsing.
 * Errors: 0, or a negative trackd_err (TRACKD_EINVAL: syntax, TRACKD_ETOOBIG:
 * too deep, TRACKD_ENOMEM); `err` (may be NULL) receives "line L, column C: what".
 */
#ifndef TRACKD_CLI_JSON_H
#define TRACKD_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_DEFAULT_MAX_DEPTH 64

typedef enum json_type {
	JSON_NULL,
	JSON_BOOL,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT,
} json_type;

typedef struct json_value json_value;
typedef struct json_member json_member;

struct json_value {
	json_type type;
	const char *raw; /* this value's text in the input (borrowed) */
	size_t raw_len;
	union {
		bool b;
		struct {
			double d;
			int64_t i;   /* valid when is_int */
			bool is_int; /* an integer literal that fits int64 */
		} num;
		struct {
			const char *s; /* decoded, NUL-terminated */
			size_t len;
		} str;
		struct {
			json_value *items;
			size_t n;
		} arr;
		struct {
			json_member *members; /* in document order; duplicates kept */
			size_t n;
		} obj;
	} u;
};

struct json_member {
	const char *key; /* decoded, NUL-terminated */
	size_t key_len;
	json_value value;
};

typedef struct json_doc json_doc;

/* Parses text[0 .. len). On success *out owns the tree. */
int json_parse(const char *text, size_t len, size_t max_depth, json_doc **out, char *err,
               size_t err_len);
void json_doc_free(json_doc *doc);
const json_value *json_doc_root(const json_doc *doc);

/* Lookups; each accepts NULL and returns NULL / the default on a type mismatch. */
/* The member `key` of an object (the last one, if repeated, as Python's json). */
const json_value *json_get(const json_value *obj, const char *key);
/* The string value, or `dflt` for anything else. */
const char *json_string(const json_value *v, const char *dflt);
/* Numbers: true and *out set when v is a number (an integral one for json_int). */
bool json_double(const json_value *v, double *out);
bool json_int(const json_value *v, int64_t *out);
bool json_is(const json_value *v, json_type type);

/* Writes v's raw text with the whitespace outside strings removed (one line). */
void json_write_compact(FILE *f, const json_value *v);

#endif
