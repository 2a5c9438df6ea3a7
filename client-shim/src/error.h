/*
 * error.h — how libtrackd's calls report to their caller: the one-line detail
 * behind td_last_error (tdi_fail) and text results copied snprintf-style into
 * the caller's buffer (tdi_text_copy_out).
 *
 * The detail is thread-local: a failed call on one thread never garbles
 * another thread's message. No allocation, no lock; any thread.
 */
#ifndef TRACKD_CLIENT_ERROR_H
#define TRACKD_CLIENT_ERROR_H

#include <stddef.h>
#include <stdint.h>

/* Most text the library builds in a struct buf (common/buf.h) for its callers
 * (status JSON, paths, footer lines): what tdi_text_copy_out can return. */
#define TDI_TEXT_MAX ((size_t)INT32_MAX)

/* Sets the calling thread's td_last_error() detail; returns err. */
int tdi_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* snprintf-style copy of text into buf (may be NULL when len is 0); returns
 * text_len, or TD_ERR_NOMEM if that does not fit an int. */
int tdi_text_copy_out(const char *text, size_t text_len, char *buf, size_t len);

#endif
