/* run_test — W&B run semantics: steps and commits, summary modes, console lines,
 * states with several processes, snapshot round trip. */
#include "run.h"
#include "run_metadata.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static struct buf hist, cons;
static struct run_effects fx;

static void reset_fx(void)
{
	buf_reset(&hist);
	buf_reset(&cons);
	memset(&fx, 0, sizeof fx);
	fx.history = &hist;
	fx.console = &cons;
}

static struct record_origin origin(int32_t pid, uint64_t index)
{
	struct record_origin o = {
	    .index = index, .uid = 1000, .pid = pid, .recv_time_us = 1700000000000000};
	return o;
}

static struct run *start_run(const char *id)
{
	Trackd__V1__RunStart s = TRACKD__V1__RUN_START__INIT;
	s.project = "p";
	s.entity = "e";
	s.has_start_time_us = true;
	s.start_time_us = 1700000000000000; /* 2023-11-14T22:13:20Z */
	struct record_origin o = origin(100, 1);
	struct run *r;
	if (run_new(id, &s, &o, &r) != 0)
		return NULL;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = (char *)id;
	rec.body_case = TRACKD__V1__RECORD__BODY_START;
	rec.start = &s;
	reset_fx();
	run_apply(r, &rec, &o, &fx);
	return r;
}

/* log({key: x}, step, commit) at client time start + t seconds */
static void log_row(struct run *r, const char *key, double x, int64_t step, int commit, double t)
{
	Trackd__V1__Value v = TRACKD__V1__VALUE__INIT;
	v.kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
	v.double_value = x;
	Trackd__V1__Item item = TRACKD__V1__ITEM__INIT;
	item.key = (char *)key;
	item.value = &v;
	Trackd__V1__Item *items[1] = {&item};
	Trackd__V1__HistoryRow h = TRACKD__V1__HISTORY_ROW__INIT;
	h.items = items;
	h.n_items = 1;
	if (step >= 0) {
		h.has_step = true;
		h.step = step;
	}
	if (commit >= 0) {
		h.has_commit = true;
		h.commit = commit;
	}
	h.has_client_time_us = true;
	h.client_time_us = 1700000000000000 + (int64_t)(t * 1e6);
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_HISTORY;
	rec.history = &h;
	struct record_origin o = origin(100, r->last_index + 1);
	run_apply(r, &rec, &o, &fx);
}

static void exit_run(struct run *r, int32_t pid, int code, Trackd__V1__ExitReason reason)
{
	Trackd__V1__RunExit e = TRACKD__V1__RUN_EXIT__INIT;
	e.has_exit_code = true;
	e.exit_code = code;
	e.has_reason = true;
	e.reason = reason;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_EXIT;
	rec.exit = &e;
	struct record_origin o = origin(pid, r->last_index + 1);
	run_apply(r, &rec, &o, &fx);
}

static void test_steps_and_commits(void)
{
	struct run *r = start_run("steps");
	reset_fx();
	log_row(r, "a", 1, -1, -1, 1.5); /* step 0, committed */
	CHECK(strcmp(hist.data,
	             "{\"a\":1.0,\"_step\":0,\"_runtime\":1.5,\"_timestamp\":1700000001.5}\n") == 0,
	      "first row: %s", hist.data);
	reset_fx();
	log_row(r, "a", 2, -1, 0, 2); /* commit=false: pending at step 1 */
	log_row(r, "b", 3, -1, 0, 2);
	CHECK(hist.len == 0, "uncommitted rows are not emitted: %s", hist.data);
	log_row(r, "c", 4, -1, -1, 2); /* commits step 1 with a, b, c */
	CHECK(strcmp(hist.data, "{\"a\":2.0,\"b\":3.0,\"c\":4.0,\"_step\":1,\"_runtime\":2.0,\"_"
	                        "timestamp\":1700000002.0}\n") == 0,
	      "accumulated row: %s", hist.data);
	reset_fx();
	log_row(r, "a", 5, 5, 0, 3); /* explicit step 5, not committed */
	log_row(r, "b", 6, 5, 0, 3); /* same step merges */
	CHECK(hist.len == 0, "pending at explicit step");
	log_row(r, "a", 7, 7, 0, 4); /* larger step commits step 5 first */
	CHECK(strstr(hist.data, "\"_step\":5") && strstr(hist.data, "\"b\":6.0") &&
	          !strstr(hist.data, "\"_step\":7"),
	      "larger step commits pending: %s", hist.data);
	reset_fx();
	log_row(r, "a", 8, 3, -1, 5); /* earlier step: dropped */
	CHECK(fx.step_rejected && r->rows_rejected == 1 && hist.len == 0, "earlier step rejected");
	reset_fx();
	exit_run(r, 100, 0, TRACKD__V1__EXIT_REASON__EXIT_FINISHED); /* exit commits step 7 */
	CHECK(strstr(hist.data, "\"_step\":7") != NULL, "exit commits the pending row: %s",
	      hist.data);
	CHECK(r->state == RUN_FINISHED && r->has_exit_code && r->exit_code == 0, "finished");
	CHECK(r->history_lines == 4, "history lines %llu", (unsigned long long)r->history_lines);
	run_free(r);
}

static void define_metric(struct run *r, const char *name, Trackd__V1__MetricSummary mode)
{
	Trackd__V1__DefineMetric d = TRACKD__V1__DEFINE_METRIC__INIT;
	d.name = (char *)name;
	d.has_summary = true;
	d.summary = mode;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_DEFINE_METRIC;
	rec.define_metric = &d;
	struct record_origin o = origin(100, r->last_index + 1);
	run_apply(r, &rec, &o, &fx);
}

static double summary_of(struct run *r, const char *key)
{
	struct vvalue *v = vmap_get(&r->summary, key);
	return v && v->kind == V_DOUBLE ? v->u.d : NAN;
}

static void test_summary_modes(void)
{
	struct run *r = start_run("summ");
	reset_fx();
	define_metric(r, "lo", TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MIN);
	define_metric(r, "hi", TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MAX);
	define_metric(r, "avg", TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MEAN);
	define_metric(r, "hidden", TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_NONE);
	double xs[] = {3, 1, 4, 1.5};
	for (int i = 0; i < 4; i++) {
		log_row(r, "lo", xs[i], -1, 0, i);
		log_row(r, "hi", xs[i], -1, 0, i);
		log_row(r, "avg", xs[i], -1, 0, i);
		log_row(r, "hidden", xs[i], -1, 0, i);
		log_row(r, "last", xs[i], -1, 1, i);
	}
	CHECK(summary_of(r, "lo") == 1, "min %g", summary_of(r, "lo"));
	CHECK(summary_of(r, "hi") == 4, "max %g", summary_of(r, "hi"));
	CHECK(summary_of(r, "avg") == 2.375, "mean %g", summary_of(r, "avg"));
	CHECK(summary_of(r, "last") == 1.5, "last %g", summary_of(r, "last"));
	CHECK(vmap_get(&r->summary, "hidden") == NULL, "none is not in the summary");
	struct vvalue *step = vmap_get(&r->summary, "_step");
	CHECK(step && step->kind == V_INT && step->u.i == 3, "_step in summary");
	run_free(r);
}

static void test_console(void)
{
	struct run *r = start_run("cons");
	reset_fx();
	Trackd__V1__ConsoleOutput c = TRACKD__V1__CONSOLE_OUTPUT__INIT;
	c.text = "epoch 1\ntraceback\n";
	c.has_stream = true;
	c.stream = TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDERR;
	c.has_client_time_us = true;
	c.client_time_us = 1704067201000001; /* 2024-01-01T00:00:01.000001Z */
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_CONSOLE;
	rec.console = &c;
	struct record_origin o = origin(100, 9);
	run_apply(r, &rec, &o, &fx);
	CHECK(strcmp(cons.data, "ERROR 2024-01-01T00:00:01.000001 epoch 1\n"
	                        "ERROR 2024-01-01T00:00:01.000001 traceback\n") == 0,
	      "console lines: %s", cons.data);
	CHECK(r->console_lines == 2, "console line count");
	run_free(r);
}

static void test_states(void)
{
	/* Two processes: one finishes, the other crashes → crashed. */
	struct run *r = start_run("multi");
	Trackd__V1__RunStart s = TRACKD__V1__RUN_START__INIT;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_START;
	rec.start = &s;
	struct record_origin o = origin(200, 5);
	reset_fx();
	run_apply(r, &rec, &o, &fx);
	CHECK(r->n_attached == 2, "two processes attached");
	exit_run(r, 100, 0, TRACKD__V1__EXIT_REASON__EXIT_FINISHED);
	CHECK(r->state == RUN_RUNNING && !fx.ended, "still running while one process lives");
	run_process_vanished(r, 200, 1700000009000000, &fx);
	CHECK(r->state == RUN_CRASHED && fx.ended && !r->has_exit_code, "crashed wins");
	run_free(r);

	r = start_run("fail");
	exit_run(r, 100, 3, TRACKD__V1__EXIT_REASON__EXIT_FINISHED);
	CHECK(r->state == RUN_FAILED && r->exit_code == 3, "non-zero exit → failed");
	run_free(r);
	r = start_run("kill");
	exit_run(r, 100, 143, TRACKD__V1__EXIT_REASON__EXIT_KILLED);
	CHECK(r->state == RUN_KILLED, "killed");
	run_free(r);
}

/* An exit record as one process sends it for another (sender != named), or a
 * crash mark when reason is EXIT_CRASHED (sent by the agent: pid 0). */
static void exit_named(struct run *r, int32_t sender, int32_t named, int code,
                       Trackd__V1__ExitReason reason)
{
	Trackd__V1__RunExit e = TRACKD__V1__RUN_EXIT__INIT;
	e.has_exit_code = e.has_reason = e.has_pid = true;
	e.exit_code = code;
	e.reason = reason;
	e.pid = named;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_EXIT;
	rec.exit = &e;
	struct record_origin o = origin(sender, r->last_index + 1);
	reset_fx();
	run_apply(r, &rec, &o, &fx);
}

static void crash_mark(struct run *r, int32_t pid)
{
	exit_named(r, 0, pid, 0, TRACKD__V1__EXIT_REASON__EXIT_CRASHED);
}

static struct run *snapshot_copy(struct run *r)
{
	Trackd__V1__RunSnapshot *s = run_to_snapshot(r);
	size_t len = trackd__v1__run_snapshot__get_packed_size(s);
	uint8_t *buf = malloc(len);
	trackd__v1__run_snapshot__pack(s, buf);
	run_snapshot_free(s);
	Trackd__V1__RunSnapshot *u = trackd__v1__run_snapshot__unpack(NULL, len, buf);
	struct run *r2 = NULL;
	if (u)
		run_from_snapshot(u, &r2);
	trackd__v1__run_snapshot__free_unpacked(u, NULL);
	free(buf);
	run_free(r);
	return r2;
}

static void test_late_exit(void)
{
	const Trackd__V1__ExitReason fin = TRACKD__V1__EXIT_REASON__EXIT_FINISHED;
	/* The agent was down: the process was marked crashed, then its spooled exit
	 * came, delivered by another process (trackctl spool flush, pid 555). */
	struct run *r = start_run("late");
	crash_mark(r, 100);
	CHECK(r->state == RUN_CRASHED && fx.ended, "crash mark ends the run");
	r = snapshot_copy(r); /* the sink may have checkpointed in between */
	CHECK(r != NULL, "snapshot loads");
	if (!r)
		return;
	exit_named(r, 555, 100, 0, fin);
	CHECK(r->state == RUN_FINISHED && r->has_exit_code && r->exit_code == 0 && fx.settled,
	      "a late exit settles the crash: %s", run_state_name(r->state));
	CHECK(r->n_attached == 1, "the deliverer is not attached: %zu", r->n_attached);
	run_free(r);

	/* Two processes, one marked crashed, the other finished: the late exit of
	 * the first gives its own outcome. */
	r = start_run("late2");
	Trackd__V1__RunStart st = TRACKD__V1__RUN_START__INIT;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_START;
	rec.start = &st;
	struct record_origin o = origin(200, 2);
	run_apply(r, &rec, &o, &fx);
	crash_mark(r, 100);
	exit_named(r, 200, 200, 0, fin);
	CHECK(r->state == RUN_CRASHED, "crashed while one crash is unsettled");
	exit_named(r, 555, 100, 2, fin);
	CHECK(r->state == RUN_FAILED && r->exit_code == 2 && fx.settled, "settled to failed: %s",
	      run_state_name(r->state));
	run_free(r);

	/* Both crashed: settling one leaves the run crashed; the second settles it. */
	r = start_run("late3");
	o = origin(200, 2);
	run_apply(r, &rec, &o, &fx);
	crash_mark(r, 100);
	crash_mark(r, 200);
	exit_named(r, 555, 100, 0, fin);
	CHECK(r->state == RUN_CRASHED && !r->has_exit_code, "one crash is left");
	exit_named(r, 555, 200, 0, fin);
	CHECK(r->state == RUN_FINISHED && r->exit_code == 0, "both settled: %s",
	      run_state_name(r->state));
	run_free(r);

	/* A crash mark decided before the process's exit was applied: the exit stands,
	 * and the other process still decides when the run ends. */
	r = start_run("late4");
	o = origin(200, 2);
	run_apply(r, &rec, &o, &fx);
	exit_named(r, 100, 100, 0, fin);
	crash_mark(r, 100);
	CHECK(r->state == RUN_RUNNING && r->worst_outcome == RUN_FINISHED,
	      "a mark after the exit is ignored");
	exit_named(r, 200, 200, 0, fin);
	CHECK(r->state == RUN_FINISHED, "finished: %s", run_state_name(r->state));
	run_free(r);

	/* Flushed before the crash was noticed: the deliverer (555) was attached by
	 * the rows it replayed; the exit it delivers ends the run, deliverer and all. */
	r = start_run("late5");
	Trackd__V1__Value v = TRACKD__V1__VALUE__INIT;
	v.kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
	Trackd__V1__Item item = TRACKD__V1__ITEM__INIT;
	item.key = "x";
	item.value = &v;
	Trackd__V1__Item *items[1] = {&item};
	Trackd__V1__HistoryRow h = TRACKD__V1__HISTORY_ROW__INIT;
	h.items = items;
	h.n_items = 1;
	Trackd__V1__Record row = TRACKD__V1__RECORD__INIT;
	row.run_id = r->id;
	row.body_case = TRACKD__V1__RECORD__BODY_HISTORY;
	row.history = &h;
	o = origin(555, 2);
	run_apply(r, &row, &o, &fx);
	CHECK(r->n_attached == 2, "the deliverer is attached by its rows");
	exit_named(r, 555, 100, 0, fin);
	CHECK(r->state == RUN_FINISHED && r->exit_code == 0 && fx.ended,
	      "the delivered exit ends the run: %s", run_state_name(r->state));
	CHECK(r->attached[0].done && r->attached[1].done, "nobody left attached");
	run_free(r);
}

static void test_snapshot_round_trip(void)
{
	struct run *r = start_run("snap");
	reset_fx();
	define_metric(r, "loss", TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MEAN);
	log_row(r, "loss", 2, -1, -1, 1);
	log_row(r, "loss", 4, -1, 0, 2); /* pending */
	r->history_bytes = 123;
	r->has_series_rows = true;
	r->series_rows = 7;
	r->series_dropped = 3;
	Trackd__V1__RunSnapshot *s = run_to_snapshot(r);
	size_t len = trackd__v1__run_snapshot__get_packed_size(s);
	uint8_t *buf = malloc(len);
	trackd__v1__run_snapshot__pack(s, buf);
	run_snapshot_free(s);
	Trackd__V1__RunSnapshot *u = trackd__v1__run_snapshot__unpack(NULL, len, buf);
	struct run *r2 = NULL;
	CHECK(u && run_from_snapshot(u, &r2) == 0, "snapshot loads");
	if (!r2) {
		run_free(r);
		return;
	}
	trackd__v1__run_snapshot__free_unpacked(u, NULL);
	free(buf);
	CHECK(r2->has_series_rows && r2->series_rows == 7 && r2->series_dropped == 3,
	      "the series index's rows survive a snapshot");
	CHECK(r2->step == r->step && r2->has_pending && r2->history_bytes == 123 &&
	          r2->last_index == r->last_index && r2->n_attached == 1 &&
	          strcmp(r2->dir_name, "run-20231114_221320-snap") == 0,
	      "fields survive: step %lld dir %s", (long long)r2->step, r2->dir_name);
	/* Continuing from the snapshot gives the same rows as continuing the original. */
	reset_fx();
	log_row(r, "loss", 6, -1, -1, 3);
	char *a = strdup(hist.data);
	reset_fx();
	log_row(r2, "loss", 6, -1, -1, 3);
	CHECK(strcmp(a, hist.data) == 0, "replay equal: %s vs %s", a, hist.data);
	CHECK(summary_of(r2, "loss") == summary_of(r, "loss") && summary_of(r, "loss") == 4,
	      "mean continues: %g", summary_of(r2, "loss"));
	free(a);
	run_free(r);
	run_free(r2);
}

/* ---- update: name, tags, notes ----------------------------------------------- */

static void update_run(struct run *r, const Trackd__V1__RunRename *u)
{
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_RENAME;
	rec.rename = (Trackd__V1__RunRename *)u;
	struct record_origin o = origin(0, r->last_index + 1);
	reset_fx();
	run_apply(r, &rec, &o, &fx);
}

static void test_update(void)
{
	struct run *r = start_run("upd");
	char *start_tags[] = {"a", "b"};
	Trackd__V1__RunRename u = TRACKD__V1__RUN_RENAME__INIT;
	u.has_set_tags = u.set_tags = true;
	u.tags = start_tags;
	u.n_tags = 2;
	u.notes = "first";
	update_run(r, &u);
	CHECK(r->n_tags == 2 && strcmp(r->tags[1], "b") == 0 && strcmp(r->notes, "first") == 0 &&
	          fx.meta_changed,
	      "tags and notes set: %zu tags, notes %s", r->n_tags, r->notes);

	/* An older agent's record: the name alone; tags and notes stay. */
	Trackd__V1__RunRename old = TRACKD__V1__RUN_RENAME__INIT;
	old.display_name = "renamed";
	update_run(r, &old);
	CHECK(strcmp(r->display_name, "renamed") == 0 && r->n_tags == 2 &&
	          strcmp(r->notes, "first") == 0,
	      "a name-only record keeps tags and notes");

	/* Tags without set_tags are not a change; notes "" clears; an absent name stays. */
	Trackd__V1__RunRename u2 = TRACKD__V1__RUN_RENAME__INIT;
	u2.tags = start_tags;
	u2.n_tags = 1;
	u2.notes = "";
	update_run(r, &u2);
	CHECK(r->n_tags == 2 && strcmp(r->notes, "") == 0 &&
	          strcmp(r->display_name, "renamed") == 0,
	      "notes cleared, tags and name kept");

	/* set_tags with no tags: the list becomes empty. */
	Trackd__V1__RunRename u3 = TRACKD__V1__RUN_RENAME__INIT;
	u3.has_set_tags = u3.set_tags = true;
	update_run(r, &u3);
	CHECK(r->n_tags == 0, "tags cleared: %zu left", r->n_tags);

	/* The snapshot keeps what the updates made. */
	u.display_name = "final";
	update_run(r, &u);
	Trackd__V1__RunSnapshot *s = run_to_snapshot(r);
	size_t len = trackd__v1__run_snapshot__get_packed_size(s);
	uint8_t *buf = malloc(len);
	trackd__v1__run_snapshot__pack(s, buf);
	run_snapshot_free(s);
	Trackd__V1__RunSnapshot *back = trackd__v1__run_snapshot__unpack(NULL, len, buf);
	struct run *r2 = NULL;
	CHECK(back && run_from_snapshot(back, &r2) == 0, "snapshot loads");
	if (r2)
		CHECK(strcmp(r2->display_name, "final") == 0 && r2->n_tags == 2 &&
		          strcmp(r2->tags[0], "a") == 0 && strcmp(r2->notes, "first") == 0,
		      "an update survives the snapshot");
	struct buf j;
	buf_init(&j, 1 << 16);
	CHECK(run_to_json(r, "/d", false, &j) == 0 && strstr(j.data, "\"tags\":[\"a\",\"b\"]") &&
	          strstr(j.data, "\"notes\":\"first\""),
	      "the run's JSON shows them: %s", j.data);
	buf_fini(&j);
	if (back)
		trackd__v1__run_snapshot__free_unpacked(back, NULL);
	free(buf);
	run_free(r);
	run_free(r2);
}

/* ---- lists and null ---------------------------------------------------------- */

/* Values for the tests below, built in static storage: [0.5, null, "a",
 * [1, {"k": []}], {}] and null. */
static Trackd__V1__Value v_half, v_null, v_str, v_one, v_list, v_inner, v_map, v_k, v_empty_map;
static Trackd__V1__Value *outer_elems[5], *inner_elems[2];
static Trackd__V1__ListValue outer, inner, k_list;
static Trackd__V1__MapValue k_map, empty_map;
static Trackd__V1__Item k_item, *k_items[1];
static Trackd__V1__NullValue null_msg = TRACKD__V1__NULL_VALUE__INIT;

static void build_values(void)
{
	Trackd__V1__Value init = TRACKD__V1__VALUE__INIT;
	v_half = v_null = v_str = v_one = v_list = v_inner = v_map = v_k = v_empty_map = init;
	trackd__v1__list_value__init(&outer);
	trackd__v1__list_value__init(&inner);
	trackd__v1__list_value__init(&k_list);
	trackd__v1__map_value__init(&k_map);
	trackd__v1__map_value__init(&empty_map);
	trackd__v1__item__init(&k_item);
	v_half.kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
	v_half.double_value = 0.5;
	v_null.kind_case = TRACKD__V1__VALUE__KIND_NULL_VALUE;
	v_null.null_value = &null_msg;
	v_str.kind_case = TRACKD__V1__VALUE__KIND_STRING_VALUE;
	v_str.string_value = "a";
	v_one.kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
	v_one.int_value = 1;
	v_k.kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
	v_k.list_value = &k_list; /* [] */
	k_item.key = "k";
	k_item.value = &v_k;
	k_items[0] = &k_item;
	k_map.items = k_items;
	k_map.n_items = 1;
	v_map.kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
	v_map.map_value = &k_map;
	inner_elems[0] = &v_one;
	inner_elems[1] = &v_map;
	inner.values = inner_elems;
	inner.n_values = 2;
	v_inner.kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
	v_inner.list_value = &inner;
	v_empty_map.kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
	v_empty_map.map_value = &empty_map;
	outer_elems[0] = &v_half;
	outer_elems[1] = &v_null;
	outer_elems[2] = &v_str;
	outer_elems[3] = &v_inner;
	outer_elems[4] = &v_empty_map;
	outer.values = outer_elems;
	outer.n_values = 5;
	v_list.kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
	v_list.list_value = &outer;
}

static void log_value(struct run *r, const char *key, Trackd__V1__Value *v, double t)
{
	Trackd__V1__Item item = TRACKD__V1__ITEM__INIT;
	item.key = (char *)key;
	item.value = v;
	Trackd__V1__Item *items[1] = {&item};
	Trackd__V1__HistoryRow h = TRACKD__V1__HISTORY_ROW__INIT;
	h.items = items;
	h.n_items = 1;
	h.has_client_time_us = true;
	h.client_time_us = 1700000000000000 + (int64_t)(t * 1e6);
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_HISTORY;
	rec.history = &h;
	struct record_origin o = origin(100, r->last_index + 1);
	run_apply(r, &rec, &o, &fx);
}

static char *json_of(const struct vmap *m)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	vmap_to_json(m, &b);
	char *s = strdup(b.len ? b.data : "");
	buf_fini(&b);
	return s;
}

static void test_lists_and_null(void)
{
	build_values();
	struct run *r = start_run("lists");
	reset_fx();
	log_value(r, "v", &v_list, 1);
	CHECK(strcmp(hist.data, "{\"v\":[0.5,null,\"a\",[1,{\"k\":[]}],{}],\"_step\":0,"
	                        "\"_runtime\":1.0,\"_timestamp\":1700000001.0}\n") == 0,
	      "list row: %s", hist.data);
	reset_fx();
	log_value(r, "n", &v_null, 2);
	CHECK(strncmp(hist.data, "{\"n\":null,", 10) == 0, "null row: %s", hist.data);

	/* min / max / mean skip structures; last takes them. */
	define_metric(r, "lo", TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MIN);
	define_metric(r, "avg", TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MEAN);
	log_row(r, "lo", 2, -1, -1, 3);
	log_row(r, "avg", 2, -1, -1, 3);
	log_value(r, "lo", &v_list, 4);
	log_value(r, "lo", &v_null, 5);
	log_value(r, "avg", &v_map, 5);
	log_row(r, "avg", 4, -1, -1, 6);
	CHECK(summary_of(r, "lo") == 2, "min ignores a list and null: %g", summary_of(r, "lo"));
	CHECK(summary_of(r, "avg") == 3, "mean ignores a map: %g", summary_of(r, "avg"));
	struct vvalue *v = vmap_get(&r->summary, "v");
	CHECK(v && v->kind == V_LIST && v->u.l->n == 5, "last keeps the list");
	v = vmap_get(&r->summary, "n");
	CHECK(v && v->kind == V_NULL, "last keeps null");

	/* config.yaml as PyYAML's safe_dump lays it out. */
	Trackd__V1__Item c1 = TRACKD__V1__ITEM__INIT, c2 = TRACKD__V1__ITEM__INIT,
	                 c3 = TRACKD__V1__ITEM__INIT, c4 = TRACKD__V1__ITEM__INIT;
	c1.key = "betas";
	c1.value = &v_list;
	c2.key = "sched";
	c2.value = &v_null;
	c3.key = "empty";
	c3.value = &v_k;
	c4.key = "opt";
	c4.value = &v_map;
	/* Doubles as YAML 1.1 floats (PyYAML needs the '.'): 1.0e-08, 3.0, 0.5. */
	Trackd__V1__Value eps = TRACKD__V1__VALUE__INIT, three = TRACKD__V1__VALUE__INIT;
	eps.kind_case = three.kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
	eps.double_value = 1e-8;
	three.double_value = -3e20;
	Trackd__V1__Item c5 = TRACKD__V1__ITEM__INIT, c6 = TRACKD__V1__ITEM__INIT;
	c5.key = "eps";
	c5.value = &eps;
	c6.key = "big";
	c6.value = &three;
	CHECK(vmap_set_item(&r->config, &c1) == 0 && vmap_set_item(&r->config, &c2) == 0 &&
	          vmap_set_item(&r->config, &c3) == 0 && vmap_set_item(&r->config, &c4) == 0 &&
	          vmap_set_item(&r->config, &c5) == 0 && vmap_set_item(&r->config, &c6) == 0,
	      "config set");
	struct buf y;
	buf_init(&y, 1 << 20);
	CHECK(vmap_to_config_yaml(&r->config, &y) == 0, "yaml");
	const char *want = "wandb_version: 1\n"
	                   "\nbetas:\n  desc: null\n  value:\n  - 0.5\n  - null\n  - \"a\"\n"
	                   "  - - 1\n    - k: []\n  - {}\n"
	                   "\nsched:\n  desc: null\n  value: null\n"
	                   "\nempty:\n  desc: null\n  value: []\n"
	                   "\nopt:\n  desc: null\n  value:\n    k: []\n"
	                   "\neps:\n  desc: null\n  value: 1.0e-08\n"
	                   "\nbig:\n  desc: null\n  value: -3.0e+20\n";
	CHECK(y.len && strcmp(y.data, want) == 0, "config.yaml:\n%s", y.len ? y.data : "");
	buf_fini(&y);

	/* Snapshots keep lists and null (summary and config). */
	Trackd__V1__RunSnapshot *s = run_to_snapshot(r);
	size_t len = trackd__v1__run_snapshot__get_packed_size(s);
	uint8_t *buf = malloc(len);
	trackd__v1__run_snapshot__pack(s, buf);
	run_snapshot_free(s);
	Trackd__V1__RunSnapshot *u = trackd__v1__run_snapshot__unpack(NULL, len, buf);
	struct run *r2 = NULL;
	CHECK(u && run_from_snapshot(u, &r2) == 0, "snapshot with lists loads");
	if (r2) {
		char *a = json_of(&r->summary), *b = json_of(&r2->summary);
		CHECK(strcmp(a, b) == 0, "summary survives: %s vs %s", a, b);
		free(a);
		free(b);
		a = json_of(&r->config);
		b = json_of(&r2->config);
		CHECK(strcmp(a, b) == 0, "config survives: %s vs %s", a, b);
		free(a);
		free(b);
	}
	if (u)
		trackd__v1__run_snapshot__free_unpacked(u, NULL);
	free(buf);
	run_free(r);
	run_free(r2);
}

/* Keys that a YAML 1.1 reader would take for booleans or null are quoted as
 * PyYAML quotes them; string values are always quoted. */
static void test_config_yaml_reserved(void)
{
	static const char *const reserved[] = {"True", "NULL", "Off",  "yes",   "Y",   "n",
	                                       "ON",   "No",   "null", "fAlSe", "true"};
	static const char *const plain[] = {"nothing", "yesterday", "Yes_", "on-off", "n2"};
	struct vmap m;
	vmap_init(&m);
	struct vvalue s = {.kind = V_STRING, .u.s = "True"};
	for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
		CHECK(vmap_set(&m, reserved[i], &s) == 0, "set %s", reserved[i]);
	for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
		CHECK(vmap_set_int(&m, plain[i], 1) == 0, "set %s", plain[i]);
	struct vvalue tilde = {.kind = V_STRING, .u.s = "~"};
	CHECK(vmap_set(&m, "~", &tilde) == 0 && vmap_set(&m, "1e3", &tilde) == 0, "set ~");
	struct buf y;
	buf_init(&y, 1 << 20);
	CHECK(vmap_to_config_yaml(&m, &y) == 0, "yaml");
	char want[128];
	for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++) {
		snprintf(want, sizeof want, "\n'%s':\n  desc: null\n  value: \"True\"\n",
		         reserved[i]);
		CHECK(strstr(y.data, want), "%s quoted:\n%s", reserved[i], y.data);
	}
	for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
		snprintf(want, sizeof want, "\n%s:\n  desc: null\n  value: 1\n", plain[i]);
		CHECK(strstr(y.data, want), "%s plain:\n%s", plain[i], y.data);
	}
	CHECK(strstr(y.data, "\n\"~\":\n  desc: null\n  value: \"~\"\n") &&
	          strstr(y.data, "\n\"1e3\":\n"),
	      "~ and a number quoted:\n%s", y.data);
	/* Characters YAML refuses raw, or folds inside quotes, go escaped. */
	vmap_fini(&m);
	vmap_init(&m);
	struct vvalue odd = {.kind = V_STRING,
	                     .u.s =
	                         "a\x7f\xc2\x80\xc2\x85\xc2\xa0\xe2\x80\xa8\xe2\x80\xa9\xef\xbf\xbe"
	                         "\xef\xbf\xbd\t\"\\\x01\xf0\x9f\x98\x80"};
	CHECK(vmap_set(&m, "k\x7f", &odd) == 0, "set odd");
	buf_reset(&y);
	CHECK(vmap_to_config_yaml(&m, &y) == 0, "yaml");
	CHECK(strstr(y.data,
	             "\n\"k\\u007f\":\n  desc: null\n  value: \"a\\u007f\\u0080\\u0085\xc2\xa0"
	             "\\u2028\\u2029\\ufffe\xef\xbf\xbd\\t\\\"\\\\\\u0001\xf0\x9f\x98\x80\"\n"),
	      "escaped:\n%s", y.data);
	buf_fini(&y);
	vmap_fini(&m);
}

/* A run started without a name gets one derived from its id alone: the local
 * and wandb sinks, each applying the log, must agree on it. */
static void test_default_name(void)
{
	char a[128], b[128];
	run_default_name("abc123", a, sizeof a);
	run_default_name("abc123", b, sizeof b);
	CHECK(strcmp(a, b) == 0, "same id, same name: %s %s", a, b);
	int dashes = 0;
	for (const char *p = a; *p; p++)
		dashes += *p == '-';
	const char *n = strrchr(a, '-');
	CHECK(dashes == 2 && n && atoi(n + 1) >= 1 && atoi(n + 1) <= 999, "shape: %s", a);
	/* Different ids spread over the words. */
	int differ = 0;
	for (int i = 0; i < 20; i++) {
		char id[16];
		snprintf(id, sizeof id, "run%d", i);
		run_default_name(id, b, sizeof b);
		differ += strcmp(a, b) != 0;
	}
	CHECK(differ >= 19, "names vary: %d", differ);
	struct run *r = start_run("abc123");
	CHECK(r && strcmp(r->display_name, a) == 0, "run_new uses it: %s",
	      r ? r->display_name : "");
	run_free(r);
	/* A given name wins. */
	Trackd__V1__RunStart s = TRACKD__V1__RUN_START__INIT;
	s.display_name = "mine";
	struct record_origin o = origin(1, 1);
	CHECK(run_new("abc123", &s, &o, &r) == 0 && strcmp(r->display_name, "mine") == 0, "given");
	run_free(r);
	/* Cut to the buffer, NUL-terminated. */
	char small[5];
	run_default_name("abc123", small, sizeof small);
	CHECK(strlen(small) == 4 && strncmp(small, a, 4) == 0, "cut: %s", small);
}

/* on_row: each committed row, with its number, step, times and values, as
 * its line was written (the local sink's series index is fed from it). */
struct seen_row {
	uint64_t index;
	int64_t step;
	double runtime, loss;
	bool has_step_value;
};
static struct seen_row seen[8];
static size_t n_seen;

static int record_row(void *arg, const struct run_row *row)
{
	(void)arg;
	if (n_seen < 8) {
		struct vvalue *v = vmap_get(row->values, "loss");
		seen[n_seen] = (struct seen_row){.index = row->index,
		                                 .step = row->step,
		                                 .runtime = row->runtime,
		                                 .loss = v && v->kind == V_DOUBLE ? v->u.d : NAN,
		                                 .has_step_value = vmap_get(row->values, "_step")};
	}
	n_seen++;
	return 0;
}

static void test_on_row(void)
{
	struct run *r = start_run("rows");
	reset_fx();
	fx.on_row = record_row;
	n_seen = 0;
	log_row(r, "loss", 1.5, -1, -1, 1); /* row 0, step 0 */
	log_row(r, "loss", 2.5, 5, 0, 2);   /* pending at step 5 */
	log_row(r, "loss", 3.5, 5, -1, 3);  /* row 1, step 5 */
	log_row(r, "loss", 9, 2, -1, 4);    /* a step back: dropped, no row */
	CHECK_EQ(n_seen, 2);
	CHECK(seen[0].index == 0 && seen[0].step == 0 && seen[0].loss == 1.5 &&
	      seen[0].runtime == 1 && seen[0].has_step_value);
	CHECK(seen[1].index == 1 && seen[1].step == 5 && seen[1].loss == 3.5 &&
	      seen[1].runtime == 3);
	CHECK_EQ(r->history_lines, 2);
	run_free(r);
	reset_fx();
}

/* A SystemStats record of the agent (pid 0) at start + t seconds. */
static void apply_stats(struct run *r, struct buf *events, double t, double cpu)
{
	Trackd__V1__Value v = TRACKD__V1__VALUE__INIT;
	v.kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
	v.double_value = cpu;
	Trackd__V1__Value inf = v;
	inf.double_value = INFINITY;
	Trackd__V1__Item item = TRACKD__V1__ITEM__INIT, bad = TRACKD__V1__ITEM__INIT;
	item.key = (char *)"cpu";
	item.value = &v;
	bad.key = (char *)"gpu.0.temp";
	bad.value = &inf;
	Trackd__V1__Item *items[2] = {&item, &bad};
	Trackd__V1__SystemStats st = TRACKD__V1__SYSTEM_STATS__INIT;
	st.items = items;
	st.n_items = 2;
	st.has_time_us = true;
	st.time_us = 1700000000000000 + (int64_t)(t * 1e6);
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_STATS;
	rec.stats = &st;
	struct record_origin o = origin(0, r->last_index + 1);
	reset_fx();
	fx.events = events;
	run_apply(r, &rec, &o, &fx);
}

static void test_system_stats(void)
{
	struct buf ev;
	buf_init(&ev, 1 << 20);
	struct run *r = start_run("stats1");
	apply_stats(r, &ev, 15, 12.5);
	CHECK_EQ(r->events_lines, 1);
	ev.data[ev.len] = 0;
	CHECK_STR_EQ(ev.data, "{\"_wandb\":true,\"_timestamp\":1700000015.0,\"_runtime\":15.0,"
	                      "\"system.cpu\":12.5}\n");
	CHECK_EQ(r->n_attached, 1, "the agent's record attaches no process");
	CHECK_EQ(hist.len, 0, "no history row");
	/* An ended run takes the samples taken before its end, not after. */
	reset_fx();
	exit_run(r, 100, 0, TRACKD__V1__EXIT_REASON__EXIT_FINISHED);
	CHECK(r->state == RUN_FINISHED);
	int64_t end_s = (r->end_time_us - 1700000000000000) / 1000000;
	buf_reset(&ev);
	apply_stats(r, &ev, (double)end_s + 1, 1);
	CHECK_EQ(ev.len, 0, "after the end: dropped");
	CHECK_EQ(r->events_lines, 1);
	apply_stats(r, &ev, (double)end_s - 1, 1);
	CHECK_EQ(r->events_lines, 2, "before the end, applied after it: kept");
	run_free(r);
	buf_fini(&ev);
}

/* The sampler's counter bases: the last set a sample carried, kept through a
 * snapshot (a restarted agent continues from them). */
static void test_counter_bases(void)
{
	struct run *r = start_run("bases1");
	Trackd__V1__CounterBase b[2] = {TRACKD__V1__COUNTER_BASE__INIT,
	                                TRACKD__V1__COUNTER_BASE__INIT};
	b[0].key = "network.sent";
	b[0].has_value = true;
	b[0].value = 1u << 30;
	b[1].key = "disk.sda.in";
	b[1].has_value = true;
	b[1].value = 42;
	Trackd__V1__CounterBase *ptrs[2] = {&b[0], &b[1]};
	Trackd__V1__SystemStats st = TRACKD__V1__SYSTEM_STATS__INIT;
	st.boot_id = "boot-1";
	st.bases = ptrs;
	st.n_bases = 2;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_STATS;
	rec.stats = &st;
	struct record_origin o = origin(0, r->last_index + 1);
	reset_fx(); /* no events buffer (the wandb sink's case): the bases still count */
	run_apply(r, &rec, &o, &fx);
	CHECK_EQ(r->n_counter_bases, 2);
	st.n_bases = 0; /* a sample without bases keeps them */
	o.index++;
	run_apply(r, &rec, &o, &fx);
	CHECK_EQ(r->n_counter_bases, 2);
	Trackd__V1__RunSnapshot *s = run_to_snapshot(r);
	size_t len = trackd__v1__run_snapshot__get_packed_size(s);
	uint8_t *buf = malloc(len);
	trackd__v1__run_snapshot__pack(s, buf);
	run_snapshot_free(s);
	Trackd__V1__RunSnapshot *u = trackd__v1__run_snapshot__unpack(NULL, len, buf);
	struct run *r2 = NULL;
	CHECK(u && run_from_snapshot(u, &r2) == 0);
	if (r2) {
		CHECK_STR_EQ(r2->counters_boot_id, "boot-1");
		CHECK_EQ(r2->n_counter_bases, 2);
		CHECK_STR_EQ(r2->counter_bases[0].key, "network.sent");
		CHECK_EQ(r2->counter_bases[0].value, 1u << 30);
		CHECK_EQ(r2->counter_bases[1].value, 42);
	}
	trackd__v1__run_snapshot__free_unpacked(u, NULL);
	free(buf);
	run_free(r2);
	run_free(r);
}

/* trackctl import: a row keeps its own _timestamp and _runtime (also through
 * a snapshot while pending), the run is marked imported, and the importer's
 * crash exit ends it at the time it gives. */
static void test_imported(void)
{
	Trackd__V1__RunStart s = TRACKD__V1__RUN_START__INIT;
	s.has_start_time_us = s.has_imported = true;
	s.start_time_us = 1700000000000000;
	s.imported = true;
	struct record_origin o = origin(100, 1);
	struct run *r;
	CHECK_EQ(run_new("imp1", &s, &o, &r), 0);
	CHECK(r->imported);
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = "imp1";
	rec.body_case = TRACKD__V1__RECORD__BODY_START;
	rec.start = &s;
	reset_fx();
	run_apply(r, &rec, &o, &fx);

	Trackd__V1__HistoryRow h = TRACKD__V1__HISTORY_ROW__INIT;
	h.has_step = h.has_commit = h.has_timestamp = h.has_runtime = true;
	h.step = 4;
	h.commit = false;
	h.timestamp = 1700000123.125;
	h.runtime = 7.75; /* not timestamp - start: kept as given */
	rec.body_case = TRACKD__V1__RECORD__BODY_HISTORY;
	rec.history = &h;
	o.index = 2;
	reset_fx();
	run_apply(r, &rec, &o, &fx);
	/* Pending across a snapshot. */
	Trackd__V1__RunSnapshot *snap = run_to_snapshot(r);
	struct run *back = NULL;
	CHECK(snap && run_from_snapshot(snap, &back) == 0);
	run_snapshot_free(snap);
	if (back) {
		CHECK(back->imported && back->has_pending_timestamp && back->has_pending_runtime);
		Trackd__V1__HistoryRow c = TRACKD__V1__HISTORY_ROW__INIT;
		c.has_commit = true;
		c.commit = true;
		rec.history = &c;
		o.index = 3;
		reset_fx();
		run_apply(back, &rec, &o, &fx);
		hist.data[hist.len] = 0;
		CHECK_STR_EQ(hist.data,
		             "{\"_step\":4,\"_runtime\":7.75,\"_timestamp\":1700000123.125}\n");

		Trackd__V1__RunExit e = TRACKD__V1__RUN_EXIT__INIT;
		e.has_reason = e.has_pid = e.has_client_time_us = true;
		e.reason = TRACKD__V1__EXIT_REASON__EXIT_CRASHED;
		e.pid = 100;
		e.client_time_us = 1700000200000000;
		rec.body_case = TRACKD__V1__RECORD__BODY_EXIT;
		rec.exit = &e;
		o.index = 4;
		reset_fx();
		run_apply(back, &rec, &o, &fx);
		CHECK(back->state == RUN_CRASHED);
		CHECK_EQ(back->end_time_us, 1700000200000000);
		run_free(back);
	}
	run_free(r);
}

/* run_record_files: one rule for which files a record names. */
struct seen_files {
	char names[8][64];
	bool valid[8];
	char kinds[8][8];
	int n;
};

static void seen_file(void *arg, const char *name, const uint8_t *digest, const char *kind)
{
	struct seen_files *s = arg;
	if (s->n < 8) {
		snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
		s->valid[s->n] = digest != NULL;
		snprintf(s->kinds[s->n], sizeof s->kinds[0], "%s", kind);
	}
	s->n++;
}

static Trackd__V1__Value str_value(const char *s)
{
	Trackd__V1__Value v = TRACKD__V1__VALUE__INIT;
	v.kind_case = TRACKD__V1__VALUE__KIND_STRING_VALUE;
	v.string_value = (char *)s;
	return v;
}

static void test_record_files(void)
{
	static const char hex[] =
	    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	/* {"_type": "image-file", "path": P, "sha256": hex} */
	Trackd__V1__Value t_img = str_value("image-file"), t_tab = str_value("table-file"),
	                  p_img = str_value("media/images/a_0_x.png"),
	                  p_tab = str_value("media/table/t_0_x.table.json"),
	                  p_out = str_value("elsewhere/x.png"), sha = str_value(hex),
	                  bad_sha = str_value("zz");
	Trackd__V1__Item it_t = TRACKD__V1__ITEM__INIT, it_p = TRACKD__V1__ITEM__INIT,
	                 it_s = TRACKD__V1__ITEM__INIT;
	it_t.key = "_type";
	it_t.value = &t_img;
	it_p.key = "path";
	it_p.value = &p_img;
	it_s.key = "sha256";
	it_s.value = &sha;
	Trackd__V1__Item *img_items[] = {&it_t, &it_p, &it_s};
	Trackd__V1__MapValue img = TRACKD__V1__MAP_VALUE__INIT;
	img.n_items = 3;
	img.items = img_items;
	Trackd__V1__Value v_img = TRACKD__V1__VALUE__INIT;
	v_img.kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
	v_img.map_value = &img;

	/* A table with a bad digest, a media object outside media/, both in a list
	 * nested in a map. */
	Trackd__V1__Item tt = TRACKD__V1__ITEM__INIT, tp = TRACKD__V1__ITEM__INIT,
	                 ts = TRACKD__V1__ITEM__INIT;
	tt.key = "_type";
	tt.value = &t_tab;
	tp.key = "path";
	tp.value = &p_tab;
	ts.key = "sha256";
	ts.value = &bad_sha;
	Trackd__V1__Item *tab_items[] = {&tt, &tp, &ts};
	Trackd__V1__MapValue tab = TRACKD__V1__MAP_VALUE__INIT;
	tab.n_items = 3;
	tab.items = tab_items;
	Trackd__V1__Item ot = TRACKD__V1__ITEM__INIT, op = TRACKD__V1__ITEM__INIT,
	                 os = TRACKD__V1__ITEM__INIT;
	ot.key = "_type";
	ot.value = &t_img;
	op.key = "path";
	op.value = &p_out;
	os.key = "sha256";
	os.value = &sha;
	Trackd__V1__Item *out_items[] = {&ot, &op, &os};
	Trackd__V1__MapValue outside = TRACKD__V1__MAP_VALUE__INIT;
	outside.n_items = 3;
	outside.items = out_items;
	Trackd__V1__Value v_tab = TRACKD__V1__VALUE__INIT, v_out = TRACKD__V1__VALUE__INIT;
	v_tab.kind_case = v_out.kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
	v_tab.map_value = &tab;
	v_out.map_value = &outside;
	Trackd__V1__Value *elems[] = {&v_tab, &v_out};
	Trackd__V1__ListValue list = TRACKD__V1__LIST_VALUE__INIT;
	list.n_values = 2;
	list.values = elems;
	Trackd__V1__Value v_mlist = TRACKD__V1__VALUE__INIT;
	v_mlist.kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
	v_mlist.list_value = &list;
	Trackd__V1__Item li = TRACKD__V1__ITEM__INIT;
	li.key = "preds";
	li.value = &v_mlist;
	Trackd__V1__Item *outer_items[] = {&li};
	Trackd__V1__MapValue mouter = TRACKD__V1__MAP_VALUE__INIT;
	mouter.n_items = 1;
	mouter.items = outer_items;
	Trackd__V1__Value v_outer = TRACKD__V1__VALUE__INIT;
	v_outer.kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
	v_outer.map_value = &mouter;

	Trackd__V1__Value v_num = TRACKD__V1__VALUE__INIT;
	v_num.kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
	v_num.double_value = 1.5;
	Trackd__V1__Item r1 = TRACKD__V1__ITEM__INIT, r2 = TRACKD__V1__ITEM__INIT,
	                 r3 = TRACKD__V1__ITEM__INIT;
	r1.key = "loss";
	r1.value = &v_num;
	r2.key = "sample";
	r2.value = &v_img;
	r3.key = "eval";
	r3.value = &v_outer;
	Trackd__V1__Item *row_items[] = {&r1, &r2, &r3};
	Trackd__V1__HistoryRow row = TRACKD__V1__HISTORY_ROW__INIT;
	row.n_items = 3;
	row.items = row_items;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = "r";
	rec.body_case = TRACKD__V1__RECORD__BODY_HISTORY;
	rec.history = &row;

	struct seen_files s = {0};
	CHECK_EQ(run_record_files(&rec, seen_file, &s), 2);
	CHECK_EQ(s.n, 2, "the image, and the table nested in a list (not the one outside media/)");
	CHECK_STR_EQ(s.names[0], "media/images/a_0_x.png");
	CHECK(s.valid[0] && strcmp(s.kinds[0], "image") == 0);
	CHECK_STR_EQ(s.names[1], "media/table/t_0_x.table.json");
	CHECK(!s.valid[1], "a bad digest is reported, not trusted");
	CHECK_STR_EQ(s.kinds[1], "table");

	/* SavedFile: a name and 32 bytes; a bad name or digest is reported. */
	uint8_t digest[32] = {1};
	Trackd__V1__SavedFile f = TRACKD__V1__SAVED_FILE__INIT;
	f.name = "ckpt/model.bin";
	f.sha256.data = digest;
	f.sha256.len = 32;
	rec.body_case = TRACKD__V1__RECORD__BODY_FILE;
	rec.file = &f;
	memset(&s, 0, sizeof s);
	CHECK_EQ(run_record_files(&rec, seen_file, &s), 1);
	CHECK(s.valid[0] && strcmp(s.kinds[0], "file") == 0);
	f.name = "media/images/b.png";
	memset(&s, 0, sizeof s);
	run_record_files(&rec, seen_file, &s);
	CHECK_STR_EQ(s.kinds[0], "image", "a list's image saved as a file");
	f.name = "../escape";
	memset(&s, 0, sizeof s);
	run_record_files(&rec, seen_file, &s);
	CHECK(!s.valid[0], "a name that leaves files/ is reported invalid");
	f.name = "ok.bin";
	f.sha256.len = 31;
	memset(&s, 0, sizeof s);
	run_record_files(&rec, seen_file, &s);
	CHECK(!s.valid[0]);
	/* Other records name no file. */
	rec.body_case = TRACKD__V1__RECORD__BODY__NOT_SET;
	CHECK_EQ(run_record_files(&rec, seen_file, &s), 0);
}

/* wandb-metadata.json's sources: kept from the records, through a snapshot, and
 * merged with the client's process facts winning and its remote's credentials
 * stripped. */
static void test_metadata_sources(void)
{
	struct run *r = start_run("meta1");
	Trackd__V1__RunMetadata md = TRACKD__V1__RUN_METADATA__INIT;
	md.json = "{\"host\":\"gpu7\",\"program\":\"/proc/says.py\",\"cpuCount\":8}";
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = r->id;
	rec.body_case = TRACKD__V1__RECORD__BODY_METADATA;
	rec.metadata = &md;
	struct record_origin o = origin(0, r->last_index + 1);
	reset_fx();
	CHECK(run_apply(r, &rec, &o, &fx) == 0 && fx.metadata_changed);
	char *args[] = {"--lr", "0.1"};
	Trackd__V1__RunEnvironment env = TRACKD__V1__RUN_ENVIRONMENT__INIT;
	env.program = "train.py";
	env.args = args;
	env.n_args = 2;
	env.git_remote = "https://user:secret@example.com/repo.git";
	env.has_git_dirty = true;
	env.git_dirty = true;
	rec.body_case = TRACKD__V1__RECORD__BODY_ENVIRONMENT;
	rec.environment = &env;
	o.index++;
	reset_fx();
	CHECK(run_apply(r, &rec, &o, &fx) == 0 && fx.metadata_changed);
	r = snapshot_copy(r);
	CHECK(r != NULL);
	if (!r)
		return;
	struct buf b;
	buf_init(&b, 1 << 20);
	CHECK(run_metadata_merge(r->agent_metadata, r->client_environment, &b) == 0);
	CHECK(b.len && b.data[b.len - 1] == '\n', "one line");
	CHECK(strstr(b.data, "\"host\":\"gpu7\"") && strstr(b.data, "\"cpuCount\":8"),
	      "the agent's machine facts: %s", b.data);
	CHECK(strstr(b.data, "\"program\":\"train.py\"") && !strstr(b.data, "/proc/says.py"),
	      "the client's program wins: %s", b.data);
	CHECK(strstr(b.data, "\"args\":[\"--lr\",\"0.1\"]") && strstr(b.data, "\"dirty\":true"),
	      "args and git: %s", b.data);
	CHECK(!strstr(b.data, "secret") && strstr(b.data, "example.com/repo.git"),
	      "credentials stripped: %s", b.data);
	/* A source that is not a JSON object counts as absent. */
	b.len = 0;
	CHECK(run_metadata_merge("[1]", NULL, &b) == 0 && strcmp(b.data, "{}\n") == 0, "%s",
	      b.data);
	buf_fini(&b);
	run_free(r);
}

int main(void)
{
	buf_init(&hist, 1 << 20);
	buf_init(&cons, 1 << 20);
	test_steps_and_commits();
	test_summary_modes();
	test_console();
	test_states();
	test_late_exit();
	test_snapshot_round_trip();
	test_lists_and_null();
	test_config_yaml_reserved();
	test_default_name();
	test_on_row();
	test_system_stats();
	test_counter_bases();
	test_imported();
	test_update();
	test_record_files();
	test_metadata_sources();
	buf_fini(&hist);
	buf_fini(&cons);
	return CHECK_SUMMARY("run_test");
}
