/* server.c — the endpoint's HTTP server: libmicrohttpd with one internal
 * polling thread, its bounds set explicitly from metrics.h. See metrics.h for
 * the contract.
 *
 * Every callback below runs on MHD's one thread (MHD_USE_POLL_INTERNAL_THREAD
 * without a thread pool), so the counters need no lock: they are written and
 * read (when a scrape is answered) on that thread only. */
#include "metrics.h"

#include "clock.h"
#include "errors.h"
#include "log.h"

#include <microhttpd.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <linux/tcp.h> /* tcp_info with tcpi_bytes_received */
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Per connection (MHD's socket context). Every answer closes its connection,
 * so a connection carries at most one request, and its close tells how it
 * went: `answered` (our handler's answer was sent), else a timeout (closed
 * after at least the timeout) or a request MHD refused itself (the client
 * sent bytes). MHD answers 400/414/431/505 without calling the handler or the
 * completion callback, so the close is the one place to count them. */
struct conn {
	int64_t opened_us;
	int fd;
	bool answered;
};

/* Per request (MHD's request context, from the URI log callback): whether our
 * handler answered it. */
struct req {
	struct conn *conn;
	bool answered;
};

struct metrics {
	struct metrics_options opts;
	char *listen;
	int lfd; /* ours until MHD_start_daemon takes it */
	struct MHD_Daemon *d;
	unsigned live; /* connections open now: the accept policy's count */
	uint64_t scrapes, refused, timed_out, bad_requests;
};

/* ---- answers --------------------------------------------------------------- */

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *allow, const void *body, size_t len)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO; /* MHD closes the connection */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	/* One connection per scrape: no keep-alive state to bound. */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	if (allow)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	enum MHD_Result rv = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rv;
}

static enum MHD_Result answer_text(struct metrics *m, struct MHD_Connection *c, unsigned status,
                                   const char *allow, const char *text)
{
	if (status >= 400)
		m->bad_requests++;
	return queue(c, status, "text/plain; charset=utf-8", allow, text, strlen(text));
}

static enum MHD_Result answer_metrics(struct metrics *m, struct MHD_Connection *c)
{
	m->scrapes++;
	struct buf body;
	buf_init(&body, METRICS_MAX_BODY);
	struct metrics_writer w = {.out = &body};
	m->opts.collect(m->opts.collect_arg, &w);
	metrics_family(&w, "trackd_metrics_scrapes_total", "counter",
	               "scrapes of this endpoint answered, this one included");
	metrics_value(&w, NULL, NULL, m->scrapes);
	metrics_family(
	    &w, "trackd_metrics_connections_refused_total", "counter",
	    "connections closed at once because the endpoint already served its maximum");
	metrics_value(&w, NULL, NULL, m->refused);
	metrics_family(&w, "trackd_metrics_timeouts_total", "counter",
	               "connections closed because the scraper was silent too long");
	metrics_value(&w, NULL, NULL, m->timed_out);
	metrics_family(&w, "trackd_metrics_bad_requests_total", "counter",
	               "requests answered with a 4xx or 5xx status");
	metrics_value(&w, NULL, NULL, m->bad_requests);
	enum MHD_Result rv;
	if (w.failed)
		rv = answer_text(m, c, 500, NULL, "metrics too large\n");
	else
		rv = queue(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL,
		           body.data ? body.data : "", body.len);
	buf_fini(&body);
	return rv;
}

/* ---- MHD callbacks ---------------------------------------------------------- */

/* The connection bound, counted: MHD's own MHD_OPTION_CONNECTION_LIMIT closes
 * an extra connection without telling anyone, so the limit is enforced here
 * (MHD's is only a backstop, see metrics_start). */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t len)
{
	(void)addr;
	(void)len;
	struct metrics *m = cls;
	if (m->live >= METRICS_MAX_CONNS) {
		m->refused++;
		return MHD_NO;
	}
	return MHD_YES;
}

/* Whether the peer of `fd` (still open: MHD closes it after the
 * notification) sent any byte. */
static bool peer_sent(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof ti;
	memset(&ti, 0, sizeof ti);
	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received)
		return false;
	return ti.tcpi_bytes_received > 0;
}

static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
	struct metrics *m = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		m->live++;
		struct conn *k = calloc(1, sizeof *k);
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		if (k) {
			k->opened_us = clock_mono_us();
			k->fd = ci ? ci->connect_fd : -1;
		}
		*socket_context = k;
		return;
	}
	m->live--;
	struct conn *k = *socket_context;
	if (k && !k->answered) {
		/* MHD's timeout counts from the last byte received, so a
		 * connection it dropped is at least that old; 100 ms of slack for
		 * its poll rounding. */
		if (clock_mono_us() - k->opened_us >=
		    (int64_t)METRICS_IO_TIMEOUT_MS * 1000 - 100000)
			m->timed_out++;
		else if (peer_sent(k->fd))
			m->bad_requests++;
	}
	free(k);
	*socket_context = NULL;
}

/* Called once the request line is parsed: the request's context. */
static void *uri_log(void *cls, const char *uri, struct MHD_Connection *c)
{
	(void)cls;
	(void)uri;
	struct req *r = calloc(1, sizeof *r);
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (r && ci)
		r->conn = ci->socket_context;
	return r;
}

static void request_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
	(void)c;
	(void)cls;
	struct req *r = *req_cls;
	/* Our answer was sent whole; otherwise (a 431 of MHD's, or our answer
	 * not fitting next to the head in the pool) the close counts it. */
	if (r && r->conn && r->answered && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
		r->conn->answered = true;
	free(r);
	*req_cls = NULL;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	struct metrics *m = cls;
	struct req *r = *req_cls;
	if (r) {
		if (r->answered)
			return MHD_YES; /* a body after our answer: ignored */
		r->answered = true;
	}
	/* Answered on the first call, before any body is read: a body is never
	 * needed, and MHD closes the connection after an early answer. */
	if (url[0] != '/') /* MHD passes an origin-form target on as it came */
		return answer_text(m, c, 400, NULL, "the target must be a path\n");
	if (strcmp(url, "/metrics") != 0)
		return answer_text(m, c, 404, NULL, "not found: the metrics are at /metrics\n");
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return answer_text(m, c, 405, "GET, HEAD", "method not allowed: use GET\n");
	return answer_metrics(m, c); /* MHD drops the body of a HEAD answer */
}

/* ---- lifecycle ------------------------------------------------------------ */

/* "host:port" with host an IPv4 address or a bracketed IPv6 address. */
static int resolve(const char *listen, struct addrinfo **out)
{
	const char *colon = strrchr(listen, ':');
	char host[64];
	if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host)
		return TRACKD_EINVAL;
	const char *h = listen;
	size_t hl = (size_t)(colon - listen);
	if (h[0] == '[') {
		if (hl < 3 || h[hl - 1] != ']')
			return TRACKD_EINVAL;
		h++;
		hl -= 2;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
	return getaddrinfo(host, colon + 1, &hints, out) == 0 ? TRACKD_OK : TRACKD_EINVAL;
}

int metrics_start(const struct metrics_options *opts, metrics **out)
{
	struct metrics *m = calloc(1, sizeof *m);
	if (!m)
		return TRACKD_ENOMEM;
	m->opts = *opts;
	m->lfd = -1;
	int rv = TRACKD_ENOMEM;
	if (!(m->listen = strdup(opts->listen)))
		goto fail;
	m->opts.listen = m->listen;
	struct addrinfo *ai = NULL;
	if ((rv = resolve(m->listen, &ai)) != 0) {
		log_error("metrics: %s: expected ipv4:port or [ipv6]:port", m->listen);
		goto fail;
	}
	/* The socket is bound here, not by MHD, so that an address in use is
	 * told apart (TRACKD_EEXIST) from other failures. */
	m->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (m->lfd < 0 || setsockopt(m->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    (ai->ai_family == AF_INET6 &&
	     setsockopt(m->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
	    bind(m->lfd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(m->lfd, 16) != 0) {
		int e = errno;
		log_error("metrics: cannot listen on %s: %s", m->listen, strerror(e));
		freeaddrinfo(ai);
		rv = e == EADDRINUSE ? TRACKD_EEXIST : TRACKD_ESYS;
		goto fail;
	}
	unsigned flags =
	    MHD_USE_POLL_INTERNAL_THREAD | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
	freeaddrinfo(ai);
	/* MHD's own limit one above ours: it counts a connection until slightly
	 * after our close notification, and a connection it refuses would go
	 * uncounted. The accept policy is the bound. */
	m->d = MHD_start_daemon(
	    flags, 0, accept_policy, m, handle, m, MHD_OPTION_LISTEN_SOCKET, m->lfd,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)(METRICS_MAX_CONNS + 1),
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(METRICS_IO_TIMEOUT_MS / 1000),
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)METRICS_MEMORY_LIMIT,
	    MHD_OPTION_NOTIFY_CONNECTION, notify_connection, m, MHD_OPTION_URI_LOG_CALLBACK,
	    uri_log, m, MHD_OPTION_NOTIFY_COMPLETED, request_completed, m, MHD_OPTION_END);
	if (!m->d) {
		log_error("metrics: cannot start the HTTP server on %s", m->listen);
		rv = TRACKD_ESYS;
		goto fail;
	}
	m->lfd = -1; /* MHD's now: MHD_stop_daemon closes it */
	log_info("metrics: serving http://%s/metrics", m->listen);
	*out = m;
	return TRACKD_OK;
fail:
	metrics_free(m);
	return rv;
}

void metrics_stop(metrics *m)
{
	if (!m || !m->d)
		return;
	MHD_stop_daemon(m->d);
	m->d = NULL;
}

void metrics_free(metrics *m)
{
	if (!m)
		return;
	metrics_stop(m);
	if (m->lfd >= 0)
		close(m->lfd);
	free(m->listen);
	free(m);
}
