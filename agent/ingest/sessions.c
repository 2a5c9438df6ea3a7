#include "sessions.h"

#include "errors.h"
#include "lru.h"

#include <stdlib.h>

/* The dedupe table is an LRU map from the 16-byte session id to the highest
 * appended seq. */
struct sessions {
	lru *map;
};

int sessions_new(size_t capacity, sessions **out)
{
	sessions *s = malloc(sizeof *s);
	if (!s)
		return TRACKD_ENOMEM;
	int rv = lru_new(capacity, &s->map);
	if (rv) {
		free(s);
		return rv;
	}
	*out = s;
	return TRACKD_OK;
}

void sessions_free(sessions *s)
{
	if (!s)
		return;
	lru_free(s->map);
	free(s);
}

uint64_t sessions_highest(sessions *s, const uint8_t id[16])
{
	uint64_t seq;
	return lru_get(s->map, id, 16, &seq) ? seq : 0;
}

int sessions_record(sessions *s, const uint8_t id[16], uint64_t seq)
{
	uint64_t cur;
	if (lru_get(s->map, id, 16, &cur) && cur >= seq)
		return TRACKD_OK;
	return lru_put(s->map, id, 16, seq);
}

void sessions_restore(sessions *s, const uint8_t id[16], uint64_t seq)
{
	if (seq == 0)
		lru_remove(s->map, id, 16);
	else
		lru_put(s->map, id, 16, seq);
}

size_t sessions_count(const sessions *s)
{
	return lru_count(s->map);
}

uint64_t sessions_evicted(const sessions *s)
{
	return lru_evicted(s->map);
}
