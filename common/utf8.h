/*
 * utf8.h — UTF-8 validation as in Unicode table 3-7: no overlong forms, no
 * surrogates, nothing above U+10FFFF. Pure functions; thread-safe.
 */
#ifndef TRACKD_COMMON_UTF8_H
#define TRACKD_COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Whether [s, s+n) is valid UTF-8 (U+0000 allowed). */
bool utf8_valid(const void *s, size_t n);

/* utf8_valid without U+0000: for text that ends up in C strings, where
 * "a\0b" would silently arrive as "a" (protobuf-c hands strings over
 * NUL-terminated). */
bool utf8_valid_no_nul(const void *s, size_t n);

#endif
