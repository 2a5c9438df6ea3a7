/* server.c — the endpoint's HTTP/1.1 server: one thread, poll(), non-blocking
 * sockets, a fixed table of connections. See metrics.h for the contract. */
#include "metrics.h"

#include "clock.h"
#include "errors.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum conn_state { CONN_FREE, CONN_READING, CONN_WRITING, CONN_LINGER };

struct conn {
	enum conn_state state;
	int fd;
	int64_t deadline_us;
	char in[METRICS_MAX_HEAD + 1];
	size_t in_len;
	struct buf out;
	size_t out_off;
};

struct metrics {
	struct metrics_options opts;
	char *listen;
	int lfd;
	int wake[2]; /* metrics_stop writes a byte to wake[1] */
	pthread_t thread;
	bool started;
	struct conn conns[METRICS_MAX_CONNS];
	/* Written by the server thread only; read by it when it answers. */
	uint64_t scrapes, refused, timed_out, bad_requests;
};

/* ---- answers --------------------------------------------------------------- */

static void respond(struct conn *c, int status, const char *reason, const char *extra_headers,
                    const char *content_type, const char *body, size_t body_len, bool head_only)
{
	buf_reset(&c->out);
	int rc = buf_printf(&c->out,
	                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                    "Connection: close\r\n%s\r\n",
	                    status, reason, content_type, body_len, extra_headers);
	if (rc == 0 && !head_only && body_len)
		rc = buf_append(&c->out, body, body_len);
	if (rc != 0) {
		/* The body did not fit next to the headers: say so instead. */
		buf_reset(&c->out);
		buf_puts(&c->out, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
		                  "Connection: close\r\n\r\n");
	}
	c->out_off = 0;
	c->state = CONN_WRITING;
	c->deadline_us = clock_mono_us() + (int64_t)METRICS_IO_TIMEOUT_MS * 1000;
}

static void respond_text(struct metrics *m, struct conn *c, int status, const char *reason,
                         const char *extra_headers, const char *text)
{
	if (status >= 400)
		m->bad_requests++;
	respond(c, status, reason, extra_headers, "text/plain; charset=utf-8", text, strlen(text),
	        false);
}

static void answer_metrics(struct metrics *m, struct conn *c, bool head_only)
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
	               "connections closed because the scraper was too slow to send or receive");
	metrics_value(&w, NULL, NULL, m->timed_out);
	metrics_family(&w, "trackd_metrics_bad_requests_total", "counter",
	               "requests answered with a 4xx or 5xx status");
	metrics_value(&w, NULL, NULL, m->bad_requests);
	if (w.failed) {
		respond_text(m, c, 500, "Internal Server Error", "", "metrics too large\n");
	} else {
		respond(c, 200, "OK", "", "text/plain; version=0.0.4; charset=utf-8",
		        body.data ? body.data : "", body.len, head_only);
	}
	buf_fini(&body);
}

static bool is_token_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* The request head is complete in c->in (NUL-terminated): answer it. */
static void handle_request(struct metrics *m, struct conn *c)
{
	char *line = c->in;
	size_t line_len = strcspn(line, "\r\n");
	line[line_len] = '\0';
	char *sp1 = strchr(line, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || sp1 == line || strchr(sp2 + 1, ' ')) {
		respond_text(m, c, 400, "Bad Request", "", "malformed request line\n");
		return;
	}
	*sp1 = *sp2 = '\0';
	const char *method = line, *target = sp1 + 1, *version = sp2 + 1;
	for (const char *p = method; *p; p++) {
		if (!is_token_char(*p)) {
			respond_text(m, c, 400, "Bad Request", "", "malformed method\n");
			return;
		}
	}
	if (strncmp(version, "HTTP/", 5) != 0 || version[5] < '0' || version[5] > '9' ||
	    version[6] != '.' || version[7] < '0' || version[7] > '9' || version[8]) {
		respond_text(m, c, 400, "Bad Request", "", "malformed HTTP version\n");
		return;
	}
	if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0) {
		respond_text(m, c, 505, "HTTP Version Not Supported", "", "HTTP/1.0 or 1.1 only\n");
		return;
	}
	if (target[0] != '/') {
		respond_text(m, c, 400, "Bad Request", "", "the target must be a path\n");
		return;
	}
	size_t path_len = strcspn(target, "?");
	if (path_len != 8 || strncmp(target, "/metrics", 8) != 0) {
		respond_text(m, c, 404, "Not Found", "",
		             "not found: the metrics are at /metrics\n");
		return;
	}
	bool head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0) {
		respond_text(m, c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
		             "method not allowed: use GET\n");
		return;
	}
	answer_metrics(m, c, head);
}

/* ---- connections ------------------------------------------------------------ */

static void conn_close(struct conn *c)
{
	close(c->fd);
	c->fd = -1;
	c->state = CONN_FREE;
	c->in_len = 0;
	buf_reset(&c->out);
}

/* Reads what is there; answers once the head is complete or too long. */
static void conn_read(struct metrics *m, struct conn *c)
{
	bool eof = false;
	for (;;) {
		size_t room = METRICS_MAX_HEAD - c->in_len;
		if (!room)
			break;
		ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			conn_close(c); /* reset */
			return;
		}
		if (n == 0) {
			eof = true; /* the client may half-close after its request */
			break;
		}
		c->in_len += (size_t)n;
		c->in[c->in_len] = '\0';
	}
	/* The line's length without its CRLF (or bare LF). */
	char *eol = memchr(c->in, '\n', c->in_len);
	size_t line_len = eol ? (size_t)(eol - c->in) : c->in_len;
	if (line_len && c->in[line_len - 1] == '\r')
		line_len--; /* also a CR whose LF has not arrived yet */
	if (line_len > METRICS_MAX_LINE) {
		respond_text(m, c, 414, "URI Too Long", "", "request line too long\n");
		return;
	}
	if (strstr(c->in, "\r\n\r\n") || strstr(c->in, "\n\n")) {
		handle_request(m, c);
		return;
	}
	if (c->in_len == METRICS_MAX_HEAD) {
		respond_text(m, c, 431, "Request Header Fields Too Large", "",
		             "request head too large\n");
		return;
	}
	if (eof)
		conn_close(c); /* closed before a whole request */
}

static void conn_write(struct conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n =
		    send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->out_off += (size_t)n;
	}
	/* Closing with unread input would reset the connection and could destroy
	 * the answer in flight: end our side, then drain until the peer closes. */
	shutdown(c->fd, SHUT_WR);
	c->state = CONN_LINGER;
	c->deadline_us = clock_mono_us() + (int64_t)METRICS_LINGER_MS * 1000;
}

static void conn_drain(struct conn *c)
{
	char sink[4096];
	for (;;) {
		ssize_t n = recv(c->fd, sink, sizeof sink, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
	}
}

static void accept_all(struct metrics *m)
{
	for (;;) {
		int fd = accept4(m->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("metrics: accept: %s", strerror(errno));
			return;
		}
		struct conn *c = NULL;
		for (size_t i = 0; i < METRICS_MAX_CONNS && !c; i++)
			if (m->conns[i].state == CONN_FREE)
				c = &m->conns[i];
		if (!c) {
			m->refused++;
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = CONN_READING;
		c->in_len = 0;
		c->in[0] = '\0';
		c->deadline_us = clock_mono_us() + (int64_t)METRICS_IO_TIMEOUT_MS * 1000;
	}
}

static void *server_main(void *arg)
{
	struct metrics *m = arg;
	struct pollfd pfd[METRICS_MAX_CONNS + 2];
	struct conn *owner[METRICS_MAX_CONNS + 2];
	for (;;) {
		int64_t now = clock_mono_us(), next = now + 60 * 1000000LL;
		size_t n = 0;
		pfd[n++] = (struct pollfd){.fd = m->wake[0], .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = m->lfd, .events = POLLIN};
		for (size_t i = 0; i < METRICS_MAX_CONNS; i++) {
			struct conn *c = &m->conns[i];
			if (c->state == CONN_FREE)
				continue;
			if (now >= c->deadline_us) {
				if (c->state != CONN_LINGER)
					m->timed_out++;
				conn_close(c);
				continue;
			}
			if (c->deadline_us < next)
				next = c->deadline_us;
			owner[n] = c;
			pfd[n++] = (struct pollfd){
			    .fd = c->fd, .events = c->state == CONN_WRITING ? POLLOUT : POLLIN};
		}
		int timeout_ms = (int)((next - now + 999) / 1000);
		int r = poll(pfd, n, timeout_ms);
		if (r < 0 && errno != EINTR) {
			log_error("metrics: poll: %s; the endpoint stops", strerror(errno));
			break;
		}
		if (r <= 0)
			continue;
		if (pfd[0].revents)
			break; /* metrics_stop */
		for (size_t i = 2; i < n; i++) {
			struct conn *c = owner[i];
			if (!pfd[i].revents || c->state == CONN_FREE)
				continue;
			if (c->state == CONN_READING)
				conn_read(m, c);
			/* An answer is usually written at once, without another poll. */
			if (c->state == CONN_WRITING)
				conn_write(c);
			else if (c->state == CONN_LINGER)
				conn_drain(c);
		}
		/* After the connections: peers that left free their slots first. */
		if (pfd[1].revents)
			accept_all(m);
	}
	return NULL;
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
	m->lfd = m->wake[0] = m->wake[1] = -1;
	for (size_t i = 0; i < METRICS_MAX_CONNS; i++) {
		m->conns[i].fd = -1;
		/* Headers plus the largest body. */
		buf_init(&m->conns[i].out, METRICS_MAX_BODY + 1024);
	}
	int rv = TRACKD_ENOMEM;
	if (!(m->listen = strdup(opts->listen)))
		goto fail;
	m->opts.listen = m->listen;
	struct addrinfo *ai = NULL;
	if ((rv = resolve(m->listen, &ai)) != 0) {
		log_error("metrics: %s: expected ipv4:port or [ipv6]:port", m->listen);
		goto fail;
	}
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
	freeaddrinfo(ai);
	if (pipe2(m->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
		rv = TRACKD_ESYS;
		goto fail;
	}
	if (pthread_create(&m->thread, NULL, server_main, m) != 0) {
		rv = TRACKD_ESYS;
		goto fail;
	}
	m->started = true;
	log_info("metrics: serving http://%s/metrics", m->listen);
	*out = m;
	return TRACKD_OK;
fail:
	metrics_free(m);
	return rv;
}

void metrics_stop(metrics *m)
{
	if (!m || !m->started)
		return;
	ssize_t w;
	do
		w = write(m->wake[1], "x", 1);
	while (w < 0 && errno == EINTR);
	pthread_join(m->thread, NULL);
	m->started = false;
}

void metrics_free(metrics *m)
{
	if (!m)
		return;
	metrics_stop(m);
	for (size_t i = 0; i < METRICS_MAX_CONNS; i++) {
		if (m->conns[i].state != CONN_FREE)
			close(m->conns[i].fd);
		buf_fini(&m->conns[i].out);
	}
	if (m->lfd >= 0)
		close(m->lfd);
	if (m->wake[0] >= 0)
		close(m->wake[0]);
	if (m->wake[1] >= 0)
		close(m->wake[1]);
	free(m->listen);
	free(m);
}
