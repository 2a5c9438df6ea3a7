/* fuzz_config — config_load_buffer on arbitrary YAML (R11).
 *
 * Besides "no crash, no leak, no sanitizer finding", it checks the loader's
 * contract (config.h):
 *   - the result is 0, TRACKD_EINVAL or TRACKD_ENOMEM, the same with a short
 *     error buffer (which is cut, not overrun);
 *   - an error leaves the config unchanged and says "file:line:col: message" with
 *     a 1-based line and column that lie within the input (or at the end of the
 *     stream, which libyaml places at the start of one more line);
 *   - an accepted config, written out with config_print, loads again onto the
 *     defaults and prints the same (what --check-config shows is what it means).
 * A broken rule aborts with a message naming it: a bug in config.c. */
#include "config.h"
#include "errors.h"
#include "log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.yaml"

/* The defaults (as root: no environment involved) and how they print. */
static struct config defaults;
static char *defaults_text;

__attribute__((noreturn, format(printf, 1, 2))) static void bug(const char *fmt, ...);

static void bug(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "fuzz_config: contract broken: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}

static char *print(const struct config *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		abort();
	config_print(cfg, f);
	fclose(f);
	return text;
}

static void free_defaults(void)
{
	config_fini(&defaults);
	free(defaults_text);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	trackd_log_set_level(TRACKD_LOG_ERROR);
	if (config_defaults(&defaults, true) != TRACKD_OK)
		abort();
	defaults_text = print(&defaults);
	atexit(free_defaults);
	return 0;
}

/* "fuzz.yaml:<line>:<col>: <message>" with both numbers in range. */
static void check_position(const char *err, const uint8_t *data, size_t size)
{
	unsigned long long line, col;
	int used = 0;
	if (sscanf(err, NAME ":%llu:%llu: %n", &line, &col, &used) != 2 || used == 0 ||
	    err[used] == '\0')
		bug("error without a position or a message: \"%s\"", err);
	/* Line breaks as YAML 1.1 (libyaml) counts them: LF, CR, CRLF, NEL, LS, PS. */
	size_t lines = 1;
	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\n' || (data[i] == '\r' && (i + 1 == size || data[i + 1] != '\n')))
			lines++;
		else if (i + 1 < size && data[i] == 0xc2 && data[i + 1] == 0x85)
			lines++;
		else if (i + 2 < size && data[i] == 0xe2 && data[i + 1] == 0x80 &&
		         (data[i + 2] == 0xa8 || data[i + 2] == 0xa9))
			lines++;
	}
	/* libyaml puts the end of the stream at the start of one more line. */
	if (line < 1 || line > lines + 1 || col < 1 || col > size + 1)
		bug("position %llu:%llu outside an input of %zu lines, %zu bytes: \"%s\"", line,
		    col, lines, size, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	if (config_copy(&cfg, &defaults) != TRACKD_OK)
		return 0;
	char err[512];
	int rc = config_load_buffer(&cfg, NAME, (const char *)data, size, err, sizeof err);
	if (rc != TRACKD_OK && rc != TRACKD_EINVAL && rc != TRACKD_ENOMEM)
		bug("config_load_buffer returned %d", rc);

	/* A short buffer: same answer, cut and terminated. */
	struct config again;
	char tiny[12];
	if (config_copy(&again, &defaults) != TRACKD_OK) {
		config_fini(&cfg);
		return 0;
	}
	int rc2 = config_load_buffer(&again, NAME, (const char *)data, size, tiny, sizeof tiny);
	if (rc2 != rc && rc != TRACKD_ENOMEM && rc2 != TRACKD_ENOMEM)
		bug("result %d with a short error buffer, %d with a long one", rc2, rc);
	if (rc2 != TRACKD_OK && !memchr(tiny, '\0', sizeof tiny))
		bug("short error buffer not terminated");
	config_fini(&again);

	char *text = print(&cfg);
	if (rc == TRACKD_EINVAL) {
		check_position(err, data, size);
		if (strcmp(text, defaults_text) != 0)
			bug("a refused config changed the values:\n%s", text);
	} else if (rc == TRACKD_OK) {
		/* What was accepted prints as YAML that means the same. */
		struct config back;
		if (config_copy(&back, &defaults) != TRACKD_OK)
			abort();
		rc = config_load_buffer(&back, "printed", text, strlen(text), err, sizeof err);
		if (rc != TRACKD_OK)
			bug("the printed config does not load: %s\n%s", err, text);
		char *text2 = print(&back);
		if (strcmp(text, text2) != 0)
			bug("the printed config loads as another one:\n%s\n---\n%s", text, text2);
		free(text2);
		config_fini(&back);
	}
	free(text);
	config_fini(&cfg);
	return 0;
}
