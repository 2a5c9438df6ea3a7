#include "json_write.h"

#include "errors.h"
#include "fmt.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Length of a valid UTF-8 sequence at p (1..4), or 0 if the bytes are not one. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	if (c < 0x80)
		return 1;
	size_t k;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf) {
		k = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		k = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		k = 4;
		if (c == 0xf0)
			lo = 0x90;
		if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < k || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < k; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return k;
}

static const char *short_escape(unsigned char c)
{
	switch (c) {
	case '"': return "\\\"";
	case '\\': return "\\\\";
	case '\n': return "\\n";
	case '\r': return "\\r";
	case '\t': return "\\t";
	case '\b': return "\\b";
	case '\f': return "\\f";
	default: return NULL;
	}
}

static int plain(unsigned char c, unsigned flags)
{
	return c >= 0x20 && c != '"' && c != '\\' && (c < 0x80 || !(flags & JSON_UTF8_REPAIR));
}

/* One source position that is not plain: how many input bytes it takes, and
 * its written form. */
static size_t escape_one(const unsigned char *p, size_t n, unsigned flags, char tmp[8],
                         size_t *out_len)
{
	const char *e = short_escape(p[0]);
	if (e) {
		memcpy(tmp, e, 2);
		*out_len = 2;
		return 1;
	}
	if (p[0] < 0x20) {
		snprintf(tmp, 8, "\\u%04x", p[0]);
		*out_len = 6;
		return 1;
	}
	size_t k = (flags & JSON_UTF8_REPAIR) ? utf8_seq(p, n) : 1;
	if (k == 0) {
		memcpy(tmp, "\\ufffd", 6);
		*out_len = 6;
		return 1;
	}
	memcpy(tmp, p, k);
	*out_len = k;
	return k;
}

size_t json_string_len(const char *p, size_t n, unsigned flags)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t total = 2;
	for (size_t i = 0; i < n;) {
		if (plain(u[i], flags)) {
			total++;
			i++;
			continue;
		}
		char tmp[8];
		size_t len;
		i += escape_one(u + i, n - i, flags, tmp, &len);
		total += len;
	}
	return total;
}

int json_write_stringn(struct buf *out, const char *p, size_t n, unsigned flags)
{
	const unsigned char *u = (const unsigned char *)p;
	int rv = buf_putc(out, '"');
	size_t run = 0; /* bytes that need no escape, copied in one append */
	for (size_t i = 0; rv == 0 && i < n;) {
		if (plain(u[i], flags)) {
			run++;
			i++;
			continue;
		}
		if (run) {
			rv = buf_append(out, p + i - run, run);
			run = 0;
			if (rv)
				break;
		}
		char tmp[8];
		size_t len;
		i += escape_one(u + i, n - i, flags, tmp, &len);
		rv = buf_append(out, tmp, len);
	}
	if (!rv && run)
		rv = buf_append(out, p + n - run, run);
	return rv ? rv : buf_putc(out, '"');
}

int json_write_string(struct buf *out, const char *s)
{
	return s ? json_write_stringn(out, s, strlen(s), 0) : buf_puts(out, "\"\"");
}

int json_write_double(struct buf *out, double d)
{
	if (isnan(d))
		return buf_puts(out, "NaN");
	if (isinf(d))
		return buf_puts(out, d > 0 ? "Infinity" : "-Infinity");
	char tmp[FMT_DOUBLE_MAX + 2];
	fmt_double_g(tmp, sizeof tmp, d);
	/* Keep it a JSON float so readers do not turn 1.0 into an int. */
	if (!strpbrk(tmp, ".eEn"))
		strcat(tmp, ".0");
	return buf_puts(out, tmp);
}

int json_write_int(struct buf *out, int64_t i)
{
	return buf_printf(out, "%" PRId64, i);
}

int json_write_uint(struct buf *out, uint64_t u)
{
	return buf_printf(out, "%" PRIu64, u);
}

int json_write_bool(struct buf *out, int b)
{
	return buf_puts(out, b ? "true" : "false");
}

void json_fput_string(FILE *f, const char *s)
{
	struct buf b;
	buf_init(&b, JSON_TEXT_MAX);
	if (json_write_string(&b, s) == 0)
		fwrite(b.data, 1, b.len, f);
	else
		fputs("\"\"", f); /* out of memory: still valid JSON */
	buf_fini(&b);
}
