#include "wire.h"

/* At most `max_bytes` bytes: protobuf-c 1.4 reads tags and lengths as 32-bit
 * varints (5 bytes) and refuses longer ones, so accepting them here would let a
 * batch in that the sinks then cannot decode. */
static int read_varint_max(struct wire_reader *r, uint64_t *out, int max_bytes)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 7 * max_bytes && shift < 64; shift += 7) {
		if (r->p >= r->end)
			return -1;
		uint8_t b = *r->p++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return -1; /* longer than allowed */
}

static int read_varint(struct wire_reader *r, uint64_t *out)
{
	return read_varint_max(r, out, 10);
}

int wire_next(struct wire_reader *r, struct wire_field *f)
{
	if (r->p >= r->end)
		return 0;
	uint64_t key;
	if (read_varint_max(r, &key, 5) != 0)
		return -1;
	uint64_t number = key >> 3;
	if (number == 0 || number > 536870911u)
		return -1;
	f->number = (uint32_t)number;
	f->type = (enum wire_type)(key & 7);
	f->data = NULL;
	f->len = 0;
	f->varint = 0;
	switch (f->type) {
	case WIRE_VARINT:
		return read_varint(r, &f->varint) == 0 ? 1 : -1;
	case WIRE_I64:
	case WIRE_I32: {
		size_t n = f->type == WIRE_I64 ? 8 : 4;
		if ((size_t)(r->end - r->p) < n)
			return -1;
		for (size_t i = 0; i < n; i++)
			f->varint |= (uint64_t)r->p[i] << (8 * i);
		r->p += n;
		return 1;
	}
	case WIRE_LEN: {
		uint64_t len;
		if (read_varint_max(r, &len, 5) != 0 || len > (uint64_t)(r->end - r->p))
			return -1;
		f->data = r->p;
		f->len = (size_t)len;
		r->p += len;
		return 1;
	}
	}
	return -1; /* groups (3, 4) and 6, 7 are not used by trackd */
}

size_t wire_put_varint(uint8_t *buf, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		buf[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	buf[n++] = (uint8_t)v;
	return n;
}

size_t wire_varint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

bool wire_utf8_valid(const uint8_t *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		uint8_t c = s[i];
		if (c == 0)
			return false; /* C strings end there: "a\0b" would arrive as "a" */
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		uint32_t cp;
		if ((c & 0xe0) == 0xc0) {
			n = 2;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 3;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i < n)
			return false;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
		if (cp < min_for_len[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}
