/*
 * blob_queue.c — file content waiting for the agent (blob_queue.h).
 */
#include "blob_queue.h"

#include "error.h"
#include "fs.h"
#include "paths.h"
#include "run.h"
#include "run_files.h"
#include "transport.h"

#include <errno.h>
#include <openssl/evp.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Room in a request for the envelope, run id and digest around a piece. */
#define TDI_BLOB_ENVELOPE_ROOM 1024

/* Pieces a spool copy is read and written in. */
#define TDI_BLOB_COPY_BYTES ((size_t)1 << 20)

static void append(struct td_run *run, struct tdi_blob *b)
{
	struct tdi_blob_queue *q = &run->blobs;
	if (q->tail)
		q->tail->next = b;
	else
		q->head = b;
	q->tail = b;
	pthread_cond_signal(&run->wake);
}

int tdi_blob_enqueue_locked(struct td_run *run, uint8_t *data, size_t len, const uint8_t digest[32])
{
	struct tdi_blob_queue *q = &run->blobs;
	for (struct tdi_blob *b = q->head; b; b = b->next)
		if (memcmp(b->digest, digest, 32) == 0) {
			free(data);
			return TD_OK;
		}
	if (len > run->max_buffer_bytes)
		return tdi_fail(TD_ERR_INVALID,
		                "a %zu-byte file is larger than the memory it may wait in "
		                "(max_buffer_bytes %zu): save it by path (td_save_path) or raise "
		                "max_buffer_bytes",
		                len, run->max_buffer_bytes);
	if (q->bytes + len > run->max_buffer_bytes)
		return tdi_fail(TD_ERR_FULL,
		                "file queue full: %zu bytes waiting for the agent, a %zu-byte file "
		                "does not fit (max_buffer_bytes %zu)",
		                q->bytes, len, run->max_buffer_bytes);
	struct tdi_blob *b = calloc(1, sizeof *b);
	if (!b)
		return tdi_fail(TD_ERR_NOMEM, "out of memory queueing a file");
	memcpy(b->digest, digest, 32);
	b->data = data;
	b->fd = -1;
	b->len = len;
	append(run, b);
	q->bytes += len;
	return TD_OK;
}

int tdi_blob_copy_to_spool(struct td_run *run, int src, uint64_t *len, uint8_t digest[32],
                           int *fd_out)
{
	*fd_out = -1;
	*len = 0;
	if (!run->spool.enabled || !run->spool.dir[0])
		return 1;
	char dir[sizeof run->spool.dir + 16];
	snprintf(dir, sizeof dir, "%s/%s", run->spool.dir, TDI_BLOB_SPOOL_SUBDIR);
	if (mkdir_parents(dir, 0700) != 0)
		return 1;
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return 1; /* a file system without unnamed files: in memory */
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *piece = malloc(TDI_BLOB_COPY_BYTES);
	int rc = ctx && piece && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ? TD_OK : TD_ERR_NOMEM;
	uint64_t off = 0;
	while (rc == TD_OK) {
		ssize_t n = read(src, piece, TDI_BLOB_COPY_BYTES);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc =
			    tdi_fail(TD_ERR_TRANSPORT, "cannot read the file: %s", strerror(errno));
			break;
		}
		if (n == 0)
			break;
		if (fs_write_all(fd, piece, (size_t)n) != 0) {
			rc = tdi_fail(TD_ERR_TRANSPORT,
			              "cannot copy the file into the spool dir %s: %s", dir,
			              strerror(errno));
			break;
		}
		EVP_DigestUpdate(ctx, piece, (size_t)n);
		off += (uint64_t)n;
	}
	unsigned int dn = 32;
	if (rc == TD_OK && !EVP_DigestFinal_ex(ctx, digest, &dn))
		rc = TD_ERR_NOMEM;
	EVP_MD_CTX_free(ctx);
	free(piece);
	if (rc != TD_OK) {
		close(fd);
		return rc == TD_ERR_NOMEM ? tdi_fail(rc, "out of memory copying a file") : rc;
	}
	*fd_out = fd;
	*len = off;
	return TD_OK;
}

int tdi_blob_spool_room_locked(struct td_run *run, uint64_t len)
{
	struct tdi_blob_queue *q = &run->blobs;
	if (len > run->spool.max_bytes)
		return tdi_fail(TD_ERR_INVALID,
		                "a %llu-byte file is larger than the spool may hold "
		                "(max_spool_bytes %llu)",
		                (unsigned long long)len, (unsigned long long)run->spool.max_bytes);
	if (q->disk_bytes + len > run->spool.max_bytes)
		return tdi_fail(
		    TD_ERR_FULL,
		    "file queue full: %llu bytes in the spool dir waiting for the agent, "
		    "a %llu-byte file does not fit (max_spool_bytes %llu)",
		    (unsigned long long)q->disk_bytes, (unsigned long long)len,
		    (unsigned long long)run->spool.max_bytes);
	return TD_OK;
}

int tdi_blob_enqueue_fd_locked(struct td_run *run, int fd, uint64_t len, const uint8_t digest[32])
{
	struct tdi_blob_queue *q = &run->blobs;
	for (struct tdi_blob *b = q->head; b; b = b->next)
		if (memcmp(b->digest, digest, 32) == 0) {
			close(fd);
			return TD_OK;
		}
	int rc = tdi_blob_spool_room_locked(run, len);
	if (rc != TD_OK)
		return rc;
	struct tdi_blob *b = calloc(1, sizeof *b);
	if (!b)
		return tdi_fail(TD_ERR_NOMEM, "out of memory queueing a file");
	memcpy(b->digest, digest, 32);
	b->fd = fd;
	b->len = (size_t)len;
	append(run, b);
	q->disk_bytes += len;
	return TD_OK;
}

int tdi_blob_enqueue_file_locked(struct td_run *run, char *path, size_t len,
                                 const uint8_t digest[32])
{
	struct tdi_blob_queue *q = &run->blobs;
	for (struct tdi_blob *b = q->head; b; b = b->next)
		if (memcmp(b->digest, digest, 32) == 0) {
			free(path);
			return TD_OK;
		}
	struct tdi_blob *b = calloc(1, sizeof *b);
	if (!b)
		return tdi_fail(TD_ERR_NOMEM, "out of memory queueing a file");
	memcpy(b->digest, digest, 32);
	b->path = path;
	b->fd = -1;
	b->len = len;
	append(run, b);
	return TD_OK;
}

static void pop(struct td_run *run)
{
	struct tdi_blob_queue *q = &run->blobs;
	struct tdi_blob *b = q->head;
	q->head = b->next;
	if (!q->head)
		q->tail = NULL;
	if (b->fd >= 0) {
		q->disk_bytes -= b->len;
		close(b->fd); /* unnamed: the copy goes with it */
	} else if (!b->path) {
		q->bytes -= b->len;
	}
	free(b->path);
	free(b->data);
	free(b);
	pthread_cond_broadcast(&run->drained);
}

size_t tdi_blob_queue_clear(struct td_run *run)
{
	size_t n = 0;
	while (run->blobs.head) {
		pop(run);
		n++;
	}
	return n;
}

/* The piece size: what the agent's message limit leaves room for. */
static size_t piece_bytes(uint64_t message_bytes)
{
	size_t piece = TRACKD_BLOB_CHUNK_BYTES;
	if (message_bytes > TDI_BLOB_ENVELOPE_ROOM &&
	    message_bytes - TDI_BLOB_ENVELOPE_ROOM < piece)
		piece = (size_t)(message_bytes - TDI_BLOB_ENVELOPE_ROOM);
	return piece;
}

int tdi_blob_exchange(nng_socket sock, const char *url, struct tdi_blob_send *t,
                      tdi_limits_fn *learn, void *learn_arg, enum tdi_reach *reach, char *why,
                      size_t why_len)
{
	Trackd__V1__Request req = TRACKD__V1__REQUEST__INIT;
	req.has_protocol_version = true;
	req.protocol_version = TRACKD_PROTOCOL_VERSION;
	Trackd__V1__BlobQuery bq = TRACKD__V1__BLOB_QUERY__INIT;
	Trackd__V1__BlobChunk bc = TRACKD__V1__BLOB_CHUNK__INIT;
	ProtobufCBinaryData digest = {.len = 32, .data = t->digest};
	size_t n = 0;
	uint8_t *piece = NULL; /* a piece read from t->path or t->fd */
	if (!t->asked) {
		req.body_case = TRACKD__V1__REQUEST__BODY_BLOB_QUERY;
		req.blob_query = &bq;
		bq.run_id = (char *)t->run_id;
		bq.n_sha256 = 1;
		bq.sha256 = &digest;
	} else {
		req.body_case = TRACKD__V1__REQUEST__BODY_BLOB_CHUNK;
		req.blob_chunk = &bc;
		bc.run_id = (char *)t->run_id;
		bc.has_sha256 = true;
		bc.sha256 = digest;
		bc.has_size = bc.has_offset = true;
		bc.size = t->len;
		bc.offset = t->offset;
		n = t->len - t->offset < t->piece ? t->len - t->offset : t->piece;
		bc.has_data = true;
		bc.data.len = n;
		if (t->data) {
			bc.data.data = (uint8_t *)t->data + t->offset;
		} else if (t->path) {
			/* The user's own file, read again: one that changed is not sent. */
			int fd = open(t->path, O_RDONLY | O_CLOEXEC);
			piece = malloc(n ? n : 1);
			int rc = fd >= 0 && piece ? fs_pread_all(fd, piece, n, t->offset) : -1;
			if (fd >= 0)
				close(fd);
			if (rc != 0) {
				snprintf(why, why_len, "%s",
				         !piece ? "out of memory reading a file"
				                : "the file is shorter than when it was added (it "
				                  "changed): not sent");
				bool refused = piece != NULL;
				free(piece);
				return refused ? TDI_BLOB_REFUSED : TDI_BLOB_RETRY;
			}
			bc.data.data = piece;
		} else if (!(piece = malloc(n ? n : 1)) ||
		           fs_pread_all(t->fd, piece, n, t->offset) != 0) {
			snprintf(why, why_len, "cannot read the file's copy in the spool dir: %s",
			         piece ? strerror(errno) : "out of memory");
			bool refused = piece != NULL;
			free(piece);
			return refused ? TDI_BLOB_REFUSED : TDI_BLOB_RETRY;
		} else {
			bc.data.data = piece;
		}
	}
	size_t len = trackd__v1__request__get_packed_size(&req);
	nng_msg *msg = NULL;
	*reach = TDI_NO_CONNECTION;
	if (nng_msg_alloc(&msg, len) != 0) {
		snprintf(why, why_len, "cannot allocate a %zu-byte request", len);
		free(piece);
		return TDI_BLOB_RETRY;
	}
	trackd__v1__request__pack(&req, nng_msg_body(msg));
	free(piece);
	Trackd__V1__Reply *reply = NULL;
	tdi_request(sock, url, msg, &reply, reach, why, why_len);
	if (!reply)
		return TDI_BLOB_RETRY;
	int out = TDI_BLOB_RETRY;
	if (reply->body_case == TRACKD__V1__REPLY__BODY_ERROR) {
		const Trackd__V1__Error *e = reply->error;
		snprintf(why, why_len, "%s", e->message ? e->message : "(no message)");
		out = e->retryable ? TDI_BLOB_RETRY : TDI_BLOB_REFUSED;
	} else if (reply->body_case == TRACKD__V1__REPLY__BODY_BLOB) {
		const Trackd__V1__BlobReply *br = reply->blob;
		if (br->limits && learn)
			learn(learn_arg, br->limits);
		if (br->limits && br->limits->has_max_message_bytes)
			t->piece = piece_bytes(br->limits->max_message_bytes);
		if (!t->asked) {
			t->asked = true;
			t->offset = 0;
			out = br->n_missing == 0 ? TDI_BLOB_HELD : TDI_BLOB_MOVED;
		} else if (br->complete) {
			t->bytes_sent += n;
			out = TDI_BLOB_STORED;
		} else {
			if (br->have == t->offset + n)
				t->bytes_sent += n;
			/* Where the agent has got to: on from there (0: anew). */
			t->offset = br->have <= t->len ? br->have : 0;
			out = TDI_BLOB_MOVED;
		}
	} else {
		snprintf(why, why_len, "unexpected reply (body %d) to a blob request",
		         (int)reply->body_case);
	}
	trackd__v1__reply__free_unpacked(reply, NULL);
	return out;
}

int tdi_blob_step_locked(struct td_run *run)
{
	struct tdi_blob *b = run->blobs.head;
	struct tdi_limits lim;
	tdi_limits_load(run, &lim);
	struct tdi_blob_send t = {.run_id = run->run_id,
	                          .data = b->data,
	                          .fd = b->fd,
	                          .len = b->len,
	                          .path = b->path,
	                          .piece = piece_bytes(lim.message_bytes),
	                          .asked = b->asked,
	                          .offset = b->offset};
	memcpy(t.digest, b->digest, 32);
	/* The blob stays at the head while the lock is let go: only this thread
	 * pops it, and a recording call only appends. */
	pthread_mutex_unlock(&run->mu);
	enum tdi_reach reach;
	char why[256];
	(void)nng_socket_set_ms(run->sock, NNG_OPT_RECVTIMEO, run->reply_timeout_ms);
	int out = tdi_blob_exchange(run->sock, run->url, &t, tdi_limits_learn_hook, run, &reach,
	                            why, sizeof why);
	pthread_mutex_lock(&run->mu);
	run->agent_ok = reach == TDI_ANSWERED;
	run->no_connection = reach == TDI_NO_CONNECTION;
	b->asked = t.asked;
	b->offset = t.offset;
	run->blobs.bytes_sent += t.bytes_sent;
	switch (out) {
	case TDI_BLOB_RETRY:
		if (!run->stopping)
			snprintf(run->transport_error, sizeof run->transport_error, "%s", why);
		return 1;
	case TDI_BLOB_REFUSED:
		snprintf(run->agent_error, sizeof run->agent_error, "file refused: %.200s", why);
		/* Counted as a rejected record: td_finish reports it. */
		run->blobs.blobs_dropped++;
		run->records_rejected++;
		pop(run);
		return 0;
	case TDI_BLOB_HELD:
		run->blobs.blobs_skipped++;
		pop(run);
		return 0;
	case TDI_BLOB_STORED:
		run->blobs.blobs_sent++;
		pop(run);
		return 0;
	default: return 0;
	}
}

/* ---- files at finish: into the spool dir ----------------------------------- */

/* The first len bytes of the file `path` onto `to`. */
static int copy_file(const char *path, int to, size_t len)
{
	int from = open(path, O_RDONLY | O_CLOEXEC);
	if (from < 0)
		return -1;
	uint8_t buf[1 << 16];
	size_t done = 0;
	while (done < len) {
		size_t want = len - done < sizeof buf ? len - done : sizeof buf;
		ssize_t k = pread(from, buf, want, (off_t)done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0 || fs_write_all(to, buf, (size_t)k) != 0)
			break;
		done += (size_t)k;
	}
	close(from);
	return done == len ? 0 : -1;
}

int tdi_blob_spool_locked(struct td_run *run, size_t *written)
{
	*written = 0;
	if (!run->spool.enabled || !run->spool.dir[0] || !run->blobs.head)
		return TD_OK;
	char dir[700];
	snprintf(dir, sizeof dir, "%s/%s", run->spool.dir, TDI_BLOB_SPOOL_SUBDIR);
	if (mkdir_parents(dir, 0700) != 0)
		return TD_ERR_TRANSPORT;
	int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir_fd < 0)
		return TD_ERR_TRANSPORT;
	int rc = TD_OK;
	while (run->blobs.head && rc == TD_OK) {
		struct tdi_blob *b = run->blobs.head;
		char hex[65], name[200], tmp[220];
		files_hex_digest(b->digest, hex);
		snprintf(name, sizeof name, "%s.%s%s", run->run_id, hex, TDI_BLOB_SPOOL_SUFFIX);
		snprintf(tmp, sizeof tmp, ".%s.tmp", name);
		bool ok;
		if (b->fd >= 0) {
			/* The unnamed copy gets a name (through /proc/self/fd: linkat
			 * with AT_EMPTY_PATH needs a capability). */
			char self[64];
			snprintf(self, sizeof self, "/proc/self/fd/%d", b->fd);
			unlinkat(dir_fd, tmp, 0);
			ok = fdatasync(b->fd) == 0 &&
			     linkat(AT_FDCWD, self, dir_fd, tmp, AT_SYMLINK_FOLLOW) == 0;
		} else {
			int fd =
			    openat(dir_fd, tmp,
			           O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
			ok = fd >= 0 &&
			     (b->path ? copy_file(b->path, fd, b->len)
			              : fs_write_all(fd, b->data, b->len)) == 0 &&
			     fdatasync(fd) == 0;
			if (fd >= 0)
				close(fd);
		}
		ok = ok && renameat(dir_fd, tmp, dir_fd, name) == 0;
		if (!ok) {
			unlinkat(dir_fd, tmp, 0);
			rc = TD_ERR_TRANSPORT;
			break;
		}
		pop(run);
		(*written)++;
	}
	if (*written)
		(void)fsync(dir_fd);
	close(dir_fd);
	return rc;
}
