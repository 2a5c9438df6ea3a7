/*
 * fmt_test.c — fmt_double_g against the search it replaced (kept here as the
 * oracle): byte for byte on the edges of the double range (zeros, subnormals,
 * powers of two and ten, integers around 2^53, the switches between fixed
 * and exponent notation, exact ties), then on random bit patterns and random
 * decimal-like values k * 10^j and k / 10^j; every output must also read back
 * to its value. TRACKD_FMT_ITERATIONS sets the size of each random set
 * (default 1,000,000: a few seconds under ASan), TRACKD_FMT_SEED the seed.
 */
#include "check.h"
#include "fmt.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The old fmt.c, verbatim: what every stored byte was written with. */
static void oracle(char *out, size_t cap, double d, int from, const char *conv)
{
	for (int prec = from; prec <= 17; prec++) {
		snprintf(out, cap, conv, prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

struct tally {
	uint64_t compared;
	uint64_t mismatched;
};

/* Compares d with the oracle and checks it reads back; reports the first
 * few misses in full and counts every one (one CHECK per value would flood
 * the log). */
static void compare(struct tally *t, double d)
{
	char want[FMT_DOUBLE_MAX], got[FMT_DOUBLE_MAX];
	oracle(want, sizeof want, d, 15, "%.*g");
	fmt_double_g(got, sizeof got, d);
	t->compared++;
	if (strcmp(want, got) == 0 && strtod(got, NULL) == d)
		return;
	if (t->mismatched++ < 20) {
		uint64_t bits;
		memcpy(&bits, &d, sizeof bits);
		CHECK_FAIL("0x%016" PRIx64 ": want %s got %s", bits, want, got);
	}
}

/* d and its four nearest neighbours on each side. */
static void compare_around(struct tally *t, double d)
{
	double lo = d, hi = d;
	compare(t, d);
	compare(t, -d);
	for (int i = 0; i < 4; i++) {
		lo = nextafter(lo, -INFINITY);
		hi = nextafter(hi, INFINITY);
		if (isfinite(lo))
			compare(t, lo);
		if (isfinite(hi))
			compare(t, hi);
	}
}

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static uint64_t env_u64(const char *name, uint64_t fallback)
{
	const char *s = getenv(name);
	return s && *s ? strtoull(s, NULL, 10) : fallback;
}

static void report(const char *what, const struct tally *t)
{
	printf("fmt_test: %-40s %11" PRIu64 " values, %" PRIu64 " differ\n", what, t->compared,
	       t->mismatched);
	CHECK_EQ(t->mismatched, 0);
}

static void test_known(void)
{
	char b[FMT_DOUBLE_MAX];
	fmt_double_g(b, sizeof b, 0.1);
	CHECK_STR_EQ(b, "0.1");
	fmt_double_g(b, sizeof b, 5e-324);
	CHECK_STR_EQ(b, "4.94065645841247e-324", "subnormals keep %%.15g's digits");
	fmt_double_g(b, sizeof b, 1e15);
	CHECK_STR_EQ(b, "1e+15");
	fmt_double_g(b, sizeof b, 1234567890123456.0);
	CHECK_STR_EQ(b, "1234567890123456", "16 digits: %%.16g prints it fixed");
	fmt_double_g(b, sizeof b, 1e15 + 0.25);
	CHECK_STR_EQ(b, "1000000000000000.2", "an exact tie goes to even");
	fmt_double_g(b, sizeof b, -0.0);
	CHECK_STR_EQ(b, "-0");
	char small[4];
	fmt_double_g(small, sizeof small, 0.125);
	CHECK_STR_EQ(small, "0.1", "cut to cap as snprintf would");
}

static void test_edges(void)
{
	struct tally t = {0};
	compare(&t, 0.0);
	compare(&t, -0.0);
	compare_around(&t, DBL_MAX);
	compare_around(&t, DBL_MIN);
	compare_around(&t, DBL_TRUE_MIN);
	compare_around(&t, nextafter(DBL_MIN, 0)); /* largest subnormal */
	for (int e = -1074; e <= 1023; e++)
		compare_around(&t, ldexp(1, e));
	for (int e = -323; e <= 308; e++) {
		char s[16];
		snprintf(s, sizeof s, "1e%d", e);
		compare_around(&t, strtod(s, NULL));
	}
	report("powers of 2 and 10, extremes", &t);

	t = (struct tally){0};
	for (int i = 0; i <= 20000; i++)
		compare(&t, i);
	for (int e = 17; e <= 64; e++)
		for (int64_t i = -300; i <= 300; i++)
			compare(&t, ldexp(1, e) + (double)i);
	for (int64_t i = -3000; i <= 3000; i++)
		compare(&t, 1e15 + (double)i * 0.25); /* ties at 17 digits */
	report("integers, 2^53 neighbourhood, ties", &t);

	t = (struct tally){0};
	static const char *const switches[] = {
	    "1e-5",
	    "1e-4",
	    "0.0001",
	    "0.00009999999999999999",
	    "9.99999999999999e-5",
	    "1e15",
	    "1e16",
	    "1e17",
	    "9.999999999999999e14",
	    "9.99999999999999e14",
	    "999999999999999.9",
	    "9999999999999998",
	    "99999999999999990",
	    "1.5e15",
	    "1.25e16",
	    "123456789012345.6",
	    "1234567890123456.7",
	    "0.000123456789012345",
	};
	for (size_t i = 0; i < sizeof switches / sizeof switches[0]; i++)
		compare_around(&t, strtod(switches[i], NULL));
	/* Every digit count at every exponent where the notation can switch. */
	for (int e = -8; e <= 20; e++) {
		for (int n = 1; n <= 17; n++) {
			char s[64];
			snprintf(s, sizeof s, "%.*se%d", n + 1, "9.9999999999999999", e);
			compare_around(&t, strtod(s, NULL));
			snprintf(s, sizeof s, "%.*se%d", n + 1, "1.0000000000000001", e);
			compare_around(&t, strtod(s, NULL));
		}
	}
	report("notation switches", &t);

	t = (struct tally){0};
	uint64_t state = 15;
	for (int digits = 15; digits <= 17; digits++) {
		for (int i = 0; i < 20000; i++) {
			uint64_t lo = 1, m;
			for (int k = 1; k < digits; k++)
				lo *= 10;
			m = lo + splitmix64(&state) % (9 * lo);
			char s[64];
			int e = (int)(splitmix64(&state) % 640) - 330;
			snprintf(s, sizeof s, "%" PRIu64 "e%d", m, e);
			double d = strtod(s, NULL);
			if (isfinite(d))
				compare(&t, d);
		}
	}
	for (uint64_t bits = 1; bits < (UINT64_C(1) << 52); bits = bits * 3 + 1) {
		double d;
		memcpy(&d, &bits, sizeof d); /* subnormals across their range */
		compare(&t, d);
	}
	report("15/16/17 significant digits, subnormals", &t);
}

static void test_random(void)
{
	uint64_t n = env_u64("TRACKD_FMT_ITERATIONS", 1000000);
	uint64_t state = env_u64("TRACKD_FMT_SEED", 20260607);
	struct tally t = {0};
	while (t.compared < n) {
		uint64_t bits = splitmix64(&state);
		double d;
		memcpy(&d, &bits, sizeof d);
		if (isfinite(d))
			compare(&t, d);
	}
	report("random bit patterns", &t);

	static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
	                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
	                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
	t = (struct tally){0};
	while (t.compared < n) {
		uint64_t r = splitmix64(&state);
		int len = (int)(r % 18);      /* up to 17 digits in k */
		int j = (int)((r >> 8) % 23); /* divided by 10^0 … 10^22 */
		bool times = (r >> 16) & 1;   /* or multiplied */
		uint64_t k = splitmix64(&state) % (uint64_t)pow10[len] + 1;
		double d = times ? (double)k * pow10[j] : (double)k / pow10[j];
		compare(&t, (r >> 17) & 1 ? -d : d);
	}
	report("random decimal-like k*10^j, k/10^j", &t);
}

int main(void)
{
	test_known();
	test_edges();
	test_random();
	return CHECK_SUMMARY("fmt_test");
}
