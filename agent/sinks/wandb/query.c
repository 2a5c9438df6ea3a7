/* Queries answered by the wandb sink, on the ingest's query thread under s->mu.
 * JSON shapes: see wandb_sink_query_status in wandb_sink.h. Nothing here ever prints
 * the API key: it is not reachable from a run. */
#include "wandb_internal.h"

#include "clock.h"
#include "errors.h"
#include "store.h"
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
	                 wr->cons.len == wr->c_head && wr->sum_gen == wr->sum_acked &&
	                 wr->meta_gen == wr->meta_acked && wr->end_gen == wr->end_acked;
	return wr->run->state != RUN_RUNNING && delivered ? "done" : "uploading";
}

static int put_field(struct buf *b, const char *name, const char *value)
{
	int rv = buf_printf(b, ",\"%s\":", name);
	return rv ? rv : json_write_string(b, value ? value : "");
}

static int run_json(struct wandb_sink *s, const struct wb_run *wr, int64_t now, struct buf *b)
{
	char url[4096];
	int rv = buf_puts(b, "{\"id\":");
	if (!rv)
		rv = json_write_string(b, wr->id);
	if (!rv)
		rv = put_field(b, "entity",
		               wr->up_entity ? wr->up_entity : (wr->run ? wr->run->entity : ""));
	if (!rv)
		rv = put_field(b, "project",
		               wr->up_project ? wr->up_project : (wr->run ? wr->run->project : ""));
	if (!rv)
		rv = put_field(b, "state", state_name(wr, now));
	if (!rv)
		rv = buf_printf(b,
		                ",\"history_acked\":%" PRIu64 ",\"console_acked\":%" PRIu64
		                ",\"lines_skipped\":%" PRIu64 ",\"buffered_bytes\":%zu"
		                ",\"attempts\":%u,\"retry_in_ms\":%" PRId64 ",\"last_status\":%ld"
		                ",\"stop_requested\":%s",
		                wr->h_done, wr->c_done, wr->h_skipped + wr->c_skipped,
		                (wr->hist.len - wr->h_head) + (wr->cons.len - wr->c_head),
		                wr->attempts, wr->retry_at > now ? (wr->retry_at - now) / 1000 : 0,
		                wr->last_status, wr->stop_requested ? "true" : "false");
	if (!rv)
		rv = put_field(b, "last_error", wr->last_error);
	wb_run_url(s, wr, url, sizeof url);
	if (!rv)
		rv = put_field(b, "run_url", url);
	wb_project_url(s, wr, url, sizeof url);
	if (!rv)
		rv = put_field(b, "project_url", url);
	return rv ? rv : buf_putc(b, '}');
}

static bool visible(const struct wb_run *wr, uint32_t uid, bool admin)
{
	return admin || (wr->uid_known && wr->uid == uid);
}

static int query_status(struct wandb_sink *s, uint32_t uid, bool admin, struct buf *out)
{
	int64_t now = clock_mono_us();
	char base[4096];
	wb_strip_userinfo(s->base_url, base, sizeof base);
	int rv = buf_puts(out, "{\"base_url\":");
	if (!rv)
		rv = json_write_string(out, base);
	if (!rv)
		rv = buf_printf(out,
		                ",\"counters\":{\"requests_ok\":%" PRIu64
		                ",\"requests_failed\":%" PRIu64 ",\"lines_skipped\":%" PRIu64
		                ",\"bytes_sent\":%" PRIu64 ",\"records_orphaned\":%" PRIu64
		                ",\"write_errors\":%" PRIu64 ",\"runs_evicted\":%" PRIu64
		                ",\"buffered_bytes\":%" PRIu64 ",\"processed_index\":%" PRIu64
		                ",\"committed_index\":%" PRIu64 ",\"in_flight\":%zu"
		                ",\"requests_retried\":%" PRIu64 ",\"lines_sent\":%" PRIu64
		                ",\"runs_finished\":%" PRIu64 "},\"runs\":[",
		                atomic_load(&s->requests_ok), atomic_load(&s->requests_failed),
		                atomic_load(&s->lines_skipped), atomic_load(&s->bytes_sent),
		                atomic_load(&s->records_orphaned), atomic_load(&s->write_errors),
		                atomic_load(&s->runs_evicted), s->buffered, s->processed_index,
		                s->committed_index, s->in_flight, atomic_load(&s->requests_retried),
		                atomic_load(&s->lines_sent), atomic_load(&s->runs_finished));
	bool first = true;
	for (size_t i = 0; i < s->n_runs && !rv; i++) {
		if (!visible(s->runs[i], uid, admin))
			continue;
		if (!first)
			rv = buf_putc(out, ',');
		first = false;
		if (!rv)
			rv = run_json(s, s->runs[i], now, out);
	}
	return rv ? rv : buf_puts(out, "]}");
}

static int retry_one(struct wandb_sink *s, struct wb_run *wr, struct buf *out, bool *first)
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
	int rv = *first ? 0 : buf_putc(out, ',');
	*first = false;
	return rv ? rv : json_write_string(out, wr->id);
}

static int query_retry(struct wandb_sink *s, const char *ref, uint32_t uid, bool admin,
                       struct buf *out, char *err, size_t errlen)
{
	ref = ref ? ref : "";
	bool first = true;
	int rv = buf_puts(out, "{\"ok\":true,\"retried\":[");
	if (*ref) {
		struct wb_run *wr = wb_find(s, ref);
		if (!wr || !visible(wr, uid, admin)) {
			out->len = 0;
			snprintf(err, errlen,
			         "the wandb sink holds no run '%s' (it keeps running, parked and "
			         "recently ended runs)",
			         ref);
			return TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND;
		}
		if (!rv)
			rv = retry_one(s, wr, out, &first);
	} else {
		for (size_t i = 0; i < s->n_runs && !rv; i++)
			if (s->runs[i]->phase == WB_PARKED && visible(s->runs[i], uid, admin))
				rv = retry_one(s, s->runs[i], out, &first);
	}
	return rv ? rv : buf_puts(out, "]}");
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

int wandb_sink_query_status(wandb_sink *s, uint32_t uid, bool admin, struct buf *out, char *err,
                            size_t errlen)
{
	pthread_mutex_lock(&s->mu);
	int rv = query_status(s, uid, admin, out);
	pthread_mutex_unlock(&s->mu);
	return answered(rv, err, errlen);
}

int wandb_sink_query_retry(wandb_sink *s, const char *ref, uint32_t uid, bool admin,
                           struct buf *out, char *err, size_t errlen)
{
	pthread_mutex_lock(&s->mu);
	int rv = query_retry(s, ref, uid, admin, out, err, errlen);
	pthread_mutex_unlock(&s->mu);
	/* The sink thread may be waiting on the network: have it act now. */
	if (rv == 0)
		curl_multi_wakeup(s->multi);
	if (rv < 0) {
		snprintf(err, errlen, "answer too large or out of memory: %s", trackd_strerror(rv));
		return TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE;
	}
	return rv;
}

/* UploadInfo of the sink's own answer (malloc'd throughout), or NULL without
 * memory. */
static Trackd__V1__UploadInfo *upload_info(const char *state, const char *run_url,
                                           const char *project_url, const char *last_error)
{
	Trackd__V1__UploadInfo *u = malloc(sizeof *u);
	if (!u)
		return NULL;
	trackd__v1__upload_info__init(u);
	u->sink = strdup("wandb");
	u->state = strdup(state);
	u->run_url = strdup(run_url);
	u->project_url = strdup(project_url);
	u->last_error = strdup(last_error ? last_error : "");
	if (!u->sink || !u->state || !u->run_url || !u->project_url || !u->last_error) {
		trackd__v1__upload_info__free_unpacked(u, NULL);
		return NULL;
	}
	return u;
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
