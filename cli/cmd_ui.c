/*
 * cmd_ui.c — `trackctl ui` (see ui.h): NNG's HTTP server, one handler for
 * every path, and a few worker threads that ask the agent.
 *
 * Why workers: an NNG HTTP handler runs on one of NNG's task threads, and so
 * do the completions of the REQ socket that talks to the agent. A handler
 * that waited for the agent would hold a task thread; a few at once would
 * leave none to deliver the agent's replies. So the handler decides
 * everything that needs no agent (method, Host, token, static files) at once
 * and queues API requests for UI_WORKERS threads, each with its own agent
 * connection (agent_client is one per thread), which finish the request's
 * aio themselves. The queue is bounded (UI_QUEUE_MAX: past it, 503).
 */
#include "ui.h"

#include "agent_client.h"
#include "buf.h"
#include "errors.h"
#include "json_write.h"
#include "trackd/v1/pb_json.h"
#include "ui_assets.h"
#include "ui_http.h"

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define UI_WORKERS     4   /* agent queries in flight at once */
#define UI_QUEUE_MAX   256 /* API requests waiting for a worker; past it, 503 */
#define UI_PATH_MAX    1024
#define UI_ERROR_BYTES 6144
#define EXIT_USAGE     2

struct job {
	nng_aio *aio;
	bool head;
	char *uri;
	char path[UI_PATH_MAX];
	struct job *next;
};

struct ui {
	char token[UI_TOKEN_HEX + 1];
	char cookie_name[32];
	struct ui_hosts hosts;
	char agent_url[4096];

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;
	size_t queued;
	bool stopping;
	pthread_t workers[UI_WORKERS];
};

/* ---- responses ------------------------------------------------------------ */

/* Headers on every answer: no sniffing, no framing (clickjacking), scripts
 * and everything else only from this server (no CDN, no inline script), no
 * Referer (the first URL holds the token), nothing cached (answers are
 * per-user data). No Access-Control-* header: other origins get nothing. */
static void common_headers(nng_http_res *res)
{
	nng_http_res_set_header(res, "X-Content-Type-Options", "nosniff");
	nng_http_res_set_header(res, "X-Frame-Options", "DENY");
	nng_http_res_set_header(res, "Content-Security-Policy",
	                        "default-src 'self'; script-src 'self'; style-src 'self' "
	                        "'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'");
	nng_http_res_set_header(res, "Referrer-Policy", "no-referrer");
	nng_http_res_set_header(res, "Cache-Control", "no-store");
}

/* Finishes the request with `res` (NULL: out of memory, the connection is
 * dropped, which NNG answers with a 500 when it still can). */
static void finish(nng_aio *aio, nng_http_res *res)
{
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, res ? 0 : NNG_ENOMEM);
}

/* A body the caller keeps alive (static assets) or that is copied (copy). */
static void respond(nng_aio *aio, uint16_t status, const char *type, const void *body, size_t len,
                    bool copy, bool head)
{
	nng_http_res *res;
	if (nng_http_res_alloc(&res) != 0) {
		finish(aio, NULL);
		return;
	}
	nng_http_res_set_status(res, status);
	common_headers(res);
	if (type)
		nng_http_res_set_header(res, "Content-Type", type);
	int rv = 0;
	if (!head && len)
		rv = copy ? nng_http_res_copy_data(res, body, len)
		          : nng_http_res_set_data(res, body, len);
	if (rv != 0) {
		nng_http_res_free(res);
		res = NULL;
	}
	finish(aio, res);
}

/* An error as {"error": message, "status": N}, written by json_write. */
static void respond_error(nng_aio *aio, uint16_t status, const char *message, bool head)
{
	struct buf b;
	buf_init(&b, 2 * UI_ERROR_BYTES + 64);
	int rv = buf_puts(&b, "{\"error\":");
	if (!rv)
		rv = json_write_string(&b, message);
	if (!rv)
		rv = buf_printf(&b, ",\"status\":%u}\n", (unsigned)status);
	respond(aio, status, "application/json", b.data, rv ? 0 : b.len, true, head);
	buf_fini(&b);
}

/* ---- the API, on the workers ------------------------------------------------ */

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

static void serve_api(struct ui *u, agent_client **agent, struct job *j)
{
	char err[UI_ERROR_BYTES];
	struct ui_api *a = malloc(sizeof *a);
	if (!a) {
		respond_error(j->aio, 500, "out of memory", j->head);
		return;
	}
	enum ui_api_status st = ui_api_parse(j->path, j->uri, a, err, sizeof err);
	if (st != UI_API_OK) {
		respond_error(j->aio, (uint16_t)st, err, j->head);
		free(a);
		return;
	}
	struct agent_error aerr = {0};
	int rv = 0;
	if (!*agent)
		rv = agent_open(u->agent_url, agent, &aerr);
	char *json = NULL;
	size_t len = 0;
	if (rv == 0)
		rv = query_json(*agent, &a->q, &json, &len, &aerr);
	if (rv == 0) {
		respond(j->aio, 200, "application/json", json, len, true, j->head);
	} else {
		uint16_t code = agent_status_code(rv, &aerr);
		if (code == 503) {
			snprintf(err, sizeof err, "the agent at %s does not answer: %s",
			         u->agent_url, aerr.message);
			/* A new connection next time: the agent may have restarted. */
			agent_close(*agent);
			*agent = NULL;
		} else if (code == 404) {
			snprintf(err, sizeof err, "%s not found: %s", a->what[0] ? a->what : "run",
			         aerr.message);
		} else {
			snprintf(err, sizeof err, "the agent refused: %s", aerr.message);
		}
		respond_error(j->aio, code, err, j->head);
	}
	free(json);
	free(a);
}

static void *worker(void *arg)
{
	struct ui *u = arg;
	agent_client *agent = NULL;
	for (;;) {
		pthread_mutex_lock(&u->mu);
		while (!u->head && !u->stopping)
			pthread_cond_wait(&u->cv, &u->mu);
		struct job *j = u->head;
		if (j) {
			u->head = j->next;
			if (!u->head)
				u->tail = NULL;
			u->queued--;
		}
		bool stopping = u->stopping;
		pthread_mutex_unlock(&u->mu);
		if (!j)
			break; /* stopping, queue drained */
		if (stopping)
			respond_error(j->aio, 503, "trackctl ui is stopping", j->head);
		else
			serve_api(u, &agent, j);
		free(j->uri);
		free(j);
	}
	agent_close(agent);
	return NULL;
}

static void enqueue(struct ui *u, nng_aio *aio, const char *uri, const char *path, bool head)
{
	struct job *j = calloc(1, sizeof *j);
	char *copy = j ? strdup(uri) : NULL;
	if (!copy) {
		free(j);
		respond_error(aio, 500, "out of memory", head);
		return;
	}
	j->aio = aio;
	j->head = head;
	j->uri = copy;
	snprintf(j->path, sizeof j->path, "%s", path);
	pthread_mutex_lock(&u->mu);
	bool refuse = u->stopping || u->queued >= UI_QUEUE_MAX;
	if (!refuse) {
		if (u->tail)
			u->tail->next = j;
		else
			u->head = j;
		u->tail = j;
		u->queued++;
		pthread_cond_signal(&u->cv);
	}
	pthread_mutex_unlock(&u->mu);
	if (refuse) {
		respond_error(aio, 503, "too many requests waiting for the agent", head);
		free(j->uri);
		free(j);
	}
}

/* ---- the one handler ---------------------------------------------------------- */

static bool authorized(struct ui *u, nng_http_req *req)
{
	char value[UI_TOKEN_HEX + 2];
	const char *cookies = nng_http_req_get_header(req, "Cookie");
	return ui_cookie(cookies, u->cookie_name, value, sizeof value) == 1 &&
	       ui_token_equal(u->token, value);
}

static void handle(nng_aio *aio)
{
	nng_http_req *req = nng_aio_get_input(aio, 0);
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	struct ui *u = nng_http_handler_get_data(h);
	const char *method = nng_http_req_get_method(req);
	bool head = strcmp(method, "HEAD") == 0;

	/* Read-only: nothing here changes anything, and no other method is
	 * understood, so none is accepted. */
	if (!head && strcmp(method, "GET") != 0) {
		nng_http_res *res;
		if (nng_http_res_alloc(&res) != 0) {
			finish(aio, NULL);
			return;
		}
		nng_http_res_set_status(res, 405);
		common_headers(res);
		nng_http_res_set_header(res, "Allow", "GET, HEAD");
		/* A body (hence a Content-Length), so the client need not wait
		 * for the connection to close to know the answer is complete. */
		nng_http_res_set_header(res, "Content-Type", "text/plain");
		nng_http_res_set_data(res, "only GET and HEAD\n", 18);
		finish(aio, res);
		return;
	}
	/* DNS rebinding: a page of evil.example whose name now resolves to
	 * 127.0.0.1 sends Host: evil.example:PORT. Only our own names pass.
	 * (Under the lock: with --listen :0 the names are set once the port is
	 * known, after the server started.) */
	pthread_mutex_lock(&u->mu);
	bool host_ok = ui_host_allowed(&u->hosts, nng_http_req_get_header(req, "Host"));
	bool signed_in = authorized(u, req);
	char cookie_name[sizeof u->cookie_name];
	memcpy(cookie_name, u->cookie_name, sizeof cookie_name);
	pthread_mutex_unlock(&u->mu);
	if (!host_ok) {
		respond_error(aio, 403, "the Host header does not name this server", head);
		return;
	}
	const char *uri = nng_http_req_get_uri(req);
	char path[UI_PATH_MAX];
	size_t plen = strcspn(uri, "?");
	if (plen >= sizeof path) {
		respond_error(aio, 414, "path too long", head);
		return;
	}
	memcpy(path, uri, plen);
	path[plen] = '\0';

	/* The token in the URL (the printed one): exchanged for a cookie, then
	 * dropped from the address bar by a redirect, so it is neither in the
	 * history's later entries nor in what the page can show. */
	char given[UI_TOKEN_HEX + 2];
	int t = ui_param(uri, "token", given, sizeof given);
	if (t != 0) {
		if (t != 1 || !ui_token_equal(u->token, given)) {
			respond_error(aio, 401, "wrong token: use the URL trackctl ui printed",
			              head);
			return;
		}
		nng_http_res *res;
		char location[UI_PATH_MAX + 8];
		char cookie[192];
		ui_uri_without_token(uri, location, sizeof location);
		snprintf(cookie, sizeof cookie, "%s=%s; HttpOnly; SameSite=Strict; Path=/",
		         cookie_name, u->token);
		if (nng_http_res_alloc(&res) != 0) {
			finish(aio, NULL);
			return;
		}
		nng_http_res_set_status(res, 303);
		common_headers(res);
		nng_http_res_set_header(res, "Set-Cookie", cookie);
		nng_http_res_set_header(res, "Location", location[0] ? location : "/");
		nng_http_res_set_header(res, "Content-Type", "text/plain");
		nng_http_res_set_data(res, "signed in\n", 10);
		finish(aio, res);
		return;
	}
	if (!signed_in) {
		respond_error(
		    aio, 401,
		    "not signed in: open the URL trackctl ui printed (it holds the token)", head);
		return;
	}
	if (strncmp(path, "/api/", 5) == 0) {
		enqueue(u, aio, uri, path, head);
		return;
	}
	const char *want = strcmp(path, "/") == 0 ? "/index.html" : path;
	for (size_t i = 0; i < ui_assets_count; i++) {
		if (strcmp(ui_assets[i].url, want) == 0) {
			respond(aio, 200, ui_assets[i].type, ui_assets[i].data, ui_assets[i].len,
			        false, head);
			return;
		}
	}
	respond_error(aio, 404, "no such page", head);
}

/* ---- the command ---------------------------------------------------------------- */

static int usage_error(const char *fmt, const char *arg)
{
	fputs("trackctl: ui: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\nUsage: trackctl ui [--listen ADDR:PORT] [--allow-remote] [--open]\n", stderr);
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

int cmd_ui(int argc, char **argv)
{
	const char *listen = UI_DEFAULT_LISTEN;
	bool allow_remote = false, open_it = false;
	static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
	                                     {"allow-remote", no_argument, NULL, 'r'},
	                                     {"open", no_argument, NULL, 'o'},
	                                     {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': listen = optarg; break;
		case 'r': allow_remote = true; break;
		case 'o': open_it = true; break;
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
	 * (NNG's included), so every thread inherits the mask. */
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

	char url[300];
	if (strchr(addr, ':'))
		snprintf(url, sizeof url, "http://[%s]:%u", addr, port);
	else
		snprintf(url, sizeof url, "http://%s:%u", addr, port);
	nng_url *nurl;
	nng_http_server *srv;
	nng_http_handler *h;
	int rv = nng_url_parse(&nurl, url);
	if (rv != 0) {
		fprintf(stderr, "trackctl: ui: bad listen address %s: %s\n", listen,
		        nng_strerror(rv));
		return EXIT_USAGE;
	}
	rv = nng_http_server_hold(&srv, nurl);
	nng_url_free(nurl);
	if (rv != 0) {
		fprintf(stderr, "trackctl: ui: cannot serve %s: %s\n", url, nng_strerror(rv));
		return 1;
	}
	if ((rv = nng_http_handler_alloc(&h, "/", handle)) != 0 ||
	    (rv = nng_http_handler_set_tree(h)) != 0 ||
	    (rv = nng_http_handler_set_method(h, NULL)) != 0 ||
	    /* GET and HEAD carry no body: any byte of one is refused (400). */
	    (rv = nng_http_handler_collect_body(h, true, 0)) != 0 ||
	    (rv = nng_http_handler_set_data(h, &u, NULL)) != 0 ||
	    (rv = nng_http_server_add_handler(srv, h)) != 0) {
		fprintf(stderr, "trackctl: ui: cannot set up the server: %s\n", nng_strerror(rv));
		nng_http_server_release(srv);
		return 1;
	}
	pthread_mutex_init(&u.mu, NULL);
	pthread_cond_init(&u.cv, NULL);
	size_t started = 0;
	for (; started < UI_WORKERS; started++)
		if (pthread_create(&u.workers[started], NULL, worker, &u) != 0)
			break;
	if (started == 0) {
		fprintf(stderr, "trackctl: ui: cannot start a thread\n");
		nng_http_server_release(srv);
		return 1;
	}
	if ((rv = nng_http_server_start(srv)) != 0) {
		if (rv == NNG_EADDRINUSE)
			fprintf(
			    stderr,
			    "trackctl: ui: %s:%u is taken (another trackctl ui?): choose another "
			    "port with --listen %s:PORT, or :0 for any free one\n",
			    addr, port, addr);
		else
			fprintf(stderr, "trackctl: ui: cannot listen on %s: %s\n", url,
			        nng_strerror(rv));
		rv = 1;
		goto stop;
	}
	pthread_mutex_lock(&u.mu);
	if (port == 0) {
		nng_sockaddr sa;
		if (nng_http_server_get_addr(srv, &sa) == 0)
			port =
			    ntohs(sa.s_family == NNG_AF_INET6 ? sa.s_in6.sa_port : sa.s_in.sa_port);
		ui_hosts_init(&u.hosts, addr, port, &loopback);
	}
	/* Cookies are per host, not per port: the name carries the port so two
	 * trackctl ui of different users on one machine do not overwrite each
	 * other's cookie in a shared browser. */
	snprintf(u.cookie_name, sizeof u.cookie_name, "trackd_ui_%u", port);
	pthread_mutex_unlock(&u.mu);
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
	rv = 0;
stop:
	pthread_mutex_lock(&u.mu);
	u.stopping = true;
	pthread_cond_broadcast(&u.cv);
	pthread_mutex_unlock(&u.mu);
	for (size_t i = 0; i < started; i++)
		pthread_join(u.workers[i], NULL);
	nng_http_server_stop(srv);
	nng_http_server_release(srv);
	return rv;
}
