/*
 * render.h — what trackctl prints, computed from the agent's JSON replies alone.
 *
 * Nothing here talks to the agent, so every output can be checked against golden
 * text (render_test.c); the commands (cmd_*.c) fetch, then call these. The JSON
 * shapes are the agent's query replies (agent/sinks/local/query.c): RUN objects with
 * id, entity, project, path, display_name, state, start_time, end_time, exit_code,
 * host, pids, uid, notes, tags, group, job_type, mode, dir, history_lines, summary,
 * config; history rows are flat-or-nested objects with `_step`, `_runtime`,
 * `_timestamp`. Missing or mistyped fields print as empty, never fail.
 *
 * Terminal safety: text that comes from run data (names, notes, keys, strings)
 * is printed with control characters replaced by `?`. CSV and JSON output is
 * data, not terminal text, and is written unchanged.
 *
 * Times print in the local time zone (TZ), as `YYYY-MM-DD HH:MM:SS`.
 * Errors: 0 or a negative trackd_err (TRACKD_ENOMEM from the footer).
 */
#ifndef TRACKD_CLI_RENDER_H
#define TRACKD_CLI_RENDER_H

#include "footer.h"
#include "json.h"

#include <stdint.h>
#include <stdio.h>

#define RENDER_NAME_WIDTH    32 /* runs table: longer names are cut with "..." */
#define RENDER_PROJECT_WIDTH 40

/* `trackctl runs`: a table of the `{"runs":[RUN, …]}` reply, or "No runs." */
void render_runs_table(FILE *out, const json_value *reply);

/* Feeds history rows (a JSON array of row objects) to a footer series: every
 * top-level number (not bool) under a key that does not start with `_`, at the
 * row's `_step` (else first_line + its index). */
int render_feed_history(footer_series *s, const json_value *rows, uint64_t first_line);

/* The footer seed of a run: a hash of its path, so `show` of the same run always
 * samples the same way. */
uint64_t render_footer_seed(const char *run_path);

/* `trackctl show`: identity, state, config, then the W&B footer (history from
 * `history`, summary from the RUN's summary), the W&B URLs (or why there are
 * none: render_upload_lines) and where to look next. `upload` is the "upload"
 * object of the "run" answer (NULL: an agent that sends none). `now` (Unix
 * seconds) dates a running run. */
int render_show(FILE *out, const json_value *run, const json_value *upload,
                const footer_series *history, double now);

/* The upload lines of `show`, from RUN and its "upload" object: at most
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
size_t render_upload_lines(const json_value *run, const json_value *upload,
                           char lines[][RENDER_UPLOAD_LINE]);

/* CSV (RFC 4180): a field quoted when it holds `,` `"` CR or LF or starts or ends
 * with a space. */
void render_csv_field(FILE *out, const char *s, size_t len);
/* One cell: numbers, bools and nested values as the agent wrote them (so NaN,
 * Infinity, -Infinity stay as W&B writes them), strings as their text, null and
 * missing as empty. */
void render_csv_cell(FILE *out, const json_value *v);
/* One row: `_step`, then keys[0 .. n) of the row object; ends with "\n". */
void render_csv_row(FILE *out, const json_value *row, const char *const *keys, size_t n);

/* Local time of Unix seconds, "YYYY-MM-DD HH:MM:SS" (cap ≥ 20). */
void render_time(double t, char *buf, size_t cap);
/* A duration in seconds: "42s", "3m 05s", "2h 03m 05s". */
void render_duration(double seconds, char *buf, size_t cap);

#endif
