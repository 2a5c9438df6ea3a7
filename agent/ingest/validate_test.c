/* validate_test — every rule of validate.c, each limit at limit−1, limit, limit+1,
 * and hostile wire input (deep nesting, truncation) that must be refused without
 * crashing or recursing without bound. Also the dedupe table and LogEntry
 * encoding round trip through protobuf-c. */
#include "ingest.h"
#include "sessions.h"
#include "validate.h"
#include "varint.h"
#include "trackd/v1/wire.h"

#include "trackd/v1/limits.h"
#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static const struct validate_limits small = {
    .max_records_per_batch = 4,
    .max_items_per_record = 5,
    .max_key_bytes = 8,
    .max_string_bytes = 16,
    .max_nesting_depth = 3,
    .max_list_length = 3,
};

/* 32 bytes so tests can send an over-long (17-byte) session id from it. */
static uint8_t session[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};

/* Packs Request{version, batch{session, seq, records}}; caller frees. */
static uint8_t *pack_batch(Trackd__V1__Record **records, size_t n, size_t session_len, uint64_t seq,
                           uint32_t version, size_t *len)
{
	Trackd__V1__Batch b = TRACKD__V1__BATCH__INIT;
	b.has_session_id = true;
	b.session_id.data = session;
	b.session_id.len = session_len;
	b.has_seq = true;
	b.seq = seq;
	b.records = records;
	b.n_records = n;
	Trackd__V1__Request r = TRACKD__V1__REQUEST__INIT;
	r.has_protocol_version = true;
	r.protocol_version = version;
	r.body_case = TRACKD__V1__REQUEST__BODY_BATCH;
	r.batch = &b;
	*len = trackd__v1__request__get_packed_size(&r);
	uint8_t *buf = malloc(*len ? *len : 1);
	trackd__v1__request__pack(&r, buf);
	return buf;
}

/* A history record with `n` flat double items keyed by `key` (+ suffix digit). */
struct row {
	Trackd__V1__Record rec;
	Trackd__V1__HistoryRow hist;
	Trackd__V1__Item items[64];
	Trackd__V1__Item *item_ptrs[64];
	Trackd__V1__Value values[64];
	char keys[64][64];
};

static void make_row(struct row *r, const char *run_id, const char *key, size_t n)
{
	memset(r, 0, sizeof *r);
	trackd__v1__record__init(&r->rec);
	trackd__v1__history_row__init(&r->hist);
	r->rec.run_id = (char *)run_id;
	r->rec.body_case = TRACKD__V1__RECORD__BODY_HISTORY;
	r->rec.history = &r->hist;
	for (size_t i = 0; i < n; i++) {
		trackd__v1__item__init(&r->items[i]);
		trackd__v1__value__init(&r->values[i]);
		if (n > 1)
			snprintf(r->keys[i], sizeof r->keys[i], "%s%zu", key, i);
		else
			snprintf(r->keys[i], sizeof r->keys[i], "%s", key);
		r->items[i].key = r->keys[i];
		r->values[i].kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
		r->values[i].double_value = (double)i;
		r->items[i].value = &r->values[i];
		r->item_ptrs[i] = &r->items[i];
	}
	r->hist.items = r->item_ptrs;
	r->hist.n_items = n;
}

/* Validates a batch of `rows`; the identity in *out is copied into `session_out`
 * (the packed buffer is freed before returning). */
static uint8_t session_out[16];

static int validate_rows(struct row *rows, size_t n, char *err, size_t errlen,
                         struct validated_request *out)
{
	Trackd__V1__Record *recs[16];
	for (size_t i = 0; i < n; i++)
		recs[i] = &rows[i].rec;
	size_t len;
	uint8_t *buf = pack_batch(recs, n, 16, 7, 1, &len);
	int rc = validate_request(&small, buf, len, out, err, errlen);
	memset(session_out, 0, sizeof session_out);
	if (rc == 0 && out->session_id)
		memcpy(session_out, out->session_id, sizeof session_out);
	out->session_id = NULL;
	out->batch = NULL;
	free(buf);
	return rc;
}

static int validate_one(struct row *row, char *err)
{
	struct validated_request out;
	return validate_rows(row, 1, err, 256, &out);
}

static void test_valid_and_identity(void)
{
	struct row r;
	make_row(&r, "abc123", "loss", 3);
	char err[256];
	struct validated_request out;
	int rc = validate_rows(&r, 1, err, sizeof err, &out);
	CHECK(rc == 0, "valid row rejected: %s", err);
	CHECK(out.kind == VALIDATED_BATCH && out.seq == 7 && out.records == 1,
	      "identity: kind %d seq %llu records %llu", out.kind, (unsigned long long)out.seq,
	      (unsigned long long)out.records);
	CHECK(memcmp(session_out, session, 16) == 0, "session id");
}

/* Batches holding a run's start or exit are marked: ingest syncs them before the
 * ack under every fsync policy. Rows alone are not. */
static void test_lifecycle_mark(void)
{
	struct row rows[2];
	make_row(&rows[0], "abc123", "loss", 1);
	make_row(&rows[1], "abc123", "acc", 1);
	char err[256];
	struct validated_request out;
	CHECK(validate_rows(rows, 2, err, sizeof err, &out) == 0 && !out.lifecycle,
	      "rows alone marked as lifecycle");
	Trackd__V1__RunStart start = TRACKD__V1__RUN_START__INIT;
	rows[1].rec.body_case = TRACKD__V1__RECORD__BODY_START;
	rows[1].rec.start = &start;
	CHECK(validate_rows(rows, 2, err, sizeof err, &out) == 0 && out.lifecycle,
	      "a start is not marked: %s", err);
	Trackd__V1__RunExit exit_ = TRACKD__V1__RUN_EXIT__INIT;
	rows[1].rec.body_case = TRACKD__V1__RECORD__BODY_EXIT;
	rows[1].rec.exit = &exit_;
	CHECK(validate_rows(rows, 2, err, sizeof err, &out) == 0 && out.lifecycle,
	      "an exit is not marked: %s", err);
}

/* Validates rows, keeping the batch bytes (the listed runs point into them). */
static int validate_kept(struct row *rows, size_t n, struct validated_request *out, uint8_t **buf)
{
	Trackd__V1__Record *recs[16];
	for (size_t i = 0; i < n; i++)
		recs[i] = &rows[i].rec;
	size_t len;
	char err[256];
	*buf = pack_batch(recs, n, 16, 7, 1, &len);
	struct validate_limits lim = small;
	lim.max_records_per_batch = 16;
	return validate_request(&lim, *buf, len, out, err, sizeof err);
}

/* The batch's distinct runs, listed for ingest's owner check. */
static void test_runs_listed(void)
{
	uint8_t *buf;
	struct row rows[VALIDATE_RUNS_HELD + 1];
	char ids[VALIDATE_RUNS_HELD + 1][8];
	make_row(&rows[0], "aaa", "loss", 1);
	make_row(&rows[1], "bbb", "loss", 1);
	make_row(&rows[2], "aaa", "loss", 1);
	Trackd__V1__RunStart start = TRACKD__V1__RUN_START__INIT;
	rows[1].rec.body_case = TRACKD__V1__RECORD__BODY_START;
	rows[1].rec.start = &start;
	struct validated_request out;
	CHECK(validate_kept(rows, 3, &out, &buf) == 0 && !out.runs_overflow && out.n_runs == 2 &&
	          out.runs[0].len == 3 && !memcmp(out.runs[0].id, "aaa", 3) && !out.runs[0].start &&
	          out.runs[1].len == 3 && !memcmp(out.runs[1].id, "bbb", 3) && out.runs[1].start,
	      "two runs, the second started (%zu runs)", out.n_runs);
	free(buf);
	for (size_t i = 0; i < VALIDATE_RUNS_HELD + 1; i++) {
		snprintf(ids[i], sizeof ids[i], "r%zu", i);
		make_row(&rows[i], ids[i], "loss", 1);
	}
	CHECK(validate_kept(rows, VALIDATE_RUNS_HELD, &out, &buf) == 0 &&
	          out.n_runs == VALIDATE_RUNS_HELD && !out.runs_overflow,
	      "as many runs as held");
	free(buf);
	CHECK(validate_kept(rows, VALIDATE_RUNS_HELD + 1, &out, &buf) == 0 && out.runs_overflow,
	      "more runs than held: overflow");
	free(buf);
}

static void test_version(void)
{
	char err[256];
	struct validated_request out;
	struct row r;
	make_row(&r, "abc", "k", 1);
	Trackd__V1__Record *recs[1] = {&r.rec};
	size_t len;
	uint8_t *buf = pack_batch(recs, 1, 16, 1, 2, &len);
	int rc = validate_request(&small, buf, len, &out, err, sizeof err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION && strstr(err, "version 2"),
	      "version 2: rc %d err '%s'", rc, err);
	free(buf);
	rc = validate_request(&small, "", 0, &out, err, sizeof err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION &&
	          strstr(err, "protocol_version missing"),
	      "empty: rc %d err '%s'", rc, err);
}

static void test_malformed(void)
{
	char err[256];
	struct validated_request out;
	const uint8_t truncated[] = {0x08, 0x01, 0x12, 0x50, 0x0a}; /* batch len 80, 1 byte */
	int rc = validate_request(&small, truncated, sizeof truncated, &out, err, sizeof err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_MALFORMED, "truncated: rc %d err '%s'", rc, err);
	const uint8_t bad_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
	                              0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	rc = validate_request(&small, bad_varint, sizeof bad_varint, &out, err, sizeof err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_MALFORMED, "varint: rc %d", rc);
	/* Field 2 (batch) sent as a varint: wrong wire type. */
	const uint8_t wrong_type[] = {0x08, 0x01, 0x10, 0x05};
	rc = validate_request(&small, wrong_type, sizeof wrong_type, &out, err, sizeof err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_MALFORMED && strstr(err, "wire type"),
	      "wire type: rc %d err '%s'", rc, err);
	/* Version only, no body. */
	const uint8_t no_body[] = {0x08, 0x01};
	rc = validate_request(&small, no_body, sizeof no_body, &out, err, sizeof err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID && strstr(err, "no request body"),
	      "no body: rc %d err '%s'", rc, err);
}

/* Strings with a NUL inside would reach C as a shorter string; tags and lengths
 * over 5 bytes would not decode in protobuf-c. Both are refused up front. */
static void test_nul_and_long_varints(void)
{
	char err[256];
	struct validated_request out;
	struct row r;
	make_row(&r, "abc", "k", 1);
	Trackd__V1__Record *recs[1] = {&r.rec};
	size_t len;
	uint8_t *buf = pack_batch(recs, 1, 16, 1, 1, &len);
	/* Make the key "k" into "\0": find the key field 0a 01 'k'. */
	uint8_t *k = NULL;
	for (size_t i = 0; i + 2 < len; i++)
		if (buf[i] == 0x0a && buf[i + 1] == 0x01 && buf[i + 2] == 'k')
			k = &buf[i + 2];
	CHECK(k != NULL, "key found in the packed request");
	if (k)
		*k = '\0';
	int rc = validate_request(&small, buf, len, &out, err, sizeof err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID && strstr(err, "UTF-8"),
	      "NUL in a key: rc %d '%s'", rc, err);
	free(buf);
	/* Field 1 (version) with its tag written in 6 bytes: 0x88 0x80 0x80 0x80 0x80 0x00. */
	const uint8_t long_tag[] = {0x88, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01};
	rc = validate_request(&small, long_tag, sizeof long_tag, &out, err, sizeof err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_MALFORMED, "6-byte tag: rc %d '%s'", rc, err);
	/* The same tag in 5 bytes is fine for the wire reader. */
	const uint8_t ok_tag[] = {0x88, 0x80, 0x80, 0x80, 0x00, 0x01};
	rc = validate_request(&small, ok_tag, sizeof ok_tag, &out, err, sizeof err);
	CHECK(rc != TRACKD__V1__ERROR_CODE__ERROR_MALFORMED, "5-byte tag: rc %d '%s'", rc, err);
}

static void test_status(void)
{
	Trackd__V1__StatusQuery q = TRACKD__V1__STATUS_QUERY__INIT;
	Trackd__V1__Request r = TRACKD__V1__REQUEST__INIT;
	r.has_protocol_version = true;
	r.protocol_version = 1;
	r.body_case = TRACKD__V1__REQUEST__BODY_STATUS;
	r.status = &q;
	uint8_t buf[16];
	size_t len = trackd__v1__request__pack(&r, buf);
	char err[256];
	struct validated_request out;
	int rc = validate_request(&small, buf, len, &out, err, sizeof err);
	CHECK(rc == 0 && out.kind == VALIDATED_STATUS, "status: rc %d err '%s'", rc, err);
}

static void test_session_and_seq(void)
{
	char err[256];
	struct validated_request out;
	struct row r;
	make_row(&r, "abc", "k", 1);
	Trackd__V1__Record *recs[1] = {&r.rec};
	size_t sizes[] = {15, 16, 17};
	for (int i = 0; i < 3; i++) {
		size_t len;
		uint8_t *buf = pack_batch(recs, 1, sizes[i], 1, 1, &len);
		int rc = validate_request(&small, buf, len, &out, err, sizeof err);
		CHECK((rc == 0) == (sizes[i] == 16), "session id of %zu bytes: rc %d", sizes[i],
		      rc);
		free(buf);
	}
	size_t len;
	uint8_t *buf = pack_batch(recs, 1, 16, 0, 1, &len);
	int rc = validate_request(&small, buf, len, &out, err, sizeof err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID && strstr(err, "seq"), "seq 0: '%s'",
	      err);
	free(buf);
	buf = pack_batch(recs, 0, 16, 1, 1, &len);
	rc = validate_request(&small, buf, len, &out, err, sizeof err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID && strstr(err, "no records"),
	      "no records: '%s'", err);
	free(buf);
}

static void test_records_per_batch(void)
{
	static struct row rows[5];
	for (int i = 0; i < 5; i++)
		make_row(&rows[i], "abc", "k", 1);
	char err[256];
	struct validated_request out;
	for (size_t n = 3; n <= 5; n++) {
		int rc = validate_rows(rows, n, err, sizeof err, &out);
		if (n <= small.max_records_per_batch)
			CHECK(rc == 0 && out.records == n, "%zu records: rc %d '%s'", n, rc, err);
		else
			CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE &&
			          strstr(err, "more than 4 records"),
			      "%zu records: rc %d '%s'", n, rc, err);
	}
}

static void test_key_limits(void)
{
	char err[256];
	struct row r;
	const char *keys[] = {"abcdefg", "abcdefgh", "abcdefghi"}; /* 7, 8, 9 bytes */
	for (int i = 0; i < 3; i++) {
		make_row(&r, "abc", keys[i], 1);
		int rc = validate_one(&r, err);
		if (i < 2)
			CHECK(rc == 0, "key of %zu bytes: rc %d '%s'", strlen(keys[i]), rc, err);
		else
			CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE &&
			          strstr(err, "batch.records[0].history.items[0].key: key is 9 "
			                      "bytes, limit 8"),
			      "key of 9 bytes: rc %d '%s'", rc, err);
	}
	make_row(&r, "abc", "", 1);
	int rc = validate_one(&r, err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID && strstr(err, "empty key"),
	      "empty key: '%s'", err);
	make_row(&r, "abc", "a\xc3(", 1);
	rc = validate_one(&r, err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID && strstr(err, "UTF-8"),
	      "bad UTF-8: '%s'", err);
	make_row(&r, "abc", "\xe2\x82\xac", 1); /* € is fine */
	rc = validate_one(&r, err);
	CHECK(rc == 0, "UTF-8 euro: '%s'", err);
}

static void test_string_limit(void)
{
	char err[256];
	struct row r;
	char text[32];
	for (size_t n = 15; n <= 17; n++) {
		make_row(&r, "abc", "k", 1);
		memset(text, 'x', n);
		text[n] = '\0';
		r.values[0].kind_case = TRACKD__V1__VALUE__KIND_STRING_VALUE;
		r.values[0].string_value = text;
		int rc = validate_one(&r, err);
		CHECK((rc == 0) == (n <= small.max_string_bytes), "string of %zu: rc %d '%s'", n,
		      rc, err);
	}
}

static void test_items_per_record(void)
{
	char err[256];
	struct row r;
	for (size_t n = 4; n <= 6; n++) {
		make_row(&r, "abc", "k", n);
		int rc = validate_one(&r, err);
		CHECK((rc == 0) == (n <= small.max_items_per_record), "%zu items: rc %d '%s'", n,
		      rc, err);
	}
}

/* Nested maps: depth d means d levels of items (1 = flat). */
static int validate_depth(size_t depth, char *err)
{
	Trackd__V1__Item items[16];
	Trackd__V1__Item *ptrs[16];
	Trackd__V1__Value values[16];
	Trackd__V1__MapValue maps[16];
	for (size_t i = 0; i < depth; i++) {
		trackd__v1__item__init(&items[i]);
		trackd__v1__value__init(&values[i]);
		trackd__v1__map_value__init(&maps[i]);
		items[i].key = "k";
		items[i].value = &values[i];
		ptrs[i] = &items[i];
		if (i + 1 < depth) {
			values[i].kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
			values[i].map_value = &maps[i];
			maps[i].items = &ptrs[i + 1];
			maps[i].n_items = 1;
		} else {
			values[i].kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
			values[i].int_value = 1;
		}
	}
	struct row r;
	make_row(&r, "abc", "k", 0);
	r.hist.items = &ptrs[0];
	r.hist.n_items = 1;
	return validate_one(&r, err);
}

static void test_nesting(void)
{
	char err[256];
	for (size_t d = 2; d <= 4; d++) {
		int rc = validate_depth(d, err);
		if (d <= small.max_nesting_depth)
			CHECK(rc == 0, "depth %zu: rc %d '%s'", d, rc, err);
		else
			CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE &&
			          strstr(err, "nesting deeper than 3"),
			      "depth %zu: rc %d '%s'", d, rc, err);
	}
}

/* A list value of n int elements (0, 1, …) in the caller's arrays. */
static void make_list(Trackd__V1__Value *v, Trackd__V1__ListValue *l, Trackd__V1__Value *elems,
                      Trackd__V1__Value **ptrs, size_t n)
{
	trackd__v1__list_value__init(l);
	for (size_t i = 0; i < n; i++) {
		trackd__v1__value__init(&elems[i]);
		elems[i].kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
		elems[i].int_value = (int64_t)i;
		ptrs[i] = &elems[i];
	}
	l->values = ptrs;
	l->n_values = n;
	v->kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
	v->list_value = l;
}

static void test_lists_and_null(void)
{
	char err[256];
	struct row r;
	Trackd__V1__ListValue l;
	Trackd__V1__Value elems[8], *ptrs[8];
	Trackd__V1__NullValue null = TRACKD__V1__NULL_VALUE__INIT;

	/* Length: limit 3, and the elements are values of the record too. */
	for (size_t n = 2; n <= 4; n++) {
		make_row(&r, "abc", "k", 1);
		make_list(&r.values[0], &l, elems, ptrs, n);
		int rc = validate_one(&r, err);
		if (n <= small.max_list_length)
			CHECK(rc == 0, "list of %zu: rc %d '%s'", n, rc, err);
		else
			CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE &&
			          strstr(err, "batch.records[0].history.items[0].value.list_value: "
			                      "list of more than 3 elements"),
			      "list of %zu: rc %d '%s'", n, rc, err);
	}
	/* 3 items + a list item of n elements: 4 + n values, limit 5. */
	for (size_t n = 0; n <= 2; n++) {
		make_row(&r, "abc", "k", 4);
		make_list(&r.values[3], &l, elems, ptrs, n);
		int rc = validate_one(&r, err);
		if (4 + n <= small.max_items_per_record)
			CHECK(rc == 0, "4 items, list of %zu: rc %d '%s'", n, rc, err);
		else
			CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE &&
			          strstr(err, "more than 5 items in one record"),
			      "4 items, list of %zu: rc %d '%s'", n, rc, err);
	}
	/* Null: a kind of its own, and one kind only. */
	make_row(&r, "abc", "k", 1);
	r.values[0].kind_case = TRACKD__V1__VALUE__KIND_NULL_VALUE;
	r.values[0].null_value = &null;
	int rc = validate_one(&r, err);
	CHECK(rc == 0, "null: rc %d '%s'", rc, err);
	make_row(&r, "abc", "k", 1);
	make_list(&r.values[0], &l, elems, ptrs, 3);
	elems[1].kind_case = TRACKD__V1__VALUE__KIND_NULL_VALUE;
	elems[1].null_value = &null;
	rc = validate_one(&r, err);
	CHECK(rc == 0, "null in a list: rc %d '%s'", rc, err);
	/* Strings inside lists follow the string rules, named by their path. */
	make_row(&r, "abc", "k", 1);
	elems[0].kind_case = TRACKD__V1__VALUE__KIND_STRING_VALUE;
	elems[0].string_value = "a\xc3(";
	make_list(&r.values[0], &l, elems, ptrs, 0);
	l.values = ptrs;
	ptrs[0] = &elems[0];
	l.n_values = 1;
	rc = validate_one(&r, err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID &&
	          strstr(err, "list_value.values[0].string_value: not valid UTF-8"),
	      "bad UTF-8 in a list: rc %d '%s'", rc, err);
}

/* Nested lists: depth d means the innermost elements sit at level d (the
 * item is level 1), as nested maps count. */
static int validate_list_depth(size_t depth, char *err)
{
	Trackd__V1__Value values[16], *ptrs[16];
	Trackd__V1__ListValue lists[16];
	struct row r;
	make_row(&r, "abc", "k", 1);
	Trackd__V1__Value *v = &r.values[0];
	for (size_t i = 1; i < depth; i++) {
		trackd__v1__list_value__init(&lists[i]);
		trackd__v1__value__init(&values[i]);
		ptrs[i] = &values[i];
		lists[i].values = &ptrs[i];
		lists[i].n_values = 1;
		v->kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
		v->list_value = &lists[i];
		v = &values[i];
		v->kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
		v->int_value = 1;
	}
	return validate_one(&r, err);
}

static void test_list_nesting(void)
{
	char err[256];
	for (size_t d = 2; d <= 4; d++) {
		int rc = validate_list_depth(d, err);
		if (d <= small.max_nesting_depth)
			CHECK(rc == 0, "list depth %zu: rc %d '%s'", d, rc, err);
		else
			CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE &&
			          strstr(err, "nesting deeper than 3"),
			      "list depth %zu: rc %d '%s'", d, rc, err);
	}
}

/* A hostile message: 5 000 levels of Value{map{Item{value: …}}} (or, lists,
 * of Value{list{Value…}}) built by hand (protobuf-c itself would recurse on
 * it). Must be refused, not overflow the stack. */
static void test_deep_wire_nesting(bool lists)
{
	const size_t levels = 5000;
	/* Build from the inside out: each level wraps the previous bytes. */
	size_t cap = levels * 40 + 64;
	uint8_t *buf = malloc(cap), *tmp = malloc(cap);
	size_t len = 0;
	for (size_t i = 0; lists && i <= levels; i++) {
		/* Value{list_value (32 LEN) ListValue{values (0a LEN) <prev>}}, then
		 * the item around the outermost: Item{key "k", value (12 LEN)}. */
		uint8_t head[64];
		size_t n = 0;
		if (i == levels) {
			head[n++] = 0x0a;
			head[n++] = 0x01;
			head[n++] = 'k';
			head[n++] = 0x12;
			n += varint_put(head + n, len);
		} else if (len == 0) {
			head[n++] = 0x10; /* int_value 1 */
			head[n++] = 0x01;
		} else {
			head[n++] = 0x32;
			n += varint_put(head + n, 1 + varint_size(len) + len);
			head[n++] = 0x0a;
			n += varint_put(head + n, len);
		}
		memcpy(tmp, head, n);
		memcpy(tmp + n, buf, len);
		len += n;
		uint8_t *swap = buf;
		buf = tmp;
		tmp = swap;
	}
	for (size_t i = 0; !lists && i < levels; i++) {
		/* Item{key "k" (0a 01 6b), value (12 LEN) Value{map_value (2a LEN) MapValue{items
		 * (0a LEN) <prev>}}} */
		uint8_t head[64];
		size_t n = 0;
		/* MapValue.items = prev item (if any) */
		size_t map_len = len ? 1 + varint_size(len) + len : 0;
		size_t value_len = 1 + varint_size(map_len) + map_len;
		head[n++] = 0x0a;
		head[n++] = 0x01;
		head[n++] = 'k';
		head[n++] = 0x12;
		n += varint_put(head + n, value_len);
		head[n++] = 0x2a;
		n += varint_put(head + n, map_len);
		if (len) {
			head[n++] = 0x0a;
			n += varint_put(head + n, len);
		}
		memcpy(tmp, head, n);
		memcpy(tmp + n, buf, len);
		len += n;
		uint8_t *swap = buf;
		buf = tmp;
		tmp = swap;
	}
	/* Wrap: HistoryRow.items(4) → Record{run_id, history(3)} → Batch → Request. */
	size_t hist_len = 1 + varint_size(len) + len;
	size_t rec_len = 5 + 1 + varint_size(hist_len) + hist_len;
	size_t batch_len = 18 + 2 + 1 + varint_size(rec_len) + rec_len;
	uint8_t *req = malloc(batch_len + 32);
	size_t n = 0;
	req[n++] = 0x08;
	req[n++] = 0x01;
	req[n++] = 0x12;
	n += varint_put(req + n, batch_len);
	req[n++] = 0x0a;
	req[n++] = 16;
	memcpy(req + n, session, 16);
	n += 16;
	req[n++] = 0x10;
	req[n++] = 0x01;
	req[n++] = 0x1a;
	n += varint_put(req + n, rec_len);
	req[n++] = 0x0a;
	req[n++] = 3;
	memcpy(req + n, "abc", 3);
	n += 3;
	req[n++] = 0x1a;
	n += varint_put(req + n, hist_len);
	req[n++] = 0x22;
	n += varint_put(req + n, len);
	uint8_t *full = malloc(n + len);
	memcpy(full, req, n);
	memcpy(full + n, buf, len);
	char err[256];
	struct validated_request out;
	int rc = validate_request(&small, full, n + len, &out, err, sizeof err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE, "deep wire nesting%s: rc %d '%s'",
	      lists ? " (lists)" : "", rc, err);
	free(buf);
	free(tmp);
	free(req);
	free(full);
}

static void test_run_id(void)
{
	char err[256];
	struct row r;
	const char *bad[] = {"a/b", "a\\b", "a#b", "a?b", "a%b",     "a:b",
	                     "",    "a b",  "a&b", "a.b", "\xc3\xa9"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		make_row(&r, bad[i], "k", 1);
		int rc = validate_one(&r, err);
		CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID && strstr(err, "run"),
		      "run id '%s': rc %d '%s'", bad[i], rc, err);
	}
	char id[80];
	for (size_t n = TRACKD_MAX_RUN_ID_BYTES - 1; n <= TRACKD_MAX_RUN_ID_BYTES + 1; n++) {
		memset(id, 'a', n);
		id[n] = '\0';
		make_row(&r, id, "k", 1);
		int rc = validate_one(&r, err);
		CHECK((rc == 0) == (n <= TRACKD_MAX_RUN_ID_BYTES), "run id of %zu: rc %d '%s'", n,
		      rc, err);
	}
	make_row(&r, "Ok-id_9", "k", 1);
	CHECK(validate_one(&r, err) == 0, "run id Ok-id_9: '%s'", err);
	make_row(&r, "abc", "k", 1);
	r.rec.run_id = NULL;
	int rc = validate_one(&r, err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID && strstr(err, "run_id is missing"),
	      "missing run id: '%s'", err);
}

/* A run start's project and entity follow W&B's rule (no / \ # ? % : or control
 * characters); other names (display name, group) may hold anything printable. */
static void test_run_start_names(void)
{
	static const struct {
		const char *project, *entity, *display_name;
		bool ok;
	} cases[] = {
	    {"my project", "me", "a/b: c?", true},
	    {"team/proj", "me", NULL, false},
	    {"p", "e:x", NULL, false},
	    {"p\n", "me", NULL, false},
	    {"p%20", "me", NULL, false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		Trackd__V1__RunStart start = TRACKD__V1__RUN_START__INIT;
		start.project = (char *)cases[i].project;
		start.entity = (char *)cases[i].entity;
		start.display_name = (char *)cases[i].display_name;
		Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
		rec.run_id = "r1";
		rec.body_case = TRACKD__V1__RECORD__BODY_START;
		rec.start = &start;
		Trackd__V1__Record *recs[] = {&rec};
		size_t len;
		uint8_t *buf = pack_batch(recs, 1, 16, 7, 1, &len);
		char err[256] = "";
		struct validated_request out;
		int rc = validate_request(&small, buf, len, &out, err, sizeof err);
		free(buf);
		CHECK((rc == 0) == cases[i].ok, "start %s/%s: rc %d '%s'", cases[i].entity,
		      cases[i].project, rc, err);
		if (!cases[i].ok)
			CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID &&
			          strstr(err, "forbidden"),
			      "start %s/%s: '%s'", cases[i].entity, cases[i].project, err);
	}
}

static int validate_env(Trackd__V1__RunEnvironment *env, char *err, size_t errlen)
{
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = "r1";
	rec.body_case = TRACKD__V1__RECORD__BODY_ENVIRONMENT;
	rec.environment = env;
	Trackd__V1__Record *recs[] = {&rec};
	size_t len;
	uint8_t *buf = pack_batch(recs, 1, 16, 7, 1, &len);
	struct validated_request out;
	err[0] = '\0';
	int rc = validate_request(&small, buf, len, &out, err, errlen);
	free(buf);
	return rc;
}

/* The client's process facts: untrusted like any record. */
static void test_environment(void)
{
	char err[256];
	char *args[TRACKD_MAX_ENV_ARGS + 1];
	for (size_t i = 0; i <= TRACKD_MAX_ENV_ARGS; i++)
		args[i] = "--x";
	static char long_root[TRACKD_MAX_ENV_STRING + 2];
	memset(long_root, 'a', sizeof long_root - 1);
	long_root[0] = '/';
	Trackd__V1__RunEnvironment env = TRACKD__V1__RUN_ENVIRONMENT__INIT;
	env.program = "train.py";
	env.args = args;
	env.n_args = TRACKD_MAX_ENV_ARGS;
	env.root = "/home/me/w ork";
	env.git_commit = "0123456789abcdef";
	env.has_git_dirty = true;
	env.git_dirty = true;
	CHECK_EQ(validate_env(&env, err, sizeof err), 0, "valid: '%s'", err);
	env.n_args = TRACKD_MAX_ENV_ARGS + 1;
	CHECK(validate_env(&env, err, sizeof err) == TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE &&
	          strstr(err, "args"),
	      "too many args: '%s'", err);
	env.n_args = 1;
	env.root = long_root;
	CHECK(validate_env(&env, err, sizeof err) == TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
	      "long root: '%s'", err);
	env.root = "/x";
	env.git_branch = "main\x1b[2J";
	CHECK(validate_env(&env, err, sizeof err) == TRACKD__V1__ERROR_CODE__ERROR_INVALID &&
	          strstr(err, "control"),
	      "escape in a branch: '%s'", err);
	env.git_branch = "main";
	env.python = "3.11\xff";
	CHECK(validate_env(&env, err, sizeof err) == TRACKD__V1__ERROR_CODE__ERROR_INVALID,
	      "not UTF-8: '%s'", err);
}

/* The run's metadata is the agent's, and so are a sample's counter bases (a
 * client's sample, an import's, must not move them). */
static void test_agent_only_bodies(void)
{
	Trackd__V1__Record *recs[1];
	size_t len;
	uint8_t *buf;
	Trackd__V1__CounterBase base = TRACKD__V1__COUNTER_BASE__INIT;
	base.key = "network.sent";
	base.has_value = true;
	base.value = 1;
	Trackd__V1__CounterBase *bases[] = {&base};
	Trackd__V1__SystemStats st = TRACKD__V1__SYSTEM_STATS__INIT;
	st.has_time_us = true;
	st.time_us = 1700000000000000;
	st.boot_id = "b";
	st.bases = bases;
	st.n_bases = 1;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = "abc";
	rec.body_case = TRACKD__V1__RECORD__BODY_STATS;
	rec.stats = &st;
	recs[0] = &rec;
	buf = pack_batch(recs, 1, 16, 7, 1, &len);
	char err[256] = "";
	struct validated_request out;
	int rc = validate_request(&small, buf, len, &out, err, sizeof err);
	free(buf);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID && strstr(err, "agent only"),
	      "counter bases from a client: '%s'", err);
	st.boot_id = NULL;
	st.n_bases = 0;
	buf = pack_batch(recs, 1, 16, 7, 1, &len);
	rc = validate_request(&small, buf, len, &out, err, sizeof err);
	free(buf);
	CHECK(rc == 0, "a client's sample without them (an import's): '%s'", err);
	Trackd__V1__RunMetadata md = TRACKD__V1__RUN_METADATA__INIT;
	md.json = "{}";
	rec.body_case = TRACKD__V1__RECORD__BODY_METADATA;
	rec.metadata = &md;
	buf = pack_batch(recs, 1, 16, 7, 1, &len);
	rc = validate_request(&small, buf, len, &out, err, sizeof err);
	free(buf);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID && strstr(err, "agent only"),
	      "metadata from a client: '%s'", err);
}

static void test_negative_step(void)
{
	char err[256];
	struct row r;
	make_row(&r, "abc", "k", 1);
	r.hist.has_step = true;
	r.hist.step = -1;
	int rc = validate_one(&r, err);
	CHECK(rc == TRACKD__V1__ERROR_CODE__ERROR_INVALID && strstr(err, "negative"),
	      "negative step: '%s'", err);
	r.hist.step = 0;
	rc = validate_one(&r, err);
	CHECK(rc == 0, "step 0: '%s'", err);
}

static void test_sessions(void)
{
	sessions *s;
	CHECK(sessions_new(16, &s) == 0, "sessions_new");
	uint8_t ids[20][16];
	for (int i = 0; i < 20; i++) {
		memset(ids[i], i + 1, 16);
		sessions_record(s, ids[i], (uint64_t)i + 10);
	}
	CHECK(sessions_count(s) == 16 && sessions_evicted(s) == 4,
	      "bounded: count %zu evicted %llu", sessions_count(s),
	      (unsigned long long)sessions_evicted(s));
	CHECK(sessions_highest(s, ids[0]) == 0, "oldest evicted");
	CHECK(sessions_highest(s, ids[19]) == 29, "newest kept");
	sessions_record(s, ids[19], 5);
	CHECK(sessions_highest(s, ids[19]) == 29, "keeps the maximum");
	sessions_restore(s, ids[19], 12);
	CHECK(sessions_highest(s, ids[19]) == 12, "restore");
	sessions_restore(s, ids[19], 0);
	CHECK(sessions_highest(s, ids[19]) == 0, "restore to 0 removes");
	sessions_free(s);
}

static void test_log_entry_roundtrip(void)
{
	struct row r;
	make_row(&r, "abc", "loss", 2);
	Trackd__V1__Record *recs[1] = {&r.rec};
	size_t len;
	uint8_t *req = pack_batch(recs, 1, 16, 42, 1, &len);
	char err[256];
	struct validated_request out;
	int rc = validate_request(&small, req, len, &out, err, sizeof err);
	CHECK(rc == 0, "valid");
	uint8_t entry[4096];
	size_t n = ingest_encode_log_entry(entry, sizeof entry, 1000, 1001, -5, 1700000000000000,
	                                   out.batch, out.batch_len);
	CHECK(n > out.batch_len, "encoded");
	Trackd__V1__LogEntry *e = trackd__v1__log_entry__unpack(NULL, n, entry);
	CHECK(e && e->peer_uid == 1000 && e->peer_gid == 1001 && e->peer_pid == -5 &&
	          e->recv_time_us == 1700000000000000 && e->batch && e->batch->seq == 42 &&
	          e->batch->n_records == 1 && strcmp(e->batch->records[0]->run_id, "abc") == 0 &&
	          e->batch->records[0]->history->n_items == 2,
	      "LogEntry decodes back");
	trackd__v1__log_entry__free_unpacked(e, NULL);
	CHECK(ingest_encode_log_entry(entry, 10, 1, 1, 1, 1, out.batch, out.batch_len) == 0,
	      "too small buffer refused");

	sessions *s;
	run_owners *owners;
	sessions_new(16, &s);
	run_owners_new(16, &owners);
	struct ingest_tables tables = {.sessions = s, .owners = owners};
	ingest_recover_record(&tables, 1, entry, n);
	CHECK(sessions_highest(s, session) == 42, "recovery rebuilds the dedupe table");
	uint32_t owner;
	CHECK(!run_owners_get(owners, "abc", 3, &owner),
	      "rows of a peer without a pid name no owner (the local store makes no run of them)");
	n = ingest_encode_log_entry(entry, sizeof entry, 1000, 1001, 77, 1700000000000000,
	                            out.batch, out.batch_len);
	ingest_recover_record(&tables, 2, entry, n);
	CHECK(run_owners_get(owners, "abc", 3, &owner) && owner == 1000,
	      "rows of a run whose start is lost name its owner (a recovered run)");
	n = ingest_encode_log_entry(entry, sizeof entry, 2000, 2001, 78, 1700000000000000,
	                            out.batch, out.batch_len);
	ingest_recover_record(&tables, 3, entry, n);
	CHECK(run_owners_get(owners, "abc", 3, &owner) && owner == 1000, "the first owner stays");
	ingest_recover_record(&tables, 4, "\xff\xff", 2); /* garbage is skipped */
	sessions_free(s);
	run_owners_free(owners);
	free(req);
}

/* trackctl import's records: a row's own stamps, a client's system-metrics
 * sample (with its time), never run metadata. */
static void test_imported_records(void)
{
	char err[256];
	struct row r;
	make_row(&r, "abc", "k", 1);
	r.hist.has_timestamp = r.hist.has_runtime = true;
	r.hist.timestamp = 1700000000.25;
	r.hist.runtime = 0.5;
	CHECK_EQ(validate_one(&r, err), 0);
	r.hist.runtime = -1;
	CHECK(validate_one(&r, err) == TRACKD__V1__ERROR_CODE__ERROR_INVALID &&
	          strstr(err, "runtime is not a finite number"),
	      "negative runtime: '%s'", err);
	r.hist.runtime = 0;
	r.hist.timestamp = 1.0 / 0.0;
	CHECK(validate_one(&r, err) == TRACKD__V1__ERROR_CODE__ERROR_INVALID &&
	          strstr(err, "timestamp"),
	      "infinite timestamp: '%s'", err);

	Trackd__V1__SystemStats st = TRACKD__V1__SYSTEM_STATS__INIT;
	st.items = r.item_ptrs;
	st.n_items = 1;
	r.rec.body_case = TRACKD__V1__RECORD__BODY_STATS;
	r.rec.stats = &st;
	CHECK(validate_one(&r, err) == TRACKD__V1__ERROR_CODE__ERROR_INVALID &&
	          strstr(err, "needs time_us"),
	      "sample without time: '%s'", err);
	st.has_time_us = true;
	st.time_us = 1700000000000000;
	CHECK_EQ(validate_one(&r, err), 0);

	Trackd__V1__RunMetadata md = TRACKD__V1__RUN_METADATA__INIT;
	md.json = "{}";
	r.rec.body_case = TRACKD__V1__RECORD__BODY_METADATA;
	r.rec.metadata = &md;
	CHECK(validate_one(&r, err) == TRACKD__V1__ERROR_CODE__ERROR_INVALID &&
	          strstr(err, "agent only"),
	      "client metadata: '%s'", err);
}

int main(void)
{
	test_valid_and_identity();
	test_lifecycle_mark();
	test_runs_listed();
	test_version();
	test_malformed();
	test_status();
	test_nul_and_long_varints();
	test_session_and_seq();
	test_records_per_batch();
	test_key_limits();
	test_string_limit();
	test_items_per_record();
	test_nesting();
	test_lists_and_null();
	test_list_nesting();
	test_deep_wire_nesting(false);
	test_deep_wire_nesting(true);
	test_run_id();
	test_run_start_names();
	test_negative_step();
	test_environment();
	test_agent_only_bodies();
	test_imported_records();
	test_sessions();
	test_log_entry_roundtrip();
	return CHECK_SUMMARY("validate_test");
}
