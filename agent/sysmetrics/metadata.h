/*
 * metadata.h — a run's environment, W&B's wandb-metadata.json (issue #15 item
 * 2), gathered by the agent when its sampler first sees the run, so that the
 * client's init never waits for it and needs no change:
 *
 *   from the run's first process (/proc/<pid>): program, args, executable,
 *   root (working directory), startedAt, username, host, os; git (remote with
 *   credentials stripped, commit, branch) read from the files of the
 *   repository holding the working directory (common/runenv.h): no git
 *   process is spawned;
 *   from the machine: cpu_count, cpu_count_logical, cpu (model), memory.total,
 *   disk.<state dir>.total/used, gpu, gpu_count, gpu_nvidia[] (name,
 *   memoryTotal), driverVersion (NVIDIA), cudaVersion.
 *
 * Field names are W&B's where it has one. Unknown values are left out. The
 * process facts here are a fallback: an agent running as another user than
 * the run's cannot read /proc/<pid>/cwd or exe, so the client sends its own
 * (RunEnvironment, with python and git.dirty too: client-shim environment.h),
 * and the local sink lays them over these (agent/sinks/local/environment.h).
 *
 * Bounds: /proc reads are at most METADATA_MAX_FILE bytes; the
 * JSON is at most METADATA_MAX_BYTES (TRACKD_ETOOBIG beyond). Thread-safe.
 */
#ifndef TRACKD_SYSMETRICS_METADATA_H
#define TRACKD_SYSMETRICS_METADATA_H

#include "buf.h"
#include "nvml.h"

#include <stdint.h>

#define METADATA_MAX_FILE  (64u << 10)
#define METADATA_MAX_BYTES (256u << 10)

/* Appends the JSON object for the run whose first process is `pid`, started
 * at `start_time_us`; `gpu` may be NULL. */
int metadata_json(int32_t pid, int64_t start_time_us, const char *state_dir, nvml *gpu,
                  struct buf *out);

#endif
