/* cli_common.c — the plumbing shared by trackctl's commands (see cli.h). */
#include "cli.h"

#include "errors.h"

#include <getopt.h>
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
	json_doc_free(r->doc);
	free(r->text);
	memset(r, 0, sizeof *r);
}

/* Sends q and parses the answer; on an agent error returns its code and leaves
 * the printing to the caller. */
static int fetch(agent_client *c, const Trackd__V1__Query *q, struct cli_reply *r,
                 struct agent_error *err)
{
	memset(r, 0, sizeof *r);
	int rv = agent_query(c, q, &r->text, &r->len, err);
	if (rv != 0)
		return rv;
	char perr[256];
	rv = json_parse(r->text, r->len, JSON_DEFAULT_MAX_DEPTH, &r->doc, perr, sizeof perr);
	if (rv == 0 && !json_is(json_doc_root(r->doc), JSON_OBJECT)) {
		rv = TRACKD_EINVAL;
		snprintf(perr, sizeof perr, "not a JSON object");
	}
	if (rv != 0) {
		snprintf(err->message, sizeof err->message,
		         "the agent's answer is not JSON trackctl can read (%s): %s",
		         trackd_strerror(rv), perr);
		cli_reply_free(r);
		return TRACKD_ECORRUPT;
	}
	r->root = json_doc_root(r->doc);
	return 0;
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

void cli_history_init(struct cli_history *h, agent_client *agent, const char *run,
                      const char *const *keys, size_t n_keys)
{
	h->agent = agent;
	h->run = run;
	h->keys = keys;
	h->n_keys = n_keys;
	h->page = CLI_HISTORY_PAGE;
}

int cli_history_page(struct cli_history *h, uint64_t from, uint64_t max, struct cli_reply *r,
                     uint64_t *next, uint64_t *total)
{
	Trackd__V1__Query q = TRACKD__V1__QUERY__INIT;
	q.kind = "history";
	q.run = (char *)h->run; /* protobuf-c's fields are not const; packing only reads */
	q.keys = (char **)h->keys;
	q.n_keys = h->n_keys;
	q.has_from_line = true;
	q.from_line = from;
	q.has_max_lines = true;
	struct agent_error err;
	int rv;
	for (;;) {
		q.max_lines = max < h->page ? max : h->page;
		rv = fetch(h->agent, &q, r, &err);
		if (rv != TRACKD_EINVAL ||
		    err.remote_code != TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE || q.max_lines <= 1)
			break;
		h->page = q.max_lines / 2;
	}
	if (rv != 0) {
		char what[512];
		snprintf(what, sizeof what, "run %s", h->run);
		agent_print_error(agent_url(h->agent), rv, &err, what);
		return 1;
	}
	const json_value *rows = cli_history_rows(r);
	uint64_t n = rows ? rows->u.arr.n : 0;
	int64_t v;
	*next = json_int(json_get(r->root, "next_line"), &v) && v >= 0 ? (uint64_t)v : from + n;
	*total = json_int(json_get(r->root, "total_lines"), &v) && v >= 0 ? (uint64_t)v : *next;
	return 0;
}

const json_value *cli_history_rows(const struct cli_reply *r)
{
	const json_value *rows = json_get(r->root, "lines");
	return json_is(rows, JSON_ARRAY) ? rows : NULL;
}
