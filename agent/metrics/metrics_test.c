/* metrics_test.c — the exposition writer: HELP/TYPE before samples, escaping of
 * help text and label values, cumulative histogram buckets. (The HTTP server is
 * tested end to end in tests/e2e/test_metrics.py.) */
#include "metrics.h"

#include "check.h"

#include <stdio.h>
#include <string.h>

static void test_families_and_escaping(void)
{
	struct buf b;
	buf_init(&b, 4096);
	struct metrics_writer w = {.out = &b};
	metrics_family(&w, "x_total", "counter", "a \\ back\nslash");
	metrics_value(&w, NULL, NULL, 0);
	metrics_value(&w, "k", "q\"u\\o\nte", 18446744073709551615ULL);
	CHECK_STR_EQ(b.data,
	             "# HELP x_total a \\\\ back\\nslash\n"
	             "# TYPE x_total counter\n"
	             "x_total 0\n"
	             "x_total{k=\"q\\\"u\\\\o\\nte\"} 18446744073709551615\n",
	             "%s", "family");
	CHECK_STR_EQ(w.failed ? "failed" : "ok", "ok", "%s", "not failed");
	buf_fini(&b);
}

static void test_histogram(void)
{
	struct buf b;
	buf_init(&b, 4096);
	struct metrics_writer w = {.out = &b};
	const double bounds[] = {0.001, 0.5};
	const uint64_t counts[] = {2, 0, 3};
	metrics_histogram(&w, "h_seconds", "h", bounds, counts, 2, 1.25);
	CHECK_STR_EQ(b.data,
	             "# HELP h_seconds h\n"
	             "# TYPE h_seconds histogram\n"
	             "h_seconds_bucket{le=\"0.001\"} 2\n"
	             "h_seconds_bucket{le=\"0.5\"} 2\n"
	             "h_seconds_bucket{le=\"+Inf\"} 5\n"
	             "h_seconds_sum 1.25\n"
	             "h_seconds_count 5\n",
	             "%s", "histogram");
	buf_fini(&b);
}

static void test_bounded(void)
{
	struct buf b;
	buf_init(&b, 40);
	struct metrics_writer w = {.out = &b};
	metrics_family(&w, "a_long_metric_name_total", "counter", "more than forty bytes of help");
	CHECK_STR_EQ(w.failed ? "failed" : "ok", "failed", "%s", "over the bound is reported");
	buf_fini(&b);
}

int main(void)
{
	test_families_and_escaping();
	test_histogram();
	test_bounded();
	return CHECK_SUMMARY("metrics_test");
}
