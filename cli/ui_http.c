/* ui_http.c — see ui_http.h. */
#include "ui_http.h"

#include "errors.h"
#include "run_files.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

/* ---- token ---------------------------------------------------------------- */

int ui_token_new(char out[UI_TOKEN_HEX + 1])
{
	unsigned char raw[UI_TOKEN_BYTES];
	size_t got = 0;
	while (got < sizeof raw) {
		ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return TRACKD_ESYS;
		got += (size_t)n;
	}
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < sizeof raw; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[UI_TOKEN_HEX] = '\0';
	return 0;
}

bool ui_token_equal(const char *token, const char *given)
{
	if (!given)
		return false;
	/* Every byte of the token is compared, whatever `given` holds: the
	 * difference accumulates and is looked at once, so the time says nothing
	 * about the first differing byte. `given` is read up to its NUL only. */
	unsigned char diff = 0;
	size_t i = 0;
	bool ended = false;
	for (; token[i]; i++) {
		unsigned char g = ended ? 0 : (unsigned char)given[i];
		if (!g)
			ended = true;
		diff |= (unsigned char)(g ^ (unsigned char)token[i]);
	}
	if (!ended && given[i])
		diff |= 1; /* longer than the token */
	return diff == 0 && !ended;
}

/* ---- Host header ---------------------------------------------------------- */

static bool is_loopback(const char *addr)
{
	return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
	       strcasecmp(addr, "localhost") == 0;
}

void ui_hosts_init(struct ui_hosts *h, const char *addr, unsigned port, bool *loopback)
{
	memset(h, 0, sizeof *h);
	*loopback = is_loopback(addr);
	if (*loopback) {
		snprintf(h->name[h->n++], UI_HOST_MAX, "127.0.0.1:%u", port);
		snprintf(h->name[h->n++], UI_HOST_MAX, "localhost:%u", port);
		snprintf(h->name[h->n++], UI_HOST_MAX, "[::1]:%u", port);
		/* Another 127.x address given to --listen names itself too. */
		if (strncmp(addr, "127.", 4) == 0 && strcmp(addr, "127.0.0.1") != 0)
			snprintf(h->name[h->n++], UI_HOST_MAX, "%s:%u", addr, port);
		return;
	}
	if (strchr(addr, ':'))
		snprintf(h->name[h->n++], UI_HOST_MAX, "[%s]:%u", addr, port);
	else
		snprintf(h->name[h->n++], UI_HOST_MAX, "%s:%u", addr, port);
}

bool ui_host_allowed(const struct ui_hosts *h, const char *host)
{
	if (!host)
		return false;
	for (size_t i = 0; i < h->n; i++)
		if (strcasecmp(h->name[i], host) == 0)
			return true;
	return false;
}

/* ---- query string and cookies -------------------------------------------- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes [p, p + n) into out; -1 on a bad escape, a NUL, or no room. */
static int decode(const char *p, size_t n, char *out, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)p[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			if (i + 2 >= n)
				return -1;
			int hi = hexval(p[i + 1]);
			int lo = hexval(p[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c == 0 || o + 1 >= len)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

int ui_param(const char *uri, const char *name, char *out, size_t len)
{
	const char *q = strchr(uri, '?');
	if (!q)
		return 0;
	size_t nlen = strlen(name);
	for (const char *p = q + 1; *p;) {
		const char *end = strchr(p, '&');
		size_t plen = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', plen);
		size_t klen = eq ? (size_t)(eq - p) : plen;
		if (klen == nlen && memcmp(p, name, nlen) == 0) {
			const char *v = eq ? eq + 1 : p + plen;
			return decode(v, (size_t)(p + plen - v), out, len) == 0 ? 1 : -1;
		}
		p += plen;
		if (*p == '&')
			p++;
	}
	return 0;
}

void ui_uri_without_token(const char *uri, char *out, size_t len)
{
	size_t o = 0;
	const char *q = strchr(uri, '?');
	size_t plen = q ? (size_t)(q - uri) : strlen(uri);
	if (plen + 1 > len)
		plen = len - 1;
	memcpy(out, uri, plen);
	o = plen;
	out[o] = '\0';
	if (!q)
		return;
	bool first = true;
	for (const char *p = q + 1; *p;) {
		const char *end = strchr(p, '&');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		bool is_token = (n >= 6 && strncmp(p, "token=", 6) == 0) ||
		                (n == 5 && strncmp(p, "token", 5) == 0);
		if (!is_token && n > 0 && o + n + 2 < len) {
			out[o++] = first ? '?' : '&';
			memcpy(out + o, p, n);
			o += n;
			out[o] = '\0';
			first = false;
		}
		p += n;
		if (*p == '&')
			p++;
	}
}

int ui_cookie(const char *header, const char *name, char *out, size_t len)
{
	if (!header)
		return 0;
	size_t nlen = strlen(name);
	for (const char *p = header; *p;) {
		while (*p == ' ' || *p == ';')
			p++;
		const char *end = strchr(p, ';');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
			size_t vlen = n - nlen - 1;
			while (vlen && p[nlen + vlen] == ' ')
				vlen--;
			if (vlen + 1 > len)
				return 0;
			memcpy(out, p + nlen + 1, vlen);
			out[vlen] = '\0';
			return 1;
		}
		p += n;
	}
	return 0;
}

/* ---- API requests ---------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static enum ui_api_status bad(char *err, size_t errlen,
                                                                    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return UI_API_BAD_REQUEST;
}

/* An optional string parameter into `out` (NULL-able result in *set). */
static enum ui_api_status str_param(const char *uri, const char *name, char *out, size_t len,
                                    bool *set, char *err, size_t errlen)
{
	int rv = ui_param(uri, name, out, len);
	*set = false;
	if (rv < 0)
		return bad(err, errlen, "parameter '%s': badly encoded or longer than %zu bytes",
		           name, len - 1);
	*set = rv == 1 && out[0];
	return UI_API_OK;
}

static enum ui_api_status u64_param(const char *uri, const char *name, uint64_t max, uint64_t *out,
                                    protobuf_c_boolean *set, char *err, size_t errlen)
{
	char v[32];
	int rv = ui_param(uri, name, v, sizeof v);
	*set = false;
	if (rv == 0 || (rv == 1 && !v[0]))
		return UI_API_OK;
	char *end = NULL;
	errno = 0;
	unsigned long long n = rv == 1 && isdigit((unsigned char)v[0]) ? strtoull(v, &end, 10) : 0;
	if (rv < 0 || !end || *end || errno || n > max)
		return bad(err, errlen, "parameter '%s': a whole number from 0 to %llu", name,
		           (unsigned long long)max);
	*out = n;
	*set = true;
	return UI_API_OK;
}

static enum ui_api_status double_param(const char *uri, const char *name, double *out,
                                       protobuf_c_boolean *set, char *err, size_t errlen)
{
	char v[64];
	int rv = ui_param(uri, name, v, sizeof v);
	*set = false;
	if (rv == 0 || (rv == 1 && !v[0]))
		return UI_API_OK;
	char *end = NULL;
	double d = rv == 1 ? strtod(v, &end) : 0;
	if (rv < 0 || !end || end == v || *end || !isfinite(d))
		return bad(err, errlen, "parameter '%s': a finite number", name);
	*out = d;
	*set = true;
	return UI_API_OK;
}

static enum ui_api_status run_param(const char *uri, struct ui_api *a, char *err, size_t errlen)
{
	bool set;
	enum ui_api_status st = str_param(uri, "run", a->run, sizeof a->run, &set, err, errlen);
	if (st)
		return st;
	if (!set)
		return bad(err, errlen, "parameter 'run' is required");
	snprintf(a->what, sizeof a->what, "run %s", a->run);
	return UI_API_OK;
}

/* keys=a,b,c into a->keys; *n their number. */
static enum ui_api_status keys_param(const char *uri, struct ui_api *a, size_t *n, char *err,
                                     size_t errlen)
{
	bool set;
	*n = 0;
	enum ui_api_status st =
	    str_param(uri, "keys", a->keys_text, sizeof a->keys_text, &set, err, errlen);
	if (st || !set)
		return st;
	for (char *p = a->keys_text;;) {
		char *comma = strchr(p, ',');
		if (comma)
			*comma = '\0';
		if (!*p || strlen(p) > UI_KEY_MAX)
			return bad(err, errlen, "parameter 'keys': empty key, or one over %d bytes",
			           UI_KEY_MAX);
		if (*n == UI_KEYS_MAX)
			return bad(err, errlen, "parameter 'keys': more than %d keys", UI_KEYS_MAX);
		a->keys[(*n)++] = p;
		if (!comma)
			break;
		p = comma + 1;
	}
	return UI_API_OK;
}

enum ui_api_status ui_api_parse(const char *path, const char *uri, struct ui_api *a, char *err,
                                size_t errlen)
{
	memset(&a->q, 0, sizeof a->q);
	a->q = (Trackd__V1__Query)TRACKD__V1__QUERY__INIT;
	a->what[0] = '\0';
	err[0] = '\0';
	enum ui_api_status st;
	bool set;
	/* protobuf-c's string fields are not const; packing only reads them. */
	if (strcmp(path, "/api/runs") == 0) {
		a->r.runs = (Trackd__V1__RunsRequest)TRACKD__V1__RUNS_REQUEST__INIT;
		if ((st = str_param(uri, "project", a->str1, sizeof a->str1, &set, err, errlen)))
			return st;
		a->r.runs.project = set ? a->str1 : NULL;
		if ((st = str_param(uri, "state", a->str2, sizeof a->str2, &set, err, errlen)))
			return st;
		a->r.runs.state = set ? a->str2 : NULL;
		a->q.request_case = TRACKD__V1__QUERY__REQUEST_RUNS;
		a->q.runs = &a->r.runs;
		return UI_API_OK;
	}
	if (strcmp(path, "/api/run") == 0) {
		a->r.run = (Trackd__V1__RunRequest)TRACKD__V1__RUN_REQUEST__INIT;
		if ((st = run_param(uri, a, err, errlen)))
			return st;
		a->r.run.run = a->run;
		a->q.request_case = TRACKD__V1__QUERY__REQUEST_RUN;
		a->q.run = &a->r.run;
		return UI_API_OK;
	}
	if (strcmp(path, "/api/series") == 0) {
		Trackd__V1__SeriesRequest *s = &a->r.series;
		*s = (Trackd__V1__SeriesRequest)TRACKD__V1__SERIES_REQUEST__INIT;
		size_t n;
		uint64_t buckets = 0;
		if ((st = run_param(uri, a, err, errlen)) ||
		    (st = keys_param(uri, a, &n, err, errlen)) ||
		    (st = str_param(uri, "x", a->str1, UI_KEY_MAX + 1, &set, err, errlen)))
			return st;
		s->run = a->run;
		s->n_keys = n;
		s->keys = n ? a->keys : NULL;
		s->x = set ? a->str1 : NULL;
		if ((st = double_param(uri, "x_min", &s->x_min, &s->has_x_min, err, errlen)) ||
		    (st = double_param(uri, "x_max", &s->x_max, &s->has_x_max, err, errlen)) ||
		    (st = u64_param(uri, "buckets", UI_BUCKETS_MAX, &buckets, &s->has_buckets, err,
		                    errlen)))
			return st;
		if (s->has_x_min && s->has_x_max && s->x_min > s->x_max)
			return bad(err, errlen, "x_min is above x_max");
		s->buckets = (uint32_t)buckets;
		a->q.request_case = TRACKD__V1__QUERY__REQUEST_SERIES;
		a->q.series = s;
		return UI_API_OK;
	}
	if (strcmp(path, "/api/console") == 0) {
		Trackd__V1__ConsoleRequest *c = &a->r.console;
		*c = (Trackd__V1__ConsoleRequest)TRACKD__V1__CONSOLE_REQUEST__INIT;
		if ((st = run_param(uri, a, err, errlen)) ||
		    (st = u64_param(uri, "from", UINT64_MAX, &c->from_line, &c->has_from_line, err,
		                    errlen)) ||
		    (st = u64_param(uri, "max", UI_LINES_MAX, &c->max_lines, &c->has_max_lines, err,
		                    errlen)) ||
		    (st = str_param(uri, "grep", a->str1, UI_GREP_MAX + 1, &set, err, errlen)))
			return st;
		c->run = a->run;
		c->grep = set ? a->str1 : NULL;
		/* 0 means "no limit" to the agent: the UI always bounds its pages. */
		if (!c->has_max_lines || c->max_lines == 0) {
			c->has_max_lines = true;
			c->max_lines = UI_LINES_MAX;
		}
		a->q.request_case = TRACKD__V1__QUERY__REQUEST_CONSOLE;
		a->q.console = c;
		return UI_API_OK;
	}
	if (strcmp(path, "/api/history") == 0) {
		Trackd__V1__HistoryRequest *h = &a->r.history;
		*h = (Trackd__V1__HistoryRequest)TRACKD__V1__HISTORY_REQUEST__INIT;
		size_t n;
		if ((st = run_param(uri, a, err, errlen)) ||
		    (st = keys_param(uri, a, &n, err, errlen)) ||
		    (st = u64_param(uri, "from", UINT64_MAX, &h->from_line, &h->has_from_line, err,
		                    errlen)) ||
		    (st = u64_param(uri, "max", UI_LINES_MAX, &h->max_lines, &h->has_max_lines, err,
		                    errlen)) ||
		    (st = str_param(uri, "stream", a->str1, sizeof a->str1, &set, err, errlen)))
			return st;
		h->run = a->run;
		h->stream =
		    set ? a->str1 : NULL; /* history, events or metadata: the agent checks */
		h->n_keys = n;
		h->keys = n ? a->keys : NULL;
		if (!h->has_max_lines || h->max_lines == 0) {
			h->has_max_lines = true;
			h->max_lines = UI_LINES_MAX;
		}
		a->q.request_case = TRACKD__V1__QUERY__REQUEST_HISTORY;
		a->q.history = h;
		return UI_API_OK;
	}
	if (strcmp(path, "/api/file") == 0) {
		Trackd__V1__RunFileReadRequest *f = &a->r.file;
		*f = (Trackd__V1__RunFileReadRequest)TRACKD__V1__RUN_FILE_READ_REQUEST__INIT;
		if ((st = run_param(uri, a, err, errlen)) ||
		    (st = str_param(uri, "name", a->str1, TRACKD_MAX_FILE_NAME_BYTES + 1, &set, err,
		                    errlen)))
			return st;
		if (!set)
			return bad(err, errlen, "parameter 'name' is required");
		/* The agent refuses such names too; refused here, nothing is asked. */
		if (!files_name_valid(a->str1, strlen(a->str1)))
			return bad(err, errlen,
			           "parameter 'name': not a run file name (relative to the run's "
			           "files/, no '..')");
		f->run = a->run;
		f->name = a->str1;
		f->has_offset = f->has_length = true;
		f->offset = 0;
		f->length = TRACKD_RUN_FILE_READ_MAX;
		snprintf(a->what, sizeof a->what, "file of run %.*s", UI_RUN_MAX - 8, a->run);
		a->q.request_case = TRACKD__V1__QUERY__REQUEST_RUN_FILE_READ;
		a->q.run_file_read = f;
		return UI_API_OK;
	}
	snprintf(err, errlen, "no such endpoint: %s", path);
	return UI_API_NOT_FOUND;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

const char *ui_file_content_type(const char *name)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
	    {".png", "image/png"},  {".jpg", "image/jpeg"},        {".jpeg", "image/jpeg"},
	    {".gif", "image/gif"},  {".json", "application/json"}, {".txt", "text/plain"},
	    {".log", "text/plain"},
	};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (ends_with(name, types[i].ext))
			return types[i].type;
	return "application/octet-stream";
}
