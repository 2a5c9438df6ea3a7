/*
 * error.c — td_strerror, the thread-local detail behind td_last_error, and
 * text results for the caller (error.h).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "trackd/trackd.h"

/* The only mutable state outside a td_run: one detail line per thread, so a
 * failed call on one thread never garbles another thread's message. */
static _Thread_local char last_error[256];

int tdi_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return err;
}

const char *td_last_error(void)
{
	return last_error;
}

const char *td_strerror(int err)
{
	switch (err) {
	case TD_OK: return "success";
	case TD_ERR_INVALID: return "invalid argument";
	case TD_ERR_NOMEM: return "out of memory";
	case TD_ERR_FULL: return "buffer full; record refused";
	case TD_ERR_CLOSED: return "run already finished";
	case TD_ERR_TIMEOUT: return "not everything was acknowledged in time";
	case TD_ERR_TRANSPORT: return "could not set up the connection to the agent";
	case TD_ERR_REJECTED: return "the agent refused the request";
	case TD_ERR_NOT_FOUND: return "no such run";
	case TD_ERR_CORRUPT: return "content failed its digest check";
	}
	return "unknown error";
}

/* ---- text ---------------------------------------------------------------- */

int tdi_text_copy_out(const char *text, size_t text_len, char *buf, size_t len)
{
	if (text_len > (size_t)INT32_MAX)
		return tdi_fail(TD_ERR_NOMEM, "text too long");
	if (buf != NULL && len > 0) {
		size_t n = text_len < len - 1 ? text_len : len - 1;
		if (n)
			memcpy(buf, text, n);
		buf[n] = '\0';
	}
	return (int)text_len;
}
