/*
 * run_file_read.h — reading one materialised run file (<run dir>/files/NAME)
 * for the RunFileRead query: a bounded piece of it, and only if its content
 * is the one files.jsonl recorded.
 *
 * The name must pass files_name_valid (run_files.h): never absolute, no '..'.
 * It is opened component by component under the files/ dir fd with
 * O_NOFOLLOW, so a symlink planted in a run dir redirects nothing, and the
 * file must be a regular file. Before any byte is handed out the file's size
 * and SHA-256 are checked against the recorded ones (a mismatch is
 * TRACKD_ECORRUPT: reported, never served). Hashing a large file for each of
 * its pieces would cost its size per piece, so a verified file is remembered
 * by (device, inode, size, mtime, ctime) in a small cache
 * (RUN_FILE_VERIFIED_SLOTS, least recently used replaced): any write or
 * rename onto the file changes its ctime and makes it checked again.
 *
 * Bounds: a piece is at most TRACKD_RUN_FILE_READ_MAX bytes (length 0: that
 * much); a longer length, or an offset past the size, is TRACKD_EINVAL.
 *
 * Threading: run_file_read is safe from any thread; the cache has its own
 * lock, held only to look up or record, never while reading.
 */
#ifndef TRACKD_LOCAL_RUN_FILE_READ_H
#define TRACKD_LOCAL_RUN_FILE_READ_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RUN_FILE_VERIFIED_SLOTS 16

struct run_file_verified {
	pthread_mutex_t mu;
	uint64_t tick;
	struct run_file_verified_slot {
		dev_t dev;
		ino_t ino;
		uint64_t size;
		int64_t mtime_ns, ctime_ns;
		uint8_t digest[32];
		uint64_t used; /* 0: empty */
	} slot[RUN_FILE_VERIFIED_SLOTS];
};

void run_file_verified_init(struct run_file_verified *v);
void run_file_verified_fini(struct run_file_verified *v);

/* Reads bytes [offset, offset + min(length, size - offset)) of file `name`
 * under the files/ dir `files_fd` (borrowed), whose recorded content is
 * `size` bytes with SHA-256 `digest`. On success *data (malloc'd, the caller
 * frees; NULL when *len is 0) holds *len bytes. Errors, with a message in
 * err: TRACKD_EINVAL (the name, the length or the offset), TRACKD_ENOENT
 * (not materialised), TRACKD_ECORRUPT (not a regular file, or its size or
 * SHA-256 is not the recorded one), TRACKD_ESYS (a symlink on the way),
 * TRACKD_EIO, TRACKD_ENOMEM. `cache` may be NULL (verify every time). */
int run_file_read(int files_fd, const char *name, const uint8_t digest[32], uint64_t size,
                  uint64_t offset, uint64_t length, struct run_file_verified *cache, uint8_t **data,
                  size_t *len, char *err, size_t errlen);

#endif
