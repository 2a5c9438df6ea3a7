/*
 * producer — a training process for tests: logs N history rows through the real
 * client library, then finishes and prints its finish report as one JSON line.
 *
 *   producer --run-id ID --rows N [--sleep-us U] [--every K] [--exit-code C]
 *            [--timeout-ms T] [--project P] [--first-step S] [--uid U --gid G]
 *            [--hold-file F] [--url-file F] [--mode online|offline] [--console K]
 *            [--until-file F]
 *
 * Row i carries {"i": i, "value": i * 0.5, "tag": "r<i>"} at step i, so a judge can
 * check every row by its step alone. With --sleep-us, it sleeps U µs after every
 * K rows (default K = 1), to spread the logging over time. With --console K, a
 * console line "row <i>" follows every K-th row (stderr for odd i).
 * With --until-file, it stops logging early once F exists (checked every K rows)
 * — a load that lasts as long as a test needs it, on fast and slow builds alike.
 * A line {"handed_off": N} is printed (and flushed) when the last row is logged.
 * With --hold-file, it waits after the rows until F exists (so a test can look at
 * the live run first), then finishes; --url-file writes td_run_url's answer to
 * F just before finishing.
 * It sends no RunEnvironment (td_run_options.disable_environment): the tests
 * count its records exactly (start + rows + exit).
 * Exit code: 0 when td_finish reports everything acknowledged, 1 otherwise.
 */
#include <trackd/trackd.h>

#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *run_id = NULL, *project = "trackd-tests", *hold_file = NULL, *url_file = NULL,
	           *until_file = NULL;
	long rows = 100, sleep_us = 0, every = 1, timeout_ms = 60000, first = 0, uid = -1, gid = -1;
	long console_every = 0;
	int exit_code = 0;
	td_mode mode = TD_MODE_ONLINE;
	static const struct option opts[] = {
	    {"run-id", required_argument, NULL, 'r'},
	    {"rows", required_argument, NULL, 'n'},
	    {"sleep-us", required_argument, NULL, 's'},
	    {"every", required_argument, NULL, 'e'},
	    {"exit-code", required_argument, NULL, 'x'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"project", required_argument, NULL, 'p'},
	    {"first-step", required_argument, NULL, 'f'},
	    {"uid", required_argument, NULL, 'u'},
	    {"gid", required_argument, NULL, 'g'},
	    {"hold-file", required_argument, NULL, 'h'},
	    {"url-file", required_argument, NULL, 'w'},
	    {"mode", required_argument, NULL, 'm'},
	    {"console", required_argument, NULL, 'c'},
	    {"until-file", required_argument, NULL, 'U'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r': run_id = optarg; break;
		case 'n': rows = atol(optarg); break;
		case 's': sleep_us = atol(optarg); break;
		case 'e': every = atol(optarg) > 0 ? atol(optarg) : 1; break;
		case 'x': exit_code = atoi(optarg); break;
		case 't': timeout_ms = atol(optarg); break;
		case 'p': project = optarg; break;
		case 'f': first = atol(optarg); break;
		case 'u': uid = atol(optarg); break;
		case 'g': gid = atol(optarg); break;
		case 'h': hold_file = optarg; break;
		case 'w': url_file = optarg; break;
		case 'c': console_every = atol(optarg); break;
		case 'U': until_file = optarg; break;
		case 'm':
			if (strcmp(optarg, "online") == 0)
				mode = TD_MODE_ONLINE;
			else if (strcmp(optarg, "offline") == 0)
				mode = TD_MODE_OFFLINE;
			else {
				fprintf(stderr, "producer: --mode is online or offline\n");
				return 2;
			}
			break;
		default: fprintf(stderr, "producer: bad arguments\n"); return 2;
		}
	}
	/* Tests of multi-user access run producers as other users (the suite runs as
	 * root). Group first: after setresuid the process may not change it. */
	if (gid >= 0 &&
	    (setgroups(0, NULL) != 0 || setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0)) {
		perror("producer: setresgid");
		return 2;
	}
	if (uid >= 0 && setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) {
		perror("producer: setresuid");
		return 2;
	}
	td_run_options o;
	td_run_options_init(&o);
	o.run_id = run_id;
	o.project = project;
	/* Tests attach several producers to one run id, and restart them. */
	o.resume = TD_RESUME_ALLOW;
	o.mode = mode;
	o.disable_environment = true;
	td_run *run;
	int rv = td_init(&o, &run);
	if (rv != TD_OK) {
		fprintf(stderr, "producer: td_init: %s (%s)\n", td_strerror(rv), td_last_error());
		return 1;
	}
	long refused = 0;
	long handed = 0;
	for (long i = first; i < first + rows; i++) {
		char tag[32];
		snprintf(tag, sizeof tag, "r%ld", i);
		td_item items[] = {TD_I("i", i), TD_F("value", (double)i * 0.5), TD_S("tag", tag)};
		rv = td_log(run, items, 3, i, true);
		if (rv != TD_OK)
			refused++;
		if (console_every > 0 && (i - first + 1) % console_every == 0) {
			char line[64];
			snprintf(line, sizeof line, "row %ld\n", i);
			td_output(run, i % 2 != 0, line);
		}
		handed++;
		if (sleep_us && (i - first + 1) % every == 0)
			usleep((useconds_t)sleep_us);
		if (until_file && (i - first + 1) % every == 0 && access(until_file, F_OK) == 0)
			break;
	}
	/* Every row is handed off: a test can see that logging never waited on the
	 * agent (td_finish below does wait, up to --timeout-ms, for the acks). */
	printf("{\"handed_off\":%ld}\n", handed);
	fflush(stdout);
	while (hold_file && access(hold_file, F_OK) != 0)
		usleep(10000);
	if (url_file) {
		char url[4096];
		int n = td_run_url(run, url, sizeof url);
		FILE *f = fopen(url_file, "w");
		if (f) {
			fprintf(f, "%s", n >= 0 ? url : td_strerror(n));
			fclose(f);
		}
	}
	td_finish_report rep;
	rv = td_finish(run, exit_code, (int)timeout_ms, &rep);
	printf("{\"run_id\":\"%s\",\"rows\":%ld,\"refused\":%ld,\"status\":\"%s\","
	       "\"logged\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"unacked\":%" PRIu64
	       ",\"refused_full\":%" PRIu64 ",\"rejected\":%" PRIu64 "}\n",
	       run_id ? run_id : "", rows, refused, td_strerror(rv), rep.records_logged,
	       rep.records_acked, rep.records_unacked, rep.records_refused_full,
	       rep.records_rejected);
	return rv == TD_OK ? 0 : 1;
}
