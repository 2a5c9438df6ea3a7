/* render.c — see render.h. */
#include "render.h"

#include "errors.h"
#include "hash.h"
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

static const char *str_field(const json_value *obj, const char *key)
{
	return json_string(json_get(obj, key), "");
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
static void project_label(const json_value *run, char *buf, size_t cap)
{
	const char *entity = str_field(run, "entity");
	const char *project = str_field(run, "project");
	if (*entity)
		snprintf(buf, cap, "%s/%s", entity, project);
	else
		snprintf(buf, cap, "%s", project);
}

enum { COL_ID, COL_NAME, COL_PROJECT, COL_STATE, COL_STARTED, COL_ROWS, N_COLS };

void render_runs_table(FILE *out, const json_value *reply)
{
	static const char *const heads[N_COLS] = {"ID",    "NAME",    "PROJECT",
	                                          "STATE", "STARTED", "ROWS"};
	static const size_t caps[N_COLS] = {64, RENDER_NAME_WIDTH, RENDER_PROJECT_WIDTH, 16, 19,
	                                    20};
	const json_value *runs = json_get(reply, "runs");
	if (!json_is(runs, JSON_ARRAY) || runs->u.arr.n == 0) {
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
		for (size_t i = 0; i < runs->u.arr.n; i++) {
			const json_value *run = &runs->u.arr.items[i];
			char project[512], started[32], rows[32];
			double t;
			int64_t n;
			project_label(run, project, sizeof project);
			if (json_double(json_get(run, "start_time"), &t))
				render_time(t, started, sizeof started);
			else
				snprintf(started, sizeof started, "-");
			if (json_int(json_get(run, "history_lines"), &n))
				snprintf(rows, sizeof rows, "%" PRId64, n);
			else
				snprintf(rows, sizeof rows, "-");
			const char *cells[N_COLS] = {str_field(run, "id"),
			                             str_field(run, "display_name"),
			                             project,
			                             str_field(run, "state"),
			                             started,
			                             rows};
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

/* ---- footer input ------------------------------------------------------------ */

int render_feed_history(footer_series *s, const json_value *rows, uint64_t first_line)
{
	if (!json_is(rows, JSON_ARRAY))
		return 0;
	for (size_t i = 0; i < rows->u.arr.n; i++) {
		const json_value *row = &rows->u.arr.items[i];
		if (!json_is(row, JSON_OBJECT))
			continue;
		int64_t step;
		if (!json_int(json_get(row, "_step"), &step))
			step = (int64_t)(first_line + i);
		for (size_t m = 0; m < row->u.obj.n; m++) {
			const json_member *mem = &row->u.obj.members[m];
			double d;
			if (mem->key[0] == '_' || mem->key_len == 0 ||
			    !json_double(&mem->value, &d))
				continue;
			int rv = footer_series_add(s, mem->key, step, d);
			if (rv == FOOTER_ENOMEM)
				return TRACKD_ENOMEM;
		}
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

static void state_label(const json_value *run, char *buf, size_t cap)
{
	const char *state = str_field(run, "state");
	int64_t code;
	if (json_int(json_get(run, "exit_code"), &code) &&
	    (strcmp(state, "finished") == 0 || strcmp(state, "failed") == 0))
		snprintf(buf, cap, "%s (exit code %" PRId64 ")", state, code);
	else
		snprintf(buf, cap, "%s", *state ? state : "-");
}

/* "a, b, c" of an array of strings or numbers. */
static void join_list(const json_value *arr, char *buf, size_t cap)
{
	size_t used = 0;
	buf[0] = '\0';
	if (!json_is(arr, JSON_ARRAY))
		return;
	for (size_t i = 0; i < arr->u.arr.n && used < cap; i++) {
		const json_value *v = &arr->u.arr.items[i];
		int n = v->type == JSON_STRING
		            ? snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", v->u.str.s)
		            : snprintf(buf + used, cap - used, "%s%.*s", i ? ", " : "",
		                       (int)v->raw_len, v->raw);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static void show_identity(FILE *out, const json_value *run, double now)
{
	char buf[4096], t1[32], t2[32], dur[48];
	const char *id = str_field(run, "id");
	const char *name = str_field(run, "display_name");
	fputs("Run ", out);
	put_safe(out, id, SIZE_MAX);
	if (*name) {
		fputs(" (", out);
		put_safe(out, name, SIZE_MAX);
		putc(')', out);
	}
	putc('\n', out);
	field_line(out, "path:", str_field(run, "path"));
	state_label(run, buf, sizeof buf);
	field_line(out, "state:", buf);

	double start, end;
	bool has_start = json_double(json_get(run, "start_time"), &start);
	bool has_end = json_double(json_get(run, "end_time"), &end);
	if (has_start) {
		render_time(start, t1, sizeof t1);
		if (!has_end && strcmp(str_field(run, "state"), "running") == 0) {
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
	int64_t uid;
	join_list(json_get(run, "pids"), pids, sizeof pids);
	const char *host = str_field(run, "host");
	int n = snprintf(buf, sizeof buf, "%s", host);
	if (*pids)
		n += snprintf(buf + n, sizeof buf - (size_t)n, "%s(pid%s %s)", *host ? " " : "",
		              strchr(pids, ',') ? "s" : "", pids);
	if (json_int(json_get(run, "uid"), &uid))
		snprintf(buf + n, sizeof buf - (size_t)n, "%suid %" PRId64, n ? ", " : "", uid);
	field_line(out, "host:", buf);
	field_line(out, "mode:", str_field(run, "mode"));

	field_line(out, "group:", str_field(run, "group"));
	field_line(out, "job type:", str_field(run, "job_type"));
	field_line(out, "notes:", str_field(run, "notes"));
	join_list(json_get(run, "tags"), buf, sizeof buf);
	field_line(out, "tags:", buf);
	int64_t lines;
	if (json_int(json_get(run, "history_lines"), &lines)) {
		snprintf(buf, sizeof buf, "%" PRId64, lines);
		field_line(out, "rows:", buf);
	}
	field_line(out, "dir:", str_field(run, "dir"));
}

/* Config as `key: value`, values as the agent wrote them (nested ones as JSON). */
static void show_config(FILE *out, const json_value *config)
{
	if (!json_is(config, JSON_OBJECT) || config->u.obj.n == 0) {
		fputs("Config: (none)\n", out);
		return;
	}
	fputs("Config:\n", out);
	for (size_t i = 0; i < config->u.obj.n; i++) {
		const json_member *m = &config->u.obj.members[i];
		fputs("  ", out);
		put_safe(out, m->key, SIZE_MAX);
		fputs(": ", out);
		if (m->value.type == JSON_STRING) {
			put_safe(out, m->value.u.str.s, SIZE_MAX);
		} else {
			/* Raw JSON escapes every control character, so it is safe as is. */
			json_write_compact(out, &m->value);
		}
		putc('\n', out);
	}
}

size_t render_upload_lines(const json_value *run, const json_value *upload,
                           char lines[][RENDER_UPLOAD_LINE])
{
	const char *path = str_field(run, "path");
	const char *state = str_field(upload, "state");
	const char *run_url = str_field(upload, "run_url");
	const char *project_url = str_field(upload, "project_url");
	const char *error = str_field(upload, "last_error");
	size_t n = 0;
	if (*run_url) {
		const char *name = str_field(run, "display_name");
		snprintf(lines[n++], RENDER_UPLOAD_LINE, "View run %s at: %s",
		         *name ? name : str_field(run, "id"), run_url);
		if (*project_url)
			snprintf(lines[n++], RENDER_UPLOAD_LINE, "View project at: %s",
			         project_url);
	}
	if (!*run_url &&
	    (strcmp(str_field(run, "mode"), "offline") == 0 || strcmp(state, "offline") == 0)) {
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
		         *error ? error : "a permanent error", str_field(run, "id"));
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

int render_show(FILE *out, const json_value *run, const json_value *upload,
                const footer_series *history, double now)
{
	show_identity(out, run, now);
	putc('\n', out);
	show_config(out, json_get(run, "config"));
	putc('\n', out);

	/* The summary as the footer wants it: numbers, bools and strings. */
	const json_value *summary = json_get(run, "summary");
	size_t n_items = json_is(summary, JSON_OBJECT) ? summary->u.obj.n : 0;
	footer_summary_item *items = n_items ? calloc(n_items, sizeof *items) : NULL;
	if (n_items && !items)
		return TRACKD_ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < n_items; i++) {
		const json_member *m = &summary->u.obj.members[i];
		footer_summary_item *it = &items[n];
		it->key = m->key;
		switch (m->value.type) {
		case JSON_NUMBER:
			if (m->value.u.num.is_int) {
				it->kind = FOOTER_INT;
				it->v.i = m->value.u.num.i;
			} else {
				it->kind = FOOTER_DOUBLE;
				it->v.d = m->value.u.num.d;
			}
			n++;
			break;
		case JSON_BOOL:
			it->kind = FOOTER_BOOL;
			it->v.b = m->value.u.b;
			n++;
			break;
		case JSON_STRING:
			it->kind = FOOTER_STRING;
			it->v.s = m->value.u.str.s;
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
	const char *dir = str_field(run, "dir");
	const char *path = str_field(run, "path");
	if (*dir) {
		snprintf(files, sizeof files, "Find the run's files at: %s", dir);
		trailer[n_trailer++] = files;
	}
	if (*path) {
		if (strcmp(str_field(run, "state"), "running") == 0)
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
	int rv = footer_print(out, history, items, n, trailer, n_trailer);
	free(items);
	return rv == FOOTER_ENOMEM ? TRACKD_ENOMEM : rv == FOOTER_OK ? 0 : TRACKD_EIO;
}

/* ---- CSV ------------------------------------------------------------------- */

void render_csv_field(FILE *out, const char *s, size_t len)
{
	bool quote = len && (s[0] == ' ' || s[len - 1] == ' ');
	for (size_t i = 0; i < len && !quote; i++)
		quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
	if (!quote) {
		fwrite(s, 1, len, out);
		return;
	}
	putc('"', out);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"')
			putc('"', out);
		putc(s[i], out);
	}
	putc('"', out);
}

void render_csv_cell(FILE *out, const json_value *v)
{
	if (!v || v->type == JSON_NULL)
		return;
	if (v->type == JSON_STRING) {
		render_csv_field(out, v->u.str.s, v->u.str.len);
		return;
	}
	if (v->type == JSON_NUMBER || v->type == JSON_BOOL) {
		fwrite(v->raw, 1, v->raw_len, out);
		return;
	}
	/* Nested: the compact JSON text, as one quoted field. */
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	if (!mem)
		return;
	json_write_compact(mem, v);
	fclose(mem);
	render_csv_field(out, text, len);
	free(text);
}

void render_csv_row(FILE *out, const json_value *row, const char *const *keys, size_t n)
{
	render_csv_cell(out, json_get(row, "_step"));
	for (size_t i = 0; i < n; i++) {
		putc(',', out);
		render_csv_cell(out, json_get(row, keys[i]));
	}
	putc('\n', out);
}
