/*
 * media_test.c — libtrackd's media helpers without an agent: the PNG
 * encoder (a decoder's view: signature, chunk CRCs, IHDR, inflated rows),
 * td_save_file's names, and media values in a disabled run.
 */
#include "check.h"
#include "trackd/trackd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Walks the chunks, checking each CRC; returns the inflated IDAT. */
static uint8_t *decode(const uint8_t *png, size_t len, uint32_t *w, uint32_t *h, uint8_t *color,
                       size_t *raw_len)
{
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	CHECK(len > 8 && memcmp(png, sig, 8) == 0, "PNG signature");
	size_t off = 8;
	uint8_t *raw = NULL;
	bool end = false;
	while (off + 12 <= len && !end) {
		uint32_t n = be32(png + off);
		const uint8_t *type = png + off + 4, *data = png + off + 8;
		CHECK_EQ(be32(data + n), (uint32_t)crc32(0L, type, 4 + n));
		if (memcmp(type, "IHDR", 4) == 0) {
			*w = be32(data);
			*h = be32(data + 4);
			*color = data[9];
			CHECK_EQ(data[8], 8);
		} else if (memcmp(type, "IDAT", 4) == 0) {
			uLongf cap = *raw_len;
			raw = malloc(cap);
			CHECK_EQ(uncompress(raw, &cap, data, n), Z_OK);
			*raw_len = cap;
		} else if (memcmp(type, "IEND", 4) == 0) {
			end = true;
		}
		off += 12 + n;
	}
	CHECK(end && off == len, "IEND last");
	return raw;
}

static void test_png(void)
{
	const uint32_t w = 5, h = 3;
	for (uint32_t ch = 1; ch <= 4; ch++) {
		uint8_t px[5 * 3 * 4];
		for (size_t i = 0; i < sizeof px; i++)
			px[i] = (uint8_t)(i * 13);
		uint8_t *png = NULL;
		size_t len = 0;
		int rc = td_png_encode(px, w, h, ch, &png, &len);
		if (ch == 2) {
			CHECK_EQ(rc, TD_ERR_INVALID, "2 channels");
			continue;
		}
		CHECK_EQ(rc, TD_OK);
		uint32_t gw = 0, gh = 0;
		uint8_t color = 0;
		size_t raw_len = (w * ch + 1) * h + 16;
		uint8_t *raw = decode(png, len, &gw, &gh, &color, &raw_len);
		CHECK_EQ(gw, w);
		CHECK_EQ(gh, h);
		CHECK_EQ(color, ch == 1 ? 0 : ch == 3 ? 2 : 6);
		CHECK_EQ(raw_len, (w * ch + 1) * h);
		for (uint32_t y = 0; raw && y < h; y++) {
			CHECK_EQ(raw[y * (w * ch + 1)], 0, "filter none");
			CHECK(memcmp(raw + y * (w * ch + 1) + 1, px + y * w * ch, w * ch) == 0);
		}
		free(raw);
		td_free(png);
	}
	uint8_t *png = NULL;
	size_t len;
	uint8_t px[4] = {0};
	CHECK_EQ(td_png_encode(px, 0, 1, 1, &png, &len), TD_ERR_INVALID, "empty");
	CHECK_EQ(td_png_encode(NULL, 1, 1, 1, &png, &len), TD_ERR_INVALID);
	CHECK_EQ(td_png_encode(px, 100000, 100000, 1, &png, &len), TD_ERR_INVALID, "too big");
}

static void test_disabled_run(void)
{
	td_run_options o;
	td_run_options_init(&o);
	o.mode = TD_MODE_DISABLED;
	o.print_footer = false;
	td_run *run = NULL;
	CHECK_EQ(td_init(&o, &run), TD_OK);
	uint8_t px[12] = {0};
	td_media img = {
	    .kind = TD_MEDIA_PIXELS, .data = px, .width = 2, .height = 2, .channels = 3};
	td_item row[] = {TD_MEDIA_ITEM("img", &img), TD_F("loss", 0.5)};
	CHECK_EQ(td_log(run, row, 2, TD_STEP_AUTO, true), TD_OK);
	CHECK_EQ(td_save_file(run, "ok/name.txt", "x", 1, "now"), TD_OK);
	CHECK_EQ(td_save_file(run, "/abs/name.txt", "x", 1, NULL), TD_OK, "normalised");
	CHECK_EQ(td_save_file(run, "../escape", "x", 1, NULL), TD_ERR_INVALID);
	CHECK_EQ(td_save_file(run, "a/../../b", "x", 1, NULL), TD_ERR_INVALID);
	CHECK_EQ(td_save_file(run, "bad\nname", "x", 1, NULL), TD_ERR_INVALID);
	CHECK_EQ(td_save_file(run, "ok", "x", 1, "sometimes"), TD_ERR_INVALID, "policy");
	char long_name[1100];
	memset(long_name, 'n', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	CHECK_EQ(td_save_file(run, long_name, "x", 1, NULL), TD_ERR_INVALID, "over 1024 bytes");
	CHECK_EQ(td_finish(run, 0, 0, NULL), TD_OK);
}

int main(void)
{
	test_png();
	test_disabled_run();
	return CHECK_SUMMARY("media_test");
}
