/*
 * blobs_test.c — the blob store against its contract (blobs.h): pieces in
 * order, resends, a wrong offset, the SHA-256 check, the limits at
 * limit - 1 / limit / limit + 1, the disk budget, symlinks planted in the
 * store and in a run dir, links and the sweep.
 */
#include "blobs.h"
#include "check.h"
#include "errors.h"
#include "run_files.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static blobs *open_store(uint64_t max_file, uint64_t max_run)
{
	struct blobs_options o = {
	    .state_dir = root, .max_file_bytes = max_file, .max_run_bytes = max_run};
	blobs *b = NULL;
	CHECK_EQ(blobs_open(&o, &b), 0);
	return b;
}

static int put_all(blobs *b, const char *run, const void *data, size_t len, size_t piece,
                   struct blobs_put_result *res, char *err)
{
	uint8_t d[32];
	blobs_sha256(data, len, d);
	size_t off = 0;
	int rv;
	do {
		size_t n = len - off < piece ? len - off : piece;
		rv = blobs_put(b, 1000, run, d, len, off, (const uint8_t *)data + off, n,
		               UINT64_MAX, res, err, 256);
		off += n;
	} while (rv == 0 && off < len);
	return rv;
}

static void test_pieces(void)
{
	blobs *b = open_store(1 << 20, 1 << 22);
	char data[1000], err[256];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (char)(i * 7);
	uint8_t d[32];
	blobs_sha256(data, sizeof data, d);
	struct blobs_put_result r;
	CHECK(!blobs_have(b, 1000, d));
	CHECK_EQ(blobs_put(b, 1000, "run1", d, 1000, 0, data, 400, UINT64_MAX, &r, err, sizeof err),
	         0);
	CHECK_EQ(r.have, 400);
	CHECK(!r.complete);
	/* A resend of the same piece: nothing written. */
	CHECK_EQ(
	    blobs_put(b, 1000, "run1", d, 1000, 0 + 0, data, 400, UINT64_MAX, &r, err, sizeof err),
	    0);
	CHECK_EQ(r.have, 400, "offset 0 starts anew");
	/* A gap: told where to go on from. */
	CHECK_EQ(blobs_put(b, 1000, "run1", d, 1000, 800, data + 800, 200, UINT64_MAX, &r, err,
	                   sizeof err),
	         0);
	CHECK_EQ(r.have, 400);
	CHECK(!r.complete);
	CHECK_EQ(blobs_put(b, 1000, "run1", d, 1000, 400, data + 400, 600, UINT64_MAX, &r, err,
	                   sizeof err),
	         0);
	CHECK(r.complete);
	CHECK(blobs_have(b, 1000, d));
	CHECK(!blobs_have(b, 1001, d), "another uid's store");
	CHECK_EQ(blobs_disk_bytes(b), 1000);
	/* Known content: complete at once, nothing written. */
	CHECK_EQ(blobs_put(b, 1000, "run2", d, 1000, 0, data, 400, UINT64_MAX, &r, err, sizeof err),
	         0);
	CHECK(r.complete && r.duplicate);
	CHECK_EQ(blobs_disk_bytes(b), 1000);

	/* Wrong content for the digest: refused, deleted. */
	char other[10] = "abcdefghi";
	uint8_t claimed[32];
	blobs_sha256("something else", 14, claimed);
	CHECK_EQ(
	    blobs_put(b, 1000, "run1", claimed, 10, 0, other, 10, UINT64_MAX, &r, err, sizeof err),
	    TRACKD_ECORRUPT);
	CHECK(!blobs_have(b, 1000, claimed));
	uint8_t d2[32];
	blobs_sha256(other, 10, d2);
	CHECK(!blobs_have(b, 1000, d2));
	CHECK_EQ(blobs_disk_bytes(b), 1000);
	/* A piece past the end. */
	CHECK_EQ(blobs_put(b, 1000, "run1", d2, 10, 5, other, 10, UINT64_MAX, &r, err, sizeof err),
	         TRACKD_EINVAL);
	blobs_free(b);

	/* Reopened: the count comes from disk, partials are gone. */
	b = open_store(1 << 20, 1 << 22);
	CHECK_EQ(blobs_disk_bytes(b), 1000);
	blobs_free(b);
}

static void test_limits(void)
{
	blobs *b = open_store(100, 250);
	char data[101], err[256];
	memset(data, 'q', sizeof data);
	struct blobs_put_result r;
	data[0] = 'a';
	CHECK_EQ(put_all(b, "lim", data, 99, 64, &r, err), 0, "file at limit - 1");
	data[0] = 'b';
	CHECK_EQ(put_all(b, "lim", data, 100, 64, &r, err), 0, "file at limit");
	data[0] = 'c';
	CHECK_EQ(put_all(b, "lim", data, 101, 64, &r, err), TRACKD_ETOOBIG, "file at limit + 1");
	CHECK(strstr(err, "blobs.max_file_bytes") != NULL, "%s", err);
	/* The run holds 199 bytes: 51 more is over 250, 50 is not. */
	data[0] = 'd';
	CHECK_EQ(put_all(b, "lim", data, 52, 64, &r, err), TRACKD_ETOOBIG, "run at limit + 1");
	CHECK(strstr(err, "blobs.max_run_bytes") != NULL, "%s", err);
	data[0] = 'e';
	CHECK_EQ(put_all(b, "lim", data, 51, 64, &r, err), 0, "run at limit");
	data[0] = 'f';
	CHECK_EQ(put_all(b, "lim", data, 1, 64, &r, err), TRACKD_ETOOBIG, "run full");
	/* The disk budget: a piece over the room is refused retryably. */
	uint8_t d[32];
	data[0] = 'g';
	blobs_sha256(data, 50, d);
	CHECK_EQ(blobs_put(b, 1000, "other", d, 50, 0, data, 50, 49, &r, err, sizeof err),
	         TRACKD_ENOSPC);
	CHECK(strstr(err, "txlog.max_bytes") != NULL, "%s", err);
	CHECK_EQ(blobs_put(b, 1000, "other", d, 50, 0, data, 50, 50, &r, err, sizeof err), 0);
	CHECK(r.complete, "fits once room returns");
	blobs_free(b);
}

static void test_symlinks(void)
{
	char path[512], target[512];
	/* A symlink planted as uid 2000's dir does not redirect writes. */
	snprintf(target, sizeof target, "%s/elsewhere", root);
	mkdir(target, 0700);
	snprintf(path, sizeof path, "%s/blobs/2000", root);
	CHECK_EQ(symlink(target, path), 0);
	blobs *b = open_store(1 << 20, 1 << 20);
	char data[] = "payload", err[256];
	uint8_t d[32];
	blobs_sha256(data, 7, d);
	struct blobs_put_result r;
	CHECK(blobs_put(b, 2000, "run", d, 7, 0, data, 7, UINT64_MAX, &r, err, sizeof err) != 0);
	char probe[600];
	snprintf(probe, sizeof probe, "%s/tmp", target);
	CHECK(access(probe, F_OK) != 0, "nothing written through the symlink");

	/* A symlink planted as a partial file is replaced, not followed. */
	char hex[65];
	files_hex_digest(d, hex);
	snprintf(path, sizeof path, "%s/blobs/1000/tmp", root);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/blobs/1000/tmp/%s.part", root, hex);
	snprintf(target, sizeof target, "%s/victim", root);
	int fd = open(target, O_WRONLY | O_CREAT, 0600);
	close(fd);
	CHECK_EQ(symlink(target, path), 0);
	CHECK_EQ(blobs_put(b, 1000, "run", d, 7, 0, data, 7, UINT64_MAX, &r, err, sizeof err), 0);
	CHECK(r.complete);
	struct stat st;
	CHECK(stat(target, &st) == 0 && st.st_size == 0, "the victim is untouched");

	/* Linking into a run dir: a planted symlink dir or file is not followed. */
	char run[512];
	snprintf(run, sizeof run, "%s/run", root);
	mkdir(run, 0755);
	snprintf(path, sizeof path, "%s/run/media", root);
	snprintf(target, sizeof target, "%s/elsewhere", root);
	CHECK_EQ(symlink(target, path), 0);
	int run_fd = open(run, O_RDONLY | O_DIRECTORY);
	uint64_t size = 0;
	CHECK(blobs_link(b, 1000, d, run_fd, "media/images/x.png", &size) != 0,
	      "a symlinked dir is refused");
	snprintf(probe, sizeof probe, "%s/images", target);
	CHECK(access(probe, F_OK) != 0);
	snprintf(path, sizeof path, "%s/run/plain.txt", root);
	snprintf(target, sizeof target, "%s/victim", root);
	CHECK_EQ(symlink(target, path), 0);
	uint64_t counted = blobs_disk_bytes(b);
	CHECK_EQ(blobs_link(b, 1000, d, run_fd, "plain.txt", &size), 0);
	CHECK_EQ(size, 7);
	CHECK_EQ(blobs_disk_bytes(b), counted - 7, "a linked blob leaves the budget");
	CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode), "the symlink was replaced");
	CHECK(stat(target, &st) == 0 && st.st_size == 0, "the victim is untouched");
	CHECK_EQ(blobs_link(b, 1000, d, run_fd, "plain.txt", &size), 0, "again: a no-op");
	CHECK_EQ(blobs_link(b, 1000, d, run_fd, "../escape", &size), TRACKD_EINVAL);
	CHECK_EQ(blobs_link(b, 1000, d, run_fd, "sub/dir/f", &size), 0);
	uint8_t missing[32] = {1};
	CHECK_EQ(blobs_link(b, 1000, missing, run_fd, "m", &size), TRACKD_ENOENT);

	/* Sweep: linked blobs stay; an unlinked one goes once old enough. */
	CHECK_EQ(blobs_sweep(b, 3600, time(NULL)), 0);
	size_t before = blobs_sweep(b, -10, time(NULL));
	CHECK(blobs_have(b, 1000, d), "still linked from the run dir (%zu swept)", before);
	snprintf(path, sizeof path, "%s/run/plain.txt", root);
	unlink(path);
	snprintf(path, sizeof path, "%s/run/sub/dir/f", root);
	unlink(path);
	/* Unlinked and old, but a sink has not applied every record sent before
	 * it (applied_before is older than the blob): kept. */
	CHECK_EQ(blobs_sweep(b, -10, time(NULL) - 3600), 0);
	CHECK(blobs_have(b, 1000, d), "a record that names it may not be applied yet");
	CHECK(blobs_sweep(b, -10, time(NULL)) >= 1);
	CHECK(!blobs_have(b, 1000, d));
	CHECK_EQ(blobs_disk_bytes(b), 0, "recounted from the disk: nothing unlinked is left");
	close(run_fd);
	blobs_free(b);
}

/* Holds for an uploading sink: the blob survives the sweep while held, counts
 * in the budget (linked by a run dir or not) and goes once released. */
static void test_holds(void)
{
	blobs *b = open_store(1 << 20, 1 << 22);
	char data[] = "held content", err[256];
	struct blobs_put_result r;
	CHECK_EQ(put_all(b, "runh", data, 12, 12, &r, err), 0);
	uint8_t d[32];
	blobs_sha256(data, 12, d);
	uint64_t base = blobs_disk_bytes(b), size = 0;
	CHECK_EQ(blobs_hold(b, 1000, d, "wandb-runh", &size), 0);
	CHECK_EQ(size, 12);
	CHECK_EQ(blobs_disk_bytes(b), base, "unlinked then held: counted once");
	CHECK_EQ(blobs_hold(b, 1000, d, "wandb-runh", &size), 0, "holding again is a no-op");
	CHECK_EQ(blobs_hold(b, 1000, d, "../x", &size), TRACKD_EINVAL);
	CHECK_EQ(blobs_hold(b, 1000, d, "a/b", &size), TRACKD_EINVAL);
	uint8_t missing[32] = {2};
	CHECK_EQ(blobs_hold(b, 1000, missing, "wandb-runh", &size), TRACKD_ENOENT);

	char run[512];
	snprintf(run, sizeof run, "%s/runh", root);
	mkdir(run, 0755);
	int run_fd = open(run, O_RDONLY | O_DIRECTORY);
	CHECK_EQ(blobs_link(b, 1000, d, run_fd, "f.txt", &size), 0);
	CHECK_EQ(blobs_sweep(b, -10, time(NULL)), 0, "held and linked: kept");
	CHECK_EQ(blobs_disk_bytes(b), base, "held: still in the budget though a run dir links it");

	int fd = -1;
	CHECK_EQ(blobs_open_held(b, 1000, d, "wandb-runh", &fd, &size), 0);
	char back[32] = {0};
	CHECK(fd >= 0 && read(fd, back, sizeof back) == 12 && memcmp(back, data, 12) == 0);
	if (fd >= 0)
		close(fd);
	CHECK_EQ(blobs_open_held(b, 1000, d, "wandb-other", &fd, &size), TRACKD_ENOENT);

	/* Released: out of the budget (the run dir has it), and gone once the run
	 * dir lets go too. */
	CHECK_EQ(blobs_release(b, 1000, d, "wandb-runh"), 0);
	CHECK_EQ(blobs_release(b, 1000, d, "wandb-runh"), 0, "releasing again: success");
	CHECK_EQ(blobs_sweep(b, -10, time(NULL)), 0);
	CHECK_EQ(blobs_disk_bytes(b), base - 12);
	CHECK_EQ(blobs_hold(b, 1000, d, "wandb-runh", &size), 0);
	CHECK_EQ(blobs_release_all(b, 1000, "wandb-runh"), 0);
	char held[600];
	snprintf(held, sizeof held, "%s/blobs/1000/held/wandb-runh", root);
	CHECK(access(held, F_OK) != 0, "release_all removes the holder's dir");
	snprintf(held, sizeof held, "%s/f.txt", run);
	unlink(held);
	blobs_sweep(b, -10, time(NULL));
	CHECK(!blobs_have(b, 1000, d), "no one holds or links it: swept");
	close(run_fd);
	blobs_free(b);
}

/* Marks: the newest at or below the sinks' lowest position says when every
 * record was applied; older ones go; none → 0 (nothing swept). */
static void test_marks(void)
{
	struct blobs_marks m = {0};
	CHECK_EQ(blobs_marks_applied_before(&m, 100), 0, "no mark: nothing known");
	blobs_marks_add(&m, 1000, 10);
	blobs_marks_add(&m, 1060, 20);
	blobs_marks_add(&m, 1120, 30);
	CHECK_EQ(blobs_marks_applied_before(&m, 9), 0, "behind every mark");
	CHECK_EQ(m.n, 3);
	CHECK_EQ(blobs_marks_applied_before(&m, 10), 1000, "at a mark");
	CHECK_EQ(blobs_marks_applied_before(&m, 29), 1060, "between marks: the lower");
	CHECK_EQ(m.n, 2, "the older mark dropped");
	CHECK_EQ(blobs_marks_applied_before(&m, UINT64_MAX), 1120, "caught up");
	CHECK_EQ(m.n, 1);
	for (size_t i = 0; i < BLOBS_MARKS + 1; i++)
		blobs_marks_add(&m, (time_t)(2000 + i), 100 + i);
	CHECK_EQ(m.n, BLOBS_MARKS, "bounded");
	CHECK_EQ(m.when[0], 2001, "the oldest went");
	CHECK_EQ(blobs_marks_applied_before(&m, 100), 0, "its mark is gone: not known");
}

int main(void)
{
	snprintf(root, sizeof root, "/tmp/blobs_test.XXXXXX");
	if (!mkdtemp(root))
		return 1;
	test_pieces();
	test_limits();
	test_symlinks();
	test_holds();
	test_marks();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	if (system(cmd) != 0)
		CHECK_FAIL("cleanup");
	return CHECK_SUMMARY("blobs_test");
}
