#include "json_reader.h"

#include "errors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct cur {
	const char *p, *end;
};

static void skip_ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static bool literal(struct cur *c, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
		return false;
	c->p += n;
	return true;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char ch = p[i];
		v <<= 4;
		if (ch >= '0' && ch <= '9')
			v |= (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			v |= (unsigned)(ch - 'a' + 10);
		else if (ch >= 'A' && ch <= 'F')
			v |= (unsigned)(ch - 'A' + 10);
		else
			return TRACKD_EINVAL;
	}
	*out = v;
	return TRACKD_OK;
}

/* c->p is at the opening quote; leaves it after the closing one. */
static int skip_string(struct cur *c)
{
	c->p++;
	while (c->p < c->end) {
		unsigned char ch = (unsigned char)*c->p;
		if (ch == '"') {
			c->p++;
			return TRACKD_OK;
		}
		if (ch < 0x20)
			return TRACKD_EINVAL;
		if (ch == '\\') {
			if (c->end - c->p < 2)
				return TRACKD_EINVAL;
			char e = c->p[1];
			if (e == 'u') {
				unsigned v;
				if (c->end - c->p < 6 || hex4(c->p + 2, &v) != 0)
					return TRACKD_EINVAL;
				c->p += 6;
				continue;
			}
			if (!strchr("\"\\/bfnrt", e) || e == '\0')
				return TRACKD_EINVAL;
			c->p += 2;
			continue;
		}
		c->p++;
	}
	return TRACKD_EINVAL;
}

static bool digit(struct cur *c)
{
	return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

static int skip_number(struct cur *c)
{
	if (c->p < c->end && *c->p == '-')
		c->p++;
	if (literal(c, "Infinity"))
		return TRACKD_OK;
	if (!digit(c))
		return TRACKD_EINVAL;
	if (*c->p == '0')
		c->p++;
	else
		while (digit(c))
			c->p++;
	if (c->p < c->end && *c->p == '.') {
		c->p++;
		if (!digit(c))
			return TRACKD_EINVAL;
		while (digit(c))
			c->p++;
	}
	if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
		c->p++;
		if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
			c->p++;
		if (!digit(c))
			return TRACKD_EINVAL;
		while (digit(c))
			c->p++;
	}
	return TRACKD_OK;
}

static int skip_value(struct cur *c, int depth, enum jr_type *type)
{
	skip_ws(c);
	if (c->p >= c->end)
		return TRACKD_EINVAL;
	enum jr_type t;
	int rv = TRACKD_OK;
	switch (*c->p) {
	case '"':
		t = JR_STRING;
		rv = skip_string(c);
		break;
	case '{':
	case '[': {
		bool obj = *c->p == '{';
		char close = obj ? '}' : ']';
		t = obj ? JR_OBJECT : JR_ARRAY;
		if (depth >= JR_MAX_DEPTH)
			return TRACKD_ETOOBIG;
		c->p++;
		skip_ws(c);
		if (c->p < c->end && *c->p == close) {
			c->p++;
			break;
		}
		for (;;) {
			if (obj) {
				skip_ws(c);
				if (c->p >= c->end || *c->p != '"')
					return TRACKD_EINVAL;
				if ((rv = skip_string(c)) != 0)
					return rv;
				skip_ws(c);
				if (c->p >= c->end || *c->p != ':')
					return TRACKD_EINVAL;
				c->p++;
			}
			if ((rv = skip_value(c, depth + 1, NULL)) != 0)
				return rv;
			skip_ws(c);
			if (c->p >= c->end)
				return TRACKD_EINVAL;
			if (*c->p == ',') {
				c->p++;
				continue;
			}
			if (*c->p != close)
				return TRACKD_EINVAL;
			c->p++;
			break;
		}
		break;
	}
	case 't':
		t = JR_BOOL;
		rv = literal(c, "true") ? TRACKD_OK : TRACKD_EINVAL;
		break;
	case 'f':
		t = JR_BOOL;
		rv = literal(c, "false") ? TRACKD_OK : TRACKD_EINVAL;
		break;
	case 'n':
		t = JR_NULL;
		rv = literal(c, "null") ? TRACKD_OK : TRACKD_EINVAL;
		break;
	case 'N':
		t = JR_NUMBER;
		rv = literal(c, "NaN") ? TRACKD_OK : TRACKD_EINVAL;
		break;
	default:
		t = JR_NUMBER;
		rv = skip_number(c);
		break;
	}
	if (rv == TRACKD_OK && type)
		*type = t;
	return rv;
}

int jr_validate(const char *json, size_t len)
{
	if (!json)
		return TRACKD_EINVAL;
	struct cur c = {json, json + len};
	int rv = skip_value(&c, 0, NULL);
	if (rv)
		return rv;
	skip_ws(&c);
	return c.p == c.end ? TRACKD_OK : TRACKD_EINVAL;
}

static void put_utf8(char *out, size_t cap, size_t *n, unsigned cp, bool *full)
{
	char tmp[4];
	size_t k;
	if (cp < 0x80) {
		tmp[0] = (char)cp;
		k = 1;
	} else if (cp < 0x800) {
		tmp[0] = (char)(0xc0 | cp >> 6);
		tmp[1] = (char)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		tmp[0] = (char)(0xe0 | cp >> 12);
		tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		tmp[2] = (char)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		tmp[0] = (char)(0xf0 | cp >> 18);
		tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		tmp[3] = (char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	if (*full || *n + k + 1 > cap) {
		*full = true;
		return;
	}
	memcpy(out + *n, tmp, k);
	*n += k;
}

/* Unescapes the string starting at its opening quote (already validated). */
static void unescape(const char *p, const char *end, char *out, size_t cap, size_t *outlen,
                     bool *cut)
{
	size_t n = 0;
	bool full = false;
	for (p++; p < end && *p != '"' && !full;) {
		unsigned char ch = (unsigned char)*p;
		if (ch != '\\') {
			/* Copy one UTF-8 sequence whole, or stop. */
			size_t k = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : ch >= 0xc0 ? 2 : 1;
			if ((size_t)(end - p) < k)
				k = (size_t)(end - p);
			if (n + k + 1 > cap) {
				full = true;
				break;
			}
			memcpy(out + n, p, k);
			n += k;
			p += k;
			continue;
		}
		char e = p[1];
		p += 2;
		unsigned cp;
		switch (e) {
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			hex4(p, &cp);
			p += 4;
			if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 6 && p[0] == '\\' &&
			    p[1] == 'u') {
				unsigned lo;
				if (hex4(p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					p += 6;
				}
			}
			if (cp >= 0xd800 && cp < 0xe000)
				cp = 0xfffd; /* a lone surrogate */
			break;
		default: cp = (unsigned char)e; break;
		}
		put_utf8(out, cap, &n, cp, &full);
	}
	if (cap)
		out[n] = '\0';
	*outlen = n;
	if (cut)
		*cut = full;
}

static bool is_index(const char *comp, size_t len, size_t *index)
{
	if (len == 0 || len > 9)
		return false;
	size_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (comp[i] < '0' || comp[i] > '9')
			return false;
		v = v * 10 + (size_t)(comp[i] - '0');
	}
	*index = v;
	return true;
}

/* Moves c from the start of a container to the start of its member `comp`. */
static int descend(struct cur *c, const char *comp, size_t clen)
{
	skip_ws(c);
	if (c->p >= c->end)
		return TRACKD_ENOENT;
	bool obj = *c->p == '{';
	if (!obj && *c->p != '[')
		return TRACKD_ENOENT;
	size_t want = 0;
	if (!obj && !is_index(comp, clen, &want))
		return TRACKD_ENOENT;
	char close = obj ? '}' : ']';
	c->p++;
	skip_ws(c);
	if (c->p < c->end && *c->p == close)
		return TRACKD_ENOENT;
	for (size_t i = 0;; i++) {
		skip_ws(c);
		bool match;
		if (obj) {
			const char *kstart = c->p;
			if (skip_string(c) != 0)
				return TRACKD_EINVAL;
			char key[JR_MAX_KEY + 1];
			size_t klen;
			bool cut;
			unescape(kstart, c->p, key, sizeof key, &klen, &cut);
			match = !cut && klen == clen && memcmp(key, comp, clen) == 0;
			skip_ws(c);
			c->p++; /* ':' */
			skip_ws(c);
		} else {
			match = i == want;
		}
		if (match)
			return TRACKD_OK;
		if (skip_value(c, 0, NULL) != 0)
			return TRACKD_EINVAL;
		skip_ws(c);
		if (c->p >= c->end || *c->p != ',')
			return TRACKD_ENOENT;
		c->p++;
	}
}

int jr_get(const char *json, size_t len, const char *path, struct jr_value *out)
{
	int rv = jr_validate(json, len);
	if (rv)
		return rv;
	struct cur c = {json, json + len};
	for (const char *comp = path; comp && *comp;) {
		const char *dot = strchr(comp, '.');
		size_t clen = dot ? (size_t)(dot - comp) : strlen(comp);
		if ((rv = descend(&c, comp, clen)) != 0)
			return rv;
		comp = dot ? dot + 1 : NULL;
	}
	skip_ws(&c);
	const char *start = c.p;
	enum jr_type t;
	/* Depth 0 again: the document as a whole passed the depth check. */
	if ((rv = skip_value(&c, 0, &t)) != 0)
		return rv;
	out->type = t;
	out->start = start;
	out->len = (size_t)(c.p - start);
	return TRACKD_OK;
}

int jr_int(const struct jr_value *v, int64_t *out)
{
	if (v->type != JR_NUMBER || v->len == 0 || v->len > 24)
		return TRACKD_EINVAL;
	char tmp[32];
	memcpy(tmp, v->start, v->len);
	tmp[v->len] = '\0';
	char *end;
	errno = 0;
	long long x = strtoll(tmp, &end, 10);
	if (errno || *end != '\0')
		return TRACKD_EINVAL;
	*out = x;
	return TRACKD_OK;
}

int jr_bool(const struct jr_value *v, bool *out)
{
	if (v->type != JR_BOOL)
		return TRACKD_EINVAL;
	*out = v->start[0] == 't';
	return TRACKD_OK;
}

int jr_string(const struct jr_value *v, char *out, size_t cap)
{
	if (v->type != JR_STRING || cap == 0)
		return TRACKD_EINVAL;
	size_t n;
	unescape(v->start, v->start + v->len, out, cap, &n, NULL);
	return TRACKD_OK;
}

int jr_get_int(const char *json, size_t len, const char *path, int64_t *out)
{
	struct jr_value v;
	int rv = jr_get(json, len, path, &v);
	return rv ? rv : jr_int(&v, out);
}

int jr_get_bool(const char *json, size_t len, const char *path, bool *out)
{
	struct jr_value v;
	int rv = jr_get(json, len, path, &v);
	return rv ? rv : jr_bool(&v, out);
}

int jr_get_string(const char *json, size_t len, const char *path, char *out, size_t cap)
{
	struct jr_value v;
	int rv = jr_get(json, len, path, &v);
	return rv ? rv : jr_string(&v, out, cap);
}
