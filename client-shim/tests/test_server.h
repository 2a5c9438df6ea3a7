/*
 * test_server.h — a tiny stand-in for the trackd agent, for client tests and
 * the cost figures: an NNG rep0 listener in its own thread that decodes each
 * Request with protobuf-c, checks the envelope and seq order, "appends" each
 * new batch (keeps its decoded records) and acknowledges — or drops the reply
 * or answers an Error, as the test's `decide` hook says.
 *
 * Threading: ts_start/ts_stop/ts_free from one thread; the result fields may be
 * read under ts_lock (or freely after ts_stop).
 */
#ifndef TRACKD_CLIENT_TEST_SERVER_H
#define TRACKD_CLIENT_TEST_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "trackd/v1/limits.h"
#include "trackd/v1/trackd.pb-c.h"

enum ts_action {
	TS_ACK,          /* append if new, acknowledge */
	TS_DROP,         /* append like TS_ACK, but lose the reply (the client resends) */
	TS_ERROR_RETRY,  /* Error{UNAVAILABLE, retryable} */
	TS_ERROR_REJECT, /* Error{INVALID, not retryable}; batch not appended */
};

/* Decides what to do with the attempt-th (1-based) arrival of batch `seq`. */
typedef enum ts_action (*ts_decide_fn)(void *arg, uint64_t seq, unsigned attempt);

/* The run a typed query names (NULL for those that name none). */
const char *ts_query_run(const Trackd__V1__Query *q);

/* Answers a Query: fill `reply` (what it points to must outlive the call,
 * e.g. static) and return true, or return false and set *code (an ErrorCode)
 * and *message for an Error. */
typedef bool (*ts_query_fn)(void *arg, const Trackd__V1__Query *q, Trackd__V1__QueryReply *reply,
                            int *code, const char **message);

struct ts_request {
	unsigned session; /* index into sessions */
	uint64_t seq;
	size_t len;
	uint8_t *bytes; /* the request as received */
	size_t n_records;
	enum ts_action action;
	int64_t arrived_ms; /* CLOCK_MONOTONIC */
};

struct test_server {
	/* Set before ts_start. */
	char url[256];
	int start_delay_ms;
	ts_decide_fn decide;
	void *decide_arg;
	const char *reject_message;
	bool discard; /* acknowledge after reading only the envelope (cost runs) */
	/* Several sessions may send (spool replays); each keeps its own seq
	 * order, and a session's first seq may be any (earlier ones were
	 * delivered elsewhere). Otherwise a second session is a violation. */
	bool multi_session;
	ts_query_fn query; /* default: every query is ERROR_NOT_FOUND */
	void *query_arg;
	const char *state_dir; /* StatusReply.state_dir */

	pthread_t thread;
	pthread_mutex_t mu;
	bool stop;
	bool listening;
	nng_socket sock;

	/* Results, guarded by mu. */
	struct ts_request *reqs;
	size_t n_reqs, cap_reqs;
	Trackd__V1__Request **kept; /* appended batches, decoded */
	size_t n_kept, cap_kept;
	const Trackd__V1__Record **records; /* appended records, in order */
	size_t n_records, cap_records;
	struct ts_session {
		uint8_t id[TRACKD_SESSION_ID_BYTES];
		uint64_t highest_appended;
		uint64_t max_seen;
	} sessions[16];
	unsigned n_sessions;
	/* The first session's, as single-session tests read them. */
	uint8_t session_id[TRACKD_SESSION_ID_BYTES];
	uint64_t highest_appended;
	uint64_t max_seen;
	unsigned violations;
	char violation[256];
	unsigned acks, dups;
	unsigned queries, statuses; /* requests of those kinds answered */
	char last_query_kind[32], last_query_run[256];
};

/* Starts the server thread (it listens after start_delay_ms). 0 or -1. */
int ts_start(struct test_server *s, const char *url);
/* Stops and joins the thread; results stay readable. */
void ts_stop(struct test_server *s);
void ts_free(struct test_server *s);
void ts_lock(struct test_server *s);
void ts_unlock(struct test_server *s);
/* Waits up to timeout_ms until at least n records were appended. */
bool ts_wait_records(struct test_server *s, size_t n, int timeout_ms);
/* Waits up to timeout_ms until the server listens (for synchronous dials). */
bool ts_wait_listening(struct test_server *s, int timeout_ms);
/* Waits up to timeout_ms until a request with this seq arrived. */
bool ts_wait_seq(struct test_server *s, uint64_t seq, int timeout_ms);
/* How many requests carried this seq. */
unsigned ts_count_seq(struct test_server *s, uint64_t seq);

#endif
