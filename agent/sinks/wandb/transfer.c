/* One HTTP request of the wandb sink: a curl easy handle on the sink's multi
 * handle. Everything here runs on the sink thread; the callbacks only copy
 * bytes into bounded buffers. */
#include "wandb_internal.h"

#include "clock.h"
#include "errors.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Below this many bytes per second for stall_timeout, a transfer is abandoned:
 * a trickling server must not hold a run's only slot for the whole timeout. */
#define STALL_BYTES_PER_S 64

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct wb_transfer *t = arg;
	size_t n = size * nmemb;
	/* Keep the head of a large answer, read (and drop) the rest: refusing it
	 * would turn a successful request into a failed one. */
	if (t->response.len < WB_RESPONSE_MAX) {
		size_t k = WB_RESPONSE_MAX - t->response.len;
		buf_append(&t->response, ptr, n < k ? n : k);
	}
	return n;
}

static bool header_is(const char *line, size_t n, const char *name, const char **value,
                      size_t *vlen)
{
	size_t k = strlen(name);
	if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return false;
	const char *v = line + k + 1, *end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	*value = v;
	*vlen = (size_t)(end - v);
	return true;
}

static bool parse_u64(const char *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;
	if (n == 0 || n > 18)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)v[i]))
			return false;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return true;
}

static size_t on_header(char *ptr, size_t size, size_t nitems, void *arg)
{
	struct wb_transfer *t = arg;
	size_t n = size * nitems;
	const char *v;
	size_t vlen;
	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
		/* A new response (after a 100 Continue): its own headers count. */
		t->retry_after[0] = '\0';
		t->has_ratelimit_remaining = t->has_ratelimit_reset = false;
	} else if (header_is(ptr, n, "Retry-After", &v, &vlen)) {
		snprintf(t->retry_after, sizeof t->retry_after, "%.*s",
		         (int)(vlen < sizeof t->retry_after ? vlen : sizeof t->retry_after - 1), v);
	} else if (header_is(ptr, n, "RateLimit-Remaining", &v, &vlen)) {
		t->has_ratelimit_remaining = parse_u64(v, vlen, &t->ratelimit_remaining);
	} else if (header_is(ptr, n, "RateLimit-Reset", &v, &vlen)) {
		t->has_ratelimit_reset = parse_u64(v, vlen, &t->ratelimit_reset);
	}
	return n;
}

static int build_url(struct wandb_sink *s, struct wb_run *wr, enum wb_call call, char *out,
                     size_t len)
{
	if (call == WB_CALL_UPSERT)
		return snprintf(out, len, "%s/graphql", s->base_url) < (int)len ? TRACKD_OK
		                                                                : TRACKD_EINVAL;
	char *e = curl_easy_escape(NULL, wr->up_entity ? wr->up_entity : "", 0);
	char *p = curl_easy_escape(NULL, wr->up_project ? wr->up_project : "", 0);
	char *r = curl_easy_escape(NULL, wr->id, 0);
	int rv = TRACKD_ENOMEM;
	if (e && p && r)
		rv = snprintf(out, len, "%s/files/%s/%s/%s/file_stream", s->base_url, e, p, r) <
		             (int)len
		         ? TRACKD_OK
		         : TRACKD_EINVAL;
	curl_free(e);
	curl_free(p);
	curl_free(r);
	return rv;
}

void wb_transfer_free(struct wandb_sink *s, struct wb_transfer *t)
{
	if (!t)
		return;
	if (t->added) {
		curl_multi_remove_handle(s->multi, t->easy);
		if (!t->is_put) /* PUTs are counted by run_files_up.c */
			s->in_flight--;
	}
	if (t->is_put) {
		if (t->put_fd >= 0)
			close(t->put_fd);
		curl_slist_free_all(t->put_headers);
	}
	free(t->listed);
	free(t->listed_md5);
	if (t->easy)
		curl_easy_cleanup(t->easy);
	wb_headers_release(t->headers);
	buf_fini(&t->body);
	buf_fini(&t->response);
	free(t->capture);
	free(t);
}

#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(e, opt, val);                                        \
	} while (0)

int wb_transfer_start(struct wandb_sink *s, struct wb_run *wr, enum wb_call call, struct buf *body,
                      struct wb_transfer **out)
{
	char url[8192];
	int rv = build_url(s, wr, call, url, sizeof url);
	if (rv)
		return rv;
	struct wb_transfer *t = calloc(1, sizeof *t);
	if (!t)
		return TRACKD_ENOMEM;
	t->wr = wr;
	t->call = call;
	buf_init(&t->response, WB_RESPONSE_MAX + 1);
	CURL *e = curl_easy_init();
	if (!e) {
		free(t);
		return TRACKD_ENOMEM;
	}
	t->easy = e;
	/* POSTFIELDS is not copied: the body lives in the transfer until it ends. */
	t->body = *body;
	const struct wandb_sink_options *o = &s->opts;
	long stall_s = (long)(o->stall_timeout_ms + 999) / 1000;
	CURLcode rc = CURLE_OK;
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);
	t->headers = s->headers;
	t->headers->refs++;
	SET(CURLOPT_HTTPHEADER, t->headers->list);
	/* Basic auth as W&B wants it: user "api", the key as password. curl
	 * copies the key and builds the header itself; it is never logged (no
	 * CURLOPT_VERBOSE), and a reconfiguration may free ours meanwhile. */
	SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
	SET(CURLOPT_USERNAME, "api");
	SET(CURLOPT_PASSWORD, s->api_key);
	SET(CURLOPT_POSTFIELDS, t->body.data ? t->body.data : "");
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->body.len);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, t);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, t);
	SET(CURLOPT_PRIVATE, t);
	SET(CURLOPT_ERRORBUFFER, t->errbuf);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, (long)o->request_timeout_ms);
	SET(CURLOPT_LOW_SPEED_LIMIT, (long)STALL_BYTES_PER_S);
	SET(CURLOPT_LOW_SPEED_TIME, stall_s);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	/* Answers may come compressed; requests go plain (nothing asks otherwise). */
	SET(CURLOPT_ACCEPT_ENCODING, "");
	SET(CURLOPT_SSL_VERIFYPEER, o->tls_verify ? 1L : 0L);
	SET(CURLOPT_SSL_VERIFYHOST, o->tls_verify ? 2L : 0L);
	if (s->ca_file && *s->ca_file)
		SET(CURLOPT_CAINFO, s->ca_file);
	if (rc != CURLE_OK) {
		log_error("wandb: cannot set up a request: %s", curl_easy_strerror(rc));
		t->body.data = NULL; /* the caller still owns the body */
		wb_transfer_free(s, t);
		return TRACKD_ESYS;
	}
	CURLMcode mc = curl_multi_add_handle(s->multi, e);
	if (mc != CURLM_OK) {
		log_error("wandb: cannot start a request: %s", curl_multi_strerror(mc));
		t->body.data = NULL; /* the caller still owns the body */
		wb_transfer_free(s, t);
		return TRACKD_ESYS;
	}
	buf_init(body, body->max); /* taken */
	t->started_at = clock_mono_us();
	t->added = true;
	s->in_flight++;
	*out = t;
	return TRACKD_OK;
}

/* curl asks for the next piece of a PUT's body: read from the file where the
 * last piece ended (never the whole file in memory). A file shorter than
 * announced fails the transfer rather than send less than Content-Length. */
static size_t on_read(char *ptr, size_t size, size_t nitems, void *arg)
{
	struct wb_transfer *t = arg;
	size_t want = size * nitems;
	if (t->put_off >= t->put_size)
		return 0;
	if (want > t->put_size - t->put_off)
		want = (size_t)(t->put_size - t->put_off);
	ssize_t n;
	do
		n = pread(t->put_fd, ptr, want, (off_t)t->put_off);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return CURL_READFUNC_ABORT;
	t->put_off += (uint64_t)n;
	return (size_t)n;
}

/* A retried PUT may rewind its body (a redirect, a re-sent request). */
static int on_seek(void *arg, curl_off_t offset, int origin)
{
	struct wb_transfer *t = arg;
	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > t->put_size)
		return CURL_SEEKFUNC_CANTSEEK;
	t->put_off = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

int wb_transfer_start_put(struct wandb_sink *s, struct wb_run *wr, const char *url,
                          struct curl_slist *headers, int fd, uint64_t size,
                          struct wb_transfer **out)
{
	struct wb_transfer *t = calloc(1, sizeof *t);
	if (!t)
		return TRACKD_ENOMEM;
	t->wr = wr;
	t->call = WB_CALL_UPSERT; /* unused for PUTs */
	t->is_put = true;
	t->put_fd = -1;
	buf_init(&t->body, 1);
	buf_init(&t->response, WB_RESPONSE_MAX + 1);
	CURL *e = curl_easy_init();
	if (!e) {
		wb_transfer_free(s, t);
		return TRACKD_ENOMEM;
	}
	t->easy = e;
	const struct wandb_sink_options *o = &s->opts;
	long stall_s = (long)(o->stall_timeout_ms + 999) / 1000;
	CURLcode rc = CURLE_OK;
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_UPLOAD, 1L);
	SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
	SET(CURLOPT_READFUNCTION, on_read);
	SET(CURLOPT_READDATA, t);
	SET(CURLOPT_SEEKFUNCTION, on_seek);
	SET(CURLOPT_SEEKDATA, t);
	SET(CURLOPT_HTTPHEADER, headers);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, t);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, t);
	SET(CURLOPT_PRIVATE, t);
	SET(CURLOPT_ERRORBUFFER, t->errbuf);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
	/* No total timeout: a large file on a slow link may take long; the stall
	 * limit catches a dead one. */
	SET(CURLOPT_LOW_SPEED_LIMIT, (long)STALL_BYTES_PER_S);
	SET(CURLOPT_LOW_SPEED_TIME, stall_s);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_SSL_VERIFYPEER, o->tls_verify ? 1L : 0L);
	SET(CURLOPT_SSL_VERIFYHOST, o->tls_verify ? 2L : 0L);
	if (s->ca_file && *s->ca_file)
		SET(CURLOPT_CAINFO, s->ca_file);
	if (rc != CURLE_OK) {
		log_error("wandb: cannot set up an upload: %s", curl_easy_strerror(rc));
		wb_transfer_free(s, t);
		return TRACKD_ESYS;
	}
	CURLMcode mc = curl_multi_add_handle(s->multi, e);
	if (mc != CURLM_OK) {
		log_error("wandb: cannot start an upload: %s", curl_multi_strerror(mc));
		wb_transfer_free(s, t);
		return TRACKD_ESYS;
	}
	/* Taken only now: on failure the caller still owns them. */
	t->put_fd = fd;
	t->put_size = size;
	t->put_headers = headers;
	t->started_at = clock_mono_us();
	t->added = true;
	*out = t;
	return TRACKD_OK;
}
