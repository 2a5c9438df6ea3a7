/*
 * trackd.h — the client library of trackd (libtrackd).
 *
 * A training process records runs: td_init → td_log … → td_finish. Records are
 * handed to the trackd agent on this machine over a Unix socket; the agent makes
 * them durable and uploads them. This library never blocks the caller on I/O:
 *
 *   - td_log (and every other recording call) only encodes the record into an
 *     in-memory buffer and returns. A sender thread ships batches to the agent
 *     (when a batch reaches `batch_bytes`, or every `flush_interval_ms`), keeps each
 *     batch until the agent acknowledges it, and resends unacknowledged batches
 *     after a reconnect. The agent ignores batches it has already stored, so a
 *     resend never duplicates data.
 *   - Memory is bounded by `max_buffer_bytes`. When the agent is unreachable and
 *     the bound is reached, further records are refused with TD_ERR_FULL and
 *     counted (td_finish reports the count): nothing is dropped silently.
 *   - td_finish waits (up to a timeout) until the agent has acknowledged every
 *     record, and reports what was not.
 *
 * Agent address: options.socket_url, else the environment variable TRACKD_SOCKET
 * (an NNG URL such as ipc:///path/trackd.sock), else the agent's default path
 * (ipc:///run/trackd/trackd.sock for root, $XDG_RUNTIME_DIR/trackd/trackd.sock
 * otherwise).
 *
 * Threading: a td_run may be used from several threads (calls are serialised by
 * an internal mutex). Ownership: every pointer passed in is borrowed; the library
 * copies what it keeps. Errors: functions return 0 or a negative td_error;
 * td_strerror() gives a constant string; td_last_error() a thread-local detail
 * message for the last failed call.
 */
#ifndef TRACKD_TRACKD_H
#define TRACKD_TRACKD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TD_API __attribute__((visibility("default")))
#else
#define TD_API
#endif

typedef enum td_error {
	TD_OK = 0,
	TD_ERR_INVALID = -1,     /* bad argument (td_last_error says which) */
	TD_ERR_NOMEM = -2,
	TD_ERR_FULL = -3,        /* buffer bound reached; record refused and counted */
	TD_ERR_CLOSED = -4,      /* run already finished */
	TD_ERR_TIMEOUT = -5,     /* td_finish: not everything acknowledged in time */
	TD_ERR_TRANSPORT = -6,   /* could not set up the connection machinery */
	TD_ERR_REJECTED = -7,    /* the agent refused records (see td_finish_report) */
} td_error;

typedef enum td_type {
	TD_DOUBLE,
	TD_INT,
	TD_BOOL,
	TD_STRING,
	TD_MAP,   /* nested: v.map.items[0 .. v.map.n) */
} td_type;

typedef struct td_item td_item;
struct td_item {
	const char *key;   /* UTF-8, non-empty */
	td_type type;
	union {
		double d;
		int64_t i;
		bool b;
		const char *s;
		struct {
			const td_item *items;
			size_t n;
		} map;
	} v;
};

/* Convenience initialisers: TD_F("loss", 0.1), TD_I("epoch", 3), … */
#define TD_F(k, x) ((td_item){.key = (k), .type = TD_DOUBLE, .v.d = (x)})
#define TD_I(k, x) ((td_item){.key = (k), .type = TD_INT, .v.i = (x)})
#define TD_B(k, x) ((td_item){.key = (k), .type = TD_BOOL, .v.b = (x)})
#define TD_S(k, x) ((td_item){.key = (k), .type = TD_STRING, .v.s = (x)})
#define TD_M(k, arr, count) \
	((td_item){.key = (k), .type = TD_MAP, .v.map = {.items = (arr), .n = (count)}})

typedef enum td_resume { TD_RESUME_NEVER = 0, TD_RESUME_ALLOW = 1, TD_RESUME_MUST = 2 } td_resume;
typedef enum td_mode { TD_MODE_ONLINE = 0, TD_MODE_OFFLINE = 1, TD_MODE_DISABLED = 2 } td_mode;

typedef struct td_run_options {
	const char *project;        /* default "uncategorized" */
	const char *entity;         /* default: empty (the backend's default entity) */
	const char *run_id;         /* default: 8 random chars of [a-z0-9] */
	const char *display_name;   /* default: chosen by the agent */
	const char *notes;
	const char *group;
	const char *job_type;
	const char *const *tags;
	size_t n_tags;
	const td_item *config;
	size_t n_config;
	td_mode mode;
	td_resume resume;
	const char *socket_url;     /* default: see above */
	size_t max_buffer_bytes;    /* default 64 MiB; minimum 64 KiB */
	size_t batch_bytes;         /* default 256 KiB */
	uint32_t flush_interval_ms; /* default 10 */
} td_run_options;

typedef struct td_run td_run;

/* Fills `opts` with the defaults (all pointers NULL). */
TD_API void td_run_options_init(td_run_options *opts);

/* Starts a run. Never waits for the agent: if it is not there yet, records are
 * buffered and delivered once it is. On success *out is owned by the caller
 * until td_finish. */
TD_API int td_init(const td_run_options *opts, td_run **out);

/* The run's id (valid until td_finish). */
TD_API const char *td_run_id(const td_run *run);

#define TD_STEP_AUTO (-1)

/* Logs one history row: step = TD_STEP_AUTO for the next step, otherwise an
 * explicit step (≥ 0); commit = false accumulates keys into the current step. */
TD_API int td_log(td_run *run, const td_item *items, size_t n, int64_t step, bool commit);

/* Sets summary keys explicitly. */
TD_API int td_summary_update(td_run *run, const td_item *items, size_t n);

/* Adds or changes config keys after init. */
TD_API int td_config_update(td_run *run, const td_item *items, size_t n);

/* Records console output (one or more lines) of stdout (is_stderr false) or stderr. */
TD_API int td_output(td_run *run, bool is_stderr, const char *text);

typedef struct td_finish_report {
	uint64_t records_logged;        /* accepted by td_* calls */
	uint64_t records_acked;         /* acknowledged by the agent (durable) */
	uint64_t records_unacked;       /* still buffered when td_finish returned */
	uint64_t records_refused_full;  /* refused with TD_ERR_FULL */
	uint64_t records_rejected;      /* refused by the agent (invalid); see last_error */
	char last_error[256];           /* the agent's last error message, if any */
} td_finish_report;

/* Ends the run with `exit_code` (0 → finished, otherwise failed), waits up to
 * timeout_ms (< 0: the default, 30 s) until the agent acknowledged everything,
 * then frees the run. Returns TD_OK when everything was acknowledged,
 * TD_ERR_TIMEOUT when something was not, TD_ERR_REJECTED when the agent refused
 * records. `report` may be NULL. The run is freed in every case. */
TD_API int td_finish(td_run *run, int exit_code, int timeout_ms, td_finish_report *report);

TD_API const char *td_strerror(int err);

/* Detail of the last failed call on this thread ("" if none). */
TD_API const char *td_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
