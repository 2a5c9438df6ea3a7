/* Queries answered from the local run store (routed here by agent/cmd/queries.c),
 * as typed replies of trackd.proto:
 *   runs    RunsReply, oldest first, paged by offset/limit
 *   run     RunInfo (agent/cmd/queries.c adds the upload side: RunReply)
 *   history HistoryPage: lines of history.jsonl as the store holds them
 *   rename  RenameReply: a new name, tags and/or notes, logged as a RunRename
 *   series  SeriesReply: chart buckets from the run's series index (series.h),
 *           read outside the lock up to the rows committed when asked
 *   console ConsolePage: lines of output.log, paged and grepped like history
 *   files   FilesReply: the run's files (files.jsonl)
 *   run_file_read RunFileChunk: a verified piece of one of them (run_file_read.h)
 * A RunInfo holds summary and config. Runs in memory answer from memory;
 * others from their snapshot on disk. Answers are built from the runs' own
 * strings under the sink's lock and copied (wire_copy) before it is let go. */
#include "local_sink_internal.h"

#include "errors.h"
#include "files.h"
#include "fs.h"
#include "run_files.h"
#include "trackd/v1/wire.h"

#include <json-c/json.h>

#include <math.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RUNS_MAX_LISTED 100000

static int not_found(char *err, size_t errlen, const char *ref)
{
	snprintf(err, errlen, "no run '%s' in this agent's store", ref);
	return TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND;
}

/* ---- runs and run ------------------------------------------------------------------ */

struct requester {
	uint32_t uid;
	bool admin;
};

static bool may_see(const struct requester *who, const struct run *r)
{
	return who->admin || r->uid == who->uid;
}

/* Paging of a runs answer: runs that pass the filters are counted; the first
 * `skip` are left out, and at most `left` written (UINT64_MAX: no limit). */
struct runs_page {
	uint64_t skip, left;
};

static bool page_takes(struct runs_page *pg)
{
	if (!pg)
		return true;
	if (pg->skip) {
		pg->skip--;
		return false;
	}
	if (!pg->left)
		return false;
	pg->left--;
	return true;
}

static char *or_empty(const char *s)
{
	return (char *)(s ? s : "");
}

/* The RunInfo of a run (malloc'd throughout, for free_unpacked); its size
 * packed is added to *bytes. NULL without memory. */
static Trackd__V1__RunInfo *run_info(const struct run *r, const char *dir, size_t *bytes)
{
	Trackd__V1__RunInfo ri = TRACKD__V1__RUN_INFO__INIT;
	char path[1024];
	snprintf(path, sizeof path, "%s/%s/%s", r->entity, r->project, r->id);
	int32_t pids[RUN_MAX_ATTACHED];
	for (size_t i = 0; i < r->n_attached; i++)
		pids[i] = r->attached[i].pid;
	ri.id = or_empty(r->id);
	ri.entity = or_empty(r->entity);
	ri.project = or_empty(r->project);
	ri.path = path;
	ri.display_name = or_empty(r->display_name);
	ri.state = (char *)run_state_name(r->state);
	ri.dir = (char *)dir;
	ri.has_start_time = true;
	ri.start_time = (double)r->start_time_us / 1e6;
	if (r->state != RUN_RUNNING) {
		ri.has_end_time = true;
		ri.end_time = (double)r->end_time_us / 1e6;
		ri.has_exit_code = r->has_exit_code;
		ri.exit_code = r->exit_code;
	}
	ri.host = or_empty(r->host);
	ri.n_pids = r->n_attached;
	ri.pids = pids;
	ri.has_uid = true;
	ri.uid = r->uid;
	ri.notes = or_empty(r->notes);
	ri.n_tags = r->n_tags;
	ri.tags = r->tags;
	ri.group = or_empty(r->group);
	ri.job_type = or_empty(r->job_type);
	ri.mode = r->mode == TRACKD__V1__RUN_MODE__RUN_MODE_OFFLINE ? "offline" : "online";
	ri.has_imported = r->imported;
	ri.imported = r->imported;
	ri.has_history_lines = ri.has_console_lines = ri.has_rows_rejected = true;
	ri.history_lines = r->history_lines;
	ri.console_lines = r->console_lines;
	ri.rows_rejected = r->rows_rejected;
	ri.summary = vmap_to_proto(&r->summary);
	ri.config = vmap_to_proto(&r->config);
	Trackd__V1__RunInfo *copy = NULL;
	if (ri.summary && ri.config) {
		*bytes += trackd__v1__run_info__get_packed_size(&ri);
		copy = (Trackd__V1__RunInfo *)wire_copy(&ri.base);
	}
	vmap_proto_free(ri.summary);
	vmap_proto_free(ri.config);
	return copy;
}

/* The answer so far: runs (RunsReply's array, grown as runs are found), and
 * the bytes they take packed, against the answer's maximum. */
struct runs_answer {
	Trackd__V1__RunInfo **runs;
	size_t n, cap;
	size_t bytes, max_bytes;
};

static int answer_add(struct runs_answer *a, const struct run *r, const char *dir)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		Trackd__V1__RunInfo **p = realloc(a->runs, cap * sizeof *p);
		if (!p)
			return TRACKD_ENOMEM;
		a->runs = p;
		a->cap = cap;
	}
	if (!(a->runs[a->n] = run_info(r, dir, &a->bytes)))
		return TRACKD_ENOMEM;
	a->n++;
	return a->bytes > a->max_bytes ? TRACKD_ETOOBIG : TRACKD_OK;
}

static void answer_fini(struct runs_answer *a)
{
	for (size_t i = 0; i < a->n; i++)
		trackd__v1__run_info__free_unpacked(a->runs[i], NULL);
	free(a->runs);
}

static bool passes(const struct run *r, const char *state_filter, const struct requester *who,
                   struct runs_page *pg)
{
	return may_see(who, r) &&
	       (!state_filter || !*state_filter ||
	        strcmp(state_filter, run_state_name(r->state)) == 0) &&
	       page_takes(pg);
}

/* The run in `dir`, if the requester may see it and it passes the filter and
 * the page, added to the answer. */
static int append_run(struct local_sink *s, const char *dir, const char *state_filter,
                      const struct requester *who, struct runs_page *pg, struct runs_answer *a)
{
	for (size_t i = 0; i < s->n_active; i++) /* in memory? */
		if (strcmp(s->active[i]->dir, dir) == 0)
			return passes(s->active[i]->run, state_filter, who, pg)
			           ? answer_add(a, s->active[i]->run, dir)
			           : TRACKD_OK;
	struct run *r;
	if (sink_load_snapshot(dir, &r) != 0)
		return TRACKD_OK; /* not yet checkpointed: shown once it is */
	int rv = passes(r, state_filter, who, pg) ? answer_add(a, r, dir) : TRACKD_OK;
	run_free(r);
	return rv;
}

struct run_dir {
	char *path;
	char *name; /* run-YYYYMMDD_HHMMSS-id: sorts by start time */
};

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct run_dir *)a)->name, ((const struct run_dir *)b)->name);
}

static void collect_project(const char *pdir, struct run_dir **list, size_t *n, size_t *cap)
{
	DIR *d = opendir(pdir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) && *n < RUNS_MAX_LISTED) {
		if (strncmp(de->d_name, "run-", 4) != 0)
			continue;
		if (*n == *cap) {
			size_t c = *cap ? *cap * 2 : 64;
			struct run_dir *p = realloc(*list, c * sizeof *p);
			if (!p)
				break;
			*list = p;
			*cap = c;
		}
		char path[4096];
		if (snprintf(path, sizeof path, "%s/%s", pdir, de->d_name) >= (int)sizeof path)
			continue;
		(*list)[*n].path = strdup(path);
		(*list)[*n].name = strdup(de->d_name);
		if ((*list)[*n].path && (*list)[*n].name)
			(*n)++;
	}
	closedir(d);
}

/* Visits runs/<entity>/<project>/ dirs, restricted by "project" or "entity/project". */
static void collect_runs(struct local_sink *s, const char *filter, struct run_dir **list, size_t *n)
{
	size_t cap = 0;
	const char *slash = filter ? strchr(filter, '/') : NULL;
	DIR *de = opendir(s->runs_dir);
	if (!de)
		return;
	struct dirent *e;
	while ((e = readdir(de))) {
		if (e->d_name[0] == '.')
			continue;
		if (slash && (strlen(e->d_name) != (size_t)(slash - filter) ||
		              strncmp(e->d_name, filter, (size_t)(slash - filter)) != 0))
			continue;
		char edir[4096];
		if (snprintf(edir, sizeof edir, "%s/%s", s->runs_dir, e->d_name) >=
		    (int)sizeof edir)
			continue;
		DIR *dp = opendir(edir);
		if (!dp)
			continue;
		struct dirent *p;
		while ((p = readdir(dp))) {
			if (p->d_name[0] == '.')
				continue;
			const char *want = slash ? slash + 1 : filter;
			if (want && *want && strcmp(p->d_name, want) != 0)
				continue;
			char pdir[4096];
			if (snprintf(pdir, sizeof pdir, "%s/%s", edir, p->d_name) <
			    (int)sizeof pdir)
				collect_project(pdir, list, n, &cap);
		}
		closedir(dp);
	}
	closedir(de);
}

static int query_runs(struct local_sink *s, const Trackd__V1__RunsRequest *q,
                      const struct requester *who, struct runs_answer *a)
{
	struct run_dir *list = NULL;
	size_t n = 0;
	struct runs_page pg = {.skip = q->has_offset ? q->offset : 0,
	                       .left = q->has_limit && q->limit ? q->limit : UINT64_MAX};
	collect_runs(s, q->project, &list, &n);
	if (n)
		qsort(list, n, sizeof *list, by_name);
	int rv = TRACKD_OK;
	for (size_t i = 0; i < n; i++) {
		if (!rv)
			rv = append_run(s, list[i].path, q->state, who, &pg, a);
		free(list[i].path);
		free(list[i].name);
	}
	free(list);
	return rv;
}

/* Resolves run `ref` to its dir, for a requester allowed to see it. */
static int resolve_for(struct local_sink *s, const char *ref, const struct requester *who,
                       char *dir, size_t len, char *err, size_t errlen)
{
	if (!ref || sink_resolve_dir(s, ref, dir, len) != 0)
		return not_found(err, errlen, ref ? ref : "");
	if (who->admin)
		return 0;
	struct active_run *ar = sink_find_active(s, ref);
	uint32_t owner;
	if (ar) {
		owner = ar->run->uid;
	} else {
		struct run *r;
		if (sink_load_snapshot(dir, &r) != 0)
			return not_found(err, errlen, ref);
		owner = r->uid;
		run_free(r);
	}
	if (owner == who->uid)
		return 0;
	snprintf(err, errlen, "run '%s' belongs to another user (uid %u)", ref, owner);
	return TRACKD__V1__ERROR_CODE__ERROR_PERMISSION_DENIED;
}

int local_sink_locate(local_sink *s, const char *ref, uint32_t uid, bool admin,
                      struct local_run_info *info, char *err, size_t errlen)
{
	struct requester who = {.uid = uid, .admin = admin};
	memset(info, 0, sizeof *info);
	pthread_mutex_lock(&s->mu);
	int code = resolve_for(s, ref, &who, info->dir, sizeof info->dir, err, errlen);
	struct active_run *ar = code ? NULL : sink_find_active(s, ref);
	struct run *r = ar ? ar->run : NULL, *loaded = NULL;
	if (!code && !r) {
		if (sink_load_snapshot(info->dir, &loaded) != 0)
			code = not_found(err, errlen, ref);
		r = loaded;
	}
	if (r) {
		snprintf(info->path, sizeof info->path, "%s/%s/%s", r->entity, r->project, r->id);
		info->running = r->state == RUN_RUNNING;
		info->offline = r->mode == TRACKD__V1__RUN_MODE__RUN_MODE_OFFLINE;
		info->owner = r->uid;
	}
	run_free(loaded);
	pthread_mutex_unlock(&s->mu);
	return code;
}

static int query_run(struct local_sink *s, const char *ref, const struct requester *who,
                     struct runs_answer *a, char *err, size_t errlen)
{
	char dir[4096];
	int code = resolve_for(s, ref, who, dir, sizeof dir, err, errlen);
	if (code)
		return code;
	int rv = append_run(s, dir, NULL, who, NULL, a);
	if (!rv && a->n == 0) /* the dir exists, but its first checkpoint has not happened */
		return not_found(err, errlen, ref);
	return rv;
}

/* ---- history ------------------------------------------------------------------------- */

/* Rows nest no deeper than limits.max_nesting_depth allows the client; this
 * bounds json-c's recursion on a file damaged on disk. */
#define HISTORY_ROW_MAX_DEPTH 128

static bool events_stream(const Trackd__V1__HistoryRequest *q)
{
	return q->stream && strcmp(q->stream, "events") == 0;
}

static bool key_wanted(const Trackd__V1__HistoryRequest *q, const char *key)
{
	/* A sample has no step: its time places it. */
	if (events_stream(q) ? strcmp(key, "_runtime") == 0 || strcmp(key, "_timestamp") == 0
	                     : strcmp(key, "_step") == 0)
		return true;
	for (size_t i = 0; i < q->n_keys; i++)
		if (strcmp(q->keys[i], key) == 0)
			return true;
	return false;
}

/* The members of one row (a line of history.jsonl) whose keys were asked
 * for, in the row's order. Read with json-c, which keeps a parsed number's own
 * text, so values come out as the store wrote them. TRACKD_ECORRUPT when the
 * line is not a JSON object (a file damaged on disk). */
static int filter_line(const Trackd__V1__HistoryRequest *q, struct json_tokener *tok,
                       const char *line, size_t len, struct buf *out)
{
	json_tokener_reset(tok);
	json_object *row = len <= INT32_MAX ? json_tokener_parse_ex(tok, line, (int)len) : NULL;
	if (!row || !json_object_is_type(row, json_type_object)) {
		json_object_put(row);
		return TRACKD_ECORRUPT;
	}
	int rv = buf_putc(out, '{');
	bool first = true;
	json_object_object_foreach(row, key, value)
	{
		if (rv || !key_wanted(q, key))
			continue;
		rv = first ? 0 : buf_putc(out, ',');
		first = false;
		if (!rv)
			rv = json_write_string(out, key);
		if (!rv)
			rv = buf_putc(out, ':');
		if (!rv)
			rv = buf_puts(out, json_object_to_json_string_ext(
			                       value, JSON_C_TO_STRING_PLAIN |
			                                  JSON_C_TO_STRING_NOSLASHESCAPE));
	}
	json_object_put(row);
	return rv ? rv : buf_putc(out, '}');
}

/* What a history query reads, fixed under the sink's lock: the file, open, and
 * the length it had then. The reading happens without the lock (a page of a
 * huge run must not stall the sink), a chunk at a time (memory does not grow
 * with the file); lines appended meanwhile are left for the next page. */
struct history_source {
	int fd;
	uint64_t length;
	char path[1024]; /* entity/project/id, for the answer */
};

/* Opens a run's appended file (history.jsonl, output.log) for a reader that
 * reads it after the lock is let go: src->length is its length now, with the
 * lines the sink applied so far flushed into it. */
static int run_file_open(struct local_sink *s, const char *ref, const char *name,
                         const struct requester *who, struct history_source *src, char *err,
                         size_t errlen)
{
	char dir[4096];
	int code = resolve_for(s, ref, who, dir, sizeof dir, err, errlen);
	if (code)
		return code;
	struct active_run *ar = sink_find_active(s, ref);
	if (ar)
		sink_flush_run(s, ar); /* the rows applied so far are in the file */
	src->fd = -1;
	src->length = 0;
	char file[4200];
	snprintf(file, sizeof file, "%s/%s", dir, name);
	struct stat st;
	src->fd = open(file, O_RDONLY | O_CLOEXEC);
	if (src->fd < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot read %s of '%s': %s", name, ref, strerror(errno));
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	if (src->fd >= 0 && fstat(src->fd, &st) == 0)
		src->length = (uint64_t)st.st_size;
	const char *runs_rel = dir + strlen(s->runs_dir) + 1; /* entity/project/run-…-id */
	const char *last_dash = strrchr(runs_rel, '-');
	const char *last_slash = strrchr(runs_rel, '/');
	snprintf(src->path, sizeof src->path, "%.*s/%s", (int)(last_slash - runs_rel), runs_rel,
	         last_dash ? last_dash + 1 : "");
	return 0;
}

static int history_open(struct local_sink *s, const Trackd__V1__HistoryRequest *q,
                        const struct requester *who, struct history_source *src, char *err,
                        size_t errlen)
{
	bool metadata = q->stream && strcmp(q->stream, "metadata") == 0;
	if (q->stream && *q->stream && strcmp(q->stream, "history") != 0 && !events_stream(q) &&
	    !metadata) {
		snprintf(err, errlen, "unknown stream '%s' (history, events or metadata)",
		         q->stream);
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	const char *file = metadata           ? ENVIRONMENT_FILE
	                   : events_stream(q) ? EVENTS_FILE
	                                      : HISTORY_FILE;
	return run_file_open(s, q->run, file, who, src, err, errlen);
}

#define HISTORY_CHUNK (64 * 1024)

/* The page being built: HistoryPage.lines, and their bytes against the
 * answer's maximum. */
struct history_page {
	ProtobufCBinaryData *lines;
	size_t n, cap;
	size_t bytes, max_bytes;
};

static void page_fini(struct history_page *pg)
{
	for (size_t i = 0; i < pg->n; i++)
		free(pg->lines[i].data);
	free(pg->lines);
}

/* One line of the page: the whole line, or its asked keys. */
static int emit_line(const Trackd__V1__HistoryRequest *q, struct json_tokener *tok,
                     struct buf *scratch, const char *line, size_t len, struct history_page *pg)
{
	if (q->n_keys) {
		buf_reset(scratch);
		int rv = filter_line(q, tok, line, len, scratch);
		if (rv)
			return rv;
		line = scratch->data;
		len = scratch->len;
	}
	pg->bytes += len + 4; /* the line and its key and length, packed */
	if (pg->bytes > pg->max_bytes)
		return TRACKD_ETOOBIG;
	if (pg->n == pg->cap) {
		size_t cap = pg->cap ? pg->cap * 2 : 256;
		ProtobufCBinaryData *p = realloc(pg->lines, cap * sizeof *p);
		if (!p)
			return TRACKD_ENOMEM;
		pg->lines = p;
		pg->cap = cap;
	}
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return TRACKD_ENOMEM;
	memcpy(copy, line, len);
	pg->lines[pg->n++] = (ProtobufCBinaryData){.len = len, .data = copy};
	return TRACKD_OK;
}

/* Reads the page [from_line, from_line + max_lines) of the file as it was
 * when opened; *total_lines counts every complete line read. */
static int history_stream(const Trackd__V1__HistoryRequest *q, struct history_source *src,
                          struct history_page *pg, uint64_t *total_lines)
{
	int rv = TRACKD_OK;
	uint64_t line_no = 0, left = src->length;
	char *chunk = src->fd >= 0 ? malloc(HISTORY_CHUNK) : NULL;
	if (src->fd >= 0 && !chunk)
		rv = TRACKD_ENOMEM;
	struct json_tokener *tok = q->n_keys ? json_tokener_new_ex(HISTORY_ROW_MAX_DEPTH) : NULL;
	if (q->n_keys && !tok)
		rv = TRACKD_ENOMEM;
	/* A wanted line that crosses a chunk boundary is gathered in `line`;
	 * `scratch` holds a filtered one. A line never outgrows the answer. */
	struct buf line, scratch;
	buf_init(&line, pg->max_bytes);
	buf_init(&scratch, pg->max_bytes);
	while (!rv && left > 0) {
		ssize_t n =
		    read(src->fd, chunk, left < HISTORY_CHUNK ? (size_t)left : HISTORY_CHUNK);
		if (n <= 0)
			break; /* shortened meanwhile (a run replayed afresh): what was read counts
			        */
		left -= (uint64_t)n;
		const char *p = chunk, *end = chunk + n;
		while (!rv && p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			bool wanted =
			    line_no >= q->from_line && (!q->max_lines || pg->n < q->max_lines);
			if (!nl) {
				if (wanted)
					rv = buf_append(&line, p, (size_t)(end - p));
				break;
			}
			if (wanted && line.len) {
				rv = buf_append(&line, p, (size_t)(nl - p));
				if (!rv)
					rv = emit_line(q, tok, &scratch, line.data, line.len, pg);
				buf_reset(&line);
			} else if (wanted) {
				rv = emit_line(q, tok, &scratch, p, (size_t)(nl - p), pg);
			}
			line_no++;
			p = nl + 1;
		}
	}
	/* A last line without its newline is being written: not yet history. */
	buf_fini(&line);
	buf_fini(&scratch);
	if (tok)
		json_tokener_free(tok);
	free(chunk);
	*total_lines = line_no;
	return rv;
}

/* ---- rename -------------------------------------------------------------------------- */

static int query_rename(struct local_sink *s, const Trackd__V1__RenameRequest *q,
                        const struct requester *who, char *err, size_t errlen)
{
	char dir[4096];
	int code = resolve_for(s, q->run, who, dir, sizeof dir, err, errlen);
	if (code)
		return code;
	bool set_tags = q->has_set_tags && q->set_tags;
	if ((!q->name || !*q->name) && !set_tags && !q->notes) {
		snprintf(err, errlen, "an update needs a new name, tags or notes");
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	if (!set_tags && q->n_tags) {
		snprintf(err, errlen, "tags given without set_tags");
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	/* The request was validated as a whole (validate.c: the limits of a run
	 * start's tags and notes), so the record is within them too. */
	const char *slash = strrchr(q->run, '/');
	Trackd__V1__RunRename rn = TRACKD__V1__RUN_RENAME__INIT;
	rn.display_name = q->name && *q->name ? q->name : NULL;
	rn.has_set_tags = rn.set_tags = set_tags;
	rn.n_tags = set_tags ? q->n_tags : 0;
	rn.tags = set_tags ? q->tags : NULL;
	rn.notes = q->notes;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = (char *)(slash ? slash + 1 : q->run);
	rec.body_case = TRACKD__V1__RECORD__BODY_RENAME;
	rec.rename = &rn;
	int rv = s->opts.submit(s->opts.submit_arg, &rec);
	if (rv != 0) {
		snprintf(err, errlen, "cannot record the update: %s", trackd_strerror(rv));
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	return TRACKD_OK;
}

/* A trackd_err (< 0) as the query's error: a buffer limit or allocation
 * failure is answered as too large (the caller asks for less). */
static int answered(int rv, const char *ref, char *err, size_t errlen)
{
	if (rv == TRACKD_ECORRUPT) {
		snprintf(err, errlen,
		         "the history of '%s' is damaged on disk (a line is not a JSON "
		         "object)",
		         ref ? ref : "");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	if (rv < 0) {
		snprintf(err, errlen, "answer too large or out of memory: %s", trackd_strerror(rv));
		return TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE;
	}
	return rv;
}

int local_sink_query_runs(local_sink *s, const Trackd__V1__RunsRequest *q, uint32_t uid, bool admin,
                          size_t max_bytes, Trackd__V1__RunsReply **out, char *err, size_t errlen)
{
	const struct requester who = {.uid = uid, .admin = admin};
	struct runs_answer a = {.max_bytes = max_bytes};
	*out = NULL;
	pthread_mutex_lock(&s->mu);
	int rv = query_runs(s, q, &who, &a);
	pthread_mutex_unlock(&s->mu);
	if (!rv && !(*out = malloc(sizeof **out)))
		rv = TRACKD_ENOMEM;
	if (rv) {
		answer_fini(&a);
		return answered(rv, NULL, err, errlen);
	}
	trackd__v1__runs_reply__init(*out);
	(*out)->runs = a.runs;
	(*out)->n_runs = a.n;
	return 0;
}

int local_sink_query_run(local_sink *s, const char *ref, uint32_t uid, bool admin,
                         Trackd__V1__RunInfo **out, char *err, size_t errlen)
{
	const struct requester who = {.uid = uid, .admin = admin};
	struct runs_answer a = {.max_bytes = SIZE_MAX};
	*out = NULL;
	pthread_mutex_lock(&s->mu);
	int rv = query_run(s, ref, &who, &a, err, errlen);
	pthread_mutex_unlock(&s->mu);
	if (!rv) {
		*out = a.runs[0];
		a.n = 0;
	}
	answer_fini(&a);
	return answered(rv, ref, err, errlen);
}

int local_sink_query_history(local_sink *s, const Trackd__V1__HistoryRequest *q, uint32_t uid,
                             bool admin, size_t max_bytes, Trackd__V1__HistoryPage **out, char *err,
                             size_t errlen)
{
	const struct requester who = {.uid = uid, .admin = admin};
	*out = NULL;
	/* Only the file is looked up under the lock; see history_source. */
	struct history_source src = {.fd = -1};
	pthread_mutex_lock(&s->mu);
	int rv = history_open(s, q, &who, &src, err, errlen);
	pthread_mutex_unlock(&s->mu);
	if (rv)
		return rv;
	struct history_page pg = {.max_bytes = max_bytes};
	uint64_t total = 0;
	rv = history_stream(q, &src, &pg, &total);
	if (src.fd >= 0)
		close(src.fd);
	Trackd__V1__HistoryPage *hp = rv ? NULL : malloc(sizeof *hp);
	char *path = hp ? strdup(src.path) : NULL;
	if (!rv && !path) {
		free(hp);
		rv = TRACKD_ENOMEM;
	}
	if (rv) {
		page_fini(&pg);
		return answered(rv, q->run, err, errlen);
	}
	trackd__v1__history_page__init(hp);
	hp->run = path;
	hp->has_from_line = hp->has_next_line = hp->has_total_lines = true;
	hp->from_line = q->from_line;
	hp->next_line = q->from_line + pg.n;
	hp->total_lines = total;
	hp->lines = pg.lines;
	hp->n_lines = pg.n;
	*out = hp;
	return 0;
}

int local_sink_query_rename(local_sink *s, const Trackd__V1__RenameRequest *q, uint32_t uid,
                            bool admin, char *err, size_t errlen)
{
	const struct requester who = {.uid = uid, .admin = admin};
	pthread_mutex_lock(&s->mu);
	int rv = query_rename(s, q, &who, err, errlen);
	pthread_mutex_unlock(&s->mu);
	return answered(rv, q->run, err, errlen);
}

/* ---- series ---------------------------------------------------------------------------- */

/* What a series query reads, fixed under the sink's lock: the run dir and
 * the index rows committed to it then (the reading happens without the lock,
 * as for history). */
static int series_locate(struct local_sink *s, const char *ref, const struct requester *who,
                         char *dir, size_t len, uint64_t *rows, uint64_t *dropped, char *path,
                         size_t pathlen, char *err, size_t errlen)
{
	int code = resolve_for(s, ref, who, dir, len, err, errlen);
	if (code)
		return code;
	struct active_run *ar = sink_find_active(s, ref);
	struct run *loaded = NULL;
	const struct run *r;
	int rv = TRACKD_OK;
	if (ar) {
		r = ar->run;
		if (!ar->series) {
			snprintf(
			    err, errlen,
			    "the series index of '%s' could not be opened (the agent's log says "
			    "why); it is rebuilt when the run is next loaded",
			    ref);
			return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
		}
		/* The rows applied so far into the files. If that fails (disk full),
		 * the answer holds what the files hold: series_query reads no row
		 * past the rows file. */
		(void)sink_flush_run(s, ar);
		*rows = series_rows(ar->series);
		*dropped = series_dropped(ar->series);
	} else {
		if (sink_load_snapshot(dir, &loaded) != 0)
			return not_found(err, errlen, ref);
		r = loaded;
		rv = sink_series_rows(s, dir, r, rows);
		*dropped = r->series_dropped;
		if (rv) {
			snprintf(err, errlen, "cannot build the series index of '%s': %s", ref,
			         trackd_strerror(rv));
			run_free(loaded);
			return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
		}
	}
	snprintf(path, pathlen, "%s/%s/%s", r->entity, r->project, r->id);
	run_free(loaded);
	return 0;
}

int local_sink_query_series(local_sink *s, const Trackd__V1__SeriesRequest *q, uint32_t uid,
                            bool admin, size_t max_bytes, Trackd__V1__SeriesReply **out, char *err,
                            size_t errlen)
{
	const struct requester who = {.uid = uid, .admin = admin};
	*out = NULL;
	uint32_t buckets = q->has_buckets && q->buckets ? q->buckets : SERIES_DEFAULT_BUCKETS;
	if (buckets > SERIES_MAX_BUCKETS) {
		snprintf(err, errlen, "buckets %" PRIu32 " is over the limit of %d per series",
		         q->buckets, SERIES_MAX_BUCKETS);
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	if (q->has_x_min && q->has_x_max && !(q->x_min <= q->x_max)) {
		snprintf(err, errlen, "x_min %g is above x_max %g", q->x_min, q->x_max);
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	if ((q->has_x_min && isnan(q->x_min)) || (q->has_x_max && isnan(q->x_max))) {
		snprintf(err, errlen, "x_min and x_max must be numbers, not NaN");
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	char dir[4096], path[1024];
	uint64_t rows = 0, dropped = 0;
	pthread_mutex_lock(&s->mu);
	int code = series_locate(s, q->run, &who, dir, sizeof dir, &rows, &dropped, path,
	                         sizeof path, err, errlen);
	pthread_mutex_unlock(&s->mu);
	if (code)
		return code;
	Trackd__V1__SeriesReply *sr = malloc(sizeof *sr);
	if (!sr)
		return answered(TRACKD_ENOMEM, q->run, err, errlen);
	trackd__v1__series_reply__init(sr);
	const struct series_query sq = {.x = q->x,
	                                .keys = q->keys,
	                                .n_keys = q->n_keys,
	                                .has_min = q->has_x_min,
	                                .has_max = q->has_x_max,
	                                .x_min = q->x_min,
	                                .x_max = q->x_max,
	                                .buckets = buckets};
	int rv = series_query(dir, rows, &sq, sr, err, errlen);
	if (!rv && !(sr->run = strdup(path)))
		rv = TRACKD_ENOMEM;
	sr->has_values_not_indexed = true;
	sr->values_not_indexed = dropped;
	if (!rv && trackd__v1__series_reply__get_packed_size(sr) > max_bytes) {
		snprintf(err, errlen,
		         "the series answer is larger than this connection's reply limit (%zu "
		         "bytes): ask for fewer keys or buckets",
		         max_bytes);
		trackd__v1__series_reply__free_unpacked(sr, NULL);
		return TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE;
	}
	if (rv) {
		trackd__v1__series_reply__free_unpacked(sr, NULL);
		if (rv == TRACKD_ENOENT) /* series_query's message: an unknown x key */
			return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
		return answered(rv, q->run, err, errlen);
	}
	*out = sr;
	return 0;
}

/* ---- console --------------------------------------------------------------------------- */

/* The page being built: ConsolePage.lines and their numbers, against the
 * answer's maximum. */
struct console_page {
	char **lines;
	uint64_t *numbers;
	size_t n, cap;
	size_t bytes, max_bytes;
	bool full; /* max_lines or max_bytes reached: the page ends here */
	uint64_t next_line;
};

static void console_page_fini(struct console_page *pg)
{
	for (size_t i = 0; i < pg->n; i++)
		free(pg->lines[i]);
	free(pg->lines);
	free(pg->numbers);
}

/* One complete line of output.log, numbered line_no: taken if the page wants
 * it. */
static int console_line(const Trackd__V1__ConsoleRequest *q, struct console_page *pg,
                        uint64_t line_no, const char *line, size_t len)
{
	if (pg->full || line_no < q->from_line)
		return TRACKD_OK;
	if (q->max_lines && pg->n >= q->max_lines) {
		pg->full = true;
		pg->next_line = line_no;
		return TRACKD_OK;
	}
	if (q->grep && *q->grep && !memmem(line, len, q->grep, strlen(q->grep)))
		return TRACKD_OK;
	size_t cost = len + 16; /* the line, its number, their keys and lengths, packed */
	if (pg->bytes + cost > pg->max_bytes) {
		if (!pg->n)
			return TRACKD_ETOOBIG; /* not even one line fits */
		pg->full = true;
		pg->next_line = line_no;
		return TRACKD_OK;
	}
	if (pg->n == pg->cap) {
		size_t cap = pg->cap ? pg->cap * 2 : 256;
		char **l = realloc(pg->lines, cap * sizeof *l);
		if (!l)
			return TRACKD_ENOMEM;
		pg->lines = l;
		uint64_t *nums = realloc(pg->numbers, cap * sizeof *nums);
		if (!nums)
			return TRACKD_ENOMEM;
		pg->numbers = nums;
		pg->cap = cap;
	}
	if (!(pg->lines[pg->n] = strndup(line, len)))
		return TRACKD_ENOMEM;
	pg->numbers[pg->n++] = line_no;
	pg->bytes += cost;
	return TRACKD_OK;
}

/* Reads output.log as it was when opened; every complete line is counted. */
static int console_stream(const Trackd__V1__ConsoleRequest *q, struct history_source *src,
                          struct console_page *pg, uint64_t *total_lines)
{
	int rv = TRACKD_OK;
	uint64_t line_no = 0, left = src->length;
	char *chunk = src->fd >= 0 ? malloc(HISTORY_CHUNK) : NULL;
	if (src->fd >= 0 && !chunk)
		rv = TRACKD_ENOMEM;
	struct buf line; /* a line across a chunk boundary */
	buf_init(&line, pg->max_bytes + HISTORY_CHUNK);
	while (!rv && left > 0) {
		ssize_t n =
		    read(src->fd, chunk, left < HISTORY_CHUNK ? (size_t)left : HISTORY_CHUNK);
		if (n <= 0)
			break;
		left -= (uint64_t)n;
		const char *p = chunk, *end = chunk + n;
		while (!rv && p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			bool wanted = !pg->full && line_no >= q->from_line;
			if (!nl) {
				/* too long for the page: dropped here, refused in console_line */
				if (wanted && buf_append(&line, p, (size_t)(end - p)) != 0)
					rv = pg->n ? (pg->full = true, pg->next_line = line_no, 0)
					           : TRACKD_ETOOBIG;
				break;
			}
			if (wanted && line.len) {
				rv = buf_append(&line, p, (size_t)(nl - p));
				if (!rv)
					rv = console_line(q, pg, line_no, line.data, line.len);
				else if (pg->n)
					rv = (pg->full = true, pg->next_line = line_no, 0);
				buf_reset(&line);
			} else if (wanted) {
				rv = console_line(q, pg, line_no, p, (size_t)(nl - p));
			}
			line_no++;
			p = nl + 1;
		}
	}
	buf_fini(&line);
	free(chunk);
	*total_lines = line_no;
	if (!pg->full)
		pg->next_line = line_no > q->from_line ? line_no : q->from_line;
	return rv;
}

int local_sink_query_console(local_sink *s, const Trackd__V1__ConsoleRequest *q, uint32_t uid,
                             bool admin, size_t max_bytes, Trackd__V1__ConsolePage **out, char *err,
                             size_t errlen)
{
	const struct requester who = {.uid = uid, .admin = admin};
	*out = NULL;
	struct history_source src = {.fd = -1};
	pthread_mutex_lock(&s->mu);
	int rv = run_file_open(s, q->run, CONSOLE_FILE, &who, &src, err, errlen);
	pthread_mutex_unlock(&s->mu);
	if (rv)
		return rv;
	struct console_page pg = {.max_bytes = max_bytes > 256 ? max_bytes - 256 : 0};
	uint64_t total = 0;
	rv = console_stream(q, &src, &pg, &total);
	if (src.fd >= 0)
		close(src.fd);
	Trackd__V1__ConsolePage *cp = rv ? NULL : malloc(sizeof *cp);
	char *path = cp ? strdup(src.path) : NULL;
	if (!rv && !path) {
		free(cp);
		rv = TRACKD_ENOMEM;
	}
	if (rv) {
		console_page_fini(&pg);
		if (rv == TRACKD_ETOOBIG) {
			snprintf(err, errlen,
			         "console line %" PRIu64
			         " of '%s' is larger than this connection's "
			         "reply limit (%zu bytes)",
			         pg.next_line, q->run, max_bytes);
			return TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE;
		}
		return answered(rv, q->run, err, errlen);
	}
	trackd__v1__console_page__init(cp);
	cp->run = path;
	cp->has_from_line = cp->has_next_line = cp->has_total_lines = true;
	cp->from_line = q->from_line;
	cp->next_line = pg.next_line;
	cp->total_lines = total;
	cp->lines = pg.lines;
	cp->n_lines = pg.n;
	cp->line_numbers = pg.numbers;
	cp->n_line_numbers = pg.n;
	*out = cp;
	return 0;
}

/* ---- files ---------------------------------------------------------------- */

#define FILES_MANIFEST_MAX ((size_t)64 << 20)
#define FILES_LIST_MAX     100000u

static int file_by_name(const void *a, const void *b)
{
	const Trackd__V1__FilesReply__File *x = *(Trackd__V1__FilesReply__File *const *)a;
	const Trackd__V1__FilesReply__File *y = *(Trackd__V1__FilesReply__File *const *)b;
	return strcmp(x->name, y->name);
}

static void file_entry_free(Trackd__V1__FilesReply__File *f)
{
	if (!f)
		return;
	free(f->name);
	free(f->sha256);
	free(f->kind);
	free(f);
}

/* One files.jsonl line into the list: a later line of a name replaces the
 * earlier one (a replay appends a line again; a saved file may change). */
static int files_add(Trackd__V1__FilesReply *fr, size_t *cap, json_object *o)
{
	json_object *jn, *js, *jh, *jk;
	if (!json_object_object_get_ex(o, "name", &jn) ||
	    !json_object_is_type(jn, json_type_string) ||
	    !json_object_object_get_ex(o, "size", &js) ||
	    !json_object_object_get_ex(o, "sha256", &jh) ||
	    !json_object_object_get_ex(o, "kind", &jk))
		return 0;
	const char *name = json_object_get_string(jn);
	Trackd__V1__FilesReply__File *f = NULL;
	for (size_t i = 0; i < fr->n_files; i++)
		if (strcmp(fr->files[i]->name, name) == 0)
			f = fr->files[i];
	if (!f) {
		if (fr->n_files >= FILES_LIST_MAX)
			return TRACKD_ETOOBIG;
		if (fr->n_files == *cap) {
			size_t ncap = *cap ? *cap * 2 : 16;
			void *p = realloc(fr->files, ncap * sizeof *fr->files);
			if (!p)
				return TRACKD_ENOMEM;
			fr->files = p;
			*cap = ncap;
		}
		if (!(f = calloc(1, sizeof *f)))
			return TRACKD_ENOMEM;
		trackd__v1__files_reply__file__init(f);
		fr->files[fr->n_files++] = f;
		if (!(f->name = strdup(name)))
			return TRACKD_ENOMEM;
	}
	free(f->sha256);
	free(f->kind);
	f->sha256 = strdup(json_object_get_string(jh));
	f->kind = strdup(json_object_get_string(jk));
	f->has_size = true;
	f->size = (uint64_t)json_object_get_int64(js);
	return f->sha256 && f->kind ? 0 : TRACKD_ENOMEM;
}

int local_sink_query_files(local_sink *s, const Trackd__V1__FilesRequest *q, uint32_t uid,
                           bool admin, size_t max_bytes, Trackd__V1__FilesReply **out, char *err,
                           size_t errlen)
{
	const struct requester who = {.uid = uid, .admin = admin};
	*out = NULL;
	struct history_source src = {.fd = -1};
	pthread_mutex_lock(&s->mu);
	int rv = run_file_open(s, q->run, RUN_FILES_MANIFEST, &who, &src, err, errlen);
	pthread_mutex_unlock(&s->mu);
	if (rv)
		return rv;
	char *text = NULL;
	size_t len = 0;
	if (src.fd >= 0) {
		rv = fs_read_fd(src.fd, FILES_MANIFEST_MAX, &text, &len);
		close(src.fd);
		if (rv)
			return answered(rv, q->run, err, errlen);
	}
	Trackd__V1__FilesReply *fr = calloc(1, sizeof *fr);
	if (!fr) {
		free(text);
		return answered(TRACKD_ENOMEM, q->run, err, errlen);
	}
	trackd__v1__files_reply__init(fr);
	size_t cap = 0;
	for (char *p = text, *end = text + len; !rv && p && p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break; /* a torn last line */
		*nl = '\0';
		json_object *o = json_tokener_parse(p);
		if (o)
			rv = files_add(fr, &cap, o);
		json_object_put(o);
		p = nl + 1;
	}
	free(text);
	if (!rv && fr->n_files)
		qsort(fr->files, fr->n_files, sizeof *fr->files, file_by_name);
	if (!rv && !(fr->run = strdup(src.path)))
		rv = TRACKD_ENOMEM;
	if (!rv && trackd__v1__files_reply__get_packed_size(fr) > max_bytes)
		rv = TRACKD_ETOOBIG;
	if (rv) {
		for (size_t i = 0; i < fr->n_files; i++)
			file_entry_free(fr->files[i]);
		free(fr->files);
		free(fr->run);
		free(fr);
		if (rv == TRACKD_ETOOBIG) {
			snprintf(err, errlen, "the file list of '%s' is over the reply limit",
			         q->run);
			return TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE;
		}
		return answered(rv, q->run, err, errlen);
	}
	*out = fr;
	return 0;
}

/* ---- run file content ---------------------------------------------------------------- */

static int run_file_refused(int rv, const char *msg, char *err, size_t errlen)
{
	if (err != msg)
		snprintf(err, errlen, "%s", msg);
	switch (rv) {
	case TRACKD_EINVAL: return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	case TRACKD_ENOENT: return TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND;
	case TRACKD_ENOMEM: return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	default: return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
}

/* What a RunFileChunk takes besides its data, at most: the run's path, a
 * name of TRACKD_MAX_FILE_NAME_BYTES, the digest, the kind, numbers, tags. */
#define RUN_FILE_CHUNK_OVERHEAD 4096

int local_sink_query_run_file(local_sink *s, const Trackd__V1__RunFileReadRequest *q, uint32_t uid,
                              bool admin, size_t max_bytes, Trackd__V1__RunFileChunk **out,
                              char *err, size_t errlen)
{
	*out = NULL;
	const char *name = q->name ? q->name : "";
	if (!files_name_valid(name, strlen(name)))
		return run_file_refused(TRACKD_EINVAL,
		                        "not a run file name (relative to files/, no '..')", err,
		                        errlen);
	/* The list checks who asks and reads files.jsonl: the file must be one
	 * the run recorded, with the digest it recorded. */
	Trackd__V1__FilesRequest fq = TRACKD__V1__FILES_REQUEST__INIT;
	fq.run = q->run;
	Trackd__V1__FilesReply *list = NULL;
	int code = local_sink_query_files(s, &fq, uid, admin, SIZE_MAX, &list, err, errlen);
	if (code)
		return code;
	Trackd__V1__FilesReply__File *f = NULL;
	for (size_t i = 0; i < list->n_files && !f; i++)
		if (strcmp(list->files[i]->name, name) == 0)
			f = list->files[i];
	uint8_t digest[32];
	int rv = TRACKD_OK;
	if (!f) {
		snprintf(err, errlen, "run '%s' has no file '%s'", q->run ? q->run : "", name);
		rv = TRACKD_ENOENT;
	} else if (!f->sha256 || !files_parse_digest(f->sha256, strlen(f->sha256), digest)) {
		snprintf(err, errlen, "the file list of '%s' is damaged (digest of '%s')", q->run,
		         name);
		rv = TRACKD_ECORRUPT;
	}
	char dir[4096];
	if (!rv) {
		const struct requester who = {.uid = uid, .admin = admin};
		pthread_mutex_lock(&s->mu);
		code = resolve_for(s, q->run, &who, dir, sizeof dir, err, errlen);
		pthread_mutex_unlock(&s->mu);
		if (code) {
			trackd__v1__files_reply__free_unpacked(list, NULL);
			return code;
		}
	}
	int files_fd = -1;
	if (!rv) {
		char files[4200];
		snprintf(files, sizeof files, "%s/" RUN_FILES_SUBDIR, dir);
		files_fd = open(files, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (files_fd < 0) {
			snprintf(err, errlen, "run '%s' has no files/ dir", q->run);
			rv = TRACKD_ENOENT;
		}
	}
	/* An agent whose replies are capped below a whole piece
	 * (limits.max_message_bytes) gives shorter pieces: the reader goes on
	 * from the offset it got to. A length over the maximum is still refused. */
	uint64_t length = q->has_length ? q->length : 0;
	uint64_t fits =
	    max_bytes > RUN_FILE_CHUNK_OVERHEAD ? max_bytes - RUN_FILE_CHUNK_OVERHEAD : 1;
	if (length <= TRACKD_RUN_FILE_READ_MAX && (length == 0 || length > fits) &&
	    fits < TRACKD_RUN_FILE_READ_MAX)
		length = fits;
	uint8_t *data = NULL;
	size_t len = 0;
	if (!rv)
		rv = run_file_read(files_fd, name, digest, f->size, q->has_offset ? q->offset : 0,
		                   length, &s->verified, &data, &len, err, errlen);
	if (files_fd >= 0)
		close(files_fd);
	Trackd__V1__RunFileChunk *c = NULL;
	if (!rv && !(c = calloc(1, sizeof *c)))
		rv = TRACKD_ENOMEM;
	if (!rv) {
		trackd__v1__run_file_chunk__init(c);
		c->run = list->run;
		list->run = NULL;
		c->name = strdup(name);
		c->sha256 = f->sha256; /* moved from the list into the answer */
		c->kind = f->kind;
		f->sha256 = NULL;
		f->kind = NULL;
		c->has_offset = c->has_size = c->has_data = c->has_eof = true;
		c->offset = q->has_offset ? q->offset : 0;
		c->size = f->size;
		c->data.data = data;
		c->data.len = len;
		c->eof = c->offset + len == c->size;
		data = NULL;
		if (!c->name) {
			rv = TRACKD_ENOMEM;
		} else if (trackd__v1__run_file_chunk__get_packed_size(c) > max_bytes) {
			snprintf(err, errlen, "a piece of %zu bytes is over the reply limit", len);
			rv = TRACKD_ETOOBIG;
		}
		if (rv) {
			trackd__v1__run_file_chunk__free_unpacked(c, NULL);
			c = NULL;
		}
	}
	free(data);
	trackd__v1__files_reply__free_unpacked(list, NULL);
	if (rv == TRACKD_ETOOBIG)
		return TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE;
	if (rv)
		return run_file_refused(rv, err, err, errlen);
	*out = c;
	return 0;
}
