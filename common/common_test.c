/*
 * common_test.c — the shared helpers against their contracts: fs (atomic
 * replace, bounded read), utf8, varint, hash (fixed FNV-1a answers: names and
 * directories derive from them), fmt (shortest round-trip doubles), buf (the
 * maximum at limit - 1, limit, limit + 1, and no maximum at all), runenv (git
 * facts from a repository's files, argv, the dirty flag's failure modes).
 */
#include "buf.h"
#include "check.h"
#include "errors.h"
#include "fmt.h"
#include "fs.h"
#include "hash.h"
#include "paths.h"
#include "runenv.h"
#include "utf8.h"
#include "varint.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_utf8(void)
{
	CHECK(utf8_valid("plain", 5));
	CHECK(utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
	CHECK(!utf8_valid("\xc0\xaf", 2), "overlong");
	CHECK(!utf8_valid("\xe0\x80\xaf", 3), "overlong, 3 bytes");
	CHECK(!utf8_valid("\xed\xa0\x80", 3), "surrogate");
	CHECK(!utf8_valid("\xf4\x90\x80\x80", 4), "above U+10FFFF");
	CHECK(!utf8_valid("\xe2\x82", 2), "truncated");
	CHECK(!utf8_valid("\xff", 1));
	CHECK(utf8_valid("a\0b", 3), "U+0000 is UTF-8");
	CHECK(!utf8_valid_no_nul("a\0b", 3), "but not in a C string");
	CHECK(utf8_valid_no_nul("\xf4\x8f\xbf\xbf", 4), "U+10FFFF");
	CHECK_EQ(utf8_count("caf\xc3\xa9"), 4);
	CHECK_EQ(utf8_count(""), 0);
}

static void test_varint(void)
{
	const uint64_t values[] = {0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX, UINT64_MAX};
	for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
		uint8_t buf[VARINT_MAX_BYTES];
		size_t n = varint_put(buf, values[i]);
		CHECK_EQ(n, varint_size(values[i]));
		const uint8_t *p = buf;
		uint64_t v = 0;
		CHECK(varint_get(&p, buf + n, &v, VARINT_MAX_BYTES), "value %zu", i);
		CHECK_EQ(v, values[i]);
		CHECK_EQ(p - buf, n);
		p = buf;
		CHECK(!varint_get(&p, buf + n - 1, &v, VARINT_MAX_BYTES), "truncated %zu", i);
	}
	uint8_t six[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
	const uint8_t *p = six;
	uint64_t v;
	CHECK(!varint_get(&p, six + sizeof six, &v, 5), "longer than allowed");
	CHECK_EQ(varint_size(UINT64_MAX), 10);
}

static void test_hash(void)
{
	CHECK_EQ(hash_fnv1a64("", 0), 0xcbf29ce484222325ull);
	CHECK_EQ(hash_fnv1a64("a", 1), 0xaf63dc4c8601ec8cull);
	CHECK_EQ(hash_fnv1a64_str("foobar"), 0x85944171f73967e8ull);
	CHECK_EQ(hash_fnv1a64_str("foobar"), hash_fnv1a64("foobar", 6));
	CHECK_EQ(hash_fnv1a32_str("a"), 0xe40c292cu);
	CHECK_EQ(hash_fnv1a32_str("foobar"), 0xbf9cf968u);
}

static void test_fmt(void)
{
	char b[FMT_DOUBLE_MAX];
	fmt_double_g(b, sizeof b, 0.1);
	CHECK_STR_EQ(b, "0.1");
	fmt_double_g(b, sizeof b, 3);
	CHECK_STR_EQ(b, "3");
	fmt_double_g(b, sizeof b, 1e100);
	CHECK_STR_EQ(b, "1e+100");
	fmt_double_g(b, sizeof b, 0.1 + 0.2);
	CHECK_STR_EQ(b, "0.30000000000000004");
	fmt_double_e(b, sizeof b, 0.1);
	CHECK_STR_EQ(b, "1e-01");
	fmt_double_e(b, sizeof b, 5e-324);
	CHECK_STR_EQ(b, "5e-324");
	fmt_double_e(b, sizeof b, -1.7976931348623157e308);
	CHECK_STR_EQ(b, "-1.7976931348623157e+308");
}

static void test_fs(void)
{
	char dir[] = "/tmp/common_test.XXXXXX";
	if (!mkdtemp(dir)) {
		CHECK_FAIL("mkdtemp");
		return;
	}
	char sub[256], path[300];
	snprintf(sub, sizeof sub, "%s/a/b/c", dir);
	CHECK_EQ(mkdir_parents(sub, 0700), TRACKD_OK);
	CHECK_EQ(mkdir_parents(sub, 0700), TRACKD_OK, "an existing directory is fine");
	snprintf(path, sizeof path, "%s/f", sub);

	CHECK_EQ(fs_write_atomic(path, "hello", 5, 0600, true), TRACKD_OK);
	CHECK_EQ(fs_write_atomic(path, "hello, world", 12, 0600, false), TRACKD_OK);
	char *text = NULL;
	size_t len = 0;
	CHECK_EQ(fs_read_file(path, 12, &text, &len), TRACKD_OK);
	CHECK_STR_EQ(text, "hello, world");
	CHECK_EQ(len, 12);
	free(text);
	CHECK_EQ(fs_read_file(path, 11, &text, &len), TRACKD_ETOOBIG);
	CHECK(text == NULL);
	CHECK_EQ(fs_read_file(path, 0, &text, &len), TRACKD_ETOOBIG);
	CHECK_EQ(fs_write_atomic(path, "", 0, 0600, false), TRACKD_OK);
	CHECK_EQ(fs_read_file(path, 0, &text, &len), TRACKD_OK);
	CHECK(text && len == 0 && text[0] == '\0');
	free(text);
	char tmp[320];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	CHECK(access(tmp, F_OK) != 0, "no temporary left behind");
	snprintf(tmp, sizeof tmp, "%s/missing", dir);
	CHECK_EQ(fs_read_file(tmp, 100, &text, &len), TRACKD_ENOENT);

	unlink(path);
	for (int i = 0; i < 3; i++) {
		char *slash = strrchr(sub, '/');
		rmdir(sub);
		*slash = '\0';
	}
	rmdir(dir);
}

static void test_buf(void)
{
	struct buf b;
	buf_init(&b, 8);
	CHECK_EQ(buf_append(&b, "1234567", 7), 0);
	CHECK_EQ(buf_putc(&b, '8'), 0);
	CHECK_EQ(b.len, 8);
	CHECK_EQ(buf_putc(&b, '9'), TRACKD_ETOOBIG);
	CHECK_STR_EQ(b.data, "12345678"); /* refused: unchanged */
	buf_fini(&b);
	/* SIZE_MAX: no maximum. max + 1 wraps to 0, which once shrank the
	 * allocation to nothing (realloc to 0 frees). */
	buf_init(&b, SIZE_MAX);
	for (int i = 0; i < 1000; i++)
		CHECK_EQ(buf_puts(&b, "0123456789"), 0);
	CHECK_EQ(b.len, 10000);
	CHECK(b.data && b.cap > b.len && strncmp(b.data + 9990, "0123456789", 10) == 0);
	CHECK_EQ(buf_append(&b, "x", SIZE_MAX), TRACKD_ETOOBIG);
	buf_fini(&b);
}

static void put_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL, "%s", path);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void test_runenv(void)
{
	char out[128];
	runenv_strip_credentials("https://u:tok@github.com/a/b.git", out, sizeof out);
	CHECK_STR_EQ(out, "https://github.com/a/b.git");
	runenv_strip_credentials("https://tok@github.com/a@b.git", out, sizeof out);
	CHECK_STR_EQ(out, "https://github.com/a@b.git");
	runenv_strip_credentials("git@github.com:a/b.git", out, sizeof out);
	CHECK_STR_EQ(out, "git@github.com:a/b.git", "scp-like: the user is no secret");
	runenv_strip_credentials("https://github.com/a/b", out, sizeof out);
	CHECK_STR_EQ(out, "https://github.com/a/b");

	struct runenv_git g;
	CHECK_EQ(runenv_git("/proc/self", &g), TRACKD_ENOENT, "no repository");
	/* A repository made of files, as git leaves them: the branch's ref
	 * packed, the origin's URL with a token; then a worktree beside it. */
	char root[] = "/tmp/runenv_test.XXXXXX";
	CHECK(mkdtemp(root) != NULL);
	char path[256], sub[300];
	snprintf(path, sizeof path, "%s/.git", root);
	mkdir(path, 0700);
	put_file(path, "HEAD", "ref: refs/heads/main\n");
	put_file(path, "packed-refs",
	         "# pack-refs with: peeled\n0123456789012345678901234567890123456789 "
	         "refs/heads/main\n");
	put_file(path, "config",
	         "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = "
	         "https://me:secret@example.com/x.git\n");
	snprintf(sub, sizeof sub, "%s/deep", root);
	mkdir(sub, 0700);
	CHECK_EQ(runenv_git(sub, &g), 0, "found by climbing");
	CHECK_STR_EQ(g.branch, "main");
	CHECK_STR_EQ(g.commit, "0123456789012345678901234567890123456789");
	CHECK(strcmp(g.remote, "https://example.com/x.git") == 0, "credentials stripped");
	snprintf(sub, sizeof sub, "%s/.git/worktrees", root);
	mkdir(sub, 0700);
	snprintf(sub, sizeof sub, "%s/.git/worktrees/wt", root);
	mkdir(sub, 0700);
	put_file(sub, "HEAD", "abcdefabcdefabcdefabcdefabcdefabcdefabcd\n");
	put_file(sub, "commondir", "../..\n");
	snprintf(sub, sizeof sub, "%s/wt", root);
	mkdir(sub, 0700);
	char gitfile[400];
	snprintf(gitfile, sizeof gitfile, "gitdir: %s/.git/worktrees/wt\n", root);
	put_file(sub, ".git", gitfile);
	CHECK_EQ(runenv_git(sub, &g), 0, "a worktree");
	CHECK_STR_EQ(g.branch, "", "detached");
	CHECK_STR_EQ(g.commit, "abcdefabcdefabcdefabcdefabcdefabcdefabcd");
	CHECK(strcmp(g.remote, "https://example.com/x.git") == 0, "the common dir's config");
	/* Files only: git (if installed) finds no objects and fails, which is
	 * "unknown", never "clean". */
	CHECK_EQ(runenv_git_dirty(root, 2000, NULL), RUNENV_DIRTY_UNKNOWN);
	atomic_bool stop = true;
	CHECK_EQ(runenv_git_dirty(root, 2000, &stop), RUNENV_DIRTY_UNKNOWN, "aborted");
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	CHECK_EQ(system(cmd), 0);

	char line[] = "/usr/bin/python3\0train.py\0--lr\0"
	              "0.1";
	const char *argv[RUNENV_MAX_ARGS];
	int prog;
	CHECK_EQ(runenv_argv(line, sizeof line, argv, &prog), 4);
	CHECK_EQ(prog, 1, "the script is the program");
	CHECK_STR_EQ(argv[3], "0.1");
	char line2[] = "./bin/train\0-x";
	CHECK_EQ(runenv_argv(line2, sizeof line2, argv, &prog), 2);
	CHECK_EQ(prog, 0);
	char line3[] = "python3\0-c\0pass";
	CHECK_EQ(runenv_argv(line3, sizeof line3, argv, &prog), 3);
	CHECK_EQ(prog, 0, "python -c: no script");
}

int main(void)
{
	test_buf();
	test_utf8();
	test_varint();
	test_hash();
	test_fmt();
	test_fs();
	test_runenv();
	return CHECK_SUMMARY("common_test");
}
