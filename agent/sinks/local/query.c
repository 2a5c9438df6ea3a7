/* Queries answered from the local run store (routed here by agent/cmd/queries.c).
 * JSON shapes (the contract the CLI and the Python Api read):
 *   runs    {"runs":[RUN,...]}, oldest first, paged by offset/limit *   run     RUN
 * (agent/cmd/queries.c puts it in {"run":RUN,"upload":UPLOAD}), and the run's typed identity
 *   history {"run":"e/p/id","from_line":N,"next_line":M,"total_lines":T,"lines":[ROW,...]}
 *   rename  {"ok":true}
 * RUN is run_to_json() with summary and config. Runs in memory answer from memory;
 * others from their snapshot on disk. */
#include "local_sink_internal.h"

#include "errors.h"
#include "files.h"

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

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

/* The typed identity of a run (malloc'd throughout, for free_unpacked), or
 * NULL without memory. */
static Trackd__V1__RunIdentity *identity_of(const struct run *r, const char *dir)
{
	Trackd__V1__RunIdentity *id = malloc(sizeof *id);
	if (!id)
		return NULL;
	trackd__v1__run_identity__init(id);
	char path[1024];
	snprintf(path, sizeof path, "%s/%s/%s", r->entity, r->project, r->id);
	id->id = dup_or_empty(r->id);
	id->entity = dup_or_empty(r->entity);
	id->project = dup_or_empty(r->project);
	id->path = dup_or_empty(path);
	id->display_name = dup_or_empty(r->display_name);
	id->state = dup_or_empty(run_state_name(r->state));
	id->dir = dup_or_empty(dir);
	if (!id->id || !id->entity || !id->project || !id->path || !id->display_name ||
	    !id->state || !id->dir) {
		trackd__v1__run_identity__free_unpacked(id, NULL);
		return NULL;
	}
	return id;
}

/* One RUN of an answer, if the requester may see it and it passes the filter
 * and the page; with `ident`, its typed identity too. */
static int append_run(struct local_sink *s, const char *dir, const char *state_filter,
                      const struct requester *who, struct runs_page *pg, struct buf *out,
                      bool *first, Trackd__V1__RunIdentity **ident)
{
	/* In memory? */
	for (size_t i = 0; i < s->n_active; i++) {
		if (strcmp(s->active[i]->dir, dir) != 0)
			continue;
		struct run *r = s->active[i]->run;
		if (!may_see(who, r) ||
		    (state_filter && *state_filter &&
		     strcmp(state_filter, run_state_name(r->state))) ||
		    !page_takes(pg))
			return TRACKD_OK;
		int rv = *first ? 0 : buf_putc(out, ',');
		*first = false;
		if (!rv && ident && !(*ident = identity_of(r, dir)))
			rv = TRACKD_ENOMEM;
		return rv ? rv : run_to_json(r, dir, true, out);
	}
	struct run *r;
	if (sink_load_snapshot(dir, &r) != 0)
		return TRACKD_OK; /* not yet checkpointed: shown once it is */
	int rv = TRACKD_OK;
	if (may_see(who, r) &&
	    (!state_filter || !*state_filter ||
	     strcmp(state_filter, run_state_name(r->state)) == 0) &&
	    page_takes(pg)) {
		rv = *first ? 0 : buf_putc(out, ',');
		*first = false;
		if (!rv && ident && !(*ident = identity_of(r, dir)))
			rv = TRACKD_ENOMEM;
		if (!rv)
			rv = run_to_json(r, dir, true, out);
	}
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
                      const struct requester *who, struct buf *out)
{
	struct run_dir *list = NULL;
	size_t n = 0;
	struct runs_page pg = {.skip = q->has_offset ? q->offset : 0,
	                       .left = q->has_limit && q->limit ? q->limit : UINT64_MAX};
	collect_runs(s, q->project, &list, &n);
	if (n)
		qsort(list, n, sizeof *list, by_name);
	int rv = buf_puts(out, "{\"runs\":[");
	bool first = true;
	for (size_t i = 0; i < n; i++) {
		if (!rv)
			rv = append_run(s, list[i].path, q->state, who, &pg, out, &first, NULL);
		free(list[i].path);
		free(list[i].name);
	}
	free(list);
	return rv ? rv : buf_puts(out, "]}");
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
                     struct buf *out, Trackd__V1__RunIdentity **ident, char *err, size_t errlen)
{
	char dir[4096];
	int code = resolve_for(s, ref, who, dir, sizeof dir, err, errlen);
	if (code)
		return code;
	bool first = true;
	int rv = append_run(s, dir, NULL, who, NULL, out, &first, ident);
	if (!rv && first) /* the dir exists, but its first checkpoint has not happened */
		return not_found(err, errlen, ref);
	return rv;
}

/* ---- history ------------------------------------------------------------------------- */

/* Skips one JSON value starting at p (a history line we wrote ourselves, so it
 * is well formed); returns the position after it. */
static const char *skip_value(const char *p, const char *end)
{
	int depth = 0;
	bool in_string = false;
	for (; p < end; p++) {
		char c = *p;
		if (in_string) {
			if (c == '\\')
				p++;
			else if (c == '"')
				in_string = false;
			else
				continue;
			if (depth == 0)
				return p + 1;
			continue;
		}
		if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']') {
			if (depth == 0)
				return p; /* end of the enclosing object */
			if (--depth == 0)
				return p + 1;
		} else if (c == ',' && depth == 0)
			return p;
	}
	return end;
}

static bool key_wanted(const Trackd__V1__HistoryRequest *q, const char *key, size_t len)
{
	if (len == 5 && memcmp(key, "_step", 5) == 0)
		return true;
	for (size_t i = 0; i < q->n_keys; i++)
		if (strlen(q->keys[i]) == len && memcmp(q->keys[i], key, len) == 0)
			return true;
	return false;
}

/* Copies the members of a one-line JSON object whose keys were asked for. Keys in
 * our files never contain escaped quotes in a way that matters here: the
 * comparison is on the raw (escaped) text, which is what the client sent. */
static int filter_line(const Trackd__V1__HistoryRequest *q, const char *line, size_t len,
                       struct buf *out)
{
	const char *p = line + 1, *end = line + len;
	int rv = buf_putc(out, '{');
	bool first = true;
	while (!rv && p < end && *p == '"') {
		const char *k = p + 1, *kend = k;
		while (kend < end && *kend != '"')
			kend += *kend == '\\' ? 2 : 1;
		const char *v = kend + 2; /* past '":' */
		const char *vend = skip_value(v, end);
		if (key_wanted(q, k, (size_t)(kend - k))) {
			if (!first)
				rv = buf_putc(out, ',');
			first = false;
			if (!rv)
				rv = buf_append(out, p, (size_t)(vend - p));
		}
		p = vend < end && *vend == ',' ? vend + 1 : end;
	}
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

static int history_open(struct local_sink *s, const Trackd__V1__HistoryRequest *q,
                        const struct requester *who, struct history_source *src, char *err,
                        size_t errlen)
{
	char dir[4096];
	int code = resolve_for(s, q->run, who, dir, sizeof dir, err, errlen);
	if (code)
		return code;
	struct active_run *ar = sink_find_active(s, q->run);
	if (ar)
		sink_flush_run(s, ar); /* the rows applied so far are in the file */
	src->fd = -1;
	src->length = 0;
	char file[4200];
	snprintf(file, sizeof file, "%s/%s", dir, HISTORY_FILE);
	struct stat st;
	src->fd = open(file, O_RDONLY | O_CLOEXEC);
	if (src->fd < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot read the history of '%s': %s", q->run,
		         strerror(errno));
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

#define HISTORY_CHUNK (64 * 1024)

/* One line of the answer: the whole line, or its filtered keys. */
static int emit_line(const Trackd__V1__HistoryRequest *q, const char *line, size_t len, bool first,
                     struct buf *out)
{
	int rv = first ? 0 : buf_putc(out, ',');
	if (!rv)
		rv = q->n_keys ? filter_line(q, line, len, out) : buf_append(out, line, len);
	return rv;
}

static int history_stream(const Trackd__V1__HistoryRequest *q, struct history_source *src,
                          struct buf *out)
{
	int rv = buf_puts(out, "{\"run\":");
	if (!rv)
		rv = json_write_string(out, src->path);
	if (!rv)
		rv = buf_printf(out, ",\"from_line\":%" PRIu64 ",\"lines\":[", q->from_line);
	uint64_t line_no = 0, emitted = 0, left = src->length;
	char *chunk = src->fd >= 0 ? malloc(HISTORY_CHUNK) : NULL;
	if (src->fd >= 0 && !chunk)
		rv = TRACKD_ENOMEM;
	/* A wanted line that crosses a chunk boundary is gathered here. */
	struct buf line;
	buf_init(&line, out->max); /* a line never outgrows the answer */
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
			    line_no >= q->from_line && (!q->max_lines || emitted < q->max_lines);
			if (!nl) {
				if (wanted)
					rv = buf_append(&line, p, (size_t)(end - p));
				break;
			}
			if (wanted) {
				if (line.len) {
					rv = buf_append(&line, p, (size_t)(nl - p));
					if (!rv)
						rv = emit_line(q, line.data, line.len, emitted == 0,
						               out);
					buf_reset(&line);
				} else {
					rv = emit_line(q, p, (size_t)(nl - p), emitted == 0, out);
				}
				emitted++;
			}
			line_no++;
			p = nl + 1;
		}
	}
	/* A last line without its newline is being written: not yet history. */
	buf_fini(&line);
	free(chunk);
	uint64_t next = q->from_line + emitted;
	if (!rv)
		rv = buf_printf(out, "],\"next_line\":%" PRIu64 ",\"total_lines\":%" PRIu64 "}",
		                next, line_no);
	return rv;
}

/* ---- rename -------------------------------------------------------------------------- */

static int query_rename(struct local_sink *s, const Trackd__V1__RenameRequest *q,
                        const struct requester *who, struct buf *out, char *err, size_t errlen)
{
	char dir[4096];
	int code = resolve_for(s, q->run, who, dir, sizeof dir, err, errlen);
	if (code)
		return code;
	if (!q->name || !*q->name) {
		snprintf(err, errlen, "rename needs a non-empty name");
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	const char *slash = strrchr(q->run, '/');
	Trackd__V1__RunRename rn = TRACKD__V1__RUN_RENAME__INIT;
	rn.display_name = q->name;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = (char *)(slash ? slash + 1 : q->run);
	rec.body_case = TRACKD__V1__RECORD__BODY_RENAME;
	rec.rename = &rn;
	int rv = s->opts.submit(s->opts.submit_arg, &rec);
	if (rv != 0) {
		snprintf(err, errlen, "cannot record the rename: %s", trackd_strerror(rv));
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	return buf_puts(out, "{\"ok\":true}");
}

/* A buffer limit or allocation failure (< 0) is answered as too large. */
static int answered(int rv, char *err, size_t errlen)
{
	if (rv < 0) {
		snprintf(err, errlen, "answer too large or out of memory: %s", trackd_strerror(rv));
		return TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE;
	}
	return rv;
}

int local_sink_query_runs(local_sink *s, const Trackd__V1__RunsRequest *q, uint32_t uid, bool admin,
                          struct buf *out, char *err, size_t errlen)
{
	const struct requester who = {.uid = uid, .admin = admin};
	pthread_mutex_lock(&s->mu);
	int rv = query_runs(s, q, &who, out);
	pthread_mutex_unlock(&s->mu);
	return answered(rv, err, errlen);
}

int local_sink_query_run(local_sink *s, const char *ref, uint32_t uid, bool admin, struct buf *out,
                         Trackd__V1__RunIdentity **ident, char *err, size_t errlen)
{
	const struct requester who = {.uid = uid, .admin = admin};
	*ident = NULL;
	pthread_mutex_lock(&s->mu);
	int rv = query_run(s, ref, &who, out, ident, err, errlen);
	pthread_mutex_unlock(&s->mu);
	return answered(rv, err, errlen);
}

int local_sink_query_history(local_sink *s, const Trackd__V1__HistoryRequest *q, uint32_t uid,
                             bool admin, struct buf *out, char *err, size_t errlen)
{
	const struct requester who = {.uid = uid, .admin = admin};
	/* Only the file is looked up under the lock; see history_source. */
	struct history_source src = {.fd = -1};
	pthread_mutex_lock(&s->mu);
	int rv = history_open(s, q, &who, &src, err, errlen);
	pthread_mutex_unlock(&s->mu);
	if (rv == 0)
		rv = history_stream(q, &src, out);
	if (src.fd >= 0)
		close(src.fd);
	return answered(rv, err, errlen);
}

int local_sink_query_rename(local_sink *s, const Trackd__V1__RenameRequest *q, uint32_t uid,
                            bool admin, struct buf *out, char *err, size_t errlen)
{
	const struct requester who = {.uid = uid, .admin = admin};
	pthread_mutex_lock(&s->mu);
	int rv = query_rename(s, q, &who, out, err, errlen);
	pthread_mutex_unlock(&s->mu);
	return answered(rv, err, errlen);
}
