/*
 * spool.c — batches on disk while the agent is away (ARCHITECTURE contract 2).
 *
 * File: <spool_dir>/<agent>/<session id in hex>.spool, one per process
 * (session), where <agent> is 16 hex digits of a hash of the agent's URL: a
 * spool holds records for the agent its process was talking to, and only a
 * client of that agent delivers it (a test agent on a temporary socket must
 * never receive the records of the user's real runs, nor the reverse). It is a
 * sequence of frames `u32 length | u32 CRC32C | Request bytes` (little-endian;
 * the Request is exactly what the sender would send: envelope with session id
 * and seq, then the records). Frames are appended in seq order and
 * fdatasync'd before the batches leave memory, so a spooled batch survives the
 * process. The owner holds an exclusive flock on the file for as long as it
 * lives (it is created under a temporary name, locked, then renamed, so no
 * other process ever sees it unlocked while its owner is alive).
 *
 * Delivery:
 *   - the owner's sender sends its spooled frames before the batches in memory
 *     (they are older) and empties the file whenever all of it is acknowledged;
 *   - td_finish deletes the file when nothing in it is unacknowledged, else
 *     leaves it (with the lock released by close);
 *   - any td_init replays the files it can lock (their owner is gone) in a
 *     background thread, and td_spool_flush does the same synchronously:
 *     frames are sent verbatim, in file order (= seq order), so the agent's
 *     (session, seq) dedupe makes a replay of already-delivered frames
 *     harmless; a file is deleted once every frame is acknowledged. A torn
 *     tail (a crash mid-append) is dropped; a complete frame with a bad CRC
 *     stops the replay and the file is renamed to *.damaged for a human.
 *
 * Spilling and the sender's reads are described in internal.h; everything
 * marked _locked runs with the run's mu held.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "crc32c.h"
#include "fs.h"
#include "hash.h"
#include "le.h"
#include "paths.h"
#include "varint.h"
#include "internal.h"

#define SPOOL_SUFFIX ".spool"
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

/* <base>/<16 hex digits of FNV-1a 64 of the agent URL> */
static int agent_dir(const char *base, const char *url, char *out, size_t len)
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
	if ((rc = agent_dir(base, run->url, sp->dir, sizeof(sp->dir))) != TD_OK)
		return rc;
	char hex[2 * TRACKD_SESSION_ID_BYTES + 1];
	for (size_t i = 0; i < TRACKD_SESSION_ID_BYTES; i++)
		snprintf(hex + 2 * i, 3, "%02x", run->session_id[i]);
	if (snprintf(sp->path, sizeof(sp->path), "%s/%s%s", sp->dir, hex, SPOOL_SUFFIX) >=
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

enum frame_status {
	FRAME_OK,
	FRAME_END,     /* no more frames (or a torn tail) */
	FRAME_DAMAGED, /* a complete frame that fails its check */
	FRAME_NOMEM,
};

/* Reads the frame at off into a new message. */
static enum frame_status read_frame(int fd, uint64_t off, nng_msg **msg, uint64_t *seq,
                                    uint32_t *n_records, uint64_t *frame_len)
{
	uint8_t header[TDI_SPOOL_FRAME_HEADER];
	size_t got;

	if (!read_exact(fd, header, sizeof(header), off, &got))
		return FRAME_END;
	uint32_t len = get_le32(header), crc = get_le32(header + 4);
	if (len == 0 || len > SPOOL_MAX_FRAME)
		return FRAME_DAMAGED;
	if (nng_msg_alloc(msg, len) != 0)
		return FRAME_NOMEM;
	uint8_t *body = nng_msg_body(*msg);
	if (!read_exact(fd, body, len, off + sizeof(header), &got)) {
		nng_msg_free(*msg);
		return FRAME_END; /* torn: the writer died mid-append */
	}
	if (crc32c_update(0, body, len) != crc || !request_info(body, len, seq, n_records)) {
		nng_msg_free(*msg);
		return FRAME_DAMAGED;
	}
	*frame_len = TDI_SPOOL_FRAME_HEADER + len;
	return FRAME_OK;
}

int tdi_spool_read_head(struct td_run *run, uint64_t off, nng_msg **req, uint64_t *seq,
                        uint32_t *n_records, uint64_t *frame_len)
{
	switch (read_frame(run->spool.fd, off, req, seq, n_records, frame_len)) {
	case FRAME_OK: return TD_OK;
	case FRAME_NOMEM: return TD_ERR_NOMEM;
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

/* ---- replay of other processes' files --------------------------------------- */

struct replay_ctx {
	nng_socket sock;
	nng_dialer dialer;
	unsigned unreachable; /* attempts in a row that found no connection */
	const char *url;
	int64_t deadline;   /* tdi_mono_ms */
	struct td_run *run; /* background replay: stop flag; NULL: td_spool_flush */
	uint64_t delivered, rejected;
	bool answered; /* the agent answered at least once */
	bool damaged;  /* a file was set aside as damaged */
	char why[256]; /* the last failure */
};

static bool replay_stopped(struct replay_ctx *c)
{
	if (tdi_mono_ms() >= c->deadline)
		return true;
	if (c->run == NULL)
		return false;
	pthread_mutex_lock(&c->run->mu);
	bool stop = c->run->replay.stop;
	pthread_mutex_unlock(&c->run->mu);
	return stop;
}

static void replay_pause(struct replay_ctx *c, uint32_t ms)
{
	int64_t until = tdi_mono_ms() + ms;

	if (until > c->deadline)
		until = c->deadline;
	if (c->run != NULL) {
		pthread_mutex_lock(&c->run->mu);
		if (!c->run->replay.stop)
			tdi_wait_until(&c->run->replay.cond, &c->run->mu, until);
		pthread_mutex_unlock(&c->run->mu);
		return;
	}
	int64_t left = until - tdi_mono_ms();
	if (left > 0) {
		struct timespec ts = {(time_t)(left / 1000), (long)(left % 1000) * 1000000};
		nanosleep(&ts, NULL);
	}
}

enum replay_result { REPLAY_DONE, REPLAY_STOPPED };

/* Sends every frame of one locked file in order; deletes the file when all
 * are acknowledged. Closes fd unless stopped. */
static enum replay_result replay_file(struct replay_ctx *c, int fd, const char *path)
{
	uint64_t off = 0;
	uint32_t backoff = 0;

	for (;;) {
		nng_msg *msg;
		uint64_t seq, frame_len;
		uint32_t n;

		if (replay_stopped(c))
			return REPLAY_STOPPED;
		enum frame_status st = read_frame(fd, off, &msg, &seq, &n, &frame_len);
		if (st == FRAME_NOMEM) {
			replay_pause(c, TDI_BACKOFF_MAX_MS);
			continue;
		}
		if (st == FRAME_END) {
			unlink(path);
			close(fd);
			return REPLAY_DONE;
		}
		if (st == FRAME_DAMAGED) {
			char damaged[PATH_MAX];
			snprintf(c->why, sizeof(c->why),
			         "%s: damaged frame at offset %llu; kept as .damaged", path,
			         (unsigned long long)off);
			snprintf(damaged, sizeof(damaged), "%s.damaged", path);
			rename(path, damaged);
			c->damaged = true;
			close(fd);
			return REPLAY_DONE;
		}
		enum tdi_reach reach;
		enum tdi_outcome out =
		    tdi_exchange(c->run, c->sock, c->url, msg, seq, &reach, c->why, sizeof(c->why));
		bool answered = reach == TDI_ANSWERED;
		c->answered |= answered;
		if (out == TDI_RETRY) {
			if (!answered && ++c->unreachable >= TDI_REDIAL_AFTER) {
				/* As the sender does (TDI_REDIAL_AFTER); a failure here
				 * (the socket closed by tdi_replay_stop) ends at the
				 * stop check. */
				c->unreachable = 0;
				nng_dialer_close(c->dialer);
				(void)tdi_dialer_start(c->sock, c->url, &c->dialer);
			}
			backoff = backoff ? backoff * 2 : TDI_BACKOFF_MIN_MS;
			if (backoff > TDI_BACKOFF_MAX_MS)
				backoff = TDI_BACKOFF_MAX_MS;
			replay_pause(c, backoff);
			continue;
		}
		backoff = 0;
		if (out == TDI_ACKED)
			c->delivered += n;
		else
			c->rejected += n;
		off += frame_len;
	}
}

/* Opens and locks a spool file whose owner is gone; -1 if it is not one. */
static int lock_orphan(const char *dir, const char *name, char *path, size_t len)
{
	size_t n = strlen(name), k = strlen(SPOOL_SUFFIX);
	struct stat a, b;

	if (name[0] == '.' || n <= k || strcmp(name + n - k, SPOOL_SUFFIX) != 0)
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

static int replay_socket(const char *url, nng_socket *sock, nng_dialer *dialer)
{
	int rv;

	if ((rv = nng_req0_open(sock)) != 0)
		return tdi_fail(TD_ERR_TRANSPORT, "cannot open a socket: %s", nng_strerror(rv));
	if ((rv = nng_socket_set_ms(*sock, NNG_OPT_SENDTIMEO, TDI_REPLY_TIMEOUT_MS)) != 0 ||
	    (rv = nng_socket_set_ms(*sock, NNG_OPT_RECVTIMEO, TDI_REPLY_TIMEOUT_MS)) != 0 ||
	    (rv = tdi_dialer_start(*sock, url, dialer)) != 0) {
		(void)nng_close_bounded(*sock, TDI_CLOSE_TIMEOUT_MS);
		return tdi_fail(TD_ERR_TRANSPORT, "agent address %s: %s", url, nng_strerror(rv));
	}
	return TD_OK;
}

static void *replay_main(void *arg)
{
	struct td_run *run = arg;
	struct tdi_replay *r = &run->replay;
	struct replay_ctx c = {.sock = r->sock,
	                       .dialer = r->dialer,
	                       .url = run->url,
	                       .deadline = INT64_MAX,
	                       .run = run};
	size_t i = 0;

	for (; i < r->n; i++) {
		if (replay_file(&c, r->fds[i], r->paths[i]) == REPLAY_STOPPED)
			break;
		r->fds[i] = -1;
	}
	/* Files not finished stay for the next client; closing unlocks them. */
	for (; i < r->n; i++) {
		close(r->fds[i]);
		r->fds[i] = -1;
	}
	pthread_mutex_lock(&run->mu);
	r->done = true;
	pthread_cond_broadcast(&run->drained);
	pthread_mutex_unlock(&run->mu);
	return NULL;
}

int tdi_replay_start(struct td_run *run)
{
	struct tdi_replay *r = &run->replay;
	char path[PATH_MAX];
	struct dirent *e;
	sigset_t all, old;
	int rv;

	r->done = true;
	if (!run->spool.enabled)
		return TD_OK;
	DIR *d = opendir(run->spool.dir);
	if (d == NULL)
		return TD_OK;
	while ((e = readdir(d)) != NULL && r->n < sizeof(r->fds) / sizeof(r->fds[0])) {
		int fd = lock_orphan(run->spool.dir, e->d_name, path, sizeof(path));
		if (fd < 0)
			continue;
		if ((r->paths[r->n] = strdup(path)) == NULL) {
			close(fd);
			continue;
		}
		r->fds[r->n++] = fd;
	}
	closedir(d);
	if (r->n == 0)
		return TD_OK;
	/* Oldest first is not knowable from names; directory order is fine:
	 * files are independent sessions. */
	if (replay_socket(run->url, &r->sock, &r->dialer) != TD_OK)
		goto fail;
	r->sock_open = true;
	r->done = false;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rv = pthread_create(&r->thread, NULL, replay_main, run);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0) {
		r->done = true;
		goto fail;
	}
	r->started = true;
	pthread_setname_np(r->thread, "trackd-replay");
	return TD_OK;
fail:
	/* Not fatal for the run: the files stay for the next client. */
	for (size_t i = 0; i < r->n; i++) {
		close(r->fds[i]);
		free(r->paths[i]);
	}
	r->n = 0;
	return TD_OK;
}

void tdi_replay_stop(struct td_run *run)
{
	struct tdi_replay *r = &run->replay;

	pthread_mutex_lock(&run->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&run->mu);
	if (r->sock_open) {
		(void)nng_close_bounded(r->sock,
		                        TDI_CLOSE_TIMEOUT_MS); /* cuts a send or receive short */
		r->sock_open = false;
	}
	if (r->started) {
		pthread_join(r->thread, NULL);
		r->started = false;
	}
	for (size_t i = 0; i < r->n; i++)
		free(r->paths[i]);
	r->n = 0;
}

/* The spool dir for the agent at socket_url in spool_dir (both as td_spool_flush
 * takes them). */
static int flush_dir(const char *socket_url, const char *spool_dir, char *url, size_t url_len,
                     char *dir, size_t dir_len)
{
	char base[512];
	int rc;

	if ((rc = tdi_resolve_url(socket_url, url, url_len)) != TD_OK)
		return rc;
	if (spool_dir != NULL && spool_dir[0] != '\0') {
		if (snprintf(base, sizeof(base), "%s", spool_dir) >= (int)sizeof(base))
			return tdi_fail(TD_ERR_INVALID, "spool dir too long");
	} else if ((rc = tdi_spool_default_dir(base, sizeof(base))) != TD_OK) {
		return rc;
	}
	return agent_dir(base, url, dir, dir_len);
}

int td_spool_pending(const char *socket_url, const char *spool_dir, uint64_t *records,
                     uint64_t *bytes, char *dir_out, size_t dir_len)
{
	char url[256], dir[600], path[PATH_MAX];
	struct dirent *e;
	int rc;

	*records = *bytes = 0;
	if ((rc = flush_dir(socket_url, spool_dir, url, sizeof(url), dir, sizeof(dir))) != TD_OK)
		return rc;
	if (dir_out != NULL && dir_len > 0)
		snprintf(dir_out, dir_len, "%s", dir);
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT
		           ? TD_OK
		           : tdi_fail(TD_ERR_INVALID, "td_spool_pending: cannot read %s: %s", dir,
		                      strerror(errno));
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name), k = strlen(SPOOL_SUFFIX);
		if (e->d_name[0] == '.' || n <= k || strcmp(e->d_name + n - k, SPOOL_SUFFIX) != 0 ||
		    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
			continue;
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		/* A shared lock fails while the owner lives (its sender delivers the
		 * file) or a flush holds it: only what nobody delivers is counted. */
		if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
			close(fd);
			continue;
		}
		uint64_t off = 0, frame_len, seq;
		uint32_t n_records;
		nng_msg *msg;
		/* Frame by frame, as a flush would send them: a torn or damaged
		 * tail is not counted. Bounded by the file. */
		while (read_frame(fd, off, &msg, &seq, &n_records, &frame_len) == FRAME_OK) {
			nng_msg_free(msg);
			*records += n_records;
			*bytes += frame_len;
			off += frame_len;
		}
		close(fd);
	}
	closedir(d);
	return TD_OK;
}

int td_spool_flush(const char *socket_url, const char *spool_dir, int timeout_ms,
                   uint64_t *records_delivered)
{
	char url[256], dir[600], path[PATH_MAX];
	struct replay_ctx c = {0};
	nng_socket sock;
	struct dirent *e;
	bool stopped = false;
	int rc;

	if (records_delivered)
		*records_delivered = 0;
	if ((rc = flush_dir(socket_url, spool_dir, url, sizeof(url), dir, sizeof(dir))) != TD_OK)
		return rc;
	if (timeout_ms < 0)
		timeout_ms = TDI_DEFAULT_FLUSH_TIMEOUT_MS;
	DIR *d = opendir(dir);
	if (d == NULL) {
		if (errno == ENOENT)
			return TD_OK; /* nothing was ever spooled */
		return tdi_fail(TD_ERR_INVALID, "td_spool_flush: cannot read %s: %s", dir,
		                strerror(errno));
	}
	if ((rc = replay_socket(url, &sock, &c.dialer)) != TD_OK) {
		closedir(d);
		return rc;
	}
	c.sock = sock;
	c.url = url;
	c.deadline = tdi_mono_ms() + timeout_ms;
	while (!stopped && (e = readdir(d)) != NULL) {
		int fd = lock_orphan(dir, e->d_name, path, sizeof(path));
		if (fd < 0)
			continue;
		if (replay_file(&c, fd, path) == REPLAY_STOPPED) {
			close(fd);
			stopped = true;
		}
	}
	closedir(d);
	(void)nng_close_bounded(sock, TDI_CLOSE_TIMEOUT_MS);
	if (records_delivered)
		*records_delivered = c.delivered;
	if (stopped && !c.answered)
		return tdi_fail(TD_ERR_TRANSPORT, "td_spool_flush: no agent answered at %s: %s",
		                url, c.why);
	if (stopped)
		return tdi_fail(TD_ERR_TIMEOUT, "td_spool_flush: not delivered within %d ms: %s",
		                timeout_ms, c.why);
	if (c.rejected > 0)
		return tdi_fail(TD_ERR_REJECTED,
		                "td_spool_flush: the agent refused %llu records: %s",
		                (unsigned long long)c.rejected, c.why);
	if (c.damaged)
		return tdi_fail(TD_ERR_INVALID, "td_spool_flush: %s", c.why);
	return TD_OK;
}
