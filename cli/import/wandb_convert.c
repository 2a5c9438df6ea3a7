/* wandb_convert.c — see wandb_convert.h. */
#include "wandb_convert.h"

#include "errors.h"

#include "wandb_record.pb-c.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STREAM_OUT, STREAM_ERR, N_STREAMS };

struct console_pending {
	char *text;
	size_t len;
	int64_t time_us;
	uint64_t offset;
};

struct wbc {
	struct wbc_options o;
	struct wbc_stats st;
	json_tokener *tok;
	json_object *summary, *config; /* the file's values so far */
	struct console_pending console[N_STREAMS];
	bool have_start_time;
	int64_t start_time_us, last_time_us;
	int32_t exit_runtime;
	uint64_t exit_offset;
	char *display_name;
};

int wbc_new(const struct wbc_options *o, wbc **out)
{
	*out = NULL;
	wbc *c = calloc(1, sizeof *c);
	if (!c)
		return TRACKD_ENOMEM;
	c->o = *o;
	c->tok = json_tokener_new_ex(WBC_MAX_JSON_DEPTH);
	c->summary = json_object_new_object();
	c->config = json_object_new_object();
	if (!c->tok || !c->summary || !c->config) {
		wbc_free(c);
		return TRACKD_ENOMEM;
	}
	*out = c;
	return 0;
}

void wbc_free(wbc *c)
{
	if (!c)
		return;
	if (c->tok)
		json_tokener_free(c->tok);
	json_object_put(c->summary);
	json_object_put(c->config);
	for (int i = 0; i < N_STREAMS; i++)
		free(c->console[i].text);
	free(c->display_name);
	free(c);
}

const struct wbc_stats *wbc_stats(const wbc *c)
{
	return &c->st;
}

static int64_t ts_us(const Wbi__Timestamp *t)
{
	return t->seconds * 1000000 + t->nanos / 1000;
}

static void saw_time(wbc *c, int64_t us)
{
	if (us > c->last_time_us)
		c->last_time_us = us;
}

/* ---- JSON to trackd values ---------------------------------------------------- */

/* value_json parsed: 0 and *out (NULL is JSON null), or -1 when it is not JSON. */
static int parse_json(wbc *c, const char *text, json_object **out)
{
	*out = NULL;
	if (!text)
		return -1;
	json_tokener_reset(c->tok);
	size_t len = strlen(text);
	/* The terminating NUL is passed too: a bare number ends only there. */
	json_object *j = json_tokener_parse_ex(c->tok, text, (int)len + 1);
	if (json_tokener_get_error(c->tok) != json_tokener_success ||
	    json_tokener_get_parse_end(c->tok) < len) {
		json_object_put(j);
		c->st.bad_values++;
		return -1;
	}
	*out = j;
	return 0;
}

static Trackd__V1__Value *value_of(json_object *j);

static int items_of(json_object *obj, Trackd__V1__Item ***items, size_t *n)
{
	size_t cap = (size_t)json_object_object_length(obj);
	*items = calloc(cap ? cap : 1, sizeof **items);
	*n = 0;
	if (!*items)
		return TRACKD_ENOMEM;
	json_object_object_foreach(obj, key, val)
	{
		Trackd__V1__Item *it = malloc(sizeof *it);
		if (!it)
			return TRACKD_ENOMEM;
		trackd__v1__item__init(it);
		(*items)[(*n)++] = it;
		it->key = strdup(key);
		it->value = value_of(val);
		if (!it->key || !it->value)
			return TRACKD_ENOMEM;
	}
	return 0;
}

/* A malloc'd Value tree (freed with the record by protobuf-c), NULL without
 * memory. JSON's depth is bounded by the tokener. */
static Trackd__V1__Value *value_of(json_object *j)
{
	Trackd__V1__Value *v = malloc(sizeof *v);
	if (!v)
		return NULL;
	trackd__v1__value__init(v);
	switch (json_object_get_type(j)) {
	case json_type_null: {
		Trackd__V1__NullValue *nv = malloc(sizeof *nv);
		if (!nv)
			break;
		trackd__v1__null_value__init(nv);
		v->kind_case = TRACKD__V1__VALUE__KIND_NULL_VALUE;
		v->null_value = nv;
		return v;
	}
	case json_type_boolean:
		v->kind_case = TRACKD__V1__VALUE__KIND_BOOL_VALUE;
		v->bool_value = json_object_get_boolean(j);
		return v;
	case json_type_double:
		v->kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
		v->double_value = json_object_get_double(j);
		return v;
	case json_type_int:
		v->kind_case = TRACKD__V1__VALUE__KIND_INT_VALUE;
		v->int_value = json_object_get_int64(j);
		return v;
	case json_type_string:
		v->kind_case = TRACKD__V1__VALUE__KIND_STRING_VALUE;
		v->string_value = strdup(json_object_get_string(j));
		if (v->string_value)
			return v;
		v->kind_case = TRACKD__V1__VALUE__KIND__NOT_SET;
		break;
	case json_type_object: {
		Trackd__V1__MapValue *m = malloc(sizeof *m);
		if (!m)
			break;
		trackd__v1__map_value__init(m);
		v->kind_case = TRACKD__V1__VALUE__KIND_MAP_VALUE;
		v->map_value = m;
		if (items_of(j, &m->items, &m->n_items) != 0)
			break;
		return v;
	}
	case json_type_array: {
		Trackd__V1__ListValue *l = malloc(sizeof *l);
		if (!l)
			break;
		trackd__v1__list_value__init(l);
		v->kind_case = TRACKD__V1__VALUE__KIND_LIST_VALUE;
		v->list_value = l;
		size_t n = json_object_array_length(j);
		l->values = calloc(n ? n : 1, sizeof *l->values);
		if (!l->values)
			break;
		for (size_t i = 0; i < n; i++) {
			l->values[i] = value_of(json_object_array_get_idx(j, i));
			if (!l->values[i])
				break;
			l->n_values++;
		}
		if (l->n_values == n)
			return v;
		break;
	}
	}
	trackd__v1__value__free_unpacked(v, NULL);
	return NULL;
}

/* Sets obj[path[0]][path[1]]… = val (val is taken), making maps on the way
 * (a non-map in the way is replaced, as W&B's nested update does). */
static int set_path(json_object *obj, char **path, size_t n, json_object *val)
{
	for (size_t i = 0; i + 1 < n; i++) {
		json_object *next = NULL;
		if (!json_object_object_get_ex(obj, path[i], &next) ||
		    !json_object_is_type(next, json_type_object)) {
			next = json_object_new_object();
			if (!next || json_object_object_add(obj, path[i], next) != 0) {
				json_object_put(val);
				return TRACKD_ENOMEM;
			}
		}
		obj = next;
	}
	return json_object_object_add(obj, path[n - 1], val) == 0 ? 0 : TRACKD_ENOMEM;
}

static void del_path(json_object *obj, char **path, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (!json_object_object_get_ex(obj, path[i], &obj) ||
		    !json_object_is_type(obj, json_type_object))
			return;
	json_object_object_del(obj, path[n - 1]);
}

/* An item's path: its key, or its nested_key (key and nested_key are
 * exclusive in W&B's records). 0 when it has neither. */
static size_t item_path(const Wbi__Item *it, char ***path)
{
	static char *one[1];
	if (it->key && *it->key) {
		one[0] = it->key;
		*path = one;
		return 1;
	}
	*path = it->nested_key;
	for (size_t i = 0; i < it->n_nested_key; i++)
		if (!it->nested_key[i] || !*it->nested_key[i])
			return 0;
	return it->n_nested_key;
}

/* ---- records ------------------------------------------------------------------ */

static Trackd__V1__Record *new_record(wbc *c)
{
	Trackd__V1__Record *r = malloc(sizeof *r);
	if (!r)
		return NULL;
	trackd__v1__record__init(r);
	r->run_id = strdup(c->st.run_id);
	if (!r->run_id) {
		free(r);
		return NULL;
	}
	return r;
}

static int emit(wbc *c, Trackd__V1__Record *r, uint64_t offset)
{
	/* A skipped run is still read to the end, only counted. */
	int rv = c->st.skipped ? 0 : c->o.emit(c->o.arg, r, offset);
	trackd__v1__record__free_unpacked(r, NULL);
	return rv;
}

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

/* A ConfigUpdate or SummaryUpdate of the keys `touched` (NULL-terminated
 * list of top-level keys) as `tree` has them now. */
static int emit_update(wbc *c, bool summary, json_object *tree, char **touched, size_t n_touched,
                       uint64_t offset)
{
	if (n_touched == 0)
		return 0;
	Trackd__V1__Record *r = new_record(c);
	if (!r)
		return TRACKD_ENOMEM;
	Trackd__V1__Item ***items;
	size_t *n_items;
	if (summary) {
		Trackd__V1__SummaryUpdate *u = malloc(sizeof *u);
		if (!u)
			goto nomem;
		trackd__v1__summary_update__init(u);
		r->body_case = TRACKD__V1__RECORD__BODY_SUMMARY;
		r->summary = u;
		items = &u->items;
		n_items = &u->n_items;
		u->remove_keys = calloc(n_touched, sizeof *u->remove_keys);
		if (!u->remove_keys)
			goto nomem;
	} else {
		Trackd__V1__ConfigUpdate *u = malloc(sizeof *u);
		if (!u)
			goto nomem;
		trackd__v1__config_update__init(u);
		r->body_case = TRACKD__V1__RECORD__BODY_CONFIG;
		r->config = u;
		items = &u->items;
		n_items = &u->n_items;
	}
	*items = calloc(n_touched, sizeof **items);
	if (!*items)
		goto nomem;
	for (size_t i = 0; i < n_touched; i++) {
		bool dup = false;
		for (size_t k = 0; k < i && !dup; k++)
			dup = strcmp(touched[k], touched[i]) == 0;
		json_object *val;
		if (dup)
			continue;
		if (!json_object_object_get_ex(tree, touched[i], &val)) {
			/* Removed: a summary says so; trackd's config keeps a key. */
			if (summary) {
				char *k = strdup(touched[i]);
				if (!k)
					goto nomem;
				r->summary->remove_keys[r->summary->n_remove_keys++] = k;
			}
			continue;
		}
		Trackd__V1__Item *it = malloc(sizeof *it);
		if (!it)
			goto nomem;
		trackd__v1__item__init(it);
		(*items)[(*n_items)++] = it;
		it->key = strdup(touched[i]);
		it->value = value_of(val);
		if (!it->key || !it->value)
			goto nomem;
	}
	if (*n_items == 0 && (!summary || r->summary->n_remove_keys == 0)) {
		trackd__v1__record__free_unpacked(r, NULL);
		return 0;
	}
	return emit(c, r, offset);
nomem:
	trackd__v1__record__free_unpacked(r, NULL);
	return TRACKD_ENOMEM;
}

/* Applies a W&B update/remove list to `tree` and emits what changed. */
static int apply_items(wbc *c, bool summary, json_object *tree, Wbi__Item **update, size_t n_update,
                       Wbi__Item **remove, size_t n_remove, uint64_t offset)
{
	char **touched = calloc(n_update + n_remove + 1, sizeof *touched);
	if (!touched)
		return TRACKD_ENOMEM;
	size_t n = 0;
	int rv = 0;
	for (size_t i = 0; i < n_update && !rv; i++) {
		char **path;
		size_t depth = item_path(update[i], &path);
		json_object *val;
		if (depth == 0 || parse_json(c, update[i]->value_json, &val) != 0)
			continue;
		if (!summary && strcmp(path[0], "_wandb") == 0) {
			json_object_put(val);
			continue;
		}
		touched[n++] = path[0];
		rv = set_path(tree, path, depth, val);
	}
	for (size_t i = 0; i < n_remove && !rv; i++) {
		char **path;
		size_t depth = item_path(remove[i], &path);
		if (depth == 0)
			continue;
		touched[n++] = path[0];
		del_path(tree, path, depth);
	}
	if (!rv)
		rv = emit_update(c, summary, tree, touched, n, offset);
	free(touched);
	return rv;
}

static int emit_start(wbc *c, const Wbi__RunRecord *run, bool first, uint64_t offset)
{
	Trackd__V1__Record *r = new_record(c);
	Trackd__V1__RunStart *s = r ? malloc(sizeof *s) : NULL;
	if (!s) {
		trackd__v1__record__free_unpacked(r, NULL);
		return TRACKD_ENOMEM;
	}
	trackd__v1__run_start__init(s);
	r->body_case = TRACKD__V1__RECORD__BODY_START;
	r->start = s;
	s->has_mode = s->has_imported = s->has_pid = true;
	s->mode = TRACKD__V1__RUN_MODE__RUN_MODE_OFFLINE;
	s->imported = true;
	s->pid = c->o.pid;
	bool nomem = false;
	if (first) {
		const char *entity = c->o.entity ? c->o.entity : run ? run->entity : NULL;
		const char *project = c->o.project ? c->o.project : run ? run->project : NULL;
		s->entity = dup_or_null(entity);
		s->project = dup_or_null(project);
		nomem |= (entity && *entity && !s->entity) || (project && *project && !s->project);
		if (c->have_start_time) {
			s->has_start_time_us = true;
			s->start_time_us = c->start_time_us;
		}
	} else {
		s->has_resume = true;
		s->resume = TRACKD__V1__RESUME_MODE__RESUME_ALLOW;
	}
	if (run) {
		s->display_name = dup_or_null(run->display_name);
		s->notes = dup_or_null(run->notes);
		s->group = dup_or_null(run->run_group);
		s->job_type = dup_or_null(run->job_type);
		s->host = dup_or_null(run->host);
		nomem |= (run->display_name && *run->display_name && !s->display_name) ||
		         (run->notes && *run->notes && !s->notes) ||
		         (run->run_group && *run->run_group && !s->group) ||
		         (run->job_type && *run->job_type && !s->job_type) ||
		         (run->host && *run->host && !s->host);
		if (run->n_tags) {
			s->tags = calloc(run->n_tags, sizeof *s->tags);
			for (size_t i = 0; s->tags && i < run->n_tags; i++) {
				s->tags[i] = strdup(run->tags[i] ? run->tags[i] : "");
				if (!s->tags[i])
					break;
				s->n_tags++;
			}
			nomem |= s->n_tags != run->n_tags;
		}
	}
	if (nomem) {
		trackd__v1__record__free_unpacked(r, NULL);
		return TRACKD_ENOMEM;
	}
	return emit(c, r, offset);
}

/* The run's first record: begin() decides, then the start. */
static int start_run(wbc *c, const Wbi__RunRecord *run, uint64_t offset)
{
	const char *id = run && run->run_id && *run->run_id ? run->run_id : c->o.file_id;
	if (!id || !*id || strlen(id) > WBC_MAX_ID_BYTES)
		return TRACKD_EINVAL;
	snprintf(c->st.run_id, sizeof c->st.run_id, "%s", id);
	if (run && run->start_time) {
		c->have_start_time = true;
		c->start_time_us = ts_us(run->start_time);
		saw_time(c, c->start_time_us);
	}
	c->st.no_run_record = !run;
	const char *entity = c->o.entity ? c->o.entity : run ? run->entity : NULL;
	const char *project = c->o.project ? c->o.project : run ? run->project : NULL;
	int rv = c->o.begin ? c->o.begin(c->o.arg, c->st.run_id, entity ? entity : "",
	                                 project ? project : "")
	                    : 0;
	if (rv == WBC_SKIP) {
		c->st.skipped = true;
		return 0;
	}
	if (rv < 0)
		return rv;
	c->st.started = true;
	return emit_start(c, run, true, offset);
}

static int do_run(wbc *c, const Wbi__RunRecord *run, uint64_t offset)
{
	int rv;
	if (!c->st.started && !c->st.skipped) {
		if ((rv = start_run(c, run, offset)) != 0)
			return rv;
	} else if ((rv = emit_start(c, run, false, offset)) != 0) {
		return rv;
	}
	if (run->config &&
	    (rv = apply_items(c, false, c->config, run->config->update, run->config->n_update,
	                      run->config->remove, run->config->n_remove, offset)) != 0)
		return rv;
	if (run->summary)
		rv = apply_items(c, true, c->summary, run->summary->update, run->summary->n_update,
		                 run->summary->remove, run->summary->n_remove, offset);
	return rv;
}

static bool number_of(json_object *j, double *out)
{
	if (!json_object_is_type(j, json_type_double) && !json_object_is_type(j, json_type_int))
		return false;
	*out = json_object_get_double(j);
	return true;
}

static int do_history(wbc *c, const Wbi__HistoryRecord *h, uint64_t offset)
{
	json_object *row = json_object_new_object();
	if (!row)
		return TRACKD_ENOMEM;
	int rv = 0;
	for (size_t i = 0; i < h->n_item && !rv; i++) {
		char **path;
		size_t depth = item_path(h->item[i], &path);
		json_object *val;
		if (depth == 0 || parse_json(c, h->item[i]->value_json, &val) != 0)
			continue;
		rv = set_path(row, path, depth, val);
	}
	Trackd__V1__Record *r = rv ? NULL : new_record(c);
	Trackd__V1__HistoryRow *hr = r ? malloc(sizeof *hr) : NULL;
	if (!hr) {
		trackd__v1__record__free_unpacked(r, NULL);
		json_object_put(row);
		return rv ? rv : TRACKD_ENOMEM;
	}
	trackd__v1__history_row__init(hr);
	r->body_case = TRACKD__V1__RECORD__BODY_HISTORY;
	r->history = hr;
	hr->has_commit = true;
	hr->commit = true;
	json_object *j;
	double d;
	if (h->step) {
		hr->has_step = h->step->num >= 0;
		hr->step = h->step->num;
	} else if (json_object_object_get_ex(row, "_step", &j) &&
	           json_object_is_type(j, json_type_int) && json_object_get_int64(j) >= 0) {
		hr->has_step = true;
		hr->step = json_object_get_int64(j);
	}
	if (json_object_object_get_ex(row, "_timestamp", &j) && number_of(j, &d) && isfinite(d) &&
	    d >= 0) {
		hr->has_timestamp = hr->has_client_time_us = true;
		hr->timestamp = d;
		hr->client_time_us = (int64_t)(d * 1e6);
		saw_time(c, hr->client_time_us);
	}
	if (json_object_object_get_ex(row, "_runtime", &j) && number_of(j, &d) && isfinite(d) &&
	    d >= 0) {
		hr->has_runtime = true;
		hr->runtime = d;
	}
	json_object_object_del(row, "_step");
	json_object_object_del(row, "_timestamp");
	json_object_object_del(row, "_runtime");
	rv = items_of(row, &hr->items, &hr->n_items);
	json_object_put(row);
	if (rv) {
		trackd__v1__record__free_unpacked(r, NULL);
		return rv;
	}
	c->st.rows++;
	return emit(c, r, offset);
}

/* Emits `len` bytes of a stream's pending text as one ConsoleOutput. */
static int emit_console(wbc *c, int stream, size_t len)
{
	struct console_pending *p = &c->console[stream];
	if (len == 0)
		return 0;
	Trackd__V1__Record *r = new_record(c);
	Trackd__V1__ConsoleOutput *co = r ? malloc(sizeof *co) : NULL;
	char *text = co ? malloc(len + 1) : NULL;
	if (!text) {
		free(co);
		trackd__v1__record__free_unpacked(r, NULL);
		return TRACKD_ENOMEM;
	}
	trackd__v1__console_output__init(co);
	memcpy(text, p->text, len);
	text[len] = '\0';
	r->body_case = TRACKD__V1__RECORD__BODY_CONSOLE;
	r->console = co;
	co->text = text;
	co->has_stream = true;
	co->stream = stream == STREAM_ERR ? TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDERR
	                                  : TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDOUT;
	if (p->time_us) {
		co->has_client_time_us = true;
		co->client_time_us = p->time_us;
	}
	/* Lines as the agent splits them: one per '\n', and the unfinished one. */
	for (size_t i = 0; i < len; i++)
		c->st.console_lines += text[i] == '\n';
	c->st.console_lines += text[len - 1] != '\n';
	memmove(p->text, p->text + len, p->len - len);
	p->len -= len;
	return emit(c, r, p->offset);
}

static int do_output(wbc *c, const Wbi__OutputRecord *out, uint64_t offset)
{
	int stream = out->output_type == WBI__OUTPUT_TYPE__STDERR ? STREAM_ERR : STREAM_OUT;
	struct console_pending *p = &c->console[stream];
	size_t add = out->line ? strlen(out->line) : 0;
	if (add == 0)
		return 0;
	/* The text of a line is stamped with the time of the record that began it. */
	if (p->len == 0) {
		p->time_us = out->timestamp ? ts_us(out->timestamp) : 0;
		p->offset = offset;
	}
	if (out->timestamp)
		saw_time(c, ts_us(out->timestamp));
	char *t = realloc(p->text, p->len + add);
	if (!t)
		return TRACKD_ENOMEM;
	p->text = t;
	memcpy(p->text + p->len, out->line, add);
	p->len += add;
	size_t whole = p->len;
	while (whole > 0 && p->text[whole - 1] != '\n')
		whole--;
	int rv = emit_console(c, stream, whole);
	if (!rv && p->len > WBC_MAX_PARTIAL)
		rv = emit_console(c, stream, p->len);
	if (!rv && p->len) {
		p->time_us = out->timestamp ? ts_us(out->timestamp) : 0;
		p->offset = offset;
	}
	return rv;
}

static int do_stats(wbc *c, const Wbi__StatsRecord *st, uint64_t offset)
{
	if (!st->timestamp || st->n_item == 0)
		return 0;
	Trackd__V1__Record *r = new_record(c);
	Trackd__V1__SystemStats *ss = r ? malloc(sizeof *ss) : NULL;
	if (!ss) {
		trackd__v1__record__free_unpacked(r, NULL);
		return TRACKD_ENOMEM;
	}
	trackd__v1__system_stats__init(ss);
	r->body_case = TRACKD__V1__RECORD__BODY_STATS;
	r->stats = ss;
	ss->has_time_us = true;
	ss->time_us = ts_us(st->timestamp);
	saw_time(c, ss->time_us);
	ss->items = calloc(st->n_item, sizeof *ss->items);
	if (!ss->items)
		goto nomem;
	for (size_t i = 0; i < st->n_item; i++) {
		const char *key = st->item[i]->key;
		json_object *val;
		double d;
		if (!key || !*key || parse_json(c, st->item[i]->value_json, &val) != 0)
			continue;
		bool num = number_of(val, &d) && isfinite(d);
		json_object_put(val);
		if (!num)
			continue;
		if (strncmp(key, "system.", 7) == 0 && key[7])
			key += 7;
		Trackd__V1__Item *it = malloc(sizeof *it);
		Trackd__V1__Value *v = it ? malloc(sizeof *v) : NULL;
		if (!v) {
			free(it);
			goto nomem;
		}
		trackd__v1__item__init(it);
		trackd__v1__value__init(v);
		ss->items[ss->n_items++] = it;
		it->value = v;
		v->kind_case = TRACKD__V1__VALUE__KIND_DOUBLE_VALUE;
		v->double_value = d;
		if (!(it->key = strdup(key)))
			goto nomem;
	}
	if (ss->n_items == 0) {
		trackd__v1__record__free_unpacked(r, NULL);
		return 0;
	}
	c->st.samples++;
	return emit(c, r, offset);
nomem:
	trackd__v1__record__free_unpacked(r, NULL);
	return TRACKD_ENOMEM;
}

static int do_metric(wbc *c, const Wbi__MetricRecord *m, uint64_t offset)
{
	if (!m->name || !*m->name || !m->summary)
		return 0;
	Trackd__V1__Record *r = new_record(c);
	Trackd__V1__DefineMetric *dm = r ? malloc(sizeof *dm) : NULL;
	if (!dm) {
		trackd__v1__record__free_unpacked(r, NULL);
		return TRACKD_ENOMEM;
	}
	trackd__v1__define_metric__init(dm);
	r->body_case = TRACKD__V1__RECORD__BODY_DEFINE_METRIC;
	r->define_metric = dm;
	dm->name = strdup(m->name);
	dm->has_summary = true;
	const Wbi__MetricSummary *s = m->summary;
	dm->summary = s->none   ? TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_NONE
	              : s->min  ? TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MIN
	              : s->max  ? TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MAX
	              : s->mean ? TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_MEAN
	                        : TRACKD__V1__METRIC_SUMMARY__METRIC_SUMMARY_LAST;
	if (!dm->name) {
		trackd__v1__record__free_unpacked(r, NULL);
		return TRACKD_ENOMEM;
	}
	return emit(c, r, offset);
}

int wbc_record(wbc *c, const uint8_t *data, size_t len, uint64_t offset)
{
	c->st.records++;
	Wbi__Record *rec = wbi__record__unpack(NULL, len, data);
	if (!rec) {
		c->st.undecodable++;
		return 0;
	}
	int rv = 0;
	bool importable = rec->record_type_case == WBI__RECORD__RECORD_TYPE_HISTORY ||
	                  rec->record_type_case == WBI__RECORD__RECORD_TYPE_SUMMARY ||
	                  rec->record_type_case == WBI__RECORD__RECORD_TYPE_OUTPUT ||
	                  rec->record_type_case == WBI__RECORD__RECORD_TYPE_OUTPUT_RAW ||
	                  rec->record_type_case == WBI__RECORD__RECORD_TYPE_CONFIG ||
	                  rec->record_type_case == WBI__RECORD__RECORD_TYPE_STATS ||
	                  rec->record_type_case == WBI__RECORD__RECORD_TYPE_METRIC ||
	                  rec->record_type_case == WBI__RECORD__RECORD_TYPE_EXIT;
	/* A record with nothing to attach it to starts the run by the file's name. */
	if (importable && !c->st.started && !c->st.skipped) {
		if (!c->o.file_id || !*c->o.file_id) {
			c->st.before_run++;
			importable = false;
		} else {
			rv = start_run(c, NULL, offset);
			if (rv || c->st.skipped)
				importable = false;
		}
	}
	switch (rv ? WBI__RECORD__RECORD_TYPE__NOT_SET : rec->record_type_case) {
	case WBI__RECORD__RECORD_TYPE_RUN: rv = do_run(c, rec->run, offset); break;
	case WBI__RECORD__RECORD_TYPE_HISTORY:
		if (importable)
			rv = do_history(c, rec->history, offset);
		break;
	case WBI__RECORD__RECORD_TYPE_SUMMARY:
		if (importable)
			rv = apply_items(c, true, c->summary, rec->summary->update,
			                 rec->summary->n_update, rec->summary->remove,
			                 rec->summary->n_remove, offset);
		break;
	case WBI__RECORD__RECORD_TYPE_CONFIG:
		if (importable)
			rv = apply_items(c, false, c->config, rec->config->update,
			                 rec->config->n_update, rec->config->remove,
			                 rec->config->n_remove, offset);
		break;
	case WBI__RECORD__RECORD_TYPE_OUTPUT:
		if (importable)
			rv = do_output(c, rec->output, offset);
		break;
	case WBI__RECORD__RECORD_TYPE_OUTPUT_RAW:
		if (importable)
			rv = do_output(c, rec->output_raw, offset);
		break;
	case WBI__RECORD__RECORD_TYPE_STATS:
		if (importable)
			rv = do_stats(c, rec->stats, offset);
		break;
	case WBI__RECORD__RECORD_TYPE_METRIC:
		if (importable)
			rv = do_metric(c, rec->metric, offset);
		break;
	case WBI__RECORD__RECORD_TYPE_EXIT:
		if (importable) {
			c->st.have_exit = true;
			c->st.exit_code = rec->exit->exit_code;
			c->exit_runtime = rec->exit->runtime;
			c->exit_offset = offset;
		}
		break;
	case WBI__RECORD__RECORD_TYPE_HEADER: break;
	default: c->st.not_imported++; break;
	}
	wbi__record__free_unpacked(rec, NULL);
	return rv;
}

int wbc_finish(wbc *c)
{
	if (!c->st.started && !c->st.skipped)
		return 0;
	int rv = 0;
	for (int i = 0; i < N_STREAMS && !rv; i++)
		rv = emit_console(c, i, c->console[i].len);
	if (rv || c->st.skipped)
		return rv;
	Trackd__V1__Record *r = new_record(c);
	Trackd__V1__RunExit *e = r ? malloc(sizeof *e) : NULL;
	if (!e) {
		trackd__v1__record__free_unpacked(r, NULL);
		return TRACKD_ENOMEM;
	}
	trackd__v1__run_exit__init(e);
	r->body_case = TRACKD__V1__RECORD__BODY_EXIT;
	r->exit = e;
	e->has_pid = e->has_reason = true;
	e->pid = c->o.pid;
	int64_t end = c->last_time_us;
	if (c->st.have_exit) {
		e->has_exit_code = true;
		e->exit_code = c->st.exit_code;
		e->reason = TRACKD__V1__EXIT_REASON__EXIT_FINISHED;
		if (c->have_start_time && c->exit_runtime > 0 &&
		    c->start_time_us + (int64_t)c->exit_runtime * 1000000 > end)
			end = c->start_time_us + (int64_t)c->exit_runtime * 1000000;
	} else {
		e->reason = TRACKD__V1__EXIT_REASON__EXIT_CRASHED;
	}
	if (end > 0) {
		e->has_client_time_us = true;
		e->client_time_us = end;
	}
	return emit(c, r, c->exit_offset);
}
