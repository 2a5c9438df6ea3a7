/* ui_http_test.c — the HTTP decisions of trackctl ui (ui_http.h): token,
 * Host names, query string, cookies, API parameters. */
#include "ui_http.h"

#include "run_files.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>

static void test_token(void)
{
	char a[UI_TOKEN_HEX + 1], b[UI_TOKEN_HEX + 1];
	CHECK_EQ(ui_token_new(a), 0);
	CHECK_EQ(ui_token_new(b), 0);
	CHECK_EQ(strlen(a), UI_TOKEN_HEX);
	CHECK(strcmp(a, b) != 0, "two tokens are equal");
	CHECK(strspn(a, "0123456789abcdef") == UI_TOKEN_HEX);
	CHECK(ui_token_equal(a, a));
	char c[UI_TOKEN_HEX + 2];
	memcpy(c, a, sizeof a);
	CHECK(!ui_token_equal(a, NULL));
	CHECK(!ui_token_equal(a, ""));
	c[UI_TOKEN_HEX - 1] ^= 1;
	CHECK(!ui_token_equal(a, c), "last byte differs");
	memcpy(c, a, sizeof a);
	c[UI_TOKEN_HEX - 1] = '\0';
	CHECK(!ui_token_equal(a, c), "shorter");
	memcpy(c, a, sizeof a);
	c[UI_TOKEN_HEX] = 'x';
	c[UI_TOKEN_HEX + 1] = '\0';
	CHECK(!ui_token_equal(a, c), "longer");
}

static void test_hosts(void)
{
	struct ui_hosts h;
	bool lo;
	ui_hosts_init(&h, "127.0.0.1", 6006, &lo);
	CHECK(lo);
	CHECK(ui_host_allowed(&h, "127.0.0.1:6006"));
	CHECK(ui_host_allowed(&h, "LOCALHOST:6006"));
	CHECK(ui_host_allowed(&h, "[::1]:6006"));
	CHECK(!ui_host_allowed(&h, "127.0.0.1:6007"));
	CHECK(!ui_host_allowed(&h, "127.0.0.1"));
	CHECK(!ui_host_allowed(&h, "evil.example:6006"));
	CHECK(!ui_host_allowed(&h, NULL));
	ui_hosts_init(&h, "10.1.2.3", 8080, &lo);
	CHECK(!lo);
	CHECK(ui_host_allowed(&h, "10.1.2.3:8080"));
	CHECK(!ui_host_allowed(&h, "localhost:8080"));
	ui_hosts_init(&h, "fd00::1", 80, &lo);
	CHECK(ui_host_allowed(&h, "[fd00::1]:80"));
}

static void test_params(void)
{
	char v[16];
	CHECK_EQ(ui_param("/api/run?run=abc&x=1", "run", v, sizeof v), 1);
	CHECK_STR_EQ(v, "abc");
	CHECK_EQ(ui_param("/api/run?run=abc&x=1", "x", v, sizeof v), 1);
	CHECK_STR_EQ(v, "1");
	CHECK_EQ(ui_param("/api/run?run=abc", "ru", v, sizeof v), 0);
	CHECK_EQ(ui_param("/api/run", "run", v, sizeof v), 0);
	CHECK_EQ(ui_param("/?grep=a%2Fb+c", "grep", v, sizeof v), 1);
	CHECK_STR_EQ(v, "a/b c");
	CHECK_EQ(ui_param("/?grep=%zz", "grep", v, sizeof v), -1);
	CHECK_EQ(ui_param("/?grep=%4", "grep", v, sizeof v), -1);
	CHECK_EQ(ui_param("/?grep=%00", "grep", v, sizeof v), -1);
	CHECK_EQ(ui_param("/?grep=0123456789abcdef", "grep", v, sizeof v), -1);
	CHECK_EQ(ui_param("/?flag", "flag", v, sizeof v), 1);
	CHECK_STR_EQ(v, "");

	char out[64];
	ui_uri_without_token("/?token=abc", out, sizeof out);
	CHECK_STR_EQ(out, "/");
	ui_uri_without_token("/x?a=1&token=abc&b=2", out, sizeof out);
	CHECK_STR_EQ(out, "/x?a=1&b=2");
	ui_uri_without_token("/x?tokens=1", out, sizeof out);
	CHECK_STR_EQ(out, "/x?tokens=1");

	CHECK_EQ(ui_cookie("a=1; trackd_ui_80=tok; b=2", "trackd_ui_80", v, sizeof v), 1);
	CHECK_STR_EQ(v, "tok");
	CHECK_EQ(ui_cookie("xtrackd_ui_80=tok", "trackd_ui_80", v, sizeof v), 0);
	CHECK_EQ(ui_cookie("trackd_ui_8=tok", "trackd_ui_80", v, sizeof v), 0);
	CHECK_EQ(ui_cookie(NULL, "trackd_ui_80", v, sizeof v), 0);
	CHECK_EQ(ui_cookie("trackd_ui_80=0123456789abcdef0", "trackd_ui_80", v, sizeof v), 0);
}

static void test_api(void)
{
	struct ui_api *a = malloc(sizeof *a);
	char err[256];
	CHECK_EQ(ui_api_parse("/api/runs", "/api/runs", a, err, sizeof err), UI_API_OK);
	CHECK_EQ(a->q.request_case, TRACKD__V1__QUERY__REQUEST_RUNS);
	CHECK(a->q.runs->project == NULL);
	CHECK_EQ(ui_api_parse("/api/runs", "/api/runs?project=p", a, err, sizeof err), UI_API_OK);
	CHECK_STR_EQ(a->q.runs->project, "p");

	CHECK_EQ(ui_api_parse("/api/run", "/api/run", a, err, sizeof err), UI_API_BAD_REQUEST);
	CHECK(strstr(err, "'run'") != NULL, "%s", err);
	CHECK_EQ(ui_api_parse("/api/run", "/api/run?run=e/p/r1", a, err, sizeof err), UI_API_OK);
	CHECK_STR_EQ(a->q.run->run, "e/p/r1");

	CHECK_EQ(ui_api_parse("/api/series",
	                      "/api/series?run=r&keys=train/loss,val/acc&x=_step&x_min=2.5&x_max=10"
	                      "&buckets=300",
	                      a, err, sizeof err),
	         UI_API_OK);
	const Trackd__V1__SeriesRequest *s = a->q.series;
	CHECK_EQ(a->q.request_case, TRACKD__V1__QUERY__REQUEST_SERIES);
	CHECK_EQ(s->n_keys, 2);
	CHECK_STR_EQ(s->keys[0], "train/loss");
	CHECK_STR_EQ(s->keys[1], "val/acc");
	CHECK_STR_EQ(s->x, "_step");
	CHECK(s->has_x_min && s->x_min == 2.5 && s->has_x_max && s->x_max == 10);
	CHECK(s->has_buckets && s->buckets == 300);
	CHECK_EQ(ui_api_parse("/api/series", "/api/series?run=r", a, err, sizeof err), UI_API_OK);
	CHECK(!a->q.series->has_x_min && !a->q.series->has_buckets && a->q.series->n_keys == 0);
	CHECK_EQ(ui_api_parse("/api/series", "/api/series?run=r&buckets=10001", a, err, sizeof err),
	         UI_API_BAD_REQUEST);
	CHECK_EQ(ui_api_parse("/api/series", "/api/series?run=r&buckets=-1", a, err, sizeof err),
	         UI_API_BAD_REQUEST);
	CHECK_EQ(ui_api_parse("/api/series", "/api/series?run=r&x_min=nan", a, err, sizeof err),
	         UI_API_BAD_REQUEST);
	CHECK_EQ(ui_api_parse("/api/series", "/api/series?run=r&x_min=1x", a, err, sizeof err),
	         UI_API_BAD_REQUEST);
	CHECK_EQ(
	    ui_api_parse("/api/series", "/api/series?run=r&x_min=3&x_max=2", a, err, sizeof err),
	    UI_API_BAD_REQUEST);
	CHECK_EQ(ui_api_parse("/api/series", "/api/series?run=r&keys=a,,b", a, err, sizeof err),
	         UI_API_BAD_REQUEST);

	CHECK_EQ(
	    ui_api_parse("/api/console", "/api/console?run=r&from=5&grep=loss", a, err, sizeof err),
	    UI_API_OK);
	CHECK(a->q.console->has_from_line && a->q.console->from_line == 5);
	CHECK(a->q.console->has_max_lines && a->q.console->max_lines == UI_LINES_MAX);
	CHECK_STR_EQ(a->q.console->grep, "loss");
	CHECK_EQ(ui_api_parse("/api/console", "/api/console?run=r&max=10001", a, err, sizeof err),
	         UI_API_BAD_REQUEST);
	CHECK_EQ(
	    ui_api_parse("/api/history", "/api/history?run=r&keys=a&max=10", a, err, sizeof err),
	    UI_API_OK);
	CHECK(a->q.history->max_lines == 10 && a->q.history->n_keys == 1);
	CHECK(a->q.history->stream == NULL, "no stream: the rows");
	CHECK_EQ(
	    ui_api_parse("/api/history", "/api/history?run=r&stream=events", a, err, sizeof err),
	    UI_API_OK);
	CHECK_STR_EQ(a->q.history->stream, "events");
	CHECK_EQ(ui_api_parse("/api/nope", "/api/nope", a, err, sizeof err), UI_API_NOT_FOUND);
	free(a);
}

/* A query string "PATH?NAME=" followed by `n` copies of `unit` joined by
 * `sep` (NULL: none), into a fresh string. */
static char *param_of(const char *path_name, const char *unit, const char *sep, size_t n)
{
	size_t len = strlen(path_name) + n * (strlen(unit) + (sep ? strlen(sep) : 0)) + 1;
	char *s = malloc(len), *p = s;
	p += sprintf(p, "%s", path_name);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s%s", i && sep ? sep : "", unit);
	return s;
}

/* Every UI_* request limit at limit - 1, limit and limit + 1. */
static void test_limits(void)
{
	struct ui_api *a = malloc(sizeof *a);
	char err[256];
	for (size_t n = UI_KEYS_MAX - 1; n <= UI_KEYS_MAX + 1; n++) {
		char *uri = param_of("/api/series?run=r&keys=", "k", ",", n);
		enum ui_api_status st = ui_api_parse("/api/series", uri, a, err, sizeof err);
		CHECK_EQ(st, n <= UI_KEYS_MAX ? UI_API_OK : UI_API_BAD_REQUEST);
		if (st == UI_API_OK)
			CHECK_EQ(a->q.series->n_keys, n);
		else
			CHECK(strstr(err, "more than 256 keys") != NULL, "%s", err);
		free(uri);
	}
	for (size_t n = UI_KEY_MAX - 1; n <= UI_KEY_MAX + 1; n++) {
		char *uri = param_of("/api/series?run=r&keys=", "k", NULL, n);
		CHECK_EQ(ui_api_parse("/api/series", uri, a, err, sizeof err),
		         n <= UI_KEY_MAX ? UI_API_OK : UI_API_BAD_REQUEST);
		free(uri);
	}
	for (size_t n = UI_RUN_MAX - 1; n <= UI_RUN_MAX + 1; n++) {
		char *uri = param_of("/api/run?run=", "r", NULL, n);
		enum ui_api_status st = ui_api_parse("/api/run", uri, a, err, sizeof err);
		CHECK_EQ(st, n <= UI_RUN_MAX ? UI_API_OK : UI_API_BAD_REQUEST);
		if (st == UI_API_OK)
			CHECK_EQ(strlen(a->q.run->run), n);
		else
			CHECK(strstr(err, "'run'") && strstr(err, "512 bytes"), "%s", err);
		free(uri);
	}
	for (size_t n = UI_GREP_MAX - 1; n <= UI_GREP_MAX + 1; n++) {
		char *uri = param_of("/api/console?run=r&grep=", "g", NULL, n);
		enum ui_api_status st = ui_api_parse("/api/console", uri, a, err, sizeof err);
		CHECK_EQ(st, n <= UI_GREP_MAX ? UI_API_OK : UI_API_BAD_REQUEST);
		if (st == UI_API_OK)
			CHECK_EQ(strlen(a->q.console->grep), n);
		else
			CHECK(strstr(err, "'grep'") && strstr(err, "1024 bytes"), "%s", err);
		free(uri);
	}
	char uri[64];
	for (unsigned n = UI_LINES_MAX - 1; n <= UI_LINES_MAX + 1; n++) {
		snprintf(uri, sizeof uri, "/api/history?run=r&max=%u", n);
		CHECK_EQ(ui_api_parse("/api/history", uri, a, err, sizeof err),
		         n <= UI_LINES_MAX ? UI_API_OK : UI_API_BAD_REQUEST);
	}
	for (unsigned n = UI_BUCKETS_MAX - 1; n <= UI_BUCKETS_MAX + 1; n++) {
		snprintf(uri, sizeof uri, "/api/series?run=r&buckets=%u", n);
		CHECK_EQ(ui_api_parse("/api/series", uri, a, err, sizeof err),
		         n <= UI_BUCKETS_MAX ? UI_API_OK : UI_API_BAD_REQUEST);
	}
	free(a);
}

/* /api/file: run and name required; names that would leave files/ refused
 * before the agent is asked; the name's length at its limit's neighbours
 * (TRACKD_MAX_FILE_NAME_BYTES, components of at most 255 bytes); the
 * Content-Type by extension. */
static void test_file(void)
{
	struct ui_api *a = malloc(sizeof *a);
	char err[256];
	CHECK_EQ(ui_api_parse("/api/file", "/api/file?run=e/p/r1&name=media/images/s_3_abc.png", a,
	                      err, sizeof err),
	         UI_API_OK);
	CHECK_EQ(a->q.request_case, TRACKD__V1__QUERY__REQUEST_RUN_FILE_READ);
	CHECK_STR_EQ(a->q.run_file_read->run, "e/p/r1");
	CHECK_STR_EQ(a->q.run_file_read->name, "media/images/s_3_abc.png");
	CHECK_EQ(a->q.run_file_read->offset, 0);
	CHECK_EQ(a->q.run_file_read->length, TRACKD_RUN_FILE_READ_MAX);
	CHECK_EQ(ui_api_parse("/api/file", "/api/file?run=r", a, err, sizeof err),
	         UI_API_BAD_REQUEST);
	CHECK(strstr(err, "'name'") != NULL, "%s", err);
	CHECK_EQ(ui_api_parse("/api/file", "/api/file?name=x.png", a, err, sizeof err),
	         UI_API_BAD_REQUEST);
	const char *bad[] = {"..%2Ffiles.jsonl",
	                     "%2Fetc%2Fpasswd",
	                     "media%2F..%2F..%2Fx",
	                     "a%2F%2Fb",
	                     "",
	                     "media%2F.%2Fx",
	                     "%2E%2E",
	                     "a%00b",
	                     "a%0Ab"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char uri[128];
		snprintf(uri, sizeof uri, "/api/file?run=r&name=%s", bad[i]);
		CHECK_EQ(ui_api_parse("/api/file", uri, a, err, sizeof err), UI_API_BAD_REQUEST,
		         "%s", bad[i]);
	}
	/* 1024 bytes: four components of 255 and "/" between them, plus 1 + 1. */
	for (size_t n = TRACKD_MAX_FILE_NAME_BYTES - 1; n <= TRACKD_MAX_FILE_NAME_BYTES + 1; n++) {
		char name[TRACKD_MAX_FILE_NAME_BYTES + 2];
		memset(name, 'a', n);
		for (size_t at = 200; at < n; at += 201)
			name[at] = '/';
		name[n] = '\0';
		char *uri = param_of("/api/file?run=r&name=", name, NULL, 1);
		CHECK_EQ(ui_api_parse("/api/file", uri, a, err, sizeof err),
		         n <= TRACKD_MAX_FILE_NAME_BYTES ? UI_API_OK : UI_API_BAD_REQUEST, "%zu",
		         n);
		free(uri);
	}
	CHECK_STR_EQ(ui_file_content_type("media/images/a_1_x.png"), "image/png");
	CHECK_STR_EQ(ui_file_content_type("a.JPG"), "image/jpeg");
	CHECK_STR_EQ(ui_file_content_type("a.jpeg"), "image/jpeg");
	CHECK_STR_EQ(ui_file_content_type("media/table/t_1_x.table.json"), "application/json");
	CHECK_STR_EQ(ui_file_content_type("model.html"), "application/octet-stream");
	CHECK_STR_EQ(ui_file_content_type("png"), "application/octet-stream");
	free(a);
}

int main(void)
{
	test_token();
	test_hosts();
	test_params();
	test_api();
	test_limits();
	test_file();
	return CHECK_SUMMARY("ui_http_test");
}
