/* artifact_names.c — see artifact_names.h. */
#include "artifact_names.h"

#include <string.h>

static bool name_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

static bool component_valid(const char *s, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return false;
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!name_char((unsigned char)s[i]))
			return false;
	return true;
}

bool artifact_scope_valid(const char *s, size_t len)
{
	if (!s || len == 0 || len > 255)
		return false;
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == '/' || s[i] == '\\' ||
		    s[i] == ':')
			return false;
	return true;
}

bool artifact_name_valid(const char *s, size_t len)
{
	return s && component_valid(s, len, TRACKD_ARTIFACT_MAX_NAME_BYTES);
}

bool artifact_version_parse(const char *s, uint32_t *version)
{
	size_t len = strlen(s);
	if (len < 2 || len > 10 || s[0] != 'v')
		return false;
	uint32_t v = 0;
	for (size_t i = 1; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint32_t)(s[i] - '0');
	}
	if (version)
		*version = v;
	return true;
}

bool artifact_alias_valid(const char *s, size_t len)
{
	if (!s || !component_valid(s, len, TRACKD_ARTIFACT_MAX_ALIAS_BYTES))
		return false;
	char tmp[16];
	if (len < sizeof tmp) {
		memcpy(tmp, s, len);
		tmp[len] = 0;
		if (artifact_version_parse(tmp, NULL))
			return false;
	}
	return true;
}

bool artifact_ref_parse(const char *ref, char *scratch, size_t cap, struct artifact_ref *out)
{
	size_t len = ref ? strlen(ref) : 0;
	if (len == 0 || len + 1 > cap)
		return false;
	memcpy(scratch, ref, len + 1);
	out->entity = out->project = "";
	out->alias = "latest";
	char *colon = strrchr(scratch, ':');
	if (colon) {
		*colon = 0;
		out->alias = colon + 1;
		if (!artifact_alias_valid(out->alias, strlen(out->alias)) &&
		    !artifact_version_parse(out->alias, NULL))
			return false;
	}
	char *parts[3];
	size_t n = 0;
	char *p = scratch;
	for (;;) {
		if (n == 3)
			return false;
		parts[n++] = p;
		char *slash = strchr(p, '/');
		if (!slash)
			break;
		*slash = 0;
		p = slash + 1;
	}
	for (size_t i = 0; i + 1 < n; i++)
		if (!artifact_scope_valid(parts[i], strlen(parts[i])))
			return false;
	if (!artifact_name_valid(parts[n - 1], strlen(parts[n - 1])))
		return false;
	out->name = parts[n - 1];
	if (n >= 2)
		out->project = parts[n - 2];
	if (n == 3)
		out->entity = parts[0];
	return true;
}
