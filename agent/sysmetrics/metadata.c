#include "metadata.h"

#include "procfs.h"

#include "errors.h"
#include "fs.h"
#include "json_write.h"
#include "runenv.h"

#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

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
	if (!text || fs_read_prefix("/proc/cpuinfo", text, METADATA_MAX_FILE) <= 0) {
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
	long n = fs_read_prefix(path, text, sizeof text);
	if (n > 0) {
		const char *argv[RUNENV_MAX_ARGS];
		int prog;
		int argc = runenv_argv(text, (size_t)n, argv, &prog);
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
	if (fs_read_prefix(path, text, sizeof text) > 0) {
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
	struct runenv_git g;
	if (cwd[0] && runenv_git(cwd, &g) == 0) {
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
	if (fs_read_prefix("/proc/meminfo", text, sizeof text) > 0 &&
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
