/* file_journal_test — the wandb sink's per-file upload journal: the table's
 * rules (an unchanged file is not wanted again, a changed one is, events for
 * a content not wanted are refused), the frame round trip, a torn or corrupt
 * tail cut at the last whole event, reopening after a "crash", and
 * compaction keeping every fact. */
#include "file_journal.h"

#include "errors.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static struct wb_file_event ev(uint8_t op, const char *name, uint8_t content)
{
	struct wb_file_event e = {.op = op, .source = WB_FILE_BLOB, .name = name, .size = content};
	memset(e.sha256, content, 32);
	memset(e.md5, content, 16);
	return e;
}

static void test_rules(void)
{
	struct wb_files t;
	wb_files_init(&t);
	bool changed;
	struct wb_file_event e = ev(WB_FILE_WANT, "media/images/a_0_x.png", 1);
	CHECK_EQ(wb_files_apply(&t, &e, &changed), 0);
	CHECK(changed, "a new file is wanted");
	struct wb_file *f = wb_files_find(&t, "media/images/a_0_x.png");
	CHECK(f && wb_file_needs_put(f) && !wb_file_needs_listing(f));
	CHECK_EQ(wb_files_apply(&t, &e, &changed), 0);
	CHECK(!changed, "the same WANT again (a replay) changes nothing");

	struct wb_file_event bad = ev(WB_FILE_PUT, "media/images/a_0_x.png", 2);
	CHECK_EQ(wb_files_apply(&t, &bad, &changed), TRACKD_EINVAL);
	bad = ev(WB_FILE_PUT, "nope", 1);
	CHECK_EQ(wb_files_apply(&t, &bad, &changed), TRACKD_EINVAL);
	bad = ev(WB_FILE_LISTED, "media/images/a_0_x.png", 1);
	CHECK_EQ(wb_files_apply(&t, &bad, &changed), TRACKD_EINVAL, "listed before put");
	bad = ev(WB_FILE_WANT, "../x", 1);
	CHECK_EQ(wb_files_apply(&t, &bad, &changed), TRACKD_EINVAL, "names are run file names");
	bad = ev(9, "x", 1);
	CHECK_EQ(wb_files_apply(&t, &bad, &changed), TRACKD_EINVAL);

	e.op = WB_FILE_PUT;
	CHECK_EQ(wb_files_apply(&t, &e, &changed), 0);
	f = wb_files_find(&t, "media/images/a_0_x.png");
	CHECK(changed && !wb_file_needs_put(f) && wb_file_needs_listing(f));
	CHECK_EQ(wb_files_apply(&t, &e, &changed), 0);
	CHECK(!changed, "a second 2xx changes nothing");
	e.op = WB_FILE_LISTED;
	CHECK_EQ(wb_files_apply(&t, &e, &changed), 0);
	CHECK(changed && !wb_file_needs_listing(f));

	e.op = WB_FILE_WANT;
	CHECK_EQ(wb_files_apply(&t, &e, &changed), 0);
	CHECK(!changed, "an unchanged file (same MD5) is not uploaded twice");

	struct wb_file_event v2 = ev(WB_FILE_WANT, "media/images/a_0_x.png", 2);
	CHECK_EQ(wb_files_apply(&t, &v2, &changed), 0);
	f = wb_files_find(&t, "media/images/a_0_x.png");
	CHECK(changed && wb_file_needs_put(f), "a changed file goes up again");
	CHECK(!wb_file_needs_listing(f), "the old content was listed already");
	/* Back to the content that is up: nothing to PUT. */
	CHECK_EQ(wb_files_apply(&t, &e, &changed), 0);
	CHECK(changed && !wb_file_needs_put(f));

	v2.op = WB_FILE_WANT;
	wb_files_apply(&t, &v2, &changed);
	v2.op = WB_FILE_DROPPED;
	CHECK_EQ(wb_files_apply(&t, &v2, &changed), 0);
	CHECK(changed && !wb_file_needs_put(f), "a dropped content is not retried");
	v2.op = WB_FILE_WANT;
	CHECK_EQ(wb_files_apply(&t, &v2, &changed), 0);
	CHECK(!changed, "the same content is not wanted again after it was given up");
	CHECK_EQ(t.n, 1);

	/* Log indexes: a replayed record (index at or below the entry's) changes
	 * nothing, even with an older content. */
	struct wb_file_event r = ev(WB_FILE_WANT, "r.bin", 1);
	r.index = 10;
	wb_files_apply(&t, &r, &changed);
	r = ev(WB_FILE_WANT, "r.bin", 2);
	r.index = 20;
	wb_files_apply(&t, &r, &changed);
	r = ev(WB_FILE_WANT, "r.bin", 1);
	r.index = 10;
	CHECK_EQ(wb_files_apply(&t, &r, &changed), 0);
	CHECK(!changed && wb_files_find(&t, "r.bin")->md5[0] == 2, "a replay is ignored");
	r.index = 20;
	CHECK_EQ(wb_files_apply(&t, &r, &changed), 0);
	CHECK(!changed, "at the entry's index too");
	r.index = 21;
	CHECK_EQ(wb_files_apply(&t, &r, &changed), 0);
	CHECK(changed && wb_files_find(&t, "r.bin")->md5[0] == 1, "a later record counts");
	r.index = 0;
	r.md5[0] = 3;
	CHECK_EQ(wb_files_apply(&t, &r, &changed), 0);
	CHECK(changed, "index 0 (made by the sink) always counts");

	/* Many names: the index grows and finds every one. */
	char names[300][32];
	for (int i = 0; i < 300; i++) {
		snprintf(names[i], sizeof names[i], "f/%d.bin", i);
		struct wb_file_event w = ev(WB_FILE_WANT, names[i], (uint8_t)i);
		wb_files_apply(&t, &w, &changed);
	}
	int found = 0;
	for (int i = 0; i < 300; i++)
		found += wb_files_find(&t, names[i]) != NULL;
	CHECK_EQ(found, 300);
	CHECK(!wb_files_find(&t, "f/300.bin"));
	wb_files_fini(&t);
}

static void test_frames(void)
{
	uint8_t frame[WB_FILE_EVENT_MAX];
	size_t n;
	struct wb_file_event e = ev(WB_FILE_WANT, "config.yaml", 7);
	e.source = WB_FILE_SPOOLED;
	CHECK_EQ(wb_file_event_encode(&e, frame, sizeof frame, &n), 0);
	CHECK_EQ(n, 8 + WB_FILE_EVENT_FIXED + 11);
	CHECK_EQ(WB_FILE_EVENT_FIXED, 68);
	CHECK_EQ(wb_file_event_encode(&e, frame, n - 1, &n), TRACKD_ETOOBIG, "cap checked");

	char longname[1100];
	memset(longname, 'a', sizeof longname - 1);
	longname[1024] = '\0';
	struct wb_file_event l = ev(WB_FILE_WANT, longname, 1);
	CHECK_EQ(wb_file_event_encode(&l, frame, sizeof frame, &n), 0, "1024-byte name fits");
	longname[1024] = 'a';
	longname[1025] = '\0';
	CHECK_EQ(wb_file_event_encode(&l, frame, sizeof frame, &n), TRACKD_EINVAL);

	/* Two events, then every cut and a flipped byte. */
	uint8_t buf[2 * WB_FILE_EVENT_MAX];
	size_t a, b;
	wb_file_event_encode(&e, buf, sizeof buf, &a);
	e.op = WB_FILE_PUT;
	wb_file_event_encode(&e, buf + a, sizeof buf - a, &b);
	for (size_t cut = 0; cut <= a + b; cut++) {
		struct wb_files t;
		wb_files_init(&t);
		size_t valid;
		CHECK_EQ(wb_files_replay(&t, buf, cut, &valid), 0);
		size_t want = cut < a ? 0 : cut < a + b ? a : a + b;
		if (valid != want)
			CHECK_FAIL("cut %zu: valid %zu, want %zu", cut, valid, want);
		wb_files_fini(&t);
	}
	buf[a + 10] ^= 1;
	struct wb_files t;
	wb_files_init(&t);
	size_t valid;
	wb_files_replay(&t, buf, a + b, &valid);
	CHECK_EQ(valid, a, "a corrupt event ends the valid part");
	CHECK(wb_files_find(&t, "config.yaml") &&
	      wb_file_needs_put(wb_files_find(&t, "config.yaml")));
	wb_files_fini(&t);
}

static void test_journal(void)
{
	char dir[] = "/tmp/file_journal_testXXXXXX";
	if (!mkdtemp(dir)) {
		CHECK_FAIL("mkdtemp");
		return;
	}
	struct wb_files t;
	CHECK_EQ(wb_files_open(&t, dir, "run1"), 0);
	CHECK_EQ(t.n, 0);
	struct wb_file_event a = ev(WB_FILE_WANT, "a.txt", 1), b = ev(WB_FILE_WANT, "b.txt", 2);
	CHECK_EQ(wb_files_record(&t, &a), 0);
	CHECK_EQ(wb_files_record(&t, &b), 0);
	CHECK_EQ(wb_files_record(&t, &a), 0, "a replay");
	a.op = WB_FILE_PUT;
	CHECK_EQ(wb_files_record(&t, &a), 0);
	CHECK_EQ(t.events, 3, "only changing events are written");
	wb_files_fini(&t);

	/* A torn tail: half an event appended by a crash. */
	char path[300];
	snprintf(path, sizeof path, "%s/run1.files", dir);
	int fd = open(path, O_WRONLY | O_APPEND);
	CHECK_EQ(write(fd, "\x40\0\0\0garbage", 11), 11);
	close(fd);
	struct stat st1, st2;
	stat(path, &st1);
	CHECK_EQ(wb_files_open(&t, dir, "run1"), 0);
	stat(path, &st2);
	CHECK_EQ(st2.st_size, st1.st_size - 11, "the torn tail is cut");
	CHECK(!wb_file_needs_put(wb_files_find(&t, "a.txt")), "a.txt is up after a restart");
	CHECK(wb_file_needs_put(wb_files_find(&t, "b.txt")), "b.txt is still to go");
	b.op = WB_FILE_PUT;
	CHECK_EQ(wb_files_record(&t, &b), 0, "appends after the cut");
	wb_files_fini(&t);
	CHECK_EQ(wb_files_open(&t, dir, "run1"), 0);
	CHECK(!wb_file_needs_put(wb_files_find(&t, "b.txt")));
	wb_files_fini(&t);

	/* Compaction at open: a journal of 3001 events (written by hand, as a
	 * crash before a runtime compaction could leave it) for one file. */
	snprintf(path, sizeof path, "%s/run2.files", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK_EQ(write(fd, "TRKDWF01", 8), 8);
	for (int i = 0; i <= 3000; i++) {
		struct wb_file_event w =
		    ev(i % 2 ? WB_FILE_PUT : WB_FILE_WANT, "live.log", (uint8_t)(i / 2 % 250 + 1));
		w.md5[0] = (uint8_t)(i / 2 >> 8);
		if (i == 3000) {
			w = ev(WB_FILE_WANT, "live.log", 9);
		}
		uint8_t frame[WB_FILE_EVENT_MAX];
		size_t n;
		wb_file_event_encode(&w, frame, sizeof frame, &n);
		CHECK_EQ(write(fd, frame, n), (ssize_t)n);
	}
	close(fd);
	CHECK_EQ(wb_files_open(&t, dir, "run2"), 0);
	CHECK_EQ(t.events, 3, "compacted to WANT(up) PUT WANT(new)");
	struct wb_file *f = wb_files_find(&t, "live.log");
	CHECK(f && wb_file_needs_put(f) && f->has_put && f->md5[1] == 9);
	wb_files_fini(&t);
	CHECK_EQ(wb_files_open(&t, dir, "run2"), 0);
	CHECK_EQ(t.events, 3, "the compacted journal reads back the same");
	wb_files_fini(&t);

	/* While it is written: a file changing all the time keeps it small. */
	CHECK_EQ(wb_files_open(&t, dir, "run3"), 0);
	for (int i = 0; i < 5000; i++) {
		struct wb_file_event w = ev(WB_FILE_WANT, "live.log", (uint8_t)(i % 250 + 1));
		w.md5[0] = (uint8_t)(i >> 8);
		wb_files_record(&t, &w);
		w.op = WB_FILE_PUT;
		wb_files_record(&t, &w);
	}
	CHECK(t.events <= 1025, "bounded while written: %zu events", t.events);
	f = wb_files_find(&t, "live.log");
	CHECK(f && !wb_file_needs_put(f) && f->md5[0] == (uint8_t)(4999 >> 8));
	wb_files_fini(&t);
	CHECK_EQ(wb_files_open(&t, dir, "run3"), 0);
	f = wb_files_find(&t, "live.log");
	CHECK(f && !wb_file_needs_put(f) && f->md5[0] == (uint8_t)(4999 >> 8) &&
	          f->md5[1] == (uint8_t)(4999 % 250 + 1),
	      "the last state survives compaction");
	wb_files_fini(&t);
	wb_files_remove(dir, "run3");

	CHECK_EQ(wb_files_remove(dir, "run1"), 0);
	CHECK_EQ(wb_files_remove(dir, "run1"), 0, "ENOENT is success");
	wb_files_remove(dir, "run2");
	rmdir(dir);
}

int main(void)
{
	test_rules();
	test_frames();
	test_journal();
	return CHECK_SUMMARY("file_journal_test");
}
