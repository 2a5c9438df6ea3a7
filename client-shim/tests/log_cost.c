/*
 * log_cost.c — what td_log costs the training loop: a 4-metric row, timed over
 * many calls, with an acknowledging stand-in agent and with no agent at all.
 * Prints figures; asserts nothing. (A benchmark; it lives beside the client
 * until bench/ takes it.)
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_server.h"
#include "trackd/trackd.h"

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wall time includes preemption by other work on a busy machine; the calling
 * thread's CPU time is what td_log itself costs. */
static double now_s(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

static double cpu_s(void)
{
	return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

static int run_loop(const char *url, long rows, int finish_ms, const char *label)
{
	td_run_options o;
	td_run *run;
	td_finish_report rep;
	int rc;

	td_run_options_init(&o);
	o.socket_url = url;
	o.project = "log-cost";
	o.print_footer = false;
	o.spool_dir = ""; /* the no-agent run must not leave a spool behind */
	if ((rc = td_init(&o, &run)) != TD_OK) {
		fprintf(stderr, "td_init: %s: %s\n", td_strerror(rc), td_last_error());
		return 1;
	}
	double t0 = now_s(), c0 = cpu_s();
	for (long i = 0; i < rows; i++) {
		double x = (double)i;
		td_item row[] = {TD_F("loss", 1.0 / (x + 1)), TD_F("accuracy", 1 - 1.0 / (x + 2)),
		                 TD_F("lr", 0.001), TD_I("epoch", i / 1000)};
		if ((rc = td_log(run, row, 4, TD_STEP_AUTO, true)) != TD_OK) {
			fprintf(stderr, "td_log: %s: %s\n", td_strerror(rc), td_last_error());
			break;
		}
	}
	double t1 = now_s(), c1 = cpu_s();
	rc = td_finish(run, 0, finish_ms, &rep);
	double t2 = now_s();
	printf("%-22s %8ld rows: td_log %.0f ns/row CPU, %.0f ns/row wall; finish %.1f ms; "
	       "logged %llu acked %llu\n",
	       label, rows, (c1 - c0) / (double)rows * 1e9, (t1 - t0) / (double)rows * 1e9,
	       (t2 - t1) * 1e3, (unsigned long long)rep.records_logged,
	       (unsigned long long)rep.records_acked);
	return 0;
}

int main(int argc, char **argv)
{
	long rows = argc > 1 ? atol(argv[1]) : 1000000;
	char dir[] = "/tmp/trackd-cost-XXXXXX";
	char url[PATH_MAX], missing[PATH_MAX], path[PATH_MAX];
	struct test_server s = {.discard = true};

	if (mkdtemp(dir) == NULL)
		return 2;
	snprintf(url, sizeof(url), "ipc://%s/agent.sock", dir);
	snprintf(missing, sizeof(missing), "ipc://%s/none.sock", dir);
	if (ts_start(&s, url) != 0)
		return 2;
	const char *which = argc > 2 ? argv[2] : "both";
	/* Without an agent nothing is acked: finish at once. */
	if (strcmp(which, "agent") != 0)
		run_loop(missing, rows / 5, 0, "no agent (buffering)");
	if (strcmp(which, "noagent") != 0)
		run_loop(url, rows, 60000, "acking agent");
	ts_stop(&s);
	ts_free(&s);
	snprintf(path, sizeof(path), "%s/agent.sock", dir);
	unlink(path);
	rmdir(dir);
	return 0;
}
