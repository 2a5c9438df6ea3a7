/* fuzz_validate — validate_request on arbitrary bytes (R11).
 *
 * Every input is checked under small limits and under the defaults. Besides
 * "no crash, no sanitizer finding", it checks the validator's contract:
 *   - a result code is 0 or a TRACKD__V1__ERROR_CODE__* value, and an error
 *     comes with a message;
 *   - whatever passes the small limits passes the defaults, with the same result;
 *   - the pointers in the result lie inside the input;
 *   - a batch that is accepted (and so acknowledged by the agent) decodes with
 *     protobuf-c, both alone and inside the LogEntry the agent stores, and holds
 *     what the sinks rely on: a run id, a body, non-empty keys, a value in every
 *     item, nesting and counts within the limits;
 *   - validate_batch_identity (dedupe rebuild at start-up) reads the same
 *     session and seq from it, and validate_batch_runs (the run-ownership check)
 *     the same run ids and RunStarts as protobuf-c decodes.
 * A broken rule aborts with a message naming it: that is a bug in validate.c. */
#include "artifact_names.h"
#include "ingest.h"
#include "run_files.h"
#include "validate.h"

#include "trackd/v1/limits.h"
#include "trackd/v1/trackd.pb-c.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct validate_limits small_limits = {
    .max_records_per_batch = 4,
    .max_items_per_record = 8,
    .max_key_bytes = 16,
    .max_string_bytes = 64,
    .max_nesting_depth = 3,
    .max_list_length = 4,
};

static const struct validate_limits default_limits = {
    .max_records_per_batch = TRACKD_DEFAULT_MAX_RECORDS_PER_BATCH,
    .max_items_per_record = TRACKD_DEFAULT_MAX_ITEMS_PER_RECORD,
    .max_key_bytes = TRACKD_DEFAULT_MAX_KEY_BYTES,
    .max_string_bytes = TRACKD_DEFAULT_MAX_STRING_BYTES,
    .max_nesting_depth = TRACKD_DEFAULT_MAX_NESTING_DEPTH,
    .max_list_length = TRACKD_DEFAULT_MAX_LIST_LENGTH,
};

__attribute__((noreturn, format(printf, 1, 2))) static void bug(const char *fmt, ...);

static void bug(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "fuzz_validate: contract broken: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}

static bool inside(const uint8_t *p, size_t n, const uint8_t *buf, size_t len)
{
	return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

/* ---- what a sink relies on, checked on the decoded batch ---------------------- */

struct tally {
	const struct validate_limits *lim;
	uint64_t items; /* in the current record */
};

static void check_items(struct tally *t, Trackd__V1__Item **items, size_t n, uint64_t depth,
                        const char *where);

static void check_value(struct tally *t, const Trackd__V1__Value *v, uint64_t depth,
                        const char *where)
{
	if (!v)
		bug("%s: item without a value decodes", where);
	switch (v->kind_case) {
	case TRACKD__V1__VALUE__KIND_DOUBLE_VALUE:
	case TRACKD__V1__VALUE__KIND_INT_VALUE:
	case TRACKD__V1__VALUE__KIND_BOOL_VALUE: break;
	case TRACKD__V1__VALUE__KIND_STRING_VALUE:
		if (!v->string_value)
			bug("%s: string value is NULL", where);
		break;
	case TRACKD__V1__VALUE__KIND_MAP_VALUE:
		if (!v->map_value)
			bug("%s: map value is NULL", where);
		check_items(t, v->map_value->items, v->map_value->n_items, depth + 1, where);
		break;
	case TRACKD__V1__VALUE__KIND_LIST_VALUE:
		if (!v->list_value)
			bug("%s: list value is NULL", where);
		if (v->list_value->n_values > t->lim->max_list_length)
			bug("%s: list of %zu elements, limit %llu", where, v->list_value->n_values,
			    (unsigned long long)t->lim->max_list_length);
		if (v->list_value->n_values && depth + 1 > t->lim->max_nesting_depth)
			bug("%s: list elements nested %llu deep, limit %llu", where,
			    (unsigned long long)(depth + 1),
			    (unsigned long long)t->lim->max_nesting_depth);
		for (size_t i = 0; i < v->list_value->n_values; i++) {
			t->items++;
			check_value(t, v->list_value->values[i], depth + 1, where);
		}
		break;
	case TRACKD__V1__VALUE__KIND_NULL_VALUE:
		if (!v->null_value)
			bug("%s: null value is NULL", where);
		break;
	default: bug("%s: value without a kind decodes", where);
	}
}

static void check_items(struct tally *t, Trackd__V1__Item **items, size_t n, uint64_t depth,
                        const char *where)
{
	if (n && depth > t->lim->max_nesting_depth)
		bug("%s: items nested %llu deep, limit %llu", where, (unsigned long long)depth,
		    (unsigned long long)t->lim->max_nesting_depth);
	for (size_t i = 0; i < n; i++) {
		t->items++;
		if (!items[i]->key || items[i]->key[0] == '\0')
			bug("%s: item %zu decodes with an empty key (a NUL byte first?)", where, i);
		check_value(t, items[i]->value, depth, where);
	}
}

static void check_record(struct tally *t, const Trackd__V1__Record *r, size_t i)
{
	char where[64];
	snprintf(where, sizeof where, "records[%zu]", i);
	if (!r->run_id || r->run_id[0] == '\0')
		bug("%s: decodes with an empty run id", where);
	t->items = 0;
	switch (r->body_case) {
	case TRACKD__V1__RECORD__BODY_START:
		if (r->start->config)
			check_items(t, r->start->config->items, r->start->config->n_items, 1,
			            where);
		if (r->start->n_tags > TRACKD_MAX_TAGS)
			bug("%s: %zu tags", where, r->start->n_tags);
		break;
	case TRACKD__V1__RECORD__BODY_HISTORY:
		if (r->history->has_step && r->history->step < 0)
			bug("%s: negative step", where);
		check_items(t, r->history->items, r->history->n_items, 1, where);
		break;
	case TRACKD__V1__RECORD__BODY_SUMMARY:
		check_items(t, r->summary->items, r->summary->n_items, 1, where);
		break;
	case TRACKD__V1__RECORD__BODY_CONFIG:
		check_items(t, r->config->items, r->config->n_items, 1, where);
		break;
	case TRACKD__V1__RECORD__BODY_DEFINE_METRIC:
		if (!r->define_metric->name || r->define_metric->name[0] == '\0')
			bug("%s: metric decodes with an empty name", where);
		break;
	case TRACKD__V1__RECORD__BODY_FILE:
		if (r->file->sha256.len != 32 || !r->file->name ||
		    !files_name_valid(r->file->name, strlen(r->file->name)))
			bug("%s: a saved file decodes with a bad digest or name", where);
		break;
	case TRACKD__V1__RECORD__BODY_ENVIRONMENT:
		if (r->environment->n_args > TRACKD_MAX_ENV_ARGS)
			bug("%s: %zu environment args", where, r->environment->n_args);
		break;
	case TRACKD__V1__RECORD__BODY_STATS:
		/* A client's sample (trackctl import's): its time, never the
		 * agent's counter bases. */
		if (!r->stats->has_time_us || r->stats->boot_id || r->stats->n_bases)
			bug("%s: a client's sample decodes without time_us or with bases", where);
		break;
	case TRACKD__V1__RECORD__BODY_LOG_ARTIFACT: {
		const Trackd__V1__ArtifactLog *a = r->log_artifact;
		if (!a->name || !artifact_name_valid(a->name, strlen(a->name)) || !a->type ||
		    !artifact_name_valid(a->type, strlen(a->type)) ||
		    a->n_aliases > TRACKD_ARTIFACT_MAX_ALIASES ||
		    a->n_entries > TRACKD_ARTIFACT_MAX_ENTRIES)
			bug("%s: an artifact decodes with a bad name, type or count", where);
		for (size_t k = 0; k < a->n_entries; k++) {
			const Trackd__V1__ArtifactEntry *e = a->entries[k];
			bool file =
			    e->has_sha256 && e->sha256.len == 32 && e->md5_b64 && *e->md5_b64;
			if (!e->path || !files_name_valid(e->path, strlen(e->path)) ||
			    (!file && !(e->ref && *e->ref && !e->has_sha256)))
				bug("%s: an artifact entry decodes with a bad path or digest",
				    where);
		}
		break;
	}
	case TRACKD__V1__RECORD__BODY_USE_ARTIFACT:
		if (!r->use_artifact->artifact || !*r->use_artifact->artifact)
			bug("%s: an artifact use decodes without its artifact", where);
		break;
	case TRACKD__V1__RECORD__BODY_CONSOLE:
	case TRACKD__V1__RECORD__BODY_EXIT:
	case TRACKD__V1__RECORD__BODY_RENAME: break;
	default: bug("%s: record without a body decodes", where);
	}
	if (t->items > t->lim->max_items_per_record)
		bug("%s: %llu items, limit %llu", where, (unsigned long long)t->items,
		    (unsigned long long)t->lim->max_items_per_record);
}

static void check_batch(const struct validate_limits *lim, const struct validated_request *v,
                        const Trackd__V1__Batch *b)
{
	if (b->n_records != v->records)
		bug("validator counted %llu records, protobuf-c %zu",
		    (unsigned long long)v->records, b->n_records);
	if (!b->has_seq || b->seq != v->seq)
		bug("validator read seq %llu, protobuf-c %llu", (unsigned long long)v->seq,
		    (unsigned long long)b->seq);
	if (!b->has_session_id || b->session_id.len != TRACKD_SESSION_ID_BYTES ||
	    memcmp(b->session_id.data, v->session_id, TRACKD_SESSION_ID_BYTES) != 0)
		bug("session id differs between the validator and protobuf-c");
	struct tally t = {.lim = lim};
	for (size_t i = 0; i < b->n_records; i++)
		check_record(&t, b->records[i], i);
}

/* validate_batch_runs must see the records the sink will apply. */
struct runs_walk {
	const Trackd__V1__Batch *b;
	size_t at;
};

static int compare_run(void *arg, const uint8_t *run_id, size_t id_len, bool is_start)
{
	struct runs_walk *w = arg;
	if (w->at >= w->b->n_records)
		bug("validate_batch_runs reports more records than protobuf-c decodes");
	const Trackd__V1__Record *r = w->b->records[w->at++];
	if (strlen(r->run_id) != id_len || memcmp(r->run_id, run_id, id_len) != 0)
		bug("validate_batch_runs reads run id \"%.*s\", protobuf-c \"%s\"", (int)id_len,
		    (const char *)run_id, r->run_id);
	if (is_start != (r->body_case == TRACKD__V1__RECORD__BODY_START))
		bug("validate_batch_runs: is_start %d, decoded body %d", is_start,
		    (int)r->body_case);
	return 0;
}

/* ---- one run of the validator ---------------------------------------------------- */

static int run(const struct validate_limits *lim, const uint8_t *data, size_t size,
               struct validated_request *out)
{
	char err[512], tiny[8];
	int code = validate_request(lim, data, size, out, err, sizeof err);
	/* The validator refuses with these four codes only. */
	if (code != 0 && (code < TRACKD__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION ||
	                  code > TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE))
		bug("result %d is not a validation error code", code);
	if (code != 0 && (err[0] == '\0' || !memchr(err, '\0', sizeof err)))
		bug("error %d without a message", code);

	/* A short error buffer must be cut and terminated, not overrun. */
	struct validated_request again;
	int code2 = validate_request(lim, data, size, &again, tiny, sizeof tiny);
	if (code2 != code)
		bug("result %d with a short error buffer, %d with a long one", code2, code);
	if (code != 0 && (!memchr(tiny, '\0', sizeof tiny) || strncmp(tiny, err, strlen(tiny))))
		bug("short error buffer holds \"%.8s\", not a prefix of \"%s\"", tiny, err);
	if (code != 0)
		return code;

	switch (out->kind) {
	case VALIDATED_BATCH:
		if (!inside(out->batch, out->batch_len, data, size) ||
		    !inside(out->session_id, TRACKD_SESSION_ID_BYTES, out->batch, out->batch_len))
			bug("batch or session id points outside the input");
		if (out->seq == 0 || out->records == 0 || out->records > lim->max_records_per_batch)
			bug("accepted a batch with seq %llu and %llu records",
			    (unsigned long long)out->seq, (unsigned long long)out->records);
		break;
	case VALIDATED_QUERY:
		if (out->query_len && !inside(out->query, out->query_len, data, size))
			bug("query points outside the input");
		break;
	case VALIDATED_STATUS: break;
	case VALIDATED_BLOB: {
		/* The envelope is valid; ingest unpacks it and checks the rest (an
		 * undecodable one is answered as malformed). Decoded, it is a blob
		 * request. */
		Trackd__V1__Request *req = trackd__v1__request__unpack(NULL, size, data);
		if (!req)
			break;
		if (req->body_case != TRACKD__V1__REQUEST__BODY_BLOB_QUERY &&
		    req->body_case != TRACKD__V1__REQUEST__BODY_BLOB_CHUNK)
			bug("a blob request decodes to body %d", (int)req->body_case);
		trackd__v1__request__free_unpacked(req, NULL);
		break;
	}
	default: bug("unknown kind %d", (int)out->kind);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct validated_request vs, vd;
	int small_code = run(&small_limits, data, size, &vs);
	int default_code = run(&default_limits, data, size, &vd);
	if (small_code == 0 && default_code != 0)
		bug("valid under small limits, refused (%d) under the defaults", default_code);
	if (small_code == 0 &&
	    (vs.kind != vd.kind || vs.batch != vd.batch || vs.batch_len != vd.batch_len ||
	     vs.seq != vd.seq || vs.records != vd.records || vs.query != vd.query))
		bug("small and default limits give different results");
	if (default_code != 0)
		return 0;

	if (vd.kind == VALIDATED_QUERY) {
		/* The query thread decodes it; a failure there is answered, not lost. */
		Trackd__V1__Query *q = trackd__v1__query__unpack(NULL, vd.query_len, vd.query);
		trackd__v1__query__free_unpacked(q, NULL);
		return 0;
	}
	if (vd.kind != VALIDATED_BATCH)
		return 0;

	/* Acknowledged batches must decode: the local sink would otherwise count the
	 * entry as orphaned and drop every record in it. */
	Trackd__V1__Batch *b = trackd__v1__batch__unpack(NULL, vd.batch_len, vd.batch);
	if (!b)
		bug("accepted batch (%zu bytes) does not decode with protobuf-c", vd.batch_len);
	check_batch(small_code == 0 ? &small_limits : &default_limits, &vd, b);
	struct runs_walk w = {.b = b};
	validate_batch_runs(vd.batch, vd.batch_len, compare_run, &w);
	if (w.at != b->n_records)
		bug("validate_batch_runs reports %zu records, protobuf-c decodes %zu", w.at,
		    b->n_records);
	trackd__v1__batch__free_unpacked(b, NULL);

	/* The same through the LogEntry the agent appends. */
	size_t cap = vd.batch_len + 64;
	uint8_t *entry = malloc(cap);
	if (!entry)
		return 0;
	size_t n = ingest_encode_log_entry(entry, cap, 1000, 1000, 4242, 1700000000000000, vd.batch,
	                                   vd.batch_len);
	if (n == 0)
		bug("LogEntry does not fit in batch_len + 64 bytes");
	Trackd__V1__LogEntry *e = trackd__v1__log_entry__unpack(NULL, n, entry);
	if (!e || !e->batch)
		bug("LogEntry of an accepted batch does not decode");
	check_batch(&default_limits, &vd, e->batch);
	trackd__v1__log_entry__free_unpacked(e, NULL);
	free(entry);

	const uint8_t *id = NULL;
	uint64_t seq = 0;
	if (validate_batch_identity(vd.batch, vd.batch_len, &id, &seq) != 0 || seq != vd.seq ||
	    memcmp(id, vd.session_id, TRACKD_SESSION_ID_BYTES) != 0)
		bug("validate_batch_identity disagrees with validate_request");
	return 0;
}
