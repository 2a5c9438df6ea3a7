/*
 * run_files.c — names of a run's files (run_files.h).
 */
#include "run_files.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool part_ok(const char *p, size_t n)
{
	if (n == 0 || n > TRACKD_MAX_FILE_NAME_PART)
		return false;
	if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
		return false;
	return true;
}

bool files_name_valid(const char *s, size_t len)
{
	if (!s || len == 0 || len > TRACKD_MAX_FILE_NAME_BYTES || s[0] == '/')
		return false;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len) {
			unsigned char c = (unsigned char)s[i];
			if (c < 0x20 || c == 0x7f || c == '\\')
				return false;
			if (c != '/')
				continue;
		}
		if (!part_ok(s + start, i - start))
			return false;
		start = i + 1;
	}
	return true;
}

bool files_name_normalise(const char *in, char *out, size_t cap)
{
	size_t n = 0;
	const char *p = in;
	while (*p) {
		while (*p == '/' || *p == '\\')
			p++;
		const char *e = p;
		while (*e && *e != '/' && *e != '\\')
			e++;
		size_t len = (size_t)(e - p);
		if (len == 0)
			break;
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return false;
		if (!(len == 1 && p[0] == '.')) {
			if (n + (n ? 1 : 0) + len >= cap)
				return false;
			if (n)
				out[n++] = '/';
			memcpy(out + n, p, len);
			n += len;
		}
		p = e;
	}
	if (n >= cap)
		return false;
	out[n] = '\0';
	return files_name_valid(out, n);
}

bool files_media_name(const char *subdir, const char *key, int64_t step, const char *sha256_hex,
                      const char *ext, char *out, size_t cap)
{
	char safe[TRACKD_MAX_FILE_NAME_BYTES + 1];
	size_t n = 0;
	size_t part_start = 0;
	for (const char *k = key;; k++) {
		if (!*k || *k == '/') {
			size_t len = n - part_start;
			/* An empty, '.' or '..' part would climb or vanish: make it '_'. */
			if (!part_ok(safe + part_start, len)) {
				n = part_start;
				if (n >= sizeof safe - 1)
					return false;
				safe[n++] = '_';
			}
			if (!*k)
				break;
			if (n >= sizeof safe - 1)
				return false;
			safe[n++] = '/';
			part_start = n;
			continue;
		}
		unsigned char c = (unsigned char)*k;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (n >= sizeof safe - 1)
			return false;
		safe[n++] = ok ? (char)c : '_';
	}
	safe[n] = '\0';
	int w = snprintf(out, cap, "media/%s/%s_%" PRId64 "_%.20s%s", subdir, safe, step,
	                 sha256_hex, ext);
	if (w < 0 || (size_t)w >= cap)
		return false;
	return files_name_valid(out, (size_t)w);
}

void files_hex_digest(const uint8_t digest[32], char out[65])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 15];
	}
	out[64] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool files_parse_digest(const char *hex, size_t len, uint8_t digest[32])
{
	if (len != 64)
		return false;
	for (int i = 0; i < 32; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		digest[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}
