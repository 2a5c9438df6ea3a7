/*
 * metrics.h — the Prometheus endpoint: a small HTTP/1.1 server on a loopback TCP
 * address (config `metrics_listen`) that answers GET /metrics in the text
 * exposition format 0.0.4, and the writer that produces that format.
 *
 * Requests and answers
 *   GET or HEAD /metrics (a query string is ignored) → 200 with
 *     `Content-Type: text/plain; version=0.0.4; charset=utf-8` and the text the
 *     `collect` callback writes at that moment, followed by the server's own
 *     families (trackd_metrics_*).
 *   Another path → 404. Another method → 405 with `Allow: GET, HEAD`.
 *   A request line longer than METRICS_MAX_LINE bytes → 414; a request head
 *   (line and headers) over METRICS_MAX_HEAD bytes → 431; a malformed line → 400;
 *   an HTTP version other than 1.0 or 1.1 → 505.
 *   Every answer says `Connection: close` and the connection is closed after it:
 *   a scraper opens one connection per scrape and no keep-alive state exists.
 *   Request bodies are never read (after the answer, input is drained for at
 *   most METRICS_LINGER_MS so the client sees the answer rather than a reset).
 *
 * Bounds
 *   At most METRICS_MAX_CONNS connections are served at once; one more is
 *   accepted and closed immediately (counted). A connection has
 *   METRICS_IO_TIMEOUT_MS to deliver its request head and as long again to take
 *   the answer, or it is closed. One thread serves every connection with poll()
 *   on non-blocking sockets, so a slow or silent scraper never delays another,
 *   and the server never blocks the agent's other threads: `collect` only reads
 *   counters. An answer's body is at most METRICS_MAX_BODY bytes (past it: 500).
 *
 * Threading: `collect` runs on the server thread. Lifecycle: metrics_start →
 * metrics_stop (closes the socket, joins the thread; idempotent) → metrics_free.
 * Errors: metrics_start returns TRACKD_EINVAL for an address that is not
 * "ipv4:port" or "[ipv6]:port", TRACKD_EEXIST when the address is in use,
 * TRACKD_ESYS otherwise; each is logged with the reason.
 */
#ifndef TRACKD_METRICS_H
#define TRACKD_METRICS_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_LINE      2048 /* bytes, without the CRLF */
#define METRICS_MAX_HEAD      8192
#define METRICS_MAX_CONNS     8
#define METRICS_IO_TIMEOUT_MS 5000
#define METRICS_LINGER_MS     1000
#define METRICS_MAX_BODY      (4u << 20)

/* Builds exposition text into `out`. A family is opened with metrics_family
 * (its # HELP and # TYPE lines); its samples follow. Names must match
 * [a-zA-Z_:][a-zA-Z0-9_:]*; label values are escaped here. A failure to grow
 * `out` is remembered in `failed`. */
struct metrics_writer {
	struct buf *out;
	const char *family; /* the open family's name: samples are named after it */
	bool failed;
};

/* `type`: "counter", "gauge" or "histogram". `help` must not contain a newline. */
void metrics_family(struct metrics_writer *w, const char *name, const char *type, const char *help);
/* One sample of the open family, with one label (`label` NULL: none). */
void metrics_value(struct metrics_writer *w, const char *label, const char *label_value,
                   uint64_t value);
/* A whole histogram family: `counts` holds n_bounds + 1 per-bucket (not
 * cumulative) counts, the last one above the highest bound; `bounds` are the
 * buckets' upper bounds in the unit of the metric, ascending. */
void metrics_histogram(struct metrics_writer *w, const char *name, const char *help,
                       const double *bounds, const uint64_t *counts, size_t n_bounds, double sum);

typedef struct metrics metrics;

struct metrics_options {
	const char *listen; /* "127.0.0.1:9464" or "[::1]:9464"; copied */
	void (*collect)(void *arg, struct metrics_writer *w);
	void *collect_arg;
};

int metrics_start(const struct metrics_options *opts, metrics **out);
void metrics_stop(metrics *m);
void metrics_free(metrics *m);

#endif
