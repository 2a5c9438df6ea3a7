/*
 * files.h — the file operations of the local sink: atomic whole-file writes,
 * appends, syncing, cutting a file back, and path components made safe from
 * user-given names. Thread-safe (no state). Errors are trackd_err values.
 */
#ifndef TRACKD_SINKS_LOCAL_FILES_H
#define TRACKD_SINKS_LOCAL_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paths.h"

/* Writes `path` atomically: `path.tmp`, optional fsync, rename, optional fsync of
 * the directory. Readers see the old or the new content, never a mix. */
int file_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                      bool durable);

/* Appends all of `data` to dir/name (created if missing), or nothing: on failure
 * the file is cut back to its size before the call. */
int file_append(const char *dir, const char *name, const void *data, size_t len);

/* fdatasync of dir/name, if it exists; *size_out (may be NULL) = its size. */
int file_sync(const char *dir, const char *name, uint64_t *size_out);

/* Cuts dir/name to `size` bytes if it is longer (creates nothing). */
int file_truncate(const char *dir, const char *name, uint64_t size);

/* Reads the whole of dir/name (up to `max` bytes) into a malloc'd buffer. */
int file_read(const char *dir, const char *name, size_t max, char **out, size_t *len);

/* A user-given name as one path component: '/' and control characters become
 * '_', an empty name becomes "_", "." and ".." get a '_' in front. */
void path_component(const char *name, char *out, size_t len);

#endif
