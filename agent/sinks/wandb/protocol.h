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
	/* Run files whose PUT succeeded, sent as `"uploaded": [...]` (W&B's
	 * FileStreamRequestJSON; names with forward slashes). Borrowed; none:
	 * the field is left out and the body is as without it. The list goes whole
	 * or not at all (then res->all is false): a list longer than max_body
	 * can hold alone is TRACKD_ETOOBIG, so the caller sends fewer names. */
	const char *const *uploaded;
	size_t n_uploaded;
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
	bool uploaded_sent; /* the whole `uploaded` list is in the body */
	bool all;           /* everything given was consumed or sent */
	bool empty;         /* the body is the heartbeat `{}` */
};

/* Builds one request body: console lines first, then history lines, then the
 * system-metrics events (the least urgent: a cut request sends them last), then the
 * summary, then the uploaded list, as much as fits in max_body; `complete` only when all of it
 * fits. A line is skipped (counted, never sent) when it is longer than max_line or could not fit
 * even alone in an otherwise empty request; skipping is a function of the line and the limits only,
 * so a replay skips the same lines. Content lines get consecutive offsets from wb_lines.offset. */
int wb_build_file_stream(const struct wb_stream_in *in, struct buf *out, struct wb_stream_out *res);

/* A file_stream answer asks the run to stop (the user pressed Stop). */
bool wb_stream_response_stopped(const char *body, size_t len);

/* ---- run files ----------------------------------------------------------------------
 *
 * A run file (W&B's Files tab) goes up in three steps, each a pure function here;
 * the sink does the I/O and keeps the per-file state durable:
 *   1. wb_build_create_run_files: one GraphQL CreateRunFiles call for a batch of
 *      at most WB_RUN_FILES_BATCH names (POST {base}/graphql, like UpsertBucket);
 *   2. wb_parse_create_run_files: each file's signed uploadUrl, and the
 *      uploadHeaders the answer gives for the whole batch;
 *   3. wb_put_headers: the PUT's curl header lines; the PUT's status through
 *      wb_classify_put: WB_PUT_RENEW_URL goes back to step 1 for that file.
 * After a 2xx PUT the name goes in a later file_stream request's `uploaded`
 * list (wb_stream_in.uploaded), then the file counts as uploaded.
 *
 * W&B facts (wandb/wandb core): the mutation text is core/api/graphql/
 * mutation_create_run_files.graphql; uploader.go gives up on a batch whose answer
 * does not name as many files as asked, and skips (with a warning) a file whose
 * uploadUrl is null; file_transfer_default.go splits each header at its first ':'
 * and skips one without ':', sends the body with Content-Length and no
 * Content-Type; file_transfer_retry_policy.go retries network errors, 429 and
 * 5xx except 501, and nothing else. */

/* Standard files W&B uploads through CreateRunFiles (stream/handler.go,
 * sender.go). wandb-history.jsonl and wandb-events.jsonl are only streamed;
 * output.log is streamed and uploaded at finish too; wandb-summary.json and
 * config.yaml are uploaded at finish. */
#define WB_METADATA_FILE     "wandb-metadata.json"
#define WB_CONFIG_FILE       "config.yaml"
#define WB_REQUIREMENTS_FILE "requirements.txt"
#define WB_DIFF_FILE         "diff.patch"
#define WB_CODE_DIR          "code/" /* the program's source files go under it */

/* W&B's batcher sends whatever accumulated in 5 s, unbounded; ours bounds one
 * call, so that an answer (one signed URL a file) stays far below
 * WB_RESPONSE_MAX and the result struct has a fixed size. */
#define WB_RUN_FILES_BATCH   32
#define WB_RUN_FILE_NAME_MAX 1024 /* bytes, NUL included */
#define WB_UPLOAD_URL_MAX    4096 /* signed S3/GCS/Azure URLs are 0.5–2 KiB */
#define WB_UPLOAD_HEADERS    16   /* uploadHeaders entries kept */
#define WB_UPLOAD_HEADER_MAX 1024 /* one "Name:Value" entry, NUL included */

/* The CreateRunFiles request body, `names` in order (borrowed; relative paths
 * with '/', as W&B's files dir). entity, project and run are required (the
 * mutation declares them String!). TRACKD_EINVAL: no name, more than
 * WB_RUN_FILES_BATCH, a NULL/empty name or one of WB_RUN_FILE_NAME_MAX bytes
 * or more, a NULL/empty entity, project or run. */
int wb_build_create_run_files(const char *entity, const char *project, const char *run,
                              const char *const *names, size_t n, struct buf *out);

struct wb_run_file_url {
	bool has_url;                       /* false: W&B answered null (skip or ask again) */
	char upload_url[WB_UPLOAD_URL_MAX]; /* "" when !has_url */
};

/* About 140 KiB: allocate it, do not put it on a stack. */
struct wb_run_files_result {
	/* files[i] answers names[i] of the request (the answer's order and
	 * names are matched, not trusted). */
	struct wb_run_file_url files[WB_RUN_FILES_BATCH];
	size_t n_files;
	/* uploadHeaders as W&B sends them, each "Name:Value", already checked by
	 * wb_upload_header_line; entries without ':' are skipped as W&B does. */
	char headers[WB_UPLOAD_HEADERS][WB_UPLOAD_HEADER_MAX];
	size_t n_headers, headers_skipped;
	char error[256]; /* the first GraphQL error message, or why the body is unusable */
};

/* Reads a 2xx CreateRunFiles answer for the batch `names` (the request's, in
 * order): WB_OK when every name got an entry (a null uploadUrl is has_url =
 * false); WB_PERMANENT for GraphQL errors without data, or headers that
 * would inject (CR, LF, NUL, a bad name, one the PUT sets itself): asking again
 * would not change them; WB_RETRY for a body that is not a usable answer (not
 * JSON, wrong types, a requested name missing, a name not requested or twice, a
 * URL or header too long, more than WB_UPLOAD_HEADERS headers). out->error
 * says which. */
enum wb_verdict wb_parse_create_run_files(const char *body, size_t len, const char *const *names,
                                          size_t n, struct wb_run_files_result *out);

/* One uploadHeaders entry "Name:Value" as a curl header line "Name: Value"
 * (value trimmed of spaces and tabs, as Go's client writes it); an empty value
 * becomes "Name;", curl's form for an empty header ("Name:" would remove it).
 * TRACKD_EINVAL: no ':', a name that is not an RFC 9110 token, CR, LF, NUL or
 * another control byte in the value (header injection), a name the PUT sets
 * itself (Content-Length, Transfer-Encoding, Host, Expect). TRACKD_ETOOBIG: the
 * line does not fit cap. */
int wb_upload_header_line(const char *entry, size_t len, char *out, size_t cap);

struct wb_put_headers {
	char lines[WB_UPLOAD_HEADERS + 2][WB_UPLOAD_HEADER_MAX + 2];
	size_t n;
};

/* The PUT's header lines for curl_slist_append: the batch's uploadHeaders
 * (as wb_upload_header_line), `Content-Length: size` (W&B always sends it,
 * 0 included) and `Expect:` (curl would otherwise ask 100-continue, which W&B's
 * client never does). No Content-Type: W&B's client sends none, and a signed
 * URL may have signed the headers it expects. The sink sets
 * CURLOPT_UPLOAD + CURLOPT_INFILESIZE_LARGE(size) to match. TRACKD_EINVAL as
 * wb_upload_header_line. */
int wb_put_headers(const struct wb_run_files_result *r, uint64_t size, struct wb_put_headers *out);

enum wb_put_verdict {
	WB_PUT_OK,        /* 2xx: the file is up; list it in `uploaded` */
	WB_PUT_RETRY,     /* no answer, 408, 429, 5xx but 501: same URL after a backoff */
	WB_PUT_RENEW_URL, /* 403: the signed URL expired: CreateRunFiles again */
	WB_PUT_PERMANENT, /* anything else (400, 404, 413, 501, 3xx…): W&B gives up the file */
};

/* What a PUT's HTTP status means (0 = no response: refused, reset, timeout). */
enum wb_put_verdict wb_classify_put(long status);

/* The run's config.yaml as uploaded: vmap_to_config_yaml's layout (the local
 * store's files/config.yaml, PyYAML's as the Python SDK writes it:
 * "wandb_version: 1", then `key:\n  desc: null\n  value: …`), with the
 * client's `_wandb` entry last, {"t": {"5": agent_version}} as UpsertBucket sends
 * it (a `_wandb` key in the config is replaced, as there). Note: wandb-core
 * writes yaml.v3's layout instead (no wandb_version/desc, keys sorted, 4-space
 * indent: runconfig.go Serialize, runconfig_test.go TestConfigSerialize); both
 * parse to the same {key: {value: v}}. `config` borrowed, NULL = empty.
 * Errors: the buf's (TRACKD_ENOMEM, TRACKD_ETOOBIG), out unchanged. */
int wb_build_config_yaml(const struct vmap *config, const char *agent_version, struct buf *out);

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
