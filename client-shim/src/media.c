/*
 * media.c — media values and saved files (media.h).
 */
#include "media.h"

#include "blob_queue.h"
#include "encode.h"
#include "error.h"
#include "run.h"
#include "run_files.h"

#include "errors.h"
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Pixels the library encodes: 64 Mi pixels (a 8192 × 8192 image). */
#define TDI_MAX_PIXELS ((uint64_t)1 << 26)
/* Fields of one media object: _type, format, width, height, path, sha256,
 * size, caption (images); values and bins (histograms). */
#define TDI_MEDIA_FIELDS 8

static void sha256(const void *data, size_t len, uint8_t digest[32])
{
	unsigned int n = 32;
	EVP_Digest(data, len, digest, &n, EVP_sha256(), NULL);
}

/* ---- PNG (zlib) ---------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* One chunk at p: length, type, data, CRC of type and data. */
static size_t put_chunk(uint8_t *p, const char *type, const uint8_t *data, uint32_t len)
{
	put32(p, len);
	memcpy(p + 4, type, 4);
	if (len)
		memcpy(p + 8, data, len);
	uLong crc = crc32(0L, p + 4, 4 + len);
	put32(p + 8 + len, (uint32_t)crc);
	return 12 + (size_t)len;
}

int td_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels,
                  uint8_t **out, size_t *out_len)
{
	static const uint8_t color_type[5] = {0, 0, 4, 2, 6}; /* gray, -, gray+alpha, RGB, RGBA */
	if (!pixels || !out || !out_len || width == 0 || height == 0 || channels == 0 ||
	    channels > 4 || channels == 2)
		return tdi_fail(TD_ERR_INVALID,
		                "td_png_encode: pixels, a size and 1, 3 or 4 channels are needed");
	if ((uint64_t)width * height > TDI_MAX_PIXELS)
		return tdi_fail(TD_ERR_INVALID, "td_png_encode: %ux%u is over %llu pixels", width,
		                height, (unsigned long long)TDI_MAX_PIXELS);
	size_t row = (size_t)width * channels;
	size_t raw_len = (row + 1) * height;
	uint8_t *raw = malloc(raw_len);
	uLongf z_len = compressBound((uLong)raw_len);
	uint8_t *png = raw ? malloc(8 + 25 + 12 + z_len + 12) : NULL;
	if (!png) {
		free(raw);
		return tdi_fail(TD_ERR_NOMEM, "td_png_encode: out of memory");
	}
	/* Filter type 0 (none) on every row: simple, and zlib still does well. */
	for (uint32_t y = 0; y < height; y++) {
		raw[y * (row + 1)] = 0;
		memcpy(raw + y * (row + 1) + 1, pixels + y * row, row);
	}
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	size_t n = 0;
	memcpy(png, sig, 8);
	n = 8;
	uint8_t ihdr[13];
	put32(ihdr, width);
	put32(ihdr + 4, height);
	ihdr[8] = 8; /* bit depth */
	ihdr[9] = color_type[channels];
	ihdr[10] = ihdr[11] = ihdr[12] = 0;
	n += put_chunk(png + n, "IHDR", ihdr, 13);
	/* IDAT written in place: compress straight after its length and type. */
	if (compress2(png + n + 8, &z_len, raw, (uLong)raw_len, 6) != Z_OK) {
		free(raw);
		free(png);
		return tdi_fail(TD_ERR_NOMEM, "td_png_encode: zlib failed");
	}
	free(raw);
	put32(png + n, (uint32_t)z_len);
	memcpy(png + n + 4, "IDAT", 4);
	put32(png + n + 8 + z_len, (uint32_t)crc32(0L, png + n + 4, 4 + (uInt)z_len));
	n += 12 + z_len;
	n += put_chunk(png + n, "IEND", NULL, 0);
	*out = png;
	*out_len = n;
	return TD_OK;
}

/* ---- histograms ---------------------------------------------------------- */

/* numpy.histogram's rule: num_bins equal bins over [min, max] of the finite
 * values (max in the last bin); all equal: [v - 0.5, v + 0.5]. */
static int histogram(const double *values, size_t n, uint32_t bins, double *counts, double *edges)
{
	double lo = INFINITY, hi = -INFINITY;
	for (size_t i = 0; i < n; i++)
		if (isfinite(values[i])) {
			lo = values[i] < lo ? values[i] : lo;
			hi = values[i] > hi ? values[i] : hi;
		}
	if (lo > hi)
		lo = 0, hi = 1;
	if (lo == hi)
		lo -= 0.5, hi += 0.5;
	for (uint32_t b = 0; b <= bins; b++)
		edges[b] = lo + (hi - lo) * b / bins;
	memset(counts, 0, bins * sizeof *counts);
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(values[i]))
			continue;
		size_t b = (size_t)((values[i] - lo) / (hi - lo) * bins);
		if (b >= bins)
			b = bins - 1;
		counts[b] += 1;
	}
	return TD_OK;
}

/* ---- the row ------------------------------------------------------------- */

/* What one rewritten media item needs to stay alive until the row is logged. */
struct media_slot {
	td_item fields[TDI_MEDIA_FIELDS];
	char path[TRACKD_MAX_FILE_NAME_BYTES + 1];
	char hex[65];
	td_item *list; /* histogram values and bins; a list of images' names and captions */
	char *names;   /* a list of images' file names */
};

bool tdi_has_media(const td_item *items, size_t n)
{
	for (size_t i = 0; items && i < n; i++)
		if (items[i].type == TD_MEDIA)
			return true;
	return false;
}

static int histogram_item(const char *key, const td_media *m, struct media_slot *slot, td_item *out)
{
	uint32_t bins = m->num_bins ? m->num_bins : TD_HISTOGRAM_DEFAULT_BINS;
	if (bins > TD_HISTOGRAM_MAX_BINS)
		return tdi_fail(TD_ERR_INVALID, "td_log: histogram '%s' has %u bins, limit %d", key,
		                bins, TD_HISTOGRAM_MAX_BINS);
	if (!m->counts && !m->values && m->n_values)
		return tdi_fail(TD_ERR_INVALID, "td_log: histogram '%s' has no values", key);
	double *counts = malloc((2 * (size_t)bins + 1) * sizeof *counts);
	slot->list = calloc(2 * (size_t)bins + 1, sizeof *slot->list);
	if (!counts || !slot->list) {
		free(counts);
		return tdi_fail(TD_ERR_NOMEM, "td_log: out of memory");
	}
	double *edges = counts + bins;
	if (m->counts) {
		if (!m->edges) {
			free(counts);
			return tdi_fail(TD_ERR_INVALID,
			                "td_log: histogram '%s': counts need edges (num_bins + 1)",
			                key);
		}
		memcpy(counts, m->counts, bins * sizeof *counts);
		memcpy(edges, m->edges, (bins + 1) * sizeof *edges);
	} else {
		histogram(m->values, m->n_values, bins, counts, edges);
	}
	for (uint32_t b = 0; b < bins; b++)
		slot->list[b] = (td_item){.type = TD_DOUBLE, .v.d = counts[b]};
	for (uint32_t b = 0; b <= bins; b++)
		slot->list[bins + b] = (td_item){.type = TD_DOUBLE, .v.d = edges[b]};
	free(counts);
	slot->fields[0] = TD_S("_type", "histogram");
	slot->fields[1] = TD_L("values", slot->list, bins);
	slot->fields[2] = TD_L("bins", slot->list + bins, bins + 1);
	*out = TD_M(key, slot->fields, 3);
	return TD_OK;
}

/* The file of one image or table: encoded if need be, hashed, queued; its
 * W&B name in path, its digest in hex and digest, its size in *size. */
static int queue_file(td_run *run, const char *key, const td_media *m, int64_t step, char *path,
                      size_t path_cap, char hex[65], uint8_t digest[32], size_t *size)
{
	uint8_t *bytes = NULL;
	size_t len = 0;
	int rc;
	const char *subdir = "images", *ext = ".png";
	switch (m->kind) {
	case TD_MEDIA_PIXELS:
		if (!m->data)
			return tdi_fail(TD_ERR_INVALID, "td_log: image '%s' has no pixels", key);
		if ((rc = td_png_encode(m->data, m->width, m->height, m->channels, &bytes, &len)))
			return rc;
		break;
	case TD_MEDIA_JPEG: ext = ".jpeg"; /* fall through */
	case TD_MEDIA_PNG:
	case TD_MEDIA_TABLE:
		if (m->kind == TD_MEDIA_TABLE) {
			subdir = "table", ext = ".table.json";
			if (m->nrows > TD_TABLE_MAX_ROWS)
				return tdi_fail(TD_ERR_INVALID,
				                "td_log: table '%s' has %u rows, limit %d (W&B's)",
				                key, m->nrows, TD_TABLE_MAX_ROWS);
		}
		if (!m->data || !m->len)
			return tdi_fail(TD_ERR_INVALID, "td_log: media '%s' has no bytes", key);
		if (!(bytes = malloc(m->len)))
			return tdi_fail(TD_ERR_NOMEM, "td_log: out of memory");
		memcpy(bytes, m->data, m->len);
		len = m->len;
		break;
	default: return tdi_fail(TD_ERR_INVALID, "td_log: media '%s' of unknown kind", key);
	}
	sha256(bytes, len, digest);
	files_hex_digest(digest, hex);
	if (!files_media_name(subdir, key, step, hex, ext, path, path_cap)) {
		free(bytes);
		return tdi_fail(TD_ERR_INVALID, "td_log: media key '%s' makes too long a file name",
		                key);
	}
	pthread_mutex_lock(&run->mu);
	rc = tdi_blob_enqueue_locked(run, bytes, len, digest);
	pthread_mutex_unlock(&run->mu);
	if (rc) {
		free(bytes);
		return rc;
	}
	*size = len;
	return TD_OK;
}

static const char *image_format(const td_media *m)
{
	return m->kind == TD_MEDIA_JPEG ? "jpeg" : "png";
}

/* A file-backed media value: its bytes queued, its object in *out. */
static int file_item(td_run *run, const char *key, const td_media *m, int64_t step,
                     struct media_slot *slot, td_item *out)
{
	uint8_t digest[32];
	size_t len = 0;
	int rc =
	    queue_file(run, key, m, step, slot->path, sizeof slot->path, slot->hex, digest, &len);
	if (rc)
		return rc;
	const char *format = image_format(m);
	size_t k = 0;
	if (m->kind == TD_MEDIA_TABLE) {
		slot->fields[k++] = TD_S("_type", "table-file");
		slot->fields[k++] = TD_S("path", slot->path);
		slot->fields[k++] = TD_S("sha256", slot->hex);
		slot->fields[k++] = TD_I("size", (int64_t)len);
		slot->fields[k++] = TD_I("ncols", m->ncols);
		slot->fields[k++] = TD_I("nrows", m->nrows);
	} else {
		slot->fields[k++] = TD_S("_type", "image-file");
		slot->fields[k++] = TD_S("format", format);
		slot->fields[k++] = TD_I("width", m->width);
		slot->fields[k++] = TD_I("height", m->height);
		slot->fields[k++] = TD_S("path", slot->path);
		slot->fields[k++] = TD_S("sha256", slot->hex);
		slot->fields[k++] = TD_I("size", (int64_t)len);
		if (m->caption)
			slot->fields[k++] = TD_S("caption", m->caption);
	}
	*out = TD_M(key, slot->fields, k);
	return TD_OK;
}

/* W&B's list of images: each file queued and saved as a run file (the
 * object names them without their digests), one images/separated object. */
static int images_item(td_run *run, const char *key, const td_media *m, int64_t step,
                       struct media_slot *slot, td_item *out)
{
	if (!m->images || m->n_images == 0 || m->n_images > TD_MEDIA_MAX_IMAGES)
		return tdi_fail(TD_ERR_INVALID, "td_log: '%s': 1 to %d images", key,
		                TD_MEDIA_MAX_IMAGES);
	size_t n = m->n_images;
	bool captions = false;
	for (size_t i = 0; i < n; i++) {
		const td_media *im = &m->images[i];
		if (im->kind != TD_MEDIA_PNG && im->kind != TD_MEDIA_JPEG &&
		    im->kind != TD_MEDIA_PIXELS)
			return tdi_fail(TD_ERR_INVALID, "td_log: '%s'[%zu] is not an image", key,
			                i);
		captions |= im->caption != NULL;
	}
	/* Paths (the strings the row points at) and the list items, in one block. */
	slot->names = calloc(n, TRACKD_MAX_FILE_NAME_BYTES + 1);
	slot->list = calloc(2 * n, sizeof *slot->list);
	if (!slot->names || !slot->list)
		return tdi_fail(TD_ERR_NOMEM, "td_log: out of memory");
	for (size_t i = 0; i < n; i++) {
		char *path = slot->names + i * (TRACKD_MAX_FILE_NAME_BYTES + 1);
		char hex[65];
		uint8_t digest[32];
		size_t len;
		int rc = queue_file(run, key, &m->images[i], step, path,
		                    TRACKD_MAX_FILE_NAME_BYTES + 1, hex, digest, &len);
		if (rc)
			return rc;
		Trackd__V1__SavedFile f = TRACKD__V1__SAVED_FILE__INIT;
		f.name = path;
		f.has_sha256 = f.has_size = true;
		f.sha256.len = 32;
		f.sha256.data = digest;
		f.size = len;
		f.policy = (char *)"now";
		Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
		rec.body_case = TRACKD__V1__RECORD__BODY_FILE;
		rec.file = &f;
		if ((rc = tdi_record_proto(run, "td_log", &rec)) != TD_OK)
			return rc;
		slot->list[i] = TD_S(NULL, path);
		const char *caption = m->images[i].caption;
		slot->list[n + i] = caption ? TD_S(NULL, caption) : TD_N(NULL);
	}
	size_t k = 0;
	slot->fields[k++] = TD_S("_type", "images/separated");
	slot->fields[k++] = TD_I("width", m->images[0].width);
	slot->fields[k++] = TD_I("height", m->images[0].height);
	slot->fields[k++] = TD_S("format", image_format(&m->images[0]));
	slot->fields[k++] = TD_I("count", (int64_t)n);
	slot->fields[k++] = TD_L("filenames", slot->list, n);
	if (captions)
		slot->fields[k++] = TD_L("captions", slot->list + n, n);
	*out = TD_M(key, slot->fields, k);
	return TD_OK;
}

int tdi_media_log(td_run *run, const td_item *items, size_t n, int64_t step, bool commit,
                  int (*log)(td_run *, const td_item *, size_t, int64_t, bool))
{
	if (step == TD_STEP_AUTO) {
		pthread_mutex_lock(&run->mu);
		step = run->step;
		pthread_mutex_unlock(&run->mu);
		/* Logged at that step explicitly: the name and the row agree. */
	}
	td_item *row = malloc(n * sizeof *row);
	struct media_slot *slots = calloc(n, sizeof *slots);
	int rc = row && slots ? TD_OK : tdi_fail(TD_ERR_NOMEM, "td_log: out of memory");
	for (size_t i = 0; rc == TD_OK && i < n; i++) {
		row[i] = items[i];
		if (items[i].type != TD_MEDIA)
			continue;
		const td_media *m = items[i].v.media;
		if (!m || !items[i].key)
			rc = tdi_fail(TD_ERR_INVALID, "td_log: a media item without key or value");
		else if (m->kind == TD_MEDIA_HISTOGRAM)
			rc = histogram_item(items[i].key, m, &slots[i], &row[i]);
		else if (m->kind == TD_MEDIA_IMAGES)
			rc = images_item(run, items[i].key, m, step, &slots[i], &row[i]);
		else
			rc = file_item(run, items[i].key, m, step, &slots[i], &row[i]);
	}
	if (rc == TD_OK)
		rc = log(run, row, n, step, commit);
	for (size_t i = 0; slots && i < n; i++) {
		free(slots[i].list);
		free(slots[i].names);
	}
	free(slots);
	free(row);
	return rc;
}

/* A saved file's name (normalised into norm) and policy, checked. */
static int check_save(const char *fn, const char *name, const char *policy, char *norm,
                      size_t norm_len)
{
	if (!files_name_normalise(name, norm, norm_len))
		return tdi_fail(TD_ERR_INVALID,
		                "%s: '%.200s' is not a file name a run can hold (empty, '..', a "
		                "control character, or over %u bytes)",
		                fn, name, TRACKD_MAX_FILE_NAME_BYTES);
	if (policy && strcmp(policy, "now") && strcmp(policy, "live") && strcmp(policy, "end"))
		return tdi_fail(TD_ERR_INVALID, "%s: policy '%s' (now, live or end)", fn, policy);
	return TD_OK;
}

/* The SavedFile record naming a queued blob. */
static int record_saved(td_run *run, const char *fn, const char *norm, const uint8_t digest[32],
                        uint64_t len, const char *policy)
{
	Trackd__V1__SavedFile f = TRACKD__V1__SAVED_FILE__INIT;
	f.name = (char *)norm;
	f.has_sha256 = f.has_size = true;
	f.sha256.len = 32;
	f.sha256.data = (uint8_t *)digest;
	f.size = len;
	f.policy = (char *)(policy ? policy : "now");
	Trackd__V1__Record rec = TRACKD__V1__RECORD__INIT;
	rec.body_case = TRACKD__V1__RECORD__BODY_FILE;
	rec.file = &f;
	return tdi_record_proto(run, fn, &rec);
}

/* Queues bytes (owned) in memory and records them. */
static int save_bytes(td_run *run, const char *fn, const char *norm, uint8_t *bytes, size_t len,
                      const char *policy)
{
	uint8_t digest[32];
	sha256(bytes, len, digest);
	pthread_mutex_lock(&run->mu);
	int rc = tdi_blob_enqueue_locked(run, bytes, len, digest);
	pthread_mutex_unlock(&run->mu);
	if (rc) {
		free(bytes);
		return rc;
	}
	return record_saved(run, fn, norm, digest, len, policy);
}

int td_save_file(td_run *run, const char *name, const void *data, size_t len, const char *policy)
{
	char norm[TRACKD_MAX_FILE_NAME_BYTES + 1];
	if (!run || !name || (!data && len))
		return tdi_fail(TD_ERR_INVALID, "td_save_file: run, name and data are needed");
	int rc = check_save("td_save_file", name, policy, norm, sizeof norm);
	if (rc || run->disabled)
		return rc;
	uint8_t *bytes = malloc(len ? len : 1);
	if (!bytes)
		return tdi_fail(TD_ERR_NOMEM, "td_save_file: out of memory");
	if (len)
		memcpy(bytes, data, len);
	return save_bytes(run, "td_save_file", norm, bytes, len, policy);
}

int td_save_path(td_run *run, const char *name, const char *path, const char *policy)
{
	char norm[TRACKD_MAX_FILE_NAME_BYTES + 1];
	if (!run || !name || !path)
		return tdi_fail(TD_ERR_INVALID, "td_save_path: run, name and path are needed");
	int rc = check_save("td_save_path", name, policy, norm, sizeof norm);
	if (rc || run->disabled)
		return rc;
	int src = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (src < 0 || fstat(src, &st) != 0 || !S_ISREG(st.st_mode)) {
		int err = src < 0 ? errno : 0;
		if (src >= 0)
			close(src);
		return tdi_fail(TD_ERR_INVALID, "td_save_path: %.300s: %s", path,
		                err ? strerror(err) : "not a regular file");
	}
	uint64_t len = 0;
	uint8_t digest[32];
	int copy = -1;
	if (run->spool.enabled) {
		/* Room first: a refusal must not cost a copy of the file. */
		pthread_mutex_lock(&run->mu);
		rc = tdi_blob_spool_room_locked(run, (uint64_t)st.st_size);
		pthread_mutex_unlock(&run->mu);
		if (rc) {
			close(src);
			return rc;
		}
	}
	rc = tdi_blob_copy_to_spool(run, src, &len, digest, &copy);
	if (rc == 1) {
		/* No spool dir to wait in: in memory, as td_save_file. */
		char *data = NULL;
		size_t n = 0;
		size_t max = run->max_buffer_bytes;
		int frc = fs_read_fd(src, max, &data, &n);
		close(src);
		if (frc == TRACKD_ETOOBIG)
			return tdi_fail(
			    TD_ERR_INVALID,
			    "td_save_path: %.300s is larger than the memory it may wait in "
			    "without a spool dir (max_buffer_bytes %zu)",
			    path, max);
		if (frc)
			return tdi_fail(TD_ERR_INVALID, "td_save_path: cannot read %.300s: %s",
			                path, trackd_strerror(frc));
		return save_bytes(run, "td_save_path", norm, (uint8_t *)data, n, policy);
	}
	close(src);
	if (rc)
		return rc;
	pthread_mutex_lock(&run->mu);
	rc = tdi_blob_enqueue_fd_locked(run, copy, len, digest);
	pthread_mutex_unlock(&run->mu);
	if (rc) {
		close(copy);
		return rc;
	}
	return record_saved(run, "td_save_path", norm, digest, len, policy);
}
