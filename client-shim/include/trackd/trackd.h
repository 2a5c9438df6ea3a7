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
 *     the bound is reached, the call that crosses it moves the buffered batches
 *     to a spool file (`spool_dir`, one file per run, written sequentially
 *     and fdatasync'd: the only time a recording call does I/O) and succeeds.
 *     The sender replays the spool before newer batches; td_finish writes what
 *     is still unacknowledged at its deadline to the spool too, and any later
 *     td_init (or `trackctl spool flush`) delivers spool files whose owner is
 *     gone. Only when the spool cannot take more (its bound, a full disk) are
 *     records refused with TD_ERR_FULL and counted (td_finish reports the
 *     count): nothing is dropped silently. If the agent is reachable but slower
 *     than the application (and no spool is draining), records are refused at
 *     the memory bound as well.
 *   - td_finish waits (up to a timeout) until the agent has acknowledged every
 *     record, reports what was not, and prints the W&B-style footer (history
 *     sparklines, summary, where the run is stored) to stderr.
 *
 * Opt-in process features (C only; the Python package does its own):
 * `capture_console` tees stdout/stderr into the run, `handle_signals` ends the
 * run as killed on SIGTERM/SIGINT. Both change process-wide state (file
 * descriptors 1 and 2, signal dispositions) and restore it at td_finish; at most
 * one run at a time may use each.
 *
 * Agent address: options.socket_url, else the environment variable TRACKD_SOCKET
 * (an NNG URL such as ipc:///path/trackd.sock), else the agent's default path
 * (ipc:///run/trackd/trackd.sock for root, $XDG_RUNTIME_DIR/trackd/trackd.sock
 * otherwise).
 *
 * W&B's environment variables fill the options the caller left unset, so a job
 * launched by a scheduler configured for W&B lands in the right project
 * (src/wandb_env.h has the details): WANDB_PROJECT, WANDB_ENTITY, WANDB_NAME,
 * WANDB_NOTES, WANDB_RUN_ID, WANDB_RUN_GROUP, WANDB_JOB_TYPE (for NULL fields),
 * WANDB_TAGS (comma-separated, when n_tags is 0); WANDB_MODE offline|disabled
 * and WANDB_DISABLED=true when mode is ONLINE (the environment never turns
 * uploading on); WANDB_RESUME allow|auto|must when resume is NEVER;
 * WANDB_SILENT=true: no footer; WANDB_CONSOLE=off: no console capture.
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
	TD_ERR_INVALID = -1, /* bad argument (td_last_error says which) */
	TD_ERR_NOMEM = -2,
	TD_ERR_FULL = -3,      /* buffer bound reached; record refused and counted */
	TD_ERR_CLOSED = -4,    /* run already finished */
	TD_ERR_TIMEOUT = -5,   /* td_finish: not everything acknowledged in time */
	TD_ERR_TRANSPORT = -6, /* could not set up the connection machinery */
	TD_ERR_REJECTED = -7,  /* the agent refused records or a query (td_last_error) */
	TD_ERR_NOT_FOUND = -8, /* query: the agent has no such run */
	TD_ERR_CORRUPT = -9,   /* downloaded content failed its digest check */
} td_error;

typedef enum td_type {
	TD_DOUBLE,
	TD_INT,
	TD_BOOL,
	TD_STRING,
	TD_MAP, /* nested: v.map.items[0 .. v.map.n) */
	/* Added later (numbering unchanged): JSON arrays and null. A list's
	 * elements are td_items whose key is ignored (leave it NULL); they may be
	 * of any type, lists and maps included. A list counts one nesting level,
	 * as a map does, and holds at most TRACKD_DEFAULT_MAX_LIST_LENGTH (4096)
	 * elements, or the agent's lower limits.max_list_length. */
	TD_LIST, /* v.list.items[0 .. v.list.n) */
	TD_NULL, /* no payload */
	/* Added with files: a media value (image, table, histogram) in td_log's
	 * top-level items: v.media (see td_media below). */
	TD_MEDIA,
} td_type;

typedef struct td_media td_media;

typedef struct td_item td_item;
struct td_item {
	const char *key; /* UTF-8, non-empty; ignored in a list's elements */
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
		/* Same layout as map: the union's size is unchanged. */
		struct {
			const td_item *items;
			size_t n;
		} list;
		const td_media *media; /* TD_MEDIA */
	} v;
};

/*
 * Media values (W&B's wandb.Image, wandb.Table, wandb.Histogram), logged with
 * td_log as top-level items of type TD_MEDIA. The row gets W&B's object for
 * each: images {"_type":"image-file","format","width","height","path",
 * "sha256","size"[,"caption"]}, tables {"_type":"table-file","path","sha256",
 * "size","ncols","nrows"} with path media/<images|table>/<key>_<step>_<sha256
 * hex[:20]>.<png|jpeg|table.json>, histograms inline {"_type":"histogram",
 * "values":[counts],"bins":[edges]}. A file's bytes are copied into the run's
 * bounded file queue (max_buffer_bytes, besides the records' buffer: over it,
 * TD_ERR_FULL) and td_log returns: the sender thread ships them to the agent
 * (asking first which the agent already holds) before any row that uses
 * them. Pointers are borrowed for the call only.
 */
typedef enum td_media_kind {
	TD_MEDIA_PNG = 1,       /* data/len: an encoded PNG; width, height: its size */
	TD_MEDIA_JPEG = 2,      /* data/len: an encoded JPEG; width, height */
	TD_MEDIA_PIXELS = 3,    /* data: height rows of width × channels bytes (1 gray, 3 RGB,
	                         * 4 RGBA), PNG-encoded by the library (zlib) */
	TD_MEDIA_TABLE = 4,     /* data/len: {"columns":[…],"data":[[…],…]} JSON; ncols, nrows
	                         * (at most TD_TABLE_MAX_ROWS) */
	TD_MEDIA_HISTOGRAM = 5, /* values[n_values] into num_bins bins (0: 64), or counts[num_bins]
	                         * with edges[num_bins + 1]; at most TD_HISTOGRAM_MAX_BINS */
	TD_MEDIA_IMAGES = 6,    /* images[n_images] (each PNG, JPEG or PIXELS): W&B's list of
	                         * images, {"_type":"images/separated","width","height","format",
	                         * "count","filenames"[,"captions"]}; each file is saved too */
} td_media_kind;

#define TD_HISTOGRAM_DEFAULT_BINS 64
#define TD_HISTOGRAM_MAX_BINS     512
#define TD_TABLE_MAX_ROWS         10000

struct td_media {
	td_media_kind kind;
	const void *data;
	size_t len;
	uint32_t width, height, channels;
	const char *caption; /* images; NULL: none */
	uint32_t ncols, nrows;
	const double *values;
	size_t n_values;
	const double *counts, *edges;
	uint32_t num_bins;
	const td_media *images; /* TD_MEDIA_IMAGES, at most TD_MEDIA_MAX_IMAGES */
	size_t n_images;
};

#define TD_MEDIA_MAX_IMAGES 1024

#define TD_MEDIA_ITEM(k, m) ((td_item){.key = (k), .type = TD_MEDIA, .v.media = (m)})

/* Convenience initialisers: TD_F("loss", 0.1), TD_I("epoch", 3), …; list
 * elements: TD_F(NULL, 0.9). */
#define TD_F(k, x) ((td_item){.key = (k), .type = TD_DOUBLE, .v.d = (x)})
#define TD_I(k, x) ((td_item){.key = (k), .type = TD_INT, .v.i = (x)})
#define TD_B(k, x) ((td_item){.key = (k), .type = TD_BOOL, .v.b = (x)})
#define TD_S(k, x) ((td_item){.key = (k), .type = TD_STRING, .v.s = (x)})
#define TD_M(k, arr, count)                                                                        \
	((td_item){.key = (k), .type = TD_MAP, .v.map = {.items = (arr), .n = (count)}})
#define TD_L(k, arr, count)                                                                        \
	((td_item){.key = (k), .type = TD_LIST, .v.list = {.items = (arr), .n = (count)}})
#define TD_N(k) ((td_item){.key = (k), .type = TD_NULL})

/* Resume: NEVER (default) with an explicit run_id asks the agent and fails with
 * TD_ERR_INVALID if the run already exists (no agent answering: proceeds);
 * MUST asks the agent and fails with TD_ERR_INVALID unless the run exists
 * (no agent answering: fails too); ALLOW attaches or creates without asking. */
typedef enum td_resume { TD_RESUME_NEVER = 0, TD_RESUME_ALLOW = 1, TD_RESUME_MUST = 2 } td_resume;
/* DISABLED records nothing and talks to no agent, but td_init (config), td_log,
 * td_summary_update and td_config_update still refuse, with TD_ERR_INVALID, the
 * items an online run would refuse on the default limits. */
typedef enum td_mode { TD_MODE_ONLINE = 0, TD_MODE_OFFLINE = 1, TD_MODE_DISABLED = 2 } td_mode;

/* What the run summary keeps for a metric (define_metric). */
typedef enum td_metric_summary {
	TD_SUMMARY_LAST = 0, /* the default */
	TD_SUMMARY_MIN = 1,
	TD_SUMMARY_MAX = 2,
	TD_SUMMARY_MEAN = 3,
	TD_SUMMARY_NONE = 4, /* not in the summary */
} td_metric_summary;

/* How a run ended: FINISHED (exit 0 → finished, else failed) or KILLED. */
typedef enum td_exit_reason { TD_EXIT_FINISHED = 0, TD_EXIT_KILLED = 1 } td_exit_reason;

typedef struct td_run_options {
	const char *project;      /* default "uncategorized" */
	const char *entity;       /* default: the login name of the effective uid */
	const char *run_id;       /* default: 8 random chars of [a-z0-9] */
	const char *display_name; /* default: chosen by the agent */
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
	/* td_finish prints the footer to stderr. Default true. */
	bool print_footer;
	/* Tee stdout and stderr (file descriptors 1 and 2, through pipes and a
	 * reader thread) into the run's console output, stderr lines marked as
	 * such; restored at td_finish. If the original stdout is a terminal,
	 * stdout is made line-buffered so the terminal still sees lines as they
	 * come. Default false. */
	bool capture_console;
	/* SIGTERM and SIGINT end the run as killed (exit code 128 + signal): the
	 * handler only writes to a pipe; a thread finishes the run (waiting up to
	 * 5 s for the agent, spooling the rest), then the signal is raised again
	 * with its default action, so the process dies of it as it would have.
	 * The previous handlers are restored at td_finish. Default false. */
	bool handle_signals;
	/* Where spool files go: default $XDG_STATE_HOME/trackd/spool, else
	 * ~/.local/state/trackd/spool; "" disables spooling. Files are kept per
	 * agent: <spool_dir>/<hash of the agent URL>/<session>.spool. */
	const char *spool_dir;
	size_t max_spool_bytes; /* bound of this process's spool file; default (0) 1 GiB */
	/* The interpreter's version ("3.11.2") for the run's metadata ("python"),
	 * set by the Python package; NULL otherwise. The other process facts
	 * (program, args, executable, working directory, git) the library
	 * gathers itself, off the caller's thread, and sends once per process. */
	const char *python_version;
	/* Send none of those facts (W&B's disable_meta): the agent then has
	 * only what it can read in /proc itself. Default false. */
	bool disable_environment;
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

/* Logs one history row: step = TD_STEP_AUTO for the current step, otherwise an
 * explicit step (≥ 0); commit = false accumulates keys into the step, which is
 * committed by a later commit or a larger step (W&B semantics). An explicit
 * step lower than the current one is refused here, as the agent would drop it:
 * a warning on stderr and TD_ERR_INVALID. */
TD_API int td_log(td_run *run, const td_item *items, size_t n, int64_t step, bool commit);

/* Saves a file with the run as files/<name> (W&B's run.save): `data` holds
 * its bytes, read by the caller (the agent never opens a path a client
 * names). `name` is normalised as W&B does (leading '/' and './' dropped);
 * one with a '..' component, a control character, or over 1024 bytes is
 * refused with TD_ERR_INVALID. `policy` is "now", "live" or "end" (NULL:
 * "now"), kept for the upload. The bytes are queued as td_log's media are. */
TD_API int td_save_file(td_run *run, const char *name, const void *data, size_t len,
                        const char *policy);

/* td_save_file for the file at `path`, read here by this process (as the
 * user; the agent never opens it): copied, in pieces, into an unnamed file of
 * the spool dir, so a file of any size (up to max_spool_bytes queued at once)
 * waits on disk rather than in memory; a process killed outright leaves no
 * copy behind. Without a spool dir (spool_dir "" or no home), or on a file
 * system without unnamed files, the bytes wait in memory as td_save_file's
 * (max_buffer_bytes). The copy takes the time of reading the file; nothing
 * waits for the agent. TD_ERR_INVALID: a name or policy as td_save_file's, a
 * path that is not a readable regular file, a file over the bound it would
 * wait in (the message names it); TD_ERR_FULL: the bound is taken by files
 * not yet delivered (retry later). */
TD_API int td_save_path(td_run *run, const char *name, const char *path, const char *policy);

/* Encodes 8-bit pixels (height rows of width × channels bytes; channels 1, 3
 * or 4) as a PNG with zlib. *out (td_free) and *out_len on success. */
TD_API int td_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels,
                         uint8_t **out, size_t *out_len);

/* Sets summary keys explicitly. */
TD_API int td_summary_update(td_run *run, const td_item *items, size_t n);

/* Adds or changes config keys after init. */
TD_API int td_config_update(td_run *run, const td_item *items, size_t n);

/* Records console output (one or more lines) of stdout (is_stderr false) or stderr. */
TD_API int td_output(td_run *run, bool is_stderr, const char *text);

/* Sets how the summary keeps `name` (a top-level key). */
TD_API int td_define_metric(td_run *run, const char *name, td_metric_summary summary);

/* Renames the run (its display name). */
TD_API int td_set_name(td_run *run, const char *display_name);

/* Replaces the run's tags with tags[0..n_tags) (n_tags 0: none; at most 64,
 * each at most 128 bytes of UTF-8). The strings are borrowed for the call. */
TD_API int td_set_tags(td_run *run, const char *const *tags, size_t n_tags);

/* Replaces the run's notes ("" clears them; UTF-8). */
TD_API int td_set_notes(td_run *run, const char *notes);

typedef struct td_finish_report {
	uint64_t records_logged;       /* accepted by td_* calls */
	uint64_t records_acked;        /* acknowledged by the agent (durable) */
	uint64_t records_unacked;      /* not acknowledged when td_finish returned */
	uint64_t records_refused_full; /* refused with TD_ERR_FULL */
	uint64_t records_rejected;     /* refused by the agent (invalid); see last_error */
	/* Of records_unacked, those safe in the spool file: a later td_init or
	 * `trackctl spool flush` delivers them. The others are lost. */
	uint64_t records_spooled;
	char last_error[256]; /* the agent's last error message, if any */
} td_finish_report;

/* Ends the run with `exit_code` (0 → finished, otherwise failed), waits up to
 * timeout_ms (< 0: the default, 30 s) until the agent acknowledged everything,
 * then frees the run. Returns TD_OK when everything was acknowledged,
 * TD_ERR_TIMEOUT when something was not, TD_ERR_REJECTED when the agent refused
 * records. `report` may be NULL. The run is freed in every case. */
TD_API int td_finish(td_run *run, int exit_code, int timeout_ms, td_finish_report *report);

/* td_finish with an explicit reason: TD_EXIT_KILLED marks the run killed
 * (td_finish is td_finish_reason(…, TD_EXIT_FINISHED, …)). */
TD_API int td_finish_reason(td_run *run, int exit_code, td_exit_reason reason, int timeout_ms,
                            td_finish_report *report);

/* The footer as td_finish would print it now: history sparklines and summary of
 * what this process logged, then where the run is stored and how to view it.
 * Writes at most len bytes (NUL included) like snprintf; returns the length of
 * the whole text (a return ≥ len means it was cut) or a negative td_error.
 * Asks the agent for its state dir the first time (see td_run_dir). */
TD_API int td_footer(td_run *run, char *buf, size_t len);

/* The run's directory on this machine: the agent's state dir (asked once with a
 * status request, then cached) + /runs/<entity>/<project>/run-YYYYMMDD_HHMMSS-<id>
 * (the start time in UTC). Returns like td_footer; TD_ERR_TRANSPORT if no agent
 * answers. */
TD_API int td_run_dir(td_run *run, char *buf, size_t len);

/* The run's page in the W&B UI, {app_url}/{entity}/{project}/runs/{id}, once
 * the agent's wandb sink has had the backend's answer to the run's first
 * UpsertBucket. Writes like td_footer; returns the length, 0 (and "") when
 * there is none: no wandb sink, not acknowledged yet, an offline or disabled
 * run. TD_ERR_TRANSPORT if no agent answers. */
TD_API int td_run_url(td_run *run, char *buf, size_t len);

/* ---- reading from the agent (trackctl, the Python Api) -------------------- */

/* Which query (one typed request of Query in trackd.proto each). */
typedef enum td_query_kind {
	TD_QUERY_RUNS = 1,    /* project, state, offset, limit */
	TD_QUERY_RUN = 2,     /* run */
	TD_QUERY_HISTORY = 3, /* run, keys, from_line, max_lines */
	TD_QUERY_RENAME = 4,  /* run, name, set_tags, tags, notes */
	TD_QUERY_FILES = 5,   /* run: its files (name, size, sha256, kind) */
	/* project, type, name: the artifact versions the caller may read */
	TD_QUERY_ARTIFACTS = 6,
	/* artifact ("[[entity/]project/]name[:alias|:vN]"), project: one version,
	 * its entries and manifest */
	TD_QUERY_ARTIFACT = 7,
} td_query_kind;

/* One query to the agent's run store (NULL / 0 fields are left out; fields
 * that the kind does not take are ignored). */
typedef struct td_query {
	td_query_kind kind;
	const char *run;         /* "id" or "entity/project/id" */
	const char *project;     /* runs: "project" or "entity/project" */
	const char *state;       /* runs: running|finished|failed|crashed|killed */
	const char *const *keys; /* history: only these keys (plus _step) */
	size_t n_keys;
	uint64_t from_line; /* history: first line (0-based) */
	uint64_t max_lines; /* history: at most this many (0: no limit) */
	const char *name;   /* rename: the new display name */
	uint64_t offset;    /* runs: skip this many runs of the filtered list */
	uint64_t limit;     /* runs: at most this many (0: no limit) */
	/* history: NULL or "history": the rows; "events": the system-metrics
	 * samples (W&B's wandb-events.jsonl lines); "metadata": the run's
	 * wandb-metadata.json as one line. */
	const char *stream;
	/* rename (an update of a stored run): name NULL keeps the name; with
	 * set_tags the tags become tags[0..n_tags) (possibly none); notes NULL
	 * keeps the notes, "" clears them. At least one change. */
	bool set_tags;
	const char *const *tags;
	size_t n_tags;
	const char *notes;
	/* artifacts: only versions of this type; artifact: the reference */
	const char *type;
	const char *artifact;
} td_query;

/* Sends one query (socket_url NULL: TRACKD_SOCKET, else the default path) and
 * waits up to timeout_ms (< 0: 10 s). On success *json_out is the agent's JSON
 * answer, owned by the caller (td_free). The agent's error → TD_ERR_NOT_FOUND
 * (no such run) or TD_ERR_REJECTED, with td_last_error() = its message; no
 * answer → TD_ERR_TRANSPORT. */
TD_API int td_query_agent(const char *socket_url, const td_query *q, int timeout_ms,
                          char **json_out);

/* Materialises the artifact version `artifact` (as TD_QUERY_ARTIFACT, with
 * `project` the default project or NULL) under `root`: every file entry is
 * read from the agent in pieces, written to a temporary name beside its
 * place, checked against the manifest (size, SHA-256, W&B's MD5) and only
 * then renamed to root/<path>; a file that fails the check is deleted and
 * the call fails with TD_ERR_CORRUPT naming it (the agent's store holds a
 * damaged blob): nothing unchecked is ever left under its name. References
 * are not fetched. On success *json_out (td_free; may be NULL) is the
 * ArtifactReply as td_query_agent gives it. */
TD_API int td_artifact_download(const char *socket_url, const char *artifact, const char *project,
                                const char *root, int timeout_ms, char **json_out);

/* ---- artifacts (W&B's log_artifact / use_artifact) ------------------------ */

typedef struct td_artifact td_artifact;

/* Starts an artifact version that `run` will log: name and type are names
 * (1-128 bytes of [A-Za-z0-9_.-], not '.' or '..'); description and
 * metadata_json (a JSON object, at most 64 KiB) may be NULL. *out is the
 * caller's (td_artifact_free), whether or not it is committed. */
TD_API int td_artifact_begin(td_run *run, const char *name, const char *type,
                             const char *description, const char *metadata_json, td_artifact **out);
/* Adds a file of `len` bytes as `path` (normalised as td_save_file's names;
 * each path once; at most 10000 entries). The bytes are copied and queued for
 * the agent at once (waiting while the client's max_buffer_bytes is full
 * with files not yet taken; TD_ERR_FULL for a file larger than that bound). */
TD_API int td_artifact_add_bytes(td_artifact *a, const char *path, const void *data, size_t len);
/* Adds the file at local_path as `path`: its digests are computed here in one
 * read, and its content is read again (by its absolute path) piece by piece
 * as it is sent: it takes no memory in the queue, whatever its size, and no
 * file descriptor while it waits.
 * The file must not change until the run has sent it: a file that did is
 * refused (by the agent's SHA-256 check) and the version is not made. */
TD_API int td_artifact_add_file(td_artifact *a, const char *path, const char *local_path);
/* Adds a reference: `uri` recorded as path's entry, never fetched. */
TD_API int td_artifact_add_reference(td_artifact *a, const char *path, const char *uri);
/* Records the version with aliases[0..n_aliases) (at most 32, each a name
 * that is not "vN"; "latest" is always given to a new version by the agent).
 * The agent makes the version once every file is stored; identical content
 * is the existing version (aliases added). */
TD_API int td_artifact_commit(td_artifact *a, const char *const *aliases, size_t n_aliases);
TD_API void td_artifact_free(td_artifact *a);
/* Records that the run used `resolved` ("entity/project/name:vN", as the
 * TD_QUERY_ARTIFACT answer's artifact.path): lineage. */
TD_API int td_use_artifact(td_run *run, const char *resolved);

/* The agent's status (StatusReply) as a JSON object; errors as td_query_agent. */
TD_API int td_status_agent(const char *socket_url, int timeout_ms, char **json_out);

/* Frees what the library returned (json_out). NULL is a no-op. */
TD_API void td_free(void *p);

/* Delivers the spool files for the agent at socket_url (NULL: as td_init finds
 * it) in spool_dir (NULL: the default) whose owner is gone
 * (those this process can lock), oldest records first, deleting each file once
 * the agent acknowledged all of it. Waits up to timeout_ms (< 0: 30 s).
 * *records_delivered (may be NULL) counts records the agent acknowledged,
 * including ones it already had. TD_OK when every such file was delivered,
 * TD_ERR_TIMEOUT when time ran out, TD_ERR_TRANSPORT when no agent answered. */
TD_API int td_spool_flush(const char *socket_url, const char *spool_dir, int timeout_ms,
                          uint64_t *records_delivered);

/* What waits for the agent at socket_url in spool_dir (both as td_spool_flush
 * takes them): the records and bytes of the complete frames in spool files
 * whose owner is gone, i.e. what td_spool_flush would deliver now. Files in use
 * (their process is alive and delivers them itself, or a flush is running) are
 * not counted. dir_out (may be NULL) receives the directory looked at. Reads
 * files only: works without an agent. */
TD_API int td_spool_pending(const char *socket_url, const char *spool_dir, uint64_t *records,
                            uint64_t *bytes, char *dir_out, size_t dir_len);

TD_API const char *td_strerror(int err);

/* Detail of the last failed call on this thread ("" if none). */
TD_API const char *td_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
