/*
 * sysmetrics.h — the agent's system-metrics sampler (issue #15): one sampler
 * for the whole machine, however many runs are live, in place of W&B's monitor
 * per run plus GPU helper per service.
 *
 * Every `interval_ms` while at least one run is running, one pass reads the
 * machine once (/proc/meminfo, /proc/net/dev, /proc/diskstats, statvfs, NVML
 * for every GPU) and each live run's processes (its attached client processes
 * and their descendants: a training job's dataloader workers are children),
 * and hands one SystemStats record per live run to `submit` (ingest_submit in
 * the agent), so samples go through the transaction log like every other
 * record: durable, replayed after a crash, materialised and uploaded once.
 * Keys and units are W&B's (README "System metrics" lists them); GPU memory
 * is also attributed per run (`gpu.process.<i>.memoryAllocatedBytes`: the
 * run's own pids in the GPU's running-process list).
 *
 * Which runs are live comes from `live_runs` (the local sink's published view,
 * local_sink_live_runs: a copy taken under a lock that no checkpoint holds),
 * asked once per pass; sysmetrics_wake (the sink's live_changed) makes a run
 * that just started get its first sample at once rather than an interval
 * later, so a run shorter than the interval has one — unless it ended before
 * the local sink published it running (its start and end applied in one
 * round, well under a second): a sample after a run's end is not taken, as
 * in W&B, whose monitor samples only while the run lives.
 *
 * Counters "since the run started" (disk in/out, network) count from the raw
 * values the first pass that saw the run read (its bases). The bases go into
 * the log with that pass's sample (SystemStats.bases, again whenever one is
 * added) and the run keeps them (RunSnapshot), so a sampler in a restarted
 * agent continues from the run's own bases (sysmetrics_run.bases) rather than
 * from 0 — unless the machine rebooted since (another boot id) or a counter
 * went back, when it takes new ones. `wait_ready` (optional) is called once
 * on the sampler's thread before its first pass: the agent waits there, a
 * bounded time, for the local sink to have applied the log, so that the runs'
 * bases are known.
 *
 * Failures: a source that fails (NVML missing or failing, a GPU lost, a /proc
 * or cgroup file unreadable) stops for that source, is logged once and counted
 * (sysmetrics_stats.source_failures); the others and the agent go on. A run's
 * process that is gone is not a failure: it no longer counts.
 *
 * Threading: one thread of its own (sysmetrics_start); the pass itself
 * (sysmetrics_pass) is exposed for tests and the benchmark, and must not run
 * concurrently with the thread. Lifecycle: start → stop (wakes and joins) →
 * free. Ownership: options' strings are copied.
 */
#ifndef TRACKD_SYSMETRICS_H
#define TRACKD_SYSMETRICS_H

#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SYSMETRICS_MIN_INTERVAL_MS 1000u /* system_metrics.interval bounds */
#define SYSMETRICS_MAX_INTERVAL_MS 3600000u
#define SYSMETRICS_MAX_RUNS        4096u /* live runs sampled per pass */
#define SYSMETRICS_MAX_PIDS        64u   /* attached pids of one run */
#define SYSMETRICS_MAX_TREE        4096u /* processes of one run, descendants included */
#define SYSMETRICS_MAX_DEVICES     16u   /* block devices followed */
#define SYSMETRICS_MAX_ITEMS       1024u /* keys in one sample */
/* Processes whose /proc files stay open between passes (two descriptors
 * each); more are opened and closed every pass. */
#define SYSMETRICS_MAX_OPEN_PIDS 128u

/* Raw counters of bases kept per run: network sent/received and the in/out
 * of the two devices a run reports (state dir's, working directory's). */
#define SYSMETRICS_MAX_BASES     8u
#define SYSMETRICS_BASE_KEY      80u
#define SYSMETRICS_BOOT_ID_BYTES 40u

struct sysmetrics_base {
	char key[SYSMETRICS_BASE_KEY]; /* "network.sent", "disk.sda.in", … */
	uint64_t value;                /* bytes (network), 512-byte sectors (disk) */
};

struct sysmetrics_run {
	char id[72];
	int64_t start_time_us;
	size_t n_pids;
	int32_t pids[SYSMETRICS_MAX_PIDS];
	uint64_t start_ticks[SYSMETRICS_MAX_PIDS]; /* 0: unknown (not checked) */
	/* The working directory the run's client reported (RunEnvironment.root),
	 * "" unknown: used when /proc/<pid>/cwd cannot be read (an agent running
	 * as another user), for the run's disk.<path>.* keys. */
	char cwd[1024];
	/* The bases the run recorded earlier (SystemStats.bases), "" / 0 none. */
	char boot_id[SYSMETRICS_BOOT_ID_BYTES];
	size_t n_bases;
	struct sysmetrics_base bases[SYSMETRICS_MAX_BASES];
};

struct sysmetrics_options {
	uint32_t interval_ms;
	const char *nvml_library; /* "" = no GPU metrics */
	const char *cgroup_root;  /* the cgroup v2 mount, normally /sys/fs/cgroup */
	const char *state_dir;    /* its filesystem is reported (disk.<path>.*) */
	/* The runs running now: a malloc'd array the sampler frees. */
	int (*live_runs)(void *arg, struct sysmetrics_run **out, size_t *n);
	/* One record to append (borrowed; packed before it returns). */
	int (*submit)(void *arg, const Trackd__V1__Record *rec);
	void (*wait_ready)(void *arg); /* may be NULL */
	void *arg;
};

struct sysmetrics_stats {
	uint64_t passes;          /* passes that sampled at least one run */
	uint64_t samples;         /* records submitted */
	uint64_t submit_failures; /* records ingest refused (closing, memory) */
	uint64_t source_failures; /* sources turned off */
	uint64_t cpu_us;          /* the passes' own CPU time (thread CPU clock) */
	unsigned gpus;            /* devices NVML reported */
};

typedef struct sysmetrics sysmetrics;

/* Makes the sampler (loads NVML) without starting its thread. */
int sysmetrics_new(const struct sysmetrics_options *opts, sysmetrics **out);
/* Starts the thread. */
int sysmetrics_start(sysmetrics *sm);
/* One pass now over `runs` (tests, benchmark): submits one record per run. */
void sysmetrics_pass(sysmetrics *sm, const struct sysmetrics_run *runs, size_t n);
/* The live runs changed: a new one is sampled now. Only signals; any thread. */
void sysmetrics_wake(sysmetrics *sm);
void sysmetrics_stop(sysmetrics *sm);
void sysmetrics_free(sysmetrics *sm);
void sysmetrics_get_stats(sysmetrics *sm, struct sysmetrics_stats *out);

#endif
