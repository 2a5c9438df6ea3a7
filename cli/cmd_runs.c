/* cmd_runs.c — the run commands that answer in one go:
 *   runs [--project P] [--state S] [--json]   a table of runs, oldest first
 *   show RUN [--json]                          one run: identity, config, footer
 *   rename RUN NAME [--json]                   a new display name
 *   update RUN [--name N] [--tags a,b] [--notes TEXT] [--json]
 *                                              a new name, tags and/or notes
 *   retry [RUN] [--json]                       upload parked runs again
 * A RUN is an id or entity/project/id; the agent resolves it. The answers are
 * typed (RunsReply, RunReply, RenameReply for rename and update, RetryReply);
 * --json prints them as pb_json renders them. */
#include "cli.h"

#include "errors.h"
#include "render.h"
#include "system.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RENAME_WAIT_POLLS 250             /* at most ~5 s for the store to show it */
#define RENAME_POLL_NS    (20 * 1000000L) /* 20 ms */
/* Pieces of one --tags: more than the agent allows (TRACKD_MAX_TAGS), so that
 * the agent's error names its limit; many more is a usage error here. */
#define UPDATE_MAX_TAGS 1024

static bool parse_json_only(int argc, char **argv, const char *cmd, bool *json)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {0}};
	int c;
	*json = false;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j') {
			cli_bad_option(cmd, argv);
			return false;
		}
		*json = true;
	}
	return true;
}

int cmd_runs(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"project", required_argument, NULL, 'p'},
	    {"state", required_argument, NULL, 's'},
	    {0},
	};
	static const char *const states[] = {"running", "finished", "failed", "crashed", "killed"};
	bool json = false;
	const char *project = NULL, *state = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'p': project = optarg; break;
		case 's': state = optarg; break;
		default: return cli_bad_option("runs", argv);
		}
	}
	if (optind != argc)
		return cli_usage_error("runs takes no arguments (use --project, --state)");
	if (state) {
		bool known = false;
		for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
			known |= strcmp(state, states[i]) == 0;
		if (!known)
			return cli_usage_error("runs: --state is one of running, finished, failed, "
			                       "crashed, killed");
	}
	agent_client *agent;
	if (cli_connect(&agent) != 0)
		return 1;
	struct cli_query cq;
	cli_query_runs(&cq, project, state);
	struct cli_reply r;
	int code = cli_query(agent, &cq.q, "project", &r);
	if (code == 0) {
		if (json)
			code = cli_print_json(&r);
		else
			render_runs_table(stdout, r.q->runs);
		cli_reply_free(&r);
	}
	agent_close(agent);
	return code;
}

/* Every history row of the run, fetched in pages, into the footer series. */
static int feed_all_history(agent_client *agent, const char *run, footer_series *series)
{
	struct cli_history h;
	uint64_t from = 0, next, total;
	cli_history_init(&h, agent, run, NULL, 0);
	struct json_tokener *tok = json_tokener_new_ex(RENDER_ROW_MAX_DEPTH);
	if (!tok) {
		fprintf(stderr, "trackctl: out of memory\n");
		return 1;
	}
	int code = 0;
	while (code == 0) {
		struct cli_reply r;
		const Trackd__V1__HistoryPage *page;
		code = cli_history_page(&h, from, UINT64_MAX, &r, &page, &next, &total);
		if (code != 0)
			break;
		size_t n = page->n_lines;
		for (size_t i = 0; i < n && code == 0; i++) {
			json_object *row;
			code = cli_row(tok, &h, &page->lines[i], from + i, &row);
			if (code == 0 && render_feed_row(series, row, from + i) != 0) {
				fprintf(stderr, "trackctl: out of memory\n");
				code = 1;
			}
			json_object_put(row);
		}
		cli_reply_free(&r);
		/* Stop at the end, and on a reply that makes no progress. */
		if (n == 0 || next <= from || next >= total)
			break;
		from = next;
	}
	cli_history_fini(&h);
	json_tokener_free(tok);
	return code;
}

int cmd_show(int argc, char **argv)
{
	bool json;
	if (!parse_json_only(argc, argv, "show", &json))
		return EXIT_USAGE;
	if (argc - optind != 1)
		return cli_usage_error("show takes one RUN (an id or entity/project/id)");
	const char *run = argv[optind];
	char what[512];
	snprintf(what, sizeof what, "run %s", run);

	agent_client *agent;
	if (cli_connect(&agent) != 0)
		return 1;
	struct cli_query cq;
	cli_query_run(&cq, run);
	struct cli_reply r;
	int code = cli_query(agent, &cq.q, what, &r);
	if (code != 0) {
		agent_close(agent);
		return code;
	}
	if (json) {
		code = cli_print_json(&r);
		cli_reply_free(&r);
		agent_close(agent);
		return code;
	}
	static const Trackd__V1__RunInfo no_info = TRACKD__V1__RUN_INFO__INIT;
	const Trackd__V1__RunInfo *info = r.q->run->run ? r.q->run->run : &no_info;
	/* Ask for the history by the resolved path: an id alone could be ambiguous
	 * across projects. */
	const char *path = info->path ? info->path : run;
	footer_series *series = NULL;
	if (footer_series_new(render_footer_seed(path), 0, &series) != FOOTER_OK) {
		fprintf(stderr, "trackctl: out of memory\n");
		code = 1;
	}
	if (code == 0)
		code = feed_all_history(agent, path, series);
	if (code == 0 &&
	    render_show(stdout, info, r.q->run->upload, series, (double)time(NULL)) != 0) {
		fprintf(stderr, "trackctl: cannot print the run\n");
		code = 1;
	}
	if (code == 0)
		code = cli_print_system(agent, path, stdout);
	if (code == 0)
		code = cli_print_environment(agent, path, stdout);
	footer_series_free(series);
	cli_reply_free(&r);
	agent_close(agent);
	return code;
}

/* The run's display name as the agent's run store shows it ("" if none). */
static int display_name(agent_client *agent, const char *run, const char *what, char *name,
                        size_t cap)
{
	struct cli_query cq;
	cli_query_run(&cq, run);
	struct cli_reply r;
	int code = cli_query(agent, &cq.q, what, &r);
	if (code != 0)
		return code;
	const Trackd__V1__RunInfo *info = r.q->run->run;
	snprintf(name, cap, "%s", info && info->display_name ? info->display_name : "");
	cli_reply_free(&r);
	return 0;
}

int cmd_rename(int argc, char **argv)
{
	bool json;
	if (!parse_json_only(argc, argv, "rename", &json))
		return EXIT_USAGE;
	if (argc - optind != 2)
		return cli_usage_error("rename takes a RUN and a NAME");
	const char *run = argv[optind], *name = argv[optind + 1];
	if (!*name)
		return cli_usage_error("rename: the new name is empty");
	char what[512];
	snprintf(what, sizeof what, "run %s", run);
	agent_client *agent;
	if (cli_connect(&agent) != 0)
		return 1;
	struct cli_query cq;
	cli_query_rename(&cq, run, name);
	struct cli_reply r;
	int code = cli_query(agent, &cq.q, what, &r);
	if (code != 0) {
		agent_close(agent);
		return code;
	}
	/* The agent logs the rename and its run store applies it a moment later:
	 * wait for that (bounded), so that the next `runs` or `show` has it. */
	char now[1024] = "";
	for (int i = 0; i < RENAME_WAIT_POLLS && code == 0; i++) {
		code = display_name(agent, run, what, now, sizeof now);
		if (code != 0 || strcmp(now, name) == 0)
			break;
		struct timespec ts = {0, RENAME_POLL_NS};
		nanosleep(&ts, NULL);
	}
	if (code == 0) {
		if (json)
			code = cli_print_json(&r);
		else if (strcmp(now, name) == 0)
			printf("Renamed %s to %s\n", run, name);
		else
			printf("Renamed %s to %s (the run store has not shown it yet)\n", run,
			       name);
	}
	cli_reply_free(&r);
	agent_close(agent);
	return code;
}

/* Whether the run store shows every change of `u` yet. */
static int update_shown(agent_client *agent, const Trackd__V1__RenameRequest *u, const char *what,
                        bool *shown)
{
	struct cli_query cq;
	cli_query_run(&cq, u->run);
	struct cli_reply r;
	int code = cli_query(agent, &cq.q, what, &r);
	if (code != 0)
		return code;
	const Trackd__V1__RunInfo *info = r.q->run->run;
	*shown = info != NULL;
	if (*shown && u->name && *u->name)
		*shown = info->display_name && strcmp(info->display_name, u->name) == 0;
	if (*shown && u->notes)
		*shown = strcmp(info->notes ? info->notes : "", u->notes) == 0;
	if (*shown && u->set_tags) {
		*shown = info->n_tags == u->n_tags;
		for (size_t i = 0; *shown && i < u->n_tags; i++)
			*shown = strcmp(info->tags[i] ? info->tags[i] : "", u->tags[i]) == 0;
	}
	cli_reply_free(&r);
	return 0;
}

/* Splits a --tags value at commas in place ("" is no tags; empty pieces are
 * dropped, as W&B's WANDB_TAGS). */
static bool split_tags(char *list, char **tags, size_t cap, size_t *n)
{
	*n = 0;
	for (char *save = NULL, *t = strtok_r(list, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		if (*n == cap)
			return false;
		tags[(*n)++] = t;
	}
	return true;
}

int cmd_update(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"name", required_argument, NULL, 'n'},
	    {"tags", required_argument, NULL, 't'},
	    {"notes", required_argument, NULL, 'o'},
	    {0},
	};
	char *tags[UPDATE_MAX_TAGS]; /* pieces of --tags, in argv's storage */
	bool json = false;
	const char *name = NULL, *notes = NULL;
	char *tag_list = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'n': name = optarg; break;
		case 't': tag_list = optarg; break;
		case 'o': notes = optarg; break;
		default: return cli_bad_option("update", argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("update takes one RUN (and --name, --tags, --notes)");
	if (!name && !tag_list && !notes)
		return cli_usage_error(
		    "update: nothing to change (give --name, --tags or --notes)");
	if (name && !*name)
		return cli_usage_error("update: the new name is empty");
	size_t n_tags = 0;
	if (tag_list && !split_tags(tag_list, tags, UPDATE_MAX_TAGS, &n_tags))
		return cli_usage_error("update: more than %d tags", UPDATE_MAX_TAGS);
	const char *run = argv[optind];
	char what[512];
	snprintf(what, sizeof what, "run %s", run);
	agent_client *agent;
	if (cli_connect(&agent) != 0)
		return 1;
	struct cli_query cq;
	cli_query_rename(&cq, run, name);
	cq.r.rename.has_set_tags = cq.r.rename.set_tags = tag_list != NULL;
	cq.r.rename.tags = tags;
	cq.r.rename.n_tags = n_tags;
	cq.r.rename.notes = (char *)notes;
	struct cli_reply r;
	int code = cli_query(agent, &cq.q, what, &r);
	if (code != 0) {
		agent_close(agent);
		return code;
	}
	/* As for rename: wait (bounded) until the run store applied the record. */
	bool shown = false;
	for (int i = 0; i < RENAME_WAIT_POLLS && code == 0; i++) {
		code = update_shown(agent, &cq.r.rename, what, &shown);
		if (code != 0 || shown)
			break;
		struct timespec ts = {0, RENAME_POLL_NS};
		nanosleep(&ts, NULL);
	}
	if (code == 0) {
		if (json)
			code = cli_print_json(&r);
		else
			printf("Updated %s%s\n", run,
			       shown ? "" : " (the run store has not shown it yet)");
	}
	cli_reply_free(&r);
	agent_close(agent);
	return code;
}

/* trackctl retry [RUN]: a run the wandb sink parked after a permanent error is
 * uploaded again (all parked runs without RUN). The answer is a RetryReply (ok,
 * the retried ids): as JSON with --json, else one line per run. */
int cmd_retry(int argc, char **argv)
{
	bool json;
	if (!parse_json_only(argc, argv, "retry", &json))
		return EXIT_USAGE;
	if (argc - optind > 1)
		return cli_usage_error("retry takes at most one RUN");
	const char *run = argc - optind == 1 ? argv[optind] : "";
	char what[512];
	snprintf(what, sizeof what, "run %s", *run ? run : "(all parked)");
	agent_client *agent;
	if (cli_connect(&agent) != 0)
		return 1;
	struct cli_query cq;
	cli_query_retry(&cq, run);
	struct cli_reply r;
	int code = cli_query(agent, &cq.q, what, &r);
	agent_close(agent);
	if (code != 0)
		return code;
	if (json) {
		code = cli_print_json(&r);
	} else {
		const Trackd__V1__RetryReply *rr = r.q->retry;
		for (size_t i = 0; i < rr->n_retried; i++)
			printf("Uploading %s again\n", rr->retried[i] ? rr->retried[i] : "?");
		if (rr->n_retried == 0)
			printf("Nothing to retry: no parked run\n");
	}
	cli_reply_free(&r);
	return code;
}
