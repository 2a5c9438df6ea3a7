/* cmd_sync.c — trackctl sync [RUN… | --all] [--entity E] [--project P] [--force]
 *
 * Uploads offline runs to W&B through the agent's wandb sink (the API key stays
 * in the agent): for each run a "sync" query starts (or joins, or retries) the
 * agent's sync job, then "sync_status" queries follow it until it is synced or
 * stopped (both answer a typed SyncProgress). At most SYNC_WINDOW runs are in
 * progress at once. A job lives in the agent: killing trackctl does not stop
 * it, and running trackctl sync again joins it; if the agent restarted under us
 * (the job is "idle"), it is started again and resumes at its recorded offsets.
 *
 * On a terminal (stderr), one updating progress line (runs, rows, bytes, rate,
 * ETA); otherwise plain lines. Every run's outcome is one line on stdout.
 * Exit 0 when every requested run is synced (or was already), 1 otherwise. */
#include "cli.h"

#include "errors.h"
#include "sync_progress.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SYNC_WINDOW      4
#define SYNC_POLL_MS     200
#define SYNC_MAX_RESTART 20 /* agent restarts survived per run */

enum job_state { JOB_PENDING, JOB_ACTIVE, JOB_DONE, JOB_SKIPPED, JOB_FAILED };

struct job {
	char *ref; /* as given, or entity/project/id from the listing */
	char *path;
	enum job_state state;
	int restarts;
	uint64_t rows, rows_total, bytes, bytes_total;
	char remote_state[32];
	char last_error[200]; /* the last retried error reported */
};

struct sync_ctx {
	agent_client *agent;
	bool force, tty;
	struct job *jobs;
	size_t n;
	double t0, last_t;
	uint64_t last_bytes;
	double rate;
	bool line_drawn;
	int fatal; /* an answer that concerns every run (no wandb sink, agent gone) */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void clear_line(struct sync_ctx *c)
{
	if (c->tty && c->line_drawn) {
		fputs("\r\x1b[K", stderr);
		fflush(stderr);
		c->line_drawn = false;
	}
}

/* One outcome line on stdout (the progress line is cleared first). */
static void say(struct sync_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct sync_ctx *c, const char *fmt, ...)
{
	clear_line(c);
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void fail(struct sync_ctx *c, struct job *j, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct sync_ctx *c, struct job *j, const char *fmt, ...)
{
	clear_line(c);
	va_list ap;
	fprintf(stderr, "trackctl: sync %s: ", j->path ? j->path : j->ref);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	j->state = JOB_FAILED;
}

/* A count of the answer as this command reads it: 0 when unset (or past
 * int64, as the JSON it was once read from would not hold it). */
static uint64_t u64_of(protobuf_c_boolean has, uint64_t v)
{
	return has && v <= (uint64_t)INT64_MAX ? v : 0;
}

static const char *str(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

/* Applies a SYNC answer (see wandb_sink_sync) to the job. */
static void apply_answer(struct sync_ctx *c, struct job *j, const Trackd__V1__SyncProgress *a,
                         bool started)
{
	const char *state = str(a->state, "");
	if (a->path && !j->path)
		j->path = strdup(a->path);
	snprintf(j->remote_state, sizeof j->remote_state, "%s", state);
	j->rows = u64_of(a->has_rows, a->rows);
	j->rows_total = u64_of(a->has_rows_total, a->rows_total);
	j->bytes = u64_of(a->has_bytes, a->bytes);
	j->bytes_total = u64_of(a->has_bytes_total, a->bytes_total);
	const char *name = j->path ? j->path : j->ref;
	if (strcmp(state, "synced") == 0) {
		if (started && a->has_already && a->already) {
			j->state = JOB_SKIPPED;
			say(c, "skipped %s: already synced (--force uploads it again)", name);
			return;
		}
		j->state = JOB_DONE;
		int64_t ms = a->has_elapsed_ms ? a->elapsed_ms : 0;
		char size[16];
		sync_format_bytes(j->bytes, size, sizeof size);
		const char *url = str(a->run_url, "");
		say(c, "synced %s: %llu rows, %llu console lines, %s in %.1f s%s%s", name,
		    (unsigned long long)j->rows,
		    (unsigned long long)u64_of(a->has_console_lines, a->console_lines), size,
		    (double)ms / 1000, *url ? " → " : "", url);
		return;
	}
	if (strcmp(state, "parked") == 0) {
		int64_t status = a->has_last_status ? a->last_status : 0;
		fail(c, j,
		     "stopped on an error that retrying does not fix%s: %s\n"
		     "  %llu of %llu rows are uploaded; fix the cause and run `trackctl sync` "
		     "again to resume",
		     status ? "" : " (local)", str(a->last_error, "?"), (unsigned long long)j->rows,
		     (unsigned long long)j->rows_total);
		return;
	}
	if (strcmp(state, "idle") == 0 && !started) {
		/* No job in the agent (it restarted): start it again; it resumes. */
		j->state = JOB_PENDING;
		if (++j->restarts > SYNC_MAX_RESTART)
			fail(c, j, "the agent dropped the sync %d times; giving up",
			     SYNC_MAX_RESTART);
		return;
	}
	const char *error = str(a->last_error, "");
	if (strcmp(state, "retrying") == 0 && *error &&
	    strncmp(error, j->last_error, sizeof j->last_error - 1) != 0) {
		/* Once per distinct error: the agent retries on its own. */
		snprintf(j->last_error, sizeof j->last_error, "%s", error);
		say(c, "retrying %s: %s (attempt %lld)", name, error,
		    (long long)u64_of(a->has_attempts, a->attempts));
	}
	if (started && j->state == JOB_PENDING) {
		j->state = JOB_ACTIVE;
		if (!c->tty) {
			char size[16];
			sync_format_bytes(j->bytes_total, size, sizeof size);
			say(c, "syncing %s: %llu rows, %s%s", name,
			    (unsigned long long)j->rows_total, size, j->rows ? " (resuming)" : "");
		}
	}
}

/* One query about a job; agent errors are the job's, except those that concern
 * every run. */
static void ask(struct sync_ctx *c, struct job *j, bool start)
{
	struct cli_query cq;
	cli_query_sync(&cq, j->path ? j->path : j->ref, start, c->force);
	Trackd__V1__Reply *reply = NULL;
	const Trackd__V1__QueryReply *qr = NULL;
	struct agent_error err;
	int rv = agent_query(c->agent, &cq.q, &reply, &qr, &err);
	if (rv != 0) {
		char what[600];
		snprintf(what, sizeof what, "run %s", j->ref);
		switch (rv) {
		case TRACKD_ENOENT:
			fail(c, j, "no such run (the agent says: %s)", err.message);
			break;
		case TRACKD_EPERM: fail(c, j, "not allowed: %s", err.message); break;
		case TRACKD_EINVAL:
			if (err.remote_code == TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE) {
				clear_line(c);
				fprintf(stderr, "trackctl: sync: %s\n", err.message);
				c->fatal = 1;
			} else {
				fail(c, j, "%s", err.message);
			}
			break;
		default:
			clear_line(c);
			agent_print_error(agent_url(c->agent), rv, &err, what);
			c->fatal = 1;
		}
		return;
	}
	/* agent_query checked the case: a "sync" answers sync, "sync_status" sync_status. */
	apply_answer(c, j, start ? qr->sync : qr->sync_status, start);
	trackd__v1__reply__free_unpacked(reply, NULL);
}

static void draw(struct sync_ctx *c)
{
	struct sync_totals t = {.runs_total = c->n, .rate = c->rate};
	for (size_t i = 0; i < c->n; i++) {
		const struct job *j = &c->jobs[i];
		t.runs_done += j->state == JOB_DONE || j->state == JOB_SKIPPED;
		if (j->state == JOB_SKIPPED || j->state == JOB_FAILED)
			continue;
		t.rows += j->rows;
		t.rows_total += j->rows_total;
		t.bytes += j->bytes;
		t.bytes_total += j->bytes_total;
	}
	double now = now_s();
	if (now - c->last_t >= 0.5) {
		uint64_t delta = t.bytes > c->last_bytes ? t.bytes - c->last_bytes : 0;
		c->rate = sync_rate_update(c->rate, delta, now - c->last_t, 3.0);
		t.rate = c->rate;
		c->last_t = now;
		c->last_bytes = t.bytes;
	}
	if (!c->tty)
		return;
	struct winsize ws;
	int width = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
	char line[512];
	sync_progress_line(&t, width - 1, line, sizeof line);
	fprintf(stderr, "\r%s\x1b[K", line);
	fflush(stderr);
	c->line_drawn = true;
}

static int add_job(struct sync_ctx *c, const char *ref, const char *path)
{
	struct job *p = realloc(c->jobs, (c->n + 1) * sizeof *p);
	if (!p)
		return -1;
	c->jobs = p;
	struct job *j = &c->jobs[c->n];
	memset(j, 0, sizeof *j);
	j->ref = strdup(ref);
	j->path = path ? strdup(path) : NULL;
	if (!j->ref)
		return -1;
	c->n++;
	return 0;
}

/* --all: the offline runs the agent lists for us, in the selected entity/project. */
static int list_offline(struct sync_ctx *c, const char *entity, const char *project)
{
	char filter[600] = "";
	if (project && entity)
		snprintf(filter, sizeof filter, "%s/%s", entity, project);
	else if (project)
		snprintf(filter, sizeof filter, "%s", project);
	struct cli_query cq;
	cli_query_runs(&cq, *filter ? filter : NULL, NULL);
	struct cli_reply r;
	if (cli_query(c->agent, &cq.q, "project", &r) != 0)
		return 1;
	const Trackd__V1__RunsReply *runs = r.q->runs;
	for (size_t i = 0; i < runs->n_runs; i++) {
		const Trackd__V1__RunInfo *run = runs->runs[i];
		const char *path = str(run->path, "");
		if (strcmp(str(run->mode, ""), "offline") != 0)
			continue;
		if (entity && strcmp(str(run->entity, ""), entity) != 0)
			continue;
		if (strcmp(str(run->state, ""), "running") == 0) {
			printf("skipped %s: still running (sync it once it has ended)\n", path);
			continue;
		}
		if (add_job(c, path, path) != 0) {
			cli_reply_free(&r);
			fprintf(stderr, "trackctl: out of memory\n");
			return 1;
		}
	}
	cli_reply_free(&r);
	return 0;
}

int cmd_sync(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"all", no_argument, NULL, 'a'},
	    {"entity", required_argument, NULL, 'e'},
	    {"project", required_argument, NULL, 'p'},
	    {"force", no_argument, NULL, 'f'},
	    {0},
	};
	bool all = false;
	const char *entity = NULL, *project = NULL;
	struct sync_ctx c = {0};
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'a': all = true; break;
		case 'e': entity = optarg; break;
		case 'p': project = optarg; break;
		case 'f': c.force = true; break;
		default: return cli_bad_option("sync", argv);
		}
	}
	if (all == (optind < argc))
		return cli_usage_error("sync takes RUN… or --all (not both)");
	if (entity && !*entity)
		return cli_usage_error("sync: --entity is empty");
	if (project && !*project)
		return cli_usage_error("sync: --project is empty");
	if (entity && !project && !all)
		return cli_usage_error("sync: --entity names runs by id with --project too");
	if (cli_connect(&c.agent) != 0)
		return 1;
	c.tty = isatty(STDERR_FILENO);
	int code = 0;
	if (all) {
		code = list_offline(&c, entity, project);
	} else {
		for (int i = optind; i < argc && !code; i++) {
			/* An id alone with --project (and --entity): that project's run. */
			char ref[1200];
			if (project && !strchr(argv[i], '/') && entity)
				snprintf(ref, sizeof ref, "%s/%s/%s", entity, project, argv[i]);
			else
				snprintf(ref, sizeof ref, "%s", argv[i]);
			if (add_job(&c, ref, NULL) != 0) {
				fprintf(stderr, "trackctl: out of memory\n");
				code = 1;
			}
		}
	}
	if (code == 0 && c.n == 0 && all)
		printf("no offline runs to sync\n");
	c.t0 = c.last_t = now_s();
	while (code == 0 && !c.fatal) {
		size_t active = 0, pending = 0;
		for (size_t i = 0; i < c.n; i++) {
			active += c.jobs[i].state == JOB_ACTIVE;
			pending += c.jobs[i].state == JOB_PENDING;
		}
		if (active == 0 && pending == 0)
			break;
		for (size_t i = 0; i < c.n && active < SYNC_WINDOW && !c.fatal; i++) {
			if (c.jobs[i].state != JOB_PENDING)
				continue;
			ask(&c, &c.jobs[i], true);
			active += c.jobs[i].state == JOB_ACTIVE;
		}
		draw(&c);
		if (active == 0)
			continue;
		struct timespec ts = {0, SYNC_POLL_MS * 1000000L};
		nanosleep(&ts, NULL);
		for (size_t i = 0; i < c.n && !c.fatal; i++)
			if (c.jobs[i].state == JOB_ACTIVE)
				ask(&c, &c.jobs[i], false);
	}
	clear_line(&c);
	size_t done = 0, skipped = 0, failed = 0;
	uint64_t rows = 0, bytes = 0;
	for (size_t i = 0; i < c.n; i++) {
		struct job *j = &c.jobs[i];
		done += j->state == JOB_DONE;
		skipped += j->state == JOB_SKIPPED;
		failed += j->state != JOB_DONE && j->state != JOB_SKIPPED;
		if (j->state == JOB_DONE) {
			rows += j->rows;
			bytes += j->bytes;
		}
	}
	if (code == 0 && c.n) {
		double secs = now_s() - c.t0;
		char size[16];
		sync_format_bytes(bytes, size, sizeof size);
		printf("sync: %zu synced, %zu already synced, %zu failed; %llu rows, %s in %.1f s "
		       "(%.0f rows/s)\n",
		       done, skipped, failed, (unsigned long long)rows, size, secs,
		       secs > 0 ? (double)rows / secs : 0.0);
	}
	for (size_t i = 0; i < c.n; i++) {
		free(c.jobs[i].ref);
		free(c.jobs[i].path);
	}
	free(c.jobs);
	agent_close(c.agent);
	return code || c.fatal || failed ? 1 : 0;
}
