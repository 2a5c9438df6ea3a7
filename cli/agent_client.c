/* agent_client.c — see agent_client.h. */
#include "agent_client.h"

#include "autostart.h"
#include "errors.h"
#include "nng_close.h"

#include "trackd/v1/limits.h"
#include "trackd/v1/wire.h"
#include "varint.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* nng_close.h: NNG 1.5.2's nng_close can hang; trackctl must not. */
#define AGENT_CLOSE_TIMEOUT_MS 2000

struct agent_client {
	nng_socket sock;
	char url[4096];
};

int agent_default_url(char *buf, size_t len)
{
	struct tdi_agent_where w;
	if (tdi_agent_locate(NULL, true, buf, len, &w) != 0) {
		fprintf(stderr, "trackctl: %s\n", w.why);
		return -1;
	}
	if (w.start_failed)
		fprintf(stderr, "trackctl: %s\n", w.why);
	return 0;
}

__attribute__((format(printf, 4, 5))) static int set_error(struct agent_error *err, int rv,
                                                           int remote, const char *fmt, ...)
{
	err->remote_code = remote;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	return rv;
}

int agent_open(const char *url, agent_client **out, struct agent_error *err)
{
	*out = NULL;
	err->remote_code = 0;
	err->message[0] = '\0';
	agent_client *c = calloc(1, sizeof *c);
	if (!c)
		return set_error(err, TRACKD_ENOMEM, 0, "out of memory");
	snprintf(c->url, sizeof c->url, "%s", url);
	int rv = nng_req0_open(&c->sock);
	if (rv != 0) {
		free(c);
		return set_error(err, TRACKD_ESYS, 0, "cannot open a socket: %s", nng_strerror(rv));
	}
	nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, AGENT_STATUS_TIMEOUT_MS);
	nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, AGENT_MAX_REPLY_BYTES);
	/* A synchronous dial fails at once when no agent listens, which is the
	 * message the user needs; an asynchronous one would only time out later. */
	if ((rv = nng_dial(c->sock, c->url, NULL, 0)) != 0) {
		set_error(err, TRACKD_ECLOSED, 0, "%s", nng_strerror(rv));
		(void)nng_close_bounded(c->sock, AGENT_CLOSE_TIMEOUT_MS);
		free(c);
		return TRACKD_ECLOSED;
	}
	*out = c;
	return 0;
}

void agent_close(agent_client *c)
{
	if (!c)
		return;
	(void)nng_close_bounded(c->sock, AGENT_CLOSE_TIMEOUT_MS);
	free(c);
}

const char *agent_url(const agent_client *c)
{
	return c->url;
}

/* The Request with the protocol version, packed into a message. */
static int encode(Trackd__V1__Request *req, nng_msg **out, struct agent_error *err)
{
	err->remote_code = 0;
	err->message[0] = '\0';
	req->has_protocol_version = true;
	req->protocol_version = TRACKD_PROTOCOL_VERSION;
	size_t len = trackd__v1__request__get_packed_size(req);
	if (nng_msg_alloc(out, len) != 0)
		return set_error(err, TRACKD_ENOMEM, 0, "out of memory");
	trackd__v1__request__pack(req, nng_msg_body(*out));
	return 0;
}

/* The Reply in `msg` (freed here). An Error reply is turned into the matching
 * trackd_err, so callers only see the body they asked for. */
static int decode(nng_msg *msg, Trackd__V1__Reply **out, struct agent_error *err)
{
	Trackd__V1__Reply *reply =
	    trackd__v1__reply__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	if (!reply)
		return set_error(err, TRACKD_ECORRUPT, 0, "the agent's reply does not decode");
	if (reply->body_case == TRACKD__V1__REPLY__BODY_ERROR) {
		const Trackd__V1__Error *e = reply->error;
		int code = e && e->has_code ? (int)e->code : 0;
		int rv = code == TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND           ? TRACKD_ENOENT
		         : code == TRACKD__V1__ERROR_CODE__ERROR_PERMISSION_DENIED ? TRACKD_EPERM
		                                                                   : TRACKD_EINVAL;
		set_error(err, rv, code, "%s", e && e->message ? e->message : "(no message)");
		trackd__v1__reply__free_unpacked(reply, NULL);
		return rv;
	}
	*out = reply;
	return 0;
}

static int transport_error(struct agent_error *err, int nng_rv)
{
	return set_error(err, nng_rv == NNG_ETIMEDOUT ? TRACKD_ETIMEDOUT : TRACKD_EIO, 0, "%s",
	                 nng_strerror(nng_rv));
}

/* Sends one Request and decodes the Reply. */
static int round_trip(agent_client *c, Trackd__V1__Request *req, int timeout_ms,
                      Trackd__V1__Reply **out, struct agent_error *err)
{
	*out = NULL;
	nng_msg *msg;
	int rv = encode(req, &msg, err);
	if (rv != 0)
		return rv;
	nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, timeout_ms);
	if ((rv = nng_sendmsg(c->sock, msg, 0)) != 0)
		nng_msg_free(msg); /* still ours when the send fails */
	if (rv == 0)
		rv = nng_recvmsg(c->sock, &msg, 0);
	if (rv != 0)
		return transport_error(err, rv);
	return decode(msg, out, err);
}

int agent_status(agent_client *c, Trackd__V1__Reply **reply_out,
                 const Trackd__V1__StatusReply **out, struct agent_error *err)
{
	Trackd__V1__StatusQuery q = TRACKD__V1__STATUS_QUERY__INIT;
	Trackd__V1__Request req = TRACKD__V1__REQUEST__INIT;
	req.body_case = TRACKD__V1__REQUEST__BODY_STATUS;
	req.status = &q;
	Trackd__V1__Reply *reply;
	int rv = round_trip(c, &req, AGENT_STATUS_TIMEOUT_MS, &reply, err);
	if (rv != 0)
		return rv;
	if (reply->body_case != TRACKD__V1__REPLY__BODY_STATUS || !reply->status) {
		trackd__v1__reply__free_unpacked(reply, NULL);
		return set_error(err, TRACKD_ECORRUPT, 0, "the agent answered something else");
	}
	*reply_out = reply;
	*out = reply->status;
	return 0;
}

/* The member of a QueryReply its reply_case names (NULL: none set). The
 * pointer is what the commands read, so it is checked here once. */
static const void *query_member(const Trackd__V1__QueryReply *r)
{
	/* By the descriptor: every member of the oneof is a message, so a reply
	 * added to trackd.proto later needs no case here (a switch here once
	 * missed the series and console replies). */
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
	    &trackd__v1__query_reply__descriptor, (unsigned)r->reply_case);
	if (!f || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || f->type != PROTOBUF_C_TYPE_MESSAGE)
		return NULL;
	return *(void *const *)((const char *)r + f->offset);
}

/* The QueryReply of `reply` if it answers `request_case` (then owned by the
 * caller through *reply_out), else TRACKD_ECORRUPT and the reply freed. */
static int check_query(Trackd__V1__Reply *reply, int request_case, Trackd__V1__Reply **reply_out,
                       const Trackd__V1__QueryReply **out, struct agent_error *err)
{
	/* The reply's number is the request's (trackd.proto, QueryReply). */
	const Trackd__V1__QueryReply *qr =
	    reply->body_case == TRACKD__V1__REPLY__BODY_QUERY ? reply->query : NULL;
	if (!qr || (int)qr->reply_case != request_case || !query_member(qr)) {
		trackd__v1__reply__free_unpacked(reply, NULL);
		return set_error(err, TRACKD_ECORRUPT, 0, "the agent answered something else");
	}
	*reply_out = reply;
	*out = qr;
	return 0;
}

int agent_query(agent_client *c, const Trackd__V1__Query *q, Trackd__V1__Reply **reply_out,
                const Trackd__V1__QueryReply **out, struct agent_error *err)
{
	*reply_out = NULL;
	*out = NULL;
	Trackd__V1__Request req = TRACKD__V1__REQUEST__INIT;
	req.body_case = TRACKD__V1__REQUEST__BODY_QUERY;
	req.query = (Trackd__V1__Query *)q; /* packing only reads it */
	Trackd__V1__Reply *reply;
	int rv = round_trip(c, &req, AGENT_QUERY_TIMEOUT_MS, &reply, err);
	if (rv != 0)
		return rv;
	return check_query(reply, (int)q->request_case, reply_out, out, err);
}

int agent_batch(agent_client *c, const uint8_t *batch, size_t len, bool *duplicate,
                Trackd__V1__Limits *limits, struct agent_error *err)
{
	err->remote_code = 0;
	err->message[0] = '\0';
	*duplicate = false;
	if (limits)
		trackd__v1__limits__init(limits);
	/* Request{protocol_version, batch}: the batch is an embedded message,
	 * wire-identical to its bytes, so it is framed here, not re-packed. */
	uint8_t head[2 + 1 + VARINT_MAX_BYTES];
	size_t n = 0;
	head[n++] = WIRE_KEY(REQUEST, PROTOCOL_VERSION);
	n += varint_put(head + n, TRACKD_PROTOCOL_VERSION);
	head[n++] = WIRE_KEY(REQUEST, BATCH);
	n += varint_put(head + n, len);
	nng_msg *msg;
	if (nng_msg_alloc(&msg, n + len) != 0)
		return set_error(err, TRACKD_ENOMEM, 0, "out of memory");
	memcpy(nng_msg_body(msg), head, n);
	memcpy((uint8_t *)nng_msg_body(msg) + n, batch, len);
	nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, AGENT_QUERY_TIMEOUT_MS);
	int rv = nng_sendmsg(c->sock, msg, 0);
	if (rv != 0)
		nng_msg_free(msg);
	if (rv == 0)
		rv = nng_recvmsg(c->sock, &msg, 0);
	if (rv != 0)
		return transport_error(err, rv);
	Trackd__V1__Reply *reply;
	if ((rv = decode(msg, &reply, err)) != 0)
		return rv;
	if (reply->body_case != TRACKD__V1__REPLY__BODY_ACK || !reply->ack) {
		trackd__v1__reply__free_unpacked(reply, NULL);
		return set_error(err, TRACKD_ECORRUPT, 0, "the agent answered something else");
	}
	*duplicate = reply->ack->has_duplicate && reply->ack->duplicate;
	if (limits && reply->ack->limits) {
		*limits = *reply->ack->limits;
		limits->base.n_unknown_fields = 0;
		limits->base.unknown_fields = NULL;
	}
	trackd__v1__reply__free_unpacked(reply, NULL);
	return 0;
}

/* A query in flight: its own REQ context (a REQ socket's context holds one
 * request at a time; the socket's own one serves the synchronous calls), and
 * the receive under way on it. */
struct agent_pending {
	nng_ctx ctx;
	nng_aio *aio;
	int request_case;
};

static void pending_free(agent_pending *p)
{
	nng_aio_stop(p->aio); /* a receive under way is cancelled */
	nng_msg *msg = nng_aio_get_msg(p->aio);
	if (msg && nng_aio_result(p->aio) == 0)
		nng_msg_free(msg);
	nng_ctx_close(p->ctx);
	nng_aio_free(p->aio);
	free(p);
}

int agent_query_start(agent_client *c, const Trackd__V1__Query *q, agent_pending **out,
                      struct agent_error *err)
{
	*out = NULL;
	Trackd__V1__Request req = TRACKD__V1__REQUEST__INIT;
	req.body_case = TRACKD__V1__REQUEST__BODY_QUERY;
	req.query = (Trackd__V1__Query *)q; /* packing only reads it */
	nng_msg *msg;
	int rv = encode(&req, &msg, err);
	if (rv != 0)
		return rv;
	agent_pending *p = calloc(1, sizeof *p);
	if (!p || nng_aio_alloc(&p->aio, NULL, NULL) != 0) {
		free(p);
		nng_msg_free(msg);
		return set_error(err, TRACKD_ENOMEM, 0, "out of memory");
	}
	p->request_case = (int)q->request_case;
	if ((rv = nng_ctx_open(&p->ctx, c->sock)) != 0) {
		nng_aio_free(p->aio);
		free(p);
		nng_msg_free(msg);
		return set_error(err, TRACKD_ESYS, 0, "cannot open a context: %s",
		                 nng_strerror(rv));
	}
	nng_aio_set_msg(p->aio, msg);
	nng_aio_set_timeout(p->aio, AGENT_STATUS_TIMEOUT_MS);
	nng_ctx_send(p->ctx, p->aio);
	nng_aio_wait(p->aio);
	if ((rv = nng_aio_result(p->aio)) != 0) {
		nng_msg_free(msg); /* still ours when the send fails */
		nng_aio_set_msg(p->aio, NULL);
		pending_free(p);
		return transport_error(err, rv);
	}
	nng_aio_set_msg(p->aio, NULL);
	nng_aio_set_timeout(p->aio, AGENT_QUERY_TIMEOUT_MS);
	nng_ctx_recv(p->ctx, p->aio);
	*out = p;
	return 0;
}

int agent_query_finish(agent_pending *p, Trackd__V1__Reply **reply_out,
                       const Trackd__V1__QueryReply **out, struct agent_error *err)
{
	*reply_out = NULL;
	*out = NULL;
	err->remote_code = 0;
	err->message[0] = '\0';
	nng_aio_wait(p->aio);
	int rv = nng_aio_result(p->aio);
	nng_msg *msg = rv == 0 ? nng_aio_get_msg(p->aio) : NULL;
	nng_aio_set_msg(p->aio, NULL);
	int request_case = p->request_case;
	pending_free(p);
	if (rv != 0)
		return transport_error(err, rv);
	Trackd__V1__Reply *reply;
	if ((rv = decode(msg, &reply, err)) != 0)
		return rv;
	return check_query(reply, request_case, reply_out, out, err);
}

void agent_query_abandon(agent_pending *p)
{
	if (p)
		pending_free(p);
}

void agent_print_error(const char *url, int rv, const struct agent_error *err, const char *what)
{
	switch (rv) {
	case TRACKD_ECLOSED:
		fprintf(stderr,
		        "trackctl: no agent answers at %s (%s).\n"
		        "Start one with `trackd --user &` (or `systemctl start trackd`), or\n"
		        "point TRACKD_SOCKET at the agent's socket.\n",
		        url, err->message);
		break;
	case TRACKD_ETIMEDOUT:
	case TRACKD_EIO:
		fprintf(stderr, "trackctl: the agent at %s did not answer: %s\n", url,
		        err->message);
		break;
	case TRACKD_ENOENT:
		fprintf(stderr, "trackctl: %s not found (the agent says: %s)\n",
		        what ? what : "run", err->message);
		break;
	case TRACKD_EPERM: fprintf(stderr, "trackctl: not allowed: %s\n", err->message); break;
	case TRACKD_EINVAL:
		fprintf(stderr, "trackctl: the agent refused: %s\n", err->message);
		break;
	default: fprintf(stderr, "trackctl: %s\n", err->message); break;
	}
}
