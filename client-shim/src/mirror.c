/*
 * mirror.c — what this process logged, kept small, for the footer printed at
 * td_finish: a bounded sample of every top-level numeric history key and a
 * mirror of the run summary.
 *
 * The summary follows the agent's rules (agent/runs/run.h) so the footer shows
 * what the agent stores: values are merged per step (commit = false rows
 * accumulate, a later value of a key in the same step wins) and summarised when
 * the step is committed: last value by default; define_metric min / max (NaN
 * and strings and bools replace; maps, lists and null are ignored), mean (of
 * the numbers), none (kept out); an explicit
 * summary update sets the value, and a later row overrides it again. Only
 * top-level keys are kept; keys starting with '_' are the agent's own. (One
 * shortcut: a committed row with no pending step before it is summarised item
 * by item, so a key repeated inside one row counts twice for a mean.)
 *
 * History samples: each numeric key keeps a uniform random sample of at most
 * FOOTER_SAMPLE_MAX (step, value) pairs, drawn with Vitter's Algorithm L, the
 * reservoir method that skips ahead: once the reservoir is full, a value costs
 * an increment and a compare, and only the O(k log(n/k)) values that enter
 * the sample draw random numbers. At render time the samples are handed to
 * trackd_footer (footer_series_add keeps all of them: there are no more than
 * its own sample size), which draws the sparklines. This keeps td_log's hot
 * path at a hash probe and a few stores per key; footer_series_add on every
 * value cost more than the rest of td_log together (see log_cost).
 *
 * Threading: everything runs with the run's mu held. Memory: at most
 * MIRROR_MAX_KEYS keys (more are counted and ignored), of which at most
 * FOOTER_DEFAULT_MAX_KEYS numeric ones get a sample (about 0.8 KiB each);
 * string values are copied.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mirror.h"
#include "error.h"
#include "footer.h"
#include "hash.h"
#include "run.h"

#define MIRROR_MAX_KEYS 16384u
#define ROW_CACHE       16u /* positions whose key is remembered between rows */

enum mkind { M_NONE, M_DOUBLE, M_INT, M_BOOL, M_STRING, M_MAP };

/* A value as the summary keeps it. Strings are owned (buf, grown as needed). */
struct mvalue {
	enum mkind kind;
	union {
		double d;
		int64_t i;
		bool b;
	} v;
	char *s;
	size_t cap;
};

/* A key's history sample (Algorithm L). */
struct msample {
	int64_t step;
	double value;
};

struct mhist {
	uint64_t seen; /* values offered */
	uint64_t next; /* the value (1-based) that enters the sample next */
	double w;
	struct msample s[FOOTER_SAMPLE_MAX];
};

struct mkey {
	char *key;
	size_t len;
	uint64_t hash;
	td_metric_summary mode;
	struct mvalue summary; /* M_NONE: not in the summary */
	double sum;            /* mean */
	uint64_t count;
	struct mvalue pending; /* value in the uncommitted step */
	bool in_pending;
	struct mhist *hist; /* NULL until the first number (or over the limit) */
};

struct tdi_mirror {
	struct mkey *keys;
	size_t n, cap;
	uint32_t *slots; /* index + 1 into keys; 0 is empty */
	size_t n_slots;  /* power of two, at least twice n */
	uint32_t *pending;
	size_t n_pending, cap_pending;
	uint64_t keys_dropped;
	size_t n_hist;
	uint64_t rng;
	/* Rows tend to repeat their keys (often the very same string constants):
	 * the key at position i of the last row, verified with strcmp. */
	struct {
		const char *ptr;
		uint32_t index;
	} row_cache[ROW_CACHE];
};

/* splitmix64: fast and fully determined by the seed. */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* Uniform in (0, 1): never 0, so its log is finite. */
static double rng_open01(uint64_t *state)
{
	return ((double)(rng_next(state) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

int tdi_mirror_new(struct td_run *run)
{
	struct tdi_mirror *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return tdi_fail(TD_ERR_NOMEM, "td_init: out of memory");
	/* Seeded by the run id: the same run logs the same footer. */
	m->rng = hash_fnv1a64(run->run_id, run->run_id_len);
	run->mirror = m;
	return TD_OK;
}

static void value_free(struct mvalue *v)
{
	free(v->s);
	v->s = NULL;
	v->cap = 0;
}

void tdi_mirror_free(struct tdi_mirror *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->keys[i].key);
		value_free(&m->keys[i].summary);
		value_free(&m->keys[i].pending);
		free(m->keys[i].hist);
	}
	free(m->keys);
	free(m->slots);
	free(m->pending);
	free(m);
}

static bool rehash(struct tdi_mirror *m, size_t n_slots)
{
	uint32_t *slots = calloc(n_slots, sizeof(*slots));

	if (slots == NULL)
		return false;
	for (size_t i = 0; i < m->n; i++) {
		size_t j = m->keys[i].hash & (n_slots - 1);
		while (slots[j])
			j = (j + 1) & (n_slots - 1);
		slots[j] = (uint32_t)i + 1;
	}
	free(m->slots);
	m->slots = slots;
	m->n_slots = n_slots;
	return true;
}

/* Whether key k is `key` of length len: the lengths are known (td_log's
 * encoder measured the row's keys), so this compares words, not bytes up to
 * a NUL; the libc calls cost more than the comparison for short keys. */
static inline bool same_key(const struct mkey *k, const char *key, size_t len)
{
	if (k->len != len)
		return false;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t a, b;
		memcpy(&a, k->key + i, 8);
		memcpy(&b, key + i, 8);
		if (a != b)
			return false;
	}
	for (; i < len; i++) {
		if (k->key[i] != key[i])
			return false;
	}
	return true;
}

/* The key's state, added if new; NULL when the table is full (counted) or
 * memory is short. */
static struct mkey *lookup(struct tdi_mirror *m, const char *key, size_t len);

/* lookup() for the key at position i of a row. */
static inline struct mkey *lookup_at(struct tdi_mirror *m, size_t i, const char *key, size_t len)
{
	if (i < ROW_CACHE && m->row_cache[i].ptr == key) {
		struct mkey *k = &m->keys[m->row_cache[i].index];
		if (same_key(k, key, len))
			return k;
	}
	struct mkey *k = lookup(m, key, len);
	if (k != NULL && i < ROW_CACHE) {
		m->row_cache[i].ptr = key;
		m->row_cache[i].index = (uint32_t)(k - m->keys);
	}
	return k;
}

static struct mkey *lookup(struct tdi_mirror *m, const char *key, size_t len)
{
	uint64_t h = hash_fnv1a64(key, len);

	if (m->n_slots > 0) {
		for (size_t j = h & (m->n_slots - 1);; j = (j + 1) & (m->n_slots - 1)) {
			uint32_t s = m->slots[j];
			if (s == 0)
				break;
			struct mkey *k = &m->keys[s - 1];
			if (k->hash == h && same_key(k, key, len))
				return k;
		}
	}
	if (m->n >= MIRROR_MAX_KEYS) {
		m->keys_dropped++;
		return NULL;
	}
	if ((m->n + 1) * 2 > m->n_slots && !rehash(m, m->n_slots ? m->n_slots * 2 : 64))
		return NULL;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct mkey *keys = realloc(m->keys, cap * sizeof(*keys));
		if (keys == NULL)
			return NULL;
		m->keys = keys;
		m->cap = cap;
	}
	struct mkey *k = &m->keys[m->n];
	memset(k, 0, sizeof(*k));
	if ((k->key = malloc(len + 1)) == NULL)
		return NULL;
	memcpy(k->key, key, len);
	k->key[len] = '\0';
	k->len = len;
	k->hash = h;
	size_t j = h & (m->n_slots - 1);
	while (m->slots[j])
		j = (j + 1) & (m->n_slots - 1);
	m->slots[j] = (uint32_t)++m->n;
	return k;
}

/* Copies item's value into dst (strings into dst's own buffer). */
static inline void value_set_item(struct mvalue *dst, const td_item *it)
{
	switch (it->type) {
	case TD_DOUBLE:
		dst->kind = M_DOUBLE;
		dst->v.d = it->v.d;
		return;
	case TD_INT:
		dst->kind = M_INT;
		dst->v.i = it->v.i;
		return;
	case TD_BOOL:
		dst->kind = M_BOOL;
		dst->v.b = it->v.b;
		return;
	case TD_STRING: {
		size_t len = strlen(it->v.s);
		if (len + 1 > dst->cap) {
			char *s = realloc(dst->s, len + 1);
			if (s == NULL) {
				dst->kind = M_MAP; /* not shown rather than wrong */
				return;
			}
			dst->s = s;
			dst->cap = len + 1;
		}
		memcpy(dst->s, it->v.s, len + 1);
		dst->kind = M_STRING;
		return;
	}
	case TD_MAP:
	case TD_LIST:
	case TD_MEDIA:
	case TD_NULL: dst->kind = M_MAP; return; /* not shown, as W&B's footer */
	}
}

/* dst = src, strings copied. */
static void value_copy(struct mvalue *dst, const struct mvalue *src)
{
	if (src->kind == M_STRING) {
		td_item it = TD_S("", src->s);
		value_set_item(dst, &it);
		return;
	}
	dst->kind = src->kind;
	dst->v = src->v;
}

static bool numeric(const struct mvalue *v, double *x)
{
	if (v->kind == M_DOUBLE)
		*x = v->v.d;
	else if (v->kind == M_INT)
		*x = (double)v->v.i;
	else
		return false;
	return true;
}

static bool item_numeric(const td_item *it, double *x)
{
	if (it->type == TD_DOUBLE)
		*x = it->v.d;
	else if (it->type == TD_INT)
		*x = (double)it->v.i;
	else
		return false;
	return true;
}

/* The part of sample() that draws random numbers: a value enters the sample
 * (or the sample is being filled or set up). Out of line: it is rare. */
static __attribute__((noinline)) void sample_enter(struct tdi_mirror *m, struct mkey *k,
                                                   int64_t step, double x)
{
	struct mhist *h = k->hist;

	if (h == NULL) {
		if (m->n_hist >= FOOTER_DEFAULT_MAX_KEYS || (h = calloc(1, sizeof(*h))) == NULL)
			return;
		k->hist = h;
		m->n_hist++;
	}
	h->seen++;
	if (h->seen <= FOOTER_SAMPLE_MAX) {
		h->s[h->seen - 1] = (struct msample){step, x};
		if (h->seen < FOOTER_SAMPLE_MAX)
			return;
		h->w = exp(log(rng_open01(&m->rng)) / FOOTER_SAMPLE_MAX);
	} else {
		h->s[rng_next(&m->rng) % FOOTER_SAMPLE_MAX] = (struct msample){step, x};
		h->w *= exp(log(rng_open01(&m->rng)) / FOOTER_SAMPLE_MAX);
	}
	/* How many values to skip before the next one enters. */
	double skip = floor(log(rng_open01(&m->rng)) / log1p(-h->w));
	h->next = skip < 1e18 ? h->seen + (uint64_t)skip + 1 : UINT64_MAX;
}

/* Offers one committed value to the key's sample (Algorithm L): once the
 * sample is full, most values only count. */
static inline void sample(struct tdi_mirror *m, struct mkey *k, int64_t step, double x)
{
	struct mhist *h = k->hist;

	if (h != NULL && h->seen >= FOOTER_SAMPLE_MAX && h->seen + 1 != h->next) {
		h->seen++;
		return;
	}
	sample_enter(m, k, step, x);
}

/* The agent's summarise() (agent/runs/run.c) for one committed item. */
static void summarise_item(struct mkey *k, const td_item *it)
{
	double x, cur;

	if (k->mode == TD_SUMMARY_NONE)
		return;
	if (k->mode != TD_SUMMARY_LAST &&
	    (it->type == TD_MAP || it->type == TD_LIST || it->type == TD_NULL))
		return; /* min / max / mean of a structure means nothing: ignored */
	if (k->mode == TD_SUMMARY_LAST || !item_numeric(it, &x) || isnan(x)) {
		value_set_item(&k->summary, it);
		return;
	}
	bool have = numeric(&k->summary, &cur);
	switch (k->mode) {
	case TD_SUMMARY_MIN:
		if (!have || x < cur)
			value_set_item(&k->summary, it);
		break;
	case TD_SUMMARY_MAX:
		if (!have || x > cur)
			value_set_item(&k->summary, it);
		break;
	case TD_SUMMARY_MEAN:
		k->sum += x;
		k->count++;
		k->summary.kind = M_DOUBLE;
		k->summary.v.d = k->sum / (double)k->count;
		break;
	default: value_set_item(&k->summary, it); break;
	}
}

void tdi_mirror_row_locked(struct td_run *run, const td_item *items, size_t n, int64_t step,
                           bool commit)
{
	struct tdi_mirror *m = run->mirror;
	/* tdi_items_record_measure just measured this row: lens[i] is top-level
	 * item i (each item array is numbered before its maps' children). */
	const struct tdi_item_len *lens = run->scratch.lens;

	/* The common case, a committed row on its own: no merging needed. */
	if (commit && m->n_pending == 0) {
		for (size_t i = 0; i < n; i++) {
			const td_item *it = &items[i];
			double x;
			if (it->key[0] == '_')
				continue;
			struct mkey *k = lookup_at(m, i, it->key, lens[i].key);
			if (k == NULL)
				continue;
			summarise_item(k, it);
			/* History samples are numbers only, as wandb-core's. */
			if (item_numeric(it, &x))
				sample(m, k, step, x);
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const td_item *it = &items[i];
		if (it->key[0] == '_')
			continue;
		struct mkey *k = lookup_at(m, i, it->key, lens[i].key);
		if (k == NULL)
			continue;
		value_set_item(&k->pending, it);
		if (!k->in_pending) {
			if (m->n_pending == m->cap_pending) {
				size_t cap = m->cap_pending ? m->cap_pending * 2 : 16;
				uint32_t *p = realloc(m->pending, cap * sizeof(*p));
				if (p == NULL)
					continue;
				m->pending = p;
				m->cap_pending = cap;
			}
			m->pending[m->n_pending++] = (uint32_t)(k - m->keys);
			k->in_pending = true;
		}
	}
	if (commit)
		tdi_mirror_commit_locked(run, step);
}

/* The agent's summarise() for a merged pending value. */
static void summarise(struct mkey *k)
{
	double x, cur;

	if (k->mode == TD_SUMMARY_NONE)
		return;
	if (k->mode == TD_SUMMARY_LAST || !numeric(&k->pending, &x) || isnan(x)) {
		value_copy(&k->summary, &k->pending);
		return;
	}
	bool have = numeric(&k->summary, &cur);
	switch (k->mode) {
	case TD_SUMMARY_MIN:
		if (!have || x < cur)
			value_copy(&k->summary, &k->pending);
		break;
	case TD_SUMMARY_MAX:
		if (!have || x > cur)
			value_copy(&k->summary, &k->pending);
		break;
	case TD_SUMMARY_MEAN:
		k->sum += x;
		k->count++;
		k->summary.kind = M_DOUBLE;
		k->summary.v.d = k->sum / (double)k->count;
		break;
	default: value_copy(&k->summary, &k->pending); break;
	}
}

void tdi_mirror_commit_locked(struct td_run *run, int64_t step)
{
	struct tdi_mirror *m = run->mirror;

	for (size_t i = 0; i < m->n_pending; i++) {
		struct mkey *k = &m->keys[m->pending[i]];
		double x;

		summarise(k);
		if (numeric(&k->pending, &x))
			sample(m, k, step, x);
		k->in_pending = false;
	}
	m->n_pending = 0;
}

void tdi_mirror_summary_locked(struct td_run *run, const td_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (items[i].key[0] == '_')
			continue;
		struct mkey *k = lookup(run->mirror, items[i].key, strlen(items[i].key));
		if (k != NULL)
			value_set_item(&k->summary, &items[i]);
	}
}

void tdi_mirror_define_locked(struct td_run *run, const char *name, td_metric_summary summary)
{
	if (name[0] == '_')
		return;
	struct mkey *k = lookup(run->mirror, name, strlen(name));
	if (k != NULL)
		k->mode = summary;
}

int tdi_mirror_render_locked(struct td_run *run, const char *const *trailer, size_t n_trailer,
                             char **out, size_t *out_len)
{
	struct tdi_mirror *m = run->mirror;
	footer_summary_item *items = calloc(m->n ? m->n : 1, sizeof(*items));
	size_t n = 0;

	if (items == NULL)
		return tdi_fail(TD_ERR_NOMEM, "td_footer: out of memory");
	for (size_t i = 0; i < m->n; i++) {
		const struct mkey *k = &m->keys[i];
		footer_summary_item *it = &items[n];

		it->key = k->key;
		switch (k->summary.kind) {
		case M_DOUBLE:
			it->kind = FOOTER_DOUBLE;
			it->v.d = k->summary.v.d;
			break;
		case M_INT:
			it->kind = FOOTER_INT;
			it->v.i = k->summary.v.i;
			break;
		case M_BOOL:
			it->kind = FOOTER_BOOL;
			it->v.b = k->summary.v.b;
			break;
		case M_STRING:
			it->kind = FOOTER_STRING;
			it->v.s = k->summary.s;
			break;
		default: continue; /* nothing, or a map: W&B shows neither */
		}
		n++;
	}
	/* The samples go to a fresh series, which keeps every one of them. */
	footer_series *series = NULL;
	int rv = footer_series_new(0, m->n_hist ? m->n_hist : 1, &series);
	for (size_t i = 0; i < m->n && rv == FOOTER_OK; i++) {
		const struct mhist *h = m->keys[i].hist;
		size_t kept = h ? (h->seen < FOOTER_SAMPLE_MAX ? h->seen : FOOTER_SAMPLE_MAX) : 0;
		for (size_t j = 0; j < kept && rv == FOOTER_OK; j++)
			rv = footer_series_add(series, m->keys[i].key, h->s[j].step, h->s[j].value);
	}
	if (rv == FOOTER_OK)
		rv = footer_render(series, items, n, trailer, n_trailer, out, out_len);
	footer_series_free(series);
	free(items);
	if (rv != FOOTER_OK)
		return tdi_fail(rv == FOOTER_ENOMEM ? TD_ERR_NOMEM : TD_ERR_INVALID,
		                "td_footer: %s", footer_strerror(rv));
	return TD_OK;
}
