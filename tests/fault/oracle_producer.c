/*
 * oracle_producer — a training process for the fault suite: logs history rows
 * through the real client library and keeps a ledger of what it handed off and
 * what the agent acknowledged, for the conservation judge (tests/fault/judge.py).
 *
 *   oracle_producer --run-id ID --ledger FILE [--rows N] [--stop-file F]
 *                   [--sleep-us U] [--every K] [--timeout-ms T] [--project P]
 *                   [--pad-bytes B] [--files-every K] [--file-max-bytes M]
 *                   [--max-buffer-bytes B] [--line-buffered]
 *
 * Row i (step i) is {"i": i, "v": i * 0.25, "s": "<run>/<i>"} plus, with
 * --pad-bytes, "pad": B bytes of a letter chosen by i — so the judge can compute
 * every row's exact content from its key (run, step) alone.
 * With --files-every K, after every K-th row it also saves file k (k = 0, 1, …)
 * with td_save_file as oracle/f<k>.bin: its size and bytes are computed from
 * (run, k) alone (oracle_file_size/oracle_file_fill below, judge.py's
 * expected_file), sizes from a few bytes to past 3 MiB (capped by M, default
 * 3 MiB + 11), so some files take many chunks. --max-buffer-bytes sets the
 * library's bound (records, and the file queue beside it). --line-buffered
 * writes each ledger line out at once, for a producer that is killed (R17: a
 * client killed mid-file has no F line; the judge reads what it handed off).
 * It logs rows until N rows were handed off (default: unbounded) or the stop file
 * exists, then finishes (waiting up to T ms, default 600 s).
 *
 * Ledger, one line each, written as it goes:
 *   H <step>            td_log returned TD_OK: the row was handed off
 *   X <step> <error>    td_log refused the row (counted by the library)
 *   S <k> <name> <size> <sha256 hex>
 *                       td_save_file returned TD_OK: the file was handed off
 *   XS <k> <name> <error> <queue|record>
 *                       td_save_file refused it: the file queue was full
 *                       (`queue`: not a record, the caller's error code is
 *                       the count) or the record was refused (`record`:
 *                       counted by the library as a refused record)
 *   F <json>            td_finish's report, plus "acked_rows": how many of the
 *                       handed-off rows the agent acknowledged; with files,
 *                       "acked_records" (how many of the handed-off rows and
 *                       files, in ledger order, were), "saved", "refused_files"
 * The library sends batches one at a time in record order and counts a batch as
 * acknowledged only when the agent's ack for it arrives, so the acknowledged
 * records are a prefix of [run start, row 0, row 1, …, exit]: acked_rows =
 * min(rows handed off, records_acked − 1). Saved files are records too (their
 * bytes go first, and a file's record is acknowledged only after the agent
 * holds them complete and durable), in the same order as the ledger's H and S
 * lines: acked_records = min(rows + files handed off, records_acked − 1).
 * Exit code: 0 when td_finish reports everything acknowledged, 1 otherwise.
 */
#include <trackd/trackd.h>

#include <getopt.h>
#include <openssl/evp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* File k of a run: its size, a choice among sizes from 1 byte to 3 MiB + 11
 * (a few chunks) by (run, k), capped at max. */
static size_t oracle_file_size(const char *run_id, long k, size_t max)
{
	static const size_t sizes[] = {1, 100, 4096, 65543, 262147, 1048579, 3145739};
	uint32_t h = 2166136261u; /* FNV-1a of the run id */
	for (const char *p = run_id; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	size_t n = sizes[(h + (uint32_t)k) % (sizeof sizes / sizeof sizes[0])];
	return n < max ? n : max;
}

/* File k's bytes: 4096-byte blocks, block j = "<run>/<k>/<j>\n" and then the
 * letter 'a' + (k + j) % 26 to its end; the last block cut at the size. */
static void oracle_file_fill(const char *run_id, long k, uint8_t *buf, size_t size)
{
	for (size_t off = 0, j = 0; off < size; off += 4096, j++) {
		size_t n = size - off < 4096 ? size - off : 4096;
		char head[200];
		int hl = snprintf(head, sizeof head, "%s/%ld/%zu\n", run_id, k, j);
		memset(buf + off, 'a' + (int)(((size_t)k + j) % 26), n);
		memcpy(buf + off, head, (size_t)hl < n ? (size_t)hl : n);
	}
}

int main(int argc, char **argv)
{
	const char *run_id = NULL, *project = "trackd-fault", *ledger_path = NULL,
	           *stop_file = NULL;
	long rows = -1, sleep_us = 0, every = 1, timeout_ms = 600000, pad_bytes = 0;
	long files_every = 0, file_max = 3145739, max_buffer = 0, line_buffered = 0;
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
	    {"files-every", required_argument, NULL, 'f'},
	    {"file-max-bytes", required_argument, NULL, 'm'},
	    {"max-buffer-bytes", required_argument, NULL, 'B'},
	    {"line-buffered", no_argument, NULL, 'L'},
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
		case 'f': files_every = atol(optarg); break;
		case 'm': file_max = atol(optarg); break;
		case 'B': max_buffer = atol(optarg); break;
		case 'L': line_buffered = 1; break;
		default: fprintf(stderr, "oracle_producer: bad arguments\n"); return 2;
		}
	}
	if (!run_id || !ledger_path || (rows < 0 && !stop_file) || pad_bytes < 0 ||
	    files_every < 0 || file_max < 1 || max_buffer < 0) {
		fprintf(stderr, "oracle_producer: --run-id, --ledger and --rows or --stop-file "
		                "are required\n");
		return 2;
	}
	FILE *ledger = fopen(ledger_path, "w");
	if (!ledger) {
		perror(ledger_path);
		return 2;
	}
	if (line_buffered)
		setvbuf(ledger, NULL, _IOLBF, 0);
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
	if (max_buffer)
		o.max_buffer_bytes = (size_t)max_buffer;
	uint8_t *file = NULL;
	if (files_every && !(file = malloc((size_t)file_max))) {
		perror("oracle_producer: malloc");
		return 2;
	}
	/* The kinds of the handed-off records in order ('H' row, 'S' file), to
	 * count the rows in the acknowledged prefix at the end. */
	char *kinds = NULL;
	size_t n_kinds = 0, cap_kinds = 0;
	td_run *run;
	int rv = td_init(&o, &run);
	if (rv != TD_OK) {
		fprintf(stderr, "oracle_producer: td_init: %s (%s)\n", td_strerror(rv),
		        td_last_error());
		return 1;
	}
	long handed = 0, refused = 0, saved = 0, refused_files = 0;
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
		if (n_kinds + 2 > cap_kinds) {
			cap_kinds = cap_kinds ? 2 * cap_kinds : 4096;
			if (!(kinds = realloc(kinds, cap_kinds))) {
				perror("oracle_producer: realloc");
				return 2;
			}
		}
		if (rv == TD_OK)
			kinds[n_kinds++] = 'H';
		if (files_every && (i + 1) % files_every == 0) {
			long k = i / files_every;
			size_t size = oracle_file_size(run_id, k, (size_t)file_max);
			char name[64], hex[65];
			snprintf(name, sizeof name, "oracle/f%ld.bin", k);
			oracle_file_fill(run_id, k, file, size);
			uint8_t digest[32];
			unsigned int dl = 32;
			EVP_Digest(file, size, digest, &dl, EVP_sha256(), NULL);
			for (int d = 0; d < 32; d++)
				snprintf(hex + 2 * d, 3, "%02x", digest[d]);
			rv = td_save_file(run, name, file, size, "now");
			if (rv == TD_OK) {
				saved++;
				kinds[n_kinds++] = 'S';
				fprintf(ledger, "S %ld %s %zu %s\n", k, name, size, hex);
				/* Readable while the producer runs (R17's disk scenario
				 * watches the ledger grow while the disk is full). */
				fflush(ledger);
			} else {
				refused_files++;
				/* The file queue's refusal is the library's only one that is
				 * not a refused record. */
				bool queue = strstr(td_last_error(), "file queue full") != NULL;
				fprintf(ledger, "XS %ld %s %s %s\n", k, name, td_strerror(rv),
				        queue ? "queue" : "record");
			}
		}
		if (sleep_us && (i + 1) % every == 0)
			usleep((useconds_t)sleep_us);
	}
	td_finish_report rep;
	rv = td_finish(run, 0, (int)timeout_ms, &rep);
	uint64_t acked_records = rep.records_acked > 0 ? rep.records_acked - 1 : 0;
	if (acked_records > (uint64_t)n_kinds)
		acked_records = (uint64_t)n_kinds;
	uint64_t acked_rows = 0;
	for (uint64_t r = 0; r < acked_records; r++)
		acked_rows += kinds[r] == 'H';
	if (files_every)
		fprintf(ledger,
		        "F {\"acked_records\":%" PRIu64 ",\"saved\":%ld,\"refused_files\":%ld,",
		        acked_records, saved, refused_files);
	else
		fputs("F {", ledger);
	fprintf(ledger,
	        "\"run_id\":\"%s\",\"status\":\"%s\",\"handed\":%ld,\"refused\":%ld,"
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
	free(file);
	free(kinds);
	return rv == TD_OK ? 0 : 1;
}
