/*
 * lru.h — a bounded map from short byte strings (≤ LRU_MAX_KEY bytes) to a
 * uint64 value, evicting the least recently used entry when full (counted).
 * Used for the dedupe table (session id → highest seq) and run owners
 * (run id → uid). Lookups and updates are O(1).
 *
 * Not thread-safe: one owner thread.
 */
#ifndef TRACKD_CORE_LRU_H
#define TRACKD_CORE_LRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LRU_MAX_KEY 64

typedef struct lru lru;

int lru_new(size_t capacity, lru **out);
void lru_free(lru *l);

/* Finds key; marks it recently used. */
bool lru_get(lru *l, const void *key, size_t klen, uint64_t *value);
/* Adds or replaces; may evict the least recently used entry. TRACKD_EINVAL for a
 * key over LRU_MAX_KEY, TRACKD_ENOMEM. */
int lru_put(lru *l, const void *key, size_t klen, uint64_t value);
void lru_remove(lru *l, const void *key, size_t klen);

size_t lru_count(const lru *l);
uint64_t lru_evicted(const lru *l);

#endif
