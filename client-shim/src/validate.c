/*
 * validate.c — checks records against the limits in force (struct tdi_limits:
 * limits.h's defaults, lowered to the agent's own once an ack told them) before
 * they are buffered, so a record the agent would refuse never takes a batch of
 * good ones down with it. Runs without the run's lock; reads borrowed items only.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "validate.h"
#include "error.h"
#include "run.h"
#include "utf8.h"

const struct tdi_limits tdi_default_limits = {
    .message_bytes = TRACKD_DEFAULT_MAX_MESSAGE_BYTES,
    .records_per_batch = TRACKD_DEFAULT_MAX_RECORDS_PER_BATCH,
    .items_per_record = TRACKD_DEFAULT_MAX_ITEMS_PER_RECORD,
    .key_bytes = TRACKD_DEFAULT_MAX_KEY_BYTES,
    .string_bytes = TRACKD_DEFAULT_MAX_STRING_BYTES,
    .nesting_depth = TRACKD_DEFAULT_MAX_NESTING_DEPTH,
    .list_length = TRACKD_DEFAULT_MAX_LIST_LENGTH,
};

void tdi_limits_load(struct td_run *run, struct tdi_limits *out)
{
	uint64_t v[TDI_N_LIMITS];

	for (size_t i = 0; i < TDI_N_LIMITS; i++)
		v[i] = atomic_load_explicit(&run->limits[i], memory_order_relaxed);
	*out = (struct tdi_limits){v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
}

static uint64_t smaller(uint64_t def, bool has, uint64_t agent)
{
	return has && agent > 0 && agent < def ? agent : def;
}

void tdi_limits_learn(struct td_run *run, const Trackd__V1__Limits *a)
{
	const struct tdi_limits *d = &tdi_default_limits;
	uint64_t v[TDI_N_LIMITS] = {
	    smaller(d->message_bytes, a->has_max_message_bytes, a->max_message_bytes),
	    smaller(d->records_per_batch, a->has_max_records_per_batch, a->max_records_per_batch),
	    smaller(d->items_per_record, a->has_max_items_per_record, a->max_items_per_record),
	    smaller(d->key_bytes, a->has_max_key_bytes, a->max_key_bytes),
	    smaller(d->string_bytes, a->has_max_string_bytes, a->max_string_bytes),
	    smaller(d->nesting_depth, a->has_max_nesting_depth, a->max_nesting_depth),
	    smaller(d->list_length, a->has_max_list_length, a->max_list_length),
	};
	/* A request needs room for its envelope and one small record. */
	if (v[0] < TDI_ENVELOPE_MAX + 64)
		v[0] = TDI_ENVELOPE_MAX + 64;
	for (size_t i = 0; i < TDI_N_LIMITS; i++)
		atomic_store_explicit(&run->limits[i], v[i], memory_order_relaxed);
}

void tdi_limits_learn_hook(void *run, const Trackd__V1__Limits *agent)
{
	tdi_limits_learn(run, agent);
}

int tdi_check_text(const char *what, const char *s, size_t max, bool non_empty)
{
	if (s == NULL)
		return TD_OK;
	size_t len = strnlen(s, max + 1);
	if (non_empty && len == 0)
		return tdi_fail(TD_ERR_INVALID, "%s: empty", what);
	if (len > max)
		return tdi_fail(TD_ERR_INVALID, "%s: longer than %zu bytes", what, max);
	if (!utf8_valid(s, len))
		return tdi_fail(TD_ERR_INVALID, "%s: not valid UTF-8", what);
	return TD_OK;
}

/* Where the walk is, so an error can name the offending item as a path of
 * keys ("opt"."lr"), list positions ("betas"[1]) or, for a key that cannot be
 * printed, its index (#3). */
struct item_walk {
	const struct tdi_limits *lim;
	const char *what;
	struct tdi_item_count count;
	unsigned depth; /* 1 = top level */
	const td_item *path[TRACKD_DEFAULT_MAX_NESTING_DEPTH + 1];
	size_t index[TRACKD_DEFAULT_MAX_NESTING_DEPTH + 1];
	bool in_list[TRACKD_DEFAULT_MAX_NESTING_DEPTH + 1];
};

static int walk_fail(const struct item_walk *w, const char *problem)
{
	char where[160];
	size_t off = 0;

	where[0] = '\0';
	for (unsigned l = 0; l < w->depth && off < sizeof(where); l++) {
		/* A list element's key is never read: the API says it is ignored. */
		const char *key = w->in_list[l] ? NULL : w->path[l]->key;
		size_t klen = key ? strnlen(key, w->lim->key_bytes + 1) : 0;
		const char *sep = l ? "." : "";
		int r;

		/* The failing item's own key may be the problem; parents' keys
		 * were checked on the way down. */
		if (w->in_list[l])
			r = snprintf(where + off, sizeof(where) - off, "[%zu]", w->index[l]);
		else if (klen > 0 && klen <= 40 && utf8_valid(key, klen))
			r = snprintf(where + off, sizeof(where) - off, "%s\"%s\"", sep, key);
		else
			r = snprintf(where + off, sizeof(where) - off, "%s#%zu", sep, w->index[l]);
		if (r < 0)
			break;
		off += (size_t)r;
	}
	return tdi_fail(TD_ERR_INVALID, "%s: item %s: %s", w->what, where, problem);
}

static int walk_items(struct item_walk *w, const td_item *items, size_t n, bool list);

/* A map's items or a list's elements one level down: both count a level, and
 * an empty one costs none (as at the agent, whose levels are the items). */
static int walk_nested(struct item_walk *w, const td_item *items, size_t n, bool list)
{
	char problem[96];

	if (n > 0 && items == NULL)
		return walk_fail(w, list ? "list items are NULL" : "map items are NULL");
	if (list && n > w->lim->list_length) {
		snprintf(problem, sizeof(problem), "list of %zu elements, limit %llu", n,
		         (unsigned long long)w->lim->list_length);
		return walk_fail(w, problem);
	}
	if (n > 0 && w->depth >= w->lim->nesting_depth) {
		snprintf(problem, sizeof(problem), "nesting depth exceeds %llu",
		         (unsigned long long)w->lim->nesting_depth);
		return walk_fail(w, problem);
	}
	if (list)
		w->count.lists++;
	else
		w->count.maps++;
	return walk_items(w, items, n, list);
}

static int walk_items(struct item_walk *w, const td_item *items, size_t n, bool list)
{
	char problem[96];

	if (n > 0 && items == NULL)
		return tdi_fail(TD_ERR_INVALID, "%s: NULL items with count %zu", w->what, n);
	if (n > w->lim->items_per_record - w->count.items) {
		return tdi_fail(TD_ERR_INVALID,
		                "%s: more than %llu items in one record (nested items and list "
		                "elements included)",
		                w->what, (unsigned long long)w->lim->items_per_record);
	}
	w->count.items += n;
	w->depth++;
	for (size_t i = 0; i < n; i++) {
		const td_item *it = &items[i];
		size_t len;
		int rc;

		w->path[w->depth - 1] = it;
		w->index[w->depth - 1] = i;
		w->in_list[w->depth - 1] = list;
		if (list) {
			/* Elements have no key. */
		} else if (it->key == NULL) {
			return walk_fail(w, "key is NULL");
		} else if ((len = strnlen(it->key, w->lim->key_bytes + 1)) == 0) {
			return walk_fail(w, "key is empty");
		} else if (len > w->lim->key_bytes) {
			snprintf(problem, sizeof(problem), "key is longer than %llu bytes",
			         (unsigned long long)w->lim->key_bytes);
			return walk_fail(w, problem);
		} else if (!utf8_valid(it->key, len)) {
			return walk_fail(w, "key is not valid UTF-8");
		}
		switch (it->type) {
		case TD_DOUBLE:
		case TD_INT:
		case TD_BOOL:
		case TD_NULL: break;
		case TD_STRING:
			if (it->v.s == NULL)
				return walk_fail(w, "string value is NULL");
			len = strnlen(it->v.s, w->lim->string_bytes + 1);
			if (len > w->lim->string_bytes) {
				snprintf(problem, sizeof(problem),
				         "string value is longer than %llu bytes",
				         (unsigned long long)w->lim->string_bytes);
				return walk_fail(w, problem);
			}
			if (!utf8_valid(it->v.s, len))
				return walk_fail(w, "string value is not valid UTF-8");
			break;
		case TD_MAP:
			if ((rc = walk_nested(w, it->v.map.items, it->v.map.n, false)) != TD_OK)
				return rc;
			break;
		case TD_LIST:
			if ((rc = walk_nested(w, it->v.list.items, it->v.list.n, true)) != TD_OK)
				return rc;
			break;
		default:
			snprintf(problem, sizeof(problem), "unknown type %d", (int)it->type);
			return walk_fail(w, problem);
		}
	}
	w->depth--;
	return TD_OK;
}

int tdi_check_items(const struct tdi_limits *lim, const char *what, const td_item *items, size_t n,
                    struct tdi_item_count *count)
{
	struct item_walk w = {.lim = lim, .what = what};
	int rc = walk_items(&w, items, n, false);

	if (rc == TD_OK)
		*count = w.count;
	return rc;
}
