/* series_test — the series index (series.h): what is written is what a query
 * returns, the pyramid's buckets equal a brute-force computation from the raw
 * points over random data, the limits (keys, exactness at N) at limit-1,
 * limit, limit+1, and cutting back to a checkpoint's rows after a crash. */
#include "series.h"

#include "check.h"
#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static void make_dir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", root, name);
	CHECK(mkdir(out, 0700) == 0 || errno == EEXIST, "mkdir %s", out);
}

/* Test data: row i has step first_step + 2i (steps may skip), runtime 0.1 i,
 * timestamp 1e9 + 0.1 i; key "a" on every row (random), "b" on every third
 * row (random, sometimes NaN), "c" an int on even rows. */
struct row {
	int64_t step;
	double runtime, timestamp;
	double a, b;
	int64_t c;
	bool has_b, has_c;
};

static uint64_t rng = 88172645463325252ull;
static double rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / 9007199254740992.0;
}

static struct row *make_rows(size_t n)
{
	struct row *r = calloc(n ? n : 1, sizeof *r);
	for (size_t i = 0; i < n; i++) {
		r[i].step = 5 + 2 * (int64_t)i;
		r[i].runtime = 0.1 * (double)i;
		r[i].timestamp = 1e9 + 0.1 * (double)i;
		r[i].a = rnd() * 100 - 50;
		r[i].has_b = i % 3 == 0;
		r[i].b = rnd() < 0.01 ? NAN : rnd();
		r[i].has_c = i % 2 == 0;
		r[i].c = (int64_t)(rnd() * 1000);
	}
	return r;
}

static int add_rows(struct series_writer *w, const struct row *r, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		struct series_value v[4];
		size_t n = 0;
		v[n++] = (struct series_value){"a", r[i].a};
		if (r[i].has_b)
			v[n++] = (struct series_value){"b", r[i].b};
		if (r[i].has_c)
			v[n++] = (struct series_value){"c", (double)r[i].c};
		v[n++] = (struct series_value){"_step", 0}; /* system keys are not columns */
		int rv = series_add_row(w, r[i].step, r[i].runtime, r[i].timestamp, v, n);
		if (rv)
			return rv;
		if (i % 1000 == 999 && (rv = series_flush(w)) != 0)
			return rv;
	}
	return series_flush(w);
}

/* ---- brute force: the same definition, computed from the raw points --------------------- */

struct pt {
	uint64_t row;
	double x, v;
};

static size_t points_of(const struct row *r, size_t rows, const char *key, int axis, struct pt *out)
{
	size_t n = 0;
	for (size_t i = 0; i < rows; i++) {
		double x = axis == 0   ? (double)r[i].step
		           : axis == 1 ? r[i].runtime
		                       : r[i].timestamp;
		if (strcmp(key, "a") == 0)
			out[n++] = (struct pt){i, x, r[i].a};
		else if (strcmp(key, "b") == 0 && r[i].has_b)
			out[n++] = (struct pt){i, x, r[i].b};
		else if (strcmp(key, "c") == 0 && r[i].has_c)
			out[n++] = (struct pt){i, x, (double)r[i].c};
	}
	return n;
}

struct bk {
	uint64_t count;
	double x, min, max, last;
};

static void bk_add(struct bk *b, uint32_t nb, double lo, double hi, double x, double mn, double mx,
                   double last, uint64_t count)
{
	uint32_t i = 0;
	if (hi > lo) {
		double f = (x - lo) * ((double)nb / (hi - lo));
		i = f <= 0 ? 0 : f >= nb ? nb - 1 : (uint32_t)f;
	}
	if (!b[i].count) {
		b[i].min = mn;
		b[i].max = mx;
	} else {
		b[i].min = fmin(b[i].min, mn);
		b[i].max = fmax(b[i].max, mx);
	}
	b[i].count += count;
	b[i].x = x;
	b[i].last = last;
}

static bool same(double a, double b)
{
	return a == b || (isnan(a) && isnan(b));
}

/* Checks one reply series against the brute force over the raw points. */
static void check_series(const Trackd__V1__SeriesReply__Series *s, const struct row *r, size_t rows,
                         int axis, double lo, double hi, uint32_t nb)
{
	struct pt *p = malloc((rows ? rows : 1) * sizeof *p);
	size_t np = points_of(r, rows, s->key, axis, p);
	CHECK_EQ(s->total_points, np);
	size_t i0 = 0, i1;
	while (i0 < np && p[i0].x < lo)
		i0++;
	i1 = i0;
	while (i1 < np && p[i1].x <= hi)
		i1++;
	size_t n = i1 - i0;
	struct bk *b = calloc(nb, sizeof *b);
	if (n <= nb) {
		CHECK(s->exact, "%s: %zu points in range, %u buckets: exact", s->key, n, nb);
		CHECK_EQ(s->n_x, n);
		for (size_t k = 0; k < n && k < s->n_x; k++)
			CHECK(same(s->x[k], p[i0 + k].x) && same(s->last[k], p[i0 + k].v) &&
			          same(s->min[k], p[i0 + k].v) && s->count[k] == 1,
			      "%s point %zu", s->key, k);
		free(b);
		free(p);
		return;
	}
	CHECK(!s->exact);
	uint64_t g = 1;
	for (int l = SERIES_LEVELS; l >= 1; l--) {
		uint64_t gl = 1;
		for (int k = 0; k < l; k++)
			gl *= SERIES_FANOUT;
		if (n / gl >= nb) {
			g = gl;
			break;
		}
	}
	size_t b0 = g > 1 ? (i0 + g - 1) / g : i1, b1 = g > 1 ? i1 / g : i1;
	if (g > 1 && b1 < b0)
		b1 = b0;
	size_t m0 = g > 1 && b1 > b0 ? b0 * g : i1, m1 = g > 1 && b1 > b0 ? b1 * g : i1;
	for (size_t k = i0; k < m0; k++)
		bk_add(b, nb, lo, hi, p[k].x, p[k].v, p[k].v, p[k].v, 1);
	for (size_t blk = b0; g > 1 && blk < b1; blk++) { /* a block from the raw points */
		double mn = p[blk * g].v, mx = p[blk * g].v;
		for (size_t k = blk * g; k < (blk + 1) * g; k++) {
			mn = fmin(mn, p[k].v);
			mx = fmax(mx, p[k].v);
		}
		const struct pt *last = &p[(blk + 1) * g - 1];
		bk_add(b, nb, lo, hi, last->x, mn, mx, last->v, g);
	}
	for (size_t k = m1; k < i1; k++)
		bk_add(b, nb, lo, hi, p[k].x, p[k].v, p[k].v, p[k].v, 1);
	size_t j = 0;
	uint64_t total = 0;
	bool ok = true;
	for (uint32_t k = 0; k < nb; k++) {
		if (!b[k].count)
			continue;
		if (j >= s->n_x || !same(s->x[j], b[k].x) || !same(s->min[j], b[k].min) ||
		    !same(s->max[j], b[k].max) || !same(s->last[j], b[k].last) ||
		    s->count[j] != b[k].count)
			ok = false;
		total += b[k].count;
		j++;
	}
	CHECK(ok && j == s->n_x, "%s: buckets equal the brute force (%zu points, %u buckets)",
	      s->key, n, nb);
	CHECK_EQ(total, n);
	free(b);
	free(p);
}

static Trackd__V1__SeriesReply *query(const char *dir, uint64_t rows, const char *x, char **keys,
                                      size_t n_keys, bool has_min, double lo, bool has_max,
                                      double hi, uint32_t nb, int *rv_out)
{
	Trackd__V1__SeriesReply *r = malloc(sizeof *r);
	trackd__v1__series_reply__init(r);
	const struct series_query q = {.x = x,
	                               .keys = keys,
	                               .n_keys = n_keys,
	                               .has_min = has_min,
	                               .has_max = has_max,
	                               .x_min = lo,
	                               .x_max = hi,
	                               .buckets = nb};
	char err[256] = "";
	int rv = series_query(dir, rows, &q, r, err, sizeof err);
	if (rv_out)
		*rv_out = rv;
	else
		CHECK_EQ(rv, 0);
	return r;
}

static void check_against_brute(const char *dir, const struct row *r, size_t rows)
{
	static char *keys[] = {"a", "b", "c"};
	const uint32_t nbs[] = {1, 7, 100, 1000, 10000};
	for (int axis = 0; axis < 3; axis++) {
		const char *x = axis == 0 ? "_step" : axis == 1 ? "_runtime" : "_timestamp";
		double first = axis == 0   ? (double)r[0].step
		               : axis == 1 ? r[0].runtime
		                           : r[0].timestamp;
		double last = axis == 0   ? (double)r[rows - 1].step
		              : axis == 1 ? r[rows - 1].runtime
		                          : r[rows - 1].timestamp;
		for (size_t t = 0; t < sizeof nbs / sizeof nbs[0]; t++) {
			/* the whole run, then random sub-ranges */
			for (int k = 0; k < 4; k++) {
				double lo = first, hi = last;
				bool ranged = k > 0;
				if (ranged) {
					lo = first + (last - first) * rnd() * 0.6;
					hi = lo + (last - lo) * rnd();
				}
				Trackd__V1__SeriesReply *rep = query(dir, rows, x, keys, 3, ranged,
				                                     lo, ranged, hi, nbs[t], NULL);
				CHECK_EQ(rep->n_series, 3);
				CHECK_EQ(rep->rows, rows);
				for (size_t i = 0; i < rep->n_series; i++)
					check_series(rep->series[i], r, rows, axis, lo, hi, nbs[t]);
				trackd__v1__series_reply__free_unpacked(rep, NULL);
			}
		}
	}
}

static void test_pyramid_equals_brute_force(void)
{
	char dir[300];
	make_dir(dir, sizeof dir, "brute");
	const size_t rows = 150000; /* level 8 (65536 points) has whole blocks for "a" */
	struct row *r = make_rows(rows);
	struct series_writer *w;
	CHECK_EQ(series_writer_open(dir, 0, &w), 0);
	CHECK_EQ(add_rows(w, r, 0, rows), 0);
	CHECK_EQ(series_sync(w), 0);
	CHECK_EQ(series_rows(w), rows);
	check_against_brute(dir, r, rows);
	/* a query of fewer rows than the index holds sees those only */
	Trackd__V1__SeriesReply *rep =
	    query(dir, 1000, "_step", (char *[]){"a"}, 1, false, 0, false, 0, 50, NULL);
	CHECK_EQ(rep->rows, 1000);
	check_series(rep->series[0], r, 1000, 0, (double)r[0].step, (double)r[999].step, 50);
	trackd__v1__series_reply__free_unpacked(rep, NULL);
	/* every key, sorted, when none is asked; an unknown key: empty */
	rep = query(dir, rows, NULL, NULL, 0, false, 0, false, 0, 10, NULL);
	CHECK_EQ(rep->n_series, 3);
	CHECK_STR_EQ(rep->x, "_step");
	if (rep->n_series == 3) {
		CHECK_STR_EQ(rep->series[0]->key, "a");
		CHECK_STR_EQ(rep->series[2]->key, "c");
	}
	trackd__v1__series_reply__free_unpacked(rep, NULL);
	rep = query(dir, rows, NULL, (char *[]){"zz"}, 1, false, 0, false, 0, 10, NULL);
	CHECK(rep->n_series == 1 && rep->series[0]->total_points == 0 && rep->series[0]->n_x == 0);
	trackd__v1__series_reply__free_unpacked(rep, NULL);
	/* an unknown x: ENOENT; a key as x pairs points by row */
	int rv;
	rep = query(dir, rows, "nope", NULL, 0, false, 0, false, 0, 10, &rv);
	CHECK_EQ(rv, TRACKD_ENOENT);
	trackd__v1__series_reply__free_unpacked(rep, NULL);
	rep = query(dir, 6000, "c", (char *[]){"b"}, 1, false, 0, false, 0, 10000, NULL);
	/* b on rows 0 mod 3, c on rows 0 mod 2: paired on rows 0 mod 6 */
	CHECK(rep->n_series == 1 && rep->series[0]->exact && rep->series[0]->n_x == 1000);
	if (rep->n_series == 1 && rep->series[0]->n_x > 1) {
		CHECK(rep->series[0]->x[1] == (double)r[6].c &&
		      same(rep->series[0]->last[1], r[6].b));
	}
	trackd__v1__series_reply__free_unpacked(rep, NULL);
	rep = query(dir, rows, "c", (char *[]){"b"}, 1, false, 0, false, 0, 10, NULL);
	uint64_t sum = 0;
	for (size_t i = 0; rep->n_series == 1 && i < rep->series[0]->n_count; i++)
		sum += rep->series[0]->count[i];
	CHECK(rep->n_series == 1 && !rep->series[0]->exact && sum == rows / 6);
	trackd__v1__series_reply__free_unpacked(rep, NULL);
	series_writer_free(w);
	free(r);
}

/* Exact points at N-1 and N points in the range, buckets at N+1. */
static void test_exact_at_n(void)
{
	char dir[300];
	make_dir(dir, sizeof dir, "exact");
	struct row *r = make_rows(101);
	struct series_writer *w;
	CHECK_EQ(series_writer_open(dir, 0, &w), 0);
	CHECK_EQ(add_rows(w, r, 0, 101), 0);
	for (size_t points = 99; points <= 101; points++) {
		Trackd__V1__SeriesReply *rep =
		    query(dir, 101, "_step", (char *[]){"a"}, 1, false, 0, true,
		          (double)r[points - 1].step, 100, NULL);
		CHECK_EQ(rep->series[0]->exact, points <= 100);
		CHECK_EQ(rep->series[0]->n_x, points <= 100 ? points : rep->series[0]->n_x);
		check_series(rep->series[0], r, 101, 0, (double)r[0].step,
		             (double)r[points - 1].step, 100);
		trackd__v1__series_reply__free_unpacked(rep, NULL);
	}
	/* The most buckets a query may ask for (the query layer refuses more). */
	Trackd__V1__SeriesReply *rep = query(dir, 101, "_step", (char *[]){"a"}, 1, false, 0, false,
	                                     0, SERIES_MAX_BUCKETS, NULL);
	CHECK(rep->series[0]->exact && rep->series[0]->n_x == 101);
	trackd__v1__series_reply__free_unpacked(rep, NULL);
	series_writer_free(w);
	free(r);
}

/* SERIES_MAX_KEYS keys are indexed; the values of more are counted. */
static void test_key_limit(void)
{
	char dir[300];
	make_dir(dir, sizeof dir, "keys");
	struct series_writer *w;
	CHECK_EQ(series_writer_open(dir, 0, &w), 0);
	static char names[SERIES_MAX_KEYS + 1][16];
	static struct series_value v[SERIES_MAX_KEYS + 1];
	for (int i = 0; i <= SERIES_MAX_KEYS; i++) {
		snprintf(names[i], sizeof names[i], "k%05d", i);
		v[i] = (struct series_value){names[i], i};
	}
	CHECK_EQ(series_add_row(w, 0, 0, 0, v, SERIES_MAX_KEYS - 1), 0); /* limit - 1 */
	CHECK_EQ(series_dropped(w), 0);
	CHECK_EQ(series_add_row(w, 1, 0, 0, v, SERIES_MAX_KEYS), 0); /* limit */
	CHECK_EQ(series_dropped(w), 0);
	CHECK_EQ(series_add_row(w, 2, 0, 0, v, SERIES_MAX_KEYS + 1), 0); /* limit + 1 */
	CHECK_EQ(series_dropped(w), 1);
	CHECK_EQ(series_flush(w), 0);
	CHECK_EQ(series_sync(w), 0);
	Trackd__V1__SeriesReply *rep = query(dir, 3, NULL, NULL, 0, false, 0, false, 0, 10, NULL);
	CHECK_EQ(rep->n_series, SERIES_MAX_KEYS);
	if (rep->n_series == SERIES_MAX_KEYS) {
		CHECK_EQ(rep->series[0]->total_points, 3);
		CHECK_EQ(rep->series[SERIES_MAX_KEYS - 1]->total_points, 2);
	}
	trackd__v1__series_reply__free_unpacked(rep, NULL);
	series_writer_free(w);
	/* reopened: the same columns, the key over the limit still not indexed */
	CHECK_EQ(series_writer_open(dir, 3, &w), 0);
	CHECK_EQ(series_add_row(w, 3, 0, 0, v, SERIES_MAX_KEYS + 1), 0);
	CHECK_EQ(series_dropped(w), 1);
	series_writer_free(w);
}

static void append_garbage(const char *dir, const char *name, size_t n)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s/%s", dir, SERIES_DIR, name);
	int fd = open(path, O_WRONLY | O_APPEND);
	CHECK(fd >= 0, "open %s", path);
	CHECK_EQ(write(fd, "\xff\xff\xff\xff\xff\xff\xff\xff\xff", n), (ssize_t)n);
	close(fd);
}

static off_t size_of(const char *dir, const char *name)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s/%s", dir, SERIES_DIR, name);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* A checkpoint at 70000 rows, rows after it written, then a crash: the index
 * opened with the checkpoint's rows is cut back to them (torn records and lost
 * level blocks included) and, given the rows again, equals an index that never
 * crashed. */
static void test_crash_cut_back(void)
{
	char dir[300], ref[300];
	make_dir(dir, sizeof dir, "crash");
	make_dir(ref, sizeof ref, "crash-ref");
	const size_t rows = 100000, cp = 70000;
	struct row *r = make_rows(rows);
	struct series_writer *w;
	CHECK_EQ(series_writer_open(dir, 0, &w), 0);
	CHECK_EQ(add_rows(w, r, 0, cp), 0);
	CHECK_EQ(series_sync(w), 0);
	CHECK_EQ(add_rows(w, r, cp, rows - 123), 0); /* written after the checkpoint */
	series_writer_free(w);                       /* the crash */
	append_garbage(dir, "rows", 5);
	append_garbage(dir, "c0.p", 9);
	off_t l1 = size_of(dir, "c0.l1");
	char path[512];
	snprintf(path, sizeof path, "%s/%s/c0.l2", dir, SERIES_DIR);
	CHECK_EQ(truncate(path, 48 * 10), 0); /* blocks lost: recomputed on load */
	CHECK_EQ(series_writer_open(dir, rows + 1, &w), TRACKD_ECORRUPT); /* fewer rows */
	CHECK_EQ(series_writer_open(dir, cp, &w), 0);
	CHECK_EQ(series_rows(w), cp);
	CHECK_EQ(size_of(dir, "rows"), (off_t)cp * 24);
	CHECK_EQ(size_of(dir, "c0.p"), (off_t)cp * 16); /* "a": a point per row */
	CHECK(size_of(dir, "c0.l1") < l1);
	CHECK_EQ(size_of(dir, "c0.l2"), (off_t)(cp / 16) * 48);
	CHECK_EQ(add_rows(w, r, cp, rows), 0); /* the log applied again */
	CHECK_EQ(series_sync(w), 0);
	series_writer_free(w);
	struct series_writer *wr;
	CHECK_EQ(series_writer_open(ref, 0, &wr), 0);
	CHECK_EQ(add_rows(wr, r, 0, rows), 0);
	series_writer_free(wr);
	const char *files[] = {"rows",  "keys", "c0.p",  "c0.l1", "c0.l2", "c0.l3",
	                       "c0.l8", "c1.p", "c1.l2", "c2.p",  "c2.l5"};
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char *a = NULL, *b = NULL;
		size_t la = 0, lb = 0;
		char pa[512], pb[512];
		snprintf(pa, sizeof pa, "%s/%s/%s", dir, SERIES_DIR, files[i]);
		snprintf(pb, sizeof pb, "%s/%s/%s", ref, SERIES_DIR, files[i]);
		FILE *fa = fopen(pa, "rb"), *fb = fopen(pb, "rb");
		CHECK(fa && fb, "%s", files[i]);
		if (fa && fb) {
			a = malloc(1 << 24);
			b = malloc(1 << 24);
			la = fread(a, 1, 1 << 24, fa);
			lb = fread(b, 1, 1 << 24, fb);
			CHECK(la == lb && memcmp(a, b, la) == 0,
			      "%s: the same bytes as an index that never crashed", files[i]);
		}
		if (fa)
			fclose(fa);
		if (fb)
			fclose(fb);
		free(a);
		free(b);
	}
	/* the partial blocks were rebuilt: queries agree with the brute force */
	Trackd__V1__SeriesReply *rep =
	    query(dir, rows, "_step", (char *[]){"a", "b", "c"}, 3, false, 0, false, 0, 1000, NULL);
	for (size_t i = 0; i < rep->n_series; i++)
		check_series(rep->series[i], r, rows, 0, (double)r[0].step,
		             (double)r[rows - 1].step, 1000);
	trackd__v1__series_reply__free_unpacked(rep, NULL);
	free(r);
}

/* A run stored without the index: built once from history.jsonl. */
static void test_build_from_history(void)
{
	char dir[300], path[400];
	make_dir(dir, sizeof dir, "legacy");
	snprintf(path, sizeof path, "%s/history.jsonl", dir);
	FILE *f = fopen(path, "w");
	const size_t rows = 3000;
	struct row *r = make_rows(rows);
	long cut = 0;
	for (size_t i = 0; i < rows; i++) {
		fprintf(f, "{\"a\":%.17g,", r[i].a);
		if (r[i].has_b && !isnan(r[i].b))
			fprintf(f, "\"b\":%.17g,", r[i].b);
		else if (r[i].has_b)
			fprintf(f, "\"b\":NaN,");
		if (r[i].has_c)
			fprintf(f, "\"c\":%" PRId64 ",", r[i].c);
		fprintf(f,
		        "\"s\":\"text\",\"t\":true,\"n\":{\"x\":1},\"_step\":%" PRId64
		        ",\"_runtime\":%.17g,\"_timestamp\":%.17g}\n",
		        r[i].step, r[i].runtime, r[i].timestamp);
		if (i == rows - 1)
			cut = ftell(f);
	}
	fprintf(f, "{\"a\":1,\"_step\":"); /* being written: not a row */
	fclose(f);
	uint64_t built = 0;
	CHECK_EQ(series_legacy_rows(dir, &built), TRACKD_ENOENT);
	CHECK_EQ(series_build_from_history(dir, (uint64_t)cut + 20, &built, NULL, NULL), 0);
	CHECK_EQ(built, rows);
	CHECK_EQ(series_legacy_rows(dir, &built), 0);
	CHECK_EQ(built, rows);
	Trackd__V1__SeriesReply *rep =
	    query(dir, rows, NULL, NULL, 0, false, 0, false, 0, 100, NULL);
	CHECK_EQ(rep->n_series, 3); /* numbers only: not s, t, n */
	for (size_t i = 0; i < rep->n_series; i++)
		check_series(rep->series[i], r, rows, 0, (double)r[0].step,
		             (double)r[rows - 1].step, 100);
	trackd__v1__series_reply__free_unpacked(rep, NULL);
	/* and the index then goes on like any other */
	struct series_writer *w;
	CHECK_EQ(series_writer_open(dir, rows, &w), 0);
	CHECK_EQ(series_rows(w), rows);
	series_writer_free(w);
	CHECK_EQ(series_remove(dir), 0);
	CHECK_EQ(series_legacy_rows(dir, &built), TRACKD_ENOENT);
	free(r);
}

/* history.jsonl lines of SERIES_BUILD_LINE_MAX - 1, SERIES_BUILD_LINE_MAX and
 * SERIES_BUILD_LINE_MAX + 1 bytes: the last is a row without values. */
static void test_build_line_limit(void)
{
	char dir[300], path[400];
	make_dir(dir, sizeof dir, "long-lines");
	snprintf(path, sizeof path, "%s/history.jsonl", dir);
	FILE *f = fopen(path, "w");
	const size_t max = SERIES_BUILD_LINE_MAX;
	char *pad = malloc(max + 2);
	for (int k = 0; k < 3; k++) {
		char head[64], tail[64];
		int hl = snprintf(head, sizeof head, "{\"a\":%d,\"_step\":%d,\"s\":\"", k + 1, k);
		int tl = snprintf(tail, sizeof tail, "\"}");
		size_t len = max - 1 + (size_t)k; /* the line, without its newline */
		size_t fill = len - (size_t)hl - (size_t)tl;
		memset(pad, 'x', fill);
		fwrite(head, 1, (size_t)hl, f);
		fwrite(pad, 1, fill, f);
		fwrite(tail, 1, (size_t)tl, f);
		fputc('\n', f);
	}
	long size = ftell(f);
	fclose(f);
	free(pad);
	uint64_t built = 0;
	CHECK_EQ(series_build_from_history(dir, (uint64_t)size, &built, NULL, NULL), 0);
	CHECK_EQ(built, 3);
	Trackd__V1__SeriesReply *rep =
	    query(dir, 3, "_step", (char *[]){"a"}, 1, false, 0, false, 0, 10, NULL);
	CHECK(rep->n_series == 1 && rep->series[0]->total_points == 2,
	      "lines up to the limit are indexed, the longer one is a row without values");
	if (rep->n_series == 1 && rep->series[0]->n_last == 2)
		CHECK(rep->series[0]->last[0] == 1 && rep->series[0]->last[1] == 2);
	trackd__v1__series_reply__free_unpacked(rep, NULL);
	CHECK_EQ(series_remove(dir), 0);
}

int main(void)
{
	snprintf(root, sizeof root, "/tmp/series_test.XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	test_exact_at_n();
	test_pyramid_equals_brute_force();
	test_key_limit();
	test_crash_cut_back();
	test_build_from_history();
	test_build_line_limit();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
	return CHECK_SUMMARY("series_test");
}
