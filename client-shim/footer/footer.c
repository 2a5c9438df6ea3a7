/* footer.c — see footer.h for the contract and the W&B rules it follows. */
#include "footer.h"

#include "buf.h"
#include "fmt.h"
#include "hash.h"
#include "utf8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers -------------------------------------------------------- */

const char *footer_strerror(int err)
{
	switch (err) {
	case FOOTER_OK: return "ok";
	case FOOTER_ENOMEM: return "out of memory";
	case FOOTER_EINVAL: return "invalid argument";
	default: return "unknown error";
	}
}

/* splitmix64: tiny, fast, good enough for sampling, and fully determined by the
 * caller's seed. */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, bound) without modulo bias (bound > 0). */
static uint64_t rng_below(uint64_t *state, uint64_t bound)
{
	uint64_t threshold = (0 - bound) % bound; /* 2^64 mod bound */
	uint64_t r;
	do
		r = rng_next(state);
	while (r < threshold);
	return r % bound;
}

/* ---- the series ----------------------------------------------------------- */

struct sample {
	int64_t step;
	uint64_t order; /* call order: ties in step keep it */
	double value;
};

struct series_key {
	char *name;
	uint64_t hash;
	uint64_t seen; /* values offered so far */
	uint32_t n;    /* values kept (≤ FOOTER_SAMPLE_MAX) */
	struct sample s[FOOTER_SAMPLE_MAX];
};

#define DROPPED_SLOTS 8192 /* hash set of dropped keys: exact count up to half */

struct footer_series {
	uint64_t rng;
	uint64_t calls;
	size_t max_keys;
	struct series_key **keys; /* [0 .. n_keys) in first-seen order */
	size_t n_keys;
	int32_t *table; /* open addressing: index into keys, -1 empty */
	size_t table_mask;
	uint64_t *dropped; /* lazily allocated hash set of dropped key hashes (0 = empty) */
	size_t n_dropped_set;
	uint64_t n_dropped; /* distinct keys dropped (lower bound past the set's load) */
};

int footer_series_new(uint64_t seed, size_t max_keys, footer_series **out)
{
	if (!out)
		return FOOTER_EINVAL;
	*out = NULL;
	if (max_keys == 0)
		max_keys = FOOTER_DEFAULT_MAX_KEYS;
	if (max_keys > FOOTER_LIMIT_MAX_KEYS)
		return FOOTER_EINVAL;
	footer_series *s = calloc(1, sizeof *s);
	if (!s)
		return FOOTER_ENOMEM;
	size_t slots = 16;
	while (slots < 2 * max_keys) /* load ≤ 1/2 keeps probes short */
		slots <<= 1;
	s->rng = seed;
	s->max_keys = max_keys;
	s->keys = calloc(max_keys, sizeof *s->keys);
	s->table = malloc(slots * sizeof *s->table);
	if (!s->keys || !s->table) {
		footer_series_free(s);
		return FOOTER_ENOMEM;
	}
	memset(s->table, 0xff, slots * sizeof *s->table);
	s->table_mask = slots - 1;
	*out = s;
	return FOOTER_OK;
}

void footer_series_free(footer_series *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_keys; i++) {
		free(s->keys[i]->name);
		free(s->keys[i]);
	}
	free(s->keys);
	free(s->table);
	free(s->dropped);
	free(s);
}

size_t footer_series_keys(const footer_series *s)
{
	return s ? s->n_keys : 0;
}

uint64_t footer_series_keys_dropped(const footer_series *s)
{
	return s ? s->n_dropped : 0;
}

/* Counts a dropped key once. The set is bounded; past half full every new miss
 * is counted without being remembered, so the count may grow for a key seen
 * before — it is documented as exact only up to DROPPED_SLOTS / 2. */
static void note_dropped(footer_series *s, uint64_t h)
{
	if (h == 0)
		h = 1; /* 0 marks an empty slot */
	if (!s->dropped) {
		s->dropped = calloc(DROPPED_SLOTS, sizeof *s->dropped);
		if (!s->dropped) {
			s->n_dropped++;
			return;
		}
	}
	if (s->n_dropped_set >= DROPPED_SLOTS / 2) {
		s->n_dropped++;
		return;
	}
	for (size_t i = h & (DROPPED_SLOTS - 1);; i = (i + 1) & (DROPPED_SLOTS - 1)) {
		if (s->dropped[i] == h)
			return;
		if (s->dropped[i] == 0) {
			s->dropped[i] = h;
			s->n_dropped_set++;
			s->n_dropped++;
			return;
		}
	}
}

static struct series_key *find_or_add_key(footer_series *s, const char *key, size_t len, int *err)
{
	uint64_t h = hash_fnv1a64(key, len);
	size_t i = h & s->table_mask;
	for (; s->table[i] >= 0; i = (i + 1) & s->table_mask) {
		struct series_key *k = s->keys[s->table[i]];
		if (k->hash == h && strcmp(k->name, key) == 0)
			return k;
	}
	if (s->n_keys >= s->max_keys || len > FOOTER_MAX_KEY_BYTES) {
		note_dropped(s, h);
		return NULL;
	}
	struct series_key *k = malloc(sizeof *k);
	char *name = malloc(len + 1);
	if (!k || !name) {
		free(k);
		free(name);
		*err = FOOTER_ENOMEM;
		return NULL;
	}
	memcpy(name, key, len + 1);
	k->name = name;
	k->hash = h;
	k->seen = 0;
	k->n = 0;
	s->table[i] = (int32_t)s->n_keys;
	s->keys[s->n_keys++] = k;
	return k;
}

int footer_series_add(footer_series *s, const char *key, int64_t step, double value)
{
	if (!s || !key || !*key)
		return FOOTER_EINVAL;
	if (key[0] == '_')
		return FOOTER_OK;
	int err = FOOTER_OK;
	struct series_key *k = find_or_add_key(s, key, strlen(key), &err);
	if (!k)
		return err;
	struct sample smp = {.step = step, .order = s->calls++, .value = value};
	/* Algorithm R: the i-th value (1-based) replaces a random slot with
	 * probability 48/i, which keeps every value equally likely to be kept. */
	k->seen++;
	if (k->n < FOOTER_SAMPLE_MAX) {
		k->s[k->n++] = smp;
	} else {
		uint64_t j = rng_below(&s->rng, k->seen);
		if (j < FOOTER_SAMPLE_MAX)
			k->s[j] = smp;
	}
	return FOOTER_OK;
}

/* ---- sparkline ------------------------------------------------------------ */

static const char *const glyphs[8] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};

static int glyph_index(double x, double min, double max)
{
	double t = (x - min) * 7 / (max - min);
	if (!isfinite(t)) /* the range overflowed a double: same ratio at half scale */
		t = (x / 2 - min / 2) / (max / 2 - min / 2) * 7;
	t = nearbyint(t); /* ties to even, as Python's round() */
	if (!(t >= 0))
		return 0;
	return t > 7 ? 7 : (int)t;
}

size_t footer_sparkline(const double *values, size_t n, char *buf, size_t cap)
{
	double pts[FOOTER_SPARK_POINTS];
	size_t m = 0;
	if (cap)
		buf[0] = '\0';
	if (n <= FOOTER_SPARK_POINTS) {
		for (; m < n; m++)
			pts[m] = values[m];
	} else {
		/* Integer arithmetic: exact, so the first and last values are kept. */
		for (; m < FOOTER_SPARK_POINTS; m++)
			pts[m] = values[(m * (n - 1)) / (FOOTER_SPARK_POINTS - 1)];
	}
	bool any = false;
	double min = 0, max = 0;
	for (size_t i = 0; i < m; i++) {
		if (!isfinite(pts[i]))
			continue;
		if (!any || pts[i] < min)
			min = pts[i];
		if (!any || pts[i] > max)
			max = pts[i];
		any = true;
	}
	if (!any)
		return 0;
	size_t len = 0;
	for (size_t i = 0; i < m; i++) {
		const char *g = !isfinite(pts[i]) ? " "
		                : max == min      ? glyphs[0]
		                                  : glyphs[glyph_index(pts[i], min, max)];
		size_t gl = strlen(g);
		if (len + gl + 1 > cap)
			break;
		memcpy(buf + len, g, gl);
		len += gl;
	}
	if (cap)
		buf[len] = '\0';
	return len;
}

/* ---- Python's repr(round(x, 5)) ------------------------------------------- */

size_t footer_format_double(double x, char *buf, size_t cap)
{
	char out[48];
	if (isnan(x)) {
		strcpy(out, "nan");
	} else if (isinf(x)) {
		strcpy(out, x > 0 ? "inf" : "-inf");
	} else {
		/* round(x, 5): glibc's printf is exact and rounds ties to even, as
		 * CPython's correctly rounded dtoa does. */
		char fixed[400];
		snprintf(fixed, sizeof fixed, "%.5f", x);
		double r = strtod(fixed, NULL);
		if (r == 0) {
			strcpy(out, signbit(r) ? "-0.0" : "0.0");
		} else {
			/* repr: the shortest digits that read back to r… */
			char e[40];
			fmt_double_e(e, sizeof e, r);
			char digits[24];
			size_t nd = 0;
			const char *p = e;
			bool neg = *p == '-';
			if (neg)
				p++;
			for (; *p && *p != 'e'; p++)
				if (*p != '.' && nd < sizeof digits - 1)
					digits[nd++] = *p;
			int exp10 = atoi(p + 1);
			while (nd > 1 && digits[nd - 1] == '0')
				nd--;
			digits[nd] = '\0';
			/* …laid out as CPython's float_repr_style "short" does. */
			int decpt = exp10 + 1;
			size_t o = 0;
			if (neg)
				out[o++] = '-';
			if (decpt <= -4 || decpt > 16) {
				out[o++] = digits[0];
				if (nd > 1) {
					out[o++] = '.';
					memcpy(out + o, digits + 1, nd - 1);
					o += nd - 1;
				}
				snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+',
				         abs(exp10));
			} else if (decpt <= 0) {
				out[o++] = '0';
				out[o++] = '.';
				for (int z = 0; z < -decpt; z++)
					out[o++] = '0';
				memcpy(out + o, digits, nd);
				out[o + nd] = '\0';
			} else if ((size_t)decpt >= nd) {
				memcpy(out + o, digits, nd);
				o += nd;
				for (size_t z = nd; z < (size_t)decpt; z++)
					out[o++] = '0';
				strcpy(out + o, ".0");
			} else {
				memcpy(out + o, digits, (size_t)decpt);
				o += (size_t)decpt;
				out[o++] = '.';
				memcpy(out + o, digits + decpt, nd - (size_t)decpt);
				out[o + nd - (size_t)decpt] = '\0';
			}
		}
	}
	size_t len = strlen(out);
	if (cap) {
		size_t c = len < cap ? len : cap - 1;
		memcpy(buf, out, c);
		buf[c] = '\0';
	}
	return len;
}

/* ---- rendering ------------------------------------------------------------ */

/* Rendered text: at most FOOTER_TEXT_MAX bytes (ten rows per block of keys of
 * at most FOOTER_MAX_KEY_BYTES, plus the caller's trailer lines, stay far
 * below it). The first failure sticks and the rest is skipped. */
#define FOOTER_TEXT_MAX (1u << 20)

struct text {
	struct buf b;
	int err;
};

static void text_put(struct text *t, const char *s, size_t n)
{
	if (!t->err && buf_append(&t->b, s, n) != 0)
		t->err = FOOTER_ENOMEM;
}

static void text_puts(struct text *t, const char *s)
{
	text_put(t, s, strlen(s));
}

static void text_spaces(struct text *t, size_t n)
{
	while (n--)
		text_put(t, " ", 1);
}

/* Run data on a terminal: control characters become '?', at most `max_cp` code
 * points (SIZE_MAX: all). */
static void text_put_safe(struct text *t, const char *s, size_t max_cp)
{
	size_t cp = 0;
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		bool lead = (*p & 0xC0) != 0x80;
		if (lead && cp == max_cp)
			break;
		cp += lead;
		if (*p < 0x20 || *p == 0x7f)
			text_put(t, "?", 1);
		else
			text_put(t, (const char *)p, 1);
		p++;
	}
}

struct row {
	const char *key;
	char value[3 * FOOTER_SPARK_POINTS + 32];
	const char *long_value; /* strings: printed from here, cut */
};

/* One block: title, rows (already sorted and filtered), `+N ...`. */
static void put_block(struct text *t, const char *title, const struct row *rows, size_t n,
                      uint64_t extra_hidden)
{
	size_t shown = n < FOOTER_MAX_ROWS ? n : FOOTER_MAX_ROWS;
	size_t width = 0;
	for (size_t i = 0; i < shown; i++) {
		size_t w = utf8_count(rows[i].key);
		width = w > width ? w : width;
	}
	text_puts(t, title);
	text_puts(t, "\n");
	for (size_t i = 0; i < shown; i++) {
		text_spaces(t, width - utf8_count(rows[i].key));
		text_put_safe(t, rows[i].key, SIZE_MAX);
		text_puts(t, " ");
		if (rows[i].long_value) {
			/* W&B: value[:20] + "..." * (len(value) >= 20) */
			text_put_safe(t, rows[i].long_value, FOOTER_STRING_CUT);
			if (utf8_count(rows[i].long_value) >= FOOTER_STRING_CUT)
				text_puts(t, "...");
		} else {
			text_puts(t, rows[i].value);
		}
		text_puts(t, "\n");
	}
	uint64_t hidden = (uint64_t)(n - shown) + extra_hidden;
	if (hidden) {
		char more[48];
		snprintf(more, sizeof more, "+%llu ...\n", (unsigned long long)hidden);
		text_puts(t, more);
	}
}

static int cmp_key_ptr(const void *a, const void *b)
{
	const struct series_key *x = *(struct series_key *const *)a;
	const struct series_key *y = *(struct series_key *const *)b;
	return strcmp(x->name, y->name);
}

static int cmp_sample(const void *a, const void *b)
{
	const struct sample *x = a, *y = b;
	if (x->step != y->step)
		return x->step < y->step ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* The history rows: sorted keys whose sparkline is not empty. */
static int history_rows(const footer_series *s, struct row **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	if (!s->n_keys)
		return FOOTER_OK;
	struct series_key **sorted = malloc(s->n_keys * sizeof *sorted);
	struct row *rows = malloc(s->n_keys * sizeof *rows);
	if (!sorted || !rows) {
		free(sorted);
		free(rows);
		return FOOTER_ENOMEM;
	}
	memcpy(sorted, s->keys, s->n_keys * sizeof *sorted);
	qsort(sorted, s->n_keys, sizeof *sorted, cmp_key_ptr);
	size_t n = 0;
	for (size_t i = 0; i < s->n_keys; i++) {
		const struct series_key *k = sorted[i];
		struct sample smp[FOOTER_SAMPLE_MAX];
		double v[FOOTER_SAMPLE_MAX];
		memcpy(smp, k->s, k->n * sizeof *smp);
		qsort(smp, k->n, sizeof *smp, cmp_sample);
		for (uint32_t j = 0; j < k->n; j++)
			v[j] = smp[j].value;
		rows[n].key = k->name;
		rows[n].long_value = NULL;
		if (footer_sparkline(v, k->n, rows[n].value, sizeof rows[n].value) > 0)
			n++;
	}
	free(sorted);
	*out = rows;
	*n_out = n;
	return FOOTER_OK;
}

struct summary_ref {
	const footer_summary_item *item;
	size_t index;
};

static int cmp_summary(const void *a, const void *b)
{
	const struct summary_ref *x = a, *y = b;
	int c = strcmp(x->item->key, y->item->key);
	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

static int summary_rows(const footer_summary_item *items, size_t n_items, struct row **out,
                        size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	if (!n_items)
		return FOOTER_OK;
	struct summary_ref *refs = malloc(n_items * sizeof *refs);
	struct row *rows = malloc(n_items * sizeof *rows);
	if (!refs || !rows) {
		free(refs);
		free(rows);
		return FOOTER_ENOMEM;
	}
	size_t m = 0;
	for (size_t i = 0; i < n_items; i++) {
		if (!items[i].key || !items[i].key[0] || items[i].key[0] == '_')
			continue;
		if (items[i].kind == FOOTER_STRING && !items[i].v.s)
			continue;
		refs[m].item = &items[i];
		refs[m].index = i;
		m++;
	}
	qsort(refs, m, sizeof *refs, cmp_summary);
	size_t n = 0;
	for (size_t i = 0; i < m; i++) {
		/* A repeated key: the last one given wins, as in a Python dict. */
		if (i + 1 < m && strcmp(refs[i].item->key, refs[i + 1].item->key) == 0)
			continue;
		const footer_summary_item *it = refs[i].item;
		struct row *r = &rows[n++];
		r->key = it->key;
		r->long_value = NULL;
		switch (it->kind) {
		case FOOTER_DOUBLE: footer_format_double(it->v.d, r->value, sizeof r->value); break;
		case FOOTER_INT:
			snprintf(r->value, sizeof r->value, "%lld", (long long)it->v.i);
			break;
		case FOOTER_BOOL: strcpy(r->value, it->v.b ? "True" : "False"); break;
		case FOOTER_STRING: r->long_value = it->v.s; break;
		default: n--; break; /* unknown kind: not shown */
		}
	}
	free(refs);
	*out = rows;
	*n_out = n;
	return FOOTER_OK;
}

int footer_render(const footer_series *history, const footer_summary_item *summary,
                  size_t n_summary, const char *const *trailer, size_t n_trailer, char **out,
                  size_t *out_len)
{
	if (!out || (n_summary && !summary) || (n_trailer && !trailer))
		return FOOTER_EINVAL;
	*out = NULL;
	struct text t = {.err = FOOTER_OK};
	buf_init(&t.b, FOOTER_TEXT_MAX);
	struct row *hrows = NULL, *srows = NULL;
	size_t nh = 0, ns = 0;
	int rv = history ? history_rows(history, &hrows, &nh) : FOOTER_OK;
	if (rv == FOOTER_OK)
		rv = summary_rows(summary, n_summary, &srows, &ns);
	if (rv != FOOTER_OK)
		goto done;
	text_put(&t, "", 0); /* "" rather than NULL when there is nothing to show */
	bool any = false;
	if (nh) {
		put_block(&t, "Run history:", hrows, nh, history->n_dropped);
		any = true;
	}
	if (ns) {
		if (any)
			text_puts(&t, "\n");
		put_block(&t, "Run summary:", srows, ns, 0);
		any = true;
	}
	if (n_trailer && any)
		text_puts(&t, "\n");
	for (size_t i = 0; i < n_trailer; i++) {
		text_puts(&t, trailer[i] ? trailer[i] : "");
		text_puts(&t, "\n");
	}
	rv = t.err;
done:
	free(hrows);
	free(srows);
	if (rv != FOOTER_OK) {
		buf_fini(&t.b);
		return rv;
	}
	*out = t.b.data;
	if (out_len)
		*out_len = t.b.len;
	return FOOTER_OK;
}

int footer_print(FILE *f, const footer_series *history, const footer_summary_item *summary,
                 size_t n_summary, const char *const *trailer, size_t n_trailer)
{
	char *text;
	size_t len;
	int rv = footer_render(history, summary, n_summary, trailer, n_trailer, &text, &len);
	if (rv != FOOTER_OK)
		return rv;
	if (len && fwrite(text, 1, len, f) != len)
		rv = FOOTER_EINVAL;
	free(text);
	return rv;
}
