/*
 * sync_progress_test — the text and arithmetic of `trackctl sync`'s progress:
 * byte sizes at unit boundaries, rate smoothing, ETA, and the progress line at
 * several widths (parts dropped from the right, the bar never wider than asked).
 */
#include "sync_progress.h"

#include "check.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void test_bytes(void)
{
	char b[32];
	sync_format_bytes(0, b, sizeof b);
	CHECK_STR_EQ(b, "0 B");
	sync_format_bytes(1023, b, sizeof b);
	CHECK_STR_EQ(b, "1023 B");
	sync_format_bytes(1024, b, sizeof b);
	CHECK_STR_EQ(b, "1.00 KiB");
	sync_format_bytes(1025, b, sizeof b);
	CHECK_STR_EQ(b, "1.00 KiB");
	sync_format_bytes(1536, b, sizeof b);
	CHECK_STR_EQ(b, "1.50 KiB");
	sync_format_bytes(10 * 1024, b, sizeof b);
	CHECK_STR_EQ(b, "10.0 KiB");
	sync_format_bytes(1024 * 1024 - 1, b, sizeof b);
	CHECK_STR_EQ(b, "1024 KiB");
	sync_format_bytes(1024 * 1024, b, sizeof b);
	CHECK_STR_EQ(b, "1.00 MiB");
	sync_format_bytes(3ull << 30, b, sizeof b);
	CHECK_STR_EQ(b, "3.00 GiB");
	sync_format_bytes(UINT64_MAX, b, sizeof b);
	CHECK_STR_EQ(b, "16384 PiB");
	/* A small buffer is cut, never overrun. */
	char small[4] = "zzz";
	sync_format_bytes(1536, small, sizeof small);
	CHECK_STR_EQ(small, "1.5");
}

static void test_rate_eta(void)
{
	CHECK(sync_eta(0, 0) == 0);
	CHECK(sync_eta(1, 0) < 0);
	CHECK(sync_eta(1, NAN) < 0);
	CHECK(fabs(sync_eta(1000, 100) - 10) < 1e-9);
	/* First sample taken as it is, then a move towards the new one. */
	CHECK(fabs(sync_rate_update(0, 1000, 0.5, 3) - 2000) < 1e-9);
	double r = sync_rate_update(2000, 0, 0.5, 3);
	CHECK(r < 2000 && r > 1000);
	CHECK(sync_rate_update(2000, 5, 0, 3) == 2000); /* no time, no change */
	CHECK(fabs(sync_rate_update(2000, 100, 1, 0) - 100) < 1e-9);
}

static void test_line(void)
{
	char line[512];
	struct sync_totals t = {.runs_done = 1,
	                        .runs_total = 3,
	                        .rows = 1500,
	                        .rows_total = 3000,
	                        .bytes = 512 * 1024,
	                        .bytes_total = 1024 * 1024,
	                        .rate = 256 * 1024};
	sync_progress_line(&t, 120, line, sizeof line);
	CHECK_STR_EQ(line, "[###############...............]  1/3 runs  1500/3000 rows  "
	                   "512 KiB/1.00 MiB  256 KiB/s  ETA 2s");
	/* Narrower: the bar shrinks, then parts go from the right. */
	for (int w = 100; w >= 12; w--) {
		sync_progress_line(&t, w, line, sizeof line);
		CHECK((int)strlen(line) <= w);
		CHECK(line[0] == '[');
		CHECK(strstr(line, "1/3 runs") != NULL || w < 24);
	}
	sync_progress_line(&t, 60, line, sizeof line);
	CHECK_STR_EQ(line, "[#######.......]  1/3 runs  1500/3000 rows  512 KiB/1.00 MiB");
	/* Unknown rate: no ETA yet. */
	t.rate = 0;
	sync_progress_line(&t, 120, line, sizeof line);
	CHECK(strstr(line, "-/s  ETA -") != NULL);
	/* Everything sent: a full bar, ETA 0. */
	t = (struct sync_totals){
	    .runs_done = 2, .runs_total = 2, .bytes = 10, .bytes_total = 10, .rate = 5};
	sync_progress_line(&t, 120, line, sizeof line);
	CHECK(strstr(line, "[##############################]") == line);
	CHECK(strstr(line, "ETA 0s") != NULL);
	/* Nothing to send at all: by runs. */
	t = (struct sync_totals){.runs_done = 0, .runs_total = 0};
	sync_progress_line(&t, 80, line, sizeof line);
	CHECK(strstr(line, "0/0 runs") != NULL);
	/* The output buffer bounds the line. */
	char tiny[8];
	t = (struct sync_totals){.runs_done = 1, .runs_total = 3, .bytes = 1, .bytes_total = 2};
	sync_progress_line(&t, 120, tiny, sizeof tiny);
	CHECK(strlen(tiny) == 7);
}

int main(void)
{
	test_bytes();
	test_rate_eta();
	test_line();
	return CHECK_SUMMARY("sync_progress_test");
}
