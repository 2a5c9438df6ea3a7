/* wandb_txlog.c — see wandb_txlog.h. */
#include "wandb_txlog.h"

#include "crc32c.h"
#include "le.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum { CHUNK_FULL = 1, CHUNK_FIRST = 2, CHUNK_MIDDLE = 3, CHUNK_LAST = 4 };

static const uint8_t file_header[WTX_HEADER_BYTES] = {':', 'W', '&', 'B', 0xE1, 0xBE, 0x00};

struct wtx_reader {
	FILE *f;
	size_t max_record;
	wtx_damage_fn on_damage;
	void *arg;
	uint8_t block[WTX_BLOCK_BYTES];
	size_t n, pos;      /* bytes in block; next chunk header */
	uint64_t block_off; /* file offset of block[0] */
	uint8_t *rec;
	size_t rec_len, rec_cap;
	bool assembling; /* a FIRST was read, its LAST not yet */
	uint64_t rec_off;
	bool recovering; /* after damage: MIDDLE/LAST chunks are leftovers */
	bool have_pending;
	struct wtx_damage pending; /* adjacent damage is reported as one */
	uint64_t damages;
};

uint32_t wtx_crc_ieee(uint8_t type, const uint8_t *payload, size_t len)
{
	uLong c = crc32(0L, &type, 1);
	return (uint32_t)crc32(c, len ? payload : (const Bytef *)"", (uInt)len);
}

uint32_t wtx_crc_leveldb(uint8_t type, const uint8_t *payload, size_t len)
{
	uint32_t c = crc32c_update(crc32c_update(0, &type, 1), payload, len);
	return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static void flush_damage(wtx_reader *r)
{
	if (!r->have_pending)
		return;
	r->have_pending = false;
	r->damages++;
	if (r->on_damage)
		r->on_damage(r->arg, &r->pending);
}

/* Damage that continues the last one (a run of zeroed blocks) extends it. */
static void damage(wtx_reader *r, uint64_t offset, uint64_t skipped, const char *what)
{
	if (r->have_pending && r->pending.offset + r->pending.skipped == offset &&
	    strcmp(r->pending.what, what) == 0) {
		r->pending.skipped += skipped;
		return;
	}
	flush_damage(r);
	r->pending = (struct wtx_damage){.offset = offset, .skipped = skipped, .what = what};
	r->have_pending = true;
}

/* W&B's Recover(): the rest of the block is discarded, with the record being
 * assembled. */
static void skip_block(wtx_reader *r, uint64_t chunk_off, const char *what)
{
	uint64_t end = r->block_off + r->n;
	if (r->assembling)
		damage(r, r->rec_off, end - r->rec_off, what);
	else
		damage(r, chunk_off, end - chunk_off, what);
	r->assembling = false;
	r->recovering = true;
	r->pos = r->n;
}

static int load_block(wtx_reader *r)
{
	r->block_off += r->n;
	r->n = fread(r->block, 1, sizeof r->block, r->f);
	r->pos = 0;
	return ferror(r->f) ? TRACKD_EIO : 0;
}

int wtx_open(FILE *f, size_t max_record, wtx_damage_fn on_damage, void *arg, wtx_reader **out,
             char *why, size_t whylen)
{
	*out = NULL;
	wtx_reader *r = calloc(1, sizeof *r);
	if (!r) {
		fclose(f);
		snprintf(why, whylen, "out of memory");
		return TRACKD_ENOMEM;
	}
	r->f = f;
	r->max_record = max_record ? max_record : WTX_DEFAULT_MAX_REC;
	r->on_damage = on_damage;
	r->arg = arg;
	if (load_block(r) != 0) {
		snprintf(why, whylen, "cannot read the file");
		wtx_close(r);
		return TRACKD_EIO;
	}
	if (r->n < WTX_HEADER_BYTES || memcmp(r->block, file_header, 4) != 0 ||
	    memcmp(r->block + 4, file_header + 4, 2) != 0 || r->block[6] != 0) {
		if (r->n < WTX_HEADER_BYTES)
			snprintf(why, whylen, "the file ends inside its %u-byte header",
			         WTX_HEADER_BYTES);
		else if (memcmp(r->block, file_header, 6) != 0)
			snprintf(why, whylen,
			         "not a W&B transaction file (its header is not \":W&B\" and "
			         "magic 0xBEE1)");
		else
			snprintf(why, whylen,
			         "W&B transaction file version %u; this reader knows 0",
			         r->block[6]);
		wtx_close(r);
		return WTX_BAD_HEADER;
	}
	r->pos = WTX_HEADER_BYTES;
	*out = r;
	return 0;
}

void wtx_close(wtx_reader *r)
{
	if (!r)
		return;
	if (r->f)
		fclose(r->f);
	free(r->rec);
	free(r);
}

uint64_t wtx_position(const wtx_reader *r)
{
	return r->block_off + r->pos;
}

uint64_t wtx_damage_count(const wtx_reader *r)
{
	return r->damages + (r->have_pending ? 1 : 0);
}

/* The file ended: what was left unread is a torn tail. */
static int at_end(wtx_reader *r)
{
	uint64_t end = r->block_off + r->n;
	if (r->assembling)
		damage(r, r->rec_off, end - r->rec_off, "the file ends inside a record");
	else if (r->pos < r->n)
		damage(r, r->block_off + r->pos, r->n - r->pos, "the file ends inside a chunk");
	r->assembling = false;
	r->pos = r->n;
	flush_damage(r);
	return 0;
}

static int append(wtx_reader *r, const uint8_t *p, size_t len)
{
	if (r->rec_len + len > r->rec_cap) {
		size_t cap = r->rec_cap ? r->rec_cap : 4096;
		while (cap < r->rec_len + len)
			cap *= 2;
		if (cap > r->max_record)
			cap = r->max_record;
		uint8_t *n = realloc(r->rec, cap ? cap : 1);
		if (!n)
			return TRACKD_ENOMEM;
		r->rec = n;
		r->rec_cap = cap;
	}
	if (len)
		memcpy(r->rec + r->rec_len, p, len);
	r->rec_len += len;
	return 0;
}

int wtx_next(wtx_reader *r, const uint8_t **data, size_t *len, uint64_t *offset)
{
	for (;;) {
		if (r->n - r->pos < WTX_HEADER_BYTES) {
			if (r->n < WTX_BLOCK_BYTES)
				return at_end(r);
			/* A full block's last bytes are padding; the next block follows. */
			if (load_block(r) != 0)
				return TRACKD_EIO;
			continue;
		}
		const uint8_t *h = r->block + r->pos;
		uint64_t chunk_off = r->block_off + r->pos;
		uint32_t crc = get_le32(h);
		size_t clen = (size_t)h[4] | (size_t)h[5] << 8;
		uint8_t type = h[6];
		if (crc == 0 && clen == 0 && type == 0) {
			skip_block(r, chunk_off, "zeroed bytes");
			continue;
		}
		if (r->pos + WTX_HEADER_BYTES + clen > r->n) {
			if (r->n < WTX_BLOCK_BYTES)
				return at_end(r);
			skip_block(r, chunk_off, "a chunk runs past its block");
			continue;
		}
		if (type < CHUNK_FULL || type > CHUNK_LAST) {
			skip_block(r, chunk_off, "unknown chunk type");
			continue;
		}
		const uint8_t *payload = h + WTX_HEADER_BYTES;
		if (crc != wtx_crc_ieee(type, payload, clen) &&
		    crc != wtx_crc_leveldb(type, payload, clen)) {
			skip_block(r, chunk_off, "checksum mismatch");
			continue;
		}
		r->pos += WTX_HEADER_BYTES + clen;
		if (type == CHUNK_FULL || type == CHUNK_FIRST) {
			if (r->assembling)
				damage(r, r->rec_off, chunk_off - r->rec_off,
				       "a record without its last chunk");
			r->assembling = false;
			r->recovering = false;
			r->rec_len = 0;
			r->rec_off = chunk_off;
			if (type == CHUNK_FULL) {
				if (clen > r->max_record) {
					damage(r, chunk_off, WTX_HEADER_BYTES + clen,
					       "a record over the size limit");
					continue;
				}
				flush_damage(r);
				*data = payload;
				*len = clen;
				*offset = chunk_off;
				return 1;
			}
			r->assembling = true;
		} else if (!r->assembling) {
			/* The rest of a record whose start was skipped: reported with
			 * that damage, or, with nothing skipped before, on its own. */
			if (!r->recovering)
				damage(r, chunk_off, WTX_HEADER_BYTES + clen,
				       "a chunk of a record whose first chunk is missing");
			r->recovering = true;
			continue;
		}
		if (r->rec_len + clen > r->max_record) {
			damage(r, r->rec_off, chunk_off + WTX_HEADER_BYTES + clen - r->rec_off,
			       "a record over the size limit");
			r->assembling = false;
			r->recovering = true;
			continue;
		}
		int rv = append(r, payload, clen);
		if (rv)
			return rv;
		if (type == CHUNK_LAST) {
			r->assembling = false;
			flush_damage(r);
			*data = r->rec ? r->rec : payload;
			*len = r->rec_len;
			*offset = r->rec_off;
			return 1;
		}
	}
}
