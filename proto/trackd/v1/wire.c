#include "wire.h"

#include "varint.h"

#include <stdlib.h>

/* Hand encoders write each key as one byte. */
#define WIRE_ONE_BYTE_(M, F, m, f, num, type)                                                      \
	_Static_assert((num) > 0 && (num) < 16, #M "." #F ": key is not one byte");
WIRE_FIELDS(WIRE_ONE_BYTE_)
#undef WIRE_ONE_BYTE_

/* Tags and lengths take at most 5 bytes: protobuf-c 1.4 reads them as 32-bit
 * varints and refuses longer ones, so accepting them here would let a batch in
 * that the sinks then cannot decode. */
#define TAG_MAX_BYTES 5

int wire_next(struct wire_reader *r, struct wire_field *f)
{
	if (r->p >= r->end)
		return 0;
	uint64_t key;
	if (!varint_get(&r->p, r->end, &key, TAG_MAX_BYTES))
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
	case WIRE_VARINT: return varint_get(&r->p, r->end, &f->varint, VARINT_MAX_BYTES) ? 1 : -1;
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
		if (!varint_get(&r->p, r->end, &len, TAG_MAX_BYTES) ||
		    len > (uint64_t)(r->end - r->p))
			return -1;
		f->data = r->p;
		f->len = (size_t)len;
		r->p += len;
		return 1;
	}
	}
	return -1; /* groups (3, 4) and 6, 7 are not used by trackd */
}

ProtobufCMessage *wire_copy(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *bytes = malloc(len ? len : 1);
	if (!bytes)
		return NULL;
	protobuf_c_message_pack(m, bytes);
	ProtobufCMessage *copy = protobuf_c_message_unpack(m->descriptor, NULL, len, bytes);
	free(bytes);
	return copy;
}
