/*
 * run_files.h — the names of a run's files, one rule for the client library
 * and the agent: what a saved file may be called, and W&B's media paths.
 *
 * A name is relative to the run's files/ dir, '/'-separated, at most
 * TRACKD_MAX_FILE_NAME_BYTES bytes with components of at most
 * TRACKD_MAX_FILE_NAME_PART bytes; it is not absolute and has no empty, '.' or
 * '..' component, no NUL and no control character. Such a name cannot leave
 * the files/ dir, whatever the agent's cwd or the dirs above it.
 *
 * Pure functions; thread-safe; no allocation.
 */
#ifndef TRACKD_COMMON_RUN_FILES_H
#define TRACKD_COMMON_RUN_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACKD_MAX_FILE_NAME_BYTES 1024u /* a run file's name, relative to files/ */
#define TRACKD_MAX_FILE_NAME_PART  255u  /* one '/'-separated component */
/* The most bytes of a run file one RunFileRead answer carries (a client reads
 * a larger file in pieces): a file never sits whole in a reply. */
#define TRACKD_RUN_FILE_READ_MAX (1u << 20)

/* Whether s[0..len) is a valid name (above). */
bool files_name_valid(const char *s, size_t len);

/* Makes a valid name out of a user's one as W&B's client does for saved
 * files: leading '/' and './' dropped, '\\' read as '/', empty and '.'
 * components dropped. A '..' component, a NUL or control character, or a
 * result that is empty or too long is refused: returns false, out unset.
 * `out` holds at least TRACKD_MAX_FILE_NAME_BYTES + 1 bytes. */
bool files_name_normalise(const char *in, char *out, size_t cap);

/* W&B's media file name: media/<subdir>/<key>_<step>_<sha256 hex[:20]><ext>,
 * the key made safe (any byte but [A-Za-z0-9._-] and '/' becomes '_', and
 * each '/'-component that would be empty, '.' or '..' becomes '_': '/' in a
 * key makes subdirs, as in W&B). Returns false if the result would not be a
 * valid name (too long). */
bool files_media_name(const char *subdir, const char *key, int64_t step, const char *sha256_hex,
                      const char *ext, char *out, size_t cap);

/* Lower-case hex of 32 digest bytes into out[65]. */
void files_hex_digest(const uint8_t digest[32], char out[65]);
/* Parses 64 hex characters; false if not. */
bool files_parse_digest(const char *hex, size_t len, uint8_t digest[32]);

#endif
