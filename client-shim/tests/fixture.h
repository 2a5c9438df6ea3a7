/*
 * fixture.h — what the libtrackd test programs share besides the assertions
 * (common/check.h): CHECK_RC and CHECK_ERR_HAS for td_ calls, a fresh socket
 * URL and spool dir per test, and lookups in decoded records.
 *
 * Every test gets a `struct tc *t`; main() runs the tests in order, reports
 * each as ok or FAIL (a check failed during it), and ends with CHECK_SUMMARY.
 */
#ifndef TRACKD_CLIENT_TEST_FIXTURE_H
#define TRACKD_CLIENT_TEST_FIXTURE_H

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "test_server.h"
#include "trackd/trackd.h"

struct tc {
	const char *dir;
	unsigned socket_no;
	char spool[PATH_MAX]; /* the spool dir of the last next_url() */
	const char *argv0;    /* for tests that run this program as a child */
};

/* expr's td_ return code, with the thread's last error when it is not `want`. */
#define CHECK_RC(expr, want)                                                                       \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		CHECK(rc_ == (want), "%s = %d (%s), want %d; last error: %s", #expr, rc_,          \
		      td_strerror(rc_), (want), td_last_error());                                  \
	} while (0)

#define CHECK_ERR_HAS(needle)                                                                      \
	CHECK(strstr(td_last_error(), (needle)) != NULL, "last error \"%s\" lacks \"%s\"",         \
	      td_last_error(), (needle))

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

/* Options for a quiet test run: no footer on stderr, the test's spool dir, no
 * RunEnvironment record. */
static inline void opts_for(struct tc *t, td_run_options *o, const char *url)
{
	td_run_options_init(o);
	o->socket_url = url;
	o->project = "client-test";
	o->flush_interval_ms = 5;
	o->print_footer = false;
	o->spool_dir = t->spool;
	/* Tests count records exactly; the process facts have a test of their own
	 * (client_features_test: environment_record). */
	o->disable_environment = true;
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
