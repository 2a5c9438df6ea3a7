/*
 * cmd_ui.c — `trackctl ui` (see ui.h): a libmicrohttpd server, one handler
 * for every path, each connection on its own thread.
 *
 * Why a thread per connection: an API request waits for the agent (up to
 * trackctl's 15 s timeout), and a handler that waits holds its thread. With
 * one thread per connection a slow query delays only its own connection, and
 * each thread keeps its own agent connection (agent_client is one per thread)
 * for the requests of its HTTP connection.
 *
 * Bounds, all explicit (libmicrohttpd enforces each; see also ui_http.h for
 * the API's parameters):
 *   - UI_MAX_CONNS connections at once (so at most as many threads and agent
 *     queries); one more is closed at once by the accept policy;
 *   - a connection idle for the idle timeout (UI_IDLE_TIMEOUT_S, or
 *     --idle-timeout) is closed, so a silent client cannot hold a slot;
 *   - a request head must fit the connection's memory pool (UI_MEMORY_LIMIT):
 *     libmicrohttpd answers 414 (line) or 431 (headers) to one that does not;
 *   - no request body: a Content-Length other than 0 or a Transfer-Encoding
 *     → 400, answered before any byte of the body is read;
 *   - a run file (/api/file) is streamed a piece (TRACKD_RUN_FILE_READ_MAX,
 *     1 MiB) at a time: one piece per connection in memory, whatever the
 *     file's size (serve_file).
 */
#include "ui.h"

#include "agent_client.h"
#include "buf.h"
#include "errors.h"
#include "json_write.h"
#include "run_files.h"
#include "trackd/v1/pb_json.h"
#include "ui_assets.h"
#include "ui_http.h"

#include <microhttpd.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define UI_MAX_CONNS        32         /* connections (and threads) at once */
#define UI_IDLE_TIMEOUT_S   30         /* a connection silent this long is closed */
#define UI_IDLE_TIMEOUT_MAX 3600       /* --idle-timeout's maximum */
#define UI_MEMORY_LIMIT     (32 << 10) /* per connection: the request head and answer headers */
#define UI_PATH_MAX         1024
#define UI_ERROR_BYTES      6144
#define EXIT_USAGE          2

/* Fixed before the server starts (the port is bound first), read-only after:
 * the connection threads share it without a lock. */
struct ui {
	char token[UI_TOKEN_HEX + 1];
	char cookie_name[32];
	struct ui_hosts hosts;
	char agent_url[4096];
	atomic_uint live; /* connections open now, for the accept policy */
};

/* Per connection (libmicrohttpd's socket context): its agent connection,
 * opened on its first API request, used by its thread only. */
struct conn {
	agent_client *agent;
};

/* Per request (from the URI log callback): the request target as the client
 * sent it, query string included (the handler's `url` is without it). */
struct req {
	char *uri;
};

/* ---- responses ------------------------------------------------------------ */

/* Headers on every answer: no sniffing, no framing (clickjacking), scripts
 * and everything else only from this server (no CDN, no inline script), no
 * Referer (the first URL holds the token), nothing cached (answers are
 * per-user data). No Access-Control-* header: other origins get nothing. */
static struct MHD_Response *with_headers(struct MHD_Response *r, const char *type)
{
	if (!r)
		return NULL;
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "Content-Security-Policy",
	                        "default-src 'self'; script-src 'self'; style-src 'self' "
	                        "'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (type)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	return r;
}

static struct MHD_Response *response(const char *type, const void *body, size_t len, bool copy)
{
	return with_headers(
	    MHD_create_response_from_buffer(len, (void *)body,
	                                    copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT),
	    type);
}

/* Queues `r` (NULL: out of memory; MHD_NO makes libmicrohttpd close the
 * connection) and drops our reference. For HEAD, libmicrohttpd sends the
 * headers only. */
static enum MHD_Result send_response(struct MHD_Connection *c, unsigned status,
                                     struct MHD_Response *r)
{
	if (!r)
		return MHD_NO;
	enum MHD_Result rv = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rv;
}

/* An error as {"error": message, "status": N}, written by json_write. */
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *message)
{
	struct buf b;
	buf_init(&b, 2 * UI_ERROR_BYTES + 64);
	int rv = buf_puts(&b, "{\"error\":");
	if (!rv)
		rv = json_write_string(&b, message);
	if (!rv)
		rv = buf_printf(&b, ",\"status\":%u}\n", status);
	enum MHD_Result res = send_response(
	    c, status, response("application/json", rv ? "" : b.data, rv ? 0 : b.len, true));
	buf_fini(&b);
	return res;
}

/* ---- the API --------------------------------------------------------------------- */

/* The agent's answer (or refusal) as an HTTP status. Its error codes: not
 * found → 404; another user's run → 403 (the agent says no more than that);
 * a request it finds invalid → 400; it cannot answer now → 503. */
static uint16_t agent_status_code(int rv, const struct agent_error *e)
{
	switch (rv) {
	case TRACKD_ENOENT: return 404;
	case TRACKD_EPERM: return 403;
	case TRACKD_ECLOSED:
	case TRACKD_ETIMEDOUT:
	case TRACKD_EIO: return 503;
	case TRACKD_EINVAL:
		switch (e->remote_code) {
		case TRACKD__V1__ERROR_CODE__ERROR_INVALID:
		case TRACKD__V1__ERROR_CODE__ERROR_MALFORMED:
		case TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE: return 400;
		case TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE: return 503;
		default: return 502;
		}
	default: return 502;
	}
}

/* The agent's typed answer to `q` as JSON text (malloc'd), rendered by
 * pb_json_query_reply: the shapes `trackctl --json` prints. */
static int query_json(agent_client *c, const Trackd__V1__Query *q, char **json, size_t *len,
                      struct agent_error *err)
{
	Trackd__V1__Reply *reply = NULL;
	const Trackd__V1__QueryReply *qr = NULL;
	int rv = agent_query(c, q, &reply, &qr, err);
	if (rv != 0)
		return rv;
	struct buf text;
	buf_init(&text, (size_t)AGENT_MAX_REPLY_BYTES * 4);
	rv = pb_json_query_reply(qr, &text);
	trackd__v1__reply__free_unpacked(reply, NULL);
	if (rv != 0 || !text.data) {
		buf_fini(&text);
		snprintf(err->message, sizeof err->message, "cannot render the answer: %s",
		         trackd_strerror(rv ? rv : TRACKD_ENOMEM));
		return TRACKD_ENOMEM;
	}
	*json = text.data;
	*len = text.len;
	return 0;
}

/* The agent's refusal `rv` of a request for `what` as an HTTP error. A
 * connection that failed is dropped: the next request opens a new one (the
 * agent may have restarted). */
static enum MHD_Result send_agent_error(struct ui *u, struct conn *k, struct MHD_Connection *c,
                                        const char *what, int rv, const struct agent_error *aerr)
{
	char err[UI_ERROR_BYTES];
	uint16_t code = agent_status_code(rv, aerr);
	if (code == 503 && rv != TRACKD_EINVAL) {
		snprintf(err, sizeof err, "the agent at %s does not answer: %s", u->agent_url,
		         aerr->message);
		agent_close(k->agent);
		k->agent = NULL;
	} else if (code == 503) {
		snprintf(err, sizeof err, "the agent cannot answer: %s", aerr->message);
	} else if (code == 404) {
		snprintf(err, sizeof err, "%s not found: %s", what[0] ? what : "run",
		         aerr->message);
	} else {
		snprintf(err, sizeof err, "the agent refused: %s", aerr->message);
	}
	return send_error(c, code, err);
}

/* ---- run files -------------------------------------------------------------------- */

/* A run file's content, streamed: the first piece came with the request's
 * answer; the rest is asked piece by piece (TRACKD_RUN_FILE_READ_MAX bytes
 * each) as libmicrohttpd sends, on the connection's thread with its agent
 * connection, so at most one piece per connection is held in memory. A piece
 * that fails, or names another content than the first (the file changed
 * between pieces), ends the answer with an error: libmicrohttpd closes the
 * connection before Content-Length bytes, and the browser sees a failed
 * load, never a mix of two files. */
struct file_stream {
	struct conn *k;
	Trackd__V1__RunFileReadRequest req; /* points into run and name below */
	char run[UI_RUN_MAX + 1];
	char name[TRACKD_MAX_FILE_NAME_BYTES + 1];
	uint64_t size;
	char sha256[65];
	Trackd__V1__Reply *reply; /* owns piece */
	const Trackd__V1__RunFileChunk *piece;
};

static void file_stream_free(void *cls)
{
	struct file_stream *fs = cls;
	if (fs->reply)
		trackd__v1__reply__free_unpacked(fs->reply, NULL);
	free(fs);
}

static bool piece_holds(const Trackd__V1__RunFileChunk *p, uint64_t pos)
{
	return p && pos >= p->offset && pos - p->offset < p->data.len;
}

static ssize_t file_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct file_stream *fs = cls;
	if (pos >= fs->size)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (!piece_holds(fs->piece, pos)) {
		if (fs->reply)
			trackd__v1__reply__free_unpacked(fs->reply, NULL);
		fs->reply = NULL;
		fs->piece = NULL;
		Trackd__V1__Query q = TRACKD__V1__QUERY__INIT;
		q.request_case = TRACKD__V1__QUERY__REQUEST_RUN_FILE_READ;
		q.run_file_read = &fs->req;
		fs->req.offset = pos;
		const Trackd__V1__QueryReply *qr;
		struct agent_error aerr = {0};
		if (!fs->k->agent || agent_query(fs->k->agent, &q, &fs->reply, &qr, &aerr) != 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		const Trackd__V1__RunFileChunk *p = qr->run_file_read;
		if (!p->sha256 || strcmp(p->sha256, fs->sha256) != 0 || p->size != fs->size ||
		    !piece_holds(p, pos))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		fs->piece = p;
	}
	const Trackd__V1__RunFileChunk *p = fs->piece;
	size_t at = (size_t)(pos - p->offset);
	size_t n = p->data.len - at < max ? p->data.len - at : max;
	memcpy(buf, p->data.data + at, n);
	return (ssize_t)n;
}

/* GET /api/file?run=R&name=N: the file's bytes with the Content-Type of its
 * name (ui_file_content_type), Content-Length its size, the headers of every
 * answer (nosniff: a file is never taken for a page). */
static enum MHD_Result serve_file(struct ui *u, struct conn *k, struct MHD_Connection *c,
                                  const struct ui_api *a)
{
	struct file_stream *fs = calloc(1, sizeof *fs);
	if (!fs)
		return send_error(c, 500, "out of memory");
	fs->k = k;
	snprintf(fs->run, sizeof fs->run, "%s", a->r.file.run);
	snprintf(fs->name, sizeof fs->name, "%s", a->r.file.name);
	fs->req = a->r.file;
	fs->req.run = fs->run;
	fs->req.name = fs->name;
	Trackd__V1__Query q = TRACKD__V1__QUERY__INIT;
	q.request_case = TRACKD__V1__QUERY__REQUEST_RUN_FILE_READ;
	q.run_file_read = &fs->req;
	struct agent_error aerr = {0};
	const Trackd__V1__QueryReply *qr;
	int rv = agent_query(k->agent, &q, &fs->reply, &qr, &aerr);
	if (rv) {
		file_stream_free(fs);
		return send_agent_error(u, k, c, a->what, rv, &aerr);
	}
	fs->piece = qr->run_file_read;
	fs->size = fs->piece->size;
	snprintf(fs->sha256, sizeof fs->sha256, "%s", fs->piece->sha256 ? fs->piece->sha256 : "");
	struct MHD_Response *r = MHD_create_response_from_callback(
	    fs->size, TRACKD_RUN_FILE_READ_MAX < 65536 ? TRACKD_RUN_FILE_READ_MAX : 65536,
	    file_stream_read, fs, file_stream_free);
	if (!r) {
		file_stream_free(fs);
		return send_error(c, 500, "out of memory");
	}
	with_headers(r, ui_file_content_type(fs->name));
	/* The digest the agent verified: a client may check what it got. */
	MHD_add_response_header(r, "X-Trackd-SHA256", fs->sha256);
	return send_response(c, 200, r);
}

static enum MHD_Result serve_api(struct ui *u, struct conn *k, struct MHD_Connection *c,
                                 const char *path, const char *uri)
{
	char err[UI_ERROR_BYTES];
	struct ui_api *a = malloc(sizeof *a);
	if (!a)
		return send_error(c, 500, "out of memory");
	enum ui_api_status st = ui_api_parse(path, uri, a, err, sizeof err);
	if (st != UI_API_OK) {
		free(a);
		return send_error(c, (unsigned)st, err);
	}
	struct agent_error aerr = {0};
	int rv = 0;
	if (!k->agent)
		rv = agent_open(u->agent_url, &k->agent, &aerr);
	if (rv == 0 && a->q.request_case == TRACKD__V1__QUERY__REQUEST_RUN_FILE_READ) {
		enum MHD_Result res = serve_file(u, k, c, a);
		free(a);
		return res;
	}
	char *json = NULL;
	size_t len = 0;
	if (rv == 0)
		rv = query_json(k->agent, &a->q, &json, &len, &aerr);
	enum MHD_Result res;
	if (rv == 0)
		res = send_response(c, 200, response("application/json", json, len, true));
	else
		res = send_agent_error(u, k, c, a->what, rv, &aerr);
	free(json);
	free(a);
	return res;
}

/* ---- libmicrohttpd callbacks ------------------------------------------------- */

/* The connection bound. libmicrohttpd's own limit is set one above (it counts
 * a connection until a little after our close notification), so this is the
 * one that refuses. Runs on the listening thread, as do STARTED notifications:
 * the count cannot pass the limit between the check and the increment. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t len)
{
	(void)addr;
	(void)len;
	struct ui *u = cls;
	return atomic_load(&u->live) >= UI_MAX_CONNS ? MHD_NO : MHD_YES;
}

static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
	(void)c;
	struct ui *u = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		atomic_fetch_add(&u->live, 1);
		*socket_context = calloc(1, sizeof(struct conn)); /* NULL: 500 on use */
		return;
	}
	struct conn *k = *socket_context;
	if (k) {
		agent_close(k->agent);
		free(k);
	}
	*socket_context = NULL;
	atomic_fetch_sub(&u->live, 1);
}

/* Called once the request line is read, with the target before unescaping:
 * what ui_param and the token redirect read. */
static void *uri_log(void *cls, const char *uri, struct MHD_Connection *c)
{
	(void)cls;
	(void)c;
	struct req *r = calloc(1, sizeof *r);
	if (r && !(r->uri = strdup(uri))) {
		free(r);
		r = NULL;
	}
	return r;
}

static void request_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                              enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct req *r = *req_cls;
	if (r)
		free(r->uri);
	free(r);
	*req_cls = NULL;
}

static bool authorized(struct ui *u, struct MHD_Connection *c)
{
	char value[UI_TOKEN_HEX + 2];
	const char *cookies = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Cookie");
	return ui_cookie(cookies, u->cookie_name, value, sizeof value) == 1 &&
	       ui_token_equal(u->token, value);
}

/* Every request is answered on the handler's first call, right after its
 * head: nothing here reads a body. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
	(void)url;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	struct ui *u = cls;
	struct req *r = *req_cls;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn *k = ci ? ci->socket_context : NULL;
	if (!r || !r->uri || !k)
		return send_error(c, 500, "out of memory");
	const char *uri = r->uri;

	/* Read-only: nothing here changes anything, and no other method is
	 * understood, so none is accepted. */
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		struct MHD_Response *res = response("text/plain", "only GET and HEAD\n", 18, false);
		if (res)
			MHD_add_response_header(res, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
		return send_response(c, 405, res);
	}
	/* GET and HEAD carry no body: one announced is refused before it is read
	 * (libmicrohttpd then closes the connection). */
	const char *clen = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	if ((clen && strcmp(clen, "0") != 0) ||
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding"))
		return send_error(c, 400, "a GET or HEAD request has no body");
	/* DNS rebinding: a page of evil.example whose name now resolves to
	 * 127.0.0.1 sends Host: evil.example:PORT. Only our own names pass. */
	if (!ui_host_allowed(&u->hosts, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host")))
		return send_error(c, 403, "the Host header does not name this server");
	char path[UI_PATH_MAX];
	size_t plen = strcspn(uri, "?");
	if (plen >= sizeof path)
		return send_error(c, 414, "path too long");
	memcpy(path, uri, plen);
	path[plen] = '\0';

	/* The token in the URL (the printed one): exchanged for a cookie, then
	 * dropped from the address bar by a redirect, so it is neither in the
	 * history's later entries nor in what the page can show. */
	char given[UI_TOKEN_HEX + 2];
	int t = ui_param(uri, "token", given, sizeof given);
	if (t != 0) {
		if (t != 1 || !ui_token_equal(u->token, given))
			return send_error(c, 401, "wrong token: use the URL trackctl ui printed");
		char location[UI_PATH_MAX + 8];
		char cookie[192];
		ui_uri_without_token(uri, location, sizeof location);
		snprintf(cookie, sizeof cookie, "%s=%s; HttpOnly; SameSite=Strict; Path=/",
		         u->cookie_name, u->token);
		struct MHD_Response *res = response("text/plain", "signed in\n", 10, false);
		if (res) {
			MHD_add_response_header(res, MHD_HTTP_HEADER_SET_COOKIE, cookie);
			MHD_add_response_header(res, MHD_HTTP_HEADER_LOCATION,
			                        location[0] ? location : "/");
		}
		return send_response(c, 303, res);
	}
	if (!authorized(u, c))
		return send_error(
		    c, 401, "not signed in: open the URL trackctl ui printed (it holds the token)");
	if (strncmp(path, "/api/", 5) == 0)
		return serve_api(u, k, c, path, uri);
	const char *want = strcmp(path, "/") == 0 ? "/index.html" : path;
	for (size_t i = 0; i < ui_assets_count; i++)
		if (strcmp(ui_assets[i].url, want) == 0)
			return send_response(c, 200,
			                     response(ui_assets[i].type, ui_assets[i].data,
			                              ui_assets[i].len, false));
	return send_error(c, 404, "no such page");
}

/* ---- the command ---------------------------------------------------------------- */

static int usage_error(const char *fmt, const char *arg)
{
	fputs("trackctl: ui: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\nUsage: trackctl ui [--listen ADDR:PORT] [--allow-remote] [--open]\n       "
	      "[--idle-timeout SECONDS]\n",
	      stderr);
	return EXIT_USAGE;
}

/* "ADDR:PORT", "[V6]:PORT" or ":PORT" (loopback) into addr and port. */
static int parse_listen(const char *s, char *addr, size_t alen, unsigned *port)
{
	const char *colon = strrchr(s, ':');
	if (!colon)
		return -1;
	const char *a = s, *ae = colon;
	if (*a == '[') {
		if (ae == a || ae[-1] != ']')
			return -1;
		a++;
		ae--;
	}
	size_t n = (size_t)(ae - a);
	if (n == 0) {
		snprintf(addr, alen, "127.0.0.1");
	} else {
		if (n >= alen)
			return -1;
		memcpy(addr, a, n);
		addr[n] = '\0';
	}
	char *end;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || p > 65535)
		return -1;
	*port = (unsigned)p;
	return 0;
}

/* Whether `prog` is an executable file in a directory of PATH. */
static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");
	for (const char *p = path; p && *p;) {
		size_t n = strcspn(p, ":");
		char file[4096];
		if (n &&
		    (size_t)snprintf(file, sizeof file, "%.*s/%s", (int)n, p, prog) < sizeof file &&
		    access(file, X_OK) == 0)
			return true;
		p += n;
		if (*p == ':')
			p++;
	}
	return false;
}

/* xdg-open URL when there is a display and xdg-open: in a grandchild, so
 * nothing is left to reap and a slow browser never holds trackctl. Never an
 * error: without either, the user opens the printed URL. */
static void open_browser(const char *url)
{
	const char *x11 = getenv("DISPLAY"), *wayland = getenv("WAYLAND_DISPLAY");
	if (!(x11 && *x11) && !(wayland && *wayland)) {
		fprintf(stderr,
		        "trackctl: ui: no display here: open the URL in a browser yourself\n");
		return;
	}
	if (!in_path("xdg-open")) {
		fprintf(stderr,
		        "trackctl: ui: no xdg-open here: open the URL in a browser yourself\n");
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		if (fork() == 0) {
			int null = open("/dev/null", O_RDWR);
			if (null >= 0) {
				dup2(null, 0);
				dup2(null, 1);
				dup2(null, 2);
			}
			execlp("xdg-open", "xdg-open", url, (char *)NULL);
			_exit(127);
		}
		_exit(0);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

/* A listening socket on addr:port (addr numeric or a name such as
 * localhost), bound here rather than by libmicrohttpd so that a taken port is
 * told apart and port 0's choice is known before the server starts. The fd,
 * or -1 with errno (EADDRNOTAVAIL for an address that does not resolve). */
static int listen_on(const char *addr, unsigned port, bool *v6)
{
	char service[8];
	snprintf(service, sizeof service, "%u", port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	if (getaddrinfo(addr, service, &hints, &ai) != 0 || !ai) {
		errno = EADDRNOTAVAIL;
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1, e = 0;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    (ai->ai_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
		e = errno;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	*v6 = ai->ai_family == AF_INET6;
	freeaddrinfo(ai);
	errno = e;
	return fd;
}

/* The port `fd` is bound to. */
static unsigned bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int cmd_ui(int argc, char **argv)
{
	const char *listen = UI_DEFAULT_LISTEN;
	bool allow_remote = false, open_it = false;
	unsigned idle_timeout = UI_IDLE_TIMEOUT_S;
	static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
	                                     {"allow-remote", no_argument, NULL, 'r'},
	                                     {"open", no_argument, NULL, 'o'},
	                                     {"idle-timeout", required_argument, NULL, 't'},
	                                     {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': listen = optarg; break;
		case 'r': allow_remote = true; break;
		case 'o': open_it = true; break;
		case 't': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || v < 1 || v > UI_IDLE_TIMEOUT_MAX)
				return usage_error("--idle-timeout takes whole seconds, 1 to 3600, "
				                   "not '%s'",
				                   optarg);
			idle_timeout = (unsigned)v;
			break;
		}
		default:
			return usage_error("unknown option or missing value: %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument: %s", argv[optind]);

	char addr[256];
	unsigned port;
	if (parse_listen(listen, addr, sizeof addr, &port) != 0)
		return usage_error("--listen takes ADDR:PORT (e.g. 127.0.0.1:6006), not '%s'",
		                   listen);
	bool loopback;
	static struct ui u;
	ui_hosts_init(&u.hosts, addr, port, &loopback);
	if (!loopback && !allow_remote)
		return usage_error(
		    "%s is not a loopback address: anyone who can reach it could try "
		    "the token; add --allow-remote to mean it",
		    addr);

	/* Signals are taken by sigwait below; blocked before any thread exists
	 * (libmicrohttpd's included), so every thread inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (ui_token_new(u.token) != 0) {
		fprintf(stderr, "trackctl: ui: getrandom failed: no token, no server\n");
		return 1;
	}
	if (agent_default_url(u.agent_url, sizeof u.agent_url) != 0)
		return 1;

	bool v6 = false;
	int lfd = listen_on(addr, port, &v6);
	if (lfd < 0) {
		if (errno == EADDRINUSE) {
			fprintf(
			    stderr,
			    "trackctl: ui: %s:%u is taken (another trackctl ui?): choose another "
			    "port with --listen %s:PORT, or :0 for any free one\n",
			    addr, port, addr);
			return 1;
		}
		if (errno == EADDRNOTAVAIL && port != 0) {
			fprintf(stderr, "trackctl: ui: bad listen address %s: %s\n", listen,
			        strerror(errno));
			return EXIT_USAGE;
		}
		fprintf(stderr, "trackctl: ui: cannot listen on %s: %s\n", listen, strerror(errno));
		return 1;
	}
	if (port == 0) {
		port = bound_port(lfd);
		ui_hosts_init(&u.hosts, addr, port, &loopback);
	}
	/* Cookies are per host, not per port: the name carries the port so two
	 * trackctl ui of different users on one machine do not overwrite each
	 * other's cookie in a shared browser. */
	snprintf(u.cookie_name, sizeof u.cookie_name, "trackd_ui_%u", port);

	/* MHD_USE_POLL: select() would fail on descriptors past 1023. */
	struct MHD_Daemon *d = MHD_start_daemon(
	    MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
	        (v6 ? MHD_USE_IPv6 : 0),
	    0, accept_policy, &u, handle, &u, MHD_OPTION_LISTEN_SOCKET, lfd,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)(UI_MAX_CONNS + 1),
	    MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)UI_MEMORY_LIMIT, MHD_OPTION_NOTIFY_CONNECTION, notify_connection, &u,
	    MHD_OPTION_URI_LOG_CALLBACK, uri_log, &u, MHD_OPTION_NOTIFY_COMPLETED,
	    request_completed, &u, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "trackctl: ui: cannot start the HTTP server on %s\n", listen);
		close(lfd);
		return 1;
	}

	const char *shown = loopback ? "127.0.0.1" : addr;
	char full[512];
	if (strchr(shown, ':'))
		snprintf(full, sizeof full, "http://[%s]:%u/?token=%s", shown, port, u.token);
	else
		snprintf(full, sizeof full, "http://%s:%u/?token=%s", shown, port, u.token);
	fprintf(stderr, "trackctl: ui: serving the runs of this user (agent %s); Ctrl-C stops\n",
	        u.agent_url);
	if (!loopback)
		fprintf(stderr,
		        "trackctl: ui: WARNING: listening on %s, not loopback: the traffic (token "
		        "included) is plain HTTP; prefer ssh -L\n",
		        addr);
	printf("%s\n", full);
	fflush(stdout);
	if (open_it)
		open_browser(full);

	int sig = 0;
	sigwait(&sigs, &sig);
	/* Closes the listening socket and every connection, and joins their
	 * threads (one in an agent query finishes it first: at most trackctl's
	 * agent timeout). */
	MHD_stop_daemon(d);
	return 0;
}
