/* render.c — see render.h. */
#include "render.h"

#include "errors.h"
#include "hash.h"
#include "json_write.h"
#include "trackd/v1/pb_json.h"
#include "utf8.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- terminal text --------------------------------------------------------- */

/* Width of s in a column of at most `cap` code points ("..." included). */
static size_t cell_width(const char *s, size_t cap)
{
	size_t n = utf8_count(s);
	return n <= cap ? n : cap;
}

/* Prints s with control characters as '?'; when longer than `cap` code points,
 * the first cap-3 and "...". Returns the width printed. */
static size_t put_safe(FILE *out, const char *s, size_t cap)
{
	size_t total = utf8_count(s);
	size_t keep = total <= cap ? total : (cap >= 3 ? cap - 3 : cap);
	size_t cp = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		bool lead = (*p & 0xC0) != 0x80;
		if (lead && cp == keep)
			break;
		cp += lead;
		putc(*p < 0x20 || *p == 0x7f ? '?' : *p, out);
	}
	if (total > cap && cap >= 3) {
		fputs("...", out);
		return cap;
	}
	return keep;
}

static void pad(FILE *out, size_t n)
{
	while (n--)
		putc(' ', out);
}

/* A string field of a typed message: unset is "". */
static const char *str(const char *s)
{
	return s ? s : "";
}

/* A count as the runs table and `show` print it: an unset one, or one past
 * int64 (as the JSON the commands used to read held them), is not shown. */
static bool count_of(protobuf_c_boolean has, uint64_t v)
{
	return has && v <= (uint64_t)INT64_MAX;
}

/* ---- times ----------------------------------------------------------------- */

void render_time(double t, char *buf, size_t cap)
{
	if (!isfinite(t) || t < 0 || t > 253402300799.0) { /* year 9999 */
		snprintf(buf, cap, "-");
		return;
	}
	time_t secs = (time_t)t;
	struct tm tm;
	if (!localtime_r(&secs, &tm) || strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(buf, cap, "-");
}

void render_duration(double seconds, char *buf, size_t cap)
{
	if (!isfinite(seconds) || seconds < 0)
		seconds = 0;
	uint64_t s = (uint64_t)seconds;
	if (s < 60)
		snprintf(buf, cap, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(buf, cap, "%" PRIu64 "m %02" PRIu64 "s", s / 60, s % 60);
	else
		snprintf(buf, cap, "%" PRIu64 "h %02" PRIu64 "m %02" PRIu64 "s", s / 3600,
		         s / 60 % 60, s % 60);
}

/* ---- runs table ------------------------------------------------------------ */

/* "entity/project", or "project" without an entity. */
static void project_label(const Trackd__V1__RunInfo *run, char *buf, size_t cap)
{
	const char *entity = str(run->entity);
	const char *project = str(run->project);
	if (*entity)
		snprintf(buf, cap, "%s/%s", entity, project);
	else
		snprintf(buf, cap, "%s", project);
}

enum { COL_ID, COL_NAME, COL_PROJECT, COL_STATE, COL_STARTED, COL_ROWS, N_COLS };

void render_runs_table(FILE *out, const Trackd__V1__RunsReply *reply)
{
	static const char *const heads[N_COLS] = {"ID",    "NAME",    "PROJECT",
	                                          "STATE", "STARTED", "ROWS"};
	static const size_t caps[N_COLS] = {64, RENDER_NAME_WIDTH, RENDER_PROJECT_WIDTH, 16, 19,
	                                    20};
	if (!reply || reply->n_runs == 0) {
		fputs("No runs.\n", out);
		return;
	}
	size_t width[N_COLS];
	for (int c = 0; c < N_COLS; c++)
		width[c] = strlen(heads[c]);
	/* Two passes over the same cells: measure, then print. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			for (int c = 0; c < N_COLS; c++) {
				if (c == COL_ROWS) {
					pad(out, width[c] - strlen(heads[c]));
					fputs(heads[c], out);
				} else {
					fputs(heads[c], out);
					pad(out, width[c] - strlen(heads[c]) + 2);
				}
			}
			putc('\n', out);
		}
		for (size_t i = 0; i < reply->n_runs; i++) {
			const Trackd__V1__RunInfo *run = reply->runs[i];
			char project[512], started[32], rows[32];
			project_label(run, project, sizeof project);
			if (run->has_start_time)
				render_time(run->start_time, started, sizeof started);
			else
				snprintf(started, sizeof started, "-");
			if (count_of(run->has_history_lines, run->history_lines))
				snprintf(rows, sizeof rows, "%" PRIu64, run->history_lines);
			else
				snprintf(rows, sizeof rows, "-");
			const char *cells[N_COLS] = {str(run->id), str(run->display_name),
			                             project,      str(run->state),
			                             started,      rows};
			for (int c = 0; c < N_COLS; c++) {
				if (pass == 0) {
					size_t w = cell_width(cells[c], caps[c]);
					width[c] = w > width[c] ? w : width[c];
				} else if (c == COL_ROWS) {
					pad(out, width[c] - cell_width(cells[c], caps[c]));
					put_safe(out, cells[c], caps[c]);
				} else {
					size_t w = put_safe(out, cells[c], caps[c]);
					pad(out, width[c] - w + 2);
				}
			}
			if (pass == 1)
				putc('\n', out);
		}
	}
}

/* ---- history rows ------------------------------------------------------------ */

int render_row_parse(struct json_tokener *tok, const void *text, size_t len, json_object **out)
{
	*out = NULL;
	if (len == 0)
		return 0;
	if (len > INT32_MAX)
		return TRACKD_ECORRUPT;
	/* Strict: no trailing commas, nothing but whitespace after the value
	 * (json-c reads NaN and ±Infinity either way). */
	json_tokener_reset(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	json_object *v = json_tokener_parse_ex(tok, text, (int)len);
	enum json_tokener_error e = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	if (e == json_tokener_continue) {
		/* A bare number, true or null is only known to be complete at a
		 * delimiter: give it one. */
		v = json_tokener_parse_ex(tok, " ", 1);
		e = json_tokener_get_error(tok);
		end = len;
	}
	for (const char *p = (const char *)text + end; e == json_tokener_success && end < len;
	     p++, end++)
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			e = json_tokener_error_parse_unexpected;
	if (e != json_tokener_success) {
		json_object_put(v);
		return TRACKD_ECORRUPT;
	}
	*out = v;
	return 0;
}

/* An integer that fits int64 (json-c reads larger ones as uint64, and would
 * give INT64_MAX for them). */
static bool int_of(json_object *v, int64_t *out)
{
	if (!json_object_is_type(v, json_type_int))
		return false;
	*out = json_object_get_int64(v);
	return *out != INT64_MAX || json_object_get_uint64(v) == (uint64_t)INT64_MAX;
}

int render_feed_row(footer_series *s, json_object *row, uint64_t line)
{
	if (!json_object_is_type(row, json_type_object))
		return 0;
	json_object *sv;
	int64_t step;
	if (!json_object_object_get_ex(row, "_step", &sv) || !int_of(sv, &step))
		step = (int64_t)line;
	json_object_object_foreach(row, key, value)
	{
		json_type t = json_object_get_type(value);
		if (key[0] == '_' || key[0] == '\0' ||
		    (t != json_type_int && t != json_type_double))
			continue;
		if (footer_series_add(s, key, step, json_object_get_double(value)) == FOOTER_ENOMEM)
			return TRACKD_ENOMEM;
	}
	return 0;
}

uint64_t render_footer_seed(const char *run_path)
{
	return run_path ? hash_fnv1a64_str(run_path) : HASH_FNV64_OFFSET;
}

/* ---- show ------------------------------------------------------------------ */

/* A labelled line; an empty value leaves the line out. */
static void field_line(FILE *out, const char *label, const char *value)
{
	if (!*value)
		return;
	fprintf(out, "  %-10s ", label);
	put_safe(out, value, SIZE_MAX);
	putc('\n', out);
}

static void state_label(const Trackd__V1__RunInfo *run, char *buf, size_t cap)
{
	const char *state = str(run->state);
	if (run->has_exit_code && (strcmp(state, "finished") == 0 || strcmp(state, "failed") == 0))
		snprintf(buf, cap, "%s (exit code %d)", state, (int)run->exit_code);
	else
		snprintf(buf, cap, "%s", *state ? state : "-");
}

/* "a, b, c" of the run's pids, or of its tags (pids NULL). */
static void join_list(const int32_t *pids, char *const *tags, size_t n, char *buf, size_t cap)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && used < cap; i++) {
		int k = pids
		            ? snprintf(buf + used, cap - used, "%s%d", i ? ", " : "", (int)pids[i])
		            : snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", str(tags[i]));
		if (k < 0)
			break;
		used += (size_t)k;
	}
}

static void show_identity(FILE *out, const Trackd__V1__RunInfo *run, double now)
{
	char buf[4096], t1[32], t2[32], dur[48];
	const char *id = str(run->id);
	const char *name = str(run->display_name);
	fputs("Run ", out);
	put_safe(out, id, SIZE_MAX);
	if (*name) {
		fputs(" (", out);
		put_safe(out, name, SIZE_MAX);
		putc(')', out);
	}
	putc('\n', out);
	field_line(out, "path:", str(run->path));
	state_label(run, buf, sizeof buf);
	field_line(out, "state:", buf);

	double start = run->start_time, end = run->end_time;
	bool has_start = run->has_start_time, has_end = run->has_end_time;
	if (has_start) {
		render_time(start, t1, sizeof t1);
		if (!has_end && strcmp(str(run->state), "running") == 0) {
			render_duration(now - start, dur, sizeof dur);
			snprintf(buf, sizeof buf, "%s (running for %s)", t1, dur);
		} else {
			snprintf(buf, sizeof buf, "%s", t1);
		}
		field_line(out, "started:", buf);
	}
	if (has_end) {
		render_time(end, t2, sizeof t2);
		if (has_start) {
			render_duration(end - start, dur, sizeof dur);
			snprintf(buf, sizeof buf, "%s (ran %s)", t2, dur);
		} else {
			snprintf(buf, sizeof buf, "%s", t2);
		}
		field_line(out, "ended:", buf);
	}

	char pids[1024];
	join_list(run->pids, NULL, run->n_pids, pids, sizeof pids);
	const char *host = str(run->host);
	int n = snprintf(buf, sizeof buf, "%s", host);
	if (*pids)
		n += snprintf(buf + n, sizeof buf - (size_t)n, "%s(pid%s %s)", *host ? " " : "",
		              strchr(pids, ',') ? "s" : "", pids);
	if (run->has_uid)
		snprintf(buf + n, sizeof buf - (size_t)n, "%suid %u", n ? ", " : "",
		         (unsigned)run->uid);
	field_line(out, "host:", buf);
	field_line(out, "mode:", str(run->mode));

	field_line(out, "group:", str(run->group));
	field_line(out, "job type:", str(run->job_type));
	field_line(out, "notes:", str(run->notes));
	join_list(NULL, run->tags, run->n_tags, buf, sizeof buf);
	field_line(out, "tags:", buf);
	if (count_of(run->has_history_lines, run->history_lines)) {
		snprintf(buf, sizeof buf, "%" PRIu64, run->history_lines);
		field_line(out, "rows:", buf);
	}
	field_line(out, "dir:", str(run->dir));
}

/* ---- values ---------------------------------------------------------------- */

/* ---- show: config, W&B lines, footer --------------------------------------- */

/* Config as `key: value`: strings as their text, other values as compact JSON,
 * as `--json` shows them. */
static int show_config(FILE *out, const Trackd__V1__MapValue *config)
{
	if (!config || config->n_items == 0) {
		fputs("Config: (none)\n", out);
		return 0;
	}
	fputs("Config:\n", out);
	struct buf text;
	buf_init(&text, JSON_TEXT_MAX);
	int rv = 0;
	for (size_t i = 0; i < config->n_items && !rv; i++) {
		const Trackd__V1__Item *m = config->items[i];
		fputs("  ", out);
		put_safe(out, str(m->key), SIZE_MAX);
		fputs(": ", out);
		if (m->value && m->value->kind_case == TRACKD__V1__VALUE__KIND_STRING_VALUE) {
			put_safe(out, str(m->value->string_value), SIZE_MAX);
		} else {
			/* JSON escapes every control character, so it is safe as is. */
			buf_reset(&text);
			rv = pb_json_value(m->value, &text);
			if (!rv)
				fwrite(text.data, 1, text.len, out);
		}
		putc('\n', out);
	}
	buf_fini(&text);
	return rv;
}

size_t render_upload_lines(const Trackd__V1__RunInfo *run, const Trackd__V1__UploadInfo *upload,
                           char lines[][RENDER_UPLOAD_LINE])
{
	const char *path = str(run->path);
	const char *state = upload ? str(upload->state) : "";
	const char *run_url = upload ? str(upload->run_url) : "";
	const char *project_url = upload ? str(upload->project_url) : "";
	const char *error = upload ? str(upload->last_error) : "";
	size_t n = 0;
	if (*run_url) {
		const char *name = str(run->display_name);
		snprintf(lines[n++], RENDER_UPLOAD_LINE, "View run %s at: %s",
		         *name ? name : str(run->id), run_url);
		if (*project_url)
			snprintf(lines[n++], RENDER_UPLOAD_LINE, "View project at: %s",
			         project_url);
	}
	if (!*run_url &&
	    (strcmp(str(run->mode), "offline") == 0 || strcmp(state, "offline") == 0)) {
		snprintf(lines[n++], RENDER_UPLOAD_LINE,
		         "Offline run; upload it with: trackctl sync %s", path);
	} else if (!upload) {
		/* an agent that does not say */
	} else if (strcmp(state, "disabled") == 0) {
		snprintf(lines[n++], RENDER_UPLOAD_LINE,
		         "W&B: not uploaded: no wandb sink configured (sinks.wandb)");
	} else if (strcmp(state, "parked") == 0) {
		snprintf(lines[n++], RENDER_UPLOAD_LINE,
		         "W&B: upload parked: %s; retry with: trackctl retry %s",
		         *error ? error : "a permanent error", str(run->id));
	} else if (!*run_url) {
		snprintf(lines[n++], RENDER_UPLOAD_LINE,
		         "W&B: upload pending: the backend has not acknowledged the run yet%s%s",
		         *error ? "; last error: " : "", error);
	}
	/* Run data (names, errors) reaches the terminal: no control characters. */
	for (size_t i = 0; i < n; i++)
		for (char *p = lines[i]; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
	return n;
}

/* The W&B media type of a summary value ({"_type": …}), NULL if none. */
static const char *media_type(const Trackd__V1__Value *v)
{
	if (!v || v->kind_case != TRACKD__V1__VALUE__KIND_MAP_VALUE)
		return NULL;
	for (size_t i = 0; i < v->map_value->n_items; i++) {
		const Trackd__V1__Item *it = v->map_value->items[i];
		if (it->key && strcmp(it->key, "_type") == 0 && it->value &&
		    it->value->kind_case == TRACKD__V1__VALUE__KIND_STRING_VALUE)
			return it->value->string_value;
	}
	return NULL;
}

/* The keys whose last value is a media object (images, tables, histograms):
 * W&B's footer leaves them out of the summary, so they are named here. */
static void show_media(FILE *out, const Trackd__V1__RunInfo *run)
{
	const Trackd__V1__MapValue *summary = run->summary;
	bool any = false;
	for (size_t i = 0; summary && i < summary->n_items; i++) {
		const char *type = media_type(summary->items[i]->value);
		if (!type)
			continue;
		if (!any)
			fputs("Media (files: trackctl files RUN)\n", out);
		any = true;
		fputs("  ", out);
		size_t w = put_safe(out, str(summary->items[i]->key), 40);
		pad(out, w < 24 ? 24 - w : 1);
		put_safe(out, type, 40);
		putc('\n', out);
	}
	if (any)
		putc('\n', out);
}

int render_show(FILE *out, const Trackd__V1__RunInfo *run, const Trackd__V1__UploadInfo *upload,
                const footer_series *history, double now)
{
	show_identity(out, run, now);
	putc('\n', out);
	int rv = show_config(out, run->config);
	if (rv != 0)
		return rv;
	putc('\n', out);
	show_media(out, run);

	/* The summary as the footer wants it: numbers, bools and strings. */
	const Trackd__V1__MapValue *summary = run->summary;
	size_t n_items = summary ? summary->n_items : 0;
	footer_summary_item *items = n_items ? calloc(n_items, sizeof *items) : NULL;
	if (n_items && !items)
		return TRACKD_ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < n_items; i++) {
		const Trackd__V1__Item *m = summary->items[i];
		const Trackd__V1__Value *v = m->value;
		footer_summary_item *it = &items[n];
		it->key = str(m->key);
		switch (v ? v->kind_case : TRACKD__V1__VALUE__KIND__NOT_SET) {
		case TRACKD__V1__VALUE__KIND_DOUBLE_VALUE:
			it->kind = FOOTER_DOUBLE;
			it->v.d = v->double_value;
			n++;
			break;
		case TRACKD__V1__VALUE__KIND_INT_VALUE:
			it->kind = FOOTER_INT;
			it->v.i = v->int_value;
			n++;
			break;
		case TRACKD__V1__VALUE__KIND_BOOL_VALUE:
			it->kind = FOOTER_BOOL;
			it->v.b = v->bool_value;
			n++;
			break;
		case TRACKD__V1__VALUE__KIND_STRING_VALUE:
			it->kind = FOOTER_STRING;
			it->v.s = str(v->string_value);
			n++;
			break;
		default: break; /* W&B does not show nested values or null */
		}
	}

	char files[4200] = "", next[4200] = "", up[RENDER_UPLOAD_MAX][RENDER_UPLOAD_LINE];
	const char *trailer[RENDER_UPLOAD_MAX + 2];
	size_t n_trailer = render_upload_lines(run, upload, up);
	for (size_t i = 0; i < n_trailer; i++)
		trailer[i] = up[i];
	const char *dir = str(run->dir);
	const char *path = str(run->path);
	if (*dir) {
		snprintf(files, sizeof files, "Find the run's files at: %s", dir);
		trailer[n_trailer++] = files;
	}
	if (*path) {
		if (strcmp(str(run->state), "running") == 0)
			snprintf(next, sizeof next, "Follow its rows with: trackctl tail %s", path);
		else
			snprintf(next, sizeof next, "Export its rows with: trackctl history %s",
			         path);
		trailer[n_trailer++] = next;
	}
	/* Trailer lines carry run data too: make them terminal-safe. */
	for (char *p = files; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	for (char *p = next; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	rv = footer_print(out, history, items, n, trailer, n_trailer);
	free(items);
	return rv == FOOTER_ENOMEM ? TRACKD_ENOMEM : rv == FOOTER_OK ? 0 : TRACKD_EIO;
}

/* ---- CSV ------------------------------------------------------------------- */

int render_csv_field(struct buf *out, const char *s, size_t len)
{
	bool quote = len && (s[0] == ' ' || s[len - 1] == ' ');
	for (size_t i = 0; i < len && !quote; i++)
		quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
	if (!quote)
		return buf_append(out, s, len);
	int rv = buf_putc(out, '"');
	/* Runs between quotes in one piece, each quote doubled. */
	for (size_t i = 0; i < len && !rv;) {
		const char *q = memchr(s + i, '"', len - i);
		size_t n = q ? (size_t)(q - s) + 1 - i : len - i;
		rv = buf_append(out, s + i, n);
		if (!rv && q)
			rv = buf_putc(out, '"');
		i += n;
	}
	return rv ? rv : buf_putc(out, '"');
}

/* json-c's text of a value: compact, '/' unescaped, so its escapes are those of
 * common/json_write.h (the store's), and a parsed number keeps its own text. */
#define ROW_TEXT_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* A number or bool of a row as its JSON text. CSV output is millions of cells:
 * these skip json_object_to_json_string's buffer (allocated per value) for the
 * common cases. A double json-c parsed keeps its literal as the userdata of its
 * serializer (json_object_new_double_s, which json_tokener uses): that text is
 * the store's. */
static int put_scalar(struct buf *out, json_object *v)
{
	int64_t i;
	const char *text;
	switch (json_object_get_type(v)) {
	case json_type_boolean: return buf_puts(out, json_object_get_boolean(v) ? "true" : "false");
	case json_type_int:
		if (int_of(v, &i))
			return json_write_int(out, i);
		break;
	case json_type_double:
		if ((text = json_object_get_userdata(v)) != NULL)
			return buf_puts(out, text);
		break;
	default: break;
	}
	size_t len;
	text = json_object_to_json_string_length(v, ROW_TEXT_FLAGS, &len);
	return buf_append(out, text, len);
}

int render_csv_cell(struct buf *out, json_object *v)
{
	size_t len;
	const char *text;
	switch (json_object_get_type(v)) { /* NULL (null, missing): json_type_null */
	case json_type_null: return 0;
	case json_type_string:
		return render_csv_field(out, json_object_get_string(v),
		                        (size_t)json_object_get_string_len(v));
	case json_type_object:
	case json_type_array:
		/* Nested: the compact JSON text, as one quoted field. */
		text = json_object_to_json_string_length(v, ROW_TEXT_FLAGS, &len);
		return render_csv_field(out, text, len);
	default: return put_scalar(out, v);
	}
}

int render_csv_row(struct buf *out, json_object *row, const char *const *keys, size_t n)
{
	bool obj = json_object_is_type(row, json_type_object);
	json_object *v = NULL;
	int rv = obj && json_object_object_get_ex(row, "_step", &v) ? render_csv_cell(out, v) : 0;
	for (size_t i = 0; i < n && !rv; i++) {
		rv = buf_putc(out, ',');
		if (!rv && obj && json_object_object_get_ex(row, keys[i], &v))
			rv = render_csv_cell(out, v);
	}
	return rv;
}
