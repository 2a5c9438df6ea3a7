/*
 * config.c — the configuration table and everything it drives.
 *
 * `keys[]` below is the only place that knows a key's name, type, default, bounds
 * and help text. Defaults are applied by parsing the default text with the same
 * parser a config file goes through, so a default can never escape validation.
 * Loading happens in two passes over the text: a pass over libyaml's events that
 * rejects what the document model would silently resolve (aliases, anchors, tags,
 * extra documents), then the document loader, whose tree is walked against the
 * table into a copy of the config that replaces the caller's only on success.
 */
#include "config.h"

#include "errors.h"
#include "fs.h"
#include "log.h"
#include "trackd/v1/limits.h"

/* system_metrics.interval bounds: agent/sysmetrics/sysmetrics.h defines the same
 * (an identical redefinition: a difference would not compile where both are seen). */
#define SYSMETRICS_MIN_INTERVAL_MS 1000u
#define SYSMETRICS_MAX_INTERVAL_MS 3600000u

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

/* A config file is a few hundred bytes; anything far larger is the wrong file, and
 * the cap bounds what libyaml builds in memory (it has no limits of its own). */
#define CONFIG_MAX_FILE_BYTES (1u << 20)

/* Longest dotted path we build while walking; longer keys cannot be in the table. */
#define PATH_BYTES 128

enum key_type {
	KT_STRING,    /* char *: any text; min/max bound the length in bytes */
	KT_IPC_URL,   /* char *: ipc:// + absolute socket path; max bounds the path */
	KT_PATH,      /* char *: absolute path; max bounds the length */
	KT_HTTP_URL,  /* char *: http:// or https:// URL; "" allowed when min is 0 */
	KT_LOG_LEVEL, /* char *: one of `choices` */
	KT_BOOL,      /* bool: true | false */
	KT_UINT,      /* uint64_t: decimal */
	KT_SIZE,      /* uint64_t: bytes, written with a binary unit */
	KT_DURATION,  /* uint64_t: milliseconds, written with a unit */
	KT_ENUM,      /* an int-sized enum: the index of its name in `choices` */
	KT_MODE,      /* uint32_t: permission bits, written in octal */
	KT_LOOPBACK,  /* char *: "" or a loopback IP and port: 127.0.0.1:9464, [::1]:9464 */
};

struct key {
	const char *path; /* dotted: "a.b" is the key `b` in the mapping under `a:` */
	enum key_type type;
	size_t offset;              /* into struct config; see FIELD() */
	const char *def;            /* default text (for root, or for everyone)... */
	uint64_t def_num;           /* ...or, when def is NULL, a number (limits.h) */
	const char *def_user;       /* non-root default if different; {runtime} {state} */
	uint64_t min, max;          /* inclusive; max 0 = unbounded */
	const char *const *choices; /* KT_ENUM, KT_LOG_LEVEL: NULL-terminated */
	bool reload;                /* SIGHUP applies a new value to the running agent */
	const char *help;
};

/* The offset of a field, and a compile error if the field is not of type T: the
 * table cannot silently write a uint64_t into a uint32_t. */
#define FIELD(f, T) _Generic(((struct config *)0)->f, T : offsetof(struct config, f))

_Static_assert(sizeof(enum config_fsync) == sizeof(int), "KT_ENUM fields are stored as int");

static const char *const fsync_names[] = {
    [CONFIG_FSYNC_ALWAYS] = "always",
    [CONFIG_FSYNC_INTERVAL] = "interval",
    [CONFIG_FSYNC_NEVER] = "never",
    NULL,
};

/* Indexed by the logger's own enum so the two cannot drift apart. */
static const char *const log_level_names[] = {
    [TRACKD_LOG_ERROR] = "error",
    [TRACKD_LOG_WARN] = "warn",
    [TRACKD_LOG_INFO] = "info",
    [TRACKD_LOG_DEBUG] = "debug",
    NULL,
};

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)

/* Keys of one section must be contiguous: config_print opens each section once. */
static const struct key keys[] = {
    {.path = "listen",
     .type = KT_IPC_URL,
     .offset = FIELD(listen, char *),
     .def = "ipc:///run/trackd/trackd.sock",
     .def_user = "ipc://{runtime}/trackd.sock",
     .min = 1,
     .max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
     .help = "NNG URL of the socket clients connect to"},
    {.path = "state_dir",
     .type = KT_PATH,
     .offset = FIELD(state_dir, char *),
     .def = "/var/lib/trackd",
     .def_user = "{state}",
     .min = 1,
     .max = PATH_MAX - 1,
     .help = "directory of the transaction log, cursors and run directories"},
    {.path = "socket_mode",
     .type = KT_MODE,
     .offset = FIELD(socket_mode, uint32_t),
     .def = "0660",
     .def_user = "0600",
     .max = 0777,
     .help = "permissions of the socket file (group members may connect with 0660)"},
    {.path = "log_level",
     .reload = true,
     .type = KT_LOG_LEVEL,
     .offset = FIELD(log_level, char *),
     .def = "info",
     .choices = log_level_names,
     .help = "least severe level written to the log"},
    {.path = "shutdown_timeout",
     .reload = true,
     .type = KT_DURATION,
     .offset = FIELD(shutdown_timeout_ms, uint64_t),
     .def = "10s",
     .max = 3600 * 1000,
     .help = "how long SIGTERM may spend draining before the agent exits anyway"},
    {.path = "idle_exit",
     .type = KT_DURATION,
     .offset = FIELD(idle_exit_ms, uint64_t),
     .def = "5m",
     .max = UINT64_C(30) * 24 * 3600 * 1000,
     .help = "with --user only: exit after this long with no client connected, no running "
             "run and every sink caught up (clients start the agent again); 0s = never"},
    {.path = "access.group",
     .type = KT_STRING,
     .offset = FIELD(access.group, char *),
     .def = "trackd",
     .def_user = "",
     .max = 64,
     .help = "group whose members may connect and log (root and the agent's own user always "
             "may); empty: anyone the socket's permissions let in"},
    {.path = "access.admin_group",
     .type = KT_STRING,
     .offset = FIELD(access.admin_group, char *),
     .def = "",
     .max = 64,
     .help = "group whose members may read and append to every user's runs (root always may)"},
    {.path = "ingest_contexts",
     .type = KT_UINT,
     .offset = FIELD(ingest_contexts, uint64_t),
     .def = "16",
     .min = 1,
     .max = 256,
     .help = "requests the agent serves concurrently"},
    {.path = "metrics_listen",
     .type = KT_LOOPBACK,
     .offset = FIELD(metrics_listen, char *),
     .def = "",
     .max = 64,
     .help = "address and port of the Prometheus endpoint (GET /metrics), e.g. 127.0.0.1:9464; "
             "loopback only (it has no authentication); empty: off"},
    {.path = "limits.max_message_bytes",
     .reload = true,
     .type = KT_SIZE,
     .offset = FIELD(limits.max_message_bytes, uint64_t),
     .def_num = TRACKD_DEFAULT_MAX_MESSAGE_BYTES,
     .min = KIB,
     .max = 256 * MIB,
     .help = "largest request accepted; larger ones are refused before decoding (SIGHUP "
             "applies values up to the one the agent started with)"},
    {.path = "limits.max_records_per_batch",
     .reload = true,
     .type = KT_UINT,
     .offset = FIELD(limits.max_records_per_batch, uint64_t),
     .def_num = TRACKD_DEFAULT_MAX_RECORDS_PER_BATCH,
     .min = 1,
     /* The wandb sink places a record by (log index, position in its batch)
      * in 20 bits (wb_file_position). */
     .max = (1u << 20) - 1,
     .help = "records in one batch"},
    {.path = "limits.max_items_per_record",
     .reload = true,
     .type = KT_UINT,
     .offset = FIELD(limits.max_items_per_record, uint64_t),
     .def_num = TRACKD_DEFAULT_MAX_ITEMS_PER_RECORD,
     .min = 1,
     .help = "keys in one history row, summary or config update, nested keys included"},
    {.path = "limits.max_key_bytes",
     .reload = true,
     .type = KT_SIZE,
     .offset = FIELD(limits.max_key_bytes, uint64_t),
     .def_num = TRACKD_DEFAULT_MAX_KEY_BYTES,
     .min = 1,
     .max = 64 * KIB,
     .help = "longest key"},
    {.path = "limits.max_string_bytes",
     .reload = true,
     .type = KT_SIZE,
     .offset = FIELD(limits.max_string_bytes, uint64_t),
     .def_num = TRACKD_DEFAULT_MAX_STRING_BYTES,
     .min = 1,
     .help = "longest string value or console text"},
    {.path = "limits.max_nesting_depth",
     .reload = true,
     .type = KT_UINT,
     .offset = FIELD(limits.max_nesting_depth, uint64_t),
     .def_num = TRACKD_DEFAULT_MAX_NESTING_DEPTH,
     .min = 1,
     .max = 64,
     .help = "depth of nested dicts and lists in a record; 1 = flat"},
    {.path = "limits.max_list_length",
     .reload = true,
     .type = KT_UINT,
     .offset = FIELD(limits.max_list_length, uint64_t),
     .def_num = TRACKD_DEFAULT_MAX_LIST_LENGTH,
     .min = 1,
     .max = 1u << 20,
     .help = "elements of one list value (each also counts as an item)"},
    {.path = "limits.max_sessions",
     .type = KT_UINT,
     .offset = FIELD(limits.max_sessions, uint64_t),
     .def = "65536",
     .min = 16,
     .help = "client sessions remembered for duplicate detection; the oldest is evicted"},
    {.path = "txlog.fsync",
     .type = KT_ENUM,
     .offset = FIELD(txlog.fsync, enum config_fsync),
     .def = "interval",
     .choices = fsync_names,
     .help = "when appends reach the disk: before each ack, every interval, or when the "
             "kernel decides"},
    {.path = "txlog.fsync_interval",
     .type = KT_DURATION,
     .offset = FIELD(txlog.fsync_interval_ms, uint64_t),
     .def = "100ms",
     .min = 1,
     .max = 60 * 1000,
     .help = "period of the background fdatasync with fsync: interval"},
    {.path = "txlog.segment_bytes",
     .type = KT_SIZE,
     .offset = FIELD(txlog.segment_bytes, uint64_t),
     .def = "64MiB",
     .min = 64 * KIB,
     .max = 4 * GIB,
     .help = "size at which the log starts a new segment file"},
    {.path = "txlog.max_bytes",
     .reload = true,
     .type = KT_SIZE,
     .offset = FIELD(txlog.max_bytes, uint64_t),
     .def = "10GiB",
     .min = 1024 * 1024,
     .max = UINT64_MAX / 2,
     .help = "disk budget of the log: past it new batches are refused (clients keep and "
             "resend them) until sinks release segments"},
    /* The blob store (agent/blobs/blobs.h): file content, in txlog.max_bytes. */
    {.path = "blobs.max_file_bytes",
     .reload = true,
     .type = KT_SIZE,
     .offset = FIELD(blobs.max_file_bytes, uint64_t),
     .def = "1GiB",
     .min = 1,
     .max = UINT64_MAX / 2,
     .help = "largest file (image, table, saved file) a client may send; a larger one is "
             "refused naming this key"},
    {.path = "blobs.max_run_bytes",
     .reload = true,
     .type = KT_SIZE,
     .offset = FIELD(blobs.max_run_bytes, uint64_t),
     .def = "10GiB",
     .min = 1,
     .max = UINT64_MAX / 2,
     .help = "files one run may send in total (counted since the agent started)"},
    {.path = "blobs.grace",
     .type = KT_DURATION,
     .offset = FIELD(blobs.grace_ms, uint64_t),
     .def = "1h",
     .min = 1000,
     .max = 30ull * 24 * 3600 * 1000,
     .help = "how long a file no run dir links is kept (a client sends a file before the "
             "row that uses it)"},
    /* The system-metrics sampler (agent/sysmetrics/sysmetrics.h). */
    {.path = "system_metrics.enabled",
     .type = KT_BOOL,
     .offset = FIELD(system_metrics.enabled, bool),
     .def = "true",
     .help = "sample CPU, memory, disk, network and GPU metrics for every live run"},
    {.path = "system_metrics.interval",
     .type = KT_DURATION,
     .offset = FIELD(system_metrics.interval_ms, uint64_t),
     .def = "15s",
     .min = SYSMETRICS_MIN_INTERVAL_MS,
     .max = SYSMETRICS_MAX_INTERVAL_MS,
     .help = "time between two samples (one pass serves every live run), 1s to 1h"},
    {.path = "system_metrics.nvml_library",
     .type = KT_STRING,
     .offset = FIELD(system_metrics.nvml_library, char *),
     .def = "libnvidia-ml.so.1",
     .max = PATH_MAX - 1,
     .help = "NVML library loaded at start (a soname or a path); empty: no GPU metrics"},
    {.path = "system_metrics.cgroup_root",
     .type = KT_PATH,
     .offset = FIELD(system_metrics.cgroup_root, char *),
     .def = "/sys/fs/cgroup",
     .min = 1,
     .max = PATH_MAX - 1,
     .help = "where cgroup v2 is mounted: a run's cpu.max and memory.max limit its capacity"},
    /* The W&B upload sink (agent/sinks/wandb/wandb_sink.h). */
    {.path = "sinks.wandb.enabled",
     .type = KT_BOOL,
     .offset = FIELD(sinks.wandb.enabled, bool),
     .def = "false",
     .help = "upload runs to a Weights & Biases backend"},
    {.path = "sinks.wandb.base_url",
     .reload = true,
     .type = KT_HTTP_URL,
     .offset = FIELD(sinks.wandb.base_url, char *),
     .def = "https://api.wandb.ai",
     .min = 1,
     .max = 2048,
     .help = "the W&B API; https verifies the server's certificate unless tls_verify is false"},
    {.path = "sinks.wandb.app_url",
     .reload = true,
     .type = KT_HTTP_URL,
     .offset = FIELD(sinks.wandb.app_url, char *),
     .def = "",
     .max = 2048,
     .help = "the W&B UI, for run URLs; empty: from base_url as the official client "
             "derives it (api.wandb.ai -> wandb.ai, api.HOST -> app.HOST, other hosts as is)"},
    {.path = "sinks.wandb.entity",
     .reload = true,
     .type = KT_STRING,
     .offset = FIELD(sinks.wandb.entity, char *),
     .def = "",
     .max = 128,
     .help = "entity of runs that name none; empty: the API key's default entity"},
    {.path = "sinks.wandb.api_key_file",
     .reload = true,
     .type = KT_STRING,
     .offset = FIELD(sinks.wandb.api_key_file, char *),
     .def = "",
     .max = PATH_MAX - 1,
     .help = "file holding the API key (mode 0600 or stricter: the agent refuses others); "
             "empty: read api_key_env"},
    {.path = "sinks.wandb.api_key_env",
     .reload = true,
     .type = KT_STRING,
     .offset = FIELD(sinks.wandb.api_key_env, char *),
     .def = "WANDB_API_KEY",
     .max = 255,
     .help = "environment variable holding the API key when api_key_file is empty"},
    {.path = "sinks.wandb.transmit_interval",
     .reload = true,
     .type = KT_DURATION,
     .offset = FIELD(sinks.wandb.transmit_interval_ms, uint64_t),
     .def = "15s",
     .min = 1,
     .max = 3600 * 1000,
     .help = "at most one file_stream request per run per interval (a backlog drains at once)"},
    {.path = "sinks.wandb.heartbeat_interval",
     .reload = true,
     .type = KT_DURATION,
     .offset = FIELD(sinks.wandb.heartbeat_interval_ms, uint64_t),
     .def = "30s",
     .min = 1,
     .max = 3600 * 1000,
     .help = "an idle running run sends an empty request this often"},
    {.path = "sinks.wandb.upsert_debounce",
     .reload = true,
     .type = KT_DURATION,
     .offset = FIELD(sinks.wandb.upsert_debounce_ms, uint64_t),
     .def = "5s",
     .max = 3600 * 1000,
     .help = "name/tags/notes/config changes are sent at most this often (and at the end)"},
    {.path = "sinks.wandb.connect_timeout",
     .reload = true,
     .type = KT_DURATION,
     .offset = FIELD(sinks.wandb.connect_timeout_ms, uint64_t),
     .def = "10s",
     .min = 1,
     .max = 3600 * 1000,
     .help = "limit on connecting (TCP and TLS) for one request"},
    {.path = "sinks.wandb.request_timeout",
     .reload = true,
     .type = KT_DURATION,
     .offset = FIELD(sinks.wandb.request_timeout_ms, uint64_t),
     .def = "180s",
     .min = 1,
     .max = 3600 * 1000,
     .help = "limit on one whole request; a request past it is retried"},
    {.path = "sinks.wandb.stall_timeout",
     .reload = true,
     .type = KT_DURATION,
     .offset = FIELD(sinks.wandb.stall_timeout_ms, uint64_t),
     .def = "30s",
     .min = 1000,
     .max = 3600 * 1000,
     .help = "a request moving under 64 bytes/s for this long is abandoned and retried"},
    {.path = "sinks.wandb.retry_min",
     .reload = true,
     .type = KT_DURATION,
     .offset = FIELD(sinks.wandb.retry_min_ms, uint64_t),
     .def = "2s",
     .min = 1,
     .max = 3600 * 1000,
     .help = "first retry delay; it doubles per failed attempt, plus 0-25% jitter"},
    {.path = "sinks.wandb.retry_max",
     .reload = true,
     .type = KT_DURATION,
     .offset = FIELD(sinks.wandb.retry_max_ms, uint64_t),
     .def = "60s",
     .min = 1,
     .max = 24 * 3600 * 1000,
     .help = "cap of the retry delay (before jitter); retries never stop"},
    {.path = "sinks.wandb.retry_after_max",
     .reload = true,
     .type = KT_DURATION,
     .offset = FIELD(sinks.wandb.retry_after_max_ms, uint64_t),
     .def = "1h",
     .min = 1,
     .max = 24 * 3600 * 1000,
     .help = "longest wait a server's Retry-After or RateLimit-Reset may impose"},
    {.path = "sinks.wandb.max_request_bytes",
     .type = KT_SIZE,
     .offset = FIELD(sinks.wandb.max_request_bytes, uint64_t),
     .def = "10MiB",
     .min = 64 * KIB,
     .max = 256 * MIB,
     .help = "largest request body"},
    {.path = "sinks.wandb.max_line_bytes",
     .type = KT_SIZE,
     .offset = FIELD(sinks.wandb.max_line_bytes, uint64_t),
     .def = "9900KiB",
     .min = 1,
     .max = 256 * MIB,
     .help = "longer history/console lines (or ones that cannot fit one request) are "
             "skipped and counted"},
    {.path = "sinks.wandb.max_buffer_bytes",
     .type = KT_SIZE,
     .offset = FIELD(sinks.wandb.max_buffer_bytes, uint64_t),
     .def = "256MiB",
     .min = 1 * MIB,
     .max = 64 * GIB,
     .help = "memory for lines not yet acknowledged; past it, failing runs are re-read "
             "from the log later and reading pauses"},
    {.path = "sinks.wandb.max_parallel_requests",
     .type = KT_UINT,
     .offset = FIELD(sinks.wandb.max_parallel_requests, uint64_t),
     .def = "16",
     .min = 1,
     .max = 1024,
     .help = "requests in flight at once (each run has at most one)"},
    {.path = "sinks.wandb.max_parallel_uploads",
     .type = KT_UINT,
     .offset = FIELD(sinks.wandb.max_parallel_uploads, uint64_t),
     .def = "4",
     .min = 1,
     .max = 64,
     .help = "run file uploads (HTTP PUTs of media, saved and standard files) in flight "
             "at once, all runs together; besides max_parallel_requests"},
    {.path = "sinks.wandb.files_batch_delay",
     .reload = true,
     .type = KT_DURATION,
     .offset = FIELD(sinks.wandb.files_batch_delay_ms, uint64_t),
     .def = "5s",
     .max = 600 * 1000,
     .help = "a run's new files wait this long to be asked for upload URLs together "
             "(CreateRunFiles, at most 32 a call), as W&B's client; an ended run's at once"},
    {.path = "sinks.wandb.tls_verify",
     .reload = true,
     .type = KT_BOOL,
     .offset = FIELD(sinks.wandb.tls_verify, bool),
     .def = "true",
     .help = "verify the server's certificate and host name"},
    {.path = "sinks.wandb.ca_file",
     .reload = true,
     .type = KT_STRING,
     .offset = FIELD(sinks.wandb.ca_file, char *),
     .def = "",
     .max = PATH_MAX - 1,
     .help = "CA bundle for https; empty: the system's"},
    {.path = "sinks.wandb.complete_crashed",
     .reload = true,
     .type = KT_BOOL,
     .offset = FIELD(sinks.wandb.complete_crashed, bool),
     .def = "false",
     .help = "mark crashed and killed runs complete (exit code: the run's, else 1); by "
             "default the backend decides when heartbeats stop"},
};

#define NKEYS (sizeof keys / sizeof keys[0])

struct unit {
	const char *name;
	uint64_t factor;
};

/* Largest first: formatting picks the first unit that divides the value. */
static const struct unit size_units[] = {
    {"TiB", UINT64_C(1) << 40}, {"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB}, {"B", 1}, {NULL, 0},
};
static const struct unit duration_units[] = {
    {"h", 3600 * 1000}, {"m", 60 * 1000}, {"s", 1000}, {"ms", 1}, {NULL, 0},
};
static const struct unit no_units[] = {{NULL, 0}};

/* ---- text helpers ---------------------------------------------------------- */

/* Writes `s` as a YAML double-quoted scalar that libyaml reads back byte for byte.
 * Characters YAML forbids in a stream or would fold as line breaks are escaped;
 * `limit` > 0 shortens long values for error messages. */
static void quote(char *buf, size_t len, const char *s, size_t limit)
{
	size_t n = 0;
	const unsigned char *p = (const unsigned char *)s;
#define PUT(...)                                                                                   \
	do {                                                                                       \
		int w_ = snprintf(buf + n, len - n, __VA_ARGS__);                                  \
		n = (w_ < 0 || (size_t)w_ >= len - n) ? len - 1 : n + (size_t)w_;                  \
	} while (0)
	if (len == 0)
		return;
	buf[0] = '\0';
	PUT("\"");
	for (size_t i = 0; p[i] != '\0'; i++) {
		if (limit && i >= limit) {
			PUT("...");
			break;
		}
		unsigned c = p[i];
		if (c == '"' || c == '\\') {
			PUT("\\%c", c);
		} else if (c >= 0x20 && c < 0x7f) {
			PUT("%c", c);
		} else if (c < 0x80) {
			PUT("\\x%02x", c);
		} else {
			/* Decode one UTF-8 sequence to decide whether YAML allows it raw. */
			unsigned cp = 0, extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
			cp = c & (0x3fu >> extra);
			size_t k;
			for (k = 1; k <= extra && (p[i + k] & 0xc0) == 0x80; k++)
				cp = cp << 6 | (p[i + k] & 0x3fu);
			if (extra == 0 || k <= extra) {
				/* Not UTF-8 (only possible from the environment): no YAML
				 * spelling preserves the byte; keep the message readable. */
				PUT("\\x%02x", c);
				continue;
			}
			/* C1 controls and U+FFFE/F are not allowed in a stream; NEL and
			 * U+2028/9 are line breaks a quoted scalar would fold. */
			if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
			    cp == 0xfffe || cp == 0xffff) {
				PUT("\\u%04x", cp);
			} else {
				PUT("%.*s", (int)(extra + 1), (const char *)p + i);
			}
			i += extra;
		}
	}
	PUT("\"");
#undef PUT
}

enum { PARSE_OK = 0, PARSE_BAD = -1, PARSE_OVERFLOW = -2 };

/* Parses a decimal number at the start of `s`. A leading zero is refused because
 * YAML 1.1 tools read 010 as octal. */
static int parse_decimal(const char *s, uint64_t *out, const char **rest)
{
	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
		return PARSE_BAD;
	uint64_t v = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return PARSE_OVERFLOW;
		v = v * 10 + d;
	}
	*out = v;
	*rest = s;
	return PARSE_OK;
}

/* number + unit from `units`; a bare number uses `bare` (0 = unit required). */
static int parse_with_unit(const char *s, const struct unit *units, uint64_t bare, uint64_t *out)
{
	uint64_t v;
	const char *rest;
	int rc = parse_decimal(s, &v, &rest);
	if (rc != PARSE_OK)
		return rc;
	uint64_t factor = *rest == '\0' ? bare : 0;
	for (const struct unit *u = units; factor == 0 && u->name; u++) {
		if (strcmp(rest, u->name) == 0)
			factor = u->factor;
	}
	if (factor == 0)
		return PARSE_BAD;
	if (v > UINT64_MAX / factor)
		return PARSE_OVERFLOW;
	*out = v * factor;
	return PARSE_OK;
}

static void format_with_unit(char *buf, size_t len, uint64_t v, const struct unit *units)
{
	const struct unit *u = units;
	if (v == 0) {
		while (u[1].name)
			u++;
	} else {
		while (v % u->factor != 0)
			u++;
	}
	snprintf(buf, len, "%llu%s", (unsigned long long)(v / u->factor), u->name);
}

static int parse_mode(const char *s, uint64_t *out)
{
	/* The leading 0 is required so that 660 (decimal to a YAML reader) and
	 * 0660 cannot be confused. */
	if (s[0] != '0')
		return PARSE_BAD;
	uint64_t v = 0;
	for (s++; *s; s++) {
		if (*s < '0' || *s > '7')
			return PARSE_BAD;
		if (v > (UINT64_MAX >> 3))
			return PARSE_OVERFLOW;
		v = v << 3 | (uint64_t)(*s - '0');
	}
	*out = v;
	return PARSE_OK;
}

int config_parse_size(const char *text, uint64_t *out)
{
	uint64_t v;
	if (!text || parse_with_unit(text, size_units, 1, &v) != PARSE_OK)
		return TRACKD_EINVAL;
	*out = v;
	return TRACKD_OK;
}

int config_parse_duration_ms(const char *text, uint64_t *out)
{
	uint64_t v;
	if (!text || parse_with_unit(text, duration_units, 0, &v) != PARSE_OK)
		return TRACKD_EINVAL;
	*out = v;
	return TRACKD_OK;
}

/* ---- the table, typed ------------------------------------------------------- */

static void *field_of(struct config *cfg, const struct key *k)
{
	return (char *)cfg + k->offset;
}

static const void *cfield_of(const struct config *cfg, const struct key *k)
{
	return (const char *)cfg + k->offset;
}

static bool is_string_type(enum key_type t)
{
	return t == KT_STRING || t == KT_IPC_URL || t == KT_PATH || t == KT_LOG_LEVEL ||
	       t == KT_HTTP_URL || t == KT_LOOPBACK;
}

static bool is_number_type(enum key_type t)
{
	return t == KT_UINT || t == KT_SIZE || t == KT_DURATION || t == KT_MODE;
}

static void join_choices(char *buf, size_t len, const char *const *choices, const char *sep)
{
	size_t n = 0;
	buf[0] = '\0';
	for (size_t i = 0; choices[i] && n < len; i++) {
		int w = snprintf(buf + n, len - n, "%s%s", i ? sep : "", choices[i]);
		n = w < 0 ? len : n + (size_t)w;
	}
}

/* What a value of this key looks like, for "expected …" messages. */
static void describe_expected(char *buf, size_t len, const struct key *k)
{
	char list[128];
	switch (k->type) {
	case KT_STRING: snprintf(buf, len, "a string"); break;
	case KT_IPC_URL:
		snprintf(buf, len,
		         "an ipc:// URL with an absolute socket path, such as "
		         "ipc:///run/trackd/trackd.sock");
		break;
	case KT_PATH: snprintf(buf, len, "an absolute path"); break;
	case KT_HTTP_URL:
		snprintf(buf, len, "an http:// or https:// URL, such as https://api.wandb.ai");
		break;
	case KT_BOOL: snprintf(buf, len, "true or false"); break;
	case KT_UINT: snprintf(buf, len, "a whole number without leading zeros"); break;
	case KT_SIZE:
		snprintf(buf, len,
		         "a size such as 4096, 64KiB or 4MiB (units B, KiB, MiB, GiB, TiB)");
		break;
	case KT_DURATION:
		snprintf(buf, len,
		         "a duration such as 500ms, 15s, 2m or 1h (the unit is required)");
		break;
	case KT_MODE: snprintf(buf, len, "an octal mode with a leading 0, such as 0660"); break;
	case KT_LOOPBACK:
		snprintf(buf, len,
		         "a loopback address and port such as 127.0.0.1:9464 or [::1]:9464 (the "
		         "endpoint has no authentication), or \"\" for off");
		break;
	case KT_ENUM:
	case KT_LOG_LEVEL:
		join_choices(list, sizeof list, k->choices, ", ");
		snprintf(buf, len, "one of %s", list);
		break;
	}
}

static const char *type_name(enum key_type t)
{
	switch (t) {
	case KT_STRING: return "string";
	case KT_IPC_URL: return "ipc URL";
	case KT_PATH: return "path";
	case KT_HTTP_URL: return "URL";
	case KT_LOG_LEVEL: return "log level";
	case KT_BOOL: return "bool";
	case KT_UINT: return "integer";
	case KT_SIZE: return "size";
	case KT_DURATION: return "duration";
	case KT_ENUM: return "enum";
	case KT_MODE: return "octal mode";
	case KT_LOOPBACK: return "address:port";
	}
	return "?";
}

/* A number as the user would write it for this key (bounds, print, messages). */
static void format_number(char *buf, size_t len, const struct key *k, uint64_t v)
{
	switch (k->type) {
	case KT_SIZE: format_with_unit(buf, len, v, size_units); break;
	case KT_DURATION: format_with_unit(buf, len, v, duration_units); break;
	case KT_MODE: snprintf(buf, len, "%04llo", (unsigned long long)v); break;
	default: snprintf(buf, len, "%llu", (unsigned long long)v); break;
	}
}

/* The effective value as YAML (yaml=true) or as plain text for humans. */
static void format_value(char *buf, size_t len, const struct config *cfg, const struct key *k,
                         bool yaml)
{
	const void *f = cfield_of(cfg, k);
	if (is_string_type(k->type)) {
		const char *s = *(char *const *)f;
		if (yaml && k->type != KT_LOG_LEVEL)
			quote(buf, len, s ? s : "", 0);
		else
			snprintf(buf, len, "%s", s ? s : "");
		return;
	}
	switch (k->type) {
	case KT_BOOL: snprintf(buf, len, "%s", *(const bool *)f ? "true" : "false"); break;
	case KT_ENUM: snprintf(buf, len, "%s", k->choices[*(const int *)f]); break;
	case KT_MODE: format_number(buf, len, k, *(const uint32_t *)f); break;
	default: format_number(buf, len, k, *(const uint64_t *)f); break;
	}
}

/* "127.a.b.c:port" or "[::1]:port", numeric, port 1..65535: an endpoint without
 * authentication must not be reachable from other machines. */
static bool is_loopback_listen(const char *text)
{
	const char *colon = strrchr(text, ':');
	if (!colon || colon == text)
		return false;
	uint64_t port;
	const char *rest;
	if (parse_decimal(colon + 1, &port, &rest) != PARSE_OK || *rest || port < 1 || port > 65535)
		return false;
	char host[64];
	size_t hl = (size_t)(colon - text);
	if (hl >= sizeof host)
		return false;
	memcpy(host, text, hl);
	host[hl] = '\0';
	if (host[0] == '[') {
		struct in6_addr a6;
		if (hl < 3 || host[hl - 1] != ']')
			return false;
		host[hl - 1] = '\0';
		return inet_pton(AF_INET6, host + 1, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
	}
	struct in_addr a4;
	return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* Parses `text` as the value of `k` and stores it in `cfg`. On failure `cfg` is
 * untouched and `why` holds "key: reason" (no position: the caller adds it). */
static int set_value(struct config *cfg, const struct key *k, const char *text, char *why,
                     size_t whylen)
{
	char expected[160], got[96], a[32], b[32];
	void *f = field_of(cfg, k);
	uint64_t v = 0;
	int rc = PARSE_OK;

	describe_expected(expected, sizeof expected, k);
	if (text[0] == '\0')
		snprintf(got, sizeof got, "an empty value");
	else
		quote(got, sizeof got, text, 48);

	switch (k->type) {
	case KT_STRING: v = strlen(text); break;
	case KT_PATH:
		rc = text[0] == '/' ? PARSE_OK : PARSE_BAD;
		v = strlen(text);
		break;
	case KT_HTTP_URL: {
		/* A scheme and at least one character of host; the rest is libcurl's. */
		const char *host = strncmp(text, "https://", 8) == 0  ? text + 8
		                   : strncmp(text, "http://", 7) == 0 ? text + 7
		                                                      : NULL;
		rc = (text[0] == '\0' && k->min == 0) || (host && *host && *host != '/')
		         ? PARSE_OK
		         : PARSE_BAD;
		v = strlen(text);
		break;
	}
	case KT_IPC_URL:
		rc = strncmp(text, "ipc:///", 7) == 0 ? PARSE_OK : PARSE_BAD;
		v = strlen(text) - (rc == PARSE_OK ? 6 : 0);
		break;
	case KT_LOOPBACK:
		rc = text[0] == '\0' || is_loopback_listen(text) ? PARSE_OK : PARSE_BAD;
		v = strlen(text);
		break;
	case KT_LOG_LEVEL:
	case KT_ENUM:
		rc = PARSE_BAD;
		for (size_t i = 0; k->choices[i]; i++) {
			if (strcmp(text, k->choices[i]) == 0) {
				rc = PARSE_OK;
				v = i;
			}
		}
		break;
	case KT_BOOL:
		rc = strcmp(text, "true") == 0 || strcmp(text, "false") == 0 ? PARSE_OK : PARSE_BAD;
		v = text[0] == 't';
		break;
	case KT_UINT: rc = parse_with_unit(text, no_units, 1, &v); break;
	case KT_SIZE: rc = parse_with_unit(text, size_units, 1, &v); break;
	case KT_DURATION: rc = parse_with_unit(text, duration_units, 0, &v); break;
	case KT_MODE: rc = parse_mode(text, &v); break;
	}

	if (rc == PARSE_OVERFLOW) {
		snprintf(why, whylen, "%s: %s is too large (overflows 64 bits)", k->path, got);
		return TRACKD_EINVAL;
	}
	if (rc != PARSE_OK) {
		/* The common slip deserves a precise hint. */
		const char *hint = "";
		const char *u = text + strspn(text, "0123456789");
		if (k->type == KT_SIZE && u != text && strchr("kKMGT", *u) &&
		    strstr(u, "i") == NULL)
			hint = " (decimal units such as KB are not accepted: write KiB, MiB, GiB)";
		snprintf(why, whylen, "%s: expected %s, got %s%s", k->path, expected, got, hint);
		return TRACKD_EINVAL;
	}

	if (is_string_type(k->type) && k->type != KT_LOG_LEVEL) {
		const char *what = k->type == KT_IPC_URL ? "the socket path" : "the value";
		if (v < k->min) {
			snprintf(why, whylen, "%s: expected %s, got %s", k->path, expected, got);
			return TRACKD_EINVAL;
		}
		if (k->max && v > k->max) {
			snprintf(why, whylen, "%s: %s is %llu bytes long; the maximum is %llu",
			         k->path, what, (unsigned long long)v, (unsigned long long)k->max);
			return TRACKD_EINVAL;
		}
	}
	if (is_number_type(k->type)) {
		format_number(a, sizeof a, k, v);
		if (v < k->min) {
			format_number(b, sizeof b, k, k->min);
			snprintf(why, whylen, "%s: %s is below the minimum %s", k->path, a, b);
			return TRACKD_EINVAL;
		}
		if (k->max && v > k->max) {
			format_number(b, sizeof b, k, k->max);
			snprintf(why, whylen, "%s: %s is above the maximum %s", k->path, a, b);
			return TRACKD_EINVAL;
		}
	}

	switch (k->type) {
	case KT_STRING:
	case KT_IPC_URL:
	case KT_PATH:
	case KT_HTTP_URL:
	case KT_LOOPBACK:
	case KT_LOG_LEVEL: {
		char *copy = strdup(text);
		if (!copy) {
			snprintf(why, whylen, "%s: out of memory", k->path);
			return TRACKD_ENOMEM;
		}
		free(*(char **)f);
		*(char **)f = copy;
		break;
	}
	case KT_BOOL: *(bool *)f = v != 0; break;
	case KT_ENUM: *(int *)f = (int)v; break;
	case KT_MODE: *(uint32_t *)f = (uint32_t)v; break;
	case KT_UINT:
	case KT_SIZE:
	case KT_DURATION: *(uint64_t *)f = v; break;
	}
	return TRACKD_OK;
}

/* ---- defaults ---------------------------------------------------------------- */

/* XDG base directories must be absolute; a relative one is to be ignored. */
static const char *absolute_env(const char *name)
{
	const char *v = getenv(name);
	return v && v[0] == '/' ? v : NULL;
}

/* Expands {runtime} and {state} in a non-root default. */
static int expand_user_default(char *buf, size_t len, const char *tmpl)
{
	size_t n = 0;
	struct passwd pw, *res = NULL;
	char pwbuf[4096]; /* pw.pw_dir points into it */
	buf[0] = '\0';
	for (const char *p = tmpl; *p;) {
		const char *dir;
		int w;
		if (strncmp(p, "{runtime}", 9) == 0) {
			if ((dir = absolute_env("XDG_RUNTIME_DIR")))
				w = snprintf(buf + n, len - n, "%s/trackd", dir);
			else
				w = snprintf(buf + n, len - n, "/tmp/trackd-%lu",
				             (unsigned long)getuid());
			p += 9;
		} else if (strncmp(p, "{state}", 7) == 0) {
			if ((dir = absolute_env("XDG_STATE_HOME"))) {
				w = snprintf(buf + n, len - n, "%s/trackd", dir);
			} else {
				/* No HOME (a bare systemd unit): ask the user database. */
				if (!(dir = absolute_env("HOME"))) {
					int e =
					    getpwuid_r(getuid(), &pw, pwbuf, sizeof pwbuf, &res);
					if (e != 0 || !res || !pw.pw_dir || pw.pw_dir[0] != '/')
						return TRACKD_ENOENT;
					dir = pw.pw_dir;
				}
				w = snprintf(buf + n, len - n, "%s/.local/state/trackd", dir);
			}
			p += 7;
		} else {
			w = snprintf(buf + n, len - n, "%c", *p++);
		}
		/* A cut path would name another directory: refuse it instead. */
		if (w < 0 || (size_t)w >= len - n)
			return TRACKD_EINVAL;
		n += (size_t)w;
	}
	return TRACKD_OK;
}

/* The default of `k` as text; the --user placeholders are left unexpanded when
 * `expand` is false (for the reference). */
static int default_text(char *buf, size_t len, const struct key *k, bool system, bool expand)
{
	if (!system && k->def_user) {
		if (expand)
			return expand_user_default(buf, len, k->def_user);
		snprintf(buf, len, "%s", k->def_user);
	} else if (k->def) {
		snprintf(buf, len, "%s", k->def);
	} else {
		format_number(buf, len, k, k->def_num);
	}
	return TRACKD_OK;
}

int config_defaults(struct config *cfg, bool system)
{
	memset(cfg, 0, sizeof *cfg);
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		char text[PATH_MAX + 16], why[256];
		int rc = default_text(text, sizeof text, k, system, true);
		if (rc != TRACKD_OK)
			snprintf(why, sizeof why, "%s: %s", k->path,
			         rc == TRACKD_ENOENT ? "no home directory to derive it from"
			                             : "the derived path is too long");
		else /* Defaults go through the parser too: none can escape the bounds. */
			rc = set_value(cfg, k, text, why, sizeof why);
		if (rc != TRACKD_OK) {
			log_error("configuration default unusable: %s", why);
			config_fini(cfg);
			return rc;
		}
	}
	return TRACKD_OK;
}

int config_copy(struct config *dst, const struct config *src)
{
	*dst = *src;
	for (size_t i = 0; i < NKEYS; i++) {
		if (is_string_type(keys[i].type))
			*(char **)field_of(dst, &keys[i]) = NULL;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		if (!is_string_type(keys[i].type))
			continue;
		const char *s = *(char *const *)cfield_of(src, &keys[i]);
		if (s && !(*(char **)field_of(dst, &keys[i]) = strdup(s))) {
			config_fini(dst);
			return TRACKD_ENOMEM;
		}
	}
	return TRACKD_OK;
}

void config_fini(struct config *cfg)
{
	for (size_t i = 0; i < NKEYS; i++) {
		if (is_string_type(keys[i].type)) {
			char **s = field_of(cfg, &keys[i]);
			free(*s);
			*s = NULL;
		}
	}
}

static void format_short(char *buf, size_t len, const struct config *cfg, const struct key *k)
{
	char full[PATH_MAX * 4 + 16];
	format_value(full, sizeof full, cfg, k, true);
	if (strlen(full) >= len && len > 4)
		snprintf(buf, len, "%.*s...", (int)(len - 4), full);
	else
		snprintf(buf, len, "%s", full);
}

int config_diff(const struct config *running, const struct config *next,
                int (*fn)(void *arg, const struct config_change *change), void *arg)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		struct config_change c = {.key = k->path, .reloadable = k->reload};
		char a[PATH_MAX * 4 + 16], b[PATH_MAX * 4 + 16];
		format_value(a, sizeof a, running, k, true);
		format_value(b, sizeof b, next, k, true);
		if (strcmp(a, b) == 0)
			continue;
		format_short(c.old_value, sizeof c.old_value, running, k);
		format_short(c.new_value, sizeof c.new_value, next, k);
		int rc = fn(arg, &c);
		if (rc != 0)
			return rc;
	}
	return TRACKD_OK;
}

int config_copy_key(struct config *dst, const struct config *src, const char *key)
{
	const struct key *k = NULL;
	for (size_t i = 0; i < NKEYS && !k; i++)
		if (strcmp(keys[i].path, key) == 0)
			k = &keys[i];
	if (!k)
		return TRACKD_ENOENT;
	void *d = field_of(dst, k);
	const void *f = cfield_of(src, k);
	if (is_string_type(k->type)) {
		const char *v = *(char *const *)f;
		char *copy = v ? strdup(v) : NULL;
		if (v && !copy)
			return TRACKD_ENOMEM;
		free(*(char **)d);
		*(char **)d = copy;
		return TRACKD_OK;
	}
	switch (k->type) {
	case KT_BOOL: *(bool *)d = *(const bool *)f; break;
	case KT_ENUM: *(int *)d = *(const int *)f; break;
	case KT_MODE: *(uint32_t *)d = *(const uint32_t *)f; break;
	default: *(uint64_t *)d = *(const uint64_t *)f; break;
	}
	return TRACKD_OK;
}

/* ---- loading ----------------------------------------------------------------- */

struct loader {
	const char *name; /* file name for messages */
	const char *input;
	size_t len;
	char *errbuf;
	size_t errlen;
	yaml_document_t *doc;
	struct config *cfg; /* the copy being filled */
	unsigned n_errors;  /* fail_at calls; the first CONFIG_MAX_ERRORS are written */
};

/* Errors of the keys are all reported, as a compiler does, one per line in
 * errbuf; a syntax error ends the file's reading, so it comes alone. */
#define CONFIG_MAX_ERRORS 20

__attribute__((format(printf, 3, 4))) static int fail_at(struct loader *ld, yaml_mark_t mark,
                                                         const char *fmt, ...)
{
	if (ld->n_errors++ >= CONFIG_MAX_ERRORS || !ld->errbuf || !ld->errlen)
		return TRACKD_EINVAL;
	size_t used = strlen(ld->errbuf);
	if (used + 1 >= ld->errlen)
		return TRACKD_EINVAL;
	char *at = ld->errbuf + used;
	size_t room = ld->errlen - used;
	int n = snprintf(at, room, "%s%s:%zu:%zu: ", used ? "\n" : "", ld->name, mark.line + 1,
	                 mark.column + 1);
	if (n >= 0 && (size_t)n < room) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(at + n, room - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return TRACKD_EINVAL;
}

/* libyaml reports reader errors (bad UTF-8, control characters) as a byte offset
 * only, and for a bad trailing octet the offset of that octet; count lines and
 * characters up to the start of the offending character. */
static yaml_mark_t mark_at_offset(const struct loader *ld, size_t offset)
{
	yaml_mark_t m = {0, 0, 0};
	size_t lead = SIZE_MAX; /* start of the character being counted */
	if (offset > ld->len)
		offset = ld->len;
	for (size_t i = 0; i < offset; i++) {
		unsigned char c = (unsigned char)ld->input[i];
		if (c == '\n') {
			m.line++;
			m.column = 0;
		} else if ((c & 0xc0) != 0x80) {
			lead = i;
			m.column++;
		}
	}
	if (lead != SIZE_MAX) {
		unsigned char c = (unsigned char)ld->input[lead];
		size_t seq = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
		if (lead + seq > offset) {
			m.column--;
			offset = lead;
		}
	}
	m.index = offset;
	return m;
}

static int syntax_error(struct loader *ld, const yaml_parser_t *p)
{
	if (p->error == YAML_MEMORY_ERROR) {
		if (ld->errbuf && ld->errlen)
			snprintf(ld->errbuf, ld->errlen, "%s: out of memory", ld->name);
		return TRACKD_ENOMEM;
	}
	const char *problem = p->problem ? p->problem : "invalid YAML";
	if (p->error == YAML_READER_ERROR) {
		yaml_mark_t m = mark_at_offset(ld, p->problem_offset);
		if (p->problem_value >= 0)
			return fail_at(ld, m, "%s (#x%X)", problem, (unsigned)p->problem_value);
		return fail_at(ld, m, "%s", problem);
	}
	if (p->context)
		return fail_at(ld, p->problem_mark, "%s (%s started at line %zu, column %zu)",
		               problem, p->context, p->context_mark.line + 1,
		               p->context_mark.column + 1);
	return fail_at(ld, p->problem_mark, "%s", problem);
}

/* The document model resolves aliases into shared nodes and drops anchors and
 * tags without a trace, and yaml_parser_load stops after the first document; the
 * event stream is the only place those are visible, with their position. */
static int check_events(struct loader *ld)
{
	yaml_parser_t p;
	yaml_event_t ev;
	int rc = TRACKD_OK, docs = 0;
	bool done = false;

	if (!yaml_parser_initialize(&p))
		return TRACKD_ENOMEM;
	yaml_parser_set_input_string(&p, (const unsigned char *)ld->input, ld->len);
	while (!done && rc == TRACKD_OK) {
		if (!yaml_parser_parse(&p, &ev)) {
			rc = syntax_error(ld, &p);
			break;
		}
		const yaml_char_t *anchor = NULL, *tag = NULL;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT: done = true; break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1)
				rc = fail_at(
				    ld, ev.start_mark,
				    "a second YAML document; the configuration is one document");
			break;
		case YAML_ALIAS_EVENT:
			rc = fail_at(ld, ev.start_mark, "aliases (*%s) are not allowed",
			             (const char *)ev.data.alias.anchor);
			break;
		case YAML_SCALAR_EVENT:
			anchor = ev.data.scalar.anchor;
			tag = ev.data.scalar.tag;
			break;
		case YAML_SEQUENCE_START_EVENT:
			anchor = ev.data.sequence_start.anchor;
			tag = ev.data.sequence_start.tag;
			break;
		case YAML_MAPPING_START_EVENT:
			anchor = ev.data.mapping_start.anchor;
			tag = ev.data.mapping_start.tag;
			break;
		default: break;
		}
		if (rc == TRACKD_OK && anchor)
			rc = fail_at(ld, ev.start_mark, "anchors (&%s) are not allowed",
			             (const char *)anchor);
		else if (rc == TRACKD_OK && tag)
			rc = fail_at(ld, ev.start_mark, "tags (%s) are not allowed",
			             (const char *)tag);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	return rc;
}

static const char *node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE: return "a mapping";
	case YAML_SEQUENCE_NODE: return "a sequence";
	default: return "a scalar";
	}
}

static const struct key *find_key(const char *path)
{
	for (size_t i = 0; i < NKEYS; i++) {
		if (strcmp(keys[i].path, path) == 0)
			return &keys[i];
	}
	return NULL;
}

/* A section is any proper prefix of a key path, ending at a dot. */
static bool is_section(const char *path)
{
	size_t n = strlen(path);
	for (size_t i = 0; i < NKEYS; i++) {
		if (strncmp(keys[i].path, path, n) == 0 && keys[i].path[n] == '.')
			return true;
	}
	return false;
}

/* Optimal-string-alignment distance: Levenshtein plus adjacent transpositions,
 * so "fsnyc" is one edit from "fsync". Three rows: only names of table length
 * are worth comparing, and this runs on the caller's stack. */
#define NAME_CMP_MAX 64
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
	size_t rows[3][NAME_CMP_MAX + 1], *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
	if (la > NAME_CMP_MAX || lb > NAME_CMP_MAX)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);
			if (prev[j] + 1 < best)
				best = prev[j] + 1;
			if (cur[j - 1] + 1 < best)
				best = cur[j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    prev2[j - 2] + 1 < best)
				best = prev2[j - 2] + 1;
			cur[j] = best;
		}
		size_t *t = prev2;
		prev2 = prev;
		prev = cur;
		cur = t;
	}
	return prev[lb];
}

/* The valid key or section closest to `name` typed under `prefix`: near names in
 * the same section first, then the same or a near name in another section (a key
 * put under the wrong heading). Writes the dotted path, or "" if nothing is close. */
static void suggest(char *out, size_t outlen, const char *prefix, const char *name)
{
	size_t plen = strlen(prefix), nlen = strlen(name), best = SIZE_MAX;
	out[0] = '\0';
	for (size_t i = 0; i < NKEYS; i++) {
		/* Every component of a path names a key or a section. */
		const char *path = keys[i].path;
		for (size_t start = 0;;) {
			size_t stop = start + strcspn(path + start, ".");
			size_t clen = stop - start, sect = start ? start - 1 : 0;
			bool same = sect == plen && strncmp(path, prefix, plen) == 0;
			size_t limit = clen <= 4 ? 1 : clen <= 10 ? 2 : 3;
			size_t dist = edit_distance(name, nlen, path + start, clen);
			/* Prefer the same section; ties go to table order. */
			size_t score = dist * 2 + (same ? 0 : 1);
			if (dist <= limit && score < best) {
				best = score;
				snprintf(out, outlen, "%.*s", (int)stop, path);
			}
			if (path[stop] == '\0')
				break;
			start = stop + 1;
		}
	}
}

static int apply_mapping(struct loader *ld, const yaml_node_t *map, const char *prefix);

static int apply_pair(struct loader *ld, const yaml_node_t *map, const yaml_node_pair_t *pair,
                      const char *prefix)
{
	const yaml_node_t *kn = yaml_document_get_node(ld->doc, pair->key);
	const yaml_node_t *vn = yaml_document_get_node(ld->doc, pair->value);
	char path[PATH_BYTES], q[96], hint[PATH_BYTES + 32], expected[160];

	if (kn->type != YAML_SCALAR_NODE)
		return fail_at(ld, kn->start_mark, "expected a key name, got %s", node_kind(kn));
	const char *name = (const char *)kn->data.scalar.value;
	quote(q, sizeof q, name, 48);
	if (strlen(name) != kn->data.scalar.length || name[0] == '\0')
		return fail_at(ld, kn->start_mark, "invalid key name %s", q);
	int n = snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", name);
	bool fits = n > 0 && (size_t)n < sizeof path;

	const struct key *k = fits ? find_key(path) : NULL;
	bool section = fits && !k && is_section(path);
	if (strchr(name, '.') && (k || section))
		return fail_at(ld, kn->start_mark,
		               "dotted key %s: write each part as a nested mapping", q);
	if (!k && !section) {
		quote(q, sizeof q, fits ? path : name, 48);
		suggest(hint, sizeof hint, prefix, name);
		if (hint[0])
			return fail_at(ld, kn->start_mark, "unknown key %s; did you mean \"%s\"?",
			               q, hint);
		return fail_at(ld, kn->start_mark, "unknown key %s", q);
	}

	/* libyaml keeps duplicate keys; the earlier pairs were valid keys or one of
	 * at most CONFIG_MAX_ERRORS wrong ones (apply_mapping stops after those), so
	 * this scan is bounded by the table size. */
	for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < pair; p++) {
		const yaml_node_t *pk = yaml_document_get_node(ld->doc, p->key);
		if (pk->type != YAML_SCALAR_NODE)
			continue;
		if (strcmp((const char *)pk->data.scalar.value, name) == 0) {
			quote(q, sizeof q, path, 48);
			return fail_at(ld, kn->start_mark,
			               "duplicate key %s (first at line %zu, column %zu)", q,
			               pk->start_mark.line + 1, pk->start_mark.column + 1);
		}
	}

	if (section) {
		if (vn->type != YAML_MAPPING_NODE) {
			const char *got = node_kind(vn);
			if (vn->type == YAML_SCALAR_NODE) {
				quote(q, sizeof q, (const char *)vn->data.scalar.value, 48);
				got = vn->data.scalar.length ? q : "an empty value";
			}
			return fail_at(ld, vn->start_mark,
			               "%s: expected a mapping of %s.* keys, got %s", path, path,
			               got);
		}
		return apply_mapping(ld, vn, path);
	}

	if (vn->type != YAML_SCALAR_NODE) {
		describe_expected(expected, sizeof expected, k);
		return fail_at(ld, vn->start_mark, "%s: expected %s, got %s", path, expected,
		               node_kind(vn));
	}
	const char *text = (const char *)vn->data.scalar.value;
	if (strlen(text) != vn->data.scalar.length)
		return fail_at(ld, vn->start_mark, "%s: the value contains a NUL character", path);
	char why[512];
	int rc = set_value(ld->cfg, k, text, why, sizeof why);
	if (rc == TRACKD_ENOMEM) {
		if (ld->errbuf && ld->errlen)
			snprintf(ld->errbuf, ld->errlen, "%s: out of memory", ld->name);
		return rc;
	}
	if (rc != TRACKD_OK)
		return fail_at(ld, vn->start_mark, "%s", why);
	return TRACKD_OK;
}

/* Every pair is tried, so that all wrong keys are reported at once; only running
 * out of memory stops at the first. */
static int apply_mapping(struct loader *ld, const yaml_node_t *map, const char *prefix)
{
	int first = TRACKD_OK;
	for (const yaml_node_pair_t *p = map->data.mapping.pairs.start;
	     p < map->data.mapping.pairs.top && ld->n_errors <= CONFIG_MAX_ERRORS; p++) {
		int rc = apply_pair(ld, map, p, prefix);
		if (rc == TRACKD_ENOMEM)
			return rc;
		if (first == TRACKD_OK)
			first = rc;
	}
	return first;
}

static int too_big(const char *name, char *errbuf, size_t errlen)
{
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "%s: larger than %u bytes; not a configuration file?",
		         name, CONFIG_MAX_FILE_BYTES);
	return TRACKD_EINVAL;
}

int config_load_buffer(struct config *cfg, const char *name, const char *yaml, size_t len,
                       char *errbuf, size_t errlen)
{
	struct loader ld = {
	    .name = name ? name : "<config>",
	    .input = yaml ? yaml : "",
	    .len = yaml ? len : 0,
	    .errbuf = errbuf,
	    .errlen = errlen,
	};
	if (errbuf && errlen)
		errbuf[0] = '\0';
	if (ld.len > CONFIG_MAX_FILE_BYTES)
		return too_big(ld.name, errbuf, errlen);
	int rc = check_events(&ld);
	if (rc != TRACKD_OK)
		return rc;

	struct config tmp;
	rc = config_copy(&tmp, cfg);
	if (rc != TRACKD_OK)
		return rc;
	yaml_parser_t parser;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&parser)) {
		config_fini(&tmp);
		return TRACKD_ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)ld.input, ld.len);
	if (!yaml_parser_load(&parser, &doc)) {
		rc = syntax_error(&ld, &parser);
	} else {
		ld.doc = &doc;
		ld.cfg = &tmp;
		const yaml_node_t *root = yaml_document_get_root_node(&doc);
		/* No root (an empty file) or a bare "---" (an empty plain scalar) = defaults. */
		bool empty =
		    !root || (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0 &&
		              root->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
		if (!empty && root->type != YAML_MAPPING_NODE)
			rc = fail_at(&ld, root->start_mark,
			             "expected a mapping of keys at the top level, got %s",
			             node_kind(root));
		else if (!empty)
			rc = apply_mapping(&ld, root, "");
		if (ld.n_errors > CONFIG_MAX_ERRORS && errbuf && errlen) {
			size_t used = strlen(errbuf);
			snprintf(errbuf + used, errlen - used,
			         "\n%s: more errors after these %u; reading stopped", ld.name,
			         CONFIG_MAX_ERRORS);
		}
		yaml_document_delete(&doc);
	}
	yaml_parser_delete(&parser);

	if (rc == TRACKD_OK) {
		config_fini(cfg);
		*cfg = tmp;
	} else {
		config_fini(&tmp);
	}
	return rc;
}

int config_load_file(struct config *cfg, const char *path, char *errbuf, size_t errlen)
{
	char ebuf[128];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "%s: cannot open: %s", path,
			         strerror_r(e, ebuf, sizeof ebuf));
		return e == ENOENT ? TRACKD_ENOENT : TRACKD_EIO;
	}
	char *buf;
	size_t len;
	int rv = fs_read_fd(fd, CONFIG_MAX_FILE_BYTES, &buf, &len);
	int e = errno;
	close(fd);
	if (rv == TRACKD_ETOOBIG)
		return too_big(path, errbuf, errlen);
	if (rv == TRACKD_ENOMEM)
		return rv;
	if (rv) {
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "%s: cannot read: %s", path,
			         strerror_r(e, ebuf, sizeof ebuf));
		return TRACKD_EIO;
	}
	int rc = config_load_buffer(cfg, path, buf, len, errbuf, errlen);
	free(buf);
	return rc;
}

/* ---- printing ------------------------------------------------------------------ */

/* Number of leading dot-separated components `a` and `b` share, out of the
 * section parts (all but the last component) of each. */
static size_t shared_sections(const char *a, const char *b)
{
	size_t shared = 0;
	for (size_t i = 0;; i++) {
		if (a[i] != b[i])
			return shared;
		if (a[i] == '\0')
			return shared;
		if (a[i] == '.')
			shared++;
	}
}

void config_print(const struct config *cfg, FILE *out)
{
	const char *prev = "";
	char value[PATH_MAX * 4 + 16];
	fprintf(out, "# trackd effective configuration\n");
	for (size_t i = 0; i < NKEYS; i++) {
		const char *path = keys[i].path;
		size_t depth = shared_sections(prev, path), level = 0;
		const char *part = path;
		/* Skip the sections already open, open the rest. */
		for (const char *dot; (dot = strchr(part, '.')); part = dot + 1, level++) {
			if (level >= depth)
				fprintf(out, "%*s%.*s:\n", (int)(2 * level), "", (int)(dot - part),
				        part);
		}
		format_value(value, sizeof value, cfg, &keys[i], true);
		fprintf(out, "%*s%s: %s\n", (int)(2 * level), "", part, value);
		prev = path;
	}
}

void config_print_reference(FILE *out)
{
	char bounds[160], lo[32], hi[32], sys[256], user[256];
	fprintf(out, "Configuration file keys (YAML; a dotted key a.b is written as b: in a "
	             "mapping under a:)\n\n");
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		bounds[0] = '\0';
		if (is_number_type(k->type) && (k->min || k->max)) {
			format_number(lo, sizeof lo, k, k->min);
			format_number(hi, sizeof hi, k, k->max);
			if (k->min && k->max)
				snprintf(bounds, sizeof bounds, ", %s..%s", lo, hi);
			else if (k->min)
				snprintf(bounds, sizeof bounds, ", at least %s", lo);
			else
				snprintf(bounds, sizeof bounds, ", at most %s", hi);
		} else if (k->choices) {
			char list[128];
			join_choices(list, sizeof list, k->choices, "|");
			snprintf(bounds, sizeof bounds, ": %s", list);
		} else if (k->type == KT_IPC_URL && k->max) {
			snprintf(bounds, sizeof bounds, ", socket path at most %llu bytes",
			         (unsigned long long)k->max);
		}
		fprintf(out, "  %s (%s%s)\n      %s\n      %s\n", k->path, type_name(k->type),
		        bounds, k->help,
		        k->reload ? "SIGHUP applies a change" : "a change needs a restart");
		default_text(sys, sizeof sys, k, true, false);
		default_text(user, sizeof user, k, false, false);
		const char *shown_sys = *sys ? sys : "\"\"", *shown_user = *user ? user : "\"\"";
		if (strcmp(sys, user) != 0)
			fprintf(out, "      default: %s; with --user: %s\n", shown_sys, shown_user);
		else
			fprintf(out, "      default: %s\n", shown_sys);
	}
	fprintf(out,
	        "\nSizes: bytes, or a whole number with a unit B, KiB, MiB, GiB, TiB (64KiB).\n"
	        "Durations: a whole number with a unit ms, s, m, h (500ms); the unit is required.\n"
	        "{runtime} is $XDG_RUNTIME_DIR/trackd, or /tmp/trackd-<uid> without it.\n"
	        "{state} is $XDG_STATE_HOME/trackd, or $HOME/.local/state/trackd without it.\n");
}
