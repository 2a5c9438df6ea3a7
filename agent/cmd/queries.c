/*
 * The query table. To add a query:
 *   1. trackd.proto: a request message and a new field in Query's `request`
 *      oneof (a new number; the numbers are never reused);
 *   2. its reply message, a new member of QueryReply's `reply` oneof with the
 *      request's number (its fields are also its JSON shape: pb_json.h);
 *   3. the handler in the stage that owns the answer (its header states the
 *      access rule: a peer sees only its own runs unless admin), taking the
 *      typed request and giving the typed reply;
 *   4. one row below: the request case, the stages it needs, the handler.
 * Nothing else dispatches on a query: ingest hands every Query here.
 */
#include "queries.h"

#include "errors.h"
#include "trackd/v1/wire.h"

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
	size_t max_bytes; /* the most the answer may take packed */
};

/* A handler sets the reply's case and member (malloc'd throughout: the router
 * frees the reply with free_unpacked, whatever the handler returns). */
typedef int (*query_handler)(const struct query_call *c, Trackd__V1__QueryReply *r, char *err,
                             size_t errlen);

struct query_route {
	Trackd__V1__Query__RequestCase request;
	unsigned needs;       /* enum query_stage_need */
	const char *no_wandb; /* the answer when NEEDS_WANDB and the sink is off */
	query_handler handler;
};

/* ---- local run store ---- */

static int on_runs(const struct query_call *c, Trackd__V1__QueryReply *r, char *err, size_t errlen)
{
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_RUNS;
	return local_sink_query_runs(c->st->local, c->q->runs, c->uid, c->admin, c->max_bytes,
	                             &r->runs, err, errlen);
}

/* The upload side of a run without a wandb sink. */
static Trackd__V1__UploadInfo *upload_none(void)
{
	Trackd__V1__UploadInfo u = TRACKD__V1__UPLOAD_INFO__INIT;
	u.sink = "none";
	u.state = "disabled";
	return (Trackd__V1__UploadInfo *)wire_copy(&u.base);
}

/* The run (the local sink has checked that the peer may see it) and its upload:
 * the wandb sink's view (its URLs once the backend answered), or sink "none"
 * without one. */
static int on_run(const struct query_call *c, Trackd__V1__QueryReply *r, char *err, size_t errlen)
{
	Trackd__V1__RunReply *rr = malloc(sizeof *rr);
	if (!rr) {
		snprintf(err, errlen, "out of memory");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	trackd__v1__run_reply__init(rr);
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_RUN;
	r->run = rr;
	int code = local_sink_query_run(c->st->local, c->q->run->run, c->uid, c->admin, &rr->run,
	                                err, errlen);
	if (code)
		return code;
	int rv = TRACKD_ENOMEM;
	if (c->st->wandb)
		rv = wandb_sink_run_upload(c->st->wandb, rr->run->id, &rr->upload);
	else if ((rr->upload = upload_none()))
		rv = TRACKD_OK;
	if (!rv)
		return 0;
	snprintf(err, errlen, "cannot answer: %s", trackd_strerror(rv));
	return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
}

static int on_history(const struct query_call *c, Trackd__V1__QueryReply *r, char *err,
                      size_t errlen)
{
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_HISTORY;
	return local_sink_query_history(c->st->local, c->q->history, c->uid, c->admin, c->max_bytes,
	                                &r->history, err, errlen);
}

static int on_series(const struct query_call *c, Trackd__V1__QueryReply *r, char *err,
                     size_t errlen)
{
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_SERIES;
	return local_sink_query_series(c->st->local, c->q->series, c->uid, c->admin, c->max_bytes,
	                               &r->series, err, errlen);
}

static int on_console(const struct query_call *c, Trackd__V1__QueryReply *r, char *err,
                      size_t errlen)
{
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_CONSOLE;
	return local_sink_query_console(c->st->local, c->q->console, c->uid, c->admin, c->max_bytes,
	                                &r->console, err, errlen);
}

static int on_files(const struct query_call *c, Trackd__V1__QueryReply *r, char *err, size_t errlen)
{
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_FILES;
	return local_sink_query_files(c->st->local, c->q->files, c->uid, c->admin, c->max_bytes,
	                              &r->files, err, errlen);
}

static int on_run_file_read(const struct query_call *c, Trackd__V1__QueryReply *r, char *err,
                            size_t errlen)
{
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_RUN_FILE_READ;
	return local_sink_query_run_file(c->st->local, c->q->run_file_read, c->uid, c->admin,
	                                 c->max_bytes, &r->run_file_read, err, errlen);
}

static int on_rename(const struct query_call *c, Trackd__V1__QueryReply *r, char *err,
                     size_t errlen)
{
	int code =
	    local_sink_query_rename(c->st->local, c->q->rename, c->uid, c->admin, err, errlen);
	if (code)
		return code;
	if (!(r->rename = malloc(sizeof *r->rename))) {
		snprintf(err, errlen, "out of memory");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	trackd__v1__rename_reply__init(r->rename);
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_RENAME;
	r->rename->has_ok = r->rename->ok = true;
	return 0;
}

/* ---- artifact store (fed by the local sink: a query first lets it catch up) ---- */

static int no_store(const struct query_call *c, char *err, size_t errlen)
{
	if (c->st->artifacts)
		return 0;
	snprintf(err, errlen, "the agent is starting; try again");
	return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
}

static int on_artifacts(const struct query_call *c, Trackd__V1__QueryReply *r, char *err,
                        size_t errlen)
{
	int code = no_store(c, err, errlen);
	if (code)
		return code;
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_ARTIFACTS;
	return artifacts_query_list(c->st->artifacts, c->q->artifacts, c->uid, c->admin,
	                            c->max_bytes, &r->artifacts, err, errlen);
}

static int on_artifact(const struct query_call *c, Trackd__V1__QueryReply *r, char *err,
                       size_t errlen)
{
	int code = no_store(c, err, errlen);
	if (code)
		return code;
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_ARTIFACT;
	return artifacts_query_one(c->st->artifacts, c->q->artifact, c->uid, c->admin, &r->artifact,
	                           err, errlen);
}

static int on_artifact_file(const struct query_call *c, Trackd__V1__QueryReply *r, char *err,
                            size_t errlen)
{
	int code = no_store(c, err, errlen);
	if (code)
		return code;
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_ARTIFACT_FILE;
	return artifacts_query_file(c->st->artifacts, c->q->artifact_file, c->uid, c->admin,
	                            c->max_bytes, &r->artifact_file, err, errlen);
}

/* trackctl artifact alias / delete: checked here for the caller, made
 * durable as an ArtifactChange record of the run that logged the version,
 * applied by the local sink in log order (artifacts.h). */
static int on_artifact_change(const struct query_call *c, Trackd__V1__QueryReply *r, char *err,
                              size_t errlen)
{
	int code = no_store(c, err, errlen);
	if (code)
		return code;
	if (!c->st->submit) {
		snprintf(err, errlen, "the agent is starting; try again");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	Trackd__V1__ArtifactChange change;
	char run_id[256];
	code = artifacts_prepare_change(c->st->artifacts, c->q->artifact_change, c->uid, c->admin,
	                                &change, run_id, sizeof run_id, err, errlen);
	if (code)
		return code;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = run_id;
	rec.body_case = TRACKD__V1__RECORD__BODY_ARTIFACT_CHANGE;
	rec.artifact_change = &change;
	int rv = c->st->submit(c->st->submit_arg, &rec);
	if (rv) {
		artifacts_change_fini(&change);
		snprintf(err, errlen, "cannot record the change now: %s", trackd_strerror(rv));
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	Trackd__V1__ArtifactChangeReply *rep = malloc(sizeof *rep);
	if (rep) {
		trackd__v1__artifact_change_reply__init(rep);
		rep->path = change.artifact; /* moved */
		change.artifact = NULL;
	}
	artifacts_change_fini(&change);
	if (!rep) {
		snprintf(err, errlen, "out of memory");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_ARTIFACT_CHANGE;
	r->artifact_change = rep;
	return 0;
}

/* ---- wandb sink ---- */

static int on_wandb(const struct query_call *c, Trackd__V1__QueryReply *r, char *err, size_t errlen)
{
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_WANDB;
	return wandb_sink_query_status(c->st->wandb, c->uid, c->admin, &r->wandb, err, errlen);
}

static int on_retry(const struct query_call *c, Trackd__V1__QueryReply *r, char *err, size_t errlen)
{
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_RETRY;
	return wandb_sink_query_retry(c->st->wandb, c->q->retry->run, c->uid, c->admin, &r->retry,
	                              err, errlen);
}

/* trackctl sync: the local store finds the run (and checks who asks), the
 * wandb sink uploads it. */
static int sync_common(const struct query_call *c, bool start, bool force, const char *ref,
                       Trackd__V1__SyncProgress **out, char *err, size_t errlen)
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
	return wandb_sink_sync(c->st->wandb, start, force, ref, &t, c->uid, c->admin, out, err,
	                       errlen);
}

static int on_sync(const struct query_call *c, Trackd__V1__QueryReply *r, char *err, size_t errlen)
{
	const Trackd__V1__SyncRequest *q = c->q->sync;
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_SYNC;
	return sync_common(c, true, q->has_force && q->force, q->run, &r->sync, err, errlen);
}

static int on_sync_status(const struct query_call *c, Trackd__V1__QueryReply *r, char *err,
                          size_t errlen)
{
	r->reply_case = TRACKD__V1__QUERY_REPLY__REPLY_SYNC_STATUS;
	return sync_common(c, false, false, c->q->sync_status->run, &r->sync_status, err, errlen);
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
    {TRACKD__V1__QUERY__REQUEST_SERIES, NEEDS_LOCAL, NULL, on_series},
    {TRACKD__V1__QUERY__REQUEST_CONSOLE, NEEDS_LOCAL, NULL, on_console},
    {TRACKD__V1__QUERY__REQUEST_FILES, NEEDS_LOCAL, NULL, on_files},
    {TRACKD__V1__QUERY__REQUEST_RUN_FILE_READ, NEEDS_LOCAL, NULL, on_run_file_read},
    {TRACKD__V1__QUERY__REQUEST_ARTIFACTS, NEEDS_LOCAL, NULL, on_artifacts},
    {TRACKD__V1__QUERY__REQUEST_ARTIFACT, NEEDS_LOCAL, NULL, on_artifact},
    {TRACKD__V1__QUERY__REQUEST_ARTIFACT_FILE, NEEDS_LOCAL, NULL, on_artifact_file},
    {TRACKD__V1__QUERY__REQUEST_ARTIFACT_CHANGE, NEEDS_LOCAL, NULL, on_artifact_change},
    {TRACKD__V1__QUERY__REQUEST_WANDB, NEEDS_WANDB, WANDB_OFF, on_wandb},
    {TRACKD__V1__QUERY__REQUEST_RETRY, NEEDS_WANDB, WANDB_OFF, on_retry},
    {TRACKD__V1__QUERY__REQUEST_SYNC, NEEDS_LOCAL | NEEDS_WANDB, SYNC_OFF, on_sync},
    {TRACKD__V1__QUERY__REQUEST_SYNC_STATUS, NEEDS_LOCAL | NEEDS_WANDB, SYNC_OFF, on_sync_status},
};

int queries_answer(const struct query_stages *st, const uint8_t *query, size_t len, uint32_t uid,
                   bool admin, size_t max_bytes, Trackd__V1__QueryReply **reply, char *err,
                   size_t errlen)
{
	*reply = NULL;
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
	} else if (!(*reply = malloc(sizeof **reply))) {
		snprintf(err, errlen, "out of memory");
		rv = TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	} else {
		trackd__v1__query_reply__init(*reply);
		if (route->needs & NEEDS_LOCAL)
			local_sink_catch_up(st->local, QUERY_CATCH_UP_MS);
		const struct query_call c = {
		    .st = st, .q = q, .uid = uid, .admin = admin, .max_bytes = max_bytes};
		rv = route->handler(&c, *reply, err, errlen);
	}
	trackd__v1__query__free_unpacked(q, NULL);
	return rv;
}
