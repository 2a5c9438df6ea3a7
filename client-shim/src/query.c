/*
 * query.c — the cold paths that talk to the agent synchronously (query.h):
 * where the agent is, queries of the run store, the agent's status, the run's
 * directory and URL. Nothing here touches a run's batches, so none of it runs
 * with a run's lock held.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "query.h"
#include "autostart.h"
#include "error.h"
#include "json_write.h"
#include "run.h"
#include "transport.h"
#include "errors.h"
#include "trackd/v1/pb_json.h"

/* ---- requests ------------------------------------------------------------- */

int tdi_resolve_url_kind(const char *given, char *url, size_t len, bool *private_agent)
{
	static atomic_bool warned;
	struct tdi_agent_where w;

	if (tdi_agent_locate(given, true, url, len, &w) != 0)
		return tdi_fail(TD_ERR_INVALID, "%s", w.why);
	if (private_agent != NULL)
		*private_agent = w.kind == TDI_AGENT_PRIVATE;
	/* Once per process, and not for those who opted out: the records are
	 * kept, but the user should know why no agent takes them. */
	if (w.start_failed && !atomic_exchange(&warned, true))
		fprintf(stderr,
		        "trackd: %s; records are kept (memory, then spool) until an agent "
		        "answers\n",
		        w.why);
	return TD_OK;
}

int tdi_resolve_url(const char *given, char *url, size_t len)
{
	return tdi_resolve_url_kind(given, url, len, NULL);
}

/* An Error reply as a td_error, with the agent's message as the detail. */
static int agent_error(const char *what, const Trackd__V1__Reply *reply)
{
	if (reply->body_case != TRACKD__V1__REPLY__BODY_ERROR)
		return tdi_fail(TD_ERR_REJECTED, "%s: unexpected answer (body %d) from the agent",
		                what, (int)reply->body_case);
	const Trackd__V1__Error *e = reply->error;
	const char *msg = e->message ? e->message : "(no message)";
	if (e->code == TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND)
		return tdi_fail(TD_ERR_NOT_FOUND, "%s", msg);
	return tdi_fail(TD_ERR_REJECTED, "%s", msg);
}

int tdi_agent_query(const char *url, const td_query *q, int timeout_ms, char **json_out)
{
	Trackd__V1__Request req = TRACKD__V1__REQUEST__INIT;
	Trackd__V1__Query query = TRACKD__V1__QUERY__INIT;
	Trackd__V1__Reply *reply;
	int rc;

	if (json_out == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_query_agent: json_out is NULL");
	*json_out = NULL;
	if (q == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_query_agent: no query");
	if (q->n_keys > 0 && q->keys == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_query_agent: NULL keys with n_keys %zu",
		                q->n_keys);
	if (timeout_ms < 0)
		timeout_ms = TDI_DEFAULT_QUERY_TIMEOUT_MS;

	/* protobuf-c wants char *; it only reads these. */
	Trackd__V1__RunsRequest runs = TRACKD__V1__RUNS_REQUEST__INIT;
	Trackd__V1__RunRequest one = TRACKD__V1__RUN_REQUEST__INIT;
	Trackd__V1__HistoryRequest history = TRACKD__V1__HISTORY_REQUEST__INIT;
	Trackd__V1__RenameRequest rename = TRACKD__V1__RENAME_REQUEST__INIT;
	Trackd__V1__FilesRequest files = TRACKD__V1__FILES_REQUEST__INIT;
	Trackd__V1__ArtifactsRequest arts = TRACKD__V1__ARTIFACTS_REQUEST__INIT;
	Trackd__V1__ArtifactRequest art = TRACKD__V1__ARTIFACT_REQUEST__INIT;
	switch (q->kind) {
	case TD_QUERY_ARTIFACTS:
		arts.project = (char *)q->project;
		arts.type = (char *)q->type;
		arts.name = (char *)q->name;
		query.request_case = TRACKD__V1__QUERY__REQUEST_ARTIFACTS;
		query.artifacts = &arts;
		break;
	case TD_QUERY_ARTIFACT:
		art.artifact = (char *)q->artifact;
		art.project = (char *)q->project;
		query.request_case = TRACKD__V1__QUERY__REQUEST_ARTIFACT;
		query.artifact = &art;
		break;
	case TD_QUERY_RUNS:
		runs.project = (char *)q->project;
		runs.state = (char *)q->state;
		runs.has_offset = q->offset != 0;
		runs.offset = q->offset;
		runs.has_limit = q->limit != 0;
		runs.limit = q->limit;
		query.request_case = TRACKD__V1__QUERY__REQUEST_RUNS;
		query.runs = &runs;
		break;
	case TD_QUERY_RUN:
		one.run = (char *)q->run;
		query.request_case = TRACKD__V1__QUERY__REQUEST_RUN;
		query.run = &one;
		break;
	case TD_QUERY_HISTORY:
		history.run = (char *)q->run;
		history.n_keys = q->n_keys;
		history.keys = (char **)q->keys;
		history.has_from_line = q->from_line != 0;
		history.from_line = q->from_line;
		history.has_max_lines = q->max_lines != 0;
		history.max_lines = q->max_lines;
		history.stream = (char *)q->stream;
		query.request_case = TRACKD__V1__QUERY__REQUEST_HISTORY;
		query.history = &history;
		break;
	case TD_QUERY_RENAME:
		rename.run = (char *)q->run;
		rename.name = (char *)q->name;
		rename.has_set_tags = rename.set_tags = q->set_tags;
		rename.tags = (char **)q->tags;
		rename.n_tags = q->set_tags ? q->n_tags : 0;
		rename.notes = (char *)q->notes;
		query.request_case = TRACKD__V1__QUERY__REQUEST_RENAME;
		query.rename = &rename;
		break;
	case TD_QUERY_FILES:
		files.run = (char *)q->run;
		query.request_case = TRACKD__V1__QUERY__REQUEST_FILES;
		query.files = &files;
		break;
	default:
		return tdi_fail(TD_ERR_INVALID, "td_query_agent: unknown query kind %d",
		                (int)q->kind);
	}
	req.has_protocol_version = true;
	req.protocol_version = TRACKD_PROTOCOL_VERSION;
	req.body_case = TRACKD__V1__REQUEST__BODY_QUERY;
	req.query = &query;
	if ((rc = tdi_agent_call(url, &req, timeout_ms, &reply)) != TD_OK)
		return rc;
	if (reply->body_case == TRACKD__V1__REPLY__BODY_QUERY) {
		/* The typed reply as JSON, in the shapes of pb_json.h (the Python Api
		 * reads them). Values written as JSON take at most a few times their
		 * packed size (a double: 9 bytes packed, up to 24 as text). */
		struct buf json;
		buf_init(&json, TDI_MAX_QUERY_REPLY_BYTES * 4);
		int jr = pb_json_query_reply(reply->query, &json);
		if (jr == TRACKD_OK && json.data) {
			*json_out = json.data; /* NUL-terminated, malloc'd: td_free releases it */
			rc = TD_OK;
		} else {
			buf_fini(&json);
			rc =
			    jr == TRACKD_EINVAL
			        ? tdi_fail(TD_ERR_REJECTED, "td_query_agent: the agent's answer is "
			                                    "of no kind this library knows")
			        : tdi_fail(TD_ERR_NOMEM, "td_query_agent: out of memory");
		}
	} else {
		rc = agent_error("query", reply);
	}
	trackd__v1__reply__free_unpacked(reply, NULL);
	return rc;
}

/* The typed answer to a run query: *reply (free with free_unpacked) holds
 * query->run with the run's identity (its run) and upload. */
static int run_query(const char *url, const char *path, int timeout_ms, Trackd__V1__Reply **reply)
{
	Trackd__V1__Request req = TRACKD__V1__REQUEST__INIT;
	Trackd__V1__Query query = TRACKD__V1__QUERY__INIT;
	Trackd__V1__RunRequest one = TRACKD__V1__RUN_REQUEST__INIT;
	int rc;

	one.run = (char *)path;
	query.request_case = TRACKD__V1__QUERY__REQUEST_RUN;
	query.run = &one;
	req.has_protocol_version = true;
	req.protocol_version = TRACKD_PROTOCOL_VERSION;
	req.body_case = TRACKD__V1__REQUEST__BODY_QUERY;
	req.query = &query;
	if ((rc = tdi_agent_call(url, &req, timeout_ms, reply)) != TD_OK)
		return rc;
	const Trackd__V1__Reply *r = *reply;
	if (r->body_case == TRACKD__V1__REPLY__BODY_QUERY &&
	    r->query->reply_case == TRACKD__V1__QUERY_REPLY__REPLY_RUN && r->query->run->run)
		return TD_OK;
	rc = r->body_case == TRACKD__V1__REPLY__BODY_QUERY
	         ? tdi_fail(TD_ERR_REJECTED,
	                    "run query: the agent at %s answers without a typed run", url)
	         : agent_error("query", r);
	trackd__v1__reply__free_unpacked(*reply, NULL);
	*reply = NULL;
	return rc;
}

/* A copy of a typed reply's string: NULL when absent or empty (or without
 * memory). */
static char *copy_nonempty(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

int td_query_agent(const char *socket_url, const td_query *q, int timeout_ms, char **json_out)
{
	char url[256];
	int rc;

	if (json_out != NULL)
		*json_out = NULL;
	if ((rc = tdi_resolve_url(socket_url, url, sizeof(url))) != TD_OK)
		return rc;
	return tdi_agent_query(url, q, timeout_ms, json_out);
}

static int status_call(const char *url, int timeout_ms, Trackd__V1__Reply **reply)
{
	Trackd__V1__Request req = TRACKD__V1__REQUEST__INIT;
	Trackd__V1__StatusQuery q = TRACKD__V1__STATUS_QUERY__INIT;
	int rc;

	req.has_protocol_version = true;
	req.protocol_version = TRACKD_PROTOCOL_VERSION;
	req.body_case = TRACKD__V1__REQUEST__BODY_STATUS;
	req.status = &q;
	if ((rc = tdi_agent_call(url, &req, timeout_ms, reply)) != TD_OK)
		return rc;
	if ((*reply)->body_case != TRACKD__V1__REPLY__BODY_STATUS) {
		rc = agent_error("status", *reply);
		trackd__v1__reply__free_unpacked(*reply, NULL);
		*reply = NULL;
	}
	return rc;
}

int td_status_agent(const char *socket_url, int timeout_ms, char **json_out)
{
	char url[256];
	Trackd__V1__Reply *reply;
	int rc;

	if (json_out == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_status_agent: json_out is NULL");
	*json_out = NULL;
	if ((rc = tdi_resolve_url(socket_url, url, sizeof(url))) != TD_OK)
		return rc;
	if (timeout_ms < 0)
		timeout_ms = TDI_DEFAULT_QUERY_TIMEOUT_MS;
	if ((rc = status_call(url, timeout_ms, &reply)) != TD_OK)
		return rc;
	/* The fields the agent sent (pb_json.h), so fields it adds later show
	 * up without a change here. */
	struct buf out;
	buf_init(&out, TDI_MAX_REPLY_BYTES * 4);
	rc = pb_json_write_present(&reply->status->base, &out);
	trackd__v1__reply__free_unpacked(reply, NULL);
	if (rc != TRACKD_OK || !out.data) {
		buf_fini(&out);
		return tdi_fail(TD_ERR_NOMEM, "out of memory");
	}
	*json_out = out.data;
	return TD_OK;
}

void td_free(void *p)
{
	free(p);
}

/* ---- runs ----------------------------------------------------------------- */

static void run_path(const struct td_run *run, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s/%s", run->entity, run->project, run->run_id);
}

int tdi_check_resume(struct td_run *run, bool explicit_id)
{
	char path[3 * 256];
	Trackd__V1__Reply *reply = NULL;
	int rc;

	if (run->resume == TD_RESUME_ALLOW || (run->resume == TD_RESUME_NEVER && !explicit_id))
		return TD_OK;
	run_path(run, path, sizeof(path));
	rc = run_query(run->url, path, TDI_INIT_QUERY_TIMEOUT_MS, &reply);
	if (run->resume == TD_RESUME_MUST) {
		switch (rc) {
		case TD_OK:
			/* The run's directory carries its first start time, not ours. */
			run->known_dir = copy_nonempty(reply->query->run->run->dir);
			trackd__v1__reply__free_unpacked(reply, NULL);
			return TD_OK;
		case TD_ERR_NOT_FOUND:
			return tdi_fail(TD_ERR_INVALID,
			                "td_init: resume must: run %s does not exist", path);
		case TD_ERR_TRANSPORT:
			return tdi_fail(TD_ERR_INVALID,
			                "td_init: resume must: no agent answered at %s to confirm "
			                "that run %s exists",
			                run->url, path);
		default: {
			char why[256];
			snprintf(why, sizeof(why), "%s", td_last_error());
			return tdi_fail(TD_ERR_INVALID,
			                "td_init: resume must: the agent cannot confirm run %s: %s",
			                path, why);
		}
		}
	}
	/* Never: only a positive answer stops the run; without an agent (or a
	 * run store) the agent itself decides later. */
	if (reply)
		trackd__v1__reply__free_unpacked(reply, NULL);
	if (rc == TD_OK)
		return tdi_fail(TD_ERR_INVALID,
		                "td_init: run %s already exists (resume is never; use allow or "
		                "must to attach to it)",
		                path);
	return TD_OK;
}

/* The agent's state dir, asked once per run. */
static int state_dir(struct td_run *run, char **out)
{
	Trackd__V1__Reply *reply;
	int rc;

	pthread_mutex_lock(&run->mu);
	if (run->state_dir) {
		*out = strdup(run->state_dir);
		pthread_mutex_unlock(&run->mu);
		return *out ? TD_OK : tdi_fail(TD_ERR_NOMEM, "out of memory");
	}
	pthread_mutex_unlock(&run->mu);

	if ((rc = status_call(run->url, TDI_DIR_QUERY_TIMEOUT_MS, &reply)) != TD_OK)
		return rc;
	const char *dir = reply->status->state_dir;
	if (dir == NULL || dir[0] == '\0') {
		trackd__v1__reply__free_unpacked(reply, NULL);
		return tdi_fail(TD_ERR_TRANSPORT, "the agent at %s does not report its state dir",
		                run->url);
	}
	*out = strdup(dir);
	char *cached = strdup(dir);
	trackd__v1__reply__free_unpacked(reply, NULL);
	pthread_mutex_lock(&run->mu);
	if (run->state_dir == NULL) {
		run->state_dir = cached;
		cached = NULL;
	}
	pthread_mutex_unlock(&run->mu);
	free(cached);
	return *out ? TD_OK : tdi_fail(TD_ERR_NOMEM, "out of memory");
}

/* A run that may have existed before this process (resume allow or must)
 * keeps the directory of its first start: ask the agent for it. */
static char *asked_dir(struct td_run *run)
{
	char path[3 * 256];
	Trackd__V1__Reply *reply;

	run_path(run, path, sizeof(path));
	if (run_query(run->url, path, TDI_DIR_QUERY_TIMEOUT_MS, &reply) != TD_OK)
		return NULL;
	char *dir = copy_nonempty(reply->query->run->run->dir);
	trackd__v1__reply__free_unpacked(reply, NULL);
	return dir;
}

/* A name as one path component, as the agent's local sink writes it: '/' and
 * control characters become '_', "" becomes "_", "." and ".." get a leading
 * '_'. */
static int put_component(struct buf *s, const char *name)
{
	int failed = 0;

	if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		failed |= buf_putc(s, '_');
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		char c = (*p == '/' || *p < 0x20) ? '_' : (char)*p;
		failed |= buf_putc(s, c);
	}
	return failed;
}

int td_run_dir(td_run *run, char *buf, size_t len)
{
	struct buf s;
	char *dir = NULL;
	int failed = 0, rc;

	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_run_dir: run is NULL");
	if (run->disabled)
		return tdi_fail(TD_ERR_INVALID, "td_run_dir: a disabled run has no directory");

	pthread_mutex_lock(&run->mu);
	if (run->known_dir)
		dir = strdup(run->known_dir);
	pthread_mutex_unlock(&run->mu);
	if (dir == NULL && run->resume != TD_RESUME_NEVER && (dir = asked_dir(run)) != NULL) {
		pthread_mutex_lock(&run->mu);
		if (run->known_dir == NULL)
			run->known_dir = strdup(dir);
		pthread_mutex_unlock(&run->mu);
	}
	buf_init(&s, TDI_TEXT_MAX);
	if (dir != NULL) {
		failed |= buf_puts(&s, dir);
		free(dir);
	} else {
		if ((rc = state_dir(run, &dir)) != TD_OK)
			return rc;
		time_t t = (time_t)(run->start_time_us / 1000000);
		struct tm tm;
		gmtime_r(&t, &tm);
		failed |= buf_printf(&s, "%s/runs/", dir);
		failed |= put_component(&s, run->entity);
		failed |= buf_putc(&s, '/');
		failed |= put_component(&s, run->project);
		failed |= buf_printf(&s, "/run-%04d%02d%02d_%02d%02d%02d-%s", tm.tm_year + 1900,
		                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		                     run->run_id);
		free(dir);
	}
	rc = failed ? tdi_fail(TD_ERR_NOMEM, "out of memory")
	            : tdi_text_copy_out(s.data, s.len, buf, len);
	buf_fini(&s);
	return rc;
}

/* ---- the run on W&B ------------------------------------------------------- */

int tdi_upload_info(struct td_run *run, int timeout_ms, struct tdi_upload *out)
{
	char path[3 * 256];
	Trackd__V1__Reply *reply;
	int rc;

	memset(out, 0, sizeof(*out));
	run_path(run, path, sizeof(path));
	if ((rc = run_query(run->url, path, timeout_ms, &reply)) != TD_OK)
		return rc;
	const Trackd__V1__RunReply *rr = reply->query->run;
	if (rr->upload) {
		out->state = copy_nonempty(rr->upload->state);
		out->run_url = copy_nonempty(rr->upload->run_url);
		out->project_url = copy_nonempty(rr->upload->project_url);
		out->last_error = copy_nonempty(rr->upload->last_error);
	}
	out->display_name = copy_nonempty(rr->run->display_name);
	trackd__v1__reply__free_unpacked(reply, NULL);
	return TD_OK;
}

bool tdi_agent_uploads(struct td_run *run, int timeout_ms)
{
	Trackd__V1__Reply *reply = NULL;
	if (status_call(run->url, timeout_ms, &reply) != TD_OK)
		return false;
	bool uploads = reply->status->has_wandb_enabled && reply->status->wandb_enabled;
	trackd__v1__reply__free_unpacked(reply, NULL);
	return uploads;
}

void tdi_upload_fini(struct tdi_upload *u)
{
	free(u->state);
	free(u->run_url);
	free(u->project_url);
	free(u->last_error);
	free(u->display_name);
	memset(u, 0, sizeof(*u));
}

int td_run_url(td_run *run, char *buf, size_t len)
{
	struct tdi_upload u;
	int rc;

	if (run == NULL)
		return tdi_fail(TD_ERR_INVALID, "td_run_url: run is NULL");
	if (run->disabled || run->mode == TD_MODE_OFFLINE) {
		if (buf != NULL && len > 0)
			buf[0] = '\0';
		return 0;
	}
	if ((rc = tdi_upload_info(run, TDI_DIR_QUERY_TIMEOUT_MS, &u)) != TD_OK)
		return rc;
	const char *url = u.run_url != NULL ? u.run_url : "";
	rc = tdi_text_copy_out(url, strlen(url), buf, len);
	tdi_upload_fini(&u);
	return rc;
}
