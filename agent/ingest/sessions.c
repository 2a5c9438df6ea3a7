#include "sessions.h"

#include "errors.h"

#include <stdlib.h>
#include <string.h>

/* Chained hash table plus an intrusive LRU list. Entries are allocated one by
 * one but never more than `capacity` at a time. */
struct entry {
	uint8_t id[16];
	uint64_t seq;
	struct entry *next_in_bucket;
	struct entry *lru_prev, *lru_next; /* head = most recent */
};

struct sessions {
	struct entry **buckets;
	size_t nbuckets; /* power of two */
	size_t count, capacity;
	uint64_t evicted;
	struct entry *lru_head, *lru_tail;
};

static size_t bucket_of(const sessions *s, const uint8_t id[16])
{
	/* Session ids are random bytes: any 8 of them are a good hash. */
	uint64_t h;
	memcpy(&h, id, 8);
	return (size_t)(h & (s->nbuckets - 1));
}

int sessions_new(size_t capacity, sessions **out)
{
	sessions *s = calloc(1, sizeof *s);
	if (!s)
		return TRACKD_ENOMEM;
	s->nbuckets = 16;
	while (s->nbuckets < capacity)
		s->nbuckets <<= 1;
	s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
	if (!s->buckets) {
		free(s);
		return TRACKD_ENOMEM;
	}
	s->capacity = capacity;
	*out = s;
	return TRACKD_OK;
}

void sessions_free(sessions *s)
{
	if (!s)
		return;
	for (struct entry *e = s->lru_head, *n; e; e = n) {
		n = e->lru_next;
		free(e);
	}
	free(s->buckets);
	free(s);
}

static void lru_unlink(sessions *s, struct entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		s->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		s->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(sessions *s, struct entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = s->lru_head;
	if (s->lru_head)
		s->lru_head->lru_prev = e;
	s->lru_head = e;
	if (!s->lru_tail)
		s->lru_tail = e;
}

static struct entry *find(sessions *s, const uint8_t id[16], struct entry ***link_out)
{
	struct entry **link = &s->buckets[bucket_of(s, id)];
	for (; *link; link = &(*link)->next_in_bucket) {
		if (memcmp((*link)->id, id, 16) == 0) {
			if (link_out)
				*link_out = link;
			return *link;
		}
	}
	return NULL;
}

static void remove_entry(sessions *s, struct entry *e)
{
	struct entry **link;
	if (find(s, e->id, &link) == e)
		*link = e->next_in_bucket;
	lru_unlink(s, e);
	s->count--;
	free(e);
}

uint64_t sessions_highest(sessions *s, const uint8_t id[16])
{
	struct entry *e = find(s, id, NULL);
	if (!e)
		return 0;
	lru_unlink(s, e);
	lru_push_front(s, e);
	return e->seq;
}

int sessions_record(sessions *s, const uint8_t id[16], uint64_t seq)
{
	struct entry *e = find(s, id, NULL);
	if (e) {
		if (seq > e->seq)
			e->seq = seq;
		lru_unlink(s, e);
		lru_push_front(s, e);
		return TRACKD_OK;
	}
	if (s->count >= s->capacity) {
		remove_entry(s, s->lru_tail);
		s->evicted++;
	}
	e = calloc(1, sizeof *e);
	if (!e)
		return TRACKD_ENOMEM;
	memcpy(e->id, id, 16);
	e->seq = seq;
	size_t b = bucket_of(s, id);
	e->next_in_bucket = s->buckets[b];
	s->buckets[b] = e;
	lru_push_front(s, e);
	s->count++;
	return TRACKD_OK;
}

void sessions_restore(sessions *s, const uint8_t id[16], uint64_t seq)
{
	struct entry *e = find(s, id, NULL);
	if (!e) {
		if (seq)
			sessions_record(s, id, seq);
		return;
	}
	if (seq == 0)
		remove_entry(s, e);
	else
		e->seq = seq;
}

size_t sessions_count(const sessions *s)
{
	return s->count;
}

uint64_t sessions_evicted(const sessions *s)
{
	return s->evicted;
}
