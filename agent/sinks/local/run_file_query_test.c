/* run_file_query_test — the RunFileRead query of the local sink
 * (local_sink_query_run_file) on a real log, blob store and sink: a run of
 * OWNER with a saved file of two pieces and a bit, read by its owner, refused
 * to another uid (and no byte in the answer), read by an admin; the piece
 * length at TRACKD_RUN_FILE_READ_MAX - 1, the limit and the limit + 1, the
 * offset at size - 1, size and size + 1; shorter pieces when replies are
 * capped below one; names that would leave files/, a
 * name the run does not list; a corrupt copy in the run dir refused. */
#include "local_sink.h"

#include "blobs.h"
#include "check.h"
#include "errors.h"
#include "run_files.h"
#include "txlog.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OWNER 4242u
#define OTHER 4243u

static char root[256];

static int no_submit(void *arg, const Trackd__V1__Record *rec)
{
	(void)arg;
	(void)rec;
	return 0;
}

/* One LogEntry of OWNER holding the run's start and its saved file. */
static void append_run(txlog *log, const uint8_t digest[32], uint64_t size)
{
	Trackd__V1__RunStart start = TRACKD__V1__RUN_START__INIT;
	start.project = "p";
	start.has_pid = true;
	start.pid = getpid();
	start.has_start_time_us = true;
	start.start_time_us = (int64_t)time(NULL) * 1000000;
	Trackd__V1__SavedFile file = TRACKD__V1__SAVED_FILE__INIT;
	file.name = "weights/big.bin";
	file.has_sha256 = file.has_size = true;
	file.sha256.data = (uint8_t *)digest;
	file.sha256.len = 32;
	file.size = size;
	file.policy = "now";
	Trackd__V1__Record r0 = TRACKD__V1__RECORD__INIT, r1 = TRACKD__V1__RECORD__INIT;
	r0.run_id = r1.run_id = "r1";
	r0.body_case = TRACKD__V1__RECORD__BODY_START;
	r0.start = &start;
	r1.body_case = TRACKD__V1__RECORD__BODY_FILE;
	r1.file = &file;
	Trackd__V1__Record *records[] = {&r0, &r1};
	uint8_t session[16] = {1, 2, 3};
	Trackd__V1__Batch batch = TRACKD__V1__BATCH__INIT;
	batch.has_session_id = batch.has_seq = true;
	batch.session_id.data = session;
	batch.session_id.len = sizeof session;
	batch.seq = 1;
	batch.n_records = 2;
	batch.records = records;
	Trackd__V1__LogEntry e = TRACKD__V1__LOG_ENTRY__INIT;
	e.has_peer_uid = e.has_peer_gid = e.has_peer_pid = e.has_recv_time_us = true;
	e.peer_uid = OWNER;
	e.peer_gid = OWNER;
	e.peer_pid = getpid();
	e.recv_time_us = start.start_time_us;
	e.batch = &batch;
	size_t len = trackd__v1__log_entry__get_packed_size(&e);
	uint8_t *buf = malloc(len);
	trackd__v1__log_entry__pack(&e, buf);
	CHECK_EQ(txlog_append(log, buf, len, NULL), 0);
	CHECK_EQ(txlog_sync(log), 0);
	free(buf);
}

struct answer {
	int code;
	Trackd__V1__RunFileChunk *chunk;
	char err[512];
};

static struct answer ask_capped(local_sink *s, const char *name, uint64_t offset, uint64_t length,
                                uint32_t uid, bool admin, size_t max_bytes)
{
	struct answer a = {0};
	Trackd__V1__RunFileReadRequest q = TRACKD__V1__RUN_FILE_READ_REQUEST__INIT;
	q.run = "r1";
	q.name = (char *)name;
	q.has_offset = q.has_length = true;
	q.offset = offset;
	q.length = length;
	a.code =
	    local_sink_query_run_file(s, &q, uid, admin, max_bytes, &a.chunk, a.err, sizeof a.err);
	return a;
}

static struct answer ask(local_sink *s, const char *name, uint64_t offset, uint64_t length,
                         uint32_t uid, bool admin)
{
	return ask_capped(s, name, offset, length, uid, admin, 64u << 20);
}

static void answer_free(struct answer *a)
{
	if (a->chunk)
		trackd__v1__run_file_chunk__free_unpacked(a->chunk, NULL);
	a->chunk = NULL;
}

int main(void)
{
	snprintf(root, sizeof root, "/tmp/run_file_query_test.XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	char logdir[300];
	snprintf(logdir, sizeof logdir, "%s/log", root);
	const uint64_t max = TRACKD_RUN_FILE_READ_MAX;
	const size_t size = 2 * (size_t)max + 3;
	uint8_t *content = malloc(size);
	for (size_t i = 0; i < size; i++)
		content[i] = (uint8_t)(i * 13 + (i >> 9));
	uint8_t digest[32];
	blobs_sha256(content, size, digest);

	blobs *b = NULL;
	struct blobs_options bo = {
	    .state_dir = root, .max_file_bytes = 1u << 30, .max_run_bytes = 1u << 30};
	CHECK_EQ(blobs_open(&bo, &b), 0);
	struct blobs_put_result res;
	char err[256];
	CHECK_EQ(blobs_put(b, OWNER, "r1", digest, size, 0, content, size, UINT64_MAX, &res, err,
	                   sizeof err),
	         0);
	CHECK(res.complete, "blob stored");
	txlog *log = NULL;
	struct txlog_options to = {.dir = logdir,
	                           .fsync = TXLOG_FSYNC_NEVER,
	                           .segment_bytes = 1u << 20,
	                           .max_record_bytes = 1u << 20};
	CHECK_EQ(txlog_open(&to, &log), 0);
	append_run(log, digest, size);
	local_sink *s = NULL;
	struct local_sink_options so = {.state_dir = root,
	                                .log = log,
	                                .max_record_bytes = 1u << 20,
	                                .blobs = b,
	                                .submit = no_submit};
	CHECK_EQ(local_sink_start(&so, &s), 0);
	local_sink_catch_up(s, 10000);

	/* The owner: the first piece, with the file's identity. */
	struct answer a = ask(s, "weights/big.bin", 0, 0, OWNER, false);
	CHECK_EQ(a.code, 0, "%s", a.err);
	if (a.chunk) {
		CHECK_EQ(a.chunk->data.len, max);
		CHECK(memcmp(a.chunk->data.data, content, max) == 0, "first piece");
		CHECK_EQ(a.chunk->size, size);
		CHECK(a.chunk->run &&
		          strcmp(strchr(a.chunk->run, '/') ? strchr(a.chunk->run, '/') : "",
		                 "/p/r1") == 0,
		      "%s", a.chunk->run);
		CHECK_STR_EQ(a.chunk->kind, "file");
		char hex[65];
		files_hex_digest(digest, hex);
		CHECK_STR_EQ(a.chunk->sha256, hex);
		CHECK(!a.chunk->eof);
	}
	answer_free(&a);
	/* Another uid: refused, nothing of the file in the answer; an admin reads. */
	a = ask(s, "weights/big.bin", 0, 16, OTHER, false);
	CHECK_EQ(a.code, TRACKD__V1__ERROR_CODE__ERROR_PERMISSION_DENIED);
	CHECK(a.chunk == NULL);
	answer_free(&a);
	a = ask(s, "no/such/file", 0, 16, OTHER, false);
	CHECK_EQ(a.code, TRACKD__V1__ERROR_CODE__ERROR_PERMISSION_DENIED,
	         "no listing for another uid either");
	answer_free(&a);
	a = ask(s, "weights/big.bin", 0, 16, OTHER, true);
	CHECK_EQ(a.code, 0, "%s", a.err);
	answer_free(&a);
	/* Length at the limit's neighbours. */
	for (uint64_t n = max - 1; n <= max + 1; n++) {
		a = ask(s, "weights/big.bin", 2, n, OWNER, false);
		if (n <= max) {
			CHECK_EQ(a.code, 0, "%s", a.err);
			CHECK(a.chunk && a.chunk->data.len == n &&
			          memcmp(a.chunk->data.data, content + 2, n) == 0,
			      "piece of %llu", (unsigned long long)n);
		} else {
			CHECK_EQ(a.code, TRACKD__V1__ERROR_CODE__ERROR_INVALID);
			CHECK(strstr(a.err, "over the most") != NULL, "%s", a.err);
		}
		answer_free(&a);
	}
	/* Offset at the size's neighbours: the last byte (eof), nothing (eof), refused. */
	a = ask(s, "weights/big.bin", size - 1, 0, OWNER, false);
	CHECK_EQ(a.code, 0, "%s", a.err);
	CHECK(a.chunk && a.chunk->data.len == 1 && a.chunk->eof);
	answer_free(&a);
	a = ask(s, "weights/big.bin", size, 0, OWNER, false);
	CHECK_EQ(a.code, 0, "%s", a.err);
	CHECK(a.chunk && a.chunk->data.len == 0 && a.chunk->eof);
	answer_free(&a);
	a = ask(s, "weights/big.bin", size + 1, 0, OWNER, false);
	CHECK_EQ(a.code, TRACKD__V1__ERROR_CODE__ERROR_INVALID);
	answer_free(&a);
	/* Replies capped below a piece (a small limits.max_message_bytes): a
	 * shorter piece that fits, never a refusal; still the right bytes. */
	const size_t cap = 64u << 10;
	a = ask_capped(s, "weights/big.bin", 5, max, OWNER, false, cap);
	CHECK_EQ(a.code, 0, "%s", a.err);
	CHECK(a.chunk && a.chunk->data.len > 0 && a.chunk->data.len < cap &&
	          trackd__v1__run_file_chunk__get_packed_size(a.chunk) <= cap &&
	          memcmp(a.chunk->data.data, content + 5, a.chunk->data.len) == 0,
	      "capped piece");
	answer_free(&a);
	a = ask_capped(s, "weights/big.bin", 5, 100, OWNER, false, cap);
	CHECK(a.code == 0 && a.chunk && a.chunk->data.len == 100, "a small piece as asked");
	answer_free(&a);
	/* Names: out of files/ refused; not listed (files.jsonl is in the run
	 * dir, not a run file) not found. */
	const char *bad[] = {"../files.jsonl", "/etc/passwd", "weights/../../files.jsonl", ".."};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		a = ask(s, bad[i], 0, 0, OWNER, false);
		CHECK_EQ(a.code, TRACKD__V1__ERROR_CODE__ERROR_INVALID, "%s", bad[i]);
		answer_free(&a);
	}
	a = ask(s, "files.jsonl", 0, 0, OWNER, false);
	CHECK_EQ(a.code, TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND);
	answer_free(&a);
	/* The run dir's copy replaced by other bytes: refused as corrupt. */
	struct local_run_info info;
	CHECK_EQ(local_sink_locate(s, "r1", OWNER, false, &info, err, sizeof err), 0);
	char path[4400];
	snprintf(path, sizeof path, "%s/files/weights/big.bin", info.dir);
	CHECK_EQ(unlink(path), 0);
	content[7] ^= 1;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, content, size) == (ssize_t)size);
	close(fd);
	a = ask(s, "weights/big.bin", 0, 16, OWNER, false);
	CHECK_EQ(a.code, TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE);
	CHECK(a.chunk == NULL && strstr(a.err, "corrupt") != NULL, "%s", a.err);
	answer_free(&a);

	local_sink_close(s);
	local_sink_stop(s);
	local_sink_free(s);
	txlog_close(log);
	blobs_free(b);
	free(content);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
	return CHECK_SUMMARY("run_file_query_test");
}
