/*
 * environment.h — a run's wandb-metadata.json in its run dir, made of two
 * sources merged as run_metadata.h says (this file keeps them on disk): the agent's
 * RunMetadata (machine facts, and process facts read in /proc/<pid>, which an
 * agent running as another user often cannot read) and the client's
 * RunEnvironment (its own process facts). The client's program, args,
 * executable, root, python and git win over the agent's; every other key
 * (host, os, cpu, memory, disk, GPUs, username, startedAt) is only ever the
 * agent's, since RunEnvironment has no field for them.
 *
 * Either record may come first: the client's facts are kept as
 * client-environment.json beside wandb-metadata.json, and each record rewrites
 * wandb-metadata.json whole (atomically) from what is there. Applying a record
 * again (a replay) writes the same file. The git remote is stripped of
 * credentials again here: the client is not trusted to have done it.
 *
 * Bounds: the files are read at most ENVIRONMENT_MAX_BYTES. Not thread-safe
 * per run dir (the local sink's apply thread is the only writer). Errors:
 * trackd_err values (a file that cannot be written or read, ENOMEM); an
 * unparsable existing file is replaced.
 */
#ifndef TRACKD_SINKS_LOCAL_ENVIRONMENT_H
#define TRACKD_SINKS_LOCAL_ENVIRONMENT_H

#include "trackd/v1/limits.h"
#include "trackd/v1/trackd.pb-c.h"

#define ENVIRONMENT_MAX_BYTES (1u << 20)

/* The agent's RunMetadata JSON (borrowed) for the run in `dir`. */
int environment_apply_agent(const char *dir, const char *json);
/* A client's RunEnvironment (borrowed) for the run in `dir`. */
int environment_apply_client(const char *dir, const Trackd__V1__RunEnvironment *env);

/* The working directory ("root") the run's client reported, as kept in
 * `dir`'s client-environment.json: malloc'd, or NULL when there is none (no
 * file, not absolute, unreadable, out of memory). */
char *environment_client_root(const char *dir);

#endif
