/*
 * replay.c — delivering the spool files of dead processes: the replay thread
 * of every td_init, td_spool_flush and td_spool_pending (replay.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <openssl/evp.h>

#include "error.h"
#include "fs.h"
#include "query.h"
#include "replay.h"
#include "run.h"
#include "run_files.h"
#include "timing.h"
#include "transport.h"

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

/* Pieces a spooled file is hashed in before it is sent. */
#define REPLAY_HASH_BYTES ((size_t)1 << 20)

/* Sends one spooled file (blob_queue.h), read in pieces from fd, until the
 * agent has it or refuses it. */
static enum replay_result replay_blob(struct replay_ctx *c, const char *run_id,
                                      const uint8_t digest[32], int fd, size_t len)
{
	struct tdi_blob_send t = {
	    .run_id = run_id, .fd = fd, .len = len, .piece = TRACKD_BLOB_CHUNK_BYTES};
	memcpy(t.digest, digest, 32);
	uint32_t backoff = 0;
	for (;;) {
		if (replay_stopped(c))
			return REPLAY_STOPPED;
		enum tdi_reach reach;
		int out =
		    tdi_blob_exchange(c->sock, c->url, &t, c->run ? tdi_limits_learn_hook : NULL,
		                      c->run, &reach, c->why, sizeof(c->why));
		c->answered |= reach == TDI_ANSWERED;
		if (out == TDI_BLOB_REFUSED) {
			c->rejected++;
			return REPLAY_DONE;
		}
		if (out == TDI_BLOB_HELD || out == TDI_BLOB_STORED)
			return REPLAY_DONE;
		if (out == TDI_BLOB_RETRY) {
			backoff = backoff ? backoff * 2 : TDI_BACKOFF_MIN_MS;
			if (backoff > TDI_BACKOFF_MAX_MS)
				backoff = TDI_BACKOFF_MAX_MS;
			replay_pause(c, backoff);
		} else {
			backoff = 0;
		}
	}
}

/* The SHA-256 of fd's first len bytes, read in pieces; false if it cannot be
 * read whole. */
static bool file_sha256(int fd, uint64_t len, uint8_t out[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *piece = malloc(REPLAY_HASH_BYTES);
	bool ok = ctx && piece && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	for (uint64_t off = 0; ok && off < len;) {
		size_t n = len - off < REPLAY_HASH_BYTES ? (size_t)(len - off) : REPLAY_HASH_BYTES;
		ok = fs_pread_all(fd, piece, n, off) == 0 && EVP_DigestUpdate(ctx, piece, n);
		off += n;
	}
	unsigned int dn = 32;
	ok = ok && EVP_DigestFinal_ex(ctx, out, &dn);
	EVP_MD_CTX_free(ctx);
	free(piece);
	return ok;
}

/* The files spooled beside a spool file (<dir>/files/<run id>.<sha256>.blob):
 * sent before its frames, which may name them. Each is locked while sent (two
 * replays do not send the same one), checked against its name's digest
 * (a damaged one is deleted: the agent would refuse it), deleted once the
 * agent has it. */
static enum replay_result replay_blobs(struct replay_ctx *c, const char *spool_path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", spool_path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		return REPLAY_DONE;
	snprintf(slash + 1, sizeof(dir) - (size_t)(slash + 1 - dir), "%s", TDI_BLOB_SPOOL_SUBDIR);
	DIR *d = opendir(dir);
	if (!d)
		return REPLAY_DONE;
	enum replay_result res = REPLAY_DONE;
	struct dirent *e;
	while (res == REPLAY_DONE && (e = readdir(d)) != NULL) {
		size_t nl = strlen(e->d_name), sl = strlen(TDI_BLOB_SPOOL_SUFFIX);
		const char *dot = strchr(e->d_name, '.');
		if (e->d_name[0] == '.' || nl < sl + 66 ||
		    strcmp(e->d_name + nl - sl, TDI_BLOB_SPOOL_SUFFIX) != 0 || !dot ||
		    (size_t)(e->d_name + nl - sl - dot - 1) != 64)
			continue;
		char run_id[TRACKD_MAX_RUN_ID_BYTES + 1];
		size_t id_len = (size_t)(dot - e->d_name);
		uint8_t digest[32], check[32];
		if (id_len == 0 || id_len > TRACKD_MAX_RUN_ID_BYTES ||
		    !files_parse_digest(dot + 1, 64, digest))
			continue;
		memcpy(run_id, e->d_name, id_len);
		run_id[id_len] = '\0';
		int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		struct stat st;
		if (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &st) != 0 ||
		    !S_ISREG(st.st_mode) || (uint64_t)st.st_size > SIZE_MAX) {
			close(fd);
			continue;
		}
		if (!file_sha256(fd, (uint64_t)st.st_size, check)) {
			close(fd);
			continue; /* unreadable now: another replay may do it */
		}
		if (memcmp(check, digest, 32) != 0) {
			unlinkat(dirfd(d), e->d_name, 0); /* damaged: the agent would refuse it */
		} else {
			res = replay_blob(c, run_id, digest, fd, (size_t)st.st_size);
			if (res == REPLAY_DONE)
				unlinkat(dirfd(d), e->d_name, 0);
		}
		close(fd);
	}
	closedir(d);
	return res;
}

/* Sends every frame of one locked file in order; deletes the file when all
 * are acknowledged. Closes fd unless stopped. */
static enum replay_result replay_file(struct replay_ctx *c, int fd, const char *path)
{
	uint64_t off = 0;
	uint32_t backoff = 0;

	if (replay_blobs(c, path) == REPLAY_STOPPED)
		return REPLAY_STOPPED;
	for (;;) {
		nng_msg *msg;
		uint64_t seq, frame_len;
		uint32_t n;

		if (replay_stopped(c))
			return REPLAY_STOPPED;
		enum tdi_frame_status st =
		    tdi_spool_read_frame(fd, off, &msg, &seq, &n, &frame_len);
		if (st == TDI_FRAME_NOMEM) {
			replay_pause(c, TDI_BACKOFF_MAX_MS);
			continue;
		}
		if (st == TDI_FRAME_END) {
			unlink(path);
			close(fd);
			return REPLAY_DONE;
		}
		if (st == TDI_FRAME_DAMAGED) {
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
		    tdi_exchange(c->sock, c->url, msg, seq, c->run ? tdi_limits_learn_hook : NULL,
		                 c->run, &reach, c->why, sizeof(c->why));
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
		int fd = tdi_spool_lock_orphan(run->spool.dir, e->d_name, path, sizeof(path));
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
	return tdi_spool_agent_dir(base, url, dir, dir_len);
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
		size_t n = strlen(e->d_name), k = strlen(TDI_SPOOL_SUFFIX);
		if (e->d_name[0] == '.' || n <= k ||
		    strcmp(e->d_name + n - k, TDI_SPOOL_SUFFIX) != 0 ||
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
		while (tdi_spool_read_frame(fd, off, &msg, &seq, &n_records, &frame_len) ==
		       TDI_FRAME_OK) {
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
		int fd = tdi_spool_lock_orphan(dir, e->d_name, path, sizeof(path));
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
