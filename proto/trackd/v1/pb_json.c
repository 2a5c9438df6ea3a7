/* JSON of trackd.proto messages by descriptor: see pb_json.h for the rules. */
#include "trackd/v1/pb_json.h"

#include "errors.h"
#include "json_write.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* How a message is written: the rules of pb_json.h, and what an unset
 * optional field becomes. */
enum unset_field { UNSET_NULL, UNSET_OMITTED };

static int write_message(const ProtobufCMessage *m, struct buf *out, int depth,
                         enum unset_field unset);

static int write_value(const Trackd__V1__Value *v, struct buf *out, int depth);

static int write_map(const Trackd__V1__MapValue *m, struct buf *out, int depth)
{
	int rv = buf_putc(out, '{');
	for (size_t i = 0; !rv && i < m->n_items; i++) {
		if (i)
			rv = buf_putc(out, ',');
		if (!rv)
			rv = json_write_string(out, m->items[i]->key);
		if (!rv)
			rv = buf_putc(out, ':');
		if (!rv)
			rv = write_value(m->items[i]->value, out, depth + 1);
	}
	return rv ? rv : buf_putc(out, '}');
}

static int write_list(const Trackd__V1__ListValue *l, struct buf *out, int depth)
{
	int rv = buf_putc(out, '[');
	for (size_t i = 0; !rv && i < l->n_values; i++) {
		if (i)
			rv = buf_putc(out, ',');
		if (!rv)
			rv = write_value(l->values[i], out, depth + 1);
	}
	return rv ? rv : buf_putc(out, ']');
}

static int write_value(const Trackd__V1__Value *v, struct buf *out, int depth)
{
	if (depth > PB_JSON_MAX_DEPTH)
		return TRACKD_ETOOBIG;
	if (!v)
		return buf_puts(out, "null");
	switch (v->kind_case) {
	case TRACKD__V1__VALUE__KIND_DOUBLE_VALUE: return json_write_double(out, v->double_value);
	case TRACKD__V1__VALUE__KIND_INT_VALUE: return json_write_int(out, v->int_value);
	case TRACKD__V1__VALUE__KIND_BOOL_VALUE: return json_write_bool(out, v->bool_value);
	case TRACKD__V1__VALUE__KIND_STRING_VALUE: return json_write_string(out, v->string_value);
	case TRACKD__V1__VALUE__KIND_MAP_VALUE: return write_map(v->map_value, out, depth);
	case TRACKD__V1__VALUE__KIND_LIST_VALUE: return write_list(v->list_value, out, depth);
	default: return buf_puts(out, "null"); /* null_value, or a kind not set */
	}
}

/* One element of a field: `p` points at it in the message (or in the array
 * of a repeated field). */
static int write_element(const ProtobufCFieldDescriptor *f, const void *p, struct buf *out,
                         int depth, enum unset_field unset)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_ENUM: return json_write_int(out, *(const int32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64: return json_write_int(out, *(const int64_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32: return json_write_uint(out, *(const uint32_t *)p);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: return json_write_uint(out, *(const uint64_t *)p);
	case PROTOBUF_C_TYPE_FLOAT: return json_write_double(out, *(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE: return json_write_double(out, *(const double *)p);
	case PROTOBUF_C_TYPE_BOOL: return json_write_bool(out, *(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_STRING: return json_write_string(out, *(char *const *)p);
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		return b->len ? buf_append(out, b->data, b->len) : buf_puts(out, "null");
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
		if (!sub)
			return buf_puts(out, "null");
		if (f->descriptor == &trackd__v1__map_value__descriptor)
			return write_map((const Trackd__V1__MapValue *)sub, out, depth + 1);
		if (f->descriptor == &trackd__v1__list_value__descriptor)
			return write_list((const Trackd__V1__ListValue *)sub, out, depth + 1);
		if (f->descriptor == &trackd__v1__value__descriptor)
			return write_value((const Trackd__V1__Value *)sub, out, depth + 1);
		return write_message(sub, out, depth + 1, unset);
	}
	}
	return TRACKD_EINVAL;
}

static size_t element_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: return sizeof(uint64_t);
	case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
	default: return sizeof(uint32_t);
	}
}

/* Whether an optional field is set: a has_ flag for scalars and bytes, a
 * pointer for strings and messages. */
static bool optional_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)m;
	if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
		return *(const void *const *)(base + f->offset) != NULL;
	return *(const protobuf_c_boolean *)(base + f->quantifier_offset) != 0;
}

/* Raw bytes as a JSON string of their base64 (RFC 4648, padded). */
static int write_base64(const ProtobufCBinaryData *b, struct buf *out)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	int rv = buf_putc(out, '"');
	for (size_t i = 0; !rv && i < b->len; i += 3) {
		uint32_t v = (uint32_t)b->data[i] << 16;
		size_t n = b->len - i < 3 ? b->len - i : 3;
		if (n > 1)
			v |= (uint32_t)b->data[i + 1] << 8;
		if (n > 2)
			v |= b->data[i + 2];
		char q[4] = {abc[v >> 18 & 63], abc[v >> 12 & 63], n > 1 ? abc[v >> 6 & 63] : '=',
		             n > 2 ? abc[v & 63] : '='};
		rv = buf_append(out, q, 4);
	}
	return rv ? rv : buf_putc(out, '"');
}

/* Whether a bytes field holds content (a file's bytes) rather than JSON. */
static bool raw_bytes(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f)
{
	return f->type == PROTOBUF_C_TYPE_BYTES && d == &trackd__v1__run_file_chunk__descriptor;
}

static int write_message(const ProtobufCMessage *m, struct buf *out, int depth,
                         enum unset_field unset)
{
	if (depth > PB_JSON_MAX_DEPTH)
		return TRACKD_ETOOBIG;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	int rv = buf_putc(out, '{');
	bool first = true;
	for (unsigned i = 0; !rv && i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		bool in_oneof = (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
		if (in_oneof && *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		bool is_unset =
		    !in_oneof && f->label == PROTOBUF_C_LABEL_OPTIONAL && !optional_set(m, f);
		if (is_unset && unset == UNSET_OMITTED)
			continue;
		rv = buf_printf(out, "%s\"%s\":", first ? "" : ",", f->name);
		first = false;
		if (rv)
			break;
		const void *p = base + f->offset;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const char *arr = *(const char *const *)p;
			rv = buf_putc(out, '[');
			for (size_t k = 0; !rv && k < n; k++) {
				if (k)
					rv = buf_putc(out, ',');
				if (!rv)
					rv = write_element(f, arr + k * element_size(f->type), out,
					                   depth, unset);
			}
			if (!rv)
				rv = buf_putc(out, ']');
		} else if (is_unset) {
			rv = buf_puts(out, "null");
		} else if (raw_bytes(d, f)) {
			rv = write_base64(p, out);
		} else {
			rv = write_element(f, p, out, depth, unset);
		}
	}
	return rv ? rv : buf_putc(out, '}');
}

int pb_json_write(const ProtobufCMessage *m, struct buf *out)
{
	return write_message(m, out, 0, UNSET_NULL);
}

int pb_json_write_present(const ProtobufCMessage *m, struct buf *out)
{
	return write_message(m, out, 0, UNSET_OMITTED);
}

int pb_json_value(const Trackd__V1__Value *v, struct buf *out)
{
	return write_value(v, out, 0);
}

int pb_json_query_reply(const Trackd__V1__QueryReply *r, struct buf *out)
{
	const ProtobufCMessageDescriptor *d = r->base.descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && f->id == (uint32_t)r->reply_case)
			return write_element(f, (const char *)r + f->offset, out, 0, UNSET_NULL);
	}
	return TRACKD_EINVAL;
}
