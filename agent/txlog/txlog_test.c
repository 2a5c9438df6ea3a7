/*
 * txlog_test.c — the transaction log against its contract (txlog.h) and the
 * reliability rows R2, R3, R12, R16 (RELIABILITY.md).
 *
 * Every record's payload names its own sequence number and is derived from it,
 * so a test can tell exactly which records survived damage, in which order, and
 * that their bytes are intact. Damage is done to copies of a pristine log.
 *
 * Set TXLOG_TEST_BACKLOG_MB=1024 to also time recovery of a large backlog (R16).
 */
#include "txlog.h"
#include "txlog_internal.h"

#include "check.h"

#include "clock.h"
#include "errors.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- checks ------------------------------------------------------------- */

/* For setup steps whose failure makes the rest meaningless. */
#define REQUIRE_OK(expr)                                                                           \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_ != TRACKD_OK) {                                                            \
			fprintf(stderr, "FATAL line %d: %s: %s\n", __LINE__, #expr,                \
			        trackd_strerror(rc_));                                             \
			exit(2);                                                                   \
		}                                                                                  \
	} while (0)

/* ---- records ------------------------------------------------------------ */

static size_t make_payload(uint64_t seq, char *buf, size_t cap)
{
	size_t len = 12 + (size_t)(seq * 7 % 41);
	if (len > cap)
		len = cap;
	int n = snprintf(buf, cap, "s%" PRIu64 ":", seq);
	/* Lower-case letters only: no accidental frame magic ("KCRT") in a payload. */
	for (size_t k = (size_t)n; k < len; k++)
		buf[k] = (char)('a' + (seq * 31 + k * 7) % 26);
	return len;
}

static bool payload_ok(const void *data, size_t len, uint64_t *seq_out)
{
	const char *p = data;
	if (len < 3 || p[0] != 's')
		return false;
	uint64_t seq = 0;
	size_t i = 1;
	while (i < len && p[i] >= '0' && p[i] <= '9')
		seq = seq * 10 + (uint64_t)(p[i++] - '0');
	char want[128];
	size_t wl = make_payload(seq, want, sizeof want);
	if (wl != len || memcmp(want, data, len) != 0)
		return false;
	*seq_out = seq;
	return true;
}

/* A growable list of (index, seq) as seen by on_record or a reader. */
struct recs {
	uint64_t *idx, *seq;
	size_t n, cap;
	int bad_payload, out_of_order, corrupt;
};

static void recs_add(struct recs *r, uint64_t index, uint64_t seq)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->idx = realloc(r->idx, r->cap * sizeof *r->idx);
		r->seq = realloc(r->seq, r->cap * sizeof *r->seq);
		if (!r->idx || !r->seq)
			abort();
	}
	if (r->n && index <= r->idx[r->n - 1])
		r->out_of_order++;
	r->idx[r->n] = index;
	r->seq[r->n] = seq;
	r->n++;
}

static void recs_free(struct recs *r)
{
	free(r->idx);
	free(r->seq);
	memset(r, 0, sizeof *r);
}

static int collect(void *arg, uint64_t index, const void *data, size_t len)
{
	struct recs *r = arg;
	uint64_t seq;
	if (!payload_ok(data, len, &seq)) {
		r->bad_payload++;
		seq = UINT64_MAX;
	}
	recs_add(r, index, seq);
	return 0;
}

/* Reads until EAGAIN. Bounded, so a looping reader fails instead of hanging. */
static int drain(txlog_reader *rd, struct recs *out)
{
	for (long guard = 0; guard < 10000000; guard++) {
		uint64_t index;
		const void *data;
		size_t len;
		int rc = txlog_reader_next(rd, &index, &data, &len);
		if (rc == TRACKD_EAGAIN)
			return TRACKD_OK;
		if (rc == TRACKD_ECORRUPT) {
			out->corrupt++;
			continue;
		}
		if (rc != TRACKD_OK)
			return rc;
		collect(out, index, data, len);
	}
	return TRACKD_ETIMEDOUT;
}

static int read_dir(const char *dir, uint32_t max_record, uint64_t after, struct recs *out)
{
	txlog_reader *rd;
	int rc = txlog_reader_open_dir(dir, max_record, after, &rd);
	if (rc != TRACKD_OK)
		return rc;
	rc = drain(rd, out);
	txlog_reader_close(rd);
	return rc;
}

static int read_live(txlog *log, uint64_t after, struct recs *out)
{
	txlog_reader *rd;
	int rc = txlog_reader_open(log, after, &rd);
	if (rc != TRACKD_OK)
		return rc;
	rc = drain(rd, out);
	txlog_reader_close(rd);
	return rc;
}

/* Appends seq [from, to) and stores each index at idx_of[seq] (may be NULL). */
static void append_range(txlog *log, uint64_t from, uint64_t to, uint64_t *idx_of)
{
	char buf[128];
	for (uint64_t s = from; s < to; s++) {
		size_t len = make_payload(s, buf, sizeof buf);
		uint64_t index;
		REQUIRE_OK(txlog_append(log, buf, len, &index));
		if (idx_of)
			idx_of[s] = index;
	}
}

/* ---- files -------------------------------------------------------------- */

static char *tmpdir_new(void)
{
	const char *base = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof path, "%s/txlog_test.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(path)) {
		perror("mkdtemp");
		exit(2);
	}
	return strdup(path);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static uint8_t *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	fstat(fd, &st);
	uint8_t *buf = malloc((size_t)st.st_size + 1);
	size_t got;
	io_pread_full(fd, buf, (size_t)st.st_size, 0, &got);
	close(fd);
	*len = got;
	return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	if (fd < 0 || io_write_full(fd, data, len) != TRACKD_OK) {
		perror(path);
		exit(2);
	}
	close(fd);
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

/* out = a "/" b; paths here are short, a long one is a broken setup. */
static void join(char out[4096], const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la + lb + 2 > 4096)
		exit(2);
	memcpy(out, a, la);
	out[la] = '/';
	memcpy(out + la + 1, b, lb + 1);
}

static void copy_tree(const char *src, const char *dst)
{
	mkdir(dst, 0750);
	DIR *d = opendir(src);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char s[4096], t[4096];
		join(s, src, e->d_name);
		join(t, dst, e->d_name);
		struct stat st;
		stat(s, &st);
		if (S_ISDIR(st.st_mode)) {
			copy_tree(s, t);
		} else {
			size_t len;
			uint8_t *data = read_file(s, &len);
			write_file(t, data, len);
			free(data);
		}
	}
	closedir(d);
}

/* FNV-1a over every file's name and bytes: "nothing was modified". */
static uint64_t tree_hash(const char *dir)
{
	uint64_t h = 1469598103934665603ull;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	char names[256][256];
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < 256)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			snprintf(names[n++], sizeof names[0], "%s", e->d_name);
	closedir(d);
	qsort(names, n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
	for (size_t i = 0; i < n; i++) {
		char p[4096];
		join(p, dir, names[i]);
		struct stat st;
		stat(p, &st);
		uint64_t sub = 0;
		if (S_ISDIR(st.st_mode)) {
			sub = tree_hash(p);
		} else {
			size_t len;
			uint8_t *data = read_file(p, &len);
			for (size_t k = 0; k < len; k++)
				sub = (sub ^ data[k]) * 1099511628211ull;
			free(data);
		}
		for (const char *c = names[i]; *c; c++)
			h = (h ^ (uint8_t)*c) * 1099511628211ull;
		h = (h ^ sub) * 1099511628211ull;
	}
	return h;
}

/* Sorted segment file paths of a log directory. */
static size_t list_segments(const char *dir, char out[][4096], size_t max)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	uint64_t *firsts;
	size_t n = 0;
	if (fd < 0 || seg_list_dir(fd, false, &firsts, &n) != TRACKD_OK)
		return 0;
	close(fd);
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++) {
		char name[SEG_NAME_BUF];
		seg_name(name, firsts[i]);
		join(out[i], dir, name);
	}
	free(firsts);
	return n;
}

/* The frames of an intact segment file: start offset, end offset, index. */
struct layout {
	uint64_t start[512], end[512], index[512];
	size_t n;
	uint64_t size;
};

static void segment_layout(const char *path, struct layout *l)
{
	size_t len;
	uint8_t *data = read_file(path, &len);
	l->n = 0;
	l->size = len;
	uint64_t pos = TXLOG_SEGMENT_HEADER;
	while (pos + TXLOG_FRAME_OVERHEAD <= len && l->n < 512) {
		uint32_t flen = get_le32(data + pos + 4);
		uint64_t end = pos + TXLOG_FRAME_OVERHEAD + flen;
		if (end > len)
			break;
		l->start[l->n] = pos;
		l->end[l->n] = end;
		l->index[l->n] = get_le64(data + pos + 8);
		l->n++;
		pos = end;
	}
	free(data);
}

static void truncate_file(const char *path, uint64_t size)
{
	if (truncate(path, (off_t)size) != 0) {
		perror(path);
		exit(2);
	}
}

static void flip_bit(const char *path, uint64_t off, int bit)
{
	int fd = open(path, O_RDWR);
	uint8_t b;
	if (pread(fd, &b, 1, (off_t)off) != 1)
		exit(2);
	b ^= (uint8_t)(1u << bit);
	if (pwrite(fd, &b, 1, (off_t)off) != 1)
		exit(2);
	close(fd);
}

static struct txlog_options opts_for(const char *dir, enum txlog_fsync_policy p, uint64_t seg,
                                     uint32_t maxrec, struct recs *collect_into)
{
	struct txlog_options o = {
	    .dir = dir,
	    .fsync = p,
	    .fsync_interval_ms = 5,
	    .segment_bytes = seg,
	    .max_record_bytes = maxrec,
	    .on_record = collect_into ? collect : NULL,
	    .on_record_arg = collect_into,
	};
	return o;
}

/* Makes a closed log of `count` records (seq 0..count-1) and returns its dir. */
static char *make_pristine(uint64_t count, uint64_t seg_bytes)
{
	char *dir = tmpdir_new();
	struct txlog_options o = opts_for(dir, TXLOG_FSYNC_ALWAYS, seg_bytes, 256, NULL);
	txlog *log;
	REQUIRE_OK(txlog_open(&o, &log));
	append_range(log, 0, count, NULL);
	REQUIRE_OK(txlog_sync(log));
	REQUIRE_OK(txlog_close(log));
	return dir;
}

/* True when `got` holds exactly the records whose seq satisfies keep(), in
 * order, with index = seq + 1 (as in a pristine log), and nothing else. */
static bool recs_match(const struct recs *got, uint64_t count, bool (*keep)(uint64_t, void *),
                       void *arg)
{
	size_t k = 0;
	for (uint64_t s = 0; s < count; s++) {
		if (!keep(s, arg))
			continue;
		if (k >= got->n || got->seq[k] != s || got->idx[k] != s + 1)
			return false;
		k++;
	}
	return k == got->n && !got->bad_payload && !got->out_of_order;
}

static bool keep_all(uint64_t s, void *arg)
{
	(void)s;
	(void)arg;
	return true;
}

static bool keep_below(uint64_t s, void *arg)
{
	return s < *(uint64_t *)arg;
}

static bool keep_except(uint64_t s, void *arg)
{
	return s != *(uint64_t *)arg;
}

/* ---- 1. round trip ------------------------------------------------------ */

static void test_round_trip(void)
{
	const enum txlog_fsync_policy pols[] = {TXLOG_FSYNC_ALWAYS, TXLOG_FSYNC_INTERVAL,
	                                        TXLOG_FSYNC_NEVER};
	for (int p = 0; p < 3; p++) {
		char *dir = tmpdir_new();
		struct txlog_options o = opts_for(dir, pols[p], 512, 256, NULL);
		txlog *log;
		REQUIRE_OK(txlog_open(&o, &log));
		uint64_t idx[100];
		append_range(log, 0, 100, idx);
		bool increasing = true;
		for (int i = 0; i < 100; i++)
			increasing = increasing && idx[i] == (uint64_t)i + 1;
		CHECK(increasing, "%s", "indices 1..100 strictly increasing");
		CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "sync");
		struct txlog_stats st;
		txlog_stats(log, &st);
		CHECK(st.segments >= 4, "%s", "several segments");
		CHECK_EQ(st.last_index, 100, "%s", "last_index");
		CHECK_EQ(st.durable_index, 100, "%s", "durable_index after sync");
		CHECK_EQ(st.records_appended, 100, "%s", "records_appended");
		CHECK_EQ(st.first_index, 1, "%s", "first_index");
		char segs[64][4096];
		size_t ns = list_segments(dir, segs, 64);
		uint64_t on_disk = 0;
		for (size_t i = 0; i < ns; i++)
			on_disk += file_size(segs[i]);
		CHECK_EQ(st.segments, ns, "%s", "stats.segments = files");
		CHECK_EQ(st.disk_bytes, on_disk, "%s", "stats.disk_bytes = file sizes");
		CHECK_EQ(st.bytes_appended, on_disk - ns * TXLOG_SEGMENT_HEADER, "%s",
		         "bytes_appended");
		CHECK_EQ(txlog_close(log), TRACKD_OK, "%s", "close");

		struct recs seen = {0};
		o.on_record = collect;
		o.on_record_arg = &seen;
		REQUIRE_OK(txlog_open(&o, &log));
		CHECK(recs_match(&seen, 100, keep_all, NULL), "%s",
		      "on_record saw 100 records in order");
		CHECK_EQ(txlog_last_index(log), 100, "%s", "last_index after reopen");
		CHECK_EQ(txlog_readable_index(log), 100, "%s", "readable after reopen");
		char buf[128];
		size_t len = make_payload(100, buf, sizeof buf);
		uint64_t index = 0;
		CHECK_EQ(txlog_append(log, buf, len, &index), TRACKD_OK, "%s",
		         "append after reopen");
		CHECK_EQ(index, 101, "%s", "next index continues");
		CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "sync");
		struct recs live = {0};
		CHECK_EQ(read_live(log, 0, &live), TRACKD_OK, "%s", "live read");
		CHECK(recs_match(&live, 101, keep_all, NULL), "%s", "live reader sees 101");
		struct recs tail = {0};
		CHECK_EQ(read_live(log, 97, &tail), TRACKD_OK, "%s", "live read after 97");
		CHECK(tail.n == 4 && tail.idx[0] == 98, "%s", "reader starts after `after`");
		CHECK_EQ(txlog_close(log), TRACKD_OK, "%s", "close");
		struct recs offline = {0};
		CHECK_EQ(read_dir(dir, 256, 0, &offline), TRACKD_OK, "%s", "dir read");
		CHECK(recs_match(&offline, 101, keep_all, NULL), "%s", "dir reader sees 101");
		CHECK_EQ(offline.corrupt, 0, "%s", "dir reader: no damage");
		recs_free(&seen);
		recs_free(&live);
		recs_free(&tail);
		recs_free(&offline);
		rm_rf(dir);
		free(dir);
	}
}

/* ---- 2. torn tail at every offset (R3) --------------------------------- */

static void test_truncate_every_offset(void)
{
	const uint64_t count = 24;
	char *pristine = make_pristine(count, 400);
	char segs[64][4096];
	size_t ns = list_segments(pristine, segs, 64);
	struct layout lay;
	segment_layout(segs[ns - 1], &lay);
	CHECK(lay.n >= 2, "%s", "newest segment has ≥ 2 records");
	if (lay.n < 2)
		return;
	const char *newest_name = strrchr(segs[ns - 1], '/') + 1;
	char *work = tmpdir_new();
	int iterations = 0, bad = 0;
	for (uint64_t cut = lay.start[lay.n - 2]; cut < lay.size; cut++) {
		rm_rf(work);
		copy_tree(pristine, work);
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", work, newest_name);
		truncate_file(path, cut);
		/* Records whose frame ends at or before the cut survive. */
		uint64_t kept_end = lay.start[0], kept = count - lay.n;
		for (size_t i = 0; i < lay.n; i++) {
			if (lay.end[i] <= cut) {
				kept_end = lay.end[i];
				kept = lay.index[i];
			}
		}
		struct recs seen = {0};
		struct txlog_options o = opts_for(work, TXLOG_FSYNC_ALWAYS, 400, 256, &seen);
		txlog *log;
		int rc = txlog_open(&o, &log);
		CHECK_EQ(rc, TRACKD_OK, "%s", "open after cut");
		if (rc != TRACKD_OK)
			continue;
		struct txlog_stats st;
		txlog_stats(log, &st);
		int before = check_failed;
		CHECK(recs_match(&seen, count, keep_below, &kept), "%s",
		      "complete records kept, cut ones dropped");
		CHECK_EQ(st.bytes_truncated, cut - kept_end, "%s", "bytes_truncated");
		CHECK_EQ(st.records_quarantined, 0, "%s", "nothing quarantined");
		CHECK_EQ(file_size(path), kept_end, "%s", "file cut back");
		char buf[128];
		size_t len = make_payload(kept, buf, sizeof buf);
		uint64_t index = 0;
		CHECK_EQ(txlog_append(log, buf, len, &index), TRACKD_OK, "%s", "append after cut");
		CHECK_EQ(index, kept + 1, "%s", "next index");
		CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "sync");
		struct recs live = {0};
		CHECK_EQ(read_live(log, 0, &live), TRACKD_OK, "%s", "read");
		uint64_t kept1 = kept + 1;
		CHECK(recs_match(&live, count, keep_below, &kept1), "%s",
		      "new record readable after the kept ones");
		CHECK_EQ(txlog_close(log), TRACKD_OK, "%s", "close");
		recs_free(&seen);
		recs_free(&live);
		iterations++;
		if (check_failed != before && ++bad > 3)
			break; /* enough detail */
	}
	CHECK(iterations > 40, "%s", "cut at every offset of the last two records");
	rm_rf(work);
	rm_rf(pristine);
	free(work);
	free(pristine);
}

/* ---- 3. random bit flips (R3) ------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	/* xorshift64*: seeded, so a failure reproduces. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static void test_bit_flips(void)
{
	const uint64_t count = 40;
	char *pristine = make_pristine(count, 400);
	char segs[64][4096];
	size_t ns = list_segments(pristine, segs, 64);
	CHECK(ns >= 3, "%s", "pristine has ≥ 3 segments");
	char *work = tmpdir_new();
	int bad = 0;
	for (int it = 0; it < 120 && bad < 3; it++) {
		int before = check_failed;
		size_t si = (it & 1) ? ns - 1 : ns / 2;
		struct layout lay;
		segment_layout(segs[si], &lay);
		size_t fi = (size_t)(rng() % lay.n);
		uint64_t off = lay.start[fi] + rng() % (lay.end[fi] - lay.start[fi]);
		int bit = (int)(rng() % 8);
		uint64_t damaged_seq = lay.index[fi] - 1;
		bool tail = si == ns - 1 && fi == lay.n - 1;

		rm_rf(work);
		copy_tree(pristine, work);
		const char *name = strrchr(segs[si], '/') + 1;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", work, name);
		flip_bit(path, off, bit);

		/* The read-only reader first: it reports the damage once, reads the
		 * rest, and changes nothing. */
		uint64_t h0 = tree_hash(work);
		struct recs offline = {0};
		CHECK_EQ(read_dir(work, 256, 0, &offline), TRACKD_OK, "%s",
		         "dir read of damaged log");
		CHECK_EQ(offline.corrupt, 1, "%s", "dir reader: one damaged span");
		CHECK(recs_match(&offline, count, keep_except, &damaged_seq), "%s",
		      "dir reader: every other record");
		CHECK(tree_hash(work) == h0, "%s", "dir reader modified nothing");

		struct recs seen = {0};
		struct txlog_options o = opts_for(work, TXLOG_FSYNC_ALWAYS, 400, 256, &seen);
		txlog *log;
		REQUIRE_OK(txlog_open(&o, &log));
		struct txlog_stats st;
		txlog_stats(log, &st);
		CHECK(recs_match(&seen, count, keep_except, &damaged_seq), "%s",
		      "every other record delivered");
		uint64_t flen = lay.end[fi] - lay.start[fi];
		if (tail) {
			/* The newest segment's last frame is a torn tail, not a quarantine. */
			CHECK_EQ(st.bytes_truncated, flen, "%s", "tail: truncated");
			CHECK_EQ(st.records_quarantined, 0, "%s", "tail: nothing quarantined");
		} else {
			CHECK_EQ(st.records_quarantined, 1, "%s", "records_quarantined");
			CHECK_EQ(st.bytes_quarantined, flen, "%s", "bytes_quarantined");
			CHECK_EQ(st.bytes_truncated, 0, "%s", "bytes_truncated");
			char q[4096];
			snprintf(q, sizeof q, "%s/quarantine/%.20s.%" PRIu64 ".bad", work, name,
			         lay.start[fi]);
			CHECK_EQ(file_size(q), flen, "%s", "quarantine file holds the frame");
			CHECK_EQ(file_size(path), lay.size - flen, "%s",
			         "segment lost exactly the frame");
		}
		CHECK_EQ(st.bad_segment_headers, 0, "%s", "no bad header");
		REQUIRE_OK(txlog_close(log));

		/* Second open: the damage is gone, nothing new, same records. */
		struct recs again = {0};
		o.on_record_arg = &again;
		REQUIRE_OK(txlog_open(&o, &log));
		txlog_stats(log, &st);
		CHECK_EQ(st.records_quarantined, 0, "%s", "reopen: nothing quarantined");
		CHECK_EQ(st.bytes_truncated, 0, "%s", "reopen: nothing truncated");
		CHECK(recs_match(&again, count, keep_except, &damaged_seq), "%s",
		      "reopen: same records");
		char buf[128];
		size_t len = make_payload(count, buf, sizeof buf);
		uint64_t index;
		CHECK_EQ(txlog_append(log, buf, len, &index), TRACKD_OK, "%s",
		         "append after repair");
		CHECK_EQ(index, tail ? count : count + 1, "%s", "index continues");
		REQUIRE_OK(txlog_close(log));
		recs_free(&offline);
		recs_free(&seen);
		recs_free(&again);
		if (check_failed != before) {
			fprintf(stderr,
			        "  (bit flip: segment %zu frame %zu offset %" PRIu64 " bit %d)\n",
			        si, fi, off, bit);
			bad++;
		}
	}
	rm_rf(work);
	rm_rf(pristine);
	free(work);
	free(pristine);
}

/* ---- 4. zeroed blocks, bad headers, empty segments (R3) ---------------- */

static void open_expect(const char *dir, uint64_t count, bool (*keep)(uint64_t, void *), void *arg,
                        struct txlog_stats *st, uint64_t expect_next, int line)
{
	struct recs seen = {0};
	struct txlog_options o = opts_for(dir, TXLOG_FSYNC_ALWAYS, 400, 256, &seen);
	txlog *log;
	int rc = txlog_open(&o, &log);
	CHECK_EQ(rc, TRACKD_OK, "called from line %d: %s", line, "open");
	if (rc != TRACKD_OK)
		return;
	txlog_stats(log, st);
	CHECK(recs_match(&seen, count, keep, arg), "called from line %d: %s", line,
	      "records delivered");
	char buf[128];
	size_t len = make_payload(expect_next - 1, buf, sizeof buf);
	uint64_t index = 0;
	CHECK_EQ(txlog_append(log, buf, len, &index), TRACKD_OK, "called from line %d: %s", line,
	         "append");
	CHECK_EQ(index, expect_next, "called from line %d: %s", line, "next index");
	CHECK_EQ(txlog_sync(log), TRACKD_OK, "called from line %d: %s", line, "sync");
	struct recs live = {0};
	CHECK_EQ(read_live(log, expect_next - 1, &live), TRACKD_OK, "called from line %d: %s", line,
	         "read back");
	CHECK(live.n == 1 && live.idx[0] == expect_next, "called from line %d: %s", line,
	      "appended record readable");
	CHECK_EQ(txlog_close(log), TRACKD_OK, "called from line %d: %s", line, "close");
	recs_free(&seen);
	recs_free(&live);
}

static void test_zero_and_headers(void)
{
	const uint64_t count = 30;
	char *pristine = make_pristine(count, 400);
	char segs[64][4096];
	size_t ns = list_segments(pristine, segs, 64);
	char *work = tmpdir_new();
	char path[4096];
	struct txlog_stats st;
	const char *newest = strrchr(segs[ns - 1], '/') + 1;
	const char *middle = strrchr(segs[ns / 2], '/') + 1;

	/* A zeroed block appended past the end (delayed allocation after a crash). */
	rm_rf(work);
	copy_tree(pristine, work);
	snprintf(path, sizeof path, "%s/%s", work, newest);
	{
		uint8_t zeros[4096] = {0};
		int fd = open(path, O_WRONLY | O_APPEND);
		io_write_full(fd, zeros, sizeof zeros);
		close(fd);
	}
	open_expect(work, count, keep_all, NULL, &st, count + 1, __LINE__);
	CHECK_EQ(st.bytes_truncated, 4096, "%s", "zero block: truncated");
	CHECK_EQ(st.records_quarantined, 0, "%s", "zero block: nothing quarantined");

	/* The tail's last 64 bytes zeroed in place: records touching them are torn. */
	rm_rf(work);
	copy_tree(pristine, work);
	struct layout lay;
	segment_layout(segs[ns - 1], &lay);
	{
		uint8_t zeros[64] = {0};
		int fd = open(path, O_WRONLY);
		if (pwrite(fd, zeros, sizeof zeros, (off_t)(lay.size - 64)) != 64)
			exit(2);
		close(fd);
	}
	uint64_t kept = count - lay.n, kept_end = lay.start[0];
	for (size_t i = 0; i < lay.n; i++)
		if (lay.end[i] <= lay.size - 64) {
			kept = lay.index[i];
			kept_end = lay.end[i];
		}
	open_expect(work, count, keep_below, &kept, &st, kept + 1, __LINE__);
	CHECK_EQ(st.bytes_truncated, lay.size - kept_end, "%s", "zeroed tail: truncated");

	/* A zeroed block in the middle of a sealed segment: quarantined, the
	 * records after it kept. */
	rm_rf(work);
	copy_tree(pristine, work);
	snprintf(path, sizeof path, "%s/%s", work, middle);
	struct layout mid;
	segment_layout(segs[ns / 2], &mid);
	{
		uint8_t zeros[8] = {0};
		int fd = open(path, O_WRONLY);
		if (pwrite(fd, zeros, sizeof zeros, (off_t)mid.start[1]) != 8)
			exit(2);
		close(fd);
	}
	uint64_t lost = mid.index[1] - 1;
	open_expect(work, count, keep_except, &lost, &st, count + 1, __LINE__);
	CHECK_EQ(st.records_quarantined, 1, "%s", "zeroed frame: quarantined");

	/* Bad header magic, middle and newest: counted, frames still delivered,
	 * repaired so the next open is clean. */
	for (int which = 0; which < 2; which++) {
		rm_rf(work);
		copy_tree(pristine, work);
		snprintf(path, sizeof path, "%s/%s", work, which ? newest : middle);
		flip_bit(path, 3, 2);
		open_expect(work, count, keep_all, NULL, &st, count + 1, __LINE__);
		CHECK_EQ(st.bad_segment_headers, 1, "%s", "bad header counted");
		CHECK_EQ(st.records_quarantined, 0, "%s", "bad header: nothing quarantined");
		CHECK_EQ(st.bytes_truncated, 0, "%s", "bad header: nothing truncated");
		uint64_t c1 = count + 1;
		open_expect(work, count + 1, keep_below, &c1, &st, count + 2, __LINE__);
		CHECK_EQ(st.bad_segment_headers, 0, "%s", "bad header repaired");
	}

	/* An empty (0-byte) newest segment, as a crash between create and header
	 * could leave on a filesystem without ordered rename. */
	rm_rf(work);
	copy_tree(pristine, work);
	snprintf(path, sizeof path, "%s/%020" PRIu64 ".seg", work, count + 1);
	write_file(path, "", 0);
	open_expect(work, count, keep_all, NULL, &st, count + 1, __LINE__);
	CHECK_EQ(st.bad_segment_headers, 1, "%s", "empty segment: bad header");
	{
		char payload[128];
		CHECK_EQ(file_size(path),
		         TXLOG_SEGMENT_HEADER + TXLOG_FRAME_OVERHEAD +
		             make_payload(count, payload, sizeof payload),
		         "%s", "empty segment repaired, then appended to");
	}

	/* A lone empty segment: the log starts at its index. */
	rm_rf(work);
	mkdir(work, 0750);
	snprintf(path, sizeof path, "%s/%020" PRIu64 ".seg", work, (uint64_t)1);
	write_file(path, "", 0);
	open_expect(work, 0, keep_all, NULL, &st, 1, __LINE__);
	CHECK_EQ(st.bad_segment_headers, 1, "%s", "lone empty segment: bad header");

	/* A header-only newest segment beyond the last record: its first index is
	 * never reused (records up to it may have been released). */
	rm_rf(work);
	copy_tree(pristine, work);
	snprintf(path, sizeof path, "%s/%020" PRIu64 ".seg", work, count + 10);
	{
		uint8_t hdr[TXLOG_SEGMENT_HEADER];
		seg_header_encode(hdr, count + 10);
		write_file(path, hdr, sizeof hdr);
	}
	open_expect(work, count, keep_all, NULL, &st, count + 10, __LINE__);
	CHECK_EQ(st.bad_segment_headers, 0, "%s", "header-only: no bad header");
	CHECK_EQ(st.bytes_truncated, 0, "%s", "header-only: nothing truncated");

	/* A stale copy of an earlier frame (valid CRC, index going backwards) at
	 * the end of a sealed segment: damage, not a record. At the end of the
	 * newest segment: a torn tail. */
	for (int which = 0; which < 2; which++) {
		rm_rf(work);
		copy_tree(pristine, work);
		const char *name = which ? newest : middle;
		snprintf(path, sizeof path, "%s/%s", work, name);
		size_t len;
		uint8_t *data = read_file(path, &len);
		struct layout sl;
		segment_layout(segs[which ? ns - 1 : ns / 2], &sl);
		uint64_t flen = sl.end[0] - sl.start[0];
		data = realloc(data, len + flen);
		memcpy(data + len, data + sl.start[0], flen);
		write_file(path, data, len + flen);
		free(data);
		open_expect(work, count, keep_all, NULL, &st, count + 1, __LINE__);
		CHECK_EQ(st.records_quarantined, which ? 0 : 1, "%s",
		         "stale frame: quarantined (sealed) or not (newest)");
		CHECK_EQ(st.bytes_truncated, which ? flen : 0, "%s",
		         "stale frame: truncated (newest) or not (sealed)");
	}

	/* A middle segment holding only garbage: one span quarantined. */
	rm_rf(work);
	copy_tree(pristine, work);
	snprintf(path, sizeof path, "%s/%s", work, middle);
	{
		size_t len;
		uint8_t *data = read_file(path, &len);
		for (size_t i = TXLOG_SEGMENT_HEADER; i < len; i++)
			data[i] = (uint8_t)rng();
		write_file(path, data, len);
		free(data);
	}
	struct layout gone;
	segment_layout(segs[ns / 2], &gone);
	uint64_t range[2] = {gone.index[0] - 1, gone.index[gone.n - 1] - 1};
	struct recs seen = {0};
	struct txlog_options o = opts_for(work, TXLOG_FSYNC_ALWAYS, 400, 256, &seen);
	txlog *log;
	REQUIRE_OK(txlog_open(&o, &log));
	txlog_stats(log, &st);
	CHECK_EQ(st.records_quarantined, 1, "%s", "garbage segment: one span");
	CHECK_EQ(st.bytes_quarantined, gone.size - TXLOG_SEGMENT_HEADER, "%s",
	         "garbage segment: its bytes");
	CHECK_EQ(seen.n, count - (range[1] - range[0] + 1), "%s", "garbage segment: others kept");
	REQUIRE_OK(txlog_close(log));
	recs_free(&seen);

	rm_rf(work);
	rm_rf(pristine);
	free(work);
	free(pristine);
}

/* ---- 5. power loss (R2) -------------------------------------------------- */

static void test_power_loss(void)
{
	const enum txlog_fsync_policy pols[] = {TXLOG_FSYNC_ALWAYS, TXLOG_FSYNC_NEVER,
	                                        TXLOG_FSYNC_INTERVAL};
	for (int p = 0; p < 3; p++) {
		char *dir = tmpdir_new();
		struct txlog_options o = opts_for(dir, pols[p], 400, 256, NULL);
		txlog *log;
		REQUIRE_OK(txlog_open(&o, &log));
		append_range(log, 0, 17, NULL);
		REQUIRE_OK(txlog_sync(log));
		uint64_t synced = txlog_durable_index(log);
		CHECK_EQ(synced, 17, "%s", "durable after sync");
		/* What a power cut right now would keep: the synced sizes. */
		char segs[64][4096];
		uint64_t sizes[64];
		size_t ns = list_segments(dir, segs, 64);
		for (size_t i = 0; i < ns; i++)
			sizes[i] = file_size(segs[i]);
		append_range(log, 17, 40, NULL); /* rolls into new segments, no sync */
		REQUIRE_OK(txlog_close(log));

		char after[64][4096];
		size_t na = list_segments(dir, after, 64);
		for (size_t i = 0; i < na; i++) {
			size_t k = 0;
			while (k < ns && strcmp(after[i], segs[k]))
				k++;
			/* Segments created later keep only their (synced) header. */
			truncate_file(after[i], k < ns ? sizes[k] : TXLOG_SEGMENT_HEADER);
		}
		struct recs seen = {0};
		o.on_record = collect;
		o.on_record_arg = &seen;
		REQUIRE_OK(txlog_open(&o, &log));
		uint64_t n = synced;
		CHECK(recs_match(&seen, 17, keep_below, &n), "%s", "every synced record present");
		struct txlog_stats st;
		txlog_stats(log, &st);
		CHECK_EQ(st.records_quarantined, 0, "%s", "power loss: nothing quarantined");
		char buf[128];
		size_t len = make_payload(99, buf, sizeof buf);
		uint64_t index;
		CHECK_EQ(txlog_append(log, buf, len, &index), TRACKD_OK, "%s",
		         "append after power loss");
		CHECK(index > synced, "%s", "index above the synced ones");
		REQUIRE_OK(txlog_close(log));
		recs_free(&seen);
		rm_rf(dir);
		free(dir);
	}
}

/* ---- 6. cursors ---------------------------------------------------------- */

static uint64_t disk_bytes_of(const char *dir, size_t *nseg)
{
	char segs[256][4096];
	size_t n = list_segments(dir, segs, 256);
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += file_size(segs[i]);
	*nseg = n;
	return total;
}

static void test_cursors(void)
{
	char *dir = tmpdir_new();
	struct txlog_options o = opts_for(dir, TXLOG_FSYNC_ALWAYS, 300, 256, NULL);
	txlog *log;
	REQUIRE_OK(txlog_open(&o, &log));
	uint64_t pos = 99;
	CHECK_EQ(txlog_cursor_register(log, "local", &pos), TRACKD_OK, "%s", "register local");
	CHECK_EQ(pos, 0, "%s", "new cursor at 0");
	CHECK_EQ(txlog_cursor_register(log, "wandb", &pos), TRACKD_OK, "%s", "register wandb");
	const char *bad_names[] = {"", "Local", "a.b", "a/b", "x123456789012345678901234567890123"};
	for (size_t i = 0; i < 5; i++)
		CHECK_EQ(txlog_cursor_register(log, bad_names[i], &pos), TRACKD_EINVAL, "%s",
		         "bad cursor name");
	CHECK_EQ(txlog_cursor_register(log, "abcdefghijklmnopqrstuvwxyz_-0123", &pos), TRACKD_OK,
	         "%s", "32-char name ok");
	CHECK_EQ(txlog_cursor_remove(log, "abcdefghijklmnopqrstuvwxyz_-0123"), TRACKD_OK, "%s",
	         "remove it");
	CHECK_EQ(txlog_cursor_remove(log, "nope"), TRACKD_ENOENT, "%s", "remove unknown");

	append_range(log, 0, 60, NULL);
	CHECK_EQ(txlog_cursor_commit(log, "local", 60), TRACKD_EINVAL, "%s",
	         "commit past readable (not synced yet)");
	REQUIRE_OK(txlog_sync(log));
	struct txlog_stats st;
	txlog_stats(log, &st);
	uint64_t segs0 = st.segments;
	CHECK(segs0 >= 6, "%s", "many segments");

	CHECK_EQ(txlog_cursor_commit(log, "local", 60), TRACKD_OK, "%s", "commit local 60");
	txlog_stats(log, &st);
	CHECK_EQ(st.segments, segs0, "%s", "wandb at 0 holds every segment");
	CHECK_EQ(txlog_cursor_commit(log, "nope", 1), TRACKD_ENOENT, "%s", "commit unknown");
	CHECK_EQ(txlog_cursor_commit(log, "wandb", 30), TRACKD_OK, "%s", "commit wandb 30");
	txlog_stats(log, &st);
	CHECK(st.segments < segs0, "%s", "segments released");
	CHECK(st.first_index >= 2 && st.first_index <= 31, "%s", "oldest kept record ≤ 31");
	size_t nfiles;
	CHECK_EQ(st.disk_bytes, disk_bytes_of(dir, &nfiles), "%s", "disk_bytes matches files");
	CHECK_EQ(st.segments, nfiles, "%s", "segments matches files");
	CHECK_EQ(txlog_cursor_commit(log, "wandb", 20), TRACKD_EINVAL, "%s", "commit backwards");
	CHECK_EQ(txlog_cursor_commit(log, "wandb", 61), TRACKD_EINVAL, "%s",
	         "commit beyond readable");
	CHECK_EQ(txlog_cursor_commit(log, "wandb", 30), TRACKD_OK, "%s", "commit same position");

	/* A reader from before the oldest segment starts at the oldest record. */
	struct recs live = {0};
	CHECK_EQ(read_live(log, 0, &live), TRACKD_OK, "%s", "read from 0");
	CHECK(live.n > 0 && live.idx[0] == st.first_index && live.idx[live.n - 1] == 60 &&
	          live.n == 60 - st.first_index + 1,
	      "%s", "reader starts at the oldest kept record");
	recs_free(&live);
	REQUIRE_OK(txlog_close(log));

	/* Persisted across reopen; a cursor on disk holds segments even when this
	 * process never registers it. */
	REQUIRE_OK(txlog_open(&o, &log));
	CHECK_EQ(txlog_cursor_register(log, "local", &pos), TRACKD_OK, "%s",
	         "register local again");
	CHECK_EQ(pos, 60, "%s", "local persisted");
	append_range(log, 60, 90, NULL);
	REQUIRE_OK(txlog_sync(log));
	txlog_stats(log, &st);
	uint64_t first_before = st.first_index;
	CHECK_EQ(txlog_cursor_commit(log, "local", 90), TRACKD_OK, "%s", "commit local 90");
	txlog_stats(log, &st);
	CHECK_EQ(st.first_index, first_before, "%s", "unregistered wandb still holds");
	CHECK_EQ(txlog_cursor_register(log, "wandb", &pos), TRACKD_OK, "%s", "register wandb");
	CHECK_EQ(pos, 30, "%s", "wandb persisted");
	CHECK_EQ(txlog_cursor_commit(log, "wandb", 90), TRACKD_OK, "%s", "commit wandb 90");
	txlog_stats(log, &st);
	CHECK_EQ(st.segments, 1, "%s", "only the newest segment left");
	CHECK_EQ(st.disk_bytes, disk_bytes_of(dir, &nfiles), "%s", "disk_bytes matches files");

	/* Removing a cursor lets the others release on their own. */
	CHECK_EQ(txlog_cursor_register(log, "extra", &pos), TRACKD_OK, "%s", "register extra");
	append_range(log, 90, 120, NULL);
	REQUIRE_OK(txlog_sync(log));
	CHECK_EQ(txlog_cursor_commit(log, "local", 120), TRACKD_OK, "%s", "commit local 120");
	CHECK_EQ(txlog_cursor_commit(log, "wandb", 120), TRACKD_OK, "%s", "commit wandb 120");
	txlog_stats(log, &st);
	CHECK(st.segments > 1, "%s", "extra at 0 holds segments");
	CHECK_EQ(txlog_cursor_remove(log, "extra"), TRACKD_OK, "%s", "remove extra");
	txlog_stats(log, &st);
	CHECK_EQ(st.segments, 1, "%s", "released after remove");
	REQUIRE_OK(txlog_close(log));

	/* Every segment gone (an operator, a disk swap): cursors keep the index
	 * from being reused. */
	char segs[16][4096];
	size_t ns = list_segments(dir, segs, 16);
	for (size_t i = 0; i < ns; i++)
		unlink(segs[i]);
	REQUIRE_OK(txlog_open(&o, &log));
	char buf[128];
	size_t len = make_payload(1000, buf, sizeof buf);
	uint64_t index;
	CHECK_EQ(txlog_append(log, buf, len, &index), TRACKD_OK, "%s",
	         "append with no segments left");
	CHECK_EQ(index, 121, "%s", "index not reused");
	REQUIRE_OK(txlog_close(log));

	/* A damaged cursor file counts as 0: re-deliver, never skip. */
	char cpath[4096];
	snprintf(cpath, sizeof cpath, "%s/cursors/local.cur", dir);
	flip_bit(cpath, 0, 0);
	REQUIRE_OK(txlog_open(&o, &log));
	CHECK_EQ(txlog_cursor_register(log, "local", &pos), TRACKD_OK, "%s", "register damaged");
	CHECK_EQ(pos, 0, "%s", "damaged cursor reads 0");
	REQUIRE_OK(txlog_close(log));
	rm_rf(dir);
	free(dir);
}

/* ---- 7. record size limit (R12) ------------------------------------------ */

static void test_limits(void)
{
	char *dir = tmpdir_new();
	const uint32_t limit = 1000;
	struct txlog_options o = opts_for(dir, TXLOG_FSYNC_ALWAYS, 4096, limit, NULL);
	txlog *log;
	REQUIRE_OK(txlog_open(&o, &log));
	uint8_t *big = malloc(limit + 1);
	memset(big, 'x', limit + 1);
	uint64_t index = 0;
	CHECK_EQ(txlog_append(log, big, limit - 1, &index), TRACKD_OK, "%s", "limit - 1");
	CHECK_EQ(txlog_append(log, big, limit, &index), TRACKD_OK, "%s", "limit");
	CHECK_EQ(index, 2, "%s", "index at limit");
	struct txlog_stats before, after;
	txlog_stats(log, &before);
	index = 77;
	CHECK_EQ(txlog_append(log, big, limit + 1, &index), TRACKD_ETOOBIG, "%s", "limit + 1");
	CHECK_EQ(txlog_append(log, big, SIZE_MAX, &index), TRACKD_ETOOBIG, "%s", "far over");
	CHECK_EQ(index, 77, "%s", "index_out untouched");
	txlog_stats(log, &after);
	CHECK_EQ(after.records_appended, before.records_appended, "%s", "nothing appended");
	CHECK_EQ(after.disk_bytes, before.disk_bytes, "%s", "nothing written");
	CHECK_EQ(after.last_index, 2, "%s", "last index unchanged");
	CHECK_EQ(txlog_append(log, NULL, 0, &index), TRACKD_OK, "%s", "empty record");
	CHECK_EQ(index, 3, "%s", "empty record index");
	REQUIRE_OK(txlog_sync(log));
	REQUIRE_OK(txlog_close(log));

	txlog_reader *rd;
	REQUIRE_OK(txlog_reader_open_dir(dir, limit, 0, &rd));
	uint64_t idx;
	const void *data;
	size_t len;
	CHECK_EQ(txlog_reader_next(rd, &idx, &data, &len), TRACKD_OK, "%s", "read limit - 1");
	CHECK_EQ(len, limit - 1, "%s", "len limit - 1");
	CHECK_EQ(txlog_reader_next(rd, &idx, &data, &len), TRACKD_OK, "%s", "read limit");
	CHECK_EQ(len, limit, "%s", "len limit");
	CHECK(memcmp(data, big, limit) == 0, "%s", "payload intact");
	CHECK_EQ(txlog_reader_next(rd, &idx, &data, &len), TRACKD_OK, "%s", "read empty");
	CHECK_EQ(len, 0, "%s", "empty len");
	CHECK_EQ(txlog_reader_next(rd, &idx, &data, &len), TRACKD_EAGAIN, "%s", "end");
	CHECK_EQ(txlog_reader_next(rd, &idx, &data, &len), TRACKD_EAGAIN, "%s", "still end");
	txlog_reader_close(rd);

	/* A reader with a lower limit treats bigger frames as damage, not as a
	 * reason to allocate. */
	REQUIRE_OK(txlog_reader_open_dir(dir, limit - 1, 0, &rd));
	CHECK_EQ(txlog_reader_next(rd, &idx, &data, &len), TRACKD_OK, "%s", "limit - 1 fits");
	CHECK_EQ(txlog_reader_next(rd, &idx, &data, &len), TRACKD_ECORRUPT, "%s", "over its limit");
	CHECK_EQ(txlog_reader_next(rd, &idx, &data, &len), TRACKD_OK, "%s", "goes on");
	CHECK_EQ(idx, 3, "%s", "the empty record");
	txlog_reader_close(rd);
	free(big);

	struct txlog_options bad = o;
	bad.segment_bytes = 10;
	CHECK_EQ(txlog_open(&bad, &log), TRACKD_EINVAL, "%s", "tiny segment_bytes");
	bad = o;
	bad.fsync = TXLOG_FSYNC_INTERVAL;
	bad.fsync_interval_ms = 0;
	CHECK_EQ(txlog_open(&bad, &log), TRACKD_EINVAL, "%s", "interval 0");
	CHECK_EQ(txlog_reader_open_dir("/nonexistent/txlog", 100, 0, &rd), TRACKD_ENOENT, "%s",
	         "dir reader on missing dir");
	CHECK_EQ(txlog_close(NULL), TRACKD_OK, "%s", "close NULL");
	rm_rf(dir);
	free(dir);
}

/* Disk budget: the segments on disk never pass max_bytes; an append that would
 * is refused with ENOSPC and counted; releasing segments lets appends in again.
 * Tested at limit − 1, limit, limit + 1 bytes of room. */
static void test_budget(void)
{
	char *dir = tmpdir_new();
	struct txlog_options o = opts_for(dir, TXLOG_FSYNC_ALWAYS, 1024, 1000, NULL);
	/* header 16 + frames of 20 + 100 = 120: room for exactly 8 frames in one
	 * segment of 976 bytes; the budget counts one more header for a roll. */
	const uint64_t frame = TXLOG_FRAME_OVERHEAD + 100;
	uint8_t payload[100] = {0};
	for (int delta = -1; delta <= 1; delta++) {
		char *d = tmpdir_new();
		o.dir = d;
		/* Room for 3 frames: 2 headers (current + a possible roll) + 3 frames. */
		o.max_bytes = 2 * TXLOG_SEGMENT_HEADER + 3 * frame + (uint64_t)delta;
		txlog *log;
		REQUIRE_OK(txlog_open(&o, &log));
		int ok = 0;
		for (int i = 0; i < 5; i++)
			ok += txlog_append(log, payload, sizeof payload, NULL) == TRACKD_OK;
		struct txlog_stats st;
		txlog_stats(log, &st);
		CHECK_EQ((uint64_t)ok, delta < 0 ? 2u : 3u, "%s", "frames that fit the budget");
		CHECK_EQ(st.budget_refusals, (uint64_t)(5 - ok), "%s", "refusals counted");
		CHECK(st.disk_bytes <= o.max_bytes, "%s", "usage within the budget");
		REQUIRE_OK(txlog_close(log));
		rm_rf(d);
		free(d);
	}
	/* Released segments make room again. */
	o.dir = dir;
	o.max_bytes = 4 * 1024;
	txlog *log;
	REQUIRE_OK(txlog_open(&o, &log));
	uint64_t pos;
	REQUIRE_OK(txlog_cursor_register(log, "sink", &pos));
	uint64_t last = 0;
	int rc;
	while ((rc = txlog_append(log, payload, sizeof payload, &last)) == TRACKD_OK)
		;
	CHECK_EQ(rc, TRACKD_ENOSPC, "%s", "full");
	REQUIRE_OK(txlog_sync(log));
	REQUIRE_OK(txlog_cursor_commit(log, "sink", last));
	CHECK_EQ(txlog_append(log, payload, sizeof payload, NULL), TRACKD_OK, "%s",
	         "room again after release");
	REQUIRE_OK(txlog_close(log));
	rm_rf(dir);
	free(dir);
}

/* A budget changed at run time (reload): lowering it refuses the next append,
 * raising it lets appends in again; stats report the budget in force. Cursor
 * info reports what each cursor keeps; every durable sync is timed. */
static void test_budget_reload_and_monitoring(void)
{
	char *dir = tmpdir_new();
	struct txlog_options o = opts_for(dir, TXLOG_FSYNC_ALWAYS, 1024, 1000, NULL);
	const uint64_t frame = TXLOG_FRAME_OVERHEAD + 100;
	uint8_t payload[100] = {0};
	o.max_bytes = 0;
	txlog *log;
	REQUIRE_OK(txlog_open(&o, &log));
	uint64_t pos;
	REQUIRE_OK(txlog_cursor_register(log, "sink", &pos));
	for (int i = 0; i < 3; i++) {
		REQUIRE_OK(txlog_append(log, payload, sizeof payload, NULL));
		REQUIRE_OK(txlog_sync(log));
	}
	struct txlog_stats st;
	txlog_stats(log, &st);
	CHECK_EQ(st.max_bytes, 0, "%s", "no budget");
	/* On disk: one header + 3 frames; an append also counts a roll's header. */
	uint64_t used = TXLOG_SEGMENT_HEADER + 3 * frame;
	for (int delta = -1; delta <= 1; delta++) {
		uint64_t budget = used + TXLOG_SEGMENT_HEADER + frame + (uint64_t)delta;
		txlog_set_max_bytes(log, budget);
		txlog_stats(log, &st);
		CHECK_EQ(st.max_bytes, budget, "%s", "budget in force");
		int rc = txlog_append(log, payload, sizeof payload, NULL);
		CHECK_EQ(rc, delta < 0 ? TRACKD_ENOSPC : TRACKD_OK, "%s",
		         "append against the new budget");
		if (rc == TRACKD_OK) {
			REQUIRE_OK(txlog_sync(log));
			used += frame;
		}
	}
	txlog_set_max_bytes(log, 0);
	REQUIRE_OK(txlog_append(log, payload, sizeof payload, NULL));
	REQUIRE_OK(txlog_sync(log));
	txlog_stats(log, &st);
	CHECK_EQ(st.budget_refusals, 1, "%s", "refusals");

	struct txlog_cursor_info ci[4];
	CHECK_EQ(txlog_cursors_info(log, ci, 4), 1, "%s", "one cursor");
	CHECK(strcmp(ci[0].name, "sink") == 0, "%s", "its name");
	CHECK_EQ(ci[0].records_behind, st.last_index, "%s", "records behind");
	CHECK_EQ(ci[0].bytes_behind, st.disk_bytes, "%s", "bytes behind: the whole log");
	REQUIRE_OK(txlog_cursor_commit(log, "sink", st.last_index));
	txlog_cursors_info(log, ci, 4);
	CHECK_EQ(ci[0].records_behind, 0, "%s", "caught up: records");
	CHECK_EQ(ci[0].bytes_behind, 0, "%s", "caught up: bytes");

	struct txlog_fsync_histogram h;
	txlog_fsync_histogram(log, &h);
	uint64_t n = 0;
	for (size_t i = 0; i <= TXLOG_FSYNC_BUCKETS; i++)
		n += h.count[i];
	/* 3 + 2 + 1 syncs with appends; syncs with nothing to write are not. */
	CHECK_EQ(n, 6, "%s", "fdatasyncs timed");
	for (size_t i = 1; i < TXLOG_FSYNC_BUCKETS; i++)
		CHECK(txlog_fsync_bucket_us[i] > txlog_fsync_bucket_us[i - 1], "%s",
		      "bucket bounds ascend");
	REQUIRE_OK(txlog_close(log));
	rm_rf(dir);
	free(dir);
}

/* ---- 8. fsync failures ----------------------------------------------------- */

struct fail_hook {
	atomic_int fail_next; /* fail this many upcoming calls */
	atomic_int calls;
};

static int failing_fsync(void *arg, int fd)
{
	struct fail_hook *h = arg;
	atomic_fetch_add(&h->calls, 1);
	if (atomic_load(&h->fail_next) > 0) {
		atomic_fetch_sub(&h->fail_next, 1);
		errno = EIO;
		return -1;
	}
	return fdatasync(fd);
}

static void test_fsync_failure(void)
{
	/* ALWAYS: a failed group is neither acknowledged, readable, nor kept. */
	char *dir = tmpdir_new();
	struct txlog_options o = opts_for(dir, TXLOG_FSYNC_ALWAYS, 200, 256, NULL);
	txlog *log;
	REQUIRE_OK(txlog_open(&o, &log));
	struct fail_hook hook = {0};
	txlog_test_set_fsync_hook(log, failing_fsync, &hook);
	uint64_t idx_of[64];
	append_range(log, 0, 5, idx_of);
	CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "sync ok");
	atomic_store(&hook.fail_next, 1);
	append_range(log, 5, 14, idx_of); /* spans rolls: the whole group must go */
	CHECK_EQ(txlog_sync(log), TRACKD_EIO, "%s", "failed sync reported");
	struct txlog_stats st;
	txlog_stats(log, &st);
	CHECK_EQ(st.fsync_failures, 1, "%s", "fsync_failures");
	CHECK_EQ(txlog_readable_index(log), 5, "%s", "readable stays at the durable index");
	struct recs live = {0};
	CHECK_EQ(read_live(log, 0, &live), TRACKD_OK, "%s", "read");
	uint64_t five = 5;
	CHECK(recs_match(&live, 14, keep_below, &five), "%s", "unsynced records not readable");
	recs_free(&live);
	append_range(log, 14, 16, idx_of);
	CHECK(idx_of[14] == 15, "%s", "index not reused after the failure");
	CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "later sync works");
	CHECK_EQ(read_live(log, 5, &live), TRACKD_OK, "%s", "read on");
	CHECK(live.n == 2 && live.idx[0] == 15 && live.seq[0] == 14, "%s",
	      "later records readable");
	recs_free(&live);
	REQUIRE_OK(txlog_close(log));

	struct recs seen = {0};
	o.on_record = collect;
	o.on_record_arg = &seen;
	REQUIRE_OK(txlog_open(&o, &log));
	bool ok = seen.n == 7 && !seen.bad_payload;
	for (size_t i = 0; ok && i < 5; i++)
		ok = seen.seq[i] == i && seen.idx[i] == i + 1;
	ok = ok && seen.seq[5] == 14 && seen.seq[6] == 15 && seen.idx[5] == 15;
	CHECK(ok, "%s", "after reopen: the synced records, not the failed group");
	txlog_stats(log, &st);
	CHECK_EQ(st.records_quarantined + st.bytes_truncated, 0, "%s", "reopen: nothing damaged");
	append_range(log, 16, 17, idx_of);
	CHECK_EQ(idx_of[16], 17, "%s", "next index after reopen");
	recs_free(&seen);

	/* The repair itself fails: failed state, appends refused. */
	txlog_test_set_fsync_hook(log, failing_fsync, &hook);
	atomic_store(&hook.fail_next, 2);
	CHECK_EQ(txlog_sync(log), TRACKD_EIO, "%s", "failed sync");
	char buf[128];
	size_t len = make_payload(17, buf, sizeof buf);
	CHECK_EQ(txlog_append(log, buf, len, NULL), TRACKD_EIO, "%s", "append in failed state");
	CHECK_EQ(txlog_sync(log), TRACKD_EIO, "%s", "sync in failed state");
	CHECK_EQ(txlog_close(log), TRACKD_EIO, "%s", "close reports it");
	o.on_record = NULL;
	REQUIRE_OK(txlog_open(&o, &log));
	CHECK_EQ(txlog_append(log, buf, len, NULL), TRACKD_OK, "%s", "fine after restart");

	/* The failed state ends without a restart once the disk works again: the
	 * repair is retried at an append, at most once a second. */
	REQUIRE_OK(txlog_sync(log));
	txlog_test_set_fsync_hook(log, failing_fsync, &hook);
	atomic_store(&hook.fail_next, 3);
	len = make_payload(18, buf, sizeof buf);
	REQUIRE_OK(txlog_append(log, buf, len, NULL));
	CHECK_EQ(txlog_sync(log), TRACKD_EIO, "%s", "failed sync again");
	CHECK_EQ(txlog_append(log, buf, len, NULL), TRACKD_EIO, "%s", "refused right after");
	usleep(1100 * 1000);
	CHECK_EQ(txlog_append(log, buf, len, NULL), TRACKD_EIO, "%s",
	         "repair retried, disk still failing");
	CHECK_EQ(txlog_append(log, buf, len, NULL), TRACKD_EIO, "%s",
	         "not retried within the second");
	usleep(1100 * 1000);
	CHECK_EQ(txlog_append(log, buf, len, NULL), TRACKD_OK, "%s", "disk works again: accepted");
	CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "and durable");
	CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "sync after restart");
	REQUIRE_OK(txlog_close(log));
	rm_rf(dir);
	free(dir);

	/* ALWAYS with a group so large that a roll must sync (too many segments
	 * waiting) and that sync fails: the whole group still goes, also the part
	 * appended after the failure, so a retry cannot duplicate half of it. */
	dir = tmpdir_new();
	o = opts_for(dir, TXLOG_FSYNC_ALWAYS, 200, 256, NULL);
	REQUIRE_OK(txlog_open(&o, &log));
	struct fail_hook h4 = {0};
	txlog_test_set_fsync_hook(log, failing_fsync, &h4);
	append_range(log, 0, 3, NULL);
	REQUIRE_OK(txlog_sync(log));
	atomic_store(&h4.fail_next, 1);
	append_range(log, 3, 60, NULL);
	txlog_stats(log, &st);
	CHECK_EQ(st.fsync_failures, 1, "%s", "roll-time fsync failure counted");
	CHECK_EQ(txlog_sync(log), TRACKD_EIO, "%s", "group reported failed");
	CHECK_EQ(txlog_readable_index(log), 3, "%s", "nothing of the group readable");
	append_range(log, 60, 61, NULL);
	CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "next group ok");
	REQUIRE_OK(txlog_close(log));
	struct recs grp = {0};
	CHECK_EQ(read_dir(dir, 256, 0, &grp), TRACKD_OK, "%s", "dir read");
	CHECK(grp.n == 4 && grp.seq[0] == 0 && grp.seq[2] == 2 && grp.seq[3] == 60 && !grp.corrupt,
	      "%s", "only the synced records and the next group");
	recs_free(&grp);
	rm_rf(dir);
	free(dir);

	/* INTERVAL: the flusher's failure discards what it covered; records
	 * appended after it are kept; readers never saw the discarded ones. */
	dir = tmpdir_new();
	o = opts_for(dir, TXLOG_FSYNC_INTERVAL, 300, 256, NULL);
	REQUIRE_OK(txlog_open(&o, &log));
	struct fail_hook h2 = {0};
	atomic_store(&h2.fail_next, 1);
	txlog_test_set_fsync_hook(log, failing_fsync, &h2);
	append_range(log, 0, 10, NULL);
	int64_t deadline = clock_mono_us() + 5000000;
	do {
		txlog_stats(log, &st);
		usleep(1000);
	} while (st.fsync_failures == 0 && clock_mono_us() < deadline);
	CHECK_EQ(st.fsync_failures, 1, "%s", "flusher failure counted");
	uint64_t idx_after[20];
	append_range(log, 10, 20, idx_after);
	deadline = clock_mono_us() + 5000000;
	while (txlog_durable_index(log) < idx_after[19] && clock_mono_us() < deadline)
		usleep(1000);
	CHECK(txlog_durable_index(log) >= idx_after[19], "%s", "flusher goes on after the failure");
	CHECK_EQ(txlog_sync(log), TRACKD_EIO, "%s", "explicit sync reports the loss");
	CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "then succeeds");
	struct recs before = {0};
	CHECK_EQ(read_live(log, 0, &before), TRACKD_OK, "%s", "read");
	CHECK(before.n < 20 && before.n >= 10, "%s", "something was discarded");
	bool tail_ok = before.n >= 10;
	for (size_t i = 0; tail_ok && i < 10; i++)
		tail_ok = before.seq[before.n - 10 + i] == 10 + i;
	CHECK(tail_ok, "%s", "records after the failure kept");
	REQUIRE_OK(txlog_close(log));
	struct recs reopened = {0};
	o.on_record = collect;
	o.on_record_arg = &reopened;
	REQUIRE_OK(txlog_open(&o, &log));
	bool same = reopened.n == before.n;
	for (size_t i = 0; same && i < before.n; i++)
		same = reopened.idx[i] == before.idx[i] && reopened.seq[i] == before.seq[i];
	CHECK(same, "%s", "reopen keeps exactly what readers could see");
	REQUIRE_OK(txlog_close(log));
	recs_free(&before);
	recs_free(&reopened);
	rm_rf(dir);
	free(dir);

	/* NEVER: a failed sync at a roll discards the unsynced tail too. */
	dir = tmpdir_new();
	o = opts_for(dir, TXLOG_FSYNC_NEVER, 200, 256, NULL);
	REQUIRE_OK(txlog_open(&o, &log));
	struct fail_hook h3 = {0};
	txlog_test_set_fsync_hook(log, failing_fsync, &h3);
	append_range(log, 0, 3, NULL);
	REQUIRE_OK(txlog_sync(log));
	atomic_store(&h3.fail_next, 1);
	append_range(log, 3, 12, NULL); /* the first roll's sync fails */
	txlog_stats(log, &st);
	CHECK_EQ(st.fsync_failures, 1, "%s", "roll fsync failure counted");
	CHECK_EQ(txlog_sync(log), TRACKD_EIO, "%s", "next sync reports it");
	CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "then ok");
	REQUIRE_OK(txlog_close(log));
	struct recs nv = {0};
	CHECK_EQ(read_dir(dir, 256, 0, &nv), TRACKD_OK, "%s", "dir read");
	CHECK(nv.n >= 3 && nv.seq[0] == 0 && nv.seq[2] == 2 && !nv.out_of_order && !nv.corrupt,
	      "%s", "synced records kept, order intact");
	recs_free(&nv);
	rm_rf(dir);
	free(dir);
}

/* ---- 8b. sync groups under INTERVAL (txlog_group_begin) -------------------- */

static bool has_seq(const struct recs *r, uint64_t seq)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->seq[i] == seq)
			return true;
	return false;
}

static void wait_durable(txlog *log, uint64_t index)
{
	int64_t deadline = clock_mono_us() + 5000000;
	while (txlog_durable_index(log) < index && clock_mono_us() < deadline)
		usleep(1000);
}

static void test_sync_group(void)
{
	char *dir = tmpdir_new();
	struct txlog_options o = opts_for(dir, TXLOG_FSYNC_INTERVAL, 1 << 20, 256, NULL);
	txlog *log;
	REQUIRE_OK(txlog_open(&o, &log));
	struct fail_hook hook = {0};
	txlog_test_set_fsync_hook(log, failing_fsync, &hook);
	uint64_t idx[40];

	/* The flusher syncs what came before the group, not the group. */
	append_range(log, 0, 3, idx);
	txlog_group_begin(log);
	append_range(log, 3, 6, idx);
	wait_durable(log, idx[2]);
	usleep(50 * 1000); /* ten flusher intervals */
	CHECK_EQ(txlog_durable_index(log), idx[2], "%s", "flusher stops at the group");
	CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "the group's sync");
	CHECK_EQ(txlog_durable_index(log), idx[5], "%s", "group durable");

	/* A failed sync discards the group as a whole. */
	txlog_group_begin(log);
	append_range(log, 6, 9, idx);
	atomic_store(&hook.fail_next, 1);
	CHECK_EQ(txlog_sync(log), TRACKD_EIO, "%s", "failed group reported");
	CHECK_EQ(txlog_readable_index(log), idx[5], "%s", "nothing of it readable");
	append_range(log, 9, 10, idx);
	CHECK(idx[9] > idx[8], "%s", "index not reused");
	wait_durable(log, idx[9]);

	/* A flusher failure before the group is not the group's: its sync succeeds. */
	struct txlog_stats st;
	atomic_store(&hook.fail_next, 1);
	append_range(log, 10, 12, idx);
	int64_t deadline = clock_mono_us() + 5000000;
	do {
		txlog_stats(log, &st);
		usleep(1000);
	} while (st.fsync_failures < 2 && clock_mono_us() < deadline);
	CHECK_EQ(st.fsync_failures, 2, "%s", "flusher failure happened");
	txlog_group_begin(log);
	append_range(log, 12, 14, idx);
	CHECK_EQ(txlog_sync(log), TRACKD_OK, "%s", "earlier loss not reported to the group");

	/* A flusher failure racing the group's start: whichever way it falls, the
	 * group is all there when its sync succeeds and all gone when it fails. */
	bool group_ok[8];
	for (uint64_t round = 0; round < 8; round++) {
		uint64_t base = 14 + round * 3;
		atomic_store(&hook.fail_next, 1);
		append_range(log, base, base + 1, idx); /* before the group */
		usleep(round * 1000);
		txlog_group_begin(log);
		append_range(log, base + 1, base + 3, idx);
		group_ok[round] = txlog_sync(log) == TRACKD_OK;
		atomic_store(&hook.fail_next, 0);
	}
	REQUIRE_OK(txlog_close(log));

	struct recs seen = {0};
	CHECK_EQ(read_dir(dir, 256, 0, &seen), TRACKD_OK, "%s", "read");
	CHECK(has_seq(&seen, 0) && has_seq(&seen, 5) && has_seq(&seen, 9) && has_seq(&seen, 12) &&
	          has_seq(&seen, 13),
	      "%s", "synced groups kept");
	CHECK(!has_seq(&seen, 6) && !has_seq(&seen, 7) && !has_seq(&seen, 8), "%s",
	      "failed group gone");
	for (uint64_t round = 0; round < 8; round++) {
		uint64_t base = 14 + round * 3;
		bool a = has_seq(&seen, base + 1), b = has_seq(&seen, base + 2);
		char what[96];
		snprintf(what, sizeof what, "round %llu: group %s", (unsigned long long)round,
		         group_ok[round] ? "kept whole" : "gone whole");
		CHECK(group_ok[round] ? (a && b) : (!a && !b), "%s", what);
	}
	CHECK(!seen.out_of_order && !seen.corrupt, "%s", "order intact");
	recs_free(&seen);
	rm_rf(dir);
	free(dir);
}

/* ---- 9. live reader under INTERVAL ---------------------------------------- */

struct writer_arg {
	txlog *log;
	uint64_t count;
};

static void *writer_main(void *arg)
{
	struct writer_arg *w = arg;
	for (uint64_t s = 0; s < w->count; s += 50) {
		append_range(w->log, s, s + 50 < w->count ? s + 50 : w->count, NULL);
		usleep(200);
	}
	return NULL;
}

static void test_live_reader(void)
{
	char *dir = tmpdir_new();
	struct txlog_options o = opts_for(dir, TXLOG_FSYNC_INTERVAL, 4096, 256, NULL);
	o.fsync_interval_ms = 2;
	txlog *log;
	REQUIRE_OK(txlog_open(&o, &log));
	REQUIRE_OK(txlog_cursor_register(log, "sink", NULL));
	txlog_reader *rd;
	REQUIRE_OK(txlog_reader_open(log, 0, &rd));
	struct writer_arg w = {log, 20000};
	pthread_t t;
	pthread_create(&t, NULL, writer_main, &w);

	uint64_t expect = 1, above_durable = 0, wrong = 0, eagain = 0;
	int64_t deadline = clock_mono_us() + 15000000;
	while (expect <= w.count && clock_mono_us() < deadline) {
		uint64_t index;
		const void *data;
		size_t len;
		int rc = txlog_reader_next(rd, &index, &data, &len);
		if (rc == TRACKD_EAGAIN) {
			eagain++;
			usleep(100);
			continue;
		}
		uint64_t seq;
		if (rc != TRACKD_OK || index != expect || !payload_ok(data, len, &seq) ||
		    seq != expect - 1) {
			if (wrong++ < 3)
				fprintf(stderr,
				        "  live reader: rc %d index %" PRIu64 " expected %" PRIu64
				        "\n",
				        rc, index, expect);
			if (rc != TRACKD_OK)
				break;
		}
		if (index > txlog_durable_index(log))
			above_durable++;
		expect = index + 1;
		/* The sink commits as it goes, so segments are released behind it. */
		if (index % 500 == 0)
			CHECK_EQ(txlog_cursor_commit(log, "sink", index), TRACKD_OK, "%s",
			         "commit");
	}
	pthread_join(t, NULL);
	CHECK_EQ(expect - 1, w.count, "%s", "live reader got everything");
	CHECK_EQ(wrong, 0, "%s", "records in order, intact");
	CHECK_EQ(above_durable, 0, "%s", "never above the durable index");
	CHECK(eagain > 0, "%s", "the reader caught up with the writer at times");
	struct txlog_stats st;
	txlog_stats(log, &st);
	CHECK(st.first_index > 1, "%s", "segments released behind the reader");
	txlog_reader_close(rd);
	REQUIRE_OK(txlog_close(log));
	rm_rf(dir);
	free(dir);
}

/* A reader that is no sink (a live view) keeps reading a segment released under
 * it, including what was written after it first reached the segment's end; then
 * it goes on at the oldest segment still there (the ones it never opened were
 * released: every cursor had passed them). */
static void test_reader_released_segment(void)
{
	char *dir = tmpdir_new();
	struct txlog_options o = opts_for(dir, TXLOG_FSYNC_NEVER, 300, 256, NULL);
	txlog *log;
	REQUIRE_OK(txlog_open(&o, &log));
	REQUIRE_OK(txlog_cursor_register(log, "sink", NULL));
	append_range(log, 0, 2, NULL);
	txlog_reader *rd;
	REQUIRE_OK(txlog_reader_open(log, 0, &rd));
	struct recs got = {0};
	CHECK_EQ(drain(rd, &got), TRACKD_OK, "%s", "read the first two");
	CHECK_EQ(got.n, 2, "%s", "two so far");
	append_range(log, 2, 40, NULL); /* fills segment 1, rolls several times */
	REQUIRE_OK(txlog_sync(log));
	CHECK_EQ(txlog_cursor_commit(log, "sink", 40), TRACKD_OK, "%s", "sink done");
	struct txlog_stats st;
	txlog_stats(log, &st);
	CHECK_EQ(st.segments, 1, "%s", "all but the newest released");
	CHECK_EQ(drain(rd, &got), TRACKD_OK, "%s", "read on");
	size_t k = 0;
	while (k < got.n && got.idx[k] == k + 1)
		k++;
	CHECK(k >= 3 && k < got.n, "%s", "rest of the released segment it held read");
	bool tail = k < got.n && got.idx[k] == st.first_index;
	for (size_t i = k; tail && i < got.n; i++)
		tail = got.idx[i] == st.first_index + (i - k);
	CHECK(tail && got.idx[got.n - 1] == 40 && !got.bad_payload, "%s",
	      "then everything from the oldest kept segment");
	CHECK_EQ(got.corrupt, 0, "%s", "no damage reported");
	txlog_reader_close(rd);
	recs_free(&got);
	REQUIRE_OK(txlog_close(log));
	rm_rf(dir);
	free(dir);
}

/* ---- garbage in, no crash, no loop (R11 smoke; libFuzzer does the rest) --- */

static void test_garbage(void)
{
	char *pristine = make_pristine(20, 400);
	char segs[64][4096];
	size_t ns = list_segments(pristine, segs, 64);
	char *work = tmpdir_new();
	for (int it = 0; it < 150; it++) {
		rm_rf(work);
		copy_tree(pristine, work);
		/* Mutate a few segments: random spans, magics with wild lengths, cuts. */
		for (size_t s = 0; s < ns; s++) {
			if (rng() % 2)
				continue;
			char path[4096];
			snprintf(path, sizeof path, "%s/%s", work, strrchr(segs[s], '/') + 1);
			size_t len;
			uint8_t *data = read_file(path, &len);
			int muts = 1 + (int)(rng() % 6);
			for (int m = 0; m < muts && len; m++) {
				size_t at = (size_t)(rng() % len);
				switch (rng() % 4) {
				case 0: data[at] = (uint8_t)rng(); break;
				case 1:
					if (at + 8 <= len) {
						put_le32(data + at, FRAME_MAGIC);
						put_le32(data + at + 4, (uint32_t)rng());
					}
					break;
				case 2: len = at; break;
				case 3:
					for (size_t k = at; k < len && k < at + 40; k++)
						data[k] = 0;
					break;
				}
			}
			write_file(path, data, len);
			free(data);
		}
		uint64_t h0 = tree_hash(work);
		struct recs r1 = {0};
		int rc = read_dir(work, (rng() % 2) ? 256 : UINT32_MAX, 0, &r1);
		CHECK_EQ(rc, TRACKD_OK, "%s", "dir reader terminates on garbage");
		CHECK(r1.bad_payload == 0, "%s", "dir reader: no payload damage passed as valid");
		CHECK(r1.out_of_order == 0, "%s", "dir reader: order");
		CHECK(tree_hash(work) == h0, "%s", "dir reader modified nothing");

		struct recs r2 = {0};
		struct txlog_options o = opts_for(work, TXLOG_FSYNC_NEVER, 400, 256, &r2);
		txlog *log;
		rc = txlog_open(&o, &log);
		CHECK_EQ(rc, TRACKD_OK, "%s", "open on garbage");
		if (rc == TRACKD_OK) {
			CHECK(r2.n == r1.n && !r2.bad_payload && !r2.out_of_order, "%s",
			      "recovery delivers what the reader read");
			REQUIRE_OK(txlog_close(log));
			struct recs r3 = {0};
			o.on_record_arg = &r3;
			REQUIRE_OK(txlog_open(&o, &log));
			struct txlog_stats st;
			txlog_stats(log, &st);
			CHECK_EQ(st.records_quarantined + st.bytes_truncated +
			             st.bad_segment_headers,
			         0, "%s", "second open: stable");
			CHECK_EQ(r3.n, r2.n, "%s", "second open: same records");
			REQUIRE_OK(txlog_close(log));
			struct recs r4 = {0};
			CHECK_EQ(read_dir(work, 256, 0, &r4), TRACKD_OK, "%s", "read repaired");
			CHECK_EQ(r4.corrupt, 0, "%s", "repaired log reads clean");
			recs_free(&r3);
			recs_free(&r4);
		}
		recs_free(&r1);
		recs_free(&r2);
	}
	/* Pure noise files, including names of huge indices. */
	for (int it = 0; it < 50; it++) {
		rm_rf(work);
		mkdir(work, 0750);
		int files = 1 + (int)(rng() % 3);
		for (int f = 0; f < files; f++) {
			char path[4096];
			snprintf(path, sizeof path, "%s/%020" PRIu64 ".seg", work,
			         f == 2 ? UINT64_MAX - 1 : 1 + rng() % 1000);
			size_t len = (size_t)(rng() % 3000);
			uint8_t *data = malloc(len + 1);
			for (size_t k = 0; k < len; k++)
				data[k] = (uint8_t)((rng() % 5 == 0) ? 0x4B : rng());
			write_file(path, data, len);
			free(data);
		}
		struct recs r = {0};
		CHECK_EQ(read_dir(work, UINT32_MAX, 0, &r), TRACKD_OK, "%s", "dir reader on noise");
		recs_free(&r);
		txlog *log;
		struct txlog_options o = opts_for(work, TXLOG_FSYNC_NEVER, 400, 256, NULL);
		int rc = txlog_open(&o, &log);
		CHECK(rc == TRACKD_OK || rc == TRACKD_ECORRUPT, "%s",
		      "open on noise: ok or index space exhausted");
		if (rc == TRACKD_OK)
			txlog_close(log);
	}
	rm_rf(work);
	rm_rf(pristine);
	free(work);
	free(pristine);
}

/* ---- R16: a large backlog opens fast with small memory (opt-in) ----------- */

static int count_cb(void *arg, uint64_t index, const void *data, size_t len)
{
	(void)index;
	(void)data;
	*(uint64_t *)arg += len;
	return 0;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static void test_backlog(long mb)
{
	char *dir = tmpdir_new();
	struct txlog_options o = opts_for(dir, TXLOG_FSYNC_NEVER, 64u << 20, 1u << 20, NULL);
	txlog *log;
	REQUIRE_OK(txlog_open(&o, &log));
	static uint8_t rec[4000];
	memset(rec, 'r', sizeof rec);
	uint64_t n = ((uint64_t)mb << 20) / (sizeof rec + TXLOG_FRAME_OVERHEAD);
	for (uint64_t i = 0; i < n; i++)
		REQUIRE_OK(txlog_append(log, rec, sizeof rec, NULL));
	REQUIRE_OK(txlog_close(log));
	long rss0 = rss_kb();
	uint64_t bytes = 0;
	o.on_record = count_cb;
	o.on_record_arg = &bytes;
	int64_t t0 = clock_mono_us();
	REQUIRE_OK(txlog_open(&o, &log));
	int64_t us = clock_mono_us() - t0;
	long rss1 = rss_kb();
	CHECK_EQ(bytes, n * sizeof rec, "%s", "backlog: every byte seen");
	printf("txlog_test: backlog %ld MiB (%" PRIu64 " records) recovered in %" PRId64
	       " ms, RSS %ld -> %ld kB\n",
	       mb, n, us / 1000, rss0, rss1);
	CHECK(rss1 - rss0 < 16 * 1024, "%s", "backlog: RSS growth under 16 MiB");
	REQUIRE_OK(txlog_close(log));
	rm_rf(dir);
	free(dir);
}

int main(void)
{
	/* Damage is the point of these tests: keep the expected warnings quiet. */
	trackd_log_set_level(TRACKD_LOG_ERROR);
	int64_t t0 = clock_mono_us();
	struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
	    {"round_trip", test_round_trip},
	    {"truncate_every_offset", test_truncate_every_offset},
	    {"bit_flips", test_bit_flips},
	    {"zero_and_headers", test_zero_and_headers},
	    {"power_loss", test_power_loss},
	    {"cursors", test_cursors},
	    {"limits", test_limits},
	    {"budget", test_budget},
	    {"budget_reload_and_monitoring", test_budget_reload_and_monitoring},
	    {"fsync_failure", test_fsync_failure},
	    {"sync_group", test_sync_group},
	    {"live_reader", test_live_reader},
	    {"reader_released_segment", test_reader_released_segment},
	    {"garbage", test_garbage},
	};
	for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
		int f0 = check_failed;
		int64_t t = clock_mono_us();
		tests[i].fn();
		printf("  %-24s %s (%" PRId64 " ms)\n", tests[i].name,
		       check_failed == f0 ? "ok" : "FAILED", (clock_mono_us() - t) / 1000);
	}
	const char *big = getenv("TXLOG_TEST_BACKLOG_MB");
	if (big && atol(big) > 0)
		test_backlog(atol(big));
	printf("txlog_test: %" PRId64 " ms\n", (clock_mono_us() - t0) / 1000);
	return CHECK_SUMMARY("txlog_test");
}
