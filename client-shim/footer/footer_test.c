/*
 * footer_test — golden tests of the run footer: known input → exact bytes.
 *
 * The expected texts were worked out from the rules in footer.h (and cross-checked
 * against a Python model of the same rules using Python's own round() and repr());
 * the sampled case also depends on the splitmix64 generator and algorithm R as
 * implemented, which is the point: the footer must not change between versions
 * for the same input and seed.
 */
#include "footer.h"

#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int goldens;

static void expect_text(const char *name, const char *got, const char *want)
{
	goldens++;
	CHECK(got && strcmp(got, want) == 0,
	      "golden '%s' differs\n--- want ---\n%s--- got ---\n%s--- end ---", name, want,
	      got ? got : "(null)");
}

/* Renders and compares; frees the text. */
static void expect_render(const char *name, const footer_series *h, const footer_summary_item *sum,
                          size_t n_sum, const char *const *tr, size_t n_tr, const char *want)
{
	char *text = NULL;
	size_t len = 0;
	int rv = footer_render(h, sum, n_sum, tr, n_tr, &text, &len);
	CHECK(rv == FOOTER_OK);
	CHECK(!text || len == strlen(text));
	expect_text(name, text, want);
	free(text);
}

static footer_series *series_of(uint64_t seed, size_t max_keys)
{
	footer_series *s = NULL;
	CHECK(footer_series_new(seed, max_keys, &s) == FOOTER_OK);
	if (!s)
		exit(1);
	return s;
}

static void add_all(footer_series *s, const char *key, const double *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		CHECK(footer_series_add(s, key, (int64_t)i, v[i]) == FOOTER_OK);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define F(k, x)                                                                                    \
	{                                                                                          \
		.key = (k), .kind = FOOTER_DOUBLE, .v.d = (x)                                      \
	}
#define I(k, x)                                                                                    \
	{                                                                                          \
		.key = (k), .kind = FOOTER_INT, .v.i = (x)                                         \
	}
#define B(k, x)                                                                                    \
	{                                                                                          \
		.key = (k), .kind = FOOTER_BOOL, .v.b = (x)                                        \
	}
#define S(k, x)                                                                                    \
	{                                                                                          \
		.key = (k), .kind = FOOTER_STRING, .v.s = (x)                                      \
	}

/* The example of WANDB-UPSTREAM.md, with a trailer. */
static void test_spec_example(void)
{
	const double acc[] = {0.30, 0.48, 0.67, 0.75, 0.77, 0.85, 0.87, 0.93, 0.95, 0.958491234};
	const double loss[] = {2.0, 1.3, 0.75, 0.5, 0.45, 0.2, 0.18, 0.15, 0.12, 0.105321};
	footer_series *s = series_of(1, 0);
	/* Interleaved as a training loop logs them, with the system keys W&B hides. */
	for (size_t i = 0; i < N(acc); i++) {
		CHECK(footer_series_add(s, "accuracy", (int64_t)i, acc[i]) == 0);
		CHECK(footer_series_add(s, "loss", (int64_t)i, loss[i]) == 0);
		CHECK(footer_series_add(s, "_runtime", (int64_t)i, 0.5 * (double)i) == 0);
	}
	CHECK(footer_series_keys(s) == 2);
	const footer_summary_item sum[] = {F("accuracy", 0.958491234), F("loss", 0.105321),
	                                   I("_step", 9), F("_runtime", 4.5)};
	const char *const trailer[] = {
	    "Run stored in /var/lib/trackd/runs/run-20251126_120000-abc12345",
	    "View it with: trackctl show abc12345"};
	expect_render("spec example", s, sum, N(sum), trailer, N(trailer),
	              "Run history:\n"
	              "accuracy ▁▃▅▆▆▇▇███\n"
	              "    loss █▅▃▂▂▁▁▁▁▁\n"
	              "\n"
	              "Run summary:\n"
	              "accuracy 0.95849\n"
	              "    loss 0.10532\n"
	              "\n"
	              "Run stored in /var/lib/trackd/runs/run-20251126_120000-abc12345\n"
	              "View it with: trackctl show abc12345\n");
	footer_series_free(s);
}

/* NaN and ±Inf draw as spaces and do not count for min/max; a constant series is
 * a baseline; a key with nothing finite has no row (and no width). */
static void test_nan_inf_constant(void)
{
	const double a[] = {1, NAN, 3, INFINITY, 2, -INFINITY};
	const double b[] = {5, 5, 5};
	const double c[] = {5, NAN, 5};
	const double d[] = {NAN, INFINITY, -INFINITY};
	const double e[] = {7};
	footer_series *s = series_of(1, 0);
	add_all(s, "a", a, N(a));
	add_all(s, "b", b, N(b));
	add_all(s, "c", c, N(c));
	add_all(s, "d_is_long_but_never_shown", d, N(d));
	add_all(s, "e", e, N(e));
	expect_render("nan inf constant", s, NULL, 0, NULL, 0,
	              "Run history:\n"
	              "a ▁ █ ▅ \n"
	              "b ▁▁▁\n"
	              "c ▁ ▁\n"
	              "e ▁\n");
	footer_series_free(s);
}

/* round() ties go to even, on (x-min)*7/(max-min) as written in the spec:
 * 55*7/110 = 3.5 → 4 (W&B's 7/110 first would give 3.4999… → 3). */
static void test_rounding_ties(void)
{
	const double t[] = {0, 55, 110};
	double u[15];
	for (int i = 0; i < 15; i++)
		u[i] = i; /* i*7/14 = i/2: .5 ties at every odd i */
	footer_series *s = series_of(1, 0);
	add_all(s, "t", t, N(t));
	add_all(s, "u", u, N(u));
	expect_render("rounding ties", s, NULL, 0, NULL, 0,
	              "Run history:\n"
	              "t ▁▅█\n"
	              "u ▁▁▂▃▃▃▄▅▅▅▆▇▇▇█\n");
	footer_series_free(s);
}

/* Downsampling to 40 points: indices (i*(n-1))/39, first and last kept. */
static void test_downsampling(void)
{
	char buf[3 * FOOTER_SPARK_POINTS + 1];
	double v[100];

	/* n = 46: W&B's float ratio would pick index 44 last; we keep 45 (█). */
	for (int i = 0; i < 46; i++)
		v[i] = i;
	CHECK(footer_sparkline(v, 46, buf, sizeof buf) == 3 * 40);
	expect_text("downsample 46", buf, "▁▁▁▁▂▂▂▂▂▃▃▃▃▃▃▄▄▄▄▄▅▅▅▅▅▅▆▆▆▆▆▆▇▇▇▇▇███");

	for (int i = 0; i < 47; i++)
		v[i] = (double)i * i;
	footer_sparkline(v, 47, buf, sizeof buf);
	expect_text("downsample 47 squares", buf, "▁▁▁▁▁▁▁▁▁▁▁▁▂▂▂▂▂▂▂▃▃▃▃▃▄▄▄▄▅▅▅▅▆▆▆▇▇▇▇█");

	for (int i = 0; i < 100; i++)
		v[i] = sin(i / 10.0);
	footer_sparkline(v, 100, buf, sizeof buf);
	expect_text("downsample 100 sine", buf, "▄▅▆▇▇████▇▇▆▅▄▃▂▂▁▁▁▁▂▂▃▄▅▆▆▇▇████▇▇▆▅▄▃");

	/* 40 points or fewer are drawn as they are. */
	for (int i = 0; i < 40; i++)
		v[i] = i % 2;
	CHECK(footer_sparkline(v, 40, buf, sizeof buf) == 3 * 40);
	CHECK(strncmp(buf, "▁█▁█", strlen("▁█▁█")) == 0);

	/* A range that overflows a double still draws. */
	const double huge[] = {-1e308, 1e308, 0};
	footer_sparkline(huge, 3, buf, sizeof buf);
	expect_text("overflowing range", buf, "▁█▅");

	/* Nothing finite, nothing at all; a short buffer is cut at a glyph. */
	const double none[] = {NAN, NAN};
	CHECK(footer_sparkline(none, 2, buf, sizeof buf) == 0 && buf[0] == '\0');
	CHECK(footer_sparkline(v, 0, buf, sizeof buf) == 0);
	CHECK(footer_sparkline(v, 40, buf, 8) == 6 && strcmp(buf, "▁█") == 0);
}

/* More than 48 values: a reservoir sample of 48, drawn in step order. */
static void test_sampling(void)
{
	footer_series *s = series_of(42, 0);
	for (int i = 0; i < 1000; i++)
		CHECK(footer_series_add(s, "x", i, sin(i / 40.0) * (1 + i / 500.0)) == 0);
	for (int i = 0; i < 49; i++)
		CHECK(footer_series_add(s, "y", i, i) == 0);
	const char *want = "Run history:\n"
	                   "x ▅▅▄▃▃▃▄▄▇▇▇▆▆▅▄▂▃▆▇▇▇▇▅▅▂▂▃▄▅▆███▇▄▂▂▁▁▂\n"
	                   "y ▁▁▁▁▂▂▂▂▂▃▃▃▃▃▃▄▄▄▄▄▅▅▅▅▅▆▆▆▆▆▆▇▇▇▇▇▇███\n";
	expect_render("sampled, seed 42", s, NULL, 0, NULL, 0, want);

	/* Same seed and input: same bytes. */
	footer_series *again = series_of(42, 0);
	for (int i = 0; i < 1000; i++)
		footer_series_add(again, "x", i, sin(i / 40.0) * (1 + i / 500.0));
	for (int i = 0; i < 49; i++)
		footer_series_add(again, "y", i, i);
	expect_render("sampled, seed 42 again", again, NULL, 0, NULL, 0, want);
	footer_series_free(again);
	footer_series_free(s);

	/* A monotonic series stays monotonic whatever is sampled: step order. */
	footer_series *m = series_of(7, 0);
	for (int i = 0; i < 100000; i++)
		footer_series_add(m, "up", i, i);
	char *text;
	CHECK(footer_render(m, NULL, 0, NULL, 0, &text, NULL) == 0);
	const char *line = strstr(text, "up ") + 3;
	CHECK(strncmp(line, "▁", strlen("▁")) == 0);
	CHECK(strstr(line, "█\n") != NULL);
	int last = -1;
	for (const char *p = line; *p != '\n'; p += 3) {
		int g = (unsigned char)p[2] - 0x81; /* ▁ … █ are U+2581 … U+2588 */
		CHECK(g >= last);
		last = g;
	}
	free(text);
	footer_series_free(m);

	/* Steps given out of order are drawn in step order. */
	footer_series *o = series_of(1, 0);
	const int steps[] = {3, 0, 2, 1};
	for (int i = 0; i < 4; i++)
		footer_series_add(o, "k", steps[i], steps[i]);
	expect_render("step order", o, NULL, 0, NULL, 0, "Run history:\nk ▁▃▆█\n");
	footer_series_free(o);
}

/* More than 10 keys: 10 rows, then `+N ...`, in both blocks. */
static void test_more_rows(void)
{
	footer_series *s = series_of(1, 0);
	footer_summary_item sum[13];
	static const char *const keys[13] = {
	    "metric_a", "metric_b", "metric_c", "metric_d", "metric_e", "metric_f", "metric_g",
	    "metric_h", "metric_i", "metric_j", "metric_k", "metric_l", "metric_m"};
	/* Added in reverse: the footer sorts. */
	for (int i = 12; i >= 0; i--) {
		footer_series_add(s, keys[i], 0, 1.0);
		footer_series_add(s, keys[i], 1, i);
		sum[i] = (footer_summary_item)F(keys[i], i / 3.0);
	}
	expect_render("more than 10 keys", s, sum, 13, NULL, 0,
	              "Run history:\n"
	              "metric_a █▁\n"
	              "metric_b ▁▁\n"
	              "metric_c ▁█\n"
	              "metric_d ▁█\n"
	              "metric_e ▁█\n"
	              "metric_f ▁█\n"
	              "metric_g ▁█\n"
	              "metric_h ▁█\n"
	              "metric_i ▁█\n"
	              "metric_j ▁█\n"
	              "+3 ...\n"
	              "\n"
	              "Run summary:\n"
	              "metric_a 0.0\n"
	              "metric_b 0.33333\n"
	              "metric_c 0.66667\n"
	              "metric_d 1.0\n"
	              "metric_e 1.33333\n"
	              "metric_f 1.66667\n"
	              "metric_g 2.0\n"
	              "metric_h 2.33333\n"
	              "metric_i 2.66667\n"
	              "metric_j 3.0\n"
	              "+3 ...\n");
	footer_series_free(s);
}

/* Keys past the limit are ignored, counted once each, and shown in `+N ...`. */
static void test_key_limit(void)
{
	footer_series *s = series_of(1, 3);
	const char *keys[] = {"e", "d", "c", "b", "a"};
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 5; i++)
			CHECK(footer_series_add(s, keys[i], round, round + i) == FOOTER_OK);
	CHECK(footer_series_keys(s) == 3);
	CHECK(footer_series_keys_dropped(s) == 2);
	/* The first three seen are kept (e, d, c), whatever their sort order. */
	expect_render("key limit", s, NULL, 0, NULL, 0,
	              "Run history:\n"
	              "c ▁▅█\n"
	              "d ▁▅█\n"
	              "e ▁▅█\n"
	              "+2 ...\n");
	char long_key[FOOTER_MAX_KEY_BYTES + 2];
	memset(long_key, 'k', sizeof long_key - 1);
	long_key[sizeof long_key - 1] = '\0';
	footer_series *l = series_of(1, 0);
	CHECK(footer_series_add(l, long_key, 0, 1) == FOOTER_OK);
	CHECK(footer_series_keys(l) == 0 && footer_series_keys_dropped(l) == 1);
	footer_series_free(l);
	footer_series_free(s);
}

/* Summary values: strings cut at 20 code points (20 itself gets "..."), ints,
 * bools as Python prints them, `_` keys hidden, control characters neutralised. */
static void test_summary_values(void)
{
	char e25[64] = "";
	for (int i = 0; i < 25; i++)
		strcat(e25, "é");
	const footer_summary_item sum[] = {
	    S("s19", "aaaaaaaaaaaaaaaaaaa"),
	    S("s20", "bbbbbbbbbbbbbbbbbbbb"),
	    S("s25", "abcdefghijklmnopqrstuvwxy"),
	    S("utf", e25),
	    I("n", -42),
	    B("flag", true),
	    B("off", false),
	    F("_hidden", 1.0),
	    S("ctl", "tab\there\x1b[2J"),
	};
	expect_render("summary values", NULL, sum, N(sum), NULL, 0,
	              "Run summary:\n"
	              " ctl tab?here?[2J\n"
	              "flag True\n"
	              "   n -42\n"
	              " off False\n"
	              " s19 aaaaaaaaaaaaaaaaaaa\n"
	              " s20 bbbbbbbbbbbbbbbbbbbb...\n"
	              " s25 abcdefghijklmnopqrst...\n"
	              " utf éééééééééééééééééééé...\n");

	/* A repeated key: the last one wins. */
	const footer_summary_item dup[] = {F("loss", 1.0), I("epoch", 3), F("loss", 0.5)};
	expect_render("repeated summary key", NULL, dup, N(dup), NULL, 0,
	              "Run summary:\n"
	              "epoch 3\n"
	              " loss 0.5\n");
}

/* Keys right-aligned to the longest shown, width in code points. */
static void test_alignment(void)
{
	footer_series *s = series_of(1, 0);
	footer_series_add(s, "lr", 0, 0.1);
	footer_series_add(s, "lr", 1, 0.01);
	footer_series_add(s, "très_long_clé", 0, 1);
	footer_series_add(s, "très_long_clé", 1, 2);
	footer_series_add(s, "bb", 0, 3);
	footer_series_add(s, "bb", 1, 1);
	const footer_summary_item sum[] = {F("lr", 0.01), I("très_long_clé", 2), F("bb", 1.0)};
	expect_render("alignment", s, sum, N(sum), NULL, 0,
	              "Run history:\n"
	              "           bb █▁\n"
	              "           lr █▁\n"
	              "très_long_clé ▁█\n"
	              "\n"
	              "Run summary:\n"
	              "           bb 1.0\n"
	              "           lr 0.01\n"
	              "très_long_clé 2\n");
	footer_series_free(s);
}

/* Python's repr(round(x, 5)). */
static void test_float_format(void)
{
	static const struct {
		double x;
		const char *want;
	} cases[] = {
	    {0.958491234, "0.95849"},
	    {0.1, "0.1"},
	    {3.0, "3.0"},
	    {100.0, "100.0"},
	    {-2.5, "-2.5"},
	    {1e-5, "1e-05"},
	    {-1e-5, "-1e-05"},
	    {1e-4, "0.0001"},
	    {0.00015, "0.00015"},
	    {1.5e-5, "2e-05"}, /* the double is just above the tie */
	    {5e-6, "1e-05"},   /* likewise */
	    {0.000004, "0.0"},
	    {-0.000001, "-0.0"},   /* Python keeps the sign of zero */
	    {0.015625, "0.01562"}, /* an exact tie: to even */
	    {123.456785, "123.45678"},
	    {2.675, "2.675"},
	    {1.0 / 3, "0.33333"},
	    {2.0 / 3, "0.66667"},
	    {0.1 + 0.2, "0.3"},
	    {123456.123456, "123456.12346"},
	    {1234567.000005, "1234567.00001"},
	    {1e15, "1000000000000000.0"},
	    {9999999999999998.0, "9999999999999998.0"},
	    {1e16, "1e+16"},
	    {1e22, "1e+22"},
	    {12345678901234567890.0, "1.2345678901234567e+19"},
	    {1.5e300, "1.5e+300"},
	    {1.7976931348623157e308, "1.7976931348623157e+308"},
	    {NAN, "nan"},
	    {INFINITY, "inf"},
	    {-INFINITY, "-inf"},
	};
	char buf[64];
	for (size_t i = 0; i < N(cases); i++) {
		size_t len = footer_format_double(cases[i].x, buf, sizeof buf);
		CHECK(len == strlen(cases[i].want));
		expect_text(cases[i].want, buf, cases[i].want);
	}
	/* A short buffer is cut, and the full length reported. */
	CHECK(footer_format_double(0.95849, buf, 4) == 7 && strcmp(buf, "0.9") == 0);
}

static void test_edges(void)
{
	/* Nothing to show: "", not NULL; a trailer alone has no blank line before it. */
	expect_render("empty", NULL, NULL, 0, NULL, 0, "");
	const char *const only[] = {"only this"};
	expect_render("trailer only", NULL, NULL, 0, only, 1, "only this\n");
	footer_series *empty = series_of(1, 0);
	CHECK(footer_series_add(empty, "_step", 0, 1) == FOOTER_OK); /* ignored */
	expect_render("empty series", empty, NULL, 0, only, 1, "only this\n");

	/* Arguments. */
	footer_series *s = NULL;
	CHECK(footer_series_new(1, FOOTER_LIMIT_MAX_KEYS + 1, &s) == FOOTER_EINVAL && !s);
	CHECK(footer_series_new(1, 0, NULL) == FOOTER_EINVAL);
	CHECK(footer_series_add(empty, "", 0, 1) == FOOTER_EINVAL);
	CHECK(footer_series_add(empty, NULL, 0, 1) == FOOTER_EINVAL);
	CHECK(footer_series_add(NULL, "k", 0, 1) == FOOTER_EINVAL);
	char *text = NULL;
	CHECK(footer_render(NULL, NULL, 1, NULL, 0, &text, NULL) == FOOTER_EINVAL);
	CHECK(footer_render(NULL, NULL, 0, NULL, 0, NULL, NULL) == FOOTER_EINVAL);
	footer_series_free(NULL);
	CHECK(strcmp(footer_strerror(FOOTER_ENOMEM), "out of memory") == 0);

	/* footer_print writes what footer_render returns. */
	FILE *f = tmpfile();
	CHECK(f != NULL);
	if (f) {
		const footer_summary_item sum[] = {F("loss", 0.25)};
		CHECK(footer_print(f, empty, sum, 1, only, 1) == FOOTER_OK);
		char got[128] = "";
		rewind(f);
		size_t n = fread(got, 1, sizeof got - 1, f);
		got[n] = '\0';
		expect_text("footer_print", got, "Run summary:\nloss 0.25\n\nonly this\n");
		fclose(f);
	}
	footer_series_free(empty);
}

int main(void)
{
	test_spec_example();
	test_nan_inf_constant();
	test_rounding_ties();
	test_downsampling();
	test_sampling();
	test_more_rows();
	test_key_limit();
	test_summary_values();
	test_alignment();
	test_float_format();
	test_edges();
	printf("footer_test: %d golden texts\n", goldens);
	return CHECK_SUMMARY("footer_test");
}
