/*
 * encode.c — the wire-level pieces: varints, the hand-built request envelope,
 * the hand encoder for item records (the hot path), and the scratch structs
 * through which protobuf-c encodes caller items for the cold records
 * (RunStart's config) without copying them.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

size_t td_varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

size_t td_varint_put(uint8_t *dst, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		dst[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	dst[n++] = (uint8_t)v;
	return n;
}

/* Protobuf key byte: field number and wire type. */
#define PB_KEY(field, wire) ((uint8_t)(((field) << 3) | (wire)))
#define PB_VARINT           0
#define PB_LEN              2

/*
 * The records were encoded once, as Batch field 3 entries, when they were
 * logged; the envelope around them is written here so that sending (and
 * resending) a batch never re-encodes them. Field numbers follow
 * trackd.proto: Request.protocol_version = 1, Request.batch = 2,
 * Batch.session_id = 1, Batch.seq = 2.
 */
size_t td_envelope_put(uint8_t dst[TD_ENVELOPE_MAX],
                       const uint8_t session_id[TRACKD_SESSION_ID_BYTES], uint64_t seq,
                       size_t records_len)
{
	size_t batch_len = 2 + TRACKD_SESSION_ID_BYTES + 1 + td_varint_size(seq) + records_len;
	size_t n = 0;

	dst[n++] = PB_KEY(1, PB_VARINT);
	n += td_varint_put(dst + n, TRACKD_PROTOCOL_VERSION);
	dst[n++] = PB_KEY(2, PB_LEN);
	n += td_varint_put(dst + n, batch_len);
	dst[n++] = PB_KEY(1, PB_LEN);
	dst[n++] = TRACKD_SESSION_ID_BYTES;
	memcpy(dst + n, session_id, TRACKD_SESSION_ID_BYTES);
	n += TRACKD_SESSION_ID_BYTES;
	dst[n++] = PB_KEY(2, PB_VARINT);
	n += td_varint_put(dst + n, seq);
	return n;
}

int td_scratch_reserve(struct td_scratch *s, const struct td_item_count *count)
{
	if (count->items > s->cap_items) {
		/* Grow geometrically so a run whose rows slowly widen does not
		 * reallocate on every call. */
		size_t n = s->cap_items ? s->cap_items : 16;
		while (n < count->items)
			n *= 2;
		struct td_item_len *lens = realloc(s->lens, n * sizeof(*lens));
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
		s->cap_items = n;
	}
	if (count->maps > s->cap_maps) {
		size_t n = s->cap_maps ? s->cap_maps : 4;
		while (n < count->maps)
			n *= 2;
		Trackd__V1__MapValue *maps = realloc(s->maps, n * sizeof(*maps));
		if (maps == NULL)
			goto nomem;
		s->maps = maps;
		s->cap_maps = n;
	}
	return TD_OK;
nomem:
	return td_fail(TD_ERR_NOMEM, "out of memory encoding %zu items", count->items);
}

void td_scratch_fini(struct td_scratch *s)
{
	free(s->lens);
	free(s->items);
	free(s->values);
	free(s->ptrs);
	free(s->maps);
	memset(s, 0, sizeof(*s));
}

static const Trackd__V1__Item item_init = TRACKD__V1__ITEM__INIT;
static const Trackd__V1__Value value_init = TRACKD__V1__VALUE__INIT;
static const Trackd__V1__MapValue map_init = TRACKD__V1__MAP_VALUE__INIT;

/* Item i of a record uses items[i], values[i] and ptrs[i]; each item array
 * (top level or one map's) gets a contiguous run of ptrs, reserved before its
 * children are filled. */
static Trackd__V1__Item **fill(struct td_scratch *s, const td_item *items, size_t n,
                               size_t *next_item, size_t *next_map)
{
	size_t base = *next_item;

	if (n == 0)
		return NULL;
	*next_item += n;
	for (size_t i = 0; i < n; i++) {
		Trackd__V1__Item *it = &s->items[base + i];
		Trackd__V1__Value *v = &s->values[base + i];
		const td_item *src = &items[i];

		*it = item_init;
		*v = value_init;
		/* protobuf-c wants char *; it only reads the string. */
		it->key = (char *)src->key;
		it->value = v;
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
			v->string_value = (char *)src->v.s;
			break;
		case TD_MAP: {
			Trackd__V1__MapValue *m = &s->maps[(*next_map)++];
			*m = map_init;
			m->n_items = src->v.map.n;
			m->items = fill(s, src->v.map.items, src->v.map.n, next_item, next_map);
			v->kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
			v->map_value = m;
			break;
		}
		}
		s->ptrs[base + i] = it;
	}
	return &s->ptrs[base];
}

Trackd__V1__Item **td_scratch_fill(struct td_scratch *s, const td_item *items, size_t n)
{
	size_t next_item = 0, next_map = 0;

	return fill(s, items, n, &next_item, &next_map);
}

/* Value field keys: double 1 (fixed64), int 2, bool 3 (varint), string 4,
 * map 5 (length-delimited); Item: key 1, value 2; MapValue: items 1. */
#define KEY_VALUE_DOUBLE PB_KEY(1, 1)
#define KEY_VALUE_INT    PB_KEY(2, PB_VARINT)
#define KEY_VALUE_BOOL   PB_KEY(3, PB_VARINT)
#define KEY_VALUE_STRING PB_KEY(4, PB_LEN)
#define KEY_VALUE_MAP    PB_KEY(5, PB_LEN)
#define KEY_ITEM_KEY     PB_KEY(1, PB_LEN)
#define KEY_ITEM_VALUE   PB_KEY(2, PB_LEN)
#define KEY_MAP_ITEMS    PB_KEY(1, PB_LEN)

static size_t delimited(size_t len)
{
	return 1 + td_varint_size(len) + len;
}

/*
 * Items are numbered as td_scratch_fill numbers them: each item array gets a
 * contiguous block, reserved before its maps' children are numbered. The
 * write pass walks in the same order, so lens[k] belongs to the same item in
 * both passes. Returns the encoded length of the repeated items field.
 */
static size_t measure_items(struct td_item_len *lens, const td_item *items, size_t n, size_t *next)
{
	size_t base = *next, total = 0;

	*next += n;
	for (size_t i = 0; i < n; i++) {
		const td_item *it = &items[i];
		struct td_item_len *l = &lens[base + i];

		l->key = strlen(it->key);
		switch (it->type) {
		case TD_DOUBLE: l->value = 1 + 8; break;
		case TD_INT: l->value = 1 + td_varint_size((uint64_t)it->v.i); break;
		case TD_BOOL: l->value = 1 + 1; break;
		case TD_STRING:
			l->inner = strlen(it->v.s);
			l->value = delimited(l->inner);
			break;
		case TD_MAP:
			l->inner = measure_items(lens, it->v.map.items, it->v.map.n, next);
			l->value = delimited(l->inner);
			break;
		}
		l->item = delimited(l->key) + delimited(l->value);
		total += delimited(l->item);
	}
	return total;
}

static uint8_t *write_items(const struct td_item_len *lens, const td_item *items, size_t n,
                            uint8_t key, size_t *next, uint8_t *p)
{
	size_t base = *next;

	*next += n;
	for (size_t i = 0; i < n; i++) {
		const td_item *it = &items[i];
		const struct td_item_len *l = &lens[base + i];
		uint64_t bits;

		*p++ = key;
		p += td_varint_put(p, l->item);
		*p++ = KEY_ITEM_KEY;
		p += td_varint_put(p, l->key);
		memcpy(p, it->key, l->key);
		p += l->key;
		*p++ = KEY_ITEM_VALUE;
		p += td_varint_put(p, l->value);
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
			p += td_varint_put(p, (uint64_t)it->v.i);
			break;
		case TD_BOOL:
			*p++ = KEY_VALUE_BOOL;
			*p++ = it->v.b ? 1 : 0;
			break;
		case TD_STRING:
			*p++ = KEY_VALUE_STRING;
			p += td_varint_put(p, l->inner);
			memcpy(p, it->v.s, l->inner);
			p += l->inner;
			break;
		case TD_MAP:
			*p++ = KEY_VALUE_MAP;
			p += td_varint_put(p, l->inner);
			p = write_items(lens, it->v.map.items, it->v.map.n, KEY_MAP_ITEMS, next, p);
			break;
		}
	}
	return p;
}

size_t td_items_record_measure(struct td_scratch *s, struct td_items_record *r)
{
	size_t next = 0;

	r->body_len = r->head_len + measure_items(s->lens, r->items, r->n, &next);
	r->record_len = delimited(r->run_id_len) + delimited(r->body_len);
	return r->record_len;
}

uint8_t *td_items_record_write(const struct td_scratch *s, const struct td_items_record *r,
                               uint8_t *p)
{
	size_t next = 0;

	*p++ = PB_KEY(1, PB_LEN); /* Record.run_id */
	p += td_varint_put(p, r->run_id_len);
	memcpy(p, r->run_id, r->run_id_len);
	p += r->run_id_len;
	*p++ = r->body_key;
	p += td_varint_put(p, r->body_len);
	if (r->head_len > 0) {
		memcpy(p, r->head, r->head_len);
		p += r->head_len;
	}
	return write_items(s->lens, r->items, r->n, r->items_key, &next, p);
}

size_t td_history_head(uint8_t *dst, int64_t step, bool commit, int64_t client_time_us)
{
	size_t n = 0;

	if (step != TD_STEP_AUTO) {
		dst[n++] = PB_KEY(1, PB_VARINT);
		n += td_varint_put(dst + n, (uint64_t)step);
	}
	/* commit defaults to true on the wire; only a false costs bytes. */
	if (!commit) {
		dst[n++] = PB_KEY(2, PB_VARINT);
		dst[n++] = 0;
	}
	dst[n++] = PB_KEY(3, PB_VARINT);
	n += td_varint_put(dst + n, (uint64_t)client_time_us);
	return n;
}

int64_t td_wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t td_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void td_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t deadline_ms)
{
	struct timespec ts = {
	    .tv_sec = (time_t)(deadline_ms / 1000),
	    .tv_nsec = (long)(deadline_ms % 1000) * 1000000,
	};

	pthread_cond_timedwait(cond, mu, &ts);
}
