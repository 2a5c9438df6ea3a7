/*
 * run_files_sink.c — the local sink's run files: the blobs a run's records
 * name, materialised under <run dir>/files/ (local_sink_internal.h).
 *
 * A history row's media values are W&B's objects, made by the client with
 * their path: {"_type":"image-file"|"table-file", "path":"media/…",
 * "sha256":<hex>, …}; a SavedFile record names files/<name>. Each is
 * hard-linked from the blob store of the uid that sent the record (never
 * another user's: blobs.h), through directory fds opened O_NOFOLLOW, so a
 * path that passed files_name_valid cannot leave files/ and a planted symlink
 * redirects nothing. Every file materialised appends one line to files.jsonl
 * ({"name","size","sha256","kind"}): what `trackctl files` lists (the last
 * line of a name wins: a replay after a crash may append a line twice).
 *
 * A blob the store does not hold (a row replayed from a client's spool whose
 * process died before sending the file) leaves the row as it is, without its
 * file: logged and counted in write_errors.
 */
#include "local_sink_internal.h"

#include "blobs.h"
#include "errors.h"
#include "json_write.h"
#include "log.h"
#include "run_files.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int open_files_dir(const char *run_dir, int *out)
{
	int run_fd = open(run_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (run_fd < 0)
		return trackd_err_from_errno(errno);
	if (mkdirat(run_fd, RUN_FILES_SUBDIR, 0755) != 0 && errno != EEXIST) {
		int rv = trackd_err_from_errno(errno);
		close(run_fd);
		return rv;
	}
	int fd = openat(run_fd, RUN_FILES_SUBDIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int e = errno;
	close(run_fd);
	if (fd < 0)
		return e == ELOOP || e == ENOTDIR ? TRACKD_ESYS : trackd_err_from_errno(e);
	*out = fd;
	return TRACKD_OK;
}

static void note_file(const char *run_dir, const char *name, uint64_t size, const char *hex,
                      const char *kind)
{
	struct buf line;
	buf_init(&line, TRACKD_MAX_FILE_NAME_BYTES * 6 + 256);
	int rv = buf_puts(&line, "{\"name\":");
	rv = rv ? rv : json_write_string(&line, name);
	rv = rv ? rv : buf_puts(&line, ",\"size\":");
	rv = rv ? rv : json_write_uint(&line, size);
	rv = rv ? rv : buf_printf(&line, ",\"sha256\":\"%s\",\"kind\":\"%s\"}\n", hex, kind);
	if (rv) {
		buf_fini(&line);
		return;
	}
	int dir_fd = open(run_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int fd = dir_fd < 0 ? -1
	                    : openat(dir_fd, RUN_FILES_MANIFEST,
	                             O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, line.data, line.len) != (ssize_t)line.len)
		log_warn("local sink: %s: cannot note %s in %s", run_dir, name, RUN_FILES_MANIFEST);
	if (fd >= 0)
		close(fd);
	if (dir_fd >= 0)
		close(dir_fd);
	buf_fini(&line);
}

struct materialise_ctx {
	struct local_sink *s;
	struct active_run *ar;
	uint32_t uid;
	int errors;
};

static void materialise(void *arg, const char *name, const uint8_t *digest, const char *kind)
{
	struct materialise_ctx *c = arg;
	if (!digest) {
		log_warn("local sink: run %s: file '%.200s' refused: not a valid name or sha256",
		         c->ar->run->id, name);
		c->errors++;
		return;
	}
	char hex[65];
	files_hex_digest(digest, hex);
	int files_fd = -1;
	int rv = open_files_dir(c->ar->dir, &files_fd);
	if (rv) {
		log_error("local sink: run %s: cannot open its files dir: %s", c->ar->run->id,
		          trackd_strerror(rv));
		c->errors++;
		return;
	}
	uint64_t size = 0;
	rv = blobs_link(c->s->opts.blobs, c->uid, digest, files_fd, name, &size);
	close(files_fd);
	if (rv) {
		log_warn("local sink: run %s: file %.200s (sha256 %s) not materialised: %s",
		         c->ar->run->id, name, hex,
		         rv == TRACKD_ENOENT ? "not in the blob store" : trackd_strerror(rv));
		c->errors++;
		return;
	}
	note_file(c->ar->dir, name, size, hex, kind);
}

int sink_materialise_files(struct local_sink *s, struct active_run *ar,
                           const Trackd__V1__Record *rec, uint32_t uid)
{
	if (!s->opts.blobs)
		return 0;
	/* Which files a record names is run.h's rule, shared with the wandb sink. */
	struct materialise_ctx c = {.s = s, .ar = ar, .uid = uid};
	run_record_files(rec, materialise, &c);
	return c.errors;
}
