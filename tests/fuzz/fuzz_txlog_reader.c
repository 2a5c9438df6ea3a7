/* fuzz_txlog_reader — the transaction log's readers and recovery on arbitrary
 * segment files (R3, R11).
 *
 * The input is the bytes of a segment file. Four layouts are built from it:
 *   as is      one segment;
 *   split      two segments, cut where a second segment header "TRKDLOG1" starts
 *              (so two concatenated segment files split back into themselves),
 *              else in the middle;
 *   header     with a valid header put in front, or the input's own header taken
 *              away when it has one;
 *   far        behind a valid header and 256 KiB of zeros, so that the windowed
 *              scanning code moves its windows over the input.
 * A segment is named after the first index in its header when that is usable, so
 * inputs also choose the names. For each layout:
 *   1. txlog_reader_open_dir reads everything (also with a tiny record limit and
 *      from the middle) — the records it returns are the reference;
 *   2. on a copy, txlog_open recovers; its on_record calls must report exactly the
 *      reference records;
 *   3. three records are appended; a live reader returns the reference and them;
 *      the log is closed and reopened: this second recovery must find nothing to
 *      quarantine, truncate or repair, and see the same records;
 *   4. a directory reader over the repaired log reports no damage and returns the
 *      same records.
 * A broken rule aborts with a message naming it. */
#include "errors.h"
#include "log.h"
#include "txlog.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RECORD_LIMIT  (64u << 10) /* max_record_bytes of readers and the log */
#define TINY_LIMIT    8u
#define SEGMENT_BYTES 4096u    /* small, so the appends may roll */
#define MAX_STEPS     1000000u /* reader calls before we call it a loop */
#define APPENDS       3
#define FAR_WINDOW    (256u << 10) /* txlog's READER_CHUNK */

static const uint8_t seg_magic[8] = {'T', 'R', 'K', 'D', 'L', 'O', 'G', '1'};

/* The harness's scratch directory, made once per process. */
static char scratch[PATH_MAX - 64];

__attribute__((noreturn, format(printf, 1, 2))) static void bug(const char *fmt, ...);

static void bug(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "fuzz_txlog_reader: contract broken: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	abort();
}

static void check_io(bool ok, const char *what, const char *path)
{
	if (!ok) {
		fprintf(stderr, "fuzz_txlog_reader: harness: %s %s: %s\n", what, path,
		        strerror(errno));
		abort();
	}
}

/* ---- scratch files ----------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	if (ftw->level > 0)
		check_io(remove(path) == 0, "remove", path);
	return 0;
}

static void empty_dir(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_scratch(void)
{
	if (scratch[0]) {
		empty_dir(scratch);
		rmdir(scratch);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	trackd_log_set_level(TRACKD_LOG_ERROR);
	/* tmpfs when there is one: the log fsyncs a lot. */
	const char *root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	snprintf(scratch, sizeof scratch, "%s/trackd-fuzz-txlog.XXXXXX", root ? root : "/tmp");
	check_io(mkdtemp(scratch) != NULL, "mkdtemp", scratch);
	atexit(remove_scratch);
	return 0;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* The first index a segment header names, or 0 when there is no usable one. */
static uint64_t header_first(const uint8_t *p, size_t n)
{
	if (n < 16 || memcmp(p, seg_magic, sizeof seg_magic) != 0)
		return 0;
	return get_le64(p + 8);
}

/* A layout: up to two segments, each an optional header, an optional run of zero
 * bytes (a hole) and a slice of the input. */
struct segment {
	uint64_t first;
	uint8_t hdr[16];
	size_t hdr_len;
	size_t gap;
	const uint8_t *data;
	size_t len;
};

struct layout {
	struct segment seg[2];
	size_t n;
};

static void write_segment(const char *dir, const struct segment *sg)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%020llu.seg", dir, (unsigned long long)sg->first);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	check_io(fd >= 0, "create", path);
	check_io(write(fd, sg->hdr, sg->hdr_len) == (ssize_t)sg->hdr_len, "write", path);
	check_io(lseek(fd, (off_t)sg->gap, SEEK_CUR) >= 0, "seek", path);
	check_io(write(fd, sg->data, sg->len) == (ssize_t)sg->len, "write", path);
	close(fd);
}

static void write_layout(const char *dir, const struct layout *l)
{
	check_io(mkdir(dir, 0750) == 0, "mkdir", dir);
	for (size_t i = 0; i < l->n; i++)
		write_segment(dir, &l->seg[i]);
}

/* ---- what readers and recovery see ----------------------------------------------------- */

struct rec {
	uint64_t index;
	uint64_t hash;
	size_t len;
};

struct recs {
	struct rec *v;
	size_t n, cap;
};

static uint64_t fnv1a(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h = 0xcbf29ce484222325u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3u;
	return h;
}

static void recs_push(struct recs *r, uint64_t index, const void *data, size_t len)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 16;
		r->v = realloc(r->v, r->cap * sizeof *r->v);
		if (!r->v)
			abort();
	}
	r->v[r->n++] = (struct rec){index, fnv1a(data, len), len};
}

static bool recs_equal(const struct recs *a, const struct recs *b, size_t n)
{
	if (a->n < n || b->n < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (a->v[i].index != b->v[i].index || a->v[i].hash != b->v[i].hash ||
		    a->v[i].len != b->v[i].len)
			return false;
	}
	return true;
}

/* Reads to the end. Returns the number of damaged spans reported. */
static size_t read_all(txlog_reader *r, uint32_t limit, uint64_t after, struct recs *out)
{
	int rc;
	size_t damaged = 0;
	uint64_t prev = 0;
	for (size_t step = 0;; step++) {
		if (step == MAX_STEPS)
			bug("reader did not reach the end after %u calls", MAX_STEPS);
		uint64_t index;
		const void *data;
		size_t len;
		rc = txlog_reader_next(r, &index, &data, &len);
		if (rc == TRACKD_EAGAIN)
			break;
		if (rc == TRACKD_ECORRUPT) {
			damaged++;
			continue;
		}
		if (rc != TRACKD_OK)
			bug("txlog_reader_next: %s", trackd_strerror(rc));
		if (index == 0 || index <= prev || index <= after || len > limit)
			bug("reader returned index %llu (previous %llu, after %llu), %zu bytes",
			    (unsigned long long)index, (unsigned long long)prev,
			    (unsigned long long)after, len);
		prev = index;
		if (out)
			recs_push(out, index, data, len);
	}
	/* Once at the end, it stays there. */
	uint64_t index;
	const void *data;
	size_t len;
	if ((rc = txlog_reader_next(r, &index, &data, &len)) != TRACKD_EAGAIN)
		bug("reader at its end returned %s", trackd_strerror(rc));
	txlog_reader_close(r);
	return damaged;
}

static size_t read_dir(const char *dir, uint32_t limit, uint64_t after, struct recs *out)
{
	txlog_reader *r;
	int rc = txlog_reader_open_dir(dir, limit, after, &r);
	if (rc != TRACKD_OK)
		bug("txlog_reader_open_dir: %s", trackd_strerror(rc));
	return read_all(r, limit, after, out);
}

static int collect(void *arg, uint64_t index, const void *data, size_t len)
{
	recs_push(arg, index, data, len);
	return 0;
}

static int open_log(const char *dir, struct recs *seen, txlog **out)
{
	struct txlog_options o = {
	    .dir = dir,
	    .fsync = TXLOG_FSYNC_NEVER,
	    .segment_bytes = SEGMENT_BYTES,
	    .max_record_bytes = RECORD_LIMIT,
	    .on_record = collect,
	    .on_record_arg = seen,
	};
	return txlog_open(&o, out);
}

static void run_layout(const struct layout *l)
{
	char dir_a[PATH_MAX], dir_b[PATH_MAX];
	snprintf(dir_a, sizeof dir_a, "%s/a", scratch);
	snprintf(dir_b, sizeof dir_b, "%s/b", scratch);
	empty_dir(scratch);
	write_layout(dir_a, l);
	write_layout(dir_b, l);

	/* 1. The reference. Variants only have to be safe and in order. */
	struct recs ref = {0}, seen = {0}, final = {0};
	read_dir(dir_a, RECORD_LIMIT, 0, &ref);
	read_dir(dir_a, TINY_LIMIT, 0, NULL);
	if (ref.n)
		read_dir(dir_a, RECORD_LIMIT, ref.v[ref.n / 2].index, NULL);

	/* 2. Recovery sees what a reader sees. */
	txlog *log;
	int rc = open_log(dir_b, &seen, &log);
	if (rc == TRACKD_ECORRUPT && ref.n && ref.v[ref.n - 1].index == UINT64_MAX)
		goto out; /* documented: no index is left to give */
	if (rc != TRACKD_OK)
		bug("txlog_open: %s", trackd_strerror(rc));
	if (seen.n != ref.n || !recs_equal(&seen, &ref, ref.n))
		bug("recovery saw %zu records, a directory reader %zu (or other ones)", seen.n,
		    ref.n);
	uint64_t last = ref.n ? ref.v[ref.n - 1].index : 0;
	if (txlog_last_index(log) != last)
		bug("last index %llu after recovery, last record %llu",
		    (unsigned long long)txlog_last_index(log), (unsigned long long)last);

	/* 3. Appends go after everything, and a second recovery has nothing to do. */
	char payload[SEGMENT_BYTES / 2];
	for (int i = 0; i < APPENDS; i++) {
		memset(payload, 'a' + i, sizeof payload);
		size_t len = sizeof payload - (size_t)i * 700;
		uint64_t index;
		rc = txlog_append(log, payload, len, &index);
		if (rc == TRACKD_EIO && (i == 0 || last + 1 >= TXLOG_MAX_INDEX))
			break; /* a forged index near TXLOG_MAX_INDEX: appends refuse once the
			        * next index would reach it, never wrap */
		if (rc != TRACKD_OK)
			bug("append %d after recovery: %s", i, trackd_strerror(rc));
		if (index == 0 || index <= last)
			bug("append %d got index %llu, after %llu", i, (unsigned long long)index,
			    (unsigned long long)last);
		last = index;
		recs_push(&ref, index, payload, len);
	}
	/* A live reader sees the same. */
	txlog_reader *live;
	if ((rc = txlog_reader_open(log, 0, &live)) != TRACKD_OK)
		bug("txlog_reader_open: %s", trackd_strerror(rc));
	size_t damaged = read_all(live, RECORD_LIMIT, 0, &final);
	if (damaged || final.n != ref.n || !recs_equal(&final, &ref, ref.n))
		bug("live reader over the recovered log: %zu damaged spans, %zu records, expected "
		    "%zu",
		    damaged, final.n, ref.n);
	final.n = 0;
	if ((rc = txlog_close(log)) != TRACKD_OK)
		bug("txlog_close: %s", trackd_strerror(rc));

	seen.n = 0;
	if ((rc = open_log(dir_b, &seen, &log)) != TRACKD_OK)
		bug("second txlog_open: %s", trackd_strerror(rc));
	struct txlog_stats st;
	txlog_stats(log, &st);
	if (st.records_quarantined || st.bytes_truncated || st.bad_segment_headers)
		bug("second recovery still found damage: %llu quarantined, %llu bytes truncated, "
		    "%llu bad headers",
		    (unsigned long long)st.records_quarantined,
		    (unsigned long long)st.bytes_truncated,
		    (unsigned long long)st.bad_segment_headers);
	if (seen.n != ref.n || !recs_equal(&seen, &ref, ref.n))
		bug("second recovery saw %zu records, expected %zu (recovered + appended)", seen.n,
		    ref.n);
	if ((rc = txlog_close(log)) != TRACKD_OK)
		bug("second txlog_close: %s", trackd_strerror(rc));

	/* 4. A repaired log reads clean. */
	damaged = read_dir(dir_b, RECORD_LIMIT, 0, &final);
	if (damaged)
		bug("reader reports %zu damaged spans in a recovered log", damaged);
	if (final.n != ref.n || !recs_equal(&final, &ref, ref.n))
		bug("reader over the recovered log returned %zu records, expected %zu", final.n,
		    ref.n);
out:
	free(ref.v);
	free(seen.v);
	free(final.v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t none[1];
	if (!data)
		data = none;
	uint64_t own = header_first(data, size);
	uint64_t first = own ? own : 1;

	/* As is. */
	struct layout l = {.n = 1, .seg[0] = {.first = first, .data = data, .len = size}};
	run_layout(&l);

	/* Split in two. */
	if (size >= 2 && first < UINT64_MAX) {
		const uint8_t *cut = size > 16 ? memmem(data + 16, size - 16, seg_magic, 8) : NULL;
		size_t at = cut ? (size_t)(cut - data) : size / 2;
		uint64_t second = header_first(data + at, size - at);
		if (second <= first)
			second = first + 1;
		l = (struct layout){
		    .n = 2,
		    .seg[0] = {.first = first, .data = data, .len = at},
		    .seg[1] = {.first = second, .data = data + at, .len = size - at}};
		run_layout(&l);
	}

	/* With a valid header in front, or without the input's own. */
	l = (struct layout){.n = 1};
	if (own) {
		l.seg[0] = (struct segment){.first = 1, .data = data + 16, .len = size - 16};
	} else {
		l.seg[0] = (struct segment){.first = 1, .hdr_len = 16, .data = data, .len = size};
		memcpy(l.seg[0].hdr, seg_magic, 8);
		l.seg[0].hdr[8] = 1; /* first index 1, little-endian */
	}
	run_layout(&l);

	/* Far into a file: zeros first, so that resynchronisation scans several of
	 * its windows and the input's frames straddle the end of the readers' first
	 * window (READER_CHUNK, 256 KiB): the window code only runs on big files. */
	size_t gap = size / 2 < FAR_WINDOW - 16 ? FAR_WINDOW - 16 - size / 2 : 0;
	l = (struct layout){.n = 1};
	l.seg[0] =
	    (struct segment){.first = 1, .hdr_len = 16, .gap = gap, .data = data, .len = size};
	memcpy(l.seg[0].hdr, seg_magic, 8);
	l.seg[0].hdr[8] = 1;
	run_layout(&l);
	return 0;
}
