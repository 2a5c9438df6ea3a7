/*
 * config.h — the agent's configuration: one struct, one table, one YAML file.
 *
 * Every key lives in one static table {path, type, offset, default, bounds, help}
 * (config.c) that drives the defaults, the YAML parsing, validation and the
 * `--help` text. Nothing else in the agent knows a key's name.
 *
 * File format: a YAML mapping (nested mappings for sections), e.g.
 *     listen: ipc:///run/trackd/trackd.sock
 *     txlog:
 *       fsync: interval
 *       fsync_interval: 100ms
 * Parsed with libyaml's document loader. Strict: an unknown key, a duplicate key,
 * a wrong type, a bad value, a value out of bounds, an alias/anchor/tag, a second
 * document, or nesting deeper than the table knows → an error
 * `file:line:col: message` (1-based line and column of the offending node: the key
 * for unknown/duplicate keys, the value for bad values) and nothing is applied. An
 * empty file changes nothing. Files over 1 MiB are refused. Sizes are written with a
 * unit (`B`, `KiB`, `MiB`, `GiB`, `TiB`; a bare integer means bytes); durations as
 * `500ms`, `15s`, `2m`, `1h` (a bare integer is rejected: the unit is required).
 *
 * Threading: none; a config is a plain value, copied freely (strings are owned by
 * the struct: use config_copy / config_fini).
 */
#ifndef TRACKD_CONFIG_H
#define TRACKD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum config_fsync { CONFIG_FSYNC_ALWAYS, CONFIG_FSYNC_INTERVAL, CONFIG_FSYNC_NEVER };

struct config_limits {
	uint64_t max_message_bytes; /* NNG_OPT_RECVMAXSZ; whole request */
	uint64_t max_records_per_batch;
	uint64_t max_items_per_record; /* keys in one row/summary/config update, nested included */
	uint64_t max_key_bytes;
	uint64_t max_string_bytes;  /* any string value or console text */
	uint64_t max_nesting_depth; /* nested maps and lists; 1 = flat */
	uint64_t max_list_length;   /* elements of one list value */
	uint64_t max_sessions;      /* dedupe table entries (oldest evicted) */
};

struct config_txlog {
	enum config_fsync fsync;
	uint64_t fsync_interval_ms;
	uint64_t segment_bytes;
	uint64_t max_bytes; /* disk budget of the log's segments */
};

/* blobs.*: file content from clients (agent/blobs/blobs.h). */
struct config_blobs {
	uint64_t max_file_bytes; /* one file (blob) */
	uint64_t max_run_bytes;  /* all files of one run */
	uint64_t grace_ms;       /* an unreferenced blob is kept this long */
};

struct config_access {
	char *group;       /* members may connect and log; "" = anyone the socket lets in */
	char *admin_group; /* members may read and append to every user's runs */
};

/* sinks.wandb.*: the W&B upload sink (agent/sinks/wandb/wandb_sink.h). */
struct config_wandb {
	bool enabled;
	char *base_url;     /* http(s)://host[:port] of the W&B API */
	char *app_url;      /* UI base for run URLs; "" = derived from base_url */
	char *entity;       /* "" = the run's, else the key's default entity */
	char *api_key_file; /* "" = none; must not be group/world accessible */
	char *api_key_env;  /* environment variable read when no key file is set */
	uint64_t transmit_interval_ms;
	uint64_t heartbeat_interval_ms;
	uint64_t upsert_debounce_ms;
	uint64_t connect_timeout_ms;
	uint64_t request_timeout_ms;
	uint64_t stall_timeout_ms;
	uint64_t retry_min_ms;
	uint64_t retry_max_ms;
	uint64_t retry_after_max_ms;
	uint64_t max_request_bytes;
	uint64_t max_line_bytes;
	uint64_t max_buffer_bytes;
	uint64_t max_parallel_requests;
	uint64_t max_parallel_uploads; /* run file PUTs in flight at once */
	uint64_t files_batch_delay_ms; /* CreateRunFiles waits this long to batch */
	bool tls_verify;
	char *ca_file;         /* "" = the system's CA store */
	bool complete_crashed; /* send complete for crashed/killed runs too */
};

/* system_metrics.*: the agent's sampler (agent/sysmetrics/sysmetrics.h). */
struct config_system_metrics {
	bool enabled;
	uint64_t interval_ms;
	char *nvml_library; /* dlopen name or path; "" = no GPU metrics */
	char *cgroup_root;  /* where cgroup v2 is mounted */
};

struct config_sinks {
	struct config_wandb wandb;
};

struct config {
	char *listen; /* NNG URL, ipc:// */
	char *state_dir;
	uint32_t socket_mode; /* octal permissions of the ipc socket file */
	char *log_level;      /* error|warn|info|debug */
	uint64_t shutdown_timeout_ms;
	uint64_t idle_exit_ms;    /* --user: idle time before exiting; 0 = never */
	uint64_t ingest_contexts; /* concurrent NNG request contexts */
	char *metrics_listen;     /* "" = no metrics endpoint; else loopback ip:port */
	struct config_limits limits;
	struct config_txlog txlog;
	struct config_blobs blobs;
	struct config_access access;
	struct config_system_metrics system_metrics;
	struct config_sinks sinks;
};

/* Fills `cfg` with every default. `system` picks the machine agent's paths
 * (ipc:///run/trackd/trackd.sock, /var/lib/trackd; whatever uid runs it, e.g.
 * the service's `trackd` user); otherwise (trackd --user)
 * $XDG_RUNTIME_DIR/trackd/trackd.sock and $XDG_STATE_HOME/trackd (falling back to
 * /tmp/trackd-<uid>/ and ~/.local/state/trackd). `cfg` is overwritten, not freed.
 * Fails (logged; `cfg` then holds no strings) with TRACKD_EINVAL if a derived path
 * is unusable (a socket path over 107 bytes), or TRACKD_ENOENT if there is no home
 * directory to derive the state dir from. */
int config_defaults(struct config *cfg, bool system);

/* Applies the YAML file at `path` on top of `cfg`. On error returns TRACKD_EINVAL
 * (or TRACKD_ENOENT/TRACKD_EIO for an unreadable file), writes
 * "file:line:col: message" into errbuf — one line per error: every wrong key and
 * value is reported (up to 20, as much as errbuf holds), a syntax error alone —
 * and leaves `cfg` unchanged. */
int config_load_file(struct config *cfg, const char *path, char *errbuf, size_t errlen);

/* Same, from a memory buffer; `name` stands for the file name in messages. */
int config_load_buffer(struct config *cfg, const char *name, const char *yaml, size_t len,
                       char *errbuf, size_t errlen);

/* Writes the documented list of keys, their types and defaults (for --help). */
void config_print_reference(FILE *out);

/* Writes the effective configuration as YAML (for --check-config). */
void config_print(const struct config *cfg, FILE *out);

/* One key whose value differs between two configurations (for SIGHUP). Values
 * are written as in the file, long ones shortened. */
struct config_change {
	const char *key; /* dotted path, static */
	char old_value[160];
	char new_value[160];
	bool reloadable; /* the key is marked as applied to a running agent */
};

/* Calls `fn` for each key whose value differs between `running` and `next`, in
 * table order; stops at and returns the first non-zero return of fn. */
int config_diff(const struct config *running, const struct config *next,
                int (*fn)(void *arg, const struct config_change *change), void *arg);

/* Copies the value of one key (dotted path) from `src` into `dst`. 0,
 * TRACKD_ENOENT for an unknown key, TRACKD_ENOMEM (dst unchanged). */
int config_copy_key(struct config *dst, const struct config *src, const char *key);

/* `dst` is overwritten, not freed; on TRACKD_ENOMEM it holds no strings. */
int config_copy(struct config *dst, const struct config *src);
/* Frees the strings; idempotent. */
void config_fini(struct config *cfg);

/* Parsers shared with the command line: "64KiB" → bytes, "500ms" → ms. 0 or
 * TRACKD_EINVAL (malformed, or over 64 bits); `*out` is untouched on error. */
int config_parse_size(const char *text, uint64_t *out);
int config_parse_duration_ms(const char *text, uint64_t *out);

#endif
