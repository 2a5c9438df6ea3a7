/*
 * render.h — what trackctl prints, computed from the agent's typed query
 * replies alone.
 *
 * Nothing here talks to the agent, so every output can be checked against golden
 * text (render_test.c); the commands (cmd_*.c) fetch, then call these. The inputs
 * are the typed messages of trackd.proto (RunInfo, UploadInfo, RunsReply, and
 * the summary and config of a run as MapValue); unset fields print as empty
 * (or are left out), never fail.
 *
 * History rows are the one part of a reply that is JSON text: HistoryPage.lines
 * hold each row as the run store wrote it (one JSON object per row, flat or
 * nested, with `_step`, `_runtime`, `_timestamp`). Where their values matter
 * (CSV cells, the sparklines of `show`) a row is parsed with json-c
 * (render_row_parse), which keeps a parsed number's own text, so a cell shows a
 * number exactly as the store wrote it (NaN, Infinity, -Infinity included).
 * Output that passes rows through (jsonl, tail) does not parse them at all.
 *
 * Terminal safety: text that comes from run data (names, notes, keys, strings)
 * is printed with control characters replaced by `?`. CSV and JSON output is
 * data, not terminal text, and is written unchanged.
 *
 * Times print in the local time zone (TZ), as `YYYY-MM-DD HH:MM:SS`.
 * Errors: 0 or a negative trackd_err (TRACKD_ENOMEM from the footer,
 * TRACKD_ECORRUPT for a row that is not JSON).
 */
#ifndef TRACKD_CLI_RENDER_H
#define TRACKD_CLI_RENDER_H

#include "buf.h"
#include "footer.h"

#include "trackd/v1/trackd.pb-c.h"

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>

#define RENDER_NAME_WIDTH    32 /* runs table: longer names are cut with "..." */
#define RENDER_PROJECT_WIDTH 40

/* Rows nest no deeper than the agent's limits.max_nesting_depth lets a client
 * log; this bounds json-c's recursion on a row damaged on disk. */
#define RENDER_ROW_MAX_DEPTH 128

/* `trackctl runs`: a table of the runs of a RunsReply, or "No runs." */
void render_runs_table(FILE *out, const Trackd__V1__RunsReply *reply);

/* One history row: `len` bytes of JSON text (nothing but whitespace after the
 * value), parsed with `tok` (reset here, so one tokener made with
 * json_tokener_new_ex(RENDER_ROW_MAX_DEPTH) serves every row). *out is the value
 * (the caller's: json_object_put), NULL for JSON null and for an empty line
 * (which the agent's JSON showed as null); it need not be an object.
 * TRACKD_ECORRUPT when the text is not one JSON value. */
int render_row_parse(struct json_tokener *tok, const void *text, size_t len, json_object **out);

/* Feeds one parsed row to a footer series: every top-level number (not bool)
 * under a key that does not start with `_`, at the row's `_step` (an integer;
 * else `line`, the row's line number). Rows that are not objects add nothing. */
int render_feed_row(footer_series *s, json_object *row, uint64_t line);

/* The footer seed of a run: a hash of its path, so `show` of the same run always
 * samples the same way. */
uint64_t render_footer_seed(const char *run_path);

/* `trackctl show`: identity, state, config, then the W&B footer (history from
 * `history`, summary from the run's summary), the W&B URLs (or why there are
 * none: render_upload_lines) and where to look next. `upload` is the RunReply's
 * upload (NULL: an agent that sends none). `now` (Unix seconds) dates a running
 * run. */
int render_show(FILE *out, const Trackd__V1__RunInfo *run, const Trackd__V1__UploadInfo *upload,
                const footer_series *history, double now);

/* The upload lines of `show`, from the run and its upload: at most
 * RENDER_UPLOAD_MAX lines into `lines`, each cut to RENDER_UPLOAD_LINE bytes;
 * returns how many:
 *   uploaded (the backend answered): "View run NAME at: URL" and
 *     "View project at: URL" (then the parked line below if it is parked);
 *   offline: "Offline run; upload it with: trackctl sync PATH";
 *   no wandb sink: "W&B: not uploaded: no wandb sink configured (sinks.wandb)";
 *   parked: "W&B: upload parked: ERROR; retry with: trackctl retry ID" (the
 *     wandb sink knows the run by id and its upstream entity, not the local path);
 *   not acknowledged yet: "W&B: upload pending: the backend has not
 *     acknowledged the run yet" (with the last error, if any);
 *   upload NULL (an agent that does not say): nothing, unless offline.
 * Control characters print as '?'. */
#define RENDER_UPLOAD_MAX  3
#define RENDER_UPLOAD_LINE 4200
size_t render_upload_lines(const Trackd__V1__RunInfo *run, const Trackd__V1__UploadInfo *upload,
                           char lines[][RENDER_UPLOAD_LINE]);

/* CSV (RFC 4180), appended to `out` (0, or TRACKD_ETOOBIG / TRACKD_ENOMEM from
 * the buffer). A field is quoted when it holds `,` `"` CR or LF or starts or ends
 * with a space. */
int render_csv_field(struct buf *out, const char *s, size_t len);
/* One cell of a parsed row: numbers, bools and nested values as compact JSON
 * (numbers with the text the store wrote, so NaN, Infinity, -Infinity stay as
 * W&B writes them), strings as their text, null and missing (NULL) as empty. */
int render_csv_cell(struct buf *out, json_object *v);
/* One row: `_step`, then keys[0 .. n) of the row (a row that is not an object
 * has empty cells); no newline, so a caller can add cells. */
int render_csv_row(struct buf *out, json_object *row, const char *const *keys, size_t n);

/* Local time of Unix seconds, "YYYY-MM-DD HH:MM:SS" (cap ≥ 20). */
void render_time(double t, char *buf, size_t cap);
/* A duration in seconds: "42s", "3m 05s", "2h 03m 05s". */
void render_duration(double seconds, char *buf, size_t cap);

#endif
