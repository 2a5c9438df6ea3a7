/* cmd_import.c — trackctl import [--entity E] [--project P] PATH…
 *
 * Imports W&B's own transaction files (`run-<id>.wandb`): PATH is such a file,
 * a run directory (`wandb/run-*`, `wandb/offline-run-*`) holding one, or a
 * `wandb/` directory whose run directories hold them. Each file is read with
 * import/wandb_txlog.h (intact records only; damage reported by file offset
 * on stderr) and converted with import/wandb_convert.h into trackd records,
 * which go to the agent through its socket like any client's — batches of a
 * session of this process, each acknowledged before the next is sent — so
 * the agent's ownership rules apply: the imported runs belong to the caller.
 * The runs are offline runs: `trackctl sync` uploads them.
 *
 * Importing twice duplicates nothing: before a run's first record the agent
 * is asked for a run with its id; an imported run that has ended is skipped
 * ("already imported") when it holds as many rows as the file (else the file
 * is reported: an earlier import stopped halfway, or the file changed, and
 * nothing is added), any other run with that id stops the file's import (an
 * id belongs to one run). A batch the agent refuses for its content
 * (a value over a limit) is sent again record by record, and the refused
 * records are reported and skipped.
 *
 * Progress: on a terminal (stderr), one updating line as `trackctl sync`
 * draws it (sync_progress.h: files, rows, bytes of the files read); every
 * file's outcome is one line on stdout. Exit 0 when every file was imported
 * or already was (damage is reported, not an error), 1 otherwise. */
#include "cli.h"

#include "errors.h"
#include "import/wandb_convert.h"
#include "import/wandb_txlog.h"
#include "sync_progress.h"
#include "varint.h"

#include "trackd/v1/limits.h"
#include "trackd/v1/wire.h"

#include <dirent.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define IMPORT_MAX_FILES     100000u
#define IMPORT_BATCH_BYTES   (1u << 20) /* flushed past this (or the agent's limit / 2) */
#define IMPORT_BATCH_RECORDS 4096u
#define IMPORT_RETRY_S       60 /* a batch the agent cannot take now is sent again so long */

struct import_file {
	char *path;
	uint64_t size;
};

struct batch {
	struct buf bytes;  /* the packed Batch: session_id, seq, records */
	size_t *rec_start; /* each record's field, for a resend one by one */
	uint64_t *rec_src; /* the W&B record's file offset */
	size_t n, cap;
};

struct import_ctx {
	agent_client *agent;
	const char *entity, *project;
	bool tty, line_drawn;
	uint8_t session[TRACKD_SESSION_ID_BYTES];
	uint64_t seq;
	uint64_t max_bytes, max_records;
	struct batch b;
	const char *file;  /* being imported */
	uint64_t refused;  /* records of the file the agent refused */
	bool start_unsent; /* the file's first batch (its run's start) is not acknowledged yet */
	char existing[64];
	uint64_t existing_rows; /* rows the run there has (and refused) */
	/* progress */
	size_t files_done, files_total;
	uint64_t bytes_before, bytes_total, rows;
	wtx_reader *reader;
	double t0, last_t, rate, last_draw;
	uint64_t last_bytes;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void clear_line(struct import_ctx *c)
{
	if (c->tty && c->line_drawn) {
		fputs("\r\x1b[K", stderr);
		fflush(stderr);
		c->line_drawn = false;
	}
}

static void say(struct import_ctx *c, FILE *to, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(struct import_ctx *c, FILE *to, const char *fmt, ...)
{
	clear_line(c);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(to, fmt, ap);
	va_end(ap);
	fputc('\n', to);
	fflush(to);
}

static void draw(struct import_ctx *c, bool force)
{
	double now = now_s();
	if (!c->tty || (!force && now - c->last_draw < 0.2))
		return;
	c->last_draw = now;
	struct sync_totals t = {.runs_done = c->files_done,
	                        .runs_total = c->files_total,
	                        .rows = c->rows,
	                        .rows_total = c->rows,
	                        .bytes =
	                            c->bytes_before + (c->reader ? wtx_position(c->reader) : 0),
	                        .bytes_total = c->bytes_total};
	if (now - c->last_t >= 0.5) {
		uint64_t delta = t.bytes > c->last_bytes ? t.bytes - c->last_bytes : 0;
		c->rate = sync_rate_update(c->rate, delta, now - c->last_t, 3.0);
		c->last_t = now;
		c->last_bytes = t.bytes;
	}
	t.rate = c->rate;
	struct winsize ws;
	int width = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
	char line[512];
	sync_progress_line(&t, width - 1, line, sizeof line);
	fprintf(stderr, "\r%s\x1b[K", line);
	fflush(stderr);
	c->line_drawn = true;
}

/* ---- files ------------------------------------------------------------------------ */

static int add_file(struct import_file **files, size_t *n, const char *path, uint64_t size)
{
	if (*n >= IMPORT_MAX_FILES) {
		fprintf(stderr, "trackctl: import: more than %u files; import them in parts\n",
		        IMPORT_MAX_FILES);
		return -1;
	}
	struct import_file *p = realloc(*files, (*n + 1) * sizeof *p);
	if (!p)
		return -1;
	*files = p;
	p[*n].path = strdup(path);
	p[*n].size = size;
	if (!p[*n].path)
		return -1;
	(*n)++;
	return 0;
}

static bool is_txlog_name(const char *name)
{
	size_t n = strlen(name);
	return strncmp(name, "run-", 4) == 0 && n > 10 && strcmp(name + n - 6, ".wandb") == 0;
}

static bool is_run_dir_name(const char *name)
{
	return strncmp(name, "run-", 4) == 0 || strncmp(name, "offline-run-", 12) == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The run-<id>.wandb files of `dir`; `depth` 1: also those of its run
 * directories (a wandb/ directory). Sorted, so runs import in time order. */
static int scan_dir(const char *dir, int depth, struct import_file **files, size_t *n)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "trackctl: import: cannot read %s\n", dir);
		return -1;
	}
	char **names = NULL;
	size_t nn = 0, cap = 0;
	struct dirent *e;
	int rv = 0;
	while ((e = readdir(d)) != NULL && !rv) {
		if (!is_txlog_name(e->d_name) && !(depth > 0 && is_run_dir_name(e->d_name)))
			continue;
		if (nn == cap) {
			cap = cap ? cap * 2 : 16;
			char **p = realloc(names, cap * sizeof *p);
			if (!p) {
				rv = -1;
				break;
			}
			names = p;
		}
		if (!(names[nn] = strdup(e->d_name)))
			rv = -1;
		else
			nn++;
	}
	closedir(d);
	if (nn)
		qsort(names, nn, sizeof *names, cmp_str);
	for (size_t i = 0; i < nn && !rv; i++) {
		char path[4096];
		struct stat st;
		if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path ||
		    stat(path, &st) != 0)
			continue;
		if (S_ISREG(st.st_mode) && is_txlog_name(names[i]))
			rv = add_file(files, n, path, (uint64_t)st.st_size);
		else if (S_ISDIR(st.st_mode) && depth > 0)
			rv = scan_dir(path, depth - 1, files, n);
	}
	for (size_t i = 0; i < nn; i++)
		free(names[i]);
	free(names);
	return rv;
}

static int collect(const char *path, struct import_file **files, size_t *n)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		fprintf(stderr, "trackctl: import: %s: no such file or directory\n", path);
		return -1;
	}
	if (S_ISREG(st.st_mode))
		return add_file(files, n, path, (uint64_t)st.st_size);
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "trackctl: import: %s: not a file or directory\n", path);
		return -1;
	}
	size_t before = *n;
	if (scan_dir(path, 1, files, n) != 0)
		return -1;
	/* A project's directory: its wandb/ (or .wandb/, W&B's other name). */
	for (const char *sub = "wandb"; *n == before && sub; sub = *sub == 'w' ? ".wandb" : NULL) {
		char inner[4096];
		if (snprintf(inner, sizeof inner, "%s/%s", path, sub) < (int)sizeof inner &&
		    stat(inner, &st) == 0 && S_ISDIR(st.st_mode) &&
		    scan_dir(inner, 1, files, n) != 0)
			return -1;
	}
	if (*n == before) {
		fprintf(stderr,
		        "trackctl: import: %s holds no run-<id>.wandb file (nor do run-* or "
		        "offline-run-* directories in it)\n",
		        path);
		return -1;
	}
	return 0;
}

/* ---- batches ---------------------------------------------------------------------- */

static int batch_begin(struct import_ctx *c)
{
	struct batch *b = &c->b;
	b->bytes.len = 0;
	b->n = 0;
	uint8_t head[2 + TRACKD_SESSION_ID_BYTES + 1 + VARINT_MAX_BYTES];
	size_t n = 0;
	head[n++] = WIRE_KEY(BATCH, SESSION_ID);
	head[n++] = TRACKD_SESSION_ID_BYTES;
	memcpy(head + n, c->session, TRACKD_SESSION_ID_BYTES);
	n += TRACKD_SESSION_ID_BYTES;
	head[n++] = WIRE_KEY(BATCH, SEQ);
	n += varint_put(head + n, ++c->seq);
	return buf_append(&b->bytes, head, n);
}

/* The agent's refusal of one record: reported, the import goes on. */
static void refused(struct import_ctx *c, uint64_t src, const struct agent_error *err)
{
	c->refused++;
	say(c, stderr,
	    "trackctl: import %s: the record at offset %llu was refused by the agent: %s", c->file,
	    (unsigned long long)src, err->message);
}

/* A batch the agent could not take now (disk budget, shutting down, no
 * answer in time) is sent again, the same bytes: the agent appends a seq of
 * the session once, so a resend of one it did append is only acknowledged. */
static bool retryable(int rv, const struct agent_error *err)
{
	return rv == TRACKD_ETIMEDOUT || rv == TRACKD_EIO ||
	       (rv == TRACKD_EINVAL &&
	        err->remote_code == TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE);
}

static int send_bytes(struct import_ctx *c, const uint8_t *p, size_t len, struct agent_error *err)
{
	bool dup;
	Trackd__V1__Limits lim;
	int rv = agent_batch(c->agent, p, len, &dup, &lim, err);
	double waited = 0, pause = 0.2;
	while (rv != 0 && retryable(rv, err) && waited < IMPORT_RETRY_S) {
		if (waited == 0)
			say(c, stderr, "trackctl: import %s: %s; trying again for up to %d s",
			    c->file, err->message, IMPORT_RETRY_S);
		struct timespec ts = {(time_t)pause, (long)((pause - (double)(time_t)pause) * 1e9)};
		nanosleep(&ts, NULL);
		waited += pause;
		pause = pause * 2 < 2 ? pause * 2 : 2;
		rv = agent_batch(c->agent, p, len, &dup, &lim, err);
	}
	if (rv == 0) {
		if (lim.has_max_message_bytes && lim.max_message_bytes)
			c->max_bytes = lim.max_message_bytes;
		if (lim.has_max_records_per_batch && lim.max_records_per_batch)
			c->max_records = lim.max_records_per_batch;
	}
	return rv;
}

static bool content_refusal(int rv, const struct agent_error *err)
{
	return rv == TRACKD_EINVAL && (err->remote_code == TRACKD__V1__ERROR_CODE__ERROR_INVALID ||
	                               err->remote_code == TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE);
}

static int batch_flush(struct import_ctx *c)
{
	struct batch *b = &c->b;
	if (b->n == 0)
		return 0;
	struct agent_error err;
	int rv = send_bytes(c, (const uint8_t *)b->bytes.data, b->bytes.len, &err);
	if (rv != 0 && content_refusal(rv, &err)) {
		/* One record spoils the batch: each goes alone, the bad ones stay out. */
		struct buf all = b->bytes;
		size_t *starts = b->rec_start;
		uint64_t *src = b->rec_src;
		size_t n = b->n;
		buf_init(&b->bytes, all.max);
		rv = 0;
		for (size_t i = 0; i < n && !rv; i++) {
			size_t end = i + 1 < n ? starts[i + 1] : all.len;
			if ((rv = batch_begin(c)) == 0)
				rv = buf_append(&b->bytes, all.data + starts[i], end - starts[i]);
			b->n = 1;
			if (rv)
				break;
			rv = send_bytes(c, (const uint8_t *)b->bytes.data, b->bytes.len, &err);
			/* Without its start the run's other records have nowhere to go. */
			if (rv != 0 && content_refusal(rv, &err) && !(i == 0 && c->start_unsent)) {
				refused(c, src[i], &err);
				rv = 0;
			}
			if (rv == 0)
				c->start_unsent = false;
		}
		buf_fini(&all);
	}
	if (rv != 0) {
		clear_line(c);
		if (content_refusal(rv, &err))
			fprintf(stderr, "trackctl: import %s: the agent refused the run: %s\n",
			        c->file, err.message);
		else
			agent_print_error(agent_url(c->agent), rv, &err, NULL);
		return rv;
	}
	c->start_unsent = false;
	return batch_begin(c);
}

static int on_emit(void *arg, const Trackd__V1__Record *rec, uint64_t offset)
{
	struct import_ctx *c = arg;
	struct batch *b = &c->b;
	size_t len = trackd__v1__record__get_packed_size(rec);
	uint64_t limit =
	    c->max_bytes / 2 < IMPORT_BATCH_BYTES ? c->max_bytes / 2 : IMPORT_BATCH_BYTES;
	uint64_t max_n =
	    c->max_records < IMPORT_BATCH_RECORDS ? c->max_records : IMPORT_BATCH_RECORDS;
	int rv;
	if (b->n > 0 && (b->bytes.len + len > limit || b->n >= max_n) && (rv = batch_flush(c)) != 0)
		return rv;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		size_t *s = realloc(b->rec_start, cap * sizeof *s);
		if (s)
			b->rec_start = s;
		uint64_t *o = realloc(b->rec_src, cap * sizeof *o);
		if (o)
			b->rec_src = o;
		if (!s || !o)
			return TRACKD_ENOMEM;
		b->cap = cap;
	}
	uint8_t head[1 + VARINT_MAX_BYTES];
	size_t hn = 0;
	head[hn++] = WIRE_KEY(BATCH, RECORDS);
	hn += varint_put(head + hn, len);
	b->rec_start[b->n] = b->bytes.len;
	b->rec_src[b->n] = offset;
	uint8_t *packed = malloc(len ? len : 1);
	if (!packed)
		return TRACKD_ENOMEM;
	trackd__v1__record__pack(rec, packed);
	rv = buf_append(&b->bytes, head, hn);
	if (!rv)
		rv = buf_append(&b->bytes, packed, len);
	free(packed);
	if (rv) {
		b->bytes.len = b->rec_start[b->n];
		return rv;
	}
	b->n++;
	if (rec->body_case == TRACKD__V1__RECORD__BODY_HISTORY)
		c->rows++;
	return 0;
}

/* Before the run's first record: is it in the store already? */
static int on_begin(void *arg, const char *run_id, const char *entity, const char *project)
{
	(void)entity;
	(void)project;
	struct import_ctx *c = arg;
	struct cli_query cq;
	cli_query_run(&cq, run_id);
	Trackd__V1__Reply *reply = NULL;
	const Trackd__V1__QueryReply *qr = NULL;
	struct agent_error err;
	int rv = agent_query(c->agent, &cq.q, &reply, &qr, &err);
	if (rv == TRACKD_ENOENT)
		return 0;
	if (rv != 0) {
		clear_line(c);
		char what[128];
		snprintf(what, sizeof what, "run %s", run_id);
		agent_print_error(agent_url(c->agent), rv, &err, what);
		return rv;
	}
	const Trackd__V1__RunInfo *ri = qr->run->run;
	bool imported = ri && ri->has_imported && ri->imported;
	const char *state = ri && ri->state ? ri->state : "";
	snprintf(c->existing, sizeof c->existing, "%s", state);
	c->existing_rows = (ri && ri->has_history_lines ? ri->history_lines : 0) +
	                   (ri && ri->has_rows_rejected ? ri->rows_rejected : 0);
	rv = imported && strcmp(state, "running") != 0 ? WBC_SKIP : TRACKD_EEXIST;
	if (rv == TRACKD_EEXIST)
		say(c, stderr,
		    "trackctl: import %s: a run with id %s exists already (%s, %s); an id belongs "
		    "to one run, so this file is not imported",
		    c->file, run_id,
		    imported ? "an import still running or interrupted" : "not imported", state);
	trackd__v1__reply__free_unpacked(reply, NULL);
	return rv;
}

static void on_damage(void *arg, const struct wtx_damage *d)
{
	struct import_ctx *c = arg;
	say(c, stderr, "trackctl: import %s: damaged at offset %llu (%llu bytes skipped): %s",
	    c->file, (unsigned long long)d->offset, (unsigned long long)d->skipped, d->what);
}

/* The id of a file name run-<id>.wandb. */
static void id_of_name(const char *path, char *out, size_t len)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	out[0] = '\0';
	size_t n = strlen(base);
	if (is_txlog_name(base) && n - 10 < len) {
		memcpy(out, base + 4, n - 10);
		out[n - 10] = '\0';
	}
}

enum outcome { IMPORTED, SKIPPED, FAILED };

static enum outcome import_one(struct import_ctx *c, const struct import_file *f)
{
	c->file = f->path;
	c->refused = 0;
	c->start_unsent = true;
	FILE *fp = fopen(f->path, "rb");
	if (!fp) {
		say(c, stderr, "trackctl: import %s: cannot open it", f->path);
		return FAILED;
	}
	char why[200];
	int rv = wtx_open(fp, 0, on_damage, c, &c->reader, why, sizeof why);
	if (rv != 0) {
		say(c, stderr, "trackctl: import %s: %s; nothing imported", f->path, why);
		return FAILED;
	}
	char file_id[WBC_MAX_ID_BYTES + 1];
	id_of_name(f->path, file_id, sizeof file_id);
	struct wbc_options o = {.entity = c->entity,
	                        .project = c->project,
	                        .file_id = file_id,
	                        .pid = (int32_t)getpid(),
	                        .begin = on_begin,
	                        .emit = on_emit,
	                        .arg = c};
	wbc *conv = NULL;
	rv = wbc_new(&o, &conv);
	if (!rv)
		rv = batch_begin(c);
	const uint8_t *data;
	size_t len;
	uint64_t off;
	int got;
	while (!rv && (got = wtx_next(c->reader, &data, &len, &off)) == 1) {
		rv = wbc_record(conv, data, len, off);
		draw(c, false);
	}
	if (!rv && got < 0)
		rv = got;
	if (!rv)
		rv = wbc_finish(conv);
	if (!rv)
		rv = batch_flush(c);
	uint64_t damages = wtx_damage_count(c->reader);
	wtx_close(c->reader);
	c->reader = NULL;
	const struct wbc_stats *st = conv ? wbc_stats(conv) : NULL;
	enum outcome out = FAILED;
	if (rv == TRACKD_EIO) {
		say(c, stderr, "trackctl: import %s: reading it failed", f->path);
	} else if (rv == TRACKD_EINVAL && st && !st->started) {
		say(c, stderr,
		    "trackctl: import %s: no usable run id (no run record, and the file "
		    "name is not run-<id>.wandb)",
		    f->path);
	} else if (rv == TRACKD_ENOMEM) {
		say(c, stderr, "trackctl: import %s: out of memory", f->path);
	} else if (rv == 0 && st && st->skipped && st->rows != c->existing_rows) {
		/* Its rows tell an import that stopped halfway (or another file of
		 * the run) from this one done before. */
		say(c, stderr,
		    "trackctl: import %s: run %s was imported before with %llu rows, the file "
		    "has %llu (an earlier import was interrupted, or the file changed); nothing "
		    "added",
		    f->path, st->run_id, (unsigned long long)c->existing_rows,
		    (unsigned long long)st->rows);
	} else if (rv == 0 && st && st->skipped) {
		say(c, stdout, "skipped %s: run %s already imported (%s)", f->path, st->run_id,
		    c->existing);
		out = SKIPPED;
	} else if (rv == 0 && st && !st->started) {
		say(c, stderr, "trackctl: import %s: no run in it (%llu records, none of a run)",
		    f->path, (unsigned long long)st->records);
	} else if (rv == 0 && st) {
		char state[64];
		if (!st->have_exit)
			snprintf(state, sizeof state, "crashed");
		else
			snprintf(state, sizeof state, "%s, exit code %d",
			         st->exit_code == 0 ? "finished" : "failed", st->exit_code);
		say(c, stdout,
		    "imported %s: run %s, %llu rows, %llu console lines, %llu system samples, %s",
		    f->path, st->run_id, (unsigned long long)st->rows,
		    (unsigned long long)st->console_lines, (unsigned long long)st->samples, state);
		if (!st->have_exit)
			say(c, stderr,
			    "trackctl: import %s: no exit record (the process died, or the file is "
			    "cut short): run %s is marked crashed",
			    f->path, st->run_id);
		if (st->no_run_record)
			say(c, stderr,
			    "trackctl: import %s: no run record: the id comes from the file name; "
			    "project, name and config are unknown",
			    f->path);
		if (st->undecodable || st->bad_values)
			say(c, stderr,
			    "trackctl: import %s: %llu records that do not decode and %llu values "
			    "that are not JSON were skipped",
			    f->path, (unsigned long long)st->undecodable,
			    (unsigned long long)st->bad_values);
		if (damages || c->refused)
			say(c, stderr,
			    "trackctl: import %s: %llu damaged places and %llu refused records "
			    "skipped; every intact record was imported",
			    f->path, (unsigned long long)damages, (unsigned long long)c->refused);
		out = IMPORTED;
	}
	wbc_free(conv);
	return out;
}

int cmd_import(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"entity", required_argument, NULL, 'e'},
	    {"project", required_argument, NULL, 'p'},
	    {0},
	};
	struct import_ctx c = {.max_bytes = TRACKD_DEFAULT_MAX_MESSAGE_BYTES,
	                       .max_records = TRACKD_DEFAULT_MAX_RECORDS_PER_BATCH};
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'e': c.entity = optarg; break;
		case 'p': c.project = optarg; break;
		default: return cli_bad_option("import", argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error("import takes at least one PATH");
	if ((c.entity && !*c.entity) || (c.project && !*c.project))
		return cli_usage_error("import: --entity and --project take a name");
	struct import_file *files = NULL;
	size_t n = 0;
	int code = 0;
	for (int i = optind; i < argc && !code; i++)
		code = collect(argv[i], &files, &n) != 0;
	if (!code && getrandom(c.session, sizeof c.session, 0) != (ssize_t)sizeof c.session) {
		fprintf(stderr, "trackctl: import: no random bytes for the session id\n");
		code = 1;
	}
	if (!code)
		code = cli_connect(&c.agent);
	buf_init(&c.b.bytes, (size_t)TRACKD_DEFAULT_MAX_MESSAGE_BYTES * 4);
	size_t done = 0, skipped = 0, failed = 0;
	c.tty = isatty(STDERR_FILENO);
	c.files_total = n;
	for (size_t i = 0; i < n; i++)
		c.bytes_total += files[i].size;
	c.t0 = c.last_t = now_s();
	for (size_t i = 0; i < n && !code; i++) {
		switch (import_one(&c, &files[i])) {
		case IMPORTED: done++; break;
		case SKIPPED: skipped++; break;
		case FAILED: failed++; break;
		}
		c.files_done++;
		c.bytes_before += files[i].size;
		draw(&c, true);
	}
	clear_line(&c);
	if (!code && n)
		printf(
		    "import: %zu imported, %zu already imported, %zu failed; %llu rows in %.1f s\n",
		    done, skipped, failed, (unsigned long long)c.rows, now_s() - c.t0);
	for (size_t i = 0; i < n; i++)
		free(files[i].path);
	free(files);
	buf_fini(&c.b.bytes);
	free(c.b.rec_start);
	free(c.b.rec_src);
	agent_close(c.agent);
	return code || failed ? 1 : 0;
}
