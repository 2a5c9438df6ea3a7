/*
 * oracle_producer — a training process for the fault suite: logs history rows
 * through the real client library and keeps a ledger of what it handed off and
 * what the agent acknowledged, for the conservation judge (tests/fault/judge.py).
 *
 *   oracle_producer --run-id ID --ledger FILE [--rows N] [--stop-file F]
 *                   [--sleep-us U] [--every K] [--timeout-ms T] [--project P]
 *                   [--pad-bytes B]
 *
 * Row i (step i) is {"i": i, "v": i * 0.25, "s": "<run>/<i>"} plus, with
 * --pad-bytes, "pad": B bytes of a letter chosen by i — so the judge can compute
 * every row's exact content from its key (run, step) alone.
 * It logs rows until N rows were handed off (default: unbounded) or the stop file
 * exists, then finishes (waiting up to T ms, default 600 s).
 *
 * Ledger, one line each, written as it goes:
 *   H <step>            td_log returned TD_OK: the row was handed off
 *   X <step> <error>    td_log refused the row (counted by the library)
 *   F <json>            td_finish's report, plus "acked_rows": how many of the
 *                       handed-off rows the agent acknowledged
 * The library sends batches one at a time in record order and counts a batch as
 * acknowledged only when the agent's ack for it arrives, so the acknowledged
 * records are a prefix of [run start, row 0, row 1, …, exit]: acked_rows =
 * min(rows handed off, records_acked − 1).
 * Exit code: 0 when td_finish reports everything acknowledged, 1 otherwise.
 */
#include <trackd/trackd.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *run_id = NULL, *project = "trackd-fault", *ledger_path = NULL,
	           *stop_file = NULL;
	long rows = -1, sleep_us = 0, every = 1, timeout_ms = 600000, pad_bytes = 0;
	static const struct option opts[] = {
	    {"run-id", required_argument, NULL, 'r'},
	    {"rows", required_argument, NULL, 'n'},
	    {"ledger", required_argument, NULL, 'l'},
	    {"stop-file", required_argument, NULL, 'S'},
	    {"sleep-us", required_argument, NULL, 's'},
	    {"every", required_argument, NULL, 'e'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"project", required_argument, NULL, 'p'},
	    {"pad-bytes", required_argument, NULL, 'b'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r': run_id = optarg; break;
		case 'n': rows = atol(optarg); break;
		case 'l': ledger_path = optarg; break;
		case 'S': stop_file = optarg; break;
		case 's': sleep_us = atol(optarg); break;
		case 'e': every = atol(optarg) > 0 ? atol(optarg) : 1; break;
		case 't': timeout_ms = atol(optarg); break;
		case 'p': project = optarg; break;
		case 'b': pad_bytes = atol(optarg); break;
		default: fprintf(stderr, "oracle_producer: bad arguments\n"); return 2;
		}
	}
	if (!run_id || !ledger_path || (rows < 0 && !stop_file) || pad_bytes < 0) {
		fprintf(stderr, "oracle_producer: --run-id, --ledger and --rows or --stop-file "
		                "are required\n");
		return 2;
	}
	FILE *ledger = fopen(ledger_path, "w");
	if (!ledger) {
		perror(ledger_path);
		return 2;
	}
	char *pad = NULL;
	if (pad_bytes > 0 && !(pad = malloc((size_t)pad_bytes + 1))) {
		perror("oracle_producer: malloc");
		return 2;
	}

	td_run_options o;
	td_run_options_init(&o);
	o.run_id = run_id;
	o.project = project;
	o.resume = TD_RESUME_ALLOW;
	o.print_footer = false;
	o.disable_environment = true; /* the oracle counts its records exactly */
	td_run *run;
	int rv = td_init(&o, &run);
	if (rv != TD_OK) {
		fprintf(stderr, "oracle_producer: td_init: %s (%s)\n", td_strerror(rv),
		        td_last_error());
		return 1;
	}
	long handed = 0, refused = 0;
	for (long i = 0; rows < 0 || i < rows; i++) {
		/* Checking the stop file every row would make this an I/O loop. */
		if (stop_file && i % 64 == 0 && access(stop_file, F_OK) == 0)
			break;
		char s[160];
		snprintf(s, sizeof s, "%s/%ld", run_id, i);
		td_item items[4] = {TD_I("i", i), TD_F("v", (double)i * 0.25), TD_S("s", s)};
		size_t n = 3;
		if (pad) {
			memset(pad, 'a' + (int)(i % 26), (size_t)pad_bytes);
			pad[pad_bytes] = '\0';
			items[n++] = TD_S("pad", pad);
		}
		rv = td_log(run, items, n, i, true);
		if (rv == TD_OK) {
			handed++;
			fprintf(ledger, "H %ld\n", i);
		} else {
			refused++;
			fprintf(ledger, "X %ld %s\n", i, td_strerror(rv));
		}
		if (sleep_us && (i + 1) % every == 0)
			usleep((useconds_t)sleep_us);
	}
	td_finish_report rep;
	rv = td_finish(run, 0, (int)timeout_ms, &rep);
	uint64_t acked_rows = rep.records_acked > 0 ? rep.records_acked - 1 : 0;
	if (acked_rows > (uint64_t)handed)
		acked_rows = (uint64_t)handed;
	fprintf(ledger,
	        "F {\"run_id\":\"%s\",\"status\":\"%s\",\"handed\":%ld,\"refused\":%ld,"
	        "\"acked_rows\":%" PRIu64 ",\"logged\":%" PRIu64 ",\"acked\":%" PRIu64
	        ",\"unacked\":%" PRIu64 ",\"spooled\":%" PRIu64 ",\"refused_full\":%" PRIu64
	        ",\"rejected\":%" PRIu64 "}\n",
	        run_id, td_strerror(rv), handed, refused, acked_rows, rep.records_logged,
	        rep.records_acked, rep.records_unacked, rep.records_spooled,
	        rep.records_refused_full, rep.records_rejected);
	if (fclose(ledger) != 0) {
		perror(ledger_path);
		return 2;
	}
	free(pad);
	return rv == TD_OK ? 0 : 1;
}
