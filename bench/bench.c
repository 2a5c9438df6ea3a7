/*
 * bench.c — trackd-bench, the measuring programs of bench/run (one binary,
 * one subcommand per measurement). Every subcommand prints exactly one JSON
 * object on stdout (figures, never a verdict); bench/run repeats them, adds the
 * same-run limits and writes the table. Progress and errors go to stderr.
 *
 *   tdlog     --url U --rows N            per-call td_log cost of a 4-metric row
 *   pack      --rows N                    protobuf-c pack of the same row (for scale)
 *   send      --bytes B --n N             one send() of B bytes on a Unix stream socket
 *   post      --n N                       a synchronous libcurl POST of the row (keep-alive)
 *                                         to a loopback HTTP server in this process
 *   nng       --bytes B --seconds S       raw NNG ipc push→pull throughput
 *   disk      --dir D --mib M             write() + fdatasync append bandwidth
 *   produce   --url U --run-id R --rows N [--metrics K] [--start-at T] [--sleep-us U]
 *             [--every E] [--string-bytes S]
 *                                         a training process: N rows of K floats
 *                                         (plus one S-byte string), retrying when full
 *   latency   --url U --rows N [--gap-ms G]   td_log → durable in the agent's log
 *   initfinish --url U --n N              td_init → td_finish of an empty run
 *   series    --url U --run-id R --metrics K --n N [--buckets B]
 *                                         the series query of keys m000…m<K-1> at B
 *                                         buckets (default 1000), N times: its wall
 *                                         time (send → reply), and the answer's
 *                                         bytes packed and as JSON (pb_json)
 *   fmt       --n N                       shortest round-trip double → text (fmt_double_g,
 *                                         what the local sink writes per value) against
 *                                         the search it replaced (%.15g/16g/17g + strtod)
 *                                         and one snprintf %.17g, on P4's own values
 *                                         (i * 0.001 + k) and on uniform [0, 1)
 *   series-index --dir RUN_DIR --rows R --metrics K --n N [--buckets B]
 *                                         the same answer computed in this process
 *                                         from the run's series index (series_query,
 *                                         the agent's own code): the index's share
 *                                         of the query's time, without the socket
 *   savefiles --url U --run-id R --dir D  a training process saving every file of D
 *                                         (sorted) with td_save_path(policy "now"):
 *                                         each copied into the spool dir, waiting and
 *                                         retrying every 20 ms while the file queue
 *                                         is full (TD_ERR_FULL); then td_finish. Wall times
 *                                         of the first save, the last and finish
 *   images    --url U --run-id R --rows N a loop of N rows of P1's 4 metrics, then N
 *                                         rows of the same plus a 64x64 RGB PNG
 *                                         (TD_MEDIA_PNG, random pixels: each image
 *                                         distinct, encoded before the loop): td_log's
 *                                         per-call times of both, the wall time of the
 *                                         first image row
 *
 * Timing: CLOCK_MONOTONIC around each call (the clock itself costs ~20 ns,
 * reported as timer_ns so a reader can subtract it).
 */
#include <trackd/trackd.h>

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "fmt.h"
#include "series.h"
#include "trackd/v1/pb_json.h"
#include "trackd/v1/trackd.pb-c.h"

/* ---- helpers ------------------------------------------------------------- */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "trackd-bench: %s\n", what);
	exit(2);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Percentile (0..1) of n sorted samples, nearest rank. */
static int64_t pct(const int64_t *s, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p * (double)n);
	return s[i >= n ? n - 1 : i];
}

static void print_dist(const char *name, int64_t *s, size_t n, double scale)
{
	qsort(s, n, sizeof *s, cmp_i64);
	printf("\"%s\":{\"n\":%zu,\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}", name, n,
	       (double)pct(s, n, 0.5) / scale, (double)pct(s, n, 0.99) / scale,
	       (double)pct(s, n, 0.999) / scale, n ? (double)s[n - 1] / scale : 0.0);
}

static int64_t timer_overhead_ns(void)
{
	int64_t t0 = now_ns();
	for (int i = 0; i < 100000; i++)
		(void)now_ns();
	return (now_ns() - t0) / 100000;
}

static int64_t *alloc_samples(size_t n)
{
	int64_t *s = malloc((n ? n : 1) * sizeof *s);
	if (!s)
		die("out of memory");
	return s;
}

/* The benchmark row: 4 metrics, as a training loop logs them. */
static void make_row(td_item row[4], long i)
{
	double x = (double)i;
	row[0] = TD_F("loss", 1.0 / (x + 1));
	row[1] = TD_F("accuracy", 1 - 1.0 / (x + 2));
	row[2] = TD_F("lr", 0.001);
	row[3] = TD_I("epoch", i / 1000);
}

/* The same row as the client encodes it (Record{run_id, history}), packed
 * with protobuf-c into buf; returns its length. */
static size_t pack_row(uint8_t *buf, long i, const char *run_id)
{
	double x = (double)i;
	Trackd__V1__Value v[4] = {TRACKD__V1__VALUE__INIT, TRACKD__V1__VALUE__INIT,
	                          TRACKD__V1__VALUE__INIT, TRACKD__V1__VALUE__INIT};
	Trackd__V1__Item it[4] = {TRACKD__V1__ITEM__INIT, TRACKD__V1__ITEM__INIT,
	                          TRACKD__V1__ITEM__INIT, TRACKD__V1__ITEM__INIT};
	Trackd__V1__Item *items[4];
	static const char *keys[4] = {"loss", "accuracy", "lr", "epoch"};
	double d[3] = {1.0 / (x + 1), 1 - 1.0 / (x + 2), 0.001};
	for (int k = 0; k < 4; k++) {
		if (k < 3) {
			v[k].kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
			v[k].double_value = d[k];
		} else {
			v[k].kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
			v[k].int_value = i / 1000;
		}
		it[k].key = (char *)keys[k];
		it[k].value = &v[k];
		items[k] = &it[k];
	}
	Trackd__V1__HistoryRow h = TRACKD__V1__HISTORY_ROW__INIT;
	h.has_step = true;
	h.step = i;
	h.has_client_time_us = true;
	h.client_time_us = 1790000000000000 + i;
	h.n_items = 4;
	h.items = items;
	Trackd__V1__Record r = TRACKD__V1__RECORD__INIT;
	r.run_id = (char *)run_id;
	r.body_case = TRACKD__V1__RECORD__BODY_HISTORY;
	r.history = &h;
	return trackd__v1__record__pack(&r, buf);
}

static td_run *start_run(const char *url, const char *run_id, const char *project)
{
	td_run_options o;
	td_run *run;
	td_run_options_init(&o);
	o.socket_url = url;
	o.run_id = run_id;
	o.project = project;
	o.resume = TD_RESUME_ALLOW;
	o.print_footer = false;
	o.spool_dir = ""; /* a benchmark leaves nothing behind */
	/* Measured: the records asked for, not one more (nor a git per client). */
	o.disable_environment = true;
	int rc = td_init(&o, &run);
	if (rc != TD_OK) {
		fprintf(stderr, "trackd-bench: td_init: %s (%s)\n", td_strerror(rc),
		        td_last_error());
		exit(1);
	}
	return run;
}

/* ---- tdlog: per-call td_log cost ------------------------------------------ */

static int cmd_tdlog(const char *url, long rows, int finish_ms)
{
	int64_t *s = alloc_samples((size_t)rows);
	td_run *run = start_run(url, NULL, "bench");
	td_item row[4];
	long failed = 0;
	/* Warm-up: first-touch of the buffer pages is part of steady state only
	 * once; keep it out of the distribution. */
	for (long i = 0; i < 2000; i++) {
		make_row(row, i);
		td_log(run, row, 4, TD_STEP_AUTO, true);
	}
	int64_t c0 = cpu_ns(), w0 = now_ns();
	for (long i = 0; i < rows; i++) {
		make_row(row, i);
		int64_t t0 = now_ns();
		int rc = td_log(run, row, 4, TD_STEP_AUTO, true);
		s[i] = now_ns() - t0;
		failed += rc != TD_OK;
	}
	int64_t c1 = cpu_ns(), w1 = now_ns();
	td_finish_report rep;
	int64_t f0 = now_ns();
	td_finish(run, 0, finish_ms, &rep);
	int64_t f1 = now_ns();
	printf("{\"rows\":%ld,\"failed\":%ld,\"cpu_ns_per_row\":%.1f,\"wall_ns_per_row\":%.1f,"
	       "\"timer_ns\":%" PRId64 ",\"finish_ms\":%.1f,\"acked\":%" PRIu64 ",",
	       rows, failed, (double)(c1 - c0) / (double)rows, (double)(w1 - w0) / (double)rows,
	       timer_overhead_ns(), (double)(f1 - f0) / 1e6, rep.records_acked);
	print_dist("ns", s, (size_t)rows, 1.0);
	printf("}\n");
	free(s);
	return 0;
}

/* ---- pack: protobuf-c cost of the same row ---------------------------------- */

static int cmd_pack(long rows)
{
	uint8_t buf[512];
	size_t len = 0;
	int64_t t0 = now_ns();
	for (long i = 0; i < rows; i++)
		len += pack_row(buf, i, "abcd1234");
	int64_t t1 = now_ns();
	printf("{\"rows\":%ld,\"bytes\":%zu,\"ns_per_row\":%.1f}\n", rows, len / (size_t)rows,
	       (double)(t1 - t0) / (double)rows);
	return 0;
}

/* ---- send: one send() on a Unix stream socket -------------------------------- */

static void *drain_main(void *arg)
{
	int fd = *(int *)arg;
	char buf[1 << 16];
	while (read(fd, buf, sizeof buf) > 0)
		;
	return NULL;
}

static int cmd_send(size_t bytes, long n)
{
	int sv[2];
	uint8_t buf[4096];
	if (bytes > sizeof buf)
		die("send: --bytes too large");
	if (bytes == 0)
		bytes = pack_row(buf, 7, "abcd1234");
	else
		memset(buf, 'x', bytes);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		die("socketpair");
	pthread_t t;
	pthread_create(&t, NULL, drain_main, &sv[1]);
	int64_t *s = alloc_samples((size_t)n);
	for (long i = 0; i < 1000; i++)
		if (send(sv[0], buf, bytes, 0) != (ssize_t)bytes)
			die("send");
	for (long i = 0; i < n; i++) {
		int64_t t0 = now_ns();
		ssize_t w = send(sv[0], buf, bytes, 0);
		s[i] = now_ns() - t0;
		if (w != (ssize_t)bytes)
			die("send");
	}
	shutdown(sv[0], SHUT_WR);
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);
	printf("{\"bytes\":%zu,", bytes);
	print_dist("ns", s, (size_t)n, 1.0);
	printf("}\n");
	free(s);
	return 0;
}

/* ---- post: synchronous libcurl POST to a loopback HTTP server ----------------- */

/* A minimal keep-alive HTTP/1.1 server: reads a head, then Content-Length bytes,
 * answers 200 with "{}". Enough for one libcurl client. */
static void *http_main(void *arg)
{
	int lfd = *(int *)arg;
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	char buf[65536];
	size_t have = 0;
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	                           "Content-Length: 2\r\n\r\n{}";
	for (;;) {
		char *end;
		while ((end = memmem(buf, have, "\r\n\r\n", 4)) == NULL) {
			ssize_t r = read(fd, buf + have, sizeof buf - have);
			if (r <= 0)
				goto out;
			have += (size_t)r;
		}
		size_t head = (size_t)(end - buf) + 4, clen = 0;
		char *cl = memmem(buf, head, "Content-Length:", 15);
		if (cl)
			clen = (size_t)atol(cl + 15);
		while (have < head + clen) {
			ssize_t r = read(fd, buf + have, sizeof buf - have);
			if (r <= 0)
				goto out;
			have += (size_t)r;
		}
		if (write(fd, resp, sizeof resp - 1) != (ssize_t)(sizeof resp - 1))
			goto out;
		memmove(buf, buf + head + clen, have - head - clen);
		have -= head + clen;
	}
out:
	close(fd);
	return NULL;
}

static size_t discard_cb(char *p, size_t sz, size_t n, void *u)
{
	(void)p;
	(void)u;
	return sz * n;
}

static int cmd_post(long n)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0)
		die("post: listen");
	pthread_t t;
	pthread_create(&t, NULL, http_main, &lfd);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/files/e/p/r/file_stream",
	         ntohs(sa.sin_port));
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURL *c = curl_easy_init();
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_cb);
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	int64_t *s = alloc_samples((size_t)n);
	char body[512];
	for (long i = -100; i < n; i++) {
		double x = (double)(i < 0 ? 0 : i);
		int len =
		    snprintf(body, sizeof body,
		             "{\"files\":{\"wandb-history.jsonl\":{\"offset\":%ld,\"content\":["
		             "\"{\\\"loss\\\":%.17g,\\\"accuracy\\\":%.17g,\\\"lr\\\":0.001,"
		             "\\\"epoch\\\":%ld,\\\"_step\\\":%ld}\"]}}}",
		             i, 1.0 / (x + 1), 1 - 1.0 / (x + 2), i / 1000, i);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
		int64_t t0 = now_ns();
		CURLcode rc = curl_easy_perform(c);
		int64_t dt = now_ns() - t0;
		if (rc != CURLE_OK)
			die(curl_easy_strerror(rc));
		if (i >= 0)
			s[i] = dt;
	}
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	pthread_join(t, NULL);
	close(lfd);
	printf("{");
	print_dist("ns", s, (size_t)n, 1.0);
	printf("}\n");
	free(s);
	return 0;
}

/* ---- nng: raw ipc throughput ---------------------------------------------------- */

struct nng_rx {
	nng_socket s;
	long want;
	long got;
};

static void *nng_rx_main(void *arg)
{
	struct nng_rx *rx = arg;
	while (rx->got < rx->want) {
		nng_msg *m;
		if (nng_recvmsg(rx->s, &m, 0) != 0)
			break;
		nng_msg_free(m);
		rx->got++;
	}
	return NULL;
}

static int cmd_nng(size_t bytes, double seconds, const char *dir)
{
	char url[512];
	snprintf(url, sizeof url, "ipc://%s/nng-bench-%d.sock", dir, (int)getpid());
	nng_socket push, pull;
	if (nng_pull0_open(&pull) != 0 || nng_push0_open(&push) != 0)
		die("nng open");
	nng_socket_set_size(pull, NNG_OPT_RECVMAXSZ, bytes + 1024);
	if (nng_listen(pull, url, NULL, 0) != 0 || nng_dial(push, url, NULL, 0) != 0)
		die("nng listen/dial");
	uint8_t *buf = calloc(1, bytes);
	/* Calibrate: count how many fit in `seconds`, then time a fixed number so the
	 * receiver knows when to stop. */
	struct nng_rx rx = {.s = pull, .want = 200, .got = 0};
	pthread_t t;
	pthread_create(&t, NULL, nng_rx_main, &rx);
	int64_t t0 = now_ns();
	for (long i = 0; i < rx.want; i++)
		nng_send(push, buf, bytes, 0);
	pthread_join(t, NULL);
	double per = (double)(now_ns() - t0) / 1e9 / 200.0;
	long n = (long)(seconds / per);
	if (n < 200)
		n = 200;
	rx.want = n;
	rx.got = 0;
	pthread_create(&t, NULL, nng_rx_main, &rx);
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		nng_send(push, buf, bytes, 0);
	pthread_join(t, NULL);
	double dt = (double)(now_ns() - t0) / 1e9;
	nng_close(push);
	nng_close(pull);
	free(buf);
	char path[520];
	snprintf(path, sizeof path, "%s/nng-bench-%d.sock", dir, (int)getpid());
	unlink(path);
	printf("{\"bytes\":%zu,\"messages\":%ld,\"seconds\":%.3f,\"mb_per_s\":%.1f,"
	       "\"msgs_per_s\":%.0f}\n",
	       bytes, n, dt, (double)n * (double)bytes / dt / 1e6, (double)n / dt);
	return 0;
}

/* ---- disk: write() + fdatasync append bandwidth --------------------------------- */

static int cmd_disk(const char *dir, long mib, long sync_mib)
{
	char path[512];
	snprintf(path, sizeof path, "%s/disk-bench-%d.dat", dir, (int)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("disk: open");
	size_t chunk = 256 << 10;
	uint8_t *buf = malloc(chunk);
	for (size_t i = 0; i < chunk; i++)
		buf[i] = (uint8_t)(i * 131);
	long chunks = mib * 4, per_sync = sync_mib * 4, syncs = 0;
	int64_t t0 = now_ns();
	for (long i = 0; i < chunks; i++) {
		if (write(fd, buf, chunk) != (ssize_t)chunk)
			die("disk: write");
		if ((i + 1) % per_sync == 0) {
			fdatasync(fd);
			syncs++;
		}
	}
	fdatasync(fd);
	double dt = (double)(now_ns() - t0) / 1e9;
	close(fd);
	unlink(path);
	free(buf);
	printf("{\"mib\":%ld,\"sync_every_mib\":%ld,\"seconds\":%.3f,\"mb_per_s\":%.1f}\n", mib,
	       sync_mib, dt, (double)mib * 1048576.0 / dt / 1e6);
	return 0;
}

/* ---- produce: a training process ------------------------------------------------- */

static int cmd_produce(const char *url, const char *run_id, long rows, int metrics, double start_at,
                       long sleep_us, long every, size_t string_bytes)
{
	/* --string-bytes adds one string item: bulk for backlog tests that costs the
	 * local sink little to materialise (no number formatting). */
	td_item *row = calloc((size_t)metrics + 1, sizeof *row);
	char *text = calloc(1, string_bytes + 1);
	for (size_t i = 0; i < string_bytes; i++)
		text[i] = (char)('a' + i % 26);
	char(*keys)[16] = calloc((size_t)metrics, sizeof *keys);
	for (int k = 0; k < metrics; k++)
		snprintf(keys[k], sizeof keys[k], "m%03d", k);
	td_run *run = start_run(url, run_id, "bench");
	while (start_at > 0 && wall_s() < start_at)
		usleep(200);
	double t0 = wall_s();
	long full = 0;
	for (long i = 0; i < rows; i++) {
		for (int k = 0; k < metrics; k++)
			row[k] = TD_F(keys[k], (double)i * 0.001 + k);
		int rc;
		/* The agent slower than this loop: the client refuses at its memory
		 * bound; a benchmark wants every row, so wait and retry. */
		size_t n_items = (size_t)metrics;
		if (string_bytes)
			row[n_items++] = TD_S("text", text);
		while ((rc = td_log(run, row, n_items, i, true)) == TD_ERR_FULL) {
			full++;
			usleep(200);
		}
		if (rc != TD_OK) {
			fprintf(stderr, "trackd-bench: td_log: %s\n", td_strerror(rc));
			return 1;
		}
		if (sleep_us && (i + 1) % every == 0)
			usleep((useconds_t)sleep_us);
	}
	double t1 = wall_s();
	td_finish_report rep;
	int rc = td_finish(run, 0, 600000, &rep);
	double t2 = wall_s();
	printf("{\"run_id\":\"%s\",\"rows\":%ld,\"full_retries\":%ld,\"status\":\"%s\","
	       "\"acked\":%" PRIu64 ",\"start\":%.6f,\"logged_at\":%.6f,\"finished_at\":%.6f}\n",
	       run_id ? run_id : "", rows, full, td_strerror(rc), rep.records_acked, t0, t1, t2);
	free(row);
	free(keys);
	free(text);
	return rc == TD_OK ? 0 : 1;
}

/* ---- latency: td_log → durable ------------------------------------------------------ */

/* One thread polls the agent's status every millisecond and notes when each log
 * index became durable; the logging thread logs a row, waits until the log grew
 * (that new index is the row's record: one client, rows one at a time), then
 * waits a jittered gap before the next row. */
struct status_poll {
	nng_socket s;
	atomic_bool stop;
	uint64_t base; /* durable_at[k] is for index base + 1 + k */
	int64_t *durable_at;
	long cap;
	long polls;
};

static int query_status(nng_socket s, uint64_t *last, uint64_t *durable)
{
	static const uint8_t req[] = {0x08, 0x01, 0x1a, 0x00}; /* version 1, StatusQuery */
	void *buf;
	size_t len;
	if (nng_send(s, (void *)req, sizeof req, 0) != 0 ||
	    nng_recv(s, &buf, &len, NNG_FLAG_ALLOC) != 0)
		return -1;
	Trackd__V1__Reply *r = trackd__v1__reply__unpack(NULL, len, buf);
	nng_free(buf, len);
	if (!r || r->body_case != TRACKD__V1__REPLY__BODY_STATUS) {
		if (r)
			trackd__v1__reply__free_unpacked(r, NULL);
		return -1;
	}
	*last = r->status->last_index;
	*durable = r->status->durable_index;
	trackd__v1__reply__free_unpacked(r, NULL);
	return 0;
}

static void *poll_main(void *arg)
{
	struct status_poll *p = arg;
	uint64_t seen = p->base;
	while (!atomic_load(&p->stop)) {
		uint64_t last, durable;
		if (query_status(p->s, &last, &durable) == 0) {
			int64_t t = now_ns();
			p->polls++;
			for (; seen < durable; seen++) {
				long k = (long)(seen - p->base);
				if (k >= 0 && k < p->cap)
					p->durable_at[k] = t;
			}
		}
		usleep(1000); /* 1 ms resolution; faster polling loads the agent */
	}
	return NULL;
}

static nng_socket status_socket(const char *url)
{
	nng_socket s;
	if (nng_req0_open(&s) != 0 || nng_dial(s, url, NULL, 0) != 0)
		die("latency: cannot reach the agent");
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000);
	return s;
}

static int cmd_latency(const char *url, long rows, int gap_ms)
{
	struct status_poll p = {.cap = rows + 16};
	nng_socket mine = status_socket(url);
	p.s = status_socket(url);
	td_run *run = start_run(url, NULL, "bench");
	uint64_t last = 0, durable = 0;
	/* The run start appended and durable: the first row is what comes next. */
	for (int i = 0; i < 400; i++) {
		usleep(5000);
		if (query_status(mine, &last, &durable) == 0 && last > 0 && durable == last)
			break;
	}
	p.base = last;
	int64_t *logged_at = alloc_samples((size_t)rows);
	long *index = calloc((size_t)rows, sizeof(long));
	p.durable_at = calloc((size_t)p.cap, sizeof(int64_t));
	pthread_t t;
	pthread_create(&t, NULL, poll_main, &p);
	td_item row[4];
	unsigned seed = 12345;
	uint64_t prev = last;
	long lost = 0;
	for (long i = 0; i < rows; i++) {
		make_row(row, i);
		logged_at[i] = now_ns();
		td_log(run, row, 4, TD_STEP_AUTO, true);
		index[i] = -1;
		for (int w = 0; w < 5000; w++) {
			if (query_status(mine, &last, &durable) == 0 && last > prev) {
				index[i] = (long)(last - p.base) - 1;
				prev = last;
				break;
			}
			usleep(200);
		}
		lost += index[i] < 0;
		/* Jitter the phase against the agent's fsync timer. */
		seed = seed * 1103515245u + 12345u;
		int64_t next =
		    logged_at[i] + (int64_t)(gap_ms * 1000 + (long)((seed >> 16) % 7000)) * 1000;
		int64_t now = now_ns();
		if (next > now)
			usleep((useconds_t)((next - now) / 1000));
	}
	for (int i = 0; i < 200 && !atomic_load(&p.stop); i++) {
		usleep(5000);
		if (query_status(mine, &last, &durable) == 0 && durable >= last)
			break;
	}
	usleep(20000);
	atomic_store(&p.stop, true);
	pthread_join(t, NULL);
	int64_t *lat = alloc_samples((size_t)rows);
	long n = 0, missing = 0;
	for (long i = 0; i < rows; i++) {
		if (index[i] < 0 || index[i] >= p.cap || p.durable_at[index[i]] == 0)
			missing++;
		else
			lat[n++] = p.durable_at[index[i]] - logged_at[i];
	}
	td_finish(run, 0, 10000, NULL);
	printf("{\"rows\":%ld,\"unmatched\":%ld,\"missing\":%ld,\"polls\":%ld,", rows, lost,
	       missing, p.polls);
	print_dist("ms", lat, (size_t)n, 1e6);
	printf("}\n");
	nng_close(p.s);
	nng_close(mine);
	free(lat);
	free(index);
	free(logged_at);
	free(p.durable_at);
	return missing == 0 ? 0 : 1;
}

/* ---- initfinish: an empty run ------------------------------------------------------ */

static int cmd_initfinish(const char *url, long n)
{
	int64_t *s = alloc_samples((size_t)n);
	long failed = 0;
	for (long i = 0; i < n; i++) {
		int64_t t0 = now_ns();
		td_run *run = start_run(url, NULL, "bench-empty");
		td_finish_report rep;
		failed += td_finish(run, 0, 10000, &rep) != TD_OK;
		s[i] = now_ns() - t0;
	}
	printf("{\"failed\":%ld,", failed);
	print_dist("ms", s, (size_t)n, 1e6);
	printf("}\n");
	free(s);
	return failed ? 1 : 0;
}

/* ---- series: the chart query of trackctl ui ------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int cmd_series(const char *url, const char *run_id, int metrics, long n, long buckets)
{
	char(*names)[16] = calloc((size_t)metrics, sizeof *names);
	char **keys = calloc((size_t)metrics, sizeof *keys);
	for (int k = 0; k < metrics; k++) {
		snprintf(names[k], sizeof names[k], "m%03d", k);
		keys[k] = names[k];
	}
	Trackd__V1__SeriesRequest sr = TRACKD__V1__SERIES_REQUEST__INIT;
	sr.run = (char *)run_id;
	sr.keys = keys;
	sr.n_keys = (size_t)metrics;
	sr.has_buckets = true;
	sr.buckets = (uint32_t)buckets;
	Trackd__V1__Query q = TRACKD__V1__QUERY__INIT;
	q.request_case = TRACKD__V1__QUERY__REQUEST_SERIES;
	q.series = &sr;
	Trackd__V1__Request req = TRACKD__V1__REQUEST__INIT;
	req.has_protocol_version = true;
	req.protocol_version = 1;
	req.body_case = TRACKD__V1__REQUEST__BODY_QUERY;
	req.query = &q;
	size_t len = trackd__v1__request__get_packed_size(&req);
	uint8_t *msg = malloc(len);
	trackd__v1__request__pack(&req, msg);
	nng_socket s;
	if (nng_req0_open(&s) != 0 || nng_dial(s, url, NULL, 0) != 0)
		die("series: cannot reach the agent");
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 60000);
	nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 256 << 20);
	double *ms = calloc((size_t)n, sizeof *ms);
	size_t packed = 0, json = 0, buckets_total = 0;
	uint64_t rows = 0;
	for (long i = 0; i < n; i++) {
		nng_msg *reply;
		int64_t t0 = now_ns();
		if (nng_send(s, msg, len, 0) != 0 || nng_recvmsg(s, &reply, 0) != 0)
			die("series: no reply");
		ms[i] = (double)(now_ns() - t0) / 1e6;
		Trackd__V1__Reply *r =
		    trackd__v1__reply__unpack(NULL, nng_msg_len(reply), nng_msg_body(reply));
		if (!r || r->body_case != TRACKD__V1__REPLY__BODY_QUERY ||
		    r->query->reply_case != TRACKD__V1__QUERY_REPLY__REPLY_SERIES) {
			fprintf(stderr, "trackd-bench: series: %s\n",
			        r && r->body_case == TRACKD__V1__REPLY__BODY_ERROR
			            ? r->error->message
			            : "not a series");
			return 1;
		}
		packed = nng_msg_len(reply);
		struct buf b;
		buf_init(&b, (size_t)1 << 30);
		pb_json_query_reply(r->query, &b);
		json = b.len;
		buf_fini(&b);
		buckets_total = 0;
		rows = r->query->series->rows;
		for (size_t k = 0; k < r->query->series->n_series; k++)
			buckets_total += r->query->series->series[k]->n_x;
		trackd__v1__reply__free_unpacked(r, NULL);
		nng_msg_free(reply);
	}
	nng_close(s);
	qsort(ms, (size_t)n, sizeof *ms, cmp_double);
	printf("{\"n\":%ld,\"ms\":{\"p50\":%.3f,\"min\":%.3f,\"max\":%.3f},"
	       "\"reply_bytes\":%zu,\"json_bytes\":%zu,\"buckets\":%zu,\"rows\":%" PRIu64 "}\n",
	       n, ms[n / 2], ms[0], ms[n - 1], packed, json, buckets_total, rows);
	free(ms);
	free(msg);
	free(keys);
	free(names);
	return 0;
}

static int cmd_series_index(const char *dir, long rows, int metrics, long n, long buckets)
{
	char(*names)[16] = calloc((size_t)metrics, sizeof *names);
	char **keys = calloc((size_t)metrics, sizeof *keys);
	for (int k = 0; k < metrics; k++) {
		snprintf(names[k], sizeof names[k], "m%03d", k);
		keys[k] = names[k];
	}
	const struct series_query q = {
	    .x = "_step", .keys = keys, .n_keys = (size_t)metrics, .buckets = (uint32_t)buckets};
	double *ms = calloc((size_t)n, sizeof *ms);
	size_t buckets_total = 0;
	for (long i = 0; i < n; i++) {
		Trackd__V1__SeriesReply *r = malloc(sizeof *r);
		trackd__v1__series_reply__init(r);
		char err[256];
		int64_t t0 = now_ns();
		int rv = series_query(dir, (uint64_t)rows, &q, r, err, sizeof err);
		ms[i] = (double)(now_ns() - t0) / 1e6;
		if (rv)
			die("series-index: the query failed");
		buckets_total = 0;
		for (size_t k = 0; k < r->n_series; k++)
			buckets_total += r->series[k]->n_x;
		trackd__v1__series_reply__free_unpacked(r, NULL);
	}
	qsort(ms, (size_t)n, sizeof *ms, cmp_double);
	printf("{\"n\":%ld,\"ms\":{\"p50\":%.3f,\"min\":%.3f,\"max\":%.3f},\"buckets\":%zu}\n", n,
	       ms[n / 2], ms[0], ms[n - 1], buckets_total);
	free(ms);
	free(keys);
	free(names);
	return 0;
}

/* ---- fmt: shortest round-trip doubles ---------------------------------------------- */

/* common/fmt.c before Ryu: up to three snprintf + strtod per value. */
static void fmt_search_g(char *out, size_t cap, double d)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, cap, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

static void fmt_snprintf17(char *out, size_t cap, double d)
{
	snprintf(out, cap, "%.17g", d);
}

/* ns per value of one formatter over vals; the byte sum keeps the calls. */
static double fmt_ns(void (*f)(char *, size_t, double), const double *vals, long n, size_t *sink)
{
	char b[FMT_DOUBLE_MAX];
	int64_t t0 = now_ns();
	for (long i = 0; i < n; i++) {
		f(b, sizeof b, vals[i]);
		*sink += (size_t)b[0];
	}
	return (double)(now_ns() - t0) / (double)n;
}

static int cmd_fmt(long n)
{
	double *p4 = malloc((size_t)n * sizeof *p4);
	double *uni = malloc((size_t)n * sizeof *uni);
	if (!p4 || !uni)
		die("out of memory");
	uint64_t x = 88172645463325252u;
	for (long i = 0; i < n; i++) {
		p4[i] = (double)(i / 4) * 0.001 + (double)(i % 4); /* cmd_produce's rows */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uni[i] = (double)(x >> 11) / 9007199254740992.0;
	}
	size_t sink = 0;
	/* Alternate new and old twice so drift on a shared machine hits both. */
	double g_p4 = 0, old_p4 = 0, g_uni = 0, old_uni = 0;
	for (int rep = 0; rep < 2; rep++) {
		g_p4 += fmt_ns(fmt_double_g, p4, n, &sink) / 2;
		old_p4 += fmt_ns(fmt_search_g, p4, n, &sink) / 2;
		g_uni += fmt_ns(fmt_double_g, uni, n, &sink) / 2;
		old_uni += fmt_ns(fmt_search_g, uni, n, &sink) / 2;
	}
	double s17 = fmt_ns(fmt_snprintf17, p4, n, &sink);
	printf("{\"n\":%ld,\"g_p4_ns\":%.1f,\"search_p4_ns\":%.1f,\"g_uniform_ns\":%.1f,"
	       "\"search_uniform_ns\":%.1f,\"snprintf17_p4_ns\":%.1f,\"sink\":%zu}\n",
	       n, g_p4, old_p4, g_uni, old_uni, s17, sink);
	free(p4);
	free(uni);
	return 0;
}

/* ---- savefiles: td_save_path of a directory's files ------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_savefiles(const char *url, const char *run_id, const char *dir)
{
	char *names[1024];
	size_t nn = 0;
	DIR *d = opendir(dir);
	if (!d)
		die("savefiles: cannot open --dir");
	struct dirent *e;
	while ((e = readdir(d)) && nn < 1024)
		if (e->d_name[0] != '.')
			names[nn++] = strdup(e->d_name);
	closedir(d);
	qsort(names, nn, sizeof *names, cmp_str);
	td_run *run = start_run(url, run_id, "bench");
	double t_first = 0, t_last = 0;
	long full = 0;
	uint64_t bytes = 0;
	for (size_t i = 0; i < nn; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		struct stat st;
		if (stat(path, &st) != 0)
			die("savefiles: cannot stat a file");
		if (i == 0)
			t_first = wall_s(); /* the user's save() starts with reading the file */
		int rc;
		/* td_save_path copies the file into the spool dir (read and hashed
		 * once); a full queue (max_spool_bytes of files not yet delivered)
		 * refuses before anything is copied: a user who wants every file
		 * waits for it to drain and saves again, as this does. */
		while ((rc = td_save_path(run, names[i], path, "now")) == TD_ERR_FULL) {
			full++;
			usleep(20000);
		}
		if (rc != TD_OK) {
			fprintf(stderr, "trackd-bench: td_save_path %s: %s (%s)\n", names[i],
			        td_strerror(rc), td_last_error());
			return 1;
		}
		bytes += (uint64_t)st.st_size;
		t_last = wall_s();
	}
	td_finish_report rep;
	int rc = td_finish(run, 0, 1800000, &rep);
	double t_fin = wall_s();
	printf("{\"files\":%zu,\"bytes\":%" PRIu64 ",\"full_retries\":%ld,\"status\":\"%s\","
	       "\"first_save_at\":%.6f,\"last_save_at\":%.6f,\"finished_at\":%.6f}\n",
	       nn, bytes, full, td_strerror(rc), t_first, t_last, t_fin);
	for (size_t i = 0; i < nn; i++)
		free(names[i]);
	return rc == TD_OK ? 0 : 1;
}

/* ---- images: td_log of rows with a 64x64 PNG ------------------------------------------- */

static int cmd_images(const char *url, const char *run_id, long rows)
{
	enum { W = 64, H = 64 };
	uint8_t **png = calloc((size_t)rows, sizeof *png);
	size_t *png_len = calloc((size_t)rows, sizeof *png_len);
	uint8_t *px = malloc(W * H * 3);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (long i = 0; i < rows; i++) {
		for (size_t k = 0; k < W * H * 3; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			px[k] = (uint8_t)x;
		}
		if (td_png_encode(px, W, H, 3, &png[i], &png_len[i]) != TD_OK)
			die("td_png_encode failed");
	}
	int64_t *plain = alloc_samples((size_t)rows), *media = alloc_samples((size_t)rows);
	td_run *run = start_run(url, run_id, "bench");
	td_item row[5];
	long failed = 0, step = 0;
	for (long i = 0; i < 200; i++, step++) { /* warm-up, as tdlog */
		make_row(row, i);
		td_log(run, row, 4, step, true);
	}
	for (long i = 0; i < rows; i++, step++) {
		make_row(row, i);
		int64_t t0 = now_ns();
		int rc = td_log(run, row, 4, step, true);
		plain[i] = now_ns() - t0;
		failed += rc != TD_OK;
	}
	double t_first = 0;
	for (long i = 0; i < rows; i++, step++) {
		td_media m = {.kind = TD_MEDIA_PNG,
		              .data = png[i],
		              .len = png_len[i],
		              .width = W,
		              .height = H};
		make_row(row, i);
		row[4] = TD_MEDIA_ITEM("sample", &m);
		if (i == 0)
			t_first = wall_s();
		int64_t t0 = now_ns();
		int rc = td_log(run, row, 5, step, true);
		media[i] = now_ns() - t0;
		failed += rc != TD_OK;
	}
	double t_logged = wall_s();
	td_finish_report rep;
	int rc = td_finish(run, 0, 600000, &rep);
	size_t png_bytes = 0;
	for (long i = 0; i < rows; i++) {
		png_bytes += png_len[i];
		td_free(png[i]);
	}
	printf("{\"rows\":%ld,\"failed\":%ld,\"status\":\"%s\",\"png_bytes\":%zu,"
	       "\"first_image_at\":%.6f,\"logged_at\":%.6f,\"finished_at\":%.6f,",
	       rows, failed, td_strerror(rc), png_bytes / (size_t)rows, t_first, t_logged,
	       wall_s());
	print_dist("plain_ns", plain, (size_t)rows, 1.0);
	printf(",");
	print_dist("media_ns", media, (size_t)rows, 1.0);
	printf("}\n");
	free(plain);
	free(media);
	free(png);
	free(png_len);
	free(px);
	return failed || rc != TD_OK ? 1 : 0;
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	if (argc < 2)
		die("usage: trackd-bench SUBCOMMAND [options] (see bench.c)");
	const char *cmd = argv[1];
	const char *url = NULL, *run_id = NULL, *dir = "/tmp";
	long rows = 100000, n = 10000, mib = 256, sync_mib = 8, sleep_us = 0, every = 1;
	size_t bytes = 0, string_bytes = 0;
	int metrics = 4, gap_ms = 15, finish_ms = 60000;
	long buckets = 1000;
	double seconds = 2.0, start_at = 0;
	static const struct option opts[] = {
	    {"url", required_argument, NULL, 'u'},
	    {"run-id", required_argument, NULL, 'r'},
	    {"rows", required_argument, NULL, 'n'},
	    {"n", required_argument, NULL, 'N'},
	    {"bytes", required_argument, NULL, 'b'},
	    {"seconds", required_argument, NULL, 's'},
	    {"dir", required_argument, NULL, 'd'},
	    {"mib", required_argument, NULL, 'm'},
	    {"sync-mib", required_argument, NULL, 'y'},
	    {"metrics", required_argument, NULL, 'k'},
	    {"start-at", required_argument, NULL, 'a'},
	    {"sleep-us", required_argument, NULL, 'S'},
	    {"every", required_argument, NULL, 'e'},
	    {"gap-ms", required_argument, NULL, 'g'},
	    {"finish-ms", required_argument, NULL, 'f'},
	    {"string-bytes", required_argument, NULL, 'T'},
	    {"buckets", required_argument, NULL, 'B'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'u': url = optarg; break;
		case 'r': run_id = optarg; break;
		case 'n': rows = atol(optarg); break;
		case 'N': n = atol(optarg); break;
		case 'b': bytes = (size_t)atol(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'd': dir = optarg; break;
		case 'm': mib = atol(optarg); break;
		case 'y': sync_mib = atol(optarg) > 0 ? atol(optarg) : 1; break;
		case 'k': metrics = atoi(optarg) > 0 ? atoi(optarg) : 1; break;
		case 'a': start_at = atof(optarg); break;
		case 'S': sleep_us = atol(optarg); break;
		case 'e': every = atol(optarg) > 0 ? atol(optarg) : 1; break;
		case 'g': gap_ms = atoi(optarg); break;
		case 'f': finish_ms = atoi(optarg); break;
		case 'T': string_bytes = (size_t)atol(optarg); break;
		case 'B': buckets = atol(optarg); break;
		default: die("bad arguments");
		}
	}
	if (rows <= 0 || n <= 0)
		die("--rows and --n must be positive");
	bool needs_url = !strcmp(cmd, "tdlog") || !strcmp(cmd, "produce") ||
	                 !strcmp(cmd, "latency") || !strcmp(cmd, "initfinish") ||
	                 !strcmp(cmd, "series") || !strcmp(cmd, "savefiles") ||
	                 !strcmp(cmd, "images");
	if (needs_url && !url)
		die("--url is required");
	if (!strcmp(cmd, "tdlog"))
		return cmd_tdlog(url, rows, finish_ms);
	if (!strcmp(cmd, "pack"))
		return cmd_pack(rows);
	if (!strcmp(cmd, "send"))
		return cmd_send(bytes, n);
	if (!strcmp(cmd, "post"))
		return cmd_post(n);
	if (!strcmp(cmd, "nng"))
		return cmd_nng(bytes ? bytes : 65536, seconds, dir);
	if (!strcmp(cmd, "disk"))
		return cmd_disk(dir, mib, sync_mib);
	if (!strcmp(cmd, "produce"))
		return cmd_produce(url, run_id, rows, metrics, start_at, sleep_us, every,
		                   string_bytes);
	if (!strcmp(cmd, "latency"))
		return cmd_latency(url, rows, gap_ms);
	if (!strcmp(cmd, "initfinish"))
		return cmd_initfinish(url, n);
	if (!strcmp(cmd, "series"))
		return cmd_series(url, run_id, metrics, n, buckets);
	if (!strcmp(cmd, "fmt"))
		return cmd_fmt(n);
	if (!strcmp(cmd, "series-index"))
		return cmd_series_index(dir, rows, metrics, n, buckets);
	if (!strcmp(cmd, "savefiles"))
		return cmd_savefiles(url, run_id, dir);
	if (!strcmp(cmd, "images"))
		return cmd_images(url, run_id, rows);
	die("unknown subcommand");
	return 2;
}
