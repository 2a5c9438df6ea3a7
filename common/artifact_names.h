/*
 * artifact_names.h — what an artifact, its type and its aliases may be
 * called, and how "entity/project/name:alias" splits: one rule for the
 * client library, the agent and trackctl.
 *
 * A name (artifact or type) is one path component of [A-Za-z0-9_.-], not "."
 * or "..", 1 to TRACKD_ARTIFACT_MAX_NAME_BYTES bytes: it becomes a directory
 * of the agent's artifact store as it is. An alias is a name of at most
 * TRACKD_ARTIFACT_MAX_ALIAS_BYTES bytes that is not a version ("v" and
 * digits: the agent assigns those). Entry paths follow run_files.h.
 *
 * Pure functions; thread-safe; no allocation.
 */
#ifndef TRACKD_COMMON_ARTIFACT_NAMES_H
#define TRACKD_COMMON_ARTIFACT_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACKD_ARTIFACT_MAX_NAME_BYTES     128u
#define TRACKD_ARTIFACT_MAX_ALIASES        32u
#define TRACKD_ARTIFACT_MAX_ALIAS_BYTES    128u
#define TRACKD_ARTIFACT_MAX_ENTRIES        10000u
#define TRACKD_ARTIFACT_MAX_METADATA_BYTES 65536u
#define TRACKD_ARTIFACT_MAX_DESCRIPTION    16384u
#define TRACKD_ARTIFACT_MAX_REF_BYTES      2048u
/* A version number is at most this (v0 … v999999999). */
#define TRACKD_ARTIFACT_MAX_VERSION 999999999u

/* Whether s[0..len) is a valid artifact or type name (above). */
bool artifact_name_valid(const char *s, size_t len);

/* Whether s[0..len) may be an entity or project in the store: 1 to 255
 * bytes, no '/', '\\', ':' or control character, not "." or "..". */
bool artifact_scope_valid(const char *s, size_t len);

/* Whether s[0..len) is a valid alias: a name, not "vN". */
bool artifact_alias_valid(const char *s, size_t len);

/* Whether s is "v" followed by 1 to 9 digits; *version the number. */
bool artifact_version_parse(const char *s, uint32_t *version);

/* A reference "[[entity/]project/]name[:alias|:vN]" split into parts, each
 * NUL-terminated in the caller's `scratch` (at least strlen(ref) + 1 bytes).
 * Absent parts are "" (alias: "latest"). False when the name is not a valid
 * name, entity or project not valid scopes, the alias neither an alias nor a
 * version, or there are more than two '/'. */
struct artifact_ref {
	const char *entity, *project, *name, *alias;
};
bool artifact_ref_parse(const char *ref, char *scratch, size_t cap, struct artifact_ref *out);

#endif
