/*
 * owners.h — the run owner index: run id → uid of the client whose record
 * first named the run. Ingest checks every batch against it on the ack path, so
 * it lives in ingest and answers from memory: no sink lock, no run directory is
 * ever read to acknowledge a batch (ARCHITECTURE.md: nothing upstream waits on
 * anything downstream).
 *
 * The rule is the local store's (agent/sinks/local/local_sink.c, route): a run
 * belongs to the uid of the first LogEntry that starts it, or — when its start
 * is lost (a `trackd-recovered` run) — of the first client record (pid > 0) that
 * names it. Later starts of the same id (resumes, another process attaching,
 * an admin appending) never change the owner: the first note wins.
 *
 * Completeness: the index is filled at start-up, before ingest serves, from
 * (1) the local store's run list (local_store.h; start-up only), which holds
 * every run whose records have been checkpointed — including runs whose log
 * segments were deleted since — and then (2) the log scan that rebuilds the
 * dedupe table (ingest_recover_record), which holds every run not yet
 * checkpointed. From then on ingest notes each appended batch. Seeding from the
 * store rather than persisting the index keeps one durable truth for ownership
 * (the store's snapshots) and adds no file format or checkpoint to the ack path;
 * its cost is one snapshot read per run, at start-up only.
 *
 * Bounds: at most `max_runs` ids (OWNERS_MAX_RUNS by default). Memory is 32 to
 * 64 bytes of table per run (16-byte slots, at most half full, doubled when
 * half full) plus the id and a length byte in an arena that doubles too: 48 MiB
 * at one million 8-character run ids (32 MiB of slots, 16 MiB of arena), 5 MiB
 * per hundred thousand — small beside the agent's other bounds — and it grows
 * with use (nothing is preallocated beyond 1024 slots). The count, not the
 * bytes, is the limit: a user reads "runs", and a machine rarely holds more
 * than 100k. At the limit a new id is not added (run_owners_note returns
 * TRACKD_ETOOBIG, counted in `refused`): ingest then refuses batches that
 * would create a run, with a retryable error naming the limit; runs already
 * known keep being served. An index that forgot owners would let any user
 * append to any forgotten run, so it refuses rather than evicts.
 *
 * Threading: not thread-safe; one owner thread (ingest's worker, or start-up
 * before it runs). Errors: trackd_err values.
 */
#ifndef TRACKD_INGEST_OWNERS_H
#define TRACKD_INGEST_OWNERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One million runs on one machine: 48 MiB at most (see above). */
#define OWNERS_MAX_RUNS (1u << 20)

typedef struct run_owners run_owners;

/* `max_runs`: 1 .. OWNERS_MAX_RUNS * 16 (the arena's offsets are 32-bit). */
int run_owners_new(size_t max_runs, run_owners **out);
void run_owners_free(run_owners *o);

/* The owner of `id` (`len` bytes, not NUL-terminated), if known. */
bool run_owners_get(const run_owners *o, const void *id, size_t len, uint32_t *uid);

/* Records `uid` as the owner of `id` unless it has one already (first wins):
 * 0 (also when it was known), TRACKD_EINVAL for an empty or over-long id
 * (TRACKD_MAX_RUN_ID_BYTES), TRACKD_ETOOBIG at max_runs, TRACKD_ENOMEM. */
int run_owners_note(run_owners *o, const void *id, size_t len, uint32_t uid);

size_t run_owners_count(const run_owners *o);
size_t run_owners_max(const run_owners *o);
uint64_t run_owners_refused(const run_owners *o); /* notes refused at max_runs */

#endif
