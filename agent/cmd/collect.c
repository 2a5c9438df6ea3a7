/* collect.c — see collect.h. Names follow Prometheus conventions: counters end in
 * _total, sizes are bytes, durations seconds; one label per family at most. */
#include "collect.h"

#include <stdio.h>

static void one(struct metrics_writer *w, const char *name, const char *type, const char *help,
                uint64_t v)
{
	metrics_family(w, name, type, help);
	metrics_value(w, NULL, NULL, v);
}

static void collect_ingest(ingest *in, struct metrics_writer *w)
{
	struct ingest_stats is;
	ingest_get_stats(in, &is);
	one(w, "trackd_requests_total", "counter",
	    "client requests received (batches, status, queries)", is.requests);
	metrics_family(w, "trackd_batches_acked_total", "counter",
	               "batches acknowledged: stored in the log, or recognised as a resend");
	metrics_value(w, "result", "stored", is.batches_appended);
	metrics_value(w, "result", "duplicate", is.batches_duplicate);
	one(w, "trackd_records_acked_total", "counter",
	    "client records in batches stored and acknowledged", is.records_appended);
	metrics_family(w, "trackd_requests_rejected_total", "counter",
	               "requests refused for good (the client must not resend them), by reason");
	metrics_value(w, "reason", "unsupported_version", is.rejected_version);
	metrics_value(w, "reason", "malformed", is.rejected_malformed);
	metrics_value(w, "reason", "invalid", is.rejected_invalid);
	metrics_value(w, "reason", "too_large", is.rejected_too_large);
	metrics_value(w, "reason", "permission", is.rejected_permission);
	one(w, "trackd_append_failures_total", "counter",
	    "batches answered with a retryable error: append or fdatasync failed, or the disk "
	    "budget was reached",
	    is.append_failures);
	one(w, "trackd_internal_batches_total", "counter",
	    "batches the agent appended itself (crash marks, renames)", is.internal_batches);
	one(w, "trackd_blob_queries_total", "counter",
	    "blob queries answered (which files the agent lacks)", is.blob_queries);
	one(w, "trackd_blob_bytes_received_total", "counter",
	    "file bytes received and written to the blob store (resends and known files excluded)",
	    is.blob_bytes_received);
	one(w, "trackd_blobs_stored_total", "counter",
	    "files stored in the blob store (verified by SHA-256, durable)", is.blobs_stored);
	one(w, "trackd_blobs_known_total", "counter",
	    "files a client asked about that the store already held (not sent again)",
	    is.blobs_known);
	one(w, "trackd_blob_refusals_total", "counter",
	    "file pieces refused: a limit, the disk budget, a bad digest", is.blob_refusals);
	one(w, "trackd_queries_total", "counter", "queries answered (trackctl, the read API)",
	    is.queries);
	one(w, "trackd_clients_connected", "gauge", "client connections open now",
	    is.clients_connected);
	one(w, "trackd_listener_restarts_total", "counter",
	    "times the socket was listened on anew after it stopped accepting",
	    is.listener_restarts);
}

static void collect_log(txlog *log, struct metrics_writer *w)
{
	struct txlog_stats ts;
	txlog_stats(log, &ts);
	one(w, "trackd_log_records_appended_total", "counter",
	    "log entries appended (one per stored batch)", ts.records_appended);
	one(w, "trackd_log_bytes_appended_total", "counter",
	    "bytes appended to the log, framing included", ts.bytes_appended);
	one(w, "trackd_log_records_quarantined_total", "counter",
	    "damaged log records moved to quarantine/ at recovery", ts.records_quarantined);
	one(w, "trackd_log_bytes_quarantined_total", "counter",
	    "bytes moved to quarantine/ at recovery", ts.bytes_quarantined);
	one(w, "trackd_log_fsync_failures_total", "counter",
	    "fdatasync calls on the log that failed", ts.fsync_failures);
	one(w, "trackd_log_budget_refusals_total", "counter",
	    "appends refused because the disk budget (txlog.max_bytes) or the disk was full",
	    ts.budget_refusals);
	one(w, "trackd_log_disk_bytes", "gauge", "bytes of log segments on disk", ts.disk_bytes);
	one(w, "trackd_log_budget_bytes", "gauge",
	    "the disk budget in force (txlog.max_bytes); 0 = none", ts.max_bytes);
	one(w, "trackd_log_segments", "gauge", "log segment files on disk", ts.segments);
	one(w, "trackd_log_last_index", "gauge", "index of the newest log record", ts.last_index);
	one(w, "trackd_log_durable_index", "gauge",
	    "index of the newest log record covered by a completed fdatasync", ts.durable_index);

	struct txlog_fsync_histogram h;
	txlog_fsync_histogram(log, &h);
	double bounds[TXLOG_FSYNC_BUCKETS];
	for (size_t i = 0; i < TXLOG_FSYNC_BUCKETS; i++)
		bounds[i] = (double)txlog_fsync_bucket_us[i] / 1e6;
	metrics_histogram(w, "trackd_log_fsync_duration_seconds",
	                  "time of each fdatasync that makes log records durable", bounds, h.count,
	                  TXLOG_FSYNC_BUCKETS, (double)h.sum_us / 1e6);

	/* Every cursor, registered or left on disk: each holds segments back. */
	struct txlog_cursor_info ci[16];
	size_t n = txlog_cursors_info(log, ci, 16);
	if (n > 16)
		n = 16;
	metrics_family(w, "trackd_sink_backlog_records", "gauge",
	               "log records past the sink's durable cursor (not yet delivered for good)");
	for (size_t i = 0; i < n; i++)
		metrics_value(w, "sink", ci[i].name, ci[i].records_behind);
	metrics_family(w, "trackd_sink_backlog_bytes", "gauge",
	               "bytes of log segments the sink's durable cursor keeps on disk");
	for (size_t i = 0; i < n; i++)
		metrics_value(w, "sink", ci[i].name, ci[i].bytes_behind);
	metrics_family(w, "trackd_sink_cursor_index", "gauge",
	               "the sink's durable cursor: everything up to this log index is delivered");
	for (size_t i = 0; i < n; i++)
		metrics_value(w, "sink", ci[i].name, ci[i].position);
}

static void collect_local(local_sink *ls, struct metrics_writer *w)
{
	struct local_sink_stats st;
	local_sink_get_stats(ls, &st);
	one(w, "trackd_runs_running", "gauge", "runs in state running", st.runs_active);
	metrics_family(w, "trackd_runs_ended_total", "counter",
	               "runs that ended since the agent started, by final state");
	metrics_value(w, "state", "finished", st.runs_finished);
	metrics_value(w, "state", "failed", st.runs_failed);
	metrics_value(w, "state", "crashed", st.runs_crashed);
	metrics_value(w, "state", "killed", st.runs_killed);
	one(w, "trackd_local_records_applied_total", "counter",
	    "records the local sink applied to runs", st.records_applied);
	one(w, "trackd_local_records_orphaned_total", "counter",
	    "log records the local sink could not apply (undecodable, or the agent's own for "
	    "an unknown run), skipped",
	    st.records_orphaned);
	one(w, "trackd_local_runs_recovered_total", "counter",
	    "runs whose start record was gone from the log, kept in project " RECOVERED_PROJECT,
	    st.runs_recovered);
	one(w, "trackd_local_rows_rejected_total", "counter",
	    "history rows dropped because their step went backwards", st.rows_rejected);
	one(w, "trackd_local_crashes_detected_total", "counter",
	    "client processes found gone without finishing", st.crashes_detected);
	one(w, "trackd_local_write_errors_total", "counter",
	    "failed writes of run files by the local sink", st.write_errors);
}

static void collect_sampler(sysmetrics *sm, struct metrics_writer *w)
{
	struct sysmetrics_stats st;
	sysmetrics_get_stats(sm, &st);
	one(w, "trackd_sysmetrics_passes_total", "counter",
	    "system-metrics passes that sampled at least one run (one serves every live run)",
	    st.passes);
	one(w, "trackd_sysmetrics_samples_total", "counter",
	    "system-metrics samples written into the log (one per live run and pass)", st.samples);
	one(w, "trackd_sysmetrics_submit_failures_total", "counter",
	    "samples the agent could not append (it was stopping, or out of memory)",
	    st.submit_failures);
	one(w, "trackd_sysmetrics_source_failures_total", "counter",
	    "metric sources turned off after failing (NVML missing, a GPU lost, a /proc file "
	    "unreadable), each logged once",
	    st.source_failures);
	one(w, "trackd_sysmetrics_cpu_microseconds_total", "counter",
	    "CPU time the sampler's passes took (its thread's CPU clock)", st.cpu_us);
	one(w, "trackd_sysmetrics_gpus", "gauge", "GPUs NVML reported at start", st.gpus);
}

static void collect_wandb(wandb_sink *ws, struct metrics_writer *w)
{
	struct wandb_sink_stats st;
	wandb_sink_get_stats(ws, &st);
	metrics_family(w, "trackd_wandb_requests_total", "counter",
	               "requests to the W&B backend by outcome (failed ones are retried or park "
	               "their run)");
	metrics_value(w, "result", "ok", st.requests_ok);
	metrics_value(w, "result", "failed", st.requests_failed);
	metrics_family(w, "trackd_wandb_runs", "gauge",
	               "runs held by the wandb sink, by upload state");
	metrics_value(w, "state", "uploading", st.runs_uploading);
	metrics_value(w, "state", "retrying", st.runs_retrying);
	metrics_value(w, "state", "parked", st.runs_parked);
	one(w, "trackd_wandb_bytes_sent_total", "counter", "request bytes sent to the W&B backend",
	    st.bytes_sent);
	one(w, "trackd_wandb_lines_skipped_total", "counter",
	    "history or console lines too long to upload, skipped", st.lines_skipped);
	one(w, "trackd_wandb_buffered_bytes", "gauge",
	    "bytes of lines waiting for the backend's acknowledgement", st.buffered_bytes);
	one(w, "trackd_wandb_files_uploaded_total", "counter",
	    "run files (media, saved, config.yaml, wandb-summary.json) uploaded",
	    st.files_uploaded);
	one(w, "trackd_wandb_files_failed_total", "counter",
	    "run files given up (a permanent answer, or their content gone)", st.files_failed);
	one(w, "trackd_wandb_file_bytes_sent_total", "counter", "bytes of run files uploaded",
	    st.file_bytes_sent);
}

void collect_metrics(const struct collect_sources *src, struct metrics_writer *w)
{
	metrics_family(w, "trackd_build_info", "gauge", "the agent's version (value always 1)");
	metrics_value(w, "version", src->version, 1);
	metrics_family(w, "trackd_config_reloads_total", "counter",
	               "SIGHUP reloads: applied, or rejected as a whole (the running configuration "
	               "stays)");
	metrics_value(w, "result", "applied", src->reloads_applied);
	metrics_value(w, "result", "rejected", src->reloads_rejected);
	if (src->in)
		collect_ingest(src->in, w);
	if (src->log)
		collect_log(src->log, w);
	if (src->local)
		collect_local(src->local, w);
	if (src->wandb)
		collect_wandb(src->wandb, w);
	if (src->sampler)
		collect_sampler(src->sampler, w);
}
