/* The series index: see series.h for the format and its crash-safety rule. */
#include "series.h"

#include "buf.h"
#include "errors.h"
#include "files.h"
#include "hash.h"
#include "paths.h"

#include <json-c/json.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ROW_BYTES      24
#define POINT_BYTES    16
#define BLOCK_BYTES    48
#define ROWS_FILE      "rows"
#define KEYS_FILE      "keys"
#define LEGACY_FILE    "legacy"
#define KEYS_MAX_BYTES ((size_t)64 << 20) /* 10000 keys of up to a few KiB each */
#define PENDING_MAX    ((size_t)1 << 30)  /* a buffer's hard cap (flushed long before) */
#define READ_CHUNK     4096               /* points read per pread */
/* x values of a batch of points are read in one pread when their rows span
 * at most this many rows, else row by row (a sparse key). */
#define ROWS_SPAN_MAX 65536

/* A partial (or complete, about to be written) block. */
struct block_acc {
	uint64_t n, row_last;
	double x[3]; /* _step, _runtime, _timestamp of row_last */
	double min, max, last;
};

struct column {
	char *key;
	uint32_t no;
	uint64_t points;
	struct block_acc acc[SERIES_LEVELS];
	struct buf pts, lv[SERIES_LEVELS]; /* pending appends */
	bool listed_dirty;
	/* Bit 0: c<i>.p, bit L: c<i>.l<L>. Appended since the last sync (only
	 * those are fsynced at a checkpoint); known to exist (a first append
	 * makes a new directory entry: the dir is fsynced too). */
	uint16_t unsynced, exists;
};

struct series_writer {
	char dir[4096]; /* run_dir/series */
	uint64_t rows;
	struct buf rows_out, keys_out;
	bool rows_unsynced, keys_unsynced, dir_unsynced;
	struct column **cols;
	size_t n_cols;
	uint32_t *table; /* open addressing: column index + 1, 0 = empty */
	size_t table_cap;
	struct column **dirty; /* columns with pending appends */
	size_t n_dirty;
	uint64_t dropped, dropped_base;
};

static uint64_t level_size(int level) /* points per block of level 1..SERIES_LEVELS */
{
	uint64_t g = 1;
	for (int i = 0; i < level; i++)
		g *= SERIES_FANOUT;
	return g;
}

static bool is_system_key(const char *k)
{
	return strcmp(k, "_step") == 0 || strcmp(k, "_runtime") == 0 ||
	       strcmp(k, "_timestamp") == 0;
}

/* ---- raw file access ---------------------------------------------------------------- */

/* Reads up to len bytes at off; returns the bytes read (short at end of file). */
static size_t read_at(int fd, uint64_t off, void *dst, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, (char *)dst + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

static uint64_t fd_size(int fd)
{
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int open_in(const char *dir, const char *name, int flags)
{
	char path[4200];
	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
		return -1;
	return open(path, flags | O_CLOEXEC, 0600);
}

static void col_name(char *out, size_t len, uint32_t no, int level)
{
	if (level == 0)
		snprintf(out, len, "c%" PRIu32 ".p", no);
	else
		snprintf(out, len, "c%" PRIu32 ".l%d", no, level);
}

struct point {
	uint64_t row;
	double v;
};

static struct point point_decode(const unsigned char *p)
{
	struct point pt;
	memcpy(&pt.row, p, 8);
	memcpy(&pt.v, p + 8, 8);
	return pt;
}

/* The row of point i of a column file (UINT64_MAX if unreadable). */
static uint64_t point_row(int fd, uint64_t i)
{
	unsigned char b[POINT_BYTES];
	if (read_at(fd, i * POINT_BYTES, b, sizeof b) != sizeof b)
		return UINT64_MAX;
	return point_decode(b).row;
}

/* The first point whose row is >= row, among the first n. */
static uint64_t points_before_row(int fd, uint64_t n, uint64_t row)
{
	if (n && point_row(fd, n - 1) < row)
		return n; /* the usual case: every point is of an asked row */
	uint64_t lo = 0, hi = n;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (point_row(fd, mid) < row)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* x values (3 doubles) of one row. */
static bool row_x(int rows_fd, uint64_t row, double x[3])
{
	unsigned char b[ROW_BYTES];
	if (read_at(rows_fd, row * ROW_BYTES, b, sizeof b) != sizeof b)
		return false;
	int64_t step;
	memcpy(&step, b, 8);
	x[0] = (double)step;
	memcpy(&x[1], b + 8, 8);
	memcpy(&x[2], b + 16, 8);
	return true;
}

static void block_encode(const struct block_acc *a, unsigned char *p)
{
	memcpy(p, a->x, 24);
	memcpy(p + 24, &a->min, 8);
	memcpy(p + 32, &a->max, 8);
	memcpy(p + 40, &a->last, 8);
}

/* fmin/fmax inline: NaN never wins over a number. */
static inline double min_nan(double a, double b)
{
	return b < a || a != a ? b : a;
}

static inline double max_nan(double a, double b)
{
	return b > a || a != a ? b : a;
}

/* NaN never wins a min or max (fmin/fmax), but is a point and may be last. */
static void acc_add(struct block_acc *a, uint64_t row, const double *x, double v)
{
	if (a->n == 0) {
		a->min = a->max = v;
	} else {
		a->min = min_nan(a->min, v);
		a->max = max_nan(a->max, v);
	}
	a->n++;
	a->row_last = row;
	if (x)
		memcpy(a->x, x, sizeof a->x);
	a->last = v;
}

/* ---- writer ------------------------------------------------------------------------- */

static void column_free(struct column *c)
{
	if (!c)
		return;
	free(c->key);
	buf_fini(&c->pts);
	for (int l = 0; l < SERIES_LEVELS; l++)
		buf_fini(&c->lv[l]);
	free(c);
}

void series_writer_free(struct series_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_cols; i++)
		column_free(w->cols[i]);
	free(w->cols);
	free(w->table);
	free(w->dirty);
	buf_fini(&w->rows_out);
	buf_fini(&w->keys_out);
	free(w);
}

static struct column *lookup(const struct series_writer *w, const char *key)
{
	if (!w->table_cap)
		return NULL;
	size_t mask = w->table_cap - 1;
	for (size_t i = hash_fnv1a64_str(key) & mask;; i = (i + 1) & mask) {
		uint32_t slot = w->table[i];
		if (!slot)
			return NULL;
		if (strcmp(w->cols[slot - 1]->key, key) == 0)
			return w->cols[slot - 1];
	}
}

static void table_put(uint32_t *table, size_t cap, const char *key, uint32_t slot)
{
	size_t mask = cap - 1;
	size_t i = hash_fnv1a64_str(key) & mask;
	while (table[i])
		i = (i + 1) & mask;
	table[i] = slot;
}

/* Adds a column for `key` in memory (its files are created by the first
 * append). */
static struct column *column_add(struct series_writer *w, const char *key, size_t len)
{
	if ((w->n_cols + 1) * 2 > w->table_cap) {
		size_t cap = w->table_cap ? w->table_cap * 2 : 64;
		uint32_t *t = calloc(cap, sizeof *t);
		if (!t)
			return NULL;
		for (size_t i = 0; i < w->n_cols; i++)
			table_put(t, cap, w->cols[i]->key, (uint32_t)i + 1);
		free(w->table);
		w->table = t;
		w->table_cap = cap;
	}
	struct column **cols = realloc(w->cols, (w->n_cols + 1) * sizeof *cols);
	if (!cols)
		return NULL;
	w->cols = cols;
	struct column **dirty = realloc(w->dirty, (w->n_cols + 1) * sizeof *dirty);
	if (!dirty)
		return NULL;
	w->dirty = dirty;
	struct column *c = calloc(1, sizeof *c);
	if (!c || !(c->key = malloc(len + 1))) {
		free(c);
		return NULL;
	}
	memcpy(c->key, key, len);
	c->key[len] = '\0';
	c->no = (uint32_t)w->n_cols;
	buf_init(&c->pts, PENDING_MAX);
	for (int l = 0; l < SERIES_LEVELS; l++)
		buf_init(&c->lv[l], PENDING_MAX);
	w->cols[w->n_cols++] = c;
	table_put(w->table, w->table_cap, c->key, (uint32_t)w->n_cols);
	return c;
}

static void mark_dirty(struct series_writer *w, struct column *c)
{
	if (!c->listed_dirty) {
		c->listed_dirty = true;
		w->dirty[w->n_dirty++] = c;
	}
}

/* Adds one point to a column: level 0 and every level's partial block; a
 * block that becomes complete is queued for its level file. */
static int column_point(struct column *c, uint64_t row, const double x[3], double v)
{
	unsigned char p[POINT_BYTES];
	memcpy(p, &row, 8);
	memcpy(p + 8, &v, 8);
	int rv = buf_append(&c->pts, p, sizeof p);
	if (rv)
		return rv;
	c->points++;
	for (int l = 0; l < SERIES_LEVELS; l++) {
		struct block_acc *a = &c->acc[l];
		acc_add(a, row, x, v);
		if (a->n == level_size(l + 1)) {
			unsigned char b[BLOCK_BYTES];
			block_encode(a, b);
			if ((rv = buf_append(&c->lv[l], b, sizeof b)) != 0)
				return rv;
			memset(a, 0, sizeof *a);
		}
	}
	return TRACKD_OK;
}

int series_add_row(struct series_writer *w, int64_t step, double runtime, double timestamp,
                   const struct series_value *values, size_t n)
{
	unsigned char r[ROW_BYTES];
	memcpy(r, &step, 8);
	memcpy(r + 8, &runtime, 8);
	memcpy(r + 16, &timestamp, 8);
	int rv = buf_append(&w->rows_out, r, sizeof r);
	if (rv)
		return rv;
	uint64_t row = w->rows++;
	const double x[3] = {(double)step, runtime, timestamp};
	for (size_t i = 0; i < n && !rv; i++) {
		if (is_system_key(values[i].key))
			continue;
		struct column *c = lookup(w, values[i].key);
		if (!c) {
			if (w->n_cols >= SERIES_MAX_KEYS) {
				w->dropped++;
				continue;
			}
			/* The key's record and its column together or neither: key i
			 * of the file must be column c<i>. */
			size_t len = strlen(values[i].key), mark = w->keys_out.len;
			uint32_t len32 = (uint32_t)len;
			if ((rv = buf_append(&w->keys_out, &len32, 4)) != 0 ||
			    (rv = buf_append(&w->keys_out, values[i].key, len)) != 0 ||
			    !(c = column_add(w, values[i].key, len))) {
				w->keys_out.len = mark;
				return rv ? rv : TRACKD_ENOMEM;
			}
		}
		rv = column_point(c, row, x, values[i].value);
		mark_dirty(w, c);
	}
	return rv;
}

int series_flush(struct series_writer *w)
{
	int rv = TRACKD_OK;
	/* rows first: a reader never finds a point whose row it cannot read. */
	if (w->rows_out.len) {
		if ((rv = file_append(w->dir, ROWS_FILE, w->rows_out.data, w->rows_out.len)) != 0)
			return rv;
		buf_reset_keep(&w->rows_out, 1u << 20);
		w->rows_unsynced = true;
	}
	if (w->keys_out.len) {
		if ((rv = file_append(w->dir, KEYS_FILE, w->keys_out.data, w->keys_out.len)) != 0)
			return rv;
		buf_reset(&w->keys_out);
		w->keys_unsynced = w->dir_unsynced = true;
	}
	size_t kept = 0;
	for (size_t i = 0; i < w->n_dirty; i++) {
		struct column *c = w->dirty[i];
		char name[64];
		for (int l = 0; l <= SERIES_LEVELS && !rv; l++) {
			struct buf *b = l ? &c->lv[l - 1] : &c->pts;
			if (!b->len)
				continue;
			col_name(name, sizeof name, c->no, l);
			if ((rv = file_append(w->dir, name, b->data, b->len)) != 0)
				break;
			buf_reset_keep(b, 1u << 16);
			c->unsynced |= (uint16_t)(1u << l);
			if (!(c->exists & (1u << l)))
				w->dir_unsynced = true;
			c->exists |= (uint16_t)(1u << l);
		}
		if (rv)
			w->dirty[kept++] = c; /* retried at the next flush */
		else
			c->listed_dirty = false;
	}
	w->n_dirty = kept;
	return rv;
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return TRACKD_EIO;
	int rv = fsync(fd) == 0 ? TRACKD_OK : TRACKD_EIO;
	close(fd);
	return rv;
}

int series_sync(struct series_writer *w)
{
	if (w->rows_out.len || w->keys_out.len || w->n_dirty)
		return TRACKD_EAGAIN; /* not flushed: the snapshot must not count it */
	int rv = TRACKD_OK;
	if (w->rows_unsynced && (rv = file_sync(w->dir, ROWS_FILE, NULL)) != 0)
		return rv;
	w->rows_unsynced = false;
	if (w->keys_unsynced && (rv = file_sync(w->dir, KEYS_FILE, NULL)) != 0)
		return rv;
	w->keys_unsynced = false;
	for (size_t i = 0; i < w->n_cols; i++) {
		struct column *c = w->cols[i];
		for (int l = 0; c->unsynced && l <= SERIES_LEVELS; l++) {
			if (!(c->unsynced & (1u << l)))
				continue;
			char name[64];
			col_name(name, sizeof name, c->no, l);
			if ((rv = file_sync(w->dir, name, NULL)) != 0)
				return rv;
			c->unsynced &= (uint16_t) ~(1u << l);
		}
	}
	if (w->dir_unsynced && (rv = sync_dir(w->dir)) != 0)
		return rv;
	w->dir_unsynced = false;
	return TRACKD_OK;
}

uint64_t series_rows(const struct series_writer *w)
{
	return w->rows;
}

uint64_t series_dropped(const struct series_writer *w)
{
	return w->dropped_base + w->dropped;
}

void series_set_dropped_base(struct series_writer *w, uint64_t base)
{
	w->dropped_base = base;
}

/* Aggregates points [from, to) of a column file into *a, x of its last row
 * from the rows file. */
static int aggregate_points(int fd, int rows_fd, uint64_t from, uint64_t to, struct block_acc *a)
{
	unsigned char *chunk = malloc(READ_CHUNK * POINT_BYTES);
	if (!chunk)
		return TRACKD_ENOMEM;
	memset(a, 0, sizeof *a);
	int rv = TRACKD_OK;
	for (uint64_t i = from; i < to && !rv;) {
		uint64_t n = to - i < READ_CHUNK ? to - i : READ_CHUNK;
		if (read_at(fd, i * POINT_BYTES, chunk, n * POINT_BYTES) != n * POINT_BYTES) {
			rv = TRACKD_EIO;
			break;
		}
		for (uint64_t k = 0; k < n; k++) {
			struct point pt = point_decode(chunk + k * POINT_BYTES);
			acc_add(a, pt.row, NULL, pt.v);
		}
		i += n;
	}
	free(chunk);
	if (!rv && a->n && !row_x(rows_fd, a->row_last, a->x))
		rv = TRACKD_EIO;
	return rv;
}

/* Cuts a column back to its points of rows < rows, its levels to their
 * complete blocks (computing missing ones), and rebuilds its partial blocks. */
static int column_load(struct series_writer *w, struct column *c, int rows_fd, uint64_t rows)
{
	char name[64];
	col_name(name, sizeof name, c->no, 0);
	int fd = open_in(w->dir, name, O_RDONLY);
	uint64_t np = 0;
	if (fd >= 0)
		np = points_before_row(fd, fd_size(fd) / POINT_BYTES, rows);
	int rv = file_truncate(w->dir, name, np * POINT_BYTES);
	c->points = np;
	if (np)
		c->exists |= 1u;
	for (int l = 1; l <= SERIES_LEVELS && !rv; l++) {
		uint64_t g = level_size(l), want = np / g;
		col_name(name, sizeof name, c->no, l);
		int lfd = open_in(w->dir, name, O_RDONLY);
		uint64_t have = fd_size(lfd) / BLOCK_BYTES;
		if (lfd >= 0)
			close(lfd);
		if (have > want)
			have = want;
		if ((rv = file_truncate(w->dir, name, have * BLOCK_BYTES)) != 0)
			break;
		if (want)
			c->exists |= (uint16_t)(1u << l);       /* (written below if missing) */
		for (uint64_t b = have; b < want && !rv; b++) { /* lost or never written */
			struct block_acc a;
			unsigned char enc[BLOCK_BYTES];
			if ((rv = aggregate_points(fd, rows_fd, b * g, (b + 1) * g, &a)) != 0)
				break;
			block_encode(&a, enc);
			rv = file_append(w->dir, name, enc, sizeof enc);
			c->unsynced |= (uint16_t)(1u << l);
		}
		if (!rv && np % g) /* the partial block */
			rv = aggregate_points(fd, rows_fd, want * g, np, &c->acc[l - 1]);
	}
	if (fd >= 0)
		close(fd);
	return rv;
}

int series_writer_open(const char *run_dir, uint64_t rows, struct series_writer **out)
{
	*out = NULL;
	struct series_writer *w = calloc(1, sizeof *w);
	if (!w)
		return TRACKD_ENOMEM;
	buf_init(&w->rows_out, PENDING_MAX);
	buf_init(&w->keys_out, KEYS_MAX_BYTES);
	int rv = TRACKD_OK;
	if (snprintf(w->dir, sizeof w->dir, "%s/%s", run_dir, SERIES_DIR) >= (int)sizeof w->dir) {
		series_writer_free(w);
		return TRACKD_EINVAL;
	}
	if (mkdir(w->dir, 0700) != 0 && errno != EEXIST) {
		series_writer_free(w);
		return trackd_err_from_errno(errno);
	}
	int rows_fd = open_in(w->dir, ROWS_FILE, O_RDONLY);
	uint64_t have = fd_size(rows_fd) / ROW_BYTES;
	if (have < rows) {
		if (rows_fd >= 0)
			close(rows_fd);
		series_writer_free(w);
		return TRACKD_ECORRUPT;
	}
	w->rows = rows;
	rv = file_truncate(w->dir, ROWS_FILE, rows * ROW_BYTES);
	char *keys = NULL;
	size_t klen = 0;
	if (!rv) {
		rv = file_read(w->dir, KEYS_FILE, KEYS_MAX_BYTES, &keys, &klen);
		if (rv == TRACKD_ENOENT)
			rv = TRACKD_OK;
	}
	size_t off = 0;
	while (!rv && klen - off >= 4 && w->n_cols < SERIES_MAX_KEYS) {
		uint32_t len;
		memcpy(&len, keys + off, 4);
		if (len > klen - off - 4)
			break; /* a torn last record */
		struct column *c = column_add(w, keys + off + 4, len);
		if (!c)
			rv = TRACKD_ENOMEM;
		else
			rv = column_load(w, c, rows_fd, rows);
		off += 4 + len;
	}
	free(keys);
	if (!rv && off < klen)
		rv = file_truncate(w->dir, KEYS_FILE, off);
	if (rows_fd >= 0)
		close(rows_fd);
	if (rv) {
		series_writer_free(w);
		return rv;
	}
	w->dir_unsynced = true;
	*out = w;
	return TRACKD_OK;
}

int series_remove(const char *run_dir)
{
	char dir[4200];
	if (snprintf(dir, sizeof dir, "%s/%s", run_dir, SERIES_DIR) >= (int)sizeof dir)
		return TRACKD_EINVAL;
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? TRACKD_OK : trackd_err_from_errno(errno);
	struct dirent *de;
	int rv = TRACKD_OK;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) != 0 && errno != ENOENT)
			rv = trackd_err_from_errno(errno);
	}
	closedir(d);
	if (!rv && rmdir(dir) != 0 && errno != ENOENT)
		rv = trackd_err_from_errno(errno);
	return rv;
}

/* ---- one-time build from history.jsonl --------------------------------------------- */

bool series_holds(const char *run_dir, uint64_t rows)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s/%s", run_dir, SERIES_DIR, ROWS_FILE);
	if (stat(path, &st) != 0)
		return rows == 0;
	return (uint64_t)st.st_size / ROW_BYTES >= rows;
}

int series_legacy_rows(const char *run_dir, uint64_t *rows_out)
{
	char dir[4200], *data;
	size_t len;
	snprintf(dir, sizeof dir, "%s/%s", run_dir, SERIES_DIR);
	int rv = file_read(dir, LEGACY_FILE, 64, &data, &len);
	if (rv)
		return rv;
	char *end;
	*rows_out = strtoull(data, &end, 10);
	rv = end == data ? TRACKD_ECORRUPT : TRACKD_OK;
	free(data);
	return rv;
}

/* A row's values: the client's limit per record, and the most keys a run's
 * index takes (so what is over it is over the key limit as well). */
#define BUILD_MAX_VALUES SERIES_MAX_KEYS

static int build_line(struct series_writer *w, struct json_tokener *tok, const char *line,
                      size_t len, int64_t *step, double *runtime, double *timestamp,
                      struct series_value *vals)
{
	size_t n = 0;
	json_object *row = NULL;
	if (len <= SERIES_BUILD_LINE_MAX) {
		json_tokener_reset(tok);
		row = json_tokener_parse_ex(tok, line, (int)len);
	}
	(*step)++; /* a row without _step: the next step */
	if (row && json_object_is_type(row, json_type_object)) {
		json_object_object_foreach(row, key, value)
		{
			json_type t = json_object_get_type(value);
			if (t != json_type_int && t != json_type_double)
				continue;
			if (strcmp(key, "_step") == 0)
				*step = json_object_get_int64(value);
			else if (strcmp(key, "_runtime") == 0)
				*runtime = json_object_get_double(value);
			else if (strcmp(key, "_timestamp") == 0)
				*timestamp = json_object_get_double(value);
			else if (n < BUILD_MAX_VALUES)
				vals[n++] =
				    (struct series_value){key, json_object_get_double(value)};
			else
				w->dropped++; /* over any row's keys: over the key limit too */
		}
	}
	int rv = series_add_row(w, *step, *runtime, *timestamp, vals, n);
	json_object_put(row); /* vals point into it */
	return rv;
}

int series_build_from_history(const char *run_dir, uint64_t history_bytes, uint64_t *rows_out,
                              void (*tick)(void *arg), void *tick_arg)
{
	*rows_out = 0;
	int rv = series_remove(run_dir);
	struct series_writer *w = NULL;
	if (!rv)
		rv = series_writer_open(run_dir, 0, &w);
	if (rv)
		return rv;
	int fd = open_in(run_dir, "history.jsonl", O_RDONLY);
	struct json_tokener *tok = json_tokener_new_ex(128);
	struct series_value *vals = malloc(BUILD_MAX_VALUES * sizeof *vals);
	char *chunk = malloc(1u << 16);
	struct buf line;
	buf_init(&line, SERIES_BUILD_LINE_MAX + (1u << 16));
	if (!tok || !vals || !chunk)
		rv = TRACKD_ENOMEM;
	int64_t step = -1;
	double runtime = 0, timestamp = 0;
	bool too_long = false;
	uint64_t off = 0;
	while (!rv && fd >= 0 && off < history_bytes) {
		size_t want =
		    history_bytes - off < (1u << 16) ? (size_t)(history_bytes - off) : (1u << 16);
		size_t n = read_at(fd, off, chunk, want);
		if (n == 0)
			break;
		off += n;
		const char *p = chunk, *end = chunk + n;
		while (!rv && p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t seg = (size_t)((nl ? nl : end) - p);
			if (!too_long && buf_append(&line, p, seg) != 0)
				too_long = true; /* counted as a row without values */
			if (!nl)
				break;
			rv = build_line(w, tok,
			                too_long    ? ""
			                : line.data ? line.data
			                            : "",
			                too_long ? 0 : line.len, &step, &runtime, &timestamp, vals);
			buf_reset(&line);
			too_long = false;
			p = nl + 1;
			if (!rv && w->rows % 4096 == 0) {
				rv = series_flush(w);
				if (tick)
					tick(tick_arg);
			}
		}
	}
	/* A last line without its newline was never a committed row. */
	if (fd >= 0)
		close(fd);
	buf_fini(&line);
	free(chunk);
	free(vals);
	if (tok)
		json_tokener_free(tok);
	if (!rv)
		rv = series_flush(w);
	if (!rv)
		rv = series_sync(w);
	if (!rv) {
		char text[32];
		int len = snprintf(text, sizeof text, "%" PRIu64 "\n", w->rows);
		rv = file_write_atomic(w->dir, LEGACY_FILE, text, (size_t)len, true);
		*rows_out = w->rows;
	}
	series_writer_free(w);
	return rv;
}

/* ---- query -------------------------------------------------------------------------- */

struct bucket {
	uint64_t count;
	double x, min, max, last;
};

/* What a series is built of, in x order: items are points or blocks. */
struct bucketer {
	struct bucket *b;
	uint32_t n;
	double lo, hi;
	double scale; /* n / (hi - lo), 0 when hi <= lo: everything in bucket 0 */
};

static void bucketer_init(struct bucketer *bk, uint32_t n, double lo, double hi)
{
	bk->n = n;
	bk->lo = lo;
	bk->hi = hi;
	bk->scale = hi > lo ? (double)n / (hi - lo) : 0;
}

/* Bucket floor((x - lo) * n / (hi - lo)), clamped to [0, n-1]. */
static inline void bucket_add(struct bucketer *bk, double x, double min, double max, double last,
                              uint64_t count)
{
	double f = (x - bk->lo) * bk->scale;
	uint32_t i = !(f > 0) ? 0 : f >= bk->n ? bk->n - 1 : (uint32_t)f; /* NaN: 0 */
	struct bucket *b = &bk->b[i];
	if (!b->count) {
		b->min = min;
		b->max = max;
	} else {
		b->min = min_nan(b->min, min);
		b->max = max_nan(b->max, max);
	}
	b->count += count;
	b->x = x;
	b->last = last;
}

/* A reply series, malloc'd for free_unpacked. */
static Trackd__V1__SeriesReply__Series *series_new(const char *key, size_t cap)
{
	Trackd__V1__SeriesReply__Series *s = malloc(sizeof *s);
	if (!s)
		return NULL;
	trackd__v1__series_reply__series__init(s);
	s->key = strdup(key);
	s->x = malloc((cap ? cap : 1) * sizeof(double));
	s->min = malloc((cap ? cap : 1) * sizeof(double));
	s->max = malloc((cap ? cap : 1) * sizeof(double));
	s->last = malloc((cap ? cap : 1) * sizeof(double));
	s->count = malloc((cap ? cap : 1) * sizeof(uint64_t));
	s->has_total_points = s->has_exact = true;
	if (!s->key || !s->x || !s->min || !s->max || !s->last || !s->count) {
		protobuf_c_message_free_unpacked(&s->base, NULL);
		return NULL;
	}
	return s;
}

static void series_put(Trackd__V1__SeriesReply__Series *s, double x, double min, double max,
                       double last, uint64_t count)
{
	size_t i = s->n_x;
	s->x[i] = x;
	s->min[i] = min;
	s->max[i] = max;
	s->last[i] = last;
	s->count[i] = count;
	s->n_x = s->n_min = s->n_max = s->n_last = s->n_count = i + 1;
}

/* The open files of a query. */
struct reader {
	char dir[4200];
	int rows_fd;
	uint64_t rows;
	int axis; /* 0 _step, 1 _runtime, 2 _timestamp, -1 a key */
	char **keys;
	size_t n_keys;
	double *rowx; /* scratch for x lookups */
	unsigned char *rowbuf, *chunk;
	size_t rowbuf_cap;
};

/* x of the given rows (n <= READ_CHUNK, increasing): one pread when they are
 * close together, else one per row. */
static int rows_x(struct reader *rd, const uint64_t *rows, size_t n, double *x)
{
	if (!n)
		return TRACKD_OK;
	uint64_t first = rows[0], span = rows[n - 1] - first + 1;
	if (span <= ROWS_SPAN_MAX && span * ROW_BYTES > rd->rowbuf_cap) {
		unsigned char *p = realloc(rd->rowbuf, (size_t)span * ROW_BYTES);
		if (!p)
			return TRACKD_ENOMEM;
		rd->rowbuf = p;
		rd->rowbuf_cap = (size_t)span * ROW_BYTES;
	}
	if (span <= ROWS_SPAN_MAX) {
		size_t len = (size_t)span * ROW_BYTES;
		if (read_at(rd->rows_fd, first * ROW_BYTES, rd->rowbuf, len) != len)
			return TRACKD_EIO;
		for (size_t i = 0; i < n; i++) {
			double xs[3];
			const unsigned char *p = rd->rowbuf + (rows[i] - first) * ROW_BYTES;
			int64_t step;
			memcpy(&step, p, 8);
			xs[0] = (double)step;
			memcpy(&xs[1], p + 8, 16);
			x[i] = xs[rd->axis];
		}
		return TRACKD_OK;
	}
	for (size_t i = 0; i < n; i++) {
		double xs[3];
		if (!row_x(rd->rows_fd, rows[i], xs))
			return TRACKD_EIO;
		x[i] = xs[rd->axis];
	}
	return TRACKD_OK;
}

/* Visits points [from, to) of a column with their x. */
typedef void (*point_fn)(void *arg, double x, double v);

static int each_point(struct reader *rd, int fd, uint64_t from, uint64_t to, point_fn fn, void *arg)
{
	uint64_t rows[READ_CHUNK];
	double vals[READ_CHUNK];
	for (uint64_t i = from; i < to;) {
		size_t n = to - i < READ_CHUNK ? (size_t)(to - i) : READ_CHUNK;
		if (read_at(fd, i * POINT_BYTES, rd->chunk, n * POINT_BYTES) != n * POINT_BYTES)
			return TRACKD_EIO;
		for (size_t k = 0; k < n; k++) {
			struct point pt = point_decode(rd->chunk + k * POINT_BYTES);
			rows[k] = pt.row;
			vals[k] = pt.v;
		}
		int rv = rows_x(rd, rows, n, rd->rowx);
		if (rv)
			return rv;
		for (size_t k = 0; k < n; k++)
			fn(arg, rd->rowx[k], vals[k]);
		i += n;
	}
	return TRACKD_OK;
}

static double point_x(struct reader *rd, int fd, uint64_t i)
{
	double xs[3];
	uint64_t row = point_row(fd, i);
	if (row == UINT64_MAX || !row_x(rd->rows_fd, row, xs))
		return NAN;
	return xs[rd->axis];
}

/* The first point (of n) whose x is >= x (strict: > x). */
static uint64_t points_at_x(struct reader *rd, int fd, uint64_t n, double x, bool strict)
{
	uint64_t lo = 0, hi = n;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		double m = point_x(rd, fd, mid);
		if (strict ? !(m > x) : m < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void put_exact(void *arg, double x, double v)
{
	series_put(arg, x, v, v, v, 1);
}

static void put_bucket(void *arg, double x, double v)
{
	bucket_add(arg, x, v, v, v, 1);
}

static int column_no(const struct reader *rd, const char *key)
{
	for (size_t i = 0; i < rd->n_keys; i++)
		if (strcmp(rd->keys[i], key) == 0)
			return (int)i;
	return -1;
}

/* Points of column `no` in the first rd->rows rows; fd opened. */
static uint64_t column_points(struct reader *rd, int no, int *fd)
{
	char name[64];
	col_name(name, sizeof name, (uint32_t)no, 0);
	*fd = open_in(rd->dir, name, O_RDONLY);
	if (*fd < 0)
		return 0;
	return points_before_row(*fd, fd_size(*fd) / POINT_BYTES, rd->rows);
}

static Trackd__V1__SeriesReply__Series *emit_buckets(const char *key, struct bucketer *bk,
                                                     uint64_t total)
{
	Trackd__V1__SeriesReply__Series *s = series_new(key, bk->n);
	if (!s)
		return NULL;
	s->total_points = total;
	for (uint32_t i = 0; i < bk->n; i++)
		if (bk->b[i].count)
			series_put(s, bk->b[i].x, bk->b[i].min, bk->b[i].max, bk->b[i].last,
			           bk->b[i].count);
	return s;
}

/* One series on a row axis (_step, _runtime, _timestamp). */
static int series_on_rows(struct reader *rd, const char *key, const struct series_query *q,
                          double lo, double hi, Trackd__V1__SeriesReply__Series **out)
{
	int no = column_no(rd, key), fd = -1;
	uint64_t np = no >= 0 ? column_points(rd, no, &fd) : 0;
	/* The whole run (no range asked): no search. */
	uint64_t i0 = np && q->has_min ? points_at_x(rd, fd, np, lo, false) : 0;
	uint64_t i1 = np && q->has_max ? points_at_x(rd, fd, np, hi, true) : np;
	uint64_t n = i1 > i0 ? i1 - i0 : 0;
	int rv = TRACKD_OK;
	Trackd__V1__SeriesReply__Series *s = NULL;
	if (n <= q->buckets) {
		if (!(s = series_new(key, (size_t)n)))
			rv = TRACKD_ENOMEM;
		if (!rv) {
			s->total_points = np;
			s->exact = true;
			rv = each_point(rd, fd, i0, i1, put_exact, s);
		}
	} else {
		struct bucketer bk = {0};
		bucketer_init(&bk, q->buckets, lo, hi);
		bk.b = calloc(q->buckets, sizeof *bk.b);
		if (!bk.b)
			rv = TRACKD_ENOMEM;
		int level = 0;
		for (int l = SERIES_LEVELS; l >= 1; l--)
			if (n / level_size(l) >= q->buckets) {
				level = l;
				break;
			}
		uint64_t g = level_size(level), b0 = 0, b1 = 0;
		int lfd = -1;
		if (level) {
			char name[64];
			col_name(name, sizeof name, (uint32_t)no, level);
			lfd = open_in(rd->dir, name, O_RDONLY);
			uint64_t nb = fd_size(lfd) / BLOCK_BYTES;
			b0 = (i0 + g - 1) / g;
			b1 = i1 / g;
			if (b1 > nb)
				b1 = nb;
			if (b1 < b0)
				b1 = b0;
		}
		/* points before the first whole block, the blocks, the points after */
		uint64_t mid0 = level && b1 > b0 ? b0 * g : i1;
		uint64_t mid1 = level && b1 > b0 ? b1 * g : i1;
		if (!rv)
			rv = each_point(rd, fd, i0, mid0, put_bucket, &bk);
		for (uint64_t b = b0; !rv && b < b1;) {
			size_t k = b1 - b < READ_CHUNK / 4 ? (size_t)(b1 - b) : READ_CHUNK / 4;
			if (read_at(lfd, b * BLOCK_BYTES, rd->chunk, k * BLOCK_BYTES) !=
			    k * BLOCK_BYTES) {
				rv = TRACKD_EIO;
				break;
			}
			for (size_t j = 0; j < k; j++) {
				const unsigned char *p = rd->chunk + j * BLOCK_BYTES;
				double x, mm[3]; /* min, max, last */
				memcpy(&x, p + 8 * rd->axis, 8);
				memcpy(mm, p + 24, 24);
				bucket_add(&bk, x, mm[0], mm[1], mm[2], g);
			}
			b += k;
		}
		if (!rv)
			rv = each_point(rd, fd, mid1, i1, put_bucket, &bk);
		if (lfd >= 0)
			close(lfd);
		if (!rv && !(s = emit_buckets(key, &bk, np)))
			rv = TRACKD_ENOMEM;
		free(bk.b);
	}
	if (fd >= 0)
		close(fd);
	if (rv && s) {
		protobuf_c_message_free_unpacked(&s->base, NULL);
		s = NULL;
	}
	*out = s;
	return rv;
}

/* A whole column: its points of the first rd->rows rows, malloc'd. */
static int column_all(struct reader *rd, int no, struct point **out, uint64_t *n)
{
	int fd = -1;
	*out = NULL;
	*n = no >= 0 ? column_points(rd, no, &fd) : 0;
	if (!*n) {
		if (fd >= 0)
			close(fd);
		return TRACKD_OK;
	}
	struct point *p = malloc(*n * sizeof *p);
	unsigned char *raw = malloc(*n * POINT_BYTES);
	int rv = p && raw ? TRACKD_OK : TRACKD_ENOMEM;
	if (!rv && read_at(fd, 0, raw, *n * POINT_BYTES) != *n * POINT_BYTES)
		rv = TRACKD_EIO;
	for (uint64_t i = 0; !rv && i < *n; i++)
		p[i] = point_decode(raw + i * POINT_BYTES);
	free(raw);
	close(fd);
	if (rv) {
		free(p);
		return rv;
	}
	*out = p;
	return TRACKD_OK;
}

/* One series against another key as x: points paired by row. */
static int series_on_key(struct reader *rd, const char *key, const struct series_query *q,
                         const struct point *xs, uint64_t nx, Trackd__V1__SeriesReply__Series **out)
{
	struct point *ys;
	uint64_t ny;
	*out = NULL;
	int rv = column_all(rd, column_no(rd, key), &ys, &ny);
	if (rv)
		return rv;
	double lo = q->has_min ? q->x_min : INFINITY, hi = q->has_max ? q->x_max : -INFINITY;
	uint64_t in = 0;
	for (int pass = 0; pass < 2; pass++) { /* 0: range and count, 1: output */
		struct bucketer bk = {0};
		bucketer_init(&bk, q->buckets, lo, hi);
		Trackd__V1__SeriesReply__Series *s = NULL;
		if (pass == 1) {
			bool exact = in <= q->buckets;
			if (!(s = series_new(key, exact ? (size_t)in : 0)) ||
			    (!exact && !(bk.b = calloc(q->buckets, sizeof *bk.b)))) {
				if (s)
					protobuf_c_message_free_unpacked(&s->base, NULL);
				free(ys);
				return TRACKD_ENOMEM;
			}
			s->total_points = ny;
			s->exact = exact;
		}
		uint64_t a = 0;
		for (uint64_t b = 0; b < ny; b++) {
			while (a < nx && xs[a].row < ys[b].row)
				a++;
			if (a == nx || xs[a].row != ys[b].row)
				continue;
			double x = xs[a].v;
			if (isnan(x))
				continue; /* no place on the axis */
			if (pass == 0) {
				if ((!q->has_min || x >= q->x_min) &&
				    (!q->has_max || x <= q->x_max)) {
					in++;
					if (!q->has_min && x < lo)
						lo = x;
					if (!q->has_max && x > hi)
						hi = x;
				}
				continue;
			}
			if (x < lo || x > hi)
				continue;
			if (bk.b)
				bucket_add(&bk, x, ys[b].v, ys[b].v, ys[b].v, 1);
			else
				series_put(s, x, ys[b].v, ys[b].v, ys[b].v, 1);
		}
		if (pass == 1) {
			if (bk.b) {
				Trackd__V1__SeriesReply__Series *e = emit_buckets(key, &bk, ny);
				protobuf_c_message_free_unpacked(&s->base, NULL);
				free(bk.b);
				s = e;
			}
			free(ys);
			*out = s;
			return s ? TRACKD_OK : TRACKD_ENOMEM;
		}
	}
	free(ys);
	return TRACKD_OK;
}

static int by_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void reader_fini(struct reader *rd)
{
	for (size_t i = 0; i < rd->n_keys; i++)
		free(rd->keys[i]);
	free(rd->keys);
	free(rd->rowx);
	free(rd->rowbuf);
	free(rd->chunk);
	if (rd->rows_fd >= 0)
		close(rd->rows_fd);
}

static int reader_keys(struct reader *rd)
{
	char *data;
	size_t len;
	int rv = file_read(rd->dir, KEYS_FILE, KEYS_MAX_BYTES, &data, &len);
	if (rv == TRACKD_ENOENT)
		return TRACKD_OK;
	if (rv)
		return rv;
	rd->keys = calloc(SERIES_MAX_KEYS, sizeof *rd->keys);
	if (!rd->keys)
		rv = TRACKD_ENOMEM;
	for (size_t off = 0; !rv && len - off >= 4 && rd->n_keys < SERIES_MAX_KEYS;) {
		uint32_t n;
		memcpy(&n, data + off, 4);
		if (n > len - off - 4)
			break;
		if (!(rd->keys[rd->n_keys] = strndup(data + off + 4, n)))
			rv = TRACKD_ENOMEM;
		else
			rd->n_keys++;
		off += 4 + n;
	}
	free(data);
	return rv;
}

int series_query(const char *run_dir, uint64_t rows, const struct series_query *q,
                 Trackd__V1__SeriesReply *out, char *err, size_t errlen)
{
	struct reader rd = {.rows_fd = -1, .rows = rows};
	snprintf(rd.dir, sizeof rd.dir, "%s/%s", run_dir, SERIES_DIR);
	const char *x = q->x && *q->x ? q->x : "_step";
	rd.axis = strcmp(x, "_step") == 0        ? 0
	          : strcmp(x, "_runtime") == 0   ? 1
	          : strcmp(x, "_timestamp") == 0 ? 2
	                                         : -1;
	int rv = reader_keys(&rd);
	rd.rowx = malloc(READ_CHUNK * sizeof *rd.rowx);
	rd.chunk = malloc(READ_CHUNK * POINT_BYTES);
	if (!rv && (!rd.rowx || !rd.chunk))
		rv = TRACKD_ENOMEM;
	if (!rv)
		rd.rows_fd = open_in(rd.dir, ROWS_FILE, O_RDONLY);
	if (!rv && rd.rows_fd >= 0 && fd_size(rd.rows_fd) / ROW_BYTES < rows)
		rd.rows = rows = fd_size(rd.rows_fd) / ROW_BYTES; /* shortened meanwhile */
	if (rd.rows_fd < 0)
		rd.rows = rows = 0;
	int xno = rd.axis < 0 ? column_no(&rd, x) : 0;
	if (!rv && xno < 0) {
		snprintf(err, errlen, "unknown x axis '%s': not a key of this run's history", x);
		reader_fini(&rd);
		return TRACKD_ENOENT;
	}
	/* The keys asked, or every key with points, sorted. */
	char **keys = q->keys;
	size_t n_keys = q->n_keys;
	char **all = NULL;
	if (!rv && !n_keys && rd.n_keys) {
		all = malloc(rd.n_keys * sizeof *all);
		if (!all)
			rv = TRACKD_ENOMEM;
		for (size_t i = 0; !rv && i < rd.n_keys; i++) {
			int fd;
			if (column_points(&rd, (int)i, &fd))
				all[n_keys++] = rd.keys[i];
			if (fd >= 0)
				close(fd);
		}
		if (n_keys)
			qsort(all, n_keys, sizeof *all, by_str);
		keys = all;
	}
	double lo = 0, hi = 0;
	if (!rv && rd.axis >= 0 && rows) {
		double first[3], last[3];
		if (!row_x(rd.rows_fd, 0, first) || !row_x(rd.rows_fd, rows - 1, last))
			rv = TRACKD_EIO;
		lo = q->has_min ? q->x_min : first[rd.axis];
		hi = q->has_max ? q->x_max : last[rd.axis];
	}
	struct point *xs = NULL;
	uint64_t nx = 0;
	if (!rv && rd.axis < 0)
		rv = column_all(&rd, xno, &xs, &nx);
	out->series = rv ? NULL : calloc(n_keys ? n_keys : 1, sizeof *out->series);
	if (!rv && !out->series)
		rv = TRACKD_ENOMEM;
	for (size_t i = 0; !rv && i < n_keys; i++) {
		Trackd__V1__SeriesReply__Series *s;
		rv = rd.axis >= 0 ? series_on_rows(&rd, keys[i], q, lo, hi, &s)
		                  : series_on_key(&rd, keys[i], q, xs, nx, &s);
		if (!rv)
			out->series[out->n_series++] = s;
	}
	free(xs);
	if (!rv && !(out->x = strdup(x)))
		rv = TRACKD_ENOMEM;
	out->has_rows = true;
	out->rows = rows;
	free(all);
	reader_fini(&rd);
	return rv;
}
