#include "metadata.h"

#include "procfs.h"

#include "errors.h"
#include "json_write.h"

#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

void metadata_strip_credentials(const char *url, char *out, size_t len)
{
	const char *scheme = strstr(url, "://");
	const char *host = scheme ? scheme + 3 : url;
	const char *slash = strchr(host, '/');
	const char *at = strchr(host, '@');
	/* user[:password]@ before the path; scp-like "git@host:x" has no scheme
	 * and its user is no secret, so it stays. */
	if (scheme && at && (!slash || at < slash))
		snprintf(out, len, "%.*s%s", (int)(host - url), url, at + 1);
	else
		snprintf(out, len, "%s", url);
}

/* snprintf whose cut result is reported (false) rather than warned about:
 * paths here are bounded by PATH_MAX, and a cut one is simply not found. */
static bool fit(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static bool fit(char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, len, fmt, ap);
	va_end(ap);
	return n >= 0 && (size_t)n < len;
}

static void trim(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
}

/* "<dir>/<name>" read and trimmed into buf. */
static bool read_in(const char *dir, const char *name, char *buf, size_t cap)
{
	char path[PATH_MAX + 256];
	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
		return false;
	if (procfs_read(path, buf, cap) < 0)
		return false;
	trim(buf);
	return true;
}

int metadata_git(const char *dir, struct metadata_git *out)
{
	memset(out, 0, sizeof *out);
	char cur[PATH_MAX], gitdir[PATH_MAX], common[PATH_MAX];
	fit(cur, sizeof cur, "%s", dir);
	char *text = malloc(METADATA_MAX_FILE);
	if (!text)
		return TRACKD_ENOMEM;
	bool found = false;
	for (int depth = 0; depth < METADATA_MAX_DEPTH && !found; depth++) {
		char probe[PATH_MAX + 8];
		fit(probe, sizeof probe, "%s/.git", cur);
		if (read_in(probe, "HEAD", text, METADATA_MAX_FILE)) {
			fit(gitdir, sizeof gitdir, "%s", probe);
			found = true;
		} else if (procfs_read(probe, text, METADATA_MAX_FILE) > 0 &&
		           strncmp(text, "gitdir: ", 8) == 0) {
			/* A worktree or submodule: .git is a file naming the real dir. */
			trim(text);
			if (text[8] == '/')
				fit(gitdir, sizeof gitdir, "%s", text + 8);
			else
				fit(gitdir, sizeof gitdir, "%s/%s", cur, text + 8);
			found = true;
		}
		if (found || strcmp(cur, "/") == 0)
			break;
		char *slash = strrchr(cur, '/');
		if (!slash)
			break;
		if (slash == cur)
			cur[1] = '\0';
		else
			*slash = '\0';
	}
	if (!found) {
		free(text);
		return TRACKD_ENOENT;
	}
	/* Refs and config live in the common dir of a worktree. */
	fit(common, sizeof common, "%s", gitdir);
	if (read_in(gitdir, "commondir", text, METADATA_MAX_FILE) && text[0]) {
		if (text[0] == '/')
			fit(common, sizeof common, "%s", text);
		else
			fit(common, sizeof common, "%s/%s", gitdir, text);
	}
	if (read_in(gitdir, "HEAD", text, METADATA_MAX_FILE)) {
		if (strncmp(text, "ref: ", 5) == 0) {
			char ref[512];
			fit(ref, sizeof ref, "%s", text + 5);
			if (strncmp(ref, "refs/heads/", 11) == 0)
				fit(out->branch, sizeof out->branch, "%s", ref + 11);
			if (read_in(common, ref, text, METADATA_MAX_FILE) ||
			    read_in(gitdir, ref, text, METADATA_MAX_FILE)) {
				fit(out->commit, sizeof out->commit, "%.40s", text);
			} else if (read_in(common, "packed-refs", text, METADATA_MAX_FILE)) {
				/* "<sha> <ref>" lines */
				for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
					char *sp = strchr(l, ' ');
					if (sp && strcmp(sp + 1, ref) == 0 && sp - l == 40) {
						fit(out->commit, sizeof out->commit, "%.40s", l);
						break;
					}
				}
			}
		} else {
			fit(out->commit, sizeof out->commit, "%.40s", text); /* detached */
		}
	}
	if (read_in(common, "config", text, METADATA_MAX_FILE)) {
		/* The url of [remote "origin"]. */
		bool in_origin = false;
		for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
			while (*l == ' ' || *l == '\t')
				l++;
			if (*l == '[') {
				in_origin = strncmp(l, "[remote \"origin\"]", 17) == 0;
				continue;
			}
			if (in_origin && strncmp(l, "url", 3) == 0) {
				char *eq = strchr(l, '=');
				if (!eq)
					continue;
				eq++;
				while (*eq == ' ')
					eq++;
				trim(eq);
				metadata_strip_credentials(eq, out->remote, sizeof out->remote);
				break;
			}
		}
	}
	free(text);
	return 0;
}

/* ---- the JSON ------------------------------------------------------------------- */

struct writer {
	struct buf *b;
	int rv;
	bool first;
};

static void key(struct writer *w, const char *k)
{
	if (w->rv)
		return;
	if (!w->first)
		w->rv = buf_putc(w->b, ',');
	w->first = false;
	if (!w->rv)
		w->rv = json_write_string(w->b, k);
	if (!w->rv)
		w->rv = buf_putc(w->b, ':');
}

static void str(struct writer *w, const char *k, const char *v)
{
	if (!v || !*v)
		return;
	key(w, k);
	if (!w->rv)
		w->rv = json_write_string(w->b, v);
}

static void num(struct writer *w, const char *k, uint64_t v)
{
	key(w, k);
	if (!w->rv)
		w->rv = json_write_uint(w->b, v);
}

static void open_obj(struct writer *w, const char *k)
{
	key(w, k);
	if (!w->rv)
		w->rv = buf_putc(w->b, '{');
	w->first = true;
}

static void close_obj(struct writer *w)
{
	if (!w->rv)
		w->rv = buf_putc(w->b, '}');
	w->first = false;
}

static void cpu_facts(char *model, size_t len, unsigned *physical)
{
	model[0] = '\0';
	*physical = 0;
	char *text = malloc(METADATA_MAX_FILE);
	if (!text || procfs_read("/proc/cpuinfo", text, METADATA_MAX_FILE) <= 0) {
		free(text);
		return;
	}
	/* Physical cores: distinct (physical id, core id) pairs. */
	unsigned pairs[1024][2], n = 0, phys = 0;
	for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n")) {
		char *colon = strchr(l, ':');
		if (!colon)
			continue;
		const char *v = colon + 1 + (colon[1] == ' ');
		if (strncmp(l, "model name", 10) == 0 && !model[0])
			snprintf(model, len, "%s", v);
		else if (strncmp(l, "physical id", 11) == 0)
			phys = (unsigned)strtoul(v, NULL, 10);
		else if (strncmp(l, "core id", 7) == 0) {
			unsigned core = (unsigned)strtoul(v, NULL, 10);
			bool seen = false;
			for (unsigned i = 0; i < n && !seen; i++)
				seen = pairs[i][0] == phys && pairs[i][1] == core;
			if (!seen && n < 1024) {
				pairs[n][0] = phys;
				pairs[n++][1] = core;
			}
		}
	}
	*physical = n;
	free(text);
}

int metadata_json(int32_t pid, int64_t start_time_us, const char *state_dir, nvml *gpu,
                  struct buf *out)
{
	struct writer w = {.b = out, .first = true};
	w.rv = buf_putc(out, '{');
	char path[64], text[8192];
	/* Program and arguments: argv, NUL-separated. A script run by an
	 * interpreter (python train.py) names the script as the program. */
	snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
	long n = procfs_read(path, text, sizeof text);
	if (n > 0) {
		const char *argv[256];
		int argc = 0;
		for (long i = 0; i < n && argc < 256; i += (long)strlen(text + i) + 1)
			argv[argc++] = text + i;
		int prog = 0;
		const char *base = strrchr(argv[0], '/');
		base = base ? base + 1 : argv[0];
		if (strncmp(base, "python", 6) == 0 && argc > 1 && argv[1][0] != '-')
			prog = 1;
		str(&w, "program", argv[prog]);
		key(&w, "args");
		if (!w.rv)
			w.rv = buf_putc(out, '[');
		for (int i = prog + 1; i < argc && !w.rv; i++) {
			if (i > prog + 1)
				w.rv = buf_putc(out, ',');
			if (!w.rv)
				w.rv = json_write_string(out, argv[i]);
		}
		if (!w.rv)
			w.rv = buf_putc(out, ']');
	}
	char exe[PATH_MAX], cwd[PATH_MAX];
	snprintf(path, sizeof path, "/proc/%d/exe", pid);
	ssize_t k = readlink(path, exe, sizeof exe - 1);
	exe[k > 0 ? k : 0] = '\0';
	str(&w, "executable", exe);
	snprintf(path, sizeof path, "/proc/%d/cwd", pid);
	k = readlink(path, cwd, sizeof cwd - 1);
	cwd[k > 0 ? k : 0] = '\0';
	str(&w, "root", cwd);
	time_t t = (time_t)(start_time_us / 1000000);
	struct tm tm;
	char when[64];
	gmtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + strlen(when), sizeof when - strlen(when), ".%06dZ",
	         (int)(start_time_us % 1000000));
	str(&w, "startedAt", when);
	/* The owner of the process, by its uid (Uid: real effective …). */
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	if (procfs_read(path, text, sizeof text) > 0) {
		const char *u = strstr(text, "\nUid:");
		struct passwd pw, *res = NULL;
		char pwbuf[1024];
		if (u &&
		    getpwuid_r((uid_t)strtoul(u + 5, NULL, 10), &pw, pwbuf, sizeof pwbuf, &res) ==
		        0 &&
		    res)
			str(&w, "username", res->pw_name);
	}
	char host[256] = "";
	gethostname(host, sizeof host - 1);
	str(&w, "host", host);
	struct utsname un;
	if (uname(&un) == 0) {
		char os[600];
		snprintf(os, sizeof os, "%s-%s-%s", un.sysname, un.release, un.machine);
		str(&w, "os", os);
	}
	struct metadata_git g;
	if (cwd[0] && metadata_git(cwd, &g) == 0) {
		open_obj(&w, "git");
		str(&w, "remote", g.remote);
		str(&w, "commit", g.commit);
		str(&w, "branch", g.branch);
		close_obj(&w);
	}
	/* The machine. */
	char model[256];
	unsigned physical;
	cpu_facts(model, sizeof model, &physical);
	long logical = sysconf(_SC_NPROCESSORS_ONLN);
	if (physical)
		num(&w, "cpu_count", physical);
	if (logical > 0)
		num(&w, "cpu_count_logical", (uint64_t)logical);
	str(&w, "cpu", model);
	uint64_t total, avail;
	if (procfs_read("/proc/meminfo", text, sizeof text) > 0 &&
	    procfs_parse_meminfo(text, &total, &avail)) {
		open_obj(&w, "memory");
		num(&w, "total", total);
		close_obj(&w);
	}
	struct statvfs v;
	if (state_dir && statvfs(state_dir, &v) == 0) {
		open_obj(&w, "disk");
		open_obj(&w, state_dir);
		num(&w, "total", (uint64_t)v.f_blocks * v.f_frsize);
		num(&w, "used", (uint64_t)(v.f_blocks - v.f_bfree) * v.f_frsize);
		close_obj(&w);
		close_obj(&w);
	}
	unsigned count = nvml_count(gpu);
	if (gpu) {
		char name[128], version[128];
		nvml_device_name(gpu, 0, name, sizeof name);
		str(&w, "gpu", name);
		num(&w, "gpu_count", count);
		key(&w, "gpu_nvidia");
		if (!w.rv)
			w.rv = buf_putc(out, '[');
		for (unsigned i = 0; i < count && !w.rv; i++) {
			nvml_device_name(gpu, i, name, sizeof name);
			if (i)
				w.rv = buf_putc(out, ',');
			if (!w.rv)
				w.rv = buf_putc(out, '{');
			w.first = true;
			str(&w, "name", name);
			if (nvml_memory_total(gpu, i, &total))
				num(&w, "memoryTotal", total);
			close_obj(&w);
		}
		if (!w.rv)
			w.rv = buf_putc(out, ']');
		nvml_driver_version(gpu, version, sizeof version);
		str(&w, "driverVersion", version);
		nvml_cuda_version(gpu, version, sizeof version);
		str(&w, "cudaVersion", version);
	}
	if (!w.rv)
		w.rv = buf_putc(out, '}');
	return w.rv;
}
