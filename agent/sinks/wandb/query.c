/* Queries answered by the wandb sink, on the ingest's query thread under s->mu,
 * as typed replies of trackd.proto (WandbStatusReply, RetryReply, UploadInfo). Nothing here ever
 * prints the API key: it is not reachable from a run. */
#include "wandb_internal.h"

#include "clock.h"
#include "errors.h"
#include "store.h"
#include "trackd/v1/wire.h"
#include "vtree.h"

#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static const char *state_name(const struct wb_run *wr, int64_t now)
{
	switch (wr->phase) {
	case WB_PARKED: return "parked";
	case WB_EVICTED: return "evicted";
	case WB_OFFLINE: return "offline";
	case WB_ATTACHED: break;
	}
	if (!wr->run)
		return "waiting";
	if (wr->retry_at > now)
		return "retrying";
	bool delivered = !wr->xfer && wr->upserted && wr->hist.len == wr->h_head &&
	                 wr->evts.len == wr->e_head && wr->cons.len == wr->c_head &&
	                 wr->sum_gen == wr->sum_acked && wr->meta_gen == wr->meta_acked &&
	                 wr->end_gen == wr->end_acked;
	return wr->run->state != RUN_RUNNING && delivered ? "done" : "uploading";
}

/* The status of one run (malloc'd throughout), or NULL without memory. */
static Trackd__V1__WandbStatusReply__Run *run_status(struct wandb_sink *s, const struct wb_run *wr,
                                                     int64_t now)
{
	char run_url[4096], project_url[4096];
	wb_run_url(s, wr, run_url, sizeof run_url);
	wb_project_url(s, wr, project_url, sizeof project_url);
	Trackd__V1__WandbStatusReply__Run r = TRACKD__V1__WANDB_STATUS_REPLY__RUN__INIT;
	r.id = wr->id;
	r.entity = wr->up_entity ? wr->up_entity : (wr->run ? wr->run->entity : "");
	r.project = wr->up_project ? wr->up_project : (wr->run ? wr->run->project : "");
	r.state = (char *)state_name(wr, now);
	r.has_history_acked = r.has_console_acked = r.has_lines_skipped = true;
	r.history_acked = wr->h_done;
	r.console_acked = wr->c_done;
	r.lines_skipped = wr->h_skipped + wr->c_skipped;
	r.has_buffered_bytes = r.has_attempts = r.has_retry_in_ms = true;
	r.buffered_bytes =
	    (wr->hist.len - wr->h_head) + (wr->cons.len - wr->c_head) + (wr->evts.len - wr->e_head);
	r.attempts = wr->attempts;
	r.retry_in_ms = wr->retry_at > now ? (wr->retry_at - now) / 1000 : 0;
	r.has_last_status = r.has_stop_requested = true;
	r.last_status = wr->last_status;
	r.stop_requested = wr->stop_requested;
	r.last_error = (char *)wr->last_error;
	r.run_url = run_url;
	r.project_url = project_url;
	return (Trackd__V1__WandbStatusReply__Run *)wire_copy(&r.base);
}

static bool visible(const struct wb_run *wr, uint32_t uid, bool admin)
{
	return admin || (wr->uid_known && wr->uid == uid);
}

static int query_status(struct wandb_sink *s, uint32_t uid, bool admin,
                        Trackd__V1__WandbStatusReply *out)
{
	int64_t now = clock_mono_us();
	char base[4096];
	wb_strip_userinfo(s->base_url, base, sizeof base);
	Trackd__V1__WandbStatusReply__Counters *c = malloc(sizeof *c);
	if (!c || !(out->base_url = strdup(base))) {
		free(c);
		return TRACKD_ENOMEM;
	}
	trackd__v1__wandb_status_reply__counters__init(c);
	out->counters = c;
#define COUNTER(name, value) (c->has_##name = true, c->name = (value))
	COUNTER(requests_ok, atomic_load(&s->requests_ok));
	COUNTER(requests_failed, atomic_load(&s->requests_failed));
	COUNTER(lines_skipped, atomic_load(&s->lines_skipped));
	COUNTER(bytes_sent, atomic_load(&s->bytes_sent));
	COUNTER(records_orphaned, atomic_load(&s->records_orphaned));
	COUNTER(write_errors, atomic_load(&s->write_errors));
	COUNTER(runs_evicted, atomic_load(&s->runs_evicted));
	COUNTER(buffered_bytes, s->buffered);
	COUNTER(processed_index, s->processed_index);
	COUNTER(committed_index, s->committed_index);
	COUNTER(in_flight, s->in_flight);
	COUNTER(requests_retried, atomic_load(&s->requests_retried));
	COUNTER(lines_sent, atomic_load(&s->lines_sent));
	COUNTER(runs_finished, atomic_load(&s->runs_finished));
	COUNTER(files_uploaded, atomic_load(&s->files_uploaded));
	COUNTER(files_failed, atomic_load(&s->files_failed));
	COUNTER(file_bytes_sent, atomic_load(&s->file_bytes_sent));
	COUNTER(uploads_in_flight, s->puts_in_flight);
#undef COUNTER
	if (s->n_runs && !(out->runs = malloc(s->n_runs * sizeof *out->runs)))
		return TRACKD_ENOMEM;
	for (size_t i = 0; i < s->n_runs; i++) {
		if (!visible(s->runs[i], uid, admin))
			continue;
		if (!(out->runs[out->n_runs] = run_status(s, s->runs[i], now)))
			return TRACKD_ENOMEM;
		out->n_runs++;
	}
	return TRACKD_OK;
}

/* Retries one run's upload; its id is added to the reply if there was
 * something to retry. */
static int retry_one(struct wandb_sink *s, struct wb_run *wr, Trackd__V1__RetryReply *out)
{
	switch (wr->phase) {
	case WB_PARKED:
	case WB_EVICTED: wb_reattach(s, wr); break;
	case WB_ATTACHED:
		if (!wr->retry_at)
			return TRACKD_OK; /* nothing to retry */
		wr->retry_at = 0;
		wr->attempts = 0;
		break;
	case WB_OFFLINE: return TRACKD_OK;
	}
	char **p = realloc(out->retried, (out->n_retried + 1) * sizeof *p);
	if (!p)
		return TRACKD_ENOMEM;
	out->retried = p;
	if (!(p[out->n_retried] = strdup(wr->id)))
		return TRACKD_ENOMEM;
	out->n_retried++;
	return TRACKD_OK;
}

static int query_retry(struct wandb_sink *s, const char *ref, uint32_t uid, bool admin,
                       Trackd__V1__RetryReply *out, char *err, size_t errlen)
{
	ref = ref ? ref : "";
	out->has_ok = out->ok = true;
	if (*ref) {
		struct wb_run *wr = wb_find(s, ref);
		if (!wr || !visible(wr, uid, admin)) {
			snprintf(err, errlen,
			         "the wandb sink holds no run '%s' (it keeps running, parked and "
			         "recently ended runs)",
			         ref);
			return TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND;
		}
		return retry_one(s, wr, out);
	}
	int rv = TRACKD_OK;
	for (size_t i = 0; i < s->n_runs && !rv; i++)
		if (s->runs[i]->phase == WB_PARKED && visible(s->runs[i], uid, admin))
			rv = retry_one(s, s->runs[i], out);
	return rv;
}

/* A buffer limit or allocation failure (< 0) is answered as too large. */
static int answered(int rv, char *err, size_t errlen)
{
	if (rv < 0) {
		snprintf(err, errlen, "answer too large or out of memory: %s", trackd_strerror(rv));
		return TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE;
	}
	return rv;
}

int wandb_sink_query_status(wandb_sink *s, uint32_t uid, bool admin,
                            Trackd__V1__WandbStatusReply **out, char *err, size_t errlen)
{
	if (!(*out = malloc(sizeof **out)))
		return answered(TRACKD_ENOMEM, err, errlen);
	trackd__v1__wandb_status_reply__init(*out);
	pthread_mutex_lock(&s->mu);
	int rv = query_status(s, uid, admin, *out);
	pthread_mutex_unlock(&s->mu);
	return answered(rv, err, errlen);
}

int wandb_sink_query_retry(wandb_sink *s, const char *ref, uint32_t uid, bool admin,
                           Trackd__V1__RetryReply **out, char *err, size_t errlen)
{
	if (!(*out = malloc(sizeof **out)))
		return answered(TRACKD_ENOMEM, err, errlen);
	trackd__v1__retry_reply__init(*out);
	pthread_mutex_lock(&s->mu);
	int rv = query_retry(s, ref, uid, admin, *out, err, errlen);
	pthread_mutex_unlock(&s->mu);
	/* The sink thread may be waiting on the network: have it act now. */
	if (rv == 0)
		curl_multi_wakeup(s->multi);
	return answered(rv, err, errlen);
}

/* UploadInfo of the sink's own answer (malloc'd throughout), or NULL without
 * memory. */
static Trackd__V1__UploadInfo *upload_info(const char *state, const char *run_url,
                                           const char *project_url, const char *last_error)
{
	Trackd__V1__UploadInfo u = TRACKD__V1__UPLOAD_INFO__INIT;
	u.sink = "wandb";
	u.state = (char *)state;
	u.run_url = (char *)run_url;
	u.project_url = (char *)project_url;
	u.last_error = (char *)(last_error ? last_error : "");
	return (Trackd__V1__UploadInfo *)wire_copy(&u.base);
}

/* A run the sink does not hold in memory: what its durable state says. */
static int upload_from_disk(struct wandb_sink *s, const char *run_id, Trackd__V1__UploadInfo **out)
{
	struct wb_state st;
	const char *state = "pending";
	char run_url[4096] = "", project_url[3000] = "";
	bool have = wb_state_read(s->runs_dir, run_id, &st) == 0;
	if (have && (st.flags & WB_STATE_OFFLINE)) {
		state = "offline";
	} else if (have && (st.flags & WB_STATE_UPSERTED) && *st.entity) {
		/* Only runs whose upload is complete (or that wait to be read
		 * again from the log) leave memory. */
		state = "done";
		Trackd__V1__RunSnapshot *snap =
		    st.snapshot_len
		        ? trackd__v1__run_snapshot__unpack(NULL, st.snapshot_len, st.snapshot)
		        : NULL;
		if (!snap || !snap->state || strcmp(snap->state, "running") == 0)
			state = "uploading";
		trackd__v1__run_snapshot__free_unpacked(snap, NULL);
		snprintf(project_url, sizeof project_url, "%s/%s/%s", s->app_url, st.entity,
		         st.project);
		snprintf(run_url, sizeof run_url, "%s/runs/%s", project_url, run_id);
	}
	if (have)
		wb_state_fini(&st);
	*out = upload_info(state, run_url, project_url, "");
	return *out ? TRACKD_OK : TRACKD_ENOMEM;
}

int wandb_sink_run_upload(wandb_sink *s, const char *run_id, Trackd__V1__UploadInfo **out)
{
	char url[4096];
	int64_t now = clock_mono_us();
	pthread_mutex_lock(&s->mu);
	struct wb_run *wr = wb_find(s, run_id);
	int rv;
	if (!wr) {
		rv = upload_from_disk(s, run_id, out);
	} else {
		char project_url[4096];
		wb_run_url(s, wr, url, sizeof url);
		wb_project_url(s, wr, project_url, sizeof project_url);
		*out = upload_info(state_name(wr, now), url, project_url, wr->last_error);
		rv = *out ? TRACKD_OK : TRACKD_ENOMEM;
	}
	pthread_mutex_unlock(&s->mu);
	return rv;
}
