/*
 * wire_test.c — every key of wire.h against the protobuf-c descriptors
 * generated from trackd.proto: same number, same wire type. A field renumbered
 * or retyped in the .proto fails here instead of corrupting what the hand
 * encoders write. Also the reader's edge cases.
 */
#include "trackd/v1/trackd.pb-c.h"
#include "trackd/v1/wire.h"

#include "check.h"
#include "varint.h"

#include <string.h>

static void check_field(const char *what, const ProtobufCMessageDescriptor *d, const char *field,
                        unsigned number, enum wire_type type)
{
	const ProtobufCFieldDescriptor *fd =
	    protobuf_c_message_descriptor_get_field_by_name(d, field);
	CHECK(fd != NULL, "%s: %s has no field %s", what, d->name, field);
	if (!fd)
		return;
	CHECK(fd->id == number, "%s: %s.%s is field %u in trackd.proto, %u in wire.h", what,
	      d->name, field, fd->id, number);
	CHECK(wire_type_of(fd->type) == type, "%s: %s.%s has wire type %d, wire.h says %d", what,
	      d->name, field, (int)wire_type_of(fd->type), (int)type);
	/* Packed repeated scalars would be WIRE_LEN: none of these may be one. */
	CHECK(!(fd->label == PROTOBUF_C_LABEL_REPEATED && type != WIRE_LEN), "%s: %s.%s is packed",
	      what, d->name, field);
}

static void test_keys_match_descriptors(void)
{
#define CHECK_ONE(M, F, m, f, num, type)                                                           \
	check_field(#M "." #F, &trackd__v1__##m##__descriptor, #f, WIRE_NUM(M, F),                 \
	            WIRE_TYPE(M, F));                                                              \
	CHECK_EQ(WIRE_KEY(M, F), (num) << 3 | (type));
	WIRE_FIELDS(CHECK_ONE)
#undef CHECK_ONE
}

/* The canned bytes of the hand encoders decode with protobuf-c as meant. */
static void test_envelope_decodes(void)
{
	uint8_t buf[64];
	size_t n = 0;
	buf[n++] = WIRE_KEY(REQUEST, PROTOCOL_VERSION);
	buf[n++] = 1;
	buf[n++] = WIRE_KEY(REQUEST, BATCH);
	buf[n++] = 2 + 16 + 2;
	buf[n++] = WIRE_KEY(BATCH, SESSION_ID);
	buf[n++] = 16;
	memset(buf + n, 0xab, 16);
	n += 16;
	buf[n++] = WIRE_KEY(BATCH, SEQ);
	n += varint_put(buf + n, 7);
	Trackd__V1__Request *req = trackd__v1__request__unpack(NULL, n, buf);
	CHECK(req != NULL, "envelope does not decode");
	if (!req)
		return;
	CHECK_EQ(req->protocol_version, 1);
	CHECK(req->body_case == TRACKD__V1__REQUEST__BODY_BATCH, "body_case %d", req->body_case);
	if (req->body_case == TRACKD__V1__REQUEST__BODY_BATCH) {
		CHECK_EQ(req->batch->seq, 7);
		CHECK_EQ(req->batch->session_id.len, 16);
	}
	trackd__v1__request__free_unpacked(req, NULL);
}

static void test_reader(void)
{
	struct wire_reader r;
	struct wire_field f;
	/* Batch{seq = 300}, then a truncated length-delimited field. */
	const uint8_t good[] = {WIRE_KEY(BATCH, SEQ), 0xac, 0x02, WIRE_KEY(BATCH, RECORDS), 5, 1};
	wire_reader_init(&r, good, sizeof good);
	CHECK_EQ(wire_next(&r, &f), 1);
	CHECK_EQ(f.number, WIRE_NUM(BATCH, SEQ));
	CHECK_EQ(f.type, WIRE_VARINT);
	CHECK_EQ(f.varint, 300);
	CHECK_EQ(wire_next(&r, &f), -1);
	/* Field number 0 and a 6-byte tag are refused; an empty message ends at once. */
	const uint8_t zero[] = {0x00, 0x00};
	wire_reader_init(&r, zero, sizeof zero);
	CHECK_EQ(wire_next(&r, &f), -1);
	const uint8_t long_tag[] = {0x88, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00};
	wire_reader_init(&r, long_tag, sizeof long_tag);
	CHECK_EQ(wire_next(&r, &f), -1);
	wire_reader_init(&r, good, 0);
	CHECK_EQ(wire_next(&r, &f), 0);
}

int main(void)
{
	test_keys_match_descriptors();
	test_envelope_decodes();
	test_reader();
	return CHECK_SUMMARY("wire_test");
}
