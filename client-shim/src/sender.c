/*
 * sender.c — the thread that ships sealed batches to the agent (sender.h).
 *
 * One request is in flight at a time, always the oldest unacknowledged batch
 * (spooled batches first: they are the oldest), so the agent sees seqs in
 * order. A timeout or connection error resends the
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

#include "sender.h"
#include "autostart.h"
#include "error.h"
#include "run.h"
#include "timing.h"
#include "transport.h"

/* Builds the request for memory batch b: the hand-built envelope, then the
 * records, copied while b is pinned (a spill waits for the copy). */
static int memory_request(struct td_run *run, struct tdi_batch *b, nng_msg **req)
{
	uint8_t envelope[TDI_ENVELOPE_MAX];
	uint64_t seq = b->seq;
	size_t len = b->len;
	int rv;

	run->pinned = b;
	pthread_mutex_unlock(&run->mu);
	size_t env_len = tdi_envelope_put(envelope, run->session_id, seq, len);
	if ((rv = nng_msg_alloc(req, env_len + len)) == 0) {
		uint8_t *body = nng_msg_body(*req);
		memcpy(body, envelope, env_len);
		memcpy(body + env_len, b->data, len);
	}
	pthread_mutex_lock(&run->mu);
	run->pinned = NULL;
	pthread_cond_broadcast(&run->unpinned);
	if (rv != 0) {
		snprintf(run->transport_error, sizeof(run->transport_error),
		         "cannot allocate a %zu-byte request: %s", env_len + len, nng_strerror(rv));
		return TD_ERR_NOMEM;
	}
	return TD_OK;
}

/* What is being sent: the oldest unacknowledged batch, from the spool or from
 * memory. */
struct attempt {
	uint64_t seq;
	bool spooled;
	uint32_t n_records; /* spooled */
	uint64_t frame_len; /* spooled */
};

/* With the lock: prepares a request for the oldest unacknowledged batch. */
static int next_request(struct td_run *run, nng_msg **req, struct attempt *a)
{
	if (run->spool.pending_batches > 0) {
		uint64_t off = run->spool.read_off;
		int rc;

		/* Frames before write_off never change and only this thread
		 * moves read_off or empties the file: read without the lock. */
		pthread_mutex_unlock(&run->mu);
		rc = tdi_spool_read_head(run, off, req, &a->seq, &a->n_records, &a->frame_len);
		pthread_mutex_lock(&run->mu);
		if (rc != TD_OK)
			return rc;
		a->spooled = true;
		return TD_OK;
	}
	a->spooled = false;
	a->seq = run->head->seq;
	return memory_request(run, run->head, req);
}

/* With the lock: the agent answered `out` for attempt a. The batch may have
 * moved to the spool while its request was in flight; it is still the oldest
 * unacknowledged one, so it is wherever the oldest is now. */
static void settle(struct td_run *run, const struct attempt *a, enum tdi_outcome out)
{
	bool acked = out == TDI_ACKED;

	if (a->seq != run->acked_through + 1)
		return; /* cannot happen: one request at a time, in seq order */
	run->acked_through = a->seq;
	if (run->spool.pending_batches > 0) {
		if (a->spooled) {
			tdi_spool_pop_locked(run, a->frame_len, a->n_records, acked);
		} else {
			/* Spilled during the exchange: it was the oldest batch, so
			 * its frame went first into an empty spool, which noted it. */
			tdi_spool_pop_locked(run, run->spool.first_frame_len,
			                     run->spool.first_frame_records, acked);
		}
	} else {
		tdi_buffer_release_head_locked(run, acked);
	}
	pthread_cond_broadcast(&run->drained);
}

/* Creates and starts run->dialer. Non-blocking: if the agent is not up yet,
 * NNG keeps redialling in the background and the buffered records go out once
 * it is. */
static int dial(struct td_run *run)
{
	int rv = tdi_dialer_start(run->sock, run->url, &run->dialer);

	if (rv != 0)
		return tdi_fail(TD_ERR_TRANSPORT, "td_init: dial %s: %s", run->url,
		                nng_strerror(rv));
	return TD_OK;
}

/* Replaces a dialer that may have given up (see TDI_REDIAL_AFTER). mu held; the
 * socket stays open, so td_finish can still cut a wait short. */
static void redial(struct td_run *run)
{
	nng_dialer_close(run->dialer);
	if (dial(run) != TD_OK)
		snprintf(run->transport_error, sizeof(run->transport_error),
		         "cannot dial the agent again: %s", td_last_error());
}

/* An attempt (a batch's or a file's) that the agent did not answer, not cut
 * short by td_finish. mu held (let go while a private agent is started). */
static void unanswered(struct td_run *run)
{
	if (++run->unreachable >= TDI_REDIAL_AFTER) {
		run->unreachable = 0;
		redial(run);
	}
	/* The private agent went away (idle exit racing our connect, a kill):
	 * start it again, throttled, without waiting; the dialer reconnects once
	 * it listens. */
	if (run->private_agent) {
		pthread_mutex_unlock(&run->mu);
		(void)tdi_agent_ensure(run->url, 0, NULL, 0);
		pthread_mutex_lock(&run->mu);
	}
}

static void *sender_main(void *arg)
{
	struct td_run *run = arg;
	int64_t next_flush = tdi_mono_ms() + run->flush_interval_ms;
	int64_t retry_at = 0;
	uint32_t backoff = 0;
	char why[256];

	pthread_mutex_lock(&run->mu);
	while (!run->stopping) {
		int64_t now = tdi_mono_ms();
		bool have = run->spool.pending_batches > 0 || run->head != NULL;

		if (now >= next_flush || run->seal_requested || run->finishing) {
			/* On ENOMEM the batch stays open and is sealed next time. */
			(void)tdi_buffer_seal_locked(run);
			have = run->spool.pending_batches > 0 || run->head != NULL;
			if (now >= next_flush)
				next_flush = now + run->flush_interval_ms;
		}
		/* Files first: a batch may hold rows that name them (blob_queue.h). */
		if (run->blobs.head && now >= retry_at) {
			if (tdi_blob_step_locked(run) != 0 && !run->stopping) {
				/* As a batch's attempt: a dialer that gave up is replaced
				 * (a file at the head must not keep the run from a
				 * restarted agent), a private agent started again. */
				if (run->agent_ok)
					run->unreachable = 0;
				else
					unanswered(run);
				backoff = backoff ? backoff * 2 : TDI_BACKOFF_MIN_MS;
				if (backoff > TDI_BACKOFF_MAX_MS)
					backoff = TDI_BACKOFF_MAX_MS;
				retry_at = tdi_mono_ms() + backoff;
			} else {
				if (run->agent_ok)
					run->unreachable = 0;
				backoff = 0;
			}
			continue;
		}
		if (have && now >= retry_at) {
			struct attempt a = {0};
			nng_msg *req;
			enum tdi_outcome out;
			enum tdi_reach reach = TDI_NO_CONNECTION;
			bool sent = false;

			int rc = next_request(run, &req, &a);
			if (rc == TD_ERR_INVALID) {
				tdi_spool_discard_locked(run, "a frame fails its check");
				continue;
			}
			if (rc != TD_OK) {
				out = TDI_RETRY;
			} else {
				int32_t wait_ms = run->reply_timeout_ms;
				pthread_mutex_unlock(&run->mu);
				(void)nng_socket_set_ms(run->sock, NNG_OPT_RECVTIMEO, wait_ms);
				out = tdi_exchange(run->sock, run->url, req, a.seq,
				                   tdi_limits_learn_hook, run, &reach, why,
				                   sizeof(why));
				pthread_mutex_lock(&run->mu);
				sent = true;
				if (reach == TDI_ANSWERED)
					run->reply_timeout_ms = TDI_REPLY_TIMEOUT_MS;
				else if (reach == TDI_NO_REPLY && !run->stopping)
					run->reply_timeout_ms =
					    wait_ms * 2 < TDI_REPLY_TIMEOUT_MAX_MS
					        ? wait_ms * 2
					        : TDI_REPLY_TIMEOUT_MAX_MS;
			}
			bool answered = reach == TDI_ANSWERED;
			if (sent) {
				run->agent_ok = answered;
				run->no_connection = reach == TDI_NO_CONNECTION;
			}
			if (answered)
				run->unreachable = 0;
			switch (out) {
			case TDI_ACKED:
				settle(run, &a, out);
				backoff = 0;
				break;
			case TDI_REJECTED:
				snprintf(run->agent_error, sizeof(run->agent_error), "%s", why);
				settle(run, &a, out);
				backoff = 0;
				break;
			case TDI_RETRY:
				/* An attempt cut short by td_finish closing the socket
				 * says nothing about the agent: keep the last real reason. */
				if (sent && !run->stopping)
					snprintf(run->transport_error, sizeof(run->transport_error),
					         "%s", why);
				if (sent && !answered && !run->stopping)
					unanswered(run);
				backoff = backoff ? backoff * 2 : TDI_BACKOFF_MIN_MS;
				if (backoff > TDI_BACKOFF_MAX_MS)
					backoff = TDI_BACKOFF_MAX_MS;
				retry_at = tdi_mono_ms() + backoff;
				break;
			}
			continue;
		}
		int64_t deadline = next_flush;
		if ((have || run->blobs.head) && retry_at < deadline)
			deadline = retry_at;
		tdi_wait_until(&run->wake, &run->mu, deadline);
	}
	pthread_mutex_unlock(&run->mu);
	return NULL;
}

int tdi_sender_start(struct td_run *run)
{
	sigset_t all, old;
	int rv;

	if ((rv = nng_req0_open(&run->sock)) != 0)
		return tdi_fail(TD_ERR_TRANSPORT, "td_init: cannot open a socket: %s",
		                nng_strerror(rv));
	run->sock_open = true;
	run->reply_timeout_ms = TDI_REPLY_TIMEOUT_MS;

	/* Socket-level values are the defaults for the dialer created below;
	 * the send timeout bounds how long one attempt waits for a connection. */
	if ((rv = nng_socket_set_ms(run->sock, NNG_OPT_SENDTIMEO, TDI_REPLY_TIMEOUT_MS)) != 0 ||
	    (rv = nng_socket_set_ms(run->sock, NNG_OPT_RECVTIMEO, TDI_REPLY_TIMEOUT_MS)) != 0 ||
	    (rv = nng_socket_set_size(run->sock, NNG_OPT_RECVMAXSZ, TDI_MAX_REPLY_BYTES)) != 0 ||
	    (rv = nng_socket_set_ms(run->sock, NNG_OPT_RECONNMINT, TDI_RECONNECT_MIN_MS)) != 0 ||
	    (rv = nng_socket_set_ms(run->sock, NNG_OPT_RECONNMAXT, TDI_RECONNECT_MAX_MS)) != 0)
		return tdi_fail(TD_ERR_TRANSPORT, "td_init: socket options: %s", nng_strerror(rv));
	if ((rv = dial(run)) != TD_OK)
		return rv;

	/* The application's signal handlers must not run on our thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rv = pthread_create(&run->sender, NULL, sender_main, run);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0)
		return tdi_fail(TD_ERR_TRANSPORT, "td_init: cannot start the sender thread: %s",
		                strerror(rv));
	run->sender_started = true;
	pthread_setname_np(run->sender, "trackd-sender"); /* for top -H and gdb */
	return TD_OK;
}

void tdi_sender_stop(struct td_run *run)
{
	pthread_mutex_lock(&run->mu);
	run->stopping = true;
	pthread_cond_signal(&run->wake);
	pthread_mutex_unlock(&run->mu);
	/* Closing the socket makes a send or receive in progress return
	 * NNG_ECLOSED at once instead of after its timeout. */
	if (run->sock_open) {
		(void)nng_close_bounded(run->sock, TDI_CLOSE_TIMEOUT_MS);
		run->sock_open = false;
	}
	if (run->sender_started) {
		pthread_join(run->sender, NULL);
		run->sender_started = false;
	}
}
