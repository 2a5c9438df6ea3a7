/*
 * encode.c — the wire-level pieces (encode.h): the hand-built request envelope,
 * the hand encoder for item records (the hot path), and the scratch structs
 * through which protobuf-c encodes caller items for the cold records
 * (RunStart's config) without copying them.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "encode.h"
#include "error.h"
#include "varint.h"

/*
 * The records were encoded once, as Batch.records entries, when they were
 * logged; the envelope around them is written here so that sending (and
 * resending) a batch never re-encodes them.
 */
size_t tdi_envelope_put(uint8_t dst[TDI_ENVELOPE_MAX],
                        const uint8_t session_id[TRACKD_SESSION_ID_BYTES], uint64_t seq,
                        size_t records_len)
{
	size_t batch_len = 2 + TRACKD_SESSION_ID_BYTES + 1 + varint_size(seq) + records_len;
	size_t n = 0;

	dst[n++] = WIRE_KEY(REQUEST, PROTOCOL_VERSION);
	n += varint_put(dst + n, TRACKD_PROTOCOL_VERSION);
	dst[n++] = WIRE_KEY(REQUEST, BATCH);
	n += varint_put(dst + n, batch_len);
	dst[n++] = WIRE_KEY(BATCH, SESSION_ID);
	dst[n++] = TRACKD_SESSION_ID_BYTES;
	memcpy(dst + n, session_id, TRACKD_SESSION_ID_BYTES);
	n += TRACKD_SESSION_ID_BYTES;
	dst[n++] = WIRE_KEY(BATCH, SEQ);
	n += varint_put(dst + n, seq);
	return n;
}

/* Grows *arr (of elem-byte entries, *cap of them) to hold at least `need`,
 * doubling from 4 so that slowly widening rows do not reallocate every call.
 * false when out of memory (*arr and *cap unchanged). */
static bool grow_array(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return true;
	size_t n = *cap ? *cap : 4;
	while (n < need)
		n *= 2;
	void *p = realloc(*arr, n * elem);
	if (p == NULL)
		return false;
	*arr = p;
	*cap = n;
	return true;
}
int tdi_scratch_reserve(struct tdi_scratch *s, const struct tdi_item_count *count)
{
	if (count->items > s->cap_items) {
		/* Grow geometrically so a run whose rows slowly widen does not
		 * reallocate on every call. */
		size_t n = s->cap_items ? s->cap_items : 16;
		while (n < count->items)
			n *= 2;
		struct tdi_item_len *lens = realloc(s->lens, n * sizeof(*lens));
		if (lens == NULL)
			goto nomem;
		s->lens = lens;
		Trackd__V1__Item *items = realloc(s->items, n * sizeof(*items));
		if (items == NULL)
			goto nomem;
		s->items = items;
		Trackd__V1__Value *values = realloc(s->values, n * sizeof(*values));
		if (values == NULL)
			goto nomem;
		s->values = values;
		Trackd__V1__Item **ptrs = realloc(s->ptrs, n * sizeof(*ptrs));
		if (ptrs == NULL)
			goto nomem;
		s->ptrs = ptrs;
		Trackd__V1__Value **vptrs = realloc(s->vptrs, n * sizeof(*vptrs));
		if (vptrs == NULL)
			goto nomem;
		s->vptrs = vptrs;
		s->cap_items = n;
	}
	if (!grow_array((void **)&s->lists, &s->cap_lists, count->lists, sizeof(*s->lists)) ||
	    !grow_array((void **)&s->maps, &s->cap_maps, count->maps, sizeof(*s->maps)))
		goto nomem;
	return TD_OK;
nomem:
	return tdi_fail(TD_ERR_NOMEM, "out of memory encoding %zu items", count->items);
}

void tdi_scratch_fini(struct tdi_scratch *s)
{
	free(s->lens);
	free(s->items);
	free(s->values);
	free(s->ptrs);
	free(s->vptrs);
	free(s->maps);
	free(s->lists);
	memset(s, 0, sizeof(*s));
}

static const Trackd__V1__Item item_init = TRACKD__V1__ITEM__INIT;
static const Trackd__V1__Value value_init = TRACKD__V1__VALUE__INIT;
static const Trackd__V1__MapValue map_init = TRACKD__V1__MAP_VALUE__INIT;
static const Trackd__V1__ListValue list_init = TRACKD__V1__LIST_VALUE__INIT;
/* Every null points here: protobuf-c only reads it (an empty message). */
static const Trackd__V1__NullValue null_value = TRACKD__V1__NULL_VALUE__INIT;

struct fill_pos {
	size_t item, map, list;
};

static Trackd__V1__Item **fill(struct tdi_scratch *s, const td_item *items, size_t n,
                               struct fill_pos *pos);
static Trackd__V1__Value **fill_list(struct tdi_scratch *s, const td_item *items, size_t n,
                                     struct fill_pos *pos);

static void fill_value(struct tdi_scratch *s, Trackd__V1__Value *v, const td_item *src,
                       struct fill_pos *pos)
{
	*v = value_init;
	switch (src->type) {
	case TD_DOUBLE:
		v->kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
		v->double_value = src->v.d;
		break;
	case TD_INT:
		v->kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
		v->int_value = src->v.i;
		break;
	case TD_BOOL:
		v->kind_case = TRACKD__V1__VALUE__KIND_BOOL_VALUE;
		v->bool_value = src->v.b;
		break;
	case TD_STRING:
		v->kind_case = TRACKD__V1__VALUE__KIND_STRING_VALUE;
		/* protobuf-c wants char *; it only reads the string. */
		v->string_value = (char *)src->v.s;
		break;
	case TD_MAP: {
		Trackd__V1__MapValue *m = &s->maps[pos->map++];
		*m = map_init;
		m->n_items = src->v.map.n;
		m->items = fill(s, src->v.map.items, src->v.map.n, pos);
		v->kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
		v->map_value = m;
		break;
	}
	case TD_LIST: {
		Trackd__V1__ListValue *l = &s->lists[pos->list++];
		*l = list_init;
		l->n_values = src->v.list.n;
		l->values = fill_list(s, src->v.list.items, src->v.list.n, pos);
		v->kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
		v->list_value = l;
		break;
	}
	case TD_MEDIA: /* never here: media.c rewrites it, validate.c refuses it */
	case TD_NULL:
		v->kind_case = TRACKD__V1__VALUE__KIND_NULL_VALUE;
		v->null_value = (Trackd__V1__NullValue *)&null_value;
		break;
	}
}

/* Item i of a record uses items[i], values[i] and ptrs[i]; each item array
 * (top level or one map's) gets a contiguous run of ptrs, reserved before its
 * children are filled. A list's elements are numbered the same way and use
 * values[i] and vptrs[i]. */
static Trackd__V1__Item **fill(struct tdi_scratch *s, const td_item *items, size_t n,
                               struct fill_pos *pos)
{
	size_t base = pos->item;

	if (n == 0)
		return NULL;
	pos->item += n;
	for (size_t i = 0; i < n; i++) {
		Trackd__V1__Item *it = &s->items[base + i];

		*it = item_init;
		it->key = (char *)items[i].key;
		it->value = &s->values[base + i];
		fill_value(s, it->value, &items[i], pos);
		s->ptrs[base + i] = it;
	}
	return &s->ptrs[base];
}

static Trackd__V1__Value **fill_list(struct tdi_scratch *s, const td_item *items, size_t n,
                                     struct fill_pos *pos)
{
	size_t base = pos->item;

	if (n == 0)
		return NULL;
	pos->item += n;
	for (size_t i = 0; i < n; i++) {
		fill_value(s, &s->values[base + i], &items[i], pos);
		s->vptrs[base + i] = &s->values[base + i];
	}
	return &s->vptrs[base];
}

Trackd__V1__Item **tdi_scratch_fill(struct tdi_scratch *s, const td_item *items, size_t n)
{
	struct fill_pos pos = {0, 0, 0};

	return fill(s, items, n, &pos);
}

#define KEY_VALUE_DOUBLE WIRE_KEY(VALUE, DOUBLE_VALUE)
#define KEY_VALUE_INT    WIRE_KEY(VALUE, INT_VALUE)
#define KEY_VALUE_BOOL   WIRE_KEY(VALUE, BOOL_VALUE)
#define KEY_VALUE_STRING WIRE_KEY(VALUE, STRING_VALUE)
#define KEY_VALUE_MAP    WIRE_KEY(VALUE, MAP_VALUE)
#define KEY_VALUE_LIST   WIRE_KEY(VALUE, LIST_VALUE)
#define KEY_VALUE_NULL   WIRE_KEY(VALUE, NULL_VALUE)
#define KEY_ITEM_KEY     WIRE_KEY(ITEM, KEY)
#define KEY_ITEM_VALUE   WIRE_KEY(ITEM, VALUE)
#define KEY_MAP_ITEMS    WIRE_KEY(MAP_VALUE, ITEMS)
#define KEY_LIST_VALUES  WIRE_KEY(LIST_VALUE, VALUES)

static size_t delimited(size_t len)
{
	return 1 + varint_size(len) + len;
}

static size_t measure_items(struct tdi_item_len *lens, const td_item *items, size_t n, bool list,
                            size_t *next);

/* The Value message of it, into l->value (and l->inner). */
static void measure_value(struct tdi_item_len *lens, struct tdi_item_len *l, const td_item *it,
                          size_t *next)
{
	switch (it->type) {
	case TD_DOUBLE: l->value = 1 + 8; break;
	case TD_INT: l->value = 1 + varint_size((uint64_t)it->v.i); break;
	case TD_BOOL: l->value = 1 + 1; break;
	case TD_MEDIA: /* never here (media.c, validate.c) */
	case TD_NULL: l->value = 1 + 1; break;
	case TD_STRING:
		l->inner = strlen(it->v.s);
		l->value = delimited(l->inner);
		break;
	case TD_MAP:
		l->inner = measure_items(lens, it->v.map.items, it->v.map.n, false, next);
		l->value = delimited(l->inner);
		break;
	case TD_LIST:
		l->inner = measure_items(lens, it->v.list.items, it->v.list.n, true, next);
		l->value = delimited(l->inner);
		break;
	}
}

/*
 * Items are numbered as tdi_scratch_fill numbers them: each item array (or
 * list's elements) gets a contiguous block, reserved before its children are
 * numbered. The write pass walks in the same order, so lens[k] belongs to the
 * same item in both passes. Returns the encoded length of the repeated items
 * (or, for a list, values) field.
 */
static size_t measure_items(struct tdi_item_len *lens, const td_item *items, size_t n, bool list,
                            size_t *next)
{
	size_t base = *next, total = 0;

	*next += n;
	for (size_t i = 0; i < n; i++) {
		const td_item *it = &items[i];
		struct tdi_item_len *l = &lens[base + i];

		measure_value(lens, l, it, next);
		if (list) {
			l->key = 0;
			l->item = l->value;
		} else {
			l->key = strlen(it->key);
			l->item = delimited(l->key) + delimited(l->value);
		}
		total += delimited(l->item);
	}
	return total;
}

static uint8_t *write_items(const struct tdi_item_len *lens, const td_item *items, size_t n,
                            uint8_t key, bool list, size_t *next, uint8_t *p);

static uint8_t *write_value(const struct tdi_item_len *lens, const struct tdi_item_len *l,
                            const td_item *it, size_t *next, uint8_t *p)
{
	uint64_t bits;

	switch (it->type) {
	case TD_DOUBLE:
		*p++ = KEY_VALUE_DOUBLE;
		memcpy(&bits, &it->v.d, sizeof(bits));
		/* fixed64 is little-endian whatever the host is. */
		for (int b = 0; b < 8; b++)
			*p++ = (uint8_t)(bits >> (8 * b));
		break;
	case TD_INT:
		*p++ = KEY_VALUE_INT;
		p += varint_put(p, (uint64_t)it->v.i);
		break;
	case TD_BOOL:
		*p++ = KEY_VALUE_BOOL;
		*p++ = it->v.b ? 1 : 0;
		break;
	case TD_MEDIA: /* never here (media.c, validate.c) */
	case TD_NULL:
		*p++ = KEY_VALUE_NULL;
		*p++ = 0; /* an empty NullValue */
		break;
	case TD_STRING:
		*p++ = KEY_VALUE_STRING;
		p += varint_put(p, l->inner);
		memcpy(p, it->v.s, l->inner);
		p += l->inner;
		break;
	case TD_MAP:
		*p++ = KEY_VALUE_MAP;
		p += varint_put(p, l->inner);
		p = write_items(lens, it->v.map.items, it->v.map.n, KEY_MAP_ITEMS, false, next, p);
		break;
	case TD_LIST:
		*p++ = KEY_VALUE_LIST;
		p += varint_put(p, l->inner);
		p = write_items(lens, it->v.list.items, it->v.list.n, KEY_LIST_VALUES, true, next,
		                p);
		break;
	}
	return p;
}

static uint8_t *write_items(const struct tdi_item_len *lens, const td_item *items, size_t n,
                            uint8_t key, bool list, size_t *next, uint8_t *p)
{
	size_t base = *next;

	*next += n;
	for (size_t i = 0; i < n; i++) {
		const td_item *it = &items[i];
		const struct tdi_item_len *l = &lens[base + i];

		*p++ = key;
		p += varint_put(p, l->item);
		if (!list) {
			*p++ = KEY_ITEM_KEY;
			p += varint_put(p, l->key);
			memcpy(p, it->key, l->key);
			p += l->key;
			*p++ = KEY_ITEM_VALUE;
			p += varint_put(p, l->value);
		}
		p = write_value(lens, l, it, next, p);
	}
	return p;
}

size_t tdi_items_record_measure(struct tdi_scratch *s, struct tdi_items_record *r)
{
	size_t next = 0;

	r->body_len = r->head_len + measure_items(s->lens, r->items, r->n, false, &next);
	r->record_len = delimited(r->run_id_len) + delimited(r->body_len);
	return r->record_len;
}

uint8_t *tdi_items_record_write(const struct tdi_scratch *s, const struct tdi_items_record *r,
                                uint8_t *p)
{
	size_t next = 0;

	*p++ = WIRE_KEY(RECORD, RUN_ID);
	p += varint_put(p, r->run_id_len);
	memcpy(p, r->run_id, r->run_id_len);
	p += r->run_id_len;
	*p++ = r->body_key;
	p += varint_put(p, r->body_len);
	if (r->head_len > 0) {
		memcpy(p, r->head, r->head_len);
		p += r->head_len;
	}
	return write_items(s->lens, r->items, r->n, r->items_key, false, &next, p);
}

size_t tdi_history_head(uint8_t *dst, int64_t step, bool commit, int64_t client_time_us)
{
	size_t n = 0;

	if (step != TD_STEP_AUTO) {
		dst[n++] = WIRE_KEY(HISTORY_ROW, STEP);
		n += varint_put(dst + n, (uint64_t)step);
	}
	/* commit defaults to true on the wire; only a false costs bytes. */
	if (!commit) {
		dst[n++] = WIRE_KEY(HISTORY_ROW, COMMIT);
		dst[n++] = 0;
	}
	dst[n++] = WIRE_KEY(HISTORY_ROW, CLIENT_TIME_US);
	n += varint_put(dst + n, (uint64_t)client_time_us);
	return n;
}
