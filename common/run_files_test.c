/*
 * run_files_test.c — run file names (run_files.h): what escapes is refused,
 * W&B's media names, and the length limits at limit - 1, limit, limit + 1.
 */
#include "check.h"
#include "run_files.h"

#include <string.h>

static bool valid(const char *s)
{
	return files_name_valid(s, strlen(s));
}

static void test_valid(void)
{
	CHECK(valid("model.ckpt"));
	CHECK(valid("media/images/a_1_0123.png"));
	CHECK(!valid(""));
	CHECK(!valid("/etc/passwd"), "absolute");
	CHECK(!valid("../x"));
	CHECK(!valid("a/../../x"));
	CHECK(!valid("a/./x"));
	CHECK(!valid("a//x"), "empty component");
	CHECK(!valid("a/"), "trailing slash");
	CHECK(!valid("a\\..\\x"), "backslash");
	CHECK(!valid("a\nb"), "control character");
	CHECK(!files_name_valid("a\0b", 3), "NUL");
	char part[TRACKD_MAX_FILE_NAME_PART + 2];
	memset(part, 'x', sizeof part);
	part[TRACKD_MAX_FILE_NAME_PART - 1] = '\0';
	CHECK(valid(part), "component at limit - 1");
	part[TRACKD_MAX_FILE_NAME_PART - 1] = 'x';
	part[TRACKD_MAX_FILE_NAME_PART] = '\0';
	CHECK(valid(part), "component at limit");
	part[TRACKD_MAX_FILE_NAME_PART] = 'x';
	part[TRACKD_MAX_FILE_NAME_PART + 1] = '\0';
	CHECK(!valid(part), "component at limit + 1");
	char name[TRACKD_MAX_FILE_NAME_BYTES + 2];
	for (size_t i = 0; i < sizeof name; i++)
		name[i] = (i % 100 == 99) ? '/' : 'y';
	CHECK(files_name_valid(name, TRACKD_MAX_FILE_NAME_BYTES - 1), "name at limit - 1");
	CHECK(files_name_valid(name, TRACKD_MAX_FILE_NAME_BYTES), "name at limit");
	CHECK(!files_name_valid(name, TRACKD_MAX_FILE_NAME_BYTES + 1), "name at limit + 1");
}

static void test_normalise(void)
{
	char out[256];
	CHECK(files_name_normalise("/abs/./x.txt", out, sizeof out));
	CHECK_STR_EQ(out, "abs/x.txt");
	CHECK(files_name_normalise("./a//b\\c", out, sizeof out));
	CHECK_STR_EQ(out, "a/b/c");
	CHECK(!files_name_normalise("a/../../etc/passwd", out, sizeof out));
	CHECK(!files_name_normalise("..", out, sizeof out));
	CHECK(!files_name_normalise("/", out, sizeof out), "empty result");
	CHECK(!files_name_normalise("a\x01", out, sizeof out));
}

static void test_media(void)
{
	char out[256];
	const char *sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	CHECK(files_media_name("images", "samples", 3, sha, ".png", out, sizeof out));
	CHECK_STR_EQ(out, "media/images/samples_3_0123456789abcdef0123.png");
	CHECK(files_media_name("images", "val/pred img", 0, sha, ".png", out, sizeof out));
	CHECK_STR_EQ(out, "media/images/val/pred_img_0_0123456789abcdef0123.png");
	CHECK(files_media_name("table", "../../x", 1, sha, ".table.json", out, sizeof out));
	CHECK_STR_EQ(out, "media/table/_/_/x_1_0123456789abcdef0123.table.json");
	CHECK(valid(out));
	uint8_t d[32];
	char hex[65];
	CHECK(files_parse_digest(sha, 64, d));
	files_hex_digest(d, hex);
	CHECK_STR_EQ(hex, sha);
	CHECK(!files_parse_digest("zz", 2, d));
}

int main(void)
{
	test_valid();
	test_normalise();
	test_media();
	return CHECK_SUMMARY("run_files_test");
}
