/*
 * system.h — trackctl's view of a run's system metrics (issue #15): the
 * events stream (events.jsonl in the local store, W&B's wandb-events.jsonl
 * lines), read page by page with HistoryRequest{stream: "events"} and parsed
 * with json-c.
 *
 *   cli_print_events   `trackctl history RUN --stream events`: the lines as
 *                      JSON Lines (jsonl) or CSV (the union of keys, in order
 *                      of first appearance, at most SYSTEM_MAX_COLUMNS)
 *   cli_print_system   the System section of `trackctl show`: one sparkline
 *                      per CPU, memory and GPU key, with its last value
 *   cli_print_environment  its Environment section (wandb-metadata.json)
 *
 * Both return 0, or 1 after printing why on stderr. Memory: every sample of
 * the shown keys is held (a day at the 15 s default is 5760 per key), at most
 * SYSTEM_MAX_SAMPLES per key (later ones are not drawn).
 */
#ifndef TRACKD_CLI_SYSTEM_H
#define TRACKD_CLI_SYSTEM_H

#include "agent_client.h"

#include <stdbool.h>
#include <stdio.h>

#define SYSTEM_MAX_SAMPLES (1u << 20)
#define SYSTEM_MAX_COLUMNS 4096

int cli_print_events(agent_client *agent, const char *run, bool csv, FILE *out);
int cli_print_system(agent_client *agent, const char *run, FILE *out);
/* The Environment section of `trackctl show`: the run's wandb-metadata.json
 * (HistoryRequest{stream: "metadata"}); nothing when the run has none. */
int cli_print_environment(agent_client *agent, const char *run, FILE *out);

#endif
