/*
 * cli.h — the commands of trackctl and the plumbing they share.
 *
 * Every command is `int cmd_NAME(int argc, char **argv)` with argv[0] the command
 * name; it parses its own options and returns the process exit code:
 *   0 success, 1 failure (agent not running, no such run, agent error, bad reply),
 *   2 usage (unknown option, missing or extra argument).
 * Commands print results on stdout and every diagnostic on stderr, prefixed
 * "trackctl: ". Output is data first: every listing takes --json.
 *
 * The helpers below print their own diagnostics and return an exit code (0 or 1),
 * so a command only propagates it.
 *
 * Replies are the agent's typed messages (trackd.proto, QueryReply): commands
 * read their fields; `--json` prints the reply with pb_json (cli_print_json).
 * History rows are JSON text and are parsed (json-c, cli_row) only where their
 * values are needed.
 */
#ifndef TRACKD_CLI_CLI_H
#define TRACKD_CLI_CLI_H

#include "agent_client.h"
#include "json_write.h"

#include <json-c/json.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_USAGE       2
#define CLI_HISTORY_PAGE 5000 /* rows asked per history request (fewer if too large) */

int cmd_status(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_history(int argc, char **argv);
int cmd_tail(int argc, char **argv);
int cmd_rename(int argc, char **argv);
int cmd_update(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_spool(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_sync(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_files(int argc, char **argv);
int cmd_artifacts(int argc, char **argv);
int cmd_artifact(int argc, char **argv);

/* The full usage text. */
void cli_usage(FILE *out);
/* "trackctl: <message>" and the usage on stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* For getopt's '?': names the offending argument; returns EXIT_USAGE. */
int cli_bad_option(const char *cmd, char **argv);

/* Connects to the agent (TRACKD_SOCKET or the default socket). */
int cli_connect(agent_client **out);

/* One typed query under construction: `q` points into the request beside it,
 * so the struct is used where it was built (not copied). Strings are borrowed. */
struct cli_query {
	Trackd__V1__Query q;
	union {
		Trackd__V1__RunsRequest runs;
		Trackd__V1__RunRequest run;
		Trackd__V1__HistoryRequest history;
		Trackd__V1__RenameRequest rename;
		Trackd__V1__WandbStatusRequest wandb;
		Trackd__V1__RetryRequest retry;
		Trackd__V1__SyncRequest sync;
		Trackd__V1__SyncStatusRequest sync_status;
	} r;
};
void cli_query_runs(struct cli_query *cq, const char *project, const char *state);
void cli_query_run(struct cli_query *cq, const char *run);
void cli_query_rename(struct cli_query *cq, const char *run, const char *name);
void cli_query_wandb(struct cli_query *cq);
void cli_query_retry(struct cli_query *cq, const char *run);
void cli_query_sync(struct cli_query *cq, const char *run, bool start, bool force);

/* A typed query reply: `q` points into `reply`, and its member for the query
 * asked is set (agent_query checked it). */
struct cli_reply {
	Trackd__V1__Reply *reply;
	const Trackd__V1__QueryReply *q;
};
void cli_reply_free(struct cli_reply *r); /* zeroes it; safe twice */

/* Sends `q` and decodes the typed answer into *r. `what` names the object for a
 * not-found message ("run abc123"). */
int cli_query(agent_client *c, const Trackd__V1__Query *q, const char *what, struct cli_reply *r);

/* cli_query on a connection of its own (cli_connect, closed before it
 * returns): for a command that asks the agent one thing. */
int cli_query_once(const Trackd__V1__Query *q, const char *what, struct cli_reply *r);

/* `--json`: the reply as pb_json renders it (pb_json_query_reply), one line on
 * stdout. */
int cli_print_json(const struct cli_reply *r);

/* A run's history, read page by page: at most `page` rows per request, which
 * starts at CLI_HISTORY_PAGE and is halved for the rest of the reading whenever
 * the agent answers ERROR_TOO_LARGE (rows can hold large strings). Only `keys`
 * (borrowed) when n_keys > 0.
 *
 * A caller that asks for more than a page at a time (max above `page`) reads
 * the history to its end: each page it gets, the request for the next one is
 * sent at once (`ahead`), so the agent reads it while the caller handles this
 * one. A request sent ahead that the next call does not want, or that failed,
 * is dropped and the page asked again as usual. cli_history_fini() drops the
 * one still in flight: call it once done (or failed). */
struct cli_history {
	agent_client *agent;
	const char *run;
	const char *const *keys;
	size_t n_keys;
	uint64_t page;
	agent_pending *ahead; /* rows [ahead_from, ahead_from + ahead_lines), or NULL */
	uint64_t ahead_from, ahead_lines;
};
void cli_history_init(struct cli_history *h, agent_client *agent, const char *run,
                      const char *const *keys, size_t n_keys);
void cli_history_fini(struct cli_history *h);

/* Rows [from, from + min(max, page)). *page is the reply's HistoryPage (in *r);
 * *next and *total from it (a page without them counts the rows it holds). */
int cli_history_page(struct cli_history *h, uint64_t from, uint64_t max, struct cli_reply *r,
                     const Trackd__V1__HistoryPage **page, uint64_t *next, uint64_t *total);

/* A history row that trackctl needs the values of, parsed with json-c
 * (render_row_parse) using `tok` (json_tokener_new_ex(RENDER_ROW_MAX_DEPTH),
 * reused for every row). *out: the caller's (json_object_put; NULL for a null
 * row). A row that is not JSON is reported (run, line number) and is exit 1. */
int cli_row(struct json_tokener *tok, const struct cli_history *h, const ProtobufCBinaryData *line,
            uint64_t line_no, json_object **out);

/* A row as it came (a history line is one JSON value already): the text, or
 * null for an empty line, as the agent's JSON rendering shows it. No newline. */
void cli_put_row(FILE *out, const ProtobufCBinaryData *line);

#endif
