/* sync_progress.c — see sync_progress.h. */
#include "sync_progress.h"

#include "render.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void sync_format_bytes(uint64_t n, char *out, size_t len)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
	if (n < 1024) {
		snprintf(out, len, "%u B", (unsigned)n);
		return;
	}
	double v = (double)n / 1024;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
		v /= 1024;
		u++;
	}
	/* Three significant digits, as far as they go. */
	snprintf(out, len, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

double sync_eta(uint64_t remaining, double rate)
{
	if (remaining == 0)
		return 0;
	if (!(rate > 0))
		return -1;
	return (double)remaining / rate;
}

double sync_rate_update(double prev, uint64_t delta, double dt, double tau)
{
	if (!(dt > 0))
		return prev;
	double now = (double)delta / dt;
	if (!(prev > 0))
		return now;
	double a = tau > 0 ? 1 - exp(-dt / tau) : 1;
	return prev + a * (now - prev);
}

void sync_progress_line(const struct sync_totals *t, int width, char *out, size_t len)
{
	char parts[5][64], a[16], b[16];
	size_t n = 0;
	snprintf(parts[n++], sizeof parts[0], "%zu/%zu runs", t->runs_done, t->runs_total);
	snprintf(parts[n++], sizeof parts[0], "%llu/%llu rows", (unsigned long long)t->rows,
	         (unsigned long long)t->rows_total);
	sync_format_bytes(t->bytes, a, sizeof a);
	sync_format_bytes(t->bytes_total, b, sizeof b);
	snprintf(parts[n++], sizeof parts[0], "%s/%s", a, b);
	if (t->rate > 0) {
		sync_format_bytes((uint64_t)t->rate, a, sizeof a);
		snprintf(parts[n++], sizeof parts[0], "%s/s", a);
	} else {
		snprintf(parts[n++], sizeof parts[0], "-/s");
	}
	double eta = sync_eta(t->bytes_total > t->bytes ? t->bytes_total - t->bytes : 0, t->rate);
	if (eta < 0) {
		snprintf(parts[n++], sizeof parts[0], "ETA -");
	} else {
		char d[32];
		render_duration(ceil(eta), d, sizeof d);
		snprintf(parts[n++], sizeof parts[0], "ETA %s", d);
	}
	/* The text after the bar: as many parts as fit beside a bar of >= 10. */
	char text[400] = "";
	size_t tl = 0;
	for (size_t i = 0; i < n; i++) {
		size_t pl = strlen(parts[i]) + 2;
		if (width > 0 && (int)(tl + pl) + 12 > width)
			break;
		tl += (size_t)snprintf(text + tl, sizeof text - tl, "  %s", parts[i]);
	}
	int bar = width > 0 ? width - (int)tl - 2 : 30;
	if (bar > 30)
		bar = 30;
	if (bar < 0)
		bar = 0;
	double frac = t->bytes_total
	                  ? (double)t->bytes / (double)t->bytes_total
	                  : (t->runs_total ? (double)t->runs_done / (double)t->runs_total : 1);
	if (frac > 1)
		frac = 1;
	int filled = (int)(frac * bar);
	size_t o = 0;
	if (len == 0)
		return;
	if (bar > 0 && o + 1 < len)
		out[o++] = '[';
	for (int i = 0; i < bar && o + 1 < len; i++)
		out[o++] = i < filled ? '#' : '.';
	if (bar > 0 && o + 1 < len)
		out[o++] = ']';
	out[o] = '\0';
	snprintf(out + o, len - o, "%s", bar > 0 ? text : text + (tl ? 2 : 0));
}
