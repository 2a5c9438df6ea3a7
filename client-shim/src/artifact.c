/*
 * artifact.c — artifacts as a run logs them (trackd.h td_artifact_*): each
 * file's bytes become a blob queued as td_save_file's are (blob_queue.h),
 * with its SHA-256 and W&B's base64 MD5 computed here; td_artifact_commit
 * records the ArtifactLog naming them. The blob queue sends every blob
 * queued before a batch before the batch, so the agent has every file
 * before it sees the record (artifacts.h: a record naming a missing blob
 * makes no version).
 */
#include "artifact_names.h"
#include "blob_queue.h"
#include "error.h"
#include "run.h"
#include "run_files.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long td_artifact_add_bytes waits for the blob queue to make room
 * (the sender drains it as the agent stores blobs). */
#define TDI_ARTIFACT_ROOM_WAIT_MS 120000

struct td_artifact {
	td_run *run;
	Trackd__V1__ArtifactLog log;
	Trackd__V1__ArtifactEntry *entries; /* n_entries of cap */
	size_t cap;
	uint64_t bytes;
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int td_artifact_begin(td_run *run, const char *name, const char *type, const char *description,
                      const char *metadata_json, td_artifact **out)
{
	*out = NULL;
	if (!run || !name || !type)
		return tdi_fail(TD_ERR_INVALID, "td_artifact_begin: run, name and type are needed");
	if (!artifact_name_valid(name, strlen(name)))
		return tdi_fail(TD_ERR_INVALID,
		                "artifact name '%.200s' is not a name: 1-%u bytes of "
		                "[A-Za-z0-9_.-], not '.' or '..'",
		                name, TRACKD_ARTIFACT_MAX_NAME_BYTES);
	if (!artifact_name_valid(type, strlen(type)))
		return tdi_fail(TD_ERR_INVALID,
		                "artifact type '%.200s' is not a name: 1-%u bytes of "
		                "[A-Za-z0-9_.-], not '.' or '..'",
		                type, TRACKD_ARTIFACT_MAX_NAME_BYTES);
	if (metadata_json && strlen(metadata_json) > TRACKD_ARTIFACT_MAX_METADATA_BYTES)
		return tdi_fail(TD_ERR_INVALID, "artifact metadata: %zu bytes of JSON, limit %u",
		                strlen(metadata_json), TRACKD_ARTIFACT_MAX_METADATA_BYTES);
	if (description && strlen(description) > TRACKD_ARTIFACT_MAX_DESCRIPTION)
		return tdi_fail(TD_ERR_INVALID, "artifact description: %zu bytes, limit %u",
		                strlen(description), TRACKD_ARTIFACT_MAX_DESCRIPTION);
	td_artifact *a = calloc(1, sizeof *a);
	if (!a)
		return tdi_fail(TD_ERR_NOMEM, "td_artifact_begin: out of memory");
	trackd__v1__artifact_log__init(&a->log);
	a->run = run;
	a->log.name = strdup(name);
	a->log.type = strdup(type);
	a->log.description = dup_or_null(description);
	a->log.metadata_json = dup_or_null(metadata_json);
	*out = a;
	return TD_OK;
}

static Trackd__V1__ArtifactEntry *new_entry(td_artifact *a, const char *path, char *norm)
{
	if (!files_name_normalise(path, norm, TRACKD_MAX_FILE_NAME_BYTES + 1)) {
		tdi_fail(TD_ERR_INVALID,
		         "artifact entry '%.200s' is not a name an artifact can hold (empty, "
		         "absolute after normalising, '..', a control character, or over %u bytes)",
		         path, TRACKD_MAX_FILE_NAME_BYTES);
		return NULL;
	}
	for (size_t i = 0; i < a->log.n_entries; i++)
		if (strcmp(a->entries[i].path, norm) == 0) {
			tdi_fail(TD_ERR_INVALID, "artifact entry '%.200s' was added already", norm);
			return NULL;
		}
	if (a->log.n_entries == TRACKD_ARTIFACT_MAX_ENTRIES) {
		tdi_fail(TD_ERR_INVALID, "artifact '%s': more than %u entries", a->log.name,
		         TRACKD_ARTIFACT_MAX_ENTRIES);
		return NULL;
	}
	if (a->log.n_entries == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 16;
		void *p = realloc(a->entries, cap * sizeof *a->entries);
		if (!p) {
			tdi_fail(TD_ERR_NOMEM, "artifact: out of memory");
			return NULL;
		}
		a->entries = p;
		a->cap = cap;
	}
	Trackd__V1__ArtifactEntry *e = &a->entries[a->log.n_entries];
	trackd__v1__artifact_entry__init(e);
	return e;
}

/* Fills the file entry e (the next of a's entries) with what the caller owns
 * no more: its path, SHA-256 (32 bytes) and base64 MD5; counts its size. */
static int add_entry(td_artifact *a, Trackd__V1__ArtifactEntry *e, char *path, uint8_t *sha256,
                     char *md5_b64, uint64_t size)
{
	e->path = path;
	e->has_sha256 = e->has_size = true;
	e->sha256.data = sha256;
	e->sha256.len = 32;
	e->size = size;
	e->md5_b64 = md5_b64;
	a->log.n_entries++;
	a->bytes += size;
	return TD_OK;
}

int td_artifact_add_bytes(td_artifact *a, const char *path, const void *data, size_t len)
{
	char norm[TRACKD_MAX_FILE_NAME_BYTES + 1];
	if (!a || !path || (!data && len))
		return tdi_fail(TD_ERR_INVALID, "td_artifact_add_bytes: artifact, path and data");
	Trackd__V1__ArtifactEntry *e = new_entry(a, path, norm);
	if (!e)
		return TD_ERR_INVALID;
	uint8_t *bytes = malloc(len ? len : 1);
	char *md5 = malloc(25);
	char *p = strdup(norm);
	uint8_t *digest = malloc(32);
	if (!bytes || !md5 || !p || !digest) {
		free(bytes), free(md5), free(p), free(digest);
		return tdi_fail(TD_ERR_NOMEM, "td_artifact_add_bytes: out of memory");
	}
	if (len)
		memcpy(bytes, data, len);
	unsigned int n = 32;
	EVP_Digest(bytes, len, digest, &n, EVP_sha256(), NULL);
	unsigned char m[EVP_MAX_MD_SIZE];
	EVP_Digest(bytes, len, m, &n, EVP_md5(), NULL);
	EVP_EncodeBlock((unsigned char *)md5, m, 16);
	td_run *run = a->run;
	int rc = TD_OK;
	if (!run->disabled) {
		/* Wait for room in the blob queue: the sender frees it as the agent
		 * stores what is queued. A file larger than the whole bound never
		 * fits: refused at once. */
		struct timespec t0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		pthread_mutex_lock(&run->mu);
		for (;;) {
			if (len > run->max_buffer_bytes) {
				rc = tdi_fail(
				    TD_ERR_FULL,
				    "artifact file '%.200s' (%zu bytes) is larger than the "
				    "client's max_buffer_bytes (%zu)",
				    norm, len, run->max_buffer_bytes);
				break;
			}
			if (run->blobs.bytes + len <= run->max_buffer_bytes) {
				rc = tdi_blob_enqueue_locked(run, bytes, len, digest);
				break;
			}
			pthread_cond_signal(&run->wake);
			pthread_mutex_unlock(&run->mu);
			struct timespec now, pause = {0, 20 * 1000 * 1000};
			nanosleep(&pause, NULL);
			clock_gettime(CLOCK_MONOTONIC, &now);
			pthread_mutex_lock(&run->mu);
			if ((now.tv_sec - t0.tv_sec) * 1000 > TDI_ARTIFACT_ROOM_WAIT_MS) {
				rc = tdi_fail(
				    TD_ERR_FULL,
				    "artifact file '%.200s': the agent took no file for %d s", norm,
				    TDI_ARTIFACT_ROOM_WAIT_MS / 1000);
				break;
			}
		}
		if (rc == TD_OK)
			pthread_cond_signal(&run->wake);
		pthread_mutex_unlock(&run->mu);
	} else {
		free(bytes);
	}
	if (rc) {
		free(bytes), free(md5), free(p), free(digest);
		return rc;
	}
	return add_entry(a, e, p, digest, md5, len);
}

int td_artifact_add_file(td_artifact *a, const char *path, const char *local_path)
{
	char norm[TRACKD_MAX_FILE_NAME_BYTES + 1];
	if (!a || !path || !local_path)
		return tdi_fail(TD_ERR_INVALID,
		                "td_artifact_add_file: artifact, path and local_path");
	int fd = open(local_path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return tdi_fail(TD_ERR_INVALID, "td_artifact_add_file: %.200s: %s", local_path,
		                fd >= 0 ? "not a regular file" : strerror(e));
	}
	Trackd__V1__ArtifactEntry *e = new_entry(a, path, norm);
	if (!e) {
		close(fd);
		return TD_ERR_INVALID;
	}
	/* Both digests in one read; the content is read again as it is sent. */
	EVP_MD_CTX *sha = EVP_MD_CTX_new(), *md5 = EVP_MD_CTX_new();
	uint8_t *buf = malloc(1 << 20);
	char *b64 = malloc(25), *p = strdup(norm);
	uint8_t *digest = malloc(32);
	int rc = sha && md5 && buf && b64 && p && digest
	             ? TD_OK
	             : tdi_fail(TD_ERR_NOMEM, "td_artifact_add_file: out of memory");
	uint64_t size = 0;
	if (rc == TD_OK) {
		EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
		EVP_DigestInit_ex(md5, EVP_md5(), NULL);
		for (;;) {
			ssize_t k = read(fd, buf, 1 << 20);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				rc = tdi_fail(TD_ERR_INVALID, "td_artifact_add_file: %.200s: %s",
				              local_path, strerror(errno));
				break;
			}
			if (k == 0)
				break;
			EVP_DigestUpdate(sha, buf, (size_t)k);
			EVP_DigestUpdate(md5, buf, (size_t)k);
			size += (uint64_t)k;
		}
	}
	if (rc == TD_OK) {
		unsigned char m[EVP_MAX_MD_SIZE];
		unsigned int n = 0;
		EVP_DigestFinal_ex(sha, digest, &n);
		EVP_DigestFinal_ex(md5, m, &n);
		EVP_EncodeBlock((unsigned char *)b64, m, 16);
		close(fd);
		/* The file is read again by path when sent: absolute, so that a
		 * chdir meanwhile changes nothing; no fd held while it waits. */
		char *abs = a->run->disabled ? NULL : realpath(local_path, NULL);
		if (!a->run->disabled && !abs)
			rc = tdi_fail(TD_ERR_INVALID, "td_artifact_add_file: %.200s: %s",
			              local_path, strerror(errno));
		if (abs) {
			pthread_mutex_lock(&a->run->mu);
			rc = tdi_blob_enqueue_file_locked(a->run, abs, (size_t)size, digest);
			pthread_mutex_unlock(&a->run->mu);
			if (rc)
				free(abs);
		}
	} else {
		close(fd);
	}
	EVP_MD_CTX_free(sha);
	EVP_MD_CTX_free(md5);
	free(buf);
	if (rc) {
		free(b64), free(p), free(digest);
		return rc;
	}
	return add_entry(a, e, p, digest, b64, size);
}

int td_artifact_add_reference(td_artifact *a, const char *path, const char *uri)
{
	char norm[TRACKD_MAX_FILE_NAME_BYTES + 1];
	if (!a || !path || !uri || !*uri)
		return tdi_fail(TD_ERR_INVALID,
		                "td_artifact_add_reference: artifact, path and uri");
	if (strlen(uri) > TRACKD_ARTIFACT_MAX_REF_BYTES)
		return tdi_fail(TD_ERR_INVALID, "reference URI: over %u bytes",
		                TRACKD_ARTIFACT_MAX_REF_BYTES);
	for (const char *c = uri; *c; c++)
		if ((unsigned char)*c < 0x20)
			return tdi_fail(TD_ERR_INVALID, "reference URI has a control character");
	Trackd__V1__ArtifactEntry *e = new_entry(a, path, norm);
	if (!e)
		return TD_ERR_INVALID;
	e->path = strdup(norm);
	e->ref = strdup(uri);
	if (!e->path || !e->ref) {
		free(e->path), free(e->ref);
		return tdi_fail(TD_ERR_NOMEM, "out of memory");
	}
	a->log.n_entries++;
	return TD_OK;
}

int td_artifact_commit(td_artifact *a, const char *const *aliases, size_t n_aliases)
{
	if (!a)
		return tdi_fail(TD_ERR_INVALID, "td_artifact_commit: no artifact");
	if (n_aliases > TRACKD_ARTIFACT_MAX_ALIASES)
		return tdi_fail(TD_ERR_INVALID, "artifact '%s': %zu aliases, limit %u", a->log.name,
		                n_aliases, TRACKD_ARTIFACT_MAX_ALIASES);
	for (size_t i = 0; i < n_aliases; i++)
		if (!aliases[i] || !artifact_alias_valid(aliases[i], strlen(aliases[i])))
			return tdi_fail(
			    TD_ERR_INVALID,
			    "alias '%.200s' is not an alias: 1-%u bytes of [A-Za-z0-9_.-], "
			    "not '.', '..' or a version (vN)",
			    aliases[i] ? aliases[i] : "", TRACKD_ARTIFACT_MAX_ALIAS_BYTES);
	Trackd__V1__ArtifactEntry **ptrs =
	    calloc(a->log.n_entries ? a->log.n_entries : 1, sizeof *ptrs);
	if (!ptrs)
		return tdi_fail(TD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < a->log.n_entries; i++)
		ptrs[i] = &a->entries[i];
	Trackd__V1__ArtifactLog log = a->log;
	log.entries = ptrs;
	log.aliases = (char **)aliases;
	log.n_aliases = n_aliases;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.body_case = TRACKD__V1__RECORD__BODY_LOG_ARTIFACT;
	rec.log_artifact = &log;
	int rc = a->run->disabled ? TD_OK : tdi_record_proto(a->run, "td_artifact_commit", &rec);
	free(ptrs);
	return rc;
}

void td_artifact_free(td_artifact *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->log.n_entries; i++) {
		free(a->entries[i].path);
		free(a->entries[i].sha256.data);
		free(a->entries[i].md5_b64);
		free(a->entries[i].ref);
	}
	free(a->entries);
	free(a->log.name);
	free(a->log.type);
	free(a->log.description);
	free(a->log.metadata_json);
	free(a);
}

int td_use_artifact(td_run *run, const char *resolved)
{
	char scratch[1024];
	struct artifact_ref ref;
	uint32_t v;
	if (!run || !resolved || !artifact_ref_parse(resolved, scratch, sizeof scratch, &ref) ||
	    !*ref.entity || !artifact_version_parse(ref.alias, &v))
		return tdi_fail(TD_ERR_INVALID,
		                "td_use_artifact: '%.200s' is not entity/project/name:vN",
		                resolved ? resolved : "");
	if (run->disabled)
		return TD_OK;
	Trackd__V1__ArtifactUse use = TRACKD__V1__ARTIFACT_USE__INIT;
	use.artifact = (char *)resolved;
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.body_case = TRACKD__V1__RECORD__BODY_USE_ARTIFACT;
	rec.use_artifact = &use;
	return tdi_record_proto(run, "td_use_artifact", &rec);
}
