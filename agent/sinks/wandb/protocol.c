#include "protocol.h"

#include "errors.h"
#include "json_write.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The official clients' selection, trimmed to what the sink reads back. */
static const char upsert_query[] =
    "mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, "
    "$groupName: String, $description: String, $displayName: String, $notes: String, "
    "$config: JSONString, $host: String, $jobType: String, $tags: [String!]) { "
    "upsertBucket(input: {id: $id, name: $name, groupName: $groupName, modelName: $project, "
    "entityName: $entity, description: $description, displayName: $displayName, "
    "notes: $notes, config: $config, host: $host, jobType: $jobType, tags: $tags}) { "
    "bucket { id name displayName historyLineCount logLineCount eventsLineCount "
    "project { id name entity { id name } } } inserted } }";

enum wb_verdict wb_classify_status(enum wb_call call, long status)
{
	if (status >= 200 && status < 300)
		return WB_OK;
	switch (status) {
	case 409: return call == WB_CALL_UPSERT ? WB_RETRY : WB_PERMANENT;
	case 400:
	case 401:
	case 403:
	case 404:
	case 410:
	case 413:
	case 422:
	case 501: return WB_PERMANENT;
	default: return WB_RETRY;
	}
}

uint64_t wb_backoff_ms(uint32_t attempt, uint64_t min_ms, uint64_t max_ms, double jitter)
{
	if (min_ms == 0)
		min_ms = 1;
	if (max_ms < min_ms)
		max_ms = min_ms;
	uint64_t b = min_ms;
	for (uint32_t i = 0; i < attempt && b < max_ms; i++)
		b = b > max_ms / 2 ? max_ms : b * 2;
	if (b > max_ms)
		b = max_ms;
	if (!(jitter >= 0)) /* NaN too */
		jitter = 0;
	if (jitter > 1)
		jitter = 1;
	return b + (uint64_t)((double)b * 0.25 * jitter);
}

int wb_parse_retry_after(const char *value, int64_t now_unix_s, uint64_t *delay_ms)
{
	if (!value)
		return TRACKD_EINVAL;
	while (*value == ' ' || *value == '\t')
		value++;
	size_t n = strlen(value);
	while (n && (value[n - 1] == ' ' || value[n - 1] == '\t' || value[n - 1] == '\r' ||
	             value[n - 1] == '\n'))
		n--;
	if (n == 0 || n > 64)
		return TRACKD_EINVAL;
	char v[65];
	memcpy(v, value, n);
	v[n] = '\0';
	if (v[0] >= '0' && v[0] <= '9') {
		/* delta-seconds; a fraction is not in RFC 9110 but costs nothing */
		uint64_t secs = 0, frac_ms = 0, scale = 100;
		const char *p = v;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (secs > UINT64_MAX / 10000)
				return TRACKD_EINVAL;
			secs = secs * 10 + (uint64_t)(*p - '0');
		}
		if (*p == '.') {
			for (p++; *p >= '0' && *p <= '9'; p++) {
				frac_ms += (uint64_t)(*p - '0') * scale;
				scale /= 10;
			}
		}
		if (*p != '\0')
			return TRACKD_EINVAL;
		*delay_ms = secs * 1000 + frac_ms;
		return TRACKD_OK;
	}
	time_t now = (time_t)now_unix_s;
	time_t when = curl_getdate(v, &now);
	if (when == (time_t)-1)
		return TRACKD_EINVAL;
	*delay_ms = (int64_t)when > now_unix_s ? (uint64_t)((int64_t)when - now_unix_s) * 1000 : 0;
	return TRACKD_OK;
}

static int put_cstr(struct buf *out, const char *s)
{
	return json_write_stringn(out, s, strlen(s), JSON_UTF8_REPAIR);
}

/* ---- UpsertBucket ---------------------------------------------------------------- */

static int put_var(struct buf *out, const char *name, const char *value)
{
	if (!value || !*value)
		return TRACKD_OK;
	int rv = buf_printf(out, ",\"%s\":", name);
	return rv ? rv : put_cstr(out, value);
}

int wb_build_upsert(const struct wb_upsert *u, struct buf *out)
{
	struct buf cfg;
	buf_init(&cfg, out->max);
	int rv = buf_putc(&cfg, '{');
	bool first = true;
	for (size_t i = 0; u->config && i < u->config->n && !rv; i++) {
		const struct vnode *n = &u->config->items[i];
		if (strcmp(n->key, "_wandb") == 0)
			continue; /* ours below; a second one would make the JSON ambiguous */
		if (!first)
			rv = buf_putc(&cfg, ',');
		first = false;
		if (!rv)
			rv = json_write_string(&cfg, n->key);
		if (!rv)
			rv = buf_puts(&cfg, ":{\"value\":");
		if (!rv)
			rv = vvalue_to_json(&n->v, &cfg);
		if (!rv)
			rv = buf_putc(&cfg, '}');
	}
	/* `_wandb.t` makes the server treat the run as started (telemetry; "5" is
	 * the client's version). */
	if (!rv)
		rv = buf_printf(&cfg, "%s\"_wandb\":{\"value\":{\"t\":{\"5\":", first ? "" : ",");
	if (!rv)
		rv = put_cstr(&cfg, u->agent_version ? u->agent_version : "trackd");
	if (!rv)
		rv = buf_puts(&cfg, "}}}}");

	if (!rv)
		rv = buf_puts(out, "{\"operationName\":\"UpsertBucket\",\"query\":");
	if (!rv)
		rv = put_cstr(out, upsert_query);
	if (!rv)
		rv = buf_puts(out, ",\"variables\":{\"name\":");
	if (!rv)
		rv = put_cstr(out, u->name);
	if (!rv)
		rv = buf_puts(out, ",\"project\":");
	if (!rv)
		rv = put_cstr(out, u->project && *u->project ? u->project : "uncategorized");
	if (!rv)
		rv = put_var(out, "entity", u->entity);
	if (!rv)
		rv = put_var(out, "displayName", u->display_name);
	if (!rv && ((u->notes && *u->notes) || u->clear_notes))
		rv = buf_puts(out, ",\"notes\":");
	if (!rv && ((u->notes && *u->notes) || u->clear_notes))
		rv = put_cstr(out, u->notes ? u->notes : "");
	if (!rv)
		rv = put_var(out, "groupName", u->group);
	if (!rv)
		rv = put_var(out, "jobType", u->job_type);
	if (!rv)
		rv = put_var(out, "host", u->host);
	if (!rv && (u->n_tags || u->clear_tags)) {
		rv = buf_puts(out, ",\"tags\":[");
		for (size_t i = 0; i < u->n_tags && !rv; i++) {
			if (i)
				rv = buf_putc(out, ',');
			if (!rv)
				rv = put_cstr(out, u->tags[i] ? u->tags[i] : "");
		}
		if (!rv)
			rv = buf_putc(out, ']');
	}
	if (!rv)
		rv = buf_puts(out, ",\"config\":");
	if (!rv)
		rv = json_write_stringn(out, cfg.data, cfg.len, JSON_UTF8_REPAIR);
	if (!rv)
		rv = buf_puts(out, "}}");
	buf_fini(&cfg);
	return rv;
}

int wb_json_parse(const char *body, size_t len, struct json_object **out, char *err, size_t errlen)
{
	*out = NULL;
	if (len > INT_MAX) {
		snprintf(err, errlen, "the answer is larger than %d bytes", INT_MAX);
		return TRACKD_ETOOBIG;
	}
	struct json_tokener *tok = json_tokener_new_ex(WB_JSON_MAX_DEPTH);
	if (!tok) {
		snprintf(err, errlen, "out of memory");
		return TRACKD_ENOMEM;
	}
	/* Strict: nothing after the value, no trailing commas. UTF-8 is checked
	 * because these strings go on into logs and state files. */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	struct json_object *obj = json_tokener_parse_ex(tok, body ? body : "", (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t at = json_tokener_get_parse_end(tok);
	/* json-c parses incrementally: a value that could still go on ("12", a
	 * cut body) waits for more. A NUL says the text ends here. */
	if (jerr == json_tokener_continue) {
		obj = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		at = len;
	}
	int rv = TRACKD_OK;
	if (jerr == json_tokener_error_depth) {
		snprintf(err, errlen, "the answer nests deeper than %d levels", WB_JSON_MAX_DEPTH);
		rv = TRACKD_ETOOBIG;
	} else if (jerr != json_tokener_success) {
		snprintf(err, errlen, "the answer is not JSON: %s at byte %zu",
		         json_tokener_error_desc(jerr), at);
		rv = TRACKD_EINVAL;
	} else if (at < len) {
		snprintf(err, errlen, "the answer is not JSON: text after the value at byte %zu",
		         at);
		rv = TRACKD_EINVAL;
	}
	json_tokener_free(tok);
	if (rv) {
		json_object_put(obj);
		return rv;
	}
	*out = obj;
	return TRACKD_OK;
}

/* s[0, n) into out, cut at a NUL or on a character boundary to fit cap. */
static void copy_utf8(char *out, size_t cap, const char *s, size_t n)
{
	const char *nul = memchr(s, '\0', n);
	if (nul)
		n = (size_t)(nul - s);
	if (n >= cap) {
		n = cap - 1;
		/* Back to the first byte of the character that does not fit. */
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(out, s, n);
	out[n] = '\0';
}

/* The string at JSON pointer `path` into out; absent or null leaves "". */
static int read_string(struct json_object *root, const char *path, char *out, size_t cap, char *err,
                       size_t errlen)
{
	struct json_object *v = NULL;
	out[0] = '\0';
	if (json_pointer_get(root, path, &v) != 0 || !v)
		return TRACKD_OK;
	if (!json_object_is_type(v, json_type_string)) {
		snprintf(err, errlen, "%s: expected a string, not %s", path,
		         json_type_to_name(json_object_get_type(v)));
		return TRACKD_EINVAL;
	}
	copy_utf8(out, cap, json_object_get_string(v), (size_t)json_object_get_string_len(v));
	return TRACKD_OK;
}

/* The count at `path`; absent or null (GraphQL's "unknown") leaves *has false. */
static int read_count(struct json_object *root, const char *path, bool *has, uint64_t *out,
                      char *err, size_t errlen)
{
	struct json_object *v = NULL;
	*has = false;
	if (json_pointer_get(root, path, &v) != 0 || !v)
		return TRACKD_OK;
	if (!json_object_is_type(v, json_type_int)) {
		snprintf(err, errlen, "%s: expected a non-negative integer, not %s", path,
		         json_type_to_name(json_object_get_type(v)));
		return TRACKD_EINVAL;
	}
	if (json_object_get_int64(v) < 0) {
		snprintf(err, errlen, "%s: expected a non-negative integer, not %" PRId64, path,
		         json_object_get_int64(v));
		return TRACKD_EINVAL;
	}
	*has = true;
	*out = json_object_get_uint64(v);
	return TRACKD_OK;
}

#define BUCKET "/data/upsertBucket/bucket"

enum wb_verdict wb_parse_upsert_response(const char *body, size_t len, struct wb_upsert_result *out)
{
	memset(out, 0, sizeof *out);
	char *err = out->error;
	size_t errlen = sizeof out->error;
	struct json_object *root, *v;
	if (wb_json_parse(body, len, &root, err, errlen) != 0)
		return WB_RETRY;
	enum wb_verdict verdict = WB_RETRY;
	if (json_pointer_get(root, BUCKET, &v) == 0 && json_object_is_type(v, json_type_object)) {
		int rv = read_string(root, BUCKET "/project/entity/name", out->entity,
		                     sizeof out->entity, err, errlen);
		if (!rv)
			rv = read_string(root, BUCKET "/project/name", out->project,
			                 sizeof out->project, err, errlen);
		if (!rv)
			rv = read_string(root, BUCKET "/displayName", out->display_name,
			                 sizeof out->display_name, err, errlen);
		if (!rv)
			rv = read_count(root, BUCKET "/historyLineCount",
			                &out->has_history_line_count, &out->history_line_count, err,
			                errlen);
		if (!rv)
			rv = read_count(root, BUCKET "/logLineCount", &out->has_log_line_count,
			                &out->log_line_count, err, errlen);
		if (!rv)
			rv =
			    read_count(root, BUCKET "/eventsLineCount", &out->has_events_line_count,
			               &out->events_line_count, err, errlen);
		verdict = rv ? WB_RETRY : WB_OK;
	} else if (json_pointer_get(root, "/errors", &v) == 0 &&
	           json_object_is_type(v, json_type_array)) {
		if (read_string(root, "/errors/0/message", out->error, sizeof out->error, err,
		                errlen) != 0 ||
		    !out->error[0])
			snprintf(out->error, sizeof out->error, "GraphQL error without a message");
		verdict = WB_PERMANENT;
	} else {
		snprintf(out->error, sizeof out->error, "the answer carries no bucket");
	}
	json_object_put(root);
	return verdict;
}

/* ---- file_stream ------------------------------------------------------------------- */

/* Room kept for everything around the lines: the envelope, three file headers, the
 * summary header and the complete/exitcode tail. Counted generously, so the
 * body can be built in one pass. */
#define STREAM_RESERVE 416

struct pick {
	size_t lines, bytes, skipped, sent_bytes; /* sent_bytes: escaped, commas included */
	size_t sent;
	bool stopped; /* ran out of room */
};

/* Chooses lines from the front of `l` that fit in `room` bytes. */
static void pick_lines(const struct wb_lines *l, const struct wb_stream_in *in, size_t alone,
                       size_t *room, struct pick *pk, size_t *largest_skipped)
{
	memset(pk, 0, sizeof *pk);
	const char *p = l->data, *end = l->data + l->len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		size_t consumed = n + (nl ? 1 : 0);
		size_t e =
		    n > in->max_line ? SIZE_MAX : json_string_len(p, n, JSON_UTF8_REPAIR) + 1;
		if (e == SIZE_MAX || e > alone) {
			pk->skipped++;
			if (n > *largest_skipped)
				*largest_skipped = n;
		} else if (e > *room) {
			pk->stopped = true;
			return;
		} else {
			*room -= e;
			pk->sent_bytes += e;
			pk->sent++;
		}
		pk->lines++;
		pk->bytes += consumed;
		p += consumed;
	}
}

static int emit_lines(struct buf *out, const char *file, const struct wb_lines *l,
                      const struct pick *pk, const struct wb_stream_in *in, size_t alone,
                      bool *first_file)
{
	if (pk->sent == 0)
		return TRACKD_OK;
	int rv = buf_printf(out, "%s\"%s\":{\"offset\":%" PRIu64 ",\"content\":[",
	                    *first_file ? "" : ",", file, l->offset);
	*first_file = false;
	const char *p = l->data;
	size_t done = 0;
	bool first = true;
	for (size_t i = 0; i < pk->lines && !rv; i++) {
		const char *nl = memchr(p, '\n', l->len - done);
		size_t n = nl ? (size_t)(nl - p) : l->len - done;
		size_t consumed = n + (nl ? 1 : 0);
		/* The same rule as pick_lines, so exactly the picked lines go out. */
		bool skip = n > in->max_line || json_string_len(p, n, JSON_UTF8_REPAIR) + 1 > alone;
		if (!skip) {
			if (!first)
				rv = buf_putc(out, ',');
			first = false;
			if (!rv)
				rv = json_write_stringn(out, p, n, JSON_UTF8_REPAIR);
		}
		p += consumed;
		done += consumed;
	}
	return rv ? rv : buf_puts(out, "]}");
}

int wb_build_file_stream(const struct wb_stream_in *in, struct buf *out, struct wb_stream_out *res)
{
	memset(res, 0, sizeof *res);
	size_t avail = in->max_body > STREAM_RESERVE ? in->max_body - STREAM_RESERVE : 0;
	size_t room = avail;
	struct pick con, his, evt;
	pick_lines(&in->console, in, avail, &room, &con, &res->largest_skipped);
	if (con.stopped) {
		memset(&his, 0, sizeof his);
		his.stopped = in->history.len > 0;
	} else {
		pick_lines(&in->history, in, avail, &room, &his, &res->largest_skipped);
	}
	/* After the rows: a request cut short leaves the samples for the next. */
	if (con.stopped || his.stopped) {
		memset(&evt, 0, sizeof evt);
		evt.stopped = in->events.len > 0;
	} else {
		pick_lines(&in->events, in, avail, &room, &evt, &res->largest_skipped);
	}

	bool summary = false;
	size_t summary_len = 0;
	if (in->summary) {
		summary_len = json_string_len(in->summary, in->summary_len, JSON_UTF8_REPAIR);
		if (summary_len > avail)
			res->summary_skipped = true;
		else if (summary_len <= room)
			summary = true;
	}
	/* `,"uploaded":[` + names + `]`: the envelope reserve does not cover it. */
	bool uploaded = false;
	if (in->n_uploaded) {
		size_t need = sizeof ",\"uploaded\":[]" - 1 - 1; /* n names, n - 1 commas */
		for (size_t i = 0; i < in->n_uploaded; i++) {
			const char *u = in->uploaded[i] ? in->uploaded[i] : "";
			need += json_string_len(u, strlen(u), JSON_UTF8_REPAIR) + 1;
		}
		if (need > avail)
			return TRACKD_ETOOBIG;
		if (need <= room - (summary ? summary_len : 0)) {
			uploaded = true;
			room -= need;
		}
	}
	res->all = !con.stopped && !his.stopped && !evt.stopped &&
	           (!in->summary || summary || res->summary_skipped) &&
	           (!in->n_uploaded || uploaded);
	bool complete = in->complete && res->all;

	size_t start = out->len;
	int rv = TRACKD_OK;
	bool any_file = con.sent || his.sent || evt.sent || summary;
	if (!any_file && !complete && !uploaded) {
		rv = buf_puts(out, "{}");
		res->empty = true;
	} else {
		rv = buf_putc(out, '{');
		if (!rv && any_file) {
			bool first_file = true;
			rv = buf_puts(out, "\"files\":{");
			if (!rv)
				rv = emit_lines(out, WB_HISTORY_FILE, &in->history, &his, in, avail,
				                &first_file);
			if (!rv)
				rv = emit_lines(out, WB_CONSOLE_FILE, &in->console, &con, in, avail,
				                &first_file);
			if (!rv)
				rv = emit_lines(out, WB_EVENTS_FILE, &in->events, &evt, in, avail,
				                &first_file);
			if (!rv && summary) {
				rv = buf_printf(
				    out, "%s\"" WB_SUMMARY_FILE "\":{\"offset\":0,\"content\":[",
				    first_file ? "" : ",");
				if (!rv)
					rv = json_write_stringn(out, in->summary, in->summary_len,
					                        JSON_UTF8_REPAIR);
				if (!rv)
					rv = buf_puts(out, "]}");
			}
			if (!rv)
				rv = buf_putc(out, '}');
		}
		if (!rv && uploaded) {
			rv = buf_puts(out, any_file ? ",\"uploaded\":[" : "\"uploaded\":[");
			for (size_t i = 0; i < in->n_uploaded && !rv; i++) {
				if (i)
					rv = buf_putc(out, ',');
				if (!rv)
					rv = put_cstr(out, in->uploaded[i] ? in->uploaded[i] : "");
			}
			if (!rv)
				rv = buf_putc(out, ']');
		}
		if (!rv && complete)
			rv = buf_printf(out, "%s\"complete\":true,\"exitcode\":%" PRId32,
			                any_file || uploaded ? "," : "", in->exitcode);
		if (!rv)
			rv = buf_putc(out, '}');
	}
	if (rv) {
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
		return rv;
	}
	res->history_lines = his.lines;
	res->history_bytes = his.bytes;
	res->history_skipped = his.skipped;
	res->console_lines = con.lines;
	res->console_bytes = con.bytes;
	res->console_skipped = con.skipped;
	res->events_lines = evt.lines;
	res->events_bytes = evt.bytes;
	res->events_skipped = evt.skipped;
	res->summary_sent = summary;
	res->complete_sent = complete;
	res->uploaded_sent = uploaded;
	return TRACKD_OK;
}

bool wb_stream_response_stopped(const char *body, size_t len)
{
	struct json_object *root, *v;
	char err[160];
	if (wb_json_parse(body, len, &root, err, sizeof err) != 0)
		return false;
	bool stopped = json_object_object_get_ex(root, "stopped", &v) &&
	               json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
	json_object_put(root);
	return stopped;
}

/* ---- run files ---------------------------------------------------------------------- */

/* W&B's mutation (core/api/graphql/mutation_create_run_files.graphql). */
static const char create_run_files_query[] =
    "mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, "
    "$files: [String!]!) { createRunFiles(input: {entityName: $entity, projectName: $project, "
    "runName: $run, files: $files}) { runID uploadHeaders files { name uploadUrl } } }";

int wb_build_create_run_files(const char *entity, const char *project, const char *run,
                              const char *const *names, size_t n, struct buf *out)
{
	if (n == 0 || n > WB_RUN_FILES_BATCH || !entity || !*entity || !project || !*project ||
	    !run || !*run)
		return TRACKD_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!names[i] || !*names[i] || strlen(names[i]) >= WB_RUN_FILE_NAME_MAX)
			return TRACKD_EINVAL;
	size_t start = out->len;
	int rv = buf_puts(out, "{\"operationName\":\"CreateRunFiles\",\"query\":");
	if (!rv)
		rv = put_cstr(out, create_run_files_query);
	if (!rv)
		rv = buf_puts(out, ",\"variables\":{\"entity\":");
	if (!rv)
		rv = put_cstr(out, entity);
	if (!rv)
		rv = buf_puts(out, ",\"project\":");
	if (!rv)
		rv = put_cstr(out, project);
	if (!rv)
		rv = buf_puts(out, ",\"run\":");
	if (!rv)
		rv = put_cstr(out, run);
	if (!rv)
		rv = buf_puts(out, ",\"files\":[");
	for (size_t i = 0; i < n && !rv; i++) {
		if (i)
			rv = buf_putc(out, ',');
		if (!rv)
			rv = put_cstr(out, names[i]);
	}
	if (!rv)
		rv = buf_puts(out, "]}}");
	if (rv) {
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
	}
	return rv;
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Headers the PUT frames itself: one from the answer would contradict the body. */
static bool is_framing_header(const char *name, size_t n)
{
	static const char *const names[] = {"Content-Length", "Transfer-Encoding", "Host",
	                                    "Expect"};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		if (strlen(names[i]) == n && strncasecmp(names[i], name, n) == 0)
			return true;
	return false;
}

int wb_upload_header_line(const char *entry, size_t len, char *out, size_t cap)
{
	const char *colon = memchr(entry, ':', len);
	if (!colon || colon == entry)
		return TRACKD_EINVAL;
	size_t name_len = (size_t)(colon - entry);
	for (size_t i = 0; i < name_len; i++)
		if (!is_tchar((unsigned char)entry[i]))
			return TRACKD_EINVAL;
	if (is_framing_header(entry, name_len))
		return TRACKD_EINVAL;
	const char *v = colon + 1, *end = entry + len;
	for (const char *p = v; p < end; p++) {
		unsigned char c = (unsigned char)*p;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return TRACKD_EINVAL;
	}
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t vlen = (size_t)(end - v);
	/* "Name: Value" or "Name;" */
	size_t need = name_len + (vlen ? 2 + vlen : 1) + 1;
	if (need > cap)
		return TRACKD_ETOOBIG;
	memcpy(out, entry, name_len);
	if (vlen) {
		memcpy(out + name_len, ": ", 2);
		memcpy(out + name_len + 2, v, vlen);
		out[name_len + 2 + vlen] = '\0';
	} else {
		out[name_len] = ';';
		out[name_len + 1] = '\0';
	}
	return TRACKD_OK;
}

#define CRF "/data/createRunFiles"

/* The answer's uploadHeaders into out (null or absent: none). */
static enum wb_verdict read_upload_headers(struct json_object *root,
                                           struct wb_run_files_result *out)
{
	struct json_object *hs = NULL;
	if (json_pointer_get(root, CRF "/uploadHeaders", &hs) != 0 || !hs)
		return WB_OK;
	if (!json_object_is_type(hs, json_type_array)) {
		snprintf(out->error, sizeof out->error, "uploadHeaders: expected a list, not %s",
		         json_type_to_name(json_object_get_type(hs)));
		return WB_RETRY;
	}
	size_t n = json_object_array_length(hs);
	for (size_t i = 0; i < n; i++) {
		struct json_object *h = json_object_array_get_idx(hs, i);
		if (!json_object_is_type(h, json_type_string)) {
			snprintf(out->error, sizeof out->error,
			         "uploadHeaders/%zu: expected a string, not %s", i,
			         json_type_to_name(json_object_get_type(h)));
			return WB_RETRY;
		}
		const char *s = json_object_get_string(h);
		size_t len = (size_t)json_object_get_string_len(h);
		if (!memchr(s, ':', len)) {
			out->headers_skipped++; /* as W&B: logged and left out */
			continue;
		}
		if (len >= WB_UPLOAD_HEADER_MAX) {
			snprintf(out->error, sizeof out->error,
			         "uploadHeaders/%zu: %zu bytes, more than %d", i, len,
			         WB_UPLOAD_HEADER_MAX - 1);
			return WB_RETRY;
		}
		char line[WB_UPLOAD_HEADER_MAX + 2];
		if (wb_upload_header_line(s, len, line, sizeof line) != 0) {
			snprintf(out->error, sizeof out->error,
			         "uploadHeaders/%zu: refused (control byte, bad name, or a header "
			         "the upload sets itself)",
			         i);
			return WB_PERMANENT;
		}
		if (out->n_headers == WB_UPLOAD_HEADERS) {
			snprintf(out->error, sizeof out->error, "uploadHeaders: more than %d",
			         WB_UPLOAD_HEADERS);
			return WB_RETRY;
		}
		memcpy(out->headers[out->n_headers], s, len);
		out->headers[out->n_headers][len] = '\0';
		out->n_headers++;
	}
	return WB_OK;
}

/* The answer's files, matched to the requested names. */
static enum wb_verdict read_run_files(struct json_object *files, const char *const *names, size_t n,
                                      struct wb_run_files_result *out)
{
	bool seen[WB_RUN_FILES_BATCH] = {false};
	size_t m = json_object_array_length(files);
	if (m != n) {
		snprintf(out->error, sizeof out->error, "asked for %zu files, the answer names %zu",
		         n, m);
		return WB_RETRY;
	}
	for (size_t i = 0; i < m; i++) {
		struct json_object *f = json_object_array_get_idx(files, i), *name, *url;
		if (!json_object_is_type(f, json_type_object) ||
		    !json_object_object_get_ex(f, "name", &name) ||
		    !json_object_is_type(name, json_type_string)) {
			snprintf(out->error, sizeof out->error, "files/%zu: no name", i);
			return WB_RETRY;
		}
		const char *s = json_object_get_string(name);
		size_t len = (size_t)json_object_get_string_len(name);
		size_t k = 0;
		while (k < n &&
		       (seen[k] || strlen(names[k]) != len || memcmp(names[k], s, len) != 0))
			k++;
		if (k == n) {
			snprintf(out->error, sizeof out->error,
			         "files/%zu: a name not asked for, or twice", i);
			return WB_RETRY;
		}
		seen[k] = true;
		if (!json_object_object_get_ex(f, "uploadUrl", &url) || !url)
			continue; /* null: W&B skips the file with a warning */
		if (!json_object_is_type(url, json_type_string)) {
			snprintf(out->error, sizeof out->error,
			         "files/%zu/uploadUrl: expected a string, not %s", i,
			         json_type_to_name(json_object_get_type(url)));
			return WB_RETRY;
		}
		const char *u = json_object_get_string(url);
		size_t ulen = (size_t)json_object_get_string_len(url);
		if (ulen == 0)
			continue; /* W&B: "empty UploadUrl", as null */
		if (ulen >= WB_UPLOAD_URL_MAX || memchr(u, '\0', ulen)) {
			snprintf(out->error, sizeof out->error,
			         "files/%zu/uploadUrl: longer than %d bytes or holds NUL", i,
			         WB_UPLOAD_URL_MAX - 1);
			return WB_RETRY;
		}
		memcpy(out->files[k].upload_url, u, ulen);
		out->files[k].upload_url[ulen] = '\0';
		out->files[k].has_url = true;
	}
	out->n_files = n;
	return WB_OK;
}

enum wb_verdict wb_parse_create_run_files(const char *body, size_t len, const char *const *names,
                                          size_t n, struct wb_run_files_result *out)
{
	memset(out, 0, sizeof *out);
	if (n == 0 || n > WB_RUN_FILES_BATCH) {
		snprintf(out->error, sizeof out->error, "a batch is 1 to %d files",
		         WB_RUN_FILES_BATCH);
		return WB_PERMANENT;
	}
	struct json_object *root, *files = NULL, *errs;
	if (wb_json_parse(body, len, &root, out->error, sizeof out->error) != 0)
		return WB_RETRY;
	enum wb_verdict verdict = WB_RETRY;
	if (json_pointer_get(root, CRF "/files", &files) == 0 &&
	    json_object_is_type(files, json_type_array)) {
		verdict = read_upload_headers(root, out);
		if (verdict == WB_OK)
			verdict = read_run_files(files, names, n, out);
	} else if (json_pointer_get(root, "/errors", &errs) == 0 &&
	           json_object_is_type(errs, json_type_array)) {
		if (read_string(root, "/errors/0/message", out->error, sizeof out->error,
		                out->error, sizeof out->error) != 0 ||
		    !out->error[0])
			snprintf(out->error, sizeof out->error, "GraphQL error without a message");
		verdict = WB_PERMANENT;
	} else {
		snprintf(out->error, sizeof out->error,
		         "the answer carries no createRunFiles.files");
	}
	json_object_put(root);
	if (verdict != WB_OK) {
		/* Never half a result: the caller uses nothing of a refused answer. */
		char why[sizeof out->error];
		memcpy(why, out->error, sizeof why);
		memset(out, 0, sizeof *out);
		memcpy(out->error, why, sizeof why);
	}
	return verdict;
}

int wb_put_headers(const struct wb_run_files_result *r, uint64_t size, struct wb_put_headers *out)
{
	out->n = 0;
	for (size_t i = 0; i < r->n_headers && i < WB_UPLOAD_HEADERS; i++) {
		const char *h = r->headers[i];
		size_t len = strnlen(h, WB_UPLOAD_HEADER_MAX);
		int rv = wb_upload_header_line(h, len, out->lines[out->n], sizeof out->lines[0]);
		if (rv)
			return rv;
		out->n++;
	}
	snprintf(out->lines[out->n++], sizeof out->lines[0], "Content-Length: %" PRIu64, size);
	snprintf(out->lines[out->n++], sizeof out->lines[0], "Expect:");
	return TRACKD_OK;
}

enum wb_put_verdict wb_classify_put(long status)
{
	if (status >= 200 && status < 300)
		return WB_PUT_OK;
	if (status == 403)
		return WB_PUT_RENEW_URL;
	/* W&B (retryablehttp): no answer, 429 and 5xx but 501; 408 is a timeout,
	 * which this sink retries everywhere. */
	if (status == 0 || status == 408 || status == 429 || (status >= 500 && status != 501))
		return WB_PUT_RETRY;
	return WB_PUT_PERMANENT;
}

int wb_build_config_yaml(const struct vmap *config, const char *agent_version, struct buf *out)
{
	/* A shallow view: the config's own nodes, minus its `_wandb`, plus ours. */
	size_t n = config ? config->n : 0;
	struct vnode *items = malloc((n + 1) * sizeof *items);
	if (!items)
		return TRACKD_ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(config->items[i].key, "_wandb") != 0)
			items[k++] = config->items[i];
	struct vnode version = {
	    .key = "5",
	    .v = {.kind = V_STRING, .u.s = (char *)(agent_version ? agent_version : "trackd")}};
	struct vmap version_map = {.items = &version, .n = 1, .cap = 1};
	struct vnode t = {.key = "t", .v = {.kind = V_MAP, .u.m = &version_map}};
	struct vmap t_map = {.items = &t, .n = 1, .cap = 1};
	items[k++] = (struct vnode){.key = "_wandb", .v = {.kind = V_MAP, .u.m = &t_map}};
	struct vmap view = {.items = items, .n = k, .cap = k};
	size_t start = out->len;
	int rv = vmap_to_config_yaml(&view, out);
	if (rv) {
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
	}
	free(items);
	return rv;
}
