/*
 * series.h — the series index of a run: what the charts of `trackctl ui` read,
 * kept by the local sink as it materialises history, so that a series query
 * reads bounded data whatever the run's length and never parses history.jsonl.
 *
 * Layout, in the run dir's `series/` (host byte order: the index is local to
 * the machine that wrote it; every record has a fixed size, so a file's
 * record count is its size divided by the record size, a torn last record
 * being ignored):
 *
 *   rows      per committed history row, in row order: int64 _step,
 *             double _runtime, double _timestamp (24 bytes).
 *   keys      the indexed keys, in order of first appearance: uint32 length,
 *             then the key's bytes. Key i's column is c<i>: keys are
 *             arbitrary strings, file names are not.
 *   c<i>.p    level 0: per point (a row where the key had a number, ints
 *             converted to double): uint64 row, double value (16 bytes).
 *   c<i>.l<L> level L = 1..SERIES_LEVELS: per complete block of
 *             SERIES_FANOUT^L consecutive points of the column: the _step,
 *             _runtime and _timestamp of its last point's row, min, max (NaN
 *             ignored), last value (doubles, 48 bytes). The fan-out of 4 keeps
 *             a query under 4 blocks per bucket on average (16 would read up
 *             to 16: bench P11); all levels together take 16 bytes per point,
 *             as much as level 0.
 *             A partial block is never written: the sink keeps it in memory
 *             and rebuilds it from the column's tail when it loads the index.
 *   legacy    text: the row count built from history.jsonl, for a run stored
 *             by an agent without the index (series_build_from_history).
 *
 * Values indexed: the top-level numbers (ints and doubles) of each row,
 * except _step, _runtime and _timestamp (in `rows`). Nested maps, strings,
 * bools, lists are not charted. At most SERIES_MAX_KEYS keys per run; the
 * values of further keys are counted (series_dropped) and not indexed.
 *
 * Exactly once across crashes: the writer appends only what series_flush()
 * is given; the local sink fsyncs the files (series_sync) before the run's
 * snapshot records the row count (RunSnapshot.series_rows). Opening the
 * writer with that count cuts every file back to it: `rows` to count
 * records, each column to its points of rows < count, each level to the
 * complete blocks of those points (missing blocks are recomputed from the
 * column), and the partial blocks are rebuilt. The rows after the checkpoint
 * are then applied again from the log, getting the same row numbers.
 *
 * Thread-safety: a writer belongs to the sink thread (and its lock). The
 * query reads the files without any lock: files only grow while the sink
 * holds the run, and every read is bounded by the row count passed in (and
 * is a pread, never a mapping: a file cut meanwhile gives a short read, an
 * error or fewer points, never a fault). The writer appends `rows` before the
 * columns, so a reader never sees a point whose row it cannot read.
 */
#ifndef TRACKD_SINKS_LOCAL_SERIES_H
#define TRACKD_SINKS_LOCAL_SERIES_H

#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERIES_DIR             "series"
#define SERIES_MAX_KEYS        10000 /* indexed keys per run */
#define SERIES_DEFAULT_BUCKETS 1000  /* as W&B's charts */
#define SERIES_MAX_BUCKETS     10000
#define SERIES_FANOUT          4 /* points per level-1 block; x4 per level */
#define SERIES_LEVELS          8 /* blocks of 4, 16, …, 65536 points */
/* A history.jsonl line longer than this is skipped by the one-time build for
 * runs stored without the index (a row holds at most 10000 values). */
#define SERIES_BUILD_LINE_MAX (16u << 20)

struct series_writer;

/* One numeric value of a row. */
struct series_value {
	const char *key;
	double value;
};

/* Opens (creates) the index of `run_dir` for appending, cut back to its first
 * `rows` rows (the count of the run's last checkpoint). TRACKD_ECORRUPT when
 * the index holds fewer rows than that (it was removed or never built): the
 * caller rebuilds it (series_build_from_history) and opens it again. */
int series_writer_open(const char *run_dir, uint64_t rows, struct series_writer **out);
void series_writer_free(struct series_writer *w);

/* Adds committed row number series_rows(w): its x values and numbers (the
 * system keys among them are ignored). Kept in memory until series_flush. */
int series_add_row(struct series_writer *w, int64_t step, double runtime, double timestamp,
                   const struct series_value *values, size_t n);
/* Appends what was added to the files (rows first, so a column never holds a
 * row the rows file lacks). On failure nothing is lost: retried next time. */
int series_flush(struct series_writer *w);
/* fdatasync of every file appended since the last sync. */
int series_sync(struct series_writer *w);
uint64_t series_rows(const struct series_writer *w);
/* Values not indexed because their key was over SERIES_MAX_KEYS (since the
 * writer was opened, plus `base`, the count the snapshot carried). */
uint64_t series_dropped(const struct series_writer *w);
void series_set_dropped_base(struct series_writer *w, uint64_t base);

/* Removes the index of run_dir (a run whose files start afresh). */
int series_remove(const char *run_dir);

/* Builds the index of a run stored without one from the first
 * `history_bytes` of its history.jsonl (streamed: memory bounded by one line
 * and the columns' pending blocks), writing `legacy` last; *rows_out = rows
 * indexed. Replaces whatever index was there. Lines that are not a JSON
 * object, or longer than SERIES_BUILD_LINE_MAX, still count as rows (without
 * values), so row numbers match the file's lines. `tick` (may be NULL) is
 * called every 4096 rows: a long build is progress, not a hang (the local
 * sink counts it as its heartbeat, which the systemd watchdog reads). */
int series_build_from_history(const char *run_dir, uint64_t history_bytes, uint64_t *rows_out,
                              void (*tick)(void *arg), void *tick_arg);
/* Whether the index of run_dir holds at least `rows` rows (its rows file). */
bool series_holds(const char *run_dir, uint64_t rows);
/* The row count of a built legacy index (its `legacy` file), or ENOENT. */
int series_legacy_rows(const char *run_dir, uint64_t *rows_out);

/* A series query (SeriesRequest, defaults applied by the caller). */
struct series_query {
	const char *x; /* "_step", "_runtime", "_timestamp" or a key */
	char **keys;   /* none: every key with points, sorted */
	size_t n_keys;
	bool has_min, has_max;
	double x_min, x_max;
	uint32_t buckets; /* 1..SERIES_MAX_BUCKETS */
};

/* Answers from the index of run_dir, reading its first `rows` rows only.
 * Fills out->x, out->series (malloc'd, for free_unpacked), out->rows.
 * Returns 0, TRACKD_ENOENT for an unknown x key (message in err), or a
 * trackd_err.
 *
 * Buckets: over [lo, hi] (x_min/x_max, else the x of the first and last row;
 * for a key as x, its smallest and largest value), of equal width; bucket i
 * holds the points with lo + i*w <= x < lo + (i+1)*w (the last one includes
 * hi). When the range holds at most `buckets` points, they are returned as
 * they are (exact). Otherwise the coarsest level with at least `buckets`
 * blocks in the range is read, and each of its blocks falls in the bucket of
 * its last point's x (a block straddling a bucket's edge counts wholly in
 * the later one); the points before the first and after the last whole block
 * come from level 0. The x axes _step, _runtime and _timestamp are taken as
 * non-decreasing with the row (ranges are found by binary search); a key as
 * x pairs the two keys' points by row and reads both columns whole (slower:
 * proportional to the run's length). */
int series_query(const char *run_dir, uint64_t rows, const struct series_query *q,
                 Trackd__V1__SeriesReply *out, char *err, size_t errlen);

#endif
