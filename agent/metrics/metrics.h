/*
 * metrics.h — the Prometheus endpoint: an HTTP/1.1 server (libmicrohttpd) on a
 * loopback TCP address (config `metrics_listen`) that answers GET /metrics in
 * the text exposition format 0.0.4, and the writer that produces that format.
 *
 * Requests and answers
 *   GET or HEAD /metrics (a query string is ignored) → 200 with
 *     `Content-Type: text/plain; version=0.0.4; charset=utf-8` and the text the
 *     `collect` callback writes at that moment, followed by the server's own
 *     families (trackd_metrics_*).
 *   Another path → 404; a target that is not a path → 400. Another method →
 *   405 with `Allow: GET, HEAD`. These are ours; libmicrohttpd answers the
 *   following itself, before the handler runs: a malformed HTTP version → 400,
 *   a version other than 1.0 or 1.1 → 505, a request line that does not fit
 *   the connection's memory pool (METRICS_MEMORY_LIMIT) → 414, headers that do
 *   not fit it → 431. A request line without a target (`GARBAGE`) is closed
 *   without an answer.
 *   Request heads: one of at most METRICS_MAX_HEAD bytes (line, headers and
 *   their CRLFs) is always answered; a request line of METRICS_MEMORY_LIMIT - 1
 *   bytes or more (CRLF excluded) → 414, a head of as many bytes whose line
 *   fits → 431. Between the two, the head fits the pool but
 *   the answer's headers may not: then the connection is closed without an
 *   answer (libmicrohttpd 0.9.75 builds the answer's headers in the same pool).
 *   Every answer says `Connection: close` and the connection is closed after it:
 *   a scraper opens one connection per scrape and no keep-alive state exists.
 *   Request bodies are never read (an answer is given on the head alone).
 *
 * Bounds
 *   At most METRICS_MAX_CONNS connections are open at once; one more is
 *   accepted and closed immediately by the accept policy, and counted. A
 *   connection silent for METRICS_IO_TIMEOUT_MS (libmicrohttpd's idle timeout:
 *   counted from the last byte received or sent, in whole seconds) is closed.
 *   One libmicrohttpd thread serves every connection with poll() on
 *   non-blocking sockets, so a slow or silent scraper never delays another,
 *   and the server never blocks the agent's other threads: `collect` only
 *   reads counters. An answer's body is at most METRICS_MAX_BODY bytes (past
 *   it: 500).
 *
 * Counters (the trackd_metrics_* families): connections refused over the
 *   limit; timeouts (connections closed with no answer after at least the
 *   timeout); bad requests (our 4xx/5xx answers, libmicrohttpd's own refusals
 *   above, and connections closed after sending bytes but no whole request).
 *
 * Threading: `collect` runs on the server thread. Lifecycle: metrics_start →
 * metrics_stop (stops the server and its thread; idempotent) → metrics_free.
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

#define METRICS_MEMORY_LIMIT  8192 /* MHD's per-connection pool: bounds the request head */
#define METRICS_MAX_HEAD      7168 /* a request head this long is always answered */
#define METRICS_MAX_CONNS     8
#define METRICS_IO_TIMEOUT_MS 5000 /* whole seconds: MHD's timeout unit */
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
