/*
 * run_metadata.h — a run's wandb-metadata.json from its two sources, one rule
 * for every sink (the local store writes it, the W&B upload PUTs it):
 *   - the agent's RunMetadata JSON (agent/sysmetrics/metadata.h): machine
 *     facts, and process facts read in /proc/<pid>, which an agent running as
 *     another user often cannot read;
 *   - the client's RunEnvironment: its own process facts (program, args,
 *     executable, root, python, git), which win over the agent's.
 * Every other key (host, os, cpu, memory, disk, GPUs, username, startedAt) is
 * only ever the agent's: RunEnvironment has no field for them. The git remote
 * is stripped of credentials here: the client is not trusted to have done it.
 *
 * Bounds: RUN_METADATA_MAX_BYTES per source; a source over it, or not a JSON
 * object, counts as absent. Pure functions. Errors: TRACKD_ENOMEM.
 */
#ifndef TRACKD_RUNS_RUN_METADATA_H
#define TRACKD_RUNS_RUN_METADATA_H

#include "buf.h"

#include "trackd/v1/trackd.pb-c.h"

#define RUN_METADATA_MAX_BYTES (1u << 20)

/* The client's facts as a JSON object's text (malloc'd, into *out). */
int run_environment_json(const Trackd__V1__RunEnvironment *env, char **out);

/* wandb-metadata.json: agent_json (or {} when NULL/invalid) with the keys of
 * client_json laid over it, as one line ending in '\n', appended to out. */
int run_metadata_merge(const char *agent_json, const char *client_json, struct buf *out);

#endif
