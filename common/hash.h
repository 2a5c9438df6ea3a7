/*
 * hash.h — FNV-1a, the project's one non-cryptographic hash: short keys, no
 * setup, and stable across builds and machines (names and directories derived
 * from it must not change between versions, so the constants never change).
 * Not for anything an adversary may choose to collide in bulk.
 *
 * Pure inline functions (hash tables on hot paths call them per key).
 */
#ifndef TRACKD_COMMON_HASH_H
#define TRACKD_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV64_OFFSET 0xcbf29ce484222325ull
#define HASH_FNV64_PRIME  0x100000001b3ull

/* FNV-1a 64 of [data, data+len). */
static inline uint64_t hash_fnv1a64(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = HASH_FNV64_OFFSET;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * HASH_FNV64_PRIME;
	return h;
}

/* FNV-1a 64 of a NUL-terminated string (the NUL not included). */
static inline uint64_t hash_fnv1a64_str(const char *s)
{
	uint64_t h = HASH_FNV64_OFFSET;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		h = (h ^ *p) * HASH_FNV64_PRIME;
	return h;
}

/* FNV-1a 32 of a NUL-terminated string (run names are derived from it). */
static inline uint32_t hash_fnv1a32_str(const char *s)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

#endif
