/*
 * pb_json_test.c — typed replies as JSON (trackd/v1/pb_json.h): the shapes the
 * Python Api and `trackctl --json` read. Unset optional fields are null,
 * repeated fields arrays, values as the store writes them, history lines
 * verbatim, a oneof only by its set member.
 */
#include "trackd/v1/pb_json.h"

#include "check.h"
#include "errors.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

static const char *json_of(const ProtobufCMessage *m, struct buf *b)
{
	buf_reset(b);
	int rv = pb_json_write(m, b);
	CHECK_EQ(rv, 0);
	return b->data ? b->data : "";
}

static void test_run_info(void)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	Trackd__V1__Value d = TRACKD__V1__VALUE__INIT, i = TRACKD__V1__VALUE__INIT,
	                  n = TRACKD__V1__VALUE__INIT, s = TRACKD__V1__VALUE__INIT,
	                  l = TRACKD__V1__VALUE__INIT, nan = TRACKD__V1__VALUE__INIT;
	d.kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
	d.double_value = 0.1;
	i.kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
	i.int_value = INT64_MIN;
	Trackd__V1__NullValue nv = TRACKD__V1__NULL_VALUE__INIT;
	n.kind_case = TRACKD__V1__VALUE__KIND_NULL_VALUE;
	n.null_value = &nv;
	s.kind_case = TRACKD__V1__VALUE__KIND_STRING_VALUE;
	s.string_value = "a\"b\n\xc3\xa9";
	nan.kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
	nan.double_value = NAN;
	Trackd__V1__Value *elems[] = {&d, &nan};
	Trackd__V1__ListValue lv = TRACKD__V1__LIST_VALUE__INIT;
	lv.values = elems;
	lv.n_values = 2;
	l.kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
	l.list_value = &lv;
	Trackd__V1__Item it[5] = {TRACKD__V1__ITEM__INIT, TRACKD__V1__ITEM__INIT,
	                          TRACKD__V1__ITEM__INIT, TRACKD__V1__ITEM__INIT,
	                          TRACKD__V1__ITEM__INIT};
	const char *keys[] = {"lr", "big", "none", "s", "l"};
	Trackd__V1__Value *vals[] = {&d, &i, &n, &s, &l};
	Trackd__V1__Item *items[5];
	for (int k = 0; k < 5; k++) {
		it[k].key = (char *)keys[k];
		it[k].value = vals[k];
		items[k] = &it[k];
	}
	Trackd__V1__MapValue config = TRACKD__V1__MAP_VALUE__INIT;
	config.items = items;
	config.n_items = 5;
	Trackd__V1__MapValue empty = TRACKD__V1__MAP_VALUE__INIT;

	Trackd__V1__RunInfo ri = TRACKD__V1__RUN_INFO__INIT;
	ri.id = "r1";
	ri.state = "running";
	ri.has_start_time = true;
	ri.start_time = 1700000000.5;
	int32_t pids[] = {12, 34};
	ri.pids = pids;
	ri.n_pids = 2;
	ri.has_uid = true;
	ri.uid = 1000;
	ri.summary = &empty;
	ri.config = &config;
	/* Longer than CHECK_STR_EQ's message buffer: compared, then printed. */
	const char *want_ri =
	    "{\"id\":\"r1\",\"entity\":null,\"project\":null,\"path\":null,"
	    "\"display_name\":null,\"state\":\"running\",\"dir\":null,"
	    "\"start_time\":1700000000.5,\"end_time\":null,\"exit_code\":null,"
	    "\"host\":null,\"pids\":[12,34],\"uid\":1000,\"notes\":null,\"tags\":[],"
	    "\"group\":null,\"job_type\":null,\"mode\":null,\"history_lines\":null,"
	    "\"console_lines\":null,\"rows_rejected\":null,\"summary\":{},"
	    "\"config\":{\"lr\":0.1,\"big\":-9223372036854775808,\"none\":null,"
	    "\"s\":\"a\\\"b\\n\xc3\xa9\",\"l\":[0.1,NaN]},\"imported\":null}";
	const char *got_ri = json_of(&ri.base, &b);
	CHECK(strcmp(got_ri, want_ri) == 0, "RunInfo as JSON: got %s", got_ri);

	/* A bounded buffer: the overflow is reported, not written past. */
	struct buf small;
	buf_init(&small, 16);
	CHECK_EQ(pb_json_write(&ri.base, &small), TRACKD_ETOOBIG);
	buf_fini(&small);
	buf_fini(&b);
}

static void test_history_and_oneof(void)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	uint8_t row1[] = "{\"_step\":0,\"loss\":Infinity}", row2[] = "{\"_step\":1}";
	ProtobufCBinaryData lines[] = {{sizeof row1 - 1, row1}, {sizeof row2 - 1, row2}};
	Trackd__V1__HistoryPage hp = TRACKD__V1__HISTORY_PAGE__INIT;
	hp.run = "e/p/r1";
	hp.has_from_line = hp.has_next_line = hp.has_total_lines = true;
	hp.from_line = 0;
	hp.next_line = 2;
	hp.total_lines = 7;
	hp.lines = lines;
	hp.n_lines = 2;
	Trackd__V1__QueryReply qr = TRACKD__V1__QUERY_REPLY__INIT;
	qr.reply_case = TRACKD__V1__QUERY_REPLY__REPLY_HISTORY;
	qr.history = &hp;
	const char *want = "{\"run\":\"e/p/r1\",\"from_line\":0,\"lines\":[{\"_step\":0,"
	                   "\"loss\":Infinity},{\"_step\":1}],\"next_line\":2,\"total_lines\":7}";
	CHECK_EQ(pb_json_query_reply(&qr, &b), 0);
	CHECK_STR_EQ((b.data ? b.data : ""), want);
	/* The whole QueryReply: only the set member of the oneof. */
	CHECK_STR_EQ(json_of(&qr.base, &b), "{\"history\":{\"run\":\"e/p/r1\",\"from_line\":0,"
	                                    "\"lines\":[{\"_step\":0,\"loss\":Infinity},"
	                                    "{\"_step\":1}],\"next_line\":2,\"total_lines\":7}}");
	Trackd__V1__QueryReply none = TRACKD__V1__QUERY_REPLY__INIT;
	buf_reset(&b);
	CHECK_EQ(pb_json_query_reply(&none, &b), TRACKD_EINVAL);

	/* Nested messages and repeated strings. */
	Trackd__V1__RetryReply rr = TRACKD__V1__RETRY_REPLY__INIT;
	char *ids[] = {"a", "b"};
	rr.has_ok = rr.ok = true;
	rr.retried = ids;
	rr.n_retried = 2;
	CHECK_STR_EQ(json_of(&rr.base, &b), "{\"ok\":true,\"retried\":[\"a\",\"b\"]}");
	Trackd__V1__WandbStatusReply__Counters c = TRACKD__V1__WANDB_STATUS_REPLY__COUNTERS__INIT;
	c.has_requests_ok = true;
	c.requests_ok = UINT64_MAX;
	Trackd__V1__WandbStatusReply ws = TRACKD__V1__WANDB_STATUS_REPLY__INIT;
	ws.base_url = "http://x";
	ws.counters = &c;
	const char *j = json_of(&ws.base, &b);
	const char *prefix = "{\"base_url\":\"http://x\",\"counters\":{\"requests_ok\":"
	                     "18446744073709551615,\"requests_failed\":null,";
	CHECK(strncmp(j, prefix, strlen(prefix)) == 0, "got %s", j);
	CHECK(strstr(j, "\"runs\":[]}") != NULL, "got %s", j);
	/* Only what is set, for StatusReply whose fields come and go. */
	Trackd__V1__StatusReply st = TRACKD__V1__STATUS_REPLY__INIT;
	st.version = "1.2";
	st.has_log_bytes = true;
	st.log_bytes = 7;
	st.has_wandb_enabled = true;
	buf_reset(&b);
	CHECK_EQ(pb_json_write_present(&st.base, &b), 0);
	CHECK_STR_EQ(b.data, "{\"version\":\"1.2\",\"log_bytes\":7,\"wandb_enabled\":false}");
	buf_fini(&b);
}

/* A value inside PB_JSON_MAX_DEPTH lists is written; inside one more it is
 * refused, not recursed into without end. */
static void test_depth_bound(void)
{
	enum { LEVELS = PB_JSON_MAX_DEPTH + 1 };
	static Trackd__V1__Value values[LEVELS + 1];
	static Trackd__V1__ListValue lists[LEVELS];
	static Trackd__V1__Value *items[LEVELS];
	struct buf b;
	buf_init(&b, 1u << 20);
	for (int n = PB_JSON_MAX_DEPTH - 1; n <= PB_JSON_MAX_DEPTH + 1; n++) {
		/* values[0] holds lists[0] holds values[1] … holds values[n] = 7 */
		for (int i = 0; i < n; i++) {
			values[i] = (Trackd__V1__Value)TRACKD__V1__VALUE__INIT;
			lists[i] = (Trackd__V1__ListValue)TRACKD__V1__LIST_VALUE__INIT;
			values[i].kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
			values[i].list_value = &lists[i];
			items[i] = &values[i + 1];
			lists[i].n_values = 1;
			lists[i].values = &items[i];
		}
		values[n] = (Trackd__V1__Value)TRACKD__V1__VALUE__INIT;
		values[n].kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
		values[n].int_value = 7;
		buf_reset(&b);
		int rv = pb_json_value(&values[0], &b);
		if (n <= PB_JSON_MAX_DEPTH) {
			CHECK_EQ(rv, 0);
			CHECK_EQ(b.len, 2 * (size_t)n + 1);
			CHECK(b.data[n] == '7', "depth %d", n);
		} else {
			CHECK_EQ(rv, TRACKD_ETOOBIG);
		}
	}
	buf_fini(&b);
}

/* RunFileChunk.data is a file's bytes, not JSON: base64 (every padding). */
static void test_file_bytes_base64(void)
{
	struct buf b;
	buf_init(&b, 4096);
	const struct {
		const char *in, *out;
	} cases[] = {{"", "null"},        {"f", "\"Zg==\""},        {"fo", "\"Zm8=\""},
	             {"foo", "\"Zm9v\""}, {"foob", "\"Zm9vYg==\""}, {"\xff\x00\xfe", "\"/wD+\""}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		Trackd__V1__RunFileChunk c = TRACKD__V1__RUN_FILE_CHUNK__INIT;
		size_t n = i == 5 ? 3 : strlen(cases[i].in);
		c.has_data = n > 0;
		c.data.data = (uint8_t *)cases[i].in;
		c.data.len = n;
		const char *json = json_of(&c.base, &b);
		const char *data = json ? strstr(json, "\"data\":") : NULL;
		CHECK(data && strncmp(data + 7, cases[i].out, strlen(cases[i].out)) == 0, "%s",
		      json ? json : "(none)");
	}
	buf_fini(&b);
}

int main(void)
{
	test_run_info();
	test_history_and_oneof();
	test_depth_bound();
	test_file_bytes_base64();
	return CHECK_SUMMARY("pb_json_test");
}
