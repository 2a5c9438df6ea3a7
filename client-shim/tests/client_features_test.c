/*
 * client_features_test.c — libtrackd's run features against the in-process
 * stand-in agent (test_server.c): define_metric and rename records, the
 * client-side step rule, the spool (spilling, delivery by a later run, finish
 * on timeout, td_spool_flush, its bound), resume checks, queries and status,
 * the run directory, the footer, and — in child processes, because they change
 * process-wide state — console capture and signal handling.
 *
 * The children are this program run again (`--child MODE URL SPOOL`), so they
 * start clean (no NNG state inherited through fork).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "environment.h" /* tdi_environment_clean */
#include "run.h"         /* tdi_run_buffered_bytes, and the encoder and limits it includes */
#include "transport.h"   /* TDI_REPLY_TIMEOUT_MS */
#include "test_server.h"
#include "trackd/trackd.h"

/* ---- helpers ------------------------------------------------------------------ */

static size_t count_body(struct test_server *s, Trackd__V1__Record__BodyCase body)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n_records; i++)
		n += s->records[i]->body_case == body;
	return n;
}

static const Trackd__V1__Record *last_of(struct test_server *s, Trackd__V1__Record__BodyCase body)
{
	for (size_t i = s->n_records; i > 0; i--) {
		if (s->records[i - 1]->body_case == body)
			return s->records[i - 1];
	}
	return NULL;
}

/* Number of regular files under dir (recursively). */
static int count_files(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX];
		struct stat st;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			n += count_files(path, suffix);
		} else {
			size_t l = strlen(e->d_name), k = strlen(suffix);
			n += l >= k && strcmp(e->d_name + l - k, suffix) == 0;
		}
	}
	closedir(d);
	return n;
}

/* Runs f with stderr going to a file; returns what was written (static). */
static const char *capture_stderr(void (*f)(void *), void *arg)
{
	static char text[4096];
	char path[] = "/tmp/trackd-stderr-XXXXXX";
	int fd = mkstemp(path);
	int saved = dup(2);

	fflush(stderr);
	dup2(fd, 2);
	f(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return text;
}

/* ---- define_metric, rename, exit reason ---------------------------------------- */

static void test_define_metric_and_rename(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {0};
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	char long_key[TRACKD_DEFAULT_MAX_KEY_BYTES + 2];

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	opts_for(t, &o, url);
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK_RC(td_define_metric(run, "accuracy", TD_SUMMARY_MAX), TD_OK);
	CHECK_RC(td_define_metric(run, "loss", TD_SUMMARY_MIN), TD_OK);
	CHECK_RC(td_define_metric(run, "lr", TD_SUMMARY_NONE), TD_OK);
	CHECK_RC(td_set_name(run, "bright-sky-7"), TD_OK);

	CHECK_RC(td_define_metric(run, NULL, TD_SUMMARY_MAX), TD_ERR_INVALID);
	CHECK_RC(td_define_metric(run, "", TD_SUMMARY_MAX), TD_ERR_INVALID);
	CHECK_RC(td_define_metric(run, "x", (td_metric_summary)9), TD_ERR_INVALID);
	CHECK_ERR_HAS("unknown summary 9");
	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	CHECK_RC(td_define_metric(run, long_key, TD_SUMMARY_MAX), TD_ERR_INVALID);
	CHECK_RC(td_define_metric(run, "bad\xff", TD_SUMMARY_MAX), TD_ERR_INVALID);
	CHECK_RC(td_set_name(run, ""), TD_ERR_INVALID);
	CHECK_RC(td_set_name(run, NULL), TD_ERR_INVALID);
	CHECK_RC(td_set_name(NULL, "x"), TD_ERR_INVALID);

	CHECK_RC(td_finish_reason(run, 137, TD_EXIT_KILLED, 20000, &rep), TD_OK);
	ts_stop(&s);
	CHECK(rep.records_acked == 6 && rep.records_logged == 6);
	CHECK(s.violations == 0);
	CHECK(count_body(&s, TRACKD__V1__RECORD__BODY_DEFINE_METRIC) == 3);
	if (s.n_records == 6) {
		const Trackd__V1__DefineMetric *dm = s.records[1]->define_metric;
		CHECK(s.records[1]->body_case == TRACKD__V1__RECORD__BODY_DEFINE_METRIC &&
		      strcmp(dm->name, "accuracy") == 0 && dm->has_summary &&
		      dm->summary == TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MAX);
		dm = s.records[2]->define_metric;
		CHECK(strcmp(dm->name, "loss") == 0 &&
		      dm->summary == TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MIN);
		dm = s.records[3]->define_metric;
		CHECK(strcmp(dm->name, "lr") == 0 &&
		      dm->summary == TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_NONE);
		CHECK(s.records[4]->body_case == TRACKD__V1__RECORD__BODY_RENAME &&
		      strcmp(s.records[4]->rename->display_name, "bright-sky-7") == 0);
		const Trackd__V1__RunExit *ex = s.records[5]->exit;
		CHECK(s.records[5]->body_case == TRACKD__V1__RECORD__BODY_EXIT &&
		      ex->exit_code == 137 && ex->reason == TRACKD__V1__EXIT_REASON__EXIT_KILLED);
	}
	ts_free(&s);
}

/* ---- the process's own facts ------------------------------------------------------ */

/* What the agent would refuse is mended, not sent. */
static void test_environment_clean(struct tc *t)
{
	(void)t;
	static const struct {
		const char *in;
		size_t max;
		bool controls;
		const char *want;
	} cases[] = {
	    {"plain", 100, false, "plain"},
	    {"caf\xc3\xa9", 100, false, "caf\xc3\xa9"},
	    {"caf\xc3\xa9", 4, false, "caf"}, /* never cut inside a character */
	    {"a\xff"
	     "b",
	     100, false, "a?b"},
	    {"\xc0\xaf", 100, false, "??"},        /* overlong */
	    {"\xed\xa0\x80x", 100, false, "???x"}, /* surrogate */
	    {"br\x1b[2Janch", 100, false, "br?[2Janch"},
	    {"line\nnext", 100, true, "line\nnext"}, /* arguments keep newlines */
	    {"line\nnext", 100, false, "line?next"},
	    {"abcdef", 3, false, "abc"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = tdi_environment_clean(cases[i].in, cases[i].max, cases[i].controls);
		CHECK(got && strcmp(got, cases[i].want) == 0, "case %zu: '%s'", i, got ? got : "");
		free(got);
	}
}

/* One RunEnvironment after RunStart and before RunExit, with this process's
 * facts; the Python version only when given. */
static void test_environment_record(struct tc *t)
{
	char url[PATH_MAX], cwd[PATH_MAX], exe[PATH_MAX];
	struct test_server s = {0};
	td_run_options o;
	td_run *run;
	td_finish_report rep;

	CHECK(getcwd(cwd, sizeof cwd) != NULL);
	ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[k > 0 ? k : 0] = '\0';
	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	opts_for(t, &o, url);
	o.disable_environment = false;
	o.python_version = "3.99.1";
	CHECK_RC(td_init(&o, &run), TD_OK);
	td_item row = {.key = "x", .type = TD_DOUBLE, .v.d = 1};
	CHECK_RC(td_log(run, &row, 1, TD_STEP_AUTO, true), TD_OK);
	/* The facts come off this thread (a git status, if the build dir is in a
	 * repository, takes up to its bound): wait for them to arrive. */
	for (int i = 0; i < 400; i++) {
		pthread_mutex_lock(&s.mu);
		size_t n = count_body(&s, TRACKD__V1__RECORD__BODY_ENVIRONMENT);
		pthread_mutex_unlock(&s.mu);
		if (n)
			break;
		usleep(10000);
	}
	CHECK_RC(td_finish(run, 0, 20000, &rep), TD_OK);
	ts_stop(&s);
	CHECK(s.violations == 0);
	CHECK(count_body(&s, TRACKD__V1__RECORD__BODY_ENVIRONMENT) == 1);
	CHECK(rep.records_logged == 4 && rep.records_acked == 4, "start, row, environment, exit");
	CHECK(s.n_records >= 1 && s.records[0]->body_case == TRACKD__V1__RECORD__BODY_START);
	CHECK(s.n_records >= 1 &&
	      s.records[s.n_records - 1]->body_case == TRACKD__V1__RECORD__BODY_EXIT);
	for (size_t i = 0; i < s.n_records; i++) {
		if (s.records[i]->body_case != TRACKD__V1__RECORD__BODY_ENVIRONMENT)
			continue;
		const Trackd__V1__RunEnvironment *e = s.records[i]->environment;
		CHECK(e->root && strcmp(e->root, cwd) == 0, "root %s", e->root);
		CHECK(e->executable && strcmp(e->executable, exe) == 0, "exe %s", e->executable);
		CHECK(e->program && strstr(e->program, "client_features_test"), "program %s",
		      e->program);
		CHECK(e->python && strcmp(e->python, "3.99.1") == 0);
	}
	ts_free(&s);

	/* Finishing at once does not wait for the facts, and still sends them
	 * (a fresh server: ts_free leaves one unusable). */
	struct test_server s2 = {0};
	CHECK(ts_start(&s2, next_url(t, url, sizeof(url))) == 0);
	opts_for(t, &o, url);
	o.disable_environment = false;
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK_RC(td_finish(run, 0, 20000, &rep), TD_OK);
	ts_stop(&s2);
	CHECK(count_body(&s2, TRACKD__V1__RECORD__BODY_ENVIRONMENT) == 1);
	for (size_t i = 0; i < s2.n_records; i++)
		if (s2.records[i]->body_case == TRACKD__V1__RECORD__BODY_ENVIRONMENT)
			CHECK(s2.records[i]->environment->python == NULL, "no Python: none sent");
	ts_free(&s2);
}

/* ---- steps ---------------------------------------------------------------------- */

struct step_args {
	td_run *run;
	int64_t step;
	int rc;
};

static void log_at_step(void *arg)
{
	struct step_args *a = arg;
	td_item row[] = {TD_F("x", 1.0)};

	a->rc = td_log(a->run, row, 1, a->step, true);
}

static void test_step_regression_refused(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {0};
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	td_item row[] = {TD_F("x", 1.0)};

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	opts_for(t, &o, url);
	CHECK_RC(td_init(&o, &run), TD_OK);
	for (int i = 0; i < 3; i++) /* steps 0, 1, 2; the current step is 3 */
		CHECK_RC(td_log(run, row, 1, TD_STEP_AUTO, true), TD_OK);
	CHECK_RC(td_log(run, row, 1, 3, false), TD_OK); /* pending at 3 */
	CHECK_RC(td_log(run, row, 1, 3, false), TD_OK); /* merges into 3 */
	CHECK_RC(td_log(run, row, 1, 5, false), TD_OK); /* commits 3, pending at 5 */

	struct step_args a = {.run = run, .step = 4};
	const char *err = capture_stderr(log_at_step, &a);
	CHECK_RC(a.rc, TD_ERR_INVALID);
	CHECK(strcmp(err, "trackd: step 4 < current step 5; row dropped\n") == 0);

	CHECK_RC(td_log(run, row, 1, TD_STEP_AUTO, true), TD_OK); /* commits 5 */
	a.step = 5;
	err = capture_stderr(log_at_step, &a);
	CHECK_RC(a.rc, TD_ERR_INVALID);
	CHECK(strcmp(err, "trackd: step 5 < current step 6; row dropped\n") == 0);
	CHECK_RC(td_log(run, row, 1, 6, true), TD_OK);
	CHECK_RC(td_log(run, row, 1, 100, true), TD_OK);

	CHECK_RC(td_finish(run, 0, 20000, &rep), TD_OK);
	ts_stop(&s);
	/* Accepted rows only: 3 + 3 + 1 + 2. */
	CHECK(count_body(&s, TRACKD__V1__RECORD__BODY_HISTORY) == 9);
	CHECK(rep.records_logged == 11 && rep.records_acked == 11);
	ts_free(&s);
}

/* ---- spool ---------------------------------------------------------------------- */

/* Rows {"i": k, "pad": 200 bytes} for k in [base, base + n). */
static int log_padded(td_run *run, int base, int n)
{
	char pad[201];

	memset(pad, 'p', 200);
	pad[200] = '\0';
	for (int k = base; k < base + n; k++) {
		td_item row[] = {TD_I("i", k), TD_S("pad", pad)};
		int rc = td_log(run, row, 2, TD_STEP_AUTO, true);
		if (rc != TD_OK)
			return rc;
	}
	return TD_OK;
}

/* As log_padded, but a row refused at the memory bound (TD_ERR_FULL: the agent
 * is there, and slower than this loop: a sanitizer build on a loaded machine)
 * is logged again once the sender has made room, for up to 60 s. For tests
 * whose subject is what is delivered and in which order, not throughput. */
static int log_padded_patiently(td_run *run, int base, int n)
{
	for (int k = base; k < base + n; k++) {
		int rc;
		for (int waited_ms = 0; (rc = log_padded(run, k, 1)) == TD_ERR_FULL; waited_ms++) {
			if (waited_ms >= 60000)
				return rc;
			struct timespec ms = {0, 1000000};
			nanosleep(&ms, NULL);
		}
		if (rc != TD_OK)
			return rc;
	}
	return TD_OK;
}

/* The history rows of one session, in arrival order, must be i = 0 … n-1
 * exactly once. */
static void check_session_rows(struct tc *t, struct test_server *s, unsigned session, int n)
{
	int next = 0;

	for (size_t k = 0; k < s->n_kept; k++) {
		const Trackd__V1__Batch *b = s->kept[k]->batch;
		if (memcmp(b->session_id.data, s->sessions[session].id, TRACKD_SESSION_ID_BYTES) !=
		    0)
			continue;
		for (size_t r = 0; r < b->n_records; r++) {
			const Trackd__V1__Record *rec = b->records[r];
			if (rec->body_case != TRACKD__V1__RECORD__BODY_HISTORY)
				continue;
			if (!item_is_int(rec->history->items, rec->history->n_items, "i", next)) {
				fprintf(stderr, "  session %u: row %d missing or out of order\n",
				        session, next);
				check_failed++;
				return;
			}
			next++;
		}
	}
	if (next != n)
		fprintf(stderr, "  session %u: %d rows, want %d\n", session, next, n);
	CHECK(next == n);
}

/* Appended seqs of one session are 1, 2, …, n, each once. */
static void check_session_seqs(struct tc *t, struct test_server *s, unsigned session)
{
	uint64_t next = 1;

	for (size_t k = 0; k < s->n_kept; k++) {
		const Trackd__V1__Batch *b = s->kept[k]->batch;
		if (memcmp(b->session_id.data, s->sessions[session].id, TRACKD_SESSION_ID_BYTES) !=
		    0)
			continue;
		if (b->seq != next) {
			fprintf(stderr, "  session %u: appended seq %llu, want %llu\n", session,
			        (unsigned long long)b->seq, (unsigned long long)next);
			check_failed++;
			return;
		}
		next++;
	}
	CHECK(next == s->sessions[session].highest_appended + 1);
}

static unsigned session_of(struct test_server *s, const char *run_id)
{
	for (size_t k = 0; k < s->n_kept; k++) {
		const Trackd__V1__Batch *b = s->kept[k]->batch;
		if (b->n_records > 0 && strcmp(b->records[0]->run_id, run_id) == 0) {
			for (unsigned i = 0; i < s->n_sessions; i++) {
				if (memcmp(s->sessions[i].id, b->session_id.data,
				           TRACKD_SESSION_ID_BYTES) == 0)
					return i;
			}
		}
	}
	return UINT32_MAX;
}

static void test_spool_no_agent_then_later_run_delivers(struct tc *t)
{
	char url[PATH_MAX], id_a[80];
	struct test_server s = {.multi_session = true};
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	const int rows = 2000; /* ~440 KB of rows through a 64 KiB buffer */

	opts_for(t, &o, next_url(t, url, sizeof(url))); /* no agent yet */
	o.max_buffer_bytes = 64 << 10;
	CHECK_RC(td_init(&o, &run), TD_OK);
	snprintf(id_a, sizeof(id_a), "%s", td_run_id(run));
	CHECK_RC(log_padded(run, 0, rows), TD_OK); /* never refused: spilled */
	CHECK(tdi_run_buffered_bytes(run) <= 64u << 10);
	CHECK(count_files(t->spool, ".spool") == 1);
	CHECK_RC(td_finish(run, 0, 300, &rep), TD_ERR_TIMEOUT);
	CHECK_ERR_HAS("spooled for later delivery");
	CHECK(rep.records_logged == (uint64_t)rows + 2);
	CHECK(rep.records_refused_full == 0 && rep.records_acked == 0);
	CHECK(rep.records_unacked == rep.records_logged);
	CHECK(rep.records_spooled == rep.records_logged);
	CHECK(count_files(t->spool, ".spool") == 1);

	/* The agent is up now; a new run (same agent, same spool dir) delivers
	 * the dead run's spool before td_finish returns. */
	CHECK(ts_start(&s, url) == 0);
	CHECK_RC(td_init(&o, &run), TD_OK);
	char id_b[80];
	snprintf(id_b, sizeof(id_b), "%s", td_run_id(run));
	CHECK_RC(log_padded(run, 0, 10), TD_OK);
	CHECK_RC(td_finish(run, 0, 30000, &rep), TD_OK);
	ts_stop(&s);
	CHECK(s.violations == 0);
	if (s.violations)
		fprintf(stderr, "  server: %s\n", s.violation);
	CHECK(s.n_sessions == 2);
	unsigned a = session_of(&s, id_a), b = session_of(&s, id_b);
	CHECK(a < s.n_sessions && b < s.n_sessions && a != b);
	if (a < s.n_sessions && b < s.n_sessions) {
		check_session_rows(t, &s, a, rows);
		check_session_rows(t, &s, b, 10);
		check_session_seqs(t, &s, a);
		check_session_seqs(t, &s, b);
	}
	CHECK(s.n_records == (size_t)rows + 2 + 12);
	CHECK(count_files(t->spool, ".spool") == 0); /* delivered: deleted */
	ts_free(&s);
}

static void test_spool_own_replay_when_agent_arrives(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {0};
	td_run_options o;
	td_run *run;
	td_finish_report rep;

	opts_for(t, &o, next_url(t, url, sizeof(url)));
	o.max_buffer_bytes = 64 << 10;
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK_RC(log_padded(run, 0, 1000), TD_OK);
	CHECK(count_files(t->spool, ".spool") == 1);
	/* The agent arrives while the run goes on: spooled batches first, then
	 * the ones in memory, in seq order. */
	CHECK(ts_start(&s, url) == 0);
	CHECK_RC(log_padded_patiently(run, 1000, 1000), TD_OK);
	CHECK_RC(td_finish(run, 0, 30000, &rep), TD_OK);
	ts_stop(&s);
	CHECK(rep.records_acked == 2002 && rep.records_spooled == 0 && rep.records_unacked == 0);
	CHECK(s.violations == 0);
	if (s.violations)
		fprintf(stderr, "  server: %s\n", s.violation);
	check_session_rows(t, &s, 0, 2000);
	check_session_seqs(t, &s, 0);
	CHECK(count_files(t->spool, ".spool") == 0);
	ts_free(&s);
}

static void test_spool_flush(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {.multi_session = true};
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	uint64_t delivered = 99;

	opts_for(t, &o, next_url(t, url, sizeof(url)));
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK_RC(log_padded(run, 0, 10), TD_OK);
	CHECK_RC(td_finish(run, 0, 200, &rep), TD_ERR_TIMEOUT);
	CHECK(rep.records_spooled == 12 && rep.records_unacked == 12);
	CHECK(count_files(t->spool, ".spool") == 1);

	CHECK_RC(td_spool_flush(url, t->spool, 300, &delivered), TD_ERR_TRANSPORT);
	CHECK(delivered == 0);
	CHECK(count_files(t->spool, ".spool") == 1);

	CHECK(ts_start(&s, url) == 0);
	CHECK(ts_wait_listening(&s, 10000));
	CHECK_RC(td_spool_flush(url, t->spool, 20000, &delivered), TD_OK);
	CHECK(delivered == 12);
	CHECK(count_files(t->spool, ".spool") == 0);
	CHECK_RC(td_spool_flush(url, t->spool, 20000, &delivered), TD_OK);
	CHECK(delivered == 0);
	/* A spool for another agent is not this agent's to deliver. */
	CHECK_RC(td_spool_flush("ipc:///nonexistent/other.sock", t->spool, 100, NULL), TD_OK);
	ts_stop(&s);
	CHECK(s.n_records == 12 && s.violations == 0);
	check_session_rows(t, &s, 0, 10);
	ts_free(&s);
}

/* No agent listens at the (explicit) address and none can be started there:
 * td_finish spools at once instead of waiting out its 30 s, and nothing is
 * lost — td_spool_pending counts what waits, a flush delivers all of it. */
static void test_finish_without_agent_spools_promptly(struct tc *t)
{
	char url[PATH_MAX], dir[PATH_MAX];
	struct test_server s = {.multi_session = true};
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	uint64_t records = 0, bytes = 0, delivered = 0;

	opts_for(t, &o, next_url(t, url, sizeof(url)));
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK_RC(log_padded(run, 0, 10), TD_OK);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	CHECK_RC(td_finish(run, 0, 30000, &rep), TD_ERR_TIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &b);
	long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	fprintf(stderr, "  td_finish with no agent returned after %ld ms\n", ms);
	/* One send attempt's wait for a connection (TDI_REPLY_TIMEOUT_MS), the
	 * checks, the close: far below the 30 s it was given. */
	CHECK(ms < 10000);
	CHECK(strstr(td_last_error(), "no agent at") != NULL);
	CHECK(rep.records_spooled == 12 && rep.records_unacked == 12);
	CHECK_RC(td_spool_pending(url, t->spool, &records, &bytes, dir, sizeof(dir)), TD_OK);
	CHECK(records == 12 && bytes > 0 && strncmp(dir, t->spool, strlen(t->spool)) == 0);

	CHECK(ts_start(&s, url) == 0);
	CHECK(ts_wait_listening(&s, 10000));
	CHECK_RC(td_spool_flush(url, t->spool, 20000, &delivered), TD_OK);
	CHECK(delivered == 12);
	CHECK_RC(td_spool_pending(url, t->spool, &records, &bytes, NULL, 0), TD_OK);
	CHECK(records == 0 && bytes == 0);
	ts_stop(&s);
	CHECK(s.n_records == 12 && s.violations == 0);
	check_session_rows(t, &s, 0, 10);
	ts_free(&s);
}

static void test_spool_bound_refuses_and_counts(struct tc *t)
{
	char url[PATH_MAX];
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	int accepted = 0, refused = 0, rc = TD_OK;

	opts_for(t, &o, next_url(t, url, sizeof(url)));
	o.max_buffer_bytes = 64 << 10;
	o.max_spool_bytes = 256 << 10;
	CHECK_RC(td_init(&o, &run), TD_OK);
	for (int i = 0; i < 5000; i++) {
		if ((rc = log_padded(run, i, 1)) == TD_OK) {
			accepted++;
		} else {
			CHECK_RC(rc, TD_ERR_FULL);
			refused++;
		}
	}
	CHECK(refused > 0 && accepted > 1000);
	CHECK_RC(log_padded(run, 0, 1000), TD_ERR_FULL);
	CHECK_ERR_HAS("reached its bound");
	CHECK_RC(td_finish(run, 0, 100, &rep), TD_ERR_TIMEOUT);
	CHECK(rep.records_refused_full >= (uint64_t)refused + 1);
	CHECK(rep.records_logged + rep.records_refused_full >= 5000);
	/* What was accepted is either spooled or still unacknowledged (lost,
	 * and reported as such). */
	CHECK(rep.records_spooled > 0 && rep.records_spooled <= rep.records_unacked);
	CHECK(rep.records_unacked == rep.records_logged);
	struct stat st;
	char path[PATH_MAX + 256];
	DIR *d = opendir(t->spool);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", t->spool, e->d_name);
		DIR *d2 = opendir(path);
		struct dirent *e2;
		while (d2 && (e2 = readdir(d2)) != NULL) {
			char f[PATH_MAX + 512];
			snprintf(f, sizeof(f), "%s/%s", path, e2->d_name);
			if (e2->d_name[0] != '.' && stat(f, &st) == 0)
				CHECK(st.st_size <= 256 << 10);
		}
		if (d2)
			closedir(d2);
	}
	if (d)
		closedir(d);
}

/* ---- resume, queries, status, run dir --------------------------------------------- */

static bool store_query(void *arg, const Trackd__V1__Query *q, Trackd__V1__QueryReply *reply,
                        int *code, const char **message)
{
	static Trackd__V1__RunInfo info = {
	    .base = PROTOBUF_C_MESSAGE_INIT(&trackd__v1__run_info__descriptor),
	    .id = "exists",
	    .entity = "alice",
	    .project = "proj",
	    .path = "alice/proj/exists",
	    .state = "finished",
	    .dir = "/srv/state/runs/alice/proj/run-20240101_000000-exists"};
	static Trackd__V1__RunReply run_reply = {
	    .base = PROTOBUF_C_MESSAGE_INIT(&trackd__v1__run_reply__descriptor), .run = &info};
	static Trackd__V1__RunsReply no_runs = {
	    .base = PROTOBUF_C_MESSAGE_INIT(&trackd__v1__runs_reply__descriptor)};
	/* The history page echoes what was asked, so the test sees the request. */
	static char echo[256];
	static ProtobufCBinaryData line;
	static Trackd__V1__HistoryPage page = {
	    .base = PROTOBUF_C_MESSAGE_INIT(&trackd__v1__history_page__descriptor)};
	(void)arg;
	const char *run = ts_query_run(q);
	if (q->request_case == TRACKD__V1__QUERY__REQUEST_RUN && run &&
	    strcmp(run, "alice/proj/exists") == 0) {
		reply->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_RUN;
		reply->run = &run_reply;
		return true;
	}
	if (q->request_case == TRACKD__V1__QUERY__REQUEST_RUNS) {
		reply->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_RUNS;
		reply->runs = &no_runs;
		return true;
	}
	if (q->request_case == TRACKD__V1__QUERY__REQUEST_HISTORY) {
		const Trackd__V1__HistoryRequest *h = q->history;
		snprintf(echo, sizeof(echo), "{\"keys\":%zu,\"key0\":\"%s\"}", h->n_keys,
		         h->n_keys ? h->keys[0] : "");
		line.data = (uint8_t *)echo;
		line.len = strlen(echo);
		page.run = (char *)(run ? run : "");
		page.has_from_line = page.has_next_line = true;
		page.from_line = h->from_line;
		page.next_line = h->from_line + h->max_lines;
		page.lines = &line;
		page.n_lines = 1;
		reply->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_HISTORY;
		reply->history = &page;
		return true;
	}
	if (q->request_case == TRACKD__V1__QUERY__REQUEST_RENAME) {
		*code = TRACKD__V1__ERROR_CODE__ERROR_INVALID;
		*message = "rename needs a non-empty name";
		return false;
	}
	*code = TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND;
	*message = "no such run";
	return false;
}

static int init_with(struct tc *t, const char *url, const char *id, td_resume resume, td_run **run)
{
	td_run_options o;

	opts_for(t, &o, url);
	o.entity = "alice";
	o.project = "proj";
	o.run_id = id;
	o.resume = resume;
	return td_init(&o, run);
}

static void test_resume_checks(struct tc *t)
{
	char url[PATH_MAX], nobody[PATH_MAX], buf[512];
	struct test_server s = {
	    .query = store_query, .state_dir = "/srv/state", .multi_session = true};
	td_run *run = NULL;

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	CHECK(ts_wait_listening(&s, 10000));
	next_url(t, nobody, sizeof(nobody));

	CHECK_RC(init_with(t, url, "exists", TD_RESUME_MUST, &run), TD_OK);
	ts_lock(&s);
	CHECK(s.queries == 1 && strcmp(s.last_query_kind, "run") == 0 &&
	      strcmp(s.last_query_run, "alice/proj/exists") == 0);
	ts_unlock(&s);
	/* A resumed run lives in the directory of its first start. */
	CHECK_RC(td_run_dir(run, buf, sizeof(buf)),
	         (int)strlen("/srv/state/runs/alice/proj/run-20240101_000000-exists"));
	CHECK(strcmp(buf, "/srv/state/runs/alice/proj/run-20240101_000000-exists") == 0);
	td_finish(run, 0, 20000, NULL);

	CHECK_RC(init_with(t, url, "missing", TD_RESUME_MUST, &run), TD_ERR_INVALID);
	CHECK_ERR_HAS("resume must: run alice/proj/missing does not exist");
	CHECK(run == NULL);
	CHECK_RC(init_with(t, nobody, "exists", TD_RESUME_MUST, &run), TD_ERR_INVALID);
	CHECK_ERR_HAS("no agent answered");

	CHECK_RC(init_with(t, url, "exists", TD_RESUME_NEVER, &run), TD_ERR_INVALID);
	CHECK_ERR_HAS("run alice/proj/exists already exists");
	CHECK_RC(init_with(t, url, "missing", TD_RESUME_NEVER, &run), TD_OK);
	td_finish(run, 0, 20000, NULL);
	CHECK_RC(init_with(t, nobody, "exists", TD_RESUME_NEVER, &run), TD_OK);
	td_finish(run, 0, 0, NULL);

	ts_lock(&s);
	unsigned before = s.queries;
	ts_unlock(&s);
	CHECK_RC(init_with(t, url, "exists", TD_RESUME_ALLOW, &run), TD_OK);
	ts_lock(&s);
	CHECK(s.queries == before); /* allow: no question asked */
	ts_unlock(&s);
	td_finish(run, 0, 20000, NULL);
	/* Without an id (and never), nothing to ask either. */
	CHECK_RC(init_with(t, url, NULL, TD_RESUME_NEVER, &run), TD_OK);
	ts_lock(&s);
	CHECK(s.queries == before);
	ts_unlock(&s);
	td_finish(run, 0, 20000, NULL);
	ts_stop(&s);
	CHECK(s.violations == 0);
	ts_free(&s);
}

static void test_query_and_status(struct tc *t)
{
	char url[PATH_MAX], nobody[PATH_MAX];
	struct test_server s = {.query = store_query, .state_dir = "/srv/state"};
	char *json = (char *)"untouched";
	const char *keys[] = {"loss", "acc"};

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	CHECK(ts_wait_listening(&s, 10000));
	next_url(t, nobody, sizeof(nobody));
	td_query q = {.kind = TD_QUERY_RUNS, .project = "alice/proj"};
	CHECK_RC(td_query_agent(url, &q, 10000, &json), TD_OK);
	CHECK(json && strcmp(json, "{\"runs\":[]}") == 0);
	td_free(json);

	td_query h = {.kind = TD_QUERY_HISTORY,
	              .run = "alice/proj/exists",
	              .keys = keys,
	              .n_keys = 2,
	              .from_line = 500,
	              .max_lines = 250};
	CHECK_RC(td_query_agent(url, &h, 10000, &json), TD_OK);
	CHECK(json && strcmp(json, "{\"run\":\"alice/proj/exists\",\"from_line\":500,"
	                           "\"lines\":[{\"keys\":2,\"key0\":\"loss\"}],"
	                           "\"next_line\":750,\"total_lines\":null}") == 0,
	      "got %s", json);
	td_free(json);

	td_query r = {.kind = TD_QUERY_RUN, .run = "nope"};
	CHECK_RC(td_query_agent(url, &r, 10000, &json), TD_ERR_NOT_FOUND);
	CHECK(json == NULL);
	CHECK(strcmp(td_last_error(), "no such run") == 0);
	/* The agent's refusal comes back as TD_ERR_REJECTED with its message. */
	td_query refused = {.kind = TD_QUERY_RENAME, .run = "exists"};
	CHECK_RC(td_query_agent(url, &refused, 10000, &json), TD_ERR_REJECTED);
	CHECK(strcmp(td_last_error(), "rename needs a non-empty name") == 0);
	/* A kind the library does not know is refused before anything is sent. */
	td_query bogus = {.kind = (td_query_kind)99};
	CHECK_RC(td_query_agent(url, &bogus, 10000, &json), TD_ERR_INVALID);
	CHECK(strcmp(td_last_error(), "td_query_agent: unknown query kind 99") == 0);
	CHECK_RC(td_query_agent(nobody, &q, 1000, &json), TD_ERR_TRANSPORT);
	CHECK_ERR_HAS("no agent answers at");
	CHECK_RC(td_query_agent(url, NULL, 1000, &json), TD_ERR_INVALID);
	CHECK_RC(td_query_agent(url, &q, 1000, NULL), TD_ERR_INVALID);

	setenv("TRACKD_SOCKET", url, 1);
	CHECK_RC(td_status_agent(NULL, 10000, &json), TD_OK);
	unsetenv("TRACKD_SOCKET");
	CHECK(json && strstr(json, "\"version\":\"test-server\"") &&
	      strstr(json, "\"state_dir\":\"/srv/state\"") && json[0] == '{');
	td_free(json);
	CHECK_RC(td_status_agent(nobody, 1000, &json), TD_ERR_TRANSPORT);
	td_free(NULL);
	ts_stop(&s);
	CHECK(s.violations == 0);
	ts_free(&s);
}

static void test_run_dir_and_default_entity(struct tc *t)
{
	char url[PATH_MAX], nobody[PATH_MAX], buf[512], want[512];
	struct test_server s = {.state_dir = "/srv/state"};
	td_run_options o;
	td_run *run;

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	CHECK(ts_wait_listening(&s, 10000));
	opts_for(t, &o, url);
	o.project = "a_b"; /* "a/b" is refused (client_test) */
	o.run_id = "dirrun";
	time_t before = time(NULL);
	CHECK_RC(td_init(&o, &run), TD_OK);
	time_t after = time(NULL);
	int n = td_run_dir(run, buf, sizeof(buf));
	CHECK(n > 0 && (size_t)n == strlen(buf));
	CHECK_RC(td_run_dir(run, NULL, 0), n); /* snprintf-like, and cached */
	char small[8];
	CHECK_RC(td_run_dir(run, small, sizeof(small)), n);
	CHECK(strlen(small) == 7 && strncmp(small, buf, 7) == 0);
	ts_lock(&s);
	CHECK(s.statuses == 1);
	ts_unlock(&s);
	/* Default entity: the login name. */
	char login[256] = "";
	struct passwd *pw = getpwuid(geteuid());
	snprintf(login, sizeof(login), "%s", pw ? pw->pw_name : "");
	bool matched = false;
	for (time_t when = before; when <= after; when++) {
		struct tm tm;
		gmtime_r(&when, &tm);
		snprintf(want, sizeof(want),
		         "/srv/state/runs/%s/a_b/run-%04d%02d%02d_%02d%02d%02d-dirrun", login,
		         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		         tm.tm_sec);
		matched |= strcmp(buf, want) == 0;
	}
	CHECK(matched);
	if (!matched)
		fprintf(stderr, "  run dir %s\n", buf);
	CHECK_RC(td_finish(run, 0, 20000, NULL), TD_OK);
	ts_stop(&s);
	if (s.n_records > 0 && s.records[0]->body_case == TRACKD__V1__RECORD__BODY_START)
		CHECK(strcmp(s.records[0]->start->entity, login) == 0);
	ts_free(&s);

	opts_for(t, &o, next_url(t, nobody, sizeof(nobody)));
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK_RC(td_run_dir(run, buf, sizeof(buf)), TD_ERR_TRANSPORT);
	td_finish(run, 0, 0, NULL);
}

/* ---- footer --------------------------------------------------------------------- */

static const char golden_footer[] = "Run history:\n"
                                    "accuracy ▁▃▅▇█\n"
                                    "   epoch ▁▃▅▆█\n"
                                    "  hidden ▁▁▁▁▁\n"
                                    "    loss █▆▄▂▁\n"
                                    "\n"
                                    "Run summary:\n"
                                    "accuracy 0.9\n"
                                    "    best 0.5\n"
                                    "   epoch 9\n"
                                    "    loss 0.1\n"
                                    "    note a-very-long-string-v...\n"
                                    "      ok True\n"
                                    "\n"
                                    "Run data: /srv/state/runs/alice/proj/run-DATE-golden\n"
                                    "View it: trackctl show alice/proj/golden\n";

/* Replaces the run dir's date (run-YYYYMMDD_HHMMSS-) with DATE. */
static void mask_date(char *text)
{
	char *p = strstr(text, "/run-");
	if (p == NULL || strlen(p) < 21)
		return;
	memmove(p + 5 + 4, p + 5 + 15, strlen(p + 5 + 15) + 1);
	memcpy(p + 5, "DATE", 4);
}

static void test_footer_golden(struct tc *t)
{
	char url[PATH_MAX], buf[4096];
	struct test_server s = {.state_dir = "/srv/state"};
	td_run_options o;
	td_run *run;

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	CHECK(ts_wait_listening(&s, 10000));
	opts_for(t, &o, url);
	o.entity = "alice";
	o.project = "proj";
	o.run_id = "golden";
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK_RC(td_define_metric(run, "loss", TD_SUMMARY_MIN), TD_OK);
	CHECK_RC(td_define_metric(run, "hidden", TD_SUMMARY_NONE), TD_OK);
	/* Even rows stay pending and the odd ones merge into their step and
	 * commit it, so five steps carry the odd rows' values. */
	static const double acc[10] = {0, 0.1, 0, 0.3, 0, 0.6, 0, 0.8, 0, 0.9};
	/* Lists and null are neither drawn nor shown in the summary. */
	td_item vec[] = {TD_F(NULL, 1), TD_N(NULL)};
	for (int i = 0; i < 10; i++) {
		td_item row[] = {TD_F("accuracy", acc[i]), TD_F("loss", 1 - acc[i]),
		                 TD_I("epoch", i),         TD_S("note", "a-very-long-string-value"),
		                 TD_F("_private", 1),      TD_F("hidden", 3),
		                 TD_L("vec", vec, 2),      TD_N("none")};
		CHECK_RC(td_log(run, row, 8, TD_STEP_AUTO, i % 2 == 1), TD_OK);
	}
	/* loss keeps its min: a list (or null) later means nothing to it. */
	td_item not_a_loss[] = {TD_L("loss", vec, 2)};
	CHECK_RC(td_log(run, not_a_loss, 1, TD_STEP_AUTO, true), TD_OK);
	not_a_loss[0] = (td_item)TD_N("loss");
	CHECK_RC(td_log(run, not_a_loss, 1, TD_STEP_AUTO, true), TD_OK);
	/* Explicit summary values win over what rows gave; a map is not shown. */
	td_item inner[] = {TD_F("x", 1)};
	td_item sum[] = {TD_F("best", 0.5), TD_B("ok", true), TD_M("nested", inner, 1)};
	CHECK_RC(td_summary_update(run, sum, 3), TD_OK);
	int n = td_footer(run, buf, sizeof(buf));
	CHECK(n > 0 && (size_t)n == strlen(buf));
	mask_date(buf);
	if (strcmp(buf, golden_footer) != 0) {
		fprintf(stderr, "  footer differs; got:\n%s\n  want:\n%s\n", buf, golden_footer);
		check_failed++;
	}
	CHECK_RC(td_footer(run, NULL, 0), n);
	char small[16];
	CHECK_RC(td_footer(run, small, sizeof(small)), n);
	CHECK(strcmp(small, "Run history:\nac") == 0);
	CHECK_RC(td_finish(run, 0, 20000, NULL), TD_OK);
	ts_stop(&s);
	ts_free(&s);

	/* Offline: the sync hint instead of the viewer; no agent: no data line. */
	opts_for(t, &o, next_url(t, url, sizeof(url)));
	o.mode = TD_MODE_OFFLINE;
	o.run_id = "offline1";
	CHECK_RC(td_init(&o, &run), TD_OK);
	td_item row[] = {TD_F("loss", 0.25)};
	CHECK_RC(td_log(run, row, 1, TD_STEP_AUTO, true), TD_OK);
	CHECK_RC(td_footer(run, buf, sizeof(buf)), (int)strlen(buf));
	CHECK(strcmp(buf, "Run history:\n"
	                  "loss ▁\n"
	                  "\n"
	                  "Run summary:\n"
	                  "loss 0.25\n"
	                  "\n"
	                  "Offline run; upload it later with: trackctl sync offline1\n") == 0);
	td_finish(run, 0, 0, NULL);

	o.mode = TD_MODE_DISABLED;
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK_RC(td_footer(run, buf, sizeof(buf)), 0);
	CHECK(buf[0] == '\0');
	CHECK_RC(td_run_dir(run, buf, sizeof(buf)), TD_ERR_INVALID);
	td_finish(run, 0, 0, NULL);
}

/* Counts UTF-8 sequences equal to glyph in s. */
static int count_glyph(const char *s, const char *glyph)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, glyph)) != NULL; p += strlen(glyph))
		n++;
	return n;
}

static void test_footer_samples_the_whole_run(struct tc *t)
{
	char url[PATH_MAX], buf[4096];
	td_run_options o;
	td_run *run;

	/* 1 for the first half of the run, 0 for the second: a sample of the
	 * whole run draws both halves, a sample of the start only 1s. */
	opts_for(t, &o, next_url(t, url, sizeof(url)));
	o.run_id = "sampling";
	o.resume = TD_RESUME_ALLOW;
	CHECK_RC(td_init(&o, &run), TD_OK);
	for (int i = 0; i < 100000; i++) {
		td_item row[] = {TD_F("x", i < 50000 ? 1.0 : 0.0)};
		CHECK_RC(td_log(run, row, 1, TD_STEP_AUTO, true), TD_OK);
	}
	CHECK(td_footer(run, buf, sizeof(buf)) > 0);
	CHECK(strstr(buf, "x 0.0\n") != NULL); /* the summary: the last value */
	char *line = strstr(buf, "x ");
	CHECK(line != NULL);
	if (line) {
		char *end = strchr(line, '\n');
		if (end)
			*end = '\0';
		int high = count_glyph(line, "█"), low = count_glyph(line, "▁");
		CHECK(high + low == 40);
		CHECK(high >= 10 && low >= 10);
		/* In step order: every 1 before every 0. */
		CHECK(strstr(line, "▁█") == NULL);
		if (high < 10 || low < 10)
			fprintf(stderr, "  sparkline: %s\n", line);
	}
	td_finish(run, 0, 0, NULL);
}

/* ---- children: console capture and signals --------------------------------------- */

static int child_main(const char *mode, const char *url, const char *spool)
{
	td_run_options o;
	td_run *run;
	char s[PATH_MAX];
	struct tc tc = {.dir = "/tmp"}, *t = &tc;

	snprintf(s, sizeof(s), "%s", spool);
	snprintf(tc.spool, sizeof(tc.spool), "%s", s);
	opts_for(t, &o, url);
	if (strcmp(mode, "console") == 0) {
		o.capture_console = true;
		if (td_init(&o, &run) != TD_OK)
			return 10;
		td_run *second;
		if (td_init(&o, &second) != TD_ERR_INVALID) /* one capture at a time */
			return 13;
		printf("line one\n");
		printf("line two\n");
		fprintf(stderr, "err line\n");
		if (write(1, "raw write\n", 10) != 10)
			return 11;
		if (write(2, "bad \xff byte\n", 11) != 11)
			return 11;
		printf("partial");
		return td_finish(run, 0, 20000, NULL) == TD_OK ? 0 : 12;
	}
	if (strcmp(mode, "signal") == 0) {
		o.handle_signals = true;
		if (td_init(&o, &run) != TD_OK)
			return 10;
		td_run *second;
		if (td_init(&o, &second) != TD_ERR_INVALID) /* one handler at a time */
			return 13;
		for (int i = 0; i < 3; i++) {
			td_item row[] = {TD_I("i", i)};
			td_log(run, row, 1, TD_STEP_AUTO, true);
		}
		printf("ready\n");
		fflush(stdout);
		for (;;) {
			td_item row[] = {TD_I("alive", 1)};
			td_log(run, row, 1, TD_STEP_AUTO, false);
			sleep_ms(5);
		}
	}
	return 9;
}

/* Starts this program as a child in `mode`; its stdout and stderr are pipes. */
static pid_t spawn_child(struct tc *t, const char *mode, const char *url, int *out, int *err)
{
	int po[2], pe[2];

	if (pipe(po) != 0 || pipe(pe) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		close(po[0]);
		close(pe[0]);
		execl("/proc/self/exe", t->argv0, "--child", mode, url, t->spool, (char *)NULL);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	*out = po[0];
	*err = pe[0];
	return pid;
}

/* Reads fd to EOF into buf. */
static void read_all(int fd, char *buf, size_t len)
{
	size_t have = 0;

	for (;;) {
		ssize_t r = read(fd, buf + have, len - 1 - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	buf[have] = '\0';
	close(fd);
}

static void test_console_capture(struct tc *t)
{
	char url[PATH_MAX], out[8192], err[8192];
	struct test_server s = {0};
	int fo, fe, status;

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	pid_t pid = spawn_child(t, "console", url, &fo, &fe);
	CHECK(pid > 0);
	read_all(fo, out, sizeof(out));
	read_all(fe, err, sizeof(err));
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ts_stop(&s);

	/* The terminal (here: our pipes) still saw everything. */
	CHECK(strstr(out, "line one\nline two\n") && strstr(out, "raw write\n") &&
	      strstr(out, "partial"));
	CHECK(strstr(err, "err line\n") && strstr(err, "bad \xff byte\n"));

	/* The run got the same lines, stderr ones on the stderr stream. */
	char so[8192] = "", se[8192] = "";
	for (size_t i = 0; i < s.n_records; i++) {
		const Trackd__V1__Record *r = s.records[i];
		if (r->body_case != TRACKD__V1__RECORD__BODY_CONSOLE)
			continue;
		char *dst =
		    r->console->stream == TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDERR ? se : so;
		strncat(dst, r->console->text, sizeof(so) - strlen(dst) - 1);
	}
	CHECK(strstr(so, "line one\nline two\n") && strstr(so, "raw write\n") &&
	      strstr(so, "partial"));
	CHECK(strstr(se, "err line\n"));
	CHECK(strstr(se, "bad \xef\xbf\xbd byte\n")); /* not UTF-8: replaced */
	CHECK(strstr(so, "err line") == NULL && strstr(se, "line one") == NULL);
	/* Console records precede the exit record. */
	CHECK(s.n_records > 0 &&
	      s.records[s.n_records - 1]->body_case == TRACKD__V1__RECORD__BODY_EXIT);
	CHECK(s.violations == 0);
	ts_free(&s);
}

static void signal_case(struct tc *t, int sig)
{
	char url[PATH_MAX], line[64];
	struct test_server s = {0};
	int fo, fe, status;

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	pid_t pid = spawn_child(t, "signal", url, &fo, &fe);
	CHECK(pid > 0);
	ssize_t n = read(fo, line, sizeof(line) - 1);
	line[n > 0 ? n : 0] = '\0';
	CHECK(strcmp(line, "ready\n") == 0);
	CHECK(ts_wait_records(&s, 4, 10000)); /* start + 3 rows */
	kill(pid, sig);
	char err[8192];
	read_all(fe, err, sizeof(err));
	close(fo);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == sig);
	ts_stop(&s);
	const Trackd__V1__Record *ex = last_of(&s, TRACKD__V1__RECORD__BODY_EXIT);
	CHECK(ex != NULL);
	if (ex) {
		CHECK(ex->exit->reason == TRACKD__V1__EXIT_REASON__EXIT_KILLED);
		CHECK(ex->exit->exit_code == 128 + sig);
	}
	CHECK(s.n_records > 0 &&
	      s.records[s.n_records - 1]->body_case == TRACKD__V1__RECORD__BODY_EXIT);
	CHECK(s.violations == 0);
	ts_free(&s);
}

static void test_signal_kills_run(struct tc *t)
{
	signal_case(t, SIGTERM);
	signal_case(t, SIGINT);
}

/* ---- main ------------------------------------------------------------------------- */

struct test {
	const char *name;
	void (*fn)(struct tc *t);
};

int main(int argc, char **argv)
{
	static const struct test tests[] = {
	    {"define_metric_and_rename", test_define_metric_and_rename},
	    {"environment_record", test_environment_record},
	    {"environment_clean", test_environment_clean},
	    {"step_regression_refused", test_step_regression_refused},
	    {"spool_no_agent_then_later_run_delivers", test_spool_no_agent_then_later_run_delivers},
	    {"spool_own_replay_when_agent_arrives", test_spool_own_replay_when_agent_arrives},
	    {"spool_flush", test_spool_flush},
	    {"finish_without_agent_spools_promptly", test_finish_without_agent_spools_promptly},
	    {"spool_bound_refuses_and_counts", test_spool_bound_refuses_and_counts},
	    {"resume_checks", test_resume_checks},
	    {"query_and_status", test_query_and_status},
	    {"run_dir_and_default_entity", test_run_dir_and_default_entity},
	    {"footer_golden", test_footer_golden},
	    {"footer_samples_the_whole_run", test_footer_samples_the_whole_run},
	    {"console_capture", test_console_capture},
	    {"signal_kills_run", test_signal_kills_run},
	};
	char dir[] = "/tmp/trackd-features-XXXXXX";
	struct tc t = {.argv0 = argv[0]};
	const char *only = argc == 2 ? argv[1] : NULL;

	if (argc == 5 && strcmp(argv[1], "--child") == 0)
		return child_main(argv[2], argv[3], argv[4]);
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	t.dir = dir;
	unsetenv("TRACKD_SOCKET");
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (only && strcmp(only, tests[i].name) != 0)
			continue;
		int failed_before = check_failed;
		tests[i].fn(&t);
		printf("%s %s\n", check_failed != failed_before ? "FAIL" : "ok  ", tests[i].name);
		fflush(stdout);
	}
	remove_tree(dir);
	return CHECK_SUMMARY("client_features_test");
}
