/*
 * transport.c — NNG REQ connections to the agent and one request/reply on
 * them (transport.h).
 */
#include <stdarg.h>
#include <stdio.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "error.h"
#include "trackd/trackd.h"
#include "transport.h"

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

int tdi_dialer_start(nng_socket sock, const char *url, nng_dialer *out)
{
	nng_dialer dialer;
	int rv;

	if ((rv = nng_dialer_create(&dialer, sock, url)) != 0)
		return rv;
	if ((rv = nng_dialer_set_size(dialer, NNG_OPT_RECVMAXSZ, TDI_MAX_REPLY_BYTES)) != 0 ||
	    (rv = nng_dialer_set_ms(dialer, NNG_OPT_RECONNMINT, TDI_RECONNECT_MIN_MS)) != 0 ||
	    (rv = nng_dialer_set_ms(dialer, NNG_OPT_RECONNMAXT, TDI_RECONNECT_MAX_MS)) != 0 ||
	    (rv = nng_dialer_start(dialer, NNG_FLAG_NONBLOCK)) != 0) {
		nng_dialer_close(dialer);
		return rv;
	}
	*out = dialer;
	return 0;
}

enum tdi_outcome tdi_exchange(nng_socket sock, const char *url, nng_msg *req, uint64_t seq,
                              tdi_limits_fn *learn, void *learn_arg, enum tdi_reach *reach,
                              char *why, size_t why_len)
{
	nng_msg *rep;
	int rv;

	*reach = TDI_NO_CONNECTION;
	if ((rv = nng_sendmsg(sock, req, 0)) != 0) {
		nng_msg_free(req); /* still ours when sending failed */
		explain(why, why_len, "agent at %s not reachable: %s", url,
		        rv == NNG_ETIMEDOUT ? "no connection" : nng_strerror(rv));
		return TDI_RETRY;
	}
	*reach = TDI_NO_REPLY;
	if ((rv = nng_recvmsg(sock, &rep, 0)) != 0) {
		explain(why, why_len, "no reply from the agent at %s: %s", url, nng_strerror(rv));
		return TDI_RETRY;
	}

	Trackd__V1__Reply *reply =
	    trackd__v1__reply__unpack(NULL, nng_msg_len(rep), (const uint8_t *)nng_msg_body(rep));
	nng_msg_free(rep);
	if (reply == NULL) {
		explain(why, why_len, "undecodable reply from the agent at %s", url);
		return TDI_RETRY;
	}
	*reach = TDI_ANSWERED;

	enum tdi_outcome out = TDI_RETRY;
	switch (reply->body_case) {
	case TRACKD__V1__REPLY__BODY_ACK:
		if (reply->ack->has_seq && reply->ack->seq == seq) {
			out = TDI_ACKED;
			if (learn != NULL && reply->ack->limits != NULL)
				learn(learn_arg, reply->ack->limits);
		} else {
			explain(why, why_len, "agent acknowledged seq %llu, expected %llu",
			        (unsigned long long)reply->ack->seq, (unsigned long long)seq);
		}
		break;
	case TRACKD__V1__REPLY__BODY_ERROR: {
		const Trackd__V1__Error *e = reply->error;
		explain(why, why_len, "%s: %s", error_code_name(e->code),
		        e->message ? e->message : "(no message)");
		out = e->retryable ? TDI_RETRY : TDI_REJECTED;
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

void tdi_request(nng_socket sock, const char *url, nng_msg *req, Trackd__V1__Reply **out,
                 enum tdi_reach *reach, char *why, size_t why_len)
{
	nng_msg *rep;
	int rv;

	*out = NULL;
	*reach = TDI_NO_CONNECTION;
	if ((rv = nng_sendmsg(sock, req, 0)) != 0) {
		nng_msg_free(req);
		explain(why, why_len, "agent at %s not reachable: %s", url,
		        rv == NNG_ETIMEDOUT ? "no connection" : nng_strerror(rv));
		return;
	}
	*reach = TDI_NO_REPLY;
	if ((rv = nng_recvmsg(sock, &rep, 0)) != 0) {
		explain(why, why_len, "no reply from the agent at %s: %s", url, nng_strerror(rv));
		return;
	}
	*out =
	    trackd__v1__reply__unpack(NULL, nng_msg_len(rep), (const uint8_t *)nng_msg_body(rep));
	nng_msg_free(rep);
	if (!*out) {
		explain(why, why_len, "undecodable reply from the agent at %s", url);
		return;
	}
	*reach = TDI_ANSWERED;
}

int tdi_agent_call(const char *url, const Trackd__V1__Request *req, int timeout_ms,
                   Trackd__V1__Reply **out)
{
	nng_socket sock;
	nng_msg *msg = NULL;
	int rv;

	*out = NULL;
	if ((rv = nng_req0_open(&sock)) != 0)
		return tdi_fail(TD_ERR_TRANSPORT, "cannot open a socket: %s", nng_strerror(rv));
	if ((rv = nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, timeout_ms)) != 0 ||
	    (rv = nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, timeout_ms)) != 0 ||
	    (rv = nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, TDI_MAX_QUERY_REPLY_BYTES)) != 0) {
		(void)nng_close_bounded(sock, TDI_CLOSE_TIMEOUT_MS);
		return tdi_fail(TD_ERR_TRANSPORT, "socket options: %s", nng_strerror(rv));
	}
	if ((rv = nng_dial(sock, url, NULL, 0)) != 0) {
		(void)nng_close_bounded(sock, TDI_CLOSE_TIMEOUT_MS);
		return tdi_fail(TD_ERR_TRANSPORT, "no agent answers at %s: %s", url,
		                nng_strerror(rv));
	}
	size_t len = trackd__v1__request__get_packed_size(req);
	if ((rv = nng_msg_alloc(&msg, len)) != 0) {
		(void)nng_close_bounded(sock, TDI_CLOSE_TIMEOUT_MS);
		return tdi_fail(TD_ERR_NOMEM, "cannot allocate a %zu-byte request", len);
	}
	trackd__v1__request__pack(req, nng_msg_body(msg));
	if ((rv = nng_sendmsg(sock, msg, 0)) != 0) {
		nng_msg_free(msg);
		(void)nng_close_bounded(sock, TDI_CLOSE_TIMEOUT_MS);
		return tdi_fail(TD_ERR_TRANSPORT, "cannot send to the agent at %s: %s", url,
		                nng_strerror(rv));
	}
	if ((rv = nng_recvmsg(sock, &msg, 0)) != 0) {
		(void)nng_close_bounded(sock, TDI_CLOSE_TIMEOUT_MS);
		return tdi_fail(TD_ERR_TRANSPORT, "no answer from the agent at %s: %s", url,
		                nng_strerror(rv));
	}
	*out = trackd__v1__reply__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	(void)nng_close_bounded(sock, TDI_CLOSE_TIMEOUT_MS);
	if (*out == NULL)
		return tdi_fail(TD_ERR_TRANSPORT, "undecodable answer from the agent at %s", url);
	return TD_OK;
}
