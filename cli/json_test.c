/*
 * json_test — the JSON reader: what it accepts (W&B's NaN/Infinity included),
 * what it decodes, what it refuses (with a position), and its depth bound.
 * Every input is copied into a buffer of exactly its length, without a NUL, so
 * the sanitizer build catches any read past the end.
 */
#include "json.h"

#include "errors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

/* A parse over an exact-length copy; the copy lives as long as the doc. */
struct parsed {
	char *text; /* not NUL-terminated */
	size_t len;
	json_doc *doc;
	const json_value *root;
	int rv;
	char err[256];
};

static struct parsed parse_n(const char *text, size_t len, size_t depth)
{
	struct parsed p = {0};
	p.text = malloc(len ? len : 1);
	p.len = len;
	memcpy(p.text, text, len);
	p.rv = json_parse(p.text, len, depth, &p.doc, p.err, sizeof p.err);
	p.root = json_doc_root(p.doc);
	return p;
}

static struct parsed parse(const char *text)
{
	return parse_n(text, strlen(text), 0);
}

static void done(struct parsed *p)
{
	json_doc_free(p->doc);
	free(p->text);
}

static bool raw_is(const json_value *v, const char *want)
{
	return v && v->raw_len == strlen(want) && memcmp(v->raw, want, v->raw_len) == 0;
}

static void test_scalars(void)
{
	struct parsed p = parse(" {\"i\": 42, \"neg\": -7, \"f\": 3.0, \"e\": 1e3, \"z\": -0,"
	                        " \"big\": 9223372036854775807, \"bigger\": 9223372036854775808,"
	                        " \"t\": true, \"no\": false, \"nil\": null, \"s\": \"hi\"} ");
	CHECK(p.rv == 0);
	CHECK(json_is(p.root, JSON_OBJECT) && p.root->u.obj.n == 11);
	int64_t i;
	double d;
	CHECK(json_int(json_get(p.root, "i"), &i) && i == 42);
	CHECK(json_int(json_get(p.root, "neg"), &i) && i == -7);
	/* 3.0 is a float literal: its double, but no integer (Python prints 3.0). */
	CHECK(!json_int(json_get(p.root, "f"), &i));
	CHECK(json_double(json_get(p.root, "f"), &d) && d == 3.0);
	CHECK(!json_int(json_get(p.root, "e"), &i) && json_double(json_get(p.root, "e"), &d) &&
	      d == 1000);
	CHECK(json_int(json_get(p.root, "z"), &i) && i == 0);
	CHECK(json_int(json_get(p.root, "big"), &i) && i == INT64_MAX);
	CHECK(!json_int(json_get(p.root, "bigger"), &i));
	CHECK(json_double(json_get(p.root, "bigger"), &d) && d == 9223372036854775808.0);
	CHECK(json_is(json_get(p.root, "t"), JSON_BOOL) && json_get(p.root, "t")->u.b);
	CHECK(json_is(json_get(p.root, "no"), JSON_BOOL) && !json_get(p.root, "no")->u.b);
	CHECK(json_is(json_get(p.root, "nil"), JSON_NULL));
	CHECK(strcmp(json_string(json_get(p.root, "s"), "?"), "hi") == 0);
	/* Raw spans: each value's own text, for byte-exact pass-through. */
	CHECK(raw_is(json_get(p.root, "f"), "3.0"));
	CHECK(raw_is(json_get(p.root, "e"), "1e3"));
	CHECK(raw_is(json_get(p.root, "s"), "\"hi\""));
	CHECK(p.root->raw_len == p.len - 2); /* without the outer spaces */
	/* Lookups tolerate everything. */
	CHECK(json_get(p.root, "absent") == NULL);
	CHECK(json_get(json_get(p.root, "i"), "x") == NULL);
	CHECK(json_get(NULL, "x") == NULL);
	CHECK(strcmp(json_string(json_get(p.root, "i"), "dflt"), "dflt") == 0);
	CHECK(!json_double(json_get(p.root, "s"), &d));
	CHECK(!json_double(NULL, &d));
	done(&p);
}

/* W&B's history files write non-finite numbers bare. */
static void test_non_finite(void)
{
	struct parsed p = parse("{\"loss\":NaN,\"up\":Infinity,\"down\":-Infinity,"
	                        "\"list\":[NaN,-Infinity,1]}");
	CHECK(p.rv == 0);
	double d;
	CHECK(json_double(json_get(p.root, "loss"), &d) && isnan(d));
	CHECK(json_double(json_get(p.root, "up"), &d) && isinf(d) && d > 0);
	CHECK(json_double(json_get(p.root, "down"), &d) && isinf(d) && d < 0);
	CHECK(raw_is(json_get(p.root, "down"), "-Infinity"));
	const json_value *list = json_get(p.root, "list");
	CHECK(json_is(list, JSON_ARRAY) && list->u.arr.n == 3);
	CHECK(isnan(list->u.arr.items[0].u.num.d) && !list->u.arr.items[0].u.num.is_int);
	done(&p);
}

static void test_strings(void)
{
	/* Escapes, \u with a surrogate pair, a lone surrogate, \u0000, raw UTF-8
	 * and even invalid bytes passing through. */
	const char text[] = "[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u4e2d\", "
	                    "\"\\ud83d\\ude00\", \"x\\ud800y\", \"nul\\u0000in\", "
	                    "\"caf\xc3\xa9 \xff\"]";
	struct parsed p = parse(text);
	CHECK(p.rv == 0);
	const json_value *a = p.root;
	CHECK(json_is(a, JSON_ARRAY) && a->u.arr.n == 6);
	if (p.rv == 0 && a->u.arr.n == 6) {
		CHECK(strcmp(a->u.arr.items[0].u.str.s, "a\"b\\c/d\b\f\n\r\t") == 0);
		CHECK(strcmp(a->u.arr.items[1].u.str.s, "é中") == 0);
		CHECK(strcmp(a->u.arr.items[2].u.str.s, "😀") == 0);
		CHECK(strcmp(a->u.arr.items[3].u.str.s, "x\xef\xbf\xbdy") == 0); /* U+FFFD */
		CHECK(a->u.arr.items[4].u.str.len == 6 &&
		      memcmp(a->u.arr.items[4].u.str.s, "nul\0in", 6) == 0);
		CHECK(strcmp(a->u.arr.items[5].u.str.s, "caf\xc3\xa9 \xff") == 0);
	}
	done(&p);

	/* Keys are decoded too; a repeated key: the last one, as Python's json. */
	p = parse("{\"k\\u00e9y\": 1, \"dup\": 1, \"dup\": 2}");
	int64_t i;
	CHECK(p.rv == 0);
	CHECK(json_int(json_get(p.root, "kéy"), &i) && i == 1);
	CHECK(json_int(json_get(p.root, "dup"), &i) && i == 2);
	CHECK(p.root->u.obj.n == 3);
	done(&p);
}

static void test_structure(void)
{
	struct parsed p = parse("{\"run\":{\"id\":\"abc\",\"tags\":[],\"summary\":{},"
	                        "\"config\":{\"opt\":{\"lr\":[0.1,0.01]}}},\"e\":[[],[[]]]}");
	CHECK(p.rv == 0);
	const json_value *run = json_get(p.root, "run");
	CHECK(json_is(json_get(run, "tags"), JSON_ARRAY) && json_get(run, "tags")->u.arr.n == 0);
	CHECK(json_is(json_get(run, "summary"), JSON_OBJECT) &&
	      json_get(run, "summary")->u.obj.n == 0);
	const json_value *lr = json_get(json_get(json_get(run, "config"), "opt"), "lr");
	CHECK(json_is(lr, JSON_ARRAY) && lr->u.arr.n == 2 && lr->u.arr.items[1].u.num.d == 0.01);
	CHECK(raw_is(lr, "[0.1,0.01]"));
	done(&p);

	/* Only len bytes are read: a prefix of a longer buffer. */
	p = parse_n("123456", 3, 0);
	int64_t i;
	CHECK(p.rv == 0 && json_int(p.root, &i) && i == 123);
	done(&p);

	/* Many values (the arena grows past its first chunk). */
	size_t n = 100000;
	char *big = malloc(n * 8 + 2);
	size_t len = 0;
	big[len++] = '[';
	for (size_t k = 0; k < n; k++)
		len += (size_t)sprintf(big + len, "%s%zu", k ? "," : "", k);
	big[len++] = ']';
	p = parse_n(big, len, 0);
	CHECK(p.rv == 0 && p.root->u.arr.n == n);
	CHECK(p.rv == 0 && p.root->u.arr.items[n - 1].u.num.i == (int64_t)(n - 1));
	done(&p);
	free(big);
}

static void test_compact(void)
{
	struct parsed p = parse("{ \"a\" : [ 1 , 2 ] ,\n\t\"s\" : \"keep  these \\\" spaces\" }");
	CHECK(p.rv == 0);
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	json_write_compact(f, p.root);
	fclose(f);
	CHECK(strcmp(out, "{\"a\":[1,2],\"s\":\"keep  these \\\" spaces\"}") == 0);
	free(out);
	done(&p);
}

/* Malformed input: refused with TRACKD_EINVAL, never a crash or a partial tree. */
static void test_malformed(void)
{
	static const char *const bad[] = {
	    "",      " ",        "{",         "}",           "[",        "[1,]",
	    "[1 2]", "{\"a\"}",  "{\"a\":}",  "{\"a\":1,}",  "{a:1}",    "{'a':1}",
	    "{1:1}", "01",       "-01",       "1.",          ".5",       "1e",
	    "1e+",   "+1",       "-",         "--1",         "0x10",     "tru",
	    "nul",   "True",     "nan",       "NaNx",        "-Inf",     "infinity",
	    "\"abc", "\"a\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"a\nb\"", "\"tab\there\"",
	    "\"\\",  "1 2",      "[] []",     "{\"a\":1}}",  "[\"a\",]", "\x01",
	    "//",    "/* */ 1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct parsed p = parse(bad[i]);
		if (p.rv != TRACKD_EINVAL || p.doc != NULL || p.err[0] == '\0') {
			fprintf(stderr, "malformed input accepted or misreported: '%s' (rv %d)\n",
			        bad[i], p.rv);
			failures++;
		}
		done(&p);
	}
	/* A raw NUL inside the given length is an error too. */
	struct parsed p = parse_n("[1,\0]", 5, 0);
	CHECK(p.rv == TRACKD_EINVAL);
	done(&p);

	/* The message says where. */
	p = parse("{\n  \"a\": x}");
	CHECK(p.rv == TRACKD_EINVAL);
	CHECK(strncmp(p.err, "line 2, column 8: ", 18) == 0);
	done(&p);
	p = parse("[1,\n2,\n\"open");
	CHECK(strstr(p.err, "unterminated string") != NULL);
	done(&p);

	/* Arguments. */
	json_doc *doc = NULL;
	CHECK(json_parse(NULL, 3, 0, &doc, NULL, 0) == TRACKD_EINVAL && !doc);
	CHECK(json_parse("1", 1, 0, NULL, NULL, 0) == TRACKD_EINVAL);
	CHECK(json_parse("1", 1, 0, &doc, NULL, 0) == 0); /* no error buffer: fine */
	json_doc_free(doc);
	json_doc_free(NULL);
}

/* Nesting is bounded: exactly max_depth containers pass, one more is refused. */
static void test_depth(void)
{
	char text[2 * 200 + 1];
	for (size_t depth = 1; depth <= 200; depth *= 2) {
		for (size_t i = 0; i < depth; i++) {
			text[i] = '[';
			text[2 * depth - 1 - i] = ']';
		}
		struct parsed ok = parse_n(text, 2 * depth, depth);
		CHECK(ok.rv == 0);
		done(&ok);
		if (depth > 1) {
			struct parsed deep = parse_n(text, 2 * depth, depth - 1);
			CHECK(deep.rv == TRACKD_ETOOBIG &&
			      strstr(deep.err, "nested deeper") != NULL);
			done(&deep);
		}
	}
	/* The default bound holds against a hostile reply far deeper than it. */
	size_t n = 100000;
	char *deep = malloc(n);
	memset(deep, '[', n);
	struct parsed p = parse_n(deep, n, 0);
	CHECK(p.rv == TRACKD_ETOOBIG);
	done(&p);
	memset(deep, '{', n);
	p = parse_n(deep, n, 0);
	CHECK(p.rv == TRACKD_EINVAL || p.rv == TRACKD_ETOOBIG);
	done(&p);
	free(deep);
	/* Objects count as levels as arrays do. */
	p = parse_n("{\"a\":{\"b\":1}}", 13, 1);
	CHECK(p.rv == TRACKD_ETOOBIG);
	done(&p);
}

int main(void)
{
	test_scalars();
	test_non_finite();
	test_strings();
	test_structure();
	test_compact();
	test_malformed();
	test_depth();
	if (failures) {
		fprintf(stderr, "json_test: %d failure(s)\n", failures);
		return 1;
	}
	printf("json_test: ok\n");
	return 0;
}
