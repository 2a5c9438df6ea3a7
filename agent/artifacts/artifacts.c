/* artifacts.c — the artifact store (artifacts.h). */
#include "artifacts.h"

#include "artifact_names.h"
#include "errors.h"
#include "fs.h"
#include "log.h"
#include "manifest.h"
#include "paths.h"
#include "run_files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_FILE   "index.json"
#define ENTRIES_FILE "entries.json"
#define MANIFEST     "manifest.json"
#define FILES_SUBDIR "files"
/* index.json and entries.json are read whole: bounded (10000 entries of
 * 1 KiB paths and URIs fit). */
#define INDEX_MAX_BYTES (64u << 20)
/* Versions listed by one ArtifactsRequest at most. */
#define LIST_MAX 10000

struct artifacts {
	char root[4096];
	blobs *blobs;
	pthread_mutex_t mu;
};

int artifacts_open(const struct artifacts_options *opts, artifacts **out)
{
	artifacts *a = calloc(1, sizeof *a);
	if (!a)
		return TRACKD_ENOMEM;
	snprintf(a->root, sizeof a->root, "%s/artifacts", opts->state_dir);
	a->blobs = opts->blobs;
	int rv = mkdir_parents(a->root, 0700);
	if (rv) {
		free(a);
		return rv;
	}
	pthread_mutex_init(&a->mu, NULL);
	*out = a;
	return TRACKD_OK;
}

void artifacts_free(artifacts *a)
{
	if (!a)
		return;
	pthread_mutex_destroy(&a->mu);
	free(a);
}

/* ---- helpers ---------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static void remove_tree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

static int name_dir(const artifacts *a, uint32_t uid, const char *entity, const char *project,
                    const char *name, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%" PRIu32 "/%s/%s/%s", a->root, uid, entity, project, name);
	return n < 0 || (size_t)n >= len ? TRACKD_ETOOBIG : TRACKD_OK;
}

/* index.json of a name dir, or an empty index when there is none. */
static json_object *load_index(const char *dir)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/" INDEX_FILE, dir);
	char *text = NULL;
	size_t len = 0;
	json_object *idx = NULL;
	if (fs_read_file(path, INDEX_MAX_BYTES, &text, &len) == 0)
		idx = json_tokener_parse(text);
	free(text);
	if (!idx || !json_object_is_type(idx, json_type_object)) {
		json_object_put(idx);
		idx = json_object_new_object();
	}
	json_object *v;
	if (!json_object_object_get_ex(idx, "versions", &v) ||
	    !json_object_is_type(v, json_type_array))
		json_object_object_add(idx, "versions", json_object_new_array());
	return idx;
}

static int save_index(const char *dir, json_object *idx)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/" INDEX_FILE, dir);
	const char *text = json_object_to_json_string_ext(idx, JSON_C_TO_STRING_PLAIN);
	return fs_write_atomic(path, text, strlen(text), 0600, true);
}

static json_object *versions_of(json_object *idx)
{
	json_object *v = NULL;
	json_object_object_get_ex(idx, "versions", &v);
	return v;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
	           ? json_object_get_string(v)
	           : "";
}

static uint64_t juint(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

static bool array_has(json_object *arr, const char *s)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(arr, i)), s) == 0)
			return true;
	return false;
}

static json_object *array_of(json_object *o, const char *key)
{
	json_object *v;
	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_array))
		return v;
	v = json_object_new_array();
	json_object_object_add(o, key, v);
	return v;
}

/* Whether the record at (index, position) was applied to this index before
 * (a replay); otherwise notes it as applied (saved with the index). */
static bool already_applied(json_object *idx, const struct artifacts_origin *o)
{
	uint64_t i = juint(idx, "applied_index"), p = juint(idx, "applied_position");
	if (o->index < i || (o->index == i && o->position <= p && i > 0))
		return true;
	json_object_object_add(idx, "applied_index", json_object_new_int64((int64_t)o->index));
	json_object_object_add(idx, "applied_position", json_object_new_int64(o->position));
	return false;
}

static json_object *version_numbered(json_object *versions, uint64_t n, size_t *at)
{
	for (size_t i = 0; i < json_object_array_length(versions); i++) {
		json_object *v = json_object_array_get_idx(versions, i);
		if (juint(v, "version") == n) {
			if (at)
				*at = i;
			return v;
		}
	}
	return NULL;
}

/* Puts alias on version `target` and takes it off every other version. */
static void move_alias(json_object *versions, json_object *target, const char *alias)
{
	size_t n = json_object_array_length(versions);
	for (size_t i = 0; i < n; i++) {
		json_object *v = json_object_array_get_idx(versions, i);
		json_object *al = array_of(v, "aliases");
		if (v == target) {
			if (!array_has(al, alias))
				json_object_array_add(al, json_object_new_string(alias));
			continue;
		}
		size_t m = json_object_array_length(al);
		for (size_t j = 0; j < m; j++)
			if (strcmp(json_object_get_string(json_object_array_get_idx(al, j)),
			           alias) == 0) {
				json_object_array_del_idx(al, j, 1);
				break;
			}
	}
}

/* ---- apply ------------------------------------------------------------------ */

static int check_log(const struct artifacts_origin *o, const Trackd__V1__ArtifactLog *l, char *err,
                     size_t errlen)
{
	if (!l->name || !artifact_name_valid(l->name, strlen(l->name))) {
		snprintf(err, errlen, "artifact name is not a name ([A-Za-z0-9_.-], 1-%u bytes)",
		         TRACKD_ARTIFACT_MAX_NAME_BYTES);
		return TRACKD_EINVAL;
	}
	if (!l->type || !artifact_name_valid(l->type, strlen(l->type))) {
		snprintf(err, errlen, "artifact type is not a name");
		return TRACKD_EINVAL;
	}
	if (!artifact_scope_valid(o->entity, strlen(o->entity)) ||
	    !artifact_scope_valid(o->project, strlen(o->project))) {
		snprintf(err, errlen, "the run's entity or project cannot name a store dir");
		return TRACKD_EINVAL;
	}
	if (l->n_aliases > TRACKD_ARTIFACT_MAX_ALIASES ||
	    l->n_entries > TRACKD_ARTIFACT_MAX_ENTRIES) {
		snprintf(err, errlen, "too many aliases or entries");
		return TRACKD_ETOOBIG;
	}
	for (size_t i = 0; i < l->n_aliases; i++)
		if (!artifact_alias_valid(l->aliases[i], strlen(l->aliases[i]))) {
			snprintf(err, errlen, "alias '%.64s' is not an alias", l->aliases[i]);
			return TRACKD_EINVAL;
		}
	for (size_t i = 0; i < l->n_entries; i++) {
		const Trackd__V1__ArtifactEntry *e = l->entries[i];
		if (!e->path || !files_name_valid(e->path, strlen(e->path))) {
			snprintf(err, errlen, "entry %zu: path is not a valid file name", i);
			return TRACKD_EINVAL;
		}
		bool file = e->has_sha256 && e->sha256.len == 32 && e->md5_b64 && *e->md5_b64;
		bool ref = e->ref && *e->ref && !e->has_sha256;
		if (file == ref) {
			snprintf(err, errlen,
			         "entry '%.200s': neither a file (sha256, md5) nor a ref", e->path);
			return TRACKD_EINVAL;
		}
	}
	return TRACKD_OK;
}

/* Builds version dir v<N> of `dir` whole (tmp, fsync, rename). */
static int build_version(artifacts *a, uint32_t uid, const char *dir, uint32_t version,
                         const Trackd__V1__ArtifactLog *l, const struct manifest_entry *sorted,
                         const size_t *order, char *err, size_t errlen)
{
	char tmp[4300], final[4300], files[4400];
	snprintf(tmp, sizeof tmp, "%s/.v%" PRIu32 ".tmp", dir, version);
	snprintf(final, sizeof final, "%s/v%" PRIu32, dir, version);
	remove_tree(tmp);
	remove_tree(final); /* built by a run of the agent that crashed before its index */
	snprintf(files, sizeof files, "%s/" FILES_SUBDIR, tmp);
	int rv = mkdir_parents(files, 0700);
	if (rv) {
		snprintf(err, errlen, "cannot create %s: %s", files, trackd_strerror(rv));
		return rv;
	}
	int files_fd = open(files, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (files_fd < 0) {
		snprintf(err, errlen, "cannot open %s", files);
		return trackd_err_from_errno(errno);
	}
	json_object *entries = json_object_new_array();
	for (size_t i = 0; i < l->n_entries && !rv; i++) {
		const Trackd__V1__ArtifactEntry *e = l->entries[order[i]];
		json_object *je = json_object_new_object();
		json_object_object_add(je, "path", json_object_new_string(sorted[i].path));
		json_object_object_add(je, "digest", json_object_new_string(sorted[i].digest));
		json_object_object_add(je, "size", json_object_new_int64((int64_t)sorted[i].size));
		char hex[65] = "";
		if (!sorted[i].ref) {
			files_hex_digest(e->sha256.data, hex);
			uint64_t size = 0;
			rv = blobs_link(a->blobs, uid, e->sha256.data, files_fd, e->path, &size);
			if (rv)
				snprintf(err, errlen, "file '%.200s' (sha256 %s): %s", e->path, hex,
				         rv == TRACKD_ENOENT ? "not in the blob store"
				                             : trackd_strerror(rv));
			else if (size != e->size) {
				snprintf(err, errlen,
				         "file '%.200s': %" PRIu64
				         " bytes, the record says %" PRIu64,
				         e->path, size, e->size);
				rv = TRACKD_EINVAL;
			}
		} else {
			json_object_object_add(je, "ref", json_object_new_string(sorted[i].ref));
		}
		json_object_object_add(je, "sha256", json_object_new_string(hex));
		json_object_array_add(entries, je);
	}
	close(files_fd);
	struct buf m;
	buf_init(&m, INDEX_MAX_BYTES);
	if (!rv)
		rv = manifest_json(sorted, l->n_entries, &m);
	char path[4500];
	if (!rv) {
		snprintf(path, sizeof path, "%s/" MANIFEST, tmp);
		rv = fs_write_atomic(path, m.data, m.len, 0600, true);
	}
	buf_fini(&m);
	if (!rv) {
		const char *text = json_object_to_json_string_ext(entries, JSON_C_TO_STRING_PLAIN);
		snprintf(path, sizeof path, "%s/" ENTRIES_FILE, tmp);
		rv = fs_write_atomic(path, text, strlen(text), 0600, true);
	}
	json_object_put(entries);
	if (!rv) {
		fsync_dir(files);
		if (rename(tmp, final) != 0)
			rv = trackd_err_from_errno(errno);
		else
			fsync_dir(dir);
	}
	if (rv) {
		if (!*err)
			snprintf(err, errlen, "cannot write the version: %s", trackd_strerror(rv));
		remove_tree(tmp);
	}
	return rv;
}

int artifacts_apply_log(artifacts *a, const struct artifacts_origin *o,
                        const Trackd__V1__ArtifactLog *l, uint32_t *version, char *err,
                        size_t errlen)
{
	if (errlen)
		err[0] = 0;
	int rv = check_log(o, l, err, errlen);
	if (rv)
		return rv;
	size_t n = l->n_entries;
	struct manifest_entry *sorted = calloc(n ? n : 1, sizeof *sorted);
	size_t *order = calloc(n ? n : 1, sizeof *order);
	if (!sorted || !order) {
		free(sorted);
		free(order);
		return TRACKD_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const Trackd__V1__ArtifactEntry *e = l->entries[i];
		sorted[i] = (struct manifest_entry){.path = e->path,
		                                    .digest = e->has_sha256 ? e->md5_b64 : e->ref,
		                                    .size = e->size,
		                                    .ref = e->has_sha256 ? NULL : e->ref};
	}
	manifest_sort(sorted, n);
	/* The record's index of each sorted entry (paths are unique). */
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			if (l->entries[j]->path == sorted[i].path)
				order[i] = j;
	char digest[33];
	manifest_digest(sorted, n, digest);
	char dir[4096];
	if (manifest_has_duplicate(sorted, n)) {
		snprintf(err, errlen, "two entries share a path");
		rv = TRACKD_EINVAL;
	} else
		rv = name_dir(a, o->uid, o->entity, o->project, l->name, dir, sizeof dir);
	if (rv) {
		free(sorted);
		free(order);
		return rv;
	}
	pthread_mutex_lock(&a->mu);
	rv = mkdir_parents(dir, 0700);
	json_object *idx = rv ? NULL : load_index(dir);
	json_object *versions = idx ? versions_of(idx) : NULL;
	json_object *target = NULL;
	uint32_t next = idx ? (uint32_t)juint(idx, "next") : 0;
	for (size_t i = 0; versions && i < json_object_array_length(versions); i++) {
		json_object *v = json_object_array_get_idx(versions, i);
		if (strcmp(jstr(v, "digest"), digest) == 0)
			target = v;
		if (juint(v, "version") + 1 > next)
			next = (uint32_t)(juint(v, "version") + 1);
	}
	bool replay = !rv && already_applied(idx, o);
	if (replay) {
		/* Applied before this crash: nothing changes (the version it made
		 * may even have been deleted since). */
		*version = target ? (uint32_t)juint(target, "version") : 0;
	} else if (!rv && !target) {
		for (size_t i = 0; i < n; i++)
			if (!sorted[i].ref &&
			    !blobs_have(a->blobs, o->uid, l->entries[order[i]]->sha256.data)) {
				char hex[65];
				files_hex_digest(l->entries[order[i]]->sha256.data, hex);
				snprintf(err, errlen,
				         "file '%.200s' (sha256 %s) is not in the blob store "
				         "(refused or "
				         "never sent): no version made",
				         sorted[i].path, hex);
				rv = TRACKD_ENOENT;
				break;
			}
		if (!rv && next > TRACKD_ARTIFACT_MAX_VERSION)
			rv = TRACKD_ETOOBIG;
		if (!rv)
			rv = build_version(a, o->uid, dir, next, l, sorted, order, err, errlen);
		if (!rv) {
			uint64_t bytes = 0, files = 0;
			for (size_t i = 0; i < n; i++)
				if (!sorted[i].ref) {
					bytes += sorted[i].size;
					files++;
				}
			char by[1024];
			snprintf(by, sizeof by, "%s/%s/%s", o->entity, o->project, o->run_id);
			target = json_object_new_object();
			json_object_object_add(target, "version", json_object_new_int64(next));
			json_object_object_add(target, "type", json_object_new_string(l->type));
			json_object_object_add(target, "digest", json_object_new_string(digest));
			json_object_object_add(target, "aliases", json_object_new_array());
			json_object_object_add(target, "size",
			                       json_object_new_int64((int64_t)bytes));
			json_object_object_add(target, "files",
			                       json_object_new_int64((int64_t)files));
			json_object_object_add(target, "created_at",
			                       json_object_new_double((double)o->time_us / 1e6));
			json_object_object_add(target, "logged_by", json_object_new_string(by));
			json_object_object_add(target, "used_by", json_object_new_array());
			json_object_object_add(
			    target, "description",
			    json_object_new_string(l->description ? l->description : ""));
			json_object_object_add(
			    target, "metadata",
			    json_object_new_string(
			        l->metadata_json && *l->metadata_json ? l->metadata_json : "{}"));
			json_object_array_add(versions, target);
			json_object_object_add(idx, "next",
			                       json_object_new_int64((int64_t)next + 1));
			move_alias(versions, target, "latest");
		}
	}
	if (!rv && !replay) {
		for (size_t i = 0; i < l->n_aliases; i++)
			move_alias(versions, target, l->aliases[i]);
		*version = (uint32_t)juint(target, "version");
		rv = save_index(dir, idx);
		if (rv)
			snprintf(err, errlen, "cannot write %s/" INDEX_FILE ": %s", dir,
			         trackd_strerror(rv));
	}
	pthread_mutex_unlock(&a->mu);
	json_object_put(idx);
	free(sorted);
	free(order);
	return rv;
}

int artifacts_apply_use(artifacts *a, const struct artifacts_origin *o,
                        const Trackd__V1__ArtifactUse *use, char *err, size_t errlen)
{
	char scratch[1024];
	struct artifact_ref ref;
	uint32_t version;
	if (!use->artifact || !artifact_ref_parse(use->artifact, scratch, sizeof scratch, &ref) ||
	    !*ref.entity || !artifact_version_parse(ref.alias, &version)) {
		snprintf(err, errlen, "'%.200s' is not entity/project/name:vN",
		         use->artifact ? use->artifact : "");
		return TRACKD_EINVAL;
	}
	char dir[4096];
	int rv = name_dir(a, o->uid, ref.entity, ref.project, ref.name, dir, sizeof dir);
	if (rv)
		return rv;
	char by[1024];
	snprintf(by, sizeof by, "%s/%s/%s", o->entity, o->project, o->run_id);
	pthread_mutex_lock(&a->mu);
	json_object *idx = load_index(dir);
	json_object *versions = versions_of(idx);
	json_object *v = version_numbered(versions, version, NULL);
	rv = v ? TRACKD_OK : TRACKD_ENOENT;
	if (v && !already_applied(idx, o)) {
		json_object *used = array_of(v, "used_by");
		if (!array_has(used, by))
			json_object_array_add(used, json_object_new_string(by));
		rv = save_index(dir, idx);
	}
	pthread_mutex_unlock(&a->mu);
	json_object_put(idx);
	if (rv == TRACKD_ENOENT)
		snprintf(err, errlen, "no artifact %.200s of this uid", use->artifact);
	return rv;
}

int artifacts_apply_change(artifacts *a, const struct artifacts_origin *o,
                           const Trackd__V1__ArtifactChange *c, char *err, size_t errlen)
{
	char scratch[1024];
	struct artifact_ref ref;
	uint32_t version;
	if (!c->artifact || !artifact_ref_parse(c->artifact, scratch, sizeof scratch, &ref) ||
	    !*ref.entity || !artifact_version_parse(ref.alias, &version)) {
		snprintf(err, errlen, "'%.200s' is not entity/project/name:vN",
		         c->artifact ? c->artifact : "");
		return TRACKD_EINVAL;
	}
	for (size_t i = 0; i < c->n_add_aliases; i++)
		if (!artifact_alias_valid(c->add_aliases[i], strlen(c->add_aliases[i]))) {
			snprintf(err, errlen, "alias '%.64s' is not an alias", c->add_aliases[i]);
			return TRACKD_EINVAL;
		}
	char dir[4096];
	int rv = name_dir(a, c->uid, ref.entity, ref.project, ref.name, dir, sizeof dir);
	if (rv)
		return rv;
	pthread_mutex_lock(&a->mu);
	json_object *idx = load_index(dir);
	json_object *versions = versions_of(idx);
	size_t at = 0;
	json_object *v = version_numbered(versions, version, &at);
	rv = v ? TRACKD_OK : TRACKD_ENOENT;
	if (v && !already_applied(idx, o)) {
		for (size_t i = 0; i < c->n_add_aliases; i++)
			move_alias(versions, v, c->add_aliases[i]);
		json_object *al = array_of(v, "aliases");
		for (size_t i = 0; i < c->n_remove_aliases; i++)
			for (size_t j = 0; j < json_object_array_length(al); j++)
				if (strcmp(json_object_get_string(json_object_array_get_idx(al, j)),
				           c->remove_aliases[i]) == 0) {
					json_object_array_del_idx(al, j, 1);
					break;
				}
		if (c->has_delete_ && c->delete_) {
			/* The dir first: a crash before index.json is saved leaves the
			 * version named without files, and the replay deletes it again. */
			char vdir[4300];
			snprintf(vdir, sizeof vdir, "%s/v%" PRIu32, dir, version);
			remove_tree(vdir);
			fsync_dir(dir);
			bool was_latest = array_has(array_of(v, "aliases"), "latest");
			json_object_array_del_idx(versions, at, 1);
			/* "latest" stays on the newest version left. */
			size_t n = json_object_array_length(versions);
			if (was_latest && n)
				move_alias(versions, json_object_array_get_idx(versions, n - 1),
				           "latest");
		}
		rv = save_index(dir, idx);
	}
	pthread_mutex_unlock(&a->mu);
	json_object_put(idx);
	if (rv == TRACKD_ENOENT)
		snprintf(err, errlen, "no artifact %.200s (deleted?)", c->artifact);
	return rv;
}

/* ---- queries ---------------------------------------------------------------- */

typedef void (*name_dir_fn)(void *arg, uint32_t uid, const char *entity, const char *project,
                            const char *name, const char *dir);

static bool dir_entry_ok(const struct dirent *d)
{
	return d->d_name[0] != '.' && (d->d_type == DT_DIR || d->d_type == DT_UNKNOWN);
}

/* Calls fn for each name dir of the store matching the filters ("" or NULL:
 * any), holding a->mu. */
static void walk_names(artifacts *a, const char *entity, const char *project, const char *name,
                       name_dir_fn fn, void *arg)
{
	DIR *ud = opendir(a->root);
	struct dirent *u;
	while (ud && (u = readdir(ud))) {
		char *end;
		unsigned long uid = strtoul(u->d_name, &end, 10);
		if (!dir_entry_ok(u) || *end || uid > UINT32_MAX)
			continue;
		char p1[4096];
		snprintf(p1, sizeof p1, "%.3000s/%.200s", a->root, u->d_name);
		DIR *ed = opendir(p1);
		struct dirent *e;
		while (ed && (e = readdir(ed))) {
			if (!dir_entry_ok(e) || (entity && *entity && strcmp(entity, e->d_name)))
				continue;
			char p2[4096];
			snprintf(p2, sizeof p2, "%.2000s/%.1000s", p1, e->d_name);
			DIR *pd = opendir(p2);
			struct dirent *p;
			while (pd && (p = readdir(pd))) {
				if (!dir_entry_ok(p) ||
				    (project && *project && strcmp(project, p->d_name)))
					continue;
				char p3[4096];
				snprintf(p3, sizeof p3, "%.3000s/%.300s", p2, p->d_name);
				DIR *nd = opendir(p3);
				struct dirent *nm;
				while (nd && (nm = readdir(nd))) {
					if (!dir_entry_ok(nm) ||
					    (name && *name && strcmp(name, nm->d_name)))
						continue;
					char p4[4096];
					snprintf(p4, sizeof p4, "%.3500s/%.200s", p3, nm->d_name);
					fn(arg, (uint32_t)uid, e->d_name, p->d_name, nm->d_name,
					   p4);
				}
				if (nd)
					closedir(nd);
			}
			if (pd)
				closedir(pd);
		}
		if (ed)
			closedir(ed);
	}
	if (ud)
		closedir(ud);
}

static char **strings_of(json_object *arr, size_t *n)
{
	size_t m = arr ? json_object_array_length(arr) : 0;
	char **out = calloc(m ? m : 1, sizeof *out);
	*n = 0;
	for (size_t i = 0; out && i < m; i++)
		if ((out[*n] = strdup(json_object_get_string(json_object_array_get_idx(arr, i)))))
			(*n)++;
	return out;
}

static Trackd__V1__ArtifactInfo *info_of(uint32_t uid, const char *entity, const char *project,
                                         const char *name, json_object *v)
{
	Trackd__V1__ArtifactInfo *ai = malloc(sizeof *ai);
	if (!ai)
		return NULL;
	trackd__v1__artifact_info__init(ai);
	char path[1024];
	uint32_t version = (uint32_t)juint(v, "version");
	snprintf(path, sizeof path, "%s/%s/%s:v%" PRIu32, entity, project, name, version);
	ai->entity = strdup(entity);
	ai->project = strdup(project);
	ai->name = strdup(name);
	ai->path = strdup(path);
	ai->type = strdup(jstr(v, "type"));
	ai->digest = strdup(jstr(v, "digest"));
	ai->logged_by = strdup(jstr(v, "logged_by"));
	ai->description = strdup(jstr(v, "description"));
	ai->metadata_json = strdup(jstr(v, "metadata"));
	ai->has_version = ai->has_uid = ai->has_size = ai->has_file_count = ai->has_created_at =
	    true;
	ai->version = version;
	ai->uid = uid;
	ai->size = juint(v, "size");
	ai->file_count = juint(v, "files");
	json_object *c;
	ai->created_at =
	    json_object_object_get_ex(v, "created_at", &c) ? json_object_get_double(c) : 0;
	ai->aliases = strings_of(array_of(v, "aliases"), &ai->n_aliases);
	ai->used_by = strings_of(array_of(v, "used_by"), &ai->n_used_by);
	return ai;
}

struct list_ctx {
	const Trackd__V1__ArtifactsRequest *q;
	uint32_t uid;
	bool admin;
	size_t max_bytes, bytes;
	Trackd__V1__ArtifactsReply *r;
	size_t cap;
	bool full;
};

static void list_one(void *arg, uint32_t uid, const char *entity, const char *project,
                     const char *name, const char *dir)
{
	struct list_ctx *c = arg;
	if (c->full || (!c->admin && uid != c->uid))
		return;
	json_object *idx = load_index(dir);
	json_object *versions = versions_of(idx);
	for (size_t i = 0; i < json_object_array_length(versions); i++) {
		json_object *v = json_object_array_get_idx(versions, i);
		if (c->q->type && *c->q->type && strcmp(c->q->type, jstr(v, "type")))
			continue;
		if (c->r->n_artifacts == LIST_MAX || c->bytes > c->max_bytes / 2) {
			c->full = true;
			break;
		}
		if (c->r->n_artifacts == c->cap) {
			size_t cap = c->cap ? 2 * c->cap : 16;
			void *p = realloc(c->r->artifacts, cap * sizeof *c->r->artifacts);
			if (!p)
				break;
			c->r->artifacts = p;
			c->cap = cap;
		}
		Trackd__V1__ArtifactInfo *ai = info_of(uid, entity, project, name, v);
		if (!ai)
			break;
		c->bytes += trackd__v1__artifact_info__get_packed_size(ai);
		c->r->artifacts[c->r->n_artifacts++] = ai;
	}
	json_object_put(idx);
}

static int info_order(const void *x, const void *y)
{
	const Trackd__V1__ArtifactInfo *a = *(Trackd__V1__ArtifactInfo *const *)x;
	const Trackd__V1__ArtifactInfo *b = *(Trackd__V1__ArtifactInfo *const *)y;
	int c = strcmp(a->entity, b->entity);
	c = c ? c : strcmp(a->project, b->project);
	c = c ? c : strcmp(a->name, b->name);
	return c ? c : (a->version > b->version) - (a->version < b->version);
}

static void split_project(const char *in, char *scratch, size_t cap, const char **entity,
                          const char **project)
{
	*entity = *project = "";
	if (!in || !*in)
		return;
	snprintf(scratch, cap, "%s", in);
	char *slash = strchr(scratch, '/');
	if (slash) {
		*slash = 0;
		*entity = scratch;
		*project = slash + 1;
	} else
		*project = scratch;
}

int artifacts_query_list(artifacts *a, const Trackd__V1__ArtifactsRequest *q, uint32_t uid,
                         bool admin, size_t max_bytes, Trackd__V1__ArtifactsReply **out, char *err,
                         size_t errlen)
{
	Trackd__V1__ArtifactsReply *r = malloc(sizeof *r);
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	trackd__v1__artifacts_reply__init(r);
	*out = r;
	char scratch[1024];
	const char *entity, *project;
	split_project(q->project, scratch, sizeof scratch, &entity, &project);
	struct list_ctx c = {.q = q, .uid = uid, .admin = admin, .max_bytes = max_bytes, .r = r};
	pthread_mutex_lock(&a->mu);
	walk_names(a, entity, project, q->name, list_one, &c);
	pthread_mutex_unlock(&a->mu);
	if (r->n_artifacts > 1)
		qsort(r->artifacts, r->n_artifacts, sizeof *r->artifacts, info_order);
	return 0;
}

/* A reference resolved: the version's index entry (a copy) and where. */
struct resolved {
	uint32_t uid;
	char entity[256], project[256], name[256], dir[4096];
	json_object *version;
};

struct resolve_ctx {
	const char *alias;
	uint32_t uid;
	bool admin;
	struct resolved found;
	size_t matches, refused;
	char where[512]; /* the first two matches, for an ambiguity */
};

static json_object *find_version(json_object *versions, const char *alias)
{
	uint32_t want;
	bool by_version = artifact_version_parse(alias, &want);
	for (size_t i = 0; i < json_object_array_length(versions); i++) {
		json_object *v = json_object_array_get_idx(versions, i);
		if (by_version ? juint(v, "version") == want
		               : array_has(array_of(v, "aliases"), alias))
			return v;
	}
	return NULL;
}

static void resolve_one(void *arg, uint32_t uid, const char *entity, const char *project,
                        const char *name, const char *dir)
{
	struct resolve_ctx *c = arg;
	json_object *idx = load_index(dir);
	json_object *v = find_version(versions_of(idx), c->alias);
	if (v && !c->admin && uid != c->uid) {
		c->refused++;
	} else if (v) {
		if (c->matches++ == 0) {
			c->found.uid = uid;
			snprintf(c->found.entity, sizeof c->found.entity, "%s", entity);
			snprintf(c->found.project, sizeof c->found.project, "%s", project);
			snprintf(c->found.name, sizeof c->found.name, "%s", name);
			snprintf(c->found.dir, sizeof c->found.dir, "%s", dir);
			c->found.version = json_object_get(v);
		}
		size_t used = strlen(c->where);
		if (c->matches <= 2)
			snprintf(c->where + used, sizeof c->where - used,
			         "%s%s/%s/%s (uid %" PRIu32 ")", used ? ", " : "", entity, project,
			         name, uid);
	}
	json_object_put(idx);
}

static int resolve(artifacts *a, const char *text, const char *project_hint, uint32_t uid,
                   bool admin, struct resolved *out, char *err, size_t errlen)
{
	char scratch[1024];
	struct artifact_ref ref;
	if (!text || !artifact_ref_parse(text, scratch, sizeof scratch, &ref)) {
		snprintf(
		    err, errlen,
		    "'%.200s' is not an artifact reference ([[entity/]project/]name[:alias|:vN], "
		    "names of [A-Za-z0-9_.-])",
		    text ? text : "");
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	char hint_scratch[1024];
	const char *hint_entity, *hint_project;
	split_project(project_hint, hint_scratch, sizeof hint_scratch, &hint_entity, &hint_project);
	const char *entity = *ref.entity ? ref.entity : hint_entity;
	const char *project = *ref.project ? ref.project : hint_project;
	struct resolve_ctx c = {.alias = ref.alias, .uid = uid, .admin = admin};
	pthread_mutex_lock(&a->mu);
	walk_names(a, entity, project, ref.name, resolve_one, &c);
	pthread_mutex_unlock(&a->mu);
	if (c.matches > 1) {
		json_object_put(c.found.version);
		snprintf(err, errlen,
		         "'%.200s' names more than one artifact (%s): give entity/project/", text,
		         c.where);
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	if (c.matches == 0 && c.refused) {
		snprintf(err, errlen, "artifact '%.200s' belongs to another user", text);
		return TRACKD__V1__ERROR_CODE__ERROR_PERMISSION_DENIED;
	}
	if (c.matches == 0) {
		snprintf(err, errlen, "no artifact '%.200s'", text);
		return TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND;
	}
	*out = c.found;
	return 0;
}

void artifacts_change_fini(Trackd__V1__ArtifactChange *c)
{
	free(c->artifact);
	for (size_t i = 0; i < c->n_add_aliases; i++)
		free(c->add_aliases[i]);
	for (size_t i = 0; i < c->n_remove_aliases; i++)
		free(c->remove_aliases[i]);
	free(c->add_aliases);
	free(c->remove_aliases);
	trackd__v1__artifact_change__init(c);
}

static char **copy_strings(char *const *in, size_t n)
{
	char **out = calloc(n ? n : 1, sizeof *out);
	for (size_t i = 0; out && i < n; i++)
		out[i] = strdup(in[i]);
	return out;
}

int artifacts_prepare_change(artifacts *a, const Trackd__V1__ArtifactChangeRequest *q, uint32_t uid,
                             bool admin, Trackd__V1__ArtifactChange *change, char *run_id,
                             size_t run_id_len, char *err, size_t errlen)
{
	trackd__v1__artifact_change__init(change);
	bool del = q->has_delete_ && q->delete_;
	if (!del && q->n_add_aliases == 0 && q->n_remove_aliases == 0) {
		snprintf(err, errlen,
		         "nothing to change: give aliases to add or remove, or delete");
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	if (q->n_add_aliases > TRACKD_ARTIFACT_MAX_ALIASES ||
	    q->n_remove_aliases > TRACKD_ARTIFACT_MAX_ALIASES) {
		snprintf(err, errlen, "more than %u aliases", TRACKD_ARTIFACT_MAX_ALIASES);
		return TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE;
	}
	for (size_t i = 0; i < q->n_add_aliases; i++)
		if (!artifact_alias_valid(q->add_aliases[i], strlen(q->add_aliases[i]))) {
			snprintf(err, errlen,
			         "'%.64s' is not an alias (1-%u bytes of [A-Za-z0-9_.-], not a "
			         "version vN)",
			         q->add_aliases[i], TRACKD_ARTIFACT_MAX_ALIAS_BYTES);
			return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
		}
	struct resolved r;
	int code = resolve(a, q->artifact, q->project, uid, admin, &r, err, errlen);
	if (code)
		return code;
	char path[1024];
	snprintf(path, sizeof path, "%s/%s/%s:v%" PRIu64, r.entity, r.project, r.name,
	         juint(r.version, "version"));
	const char *by = jstr(r.version, "logged_by");
	const char *slash = strrchr(by, '/');
	snprintf(run_id, run_id_len, "%s", slash ? slash + 1 : by);
	json_object_put(r.version);
	change->artifact = strdup(path);
	change->has_uid = true;
	change->uid = r.uid;
	change->add_aliases = copy_strings(q->add_aliases, q->n_add_aliases);
	change->n_add_aliases = change->add_aliases ? q->n_add_aliases : 0;
	change->remove_aliases = copy_strings(q->remove_aliases, q->n_remove_aliases);
	change->n_remove_aliases = change->remove_aliases ? q->n_remove_aliases : 0;
	change->has_delete_ = del;
	change->delete_ = del;
	if (!change->artifact || !*run_id) {
		artifacts_change_fini(change);
		snprintf(err, errlen, "the version names no run that logged it");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	return 0;
}

static json_object *load_entries(const struct resolved *r)
{
	char path[4300];
	snprintf(path, sizeof path, "%s/v%" PRIu64 "/" ENTRIES_FILE, r->dir,
	         juint(r->version, "version"));
	char *text = NULL;
	size_t len = 0;
	json_object *e = NULL;
	if (fs_read_file(path, INDEX_MAX_BYTES, &text, &len) == 0)
		e = json_tokener_parse(text);
	free(text);
	if (e && !json_object_is_type(e, json_type_array)) {
		json_object_put(e);
		e = NULL;
	}
	return e;
}

int artifacts_query_one(artifacts *a, const Trackd__V1__ArtifactRequest *q, uint32_t uid,
                        bool admin, Trackd__V1__ArtifactReply **out, char *err, size_t errlen)
{
	struct resolved r;
	int code = resolve(a, q->artifact, q->project, uid, admin, &r, err, errlen);
	if (code)
		return code;
	Trackd__V1__ArtifactReply *rep = malloc(sizeof *rep);
	if (!rep) {
		json_object_put(r.version);
		snprintf(err, errlen, "out of memory");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	trackd__v1__artifact_reply__init(rep);
	*out = rep;
	rep->artifact = info_of(r.uid, r.entity, r.project, r.name, r.version);
	json_object *entries = load_entries(&r);
	char path[4300];
	snprintf(path, sizeof path, "%s/v%" PRIu64 "/" MANIFEST, r.dir,
	         juint(r.version, "version"));
	json_object_put(r.version);
	char *manifest = NULL;
	size_t mlen = 0;
	if (!entries || fs_read_file(path, INDEX_MAX_BYTES, &manifest, &mlen) != 0) {
		json_object_put(entries);
		free(manifest);
		snprintf(err, errlen, "the store's files of this version cannot be read");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	rep->manifest_json = manifest;
	size_t n = json_object_array_length(entries);
	rep->entries = calloc(n ? n : 1, sizeof *rep->entries);
	for (size_t i = 0; rep->entries && i < n; i++) {
		json_object *je = json_object_array_get_idx(entries, i);
		Trackd__V1__ArtifactReply__Entry *e = malloc(sizeof *e);
		if (!e)
			break;
		trackd__v1__artifact_reply__entry__init(e);
		e->path = strdup(jstr(je, "path"));
		e->digest = strdup(jstr(je, "digest"));
		e->sha256 = strdup(jstr(je, "sha256"));
		if (*jstr(je, "ref"))
			e->ref = strdup(jstr(je, "ref"));
		e->has_size = true;
		e->size = juint(je, "size");
		rep->entries[rep->n_entries++] = e;
	}
	json_object_put(entries);
	return 0;
}

int artifacts_query_file(artifacts *a, const Trackd__V1__ArtifactFileRequest *q, uint32_t uid,
                         bool admin, size_t max_bytes, Trackd__V1__ArtifactFileReply **out,
                         char *err, size_t errlen)
{
	if (!q->path || !files_name_valid(q->path, strlen(q->path))) {
		snprintf(err, errlen, "path is not a valid file name");
		return TRACKD__V1__ERROR_CODE__ERROR_INVALID;
	}
	struct resolved r;
	int code = resolve(a, q->artifact, NULL, uid, admin, &r, err, errlen);
	if (code)
		return code;
	char dir[4300];
	snprintf(dir, sizeof dir, "%s/v%" PRIu64 "/" FILES_SUBDIR, r.dir,
	         juint(r.version, "version"));
	json_object_put(r.version);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	/* The agent made every dir below files/ itself; the last component is
	 * still opened O_NOFOLLOW. */
	int fd = dfd < 0 ? -1 : openat(dfd, q->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd >= 0)
		close(dfd);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "no file '%.200s' in %.200s", q->path, q->artifact);
		return TRACKD__V1__ERROR_CODE__ERROR_NOT_FOUND;
	}
	/* What fits in a reply beside its framing. */
	size_t room = max_bytes > 4096 ? max_bytes - 4096 : 1024;
	if (q->has_max_bytes && q->max_bytes && q->max_bytes < room)
		room = (size_t)q->max_bytes;
	uint64_t offset = q->has_offset ? q->offset : 0;
	uint64_t size = (uint64_t)st.st_size;
	size_t want = offset >= size ? 0 : (size_t)(size - offset < room ? size - offset : room);
	Trackd__V1__ArtifactFileReply *rep = malloc(sizeof *rep);
	uint8_t *data = malloc(want ? want : 1);
	if (!rep || !data) {
		free(rep);
		free(data);
		close(fd);
		snprintf(err, errlen, "out of memory");
		return TRACKD__V1__ERROR_CODE__ERROR_UNAVAILABLE;
	}
	size_t got = 0;
	while (got < want) {
		ssize_t k = pread(fd, data + got, want - got, (off_t)(offset + got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(fd);
	trackd__v1__artifact_file_reply__init(rep);
	rep->has_offset = rep->has_data = rep->has_size = true;
	rep->offset = offset;
	rep->data.data = data;
	rep->data.len = got;
	rep->size = size;
	*out = rep;
	return 0;
}
