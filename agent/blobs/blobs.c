/*
 * blobs.c — the agent's blob store (blobs.h).
 */
#include "blobs.h"

#include "errors.h"
#include "log.h"
#include "run_files.h"

#include <openssl/evp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Directories are listed through their own open file description (openat
 * "."): a dup would share, and move, the held fd's offset. */

/* Read and copy in pieces of this size. */
#define BLOBS_IO_BYTES ((size_t)1 << 16)

struct run_bytes {
	char id[65];
	uint64_t bytes;
	uint64_t used; /* recency, for eviction */
};

struct blobs {
	int dir_fd; /* <state_dir>/blobs */
	pthread_mutex_t mu;
	uint64_t max_file_bytes, max_run_bytes;
	uint64_t disk_bytes;
	uint64_t tick;
	struct run_bytes runs[BLOBS_RUNS_TRACKED];
};

static int sys_err(const char *what, const char *name)
{
	int e = errno;
	log_warn("blobs: %s %s: %s", what, name, strerror(e));
	if (e == ELOOP || e == ENOTDIR || e == EMLINK)
		return TRACKD_ESYS;
	return trackd_err_from_errno(e);
}

void blobs_sha256(const void *data, size_t len, uint8_t digest[32])
{
	unsigned int n = 32;
	EVP_Digest(data, len, digest, &n, EVP_sha256(), NULL);
}

/* Opens (creating) dir `name` under parent, never through a symlink. */
static int open_dir_at(int parent, const char *name, int *out)
{
	if (mkdirat(parent, name, 0700) != 0 && errno != EEXIST)
		return sys_err("mkdir", name);
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return sys_err("open dir", name);
	*out = fd;
	return TRACKD_OK;
}

static int open_uid_dir(blobs *b, uint32_t uid, int *out)
{
	char name[16];
	snprintf(name, sizeof name, "%u", uid);
	return open_dir_at(b->dir_fd, name, out);
}

static void add_disk(blobs *b, int64_t delta)
{
	pthread_mutex_lock(&b->mu);
	if (delta < 0 && (uint64_t)-delta > b->disk_bytes)
		b->disk_bytes = 0;
	else
		b->disk_bytes += (uint64_t)delta;
	pthread_mutex_unlock(&b->mu);
}

/* Bytes held for uploading sinks under one uid dir (held/<holder>/<hex>):
 * they count in the budget until released (blobs.h), whatever links them. */
static uint64_t held_bytes(int uid_fd)
{
	uint64_t n = 0;
	int held = openat(uid_fd, "held", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (held < 0)
		return 0;
	DIR *d = fdopendir(held);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int hfd = openat(held, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (hfd < 0)
			continue;
		DIR *hd = fdopendir(hfd);
		struct dirent *f;
		while (hd && (f = readdir(hd))) {
			struct stat st;
			if (strlen(f->d_name) == 64 &&
			    fstatat(hfd, f->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISREG(st.st_mode))
				n += (uint64_t)st.st_size;
		}
		if (hd)
			closedir(hd);
		else
			close(hfd);
	}
	if (d)
		closedir(d);
	else
		close(held);
	return n;
}

/* Removes every partial file of one uid dir; counts the complete blobs no one
 * links and the held ones, as blobs_sweep does. */
static void scan_uid(blobs *b, int uid_fd)
{
	int tmp_fd = openat(uid_fd, "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (tmp_fd >= 0) {
		DIR *d = fdopendir(tmp_fd);
		struct dirent *e;
		while (d && (e = readdir(d)))
			if (e->d_name[0] != '.')
				unlinkat(tmp_fd, e->d_name, 0);
		if (d)
			closedir(d);
		else
			close(tmp_fd);
	}
	int fd = openat(uid_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		struct stat st;
		if (strlen(e->d_name) == 64 &&
		    fstatat(uid_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode) && st.st_nlink == 1)
			b->disk_bytes += (uint64_t)st.st_size;
	}
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);
	b->disk_bytes += held_bytes(uid_fd);
}

int blobs_open(const struct blobs_options *opts, blobs **out)
{
	*out = NULL;
	if (!opts->state_dir || !opts->max_file_bytes || !opts->max_run_bytes)
		return TRACKD_EINVAL;
	int state_fd = open(opts->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (state_fd < 0)
		return sys_err("open", opts->state_dir);
	blobs *b = calloc(1, sizeof *b);
	if (!b) {
		close(state_fd);
		return TRACKD_ENOMEM;
	}
	int rv = open_dir_at(state_fd, "blobs", &b->dir_fd);
	close(state_fd);
	if (rv) {
		free(b);
		return rv;
	}
	pthread_mutex_init(&b->mu, NULL);
	b->max_file_bytes = opts->max_file_bytes;
	b->max_run_bytes = opts->max_run_bytes;
	int fd = openat(b->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int uid_fd = openat(b->dir_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		if (uid_fd < 0)
			continue;
		scan_uid(b, uid_fd);
		close(uid_fd);
	}
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);
	*out = b;
	return TRACKD_OK;
}

void blobs_free(blobs *b)
{
	if (!b)
		return;
	close(b->dir_fd);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

void blobs_set_limits(blobs *b, uint64_t max_file_bytes, uint64_t max_run_bytes)
{
	pthread_mutex_lock(&b->mu);
	b->max_file_bytes = max_file_bytes;
	b->max_run_bytes = max_run_bytes;
	pthread_mutex_unlock(&b->mu);
}

uint64_t blobs_disk_bytes(blobs *b)
{
	pthread_mutex_lock(&b->mu);
	uint64_t n = b->disk_bytes;
	pthread_mutex_unlock(&b->mu);
	return n;
}

static bool have_at(int uid_fd, const char *hex, uint64_t *size)
{
	struct stat st;
	if (fstatat(uid_fd, hex, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
		return false;
	if (size)
		*size = (uint64_t)st.st_size;
	return true;
}

bool blobs_have(blobs *b, uint32_t uid, const uint8_t digest[32])
{
	int uid_fd;
	if (open_uid_dir(b, uid, &uid_fd) != 0)
		return false;
	char hex[65];
	files_hex_digest(digest, hex);
	bool ok = have_at(uid_fd, hex, NULL);
	close(uid_fd);
	return ok;
}

/* The run's entry (mu held), made if needed, evicting the least recent. */
static struct run_bytes *run_entry(blobs *b, const char *run_id)
{
	struct run_bytes *oldest = &b->runs[0];
	for (size_t i = 0; i < BLOBS_RUNS_TRACKED; i++) {
		struct run_bytes *r = &b->runs[i];
		if (r->id[0] && strcmp(r->id, run_id) == 0) {
			r->used = ++b->tick;
			return r;
		}
		if (r->used < oldest->used)
			oldest = r;
	}
	snprintf(oldest->id, sizeof oldest->id, "%s", run_id);
	oldest->bytes = 0;
	oldest->used = ++b->tick;
	return oldest;
}

int blobs_sha256_fd(int fd, uint8_t digest[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *buf = malloc(BLOBS_IO_BYTES);
	int rv = TRACKD_OK;
	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rv = TRACKD_ENOMEM;
		goto out;
	}
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(fd, buf, BLOBS_IO_BYTES, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rv = TRACKD_EIO;
			goto out;
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		off += n;
	}
	unsigned int len = 32;
	EVP_DigestFinal_ex(ctx, digest, &len);
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	return rv;
}

/* Reads the partial back and compares its SHA-256 with the digest. */
static int verify(int fd, const uint8_t digest[32])
{
	uint8_t got[32];
	int rv = blobs_sha256_fd(fd, got);
	if (!rv && memcmp(got, digest, 32) != 0)
		rv = TRACKD_ECORRUPT;
	return rv;
}

static int write_at(int fd, const void *data, size_t len, uint64_t off)
{
	const uint8_t *p = data;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return trackd_err_from_errno(errno);
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return TRACKD_OK;
}

int blobs_put(blobs *b, uint32_t uid, const char *run_id, const uint8_t digest[32], uint64_t size,
              uint64_t offset, const void *data, size_t len, uint64_t room,
              struct blobs_put_result *res, char *err, size_t errlen)
{
	memset(res, 0, sizeof *res);
	err[0] = '\0';
	if (offset > size || len > size - offset || (len == 0 && offset != size)) {
		snprintf(err, errlen,
		         "piece [%" PRIu64 ", +%zu) does not fit a blob of %" PRIu64 " bytes",
		         offset, len, size);
		return TRACKD_EINVAL;
	}
	pthread_mutex_lock(&b->mu);
	uint64_t max_file = b->max_file_bytes, max_run = b->max_run_bytes;
	pthread_mutex_unlock(&b->mu);
	if (size > max_file) {
		snprintf(err, errlen,
		         "file is %" PRIu64 " bytes, limit %" PRIu64 " (blobs.max_file_bytes)",
		         size, max_file);
		return TRACKD_ETOOBIG;
	}
	char hex[65], part[80];
	files_hex_digest(digest, hex);
	snprintf(part, sizeof part, "%s.part", hex);
	int uid_fd = -1, tmp_fd = -1, fd = -1;
	int rv = open_uid_dir(b, uid, &uid_fd);
	if (rv) {
		snprintf(err, errlen, "blob store: cannot open the dir of uid %u", uid);
		return rv;
	}
	uint64_t held;
	if (have_at(uid_fd, hex, &held)) {
		/* Known content, or the resend of a last piece: nothing to write. */
		res->have = held;
		res->complete = res->duplicate = true;
		goto out;
	}
	if ((rv = open_dir_at(uid_fd, "tmp", &tmp_fd)) != 0) {
		snprintf(err, errlen, "blob store: cannot open the partial files of uid %u", uid);
		goto out;
	}
	struct stat st;
	uint64_t part_len = 0;
	if (fstatat(tmp_fd, part, &st, AT_SYMLINK_NOFOLLOW) == 0)
		part_len = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	if (offset == 0) {
		pthread_mutex_lock(&b->mu);
		struct run_bytes *r = run_entry(b, run_id);
		bool over = r->bytes + size > max_run;
		uint64_t run_held = r->bytes;
		pthread_mutex_unlock(&b->mu);
		if (over) {
			snprintf(err, errlen,
			         "run %s would hold %" PRIu64 " bytes of files, limit %" PRIu64
			         " (blobs.max_run_bytes)",
			         run_id, run_held + size, max_run);
			rv = TRACKD_ETOOBIG;
			goto out;
		}
		/* Start anew: whatever is there (a symlink too) goes. */
		if (unlinkat(tmp_fd, part, 0) == 0)
			add_disk(b, -(int64_t)part_len);
		part_len = 0;
		fd = openat(tmp_fd, part, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	} else if (offset == part_len) {
		fd = openat(tmp_fd, part, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	} else if (offset < part_len && offset + len <= part_len) {
		res->have = part_len;
		res->duplicate = true;
		goto out;
	} else {
		res->have = part_len; /* go on from there */
		goto out;
	}
	if (fd < 0) {
		rv = sys_err("open partial", part);
		snprintf(err, errlen, "blob store: cannot write the partial file");
		goto out;
	}
	if (len > room) {
		snprintf(
		    err, errlen,
		    "disk budget reached (txlog.max_bytes): %zu more bytes of files do not fit",
		    len);
		res->have = part_len;
		rv = TRACKD_ENOSPC;
		goto out;
	}
	if (len && (rv = write_at(fd, data, len, offset)) != 0) {
		snprintf(err, errlen, "blob store: writing: %s", trackd_strerror(rv));
		/* What a full disk left half-written is cut, so the offsets hold. */
		if (ftruncate(fd, (off_t)offset) != 0)
			log_warn("blobs: cannot cut %s back: %s", part, strerror(errno));
		res->have = offset;
		goto out;
	}
	add_disk(b, (int64_t)len);
	res->have = offset + len;
	if (res->have < size)
		goto out;
	rv = verify(fd, digest);
	if (rv == TRACKD_OK && fdatasync(fd) != 0)
		rv = TRACKD_EIO;
	if (rv == TRACKD_ECORRUPT)
		snprintf(err, errlen, "the SHA-256 of the %" PRIu64 " bytes received is not %s",
		         size, hex);
	else if (rv)
		snprintf(err, errlen, "blob store: making the blob durable: %s",
		         trackd_strerror(rv));
	if (rv == TRACKD_OK && renameat(tmp_fd, part, uid_fd, hex) != 0) {
		rv = sys_err("rename", part);
		snprintf(err, errlen, "blob store: cannot move the blob into place");
	}
	if (rv == TRACKD_OK && fsync(uid_fd) != 0) {
		rv = TRACKD_EIO;
		snprintf(err, errlen, "blob store: cannot sync its dir");
	}
	if (rv) {
		if (unlinkat(tmp_fd, part, 0) == 0)
			add_disk(b, -(int64_t)size);
		res->have = 0;
		goto out;
	}
	pthread_mutex_lock(&b->mu);
	run_entry(b, run_id)->bytes += size;
	pthread_mutex_unlock(&b->mu);
	res->complete = true;
out:
	if (fd >= 0)
		close(fd);
	if (tmp_fd >= 0)
		close(tmp_fd);
	close(uid_fd);
	return rv;
}

/* Opens each directory of name's parent under dir_fd; returns the parent's
 * fd and the last component in *leaf. */
static int open_parent(int dir_fd, const char *name, int *parent, const char **leaf)
{
	char part[TRACKD_MAX_FILE_NAME_PART + 1];
	int cur = dup(dir_fd);
	if (cur < 0)
		return TRACKD_ESYS;
	const char *p = name;
	for (;;) {
		const char *slash = strchr(p, '/');
		if (!slash)
			break;
		size_t n = (size_t)(slash - p);
		memcpy(part, p, n);
		part[n] = '\0';
		if (mkdirat(cur, part, 0755) != 0 && errno != EEXIST) {
			int rv = sys_err("mkdir", part);
			close(cur);
			return rv;
		}
		int next = openat(cur, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(cur);
		if (next < 0)
			return sys_err("open dir", part);
		cur = next;
		p = slash + 1;
	}
	*parent = cur;
	*leaf = p;
	return TRACKD_OK;
}

/* A copy when a hard link is not possible (another file system, a policy). */
static int copy_into(int src_fd, int parent, const char *leaf)
{
	char tmp[TRACKD_MAX_FILE_NAME_PART + 16];
	snprintf(tmp, sizeof tmp, ".%.200s.tmp", leaf);
	unlinkat(parent, tmp, 0);
	int out = openat(parent, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (out < 0)
		return sys_err("create", tmp);
	uint8_t *buf = malloc(BLOBS_IO_BYTES);
	int rv = buf ? TRACKD_OK : TRACKD_ENOMEM;
	off_t off = 0;
	while (rv == TRACKD_OK) {
		ssize_t n = pread(src_fd, buf, BLOBS_IO_BYTES, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rv = TRACKD_EIO;
		if (n <= 0)
			break;
		rv = write_at(out, buf, (size_t)n, (uint64_t)off);
		off += n;
	}
	free(buf);
	if (rv == TRACKD_OK && fdatasync(out) != 0)
		rv = TRACKD_EIO;
	close(out);
	if (rv == TRACKD_OK && renameat(parent, tmp, parent, leaf) != 0)
		rv = sys_err("rename", tmp);
	if (rv)
		unlinkat(parent, tmp, 0);
	return rv;
}

int blobs_link(blobs *b, uint32_t uid, const uint8_t digest[32], int dir_fd, const char *name,
               uint64_t *size)
{
	if (!files_name_valid(name, strlen(name)))
		return TRACKD_EINVAL;
	char hex[65];
	files_hex_digest(digest, hex);
	int uid_fd;
	int rv = open_uid_dir(b, uid, &uid_fd);
	if (rv)
		return rv;
	int src = openat(uid_fd, hex, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (src < 0) {
		close(uid_fd);
		return errno == ENOENT ? TRACKD_ENOENT : sys_err("open blob", hex);
	}
	struct stat st;
	if (fstat(src, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(src);
		close(uid_fd);
		return TRACKD_ESYS;
	}
	*size = (uint64_t)st.st_size;
	int parent = -1;
	const char *leaf = NULL;
	if ((rv = open_parent(dir_fd, name, &parent, &leaf)) != 0) {
		close(src);
		close(uid_fd);
		return rv;
	}
	struct stat at;
	if (fstatat(parent, leaf, &at, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISREG(at.st_mode) && at.st_ino == st.st_ino && at.st_dev == st.st_dev)
			goto done; /* linked before (a replay) */
		/* A file of the same name (a new version), or something planted:
		 * replaced, never followed. */
		if (S_ISDIR(at.st_mode) || unlinkat(parent, leaf, 0) != 0) {
			rv = sys_err("replace", leaf);
			goto done;
		}
	}
	if (linkat(uid_fd, hex, parent, leaf, 0) != 0) {
		if (errno == EXDEV || errno == EPERM || errno == EMLINK)
			rv = copy_into(src, parent, leaf);
		else
			rv = sys_err("link", leaf);
	} else if (st.st_nlink == 1) {
		/* A run dir holds it now: it leaves the budget (blobs.h). */
		add_disk(b, -(int64_t)st.st_size);
	}
	if (rv == TRACKD_OK && fsync(parent) != 0)
		rv = TRACKD_EIO;
done:
	close(parent);
	close(src);
	close(uid_fd);
	return rv;
}

/* A holder is one path component of [A-Za-z0-9_.-] (not "." or ".."). */
static bool holder_valid(const char *h)
{
	size_t n = strlen(h);
	if (n == 0 || n > 200 || strcmp(h, ".") == 0 || strcmp(h, "..") == 0)
		return false;
	for (const char *p = h; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-'))
			return false;
	return true;
}

/* Opens uid's held/<holder> dir (creating it when `create`). */
static int open_holder(blobs *b, uint32_t uid, const char *holder, bool create, int *uid_fd,
                       int *out)
{
	if (!holder_valid(holder))
		return TRACKD_EINVAL;
	int rv = open_uid_dir(b, uid, uid_fd);
	if (rv)
		return rv;
	int held = -1;
	if (create) {
		rv = open_dir_at(*uid_fd, "held", &held);
		rv = rv ? rv : open_dir_at(held, holder, out);
	} else {
		held = openat(*uid_fd, "held", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		*out = held < 0
		           ? -1
		           : openat(held, holder, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		rv = *out < 0 ? (errno == ENOENT ? TRACKD_ENOENT : sys_err("open held", holder))
		              : TRACKD_OK;
	}
	if (held >= 0)
		close(held);
	if (rv) {
		close(*uid_fd);
		*uid_fd = -1;
	}
	return rv;
}

int blobs_hold(blobs *b, uint32_t uid, const uint8_t digest[32], const char *holder, uint64_t *size)
{
	char hex[65];
	files_hex_digest(digest, hex);
	int uid_fd, hfd;
	int rv = open_holder(b, uid, holder, true, &uid_fd, &hfd);
	if (rv)
		return rv;
	struct stat st, at;
	if (fstatat(uid_fd, hex, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
		rv = errno == ENOENT ? TRACKD_ENOENT : TRACKD_ESYS;
		goto out;
	}
	*size = (uint64_t)st.st_size;
	if (fstatat(hfd, hex, &at, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISREG(at.st_mode) && at.st_ino == st.st_ino && at.st_dev == st.st_dev)
			goto out; /* held before (a replay) */
		if (S_ISDIR(at.st_mode) || unlinkat(hfd, hex, 0) != 0) {
			rv = sys_err("replace held", hex);
			goto out;
		}
	}
	if (linkat(uid_fd, hex, hfd, hex, 0) != 0) {
		rv = sys_err("hold", hex);
		goto out;
	}
	if (fsync(hfd) != 0) {
		rv = TRACKD_EIO;
		goto out;
	}
	/* Counted as held now; it was counted already if no run dir linked it. */
	if (st.st_nlink > 1)
		add_disk(b, (int64_t)st.st_size);
out:
	close(hfd);
	close(uid_fd);
	return rv;
}

int blobs_open_held(blobs *b, uint32_t uid, const uint8_t digest[32], const char *holder, int *fd,
                    uint64_t *size)
{
	char hex[65];
	files_hex_digest(digest, hex);
	int uid_fd, hfd;
	int rv = open_holder(b, uid, holder, false, &uid_fd, &hfd);
	if (rv)
		return rv;
	*fd = openat(hfd, hex, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (*fd < 0)
		rv = errno == ENOENT ? TRACKD_ENOENT : sys_err("open held", hex);
	else if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(*fd);
		*fd = -1;
		rv = TRACKD_ESYS;
	} else
		*size = (uint64_t)st.st_size;
	close(hfd);
	close(uid_fd);
	return rv;
}

int blobs_release(blobs *b, uint32_t uid, const uint8_t digest[32], const char *holder)
{
	char hex[65];
	files_hex_digest(digest, hex);
	int uid_fd, hfd;
	int rv = open_holder(b, uid, holder, false, &uid_fd, &hfd);
	if (rv)
		return rv == TRACKD_ENOENT ? TRACKD_OK : rv;
	struct stat st;
	if (fstatat(hfd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (unlinkat(hfd, hex, 0) != 0)
			rv = sys_err("release", hex);
		else if (S_ISREG(st.st_mode)) {
			/* It leaves the held count; back to the unlinked count if the
			 * store's own link is the last one (the sweep deletes it). */
			add_disk(b, -(int64_t)st.st_size);
			if (st.st_nlink == 2)
				add_disk(b, (int64_t)st.st_size);
		}
	}
	close(hfd);
	close(uid_fd);
	return rv;
}

int blobs_release_all(blobs *b, uint32_t uid, const char *holder)
{
	int uid_fd, hfd;
	int rv = open_holder(b, uid, holder, false, &uid_fd, &hfd);
	if (rv)
		return rv == TRACKD_ENOENT ? TRACKD_OK : rv;
	int dfd = openat(hfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *e;
	uint8_t digest[32];
	while (d && (e = readdir(d)))
		if (files_parse_digest(e->d_name, strlen(e->d_name), digest))
			blobs_release(b, uid, digest, holder);
	if (d)
		closedir(d);
	else if (dfd >= 0)
		close(dfd);
	close(hfd);
	int held = openat(uid_fd, "held", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (held >= 0) {
		unlinkat(held, holder, AT_REMOVEDIR);
		close(held);
	}
	close(uid_fd);
	return TRACKD_OK;
}

/* Deletes what has expired in one dir; adds what stays counted to *kept. */
static size_t sweep_dir(blobs *b, int fd, bool partial, time_t cutoff, uint64_t *kept)
{
	size_t n = 0;
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		struct stat st;
		size_t len = strlen(e->d_name);
		if (e->d_name[0] == '.' || (!partial && len != 64))
			continue;
		if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode))
			continue;
		bool linked = !partial && S_ISREG(st.st_mode) && st.st_nlink > 1;
		if (st.st_mtime > cutoff || linked) {
			if (!linked && S_ISREG(st.st_mode))
				*kept += (uint64_t)st.st_size;
			continue;
		}
		if (unlinkat(fd, e->d_name, 0) == 0)
			n++;
		else if (S_ISREG(st.st_mode))
			*kept += (uint64_t)st.st_size;
	}
	if (d)
		closedir(d);
	else if (dfd >= 0)
		close(dfd);
	return n;
}

size_t blobs_sweep(blobs *b, int64_t grace_s, time_t applied_before)
{
	time_t now = time(NULL);
	time_t cutoff = now - (time_t)grace_s;
	time_t blob_cutoff = (applied_before < now ? applied_before : now) - (time_t)grace_s;
	size_t n = 0;
	uint64_t kept = 0;
	int fd = openat(b->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int uid_fd = openat(b->dir_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		if (uid_fd < 0)
			continue;
		n += sweep_dir(b, uid_fd, false, blob_cutoff, &kept);
		kept += held_bytes(uid_fd);
		int tmp_fd = openat(uid_fd, "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		if (tmp_fd >= 0) {
			n += sweep_dir(b, tmp_fd, true, cutoff, &kept);
			close(tmp_fd);
		}
		close(uid_fd);
	}
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);
	/* The count starts again from what is on disk (a run dir deleted since
	 * gives its blobs back to the budget). A piece written during the walk
	 * may be missed until the next sweep. */
	pthread_mutex_lock(&b->mu);
	b->disk_bytes = kept;
	pthread_mutex_unlock(&b->mu);
	return n;
}

void blobs_marks_add(struct blobs_marks *m, time_t when, uint64_t last_index)
{
	if (m->n == BLOBS_MARKS) {
		memmove(m->when, m->when + 1, (BLOBS_MARKS - 1) * sizeof *m->when);
		memmove(m->index, m->index + 1, (BLOBS_MARKS - 1) * sizeof *m->index);
		m->n--;
	}
	m->when[m->n] = when;
	m->index[m->n] = last_index;
	m->n++;
}

time_t blobs_marks_applied_before(struct blobs_marks *m, uint64_t min_position)
{
	size_t k = m->n;
	while (k > 0 && m->index[k - 1] > min_position)
		k--;
	if (k == 0)
		return 0;
	time_t when = m->when[k - 1];
	/* The marks before it say less: dropped. */
	memmove(m->when, m->when + (k - 1), (m->n - (k - 1)) * sizeof *m->when);
	memmove(m->index, m->index + (k - 1), (m->n - (k - 1)) * sizeof *m->index);
	m->n -= k - 1;
	return when;
}
