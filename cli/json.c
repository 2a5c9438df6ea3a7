/* json.c — see json.h. A recursive-descent parser over a bounded depth; every
 * node and decoded string lives in one arena owned by the doc. */
#include "json.h"

#include "errors.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ----------------------------------------------------------------- */

struct chunk {
	struct chunk *next;
	size_t used, cap;
	_Alignas(max_align_t) unsigned char data[];
};

struct json_doc {
	struct chunk *chunks;
	json_value root;
};

static void *arena_alloc(json_doc *doc, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	struct chunk *c = doc->chunks;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > 64 * 1024 ? n : 64 * 1024;
		c = malloc(sizeof *c + cap);
		if (!c)
			return NULL;
		c->next = doc->chunks;
		c->used = 0;
		c->cap = cap;
		doc->chunks = c;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;
}

void json_doc_free(json_doc *doc)
{
	if (!doc)
		return;
	for (struct chunk *c = doc->chunks, *next; c; c = next) {
		next = c->next;
		free(c);
	}
	free(doc);
}

const json_value *json_doc_root(const json_doc *doc)
{
	return doc ? &doc->root : NULL;
}

/* ---- parser ---------------------------------------------------------------- */

struct parser {
	const char *text, *p, *end;
	size_t max_depth;
	json_doc *doc;
	int rv;
	char *err;
	size_t err_len;
};

__attribute__((format(printf, 3, 4))) static int fail(struct parser *ps, int rv, const char *fmt,
                                                      ...)
{
	if (ps->rv)
		return ps->rv;
	ps->rv = rv;
	if (ps->err && ps->err_len) {
		size_t line = 1, col = 1;
		for (const char *q = ps->text; q < ps->p && q < ps->end; q++) {
			if (*q == '\n') {
				line++;
				col = 1;
			} else {
				col++;
			}
		}
		int n = snprintf(ps->err, ps->err_len, "line %zu, column %zu: ", line, col);
		if (n >= 0 && (size_t)n < ps->err_len) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(ps->err + n, ps->err_len - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return rv;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static bool literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return false;
	ps->p += n;
	return true;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *out, unsigned cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* At the opening quote. Decoding never makes a string longer than its escaped
 * form (\uXXXX → at most 3 bytes; a pair, 12 bytes → 4), so the output is sized
 * by the input span. */
static int parse_string(struct parser *ps, const char **out, size_t *out_len)
{
	const char *start = ++ps->p;
	const char *q = start;
	while (q < ps->end && *q != '"') {
		if (*q == '\\')
			q++;
		q++;
	}
	if (q >= ps->end)
		return fail(ps, TRACKD_EINVAL, "unterminated string");
	char *dst = arena_alloc(ps->doc, (size_t)(q - start) + 1);
	if (!dst)
		return fail(ps, TRACKD_ENOMEM, "out of memory");
	size_t n = 0;
	while (ps->p < q) {
		unsigned char c = (unsigned char)*ps->p;
		if (c < 0x20)
			return fail(ps, TRACKD_EINVAL, "control character in a string");
		if (c != '\\') {
			dst[n++] = (char)c;
			ps->p++;
			continue;
		}
		ps->p++;
		char e = *ps->p++;
		switch (e) {
		case '"': dst[n++] = '"'; break;
		case '\\': dst[n++] = '\\'; break;
		case '/': dst[n++] = '/'; break;
		case 'b': dst[n++] = '\b'; break;
		case 'f': dst[n++] = '\f'; break;
		case 'n': dst[n++] = '\n'; break;
		case 'r': dst[n++] = '\r'; break;
		case 't': dst[n++] = '\t'; break;
		case 'u': {
			unsigned cp, lo;
			if (q - ps->p < 4 || hex4(ps->p, &cp) != 0) {
				ps->p -= 2;
				return fail(ps, TRACKD_EINVAL, "bad \\u escape");
			}
			ps->p += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF && q - ps->p >= 6 && ps->p[0] == '\\' &&
			    ps->p[1] == 'u' && hex4(ps->p + 2, &lo) == 0 && lo >= 0xDC00 &&
			    lo <= 0xDFFF) {
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				ps->p += 6;
			} else if (cp >= 0xD800 && cp <= 0xDFFF) {
				cp = 0xFFFD; /* a lone surrogate has no UTF-8 form */
			}
			n += put_utf8(dst + n, cp);
			break;
		}
		default: ps->p -= 2; return fail(ps, TRACKD_EINVAL, "bad escape in a string");
		}
	}
	dst[n] = '\0';
	ps->p = q + 1;
	*out = dst;
	*out_len = n;
	return 0;
}

static int parse_number(struct parser *ps, json_value *v)
{
	const char *s = ps->p, *q = s;
	bool integral = true;
	if (q < ps->end && *q == '-')
		q++;
	if (q < ps->end && *q == '0') {
		q++;
	} else if (q < ps->end && *q >= '1' && *q <= '9') {
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	} else {
		return fail(ps, TRACKD_EINVAL, "unexpected character '%c'", *s);
	}
	if (q < ps->end && *q == '.') {
		integral = false;
		q++;
		if (q >= ps->end || *q < '0' || *q > '9') {
			ps->p = q;
			return fail(ps, TRACKD_EINVAL, "digit expected after '.'");
		}
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	}
	if (q < ps->end && (*q == 'e' || *q == 'E')) {
		integral = false;
		q++;
		if (q < ps->end && (*q == '+' || *q == '-'))
			q++;
		if (q >= ps->end || *q < '0' || *q > '9') {
			ps->p = q;
			return fail(ps, TRACKD_EINVAL, "digit expected in the exponent");
		}
		while (q < ps->end && *q >= '0' && *q <= '9')
			q++;
	}
	/* strtod/strtoll need a terminated copy: the input is not. */
	size_t len = (size_t)(q - s);
	char small[64];
	char *copy = len < sizeof small ? small : malloc(len + 1);
	if (!copy)
		return fail(ps, TRACKD_ENOMEM, "out of memory");
	memcpy(copy, s, len);
	copy[len] = '\0';
	v->type = JSON_NUMBER;
	v->u.num.d = strtod(copy, NULL);
	v->u.num.is_int = false;
	if (integral) {
		errno = 0;
		long long i = strtoll(copy, NULL, 10);
		if (errno == 0) {
			v->u.num.i = i;
			v->u.num.is_int = true;
		}
	}
	if (copy != small)
		free(copy);
	ps->p = q;
	return 0;
}

static int parse_value(struct parser *ps, json_value *v, size_t depth);

/* Children are gathered in a growable scratch array, then copied into the arena
 * once their number is known. */
static int parse_array(struct parser *ps, json_value *v, size_t depth)
{
	json_value *items = NULL;
	size_t n = 0, cap = 0;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
	} else {
		for (;;) {
			if (n == cap) {
				cap = cap ? 2 * cap : 8;
				json_value *g = realloc(items, cap * sizeof *g);
				if (!g) {
					free(items);
					return fail(ps, TRACKD_ENOMEM, "out of memory");
				}
				items = g;
			}
			if (parse_value(ps, &items[n], depth + 1) != 0) {
				free(items);
				return ps->rv;
			}
			n++;
			skip_ws(ps);
			if (ps->p < ps->end && *ps->p == ',') {
				ps->p++;
				continue;
			}
			if (ps->p < ps->end && *ps->p == ']') {
				ps->p++;
				break;
			}
			free(items);
			return fail(ps, TRACKD_EINVAL, "',' or ']' expected");
		}
	}
	v->type = JSON_ARRAY;
	v->u.arr.n = n;
	v->u.arr.items = NULL;
	if (n) {
		v->u.arr.items = arena_alloc(ps->doc, n * sizeof *items);
		if (v->u.arr.items)
			memcpy(v->u.arr.items, items, n * sizeof *items);
	}
	free(items);
	if (n && !v->u.arr.items)
		return fail(ps, TRACKD_ENOMEM, "out of memory");
	return 0;
}

static int parse_object(struct parser *ps, json_value *v, size_t depth)
{
	json_member *members = NULL;
	size_t n = 0, cap = 0;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
	} else {
		for (;;) {
			if (n == cap) {
				cap = cap ? 2 * cap : 8;
				json_member *g = realloc(members, cap * sizeof *g);
				if (!g) {
					free(members);
					return fail(ps, TRACKD_ENOMEM, "out of memory");
				}
				members = g;
			}
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != '"') {
				free(members);
				return fail(ps, TRACKD_EINVAL, "string key expected");
			}
			if (parse_string(ps, &members[n].key, &members[n].key_len) != 0) {
				free(members);
				return ps->rv;
			}
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':') {
				free(members);
				return fail(ps, TRACKD_EINVAL, "':' expected");
			}
			ps->p++;
			if (parse_value(ps, &members[n].value, depth + 1) != 0) {
				free(members);
				return ps->rv;
			}
			n++;
			skip_ws(ps);
			if (ps->p < ps->end && *ps->p == ',') {
				ps->p++;
				continue;
			}
			if (ps->p < ps->end && *ps->p == '}') {
				ps->p++;
				break;
			}
			free(members);
			return fail(ps, TRACKD_EINVAL, "',' or '}' expected");
		}
	}
	v->type = JSON_OBJECT;
	v->u.obj.n = n;
	v->u.obj.members = NULL;
	if (n) {
		v->u.obj.members = arena_alloc(ps->doc, n * sizeof *members);
		if (v->u.obj.members)
			memcpy(v->u.obj.members, members, n * sizeof *members);
	}
	free(members);
	if (n && !v->u.obj.members)
		return fail(ps, TRACKD_ENOMEM, "out of memory");
	return 0;
}

static int parse_value(struct parser *ps, json_value *v, size_t depth)
{
	skip_ws(ps);
	memset(v, 0, sizeof *v);
	v->raw = ps->p;
	if (ps->p >= ps->end)
		return fail(ps, TRACKD_EINVAL, "value expected");
	int rv = 0;
	switch (*ps->p) {
	case '{':
	case '[':
		if (depth >= ps->max_depth)
			return fail(ps, TRACKD_ETOOBIG, "nested deeper than %zu levels",
			            ps->max_depth);
		rv = *ps->p == '{' ? parse_object(ps, v, depth) : parse_array(ps, v, depth);
		break;
	case '"':
		v->type = JSON_STRING;
		rv = parse_string(ps, &v->u.str.s, &v->u.str.len);
		break;
	case 't':
	case 'f':
	case 'n':
		if (literal(ps, "true") || literal(ps, "false")) {
			v->type = JSON_BOOL;
			v->u.b = *v->raw == 't';
		} else if (literal(ps, "null")) {
			v->type = JSON_NULL;
		} else {
			rv = fail(ps, TRACKD_EINVAL, "unknown literal");
		}
		break;
	case 'N':
	case 'I':
	case '-':
		/* W&B's non-finite numbers. */
		if (literal(ps, "NaN") || literal(ps, "Infinity") || literal(ps, "-Infinity")) {
			v->type = JSON_NUMBER;
			v->u.num.d = *v->raw == 'N'   ? (double)NAN
			             : *v->raw == '-' ? -(double)INFINITY
			                              : (double)INFINITY;
			break;
		}
		rv = parse_number(ps, v);
		break;
	default: rv = parse_number(ps, v); break;
	}
	if (rv == 0)
		v->raw_len = (size_t)(ps->p - v->raw);
	return rv;
}

int json_parse(const char *text, size_t len, size_t max_depth, json_doc **out, char *err,
               size_t err_len)
{
	if (err && err_len)
		err[0] = '\0';
	if (!out || (!text && len))
		return TRACKD_EINVAL;
	*out = NULL;
	json_doc *doc = calloc(1, sizeof *doc);
	if (!doc)
		return TRACKD_ENOMEM;
	struct parser ps = {
	    .text = text ? text : "",
	    .p = text ? text : "",
	    .end = (text ? text : "") + len,
	    .max_depth = max_depth ? max_depth : JSON_DEFAULT_MAX_DEPTH,
	    .doc = doc,
	    .err = err,
	    .err_len = err_len,
	};
	if (parse_value(&ps, &doc->root, 0) == 0) {
		skip_ws(&ps);
		if (ps.p != ps.end)
			fail(&ps, TRACKD_EINVAL, "unexpected text after the value");
	}
	if (ps.rv) {
		json_doc_free(doc);
		return ps.rv;
	}
	*out = doc;
	return 0;
}

/* ---- lookups --------------------------------------------------------------- */

const json_value *json_get(const json_value *obj, const char *key)
{
	if (!obj || obj->type != JSON_OBJECT || !key)
		return NULL;
	size_t klen = strlen(key);
	for (size_t i = obj->u.obj.n; i-- > 0;) {
		const json_member *m = &obj->u.obj.members[i];
		if (m->key_len == klen && memcmp(m->key, key, klen) == 0)
			return &m->value;
	}
	return NULL;
}

const char *json_string(const json_value *v, const char *dflt)
{
	return v && v->type == JSON_STRING ? v->u.str.s : dflt;
}

bool json_double(const json_value *v, double *out)
{
	if (!v || v->type != JSON_NUMBER)
		return false;
	*out = v->u.num.d;
	return true;
}

bool json_int(const json_value *v, int64_t *out)
{
	if (!v || v->type != JSON_NUMBER || !v->u.num.is_int)
		return false;
	*out = v->u.num.i;
	return true;
}

bool json_is(const json_value *v, json_type type)
{
	return v && v->type == type;
}

void json_write_compact(FILE *f, const json_value *v)
{
	if (!v)
		return;
	bool in_string = false;
	for (size_t i = 0; i < v->raw_len; i++) {
		char c = v->raw[i];
		if (in_string) {
			if (c == '\\' && i + 1 < v->raw_len) {
				putc(c, f);
				c = v->raw[++i];
			} else if (c == '"') {
				in_string = false;
			}
		} else if (c == '"') {
			in_string = true;
		} else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			continue;
		}
		putc(c, f);
	}
}
