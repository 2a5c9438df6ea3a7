#include "owners.h"

#include "errors.h"

#include "trackd/v1/limits.h"

#include <stdlib.h>
#include <string.h>

/* Open addressing with linear probing; ids live in one arena as a length byte
 * and the bytes. Nothing is ever removed, so no tombstones are needed. */
struct slot {
	uint64_t hash; /* 0: empty */
	uint32_t off;  /* of the id in the arena */
	uint32_t uid;
};

struct run_owners {
	struct slot *slots;
	size_t nslots; /* power of two, at least twice count */
	size_t count, max;
	uint8_t *arena;
	size_t arena_len, arena_cap;
	uint64_t refused;
};

#define FIRST_SLOTS 1024

static uint64_t hash_of(const void *id, size_t len)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ ((const uint8_t *)id)[i]) * 1099511628211ull;
	return h ? h : 1;
}

int run_owners_new(size_t max_runs, run_owners **out)
{
	if (max_runs == 0 || max_runs > (size_t)OWNERS_MAX_RUNS * 16)
		return TRACKD_EINVAL;
	run_owners *o = calloc(1, sizeof *o);
	if (!o)
		return TRACKD_ENOMEM;
	o->slots = calloc(FIRST_SLOTS, sizeof *o->slots);
	if (!o->slots) {
		free(o);
		return TRACKD_ENOMEM;
	}
	o->nslots = FIRST_SLOTS;
	o->max = max_runs;
	*out = o;
	return TRACKD_OK;
}

void run_owners_free(run_owners *o)
{
	if (!o)
		return;
	free(o->slots);
	free(o->arena);
	free(o);
}

/* The slot holding `id`, or the empty slot where it would go. */
static struct slot *find(const run_owners *o, const void *id, size_t len, uint64_t h)
{
	size_t mask = o->nslots - 1;
	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		struct slot *s = &o->slots[i];
		if (s->hash == 0)
			return s;
		if (s->hash == h && o->arena[s->off] == len &&
		    memcmp(o->arena + s->off + 1, id, len) == 0)
			return s;
	}
}

bool run_owners_get(const run_owners *o, const void *id, size_t len, uint32_t *uid)
{
	if (len == 0 || len > TRACKD_MAX_RUN_ID_BYTES)
		return false;
	const struct slot *s = find(o, id, len, hash_of(id, len));
	if (s->hash == 0)
		return false;
	*uid = s->uid;
	return true;
}

static int grow_slots(run_owners *o)
{
	size_t n = o->nslots * 2;
	struct slot *old = o->slots, *fresh = calloc(n, sizeof *fresh);
	if (!fresh)
		return TRACKD_ENOMEM;
	for (size_t i = 0; i < o->nslots; i++) {
		if (old[i].hash == 0)
			continue;
		size_t j = (size_t)old[i].hash & (n - 1);
		while (fresh[j].hash != 0)
			j = (j + 1) & (n - 1);
		fresh[j] = old[i];
	}
	o->slots = fresh;
	o->nslots = n;
	free(old);
	return TRACKD_OK;
}

static int reserve_arena(run_owners *o, size_t more)
{
	if (o->arena_len + more <= o->arena_cap)
		return TRACKD_OK;
	size_t cap = o->arena_cap ? o->arena_cap * 2 : 16384;
	while (cap < o->arena_len + more)
		cap *= 2;
	uint8_t *p = realloc(o->arena, cap);
	if (!p)
		return TRACKD_ENOMEM;
	o->arena = p;
	o->arena_cap = cap;
	return TRACKD_OK;
}

int run_owners_note(run_owners *o, const void *id, size_t len, uint32_t uid)
{
	if (len == 0 || len > TRACKD_MAX_RUN_ID_BYTES)
		return TRACKD_EINVAL;
	uint64_t h = hash_of(id, len);
	struct slot *s = find(o, id, len, h);
	if (s->hash != 0)
		return TRACKD_OK; /* the first note wins */
	if (o->count >= o->max) {
		o->refused++;
		return TRACKD_ETOOBIG;
	}
	int rv = reserve_arena(o, len + 1);
	if (rv)
		return rv;
	if ((o->count + 1) * 2 > o->nslots) {
		if ((rv = grow_slots(o)) != 0)
			return rv;
		s = find(o, id, len, h);
	}
	s->hash = h;
	s->off = (uint32_t)o->arena_len;
	s->uid = uid;
	o->arena[o->arena_len] = (uint8_t)len;
	memcpy(o->arena + o->arena_len + 1, id, len);
	o->arena_len += len + 1;
	o->count++;
	return TRACKD_OK;
}

size_t run_owners_count(const run_owners *o)
{
	return o->count;
}

size_t run_owners_max(const run_owners *o)
{
	return o->max;
}

uint64_t run_owners_refused(const run_owners *o)
{
	return o->refused;
}
