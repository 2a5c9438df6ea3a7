/*
 * spool_file.c — the spool's file format and this process's spool file
 * (spool_file.h: the format, the locking and the delivery rules).
 *
 * Spilling and the sender's reads are described in run.h; everything
 * marked _locked runs with the run's mu held.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <nng/nng.h>

#include "spool_file.h"
#include "crc32c.h"
#include "error.h"
#include "fs.h"
#include "hash.h"
#include "le.h"
#include "paths.h"
#include "run.h"
#include "varint.h"

/* Largest Request a frame may hold: what the sender could have built. */
#define SPOOL_MAX_FRAME (TDI_MAX_BATCH_RECORD_BYTES + TDI_ENVELOPE_MAX)

/* Messages may be cut to fit; they are for people. */
__attribute__((format(printf, 2, 3))) static void spool_error(struct tdi_spool *sp, const char *fmt,
                                                              ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sp->error, sizeof(sp->error), fmt, ap);
	va_end(ap);
}

/* ---- paths ---------------------------------------------------------------- */

int tdi_spool_default_dir(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	struct passwd pw, *res = NULL;
	char pwbuf[1024];
	int n;

	if (xdg != NULL && xdg[0] == '/') {
		n = snprintf(buf, len, "%s/trackd/spool", xdg);
	} else {
		if ((home == NULL || home[0] != '/') &&
		    getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res != NULL)
			home = res->pw_dir;
		if (home == NULL || home[0] != '/')
			return tdi_fail(TD_ERR_INVALID,
			                "no spool dir: neither XDG_STATE_HOME nor a "
			                "home directory is known");
		n = snprintf(buf, len, "%s/.local/state/trackd/spool", home);
	}
	if (n < 0 || (size_t)n >= len)
		return tdi_fail(TD_ERR_INVALID, "spool dir path longer than %zu bytes", len - 1);
	return TD_OK;
}

int tdi_spool_agent_dir(const char *base, const char *url, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%016llx", base, (unsigned long long)hash_fnv1a64_str(url));
	if (n < 0 || (size_t)n >= len)
		return tdi_fail(TD_ERR_INVALID, "spool dir path longer than %zu bytes", len - 1);
	return TD_OK;
}

int tdi_spool_init(struct td_run *run, const char *dir, size_t max_bytes)
{
	struct tdi_spool *sp = &run->spool;
	int rc;

	sp->fd = -1;
	sp->max_bytes = max_bytes ? max_bytes : TDI_DEFAULT_MAX_SPOOL_BYTES;
	char base[sizeof(sp->dir)];

	if (dir != NULL && dir[0] == '\0')
		return TD_OK; /* disabled */
	if (dir == NULL) {
		if (tdi_spool_default_dir(base, sizeof(base)) != TD_OK)
			return TD_OK; /* no home: run without a spool, as if disabled */
	} else if (snprintf(base, sizeof(base), "%s", dir) >= (int)sizeof(base)) {
		return tdi_fail(TD_ERR_INVALID, "td_init: spool_dir longer than %zu bytes",
		                sizeof(base) - 1);
	}
	if ((rc = tdi_spool_agent_dir(base, run->url, sp->dir, sizeof(sp->dir))) != TD_OK)
		return rc;
	char hex[2 * TRACKD_SESSION_ID_BYTES + 1];
	for (size_t i = 0; i < TRACKD_SESSION_ID_BYTES; i++)
		snprintf(hex + 2 * i, 3, "%02x", run->session_id[i]);
	if (snprintf(sp->path, sizeof(sp->path), "%s/%s%s", sp->dir, hex, TDI_SPOOL_SUFFIX) >=
	    (int)sizeof(sp->path))
		return tdi_fail(TD_ERR_INVALID, "td_init: spool_dir too long");
	sp->enabled = true;
	return TD_OK;
}

/* Creates and locks this process's spool file. The temporary name keeps a
 * replaying process from taking the file in the moment between creating it
 * and locking it. */
static int spool_open_locked(struct tdi_spool *sp)
{
	char tmp[sizeof(sp->path) + 8];
	int fd;

	if (mkdir_parents(sp->dir, 0700) != 0) {
		spool_error(sp, "cannot create %s: %s", sp->dir, strerror(errno));
		return TD_ERR_FULL;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", sp->path);
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		spool_error(sp, "cannot create %s: %s", tmp, strerror(errno));
		return TD_ERR_FULL;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0 || rename(tmp, sp->path) != 0) {
		spool_error(sp, "cannot set up %s: %s", sp->path, strerror(errno));
		unlink(tmp);
		close(fd);
		return TD_ERR_FULL;
	}
	sp->fd = fd;
	sp->read_off = sp->write_off = 0;
	return TD_OK;
}

int tdi_spool_spill_locked(struct td_run *run)
{
	struct tdi_spool *sp = &run->spool;

	if (!sp->enabled)
		return TD_ERR_FULL;
	/* The sender is copying the head batch: it is done in microseconds. */
	while (run->pinned != NULL)
		pthread_cond_wait(&run->unpinned, &run->mu);
	if (tdi_buffer_seal_locked(run) != TD_OK) {
		spool_error(sp, "out of memory sealing a batch");
		return TD_ERR_FULL;
	}
	if (run->head == NULL)
		return TD_OK;
	if (sp->fd < 0 && spool_open_locked(sp) != TD_OK)
		return TD_ERR_FULL;

	/* Write every batch that fits under the spool's bound, sync once, and
	 * only then let the batches go: until the sync they are the only copy. */
	uint64_t start = sp->write_off, off = start;
	size_t n_written = 0;
	for (struct tdi_batch *b = run->head; b != NULL; b = b->next) {
		uint8_t envelope[TDI_ENVELOPE_MAX];
		uint8_t header[TDI_SPOOL_FRAME_HEADER];
		size_t env_len = tdi_envelope_put(envelope, run->session_id, b->seq, b->len);
		uint64_t frame = TDI_SPOOL_FRAME_HEADER + env_len + b->len;

		if (off + frame > sp->max_bytes) {
			spool_error(sp, "spool file %s reached its bound of %llu bytes", sp->path,
			            (unsigned long long)sp->max_bytes);
			break;
		}
		put_le32(header, (uint32_t)(env_len + b->len));
		put_le32(header + 4,
		         crc32c_update(crc32c_update(0, envelope, env_len), b->data, b->len));
		struct iovec iov[3] = {
		    {header, sizeof(header)}, {envelope, env_len}, {b->data, b->len}};
		if (fs_pwritev_all(sp->fd, iov, 3, off) != 0) {
			spool_error(sp, "cannot write %s: %s", sp->path, strerror(errno));
			n_written = 0;
			break;
		}
		off += frame;
		n_written++;
	}
	if (n_written > 0 && fdatasync(sp->fd) != 0) {
		spool_error(sp, "cannot sync %s: %s", sp->path, strerror(errno));
		n_written = 0;
	}
	if (n_written == 0) {
		/* Never leave bytes behind that the bookkeeping does not know (a
		 * replayer would take them for a damaged frame). If even this
		 * fails, the next spill writes over them from write_off. */
		(void)!ftruncate(sp->fd, (off_t)start);
		return TD_ERR_FULL;
	}

	for (size_t i = 0; i < n_written; i++) {
		struct tdi_batch *b = run->head;
		uint8_t envelope[TDI_ENVELOPE_MAX];
		uint64_t frame = TDI_SPOOL_FRAME_HEADER +
		                 tdi_envelope_put(envelope, run->session_id, b->seq, b->len) +
		                 b->len;
		if (sp->pending_batches == 0) {
			sp->first_frame_len = frame;
			sp->first_frame_records = b->n_records;
		}
		sp->pending_batches++;
		sp->pending_records += b->n_records;
		sp->records_written += b->n_records;
		/* Leaves memory as if acknowledged, without counting it so. */
		uint64_t acked = run->records_acked;
		tdi_buffer_release_head_locked(run, true);
		run->records_acked = acked;
	}
	sp->write_off = off;
	return run->head == NULL ? TD_OK : TD_ERR_FULL;
}

/* Skips one field's payload of wire type wt; false if malformed. */
static bool skip_field(const uint8_t **p, const uint8_t *end, unsigned wt, uint64_t *len_out)
{
	uint64_t v;

	switch (wt) {
	case 0: return varint_get(p, end, &v, VARINT_MAX_BYTES);
	case 1:
		if (end - *p < 8)
			return false;
		*p += 8;
		return true;
	case 2:
		if (!varint_get(p, end, &v, VARINT_MAX_BYTES) || v > (uint64_t)(end - *p))
			return false;
		if (len_out)
			*len_out = v;
		*p += v;
		return true;
	case 5:
		if (end - *p < 4)
			return false;
		*p += 4;
		return true;
	default: return false;
	}
}

/* From a spooled Request: its batch's seq and number of records. */
static bool request_info(const uint8_t *req, size_t len, uint64_t *seq, uint32_t *n_records)
{
	const uint8_t *p = req, *end = req + len;
	const uint8_t *batch = NULL;
	uint64_t key, blen = 0;

	while (p < end) {
		if (!varint_get(&p, end, &key, VARINT_MAX_BYTES))
			return false;
		uint64_t flen = 0;
		if (!skip_field(&p, end, (unsigned)(key & 7), &flen))
			return false;
		if (key == WIRE_KEY(REQUEST, BATCH)) {
			batch = p - flen;
			blen = flen;
		}
	}
	if (batch == NULL)
		return false;
	p = batch;
	end = batch + blen;
	bool have_seq = false;
	*n_records = 0;
	while (p < end) {
		if (!varint_get(&p, end, &key, VARINT_MAX_BYTES))
			return false;
		if (key == WIRE_KEY(BATCH, SEQ)) {
			if (!varint_get(&p, end, seq, VARINT_MAX_BYTES))
				return false;
			have_seq = true;
			continue;
		}
		if (!skip_field(&p, end, (unsigned)(key & 7), NULL))
			return false;
		if (key == WIRE_KEY(BATCH, RECORDS))
			(*n_records)++;
	}
	return have_seq && *seq > 0;
}

static bool read_exact(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
	size_t have = 0;

	while (have < len) {
		ssize_t r = pread(fd, (char *)buf + have, len - have, (off_t)(off + have));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (r == 0)
			break;
		have += (size_t)r;
	}
	if (got)
		*got = have;
	return have == len;
}

/* Reads the frame at off into a new message. */
enum tdi_frame_status tdi_spool_read_frame(int fd, uint64_t off, nng_msg **msg, uint64_t *seq,
                                           uint32_t *n_records, uint64_t *frame_len)
{
	uint8_t header[TDI_SPOOL_FRAME_HEADER];
	size_t got;

	if (!read_exact(fd, header, sizeof(header), off, &got))
		return TDI_FRAME_END;
	uint32_t len = get_le32(header), crc = get_le32(header + 4);
	if (len == 0 || len > SPOOL_MAX_FRAME)
		return TDI_FRAME_DAMAGED;
	if (nng_msg_alloc(msg, len) != 0)
		return TDI_FRAME_NOMEM;
	uint8_t *body = nng_msg_body(*msg);
	if (!read_exact(fd, body, len, off + sizeof(header), &got)) {
		nng_msg_free(*msg);
		return TDI_FRAME_END; /* torn: the writer died mid-append */
	}
	if (crc32c_update(0, body, len) != crc || !request_info(body, len, seq, n_records)) {
		nng_msg_free(*msg);
		return TDI_FRAME_DAMAGED;
	}
	*frame_len = TDI_SPOOL_FRAME_HEADER + len;
	return TDI_FRAME_OK;
}

int tdi_spool_lock_orphan(const char *dir, const char *name, char *path, size_t len)
{
	size_t n = strlen(name), k = strlen(TDI_SPOOL_SUFFIX);
	struct stat a, b;

	if (name[0] == '.' || n <= k || strcmp(name + n - k, TDI_SPOOL_SUFFIX) != 0)
		return -1;
	if (snprintf(path, len, "%s/%s", dir, name) >= (int)len)
		return -1;
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	/* The lock fails while the owner lives. After it, make sure the file
	 * is still the one at that name (another replayer may have finished
	 * and deleted it in between). */
	if (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &a) != 0 || stat(path, &b) != 0 ||
	    a.st_ino != b.st_ino || a.st_dev != b.st_dev || !S_ISREG(a.st_mode)) {
		close(fd);
		return -1;
	}
	return fd;
}

int tdi_spool_read_head(struct td_run *run, uint64_t off, nng_msg **req, uint64_t *seq,
                        uint32_t *n_records, uint64_t *frame_len)
{
	switch (tdi_spool_read_frame(run->spool.fd, off, req, seq, n_records, frame_len)) {
	case TDI_FRAME_OK: return TD_OK;
	case TDI_FRAME_NOMEM: return TD_ERR_NOMEM;
	default: return TD_ERR_INVALID;
	}
}

void tdi_spool_pop_locked(struct td_run *run, uint64_t frame_len, uint32_t n_records, bool acked)
{
	struct tdi_spool *sp = &run->spool;

	sp->read_off += frame_len;
	sp->pending_batches--;
	sp->pending_records -= n_records;
	if (acked)
		run->records_acked += n_records;
	else
		run->records_rejected += n_records;
	if (sp->pending_batches == 0) {
		/* All delivered: start the file over, so a long run with short
		 * outages does not grow it. No sync: if the truncation is lost
		 * the frames are replayed, and the agent drops them as dups. */
		if (ftruncate(sp->fd, 0) == 0)
			sp->read_off = sp->write_off = 0;
		sp->pending_records = 0;
	}
}

void tdi_spool_discard_locked(struct td_run *run, const char *why)
{
	struct tdi_spool *sp = &run->spool;

	run->records_rejected += sp->pending_records;
	spool_error(sp, "spool file %s is damaged (%s); %llu records in it lost", sp->path, why,
	            (unsigned long long)sp->pending_records);
	memcpy(run->agent_error, sp->error, sizeof(run->agent_error));
	/* Every seq before the oldest batch in memory was in the spool. */
	run->acked_through = (run->head ? run->head->seq : run->next_seq) - 1;
	sp->pending_batches = sp->pending_records = 0;
	if (ftruncate(sp->fd, 0) == 0)
		sp->read_off = sp->write_off = 0;
	pthread_cond_broadcast(&run->drained);
}

void tdi_spool_close(struct td_run *run)
{
	struct tdi_spool *sp = &run->spool;

	if (sp->fd < 0)
		return;
	/* Unlink while still holding the lock, so no replayer can pick up a
	 * file that is about to disappear. */
	if (sp->pending_batches == 0)
		unlink(sp->path);
	close(sp->fd);
	sp->fd = -1;
}
