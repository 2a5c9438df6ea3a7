#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool procfs_parse_stat(const char *text, struct procfs_stat *out)
{
	const char *p = strrchr(text, ')');
	if (!p)
		return false;
	p++;
	/* Fields from 3 (state) on; we want 4, 14, 15, 20, 22, 24. */
	uint64_t f[25] = {0};
	int field = 3;
	while (*p && field <= 24) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		char *end;
		if (field == 3) {
			while (*p && *p != ' ')
				p++;
		} else {
			f[field] = strtoull(p, &end, 10);
			if (end == p)
				return false;
			p = end;
		}
		field++;
	}
	if (field <= 24)
		return false;
	out->ppid = (int32_t)f[4];
	out->utime = f[14];
	out->stime = f[15];
	out->threads = f[20];
	out->start_ticks = f[22];
	out->rss_pages = f[24];
	return true;
}

/* The number after `key` at the start of a line, in kB → bytes. */
static bool meminfo_value(const char *text, const char *key, uint64_t *out)
{
	size_t klen = strlen(key);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
			char *end;
			uint64_t v = strtoull(p + klen + 1, &end, 10);
			if (end == p + klen + 1)
				return false;
			*out = v * 1024;
			return true;
		}
	}
	return false;
}

bool procfs_parse_meminfo(const char *text, uint64_t *total, uint64_t *available)
{
	return meminfo_value(text, "MemTotal", total) &&
	       meminfo_value(text, "MemAvailable", available);
}

bool procfs_parse_net_dev(const char *text, uint64_t *recv, uint64_t *sent)
{
	*recv = *sent = 0;
	bool any = false;
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		const char *colon = strchr(p, ':');
		const char *nl = strchr(p, '\n');
		if (!colon || (nl && colon > nl))
			continue; /* the two header lines */
		const char *name = p;
		while (*name == ' ')
			name++;
		if ((size_t)(colon - name) == 2 && strncmp(name, "lo", 2) == 0) {
			any = true;
			continue;
		}
		/* rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes … */
		uint64_t v[9];
		const char *q = colon + 1;
		for (int i = 0; i < 9; i++) {
			char *end;
			v[i] = strtoull(q, &end, 10);
			if (end == q)
				return false;
			q = end;
		}
		*recv += v[0];
		*sent += v[8];
		any = true;
	}
	return any;
}

bool procfs_parse_diskstats(const char *text, unsigned major, unsigned minor, char *name,
                            size_t namelen, uint64_t *read_sectors, uint64_t *write_sectors)
{
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		unsigned ma, mi;
		char dev[64];
		unsigned long long v[7];
		/* major minor name reads merged sectors ms writes merged sectors */
		if (sscanf(p, "%u %u %63s %llu %llu %llu %llu %llu %llu %llu", &ma, &mi, dev, &v[0],
		           &v[1], &v[2], &v[3], &v[4], &v[5], &v[6]) != 10)
			continue;
		if (ma != major || mi != minor)
			continue;
		snprintf(name, namelen, "%s", dev);
		*read_sectors = v[2];
		*write_sectors = v[6];
		return true;
	}
	return false;
}

double procfs_parse_cpu_max(const char *text)
{
	if (strncmp(text, "max", 3) == 0)
		return 0;
	char *end;
	double quota = strtod(text, &end);
	if (end == text || quota <= 0)
		return 0;
	const char *q = end;
	double period = strtod(q, &end);
	if (end == q || period <= 0)
		return 0;
	return quota / period;
}

uint64_t procfs_parse_bytes(const char *text)
{
	if (strncmp(text, "max", 3) == 0)
		return 0;
	char *end;
	uint64_t v = strtoull(text, &end, 10);
	return end == text ? 0 : v;
}

bool procfs_parse_cgroup(const char *text, char *out, size_t len)
{
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, "0::", 3) != 0)
			continue;
		const char *s = p + 3;
		const char *nl = strchr(s, '\n');
		size_t n = nl ? (size_t)(nl - s) : strlen(s);
		if (n >= len)
			return false;
		memcpy(out, s, n);
		out[n] = '\0';
		return true;
	}
	return false;
}
