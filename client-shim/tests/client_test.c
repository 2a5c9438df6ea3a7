/*
 * client_test.c — libtrackd against an in-process stand-in agent
 * (test_server.c) on an ipc:// socket in a temporary directory.
 *
 * Asserts behaviour, not timing: every wait has a generous timeout and no test
 * checks how fast something happened.
 */
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "run.h"       /* tdi_run_buffered_bytes, and the encoder and limits it includes */
#include "transport.h" /* TDI_REPLY_TIMEOUT_MS */
#include "test_server.h"
#include "trackd/trackd.h"

/* Logs rows {"i": base + k, "loss": 1 / (base + k + 1)} for k in [0, n). */
static int log_rows(td_run *run, int base, int n)
{
	for (int k = 0; k < n; k++) {
		td_item row[] = {TD_I("i", base + k), TD_F("loss", 1.0 / (base + k + 1))};
		int rc = td_log(run, row, 2, TD_STEP_AUTO, true);
		if (rc != TD_OK)
			return rc;
	}
	return TD_OK;
}

/* Checks that the server's history rows are exactly i = 0, 1, …, n-1. */
static void check_rows_in_order(struct tc *t, struct test_server *s, int n)
{
	int next = 0;

	for (size_t r = 0; r < s->n_records; r++) {
		const Trackd__V1__Record *rec = s->records[r];
		if (rec->body_case != TRACKD__V1__RECORD__BODY_HISTORY)
			continue;
		const Trackd__V1__HistoryRow *h = rec->history;
		if (!item_is_int(h->items, h->n_items, "i", next) ||
		    !item_is_double(h->items, h->n_items, "loss", 1.0 / (next + 1))) {
			fprintf(stderr, "  row %d missing or wrong at record %zu\n", next, r);
			check_failed++;
			return;
		}
		next++;
	}
	CHECK(next == n);
}

static void check_start_and_exit(struct tc *t, struct test_server *s, const char *run_id, int code)
{
	CHECK(s->n_records >= 2);
	if (s->n_records < 2)
		return;
	CHECK(s->records[0]->body_case == TRACKD__V1__RECORD__BODY_START);
	const Trackd__V1__Record *last = s->records[s->n_records - 1];
	CHECK(last->body_case == TRACKD__V1__RECORD__BODY_EXIT);
	if (last->body_case == TRACKD__V1__RECORD__BODY_EXIT) {
		CHECK(last->exit->has_exit_code && last->exit->exit_code == code);
		CHECK(last->exit->has_reason &&
		      last->exit->reason == TRACKD__V1__EXIT_REASON__EXIT_FINISHED);
	}
	for (size_t r = 0; r < s->n_records; r++)
		CHECK(strcmp(s->records[r]->run_id, run_id) == 0);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_rows_arrive_in_order_typed(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {0};
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	const char *tags[] = {"baseline", "ünïcode"};
	td_item opt[] = {TD_S("name", "adam"), TD_F("beta", 0.9)};
	td_item config[] = {TD_I("epochs", 10), TD_F("learning_rate", 0.01), TD_M("opt", opt, 2)};
	char host[256] = "";

	gethostname(host, sizeof(host));
	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	opts_for(t, &o, url);
	o.run_id = "rows1";
	o.display_name = "calm-river-1";
	o.tags = tags;
	o.n_tags = 2;
	o.config = config;
	o.n_config = 3;
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK(strcmp(td_run_id(run), "rows1") == 0);

	const int n = 300;
	for (int i = 0; i < n; i++) {
		char label[32];
		snprintf(label, sizeof(label), "s%d", i);
		td_item deep[] = {TD_I("y", -i)};
		td_item nested[] = {TD_F("x", i * 0.5), TD_M("deep", deep, 1)};
		td_item row[] = {TD_F("loss", 1.0 / (i + 1)), TD_I("i", i),
		                 TD_B("even", i % 2 == 0), TD_S("label", label),
		                 TD_M("nested", nested, 2)};
		int64_t step = i < n / 2 ? TD_STEP_AUTO : i;
		CHECK_RC(td_log(run, row, 5, step, i % 50 != 7), TD_OK);
	}
	td_item best[] = {TD_F("best_loss", 0.001)};
	td_item extra[] = {TD_S("extra", "yes")};
	CHECK_RC(td_summary_update(run, best, 1), TD_OK);
	CHECK_RC(td_config_update(run, extra, 1), TD_OK);
	CHECK_RC(td_output(run, false, "hello\n"), TD_OK);
	CHECK_RC(td_output(run, true, "warning: é\n"), TD_OK);
	CHECK_RC(td_finish(run, 0, 20000, &rep), TD_OK);
	ts_stop(&s);

	const uint64_t total = 1 + n + 4 + 1;
	CHECK(rep.records_logged == total);
	CHECK(rep.records_acked == total);
	CHECK(rep.records_unacked == 0 && rep.records_refused_full == 0 &&
	      rep.records_rejected == 0);
	CHECK(s.violations == 0);
	if (s.violations)
		fprintf(stderr, "  server: %s\n", s.violation);
	CHECK(s.n_records == total);
	CHECK(s.max_seen == s.highest_appended && s.max_seen >= 1);
	if (s.n_records != total) {
		ts_free(&s);
		return;
	}
	check_start_and_exit(t, &s, "rows1", 0);

	const Trackd__V1__RunStart *st = s.records[0]->start;
	CHECK(strcmp(st->project, "client-test") == 0);
	CHECK(strcmp(st->display_name, "calm-river-1") == 0);
	CHECK(st->n_tags == 2 && strcmp(st->tags[1], "ünïcode") == 0);
	CHECK(strcmp(st->host, host) == 0);
	CHECK(st->has_pid && st->pid == (int32_t)getpid());
	CHECK(st->has_start_time_us && st->start_time_us > 0);
	CHECK(st->config != NULL);
	if (st->config) {
		CHECK(item_is_int(st->config->items, st->config->n_items, "epochs", 10));
		CHECK(
		    item_is_double(st->config->items, st->config->n_items, "learning_rate", 0.01));
		const Trackd__V1__MapValue *m =
		    item_map(st->config->items, st->config->n_items, "opt");
		CHECK(m && item_is_string(m->items, m->n_items, "name", "adam"));
	}

	for (int i = 0; i < n; i++) {
		const Trackd__V1__Record *rec = s.records[1 + i];
		CHECK(rec->body_case == TRACKD__V1__RECORD__BODY_HISTORY);
		if (rec->body_case != TRACKD__V1__RECORD__BODY_HISTORY)
			break;
		const Trackd__V1__HistoryRow *h = rec->history;
		char label[32];
		snprintf(label, sizeof(label), "s%d", i);
		bool ok = h->n_items == 5 && item_is_double(h->items, 5, "loss", 1.0 / (i + 1)) &&
		          item_is_int(h->items, 5, "i", i) &&
		          item_is_bool(h->items, 5, "even", i % 2 == 0) &&
		          item_is_string(h->items, 5, "label", label);
		const Trackd__V1__MapValue *nested = item_map(h->items, h->n_items, "nested");
		const Trackd__V1__MapValue *deep =
		    nested ? item_map(nested->items, nested->n_items, "deep") : NULL;
		ok = ok && nested && item_is_double(nested->items, nested->n_items, "x", i * 0.5) &&
		     deep && item_is_int(deep->items, deep->n_items, "y", -i);
		ok = ok && (i < n / 2 ? !h->has_step : (h->has_step && h->step == i));
		ok = ok && (bool)h->commit == (i % 50 != 7) && h->has_client_time_us;
		if (!ok) {
			fprintf(stderr, "  history row %d differs\n", i);
			check_failed++;
			break;
		}
	}
	const Trackd__V1__Record *r = s.records[1 + n];
	CHECK(r->body_case == TRACKD__V1__RECORD__BODY_SUMMARY &&
	      item_is_double(r->summary->items, r->summary->n_items, "best_loss", 0.001));
	r = s.records[2 + n];
	CHECK(r->body_case == TRACKD__V1__RECORD__BODY_CONFIG &&
	      item_is_string(r->config->items, r->config->n_items, "extra", "yes"));
	r = s.records[3 + n];
	CHECK(r->body_case == TRACKD__V1__RECORD__BODY_CONSOLE &&
	      r->console->stream == TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDOUT &&
	      strcmp(r->console->text, "hello\n") == 0);
	r = s.records[4 + n];
	CHECK(r->body_case == TRACKD__V1__RECORD__BODY_CONSOLE &&
	      r->console->stream == TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDERR &&
	      strcmp(r->console->text, "warning: é\n") == 0);
	ts_free(&s);
}

static void test_late_server_gets_everything(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {.start_delay_ms = 500};
	td_run_options o;
	td_run *run;
	td_finish_report rep;

	next_url(t, url, sizeof(url));
	opts_for(t, &o, url);
	/* The server thread starts listening 500 ms from now. */
	CHECK(ts_start(&s, url) == 0);
	CHECK_RC(td_init(&o, &run), TD_OK);
	char id[TRACKD_MAX_RUN_ID_BYTES + 1];
	snprintf(id, sizeof(id), "%s", td_run_id(run));
	CHECK_RC(log_rows(run, 0, 40), TD_OK);
	sleep_ms(100);
	CHECK_RC(log_rows(run, 40, 40), TD_OK);
	CHECK_RC(td_finish(run, 0, 20000, &rep), TD_OK);
	ts_stop(&s);
	CHECK(rep.records_logged == 82 && rep.records_acked == 82);
	CHECK(s.violations == 0);
	CHECK(s.n_records == 82);
	check_start_and_exit(t, &s, id, 0);
	check_rows_in_order(t, &s, 80);
	ts_free(&s);
}

/* Starts server s, logs `rows` rows to it in one run, finishes (waiting up to
 * timeout_ms for acks) and stops the server; its records stay for checks. */
static void log_rows_to_server(struct tc *t, struct test_server *s, int rows, int timeout_ms,
                               td_finish_report *rep)
{
	char url[PATH_MAX];
	td_run_options o;
	td_run *run;

	CHECK(ts_start(s, next_url(t, url, sizeof(url))) == 0);
	opts_for(t, &o, url);
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK_RC(log_rows(run, 0, rows), TD_OK);
	CHECK_RC(td_finish(run, 0, timeout_ms, rep), TD_OK);
	ts_stop(s);
}

static enum ts_action drop_first_reply_of_seq1(void *arg, uint64_t seq, unsigned attempt)
{
	(void)arg;
	return seq == 1 && attempt == 1 ? TS_DROP : TS_ACK;
}

static enum ts_action drop_three_replies_of_seq1(void *arg, uint64_t seq, unsigned attempt)
{
	(void)arg;
	return seq == 1 && attempt <= 3 ? TS_DROP : TS_ACK;
}

/* A slow agent is not flooded with resends: each reply timeout doubles the next
 * wait (TDI_REPLY_TIMEOUT_MS, then twice that, …). A wait can only end early by a
 * reply, never by load, so a lower bound is what is checked — on the third wait,
 * because on a loaded machine the first attempt may still be waiting for its
 * connection (no growth: nothing was sent). */
static void test_reply_timeout_grows(struct tc *t)
{
	struct test_server s = {.decide = drop_three_replies_of_seq1};
	td_finish_report rep;

	log_rows_to_server(t, &s, 5, 60000, &rep);
	CHECK(rep.records_unacked == 0 && s.violations == 0);
	int64_t at[4];
	unsigned n = 0;
	for (size_t i = 0; i < s.n_reqs && n < 4; i++)
		if (s.reqs[i].seq == 1)
			at[n++] = s.reqs[i].arrived_ms;
	CHECK(n == 4);
	if (n == 4)
		CHECK(at[3] - at[2] >= 2 * TDI_REPLY_TIMEOUT_MS);
	ts_free(&s);
}

static void test_resend_carries_same_seq(struct tc *t)
{
	struct test_server s = {.decide = drop_first_reply_of_seq1};
	td_finish_report rep;

	log_rows_to_server(t, &s, 20, 30000, &rep);
	CHECK(rep.records_acked == 22 && rep.records_unacked == 0);
	CHECK(s.violations == 0);
	/* The lost reply made the client send seq 1 again, byte for byte. */
	unsigned copies = 0;
	const struct ts_request *first = NULL;
	for (size_t i = 0; i < s.n_reqs; i++) {
		if (s.reqs[i].seq != 1)
			continue;
		copies++;
		if (first == NULL) {
			first = &s.reqs[i];
		} else {
			CHECK(s.reqs[i].len == first->len &&
			      memcmp(s.reqs[i].bytes, first->bytes, first->len) == 0);
		}
	}
	CHECK(copies >= 2);
	CHECK(s.dups >= 1);
	/* …and the duplicate was not appended twice. */
	CHECK(s.n_records == 22);
	check_rows_in_order(t, &s, 20);
	ts_free(&s);
}

static enum ts_action busy_twice_for_seq1(void *arg, uint64_t seq, unsigned attempt)
{
	(void)arg;
	return seq == 1 && attempt <= 2 ? TS_ERROR_RETRY : TS_ACK;
}

static void test_retryable_error_is_retried(struct tc *t)
{
	struct test_server s = {.decide = busy_twice_for_seq1};
	td_finish_report rep;

	log_rows_to_server(t, &s, 10, 20000, &rep);
	CHECK(rep.records_acked == 12 && rep.records_rejected == 0);
	CHECK(ts_count_seq(&s, 1) == 3);
	CHECK(s.n_records == 12);
	check_rows_in_order(t, &s, 10);
	ts_free(&s);
}

static enum ts_action reject_seq2(void *arg, uint64_t seq, unsigned attempt)
{
	(void)arg;
	(void)attempt;
	return seq == 2 ? TS_ERROR_REJECT : TS_ACK;
}

static void test_non_retryable_error_rejects(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {.decide = reject_seq2, .reject_message = "row 3 breaks a rule"};
	td_run_options o;
	td_run *run;
	td_finish_report rep;

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	opts_for(t, &o, url);
	o.run_id = "rejected";
	CHECK_RC(td_init(&o, &run), TD_OK);
	/* Three separate batches: wait for each to reach the server. */
	CHECK_RC(log_rows(run, 0, 5), TD_OK);
	CHECK(ts_wait_seq(&s, 1, 10000));
	CHECK_RC(log_rows(run, 5, 5), TD_OK);
	CHECK(ts_wait_seq(&s, 2, 10000));
	CHECK_RC(log_rows(run, 10, 5), TD_OK);
	CHECK_RC(td_finish(run, 3, 20000, &rep), TD_ERR_REJECTED);
	CHECK_ERR_HAS("row 3 breaks a rule");
	ts_stop(&s);

	size_t rejected = 0;
	for (size_t i = 0; i < s.n_reqs; i++) {
		if (s.reqs[i].seq == 2)
			rejected = s.reqs[i].n_records;
	}
	CHECK(rejected > 0);
	CHECK(ts_count_seq(&s, 2) == 1); /* refused for good: never resent */
	CHECK(rep.records_rejected == rejected);
	CHECK(rep.records_acked + rep.records_rejected == rep.records_logged);
	CHECK(rep.records_unacked == 0);
	CHECK(strstr(rep.last_error, "row 3 breaks a rule") != NULL);
	CHECK(strstr(rep.last_error, "ERROR_INVALID") != NULL);
	CHECK(s.n_records == rep.records_acked);
	check_start_and_exit(t, &s, "rejected", 3);
	ts_free(&s);
}

/* A row whose only item is a string of `len` bytes. */
static int log_string_row(td_run *run, char *buf, size_t len)
{
	memset(buf, 'x', len);
	buf[len] = '\0';
	td_item row[] = {TD_S("s", buf)};
	return td_log(run, row, 1, TD_STEP_AUTO, true);
}

/*
 * Fills a 64 KiB buffer (no agent, so nothing is freed) to exactly
 * limit + delta with one record, using that a row's framed size grows one for
 * one with its string once every length varint is in the same (3-byte) band.
 */
static void fill_to_limit(struct tc *t, int delta)
{
	char url[PATH_MAX];
	const size_t limit = 64 << 10;
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	char *buf = malloc(limit + 1);
	unsigned refused = 0;
	int rc;

	opts_for(t, &o, next_url(t, url, sizeof(url))); /* nobody listens here */
	o.max_buffer_bytes = limit;
	o.spool_dir = ""; /* the memory bound itself, with nothing to spill to */
	CHECK_RC(td_init(&o, &run), TD_OK);

	const size_t probe_len = 20000;
	size_t before = tdi_run_buffered_bytes(run);
	CHECK_RC(log_string_row(run, buf, probe_len), TD_OK);
	size_t probe_size = tdi_run_buffered_bytes(run) - before;
	size_t remaining = limit - tdi_run_buffered_bytes(run);
	size_t target = remaining + (size_t)delta; /* framed size of the next record */
	CHECK(target > probe_size);

	rc = log_string_row(run, buf, probe_len + (target - probe_size));
	if (delta <= 0) {
		CHECK_RC(rc, TD_OK);
		CHECK(tdi_run_buffered_bytes(run) == limit + (size_t)delta);
		/* Whatever is left (0 or 1 byte) holds no record. */
		td_item tiny[] = {TD_B("b", true)};
		CHECK_RC(td_log(run, tiny, 1, TD_STEP_AUTO, true), TD_ERR_FULL);
		refused++;
		CHECK_ERR_HAS("buffer full");
	} else {
		CHECK_RC(rc, TD_ERR_FULL);
		refused++;
		CHECK(tdi_run_buffered_bytes(run) == limit - remaining);
		/* One byte less fits exactly: the refusal cost nothing. */
		CHECK_RC(log_string_row(run, buf, probe_len + (target - 1 - probe_size)), TD_OK);
		CHECK(tdi_run_buffered_bytes(run) == limit);
	}
	CHECK_RC(td_finish(run, 0, 200, &rep), TD_ERR_TIMEOUT);
	CHECK(rep.records_refused_full == refused);
	CHECK(rep.records_acked == 0);
	CHECK(rep.records_unacked == rep.records_logged);
	CHECK(rep.records_logged == 4); /* start, probe, fill, exit */
	free(buf);
}

static void test_buffer_bound_exact(struct tc *t)
{
	fill_to_limit(t, -1);
	fill_to_limit(t, 0);
	fill_to_limit(t, +1);
}

static void test_full_then_recovers(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {0};
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	char *buf = malloc(1001);
	int accepted = 0, refused = 0;

	opts_for(t, &o, next_url(t, url, sizeof(url)));
	o.max_buffer_bytes = 64 << 10;
	o.spool_dir = ""; /* refusals at the memory bound, not spilling */
	CHECK_RC(td_init(&o, &run), TD_OK);
	int rc;
	while ((rc = log_string_row(run, buf, 1000)) == TD_OK)
		accepted++;
	CHECK_RC(rc, TD_ERR_FULL);
	refused++;
	CHECK(accepted >= 60 && accepted <= 65);

	/* The agent shows up; the same record eventually fits. */
	CHECK(ts_start(&s, url) == 0);
	for (int waited = 0; waited < 20000; waited += 10) {
		if ((rc = log_string_row(run, buf, 1000)) != TD_ERR_FULL)
			break;
		refused++;
		sleep_ms(10);
	}
	CHECK_RC(rc, TD_OK);
	accepted++;
	CHECK_RC(td_finish(run, 0, 20000, &rep), TD_OK);
	ts_stop(&s);
	CHECK(rep.records_refused_full == (uint64_t)refused);
	CHECK(rep.records_logged == (uint64_t)accepted + 2);
	CHECK(rep.records_acked == rep.records_logged);
	CHECK(s.n_records == rep.records_logged);
	CHECK(s.violations == 0);
	free(buf);
	ts_free(&s);
}

/* Builds a chain of maps so that the innermost scalar sits at `depth`. */
static void nest(td_item *chain, int depth)
{
	static const char *const keys[] = {"d1",  "d2",  "d3",  "d4",  "d5",  "d6",
	                                   "d7",  "d8",  "d9",  "d10", "d11", "d12",
	                                   "d13", "d14", "d15", "d16", "d17", "d18"};
	for (int d = 0; d < depth - 1; d++)
		chain[d] = (td_item)TD_M(keys[d], &chain[d + 1], 1);
	chain[depth - 1] = (td_item)TD_F(keys[depth - 1], 1.5);
}

/* depth levels of lists around a double: chain[0] is the keyed item, the
 * double sits at the given depth (the key is depth 1). */
static void nest_lists(td_item *chain, int depth)
{
	for (int d = 0; d < depth - 1; d++)
		chain[d] = (td_item)TD_L(d ? NULL : "l", &chain[d + 1], 1);
	chain[depth - 1] = (td_item)TD_F(depth > 1 ? NULL : "l", 1.5);
}

static void test_invalid_items_rejected(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {0};
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	int accepted = 0;

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	opts_for(t, &o, url);
	CHECK_RC(td_init(&o, &run), TD_OK);

#define EXPECT_INVALID(items, n, needle)                                                           \
	do {                                                                                       \
		CHECK_RC(td_log(run, (items), (n), TD_STEP_AUTO, true), TD_ERR_INVALID);           \
		CHECK_ERR_HAS(needle);                                                             \
	} while (0)
#define EXPECT_OK(items, n)                                                                        \
	do {                                                                                       \
		CHECK_RC(td_log(run, (items), (n), TD_STEP_AUTO, true), TD_OK);                    \
		accepted++;                                                                        \
	} while (0)

	td_item one[1];
	one[0] = (td_item)TD_F(NULL, 1);
	EXPECT_INVALID(one, 1, "key is NULL");
	one[0] = (td_item)TD_F("", 1);
	EXPECT_INVALID(one, 1, "key is empty");
	CHECK_ERR_HAS("td_log: item #0");
	one[0] = (td_item)TD_F("bad\xff", 1);
	EXPECT_INVALID(one, 1, "key is not valid UTF-8");
	one[0] = (td_item)TD_F("\xc0\xaf", 1); /* overlong '/' */
	EXPECT_INVALID(one, 1, "UTF-8");
	one[0] = (td_item)TD_F("\xed\xa0\x80", 1); /* surrogate */
	EXPECT_INVALID(one, 1, "UTF-8");
	one[0] = (td_item)TD_F("ab\xe2\x82", 1); /* cut short */
	EXPECT_INVALID(one, 1, "UTF-8");
	one[0] = (td_item)TD_F("\xf4\x90\x80\x80", 1); /* above U+10FFFF */
	EXPECT_INVALID(one, 1, "UTF-8");
	one[0] = (td_item)TD_F("é€𝄞", 1);
	EXPECT_OK(one, 1);

	/* Key length: limit-1, limit, limit+1. */
	char key[TRACKD_DEFAULT_MAX_KEY_BYTES + 2];
	for (size_t len = TRACKD_DEFAULT_MAX_KEY_BYTES - 1; len <= TRACKD_DEFAULT_MAX_KEY_BYTES + 1;
	     len++) {
		memset(key, 'k', len);
		key[len] = '\0';
		one[0] = (td_item)TD_F(key, 1);
		if (len <= TRACKD_DEFAULT_MAX_KEY_BYTES)
			EXPECT_OK(one, 1);
		else
			EXPECT_INVALID(one, 1, "key is longer than 256 bytes");
	}

	/* String values: UTF-8 and length limit-1, limit, limit+1. */
	one[0] = (td_item)TD_S("note", "caf\xc3");
	EXPECT_INVALID(one, 1, "td_log: item \"note\": string value is not valid UTF-8");
	one[0] = (td_item)TD_S("note", NULL);
	EXPECT_INVALID(one, 1, "string value is NULL");
	char *big = malloc(TRACKD_DEFAULT_MAX_STRING_BYTES + 2);
	for (size_t len = TRACKD_DEFAULT_MAX_STRING_BYTES - 1;
	     len <= TRACKD_DEFAULT_MAX_STRING_BYTES + 1; len++) {
		memset(big, 'v', len);
		big[len] = '\0';
		one[0] = (td_item)TD_S("text", big);
		if (len <= TRACKD_DEFAULT_MAX_STRING_BYTES)
			EXPECT_OK(one, 1);
		else
			EXPECT_INVALID(one, 1, "string value is longer than");
	}
	/* Five strings of 1 MiB: each valid, together over the message limit. */
	memset(big, 'v', TRACKD_DEFAULT_MAX_STRING_BYTES);
	big[TRACKD_DEFAULT_MAX_STRING_BYTES] = '\0';
	td_item five[] = {TD_S("a", big), TD_S("b", big), TD_S("c", big), TD_S("d", big),
	                  TD_S("e", big)};
	EXPECT_INVALID(five, 5, "exceeds the agent's message limit");
	free(big);

	/* Nesting: depth 15 and 16 pass, 17 does not; the path names the spot. */
	td_item chain[18];
	nest(chain, 15);
	EXPECT_OK(chain, 1);
	nest(chain, 16);
	EXPECT_OK(chain, 1);
	nest(chain, 17);
	EXPECT_INVALID(chain, 1, "nesting depth exceeds 16");
	CHECK_ERR_HAS("\"d1\".\"d2\".\"d3\"");

	/* Lists count a level as maps do: 15 and 16 pass, 17 does not. */
	nest_lists(chain, 15);
	EXPECT_OK(chain, 1);
	nest_lists(chain, 16);
	EXPECT_OK(chain, 1);
	nest_lists(chain, 17);
	EXPECT_INVALID(chain, 1,
	               "td_log: item \"l\"[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: "
	               "nesting depth exceeds 16");
	/* Mixed: a map in a list in a map; the path names list positions. */
	td_item in_list[] = {TD_F("x", 1), TD_S("name", "x\xff")};
	td_item elems[] = {TD_N(NULL), TD_M(NULL, in_list, 2)};
	td_item wrap[] = {TD_L("betas", elems, 2)};
	one[0] = (td_item)TD_M("opt", wrap, 1);
	EXPECT_INVALID(one, 1,
	               "item \"opt\".\"betas\"[1].\"name\": string value is not valid UTF-8");
	/* A list element's key is ignored: never read, whatever it points at. */
	td_item junk[] = {{.key = (const char *)(uintptr_t)1, .type = TD_STRING, .v.s = "x\xff"}};
	one[0] = (td_item)TD_L("j", junk, 1);
	EXPECT_INVALID(one, 1, "item \"j\"[0]: string value is not valid UTF-8");
	junk[0].v.s = "fine";
	EXPECT_OK(one, 1);
	one[0] = (td_item)TD_L("l", NULL, 2);
	EXPECT_INVALID(one, 1, "item \"l\": list items are NULL");
	in_list[1] = (td_item)TD_S("name", "ok");
	EXPECT_OK(one, 0);
	one[0] = (td_item)TD_M("opt", wrap, 1);
	EXPECT_OK(one, 1);
	one[0] = (td_item)TD_N("none");
	EXPECT_OK(one, 1);
	one[0] = (td_item)TD_L("empty", NULL, 0);
	EXPECT_OK(one, 1);

	/* List length: limit-1, limit, limit+1. */
	size_t max_list = TRACKD_DEFAULT_MAX_LIST_LENGTH;
	td_item *list = calloc(max_list + 1, sizeof(*list));
	for (size_t i = 0; i <= max_list; i++)
		list[i] = (td_item)TD_I(NULL, (int64_t)i);
	one[0] = (td_item)TD_L("v", list, max_list - 1);
	EXPECT_OK(one, 1);
	one[0] = (td_item)TD_L("v", list, max_list);
	EXPECT_OK(one, 1);
	one[0] = (td_item)TD_L("v", list, max_list + 1);
	EXPECT_INVALID(one, 1, "item \"v\": list of 4097 elements, limit 4096");
	/* Elements count as items: 3 lists of 3333 + 3 keys = 10002 > 10000. */
	td_item three[] = {TD_L("a", list, 3332), TD_L("b", list, 3332), TD_L("c", list, 3333)};
	EXPECT_OK(three, 3); /* 3 + 9997 = 10000 */
	three[2] = (td_item)TD_L("c", list, 3334);
	EXPECT_INVALID(three, 3,
	               "more than 10000 items in one record (nested items and list "
	               "elements included)");
	free(list);

	td_item inner[] = {TD_F("lr", 0.1), TD_S("name", "x\xff")};
	one[0] = (td_item)TD_M("opt", inner, 2);
	EXPECT_INVALID(one, 1, "item \"opt\".\"name\": string value is not valid UTF-8");
	one[0] = (td_item)TD_M("opt", NULL, 2);
	EXPECT_INVALID(one, 1, "map items are NULL");

	/* Items per record, nested included: limit-1, limit, limit+1. */
	size_t max = TRACKD_DEFAULT_MAX_ITEMS_PER_RECORD;
	td_item *many = calloc(max + 1, sizeof(*many));
	char(*keys)[8] = calloc(max + 1, sizeof(*keys));
	for (size_t i = 0; i <= max; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%zu", i);
		many[i] = (td_item)TD_I(keys[i], (int64_t)i);
	}
	EXPECT_OK(many, max - 1);
	EXPECT_OK(many, max);
	EXPECT_INVALID(many, max + 1, "more than 10000 items");
	one[0] = (td_item)TD_M("m", many, max - 1); /* 1 + 9999 */
	EXPECT_OK(one, 1);
	one[0] = (td_item)TD_M("m", many, max); /* 1 + 10000 */
	EXPECT_INVALID(one, 1, "more than 10000 items");
	free(many);
	free(keys);

	one[0] = (td_item){.key = "t", .type = (td_type)42};
	EXPECT_INVALID(one, 1, "unknown type 42");
	CHECK_RC(td_log(run, NULL, 1, TD_STEP_AUTO, true), TD_ERR_INVALID);
	CHECK_ERR_HAS("NULL items");
	one[0] = (td_item)TD_F("loss", 1);
	CHECK_RC(td_log(run, one, 1, -2, true), TD_ERR_INVALID);
	CHECK_ERR_HAS("step -2");
	CHECK_RC(td_log(NULL, one, 1, TD_STEP_AUTO, true), TD_ERR_INVALID);

	one[0] = (td_item)TD_F("", 1);
	CHECK_RC(td_summary_update(run, one, 1), TD_ERR_INVALID);
	CHECK_ERR_HAS("td_summary_update: item #0: key is empty");
	CHECK_RC(td_config_update(run, one, 1), TD_ERR_INVALID);
	CHECK_ERR_HAS("td_config_update");
	CHECK_RC(td_output(run, false, NULL), TD_ERR_INVALID);
	CHECK_RC(td_output(run, false, "\xfe"), TD_ERR_INVALID);
	CHECK_ERR_HAS("td_output: text: not valid UTF-8");

#undef EXPECT_INVALID
#undef EXPECT_OK

	CHECK_RC(td_finish(run, 0, 30000, &rep), TD_OK);
	ts_stop(&s);
	/* Only the accepted rows reached the agent. */
	size_t rows = 0;
	for (size_t i = 0; i < s.n_records; i++)
		rows += s.records[i]->body_case == TRACKD__V1__RECORD__BODY_HISTORY;
	CHECK(rows == (size_t)accepted);
	CHECK(rep.records_logged == (uint64_t)accepted + 2);
	CHECK(s.violations == 0);
	ts_free(&s);
}

/* td_init succeeds with these options (then the run is dropped). */
static int try_init(struct tc *t, const td_run_options *o)
{
	td_run *run = NULL;
	int rc = td_init(o, &run);
	if (rc == TD_OK)
		td_finish(run, 0, 0, NULL);
	else
		CHECK(run == NULL);
	return rc;
}

static void test_invalid_options_rejected(struct tc *t)
{
	char url[PATH_MAX];
	td_run_options o;
	char name[TRACKD_MAX_RUN_ID_BYTES + TRACKD_MAX_NAME_BYTES + 2];
	const char *tags[TRACKD_MAX_TAGS + 1];

	opts_for(t, &o, next_url(t, url, sizeof(url)));
	o.run_id = "a/b";
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	CHECK_ERR_HAS("'/'");
	o.run_id = "ok:no";
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	/* W&B's rules: ids of letters, digits, '-', '_'; no '/' in a project. */
	o.run_id = "with space";
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	CHECK_ERR_HAS("' '");
	o.run_id = "a&b";
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	o.run_id = "Ok-id_9";
	o.project = "team/proj";
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	CHECK_ERR_HAS("project must not contain '/'");
	o.project = "client-test";
	o.entity = "e?";
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	o.entity = NULL;
	o.run_id = "";
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	memset(name, 'r', sizeof(name));
	name[TRACKD_MAX_RUN_ID_BYTES] = '\0';
	o.run_id = name;
	CHECK_RC(try_init(t, &o), TD_OK);
	name[TRACKD_MAX_RUN_ID_BYTES] = 'r';
	name[TRACKD_MAX_RUN_ID_BYTES + 1] = '\0';
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	CHECK_ERR_HAS("run_id is longer than 64");
	o.run_id = NULL;

	memset(name, 'p', sizeof(name));
	name[TRACKD_MAX_NAME_BYTES] = '\0';
	o.project = name;
	CHECK_RC(try_init(t, &o), TD_OK);
	name[TRACKD_MAX_NAME_BYTES] = 'p';
	name[TRACKD_MAX_NAME_BYTES + 1] = '\0';
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	CHECK_ERR_HAS("project: longer than 128");
	o.project = "";
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	o.project = "p";
	o.display_name = "\xff";
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	CHECK_ERR_HAS("display_name: not valid UTF-8");
	o.display_name = NULL;

	for (size_t i = 0; i <= TRACKD_MAX_TAGS; i++)
		tags[i] = "t";
	o.tags = tags;
	o.n_tags = TRACKD_MAX_TAGS;
	CHECK_RC(try_init(t, &o), TD_OK);
	o.n_tags = TRACKD_MAX_TAGS + 1;
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	CHECK_ERR_HAS("more than 64 tags");
	tags[1] = "";
	o.n_tags = 2;
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	CHECK_ERR_HAS("tag #1: empty");
	o.tags = NULL;
	o.n_tags = 0;

	o.max_buffer_bytes = (64 << 10) - 1;
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	CHECK_ERR_HAS("max_buffer_bytes");
	o.max_buffer_bytes = 64 << 10;
	CHECK_RC(try_init(t, &o), TD_OK);

	td_item config[] = {TD_I("epochs", 1), TD_F("bad\xff", 1)};
	o.config = config;
	o.n_config = 2;
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	CHECK_ERR_HAS("td_init: config: item #1: key is not valid UTF-8");
	o.config = NULL;
	o.n_config = 0;

	o.mode = (td_mode)7;
	CHECK_RC(try_init(t, &o), TD_ERR_INVALID);
	o.mode = TD_MODE_ONLINE;
	o.socket_url = "nonsense://here";
	CHECK_RC(try_init(t, &o), TD_ERR_TRANSPORT);
	CHECK_RC(td_init(&o, NULL), TD_ERR_INVALID);
}

static int count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	struct dirent *e;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_disabled_mode_does_nothing(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {0};
	td_run_options o;
	td_run *run;
	td_finish_report rep;

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	opts_for(t, &o, url);
	o.mode = TD_MODE_DISABLED;
	int threads = count_threads();
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK(count_threads() == threads); /* no sender thread */
	CHECK(strlen(td_run_id(run)) == 8);
	/* Nothing is recorded, but what an online run refuses is refused. */
	td_item bad[] = {TD_F("", 1)};
	CHECK_RC(td_log(run, bad, 1, TD_STEP_AUTO, true), TD_ERR_INVALID);
	CHECK_ERR_HAS("td_log: item #0: key is empty");
	CHECK_RC(td_summary_update(run, bad, 1), TD_ERR_INVALID);
	CHECK_RC(td_config_update(run, bad, 1), TD_ERR_INVALID);
	td_item elems[TRACKD_DEFAULT_MAX_LIST_LENGTH + 1] = {0};
	td_item too_long[] = {TD_L("v", elems, TRACKD_DEFAULT_MAX_LIST_LENGTH + 1)};
	for (size_t i = 0; i <= TRACKD_DEFAULT_MAX_LIST_LENGTH; i++)
		elems[i] = (td_item)TD_N(NULL);
	CHECK_RC(td_log(run, too_long, 1, TD_STEP_AUTO, true), TD_ERR_INVALID);
	CHECK_ERR_HAS("list of 4097 elements, limit 4096");
	td_item good[] = {TD_L("v", elems, 2), TD_F("x", 1)};
	CHECK_RC(td_log(run, good, 2, TD_STEP_AUTO, true), TD_OK);
	CHECK_RC(log_rows(run, 0, 100), TD_OK);
	CHECK_RC(td_summary_update(run, good, 2), TD_OK);
	CHECK_RC(td_output(run, false, "x"), TD_OK);
	CHECK_RC(td_finish(run, 1, 1000, &rep), TD_OK);
	CHECK(rep.records_logged == 0 && rep.records_acked == 0 && rep.last_error[0] == '\0');
	/* td_init checks the config too. */
	o.config = too_long;
	o.n_config = 1;
	CHECK_RC(td_init(&o, &run), TD_ERR_INVALID);
	CHECK_ERR_HAS("td_init: config: item \"v\": list of 4097 elements");
	sleep_ms(100);
	ts_stop(&s);
	CHECK(s.n_reqs == 0);
	ts_free(&s);
}

static void test_finish_times_out_without_agent(struct tc *t)
{
	char url[PATH_MAX];
	td_run_options o;
	td_run *run;
	td_finish_report rep;

	opts_for(t, &o, next_url(t, url, sizeof(url)));
	CHECK_RC(td_init(&o, &run), TD_OK);
	CHECK_RC(log_rows(run, 0, 10), TD_OK);
	CHECK_RC(td_finish(run, 0, 300, &rep), TD_ERR_TIMEOUT);
	CHECK_ERR_HAS("12 records not acknowledged");
	CHECK(rep.records_logged == 12);
	CHECK(rep.records_unacked == 12);
	CHECK(rep.records_spooled == 12); /* nothing lost: all in the spool */
	CHECK(rep.records_acked == 0 && rep.records_rejected == 0);
}

static void *log_from_thread(void *arg)
{
	td_run *run = ((void **)arg)[0];
	int id = (int)(intptr_t)((void **)arg)[1];

	for (int i = 0; i < 2000; i++) {
		td_item row[] = {TD_I("thread", id), TD_I("n", i), TD_F("v", i * 0.25)};
		if (td_log(run, row, 3, TD_STEP_AUTO, true) != TD_OK)
			return (void *)1;
	}
	return NULL;
}

static void test_threads_keep_their_order(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {0};
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	pthread_t th[4];
	void *args[4][2];

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	opts_for(t, &o, url);
	o.batch_bytes = 2048; /* many batches */
	CHECK_RC(td_init(&o, &run), TD_OK);
	for (int i = 0; i < 4; i++) {
		args[i][0] = run;
		args[i][1] = (void *)(intptr_t)i;
		pthread_create(&th[i], NULL, log_from_thread, args[i]);
	}
	for (int i = 0; i < 4; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		CHECK(ret == NULL);
	}
	CHECK_RC(td_finish(run, 0, 30000, &rep), TD_OK);
	ts_stop(&s);
	CHECK(rep.records_acked == 4 * 2000 + 2);
	CHECK(s.n_records == 4 * 2000 + 2);
	CHECK(s.violations == 0);
	int next[4] = {0};
	for (size_t r = 0; r < s.n_records; r++) {
		const Trackd__V1__Record *rec = s.records[r];
		if (rec->body_case != TRACKD__V1__RECORD__BODY_HISTORY)
			continue;
		const Trackd__V1__Item *th_item = find_item(rec->history->items, 3, "thread");
		const Trackd__V1__Item *n_item = find_item(rec->history->items, 3, "n");
		if (!th_item || !n_item || th_item->value->int_value < 0 ||
		    th_item->value->int_value > 3) {
			check_failed++;
			break;
		}
		int id = (int)th_item->value->int_value;
		if (n_item->value->int_value != next[id]) {
			fprintf(stderr, "  thread %d: got n=%lld, want %d\n", id,
			        (long long)n_item->value->int_value, next[id]);
			check_failed++;
			break;
		}
		next[id]++;
	}
	CHECK(next[0] == 2000 && next[1] == 2000 && next[2] == 2000 && next[3] == 2000);
	ts_free(&s);
}

static void test_large_records_split_batches(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {0};
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	size_t len = 900 << 10;
	char *big = malloc(len + 1);

	memset(big, 'z', len);
	big[len] = '\0';
	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	opts_for(t, &o, url);
	o.batch_bytes = 64 << 20; /* clamped: the message limit splits batches */
	o.flush_interval_ms = 60000;
	CHECK_RC(td_init(&o, &run), TD_OK);
	for (int i = 0; i < 12; i++) {
		td_item row[] = {TD_I("i", i), TD_S("blob", big)};
		CHECK_RC(td_log(run, row, 2, TD_STEP_AUTO, true), TD_OK);
	}
	CHECK_RC(td_finish(run, 0, 30000, &rep), TD_OK);
	ts_stop(&s);
	CHECK(rep.records_acked == 14);
	CHECK(s.n_records == 14);
	CHECK(s.violations == 0);
	CHECK(s.n_reqs >= 3);
	for (size_t i = 0; i < s.n_reqs; i++)
		CHECK(s.reqs[i].len <= TRACKD_DEFAULT_MAX_MESSAGE_BYTES);
	free(big);
	ts_free(&s);
}

static void test_env_socket_and_defaults(struct tc *t)
{
	char url[PATH_MAX];
	struct test_server s = {0};
	td_run_options o;
	td_run *run;
	td_finish_report rep;

	CHECK(ts_start(&s, next_url(t, url, sizeof(url))) == 0);
	setenv("TRACKD_SOCKET", url, 1);
	td_run_options_init(&o);
	CHECK(o.max_buffer_bytes == 64u << 20 && o.batch_bytes == 256u << 10 &&
	      o.flush_interval_ms == 10 && o.socket_url == NULL && o.project == NULL);
	CHECK(o.print_footer && !o.capture_console && !o.handle_signals && o.spool_dir == NULL &&
	      o.max_spool_bytes == (size_t)1 << 30);
	CHECK(o.python_version == NULL && !o.disable_environment);
	o.print_footer = false;
	o.spool_dir = t->spool;
	o.disable_environment = true;
	CHECK_RC(td_init(&o, &run), TD_OK);
	const char *id = td_run_id(run);
	CHECK(strlen(id) == 8 && strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789") == 8);
	CHECK_RC(log_rows(run, 0, 3), TD_OK);
	CHECK_RC(td_finish(run, 0, 20000, &rep), TD_OK);
	unsetenv("TRACKD_SOCKET");
	ts_stop(&s);
	CHECK(s.n_records == 5);
	if (s.n_records == 5) {
		CHECK(strcmp(s.records[0]->start->project, "uncategorized") == 0);
		check_rows_in_order(t, &s, 3);
	}
	ts_free(&s);

	/* Random ids differ between runs. */
	td_run *a, *b;
	o.mode = TD_MODE_DISABLED;
	CHECK_RC(td_init(&o, &a), TD_OK);
	CHECK_RC(td_init(&o, &b), TD_OK);
	CHECK(strcmp(td_run_id(a), td_run_id(b)) != 0);
	td_finish(a, 0, 0, NULL);
	td_finish(b, 0, 0, NULL);
}

static void test_strerror(struct tc *t)
{
	const int codes[] = {TD_OK,           TD_ERR_INVALID, TD_ERR_NOMEM,     TD_ERR_FULL,
	                     TD_ERR_CLOSED,   TD_ERR_TIMEOUT, TD_ERR_TRANSPORT, TD_ERR_REJECTED,
	                     TD_ERR_NOT_FOUND};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		CHECK(td_strerror(codes[i]) && td_strerror(codes[i])[0]);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(td_strerror(codes[i]), td_strerror(codes[j])) != 0);
	}
	CHECK(strcmp(td_strerror(-99), "unknown error") == 0);
	CHECK_RC(td_finish(NULL, 0, 0, NULL), TD_ERR_INVALID);
}

/* One record through both encoders: the hand encoder must produce exactly
 * protobuf-c's bytes. */
static void compare_encoders(struct tc *t, const char *label, int kind, const td_item *items,
                             size_t n, int64_t step, bool commit)
{
	struct tdi_scratch s = {0};
	struct tdi_item_count count;
	uint8_t head[TDI_HISTORY_HEAD_MAX];
	const int64_t when = 1732600000123456;

	CHECK_RC(tdi_check_items(&tdi_default_limits, label, items, n, &count), TD_OK);
	CHECK_RC(tdi_scratch_reserve(&s, &count), TD_OK);

	struct tdi_items_record r = {.run_id = "cmp-run", .run_id_len = 7, .items = items, .n = n};
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	Trackd__V1__HistoryRow row = TRACKD__V1__HISTORY_ROW__INIT;
	Trackd__V1__SummaryUpdate summary = TRACKD__V1__SUMMARY_UPDATE__INIT;
	Trackd__V1__ConfigUpdate config = TRACKD__V1__CONFIG_UPDATE__INIT;
	Trackd__V1__Item **pb_items = tdi_scratch_fill(&s, items, n);

	rec.run_id = "cmp-run";
	if (kind == 0) {
		r.body_key = TDI_KEY_RECORD_HISTORY;
		r.items_key = TDI_KEY_HISTORY_ITEMS;
		r.head = head;
		r.head_len = tdi_history_head(head, step, commit, when);
		row.has_step = step != TD_STEP_AUTO;
		row.step = step;
		row.has_commit = !commit;
		row.commit = commit;
		row.has_client_time_us = true;
		row.client_time_us = when;
		row.n_items = n;
		row.items = pb_items;
		rec.body_case = TRACKD__V1__RECORD__BODY_HISTORY;
		rec.history = &row;
	} else if (kind == 1) {
		r.body_key = TDI_KEY_RECORD_SUMMARY;
		r.items_key = TDI_KEY_SUMMARY_ITEMS;
		summary.n_items = n;
		summary.items = pb_items;
		rec.body_case = TRACKD__V1__RECORD__BODY_SUMMARY;
		rec.summary = &summary;
	} else {
		r.body_key = TDI_KEY_RECORD_CONFIG;
		r.items_key = TDI_KEY_CONFIG_ITEMS;
		config.n_items = n;
		config.items = pb_items;
		rec.body_case = TRACKD__V1__RECORD__BODY_CONFIG;
		rec.config = &config;
	}

	size_t want_len = trackd__v1__record__get_packed_size(&rec);
	size_t got_len = tdi_items_record_measure(&s, &r);
	uint8_t *want = malloc(want_len + 1), *got = malloc(got_len + 1);
	trackd__v1__record__pack(&rec, want);
	uint8_t *end = tdi_items_record_write(&s, &r, got);
	bool same = got_len == want_len && (size_t)(end - got) == got_len &&
	            memcmp(got, want, got_len) == 0;
	if (!same) {
		fprintf(stderr, "  %s: hand encoder %zu bytes, protobuf-c %zu bytes, differ\n",
		        label, got_len, want_len);
		check_failed++;
	}
	free(want);
	free(got);
	tdi_scratch_fini(&s);
}

static void test_hand_encoder_matches_protobuf_c(struct tc *t)
{
	char long_string[300];
	memset(long_string, 's', sizeof(long_string) - 1);
	long_string[sizeof(long_string) - 1] = '\0';
	td_item deep[] = {TD_I("neg", -1), TD_I("min", INT64_MIN), TD_S("empty", "")};
	td_item empty_map[1];
	td_item nested[] = {TD_M("deep", deep, 3), TD_F("nan", NAN), TD_M("none", empty_map, 0),
	                    TD_S("long", long_string)};
	/* Lists of everything: scalars, null, an empty list, a list of lists, a
	 * map (with a list in it). */
	td_item in_map[] = {TD_L("betas", deep, 0), TD_N("none")};
	td_item pair[] = {TD_I(NULL, 3), TD_S(NULL, "")};
	td_item elems[] = {
	    TD_F(NULL, 0.9),       TD_N(NULL),       TD_L(NULL, pair, 0),    TD_L(NULL, pair, 2),
	    TD_M(NULL, in_map, 2), TD_B(NULL, true), TD_S(NULL, long_string)};
	td_item row[] = {TD_F("loss", 0.25),     TD_F("neg_zero", -0.0),     TD_I("big", INT64_MAX),
	                 TD_I("zero", 0),        TD_B("yes", true),          TD_B("no", false),
	                 TD_S("ünï", "cödé"),    TD_M("nested", nested, 4),  TD_N("null"),
	                 TD_L("list", elems, 7), TD_L("empty_list", NULL, 0)};
	const size_t n = sizeof(row) / sizeof(row[0]);

	compare_encoders(t, "history auto", 0, row, n, TD_STEP_AUTO, true);
	compare_encoders(t, "history step", 0, row, n, 123456789, false);
	compare_encoders(t, "history step 0", 0, row, 1, 0, true);
	compare_encoders(t, "history empty", 0, NULL, 0, TD_STEP_AUTO, true);
	compare_encoders(t, "summary", 1, row, n, TD_STEP_AUTO, true);
	compare_encoders(t, "config", 2, row, n, TD_STEP_AUTO, true);
	compare_encoders(t, "config empty", 2, NULL, 0, TD_STEP_AUTO, true);
}

/* ---- main -------------------------------------------------------------------- */

struct test {
	const char *name;
	void (*fn)(struct tc *t);
};

int main(void)
{
	static const struct test tests[] = {
	    {"rows_arrive_in_order_typed", test_rows_arrive_in_order_typed},
	    {"late_server_gets_everything", test_late_server_gets_everything},
	    {"resend_carries_same_seq", test_resend_carries_same_seq},
	    {"reply_timeout_grows", test_reply_timeout_grows},
	    {"retryable_error_is_retried", test_retryable_error_is_retried},
	    {"non_retryable_error_rejects", test_non_retryable_error_rejects},
	    {"buffer_bound_exact", test_buffer_bound_exact},
	    {"full_then_recovers", test_full_then_recovers},
	    {"invalid_items_rejected", test_invalid_items_rejected},
	    {"invalid_options_rejected", test_invalid_options_rejected},
	    {"disabled_mode_does_nothing", test_disabled_mode_does_nothing},
	    {"finish_times_out_without_agent", test_finish_times_out_without_agent},
	    {"threads_keep_their_order", test_threads_keep_their_order},
	    {"large_records_split_batches", test_large_records_split_batches},
	    {"env_socket_and_defaults", test_env_socket_and_defaults},
	    {"strerror", test_strerror},
	    {"hand_encoder_matches_protobuf_c", test_hand_encoder_matches_protobuf_c},
	};
	char dir[] = "/tmp/trackd-client-XXXXXX";
	struct tc t = {0};

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	t.dir = dir;
	unsetenv("TRACKD_SOCKET");
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int failed_before = check_failed;
		tests[i].fn(&t);
		printf("%s %s\n", check_failed != failed_before ? "FAIL" : "ok  ", tests[i].name);
		fflush(stdout);
	}
	remove_tree(dir);
	return CHECK_SUMMARY("client_test");
}
