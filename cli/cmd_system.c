#include "system.h"

#include "errors.h"
#include "footer.h"

#include <json-c/json.h>

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_LINES 2000 /* halved while the agent answers "too large" */

/* One page of events lines: calls fn for each line (a JSON object). 0, or 1
 * after printing why. *next / *total as the page says. */
typedef int (*line_fn)(void *arg, struct json_object *line);

static int each_line(agent_client *agent, const char *run, const char *stream, line_fn fn,
                     void *arg)
{
	Trackd__V1__HistoryRequest hr = TRACKD__V1__HISTORY_REQUEST__INIT;
	hr.run = (char *)run;
	hr.stream = (char *)stream;
	hr.has_from_line = hr.has_max_lines = true;
	Trackd__V1__Query q = TRACKD__V1__QUERY__INIT;
	q.request_case = TRACKD__V1__QUERY__REQUEST_HISTORY;
	q.history = &hr;
	uint64_t page = PAGE_LINES;
	/* Lines are the store's own JSON objects, written by the agent; the
	 * depth bound only stops a file damaged on disk from recursing deep. */
	struct json_tokener *tok = json_tokener_new_ex(128);
	if (!tok) {
		fprintf(stderr, "trackctl: out of memory\n");
		return 1;
	}
	for (;;) {
		hr.max_lines = page;
		Trackd__V1__Reply *reply = NULL;
		const Trackd__V1__QueryReply *qr = NULL;
		struct agent_error err;
		int rv = agent_query(agent, &q, &reply, &qr, &err);
		if (rv == TRACKD_EINVAL &&
		    err.remote_code == TRACKD__V1__ERROR_CODE__ERROR_TOO_LARGE && page > 1) {
			page /= 2;
			continue;
		}
		if (rv != 0) {
			char what[512];
			snprintf(what, sizeof what, "run %s", run);
			agent_print_error(agent_url(agent), rv, &err, what);
			json_tokener_free(tok);
			return 1;
		}
		const Trackd__V1__HistoryPage *hp = qr->history;
		size_t n = hp->n_lines;
		int code = 0;
		for (size_t i = 0; i < n && !code; i++) {
			const ProtobufCBinaryData *l = &hp->lines[i];
			json_tokener_reset(tok);
			struct json_object *line =
			    l->len <= INT32_MAX
			        ? json_tokener_parse_ex(tok, (const char *)l->data, (int)l->len)
			        : NULL;
			if (line && json_object_is_type(line, json_type_object))
				code = fn(arg, line);
			json_object_put(line);
		}
		uint64_t nx = hp->has_next_line ? hp->next_line : hr.from_line + n;
		uint64_t tot = hp->has_total_lines ? hp->total_lines : nx;
		trackd__v1__reply__free_unpacked(reply, NULL);
		if (code || n == 0 || nx <= hr.from_line || nx >= tot) {
			/* Stop at the end, and on a page that makes no progress. */
			json_tokener_free(tok);
			return code;
		}
		hr.from_line = nx;
	}
}

/* ---- history --stream events ---------------------------------------------------- */

struct columns {
	char **keys;
	size_t n;
};

static int collect_column(void *arg, struct json_object *line)
{
	struct columns *c = arg;
	json_object_object_foreach(line, key, value)
	{
		(void)value;
		bool seen = false;
		for (size_t i = 0; i < c->n && !seen; i++)
			seen = strcmp(c->keys[i], key) == 0;
		if (seen || c->n >= SYSTEM_MAX_COLUMNS)
			continue;
		char **k = realloc(c->keys, (c->n + 1) * sizeof *k);
		if (!k || !(k[c->n] = strdup(key))) {
			if (k)
				c->keys = k;
			fprintf(stderr, "trackctl: out of memory\n");
			return 1;
		}
		c->keys = k;
		c->n++;
	}
	return 0;
}

struct printer {
	FILE *out;
	const struct columns *csv; /* NULL: jsonl */
};

static void csv_field(FILE *out, const char *s)
{
	if (!strpbrk(s, ",\"\n\r")) {
		fputs(s, out);
		return;
	}
	putc('"', out);
	for (; *s; s++) {
		if (*s == '"')
			putc('"', out);
		putc(*s, out);
	}
	putc('"', out);
}

static int print_line(void *arg, struct json_object *line)
{
	struct printer *p = arg;
	if (!p->csv) {
		fprintf(p->out, "%s\n",
		        json_object_to_json_string_ext(line, JSON_C_TO_STRING_PLAIN |
		                                                 JSON_C_TO_STRING_NOSLASHESCAPE));
		return 0;
	}
	for (size_t i = 0; i < p->csv->n; i++) {
		struct json_object *v;
		if (i)
			putc(',', p->out);
		if (json_object_object_get_ex(line, p->csv->keys[i], &v) && v)
			csv_field(p->out,
			          json_object_is_type(v, json_type_string)
			              ? json_object_get_string(v)
			              : json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	}
	putc('\n', p->out);
	return 0;
}

int cli_print_events(agent_client *agent, const char *run, bool csv, FILE *out)
{
	struct columns cols = {0};
	int code = csv ? each_line(agent, run, "events", collect_column, &cols) : 0;
	if (!code && csv) {
		for (size_t i = 0; i < cols.n; i++) {
			if (i)
				putc(',', out);
			csv_field(out, cols.keys[i]);
		}
		putc('\n', out);
	}
	struct printer p = {.out = out, .csv = csv ? &cols : NULL};
	if (!code)
		code = each_line(agent, run, "events", print_line, &p);
	for (size_t i = 0; i < cols.n; i++)
		free(cols.keys[i]);
	free(cols.keys);
	return code;
}

/* ---- the System section of show ---------------------------------------------------- */

/* One drawn key: its samples in time order. */
struct series {
	char key[96];
	const char *unit;
	double *v;
	size_t n, cap;
};

struct system_view {
	struct series *s;
	size_t n;
	size_t samples;
	double first_runtime, last_runtime;
};

/* The keys drawn, in this order; GPU keys for every index found. */
static const struct {
	const char *key, *unit;
} host_keys[] = {
    {"system.cpu", "%"},
    {"system.proc.memory.rssMB", "MiB"},
    {"system.memory_percent", "%"},
    {"system.proc.cpu.threads", ""},
};
static const struct {
	const char *suffix, *unit;
} gpu_keys[] = {
    {"gpu", "%"},
    {"memoryAllocated", "%"},
};

static struct series *series_of(struct system_view *sv, const char *key, const char *unit)
{
	for (size_t i = 0; i < sv->n; i++)
		if (strcmp(sv->s[i].key, key) == 0)
			return &sv->s[i];
	struct series *p = realloc(sv->s, (sv->n + 1) * sizeof *p);
	if (!p)
		return NULL;
	sv->s = p;
	struct series *s = &sv->s[sv->n++];
	memset(s, 0, sizeof *s);
	snprintf(s->key, sizeof s->key, "%s", key);
	s->unit = unit;
	return s;
}

static int push(struct series *s, double v)
{
	if (s->n >= SYSTEM_MAX_SAMPLES)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		double *p = realloc(s->v, cap * sizeof *p);
		if (!p)
			return 1;
		s->v = p;
		s->cap = cap;
	}
	s->v[s->n++] = v;
	return 0;
}

static int take_sample(void *arg, struct json_object *line)
{
	struct system_view *sv = arg;
	struct json_object *v;
	double rt = json_object_object_get_ex(line, "_runtime", &v) ? json_object_get_double(v) : 0;
	if (sv->samples++ == 0)
		sv->first_runtime = rt;
	sv->last_runtime = rt;
	for (size_t i = 0; i < sizeof host_keys / sizeof host_keys[0]; i++) {
		if (!json_object_object_get_ex(line, host_keys[i].key, &v))
			continue;
		struct series *s = series_of(sv, host_keys[i].key, host_keys[i].unit);
		if (!s || push(s, json_object_get_double(v)))
			goto oom;
	}
	/* GPU keys: "system.gpu.<i>.<suffix>" for the suffixes drawn. */
	json_object_object_foreach(line, key, value)
	{
		unsigned idx;
		int used = 0;
		if (sscanf(key, "system.gpu.%u.%n", &idx, &used) != 1 || used == 0)
			continue;
		for (size_t i = 0; i < sizeof gpu_keys / sizeof gpu_keys[0]; i++) {
			if (strcmp(key + used, gpu_keys[i].suffix) != 0)
				continue;
			struct series *s = series_of(sv, key, gpu_keys[i].unit);
			if (!s || push(s, json_object_get_double(value)))
				goto oom;
		}
	}
	return 0;
oom:
	fprintf(stderr, "trackctl: out of memory\n");
	return 1;
}

int cli_print_system(agent_client *agent, const char *run, FILE *out)
{
	struct system_view sv = {0};
	int code = each_line(agent, run, "events", take_sample, &sv);
	if (!code) {
		fprintf(out, "\nSystem:");
		if (!sv.samples) {
			fprintf(out, " no samples (the agent takes one as soon as it sees the run "
			             "running, then one every system_metrics.interval; a run that "
			             "ends a moment after it starts may get none)\n");
		} else {
			double span = sv.last_runtime - sv.first_runtime;
			fprintf(out, " %zu samples over %.0f s\n", sv.samples, span);
			size_t width = 0;
			for (size_t i = 0; i < sv.n; i++) {
				size_t w = strlen(sv.s[i].key) - strlen("system.");
				if (w > width)
					width = w;
			}
			for (size_t i = 0; i < sv.n; i++) {
				const struct series *s = &sv.s[i];
				char spark[128], last[40];
				footer_sparkline(s->v, s->n, spark, sizeof spark);
				footer_format_double(s->n ? s->v[s->n - 1] : NAN, last,
				                     sizeof last);
				fprintf(out, "%*s %s %s%s%s\n", (int)width,
				        s->key + strlen("system."), spark, last,
				        *s->unit ? " " : "", s->unit);
			}
		}
	}
	for (size_t i = 0; i < sv.n; i++)
		free(sv.s[i].v);
	free(sv.s);
	return code;
}

/* ---- the Environment section of show ------------------------------------------------ */

static int take_metadata(void *arg, struct json_object *line)
{
	struct json_object **md = arg;
	json_object_put(*md);
	*md = json_object_get(line);
	return 0;
}

static const char *field(struct json_object *o, const char *path)
{
	char key[64];
	while (o) {
		const char *dot = strchr(path, '.');
		size_t n = dot ? (size_t)(dot - path) : strlen(path);
		snprintf(key, sizeof key, "%.*s", (int)n, path);
		if (!json_object_object_get_ex(o, key, &o))
			return NULL;
		if (!dot)
			return json_object_is_type(o, json_type_string)
			           ? json_object_get_string(o)
			           : json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		path = dot + 1;
	}
	return NULL;
}

int cli_print_environment(agent_client *agent, const char *run, FILE *out)
{
	struct json_object *md = NULL;
	int code = each_line(agent, run, "metadata", take_metadata, &md);
	if (code || !md) {
		json_object_put(md);
		return code;
	}
	static const struct {
		const char *label, *path;
	} rows[] = {
	    {"program", "program"},
	    {"args", "args"},
	    {"executable", "executable"},
	    {"directory", "root"},
	    {"git remote", "git.remote"},
	    {"git commit", "git.commit"},
	    {"git branch", "git.branch"},
	    {"git dirty", "git.dirty"},
	    {"python", "python"},
	    {"user", "username"},
	    {"host", "host"},
	    {"os", "os"},
	    {"started", "startedAt"},
	    {"cpu", "cpu"},
	    {"cpu cores", "cpu_count"},
	    {"cpu threads", "cpu_count_logical"},
	    {"memory", "memory.total"},
	    {"gpus", "gpu_count"},
	    {"gpu", "gpu"},
	    {"nvidia driver", "driverVersion"},
	    {"cuda", "cudaVersion"},
	};
	fprintf(out, "\nEnvironment:\n");
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const char *v = field(md, rows[i].path);
		if (!v)
			continue;
		if (strcmp(rows[i].path, "memory.total") == 0)
			fprintf(out, "%13s %.1f GiB\n", rows[i].label,
			        strtod(v, NULL) / (1024.0 * 1024 * 1024));
		else
			fprintf(out, "%13s %s\n", rows[i].label, v);
	}
	json_object_put(md);
	return 0;
}
