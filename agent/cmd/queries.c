/*
 * The query table. To add a query:
 *   1. trackd.proto: a request message and a new field in Query's `request`
 *      oneof (a new number; the numbers are never reused);
 *   2. the handler in the stage that owns the answer (its header states the
 *      JSON shape and the access rule: a peer sees only its own runs unless
 *      admin), taking the typed request;
 *   3. one row below: the request case, the stages it needs, the handler.
 * Nothing else dispatches on a query: ingest hands every Query here.
 */
#include "queries.h"

#include "errors.h"
#include "json_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TRACKD_VERSION
#define TRACKD_VERSION "0.0.0"
#endif

/* How long a query of the run store waits for the local sink to apply what
 * was acknowledged before it (local_sink_catch_up): long enough for an idle
 * sink's next round (20 ms) and a checkpoint, short enough that a sink behind
 * a large backlog answers with what it has. */
#define QUERY_CATCH_UP_MS 1000

/* Which stages a request needs; the router answers ERROR_UNAVAILABLE, with
 * the row's own message, when one is missing. */
enum query_stage_need {
	NEEDS_LOCAL = 1,
	NEEDS_WANDB = 2,
};

struct query_call {
	const struct query_stages *st;
	const Trackd__V1__Query *q;
	uint32_t uid;
	bool admin;
	Trackd__V1__QueryReply **typed; /* see ingest_options.query */
};

typedef int (*query_handler)(const struct query_call *c, struct buf *json, char *err,
                             size_t errlen);

struct query_route {
	Trackd__V1__Query__RequestCase request;
	unsigned needs;       /* enum query_stage_need */
	const char *no_wandb; /* the answer when NEEDS_WANDB and the sink is off */
	query_handler handler;
};

/* ---- local run store ---- */

static int on_runs(const struct query_call *c, struct buf *json, char *err, size_t errlen)
{
	return local_sink_query_runs(c->st->local, c->q->runs, c->uid, c->admin, json, err, errlen);
}

/* UPLOAD as JSON: the members the typed UploadInfo has. */
static int upload_json(const Trackd__V1__UploadInfo *u, struct buf *out)
{
	const struct {
		const char *key, *value;
	} fields[] = {{"sink", u->sink},
	              {"state", u->state},
	              {"run_url", u->run_url},
	              {"project_url", u->project_url},
	              {"last_error", u->last_error}};
	int rv = buf_putc(out, '{');
	bool first = true;
	for (size_t i = 0; !rv && i < sizeof fields / sizeof fields[0]; i++) {
		if (!fields[i].value)
			continue;
		rv = buf_printf(out, "%s\"%s\":", first ? "" : ",", fields[i].key);
		if (!rv)
			rv = json_write_string(out, fields[i].value);
		first = false;
	}
	return rv ? rv : buf_putc(out, '}');
}

/* The run and its upload: the local store's RUN and the wandb sink's view
 * (its URLs once the backend answered), or sink "none" without one; typed in
 * *typed, and as {"run":RUN,"upload":UPLOAD}. The local sink has already
 * checked that the peer may see the run. */
static int on_run(const struct query_call *c, struct buf *json, char *err, size_t errlen)
{
	const char *ref = c->q->run->run;
	Trackd__V1__RunReply *rr = malloc(sizeof *rr);
	Trackd__V1__QueryReply *qr = malloc(sizeof *qr);
	if (!rr || !qr) {
		free(rr);
		free(qr);
		snprintf(err, errlen, "out of memory");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	trackd__v1__run_reply__init(rr);
	trackd__v1__query_reply__init(qr);
	qr->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_RUN;
	qr->run = rr;
	*c->typed = qr; /* freed by ingest, whatever happens next */

	int rv = buf_puts(json, "{\"run\":");
	if (rv)
		goto too_large;
	int code =
	    local_sink_query_run(c->st->local, ref, c->uid, c->admin, json, &rr->run, err, errlen);
	if (code)
		return code;
	const char *slash = strrchr(rr->run->path, '/');
	const char *id = slash ? slash + 1 : rr->run->path;
	if (c->st->wandb) {
		rv = wandb_sink_run_upload(c->st->wandb, id, &rr->upload);
	} else if ((rr->upload = malloc(sizeof *rr->upload))) {
		trackd__v1__upload_info__init(rr->upload);
		rr->upload->sink = strdup("none");
		rr->upload->state = strdup("disabled");
		rv = rr->upload->sink && rr->upload->state ? 0 : TRACKD_ENOMEM;
	} else {
		rv = TRACKD_ENOMEM;
	}
	if (!rv)
		rv = buf_puts(json, ",\"upload\":");
	if (!rv)
		rv = upload_json(rr->upload, json);
	if (!rv)
		rv = buf_putc(json, '}');
	if (!rv)
		return 0;
too_large:
	snprintf(err, errlen, "answer too large or out of memory: %s", trackd_strerror(rv));
	return TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE;
}

static int on_history(const struct query_call *c, struct buf *json, char *err, size_t errlen)
{
	return local_sink_query_history(c->st->local, c->q->history, c->uid, c->admin, json, err,
	                                errlen);
}

static int on_rename(const struct query_call *c, struct buf *json, char *err, size_t errlen)
{
	return local_sink_query_rename(c->st->local, c->q->rename, c->uid, c->admin, json, err,
	                               errlen);
}

/* ---- wandb sink ---- */

static int on_wandb(const struct query_call *c, struct buf *json, char *err, size_t errlen)
{
	return wandb_sink_query_status(c->st->wandb, c->uid, c->admin, json, err, errlen);
}

static int on_retry(const struct query_call *c, struct buf *json, char *err, size_t errlen)
{
	return wandb_sink_query_retry(c->st->wandb, c->q->retry->run, c->uid, c->admin, json, err,
	                              errlen);
}

/* trackctl sync: the local store finds the run (and checks who asks), the
 * wandb sink uploads it. */
static int sync_common(const struct query_call *c, bool start, bool force, const char *ref,
                       struct buf *json, char *err, size_t errlen)
{
	struct local_run_info info;
	int rv =
	    local_sink_locate(c->st->local, ref ? ref : "", c->uid, c->admin, &info, err, errlen);
	if (rv)
		return rv;
	struct wandb_sync_target t = {.dir = info.dir,
	                              .path = info.path,
	                              .offline = info.offline,
	                              .running = info.running,
	                              .owner = info.owner};
	return wandb_sink_sync(c->st->wandb, start, force, ref, &t, c->uid, c->admin, json, err,
	                       errlen);
}

static int on_sync(const struct query_call *c, struct buf *json, char *err, size_t errlen)
{
	const Trackd__V1__SyncRequest *r = c->q->sync;
	return sync_common(c, true, r->has_force && r->force, r->run, json, err, errlen);
}

static int on_sync_status(const struct query_call *c, struct buf *json, char *err, size_t errlen)
{
	return sync_common(c, false, false, c->q->sync_status->run, json, err, errlen);
}

#define WANDB_OFF "the wandb sink is not enabled (sinks.wandb.enabled)"
#define SYNC_OFF                                                                                   \
	"no wandb sink is configured in this agent: trackctl sync uploads through it (set "        \
	"sinks.wandb in the agent's configuration)"

static const struct query_route routes[] = {
    {TRACKD__V1__QUERY__REQUEST_RUNS, NEEDS_LOCAL, NULL, on_runs},
    {TRACKD__V1__QUERY__REQUEST_RUN, NEEDS_LOCAL, NULL, on_run},
    {TRACKD__V1__QUERY__REQUEST_HISTORY, NEEDS_LOCAL, NULL, on_history},
    {TRACKD__V1__QUERY__REQUEST_RENAME, NEEDS_LOCAL, NULL, on_rename},
    {TRACKD__V1__QUERY__REQUEST_WANDB, NEEDS_WANDB, WANDB_OFF, on_wandb},
    {TRACKD__V1__QUERY__REQUEST_RETRY, NEEDS_WANDB, WANDB_OFF, on_retry},
    {TRACKD__V1__QUERY__REQUEST_SYNC, NEEDS_LOCAL | NEEDS_WANDB, SYNC_OFF, on_sync},
    {TRACKD__V1__QUERY__REQUEST_SYNC_STATUS, NEEDS_LOCAL | NEEDS_WANDB, SYNC_OFF, on_sync_status},
};

int queries_answer(const struct query_stages *st, const uint8_t *query, size_t len, uint32_t uid,
                   bool admin, struct buf *json, Trackd__V1__QueryReply **typed, char *err,
                   size_t errlen)
{
	*typed = NULL;
	if (!st->local) {
		snprintf(err, errlen, "the agent is starting; try again");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	Trackd__V1__Query *q = trackd__v1__query__unpack(NULL, len, query);
	if (!q) {
		snprintf(err, errlen, "undecodable query");
		return TRACKD__V1__ERROR_CODE__ERROR_MALFORMED;
	}
	const struct query_route *route = NULL;
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
		if (routes[i].request == q->request_case)
			route = &routes[i];
	int rv;
	if (!route && q->kind) {
		snprintf(err, errlen,
		         "this client speaks string queries (kind '%.64s'); the agent "
		         "(trackd " TRACKD_VERSION ") speaks typed queries: upgrade the client",
		         q->kind);
		rv = TRACKD__V1__ERROR_CODE__ERROR_UNSUPPORTED_VERSION;
	} else if (!route) {
		/* Empty, or a request newer than this agent (an unknown oneof field). */
		snprintf(err, errlen,
		         "unknown or empty query: this agent does not know it "
		         "(a newer client?)");
		rv = TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	} else if ((route->needs & NEEDS_WANDB) && !st->wandb) {
		snprintf(err, errlen, "%s", route->no_wandb);
		rv = TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	} else {
		if (route->needs & NEEDS_LOCAL)
			local_sink_catch_up(st->local, QUERY_CATCH_UP_MS);
		const struct query_call c = {
		    .st = st, .q = q, .uid = uid, .admin = admin, .typed = typed};
		rv = route->handler(&c, json, err, errlen);
	}
	trackd__v1__query__free_unpacked(q, NULL);
	return rv;
}
