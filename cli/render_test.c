/*
 * render_test — trackctl's output from canned agent replies, byte for byte:
 * `show` (identity, config, the W&B footer fed from history pages), the `runs`
 * table, and CSV cells. Times print in UTC here (TZ=UTC).
 */
#include "render.h"

#include "check.h"

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

static json_doc *parse(const char *text)
{
	json_doc *doc = NULL;
	char err[256];
	if (json_parse(text, strlen(text), 0, &doc, err, sizeof err) != 0) {
		fprintf(stderr, "canned JSON does not parse: %s\n", err);
		exit(1);
	}
	return doc;
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
    "{\"run\":{\"id\":\"abc12345\",\"entity\":\"team\",\"project\":\"vision\","
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
    "\"optimizer\":{\"name\":\"adam\",\"betas\":[0.9, 0.999]},\"arch\":\"resnet\"}}}";

/* The history of that run in two pages, as the agent sends them: numbers,
 * a NaN, a bool, a string, nested values, lists, null and a W&B histogram
 * (none but the numbers are drawn). */
static const char page1[] =
    "{\"run\":\"team/vision/abc12345\",\"from_line\":0,\"next_line\":5,\"total_lines\":10,"
    "\"lines\":["
    "{\"accuracy\":0.3,\"loss\":2.0,\"epoch\":0,\"phase\":\"warmup\",\"_step\":0,"
    "\"_runtime\":6.5,\"_timestamp\":1764158406.75},"
    "{\"accuracy\":0.48,\"loss\":1.3,\"epoch\":1,\"grad_norm\":NaN,\"_step\":1},"
    "{\"accuracy\":0.67,\"loss\":0.75,\"epoch\":2,\"best\":true,\"vec\":[1,2,[3]],"
    "\"none\":null,\"hist\":{\"_type\":\"histogram\",\"values\":[1,2],\"bins\":[0,1,2]},"
    "\"_step\":2},"
    "{\"accuracy\":0.75,\"loss\":0.5,\"epoch\":3,\"val\":{\"loss\":0.4},\"_step\":3},"
    "{\"accuracy\":0.77,\"loss\":0.45,\"epoch\":4,\"grad_norm\":2.5,\"_step\":4}]}";
static const char page2[] =
    "{\"run\":\"team/vision/abc12345\",\"from_line\":5,\"next_line\":10,\"total_lines\":10,"
    "\"lines\":["
    "{\"accuracy\":0.85,\"loss\":0.2,\"epoch\":5,\"grad_norm\":Infinity,\"_step\":5},"
    "{\"accuracy\":0.87,\"loss\":0.18,\"epoch\":6,\"grad_norm\":1.5,\"_step\":6},"
    "{\"accuracy\":0.93,\"loss\":0.15,\"epoch\":7,\"_step\":7},"
    "{\"accuracy\":0.95,\"loss\":0.12,\"epoch\":8,\"grad_norm\":0.5,\"_step\":8},"
    "{\"accuracy\":0.958491234,\"loss\":0.105321,\"epoch\":9,\"_step\":9}]}";

static void test_show_finished(void)
{
	json_doc *run = parse(finished_run);
	const json_value *info = json_get(json_doc_root(run), "run");
	footer_series *s = NULL;
	CHECK(footer_series_new(render_footer_seed("team/vision/abc12345"), 0, &s) == 0);
	const char *pages[] = {page1, page2};
	for (int i = 0; i < 2; i++) {
		json_doc *page = parse(pages[i]);
		CHECK(render_feed_history(s, json_get(json_doc_root(page), "lines"), 5 * i) == 0);
		json_doc_free(page);
	}
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
	json_doc_free(run);
}

/* A running run: its age, no end, the tail hint, no history yet, and run data
 * that would move a terminal's cursor. */
static void test_show_running(void)
{
	json_doc *run =
	    parse("{\"run\":{\"id\":\"x9y8z7w6\",\"entity\":\"\",\"project\":\"uncategorized\","
	          "\"path\":\"uncategorized/x9y8z7w6\",\"display_name\":\"evil\\u001b[2Jname\","
	          "\"state\":\"running\",\"start_time\":1764158400.0,\"end_time\":null,"
	          "\"exit_code\":null,\"host\":\"laptop\",\"pids\":[10,11],\"uid\":0,"
	          "\"notes\":\"line one\\nline two\",\"tags\":[],\"group\":\"sweep-1\","
	          "\"job_type\":\"\",\"mode\":\"offline\",\"dir\":\"\",\"history_lines\":0,"
	          "\"summary\":{},\"config\":{}}}");
	const json_value *info = json_get(json_doc_root(run), "run");
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
	json_doc_free(run);
}

/* A failed run with few fields: what is missing is left out, not invented. */
static void test_show_sparse(void)
{
	json_doc *run =
	    parse("{\"run\":{\"id\":\"f00\",\"state\":\"failed\",\"exit_code\":3,\"pids\":[7],"
	          "\"summary\":{\"loss\":NaN,\"_runtime\":1.0}}}");
	struct capture c;
	capture_open(&c);
	CHECK(render_show(c.f, json_get(json_doc_root(run), "run"), NULL, NULL, 0) == 0);
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
	json_doc_free(run);
}

/* The W&B lines of `show`: URLs once uploaded, otherwise why not. */
static void expect_upload(const char *run_json, const char *upload_json, const char *want)
{
	char doc_text[1024];
	snprintf(doc_text, sizeof doc_text, "{\"run\":%s,\"upload\":%s}", run_json,
	         upload_json ? upload_json : "null");
	json_doc *doc = parse(doc_text);
	const json_value *upload = upload_json ? json_get(json_doc_root(doc), "upload") : NULL;
	char lines[RENDER_UPLOAD_MAX][RENDER_UPLOAD_LINE], got[3 * RENDER_UPLOAD_LINE] = "";
	size_t n = render_upload_lines(json_get(json_doc_root(doc), "run"), upload, lines);
	CHECK(n <= RENDER_UPLOAD_MAX);
	for (size_t i = 0; i < n; i++) {
		strcat(got, lines[i]);
		strcat(got, "\n");
	}
	expect_text("upload lines", got, want);
	json_doc_free(doc);
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
	json_doc *doc = parse(
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
	render_runs_table(c.f, json_doc_root(doc));
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
	json_doc_free(doc);

	doc = parse("{\"runs\":[]}");
	capture_open(&c);
	render_runs_table(c.f, json_doc_root(doc));
	expect_text("no runs", capture_close(&c), "No runs.\n");
	free(c.text);
	json_doc_free(doc);
}

/* ---- csv ------------------------------------------------------------------- */

static void test_csv(void)
{
	json_doc *doc = parse("{\"_step\":7,\"loss\":NaN,\"acc\":-Infinity,\"lr\":1e-05,"
	                      "\"note\":\"a, \\\"b\\\"\",\"plain\":\"ok\",\"flag\":false,"
	                      "\"nested\":{ \"a\": [1, 2] },\"none\":null,\"pad\":\" x\"}");
	static const char *const keys[] = {"loss", "acc",    "lr",   "note",   "plain",
	                                   "flag", "nested", "none", "absent", "pad"};
	struct capture c;
	capture_open(&c);
	render_csv_row(c.f, json_doc_root(doc), keys, sizeof keys / sizeof keys[0]);
	render_csv_field(c.f, "multi\nline", 10);
	expect_text(
	    "csv row", capture_close(&c),
	    "7,NaN,-Infinity,1e-05,\"a, \"\"b\"\"\",ok,false,\"{\"\"a\"\":[1,2]}\",,,\" x\"\n"
	    "\"multi\nline\"");
	free(c.text);
	json_doc_free(doc);
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
	test_times();
	return CHECK_SUMMARY("render_test");
}
