/* Private to the local sink's folder: the names of the local store's files.
 * The writer (local_sink.c, query.c) and the reader library (local_store.c)
 * include it; any other module reads the store through local_store.h only. */
#ifndef TRACKD_SINKS_LOCAL_STORE_LAYOUT_H
#define TRACKD_SINKS_LOCAL_STORE_LAYOUT_H

#include "local_store.h"

#define RUNS_SUBDIR      "runs"
#define HISTORY_FILE     "history.jsonl"
#define CONSOLE_FILE     "output.log"
#define EVENTS_FILE      "events.jsonl"
#define ENVIRONMENT_FILE "wandb-metadata.json"
/* The client's own process facts (RunEnvironment), kept so that they win over
 * the agent's whichever of the two records comes first. */
#define CLIENT_ENV_FILE    "client-environment.json"
#define SUMMARY_FILE       "summary.json"
#define CONFIG_FILE        "config.yaml"
#define METADATA_FILE      "metadata.json"
#define RUN_FILES_SUBDIR   "files"       /* media and saved files, W&B's layout */
#define RUN_FILES_MANIFEST "files.jsonl" /* one line per file materialised */
/* One line per artifact version the run logged or used (the run's side of
 * the lineage; the versions' side is in the artifact store). */
#define ARTIFACTS_NOTE_FILE "artifacts.jsonl"
#define SNAPSHOT_FILE       ".snapshot"
#define SNAPSHOT_MAX_BYTES  LOCAL_STORE_SNAPSHOT_MAX_BYTES

#endif
