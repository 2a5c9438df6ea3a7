/*
 * agent_client.h — trackctl's side of the agent socket: one NNG REQ socket, one
 * protobuf Request out, one Reply back, at a time.
 *
 * The agent is found at TRACKD_SOCKET (an NNG URL), else the default path of the
 * running user (agent_default_url). Replies are capped at AGENT_MAX_REPLY_BYTES
 * (NNG_OPT_RECVMAXSZ): trackctl asks for history in pages so a reply stays small.
 *
 * Errors: functions return 0 or a negative trackd_err and fill `struct
 * agent_error` (never NULL) with what to tell the user:
 *   TRACKD_ECLOSED     no agent answers at the URL (not running, wrong socket)
 *   TRACKD_ETIMEDOUT   the agent did not answer in time
 *   TRACKD_EIO         sending or receiving failed
 *   TRACKD_ECORRUPT    the reply does not decode, or is not the expected kind
 *   TRACKD_ENOENT      the agent answered ERROR_NOT_FOUND (no such run)
 *   TRACKD_EPERM       the agent answered ERROR_PERMISSION_DENIED
 *   TRACKD_EINVAL      any other error reply (message: the agent's)
 *   TRACKD_ENOMEM
 * agent_print_error() prints the one message per case, in the house wording.
 *
 * Ownership: query strings are borrowed; returned replies are owned by the
 * caller. Not thread-safe: one client per thread.
 */
#ifndef TRACKD_CLI_AGENT_CLIENT_H
#define TRACKD_CLI_AGENT_CLIENT_H

#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_MAX_REPLY_BYTES   (64u << 20)
#define AGENT_STATUS_TIMEOUT_MS 2000
#define AGENT_QUERY_TIMEOUT_MS  15000

struct agent_error {
	int remote_code; /* Trackd__V1__ErrorCode of an error reply, else 0 */
	char message[512];
};

typedef struct agent_client agent_client;

/* Writes the socket URL trackctl uses: the lookup of client-shim/src/autostart.h
 * (TRACKD_SOCKET; the machine's agent if it answers; the user's private agent,
 * started if none answers). -1 (printed) if there is no usable address. */
int agent_default_url(char *buf, size_t len);

/* Connects (synchronously: fails at once when nothing listens). `url` is copied. */
int agent_open(const char *url, agent_client **out, struct agent_error *err);
void agent_close(agent_client *c); /* NULL is a no-op */
const char *agent_url(const agent_client *c);

/* Status. On success *out is the decoded StatusReply inside its Reply; free the
 * whole Reply with trackd__v1__reply__free_unpacked(*reply_out, NULL). */
int agent_status(agent_client *c, Trackd__V1__Reply **reply_out,
                 const Trackd__V1__StatusReply **out, struct agent_error *err);

/* A Query. On success *out is the decoded, typed QueryReply inside its Reply:
 * its reply_case is the one asked for (the agent answers request N with reply
 * N: q->request_case) and that member is set, so a caller reads it without
 * checking; any other answer is TRACKD_ECORRUPT ("the agent answered something
 * else"). Free the whole Reply with trackd__v1__reply__free_unpacked(*reply_out,
 * NULL). Nothing is rendered here: --json output renders *out with
 * pb_json_query_reply(). */
int agent_query(agent_client *c, const Trackd__V1__Query *q, Trackd__V1__Reply **reply_out,
                const Trackd__V1__QueryReply **out, struct agent_error *err);

/* A query sent ahead: agent_query_start() sends it and returns at once, the
 * agent answering while the caller works (trackctl asks for the next page of
 * history while it reads the last one); agent_query_finish() waits for the
 * answer and is then agent_query()'s result (the same errors and ownership);
 * agent_query_abandon() drops it unanswered (NULL is a no-op). Finish or
 * abandon each one, once (that frees it), before agent_close. The answer is
 * received when it comes, whether the caller waits yet or not (at most
 * AGENT_QUERY_TIMEOUT_MS after the start: then TRACKD_ETIMEDOUT). Synchronous
 * calls may be made while one is in flight. */
typedef struct agent_pending agent_pending;
int agent_query_start(agent_client *c, const Trackd__V1__Query *q, agent_pending **out,
                      struct agent_error *err);
int agent_query_finish(agent_pending *p, Trackd__V1__Reply **reply_out,
                       const Trackd__V1__QueryReply **out, struct agent_error *err);
void agent_query_abandon(agent_pending *p);

/* One Batch of records (trackctl import): `batch` is the packed Batch message
 * (session_id, seq, records — packed by the caller record by record, so a
 * large import never holds a tree of messages), sent as Request.batch. On an
 * Ack: 0, *duplicate as the agent says, and *limits (when not NULL) filled
 * with the agent's limits from the Ack (trackd__v1__limits__init'ed and left
 * so when it sent none). An error reply is the error (TRACKD_EINVAL with
 * err->remote_code: ERROR_INVALID, ERROR_TOO_LARGE, …). */
int agent_batch(agent_client *c, const uint8_t *batch, size_t len, bool *duplicate,
                Trackd__V1__Limits *limits, struct agent_error *err);

/* "trackctl: …" on stderr for a failed call; `what` names the request (e.g. "run
 * abc123") for not-found messages. */
void agent_print_error(const char *url, int rv, const struct agent_error *err, const char *what);

#endif
