#include "lru.h"

#include "errors.h"
#include "hash.h"

#include <stdlib.h>
#include <string.h>

/* Chained hash table plus an intrusive recency list. Entries are allocated one
 * by one but never more than `capacity` at a time. */
struct entry {
	uint8_t key[LRU_MAX_KEY];
	uint8_t klen;
	uint64_t value;
	struct entry *next_in_bucket;
	struct entry *prev, *next; /* recency: head = most recent */
};

struct lru {
	struct entry **buckets;
	size_t nbuckets; /* power of two */
	size_t count, capacity;
	uint64_t evicted;
	struct entry *head, *tail;
};

static size_t bucket_of(const lru *l, const void *key, size_t klen)
{
	return (size_t)(hash_fnv1a64(key, klen) & (l->nbuckets - 1));
}

int lru_new(size_t capacity, lru **out)
{
	lru *l = calloc(1, sizeof *l);
	if (!l)
		return TRACKD_ENOMEM;
	l->nbuckets = 16;
	while (l->nbuckets < capacity)
		l->nbuckets <<= 1;
	l->buckets = calloc(l->nbuckets, sizeof *l->buckets);
	if (!l->buckets) {
		free(l);
		return TRACKD_ENOMEM;
	}
	l->capacity = capacity ? capacity : 1;
	*out = l;
	return TRACKD_OK;
}

void lru_free(lru *l)
{
	if (!l)
		return;
	for (struct entry *e = l->head, *n; e; e = n) {
		n = e->next;
		free(e);
	}
	free(l->buckets);
	free(l);
}

static void unlink_recency(lru *l, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail = e->prev;
	e->prev = e->next = NULL;
}

static void push_front(lru *l, struct entry *e)
{
	e->prev = NULL;
	e->next = l->head;
	if (l->head)
		l->head->prev = e;
	l->head = e;
	if (!l->tail)
		l->tail = e;
}

static struct entry **find_link(lru *l, const void *key, size_t klen)
{
	struct entry **link = &l->buckets[bucket_of(l, key, klen)];
	for (; *link; link = &(*link)->next_in_bucket)
		if ((*link)->klen == klen && memcmp((*link)->key, key, klen) == 0)
			return link;
	return link;
}

bool lru_get(lru *l, const void *key, size_t klen, uint64_t *value)
{
	if (klen > LRU_MAX_KEY)
		return false;
	struct entry *e = *find_link(l, key, klen);
	if (!e)
		return false;
	unlink_recency(l, e);
	push_front(l, e);
	*value = e->value;
	return true;
}

void lru_remove(lru *l, const void *key, size_t klen)
{
	if (klen > LRU_MAX_KEY)
		return;
	struct entry **link = find_link(l, key, klen);
	struct entry *e = *link;
	if (!e)
		return;
	*link = e->next_in_bucket;
	unlink_recency(l, e);
	l->count--;
	free(e);
}

int lru_put(lru *l, const void *key, size_t klen, uint64_t value)
{
	if (klen > LRU_MAX_KEY)
		return TRACKD_EINVAL;
	struct entry *e = *find_link(l, key, klen);
	if (e) {
		e->value = value;
		unlink_recency(l, e);
		push_front(l, e);
		return TRACKD_OK;
	}
	if (l->count >= l->capacity) {
		lru_remove(l, l->tail->key, l->tail->klen);
		l->evicted++;
	}
	e = calloc(1, sizeof *e);
	if (!e)
		return TRACKD_ENOMEM;
	memcpy(e->key, key, klen);
	e->klen = (uint8_t)klen;
	e->value = value;
	size_t b = bucket_of(l, key, klen);
	e->next_in_bucket = l->buckets[b];
	l->buckets[b] = e;
	push_front(l, e);
	l->count++;
	return TRACKD_OK;
}

size_t lru_count(const lru *l)
{
	return l->count;
}

uint64_t lru_evicted(const lru *l)
{
	return l->evicted;
}
