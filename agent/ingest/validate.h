/*
 * validate.h — checks a client's request, straight from its wire bytes, before
 * anything is appended.
 *
 * The request is walked with the protobuf-c descriptors of trackd.proto as the
 * schema, without unpacking: no allocation, recursion bounded by the nesting
 * limit, and the cost linear in the message size. Everything a sink relies on is
 * checked here: protocol version, the envelope, field wire types, UTF-8 in every
 * string, each configured size limit, nesting depth (a list's elements count a
 * level, as a map's items do), list length, required fields and the
 * run-id rules. The first problem found is reported with the path of the
 * offending field, e.g. `batch.records[3].history.items[2].key: empty key`.
 *
 * Pure functions; thread-safe. `buf` is borrowed; the pointers in the result
 * point into it.
 */
#ifndef TRACKD_INGEST_VALIDATE_H
#define TRACKD_INGEST_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct validate_limits {
	uint64_t max_records_per_batch;
	uint64_t max_items_per_record; /* Item entries in one record, nested included */
	uint64_t max_key_bytes;
	uint64_t max_string_bytes;
	uint64_t max_nesting_depth; /* levels of Item and list element nesting; 1 = flat */
	uint64_t max_list_length;   /* elements of one ListValue */
};

/* VALIDATED_BLOB: a BlobQuery or BlobChunk (envelope checked; its fields are
 * the blob store's to check, blobs.h). */
enum validated_kind { VALIDATED_BATCH, VALIDATED_STATUS, VALIDATED_QUERY, VALIDATED_BLOB };

/* Distinct runs of one batch listed by validation (a batch is mostly one run's). */
#define VALIDATE_RUNS_HELD 8

struct validated_run {
	const uint8_t *id; /* the run id bytes inside the batch, not NUL-terminated */
	size_t len;
	bool start; /* one of the batch's records for it is a RunStart */
};

struct validated_request {
	enum validated_kind kind;
	/* VALIDATED_BATCH: */
	const uint8_t *batch; /* the Batch message bytes, as received */
	size_t batch_len;
	const uint8_t *session_id; /* TRACKD_SESSION_ID_BYTES bytes */
	uint64_t seq;
	uint64_t records;
	bool lifecycle; /* holds a RunStart or RunExit: made durable before
	                 * its ack under every fsync policy (ingest.h) */
	/* The runs its records name, in order of first appearance, found during
	 * validation so that ingest's owner check needs no pass of its own; when
	 * there are more than VALIDATE_RUNS_HELD, `runs_overflow` is set and
	 * validate_batch_runs lists them all. */
	struct validated_run runs[VALIDATE_RUNS_HELD];
	size_t n_runs;
	bool runs_overflow;
	/* VALIDATED_QUERY: the Query message bytes */
	const uint8_t *query;
	size_t query_len;
};

/* Returns 0 when the request is valid; otherwise a TRACKD__V1__ERROR_CODE__* value
 * (> 0) with a message naming the problem in errbuf. */
int validate_request(const struct validate_limits *limits, const void *buf, size_t len,
                     struct validated_request *out, char *errbuf, size_t errlen);

/* Reads session id and seq from stored Batch bytes (used when rebuilding the
 * dedupe table from the log). Returns 0, or -1 when they are not there. */
int validate_batch_identity(const uint8_t *batch, size_t len, const uint8_t **session_id,
                            uint64_t *seq);

/* Calls `fn` for each record of stored or validated Batch bytes with its run id
 * (not NUL-terminated) and whether it is a RunStart. Stops early when fn
 * returns non-zero and returns that value. */
int validate_batch_runs(const uint8_t *batch, size_t len,
                        int (*fn)(void *arg, const uint8_t *run_id, size_t id_len, bool is_start),
                        void *arg);

#endif
