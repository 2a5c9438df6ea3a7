#include "log.h"

#include "errors.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Atomic int current_level = TRACKD_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void trackd_log_set_level(enum trackd_log_level level)
{
	atomic_store_explicit(&current_level, (int)level, memory_order_relaxed);
}

enum trackd_log_level trackd_log_get_level(void)
{
	return (enum trackd_log_level)atomic_load_explicit(&current_level, memory_order_relaxed);
}

int trackd_log_level_parse(const char *name, enum trackd_log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum trackd_log_level)i;
			return TRACKD_OK;
		}
	}
	return TRACKD_EINVAL;
}

void trackd_log(enum trackd_log_level level, const char *fmt, ...)
{
	if ((int)level > atomic_load_explicit(&current_level, memory_order_relaxed))
		return;
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);

	char line[2200];
	int n = snprintf(line, sizeof line, "trackd[%ld]: level=%s msg=\"", (long)getpid(),
	                 level_names[level]);
	/* Escape quotes, backslashes and control characters so a line stays one line. */
	for (const char *p = text; *p && n < (int)sizeof line - 8; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\') {
			line[n++] = '\\';
			line[n++] = (char)c;
		} else if (c < 0x20) {
			n += snprintf(line + n, sizeof line - (size_t)n, "\\x%02x", c);
		} else {
			line[n++] = (char)c;
		}
	}
	line[n++] = '"';
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}
