#include "validate.h"

#include "trackd/v1/wire.h"
#include "artifact_names.h"
#include "run_files.h"
#include "utf8.h"

#include "trackd/v1/limits.h"
#include "trackd/v1/trackd.pb-c.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The path of the field being checked, for error messages. Depth is bounded:
 * every cycle in the schema passes through Item, whose nesting is limited. */
#define PATH_MAX_DEPTH 256

struct path_elem {
	const char *name;
	int64_t index; /* position among repeated occurrences, -1 if not repeated */
};

struct walk {
	const struct validate_limits *lim;
	char *err;
	size_t errlen;
	int code;
	uint64_t items_in_record;
	uint64_t item_nesting;
	size_t depth;
	bool lifecycle; /* a Record with a RunStart or RunExit was seen */
	struct validated_run runs[VALIDATE_RUNS_HELD];
	size_t n_runs;
	bool runs_overflow;
	struct path_elem path[PATH_MAX_DEPTH];
};

/* Lists a record's run among the batch's distinct runs (validated_request). */
static void note_run(struct walk *w, const uint8_t *id, size_t len, bool start)
{
	for (size_t i = w->n_runs; i-- > 0;) { /* the last one first: the likely one */
		struct validated_run *r = &w->runs[i];
		if (r->len == len && memcmp(r->id, id, len) == 0) {
			r->start |= start;
			return;
		}
	}
	if (w->n_runs == VALIDATE_RUNS_HELD) {
		w->runs_overflow = true;
		return;
	}
	w->runs[w->n_runs++] = (struct validated_run){.id = id, .len = len, .start = start};
}

/* What one message held, for the checks that look at a message as a whole:
 * fields numbered below 32 (Record's bodies go up to 21). */
#define FACT_FIELDS 32

struct facts {
	uint32_t present;            /* bit n: field n seen */
	uint32_t count[FACT_FIELDS]; /* occurrences of field n */
	uint64_t varint[FACT_FIELDS];
	const uint8_t *data[FACT_FIELDS];
	size_t len[FACT_FIELDS];
};

static bool has(const struct facts *f, unsigned n)
{
	return n < FACT_FIELDS && (f->present & (1u << n));
}

__attribute__((format(printf, 3, 4))) static int fail(struct walk *w, int code, const char *fmt,
                                                      ...)
{
	if (w->code)
		return -1;
	w->code = code;
	size_t n = 0;
	for (size_t i = 0; i < w->depth && n < w->errlen; i++) {
		const struct path_elem *e = &w->path[i];
		int k = e->index >= 0
		            ? snprintf(w->err + n, w->errlen - n, "%s%s[%" PRId64 "]", i ? "." : "",
		                       e->name, e->index)
		            : snprintf(w->err + n, w->errlen - n, "%s%s", i ? "." : "", e->name);
		if (k < 0)
			break;
		n += (size_t)k;
	}
	if (n < w->errlen && w->depth > 0)
		n += (size_t)snprintf(w->err + n, w->errlen - n, ": ");
	if (n < w->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(w->err + n, w->errlen - n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int check_run_id(struct walk *w, const uint8_t *s, size_t len)
{
	if (len == 0)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID, "run id is empty");
	if (len > TRACKD_MAX_RUN_ID_BYTES)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
		            "run id is %zu bytes, limit %u", len, TRACKD_MAX_RUN_ID_BYTES);
	for (size_t i = 0; i < len; i++) {
		if (!s[i] || !strchr(TRACKD_RUN_ID_ALLOWED, s[i]))
			return fail(
			    w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			    "run id contains a forbidden character (0x%02x); allowed: letters, "
			    "digits, '-' and '_'",
			    s[i]);
	}
	return 0;
}

/* A run start's project (1) and entity (2): W&B's rule, so that the run's path
 * and URL can be written. */
static int check_run_name(struct walk *w, const ProtobufCFieldDescriptor *fd, const uint8_t *s,
                          size_t len)
{
	if (fd->id != WIRE_NUM(RUN_START, PROJECT) && fd->id != WIRE_NUM(RUN_START, ENTITY))
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < 0x20 || s[i] == 0x7f || strchr(TRACKD_NAME_FORBIDDEN, s[i]))
			return fail(
			    w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			    "%s contains a forbidden character (0x%02x); not allowed: %s and "
			    "control characters",
			    fd->name, s[i], TRACKD_NAME_FORBIDDEN);
	}
	return 0;
}

static int check_oneof_single(struct walk *w, const struct facts *f, unsigned lo, unsigned hi,
                              const char *what, bool required)
{
	unsigned n = 0;
	for (unsigned i = lo; i <= hi; i++)
		n += has(f, i) ? f->count[i] : 0;
	if (n > 1)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID, "more than one %s set", what);
	if (n == 0 && required)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID, "no %s set", what);
	return 0;
}

/* Rules that concern a message as a whole, once all its fields were walked. */
static int check_message(struct walk *w, const ProtobufCMessageDescriptor *d, const struct facts *f)
{
	if (d == &trackd__v1__request__descriptor)
		return check_oneof_single(w, f, WIRE_NUM(REQUEST, BATCH),
		                          WIRE_NUM(REQUEST, BLOB_CHUNK),
		                          "request body (batch, status, query or blob)", true);
	if (d == &trackd__v1__batch__descriptor) {
		enum { ID = WIRE_NUM(BATCH, SESSION_ID), SEQ = WIRE_NUM(BATCH, SEQ) };
		if (!has(f, ID) || f->len[ID] != TRACKD_SESSION_ID_BYTES)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "session_id must be %d bytes", TRACKD_SESSION_ID_BYTES);
		if (!has(f, SEQ) || f->varint[SEQ] == 0)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "seq is missing or 0 (it counts from 1)");
		if (!has(f, WIRE_NUM(BATCH, RECORDS)))
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "batch has no records");
		return 0;
	}
	if (d == &trackd__v1__record__descriptor) {
		if (!has(f, WIRE_NUM(RECORD, RUN_ID)))
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID, "run_id is missing");
		w->lifecycle |= has(f, WIRE_NUM(RECORD, START)) || has(f, WIRE_NUM(RECORD, EXIT));
		/* Run metadata is the agent's own (its sampler gathers it): a client
		 * sending one has no record body the agent takes from it. */
		if (has(f, TRACKD__V1__RECORD__BODY_METADATA))
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "run metadata is written by the agent only");
		/* Its uid names whose store it changes: the agent checks the caller. */
		if (has(f, TRACKD__V1__RECORD__BODY_ARTIFACT_CHANGE))
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "artifact changes are written by the agent only (trackctl "
			            "artifact alias / delete)");
		int rc = check_oneof_single(w, f, WIRE_NUM(RECORD, START),
		                            TRACKD__V1__RECORD__BODY_STATS, "record body", true);
		if (rc == 0) {
			enum { RUN_ID = WIRE_NUM(RECORD, RUN_ID) };
			note_run(w, f->data[RUN_ID], f->len[RUN_ID],
			         has(f, WIRE_NUM(RECORD, START)));
		}
		return rc;
	}
	if (d == &trackd__v1__item__descriptor) {
		if (!has(f, WIRE_NUM(ITEM, KEY)) || f->len[WIRE_NUM(ITEM, KEY)] == 0)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID, "empty key");
		if (!has(f, WIRE_NUM(ITEM, VALUE)))
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID, "item has no value");
		return 0;
	}
	if (d == &trackd__v1__value__descriptor)
		return check_oneof_single(w, f, WIRE_NUM(VALUE, DOUBLE_VALUE),
		                          WIRE_NUM(VALUE, NULL_VALUE), "value kind", true);
	if (d == &trackd__v1__history_row__descriptor) {
		enum { STEP = WIRE_NUM(HISTORY_ROW, STEP) };
		if (has(f, STEP) && (int64_t)f->varint[STEP] < 0)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "step %" PRId64 " is negative", (int64_t)f->varint[STEP]);
		/* An imported row's own stamps become JSON numbers in the row. */
		static const unsigned stamps[] = {WIRE_NUM(HISTORY_ROW, TIMESTAMP),
		                                  WIRE_NUM(HISTORY_ROW, RUNTIME)};
		for (size_t i = 0; i < sizeof stamps / sizeof stamps[0]; i++) {
			double v;
			uint64_t bits = f->varint[stamps[i]];
			memcpy(&v, &bits, sizeof v);
			if (has(f, stamps[i]) && (!isfinite(v) || v < 0))
				return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
				            "%s is not a finite number >= 0",
				            stamps[i] == WIRE_NUM(HISTORY_ROW, TIMESTAMP)
				                ? "timestamp"
				                : "runtime");
		}
		return 0;
	}
	if (d == &trackd__v1__system_stats__descriptor) {
		/* A client's sample (an import's) says when it was taken: the agent's
		 * receive time would put it at the import, not in the run. */
		if (!has(f, WIRE_NUM(SYSTEM_STATS, TIME_US)))
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "a system-metrics sample needs time_us");
		return 0;
	}
	if (d == &trackd__v1__run_start__descriptor) {
		enum { TAGS = WIRE_NUM(RUN_START, TAGS) };
		if (has(f, TAGS) && f->count[TAGS] > TRACKD_MAX_TAGS)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE, "%u tags, limit %u",
			            f->count[TAGS], TRACKD_MAX_TAGS);
		return 0;
	}
	if (d == &trackd__v1__run_rename__descriptor ||
	    d == &trackd__v1__rename_request__descriptor) {
		unsigned tags = d == &trackd__v1__run_rename__descriptor
		                    ? WIRE_NUM(RUN_RENAME, TAGS)
		                    : WIRE_NUM(RENAME_REQUEST, TAGS);
		if (has(f, tags) && f->count[tags] > TRACKD_MAX_TAGS)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE, "%u tags, limit %u",
			            f->count[tags], TRACKD_MAX_TAGS);
		return 0;
	}
	if (d == &trackd__v1__saved_file__descriptor) {
		enum { NAME = WIRE_NUM(SAVED_FILE, NAME), SHA = WIRE_NUM(SAVED_FILE, SHA256) };
		if (!has(f, SHA) || f->len[SHA] != 32)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "sha256 must be 32 bytes");
		if (!has(f, NAME) || !files_name_valid((const char *)f->data[NAME], f->len[NAME]))
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "file name is empty, absolute, longer than %u bytes, or has "
			            "an empty, '.' or '..' component",
			            TRACKD_MAX_FILE_NAME_BYTES);
		return 0;
	}
	/* Artifacts: the rules of common/artifact_names.h, so that a record the
	 * artifact store would refuse never reaches the log (the client checks
	 * the same first). Each alias is checked by the store. */
	if (d == &trackd__v1__artifact_log__descriptor) {
		enum {
			NAME = WIRE_NUM(ARTIFACT_LOG, NAME),
			TYPE = WIRE_NUM(ARTIFACT_LOG, TYPE),
			META = WIRE_NUM(ARTIFACT_LOG, METADATA_JSON),
			ALIASES = WIRE_NUM(ARTIFACT_LOG, ALIASES),
			ENTRIES = WIRE_NUM(ARTIFACT_LOG, ENTRIES)
		};
		if (!has(f, NAME) ||
		    !artifact_name_valid((const char *)f->data[NAME], f->len[NAME]))
			return fail(
			    w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			    "artifact name is not a name (1-%u bytes of [A-Za-z0-9_.-], not "
			    "'.' or '..')",
			    TRACKD_ARTIFACT_MAX_NAME_BYTES);
		if (!has(f, TYPE) ||
		    !artifact_name_valid((const char *)f->data[TYPE], f->len[TYPE]))
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "artifact type is not a name");
		if (has(f, META) && f->len[META] > TRACKD_ARTIFACT_MAX_METADATA_BYTES)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
			            "artifact metadata: %zu bytes, limit %u", f->len[META],
			            TRACKD_ARTIFACT_MAX_METADATA_BYTES);
		if (has(f, ALIASES) && f->count[ALIASES] > TRACKD_ARTIFACT_MAX_ALIASES)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
			            "%u artifact aliases, limit %u", f->count[ALIASES],
			            TRACKD_ARTIFACT_MAX_ALIASES);
		if (has(f, ENTRIES) && f->count[ENTRIES] > TRACKD_ARTIFACT_MAX_ENTRIES)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
			            "%u artifact entries, limit %u", f->count[ENTRIES],
			            TRACKD_ARTIFACT_MAX_ENTRIES);
		return 0;
	}
	if (d == &trackd__v1__artifact_entry__descriptor) {
		enum {
			PATH = WIRE_NUM(ARTIFACT_ENTRY, PATH),
			SHA = WIRE_NUM(ARTIFACT_ENTRY, SHA256),
			MD5 = WIRE_NUM(ARTIFACT_ENTRY, MD5_B64),
			REF = WIRE_NUM(ARTIFACT_ENTRY, REF)
		};
		if (!has(f, PATH) || !files_name_valid((const char *)f->data[PATH], f->len[PATH]))
			return fail(
			    w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			    "artifact entry path is empty, absolute, longer than %u bytes, or "
			    "has an empty, '.' or '..' component",
			    TRACKD_MAX_FILE_NAME_BYTES);
		bool file = has(f, SHA) && f->len[SHA] == 32 && has(f, MD5) && f->len[MD5] > 0;
		bool ref = !has(f, SHA) && has(f, REF) && f->len[REF] > 0 &&
		           f->len[REF] <= TRACKD_ARTIFACT_MAX_REF_BYTES;
		if (!file && !ref)
			return fail(
			    w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			    "artifact entry is neither a file (sha256 of 32 bytes, md5) nor a "
			    "reference (a URI of at most %u bytes)",
			    TRACKD_ARTIFACT_MAX_REF_BYTES);
		return 0;
	}
	if (d == &trackd__v1__artifact_use__descriptor) {
		enum { ART = WIRE_NUM(ARTIFACT_USE, ARTIFACT) };
		if (!has(f, ART) || f->len[ART] == 0)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "artifact use names no artifact");
		return 0;
	}
	if (d == &trackd__v1__run_environment__descriptor) {
		enum { ARGS = WIRE_NUM(RUN_ENVIRONMENT, ARGS) };
		if (has(f, ARGS) && f->count[ARGS] > TRACKD_MAX_ENV_ARGS)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE, "%u args, limit %u",
			            f->count[ARGS], TRACKD_MAX_ENV_ARGS);
		return 0;
	}
	if (d == &trackd__v1__define_metric__descriptor) {
		enum { NAME = WIRE_NUM(DEFINE_METRIC, NAME) };
		if (!has(f, NAME) || f->len[NAME] == 0)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "metric name is empty");
		return 0;
	}
	return 0;
}

/* Rules for one string field, by where it sits. */
static int check_string(struct walk *w, const ProtobufCMessageDescriptor *d,
                        const ProtobufCFieldDescriptor *fd, const struct wire_field *wf)
{
	if (!utf8_valid_no_nul(wf->data, wf->len))
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID, "not valid UTF-8");
	if (d == &trackd__v1__item__descriptor && fd->id == WIRE_NUM(ITEM, KEY)) {
		if (wf->len > w->lim->max_key_bytes)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
			            "key is %zu bytes, limit %" PRIu64, wf->len,
			            w->lim->max_key_bytes);
		return 0;
	}
	if (d == &trackd__v1__record__descriptor && fd->id == WIRE_NUM(RECORD, RUN_ID))
		return check_run_id(w, wf->data, wf->len);
	if (d == &trackd__v1__run_start__descriptor && fd->id != WIRE_NUM(RUN_START, NOTES)) {
		if (wf->len > TRACKD_MAX_NAME_BYTES)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
			            "%zu bytes, limit %u", wf->len, TRACKD_MAX_NAME_BYTES);
		return check_run_name(w, fd, wf->data, wf->len);
	}
	/* Paths, a branch, a URL: one line each, so that no control character
	 * reaches a terminal through `trackctl show`. */
	if (d == &trackd__v1__run_environment__descriptor &&
	    fd->id != WIRE_NUM(RUN_ENVIRONMENT, ARGS)) {
		if (wf->len > TRACKD_MAX_ENV_STRING)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
			            "%zu bytes, limit %u", wf->len, TRACKD_MAX_ENV_STRING);
		for (size_t i = 0; i < wf->len; i++)
			if (wf->data[i] < 0x20 || wf->data[i] == 0x7f)
				return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
				            "contains a control character (0x%02x)", wf->data[i]);
		return 0;
	}
	/* A run update's name and tags are held to a run start's limits (its
	 * notes, like the start's, only to the string limit). */
	bool update_notes =
	    (d == &trackd__v1__run_rename__descriptor && fd->id == WIRE_NUM(RUN_RENAME, NOTES)) ||
	    (d == &trackd__v1__rename_request__descriptor &&
	     fd->id == WIRE_NUM(RENAME_REQUEST, NOTES));
	bool update_name = (d == &trackd__v1__run_rename__descriptor && !update_notes) ||
	                   (d == &trackd__v1__rename_request__descriptor &&
	                    (fd->id == WIRE_NUM(RENAME_REQUEST, NAME) ||
	                     fd->id == WIRE_NUM(RENAME_REQUEST, TAGS)));
	if ((d == &trackd__v1__define_metric__descriptor || update_name) &&
	    wf->len > TRACKD_MAX_NAME_BYTES)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE, "%zu bytes, limit %u",
		            wf->len, TRACKD_MAX_NAME_BYTES);
	if (update_name)
		return 0; /* as a run start's names: their own limit only */
	if (d == &trackd__v1__summary_update__descriptor &&
	    fd->id == WIRE_NUM(SUMMARY_UPDATE, REMOVE_KEYS) && wf->len > w->lim->max_key_bytes)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
		            "key is %zu bytes, limit %" PRIu64, wf->len, w->lim->max_key_bytes);
	if (wf->len > w->lim->max_string_bytes)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
		            "string is %zu bytes, limit %" PRIu64, wf->len,
		            w->lim->max_string_bytes);
	return 0;
}

static int walk_message(struct walk *w, const ProtobufCMessageDescriptor *d, const uint8_t *buf,
                        size_t len, struct facts *f);

static int enter(struct walk *w, const char *name, int64_t index)
{
	if (w->depth >= PATH_MAX_DEPTH)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
		            "message nested too deeply");
	w->path[w->depth].name = name;
	w->path[w->depth].index = index;
	w->depth++;
	return 0;
}

static int walk_submessage(struct walk *w, const ProtobufCMessageDescriptor *d,
                           const ProtobufCFieldDescriptor *fd, const struct wire_field *wf,
                           int64_t index)
{
	const ProtobufCMessageDescriptor *sub = fd->descriptor;
	if (enter(w, fd->name, index) != 0)
		return -1;
	if (sub == &trackd__v1__record__descriptor)
		w->items_in_record = 0;
	/* An item, or a list's element, is one value in the record and sits one
	 * level below its parent: both count, so a list cannot smuggle in what a
	 * map may not hold. */
	bool level =
	    sub == &trackd__v1__item__descriptor ||
	    (d == &trackd__v1__list_value__descriptor && sub == &trackd__v1__value__descriptor);
	if (level) {
		if (++w->items_in_record > w->lim->max_items_per_record)
			return fail(
			    w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
			    "more than %" PRIu64
			    " items in one record (nested items and list elements included)",
			    w->lim->max_items_per_record);
		if (++w->item_nesting > w->lim->max_nesting_depth)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
			            "nesting deeper than %" PRIu64 " levels",
			            w->lim->max_nesting_depth);
	}
	struct facts sub_facts;
	if (walk_message(w, sub, wf->data, wf->len, &sub_facts) != 0)
		return -1;
	if (level)
		w->item_nesting--;
	w->depth--;
	return 0;
}

static int walk_message(struct walk *w, const ProtobufCMessageDescriptor *d, const uint8_t *buf,
                        size_t len, struct facts *f)
{
	memset(f, 0, sizeof *f);
	struct wire_reader r;
	struct wire_field wf;
	wire_reader_init(&r, buf, len);
	int rc;
	while ((rc = wire_next(&r, &wf)) == 1) {
		const ProtobufCFieldDescriptor *fd =
		    protobuf_c_message_descriptor_get_field(d, wf.number);
		if (!fd)
			continue; /* unknown field: a newer client; ignored, as protobuf does */
		/* The sampler's counter bases say where a run's "since the run
		 * started" values count from: a client's sample (trackctl import)
		 * must not move them. */
		if (d == &trackd__v1__system_stats__descriptor &&
		    (fd->id == WIRE_NUM(SYSTEM_STATS, BOOT_ID) ||
		     fd->id == WIRE_NUM(SYSTEM_STATS, BASES)))
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
			            "%s is written by the agent only", fd->name);
		if (wf.type != wire_type_of(fd->type))
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_MALFORMED,
			            "field %s has wire type %d, expected %d", fd->name,
			            (int)wf.type, (int)wire_type_of(fd->type));
		uint32_t occurrence = 0;
		if (wf.number < FACT_FIELDS) {
			occurrence = f->count[wf.number]++;
			f->present |= 1u << wf.number;
			f->varint[wf.number] = wf.varint;
			f->data[wf.number] = wf.data;
			f->len[wf.number] = wf.len;
		}
		if (d == &trackd__v1__batch__descriptor && wf.number == WIRE_NUM(BATCH, RECORDS) &&
		    occurrence >= w->lim->max_records_per_batch)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
			            "more than %" PRIu64 " records in one batch",
			            w->lim->max_records_per_batch);
		if (d == &trackd__v1__list_value__descriptor &&
		    wf.number == WIRE_NUM(LIST_VALUE, VALUES) &&
		    occurrence >= w->lim->max_list_length)
			return fail(w, TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE,
			            "list of more than %" PRIu64 " elements",
			            w->lim->max_list_length);
		int64_t index = fd->label == PROTOBUF_C_LABEL_REPEATED ? (int64_t)occurrence : -1;
		switch (fd->type) {
		case PROTOBUF_C_TYPE_MESSAGE:
			if (walk_submessage(w, d, fd, &wf, index) != 0)
				return -1;
			break;
		case PROTOBUF_C_TYPE_STRING:
			if (enter(w, fd->name, index) != 0 || check_string(w, d, fd, &wf) != 0)
				return -1;
			w->depth--;
			break;
		case PROTOBUF_C_TYPE_ENUM:
			if (!protobuf_c_enum_descriptor_get_value(fd->descriptor, (int)wf.varint)) {
				enter(w, fd->name, index);
				return fail(w, TRACKD__V1__ERROR_CODE__ERROR_INVALID,
				            "unknown value %" PRIu64, wf.varint);
			}
			break;
		default: break;
		}
	}
	if (rc < 0)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_MALFORMED,
		            "undecodable protobuf (truncated or bad field encoding)");
	return check_message(w, d, f);
}

/* The version is checked before anything else: a future version may have another
 * schema, and its client deserves "unsupported version", not a schema error. */
static int check_version(struct walk *w, const uint8_t *buf, size_t len)
{
	struct wire_reader r;
	struct wire_field wf;
	wire_reader_init(&r, buf, len);
	int rc;
	bool seen = false;
	uint64_t version = 0;
	while ((rc = wire_next(&r, &wf)) == 1) {
		if (wf.number == WIRE_NUM(REQUEST, PROTOCOL_VERSION) && wf.type == WIRE_VARINT) {
			seen = true;
			version = wf.varint;
		}
	}
	if (rc < 0)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_MALFORMED,
		            "undecodable protobuf (truncated or bad field encoding)");
	if (!seen)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION,
		            "protocol_version missing; this agent speaks version %u",
		            TRACKD_PROTOCOL_VERSION);
	if (version != TRACKD_PROTOCOL_VERSION)
		return fail(w, TRACKD__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION,
		            "protocol version %" PRIu64 " is not supported; this agent speaks "
		            "version %u",
		            version, TRACKD_PROTOCOL_VERSION);
	return 0;
}

int validate_request(const struct validate_limits *limits, const void *buf, size_t len,
                     struct validated_request *out, char *errbuf, size_t errlen)
{
	static struct walk zero;
	struct walk w = zero;
	w.lim = limits;
	w.err = errbuf;
	w.errlen = errlen;
	if (errlen)
		errbuf[0] = '\0';
	memset(out, 0, sizeof *out);

	struct facts f;
	if (check_version(&w, buf, len) != 0 ||
	    walk_message(&w, &trackd__v1__request__descriptor, buf, len, &f) != 0)
		return w.code;
	if (has(&f, WIRE_NUM(REQUEST, STATUS))) {
		out->kind = VALIDATED_STATUS;
		return 0;
	}
	if (has(&f, WIRE_NUM(REQUEST, BLOB_QUERY)) || has(&f, WIRE_NUM(REQUEST, BLOB_CHUNK))) {
		out->kind = VALIDATED_BLOB;
		return 0;
	}
	if (has(&f, WIRE_NUM(REQUEST, QUERY))) {
		out->kind = VALIDATED_QUERY;
		out->query = f.data[WIRE_NUM(REQUEST, QUERY)];
		out->query_len = f.len[WIRE_NUM(REQUEST, QUERY)];
		return 0;
	}
	out->kind = VALIDATED_BATCH;
	out->batch = f.data[WIRE_NUM(REQUEST, BATCH)];
	out->batch_len = f.len[WIRE_NUM(REQUEST, BATCH)];
	out->lifecycle = w.lifecycle;
	memcpy(out->runs, w.runs, sizeof out->runs);
	out->n_runs = w.n_runs;
	out->runs_overflow = w.runs_overflow;
	/* Already valid: this second, shallow pass only picks out identity and counts. */
	struct wire_reader r;
	struct wire_field wf;
	wire_reader_init(&r, out->batch, out->batch_len);
	while (wire_next(&r, &wf) == 1) {
		if (wf.number == WIRE_NUM(BATCH, SESSION_ID))
			out->session_id = wf.data;
		else if (wf.number == WIRE_NUM(BATCH, SEQ))
			out->seq = wf.varint;
		else if (wf.number == WIRE_NUM(BATCH, RECORDS))
			out->records++;
	}
	return 0;
}

int validate_batch_identity(const uint8_t *batch, size_t len, const uint8_t **session_id,
                            uint64_t *seq)
{
	struct wire_reader r;
	struct wire_field wf;
	bool have_id = false, have_seq = false;
	wire_reader_init(&r, batch, len);
	int rc;
	while ((rc = wire_next(&r, &wf)) == 1) {
		if (wf.number == WIRE_NUM(BATCH, SESSION_ID) && wf.type == WIRE_LEN &&
		    wf.len == TRACKD_SESSION_ID_BYTES) {
			*session_id = wf.data;
			have_id = true;
		} else if (wf.number == WIRE_NUM(BATCH, SEQ) && wf.type == WIRE_VARINT) {
			*seq = wf.varint;
			have_seq = true;
		}
	}
	return rc == 0 && have_id && have_seq ? 0 : -1;
}

int validate_batch_runs(const uint8_t *batch, size_t len,
                        int (*fn)(void *arg, const uint8_t *run_id, size_t id_len, bool is_start),
                        void *arg)
{
	struct wire_reader r, rr;
	struct wire_field f, rf;
	wire_reader_init(&r, batch, len);
	while (wire_next(&r, &f) == 1) {
		if (f.number != WIRE_NUM(BATCH, RECORDS) || f.type != WIRE_LEN)
			continue;
		const uint8_t *id = NULL;
		size_t id_len = 0;
		bool is_start = false;
		wire_reader_init(&rr, f.data, f.len);
		while (wire_next(&rr, &rf) == 1) {
			if (rf.number == WIRE_NUM(RECORD, RUN_ID) && rf.type == WIRE_LEN) {
				id = rf.data;
				id_len = rf.len;
			} else if (rf.number == WIRE_NUM(RECORD, START)) {
				is_start = true;
			}
		}
		if (!id)
			continue;
		int rv = fn(arg, id, id_len, is_start);
		if (rv)
			return rv;
	}
	return 0;
}
