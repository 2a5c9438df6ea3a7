#include "vtree.h"

#include "errors.h"
#include "fmt.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void vmap_init(struct vmap *m)
{
	m->items = NULL;
	m->n = m->cap = 0;
}

static void vlist_free(struct vlist *l);

static void vvalue_fini(struct vvalue *v)
{
	if (v->kind == V_STRING)
		free(v->u.s);
	else if (v->kind == V_MAP && v->u.m) {
		vmap_fini(v->u.m);
		free(v->u.m);
	} else if (v->kind == V_LIST)
		vlist_free(v->u.l);
	v->kind = V_INT;
	v->u.i = 0;
}

static void vlist_free(struct vlist *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		vvalue_fini(&l->items[i]);
	free(l->items);
	free(l);
}

/* An empty list of n elements (each V_NULL until set), or NULL. */
static struct vlist *vlist_new(size_t n)
{
	struct vlist *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	l->items = calloc(n ? n : 1, sizeof *l->items);
	if (!l->items) {
		free(l);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		l->items[i].kind = V_NULL;
	l->n = n;
	return l;
}

void vmap_clear(struct vmap *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->items[i].key);
		vvalue_fini(&m->items[i].v);
	}
	m->n = 0;
}

void vmap_fini(struct vmap *m)
{
	vmap_clear(m);
	free(m->items);
	vmap_init(m);
}

struct vvalue *vmap_get(const struct vmap *m, const char *key)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->items[i].key, key) == 0)
			return &m->items[i].v;
	return NULL;
}

/* Returns the slot for key, created empty (kind V_INT, 0) if new. */
static struct vvalue *slot(struct vmap *m, const char *key)
{
	struct vvalue *v = vmap_get(m, key);
	if (v) {
		vvalue_fini(v);
		return v;
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 8;
		struct vnode *p = realloc(m->items, cap * sizeof *p);
		if (!p)
			return NULL;
		m->items = p;
		m->cap = cap;
	}
	char *k = strdup(key);
	if (!k)
		return NULL;
	struct vnode *node = &m->items[m->n++];
	node->key = k;
	node->v.kind = V_INT;
	node->v.u.i = 0;
	return &node->v;
}

/* On failure dst is still safe to finalise (what was copied is owned). */
static int copy_value(struct vvalue *dst, const struct vvalue *src)
{
	dst->kind = src->kind;
	switch (src->kind) {
	case V_STRING:
		dst->u.s = strdup(src->u.s);
		if (!dst->u.s)
			dst->kind = V_NULL;
		return dst->u.s ? TRACKD_OK : TRACKD_ENOMEM;
	case V_MAP:
		dst->u.m = calloc(1, sizeof *dst->u.m);
		if (!dst->u.m) {
			dst->kind = V_NULL;
			return TRACKD_ENOMEM;
		}
		return vmap_update(dst->u.m, src->u.m);
	case V_LIST:
		dst->u.l = vlist_new(src->u.l->n);
		if (!dst->u.l) {
			dst->kind = V_NULL;
			return TRACKD_ENOMEM;
		}
		for (size_t i = 0; i < src->u.l->n; i++) {
			int rv = copy_value(&dst->u.l->items[i], &src->u.l->items[i]);
			if (rv != 0)
				return rv;
		}
		return TRACKD_OK;
	default: dst->u = src->u; return TRACKD_OK;
	}
}

int vmap_set(struct vmap *m, const char *key, const struct vvalue *v)
{
	struct vvalue *s = slot(m, key);
	if (!s)
		return TRACKD_ENOMEM;
	return copy_value(s, v);
}

int vmap_set_double(struct vmap *m, const char *key, double d)
{
	struct vvalue v = {.kind = V_DOUBLE, .u.d = d};
	return vmap_set(m, key, &v);
}

int vmap_set_int(struct vmap *m, const char *key, int64_t i)
{
	struct vvalue v = {.kind = V_INT, .u.i = i};
	return vmap_set(m, key, &v);
}

static int from_proto_value(struct vvalue *dst, const Trackd__V1__Value *pv)
{
	switch (pv ? pv->kind_case : TRACKD__V1__VALUE__KIND__NOT_SET) {
	case TRACKD__V1__VALUE__KIND_DOUBLE_VALUE:
		dst->kind = V_DOUBLE;
		dst->u.d = pv->double_value;
		return TRACKD_OK;
	case TRACKD__V1__VALUE__KIND_INT_VALUE:
		dst->kind = V_INT;
		dst->u.i = pv->int_value;
		return TRACKD_OK;
	case TRACKD__V1__VALUE__KIND_BOOL_VALUE:
		dst->kind = V_BOOL;
		dst->u.b = pv->bool_value;
		return TRACKD_OK;
	case TRACKD__V1__VALUE__KIND_STRING_VALUE:
		dst->kind = V_STRING;
		dst->u.s = strdup(pv->string_value ? pv->string_value : "");
		return dst->u.s ? TRACKD_OK : TRACKD_ENOMEM;
	case TRACKD__V1__VALUE__KIND_MAP_VALUE:
		dst->kind = V_MAP;
		dst->u.m = calloc(1, sizeof *dst->u.m);
		if (!dst->u.m)
			return TRACKD_ENOMEM;
		return vmap_from_proto(dst->u.m, pv->map_value);
	case TRACKD__V1__VALUE__KIND_LIST_VALUE: {
		const Trackd__V1__ListValue *pl = pv->list_value;
		size_t n = pl ? pl->n_values : 0;
		dst->kind = V_LIST;
		dst->u.l = vlist_new(n);
		if (!dst->u.l) {
			dst->kind = V_NULL;
			return TRACKD_ENOMEM;
		}
		for (size_t i = 0; i < n; i++) {
			/* On failure the element is left safe to finalise. */
			int rv = from_proto_value(&dst->u.l->items[i], pl->values[i]);
			if (rv != 0)
				return rv;
		}
		return TRACKD_OK;
	}
	case TRACKD__V1__VALUE__KIND_NULL_VALUE: dst->kind = V_NULL; return TRACKD_OK;
	default: return TRACKD_EINVAL; /* the ingest validator refuses values without a kind */
	}
}

int vmap_set_item(struct vmap *m, const Trackd__V1__Item *item)
{
	struct vvalue v = {.kind = V_NULL};
	int rv = from_proto_value(&v, item->value);
	if (rv != 0) {
		vvalue_fini(&v);
		return rv;
	}
	struct vvalue *s = slot(m, item->key);
	if (!s) {
		vvalue_fini(&v);
		return TRACKD_ENOMEM;
	}
	*s = v;
	return TRACKD_OK;
}

void vmap_remove(struct vmap *m, const char *key)
{
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->items[i].key, key) != 0)
			continue;
		free(m->items[i].key);
		vvalue_fini(&m->items[i].v);
		memmove(&m->items[i], &m->items[i + 1], (m->n - i - 1) * sizeof *m->items);
		m->n--;
		return;
	}
}

int vmap_update(struct vmap *dst, const struct vmap *src)
{
	for (size_t i = 0; src && i < src->n; i++) {
		int rv = vmap_set(dst, src->items[i].key, &src->items[i].v);
		if (rv != 0)
			return rv;
	}
	return TRACKD_OK;
}

/* ---- JSON ----------------------------------------------------------------- */

int vvalue_to_json(const struct vvalue *v, struct buf *out)
{
	switch (v->kind) {
	case V_DOUBLE: return json_write_double(out, v->u.d);
	case V_INT: return json_write_int(out, v->u.i);
	case V_BOOL: return buf_puts(out, v->u.b ? "true" : "false");
	case V_STRING: return json_write_string(out, v->u.s);
	case V_MAP: return vmap_to_json(v->u.m, out);
	case V_NULL: return buf_puts(out, "null");
	case V_LIST: {
		int rv = buf_putc(out, '[');
		for (size_t i = 0; rv == 0 && i < v->u.l->n; i++) {
			if (i)
				rv = buf_putc(out, ',');
			if (rv == 0)
				rv = vvalue_to_json(&v->u.l->items[i], out);
		}
		return rv ? rv : buf_putc(out, ']');
	}
	}
	return TRACKD_EINVAL;
}

int vmap_to_json(const struct vmap *m, struct buf *out)
{
	int rv = buf_putc(out, '{');
	for (size_t i = 0; rv == 0 && i < m->n; i++) {
		if (i)
			rv = buf_putc(out, ',');
		if (rv == 0)
			rv = json_write_string(out, m->items[i].key);
		if (rv == 0)
			rv = buf_putc(out, ':');
		if (rv == 0)
			rv = vvalue_to_json(&m->items[i].v, out);
	}
	return rv ? rv : buf_putc(out, '}');
}

/* ---- config.yaml ---------------------------------------------------------- */

static int indent(struct buf *out, int n)
{
	int rv = 0;
	for (int i = 0; rv == 0 && i < n; i++)
		rv = buf_putc(out, ' ');
	return rv;
}

/* The code point to escape at p in a YAML double-quoted scalar, and its length
 * in bytes; 0 if p starts a character that goes as it is. JSON's escapes, and
 * what YAML 1.1 does not allow raw in a file (DEL, C1 controls, U+FFFE/FFFF)
 * or folds as a line break inside quotes (U+0085, U+2028, U+2029). Strings are
 * valid UTF-8 (the ingest checks). */
static size_t yaml_escaped(const unsigned char *p, uint32_t *cp)
{
	if (*p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f) {
		*cp = *p;
		return 1;
	}
	if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
		*cp = p[1];
		return 2;
	}
	if ((p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) ||
	    (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf))) {
		*cp = (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
		return 3;
	}
	return 0;
}

static int yaml_put_string(struct buf *out, const char *s)
{
	int rv = buf_putc(out, '"');
	const unsigned char *p = (const unsigned char *)s;
	while (rv == 0 && *p) {
		const unsigned char *plain = p;
		uint32_t cp = 0;
		size_t n = 0;
		while (*p && (n = yaml_escaped(p, &cp)) == 0)
			p++;
		if (p > plain)
			rv = buf_append(out, plain, (size_t)(p - plain));
		if (rv != 0 || !*p)
			break;
		switch (cp) {
		case '"': rv = buf_puts(out, "\\\""); break;
		case '\\': rv = buf_puts(out, "\\\\"); break;
		case '\n': rv = buf_puts(out, "\\n"); break;
		case '\r': rv = buf_puts(out, "\\r"); break;
		case '\t': rv = buf_puts(out, "\\t"); break;
		default: rv = buf_printf(out, "\\u%04x", (unsigned)cp);
		}
		p += n;
	}
	return rv ? rv : buf_putc(out, '"');
}

/* Words a YAML 1.1 reader takes for a boolean or null, in any case: PyYAML
 * (W&B's reader) knows yes/no/on/off/true/false/null in three spellings each,
 * the YAML 1.1 spec also y/n; quoting is right for all of them. "~" and names
 * that look like numbers never pass the plain-name test below. */
static bool yaml_reserved(const char *key)
{
	static const char *const words[] = {"y",   "n",    "yes",   "no",  "on",
	                                    "off", "true", "false", "null"};
	for (size_t i = 0; i < sizeof words / sizeof *words; i++)
		if (strcasecmp(key, words[i]) == 0)
			return true;
	return false;
}

/* Plain YAML keys for ordinary names (as W&B writes them); a reserved word is
 * single-quoted as PyYAML quotes it ('True':), anything else double-quoted. */
static int yaml_key(struct buf *out, const char *key)
{
	bool plain =
	    (key[0] >= 'A' && key[0] <= 'Z') || (key[0] >= 'a' && key[0] <= 'z') || key[0] == '_';
	for (const char *p = key; plain && *p; p++)
		plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		        (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.' ||
		        *p == '/';
	if (plain && yaml_reserved(key))
		return buf_printf(out, "'%s'", key);
	return plain ? buf_puts(out, key) : yaml_put_string(out, key);
}

/*
 * Block YAML as PyYAML's safe_dump (W&B's writer) lays it out: scalars are
 * written as JSON (JSON scalars are valid YAML flow scalars; non-finite
 * doubles use YAML's names), empty collections as {} and [], a map's items
 * one indent deeper than their key, a list's elements as `- ` at the same
 * indent as their key (PyYAML's indentless sequences), and a collection that
 * is a list element starts on the element's own line (`- - 1`, `- a: 1`).
 * Depth is bounded by the ingest nesting limit.
 */
static int yaml_map(struct buf *out, const struct vmap *m, int ind, bool first_inline);
static int yaml_seq(struct buf *out, const struct vlist *l, int ind, bool first_inline);

static int yaml_scalar(struct buf *out, const struct vvalue *v)
{
	if (v->kind == V_STRING)
		return yaml_put_string(out, v->u.s);
	if (v->kind != V_DOUBLE)
		return vvalue_to_json(v, out);
	if (!isfinite(v->u.d))
		return buf_puts(out, isnan(v->u.d) ? ".nan" : v->u.d > 0 ? ".inf" : "-.inf");
	/* YAML 1.1 (PyYAML, so W&B) reads a float only with a '.': 1e-08 would
	 * come back a string, 3 an int. Written as PyYAML does: 1.0e-08, 3.0. */
	char tmp[40];
	fmt_double_g(tmp, sizeof tmp, v->u.d);
	if (!strchr(tmp, '.')) {
		char *e = strchr(tmp, 'e');
		size_t at = e ? (size_t)(e - tmp) : strlen(tmp);
		memmove(tmp + at + 2, tmp + at, strlen(tmp + at) + 1);
		memcpy(tmp + at, ".0", 2);
	}
	return buf_puts(out, tmp);
}

static bool yaml_block(const struct vvalue *v)
{
	return (v->kind == V_MAP && v->u.m->n > 0) || (v->kind == V_LIST && v->u.l->n > 0);
}

/* The value of a map item whose key (at indent ind) was just written with
 * its colon. */
static int yaml_item_value(struct buf *out, const struct vvalue *v, int ind)
{
	int rv;
	if (!yaml_block(v)) {
		rv = buf_putc(out, ' ');
		if (rv == 0)
			rv = v->kind == V_MAP ? buf_puts(out, "{}") : yaml_scalar(out, v);
		return rv ? rv : buf_putc(out, '\n');
	}
	rv = buf_putc(out, '\n');
	if (rv)
		return rv;
	return v->kind == V_MAP ? yaml_map(out, v->u.m, ind + 2, false)
	                        : yaml_seq(out, v->u.l, ind, false);
}

static int yaml_map(struct buf *out, const struct vmap *m, int ind, bool first_inline)
{
	int rv = 0;
	for (size_t i = 0; rv == 0 && i < m->n; i++) {
		if (i > 0 || !first_inline)
			rv = indent(out, ind);
		if (rv == 0)
			rv = yaml_key(out, m->items[i].key);
		if (rv == 0)
			rv = buf_putc(out, ':');
		if (rv == 0)
			rv = yaml_item_value(out, &m->items[i].v, ind);
	}
	return rv;
}

static int yaml_seq(struct buf *out, const struct vlist *l, int ind, bool first_inline)
{
	int rv = 0;
	for (size_t i = 0; rv == 0 && i < l->n; i++) {
		const struct vvalue *e = &l->items[i];
		if (i > 0 || !first_inline)
			rv = indent(out, ind);
		if (rv == 0)
			rv = buf_puts(out, "- ");
		if (rv)
			break;
		if (e->kind == V_MAP && e->u.m->n > 0)
			rv = yaml_map(out, e->u.m, ind + 2, true);
		else if (e->kind == V_LIST && e->u.l->n > 0)
			rv = yaml_seq(out, e->u.l, ind + 2, true);
		else {
			rv = e->kind == V_MAP ? buf_puts(out, "{}") : yaml_scalar(out, e);
			if (rv == 0)
				rv = buf_putc(out, '\n');
		}
	}
	return rv;
}

int vmap_to_config_yaml(const struct vmap *m, struct buf *out)
{
	int rv = buf_puts(out, "wandb_version: 1\n");
	for (size_t i = 0; rv == 0 && i < m->n; i++) {
		rv = buf_putc(out, '\n');
		if (rv == 0)
			rv = yaml_key(out, m->items[i].key);
		if (rv == 0)
			rv = buf_puts(out, ":\n  desc: null\n  value:");
		if (rv == 0)
			rv = yaml_item_value(out, &m->items[i].v, 2);
	}
	return rv;
}

/* ---- snapshots ------------------------------------------------------------- */

static void proto_value_free(Trackd__V1__Value *v);
static const Trackd__V1__NullValue null_value = TRACKD__V1__NULL_VALUE__INIT;

static Trackd__V1__Value *to_proto_value(const struct vvalue *v)
{
	Trackd__V1__Value *pv = malloc(sizeof *pv);
	if (!pv)
		return NULL;
	trackd__v1__value__init(pv);
	switch (v->kind) {
	case V_DOUBLE:
		pv->kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
		pv->double_value = v->u.d;
		break;
	case V_INT:
		pv->kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
		pv->int_value = v->u.i;
		break;
	case V_BOOL:
		pv->kind_case = TRACKD__V1__VALUE__KIND_BOOL_VALUE;
		pv->bool_value = v->u.b;
		break;
	case V_STRING:
		pv->kind_case = TRACKD__V1__VALUE__KIND_STRING_VALUE;
		pv->string_value = v->u.s;
		break;
	case V_MAP:
		pv->kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
		pv->map_value = vmap_to_proto(v->u.m);
		if (!pv->map_value) {
			free(pv);
			return NULL;
		}
		break;
	case V_NULL:
		pv->kind_case = TRACKD__V1__VALUE__KIND_NULL_VALUE;
		/* Only read by the packer; never freed (proto_value_free knows). */
		pv->null_value = (Trackd__V1__NullValue *)&null_value;
		break;
	case V_LIST: {
		Trackd__V1__ListValue *pl = malloc(sizeof *pl);
		if (!pl) {
			free(pv);
			return NULL;
		}
		trackd__v1__list_value__init(pl);
		pv->kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
		pv->list_value = pl;
		pl->values = calloc(v->u.l->n ? v->u.l->n : 1, sizeof *pl->values);
		if (!pl->values) {
			proto_value_free(pv);
			return NULL;
		}
		for (size_t i = 0; i < v->u.l->n; i++) {
			Trackd__V1__Value *e = to_proto_value(&v->u.l->items[i]);
			if (!e) {
				proto_value_free(pv);
				return NULL;
			}
			pl->values[pl->n_values++] = e;
		}
		break;
	}
	}
	return pv;
}

static void proto_value_free(Trackd__V1__Value *v)
{
	if (!v)
		return;
	if (v->kind_case == TRACKD__V1__VALUE__KIND_MAP_VALUE)
		vmap_proto_free(v->map_value);
	else if (v->kind_case == TRACKD__V1__VALUE__KIND_LIST_VALUE && v->list_value) {
		for (size_t i = 0; i < v->list_value->n_values; i++)
			proto_value_free(v->list_value->values[i]);
		free(v->list_value->values);
		free(v->list_value);
	}
	free(v);
}

Trackd__V1__MapValue *vmap_to_proto(const struct vmap *m)
{
	Trackd__V1__MapValue *pm = calloc(1, sizeof *pm);
	if (!pm)
		return NULL;
	trackd__v1__map_value__init(pm);
	pm->items = calloc(m->n ? m->n : 1, sizeof *pm->items);
	if (!pm->items) {
		free(pm);
		return NULL;
	}
	for (size_t i = 0; i < m->n; i++) {
		Trackd__V1__Item *it = malloc(sizeof *it);
		if (!it) {
			vmap_proto_free(pm);
			return NULL;
		}
		trackd__v1__item__init(it);
		it->key = m->items[i].key;
		pm->items[pm->n_items++] = it;
		it->value = to_proto_value(&m->items[i].v);
		if (!it->value) {
			vmap_proto_free(pm);
			return NULL;
		}
	}
	return pm;
}

void vmap_proto_free(Trackd__V1__MapValue *pm)
{
	if (!pm)
		return;
	for (size_t i = 0; i < pm->n_items; i++) {
		proto_value_free(pm->items[i]->value);
		free(pm->items[i]);
	}
	free(pm->items);
	free(pm);
}

int vmap_from_proto(struct vmap *m, const Trackd__V1__MapValue *pm)
{
	vmap_init(m);
	for (size_t i = 0; pm && i < pm->n_items; i++) {
		if (!pm->items[i]->key || !pm->items[i]->value)
			continue;
		int rv = vmap_set_item(m, pm->items[i]);
		if (rv != 0)
			return rv;
	}
	return TRACKD_OK;
}
