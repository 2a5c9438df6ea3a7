/*
 * artifacts.h — the agent's artifact store: versions of named artifacts
 * (W&B's log_artifact / use_artifact), made from ArtifactLog records whose
 * files are blobs of the sender's uid (blobs.h), and the queries that read
 * them back.
 *
 * Layout, under <state_dir>/artifacts/ (0700):
 *   <uid>/<entity>/<project>/<name>/index.json   the versions (below)
 *   <uid>/<entity>/<project>/<name>/v<N>/manifest.json   W&B's manifest
 *   <uid>/<entity>/<project>/<name>/v<N>/entries.json    path, digest,
 *       size, sha256 (hex) and ref of each entry, sorted by path
 *   <uid>/<entity>/<project>/<name>/v<N>/files/<path>    hard links to the
 *       blobs (blobs_link)
 * index.json is {"versions":[{version, type, digest, aliases, size, files,
 * created_at, logged_by, used_by, description, metadata}]}: the only thing a
 * query trusts. A version exists once its line is in index.json; its dir is
 * built whole under .v<N>.tmp, fsync'd and renamed to v<N> before index.json
 * is replaced (written to a temp, fsync'd, renamed, dir fsync'd). A crash in
 * between leaves a dir no index names: the replay of the record rebuilds it.
 *
 * Durability and replay: the store is persisted, not rebuilt at start: it is
 * derived from the log in log order by the local sink. Each index.json keeps
 * the (log index, position in its batch) of the last record applied to it
 * ("applied"), and a record at or before it is not applied again: a replay
 * after a crash before the sink's checkpoint changes nothing, so version
 * numbers, aliases and deletions are the same on every replay. Version
 * numbers are never reused ("next" counts on past deleted versions).
 *
 * Versions: per (uid, entity, project, name), v0, v1, …; a log whose
 * artifact digest (manifest.h) equals an existing version's makes no new
 * version: its aliases are added to that version. "latest" is always on the
 * newest version made; an alias is on one version of a name at a time. A log
 * naming a blob the uid's store lacks (a file the agent refused: over a limit
 * or the disk budget) makes no version at all (logged, TRACKD_ENOENT).
 *
 * Garbage: a version's files are hard links to its blobs, so the blob store's
 * sweep (which deletes blobs no one else links) keeps every blob any version
 * holds; one content logged in many versions is one inode.
 *
 * Access (ARCHITECTURE.md contract 7): a uid reads only its own artifacts,
 * admin (root, the admin group) all; a reference that exists only for
 * another uid is answered ERROR_PERMISSION_DENIED.
 *
 * Threading: one mutex guards the store; apply calls come from the local
 * sink's thread, queries from the query thread. Errors: apply returns
 * trackd_err values; queries return a trackd.proto ErrorCode (0 = answered)
 * with the reason in err.
 */
#ifndef TRACKD_ARTIFACTS_H
#define TRACKD_ARTIFACTS_H

#include "blobs.h"
#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct artifacts artifacts;

struct artifacts_options {
	const char *state_dir; /* the store is <state_dir>/artifacts */
	blobs *blobs;          /* borrowed; outlives the store */
};

int artifacts_open(const struct artifacts_options *opts, artifacts **out);
void artifacts_free(artifacts *a);

/* Who a record came from: the sender's uid and the run it names. */
struct artifacts_origin {
	uint32_t uid;
	const char *entity, *project, *run_id;
	int64_t time_us;   /* the log record's receive time */
	uint64_t index;    /* the record's log index (> 0) */
	uint32_t position; /* its place in the batch of that index */
};

/* Applies an ArtifactLog: a new version, or aliases on an existing one.
 * *version the version it names (on success). TRACKD_EINVAL for a record
 * breaking a rule (named in err), TRACKD_ENOENT for a missing blob. */
int artifacts_apply_log(artifacts *a, const struct artifacts_origin *o,
                        const Trackd__V1__ArtifactLog *log, uint32_t *version, char *err,
                        size_t errlen);

/* Applies an ArtifactUse: the run joins the version's used_by. */
int artifacts_apply_use(artifacts *a, const struct artifacts_origin *o,
                        const Trackd__V1__ArtifactUse *use, char *err, size_t errlen);

/* Applies an ArtifactChange (made by the agent: its uid names the store).
 * TRACKD_ENOENT when the version is gone (deleted since: nothing to do). */
int artifacts_apply_change(artifacts *a, const struct artifacts_origin *o,
                           const Trackd__V1__ArtifactChange *change, char *err, size_t errlen);

/* Checks an ArtifactChangeRequest for `uid` (owner or admin), resolving its
 * reference: fills *change (strings malloc'd: artifacts_change_fini) and the
 * id of the run that logged the version (the record's run) in run_id.
 * Returns an ErrorCode (0: ok). */
int artifacts_prepare_change(artifacts *a, const Trackd__V1__ArtifactChangeRequest *q, uint32_t uid,
                             bool admin, Trackd__V1__ArtifactChange *change, char *run_id,
                             size_t run_id_len, char *err, size_t errlen);
void artifacts_change_fini(Trackd__V1__ArtifactChange *change);

/* Queries (trackd.proto ArtifactsRequest, ArtifactRequest,
 * ArtifactFileRequest). *out is malloc'd throughout (free_unpacked). */
int artifacts_query_list(artifacts *a, const Trackd__V1__ArtifactsRequest *q, uint32_t uid,
                         bool admin, size_t max_bytes, Trackd__V1__ArtifactsReply **out, char *err,
                         size_t errlen);
int artifacts_query_one(artifacts *a, const Trackd__V1__ArtifactRequest *q, uint32_t uid,
                        bool admin, Trackd__V1__ArtifactReply **out, char *err, size_t errlen);
int artifacts_query_file(artifacts *a, const Trackd__V1__ArtifactFileRequest *q, uint32_t uid,
                         bool admin, size_t max_bytes, Trackd__V1__ArtifactFileReply **out,
                         char *err, size_t errlen);

#endif
