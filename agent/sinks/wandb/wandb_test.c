/* wandb_test — the wandb sink's pure parts: retry schedule and classification,
 * Retry-After, reading answers (json-c), request bodies (offsets, line limits, size
 * limits, complete), UpsertBucket answers, the per-run state file, the API key
 * rules and URLs; run files (CreateRunFiles, PUT headers and verdicts, the
 * file_stream "uploaded" list, config.yaml). The network paths are tested end to
 * end (tests/e2e). */
#include "protocol.h"
#include "store.h"
#include "wandb_internal.h"

#include "errors.h"

#include <json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

/* ---- retry policy --------------------------------------------------------------- */

static void test_backoff(void)
{
	CHECK(wb_backoff_ms(0, 2000, 60000, 0) == 2000, "first retry 2 s");
	CHECK(wb_backoff_ms(0, 2000, 60000, 1) == 2500, "jitter adds up to 25%%");
	CHECK(wb_backoff_ms(1, 2000, 60000, 0) == 4000, "doubles");
	CHECK(wb_backoff_ms(4, 2000, 60000, 0) == 32000, "2 s * 16");
	CHECK(wb_backoff_ms(5, 2000, 60000, 0) == 60000, "capped at 60 s");
	CHECK(wb_backoff_ms(5, 2000, 60000, 1) == 75000, "jitter on top of the cap");
	CHECK(wb_backoff_ms(UINT32_MAX, 2000, 60000, 0.5) == 67500, "no overflow at any attempt");
	CHECK(wb_backoff_ms(70, UINT64_MAX / 2, UINT64_MAX / 2, 0) == UINT64_MAX / 2,
	      "no overflow near the top");
	CHECK(wb_backoff_ms(3, 100, 50, 0) == 100, "max below min: min");
	double nan = 0.0 / 0.0;
	CHECK(wb_backoff_ms(0, 2000, 60000, nan) == 2000, "NaN jitter ignored");
	/* Monotone up to the cap. */
	uint64_t prev = 0;
	for (uint32_t a = 0; a < 40; a++) {
		uint64_t d = wb_backoff_ms(a, 10, 1000, 0);
		CHECK(d >= prev && d <= 1000, "attempt %u: %llu", a, (unsigned long long)d);
		prev = d;
	}
}

static void test_classify(void)
{
	static const long permanent[] = {400, 401, 403, 404, 410, 413, 422, 501};
	static const long retried[] = {0, 408, 429, 500, 502, 503, 504, 599, 402, 405, 302};
	for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++) {
		CHECK(wb_classify_status(WB_CALL_FILE_STREAM, permanent[i]) == WB_PERMANENT,
		      "%ld permanent", permanent[i]);
		CHECK(wb_classify_status(WB_CALL_UPSERT, permanent[i]) == WB_PERMANENT,
		      "%ld permanent (upsert)", permanent[i]);
	}
	for (size_t i = 0; i < sizeof retried / sizeof *retried; i++)
		CHECK(wb_classify_status(WB_CALL_FILE_STREAM, retried[i]) == WB_RETRY,
		      "%ld retried", retried[i]);
	CHECK(wb_classify_status(WB_CALL_FILE_STREAM, 409) == WB_PERMANENT, "409 file_stream");
	CHECK(wb_classify_status(WB_CALL_UPSERT, 409) == WB_RETRY, "409 UpsertBucket retried");
	CHECK(wb_classify_status(WB_CALL_UPSERT, 200) == WB_OK, "200");
	CHECK(wb_classify_status(WB_CALL_UPSERT, 204) == WB_OK, "204");
}

static void test_retry_after(void)
{
	uint64_t ms = 0;
	CHECK(wb_parse_retry_after("120", 0, &ms) == 0 && ms == 120000, "seconds: %llu",
	      (unsigned long long)ms);
	CHECK(wb_parse_retry_after("  3 \r\n", 0, &ms) == 0 && ms == 3000, "spaces");
	CHECK(wb_parse_retry_after("0", 0, &ms) == 0 && ms == 0, "zero");
	CHECK(wb_parse_retry_after("1.5", 0, &ms) == 0 && ms == 1500, "fraction");
	/* Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 */
	CHECK(wb_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412450, &ms) == 0 &&
	          ms == 30000,
	      "IMF-fixdate: %llu", (unsigned long long)ms);
	CHECK(wb_parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", 1445412470, &ms) == 0 &&
	          ms == 10000,
	      "RFC 850: %llu", (unsigned long long)ms);
	CHECK(wb_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490, &ms) == 0 &&
	          ms == 0,
	      "a past date means now");
	CHECK(wb_parse_retry_after("soon", 0, &ms) == TRACKD_EINVAL, "garbage");
	CHECK(wb_parse_retry_after("12abc", 0, &ms) == TRACKD_EINVAL, "trailing garbage");
	CHECK(wb_parse_retry_after("", 0, &ms) == TRACKD_EINVAL, "empty");
	CHECK(wb_parse_retry_after("99999999999999999999999", 0, &ms) == TRACKD_EINVAL, "overflow");
}

/* ---- reading answers -------------------------------------------------------------- */

/* [p, p+n) parsed as the sink parses answers; NULL if it is not JSON. */
static struct json_object *parse(const char *p, size_t n)
{
	struct json_object *root = NULL;
	char err[200];
	int rv = wb_json_parse(p, n, &root, err, sizeof err);
	CHECK(rv == 0, "not JSON (%s): %.*s", err, (int)n, p);
	return root;
}

/* The value at a JSON pointer; NULL when absent or null. */
static struct json_object *at(struct json_object *root, const char *ptr)
{
	struct json_object *v = NULL;
	return json_pointer_get(root, ptr, &v) == 0 ? v : NULL;
}

static bool present(struct json_object *root, const char *ptr)
{
	struct json_object *v;
	return json_pointer_get(root, ptr, &v) == 0;
}

/* The string at a JSON pointer, or "" when it is not a string. */
static const char *str_at(struct json_object *root, const char *ptr)
{
	struct json_object *v = at(root, ptr);
	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

static void test_json_parse(void)
{
	const char *doc = "{\"data\":{\"upsertBucket\":{\"bucket\":{\"id\":\"X\",\"name\":\"r1\","
	                  "\"historyLineCount\":42,\"project\":{\"name\":\"p\",\"entity\":"
	                  "{\"name\":\"e\\u00e9\\ud83d\\ude00\"}},\"tags\":[\"a\",\"b\"],"
	                  "\"x\":NaN,\"y\":-Infinity,\"ok\":true,\"n\":null}}},"
	                  "\"errors\":[{\"message\":\"m0\"},{\"message\":\"m\\\"1\"}]}";
	struct json_object *root = parse(doc, strlen(doc));
	CHECK(json_object_get_int64(at(root, "/data/upsertBucket/bucket/historyLineCount")) == 42,
	      "int");
	CHECK(strcmp(str_at(root, "/data/upsertBucket/bucket/project/entity/name"),
	             "e\xc3\xa9\xf0\x9f\x98\x80") == 0,
	      "escapes and surrogate pairs");
	CHECK(strcmp(str_at(root, "/errors/1/message"), "m\"1") == 0, "second array element");
	struct json_object *x = at(root, "/data/upsertBucket/bucket/x");
	CHECK(json_object_is_type(x, json_type_double) && isnan(json_object_get_double(x)), "NaN");
	CHECK(isinf(json_object_get_double(at(root, "/data/upsertBucket/bucket/y"))), "-Infinity");
	CHECK(json_object_get_boolean(at(root, "/data/upsertBucket/bucket/ok")), "bool");
	CHECK(present(root, "/data/upsertBucket/bucket/n") &&
	          !at(root, "/data/upsertBucket/bucket/n"),
	      "null");
	CHECK(!present(root, "/data/upsertBucket/bucket/tags/2"), "index out of range");
	json_object_put(root);

	static const char *bad[] = {
	    "",
	    "{",
	    "{\"a\":}",
	    "{\"a\" 1}",
	    "[1,]",
	    "{\"a\":1,}",
	    "\"abc",
	    "tru",
	    "01",
	    "1e",
	    "{\"a\":1} x",
	    "\"\\x\"",
	    "\"\\u12G4\"",
	    "[1 2]",
	    "nan",
	    "{1:2}",
	    "1 2",
	    "\"\xff\"",
	    "<html>bad gateway</html>",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char err[200] = "";
		struct json_object *o = NULL;
		int rv = wb_json_parse(bad[i], strlen(bad[i]), &o, err, sizeof err);
		CHECK(rv == TRACKD_EINVAL && !o && strncmp(err, "the answer is not JSON", 22) == 0,
		      "malformed: %s: %d %s", bad[i], rv, err);
	}
	/* Text after the value, even behind a NUL, is refused. */
	struct json_object *o = NULL;
	char err[200];
	CHECK(wb_json_parse("{}\0x", 4, &o, err, sizeof err) == TRACKD_EINVAL, "after a NUL");
	CHECK(wb_json_parse(NULL, 0, &o, err, sizeof err) == TRACKD_EINVAL, "no body");
	CHECK(wb_json_parse("{}", (size_t)INT_MAX + 1, &o, err, sizeof err) == TRACKD_ETOOBIG,
	      "length beyond json-c's int");
	static const char *good[] = {"0",        "-0.5e+3",   " [ ] \n", "{}", "\"\\u0041\\/\"",
	                             "Infinity", "[[[]],{}]", "12"};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		o = NULL;
		CHECK(wb_json_parse(good[i], strlen(good[i]), &o, err, sizeof err) == 0 && o,
		      "well formed: %s", good[i]);
		json_object_put(o);
	}
	CHECK(wb_json_parse("null", 4, &o, err, sizeof err) == 0 && !o, "null is NULL");

	/* Depth: 64 nested arrays pass, 65 do not, nor does a hostile 100000. */
	static char deep[200002];
	for (int d = 64; d <= 65; d++) {
		memset(deep, '[', (size_t)d);
		memset(deep + d, ']', (size_t)d);
		o = NULL;
		int rv = wb_json_parse(deep, (size_t)(2 * d), &o, err, sizeof err);
		CHECK(d == 64 ? rv == 0 : rv == TRACKD_ETOOBIG && strstr(err, "deeper than 64"),
		      "depth %d: %d %s", d, rv, err);
		json_object_put(o);
	}
	memset(deep, '[', 100000);
	memset(deep + 100000, ']', 100000);
	CHECK(wb_json_parse(deep, 200000, &o, err, sizeof err) == TRACKD_ETOOBIG, "very deep");

	/* Integers keep 64 bits (a double would make 2^53 + 1 even); doubles stay doubles. */
	static const struct {
		const char *text;
		int64_t v;
	} ints[] = {{"9007199254740993", 9007199254740993},
	            {"9223372036854775807", INT64_MAX},
	            {"-9223372036854775808", INT64_MIN}};
	for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
		o = parse(ints[i].text, strlen(ints[i].text));
		CHECK(json_object_is_type(o, json_type_int) &&
		          json_object_get_int64(o) == ints[i].v,
		      "int64 exact: %s", ints[i].text);
		json_object_put(o);
	}
	o = parse("18446744073709551615", 20);
	CHECK(json_object_get_uint64(o) == UINT64_MAX, "uint64 exact");
	json_object_put(o);
	o = parse("3.0", 3);
	CHECK(json_object_is_type(o, json_type_double), "3.0 is a double");
	json_object_put(o);
}

/* Whether [p, p+n) is JSON as the sink reads it. */
static bool json_ok(const char *p, size_t n)
{
	struct json_object *o = NULL;
	char err[200];
	int rv = wb_json_parse(p, n, &o, err, sizeof err);
	json_object_put(o);
	return rv == 0;
}

/* ---- request bodies ------------------------------------------------------------------ */

static void test_json_string(void)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	const char raw[] = "a\"b\\c\n\t\x01 \xc3\xa9 \xff \xed\xa0\x80 \xf0\x9f\x98\x80";
	size_t n = sizeof raw - 1;
	CHECK(json_write_stringn(&b, raw, n, JSON_UTF8_REPAIR) == 0, "escape");
	CHECK(b.len == json_string_len(raw, n, JSON_UTF8_REPAIR), "length matches: %zu vs %zu",
	      b.len, json_string_len(raw, n, JSON_UTF8_REPAIR));
	CHECK(strcmp(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001 \xc3\xa9 \\ufffd \\ufffd\\ufffd\\ufffd "
	                     "\xf0\x9f\x98\x80\"") == 0,
	      "escaped: %s", b.data);
	CHECK(json_ok(b.data, b.len), "valid JSON");
	buf_fini(&b);
}

static void test_upsert_body(void)
{
	struct vmap cfg;
	vmap_init(&cfg);
	vmap_set_double(&cfg, "lr", 0.5);
	vmap_set_int(&cfg, "epochs", 3);
	/* Lists and null go up as JSON arrays and null (copied by vmap_set). */
	struct vvalue elems[3] = {
	    {.kind = V_DOUBLE, .u.d = 0.9}, {.kind = V_NULL}, {.kind = V_STRING, .u.s = "a"}};
	struct vlist list = {.items = elems, .n = 3};
	struct vvalue betas = {.kind = V_LIST, .u.l = &list}, none = {.kind = V_NULL};
	vmap_set(&cfg, "betas", &betas);
	vmap_set(&cfg, "sched", &none);
	char *tags[] = {"t1", "t\"2"};
	struct wb_upsert u = {.name = "abc123",
	                      .project = "proj",
	                      .entity = "",
	                      .display_name = "brisk-river-1",
	                      .notes = "",
	                      .group = "g",
	                      .tags = tags,
	                      .n_tags = 2,
	                      .config = &cfg,
	                      .agent_version = "0.1.0"};
	struct buf b;
	buf_init(&b, 1 << 20);
	CHECK(wb_build_upsert(&u, &b) == 0, "build");
	CHECK(json_ok(b.data, b.len), "valid JSON: %s", b.data);
	struct json_object *root = parse(b.data, b.len);
	CHECK(strcmp(str_at(root, "/operationName"), "UpsertBucket") == 0, "operation");
	const char *q = str_at(root, "/query");
	CHECK(strstr(q, "mutation UpsertBucket(") && strstr(q, "historyLineCount"), "query text");
	CHECK(strcmp(str_at(root, "/variables/name"), "abc123") == 0, "name");
	CHECK(!present(root, "/variables/entity"), "empty entity omitted (the key's default)");
	CHECK(!present(root, "/variables/notes"),
	      "empty notes left out: a run without notes keeps those set upstream");
	CHECK(strcmp(str_at(root, "/variables/groupName"), "g") == 0, "group");
	CHECK(strcmp(str_at(root, "/variables/tags/1"), "t\"2") == 0, "tags");
	const char *s = str_at(root, "/variables/config");
	struct json_object *c = parse(s, strlen(s));
	struct json_object *lr = at(c, "/lr/value");
	CHECK(json_object_is_type(lr, json_type_double) && json_object_get_double(lr) == 0.5,
	      "config as {key: {value: v}}: %s", s);
	struct json_object *e = at(c, "/epochs/value");
	CHECK(json_object_is_type(e, json_type_int) && json_object_get_int64(e) == 3, "int config");
	CHECK(json_object_is_type(at(c, "/_wandb/value/t"), json_type_object), "_wandb.t");
	CHECK(strstr(s, "\"betas\":{\"value\":[0.9,null,\"a\"]}") &&
	          strstr(s, "\"sched\":{\"value\":null}"),
	      "list and null config: %s", s);
	struct json_object *bv = at(c, "/betas/value");
	CHECK(json_object_array_length(bv) == 3 && !json_object_array_get_idx(bv, 1),
	      "list element null");
	json_object_put(c);
	json_object_put(root);
	/* No tags and no notes: left out, so a run without them (a resume, say)
	 * never wipes what was set in the W&B app. */
	u.n_tags = 0;
	u.notes = NULL;
	buf_reset(&b);
	CHECK(wb_build_upsert(&u, &b) == 0, "build without tags");
	root = parse(b.data, b.len);
	CHECK(!present(root, "/variables/tags"), "no tags left out: %s", b.data);
	CHECK(!present(root, "/variables/notes"), "NULL notes omitted");
	json_object_put(root);
	/* An update that cleared them: an empty list and empty notes go, so W&B
	 * drops them too. */
	u.clear_tags = u.clear_notes = true;
	buf_reset(&b);
	CHECK(wb_build_upsert(&u, &b) == 0, "build clearing tags and notes");
	root = parse(b.data, b.len);
	struct json_object *t = at(root, "/variables/tags");
	CHECK(t && json_object_is_type(t, json_type_array) && json_object_array_length(t) == 0,
	      "cleared tags sent as []: %s", b.data);
	CHECK(strcmp(str_at(root, "/variables/notes"), "") == 0, "cleared notes sent as \"\"");
	json_object_put(root);
	buf_fini(&b);
	vmap_fini(&cfg);
}

static void test_upsert_response(void)
{
	struct wb_upsert_result r;
	const char *ok = "{\"data\":{\"upsertBucket\":{\"bucket\":{\"id\":\"X\",\"name\":\"r\","
	                 "\"displayName\":\"d\",\"historyLineCount\":7,\"logLineCount\":3,"
	                 "\"project\":{\"name\":\"p\",\"entity\":{\"name\":\"fake-entity\"}}},"
	                 "\"inserted\":true}}}";
	CHECK(wb_parse_upsert_response(ok, strlen(ok), &r) == WB_OK, "bucket");
	CHECK(strcmp(r.entity, "fake-entity") == 0 && strcmp(r.project, "p") == 0 &&
	          r.has_history_line_count && r.history_line_count == 7 && r.has_log_line_count &&
	          r.log_line_count == 3,
	      "bucket fields");
	const char *noc = "{\"data\":{\"upsertBucket\":{\"bucket\":{\"historyLineCount\":null}}}}";
	CHECK(wb_parse_upsert_response(noc, strlen(noc), &r) == WB_OK &&
	          !r.has_history_line_count && r.entity[0] == '\0',
	      "null counts");
	const char *err = "{\"errors\":[{\"message\":\"project not found\"}],\"data\":"
	                  "{\"upsertBucket\":null}}";
	CHECK(wb_parse_upsert_response(err, strlen(err), &r) == WB_PERMANENT &&
	          strcmp(r.error, "project not found") == 0,
	      "GraphQL error: %s", r.error);
	const char *html = "<html>bad gateway</html>";
	CHECK(wb_parse_upsert_response(html, strlen(html), &r) == WB_RETRY, "not JSON");
	CHECK(wb_parse_upsert_response(NULL, 0, &r) == WB_RETRY, "no body");
	const char *empty = "{\"data\":{}}";
	CHECK(wb_parse_upsert_response(empty, strlen(empty), &r) == WB_RETRY, "no bucket");
	const char *nomsg = "{\"errors\":[{\"message\":7}]}";
	CHECK(wb_parse_upsert_response(nomsg, strlen(nomsg), &r) == WB_PERMANENT &&
	          strcmp(r.error, "GraphQL error without a message") == 0,
	      "GraphQL error, message not a string: %s", r.error);
	const char *cut = "{\"data\":{\"upsertBucket\":{\"bucket\":{\"historyLineCount\":7";
	CHECK(wb_parse_upsert_response(cut, strlen(cut), &r) == WB_RETRY &&
	          strstr(r.error, "not JSON"),
	      "cut body: %s", r.error);

	/* Counts are exact up to 2^64 - 1 (not doubles). */
	const char *big = "{\"data\":{\"upsertBucket\":{\"bucket\":{\"historyLineCount\":"
	                  "9007199254740993,\"logLineCount\":18446744073709551615}}}}";
	CHECK(wb_parse_upsert_response(big, strlen(big), &r) == WB_OK &&
	          r.history_line_count == 9007199254740993u && r.log_line_count == UINT64_MAX,
	      "exact counts: %llu %llu", (unsigned long long)r.history_line_count,
	      (unsigned long long)r.log_line_count);

	/* A field of the wrong type makes the answer unusable, and says which: a
	 * count read as 0 would send lines over the ones the backend holds. */
	static const struct {
		const char *field, *error;
	} wrong[] = {
	    {"\"historyLineCount\":\"7\"",
	     "/data/upsertBucket/bucket/historyLineCount: expected a non-negative integer, not "
	     "string"},
	    {"\"historyLineCount\":7.0",
	     "/data/upsertBucket/bucket/historyLineCount: expected a non-negative integer, not "
	     "double"},
	    {"\"logLineCount\":-1",
	     "/data/upsertBucket/bucket/logLineCount: expected a non-negative integer, not -1"},
	    {"\"logLineCount\":true", "/data/upsertBucket/bucket/logLineCount: expected a "
	                              "non-negative integer, not boolean"},
	    {"\"displayName\":[]",
	     "/data/upsertBucket/bucket/displayName: expected a string, not array"},
	    {"\"project\":{\"entity\":{\"name\":5}}",
	     "/data/upsertBucket/bucket/project/entity/name: expected a string, not int"},
	};
	for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
		char body[300];
		snprintf(body, sizeof body, "{\"data\":{\"upsertBucket\":{\"bucket\":{%s}}}}",
		         wrong[i].field);
		CHECK(wb_parse_upsert_response(body, strlen(body), &r) == WB_RETRY &&
		          strcmp(r.error, wrong[i].error) == 0,
		      "wrong type %s: %s", wrong[i].field, r.error);
	}

	/* Too deep: refused before anything is read. */
	static char deep[400];
	int n = snprintf(deep, sizeof deep, "{\"data\":{\"upsertBucket\":{\"bucket\":{\"x\":");
	for (int i = 0; i < 70; i++)
		deep[n++] = '[';
	for (int i = 0; i < 70; i++)
		deep[n++] = ']';
	memcpy(deep + n, "}}}}", 5);
	CHECK(wb_parse_upsert_response(deep, strlen(deep), &r) == WB_RETRY &&
	          strcmp(r.error, "the answer nests deeper than 64 levels") == 0,
	      "deep: %s", r.error);

	/* Names are cut on a character boundary. */
	char name[600];
	n = snprintf(name, sizeof name,
	             "{\"data\":{\"upsertBucket\":{\"bucket\":{\"displayName\":\"");
	for (int i = 0; i < 200; i++)
		n += snprintf(name + n, sizeof name - (size_t)n, "\xc3\xa9");
	snprintf(name + n, sizeof name - (size_t)n, "\"}}}}");
	CHECK(wb_parse_upsert_response(name, strlen(name), &r) == WB_OK &&
	          strlen(r.display_name) == 254 && memcmp(r.display_name, "\xc3\xa9", 2) == 0,
	      "cut: %zu", strlen(r.display_name));
}

/* Lines in the content array of `file` in a body (file names hold dots, so a
 * dotted path cannot name them). */
static size_t content_len(const char *body, const char *file)
{
	const char *p = strstr(body, file);
	if (!p || !(p = strstr(p, "\"content\":[")))
		return 0;
	size_t k = 0;
	for (const char *q = p + 11; *q == '"';) {
		q++;
		while (*q && *q != '"')
			q += *q == '\\' ? 2 : 1;
		k++;
		q++;
		if (*q == ',')
			q++;
	}
	return k;
}

static uint64_t offset_of(const char *body, const char *file)
{
	const char *p = strstr(body, file);
	if (!p || !(p = strstr(p, "\"offset\":")))
		return UINT64_MAX;
	return strtoull(p + 9, NULL, 10);
}

static void test_file_stream_body(void)
{
	struct buf b;
	buf_init(&b, 64 << 20);
	struct wb_stream_out out;
	const char hist[] =
	    "{\"a\":1,\"_step\":0}\n{\"a\":2,\"_step\":1}\n{\"a\":NaN,\"_step\":2}\n";
	const char cons[] =
	    "2024-01-01T00:00:00.000000 hello\nERROR 2024-01-01T00:00:01.000000 x\n";
	const char sum[] = "{\"a\":NaN,\"_step\":2}";
	struct wb_stream_in in = {
	    .history = {hist, sizeof hist - 1, 120},
	    .console = {cons, sizeof cons - 1, 57},
	    .summary = sum,
	    .summary_len = sizeof sum - 1,
	    .complete = true,
	    .exitcode = 3,
	    .max_body = 10 << 20,
	    .max_line = 1 << 20,
	};
	CHECK(wb_build_file_stream(&in, &b, &out) == 0, "build");
	CHECK(json_ok(b.data, b.len), "valid JSON: %s", b.data);
	CHECK(out.all && out.complete_sent && out.summary_sent && !out.empty, "all of it");
	CHECK(out.history_lines == 3 && out.history_bytes == sizeof hist - 1 &&
	          out.console_lines == 2 && out.console_bytes == sizeof cons - 1,
	      "consumed");
	CHECK(offset_of(b.data, WB_HISTORY_FILE) == 120 &&
	          offset_of(b.data, WB_CONSOLE_FILE) == 57 &&
	          offset_of(b.data, WB_SUMMARY_FILE) == 0,
	      "offsets: %s", b.data);
	CHECK(content_len(b.data, WB_HISTORY_FILE) == 3, "three history lines");
	CHECK(strstr(b.data, "\"complete\":true,\"exitcode\":3}") != NULL, "complete: %s", b.data);
	struct json_object *root = parse(b.data, b.len);
	CHECK(json_object_get_boolean(at(root, "/complete")), "complete readable");
	json_object_put(root);
	CHECK(strstr(b.data, "\"{\\\"a\\\":NaN,\\\"_step\\\":2}\"") != NULL,
	      "lines are JSON strings, NaN kept");

	/* A size limit that fits the console and one history line: no complete. */
	buf_reset(&b);
	in.max_body = 416 + 100;
	CHECK(wb_build_file_stream(&in, &b, &out) == 0, "build small");
	CHECK(b.len <= in.max_body, "within the limit: %zu", b.len);
	CHECK(!out.all && !out.complete_sent && out.console_lines == 2 && out.history_lines == 1 &&
	          !out.summary_sent,
	      "partial: c=%zu h=%zu all=%d", out.console_lines, out.history_lines, out.all);
	CHECK(strstr(b.data, "complete") == NULL, "no complete on a partial request");
	CHECK(out.history_skipped == 0 && out.console_skipped == 0, "nothing skipped");

	/* Long lines are skipped, the offsets of the rest stay consecutive. */
	buf_reset(&b);
	char big[600];
	memset(big, 'x', sizeof big);
	big[0] = '{';
	struct buf h2;
	buf_init(&h2, 1 << 20);
	buf_puts(&h2, "{\"a\":1}\n");
	buf_append(&h2, big, sizeof big);
	buf_puts(&h2, "\n{\"a\":3}\n");
	struct wb_stream_in in2 = {
	    .history = {h2.data, h2.len, 10},
	    .max_body = 10 << 20,
	    .max_line = 100,
	};
	CHECK(wb_build_file_stream(&in2, &b, &out) == 0, "build with a long line");
	CHECK(out.all && out.history_lines == 3 && out.history_skipped == 1 &&
	          out.largest_skipped == sizeof big && out.history_bytes == h2.len,
	      "skipped one: lines %zu skipped %zu", out.history_lines, out.history_skipped);
	CHECK(content_len(b.data, WB_HISTORY_FILE) == 2 && offset_of(b.data, WB_HISTORY_FILE) == 10,
	      "two sent from offset 10: %s", b.data);
	/* A line that fits the line limit but never one request is skipped too. */
	buf_reset(&b);
	in2.max_line = 1 << 20;
	in2.max_body = 416 + 100;
	CHECK(wb_build_file_stream(&in2, &b, &out) == 0 && out.history_skipped == 1 && out.all,
	      "too big for any request: skipped");
	buf_fini(&h2);

	/* System-metrics events: their own file and offsets, after the rows. */
	buf_reset(&b);
	const char ev[] =
	    "{\"_wandb\":true,\"_timestamp\":1.5,\"_runtime\":0.5,\"system.cpu\":3.0}\n";
	struct wb_stream_in in_ev = {
	    .history = {hist, sizeof hist - 1, 0},
	    .events = {ev, sizeof ev - 1, 4},
	    .max_body = 10 << 20,
	    .max_line = 1 << 20,
	};
	CHECK(wb_build_file_stream(&in_ev, &b, &out) == 0 && out.all && out.events_lines == 1 &&
	          out.events_bytes == sizeof ev - 1,
	      "events consumed");
	CHECK(offset_of(b.data, WB_EVENTS_FILE) == 4 && content_len(b.data, WB_EVENTS_FILE) == 1,
	      "events at offset 4: %s", b.data);
	/* Room for the rows only: the events wait for the next request. */
	buf_reset(&b);
	in_ev.max_body = 416 + 130;
	CHECK(wb_build_file_stream(&in_ev, &b, &out) == 0 && !out.all && out.events_lines == 0 &&
	          strstr(b.data, WB_EVENTS_FILE) == NULL,
	      "events after rows: h=%zu e=%zu", out.history_lines, out.events_lines);

	/* Nothing to send: the heartbeat. */
	buf_reset(&b);
	struct wb_stream_in idle = {
	    .history = {"", 0, 5}, .console = {"", 0, 0}, .max_body = 10 << 20, .max_line = 100};
	CHECK(wb_build_file_stream(&idle, &b, &out) == 0 && out.empty && strcmp(b.data, "{}") == 0,
	      "heartbeat: %s", b.data);
	/* Only complete. */
	buf_reset(&b);
	idle.complete = true;
	idle.exitcode = 0;
	CHECK(wb_build_file_stream(&idle, &b, &out) == 0 && out.complete_sent &&
	          strcmp(b.data, "{\"complete\":true,\"exitcode\":0}") == 0,
	      "complete alone: %s", b.data);
	/* A summary that can never fit is reported, and does not block complete. */
	buf_reset(&b);
	char huge[1000];
	memset(huge, 'y', sizeof huge);
	idle.summary = huge;
	idle.summary_len = sizeof huge;
	idle.max_body = 600;
	CHECK(wb_build_file_stream(&idle, &b, &out) == 0 && out.summary_skipped && out.all &&
	          out.complete_sent,
	      "summary too large");

	/* Exactly at the limit, many lines: never over it. */
	struct buf many;
	buf_init(&many, 16 << 20);
	for (int i = 0; i < 20000; i++)
		buf_printf(&many, "{\"i\":%d,\"s\":\"%s\"}\n", i, i % 7 ? "plain" : "quo\\\"te");
	for (size_t limit = 1000; limit < 200000; limit = limit * 3 + 7) {
		buf_reset(&b);
		struct wb_stream_in in3 = {.history = {many.data, many.len, 0},
		                           .summary = sum,
		                           .summary_len = sizeof sum - 1,
		                           .max_body = limit,
		                           .max_line = 1 << 20};
		CHECK(wb_build_file_stream(&in3, &b, &out) == 0 && b.len <= limit &&
		          json_ok(b.data, b.len) &&
		          content_len(b.data, WB_HISTORY_FILE) == out.history_lines,
		      "limit %zu: len %zu lines %zu", limit, b.len, out.history_lines);
	}
	buf_fini(&many);
	buf_fini(&b);
}

static void test_stopped(void)
{
	const char *a = "{\"exitcode\":null,\"limits\":{},\"stopped\":true}";
	const char *b = "{\"exitcode\":null,\"limits\":{}}";
	CHECK(wb_stream_response_stopped(a, strlen(a)), "stopped");
	CHECK(!wb_stream_response_stopped(b, strlen(b)), "not stopped");
	CHECK(!wb_stream_response_stopped(NULL, 0), "no body");
}

/* ---- state files ------------------------------------------------------------------- */

static void test_store(void)
{
	char dir[] = "/tmp/wandb_test.XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	char name[200];
	wb_state_file_name("abc123", name, sizeof name);
	CHECK(strcmp(name, "abc123.state") == 0, "plain name: %s", name);
	wb_state_file_name("..", name, sizeof name);
	CHECK(strcmp(name, "x2e2e.state") == 0, "hex name: %s", name);
	wb_state_file_name("a b", name, sizeof name);
	CHECK(strcmp(name, "x612062.state") == 0, "space: %s", name);

	uint8_t snap[300];
	for (size_t i = 0; i < sizeof snap; i++)
		snap[i] = (uint8_t)(i * 7);
	struct wb_state st = {.flags = WB_STATE_UPSERTED,
	                      .history_base = 5,
	                      .console_base = 6,
	                      .history_skipped = 7,
	                      .console_skipped = 8,
	                      .entity = "e",
	                      .project = "p q",
	                      .snapshot = snap,
	                      .snapshot_len = sizeof snap};
	CHECK(wb_state_write(dir, "run/../x", &st) == 0, "write");
	struct wb_state rd;
	CHECK(wb_state_read(dir, "run/../x", &rd) == 0, "read");
	CHECK(rd.flags == WB_STATE_UPSERTED && rd.history_base == 5 && rd.console_base == 6 &&
	          rd.history_skipped == 7 && rd.console_skipped == 8 &&
	          strcmp(rd.entity, "e") == 0 && strcmp(rd.project, "p q") == 0 &&
	          rd.snapshot_len == sizeof snap && memcmp(rd.snapshot, snap, sizeof snap) == 0,
	      "round trip");
	wb_state_fini(&rd);
	struct wb_state none = {.flags = WB_STATE_OFFLINE};
	CHECK(wb_state_write(dir, "off", &none) == 0 && wb_state_read(dir, "off", &rd) == 0 &&
	          rd.flags == WB_STATE_OFFLINE && rd.snapshot == NULL && rd.entity &&
	          rd.entity[0] == '\0',
	      "no snapshot, no names");
	wb_state_fini(&rd);
	CHECK(wb_state_read(dir, "missing", &rd) == TRACKD_ENOENT, "missing");

	/* Any flipped byte is detected; a cut file too. */
	char path[300];
	wb_state_file_name("run/../x", name, sizeof name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "r+b");
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	int detected = 0;
	for (long pos = 0; pos < size; pos += 13) {
		fseek(f, pos, SEEK_SET);
		int c = fgetc(f);
		fseek(f, pos, SEEK_SET);
		fputc(c ^ 0x10, f);
		fflush(f);
		detected += wb_state_read(dir, "run/../x", &rd) == TRACKD_ECORRUPT;
		wb_state_fini(&rd);
		fseek(f, pos, SEEK_SET);
		fputc(c, f);
		fflush(f);
	}
	fclose(f);
	CHECK(detected == (size + 12) / 13, "every flip detected: %d", detected);
	CHECK(truncate(path, size - 1) == 0 &&
	          wb_state_read(dir, "run/../x", &rd) == TRACKD_ECORRUPT,
	      "cut");
	struct stat sb;
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 077) == 0, "state files are private");
	CHECK(wb_state_remove(dir, "run/../x") == 0 && wb_state_remove(dir, "run/../x") == 0,
	      "remove twice");
	wb_state_remove(dir, "off");
	rmdir(dir);
}

/* ---- the API key ---------------------------------------------------------------------- */

static void test_api_key(void)
{
	char dir[] = "/tmp/wandb_key.XXXXXX";
	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	char path[300], err[600], *key = NULL;
	snprintf(path, sizeof path, "%s/key", dir);
	const char secret[] = "s3cr3tkeyvalue0123456789";
	FILE *f = fopen(path, "w");
	fprintf(f, "  %s\n", secret);
	fclose(f);
	chmod(path, 0644);
	int rv = wb_load_api_key(path, "WANDB_TEST_NOPE", &key, err, sizeof err);
	CHECK(rv == TRACKD_EPERM && !key, "world-readable key file refused: %d", rv);
	CHECK(strstr(err, "0644") && strstr(err, "chmod 600") && !strstr(err, secret),
	      "says why, not the key: %s", err);
	chmod(path, 0640);
	CHECK(wb_load_api_key(path, NULL, &key, err, sizeof err) == TRACKD_EPERM,
	      "group-readable refused");
	chmod(path, 0600);
	CHECK(wb_load_api_key(path, NULL, &key, err, sizeof err) == 0 && key &&
	          strcmp(key, secret) == 0,
	      "0600 accepted, trimmed");
	free(key);
	key = NULL;
	CHECK(wb_load_api_key(dir, NULL, &key, err, sizeof err) == TRACKD_EPERM,
	      "a directory is refused");
	snprintf(path, sizeof path, "%s/missing", dir);
	CHECK(wb_load_api_key(path, NULL, &key, err, sizeof err) == TRACKD_EINVAL, "missing file");
	setenv("WANDB_TEST_KEY", "envkey123", 1);
	CHECK(wb_load_api_key("", "WANDB_TEST_KEY", &key, err, sizeof err) == 0 &&
	          strcmp(key, "envkey123") == 0,
	      "from the environment");
	free(key);
	key = NULL;
	setenv("WANDB_TEST_KEY", "bad key\r\nX-Injected: 1", 1);
	CHECK(wb_load_api_key("", "WANDB_TEST_KEY", &key, err, sizeof err) == TRACKD_EINVAL &&
	          !strstr(err, "Injected"),
	      "header injection refused: %s", err);
	unsetenv("WANDB_TEST_KEY");
	CHECK(wb_load_api_key("", "WANDB_TEST_KEY", &key, err, sizeof err) == TRACKD_EINVAL &&
	          strstr(err, "WANDB_TEST_KEY"),
	      "no key: %s", err);
	snprintf(path, sizeof path, "%s/key", dir);
	unlink(path);
	rmdir(dir);
}

static void check_app(const char *base, const char *want)
{
	char u[256];
	wb_derive_app_url(base, u, sizeof u);
	CHECK(strcmp(u, want) == 0, "%s -> %s, want %s", base, u, want);
}

static void test_urls(void)
{
	/* The official client's mapping (wandb.util.app_url). */
	check_app("https://api.wandb.ai", "https://wandb.ai");
	check_app("https://api.wandb.ai/", "https://wandb.ai");
	check_app("https://api.wandb.test", "https://app.wandb.test");
	check_app("https://api.example.com", "https://app.example.com");
	check_app("https://api.example.com/base//", "https://app.example.com/base");
	check_app("http://localhost:8080", "http://localhost:8080");
	check_app("http://127.0.0.1:8080/", "http://127.0.0.1:8080");
	check_app("https://wandb.corp.example", "https://wandb.corp.example");
	/* "api" only as the first label of the host counts. */
	check_app("https://myapi.example.com", "https://myapi.example.com");
	check_app("https://example.com/api.x", "https://example.com/api.x");
	/* A result that does not fit is cut, never overrun. */
	char small[12];
	memset(small, 'x', sizeof small);
	wb_derive_app_url("https://api.wandb.ai", small, sizeof small);
	CHECK(strcmp(small, "https://wan") == 0, "%s", small);
	/* Credentials in the API URL never reach a shown URL. */
	check_app("https://u:secret@api.example.com/x", "https://app.example.com/x");
	check_app("http://a@b:pw@localhost:8080", "http://localhost:8080");
	char plain[128];
	wb_strip_userinfo("https://k@h/p@q", plain, sizeof plain);
	CHECK(strcmp(plain, "https://h/p@q") == 0, "%s", plain);
	wb_strip_userinfo("https://h/p", plain, sizeof plain);
	CHECK(strcmp(plain, "https://h/p") == 0, "%s", plain);
	char t1[] = "/", t2[] = "a//", t3[] = "";
	wb_trim_slashes(t1);
	wb_trim_slashes(t2);
	wb_trim_slashes(t3);
	CHECK(!*t1 && strcmp(t2, "a") == 0 && !*t3, "trim");
}

/* ---- run files ------------------------------------------------------------------ */

/* CHECK_STR_EQ through a pointer: fixed-size result fields would trip -Wformat-truncation. */
static void check_str(const char *got, const char *want, const char *what)
{
	CHECK_STR_EQ(got, want, "%s", what);
}

static void test_create_run_files_body(void)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	const char *names[] = {"media/images/a_1_0123.png", "config.yaml", "we\"ird\n.txt"};
	CHECK(wb_build_create_run_files("ent", "proj", "abc123", names, 3, &b) == 0, "build");
	CHECK(json_ok(b.data, b.len), "valid JSON: %s", b.data);
	struct json_object *root = parse(b.data, b.len);
	CHECK_STR_EQ(json_object_get_string(at(root, "/operationName")), "CreateRunFiles");
	CHECK_STR_EQ(json_object_get_string(at(root, "/query")),
	             "mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, "
	             "$files: [String!]!) { createRunFiles(input: {entityName: $entity, "
	             "projectName: $project, runName: $run, files: $files}) { runID "
	             "uploadHeaders files { name uploadUrl } } }");
	CHECK_STR_EQ(json_object_get_string(at(root, "/variables/entity")), "ent");
	CHECK_STR_EQ(json_object_get_string(at(root, "/variables/project")), "proj");
	CHECK_STR_EQ(json_object_get_string(at(root, "/variables/run")), "abc123");
	CHECK_EQ(json_object_array_length(at(root, "/variables/files")), 3);
	CHECK_STR_EQ(json_object_get_string(at(root, "/variables/files/2")), "we\"ird\n.txt",
	             "names escaped, kept");
	json_object_put(root);

	/* Refusals leave the buffer as it was. */
	const char *many[WB_RUN_FILES_BATCH + 1];
	for (size_t i = 0; i <= WB_RUN_FILES_BATCH; i++)
		many[i] = "f";
	size_t len = b.len;
	CHECK(wb_build_create_run_files("e", "p", "r", many, WB_RUN_FILES_BATCH, &b) == 0,
	      "a full batch");
	b.len = len;
	b.data[len] = '\0';
	CHECK(wb_build_create_run_files("e", "p", "r", many, WB_RUN_FILES_BATCH + 1, &b) ==
	          TRACKD_EINVAL,
	      "batch + 1 refused");
	CHECK(wb_build_create_run_files("e", "p", "r", many, 0, &b) == TRACKD_EINVAL, "none");
	const char *empty[] = {""};
	CHECK(wb_build_create_run_files("e", "p", "r", empty, 1, &b) == TRACKD_EINVAL, "empty");
	const char *nul[] = {NULL};
	CHECK(wb_build_create_run_files("e", "p", "r", nul, 1, &b) == TRACKD_EINVAL, "NULL");
	char *longname = malloc(WB_RUN_FILE_NAME_MAX + 1);
	memset(longname, 'x', WB_RUN_FILE_NAME_MAX);
	longname[WB_RUN_FILE_NAME_MAX] = '\0';
	const char *ln[] = {longname};
	CHECK(wb_build_create_run_files("e", "p", "r", ln, 1, &b) == TRACKD_EINVAL, "max name");
	longname[WB_RUN_FILE_NAME_MAX - 1] = '\0';
	CHECK(wb_build_create_run_files("e", "p", "r", ln, 1, &b) == 0, "max - 1 name");
	b.len = len;
	b.data[len] = '\0';
	free(longname);
	CHECK(wb_build_create_run_files("", "p", "r", names, 1, &b) == TRACKD_EINVAL, "entity");
	CHECK(wb_build_create_run_files("e", NULL, "r", names, 1, &b) == TRACKD_EINVAL, "project");
	CHECK(wb_build_create_run_files("e", "p", "", names, 1, &b) == TRACKD_EINVAL, "run");
	CHECK(b.len == len, "unchanged on refusal");

	/* The buffer's own bound. */
	struct buf small;
	buf_init(&small, 64);
	CHECK(wb_build_create_run_files("e", "p", "r", names, 1, &small) == TRACKD_ETOOBIG,
	      "too big");
	CHECK(small.len == 0, "nothing left behind");
	buf_fini(&small);
	buf_fini(&b);
}

static enum wb_verdict crf(const char *body, const char *const *names, size_t n,
                           struct wb_run_files_result *r)
{
	return wb_parse_create_run_files(body, strlen(body), names, n, r);
}

static void test_create_run_files_response(void)
{
	struct wb_run_files_result *r = malloc(sizeof *r);
	const char *names[] = {"a.txt", "media/b.png"};
	/* Answered in another order, as a GraphQL server may. */
	const char ok[] =
	    "{\"data\":{\"createRunFiles\":{\"runID\":\"UnVu\","
	    "\"uploadHeaders\":[\"Content-Type:application/octet-stream\","
	    "\"x-goog-meta-x: a:b \",\"X-Empty:\"],"
	    "\"files\":[{\"name\":\"media/b.png\",\"uploadUrl\":\"https://s/b?sig=1\"},"
	    "{\"name\":\"a.txt\",\"uploadUrl\":\"https://s/a?sig=2\"}]}}}";
	CHECK(crf(ok, names, 2, r) == WB_OK, "ok: %s", r->error);
	CHECK_EQ(r->n_files, 2);
	CHECK(r->files[0].has_url && r->files[1].has_url, "urls");
	check_str(r->files[0].upload_url, "https://s/a?sig=2", "matched by name");
	check_str(r->files[1].upload_url, "https://s/b?sig=1", "");
	CHECK_EQ(r->n_headers, 3);
	check_str(r->headers[1], "x-goog-meta-x: a:b ", "kept as W&B sent it");

	struct wb_put_headers h;
	CHECK(wb_put_headers(r, 12345, &h) == 0, "put headers");
	CHECK_EQ(h.n, 5);
	check_str(h.lines[0], "Content-Type: application/octet-stream", "");
	check_str(h.lines[1], "x-goog-meta-x: a:b", "split at the first ':', trimmed");
	check_str(h.lines[2], "X-Empty;", "curl's empty header form");
	check_str(h.lines[3], "Content-Length: 12345", "");
	check_str(h.lines[4], "Expect:", "");
	struct wb_run_files_result none = {0};
	CHECK(wb_put_headers(&none, 0, &h) == 0 && h.n == 2, "no uploadHeaders");
	check_str(h.lines[0], "Content-Length: 0", "an empty file says 0");

	/* null uploadUrl (W&B's *string), empty one, null/absent uploadHeaders. */
	CHECK(crf("{\"data\":{\"createRunFiles\":{\"uploadHeaders\":null,\"files\":["
	          "{\"name\":\"a.txt\",\"uploadUrl\":null},{\"name\":\"media/b.png\","
	          "\"uploadUrl\":\"\"}]}}}",
	          names, 2, r) == WB_OK,
	      "null url: %s", r->error);
	CHECK(!r->files[0].has_url && !r->files[1].has_url && r->n_headers == 0, "no urls");
	CHECK(crf("{\"data\":{\"createRunFiles\":{\"files\":[{\"name\":\"a.txt\"}]}}}", names, 1,
	          r) == WB_OK,
	      "absent url and headers");
	CHECK(!r->files[0].has_url, "absent url");

	/* A header without ':' is skipped, as W&B does. */
	CHECK(crf("{\"data\":{\"createRunFiles\":{\"uploadHeaders\":[\"junk\",\"A:b\"],"
	          "\"files\":[{\"name\":\"a.txt\",\"uploadUrl\":\"u\"}]}}}",
	          names, 1, r) == WB_OK,
	      "skipped header");
	CHECK(r->n_headers == 1 && r->headers_skipped == 1, "one kept, one skipped");

	/* Unusable answers: retried, and nothing of them is kept. */
	static const char *const retry[] = {
	    "",
	    "<html>502</html>",
	    "{\"data\":{\"createRunFiles\":null}}",
	    "{\"data\":{\"createRunFiles\":{\"files\":{}}}}",
	    "{\"data\":{\"createRunFiles\":{\"files\":[{\"name\":\"a.txt\",\"uploadUrl\":\"u\"}]}}"
	    "}",
	    "{\"data\":{\"createRunFiles\":{\"files\":[{\"name\":\"a.txt\",\"uploadUrl\":\"u\"},"
	    "{\"name\":\"a.txt\",\"uploadUrl\":\"u\"}]}}}",
	    "{\"data\":{\"createRunFiles\":{\"files\":[{\"name\":\"a.txt\",\"uploadUrl\":\"u\"},"
	    "{\"name\":\"other\",\"uploadUrl\":\"u\"}]}}}",
	    "{\"data\":{\"createRunFiles\":{\"files\":[{\"name\":\"a.txt\",\"uploadUrl\":7},"
	    "{\"name\":\"media/b.png\",\"uploadUrl\":\"u\"}]}}}",
	    "{\"data\":{\"createRunFiles\":{\"files\":[{\"uploadUrl\":\"u\"},"
	    "{\"name\":\"media/b.png\",\"uploadUrl\":\"u\"}]}}}",
	    "{\"data\":{\"createRunFiles\":{\"files\":[7,8]}}}",
	    "{\"data\":{\"createRunFiles\":{\"uploadHeaders\":\"A:b\",\"files\":[]}}}",
	    "{\"data\":{\"createRunFiles\":{\"uploadHeaders\":[1],\"files\":[]}}}",
	    "{\"data\":{\"createRunFiles\":{\"files\":[{\"name\":\"a.txt\",\"uploadUrl\":\"u\"},"
	    "{\"name\":\"media/b.png\",\"uploadUrl\":\"u\\u0000x\"}]}}}",
	};
	for (size_t i = 0; i < sizeof retry / sizeof *retry; i++) {
		CHECK(crf(retry[i], names, 2, r) == WB_RETRY, "retry %zu: %s", i, retry[i]);
		CHECK(r->error[0] && r->n_files == 0 && r->n_headers == 0, "retry %zu: %s", i,
		      r->error);
	}

	/* GraphQL errors. */
	CHECK(crf("{\"errors\":[{\"message\":\"run not found\"}],\"data\":null}", names, 2, r) ==
	          WB_PERMANENT,
	      "graphql error");
	check_str(r->error, "run not found", "");

	/* Header injection: refused for good, nothing kept. */
	static const char *const inject[] = {
	    "A:b\\r\\nX-Evil: 1",
	    "A:b\\nX",
	    "A:b\\u0000c",
	    "A b:c",
	    "A\\r\\nB:c",
	    ":v",
	    "Content-Length:5",
	    "host:x",
	    "Transfer-Encoding:chunked",
	    "A:\\u007f",
	};
	for (size_t i = 0; i < sizeof inject / sizeof *inject; i++) {
		char body[512];
		snprintf(body, sizeof body,
		         "{\"data\":{\"createRunFiles\":{\"uploadHeaders\":[\"%s\"],"
		         "\"files\":[{\"name\":\"a.txt\",\"uploadUrl\":\"u\"}]}}}",
		         inject[i]);
		CHECK(crf(body, names, 1, r) == WB_PERMANENT, "inject %zu: %s", i, inject[i]);
		CHECK(r->n_files == 0 && r->n_headers == 0 && r->error[0], "inject %zu", i);
	}

	/* Huge answers: a URL or a header at its bound, and one past it. */
	size_t big = 3 * WB_UPLOAD_URL_MAX + 4096;
	char *body = malloc(big), *s = malloc(WB_UPLOAD_URL_MAX + 1);
	memset(s, 'u', WB_UPLOAD_URL_MAX);
	s[WB_UPLOAD_URL_MAX] = '\0';
	snprintf(body, big,
	         "{\"data\":{\"createRunFiles\":{\"files\":[{\"name\":\"a.txt\",\"uploadUrl\":\"%"
	         "s\"}]}}}",
	         s);
	CHECK(crf(body, names, 1, r) == WB_RETRY, "URL of WB_UPLOAD_URL_MAX bytes");
	s[WB_UPLOAD_URL_MAX - 1] = '\0';
	snprintf(body, big,
	         "{\"data\":{\"createRunFiles\":{\"files\":[{\"name\":\"a.txt\",\"uploadUrl\":\"%"
	         "s\"}]}}}",
	         s);
	CHECK(crf(body, names, 1, r) == WB_OK &&
	          strlen(r->files[0].upload_url) == WB_UPLOAD_URL_MAX - 1,
	      "URL of max - 1 bytes kept whole");
	memset(s, 'v', WB_UPLOAD_HEADER_MAX);
	s[0] = 'A';
	s[1] = ':';
	s[WB_UPLOAD_HEADER_MAX] = '\0';
	snprintf(body, big,
	         "{\"data\":{\"createRunFiles\":{\"uploadHeaders\":[\"%s\"],\"files\":[{\"name\":"
	         "\"a.txt\",\"uploadUrl\":\"u\"}]}}}",
	         s);
	CHECK(crf(body, names, 1, r) == WB_RETRY, "header of WB_UPLOAD_HEADER_MAX bytes");
	s[WB_UPLOAD_HEADER_MAX - 1] = '\0';
	snprintf(body, big,
	         "{\"data\":{\"createRunFiles\":{\"uploadHeaders\":[\"%s\"],\"files\":[{\"name\":"
	         "\"a.txt\",\"uploadUrl\":\"u\"}]}}}",
	         s);
	CHECK(crf(body, names, 1, r) == WB_OK, "header of max - 1 bytes: %s", r->error);
	CHECK(wb_put_headers(r, 1, &h) == 0, "the longest header fits a line");
	free(s);
	/* Too many headers. */
	struct buf hb;
	buf_init(&hb, 1 << 20);
	buf_puts(&hb, "{\"data\":{\"createRunFiles\":{\"uploadHeaders\":[");
	for (int i = 0; i <= WB_UPLOAD_HEADERS; i++)
		buf_printf(&hb, "%s\"H%d:v\"", i ? "," : "", i);
	buf_puts(&hb, "],\"files\":[{\"name\":\"a.txt\",\"uploadUrl\":\"u\"}]}}}");
	CHECK(crf(hb.data, names, 1, r) == WB_RETRY, "WB_UPLOAD_HEADERS + 1 headers");
	buf_fini(&hb);
	/* A batch larger than the bound is the caller's error. */
	CHECK(wb_parse_create_run_files(ok, sizeof ok - 1, names, 0, r) == WB_PERMANENT, "n 0");
	/* Deep nesting. */
	memset(body, '[', big - 1);
	body[big - 1] = '\0';
	CHECK(crf(body, names, 1, r) == WB_RETRY, "deep nesting");
	free(body);
	free(r);
}

static void test_upload_header_line(void)
{
	char out[64];
	CHECK(wb_upload_header_line("A:b", 3, out, sizeof out) == 0, "plain");
	check_str(out, "A: b", "");
	CHECK(wb_upload_header_line("A:\tb c\t ", 8, out, sizeof out) == 0, "trimmed");
	check_str(out, "A: b c", "");
	CHECK(wb_upload_header_line("A: ", 3, out, sizeof out) == 0, "blank value");
	check_str(out, "A;", "");
	CHECK(wb_upload_header_line("A:b\0c", 5, out, sizeof out) == TRACKD_EINVAL, "NUL");
	CHECK(wb_upload_header_line("A:b\r", 4, out, sizeof out) == TRACKD_EINVAL, "CR");
	CHECK(wb_upload_header_line("A\n:b", 4, out, sizeof out) == TRACKD_EINVAL, "LF in name");
	CHECK(wb_upload_header_line("Expect:100-continue", 19, out, sizeof out) == TRACKD_EINVAL,
	      "Expect is ours");
	CHECK(wb_upload_header_line("content-length:1", 16, out, sizeof out) == TRACKD_EINVAL,
	      "case-insensitive");
	CHECK(wb_upload_header_line("Content-Lengthy:1", 17, out, sizeof out) == 0,
	      "only the exact name");
	CHECK(wb_upload_header_line("A:bcd", 5, out, 7) == 0, "exact fit: \"A: bcd\" and NUL");
	CHECK(wb_upload_header_line("A:bcd", 5, out, 6) == TRACKD_ETOOBIG, "one byte over");
}

static void test_classify_put(void)
{
	static const long ok[] = {200, 201, 204, 299};
	static const long retry[] = {0, 408, 429, 500, 502, 503, 504, 599};
	static const long permanent[] = {400, 401, 404, 405, 409, 410,
	                                 411, 413, 501, 301, 307, 100};
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
		CHECK(wb_classify_put(ok[i]) == WB_PUT_OK, "%ld", ok[i]);
	for (size_t i = 0; i < sizeof retry / sizeof *retry; i++)
		CHECK(wb_classify_put(retry[i]) == WB_PUT_RETRY, "%ld", retry[i]);
	for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++)
		CHECK(wb_classify_put(permanent[i]) == WB_PUT_PERMANENT, "%ld", permanent[i]);
	CHECK(wb_classify_put(403) == WB_PUT_RENEW_URL, "403: the URL expired");
}

static void test_file_stream_uploaded(void)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	struct wb_stream_out out;
	const char *up[] = {"media/images/a.png", "config.yaml"};
	const char hist[] = "{\"a\":1}\n";
	struct wb_stream_in in = {
	    .history = {hist, sizeof hist - 1, 4},
	    .uploaded = up,
	    .n_uploaded = 2,
	    .complete = true,
	    .exitcode = 0,
	    .max_body = 10 << 20,
	    .max_line = 1 << 20,
	};
	CHECK(wb_build_file_stream(&in, &b, &out) == 0, "build");
	CHECK_STR_EQ(
	    b.data,
	    "{\"files\":{\"wandb-history.jsonl\":{\"offset\":4,\"content\":[\"{\\\"a\\\":1}\"]}},"
	    "\"uploaded\":[\"media/images/a.png\",\"config.yaml\"],"
	    "\"complete\":true,\"exitcode\":0}");
	CHECK(out.uploaded_sent && out.all && out.complete_sent, "sent");

	/* Only the list. */
	buf_reset(&b);
	in.history.len = 0;
	in.complete = false;
	CHECK(wb_build_file_stream(&in, &b, &out) == 0, "build");
	CHECK_STR_EQ(b.data, "{\"uploaded\":[\"media/images/a.png\",\"config.yaml\"]}");
	CHECK(!out.empty && out.uploaded_sent, "not a heartbeat");

	/* Whole or not at all: the lines go first, the list waits. */
	buf_reset(&b);
	in.history.len = sizeof hist - 1;
	in.complete = true;
	size_t list = sizeof ",\"uploaded\":[\"media/images/a.png\",\"config.yaml\"]" - 1;
	size_t line = sizeof "\"{\\\"a\\\":1}\"";
	in.max_body = 416 + line + list - 1;
	CHECK(wb_build_file_stream(&in, &b, &out) == 0, "build");
	CHECK(!out.uploaded_sent && !out.all && !out.complete_sent && out.history_lines == 1,
	      "list left for the next request: %s", b.data);
	CHECK(strstr(b.data, "uploaded") == NULL, "%s", b.data);
	buf_reset(&b);
	in.max_body = 416 + line + list;
	CHECK(wb_build_file_stream(&in, &b, &out) == 0, "build");
	CHECK(out.uploaded_sent && out.all && out.complete_sent, "exact fit: %s", b.data);
	CHECK(b.len <= in.max_body, "within max_body");

	/* A list that could never fit is the caller's to split. */
	buf_reset(&b);
	in.max_body = 416 + list - 1;
	CHECK(wb_build_file_stream(&in, &b, &out) == TRACKD_ETOOBIG, "list too long");
	CHECK(b.len == 0, "nothing written");
	/* Hostile names are JSON-escaped. */
	buf_reset(&b);
	const char *odd[] = {"a\"b\n\x01.txt"};
	in.uploaded = odd;
	in.n_uploaded = 1;
	in.max_body = 10 << 20;
	CHECK(wb_build_file_stream(&in, &b, &out) == 0 && json_ok(b.data, b.len), "escaped: %s",
	      b.data);
	buf_fini(&b);
}

/* config.yaml: the local store's layout (vmap_to_config_yaml) with the client's
 * `_wandb` last; a `_wandb` of the run's own is replaced, as in UpsertBucket. */
static void test_config_yaml(void)
{
	struct vmap m;
	vmap_init(&m);
	struct vvalue name = {.kind = V_STRING, .u.s = "resnet"};
	struct vvalue own = {.kind = V_STRING, .u.s = "theirs"};
	CHECK(vmap_set_double(&m, "lr", 0.01) == 0 && vmap_set_int(&m, "epochs", 10) == 0 &&
	          vmap_set(&m, "_wandb", &own) == 0 && vmap_set(&m, "model", &name) == 0,
	      "set");
	struct buf y;
	buf_init(&y, 1 << 20);
	CHECK(wb_build_config_yaml(&m, "0.3.0", &y) == 0, "build");
	check_str(y.data,
	          "wandb_version: 1\n"
	          "\nlr:\n  desc: null\n  value: 0.01\n"
	          "\nepochs:\n  desc: null\n  value: 10\n"
	          "\nmodel:\n  desc: null\n  value: \"resnet\"\n"
	          "\n_wandb:\n  desc: null\n  value:\n    t:\n      \"5\": \"0.3.0\"\n",
	          "config.yaml");
	CHECK(strstr(y.data, "theirs") == NULL, "the run's own _wandb is replaced");
	CHECK(vmap_get(&m, "_wandb") && m.n == 4, "the config is not changed");

	buf_reset(&y);
	CHECK(wb_build_config_yaml(NULL, NULL, &y) == 0, "empty config");
	check_str(y.data,
	          "wandb_version: 1\n"
	          "\n_wandb:\n  desc: null\n  value:\n    t:\n      \"5\": \"trackd\"\n",
	          "only _wandb");
	buf_fini(&y);

	/* The buf's bound: refused, nothing left behind. */
	struct buf small;
	buf_init(&small, 40);
	CHECK(wb_build_config_yaml(&m, "0.3.0", &small) == TRACKD_ETOOBIG, "too big");
	CHECK(small.len == 0, "nothing left behind");
	buf_fini(&small);
	vmap_fini(&m);
}

int main(void)
{
	test_backoff();
	test_classify();
	test_retry_after();
	test_json_parse();
	test_json_string();
	test_upsert_body();
	test_upsert_response();
	test_file_stream_body();
	test_stopped();
	test_store();
	test_api_key();
	test_urls();
	test_create_run_files_body();
	test_create_run_files_response();
	test_upload_header_line();
	test_classify_put();
	test_file_stream_uploaded();
	test_config_yaml();
	return CHECK_SUMMARY("wandb_test");
}
