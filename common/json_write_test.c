/* The one JSON writer: what each of the former escapers did, in one place. */
#include "json_write.h"

#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *str(struct buf *b, const char *p, size_t n, unsigned flags)
{
	buf_reset(b);
	CHECK(json_write_stringn(b, p, n, flags) == 0, "write");
	CHECK(b->len == json_string_len(p, n, flags), "length %zu vs %zu", b->len,
	      json_string_len(p, n, flags));
	return b->data;
}

static const char *dbl(struct buf *b, double d)
{
	buf_reset(b);
	CHECK(json_write_double(b, d) == 0, "write");
	return b->data;
}

int main(void)
{
	struct buf b;
	buf_init(&b, 1 << 16);
	/* UTF-8 passes through, controls and NUL escaped. */
	const char raw[] = "a\"b\\c\n\r\t\b\f\x01\x1f\0z \xc3\xa9 \xff";
	const char *s = str(&b, raw, sizeof raw - 1, 0);
	CHECK(strcmp(s, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\\u0000z \xc3\xa9 \xff\"") == 0,
	      "%s", s);
	s = str(&b, raw, sizeof raw - 1, JSON_UTF8_REPAIR);
	CHECK(strstr(s, " \xc3\xa9 \\ufffd\"") != NULL, "repair: %s", s);
	buf_reset(&b);
	CHECK(json_write_string(&b, NULL) == 0 && strcmp(b.data, "\"\"") == 0, "NULL");

	CHECK(strcmp(dbl(&b, 1.0), "1.0") == 0, "%s", b.data);
	CHECK(strcmp(dbl(&b, 0.1), "0.1") == 0, "%s", b.data);
	CHECK(strcmp(dbl(&b, 1e300), "1e+300") == 0, "%s", b.data);
	CHECK(strcmp(dbl(&b, NAN), "NaN") == 0, "%s", b.data);
	CHECK(strcmp(dbl(&b, -INFINITY), "-Infinity") == 0, "%s", b.data);
	double third = 1.0 / 3;
	CHECK(strtod(dbl(&b, third), NULL) == third, "round trip %s", b.data);
	buf_reset(&b);
	CHECK(json_write_int(&b, INT64_MIN) == 0 && strcmp(b.data, "-9223372036854775808") == 0,
	      "%s", b.data);

	/* Bounded: over the maximum is refused. */
	struct buf small;
	buf_init(&small, 4);
	CHECK(json_write_string(&small, "longer than four") != 0, "bounded");
	buf_fini(&small);
	buf_fini(&b);
	return CHECK_SUMMARY("json_write_test");
}
