/*
 * footer.h — the W&B-style run footer ("Run history:" sparklines, "Run summary:"
 * values, then the caller's trailer lines), byte for byte as specified in
 * design/WANDB-UPSTREAM.md § "Terminal output at finish".
 *
 * Two callers: libtrackd prints it at td_finish from the values the process
 * logged; `trackctl show` prints it from a run's history fetched from the agent.
 * The library parses nothing: callers feed plain (key, step, double) values and
 * an array of summary items.
 *
 *   footer_series   accumulates history values per key with bounded memory:
 *                   every key keeps a uniform random sample (reservoir, algorithm R)
 *                   of at most FOOTER_SAMPLE_MAX values; the pseudo-random
 *                   generator is seeded by the caller, so the same input and seed
 *                   always give the same footer. At most `max_keys` keys are
 *                   tracked; further keys are ignored and counted.
 *   footer_render   writes the text into a malloc'd string; footer_print into a
 *                   FILE.
 *
 * What is shown (the W&B rules):
 *   - keys starting with `_` never appear (footer_series_add ignores them, the
 *     summary renderer skips them); only top-level keys: the caller passes no
 *     nested ones. History values are numbers only: the caller feeds doubles and
 *     ints, not bools (as wandb-core, which samples numbers only).
 *   - keys sorted by their UTF-8 bytes (= Unicode code point order, as Python's
 *     sorted()), right-aligned to the longest key shown (width in code points,
 *     as Python's str.format), one space, then the value;
 *   - at most FOOTER_MAX_ROWS rows per block, then a line `+N ...` (N = keys not
 *     shown, including keys the series had to ignore), not indented;
 *   - sparkline: the sample in step order, downsampled to at most 40 points with
 *     indices (i*(n-1))/39 in integer arithmetic (so the first and last value are
 *     always kept; W&B's Python computes the ratio in floating point and loses the
 *     last point when n = 46); glyph ▁▂▃▄▅▆▇█ with index round((x-min)*7/(max-min))
 *     evaluated in double, rounded half to even as Python's round(); min and max
 *     over the finite points; NaN and ±Inf print a space; a constant series prints
 *     ▁ for each finite point; a key whose points are all non-finite gets no row
 *     (as W&B, whose sparkify returns "");
 *   - summary values: doubles as Python's repr(round(x, 5)) (0.95849, 0.1, 3.0,
 *     1e-05, nan, inf, -inf, -0.0); ints as decimal; bools as True / False;
 *     strings of 20 or more code points cut to the first 20 plus "..." (W&B's
 *     `value[:20] + "..." * (len(value) >= 20)`: exactly 20 gets "..." too);
 *   - terminal safety (our addition): control characters (U+0000–U+001F, U+007F)
 *     in keys and strings print as `?`, so run data cannot move the cursor.
 *   - layout: the history block, a blank line, the summary block, a blank line,
 *     then the trailer lines; a block with no rows is left out with its blank
 *     line. Every line ends with "\n".
 *
 * Threading: a footer_series is not thread-safe (libtrackd serialises calls with
 * its run mutex). Rendering only reads it. Ownership: every pointer passed in is
 * borrowed; the series copies the keys it keeps.
 * Errors: 0, or a negative footer_err (numbered as the agent's trackd_err).
 */
#ifndef TRACKD_FOOTER_H
#define TRACKD_FOOTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FOOTER_SAMPLE_MAX       48   /* values kept per key */
#define FOOTER_SPARK_POINTS     40   /* points drawn per key */
#define FOOTER_MAX_ROWS         10   /* rows per block before `+N ...` */
#define FOOTER_STRING_CUT       20   /* code points of a summary string shown */
#define FOOTER_DEFAULT_MAX_KEYS 1024 /* keys tracked by a series */
#define FOOTER_LIMIT_MAX_KEYS   65536
#define FOOTER_MAX_KEY_BYTES    1024 /* longer keys are ignored (and counted) */

typedef enum footer_err {
	FOOTER_OK = 0,
	FOOTER_ENOMEM = -1,
	FOOTER_EINVAL = -2,
} footer_err;

const char *footer_strerror(int err);

/* ---- history ------------------------------------------------------------- */

typedef struct footer_series footer_series;

/* A new, empty set. `max_keys` 0 means FOOTER_DEFAULT_MAX_KEYS; at most
 * FOOTER_LIMIT_MAX_KEYS. `seed` drives the sampling: same seed, same values →
 * same footer (trackctl seeds with a hash of the run path). Memory: about
 * 1.2 KiB per tracked key plus 8 bytes × 2 × max_keys up front. */
int footer_series_new(uint64_t seed, size_t max_keys, footer_series **out);
void footer_series_free(footer_series *s); /* NULL is a no-op */

/* Adds one history value. `step` orders the sample for drawing (ties keep the
 * order of the calls). Keys starting with `_` are ignored (returns 0); so are
 * keys beyond max_keys or longer than FOOTER_MAX_KEY_BYTES, which are counted.
 * NaN and ±Inf are kept (they draw as spaces). FOOTER_EINVAL: NULL or empty key. */
int footer_series_add(footer_series *s, const char *key, int64_t step, double value);

size_t footer_series_keys(const footer_series *s); /* keys tracked */
/* Distinct keys ignored for the key limit or their length (exact up to 4096, then
 * a lower bound). */
uint64_t footer_series_keys_dropped(const footer_series *s);

/* ---- summary ------------------------------------------------------------- */

typedef enum footer_kind {
	FOOTER_DOUBLE,
	FOOTER_INT,
	FOOTER_BOOL,
	FOOTER_STRING,
} footer_kind;

/* One top-level summary value (borrowed). Pass only numbers, bools and strings:
 * W&B shows nothing else. If a key repeats, the last one wins (as a Python dict). */
typedef struct footer_summary_item {
	const char *key;
	footer_kind kind;
	union {
		double d;
		int64_t i;
		bool b;
		const char *s; /* UTF-8, NUL-terminated */
	} v;
} footer_summary_item;

/* ---- rendering ----------------------------------------------------------- */

/* The whole footer. `history` may be NULL (no history block), `summary` NULL when
 * n_summary is 0, `trailer` NULL when n_trailer is 0 (each trailer line is printed
 * as given, followed by "\n"). On success *out is a NUL-terminated string owned by
 * the caller (free()), *out_len its length (out_len may be NULL). Nothing at all
 * to show gives "". */
int footer_render(const footer_series *history, const footer_summary_item *summary,
                  size_t n_summary, const char *const *trailer, size_t n_trailer, char **out,
                  size_t *out_len);

/* footer_render, then fwrite to `f`. FOOTER_EINVAL also when the write fails. */
int footer_print(FILE *f, const footer_series *history, const footer_summary_item *summary,
                 size_t n_summary, const char *const *trailer, size_t n_trailer);

/* The building blocks, exposed for tests and for callers that draw one series. */

/* Sparkline of values[0..n) in the given order (downsampled to 40 points, glyphs as
 * above). Writes at most 3 × 40 bytes + NUL into buf (cap ≥ 121 always suffices);
 * returns the length, 0 when every point is non-finite or n is 0. */
size_t footer_sparkline(const double *values, size_t n, char *buf, size_t cap);

/* Python's repr(round(x, 5)) into buf (cap ≥ 32 always suffices). Returns the
 * length. */
size_t footer_format_double(double x, char *buf, size_t cap);

#endif
