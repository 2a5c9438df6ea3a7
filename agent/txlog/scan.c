/* scan.c — finding and checking frames in a segment file, shared by recovery
 * and readers. Input is untrusted: every length is checked against the limit and
 * the file's end before it sizes anything. */
#include "txlog_internal.h"

#include "crc32c.h"
#include "errors.h"

#include <stdlib.h>
#include <string.h>

/* Bytes worth having in the window before searching it for a frame magic. */
#define RESYNC_MIN_WINDOW (64u << 10)

static const uint8_t frame_magic_bytes[4] = {0x4B, 0x43, 0x52, 0x54}; /* LE 0x5452434B */

void scan_init(struct frame_scan *s, uint32_t max_record, size_t chunk)
{
	memset(s, 0, sizeof *s);
	s->fd = -1;
	s->max_record = max_record;
	s->chunk = chunk;
}

void scan_reset(struct frame_scan *s, int fd, uint64_t bound)
{
	s->fd = fd;
	s->bound = bound;
	s->buf_off = 0;
	s->buf_len = 0;
}

void scan_set_bound(struct frame_scan *s, uint64_t bound)
{
	s->bound = bound;
	/* A window reaching past a shrunk bound (NEVER after a failed fsync) would
	 * serve bytes that are gone. */
	if (s->buf_off + s->buf_len > bound)
		s->buf_len = s->buf_off < bound ? (size_t)(bound - s->buf_off) : 0;
}

void scan_fini(struct frame_scan *s)
{
	free(s->buf);
	s->buf = NULL;
	s->cap = 0;
}

const uint8_t *scan_fill(struct frame_scan *s, uint64_t off, size_t n, int *err)
{
	*err = TRACKD_OK;
	if (off > s->bound || n > s->bound - off)
		return NULL;
	if (off >= s->buf_off && off - s->buf_off <= s->buf_len &&
	    n <= s->buf_len - (off - s->buf_off))
		return s->buf + (off - s->buf_off);

	/* Read a whole chunk at a time, but never past the bound: the caller has
	 * checked that n bytes fit in the file, so the buffer stays bounded by it. */
	uint64_t rest = s->bound - off;
	size_t want = rest < s->chunk ? (size_t)rest : s->chunk;
	if (want < n)
		want = n;
	size_t keep = 0;
	if (off >= s->buf_off && off - s->buf_off < s->buf_len)
		keep = s->buf_len - (size_t)(off - s->buf_off);
	if (want > s->cap) {
		/* One chunk, or one frame bigger than that (it fits in the file). */
		size_t ncap = want > s->chunk ? want : s->chunk;
		uint8_t *nb = malloc(ncap);
		if (!nb) {
			*err = TRACKD_ENOMEM;
			return NULL;
		}
		if (keep)
			memcpy(nb, s->buf + (off - s->buf_off), keep);
		free(s->buf);
		s->buf = nb;
		s->cap = ncap;
	} else if (keep && off != s->buf_off) {
		memmove(s->buf, s->buf + (off - s->buf_off), keep);
	}
	s->buf_off = off;
	s->buf_len = keep;

	size_t got;
	int rc = io_pread_full(s->fd, s->buf + keep, want - keep, off + keep, &got);
	s->buf_len = keep + got;
	if (rc != TRACKD_OK) {
		*err = rc;
		return NULL;
	}
	if (s->buf_len < n) {
		/* The file is shorter than the bound said: it is the real end. */
		s->bound = off + s->buf_len;
		return NULL;
	}
	return s->buf;
}

int scan_frame_at(struct frame_scan *s, uint64_t off, uint64_t min_index, struct frame *f)
{
	int err;
	const uint8_t *h = scan_fill(s, off, TXLOG_FRAME_OVERHEAD, &err);
	if (!h)
		return err;
	if (get_le32(h) != FRAME_MAGIC)
		return 0;
	uint32_t len = get_le32(h + 4);
	uint64_t index = get_le64(h + 8);
	uint32_t crc = get_le32(h + 16);
	if (len > s->max_record || index < min_index || index == 0)
		return 0;
	/* Fits before the bound? Checked before the window may grow to hold it. */
	if (s->bound - off - TXLOG_FRAME_OVERHEAD < len)
		return 0;
	h = scan_fill(s, off, (size_t)TXLOG_FRAME_OVERHEAD + len, &err);
	if (!h)
		return err;
	uint32_t c = crc32c_update(0, h + 4, 12); /* length | index */
	c = crc32c_update(c, h + TXLOG_FRAME_OVERHEAD, len);
	if (c != crc)
		return 0;
	f->index = index;
	f->len = len;
	f->payload = h + TXLOG_FRAME_OVERHEAD;
	return 1;
}

int scan_resync(struct frame_scan *s, uint64_t from, uint64_t min_index, uint64_t *at)
{
	uint64_t q = from;
	while (q < s->bound && s->bound - q >= TXLOG_FRAME_OVERHEAD) {
		uint64_t rest = s->bound - q;
		size_t need = rest < RESYNC_MIN_WINDOW ? (size_t)rest : RESYNC_MIN_WINDOW;
		int err;
		const uint8_t *w = scan_fill(s, q, need, &err);
		if (!w) {
			if (err)
				return err;
			continue; /* the bound shrank to the real end; the loop re-checks */
		}
		size_t n = s->buf_len - (size_t)(q - s->buf_off);
		const uint8_t *hit = memmem(w, n, frame_magic_bytes, sizeof frame_magic_bytes);
		if (!hit) {
			if (q + n >= s->bound)
				return 0;
			/* Keep 3 bytes: a magic may straddle the window's end. */
			q += n - 3;
			continue;
		}
		uint64_t h = q + (uint64_t)(hit - w);
		struct frame f;
		int r = scan_frame_at(s, h, min_index, &f);
		if (r < 0)
			return r;
		if (r == 1) {
			*at = h;
			return 1;
		}
		q = h + 1;
	}
	return 0;
}
