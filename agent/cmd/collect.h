/*
 * collect.h — the agent's counters as Prometheus families (agent/metrics): the
 * same sources `trackctl status` reads (ingest, txlog, local and wandb sinks;
 * and the system-metrics sampler),
 * read without blocking any of them beyond their own short stats locks.
 * Any stage pointer may be NULL (starting, stopping, or the wandb sink off):
 * its families are then left out. Runs on the metrics server thread.
 */
#ifndef TRACKD_CMD_COLLECT_H
#define TRACKD_CMD_COLLECT_H

#include "ingest.h"
#include "local_sink.h"
#include "metrics.h"
#include "sysmetrics.h"
#include "txlog.h"
#include "wandb_sink.h"

struct collect_sources {
	const char *version;
	ingest *in;
	txlog *log;
	local_sink *local;
	wandb_sink *wandb;
	sysmetrics *sampler;
	uint64_t reloads_applied, reloads_rejected;
};

void collect_metrics(const struct collect_sources *src, struct metrics_writer *w);

#endif
