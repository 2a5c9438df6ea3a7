/* exposition.c — the Prometheus text format 0.0.4: HELP/TYPE lines, samples,
 * histograms, escaping. */
#include "metrics.h"

#include <stdio.h>
#include <string.h>

static void put(struct metrics_writer *w, int rc)
{
	if (rc != 0)
		w->failed = true;
}

/* HELP text escapes backslash and newline; label values also the quote. */
static void put_escaped(struct metrics_writer *w, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			put(w, buf_puts(w->out, "\\\\"));
		else if (*s == '\n')
			put(w, buf_puts(w->out, "\\n"));
		else if (quote && *s == '"')
			put(w, buf_puts(w->out, "\\\""));
		else
			put(w, buf_putc(w->out, *s));
	}
}

void metrics_family(struct metrics_writer *w, const char *name, const char *type, const char *help)
{
	w->family = name;
	put(w, buf_printf(w->out, "# HELP %s ", name));
	put_escaped(w, help, false);
	put(w, buf_printf(w->out, "\n# TYPE %s %s\n", name, type));
}

static void sample_head(struct metrics_writer *w, const char *suffix, const char *label,
                        const char *label_value)
{
	put(w, buf_printf(w->out, "%s%s", w->family, suffix));
	if (label) {
		put(w, buf_printf(w->out, "{%s=\"", label));
		put_escaped(w, label_value, true);
		put(w, buf_puts(w->out, "\"}"));
	}
}

void metrics_value(struct metrics_writer *w, const char *label, const char *label_value,
                   uint64_t value)
{
	sample_head(w, "", label, label_value);
	put(w, buf_printf(w->out, " %llu\n", (unsigned long long)value));
}

void metrics_histogram(struct metrics_writer *w, const char *name, const char *help,
                       const double *bounds, const uint64_t *counts, size_t n_bounds, double sum)
{
	metrics_family(w, name, "histogram", help);
	uint64_t cumulative = 0;
	char le[32];
	for (size_t i = 0; i < n_bounds; i++) {
		cumulative += counts[i];
		snprintf(le, sizeof le, "%.17g", bounds[i]);
		sample_head(w, "_bucket", "le", le);
		put(w, buf_printf(w->out, " %llu\n", (unsigned long long)cumulative));
	}
	cumulative += counts[n_bounds];
	sample_head(w, "_bucket", "le", "+Inf");
	put(w, buf_printf(w->out, " %llu\n", (unsigned long long)cumulative));
	sample_head(w, "_sum", NULL, NULL);
	put(w, buf_printf(w->out, " %.17g\n", sum));
	sample_head(w, "_count", NULL, NULL);
	put(w, buf_printf(w->out, " %llu\n", (unsigned long long)cumulative));
}
