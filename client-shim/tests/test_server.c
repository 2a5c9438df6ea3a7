/*
 * test_server.c — see test_server.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "test_server.h"
#include "varint.h"

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static void *grow(void *p, size_t *cap, size_t want, size_t elem)
{
	if (want <= *cap)
		return p;
	size_t n = *cap ? *cap * 2 : 64;
	while (n < want)
		n *= 2;
	void *q = realloc(p, n * elem);
	if (q == NULL) {
		fprintf(stderr, "test_server: out of memory\n");
		abort();
	}
	*cap = n;
	return q;
}

static void violation(struct test_server *s, const char *what)
{
	s->violations++;
	if (s->violation[0] == '\0')
		snprintf(s->violation, sizeof(s->violation), "%s", what);
}

static void reply(struct test_server *s, const Trackd__V1__Reply *r)
{
	size_t len = trackd__v1__reply__get_packed_size(r);
	nng_msg *m;

	if (nng_msg_alloc(&m, len) != 0)
		return;
	trackd__v1__reply__pack(r, nng_msg_body(m));
	if (nng_sendmsg(s->sock, m, 0) != 0)
		nng_msg_free(m);
}

static unsigned attempts_locked(struct test_server *s, uint64_t seq)
{
	unsigned n = 0;

	for (size_t i = 0; i < s->n_reqs; i++)
		n += s->reqs[i].seq == seq;
	return n;
}

/* Cost runs: read just the envelope (version, batch length, session, seq) so
 * the stand-in agent is not the bottleneck it would be decoding every record. */
static bool envelope_seq(const uint8_t *p, size_t len, uint64_t *seq)
{
	const uint8_t *end = p + len;
	uint64_t v;

	if (len < 4 || p[0] != 0x08 || p[1] != TRACKD_PROTOCOL_VERSION || p[2] != 0x12)
		return false;
	p += 3;
	if (!varint_get(&p, end, &v, VARINT_MAX_BYTES) || end - p < 2 + TRACKD_SESSION_ID_BYTES + 2)
		return false;
	if (p[0] != 0x0a || p[1] != TRACKD_SESSION_ID_BYTES)
		return false;
	p += 2 + TRACKD_SESSION_ID_BYTES;
	if (*p++ != 0x10)
		return false;
	return varint_get(&p, end, seq, VARINT_MAX_BYTES);
}

/* False if this is not a batch (a status or query: answered the slow way). */
static bool ack_only(struct test_server *s, const uint8_t *body, size_t len)
{
	Trackd__V1__Reply r = TRACKD__V1__REPLY__INIT;
	Trackd__V1__Ack ack = TRACKD__V1__ACK__INIT;
	uint64_t seq;

	if (!envelope_seq(body, len, &seq))
		return false;
	pthread_mutex_lock(&s->mu);
	s->highest_appended = seq;
	s->acks++;
	pthread_mutex_unlock(&s->mu);
	ack.has_seq = true;
	ack.seq = seq;
	r.body_case = TRACKD__V1__REPLY__BODY_ACK;
	r.ack = &ack;
	reply(s, &r);
	return true;
}

/* The session's slot, added if new; NULL when the table is full. */
static struct ts_session *session_locked(struct test_server *s, const uint8_t *id, bool *fresh)
{
	*fresh = false;
	for (unsigned i = 0; i < s->n_sessions; i++) {
		if (memcmp(s->sessions[i].id, id, TRACKD_SESSION_ID_BYTES) == 0)
			return &s->sessions[i];
	}
	if (s->n_sessions > 0 && !s->multi_session)
		violation(s, "session id changed"); /* tests use one client per server */
	if (s->n_sessions == sizeof(s->sessions) / sizeof(s->sessions[0]))
		return NULL;
	struct ts_session *ss = &s->sessions[s->n_sessions++];
	memset(ss, 0, sizeof(*ss));
	memcpy(ss->id, id, TRACKD_SESSION_ID_BYTES);
	*fresh = true;
	return ss;
}

static void answer_status(struct test_server *s)
{
	Trackd__V1__Reply r = TRACKD__V1__REPLY__INIT;
	Trackd__V1__StatusReply st = TRACKD__V1__STATUS_REPLY__INIT;

	pthread_mutex_lock(&s->mu);
	s->statuses++;
	pthread_mutex_unlock(&s->mu);
	st.version = "test-server";
	st.state_dir = (char *)s->state_dir;
	st.has_batches_acked = true;
	st.batches_acked = s->acks;
	r.body_case = TRACKD__V1__REPLY__BODY_STATUS;
	r.status = &st;
	reply(s, &r);
}

const char *ts_query_run(const Trackd__V1__Query *q)
{
	switch (q->request_case) {
	case TRACKD__V1__QUERY__REQUEST_RUN: return q->run->run;
	case TRACKD__V1__QUERY__REQUEST_HISTORY: return q->history->run;
	case TRACKD__V1__QUERY__REQUEST_RENAME: return q->rename->run;
	case TRACKD__V1__QUERY__REQUEST_RETRY: return q->retry->run;
	case TRACKD__V1__QUERY__REQUEST_SYNC: return q->sync->run;
	case TRACKD__V1__QUERY__REQUEST_SYNC_STATUS: return q->sync_status->run;
	default: return NULL;
	}
}

static void answer_query(struct test_server *s, const Trackd__V1__Query *q)
{
	Trackd__V1__Reply r = TRACKD__V1__REPLY__INIT;
	Trackd__V1__QueryReply qr = TRACKD__V1__QUERY_REPLY__INIT;
	Trackd__V1__Error err = TRACKD__V1__ERROR__INIT;
	int code = TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND;
	const char *message = "no such run";
	bool answered = false;

	pthread_mutex_lock(&s->mu);
	s->queries++;
	/* The request's field name ("runs", "run", "history", …) stands for its kind. */
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
	    &trackd__v1__query__descriptor, q->request_case);
	snprintf(s->last_query_kind, sizeof(s->last_query_kind), "%s", f ? f->name : "");
	const char *run = ts_query_run(q);
	snprintf(s->last_query_run, sizeof(s->last_query_run), "%s", run ? run : "");
	pthread_mutex_unlock(&s->mu);
	if (s->query)
		answered = s->query(s->query_arg, q, &qr, &code, &message);
	if (answered) {
		r.body_case = TRACKD__V1__REPLY__BODY_QUERY;
		r.query = &qr;
	} else {
		err.has_code = true;
		err.code = (Trackd__V1__ErrorCode)code;
		err.message = (char *)message;
		r.body_case = TRACKD__V1__REPLY__BODY_ERROR;
		r.error = &err;
	}
	reply(s, &r);
}

static void handle(struct test_server *s, nng_msg *msg)
{
	const uint8_t *body = nng_msg_body(msg);
	size_t len = nng_msg_len(msg);

	if (s->discard && ack_only(s, body, len))
		return;
	Trackd__V1__Request *req = trackd__v1__request__unpack(NULL, len, body);
	Trackd__V1__Reply r = TRACKD__V1__REPLY__INIT;
	Trackd__V1__Ack ack = TRACKD__V1__ACK__INIT;
	Trackd__V1__Error err = TRACKD__V1__ERROR__INIT;
	bool keep = false;

	if (req != NULL && req->body_case == TRACKD__V1__REQUEST__BODY_STATUS) {
		answer_status(s);
		trackd__v1__request__free_unpacked(req, NULL);
		return;
	}
	if (req != NULL && req->body_case == TRACKD__V1__REQUEST__BODY_QUERY) {
		answer_query(s, req->query);
		trackd__v1__request__free_unpacked(req, NULL);
		return;
	}
	pthread_mutex_lock(&s->mu);
	if (req == NULL || req->protocol_version != TRACKD_PROTOCOL_VERSION ||
	    req->body_case != TRACKD__V1__REQUEST__BODY_BATCH || !req->batch->has_seq ||
	    req->batch->session_id.len != TRACKD_SESSION_ID_BYTES) {
		violation(s, req == NULL ? "undecodable request" : "bad envelope");
		pthread_mutex_unlock(&s->mu);
		err.has_code = true;
		err.code = TRACKD__V1__ERROR_CODE__ERROR_MALFORMED;
		err.message = "bad envelope";
		r.body_case = TRACKD__V1__REPLY__BODY_ERROR;
		r.error = &err;
		reply(s, &r);
		if (req)
			trackd__v1__request__free_unpacked(req, NULL);
		return;
	}

	Trackd__V1__Batch *b = req->batch;
	bool fresh;
	struct ts_session *ss = session_locked(s, b->session_id.data, &fresh);
	if (ss == NULL) {
		violation(s, "too many sessions");
		pthread_mutex_unlock(&s->mu);
		trackd__v1__request__free_unpacked(req, NULL);
		return;
	}
	if (fresh && s->multi_session && b->seq > 0)
		ss->max_seen = b->seq - 1; /* a replay may start anywhere */
	/* One batch in flight, strictly in order: a new seq is exactly the next
	 * one; anything else must be a resend of the latest (a replay of a
	 * spool may resend older ones, which the agent acks as duplicates). */
	if (b->seq == 0 || b->seq > ss->max_seen + 1 ||
	    (!s->multi_session && b->seq < ss->max_seen))
		violation(s, "seq out of order");
	if (b->seq > ss->max_seen)
		ss->max_seen = b->seq;
	if (b->n_records == 0)
		violation(s, "empty batch");
	for (size_t i = 0; i < b->n_records; i++) {
		if (b->records[i]->run_id == NULL || b->records[i]->run_id[0] == '\0')
			violation(s, "record without run id");
	}

	unsigned attempt = attempts_locked(s, b->seq) + 1;
	enum ts_action action = s->decide ? s->decide(s->decide_arg, b->seq, attempt) : TS_ACK;

	s->reqs = grow(s->reqs, &s->cap_reqs, s->n_reqs + 1, sizeof(*s->reqs));
	struct ts_request *rq = &s->reqs[s->n_reqs++];
	rq->session = (unsigned)(ss - s->sessions);
	rq->seq = b->seq;
	rq->len = len;
	rq->bytes = malloc(len);
	if (rq->bytes)
		memcpy(rq->bytes, body, len);
	rq->n_records = b->n_records;
	rq->action = action;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	rq->arrived_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;

	switch (action) {
	case TS_ACK:
	case TS_DROP:
		ack.has_seq = true;
		ack.seq = b->seq;
		if (b->seq <= ss->highest_appended) {
			ack.has_duplicate = true;
			ack.duplicate = true;
			s->dups++;
		} else {
			ss->highest_appended = b->seq;
			s->kept = grow(s->kept, &s->cap_kept, s->n_kept + 1, sizeof(*s->kept));
			s->kept[s->n_kept++] = req;
			s->records = grow(s->records, &s->cap_records, s->n_records + b->n_records,
			                  sizeof(*s->records));
			for (size_t i = 0; i < b->n_records; i++)
				s->records[s->n_records++] = b->records[i];
			keep = true;
		}
		s->acks += action == TS_ACK;
		r.body_case = TRACKD__V1__REPLY__BODY_ACK;
		r.ack = &ack;
		break;
	case TS_ERROR_RETRY:
	case TS_ERROR_REJECT:
		err.has_code = true;
		err.code = action == TS_ERROR_RETRY ? TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE
		                                    : TRACKD__V1__ERROR_CODE__ERROR_INVALID;
		err.message = (char *)(action == TS_ERROR_RETRY ? "disk busy, retry"
		                       : s->reject_message      ? s->reject_message
		                                                : "invalid batch");
		err.has_retryable = true;
		err.retryable = action == TS_ERROR_RETRY;
		r.body_case = TRACKD__V1__REPLY__BODY_ERROR;
		r.error = &err;
		break;
	}
	if (ss == &s->sessions[0]) {
		memcpy(s->session_id, ss->id, TRACKD_SESSION_ID_BYTES);
		s->highest_appended = ss->highest_appended;
		s->max_seen = ss->max_seen;
	}
	pthread_mutex_unlock(&s->mu);

	if (action != TS_DROP)
		reply(s, &r);
	if (!keep)
		trackd__v1__request__free_unpacked(req, NULL);
}

static void *server_main(void *arg)
{
	struct test_server *s = arg;
	nng_listener l;
	int rv;

	if (s->start_delay_ms > 0)
		sleep_ms(s->start_delay_ms);
	/* Like the agent: bounded receive size. */
	if ((rv = nng_listener_create(&l, s->sock, s->url)) != 0 ||
	    (rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, TRACKD_DEFAULT_MAX_MESSAGE_BYTES)) !=
	        0 ||
	    (rv = nng_listener_start(l, 0)) != 0) {
		pthread_mutex_lock(&s->mu);
		violation(s, "listen failed");
		pthread_mutex_unlock(&s->mu);
		fprintf(stderr, "test_server: listen %s: %s\n", s->url, nng_strerror(rv));
		return NULL;
	}
	pthread_mutex_lock(&s->mu);
	s->listening = true;
	pthread_mutex_unlock(&s->mu);

	for (;;) {
		nng_msg *msg;

		pthread_mutex_lock(&s->mu);
		bool stop = s->stop;
		pthread_mutex_unlock(&s->mu);
		if (stop)
			break;
		rv = nng_recvmsg(s->sock, &msg, 0);
		if (rv == NNG_ETIMEDOUT)
			continue;
		if (rv != 0)
			break;
		handle(s, msg);
		nng_msg_free(msg);
	}
	return NULL;
}

int ts_start(struct test_server *s, const char *url)
{
	snprintf(s->url, sizeof(s->url), "%s", url);
	pthread_mutex_init(&s->mu, NULL);
	if (nng_rep0_open(&s->sock) != 0)
		return -1;
	nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, 20);
	nng_socket_set_ms(s->sock, NNG_OPT_SENDTIMEO, 1000);
	if (pthread_create(&s->thread, NULL, server_main, s) != 0) {
		nng_close(s->sock);
		return -1;
	}
	return 0;
}

void ts_stop(struct test_server *s)
{
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	nng_close(s->sock);
}

void ts_free(struct test_server *s)
{
	for (size_t i = 0; i < s->n_reqs; i++)
		free(s->reqs[i].bytes);
	free(s->reqs);
	for (size_t i = 0; i < s->n_kept; i++)
		trackd__v1__request__free_unpacked(s->kept[i], NULL);
	free(s->kept);
	free(s->records);
	pthread_mutex_destroy(&s->mu);
}

void ts_lock(struct test_server *s)
{
	pthread_mutex_lock(&s->mu);
}

void ts_unlock(struct test_server *s)
{
	pthread_mutex_unlock(&s->mu);
}

bool ts_wait_records(struct test_server *s, size_t n, int timeout_ms)
{
	for (int waited = 0;; waited += 5) {
		ts_lock(s);
		bool ok = s->n_records >= n;
		ts_unlock(s);
		if (ok)
			return true;
		if (waited >= timeout_ms)
			return false;
		sleep_ms(5);
	}
}

bool ts_wait_seq(struct test_server *s, uint64_t seq, int timeout_ms)
{
	for (int waited = 0;; waited += 5) {
		ts_lock(s);
		bool ok = attempts_locked(s, seq) > 0;
		ts_unlock(s);
		if (ok)
			return true;
		if (waited >= timeout_ms)
			return false;
		sleep_ms(5);
	}
}

unsigned ts_count_seq(struct test_server *s, uint64_t seq)
{
	ts_lock(s);
	unsigned n = attempts_locked(s, seq);
	ts_unlock(s);
	return n;
}

bool ts_wait_listening(struct test_server *s, int timeout_ms)
{
	for (int waited = 0;; waited += 5) {
		ts_lock(s);
		bool ok = s->listening;
		ts_unlock(s);
		if (ok)
			return true;
		if (waited >= timeout_ms)
			return false;
		sleep_ms(5);
	}
}
