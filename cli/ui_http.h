/*
 * ui_http.h — the pure decisions of `trackctl ui`'s HTTP server, apart from
 * any socket so the unit tests check them one by one (ui_http_test.c):
 *
 *   - the access token: 256 bits from getrandom(2), written as 64 hex digits,
 *     compared in constant time (ui_token_*);
 *   - which Host headers name this server (DNS-rebinding defence, ui_host_*);
 *   - the query string and the Cookie header (ui_param, ui_cookie);
 *   - an API request (path + query string) turned into the agent's typed
 *     Query (ui_api_parse), or the 400/404 message that refuses it.
 *
 * Every limit is one of the UI_* constants below: a parameter longer than its
 * limit is refused (400), never cut. Nothing here allocates except
 * ui_api_parse's `struct ui_api` (freed by ui_api_free), and every function
 * is thread-safe (no state of its own).
 */
#ifndef TRACKD_CLI_UI_HTTP_H
#define TRACKD_CLI_UI_HTTP_H

#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UI_TOKEN_BYTES 32 /* 256 bits of getrandom */
#define UI_TOKEN_HEX   (UI_TOKEN_BYTES * 2)
#define UI_PARAM_MAX   4096  /* one decoded query-string value, in bytes */
#define UI_KEYS_MAX    256   /* keys of one series request */
#define UI_KEY_MAX     256   /* bytes of one key: the agent's key limit */
#define UI_RUN_MAX     512   /* bytes of a run reference (entity/project/id) */
#define UI_GREP_MAX    1024  /* bytes of a console search */
#define UI_BUCKETS_MAX 10000 /* SeriesRequest.buckets' own maximum */
#define UI_LINES_MAX   10000 /* console/history lines asked per request */
#define UI_HOSTS_MAX   4
#define UI_HOST_MAX    300 /* "[v6 address]:port" and names fit */

/* ---- token ---------------------------------------------------------------- */

/* A fresh token: UI_TOKEN_HEX lowercase hex digits and a NUL. 0, or a negative
 * trackd_err when getrandom fails (never a weaker fallback). */
int ui_token_new(char out[UI_TOKEN_HEX + 1]);

/* Whether `given` (any string, NULL allowed) is the token. The time taken
 * depends only on the token's length, never on where they differ. */
bool ui_token_equal(const char *token, const char *given);

/* ---- Host header ---------------------------------------------------------- */

/* The Host values that name this server: for a loopback listen address
 * (127.0.0.0/8, ::1, localhost) "127.0.0.1:PORT", "localhost:PORT" and
 * "[::1]:PORT"; for another address "ADDR:PORT" as given to --listen. */
struct ui_hosts {
	size_t n;
	char name[UI_HOSTS_MAX][UI_HOST_MAX];
};

/* Fills `h` for listen host `addr` (as in --listen, without the port; IPv6
 * without brackets) and the bound `port`. *loopback tells which kind. */
void ui_hosts_init(struct ui_hosts *h, const char *addr, unsigned port, bool *loopback);

/* Exact match, ASCII case-insensitive (host names are), NULL refused. */
bool ui_host_allowed(const struct ui_hosts *h, const char *host);

/* ---- query string and cookies -------------------------------------------- */

/* The value of parameter `name` in `uri` (its part after '?'), %-decoded and
 * '+' as space: 1 found (out holds it, NUL-terminated), 0 absent, -1 refused
 * (longer than `len` - 1 bytes, a bad %-escape, or a NUL inside). */
int ui_param(const char *uri, const char *name, char *out, size_t len);

/* `uri` without its `token` parameter (the rest of the query string kept in
 * order), for the redirect that drops the token from the address bar. */
void ui_uri_without_token(const char *uri, char *out, size_t len);

/* The value of cookie `name` in a Cookie header: 1 found, 0 absent or too
 * long for `len`. */
int ui_cookie(const char *header, const char *name, char *out, size_t len);

/* ---- API requests ---------------------------------------------------------- */

/* One API request as the agent's Query, owning every string it points to. */
struct ui_api {
	Trackd__V1__Query q;
	union {
		Trackd__V1__RunsRequest runs;
		Trackd__V1__RunRequest run;
		Trackd__V1__HistoryRequest history;
		Trackd__V1__SeriesRequest series;
		Trackd__V1__ConsoleRequest console;
		Trackd__V1__RunFileReadRequest file;
	} r;
	char run[UI_RUN_MAX + 1];
	char str1[UI_PARAM_MAX]; /* project / x / grep */
	char str2[UI_PARAM_MAX]; /* state */
	char keys_text[UI_PARAM_MAX];
	char *keys[UI_KEYS_MAX];
	char what[UI_RUN_MAX + 8]; /* "run ID", for messages */
};

/* The endpoints: path → the query it asks. */
enum ui_api_status { UI_API_OK = 0, UI_API_BAD_REQUEST = 400, UI_API_NOT_FOUND = 404 };

/* Parses `path` (/api/…, without the query string) and the query string of
 * `uri` into `a`. UI_API_OK, or the HTTP status refusing it with its reason
 * in `err`:
 *   /api/runs      [project] [state]
 *   /api/run       run
 *   /api/series    run [keys=a,b] [x] [x_min] [x_max] [buckets]
 *   /api/console   run [from] [max] [grep]
 *   /api/history   run [keys=a,b] [from] [max] [stream=history|events|metadata]
 *   /api/file      run name: the first piece (TRACKD_RUN_FILE_READ_MAX bytes) of
 *                  one run file as `trackctl files` lists it; a name that is
 *                  not a run file name (absolute, '..', over
 *                  TRACKD_MAX_FILE_NAME_BYTES) is refused here (400)
 * Numbers must be whole (no trailing text), finite, and within the UI_*
 * limits; `run` is required where listed. */
enum ui_api_status ui_api_parse(const char *path, const char *uri, struct ui_api *a, char *err,
                                size_t errlen);

/* The Content-Type a run file is served with, by its name's extension:
 * image/png, image/jpeg, image/gif, application/json (tables: .table.json),
 * text/plain (.txt, .log), else application/octet-stream (with nosniff, never
 * shown as a page). */
const char *ui_file_content_type(const char *name);

#endif
