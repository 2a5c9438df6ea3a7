/*
 * fmt.c — shortest round-trip doubles without a search.
 *
 * shortest_digits() is Ryu (Ulf Adams, "Ryū: fast float-to-string
 * conversion", PLDI 2018), written here from the paper: the rounding interval
 * of d is scaled by a power of ten with 125-bit fixed-point multipliers
 * (fmt_pow5.h, generated), then digits are dropped while both ends of the
 * interval still differ. The result is the shortest decimal that strtod reads
 * back to d and, among those, the nearest to d (ties to even).
 *
 * fmt_double_g must print exactly what the old search printed (the first of
 * "%.15g", "%.16g", "%.17g" that strtod reads back to d), because stores and
 * uploads already hold that text. Why the shortest digits give the same text
 * for a normal d:
 *   - shortest length n <= 15: d is within half an ulp (< 1.2e-16 d) of
 *     those digits, and 15-digit decimals are at least 1e-15 d apart, so
 *     %.15g's correct rounding is the same digits with zeros after them;
 *   - n = 16 or 17: %.{n}g is the n-digit decimal nearest to d; it lies
 *     inside the rounding interval whenever one does, since the interval is
 *     symmetric about d, and is then the one Ryu picks (ties to even in
 *     both); %.15g (and %.16g when n = 17) do not read back.
 * Where that reasoning fails the old search is kept:
 *   - a subnormal: its ulp is wide, so 15 correctly rounded digits read back
 *     although they are not the shortest ("4.94065645841247e-324");
 *   - a power of two above the smallest normal with n > 15: the lower
 *     neighbour is half as far as the upper one, so the nearest n-digit
 *     decimal can fall outside the interval on the near side, and the search
 *     takes one more digit.
 * fmt_test.c checks all of this byte for byte against the old search.
 */
#include "fmt.h"

#include "fmt_pow5.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

#define MANTISSA_BITS 52
#define EXPONENT_BIAS 1023

/* The old search, kept for the cases named above and for fmt_double_e. */
static void search(char *out, size_t cap, double d, int from, const char *conv)
{
	for (int prec = from; prec <= 17; prec++) {
		snprintf(out, cap, conv, prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

/* floor(log10(2^e)) for 0 <= e <= 1650 and floor(log10(5^e)) for
 * 0 <= e <= 2620: fixed-point logarithms, exact over those ranges (paper, 3.3). */
static int log10_pow2(int e)
{
	return (int)(((uint32_t)e * 78913u) >> 18);
}

static int log10_pow5(int e)
{
	return (int)(((uint32_t)e * 732923u) >> 20);
}

/* Bit length of 5^e (0 <= e <= 3528): ceil(log2(5^e)), and 1 for e = 0. */
static int pow5_bits(int e)
{
	return (int)((((uint32_t)e * 1217359u) >> 19) + 1);
}

/* (m * mul) >> shift with a 128-bit mul; shift >= 64 in every use, and
 * m < 2^55, so the product fits in 183 bits and the result in 64. */
static uint64_t mul_shift(uint64_t m, const uint64_t mul[2], int shift)
{
	u128 lo = (u128)m * mul[0];
	u128 hi = (u128)m * mul[1];
	return (uint64_t)(((lo >> 64) + hi) >> (shift - 64));
}

static bool multiple_of_pow5(uint64_t v, int p)
{
	int n = 0;
	while (v % 5 == 0) {
		v /= 5;
		n++;
	}
	return n >= p;
}

static bool multiple_of_pow2(uint64_t v, int p)
{
	return (v & ((UINT64_C(1) << p) - 1)) == 0;
}

/* Shortest decimal of a finite, non-zero |d|: *digits * 10^*exp10, digits
 * without trailing zeros removed (they may remain; callers strip). */
struct decimal {
	uint64_t digits;
	int exp10;
};

static struct decimal shortest_digits(uint64_t bits)
{
	uint64_t frac = bits & ((UINT64_C(1) << MANTISSA_BITS) - 1);
	int biased = (int)((bits >> MANTISSA_BITS) & 0x7ff);

	/* d = m2 * 2^e2, two extra bits so the interval ends are integers too. */
	uint64_t m2;
	int e2;
	if (biased == 0) {
		m2 = frac;
		e2 = 1 - EXPONENT_BIAS - MANTISSA_BITS - 2;
	} else {
		m2 = frac | (UINT64_C(1) << MANTISSA_BITS);
		e2 = biased - EXPONENT_BIAS - MANTISSA_BITS - 2;
	}
	/* strtod rounds ties to even: the ends belong to d when m2 is even. */
	bool accept_ends = (m2 & 1) == 0;
	uint64_t mv = 4 * m2;
	/* The lower neighbour is half as far at a power of two (not below the
	 * smallest normal, where the spacing does not change). */
	int lower_shift = (frac != 0 || biased <= 1) ? 1 : 0;
	uint64_t mp = mv + 2;
	uint64_t mm = mv - 1 - (uint64_t)lower_shift;

	/* vr, vp, vm: d and its interval ends times 10^-e10, truncated. The
	 * *_exact flags say the truncation dropped nothing, which matters only
	 * for the ends (included or not) and for exact ties. */
	uint64_t vr, vp, vm;
	int e10;
	bool vm_exact = false, vr_exact = false;
	if (e2 >= 0) {
		int q = log10_pow2(e2) - (e2 > 3);
		e10 = q;
		int k = FMT_POW5_BITS + pow5_bits(q) - 1;
		int shift = -e2 + q + k;
		vr = mul_shift(mv, fmt_pow5_inv[q], shift);
		vp = mul_shift(mp, fmt_pow5_inv[q], shift);
		vm = mul_shift(mm, fmt_pow5_inv[q], shift);
		/* Exact only if 5^q divides the scaled value; 5^24 > 2^55 > mp,
		 * so from q = 24 on nothing is exact. At most one of mm, mv, mp
		 * is a multiple of 5. */
		if (q < 24) {
			if (mv % 5 == 0)
				vr_exact = multiple_of_pow5(mv, q);
			else if (accept_ends)
				vm_exact = multiple_of_pow5(mm, q);
			else
				vp -= multiple_of_pow5(mp, q);
		}
	} else {
		int q = log10_pow5(-e2) - (-e2 > 1);
		e10 = q + e2;
		int i = -e2 - q;
		int k = pow5_bits(i) - FMT_POW5_BITS;
		int shift = q - k;
		vr = mul_shift(mv, fmt_pow5[i], shift);
		vp = mul_shift(mp, fmt_pow5[i], shift);
		vm = mul_shift(mm, fmt_pow5[i], shift);
		/* Exact iff 2^q divides the scaled value: mv has two trailing
		 * zero bits, mp one, mm one exactly when lower_shift is 1. */
		if (q <= 1) {
			vr_exact = true;
			if (accept_ends)
				vm_exact = lower_shift == 1;
			else
				vp--;
		} else if (q < 63) {
			vr_exact = multiple_of_pow2(mv, q);
		}
	}

	int removed = 0;
	int last_removed = 0;
	uint64_t out;
	if (vm_exact || vr_exact) {
		/* Rare: exact ends or an exact tie need the digits dropped kept
		 * track of. */
		while (vp / 10 > vm / 10) {
			vm_exact &= vm % 10 == 0;
			vr_exact &= last_removed == 0;
			last_removed = (int)(vr % 10);
			vr /= 10;
			vp /= 10;
			vm /= 10;
			removed++;
		}
		if (vm_exact) {
			while (vm % 10 == 0) {
				vr_exact &= last_removed == 0;
				last_removed = (int)(vr % 10);
				vr /= 10;
				vp /= 10;
				vm /= 10;
				removed++;
			}
		}
		/* An exact tie goes to the even neighbour, as printf does. */
		if (vr_exact && last_removed == 5 && vr % 2 == 0)
			last_removed = 4;
		out = vr + ((vr == vm && (!accept_ends || !vm_exact)) || last_removed >= 5);
	} else {
		bool round_up = false;
		while (vp / 10 > vm / 10) {
			round_up = vr % 10 >= 5;
			vr /= 10;
			vp /= 10;
			vm /= 10;
			removed++;
		}
		out = vr + (vr == vm || round_up);
	}
	return (struct decimal){out, e10 + removed};
}

static int count_digits(uint64_t v)
{
	int n = 1;
	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

/* Writes the n digits of v (n = count_digits(v)) to out, no NUL. */
static void put_digits(char *out, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* printf's exponent: sign, then at least two digits. */
static char *put_exponent(char *p, int x)
{
	*p++ = 'e';
	*p++ = x < 0 ? '-' : '+';
	if (x < 0)
		x = -x;
	if (x >= 100)
		*p++ = (char)('0' + x / 100);
	*p++ = (char)('0' + x / 10 % 10);
	*p++ = (char)('0' + x % 10);
	return p;
}

/* digits d1d2…dn (no trailing zeros) times 10^x as %e with precision n - 1. */
static char *put_exp_form(char *p, const char *digits, int n, int x)
{
	*p++ = digits[0];
	if (n > 1) {
		*p++ = '.';
		memcpy(p, digits + 1, (size_t)n - 1);
		p += n - 1;
	}
	return put_exponent(p, x);
}

/* Copies the len bytes at text to out with a NUL, cut to cap as snprintf
 * would (callers give FMT_DOUBLE_MAX bytes, so nothing is cut in use). */
static void finish(char *out, size_t cap, const char *text, size_t len)
{
	if (cap == 0)
		return;
	if (len >= cap)
		len = cap - 1;
	memcpy(out, text, len);
	out[len] = '\0';
}

static uint64_t double_bits(double d)
{
	uint64_t bits;
	memcpy(&bits, &d, sizeof bits);
	return bits;
}

/* A power of two above the smallest normal: the lopsided interval. */
static bool lopsided(uint64_t bits)
{
	return (bits & ((UINT64_C(1) << MANTISSA_BITS) - 1)) == 0 &&
	       ((bits >> MANTISSA_BITS) & 0x7ff) > 1;
}

/* The shortest digits without trailing zeros: their count, and x, the
 * decimal exponent of the first digit (d = 0.d1d2… * 10^(x + 1)). */
static int digits_of(uint64_t bits, char digits[20], int *x)
{
	struct decimal dec = shortest_digits(bits);
	while (dec.digits % 10 == 0) {
		dec.digits /= 10;
		dec.exp10++;
	}
	int n = count_digits(dec.digits);
	put_digits(digits, dec.digits, n);
	*x = dec.exp10 + n - 1;
	return n;
}

void fmt_double_g(char *out, size_t cap, double d)
{
	uint64_t bits = double_bits(d);
	int biased = (int)((bits >> MANTISSA_BITS) & 0x7ff);
	if (biased == 0) {
		if ((bits << 1) == 0) {
			finish(out, cap, bits ? "-0" : "0", bits ? 2 : 1);
			return;
		}
		search(out, cap, d, 15, "%.*g"); /* subnormal */
		return;
	}
	char digits[20];
	int x;
	int n = digits_of(bits, digits, &x);
	if (n > 15 && lopsided(bits)) {
		search(out, cap, d, 15, "%.*g");
		return;
	}
	/* %.Pg with P = max(15, n): fixed when -4 <= x < P, else exponent;
	 * trailing zeros (and a bare point) dropped either way. */
	int prec = n > 15 ? n : 15;
	char buf[FMT_DOUBLE_MAX];
	char *p = buf;
	if (bits >> 63)
		*p++ = '-';
	if (x < -4 || x >= prec) {
		p = put_exp_form(p, digits, n, x);
	} else if (x < 0) {
		*p++ = '0';
		*p++ = '.';
		for (int i = -1; i > x; i--)
			*p++ = '0';
		memcpy(p, digits, (size_t)n);
		p += n;
	} else if (x + 1 >= n) {
		memcpy(p, digits, (size_t)n);
		p += n;
		for (int i = n; i <= x; i++)
			*p++ = '0';
	} else {
		memcpy(p, digits, (size_t)x + 1);
		p += x + 1;
		*p++ = '.';
		memcpy(p, digits + x + 1, (size_t)(n - x - 1));
		p += n - x - 1;
	}
	finish(out, cap, buf, (size_t)(p - buf));
}

/* Still the search: only the client's end-of-run footer calls it, a few
 * values per run, so it is not worth a second layout to prove identical. */
void fmt_double_e(char *out, size_t cap, double d)
{
	search(out, cap, d, 0, "%.*e");
}
