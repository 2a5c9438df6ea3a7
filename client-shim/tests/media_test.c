/*
 * media_test.c — libtrackd's media helpers without an agent: the PNG
 * encoder (a decoder's view: signature, chunk CRCs, IHDR, inflated rows),
 * td_save_file's names, media values in a disabled run, and the bounds files
 * wait under (td_save_file in memory, td_save_path in the spool dir) with no
 * agent to take them.
 */
#include "check.h"
#include "trackd/trackd.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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

static char tmpdir[64];

/* A file of len bytes of `fill` in tmpdir; its path. */
static const char *make_file(const char *name, size_t len, int fill)
{
	static char path[128];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "wb");
	for (size_t i = 0; i < len; i++)
		fputc(fill, f);
	fclose(f);
	return path;
}

/* A run with no agent (nothing drains its queues): what it queues stays. */
static td_run *run_without_agent(size_t max_buffer, size_t max_spool)
{
	td_run_options o;
	td_run_options_init(&o);
	char url[128], spool[128];
	snprintf(url, sizeof url, "ipc://%s/no-agent.sock", tmpdir);
	snprintf(spool, sizeof spool, "%s/spool", tmpdir);
	o.socket_url = url;
	o.spool_dir = spool;
	o.print_footer = false;
	o.capture_console = false;
	o.max_buffer_bytes = max_buffer;
	o.max_spool_bytes = max_spool;
	td_run *run = NULL;
	CHECK_EQ(td_init(&o, &run), TD_OK);
	return run;
}

/* Unnamed copies in the spool's files dir leave no names behind. */
static size_t spool_blob_names(void)
{
	char dir[160];
	size_t n = 0;
	snprintf(dir, sizeof dir, "%s/spool", tmpdir);
	/* <spool>/<agent hash>/files/… */
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char sub[512];
		snprintf(sub, sizeof sub, "%s/%s/files", dir, e->d_name);
		DIR *f = opendir(sub);
		struct dirent *g;
		while (f && (g = readdir(f)))
			n += g->d_name[0] != '.';
		if (f)
			closedir(f);
	}
	if (d)
		closedir(d);
	return n;
}

/* td_save_path waits in the spool dir, bounded by max_spool_bytes:
 * limit-1, limit and limit+1 for one file, and the queue's room. */
static void test_save_path_bounds(void)
{
	const size_t spool = 1 << 20;
	td_run *run = run_without_agent(64 << 10, spool);
	CHECK_EQ(td_save_path(run, "big", make_file("over", spool + 1, 'a'), "now"), TD_ERR_INVALID,
	         "over max_spool_bytes: could never fit");
	CHECK(strstr(td_last_error(), "max_spool_bytes") != NULL, "%s", td_last_error());
	CHECK_EQ(td_save_path(run, "almost", make_file("almost", spool - 1, 'b'), "now"), TD_OK,
	         "limit-1, far over max_buffer_bytes: on disk, not in memory");
	CHECK_EQ(td_save_path(run, "one", make_file("one", 1, 'c'), "now"), TD_OK, "to the limit");
	CHECK_EQ(td_save_path(run, "more", make_file("more", 1, 'd'), "now"), TD_ERR_FULL,
	         "limit+1 queued: full, retry later");
	CHECK(strstr(td_last_error(), "max_spool_bytes") != NULL, "%s", td_last_error());
	CHECK_EQ(td_save_path(run, "same", make_file("one", 1, 'c'), "now"), TD_ERR_FULL,
	         "full is full: the content is not known before the file is read");
	CHECK_EQ(spool_blob_names(), 0, "queued copies have no names");
	CHECK_EQ(td_save_path(run, "x", tmpdir, "now"), TD_ERR_INVALID, "a directory");
	CHECK_EQ(td_save_path(run, "x", "/nonexistent/file", "now"), TD_ERR_INVALID);
	CHECK_EQ(td_save_path(run, "../x", make_file("one", 1, 'c'), "now"), TD_ERR_INVALID);
	/* At finish, with no agent, the queued copies get names in the spool. */
	td_finish(run, 0, 100, NULL);
	CHECK_EQ(spool_blob_names(), 2, "both contents spooled at finish");

	run = run_without_agent(spool, spool);
	CHECK_EQ(td_save_path(run, "whole", make_file("whole", spool, 'e'), "now"), TD_OK,
	         "exactly max_spool_bytes");
	td_finish(run, 0, 100, NULL);

	/* The same content queued twice counts once: a half and the same half
	 * again leave room for another half. */
	run = run_without_agent(64 << 10, spool);
	CHECK_EQ(td_save_path(run, "a", make_file("half", spool / 2, 'f'), "now"), TD_OK);
	CHECK_EQ(td_save_path(run, "a again", make_file("half", spool / 2, 'f'), "now"), TD_OK);
	CHECK_EQ(td_save_path(run, "b", make_file("other", spool / 2, 'g'), "now"), TD_OK,
	         "the copy of the same content was not counted twice");
	td_finish(run, 0, 100, NULL);
}

/* td_save_file's bytes wait in memory: one over max_buffer_bytes could never
 * fit (TD_ERR_INVALID naming the way out), one that fits but not now is FULL. */
static void test_save_file_bounds(void)
{
	const size_t buffer = 64 << 10;
	td_run *run = run_without_agent(buffer, 1 << 20);
	char *data = calloc(1, buffer + 1);
	CHECK_EQ(td_save_file(run, "over", data, buffer + 1, NULL), TD_ERR_INVALID);
	CHECK(strstr(td_last_error(), "td_save_path") != NULL, "%s", td_last_error());
	CHECK_EQ(td_save_file(run, "fits", data, buffer / 2, NULL), TD_OK);
	data[0] = 1;
	CHECK_EQ(td_save_file(run, "no room now", data, buffer, NULL), TD_ERR_FULL);
	free(data);
	td_finish(run, 0, 100, NULL);
}

int main(void)
{
	test_png();
	test_disabled_run();
	setenv("TRACKD_NO_AUTOSTART", "1", 1);
	snprintf(tmpdir, sizeof tmpdir, "/tmp/media_test.XXXXXX");
	CHECK(mkdtemp(tmpdir) != NULL);
	test_save_path_bounds();
	test_save_file_bounds();
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	CHECK_EQ(system(cmd), 0);
	return CHECK_SUMMARY("media_test");
}
