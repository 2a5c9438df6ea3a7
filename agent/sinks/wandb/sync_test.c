/* sync_test — `trackctl sync`'s durable and parsing parts in the wandb sink:
 * the progress record (round trip, every corruption refused), its place in the
 * per-run state file, and reading whole lines from the local store's files
 * (chunk bounds at limit-1, limit, limit+1, a line longer than a chunk, files
 * shorter than the snapshot says or cut mid-line). The job itself is tested
 * end to end (tests/e2e/test_sync.py). */
#include "store.h"
#include "sync.h"

#include "errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static void test_progress(void)
{
	struct wb_sync_progress p = {.flags = WB_SYNC_SYNCED,
	                             .local_index = 0x0102030405060708ull,
	                             .history_lines = 3,
	                             .history_bytes = UINT64_MAX,
	                             .console_lines = 0,
	                             .console_bytes = 0,
	                             .events_lines = 7,
	                             .events_bytes = 700},
	                        q;
	uint8_t b[WB_SYNC_PROGRESS_BYTES + 1];
	wb_sync_progress_encode(&p, b);
	CHECK(memcmp(b, "TRKDWS02", 8) == 0, "magic first");
	CHECK(b[12] == 0x08 && b[19] == 0x01, "little-endian index");
	CHECK(wb_sync_progress_decode(b, WB_SYNC_PROGRESS_BYTES, &q) == 0, "decodes");
	CHECK(p.flags == q.flags && p.local_index == q.local_index &&
	          p.history_lines == q.history_lines && p.history_bytes == q.history_bytes &&
	          p.console_lines == q.console_lines && p.console_bytes == q.console_bytes &&
	          p.events_lines == q.events_lines && p.events_bytes == q.events_bytes,
	      "round trip");
	CHECK(wb_sync_progress_decode(b, WB_SYNC_PROGRESS_BYTES - 1, &q) == TRACKD_ECORRUPT,
	      "one byte short");
	CHECK(wb_sync_progress_decode(b, WB_SYNC_PROGRESS_BYTES + 1, &q) == TRACKD_ECORRUPT,
	      "one byte long");
	CHECK(wb_sync_progress_decode(b, 0, &q) == TRACKD_ECORRUPT, "empty");
	uint8_t c[WB_SYNC_PROGRESS_BYTES];
	memcpy(c, b, sizeof c);
	c[7] = '3';
	CHECK(wb_sync_progress_decode(c, sizeof c, &q) == TRACKD_ECORRUPT, "other magic");
	/* A record from before events: read with none acknowledged (a resumed
	 * sync then sends every event, from offset 0 of its own file). */
	c[7] = '1';
	CHECK(wb_sync_progress_decode(c, WB_SYNC_PROGRESS_V1_BYTES, &q) == 0 &&
	          q.history_lines == 3 && q.events_lines == 0 && q.events_bytes == 0,
	      "version 1");
	CHECK(wb_sync_progress_decode(c, sizeof c, &q) == TRACKD_ECORRUPT,
	      "version 1 magic, version 2 length");
	memcpy(c, b, sizeof c);
	c[8] |= 0x2;
	CHECK(wb_sync_progress_decode(c, sizeof c, &q) == TRACKD_ECORRUPT, "unknown flag");
	/* Bytes below lines cannot be: every line ends in '\n'. */
	p = (struct wb_sync_progress){.history_lines = 5, .history_bytes = 4};
	wb_sync_progress_encode(&p, c);
	CHECK(wb_sync_progress_decode(c, sizeof c, &q) == TRACKD_ECORRUPT, "history bytes < lines");
	p = (struct wb_sync_progress){.history_lines = 5, .history_bytes = 5};
	wb_sync_progress_encode(&p, c);
	CHECK(wb_sync_progress_decode(c, sizeof c, &q) == 0, "bytes == lines: one-byte lines");
	p = (struct wb_sync_progress){.console_lines = 2, .console_bytes = 1};
	wb_sync_progress_encode(&p, c);
	CHECK(wb_sync_progress_decode(c, sizeof c, &q) == TRACKD_ECORRUPT, "console bytes < lines");
	p = (struct wb_sync_progress){.events_lines = 2, .events_bytes = 1};
	wb_sync_progress_encode(&p, c);
	CHECK(wb_sync_progress_decode(c, sizeof c, &q) == TRACKD_ECORRUPT, "events bytes < lines");
}

static void test_whole_lines(void)
{
	CHECK(wb_sync_whole_lines("", 0) == 0, "empty");
	CHECK(wb_sync_whole_lines("abc", 3) == 0, "no newline");
	CHECK(wb_sync_whole_lines("a\n", 2) == 2, "one line");
	CHECK(wb_sync_whole_lines("a\nb", 3) == 2, "cut line left out");
	CHECK(wb_sync_whole_lines("a\nb\n", 4) == 4, "two lines");
	CHECK(wb_sync_whole_lines("\n", 1) == 1, "empty line");
}

/* The progress record rides in the state file as its payload. */
static void test_state_file(const char *dir)
{
	struct wb_sync_progress p = {.local_index = 42, .history_lines = 7, .history_bytes = 700};
	uint8_t b[WB_SYNC_PROGRESS_BYTES];
	wb_sync_progress_encode(&p, b);
	struct wb_state st = {.flags = WB_STATE_UPSERTED,
	                      .history_base = 10,
	                      .entity = "e",
	                      .project = "p",
	                      .snapshot = b,
	                      .snapshot_len = sizeof b},
	                rd;
	CHECK(wb_state_write(dir, "run1", &st) == 0, "write");
	CHECK(wb_state_read(dir, "run1", &rd) == 0, "read");
	struct wb_sync_progress q;
	CHECK(wb_sync_progress_decode(rd.snapshot, rd.snapshot_len, &q) == 0 &&
	          q.local_index == 42 && q.history_bytes == 700 && rd.history_base == 10 &&
	          strcmp(rd.entity, "e") == 0,
	      "progress back from the state file");
	wb_state_fini(&rd);
	wb_state_remove(dir, "run1");
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

/* Reads the run dir's `file` from `off` with chunks of `want`; returns what was read. */
static int read_at(const char *dir, enum local_store_file file, uint64_t *off, uint64_t total,
                   size_t want, struct buf *b, char *why)
{
	uint64_t added = 0, before = b->len;
	int rv = wb_sync_read_lines(dir, file, off, total, want, b, &added, why, 300);
	CHECK(added == b->len - before, "added counts the bytes appended");
	return rv;
}

/* Lines are read from the local store's appended files (local_store.h). */
#define H       LOCAL_STORE_HISTORY
#define NONL    LOCAL_STORE_CONSOLE
#define MISSING LOCAL_STORE_SUMMARY

static void test_read_lines(const char *dir)
{
	/* Lines of 4, 4, 10 and 2 bytes: 20 bytes. */
	write_file(dir, local_store_file_name(H), "abc\ndef\n123456789\nx\n");
	char why[300];
	struct buf b;
	buf_init(&b, 1 << 20);
	uint64_t off = 0;
	/* want 7 (a line boundary at 8: limit-1) takes one line; 8 (limit) two;
	 * 9 (limit+1) still two: the third line is not whole. */
	CHECK(read_at(dir, H, &off, 20, 7, &b, why) == 0 && off == 4 && b.len == 4, "want 7");
	off = 0;
	buf_reset(&b);
	CHECK(read_at(dir, H, &off, 20, 8, &b, why) == 0 && off == 8, "want 8");
	off = 0;
	buf_reset(&b);
	CHECK(read_at(dir, H, &off, 20, 9, &b, why) == 0 && off == 8, "want 9");
	/* From 8: a 10-byte line longer than the chunk is read whole (the chunk
	 * doubles, 3 → 6 → 12, and then holds the short line after it too). */
	CHECK(read_at(dir, H, &off, 20, 3, &b, why) == 0 && off == 20, "long line whole");
	CHECK(strcmp(b.data, "abc\ndef\n123456789\nx\n") == 0, "all of it");
	off = 8;
	CHECK(read_at(dir, H, &off, 20, 10, &b, why) == 0 && off == 18, "want == line length");
	CHECK(read_at(dir, H, &off, 20, 100, &b, why) == 0 && off == 20, "the rest");
	CHECK(read_at(dir, H, &off, 20, 100, &b, why) == 0 && off == 20, "at the end: nothing");
	/* want 0 still makes progress. */
	off = 0;
	buf_reset(&b);
	CHECK(read_at(dir, H, &off, 20, 0, &b, why) == 0 && off == 4, "want 0");
	/* Only up to `total`: bytes after the snapshot's length are not read. */
	off = 0;
	buf_reset(&b);
	CHECK(read_at(dir, H, &off, 8, 1000, &b, why) == 0 && off == 8 && b.len == 8, "total");
	/* The snapshot says more than the file holds. */
	off = 0;
	buf_reset(&b);
	CHECK(read_at(dir, H, &off, 21, 1000, &b, why) == TRACKD_ECORRUPT && off == 0 &&
	          b.len == 0 && strstr(why, "shorter"),
	      "%s", why);
	/* total in the middle of a line: the file is not what the snapshot says. */
	CHECK(read_at(dir, H, &off, 6, 1000, &b, why) == TRACKD_ECORRUPT && off == 0 &&
	          strstr(why, "whole line"),
	      "%s", why);
	write_file(dir, local_store_file_name(NONL), "abc");
	CHECK(read_at(dir, NONL, &off, 3, 1000, &b, why) == TRACKD_ECORRUPT, "no newline at all");
	CHECK(read_at(dir, MISSING, &off, 3, 1000, &b, why) == TRACKD_EIO &&
	          strstr(why, "cannot open"),
	      "%s", why);
	/* The buffer's maximum: refused, nothing consumed. */
	struct buf small;
	buf_init(&small, 5);
	off = 0;
	CHECK(read_at(dir, H, &off, 20, 100, &small, why) == TRACKD_ETOOBIG && off == 0,
	      "buffer max");
	buf_fini(&small);
	buf_fini(&b);
	char path[4200];
	const char *names[] = {local_store_file_name(H), local_store_file_name(NONL)};
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
}

int main(void)
{
	char dir[] = "/tmp/sync_test.XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_progress();
	test_whole_lines();
	test_state_file(dir);
	test_read_lines(dir);
	rmdir(dir);
	return CHECK_SUMMARY("sync_test");
}
