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

/* Media values nest no deeper than this in a row (a dict of dicts of images). */
#define MEDIA_MAX_DEPTH 4

static const char *string_item(const Trackd__V1__MapValue *m, const char *key)
{
	for (size_t i = 0; i < m->n_items; i++) {
		const Trackd__V1__Item *it = m->items[i];
		if (it->key && strcmp(it->key, key) == 0 && it->value &&
		    it->value->kind_case == TRACKD__V1__VALUE__KIND_STRING_VALUE)
			return it->value->string_value;
	}
	return NULL;
}

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

static int materialise(struct local_sink *s, struct active_run *ar, uint32_t uid, const char *name,
                       const char *hex, const char *kind)
{
	uint8_t digest[32];
	if (!files_name_valid(name, strlen(name)) ||
	    !files_parse_digest(hex, strlen(hex), digest)) {
		log_warn("local sink: run %s: file '%.200s' refused: not a valid name or sha256",
		         ar->run->id, name);
		return TRACKD_EINVAL;
	}
	int files_fd = -1;
	int rv = open_files_dir(ar->dir, &files_fd);
	if (rv) {
		log_error("local sink: run %s: cannot open its files dir: %s", ar->run->id,
		          trackd_strerror(rv));
		return rv;
	}
	uint64_t size = 0;
	rv = blobs_link(s->opts.blobs, uid, digest, files_fd, name, &size);
	close(files_fd);
	if (rv) {
		log_warn("local sink: run %s: file %.200s (sha256 %s) not materialised: %s",
		         ar->run->id, name, hex,
		         rv == TRACKD_ENOENT ? "not in the blob store" : trackd_strerror(rv));
		return rv;
	}
	note_file(ar->dir, name, size, hex, kind);
	return TRACKD_OK;
}

static void media_in_map(struct local_sink *s, struct active_run *ar, uint32_t uid,
                         const Trackd__V1__MapValue *m, int depth, int *errors)
{
	const char *type = string_item(m, "_type");
	if (type && (strcmp(type, "image-file") == 0 || strcmp(type, "table-file") == 0)) {
		const char *path = string_item(m, "path");
		const char *sha = string_item(m, "sha256");
		/* W&B's media live under media/: anything else is not a media value. */
		if (path && sha && strncmp(path, "media/", 6) == 0) {
			if (materialise(s, ar, uid, path, sha, type[0] == 'i' ? "image" : "table"))
				(*errors)++;
		}
		return;
	}
	if (depth >= MEDIA_MAX_DEPTH)
		return;
	for (size_t i = 0; i < m->n_items; i++) {
		const Trackd__V1__Value *v = m->items[i]->value;
		if (v && v->kind_case == TRACKD__V1__VALUE__KIND_MAP_VALUE)
			media_in_map(s, ar, uid, v->map_value, depth + 1, errors);
		else if (v && v->kind_case == TRACKD__V1__VALUE__KIND_LIST_VALUE)
			for (size_t j = 0; j < v->list_value->n_values; j++) {
				const Trackd__V1__Value *e = v->list_value->values[j];
				if (e->kind_case == TRACKD__V1__VALUE__KIND_MAP_VALUE)
					media_in_map(s, ar, uid, e->map_value, depth + 1, errors);
			}
	}
}

int sink_materialise_files(struct local_sink *s, struct active_run *ar,
                           const Trackd__V1__Record *rec, uint32_t uid)
{
	if (!s->opts.blobs)
		return 0;
	int errors = 0;
	if (rec->body_case == TRACKD__V1__RECORD__BODY_HISTORY) {
		/* Only map values can be media: a row of scalars costs one look
		 * at each value's kind. */
		for (size_t i = 0; i < rec->history->n_items; i++) {
			const Trackd__V1__Value *v = rec->history->items[i]->value;
			if (v && v->kind_case == TRACKD__V1__VALUE__KIND_MAP_VALUE)
				media_in_map(s, ar, uid, v->map_value, 1, &errors);
		}
	} else if (rec->body_case == TRACKD__V1__RECORD__BODY_FILE && rec->file->name &&
	           rec->file->sha256.len == TRACKD_BLOB_DIGEST_BYTES) {
		char hex[65];
		files_hex_digest(rec->file->sha256.data, hex);
		/* A list of images saves each image as a file of media/images/. */
		const char *kind =
		    strncmp(rec->file->name, "media/images/", 13) == 0 ? "image" : "file";
		if (materialise(s, ar, uid, rec->file->name, hex, kind))
			errors++;
	}
	return errors;
}
