/*
 * protocol.h — the W&B backend protocol as pure functions (shared/design/
 * WANDB-UPSTREAM.md): the UpsertBucket and file_stream request bodies, what the
 * responses say, which failures are retried, and the retry schedule.
 *
 * No I/O and no state: thread-safe, and unit-tested without a network.
 * Bodies are appended to a caller's struct buf; errors: TRACKD_ENOMEM,
 * TRACKD_ETOOBIG (the buf's own maximum).
 */
#ifndef TRACKD_SINKS_WANDB_PROTOCOL_H
#define TRACKD_SINKS_WANDB_PROTOCOL_H

#include "buf.h"
#include "vtree.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WB_HISTORY_FILE "wandb-history.jsonl"
#define WB_SUMMARY_FILE "wandb-summary.json"
#define WB_CONSOLE_FILE "output.log"
/* System metrics (run.h: one line per SystemStats sample). */
#define WB_EVENTS_FILE "wandb-events.jsonl"

enum wb_call { WB_CALL_UPSERT, WB_CALL_FILE_STREAM };
enum wb_verdict { WB_OK, WB_RETRY, WB_PERMANENT };

/* What an HTTP status means for a request. status 0 = no response at all
 * (connection refused or reset, timeout): retried. As the official client:
 * 400 401 403 404 409 410 413 422 501 are permanent, except 409 for
 * UpsertBucket; everything else that is not 2xx is retried. */
enum wb_verdict wb_classify_status(enum wb_call call, long status);

/* Delay before retry number `attempt` (0 = the first retry):
 * b = min(max_ms, min_ms * 2^attempt), then b * (1 + 0.25 * jitter) with
 * jitter in [0, 1]. The jitter is applied after the cap so that runs failing
 * together do not retry in lockstep at the cap. Never overflows. */
uint64_t wb_backoff_ms(uint32_t attempt, uint64_t min_ms, uint64_t max_ms, double jitter);

/* A Retry-After value: delta-seconds ("120", a decimal fraction is accepted) or
 * an HTTP date (IMF-fixdate, RFC 850, asctime), relative to `now_unix_s`. A
 * date in the past means 0. Returns 0 and *delay_ms, or TRACKD_EINVAL. */
int wb_parse_retry_after(const char *value, int64_t now_unix_s, uint64_t *delay_ms);

/* ---- UpsertBucket --------------------------------------------------------- */

struct wb_upsert {
	const char *name; /* the run id */
	const char *project;
	const char *entity; /* NULL or "": the API key's default entity */
	const char *display_name, *notes, *group, *job_type, *host; /* NULL or "": omitted */
	char *const *tags;                                          /* none: omitted */
	size_t n_tags;
	/* An update cleared them: empty notes / no tags are sent, to clear them
	 * upstream too (otherwise a run without them would wipe what was set in
	 * the W&B app). */
	bool clear_tags, clear_notes;
	const struct vmap *config; /* sent as {"key": {"value": v}, ..., "_wandb": …} */
	const char *agent_version;
};

int wb_build_upsert(const struct wb_upsert *u, struct buf *out);

struct wb_upsert_result {
	char entity[256], project[256], display_name[256]; /* "" when absent */
	bool has_history_line_count, has_log_line_count, has_events_line_count;
	uint64_t history_line_count, log_line_count, events_line_count;
	char error[256]; /* the first GraphQL error message, or why the body is unusable */
};

/* Reads a 2xx UpsertBucket answer: WB_OK with a bucket; WB_PERMANENT when the
 * server answered GraphQL errors and no bucket; WB_RETRY when the body is not a
 * usable GraphQL answer (a proxy's page, a cut body, nesting too deep, a bucket
 * field of the wrong type: a line count that is not a non-negative integer
 * would misplace every line sent after it). out->error says which. */
enum wb_verdict wb_parse_upsert_response(const char *body, size_t len,
                                         struct wb_upsert_result *out);

/* ---- file_stream ------------------------------------------------------------- */

/* Unacknowledged lines of one file: '\n'-terminated lines, oldest first. */
struct wb_lines {
	const char *data;
	size_t len;
	uint64_t offset; /* server line offset of the first line that will be sent */
};

struct wb_stream_in {
	struct wb_lines history, console, events;
	const char *summary; /* the whole summary (one JSON object) or NULL */
	size_t summary_len;
	bool complete; /* ask for complete + exitcode if everything fits */
	int32_t exitcode;
	size_t max_body; /* the request body never exceeds this */
	size_t max_line; /* longer lines are skipped */
};

struct wb_stream_out {
	/* consumed from the front of each wb_lines: sent + skipped */
	size_t history_lines, history_bytes, history_skipped;
	size_t console_lines, console_bytes, console_skipped;
	size_t events_lines, events_bytes, events_skipped;
	size_t largest_skipped; /* bytes of the largest line skipped (for the warning) */
	bool summary_sent, summary_skipped; /* skipped: it can never fit */
	bool complete_sent;
	bool all;   /* everything given was consumed or sent */
	bool empty; /* the body is the heartbeat `{}` */
};

/* Builds one request body: console lines first, then history lines, then the
 * system-metrics events (the least urgent: a cut request sends them last), then the
 * summary, as much as fits in max_body; `complete` only when all of it fits.
 * A line is skipped (counted, never sent) when it is longer than max_line or
 * could not fit even alone in an otherwise empty request; skipping is a
 * function of the line and the limits only, so a replay skips the same lines.
 * Content lines get consecutive offsets from wb_lines.offset. */
int wb_build_file_stream(const struct wb_stream_in *in, struct buf *out, struct wb_stream_out *res);

/* A file_stream answer asks the run to stop (the user pressed Stop). */
bool wb_stream_response_stopped(const char *body, size_t len);

/* ---- answers ------------------------------------------------------------------ */

struct json_object;

/* Deeper answers are refused: json-c's tokener holds one frame per level, and
 * no W&B answer nests more than a handful. */
#define WB_JSON_MAX_DEPTH 64

/* Parses one backend answer with json-c: exactly one JSON value (whitespace
 * around it allowed), strings in UTF-8, NaN and Infinity accepted (W&B writes
 * them). Integers and doubles stay apart: an integer keeps all 64 bits
 * (json-c saturates beyond int64/uint64). The caller bounds len (the transfer
 * keeps at most WB_RESPONSE_MAX bytes of an answer). On success *out is a new
 * tree the caller releases with json_object_put (NULL for the JSON `null`).
 * Errors, with why in err: TRACKD_EINVAL (not JSON, or something after it),
 * TRACKD_ETOOBIG (deeper than WB_JSON_MAX_DEPTH, or len > INT_MAX),
 * TRACKD_ENOMEM. */
int wb_json_parse(const char *body, size_t len, struct json_object **out, char *err, size_t errlen);

#endif
