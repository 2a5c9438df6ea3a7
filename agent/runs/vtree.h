/*
 * vtree.h — the values of a run (history rows, summary, config) as an ordered
 * map of key → typed value: JSON's model (numbers, bools, strings, null, maps,
 * lists), maps and lists nesting. Keys keep their first insertion order,
 * as W&B's JSON files do. Updates are shallow, as in W&B: setting "a" replaces
 * the whole value of "a", nested maps included.
 *
 * Conversions: from protobuf Items (deep copy), to JSON (NaN/Infinity written
 * bare, as W&B's history files allow), to W&B's config.yaml layout, and to/from
 * a protobuf MapValue for snapshots.
 *
 * Not thread-safe; a vmap is owned by its run. All strings are copied.
 */
#ifndef TRACKD_RUNS_VTREE_H
#define TRACKD_RUNS_VTREE_H

#include "buf.h"
#include "json_write.h" /* vtree's JSON, and its users' own strings, are written by it */

#include "trackd/v1/trackd.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vkind { V_DOUBLE, V_INT, V_BOOL, V_STRING, V_MAP, V_LIST, V_NULL };

struct vmap;
struct vlist;

struct vvalue {
	enum vkind kind;
	union {
		double d;
		int64_t i;
		bool b;
		char *s;
		struct vmap *m;
		struct vlist *l; /* owned; V_NULL has no payload */
	} u;
};

/* A JSON array: elements of any kind, mixed. Its length was bounded at
 * ingest (limits.max_list_length). */
struct vlist {
	struct vvalue *items;
	size_t n;
};

struct vnode {
	char *key;
	struct vvalue v;
};

struct vmap {
	struct vnode *items;
	size_t n, cap;
};

void vmap_init(struct vmap *m);
void vmap_fini(struct vmap *m);
void vmap_clear(struct vmap *m);

struct vvalue *vmap_get(const struct vmap *m, const char *key);
/* Replaces or adds key (deep copy of the protobuf value). */
int vmap_set_item(struct vmap *m, const Trackd__V1__Item *item);
int vmap_set(struct vmap *m, const char *key, const struct vvalue *v); /* deep copy */
int vmap_set_double(struct vmap *m, const char *key, double d);
int vmap_set_int(struct vmap *m, const char *key, int64_t i);
void vmap_remove(struct vmap *m, const char *key);
/* Applies every item of src onto dst (shallow replace per top-level key). */
int vmap_update(struct vmap *dst, const struct vmap *src);

/* {"k":v,...} */
int vmap_to_json(const struct vmap *m, struct buf *out);
int vvalue_to_json(const struct vvalue *v, struct buf *out);
/* W&B's config.yaml: "wandb_version: 1" then `key:\n  desc: null\n  value: …`;
 * lists as YAML block sequences (`- item`), as PyYAML's safe_dump writes them. */
int vmap_to_config_yaml(const struct vmap *m, struct buf *out);

/* Snapshot conversion. vmap_to_proto builds a MapValue whose strings point into
 * `m` (valid while m is unchanged); free it with vmap_proto_free. */
Trackd__V1__MapValue *vmap_to_proto(const struct vmap *m);
void vmap_proto_free(Trackd__V1__MapValue *pm);
int vmap_from_proto(struct vmap *m, const Trackd__V1__MapValue *pm);

#endif
