/*
 * sender.c — the thread that ships sealed batches to the agent.
 *
 * One request is in flight at a time, always the oldest unacknowledged batch,
 * so the agent sees seqs in order. A timeout or connection error resends the
 * same batch (same seq; the agent acknowledges a duplicate without appending
 * it again) after a capped backoff. To pipeline later, give each in-flight
 * batch its own nng_ctx and keep a window of batches past `head`; the buffer
 * already keeps every batch until its own ack.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "internal.h"

enum outcome {
	ACKED,    /* agent stored the batch (or had already) */
	REJECTED, /* agent refused it for good: drop and count */
	RETRY,    /* no answer, connection trouble or a retryable error */
};

/* Messages may be cut to fit; they are for people, not for parsing. */
__attribute__((format(printf, 3, 4))) static void explain(char *why, size_t len, const char *fmt,
                                                          ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

static const char *error_code_name(Trackd__V1__ErrorCode code)
{
	const ProtobufCEnumValue *v =
	    protobuf_c_enum_descriptor_get_value(&trackd__v1__error_code__descriptor, (int)code);

	return v ? v->name : "ERROR_UNKNOWN";
}

/* Sends batch b and waits for the reply; `why` explains any outcome but ACKED.
 * Runs without the lock: b is sealed and only this thread frees it. */
static enum outcome exchange(struct td_run *run, const struct td_batch *b, char *why,
                             size_t why_len)
{
	uint8_t envelope[TD_ENVELOPE_MAX];
	size_t env_len = td_envelope_put(envelope, run->session_id, b->seq, b->len);
	nng_msg *req, *rep;
	int rv;

	if ((rv = nng_msg_alloc(&req, env_len + b->len)) != 0) {
		explain(why, why_len, "cannot allocate a %zu-byte request: %s", env_len + b->len,
		        nng_strerror(rv));
		return RETRY;
	}
	uint8_t *body = nng_msg_body(req);
	memcpy(body, envelope, env_len);
	memcpy(body + env_len, b->data, b->len);

	if ((rv = nng_sendmsg(run->sock, req, 0)) != 0) {
		nng_msg_free(req); /* still ours when sending failed */
		explain(why, why_len, "agent at %s not reachable: %s", run->url,
		        rv == NNG_ETIMEDOUT ? "no connection" : nng_strerror(rv));
		return RETRY;
	}
	if ((rv = nng_recvmsg(run->sock, &rep, 0)) != 0) {
		explain(why, why_len, "no reply from the agent at %s: %s", run->url,
		        nng_strerror(rv));
		return RETRY;
	}

	Trackd__V1__Reply *reply =
	    trackd__v1__reply__unpack(NULL, nng_msg_len(rep), (const uint8_t *)nng_msg_body(rep));
	nng_msg_free(rep);
	if (reply == NULL) {
		explain(why, why_len, "undecodable reply from the agent at %s", run->url);
		return RETRY;
	}

	enum outcome out = RETRY;
	switch (reply->body_case) {
	case TRACKD__V1__REPLY__BODY_ACK:
		if (reply->ack->has_seq && reply->ack->seq == b->seq) {
			out = ACKED;
		} else {
			explain(why, why_len, "agent acknowledged seq %llu, expected %llu",
			        (unsigned long long)reply->ack->seq, (unsigned long long)b->seq);
		}
		break;
	case TRACKD__V1__REPLY__BODY_ERROR: {
		const Trackd__V1__Error *e = reply->error;
		explain(why, why_len, "%s: %s", error_code_name(e->code),
		        e->message ? e->message : "(no message)");
		out = e->retryable ? RETRY : REJECTED;
		break;
	}
	default:
		explain(why, why_len, "unexpected reply (body %d) from the agent",
		        (int)reply->body_case);
		break;
	}
	trackd__v1__reply__free_unpacked(reply, NULL);
	return out;
}

static void wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t deadline_ms)
{
	struct timespec ts = {
	    .tv_sec = (time_t)(deadline_ms / 1000),
	    .tv_nsec = (long)(deadline_ms % 1000) * 1000000,
	};

	pthread_cond_timedwait(cond, mu, &ts);
}

static void *sender_main(void *arg)
{
	struct td_run *run = arg;
	int64_t next_flush = td_mono_ms() + run->flush_interval_ms;
	int64_t retry_at = 0;
	uint32_t backoff = 0;
	char why[256];

	pthread_mutex_lock(&run->mu);
	while (!run->stopping) {
		int64_t now = td_mono_ms();

		if (now >= next_flush || run->seal_requested || run->finishing) {
			/* On ENOMEM the batch stays open and is sealed next time. */
			(void)td_buffer_seal_locked(run);
			if (now >= next_flush)
				next_flush = now + run->flush_interval_ms;
		}
		if (run->head != NULL && now >= retry_at) {
			struct td_batch *b = run->head;
			pthread_mutex_unlock(&run->mu);
			enum outcome out = exchange(run, b, why, sizeof(why));
			pthread_mutex_lock(&run->mu);
			switch (out) {
			case ACKED:
				td_buffer_release_head_locked(run, true);
				backoff = 0;
				pthread_cond_broadcast(&run->drained);
				break;
			case REJECTED:
				snprintf(run->agent_error, sizeof(run->agent_error), "%s", why);
				td_buffer_release_head_locked(run, false);
				backoff = 0;
				pthread_cond_broadcast(&run->drained);
				break;
			case RETRY:
				snprintf(run->transport_error, sizeof(run->transport_error), "%s",
				         why);
				backoff = backoff ? backoff * 2 : TD_BACKOFF_MIN_MS;
				if (backoff > TD_BACKOFF_MAX_MS)
					backoff = TD_BACKOFF_MAX_MS;
				retry_at = td_mono_ms() + backoff;
				break;
			}
			continue;
		}
		int64_t deadline = next_flush;
		if (run->head != NULL && retry_at < deadline)
			deadline = retry_at;
		wait_until(&run->wake, &run->mu, deadline);
	}
	pthread_mutex_unlock(&run->mu);
	return NULL;
}

int td_sender_start(struct td_run *run)
{
	nng_dialer dialer;
	sigset_t all, old;
	int rv;

	if ((rv = nng_req0_open(&run->sock)) != 0)
		return td_fail(TD_ERR_TRANSPORT, "td_init: cannot open a socket: %s",
		               nng_strerror(rv));
	run->sock_open = true;

	/* Socket-level values are the defaults for the dialer created below;
	 * the send timeout bounds how long one attempt waits for a connection. */
	if ((rv = nng_socket_set_ms(run->sock, NNG_OPT_SENDTIMEO, TD_REPLY_TIMEOUT_MS)) != 0 ||
	    (rv = nng_socket_set_ms(run->sock, NNG_OPT_RECVTIMEO, TD_REPLY_TIMEOUT_MS)) != 0 ||
	    (rv = nng_socket_set_size(run->sock, NNG_OPT_RECVMAXSZ, TD_MAX_REPLY_BYTES)) != 0 ||
	    (rv = nng_socket_set_ms(run->sock, NNG_OPT_RECONNMINT, TD_RECONNECT_MIN_MS)) != 0 ||
	    (rv = nng_socket_set_ms(run->sock, NNG_OPT_RECONNMAXT, TD_RECONNECT_MAX_MS)) != 0)
		return td_fail(TD_ERR_TRANSPORT, "td_init: socket options: %s", nng_strerror(rv));
	if ((rv = nng_dialer_create(&dialer, run->sock, run->url)) != 0) {
		return td_fail(TD_ERR_TRANSPORT, "td_init: agent address %s: %s", run->url,
		               nng_strerror(rv));
	}
	if ((rv = nng_dialer_set_size(dialer, NNG_OPT_RECVMAXSZ, TD_MAX_REPLY_BYTES)) != 0 ||
	    (rv = nng_dialer_set_ms(dialer, NNG_OPT_RECONNMINT, TD_RECONNECT_MIN_MS)) != 0 ||
	    (rv = nng_dialer_set_ms(dialer, NNG_OPT_RECONNMAXT, TD_RECONNECT_MAX_MS)) != 0)
		return td_fail(TD_ERR_TRANSPORT, "td_init: dialer options: %s", nng_strerror(rv));
	/* Non-blocking: if the agent is not up yet, NNG keeps redialling in the
	 * background and the buffered records go out once it is. */
	if ((rv = nng_dialer_start(dialer, NNG_FLAG_NONBLOCK)) != 0) {
		return td_fail(TD_ERR_TRANSPORT, "td_init: dial %s: %s", run->url,
		               nng_strerror(rv));
	}

	/* The application's signal handlers must not run on our thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rv = pthread_create(&run->sender, NULL, sender_main, run);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0)
		return td_fail(TD_ERR_TRANSPORT, "td_init: cannot start the sender thread: %s",
		               strerror(rv));
	run->sender_started = true;
	pthread_setname_np(run->sender, "trackd-sender"); /* for top -H and gdb */
	return TD_OK;
}

void td_sender_stop(struct td_run *run)
{
	pthread_mutex_lock(&run->mu);
	run->stopping = true;
	pthread_cond_signal(&run->wake);
	pthread_mutex_unlock(&run->mu);
	/* Closing the socket makes a send or receive in progress return
	 * NNG_ECLOSED at once instead of after its timeout. */
	if (run->sock_open) {
		nng_close(run->sock);
		run->sock_open = false;
	}
	if (run->sender_started) {
		pthread_join(run->sender, NULL);
		run->sender_started = false;
	}
}
