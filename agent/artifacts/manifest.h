/*
 * manifest.h — W&B's artifact manifest as pure functions: the manifest JSON
 * (version 1, wandb-storage-policy-v1, storageLayout V2; one entry per path
 * with its base64-MD5 `digest` and `size`, or `ref` and the URI as digest)
 * and the artifact digest: the hex MD5 of "wandb-artifact-manifest-v1\n"
 * followed by "<path>:<digest>\n" for each entry sorted by path (bytewise).
 *
 * Pure functions; thread-safe; the caller owns every buffer.
 */
#ifndef TRACKD_ARTIFACTS_MANIFEST_H
#define TRACKD_ARTIFACTS_MANIFEST_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct manifest_entry {
	const char *path;
	const char *digest; /* base64 MD5, or the ref's URI */
	uint64_t size;
	const char *ref; /* NULL: a file */
};

/* Sorts entries by path (bytewise, as W&B's sort of Go strings). */
void manifest_sort(struct manifest_entry *e, size_t n);

/* Whether two entries of the sorted list share a path. */
bool manifest_has_duplicate(const struct manifest_entry *sorted, size_t n);

/* The artifact digest of `sorted` entries into hex[33]. */
void manifest_digest(const struct manifest_entry *sorted, size_t n, char hex[33]);

/* The manifest JSON of `sorted` entries, appended to out. */
int manifest_json(const struct manifest_entry *sorted, size_t n, struct buf *out);

/* Base64 of the MD5 of [data, data+len) into out[25] (W&B's entry digest). */
void manifest_md5_b64(const void *data, size_t len, char out[25]);

#endif
