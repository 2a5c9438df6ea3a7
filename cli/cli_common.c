/* cli_common.c — the plumbing shared by trackctl's commands (see cli.h). */
#include "cli.h"

#include "render.h"

#include "errors.h"
#include "trackd/v1/pb_json.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("trackctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n\n", stderr);
	cli_usage(stderr);
	return EXIT_USAGE;
}

int cli_bad_option(const char *cmd, char **argv)
{
	/* getopt has just stepped past the argument it could not take. */
	return cli_usage_error("%s: unknown option or missing value: %s", cmd, argv[optind - 1]);
}

int cli_connect(agent_client **out)
{
	char url[4096];
	struct agent_error err;
	if (agent_default_url(url, sizeof url) != 0)
		return 1;
	int rv = agent_open(url, out, &err);
	if (rv != 0) {
		agent_print_error(url, rv, &err, NULL);
		return 1;
	}
	return 0;
}

void cli_reply_free(struct cli_reply *r)
{
	if (r->reply)
		trackd__v1__reply__free_unpacked(r->reply, NULL);
	memset(r, 0, sizeof *r);
}

/* Sends q and decodes the answer; on an agent error returns its code and leaves
 * the printing to the caller. */
static int fetch(agent_client *c, const Trackd__V1__Query *q, struct cli_reply *r,
                 struct agent_error *err)
{
	memset(r, 0, sizeof *r);
	return agent_query(c, q, &r->reply, &r->q, err);
}

int cli_query(agent_client *c, const Trackd__V1__Query *q, const char *what, struct cli_reply *r)
{
	struct agent_error err;
	int rv = fetch(c, q, r, &err);
	if (rv != 0) {
		agent_print_error(agent_url(c), rv, &err, what);
		return 1;
	}
	return 0;
}

int cli_query_once(const Trackd__V1__Query *q, const char *what, struct cli_reply *r)
{
	agent_client *agent;
	memset(r, 0, sizeof *r);
	if (cli_connect(&agent) != 0)
		return 1;
	int code = cli_query(agent, q, what, r);
	agent_close(agent);
	return code;
}

int cli_print_json(const struct cli_reply *r)
{
	/* The reply is at most AGENT_MAX_REPLY_BYTES of protobuf; its JSON is
	 * larger (field names, escapes). A text past four times that is reported,
	 * not printed in part. */
	struct buf text;
	buf_init(&text, (size_t)AGENT_MAX_REPLY_BYTES * 4);
	int rv = pb_json_query_reply(r->q, &text);
	if (rv == 0) {
		fwrite(text.data, 1, text.len, stdout);
		putchar('\n');
	} else {
		fprintf(stderr, "trackctl: cannot print the agent's answer as JSON: %s\n",
		        trackd_strerror(rv));
	}
	buf_fini(&text);
	return rv == 0 ? 0 : 1;
}

void cli_history_init(struct cli_history *h, agent_client *agent, const char *run,
                      const char *const *keys, size_t n_keys)
{
	h->agent = agent;
	h->run = run;
	h->keys = keys;
	h->n_keys = n_keys;
	h->page = CLI_HISTORY_PAGE;
	h->ahead = NULL;
	h->ahead_from = h->ahead_lines = 0;
}

void cli_history_fini(struct cli_history *h)
{
	agent_query_abandon(h->ahead);
	h->ahead = NULL;
}

/* protobuf-c's fields are not const; packing only reads them. */
void cli_query_runs(struct cli_query *cq, const char *project, const char *state)
{
	cq->q = (Trackd__V1__Query)TRACKD__V1__QUERY__INIT;
	cq->r.runs = (Trackd__V1__RunsRequest)TRACKD__V1__RUNS_REQUEST__INIT;
	cq->r.runs.project = (char *)project;
	cq->r.runs.state = (char *)state;
	cq->q.request_case = TRACKD__V1__QUERY__REQUEST_RUNS;
	cq->q.runs = &cq->r.runs;
}

void cli_query_run(struct cli_query *cq, const char *run)
{
	cq->q = (Trackd__V1__Query)TRACKD__V1__QUERY__INIT;
	cq->r.run = (Trackd__V1__RunRequest)TRACKD__V1__RUN_REQUEST__INIT;
	cq->r.run.run = (char *)run;
	cq->q.request_case = TRACKD__V1__QUERY__REQUEST_RUN;
	cq->q.run = &cq->r.run;
}

void cli_query_rename(struct cli_query *cq, const char *run, const char *name)
{
	cq->q = (Trackd__V1__Query)TRACKD__V1__QUERY__INIT;
	cq->r.rename = (Trackd__V1__RenameRequest)TRACKD__V1__RENAME_REQUEST__INIT;
	cq->r.rename.run = (char *)run;
	cq->r.rename.name = (char *)name;
	cq->q.request_case = TRACKD__V1__QUERY__REQUEST_RENAME;
	cq->q.rename = &cq->r.rename;
}

void cli_query_wandb(struct cli_query *cq)
{
	cq->q = (Trackd__V1__Query)TRACKD__V1__QUERY__INIT;
	cq->r.wandb = (Trackd__V1__WandbStatusRequest)TRACKD__V1__WANDB_STATUS_REQUEST__INIT;
	cq->q.request_case = TRACKD__V1__QUERY__REQUEST_WANDB;
	cq->q.wandb = &cq->r.wandb;
}

void cli_query_retry(struct cli_query *cq, const char *run)
{
	cq->q = (Trackd__V1__Query)TRACKD__V1__QUERY__INIT;
	cq->r.retry = (Trackd__V1__RetryRequest)TRACKD__V1__RETRY_REQUEST__INIT;
	cq->r.retry.run = (char *)run;
	cq->q.request_case = TRACKD__V1__QUERY__REQUEST_RETRY;
	cq->q.retry = &cq->r.retry;
}

void cli_query_sync(struct cli_query *cq, const char *run, bool start, bool force)
{
	cq->q = (Trackd__V1__Query)TRACKD__V1__QUERY__INIT;
	if (start) {
		cq->r.sync = (Trackd__V1__SyncRequest)TRACKD__V1__SYNC_REQUEST__INIT;
		cq->r.sync.run = (char *)run;
		cq->r.sync.has_force = force;
		cq->r.sync.force = force;
		cq->q.request_case = TRACKD__V1__QUERY__REQUEST_SYNC;
		cq->q.sync = &cq->r.sync;
	} else {
		cq->r.sync_status =
		    (Trackd__V1__SyncStatusRequest)TRACKD__V1__SYNC_STATUS_REQUEST__INIT;
		cq->r.sync_status.run = (char *)run;
		cq->q.request_case = TRACKD__V1__QUERY__REQUEST_SYNC_STATUS;
		cq->q.sync_status = &cq->r.sync_status;
	}
}

/* The request of rows [from, from + lines) of h's run. */
static void history_query(const struct cli_history *h, uint64_t from, uint64_t lines,
                          Trackd__V1__HistoryRequest *hr, Trackd__V1__Query *q)
{
	*hr = (Trackd__V1__HistoryRequest)TRACKD__V1__HISTORY_REQUEST__INIT;
	hr->run = (char *)h->run; /* protobuf-c's fields are not const; packing only reads */
	hr->keys = (char **)h->keys;
	hr->n_keys = h->n_keys;
	hr->has_from_line = true;
	hr->from_line = from;
	hr->has_max_lines = true;
	hr->max_lines = lines;
	*q = (Trackd__V1__Query)TRACKD__V1__QUERY__INIT;
	q->request_case = TRACKD__V1__QUERY__REQUEST_HISTORY;
	q->history = hr;
}

int cli_history_page(struct cli_history *h, uint64_t from, uint64_t max, struct cli_reply *r,
                     const Trackd__V1__HistoryPage **page, uint64_t *next, uint64_t *total)
{
	Trackd__V1__HistoryRequest hr;
	Trackd__V1__Query q;
	struct agent_error err;
	int rv = -1;
	memset(r, 0, sizeof *r);
	/* The page sent ahead, if it is the one wanted and came; otherwise it is
	 * asked (again) below, which also reports a real failure as usual. */
	if (h->ahead) {
		bool wanted =
		    h->ahead_from == from && h->ahead_lines == (max < h->page ? max : h->page);
		if (wanted)
			rv = agent_query_finish(h->ahead, &r->reply, &r->q, &err);
		else
			agent_query_abandon(h->ahead);
		h->ahead = NULL;
	}
	while (rv != 0) {
		history_query(h, from, max < h->page ? max : h->page, &hr, &q);
		rv = fetch(h->agent, &q, r, &err);
		if (rv != TRACKD_EINVAL ||
		    err.remote_code != TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE || hr.max_lines <= 1)
			break;
		h->page = hr.max_lines / 2;
	}
	if (rv != 0) {
		char what[512];
		snprintf(what, sizeof what, "run %s", h->run);
		agent_print_error(agent_url(h->agent), rv, &err, what);
		return 1;
	}
	const Trackd__V1__HistoryPage *p = r->q->history;
	/* As the JSON these were read from had them: a count past int64 is absent. */
	bool has_next = p->has_next_line && p->next_line <= (uint64_t)INT64_MAX;
	bool has_total = p->has_total_lines && p->total_lines <= (uint64_t)INT64_MAX;
	*page = p;
	*next = has_next ? p->next_line : from + p->n_lines;
	*total = has_total ? p->total_lines : *next;
	/* More than a page wanted and more rows there: ask for the next page now.
	 * Failing to send it only costs the overlap. */
	if (max > h->page && p->n_lines > 0 && *next > from && *next < *total) {
		h->ahead_from = *next;
		h->ahead_lines = h->page;
		history_query(h, h->ahead_from, h->ahead_lines, &hr, &q);
		if (agent_query_start(h->agent, &q, &h->ahead, &err) != 0)
			h->ahead = NULL;
	}
	return 0;
}

int cli_row(struct json_tokener *tok, const struct cli_history *h, const ProtobufCBinaryData *line,
            uint64_t line_no, json_object **out)
{
	if (render_row_parse(tok, line->data, line->len, out) == 0)
		return 0;
	fprintf(stderr,
	        "trackctl: the agent's answer is not JSON trackctl can read: row %" PRIu64
	        " of run %s is not one JSON value\n",
	        line_no, h->run);
	return 1;
}

void cli_put_row(FILE *out, const ProtobufCBinaryData *line)
{
	if (line->len)
		fwrite(line->data, 1, line->len, out);
	else
		fputs("null", out);
}
