/*
 * blobs.h — the agent's blob store: file content (media, saved files) sent by
 * clients as bytes, kept by SHA-256 under <state_dir>/blobs/.
 *
 * Layout: blobs/<uid>/<sha256 hex> (complete, verified, durable) and
 * blobs/<uid>/tmp/<sha256 hex>.part (being received). Each uid has its own
 * store: asking which digests are missing never tells a user what another
 * user has sent, and a sink materialising a record of uid U only ever reads
 * blobs/U/. The agent never opens a path a client names: a blob is written
 * only from bytes that came over the socket, and every file is opened with
 * openat on a directory fd the store holds, O_NOFOLLOW: a symlink planted in
 * the store (as a uid dir, a blob or a partial file) makes the operation
 * fail or is replaced (rename over it), never followed.
 *
 * Protocol (trackd.proto BlobQuery/BlobChunk): the client asks which digests
 * are missing, then sends each missing blob in pieces from offset 0 in order.
 * A piece at offset 0 starts the partial file anew; a piece at the end of the
 * partial extends it; a piece before that end that finishes inside it is a
 * resend (NNG resends after a reconnect) and is answered without writing;
 * any other offset is answered with the partial's length (0 if none), and the
 * client goes on from there. The last piece makes the store read the partial
 * back, check its SHA-256 against the name (a mismatch deletes it: the
 * client starts again), fsync it, rename it into place and fsync the dir:
 * only the answer to that piece says `complete`, and only then is the blob
 * durable. Partial files are not synced: after a crash a partial may hold
 * garbage past what the disk kept, which the final check catches.
 *
 * Limits: a blob over `max_file_bytes` is refused at its first piece
 * (TRACKD_ETOOBIG, the message names blobs.max_file_bytes); the blobs of one
 * run over `max_run_bytes` likewise (blobs.max_run_bytes; counted in memory
 * since the agent started, per run, for up to BLOBS_RUNS_TRACKED runs). Disk:
 * the caller passes the room its disk budget leaves (blobs count in the same
 * budget as the log, txlog.h); a piece that does not fit is refused with
 * TRACKD_ENOSPC, retryable, and so is a full disk.
 *
 * Release: a blob's references are its hard links. A sink that keeps a blob
 * links it into its own place (the local sink into the run's files/ dir,
 * blobs_link) and holds it as long as it needs it; an uploading sink holds
 * it under blobs/<uid>/held/<holder>/<sha256 hex> (blobs_hold) until
 * uploaded, reads it from there (blobs_open_held) and releases it
 * (blobs_release; blobs_release_all when it forgets a run). The holder names
 * the sink and run ("wandb-<run>"), so one run's release never drops
 * another's hold of the same content. blobs_sweep deletes blobs no one else
 * links (st_nlink == 1) once older than the grace period (a blob is sent
 * before the record that uses it) counted back from the time before which
 * every sink has applied every record (blobs_marks): a record whose sink is
 * behind — the local sink stalled on a full disk, the upload sink holding a
 * run back through a long outage — has not linked or held its blob yet, and
 * its blob stays, however old. Stale partial files go after the grace.
 *
 * Budget: blobs_disk_bytes counts partial files and the blobs no run dir
 * links yet (not yet delivered), as the log counts records no sink has
 * passed; once the local sink has linked a blob into a run dir it belongs to
 * the run store (as history.jsonl does) and leaves the count, though the
 * store keeps its own link (a later send of the same content transfers no
 * bytes) until the run dir is deleted and the grace has passed. Held blobs
 * count (once per hold) until released, linked by a run dir or not: they are
 * not yet delivered upstream. blobs_sweep recounts from the disk: partial
 * files, blobs no one links, and held files.
 *
 * Threading: every function is safe from any thread (ingest's worker writes,
 * the local sink links, the main loop sweeps). Errors: trackd_err values.
 */
#ifndef TRACKD_BLOBS_H
#define TRACKD_BLOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct blobs blobs;

#define BLOBS_RUNS_TRACKED 4096

struct blobs_options {
	const char *state_dir;   /* the store is <state_dir>/blobs (created, 0700) */
	uint64_t max_file_bytes; /* one blob; > 0 */
	uint64_t max_run_bytes;  /* all blobs of one run; > 0 */
};

/* Opens the store, removing partial files left by a previous run of the agent
 * (their clients start again) and counting its bytes. *out is owned by the
 * caller (blobs_free). */
int blobs_open(const struct blobs_options *opts, blobs **out);
void blobs_free(blobs *b);

/* Changes the limits (SIGHUP reload). */
void blobs_set_limits(blobs *b, uint64_t max_file_bytes, uint64_t max_run_bytes);

/* Bytes of the store on disk: complete blobs and partial files. */
uint64_t blobs_disk_bytes(blobs *b);

/* Whether uid's store holds digest (complete). */
bool blobs_have(blobs *b, uint32_t uid, const uint8_t digest[32]);

struct blobs_put_result {
	uint64_t have;  /* bytes of the blob the store now holds */
	bool complete;  /* stored, verified and durable */
	bool duplicate; /* nothing written: already held (a resend, or a known blob) */
};

/* One piece (see the protocol above). `room` is what the disk budget leaves
 * (UINT64_MAX: no budget). Errors: TRACKD_EINVAL (size 0 pieces past the end,
 * an offset+len over size), TRACKD_ETOOBIG (a limit, named in err),
 * TRACKD_ENOSPC (budget or disk: retryable), TRACKD_ECORRUPT (the SHA-256 of
 * what arrived is not the digest: the partial is deleted), TRACKD_EIO,
 * TRACKD_ESYS (a planted symlink or non-dir where the store expects a dir). */
int blobs_put(blobs *b, uint32_t uid, const char *run_id, const uint8_t digest[32], uint64_t size,
              uint64_t offset, const void *data, size_t len, uint64_t room,
              struct blobs_put_result *res, char *err, size_t errlen);

/* Materialises uid's blob `digest` as `name` (a valid run file name,
 * run_files.h) under the directory `dir_fd` (held by the caller): the
 * directories of name are created (0755) with mkdirat and entered with
 * O_NOFOLLOW, then the blob is hard-linked there (a copy, written to a temp
 * file, fsync'd and renamed, when a link is not possible); whatever was at
 * name (a symlink included) is replaced, not followed; the parent dir is
 * fsync'd. *size is the blob's size. TRACKD_ENOENT when the store does not
 * hold the blob. */
int blobs_link(blobs *b, uint32_t uid, const uint8_t digest[32], int dir_fd, const char *name,
               uint64_t *size);

/* Holds uid's blob `digest` for `holder` (one path component of
 * [A-Za-z0-9_.-]): a hard link under held/<holder>/, fsync'd; holding it
 * again is a no-op. *size is the blob's size. TRACKD_ENOENT when the store
 * does not hold the blob (swept, or never sent). */
int blobs_hold(blobs *b, uint32_t uid, const uint8_t digest[32], const char *holder,
               uint64_t *size);

/* Opens a held blob for reading: *fd (O_RDONLY, owned by the caller) and its
 * *size. TRACKD_ENOENT when it is not held. */
int blobs_open_held(blobs *b, uint32_t uid, const uint8_t digest[32], const char *holder, int *fd,
                    uint64_t *size);

/* Drops a hold (not held: success). blobs_release_all drops every hold of
 * holder and its dir. */
int blobs_release(blobs *b, uint32_t uid, const uint8_t digest[32], const char *holder);
int blobs_release_all(blobs *b, uint32_t uid, const char *holder);

/* Deletes complete blobs that no one links and that were complete grace_s
 * before applied_before (a wall time before which every record in the log was
 * applied by every sink: blobs_marks_applied_before; time(NULL) with no
 * sinks), and partial files older than grace_s. Returns how many. */
size_t blobs_sweep(blobs *b, int64_t grace_s, time_t applied_before);

/* When every record was applied, from marks: the sweeper adds one (wall
 * time, the log's last index then) each pass; given the lowest position of
 * the log's sink cursors now, the newest mark at or below it says every
 * record appended before its time is applied. 0 when none is (the sinks are
 * behind every mark kept: nothing is swept). Marks older than that one are
 * dropped; past BLOBS_MARKS the oldest goes (a sink more than BLOBS_MARKS
 * passes behind keeps every blob until it catches up). Not thread-safe: the
 * sweeper's. */
#define BLOBS_MARKS 256
struct blobs_marks {
	time_t when[BLOBS_MARKS];
	uint64_t index[BLOBS_MARKS];
	size_t n;
};
void blobs_marks_add(struct blobs_marks *m, time_t when, uint64_t last_index);
time_t blobs_marks_applied_before(struct blobs_marks *m, uint64_t min_position);

/* SHA-256 of a buffer (OpenSSL's). */
void blobs_sha256(const void *data, size_t len, uint8_t digest[32]);
/* SHA-256 of everything fd (borrowed) holds, read with pread from offset 0 in
 * pieces of a bounded buffer. TRACKD_ENOMEM, TRACKD_EIO. */
int blobs_sha256_fd(int fd, uint8_t digest[32]);

#endif
