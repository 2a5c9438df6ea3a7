/*
 * transport.h — the bottom layer: NNG REQ connections to the agent and one
 * request/reply on them. Everything that talks to the agent goes through here:
 * the sender (sender.h) and the spool replay (replay.h) send batches with
 * tdi_exchange on a socket whose dialer tdi_dialer_start made; the cold paths
 * (query.h) make one synchronous call each with tdi_agent_call.
 *
 * Nothing here knows a run: no lock is taken, no batch is touched, and the
 * limits an ack carries are handed to the caller's hook. Thread-safety is
 * NNG's: a socket carries one request at a time, so each caller has its own
 * (the sender's, the replay's, one per tdi_agent_call). Closing a socket from
 * another thread (nng_close_bounded) cuts a send or receive short.
 *
 * Errors: tdi_exchange never fails as a call; its outcome says what to do with
 * the batch and `why` says what happened, for people. tdi_dialer_start returns
 * an NNG error; tdi_agent_call a TD_ERR_* with the detail set (tdi_fail).
 */
#ifndef TRACKD_CLIENT_TRANSPORT_H
#define TRACKD_CLIENT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "nng_close.h" /* nng_close_bounded (common/nng) */
#include "trackd/v1/trackd.pb-c.h"

/* How long the sender waits for a reply (and for a connection to send on)
 * before it sends the same batch again. */
#define TDI_REPLY_TIMEOUT_MS 2000
/* Capped exponential backoff between failed attempts. */
#define TDI_BACKOFF_MIN_MS 10u
#define TDI_BACKOFF_MAX_MS 1000u
/* Redial interval while the agent is not listening. */
#define TDI_RECONNECT_MIN_MS 10
#define TDI_RECONNECT_MAX_MS 500
/* Attempts finding no connection (TDI_REPLY_TIMEOUT_MS each) before the sender
 * (or a spool replay) replaces its dialer: NNG 1.5's dialer stops redialling for good when a
 * connection is closed during the SP handshake (an agent killed right after
 * accepting), so waiting for it would wait forever. */
#define TDI_REDIAL_AFTER 3u
/* How long closing a socket may take: NNG 1.5.2's nng_close can hang
 * (nng_close.h); a training process must not hang in td_finish because of it. */
#define TDI_CLOSE_TIMEOUT_MS 2000
/* Replies are an Ack or an Error with a short message. */
#define TDI_MAX_REPLY_BYTES ((size_t)64 << 10)
/* Query replies (history pages) are bounded, but generously. */
#define TDI_MAX_QUERY_REPLY_BYTES ((size_t)256 << 20)

/* The outcome of one request carrying a batch. */
enum tdi_outcome {
	TDI_ACKED,    /* agent stored the batch (or had already) */
	TDI_REJECTED, /* agent refused it for good: drop and count */
	TDI_RETRY,    /* no answer, connection trouble or a retryable error */
};

/* How far an attempt got: no connection to send on, sent but no reply within
 * the receive timeout, or an answer (a retryable error is an answer). */
enum tdi_reach { TDI_NO_CONNECTION, TDI_NO_REPLY, TDI_ANSWERED };

/* Gets the limits an ack carries, while the reply is alive (see
 * tdi_limits_learn_hook, validate.h). */
typedef void tdi_limits_fn(void *arg, const Trackd__V1__Limits *limits);

/* Creates and starts a non-blocking dialer for url on sock with the reconnect
 * and reply-size settings every libtrackd connection uses. Returns an NNG error
 * (0 on success). A caller that finds no connection TDI_REDIAL_AFTER times in a
 * row closes the dialer and starts a new one (NNG 1.5's may have given up). */
int tdi_dialer_start(nng_socket sock, const char *url, nng_dialer *out);

/* Sends req (consumed in every case) on sock and waits for the ack of seq;
 * `why` explains any outcome but TDI_ACKED; *reach tells how far it got. The
 * limits an ack carries go to learn(learn_arg, …) (learn may be NULL). */
enum tdi_outcome tdi_exchange(nng_socket sock, const char *url, nng_msg *req, uint64_t seq,
                              tdi_limits_fn *learn, void *learn_arg, enum tdi_reach *reach,
                              char *why, size_t why_len);

/* Sends req (consumed) on sock and returns the decoded reply in *out (free
 * with trackd__v1__reply__free_unpacked; NULL when none came: `why` says
 * why). For requests other than batches (blob_queue.h). */
void tdi_request(nng_socket sock, const char *url, nng_msg *req, Trackd__V1__Reply **out,
                 enum tdi_reach *reach, char *why, size_t why_len);

/* One request/reply on a fresh connection: opens its own REQ socket, dials
 * synchronously (an ipc:// dial to a socket nobody listens on fails at once),
 * sends req and waits for one reply, within timeout_ms each. *out is freed
 * with trackd__v1__reply__free_unpacked. TD_ERR_TRANSPORT if no agent answers. */
int tdi_agent_call(const char *url, const Trackd__V1__Request *req, int timeout_ms,
                   Trackd__V1__Reply **out);

#endif
