/*
 * utf8.h — UTF-8 validation as in Unicode table 3-7: no overlong forms, no
 * surrogates, nothing above U+10FFFF; and the code point count of a string.
 * Pure functions; thread-safe.
 */
#ifndef TRACKD_COMMON_UTF8_H
#define TRACKD_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The one loop of both checks below; `nul_ok` is a constant at each call, so
 * the compiler keeps two specialised copies. Inline: td_log and ingest check
 * every key and string with it. */
static inline bool utf8_valid_(const unsigned char *p, size_t n, bool nul_ok)
{
	const unsigned char *end = p + n;
	while (p < end) {
		unsigned c = *p;
		if (c < 0x80) {
			if (c == 0 && !nul_ok)
				return false;
			p++;
			continue;
		}
		unsigned lo = 0x80, hi = 0xbf;
		size_t more;
		if (c >= 0xc2 && c <= 0xdf) {
			more = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			more = 2;
			if (c == 0xe0)
				lo = 0xa0; /* overlong */
			else if (c == 0xed)
				hi = 0x9f; /* surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			more = 3;
			if (c == 0xf0)
				lo = 0x90; /* overlong */
			else if (c == 0xf4)
				hi = 0x8f; /* above U+10FFFF */
		} else {
			return false;
		}
		if ((size_t)(end - p) <= more || p[1] < lo || p[1] > hi)
			return false;
		for (size_t i = 2; i <= more; i++)
			if (p[i] < 0x80 || p[i] > 0xbf)
				return false;
		p += more + 1;
	}
	return true;
}

/* Whether [s, s+n) is valid UTF-8 (U+0000 allowed). */
static inline bool utf8_valid(const void *s, size_t n)
{
	return utf8_valid_(s, n, true);
}

/* utf8_valid without U+0000: for text that ends up in C strings, where "a\0b"
 * would silently arrive as "a" (protobuf-c hands strings over NUL-terminated). */
static inline bool utf8_valid_no_nul(const void *s, size_t n)
{
	return utf8_valid_(s, n, false);
}

/* Code points in the NUL-terminated UTF-8 string s (every byte that is not a
 * continuation byte): the width of a column of text, as terminals count it
 * for the scripts trackd shows. */
size_t utf8_count(const char *s);

#endif
