/*
 * check.h — what the libtrackd test programs share: the CHECK macros (a failed
 * check is reported and counted, the test goes on), a fresh socket URL and
 * spool dir per test, and lookups in decoded records.
 *
 * Every test gets a `struct tc *t`; main() runs the tests in order and fails
 * if any check failed.
 */
#ifndef TRACKD_CLIENT_TEST_CHECK_H
#define TRACKD_CLIENT_TEST_CHECK_H

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "test_server.h"
#include "trackd/trackd.h"

struct tc {
	const char *dir;
	unsigned socket_no;
	int failed_checks;    /* in the current test */
	char spool[PATH_MAX]; /* the spool dir of the last next_url() */
	const char *argv0;    /* for tests that run this program as a child */
};

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
			t->failed_checks++;                                                        \
		}                                                                                  \
	} while (0)

#define CHECK_RC(expr, want)                                                                       \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_ != (want)) {                                                               \
			fprintf(stderr, "  %s:%d: %s = %d (%s), want %d; last error: %s\n",        \
			        __FILE__, __LINE__, #expr, rc_, td_strerror(rc_), (want),          \
			        td_last_error());                                                  \
			t->failed_checks++;                                                        \
		}                                                                                  \
	} while (0)

#define CHECK_ERR_HAS(needle)                                                                      \
	do {                                                                                       \
		if (strstr(td_last_error(), (needle)) == NULL) {                                   \
			fprintf(stderr, "  %s:%d: last error \"%s\" lacks \"%s\"\n", __FILE__,     \
			        __LINE__, td_last_error(), (needle));                              \
			t->failed_checks++;                                                        \
		}                                                                                  \
	} while (0)

static inline void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* A fresh socket URL per test, so a slow close never leaks into the next one,
 * and a fresh spool dir with it, so no test replays another's spool. */
static inline const char *next_url(struct tc *t, char *buf, size_t len)
{
	++t->socket_no;
	snprintf(buf, len, "ipc://%s/s%u.sock", t->dir, t->socket_no);
	snprintf(t->spool, sizeof(t->spool), "%s/spool%u", t->dir, t->socket_no);
	return buf;
}

/* Options for a quiet test run: no footer on stderr, the test's spool dir. */
static inline void opts_for(struct tc *t, td_run_options *o, const char *url)
{
	td_run_options_init(o);
	o->socket_url = url;
	o->project = "client-test";
	o->flush_interval_ms = 5;
	o->print_footer = false;
	o->spool_dir = t->spool;
}

static inline int remove_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path);
}

/* rm -rf dir */
static inline void remove_tree(const char *dir)
{
	nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline const Trackd__V1__Item *find_item(Trackd__V1__Item **items, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(items[i]->key, key) == 0)
			return items[i];
	}
	return NULL;
}

static inline bool item_is_double(Trackd__V1__Item **items, size_t n, const char *key, double want)
{
	const Trackd__V1__Item *it = find_item(items, n, key);
	return it && it->value && it->value->kind_case == TRACKD__V1__VALUE__KIND_DOUBLE_VALUE &&
	       memcmp(&it->value->double_value, &want, sizeof(want)) == 0;
}

static inline bool item_is_int(Trackd__V1__Item **items, size_t n, const char *key, int64_t want)
{
	const Trackd__V1__Item *it = find_item(items, n, key);
	return it && it->value && it->value->kind_case == TRACKD__V1__VALUE__KIND_INT_VALUE &&
	       it->value->int_value == want;
}

static inline bool item_is_bool(Trackd__V1__Item **items, size_t n, const char *key, bool want)
{
	const Trackd__V1__Item *it = find_item(items, n, key);
	return it && it->value && it->value->kind_case == TRACKD__V1__VALUE__KIND_BOOL_VALUE &&
	       (bool)it->value->bool_value == want;
}

static inline bool item_is_string(Trackd__V1__Item **items, size_t n, const char *key,
                                  const char *want)
{
	const Trackd__V1__Item *it = find_item(items, n, key);
	return it && it->value && it->value->kind_case == TRACKD__V1__VALUE__KIND_STRING_VALUE &&
	       strcmp(it->value->string_value, want) == 0;
}

static inline const Trackd__V1__MapValue *item_map(Trackd__V1__Item **items, size_t n,
                                                   const char *key)
{
	const Trackd__V1__Item *it = find_item(items, n, key);
	if (it && it->value && it->value->kind_case == TRACKD__V1__VALUE__KIND_MAP_VALUE)
		return it->value->map_value;
	return NULL;
}

#endif
