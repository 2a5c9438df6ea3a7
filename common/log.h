/*
 * log.h — structured log lines on stderr (journald picks them up).
 *
 * Format: `trackd[<pid>]: level=<lvl> msg="<text>" key=value …`, one line per
 * call, written with a single write(2) so concurrent lines never interleave.
 * Thread-safe. The level is process-wide and set once at start-up (and on reload);
 * it is the one piece of mutable global state, read with relaxed atomics.
 * Secrets must never be passed to these functions.
 */
#ifndef TRACKD_CORE_LOG_H
#define TRACKD_CORE_LOG_H

enum trackd_log_level {
	TRACKD_LOG_ERROR = 0,
	TRACKD_LOG_WARN = 1,
	TRACKD_LOG_INFO = 2,
	TRACKD_LOG_DEBUG = 3,
};

void trackd_log_set_level(enum trackd_log_level level);
enum trackd_log_level trackd_log_get_level(void);
/* Parses "error|warn|info|debug"; returns 0 or TRACKD_EINVAL. */
int trackd_log_level_parse(const char *name, enum trackd_log_level *out);

/* `fmt` produces the message text; it is quoted and escaped. */
void trackd_log(enum trackd_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) trackd_log(TRACKD_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  trackd_log(TRACKD_LOG_WARN, __VA_ARGS__)
#define log_info(...)  trackd_log(TRACKD_LOG_INFO, __VA_ARGS__)
#define log_debug(...) trackd_log(TRACKD_LOG_DEBUG, __VA_ARGS__)

#endif
