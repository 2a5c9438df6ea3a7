/*
 * render_test — trackctl's output from canned agent replies, byte for byte:
 * `show` (identity, config, the W&B footer fed from history rows), the `runs`
 * table, CSV cells, and the reading of a history row. Times print in UTC here
 * (TZ=UTC).
 *
 * The replies are typed messages (RunInfo, UploadInfo, RunsReply). To keep the
 * canned data readable they are written as JSON, the shape `--json` gives them,
 * and built into messages by typed() below (json-c reads the text; a test aid,
 * not what trackctl does). History rows are JSON text, as the agent sends them.
 */
#include "render.h"
#include "trackd/v1/pb_json.h"

#include "check.h"
#include "errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void expect_text(const char *name, const char *got, const char *want)
{
	CHECK(got && strcmp(got, want) == 0,
	      "golden '%s' differs\n--- want ---\n%s--- got ---\n%s--- end ---", name, want,
	      got ? got : "(null)");
}

static json_object *parse(const char *text)
{
	struct json_tokener *tok = json_tokener_new_ex(RENDER_ROW_MAX_DEPTH);
	json_object *v = NULL;
	if (!tok || render_row_parse(tok, text, strlen(text), &v) != 0 || !v) {
		fprintf(stderr, "canned JSON does not parse: %s\n", text);
		exit(1);
	}
	json_tokener_free(tok);
	return v;
}

static void *must(void *p)
{
	if (!p)
		exit(1);
	return p;
}

/* ---- typed messages from canned JSON ------------------------------------------ */

static Trackd__V1__MapValue *map_of(json_object *o);

static Trackd__V1__Value *value_of(json_object *j)
{
	Trackd__V1__Value *v = must(malloc(sizeof *v));
	trackd__v1__value__init(v);
	switch (json_object_get_type(j)) {
	case json_type_null:
		v->kind_case = TRACKD__V1__VALUE__KIND_NULL_VALUE;
		v->null_value = must(malloc(sizeof *v->null_value));
		trackd__v1__null_value__init(v->null_value);
		break;
	case json_type_boolean:
		v->kind_case = TRACKD__V1__VALUE__KIND_BOOL_VALUE;
		v->bool_value = json_object_get_boolean(j);
		break;
	case json_type_int:
		v->kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
		v->int_value = json_object_get_int64(j);
		break;
	case json_type_double:
		v->kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
		v->double_value = json_object_get_double(j);
		break;
	case json_type_string:
		v->kind_case = TRACKD__V1__VALUE__KIND_STRING_VALUE;
		v->string_value = must(strdup(json_object_get_string(j)));
		break;
	case json_type_object:
		v->kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
		v->map_value = map_of(j);
		break;
	case json_type_array: {
		v->kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
		Trackd__V1__ListValue *l = v->list_value = must(malloc(sizeof *l));
		trackd__v1__list_value__init(l);
		l->n_values = json_object_array_length(j);
		l->values = must(calloc(l->n_values + 1, sizeof *l->values));
		for (size_t i = 0; i < l->n_values; i++)
			l->values[i] = value_of(json_object_array_get_idx(j, i));
		break;
	}
	}
	return v;
}

static Trackd__V1__MapValue *map_of(json_object *o)
{
	Trackd__V1__MapValue *m = must(malloc(sizeof *m));
	trackd__v1__map_value__init(m);
	m->items = must(calloc((size_t)json_object_object_length(o) + 1, sizeof *m->items));
	json_object_object_foreach(o, key, val)
	{
		Trackd__V1__Item *it = must(malloc(sizeof *it));
		trackd__v1__item__init(it);
		it->key = must(strdup(key));
		it->value = value_of(val);
		m->items[m->n_items++] = it;
	}
	return m;
}

/* The fields of `msg` named in the JSON object `o` (unknown names and null are
 * left unset), as protobuf-c's descriptor places them. Only the field types the
 * replies under test use. */
static void fill(ProtobufCMessage *msg, json_object *o)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	char *base = (char *)msg;
	json_object_object_foreach(o, key, val)
	{
		const ProtobufCFieldDescriptor *f =
		    protobuf_c_message_descriptor_get_field_by_name(d, key);
		if (!f || !val)
			continue;
		void *p = base + f->offset;
		protobuf_c_boolean *has = (protobuf_c_boolean *)(base + f->quantifier_offset);
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = json_object_array_length(val);
			*(size_t *)has = n;
			if (f->type == PROTOBUF_C_TYPE_INT32) {
				int32_t *a = must(calloc(n + 1, sizeof *a));
				for (size_t i = 0; i < n; i++)
					a[i] =
					    json_object_get_int(json_object_array_get_idx(val, i));
				*(int32_t **)p = a;
			} else if (f->type == PROTOBUF_C_TYPE_STRING) {
				char **a = must(calloc(n + 1, sizeof *a));
				for (size_t i = 0; i < n; i++)
					a[i] = must(strdup(json_object_get_string(
					    json_object_array_get_idx(val, i))));
				*(char ***)p = a;
			} else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
				ProtobufCMessage **a = must(calloc(n + 1, sizeof *a));
				for (size_t i = 0; i < n; i++) {
					const ProtobufCMessageDescriptor *sd = f->descriptor;
					a[i] = must(malloc(sd->sizeof_message));
					protobuf_c_message_init(sd, a[i]);
					fill(a[i], json_object_array_get_idx(val, i));
				}
				*(ProtobufCMessage ***)p = a;
			}
			continue;
		}
		switch (f->type) {
		case PROTOBUF_C_TYPE_STRING:
			*(char **)p = must(strdup(json_object_get_string(val)));
			break;
		case PROTOBUF_C_TYPE_DOUBLE:
			*(double *)p = json_object_get_double(val);
			*has = 1;
			break;
		case PROTOBUF_C_TYPE_INT32:
		case PROTOBUF_C_TYPE_UINT32:
			*(int32_t *)p = json_object_get_int(val);
			*has = 1;
			break;
		case PROTOBUF_C_TYPE_UINT64:
			*(uint64_t *)p = (uint64_t)json_object_get_int64(val);
			*has = 1;
			break;
		case PROTOBUF_C_TYPE_MESSAGE: *(Trackd__V1__MapValue **)p = map_of(val); break;
		default: fprintf(stderr, "fill: field %s not handled\n", key); exit(1);
		}
	}
}

/* A message of descriptor `d` from canned JSON; free it with
 * protobuf_c_message_free_unpacked(m, NULL) (all of it is malloc'd). */
static void *typed(const ProtobufCMessageDescriptor *d, const char *json)
{
	ProtobufCMessage *m = must(malloc(d->sizeof_message));
	protobuf_c_message_init(d, m);
	json_object *o = parse(json);
	fill(m, o);
	json_object_put(o);
	return m;
}

static Trackd__V1__RunInfo *run_info(const char *json)
{
	return typed(&trackd__v1__run_info__descriptor, json);
}

static void free_msg(void *m)
{
	protobuf_c_message_free_unpacked(m, NULL);
}

/* Feeds history rows (JSON text, one row each) to a footer series, as `show`
 * does with each page: row i is line first_line + i. */
static void feed(footer_series *s, const char *const *rows, size_t n, uint64_t first_line)
{
	struct json_tokener *tok = must(json_tokener_new_ex(RENDER_ROW_MAX_DEPTH));
	for (size_t i = 0; i < n; i++) {
		json_object *row;
		CHECK_EQ(render_row_parse(tok, rows[i], strlen(rows[i]), &row), 0);
		CHECK_EQ(render_feed_row(s, row, first_line + i), 0);
		json_object_put(row);
	}
	json_tokener_free(tok);
}

/* A memory FILE and its text. */
struct capture {
	char *text;
	size_t len;
	FILE *f;
};

static void capture_open(struct capture *c)
{
	c->text = NULL;
	c->len = 0;
	c->f = open_memstream(&c->text, &c->len);
	if (!c->f)
		exit(1);
}

static const char *capture_close(struct capture *c)
{
	fclose(c->f);
	return c->text;
}

/* ---- show ------------------------------------------------------------------ */

static const char finished_run[] =
    "{\"id\":\"abc12345\",\"entity\":\"team\",\"project\":\"vision\","
    "\"path\":\"team/vision/abc12345\",\"display_name\":\"bright-fox-3\","
    "\"state\":\"finished\",\"start_time\":1764158400.25,\"end_time\":1764158465.5,"
    "\"exit_code\":0,\"host\":\"gpu-01\",\"pids\":[4242],\"uid\":1000,\"notes\":\"\","
    "\"tags\":[\"baseline\",\"resnet\"],\"group\":\"\",\"job_type\":\"train\","
    "\"mode\":\"online\",\"dir\":\"/var/lib/trackd/runs/run-20251126_120000-abc12345\","
    "\"history_lines\":10,"
    "\"summary\":{\"accuracy\":0.958491234,\"loss\":0.105321,\"epoch\":9,\"best\":true,"
    "\"_step\":9,\"_runtime\":65.25,\"_timestamp\":1764158465.5,"
    "\"model\":\"resnet-50-with-a-very-long-name\",\"val\":{\"loss\":0.2},"
    "\"betas\":[0.9,null],\"nothing\":null},"
    "\"config\":{\"epochs\":10,\"learning_rate\":0.01,"
    "\"optimizer\":{\"name\":\"adam\",\"betas\":[0.9, 0.999]},\"arch\":\"resnet\"}}";

/* The history of that run in two pages, rows as the agent sends them: numbers,
 * a NaN, a bool, a string, nested values, lists, null and a W&B histogram
 * (none but the numbers are drawn). */
static const char *const page1[] = {
    "{\"accuracy\":0.3,\"loss\":2.0,\"epoch\":0,\"phase\":\"warmup\",\"_step\":0,"
    "\"_runtime\":6.5,\"_timestamp\":1764158406.75}",
    "{\"accuracy\":0.48,\"loss\":1.3,\"epoch\":1,\"grad_norm\":NaN,\"_step\":1}",
    "{\"accuracy\":0.67,\"loss\":0.75,\"epoch\":2,\"best\":true,\"vec\":[1,2,[3]],"
    "\"none\":null,\"hist\":{\"_type\":\"histogram\",\"values\":[1,2],\"bins\":[0,1,2]},"
    "\"_step\":2}",
    "{\"accuracy\":0.75,\"loss\":0.5,\"epoch\":3,\"val\":{\"loss\":0.4},\"_step\":3}",
    "{\"accuracy\":0.77,\"loss\":0.45,\"epoch\":4,\"grad_norm\":2.5,\"_step\":4}",
};
static const char *const page2[] = {
    "{\"accuracy\":0.85,\"loss\":0.2,\"epoch\":5,\"grad_norm\":Infinity,\"_step\":5}",
    "{\"accuracy\":0.87,\"loss\":0.18,\"epoch\":6,\"grad_norm\":1.5,\"_step\":6}",
    "{\"accuracy\":0.93,\"loss\":0.15,\"epoch\":7,\"_step\":7}",
    "{\"accuracy\":0.95,\"loss\":0.12,\"epoch\":8,\"grad_norm\":0.5,\"_step\":8}",
    "{\"accuracy\":0.958491234,\"loss\":0.105321,\"epoch\":9,\"_step\":9}",
};

static void test_show_finished(void)
{
	Trackd__V1__RunInfo *info = run_info(finished_run);
	footer_series *s = NULL;
	CHECK(footer_series_new(render_footer_seed("team/vision/abc12345"), 0, &s) == 0);
	feed(s, page1, 5, 0);
	feed(s, page2, 5, 5);
	struct capture c;
	capture_open(&c);
	CHECK(render_show(c.f, info, NULL, s, 1764160000.0) == 0);
	expect_text("show finished", capture_close(&c),
	            "Run abc12345 (bright-fox-3)\n"
	            "  path:      team/vision/abc12345\n"
	            "  state:     finished (exit code 0)\n"
	            "  started:   2025-11-26 12:00:00\n"
	            "  ended:     2025-11-26 12:01:05 (ran 1m 05s)\n"
	            "  host:      gpu-01 (pid 4242), uid 1000\n"
	            "  mode:      online\n"
	            "  job type:  train\n"
	            "  tags:      baseline, resnet\n"
	            "  rows:      10\n"
	            "  dir:       /var/lib/trackd/runs/run-20251126_120000-abc12345\n"
	            "\n"
	            "Config:\n"
	            "  epochs: 10\n"
	            "  learning_rate: 0.01\n"
	            "  optimizer: {\"name\":\"adam\",\"betas\":[0.9,0.999]}\n"
	            "  arch: resnet\n"
	            "\n"
	            "Run history:\n"
	            " accuracy ▁▃▅▆▆▇▇███\n"
	            "    epoch ▁▂▃▃▄▅▆▆▇█\n"
	            "grad_norm  █ ▅▁\n"
	            "     loss █▅▃▂▂▁▁▁▁▁\n"
	            "\n"
	            "Run summary:\n"
	            "accuracy 0.95849\n"
	            "    best True\n"
	            "   epoch 9\n"
	            "    loss 0.10532\n"
	            "   model resnet-50-with-a-ver...\n"
	            "\n"
	            "Find the run's files at: /var/lib/trackd/runs/run-20251126_120000-abc12345\n"
	            "Export its rows with: trackctl history team/vision/abc12345\n");
	free(c.text);
	footer_series_free(s);
	free_msg(info);
}

/* A running run: its age, no end, the tail hint, no history yet, and run data
 * that would move a terminal's cursor. */
static void test_show_running(void)
{
	Trackd__V1__RunInfo *info =
	    run_info("{\"id\":\"x9y8z7w6\",\"entity\":\"\",\"project\":\"uncategorized\","
	             "\"path\":\"uncategorized/x9y8z7w6\",\"display_name\":\"evil\\u001b[2Jname\","
	             "\"state\":\"running\",\"start_time\":1764158400.0,\"end_time\":null,"
	             "\"exit_code\":null,\"host\":\"laptop\",\"pids\":[10,11],\"uid\":0,"
	             "\"notes\":\"line one\\nline two\",\"tags\":[],\"group\":\"sweep-1\","
	             "\"job_type\":\"\",\"mode\":\"offline\",\"dir\":\"\",\"history_lines\":0,"
	             "\"summary\":{},\"config\":{}}");
	struct capture c;
	capture_open(&c);
	CHECK(render_show(c.f, info, NULL, NULL, 1764158400.0 + 3725) == 0);
	expect_text("show running", capture_close(&c),
	            "Run x9y8z7w6 (evil?[2Jname)\n"
	            "  path:      uncategorized/x9y8z7w6\n"
	            "  state:     running\n"
	            "  started:   2025-11-26 12:00:00 (running for 1h 02m 05s)\n"
	            "  host:      laptop (pids 10, 11), uid 0\n"
	            "  mode:      offline\n"
	            "  group:     sweep-1\n"
	            "  notes:     line one?line two\n"
	            "  rows:      0\n"
	            "\n"
	            "Config: (none)\n"
	            "\n"
	            "Offline run; upload it with: trackctl sync uncategorized/x9y8z7w6\n"
	            "Follow its rows with: trackctl tail uncategorized/x9y8z7w6\n");
	free(c.text);
	free_msg(info);
}

/* A failed run with few fields: what is missing is left out, not invented. */
static void test_show_sparse(void)
{
	Trackd__V1__RunInfo *info =
	    run_info("{\"id\":\"f00\",\"state\":\"failed\",\"exit_code\":3,\"pids\":[7],"
	             "\"summary\":{\"loss\":NaN,\"_runtime\":1.0}}");
	struct capture c;
	capture_open(&c);
	CHECK(render_show(c.f, info, NULL, NULL, 0) == 0);
	expect_text("show sparse", capture_close(&c),
	            "Run f00\n"
	            "  state:     failed (exit code 3)\n"
	            "  host:      (pid 7)\n"
	            "\n"
	            "Config: (none)\n"
	            "\n"
	            "Run summary:\n"
	            "loss nan\n");
	free(c.text);
	free_msg(info);
}

/* The W&B lines of `show`: URLs once uploaded, otherwise why not. */
static void expect_upload(const char *run_json, const char *upload_json, const char *want)
{
	Trackd__V1__RunInfo *run = run_info(run_json);
	Trackd__V1__UploadInfo *upload =
	    upload_json ? typed(&trackd__v1__upload_info__descriptor, upload_json) : NULL;
	char lines[RENDER_UPLOAD_MAX][RENDER_UPLOAD_LINE], got[3 * RENDER_UPLOAD_LINE] = "";
	size_t n = render_upload_lines(run, upload, lines);
	CHECK(n <= RENDER_UPLOAD_MAX);
	for (size_t i = 0; i < n; i++) {
		strcat(got, lines[i]);
		strcat(got, "\n");
	}
	expect_text("upload lines", got, want);
	free_msg(run);
	if (upload)
		free_msg(upload);
}

static void test_upload_lines(void)
{
	const char *run = "{\"id\":\"r1\",\"path\":\"e/p/r1\",\"display_name\":\"calm-sky-7\","
	                  "\"mode\":\"online\"}";
	expect_upload(
	    run,
	    "{\"sink\":\"wandb\",\"state\":\"done\",\"run_url\":\"https://wandb.ai/e/p/runs/r1\","
	    "\"project_url\":\"https://wandb.ai/e/p\",\"last_error\":\"\"}",
	    "View run calm-sky-7 at: https://wandb.ai/e/p/runs/r1\n"
	    "View project at: https://wandb.ai/e/p\n");
	expect_upload(run, "{\"sink\":\"none\",\"state\":\"disabled\"}",
	              "W&B: not uploaded: no wandb sink configured (sinks.wandb)\n");
	expect_upload(run, "{\"sink\":\"wandb\",\"state\":\"pending\",\"run_url\":\"\"}",
	              "W&B: upload pending: the backend has not acknowledged the run yet\n");
	expect_upload(run,
	              "{\"sink\":\"wandb\",\"state\":\"retrying\",\"run_url\":\"\","
	              "\"last_error\":\"HTTP 503\\n\"}",
	              "W&B: upload pending: the backend has not acknowledged the run yet; last "
	              "error: HTTP 503?\n");
	expect_upload(run,
	              "{\"sink\":\"wandb\",\"state\":\"parked\",\"run_url\":\"\","
	              "\"last_error\":\"HTTP 404\"}",
	              "W&B: upload parked: HTTP 404; retry with: trackctl retry r1\n");
	/* Parked after the first UpsertBucket: the URLs are known, and why it stopped. */
	expect_upload(run,
	              "{\"state\":\"parked\",\"run_url\":\"http://h/e/p/runs/r1\","
	              "\"project_url\":\"http://h/e/p\",\"last_error\":\"HTTP 404\"}",
	              "View run calm-sky-7 at: http://h/e/p/runs/r1\n"
	              "View project at: http://h/e/p\n"
	              "W&B: upload parked: HTTP 404; retry with: trackctl retry r1\n");
	/* Retrying after the URLs are known: the URLs only. */
	expect_upload(run,
	              "{\"state\":\"retrying\",\"run_url\":\"http://h/e/p/runs/r1\","
	              "\"last_error\":\"HTTP 500\"}",
	              "View run calm-sky-7 at: http://h/e/p/runs/r1\n");
	const char *offline = "{\"id\":\"r2\",\"path\":\"e/p/r2\",\"mode\":\"offline\"}";
	expect_upload(offline, "{\"sink\":\"none\",\"state\":\"disabled\"}",
	              "Offline run; upload it with: trackctl sync e/p/r2\n");
	expect_upload(offline, NULL, "Offline run; upload it with: trackctl sync e/p/r2\n");
	expect_upload(run, NULL, "");
}

/* ---- runs ------------------------------------------------------------------ */

static void test_runs_table(void)
{
	Trackd__V1__RunsReply *runs = typed(
	    &trackd__v1__runs_reply__descriptor,
	    "{\"runs\":["
	    "{\"id\":\"abc12345\",\"entity\":\"team\",\"project\":\"vision\","
	    "\"display_name\":\"bright-fox-3\",\"state\":\"finished\","
	    "\"start_time\":1764158400.25,\"history_lines\":10},"
	    "{\"id\":\"x9y8z7w6\",\"entity\":\"\",\"project\":\"uncategorized\","
	    "\"display_name\":\"a-really-long-display-name-that-goes-on\",\"state\":\"running\","
	    "\"start_time\":1764162000,\"history_lines\":123456},"
	    "{\"id\":\"q1\",\"project\":\"p\",\"display_name\":\"t\\tab\",\"state\":\"crashed\"}"
	    "]}");
	struct capture c;
	capture_open(&c);
	render_runs_table(c.f, runs);
	expect_text("runs table", capture_close(&c),
	            "ID        NAME                              PROJECT        STATE     "
	            "STARTED                ROWS\n"
	            "abc12345  bright-fox-3                      team/vision    finished  "
	            "2025-11-26 12:00:00      10\n"
	            "x9y8z7w6  a-really-long-display-name-th...  uncategorized  running   "
	            "2025-11-26 13:00:00  123456\n"
	            "q1        t?ab                              p              crashed   "
	            "-                         -\n");
	free(c.text);
	free_msg(runs);

	runs = typed(&trackd__v1__runs_reply__descriptor, "{\"runs\":[]}");
	capture_open(&c);
	render_runs_table(c.f, runs);
	expect_text("no runs", capture_close(&c), "No runs.\n");
	free(c.text);
	free_msg(runs);
	capture_open(&c);
	render_runs_table(c.f, NULL);
	expect_text("no reply", capture_close(&c), "No runs.\n");
	free(c.text);
}

/* ---- csv ------------------------------------------------------------------- */

static void test_csv(void)
{
	json_object *row = parse("{\"_step\":7,\"loss\":NaN,\"acc\":-Infinity,\"lr\":1e-05,"
	                         "\"note\":\"a, \\\"b\\\"\",\"plain\":\"ok\",\"flag\":false,"
	                         "\"nested\":{ \"a\": [1, 2.50, \"x/\\u0001\"] },\"none\":null,"
	                         "\"pad\":\" x\",\"kept\":2.50,\"big\":1E+300,\"zero\":-0.0,"
	                         "\"nul\":\"a\\u0000b\"}");
	static const char *const keys[] = {"loss", "acc",    "lr",   "note",   "plain",
	                                   "flag", "nested", "none", "absent", "pad",
	                                   "kept", "big",    "zero", "nul"};
	struct buf b;
	buf_init(&b, 1 << 20);
	CHECK_EQ(render_csv_row(&b, row, keys, sizeof keys / sizeof keys[0]), 0);
	CHECK_EQ(buf_putc(&b, '\n'), 0);
	CHECK_EQ(render_csv_field(&b, "multi\nline \"q\"\"", 15), 0);
	static const char want[] =
	    "7,NaN,-Infinity,1e-05,\"a, \"\"b\"\"\",ok,false,"
	    "\"{\"\"a\"\":[1,2.50,\"\"x/\\u0001\"\"]}\",,,\" x\",2.50,1E+300,"
	    "-0.0,a\0b\n\"multi\nline \"\"q\"\"\"\"\"";
	CHECK(b.len == sizeof want - 1 && memcmp(b.data, want, b.len) == 0, "csv row: got %s",
	      b.data);
	json_object_put(row);

	/* A row that is not an object: every cell empty; integers of every size. */
	buf_reset(&b);
	CHECK_EQ(render_csv_row(&b, NULL, keys, 2), 0);
	CHECK_STR_EQ(b.data, ",,");
	row = parse("{\"_step\":-9223372036854775808,\"a\":9223372036854775807,"
	            "\"b\":18446744073709551615,\"c\":-1,\"d\":true}");
	static const char *const ints[] = {"a", "b", "c", "d"};
	buf_reset(&b);
	CHECK_EQ(render_csv_row(&b, row, ints, 4), 0);
	CHECK_STR_EQ(b.data,
	             "-9223372036854775808,9223372036854775807,18446744073709551615,-1,true");
	json_object_put(row);
	buf_fini(&b);
}

/* A row is one JSON value and nothing else (json-c, strict). */
static void test_row_parse(void)
{
	struct json_tokener *tok = must(json_tokener_new_ex(RENDER_ROW_MAX_DEPTH));
	static const struct {
		const char *text;
		int rv;
		json_type type;
	} cases[] = {
	    {"{\"a\":1}", 0, json_type_object},
	    {"{\"a\":1} \r\n", 0, json_type_object},
	    {"", 0, json_type_null},
	    {"null", 0, json_type_null},
	    {"12", 0, json_type_int},
	    {"[1,2]", 0, json_type_array},
	    {"{\"a\":1}x", TRACKD_ECORRUPT, json_type_null},
	    {"{\"a\":1} {}", TRACKD_ECORRUPT, json_type_null},
	    {"{\"a\":1,}", TRACKD_ECORRUPT, json_type_null},
	    {"{\"a\":", TRACKD_ECORRUPT, json_type_null},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_object *v = (json_object *)1;
		int rv = render_row_parse(tok, cases[i].text, strlen(cases[i].text), &v);
		CHECK_EQ(rv, cases[i].rv, "row '%s'", cases[i].text);
		CHECK(json_object_get_type(v) == cases[i].type, "row '%s'", cases[i].text);
		json_object_put(v);
	}
	/* Deeper than the bound: refused, not recursed into. */
	char deep[2 * RENDER_ROW_MAX_DEPTH + 8];
	size_t n = 0;
	for (int i = 0; i <= RENDER_ROW_MAX_DEPTH; i++)
		deep[n++] = '[';
	for (int i = 0; i <= RENDER_ROW_MAX_DEPTH; i++)
		deep[n++] = ']';
	json_object *v;
	CHECK_EQ(render_row_parse(tok, deep, n, &v), TRACKD_ECORRUPT);
	json_tokener_free(tok);
}

/* A `_step` that is not an integer: the row's line number instead. */
static void test_feed_steps(void)
{
	footer_series *s = NULL;
	CHECK(footer_series_new(1, 0, &s) == 0);
	static const char *const rows[] = {
	    "{\"x\":1,\"_step\":3.0}", "{\"x\":2,\"_step\":\"4\"}", "[1]", "null",
	    "{\"x\":true,\"y\":\"s\",\"_z\":5,\"_step\":9223372036854775808}"};
	feed(s, rows, sizeof rows / sizeof rows[0], 0);
	CHECK_EQ(footer_series_keys(s), 1);
	footer_series_free(s);
}

/* Config and summary values as `show` and --json write them. */
static void test_value_json(void)
{
	Trackd__V1__RunInfo *info = run_info(
	    "{\"config\":{\"m\":{\"a\":[1,2.5,NaN,-Infinity,null,true,\"q\\\"\\n\"],\"e\":{}},"
	    "\"d\":1e300,\"f\":0.1,\"i\":-7,\"l\":[]}}");
	static const char *const want[] = {
	    "{\"a\":[1,2.5,NaN,-Infinity,null,true,\"q\\\"\\n\"],\"e\":{}}", "1e+300", "0.1", "-7",
	    "[]"};
	CHECK_EQ(info->config->n_items, 5);
	struct buf b;
	buf_init(&b, 1 << 20);
	for (size_t i = 0; i < info->config->n_items && i < 5; i++) {
		buf_reset(&b);
		CHECK_EQ(pb_json_value(info->config->items[i]->value, &b), 0);
		CHECK(b.data && strcmp(b.data, want[i]) == 0, "value %zu: got %s want %s", i,
		      b.data ? b.data : "(null)", want[i]);
	}
	buf_reset(&b);
	CHECK_EQ(pb_json_value(NULL, &b), 0);
	CHECK_STR_EQ(b.data, "null");
	buf_fini(&b);
	free_msg(info);
}

static void test_times(void)
{
	char buf[64];
	render_duration(0.4, buf, sizeof buf);
	expect_text("0s", buf, "0s");
	render_duration(59.9, buf, sizeof buf);
	expect_text("59s", buf, "59s");
	render_duration(65, buf, sizeof buf);
	expect_text("1m 05s", buf, "1m 05s");
	render_duration(3600 * 26 + 61, buf, sizeof buf);
	expect_text("26h 01m 01s", buf, "26h 01m 01s");
	render_duration(-5, buf, sizeof buf);
	expect_text("negative", buf, "0s");
	render_time(0, buf, sizeof buf);
	expect_text("epoch", buf, "1970-01-01 00:00:00");
	render_time(1e300, buf, sizeof buf);
	expect_text("far future", buf, "-");
}

int main(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
	test_show_finished();
	test_show_running();
	test_show_sparse();
	test_upload_lines();
	test_runs_table();
	test_csv();
	test_row_parse();
	test_feed_steps();
	test_value_json();
	test_times();
	return CHECK_SUMMARY("render_test");
}
