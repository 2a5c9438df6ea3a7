/*
 * sessions.h — the dedupe table: highest appended seq per client session.
 *
 * A client resends a batch it has no ack for (after a timeout or reconnect), so
 * the agent sees duplicates. Rule: a batch whose seq ≤ the session's highest
 * appended seq is acknowledged and not appended again; any other seq is appended
 * and becomes the highest. (A gap — seq > highest + 1 — happens when the agent
 * forgot a session; it is accepted, not refused: the client sends in order.)
 *
 * Bounded: at most `capacity` sessions; when full, the least recently used one is
 * evicted (counted). The table is rebuilt at start-up from the log.
 *
 * Threading: not thread-safe; owned by the ingest worker (and by recovery before
 * the worker starts).
 */
#ifndef TRACKD_INGEST_SESSIONS_H
#define TRACKD_INGEST_SESSIONS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sessions sessions;

int sessions_new(size_t capacity, sessions **out);
void sessions_free(sessions *s);

/* Highest appended seq of the session, 0 if unknown. Marks it recently used. */
uint64_t sessions_highest(sessions *s, const uint8_t id[16]);

/* Records `seq` as appended for the session (keeps the maximum). Returns 0 or
 * TRACKD_ENOMEM. */
int sessions_record(sessions *s, const uint8_t id[16], uint64_t seq);

/* Sets the session's highest seq to exactly `seq` (0 removes it): used to roll
 * back appends whose fsync failed. */
void sessions_restore(sessions *s, const uint8_t id[16], uint64_t seq);

size_t sessions_count(const sessions *s);
uint64_t sessions_evicted(const sessions *s);

#endif
