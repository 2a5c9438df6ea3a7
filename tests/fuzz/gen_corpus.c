/* gen_corpus — writes the seed corpora of fuzz_validate and fuzz_txlog_reader:
 * requests packed with protobuf-c, and segment files written by the txlog itself.
 * Run once by hand when the formats change (the output is committed):
 *     build-fuzz/tests/fuzz/fuzz_gen_corpus tests/fuzz/corpus
 * The seeds of fuzz_config are hand-written YAML files. */
#include "errors.h"
#include "log.h"
#include "txlog.h"

#include "trackd/v1/limits.h"
#include "trackd/v1/trackd.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *out_root;

static void die(const char *what)
{
	fprintf(stderr, "gen_corpus: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void put_file(const char *target, const char *name, const void *data, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", out_root, target);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		die(path);
	snprintf(path, sizeof path, "%s/%s/%s", out_root, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		die(path);
	printf("%s (%zu bytes)\n", path, len);
}

/* ---- requests ------------------------------------------------------------------------ */

static uint8_t session[TRACKD_SESSION_ID_BYTES] = {0x5e, 0x55, 1, 2,  3,  4,  5,  6,
                                                   7,    8,    9, 10, 11, 12, 13, 14};

static void put_request(const char *name, Trackd__V1__Request *req)
{
	size_t len = trackd__v1__request__get_packed_size(req);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		die("malloc");
	trackd__v1__request__pack(req, buf);
	put_file("fuzz_validate", name, buf, len);
	free(buf);
}

static void put_batch(const char *name, Trackd__V1__Record **records, size_t n, uint64_t seq)
{
	Trackd__V1__Batch b = TRACKD__V1__BATCH__INIT;
	b.has_session_id = true;
	b.session_id.data = session;
	b.session_id.len = sizeof session;
	b.has_seq = true;
	b.seq = seq;
	b.records = records;
	b.n_records = n;
	Trackd__V1__Request r = TRACKD__V1__REQUEST__INIT;
	r.has_protocol_version = true;
	r.protocol_version = TRACKD_PROTOCOL_VERSION;
	r.body_case = TRACKD__V1__REQUEST__BODY_BATCH;
	r.batch = &b;
	put_request(name, &r);
}

/* Items and values live in static storage: the seeds are small and fixed. */
static Trackd__V1__Value values[16];
static Trackd__V1__Item items[16];
static Trackd__V1__Item *item_ptrs[16];
static Trackd__V1__MapValue maps[4];
static size_t nvalues, nitems;

static Trackd__V1__Item *item(const char *key, Trackd__V1__Value *v)
{
	Trackd__V1__Item *it = &items[nitems];
	trackd__v1__item__init(it);
	it->key = (char *)key;
	it->value = v;
	item_ptrs[nitems] = it;
	nitems++;
	return it;
}

static Trackd__V1__Value *value(void)
{
	Trackd__V1__Value *v = &values[nvalues++];
	trackd__v1__value__init(v);
	return v;
}

static Trackd__V1__Value *v_double(double d)
{
	Trackd__V1__Value *v = value();
	v->kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
	v->double_value = d;
	return v;
}

static Trackd__V1__Value *v_int(int64_t i)
{
	Trackd__V1__Value *v = value();
	v->kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
	v->int_value = i;
	return v;
}

static Trackd__V1__Value *v_bool(bool b)
{
	Trackd__V1__Value *v = value();
	v->kind_case = TRACKD__V1__VALUE__KIND_BOOL_VALUE;
	v->bool_value = b;
	return v;
}

static Trackd__V1__Value *v_string(const char *s)
{
	Trackd__V1__Value *v = value();
	v->kind_case = TRACKD__V1__VALUE__KIND_STRING_VALUE;
	v->string_value = (char *)s;
	return v;
}

static Trackd__V1__Value *v_map(Trackd__V1__MapValue *m, Trackd__V1__Item **its, size_t n)
{
	trackd__v1__map_value__init(m);
	m->items = its;
	m->n_items = n;
	Trackd__V1__Value *v = value();
	v->kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
	v->map_value = m;
	return v;
}

static void reset_items(void)
{
	nvalues = nitems = 0;
}

/* A history row of W&B's value model beyond scalars: {"betas": [0.9, null,
 * "a", [1, {"k": []}], []], "none": null}. */
static void gen_values_request(void)
{
	static Trackd__V1__NullValue null = TRACKD__V1__NULL_VALUE__INIT;
	static Trackd__V1__Value vals[10], *outer_v[5], *inner_v[2];
	static Trackd__V1__ListValue outer, inner, empty_a, empty_b;
	static Trackd__V1__MapValue k_map;
	static Trackd__V1__Item its[3], *k_items[1], *row_items[2];
	for (size_t i = 0; i < 10; i++)
		trackd__v1__value__init(&vals[i]);
	for (size_t i = 0; i < 3; i++)
		trackd__v1__item__init(&its[i]);
	trackd__v1__list_value__init(&outer);
	trackd__v1__list_value__init(&inner);
	trackd__v1__list_value__init(&empty_a);
	trackd__v1__list_value__init(&empty_b);
	trackd__v1__map_value__init(&k_map);
	vals[0].kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
	vals[0].double_value = 0.9;
	vals[1].kind_case = TRACKD__V1__VALUE__KIND_NULL_VALUE;
	vals[1].null_value = &null;
	vals[2].kind_case = TRACKD__V1__VALUE__KIND_STRING_VALUE;
	vals[2].string_value = "a";
	vals[3].kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
	vals[3].int_value = 1;
	vals[4].kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE; /* k: [] */
	vals[4].list_value = &empty_a;
	its[0].key = "k";
	its[0].value = &vals[4];
	k_items[0] = &its[0];
	k_map.items = k_items;
	k_map.n_items = 1;
	vals[5].kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
	vals[5].map_value = &k_map;
	inner_v[0] = &vals[3];
	inner_v[1] = &vals[5];
	inner.values = inner_v;
	inner.n_values = 2;
	vals[6].kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
	vals[6].list_value = &inner;
	vals[7].kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
	vals[7].list_value = &empty_b;
	outer_v[0] = &vals[0];
	outer_v[1] = &vals[1];
	outer_v[2] = &vals[2];
	outer_v[3] = &vals[6];
	outer_v[4] = &vals[7];
	outer.values = outer_v;
	outer.n_values = 5;
	vals[8].kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
	vals[8].list_value = &outer;
	vals[9].kind_case = TRACKD__V1__VALUE__KIND_NULL_VALUE;
	vals[9].null_value = &null;
	its[1].key = "betas";
	its[1].value = &vals[8];
	its[2].key = "none";
	its[2].value = &vals[9];
	row_items[0] = &its[1];
	row_items[1] = &its[2];
	Trackd__V1__HistoryRow row = TRACKD__V1__HISTORY_ROW__INIT;
	row.items = row_items;
	row.n_items = 2;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT, *recp = &rec;
	rec.run_id = "fz1a2b3c";
	rec.body_case = TRACKD__V1__RECORD__BODY_HISTORY;
	rec.history = &row;
	put_batch("batch-lists-null", &recp, 1, 6);
}

static void gen_requests(void)
{
	Trackd__V1__Record rec[8];
	Trackd__V1__Record *recp[8];
	for (size_t i = 0; i < 8; i++) {
		trackd__v1__record__init(&rec[i]);
		rec[i].run_id = "fz1a2b3c";
		recp[i] = &rec[i];
	}

	/* run start with a nested config and tags */
	reset_items();
	char *tags[] = {"baseline", "fuzz"};
	item("lr", v_double(0.001));
	item("depth", v_int(3));
	Trackd__V1__Item **opt = &item_ptrs[nitems];
	item("name", v_string("adam"));
	item("beta", v_double(0.9));
	item("optimizer", v_map(&maps[0], opt, 2));
	Trackd__V1__Item *cfg_items[] = {item_ptrs[0], item_ptrs[1], item_ptrs[4]};
	Trackd__V1__MapValue cfg = TRACKD__V1__MAP_VALUE__INIT;
	cfg.items = cfg_items;
	cfg.n_items = 3;
	Trackd__V1__RunStart start = TRACKD__V1__RUN_START__INIT;
	start.project = "proj";
	start.entity = "team";
	start.display_name = "first run";
	start.config = &cfg;
	start.tags = tags;
	start.n_tags = 2;
	start.notes = "seed";
	start.host = "node-1";
	start.has_pid = true;
	start.pid = 4242;
	start.has_resume = true;
	start.resume = TRACKD__V1__RESUME_MODE__RESUME_ALLOW;
	rec[0].body_case = TRACKD__V1__RECORD__BODY_START;
	rec[0].start = &start;
	put_batch("batch-run-start", recp, 1, 1);

	/* history rows: every value kind, one nested map, steps */
	reset_items();
	item("loss", v_double(0.25));
	item("epoch", v_int(2));
	item("done", v_bool(false));
	item("phase", v_string("train"));
	Trackd__V1__Item **inner = &item_ptrs[nitems];
	item("acc", v_double(0.5));
	item("n", v_int(10));
	item("val", v_map(&maps[1], inner, 2));
	Trackd__V1__Item *row_items[] = {item_ptrs[0], item_ptrs[1], item_ptrs[2], item_ptrs[3],
	                                 item_ptrs[6]};
	Trackd__V1__HistoryRow row = TRACKD__V1__HISTORY_ROW__INIT;
	row.has_step = true;
	row.step = 7;
	row.has_client_time_us = true;
	row.client_time_us = 1700000000000000;
	row.items = row_items;
	row.n_items = 5;
	Trackd__V1__HistoryRow row2 = TRACKD__V1__HISTORY_ROW__INIT;
	row2.has_commit = true;
	row2.commit = false;
	row2.items = row_items;
	row2.n_items = 1;
	rec[1].body_case = TRACKD__V1__RECORD__BODY_HISTORY;
	rec[1].history = &row;
	rec[2].body_case = TRACKD__V1__RECORD__BODY_HISTORY;
	rec[2].history = &row2;
	put_batch("batch-history", recp + 1, 2, 2);

	/* summary, config update, console, metric, rename, exit */
	char *remove[] = {"old"};
	Trackd__V1__SummaryUpdate sum = TRACKD__V1__SUMMARY_UPDATE__INIT;
	sum.items = row_items;
	sum.n_items = 2;
	sum.remove_keys = remove;
	sum.n_remove_keys = 1;
	Trackd__V1__ConfigUpdate cu = TRACKD__V1__CONFIG_UPDATE__INIT;
	cu.items = row_items + 3;
	cu.n_items = 1;
	Trackd__V1__ConsoleOutput con = TRACKD__V1__CONSOLE_OUTPUT__INIT;
	con.has_stream = true;
	con.stream = TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDERR;
	con.text = "epoch 2: loss 0.25\n";
	Trackd__V1__DefineMetric dm = TRACKD__V1__DEFINE_METRIC__INIT;
	dm.name = "loss";
	dm.has_summary = true;
	dm.summary = TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MIN;
	Trackd__V1__RunRename rn = TRACKD__V1__RUN_RENAME__INIT;
	rn.display_name = "renamed";
	Trackd__V1__RunExit ex = TRACKD__V1__RUN_EXIT__INIT;
	ex.has_exit_code = true;
	ex.exit_code = 1;
	ex.has_reason = true;
	ex.reason = TRACKD__V1__EXIT_REASON__EXIT_KILLED;
	rec[3].body_case = TRACKD__V1__RECORD__BODY_SUMMARY;
	rec[3].summary = &sum;
	rec[4].body_case = TRACKD__V1__RECORD__BODY_CONFIG;
	rec[4].config = &cu;
	rec[5].body_case = TRACKD__V1__RECORD__BODY_CONSOLE;
	rec[5].console = &con;
	rec[6].body_case = TRACKD__V1__RECORD__BODY_DEFINE_METRIC;
	rec[6].define_metric = &dm;
	rec[7].body_case = TRACKD__V1__RECORD__BODY_RENAME;
	rec[7].rename = &rn;
	put_batch("batch-mixed", recp + 3, 5, 3);
	rec[7].body_case = TRACKD__V1__RECORD__BODY_EXIT;
	rec[7].exit = &ex;
	put_batch("batch-exit", recp + 7, 1, 4);
	/* every kind at once: over the small limits, fine for the defaults */
	put_batch("batch-all", recp, 8, 5);

	gen_values_request();

	/* status and query */
	Trackd__V1__StatusQuery sq = TRACKD__V1__STATUS_QUERY__INIT;
	Trackd__V1__Request r = TRACKD__V1__REQUEST__INIT;
	r.has_protocol_version = true;
	r.protocol_version = TRACKD_PROTOCOL_VERSION;
	r.body_case = TRACKD__V1__REQUEST__BODY_STATUS;
	r.status = &sq;
	put_request("status", &r);
	char *keys[] = {"loss", "epoch"};
	Trackd__V1__HistoryRequest h = TRACKD__V1__HISTORY_REQUEST__INIT;
	h.run = "team/proj/fz1a2b3c";
	h.keys = keys;
	h.n_keys = 2;
	h.has_from_line = true;
	h.from_line = 1;
	h.has_max_lines = true;
	h.max_lines = 10;
	Trackd__V1__Query q = TRACKD__V1__QUERY__INIT;
	q.request_case = TRACKD__V1__QUERY__REQUEST_HISTORY;
	q.history = &h;
	r.body_case = TRACKD__V1__REQUEST__BODY_QUERY;
	r.query = &q;
	put_request("query-history", &r);

	/* files: which blobs are missing, one piece of one, a saved file's record */
	uint8_t digest[32];
	memset(digest, 0xab, sizeof digest);
	ProtobufCBinaryData d = {.len = 32, .data = digest};
	Trackd__V1__BlobQuery bq = TRACKD__V1__BLOB_QUERY__INIT;
	bq.run_id = "fz1a2b3c";
	bq.n_sha256 = 1;
	bq.sha256 = &d;
	r.body_case = TRACKD__V1__REQUEST__BODY_BLOB_QUERY;
	r.blob_query = &bq;
	put_request("blob-query", &r);
	Trackd__V1__BlobChunk bc = TRACKD__V1__BLOB_CHUNK__INIT;
	bc.run_id = "fz1a2b3c";
	bc.has_sha256 = bc.has_size = bc.has_offset = bc.has_data = true;
	bc.sha256 = d;
	bc.size = 8;
	bc.offset = 0;
	bc.data.len = 8;
	bc.data.data = (uint8_t *)"\x89PNG\r\n\x1a\n";
	r.body_case = TRACKD__V1__REQUEST__BODY_BLOB_CHUNK;
	r.blob_chunk = &bc;
	put_request("blob-chunk", &r);
	Trackd__V1__SavedFile sf = TRACKD__V1__SAVED_FILE__INIT;
	sf.name = "media/images/x_0_abababababababababab.png";
	sf.has_sha256 = sf.has_size = true;
	sf.sha256 = d;
	sf.size = 8;
	sf.policy = "now";
	Trackd__V1__Record frec = TRACKD__V1__RECORD__INIT;
	frec.run_id = "fz1a2b3c";
	frec.body_case = TRACKD__V1__RECORD__BODY_FILE;
	frec.file = &sf;
	Trackd__V1__Record *frecs[] = {&frec};
	put_batch("batch-saved-file", frecs, 1, 1);

	/* a future protocol version: refused before the schema */
	r.protocol_version = 2;
	r.body_case = TRACKD__V1__REQUEST__BODY_STATUS;
	r.status = &sq;
	put_request("status-version-2", &r);
}

/* ---- segments ------------------------------------------------------------------------- */

static char logdir[PATH_MAX];

static void rm_log(void)
{
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", logdir);
	if (system(cmd) != 0)
		die("rm -rf");
}

static txlog *new_log(uint64_t segment_bytes)
{
	rm_log();
	struct txlog_options o = {
	    .dir = logdir,
	    .fsync = TXLOG_FSYNC_NEVER,
	    .segment_bytes = segment_bytes,
	    .max_record_bytes = 64u << 10,
	};
	txlog *log;
	if (txlog_open(&o, &log) != TRACKD_OK)
		die("txlog_open");
	return log;
}

static uint8_t *slurp(uint64_t first, size_t *len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%020llu.seg", logdir, (unsigned long long)first);
	FILE *f = fopen(path, "rb");
	if (!f)
		die(path);
	static uint8_t buf[1 << 16];
	*len = fread(buf, 1, sizeof buf, f);
	fclose(f);
	return buf;
}

/* Appends a LogEntry like ingest's: identity, time, then a small Batch. */
static void append_entry(txlog *log, uint64_t seq, const char *text)
{
	Trackd__V1__ConsoleOutput con = TRACKD__V1__CONSOLE_OUTPUT__INIT;
	con.text = (char *)text;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.run_id = "fz1a2b3c";
	rec.body_case = TRACKD__V1__RECORD__BODY_CONSOLE;
	rec.console = &con;
	Trackd__V1__Record *recp = &rec;
	Trackd__V1__Batch b = TRACKD__V1__BATCH__INIT;
	b.has_session_id = true;
	b.session_id.data = session;
	b.session_id.len = sizeof session;
	b.has_seq = true;
	b.seq = seq;
	b.records = &recp;
	b.n_records = 1;
	Trackd__V1__LogEntry e = TRACKD__V1__LOG_ENTRY__INIT;
	e.has_peer_uid = e.has_peer_gid = e.has_peer_pid = e.has_recv_time_us = true;
	e.peer_uid = e.peer_gid = 1000;
	e.peer_pid = 4242;
	e.recv_time_us = 1700000000000000;
	e.batch = &b;
	uint8_t buf[512];
	size_t n = trackd__v1__log_entry__pack(&e, buf);
	if (txlog_append(log, buf, n, NULL) != TRACKD_OK)
		die("txlog_append");
}

static void gen_segments(void)
{
	char base[] = "/tmp/trackd-gen-corpus.XXXXXX";
	if (!mkdtemp(base))
		die("mkdtemp");
	snprintf(logdir, sizeof logdir, "%s/log", base);

	/* three records */
	txlog *log = new_log(1 << 20);
	for (uint64_t i = 1; i <= 3; i++)
		append_entry(log, i, "step done\n");
	txlog_close(log);
	size_t len;
	uint8_t *seg = slurp(1, &len);
	put_file("fuzz_txlog_reader", "seg-3-records", seg, len);

	/* damage: a flipped payload byte (bad crc), a torn last frame, no frames */
	uint8_t copy[1 << 16];
	memcpy(copy, seg, len);
	copy[16 + 20 + 5] ^= 0x40;
	put_file("fuzz_txlog_reader", "seg-bad-crc", copy, len);
	put_file("fuzz_txlog_reader", "seg-torn-tail", seg, len - 7);
	put_file("fuzz_txlog_reader", "seg-header-only", seg, 16);
	memcpy(copy, seg, len);
	memcpy(copy, "TRKDLOGX", 8);
	put_file("fuzz_txlog_reader", "seg-bad-header", copy, len);

	/* small segments: rolls give later first indices; two files back to back */
	log = new_log(256);
	for (uint64_t i = 1; i <= 8; i++)
		append_entry(log, i, i % 2 ? "odd\n" : "an even line of console text\n");
	txlog_close(log);
	uint64_t firsts[16];
	size_t n = 0;
	DIR *d = opendir(logdir);
	if (!d)
		die(logdir);
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < 16) {
		unsigned long long v;
		if (strlen(e->d_name) == 24 && sscanf(e->d_name, "%20llu.seg", &v) == 1)
			firsts[n++] = v;
	}
	closedir(d);
	for (size_t i = 0; i + 1 < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (firsts[j] < firsts[i]) {
				uint64_t t = firsts[i];
				firsts[i] = firsts[j];
				firsts[j] = t;
			}
	if (n < 3)
		die("expected rolled segments");
	seg = slurp(firsts[1], &len);
	put_file("fuzz_txlog_reader", "seg-rolled", seg, len);
	size_t len2;
	memcpy(copy, seg, len);
	uint8_t *seg2 = slurp(firsts[2], &len2);
	memcpy(copy + len, seg2, len2);
	put_file("fuzz_txlog_reader", "seg-two-files", copy, len + len2);
	rm_log();
	rmdir(base);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR   (tests/fuzz/corpus)\n", argv[0]);
		return 2;
	}
	out_root = argv[1];
	trackd_log_set_level(TRACKD_LOG_ERROR);
	gen_requests();
	gen_segments();
	return 0;
}
